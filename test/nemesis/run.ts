// The nemesis harness: real `flotilla start` processes on 127.0.0.1 with a test-controlled TCP
// proxy on every link between nodes, concurrent clients doing read / write / cas on a few hundred
// keys through the HTTP gateway, and a nemesis injecting faults: kill -9 and restart, SIGSTOP /
// SIGCONT pauses longer than the election timeout, partitions (one node isolated, majority /
// minority, bridge), slow links (latency and jitter, at times beyond the election timeout), a
// slow disk on one node, leader transfers, drains, balancer rounds; with --membership, a node
// joins early and one node is decommissioned mid-run (the member taking the join and the mover's
// node are killed along the way). Every client event goes to a
// history (JSON Lines, docs/history-format.md). At the end: heal, restart every node, read
// every key linearizably, check one leader per group, and judge the history with the
// linearizability checker. Every loop is bounded in count and time; every process is cleaned up.
//
//   npm run nemesis -- --nodes 3 --groups 200 --time 60 --faults kill,pause,partition,latency,slowdisk,transfer,drain,balancer --seed 7
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { TcpProxy } from './proxy.js';
import { freePorts } from '../helpers/net.js';

export const FAULTS = ['kill', 'pause', 'partition', 'transfer', 'drain', 'balancer', 'latency', 'slowdisk'] as const;
export type Fault = (typeof FAULTS)[number];

export interface NemesisOptions {
  nodes: number;
  groups: number;
  /** Seconds of client load with faults. */
  time: number;
  faults: Fault[];
  seed: number;
  keys: number;
  clients: number;
  /** Where the history and the summary go. */
  out: string;
  /** Membership events: a node joins early in the run, and one node (an original or the joined
   *  one) is decommissioned mid-run, while the faults go on (docs/testing.md). */
  membership?: boolean;
  log?: (line: string) => void;
}

/** What became of the membership events (times in ms from the start of the load). */
export interface MembershipResult {
  joiner: string;
  /** When the joiner first served (healthy), null when it never did. */
  joinedAtMs: number | null;
  /** Joiner processes started (a refused, failed or killed join is retried through another member). */
  joinAttempts: number;
  /** How each failed attempt ended. */
  joinFailures: string[];
  /** The node decommissioned, null when none was. */
  decommissioned: string | null;
  decommissionStartMs: number | null;
  /** When the node showed as removed; null when it did not. */
  removedAtMs: number | null;
  /** 'during faults', 'after healing', or why it did not finish. */
  decommission: string;
  /** Completed moves by kind, summed over every mover seen (group 0's leader changes). */
  moves: Record<string, number>;
  failedMoves: number;
}

export interface NemesisResult {
  seed: number;
  ops: number;
  ok: number;
  fail: number;
  info: number;
  faults: Record<string, number>;
  verdict: 'ok' | 'violation' | 'unknown' | 'error';
  checker: string;
  leadersOk: boolean;
  leaderProblems: string[];
  finalReads: number;
  historyFile: string;
  membership: MembershipResult | null;
}

