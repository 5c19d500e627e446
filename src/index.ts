// flotilla: public entry point.
export * from './raft/index.js';
export { startNode, FlotillaNode, placement, clusterIdOf, groupOfKey, type StartOptions } from './runtime/node.js';
export { RuntimeError, type RuntimeErrorCode } from './runtime/errors.js';
export { LogStore, GroupStorage, StorageFailed, type LogStoreOptions } from './storage/logstore.js';
export { KvStateMachine, encodeKvCommand, decodeKvCommand, type KvCommand, type KvResult } from './storage/kv.js';
export { CorruptRecord } from './storage/codec.js';
