// Log lines of a shard running on a worker thread, written by the embedder's logger on the main
// thread. The worker's pino logger writes nothing itself: a logMethod hook turns each call into a
// WorkerLogRecord (level, fields, message) that goes to the main thread over the worker's
// PackedPort, batched with everything else the shard posts in that turn; the main thread replays
// it on the node's logger (child { worker: i }), so the lines carry the embedder's bindings,
// destination and formatting. The worker's level is the embedder's at (re)start: a disabled level
// is pino's no-op there and costs nothing, nothing is posted for it.
import { format } from 'node:util';
import { pino, type Level, type Logger } from 'pino';

/** An Error as it crosses the port (an Error object does not survive msgpack). */
export interface WorkerLogError {
  readonly type: string;
  readonly message: string;
  readonly stack?: string;
  /** Its own enumerable fields (code, ...), made encodable. */
  readonly fields: Record<string, unknown>;
}

export interface WorkerLogRecord {
  readonly kind: 'log';
  readonly level: Level;
  readonly obj: Record<string, unknown>;
  readonly msg: string;
  /** Top-level fields of `obj` that were Errors (replayed as Errors: pino's `err` serializer
   *  then writes their type, message and stack). */
  readonly errors?: Record<string, WorkerLogError>;
}

/** Deeper than this a field is written as a string: log fields are small, and the walk below
 *  must end on any value. */
const MAX_DEPTH = 4;

/** A pino logger for a worker thread at `level`, whose calls become records for `post`. */
export function workerLogger(level: string, post: (r: WorkerLogRecord) => void): Logger {
  return pino({
    level,
    base: null,
    hooks: {
      logMethod(args, _method, levelValue) {
        const record = toRecord(this.levels.labels[levelValue] as Level, args, this.bindings());
        if (record) post(record);
      },
    },
  });
}

/** Replay a worker's record on the main thread's logger. */
export function replayWorkerLog(log: Logger, r: WorkerLogRecord): void {
  const obj: Record<string, unknown> = { ...r.obj };
  for (const [k, e] of Object.entries(r.errors ?? {})) obj[k] = reviveError(e);
  if (r.msg) log[r.level](obj, r.msg);
  else log[r.level](obj);
}

function toRecord(level: Level, args: unknown[], bindings: Record<string, unknown>): WorkerLogRecord | null {
  if (level === undefined) return null;
  let [first, ...rest] = args;
  let fields: Record<string, unknown> = {};
  if (first instanceof Error) {
    fields = { err: first };
    if (rest.length === 0) rest = [first.message];
  } else if (typeof first === 'object' && first !== null) {
    fields = first as Record<string, unknown>;
  } else {
    rest = args;
  }
  const obj: Record<string, unknown> = {};
  let errors: Record<string, WorkerLogError> | undefined;
  for (const [k, v] of Object.entries({ ...bindings, ...fields })) {
    if (v instanceof Error) {
      errors ??= {};
      errors[k] = encodeError(v);
    } else if (v !== undefined) obj[k] = encodable(v, 0);
  }
  const msg = rest.length === 0 ? '' : rest.length === 1 ? String(rest[0]) : format(...rest);
  return errors ? { kind: 'log', level, obj, msg, errors } : { kind: 'log', level, obj, msg };
}

function encodeError(e: Error): WorkerLogError {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== 'stack' && k !== 'message') fields[k] = encodable(v, 1);
  return { type: e.constructor?.name || e.name, message: e.message, stack: e.stack, fields };
}

function reviveError(w: WorkerLogError): Error {
  // pino's err serializer names the error after its constructor: a class of the worker error's
  // own name keeps `type` what the worker threw (RuntimeError, TypeError, ...).
  const Named = { [w.type]: class extends Error {} }[w.type];
  const e = Object.assign(new Named(w.message), w.fields);
  e.stack = w.stack;
  return e;
}

/** A copy of `v` that msgpack encodes (functions and symbols dropped, what it cannot encode as
 *  a string): a log call must never fail the port's batch. */
function encodable(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'string':
    case 'number':
    case 'boolean':
      return v;
    case 'bigint':
      return v.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'object':
      break;
  }
  if (v === null || v instanceof Uint8Array) return v;
  if (v instanceof Error) return { type: v.name, message: v.message, stack: v.stack };
  if (depth >= MAX_DEPTH) return String(v);
  if (Array.isArray(v)) return v.map((x) => encodable(x, depth + 1));
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), encodable(x, depth + 1)]));
  if (v instanceof Set) return [...v].map((x) => encodable(x, depth + 1));
  if (v instanceof Date) return v.toISOString();
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as object)) {
    const y = encodable(x, depth + 1);
    if (y !== undefined) out[k] = y;
  }
  return out;
}
