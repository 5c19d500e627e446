// Compares two benchmark runs figure by figure (matched on Figure.id) and decides, per figure,
// whether the change is beyond run-to-run noise. Owns the verdict rules and the terminal table;
// the Markdown rendering of a Comparison lives in report.ts.
import { codeText, type Provenance } from './provenance.js';
import { spread, type Better, type Family, type Results } from './results.js';

export type Verdict = 'better' | 'worse' | 'same' | 'n/a';

export interface FigureComparison {
  id: string;
  family: Family;
  label: string;
  unit: string;
  better: Better;
  before: number;
  after: number;
  /** after / before; NaN when before is 0 or either value is not finite. */
  ratio: number;
  /** The relative band within which a change counts as 'same'. */
  noise: number;
  verdict: Verdict;
  /** Worse beyond the noise band on a figure with a direction. */
  regression: boolean;
}

export interface RunSummary {
  /** What the reader calls this run, e.g. the results.json path. */
  label: string;
  startedAt: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
  nodeCode: string;
  quick: boolean;
  repeat: number;
  /** Absent for results written before provenance was recorded. */
  provenance?: Provenance;
}

/** "commit b7f3083 (clean), flotilla 0.1.0, run 2026-12-03T..." or that the run recorded none. */
export function sourceText(s: RunSummary): string {
  if (!s.provenance) return `no provenance recorded (its commit is unknown), run ${s.startedAt}`;
  const p = s.provenance;
  return `${codeText(p.code)}, flotilla ${p.version}, run ${s.startedAt}, \`${p.command}\``;
}

export interface Comparison {
  before: RunSummary;
  after: RunSummary;
  /** The minimum noise band applied to every figure. */
  noise: number;
  rows: FigureComparison[];
  onlyBefore: { id: string; label: string }[];
  onlyAfter: { id: string; label: string }[];
  /** Reasons the ratios may mislead (different machine, quick vs full run). */
  warnings: string[];
  sameMachine: boolean;
  counts: Record<Verdict, number> & { regressions: number };
}

export interface CompareOptions {
  /** Minimum relative noise band (default 0.10: ±10%). */
  noise?: number;
  beforeLabel?: string;
  afterLabel?: string;
}

export const DEFAULT_NOISE = 0.1;

function summary(r: Results, label: string): RunSummary {
  return {
    label,
    startedAt: r.startedAt,
    cpuModel: r.machine.cpuModel,
    cores: r.machine.cores,
    memoryGiB: r.machine.memoryGiB,
    platform: r.machine.platform,
    node: r.machine.node,
    nodeCode: r.nodeCode,
    quick: r.quick,
    repeat: r.repeat,
    ...(r.provenance ? { provenance: r.provenance } : {}),
  };
}

/**
 * The verdict for one figure. The band is symmetric in log space: a change counts only when the
 * ratio leaves [1/(1+noise), 1+noise], so halving and doubling are judged alike and a noise band
 * wider than 100% still lets a collapse to a tenth register.
 */
export function judge(
  before: number,
  after: number,
  better: Better,
  noise: number,
): { ratio: number; verdict: Verdict } {
  const ratio = Number.isFinite(before) && Number.isFinite(after) && before !== 0 ? after / before : NaN;
  if (better === 'none' || !Number.isFinite(ratio)) return { ratio, verdict: 'n/a' };
  const up = ratio > 1 + noise;
  const down = ratio < 1 / (1 + noise);
  if (!up && !down) return { ratio, verdict: 'same' };
  const improved = better === 'higher' ? up : down;
  return { ratio, verdict: improved ? 'better' : 'worse' };
}

