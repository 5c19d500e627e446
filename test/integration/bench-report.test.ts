// The benchmark suite's output side: compare verdicts against the noise band, SVG charts that
// stay well-formed on awkward data, the Markdown report and files written from a Results, the
// provenance they carry, repeated runs folded into medians with ranges, readable labels, and the
// failover and latency-against-throughput charts built from scenario rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareResults, formatComparison } from '../../src/bench/compare.js';
import { renderReport, writeReport } from '../../src/bench/report.js';
import { compact, logTicks, niceTicks, renderChart, renderFamily } from '../../src/bench/svg.js';
import type { Chart, Figure, Results, Table } from '../../src/bench/results.js';
import { codeSource, collectProvenance, commandLine, type Provenance } from '../../src/bench/provenance.js';
import { foldCharts, foldTables } from '../../src/bench/repeat.js';
import { count, failoverChart, latencyThroughputChart, rowLabel } from '../../src/bench/charts.js';

const PROVENANCE: Provenance = {
  code: { kind: 'git', commit: 'abc1234', dirty: false, changedFiles: 0 },
  version: '0.1.0',
  args: ['throughput', '--repeat', '3', '--balancer', '{"intervalMs":500}'],
  command: `flotilla bench throughput --repeat 3 --balancer '{"intervalMs":500}'`,
  date: '2025-01-01T00:00:00.000Z',
};

