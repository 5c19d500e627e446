// etcd as a peer in the same benchmark run: a throwaway 3-member etcd cluster on 127.0.0.1 (temp
// dirs, free ports, default fsync, logs to a file in the temp dir), driven by the same load
// generator as flotilla (src/bench/http-load.ts) through one of two paths: its HTTP gRPC-gateway
// (beside flotilla's HTTP gateway) or its gRPC API through the etcd3 client (etcd-grpc.ts, beside
// flotilla's embedded API).
// Owns: etcdAvailable, withEtcd (start, health, leader, kill, move-leader, cleanup) and the etcd
// scenarios: throughput (runEtcdLoad), planned transfer under load (runEtcdMoveLeader) and kill -9
// of the leader under load (runEtcdKill). When the binary or etcd3 is missing they say so and skip.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PeerInfo } from './results.js';
import { REQUEST_FIELDS, runHttpLoad, startHttpLoad, type HttpLoadKind, type HttpLoadResult } from './http-load.js';
import { etcd3Available, grpcWriter } from './etcd-grpc.js';
import { freePorts } from './ports.js';
import { pct, round } from './stats.js';

const ETCD = process.env.ETCD_BIN ?? 'etcd';
const ETCDCTL = process.env.ETCDCTL_BIN ?? 'etcdctl';

/** Whether etcd (and etcdctl, which move-leader needs) can be run here, and which version. */
export function etcdAvailable(): PeerInfo {
  const v = spawnSync(ETCD, ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0)
    return {
      available: false,
      reason: `the etcd binary (${ETCD}) is not installed or does not run: ${v.error?.message ?? v.stderr.trim()}`,
    };
  const ctl = spawnSync(ETCDCTL, ['version'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  if (ctl.error || ctl.status !== 0)
    return {
      available: false,
      reason: `etcdctl (${ETCDCTL}) is not installed or does not run: ${ctl.error?.message ?? ctl.stderr.trim()}`,
    };
  const version = /etcd Version:\s*(\S+)/.exec(v.stdout)?.[1];
  return { available: true, version: version ?? v.stdout.split('\n')[0] };
}

export interface EtcdMember {
  name: string;
  pid: number;
  clientUrl: string;
  peerUrl: string;
  /** Member id, decimal (etcd prints uint64 ids that do not fit a JS number; kept as a string). */
  id: string;
}

export interface EtcdCluster {
  /** Client URLs of all members (killed ones included: a client keeps them and fails over). */
  endpoints: string[];
  members: EtcdMember[];
  /** The gateway prefix this etcd serves ('/v3' on 3.4+, else '/v3beta'). */
  prefix: string;
  version: string;
  /** The leader's name as the living members report it (highest term), or null. */
  leader(): Promise<string | null>;
  leaderInfo(): Promise<{ name: string | null; term: number }>;
  /** kill -9 of a member. */
  kill(name: string): void;
  alive(name: string): boolean;
  /** `etcdctl move-leader` to `to`, sent to the current leader's endpoint. */
  moveLeader(from: string, to: string): Promise<{ ok: boolean; ms: number; output: string }>;
}

const statusAgent = new Agent({ keepAlive: true, maxSockets: 8 });

/** POST a JSON body to the gateway; resolves with the status and the parsed body. */
function postJson(
  url: string,
  body: unknown,
  timeoutMs: number,
  agent?: Agent,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': data.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { text };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.once('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error('timeout')), timeoutMs);
    req.once('close', () => clearTimeout(timer));
    req.once('error', reject);
    req.end(data);
  });
}

function runCtl(args: string[], timeoutMs = 15_000): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(
      ETCDCTL,
      args,
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: timeoutMs, encoding: 'utf8' },
      (err, stdout, stderr) => {
        resolve({ ok: !err, output: (stdout + stderr).trim() });
      },
    );
  });
}

/** Start a 3-member etcd cluster, wait until every member takes a put, run `fn`, and always kill
 *  the members (-9) and delete their directories, also when `fn` or the start fails. */