export function compareResults(before: Results, after: Results, o: CompareOptions = {}): Comparison {
  const base = o.noise ?? DEFAULT_NOISE;
  const afterById = new Map(after.figures.map((f) => [f.id, f]));
  const beforeIds = new Set(before.figures.map((f) => f.id));
  const rows: FigureComparison[] = [];
  const onlyBefore: { id: string; label: string }[] = [];
  for (const b of before.figures) {
    const a = afterById.get(b.id);
    if (!a) {
      onlyBefore.push({ id: b.id, label: b.label });
      continue;
    }
    const noise = Math.max(base, spread(b.samples ?? []), spread(a.samples ?? []));
    // The after run's direction wins if a scenario changed its mind about what is better.
    const better = a.better;
    const { ratio, verdict } = judge(b.value, a.value, better, noise);
    rows.push({
      id: b.id,
      family: a.family,
      label: a.label,
      unit: a.unit,
      better,
      before: b.value,
      after: a.value,
      ratio,
      noise,
      verdict,
      regression: verdict === 'worse',
    });
  }
  const onlyAfter = after.figures.filter((f) => !beforeIds.has(f.id)).map((f) => ({ id: f.id, label: f.label }));

  const bs = summary(before, o.beforeLabel ?? `run of ${before.startedAt}`);
  const as = summary(after, o.afterLabel ?? `run of ${after.startedAt}`);
  const warnings: string[] = [];
  const sameMachine = bs.cpuModel === as.cpuModel && bs.cores === as.cores;
  if (!sameMachine) {
    warnings.push(
      `different machines (${bs.cpuModel}, ${bs.cores} cores vs ${as.cpuModel}, ${as.cores} cores): ratios across machines are not comparable`,
    );
  }
  if (bs.quick !== as.quick) warnings.push(`one run is --quick and the other is not: durations and sizes differ`);
  if (bs.node !== as.node) warnings.push(`different Node versions (${bs.node} vs ${as.node})`);
  if (bs.platform !== as.platform && sameMachine)
    warnings.push(`different platforms (${bs.platform} vs ${as.platform})`);
  if (!before.provenance)
    warnings.push('the earlier results record no provenance: which code they measured is unknown');
  else if (before.provenance.code.kind === 'git' && before.provenance.code.dirty)
    warnings.push(`the earlier run had uncommitted changes on top of commit ${before.provenance.code.commit}`);

  const counts = { better: 0, worse: 0, same: 0, 'n/a': 0, regressions: 0 };
  for (const r of rows) {
    counts[r.verdict]++;
    if (r.regression) counts.regressions++;
  }
  return { before: bs, after: as, noise: base, rows, onlyBefore, onlyAfter, warnings, sameMachine, counts };
}

/** A ratio for people: "0.70x", "—" when undefined. */
export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return '—';
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

/** A measured value for people: grouped integers, three significant digits below 100. */
export function fmtValue(v: number): string {
  if (!Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString('en-US');
  if (a === 0) return '0';
  return String(Number(v.toPrecision(3)));
}

/** The comparison as an aligned plain-text table for the terminal. */
export function formatComparison(c: Comparison): string {
  const lines: string[] = [];
  lines.push(`compare: before = ${c.before.label} (${sourceText(c.before)}; ${c.before.nodeCode})`);
  lines.push(`         after  = ${c.after.label} (${sourceText(c.after)}; ${c.after.nodeCode})`);
  for (const w of c.warnings) lines.push(`WARNING: ${w}`);
  const header = ['figure', 'before', 'after', 'ratio', 'noise', 'verdict', ''];
  const body = c.rows.map((r) => [
    r.id,
    `${fmtValue(r.before)} ${r.unit}`.trim(),
    `${fmtValue(r.after)} ${r.unit}`.trim(),
    fmtRatio(r.ratio),
    `±${Math.round(r.noise * 100)}%`,
    r.verdict + (r.better === 'lower' ? ' (lower is better)' : ''),
    r.regression ? 'REGRESSION' : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  // Numbers right-aligned so magnitudes line up; names and words left-aligned.
  const right = [false, true, true, true, true, false, false];
  const fmt = (row: string[]) =>
    row
      .map((cell, i) => (right[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  if (body.length > 0) {
    lines.push('');
    lines.push(fmt(header));
    lines.push(
      widths
        .map((w) => '-'.repeat(w))
        .join('  ')
        .trimEnd(),
    );
    for (const row of body) lines.push(fmt(row));
  }
  if (c.onlyBefore.length > 0)
    lines.push('', `only in before (${c.onlyBefore.length}): ${c.onlyBefore.map((f) => f.id).join(', ')}`);
  if (c.onlyAfter.length > 0)
    lines.push('', `only in after (${c.onlyAfter.length}): ${c.onlyAfter.map((f) => f.id).join(', ')}`);
  lines.push('', summaryLine(c));
  return lines.join('\n') + '\n';
}

/** "N figures compared, R regressions beyond noise, ..." */
export function summaryLine(c: Comparison): string {
  const k = c.counts;
  return (
    `${c.rows.length} figures compared, ${k.regressions} regression${k.regressions === 1 ? '' : 's'} beyond noise, ` +
    `${k.better} better, ${k.same} same, ${k['n/a']} n/a; ${c.onlyBefore.length} only in before, ${c.onlyAfter.length} only in after` +
    (c.sameMachine ? '' : ' (DIFFERENT MACHINES: ratios not comparable)')
  );
}
