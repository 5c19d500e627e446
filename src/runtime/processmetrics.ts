// Process-wide figures for the metrics exposition: main-thread event-loop delay (quantiles since
// the previous scrape), garbage-collection pauses by kind, memory, CPU time, and the build. One
// sampler per process, started by the first scrape (or by an admin handler): a process hosting
// several nodes measures its loop once, and an embedder that never asks pays nothing.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver, constants, monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export type GcKind = 'minor' | 'major' | 'incremental' | 'weakcb';
export const GC_KINDS: readonly GcKind[] = ['minor', 'major', 'incremental', 'weakcb'];

const GC_KIND_OF = new Map<number, GcKind>([
  [constants.NODE_PERFORMANCE_GC_MINOR, 'minor'],
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'major'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'weakcb'],
]);

/** The delay histogram's sampling interval (ms). Each sample is a timer wake-up of the main
 *  thread; at 100 ms they cost under 0.1% of a core, and a stall still shows in full whenever a
 *  sample falls due during it. The same interval as the node's own loop timing. */
const RESOLUTION_MS = 100;

/** Seconds throughout. */
export interface ProcessSample {
  /** Delay beyond the sampling interval since the previous sample() (quantiles and max), and
   *  the sum and count of all delays since the sampler started. */
  readonly eventLoop: {
    readonly p50: number;
    readonly p99: number;
    readonly max: number;
    readonly sum: number;
    readonly count: number;
  };
  readonly gc: Readonly<Record<GcKind, { readonly count: number; readonly seconds: number }>>;
  readonly memory: {
    readonly rss: number;
    readonly heapUsed: number;
    readonly heapTotal: number;
    readonly external: number;
  };
  readonly cpu: { readonly user: number; readonly system: number };
}

export interface BuildInfo {
  readonly version: string;
  /** From FLOTILLA_COMMIT when the build or the deployment sets it. */
  readonly commit: string | undefined;
  readonly nodejs: string;
}

/** The package's version: the nearest package.json named flotilla above this module (the
 *  source tree and the built dist/ sit at different depths). Read once, at start-up. */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'flotilla' && 'version' in pkg)
        return String(pkg.version);
    } catch {
      // no (readable) package.json here: look one level up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export const BUILD: BuildInfo = {
  version: packageVersion(),
  commit: process.env.FLOTILLA_COMMIT || undefined,
  nodejs: process.version,
};

class ProcessSampler {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private readonly gc: Record<GcKind, { count: number; seconds: number }> = {
    minor: { count: 0, seconds: 0 },
    major: { count: 0, seconds: 0 },
    incremental: { count: 0, seconds: 0 },
    weakcb: { count: 0, seconds: 0 },
  };
  private delaySum = 0;
  private delayCount = 0;

  constructor() {
    this.delay.enable();
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const detail: unknown = 'detail' in e ? e.detail : undefined;
        const code = typeof detail === 'object' && detail !== null && 'kind' in detail ? detail.kind : undefined;
        // A kind this Node.js version adds is counted as a full collection rather than lost.
        const g = this.gc[(typeof code === 'number' && GC_KIND_OF.get(code)) || 'major'];
        g.count++;
        g.seconds += e.duration / 1000;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
  }

  sample(): ProcessSample {
    const d = this.delay;
    // The histogram records whole intervals between samples; the delay is what exceeds one.
    const over = (ns: number) => Math.max(0, ns / 1e9 - RESOLUTION_MS / 1000);
    const n = d.count;
    const eventLoop =
      n === 0
        ? { p50: 0, p99: 0, max: 0 }
        : { p50: over(d.percentile(50)), p99: over(d.percentile(99)), max: over(d.max) };
    if (n > 0) {
      this.delaySum += over(d.mean) * n;
      this.delayCount += n;
    }
    d.reset();
    const m = process.memoryUsage();
    const cpu = process.cpuUsage();
    return {
      eventLoop: { ...eventLoop, sum: this.delaySum, count: this.delayCount },
      gc: {
        minor: { ...this.gc.minor },
        major: { ...this.gc.major },
        incremental: { ...this.gc.incremental },
        weakcb: { ...this.gc.weakcb },
      },
      memory: { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external },
      cpu: { user: cpu.user / 1e6, system: cpu.system / 1e6 },
    };
  }
}

let sampler: ProcessSampler | null = null;

/** The process's sampler, started on first use. Its timer and observer hold nothing open: they
 *  live as long as the process and never keep it from exiting. */
export function processSampler(): { sample(): ProcessSample } {
  sampler ??= new ProcessSampler();
  return sampler;
}
