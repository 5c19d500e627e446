// V8 heap sizing for the threads that run shards. A shard turn allocates many short-lived objects
// (entries, messages, proposal promises) and keeps a good share of them alive until the commit it
// started resolves, so with V8's default young generation (16 MiB semi-spaces) the scavenger runs
// every few tens of milliseconds and copies the same in-flight objects again and again.
// Measured on 2 cores, 3 shards in one thread (src/bench/shard-loop.ts 1000 3000 8, 1,000 groups,
// 3,000 proposers): 248 scavenges taking 2.4 s at 16 MiB, 76 taking 1.9 s at 64 MiB; in the
// 3-process embedded benchmark (1,000 active groups, warm rows) the median went from 47k to 55k
// writes/s and CPU per write from 41 to 36 µs cluster-wide. 32 and 128 MiB measured no better
// than 64. An idle node's young generation shrinks back, so the cost is memory under load only.
//
// A worker thread takes its limit from `resourceLimits`; the main thread only from node's command
// line or NODE_OPTIONS, which a running process cannot change. The `flotilla` executable keeps the
// portable `#!/usr/bin/env node` (`env -S` to pass flags is missing from BusyBox, as on Alpine), so
// a node whose main thread runs shards without NODE_FLAGS logs how to start it with them; the demo
// and the benchmark nodes are started with them.

import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';

/** Semi-space size for threads that run shards, MiB. */
export const SEMI_SPACE_MB = 64;

/** Node flags for a process whose main thread runs shards (the inline layout). */
export const NODE_FLAGS: readonly string[] = [`--max-semi-space-size=${SEMI_SPACE_MB}`];

/** Worker `resourceLimits` giving a shard worker the same young generation: V8 sizes the young
 *  generation as three semi-spaces (two for copying, one for new large objects). */
export function shardWorkerLimits(): { maxYoungGenerationSizeMb: number } {
  return { maxYoungGenerationSizeMb: 3 * SEMI_SPACE_MB };
}

/** Whether this process was started with a semi-space size of its own choosing. */
export function semiSpaceConfigured(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? '',
): boolean {
  const has = (a: string) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(a);
  return execArgv.some(has) || nodeOptions.split(/\s+/).some(has);
}

// After a burst (a cold start electing 100,000 groups, a rebalancing wave) a shard thread's old
// generation holds hundreds of MiB of dead objects that V8 may not collect for minutes: a major
// collection is driven by allocation, and a quiesced node hardly allocates. Measured at 100,000
// groups per node, 3 nodes (src/bench/cluster.ts idle 100000 0 30 balancer): 12.5 KiB of RSS per
// replica and 10 KiB of heap in use with no major collection yet, against 2.1-2.6 KiB live; the
// later minute in which V8 collects costs 5-10% of a core. So a thread that has gone quiet after
// its heap grew collects itself, when few wait on it: 1 GiB in use went to ~250 MiB in a 350-415
// ms pause per node, and two follow-ups (committed heap still over twice what is in use) took RSS
// from 9.4-10.5 to 6.1-6.7 KiB per replica. A collection is a full, stop-the-world one: a request
// arriving during it waits, once per burst. Peers do not notice (liveness is the TCP link).

/** When an idle thread collects its heap. */
export interface IdleCollectorOptions {
  /** How often to look, ms (an unref'd timer; one heap-statistics call per look). */
  readonly checkMs?: number;
  /** Event-loop utilization over the last look below which the thread counts as quiet. */
  readonly quietUtilization?: number;
  /** Heap growth since the last collection, bytes, that makes one worth its pause (at least). */
  readonly minGrowthBytes?: number;
  /** Further collections, one per quiet look, while the heap V8 keeps committed is more than
   *  twice what is in use: one compaction leaves many half-empty pages behind. */
  readonly followUps?: number;
}

export const IDLE_COLLECTOR_DEFAULTS: Required<IdleCollectorOptions> = {
  checkMs: 5_000,
  quietUtilization: 0.1,
  minGrowthBytes: 64 * 2 ** 20,
  followUps: 2,
};

