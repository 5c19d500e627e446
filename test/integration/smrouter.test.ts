// Group 0 of a shard with a user state machine runs the built-in KV (src/runtime/smrouter.ts):
// three shards over their own LMDB stores, a user module (tally-sm) on group 1. Group 0 takes KV
// puts and cas and answers KV reads while group 1 runs the user module; a replica cut off while
// both compact catches up by streamed snapshots of each kind; a restart brings both back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogStore } from '../../src/storage/logstore.js';
import { Shard } from '../../src/runtime/shard.js';
import { GroupRouter } from '../../src/runtime/smrouter.js';
import { UserStateMachineHost, encodeUserCommand, type ShardStateMachine } from '../../src/runtime/statemachine.js';
import { KvStateMachine, encodeKvCommandView, type KvCommand, type KvResult } from '../../src/storage/kv.js';
import { encodeCommand, type SessionHeader } from '../../src/storage/session.js';
import { snapshotStreamLimits } from '../../src/storage/snapstream.js';
import type { Entry, Message, NodeId } from '../../src/raft/types.js';
import { until } from '../helpers/net.js';
import * as tally from '../helpers/tally-sm.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const IDS: NodeId[] = ['n1', 'n2', 'n3'];
const CONF = { voters: IDS, learners: [] };

type Tally = { counters: Record<string, number>; applied: number };

class Cluster {
  readonly shards = new Map<NodeId, Shard>();
  readonly stores = new Map<NodeId, LogStore>();
  readonly down = new Set<NodeId>();
  private seq = 0;

  constructor(readonly root: string) {}

  async open(id: NodeId): Promise<Shard> {
    const store = await LogStore.open({ path: join(this.root, id), noSync: true });
    this.stores.set(id, store);
    const s = Shard.open({
      nodeId: id,
      store,
      send: (to, msgs: Message[]) =>
        setImmediate(() => {
          if (!this.down.has(id) && !this.down.has(to)) this.shards.get(to)?.receive(msgs);
        }),
      tickMs: 10,
      raft: { electionTicks: 10 },
      seed: 5,
      requestTimeoutMs: 3000,
      retainEntries: 2,
      // Saved every 8 entries, so that group 1's log compacts too.
      stateMachine: (st) => new UserStateMachineHost(st, tally, 8),
      snapshotStreams: {
        dir: join(this.root, id, 'snapstage'),
        limits: snapshotStreamLimits({ chunkBytes: 4096, window: 4, ackTimeoutMs: 40, giveUpMs: 5_000 }),
        send: (to, _group, frame) =>
          setImmediate(() => {
            if (!this.down.has(id) && !this.down.has(to)) this.shards.get(to)?.receiveSnapshotFrame(id, frame);
          }),
      },
    });
    this.shards.set(id, s);
    s.start();
    for (const g of [0, 1]) if (!s.has(g)) s.createGroup(g, CONF);
    return s;
  }

  async stop(id: NodeId): Promise<void> {
    await this.shards.get(id)!.stop();
    await this.stores.get(id)!.close();
    this.shards.delete(id);
  }

  leader(g: number): Shard | undefined {
    const ls = [...this.shards].filter(([id, s]) => !this.down.has(id) && s.status(g).role === 'leader');
    return ls.length === 1 ? ls[0][1] : undefined;
  }

  /** Propose through the leader, retrying what is retryable; KV commands go in a session
   *  envelope as the node makes them (encodeKvCommandView), user commands as encodeUserCommand. */
  async propose(g: number, payload: Uint8Array): Promise<unknown> {
    const h: SessionHeader = { client: 'test', seq: ++this.seq, lo: this.seq };
    const data = encodeCommand(h, payload);
    for (let i = 0; ; i++) {
      try {
        const l = this.leader(g);
        if (!l) throw Object.assign(new Error('no leader'), { retryable: true });
        return await l.propose(g, data);
      } catch (e) {
        if (i >= 300 || !(e as { retryable?: boolean }).retryable) throw e;
        await sleep(20);
      }
    }
  }

  kv(g: number, c: KvCommand): Promise<KvResult> {
    return this.propose(g, encodeKvCommandView(c)) as Promise<KvResult>;
  }

