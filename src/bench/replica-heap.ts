// Heap per idle replica: 3 shards in one process (LogStore without fsync, built-in KV), wired by
// an in-memory network, GROUPS groups each, elected and quiesced; then a forced collection and a
// heap snapshot. Prints the heap in use per replica, who holds the arrays, Maps, Sets and plain
// objects (parent . field), and bytes per constructor: where an idle replica's memory goes.
//   node --expose-gc --import tsx src/bench/replica-heap.ts [groups]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogStore } from '../storage/logstore.js';
import { Shard } from '../runtime/shard.js';
import type { Message, NodeId } from '../raft/types.js';
const IDS = ['n1', 'n2', 'n3'];
const G = Number(process.argv[2] ?? 10000);
const root = mkdtempSync(join(tmpdir(), 'mem-'));
const shards = new Map<string, Shard>();
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
gc();
const h0 = process.memoryUsage().heapUsed;
for (const id of IDS) {
  const store = await LogStore.open({ path: join(root, id), noSync: true });
  const send = (to: NodeId, msgs: Message[]) => setImmediate(() => shards.get(to)!.receive(msgs));
  const s = Shard.open({ nodeId: id, store, send, tickMs: 100, raft: { electionTicks: 10 }, seed: 1 });
  for (let g = 1; g <= G; g++) s.createGroup(g, { voters: IDS, learners: [] });
  shards.set(id, s);
}
for (const s of shards.values()) s.start();
for (;;) {
  const q = [...shards.values()].reduce((a, s) => a + s.summary().quiesced, 0);
  const l = [...shards.values()].reduce((a, s) => a + s.summary().leaders, 0);
  if (q === 3 * G && l === G) break;
  await sleep(500);
}
await sleep(4000);
gc();
gc();
const h1 = process.memoryUsage().heapUsed;
console.log(`heap per replica ${((h1 - h0) / (3 * G)).toFixed(0)} B`);
const file = writeHeapSnapshot(join(root, 'h.heapsnapshot'));
const snap = JSON.parse(readFileSync(file, 'utf8'));
const f = snap.snapshot.meta.node_fields as string[];
const types = snap.snapshot.meta.node_types[0] as string[];
const n = f.length;
const nodes = snap.nodes as number[];
const strings = snap.strings as string[];
const by = new Map<string, { count: number; size: number }>();
for (let i = 0; i < nodes.length; i += n) {
  const type = types[nodes[i]];
  const name = type === 'object' || type === 'closure' ? strings[nodes[i + 1]] : `(${type})`;
  const e = by.get(name) ?? { count: 0, size: 0 };
  e.count++;
  e.size += nodes[i + 3];
  by.set(name, e);
}
// Who holds the arrays, Arrays and Objects: parent name . edge name.
const ef = snap.snapshot.meta.edge_fields as string[];
const etypes = snap.snapshot.meta.edge_types[0] as string[];
const edges = snap.edges as number[];
const en = ef.length;
const held = new Map<string, { count: number; size: number }>();
let ei = 0;
for (let i = 0; i < nodes.length; i += n) {
  const ec = nodes[i + 4];
  const ptype = types[nodes[i]];
  const pname = ptype === 'object' || ptype === 'closure' ? strings[nodes[i + 1]] : `(${ptype})`;
  for (let k = 0; k < ec; k++, ei += en) {
    const et = etypes[edges[ei]];
    if (et === 'weak') continue;
    const to = edges[ei + 2];
    const ttype = types[nodes[to]];
    const tname = ttype === 'object' ? strings[nodes[to + 1]] : `(${ttype})`;
    if (!(tname === '(array)' || tname === 'Array' || tname === 'Object' || tname === 'Map' || tname === 'Set'))
      continue;
    const edgeName = et === 'element' || et === 'hidden' ? `[${et}]` : strings[edges[ei + 1]];
    const key = `${tname} <- ${pname}.${edgeName}`;
    const e = held.get(key) ?? { count: 0, size: 0 };
    e.count++;
    e.size += nodes[to + 3];
    held.set(key, e);
  }
}
for (const [k, v] of [...held.entries()].sort((a, b) => b[1].size - a[1].size).slice(0, 40))
  console.log(
    `${(v.size / (3 * G)).toFixed(0).padStart(6)} B/replica ${(v.count / (3 * G)).toFixed(2).padStart(7)} /replica  ${k}`,
  );
console.log('---');
const rows = [...by.entries()].sort((a, b) => b[1].size - a[1].size).slice(0, 40);
for (const [k, v] of rows)
  console.log(
    `${(v.size / (3 * G)).toFixed(0).padStart(6)} B/replica ${(v.count / (3 * G)).toFixed(2).padStart(7)} /replica  ${k}`,
  );
for (const sh of shards.values()) await sh.stop();
rmSync(root, { recursive: true, force: true });
process.exit(0);
