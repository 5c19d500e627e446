// Histogram: fixed-bucket latency histograms for the Prometheus exposition. Fixed bounds (not
// adaptive) so that worker threads' snapshots add up bucket by bucket in the main thread, and
// observe() is a short loop with no allocation (it runs per committed proposal).

/** Upper bounds in seconds, Prometheus-style (the last bucket, +Inf, is implicit). */
export const LATENCY_BOUNDS_S = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

/** A plain object that survives msgpack and postMessage. `counts` are per bucket (not
 *  cumulative), the last one for +Inf; `sum` is in seconds. */
export interface HistogramSnapshot {
  readonly bounds: readonly number[];
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private n = 0;

  constructor(private readonly bounds: readonly number[] = LATENCY_BOUNDS_S) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observeMs(ms: number): void {
    const s = ms / 1000;
    let i = 0;
    while (i < this.bounds.length && s > this.bounds[i]) i++;
    this.counts[i]++;
    this.sum += s;
    this.n++;
  }

  get count(): number {
    return this.n;
  }

  snapshot(): HistogramSnapshot {
    return { bounds: this.bounds, counts: [...this.counts], sum: this.sum, count: this.n };
  }
}

/** Milliseconds to a tenth, for reports and logs. */
export function tenthMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** Bucket-wise sum (snapshots of the same bounds; others are skipped, never mixed). */
export function mergeHistograms(snaps: readonly (HistogramSnapshot | undefined)[]): HistogramSnapshot {
  const first = snaps.find((s) => s !== undefined);
  const bounds = first?.bounds ?? LATENCY_BOUNDS_S;
  const counts = new Array<number>(bounds.length + 1).fill(0);
  let sum = 0;
  let count = 0;
  for (const s of snaps) {
    if (!s || s.bounds.length !== bounds.length || s.bounds.some((b, i) => b !== bounds[i])) continue;
    s.counts.forEach((c, i) => {
      counts[i] += c;
    });
    sum += s.sum;
    count += s.count;
  }
  return { bounds, counts, sum, count };
}

/** Prometheus text lines: cumulative `_bucket{le=...}`, `_sum`, `_count`. */
export function renderHistogram(
  name: string,
  help: string,
  labels: Record<string, string>,
  h: HistogramSnapshot,
): string[] {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`);
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
  let acc = 0;
  for (let i = 0; i <= h.bounds.length; i++) {
    acc += h.counts[i] ?? 0;
    const le = i < h.bounds.length ? String(h.bounds[i]) : '+Inf';
    lines.push(`${name}_bucket{${[...l, `le="${le}"`].join(',')}} ${acc}`);
  }
  const lab = l.length ? `{${l.join(',')}}` : '';
  lines.push(`${name}_sum${lab} ${h.sum}`, `${name}_count${lab} ${h.count}`);
  return lines;
}

/** The last `size` samples (ms) with when each was taken, for a p99 of recent ones only: a
 *  figure that must describe now (the stability advisor, transfer preflight and evidence, the
 *  health policy) must not keep speaking for a busy moment long past. No allocation per sample. */
export class RecentSamples {
  private readonly values: Float64Array;
  private readonly at: Float64Array;
  private next = 0;

  constructor(
    size = 256,
    private readonly windowMs = 60_000,
  ) {
    this.values = new Float64Array(size).fill(-1);
    this.at = new Float64Array(size);
  }

  add(ms: number, now = performance.now()): void {
    const i = this.next++ % this.values.length;
    this.values[i] = ms;
    this.at[i] = now;
  }

  /** p99 of the samples of the window, in ms; null with fewer than `minSamples` (with a handful,
   *  the "p99" is the single worst one: one large storage commit on a quiet node would read as a
   *  slow disk for a whole window). */
  p99(now = performance.now(), minSamples = 1): number | null {
    const since = now - this.windowMs;
    const xs: number[] = [];
    for (let i = 0; i < this.values.length; i++)
      if (this.values[i] >= 0 && this.at[i] >= since) xs.push(this.values[i]);
    if (xs.length === 0 || xs.length < minSamples) return null;
    xs.sort((a, b) => a - b);
    return xs[Math.min(xs.length - 1, Math.floor(0.99 * xs.length))];
  }
}