/** What the collector reads and does, injectable for tests. */
export interface IdleCollectorProbe {
  /** Event-loop utilization (0..1) since the previous call. */
  utilization(): number;
  /** Bytes of heap in use (live and not yet collected). */
  heapUsed(): number;
  /** Bytes of heap V8 holds from the system. */
  heapCommitted(): number;
  /** A full, compacting collection, or null when this runtime cannot be asked for one. */
  readonly collect: (() => void) | null;
}

/** The thread's own probe: perf_hooks' event-loop utilization, V8's heap statistics and the gc
 *  function V8 exposes on request. Asking flips a process-wide V8 flag; it is set only for the
 *  moment a fresh context is created to hand the function out, so no script sees a global gc.
 *  Worker threads starting together may interleave those flag changes; the loser gets no gc
 *  function and its thread simply runs without an idle collector (left to V8, as before). */
export function threadProbe(): IdleCollectorProbe {
  let mark = performance.eventLoopUtilization();
  return {
    utilization() {
      const now = performance.eventLoopUtilization();
      const u = performance.eventLoopUtilization(now, mark).utilization;
      mark = now;
      return u;
    },
    heapUsed: () => getHeapStatistics().used_heap_size,
    heapCommitted: () => getHeapStatistics().total_heap_size,
    collect: exposedGc(),
  };
}

function exposedGc(): (() => void) | null {
  const own: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return () => own();
  try {
    setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    return typeof fn === 'function' ? () => fn() : null;
  } catch {
    return null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** Collects the heap after it grew by more than it held after the last collection (and by
 *  minGrowthBytes at least), in the first look that finds the thread quiet, then up to
 *  `followUps` times more in later quiet looks while most of the committed heap is empty. A
 *  thread under steady load never qualifies and is left to V8. */
export class IdleCollector {
  private readonly o: Required<IdleCollectorOptions>;
  private baseline: number;
  private followUpsLeft = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Collections run and their total pause, ms. */
  readonly stats = { collections: 0, pauseMs: 0 };

  constructor(
    private readonly probe: IdleCollectorProbe,
    opts: IdleCollectorOptions = {},
    private readonly log?: Logger,
  ) {
    this.o = { ...IDLE_COLLECTOR_DEFAULTS, ...opts };
    this.baseline = probe.heapUsed();
  }

  start(): void {
    if (this.timer || !this.probe.collect) return;
    this.probe.utilization();
    this.timer = setInterval(() => this.check(), this.o.checkMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look; true when it collected. */
  check(): boolean {
    const u = this.probe.utilization();
    const quiet = u < this.o.quietUtilization;
    const used = this.probe.heapUsed();
    // A collection V8 ran itself lowers what is in use: follow it down.
    if (used < this.baseline) this.baseline = used;
    if (!quiet || !this.probe.collect) return false;
    const grew = used - this.baseline >= Math.max(this.o.minGrowthBytes, this.baseline);
    const committed = this.probe.heapCommitted();
    const sparse = this.followUpsLeft > 0 && committed - used >= Math.max(this.o.minGrowthBytes, used);
    if (!grew && !sparse) {
      this.followUpsLeft = 0;
      return false;
    }
    this.followUpsLeft = grew ? this.o.followUps : this.followUpsLeft - 1;
    const t0 = performance.now();
    this.probe.collect();
    const pauseMs = performance.now() - t0;
    this.baseline = this.probe.heapUsed();
    this.stats.collections++;
    this.stats.pauseMs += pauseMs;
    const mib = (b: number) => Math.round(b / 2 ** 20);
    this.log?.info(
      {
        utilization: Math.round(u * 1000) / 1000,
        heapBeforeMiB: mib(used),
        heapAfterMiB: mib(this.baseline),
        committedBeforeMiB: mib(committed),
        committedAfterMiB: mib(this.probe.heapCommitted()),
        pauseMs: Math.round(pauseMs),
      },
      'idle thread collected its heap',
    );
    return true;
  }
}
