// The human-readable side of a benchmark run: report.md (provenance, machine, targets, per-family
// tables, the figures no table shows, charts, peers, optional comparison) plus one
// chart-<family>.svg per family with the provenance under it. Reads only the Results shape, so it
// renders any results.json, including an old one (which then says it recorded no provenance).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  FAMILY_TITLES,
  isStat,
  type Cell,
  type Family,
  type Figure,
  type Results,
  type Table,
  type Target,
} from './results.js';
import { fmtRatio, fmtValue, sourceText, summaryLine, type Comparison } from './compare.js';
import { codeText, provenanceLines } from './provenance.js';
import { renderFamily } from './svg.js';

export interface ReportOptions {
  compare?: Comparison;
  /** Family -> SVG file name relative to report.md. Defaults to chart-<family>.svg for every
   *  family with charts, which is what writeReport writes. */
  chartFiles?: Record<string, string>;
}

const FAMILIES = Object.keys(FAMILY_TITLES) as Family[];

export function chartFileName(family: Family): string {
  return `chart-${family}.svg`;
}

/** A folded cell: "43,439 (41,000–45,100)"; a value every run agreed on stands alone, and a row
 *  only some runs had says how many. */
export function statText(c: Exclude<Cell, string | number>, repeat: number): string {
  const sfx = c.suffix ?? '';
  const v = `${fmtValue(c.median)}${sfx}`;
  const range = c.min === c.max ? '' : `${fmtValue(c.min)}–${fmtValue(c.max)}${sfx}`;
  const partial = c.runs < repeat ? `${c.runs} of ${repeat} runs` : '';
  const extra = [range, partial].filter(Boolean).join(', ');
  return extra ? `${v} (${extra})` : v;
}

/** Markdown table cells may not contain pipes or newlines. */
function cell(v: Cell | null | undefined, repeat: number): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? fmtValue(v) : isStat(v) ? statText(v, repeat) : v;
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function mdTable(columns: string[], rows: (Cell | null | undefined)[][], repeat = 1): string[] {
  const width = Math.max(columns.length, ...rows.map((r) => r.length));
  const head = Array.from({ length: width }, (_, i) => cell(columns[i] ?? '', 1));
  // Right-align columns whose cells are all numbers, so magnitudes line up in rendered Markdown.
  const numeric = head.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || isStat(r[i])));
  const out = [`| ${head.join(' | ')} |`, `|${numeric.map((n) => (n ? ' ---: ' : ' --- ')).join('|')}|`];
  for (const r of rows) out.push(`| ${Array.from({ length: width }, (_, i) => cell(r[i], repeat)).join(' | ')} |`);
  return out;
}

