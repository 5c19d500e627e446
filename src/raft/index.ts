// Public surface of the Raft core.
export * from './types.js';
export { RAFT_DEFAULTS, resolveConfig, type RaftConfig, type ResolvedConfig } from './config.js';
export { seededRandom, randInt, type RandomSource } from './rand.js';
export { MemoryStorage, EMPTY_CONF, EMPTY_HARD_STATE, type Storage, type InitialState } from './storage.js';
export { encodeConfChange, decodeConfChange, validateConfChange, applyConfChange, notAMember } from './confchange.js';
export { validateMessage, isMessage } from './validate.js';
export type { RaftStatus, PeerStatus, StepResult } from './raft.js';
export { RaftNode } from './node.js';
export type { RaftView, LogView, TrackerView, ProgressView } from './view.js';
