// The linearizability search for one key (Wing & Gong, with Lowe's memoization, as Porcupine does):
// walk the history's call/return events in time order; at a call, try to linearize that operation
// now (the model accepts it) unless the same set of linearized operations with the same state was
// tried before; at a return whose operation is not linearized yet, backtrack. Operations with an
// unknown outcome return at infinity, so they may be placed anywhere after their call or last.

import type { Operation } from './history.js';
import { compile, StateTable, type State } from './model.js';

export type KeyVerdict =
  | { readonly verdict: 'ok' }
  | {
      readonly verdict: 'violation';
      /** The operation that could not be placed after the longest partial linearization found. */
      readonly stuckAt: Operation;
      /** That partial linearization, in order, and the register's state after it. */
      readonly prefix: readonly Operation[];
      readonly stateAfterPrefix: State;
      readonly total: number;
    }
  | { readonly verdict: 'unknown'; readonly steps: number; readonly reason: 'time' | 'memory' };

export interface KeyLimits {
  /** Give up (verdict 'unknown') once Date.now() passes this. */
  readonly deadline: number;
  /** Give up once the memo would hold about this many bytes: a crash for lack of memory is worse than 'unknown'. */
  readonly maxMemoBytes?: number;
}

// Date.now() costs far more than one search step; every 4096 steps keeps the overshoot in milliseconds.
const CLOCK_EVERY = 4096;
// Keeps every memo array well inside typed-array limits whatever the byte budget says.
const MAX_MEMO_ENTRIES = 1 << 26;

