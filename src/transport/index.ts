// The node-to-node transport: frame codec, handshake and the TCP Transport.
export * from './codec.js';
export * from './handshake.js';
export * from './transport.js';
export * from './raftbatch.js';
export * from './errors.js';