export async function withEtcd<T>(fn: (cluster: EtcdCluster) => Promise<T>): Promise<T> {
  const avail = etcdAvailable();
  if (!avail.available) throw new Error(avail.reason);
  const root = mkdtempSync(join(tmpdir(), 'flotilla-bench-etcd-'));
  const procs = new Map<string, ChildProcess>();
  const logFds: number[] = [];
  // A runner that exits without reaching `finally` (process.exit elsewhere) still leaves no etcd.
  const onExit = () => {
    for (const p of procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  };
  process.on('exit', onExit);
  try {
    const names = ['e1', 'e2', 'e3'];
    const ports = await freePorts(2 * names.length);
    const clientUrl = (i: number) => `http://127.0.0.1:${ports[i]}`;
    const peerUrl = (i: number) => `http://127.0.0.1:${ports[names.length + i]}`;
    const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
    const token = `flotilla-bench-${process.pid}-${Date.now()}`;
    const logLevel = process.env.ETCD_BENCH_LOG_LEVEL ?? 'warn';
    names.forEach((name, i) => {
      const fd = openSync(join(root, `${name}.log`), 'a');
      logFds.push(fd);
      // Defaults otherwise (heartbeat 100 ms, election 1000 ms, fsync on), as the peers notes measured.
      const args = [
        '--name',
        name,
        '--data-dir',
        join(root, name),
        '--listen-client-urls',
        clientUrl(i),
        '--advertise-client-urls',
        clientUrl(i),
        '--listen-peer-urls',
        peerUrl(i),
        '--initial-advertise-peer-urls',
        peerUrl(i),
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-state',
        'new',
        '--initial-cluster-token',
        token,
        '--logger',
        'zap',
        '--log-outputs',
        'stderr',
        '--log-level',
        logLevel,
      ];
      const p = spawn(ETCD, args, { stdio: ['ignore', fd, fd] });
      procs.set(name, p);
    });
    const logTail = (name: string) => {
      try {
        return readFileSync(join(root, `${name}.log`), 'utf8')
          .split('\n')
          .slice(-5)
          .join('\n');
      } catch {
        return '';
      }
    };
    // Healthy: a put through the gateway succeeds on every member. The prefix is found on the way.
    let prefix = '';
    const deadline = Date.now() + 60_000;
    for (let i = 0; i < names.length; i++) {
      for (;;) {
        const p = procs.get(names[i])!;
        if (p.exitCode !== null || p.signalCode !== null)
          throw new Error(`etcd ${names[i]} exited (${p.exitCode ?? p.signalCode}) at start:\n${logTail(names[i])}`);
        let ok = false;
        for (const pre of prefix ? [prefix] : ['/v3', '/v3beta']) {
          const r = await postJson(
            `${clientUrl(i)}${pre}/kv/put`,
            { key: Buffer.from('flotilla-bench-health').toString('base64'), value: '' },
            2000,
          ).catch(() => null);
          if (r?.status === 200) {
            prefix = pre;
            ok = true;
            break;
          }
        }
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`etcd ${names[i]} not healthy in 60 s:\n${logTail(names[i])}`);
        await sleep(100);
      }
    }
    // Member ids as decimal strings: quote the bare uint64 numbers before JSON.parse rounds them.
    const list = await runCtl([
      '--endpoints',
      names.map((_, i) => clientUrl(i)).join(','),
      'member',
      'list',
      '-w',
      'json',
    ]);
    if (!list.ok) throw new Error(`etcdctl member list failed: ${list.output}`);
    const parsed = JSON.parse(list.output.replace(/"ID":\s*(\d+)/g, '"ID":"$1"')) as {
      members: { ID: string; name: string }[];
    };
    const members: EtcdMember[] = names.map((name, i) => {
      const m = parsed.members.find((x) => x.name === name);
      if (!m) throw new Error(`etcd member ${name} missing from member list: ${list.output}`);
      return { name, pid: procs.get(name)!.pid!, clientUrl: clientUrl(i), peerUrl: peerUrl(i), id: m.ID };
    });
    const nameOf = new Map(members.map((m) => [m.id, m.name]));
    const alive = (name: string) => {
      const p = procs.get(name);
      return !!p && p.exitCode === null && p.signalCode === null;
    };
    const leaderInfo = async () => {
      const st = await Promise.all(
        members
          .filter((m) => alive(m.name))
          .map((m) => postJson(`${m.clientUrl}${prefix}/maintenance/status`, {}, 1000, statusAgent).catch(() => null)),
      );
      let best: { name: string | null; term: number } = { name: null, term: 0 };
      for (const s of st) {
        if (s?.status !== 200) continue;
        const term = Number(s.body.raftTerm ?? 0);
        const lead = String(s.body.leader ?? '0');
        if (lead !== '0' && term >= best.term) best = { name: nameOf.get(lead) ?? null, term };
      }
      return best;
    };
    const cluster: EtcdCluster = {
      endpoints: members.map((m) => m.clientUrl),
      members,
      prefix,
      version: avail.version ?? '?',
      leaderInfo,
      leader: async () => (await leaderInfo()).name,
      alive,
      kill(name) {
        const p = procs.get(name);
        if (!p) throw new Error(`no etcd member ${name}`);
        p.kill('SIGKILL');
      },
      async moveLeader(from, to) {
        const src = members.find((m) => m.name === from)!;
        const dst = members.find((m) => m.name === to)!;
        const t = performance.now();
        // move-leader takes the target's id in hex.
        const r = await runCtl(['--endpoints', src.clientUrl, 'move-leader', BigInt(dst.id).toString(16)]);
        return { ok: r.ok, ms: round(performance.now() - t, 1), output: r.output.slice(0, 300) };
      },
    };
    return await fn(cluster);
  } finally {
    const exits = [...procs.values()].map(
      (p) =>
        new Promise((r) => {
          if (p.exitCode !== null || p.signalCode !== null) return r(null);
          p.once('exit', r);
          p.kill('SIGKILL');
        }),
    );
    await Promise.all(exits);
    process.off('exit', onExit);
    for (const fd of logFds) closeSync(fd);
    statusAgent.destroy();
    rmSync(root, { recursive: true, force: true });
  }
}

