// Leader transfers over HTTP, as an operator makes them: 3 node processes (admin HTTP on, balancer
// off, fsync on), `groups` groups, closed-loop HTTP writers (src/bench/http-load.ts in its own process:
// each write to a random node and a random key), and meanwhile `transfers` transfers, one after
// the other, each a `POST /transfer {"group": G, "to": N}` sent to the admin address of G's
// current leader (G at random, N another voter of G at random), timed at the client from the
// request sent to the answer read. Then the same through the CLI (`flotilla transfer --admin ...
// --group G --to N`, a new process each time), beside `flotilla --help` (the CLI's own start-up)
// under the same load. Writes are judged per window (HTTP transfers, CLI runs): writes/s, failed,
// stalled (> 1 s).
// Owns: runHttpTransfers, its result shape and the direct-use entry
// (`node --import tsx src/bench/transfer-http.ts [transfers] [cli runs]`, JSON on stdout).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NO_BALANCER, waitElected, withCluster, type Next } from './cluster.js';
import { REQUEST_FIELDS, startHttpLoad, type HttpLoadResult } from './http-load.js';
import { freePorts } from './ports.js';
import { pct, round } from './stats.js';

export interface HttpTransferOptions {
  groups: number;
  /** Closed-loop HTTP writers. */
  clients: number;
  /** Transfers over HTTP. */
  transfers: number;
  /** Pause between two transfers (and between two CLI runs), ms. Default 100. */
  pauseMs?: number;
  /** CLI transfers (each beside a `--help` run); 0 skips the CLI part. */
  cliRuns: number;
  /** Load before the first transfer, s. Default 3. */
  warmupSeconds?: number;
  /** After the warm-up, wait (under the load) until no node's /health reports an unstable
   *  warning, at most this long, s: the transfers are not forced, and the stability gate refuses
   *  them while the p99 broadcast time (RTT + commit + event-loop delay) of the recent past,
   *  the start-up elections included, reaches the election timeout. Default 300. */
  stableWaitSeconds?: number;
  say?: (line: string) => void;
}

