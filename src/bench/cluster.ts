// Cluster benchmark: 3 node processes on 127.0.0.1 (fsync on, built-in KV, 16-byte values), each
// with an embedded load generator (the embedded API, many concurrent proposers per node).
// Reports committed writes/s and latency percentiles, Dragonboat-style, per configuration.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NODE_FLAGS } from '../runtime/heap.js';
import { freePorts } from './ports.js';
import { pct, round } from './stats.js';

export interface ClusterResult {
  name: string;
  groups: number;
  workersPerNode: number;
  proposersPerNode: number;
  valueBytes: number;
  local: boolean;
  writesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  electSeconds: number;
  cpuPctPerNode: number[];
  seconds: number;
}

export interface IdleResult {
  groups: number;
  /** null: the node's default. */
  workersPerNode: number | null;
  electSeconds: number;
  quiesceSeconds: number;
  /** Whole-process CPU over the second window of `seconds` after the cluster settled (the
   *  steady state); the first window, while the election's garbage is still being reclaimed,
   *  is `settlingCpuPctPerNode`. */
  idleCpuPctPerNode: number[];
  settlingCpuPctPerNode: number[];
  rssMiBPerNode: number[];
  rssKiBPerReplica: number;
  /** Of the RSS: the JavaScript heap in use, and as reserved by V8 (the rest is native: LMDB maps, buffers, code). */
  heapUsedKiBPerReplica: number;
  heapTotalKiBPerReplica: number;
  raftBatchesWhileIdle: number;
  framesWhileIdle: number;
}

/** Start 3 nodes with `groups` groups, wait until every group is elected and every replica
 *  quiesced, then measure CPU, memory and traffic over `seconds` of idleness. */
export async function runIdle(o: {
  groups: number;
  workers: number | null;
  seconds: number;
  balancer?: boolean;
}): Promise<IdleResult> {
  return withCluster(
    o.groups,
    o.workers,
    async (kids, next) => {
      const t0 = performance.now();
      const poll = async () =>
        Promise.all(
          [...kids.values()].map((c) => {
            c.send({ cmd: 'status' });
            return next(c, 'status');
          }),
        );
      let electSeconds = 0;
      for (;;) {
        const st = await poll();
        if (!electSeconds && st.reduce((a, s) => a + (s.leaders as number), 0) === o.groups)
          electSeconds = (performance.now() - t0) / 1000;
        if (electSeconds && st.every((s) => s.quiesced === s.groups)) break;
        if (performance.now() - t0 > 1_800_000) throw new Error('not elected and quiesced in 30 min');
        await sleep(1000);
      }
      const quiesceSeconds = (performance.now() - t0) / 1000;
      await Promise.all(
        [...kids.values()].map((c) => {
          c.send({ cmd: 'settle' });
          return next(c, 'settled');
        }),
      );
      const idle = await Promise.all(
        [...kids.values()].map((c) => {
          c.send({ cmd: 'idle', seconds: o.seconds });
          return next(c, 'idle');
        }),
      );
      const rss = idle.map((r) => r.rssBytes as number);
      if (process.env.BENCH_VERBOSE) process.stderr.write(`idle: ${JSON.stringify(idle)}\n`);
      const replicas = idle.reduce((a, r) => a + (r.groups as number), 0);
      return {
        groups: o.groups,
        workersPerNode: o.workers,
        electSeconds: round(electSeconds, 1),
        quiesceSeconds: round(quiesceSeconds, 1),
        idleCpuPctPerNode: idle.map((r) => round(r.cpuPct as number, 2)),
        settlingCpuPctPerNode: idle.map((r) => round(r.settlingCpuPct as number, 2)),
        rssMiBPerNode: rss.map((b) => Math.round(b / 2 ** 20)),
        rssKiBPerReplica: round(rss.reduce((a, b) => a + b, 0) / replicas / 1024, 1),
        heapUsedKiBPerReplica: round(idle.reduce((a, r) => a + (r.heapUsedBytes as number), 0) / replicas / 1024, 1),
        heapTotalKiBPerReplica: round(idle.reduce((a, r) => a + (r.heapTotalBytes as number), 0) / replicas / 1024, 1),
        raftBatchesWhileIdle: idle.reduce((a, r) => a + (r.raftBatchesOut as number), 0),
        framesWhileIdle: idle.reduce((a, r) => a + (r.framesSent as number), 0),
      };
    },
    () => (o.balancer ? ['--balancer', JSON.stringify({ enabled: true })] : []),
  );
}

