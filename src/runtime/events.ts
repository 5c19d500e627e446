// The events a FlotillaNode emits (it is a node:events EventEmitter typed by NodeEvents), and the
// narrow sink through which the node's concerns emit them. Every event carries one object, so
// fields can be added without breaking listeners. Emitters ask `wants(name)` before building an
// event: with 100,000 groups, leader changes come in bursts of thousands, and a node nobody
// listens to must not pay for objects nobody reads.
import type { NodeId } from '../raft/types.js';
import type { RuntimeErrorCode, TransferFailReason } from './errors.js';
import type { LeaderChangeCause, PlannedCause } from './protocol.js';
import type { NodeState } from './meta/index.js';

/** A local replica saw its group's leader change (once per replica, so once per node hosting it). */
export interface LeaderChangeEvent {
  readonly group: number;
  readonly leader: NodeId;
  readonly term: number;
  /** 'transfer', 'drain' or 'balancer' for planned moves (by who planned them, as far as this node
   *  knows), 'failover' when a voter of the group was reported down, else 'election'. */
  readonly cause: LeaderChangeCause;
}

/** A node connected or lost its link to this node. */
export interface PeerEvent {
  readonly peer: NodeId;
}

/** The outcome of a leader transfer requested on this node (transferLeader, a drain, the balancer). */
export interface TransferEvent {
  readonly group: number;
  /** The leader that handed over ('' when a failed transfer did not learn it). */
  readonly from: NodeId;
  readonly to: NodeId;
  readonly ok: boolean;
  /** 'completed', or why it failed: a TransferFailReason or the error code. */
  readonly reason: 'completed' | TransferFailReason | RuntimeErrorCode;
  readonly cause: PlannedCause;
  readonly ms: number;
}

/** Progress of a drain of this node: after each group's transfer settles, and once at the end. */
export interface DrainEvent {
  readonly node: NodeId;
  readonly moved: number;
  readonly failed: number;
  /** Groups found led here and not settled yet (more may be found before the end). */
  readonly remaining: number;
  readonly done: boolean;
}

/** A shard's worker thread died; the node restarts the shard from disk after `restartInMs`. */
export interface WorkerRestartEvent {
  readonly worker: number;
  readonly reason: string;
  readonly restartInMs: number;
}

/** Admission control refused a proposal (it failed with Overloaded and was never proposed). */
export interface OverloadEvent {
  readonly shed: 'proposal';
  readonly bytes: number;
  /** The node the proposal was made on (this node, or the peer that forwarded it here). */
  readonly origin: NodeId;
  /** The limit that refused it. */
  readonly limit: 'maxPendingProposals' | 'maxPendingBytes';
  readonly pendingProposals: number;
  readonly pendingBytes: number;
}

/** A node joined the cluster or changed state in the cluster record (as this node learned it):
 *  'active' for a join (or a cancelled decommission), 'decommissioning', 'removed'. */
export interface NodeChangeEvent {
  readonly node: NodeId;
  readonly state: NodeState;
  /** What this node knew of it before (null: not known, a join). */
  readonly previous: NodeState | null;
  readonly address: string;
}

/** FlotillaNode's events: `node.on('leaderChange', (e) => ...)`. */
export interface NodeEvents {
  leaderChange: [LeaderChangeEvent];
  peerUp: [PeerEvent];
  peerDown: [PeerEvent];
  transfer: [TransferEvent];
  drain: [DrainEvent];
  workerRestart: [WorkerRestartEvent];
  overload: [OverloadEvent];
  nodeChange: [NodeChangeEvent];
}

export type NodeEventName = keyof NodeEvents;

/** How the node's concerns emit: check `wants` first, build the event only then. */
export interface NodeEventSink {
  wants(name: NodeEventName): boolean;
  emit<K extends NodeEventName>(name: K, ...args: NodeEvents[K]): void;
}