export type Unavailable = { available: false; reason: string };

/** How a load reaches etcd: its HTTP gateway, or its gRPC API through the etcd3 client. */
export type EtcdPath = 'http' | 'grpc';
const KIND: Record<EtcdPath, HttpLoadKind> = { http: 'etcd', grpc: 'etcd-grpc' };
/** Measured on 2 cores: the gRPC client's CPU per put fell from ~1.5 ms over its first ~1,000
 *  calls to ~0.2-0.3 ms after ~5,000. */
const GRPC_PRIME_WRITES = 5000;

/** The load result without its bulky per-request log. `client` names the gRPC client
 *  ("etcd3 1.1.2"); null on the HTTP path. */
export type EtcdLoadResult = { available: true; version: string; path: EtcdPath; client: string | null } & Omit<
  HttpLoadResult,
  'requests' | 'timeline'
>;
export type EtcdHttpResult = EtcdLoadResult;

function slim(r: HttpLoadResult): Omit<HttpLoadResult, 'requests' | 'timeline'> {
  const { requests: _r, timeline: _t, ...rest } = r;
  return rest;
}

/** Whether etcd can be driven through `path` here: the binary, and for gRPC the etcd3 client.
 *  `client` is the gRPC client's name and version. */
export async function etcdPathAvailable(path: EtcdPath): Promise<PeerInfo & { client?: string }> {
  const a = etcdAvailable();
  if (!a.available || path === 'http') return a;
  const g = await etcd3Available();
  return g.available ? { ...a, client: g.version } : { available: false, reason: g.reason };
}

/** The gRPC path as the report's peer entry: "3.4.23 through etcd3 1.1.2", or why it was
 *  skipped. */
export function grpcPeer(a: PeerInfo & { client?: string }): PeerInfo {
  return a.available
    ? { available: true, version: `${a.version} through ${a.client}` }
    : { available: false, reason: a.reason };
}

