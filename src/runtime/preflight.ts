// Preflight of a leader transfer, on what the target says about itself: whether it reaches a
// quorum of the group's voters (its own links, not the leader's guess), and whether its disk or
// CPU is much worse than the leader's. A target that fails either would win the election and then
// serve worse than the leader it replaced, or not hold on at all. Pure: the node feeds it the
// summaries its peers send each balancer round. The checks the leader's replica makes itself
// (membership, lag, snapshot, its own quorum) live in the shard, next to the Raft state they read.
import type { NodeId } from '../raft/types.js';

/** What a node said about itself in its latest summary. */
export interface NodeView {
  /** Peers it has a live link to. */
  readonly reach: readonly NodeId[] | null;
  /** p99 of its storage commits (fsync), ms. */
  readonly fsyncP99Ms: number | null;
  /** CPU in use, as a fraction of its cores. */
  readonly cpu: number | null;
  /** When it arrived (Date.now()). */
  readonly at: number;
}

/** Thresholds, in one place. */
export const PREFLIGHT = {
  /** A view older than this (several summary rounds missed) says nothing. */
  maxViewAgeMs: 10_000,
  /** Slow disk: the target's fsync p99 is at least this many times the leader's ... */
  slowFsyncRatio: 4,
  /** ... and at least this many ms worse (a 1 ms vs 4 ms difference is no reason to refuse). */
  slowFsyncMinMs: 20,
  /** Busy CPU: the target uses at least this share of its cores ... */
  slowCpu: 0.9,
  /** ... and at least this much more than the leader. */
  slowCpuMargin: 0.3,
} as const;

export function fresh(v: NodeView | null | undefined, now: number): NodeView | null {
  return v && now - v.at <= PREFLIGHT.maxViewAgeMs ? v : null;
}

/** Does `target`, by its own links, reach a quorum of `voters` (itself included)? Unknown when
 *  it has not said (null): the leader's own quorum check still applies. */
export function reachesQuorum(
  target: NodeId,
  voters: readonly NodeId[],
  reach: readonly NodeId[] | null,
): boolean | null {
  if (reach === null || !voters.includes(target)) return null;
  let n = 0;
  for (const v of voters) if (v === target || reach.includes(v)) n++;
  return n > voters.length / 2;
}

/** Why the target is much slower than the leader, or null (also when either is unmeasured). */
export function slowerThanLeader(leader: NodeView | null, target: NodeView | null): string | null {
  if (!leader || !target) return null;
  const lf = leader.fsyncP99Ms;
  const tf = target.fsyncP99Ms;
  if (lf !== null && tf !== null && tf >= PREFLIGHT.slowFsyncRatio * lf && tf - lf >= PREFLIGHT.slowFsyncMinMs) {
    return `its fsync p99 is ${tf.toFixed(1)} ms against the leader's ${lf.toFixed(1)} ms`;
  }
  const lc = leader.cpu;
  const tc = target.cpu;
  if (lc !== null && tc !== null && tc >= PREFLIGHT.slowCpu && tc - lc >= PREFLIGHT.slowCpuMargin) {
    return `it uses ${Math.round(tc * 100)}% of its CPU against the leader's ${Math.round(lc * 100)}%`;
  }
  return null;
}
