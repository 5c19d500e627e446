// Human-readable state dumps and known-stuck-pattern detection, appended to liveness violations
// so that a failing seed can be triaged from its one-line report.
import type { NodeId } from '../../src/raft/types.js';
import type { Host } from './host.js';

/** Known ways a healed group gets stuck, spelled out to make liveness failures triage-able. */
export function diagnose(hosts: ReadonlyMap<NodeId, Host>): string[] {
  const hints: string[] = [];
  for (const h of hosts.values()) {
    const r = h.node?.inspect();
    if (!r) continue;
    if (r.role !== 'leader' && r.tracker.isVoter(h.id)) {
      // A would-be candidate that can never collect a quorum: a voter it needs drops its requests
      // as coming from a stranger, is removed in its own view and will not vote for a shorter log,
      // or is a learner in its own view stuck believing in its old leader's lease.
      for (const v of r.tracker.voters) {
        const vr = hosts.get(v)?.node?.inspect();
        if (v === h.id || !vr) continue;
        if (!vr.tracker.isMember(h.id)) {
          hints.push(
            `voter ${v} does not know ${h.id} is a member (its voters=[${[...vr.tracker.voters].join(',')}]) and drops its vote requests as UnknownSender`,
          );
        } else if (!vr.tracker.isVoter(v) && !vr.log.isUpToDate(r.log.lastIndex(), r.log.lastTerm())) {
          hints.push(
            `${h.id} still counts ${v} as a voter, but ${v} (removed in its own view, voters=[${[...vr.tracker.voters].join(',')}]) cannot campaign and refuses its vote: its log ${vr.log.lastIndex()}@${vr.log.lastTerm()} is ahead of ${r.log.lastIndex()}@${r.log.lastTerm()}`,
          );
        } else if (!vr.tracker.isVoter(v) && vr.leader !== '' && vr.randomizedTimeout <= vr.cfg.electionTicks) {
          hints.push(
            `${h.id} needs the vote of ${v}, which is not promotable in its own view and resets its election clock at randomizedTimeout ${vr.randomizedTimeout} = electionTicks: it stays "in lease" of '${vr.leader}' forever and ignores vote requests`,
          );
        }
      }
    }
    if (r.role === 'leader') {
      for (const pr of r.tracker.progress) {
        const id = pr.id;
        if (
          id !== h.id &&
          pr.state === 'replicate' &&
          pr.match < r.log.lastIndex() &&
          pr.next > r.log.lastIndex() &&
          pr.inflightCount() === 0
        ) {
          hints.push(
            `leader ${h.id} believes it sent ${id} everything (next=${pr.next}) but ${id} matched only ${pr.match}, with nothing in flight: the lost append is never resent`,
          );
        }
      }
    }
  }
  return hints;
}

/** One token per node: role, term, leader, log/commit/applied indexes, membership; leaders add
 *  their per-follower progress. */
export function describeNodes(hosts: Iterable<Host>): string {
  return [...hosts]
    .map((h) => {
      const r = h.node?.inspect();
      if (!r) return `${h.id}:down`;
      const prs =
        r.role !== 'leader'
          ? ''
          : ` progress{${r.tracker.progress
              .map(
                (pr) =>
                  `${pr.id}:${pr.state}/match=${pr.match}/next=${pr.next}/inflight=${pr.inflightCount()}${pr.isPaused() ? '/paused' : ''}${pr.probeSent ? '/probeSent' : ''}${pr.recentActive ? '' : '/inactive'}${pr.unreachable ? '/unreachable' : ''}`,
              )
              .join(' ')}}`;
      return `${h.id}:${r.role}/t${r.term}/lead=${r.leader || '-'}/commit=${r.log.committed}/last=${r.log.lastIndex()}/applied=${h.sm.applied}/voters=${[...r.tracker.voters].join(',')}${r.tracker.learners.length > 0 ? `/learners=${[...r.tracker.learners].join(',')}` : ''}${r.quiesced ? '/quiesced' : ''}${prs}`;
    })
    .join(' ');
}