/** Throughput and latency of etcd through `path`: `clients` closed-loop writers spread over the 3
 *  members (so about 2/3 of puts are forwarded to the leader, as flotilla's HTTP puts are). A
 *  fresh cluster unless `cluster` is given. */
export async function runEtcdLoad(o: {
  path: EtcdPath;
  clients: number;
  seconds: number;
  valueBytes: number;
  warmupSeconds?: number;
  /** Puts before the clients start (see HttpLoadOptions.primeWrites); default 5,000 on the gRPC
   *  path, whose client needs them, none on the HTTP path. */
  primeWrites?: number;
  cluster?: EtcdCluster;
}): Promise<EtcdLoadResult | Unavailable> {
  const a = await etcdPathAvailable(o.path);
  if (!a.available) return { available: false, reason: a.reason! };
  const run = async (c: EtcdCluster): Promise<EtcdLoadResult> => {
    const r = await runHttpLoad({
      targets: c.endpoints,
      clients: o.clients,
      seconds: o.seconds,
      valueBytes: o.valueBytes,
      kind: KIND[o.path],
      etcdPrefix: c.prefix,
      warmupSeconds: o.warmupSeconds ?? 1,
      primeWrites: o.primeWrites ?? (o.path === 'grpc' ? GRPC_PRIME_WRITES : 0),
      serverPids: c.members.map((m) => m.pid),
    });
    return { available: true, version: c.version, path: o.path, client: a.client ?? null, ...slim(r) };
  };
  return o.cluster ? run(o.cluster) : withEtcd(run);
}

/** etcd through `path` at each entry of `clients`, one after the other on one fresh cluster,
 *  after a warm-up load (`warm`, results dropped): etcd's caches and the Go runtime warm up as a
 *  long-running store's are, as flotilla's node processes are before their rows. */
export async function runEtcdSeries(o: {
  path: EtcdPath;
  clients: number[];
  seconds: number;
  valueBytes: number;
  warmupSeconds: number;
  warm: { clients: number; seconds: number };
  onRow?: (r: EtcdLoadResult) => void;
}): Promise<EtcdLoadResult[] | Unavailable> {
  const a = await etcdPathAvailable(o.path);
  if (!a.available) return { available: false, reason: a.reason! };
  return withEtcd(async (cluster) => {
    const load = (clients: number, seconds: number, warmupSeconds: number) =>
      runEtcdLoad({ path: o.path, clients, seconds, valueBytes: o.valueBytes, warmupSeconds, cluster });
    if (o.warm.seconds > 0) await load(o.warm.clients, o.warm.seconds, 0);
    const rows: EtcdLoadResult[] = [];
    for (const clients of o.clients) {
      const e = await load(clients, o.seconds, o.warmupSeconds);
      if (!e.available) throw new Error(e.reason);
      o.onRow?.(e);
      rows.push(e);
    }
    return rows;
  });
}

/** runEtcdLoad through the HTTP gateway. */
export function runEtcdHttp(o: Omit<Parameters<typeof runEtcdLoad>[0], 'path'>): Promise<EtcdLoadResult | Unavailable> {
  return runEtcdLoad({ ...o, path: 'http' });
}

interface Req {
  start: number;
  end: number;
  client: number;
  ok: boolean;
  target: number;
}

function requestsOf(r: HttpLoadResult): Req[] {
  const log = r.requests ?? [];
  const out: Req[] = [];
  for (let i = 0; i < log.length; i += REQUEST_FIELDS) {
    out.push({ start: log[i], end: log[i + 1], client: log[i + 2], ok: log[i + 3] === 1, target: log[i + 4] });
  }
  return out;
}

/** Longest time without any successful request (all clients) inside [from, to]. */
function longestGap(okEnds: Float64Array, from: number, to: number): number {
  let prev = from;
  let best = 0;
  for (const e of okEnds) {
    if (e < from) continue;
    if (e > to) break;
    best = Math.max(best, e - prev);
    prev = e;
  }
  return Math.max(best, to - prev);
}

