// The state machine contract of a shard, and the host for user state machines.
//
// A shard applies every group's committed entries through one ShardStateMachine. Its state is
// written to LMDB from time to time, never on every commit: prepareWrite() decides when, and what
// it returns runs inside a log commit's transaction, so state, applied index and client sessions
// are always durable together, and the log keeps every entry after that durable applied index
// (compactableTo) for the replay after a restart. Two implementations:
//  - the built-in KV (storage/kv.ts): a memtable flushed every few seconds;
//  - UserStateMachineHost (here): a user module's in-memory state machines, one per group,
//    loaded by module path inside the worker. Their state is saved as a snapshot blob every
//    `snapshotEvery` applied entries (in the commit transaction); after a restart the blob is
//    restored and the log replays from its index (the log is never compacted past the last saved
//    blob). This is Dragonboat's "regular state machine" model.
// What a user module may do and how its errors reach callers: docs/state-machines.md.
import { Packr, Unpackr } from 'msgpackr';
import type { Database } from 'lmdb';
import type { Logger } from 'pino';
import type { Entry, Snapshot, SnapshotMeta } from '../raft/types.js';
import type { LogStore } from '../storage/logstore.js';
import type { SnapshotReader } from '../storage/snapstream.js';
import { PieceReader, RecordReader, type PreparedRestore } from '../storage/kv.js';
import {
  APPLY_ERROR_KEY,
  applyRejection,
  checkEntry,
  recordResult,
  type SessionRecord,
  type SessionStore,
} from '../storage/session.js';
import { RuntimeError } from './errors.js';

export interface ShardStateMachine {
  /** Applied index of `group` that a restart resumes from. */
  applied(group: number): number;
  /** Apply committed entries of one group; one result per entry (null for no-ops, conf entries
   *  and entries at or below the applied index). */
  apply(group: number, entries: readonly Entry[]): unknown[];
  /** Answer a read against the state (committed entries applied so far). */
  query(group: number, query: unknown): unknown;
  snapshot(group: number, metaAt: (index: number) => SnapshotMeta): Snapshot;
  restore(group: number, snapshot: Snapshot): void;
  /** The group's state at its applied index (`index`), to be read lazily by a snapshot stream:
   *  later applies must not change what `reader` returns. */
  openSnapshot(group: number): { index: number; reader: SnapshotReader };
  /** restore() from the bytes of an openSnapshot() reader, piece by piece. Throws (and leaves the
   *  group untouched) for bytes it cannot take. */
  restoreStream(group: number, meta: SnapshotMeta, pieces: Iterable<Uint8Array>): void;
  /** Optional: restoreStream decoded ahead, a slice at a time (see KvStateMachine.prepareRestore);
   *  the shard decodes a staged snapshot this way before it lets the core take it, so that the
   *  install turn itself is short. null: not for this group (its install runs restoreStream). */
  prepareRestore?(group: number, index: number, pieces: Iterable<Uint8Array>): PreparedRestore | null;
  /** Called right before a log commit: when the state should be written now (or `force`),
   *  capture it and return the writes to run inside that commit's transaction; else null. What
   *  the writes store must not change afterwards, whenever the transaction runs. */
  prepareWrite(force?: boolean): (() => void) | null;
  /** The commit that ran the oldest prepared write is durable. */
  committed(): void;
  /** The log may be compacted up to this index without losing what a restart replays. */
  compactableTo(group: number): number;
  dropGroup(group: number): void;
  /** The shard stopped (after its last write): release what the state machine holds. */
  close?(): Promise<void>;
}

/** What a user module's state machine implements (one instance per group). Commands, queries,
 *  results and snapshots are any msgpack-encodable values. `apply` must be deterministic: every
 *  replica applies the same commands in the same order. An exception thrown by `apply` is the
 *  command's result, on every replica alike: its message reaches the proposer as a
 *  StateMachineError; state is unchanged only if the state machine left it so. An exception
 *  thrown by `query` reaches the reader the same way. */
