// A replica killed in the middle of the commit that installs a snapshot (just before or just
// after its WAL append) must come back with the snapshot's contents: never with a log that starts
// past the snapshot over a state machine that never got it (which would silently count the
// entries in between as applied). And a store found in that state anyway refuses to start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogStore, type CrashPoint } from '../../src/storage/logstore.js';
import { Shard } from '../../src/runtime/shard.js';
import { KvStateMachine } from '../../src/storage/kv.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import type { Message, NodeId } from '../../src/raft/types.js';
import { until } from '../helpers/net.js';

const enc = new TextEncoder();
const IDS: NodeId[] = ['n1', 'n2', 'n3'];
const CONF = { voters: IDS, learners: [] };
const KEYS = 120;
const text = (i: number) => `v${i}`.padEnd(200, '.');
const bytesOf = (i: number) => enc.encode(text(i));
const dec = new TextDecoder();

for (const at of ['afterWal', 'beforeWal'] as CrashPoint[]) {
  test(`a replica killed ${at === 'afterWal' ? 'after' : 'before'} the WAL append of a snapshot install restarts with its contents`, async () => {
    const root = mkdtempSync(join(tmpdir(), 'flotilla-snapcrash-'));
    const shards = new Map<NodeId, Shard>();
    const stores = new Map<NodeId, LogStore>();
    const down = new Set<NodeId>();
    const send = (from: NodeId) => (to: NodeId, msgs: Message[]) =>
      setImmediate(() => {
        if (!down.has(from) && !down.has(to)) shards.get(to)?.receive(msgs);
      });
    const openShard = async (id: NodeId, create: boolean) => {
      const store = await LogStore.open({ path: join(root, id), noSync: true });
      stores.set(id, store);
      const s = Shard.open({
        nodeId: id,
        store,
        send: send(id),
        tickMs: 10,
        raft: { electionTicks: 10 },
        seed: 5,
        requestTimeoutMs: 3000,
        retainEntries: 2,
        stateMachine: (st) => new KvStateMachine(st, { flushIntervalMs: 20 }),
      });
      shards.set(id, s);
      s.start();
      if (create) s.createGroup(1, CONF);
      return s;
    };
    const kv = (id: NodeId) => shards.get(id)!.sm as KvStateMachine;
    const read = (id: NodeId, k: string) => {
      const v = kv(id).get(1, enc.encode(k));
      return v === null ? null : dec.decode(v);
    };
    try {
      for (const id of IDS) await openShard(id, true);
      const leader = () => IDS.find((id) => id !== 'n3' && shards.get(id)!.status(1).role === 'leader');
      await until('group 1 led by n1 or n2', () => leader() !== undefined, 30_000);
      const lead = () => shards.get(leader() ?? 'n1')!;
      const retry = async <T>(fn: () => Promise<T>): Promise<T> => {
        for (let i = 0; ; i++) {
          try {
            return await fn();
          } catch (e) {
            if (i >= 200 || !(e as { retryable?: boolean }).retryable) throw e;
            await sleep(20);
          }
        }
      };
      // n3 is cut off while the group writes and compacts past everything n3 has.
      down.add('n3');
      for (const id of IDS) if (id !== 'n3') shards.get(id)!.peerDown('n3');
      for (let i = 0; i < KEYS; i++)
        await retry(() => lead().propose(1, { op: 'put', key: enc.encode(`k${i}`), value: bytesOf(i) }));
      let extra = 0;
      await until(
        'the leader compacted its log',
        async () => {
          await retry(() => lead().propose(1, { op: 'put', key: enc.encode(`x${extra++}`), value: enc.encode('x') }));
          return lead().status(1).firstIndex > KEYS;
        },
        20_000,
      );
      const n3 = shards.get('n3')!;
      const before = n3.status(1).applied;
      assert.equal(kv('n3').get(1, enc.encode(`k${KEYS - 1}`)), null, 'n3 missed the writes');

      // n3 comes back; the commit that installs the leader's snapshot dies at `at`.
      stores.get('n3')!.injectCrash(at);
      down.delete('n3');
      for (const id of IDS) if (id !== 'n3') shards.get(id)!.peerUp('n3');
      await until('n3 failed in its install commit', () => stores.get('n3')!.failed !== null, 20_000);
      down.add('n3');
      await n3.stop();
      await stores.get('n3')!.close();

      // Restart n3 alone (still cut off): what it has is its own disk.
      const again = await openShard('n3', false);
      const st = stores.get('n3')!.storage(1);
      const snapAt = st.firstIndex() - 1;
      assert.ok(snapAt > before, `the install's metadata is durable (snapshot at ${snapAt}, n3 had ${before})`);
      assert.ok(
        kv('n3').applied(1) >= snapAt,
        `state machine applied ${kv('n3').applied(1)} is not behind the log's snapshot at ${snapAt}`,
      );
      for (let i = 0; i < KEYS; i++) assert.equal(read('n3', `k${i}`), text(i), `k${i} after the restart`);
      assert.ok(again.status(1).applied >= snapAt);

      // And it rejoins: later writes reach it.
      down.delete('n3');
      for (const id of IDS) if (id !== 'n3') shards.get(id)!.peerUp('n3');
      await retry(() => lead().propose(1, { op: 'put', key: enc.encode('after'), value: enc.encode('y') }));
      await until('n3 has the write after the restart', () => kv('n3').get(1, enc.encode('after')) !== null, 15_000);
      for (let i = 0; i < KEYS; i++) assert.equal(read('n3', `k${i}`), text(i));
    } finally {
      for (const s of shards.values()) await s.stop().catch(() => {});
      for (const s of stores.values()) await s.close().catch(() => {});
      await sleep(10);
      rmSync(root, { recursive: true, force: true });
    }
  });
}

