// checkHistory: P-compositionality (each key is an independent register, so the history is
// linearizable iff every key's sub-history is) over the per-key search, with one time budget for
// the whole history.

import { parseHistory, HistoryError, type Operation } from './history.js';
import { canon } from './model.js';
import { checkKey } from './wgl.js';

export { parseHistory, HistoryError, type Operation };

export interface CheckResult {
  readonly verdict: 'ok' | 'violation' | 'unknown';
  readonly keys: number;
  readonly operations: number;
  readonly ms: number;
  /** For a violation: the key, and the operation no linearization of the longest prefix could place. */
  readonly key?: string;
  readonly explanation?: string;
}

export function checkOperations(ops: readonly Operation[], o: { timeoutMs?: number; initial?: unknown } = {}): CheckResult {
  const t0 = Date.now();
  const deadline = t0 + (o.timeoutMs ?? 60_000);
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) {
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  let unknown: string | null = null;
  for (const [key, list] of byKey) {
    const local = list.map((op, id) => ({ ...op, id }));
    const r = checkKey(local, canon(o.initial ?? null), deadline);
    if (r.verdict === 'violation') {
      const s = r.stuckAt;
      return {
        verdict: 'violation', keys: byKey.size, operations: ops.length, ms: Date.now() - t0, key,
        explanation: `key ${JSON.stringify(key)}: at most ${r.linearized} of its ${r.total} operations can be linearized; ` +
          `stuck at process ${s.process} ${s.f} ${JSON.stringify(s.input)} -> ${s.unknown ? 'unknown' : JSON.stringify(s.output)} ` +
          `(called at ${s.call}, returned at ${s.ret})`,
      };
    }
    if (r.verdict === 'unknown') {
      unknown = key;
      break;
    }
  }
  if (unknown !== null) {
    return { verdict: 'unknown', keys: byKey.size, operations: ops.length, ms: Date.now() - t0, key: unknown, explanation: `time budget spent on key ${JSON.stringify(unknown)}` };
  }
  return { verdict: 'ok', keys: byKey.size, operations: ops.length, ms: Date.now() - t0 };
}

/** Parse a JSON Lines history and check it. */
export function checkHistoryText(text: string, o: { timeoutMs?: number } = {}): CheckResult {
  return checkOperations(parseHistory(text), o);
}
