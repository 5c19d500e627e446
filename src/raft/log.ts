// RaftLog: the core's view of one replica's log — the durable part (Storage) plus an in-memory
// unstable tail (and possibly an unstable snapshot) that the host has not yet persisted.
// Owns the commit and applying indexes.
import type { Storage } from './storage.js';
import { entryBytes } from './storage.js';
import { RaftError, type Entry, type Snapshot } from './types.js';
import { NOTHING } from './empty.js';

export class RaftLog {
  /** The durable part, written by the host; the core only reads it. */
  readonly storage: Storage;
  committed: number;
  /** Highest index handed to the host for applying. */
  applied: number;
  /** Unstable snapshot, received from a leader and not yet persisted. */
  unstableSnap: Snapshot | null = null;
  /** Unstable entries; unstable[0].index === unstableOffset. The shared NOTHING when empty (most
   *  replicas, most of the time): append() gives it an array of its own. */
  unstable: Entry[] = NOTHING;
  unstableOffset: number;
  /** The last unstable index already handed to the host in a Ready (being persisted): a host
   *  that pipelines writes gets each entry once, and stableTo() drops it when durable. */
  handedOut: number;
  /** The unstable snapshot was handed to the host. */
  snapHanded = false;

  constructor(storage: Storage, applied: number) {
    this.storage = storage;
    const last = storage.lastIndex();
    this.unstableOffset = last + 1;
    this.handedOut = last;
    this.committed = storage.initialState().hardState.commit;
    const first = storage.firstIndex();
    this.applied = Math.max(applied, first - 1);
    if (this.committed < first - 1) this.committed = first - 1;
    // The commit index may be persisted lazily (Ready.mustSync): an entry the state machine
    // applied was committed, so the applied index (if the log still holds it) is a floor.
    if (this.committed < this.applied && this.applied <= last) this.committed = this.applied;
    if (this.applied > this.committed) this.applied = this.committed;
  }

  firstIndex(): number {
    if (this.unstableSnap) return this.unstableSnap.meta.index + 1;
    return this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.unstableOffset + this.unstable.length - 1;
    if (this.unstableSnap) return this.unstableSnap.meta.index;
    return this.storage.lastIndex();
  }

