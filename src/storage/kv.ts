// KvStateMachine: the built-in replicated key-value store. Each group's keys live in one LMDB
// table of the worker's environment, prefixed by the group id; the applied index of each group is
// written in the same transaction as the data it covers, so after a crash an entry is applied
// exactly once. Applying stages writes in an overlay that the LogStore's next commit writes out.
// Client sessions (session.ts) live in a third table, staged and committed the same way, and
// travel in snapshots, so a retried proposal is recognised on every replica and after restarts.
import type { Database } from 'lmdb';
import { RaftError, type Entry, type Snapshot, type SnapshotMeta } from '../raft/types.js';
import { Reader, Writer } from './codec.js';
import type { LogStore } from './logstore.js';
import {
  checkEntry, decodeSession, encodeCommand, encodeSession, recordResult, type SessionRecord, type SessionStore,
} from './session.js';

export const MAX_KEY_BYTES = 1024;

export type KvCommand =
  | { readonly op: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly op: 'delete'; readonly key: Uint8Array }
  | { readonly op: 'cas'; readonly key: Uint8Array; readonly expected: Uint8Array | null; readonly value: Uint8Array | null };

export type KvResult =
  | { readonly op: 'put' | 'delete' }
  | { readonly op: 'cas'; readonly swapped: boolean; readonly current: Uint8Array | null };

const OPS = ['put', 'delete', 'cas'] as const;

export function encodeKvCommand(c: KvCommand): Uint8Array {
  return encodeKvCommandView(c).slice();
}

const scratch = new Writer(4096);

/** encodeKvCommand into a shared scratch buffer: the result is valid until the next call. */
export function encodeKvCommandView(c: KvCommand): Uint8Array {
  if (c.key.byteLength === 0 || c.key.byteLength > MAX_KEY_BYTES) {
    throw new RaftError('InvalidArgument', `key must be 1..${MAX_KEY_BYTES} bytes (got ${c.key.byteLength})`);
  }
  const w = scratch.reset();
  w.u8(OPS.indexOf(c.op));
  w.bytes(c.key);
  if (c.op === 'put') w.bytes(c.value);
  if (c.op === 'cas') {
    w.u8((c.expected ? 1 : 0) | (c.value ? 2 : 0));
    if (c.expected) w.bytes(c.expected);
    if (c.value) w.bytes(c.value);
  }
  return w.finishView();
}

/** `copy: false` returns views into `data` (for decoding in place, e.g. while applying). */
export function decodeKvCommand(data: Uint8Array, copy = true): KvCommand {
  const r = new Reader(data, 'kv command');
  const op = OPS[r.u8()];
  const take = () => (copy ? r.bytes() : r.bytesView());
  const key = take();
  let c: KvCommand;
  switch (op) {
    case 'put': c = { op, key, value: take() }; break;
    case 'delete': c = { op, key }; break;
    case 'cas': {
      const f = r.u8();
      const expected = f & 1 ? take() : null;
      const value = f & 2 ? take() : null;
      c = { op, key, expected, value };
      break;
    }
    default: throw new RaftError('Malformed', 'unknown kv op');
  }
  r.done();
  return c;
}

