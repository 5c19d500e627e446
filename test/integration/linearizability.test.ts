// The linearizability checker (test/check): the verdicts Porcupine and Knossos established for
// their public histories, hand-made anomalies, the time budget, malformed input, and a property:
// histories made from a sequential run by widening each operation around its effect are always
// linearizable, and a read of a value never written is not. FLOTILLA_LONG=1 runs the property longer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { checkHistoryText, checkOperations, HistoryError, parseHistory } from '../check/index.js';
import { jepsenEtcdOps, knossosOps, OracleFormatError, porcupineKvOps, readEdn } from '../check/oracle.js';

// The third-party histories are not part of the repository: FLOTILLA_ORACLE_DIR names a directory
// holding them (porcupine/, knossos/; docs/testing.md). Without it the two oracle tests are reported
// as skipped, never as passed.
const ORACLE = process.env.FLOTILLA_ORACLE_DIR ?? '';
const LONG = process.env.FLOTILLA_LONG === '1';
const oracle =
  ORACLE === ''
    ? {
        skip: 'FLOTILLA_ORACLE_DIR is not set (a directory with the Porcupine and Knossos histories: porcupine/expected.json, knossos/cas-register/)',
      }
    : existsSync(join(ORACLE, 'porcupine/expected.json'))
      ? {}
      : { skip: `no oracle testdata in FLOTILLA_ORACLE_DIR=${ORACLE} (porcupine/expected.json missing)` };

// Every file must yield operations: a reader that skipped lines would make a history vacuously linearizable.
const countOps = (ops: readonly unknown[]) => ops.length;

test('oracle: every Porcupine history (102 Jepsen etcd, 6 key/value) gets the verdict Porcupine gives', oracle, () => {
  const expected = JSON.parse(readFileSync(join(ORACLE, 'porcupine/expected.json'), 'utf8')) as Record<string, boolean>;
  const wrong: string[] = [];
  const empty: string[] = [];
  let bad = 0;
  let ops = 0;
  const t0 = Date.now();
  for (const [file, linearizable] of Object.entries(expected)) {
    const text = readFileSync(join(ORACLE, 'porcupine', file), 'utf8');
    const kv = file.startsWith('kv/');
    const history = kv ? porcupineKvOps(text) : jepsenEtcdOps(text);
    // Operations read = invokes, less the definite failures and unanswered reads the reader drops.
    const invokes = (text.match(/:invoke/g) ?? []).length;
    if (countOps(history) === 0 || countOps(history) < invokes / 2)
      empty.push(`${file}: ${countOps(history)} operations of ${invokes} invokes`);
    ops += countOps(history);
    const r = checkOperations(history, { timeoutMs: 60_000, initial: kv ? '' : null });
    if (r.verdict !== (linearizable ? 'ok' : 'violation'))
      wrong.push(`${file}: expected ${linearizable}, got ${r.verdict}`);
    if (!linearizable) bad++;
  }
  assert.equal(Object.keys(expected).length, 108, 'all Porcupine histories');
  assert.deepEqual(empty, [], 'every history was read in full');
  assert.ok(bad > 50, `both verdicts are exercised (${bad} not linearizable)`);
  assert.deepEqual(wrong, [], 'verdicts match Porcupine');
  assert.ok(
    Date.now() - t0 < 20_000,
    `all Porcupine histories (${ops} operations) within the CI budget (${Date.now() - t0} ms)`,
  );
});

test('oracle: every Knossos cas-register history gets its verdict (good/ linearizable, bad/ not)', oracle, () => {
  const wrong: string[] = [];
  const empty: string[] = [];
  let n = 0;
  let ops = 0;
  for (const dir of ['good', 'bad']) {
    for (const f of readdirSync(join(ORACLE, 'knossos/cas-register', dir))) {
      const text = readFileSync(join(ORACLE, 'knossos/cas-register', dir, f), 'utf8');
      const history = knossosOps(text);
      // A few mongodb histories are failures only, and have no operation to check.
      if (countOps(history) === 0 && text.includes(':type :ok')) empty.push(`${dir}/${f}`);
      ops += countOps(history);
      const r = checkOperations(history, { timeoutMs: 60_000, initial: 0 });
      n++;
      if (r.verdict !== (dir === 'good' ? 'ok' : 'violation')) wrong.push(`${dir}/${f}: ${r.verdict}`);
    }
  }
  assert.equal(n, 120, 'all Knossos cas-register histories');
  assert.deepEqual(empty, [], 'every history with a completed operation has operations');
  assert.ok(ops > 10_000, `the histories were read (${ops} operations)`);
  assert.deepEqual(wrong, [], 'verdicts match Knossos');
});

