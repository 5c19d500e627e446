// The messages between a node's main thread and its shards (through a PackedPort when a shard
// runs on a worker thread, as function calls when it runs inline): requests, each typed with its
// answer (ShardCalls), notices that need no answer, and what a shard reports back (FromWorker).
// Also the worker's start-up parameters and the fixed group -> worker hash.
import type { ConfState, NodeId } from '../raft/types.js';
import type { RuntimeErrorCode, TransferFailReason } from './errors.js';
import type { LedGroup, TransferDone } from './group.js';
import type { Leading } from './shardtransfers.js';
import type { RaftTuning } from './shardoptions.js';
import type { ShardStatus } from './status.js';
import type { SnapshotStreamLimits } from '../storage/snapstream.js';
import type { WorkerLogRecord } from './workerlog.js';

export type Consistency = 'linearizable' | 'lease' | 'stale';

/** Why a replica saw its group's leader change, as a shard can tell: a leader transfer started
 *  the election, a voter of the group was reported down, or neither. */
export type LeaderChangeKind = 'transfer' | 'failover' | 'election';
/** Who planned a leader transfer: an operator or API caller, a drain, or the balancer. */
export type PlannedCause = 'transfer' | 'drain' | 'balancer';
export const PLANNED_CAUSES: readonly string[] = ['transfer', 'drain', 'balancer'] satisfies PlannedCause[];
/** ... and as the node reports it: planned transfers by who asked, unplanned ones as above. */
export type LeaderChangeCause = PlannedCause | 'failover' | 'election';

/** How far back a shard's storage commit p99 looks; a pushed one stands this long at most. */
export const COMMIT_P99_WINDOW_MS = 60_000;

/** What a leader balancer round needs of a shard every time (see LeaderBalancer.round): pushed
 *  by the shard when it changes, so that reading it never wakes a worker thread. */
export interface ShardBrief {
  readonly leaders: number;
  /** Storage commit p99 of the last minute, ms (null: fewer than 20 commits in it). */
  readonly commitP99Ms: number | null;
}

export interface WorkerInit {
  readonly index: number;
  readonly nodeId: NodeId;
  /** This worker's LMDB environment directory. */
  readonly dataDir: string;
  /** Groups placed on this worker at bootstrap: [group, voters]. Created when absent. */
  readonly groups: [number, NodeId[]][];
  /** Worker count of each peer node, as known when this worker starts. */
  readonly peerWorkers: Record<NodeId, number>;
  readonly tickMs: number;
  readonly raft: RaftTuning;
  readonly requestTimeoutMs: number;
  readonly seed: number;
  readonly logLevel?: string;
  readonly noSync?: boolean;
  readonly stateMachine?: { readonly module: string; readonly snapshotEvery?: number };
  /** Extra ticks every group waits before campaigning (the node is draining). */
  readonly campaignDelay?: number;
  /** Snapshot stream limits (validated by the node). */
  readonly snapshotStream: SnapshotStreamLimits;
}

/** A membership change of one group, as a shard's leader proposes it. */
export type MemberChange = 'addVoter' | 'addLearner' | 'remove';

/** A group's configuration as one replica has applied it: every configuration entry up to log
 *  index `index`. Reports from different replicas are ordered by `index`, whatever order they
 *  arrive in. */
export interface GroupConf extends ConfState {
  readonly index: number;
}

/** The requests a shard answers, each with its request fields and what its answer resolves with.
 *  `timeoutMs`: how long the shard waits for the outcome before failing with Timeout. */
export interface ShardCalls {
  /** Entry data (session.ts encodeCommand); answers the state machine's result once applied. */
  propose: { request: { group: number; data: Uint8Array; timeoutMs: number }; reply: unknown };
  /** A state machine query; answers its result. */
  read: { request: { group: number; query: unknown; consistency: Consistency; timeoutMs: number }; reply: unknown };
  status: { request: { detail: boolean }; reply: ShardStatus };
  /** The groups this shard leads (for the balancer). */
  led: { request: NoFields; reply: LedGroup[] };
  /** Hand leadership of a group this shard leads to `target` (see Shard.transfer). */
  transfer: {
    request: {
      group: number;
      target: NodeId;
      timeoutMs: number;
      maxLagEntries: number;
      draining: NodeId[];
      force: boolean;
      reach: NodeId[] | null;
    };
    reply: TransferDone;
  };
  /** Confirm this replica leads and serves (a ReadIndex round). */
  verify: { request: { group: number; timeoutMs: number }; reply: { term: number } };
  /** Wait until this replica leads with an entry of its term committed. */
  awaitLead: { request: { group: number; timeoutMs: number }; reply: Leading };
  /** Host a replica of a group (a no-op when it already does). */
  create: { request: { group: number; voters: NodeId[]; learners?: NodeId[] }; reply: null };
  /** Propose a membership change on the group's leader; answers the new membership. */
  member: { request: { group: number; change: MemberChange; node: NodeId; timeoutMs: number }; reply: GroupConf };
  /** This replica's configuration of the group, as applied so far. */
  conf: { request: { group: number }; reply: GroupConf };
  /** The groups this shard holds a replica of. */
  hosted: { request: NoFields; reply: number[] };
  /** Delete this replica of a group (a no-op when there is none). */
  remove: { request: { group: number }; reply: null };
  /** Stop the shard (store closed) before its thread ends. */
  stop: { request: NoFields; reply: null };
}
type NoFields = Record<string, never>;
export type CallKind = keyof ShardCalls;
export type CallRequest<K extends CallKind> = ShardCalls[K]['request'];
export type CallReply<K extends CallKind> = ShardCalls[K]['reply'];

