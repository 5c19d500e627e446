// The human-readable side of a benchmark run: report.md (machine, targets, per-family tables,
// figures and charts, peers, optional comparison) plus one chart-<family>.svg per family. Reads
// only the Results shape, so it renders any results.json, including an old one.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FAMILY_TITLES, spread, type Family, type Figure, type Results, type Table, type Target } from './results.js';
import { fmtRatio, fmtValue, summaryLine, type Comparison } from './compare.js';
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

/** Markdown table cells may not contain pipes or newlines. */
function cell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = typeof v === 'number' ? fmtValue(v) : v;
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function mdTable(columns: string[], rows: (string | number | null | undefined)[][]): string[] {
  const width = Math.max(columns.length, ...rows.map((r) => r.length));
  const head = Array.from({ length: width }, (_, i) => cell(columns[i] ?? ''));
  // Right-align columns whose cells are all numbers, so magnitudes line up in rendered Markdown.
  const numeric = head.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const out = [`| ${head.join(' | ')} |`, `|${numeric.map((n) => (n ? ' ---: ' : ' --- ')).join('|')}|`];
  for (const r of rows) out.push(`| ${Array.from({ length: width }, (_, i) => cell(r[i])).join(' | ')} |`);
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

/** "12,345 writes/s (median of 3, spread ±4.1%)"; spread is half the sample range over the median. */
export function figureText(f: Figure): string {
  const v = `${fmtValue(f.value)}${f.unit ? ' ' + f.unit : ''}`;
  const s = f.samples;
  if (!s || s.length < 2) return v;
  return `${v} (median of ${s.length}, spread ±${((spread(s) / 2) * 100).toFixed(1)}%)`;
}

function familySection(r: Results, family: Family, chartFile: string | undefined): string[] {
  const out: string[] = [`## ${FAMILY_TITLES[family]}`, ''];
  const tables: Table[] = r.tables.filter((t) => t.family === family);
  for (const t of tables) {
    out.push(`### ${t.title}`, '', ...mdTable(t.columns, t.rows), '');
    if (t.note) out.push(`_${t.note.trim()}_`, '');
  }
  if (chartFile) out.push(`![${FAMILY_TITLES[family]}](${encodeURI(chartFile)})`, '');
  const figures = r.figures.filter((f) => f.family === family);
  if (figures.length > 0) {
    out.push('Figures:', '');
    for (const f of figures) out.push(`- ${f.label}: **${figureText(f)}**`);
    out.push('');
  }
  return out;
}

function comparisonSection(c: Comparison): string[] {
  const out: string[] = [`## Compared with ${c.before.label}`, ''];
  out.push(
    `Before: ${c.before.startedAt}, ${c.before.cpuModel} (${c.before.cores} cores), node code ${c.before.nodeCode}${c.before.quick ? ', quick' : ''}.`,
  );
  out.push(
    `After: ${c.after.startedAt}, ${c.after.cpuModel} (${c.after.cores} cores), node code ${c.after.nodeCode}${c.after.quick ? ', quick' : ''}.`,
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
  out.push(`- Run: ${r.startedAt}, took ${fmtDuration(r.durationSec)}`);
  out.push(
    `- Mode: ${r.quick ? 'quick (shortened runs and sizes: indicative only)' : 'full'}, repeat ${r.repeat}` +
      (r.repeat > 1 ? ' (figures are medians of the repetitions)' : ''),
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
    out.push(`${met} met, ${missed} missed, ${r.targets.length - met - missed} not measured.`, '');
    out.push(
      ...mdTable(
        ['Target', 'Result', 'Detail'],
        r.targets.map((t) => [t.text, targetMark(t), t.detail]),
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
    writeFileSync(path, renderFamily(f, charts));
    chartFiles[f] = name;
    svgs.push(path);
  }
  const markdown = renderReport(r, { compare, chartFiles });
  writeFileSync(join(dir, 'report.md'), markdown);
  return { markdown, svgs };
}