const med = (xs: number[]) => round(pct(Float64Array.from(xs).sort(), 50), 1);
const minOf = (xs: number[]) => xs.reduce((a, b) => Math.min(a, b), Infinity);
const max = (xs: number[]) =>
  round(
    xs.reduce((a, b) => Math.max(a, b), 0),
    1,
  );

export interface MoveEvent {
  at: number;
  from: string;
  to: string;
  /** `etcdctl move-leader` wall time (process start included) and whether it succeeded. */
  commandMs: number;
  commandOk: boolean;
  commandOutput: string;
  /** Request to the new leader seen in the members' status (polled every 20 ms). */
  leaderSeenMs: number | null;
  termBefore: number;
  termAfter: number;
  /** First success of a put issued after the request. */
  firstSuccessMs: number | null;
  /** Longest gap between successes (all clients) in [request − 0.2 s, request + 2 s]. */
  gapMs: number;
  /** Requests in flight at the event or started within 2 s of it: failed, > 1 s, slowest. */
  failed: number;
  stalled: number;
  stalledClients: number;
  slowestMs: number;
}

export interface EtcdMoveLeaderResult {
  available: true;
  version: string;
  /** How the writers reached etcd, and the gRPC client's name on that path. */
  path: EtcdPath;
  client: string | null;
  clients: number;
  moves: MoveEvent[];
  summary: {
    commandMsMedian: number;
    commandMsMax: number;
    leaderSeenMsMedian: number;
    leaderSeenMsMax: number;
    firstSuccessMsMedian: number;
    firstSuccessMsMax: number;
    gapMsMedian: number;
    gapMsMax: number;
    /** The same gap measure in the 2.2 s before the first move (steady state). */
    baselineGapMs: number;
    failedPerMoveMedian: number;
    failedPerMoveMax: number;
    stalledPerMoveMedian: number;
    stalledPerMoveMax: number;
    movesWithStalls: number;
    slowestMs: number;
  };
  load: Omit<HttpLoadResult, 'requests'>;
}

/** Attribute each request to the last event at or before its end, when it started before the
 *  event's window closed (in flight at the event, or issued within `windowMs` after it). */
function perEvent(reqs: Req[], events: number[], windowMs: number): Req[][] {
  const out: Req[][] = events.map(() => []);
  for (const r of reqs) {
    let e = -1;
    for (let i = 0; i < events.length; i++) if (events[i] <= r.end) e = i;
    if (e >= 0 && r.start < events[e] + windowMs) out[e].push(r);
  }
  return out;
}

/** Planned leader transfers under load: `moves` times `etcdctl move-leader` (alternating between
 *  the followers), evenly spaced after a 4 s start, while `clients` write through `path`. */
