// flotilla: public entry point.
export * from './raft/index.js';
export { FlotillaError } from './errors.js';
export {
  startNode,
  FlotillaNode,
  placement,
  clusterIdOf,
  groupOfKey,
  defaultWorkers,
  defaultReplication,
  START_DEFAULTS,
  type StartOptions,
  type CallOptions,
  type ProposeOptions,
  type ReadOptions,
  type StatusOptions,
  type CasResult,
  type DeleteResult,
  type Consistency,
  type ClusterNode,
} from './runtime/node.js';
export type { MetaNode, NodeState, NodeLabels } from './runtime/meta/index.js';
export {
  REPLICA_MOVER_DEFAULTS,
  type ReplicaMoverConfig,
  type MoverPlan,
  type MoverStatus,
  type MoveInFlight,
} from './runtime/mover.js';
export type { DrainOptions, DrainReport, TransferOptions, TransferResult } from './runtime/node.js';
export type {
  NodeStatus,
  ClusterBrief,
  GroupView,
  RuntimeStats,
  ShardEntry,
  ShardStatus,
  ShardSummary,
  ShardLoopStats,
  RoutingStats,
  BalancerStats,
} from './runtime/status.js';
export type {
  NodeEvents,
  NodeEventName,
  LeaderChangeEvent,
  PeerEvent,
  TransferEvent,
  DrainEvent,
  WorkerRestartEvent,
  OverloadEvent,
  NodeChangeEvent,
} from './runtime/events.js';
export type { LeaderChangeCause, PlannedCause } from './runtime/protocol.js';
export type { StabilityWarning } from './runtime/advisor.js';
export type { HistogramSnapshot } from './runtime/histogram.js';
export type { RaftTuning } from './runtime/shardoptions.js';
export {
  adminHandler,
  startAdmin,
  closeAdmin,
  type AdminOptions,
  type HttpErrorCode,
} from './http/admin.js';
export type { UserStateMachine, UserStateMachineModule } from './runtime/statemachine.js';
export {
  RuntimeError,
  TransferError,
  AbortError,
  StartOptionsError,
  type StartOptionsProblem,
  type RuntimeErrorCode,
  type TransferFailReason,
} from './runtime/errors.js';
export { NODE_FLAGS } from './runtime/heap.js';
export type {
  BalancerConfig,
  FollowWorkloadConfig,
  HealthConfig,
  Labels,
  LeaderPreference,
  MoveKind,
  Plan,
  PlannedMove,
} from './balancer/balancer.js';
export type { TransportSecurity, TransportTlsOptions, TransportStats } from './transport/index.js';
export { HandshakeError, PeerRemovedError, type HandshakeReason } from './transport/index.js';
export { LogStore, GroupStorage, type LogStoreOptions, type StoreStats } from './storage/logstore.js';
export {
  KvStateMachine,
  encodeKvCommand,
  decodeKvCommand,
  type KvCommand,
  type KvResult,
  type KvApplyResult,
} from './storage/kv.js';
export { StorageFailed, CorruptRecord, type StorageError, type StorageErrorCode } from './storage/errors.js';
