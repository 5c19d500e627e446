// Child process of the cluster benchmark: one flotilla node with an embedded load generator.
// Protocol over IPC: parent sends {cmd:'load', seconds, proposers, valueBytes, groups, local};
// child answers {kind:'ready', electionMs} once started, {kind:'status', leaders, moves, ...} on
// request and {kind:'result', writes, errors, latenciesMs[]} after a load run. Also 'led' (the
// groups this node leads), 'undrain', 'drain' {concurrency}, 'configure' {config} (balancer
// settings at run time), 'settle' (answers once this node's balancer has stood still),
// 'idle' {seconds} and 'stop'.
import { parseArgs } from 'node:util';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
// The node and its admin HTTP server come from the same build as this file: dist/ when the
// suite runs compiled (what users run; tsx's dev transform adds a helper call to every closure,
// which costs measurable CPU per request), src/ when it runs under tsx. cluster.ts chooses
// which build's copy of this file to start (BENCH_DIST).
import { startNode, groupOfKey } from '../runtime/node.js';
import { startAdmin } from '../http/admin.js';
import type { ShardEntry } from '../runtime/status.js';

const { values } = parseArgs({
  options: {
    id: { type: 'string' },
    data: { type: 'string' },
    listen: { type: 'string' },
    peer: { type: 'string', multiple: true },
    groups: { type: 'string' },
    workers: { type: 'string' },
    'tick-ms': { type: 'string' },
    'election-ticks': { type: 'string' },
    draining: { type: 'boolean' },
    balancer: { type: 'string' },
    'timeout-ms': { type: 'string' },
    // HOST:PORT: also serve the admin HTTP key-value gateway (the HTTP scenario's clients use it).
    admin: { type: 'string' },
    'lease-reads': { type: 'boolean' },
    zone: { type: 'string' },
  },
});
const peers: Record<string, string> = {};
for (const p of values.peer ?? []) peers[p.slice(0, p.indexOf('='))] = p.slice(p.indexOf('=') + 1);
const groups = Number(values.groups);
const tickMs = Number(values['tick-ms'] ?? 100);
const electionTicks = Number(values['election-ticks'] ?? 10);
const timeoutMs = Number(values['timeout-ms'] ?? 30_000);
const node = await startNode({
  id: values.id!,
  dataDir: values.data!,
  listen: values.listen!,
  peers,
  groups,
  noSync: process.env.BENCH_NOSYNC === '1',
  ...(values.workers !== undefined ? { workers: Number(values.workers) } : {}),
  tickMs,
  electionTicks,
  requestTimeoutMs: timeoutMs,
  draining: values.draining === true,
  ...(values.zone ? { labels: { zone: values.zone } } : {}),
  // BENCH_LOG_LEVEL=info (or debug) prints the node's and its workers' logs (JSON lines) on stdout.
  ...(process.env.BENCH_LOG_LEVEL ? { logger: pino({ level: process.env.BENCH_LOG_LEVEL }) } : {}),
  // Benchmarks that measure throughput or planned moves keep leaders where they are unless told.
  balancer: values.balancer ? JSON.parse(values.balancer) : { enabled: false },
  // Lease reads (the read scenario): the leader answers from its lease, no round trip.
  ...(values['lease-reads'] ? { raft: { checkQuorum: true, leaseReads: true } } : {}),
});
const logger = pino({ level: process.env.BENCH_LOG_LEVEL ?? 'silent' });
if (values.admin) {
  const at = values.admin.lastIndexOf(':');
  await startAdmin(node, values.admin.slice(0, at), Number(values.admin.slice(at + 1)), logger);
}
const send = (m: unknown) => process.send!(m);
// The election timeout in force (the node's own figure when it has one, else the options').
const electionMs = node.electionMs;
send({ kind: 'ready', electionMs, requestTimeoutMs: timeoutMs });

/** Cumulative work counters of this node (the benchmarks divide their deltas by the writes):
 *  loop turns, storage commits (fsyncs), Readies, group ticks, Raft messages in and out, frames
 *  and bytes on the wire, CPU (user, system) and bytes the process wrote to disk. */