/** Entry data for a KV command proposed without a session (tests, tools). */
export function kvEntryData(c: KvCommand): Uint8Array {
  return encodeCommand(null, encodeKvCommand(c));
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

export class KvStateMachine implements SessionStore {
  private readonly data: Database<Buffer, Buffer>;
  private readonly appliedDb: Database<number, number>;
  private readonly sessionsDb: Database<Buffer, Buffer>;
  /** Staged session records: (group, client) key hex -> record. */
  private sessionOverlay = new Map<string, { key: Buffer; rec: SessionRecord }>();
  /** Committed session records recently used (sessionKey -> record): a retry-free proposal
   *  otherwise costs an LMDB read and a decode per entry. */
  private readonly sessionCache = new Map<string, SessionRecord>();
  private readonly pendingDrops = new Set<number>();
  /** Writes applied but not yet committed: key (hex) -> value (null = deleted). */
  private overlay = new Map<string, { key: Buffer; value: Buffer | null }>();
  private appliedOverlay = new Map<number, number>();
  /** Staged snapshot installs: group -> its complete new contents (key hex -> [key, value]). */
  private pendingRestores = new Map<number, {
    snapshot: Snapshot; data: Map<string, [Buffer, Buffer]>; sessions: Map<string, { key: Buffer; rec: SessionRecord }>;
  }>();

  constructor(private readonly store: LogStore) {
    this.data = store.openDB<Buffer, Buffer>('kv', { encoding: 'binary', keyEncoding: 'binary' });
    this.appliedDb = store.openDB<number, number>('applied', { encoding: 'json', keyEncoding: 'uint32' });
    this.sessionsDb = store.openDB<Buffer, Buffer>('sessions', { encoding: 'binary', keyEncoding: 'binary' });
  }

  getSession(group: number, client: string): SessionRecord | undefined {
    const sk = sessionKey(group, client);
    const o = this.sessionOverlay.get(sk);
    if (o) return o.rec;
    const r = this.pendingRestores.get(group);
    if (r) return r.sessions.get(sk)?.rec;
    const c = this.sessionCache.get(sk);
    if (c) return c;
    const b = this.sessionsDb.getBinary(dataKey(group, enc.encode(client)));
    if (!b) return undefined;
    const rec = decodeSession(b);
    this.cacheSession(sk, rec);
    return rec;
  }

  putSession(group: number, client: string, rec: SessionRecord): void {
    const sk = sessionKey(group, client);
    const o = this.sessionOverlay.get(sk);
    if (o) o.rec = rec;
    else this.sessionOverlay.set(sk, { key: dataKey(group, enc.encode(client)), rec });
  }

  private cacheSession(sk: string, rec: SessionRecord): void {
    // Committed records only; bounded by dropping everything (they are re-read from LMDB).
    if (this.sessionCache.size >= SESSION_CACHE_MAX) this.sessionCache.clear();
    this.sessionCache.set(sk, rec);
  }

  private forgetGroupSessions(group: number): void {
    const prefix = sessionKey(group, '');
    for (const k of [...this.sessionOverlay.keys()]) if (k.startsWith(prefix)) this.sessionOverlay.delete(k);
    for (const k of [...this.sessionCache.keys()]) if (k.startsWith(prefix)) this.sessionCache.delete(k);
  }

  /** The applied index of `group` as last committed (what a restart resumes from). */
  applied(group: number): number {
    return this.appliedOverlay.get(group) ?? this.appliedDb.get(group) ?? 0;
  }

  private current(group: number, key: Uint8Array): Uint8Array | null {
    const k = dataKey(group, key);
    const hex = k.toString('latin1'); // one char per byte: a cheap exact map key
    const o = this.overlay.get(hex);
    if (o) return o.value;
    // A staged restore replaces the group's committed data entirely.
    const r = this.pendingRestores.get(group);
    if (r) return r.data.get(hex)?.[1] ?? null;
    return this.data.getBinary(k) ?? null;
  }

  /** Apply committed entries; returns one result per entry (null for no-ops and conf entries).
   *  Entries at or below the applied index are skipped (exactly once); an entry whose session
   *  says it was applied already returns the recorded result (at most once per client seq). */
  apply(group: number, entries: readonly Entry[]): (KvResult | null)[] {
    let applied = this.applied(group);
    const out: (KvResult | null)[] = [];
    for (const e of entries) {
      if (e.index <= applied) {
        out.push(null);
        continue;
      }
      applied = e.index;
      if (e.type !== 'normal' || e.data.byteLength === 0) {
        out.push(null);
        continue;
      }
      const chk = checkEntry(this, group, e);
      if (chk.kind === 'duplicate') {
        out.push(chk.result as KvResult | null);
        continue;
      }
      const c = decodeKvCommand(chk.payload, false);
      const k = dataKey(group, c.key);
      const hex = k.toString('latin1'); // one char per byte: a cheap exact map key
      switch (c.op) {
        case 'put':
          this.overlay.set(hex, { key: k, value: Buffer.from(c.value) });
          out.push({ op: 'put' });
          break;
        case 'delete':
          this.overlay.set(hex, { key: k, value: null });
          out.push({ op: 'delete' });
          break;
        case 'cas': {
          const cur = this.current(group, c.key);
          const swapped = equal(cur, c.expected);
          const next = swapped && c.value ? Buffer.from(c.value) : null;
          if (swapped) this.overlay.set(hex, { key: k, value: next });
          out.push({ op: 'cas', swapped, current: swapped ? next : cur });
          break;
        }
      }
      if (chk.header) recordResult(this, group, chk.header, out[out.length - 1]);
    }
    this.appliedOverlay.set(group, applied);
    return out;
  }

  /** Runs inside LogStore.commit's transaction. */
  writeInTransaction(): void {
    for (const group of this.pendingDrops) {
      const range = { start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)) };
      for (const k of this.data.getKeys(range)) this.data.remove(k);
      for (const k of this.sessionsDb.getKeys(range)) this.sessionsDb.remove(k);
      this.appliedDb.remove(group);
    }
    for (const [group, r] of this.pendingRestores) {
      for (const k of this.data.getKeys({ start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)) })) {
        this.data.remove(k);
      }
      for (const [k, v] of r.data.values()) this.data.put(k, v);
      for (const k of this.sessionsDb.getKeys({ start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)) })) {
        this.sessionsDb.remove(k);
      }
      for (const { key, rec } of r.sessions.values()) this.sessionsDb.put(key, Buffer.from(encodeSession(rec)));
      this.appliedDb.put(group, r.snapshot.meta.index);
    }
    for (const { key, value } of this.overlay.values()) {
      if (value === null) this.data.remove(key);
      else this.data.put(key, value);
    }
    for (const { key, rec } of this.sessionOverlay.values()) this.sessionsDb.put(key, Buffer.from(encodeSession(rec)));
    for (const [g, i] of this.appliedOverlay) this.appliedDb.put(g, i);
  }

  /** After the commit that ran writeInTransaction() is durable. */
  committed(): void {
    this.overlay.clear();
    this.pendingDrops.clear();
    for (const [sk, { rec }] of this.sessionOverlay) this.cacheSession(sk, rec);
    for (const r of this.pendingRestores.values()) for (const [sk, { rec }] of r.sessions) this.cacheSession(sk, rec);
    this.sessionOverlay.clear();
    this.appliedOverlay.clear();
    this.pendingRestores.clear();
  }

  /** Remove every trace of a group (data, sessions, applied index), with the next commit. */
  dropGroup(group: number): void {
    const prefix = dataKey(group, new Uint8Array(0)).toString('latin1');
    for (const k of [...this.overlay.keys()]) if (k.startsWith(prefix)) this.overlay.delete(k);
    this.forgetGroupSessions(group);
    this.pendingRestores.delete(group);
    this.appliedOverlay.delete(group);
    this.pendingDrops.add(group);
  }

  /** A read: `query` is the key. */
  query(group: number, query: unknown): Uint8Array | null {
    if (!(query instanceof Uint8Array)) throw new RaftError('InvalidArgument', 'a KV query is a key (bytes)');
    return this.get(group, query);
  }

  /** State lives in LMDB: the log can go up to what is applied. */
  compactableTo(group: number): number {
    return this.applied(group);
  }

  /** Committed value of a key (what linearizable and stale reads see). */
  get(group: number, key: Uint8Array): Uint8Array | null {
    return this.data.getBinary(dataKey(group, key)) ?? null;
  }

  /** A consistent image of one group (data plus the applied index it reflects), taken from a read
   *  snapshot so the group keeps serving while it is produced. */
  snapshot(group: number, metaAt: (index: number) => SnapshotMeta): Snapshot {
    const txn = this.store.readTransaction();
    try {
      const index = this.appliedDb.get(group, { transaction: txn }) ?? 0;
      const pairs: [Uint8Array, Uint8Array][] = [];
      let size = 64;
      for (const { key, value } of this.data.getRange({
        start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)), transaction: txn,
      })) {
        pairs.push([key.subarray(4), value]);
        size += key.byteLength + value.byteLength + 8;
      }
      const sessions: [string, Uint8Array][] = [];
      for (const { key, value } of this.sessionsDb.getRange({
        start: dataKey(group, new Uint8Array(0)), end: dataKey(group + 1, new Uint8Array(0)), transaction: txn,
      })) {
        sessions.push([dec.decode(key.subarray(4)), value]);
        size += key.byteLength + value.byteLength + 8;
      }
      const w = new Writer(size);
      w.num(index);
      w.u32(pairs.length);
      for (const [k, v] of pairs) {
        w.bytes(k);
        w.bytes(v);
      }
      w.u32(sessions.length);
      for (const [c, v] of sessions) {
        w.str(c);
        w.bytes(v);
      }
      return { meta: metaAt(index), data: w.finish() };
    } finally {
      txn.done();
    }
  }

  /** Stage replacing a group's data with a snapshot (atomic with the next commit). */
  restore(group: number, snapshot: Snapshot): void {
    const r = new Reader(snapshot.data, `kv snapshot of group ${group}`);
    const index = r.num();
    const n = r.u32();
    const data = new Map<string, [Buffer, Buffer]>();
    for (let i = 0; i < n; i++) {
      const key = dataKey(group, r.bytes());
      data.set(key.toString('latin1'), [key, Buffer.from(r.bytes())]);
    }
    const sessions = new Map<string, { key: Buffer; rec: SessionRecord }>();
    const ns = r.u32();
    for (let i = 0; i < ns; i++) {
      const client = r.str();
      sessions.set(sessionKey(group, client), { key: dataKey(group, enc.encode(client)), rec: decodeSession(r.bytes()) });
    }
    r.done();
    if (index !== snapshot.meta.index) {
      throw new RaftError('Malformed', `kv snapshot of group ${group}: data index ${index} != meta index ${snapshot.meta.index}`);
    }
    // Drop overlay writes of this group: the snapshot supersedes them.
    const prefix = dataKey(group, new Uint8Array(0)).toString('latin1');
    for (const k of [...this.overlay.keys()]) if (k.startsWith(prefix)) this.overlay.delete(k);
    this.forgetGroupSessions(group);
    this.pendingRestores.set(group, { snapshot, data, sessions });
    this.appliedOverlay.set(group, snapshot.meta.index);
  }
}
