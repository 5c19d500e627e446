// Summary statistics the benchmark scenarios report: percentiles of sorted samples and rounding
// for display.

/** The p-th percentile (0-100) of an ascending array: the sample at floor(p% of n), 0 when empty. */
export function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** x rounded to d decimal places. */
export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
