// `npm run check -- HISTORY.jsonl [--timeout-ms N]`: judge a recorded history. Exit 0 linearizable,
// 1 violation, 3 unknown (time budget spent), 2 usage or malformed history.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { checkHistoryText, HistoryError } from './index.js';

function main(): number {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({ allowPositionals: true, options: { 'timeout-ms': { type: 'string' } } }));
  } catch (e) {
    process.stderr.write(`check: ${(e as Error).message}\nusage: check HISTORY.jsonl [--timeout-ms N]\n`);
    return 2;
  }
  if (positionals.length !== 1) {
    process.stderr.write('usage: check HISTORY.jsonl [--timeout-ms N]\n');
    return 2;
  }
  const raw = values['timeout-ms'];
  const timeoutMs = raw === undefined ? undefined : Number(raw);
  // A budget that is not a positive number would never expire: refuse it rather than risk a hang.
  if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    process.stderr.write(
      `check: --timeout-ms must be a positive number of milliseconds (got ${JSON.stringify(raw)})\n`,
    );
    return 2;
  }
  let text: string;
  try {
    text = readFileSync(positionals[0], 'utf8');
  } catch (e) {
    process.stderr.write(`check: cannot read ${positionals[0]}: ${(e as Error).message}\n`);
    return 2;
  }
  try {
    const r = checkHistoryText(text, { timeoutMs });
    process.stdout.write(
      `${r.verdict}: ${r.operations} operations on ${r.keys} keys in ${r.ms} ms${r.explanation ? `\n${r.explanation}` : ''}\n`,
    );
    return r.verdict === 'ok' ? 0 : r.verdict === 'violation' ? 1 : 3;
  } catch (e) {
    if (e instanceof HistoryError) {
      process.stderr.write(`check: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

process.exitCode = main();
