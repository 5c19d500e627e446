// Tracker: group membership (voters, learners), per-peer Progress, vote tallies and quorum math.
import { Progress } from './progress.js';
import type { ConfState, NodeId } from './types.js';

export type VoteResult = 'won' | 'lost' | 'pending';

export class Tracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();

  constructor(private readonly maxInflight: number) {}

  conf(): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() };
  }

  isMember(id: NodeId): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /** Replace the configuration, keeping the progress of peers that stay. */
  setConf(conf: ConfState, nextIndex: number): void {
    this.voters = new Set(conf.voters);
    this.learners = new Set(conf.learners.filter((l) => !this.voters.has(l)));
    const keep = new Map<NodeId, Progress>();
    for (const id of [...this.voters, ...this.learners]) {
      const pr = this.progress.get(id) ?? new Progress(nextIndex, this.maxInflight, false);
      pr.isLearner = this.learners.has(id);
      keep.set(id, pr);
    }
    this.progress = keep;
  }

  resetProgress(nextIndex: number): void {
    for (const [id, old] of this.progress) {
      const pr = new Progress(nextIndex, this.maxInflight, old.isLearner);
      this.progress.set(id, pr);
    }
  }

  /** Largest index replicated on a quorum of voters. Called on every acknowledgement: no
   *  allocation (a shared scratch array, insertion sort of a handful of values). */
  committedIndex(): number {
    if (this.voters.size === 0) return 0;
    let n = 0;
    for (const id of this.voters) n = insertDesc(scratch, n, this.progress.get(id)?.match ?? 0);
    return scratch[this.quorum() - 1];
  }

  /** The value v such that a quorum of voters has f(progress) >= v. */
  quorumValue(f: (id: NodeId, pr: Progress) => number): number {
    if (this.voters.size === 0) return -Infinity;
    let n = 0;
    for (const id of this.voters) {
      const pr = this.progress.get(id);
      n = insertDesc(scratch, n, pr ? f(id, pr) : -Infinity);
    }
    return scratch[this.quorum() - 1];
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tally(): VoteResult {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = this.quorum();
    if (granted >= q) return 'won';
    if (rejected > this.voters.size - q) return 'lost';
    return 'pending';
  }

  /** CheckQuorum: did a quorum of voters (counting self) talk to us in the last window? */
  quorumActive(self: NodeId): boolean {
    let active = 0;
    for (const id of this.voters) {
      if (id === self || this.progress.get(id)?.recentActive) active++;
    }
    return active >= this.quorum();
  }
}

/** Shared by every tracker (the core is single-threaded and these calls do not nest). */
const scratch: number[] = [];

/** Insert `v` into xs[0..n) kept in descending order; returns n + 1. */
function insertDesc(xs: number[], n: number, v: number): number {
  let i = n;
  while (i > 0 && xs[i - 1] < v) {
    xs[i] = xs[i - 1];
    i--;
  }
  xs[i] = v;
  return n + 1;
}
