// A pino logger whose lines are kept in memory as parsed JSON, for tests that assert on logs.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export function memoryLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}
