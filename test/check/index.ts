// checkHistory: P-compositionality (each key is an independent register, so the history is
// linearizable iff every key's sub-history is) over the per-key search, with one time budget for
// the whole history, and the explanation a person needs to start from when it is not.

import { parseHistory, HistoryError, type Operation } from './history.js';
import { checkKey } from './wgl.js';

export { parseHistory, HistoryError, type Operation };
export type { CheckError, CheckErrorCode } from './errors.js';

export interface CheckOptions {
  /** Time budget for the whole history (default 60 s); past it the verdict is 'unknown'. */
  readonly timeoutMs?: number;
  /** Memo budget per key (default 512 MiB); past it the verdict is 'unknown'. */
  readonly maxMemoBytes?: number;
  /** Every key's value before the history (default null: missing). */
  readonly initial?: unknown;
}

export interface CheckResult {
  readonly verdict: 'ok' | 'violation' | 'unknown';
  readonly keys: number;
  readonly operations: number;
  readonly ms: number;
  /** violation: the key that cannot be linearized; unknown: the key the budget ran out on. */
  readonly key?: string;
  /** violation: the operation that no order of the longest partial linearization could place next. */
  readonly stuckAt?: Operation;
  /** violation: that longest partial linearization, in its order. */
  readonly prefix?: readonly Operation[];
  /** A few human-readable lines. */
  readonly explanation?: string;
}

const describe = (op: Operation) =>
  `process ${op.process} ${op.f} ${JSON.stringify(op.input)} -> ${op.unknown ? 'unknown' : JSON.stringify(op.output)} ` +
  `[${op.call}, ${op.unknown ? 'never returned' : op.ret}]`;

// Enough of the prefix to see the last values the register took, not a dump of the whole key.
const PREFIX_SHOWN = 6;

export function checkOperations(ops: readonly Operation[], o: CheckOptions = {}): CheckResult {
  const t0 = Date.now();
  const deadline = t0 + (o.timeoutMs ?? 60_000);
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (!list) {
      list = [];
      byKey.set(op.key, list);
    }
    list.push(op);
  }
  const base = { keys: byKey.size, operations: ops.length };
  for (const [key, list] of byKey) {
    // Ids are positions within the key: the search indexes its bitsets and arrays with them.
    const local = list.map((op, id) => ({ ...op, id }));
    const r = checkKey(local, o.initial ?? null, { deadline, maxMemoBytes: o.maxMemoBytes });
    if (r.verdict === 'violation') {
      const back = (op: Operation) => list[op.id];
      const prefix = r.prefix.map(back);
      const shown = prefix.slice(-PREFIX_SHOWN);
      const lines = [
        `key ${JSON.stringify(key)}: at most ${prefix.length} of its ${r.total} operations can be linearized.`,
        `longest partial linearization${prefix.length > shown.length ? ` (last ${shown.length})` : ''}, leaving the value ${r.stateAfterPrefix}:`,
        ...(shown.length ? shown.map((op) => `  ${describe(op)}`) : ['  (none)']),
        `cannot be placed next, nor can any other operation before it returns:`,
        `  ${describe(back(r.stuckAt))}`,
      ];
      return {
        verdict: 'violation',
        ...base,
        ms: Date.now() - t0,
        key,
        stuckAt: back(r.stuckAt),
        prefix,
        explanation: lines.join('\n'),
      };
    }
    if (r.verdict === 'unknown') {
      const why = r.reason === 'time' ? `time budget (${o.timeoutMs ?? 60_000} ms) spent` : 'memo budget exhausted';
      return {
        verdict: 'unknown',
        ...base,
        ms: Date.now() - t0,
        key,
        explanation: `${why} on key ${JSON.stringify(key)} (${list.length} operations) after ${r.steps} steps`,
      };
    }
  }
  return { verdict: 'ok', ...base, ms: Date.now() - t0 };
}

/** Parse a JSON Lines history and check it. */
export function checkHistoryText(text: string, o: CheckOptions = {}): CheckResult {
  return checkOperations(parseHistory(text), o);
}
