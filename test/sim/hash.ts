// Cheap 53-bit hashing for the checker: entries are compared by hash (their data is unique per
// proposal, so a collision could only hide a bug, never invent one) and state machines by a hash
// chain over the entries they applied.

const M1 = 2654435761;
const M2 = 1597334677;

/** cyrb53-style hash of bytes, seeded; returns an integer < 2^53. */
export function hashBytes(data: Uint8Array, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    h1 = Math.imul(h1 ^ c, M1);
    h2 = Math.imul(h2 ^ c, M2);
  }
  return finish(h1, h2);
}

/** Hash of two 53-bit values (order matters). */
export function mix2(a: number, b: number): number {
  let h1 = 0xdeadbeef ^ (a >>> 0);
  let h2 = 0x41c6ce57 ^ Math.floor(a / 4294967296);
  h1 = Math.imul(h1 ^ (b >>> 0), M1);
  h2 = Math.imul(h2 ^ Math.floor(b / 4294967296), M2);
  h1 = Math.imul(h1 ^ (h2 >>> 7), M2);
  h2 = Math.imul(h2 ^ (h1 >>> 11), M1);
  return finish(h1, h2);
}

function finish(h1: number, h2: number): number {
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Identity of an entry's content (type + data), independent of its position in the log. */
export function entryKey(type: 'normal' | 'conf', data: Uint8Array): number {
  return hashBytes(data, type === 'conf' ? 0x0c0f : 0x0a0a);
}

/** Running fingerprint of a run's trace: a fold of small integers. */
export class Fingerprint {
  private h1 = 0x811c9dc5;
  private h2 = 0x01000193;

  add(x: number): void {
    const lo = x >>> 0;
    const hi = Math.floor(x / 4294967296) >>> 0;
    this.h1 = Math.imul(this.h1 ^ lo, 16777619);
    this.h2 = Math.imul(this.h2 ^ (hi ^ lo), 2246822507);
    this.h2 ^= this.h2 >>> 15;
  }

  addString(s: string): void {
    for (let i = 0; i < s.length; i++) this.add(s.charCodeAt(i));
  }

  hex(): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0');
  }
}