/** Writes of the HTTP load whose requests overlapped a window. */
export interface WindowWrites {
  seconds: number;
  /** Successful writes that completed in the window, per second. */
  writesPerSec: number;
  writes: number;
  failed: number;
  /** Requests (ok or not) that took more than 1 s. */
  stalled: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface CliTransferResult {
  /** How the CLI was run (see cliCommand). */
  command: string;
  runs: number;
  /** Wall time of `flotilla --help` (spawn to exit), ms. */
  helpMs: number[];
  helpMedianMs: number;
  /** Wall time of `flotilla transfer ...` (spawn to exit), ms, successful runs. */
  transferMs: number[];
  transferMedianMs: number;
  /** The transfer's own time as the node reported it ("verified in X ms"). */
  reportedMs: number[];
  reportedMedianMs: number;
  /** Median of (transfer wall time - reported transfer time) - median --help: what the CLI adds
   *  beyond its start-up and the transfer itself. */
  extraMedianMs: number;
  failures: string[];
  writes: WindowWrites;
}

export interface HttpTransferResult {
  groups: number;
  clients: number;
  /** /proc/loadavg when the scenario started (other work on the machine). */
  loadAvg: string;
  /** Leaders per node before the transfers. */
  leadersBefore: Record<string, number>;
  /** Seconds from the load's start until no node reported an unstable warning (null: still
   *  unstable when the wait ran out), and the last such warning seen. */
  stableAfterSeconds: number | null;
  lastUnstable: string | null;
  transfers: number;
  ok: number;
  /** Transfers whose answer named another old leader than the node asked (the map was stale:
   *  the node forwarded the request). */
  forwarded: number;
  failures: { group: number; to: string; status: number; error: string }[];
  /** Client-side: request sent to answer read, successful transfers, ms. */
  httpP50Ms: number;
  httpP90Ms: number;
  httpP99Ms: number;
  httpMaxMs: number;
  /** The node's own figure (TransferResult.ms: request to verified new leader). */
  serverP50Ms: number;
  serverP99Ms: number;
  serverMaxMs: number;
  /** Per transfer, client time - node time (HTTP, JSON, the admin server's event loop), p50/max. */
  httpOverheadP50Ms: number;
  httpOverheadMaxMs: number;
  /** TransferResult.phases (catch-up, campaign, verify) and lag (entries), p50/p99/max. */
  phaseP50Ms: { catchUp: number; campaign: number; verify: number };
  phaseP99Ms: { catchUp: number; campaign: number; verify: number };
  phaseMaxMs: { catchUp: number; campaign: number; verify: number };
  lagP50: number;
  lagMax: number;
  /** The slowest transfers, for a look at where their time went. */
  slowest: {
    group: number;
    from: string;
    to: string;
    httpMs: number;
    ms: number;
    lag: number;
    catchUpMs: number;
    campaignMs: number;
    verifyMs: number;
  }[];
  /** The load's writes while the HTTP transfers ran. */
  writes: WindowWrites;
  cli: CliTransferResult | null;
  /** The load's own summary over its whole window (warm-up excluded). */
  load: Omit<HttpLoadResult, 'requests' | 'timeline'>;
}

interface TransferAnswer {
  group: number;
  from: string;
  to: string;
  term: number;
  ms: number;
  lag: number;
  phases: { catchUpMs: number; campaignMs: number; verifyMs: number };
}

/** A 200 answer of POST /transfer, checked field by field (a node of another build could differ). */
function transferAnswer(j: Record<string, unknown>): TransferAnswer {
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number') throw new Error(`transfer answer: ${what} is not a number`);
    return v;
  };
  const str = (v: unknown, what: string): string => {
    if (typeof v !== 'string') throw new Error(`transfer answer: ${what} is not a string`);
    return v;
  };
  const p = j.phases;
  if (typeof p !== 'object' || p === null) throw new Error('transfer answer: no phases');
  const ph = p as Record<string, unknown>;
  return {
    group: num(j.group, 'group'),
    from: str(j.from, 'from'),
    to: str(j.to, 'to'),
    term: num(j.term, 'term'),
    ms: num(j.ms, 'ms'),
    lag: num(j.lag, 'lag'),
    phases: {
      catchUpMs: num(ph.catchUpMs, 'phases.catchUpMs'),
      campaignMs: num(ph.campaignMs, 'phases.campaignMs'),
      verifyMs: num(ph.verifyMs, 'phases.verifyMs'),
    },
  };
}

/** One HTTP request on a new connection (as an operator's tool makes it); ms from sending it to
 *  reading the whole answer. */