export interface UserStateMachine {
  apply(command: unknown, index: number): unknown;
  query(query: unknown): unknown;
  snapshot(): unknown;
  restore(state: unknown): void;
  /** Optional, for states too large to build as one value: the state as a sequence of byte
   *  chunks, read lazily while a lagging replica's snapshot streams. The chunks must be of the
   *  state at the call (the host takes the first one at once, so a generator's body up to its
   *  first yield runs then; later applies must not change what it yields after). `snapshot()` is
   *  still what is saved locally, and must describe the same state. */
  saveSnapshot?(): Iterable<Uint8Array>;
  /** Optional, with saveSnapshot: rebuild the state from saveSnapshot()'s chunks, on a fresh
   *  instance (a replica installing the leader's snapshot). */
  restoreSnapshot?(chunks: Iterable<Uint8Array>): void;
  /** Called once when flotilla discards this instance: its shard stops (node.stop(); awaited,
   *  after the last snapshot() was saved), the group is removed from this node, or a snapshot
   *  from the leader replaces the instance with a new one. Not called when the thread dies. */
  close?(): void | Promise<void>;
}

/** A user state machine module exports `createStateMachine`. */
export interface UserStateMachineModule {
  createStateMachine(group: number): UserStateMachine;
}

/** The caller's error for a command the state machine refused at apply (the result carries the
 *  marker: a user apply threw, a KV command did not decode), or null for any other result. */
export function rejectionError(result: unknown): RuntimeError | null {
  if (result === null || typeof result !== 'object' || !(APPLY_ERROR_KEY in result)) return null;
  return new RuntimeError('StateMachineError', String(result[APPLY_ERROR_KEY]));
}

// unencodable: a result msgpack cannot encode (a symbol, a bigint beyond 64 bits) is refused
// where it is made, with msgpack's reason, as if the state machine had thrown it: encoded later
// (a worker's port, the blob that keeps client sessions) it would fail the whole shard. The
// check is deterministic, so every replica refuses the same result.

/** The message of whatever a state machine threw. */
function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface Hosted {
  sm: UserStateMachine;
  applied: number;
  readonly sessions: Map<string, SessionRecord>;
  /** Index of the last durable blob. */
  saved: number;
  /** Index of the blob staged for the next commit (-1 when none). */
  staged: number;
}

const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, moreTypes: false });

export class UserStateMachineHost implements ShardStateMachine, SessionStore {
  private readonly db: Database<Buffer, number>;
  private readonly groups = new Map<number, Hosted>();
  private readonly toSave = new Set<number>();
  private readonly toDrop = new Set<number>();
  /** Per prepared write not yet durable (oldest first): group -> the applied index it saved. */
  private readonly pendingSaved: Map<number, number>[] = [];

  constructor(
    store: LogStore,
    private readonly module: UserStateMachineModule,
    /** Save a group's blob after this many applied entries. */
    private readonly snapshotEvery = 1024,
    private readonly log?: Logger,
  ) {
    this.db = store.openDB<Buffer, number>('usm', { encoding: 'binary', keyEncoding: 'uint32' });
  }

  private hosted(group: number): Hosted {
    let h = this.groups.get(group);
    if (h) return h;
    const sm = this.module.createStateMachine(group);
    h = { sm, applied: 0, sessions: new Map(), saved: 0, staged: -1 };
    const blob = this.db.getBinary(group);
    if (blob) {
      const [index, sessions, state] = unpackr.unpack(blob) as [
        number,
        [string, number, [number, unknown][]][],
        unknown,
      ];
      sm.restore(state);
      h.applied = h.saved = index;
      for (const [c, lo, rs] of sessions) h.sessions.set(c, { lo, results: new Map(rs) });
    }
    this.groups.set(group, h);
    return h;
  }

  private blob(h: Hosted): Uint8Array {
    const sessions = [...h.sessions].map(([c, r]) => [c, r.lo, [...r.results]]);
    return Uint8Array.prototype.slice.call(packr.pack([h.applied, sessions, h.sm.snapshot()]));
  }

  getSession(group: number, client: string): SessionRecord | undefined {
    return this.hosted(group).sessions.get(client);
  }

  updateSession(group: number, client: string): SessionRecord {
    const sessions = this.hosted(group).sessions;
    let rec = sessions.get(client);
    if (!rec) {
      rec = { lo: 0, results: new Map() };
      sessions.set(client, rec);
    }
    return rec;
  }

  applied(group: number): number {
    return this.hosted(group).applied;
  }