export function fmtDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return 'unknown';
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m ${String(Math.round(sec - m * 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

function targetMark(t: Target): string {
  return t.met === true ? '✅ met' : t.met === false ? '❌ missed' : '– not measured';
}

/** "12,345 writes/s", or with repetitions "12,345 writes/s (median of 3, runs 11,900–13,000)". */
export function figureText(f: Figure): string {
  const unit = f.unit ? ` ${f.unit}` : '';
  const v = `${fmtValue(f.value)}${unit}`;
  const s = f.samples;
  if (!s || s.length < 2) return v;
  return `${v} (median of ${s.length}, runs ${fmtValue(Math.min(...s))}–${fmtValue(Math.max(...s))})`;
}

/** The figures no table shows, as one compact table: the value (median) and, with
 *  repetitions, the range of the runs. */
function figureTable(figures: Figure[], repeat: number): string[] {
  if (repeat <= 1)
    return mdTable(
      ['Figure', 'Value'],
      figures.map((f) => [f.label, `${fmtValue(f.value)}${f.unit ? ` ${f.unit}` : ''}`]),
    );
  return mdTable(
    ['Figure', `Median of ${repeat} runs`, 'Range of the runs'],
    figures.map((f) => {
      const s = f.samples ?? [f.value];
      const unit = f.unit ? ` ${f.unit}` : '';
      return [
        f.label,
        `${fmtValue(f.value)}${unit}`,
        s.length < 2 ? `${s.length} run` : `${fmtValue(Math.min(...s))}–${fmtValue(Math.max(...s))}${unit}`,
      ];
    }),
  );
}

function familySection(r: Results, family: Family, chartFile: string | undefined): string[] {
  const out: string[] = [`## ${FAMILY_TITLES[family]}`, ''];
  const tables: Table[] = r.tables.filter((t) => t.family === family);
  for (const t of tables) {
    out.push(`### ${t.title}`, '', ...mdTable(t.columns, t.rows, r.repeat), '');
    if (t.note) out.push(`_${t.note.trim()}_`, '');
    if (r.repeat > 1) out.push(`_Cells: the median of the ${r.repeat} runs (min–max when they differ)._`, '');
  }
  if (chartFile) out.push(`![${FAMILY_TITLES[family]}](${encodeURI(chartFile)})`, '');
  const rest = r.figures.filter((f) => f.family === family && !f.inTable);
  const own = rest.filter((f) => !f.peer);
  const peers = rest.filter((f) => f.peer);
  if (own.length > 0) {
    out.push(tables.length > 0 ? '### Other figures' : '### Figures', '', ...figureTable(own, r.repeat), '');
  }
  // A peer's figures no table shows get a table of their own, which says whether they compare with
  // flotilla's embedded-API figures here: etcd's own gRPC client does (each store's native client),
  // its HTTP gateway does not (an embedded-API rate beside a gateway rate compares the paths).
  for (const peer of [...new Set(peers.map((f) => f.peer!))]) {
    const mine = peers.filter((f) => f.peer === peer);
    const embedded = r.figures.some((f) => f.family === family && !f.peer && f.api === 'embedded');
    out.push(`### ${peer}`, '', ...figureTable(mine, r.repeat), '');
    if (embedded && mine.every((f) => f.api === 'grpc'))
      out.push(
        `_Like for like with the flotilla figures above: etcd through its own gRPC client, flotilla through its embedded API (see docs/benchmarks.md)._`,
        '',
      );
    else if (embedded)
      out.push(
        `_Not like for like with the flotilla figures above, which were driven through the embedded API; ` +
          `these went through etcd's HTTP gateway (its gRPC client, etcd3, was not used: see docs/benchmarks.md)._`,
        '',
      );
  }
  return out;
}

function comparisonSection(c: Comparison): string[] {
  const out: string[] = [`## Compared with ${c.before.label}`, ''];
  out.push(
    `Before: ${sourceText(c.before)}; ${c.before.cpuModel} (${c.before.cores} cores), node code ${c.before.nodeCode}${c.before.quick ? ', quick' : ''}.`,
  );
  out.push(
    `After: ${sourceText(c.after)}; ${c.after.cpuModel} (${c.after.cores} cores), node code ${c.after.nodeCode}${c.after.quick ? ', quick' : ''}.`,
    '',
  );
  for (const w of c.warnings) out.push(`> ⚠️ ${w}`);
  if (c.warnings.length > 0) out.push('');
  out.push(
    `A change counts only beyond the noise band: ±${Math.round(c.noise * 100)}%, widened to a figure's sample spread when that is larger.`,
    '',
  );
  if (c.rows.length > 0) {
    const verdict = (v: Comparison['rows'][number]) =>
      v.regression ? '❌ worse (regression)' : v.verdict === 'better' ? '✅ better' : v.verdict;
    out.push(
      ...mdTable(
        ['Figure', 'Before', 'After', 'Ratio', 'Noise', 'Verdict'],
        c.rows.map((x) => [
          x.label,
          `${fmtValue(x.before)} ${x.unit}`.trim(),
          `${fmtValue(x.after)} ${x.unit}`.trim(),
          fmtRatio(x.ratio),
          `±${Math.round(x.noise * 100)}%`,
          verdict(x),
        ]),
      ),
      '',
    );
  }
  if (c.onlyBefore.length > 0) out.push(`Only in before: ${c.onlyBefore.map((f) => f.label).join('; ')}.`, '');
  if (c.onlyAfter.length > 0) out.push(`Only in after: ${c.onlyAfter.map((f) => f.label).join('; ')}.`, '');
  out.push(`**${summaryLine(c)}.**`, '');
  return out;
}

function familiesPresent(r: Results): Family[] {
  return FAMILIES.filter(
    (f) =>
      r.figures.some((x) => x.family === f) ||
      r.tables.some((x) => x.family === f) ||
      r.charts.some((x) => x.family === f),
  );
}

export function renderReport(r: Results, opts: ReportOptions = {}): string {
  const m = r.machine;
  const chartFiles =
    opts.chartFiles ??
    Object.fromEntries(FAMILIES.filter((f) => r.charts.some((c) => c.family === f)).map((f) => [f, chartFileName(f)]));
  const out: string[] = ['# flotilla benchmark report', ''];
  const p = r.provenance;
  out.push(`- Run: ${r.startedAt}, took ${fmtDuration(r.durationSec)}`);
  if (p) {
    out.push(`- Code: flotilla ${p.version}, ${codeText(p.code)}`);
    out.push(`- Command: \`${p.command}\``);
  } else out.push('- Code: no provenance recorded (these results predate it): commit and command unknown');
  out.push(
    `- Mode: ${r.quick ? 'quick (shortened runs and sizes: indicative only)' : 'full'}, repeat ${r.repeat}` +
      (r.repeat > 1
        ? ` (every figure and table cell is the median of the ${r.repeat} runs, with the range of the runs beside it)`
        : ''),
  );
  out.push(`- Scenarios: ${r.ran.length > 0 ? r.ran.join(', ') : 'none'}`);
  out.push(`- Node code: ${r.nodeCode}`, '');

  out.push('## Machine', '');
  const deps = Object.entries(m.dependencies ?? {})
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  out.push(
    `- CPU: ${m.cpuModel}, ${m.cores} cores`,
    `- Memory: ${m.memoryGiB} GiB`,
    `- Platform: ${m.platform}, Node ${m.node}`,
    `- Dependencies: ${deps || 'none'}`,
    `- fsync: ${m.fsync ? `p50 ${fmtValue(m.fsync.p50Ms)} ms, p99 ${fmtValue(m.fsync.p99Ms)} ms (${m.fsync.samples} samples)` : 'not measured'}`,
    '',
  );

  out.push('## Targets', '');
  if (r.targets.length === 0) out.push('No targets were evaluated in this run.', '');
  else {
    const met = r.targets.filter((t) => t.met === true).length;
    const missed = r.targets.filter((t) => t.met === false).length;
    const judged = r.repeat > 1 ? `the median of ${r.repeat} runs` : 'one run';
    out.push(
      `${met} met, ${missed} missed, ${r.targets.length - met - missed} not measured. Each target is judged on ${judged}.`,
      '',
    );
    out.push(
      ...mdTable(
        ['Target', 'Result', 'Judged on', 'Detail'],
        r.targets.map((t) => [t.text, targetMark(t), t.met === null ? '' : judged, t.detail]),
      ),
      '',
    );
  }

  for (const f of familiesPresent(r)) out.push(...familySection(r, f, chartFiles[f]));

  out.push('## Peers', '');
  const peers = Object.entries(r.peers ?? {});
  if (peers.length === 0) out.push('No peer systems were run.', '');
  else {
    for (const [name, p] of peers) {
      out.push(
        p.available
          ? `- ${name}: available${p.version ? ` (${p.version})` : ''}`
          : `- ${name}: skipped${p.reason ? ` — ${p.reason}` : ''}`,
      );
    }
    if (r.peers?.etcd?.available && !r.peers['etcd-grpc'])
      out.push(
        '- etcd through its gRPC client (the like-for-like peer of the embedded API): not measured in this run, so etcd went only through its HTTP gateway and compares only with flotilla’s HTTP gateway',
      );
    out.push('');
  }

  if (opts.compare) out.push(...comparisonSection(opts.compare));
  return (
    out
      .join('\n')
      .replace(/\n{3,}/g, '\n\n')
      .trimEnd() + '\n'
  );
}

/** Writes report.md and chart-<family>.svg files into dir; returns the Markdown and SVG paths. */
export function writeReport(dir: string, r: Results, compare?: Comparison): { markdown: string; svgs: string[] } {
  mkdirSync(dir, { recursive: true });
  const svgs: string[] = [];
  const chartFiles: Record<string, string> = {};
  for (const f of FAMILIES) {
    const charts = r.charts.filter((c) => c.family === f);
    if (charts.length === 0) continue;
    const name = chartFileName(f);
    const path = join(dir, name);
    writeFileSync(path, renderFamily(f, charts, provenanceLines(r.provenance)));
    chartFiles[f] = name;
    svgs.push(path);
  }
  const markdown = renderReport(r, { compare, chartFiles });
  writeFileSync(join(dir, 'report.md'), markdown);
  return { markdown, svgs };
}