export async function runEtcdMoveLeader(o: {
  path: EtcdPath;
  clients: number;
  seconds: number;
  moves: number;
  valueBytes?: number;
}): Promise<EtcdMoveLeaderResult | Unavailable> {
  const a = await etcdPathAvailable(o.path);
  if (!a.available) return { available: false, reason: a.reason! };
  return withEtcd(async (c) => {
    const first = 4000;
    const spacing = (o.seconds * 1000 - first) / o.moves;
    const load0 = startHttpLoad({
      targets: c.endpoints,
      clients: o.clients,
      seconds: o.seconds,
      valueBytes: o.valueBytes ?? 16,
      kind: KIND[o.path],
      etcdPrefix: c.prefix,
      primeWrites: o.path === 'grpc' ? GRPC_PRIME_WRITES : 0,
      timeline: true,
      serverPids: c.members.map((m) => m.pid),
    });
    await load0.started;
    const t0 = Date.now();
    const loading = load0.result;
    const events: Omit<
      MoveEvent,
      'firstSuccessMs' | 'gapMs' | 'failed' | 'stalled' | 'stalledClients' | 'slowestMs'
    >[] = [];
    for (let i = 0; i < o.moves; i++) {
      await sleep(Math.max(0, t0 + first + i * spacing - Date.now()));
      const before = await c.leaderInfo();
      if (!before.name) throw new Error('etcd has no leader before a move');
      const followers = c.members.filter((m) => m.name !== before.name).map((m) => m.name);
      const to = followers[i % followers.length];
      const at = Date.now();
      let seenAt: number | null = null;
      let termAfter = before.term;
      const watch = (async () => {
        while (Date.now() - at < 10_000) {
          const li = await c.leaderInfo();
          if (li.name === to) {
            seenAt = Date.now();
            termAfter = li.term;
            return;
          }
          await sleep(20);
        }
      })();
      const cmd = await c.moveLeader(before.name, to);
      await watch;
      // Read the term again once settled: a member's status can show the new leader a moment
      // before its term (the two are updated at different points of etcd's raft loop).
      termAfter = Math.max(termAfter, (await c.leaderInfo()).term);
      events.push({
        at,
        from: before.name,
        to,
        commandMs: cmd.ms,
        commandOk: cmd.ok,
        commandOutput: cmd.ok ? '' : cmd.output,
        leaderSeenMs: seenAt === null ? null : seenAt - at,
        termBefore: before.term,
        termAfter,
      });
    }
    const load = await loading;
    const reqs = requestsOf(load);
    const okEnds = Float64Array.from(reqs.filter((r) => r.ok).map((r) => r.end)).sort();
    const groups = perEvent(
      reqs,
      events.map((e) => e.at),
      2000,
    );
    const moves: MoveEvent[] = events.map((e, i) => {
      const g = groups[i];
      const after = reqs.filter((r) => r.ok && r.start >= e.at).map((r) => r.end);
      const stalledReqs = g.filter((r) => r.end - r.start > 1000);
      return {
        ...e,
        firstSuccessMs: after.length ? round(minOf(after) - e.at, 1) : null,
        gapMs: round(longestGap(okEnds, e.at - 200, e.at + 2000), 1),
        failed: g.filter((r) => !r.ok).length,
        stalled: stalledReqs.length,
        stalledClients: new Set(stalledReqs.map((r) => r.client)).size,
        slowestMs: round(
          g.reduce((m, r) => Math.max(m, r.end - r.start), 0),
          1,
        ),
      };
    });
    const firstAt = events[0]?.at ?? load.endedAt;
    const baselineFrom = Math.max(load.startedAt + 500, firstAt - 2200);
    const num = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);
    const { requests: _drop, ...loadRest } = load;
    return {
      available: true,
      version: c.version,
      path: o.path,
      client: a.client ?? null,
      clients: o.clients,
      moves,
      summary: {
        commandMsMedian: med(moves.map((m) => m.commandMs)),
        commandMsMax: max(moves.map((m) => m.commandMs)),
        leaderSeenMsMedian: med(num(moves.map((m) => m.leaderSeenMs))),
        leaderSeenMsMax: max(num(moves.map((m) => m.leaderSeenMs))),
        firstSuccessMsMedian: med(num(moves.map((m) => m.firstSuccessMs))),
        firstSuccessMsMax: max(num(moves.map((m) => m.firstSuccessMs))),
        gapMsMedian: med(moves.map((m) => m.gapMs)),
        gapMsMax: max(moves.map((m) => m.gapMs)),
        baselineGapMs: round(longestGap(okEnds, baselineFrom, firstAt - 200), 1),
        failedPerMoveMedian: med(moves.map((m) => m.failed)),
        failedPerMoveMax: max(moves.map((m) => m.failed)),
        stalledPerMoveMedian: med(moves.map((m) => m.stalled)),
        stalledPerMoveMax: max(moves.map((m) => m.stalled)),
        movesWithStalls: moves.filter((m) => m.stalled > 0).length,
        slowestMs: max(moves.map((m) => m.slowestMs)),
      },
      load: loadRest,
    };
  });
}