  apply(group: number, entries: readonly Entry[]): unknown[] {
    const h = this.hosted(group);
    const out: unknown[] = [];
    for (const e of entries) {
      if (e.index <= h.applied) {
        out.push(null);
        continue;
      }
      h.applied = e.index;
      if (e.type !== 'normal' || e.data.byteLength === 0) {
        out.push(null);
        continue;
      }
      const chk = checkEntry(this, group, e);
      if (chk.kind === 'duplicate') {
        out.push(chk.result);
        continue;
      }
      let result: unknown;
      try {
        result = h.sm.apply(unpackr.unpack(chk.payload), e.index) ?? null;
        packr.pack(result); // see unencodable
      } catch (err) {
        result = applyRejection(messageOf(err));
      }
      if (chk.header) recordResult(this, group, chk.header, result);
      out.push(result);
    }
    if (h.applied - Math.max(h.saved, h.staged) >= this.snapshotEvery) this.toSave.add(group);
    return out;
  }

  query(group: number, query: unknown): unknown {
    const sm = this.hosted(group).sm;
    try {
      const result = sm.query(query);
      packr.pack(result); // see unencodable
      return result;
    } catch (e) {
      throw new RuntimeError('StateMachineError', messageOf(e));
    }
  }

  snapshot(group: number, metaAt: (index: number) => SnapshotMeta): Snapshot {
    const h = this.hosted(group);
    return { meta: metaAt(h.applied), data: this.blob(h) };
  }

  /** A state machine with saveSnapshot streams its chunks (STREAMED below); else its blob is
   *  made now (snapshot() is one value) and the stream reads it in pieces. */
  openSnapshot(group: number): { index: number; reader: SnapshotReader } {
    const h = this.hosted(group);
    if (!h.sm.saveSnapshot || !h.sm.restoreSnapshot) return { index: h.applied, reader: bytesReader(this.blob(h)) };
    const head = packr.pack([h.applied, [...h.sessions].map(([c, r]) => [c, r.lo, [...r.results]])]);
    // The first chunk is taken now: a generator's body runs up to its first yield here, in the
    // turn that opened the snapshot, so it sees the state of that applied index.
    const it = h.sm.saveSnapshot()[Symbol.iterator]();
    let next = it.next();
    function* pieces(): Generator<Uint8Array> {
      try {
        yield u8u32(STREAMED, head.byteLength);
        yield Uint8Array.prototype.slice.call(head);
        for (; !next.done; next = it.next()) {
          if (next.value.byteLength === 0) continue;
          yield u32(next.value.byteLength);
          yield next.value;
        }
        yield u32(STREAMED_END);
      } finally {
        if (!next.done) it.return?.();
      }
    }
    const gen = pieces();
    // Closing the reader ends the user's iterator too (it may hold a view of the state).
    return { index: h.applied, reader: new RecordReader(gen, () => void gen.return(undefined)) };
  }

  restoreStream(group: number, meta: SnapshotMeta, pieces: Iterable<Uint8Array>): void {
    const it = pieces[Symbol.iterator]();
    const first = it.next();
    const head = first.done ? new Uint8Array(0) : first.value;
    const rest = (function* () {
      yield head;
      for (let r = it.next(); !r.done; r = it.next()) yield r.value;
    })();
    if (head.byteLength === 0 || head[0] !== STREAMED) {
      this.restore(group, { meta, data: Buffer.concat([...rest]) });
      return;
    }
    const what = `state machine snapshot of group ${group}`;
    const r = new PieceReader(rest, what);
    r.u8();
    const [index, sessions] = unpackr.unpack(r.take(r.u32(), MAX_STREAMED_CHUNK)) as [
      number,
      [string, number, [number, unknown][]][],
    ];
    const h = this.hosted(group);
    void this.closeOne(group, h.sm);
    h.sm = this.module.createStateMachine(group);
    if (!h.sm.restoreSnapshot) throw new RuntimeError('StateMachineError', `${what}: restoreSnapshot is missing`);
    h.sm.restoreSnapshot(
      (function* () {
        for (let n = r.u32(); n !== STREAMED_END; n = r.u32()) yield r.take(n, MAX_STREAMED_CHUNK);
      })(),
    );
    h.applied = Math.max(index, meta.index);
    h.sessions.clear();
    for (const [c, lo, rs] of sessions) h.sessions.set(c, { lo, results: new Map(rs) });
    this.toSave.add(group);
  }

