// Child process of logstore-crash.test.ts: writes to a LogStore + KvStateMachine as fast as it can
// until it is SIGKILLed. It acknowledges an entry on stdout only after the commit that made it
// durable has resolved. The KV flushes its memtable every few commits (as in a shard), so a kill
// often lands between applying and flushing. On start it resumes from what is on disk: like a
// restarted shard, it re-applies the committed entries after the KV's durable applied index.
//
//   node --import tsx logstore-crash-child.ts <dir> <seed>
//
// (Not importable: running the module starts the loop. The test mirrors GROUPS, keyOf, valueFor.)
// stdout, one JSON object per line:
//   {"ready":{...}}             recovered and about to write (with the exactly-once check result)
//   {"a":[[group,index,token],...]}   acknowledged entries of one commit
//   {"ck":n}                    n checkpoints done so far (reported when one happens)
import { LogStore } from '../../src/storage/logstore.js';
import { KvStateMachine, kvEntryData } from '../../src/storage/kv.js';
import { seededRandom } from '../../src/raft/rand.js';
import type { Entry } from '../../src/raft/types.js';

const GROUPS = 50;
const KEYS_PER_GROUP = 3;
const CONF = { voters: ['n1', 'n2', 'n3'], learners: [] };

const keyOf = (index: number): string => `k${index % KEYS_PER_GROUP}`;
const valueFor = (group: number, index: number, token: string): string => `${group}:${index}:${token}`;

const enc = new TextEncoder();
const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};

async function main(): Promise<void> {
  const [dir, seedArg] = process.argv.slice(2);
  if (!dir) throw new Error('usage: logstore-crash-child.ts <dir> <seed>');
  const rand = seededRandom(Number(seedArg ?? 1));
  let checkpoints = 0;
  const store = await LogStore.open({
    path: dir,
    checkpointBytes: 48 * 1024,
    onEvent: (e) => {
      if (e.kind === 'checkpoint') out({ ck: ++checkpoints });
    },
  });
  const kv = new KvStateMachine(store, { flushIntervalMs: 15 });

  let created = 0;
  for (let g = 1; g <= GROUPS; g++) {
    if (!store.has(g)) {
      store.createGroup(g, CONF);
      created++;
    }
  }
  if (created > 0) await store.commit();

  // A restarted Raft node re-delivers committed entries from its applied index or earlier: they
  // must all be skipped. Then it replays what was committed after the durable applied index.
  let redelivered = 0;
  let violations = 0;
  let replayed = 0;
  const term = new Map<number, number>();
  for (let g = 1; g <= GROUPS; g++) {
    const gs = store.storage(g);
    const applied = kv.applied(g);
    const lo = Math.max(gs.firstIndex(), applied - 3);
    if (lo <= applied && applied <= gs.lastIndex()) {
      const es = gs.entries(lo, applied + 1, Infinity);
      redelivered += es.length;
      violations += kv.apply(g, es).filter((r) => r !== null).length;
    }
    const commit = gs.initialState().hardState.commit;
    if (commit > applied) {
      const es = gs.entries(applied + 1, commit + 1, Infinity);
      replayed += es.length;
      kv.apply(g, es);
    }
    term.set(g, gs.initialState().hardState.term + 1); // a new term per incarnation
  }
  out({ ready: { created, redelivered, violations, replayed, pid: process.pid } });

  for (let iter = 0; ; iter++) {
    const acks: [number, number, string][] = [];
    for (let g = 1; g <= GROUPS; g++) {
      if (rand() < 0.4) continue;
      const gs = store.storage(g);
      const t = term.get(g)!;
      const last = gs.lastIndex();
      const n = 1 + Math.floor(rand() * 3);
      const es: Entry[] = [];
      for (let i = last + 1; i <= last + n; i++) {
        const token = Math.floor(rand() * 2 ** 32)
          .toString(16)
          .padStart(8, '0');
        const cmd = { op: 'put' as const, key: enc.encode(keyOf(i)), value: enc.encode(valueFor(g, i, token)) };
        es.push({ index: i, term: t, type: 'normal', data: kvEntryData(cmd) });
        acks.push([g, i, token]);
      }
      const newLast = last + n;
      store.write({ group: g, entries: es, hardState: { term: t, vote: 'n1', commit: newLast } });
      kv.apply(g, es);
      // Never past the durable applied index: the entries after it are what a restart replays.
      const upTo = Math.min(newLast - 12, kv.compactableTo(g));
      if (rand() < 0.03 && upTo >= gs.firstIndex()) store.compact(g, upTo);
    }
    const w = kv.prepareWrite();
    await store.commit(w ?? undefined);
    if (w) kv.committed();
    out({ a: acks, f: w !== null });
    if (iter % 37 === 36) await store.checkpoint();
  }
}

main().catch((e) => {
  process.stderr.write(`crash child failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(3);
});
