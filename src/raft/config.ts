// Configuration of one Raft replica, with every default in one place. Times are in ticks: the
// host decides what a tick is (the runtime uses the heartbeat interval, 100 ms by default).
import { RaftError, type NodeId } from './types.js';
import type { Storage } from './storage.js';
import type { RandomSource } from './rand.js';

export interface RaftConfig {
  /** This replica's node id. */
  readonly id: NodeId;
  /** Group id; messages for another group are rejected. */
  readonly group: number;
  readonly storage: Storage;
  /** Injected randomness (election jitter). Use `seededRandom(seed)` for determinism. */
  readonly random: RandomSource;
  /** Ticks between heartbeats. Default 1. */
  readonly heartbeatTicks?: number;
  /** Leader-failure detection: a follower that hears nothing from a leader for a random
   *  duration in [T, 2T) starts an election. Also the CheckQuorum window and the stickiness
   *  window. Default 10 (1 s at 100 ms ticks, as etcd). */
  readonly electionTicks?: number;
  /** Election-round timeout: how long a (pre)candidate waits, randomized in [R, 2R), before
   *  retrying a split vote. Separate from detection so split votes resolve fast without making
   *  failure detection twitchy. Default = electionTicks (etcd behaviour). */
  readonly electionRoundTicks?: number;
  /** Run a PreVote round before incrementing the term. Default true. */
  readonly preVote?: boolean;
  /** Leader steps down without an active quorum within electionTicks; followers that heard from
   *  a leader within electionTicks reject votes. Default true. */
  readonly checkQuorum?: boolean;
  /** Max bytes of entry data per append message (at least one entry is always sent). Default 1 MiB. */
  readonly maxMsgBytes?: number;
  /** Max append messages in flight per follower in replicate state. Default 256. */
  readonly maxInflight?: number;
  /** Max bytes of uncommitted entry data the leader accepts before `Overloaded`. Default 64 MiB. */
  readonly maxUncommittedBytes?: number;
  /** Max bytes of a single proposal. Default 8 MiB. */
  readonly maxProposalBytes?: number;
  /** Allow lease-based reads (requires checkQuorum). Default false. */
  readonly leaseReads?: boolean;
  /** Ticks of an election timeout kept as a safety margin against clock drift for lease reads.
   *  Default 2. */
  readonly leaseMarginTicks?: number;
  /** Idle ticks (nothing to replicate, everyone caught up) after which a leader quiesces the
   *  group. 0 disables quiescence. Default 0 in the core; the runtime enables it. */
  readonly quiesceAfterTicks?: number;
  /** With quiescence on (quiesceAfterTicks > 0), a leader quiesces the group the moment its last
   *  entry is committed and acknowledged by every reachable follower, instead of after idle ticks:
   *  a write to an otherwise idle group then costs its append, its acks and one quiesce
   *  heartbeat per follower, and no ticks. Default false in the core; the runtime enables it
   *  (without lease reads, whose lease a quiesced leader gives up). */
  readonly quiesceAtOnce?: boolean;
  /** The last applied index on restart (the state machine's, persisted by the host). Default 0. */
  readonly applied?: number;
  /** Max bytes of committed entries handed out per Ready. Default 4 MiB. */
  readonly maxCommittedBytesPerReady?: number;
  /** Skip the periodic heartbeat to a follower that got and acknowledged an append since the
   *  last one (it already knows the leader is alive and the commit index). Under load this
   *  removes most heartbeat traffic of thousands of groups. Default false in the core (etcd's
   *  behaviour); the runtime enables it. */
  readonly coastHeartbeats?: boolean;
  /** Do not send followers an empty append when only the commit index moved: they learn it from
   *  the next append, heartbeat or quiesce heartbeat (TiKV's skip_bcast_commit). Saves, per write,
   *  a message to each follower, its Ready and its answer; followers apply up to a heartbeat
   *  later (a follower serving a ReadIndex read is still sent the commit at once). Default false
   *  in the core (etcd's behaviour); the runtime enables it. */
  readonly skipCommitBroadcast?: boolean;
  /** Readies the host may hold at once, handed out and not yet advanced: 1 means each Ready is
   *  persisted before the next is produced; a host that pipelines its writes (starts persisting
   *  the next batch while the previous one's fsync is in flight) sets 2. Default 1. */
  readonly maxReadiesInFlight?: number;
}

