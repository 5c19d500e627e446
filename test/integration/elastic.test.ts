// An elastic cluster in one process (TCP on 127.0.0.1, LMDB): a fourth node joins three through
// one member's address, learns the topology and serves keys it holds no replica of; every member
// links to it; bad joins (a duplicate id or address, a wrong secret) are refused with their typed
// reason while the cluster keeps serving; a replica moves onto the new node; a decommissioned node
// is emptied by the mover, removed, and refused when it tries to come back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  HandshakeError,
  startNode,
  type FlotillaNode,
  type NodeChangeEvent,
  type StartOptions,
} from '../../src/index.js';
import { freePorts, until } from '../helpers/net.js';

const GROUPS = 8;
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Puts keys through `node` one after another until stopped; resolves with the acknowledged ones. */
function writer(node: FlotillaNode, prefix: string) {
  const acked: string[] = [];
  const errors: string[] = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      const k = `${prefix}-${i}`;
      try {
        await node.kv.put(k, k, { timeoutMs: 15_000 });
        acked.push(k);
      } catch (e) {
        errors.push(`${k}: ${(e as Error).message}`);
      }
    }
  })();
  return {
    errors,
    get failed() {
      return errors.length;
    },
    stop: async () => {
      running = false;
      await done;
      return acked;
    },
  };
}
const SECRET = 'elastic-test-secret-0123456789';

