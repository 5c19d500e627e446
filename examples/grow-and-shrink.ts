// Growing and shrinking a running cluster, embedded: three nodes in this process serve writes;
// a fourth joins through one member's address and the replica mover fills it (each node ends
// within the fair-share band); then one of the original nodes is decommissioned: the mover
// moves its replicas away and marks it removed. A writer runs throughout: no write fails, and
// every acknowledged write reads back at the end.
//
//   npx tsx examples/grow-and-shrink.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNode, type FlotillaNode, type StartOptions } from '../src/index.js';
import { freePorts } from '../src/bench/ports.js';

const GROUPS = 30;
const root = mkdtempSync(join(tmpdir(), 'flotilla-grow-'));
const ports = await freePorts(4);
const addr = (i: number) => `127.0.0.1:${ports[i]}`;
const common = (id: string, i: number): StartOptions => ({
  id,
  dataDir: join(root, id),
  listen: addr(i),
  workers: 0,
  tickMs: 20,
  labels: { zone: `zone-${i + 1}` },
});

async function until(what: string, cond: () => boolean, ms = 120_000): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
  return Date.now() - t0;
}

const show = (n: FlotillaNode) =>
  n
    .clusterNodes()
    .map((c) => `${c.id}=${c.replicas}${c.state === 'active' ? '' : `(${c.state})`}`)
    .join(' ');

const nodes: FlotillaNode[] = [];
try {
  const ids = ['n1', 'n2', 'n3'];
  for (const [i, id] of ids.entries())
    nodes.push(
      await startNode({
        ...common(id, i),
        groups: GROUPS,
        peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr(ids.indexOf(p))])),
      }),
    );
  const [n1, , n3] = nodes;
  await n1.kv.put('hello', 'world', { timeoutMs: 30_000 });
  console.log(`3 nodes, ${GROUPS} groups: ${show(n1)}`);

  // A writer through n3 for the whole story.
  const acked: string[] = [];
  let failed = 0;
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      try {
        await n3.kv.put(`key-${i}`, `value-${i}`);
        acked.push(`key-${i}`);
      } catch (e) {
        failed++;
        console.log(`write failed: ${(e as Error).message}`);
      }
    }
  })();

  // Grow: n4 joins through n2's address, with an empty data dir and no peer list.
  const n4 = await startNode({ ...common('n4', 3), join: addr(1) });
  nodes.push(n4);
  console.log(`n4 joined cluster ${n4.clusterId}: ${show(n1)}`);
  const total = () => n1.clusterNodes().reduce((a, c) => a + c.replicas, 0);
  const balanced = () => {
    const active = n1.clusterNodes().filter((c) => c.state === 'active');
    const share = total() / active.length;
    return active.every((c) => Math.abs(c.replicas - share) <= Math.max(1, 0.05 * share));
  };
  const filled = await until('the mover to fill n4', balanced);
  console.log(`balanced ${filled} ms after the join: ${show(n1)}`);

  // Shrink: decommission n1 (asked of any node); the mover empties it, then marks it removed.
  await n3.decommission('n1');
  const emptied = await until(
    'n1 to be removed',
    () => n3.clusterNodes().find((c) => c.id === 'n1')?.state === 'removed',
  );
  console.log(`n1 removed ${emptied} ms after its decommission: ${show(n3)}`);

  writing = false;
  await writer;
  for (const k of acked) {
    const v = await n4.kv.get(k);
    if (v === null || new TextDecoder().decode(v) !== `value-${k.slice(4)}`) throw new Error(`${k} lost`);
  }
  console.log(`writes: ${acked.length} acknowledged, ${failed} failed`);
  if (failed > 0) throw new Error('a write failed');
  console.log(`OK: n4 joined and was filled, n1 was emptied and removed, every acknowledged write reads back`);
} finally {
  for (const n of nodes) await n.stop().catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
}
