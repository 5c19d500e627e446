// LogStore: durable Raft logs, hard states and snapshot metadata for all groups of one worker.
// Every loop iteration's changes for all groups become ONE WAL record, made durable by ONE
// O_DSYNC append to a segment file (wal.ts) beside the worker's LMDB environment. Recent entries
// live in per-group in-memory tails. A checkpoint, every `checkpointBytes` of WAL, is an LMDB
// transaction: it moves into a [group, index]-keyed table only the entries that survived a whole
// checkpoint interval without being compacted (with a state machine that snapshots, that is
// almost none), writes the metadata of changed groups and the replay start; then the WAL segments
// before the previous checkpoint are deleted. The state machine's own writes ride on LMDB
// transactions too (commit's `extra`), after the WAL record of the same commit is durable; except
// a snapshot install, whose state machine image and a redo marker of its metadata are committed in
// an LMDB transaction BEFORE its WAL record (see commit), so the log never claims a snapshot the
// state machine has not got.
// Start-up reads the metadata and replays the WAL since the previous checkpoint; replay is
// idempotent, so metadata newer than the replay start is harmless. It never reads every entry.
// (Stores written before the WAL moved to files keep their records in the LMDB table `wal`: they
// are replayed first and deleted as checkpoints pass them.)
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { WalFiles } from './wal.js';
import {
  RaftError,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
} from '../raft/types.js';
import { EMPTY_HARD_STATE, entryBytes, type InitialState, type Storage } from '../raft/storage.js';
import {
  decodeEntry,
  decodeMeta,
  decodeWal,
  encodeEntry,
  encodeMeta,
  encodeWal,
  type GroupWrite,
  type WalOp,
} from './codec.js';
import { CorruptRecord, StorageFailed } from './errors.js';

// Re-exported: importers of the store find its fail-stop error beside it.
export { StorageFailed };

export interface LogStoreOptions {
  /** Directory of this worker's LMDB environment. */
  readonly path: string;
  /** WAL bytes written since the last checkpoint that trigger the next one. Default 64 MiB. */
  readonly checkpointBytes?: number;
  /** Skip fsync (tests and benchmarks of CPU cost only; never in production). Default false. */
  readonly noSync?: boolean;
  /** Size of a WAL segment file. Default 64 MiB. */
  readonly walSegmentBytes?: number;
  /** Called with a description when something worth an operator's attention happens. */
  readonly onEvent?: (event: StoreEvent) => void;
}

export type StoreEvent =
  | { readonly kind: 'recovered'; readonly groups: number; readonly walRecords: number; readonly ms: number }
  | { readonly kind: 'checkpoint'; readonly entries: number; readonly walRecords: number; readonly ms: number }
  | { readonly kind: 'failed'; readonly error: string };

interface Checkpoint {
  readonly entries: number;
  readonly walRecords: number;
  /** The WAL up to here is covered once it is durable. */
  readonly replayFrom: number;
  write(): void;
  done(): void;
}

export interface StoreStats {
  commits: number;
  /** Commit-index-only writes kept in memory until the next checkpoint (no WAL record). */
  lazyCommits: number;
  walBytes: number;
  entriesWritten: number;
  checkpoints: number;
  checkpointEntries: number;
  lastCheckpointMs: number;
}

/** ctl record: replay the WAL after `replayFrom`; the next checkpoint flushes up to `trigger`. */
const KEY_CHECKPOINT = 'checkpoint';
/** ctl record `install:<group>`: a snapshot install whose WAL record is record `lsn`, written with
 *  the state machine's image before that record; redone at start-up if that record was lost. */
const INSTALL_PREFIX = 'install:';
interface InstallMarker {
  lsn: number;
  meta: SnapshotMeta;
}

/** Where a test makes the next commit that writes a WAL record stop dead, as a kill -9 would:
 *  just before the WAL append, or just after it (before its LMDB transaction). */
export type CrashPoint = 'beforeWal' | 'afterWal';
const WAL_DELETES_PER_COMMIT = 64;
interface CheckpointCtl {
  replayFrom: number;
  trigger: number;
}

