// Quiescence: an idle group stops ticking. Most of a node's 100,000 groups are idle most of the
// time, and a heartbeat per group per tick would be the node's whole load; a quiesced replica
// does nothing on ticks until a message or a local request wakes it. Owns when a leader may
// quiesce (everything committed and acknowledged by every reachable follower), the final
// heartbeat round that tells followers to stop their clocks, which messages wake a quiesced
// replica, and what waking resets (the election clocks, and any lease: time stood still).
// Plain functions over the Raft instance rather than a class of its own: the state is one flag
// bit and one counter on Raft, and a helper object per replica would cost more than both.
import { append } from './empty.js';
import { NO_ACK } from './progress.js';
import type { Raft } from './raft.js';
import type { Message } from './types.js';

/** Does `m` need a quiesced replica's attention? Late replies to the last heartbeats before
 *  quiescing must not wake the leader, or it would wake and re-quiesce forever. */
export function wakesQuiesced(m: Message): boolean {
  switch (m.type) {
    case 'hb':
      return !m.quiesce;
    case 'hbResp':
      return false;
    case 'appResp':
      return m.reject;
    default:
      return true;
  }
}

/** A leader's tick: quiesce after quiesceAfterTicks idle ticks in a row. */
export function maybeQuiesce(r: Raft): void {
  if (r.cfg.quiesceAfterTicks === 0) return;
  if (!canQuiesce(r)) {
    r.idleTicks = 0;
    return;
  }
  if (++r.idleTicks < r.cfg.quiesceAfterTicks) return;
  quiesceNow(r);
}

/** With quiesceAtOnce: quiesce the moment the last entry is committed and acknowledged by every
 *  reachable follower, not idle ticks later. */
export function quiesceIfCaughtUp(r: Raft): void {
  if (!r.cfg.quiesceAtOnce || r.cfg.quiesceAfterTicks === 0 || r.quiesced || r.role !== 'leader') return;
  if (canQuiesce(r)) quiesceNow(r);
}

/** A follower told by its leader's heartbeat to quiesce. Only a caught-up follower may stop its
 *  clock; the leader checked our match index. */
export function followerQuiesce(r: Raft, commit: number): void {
  if (r.log.lastIndex() === commit) r.quiesced = true;
}

/** Leave quiescence: the clocks restart from zero. */
export function unquiesce(r: Raft): void {
  r.quiesced = false;
  r.idleTicks = 0;
  r.electionElapsed = 0;
  r.silence = 0;
  r.heartbeatElapsed = 0;
  if (r.role === 'leader') {
    // Time stood still while quiesced: no lease survives it. Jumping the tick counter also makes
    // late answers to heartbeats sent before quiescing too old to date a lease.
    r.leaderTicks += r.cfg.electionTicks;
    for (const pr of r.tracker.progress) pr.ackedSeq = NO_ACK;
  }
}

function quiesceNow(r: Raft): void {
  for (const pr of r.tracker.progress) {
    pr.releaseInflights();
    const id = pr.id;
    if (id === r.id || pr.unreachable) continue;
    r.msgsNow = append(r.msgsNow, {
      type: 'hb',
      group: r.group,
      from: r.id,
      to: id,
      term: r.term,
      commit: r.log.committed,
      ctx: '',
      seq: r.leaderTicks,
      quiesce: true,
    });
  }
  r.quiesced = true;
}

function canQuiesce(r: Raft): boolean {
  const log = r.log;
  const last = log.lastIndex();
  if (r.transfer || r.readsPending()) return false;
  if (log.committed !== last || log.unstable.length > 0 || r.pendingConfIndex > log.applied) return false;
  let caughtUpVoters = 0;
  for (const pr of r.tracker.progress) {
    const id = pr.id;
    const caughtUp = id === r.id || pr.match === last;
    if (!caughtUp && !pr.unreachable) return false;
    if (caughtUp && r.tracker.isVoter(id)) caughtUpVoters++;
  }
  return caughtUpVoters >= r.tracker.quorum();
}
