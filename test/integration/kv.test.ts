// KvStateMachine: command semantics and encoding, exactly-once application across restarts,
// atomicity of data and applied index, snapshots and restore.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogStore } from '../../src/storage/logstore.js';
import { Writer } from '../../src/storage/codec.js';
import { CorruptRecord } from '../../src/storage/errors.js';
import { SessionClient, decodeCommand, encodeCommand } from '../../src/storage/session.js';
import {
  KvStateMachine,
  MAX_KEY_BYTES,
  decodeKvCommand,
  encodeKvCommand,
  kvEntryData,
  type KvApplyResult,
  type KvCommand,
} from '../../src/storage/kv.js';
import { RaftError, type ConfState, type Entry, type SnapshotMeta } from '../../src/raft/types.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import { rejectionError } from '../../src/runtime/statemachine.js';
import { flushKv } from '../helpers/kv.js';

/** Wait (polling) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 500) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const CONF: ConfState = { voters: ['a', 'b', 'c'], learners: [] };
const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string): Uint8Array => enc.encode(s);
const s = (u: Uint8Array | null): string | null => (u === null ? null : dec.decode(u));

const put = (key: string, value: string): KvCommand => ({ op: 'put', key: b(key), value: b(value) });
const del = (key: string): KvCommand => ({ op: 'delete', key: b(key) });
const cas = (key: string, expected: string | null, value: string | null): KvCommand => ({
  op: 'cas',
  key: b(key),
  expected: expected === null ? null : b(expected),
  value: value === null ? null : b(value),
});

function entries(first: number, cmds: readonly (KvCommand | null)[], term = 1): Entry[] {
  return cmds.map((c, k) => ({
    index: first + k,
    term,
    type: 'normal' as const,
    data: c ? kvEntryData(c) : new Uint8Array(0),
  }));
}

/** Results in a comparable form (bytes as strings). */
function res(rs: readonly (KvApplyResult | null)[]) {
  return rs.map((r) => {
    if (r === null || !('op' in r)) return r;
    return r.op === 'cas' ? { op: r.op, swapped: r.swapped, current: s(r.current) } : r;
  });
}

class Node {
  store!: LogStore;
  kv!: KvStateMachine;
  constructor(readonly dir: string) {}

  async open(): Promise<this> {
    this.store = await LogStore.open({ path: this.dir });
    this.kv = new KvStateMachine(this.store);
    return this;
  }

  async reopen(): Promise<this> {
    await this.store.close();
    return this.open();
  }

  /** Apply entries (also appending them to the group's log) and commit them atomically. */
  async applyCommit(group: number, es: readonly Entry[]): Promise<(KvApplyResult | null)[]> {
    if (!this.store.has(group)) this.store.createGroup(group, CONF);
    const gs = this.store.storage(group);
    const fresh = es.filter((e) => e.index > gs.lastIndex());
    if (fresh.length > 0 && fresh[0].index === gs.lastIndex() + 1) {
      this.store.write({
        group,
        entries: fresh,
        hardState: { term: 1, vote: 'a', commit: fresh[fresh.length - 1].index },
      });
    }
    const r = this.kv.apply(group, es);
    await flushKv(this.store, this.kv);
    return r;
  }

  get(group: number, key: string): string | null {
    return s(this.kv.get(group, b(key)));
  }
}

async function withNodes(n: number, fn: (...nodes: Node[]) => Promise<void>): Promise<void> {
  const nodes: Node[] = [];
  try {
    for (let i = 0; i < n; i++) nodes.push(await new Node(mkdtempSync(join(tmpdir(), 'flotilla-kv-'))).open());
    await fn(...nodes);
  } finally {
    for (const node of nodes) {
      await node.store?.close().catch(() => {});
      rmSync(node.dir, { recursive: true, force: true });
    }
  }
}

const metaAt = (i: number): SnapshotMeta => ({ index: i, term: 1, conf: CONF });

