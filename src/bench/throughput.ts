// Throughput and latency against active groups and payload (scenario 1), the read mix
// (scenario 3), and the idle cost of the same cluster once the load stops (scenario 4). One
// cluster of 3 node processes serves the whole matrix: "active groups" are the groups the load
// writes to (the first N by id), so a row with 1 active group runs beside 9,999 quiesced ones, as
// in a real deployment, and the cluster is elected once instead of once per row.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bench } from 'tinybench';
import {
  NO_BALANCER,
  counters,
  perWrite,
  profileNodes,
  waitElected,
  withCluster,
  type Next,
  type PerWrite,
} from './cluster.js';
import { pct, round } from './stats.js';

export interface MatrixRow {
  activeGroups: number;
  valueBytes: number;
  /** The proposers asked for (stable across runs: figure ids use it). */
  plannedProposers: number;
  /** Concurrent proposers across the cluster (each node drives the active groups it leads). */
  proposers: number;
  writesPerSec: number;
  /** Payload bytes committed per second (values only). */
  mibPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  errors: number;
  cpuPctPerNode: number[];
  seconds: number;
  /** Work per committed write (CPU, turns, fsyncs, Readies, messages, disk bytes). */
  perWrite: PerWrite | null;
}

export interface IdleSample {
  groups: number;
  idleCpuPctPerNode: number[];
  rssMiBPerNode: number[];
  rssKiBPerReplica: number;
  raftBatchesWhileIdle: number;
  framesWhileIdle: number;
  /** From the end of the load until every replica was quiesced. */
  quiesceAfterLoadSeconds: number;
}

export interface ThroughputResult {
  groups: number;
  electSeconds: number;
  rows: MatrixRow[];
  idle: IdleSample | null;
}

export interface ReadMixRow {
  consistency: 'linearizable' | 'lease';
  readRatio: number;
  groups: number;
  proposers: number;
  readsPerSec: number;
  writesPerSec: number;
  readP50Ms: number;
  readP99Ms: number;
  writeP50Ms: number;
  writeP99Ms: number;
  errors: number;
}

/** Wait until every replica on every node is quiesced (at most `limitMs`). */
async function quiesced(kids: Map<string, ChildProcess>, next: Next, limitMs: number): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    const st = await Promise.all(
      [...kids.values()].map((c) => {
        c.send({ cmd: 'status' });
        return next(c, 'status');
      }),
    );
    if (st.every((s) => s.quiesced === s.groups) || performance.now() - t0 > limitMs) return;
    await sleep(250);
  }
}

async function load(kids: Map<string, ChildProcess>, next: Next, cmd: Record<string, unknown>) {
  const results = await Promise.all(
    [...kids.values()].map((c) => {
      c.send({ cmd: 'load', local: true, ...cmd });
      return next(c, 'result');
    }),
  );
  const secs = Math.max(...results.map((r) => r.seconds as number));
  return {
    results,
    secs,
    writes: results.reduce((a, r) => a + (r.writes as number), 0),
    reads: results.reduce((a, r) => a + ((r.reads as number) ?? 0), 0),
    errors: results.reduce((a, r) => a + (r.errors as number), 0),
    proposers: results.reduce((a, r) => a + ((r.proposers as number) ?? 0), 0),
    lat: Float64Array.from(results.flatMap((r) => r.latenciesMs as number[])).sort(),
    readLat: Float64Array.from(results.flatMap((r) => (r.readLatenciesMs as number[]) ?? [])).sort(),
  };
}

/** One row of the matrix on a running cluster. */
export type RowPlan = { activeGroups: number; valueBytes: number; proposers: number };

/** The matrix: every active-group count x every payload, `seconds` each, on one cluster of
 *  max(active) groups; then, with `idleSeconds`, the idle cost once every replica quiesced. Each
 *  row is a tinybench task run once, returning the row's duration as `overriddenDuration`, so
 *  that tinybench's table carries the row with its custom metrics. */
