// Rolling maintenance with real processes and plain restarts: for each node in turn, SIGTERM it
// (a node drains its leaderships, verified, before it stops), check every group is led by the
// others at once, start it again. Clients write through the other nodes throughout; no write
// fails and every acknowledged write is on every node at the end. (The explicit drain, verify,
// restart, undrain procedure is examples/rolling-maintenance/run.sh.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until } from '../helpers/net.js';
import { processCluster } from '../helpers/procs.js';

const GROUPS = 100;
const ids = ['n1', 'n2', 'n3'];

test('rolling maintenance: a plain SIGTERM and restart of each node under write load loses no write', async (t) => {
  const c = await processCluster('rolling', ids, [
    '--groups',
    String(GROUPS),
    '--workers',
    '2',
    '--tick-ms',
    '50',
    '--log-level',
    'warn',
  ]);
  const { admin, procs, spawnNode } = c;
  const status = async (id: string) =>
    (await (await fetch(`${admin.get(id)}/status`)).json()) as { leaders: number; draining: boolean };
  const serving = new Set(ids); // the nodes clients may use (an operator takes a node out first)
  const acked = new Map<string, string>();
  let failed = 0;
  let firstFailure = '';
  let stop = false;
  let phase = 'start';
  try {
    for (const id of ids) spawnNode(id);
    await until(
      'all groups led',
      async () => (await Promise.all(ids.map(status))).reduce((a, s) => a + s.leaders, 0) === GROUPS,
      120_000,
      200,
    );
    const writers = Array.from({ length: 6 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const node = [...serving][i % serving.size];
        const key = `w${w}-${i % 30}`;
        const value = `${w}:${i}`;
        try {
          const r = await fetch(`${admin.get(node)}/kv/${key}`, {
            method: 'PUT',
            body: value,
            signal: AbortSignal.timeout(20_000),
          });
          if (r.status === 200) acked.set(key, value);
          else {
            failed++;
            firstFailure ||= `${node} ${r.status} ${await r.text()}`;
          }
        } catch (e) {
          failed++;
          const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
          firstFailure ||= `${node}: ${(e as Error).message} (${cause?.code ?? ''} ${cause?.message ?? ''}) at ${phase}`;
        }
      }
    });
    for (const id of ids) {
      serving.delete(id);
      phase = `stopping ${id}`;
      const p = procs.get(id)!;
      p.kill('SIGTERM');
      const code = await new Promise<number | null>((r) =>
        p.exitCode !== null ? r(p.exitCode) : p.once('exit', (c) => r(c)),
      );
      assert.equal(code, 0, `${id} stops cleanly`);
      const others = ids.filter((x) => x !== id);
      assert.equal(
        (await Promise.all(others.map(status))).reduce((a, s) => a + s.leaders, 0),
        GROUPS,
        `${id} handed every leadership over before it exited: all ${GROUPS} groups are led by ${others.join(' and ')} at once`,
      );
      phase = `restarting ${id}`;
      spawnNode(id);
      await until(
        `${id} healthy again`,
        async () => (await fetch(`${admin.get(id)}/health`)).status === 200,
        60_000,
        100,
      );
      await until(
        `${id} is not draining for its peers`,
        async () =>
          (
            await Promise.all(
              others.map(
                async (o) =>
                  ((await (await fetch(`${admin.get(o)}/status`)).json()) as { drainingPeers: string[] }).drainingPeers,
              ),
            )
          ).every((d) => !d.includes(id)),
        10_000,
        100,
      );
      serving.add(id);
      phase = `${id} back`;
    }
    stop = true;
    await Promise.all(writers);
    for (const id of ids) assert.equal(procs.get(id)!.exitCode, null, `${id} is still running at the end`);
    assert.equal(failed, 0, `no write failed (first: ${firstFailure})`);
    for (const id of ids) {
      for (const [key, value] of acked) {
        const r = await fetch(`${admin.get(id)}/kv/${key}`);
        assert.equal(await r.text(), value, `${key} on ${id}`);
      }
    }
    t.diagnostic(`${acked.size} keys, last values verified on every node after rolling through ${ids.length} nodes`);
  } finally {
    stop = true;
    c.cleanup();
  }
});
