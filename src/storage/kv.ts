// KvStateMachine: the built-in replicated key-value store. Each group's keys live in one LMDB
// table of the worker's environment, prefixed by the group id; client sessions (session.ts) in a
// second table and each group's applied index in a third, so a retried proposal is recognised on
// every replica, after restarts and in snapshots.
//
// Applying writes to a memtable, not to LMDB: the values, session records and applied indexes a
// turn produces are kept in memory (reads see them at once) and written out together, as one
// generation, inside a later log commit: every `flushIntervalMs`, or when `maxDirtyKeys` keys or
// `maxDirtyBytes` of keys and values are dirty (and at once for a snapshot install, committed before that install's WAL record: see
// LogStore.commit, or a dropped group). So the fsynced commit of a busy
// turn carries only its WAL record, and a key written a thousand times between two flushes is
// written to the B-tree once. A generation's data, sessions and applied index are written in the
// same transaction, so the durable image is always that of one applied index; after a crash the
// shard resumes from it and the log replays the entries after it (the log is never compacted past
// the durable applied index: compactableTo). Replay re-applies exactly what was applied before,
// with the sessions of that moment, so every entry still takes effect exactly once.
import type { Database } from 'lmdb';
import { FlotillaError } from '../errors.js';
import { RaftError, type Entry, type Snapshot, type SnapshotMeta } from '../raft/types.js';
import { Reader, Writer } from './codec.js';
import { crc32 } from './crc32.js';
import { CorruptRecord } from './errors.js';
import type { SnapshotReader } from './snapstream.js';
import type { LogStore } from './logstore.js';
import {
  Envelope,
  NOT_DUPLICATE,
  applyRejection,
  decodeSession,
  duplicateResult,
  encodeCommand,
  encodeSession,
  readEnvelope,
  recordResultOf,
  type ApplyRejection,
  type SessionRecord,
  type SessionStore,
} from './session.js';

export const MAX_KEY_BYTES = 1024;

export type KvCommand =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly op: 'delete'; readonly key: Uint8Array }
  | {
      readonly op: 'cas';
      readonly key: Uint8Array;
      readonly expected: Uint8Array | null;
      readonly value: Uint8Array | null;
    };

export type KvResult =
  | { readonly op: 'put' }
  /** `existed`: the key held a value when the delete applied (decided at apply, from the state at
   *  that index: the same on every replica and on replay). */
  | { readonly op: 'delete'; readonly existed: boolean }
  | { readonly op: 'cas'; readonly swapped: boolean; readonly current: Uint8Array | null };

/** What applying one entry gives: a command's result, or the refusal of a committed entry whose
 *  command does not decode (see malformed). */
export type KvApplyResult = KvResult | ApplyRejection;

const OPS = ['put', 'delete', 'cas'] as const;
/** The results of put and delete carry nothing but a flag: one frozen object each. */
const PUT_RESULT: KvResult = Object.freeze({ op: 'put' });
const DELETED_RESULT: KvResult = Object.freeze({ op: 'delete', existed: true });
const MISSING_RESULT: KvResult = Object.freeze({ op: 'delete', existed: false });
/** Set in the op byte of a command written without a trailing CRC-32 (entries travel inside
 *  checksummed WAL records and Raft batches); commands without it (older logs) end in one. */
const NO_CRC = 0x80;
const PUT_OP = 0 | NO_CRC;
const DELETE_OP = 1 | NO_CRC;

export function encodeKvCommand(c: KvCommand): Uint8Array {
  return encodeKvCommandView(c).slice();
}

const scratch = new Writer(4096);

/** encodeKvCommand into a shared scratch buffer: the result is valid until the next call. */
export function encodeKvCommandView(c: KvCommand): Uint8Array {
  const problem = kvCommandProblem(c);
  if (problem !== null) throw new RaftError('InvalidArgument', problem);
  const w = scratch.reset();
  w.u8(OPS.indexOf(c.op) | NO_CRC);
  w.bytes(c.key);
  if (c.op === 'put') w.bytes(c.value);
  if (c.op === 'cas') {
    w.u8((c.expected ? 1 : 0) | (c.value ? 2 : 0));
    if (c.expected) w.bytes(c.expected);
    if (c.value) w.bytes(c.value);
  }
  return w.finishPlainView();
}

/** What is wrong with a command that came from outside the type system (a JavaScript caller, a
 *  parsed document), or null: checked before encoding, so that it is refused with a reason and
 *  never reaches the log. */
function kvCommandProblem(c: KvCommand): string | null {
  const u = c as { op?: unknown; key?: unknown; value?: unknown; expected?: unknown };
  if (typeof u !== 'object' || u === null) return 'a KV command is an object { op, key, ... }';
  if (!OPS.includes(u.op as KvCommand['op'])) return `unknown KV op ${JSON.stringify(u.op)} (put, delete or cas)`;
  if (!(u.key instanceof Uint8Array)) return `${u.op}: key must be bytes (Uint8Array)`;
  if (u.key.byteLength === 0 || u.key.byteLength > MAX_KEY_BYTES)
    return `key must be 1..${MAX_KEY_BYTES} bytes (got ${u.key.byteLength})`;
  if (u.op === 'put' && !(u.value instanceof Uint8Array)) return 'put: value must be bytes (Uint8Array)';
  if (u.op === 'cas')
    for (const f of ['expected', 'value'] as const)
      if (!(u[f] === null || u[f] instanceof Uint8Array)) return `cas: ${f} must be bytes (Uint8Array) or null`;
  return null;
}