export interface EtcdKillResult {
  available: true;
  version: string;
  /** How the writers (and the probe) reached etcd, and the gRPC client's name on that path. */
  path: EtcdPath;
  client: string | null;
  clients: number;
  victim: string;
  /** Epoch ms of the kill, and its offset into the timeline. */
  killedAt: number;
  killAtTimelineMs: number;
  termBefore: number;
  termAfter: number;
  /** Kill to a new leader seen in a surviving member's status (polled every 20 ms). */
  leaderSeenMs: number | null;
  /** Writes possible again: kill to the first success of a probe put (one every 10 ms to the
   *  survivors, 300 ms deadline each, started after the kill), as the peers notes measured it. */
  writesPossibleMs: number | null;
  /** Kill to the first success of a load client's put issued after the kill. Closed-loop clients
   *  all stuck in etcd's 7 s request timeout issue none until it expires, so this can be ~7 s
   *  when writes were possible long before. */
  resumeMs: number | null;
  /** Kill to the first success of any put, also one in flight at the kill. */
  firstSuccessAfterKillMs: number | null;
  /** Longest gap between successes (all clients) from the kill to the end of the load. */
  gapMs: number;
  /** Per client: the longest stretch without a success, median and max over the clients. */
  clientGapMsMedian: number;
  clientGapMsMax: number;
  /** Requests that ended after the kill: failed (sent to the killed member or a survivor);
   *  > 1 s (and how many clients); slowest. errorsByKind covers the whole run. */
  failed: number;
  failedByTarget: { killed: number; surviving: number };
  errorsByKind: Record<string, number>;
  stalled: number;
  stalledClients: number;
  slowestMs: number;
  load: Omit<HttpLoadResult, 'requests'>;
}

/** The probe's put to one member through `path` (300 ms deadline): true when it succeeded. The
 *  gRPC client is connected to every member and warmed up here, before the kill, so the probe
 *  times etcd and not the client's first calls. */