  restore(group: number, snapshot: Snapshot): void {
    const h = this.hosted(group);
    const [index, sessions, state] = unpackr.unpack(snapshot.data) as [
      number,
      [string, number, [number, unknown][]][],
      unknown,
    ];
    void this.closeOne(group, h.sm);
    h.sm = this.module.createStateMachine(group);
    h.sm.restore(state);
    h.applied = Math.max(index, snapshot.meta.index);
    h.sessions.clear();
    for (const [c, lo, rs] of sessions) h.sessions.set(c, { lo, results: new Map(rs) });
    this.toSave.add(group);
  }

  prepareWrite(force = false): (() => void) | null {
    if (force) for (const [g, h] of this.groups) if (h.applied > Math.max(h.saved, h.staged)) this.toSave.add(g);
    if (this.toSave.size === 0 && this.toDrop.size === 0) return null;
    // The blobs are encoded now: the transaction may run after later entries were applied.
    const drops = [...this.toDrop];
    const saves: [number, Buffer][] = [];
    const saved = new Map<number, number>();
    for (const g of this.toSave) {
      const h = this.groups.get(g);
      if (!h) continue;
      saves.push([g, Buffer.from(this.blob(h))]);
      h.staged = h.applied;
      saved.set(g, h.applied);
    }
    this.toSave.clear();
    this.toDrop.clear();
    this.pendingSaved.push(saved);
    return () => {
      // Inside the write transaction: the promises only repeat the transaction's outcome.
      for (const g of drops) void this.db.remove(g);
      for (const [g, b] of saves) void this.db.put(g, b);
    };
  }

  committed(): void {
    const saved = this.pendingSaved.shift();
    if (!saved) return;
    for (const [g, i] of saved) {
      const h = this.groups.get(g);
      if (h) h.saved = Math.max(h.saved, i);
    }
  }

  compactableTo(group: number): number {
    return this.hosted(group).saved;
  }

  dropGroup(group: number): void {
    const h = this.groups.get(group);
    if (h) void this.closeOne(group, h.sm);
    this.groups.delete(group);
    this.toSave.delete(group);
    this.toDrop.add(group);
  }

  /** Close every instance (the shard stopped, its state written). */
  async close(): Promise<void> {
    const all = [...this.groups];
    this.groups.clear();
    await Promise.all(all.map(([g, h]) => this.closeOne(g, h.sm)));
  }

  /** Call an instance's close hook; what it throws is logged, never raised (the instance is
   *  discarded either way). */
  private async closeOne(group: number, sm: UserStateMachine): Promise<void> {
    try {
      await sm.close?.();
    } catch (e) {
      this.log?.warn({ err: e, group }, 'state machine close() failed');
    }
  }
}

/** First byte of a streamed user snapshot (a blob, a msgpack array, never starts with it):
 *  STREAMED | u32 header length | header (msgpack [applied, sessions]) | (u32 length | chunk)... |
 *  u32 STREAMED_END. */
const STREAMED = 0x00;
const STREAMED_END = 0xffffffff;
/** No chunk of a streamed user snapshot is larger (a length read from damaged bytes must not
 *  allocate gigabytes). */
const MAX_STREAMED_CHUNK = 256 * 1024 * 1024;

function u32(n: number): Uint8Array {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(n, 0);
  return b;
}

function u8u32(a: number, n: number): Uint8Array {
  const b = Buffer.allocUnsafe(5);
  b[0] = a;
  b.writeUInt32LE(n, 1);
  return b;
}

/** A SnapshotReader over bytes already in memory. */
export function bytesReader(b: Uint8Array): SnapshotReader {
  let at = 0;
  return {
    read: (max) => {
      if (at >= b.byteLength) return null;
      const out = b.subarray(at, Math.min(b.byteLength, at + max));
      at += out.byteLength;
      return out;
    },
    close: () => {},
  };
}

/** Encode a user command for proposing (what UserStateMachine.apply receives, decoded). */
export function encodeUserCommand(command: unknown): Uint8Array {
  return Uint8Array.prototype.slice.call(packr.pack(command));
}
