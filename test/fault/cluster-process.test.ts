// Three real node processes with 1,000 groups and two workers each, driven over HTTP while faults
// happen: kill -9 of a node, kill -9 of that node again during its restart, and a worker crash
// inside another node. Writers record what was acknowledged; at the end every node must serve,
// by linearizable reads, each key's last acknowledged value or a later attempted one, and every
// group must have a leader again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { until } from '../helpers/net.js';
import { processCluster } from '../helpers/procs.js';

const GROUPS = 1000;
const KEYS = 200;
const WRITERS = 8;
const ids = ['n1', 'n2', 'n3'];

test('3 processes x 1,000 groups: writes and linearizable reads on every node through kill -9, kill -9 during restart, and a worker crash', async (t) => {
  const c = await processCluster('cluster', ids, [
    '--groups',
    String(GROUPS),
    '--workers',
    '2',
    '--tick-ms',
    '50',
    '--log-level',
    'warn',
    '--fault-injection',
    '--request-timeout-ms',
    '20000',
  ]);
  const { admin, procs, spawnNode } = c;
  const json = async (url: string, init?: RequestInit) =>
    (await (await fetch(url, init)).json()) as Record<string, unknown>;
  const leaders = async (nodes = ids) => {
    let n = 0;
    for (const id of nodes) n += (await json(`${admin.get(id)}/status`)).leaders as number;
    return n;
  };
  const live = new Set(ids);
  const acked = new Map<string, number>(); // key -> highest acknowledged n
  const attempted = new Map<string, number>(); // key -> highest attempted n
  let okWrites = 0;
  let failedWrites = 0;
  let reads = 0;
  let stop = false;
  const t0 = Date.now();
  try {
    for (const id of ids) spawnNode(id);
    await until('all 1,000 groups led', async () => (await leaders()) === GROUPS, 180_000, 200);
    const elected = Date.now() - t0;

    const writer = async (w: number) => {
      let r = w * 7919;
      for (let n = 1; !stop; n++) {
        const key = `key-${w + WRITERS * (n % (KEYS / WRITERS))}`;
        const targets = [...live];
        r = (r * 1103515245 + 12345) >>> 0;
        const node = targets[r % targets.length];
        attempted.set(key, n);
        try {
          const res = await fetch(`${admin.get(node)}/kv/${key}`, {
            method: 'PUT',
            body: `${key}:${n}`,
            signal: AbortSignal.timeout(25_000),
          });
          if (res.status === 200) {
            acked.set(key, n);
            okWrites++;
          } else failedWrites++;
          await res.arrayBuffer();
        } catch {
          failedWrites++; // the node was killed under us: outcome unknown
        }
        if (n % 10 === 0) {
          try {
            const rr = await fetch(`${admin.get(node)}/kv/${key}`, { signal: AbortSignal.timeout(25_000) });
            if (rr.status === 200) {
              const v = Number((await rr.text()).split(':')[1]);
              assert.ok(
                v >= (acked.get(key) ?? 0),
                `read of ${key} on ${node} saw ${v}, older than acknowledged ${acked.get(key)}`,
              );
              reads++;
            } else await rr.arrayBuffer();
          } catch (e) {
            if (e instanceof assert.AssertionError) throw e;
          }
        }
      }
    };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    await until('writes flowing', () => okWrites > 200, 60_000);

    // kill -9 n3; writes continue on n1 and n2.
    live.delete('n3');
    procs.get('n3')!.kill('SIGKILL');
    let mark = okWrites;
    await until('writes continue without n3', () => okWrites > mark + 200, 60_000);
    // Restart n3 and kill -9 it again while it recovers.
    spawnNode('n3');
    await sleep(700);
    procs.get('n3')!.kill('SIGKILL');
    spawnNode('n3');
    await until('n3 back', async () => (await fetch(`${admin.get('n3')}/health`)).status === 200, 120_000, 200);
    live.add('n3');
    // A worker crash inside n2.
    const crash = await fetch(`${admin.get('n2')}/debug/crash-worker?worker=1`, { method: 'POST' });
    assert.equal(crash.status, 200, await crash.text());
    await until(
      'n2 shard restarted',
      async () => {
        const st = await json(`${admin.get('n2')}/status`);
        return st.workerRestarts === 1 && (st.shards as { up: boolean }[]).every((s) => s.up);
      },
      60_000,
      200,
    );
    mark = okWrites;
    await until('writes continue after the worker restart', () => okWrites > mark + 200, 60_000);
    // A slow disk on n1 (fault injection): writes go on, its commits show the delay; a bad
    // value is refused.
    assert.equal((await fetch(`${admin.get('n1')}/debug/disk-delay?ms=-5`, { method: 'POST' })).status, 400);
    const slow = await fetch(`${admin.get('n1')}/debug/disk-delay?ms=40&jitterMs=20`, { method: 'POST' });
    assert.equal(slow.status, 200, await slow.text());
    mark = okWrites;
    await until('writes continue on a slow disk', () => okWrites > mark + 100, 60_000);
    const p99 = Math.max(
      ...((await json(`${admin.get('n1')}/status`)).shards as { commitP99Ms: number | null }[]).map(
        (x) => x.commitP99Ms ?? 0,
      ),
    );
    assert.ok(p99 >= 40, `n1's commits show the delay: p99 ${p99} ms`);
    assert.equal((await fetch(`${admin.get('n1')}/debug/disk-delay?ms=0`, { method: 'POST' })).status, 200);
    stop = true;
    await Promise.all(writers);

    await until('every group led again', async () => (await leaders()) === GROUPS, 120_000, 200);
    // Every acknowledged write is present (or overwritten by a later attempt), on every node.
    for (const id of ids) {
      for (const [key, n] of acked) {
        const res = await fetch(`${admin.get(id)}/kv/${key}`);
        assert.equal(res.status, 200, `${key} on ${id}`);
        const v = Number((await res.text()).split(':')[1]);
        assert.ok(
          v >= n && v <= attempted.get(key)!,
          `${key} on ${id}: ${v}, acknowledged ${n}, attempted up to ${attempted.get(key)}`,
        );
      }
    }
    t.diagnostic(
      `elected ${GROUPS} groups in ${(elected / 1000).toFixed(1)} s; ${okWrites} writes acknowledged, ` +
        `${failedWrites} failed or unknown, ${reads} checked reads; total ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    for (const p of procs.values()) p.kill('SIGTERM');
    for (const [id, p] of procs) {
      const code = await new Promise<number | null>((r) =>
        p.exitCode !== null ? r(p.exitCode) : p.once('exit', (c) => r(c)),
      );
      assert.equal(code, 0, `${id} exits 0 on SIGTERM`);
    }
  } finally {
    stop = true;
    c.cleanup();
  }
});
