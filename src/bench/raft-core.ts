// Micro benchmarks of the pure Raft core (no I/O): how much protocol work one thread can do.
// A 3-replica group in memory, driven exactly like a host would (ready → persist → advance).
import { Bench } from 'tinybench';
import { MemoryStorage, RaftNode, seededRandom, type Ready } from '../raft/index.js';
import { MemoryGroup } from '../raft/memgroup.js';

function makeGroup(): MemoryGroup {
  const ids = ['a', 'b', 'c'];
  const conf = { voters: ids, learners: [] };
  const g = new MemoryGroup();
  for (const id of ids) {
    const storage = new MemoryStorage(conf);
    g.storages.set(id, storage);
    g.nodes.set(id, new RaftNode({ id, group: 1, storage, random: seededRandom(id.charCodeAt(0)), maxInflight: 1024 }));
  }
  g.node('a').campaign();
  settle(g);
  return g;
}

/** Drain every node and deliver everything, in rounds, until nothing moves. Returns the number
 *  of entries the leader applied. */
function settle(g: MemoryGroup): number {
  let applied = 0;
  const countApplied = (rd: Ready) => {
    applied += rd.committed.length;
  };
  for (let round = 0; round < 100; round++) {
    for (const id of g.nodes.keys()) g.drain(id, id === 'a' ? countApplied : undefined);
    if (g.queue.length === 0) break;
    const q = g.queue;
    g.queue = [];
    for (const m of q) g.node(m.to).step(m);
  }
  return applied;
}

function compactAll(g: MemoryGroup): void {
  for (const st of g.storages.values()) {
    const last = st.lastIndex();
    if (last - st.firstIndex() > 20000) {
      st.createSnapshot(last - 1000, st.conf, new Uint8Array(0));
      st.compact(last - 1000);
    }
  }
}

export async function benchRaftCore(quick: boolean) {
  const bench = new Bench({ name: 'raft-core', time: quick ? 300 : 1500, warmup: true });
  const payload = new Uint8Array(16);
  for (const batch of [1, 64]) {
    const g = makeGroup();
    bench.add(`3 replicas, propose ${batch} x 16 B then commit`, () => {
      const leader = g.nodes.get('a')!;
      for (let i = 0; i < batch; i++) leader.propose(payload);
      settle(g);
      compactAll(g);
    });
  }
  await bench.run();
  return bench.tasks.map((t) => {
    const r = t.result;
    const batch = t.name.includes('64') ? 64 : 1;
    const lat = r && 'latency' in r ? r.latency : undefined;
    const opsPerSec = lat ? 1000 / lat.mean : 0;
    return {
      name: t.name,
      unit: 'entries/s',
      entriesPerSec: Math.round(opsPerSec * batch),
      latencyMsP50: lat?.p50 ?? null,
      latencyMsP99: lat?.p99 ?? null,
      samples: lat?.samplesCount ?? 0,
    };
  });
}
