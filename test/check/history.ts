// History: the operation histories fault tests record (JSON Lines, docs/history-format.md)
// turned into operations with call and return times. A `fail` completion is dropped (it certainly
// did not happen); an `info` completion, or none, is an operation whose outcome is unknown: it may
// take effect at any time after its call, so its return time is infinity.
import { HistoryError } from './errors.js';

export type OpName = 'read' | 'write' | 'cas' | 'append';

export interface Operation {
  readonly id: number;
  readonly process: string | number;
  readonly f: OpName;
  readonly key: string;
  /** write/append: the value; cas: [expected, new]; read: null. */
  readonly input: unknown;
  /** read: the value read (null = missing); cas: true / false; write: the value; unknown: null. */
  readonly output: unknown;
  readonly call: number;
  readonly ret: number;
  readonly unknown: boolean;
}

// Re-exported: parseHistory() throws it, so its users find it here.
export { HistoryError };

interface Event {
  type: 'invoke' | 'ok' | 'fail' | 'info';
  process: string | number;
  f: OpName;
  key: string;
  value: unknown;
  time: number;
}

// `append` exists only for the 6.824 key/value oracle histories; the recorded format has no append.
const FS = new Set(['read', 'write', 'cas']);
const TYPES = new Set(['invoke', 'ok', 'fail', 'info']);

/** Parse one JSON Lines history (blank lines ignored). Throws HistoryError naming the line. */
export function parseHistory(text: string): Operation[] {
  const events: [Event, number][] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      throw new HistoryError('MalformedEvent', line, 'not JSON');
    }
    if (typeof e !== 'object' || e === null || Array.isArray(e))
      throw new HistoryError('MalformedEvent', line, 'not a JSON object');
    if (!TYPES.has(e.type as string))
      throw new HistoryError(
        'MalformedEvent',
        line,
        `type must be invoke, ok, fail or info (got ${JSON.stringify(e.type)})`,
      );
    if (typeof e.process !== 'number' && typeof e.process !== 'string')
      throw new HistoryError('MalformedEvent', line, 'process must be a number or a string');
    if (!FS.has(e.f as string))
      throw new HistoryError('MalformedEvent', line, `f must be read, write or cas (got ${JSON.stringify(e.f)})`);
    if (typeof e.key !== 'string') throw new HistoryError('MalformedEvent', line, 'key must be a string');
    if (typeof e.time !== 'number' || !Number.isFinite(e.time))
      throw new HistoryError('MalformedEvent', line, 'time must be a finite number');
    if (!('value' in e)) throw new HistoryError('MalformedEvent', line, 'value is required (null when none)');
    if (e.type === 'invoke' && e.f === 'cas' && !(Array.isArray(e.value) && e.value.length === 2))
      throw new HistoryError('MalformedEvent', line, 'a cas invoke needs value [expected, new]');
    if (e.type === 'ok' && e.f === 'cas' && typeof e.value !== 'boolean')
      throw new HistoryError('MalformedEvent', line, 'a cas completion needs value true or false');
    events.push([e as unknown as Event, line]);
  });
  return fromEvents(events);
}

/** Pair invokes with completions per process (shared with the oracle adapters). */
export function fromEvents(events: readonly [Event, number][]): Operation[] {
  const open = new Map<string | number, [Event, number]>();
  const ops: Operation[] = [];
  const push = (inv: Event, done: Event | null) => {
    if (done?.type === 'fail') return;
    const unknown = done === null || done.type === 'info';
    if (unknown && inv.f === 'read') return; // a read with no answer constrains nothing
    ops.push({
      id: ops.length,
      process: inv.process,
      f: inv.f,
      key: inv.key,
      input: inv.value,
      output: unknown ? null : done!.value,
      call: inv.time,
      ret: unknown ? Infinity : done!.time,
      unknown,
    });
  };
  for (const [e, line] of events) {
    if (e.type === 'invoke') {
      if (open.has(e.process))
        throw new HistoryError(
          'UnmatchedEvent',
          line,
          `process ${e.process} invoked again before its previous operation completed`,
        );
      open.set(e.process, [e, line]);
      continue;
    }
    const inv = open.get(e.process);
    if (!inv)
      throw new HistoryError('UnmatchedEvent', line, `a ${e.type} for process ${e.process} with no pending invoke`);
    if (inv[0].f !== e.f || inv[0].key !== e.key)
      throw new HistoryError(
        'UnmatchedEvent',
        line,
        `completion ${e.f} ${e.key} does not match the invoke on line ${inv[1]}`,
      );
    if (e.time < inv[0].time) throw new HistoryError('UnmatchedEvent', line, 'completes before its invoke');
    open.delete(e.process);
    push(inv[0], e);
  }
  for (const [inv] of open.values()) push(inv, null);
  return ops;
}