/** A shard's numeric loop counters by name, copied (a shard on the main thread reports its live
 *  counters object); none for a shard that did not answer. */
function loopCounters(x: ShardEntry): Record<string, number> {
  const out: Record<string, number> = {};
  if (x.up) for (const [k, v] of Object.entries(x.loop)) if (typeof v === 'number') out[k] = v;
  return out;
}

function workCounters(st: Awaited<ReturnType<typeof node.status>>): Record<string, number> {
  const sum = (k: string) => st.shards.reduce((a, x) => a + (loopCounters(x)[k] ?? 0), 0);
  const peers = Object.values(st.transport.peers);
  const cpu = process.cpuUsage();
  let diskWriteBytes = 0;
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    diskWriteBytes = Number(/^write_bytes: (\d+)/m.exec(io)?.[1] ?? 0);
  } catch {
    /* not Linux */
  }
  return {
    loops: sum('loops'),
    commits: sum('commits'),
    readies: sum('readies'),
    groupTicks: sum('groupTicks'),
    applied: sum('applied'),
    messagesIn: sum('messagesIn'),
    messagesOut: sum('messagesOut'),
    framesSent: peers.reduce((a, p) => a + p.framesSent, 0),
    bytesSent: peers.reduce((a, p) => a + p.bytesSent, 0),
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    diskWriteBytes,
    walBytes: st.shards.reduce((a, x) => a + (x.up ? x.store.walBytes : 0), 0),
    checkpoints: st.shards.reduce((a, x) => a + (x.up ? x.store.checkpoints : 0), 0),
    msStep: sum('msStep'),
    msReady: sum('msReady'),
    msStage: sum('msStage'),
    msAfter: sum('msAfter'),
    msSmWrite: sum('msSmWrite'),
  };
}

/** Writes at `rate`/s for `seconds` on a fixed schedule (a timer every millisecond issues what
 *  fell due). At most 50,000 may be outstanding; beyond that a scheduled write is counted as
 *  shed (the cluster cannot keep up with the rate). */
async function openLoop(keys: Uint8Array[], value: Uint8Array, rate: number, seconds: number) {
  const lat: number[] = [];
  let writes = 0;
  let errors = 0;
  let shed = 0;
  let outstanding = 0;
  let issued = 0;
  const cpu0 = process.cpuUsage();
  // Stalls of this process's event loop (where the inline shards run) explain the latency tail.
  const stalls = monitorEventLoopDelay({ resolution: 5 });
  stalls.enable();
  const t0 = performance.now();
  const total = Math.floor(rate * seconds);
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const finish = () => {
    if (issued >= total && outstanding === 0) resolveDone();
  };
  const issue = (at: number, key: Uint8Array) => {
    outstanding++;
    node.kv
      .put(key, value)
      .then(
        () => {
          writes++;
          lat.push(performance.now() - at);
        },
        () => {
          errors++;
        },
      )
      .finally(() => {
        outstanding--;
        finish();
      });
  };
  const timer = setInterval(() => {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000));
    for (; issued < due; issued++) {
      const at = t0 + (issued * 1000) / rate;
      if (outstanding >= 50_000) shed++;
      else issue(at, keys[issued % keys.length]);
    }
    if (issued >= total) {
      clearInterval(timer);
      finish();
    }
  }, 1);
  if (total === 0) {
    clearInterval(timer);
    await sleep(seconds * 1000);
  } else await done;
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stalls.disable();
  return {
    loopDelayP99Ms: stalls.percentile(99) / 1e6,
    loopDelayMaxMs: stalls.max / 1e6,
    writes,
    errors,
    shed,
    reads: 0,
    seconds: secs,
    latenciesMs: lat,
    readLatenciesMs: [],
    proposers: 0,
    keys: keys.length,
    offeredPerSec: rate,
    cpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / secs,
  };
}