/** Check the operations of one key from `initial`. */
export function checkKey(ops: readonly Operation[], initial: unknown, limits: KeyLimits): KeyVerdict {
  const n = ops.length;
  if (n === 0) return { verdict: 'ok' };
  const W = (n + 31) >>> 5;

  // Events: 2i = call of ops[i], 2i+1 = its return. A doubly linked list in time order (calls
  // first at equal times: they count as concurrent), with 0 as the head sentinel, nodes 1..2n.
  const time = (e: number) => (e & 1 ? ops[e >> 1].ret : ops[e >> 1].call);
  const order = Array.from({ length: 2 * n }, (_, e) => e).sort((a, b) => {
    const ta = time(a);
    const tb = time(b);
    // Two infinite returns compare equal here (Infinity - Infinity is NaN).
    const d = ta === tb ? 0 : ta - tb;
    return d || (a & 1) - (b & 1) || a - b;
  });
  const next = new Int32Array(2 * n + 1).fill(-1);
  const prev = new Int32Array(2 * n + 1).fill(-1);
  let last = 0;
  for (const e of order) {
    next[last] = e + 1;
    prev[e + 1] = last;
    last = e + 1;
  }
  const unlinkNode = (x: number) => {
    next[prev[x]] = next[x];
    if (next[x] !== -1) prev[next[x]] = prev[x];
  };
  const relinkNode = (x: number) => {
    next[prev[x]] = x;
    if (next[x] !== -1) prev[next[x]] = x;
  };

  // States are interned as small integers, each operation compiled into a transition on them.
  const table = new StateTable();
  const initialId = table.id(initial);
  const apply = ops.map((op) => compile(op, table));

  // The memo of (linearized set, state) pairs already explored. Like Porcupine: a hash of the set
  // picks a bucket and the bucket is compared exactly, so a hash collision can cost time but never
  // a wrong verdict. The hash is Zobrist (two random 32-bit words per operation, XORed in and out
  // as the set changes, so it costs nothing per step), and the table is open addressing over
  // typed arrays: a Map would box its keys and hold millions of small objects.
  let seed = 0x9e3779b9;
  const rand = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const zobA = new Uint32Array(n).map(rand);
  const zobB = new Uint32Array(n).map(rand);
  let hA = 0;
  let hB = 0;
  const bits = new Uint32Array(W);
  let cap = 1024;
  let memoBits = new Uint32Array(cap * W);
  let memoA = new Uint32Array(cap);
  let memoB = new Uint32Array(cap);
  let memoState = new Int32Array(cap);
  let slots = new Int32Array(2 * cap).fill(-1);
  let mask = 2 * cap - 1;
  let entries = 0;
  const entryBytes = 4 * W + 12 + 8;
  const maxEntries = Math.min(MAX_MEMO_ENTRIES, Math.floor((limits.maxMemoBytes ?? 512 * 2 ** 20) / entryBytes));
  const slotOf = (a: number, s: number) => (a ^ Math.imul(s + 1, 0x9e3779b1)) & mask;
  const grow = () => {
    // Never past the budget: the search gives up once it holds maxEntries.
    cap = Math.max(cap + 1, Math.min(cap * 2, maxEntries));
    const widen = <T extends Uint32Array | Int32Array>(old: T, make: (len: number) => T, per = 1): T => {
      const x = make(cap * per);
      x.set(old);
      return x;
    };
    memoBits = widen(memoBits, (l) => new Uint32Array(l), W);
    memoA = widen(memoA, (l) => new Uint32Array(l));
    memoB = widen(memoB, (l) => new Uint32Array(l));
    memoState = widen(memoState, (l) => new Int32Array(l));
    slots = new Int32Array(2 ** Math.ceil(Math.log2(2 * cap))).fill(-1);
    mask = slots.length - 1;
    for (let e = 0; e < entries; e++) {
      let k = slotOf(memoA[e], memoState[e]);
      while (slots[k] !== -1) k = (k + 1) & mask;
      slots[k] = e;
    }
  };
  /** Adds (bits, s) unless present; false when it was there already. */
  const remember = (s: number): boolean => {
    let k = slotOf(hA, s);
    for (let e = slots[k]; e !== -1; k = (k + 1) & mask, e = slots[k]) {
      if (memoA[e] !== hA >>> 0 || memoB[e] !== hB >>> 0 || memoState[e] !== s) continue;
      let same = true;
      for (let w = 0, o = e * W; w < W; w++) {
        if (memoBits[o + w] !== bits[w]) {
          same = false;
          break;
        }
      }
      if (same) return false;
    }
    if (entries === cap) {
      grow();
      k = slotOf(hA, s);
      while (slots[k] !== -1) k = (k + 1) & mask;
    }
    memoBits.set(bits, entries * W);
    memoA[entries] = hA;
    memoB[entries] = hB;
    memoState[entries] = s;
    slots[k] = entries;
    entries++;
    return true;
  };
  const flip = (i: number) => {
    bits[i >>> 5] ^= 1 << (i & 31);
    hA ^= zobA[i];
    hB ^= zobB[i];
  };

  const stackOp = new Int32Array(n);
  const stackState = new Int32Array(n);
  let depth = 0;
  let state = initialId;
  // The deepest partial linearization at which the search got stuck, for the explanation.
  let stuckDepth = -1;
  let stuck = 0;
  let stuckPrefix = new Int32Array(0);
  let stuckState = initialId;
  let steps = 0;
  let node = next[0];
  while (node !== -1) {
    if (++steps % CLOCK_EVERY === 0 && Date.now() > limits.deadline)
      return { verdict: 'unknown', steps, reason: 'time' };
    const ev = node - 1;
    const i = ev >> 1;
    if ((ev & 1) === 0) {
      const after = apply[i](state);
      if (after !== -1) {
        flip(i);
        if (remember(after)) {
          if (entries >= maxEntries) return { verdict: 'unknown', steps, reason: 'memory' };
          stackOp[depth] = i;
          stackState[depth] = state;
          depth++;
          state = after;
          unlinkNode(2 * i + 1);
          unlinkNode(2 * i + 2);
          if (depth === n) return { verdict: 'ok' };
          node = next[0];
          continue;
        }
        flip(i);
      }
      node = next[node];
      continue;
    }
    // The return of an operation not linearized yet: undo the last choice and try the next one.
    if (depth > stuckDepth) {
      stuckDepth = depth;
      stuck = i;
      stuckPrefix = stackOp.slice(0, depth);
      stuckState = state;
    }
    if (depth === 0) {
      return {
        verdict: 'violation',
        stuckAt: ops[stuck],
        prefix: Array.from(stuckPrefix, (k) => ops[k]),
        stateAfterPrefix: table.text(stuckState),
        total: n,
      };
    }
    depth--;
    const top = stackOp[depth];
    state = stackState[depth];
    flip(top);
    relinkNode(2 * top + 2);
    relinkNode(2 * top + 1);
    node = next[2 * top + 1];
  }
  return { verdict: 'ok' };
}