/** A request as it crosses to a worker: its kind, the id its answer carries, its fields. */
export type CallMessage<K extends CallKind = CallKind> = {
  [P in K]: { kind: P; id: number; request: CallRequest<P> };
}[K];

/** A request to the shard that hosts `group` (the node picks which). */
export type GroupCall = <K extends CallKind>(group: number, kind: K, request: CallRequest<K>) => Promise<CallReply<K>>;

/** Messages to a shard that need no answer. */
export type ShardNotice =
  /** A packed batch of Raft messages from another node (the main thread relays it undecoded). */
  | { kind: 'raft'; batch: Uint8Array }
  /** Worker counts of peer nodes (where their shards' Raft batches go). */
  | { kind: 'peers'; workers: Record<NodeId, number> }
  | { kind: 'peerUp'; peer: NodeId }
  | { kind: 'peerDown'; peer: NodeId }
  | { kind: 'campaignDelay'; ticks: number }
  /** Fault injection: slow every durable write of the shard's store (LogStore.setWriteDelay). */
  | { kind: 'diskDelay'; ms: number; jitterMs: number }
  /** A snapshot stream frame from node `from` (relayed undecoded). */
  | { kind: 'snap'; from: NodeId; frame: Uint8Array };

export type ToWorker = ShardNotice | CallMessage;

/** The answer to a request: what its handler resolved with, or its error. */
export type CallAnswer =
  | { kind: 'reply'; id: number; ok: true; result: unknown }
  | {
      kind: 'reply';
      id: number;
      ok: false;
      code: RuntimeErrorCode;
      message: string;
      leader: NodeId;
      reason?: TransferFailReason;
    };

export type FromWorker =
  | { kind: 'started'; threadId: number; groups: number }
  | CallAnswer
  /** Raft bytes for worker `worker` of node `target`. */
  | { kind: 'out'; target: NodeId; worker: number; batch: Uint8Array }
  /** A snapshot stream frame for worker `worker` of node `target`; `bulk` for chunks (sent only
   *  behind Raft traffic). */
  | { kind: 'snapOut'; target: NodeId; worker: number; frame: Uint8Array; bulk: boolean }
  | { kind: 'leader'; group: number; leader: NodeId; term: number; cause: LeaderChangeKind }
  | { kind: 'conf'; group: number; voters: NodeId[]; learners: NodeId[]; index: number }
  /** The shard's leader count or storage commit p99 changed (Shard.onBrief). */
  | { kind: 'brief'; leaders: number; commitP99Ms: number | null }
  /** A log line of the shard's thread, for the node's logger (workerlog.ts). */
  | WorkerLogRecord;

/** The node's view of its shards, wherever they run: worker threads (workers.ts) or the main
 *  thread itself (inline.ts). */
export interface Shards {
  readonly count: number;
  readonly stats: { restarts: number };
  /** Start every shard; resolves when all are up (rejects if one fails to start). */
  start(): Promise<void>;
  isUp(index: number): boolean;
  /** A request to shard `index`; rejects with Unavailable while that shard is down. */
  call<K extends CallKind>(index: number, kind: K, request: CallRequest<K>): Promise<CallReply<K>>;
  /** A message that needs no answer (dropped while the shard is down). */
  post(index: number, m: ShardNotice): void;
  broadcast(m: ShardNotice): void;
  /** Fault injection: make shard `index` fail as if its thread crashed. */
  crash(index: number): Promise<void>;
  stop(): Promise<void>;
}

/** The worker (of `workers`) that hosts `group` on any node: a fixed integer hash, so that every
 *  node agrees without coordination and consecutive group ids spread over workers. */
export function workerOf(group: number, workers: number): number {
  if (workers <= 1) return 0;
  let h = Math.imul(group ^ (group >>> 16), 0x45d9f3b);
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  h ^= h >>> 16;
  return (h >>> 0) % workers;
}
