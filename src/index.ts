// flotilla: public entry point.
export * from './raft/index.js';
export { startNode, FlotillaNode, placement, clusterIdOf, groupOfKey, type StartOptions, type ProposeOptions, type ReadOptions } from './runtime/node.js';
export type { UserStateMachine, UserStateMachineModule } from './runtime/statemachine.js';
export { RuntimeError, type RuntimeErrorCode } from './runtime/errors.js';
export { NODE_FLAGS } from './runtime/heap.js';
export { LogStore, GroupStorage, type LogStoreOptions } from './storage/logstore.js';
export { KvStateMachine, encodeKvCommand, decodeKvCommand, type KvCommand, type KvResult } from './storage/kv.js';
export { StorageFailed, CorruptRecord } from './storage/errors.js';
