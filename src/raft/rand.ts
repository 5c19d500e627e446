// Seeded pseudo-random source: the only randomness the core uses (election jitter), injected so
// that a simulation run is reproducible from its seed.

/** Returns a float in [0, 1). */
export type RandomSource = () => number;

/** mulberry32: tiny, fast, good enough for jitter and for driving simulations. */
export function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [lo, hi). */
export function randInt(rand: RandomSource, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo));
}
