// The closed-loop load generator of the peer scenarios: keep-alive clients putting small values
// through flotilla's admin key-value gateway (PUT /kv/<key>) or etcd's gRPC-gateway (POST
// /v3/kv/put), or, with kind 'etcd-grpc', through etcd's native gRPC API (etcd-grpc.ts, the
// etcd3 client). It runs in a child process of its own (this file, forked), so its CPU is not the
// benchmark runner's and the client loop, its timing and its accounting are the same program for
// every store and path.
// Owns: runHttpLoad, its result shape and the CPU meter.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { pct, round } from './stats.js';

/** flotilla's HTTP gateway, etcd's HTTP gateway, etcd's gRPC API (through etcd3). */
export type HttpLoadKind = 'flotilla' | 'etcd' | 'etcd-grpc';

export interface HttpLoadOptions {
  /** Base URLs (http://host:port); client c starts on targets[c % targets.length]. */
  targets: string[];
  clients: number;
  /** Measured seconds (after the warm-up). */
  seconds: number;
  valueBytes: number;
  kind: HttpLoadKind;
  /** Distinct keys per client (client c writes k<c>-<i mod keys>). Default 100. */
  keys?: number;
  /** Load before the measured window (connections, JIT, the stores' caches). Default 0. */
  warmupSeconds?: number;
  /** Puts issued (32 at a time, the clients' own keys) before the clients start, outside every
   *  count and the timeline: a fresh process's first few thousand gRPC calls cost the client
   *  several times the CPU of later ones (grpc-js not yet compiled), and a row of one client
   *  would otherwise be measured on a cold client. Default 0. */
  primeWrites?: number;
  /** With it: successes and failures per 100 ms bucket, and every request's log. */
  timeline?: boolean;
  /** Per-request deadline. Default 10,000 ms. */
  timeoutMs?: number;
  /** Pause after a failed request before the client tries again on the next target. Default 5 ms. */
  retryPauseMs?: number;
  /** etcd's gateway prefix: '/v3' (3.4 also serves '/v3beta'). Default '/v3'. */
  etcdPrefix?: string;
  /** Processes whose CPU is the store's (sampled over the measured window from /proc). */
  serverPids?: number[];
  /** Each request to a random target and a random key out of clients x keys (k<n>), instead of
   *  client c staying on targets[c % n] (until a failure) and cycling through its own keys. */
  random?: boolean;
}

export interface HttpLoadResult {
  kind: HttpLoadKind;
  clients: number;
  targets: number;
  valueBytes: number;
  /** Measured window, epoch ms. */
  startedAt: number;
  endedAt: number;
  seconds: number;
  /** Successful writes that completed in the measured window. */
  writes: number;
  /** Successful writes over the whole run, warm-up and tail included (for work counters taken
   *  around the run). */
  totalWrites: number;
  /** The load generator's own CPU per request (µs): what the same client costs each store. */
  driverUsPerRequest: number | null;
  writesPerSec: number;
  /** Latency of successful writes started in the window. */
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Failed requests started in the window, by kind: "HTTP 503", "ECONNREFUSED", "timeout", ... */
  errors: number;
  errorsByKind: Record<string, number>;
  /** The stores' own error messages (first 80 characters of the body), with counts. */
  errorMessages: Record<string, number>;
  /** Requests (ok or failed) started in the window that took longer than 1 s. */
  stalled: number;
  /** Clients that had at least one such request. */
  stalledClients: number;
  /** The slowest request, ok or failed. */
  slowestMs: number;
  /** Longest time one client went without a success, over the clients (window and tail). */
  longestClientGapMs: number;
  /** Longest time between two successes of any clients in the window, and when it began. */
  longestGapMs: number;
  longestGapAt: number;
  /** Cores used over the window: by the driver, the store's processes, the whole machine, the
   *  rest (other processes: the runner, other workloads), and stolen by the hypervisor. */
  cpu: {
    driverCores: number;
    serverCores: number | null;
    machineBusyCores: number | null;
    otherCores: number | null;
    stealCores: number | null;
  };
  timeline?: {
    bucketMs: number;
    /** Epoch ms of bucket 0 (the load's start, warm-up included). */
    startEpochMs: number;
    ok: number[];
    failed: number[];
  };
  /** Every request, flat: [startEpochMs, endEpochMs, client, ok 1/0, target index] per request. */
  requests?: number[];
}