/** A decoded key's length outside 1..MAX_KEY_BYTES: bytes no encoder writes (and a key LMDB
 *  could refuse at the next flush, failing the shard on every replica). */
function checkKeyLength(n: number): void {
  if (n === 0 || n > MAX_KEY_BYTES) throw new RaftError('Malformed', `key of ${n} bytes (1..${MAX_KEY_BYTES})`);
}

/** `copy: false` returns views into `data` (for decoding in place, e.g. while applying). Throws
 *  CorruptRecord (with `checksum` when an older command's CRC-32 fails) or RaftError 'Malformed'. */
export function decodeKvCommand(data: Uint8Array, copy = true): KvCommand {
  // Only the op bytes of commands that end in a CRC-32 are checked: an unknown one is malformed.
  const r = new Reader(data, 'kv command', data.byteLength > 0 && data[0] < OPS.length);
  const opByte = r.u8();
  const op = OPS[opByte & ~NO_CRC];
  if (op === undefined) throw new RaftError('Malformed', `unknown kv op byte ${opByte}`);
  const take = () => (copy ? r.bytes() : r.bytesView());
  const key = take();
  checkKeyLength(key.byteLength);
  let c: KvCommand;
  switch (op) {
    case 'put':
      c = { op, key, value: take() };
      break;
    case 'delete':
      c = { op, key };
      break;
    case 'cas': {
      const f = r.u8();
      if (f > 3) throw new RaftError('Malformed', `cas flags ${f}`);
      const expected = f & 1 ? take() : null;
      const value = f & 2 ? take() : null;
      c = { op, key, expected, value };
      break;
    }
  }
  r.done();
  return c;
}

/** Entry data for a KV command proposed without a session (tests, tools). */
export function kvEntryData(c: KvCommand): Uint8Array {
  return encodeCommand(null, encodeKvCommand(c));
}

/** dataKey of the key at data[from, to). */
function dataKeyOf(group: number, data: Uint8Array, from: number, to: number): Buffer {
  const k = Buffer.allocUnsafe(4 + to - from);
  k.writeUInt32BE(group, 0);
  copyInto(k, 4, data, from, to);
  return k;
}

/** A copy of data[from, to) in a Buffer of its own (small ones share Node's pool). */
function copyOut(data: Uint8Array, from: number, to: number): Buffer {
  const b = Buffer.allocUnsafe(to - from);
  copyInto(b, 0, data, from, to);
  return b;
}

/** Small copies byte by byte: a view for set() of an entry's small on-heap data would move
 *  that data off the heap first (its .buffer), which costs more than the copy. */
function copyInto(dst: Uint8Array, at: number, src: Uint8Array, from: number, to: number): void {
  if (to - from > 64) {
    dst.set(src.subarray(from, to), at);
    return;
  }
  for (let i = from; i < to; i++) dst[at++] = src[i];
}

function dataKey(group: number, key: Uint8Array): Buffer {
  const k = Buffer.allocUnsafe(4 + key.byteLength);
  k.writeUInt32BE(group, 0);
  k.set(key, 4);
  return k;
}