  /** Term of entry i, or null if it is compacted or beyond the last index. */
  termOf(i: number): number | null {
    if (i < 0) return null;
    if (i >= this.unstableOffset) {
      const k = i - this.unstableOffset;
      return k < this.unstable.length ? this.unstable[k].term : null;
    }
    if (this.unstableSnap) {
      if (i === this.unstableSnap.meta.index) return this.unstableSnap.meta.term;
      return null;
    }
    if (i < this.storage.firstIndex() - 1 || i > this.storage.lastIndex()) return null;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof RaftError) return null;
      throw e;
    }
  }

  lastTerm(): number {
    return this.termOf(this.lastIndex()) ?? 0;
  }

  matchTerm(i: number, t: number): boolean {
    return this.termOf(i) === t;
  }

  /** Raft §5.4.1: is a candidate log (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Follower side of AppendEntries. Returns the last new index, or null if (index, logTerm) does
   *  not match our log. Never truncates committed entries (that would be a safety violation). */
  maybeAppend(index: number, logTerm: number, commit: number, entries: readonly Entry[]): number | null {
    if (!this.matchTerm(index, logTerm)) return null;
    const lastNew = index + entries.length;
    const ci = this.findConflict(entries);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new RaftError('Safety', `entry ${ci} conflicts with committed entry (committed=${this.committed})`);
      }
      this.append(entries.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** First index whose term differs from ours, or the first new index, or 0 if all match. */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /** Largest index <= index whose term is <= term (fast log backtracking, etcd's hint). */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    for (; i > 0; i--) {
      const t = this.termOf(i);
      if (t === null || t <= term) break;
    }
    return i;
  }

  /** Append to the unstable tail, truncating any suffix the new entries replace. */
  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0].index - 1;
    if (after < this.committed)
      throw new RaftError('Safety', `append after ${after} is below commit ${this.committed}`);
    // Entries replacing ones already handed out are new to the host (it writes them after the
    // old ones, and the log store replaces the suffix).
    if (after < this.handedOut) this.handedOut = after;
    if (after + 1 === this.unstableOffset + this.unstable.length) {
      if (this.unstable.length === 0) this.unstable = entries.slice();
      else for (const e of entries) this.unstable.push(e);
    } else if (after + 1 <= this.unstableOffset) {
      // Replaces part of the durable log: the host truncates the durable suffix when persisting.
      this.unstableOffset = after + 1;
      this.unstable = entries.slice();
    } else {
      this.unstable.length = after + 1 - this.unstableOffset;
      for (const e of entries) this.unstable.push(e);
    }
    return this.lastIndex();
  }

  /** Entries in [lo, hi) up to maxBytes (at least one). Throws 'Compacted' below firstIndex. */
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new RaftError('Compacted', `entry ${lo} is compacted (first ${first})`);
    const last = this.lastIndex();
    if (hi > last + 1) hi = last + 1;
    let out: Entry[] = [];
    let bytes = 0;
    if (lo < this.unstableOffset) {
      const sHi = Math.min(hi, this.unstableOffset);
      out = this.storage.entries(lo, sHi, maxBytes);
      for (const e of out) bytes += entryBytes(e);
      if (out.length < sHi - lo) return out; // byte limit reached inside storage
    }
    for (let i = Math.max(lo, this.unstableOffset); i < hi; i++) {
      const e = this.unstable[i - this.unstableOffset];
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  commitTo(i: number): boolean {
    if (i <= this.committed) return false;
    if (i > this.lastIndex()) throw new RaftError('Safety', `commit ${i} beyond last index ${this.lastIndex()}`);
    this.committed = i;
    return true;
  }

  /** Is there an unstable snapshot or unstable entries not yet handed to the host? */
  hasUnhanded(): boolean {
    return (
      (this.unstableSnap !== null && !this.snapHanded) ||
      (this.unstable.length > 0 && this.unstableOffset + this.unstable.length - 1 > this.handedOut)
    );
  }

  /** The unstable entries not yet handed out; marks them handed out. */
  takeUnhanded(): Entry[] {
    const from = Math.max(this.handedOut + 1, this.unstableOffset) - this.unstableOffset;
    const out = from <= 0 ? this.unstable.slice() : this.unstable.slice(from);
    this.handedOut = this.lastIndex();
    return out;
  }

  hasNextCommitted(): boolean {
    return this.committed > this.applied && !this.unstableSnap;
  }

  nextCommitted(maxBytes: number): Entry[] {
    if (!this.hasNextCommitted()) return [];
    return this.entries(this.applied + 1, this.committed + 1, maxBytes);
  }

  /** Index of the last entry that is durable and matches this log. */
  stableLastIndex(): number {
    if (this.unstableSnap)
      return this.storage.lastIndex() >= this.unstableSnap.meta.index ? this.unstableSnap.meta.index : 0;
    return Math.min(this.storage.lastIndex(), this.unstableOffset - 1);
  }

  /** The host persisted entries up to (i, t): drop them from the unstable tail if still there. */
  stableTo(i: number, t: number): void {
    if (i < this.unstableOffset) return;
    const k = i - this.unstableOffset;
    if (k >= this.unstable.length || this.unstable[k].term !== t) return;
    // In place: Readies hold copies (takeUnhanded), never this array. Emptied, it is dropped for
    // the shared empty one, freeing its backing store.
    if (k + 1 === this.unstable.length) this.unstable = NOTHING;
    else this.unstable.splice(0, k + 1);
    this.unstableOffset = i + 1;
  }

  stableSnapTo(i: number): void {
    if (this.unstableSnap && this.unstableSnap.meta.index === i) this.unstableSnap = null;
  }

  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstableSnap = s;
    this.snapHanded = false;
    this.unstable = NOTHING;
    this.unstableOffset = s.meta.index + 1;
    this.handedOut = s.meta.index;
  }
}