/** 12-byte key: group (u32 BE) + index (u64 BE), so one group's entries are contiguous. */
function logKey(group: number, index: number): Buffer {
  const k = Buffer.allocUnsafe(12);
  k.writeUInt32BE(group, 0);
  k.writeUInt32BE(Math.floor(index / 2 ** 32), 4);
  k.writeUInt32BE(index >>> 0, 8);
  return k;
}

interface GroupState {
  readonly group: number;
  hardState: HardState;
  conf: ConfState;
  snap: SnapshotMeta;
  /** Entries (snap.index, flushedLast] are in the checkpointed log table. */
  flushedLast: number;
  /** Entries (flushedLast, last] in memory, and the LSN of the WAL record that wrote each. */
  tail: Entry[];
  tailLsn: number[];
  /** Checkpointed log keys to delete at the next checkpoint (overwritten or compacted). */
  pendingDeletes: [number, number][];
  /** Changed since the last checkpoint wrote its metadata. */
  dirty: boolean;
}

function newGroup(group: number, conf: ConfState): GroupState {
  return {
    group,
    hardState: EMPTY_HARD_STATE,
    conf,
    snap: { index: 0, term: 0, conf },
    flushedLast: 0,
    tail: [],
    tailLsn: [],
    pendingDeletes: [],
    dirty: true,
  };
}

function lastIndexOf(s: GroupState): number {
  return s.tail.length > 0 ? s.tail[s.tail.length - 1].index : Math.max(s.flushedLast, s.snap.index);
}

export class LogStore {
  private readonly groups = new Map<number, GroupState>();
  private readonly deletedGroups = new Set<number>();
  private staged: WalOp[] = [];
  private nextLsn = 1;
  /** LSN of the last record that was durable when the previous checkpoint ran. */
  private lastTrigger = 0;
  /** Records of the legacy LMDB `wal` table in (walGarbageFrom, walGarbageTo] precede the replay
   *  start: delete lazily. */
  private walGarbageFrom = 0;
  private walGarbageTo = 0;
  /** The last record of the legacy LMDB `wal` table (0: none; no record is added to it). */
  private legacyLast = 0;
  /** The WAL segment files (set by open()). */
  private files!: WalFiles;
  /** The commit before the next one: commits run one after another, in call order. */
  private chain: Promise<unknown> = Promise.resolve();
  private walBytesSinceCheckpoint = 0;
  private walRecordsSinceCheckpoint = 0;
  /** Replaying the WAL at start-up (gaps are then superseded records, not bugs). */
  private replaying = false;
  private failure: StorageFailed | null = null;
  readonly stats: StoreStats = {
    commits: 0,
    lazyCommits: 0,
    walBytes: 0,
    entriesWritten: 0,
    checkpoints: 0,
    checkpointEntries: 0,
    lastCheckpointMs: 0,
  };
  private readonly checkpointBytes: number;
  /** Fault injection (see setWriteDelay): extra milliseconds per durable write, and its jitter. */
  private writeDelay = { ms: 0, jitterMs: 0 };

  /** Fault injection (see injectCrash). */
  private crashAt: CrashPoint | null = null;

  private constructor(
    private readonly env: RootDatabase,
    private readonly wal: Database<Buffer, number>,
    private readonly log: Database<Buffer, Buffer>,
    private readonly meta: Database<Buffer, number>,
    private readonly ctl: Database<CheckpointCtl | InstallMarker, string>,
    private readonly opts: LogStoreOptions,
  ) {
    this.checkpointBytes = opts.checkpointBytes ?? 64 << 20;
  }

  static async open(opts: LogStoreOptions): Promise<LogStore> {
    const env = open({
      path: opts.path,
      maxDbs: 16,
      overlappingSync: false,
      noSync: opts.noSync ?? false,
      compression: false,
    });
    const wal = env.openDB<Buffer, number>('wal', { encoding: 'binary' });
    const log = env.openDB<Buffer, Buffer>('log', { encoding: 'binary', keyEncoding: 'binary' });
    const meta = env.openDB<Buffer, number>('meta', { encoding: 'binary', keyEncoding: 'uint32' });
    const ctl = env.openDB<CheckpointCtl | InstallMarker, string>('ctl', { encoding: 'json' });
    const store = new LogStore(env, wal, log, meta, ctl, opts);
    try {
      store.recover();
    } catch (e) {
      store.files?.close();
      await env.close();
      throw e;
    }
    return store;
  }