function call(
  admin: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const at = admin.lastIndexOf(':');
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolveCall, reject) => {
    const t0 = performance.now();
    const req = request(
      {
        host: admin.slice(0, at),
        port: Number(admin.slice(at + 1)),
        path,
        method,
        agent: false,
        headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.once('end', () => {
          const ms = performance.now() - t0;
          clearTimeout(timer);
          let json: Record<string, unknown>;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {
            json = { message: Buffer.concat(chunks).toString('utf8').slice(0, 200) };
          }
          resolveCall({ status: res.statusCode ?? 0, json, ms });
        });
        res.once('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
    req.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(data);
  });
}

interface GroupView {
  group: number;
  role: string;
  leader: string;
  conf: { voters: string[] };
}

/** Every group's leader and voters, from each node's GET /status?groups (a node's own
 *  leaderships are authoritative). */
async function leaderMap(
  admin: Map<string, string>,
): Promise<{ leader: Map<number, string>; voters: Map<number, string[]> }> {
  const leader = new Map<number, string>();
  const voters = new Map<number, string[]>();
  for (const [id, a] of admin) {
    const r = await call(a, 'GET', '/status?groups');
    if (r.status !== 200)
      throw new Error(`GET /status?groups on ${id}: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    for (const g of r.json.perGroup as GroupView[]) {
      if (g.role === 'leader') leader.set(g.group, id);
      if (!voters.has(g.group)) voters.set(g.group, [...g.conf.voters]);
    }
  }
  return { leader, voters };
}

/** Writes of the load log ([start, end, client, ok, target] per request, epoch ms) that overlap
 *  [from, to]. */
function windowWrites(log: number[], from: number, to: number): WindowWrites {
  let writes = 0;
  let failed = 0;
  let stalled = 0;
  const lat: number[] = [];
  for (let i = 0; i < log.length; i += REQUEST_FIELDS) {
    const start = log[i];
    const end = log[i + 1];
    if (end < from || start > to) continue;
    const ok = log[i + 3] === 1;
    if (end - start > 1000) stalled++;
    if (!ok) failed++;
    else {
      lat.push(end - start);
      if (end >= from && end <= to) writes++;
    }
  }
  lat.sort((a, b) => a - b);
  const seconds = (to - from) / 1000;
  return {
    seconds: round(seconds, 1),
    writesPerSec: seconds > 0 ? Math.round(writes / seconds) : 0,
    writes,
    failed,
    stalled,
    p50Ms: round(pct(lat, 50)),
    p99Ms: round(pct(lat, 99)),
    maxMs: round(lat.at(-1) ?? 0),
  };
}

const median = (xs: number[]) =>
  round(
    pct(
      [...xs].sort((a, b) => a - b),
      50,
    ),
    1,
  );
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

/** The CLI to time: BENCH_CLI (a main.js), else BENCH_DIST's build, else this build's (compiled,
 *  or src/ through tsx when this file runs under tsx). */
export function cliCommand(): { argv: string[]; label: string } {
  if (process.env.BENCH_CLI)
    return { argv: [resolve(process.env.BENCH_CLI)], label: `node ${resolve(process.env.BENCH_CLI)}` };
  if (process.env.BENCH_DIST) {
    const main = resolve(process.env.BENCH_DIST, 'src/cli/main.js');
    return { argv: [main], label: `node ${main}` };
  }
  if (import.meta.filename.endsWith('.ts')) {
    return {
      argv: ['--import', 'tsx', resolve(import.meta.dirname, '../cli/main.ts')],
      label: 'node --import tsx src/cli/main.ts',
    };
  }
  const main = resolve(import.meta.dirname, '../cli/main.js');
  return { argv: [main], label: `node ${main}` };
}

/** Runs the CLI once: wall time from spawn to exit, and its output. */
function runCli(argv: string[]): Promise<{ ms: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    const t0 = performance.now();
    const child: ChildProcess = spawn(process.execPath, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FLOTILLA_ADMIN: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('close', (code) => resolveRun({ ms: performance.now() - t0, code, stdout, stderr }));
  });
}

export async function runHttpTransfers(o: HttpTransferOptions): Promise<HttpTransferResult> {
  const say = o.say ?? (() => {});
  const loadAvg = readFileSync('/proc/loadavg', 'utf8').trim();
  const ports = await freePorts(3);
  const ids = ['n1', 'n2', 'n3'];
  const admin = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const pauseMs = o.pauseMs ?? 100;
  return withCluster(
    o.groups,
    null,
    async (kids: Map<string, ChildProcess>, next: Next) => {
      await waitElected(kids, next, o.groups);
      // The election's catch-up traffic over and the groups quiesced (as in the HTTP scenario).
      const t0 = performance.now();
      while (performance.now() - t0 < 30_000) {
        const st = await Promise.all(
          [...kids.values()].map((c) => {
            c.send({ cmd: 'status' });
            return next(c, 'status');
          }),
        );
        if (st.every((s) => s.quiesced === s.groups)) break;
        await sleep(250);
      }
      say(
        `${o.groups} groups elected; ${o.clients} closed-loop HTTP writers (random node, random key), warm-up ${o.warmupSeconds ?? 3} s`,
      );
      // The load: long enough for everything; stopped when the transfers and CLI runs are done.
      const warmupSeconds = o.warmupSeconds ?? 3;
      const load = startHttpLoad({
        targets: [...admin.values()].map((a) => `http://${a}`),
        clients: o.clients,
        seconds: 3600,
        valueBytes: 16,
        kind: 'flotilla',
        warmupSeconds,
        timeline: true,
        random: true,
        keys: 100,
        serverPids: [...kids.values()].map((c) => c.pid!),
      });
      let loadResult: HttpLoadResult | null = null;
      let loadError: unknown = null;
      const loadDone = load.result.then(
        (r) => (loadResult = r),
        (e: unknown) => (loadError = e),
      );
      try {
        const loadAt = performance.now();
        await sleep(warmupSeconds * 1000 + 500);
        // Wait for the stability gate to open (see stableWaitSeconds).
        let stableAfterSeconds: number | null = null;
        let lastUnstable: string | null = null;
        const waitUntil = performance.now() + (o.stableWaitSeconds ?? 300) * 1000;
        let told = 0;
        for (;;) {
          const unstable: string[] = [];
          for (const [id, a] of admin) {
            const h = await call(a, 'GET', '/health');
            for (const w of (h.json.warnings as { unstable?: boolean; message: string }[] | undefined) ?? [])
              if (w.unstable) unstable.push(`${id}: ${w.message}`);
          }
          if (unstable.length === 0) {
            stableAfterSeconds = round((performance.now() - loadAt) / 1000, 1);
            break;
          }
          lastUnstable = unstable[0];
          if (performance.now() > waitUntil) break;
          if (performance.now() - told > 30_000) {
            told = performance.now();
            say(`waiting for the stability gate: ${lastUnstable}`);
          }
          await sleep(2000);
        }
        // Who leads what now (after the wait: an election under load may have moved a leader).
        const { leader, voters } = await leaderMap(admin);
        if (leader.size !== o.groups) throw new Error(`${leader.size} of ${o.groups} groups have a leader`);
        const leadersBefore: Record<string, number> = Object.fromEntries(
          ids.map((id) => [id, [...leader.values()].filter((x) => x === id).length]),
        );
        say(
          (stableAfterSeconds === null
            ? `still unstable after ${o.stableWaitSeconds ?? 300} s: ${lastUnstable}; transferring anyway`
            : `no unstable warning ${stableAfterSeconds} s into the load`) +
            `; leaders ${ids.map((id) => `${id} ${leadersBefore[id]}`).join(', ')}`,
        );
        const pick = () => {
          const g = 1 + Math.floor(Math.random() * o.groups);
          const from = leader.get(g)!;
          const others = voters.get(g)!.filter((v) => v !== from);
          return { g, from, to: others[Math.floor(Math.random() * others.length)] };
        };

        // 1. POST /transfer to the leader, one after the other.
        const httpMs: number[] = [];
        const answers: (TransferAnswer & { httpMs: number })[] = [];
        const failures: HttpTransferResult['failures'] = [];
        let forwarded = 0;
        const tFrom = Date.now();
        for (let i = 0; i < o.transfers; i++) {
          const { g, from, to } = pick();
          try {
            const r = await call(admin.get(from)!, 'POST', '/transfer', { group: g, to });
            if (r.status === 200) {
              const a = transferAnswer(r.json);
              httpMs.push(r.ms);
              answers.push({ ...a, httpMs: r.ms });
              if (a.from !== from) forwarded++;
              leader.set(g, a.to);
            } else {
              failures.push({
                group: g,
                to,
                status: r.status,
                error: `${r.json.error ?? ''}${r.json.reason ? ` (${r.json.reason})` : ''}: ${r.json.message ?? ''}`,
              });
              if (typeof r.json.leader === 'string' && r.json.leader) leader.set(g, r.json.leader);
            }
          } catch (e) {
            failures.push({ group: g, to, status: 0, error: (e as Error).message });
          }
          await sleep(pauseMs);
        }
        const tTo = Date.now() - pauseMs;

        // 2. The CLI: --help (start-up) and transfer, alternately, under the same load.
        let cli: CliTransferResult | null = null;
        let cFrom = 0;
        let cTo = 0;
        if (o.cliRuns > 0) {
          const cmd = cliCommand();
          const helpMs: number[] = [];
          const transferMs: number[] = [];
          const reportedMs: number[] = [];
          const extra: number[] = [];
          const cliFailures: string[] = [];
          cFrom = Date.now();
          for (let i = 0; i < o.cliRuns; i++) {
            const h = await runCli([...cmd.argv, '--help']);
            if (h.code === 0) helpMs.push(h.ms);
            await sleep(pauseMs);
            const { g, from, to } = pick();
            const r = await runCli([
              ...cmd.argv,
              'transfer',
              '--admin',
              admin.get(from)!,
              '--group',
              String(g),
              '--to',
              to,
            ]);
            const m = /verified in ([\d.]+) ms/.exec(r.stdout);
            if (r.code === 0 && m) {
              transferMs.push(r.ms);
              reportedMs.push(Number(m[1]));
              extra.push(r.ms - Number(m[1]));
              leader.set(g, to);
            } else {
              cliFailures.push(`group ${g} -> ${to}: exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 200)}`);
            }
            await sleep(pauseMs);
          }
          cTo = Date.now() - pauseMs;
          const helpMedianMs = median(helpMs);
          cli = {
            command: cmd.label,
            runs: o.cliRuns,
            helpMs: helpMs.map((x) => round(x, 1)),
            helpMedianMs,
            transferMs: transferMs.map((x) => round(x, 1)),
            transferMedianMs: median(transferMs),
            reportedMs,
            reportedMedianMs: median(reportedMs),
            extraMedianMs: round(median(extra) - helpMedianMs, 1),
            failures: cliFailures,
            writes: { seconds: 0, writesPerSec: 0, writes: 0, failed: 0, stalled: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 },
          };
        }
        load.stop();
        await loadDone;
        if (loadError) throw loadError;
        const lr = loadResult as HttpLoadResult | null;
        if (!lr) throw new Error('http load gave no result');
        const log = lr.requests ?? [];
        if (cli) cli.writes = windowWrites(log, cFrom, cTo);
        const { requests: _r, timeline: _t, ...loadSummary } = lr;
        const server = sorted(answers.map((a) => a.ms));
        const http = sorted(httpMs);
        const overhead = sorted(answers.map((a) => a.httpMs - a.ms));
        const ph = (k: 'catchUpMs' | 'campaignMs' | 'verifyMs') => sorted(answers.map((a) => a.phases?.[k] ?? 0));
        const phases = { catchUp: ph('catchUpMs'), campaign: ph('campaignMs'), verify: ph('verifyMs') };
        const at = (p: number) => ({
          catchUp: round(pct(phases.catchUp, p), 1),
          campaign: round(pct(phases.campaign, p), 1),
          verify: round(pct(phases.verify, p), 1),
        });
        const lags = sorted(answers.map((a) => a.lag));
        return {
          groups: o.groups,
          clients: o.clients,
          loadAvg,
          leadersBefore,
          stableAfterSeconds,
          lastUnstable,
          transfers: o.transfers,
          ok: answers.length,
          forwarded,
          failures,
          httpP50Ms: round(pct(http, 50), 1),
          httpP90Ms: round(pct(http, 90), 1),
          httpP99Ms: round(pct(http, 99), 1),
          httpMaxMs: round(http.at(-1) ?? 0, 1),
          serverP50Ms: round(pct(server, 50), 1),
          serverP99Ms: round(pct(server, 99), 1),
          serverMaxMs: round(server.at(-1) ?? 0, 1),
          httpOverheadP50Ms: round(pct(overhead, 50), 1),
          httpOverheadMaxMs: round(overhead.at(-1) ?? 0, 1),
          phaseP50Ms: at(50),
          phaseP99Ms: at(99),
          phaseMaxMs: at(100),
          lagP50: pct(lags, 50),
          lagMax: lags.at(-1) ?? 0,
          slowest: [...answers]
            .sort((a, b) => b.httpMs - a.httpMs)
            .slice(0, 5)
            .map((a) => ({
              group: a.group,
              from: a.from,
              to: a.to,
              httpMs: round(a.httpMs, 1),
              ms: a.ms,
              lag: a.lag,
              catchUpMs: a.phases.catchUpMs,
              campaignMs: a.phases.campaignMs,
              verifyMs: a.phases.verifyMs,
            })),
          writes: windowWrites(log, tFrom, tTo),
          cli,
          load: loadSummary,
        };
      } finally {
        load.stop();
        await loadDone;
      }
    },
    (id) => ['--admin', admin.get(id)!, ...NO_BALANCER],
  );
}

// Direct use: node --import tsx src/bench/transfer-http.ts [transfers] [cli runs] [clients]
if (process.argv[1] === import.meta.filename) {
  const [n, c, k] = process.argv.slice(2);
  const r = await runHttpTransfers({
    groups: 1000,
    clients: Number(k ?? 16),
    transfers: Number(n ?? 100),
    cliRuns: Number(c ?? 15),
    say: (line) => process.stderr.write(`  ${line}\n`),
  });
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
}