/** Small seeded generator (mulberry32): the nemesis schedule and client choices replay by seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// `flotilla start` plus an IPC channel for clients on the embedded API inside the node process.
const NODE = resolve('test/nemesis/node.ts');
const CHECK = resolve('test/check/cli.ts');

export async function runNemesis(o: NemesisOptions): Promise<NemesisResult> {
  const log = o.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  // The nemesis draws from its own stream, so that client traffic (whose amount depends on timing)
  // does not shift the fault schedule: a seed replays the same faults with the same parameters.
  const random = rng(o.seed);
  const routeRandom = rng(o.seed ^ 0x5bd1e995);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  /** The bootstrap nodes; with membership events one more joins later. */
  const ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  const joiner = o.membership ? `n${o.nodes + 1}` : null;
  const allIds = joiner === null ? ids : [...ids, joiner];
  /** The nodes in the cluster now (joined, not removed): what faults, clients and checks cover. */
  const members = [...ids];
  const root = mkdtempSync(join(tmpdir(), 'flotilla-nemesis-'));
  mkdirSync(o.out, { recursive: true });
  const historyFile = join(o.out, `history-seed${o.seed}.jsonl`);
  const history = createWriteStream(historyFile);
  const ports = await freePorts(3 * allIds.length);
  const listen = new Map(allIds.map((id, i) => [id, ports[i]]));
  const admin = new Map(allIds.map((id, i) => [id, `127.0.0.1:${ports[allIds.length + i]}`]));
  // Every node is known by one address, `<id>.nemesis:<port>` (the cluster record holds one per
  // node), which node a's process resolves to its own loopback address (test/nemesis/node.ts):
  // proxies.get(a).get(b) listens there on b's port and forwards to b, so every link keeps its
  // own proxy, a joined node's too.
  const port = new Map(allIds.map((id, i) => [id, ports[2 * allIds.length + i]]));
  const address = (id: string) => `${id}.nemesis:${port.get(id)}`;
  const dialFrom = (id: string) => `127.77.${allIds.indexOf(id) + 1}.1`;
  const proxies = new Map<string, Map<string, TcpProxy>>();
  for (const a of allIds) {
    const m = new Map<string, TcpProxy>();
    for (const b of allIds) {
      if (a === b) continue;
      const p = new TcpProxy({ host: '127.0.0.1', port: listen.get(b)! });
      await p.listen(port.get(b), dialFrom(a));
      m.set(b, p);
    }
    proxies.set(a, m);
  }
  const procs = new Map<string, ChildProcess>();
  /** A fault sent into a node process, waiting for the process to confirm it (one at a time). */
  const faultAcks = new Map<ChildProcess, (outcome: string) => void>();
  const paused = new Set<string>();
  const faults: Record<string, number> = {};
  const count = (k: string) => {
    faults[k] = (faults[k] ?? 0) + 1;
  };
  const balancerOn = o.faults.includes('balancer');

  /** Processes started per node: a mover's counters are its process's own. */
  const spawns = new Map<string, number>();
  /** The last lines a node process wrote to stderr (why a join failed). */
  const lastErr = new Map<string, string>();
  // The mover repairs a group whose replica has been on a down node this long: longer than a kill
  // usually lasts, so repairs are rare but possible (a node the nemesis cannot restart at once).
  // A move step may take 15 s, and a learner nobody moves (its mover's node was killed mid-move)
  // is removed after as long: the default, 10 minutes, is sized for snapshots of big groups and
  // would hold a decommission up that long (docs/testing.md).
  const moverConfig = join(root, 'mover.json');
  writeFileSync(moverConfig, JSON.stringify({ replicas: { repairDelayMs: 10_000, moveTimeoutMs: 15_000 } }));
  // For a failure's post-mortem: every node's log (at info) in this directory.
  const nodeLogs = process.env.NEMESIS_NODE_LOGS;
  if (nodeLogs !== undefined) mkdirSync(nodeLogs, { recursive: true });
  /** Starts node `id`; `seed` is the member a joining node asks (ignored once it has joined). */
  const spawnNode = (id: string, seed?: string) => {
    spawns.set(id, (spawns.get(id) ?? 0) + 1);
    const args = [
      '--import',
      'tsx',
      NODE,
      '--id',
      id,
      '--data',
      join(root, id),
      '--listen',
      `127.0.0.1:${listen.get(id)}`,
      '--advertise',
      address(id),
      '--admin',
      admin.get(id)!,
      '--groups',
      String(o.groups),
      '--workers',
      '1',
      '--log-level',
      nodeLogs === undefined ? 'warn' : 'info',
      '--request-timeout-ms',
      '4000',
      ...(balancerOn ? [] : ['--no-balancer']),
      ...(o.membership ? ['--config', moverConfig] : []),
    ];
    if (id === joiner) args.push('--join', address(seed ?? ids[0]));
    else for (const p of ids) if (p !== id) args.push('--peer', `${p}=${address(p)}`);
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', nodeLogs === undefined ? 'ignore' : openSync(join(nodeLogs, `${id}.log`), 'a'), 'pipe', 'ipc'],
      env: { ...process.env, NEMESIS_DIAL_FROM: dialFrom(id) },
    });
    child.stderr?.on('data', (b: Buffer) => lastErr.set(id, `${lastErr.get(id) ?? ''}${b}`.slice(-600)));
    child.on(
      'message',
      (
        m:
          | { id: number; type: 'ok' | 'fail' | 'info'; value: unknown }
          | { fault: string; ok: boolean; error: string | null }
          | { admin: number; ok: boolean; value: unknown; error: string | null },
      ) => {
        if ('admin' in m) {
          adminWaits.get(m.admin)?.(m);
          return;
        }
        if ('fault' in m) {
          faultAcks.get(child)?.(m.ok ? 'applied' : `refused: ${m.error}`);
          return;
        }
        const w = embedded.get(m.id);
        if (w) {
          embedded.delete(m.id);
          w.done(m.type, m.value);
        }
      },
    );
    // Operations in flight on a process that dies have unknown outcomes.
    child.on('exit', () => {
      faultAcks.get(child)?.('process exited');
      for (const w of adminWaits.values()) if (w.node === id) w({ ok: false, value: null, error: 'process exited' });
      for (const [opId, w] of embedded) {
        if (w.node !== id) continue;
        embedded.delete(opId);
        w.done('info', null);
      }
    });
    procs.set(id, child);
    return child;
  };
  const alive = (id: string) => {
    const p = procs.get(id);
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  };
  const up = (id: string) => alive(id) && !paused.has(id);
  /** Membership calls in flight (test/nemesis/node.ts answers them), by call id. */
  const adminWaits = new Map<
    number,
    ((a: { ok: boolean; value: unknown; error: string | null }) => void) & { node?: string }
  >();
  let nextAdmin = 0;
  const adminCall = (id: string, call: 'decommission' | 'cluster', node?: string, ms = 10_000) =>
    new Promise<{ ok: boolean; value: unknown; error: string | null }>((done) => {
      const child = procs.get(id);
      const callId = nextAdmin++;
      const finish = Object.assign(
        (a: { ok: boolean; value: unknown; error: string | null }) => {
          if (!adminWaits.delete(callId)) return;
          clearTimeout(timer);
          done(a);
        },
        { node: id },
      );
      const timer = setTimeout(() => finish({ ok: false, value: null, error: 'no answer' }), ms);
      adminWaits.set(callId, finish);
      try {
        if (
          !child?.connected ||
          !child.send({ admin: callId, call, node }, (err) => {
            if (err) finish({ ok: false, value: null, error: err.message });
          })
        )
          finish({ ok: false, value: null, error: 'not sent' });
      } catch (e) {
        finish({ ok: false, value: null, error: (e as Error).message });
      }
    });
  const http = async (id: string, path: string, init: RequestInit = {}, ms = 5000) =>
    fetch(`http://${admin.get(id)}${path}`, { ...init, signal: AbortSignal.timeout(ms) });
  const healthy = async (id: string) => {
    try {
      return (await http(id, '/health', {}, 2000)).status === 200;
    } catch {
      return false;
    }
  };
  const waitUntil = async (what: string, cond: () => Promise<boolean>, ms: number) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond()) return;
      await sleep(200);
    }
    throw new Error(`nemesis: ${what} not within ${ms} ms`);
  };
  const kill = async (id: string, sig: NodeJS.Signals) => {
    const p = procs.get(id);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(sig);
    await Promise.race([gone, sleep(10_000)]);
  };

  // --- history -----------------------------------------------------------------------------
  const t0 = process.hrtime.bigint();
  const now = () => Number(process.hrtime.bigint() - t0) / 1e6;
  let ops = 0;
  const tally = { ok: 0, fail: 0, info: 0 };
  const record = (ev: Record<string, unknown>) => history.write(`${JSON.stringify(ev)}\n`);
  let nextProcess = 0;
  /** Embedded-API operations in flight, by op id: the node serving it and how to complete it. */
  const embedded = new Map<number, { node: string; done: (type: 'ok' | 'fail' | 'info', value: unknown) => void }>();
  let nextOp = 0;
  const viaEmbedded = (id: string, f: string, key: string, value: unknown) =>
    new Promise<{ type: 'ok' | 'fail' | 'info'; value: unknown }>((resolveOp) => {
      const child = procs.get(id);
      const opId = nextOp++;
      const timer = setTimeout(() => {
        embedded.delete(opId);
        resolveOp({ type: 'info', value: null });
      }, 8000);
      embedded.set(opId, {
        node: id,
        done: (type, v) => {
          clearTimeout(timer);
          resolveOp({ type, value: v });
        },
      });
      const lost = () => {
        if (!embedded.delete(opId)) return;
        clearTimeout(timer);
        resolveOp({ type: 'info', value: null });
      };
      // A process killed a moment ago: send() may throw EPIPE or report it to the callback.
      try {
        if (
          !child?.connected ||
          !child.send({ id: opId, f, key, value }, (err) => {
            if (err) lost();
          })
        )
          lost();
      } catch {
        lost();
      }
    });

  /** One client operation through node `id`'s gateway, recorded as invoke + completion. */
  const operate = async (
    proc: number,
    id: string,
    f: 'read' | 'write' | 'cas',
    key: string,
    value: unknown,
  ): Promise<'ok' | 'fail' | 'info'> => {
    ops++;
    record({ type: 'invoke', process: proc, f, key, value: f === 'read' ? null : value, time: now() });
    let type: 'ok' | 'fail' | 'info' = 'info';
    let out: unknown = null;
    // Half the operations go through the embedded API inside the node process, half through HTTP.
    if (routeRandom() < 0.5) {
      const r = await viaEmbedded(id, f, key, value);
      type = r.type;
      out = r.value;
      if (type === 'info' && f === 'read') type = 'fail';
      record({ type, process: proc, f, key, value: type === 'ok' ? out : null, time: now() });
      tally[type]++;
      return type;
    }
    try {
      const path = `/kv/${encodeURIComponent(key)}`;
      if (f === 'read') {
        const r = await http(id, path, {}, 6000);
        const body = Buffer.from(await r.arrayBuffer()).toString('utf8');
        if (r.status === 200) [type, out] = ['ok', body];
        else if (r.status === 404) [type, out] = ['ok', null];
        else type = 'fail'; // a read that did not answer changed nothing
      } else if (f === 'write') {
        const r = await http(id, path, { method: 'PUT', body: String(value) }, 6000);
        await r.arrayBuffer();
        if (r.status === 200) [type, out] = ['ok', value];
        // Refused before it could reach a log: certainly not applied.
        else if (r.status === 429 || r.status === 400) type = 'fail';
      } else {
        const [expected, next] = value as [string | null, string];
        const r = await http(
          id,
          `${path}?cas`,
          { method: 'POST', body: JSON.stringify({ expected, value: next }) },
          6000,
        );
        await r.arrayBuffer();
        if (r.status === 200) [type, out] = ['ok', true];
        else if (r.status === 409) [type, out] = ['ok', false];
        else if (r.status === 429 || r.status === 400) type = 'fail';
      }
    } catch {
      type = f === 'read' ? 'fail' : 'info'; // connection lost or timed out: unknown for a write
    }
    record({ type, process: proc, f, key, value: type === 'ok' ? out : null, time: now() });
    tally[type]++;
    return type;
  };

  const keys = Array.from({ length: o.keys }, (_, i) => `key${i}`);
  let clientsStop = false;
  const client = async (c: number) => {
    let proc = nextProcess++;
    const r = rng(o.seed * 1000 + c);
    for (let i = 0; !clientsStop; i++) {
      const targets = members.filter(up);
      if (targets.length === 0) {
        await sleep(100);
        continue;
      }
      const id = targets[Math.floor(r() * targets.length)];
      // A few hot keys per client make operations overlap on the same register.
      const key = keys[Math.floor(r() * r() * keys.length)];
      const roll = r();
      const f = roll < 0.45 ? 'read' : roll < 0.85 ? 'write' : 'cas';
      const value =
        f === 'write' ? `c${c}-${i}` : f === 'cas' ? [r() < 0.5 ? null : `c${c}-${i - 1}`, `c${c}-${i}x`] : null;
      const type = await operate(proc, id, f, key, value);
      if (type === 'info') proc = nextProcess++; // one op at a time per process: a new id after an unknown outcome
    }
  };

  // --- nemesis -----------------------------------------------------------------------------
  const healAll = () => {
    for (const m of proxies.values()) for (const p of m.values()) p.heal();
  };
  /** Slows (or with 0, 0 heals) node `id`'s disk from inside its process. Resolves with what
   *  became of it; never throws, since the process may have died a moment ago. */
  const diskFault = (id: string, ms: number, jitterMs: number) =>
    new Promise<string>((done) => {
      const child = procs.get(id);
      if (!child?.connected) return done('not sent: process gone');
      const finish = (outcome: string) => {
        clearTimeout(timer);
        if (faultAcks.get(child) === finish) faultAcks.delete(child);
        done(outcome);
      };
      const timer = setTimeout(() => finish('no answer'), 3000);
      faultAcks.set(child, finish);
      try {
        if (
          !child.send({ fault: 'disk', ms, jitterMs }, (err) => {
            if (err) finish(`not sent: ${err.message}`);
          })
        )
          finish('not sent');
      } catch (e) {
        finish(`not sent: ${(e as Error).message}`);
      }
    });
  const slowDisks = new Set<string>();
  /** Directed links (a dials b) for a latency fault: all of them, every link of one node, or a
   *  random set of node pairs (both directions each, so a request and its answer are both slow). */
  const pickLinks = (): { links: [string, string][]; what: string } => {
    const all: [string, string][] = members.flatMap((a) =>
      members.filter((b) => b !== a).map((b): [string, string] => [a, b]),
    );
    const scope = random();
    if (scope < 0.35) return { links: all, what: 'all links' };
    if (scope < 0.7) {
      const x = pick(members);
      return { links: all.filter(([a, b]) => a === x || b === x), what: `links of ${x}` };
    }
    const pairs = all.filter(([a, b]) => a < b);
    let chosen = pairs.filter(() => random() < 0.5);
    if (chosen.length === 0) chosen = [pick(pairs)];
    return {
      links: chosen.flatMap(([a, b]): [string, string][] => [
        [a, b],
        [b, a],
      ]),
      what: `links ${chosen.map(([a, b]) => `${a}-${b}`).join(',')}`,
    };
  };
  const cutLinks = (a: string, b: string, mode: 'reset' | 'blackhole') => {
    proxies.get(a)!.get(b)!.cut(mode);
    proxies.get(b)!.get(a)!.cut(mode);
  };
  const partition = (mode: 'reset' | 'blackhole') => {
    const nodes = [...members];
    const shuffled = [...nodes].sort(() => random() - 0.5);
    const kind =
      nodes.length >= 5 ? pick(['isolate', 'majority', 'bridge'] as const) : pick(['isolate', 'majority'] as const);
    if (kind === 'isolate') {
      const x = shuffled[0];
      for (const y of nodes) if (y !== x) cutLinks(x, y, mode);
      return `isolate ${x} (${mode})`;
    }
    if (kind === 'majority') {
      const minority = shuffled.slice(0, Math.floor((nodes.length - 1) / 2));
      for (const x of minority) for (const y of nodes) if (!minority.includes(y)) cutLinks(x, y, mode);
      return `minority ${minority.join(',')} cut from the majority (${mode})`;
    }
    // Bridge: two halves that only the bridge node connects.
    const bridge = shuffled[0];
    const half = Math.floor((nodes.length - 1) / 2);
    const left = shuffled.slice(1, 1 + half);
    const right = shuffled.slice(1 + half);
    for (const x of left) for (const y of right) cutLinks(x, y, mode);
    return `bridge ${bridge} between ${left.join(',')} and ${right.join(',')} (${mode})`;
  };
  /** kill -9 node `id`, restart it after `downMs` unless it left the cluster meanwhile, and wait
   *  (bounded) until it serves again or its process ends (a removed node refuses to start). */
  const killAndRestart = async (id: string, downMs: number) => {
    await kill(id, 'SIGKILL');
    await sleep(downMs);
    if (!members.includes(id)) return;
    spawnNode(id);
    await waitUntil(`${id} back`, async () => !members.includes(id) || !alive(id) || (await healthy(id)), 30_000).catch(
      () => undefined,
    );
    log(`nemesis: ${id} restarted`);
  };
  const nemesis = async (until: number) => {
    for (let n = 0; Date.now() < until && n < 10_000; n++) {
      await sleep(1500 + random() * 2500);
      if (Date.now() >= until) break;
      const f = pick(o.faults);
      try {
        switch (f) {
          case 'kill': {
            const id = pick(members.filter(up));
            if (!id) break;
            count('kill');
            log(`nemesis: kill -9 ${id}`);
            await killAndRestart(id, 1000 + random() * 2500);
            break;
          }
          case 'pause': {
            const id = pick(members.filter(up));
            if (!id) break;
            count('pause');
            const ms = 1500 + random() * 2000; // longer than the 1 s election timeout
            log(`nemesis: SIGSTOP ${id} for ${ms.toFixed(0)} ms`);
            paused.add(id);
            procs.get(id)!.kill('SIGSTOP');
            await sleep(ms);
            procs.get(id)!.kill('SIGCONT');
            paused.delete(id);
            break;
          }
          case 'partition': {
            count('partition');
            const what = partition(random() < 0.5 ? 'reset' : 'blackhole');
            log(`nemesis: partition: ${what}`);
            await sleep(2000 + random() * 3000);
            healAll();
            log('nemesis: healed');
            break;
          }
          case 'transfer': {
            const via = pick(members.filter(up));
            if (!via) break;
            count('transfer');
            const group = 1 + Math.floor(random() * o.groups);
            const to = pick(members);
            const r = await http(
              via,
              '/transfer',
              { method: 'POST', body: JSON.stringify({ group, to }) },
              10_000,
            ).catch(() => null);
            log(`nemesis: transfer group ${group} to ${to} via ${via}: ${r?.status ?? 'no answer'}`);
            break;
          }
          case 'drain': {
            const id = pick(members.filter(up));
            if (!id) break;
            count('drain');
            const r = await http(id, '/drain', { method: 'POST', body: '{}' }, 20_000).catch(() => null);
            log(`nemesis: drain ${id}: ${r?.status ?? 'no answer'}`);
            await sleep(1000 + random() * 2000);
            await http(id, '/undrain', { method: 'POST', body: '{}' }, 5000).catch(() => null);
            break;
          }
          case 'balancer': {
            const id = pick(members.filter(up));
            if (!id) break;
            count('balancer');
            const r = await http(id, '/balance', { method: 'POST', body: '{}' }, 20_000).catch(() => null);
            log(`nemesis: balancer round on ${id}: ${r?.status ?? 'no answer'}`);
            break;
          }
          case 'latency': {
            const { links, what } = pickLinks();
            // Mostly a slow WAN (20-150 ms); a quarter of the time longer than the 1-2 s randomized
            // election timeout, so heartbeats arrive too late and leaders change under the delay.
            const beyond = random() < 0.25;
            const ms = Math.round(beyond ? 1200 + random() * 1300 : 20 + random() * 130);
            const jitterMs = Math.round(random() * (beyond ? 500 : ms));
            const dur = 2000 + random() * 3000;
            count('latency');
            log(`nemesis: latency ${ms}+${jitterMs} ms on ${what} for ${dur.toFixed(0)} ms`);
            for (const [a, b] of links) proxies.get(a)!.get(b)!.delay(ms, jitterMs);
            await sleep(dur);
            for (const [a, b] of links) proxies.get(a)!.get(b)!.delay(0, 0);
            log('nemesis: latency removed');
            break;
          }
          case 'slowdisk': {
            const id = pick(members.filter(up));
            if (!id) break;
            // Mostly a saturated disk (20-250 ms a write); a quarter of the time a stalling one whose
            // writes (0.6-1.5 s, plus jitter) come near or past the 1-2 s election timeout.
            const stall = random() < 0.25;
            const ms = Math.round(stall ? 600 + random() * 900 : 20 + random() * 230);
            const jitterMs = Math.round(random() * (stall ? 500 : ms));
            const dur = 2000 + random() * 3000;
            count('slowdisk');
            slowDisks.add(id);
            try {
              log(
                `nemesis: slow disk on ${id}: ${ms}+${jitterMs} ms a write for ${dur.toFixed(0)} ms: ${await diskFault(id, ms, jitterMs)}`,
              );
              await sleep(dur);
            } finally {
              log(`nemesis: disk of ${id} healed: ${await diskFault(id, 0, 0)}`);
              slowDisks.delete(id);
            }
            break;
          }
        }
      } catch (e) {
        log(`nemesis: ${f} failed: ${(e as Error).message}`);
      }
    }
  };

  // --- membership ----------------------------------------------------------------------------
  // Its own stream, like the nemesis's: the join and decommission choices replay by seed.
  const memberRandom = rng(o.seed ^ 0x2545f491);
  const memberPick = <T>(xs: readonly T[]): T => xs[Math.floor(memberRandom() * xs.length)];
  let loadStart = 0;
  const sinceStart = () => Date.now() - loadStart;
  const membership: MembershipResult | null =
    joiner === null
      ? null
      : {
          joiner,
          joinedAtMs: null,
          joinAttempts: 0,
          joinFailures: [],
          decommissioned: null,
          decommissionStartMs: null,
          removedAtMs: null,
          decommission: 'not started',
          moves: {},
          failedMoves: 0,
        };
  type MoveCounters = { started: number; completed: number; failed: number; rolledBack: number };
  type ClusterView = {
    nodes: { id: string; state: string; replicas: number }[];
    mover: { runsHere: boolean; counters: Record<string, MoveCounters>; inFlight: unknown[]; lastErrors: unknown[] };
    plan: { moves: unknown[]; blocked: string[]; removals: unknown[] } | null;
    removed: boolean;
  };
  /** The last mover counters seen per node process (`n2#3`): a mover's counters start at zero
   *  with its process, so the moves made are the sum over processes. */
  const moverCounters = new Map<string, Record<string, MoveCounters>>();
  /** Every serving member's view of the cluster (and a note of its mover's counters). */
  const views = async (): Promise<{ id: string; view: ClusterView }[]> => {
    const got = await Promise.all(
      members.filter(up).map(async (id) => ({ id, r: await adminCall(id, 'cluster', undefined, 3000) })),
    );
    const out: { id: string; view: ClusterView }[] = [];
    for (const { id, r } of got) {
      if (!r.ok) continue;
      const view = r.value as ClusterView;
      moverCounters.set(`${id}#${spawns.get(id)}`, view.mover.counters);
      out.push({ id, view });
    }
    return out;
  };
  const tallyMoves = () => {
    if (membership === null) return;
    const moves: Record<string, number> = {};
    let failed = 0;
    for (const counters of moverCounters.values())
      for (const [kind, c] of Object.entries(counters)) {
        moves[kind] = (moves[kind] ?? 0) + c.completed;
        failed += c.failed;
      }
    membership.moves = moves;
    membership.failedMoves = failed;
  };
  /** The target's state as the members know it (states only go forward: the latest wins). */
  const stateOf = async (target: string) => {
    const order = ['active', 'decommissioning', 'removed'];
    let best = 'unknown';
    for (const { view } of await views()) {
      const s = view.nodes.find((n) => n.id === target)?.state;
      if (s !== undefined && order.indexOf(s) > order.indexOf(best)) best = s;
    }
    return best;
  };
  /** A removed node serves nothing: its process is stopped and faults and clients leave it. */
  const retire = async (id: string) => {
    const i = members.indexOf(id);
    if (i >= 0) members.splice(i, 1);
    await kill(id, 'SIGKILL');
  };
  /** The joiner asks a random serving member, which is killed on the first attempt while it admits
   *  the join (or just after); a failed join (refused NotReady while group 0 cannot be written, the member gone, no
   *  answer) is retried through another member. */
  const joinNode = async (m: MembershipResult, until: number) => {
    while (Date.now() < until) {
      const seed = memberPick(members.filter(up));
      if (seed === undefined) {
        await sleep(500);
        continue;
      }
      m.joinAttempts++;
      lastErr.delete(m.joiner);
      log(`membership: ${m.joiner} joins through ${seed} (attempt ${m.joinAttempts})`);
      spawnNode(m.joiner, seed);
      if (m.joinAttempts === 1) {
        await sleep(memberRandom() * 1500);
        if (up(seed)) {
          count('kill-join-seed');
          log(`membership: kill -9 ${seed}, which the join went to`);
          await killAndRestart(seed, 1000 + memberRandom() * 1500);
        }
      }
      const deadline = Math.min(until, Date.now() + 25_000);
      let served = false;
      while (Date.now() < deadline && alive(m.joiner) && !served) {
        served = await healthy(m.joiner);
        if (!served) await sleep(250);
      }
      if (served) {
        m.joinedAtMs = sinceStart();
        members.push(m.joiner);
        log(`membership: ${m.joiner} joined at ${m.joinedAtMs} ms (attempt ${m.joinAttempts})`);
        return;
      }
      const why = alive(m.joiner)
        ? 'not serving within 25 s'
        : `exited ${procs.get(m.joiner)?.exitCode ?? procs.get(m.joiner)?.signalCode}: ${(lastErr.get(m.joiner) ?? '').trim().split('\n').at(-1)?.slice(0, 200)}`;
      m.joinFailures.push(why);
      log(`membership: join of ${m.joiner} failed: ${why}`);
      await kill(m.joiner, 'SIGKILL');
      await sleep(1000);
    }
  };
  /** Decommission a random member (the joined one or an original) through any serving member,
   *  then follow it to 'removed'; a few seconds in, the mover's node (group 0's leader) is killed. */
  const decommission = async (m: MembershipResult, until: number) => {
    const target = memberPick(members);
    m.decommissioned = target;
    let marked = false;
    let lastError = '';
    while (Date.now() < until && !marked) {
      const via = memberPick(members.filter(up));
      if (via === undefined) {
        await sleep(500);
        continue;
      }
      const r = await adminCall(via, 'decommission', target, 15_000);
      marked = r.ok;
      if (!marked) {
        lastError = r.error ?? '';
        log(`membership: decommission of ${target} via ${via} failed: ${lastError}`);
        await sleep(1000);
      }
    }
    if (!marked) {
      m.decommission = `not marked: ${lastError}`;
      return;
    }
    m.decommissionStartMs = sinceStart();
    m.decommission = 'not finished during faults';
    log(`membership: ${target} decommissioning at ${m.decommissionStartMs} ms`);
    let moverKilled = false;
    while (Date.now() < until) {
      await sleep(1000);
      if ((await stateOf(target)) === 'removed') {
        m.removedAtMs = sinceStart();
        m.decommission = 'during faults';
        log(`membership: ${target} removed at ${m.removedAtMs} ms`);
        await retire(target);
        return;
      }
      if (!moverKilled && sinceStart() - m.decommissionStartMs > 3000) {
        const mover = (await views()).find((v) => v.view.mover.runsHere)?.id;
        if (mover !== undefined && up(mover)) {
          moverKilled = true;
          count('kill-mover');
          log(`membership: kill -9 ${mover}, which runs the mover`);
          await killAndRestart(mover, 1000 + memberRandom() * 1500);
        }
      }
    }
  };
  /** The membership events of a run, alongside the nemesis: a join early, a decommission once
   *  two fifths of the run have passed (and 8 s after the join at the earliest). */
  const membershipEvents = async (until: number) => {
    if (membership === null) return;
    await sleep(2000 + memberRandom() * 2000);
    await joinNode(membership, until);
    if (membership.joinedAtMs === null) {
      membership.decommission = 'not started: the join did not happen';
      return;
    }
    // Not before the mover has had a few seconds to give the joined node replicas.
    const decommissionAt = Math.max(loadStart + o.time * 400, loadStart + membership.joinedAtMs + 8000);
    while (Date.now() < decommissionAt) {
      await views();
      await sleep(1000);
    }
    await decommission(membership, until);
  };

  let result: NemesisResult | null = null;
  try {
    for (const id of ids) spawnNode(id);
    await waitUntil('nodes up', async () => (await Promise.all(ids.map(healthy))).every(Boolean), 60_000);
    await waitUntil(
      'groups elected',
      async () => {
        const st = await Promise.all(
          ids.map(async (id) => (await (await http(id, '/status')).json()) as { leaders: number }),
        );
        return st.reduce((a, s) => a + s.leaders, 0) >= o.groups;
      },
      120_000,
    );
    log(
      `nemesis: ${o.nodes} nodes, ${o.groups} groups up; ${o.clients} clients on ${o.keys} keys for ${o.time} s; faults ${o.faults.join(',')}; seed ${o.seed}`,
    );
    loadStart = Date.now();
    const until = loadStart + o.time * 1000;
    const clients = Array.from({ length: o.clients }, (_, c) => client(c));
    const events = membershipEvents(until);
    await nemesis(until);
    await events;
    clientsStop = true;
    await Promise.all(clients);

    // Heal, resume, restart whatever is down, then read every key linearizably.
    healAll();
    for (const id of paused) procs.get(id)?.kill('SIGCONT');
    paused.clear();
    for (const id of slowDisks) await diskFault(id, 0, 0);
    slowDisks.clear();
    if (joiner !== null && !members.includes(joiner)) await kill(joiner, 'SIGKILL');
    for (const id of members) if (!alive(id)) spawnNode(id);
    // A node still decommissioning may be removed any moment, and a removed node serves nothing.
    const leaving =
      membership?.decommissionStartMs != null && membership.removedAtMs === null ? membership.decommissioned : null;
    const allHealthy = async () => {
      const unhealthy: string[] = [];
      for (const id of members) if (id !== leaving && !(await healthy(id))) unhealthy.push(id);
      return unhealthy;
    };
    await waitUntil('all nodes healthy after healing', async () => (await allHealthy()).length === 0, 60_000).catch(
      async (e: Error) => {
        // Why, per node: its process, what it last wrote on stderr, and what /health answers.
        const why: string[] = [];
        for (const id of await allHealthy()) {
          const p = procs.get(id);
          let health: string;
          try {
            const r = await http(id, '/health', {}, 2000);
            health = `${r.status} ${(await r.text()).slice(0, 400)}`;
          } catch (err) {
            health = `no answer: ${(err as Error).message}`;
          }
          why.push(
            `${id} (alive ${alive(id)}, exit ${p?.exitCode ?? p?.signalCode ?? '-'}; /health ${health}; stderr ${JSON.stringify((lastErr.get(id) ?? '').slice(-300))})`,
          );
        }
        throw new Error(`${e.message}: not healthy: ${why.join('; ')}`);
      },
    );
    // A decommission the faults kept from finishing must finish now.
    if (membership !== null && leaving !== null) {
      const target = leaving;
      // Long enough for a learner left by a killed mover to be removed (moveTimeoutMs above) and
      // the last replicas, group 0's last, to move.
      const end = Date.now() + 20_000;
      while (Date.now() < end && (await stateOf(target)) !== 'removed') await sleep(1000);
      if ((await stateOf(target)) === 'removed') {
        membership.removedAtMs = sinceStart();
        membership.decommission = 'after healing';
        await retire(target);
      } else {
        membership.decommission = `not finished 20 s after healing: ${await stateOf(target)}`;
        await waitUntil(`${target} healthy after healing`, () => healthy(target), 30_000);
        for (const { id, view } of await views())
          log(
            `membership: ${id} sees ${JSON.stringify(view.nodes.map((n) => [n.id, n.state, n.replicas]))}` +
              (view.mover.runsHere
                ? `, runs the mover: ${JSON.stringify(view.mover.inFlight)} ${JSON.stringify(view.plan)}`
                : ''),
          );
      }
      log(`membership: decommission of ${target}: ${membership.decommission}`);
    }
    await views();
    tallyMoves();
    let finalReads = 0;
    const finalProc = nextProcess++;
    for (const key of keys) {
      for (let attempt = 0; attempt < 10; attempt++) {
        if ((await operate(finalProc, pick(members), 'read', key, null)) === 'ok') {
          finalReads++;
          break;
        }
        await sleep(300);
      }
    }
    // One leader per group, agreed by every node (retried while elections settle); group 0 too
    // once a join created it.
    const firstGroup = membership?.joinedAtMs != null ? 0 : 1;
    let problems: string[] = [];
    const end = Date.now() + 30_000;
    do {
      problems = [];
      const per = await Promise.all(
        members.map(async (id) => ({
          id,
          groups: (
            (await (await http(id, '/status?groups', {}, 10_000)).json()) as {
              perGroup: { group: number; role: string; term: number }[];
            }
          ).perGroup,
        })),
      );
      const leaders = new Map<number, { id: string; term: number }[]>();
      for (const n of per)
        for (const g of n.groups)
          if (g.role === 'leader') leaders.set(g.group, [...(leaders.get(g.group) ?? []), { id: n.id, term: g.term }]);
      for (let g = firstGroup; g <= o.groups; g++) {
        const l = leaders.get(g) ?? [];
        if (l.length !== 1) problems.push(`group ${g}: ${l.length} leaders ${JSON.stringify(l)}`);
      }
      if (problems.length) await sleep(500);
    } while (problems.length && Date.now() < end);
    await new Promise<void>((r) => history.end(r));

    const check = spawnSync(process.execPath, ['--import', 'tsx', CHECK, historyFile, '--timeout-ms', '60000'], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    const verdict =
      check.status === 0 ? 'ok' : check.status === 1 ? 'violation' : check.status === 3 ? 'unknown' : 'error';
    result = {
      seed: o.seed,
      ops,
      ...tally,
      faults,
      verdict,
      checker: (check.stdout + check.stderr).trim().slice(0, 2000),
      leadersOk: problems.length === 0,
      leaderProblems: problems.slice(0, 10),
      finalReads,
      historyFile,
      membership,
    };
    writeFileSync(join(o.out, `summary-seed${o.seed}.json`), JSON.stringify(result, null, 2));
    if (membership !== null) {
      const m = membership;
      log(
        `nemesis: membership: ${m.joiner} joined at ${m.joinedAtMs ?? 'never'} ms after ${m.joinAttempts} attempt(s); ` +
          `${m.decommissioned ?? 'no node'} decommissioned from ${m.decommissionStartMs ?? '-'} ms, removed at ` +
          `${m.removedAtMs ?? '-'} ms (${m.decommission}); moves ${JSON.stringify(m.moves)}, ${m.failedMoves} failed`,
      );
    }
    log(
      `nemesis: seed ${o.seed}: ${ops} ops (${tally.ok} ok, ${tally.fail} fail, ${tally.info} info), faults ${JSON.stringify(faults)}, ` +
        `final reads ${finalReads}/${keys.length}, one leader per group: ${problems.length === 0}, linearizable: ${verdict}`,
    );
    return result;
  } finally {
    if (!history.closed) history.end();
    for (const p of procs.values()) {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGCONT');
        p.kill('SIGKILL');
      }
    }
    await Promise.all([...proxies.values()].flatMap((m) => [...m.values()].map((p) => p.close())));
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string' },
      groups: { type: 'string' },
      time: { type: 'string' },
      faults: { type: 'string' },
      seed: { type: 'string' },
      keys: { type: 'string' },
      clients: { type: 'string' },
      out: { type: 'string' },
      runs: { type: 'string' },
      membership: { type: 'boolean' },
    },
  });
  const faults = (values.faults ?? FAULTS.join(',')).split(',').filter(Boolean) as Fault[];
  const bad = faults.filter((f) => !FAULTS.includes(f));
  const nodes = Number(values.nodes ?? 3);
  if (bad.length || (nodes !== 3 && nodes !== 5)) {
    process.stderr.write(
      `usage: npm run nemesis -- [--nodes 3|5] [--groups N] [--time S] [--faults ${FAULTS.join(',')}] [--seed X] [--runs R] [--keys K] [--clients C] [--out DIR] [--membership]\n`,
    );
    return 2;
  }
  const seed0 = Number(values.seed ?? Date.now() % 100_000);
  const runs = Number(values.runs ?? 1);
  let failed = 0;
  for (let r = 0; r < runs; r++) {
    const res = await runNemesis({
      nodes,
      groups: Number(values.groups ?? 200),
      time: Number(values.time ?? 60),
      faults,
      seed: seed0 + r,
      keys: Number(values.keys ?? 200),
      clients: Number(values.clients ?? 12),
      out: values.out ?? 'nemesis-results',
      membership: values.membership === true,
    });
    const membershipOk = res.membership === null || res.membership.removedAtMs !== null;
    if (res.verdict !== 'ok' || !res.leadersOk || res.finalReads !== Number(values.keys ?? 200) || !membershipOk) {
      failed++;
      process.stdout.write(
        `FAILED seed ${res.seed} (replay: npm run nemesis -- --nodes ${nodes} --faults ${faults.join(',')}${values.membership ? ' --membership' : ''} --seed ${res.seed}); history ${res.historyFile}\n${res.checker}\n`,
      );
    }
  }
  return failed ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve('test/nemesis/run.ts')) process.exitCode = await main();