test('oracle adapters refuse what they do not understand instead of skipping it', () => {
  const etcd = 'INFO  jepsen.util - 1\t:invoke\t:write\t3\nINFO  jepsen.util - 1   :ok     :write  3\n';
  assert.equal(jepsenEtcdOps(etcd).length, 1, 'tabs and spaces both separate fields');
  assert.throws(
    () => jepsenEtcdOps(`${etcd}WARN something else\n`),
    (e: unknown) => e instanceof OracleFormatError && /line 3/.test(e.message),
    'an unknown line is an error naming it',
  );
  assert.throws(
    () => readEdn('[{:a "unterminated}]'),
    (e: unknown) => e instanceof OracleFormatError,
    'an unterminated string is an error, not a hang',
  );
  assert.throws(
    () => knossosOps('[{:process 1, :type :invoke, :f :delete, :value 1}]'),
    (e: unknown) => e instanceof OracleFormatError && /:f delete/.test(e.message),
    'an unknown client operation is an error',
  );
  const nilRead = knossosOps(
    '[{:process 1 :type :invoke :f :read :value nil} {:process 1 :type :ok :f :read :value nil} {:process :nemesis :type :info :f :start}]',
  );
  assert.equal(nilRead.length, 0, 'a nil read says nothing in Knossos, and the nemesis is not a client');
});

const line = (type: string, process: number, f: string, key: string, value: unknown, time: number) =>
  JSON.stringify({ type, process, f, key, value, time });
const hist = (...lines: string[]) => lines.join('\n');

test('anomalies: a stale read, a lost write, a definitely failed write that appears, a cas that ignores its compare', () => {
  const stale = hist(
    line('invoke', 1, 'write', 'k', 'a', 0),
    line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 1, 'write', 'k', 'b', 2),
    line('ok', 1, 'write', 'k', 'b', 3),
    line('invoke', 2, 'read', 'k', null, 4),
    line('ok', 2, 'read', 'k', 'a', 5),
  );
  const r1 = checkHistoryText(stale);
  assert.equal(r1.verdict, 'violation', 'stale read');
  assert.equal(r1.key, 'k', 'the key is named');
  assert.equal(r1.stuckAt?.process, 2, `the read is the operation that cannot be placed: ${r1.explanation}`);
  assert.deepEqual(
    r1.prefix?.map((op) => op.input),
    ['a', 'b'],
    'after the two writes, the longest linearizable prefix',
  );
  assert.match(
    r1.explanation ?? '',
    /key "k": at most 2 of its 3[\s\S]*leaving the value "b"[\s\S]*process 2 read null -> "a"/,
    `explanation: ${r1.explanation}`,
  );

  const lost = hist(
    line('invoke', 1, 'write', 'k', 'a', 0),
    line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 2, 'read', 'k', null, 2),
    line('ok', 2, 'read', 'k', null, 3),
  );
  assert.equal(checkHistoryText(lost).verdict, 'violation', 'an acknowledged write is missing later');

  const timedOut = hist(
    line('invoke', 1, 'write', 'k', 'a', 0),
    line('info', 1, 'write', 'k', null, 1),
    line('invoke', 2, 'read', 'k', null, 2),
    line('ok', 2, 'read', 'k', null, 3),
    line('invoke', 3, 'read', 'k', null, 4),
    line('ok', 3, 'read', 'k', 'a', 5),
  );
  assert.equal(checkHistoryText(timedOut).verdict, 'ok', 'a timed-out write may take effect later');
  assert.equal(
    checkHistoryText(timedOut.replace('"info"', '"fail"')).verdict,
    'violation',
    'a write that certainly failed must never appear',
  );

  const casBad = hist(
    line('invoke', 1, 'write', 'k', 'a', 0),
    line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 2, 'cas', 'k', ['x', 'y'], 2),
    line('ok', 2, 'cas', 'k', true, 3),
  );
  assert.equal(
    checkHistoryText(casBad).verdict,
    'violation',
    'cas succeeded although the value was not the expected one',
  );
  const casOk = hist(
    line('invoke', 1, 'write', 'k', 'a', 0),
    line('ok', 1, 'write', 'k', 'a', 1),
    line('invoke', 2, 'cas', 'k', ['a', 'y'], 2),
    line('ok', 2, 'cas', 'k', true, 3),
    line('invoke', 3, 'cas', 'k', ['a', 'z'], 4),
    line('ok', 3, 'cas', 'k', false, 5),
    line('invoke', 4, 'read', 'k', null, 6),
    line('ok', 4, 'read', 'k', 'y', 7),
  );
  assert.equal(checkHistoryText(casOk).verdict, 'ok', 'a correct cas sequence');
});

