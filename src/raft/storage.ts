// The core's read-only view of durable state, and MemoryStorage, an in-memory implementation used
// by tests, the simulator and the core benchmarks (persist() writes a Ready into it). The host
// writes to storage after persisting a Ready; the core only reads from it. An LMDB-backed
// LogStore implements the same interface.
import { RaftError, type ConfState, type Entry, type HardState, type Ready, type Snapshot } from './types.js';

export interface InitialState {
  readonly hardState: HardState;
  readonly conf: ConfState;
}

export interface Storage {
  initialState(): InitialState;
  /** Entries in [lo, hi), stopping early once maxBytes of data is reached (always >= 1 entry).
   *  Throws RaftError 'Compacted' if lo <= the snapshot index. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i, for firstIndex-1 <= i <= lastIndex. Throws 'Compacted' below. */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  /** The latest snapshot (to send to a follower that is too far behind). */
  snapshot(): Snapshot;
}

export const EMPTY_CONF: ConfState = { voters: [], learners: [] };
export const EMPTY_HARD_STATE: HardState = { term: 0, vote: '', commit: 0 };

export function compacted(i: number): RaftError {
  return new RaftError('Compacted', `entry ${i} has been compacted`);
}

export function entryBytes(e: Entry): number {
  return e.data.byteLength + 24;
}

export class MemoryStorage implements Storage {
  hardState: HardState = EMPTY_HARD_STATE;
  conf: ConfState;
  private snap: Snapshot;
  /** ents[0] is a dummy entry at the snapshot index carrying the snapshot term. */
  private ents: Entry[];

  constructor(conf: ConfState = EMPTY_CONF) {
    this.conf = conf;
    this.snap = { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) };
    this.ents = [{ index: 0, term: 0, type: 'normal', data: new Uint8Array(0) }];
  }

  initialState(): InitialState {
    return { hardState: this.hardState, conf: this.conf };
  }

  private get offset(): number {
    return this.ents[0].index;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.offset;
    if (i < off) throw compacted(i);
    if (i - off >= this.ents.length) throw new RaftError('Unavailable', `entry ${i} is beyond the last index`);
    return this.ents[i - off].term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.offset;
    if (lo <= off) throw compacted(lo);
    if (hi > this.lastIndex() + 1) throw new RaftError('Unavailable', `entries up to ${hi - 1} not available`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - off];
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  /** Write the durable part of a Ready (snapshot, entries, hard state, membership), as a host
   *  does between sending `messages` and sending `messagesAfterPersist`. */
  persist(rd: Ready): void {
    if (rd.snapshot) this.applySnapshot(rd.snapshot);
    this.append(rd.entries);
    if (rd.hardState) this.setHardState(rd.hardState);
    if (rd.conf) this.conf = rd.conf;
  }

  /** Append entries, dropping any existing suffix that they replace. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    const off = this.offset;
    if (first <= off) {
      // The part already covered by the snapshot is ignored.
      const skip = off + 1 - first;
      if (skip >= entries.length) return;
      entries = entries.slice(skip);
    }
    const at = entries[0].index - off;
    if (at > this.ents.length)
      throw new RaftError('Gap', `append at ${entries[0].index} leaves a gap after ${this.lastIndex()}`);
    this.ents.length = at;
    for (const e of entries) this.ents.push(e);
  }

  /** Replace everything with a received snapshot. */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) return;
    this.snap = s;
    this.conf = s.meta.conf;
    this.ents = [{ index: s.meta.index, term: s.meta.term, type: 'normal', data: new Uint8Array(0) }];
  }

  /** Record a snapshot taken by the host at `index` (which must be applied), then compact. */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.meta.index) return this.snap;
    if (index > this.lastIndex()) throw new RaftError('Unavailable', `snapshot index ${index} beyond last index`);
    this.snap = { meta: { index, term: this.term(index), conf }, data };
    return this.snap;
  }

  /** Drop entries up to and including `index` (it becomes the dummy). */
  compact(index: number): void {
    const off = this.offset;
    if (index <= off) return;
    if (index > this.lastIndex()) throw new RaftError('Unavailable', `compact ${index} beyond last index`);
    const dummy = this.ents[index - off];
    this.ents = [
      { index: dummy.index, term: dummy.term, type: 'normal', data: new Uint8Array(0) },
      ...this.ents.slice(index - off + 1),
    ];
  }

  /** Copy of everything persisted (the simulator keeps only this across a crash). */
  clone(): MemoryStorage {
    const m = new MemoryStorage(this.conf);
    m.hardState = this.hardState;
    m.snap = this.snap;
    m.ents = this.ents.slice();
    return m;
  }
}
