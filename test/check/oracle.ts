// Oracle adapters: the third-party histories in FLOTILLA_ORACLE_DIR (Porcupine's Jepsen etcd
// logs and MIT 6.824 key/value logs, Knossos' cas-register EDN) read into the checker's operations,
// so that the checker is validated against verdicts other tools established. Each reader follows
// the reading its tool's own test gives the file, since a verdict is only comparable under the same
// reading. Only the EDN those files use; any line or event it does not recognise is an error,
// because a reader that silently skipped lines would make a history vacuously linearizable.

import { fromEvents, type Operation, type OpName } from './history.js';
import { OracleFormatError } from './errors.js';

export type Edn = null | boolean | number | string | { readonly kw: string } | Edn[] | Map<string, Edn>;

// Re-exported: the adapters throw it, so their users find it here.
export { OracleFormatError };

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' };

/** A minimal EDN reader: maps, vectors, lists, keywords, strings, integers, nil, booleans, symbols, comments. */
export function readEdn(text: string): Edn[] {
  let i = 0;
  const lineAt = (at: number) => text.slice(0, at).split('\n').length;
  const fail = (why: string): never => {
    throw new OracleFormatError(`line ${lineAt(i)}`, `EDN: ${why}`);
  };
  const ws = () => {
    for (;;) {
      while (i < text.length && /[\s,]/.test(text[i])) i++;
      if (text[i] !== ';') return;
      while (i < text.length && text[i] !== '\n') i++;
    }
  };
  const value = (): Edn => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[' || c === '(') {
      const close = c === '{' ? '}' : c === '[' ? ']' : ')';
      i++;
      const items: Edn[] = [];
      for (;;) {
        ws();
        if (i >= text.length) fail('unterminated collection');
        if (text[i] === close) {
          i++;
          break;
        }
        items.push(value());
      }
      if (c !== '{') return items;
      if (items.length % 2) fail('a map with an odd number of forms');
      const m = new Map<string, Edn>();
      for (let k = 0; k < items.length; k += 2) {
        const key = items[k];
        m.set(typeof key === 'object' && key !== null && 'kw' in key ? key.kw : String(key), items[k + 1]);
      }
      return m;
    }
    if (c === '"') {
      let s = '';
      for (i++; text[i] !== '"'; i++) {
        if (i >= text.length) fail('unterminated string');
        if (text[i] === '\\') s += ESCAPES[text[++i]] ?? text[i];
        else s += text[i];
      }
      i++;
      return s;
    }
    const start = i;
    while (i < text.length && !/[\s,{}[\]()";]/.test(text[i])) i++;
    const tok = text.slice(start, i);
    if (tok === '') fail(`unexpected ${JSON.stringify(c)}`);
    if (tok === 'nil') return null;
    if (tok === 'true' || tok === 'false') return tok === 'true';
    if (tok.startsWith(':')) return { kw: tok.slice(1) };
    if (/^[-+]?\d+N?$/.test(tok)) return Number(tok.replace(/N$/, ''));
    if (/^[#^\\]/.test(tok)) fail(`unsupported form ${JSON.stringify(tok)}`);
    return tok;
  };
  const out: Edn[] = [];
  for (;;) {
    ws();
    if (i >= text.length) return out;
    out.push(value());
  }
}

const kw = (x: Edn | undefined): string | undefined =>
  typeof x === 'object' && x !== null && 'kw' in x ? x.kw : undefined;
type Ev = Parameters<typeof fromEvents>[0][number];
type EvType = Ev[0]['type'];
const TYPES = new Set<string>(['invoke', 'ok', 'fail', 'info']);

interface EdnReading {
  /** The tool's operation names mapped onto the checker's. */
  readonly fs: Readonly<Record<string, OpName>>;
  readonly keyOf: (m: Map<string, Edn>) => string | undefined;
  /** Knossos' register accepts any value for a read that returned nil: such a read says nothing. */
  readonly nilReadSaysNothing?: boolean;
}

// Jepsen-style op maps in history order; the position is the time (one event per position).
function ednOps(items: readonly Edn[], r: EdnReading): Operation[] {
  const events: Ev[] = [];
  items.forEach((m, pos) => {
    if (!(m instanceof Map)) throw new OracleFormatError(`operation ${pos + 1}`, 'expected an operation map');
    const process = m.get('process');
    // The nemesis (a keyword process) logs its faults in the same history; they are not client operations.
    if (typeof process !== 'number') return;
    const fname = kw(m.get('f')) ?? '';
    const f = r.fs[fname];
    let type = kw(m.get('type')) ?? '';
    if (!f || !TYPES.has(type))
      throw new OracleFormatError(`operation ${pos + 1}`, `unexpected client operation :type ${type} :f ${fname}`);
    const key = r.keyOf(m);
    if (key === undefined) throw new OracleFormatError(`operation ${pos + 1}`, 'no string :key');
    let value = m.get('value') ?? null;
    if (f === 'read' && type === 'invoke') value = null;
    // Knossos (and Jepsen's own cas clients) report a cas whose compare did not hold as :fail: it did
    // nothing, so it is dropped like any other failure. An :ok cas is a successful one.
    if (f === 'cas' && type === 'ok') value = true;
    if (r.nilReadSaysNothing && f === 'read' && type === 'ok' && value === null) type = 'info';
    events.push([{ type: type as EvType, process, f, key, value, time: pos }, pos + 1]);
  });
  return fromEvents(events);
}

/** Knossos cas-register history (.edn): one register, initially 0 as in Knossos' own tests. */
export function knossosOps(text: string): Operation[] {
  const top = readEdn(text);
  const items = top.length === 1 && Array.isArray(top[0]) ? top[0] : top;
  return ednOps(items, {
    fs: { read: 'read', write: 'write', cas: 'cas' },
    keyOf: () => 'r',
    nilReadSaysNothing: true,
  });
}

/** Porcupine's 6.824 key/value logs: get / put / append per key; a missing key reads as "" (initial ""). */
export function porcupineKvOps(text: string): Operation[] {
  return ednOps(readEdn(text), {
    fs: { get: 'read', put: 'write', append: 'append' },
    keyOf: (m) => {
      const k = m.get('key');
      return typeof k === 'string' ? k : undefined;
    },
  });
}

const JEPSEN_LINE = /^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$/;

/**
 * Porcupine's Jepsen etcd logs: one register, initially missing, `INFO jepsen.util - P :type :f value`
 * lines (tabs or spaces). Read as Porcupine's test reads them: a :fail cas completed with its compare
 * false, a :fail read (a timed-out read) and :info operations have unknown outcomes.
 */
export function jepsenEtcdOps(text: string): Operation[] {
  const events: Ev[] = [];
  text.split('\n').forEach((line, n) => {
    if (line.trim() === '') return;
    const m = JEPSEN_LINE.exec(line);
    if (!m)
      throw new OracleFormatError(
        `line ${n + 1}`,
        `not a jepsen.util operation line: ${JSON.stringify(line.slice(0, 80))}`,
      );
    const [, p, type, f, raw] = m;
    let t = type as EvType;
    let value: unknown;
    const pair = /^\[(-?\d+)\s+(-?\d+)\]$/.exec(raw);
    if (raw === 'nil' || raw.startsWith(':'))
      value = null; // nil, or :timed-out on an info
    else if (pair) value = [Number(pair[1]), Number(pair[2])];
    else if (/^-?\d+$/.test(raw)) value = Number(raw);
    else throw new OracleFormatError(`line ${n + 1}`, `unexpected value ${JSON.stringify(raw)}`);
    if (f === 'cas' && t === 'fail') {
      value = false;
      t = 'ok';
    } else if (f === 'cas' && t === 'ok') value = true;
    else if (t === 'fail') t = 'info';
    events.push([{ type: t, process: Number(p), f: f as OpName, key: 'r', value, time: n }, n + 1]);
  });
  return fromEvents(events);
}