function equal(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return Buffer.compare(a, b) === 0;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const SESSION_CACHE_MAX = 100_000;
const sessionKey = (group: number, client: string) => `${group}\u0000${client}`;

/** A group's contents replaced wholesale (snapshot install) or emptied (group dropped). */
interface Reset {
  /** The new rows, in memory; or, with `stage`, in the staging table under that restore. */
  readonly data: Map<string, [Buffer, Buffer]>;
  readonly stage: number | null;
  readonly sessions: Map<string, { key: Buffer; rec: SessionRecord }>;
  /** The applied index the new contents reflect; null: the group is gone. */
  readonly applied: number | null;
}

/** Changes applied since the previous generation was cut: what one flush writes. */
class Generation {
  /** Data key (latin1 of the LMDB key) -> new value (null = deleted). */
  readonly data = new Map<string, { key: Buffer; value: Buffer | null }>();
  /** sessionKey -> record. Records here belong to this generation alone (copied on first
   *  update), so cutting the generation freezes them. */
  readonly sessions = new Map<string, { key: Buffer; rec: SessionRecord }>();
  readonly applied = new Map<number, number>();
  /** Earlier than everything in `data`/`sessions` of the same group. */
  readonly resets = new Map<number, Reset>();
  /** Key and value bytes set in `data` (an overwritten key counts twice: an upper bound). */
  bytes = 0;

  /** A key's new value (null = deleted). */
  set(hex: string, key: Buffer, value: Buffer | null): void {
    this.data.set(hex, { key, value });
    this.bytes += key.length + (value?.length ?? 0);
  }

  get empty(): boolean {
    return this.data.size === 0 && this.sessions.size === 0 && this.applied.size === 0 && this.resets.size === 0;
  }
}

export interface KvOptions {
  /** Flush the memtable at least this often (ms). Also bounds the replay after a crash. Default
   *  3000: a flush dirties one B-tree page per scattered key, so its disk bytes grow with the
   *  keys touched, not the writes; measured at 1,000 active groups (25k writes/s) 516 B written
   *  per write and node with 1 s, 199 B with 3 s (the WAL record is 95 B), the same CPU. */
  readonly flushIntervalMs?: number;
  /** Flush once this many keys (values and session records) are dirty. Default 65,536. */
  readonly maxDirtyKeys?: number;
  /** Flush once this many bytes of keys and values are dirty. Default 8 MiB. A flush runs inside
   *  one log commit on the shard's thread, so its size is a pause of every group of the shard:
   *  without this bound, 3 s of 64 KiB writes on a follower was ~200 MiB in one transaction,
   *  0.7-1.2 s of the shard's turn under load, and the groups it led lost their leadership. */
  readonly maxDirtyBytes?: number;
  /** Told of each committed entry refused because its command does not decode (the shard logs
   *  and counts them); called on every replica that applies it, replays included. */
  readonly onMalformed?: (group: number, index: number, reason: string) => void;
}

export class KvStateMachine implements SessionStore {
  private readonly data: Database<Buffer, Buffer>;
  private readonly appliedDb: Database<number, number>;
  private readonly sessionsDb: Database<Buffer, Buffer>;
  /** Rows of snapshots decoded ahead of their install (prepareRestore), by stageKey; what a
   *  previous run left there is stale and cleared at start. */
  private readonly stageDb: Database<Buffer, Buffer>;
  private nextStage = 1;
  /** What applying produced since the last flush was cut. */
  private mem = new Generation();
  /** Cut generations whose commit has not completed yet, oldest first. */
  private readonly flushing: Generation[] = [];
  /** Committed session records recently used (sessionKey -> record), never mutated: a
   *  retry-free proposal otherwise costs an LMDB read and a decode per entry. */
  private readonly sessionCache = new Map<string, SessionRecord>();
  /** Durable applied index per group (read from LMDB once). */
  private readonly durable = new Map<number, number>();
  private lastFlushAt = performance.now();
  private readonly flushIntervalMs: number;
  private readonly maxDirtyKeys: number;
  private readonly maxDirtyBytes: number;
  private readonly onMalformed: KvOptions['onMalformed'];
  private forceFlush = false;
  private skGroup = -1;
  private skClient = '';
  private sk = '';
  /** Reused by apply() for every entry's envelope. */
  private readonly envelope = new Envelope();
  readonly stats = { flushes: 0, flushedKeys: 0, flushedSessions: 0, malformed: 0 };

  constructor(
    private readonly store: LogStore,
    opts: KvOptions = {},
  ) {
    this.data = store.openDB<Buffer, Buffer>('kv', { encoding: 'binary', keyEncoding: 'binary' });
    this.appliedDb = store.openDB<number, number>('applied', { encoding: 'json', keyEncoding: 'uint32' });
    this.sessionsDb = store.openDB<Buffer, Buffer>('sessions', { encoding: 'binary', keyEncoding: 'binary' });
    this.stageDb = store.openDB<Buffer, Buffer>('kvstage', { encoding: 'binary', keyEncoding: 'binary' });
    this.stageDb.clearSync();
    this.flushIntervalMs = opts.flushIntervalMs ?? 3000;
    this.maxDirtyKeys = opts.maxDirtyKeys ?? 65_536;
    this.maxDirtyBytes = opts.maxDirtyBytes ?? 8 << 20;
    this.onMalformed = opts.onMalformed;
  }

  /** Generation `i` from the newest (0: the memtable, then those being flushed), for
   *  i < 1 + flushing.length. An index, not a generator: these lookups run for every entry. */
  private generation(i: number): Generation {
    return i === 0 ? this.mem : this.flushing[this.flushing.length - i];
  }

  /** sessionKey(group, client), remembered for the last pair asked: one entry asks for its
   *  session twice (checked, then recorded), and runs of entries come from the same client. */
  private sessionKeyOf(group: number, client: string): string {
    if (group !== this.skGroup || client !== this.skClient) {
      this.skGroup = group;
      this.skClient = client;
      this.sk = sessionKey(group, client);
    }
    return this.sk;
  }

  getSession(group: number, client: string): SessionRecord | undefined {
    const sk = this.sessionKeyOf(group, client);
    for (let i = 0, n = 1 + this.flushing.length; i < n; i++) {
      const gen = this.generation(i);
      const o = gen.sessions.get(sk);
      if (o) return o.rec;
      const r = gen.resets.get(group);
      if (r) return r.sessions.get(sk)?.rec;
    }
    const c = this.sessionCache.get(sk);
    if (c) return c;
    const b = this.sessionsDb.getBinary(dataKey(group, enc.encode(client)));
    if (!b) return undefined;
    const rec = decodeSession(b);
    this.cacheSession(sk, rec);
    return rec;
  }

  updateSession(group: number, client: string): SessionRecord {
    const sk = this.sessionKeyOf(group, client);
    const own = this.mem.sessions.get(sk);
    if (own) return own.rec;
    const prev = this.getSession(group, client);
    const rec: SessionRecord = prev ? { lo: prev.lo, results: new Map(prev.results) } : { lo: 0, results: new Map() };
    this.mem.sessions.set(sk, { key: dataKey(group, enc.encode(client)), rec });
    return rec;
  }

  private cacheSession(sk: string, rec: SessionRecord): void {
    // Committed records only; bounded by dropping everything (they are re-read from LMDB).
    if (this.sessionCache.size >= SESSION_CACHE_MAX) this.sessionCache.clear();
    this.sessionCache.set(sk, rec);
  }

  /** The applied index of `group`: what has been applied, flushed or not. */
  applied(group: number): number {
    for (let i = 0, n = 1 + this.flushing.length; i < n; i++) {
      const gen = this.generation(i);
      const a = gen.applied.get(group);
      if (a !== undefined) return a;
      const r = gen.resets.get(group);
      if (r) return r.applied ?? 0;
    }
    return this.durableApplied(group);
  }

  /** The applied index of `group` as last flushed (what a restart resumes from). */
  durableApplied(group: number): number {
    let d = this.durable.get(group);
    if (d === undefined) {
      d = this.appliedDb.get(group) ?? 0;
      this.durable.set(group, d);
    }
    return d;
  }

  private current(group: number, key: Uint8Array): Uint8Array | null {
    const k = dataKey(group, key);
    const hex = k.toString('latin1'); // one char per byte: a cheap exact map key
    const v = this.staged(group, hex);
    return v !== undefined ? v : (this.data.getBinary(k) ?? null);
  }

  /** Whether the key (its data key `k`, `hex` its latin1) holds a value; reads no value from LMDB. */
  private exists(group: number, k: Buffer, hex: string): boolean {
    const v = this.staged(group, hex);
    return v !== undefined ? v !== null : this.data.doesExist(k);
  }

  /** A key's value in the generations not yet durable (null: deleted there), or undefined: the
   *  flushed contents decide. */
  private staged(group: number, hex: string): Buffer | null | undefined {
    for (let i = 0, n = 1 + this.flushing.length; i < n; i++) {
      const gen = this.generation(i);
      const o = gen.data.get(hex);
      if (o) return o.value;
      // A reset replaces the group's older contents entirely.
      const r = gen.resets.get(group);
      if (r) {
        if (r.stage !== null) {
          // Only while a streamed install is in flight: the key's bytes follow the group prefix.
          const key = Buffer.from(hex, 'latin1').subarray(4);
          return this.stageDb.getBinary(stageKey(r.stage, group, key)) ?? null;
        }
        return r.data.get(hex)?.[1] ?? null;
      }
    }
    return undefined;
  }

  /** Apply committed entries; returns one result per entry (null for no-ops and conf entries).
   *  Entries at or below the applied index are skipped (exactly once); an entry whose session
   *  says it was applied already returns the recorded result (at most once per client seq). */
  apply(group: number, entries: readonly Entry[]): (KvApplyResult | null)[] {
    let applied = this.applied(group);
    const out: (KvApplyResult | null)[] = [];
    for (const e of entries) {
      if (e.index <= applied) {
        out.push(null);
        continue;
      }
      applied = e.index;
      out.push(e.type !== 'normal' || e.data.byteLength === 0 ? null : this.applyEntry(group, e));
    }
    this.mem.applied.set(group, applied);
    return out;
  }

  private applyEntry(group: number, e: Entry): KvApplyResult | null {
    const d = e.data;
    const env = this.envelope;
    try {
      readEnvelope(d, env);
    } catch (err) {
      return this.malformed(group, e.index, err);
    }
    if (env.session) {
      const dup = duplicateResult(this, group, env.client, env.seq);
      if (dup !== NOT_DUPLICATE) return dup as KvApplyResult | null;
    }
    const res = this.applyCommand(group, e.index, d, env.start, env.end);
    if (env.session) recordResultOf(this, group, env.client, env.seq, env.lo, res);
    return res;
  }

  /** Apply the command at d[start, end). Decoding comes first and changes nothing, so a command
   *  that does not decode is refused with the state untouched. */
  private applyCommand(group: number, index: number, d: Uint8Array, start: number, end: number): KvApplyResult {
    const data = this.mem;
    const opByte = end > start ? d[start] : -1;
    if (opByte === PUT_OP || opByte === DELETE_OP) {
      // put and delete, read in place: the key is copied into its table key and the value
      // into its own buffer, with no view or command object in between.
      let k: Buffer;
      let value: Buffer | null = null;
      try {
        const r = new Reader(d, 'kv command', false, start + 1, end);
        const keyAt = r.skipBytes();
        checkKeyLength(r.pos - keyAt);
        k = dataKeyOf(group, d, keyAt, r.pos);
        if (opByte === PUT_OP) {
          const valueAt = r.skipBytes();
          value = copyOut(d, valueAt, r.pos);
        }
        r.done();
      } catch (err) {
        return this.malformed(group, index, err);
      }
      const hex = k.toString('latin1');
      if (value !== null) {
        data.set(hex, k, value);
        return PUT_RESULT;
      }
      const existed = this.exists(group, k, hex);
      data.set(hex, k, null);
      return existed ? DELETED_RESULT : MISSING_RESULT;
    }
    let c: KvCommand;
    try {
      c = decodeKvCommand(d.subarray(start, end), false);
    } catch (err) {
      return this.malformed(group, index, err);
    }
    const k = dataKey(group, c.key);
    const hex = k.toString('latin1');
    switch (c.op) {
      case 'put':
        // A view: the value lives in the entry's own data, which nothing else writes to.
        data.set(hex, k, Buffer.from(c.value.buffer, c.value.byteOffset, c.value.byteLength));
        return PUT_RESULT;
      case 'delete': {
        const existed = this.exists(group, k, hex);
        data.set(hex, k, null);
        return existed ? DELETED_RESULT : MISSING_RESULT;
      }
      case 'cas': {
        const cur = this.current(group, c.key);
        const swapped = equal(cur, c.expected);
        const next = swapped && c.value ? Buffer.from(c.value) : null;
        if (swapped) data.set(hex, k, next);
        return { op: 'cas', swapped, current: swapped ? next : cur };
      }
    }
  }

  /** The result of a committed entry whose command does not decode (`err`, thrown decoding it).
   *  Commands are checked before they are proposed, so only a faulty or hostile peer, or an old
   *  bug, puts one in a log; but a committed entry is the same bytes on every replica, so refusing
   *  it is deterministic and the group goes on, where throwing would stop the shard on every
   *  replica, again at each replay. Bytes that fail their CRC-32 are another matter: they differ
   *  from what was written, perhaps on this replica only, and must never be applied or refused as
   *  if they were the entry: that stays fail-stop. */
  private malformed(group: number, index: number, err: unknown): ApplyRejection {
    if (err instanceof CorruptRecord && err.checksum) throw err;
    // Only our own messages: another runtime's wording of a platform error (an invalid UTF-8
    // client id) could differ between replicas, and the result is recorded in the session.
    const reason = err instanceof FlotillaError ? err.message : 'its bytes do not decode';
    this.stats.malformed++;
    this.onMalformed?.(group, index, reason);
    return applyRejection(`malformed KV command at index ${index} of group ${group}: ${reason}`);
  }

  /** Cut the memtable into a generation for the next commit when a flush is due (or `force`):
   *  returns the writes to run inside that commit's transaction, or null. The generation is
   *  frozen now, so what the transaction writes is this moment's state whenever it runs. */
  prepareWrite(force = false): (() => void) | null {
    const m = this.mem;
    if (m.empty) return null;
    const due =
      force ||
      this.forceFlush ||
      m.resets.size > 0 ||
      m.data.size + m.sessions.size >= this.maxDirtyKeys ||
      m.bytes >= this.maxDirtyBytes ||
      performance.now() - this.lastFlushAt >= this.flushIntervalMs;
    if (!due) return null;
    this.mem = new Generation();
    this.flushing.push(m);
    this.forceFlush = false;
    this.lastFlushAt = performance.now();
    return () => this.write(m);
  }

  private write(gen: Generation): void {
    // Inside the write transaction: each put/remove applies at once; its promise only repeats the
    // transaction's outcome, which the caller awaits, so it is dropped (void) on purpose.
    for (const [group, r] of gen.resets) {
      const range = { start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)) };
      for (const k of this.data.getKeys(range)) void this.data.remove(k);
      for (const k of this.sessionsDb.getKeys(range)) void this.sessionsDb.remove(k);
      for (const [k, v] of r.data.values()) void this.data.put(k, v);
      if (r.stage !== null) {
        // Rows decoded ahead are copied into the table here, with the applied index: one
        // transaction. The staged copies stay until this generation is committed (reads of the
        // group look there until then), and go afterwards (committed()).
        const staged = { start: stageKey(r.stage, group, EMPTY_KEY), end: stageKey(r.stage, group + 1, EMPTY_KEY) };
        for (const { key, value } of this.stageDb.getRange(staged))
          void this.data.put(dataKey(group, key.subarray(8)), value);
      }
      for (const { key, rec } of r.sessions.values()) void this.sessionsDb.put(key, Buffer.from(encodeSession(rec)));
      if (r.applied === null) void this.appliedDb.remove(group);
      else void this.appliedDb.put(group, r.applied);
    }
    for (const { key, value } of gen.data.values()) {
      if (value === null) void this.data.remove(key);
      else void this.data.put(key, value);
    }
    for (const { key, rec } of gen.sessions.values()) void this.sessionsDb.put(key, Buffer.from(encodeSession(rec)));
    for (const [g, i] of gen.applied) void this.appliedDb.put(g, i);
  }

  /** The commit that ran the oldest prepared write is durable. */
  committed(): void {
    const gen = this.flushing.shift();
    if (!gen) return;
    this.stats.flushes++;
    this.stats.flushedKeys += gen.data.size;
    this.stats.flushedSessions += gen.sessions.size;
    for (const [group, r] of gen.resets) {
      if (r.stage !== null) this.dropStaged(r.stage, group);
      for (const sk of [...this.sessionCache.keys()])
        if (sk.startsWith(sessionKey(group, ''))) this.sessionCache.delete(sk);
      for (const [sk, { rec }] of r.sessions) this.cacheSession(sk, rec);
      if (r.applied === null) this.durable.delete(group);
      else this.durable.set(group, r.applied);
    }
    for (const [sk, { rec }] of gen.sessions) this.cacheSession(sk, rec);
    for (const [g, i] of gen.applied) this.durable.set(g, i);
  }

  /** Make the next prepareWrite() flush whatever is pending (shutdown, tests). */
  flushSoon(): void {
    this.forceFlush = true;
  }

  /** Remove every trace of a group (data, sessions, applied index), with the next commit. */
  dropGroup(group: number): void {
    this.resetGroup(group, { data: new Map(), sessions: new Map(), applied: null, stage: null });
  }

  private resetGroup(group: number, r: Reset): void {
    const prefix = dataKey(group, new Uint8Array(0)).toString('latin1');
    const sprefix = sessionKey(group, '');
    for (const k of [...this.mem.data.keys()]) if (k.startsWith(prefix)) this.mem.data.delete(k);
    for (const k of [...this.mem.sessions.keys()]) if (k.startsWith(sprefix)) this.mem.sessions.delete(k);
    this.mem.applied.delete(group);
    this.mem.resets.set(group, r);
  }

  /** A read: `query` is the key. */
  query(group: number, query: unknown): Uint8Array | null {
    if (!(query instanceof Uint8Array)) throw new RaftError('InvalidArgument', 'a KV query is a key (bytes)');
    return this.get(group, query);
  }

  /** The log must keep every entry after the durable applied index: a restart replays them. */
  compactableTo(group: number): number {
    return this.durableApplied(group);
  }

  /** The applied value of a key (what linearizable and stale reads see). */
  get(group: number, key: Uint8Array): Uint8Array | null {
    return this.current(group, key);
  }

  /** A consistent image of one group at its applied index, in one buffer (tests, and hosts that
   *  send snapshots inline): the bytes of openSnapshot(). */
  snapshot(group: number, metaAt: (index: number) => SnapshotMeta): Snapshot {
    const { index, reader } = this.openSnapshot(group);
    const parts: Uint8Array[] = [];
    try {
      for (let b = reader.read(1 << 20); b !== null; b = reader.read(1 << 20)) parts.push(b);
    } finally {
      reader.close();
    }
    return { meta: metaAt(index), data: Buffer.concat(parts) };
  }

  /** A consistent image of one group at its applied index, read lazily: the flushed contents from
   *  an LMDB read transaction held until close() (so the group keeps serving and flushing while
   *  it is read), merged with the newer generations captured now. Keys come out in byte order, so
   *  the bytes are a function of the group's state alone (two readers at one index agree, which
   *  resuming a stream relies on). Format: KV_SNAPSHOT below. */
  openSnapshot(group: number): { index: number; reader: SnapshotReader } {
    const gens = [...this.flushing, this.mem];
    const prefix = dataKey(group, new Uint8Array(0)).toString('latin1');
    const sprefix = sessionKey(group, '');
    let from = 0;
    for (let i = gens.length - 1; i >= 0; i--) {
      if (gens[i].resets.has(group)) {
        from = i;
        break;
      }
    }
    const reset = gens[from].resets.get(group);
    // What the generations say, newest last (so later ones win): full table key -> value.
    const data = new Map<string, [Buffer, Buffer | null]>();
    const sessions = new Map<string, [Buffer, Uint8Array]>();
    if (reset) {
      for (const [hex, kv] of reset.data) data.set(hex, kv);
      for (const { key, rec } of reset.sessions.values())
        sessions.set(key.toString('latin1'), [key, encodeSession(rec)]);
    }
    for (let i = from; i < gens.length; i++) {
      for (const [hex, { key, value }] of gens[i].data) if (hex.startsWith(prefix)) data.set(hex, [key, value]);
      for (const [sk, { key, rec }] of gens[i].sessions)
        if (sk.startsWith(sprefix)) sessions.set(key.toString('latin1'), [key, encodeSession(rec)]);
    }
    const byKey = (a: [Buffer, unknown], b: [Buffer, unknown]) => Buffer.compare(a[0], b[0]);
    const overData = [...data.values()].sort(byKey);
    const overSessions = [...sessions.values()].sort(byKey);
    const index = this.applied(group);
    // After a reset nothing flushed before it counts: the base is its staged rows, or nothing.
    const stage = reset ? reset.stage : null;
    const txn = reset && stage === null ? null : this.store.readTransaction();
    const range = { start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)) };
    const base = (db: Database<Buffer, Buffer>) => (txn ? pagedRange(db, range.start, range.end, txn) : []);
    const dataBase =
      stage === null
        ? base(this.data)
        : unstaged(
            group,
            pagedRange(this.stageDb, stageKey(stage, group, EMPTY_KEY), stageKey(stage, group + 1, EMPTY_KEY), txn!),
          );
    const records = kvSnapshotRecords(
      index,
      mergeSorted(dataBase, overData),
      mergeSorted(reset ? [] : base(this.sessionsDb), overSessions),
    );
    return { index, reader: new RecordReader(records, () => txn?.done()) };
  }

  /** Replace a group's data with a snapshot; written out (atomically) by the next commit. */
  restore(group: number, snapshot: Snapshot): void {
    this.restoreStream(group, snapshot.meta, [snapshot.data]);
  }

  /** Replace a group's data with a snapshot read piece by piece (openSnapshot's bytes); written
   *  out (atomically) by the next commit. Throws CorruptRecord for bytes that do not decode or
   *  fail the format's CRC-32, RaftError 'Malformed' for an image of another index; the group is
   *  untouched then. */
  restoreStream(group: number, meta: SnapshotMeta, pieces: Iterable<Uint8Array>): void {
    const data = new Map<string, [Buffer, Buffer]>();
    const d = this.decoder(group, meta.index, pieces, (key, value) => {
      const k = dataKey(group, key);
      data.set(k.toString('latin1'), [k, value]);
    });
    while (!d.step(Number.POSITIVE_INFINITY)) {
      // decodes it all
    }
    this.resetGroup(group, { data, sessions: d.sessions, applied: d.index(), stage: null });
  }

  /** restoreStream in two halves, with memory bounded whatever the image's size: step() decodes
   *  at least `maxBytes` more of the image into a staging table of LMDB (its own writes, outside
   *  the log's commits) and returns true once all of it is decoded, checked and written there, so
   *  a large image can be prepared a slice per event-loop turn while the group keeps serving;
   *  apply() then replaces the group's data with it (reads see the staged rows at once; the next
   *  commit moves them into the table, atomically with the applied index). discard() drops the
   *  staged rows of a restore that will not be applied. Errors as restoreStream's, from step(). */
  prepareRestore(group: number, index: number, pieces: Iterable<Uint8Array>): PreparedRestore {
    const stage = this.nextStage++;
    let pending = 0;
    let failed: unknown = null;
    let decoded = false;
    let dropped = false;
    const removeRows = () => this.dropStaged(stage, group);
    const settled = () => {
      pending--;
      if (pending === 0 && dropped) removeRows();
    };
    const d = this.decoder(group, index, pieces, (key, value) => {
      pending++;
      this.stageDb.put(stageKey(stage, group, key), value).then(settled, (e: unknown) => {
        failed ??= e;
        settled();
      });
    });
    return {
      step: (maxBytes) => {
        if (failed !== null) throw new CorruptRecord(`kv snapshot of group ${group}`, `staging: ${String(failed)}`);
        if (!decoded && pending < MAX_STAGE_PENDING) decoded = d.step(maxBytes);
        return decoded && pending === 0;
      },
      apply: () => {
        if (!decoded || pending > 0 || failed !== null || dropped)
          throw new RaftError('Invariant', `kv snapshot of group ${group}: applied before it was prepared`);
        this.resetGroup(group, { data: new Map(), sessions: d.sessions, applied: d.index(), stage });
      },
      discard: () => {
        if (dropped) return;
        dropped = true;
        if (pending === 0) removeRows();
      },
    };
  }

  /** Remove the staged rows of one restore (their own LMDB writes; stale ones are also cleared at
   *  start). */
  private dropStaged(stage: number, group: number): void {
    const range = { start: stageKey(stage, group, EMPTY_KEY), end: stageKey(stage, group + 1, EMPTY_KEY) };
    const keys = [...this.stageDb.getKeys(range)].map((k) => Buffer.from(k));
    for (const k of keys) void this.stageDb.remove(k);
  }

  /** Decodes an image (KV_SNAPSHOT) a slice at a time: data rows go to `onData` (key without the
   *  group prefix), sessions into `sessions`; step(maxBytes) is true once the end and its CRC-32
   *  were read and the image's index matched. */
  private decoder(
    group: number,
    index: number,
    pieces: Iterable<Uint8Array>,
    onData: (key: Buffer, value: Buffer) => void,
  ): {
    step(maxBytes: number): boolean;
    index(): number;
    readonly sessions: Map<string, { key: Buffer; rec: SessionRecord }>;
  } {
    const what = `kv snapshot of group ${group}`;
    const r = new PieceReader(pieces, what);
    const sessions = new Map<string, { key: Buffer; rec: SessionRecord }>();
    let imageIndex = -1;
    let done = false;
    return {
      sessions,
      index: () => imageIndex,
      step: (maxBytes: number): boolean => {
        if (done) return true;
        if (imageIndex < 0) {
          if (r.u8() !== KV_SNAPSHOT_VERSION) throw new CorruptRecord(what, 'unknown format version');
          imageIndex = r.num();
        }
        const until = r.consumed + maxBytes;
        while (r.consumed < until) {
          const tag = r.u8();
          if (tag === TAG_END) {
            r.end();
            if (imageIndex !== index)
              throw new RaftError('Malformed', `${what}: data index ${imageIndex} != meta index ${index}`);
            done = true;
            return true;
          }
          const key = r.take(r.u32(), 65_536); // a key, or a client id (a short string)
          const value = r.take(r.u32(), MAX_SNAPSHOT_VALUE_BYTES);
          if (tag === TAG_DATA) {
            onData(key, value);
          } else if (tag === TAG_SESSION) {
            const client = dec.decode(key);
            sessions.set(sessionKey(group, client), { key: dataKey(group, key), rec: decodeSession(value) });
          } else {
            throw new CorruptRecord(what, `unknown record tag ${tag}`);
          }
        }
        return false;
      },
    };
  }
}

