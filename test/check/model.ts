// RegisterModel: one key as a register holding a JSON value (null = missing), with read, write,
// compare-and-set and (for the 6.824 key/value oracle histories) append. The search sees states
// only as small integers from a StateTable; here each operation is compiled once into a transition
// on those integers, so a search step is an integer comparison rather than JSON work.

import type { Operation } from './history.js';

/** A register value as canonical JSON text: equal values, equal text. */
export type State = string;

// Object keys are sorted so that a value read back with its keys in another order is still the
// value that was written.
export function canon(v: unknown): State {
  if (v === undefined || v === null) return 'null';
  if (typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canon(o[k])}`)
    .join(',')}}`;
}

/** Interns register values: the same canonical text always gets the same id. */
export class StateTable {
  private readonly ids = new Map<State, number>();
  private readonly texts: State[] = [];
  private readonly values: unknown[] = [];

  id(value: unknown, text: State = canon(value)): number {
    let id = this.ids.get(text);
    if (id === undefined) {
      id = this.texts.length;
      this.ids.set(text, id);
      this.texts.push(text);
      this.values.push(value ?? null);
    }
    return id;
  }

  text(id: number): State {
    return this.texts[id];
  }

  value(id: number): unknown {
    return this.values[id];
  }
}

/**
 * The transition of `op`: from state id `s`, the state id after it, or -1 when `op` cannot happen
 * from `s` with the output it was observed to have.
 */
export function compile(op: Operation, t: StateTable): (s: number) => number {
  switch (op.f) {
    case 'read': {
      const seen = t.id(op.output);
      return (s) => (s === seen ? s : -1);
    }
    case 'write': {
      const w = t.id(op.input);
      return () => w;
    }
    case 'cas': {
      const [expected, next] = op.input as [unknown, unknown];
      const e = t.id(expected);
      const w = t.id(next);
      // Unknown outcome: it took effect iff the compare held where it is placed (placing it where
      // it fails, or last, is the "never happened" case).
      if (op.unknown) return (s) => (s === e ? w : s);
      if (op.output === true) return (s) => (s === e ? w : -1);
      return (s) => (s === e ? -1 : s);
    }
    case 'append': {
      const tail = String(op.input);
      return (s) => {
        const cur = t.value(s);
        const after = `${typeof cur === 'string' ? cur : ''}${tail}`;
        return t.id(after, JSON.stringify(after));
      };
    }
  }
}
