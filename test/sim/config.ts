// Per-seed cluster shape and Raft tunables. The seed picks them so that a batch of seeds covers
// small windows (maxInflight 1, tiny messages), quiescence, lease reads, PreVote/CheckQuorum on
// and off, and 1-, 3- and 5-voter groups, some with a learner.
import type { ConfState, NodeId } from '../../src/raft/types.js';
import type { RaftOptions } from './host.js';
import type { Rng } from './rng.js';

export interface ClusterConfig {
  readonly conf: ConfState;
  /** Storage membership of nodes added after bootstrap. */
  readonly joinConf: ConfState;
  readonly raft: RaftOptions & { readonly electionTicks: number; readonly heartbeatTicks: number };
}

export function nodeId(n: number): NodeId {
  return `n${n}`;
}

export function chooseConfig(rng: Rng): ClusterConfig {
  const voters = rng.weighted({ one: 15, three: 45, five: 40 });
  const nv = voters === 'one' ? 1 : voters === 'three' ? 3 : 5;
  const learner = rng.chance(0.3);
  const ids = Array.from({ length: nv + (learner ? 1 : 0) }, (_, i) => nodeId(i + 1));
  const conf: ConfState = { voters: ids.slice(0, nv), learners: ids.slice(nv) };
  const electionTicks = rng.int(5, 12);
  const heartbeatTicks = rng.int(1, Math.max(1, Math.min(3, Math.floor(electionTicks / 3))));
  const checkQuorum = rng.chance(0.75);
  return {
    conf,
    joinConf: rng.chance(0.5) ? conf : { voters: [], learners: [] },
    raft: {
      electionTicks,
      heartbeatTicks,
      electionRoundTicks: rng.chance(0.5) ? undefined : rng.int(Math.max(2, heartbeatTicks + 1), electionTicks),
      preVote: rng.chance(0.75),
      checkQuorum,
      leaseReads: checkQuorum && rng.chance(0.25),
      quiesceAfterTicks: rng.chance(0.3) ? rng.int(2, 15) : 0,
      maxMsgBytes: rng.chance(0.5) ? 1 << 20 : rng.int(30, 200),
      maxInflight: rng.chance(0.5) ? 256 : rng.int(1, 6),
      maxUncommittedBytes: rng.chance(0.85) ? 64 << 20 : rng.int(50, 400),
      maxCommittedBytesPerReady: rng.chance(0.7) ? 4 << 20 : rng.int(20, 200),
      coastHeartbeats: rng.chance(0.5),
      skipCommitBroadcast: rng.chance(0.5),
      maxReadiesInFlight: rng.chance(0.5) ? 2 : 1,
      quiesceAtOnce: rng.chance(0.5),
    },
  };
}

export function describeConfig(c: ClusterConfig): string {
  const r = c.raft;
  return (
    `voters=[${c.conf.voters.join(',')}] learners=[${c.conf.learners.join(',')}] join=${c.joinConf.voters.length > 0 ? 'bootstrap' : 'empty'} election=${r.electionTicks} ` +
    `heartbeat=${r.heartbeatTicks} round=${r.electionRoundTicks ?? '-'} preVote=${r.preVote} checkQuorum=${r.checkQuorum} ` +
    `lease=${r.leaseReads} quiesce=${r.quiesceAfterTicks} maxMsg=${r.maxMsgBytes} inflight=${r.maxInflight} ` +
    `maxUncommitted=${r.maxUncommittedBytes} perReady=${r.maxCommittedBytesPerReady} coast=${r.coastHeartbeats} skipBcastCommit=${r.skipCommitBroadcast} pipeline=${r.maxReadiesInFlight} quiesceAtOnce=${r.quiesceAtOnce}`
  );
}
