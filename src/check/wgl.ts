// The linearizability search for one key (Wing & Gong, with Lowe's memoization, as Porcupine does):
// walk the history's call/return events in time order; at a call, try to linearize that operation
// now (the model accepts it) unless the same set of linearized operations with the same state was
// tried before; at a return whose operation is not linearized yet, backtrack. Operations with an
// unknown outcome return at infinity, so they may be placed anywhere after their call or last.

import type { Operation } from './history.js';
import { step, type State } from './model.js';

export type KeyVerdict =
  | { readonly verdict: 'ok' }
  | { readonly verdict: 'violation'; readonly stuckAt: Operation; readonly linearized: number; readonly total: number }
  | { readonly verdict: 'unknown'; readonly steps: number };

/** Check the operations of one key from `initial`; gives up with 'unknown' at `deadline` (Date.now()). */
export function checkKey(ops: readonly Operation[], initial: State, deadline: number): KeyVerdict {
  const n = ops.length;
  if (n === 0) return { verdict: 'ok' };
  // Events: 2i = call of ops[i], 2i+1 = its return. A doubly linked list in time order (calls
  // first at equal times: they count as concurrent), with 0 as the head sentinel, nodes 1..2n.
  const order = Array.from({ length: 2 * n }, (_, e) => e).sort((a, b) => {
    const ta = a & 1 ? ops[a >> 1].ret : ops[a >> 1].call;
    const tb = b & 1 ? ops[b >> 1].ret : ops[b >> 1].call;
    return ta - tb || (a & 1) - (b & 1) || a - b;
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
  const words = new Uint32Array((n + 31) >>> 5);
  const seen = new Set<string>();
  const stack: { op: number; state: State }[] = [];
  let state = initial;
  let best = 0;
  let stuck = 0;
  let steps = 0;
  let node = next[0];
  while (node !== -1) {
    if ((++steps & 4095) === 0 && Date.now() > deadline) return { verdict: 'unknown', steps };
    const ev = node - 1;
    const i = ev >> 1;
    if ((ev & 1) === 0) {
      const after = step(state, ops[i]);
      if (after !== null) {
        words[i >>> 5] |= 1 << (i & 31);
        const memo = `${words.join(',')}|${after}`;
        if (!seen.has(memo)) {
          seen.add(memo);
          stack.push({ op: i, state });
          state = after;
          unlinkNode(2 * i + 1);
          unlinkNode(2 * i + 2);
          if (stack.length > best) best = stack.length;
          if (stack.length === n) return { verdict: 'ok' };
          node = next[0];
          continue;
        }
        words[i >>> 5] &= ~(1 << (i & 31));
      }
      node = next[node];
      continue;
    }
    // A return of an operation not linearized yet: undo the last choice and try the next one.
    if (stack.length === best) stuck = i;
    const top = stack.pop();
    if (!top) return { verdict: 'violation', stuckAt: ops[stuck], linearized: best, total: n };
    state = top.state;
    words[top.op >>> 5] &= ~(1 << (top.op & 31));
    relinkNode(2 * top.op + 2);
    relinkNode(2 * top.op + 1);
    node = next[2 * top.op + 1];
  }
  return { verdict: 'ok' };
}