  /** Rebuild every group from checkpointed metadata plus the WAL written since. */
  private recover(): void {
    const t0 = performance.now();
    for (const { key, value } of this.meta.getRange()) {
      const m = decodeMeta(value, key);
      this.groups.set(key, {
        group: key,
        hardState: m.hardState,
        conf: m.conf,
        snap: m.snapshot,
        flushedLast: m.flushedLast,
        tail: [],
        tailLsn: [],
        pendingDeletes: [],
        dirty: false,
      });
    }
    const ctl = (this.ctl.get(KEY_CHECKPOINT) as CheckpointCtl | undefined) ?? { replayFrom: 0, trigger: 0 };
    this.lastTrigger = ctl.trigger;
    let oldest: number | undefined;
    for (const k of this.wal.getKeys({ limit: 1 })) oldest = k;
    let last = ctl.replayFrom;
    for (const k of this.wal.getKeys({ reverse: true, limit: 1 })) this.legacyLast = k;
    last = Math.max(last, this.legacyLast);
    this.walGarbageFrom = oldest === undefined ? 0 : oldest - 1;
    this.walGarbageTo = oldest === undefined ? 0 : Math.min(ctl.replayFrom, this.legacyLast);
    const dir = join(this.opts.path, 'wal');
    mkdirSync(dir, { recursive: true });
    const { wal, records: fileRecords } = WalFiles.open(dir, {
      noSync: this.opts.noSync,
      segmentBytes: this.opts.walSegmentBytes,
    });
    this.files = wal;
    let records = 0;
    const replay = (lsn: number, value: Uint8Array) => {
      for (const op of decodeWal(value, lsn)) this.applyOp(op, lsn);
      records++;
      last = lsn;
      if (lsn > ctl.trigger) this.walBytesSinceCheckpoint += value.byteLength;
    };
    this.replaying = true;
    for (const { key, value } of this.wal.getRange({ start: ctl.replayFrom + 1 })) replay(key, value);
    for (const r of fileRecords) if (r.lsn > Math.max(ctl.replayFrom, last)) replay(r.lsn, r.payload);
    this.replaying = false;
    this.walRecordsSinceCheckpoint = records;
    this.nextLsn = last + 1;
    this.redoInstalls();
    this.opts.onEvent?.({
      kind: 'recovered',
      groups: this.groups.size,
      walRecords: records,
      ms: performance.now() - t0,
    });
  }

  /** A snapshot install whose state machine image is durable but whose WAL record (the next one,
   *  nextLsn) was lost in a crash: apply its metadata now, and stage it again so the next record
   *  carries it (until then the marker stays and a second crash redoes it again). Markers of
   *  records that were written are obsolete (the checkpoints remove them). */
  private redoInstalls(): void {
    for (const { key, value } of this.ctl.getRange({ start: INSTALL_PREFIX, end: `${INSTALL_PREFIX}~` })) {
      const m = value as InstallMarker;
      if (m.lsn !== this.nextLsn) continue;
      const group = Number(key.slice(INSTALL_PREFIX.length));
      const s = this.groups.get(group);
      if (!s || m.meta.index <= s.snap.index) continue;
      const op: WalOp = { op: 'write', w: { group, snapshot: m.meta } };
      this.applyOp(op, this.nextLsn);
      this.staged.push(op);
    }
  }

  get failed(): StorageFailed | null {
    return this.failure;
  }

  groupIds(): number[] {
    return [...this.groups.keys()];
  }

  has(group: number): boolean {
    return this.groups.has(group);
  }

  /** Register a new group with its initial configuration (durable with the next commit). */
  createGroup(group: number, conf: ConfState): GroupStorage {
    if (this.groups.has(group)) throw new RaftError('Exists', `group ${group} already exists`);
    this.stage({ op: 'create', group, conf });
    return this.storage(group);
  }

  storage(group: number): GroupStorage {
    if (!this.groups.has(group)) throw new RaftError('UnknownGroup', `group ${group} does not exist`);
    return new GroupStorage(this, group);
  }