export async function runThroughput(o: {
  active: number[];
  payloads: number[];
  proposers: number;
  seconds: number;
  idleSeconds: number;
  extra?: RowPlan[];
  /** Wait for every group to quiesce before each row (off in --quick, to keep it short). */
  settle?: boolean;
  onRow?: (r: MatrixRow) => void;
}): Promise<ThroughputResult & { table: Record<string, string | number>[] }> {
  const groups = Math.max(...o.active, ...(o.extra ?? []).map((r) => r.activeGroups));
  return withCluster(
    groups,
    null,
    async (kids, next) => {
      const electSeconds = await waitElected(kids, next, groups);
      // Let the election's catch-up traffic settle so the first row is not penalised.
      await sleep(2000);
      const rows: MatrixRow[] = [];
      const plan: RowPlan[] = [
        ...o.active.flatMap((a) => o.payloads.map((v) => ({ activeGroups: a, valueBytes: v, proposers: o.proposers }))),
        ...(o.extra ?? []),
      ];
      const bench = new Bench({ name: 'throughput', iterations: 1, time: 0, warmup: false, throws: true });
      const byTask = new Map<string, MatrixRow>();
      for (const p of plan) {
        const name = `${p.activeGroups} active, ${p.valueBytes} B, ${p.proposers} proposers`;
        bench.add(name, async () => {
          // Each row starts from quiet groups: the previous row's groups (up to 10,000 awake ones)
          // would otherwise still be ticking and heartbeating into this row's measurement.
          if (o.settle !== false) await quiesced(kids, next, 30_000);
          const c0 = await counters(kids, next);
          await profileNodes(kids, next, true);
          const x = await load(kids, next, {
            seconds: o.seconds,
            totalProposers: p.proposers,
            valueBytes: p.valueBytes,
            activeGroups: p.activeGroups,
          });
          await profileNodes(kids, next, false);
          const c1 = await counters(kids, next);
          const row: MatrixRow = {
            activeGroups: p.activeGroups,
            valueBytes: p.valueBytes,
            plannedProposers: p.proposers,
            proposers: x.proposers,
            writesPerSec: Math.round(x.writes / x.secs),
            mibPerSec: round((x.writes * p.valueBytes) / x.secs / 2 ** 20, 2),
            p50Ms: round(pct(x.lat, 50)),
            p99Ms: round(pct(x.lat, 99)),
            p999Ms: round(pct(x.lat, 99.9)),
            maxMs: round(x.lat.length ? x.lat[x.lat.length - 1] : 0),
            errors: x.errors,
            cpuPctPerNode: x.results.map((r) => Math.round(r.cpuPct as number)),
            seconds: round(x.secs, 1),
            perWrite: perWrite(c0, c1, x.writes),
          };
          rows.push(row);
          byTask.set(name, row);
          o.onRow?.(row);
          return { overriddenDuration: x.secs * 1000 };
        });
      }
      await bench.run();
      // tinybench's own table, its latency column being the row's duration, plus the row's figures.
      const table = bench
        .table((t) => {
          const r = byTask.get(t.name);
          return {
            task: t.name,
            'duration (ms)': t.result.state === 'completed' ? Math.round(t.result.latency.mean) : t.result.state,
            'writes/s': r?.writesPerSec ?? 0,
            'p50 (ms)': r?.p50Ms ?? 0,
            'p99 (ms)': r?.p99Ms ?? 0,
            'p99.9 (ms)': r?.p999Ms ?? 0,
          };
        })
        .filter((x): x is Record<string, string | number> => x !== null);
      let idle: IdleSample | null = null;
      if (o.idleSeconds > 0) {
        const t0 = performance.now();
        await quiesced(kids, next, 120_000);
        const quiesceAfterLoadSeconds = round((performance.now() - t0) / 1000, 1);
        await Promise.all(
          [...kids.values()].map((c) => {
            c.send({ cmd: 'settle' });
            return next(c, 'settled');
          }),
        );
        const r = await Promise.all(
          [...kids.values()].map((c) => {
            c.send({ cmd: 'idle', seconds: o.idleSeconds });
            return next(c, 'idle');
          }),
        );
        const rss = r.map((x) => x.rssBytes as number);
        const replicas = r.reduce((a, x) => a + (x.groups as number), 0);
        idle = {
          groups,
          idleCpuPctPerNode: r.map((x) => round(x.cpuPct as number, 2)),
          rssMiBPerNode: rss.map((b) => Math.round(b / 2 ** 20)),
          rssKiBPerReplica: round(rss.reduce((a, b) => a + b, 0) / replicas / 1024, 1),
          raftBatchesWhileIdle: r.reduce((a, x) => a + (x.raftBatchesOut as number), 0),
          framesWhileIdle: r.reduce((a, x) => a + (x.framesSent as number), 0),
          quiesceAfterLoadSeconds,
        };
      }
      return { groups, electSeconds: round(electSeconds, 1), rows, idle, table };
    },
    () => NO_BALANCER,
  );
}