export const REQUEST_FIELDS = 5;

/** CPU seconds (user + system) a process has used so far, from /proc; null when it is gone. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ") ": utime is field 14.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/** CPU seconds of the whole machine (all cores) from /proc/stat: busy, and stolen by the
 *  hypervisor (a VM's cores run other guests then); null off Linux. */
export function machineCpuSeconds(): { busy: number; steal: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy is user + nice + system + irq + softirq.
    return { busy: (f[0] + f[1] + f[2] + f[5] + f[6]) / 100, steal: f[7] / 100 };
  } catch {
    return null;
  }
}

const CHILD_FLAG = '--http-load-child';

/** In the child: ends the running load's window early (set while drive() runs). */
let stopLoad: (() => void) | null = null;

/** Run the load in a child process and return its result. */
export function runHttpLoad(o: HttpLoadOptions): Promise<HttpLoadResult> {
  return startHttpLoad(o).result;
}

/** Run the load in a child process; `started` resolves when its clients start (after any
 *  priming puts), `stop()` ends the measured window early (now, or at the end of the warm-up when
 *  that has not passed yet): the clients finish their requests in flight and the result comes as
 *  if `seconds` had been that long. For loads timed by something else (a series of operations
 *  measured under the load). */
export function startHttpLoad(o: HttpLoadOptions): {
  result: Promise<HttpLoadResult>;
  started: Promise<void>;
  stop: () => void;
} {
  const child = fork(import.meta.filename, [CHILD_FLAG], {
    execArgv: import.meta.filename.endsWith('.ts') ? ['--import', 'tsx'] : [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // The child ends on its own; this guard only covers a child that hangs.
  const guardMs =
    ((o.warmupSeconds ?? 0) + o.seconds) * 1000 + (o.timeoutMs ?? 10_000) + 30_000 + (o.primeWrites ?? 0) * 10;
  let onStarted!: () => void;
  const started = new Promise<void>((r) => (onStarted = r));
  const result = new Promise<HttpLoadResult>((resolve, reject) => {
    let done = false;
    const guard = setTimeout(() => {
      if (!done) reject(new Error(`http load child did not finish in ${guardMs} ms`));
      done = true;
      child.kill('SIGKILL');
    }, guardMs);
    child.on('message', (m: { kind: string; result?: HttpLoadResult; error?: string }) => {
      if (m.kind === 'started') return onStarted();
      if (done) return;
      done = true;
      clearTimeout(guard);
      if (m.kind === 'result') resolve(m.result!);
      else reject(new Error(`http load child failed: ${m.error}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(guard);
      if (!done) reject(new Error(`http load child exited (${code ?? signal}) without a result`));
      done = true;
    });
    child.send(o);
  });
  let stopped = false;
  const stop = () => {
    if (stopped || !child.connected) return;
    stopped = true;
    // With a callback a child already gone is an error passed to it, not an 'error' event.
    child.send({ stop: true }, () => {});
  };
  // A child that fails before its clients start never says so: `started` then follows the result.
  result.then(onStarted, onStarted);
  return { result, started, stop };
}

interface Target {
  host: string;
  port: number;
  agent: Agent;
}

/** One put's result; a failure's kind is "HTTP 503", "ECONNREFUSED", "timeout", an etcd3 error
 *  class, ... and message the store's own text. */
export interface WriteOutcome {
  ok: boolean;
  kind?: string;
  message?: string;
}

function put(
  t: Target,
  path: string,
  body: Buffer,
  contentType: string,
  method: string,
  timeoutMs: number,
): Promise<WriteOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (x: WriteOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(x);
    };
    const req = request(
      {
        host: t.host,
        port: t.port,
        path,
        method,
        agent: t.agent,
        headers: { 'content-type': contentType, 'content-length': body.length },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          res.resume();
          res.once('end', () => finish({ ok: true }));
          res.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, kind: e.code ?? e.message }));
          return;
        }
        // Keep the store's error text: it tells a timeout from a dropped proposal.
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () =>
          finish({ ok: false, kind: `HTTP ${status}`, message: messageOf(Buffer.concat(chunks).toString('utf8')) }),
        );
        res.once('error', () => finish({ ok: false, kind: `HTTP ${status}` }));
      },
    );
    // A hard deadline for the whole request, not the socket's idle timeout.
    const timer = setTimeout(() => {
      finish({ ok: false, kind: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, kind: e.code ?? e.message }));
    req.end(body);
  });
}

function messageOf(body: string): string {
  try {
    const j = JSON.parse(body) as { message?: string; error?: string };
    return String(j.message ?? j.error ?? body).slice(0, 80);
  } catch {
    return body.slice(0, 80);
  }
}

/** How a client's put reaches the store: target index and key in, outcome out. */
interface Writer {
  put(target: number, key: string): Promise<WriteOutcome>;
  close(): void;
}

function httpWriter(o: HttpLoadOptions, timeoutMs: number): Writer {
  const prefix = o.etcdPrefix ?? '/v3';
  const targets: Target[] = o.targets.map((u) => {
    const url = new URL(u);
    return { host: url.hostname, port: Number(url.port), agent: new Agent({ keepAlive: true, maxSockets: o.clients }) };
  });
  const value = Buffer.alloc(o.valueBytes, 'x');
  const valueB64 = value.toString('base64');
  return {
    put: (ti, key) =>
      o.kind === 'flotilla'
        ? put(targets[ti], `/kv/${key}`, value, 'application/octet-stream', 'PUT', timeoutMs)
        : put(
            targets[ti],
            `${prefix}/kv/put`,
            Buffer.from(JSON.stringify({ key: Buffer.from(key).toString('base64'), value: valueB64 })),
            'application/json',
            'POST',
            timeoutMs,
          ),
    close() {
      for (const t of targets) t.agent.destroy();
    },
  };
}

async function openWriter(o: HttpLoadOptions, timeoutMs: number): Promise<Writer> {
  if (o.kind !== 'etcd-grpc') return httpWriter(o, timeoutMs);
  // Only this kind needs etcd3 (a dev dependency): loaded on demand.
  const { grpcWriter } = await import('./etcd-grpc.js');
  return grpcWriter(o.targets, o.valueBytes, timeoutMs);
}

async function drive(o: HttpLoadOptions): Promise<HttpLoadResult> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const pauseMs = o.retryPauseMs ?? 5;
  const keys = o.keys ?? 100;
  const writer = await openWriter(o, timeoutMs);
  const targets = o.targets.length;
  let primed = 0;
  await Promise.all(
    Array.from({ length: Math.min(32, o.primeWrites ?? 0) }, async (_, c) => {
      for (let i = 0; primed < o.primeWrites!; i++, primed++)
        await writer.put(c % targets, `k${c % o.clients}-${i % keys}`);
    }),
  );
  process.send?.({ kind: 'started' });
  const t0 = Date.now();
  const p0 = performance.now();
  // Epoch ms from the monotonic clock: one wall-clock reading, then performance.now() offsets.
  const now = () => t0 + (performance.now() - p0);
  const measureFrom = t0 + (o.warmupSeconds ?? 0) * 1000;
  let measureTo = measureFrom + o.seconds * 1000;
  type Machine = ReturnType<typeof machineCpuSeconds>;
  let cpu0: { driver: NodeJS.CpuUsage; servers: (number | null)[]; machine: Machine } | undefined;
  const cpuAt = setTimeout(() => {
    cpu0 = {
      driver: process.cpuUsage(),
      servers: (o.serverPids ?? []).map(procCpuSeconds),
      machine: machineCpuSeconds(),
    };
  }, measureFrom - Date.now());
  let cpu1: { driver: NodeJS.CpuUsage; servers: (number | null)[]; machine: Machine; at: number } | undefined;
  const takeCpu1 = () => {
    cpu1 = {
      driver: process.cpuUsage(),
      servers: (o.serverPids ?? []).map(procCpuSeconds),
      machine: machineCpuSeconds(),
      at: now(),
    };
  };
  let cpuEnd = setTimeout(takeCpu1, measureTo - Date.now());
  // The parent may end the window early (startHttpLoad's stop).
  stopLoad = () => {
    const at = Math.max(now(), measureFrom);
    if (at >= measureTo) return;
    measureTo = at;
    clearTimeout(cpuEnd);
    // Now, not from a timer: every client may finish before a timer runs.
    if (at <= now()) takeCpu1();
    else cpuEnd = setTimeout(takeCpu1, measureTo - now());
  };

  const log: number[] = [];
  const okEnds: number[][] = Array.from({ length: o.clients }, () => []);
  const lastFail = new Float64Array(o.clients);
  const okLatencies: number[] = [];
  const errorsByKind: Record<string, number> = {};
  const errorMessages: Record<string, number> = {};
  let writes = 0;
  let stalled = 0;
  let slowest = 0;
  const stalledBy = new Set<number>();

  const client = async (c: number) => {
    let ti = c % targets;
    for (let i = 0; now() < measureTo; i++) {
      if (o.random) ti = Math.floor(Math.random() * targets);
      const key = o.random ? `k${Math.floor(Math.random() * keys * o.clients)}` : `k${c}-${i % keys}`;
      const start = now();
      const r = await writer.put(ti, key);
      const end = now();
      const ms = end - start;
      if (o.timeline) log.push(start, end, c, r.ok ? 1 : 0, ti);
      const inWindow = start >= measureFrom && start < measureTo;
      if (inWindow) {
        slowest = Math.max(slowest, ms);
        if (ms > 1000) {
          stalled++;
          stalledBy.add(c);
        }
      }
      if (r.ok) {
        okEnds[c].push(end);
        if (end >= measureFrom && end <= measureTo) writes++;
        if (inWindow) okLatencies.push(ms);
      } else {
        lastFail[c] = end;
        if (inWindow) {
          errorsByKind[r.kind!] = (errorsByKind[r.kind!] ?? 0) + 1;
          if (r.message && (errorMessages[r.message] !== undefined || Object.keys(errorMessages).length < 20)) {
            errorMessages[r.message] = (errorMessages[r.message] ?? 0) + 1;
          }
        }
        // Fail over like a real client: the next key, on the next target, after a short pause
        // (a refused connection would otherwise spin).
        ti = (ti + 1) % targets;
        await sleep(pauseMs);
      }
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  stopLoad = null;
  clearTimeout(cpuAt);
  clearTimeout(cpuEnd);
  // The last client can finish past the window's end before the end's timer runs (a reply read in
  // the same turn): the CPU figures then end here. Without this a short run reported 0 cores.
  if (cpu0 !== undefined && cpu1 === undefined) takeCpu1();
  writer.close();
  const tEnd = cpu1?.at ?? now();

  // Per client: the longest stretch without a success, counting from the window's start and up to
  // a final failure (a client stuck at the end still shows its gap).
  let longestClientGapMs = 0;
  for (let c = 0; c < o.clients; c++) {
    const ends = okEnds[c].filter((x) => x >= measureFrom);
    let prev = measureFrom;
    const before = okEnds[c].filter((x) => x < measureFrom);
    if (before.length) prev = before[before.length - 1];
    for (const e of ends) {
      longestClientGapMs = Math.max(longestClientGapMs, e - Math.max(prev, measureFrom));
      prev = e;
    }
    if (lastFail[c] > prev)
      longestClientGapMs = Math.max(longestClientGapMs, lastFail[c] - Math.max(prev, measureFrom));
  }
  // All clients together: the longest pause between two successes in the window.
  const all = Float64Array.from(okEnds.flat().filter((x) => x >= measureFrom && x <= measureTo)).sort();
  let longestGapMs = 0;
  let longestGapAt = measureFrom;
  let prev = measureFrom;
  for (const e of [...all, measureTo]) {
    if (e - prev > longestGapMs) {
      longestGapMs = e - prev;
      longestGapAt = prev;
    }
    prev = e;
  }

  const lat = Float64Array.from(okLatencies).sort();
  const errors = Object.values(errorsByKind).reduce((a, b) => a + b, 0);
  const secs = (Math.min(tEnd, measureTo) - measureFrom) / 1000 || o.seconds;
  let cpu: HttpLoadResult['cpu'] = {
    driverCores: 0,
    serverCores: null,
    machineBusyCores: null,
    otherCores: null,
    stealCores: null,
  };
  if (cpu0 && cpu1) {
    const span = (cpu1.at - measureFrom) / 1000;
    const driver = (cpu1.driver.user + cpu1.driver.system - cpu0.driver.user - cpu0.driver.system) / 1e6 / span;
    const sv = cpu1.servers.map((x, i) => (x === null || cpu0!.servers[i] === null ? null : x - cpu0!.servers[i]!));
    const server =
      o.serverPids?.length && sv.every((x) => x !== null) ? (sv as number[]).reduce((a, b) => a + b, 0) / span : null;
    const machine = cpu1.machine && cpu0.machine ? (cpu1.machine.busy - cpu0.machine.busy) / span : null;
    const steal = cpu1.machine && cpu0.machine ? (cpu1.machine.steal - cpu0.machine.steal) / span : null;
    cpu = {
      driverCores: round(driver),
      serverCores: server === null ? null : round(server),
      machineBusyCores: machine === null ? null : round(machine),
      otherCores: machine === null || server === null ? null : round(Math.max(0, machine - server - driver)),
      stealCores: steal === null ? null : round(steal),
    };
  }

  let timeline: HttpLoadResult['timeline'];
  if (o.timeline) {
    const bucketMs = 100;
    const n = Math.ceil((Math.max(tEnd, ...okEnds.map((e) => e[e.length - 1] ?? 0), ...lastFail) - t0) / bucketMs) + 1;
    timeline = { bucketMs, startEpochMs: t0, ok: new Array<number>(n).fill(0), failed: new Array<number>(n).fill(0) };
    for (let i = 0; i < log.length; i += REQUEST_FIELDS) {
      const b = Math.floor((log[i + 1] - t0) / bucketMs);
      if (log[i + 3] === 1) timeline.ok[b]++;
      else timeline.failed[b]++;
    }
  }
  return {
    kind: o.kind,
    clients: o.clients,
    targets: o.targets.length,
    valueBytes: o.valueBytes,
    startedAt: Math.round(measureFrom),
    endedAt: Math.round(measureTo),
    seconds: round(secs, 2),
    writes,
    writesPerSec: Math.round(writes / secs),
    totalWrites: okEnds.reduce((a, e) => a + e.length, 0),
    driverUsPerRequest:
      cpu0 && cpu1 && writes + errors > 0
        ? round((cpu.driverCores * ((cpu1.at - measureFrom) / 1000) * 1e6) / (writes + errors), 1)
        : null,
    p50Ms: round(pct(lat, 50)),
    p99Ms: round(pct(lat, 99)),
    p999Ms: round(pct(lat, 99.9)),
    maxMs: round(lat.length ? lat[lat.length - 1] : 0),
    errors,
    errorsByKind,
    errorMessages,
    stalled,
    stalledClients: stalledBy.size,
    slowestMs: round(slowest, 1),
    longestClientGapMs: round(longestClientGapMs, 1),
    longestGapMs: round(longestGapMs, 1),
    longestGapAt: Math.round(longestGapAt),
    cpu,
    timeline,
    requests: o.timeline ? log.map((x, i) => (i % REQUEST_FIELDS < 2 ? round(x, 1) : x)) : undefined,
  };
}

// The child: one load run per process, options in and the result out over IPC.
if (process.argv[2] === CHILD_FLAG && process.send) {
  let started = false;
  process.on('message', (m: HttpLoadOptions | { stop: true }) => {
    if ('stop' in m) {
      stopLoad?.();
      return;
    }
    if (started) return;
    started = true;
    const o = m;
    drive(o).then(
      (result) => process.send!({ kind: 'result', result }, () => process.exit(0)),
      (e: unknown) => process.send!({ kind: 'error', error: (e as Error).stack ?? String(e) }, () => process.exit(1)),
    );
  });
}