describe('KV commands', () => {
  test('encodeKvCommand / decodeKvCommand round trip', () => {
    const bin = new Uint8Array([0, 255, 1, 128, 0]);
    const cmds: KvCommand[] = [
      put('k', 'v'),
      { op: 'put', key: bin, value: new Uint8Array(0) },
      { op: 'put', key: new Uint8Array(MAX_KEY_BYTES).fill(7), value: new Uint8Array(100_000).fill(9) },
      del('gone'),
      cas('c', null, 'v'),
      cas('c', 'v', null),
      cas('c', null, null),
      cas('c', 'old', 'new'),
      { op: 'cas', key: bin, expected: new Uint8Array(0), value: bin },
    ];
    const norm = (c: KvCommand) =>
      JSON.stringify(c, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
    for (const c of cmds) assert.equal(norm(decodeKvCommand(encodeKvCommand(c))), norm(c));
    // Corrupted command bytes are detected.
    const e = encodeKvCommand(put('k', 'v'));
    e[3] ^= 1;
    assert.throws(
      () => decodeKvCommand(e),
      (err: unknown) => err instanceof CorruptRecord,
    );
  });

  test('entries written before commands lost their own CRC (older logs) still decode, and their CRC is still checked', () => {
    // The layout of that format: session envelope tag 1 (CRC), KV op byte without the no-CRC bit.
    const kvOld = new Writer();
    kvOld.u8(0); // put
    kvOld.bytes(b('k'));
    kvOld.bytes(b('v'));
    const kvBytes = kvOld.finish();
    const env = new Writer();
    env.u8(1);
    env.str('client-1');
    env.num(7);
    env.num(3);
    env.bytes(kvBytes);
    const data = env.finish();
    const { header, payload } = decodeCommand(data);
    assert.deepEqual(header, { client: 'client-1', seq: 7, lo: 3 });
    const c = decodeKvCommand(payload);
    assert.equal(c.op, 'put');
    assert.equal(s(c.key), 'k');
    const bad = data.slice();
    bad[3] ^= 1;
    assert.throws(
      () => decodeCommand(bad),
      (e: unknown) => e instanceof CorruptRecord,
    );
    // What is written now carries no CRC (the WAL record and the Raft batch around it do).
    const now = encodeCommand(
      { client: 'client-1', seq: 7, lo: 3 },
      encodeKvCommand({ op: 'put', key: b('k'), value: b('v') }),
    );
    assert.ok(now.byteLength < data.byteLength - 4, `${now.byteLength} bytes now vs ${data.byteLength} before`);
    assert.equal(s((decodeKvCommand(decodeCommand(now).payload) as { value: Uint8Array }).value), 'v');
  });

  test('key length limits: 1..MAX_KEY_BYTES, else InvalidArgument', () => {
    const invalid = (err: unknown) => err instanceof RaftError && err.code === 'InvalidArgument';
    assert.equal(MAX_KEY_BYTES, 1024);
    for (const key of [new Uint8Array(0), new Uint8Array(MAX_KEY_BYTES + 1)]) {
      assert.throws(() => encodeKvCommand({ op: 'put', key, value: b('v') }), invalid);
      assert.throws(() => encodeKvCommand({ op: 'delete', key }), invalid);
      assert.throws(() => encodeKvCommand({ op: 'cas', key, expected: null, value: b('v') }), invalid);
    }
    encodeKvCommand({ op: 'put', key: new Uint8Array(1), value: b('v') });
    encodeKvCommand({ op: 'put', key: new Uint8Array(MAX_KEY_BYTES), value: b('v') });
  });

  test('put / get / delete, and no-op and conf entries', async () => {
    await withNodes(1, async (n) => {
      const confEntry: Entry = { index: 4, term: 1, type: 'conf', data: b('not a kv command') };
      const es = [
        ...entries(1, [put('a', '1'), put('b', '2'), null]),
        confEntry,
        ...entries(5, [put('a', '3'), del('b'), del('never')]),
      ];
      const r = await n.applyCommit(1, es);
      assert.deepEqual(res(r), [
        { op: 'put' },
        { op: 'put' },
        null,
        null,
        { op: 'put' },
        { op: 'delete', existed: true },
        { op: 'delete', existed: false },
      ]);
      assert.equal(n.get(1, 'a'), '3');
      assert.equal(n.get(1, 'b'), null);
      assert.equal(n.get(1, 'never'), null);
      assert.equal(n.kv.applied(1), 7, 'no-op and conf entries advance the applied index too');
      // Groups are isolated.
      await n.applyCommit(2, entries(1, [put('a', 'other')]));
      assert.equal(n.get(1, 'a'), '3');
      assert.equal(n.get(2, 'a'), 'other');
      assert.equal(n.kv.applied(2), 1);
    });
  });

  test('cas semantics: expected null = create-if-absent; failure returns swapped:false and the current value; null value deletes', async () => {
    await withNodes(1, async (n) => {
      const r = await n.applyCommit(
        1,
        entries(1, [
          cas('k', null, 'v1'), // absent -> created
          cas('k', null, 'v2'), // present -> fails, current v1
          cas('k', 'nope', 'v3'), // mismatch -> fails
          cas('k', 'v1', 'v4'), // match -> swapped
          cas('gone', 'x', 'y'), // absent, expected non-null -> fails, current null
          put('p', 'x'),
          cas('p', 'x', null), // match, value null -> deleted
          cas('p', null, 'again'), // now absent -> created (sees the staged delete)
          cas('e', '', 'set'), // expected empty value is not "absent"
          put('e', ''),
          cas('e', '', 'set'), // empty value matches
        ]),
      );
      assert.deepEqual(res(r), [
        { op: 'cas', swapped: true, current: 'v1' },
        { op: 'cas', swapped: false, current: 'v1' },
        { op: 'cas', swapped: false, current: 'v1' },
        { op: 'cas', swapped: true, current: 'v4' },
        { op: 'cas', swapped: false, current: null },
        { op: 'put' },
        { op: 'cas', swapped: true, current: null },
        { op: 'cas', swapped: true, current: 'again' },
        { op: 'cas', swapped: false, current: null },
        { op: 'put' },
        { op: 'cas', swapped: true, current: 'set' },
      ]);
      assert.equal(n.get(1, 'k'), 'v4');
      assert.equal(n.get(1, 'gone'), null);
      assert.equal(n.get(1, 'p'), 'again');
      assert.equal(n.get(1, 'e'), 'set');
      // cas against committed data (not in the overlay)
      const r2 = await n.applyCommit(1, entries(12, [cas('k', 'v4', 'v5'), cas('k', 'v4', 'v6')]));
      assert.deepEqual(res(r2), [
        { op: 'cas', swapped: true, current: 'v5' },
        { op: 'cas', swapped: false, current: 'v5' },
      ]);
      assert.equal(n.get(1, 'k'), 'v5');
    });
  });
});

describe('KV exactly once', () => {
  // Applied twice, this sequence ends in a different state: c = A -> B -> C, then back to A.
  const seq = [put('c', 'A'), cas('c', 'A', 'B'), cas('c', 'B', 'C'), put('c', 'A'), put('n', '1')];

  test('re-delivered entries (as after a Raft restart) are skipped: results null, data unchanged', async () => {
    await withNodes(1, async (n) => {
      const es = entries(1, seq);
      const first = await n.applyCommit(1, es);
      assert.deepEqual(res(first).slice(1, 3), [
        { op: 'cas', swapped: true, current: 'B' },
        { op: 'cas', swapped: true, current: 'C' },
      ]);
      assert.equal(n.get(1, 'c'), 'A');
      // Same process, before and after commit.
      assert.deepEqual(n.kv.apply(1, es.slice(1, 3)), [null, null]);
      assert.deepEqual(await n.applyCommit(1, es), [null, null, null, null, null]);
      assert.equal(n.get(1, 'c'), 'A');
      // After a restart: the applied index came back with the data.
      await n.reopen();
      assert.equal(n.kv.applied(1), 5);
      assert.deepEqual(await n.applyCommit(1, es.slice(1, 3)), [null, null]);
      assert.equal(n.get(1, 'c'), 'A', 'a double-applied cas chain would leave C');
      // Partial overlap: 4..5 skipped, 6..7 applied.
      const more = entries(6, [cas('c', 'A', 'Z'), put('n', '2')]);
      const r = await n.applyCommit(1, [...es.slice(3), ...more]);
      assert.deepEqual(res(r), [null, null, { op: 'cas', swapped: true, current: 'Z' }, { op: 'put' }]);
      await n.reopen();
      assert.equal(n.get(1, 'c'), 'Z');
      assert.equal(n.get(1, 'n'), '2');
      assert.equal(n.kv.applied(1), 7);
    });
  });

  test('applied index and data are atomic: committed together survive reopen; uncommitted neither', async () => {
    await withNodes(1, async (n) => {
      await n.applyCommit(1, entries(1, [put('x', '1'), put('y', '1')]));
      // Applied but never flushed: visible at once, lost with the restart, both data and index.
      n.kv.apply(1, entries(3, [put('x', '2'), del('y')]));
      assert.equal(n.kv.applied(1), 4, 'applied() includes what is in the memtable');
      assert.equal(n.kv.durableApplied(1), 2, 'durableApplied() only what is flushed');
      assert.equal(n.kv.compactableTo(1), 2, 'the log must keep what a restart replays');
      assert.equal(n.get(1, 'x'), '2', 'get() sees what is applied');
      assert.equal(n.get(1, 'y'), null);
      await n.reopen();
      assert.equal(n.kv.applied(1), 2);
      assert.equal(n.get(1, 'x'), '1');
      assert.equal(n.get(1, 'y'), '1');
      // Now re-delivered after the restart they are applied (exactly once overall).
      const r = await n.applyCommit(1, entries(3, [put('x', '2'), del('y')]));
      assert.deepEqual(res(r), [{ op: 'put' }, { op: 'delete', existed: true }]);
      await n.reopen();
      assert.equal(n.kv.applied(1), 4);
      assert.equal(n.get(1, 'x'), '2');
      assert.equal(n.get(1, 'y'), null);
      // The log committed with the same transaction agrees with the applied index.
      assert.equal(n.store.storage(1).lastIndex(), 4);
      assert.equal(n.store.storage(1).initialState().hardState.commit, 4);
    });
  });
});

describe('KV flushes', () => {
  test('a flush falls due by bytes as well as by keys and time: big values never pile up into one long transaction', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-kv-'));
    const store = await LogStore.open({ path: dir, noSync: true });
    try {
      // An hour between flushes, a million keys: only the 1 MiB byte bound can make one due.
      const kv = new KvStateMachine(store, {
        flushIntervalMs: 3_600_000,
        maxDirtyKeys: 1_000_000,
        maxDirtyBytes: 1 << 20,
      });
      store.createGroup(1, CONF);
      const value = 'v'.padEnd(64 * 1024, 'x');
      // 15 values of 64 KiB (and their keys): just under 1 MiB, not due.
      kv.apply(
        1,
        entries(
          1,
          Array.from({ length: 15 }, (_, i) => put(`k${i}`, value)),
        ),
      );
      assert.equal(kv.prepareWrite(), null, 'under the bound: nothing to flush yet');
      kv.apply(1, entries(16, [put('k15', value)]));
      const write = kv.prepareWrite();
      assert.notEqual(write, null, 'at 1 MiB the flush is due');
      await store.commit(write!);
      kv.committed();
      assert.equal(kv.durableApplied(1), 16);
      assert.equal(kv.prepareWrite(), null, 'the memtable is empty again');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('KV snapshots', () => {
  test('snapshot reflects exactly its index while more is applied and committed afterwards; restore on another store gives identical data', async () => {
    await withNodes(3, async (a, bNode, c) => {
      // Many keys, binary keys and values, two groups.
      const cmds: KvCommand[] = [];
      for (let i = 0; i < 200; i++) cmds.push(put(`key-${i}`, `value-${i}-${'x'.repeat(i % 17)}`));
      cmds.push(del('key-3'), cas('key-4', 'value-4-xxxx', 'swapped'));
      cmds.push({ op: 'put', key: new Uint8Array([0, 0, 0, 0]), value: new Uint8Array([255, 0, 1]) });
      await a.applyCommit(1, entries(1, cmds));
      await a.applyCommit(2, entries(1, [put('key-1', 'group two')]));
      const at = cmds.length; // 203
      const expected = new Map<string, string>();
      for (const { key, value } of a.store
        .openDB<Buffer, Buffer>('kv', { encoding: 'binary', keyEncoding: 'binary' })
        .getRange({})) {
        if (key.readUInt32BE(0) === 1) expected.set(key.subarray(4).toString('hex'), value.toString('hex'));
      }
      assert.equal(expected.size, 200);

      let metaIndex = -1;
      const snap = a.kv.snapshot(1, (i) => {
        metaIndex = i;
        return metaAt(i);
      });
      assert.equal(metaIndex, at, 'metaAt is asked for the applied index');
      assert.equal(snap.meta.index, at);
      // Applied but not flushed yet: a snapshot taken now includes it (the memtable over LMDB).
      a.kv.apply(1, entries(at + 1, [put('key-0', 'staged')]));
      const snapLater = a.kv.snapshot(1, metaAt);
      assert.equal(snapLater.meta.index, at + 1);
      const probe = await new Node(mkdtempSync(join(tmpdir(), 'flotilla-kv-'))).open();
      try {
        probe.kv.restore(1, snapLater);
        assert.equal(probe.get(1, 'key-0'), 'staged', 'the memtable is in the snapshot');
        assert.equal(probe.get(1, 'key-5'), a.get(1, 'key-5'));
      } finally {
        await probe.store.close();
        rmSync(probe.dir, { recursive: true, force: true });
      }
      // More applied and committed after the snapshot was taken.
      await flushKv(a.store, a.kv);
      await a.applyCommit(1, entries(at + 2, [put('key-1', 'later'), del('key-2'), put('new', 'later')]));
      assert.equal(a.get(1, 'key-1'), 'later');

      // b: has unrelated older data for group 1 (must disappear) and group 2 data (must stay).
      await bNode.applyCommit(1, entries(1, [put('stale', 'x'), put('key-1', 'old')]));
      await bNode.applyCommit(2, entries(1, [put('mine', 'keep')]));
      for (const n of [bNode, c]) {
        n.kv.restore(1, snap);
        assert.equal(n.kv.applied(1), at, 'applied() reflects the staged restore');
        await flushKv(n.store, n.kv);
        await n.reopen();
        assert.equal(n.kv.applied(1), at, 'applied index after restore + reopen');
        const got = new Map<string, string>();
        for (const { key, value } of n.store
          .openDB<Buffer, Buffer>('kv', { encoding: 'binary', keyEncoding: 'binary' })
          .getRange({})) {
          if (key.readUInt32BE(0) === 1) got.set(key.subarray(4).toString('hex'), value.toString('hex'));
        }
        assert.deepEqual(got, expected, 'restored data equals the state at the snapshot index exactly');
        assert.equal(n.get(1, 'key-1'), 'value-1-x');
        assert.equal(n.get(1, 'key-4'), 'swapped');
        assert.equal(n.get(1, 'key-3'), null);
        assert.equal(n.get(1, 'new'), null);
        assert.equal(n.get(1, 'stale'), null);
        // Entries up to the snapshot index are skipped; later ones converge to a's state.
        assert.deepEqual(n.kv.apply(1, entries(at - 1, [put('key-1', 'x'), put('key-1', 'y')])), [null, null]);
        await flushKv(n.store, n.kv);
        const r = n.kv.apply(1, [
          ...entries(at + 1, [put('key-0', 'staged')]),
          ...entries(at + 2, [put('key-1', 'later'), del('key-2'), put('new', 'later')]),
        ]);
        assert.equal(r.filter((x) => x !== null).length, 4);
        await flushKv(n.store, n.kv);
        for (const k of ['key-0', 'key-1', 'key-2', 'new', 'key-199'])
          assert.equal(n.get(1, k), a.get(1, k), `converged on ${k}`);
      }
      assert.equal(bNode.get(2, 'mine'), 'keep', 'restoring group 1 leaves group 2 alone');
      assert.equal(c.get(2, 'key-1'), null);
    });
  });

  test('a snapshot read lazily stays at its index while the group moves on; its bytes depend on the state alone', async () => {
    await withNodes(2, async (a, c) => {
      // More keys than one LMDB page of the reader (512), flushed; then a memtable over them.
      const cmds: KvCommand[] = [];
      for (let i = 0; i < 1300; i++) cmds.push(put(`k${String(i).padStart(5, '0')}`, `v${i}`));
      await a.applyCommit(1, entries(1, cmds));
      await a.applyCommit(2, entries(1, [put('other', 'group')]));
      let at = cmds.length;
      a.kv.apply(
        1,
        entries(at + 1, [del('k00007'), put('k00008', 'updated'), put('k00010a', 'between'), put('zz', 'last')]),
      );
      at += 4;
      const expected = new Map<string, string | null>();
      for (let i = 0; i < 1300; i++)
        expected.set(`k${String(i).padStart(5, '0')}`, a.get(1, `k${String(i).padStart(5, '0')}`));
      for (const k of ['k00010a', 'zz']) expected.set(k, a.get(1, k));

      const { index, reader } = a.kv.openSnapshot(1);
      assert.equal(index, at);
      const pieces: Uint8Array[] = [];
      const first = reader.read(999);
      assert.ok(first !== null && first.byteLength === 999, 'reads fill up to max');
      pieces.push(first);
      // The group moves on (applied, flushed, more applied) while the reader is half way.
      a.kv.apply(1, entries(at + 1, [put('k00001', 'after'), del('k01000'), put('new', 'after')]));
      await flushKv(a.store, a.kv);
      a.kv.apply(1, entries(at + 4, [put('k01200', 'after too')]));
      for (let p = reader.read(4096); p !== null; p = reader.read(4096)) pieces.push(p);
      reader.close();
      const bytes = Buffer.concat(pieces);

      // Restored from 7-byte pieces into another store, flushed there: the same state, and an
      // image of it that is byte for byte the one it came from.
      const tiny: Uint8Array[] = [];
      for (let i = 0; i < bytes.byteLength; i += 7) tiny.push(bytes.subarray(i, i + 7));
      c.kv.restoreStream(1, metaAt(at), tiny);
      for (const [k, v] of expected) assert.equal(c.get(1, k), v, k);
      assert.equal(c.get(1, 'new'), null);
      assert.equal(c.get(1, 'k00007'), null);
      await flushKv(c.store, c.kv);
      const again = c.kv.snapshot(1, metaAt);
      assert.deepEqual(Buffer.from(again.data), bytes, 'two images at one index are the same bytes');

      // A truncated or altered image is refused and the group is left as it was.
      assert.throws(() => c.kv.restoreStream(1, metaAt(at), [bytes.subarray(0, bytes.byteLength - 9)]), CorruptRecord);
      const bad = Buffer.from(bytes);
      bad[5000] ^= 4;
      assert.throws(() => c.kv.restoreStream(1, metaAt(at), [bad]), CorruptRecord);
      assert.equal(c.get(1, 'k00008'), 'updated');
    });
  });

  test('a restore prepared ahead stages its rows in LMDB, serves reads from them, and the commit copies them in', async () => {
    await withNodes(2, async (a, c) => {
      const cmds: KvCommand[] = [];
      for (let i = 0; i < 700; i++) cmds.push(put(`k${String(i).padStart(4, '0')}`, `v${i}`.repeat(20)));
      await a.applyCommit(1, entries(1, cmds));
      const image = a.kv.snapshot(1, metaAt);
      const stageRows = () =>
        [...c.store.openDB<Buffer, Buffer>('kvstage', { encoding: 'binary', keyEncoding: 'binary' }).getKeys()].length;
      // c has older rows of group 1 that the restore replaces.
      await c.applyCommit(1, entries(1, [put('old', 'x'), put('k0001', 'old')]));

      // One restore prepared and dropped: its rows go.
      const dropped = c.kv.prepareRestore(1, image.meta.index, [image.data]);
      while (!dropped.step(4096)) await new Promise((r) => setImmediate(r));
      assert.ok(stageRows() >= 700);
      dropped.discard();
      await until(() => stageRows() === 0);

      // One prepared in slices of 4 KiB (the LMDB writes land between them), then applied.
      const prep = c.kv.prepareRestore(1, image.meta.index, [image.data.subarray(0, 1000), image.data.subarray(1000)]);
      let slices = 0;
      while (!prep.step(4096)) {
        slices++;
        await new Promise((r) => setImmediate(r));
      }
      assert.ok(slices > 3, `decoded in ${slices} slices`);
      assert.equal(c.get(1, 'old'), 'x', 'nothing changes before apply');
      prep.apply();
      assert.equal(c.kv.applied(1), image.meta.index);
      assert.equal(c.get(1, 'old'), null, 'read from the staged rows at once');
      assert.equal(c.get(1, 'k0001'), a.get(1, 'k0001'));
      // A snapshot taken from the staged state is the image it came from.
      assert.deepEqual(Buffer.from(c.kv.snapshot(1, metaAt).data), Buffer.from(image.data));
      await flushKv(c.store, c.kv);
      // The staged copies go once the commit that copied them is done.
      await until(() => stageRows() === 0);
      await c.reopen();
      for (const k of ['k0000', 'k0001', 'k0699', 'old']) assert.equal(c.get(1, k), a.get(1, k), k);
      assert.equal(c.kv.applied(1), image.meta.index);
    });
  });

  test('restore rejects a snapshot whose data index differs from its meta index', async () => {
    await withNodes(1, async (n) => {
      await n.applyCommit(1, entries(1, [put('a', '1')]));
      const snap = n.kv.snapshot(1, metaAt);
      assert.throws(
        () => n.kv.restore(1, { meta: metaAt(5), data: snap.data }),
        (e: unknown) => e instanceof RaftError && e.code === 'Malformed',
      );
      const bad = snap.data.slice();
      bad[bad.length - 6] ^= 1;
      assert.throws(
        () => n.kv.restore(1, { meta: snap.meta, data: bad }),
        (e: unknown) => e instanceof CorruptRecord,
      );
    });
  });

  test('entries applied after restore() in the same batch see the snapshot data, not the replaced data', async () => {
    await withNodes(2, async (a, bNode) => {
      await a.applyCommit(1, entries(1, [put('x', 'new'), put('y', 'yy')]));
      await bNode.applyCommit(1, entries(1, [put('x', 'old'), put('z', 'zz')]));
      const snap = a.kv.snapshot(1, metaAt); // index 2
      // A follower receiving a snapshot plus the committed entries after it in one Ready.
      bNode.kv.restore(1, snap);
      const r = bNode.kv.apply(
        1,
        entries(3, [cas('x', 'new', 'newer'), cas('z', null, 'created'), cas('y', 'yy', 'y2')]),
      );
      await flushKv(bNode.store, bNode.kv);
      // What the leader (a) computes for the same entries:
      const ra = await a.applyCommit(
        1,
        entries(3, [cas('x', 'new', 'newer'), cas('z', null, 'created'), cas('y', 'yy', 'y2')]),
      );
      assert.deepEqual(res(ra), [
        { op: 'cas', swapped: true, current: 'newer' },
        { op: 'cas', swapped: true, current: 'created' },
        { op: 'cas', swapped: true, current: 'y2' },
      ]);
      assert.deepEqual(res(r), res(ra), 'the follower computes the same results as the leader');
      for (const k of ['x', 'y', 'z']) assert.equal(bNode.get(1, k), a.get(1, k), `replicas agree on ${k}`);
    });
  });
});

describe('client sessions (at most once per client seq)', () => {
  const sess = (client: string, seq: number, lo: number, c: KvCommand) =>
    encodeCommand({ client, seq, lo }, encodeKvCommand(c));
  const at = (index: number, data: Uint8Array): Entry => ({ index, term: 1, type: 'normal', data });

  test('envelopes decode the right client among many, in any order (decoded strings are cached)', () => {
    // 40 clients (more than the cache holds), same-length ids that differ in one byte, a long
    // one and a multi-byte one: every read must give back exactly what was written.
    const ids = [
      ...Array.from({ length: 40 }, (_, i) => `client-${String(i).padStart(2, '0')}`),
      'x'.repeat(200),
      'nœud-é',
    ];
    for (let round = 0; round < 3; round++) {
      for (const i of ids.keys()) {
        const j = round === 1 ? ids.length - 1 - i : i;
        const want = ids[j];
        const got = decodeCommand(sess(want, j + 1, 1, put('k', 'v')));
        assert.deepEqual(got.header, { client: want, seq: j + 1, lo: 1 });
        assert.equal(dec.decode(decodeKvCommand(got.payload).key), 'k');
      }
    }
  });

  test("a client's lo is its lowest proposal without an outcome, whatever order they finish in", () => {
    const c = new SessionClient('c');
    const hs = Array.from({ length: 6 }, () => c.begin());
    assert.deepEqual(
      hs.map((h) => h.lo),
      [1, 1, 1, 1, 1, 1],
    );
    c.done(2);
    c.done(1);
    assert.equal(c.begin().lo, 3, 'both below finished');
    c.done(4);
    assert.equal(c.begin().lo, 3, '3 still out');
    c.done(3);
    assert.equal(c.begin().lo, 5);
    for (const s of [5, 6, 7, 8, 9]) c.done(s);
    assert.equal(c.begin().lo, 10, 'none out: the next seq');
  });

  test('a retried proposal applied twice in the log takes effect once and returns the first result, also after a restart', async () => {
    await withNodes(1, async (n) => {
      await n.applyCommit(1, [at(1, sess('c1', 1, 1, cas('k', null, 'a')))]);
      // The client's retry of seq 1 (after a timeout) lands in the log again, after someone else's write.
      const r = await n.applyCommit(1, [
        at(2, kvEntryData(put('k', 'other'))),
        at(3, sess('c1', 1, 1, cas('k', null, 'a'))),
      ]);
      assert.deepEqual(
        res(r),
        [{ op: 'put' }, { op: 'cas', swapped: true, current: 'a' }],
        'the duplicate returns the recorded result',
      );
      assert.equal(n.get(1, 'k'), 'other', 'the duplicate did not apply again');
      await n.reopen();
      const again = await n.applyCommit(1, [at(4, sess('c1', 1, 1, cas('k', null, 'a')))]);
      assert.deepEqual(res(again), [{ op: 'cas', swapped: true, current: 'a' }], 'sessions survive a restart');
      assert.equal(n.get(1, 'k'), 'other');
      // Another client with the same seq is independent.
      const other = await n.applyCommit(1, [at(5, sess('c2', 1, 1, put('k', 'c2')))]);
      assert.deepEqual(res(other), [{ op: 'put' }]);
      assert.equal(n.get(1, 'k'), 'c2');
    });
  });

  test("results below the client's lowest outstanding seq are forgotten, and late copies of them never apply", async () => {
    await withNodes(1, async (n) => {
      await n.applyCommit(1, [at(1, sess('c', 1, 1, put('a', '1'))), at(2, sess('c', 2, 1, put('b', '1')))]);
      assert.equal(n.kv.getSession(1, 'c')!.results.size, 2);
      await n.applyCommit(1, [at(3, sess('c', 3, 3, put('c', '1')))]);
      assert.deepEqual([...n.kv.getSession(1, 'c')!.results.keys()], [3], 'seqs 1 and 2 answered: dropped');
      const late = await n.applyCommit(1, [at(4, sess('c', 1, 1, put('a', 'late')))]);
      assert.deepEqual(late, [null]);
      assert.equal(n.get(1, 'a'), '1', 'a late copy of an answered seq does not apply');
    });
  });

  test('sessions travel in snapshots: a replica restored from one recognises retries', async () => {
    await withNodes(2, async (a, bNode) => {
      await a.applyCommit(1, [at(1, sess('c', 7, 7, cas('x', null, 'first')))]);
      const snap = a.kv.snapshot(1, metaAt);
      bNode.store.createGroup(1, CONF);
      bNode.kv.restore(1, snap);
      bNode.store.write({ group: 1, snapshot: snap.meta });
      await flushKv(bNode.store, bNode.kv);
      const r = await bNode.applyCommit(1, [at(2, sess('c', 7, 7, cas('x', null, 'first')))]);
      assert.deepEqual(res(r), [{ op: 'cas', swapped: true, current: 'first' }]);
      assert.equal(bNode.get(1, 'x'), 'first');
    });
  });
});

describe('delete reports whether the key existed', () => {
  const sess = (client: string, seq: number, lo: number, c: KvCommand) =>
    encodeCommand({ client, seq, lo }, encodeKvCommand(c));
  const at = (index: number, data: Uint8Array): Entry => ({ index, term: 1, type: 'normal', data });
  const deleted = { op: 'delete', existed: true };
  const missing = { op: 'delete', existed: false };

  test('decided from the state at its index: memtable, generations being flushed, flushed data, a restored snapshot', async () => {
    await withNodes(2, async (n, other) => {
      // In the memtable: put then deletes in one batch; a cas that deleted counts as missing.
      const r1 = await n.applyCommit(
        1,
        entries(1, [put('a', '1'), del('a'), del('a'), del('never'), put('c', 'x'), cas('c', 'x', null), del('c')]),
      );
      assert.deepEqual(res(r1), [
        { op: 'put' },
        deleted,
        missing,
        missing,
        { op: 'put' },
        { op: 'cas', swapped: true, current: null },
        missing,
      ]);
      // In LMDB only (flushed above), then an empty value still counts as a value.
      await n.applyCommit(1, entries(8, [put('flushed', 'v'), put('empty', '')]));
      assert.deepEqual(res(n.kv.apply(1, entries(10, [del('flushed'), del('empty')]))), [deleted, deleted]);
      // In a generation cut for a commit that has not completed: deleted there, so missing.
      n.kv.apply(1, entries(12, [put('cut', 'v'), del('flushed-2')]));
      const write = n.kv.prepareWrite(true);
      assert.ok(write);
      assert.deepEqual(res(n.kv.apply(1, entries(14, [del('cut'), del('cut'), del('flushed')]))), [
        deleted,
        missing,
        missing,
      ]);
      await n.store.commit(write);
      n.kv.committed();
      await flushKv(n.store, n.kv);
      // A restored snapshot replaces the group: its keys exist, the replaced ones do not.
      await other.applyCommit(1, entries(1, [put('from-snapshot', 'v')]));
      await n.applyCommit(1, entries(17, [put('replaced', 'v')]));
      n.kv.restore(1, other.kv.snapshot(1, metaAt));
      assert.deepEqual(res(n.kv.apply(1, entries(2, [del('replaced'), del('from-snapshot')]))), [missing, deleted]);
    });
  });

  test('the same on replay after a restart and on another replica', async () => {
    await withNodes(2, async (a, bNode) => {
      const first = entries(1, [put('k', '1'), put('j', '1')]);
      const later = entries(3, [del('k'), put('k', '2'), del('k'), del('k'), del('j'), del('j')]);
      const want = [deleted, { op: 'put' }, deleted, missing, deleted, missing];
      await a.applyCommit(1, first);
      // Applied but never flushed: lost with the restart, and replayed from the log.
      assert.deepEqual(res(a.kv.apply(1, later)), want);
      await a.reopen();
      assert.equal(a.kv.applied(1), 2);
      assert.deepEqual(res(await a.applyCommit(1, later)), want, 'the replay computes the same results');
      await bNode.applyCommit(1, first);
      assert.deepEqual(res(await bNode.applyCommit(1, later)), want, 'another replica computes the same results');
    });
  });

  test('a retried delete gets its recorded result back, also after a restart and from a snapshot', async () => {
    await withNodes(2, async (n, other) => {
      const r = await n.applyCommit(1, [
        at(1, sess('c', 1, 1, put('k', 'v'))),
        at(2, sess('c', 2, 1, del('k'))),
        at(3, sess('c', 3, 1, del('none'))),
        // Others write both keys; then the client's retries of seq 2 and 3 land in the log.
        at(4, kvEntryData(put('k', 'again'))),
        at(5, kvEntryData(put('none', 'now'))),
        at(6, sess('c', 2, 1, del('k'))),
        at(7, sess('c', 3, 1, del('none'))),
      ]);
      assert.deepEqual(res(r), [{ op: 'put' }, deleted, missing, { op: 'put' }, { op: 'put' }, deleted, missing]);
      assert.equal(n.get(1, 'k'), 'again', 'the retry did not delete again');
      assert.equal(n.get(1, 'none'), 'now');
      await n.reopen();
      const again = await n.applyCommit(1, [at(8, sess('c', 2, 1, del('k'))), at(9, sess('c', 3, 1, del('none')))]);
      assert.deepEqual(res(again), [deleted, missing], 'the session records kept `existed` through LMDB');
      const snap = n.kv.snapshot(1, metaAt);
      other.store.createGroup(1, CONF);
      other.kv.restore(1, snap);
      other.store.write({ group: 1, snapshot: snap.meta });
      await flushKv(other.store, other.kv);
      const there = await other.applyCommit(1, [
        at(10, sess('c', 2, 1, del('k'))),
        at(11, sess('c', 3, 1, del('none'))),
      ]);
      assert.deepEqual(res(there), [deleted, missing], 'and through a snapshot');
      assert.equal(other.get(1, 'k'), 'again');
    });
  });
});

describe('committed entries whose command does not decode', () => {
  const raw = (...parts: (number | string | Uint8Array)[]): Uint8Array => {
    const out: number[] = [];
    for (const p of parts) {
      if (typeof p === 'number') out.push(p);
      else out.push(...(typeof p === 'string' ? b(p) : p));
    }
    return Uint8Array.from(out);
  };
  const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
  const PUT = 0x80;
  const DEL = 0x81;
  const CAS = 0x82;
  /** Entry data around a command's bytes, without a session (as kvEntryData, unchecked). */
  const plain = (cmd: Uint8Array) => encodeCommand(null, cmd);
  const bad: [string, Uint8Array][] = [
    ['unknown op byte', plain(raw(0x85, ...u32(1), 'k'))],
    ['truncated key length', plain(raw(DEL, 5, 0))],
    ['key longer than the command', plain(raw(PUT, ...u32(10), 'k'))],
    ['empty key', plain(raw(DEL, ...u32(0)))],
    [
      'key beyond MAX_KEY_BYTES',
      plain(raw(PUT, ...u32(MAX_KEY_BYTES + 1), new Uint8Array(MAX_KEY_BYTES + 1), ...u32(0))),
    ],
    ['trailing bytes', plain(raw(DEL, ...u32(1), 'k', 0))],
    ['cas with unknown flags', plain(raw(CAS, ...u32(1), 'k', 4))],
    ['cas truncated', plain(raw(CAS, ...u32(1), 'k', 1, ...u32(3), 'x'))],
    ['no command at all', plain(new Uint8Array(0))],
    ['unknown envelope tag', raw(9, ...u32(1), DEL)],
    ['client id not UTF-8', raw(3, 2, 0, 0xff, 0xfe, ...new Array<number>(16).fill(0), ...u32(0))],
  ];

  test('each is refused with the same StateMachineError on every replica and on replay; nothing changes; later entries apply', async () => {
    await withNodes(2, async (a, bNode) => {
      const es: Entry[] = [
        ...entries(1, [put('k', 'v')]),
        ...bad.map(([, data], i) => ({ index: 2 + i, term: 1, type: 'normal' as const, data })),
        ...entries(2 + bad.length, [put('after', '1'), del('k')]),
      ];
      const seen: [number, number, string][] = [];
      a.kv = new KvStateMachine(a.store, { onMalformed: (g, i, reason) => seen.push([g, i, reason]) });
      const r = await a.applyCommit(1, es);
      assert.deepEqual(r[0], { op: 'put' });
      assert.deepEqual(r.slice(-2), [{ op: 'put' }, { op: 'delete', existed: true }], 'later entries apply');
      bad.forEach(([what], i) => {
        const index = 2 + i;
        const err = rejectionError(r[1 + i]);
        assert.ok(err instanceof RuntimeError && err.code === 'StateMachineError', `${what}: a rejection`);
        assert.match(err.message, new RegExp(`^malformed KV command at index ${index} of group 1: `), what);
        assert.equal(err.retryable, false);
      });
      assert.match(rejectionError(r[1])!.message, /unknown kv op byte 133/);
      assert.match(rejectionError(r[5])!.message, /key of 1025 bytes/);
      assert.deepEqual(
        seen.map(([g, i]) => [g, i]),
        bad.map((_, i) => [1, 2 + i]),
        'each told once, with group and index',
      );
      assert.equal(a.kv.stats.malformed, bad.length);
      assert.equal(a.kv.applied(1), es.length, 'refused entries advance the applied index');
      assert.equal(a.get(1, 'after'), '1');
      assert.equal(a.get(1, 'k'), null);
      const rows = [...a.store.openDB<Buffer, Buffer>('kv', { encoding: 'binary', keyEncoding: 'binary' }).getKeys({})];
      assert.deepEqual(
        rows.map((k) => k.subarray(4).toString()),
        ['after'],
        'nothing of the refused entries was written',
      );
      // Another replica, and a replay of the same entries after a restart, give the same results.
      bNode.kv.apply(1, es);
      await bNode.reopen(); // nothing was flushed: all of it replays
      assert.equal(bNode.kv.applied(1), 0);
      assert.deepEqual(await bNode.applyCommit(1, es), r);
    });
  });

  test('under a session the refusal is recorded: a retry gets it back, also after a restart', async () => {
    await withNodes(1, async (n) => {
      const cmd = raw(DEL, ...u32(1));
      const withSession = (seq: number) => {
        const w = new Writer();
        w.u8(3);
        w.str('c');
        w.num(seq);
        w.num(1);
        w.bytes(cmd);
        return w.finishPlain();
      };
      const at = (index: number, data: Uint8Array): Entry => ({ index, term: 1, type: 'normal', data });
      const [first] = await n.applyCommit(1, [at(1, withSession(1))]);
      assert.match(rejectionError(first)!.message, /^malformed KV command at index 1 of group 1: /);
      assert.deepEqual((await n.applyCommit(1, [at(2, withSession(1))]))[0], first, 'the retry: recorded refusal');
      assert.equal(n.kv.stats.malformed, 1, 'the retry was not decoded again');
      await n.reopen();
      assert.deepEqual((await n.applyCommit(1, [at(3, withSession(1))]))[0], first, 'after a restart');
    });
  });

  test('bytes that fail their CRC-32 are not content: apply throws CorruptRecord (the shard fail-stops)', async () => {
    await withNodes(1, async (n) => {
      // A delete as older versions wrote it: op byte without the no-CRC bit, a CRC-32 at the end.
      const old = new Writer();
      old.u8(1);
      old.bytes(b('k'));
      const intact = old.finish();
      await n.applyCommit(1, entries(1, [put('k', 'v')]));
      const broken = intact.slice();
      broken[5] ^= 1; // the key's byte
      const checksum = (e: unknown) => e instanceof CorruptRecord && e.checksum && /checksum mismatch/.test(e.message);
      assert.throws(() => n.kv.apply(1, [{ index: 2, term: 1, type: 'normal', data: plain(broken) }]), checksum);
      // An envelope with a CRC (tag 0, older versions) that fails it.
      const env = new Writer();
      env.u8(0);
      env.bytes(encodeKvCommand(del('k')));
      const envBroken = env.finish();
      envBroken[envBroken.length - 6] ^= 1;
      assert.throws(() => n.kv.apply(1, [{ index: 2, term: 1, type: 'normal', data: envBroken }]), checksum);
      assert.equal(n.kv.stats.malformed, 0);
      assert.equal(n.get(1, 'k'), 'v');
      // Intact, the same older delete applies.
      const r = await n.applyCommit(1, [{ index: 2, term: 1, type: 'normal', data: plain(intact) }]);
      assert.deepEqual(r, [{ op: 'delete', existed: true }]);
      assert.equal(n.get(1, 'k'), null);
    });
  });
});