function results(figures: Figure[], over: Partial<Results> = {}): Results {
  return {
    schema: 1,
    provenance: PROVENANCE,
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
  assert.match(md, /\| failover < 2 s \| ❌ missed \| the median of 3 runs \| 3\.1 s \|/);
  assert.match(md, /\| beats etcd \| – not measured \| {2}\| etcd not installed \|/);
  assert.match(md, /\| 1,000 \| 123,456 \| 4\.56 \|/, 'numeric table cells formatted');
  assert.match(md, /\| 1 \\\| 2 \| 5 \| 0\.5 \|/, 'pipes in cells escaped');
  assert.match(md, /_fsync on_/);
  assert.match(md, /\| throughput\/1000g\/16B\/writesPerSec \| 123,456 writes\/s \| 120,000–130,000 writes\/s \|/);
  assert.match(md, /Each target is judged on the median of 3 runs/);
  assert.match(md, /\| 100k writes\/s at 1,000 groups \| ✅ met \| the median of 3 runs \| 123k \|/);
  assert.match(md, /!\[[^\]]+\]\(chart-throughput\.svg\)/);
  assert.match(md, /Test CPU 3000, 8 cores/);
  assert.match(md, /p50 0\.85 ms, p99 4\.2 ms/);
  assert.match(md, /etcd: skipped — etcd binary not found/);
  assert.match(md, /pysyncobj: available \(0\.3\.12\)/);
  assert.match(md, /## Compared with baseline\.json/);
  assert.match(md, /Before: commit abc1234 \(clean\), flotilla 0\.1\.0, run 2025-01-01/);
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

test('provenance: the commit of this checkout, none for a tree that is not one, quoted command', () => {
  const p = collectProvenance(['micro', '--quick'], new Date('2026-01-02T03:04:05.000Z'));
  assert.equal(p.code.kind, 'git', 'the tests run in a clone');
  if (p.code.kind === 'git') {
    const head = spawnSync('git', ['rev-parse', '--short=7', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(p.code.commit, head);
    assert.equal(p.code.dirty, p.code.changedFiles > 0);
  }
  assert.match(p.version, /^\d+\.\d+\.\d+/);
  assert.deepEqual(p.args, ['micro', '--quick']);
  assert.equal(p.command, 'flotilla bench micro --quick');
  assert.equal(p.date, '2026-01-02T03:04:05.000Z');
  assert.equal(commandLine(['--balancer', `{"a":1}`, "it's"]), `flotilla bench --balancer '{"a":1}' 'it'\\''s'`);

  const dir = mkdtempSync(join(tmpdir(), 'flotilla-provenance-'));
  try {
    assert.deepEqual(codeSource(dir), { kind: 'none', reason: 'not a git checkout' });
    // A package installed inside someone else's repository: that repository's commit is not ours.
    assert.equal(spawnSync('git', ['init', '-q', dir]).status, 0);
    const nested = join(dir, 'node_modules', 'flotilla');
    mkdirSync(nested, { recursive: true });
    assert.deepEqual(codeSource(nested), { kind: 'none', reason: 'not a git checkout' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('report and every svg carry the provenance; an old results.json says it has none', () => {
  const r = results([fig('throughput/1g/16B/writesPerSec', 80_000)], { charts: [lineChart] });
  const md = renderReport(r);
  assert.match(md, /- Code: flotilla 0\.1\.0, commit abc1234 \(clean\)/);
  assert.ok(md.includes(`- Command: \`${PROVENANCE.command}\``));
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-prov-'));
  try {
    const { svgs } = writeReport(dir, { ...r, charts: [lineChart, { ...lineChart, family: 'http' }] });
    assert.equal(svgs.length, 2);
    for (const p of svgs) {
      const svg = readFileSync(p, 'utf8');
      assertWellFormed(svg);
      assert.match(svg, /class="provenance"/);
      assert.ok(svg.includes('flotilla 0.1.0, commit abc1234 (clean), 2025-01-01T00:00:00Z'), p);
      assert.ok(
        svg.includes('flotilla bench throughput --repeat 3 --balancer &#39;{&quot;intervalMs&quot;:500}&#39;'),
        p,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const old = results([fig('a', 1)], { provenance: undefined });
  assert.match(renderReport(old), /no provenance recorded/);
  assert.match(renderFamily('throughput', [lineChart], ['provenance not recorded']), /provenance not recorded/);
  // Compared against a file without provenance: the report says so, and the comparison warns.
  const cmp = compareResults(old, results([fig('a', 1)]), { beforeLabel: 'somewhere/results.json' });
  assert.match(cmp.warnings.join('\n'), /record no provenance/);
  const withCmp = renderReport(results([fig('a', 1)]), { compare: cmp });
  assert.match(withCmp, /Before: no provenance recorded \(its commit is unknown\), run 2025-01-01/);
  assert.match(withCmp, /After: commit abc1234 \(clean\)/);
  const dirty = results([fig('a', 1)], {
    provenance: { ...PROVENANCE, code: { kind: 'git', commit: 'def5678', dirty: true, changedFiles: 3 } },
  });
  assert.match(
    compareResults(dirty, results([fig('a', 1)])).warnings.join('\n'),
    /uncommitted changes on top of commit def5678/,
  );
});

/** One run's tables as the throughput scenario builds them. */
function runTables(k: number, openRows: number): Table[] {
  return [
    {
      family: 'throughput',
      title: 'Committed writes',
      keyColumns: 3,
      columns: ['active groups', 'value', 'writers', 'writes/s', 'p99 (ms)', 'errors', 'CPU per node (%)', 'ratio'],
      rows: [
        [
          1,
          '16 B',
          3000,
          [70_000, 80_000, 75_000][k],
          [30, 20, 25][k],
          0,
          ['80/40/40', '81/40/39', '80/40/40'][k],
          `${[1.1, 1.3, 1.2][k]}x`,
        ],
        [1000, '16 B', 3000, [40_000, 44_000, 43_000][k], 200, 0, '50/50/50', ''],
      ],
    },
    {
      family: 'throughput',
      title: 'Open loop',
      columns: ['offered writes/s', 'done writes/s', 'p99 (ms)'],
      // The sweep stops early in some runs: fewer rows.
      rows: [
        [5000, 5000 - k, 40 + k],
        [10_000, 9900 + k, 60 + k],
        [20_000, 15_000, 700],
      ].slice(0, openRows),
    },
  ];
}

test('repeat 3: table cells are medians with the range, every figure shows both, no "Figures:" lists', () => {
  const tables = foldTables([runTables(0, 3), runTables(1, 2), runTables(2, 3)]);
  assert.deepEqual(tables[0].rows[0].slice(0, 3), [1, '16 B', 3000], 'key columns kept');
  assert.deepEqual(tables[0].rows[0][3], { median: 75_000, min: 70_000, max: 80_000, runs: 3 });
  assert.deepEqual(tables[0].rows[0][5], { median: 0, min: 0, max: 0, runs: 3 }, 'shown plain: see below');
  assert.equal(tables[1].rows.length, 3, 'a row only two runs reached is kept');
  const figures = [
    { ...fig('throughput/1g/16B/writesPerSec', 75_000, 'higher', [70_000, 80_000, 75_000]), inTable: true },
    {
      ...fig('throughput/elect/1000g/seconds', 3.5, 'lower', [3.1, 4.2, 3.5]),
      label: 'time to elect 1,000 groups',
      unit: 's',
    },
  ];
  const r = results(figures, { repeat: 3, tables });
  const md = renderReport(r);
  assert.match(
    md,
    /\| 1 \| 16 B \| 3,000 \| 75,000 \(70,000–80,000\) \| 25 \(20–30\) \| 0 \| 80\/40\/40 · 81\/40\/39 · 80\/40\/40 \| 1\.2x \(1\.1–1\.3x\) \|/,
  );
  assert.match(md, /\| 1,000 \| 16 B \| 3,000 \| 43,000 \(40,000–44,000\) \| 200 \| 0 \| 50\/50\/50 \| {2}\|/);
  assert.match(md, /\| 20,000 \| 15,000 \(2 of 3 runs\) \| 700 \(2 of 3 runs\) \|/);
  assert.match(md, /_Cells: the median of the 3 runs \(min–max when they differ\)\._/);
  assert.match(md, /every figure and table cell is the median of the 3 runs/);
  // The figure a table shows is not listed again; the one no table shows gets median and range.
  assert.doesNotMatch(md, /^Figures:/m);
  assert.doesNotMatch(md, /^- .*: \*\*/m, 'no bullet list of figures');
  assert.ok(!md.includes('throughput/1g/16B/writesPerSec'), 'the tabled figure is not repeated');
  assert.match(md, /### Other figures\n\n\| Figure \| Median of 3 runs \| Range of the runs \|/);
  assert.match(md, /\| time to elect 1,000 groups \| 3\.5 s \| 3\.1–4\.2 s \|/);

  // Charts fold the same way: line points are medians, a timeline is the last run's, named so.
  const line = (k: number): Chart => ({
    ...lineChart,
    series: [
      {
        name: '16 B',
        points: [
          [1, [10, 30, 20][k]],
          [100, [5, 5, 8][k]],
        ],
      },
    ],
  });
  const tl = (k: number): Chart => ({
    ...lineChart,
    kind: 'timeline',
    title: 'kill',
    series: [{ name: 'w', points: [[0, k]] }],
  });
  const charts = foldCharts([0, 1, 2].map((k) => [line(k), tl(k)]));
  assert.deepEqual(charts[0].series[0].points, [
    [1, 20],
    [100, 5],
  ]);
  assert.match(charts[0].title, /median of 3 runs/);
  assert.deepEqual(charts[1].series[0].points, [[0, 2]]);
  assert.match(charts[1].title, /the last of 3 runs/);
  // One run: nothing folded, plain cells.
  assert.deepEqual(foldTables([runTables(0, 3)]), runTables(0, 3));
});

test('labels: rows, counts and chart categories read as words', () => {
  assert.equal(rowLabel({ activeGroups: 1, valueBytes: 16, proposers: 3000 }), '1 group, 16 B, 3,000 writers');
  assert.equal(rowLabel({ activeGroups: 1000, valueBytes: 1024, proposers: 3000 }, 3000), '1,000 groups, 1,024 B');
  assert.equal(
    rowLabel({ activeGroups: 1000, valueBytes: 16, proposers: 256 }, 3000),
    '1,000 groups, 16 B, 256 writers',
  );
  assert.equal(count(1, 'client'), '1 client');
  assert.equal(count(256, 'client'), '256 clients');
  const bar: Chart = {
    family: 'throughput',
    title: 'Write latency percentiles',
    kind: 'bar',
    xLabel: 'active groups, value size',
    yLabel: 'ms',
    categories: [1, 100, 1000, 10_000].map((g) => rowLabel({ activeGroups: g, valueBytes: 16, proposers: 3000 }, 3000)),
    series: [
      {
        name: 'p99',
        points: [
          [0, 10],
          [1, 20],
          [2, 30],
          [3, 40],
        ],
      },
    ],
  };
  const svg = renderChart(bar);
  assertWellFormed(svg);
  assert.ok(svg.includes('>10,000 groups, 16 B<'));
  assert.doesNotMatch(svg, /\d+g \d+B/, 'no abbreviations such as "1g 16B"');
});

const killTimeline = {
  bucketMs: 500,
  startMs: 0,
  // 4 s at ~20,000/s, the kill at 4 s, 0.5 s with nothing, then back.
  writesPerSec: [20_000, 20_000, 20_000, 20_000, 19_000, 21_000, 20_000, 20_000, 0, 8000, 20_000, 20_000],
  markers: [
    { x: 4, label: 'kill -9 n2' },
    { x: 4.4, label: 'all led again' },
  ],
};
const etcdKillRun = {
  version: '3.4.23',
  clients: 16,
  // 100 ms buckets at 200/s (20 per bucket) for 5 s; the kill at 5 s; 1 s of nothing; back.
  timeline: { bucketMs: 100, ok: [...new Array(50).fill(20), ...new Array(10).fill(0), ...new Array(20).fill(20)] },
  killAtTimelineMs: 5000,
  writesPossibleMs: 1004,
};

test('failover chart: etcd has a line when etcd was measured, on one axis from the kill', () => {
  const both = failoverChart(
    {
      timeline: killTimeline,
      victim: 'n2',
      victimLeaders: 490,
      reelectedMs: 400,
      load: 'embedded API, 64 writers per node',
    },
    etcdKillRun,
  )!;
  assert.equal(both.series.length, 2);
  const [f, e] = both.series;
  assert.match(f.name, /^flotilla \(embedded API/);
  assert.match(e.name, /^etcd 3\.4\.23 \(HTTP gateway, 16 clients\)/);
  const at = (pts: [number, number][], x: number) => pts.find((p) => Math.abs(p[0] - x) < 1e-9)?.[1];
  assert.equal(at(f.points, -1), 100, 'flotilla before the kill: 100% of its own rate');
  assert.equal(at(f.points, 0), 0, 'flotilla: nothing in the bucket of the kill');
  assert.equal(at(f.points, 0.5), 40);
  assert.equal(at(e.points, -1), 100);
  assert.equal(at(e.points, 0.5), 0);
  assert.equal(at(e.points, 1.5), 100);
  assert.deepEqual(
    both.markers!.map((m) => m.label),
    ['kill -9 of a leader', 'flotilla: all led again', 'etcd: writes possible'],
  );
  const svg = renderFamily('failover', [both]);
  assertWellFormed(svg);
  assert.ok(svg.includes('>etcd 3.4.23 (HTTP gateway, 16 clients)<'), 'etcd in the legend');
  assert.match(svg, /<path d="M[^"]+" fill="none" stroke="#f28e2b"/, 'etcd line drawn (second colour)');
  const alone = failoverChart(
    { timeline: killTimeline, victim: 'n2', victimLeaders: 490, reelectedMs: 400, load: 'embedded API' },
    undefined,
  )!;
  assert.equal(alone.series.length, 1);
  assert.equal(failoverChart(undefined, undefined), null);
});

test('latency against throughput: p50 and p99 over the achieved rate from open-loop rows', () => {
  const rows = [
    { offeredPerSec: 5000, writesPerSec: 4990, p50Ms: 3.1, p99Ms: 40 },
    { offeredPerSec: 10_000, writesPerSec: 9950, p50Ms: 4.2, p99Ms: 67 },
    { offeredPerSec: 20_000, writesPerSec: 15_000, p50Ms: 180, p99Ms: 700 },
  ];
  const ch = latencyThroughputChart('throughput', 'Open loop: latency against writes/s', [{ name: '', points: rows }]);
  assert.deepEqual(
    ch.series.map((s) => s.name),
    ['p50', 'p99'],
  );
  assert.deepEqual(ch.series[1].points, [
    [4990, 40],
    [9950, 67],
    [15_000, 700],
  ]);
  const http = latencyThroughputChart('http', 'HTTP', [
    { name: 'flotilla', points: rows },
    { name: 'etcd 3.4.23', points: rows.slice(0, 2) },
  ]);
  assert.deepEqual(
    http.series.map((s) => s.name),
    ['flotilla p50', 'flotilla p99', 'etcd 3.4.23 p50', 'etcd 3.4.23 p99'],
  );
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-lat-'));
  try {
    const { markdown } = writeReport(dir, results([], { charts: [ch] }));
    assert.match(markdown, /!\[[^\]]+\]\(chart-throughput\.svg\)/);
    const svg = readFileSync(join(dir, 'chart-throughput.svg'), 'utf8');
    assertWellFormed(svg);
    assert.ok(svg.includes('Open loop: latency against writes/s'));
    assert.ok(svg.includes('latency (ms) (log scale)'));
    assert.equal((svg.match(/<circle /g) ?? []).length, 6, 'three points per percentile');
    for (const tick of ['>1<', '>10<', '>100<', '>1k<']) assert.ok(svg.includes(tick), `log tick ${tick}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('like for like: etcd figures beside embedded ones get their own table and a note', () => {
  const emb: Figure = {
    ...fig('failover/flotilla/resumeMaxMs', 332, 'lower'),
    family: 'failover',
    unit: 'ms',
    api: 'embedded',
    label: 'writes resumed, max',
  };
  const etcd: Figure = {
    ...fig('failover/etcd/kill/writesPossibleMs', 1004, 'none'),
    family: 'failover',
    unit: 'ms',
    label: 'etcd kill -9: writes possible again after',
    peer: 'etcd 3.4.23: kill -9 of its leader under load through its HTTP gateway',
  };
  const md = renderReport(results([emb, etcd], { peers: { etcd: { available: true, version: '3.4.23' } } }));
  const own = md.indexOf('| writes resumed, max | 332 ms |');
  const head = md.indexOf('### etcd 3.4.23: kill -9 of its leader under load through its HTTP gateway');
  const theirs = md.indexOf('| etcd kill -9: writes possible again after | 1,004 ms |');
  assert.ok(own > 0 && head > own && theirs > head, 'etcd in its own table after flotilla’s');
  assert.match(md, /Not like for like with the flotilla figures above, which were driven through the embedded API/);
  assert.match(md, /these went through etcd's HTTP gateway/);
  assert.match(md, /etcd through its gRPC client .*: not measured in this run/);
});

test('like for like: etcd figures through its gRPC client are marked as comparable with embedded ones', () => {
  const emb: Figure = {
    ...fig('failover/flotilla/resumeMaxMs', 332, 'lower'),
    family: 'failover',
    unit: 'ms',
    api: 'embedded',
    label: 'writes resumed, max',
  };
  const etcd: Figure = {
    ...fig('failover/etcd/kill/writesPossibleMs', 1004, 'none'),
    family: 'failover',
    unit: 'ms',
    label: 'etcd kill -9: writes possible again after',
    peer: 'etcd 3.4.23: kill -9 of its leader under load through its gRPC client (etcd3 1.1.2, 192 writers)',
    api: 'grpc',
  };
  const md = renderReport(
    results([emb, etcd], {
      peers: {
        etcd: { available: true, version: '3.4.23' },
        'etcd-grpc': { available: true, version: '3.4.23 through etcd3 1.1.2' },
      },
    }),
  );
  assert.ok(md.includes('### etcd 3.4.23: kill -9 of its leader under load through its gRPC client'));
  assert.match(md, /Like for like with the flotilla figures above: etcd through its own gRPC client/);
  assert.doesNotMatch(md, /Not like for like/);
  assert.match(md, /- etcd-grpc: available \(3\.4\.23 through etcd3 1\.1\.2\)/);
  assert.doesNotMatch(md, /not measured in this run/);
  // Without etcd3 the peer says why it was skipped.
  const skipped = renderReport(
    results([emb], {
      peers: {
        etcd: { available: true, version: '3.4.23' },
        'etcd-grpc': { available: false, reason: 'the etcd3 package (a dev dependency) is not installed' },
      },
    }),
  );
  assert.match(skipped, /- etcd-grpc: skipped — the etcd3 package \(a dev dependency\) is not installed/);
});