  /** Stage one group's Ready (entries, hard state, snapshot metadata, conf) for the next commit.
   *  A write that only raises the commit index (Ready.mustSync false) is kept in memory and
   *  reaches the disk with the next checkpoint: it costs no WAL record, so a loop turn that only
   *  moved commit indexes commits nothing and waits for no fsync. */
  write(w: GroupWrite): void {
    const s = this.groups.get(w.group);
    if (!s) throw new RaftError('UnknownGroup', `group ${w.group} does not exist`);
    const hs = w.hardState;
    if (
      hs &&
      !w.entries?.length &&
      !w.snapshot &&
      !w.conf &&
      hs.term === s.hardState.term &&
      hs.vote === s.hardState.vote
    ) {
      if (this.failure) throw this.failure;
      if (hs.commit > s.hardState.commit) {
        s.hardState = hs;
        s.dirty = true;
        this.stats.lazyCommits++;
      }
      return;
    }
    this.stage({ op: 'write', w });
  }

  /** Drop entries up to and including `index` (covered by a snapshot the host took at `index`). */
  compact(group: number, index: number): void {
    const s = this.state(group);
    if (index <= s.snap.index) return;
    if (index > lastIndexOf(s))
      throw new RaftError('Unavailable', `compact ${index} beyond last index ${lastIndexOf(s)} of group ${group}`);
    this.stage({ op: 'compact', group, index });
  }

  deleteGroup(group: number): void {
    this.state(group);
    this.stage({ op: 'delete', group });
  }

  private stage(op: WalOp): void {
    if (this.failure) throw this.failure;
    // Staged ops belong to the next record; commits are serialized, so that is nextLsn.
    this.applyOp(op, this.nextLsn);
    this.staged.push(op);
  }

  /** Apply an operation to the in-memory state, both when staging and when replaying the WAL.
   *  Replay may run over metadata that already includes the operation: creates, deletes,
   *  compactions and snapshots are idempotent, hard state and conf are absolute, and entries
   *  replace the log suffix, so replaying the window in order ends in the pre-crash state. */
  private applyOp(op: WalOp, lsn: number): void {
    switch (op.op) {
      case 'create': {
        if (this.groups.has(op.group)) return;
        this.groups.set(op.group, newGroup(op.group, op.conf));
        return;
      }
      case 'delete': {
        if (this.groups.delete(op.group)) this.deletedGroups.add(op.group);
        return;
      }
      case 'compact': {
        const s = this.groups.get(op.group);
        if (!s || op.index <= s.snap.index) return;
        const term = this.termOf(s, op.index);
        if (s.flushedLast > s.snap.index) s.pendingDeletes.push([s.snap.index + 1, Math.min(op.index, s.flushedLast)]);
        s.snap = { index: op.index, term, conf: s.conf };
        if (s.flushedLast < op.index) s.flushedLast = op.index;
        let k = 0;
        while (k < s.tail.length && s.tail[k].index <= op.index) k++;
        if (k > 0) {
          s.tail = s.tail.slice(k);
          s.tailLsn = s.tailLsn.slice(k);
        }
        s.dirty = true;
        return;
      }
      case 'write': {
        const s = this.groups.get(op.w.group);
        if (!s) return;
        const w = op.w;
        if (w.snapshot && w.snapshot.index > s.snap.index) {
          if (s.flushedLast > s.snap.index) s.pendingDeletes.push([s.snap.index + 1, s.flushedLast]);
          s.snap = w.snapshot;
          s.conf = w.snapshot.conf;
          s.flushedLast = w.snapshot.index;
          s.tail = [];
          s.tailLsn = [];
        }
        if (w.entries && w.entries.length > 0) this.appendEntries(s, w.entries, lsn);
        if (w.hardState) s.hardState = w.hardState;
        if (w.conf) s.conf = w.conf;
        s.dirty = true;
        return;
      }
    }
  }