let inspector: import('node:inspector').Session | null = null;
/** Profiles of the steady state only, started and stopped around a load: with BENCH_PROF_LOAD=DIR
 *  a CPU profile (.cpuprofile); with BENCH_HEAP_LOAD=DIR a sampling profile of every allocation
 *  made, garbage included (what drives the scavenger), as .heapprofile (src/bench/prof.ts --alloc). */
async function profile(on: boolean): Promise<void> {
  const heap = process.env.BENCH_HEAP_LOAD;
  const dir = heap ?? process.env.BENCH_PROF_LOAD;
  if (!dir) return;
  const { Session } = await import('node:inspector');
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) => {
      inspector!.post(method, params ?? {}, (err, r) => (err ? reject(err) : resolve(r)));
    });
  if (on) {
    inspector = new Session();
    inspector.connect();
    if (heap) {
      await post('HeapProfiler.enable');
      await post('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    } else {
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 500 });
      await post('Profiler.start');
    }
    return;
  }
  if (!inspector) return;
  const { profile: p } = (await post(heap ? 'HeapProfiler.stopSampling' : 'Profiler.stop')) as { profile: unknown };
  const { mkdirSync, writeFileSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/${values.id}-${Date.now()}.${heap ? 'heapprofile' : 'cpuprofile'}`, JSON.stringify(p));
  inspector.disconnect();
  inspector = null;
}

const enc = new TextEncoder();
process.on(
  'message',
  async (m: {
    cmd: string;
    seconds?: number;
    proposers?: number;
    valueBytes?: number;
    local?: boolean;
    transfers?: number;
    drain?: boolean;
    gaps?: boolean;
    config?: Record<string, unknown>;
    concurrency?: number;
    /** Only keys of groups 1..activeGroups (the throughput matrix's "active groups"). */
    activeGroups?: number;
    /** With `local`: the cluster-wide proposer count, split among the nodes by the share of the
     *  active groups each leads (so that every row of the matrix has the same concurrency). */
    totalProposers?: number;
    /** Open loop: writes per second across the cluster (split among the nodes as totalProposers
     *  is), issued on a fixed schedule whatever the answers; latency counts from the scheduled
     *  time, so queueing shows (no coordinated omission). */
    totalRate?: number;
    /** The fraction of operations that are reads (the read mix), with `consistency`. */
    readRatio?: number;
    consistency?: 'linearizable' | 'lease' | 'stale';
  }) => {
    if (m.cmd === 'prof') {
      // Profiles of the steady state only (BENCH_PROF_LOAD / BENCH_HEAP_LOAD): around a load.
      await profile((m as { on?: boolean }).on === true);
      send({ kind: 'prof' });
      return;
    }
    if (m.cmd === 'status') {
      const st = await node.status();
      send({
        kind: 'status',
        leaders: st.leaders,
        groups: st.groups,
        quiesced: st.quiesced,
        moves: st.balancer?.moves ?? 0,
        failedMoves: st.balancer?.failed ?? 0,
        failedByReason: st.balancer?.failedByReason ?? {},
        rounds: st.balancer?.rounds ?? 0,
        movesByKind: st.balancer?.movesByKind ?? {},
        electionMs,
        counters: workCounters(st),
      });
      return;
    }
    if (m.cmd === 'led') {
      // The groups this node leads now.
      const st = await node.status({ detail: true });
      send({
        kind: 'led',
        groups: (st.perGroup as { group: number; role: string }[])
          .filter((g) => g.role === 'leader')
          .map((g) => g.group),
      });
      return;
    }
    if (m.cmd === 'undrain') {
      node.undrain();
      send({ kind: 'undrained' });
      return;
    }
    if (m.cmd === 'configure') {
      node.configureBalancer(m.config ?? {});
      send({ kind: 'configured' });
      return;
    }
    if (m.cmd === 'settle') {
      // With the balancer on, the cluster is not idle while it still moves the election's leaders:
      // wait (at most 3 minutes) until this node's plan says balanced and its moves and leader
      // count have stood still for 10 s (its moves pause between rounds and for cooldowns, so a
      // still count alone can be a pause). The driver starts every node's idle windows together
      // once all have settled: a node measuring while another still moves leaders counts those.
      if (node.balancerConfig().enabled !== false) {
        let last = '';
        let since = performance.now();
        for (const end = performance.now() + 180_000; performance.now() < end; ) {
          const st = await node.status();
          const balanced = (await node.balancePlan()).idle?.startsWith('balanced') === true;
          const now = `${st.balancer?.moves ?? 0}/${st.leaders}/${balanced}`;
          if (now !== last || !balanced) [last, since] = [now, performance.now()];
          else if (performance.now() - since >= 10_000) break;
          await sleep(1000);
        }
      }
      send({ kind: 'settled' });
      return;
    }
    if (m.cmd === 'idle') {
      await sleep(5000); // let the election's garbage be collected first
      const st0 = await node.status();
      // status().balancer, .runtime and (default layout) the shards' loop counters are live
      // objects: copy the numbers now, or every difference below is 0.
      const loopCounts = (st: typeof st0) =>
        st.shards.map((x) => {
          const l = loopCounters(x);
          return { loops: l.loops ?? 0, ticks: l.ticks ?? 0 };
        });
      const loops0 = loopCounts(st0);
      const relayed0 = st0.runtime.relayedOut;
      const b0 = {
        moves: st0.balancer?.moves ?? 0,
        listed: st0.balancer?.listed ?? 0,
        rounds: st0.balancer?.rounds ?? 0,
        byKind: { ...st0.balancer?.movesByKind },
      };
      // Two windows: the first right after the cluster settled, while the collectors still reclaim
      // the election's garbage (V8 keeps shrinking a large idle heap for a while), then the steady
      // state, which is what a quiesced group costs for as long as it stays quiet.
      const window = async () => {
        const c0 = process.cpuUsage();
        const w0 = performance.now();
        await sleep((m.seconds ?? 5) * 1000);
        const c = process.cpuUsage(c0);
        return (100 * (c.user + c.system)) / 1e6 / ((performance.now() - w0) / 1000);
      };
      const settlingCpuPct = await window();
      await profile(true);
      const cpuPct = await window();
      await profile(false);
      const st1 = await node.status();
      const frames = (st: typeof st0) => Object.values(st.transport.peers).reduce((a, p) => a + p.framesSent, 0);
      const mem = process.memoryUsage();
      send({
        kind: 'idle',
        cpuPct,
        settlingCpuPct,
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
        heapTotalBytes: mem.heapTotal,
        groups: st1.groups,
        quiesced: st1.quiesced,
        raftBatchesOut: st1.runtime.relayedOut - relayed0,
        framesSent: frames(st1) - frames(st0),
        envelopesSent:
          Object.values(st1.transport.peers).reduce((a, p) => a + p.envelopesSent, 0) -
          Object.values(st0.transport.peers).reduce((a, p) => a + p.envelopesSent, 0),
        bytesSent:
          Object.values(st1.transport.peers).reduce((a, p) => a + p.bytesSent, 0) -
          Object.values(st0.transport.peers).reduce((a, p) => a + p.bytesSent, 0),
        balancer: st1.balancer
          ? {
              moves: st1.balancer.moves - b0.moves,
              listed: st1.balancer.listed - b0.listed,
              rounds: st1.balancer.rounds - b0.rounds,
              slow: st1.slowStorage,
              byKind: { ...st1.balancer.movesByKind },
              before: b0.byKind,
            }
          : null,
        loops: loopCounts(st1).map((l, i) => l.loops - (loops0[i]?.loops ?? 0)),
        ticks: loopCounts(st1).map((l, i) => l.ticks - (loops0[i]?.ticks ?? 0)),
      });
      return;
    }
    if (m.cmd === 'stop') {
      await node.stop();
      process.exit(0);
    }
    if (m.cmd === 'drain') {
      // Forced: a drain here sets up skew right after thousands of start-up elections (commit tails
      // of seconds, which the stability gate rightly calls unstable) or is itself what is timed.
      const r = await node.drain({ concurrency: m.concurrency, force: true });
      send({ kind: 'drained', moved: r.moved, failed: r.failed.length, reasons: r.failed.slice(0, 10), ms: r.ms });
      return;
    }
    if (m.cmd !== 'load') return;
    // Keys this node's proposers write: with `local`, only keys of groups this node leads (each
    // node drives its own leaders, as a sharded client would); otherwise keys of every group.
    const st = await node.status({ detail: true });
    const led = new Set(
      (st.perGroup as { group: number; role: string }[]).filter((g) => g.role === 'leader').map((g) => g.group),
    );
    const active = Math.min(groups, m.activeGroups ?? groups);
    const keys: Uint8Array[] = [];
    for (let i = 0; keys.length < 4096 && i < 1_000_000 && !(m.local && led.size === 0); i++) {
      const k = enc.encode(`${node.id}-k${i}`);
      const g = groupOfKey(k, groups);
      if (g <= active && (!m.local || led.has(g))) keys.push(k);
    }
    if (m.totalProposers !== undefined) {
      let mine = 0;
      for (const g of led) if (g <= active) mine++;
      m.proposers = keys.length === 0 ? 0 : Math.max(1, Math.round((m.totalProposers * mine) / active));
    }
    const value = new Uint8Array(m.valueBytes ?? 16).fill(120);
    if (m.totalRate !== undefined) {
      // Open loop: this node's share of the cluster-wide rate, on a fixed schedule.
      let mine = 0;
      for (const g of led) if (g <= active) mine++;
      const rate = keys.length === 0 ? 0 : (m.totalRate * mine) / active;
      send({ kind: 'result', ...(await openLoop(keys, value, rate, m.seconds ?? 10)) });
      return;
    }
    if (keys.length === 0 || m.proposers === 0) {
      // `local` and this node leads nothing: it only replicates (its CPU is still the cluster's).
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep((m.seconds ?? 10) * 1000);
      const cpu = process.cpuUsage(cpu0);
      const secs = (performance.now() - t0) / 1000;
      send({
        kind: 'result',
        perSecond: [],
        writes: 0,
        reads: 0,
        errors: 0,
        seconds: m.seconds ?? 10,
        latenciesMs: [],
        readLatenciesMs: [],
        cpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / secs,
        keys: 0,
        proposers: 0,
      });
      return;
    }
    const lat: number[] = [];
    const readLat: number[] = [];
    let reads = 0;
    const readEvery = m.readRatio ? 1 / (1 - m.readRatio) : 0; // 0.9 -> one write in every 10 ops
    let writes = 0;
    let errors = 0;
    /** With `gaps`: per proposer, when each write succeeded (epoch ms, shared by the processes),
     *  and every write as [start epoch ms, end epoch ms, group, ok 1/0]. */
    const okAt: number[][] = Array.from({ length: m.proposers ?? 64 }, () => []);
    const writeLog: number[] = [];
    /** Per proposer, when its request in flight started (performance.now()), or -1. */
    const inflight = new Float64Array(m.proposers ?? 64).fill(-1);
    const errorCodes: Record<string, number> = {};
    const end = performance.now() + (m.seconds ?? 10) * 1000;
    const proposer = async (p: number) => {
      for (let i = p; performance.now() < end; i += m.proposers!) {
        const t = performance.now();
        const startedAt = Date.now();
        const key = keys[i % keys.length];
        inflight[p] = t;
        if (readEvery && Math.floor(i / m.proposers!) % Math.round(readEvery) !== 0) {
          try {
            await node.kv.get(key, m.consistency ?? 'linearizable');
            readLat.push(performance.now() - t);
            reads++;
          } catch (e) {
            errors++;
            const code = (e as { code?: string }).code ?? 'Error';
            errorCodes[code] = (errorCodes[code] ?? 0) + 1;
          }
          inflight[p] = -1;
          continue;
        }
        try {
          await node.kv.put(key, value);
          lat.push(performance.now() - t);
          writes++;
          if (m.gaps) {
            okAt[p].push(Date.now());
            writeLog.push(startedAt, Date.now(), groupOfKey(key, groups), 1);
          }
        } catch (e) {
          errors++;
          const code = (e as { code?: string }).code ?? 'Error';
          errorCodes[code] = (errorCodes[code] ?? 0) + 1;
          lat.push(performance.now() - t);
          if (m.gaps) writeLog.push(startedAt, Date.now(), groupOfKey(key, groups), 0);
        }
        inflight[p] = -1;
      }
    };
    const before = await node.status();
    // A copy: with the default layout a shard's loop counters are a live object.
    const loopsBefore = before.shards.map(loopCounters);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // Leadership moves while the load runs (this node's leaders, to the next replica).
    const transferMs: number[] = [];
    const transferFailures: string[] = [];
    const transferPhases: [number, number, number][] = [];
    let drainReport: unknown = null;
    const mover = async () => {
      if (!m.transfers && !m.drain) return;
      await sleep(1000);
      const mine = [...led];
      for (let i = 0; i < (m.transfers ?? 0) && i < mine.length && performance.now() < end - 1000; i++) {
        const g = mine[i];
        const replicas = node.replicasOf(g).filter((x) => x !== node.id);
        try {
          const r = await node.transferLeader(g, replicas[i % replicas.length]);
          transferMs.push(r.ms);
          transferPhases.push([r.phases.catchUpMs, r.phases.campaignMs, r.phases.verifyMs]);
        } catch (e) {
          transferFailures.push(
            (e as { reason?: string; code?: string }).reason ?? (e as { code?: string }).code ?? String(e),
          );
        }
      }
      if (m.drain && performance.now() < end - 1000) {
        // Refused as a whole (ClusterUnstable on a loaded machine): reported, not a crash of the node.
        try {
          const r = await node.drain({});
          drainReport = { moved: r.moved, failed: r.failed.length, ms: r.ms };
        } catch (e) {
          drainReport = {
            moved: 0,
            failed: 0,
            ms: 0,
            refused: (e as { reason?: string; code?: string }).reason ?? (e as { code?: string }).code ?? String(e),
          };
        }
        node.undrain();
      }
    };
    // A caller that never returns must not hang the benchmark: wait for the proposers at most the
    // request deadline (plus 5 s) past the end, then report the calls still pending as hung.
    const moving = mover();
    const proposers = Promise.all(Array.from({ length: m.proposers ?? 64 }, (_, p) => proposer(p)));
    let guard: NodeJS.Timeout | undefined;
    const settled = await Promise.race([
      proposers.then(() => true),
      new Promise<boolean>((r) => {
        guard = setTimeout(() => r(false), Math.max(0, end - performance.now()) + timeoutMs + 5000);
      }),
    ]);
    clearTimeout(guard);
    const hung = settled ? 0 : [...inflight].filter((x) => x >= 0).length;
    await moving;
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const after = await node.status();
    const loop = (st: typeof before) => st.shards.map(loopCounters);
    const delta = loop(after).map((l, i) =>
      Object.fromEntries(
        Object.entries(l)
          .filter(([, v]) => typeof v === 'number')
          .map(([k, v]) => [k, Math.round((v - (loopsBefore[i]?.[k] ?? 0)) / secs)]),
      ),
    );
    send({
      kind: 'result',
      okAt: m.gaps ? okAt : undefined,
      writeLog: m.gaps ? writeLog : undefined,
      hung,
      endedAt: Date.now(),
      maxLatencyMs: lat.reduce((a, x) => Math.max(a, x), 0),
      overDeadline: lat.filter((x) => x > timeoutMs).length,
      errorCodes,
      transferMs,
      transferPhases,
      transferFailures,
      drainReport,
      stalls: lat.filter((x) => x > 1000).length,
      perSecond: delta,
      writes,
      reads,
      readLatenciesMs: readLat,
      proposers: m.proposers,
      errors,
      seconds: secs,
      latenciesMs: lat,
      cpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / secs,
      keys: keys.length,
    });
  },
);
