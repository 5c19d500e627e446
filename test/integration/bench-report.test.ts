// The benchmark suite's output side: compare verdicts against the noise band, SVG charts that
// stay well-formed on awkward data, and the Markdown report and files written from a Results.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareResults, formatComparison } from '../../src/bench/compare.js';
import { renderReport, writeReport } from '../../src/bench/report.js';
import { compact, logTicks, niceTicks, renderChart, renderFamily } from '../../src/bench/svg.js';
import type { Chart, Figure, Results } from '../../src/bench/results.js';

function results(figures: Figure[], over: Partial<Results> = {}): Results {
  return {
    schema: 1,
    machine: {
      cpuModel: 'Test CPU 3000',
      cores: 8,
      memoryGiB: 16,
      platform: 'linux 6.1 x64',
      node: 'v20.19.0',
      dependencies: { lmdb: '3.5.6' },
      date: '2025-01-01T00:00:00.000Z',
      fsync: { p50Ms: 0.85, p99Ms: 4.2, samples: 200 },
    },
    nodeCode: 'dist (abc1234)',
    quick: false,
    repeat: 1,
    startedAt: '2025-01-01T00:00:00.000Z',
    durationSec: 754,
    ran: ['cluster'],
    figures,
    tables: [],
    charts: [],
    targets: [],
    peers: {},
    scenarios: {},
    ...over,
  };
}

const fig = (id: string, value: number, better: Figure['better'] = 'higher', samples?: number[]): Figure => ({
  id,
  family: 'throughput',
  label: id,
  value,
  unit: 'writes/s',
  better,
  ...(samples ? { samples } : {}),
});

test('compare: a 30% throughput drop is a regression, a 5% drop is not', () => {
  const c = compareResults(
    results([fig('a', 100_000), fig('b', 100_000), fig('gone', 1)]),
    results([fig('a', 70_000), fig('b', 95_000), fig('new', 1)]),
  );
  const a = c.rows.find((r) => r.id === 'a')!;
  const b = c.rows.find((r) => r.id === 'b')!;
  assert.equal(a.verdict, 'worse');
  assert.equal(a.regression, true);
  assert.ok(Math.abs(a.ratio - 0.7) < 1e-9);
  assert.equal(b.verdict, 'same');
  assert.equal(b.regression, false);
  assert.deepEqual(
    c.onlyBefore.map((f) => f.id),
    ['gone'],
  );
  assert.deepEqual(
    c.onlyAfter.map((f) => f.id),
    ['new'],
  );
  assert.equal(c.counts.regressions, 1);
  assert.deepEqual(c.warnings, [], 'same machine, no warnings');
  const text = formatComparison(c);
  assert.match(text, /^a\s.*REGRESSION$/m, 'the regressed row is flagged');
  assert.doesNotMatch(text, /^b\s.*REGRESSION/m, 'the 5% row is not');
  assert.match(text, /2 figures compared, 1 regression beyond noise/);
});

test('compare: lower-is-better latency, none and zero baselines', () => {
  const c = compareResults(
    results([fig('p99', 10, 'lower'), fig('p50', 10, 'lower'), fig('info', 5, 'none'), fig('zero', 0)]),
    results([fig('p99', 14, 'lower'), fig('p50', 6, 'lower'), fig('info', 50, 'none'), fig('zero', 10)]),
  );
  const by = (id: string) => c.rows.find((r) => r.id === id)!;
  assert.equal(by('p99').verdict, 'worse', 'latency up 40% is worse');
  assert.equal(by('p99').regression, true);
  assert.equal(by('p50').verdict, 'better', 'latency down 40% is better');
  assert.equal(by('p50').regression, false);
  assert.equal(by('info').verdict, 'n/a');
  assert.equal(by('zero').verdict, 'n/a');
  assert.ok(Number.isNaN(by('zero').ratio));
});

test('compare: sample spread widens the noise band; differing machines warn', () => {
  // Before samples range 70k..130k around 100k: 60% spread, so a 30% drop is within noise.
  const noisy = compareResults(
    results([fig('a', 100_000, 'higher', [70_000, 100_000, 130_000])]),
    results([fig('a', 70_000, 'higher', [69_000, 70_000, 71_000])]),
  );
  assert.ok(Math.abs(noisy.rows[0].noise - 0.6) < 1e-9);
  assert.equal(noisy.rows[0].verdict, 'same');
  assert.equal(noisy.rows[0].regression, false);
  // The base noise option applies too.
  const loose = compareResults(results([fig('a', 100)]), results([fig('a', 70)]), { noise: 0.5 });
  assert.equal(loose.rows[0].verdict, 'same');
  const other = results([fig('a', 70)]);
  other.machine = { ...other.machine, cpuModel: 'Other CPU', cores: 64 };
  const cross = compareResults(results([fig('a', 100)]), other, { beforeLabel: 'old/results.json' });
  assert.equal(cross.sameMachine, false);
  assert.match(cross.warnings.join('\n'), /not comparable/);
  assert.match(formatComparison(cross), /WARNING: different machines/);
  assert.equal(cross.before.label, 'old/results.json');
});

