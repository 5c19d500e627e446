// Deterministic randomness for the simulator. One seed drives everything: the simulator draws from
// one stream, and each node incarnation gets its own stream derived from (seed, node, incarnation)
// so that adding a draw in the driver does not shift the nodes' election jitter and vice versa.
import { seededRandom, type RandomSource } from '../../src/raft/rand.js';

/** Mixes integers into a well-spread 32-bit seed (murmur3 finalizer). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

export class Rng {
  private readonly next: RandomSource;

  constructor(seed: number) {
    this.next = seededRandom(mixSeed(seed, 0x51));
  }

  /** Float in [0, 1). */
  float(): number {
    return this.next();
  }

  /** Integer in [lo, hi] (inclusive both ends: easier to read at call sites). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from empty list');
    return xs[Math.floor(this.next() * xs.length)];
  }

  /** Picks a key with probability proportional to its weight (weights <= 0 are skipped). */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    let total = 0;
    for (const k in weights) if (weights[k] > 0) total += weights[k];
    let r = this.next() * total;
    let last: K | null = null;
    for (const k in weights) {
      if (weights[k] <= 0) continue;
      last = k;
      r -= weights[k];
      if (r < 0) return k;
    }
    if (last === null) throw new Error('weighted pick with no positive weight');
    return last;
  }

  /** A random subset (each element kept with probability p), in input order. */
  subset<T>(xs: readonly T[], p: number): T[] {
    return xs.filter(() => this.next() < p);
  }
}
