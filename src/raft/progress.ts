// Progress: the leader's view of one follower (match/next, flow-control state, in-flight window),
// as in the Raft thesis §3.5 and etcd's tracker. Inflights is the bounded ring of unacked appends.

import { NOTHING } from './empty.js';
import type { NodeId } from './types.js';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Inflights {
  /** Grows on demand up to `size`: most groups never have more than a few appends in flight, and
   *  a node with 10,000 groups holds 30,000 of these rings. Starts as the shared empty array:
   *  add() replaces a full buffer (the empty one included) before writing, and nothing else
   *  writes to it. */
  private buf: number[] = NOTHING;
  private start = 0;
  count = 0;
  /** Capacity: the group's maxInflight. */
  readonly size: number;

  constructor(size: number) {
    this.size = size;
  }

  full(): boolean {
    return this.count === this.size;
  }

  add(lastIndex: number): void {
    if (this.count === this.buf.length) {
      // Unroll the ring into a bigger array (amortized O(1); bounded by size).
      const grown = new Array<number>(Math.min(this.size, Math.max(4, this.buf.length * 2)));
      for (let i = 0; i < this.count; i++) grown[i] = this.buf[(this.start + i) % this.buf.length];
      this.buf = grown;
      this.start = 0;
    }
    this.buf[(this.start + this.count) % this.buf.length] = lastIndex;
    this.count++;
  }

  /** Free every in-flight append whose last index is <= to. */
  freeLE(to: number): void {
    while (this.count > 0 && this.buf[this.start] <= to) {
      this.start = (this.start + 1) % this.buf.length;
      this.count--;
    }
  }

  freeFirst(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.buf.length;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

/** Progress.ackedSeq before any acknowledgement: below every tick a heartbeat carries (ticks
 *  count up from 0), like -Infinity, but a small integer, so V8 keeps the field unboxed (a
 *  double field costs a heap number per Progress). */
export const NO_ACK = -(2 ** 30);

// Bits of Progress.flags.
const LEARNER = 1;
const PROBE_SENT = 2;
const RECENT_ACTIVE = 4;
const UNREACHABLE = 8;
const APPENDED_SINCE_HEARTBEAT = 16;
const ACKED_SINCE_HEARTBEAT = 32;

export class Progress {
  readonly id: NodeId;
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  pendingSnapshot = 0;
  /** Highest leader tick echoed in a heartbeat response (lease reads); NO_ACK before any. */
  ackedSeq = NO_ACK;
  /** Ticks since the last successful append response (detects lost appends). */
  ticksSinceAck = 0;
  /** Ticks spent in snapshot state (a lost snapshot falls back to probe). */
  snapshotTicks = 0;
  /** Highest commit index sent to this follower. */
  sentCommit = 0;
  /** The boolean state, one bit each (see the accessors below): a leader of 100,000 groups holds
   *  a Progress per member of each. */
  private flags = 0;
  /** Appends in flight (replicate state). Allocated with the first one, as most progress never
   *  has any (the leader's own; a follower of an idle group), and dropped by releaseInflights(). */
  private ring: Inflights | null = null;
  private readonly maxInflight: number;

  constructor(id: NodeId, next: number, maxInflight: number, isLearner: boolean) {
    this.id = id;
    this.next = next;
    this.maxInflight = maxInflight;
    this.isLearner = isLearner;
  }

  private flag(bit: number): boolean {
    return (this.flags & bit) !== 0;
  }

  private setFlag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  get isLearner(): boolean {
    return this.flag(LEARNER);
  }
  set isLearner(on: boolean) {
    this.setFlag(LEARNER, on);
  }

  /** In probe state: one probe is outstanding; wait for a reply (or a heartbeat reply). */
  get probeSent(): boolean {
    return this.flag(PROBE_SENT);
  }
  set probeSent(on: boolean) {
    this.setFlag(PROBE_SENT, on);
  }

  /** Heard from within the current CheckQuorum window. */
  get recentActive(): boolean {
    return this.flag(RECENT_ACTIVE);
  }
  set recentActive(on: boolean) {
    this.setFlag(RECENT_ACTIVE, on);
  }

  /** The host's liveness layer says the node is down (does not block quiescence). */
  get unreachable(): boolean {
    return this.flag(UNREACHABLE);
  }
  set unreachable(on: boolean) {
    this.setFlag(UNREACHABLE, on);
  }

  /** An append went to this follower since the last periodic heartbeat. */
  get appendedSinceHeartbeat(): boolean {
    return this.flag(APPENDED_SINCE_HEARTBEAT);
  }
  set appendedSinceHeartbeat(on: boolean) {
    this.setFlag(APPENDED_SINCE_HEARTBEAT, on);
  }

  /** This follower accepted an append since the last periodic heartbeat. */
  get ackedSinceHeartbeat(): boolean {
    return this.flag(ACKED_SINCE_HEARTBEAT);
  }
  set ackedSinceHeartbeat(on: boolean) {
    this.setFlag(ACKED_SINCE_HEARTBEAT, on);
  }

  /** Appends in flight. */
  inflightCount(): number {
    return this.ring === null ? 0 : this.ring.count;
  }

  /** Is the in-flight window full? */
  inflightsFull(): boolean {
    return this.ring?.full() === true;
  }

  /** Free every in-flight append whose last index is <= to. */
  freeInflightsLE(to: number): void {
    this.ring?.freeLE(to);
  }

  freeFirstInflight(): void {
    this.ring?.freeFirst();
  }

  /** Drop an empty in-flight ring (a quiescing group keeps no buffers); the next append
   *  allocates a new one. */
  releaseInflights(): void {
    if (this.ring !== null && this.ring.count === 0) this.ring = null;
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.ring?.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(index: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = index;
  }

  /** An append response acknowledged up to n. Returns true if match advanced. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** A rejection of the append at `rejected`; `hint` is the follower's guess of the last match.
   *  Returns false if the rejection is stale. */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Could sending commit index `commit` advance the follower's commit? It can reach next-1. */
  canBumpCommit(commit: number): boolean {
    return commit > this.sentCommit && this.sentCommit < this.next - 1;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflightsFull();
      case 'snapshot':
        return true;
    }
  }

  /** Record that entries up to `last` were sent. */
  sentEntries(last: number, count: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = last + 1;
        this.ring ??= new Inflights(this.maxInflight);
        this.ring.add(last);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }
}
