// The node-to-node transport: frame codec, handshake, the TCP Transport and the joiner's side.
export * from './codec.js';
export * from './handshake.js';
export * from './transport.js';
export * from './raftbatch.js';
export * from './errors.js';
export * from './join.js';