export interface OpenLoopRow {
  groups: number;
  /** Writes/s offered on a fixed schedule across the cluster. */
  offeredPerSec: number;
  writesPerSec: number;
  /** Latency from each write's scheduled time (queueing included). */
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  /** Scheduled writes not issued because 50,000 per node were outstanding. */
  shed: number;
  /** Worst event-loop delay of any node during the row (inline shards run on that loop): p99, max. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  perWrite: PerWrite | null;
}

/** Open-loop rows on `groups` active groups (each node writes to the groups it leads, at its
 *  share of the rate): rates in increasing order until p99 passes `stopAboveMs` or the cluster
 *  falls behind the schedule by more than 20%. Reports the highest rate whose p99 stayed within
 *  50 ms. */
export async function runOpenLoop(o: {
  groups: number;
  rates: number[];
  seconds: number;
  stopAboveMs?: number;
  onRow?: (r: OpenLoopRow) => void;
}): Promise<{ rows: OpenLoopRow[]; maxRateP99Within50Ms: number | null }> {
  return withCluster(
    o.groups,
    null,
    async (kids, next) => {
      await waitElected(kids, next, o.groups);
      await sleep(2000);
      // Warm-up at the first rate, not reported: the first seconds after start-up run code the JIT
      // has not optimized yet (a p99 four times the steady one here), which says nothing about a
      // running cluster.
      await load(kids, next, {
        seconds: Math.min(3, o.seconds),
        totalRate: o.rates[0] ?? 1000,
        valueBytes: 16,
        activeGroups: o.groups,
      });
      await sleep(1000);
      const rows: OpenLoopRow[] = [];
      for (const rate of o.rates) {
        const c0 = await counters(kids, next);
        const x = await load(kids, next, {
          seconds: o.seconds,
          totalRate: rate,
          valueBytes: 16,
          activeGroups: o.groups,
        });
        const c1 = await counters(kids, next);
        const shed = x.results.reduce((a, r) => a + ((r.shed as number) ?? 0), 0);
        const row: OpenLoopRow = {
          groups: o.groups,
          offeredPerSec: rate,
          writesPerSec: Math.round(x.writes / x.secs),
          p50Ms: round(pct(x.lat, 50)),
          p99Ms: round(pct(x.lat, 99)),
          p999Ms: round(pct(x.lat, 99.9)),
          errors: x.errors,
          shed,
          loopDelayP99Ms: round(Math.max(...x.results.map((r) => (r.loopDelayP99Ms as number) ?? 0))),
          loopDelayMaxMs: round(Math.max(...x.results.map((r) => (r.loopDelayMaxMs as number) ?? 0))),
          perWrite: perWrite(c0, c1, x.writes),
        };
        rows.push(row);
        o.onRow?.(row);
        if (row.p99Ms > (o.stopAboveMs ?? 500) || row.writesPerSec < 0.8 * rate || shed > 0) break;
        await sleep(1000);
      }
      const within = rows.filter((r) => r.p99Ms <= 50 && r.shed === 0 && r.writesPerSec >= 0.95 * r.offeredPerSec);
      return { rows, maxRateP99Within50Ms: within.length ? Math.max(...within.map((r) => r.offeredPerSec)) : null };
    },
    () => NO_BALANCER,
  );
}

/** Reads mixed with writes (readRatio of the operations are reads) on `groups` groups, each
 *  node driving the groups it leads: ReadIndex (linearizable) reads, then lease reads. The nodes
 *  run with lease reads enabled (checkQuorum on) so that both kinds are served by one cluster. */
export async function runReadMix(o: {
  groups: number;
  proposers: number;
  seconds: number;
  readRatio: number;
  onRow?: (r: ReadMixRow) => void;
}): Promise<ReadMixRow[]> {
  return withCluster(
    o.groups,
    null,
    async (kids, next) => {
      await waitElected(kids, next, o.groups);
      await sleep(2000);
      const rows: ReadMixRow[] = [];
      for (const consistency of ['linearizable', 'lease'] as const) {
        const x = await load(kids, next, {
          seconds: o.seconds,
          totalProposers: o.proposers,
          valueBytes: 16,
          readRatio: o.readRatio,
          consistency,
        });
        const row: ReadMixRow = {
          consistency,
          readRatio: o.readRatio,
          groups: o.groups,
          proposers: x.proposers,
          readsPerSec: Math.round(x.reads / x.secs),
          writesPerSec: Math.round(x.writes / x.secs),
          readP50Ms: round(pct(x.readLat, 50)),
          readP99Ms: round(pct(x.readLat, 99)),
          writeP50Ms: round(pct(x.lat, 50)),
          writeP99Ms: round(pct(x.lat, 99)),
          errors: x.errors,
        };
        rows.push(row);
        o.onRow?.(row);
      }
      return rows;
    },
    () => [...NO_BALANCER, '--lease-reads'],
  );
}

// Direct use: node --import tsx src/bench/throughput.ts [matrix|reads|open] [seconds] [...]
if (process.argv[1] === import.meta.filename) {
  const secs = Number(process.argv[3] ?? 4);
  const out = (x: unknown) => process.stdout.write(JSON.stringify(x) + '\n');
  if (process.argv[2] === 'reads')
    out(await runReadMix({ groups: 1000, proposers: 3000, seconds: secs, readRatio: 0.9, onRow: out }));
  else if (process.argv[2] === 'open') {
    const rates = (process.argv[4] ?? '5000,10000,20000,30000,40000').split(',').map(Number);
    out(await runOpenLoop({ groups: 1000, rates, seconds: secs, onRow: out }));
  } else {
    // Rows in the order given (a repeated count is run again: the first row after the election
    // warms the cluster up); the cluster has max(active) groups.
    const active = (process.argv[4] ?? '1,100,1000').split(',').map(Number);
    const bytes = Number(process.argv[5] ?? 16);
    const extra = active.slice(1).map((a, i) => ({ activeGroups: a, valueBytes: bytes, proposers: 3000 - i - 1 }));
    out(
      await runThroughput({
        active: [active[0]],
        payloads: [bytes],
        proposers: 3000,
        extra,
        seconds: secs,
        idleSeconds: 3,
        settle: false,
        onRow: out,
      }),
    );
  }
}
