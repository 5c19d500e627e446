// The shapes of a node's status report (FlotillaNode.status, GET /status) and of what each shard
// contributes to it (the answer to the worker protocol's 'status' request). Types only: the
// figures are kept where they are counted (the shard loop, its store, the transport, ...).
import type { RaftStatus } from '../raft/raft.js';
import type { NodeId } from '../raft/types.js';
import type { StoreStats } from '../storage/logstore.js';
import type { TransportStats } from '../transport/index.js';
import type { LeaderBalancer } from '../balancer/balancer.js';
import type { HistogramSnapshot } from './histogram.js';
import type { LeaderChangeCause } from './protocol.js';
import type { Shard } from './shard.js';
import type { ShardHost } from './shardhost.js';
import type { SnapshotStreamStats } from './shardsnapshots.js';

/** A shard loop's counters and time per phase (Shard.stats). */
export type ShardLoopStats = Shard['stats'];
/** Raft batches a shard sent and received, and the messages it dropped (ShardHost.stats). */
export type RoutingStats = ShardHost['stats'];
/** The leader balancer's counters (LeaderBalancer.stats). */
export type BalancerStats = LeaderBalancer['stats'];

/** Counts of a shard from cheap per-group fields: groups, leaders, quiesced, and (up to a cap)
 *  the groups whose voter count is even. */
export interface ShardSummary {
  readonly groups: number;
  readonly leaders: number;
  readonly quiesced: number;
  readonly evenVoterCount: number;
  readonly evenVoters: number[];
}

/** One group's replica as an operator reads it before a transfer: Raft status, work served as
 *  leader, and whether this node reaches a quorum of the group's voters. */
export interface GroupView extends RaftStatus {
  readonly served: { writes: number; bytes: number; reads: number };
  readonly hasQuorum: boolean;
}

/** What one shard reports (ShardHost.status). */
export interface ShardStatus extends ShardSummary {
  readonly loop: ShardLoopStats;
  readonly store: StoreStats;
  readonly routing: RoutingStats;
  /** Snapshot streams of the shard (null: snapshots travel inline). */
  readonly snapshots: SnapshotStreamStats | null;
  /** Storage commit p99 of the last minute, ms (null without commits). */
  readonly commitP99Ms: number | null;
  readonly histograms: {
    readonly fsync: HistogramSnapshot;
    readonly commit: HistogramSnapshot;
    readonly apply: HistogramSnapshot;
  };
  /** With `detail`: every group of the shard. */
  readonly perGroup?: GroupView[];
}

/** A shard in the node's report: its status, or why it could not answer. */
export type ShardEntry =
  | ({ readonly worker: number; readonly up: true } & Omit<ShardStatus, 'perGroup'>)
  | {
      readonly worker: number;
      readonly up: false;
      readonly error: string;
      readonly groups: 0;
      readonly leaders: 0;
      readonly quiesced: 0;
    };

/** The node's request counters (FlotillaNode.stats). */
export interface RuntimeStats {
  forwarded: number;
  retries: number;
  relayedIn: number;
  relayedOut: number;
  dropsNoWorker: number;
  dropsBadMessage: number;
  proposals: number;
  reads: number;
  notLeader: number;
  leaderChanges: number;
  overloaded: number;
}

/** FlotillaNode.status(). */
export interface NodeStatus {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly labels: Readonly<{ zone?: string; rack?: string }>;
  readonly uptimeMs: number;
  readonly workers: number;
  readonly workerRestarts: number;
  readonly groups: number;
  readonly leaders: number;
  readonly quiesced: number;
  readonly draining: boolean;
  readonly drainingPeers: NodeId[];
  /** Transfers this node requested, by outcome ('completed' or the failure reason). */
  readonly transfers: Record<string, number>;
  /** Absent until the balancer is set up. */
  readonly balancer: BalancerStats | undefined;
  /** The balancer's health policy holds this node's storage slow (it sheds leaderships). */
  readonly slowStorage: boolean;
  readonly leaderChanges: Record<LeaderChangeCause, number>;
  readonly pending: { readonly proposals: number; readonly bytes: number };
  readonly eventLoop: { readonly p99Ms: number; readonly maxMs: number };
  /** Peers connected now. */
  readonly peers: NodeId[];
  readonly runtime: RuntimeStats;
  readonly transport: TransportStats;
  readonly shards: ShardEntry[];
  /** With `detail`: every local replica. */
  readonly perGroup: GroupView[] | undefined;
  /** The cluster's nodes and replica moves as this node sees them. */
  readonly cluster: ClusterBrief;
}

/** NodeStatus.cluster: nodes by state (from the cluster record; before it exists, the configured
 *  nodes, all active) and the replica mover here (it moves only on group 0's leader). */
export interface ClusterBrief {
  readonly nodes: { readonly active: number; readonly decommissioning: number; readonly removed: number };
  /** This node runs the mover (it leads group 0). */
  readonly moverHere: boolean;
  /** Moves in flight here. */
  readonly movesInFlight: number;
  /** Per decommissioning node, the replicas still on it (as the mover last saw). */
  readonly decommissioning: Readonly<Record<NodeId, number>>;
  /** This node was removed from the cluster. */
  readonly removed: boolean;
}
