// The messages between a node's main thread and its shard workers (both directions go through a
// PackedPort), the worker's start-up parameters, and the fixed group -> worker hash.
import type { NodeId } from '../raft/types.js';
import type { RuntimeErrorCode, TransferFailReason } from './errors.js';

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
  readonly raft: Record<string, unknown>;
  readonly requestTimeoutMs: number;
  readonly seed: number;
  readonly logLevel?: string;
  readonly noSync?: boolean;
  readonly stateMachine?: { readonly module: string; readonly snapshotEvery?: number };
  /** Extra ticks every group waits before campaigning (the node is draining). */
  readonly campaignDelay?: number;
}

export type ToWorker =
  | { t: 'raft'; b: Uint8Array }
  | { t: 'propose'; id: number; g: number; d: Uint8Array; to: number }
  | { t: 'read'; id: number; g: number; q: unknown; c: Consistency; to: number }
  | { t: 'peers'; w: Record<NodeId, number> }
  | { t: 'up'; p: NodeId }
  | { t: 'campaignDelay'; ticks: number }
  | { t: 'down'; p: NodeId }
  /** Fault injection: slow every durable write of the shard's store (LogStore.setWriteDelay). */
  | { t: 'diskDelay'; ms: number; jitterMs: number }
  | { t: 'status'; id: number; detail: boolean }
  | { t: 'led'; id: number }
  | { t: 'xfer'; id: number; g: number; target: NodeId; to: number; lag: number; draining: NodeId[]; force: boolean; reach: NodeId[] | null }
  | { t: 'verify'; id: number; g: number; to: number }
  | { t: 'awaitLead'; id: number; g: number; to: number }
  | { t: 'create'; id: number; g: number; voters: NodeId[]; learners?: NodeId[] }
  | { t: 'member'; id: number; g: number; type: 'addVoter' | 'addLearner' | 'remove'; node: NodeId; to: number }
  | { t: 'remove'; id: number; g: number }
  | { t: 'stop'; id: number };

export type FromWorker =
  | { t: 'started'; threadId: number; groups: number }
  | { t: 're'; id: number; ok: true; r: unknown }
  | { t: 're'; id: number; ok: false; code: RuntimeErrorCode; msg: string; leader: NodeId; reason?: TransferFailReason }
  | { t: 'out'; to: NodeId; w: number; b: Uint8Array }
  | { t: 'lead'; g: number; l: NodeId; term: number; c: LeaderChangeKind }
  | { t: 'conf'; g: number; voters: NodeId[]; learners: NodeId[] }
  /** The shard's leader count or storage commit p99 changed (Shard.onBrief). */
  | { t: 'brief'; leaders: number; p99: number | null };

/** A request that expects an answer (the id is added by the Shards implementation). */
export type ShardRequest = ToWorker extends infer T ? T extends { id: number } ? Omit<T, 'id'> : never : never;

/** The node's view of its shards, wherever they run: worker threads (workers.ts) or the main
 *  thread itself (inline.ts). */
export interface Shards {
  readonly count: number;
  readonly stats: { restarts: number };
  /** Start every shard; resolves when all are up (rejects if one fails to start). */
  start(): Promise<void>;
  isUp(index: number): boolean;
  /** A request to shard `index`; rejects with Unavailable while that shard is down. */
  call(index: number, req: ShardRequest): Promise<unknown>;
  /** A message that needs no answer (dropped while the shard is down). */
  post(index: number, m: ToWorker): void;
  broadcast(m: ToWorker): void;
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