const EMPTY_KEY = new Uint8Array(0);
/** Staged rows written and not yet acknowledged by LMDB, beyond which decoding waits. */
const MAX_STAGE_PENDING = 4096;

/** A staged row: u32 restore | u32 group | key (restores of one group never share rows). */
function stageKey(stage: number, group: number, key: Uint8Array): Buffer {
  const k = Buffer.allocUnsafe(8 + key.byteLength);
  k.writeUInt32BE(stage, 0);
  k.writeUInt32BE(group, 4);
  k.set(key, 8);
  return k;
}

// --- the snapshot format -------------------------------------------------------------------------
// KV_SNAPSHOT: u8 version | num applied index | records | u8 TAG_END | u32 CRC-32 of all before it.
// A record: u8 tag (TAG_DATA: key without the group prefix, value; TAG_SESSION: client id as
// UTF-8, encoded session record) | u32 length | key | u32 length | value. Data records come in
// key order, then session records in key order.
const KV_SNAPSHOT_VERSION = 2;
const TAG_END = 0;
const TAG_DATA = 1;
const TAG_SESSION = 2;
/** No value in an image is larger (no proposal is: it would not fit in a transport frame). */
const MAX_SNAPSHOT_VALUE_BYTES = 64 * 1024 * 1024;
/** Rows, and bytes, read from LMDB per range call while a snapshot is read (whichever comes
 *  first: what a reader holds at once stays small whatever the value sizes). */
