// flotilla: public entry point. The runtime (startNode) lands with the multi-group runtime issue.
export * from './raft/index.js';