const lineChart: Chart = {
  family: 'throughput',
  title: 'Writes/s vs groups & <payload>',
  kind: 'line',
  xLabel: 'active groups',
  yLabel: 'writes/s',
  xLog: true,
  series: [
    {
      name: '16 B',
      points: [
        [1, 20_000],
        [10, 80_000],
        [100, 150_000],
        [1000, 210_000],
        [10_000, 190_000],
      ],
    },
    {
      name: '1 KiB "big"',
      points: [
        [1, 15_000],
        [1000, NaN],
        [10_000, 90_000],
        [0, 5],
      ],
    },
    { name: 'empty', points: [] },
  ],
};

function assertWellFormed(svg: string): void {
  assert.ok(svg.startsWith('<svg'), 'starts with <svg');
  assert.match(svg, /xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.ok(!svg.includes('NaN') && !svg.includes('Infinity'), 'no NaN/Infinity');
  // Every & must start an entity, and no raw < may appear inside text content.
  assert.doesNotMatch(svg, /&(?!amp;|lt;|gt;|quot;|#39;)/);
  assert.doesNotMatch(svg, />[^<]*[<][^/a-z]/);
  // Tags balance (self-closing ones excluded).
  const opens = [...svg.matchAll(/<([a-z]+)[^>]*?(\/?)>/g)].filter((m) => m[2] !== '/').map((m) => m[1]);
  const closes = [...svg.matchAll(/<\/([a-z]+)>/g)].map((m) => m[1]);
  assert.deepEqual(opens.sort(), closes.sort(), 'every opened element is closed');
}

test('svg: line chart with log x, escaped text, every series named, no NaN', () => {
  const svg = renderChart(lineChart);
  assertWellFormed(svg);
  for (const name of ['16 B', '1 KiB &quot;big&quot;', 'empty'])
    assert.ok(svg.includes(`>${name}<`), `legend has ${name}`);
  assert.ok(svg.includes('Writes/s vs groups &amp; &lt;payload&gt;'));
  for (const label of ['>1<', '>10<', '>100<', '>1k<', '>10k<', '>200k<'])
    assert.ok(svg.includes(label), `tick ${label}`);
});

test('svg: ticks are round and labels compact', () => {
  assert.deepEqual(logTicks(1, 10_000).ticks, [1, 10, 100, 1000, 10_000]);
  assert.deepEqual(logTicks(3, 40).ticks, [1, 2, 5, 10, 20, 50, 100], 'few decades get 2 and 5 multiples');
  assert.deepEqual(niceTicks(0, 213_000).ticks, [0, 50_000, 100_000, 150_000, 200_000, 250_000]);
  assert.deepEqual(niceTicks(0, 0.3).ticks, [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]);
  const one = niceTicks(5, 5);
  assert.ok(one.min < 5 && one.max > 5 && one.ticks.length > 1, 'a single value still gets a span');
  assert.deepEqual([1500, 10_000, 1_500_000, 999_999, 0.25, 0, -2000, NaN].map(compact), [
    '1.5k',
    '10k',
    '1.5M',
    '1M',
    '0.25',
    '0',
    '-2k',
    '',
  ]);
});

test('svg: bar, timeline, degenerate data and a family file', () => {
  const bar: Chart = {
    family: 'http',
    title: 'HTTP gateway',
    kind: 'bar',
    xLabel: 'system',
    yLabel: 'ops/s',
    categories: ['flotilla', 'etcd'],
    series: [
      {
        name: 'writes',
        points: [
          [0, 12_000],
          [1, 9000],
        ],
      },
      {
        name: 'reads',
        points: [
          [0, 30_000],
          [2, 0],
        ],
      },
    ],
  };
  const timeline: Chart = {
    family: 'failover',
    title: 'Kill -9',
    kind: 'timeline',
    xLabel: 'seconds',
    yLabel: 'writes/s',
    series: [
      {
        name: 'writes/s',
        points: [
          [0, 5000],
          [1, 5200],
          [2, 0],
          [3, 4800],
        ],
      },
    ],
    markers: [
      { x: 1.5, label: 'kill -9 n3' },
      { x: NaN, label: 'bad' },
    ],
  };
  const blank: Chart = {
    family: 'idle',
    title: 'nothing',
    kind: 'line',
    xLabel: 'x',
    yLabel: 'y',
    xLog: true,
    series: [{ name: 'zeros', points: [[0, 0]] }],
  };
  const single: Chart = {
    family: 'idle',
    title: 'one',
    kind: 'line',
    xLabel: 'x',
    yLabel: 'y',
    series: [{ name: 'one', points: [[5, 0]] }],
  };
  for (const ch of [bar, timeline, blank, single]) {
    const svg = renderChart(ch);
    assertWellFormed(svg);
    for (const s of ch.series) assert.ok(svg.includes(`>${s.name}<`), `${ch.title}: legend has ${s.name}`);
  }
  assert.ok(renderChart(bar).includes('>flotilla<') && renderChart(bar).includes('>etcd<'), 'category labels');
  assert.equal((renderChart(bar).match(/<rect x=/g) ?? []).length, 2 + 4, 'two legend swatches and four bars');
  assert.ok(renderChart(timeline).includes('kill -9 n3'), 'marker label');
  assert.ok(renderChart(blank).includes('no data'), 'log axis with only x=0 has nothing to draw');
  const fam = renderFamily('failover', [timeline, bar]);
  assertWellFormed(fam);
  assert.equal((fam.match(/<svg/g) ?? []).length, 1, 'one svg document');
  assert.match(fam, /height="834"/, 'two 400px panels under a 34px header');
});

test('report: targets, tables, figures, peers, comparison; writeReport writes files', () => {
  const r = results([fig('throughput/1000g/16B/writesPerSec', 123_456, 'higher', [120_000, 123_456, 130_000])], {
    repeat: 3,
    tables: [
      {
        family: 'throughput',
        title: 'Embedded API',
        columns: ['groups', 'writes/s', 'p99 ms'],
        rows: [
          [1000, 123_456, 4.56],
          ['1 | 2', 5, 0.5],
        ],
        note: 'fsync on',
      },
    ],
    charts: [lineChart, { ...lineChart, family: 'failover', kind: 'timeline', title: 'kill' }],
    targets: [
      { id: 't1', text: '100k writes/s at 1,000 groups', met: true, detail: '123k' },
      { id: 't2', text: 'failover < 2 s', met: false, detail: '3.1 s' },
      { id: 't3', text: 'beats etcd', met: null, detail: 'etcd not installed' },
    ],
    peers: {
      etcd: { available: false, reason: 'etcd binary not found' },
      pysyncobj: { available: true, version: '0.3.12' },
    },
  });
  const before = results([fig('throughput/1000g/16B/writesPerSec', 200_000)]);
  const cmp = compareResults(before, r, { beforeLabel: 'baseline.json' });
  const md = renderReport(r, { compare: cmp });
  assert.match(md, /^# /);
  assert.match(md, /\| 100k writes\/s at 1,000 groups \| ✅ met \| 123k \|/);
  assert.match(md, /\| failover < 2 s \| ❌ missed \| 3\.1 s \|/);
  assert.match(md, /\| beats etcd \| – not measured \| etcd not installed \|/);
  assert.match(md, /\| 1,000 \| 123,456 \| 4\.56 \|/, 'numeric table cells formatted');
  assert.match(md, /\| 1 \\\| 2 \| 5 \| 0\.5 \|/, 'pipes in cells escaped');
  assert.match(md, /_fsync on_/);
  assert.match(md, /123,456 writes\/s \(median of 3, spread ±4\.1%\)/);
  assert.match(md, /!\[[^\]]+\]\(chart-throughput\.svg\)/);
  assert.match(md, /Test CPU 3000, 8 cores/);
  assert.match(md, /p50 0\.85 ms, p99 4\.2 ms/);
  assert.match(md, /etcd: skipped — etcd binary not found/);
  assert.match(md, /pysyncobj: available \(0\.3\.12\)/);
  assert.match(md, /## Compared with baseline\.json/);
  assert.match(md, /\| 200,000 writes\/s \| 123,456 writes\/s \| 0\.62x \| ±10% \| ❌ worse \(regression\) \|/);
  assert.ok(md.indexOf('## Throughput') < md.indexOf('## Unplanned failover'), 'families in FAMILY_TITLES order');

  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-report-'));
  try {
    const { markdown, svgs } = writeReport(join(dir, 'out'), r, cmp);
    assert.deepEqual(readdirSync(join(dir, 'out')).sort(), ['chart-failover.svg', 'chart-throughput.svg', 'report.md']);
    assert.equal(readFileSync(join(dir, 'out', 'report.md'), 'utf8'), markdown);
    assert.equal(svgs.length, 2);
    for (const p of svgs) assertWellFormed(readFileSync(p, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
