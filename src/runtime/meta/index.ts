// The cluster metadata (group 0's state machine, design note 8): state, codec and errors.
export * from './clustermeta.js';
export * from './codec.js';
export * from './errors.js';
