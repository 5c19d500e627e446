// flotilla: public entry point.
export * from './raft/index.js';
export { FlotillaError } from './errors.js';
export {
  startNode,
  FlotillaNode,
  placement,
  clusterIdOf,
  groupOfKey,
  type StartOptions,
  type ProposeOptions,
  type ReadOptions,
} from './runtime/node.js';
export type { DrainOptions, DrainReport, TransferOptions, TransferResult } from './runtime/node.js';
export type { NodeStatus } from './runtime/status.js';
export {
  adminHandler,
  startAdmin,
  closeAdmin,
  type AdminOptions,
  type HttpErrorCode,
} from './http/admin.js';
export type { UserStateMachine, UserStateMachineModule } from './runtime/statemachine.js';
export { RuntimeError, TransferError, type RuntimeErrorCode, type TransferFailReason } from './runtime/errors.js';
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
export { LogStore, GroupStorage, type LogStoreOptions } from './storage/logstore.js';
export { KvStateMachine, encodeKvCommand, decodeKvCommand, type KvCommand, type KvResult } from './storage/kv.js';
export { StorageFailed, CorruptRecord, type StorageError, type StorageErrorCode } from './storage/errors.js';
