// Folds the repetitions of a scenario (`--repeat N`) into what the report publishes: each table
// cell becomes the median of the runs with their range, each line or bar chart point the median
// of the runs. Timelines are one run's story and are not averaged: the last run's is kept and its
// title says so. Rows are matched on their key columns, so a sweep that stopped early in one run
// (fewer rows) still folds.
import { median, type Cell, type Chart, type Series, type StatCell, type Table } from './results.js';

const NUMBER_WITH_SUFFIX = /^(-?\d+(?:\.\d+)?)(\s?[^\d\s][^\d]*)?$/;

function numeric(c: Cell): { v: number; suffix: string } | null {
  if (typeof c === 'number') return Number.isFinite(c) ? { v: c, suffix: '' } : null;
  if (typeof c !== 'string') return null;
  const m = NUMBER_WITH_SUFFIX.exec(c.trim());
  return m ? { v: Number(m[1]), suffix: m[2] ?? '' } : null;
}

function stat(values: number[], suffix: string): StatCell {
  return {
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    runs: values.length,
    ...(suffix ? { suffix } : {}),
  };
}

/** One cell from the same cell of several runs (absent runs left out). */
export function foldCell(cells: Cell[]): Cell {
  const present = cells.filter((c) => c !== '' && c !== undefined && c !== null);
  if (present.length === 0) return '';
  const nums = present.map(numeric);
  const suffixes = new Set(nums.map((n) => n?.suffix));
  if (nums.every((n) => n !== null) && suffixes.size === 1)
    return stat(
      nums.map((n) => n!.v),
      nums[0]!.suffix,
    );
  const texts = present.map((c) => (typeof c === 'object' ? String(c.median) : String(c)));
  // Text that differs between runs (e.g. CPU per node as "85/40/38") is shown run by run.
  return new Set(texts).size === 1 ? texts[0] : texts.join(' · ');
}

function rowKey(row: Cell[], keyColumns: number): string {
  return JSON.stringify(row.slice(0, keyColumns));
}

function foldTable(versions: Table[]): Table {
  const last = versions[versions.length - 1];
  const keyColumns = last.keyColumns ?? 1;
  const order: string[] = [];
  const byKey = new Map<string, Cell[][]>();
  const keyCells = new Map<string, Cell[]>();
  // Rows in the order of the run with the most rows, then any only other runs had.
  const longest = [...versions].sort((a, b) => b.rows.length - a.rows.length)[0];
  for (const t of [longest, ...versions]) {
    for (const row of t.rows) {
      const k = rowKey(row, keyColumns);
      if (!keyCells.has(k)) {
        keyCells.set(k, row.slice(0, keyColumns));
        order.push(k);
        byKey.set(k, []);
      }
    }
  }
  for (const t of versions) for (const row of t.rows) byKey.get(rowKey(row, keyColumns))!.push(row);
  const width = Math.max(last.columns.length, ...versions.flatMap((t) => t.rows.map((r) => r.length)));
  const rows = order.map((k) => {
    const runs = byKey.get(k)!;
    const out: Cell[] = [...keyCells.get(k)!];
    for (let j = keyColumns; j < width; j++) out.push(foldCell(runs.map((r) => r[j] ?? '')));
    return out;
  });
  return { ...last, rows };
}

/** The tables of N runs of one scenario (runs[k] = the k-th run's tables, in the same order). */
export function foldTables(runs: Table[][]): Table[] {
  if (runs.length <= 1) return runs[0] ?? [];
  const n = Math.max(...runs.map((r) => r.length));
  const out: Table[] = [];
  for (let i = 0; i < n; i++) {
    const versions = runs.map((r) => r[i]).filter((t): t is Table => t !== undefined);
    out.push(foldTable(versions));
  }
  return out;
}

function foldSeries(name: string, versions: Series[]): Series {
  const n = Math.max(0, ...versions.map((s) => s.points.length));
  const points: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const at = versions.map((s) => s.points[i]).filter((p): p is [number, number] => p !== undefined);
    points.push([median(at.map((p) => p[0])), median(at.map((p) => p[1]))]);
  }
  return { name, points };
}

function foldChart(versions: Chart[]): Chart {
  const last = versions[versions.length - 1];
  if (last.kind === 'timeline') return { ...last, title: `${last.title} (the last of ${versions.length} runs)` };
  const series = last.series.map((s) =>
    foldSeries(
      s.name,
      versions.map((c) => c.series.find((x) => x.name === s.name)).filter((x): x is Series => x !== undefined),
    ),
  );
  return { ...last, title: `${last.title} (median of ${versions.length} runs)`, series };
}

/** The charts of N runs of one scenario, matched by position. */
export function foldCharts(runs: Chart[][]): Chart[] {
  if (runs.length <= 1) return runs[0] ?? [];
  const n = Math.max(...runs.map((r) => r.length));
  const out: Chart[] = [];
  for (let i = 0; i < n; i++) {
    const versions = runs.map((r) => r[i]).filter((c): c is Chart => c !== undefined);
    out.push(foldChart(versions));
  }
  return out;
}