  /** A write's entries replace the log from their first index on (the Ready contract), so a
   *  replayed record re-creates exactly the truncations it caused. */
  private appendEntries(s: GroupState, entries: readonly Entry[], lsn: number): void {
    if (entries[0].index <= s.snap.index) {
      entries = entries.slice(s.snap.index + 1 - entries[0].index);
      if (entries.length === 0) return;
    }
    const first = entries[0].index;
    const last = lastIndexOf(s);
    if (first > last + 1) {
      // Replay starts before the checkpoint's metadata was taken: this record appended onto
      // entries that a later record (also in the replay window) truncated. Skipping it is
      // exact, because that later record rewrites everything from its first index on.
      if (this.replaying) return;
      throw new RaftError('Gap', `group ${s.group}: append at ${first} after last index ${last}`);
    }
    if (first <= s.flushedLast) {
      // Overwriting part of the checkpointed log (a new leader's conflicting suffix).
      s.pendingDeletes.push([first, s.flushedLast]);
      s.flushedLast = first - 1;
      s.tail = entries.slice();
      s.tailLsn = entries.map(() => lsn);
    } else {
      const keep = first - (s.flushedLast + 1);
      if (keep < s.tail.length) {
        s.tail.length = keep;
        s.tailLsn.length = keep;
      }
      for (const e of entries) {
        s.tail.push(e);
        s.tailLsn.push(lsn);
      }
    }
  }

