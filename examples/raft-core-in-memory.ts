// The Raft core driven by a minimal host: three replicas of one group in one process, an
// in-memory "network" and MemoryStorage. Shows the host contract every runtime follows:
//   ready() → send `messages` → persist → send `messagesAfterPersist` → apply `committed` → advance()
// Then it moves leadership with a planned transfer and keeps writing.
// Run: npx tsx examples/raft-core-in-memory.ts
import { MemoryStorage, RaftNode, seededRandom, type Message, type NodeId } from '../src/raft/index.js';

const ids: NodeId[] = ['n1', 'n2', 'n3'];
const conf = { voters: ids, learners: [] };
const storages = new Map(ids.map((id) => [id, new MemoryStorage(conf)]));
const nodes = new Map(
  ids.map((id, i) => [id, new RaftNode({ id, group: 1, storage: storages.get(id)!, random: seededRandom(i + 1) })]),
);
const applied = new Map<NodeId, string[]>(ids.map((id) => [id, []]));
let inFlight: Message[] = [];

/** One host loop turn for every replica, then deliver what they sent. */
function turn(): void {
  for (const [id, node] of nodes) {
    while (node.hasReady()) {
      const rd = node.ready();
      const storage = storages.get(id)!;
      inFlight.push(...rd.messages); // may leave before the local write (leader appends, heartbeats)
      if (rd.snapshot) storage.applySnapshot(rd.snapshot);
      storage.append(rd.entries); // a real host writes these durably (the LMDB LogStore does)
      if (rd.hardState) storage.setHardState(rd.hardState);
      if (rd.conf) storage.conf = rd.conf;
      inFlight.push(...rd.messagesAfterPersist); // acks and votes: only after the write
      for (const e of rd.committed) {
        if (e.type === 'normal' && e.data.byteLength > 0) applied.get(id)!.push(new TextDecoder().decode(e.data));
      }
      for (const t of rd.transfers) console.log(`${id}: transfer to ${t.target} ${t.status} after ${t.ticks} ticks`);
      if (rd.softState)
        console.log(`${id}: ${rd.softState.role} in term ${rd.softState.term} (leader ${rd.softState.leader || '-'})`);
      node.advance();
    }
  }
  const batch = inFlight;
  inFlight = [];
  for (const m of batch) nodes.get(m.to)?.step(m);
}

function settle(): void {
  for (let i = 0; i < 50 && (inFlight.length > 0 || [...nodes.values()].some((n) => n.hasReady())); i++) turn();
}

function leader(): NodeId {
  return [...nodes.values()].find((n) => n.status().role === 'leader')!.id;
}

// Elect by ticking, as a host's timer would (a tick = one heartbeat interval).
while (![...nodes.values()].some((n) => n.status().role === 'leader')) {
  for (const n of nodes.values()) n.tick();
  settle();
}
const first = leader();
for (let i = 1; i <= 3; i++) nodes.get(first)!.propose(new TextEncoder().encode(`set x=${i}`));
settle();

// Planned transfer: the target is caught up, so it takes over without a single tick.
const target = ids.find((id) => id !== first)!;
console.log(`transfer ${first} -> ${target}:`, nodes.get(first)!.transferLeader(target));
settle();
nodes.get(leader())!.propose(new TextEncoder().encode('set y=after-transfer'));
settle();

for (const id of ids) console.log(`${id} applied: ${applied.get(id)!.join(', ')}`);
const same = ids.every((id) => applied.get(id)!.join() === applied.get(first)!.join());
console.log(same && leader() === target ? 'OK: all replicas applied the same commands; leadership moved' : 'MISMATCH');
process.exitCode = same && leader() === target ? 0 : 1;
