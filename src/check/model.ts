// RegisterModel: one key as a register holding a JSON value (null = missing), with read, write,
// compare-and-set and (for the 6.824 key/value oracle histories) append. States are kept as their
// JSON text so that equality and memoization are string comparisons.

import type { Operation } from './history.js';

export type State = string;

export const canon = (v: unknown): State => JSON.stringify(v ?? null);

/** The state after `op` from `s`, or null when `op` cannot happen from `s` with its observed output. */
export function step(s: State, op: Operation): State | null {
  switch (op.f) {
    case 'read':
      return canon(op.output) === s ? s : null;
    case 'write':
      return canon(op.input);
    case 'append': {
      const cur = JSON.parse(s) as string | null;
      return canon(`${cur ?? ''}${String(op.input)}`);
    }
    case 'cas': {
      const [expected, next] = op.input as [unknown, unknown];
      const holds = canon(expected) === s;
      // Unknown outcome: it took effect iff the compare held where it is placed (placing it where
      // it fails, or last, is the "never happened" case).
      if (op.unknown) return holds ? canon(next) : s;
      if (op.output === true) return holds ? canon(next) : null;
      return holds ? null : s;
    }
  }
}