const SNAPSHOT_PAGE = 512;
const SNAPSHOT_PAGE_BYTES = 1024 * 1024;

type Row = [Buffer, Uint8Array];

/** A table's rows in [start, end) read from `txn`, a page per call (no iterator is held between
 *  pages, only the transaction). */
function* pagedRange(
  db: Database<Buffer, Buffer>,
  start: Buffer,
  end: Buffer,
  txn: ReturnType<LogStore['readTransaction']>,
): Generator<Row> {
  let from = start;
  for (;;) {
    const page: Row[] = [];
    let bytes = 0;
    let full = false;
    for (const { key, value } of db.getRange({ start: from, end, limit: SNAPSHOT_PAGE, transaction: txn })) {
      page.push([key, value]);
      bytes += value.byteLength;
      if (page.length === SNAPSHOT_PAGE || bytes >= SNAPSHOT_PAGE_BYTES) {
        full = true;
        break;
      }
    }
    yield* page;
    if (!full) return;
    // The smallest key after the last one.
    from = Buffer.concat([page[page.length - 1][0], Buffer.alloc(1)]);
  }
}

/** Staged rows as table rows (the restore's prefix replaced by the group's). */
function* unstaged(group: number, rows: Iterable<Row>): Generator<Row> {
  for (const [k, v] of rows) yield [dataKey(group, k.subarray(8)), v];
}