test('nodes join and leave a running cluster', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-elastic-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(6);
  const addr = (i: number) => `127.0.0.1:${ports[i]}`;
  const base = (id: string, i: number): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr(i),
    tickMs: 20,
    requestTimeoutMs: 8000,
    workers: 0,
    noSync: true,
    balancer: { enabled: false },
    transportSecurity: { secret: SECRET },
    replicas: { repairDelayMs: 2_000 },
  });
  const optsOf = (id: string): StartOptions => {
    const i = ids.indexOf(id);
    return {
      ...base(id, i),
      groups: GROUPS,
      labels: { zone: `z${i + 1}` },
      peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr(ids.indexOf(p))])),
    };
  };
  const nodes = new Map<string, FlotillaNode>();
  try {
    for (const id of ids) nodes.set(id, await startNode(optsOf(id)));
    const n1 = nodes.get('n1')!;
    const changes: NodeChangeEvent[] = [];
    n1.on('nodeChange', (e) => changes.push(e));
    await until(
      'every group led',
      async () =>
        (await Promise.all([...nodes.values()].map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0) === GROUPS,
      30_000,
    );
    for (let k = 0; k < 40; k++) await n1.kv.put(`before-${k}`, `v${k}`);

    await t.test('a fourth node joins through one member and serves every key', async () => {
      const n4 = await startNode({ ...base('n4', 3), join: addr(1), labels: { zone: 'z4' } });
      nodes.set('n4', n4);
      assert.equal(n4.clusterId, n1.clusterId);
      for (let k = 0; k < 40; k++) assert.equal(dec((await n4.kv.get(`before-${k}`))!), `v${k}`);
      await n4.kv.put('from-n4', 'x');
      assert.equal(dec((await n1.kv.get('from-n4'))!), 'x');
      for (const id of ids)
        await until(`${id} links to n4`, async () => (await nodes.get(id)!.status()).peers.includes('n4'));
      const listed = n1.clusterNodes();
      assert.deepEqual(
        listed.map((n) => [n.id, n.state]),
        [
          ['n1', 'active'],
          ['n2', 'active'],
          ['n3', 'active'],
          ['n4', 'active'],
        ],
      );
      assert.deepEqual(listed.find((n) => n.id === 'n4')!.labels, { zone: 'z4' });
      // The record was first written knowing only its writer's labels; each node states its own.
      await until('every bootstrap node states its zone', () =>
        n1.clusterNodes().every((n) => n.labels.zone === `z${n.id.slice(1)}`),
      );
      assert.equal(listed.find((n) => n.id === 'n4')!.replicas, 0);
      assert.deepEqual(
        changes.map((c) => [c.node, c.previous, c.state]),
        [['n4', null, 'active']],
        'one event: the join (the bootstrap nodes are not news)',
      );
    });

    await t.test('bad joins are refused with a typed reason; the cluster keeps serving', async () => {
      const refused = async (o: StartOptions, reason: string) => {
        await assert.rejects(startNode(o), (e: unknown) => e instanceof HandshakeError && e.reason === reason);
      };
      await refused({ ...base('n2', 4), dataDir: join(root, 'dup-id'), join: addr(0) }, 'DuplicateId');
      await refused({ ...base('n5', 4), advertise: addr(3), join: addr(0) }, 'DuplicateAddress');
      await refused(
        { ...base('n5', 4), transportSecurity: { secret: 'another-secret-0123456789' }, join: addr(0) },
        'Unauthenticated',
      );
      // A data dir of a bootstrapped node (another cluster's, or this one's) is not an empty one.
      await assert.rejects(
        startNode({ ...base('n9', 5), dataDir: join(root, 'n1'), join: addr(0) }),
        /already holds node n1 of cluster/,
      );
      await n1.kv.put('after-bad-joins', 'ok');
      assert.equal(n1.clusterNodes().length, 4);
    });

    await t.test('the mover fills the new node under writes: replicas within the band, no write lost', async () => {
      const w = writer(n1, 'fill');
      // 8 groups of 3 and group 0 of 3 over 4 nodes: 6.75 each, the band [6, 7].
      await until(
        'replicas balanced over four nodes',
        () => n1.clusterNodes().every((n) => n.replicas >= 6 && n.replicas <= 7),
        60_000,
      );
      const acked = await w.stop();
      assert.equal(w.failed, 0, `failed writes: ${w.errors.join('; ')}`);
      assert.ok(acked.length > 0);
      const n4 = nodes.get('n4')!;
      for (const k of acked) assert.equal(dec((await n4.kv.get(k))!), k);
      const mover = [...nodes.values()].map((n) => n.moverStatus()).find((m) => m.runsHere)!;
      assert.ok(mover, 'one node runs the mover (group 0 leader)');
      const balance = mover.counters.balance;
      assert.ok(balance.completed >= 6, `balance moves completed: ${balance.completed}`);
      assert.equal(balance.failed, 0);
      const leader = [...nodes.values()].find((n) => n.moverStatus().runsHere)!;
      await until('the plan is empty once balanced', () => leader.replicaPlan()?.moves.length === 0);
      assert.match(
        await leader.metrics(),
        /flotilla_replica_moves_total\{node="n\d",kind="balance",outcome="completed"\} [1-9]/,
      );
    });

    await t.test('a decommissioned node is emptied, removed, and refused when it comes back', async () => {
      const n3 = nodes.get('n3')!;
      const w = writer(n1, 'decom');
      const marked = await n3.decommission('n2');
      assert.equal(marked.state, 'decommissioning');
      await until('n2 removed', () => n1.clusterNodes().find((n) => n.id === 'n2')?.state === 'removed', 90_000);
      const acked = await w.stop();
      assert.equal(w.failed, 0, `failed writes: ${w.errors.join('; ')}`);
      assert.equal(n1.clusterNodes().find((n) => n.id === 'n2')!.replicas, 0);
      for (const id of ['n1', 'n3', 'n4'])
        await until(`${id} dropped its link to n2`, async () => !(await nodes.get(id)!.status()).peers.includes('n2'));
      for (const k of acked) assert.equal(dec((await n3.kv.get(k))!), k);
      // Cancelling is refused now; a decommission that would leave too few nodes is refused.
      await assert.rejects(n1.cancelDecommission('n2'), /IllegalTransition/);
      await assert.rejects(n1.decommission('n3'), /would leave 2 active nodes/);
      const n2 = nodes.get('n2')!;
      await until('n2 knows it was removed', () => n2.removedFromCluster, 30_000);
      await n2.stop();
      nodes.delete('n2');
      await assert.rejects(startNode(optsOf('n2')), /decommissioned/);
      const n2Changes = changes.filter((c) => c.node === 'n2').map((c) => [c.previous, c.state]);
      assert.deepEqual(n2Changes.at(-1), [n2Changes.length > 1 ? 'decommissioning' : 'active', 'removed']);
    });

    await t.test('a restarted joined node comes back from its data dir alone', async () => {
      await nodes.get('n4')!.stop();
      const n4 = await startNode({ ...base('n4', 3), join: addr(1) });
      nodes.set('n4', n4);
      await n4.kv.put('after-restart', 'y');
      assert.equal(dec((await n4.kv.get('before-3'))!), 'v3');
    });

    await t.test("a new id takes a removed node's address; a dead node's replicas are repaired", async () => {
      // n2 was removed: its address is free for a new node.
      const n5 = await startNode({ ...base('n5', 1), join: addr(0) });
      nodes.set('n5', n5);
      // 27 replicas over n1, n3, n4, n5: the band [6, 7].
      await until(
        'replicas balanced again',
        () => n1.clusterNodes().every((n) => n.state === 'removed' || (n.replicas >= 6 && n.replicas <= 7)),
        60_000,
      );
      const w = writer(n1, 'repair');
      await nodes.get('n4')!.stop();
      nodes.delete('n4');
      // After repairDelayMs the mover replaces every replica n4 held.
      await until(
        'no group keeps a replica on n4',
        () => n1.clusterNodes().find((n) => n.id === 'n4')!.replicas === 0,
        60_000,
      );
      for (const g of n1.groupIds()) assert.equal(n1.replicasOf(g).length, 3, `group ${g} has three replicas`);
      // Replacing the dead node ends with its decommission: it holds nothing, so it is removed at once.
      await n1.decommission('n4');
      await until('n4 removed', () => n1.clusterNodes().find((n) => n.id === 'n4')?.state === 'removed', 30_000);
      const acked = await w.stop();
      assert.equal(w.failed, 0, `failed writes: ${w.errors.join('; ')}`);
      for (const k of acked) assert.equal(dec((await n5.kv.get(k))!), k);
      const repairs = [...nodes.values()].reduce((a, n) => a + n.moverStatus().counters.repair.completed, 0);
      assert.ok(repairs >= 1, `repair moves completed: ${repairs}`);
    });
  } finally {
    for (const n of nodes.values()) await n.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
});
