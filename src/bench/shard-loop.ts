// The shard loop alone: 3 shards in one process (LogStore without fsync unless SYNC=1, built-in
// KV), wired by an in-memory network through RaftBatchCodec, no TCP, no threads. Proposers write
// to groups in turn (one entry per group per round when groups >> proposers): what a loop turn
// and a group round cost in CPU, apart from syscalls and the network.
//   node --import tsx src/bench/shard-loop.ts [groups] [proposers] [seconds]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogStore } from '../storage/logstore.js';
import { Shard } from '../runtime/shard.js';
import { RaftBatchCodec, RaftBatchError } from '../transport/raftbatch.js';
import { encodeCommand, SessionClient } from '../storage/session.js';
import { encodeKvCommand } from '../storage/kv.js';
import type { Message, NodeId } from '../raft/types.js';
const IDS = ['n1', 'n2', 'n3'];
const G = Number(process.argv[2] ?? 1000);
const CONC = Number(process.argv[3] ?? 16);
const SECS = Number(process.argv[4] ?? 5);
const root = mkdtempSync(join(tmpdir(), 'sb-'));
const shards = new Map<string, Shard>();
const codec = new RaftBatchCodec();
for (const id of IDS) {
  const store = await LogStore.open({ path: join(root, id), noSync: process.env.SYNC !== '1' });
  const send = (to: NodeId, msgs: Message[]) => {
    const b = codec.encode(msgs);
    setImmediate(() => {
      const r = codec.decode(b);
      if (!(r instanceof RaftBatchError)) shards.get(to)!.receive(r.messages);
    });
  };
  const s = Shard.open({ nodeId: id, store, send, tickMs: 100, raft: { electionTicks: 10 }, seed: 1 });
  for (let g = 1; g <= G; g++) s.createGroup(g, { voters: IDS, learners: [] });
  shards.set(id, s);
}
for (const s of shards.values()) s.start();
// wait for leaders
const leaderOf = (g: number) => IDS.find((id) => shards.get(id)!.status(g).role === 'leader');
for (;;) {
  let n = 0;
  for (let g = 1; g <= G; g++) if (leaderOf(g)) n++;
  if (n === G) break;
  await sleep(200);
}
await sleep(3000);
const leaders = Array.from({ length: G + 1 }, (_, g) => (g === 0 ? '' : leaderOf(g)!));
const session = new SessionClient('bench');
let writes = 0;
const end = performance.now() + SECS * 1000;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let gi = 0;
async function proposer() {
  while (performance.now() < end) {
    gi = (gi * 7919 + 13) % G;
    const g = gi + 1;
    const h = session.begin();
    try {
      await shards
        .get(leaders[g])!
        .propose(
          g,
          encodeCommand(
            h,
            encodeKvCommand({ op: 'put', key: new TextEncoder().encode(`k${g}`), value: new Uint8Array(16) }),
          ),
        );
      writes++;
    } catch {
      /* leadership moved */
    }
    session.done(h.seq);
  }
}
await Promise.all(Array.from({ length: CONC }, proposer));
const secs = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const commits = [...shards.values()].reduce((a, s) => a + s.stats.commits, 0);
const loops = [...shards.values()].reduce((a, s) => a + s.stats.loops, 0);
const readies = [...shards.values()].reduce((a, s) => a + s.stats.readies, 0);
console.log(
  `${G} groups, ${CONC} proposers: ${Math.round(writes / secs)} writes/s, ${((cpu.user + cpu.system) / writes).toFixed(1)} µs CPU per write ` +
    `(3 shards, one thread); per write: ${(loops / writes).toFixed(2)} turns, ${(commits / writes).toFixed(2)} commits, ${(readies / writes).toFixed(2)} Readies (all shards, setup included)`,
);
for (const s of shards.values()) await s.stop();
rmSync(root, { recursive: true, force: true });
process.exit(0);