test('concurrency: overlapping operations may take effect in either order; keys are independent', () => {
  const h = hist(
    line('invoke', 1, 'write', 'k', 'a', 0),
    line('invoke', 2, 'write', 'k', 'b', 1),
    line('invoke', 3, 'read', 'k', null, 2),
    line('ok', 3, 'read', 'k', 'b', 3),
    line('invoke', 4, 'read', 'j', null, 3),
    line('ok', 4, 'read', 'j', null, 4),
    line('invoke', 5, 'read', 'k', null, 4),
    line('ok', 5, 'read', 'k', 'a', 5),
    line('ok', 1, 'write', 'k', 'a', 6),
    line('ok', 2, 'write', 'k', 'b', 7),
  );
  const r = checkHistoryText(h);
  assert.equal(r.verdict, 'ok', 'b then a, both writes still pending while read');
  assert.equal(r.keys, 2, 'two keys');
  const backwards = h + `\n${line('invoke', 6, 'read', 'k', null, 8)}\n${line('ok', 6, 'read', 'k', 'b', 9)}`;
  assert.equal(
    checkHistoryText(backwards).verdict,
    'violation',
    'after reading a (so b came first), b cannot come back',
  );
});

test('the time and memory budgets answer unknown instead of hanging', () => {
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
  assert.match(r.explanation ?? '', /time budget \(300 ms\) spent on key "k"/, `says why: ${r.explanation}`);
  const m = checkHistoryText(lines.join('\n'), { timeoutMs: 60_000, maxMemoBytes: 1 << 20 });
  assert.equal(m.verdict, 'unknown', `a search too large for the memo budget: ${m.verdict}`);
  assert.match(m.explanation ?? '', /memo budget/, `says why: ${m.explanation}`);
});

test('malformed histories are refused naming the line', () => {
  const cases: [string, RegExp][] = [
    [`${line('invoke', 1, 'write', 'k', 'a', 0)}\nnot json`, /line 2: not JSON/],
    [line('invoke', 1, 'delete', 'k', 'a', 0), /line 1: f must be read, write or cas/],
    [
      `${line('invoke', 1, 'write', 'k', 'a', 0)}\n${line('invoke', 1, 'write', 'k', 'b', 1)}`,
      /line 2: process 1 invoked again/,
    ],
    [line('ok', 1, 'write', 'k', 'a', 0), /line 1: a ok for process 1 with no pending invoke/],
    [JSON.stringify({ type: 'invoke', process: 1, f: 'read', key: 'k', time: 0 }), /line 1: value is required/],
    [line('invoke', 1, 'cas', 'k', 'x', 0), /line 1: a cas invoke needs value \[expected, new\]/],
  ];
  for (const [text, re] of cases)
    assert.throws(
      () => parseHistory(text),
      (e: unknown) => e instanceof HistoryError && re.test(e.message),
      `refused: ${re}`,
    );
});

test('values are compared as JSON values: object key order does not matter', () => {
  const h = hist(
    line('invoke', 1, 'write', 'k', { a: 1, b: [1, { c: 2, d: 3 }] }, 0),
    line('ok', 1, 'write', 'k', { a: 1, b: [1, { c: 2, d: 3 }] }, 1),
    line('invoke', 2, 'read', 'k', null, 2),
    line('ok', 2, 'read', 'k', { b: [1, { d: 3, c: 2 }], a: 1 }, 3),
    line('invoke', 3, 'cas', 'k', [{ b: [1, { d: 3, c: 2 }], a: 1 }, 5], 4),
    line('ok', 3, 'cas', 'k', true, 5),
  );
  assert.equal(checkHistoryText(h).verdict, 'ok', 'same value, other key order');
});

// The property's histories: a sequential run of a register, each operation taking effect at its
// own instant 10 apart, then each interval widened by up to 60 on either side (so an operation
// overlaps up to a dozen others) without moving any effect. Writes and cas may also end as info
// (with or without having taken effect) or, when they had no effect, as fail.
const opArb = fc.record({
  f: fc.constantFrom('read', 'write', 'cas'),
  key: fc.constantFrom('a', 'b'),
  v: fc.integer({ min: 0, max: 3 }),
  e: fc.option(fc.integer({ min: 0, max: 3 })),
  before: fc.integer({ min: 0, max: 60 }),
  after: fc.integer({ min: 0, max: 60 }),
  end: fc.constantFrom('ok', 'ok', 'ok', 'info-applied', 'info-lost', 'fail'),
});
type GenOp = typeof opArb extends fc.Arbitrary<infer T> ? T : never;
function simulate(ops: GenOp[]): { lines: string[]; readLines: number[] } {
  const state = new Map<string, number | null>();
  const events: [number, string][] = [];
  ops.forEach((o, k) => {
    const point = 10 * k;
    const cur = state.get(o.key) ?? null;
    const end = o.f === 'read' ? 'ok' : o.end;
    const effect = end === 'ok' || end === 'info-applied';
    let value: unknown = null;
    let out: unknown = null;
    if (o.f === 'read') out = cur;
    else if (o.f === 'write') {
      value = o.v;
      out = o.v;
      if (effect) state.set(o.key, o.v);
    } else {
      value = [o.e, o.v];
      out = cur === o.e;
      if (effect && out) state.set(o.key, o.v);
    }
    const t1 = point - o.before - 0.5;
    const t2 = point + o.after + 0.5;
    events.push([t1, line('invoke', k, o.f, o.key, value, t1)]);
    const type = end === 'ok' ? 'ok' : end === 'fail' ? 'fail' : 'info';
    events.push([t2, line(type, k, o.f, o.key, type === 'ok' ? out : null, t2)]);
  });
  events.sort((x, y) => x[0] - y[0]);
  const lines = events.map((e) => e[1]);
  return {
    lines,
    readLines: lines.flatMap((l, i) => (l.includes('"type":"ok"') && l.includes('"f":"read"') ? [i] : [])),
  };
}