  add(g: number, key: string, n: number): Promise<unknown> {
    return this.propose(g, encodeUserCommand({ op: 'add', key, n }));
  }

  async read(id: NodeId, g: number, query: unknown): Promise<unknown> {
    const s = this.shards.get(id)!;
    await until(`${id} reads group ${g}`, async () => {
      await s.readBarrier(g);
      return true;
    });
    return s.read(g, query, 'stale');
  }

  async close(): Promise<void> {
    for (const s of this.shards.values()) await s.stop();
    for (const st of this.stores.values()) await st.close().catch(() => {});
  }
}

const text = (v: unknown) => (v instanceof Uint8Array ? dec.decode(v) : v);

test('group 0 runs the KV beside a user state machine: writes, reads, streamed snapshots, restart', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-smrouter-'));
  const c = new Cluster(root);
  try {
    for (const id of IDS) await c.open(id);
    await until('groups 0 and 1 led', () => c.leader(0) !== undefined && c.leader(1) !== undefined, 60_000);
    for (const id of IDS) assert.ok(c.shards.get(id)!.sm instanceof GroupRouter, `${id} routes by group`);

    // Group 0: a put, a cas that swaps and one that does not, KV reads on every replica.
    assert.deepEqual(await c.kv(0, { op: 'put', key: enc.encode('nodes/n1'), value: enc.encode('a') }), {
      op: 'put',
    });
    const swapped = await c.kv(0, {
      op: 'cas',
      key: enc.encode('nodes/n1'),
      expected: enc.encode('a'),
      value: enc.encode('b'),
    });
    assert.ok(swapped.op === 'cas' && swapped.swapped);
    const refused = await c.kv(0, {
      op: 'cas',
      key: enc.encode('nodes/n1'),
      expected: enc.encode('a'),
      value: enc.encode('c'),
    });
    assert.ok(refused.op === 'cas' && !refused.swapped && text(refused.current) === 'b');
    // Group 1: the user module (a KV command there is the user's to refuse or take).
    assert.equal(await c.add(1, 'x', 2), 2);
    assert.equal(await c.add(1, 'x', 3), 5);
    for (const id of IDS) {
      assert.equal(text(await c.read(id, 0, enc.encode('nodes/n1'))), 'b', `${id}: group 0 answers a KV get`);
      assert.equal(((await c.read(id, 1, { all: true })) as Tally).counters.x, 5, `${id}: group 1 is the user's`);
    }
    await assert.rejects(c.read('n1', 0, { all: true }), /a KV query is a key/, 'group 0 takes KV queries only');

    // n3 is cut off while both groups write and compact past what it has.
    c.down.add('n3');
    for (const id of ['n1', 'n2']) c.shards.get(id)!.peerDown('n3');
    for (let i = 0; i < 60; i++) {
      await c.kv(0, { op: 'put', key: enc.encode(`k${i}`), value: enc.encode(`v${i}`.padEnd(512, '.')) });
      await c.add(1, 'y', 1);
    }
    // The KV flushes every few seconds (then group 0 may compact): write on until both did.
    let extra = 0;
    await until(
      'both groups compacted on the leaders',
      async () => {
        await c.kv(0, { op: 'put', key: enc.encode(`e${extra}`), value: enc.encode('e') });
        await c.add(1, 'z', 1);
        extra++;
        const l0 = c.leader(0);
        const l1 = c.leader(1);
        return !!l0 && !!l1 && l0.status(0).firstIndex > 20 && l1.status(1).firstIndex > 20;
      },
      30_000,
      50,
    );
    c.down.delete('n3');
    for (const id of ['n1', 'n2']) c.shards.get(id)!.peerUp('n3');
    const n3 = c.shards.get('n3')!;
    await until('n3 installed both streamed snapshots', () => (n3.snapshots?.stats.installed ?? 0) >= 2, 30_000);
    // Each group's log on n3 now starts after a snapshot: it got there by one, not by entries.
    for (const g of [0, 1]) assert.ok(n3.status(g).firstIndex > 20, `n3's group ${g} starts at a snapshot`);
    const expect = async (id: NodeId) => {
      assert.equal(text(await c.read(id, 0, enc.encode('nodes/n1'))), 'b', `${id}: group 0 before the cut`);
      assert.equal(text(await c.read(id, 0, enc.encode('k59'))), 'v59'.padEnd(512, '.'), `${id}: group 0 after`);
      assert.equal(text(await c.read(id, 0, enc.encode(`e${extra - 1}`))), 'e', `${id}: group 0 last write`);
      const t = (await c.read(id, 1, { all: true })) as Tally;
      assert.deepEqual(t.counters, { x: 5, y: 60, z: extra }, `${id}: group 1's counters`);
    };
    await expect('n3');

    // Restart every node on its data dir: both kinds of state come back from disk.
    for (const id of IDS) await c.stop(id);
    for (const id of IDS) await c.open(id);
    for (const id of IDS) await expect(id);
    // And group 0 still takes KV writes, group 1 user commands, after the restart.
    const after = await c.kv(0, { op: 'cas', key: enc.encode('nodes/n1'), expected: enc.encode('b'), value: null });
    assert.ok(after.op === 'cas' && after.swapped);
    assert.equal(await c.add(1, 'x', 1), 6);
  } finally {
    await c.close();
    rmSync(root, { recursive: true, force: true });
  }
});

