// Progress: the leader's view of one follower (match/next, flow-control state, in-flight window),
// as in the Raft thesis §3.5 and etcd's tracker. Inflights is the bounded ring of unacked appends.

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Inflights {
  /** Grows on demand up to `size`: most groups never have more than a few appends in flight, and
   *  a node with 10,000 groups holds 30,000 of these rings. */
  private buf: number[] = [];
  private start = 0;
  count = 0;

  constructor(readonly size: number) {}

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

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: one probe is outstanding; wait for a reply (or a heartbeat reply). */
  probeSent = false;
  pendingSnapshot = 0;
  /** Heard from within the current CheckQuorum window. */
  recentActive = false;
  /** The host's liveness layer says the node is down (does not block quiescence). */
  unreachable = false;
  /** Highest leader tick echoed in a heartbeat response (lease reads). */
  ackedSeq = -Infinity;
  /** Ticks since the last successful append response (detects lost appends). */
  ticksSinceAck = 0;
  /** Ticks spent in snapshot state (a lost snapshot falls back to probe). */
  snapshotTicks = 0;
  /** Highest commit index sent to this follower. */
  sentCommit = 0;
  /** An append went to this follower since the last periodic heartbeat. */
  appendedSinceHeartbeat = false;
  /** This follower accepted an append since the last periodic heartbeat. */
  ackedSinceHeartbeat = false;
  readonly inflights: Inflights;

  constructor(next: number, maxInflight: number, public isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.inflights.reset();
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
      case 'probe': return this.probeSent;
      case 'replicate': return this.inflights.full();
      case 'snapshot': return true;
    }
  }

  /** Record that entries up to `last` were sent. */
  sentEntries(last: number, count: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = last + 1;
        this.inflights.add(last);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }
}