async function prober(
  c: EtcdCluster,
  path: EtcdPath,
): Promise<{ put(m: EtcdMember): Promise<boolean>; close(): void }> {
  if (path === 'grpc') {
    const w = await grpcWriter(c.endpoints, 1, 300);
    for (let i = 0; i < 100; i++) await w.put(i % c.endpoints.length, 'flotilla-bench-probe', 2000);
    return { put: async (m) => (await w.put(c.members.indexOf(m), 'flotilla-bench-probe')).ok, close: () => w.close() };
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const body = {
    key: Buffer.from('flotilla-bench-probe').toString('base64'),
    value: Buffer.from('x').toString('base64'),
  };
  return {
    put: async (m) => (await postJson(`${m.clientUrl}${c.prefix}/kv/put`, body, 300, agent)).status === 200,
    close: () => agent.destroy(),
  };
}

/** One probe put every 10 ms (round-robin over `to`) from `from` until one succeeds; resolves
 *  with the ms from `from` to that success, or null after 20 s. */
async function probe(p: Awaited<ReturnType<typeof prober>>, to: EtcdMember[], from: number): Promise<number | null> {
  let found: number | null = null;
  const pending: Promise<void>[] = [];
  for (let i = 0; found === null && Date.now() - from < 20_000; i++) {
    pending.push(
      p.put(to[i % to.length]).then(
        (ok) => {
          if (ok && found === null) found = Date.now() - from;
        },
        () => undefined,
      ),
    );
    await sleep(10);
  }
  await Promise.all(pending);
  return found;
}

/** kill -9 of the etcd leader a third into a `seconds` run of `clients` writers (at least 4 s
 *  in, and after the gRPC client's priming puts). */
export async function runEtcdKill(o: {
  path: EtcdPath;
  clients: number;
  seconds: number;
  valueBytes?: number;
}): Promise<EtcdKillResult | Unavailable> {
  const a = await etcdPathAvailable(o.path);
  if (!a.available) return { available: false, reason: a.reason! };
  return withEtcd(async (c) => {
    const loading = startHttpLoad({
      targets: c.endpoints,
      clients: o.clients,
      seconds: o.seconds,
      valueBytes: o.valueBytes ?? 16,
      kind: KIND[o.path],
      etcdPrefix: c.prefix,
      primeWrites: o.path === 'grpc' ? GRPC_PRIME_WRITES : 0,
      timeline: true,
      serverPids: c.members.map((m) => m.pid),
    });
    await loading.started;
    const t0 = Date.now();
    const probes = await prober(c, o.path);
    await sleep(Math.max(0, t0 + Math.max(4000, (o.seconds * 1000) / 3) - Date.now()));
    const before = await c.leaderInfo();
    if (!before.name) throw new Error('etcd has no leader before the kill');
    c.kill(before.name);
    const killedAt = Date.now();
    const probing = probe(
      probes,
      c.members.filter((m) => m.name !== before.name),
      killedAt,
    );
    let leaderSeenMs: number | null = null;
    let termAfter = before.term;
    while (Date.now() - killedAt < 20_000) {
      const li = await c.leaderInfo();
      if (li.name && li.name !== before.name && li.term > before.term) {
        leaderSeenMs = Date.now() - killedAt;
        termAfter = li.term;
        break;
      }
      await sleep(20);
    }
    const writesPossibleMs = await probing;
    probes.close();
    const load = await loading.result;
    termAfter = Math.max(termAfter, (await c.leaderInfo()).term);
    const reqs = requestsOf(load);
    const okEnds = Float64Array.from(reqs.filter((r) => r.ok).map((r) => r.end)).sort();
    const afterStart = reqs.filter((r) => r.ok && r.start >= killedAt).map((r) => r.end);
    const afterEnd = reqs.filter((r) => r.ok && r.end >= killedAt).map((r) => r.end);
    const hit = reqs.filter((r) => r.end >= killedAt);
    const victimIdx = c.members.findIndex((m) => m.name === before.name);
    const failedAfter = hit.filter((r) => !r.ok);
    const stalledReqs = hit.filter((r) => r.end - r.start > 1000);
    // Per client, the longest stretch without a success that overlaps the kill.
    const clientGaps: number[] = [];
    for (let cl = 0; cl < o.clients; cl++) {
      const mine = reqs.filter((r) => r.client === cl);
      const ends = mine
        .filter((r) => r.ok)
        .map((r) => r.end)
        .sort((x, y) => x - y);
      let prev = killedAt;
      let best = 0;
      for (const e of ends) {
        if (e < killedAt) {
          prev = e;
          continue;
        }
        best = Math.max(best, e - prev);
        prev = e;
      }
      const lastEnd = mine.reduce((m, r) => Math.max(m, r.end), 0);
      clientGaps.push(Math.max(best, lastEnd - prev));
    }
    const { requests: _drop, ...loadRest } = load;
    return {
      available: true,
      version: c.version,
      path: o.path,
      client: a.client ?? null,
      clients: o.clients,
      victim: before.name,
      killedAt,
      killAtTimelineMs: killedAt - (load.timeline?.startEpochMs ?? t0),
      termBefore: before.term,
      termAfter,
      leaderSeenMs,
      writesPossibleMs,
      resumeMs: afterStart.length ? round(minOf(afterStart) - killedAt, 1) : null,
      firstSuccessAfterKillMs: afterEnd.length ? round(minOf(afterEnd) - killedAt, 1) : null,
      gapMs: round(longestGap(okEnds, killedAt, load.endedAt), 1),
      clientGapMsMedian: med(clientGaps),
      clientGapMsMax: max(clientGaps),
      failed: failedAfter.length,
      failedByTarget: {
        killed: failedAfter.filter((r) => r.target === victimIdx).length,
        surviving: failedAfter.filter((r) => r.target !== victimIdx).length,
      },
      errorsByKind: load.errorsByKind,
      stalled: stalledReqs.length,
      stalledClients: new Set(stalledReqs.map((r) => r.client)).size,
      slowestMs: round(
        hit.reduce((m, r) => Math.max(m, r.end - r.start), 0),
        1,
      ),
      load: loadRest,
    };
  });
}