test('a store whose log starts past the state machine refuses to start that group', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-snapguard-'));
  try {
    let store = await LogStore.open({ path: join(root, 'n1'), noSync: true });
    store.createGroup(7, CONF);
    await store.commit();
    // The log alone moves past index 10 (as the old install order could leave it after a crash).
    store.write({ group: 7, snapshot: { index: 10, term: 2, conf: CONF } });
    await store.commit();
    await store.close();
    store = await LogStore.open({ path: join(root, 'n1'), noSync: true });
    assert.throws(
      () =>
        Shard.open({
          nodeId: 'n1',
          store,
          send: () => {},
          stateMachine: (st) => new KvStateMachine(st),
        }),
      (e: unknown) =>
        e instanceof RuntimeError &&
        e.code === 'StorageFailed' &&
        /group 7 .*applied 0 .*snapshot at 10/.test(e.message),
    );
    await store.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('an install whose WAL record was lost is redone from its marker, once', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-snapredo-'));
  const path = join(root, 'n1');
  const normal = (index: number, term: number) => ({
    index,
    term,
    type: 'normal' as const,
    data: enc.encode(`e${index}`),
  });
  try {
    let store = await LogStore.open({ path, noSync: true });
    store.createGroup(3, CONF);
    // Entries 1..8 of term 1, only 2 known committed: 3..8 are stale (another leader's log differs).
    store.write({
      group: 3,
      entries: [1, 2, 3, 4, 5, 6, 7, 8].map((i) => normal(i, 1)),
      hardState: { term: 1, vote: 'n1', commit: 2 },
    });
    await store.commit();
    const side = store.openDB<string, string>('side', { encoding: 'json' });
    store.write({ group: 3, snapshot: { index: 6, term: 2, conf: CONF } });
    store.injectCrash('beforeWal');
    await assert.rejects(
      store.commit(undefined, () => void side.put('image', 'at 6')),
      (e: unknown) => e instanceof Error && /injected crash before the WAL append/.test(e.message),
    );
    await store.close();

    const check = async (last: number) => {
      store = await LogStore.open({ path, noSync: true });
      const st = store.storage(3);
      assert.equal(st.firstIndex(), 7, 'the snapshot at 6 is the start of the log');
      assert.equal(st.lastIndex(), last);
      assert.equal(st.term(6), 2);
      assert.equal(store.openDB<string, string>('side', { encoding: 'json' }).get('image'), 'at 6');
    };
    // The image committed before the WAL record; start-up redoes the install from its marker
    // (the stale entries after it go with it), again after a second crash before any commit.
    await check(6);
    await store.close();
    await check(6);
    // The next commit writes the install into the WAL; later records are not undone by the marker.
    await store.commit();
    store.write({ group: 3, entries: [7, 8, 9].map((i) => normal(i, 2)) });
    await store.commit();
    await store.close();
    await check(9);
    await store.checkpoint();
    await store.close();
    await check(9);
    await store.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
