// The node's own pauses, for /metrics and the stability advisor: event-loop delay (a loop that is
// late runs every timer, relay and reply of this thread late, heartbeats included) and garbage
// collection pauses of the main thread. Both are part of the effective broadcast time that the
// election timeout must cover, beside the network round trip and the disk. Worker threads have
// their own loops; their stalls show in the commit and fsync histograms instead.
import { PerformanceObserver, monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Histogram, tenthMs } from './histogram.js';

/** The delay histogram's sampling resolution (ms), one tick. Each sample is a timer wake-up of
 *  this thread: at 20 ms they cost 0.3% of a core in an otherwise idle process (measured here),
 *  most of an idle node's budget; at 100 ms, 0.08%. A stall still shows in full whenever a
 *  sample falls due during it, so longer stalls are sampled in proportion to their length,
 *  which is what delays a heartbeat. */
const RESOLUTION_MS = 100;
/** Event-loop figures cover the last full window (and the current one until it ends). */
const WINDOW_MS = 60_000;
/** Samples (at RESOLUTION_MS) a p99 needs before it means anything: 10 s. With fewer, the
 *  "p99" is the worst sample or two, and right after start-up that is the start-up itself
 *  (module loading, opening storage, starting workers), which then refused every planned
 *  transfer as ClusterUnstable for a minute. */
const MIN_SAMPLES = 10_000 / RESOLUTION_MS;

export class LoopTiming {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private readonly gcObserver: PerformanceObserver;
  /** Main-thread GC pauses, all kinds. */
  readonly gc = new Histogram();
  private last: { p99Ms: number; maxMs: number } | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.delay.enable();
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.gc.observeMs(e.duration);
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.timer = setInterval(() => {
      this.last = this.read();
      this.delay.reset();
    }, WINDOW_MS);
    this.timer.unref();
  }

  /** Event-loop delay beyond the sampling interval, p99 and max, in ms, over the last minute or so
   *  (p99 0 for the first 10 s: see MIN_SAMPLES). */
  eventLoop(): { p99Ms: number; maxMs: number } {
    const now = this.read();
    const l = this.last;
    return l ? { p99Ms: Math.max(l.p99Ms, now.p99Ms), maxMs: Math.max(l.maxMs, now.maxMs) } : now;
  }

  stop(): void {
    clearInterval(this.timer);
    this.delay.disable();
    this.gcObserver.disconnect();
  }

  private read(): { p99Ms: number; maxMs: number } {
    if (this.delay.count === 0) return { p99Ms: 0, maxMs: 0 };
    const few = this.last === null && this.delay.count < MIN_SAMPLES;
    // The histogram measures the whole interval between samples: the delay is what exceeds it.
    const over = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
    return { p99Ms: few ? 0 : tenthMs(over(this.delay.percentile(99))), maxMs: tenthMs(over(this.delay.max)) };
  }
}
