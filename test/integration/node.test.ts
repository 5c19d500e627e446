// startNode end to end in one process: three nodes over real TCP on 127.0.0.1, real LMDB.
// Writes and reads through every node (followers forward to leaders), cas, the cluster-id guard,
// and a node going down and coming back (transport liveness wakes quiesced groups).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type FlotillaNode, type StartOptions } from '../../src/runtime/node.js';
import { freePorts, until } from '../helpers/net.js';

const dec = new TextDecoder();

test('three nodes over TCP: writes and linearizable reads on every node, restart, cluster-id guard', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-node-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(3);
  const addr = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const optsOf = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr.get(id)!,
    groups: 12,
    tickMs: 20,
    requestTimeoutMs: 8000,
    workers: 2,
    peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
  });
  const nodes = new Map<string, FlotillaNode>();
  try {
    for (const id of ids) nodes.set(id, await startNode(optsOf(id)));
    await until(
      'every group led',
      async () =>
        (await Promise.all([...nodes.values()].map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0) === 12,
      120_000,
    );

    // Every node writes keys of every group; followers forward to the leader.
    for (const [id, n] of nodes) for (let k = 0; k < 24; k++) await n.kv.put(`${id}-key-${k}`, `v-${id}-${k}`);
    for (const n of nodes.values()) {
      for (const w of ids) {
        for (let k = 0; k < 24; k += 5) assert.equal(dec.decode((await n.kv.get(`${w}-key-${k}`))!), `v-${w}-${k}`);
      }
    }
    const n2 = nodes.get('n2')!;
    assert.deepEqual(await n2.kv.cas('cas-key', null, 'a'), { swapped: true, current: new TextEncoder().encode('a') });
    const second = await n2.kv.cas('cas-key', null, 'b');
    assert.equal(second.swapped, false);
    assert.equal(dec.decode(second.current!), 'a');
    await nodes.get('n3')!.kv.delete('cas-key');
    assert.equal(await nodes.get('n1')!.kv.get('cas-key'), null);

    // n3 goes down: the others keep serving every key (groups it led re-elect).
    await nodes.get('n3')!.stop();
    nodes.delete('n3');
    for (let k = 0; k < 24; k++) await nodes.get('n1')!.kv.put(`after-${k}`, `x${k}`);
    // n3 comes back from disk and catches up.
    const n3 = await startNode(optsOf('n3'));
    nodes.set('n3', n3);
    for (let k = 0; k < 24; k += 3) assert.equal(dec.decode((await n3.kv.get(`after-${k}`))!), `x${k}`);
    assert.equal(dec.decode((await n3.kv.get('n1-key-7'))!), 'v-n1-7', 'written before the restart');

    // A data dir of another cluster configuration is refused with a clear message.
    await assert.rejects(startNode({ ...optsOf('n3'), groups: 13 }), /refusing to start/);
    t.diagnostic(
      JSON.stringify(
        await Promise.all(
          [...nodes.values()].map(async (n) => {
            const s = await n.status();
            return { id: n.id, leaders: s.leaders, quiesced: s.quiesced };
          }),
        ),
      ),
    );
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