/** The leader balancer (on by default in the runtime) stays off: these scenarios measure the
 *  placement the elections made, or move leaders themselves. */
export const NO_BALANCER = ['--balancer', JSON.stringify({ enabled: false })];

export type Next = (c: ChildProcess, kind: string) => Promise<Record<string, unknown>>;

/** With BENCH_PROF_LOAD=DIR: start (or stop and write) every node's CPU profile. */
export async function profileNodes(kids: Map<string, ChildProcess>, next: Next, on: boolean): Promise<void> {
  if (!process.env.BENCH_PROF_LOAD && !process.env.BENCH_HEAP_LOAD) return;
  await Promise.all(
    [...kids.values()].map((c) => {
      c.send({ cmd: 'prof', on });
      return next(c, 'prof');
    }),
  );
}

/** Every node's cumulative work counters (see workCounters in cluster-node.ts). */
export async function counters(kids: Map<string, ChildProcess>, next: Next): Promise<Record<string, number>[]> {
  const st = await Promise.all(
    [...kids.values()].map((c) => {
      c.send({ cmd: 'status' });
      return next(c, 'status');
    }),
  );
  return st.map((s) => (s.counters ?? {}) as Record<string, number>);
}

/** Work per committed write between two counter snapshots: cluster-wide CPU (µs), and per node
 *  (averaged over the nodes) loop turns, fsyncs, Readies, group ticks, Raft messages sent, frames
 *  and disk bytes written. */
export interface PerWrite {
  cpuUsCluster: number;
  /** Of which in the kernel (system time: syscalls, fsync, page writes). */
  cpuSysUsCluster: number;
  cpuUsPerNode: number;
  loopsPerNode: number;
  fsyncsPerNode: number;
  readiesPerNode: number;
  groupTicksPerNode: number;
  raftMessagesCluster: number;
  framesPerNode: number;
  diskBytesPerNode: number;
  /** WAL record bytes per write per node (the rest of diskBytesPerNode is LMDB: the state
   *  machine's flushes and checkpoints). */
  walBytesPerNode: number;
  /** Checkpoints during the row (all nodes). */
  checkpoints: number;
  /** Time inside the shard loop's turns (step, Readies, staging, after the commit), µs. */
  loopUsPerNode: number;
}

export function perWrite(
  before: Record<string, number>[],
  after: Record<string, number>[],
  writes: number,
): PerWrite | null {
  if (writes <= 0 || before.length === 0) return null;
  const d = (k: string) => after.reduce((a, x, i) => a + ((x[k] ?? 0) - (before[i]?.[k] ?? 0)), 0);
  const n = after.length;
  const r = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
  const cpu = d('cpuUserUs') + d('cpuSystemUs');
  return {
    cpuUsCluster: r(cpu / writes, 1),
    cpuSysUsCluster: r(d('cpuSystemUs') / writes, 1),
    cpuUsPerNode: r(cpu / writes / n, 1),
    loopsPerNode: r(d('loops') / writes / n, 4),
    fsyncsPerNode: r(d('commits') / writes / n, 4),
    readiesPerNode: r(d('readies') / writes / n),
    groupTicksPerNode: r(d('groupTicks') / writes / n),
    raftMessagesCluster: r(d('messagesOut') / writes),
    framesPerNode: r(d('framesSent') / writes / n),
    diskBytesPerNode: Math.round(d('diskWriteBytes') / writes / n),
    walBytesPerNode: Math.round(d('walBytes') / writes / n),
    checkpoints: d('checkpoints'),
    loopUsPerNode: r((1000 * (d('msStep') + d('msReady') + d('msStage') + d('msAfter'))) / writes / n, 1),
  };
}

/** Poll every node until all `groups` have a leader; returns the seconds it took. */
export async function waitElected(kids: Map<string, ChildProcess>, next: Next, groups: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const st = await Promise.all(
      [...kids.values()].map((c) => {
        c.send({ cmd: 'status' });
        return next(c, 'status');
      }),
    );
    if (st.reduce((a, s) => a + (s.leaders as number), 0) === groups) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > 300_000) throw new Error('groups not elected in 300 s');
    await sleep(250);
  }
}

