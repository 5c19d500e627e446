// A user state machine for tests: named counters. `add` adds; `addThenFail` adds, then throws
// (a partial change, the same on every replica); `fail` throws at once; `symbol` returns what
// msgpack cannot encode. A query `{ all: true }` answers every counter and how many commands were
// applied; `{ boom: message }` throws. close() appends the group to the file named by
// FLOTILLA_TEST_CLOSED (worker threads inherit the environment).
import { appendFileSync } from 'node:fs';
import type { UserStateMachine } from '../../src/index.js';

type Command =
  | { op: 'add'; key: string; n: number }
  | { op: 'addThenFail'; key: string; n: number; why: string }
  | { op: 'fail'; why: string }
  | { op: 'symbol' };
type Query = { all: true } | { boom: string };

export function createStateMachine(group: number): UserStateMachine {
  let counters: Record<string, number> = {};
  let applied = 0;
  const add = (key: string, n: number) => {
    counters[key] = (counters[key] ?? 0) + n;
    return counters[key];
  };
  return {
    apply(command) {
      const c = command as Command;
      applied++;
      switch (c.op) {
        case 'add':
          return add(c.key, c.n);
        case 'addThenFail':
          add(c.key, c.n);
          throw new Error(c.why);
        case 'fail':
          throw new RangeError(c.why);
        case 'symbol':
          return { s: Symbol('not encodable') };
      }
    },
    query(q) {
      const query = q as Query;
      if ('boom' in query) throw new Error(query.boom);
      return { counters: { ...counters }, applied };
    },
    snapshot: () => ({ counters, applied }),
    restore(state) {
      ({ counters, applied } = state as { counters: Record<string, number>; applied: number });
    },
    close() {
      const file = process.env.FLOTILLA_TEST_CLOSED;
      if (file) appendFileSync(file, `${group}\n`);
    },
  };
}