test('property: widening a sequential run around each effect keeps it linearizable; a read of a value never written breaks it', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.nat(), (ops, pick) => {
      const { lines, readLines } = simulate(ops);
      const r = checkHistoryText(lines.join('\n'), { timeoutMs: 10_000 });
      if (r.verdict !== 'ok') return false;
      if (readLines.length === 0) return true;
      const at = readLines[pick % readLines.length];
      const broken = lines.slice();
      broken[at] = JSON.stringify({ ...JSON.parse(broken[at]), value: 99 });
      return checkHistoryText(broken.join('\n'), { timeoutMs: 10_000 }).verdict === 'violation';
    }),
    { numRuns: LONG ? 5000 : 300, seed: 42 },
  );
});

test('CLI: exit 0 ok, 1 violation, 3 unknown, 2 usage or malformed (naming the line)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-check-'));
  try {
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const ok = file(
      'ok.jsonl',
      hist(
        line('invoke', 1, 'write', 'k', 1, 0),
        line('ok', 1, 'write', 'k', 1, 1),
        line('invoke', 2, 'read', 'k', null, 2),
        line('ok', 2, 'read', 'k', 1, 3),
      ),
    );
    const bad = file(
      'bad.jsonl',
      hist(
        line('invoke', 1, 'write', 'k', 1, 0),
        line('ok', 1, 'write', 'k', 1, 1),
        line('invoke', 2, 'read', 'k', null, 2),
        line('ok', 2, 'read', 'k', 2, 3),
      ),
    );
    const slow: string[] = [];
    for (let i = 0; i < 60; i++) slow.push(line('invoke', i, 'write', 'k', i, i));
    slow.push(line('invoke', 99, 'read', 'k', null, 60), line('ok', 99, 'read', 'k', -1, 1000));
    const hard = file('hard.jsonl', slow.join('\n'));
    const broken = file('broken.jsonl', `${line('invoke', 1, 'write', 'k', 1, 0)}\n\n{"type":"ok"`);
    const cli = join(import.meta.dirname, '../check/cli.ts');
    const run = (...args: string[]) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', cli, ...args], { timeout: 60_000 })
        .then((r) => ({ code: 0, out: r.stdout, err: r.stderr }))
        .catch((e: { code?: number; stdout?: string; stderr?: string }) => ({
          code: e.code,
          out: e.stdout ?? '',
          err: e.stderr ?? '',
        }));
    const [a, b, c, d, e, f] = await Promise.all([
      run(ok),
      run(bad),
      run(hard, '--timeout-ms', '200'),
      run(broken),
      run(),
      run(ok, '--timeout-ms', 'soon'),
    ]);
    assert.equal(a.code, 0, `ok history: ${a.out}${a.err}`);
    assert.match(a.out, /^ok: 2 operations on 1 keys/, `ok output: ${a.out}`);
    assert.equal(b.code, 1, `violation: ${b.out}${b.err}`);
    assert.match(b.out, /violation[\s\S]*key "k"[\s\S]*process 2 read null -> 2/, `violation output: ${b.out}`);
    assert.equal(c.code, 3, `unknown: ${c.out}${c.err}`);
    assert.match(c.out, /^unknown[\s\S]*time budget \(200 ms\) spent on key "k"/, `unknown output: ${c.out}`);
    assert.equal(d.code, 2, `malformed: ${d.out}${d.err}`);
    assert.match(d.err, /history line 3: not JSON/, `malformed names the line: ${d.err}`);
    assert.equal(e.code, 2, `no file: ${e.err}`);
    assert.match(e.err, /usage/, `usage printed: ${e.err}`);
    assert.equal(f.code, 2, `bad budget: ${f.err}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
