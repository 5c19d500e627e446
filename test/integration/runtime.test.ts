// The multi-worker runtime in one process: three nodes over real TCP, each with two worker
// threads. A user state machine loaded by module path (the bank ledger example), its restart from
// saved blobs plus log replay, run-time group creation and removal, and a worker crash inside a
// node (the shard restarts from disk and its groups rejoin while writes keep succeeding).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNode, type FlotillaNode, type StartOptions } from '../../src/runtime/node.js';
import type { RuntimeError } from '../../src/runtime/errors.js';
import { freePorts, until } from '../helpers/net.js';

const dec = new TextDecoder();
const IDS = ['n1', 'n2', 'n3'];

async function cluster(
  extra: Partial<StartOptions>,
  fn: (nodes: Map<string, FlotillaNode>, optsOf: (id: string) => StartOptions) => Promise<void>,
) {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-rt-'));
  const ports = await freePorts(3);
  const addr = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const optsOf = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr.get(id)!,
    groups: 6,
    tickMs: 20,
    requestTimeoutMs: 15_000,
    workers: 2,
    peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
    ...extra,
  });
  const nodes = new Map<string, FlotillaNode>();
  try {
    await Promise.all(IDS.map(async (id) => nodes.set(id, await startNode(optsOf(id)))));
    await until(
      'every group led',
      async () => {
        const st = await Promise.all([...nodes.values()].map((n) => n.status()));
        return st.reduce((a, s) => a + s.leaders, 0) === nodes.get('n1')!.groupIds().length;
      },
      60_000,
    );
    // Every group led needs only a majority of links: group creation needs every node's.
    await until('every link up', async () =>
      (await Promise.all([...nodes.values()].map((n) => n.status()))).every((s) => s.peers.length === IDS.length - 1),
    );
    await fn(nodes, optsOf);
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

test('a user state machine (bank ledger) by module path: commands, rejections, reads everywhere, restart from blob + log', async () => {
  const module = resolve('examples/bank-ledger/ledger.ts');
  await cluster({ stateMachine: { module, snapshotEvery: 8 } }, async (nodes, optsOf) => {
    const n1 = nodes.get('n1')!;
    const n3 = nodes.get('n3')!;
    for (let g = 1; g <= 6; g++) {
      await n1.propose(g, { op: 'open', account: 'alice', balance: 100 });
      await nodes.get('n2')!.propose(g, { op: 'open', account: 'bob', balance: 0 });
    }
    // 30 transfers per group from every node, so blobs are saved (every 8 entries) and the log is
    // compacted behind them.
    for (let i = 0; i < 30; i++) {
      const from = [...nodes.values()][i % 3];
      for (let g = 1; g <= 6; g++) await from.propose(g, { op: 'transfer', from: 'alice', to: 'bob', amount: 1 });
    }
    assert.deepEqual(await n3.propose(1, { op: 'deposit', account: 'bob', amount: 5 }), { balance: 35 });
    await assert.rejects(
      n3.propose(2, { op: 'transfer', from: 'bob', to: 'alice', amount: 1000 }),
      (e: RuntimeError) => e.code === 'StateMachineError' && /insufficient funds in bob/.test(e.message),
    );
    for (const n of nodes.values()) {
      assert.equal(await n.read(1, { balance: 'bob' }), 35, `${n.id} reads group 1`);
      assert.equal(await n.read(2, { balance: 'alice' }), 70, `${n.id} reads group 2`);
      for (let g = 1; g <= 6; g++)
        assert.equal(
          await n.read(g, { total: true }),
          g === 1 ? 105 : 100,
          `${n.id}: money is conserved in group ${g}`,
        );
    }
    // Restart n3: its ledgers come back from the saved blobs plus the log after them.
    await n3.stop();
    nodes.delete('n3');
    await n1.propose(3, { op: 'deposit', account: 'alice', amount: 1 }); // while n3 is down
    const again = await startNode(optsOf('n3'));
    nodes.set('n3', again);
    for (let g = 1; g <= 6; g++) {
      const want = await n1.read(g, { accounts: true });
      assert.deepEqual(await again.read(g, { accounts: true }), want, `group ${g} after restart`);
    }
    await until(
      'stale reads on n3 caught up',
      async () =>
        JSON.stringify(await again.read(3, { accounts: true }, { consistency: 'stale' })) ===
        JSON.stringify({ alice: 71, bob: 30 }),
      20_000,
    );
  });
});

test('groups created and removed at run time; unknown groups are refused', async () => {
  await cluster({}, async (nodes) => {
    const n2 = nodes.get('n2')!;
    await n2.createGroup(50, ['n1', 'n3']);
    await assert.rejects(n2.createGroup(50), /exists/);
    const n1 = nodes.get('n1')!;
    await until(
      'group 50 led',
      async () =>
        (await n1.status({ detail: true })).perGroup!.some(
          (g) => (g as { group: number; role: string }).group === 50 && (g as { role: string }).role === 'leader',
        ) ||
        (await nodes.get('n3')!.status({ detail: true })).perGroup!.some(
          (g) => (g as { group: number; role: string }).group === 50 && (g as { role: string }).role === 'leader',
        ),
      20_000,
    );
    // n2 is not a replica: it forwards.
    await n2.propose(50, { op: 'put', key: new TextEncoder().encode('k'), value: new TextEncoder().encode('v') });
    assert.equal(dec.decode((await n2.read(50, new TextEncoder().encode('k'))) as Uint8Array), 'v');
    await n1.removeGroup(50);
    for (const n of nodes.values()) {
      await assert.rejects(
        n.propose(50, { op: 'put', key: new TextEncoder().encode('k'), value: new TextEncoder().encode('w') }),
        (e: RuntimeError) => e.code === 'InvalidArgument' && /unknown group 50/.test(e.message),
      );
    }
    assert.equal((await n1.status()).groups, 6, 'n1 hosts its 6 bootstrap groups, and no longer group 50');
  });
});

test('a worker crash inside a node: its shard restarts from disk, its groups rejoin, writes keep succeeding', async () => {
  await cluster({ groups: 8 }, async (nodes) => {
    const n1 = nodes.get('n1')!;
    for (let k = 0; k < 40; k++) await n1.kv.put(`key-${k}`, `v0-${k}`);
    let writes = 0;
    let errors = 0;
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const k = i % 40;
        try {
          await nodes.get(IDS[i % 3])!.kv.put(`key-${k}`, `v1-${k}`);
          writes++;
        } catch {
          errors++;
        }
      }
    })();
    await sleep(300);
    await n1.crashWorker(0);
    await until(
      'the shard is back',
      async () => {
        const st = await n1.status();
        return st.workerRestarts === 1 && st.shards.every((s) => s.up);
      },
      30_000,
    );
    const before = writes;
    await until('writes go on after the restart', () => writes > before + 40, 30_000);
    stop = true;
    await writer;
    assert.equal(errors, 0, 'no write failed: calls during the restart were retried within their deadline');
    for (let k = 0; k < 40; k++) assert.equal(dec.decode((await n1.kv.get(`key-${k}`))!), `v1-${k}`, `key-${k} on n1`);
    const st = await n1.status({ detail: true });
    assert.equal(st.groups, 8, 'n1 hosts all its groups again');
  });
});

test('lease reads (raft.leaseReads): served by the leader from its lease, by followers with a round; values are current', async () => {
  await cluster({ raft: { leaseReads: true } }, async (nodes) => {
    for (let k = 0; k < 30; k++) await nodes.get(IDS[k % 3])!.kv.put(`lease-${k}`, `v${k}`);
    for (const n of nodes.values()) {
      for (let k = 0; k < 30; k += 3) {
        assert.equal(dec.decode((await n.kv.get(`lease-${k}`, 'lease'))!), `v${k}`, `${n.id} lease-reads lease-${k}`);
      }
    }
    // A write then a lease read through another node sees it.
    await nodes.get('n1')!.kv.put('lease-0', 'new');
    assert.equal(dec.decode((await nodes.get('n3')!.kv.get('lease-0', 'lease'))!), 'new');
  });
});