/** `base` (sorted) with `over` (sorted; a null value deletes) laid over it, sorted. */
function* mergeSorted(base: Iterable<Row>, over: [Buffer, Uint8Array | null][]): Generator<Row> {
  let j = 0;
  for (const row of base) {
    while (j < over.length && Buffer.compare(over[j][0], row[0]) < 0) {
      const [k, v] = over[j++];
      if (v !== null) yield [k, v];
    }
    if (j < over.length && Buffer.compare(over[j][0], row[0]) === 0) {
      const [k, v] = over[j++];
      if (v !== null) yield [k, v];
      continue;
    }
    yield row;
  }
  for (; j < over.length; j++) {
    const [k, v] = over[j];
    if (v !== null) yield [k, v];
  }
}

/** The encoded pieces of a KV snapshot, in order (the last carries the CRC). */
function* kvSnapshotRecords(index: number, data: Iterable<Row>, sessions: Iterable<Row>): Generator<Uint8Array> {
  let crc = 0;
  const head = new Writer(16);
  head.u8(KV_SNAPSHOT_VERSION);
  head.num(index);
  const h = head.finishPlain();
  crc = crc32(h, 0, h.byteLength, crc);
  yield h;
  for (const [tag, rows] of [
    [TAG_DATA, data],
    [TAG_SESSION, sessions],
  ] as const) {
    for (const [k, v] of rows) {
      // Table keys carry the group prefix (4 bytes); the image does not.
      const w = new Writer(13 + k.byteLength + v.byteLength);
      w.u8(tag);
      w.bytes(k.subarray(4));
      w.bytes(v);
      const rec = w.finishPlainView();
      crc = crc32(rec, 0, rec.byteLength, crc);
      yield rec;
    }
  }
  const tail = new Writer(8);
  tail.u8(TAG_END);
  const t = tail.finishPlain();
  crc = crc32(t, 0, t.byteLength, crc);
  tail.u32(crc);
  yield tail.finishPlain();
}

