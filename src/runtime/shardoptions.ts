// What a shard is built with: its store and outbound `send`, its timing and Raft tuning, and the
// callbacks through which it tells its host what changed (membership, leaders, its brief); and
// how those options become each group's Raft configuration. Apart from shard.ts so that file is
// the loop; shard.ts re-exports the types.
import type { Logger } from 'pino';
import type { RaftConfig } from '../raft/config.js';
import { seededRandom } from '../raft/rand.js';
import type { ConfState, Message, NodeId } from '../raft/types.js';
import type { GroupStorage, LogStore } from '../storage/logstore.js';
import type { SnapshotStreamLimits } from '../storage/snapstream.js';
import type { LeaderChangeKind, ShardBrief } from './protocol.js';
import type { ShardStateMachine } from './statemachine.js';

export type RaftTuning = Partial<Omit<RaftConfig, 'id' | 'group' | 'storage' | 'random' | 'applied'>>;

export interface ShardOptions {
  readonly nodeId: NodeId;
  readonly store: LogStore;
  /** Outbound messages of one loop iteration, grouped by destination node. */
  readonly send: (to: NodeId, msgs: Message[]) => void;
  /** Milliseconds per Raft tick (the heartbeat interval). Default 100. */
  readonly tickMs?: number;
  readonly raft?: RaftTuning;
  /** Entries kept behind the applied index when compacting (for followers slightly behind). */
  readonly retainEntries?: number;
  /** Deadline of a proposal or read; then it rejects with Timeout (outcome unknown for a
   *  proposal: it may still apply). Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Seed for election jitter (each group derives its own). */
  readonly seed?: number;
  readonly logger?: Logger;
  /** The state machine of every group of this shard but group 0, the metadata group, which runs
   *  the built-in KV store whatever this is (smrouter.ts); a KvStateMachine made here serves every
   *  group. Default: the built-in KV store. */
  readonly stateMachine?: (store: LogStore) => ShardStateMachine;
  /** Called when a group's membership changes (a conf entry applied, or a snapshot installed). */
  /** `index`: the log index of the configuration (its conf entry, or the snapshot it came in):
   *  reports of one group are ordered by it. */
  readonly onConf?: (group: number, conf: ConfState, index: number) => void;
  /** A replica learned its group's leader changed (leader '' while unknown), and why: 'transfer'
   *  when a leader transfer started that term's election, 'failover' when a voter of the group
   *  was reported down, else 'election'. */
  readonly onLeader?: (group: number, leader: NodeId, term: number, cause: LeaderChangeKind) => void;
  /** Start in drain mode: every group waits this many extra ticks before campaigning. Default 0. */
  readonly campaignDelay?: number;
  /** The shard's brief (leaders, storage commit p99) changed: called at most every BRIEF_MS
   *  (shardreports.ts) while the shard runs turns, and once when it starts. A quiet shard calls
   *  nothing, so that a reader of the brief (the leader balancer, every round) never wakes its
   *  thread. */
  readonly onBrief?: (brief: ShardBrief) => void;
  /** Stream snapshots beside the Raft traffic (shardsnapshots.ts). Without it a `snap` message
   *  carries the whole state inline (tests that wire shards together directly). */
  readonly snapshotStreams?: {
    /** The staging directory (emptied when the shard opens). */
    readonly dir: string;
    readonly limits: SnapshotStreamLimits;
    /** A stream frame for the shard of `to` that hosts `group`; `bulk` for chunks. */
    readonly send: (to: NodeId, group: number, frame: Uint8Array, bulk: boolean) => void;
  };
}

/** The Raft configuration of group `id` of a shard built with `opts`: the shard's defaults, its
 *  tuning over them, then what is the group's own (election jitter seeded per node and group). */
export function raftConfigOf(
  opts: ShardOptions,
  id: number,
  storage: GroupStorage,
  applied: number,
  readiesInFlight: number,
): RaftConfig {
  return {
    quiesceAfterTicks: 2,
    quiesceAtOnce: !opts.raft?.leaseReads,
    coastHeartbeats: true,
    skipCommitBroadcast: true,
    maxReadiesInFlight: readiesInFlight,
    ...opts.raft,
    id: opts.nodeId,
    group: id,
    storage,
    applied,
    random: seededRandom(hash32(`${opts.seed ?? 0}/${opts.nodeId}/${id}`)),
  };
}

function hash32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