/** The node process to start: this build's cluster-node (compiled, or under tsx when this file
 *  runs under tsx), or with BENCH_DIST=DIR the compiled one of the build in DIR (e.g. a snapshot
 *  made with `tsc -p . --outDir .tmp/bench-dist` while src/ is being edited). */
export function clusterNodeEntry(): { file: string; execArgv: string[] } {
  if (process.env.BENCH_DIST)
    return { file: resolve(process.env.BENCH_DIST, 'src/bench/cluster-node.js'), execArgv: [] };
  const ts = import.meta.filename.endsWith('.ts');
  return {
    file: join(import.meta.dirname, ts ? 'cluster-node.ts' : 'cluster-node.js'),
    execArgv: ts ? ['--import', 'tsx'] : [],
  };
}

/** `workers`: the node's --workers, or null for its default (shards on the main thread on a
 *  2-core machine). BENCH_WORKERS overrides it either way. */
export async function withCluster<T>(
  groups: number,
  workers: number | null,
  fn: (kids: Map<string, ChildProcess>, next: Next) => Promise<T>,
  extraArgs: (id: string) => string[] = () => [],
): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-bench-cluster-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(ids.length);
  const addr = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const kids = new Map<string, ChildProcess>();
  const next: Next = (c, kind) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const on = (m: Record<string, unknown>) => {
        if (m.kind === kind) {
          c.off('message', on);
          resolve(m);
        }
      };
      c.setMaxListeners(0);
      c.on('message', on);
      c.once('exit', (code) => reject(new Error(`bench node exited with ${code}`)));
    });
  const entry = clusterNodeEntry();
  try {
    for (const id of ids) {
      // BENCH_WORKERS overrides the scenario's worker count (0: shards on the main thread).
      const w = process.env.BENCH_WORKERS ?? (workers === null ? null : String(workers));
      const args = [
        '--id',
        id,
        '--data',
        join(root, id),
        '--listen',
        addr.get(id)!,
        '--groups',
        String(groups),
        ...(w === null ? [] : ['--workers', w]),
        ...extraArgs(id),
      ];
      for (const p of ids) if (p !== id) args.push('--peer', `${p}=${addr.get(p)}`);
      kids.set(
        id,
        fork(entry.file, args, {
          execArgv: [
            ...entry.execArgv,
            '--max-old-space-size=8192',
            ...NODE_FLAGS,
            ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(' ') : []),
            ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.BENCH_PROF] : []),
          ],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        }),
      );
    }
    await Promise.all([...kids.values()].map((c) => next(c, 'ready')));
    const r = await fn(kids, next);
    for (const c of kids.values()) c.send({ cmd: 'stop' });
    await Promise.all(
      [...kids.values()].map((c) => new Promise((res) => (c.exitCode !== null ? res(null) : c.once('exit', res)))),
    );
    return r;
  } finally {
    for (const c of kids.values()) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
}

export async function runCluster(o: {
  groups: number;
  workers: number;
  proposers: number;
  valueBytes: number;
  seconds: number;
  local: boolean;
}): Promise<ClusterResult> {
  return withCluster(
    o.groups,
    o.workers,
    async (kids, next) => {
      const electSeconds = await waitElected(kids, next, o.groups);
      const results = await Promise.all(
        [...kids.values()].map((c) => {
          c.send({ cmd: 'load', seconds: o.seconds, proposers: o.proposers, valueBytes: o.valueBytes, local: o.local });
          return next(c, 'result');
        }),
      );
      if (process.env.BENCH_VERBOSE)
        for (const r of results) process.stderr.write(`loop/s ${JSON.stringify(r.perSecond)}\n`);
      const total = results.reduce((a, r) => a + (r.writes as number), 0);
      const secs = Math.max(...results.map((r) => r.seconds as number));
      const lat = Float64Array.from(results.flatMap((r) => r.latenciesMs as number[])).sort();
      return {
        name: `${o.groups} groups, ${o.valueBytes} B, ${o.proposers}x3 proposers${o.local ? ', local leaders' : ''}`,
        groups: o.groups,
        workersPerNode: o.workers,
        proposersPerNode: o.proposers,
        valueBytes: o.valueBytes,
        local: o.local,
        writesPerSec: Math.round(total / secs),
        p50Ms: round(pct(lat, 50)),
        p99Ms: round(pct(lat, 99)),
        p999Ms: round(pct(lat, 99.9)),
        errors: results.reduce((a, r) => a + (r.errors as number), 0),
        electSeconds: round(electSeconds, 1),
        cpuPctPerNode: results.map((r) => Math.round(r.cpuPct as number)),
        seconds: round(secs, 1),
      };
    },
    () => NO_BALANCER,
  );
}