export type ResolvedConfig = Required<RaftConfig>;

/** The tunables of a resolved config (everything but the replica's identity, storage, random
 *  source and applied index): identical for most replicas of a node, so one frozen object is
 *  shared by all replicas with the same values (a node with 100,000 replicas keeps a handful). */
export type Tuning = Readonly<Omit<ResolvedConfig, 'id' | 'group' | 'storage' | 'random' | 'applied'>>;

const tunings = new Map<string, Tuning>();

/** The shared Tuning object holding `r`'s tunables. */
export function tuningOf(r: ResolvedConfig): Tuning {
  const { id: _i, group: _g, storage: _s, random: _r, applied: _a, ...t } = r;
  const key = JSON.stringify(t);
  let shared = tunings.get(key);
  if (shared === undefined) {
    // Bounded: configurations that vary without end (tests) just stop being shared.
    if (tunings.size >= 256) tunings.clear();
    shared = Object.freeze(t);
    tunings.set(key, shared);
  }
  return shared;
}

export const RAFT_DEFAULTS = {
  heartbeatTicks: 1,
  electionTicks: 10,
  preVote: true,
  checkQuorum: true,
  maxMsgBytes: 1 << 20,
  maxInflight: 256,
  maxUncommittedBytes: 64 << 20,
  maxProposalBytes: 8 << 20,
  leaseReads: false,
  leaseMarginTicks: 2,
  quiesceAfterTicks: 0,
  quiesceAtOnce: false,
  applied: 0,
  maxCommittedBytesPerReady: 4 << 20,
  coastHeartbeats: false,
  skipCommitBroadcast: false,
  maxReadiesInFlight: 1,
} as const;

export function resolveConfig(c: RaftConfig): ResolvedConfig {
  const electionTicks = c.electionTicks ?? RAFT_DEFAULTS.electionTicks;
  const r: ResolvedConfig = {
    ...RAFT_DEFAULTS,
    electionRoundTicks: electionTicks,
    ...stripUndefined(c),
  } as ResolvedConfig;
  const fail = (field: string, why: string) => {
    throw new RaftError('InvalidConfig', `raft config: ${field} ${why}`);
  };
  if (typeof r.id !== 'string' || r.id.length === 0) fail('id', 'must be a non-empty string');
  if (!Number.isInteger(r.group) || r.group < 0) fail('group', 'must be a non-negative integer');
  for (const f of [
    'heartbeatTicks',
    'electionTicks',
    'electionRoundTicks',
    'maxMsgBytes',
    'maxInflight',
    'maxUncommittedBytes',
    'maxProposalBytes',
    'maxCommittedBytesPerReady',
    'maxReadiesInFlight',
  ] as const) {
    if (!Number.isInteger(r[f]) || r[f] <= 0) fail(f, 'must be a positive integer');
  }
  if (r.electionTicks <= r.heartbeatTicks) fail('electionTicks', 'must be greater than heartbeatTicks');
  if (r.leaseReads && !r.checkQuorum) fail('leaseReads', 'requires checkQuorum');
  if (!Number.isInteger(r.leaseMarginTicks) || r.leaseMarginTicks < 0 || r.leaseMarginTicks >= r.electionTicks) {
    fail('leaseMarginTicks', 'must be an integer in [0, electionTicks)');
  }
  if (!Number.isInteger(r.quiesceAfterTicks) || r.quiesceAfterTicks < 0) fail('quiesceAfterTicks', 'must be >= 0');
  if (typeof r.random !== 'function') fail('random', 'must be a function returning [0,1)');
  return r;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
