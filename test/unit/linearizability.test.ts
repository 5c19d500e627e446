// The linearizability checker (src/check): the verdicts Porcupine and Knossos established for
// their public histories, hand-made anomalies, the time budget, malformed input, and a property:
// histories made from a sequential run by widening each operation around its effect are always
// linearizable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { checkHistoryText, checkOperations, HistoryError, parseHistory } from '../../src/check/index.js';
import { jepsenEtcdOps, knossosOps, porcupineKvOps } from '../helpers/oracle.js';

// The third-party histories live beside the repository (../shared), not in it: without them the
// two oracle tests are reported as skipped, never as passed.
const ORACLE = process.env.FLOTILLA_ORACLE_DIR ?? join(import.meta.dirname, '../../../shared/oracle-testdata');
const oracle = existsSync(join(ORACLE, 'porcupine/expected.json')) ? {} : { skip: `no oracle testdata at ${ORACLE} (set FLOTILLA_ORACLE_DIR)` };

test('oracle: every Porcupine history (102 Jepsen etcd, 6 key/value) gets the verdict Porcupine gives', oracle, () => {
  const expected = JSON.parse(readFileSync(join(ORACLE, 'porcupine/expected.json'), 'utf8')) as Record<string, boolean>;
  const wrong: string[] = [];
  let bad = 0;
  for (const [file, linearizable] of Object.entries(expected)) {
    const text = readFileSync(join(ORACLE, 'porcupine', file), 'utf8');
    const kv = file.startsWith('kv/');
    const r = checkOperations(kv ? porcupineKvOps(text) : jepsenEtcdOps(text), { timeoutMs: 60_000, initial: kv ? '' : null });
    if (r.verdict !== (linearizable ? 'ok' : 'violation')) wrong.push(`${file}: expected ${linearizable}, got ${r.verdict}`);
    if (!linearizable) bad++;
  }
  assert.equal(Object.keys(expected).length, 108, 'all Porcupine histories');
  assert.ok(bad > 50, `both verdicts are exercised (${bad} not linearizable)`);
  assert.deepEqual(wrong, [], 'verdicts match Porcupine');
});

test('oracle: every Knossos cas-register history gets its verdict (good/ linearizable, bad/ not)', oracle, () => {
  const wrong: string[] = [];
  let n = 0;
  for (const dir of ['good', 'bad']) {
    for (const f of readdirSync(join(ORACLE, 'knossos/cas-register', dir))) {
      const r = checkOperations(knossosOps(readFileSync(join(ORACLE, 'knossos/cas-register', dir, f), 'utf8')), { timeoutMs: 60_000, initial: 0 });
      n++;
      if (r.verdict !== (dir === 'good' ? 'ok' : 'violation')) wrong.push(`${dir}/${f}: ${r.verdict}`);
    }
  }
  assert.equal(n, 120, 'all Knossos cas-register histories');
  assert.deepEqual(wrong, [], 'verdicts match Knossos');
});

const line = (type: string, process: number, f: string, key: string, value: unknown, time: number) =>
  JSON.stringify({ type, process, f, key, value, time });
const hist = (...lines: string[]) => lines.join('\n');

test('anomalies: a stale read, a lost write, a definitely failed write that appears, a cas that ignores its compare', () => {
  const stale = hist(
    line('invoke', 1, 'write', 'k', 'a', 0), line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 1, 'write', 'k', 'b', 2), line('ok', 1, 'write', 'k', 'b', 3),
    line('invoke', 2, 'read', 'k', null, 4), line('ok', 2, 'read', 'k', 'a', 5));
  const r1 = checkHistoryText(stale);
  assert.equal(r1.verdict, 'violation', 'stale read');
  assert.match(r1.explanation ?? '', /key "k".*process 2 read/, `the explanation names the key and the read: ${r1.explanation}`);

  const lost = hist(
    line('invoke', 1, 'write', 'k', 'a', 0), line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 2, 'read', 'k', null, 2), line('ok', 2, 'read', 'k', null, 3));
  assert.equal(checkHistoryText(lost).verdict, 'violation', 'an acknowledged write is missing later');

  const timedOut = hist(
    line('invoke', 1, 'write', 'k', 'a', 0), line('info', 1, 'write', 'k', null, 1),
    line('invoke', 2, 'read', 'k', null, 2), line('ok', 2, 'read', 'k', null, 3),
    line('invoke', 3, 'read', 'k', null, 4), line('ok', 3, 'read', 'k', 'a', 5));
  assert.equal(checkHistoryText(timedOut).verdict, 'ok', 'a timed-out write may take effect later');
  assert.equal(checkHistoryText(timedOut.replace('"info"', '"fail"')).verdict, 'violation', 'a write that certainly failed must never appear');

  const casBad = hist(
    line('invoke', 1, 'write', 'k', 'a', 0), line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 2, 'cas', 'k', ['x', 'y'], 2), line('ok', 2, 'cas', 'k', true, 3));
  assert.equal(checkHistoryText(casBad).verdict, 'violation', 'cas succeeded although the value was not the expected one');
  const casOk = hist(
    line('invoke', 1, 'write', 'k', 'a', 0), line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 2, 'cas', 'k', ['a', 'y'], 2), line('ok', 2, 'cas', 'k', true, 3),
    line('invoke', 3, 'cas', 'k', ['a', 'z'], 4), line('ok', 3, 'cas', 'k', false, 5),
    line('invoke', 4, 'read', 'k', null, 6), line('ok', 4, 'read', 'k', 'y', 7));
  assert.equal(checkHistoryText(casOk).verdict, 'ok', 'a correct cas sequence');
});

