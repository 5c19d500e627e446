// Readers for the third-party histories in ../shared/oracle-testdata (Porcupine's Jepsen etcd logs
// and 6.824 key/value logs, Knossos cas-register EDN) into the checker's operations, so that the
// checker is validated against verdicts other tools established. Only the EDN the files use.
import { fromEvents, type Operation, type OpName } from '../../src/check/history.js';

type Edn = null | boolean | number | string | { kw: string } | Edn[] | Map<string, Edn>;

/** A minimal EDN reader: maps, vectors, lists, keywords, strings, integers, nil, booleans, symbols. */
export function readEdn(text: string): Edn[] {
  let i = 0;
  const out: Edn[] = [];
  const ws = () => {
    for (;;) {
      while (i < text.length && /[\s,]/.test(text[i])) i++;
      if (text[i] === ';') while (i < text.length && text[i] !== '\n') i++;
      else return;
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
        if (text[i] === close) {
          i++;
          break;
        }
        if (i >= text.length) throw new Error('EDN: unterminated collection');
        items.push(value());
      }
      if (c !== '{') return items;
      const m = new Map<string, Edn>();
      for (let k = 0; k + 1 < items.length; k += 2) {
        const key = items[k];
        m.set(typeof key === 'object' && key !== null && 'kw' in key ? key.kw : String(key), items[k + 1]);
      }
      return m;
    }
    if (c === '"') {
      let s = '';
      i++;
      while (text[i] !== '"') {
        if (text[i] === '\\') i++;
        s += text[i++];
      }
      i++;
      return s;
    }
    const start = i;
    while (i < text.length && !/[\s,{}[\]()";]/.test(text[i])) i++;
    const tok = text.slice(start, i);
    if (tok === 'nil') return null;
    if (tok === 'true' || tok === 'false') return tok === 'true';
    if (tok.startsWith(':')) return { kw: tok.slice(1) };
    if (/^-?\d+$/.test(tok)) return Number(tok);
    if (tok === '') throw new Error(`EDN: unexpected ${JSON.stringify(c)} at ${i}`);
    return tok;
  };
  for (;;) {
    ws();
    if (i >= text.length) return out;
    out.push(value());
  }
}

const kw = (x: Edn | undefined): string | undefined => (typeof x === 'object' && x !== null && 'kw' in x ? x.kw : undefined);
type Ev = Parameters<typeof fromEvents>[0][number];

function ednOps(maps: Map<string, Edn>[], fmap: Record<string, OpName>, keyOf: (m: Map<string, Edn>) => string, nilReadIsUnknown = false): Operation[] {
  const events: Ev[] = [];
  const drop = new Set<number>();
  maps.forEach((m, line) => {
    const process = m.get('process');
    const f = fmap[kw(m.get('f')) ?? ''];
    const type = kw(m.get('type'));
    if (typeof process !== 'number' || !f || !type) return; // the nemesis and other non-client events
    let v = m.get('value') ?? null;
    if (type === 'ok' && f === 'cas') v = true;
    // Knossos' register accepts any value for a read that returned nil (it saw nothing useful).
    if (nilReadIsUnknown && type === 'ok' && f === 'read' && v === null) return drop.add(process);
    events.push([{ type: type as Ev[0]['type'], process, f, key: keyOf(m), value: v, time: line }, line + 1]);
  });
  // A dropped completion leaves its invoke pending: remove that invoke too (a read constrains nothing).
  if (drop.size) {
    const pending = new Map<number, number>();
    const keep = new Set<number>();
    events.forEach(([e], idx) => {
      if (e.type === 'invoke') pending.set(e.process as number, idx);
      else if (pending.has(e.process as number)) {
        keep.add(pending.get(e.process as number)!);
        keep.add(idx);
        pending.delete(e.process as number);
      }
    });
    for (const idx of pending.values()) if (events[idx][0].f !== 'read') keep.add(idx);
    return fromEvents(events.filter((_, idx) => keep.has(idx)));
  }
  return fromEvents(events);
}

/** Knossos cas-register history (.edn). */
export function knossosOps(text: string): Operation[] {
  const top = readEdn(text);
  const items = (top.length === 1 && Array.isArray(top[0]) ? top[0] : top) as Edn[];
  return ednOps(items.filter((x): x is Map<string, Edn> => x instanceof Map), { read: 'read', write: 'write', cas: 'cas' }, () => 'r', true);
}

/** Porcupine's 6.824 key/value logs: get / put / append per key, missing keys read as "". */
export function porcupineKvOps(text: string): Operation[] {
  return ednOps(readEdn(text).filter((x): x is Map<string, Edn> => x instanceof Map), { get: 'read', put: 'write', append: 'append' }, (m) => String(m.get('key')));
}

/** Porcupine's Jepsen etcd logs: one register, tab-separated `process :type :f value` lines. */
export function jepsenEtcdOps(text: string): Operation[] {
  const events: Ev[] = [];
  text.split('\n').forEach((line, n) => {
    const m = /jepsen\.util - (\d+)\t:(invoke|ok|fail|info)\t:(read|write|cas)\t(.*)$/.exec(line);
    if (!m) return;
    const [, p, type, f, raw] = m;
    const pair = /^\[(-?\d+) (-?\d+)\]$/.exec(raw.trim());
    let value: unknown = raw.trim() === 'nil' ? null : pair ? [Number(pair[1]), Number(pair[2])] : /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw.trim();
    // Jepsen's etcd client reports a cas whose compare did not hold as :fail; Porcupine reads it as
    // "completed, compare failed" (it did nothing, and the value differed from expected then).
    let t = type as Ev[0]['type'];
    if (f === 'cas' && t !== 'invoke' && t !== 'info') {
      value = t === 'ok';
      t = 'ok';
    }
    events.push([{ type: t, process: Number(p), f: f as OpName, key: 'r', value: value as never, time: n }, n + 1]);
  });
  return fromEvents(events);
}
