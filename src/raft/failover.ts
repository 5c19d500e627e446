// Fast failover: campaigning soon after the host's node-liveness layer reports our leader's node
// down, instead of waiting out the randomized election timeout (up to twice the election timeout).
// Owns the plan one such report starts: when to campaign, how many early retries are left, and
// which surviving voter goes first (a per-group ranking every replica computes alike, so each
// group has a different first candidate and the survivors do not split the vote).
// Kept out of raft.ts because it is an optimisation layered on the election rules, with state
// that most replicas never have: Raft holds a FailoverPlan only from a report until the plan has
// nothing left to do (see `idle`), so a replica that is never told of a failure pays one null field.
import { NONE, type NodeId } from './types.js';
import type { Tracker } from './tracker.js';

export class FailoverPlan {
  /** Campaign once `silence` (real ticks since we last heard a leader) reaches this; 0 = no
   *  deadline, the randomized election timeout applies. */
  private at: number;
  /** After a fast-failover campaign that did not win (a voter had not heard of the failure yet),
   *  retry this many more times after a short pause rather than the full election round. */
  private retries: number;
  /** Our rank among the surviving voters: 0 campaigns first. */
  private readonly rank: number;
  /** The leader reported down that started this plan (NONE once a leader was heard or the term
   *  moved on). */
  private from: NodeId;
  private readonly group: number;

  private constructor(group: number, from: NodeId, rank: number, at: number, retries: number) {
    this.group = group;
    this.from = from;
    this.rank = rank;
    this.at = at;
    this.retries = retries;
  }

  /** The plan of a voter `self` told that `leader` is down. Campaign with a stagger of 2 ticks
   *  per rank among the surviving voters: without lease reads, 2 ticks after the report (nothing
   *  is promised to the old leader, and the other survivors hear of it about as fast and then
   *  ignore stickiness too); with lease reads, only once the old leader's lease must have lapsed
   *  (one election timeout plus a tick since we last heard it, the bound the voters enforce).
   *  A wrong report costs little: a voter that still hears the leader ignores the (pre-)vote, so
   *  no term is raised. */
  static start(
    group: number,
    self: NodeId,
    leader: NodeId,
    tracker: Tracker,
    leaseReads: boolean,
    electionTicks: number,
  ): FailoverPlan {
    const rank = survivorRank(group, tracker, self, leader);
    const at = (leaseReads ? electionTicks + 1 : 2) + 2 * rank;
    return new FailoverPlan(group, leader, rank, at, leaseReads ? 0 : 3);
  }

  /** A campaign deadline is set: voters told of the failure need not keep their stickiness to the
   *  old leader (unless leases are in use, which the caller checks). */
  get armed(): boolean {
    return this.at > 0;
  }

  /** Nothing left to do: the holder may drop the plan. */
  get idle(): boolean {
    return this.at === 0 && this.from === NONE && this.retries === 0;
  }

  /** Is a campaign due at `silence`? Undefined when the plan sets no deadline (the randomized
   *  election timeout decides). Only a pre-candidate retries early: its round raises no term, so
   *  a retry cannot undo a real election that is merely slow under load. Counts real time (a
   *  loaded host coalesces ticks): the old lease lapses in real time, and so does the voters'
   *  lease check. */
  campaignDue(preCandidate: boolean, silence: number, campaignDelay: number): boolean | undefined {
    if (preCandidate && this.retries > 0 && silence >= 5 + 2 * this.rank) {
      this.retries--;
      return true;
    }
    return this.at > 0 ? silence >= this.at + campaignDelay : undefined;
  }

  /** The campaign started: its deadline is spent (early retries remain). */
  campaigned(): void {
    this.at = 0;
  }

  /** A leader was heard, or the term moved on: the report no longer applies (early retries remain). */
  forgetLeader(): void {
    this.at = 0;
    this.from = NONE;
  }

  /** We granted a pre-vote to `candidate`. On a loaded host ticks coalesce, so two survivors can
   *  both reach their (staggered) campaign tick in one iteration, both win their pre-votes (each
   *  grants the other's) and split the real vote, which costs a full election round. A survivor
   *  that grants a pre-vote to a better-ranked survivor of the same failover steps back instead:
   *  it abandons its own pre-campaign (which raised no term, so this is always safe; the caller
   *  does that when this returns true) and campaigns itself only if that candidate has not won a
   *  few ticks later. The best-ranked never steps back, so one of them always goes on. */
  deferTo(candidate: NodeId, tracker: Tracker, silence: number): boolean {
    if (this.from === NONE || candidate === this.from || !tracker.isVoter(candidate)) return false;
    const rank = survivorRank(this.group, tracker, candidate, this.from);
    if (rank < 0 || rank >= this.rank) return false;
    this.at = silence + 4 + 2 * this.rank;
    this.retries = 0;
    return true;
  }
}

/** `id`'s rank among the voters other than `dead` (-1 if it is not one of them). */
function survivorRank(group: number, tracker: Tracker, id: NodeId, dead: NodeId): number {
  return [...tracker.voters]
    .filter((v) => v !== dead)
    .map((v) => ({ id: v, h: rankHash(group, v) }))
    .sort((a, b) => a.h - b.h || (a.id < b.id ? -1 : 1))
    .findIndex((x) => x.id === id);
}

/** FNV-1a of "group:id": a per-group order of replicas every node computes alike. */
function rankHash(group: number, id: NodeId): number {
  let h = 0x811c9dc5;
  const s = `${group}:${id}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
