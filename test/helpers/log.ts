// A pino logger whose lines are kept in memory as parsed JSON (and as written, for tests that
// look at a line's text), for tests that assert on logs.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export function memoryLogger(level = 'info'): { logger: Logger; lines: Record<string, unknown>[]; raw: string[] } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) {
        if (!l) continue;
        raw.push(l);
        lines.push(JSON.parse(l));
      }
      cb();
    },
  });
  return { logger: pino({ level }, stream), lines, raw };
}

/** Keys that appear more than once at the top level of a JSON log line (JSON.parse keeps the
 *  last, so a parsed line cannot tell). */
export function duplicateKeys(line: string): string[] {
  const seen = new Set<string>();
  const dup: string[] = [];
  let depth = 0;
  // Walk the text: a top-level key is a string at depth 1 followed by a colon.
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      const s = line.slice(i + 1, j);
      if (depth === 1 && line[j + 1] === ':') {
        if (seen.has(s)) dup.push(s);
        seen.add(s);
      }
      i = j;
    }
  }
  return dup;
}
