// Tracker: group membership (voters, learners), per-peer Progress, vote tallies and quorum math.
// Sized for 100,000 replicas per node: membership lists are shared among replicas, per-peer
// progress exists only while leading, and vote tallies only during a campaign.
import { internIds, NOTHING } from './empty.js';
import { Progress } from './progress.js';
import type { ConfState, NodeId } from './types.js';

export type VoteResult = 'won' | 'lost' | 'pending';

export class Tracker {
  /** Voters, without duplicates, in configuration order. Interned (see internIds): a handful of
   *  ids, where a Set would cost a hash table per replica. */
  voters: readonly NodeId[] = NOTHING;
  /** Learners that are not voters, without duplicates, in configuration order. Interned. */
  learners: readonly NodeId[] = NOTHING;
  /** While tracking (leader): one Progress per member, voters first, so progress[i] belongs to
   *  voters[i] for i < voters.length. Empty otherwise: only a leader reads progress, and becoming
   *  leader builds it afresh (trackProgress), so a follower's would be dead weight. */
  progress: readonly Progress[] = NOTHING;
  private tracking = false;
  /** Votes of the current (pre-)campaign; null outside one. */
  private votes: Map<NodeId, boolean> | null = null;
  /** Window of appends in flight per peer, for the Progress it creates. */
  private readonly maxInflight: number;

  constructor(maxInflight: number) {
    this.maxInflight = maxInflight;
  }

  conf(): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() };
  }

  isVoter(id: NodeId): boolean {
    return this.voters.includes(id);
  }

  isLearner(id: NodeId): boolean {
    return this.learners.includes(id);
  }

  isMember(id: NodeId): boolean {
    return this.voters.includes(id) || this.learners.includes(id);
  }

  quorum(): number {
    return Math.floor(this.voters.length / 2) + 1;
  }

  /** `id`'s progress, while tracking. */
  progressOf(id: NodeId): Progress | undefined {
    for (const pr of this.progress) if (pr.id === id) return pr;
    return undefined;
  }

  /** Replace the configuration; while tracking, keep the progress of peers that stay. */
  setConf(conf: ConfState, nextIndex: number): void {
    const voters = [...new Set(conf.voters)];
    this.voters = internIds(voters);
    this.learners = internIds([...new Set(conf.learners.filter((l) => !voters.includes(l)))]);
    if (!this.tracking) return;
    // map and concat size the array exactly (pushing would reserve room for 17).
    this.progress = this.voters
      .map((id) => this.keepProgress(id, nextIndex, false))
      .concat(this.learners.map((id) => this.keepProgress(id, nextIndex, true)));
  }

  private keepProgress(id: NodeId, nextIndex: number, isLearner: boolean): Progress {
    const pr = this.progressOf(id) ?? new Progress(id, nextIndex, this.maxInflight, false);
    pr.isLearner = isLearner;
    return pr;
  }

  /** Start tracking (becoming leader): fresh progress for every member. */
  trackProgress(nextIndex: number): void {
    // map and concat size the array exactly (pushing would reserve room for 17).
    this.progress = this.voters
      .map((id) => new Progress(id, nextIndex, this.maxInflight, false))
      .concat(this.learners.map((id) => new Progress(id, nextIndex, this.maxInflight, true)));
    this.tracking = true;
  }

  /** Stop tracking (leaving leadership): drop all progress. */
  dropProgress(): void {
    this.progress = NOTHING;
    this.tracking = false;
  }

  /** Largest index replicated on a quorum of voters. Called on every acknowledgement: no
   *  allocation (a shared scratch array, insertion sort of a handful of values). A voter without
   *  progress (not tracking) counts as matching nothing. */
  committedIndex(): number {
    const voters = this.voters;
    if (voters.length === 0) return 0;
    let n = 0;
    for (let i = 0; i < voters.length; i++) n = insertDesc(scratch, n, this.progress[i]?.match ?? 0);
    return scratch[this.quorum() - 1];
  }

  /** The value v such that a quorum of voters has f(progress) >= v. */
  quorumValue(f: (id: NodeId, pr: Progress) => number): number {
    const voters = this.voters;
    if (voters.length === 0) return -Infinity;
    let n = 0;
    for (let i = 0; i < voters.length; i++) {
      const pr = this.progress[i];
      n = insertDesc(scratch, n, pr ? f(voters[i], pr) : -Infinity);
    }
    return scratch[this.quorum() - 1];
  }

  resetVotes(): void {
    this.votes = null;
  }

  recordVote(id: NodeId, granted: boolean): void {
    this.votes ??= new Map();
    const votes = this.votes;
    if (!votes.has(id)) votes.set(id, granted);
  }

  tally(): VoteResult {
    let granted = 0;
    let rejected = 0;
    for (const id of this.voters) {
      const v = this.votes?.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = this.quorum();
    if (granted >= q) return 'won';
    if (rejected > this.voters.length - q) return 'lost';
    return 'pending';
  }

  /** CheckQuorum: did a quorum of voters (counting self) talk to us in the last window? */
  quorumActive(self: NodeId): boolean {
    const voters = this.voters;
    let active = 0;
    for (let i = 0; i < voters.length; i++) {
      if (voters[i] === self || this.progress[i]?.recentActive) active++;
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