  /** Make everything staged durable: the WAL record (one O_DSYNC append), then, when there is
   *  any, an LMDB transaction running `extra` (the state machine's writes, which must never be
   *  durable before the log entries they applied) and a due checkpoint. Commits may be pipelined:
   *  each starts once the previous one is done, and they resolve in call order. Resolves true
   *  when something was written, false when there was nothing (no write, no fsync).
   *  A commit that stages a snapshot install costs one more LMDB transaction, BEFORE the WAL
   *  record: it runs `first` (the state machine's writes that include the installed image) and
   *  records the install's metadata in a marker. A crash between that and the WAL append leaves
   *  the image with its marker, and start-up redoes the install on the log side (redoInstalls);
   *  the other order could leave a log whose first index is past the snapshot over a state
   *  machine that never got its contents. */
  commit(extra?: () => void, first?: () => void): Promise<boolean> {
    if (this.failure) return Promise.reject(this.failure);
    const ops = this.staged;
    this.staged = [];
    let record: Uint8Array | null = null;
    let lsn = 0;
    const installs: [number, SnapshotMeta][] = [];
    if (ops.length > 0) {
      record = encodeWal(ops);
      lsn = this.nextLsn++;
      for (const op of ops) {
        if (op.op !== 'write') continue;
        this.stats.entriesWritten += op.w.entries?.length ?? 0;
        if (op.w.snapshot) installs.push([op.w.group, op.w.snapshot]);
      }
    }
    const before =
      installs.length > 0 || first
        ? () => {
            first?.();
            for (const [g, meta] of installs) void this.ctl.put(`${INSTALL_PREFIX}${g}`, { lsn, meta });
          }
        : null;
    const durable = this.nextLsn - 1; // the last record durable once this commit is
    let checkpoint: Checkpoint | null = null;
    if (this.forceCheckpoint) {
      checkpoint = this.prepareCheckpoint(durable, durable);
      this.forceCheckpoint = false;
    } else if (this.walBytesSinceCheckpoint >= this.checkpointBytes) {
      this.beforeCheckpoint?.();
      checkpoint = this.prepareCheckpoint(this.lastTrigger, durable);
    }
    // Legacy WAL records (LMDB table) before the replay start are garbage; delete a bounded
    // number per commit so a checkpoint never stalls one commit with thousands of deletes.
    const garbage =
      this.walGarbageTo > this.walGarbageFrom
        ? Math.min(this.walGarbageTo, this.walGarbageFrom + WAL_DELETES_PER_COMMIT)
        : 0;
    if (!record && !extra && !before && !checkpoint && !garbage) return Promise.resolve(false);
    const from = this.walGarbageFrom;
    if (garbage) this.walGarbageFrom = garbage;
    const run = this.chain.then(() => this.persist(record, lsn, before, extra, checkpoint, from, garbage));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async persist(
    record: Uint8Array | null,
    lsn: number,
    before: (() => void) | null,
    extra: (() => void) | undefined,
    checkpoint: Checkpoint | null,
    from: number,
    garbage: number,
  ): Promise<boolean> {
    if (this.failure) throw this.failure;
    const t0 = performance.now();
    // A snapshot install's image first: the WAL record's metadata moves the group's first index
    // past the snapshot, which must never be durable while the state machine is still older.
    if (before) await this.transact(before);
    if (record) {
      if (this.crashAt === 'beforeWal') this.fail('injected crash before the WAL append', null);
      try {
        await this.files.append(lsn, record);
      } catch (e) {
        this.fail(
          `WAL append failed in ${this.opts.path}: ${(e as Error).message}${(e as { code?: string }).code ? ` (${(e as { code?: string }).code})` : ''}`,
          e,
        );
      }
      this.stats.walBytes += record.byteLength;
      this.walBytesSinceCheckpoint += record.byteLength;
      this.walRecordsSinceCheckpoint++;
      const { ms, jitterMs } = this.writeDelay;
      if (ms > 0 || jitterMs > 0) await new Promise((r) => setTimeout(r, ms + Math.random() * jitterMs));
      if (this.crashAt === 'afterWal') this.fail('injected crash after the WAL append', null);
    }
    if (extra || checkpoint || garbage) {
      await this.transact(() => {
        extra?.();
        checkpoint?.write();
        if (garbage) for (const k of this.wal.getKeys({ start: from + 1, end: garbage + 1 })) void this.wal.remove(k);
      });
    }
    this.stats.commits++;
    if (checkpoint) {
      checkpoint.done();
      // The checkpoint is durable: the WAL it covers can go.
      this.files.dropThrough(checkpoint.replayFrom);
      const ms = performance.now() - t0;
      this.stats.checkpoints++;
      this.stats.checkpointEntries += checkpoint.entries;
      this.stats.lastCheckpointMs = ms;
      this.opts.onEvent?.({ kind: 'checkpoint', entries: checkpoint.entries, walRecords: checkpoint.walRecords, ms });
    }
    return true;
  }

  /** One LMDB write transaction; fail-stops the store if it does not commit. */
  private async transact(fn: () => void): Promise<void> {
    try {
      await this.env.transaction(fn);
    } catch (e) {
      // lmdb-js rejects with a generic error and puts the cause in a separate promise; read it
      // (which also keeps it from surfacing as an unhandled rejection).
      let detail = (e as Error).message;
      const ce = (e as { commitError?: Promise<unknown> }).commitError;
      if (ce && typeof ce.then === 'function') {
        try {
          await ce;
        } catch (cause) {
          detail = `${(cause as Error).message}${(cause as { code?: unknown }).code !== undefined ? ` (code ${String((cause as { code?: unknown }).code)})` : ''}`;
        }
      }
      // The failed batch's other promises (lmdb-js keeps a commit promise of its own) reject too;
      // observe them so a full disk fail-stops this store instead of crashing the process.
      const quiet = () => {};
      (this.env.committed as PromiseLike<unknown>).then(quiet, quiet);
      (this.env.flushed as PromiseLike<unknown>).then(quiet, quiet);
      this.fail(`LMDB commit failed in ${this.opts.path}: ${detail}`, e);
    }
  }

  /** Fault injection for tests: the next commit that writes a WAL record fail-stops the store at
   *  `at` (StorageFailed), leaving the disk as a kill -9 there would. Reopen the directory to
   *  recover. */
  injectCrash(at: CrashPoint): void {
    this.crashAt = at;
  }

  /** Fault injection for tests and drills: every later durable write takes `ms` (plus up to
   *  `jitterMs`) longer before it resolves, as on a slow or saturated disk. Commits stay in call
   *  order (they run one after another) and nothing resolves before it is durable. 0, 0 heals. */
  setWriteDelay(ms: number, jitterMs = 0): void {
    if (!(ms >= 0 && jitterMs >= 0 && Number.isFinite(ms + jitterMs)))
      throw new RangeError('write delay: ms and jitterMs must be finite numbers >= 0');
    this.writeDelay = { ms, jitterMs };
  }

  /** Fail-stop: this commit and every later one reject with StorageFailed. */
  private fail(message: string, cause: unknown): never {
    this.failure = new StorageFailed(message, cause);
    this.opts.onEvent?.({ kind: 'failed', error: this.failure.message });
    throw this.failure;
  }

  private forceCheckpoint = false;

  /** Called just before a checkpoint that the WAL's size triggered is captured: the owner may
   *  compact() here whatever its state machine and its followers no longer need. What it compacts
   *  then is dropped rather than moved into the log table. Without it, the retained tails of
   *  slowly written groups (kept for followers slightly behind) outlive the interval, are written
   *  into the table, and deleted from it at a later checkpoint: several times the WAL's bytes in
   *  page writes. Compactions staged here go into the next WAL record, and the checkpoint's
   *  metadata already includes them, which is safe because a compaction only ever covers state
   *  the owner has made durable. */
  beforeCheckpoint: (() => void) | null = null;

  /** Checkpoint everything durable so far with the next commit (tests, shutdown). */
  async checkpoint(): Promise<void> {
    this.forceCheckpoint = true;
    await this.commit(() => {});
  }

  /** Capture a checkpoint that flushes entries written by WAL records <= upTo and makes the WAL
   *  after upTo the replay start. write() runs inside the commit; done() trims the tails after. */
  private prepareCheckpoint(upTo: number, trigger: number): Checkpoint {
    const flushed: { s: GroupState; entries: Entry[] }[] = [];
    const deletes: { group: number; ranges: [number, number][] }[] = [];
    const metas: { group: number; value: Buffer }[] = [];
    let count = 0;
    for (const s of this.groups.values()) {
      let n = 0;
      while (n < s.tail.length && s.tailLsn[n] <= upTo) n++;
      if (n > 0) {
        flushed.push({ s, entries: s.tail.slice(0, n) });
        count += n;
      }
      if (s.pendingDeletes.length > 0) deletes.push({ group: s.group, ranges: s.pendingDeletes });
      s.pendingDeletes = [];
      if (!s.dirty && n === 0) continue;
      s.dirty = false;
      const flushedLast = n > 0 ? s.tail[n - 1].index : s.flushedLast;
      metas.push({
        group: s.group,
        value: Buffer.from(encodeMeta({ hardState: s.hardState, snapshot: s.snap, conf: s.conf, flushedLast }).buffer),
      });
    }
    // Ids deleted since the last checkpoint (even if re-created since): their old rows go first.
    const gone = [...this.deletedGroups];
    this.deletedGroups.clear();
    const walRecords = this.walRecordsSinceCheckpoint;
    this.walBytesSinceCheckpoint = 0;
    this.walRecordsSinceCheckpoint = 0;
    this.lastTrigger = trigger;
    this.walGarbageTo = Math.max(this.walGarbageTo, Math.min(upTo, this.legacyLast));
    return {
      entries: count,
      walRecords,
      replayFrom: upTo,
      write: () => {
        // Inside the write transaction (void: the promises only repeat its outcome). Order matters: whole-group deletes, then range deletes, then the new rows and metadata.
        for (const g of gone) {
          for (const k of this.log.getKeys({ start: logKey(g, 0), end: logKey(g + 1, 0) })) void this.log.remove(k);
          if (!this.groups.has(g)) void this.meta.remove(g);
        }
        for (const d of deletes) {
          for (const [a, b] of d.ranges) for (let i = a; i <= b; i++) void this.log.remove(logKey(d.group, i));
        }
        for (const f of flushed)
          for (const e of f.entries) void this.log.put(logKey(f.s.group, e.index), Buffer.from(encodeEntry(e).buffer));
        for (const m of metas) void this.meta.put(m.group, m.value);
        void this.ctl.put(KEY_CHECKPOINT, { replayFrom: upTo, trigger });
        // Install markers are all of records written by now (their redo is no longer needed).
        for (const k of this.ctl.getKeys({ start: INSTALL_PREFIX, end: `${INSTALL_PREFIX}~` })) void this.ctl.remove(k);
      },
      done: () => {
        for (const f of flushed) {
          const s = f.s;
          if (this.groups.get(s.group) !== s) continue; // deleted meanwhile: its rows go with it
          // Adopt the flushed entries still at the head of the tail. Anything staged while the
          // checkpoint was in flight (a compaction, an overwrite, a snapshot) may have made some
          // of the rows just written stale: schedule those for deletion.
          const written = new Set(f.entries);
          let n = 0;
          while (n < s.tail.length && written.has(s.tail[n])) n++;
          if (n > 0) {
            s.flushedLast = s.tail[n - 1].index;
            s.tail = s.tail.slice(n);
            s.tailLsn = s.tailLsn.slice(n);
          }
          const lo = f.entries[0].index;
          const hi = f.entries[f.entries.length - 1].index;
          if (lo <= s.snap.index) s.pendingDeletes.push([lo, Math.min(hi, s.snap.index)]);
          const liveTo = Math.max(s.flushedLast, s.snap.index);
          if (hi > liveTo && n < f.entries.length) s.pendingDeletes.push([Math.max(lo, liveTo + 1), hi]);
        }
      },
    };
  }

  /** Open another table in this environment, so its writes can share the log's commits. */
  openDB<V, K extends import('lmdb').Key>(name: string, options: import('lmdb').DatabaseOptions): Database<V, K> {
    return this.env.openDB<V, K>(name, options);
  }

  /** A consistent read snapshot of the whole environment (release with .done()). */
  readTransaction() {
    return this.env.useReadTransaction();
  }

  async close(): Promise<void> {
    await this.chain;
    this.files.close();
    await this.env.close();
  }

  /** Size of the data file plus the WAL segments in bytes (for disk-boundedness checks). */
  diskBytes(): number {
    const st = this.env.getStats() as { treeBranchPageCount?: number; pageSize?: number; lastPageNumber?: number };
    return (st.lastPageNumber ?? 0) * (st.pageSize ?? 4096) + this.files.bytesOnDisk;
  }

  // --- reads (used by GroupStorage) ------------------------------------------------------------

  state(group: number): GroupState {
    const s = this.groups.get(group);
    if (!s) throw new RaftError('UnknownGroup', `group ${group} does not exist`);
    return s;
  }

  termOf(s: GroupState, i: number): number {
    if (i === s.snap.index) return s.snap.term;
    if (i < s.snap.index) throw new RaftError('Compacted', `entry ${i} of group ${s.group} is compacted`);
    const last = lastIndexOf(s);
    if (i > last) throw new RaftError('Unavailable', `entry ${i} of group ${s.group} is beyond ${last}`);
    if (i > s.flushedLast) return s.tail[i - s.flushedLast - 1].term;
    return this.readEntry(s.group, i).term;
  }

  readEntry(group: number, i: number): Entry {
    const v = this.log.getBinary(logKey(group, i));
    if (!v) throw new CorruptRecord(`log entry ${i} of group ${group}`, 'missing from the checkpointed log');
    return decodeEntry(v, i, group);
  }

  lastIndex(s: GroupState): number {
    return lastIndexOf(s);
  }
}

/** The Raft core's Storage view of one group in a LogStore. */
export class GroupStorage implements Storage {
  /** Supplies a snapshot (with state machine data) for followers that are too far behind. */
  snapshotSource: ((meta: SnapshotMeta) => Snapshot) | null = null;

  constructor(
    private readonly store: LogStore,
    readonly group: number,
  ) {}

  private get s(): GroupState {
    return this.store.state(this.group);
  }

  initialState(): InitialState {
    const s = this.s;
    return { hardState: s.hardState, conf: s.conf };
  }

  firstIndex(): number {
    return this.s.snap.index + 1;
  }

  lastIndex(): number {
    return this.store.lastIndex(this.s);
  }

  term(i: number): number {
    return this.store.termOf(this.s, i);
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const s = this.s;
    if (lo <= s.snap.index) throw new RaftError('Compacted', `entry ${lo} of group ${this.group} is compacted`);
    const last = this.store.lastIndex(s);
    if (hi > last + 1)
      throw new RaftError('Unavailable', `entries up to ${hi - 1} of group ${this.group} not available`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = i > s.flushedLast ? s.tail[i - s.flushedLast - 1] : this.store.readEntry(this.group, i);
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    const meta = this.s.snap;
    if (this.snapshotSource) return this.snapshotSource(meta);
    return { meta, data: new Uint8Array(0) };
  }

  snapshotMeta(): SnapshotMeta {
    return this.s.snap;
  }

  conf(): ConfState {
    return this.s.conf;
  }
}
