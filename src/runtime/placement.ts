// Where things live, computed alike on every node without coordination: the replicas of each
// bootstrapped group, the cluster id a data dir belongs to, the group of a key, and the default
// number of worker threads.
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { NodeId } from '../raft/types.js';

/** Worker threads when `workers` is not given: none (the shard on the main thread) on machines
 *  with at most 2 cores, where a thread buys no parallelism worth its hops; else one per core. */
export function defaultWorkers(cores = availableParallelism()): number {
  return cores <= 2 ? 0 : cores;
}

/** Replicas of each group: `replication` consecutive nodes (sorted by id) starting at a
 *  group-dependent offset, so leaders and load spread evenly and every node computes the same. */
export function placement(nodes: readonly NodeId[], groups: number, replication: number): Map<number, NodeId[]> {
  const sorted = [...nodes].sort();
  const out = new Map<number, NodeId[]>();
  for (let g = 1; g <= groups; g++) {
    const members: NodeId[] = [];
    for (let k = 0; k < replication; k++) members.push(sorted[(g - 1 + k) % sorted.length]);
    out.set(g, members.sort());
  }
  return out;
}

/** Derived from the bootstrap configuration: nodes restarted with another one refuse to start. */
export function clusterIdOf(nodes: readonly NodeId[], groups: number, replication: number): string {
  const h = createHash('sha256')
    .update(JSON.stringify({ nodes: [...nodes].sort(), groups, replication }))
    .digest('hex');
  return h.slice(0, 16);
}

/** Group of a key: a stable hash of its bytes. */
export function groupOfKey(key: Uint8Array, groups: number): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i], 16777619);
  return ((h >>> 0) % groups) + 1;
}