export interface TransferBenchResult {
  groups: number;
  transfers: number;
  transferP50Ms: number;
  transferP99Ms: number;
  transferMaxMs: number;
  /** Medians of each phase (catch-up, campaign, verification), ms. */
  transferPhaseP50Ms: { catchUp: number; campaign: number; verify: number };
  transferFailures: string[];
  /** `refused`: the drain as a whole was refused (e.g. ClusterUnstable), with the reason. */
  drain: { moved: number; failed: number; ms: number; refused?: string } | null;
  writes: number;
  failedWrites: number;
  stalledWrites: number;
  writeP99Ms: number;
}

/** Planned leadership moves under write load: node n1 transfers `transfers` of its leaderships
 *  (each verified) and then drains, while every node writes. */
export async function runTransfers(o: {
  groups: number;
  transfers: number;
  proposers: number;
  seconds: number;
}): Promise<TransferBenchResult> {
  return withCluster(
    o.groups,
    null,
    async (kids, next) => {
      await waitElected(kids, next, o.groups);
      const results = await Promise.all(
        [...kids.entries()].map(([id, c]) => {
          c.send({
            cmd: 'load',
            seconds: o.seconds,
            proposers: o.proposers,
            valueBytes: 16,
            local: false,
            transfers: id === 'n1' ? o.transfers : 0,
            drain: id === 'n1',
          });
          return next(c, 'result');
        }),
      );
      const n1 = results[0];
      const ms = Float64Array.from(n1.transferMs as number[]).sort();
      const lat = Float64Array.from(results.flatMap((r) => r.latenciesMs as number[])).sort();
      const phases = n1.transferPhases as [number, number, number][];
      const phase = (i: number) => round(pct(Float64Array.from(phases.map((p) => p[i])).sort(), 50), 1);
      return {
        groups: o.groups,
        transfers: ms.length,
        transferP50Ms: round(pct(ms, 50), 1),
        transferP99Ms: round(pct(ms, 99), 1),
        transferMaxMs: round(ms.length ? ms[ms.length - 1] : 0, 1),
        transferFailures: n1.transferFailures as string[],
        transferPhaseP50Ms: { catchUp: phase(0), campaign: phase(1), verify: phase(2) },
        drain: n1.drainReport as TransferBenchResult['drain'],
        writes: results.reduce((a, r) => a + (r.writes as number), 0),
        failedWrites: results.reduce((a, r) => a + (r.errors as number), 0),
        stalledWrites: results.reduce((a, r) => a + (r.stalls as number), 0),
        writeP99Ms: round(pct(lat, 99)),
      };
    },
    () => NO_BALANCER,
  );
}

// Direct use: node --import tsx src/bench/cluster.ts GROUPS WORKERS PROPOSERS SECONDS [local]
//             node --import tsx src/bench/cluster.ts transfer GROUPS TRANSFERS SECONDS [PROPOSERS per node, default 64]
//             node --import tsx src/bench/cluster.ts idle GROUPS WORKERS SECONDS [balancer]
if (process.argv[1] === import.meta.filename) {
  if (process.argv[2] === 'transfer') {
    const [g, n, s, p] = process.argv.slice(3);
    process.stdout.write(
      JSON.stringify(
        await runTransfers({
          groups: Number(g ?? 1000),
          transfers: Number(n ?? 100),
          proposers: Number(p ?? 64),
          seconds: Number(s ?? 20),
        }),
      ) + '\n',
    );
  } else if (process.argv[2] === 'idle') {
    const [g, w, s, b] = process.argv.slice(3);
    process.stdout.write(
      JSON.stringify(
        await runIdle({
          groups: Number(g ?? 10_000),
          workers: Number(w ?? 1),
          seconds: Number(s ?? 5),
          balancer: b === 'balancer',
        }),
      ) + '\n',
    );
  } else {
    const [g, w, p, s, local] = process.argv.slice(2);
    const r = await runCluster({
      groups: Number(g ?? 1000),
      workers: Number(w ?? 1),
      proposers: Number(p ?? 256),
      valueBytes: 16,
      seconds: Number(s ?? 10),
      local: local === 'local',
    });
    process.stdout.write(JSON.stringify(r) + '\n');
  }
}