/** A state machine that only counts its prepared and committed writes. */
class Counting implements ShardStateMachine {
  due = false;
  prepared = 0;
  committedCalls = 0;
  ran = 0;
  applied = () => 0;
  apply = (_g: number, es: readonly Entry[]) => es.map(() => null);
  query = () => null;
  snapshot = (): never => {
    throw new Error('not here');
  };
  restore = () => {};
  openSnapshot = (): never => {
    throw new Error('not here');
  };
  restoreStream = () => {};
  compactableTo = () => 0;
  dropGroup = () => {};
  prepareWrite(force = false): (() => void) | null {
    if (!this.due && !force) return null;
    this.due = false;
    this.prepared++;
    return () => void this.ran++;
  }
  committed(): void {
    this.committedCalls++;
  }
}

test('a commit tells committed() only to the state machines whose writes it carried', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-smrouter-unit-'));
  const store = await LogStore.open({ path: root, noSync: true });
  try {
    const kv = new KvStateMachine(store, { flushIntervalMs: 1e9 });
    const user = new Counting();
    const r = new GroupRouter(kv, user);
    // Nothing due on either side: no write, nothing pending.
    assert.equal(r.prepareWrite(), null);
    // The user's write alone: the KV, with nothing cut, is not told.
    user.due = true;
    const w1 = r.prepareWrite();
    assert.ok(w1);
    // Then a KV generation alone (group 0 applied a put; a forced flush cuts it).
    r.apply(0, [{ index: 1, term: 1, type: 'normal', data: kvData('a', '1') }]);
    assert.equal(r.applied(0), 1);
    assert.equal(user.applied(), 0);
    kv.flushSoon();
    const w2 = r.prepareWrite();
    assert.ok(w2);
    assert.equal(user.prepared, 1, 'the user had nothing due the second time');
    await store.commit(w1);
    r.committed();
    assert.equal(user.committedCalls, 1);
    assert.equal(kv.durableApplied(0), 0, "the user's commit does not make the KV's generation durable");
    await store.commit(w2);
    r.committed();
    assert.equal(user.committedCalls, 1, "the KV's commit is not the user's");
    assert.equal(kv.durableApplied(0), 1);
    // Both due: one closure runs both, and one committed() reaches both.
    r.apply(0, [{ index: 2, term: 1, type: 'normal', data: kvData('b', '2') }]);
    user.due = true;
    const w3 = r.prepareWrite(true);
    assert.ok(w3);
    await store.commit(w3);
    r.committed();
    assert.equal(user.ran, 2);
    assert.equal(user.committedCalls, 2);
    assert.equal(kv.durableApplied(0), 2);
    assert.equal(text(r.query(0, enc.encode('b'))), '2');
    // The KV decodes group 0's snapshots ahead; a user group without prepareRestore is not.
    assert.equal(r.prepareRestore(1, 1, []), null);
  } finally {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  }
});

function kvData(key: string, value: string): Uint8Array {
  return encodeCommand(null, encodeKvCommandView({ op: 'put', key: enc.encode(key), value: enc.encode(value) }));
}