/** A SnapshotReader over a sequence of pieces: read(max) packs (and splits) them into buffers of
 *  at most `max` bytes; close() calls `release`. */
export class RecordReader implements SnapshotReader {
  private piece: Uint8Array | null = null;
  private at = 0;
  private closed = false;

  constructor(
    private readonly pieces: Iterator<Uint8Array>,
    private readonly release: () => void,
  ) {}

  read(max: number): Uint8Array | null {
    if (this.closed) return null;
    const out = new Uint8Array(max);
    let n = 0;
    while (n < max) {
      if (this.piece === null || this.at === this.piece.byteLength) {
        const it = this.pieces.next();
        if (it.done) {
          this.piece = null;
          break;
        }
        this.piece = it.value;
        this.at = 0;
        continue;
      }
      const take = Math.min(max - n, this.piece.byteLength - this.at);
      out.set(this.piece.subarray(this.at, this.at + take), n);
      n += take;
      this.at += take;
    }
    if (n === 0) return null;
    return n === max ? out : out.slice(0, n);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.release();
  }
}

/** A restore decoded ahead of its install (KvStateMachine.prepareRestore). */
export interface PreparedRestore {
  step(maxBytes: number): boolean;
  apply(): void;
  discard(): void;
}

/** Reads values across the boundaries of a sequence of pieces, keeping a CRC-32 of what it
 *  consumed (checked by end(), for formats that end in one). */