test('concurrency: overlapping operations may take effect in either order; keys are independent', () => {
  const h = hist(
    line('invoke', 1, 'write', 'k', 'a', 0), line('invoke', 2, 'write', 'k', 'b', 1),
    line('invoke', 3, 'read', 'k', null, 2), line('ok', 3, 'read', 'k', 'b', 3),
    line('invoke', 4, 'read', 'j', null, 3), line('ok', 4, 'read', 'j', null, 4),
    line('invoke', 5, 'read', 'k', null, 4), line('ok', 5, 'read', 'k', 'a', 5),
    line('ok', 1, 'write', 'k', 'a', 6), line('ok', 2, 'write', 'k', 'b', 7));
  const r = checkHistoryText(h);
  assert.equal(r.verdict, 'ok', 'b then a, both writes still pending while read');
  assert.equal(r.keys, 2, 'two keys');
  const backwards = h.replace('"time":4}', '"time":4.5}').replace(line('ok', 2, 'write', 'k', 'b', 7), line('ok', 2, 'write', 'k', 'b', 7)) +
    `\n${line('invoke', 6, 'read', 'k', null, 8)}\n${line('ok', 6, 'read', 'k', 'b', 9)}`;
  assert.equal(checkHistoryText(backwards).verdict, 'violation', 'after reading a (so b came first), b cannot come back');
});

test('the time budget answers unknown instead of hanging', () => {
  const lines: string[] = [];
  const n = 60;
  for (let i = 0; i < n; i++) lines.push(line('invoke', i, 'write', 'k', i % 2 === 0 ? `v${i}` : 'same', i));
  lines.push(line('invoke', 999, 'read', 'k', null, n));
  for (let i = 0; i < n; i++) lines.push(line('ok', i, 'write', 'k', i % 2 === 0 ? `v${i}` : 'same', n + 1 + i));
  lines.push(line('ok', 999, 'read', 'k', 'never-written', 10 * n));
  const t0 = Date.now();
  const r = checkHistoryText(lines.join('\n'), { timeoutMs: 300 });
  assert.equal(r.verdict, 'unknown', `a search too large for the budget: ${r.verdict}`);
  assert.ok(Date.now() - t0 < 10_000, 'and it returned soon after the budget');
});

test('malformed histories are refused naming the line', () => {
  const cases: [string, RegExp][] = [
    [`${line('invoke', 1, 'write', 'k', 'a', 0)}\nnot json`, /line 2: not JSON/],
    [line('invoke', 1, 'delete', 'k', 'a', 0), /line 1: f must be read, write or cas/],
    [`${line('invoke', 1, 'write', 'k', 'a', 0)}\n${line('invoke', 1, 'write', 'k', 'b', 1)}`, /line 2: process 1 invoked again/],
    [line('ok', 1, 'write', 'k', 'a', 0), /line 1: a ok for process 1 with no pending invoke/],
    [JSON.stringify({ type: 'invoke', process: 1, f: 'read', key: 'k', time: 0 }), /line 1: value is required/],
    [line('invoke', 1, 'cas', 'k', 'x', 0), /line 1: a cas invoke needs value \[expected, new\]/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseHistory(text), (e: unknown) => e instanceof HistoryError && re.test(e.message), `refused: ${re}`);
});

test('property: widening a sequential run around each effect keeps it linearizable', () => {
  const opArb = fc.record({
    f: fc.constantFrom('read', 'write', 'cas'), key: fc.constantFrom('a', 'b'), v: fc.integer({ min: 0, max: 3 }),
    e: fc.integer({ min: 0, max: 3 }), before: fc.integer({ min: 0, max: 30 }), after: fc.integer({ min: 0, max: 30 }), lost: fc.boolean(),
  });
  fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
    const state = new Map<string, number | null>();
    const events: [number, string][] = [];
    ops.forEach((o, k) => {
      const point = 100 * k;
      const cur = state.get(o.key) ?? null;
      let value: unknown = null;
      let out: unknown = null;
      if (o.f === 'read') out = cur;
      else if (o.f === 'write') {
        value = o.v;
        out = o.v;
        state.set(o.key, o.v);
      } else {
        value = [o.e, o.v];
        out = cur === o.e;
        if (out) state.set(o.key, o.v);
      }
      events.push([point - o.before - 0.5, line('invoke', k, o.f, o.key, value, point - o.before - 0.5)]);
      // Writes whose answer was lost are recorded as info (they did take effect).
      if (o.lost && o.f !== 'read') events.push([point + o.after + 0.5, line('info', k, o.f, o.key, null, point + o.after + 0.5)]);
      else events.push([point + o.after + 0.5, line('ok', k, o.f, o.key, out, point + o.after + 0.5)]);
    });
    events.sort((x, y) => x[0] - y[0]);
    const r = checkHistoryText(events.map((e) => e[1]).join('\n'), { timeoutMs: 5000 });
    return r.verdict === 'ok';
  }), { numRuns: 300, seed: 42 });
});
