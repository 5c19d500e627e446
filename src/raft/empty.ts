// Shared empty arrays. A node hosts up to 100,000 replicas and most of them sit idle, so a field
// that is an empty list most of the time (an outbox, a queue) points at one shared empty array
// instead of owning one (32 B, plus a backing store once it has held something), and gets an
// array of its own on the first append.

/** The shared empty array. Frozen: a push that bypasses `append` throws instead of leaking an
 *  element into every replica. (`never[]` is assignable to any `T[]`, so no cast is needed.) */
export const NOTHING: never[] = [];
Object.freeze(NOTHING);

/** `xs` with `x` appended: a fresh array when `xs` is empty (it may be NOTHING), else `xs` itself.
 *  Store the result back: `this.out = append(this.out, x)`. */
export function append<T>(xs: T[], x: T): T[] {
  if (xs.length === 0) return [x];
  xs.push(x);
  return xs;
}

/** Interned id lists: equal lists share one frozen array (replicas of the same membership — most
 *  groups of a node — hold one copy). Bounded: memberships that vary without end (tests) just
 *  stop being shared. */
const interned = new Map<string, readonly string[]>();

export function internIds(ids: readonly string[]): readonly string[] {
  if (ids.length === 0) return NOTHING;
  const key = JSON.stringify(ids);
  let shared = interned.get(key);
  if (shared === undefined) {
    if (interned.size >= 1024) interned.clear();
    shared = Object.freeze(ids.slice());
    interned.set(key, shared);
  }
  return shared;
}