export class PieceReader {
  /** Bytes read so far. */
  consumed = 0;
  private readonly it: Iterator<Uint8Array>;
  private piece: Uint8Array = new Uint8Array(0);
  private at = 0;
  private crc = 0;
  private readonly scratch = new Uint8Array(8);

  constructor(
    pieces: Iterable<Uint8Array>,
    private readonly what: string,
  ) {
    this.it = pieces[Symbol.iterator]();
  }

  /** The next `n` bytes in a buffer of their own (at most `max`: a length read from damaged
   *  bytes must not allocate gigabytes before the checksum at the end can say so). */
  take(n: number, max: number): Buffer {
    if (n > max) throw new CorruptRecord(this.what, `a field of ${n} bytes (at most ${max})`);
    const out = Buffer.allocUnsafe(n);
    this.fill(out, n);
    return out;
  }

  u8(): number {
    this.fill(this.scratch, 1);
    return this.scratch[0];
  }

  u32(): number {
    this.fill(this.scratch, 4);
    return new Reader(this.scratch, this.what, false, 0, 4).u32();
  }

  num(): number {
    this.fill(this.scratch, 8);
    return new Reader(this.scratch, this.what, false, 0, 8).num();
  }

  /** The CRC-32 that ends the image matches, and nothing follows it. */
  end(): void {
    const want = this.crc;
    const got = this.u32();
    if (got !== want) throw new CorruptRecord(this.what, `checksum mismatch (stored ${got}, computed ${want})`);
    if (this.at < this.piece.byteLength || !this.it.next().done) throw new CorruptRecord(this.what, 'trailing bytes');
  }

  private fill(out: Uint8Array, n: number): void {
    let got = 0;
    while (got < n) {
      if (this.at === this.piece.byteLength) {
        const r = this.it.next();
        if (r.done) throw new CorruptRecord(this.what, 'truncated');
        this.piece = r.value;
        this.at = 0;
        continue;
      }
      const k = Math.min(n - got, this.piece.byteLength - this.at);
      out.set(this.piece.subarray(this.at, this.at + k), got);
      this.crc = crc32(this.piece, this.at, this.at + k, this.crc);
      got += k;
      this.at += k;
      this.consumed += k;
    }
  }
}
