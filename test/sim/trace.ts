// Run trace: a fingerprint folded from every event (to prove replays identical) and, only when a
// sink is attached (--verbose), human-readable lines. Line builders are closures so that the
// common non-verbose path never formats a string.
import { Fingerprint } from './hash.js';
import type { Clock } from './checker.js';

export type TraceSink = (line: string) => void;

export class Tracer {
  readonly fp = new Fingerprint();

  constructor(
    private readonly clock: Clock,
    private readonly sink: TraceSink | null,
  ) {}

  get verbose(): boolean {
    return this.sink !== null;
  }

  /** Folds numbers into the fingerprint. */
  mark(a: number, b = 0, c = 0, d = 0): void {
    this.fp.add(a);
    this.fp.add(b);
    this.fp.add(c);
    this.fp.add(d);
  }

  line(f: () => string): void {
    if (this.sink)
      this.sink(`[${String(this.clock.step).padStart(5)} t=${this.clock.ticks.toFixed(2).padStart(7)}] ${f()}`);
  }
}
