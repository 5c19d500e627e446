// The nemesis harness: real `flotilla start` processes on 127.0.0.1 with a test-controlled TCP
// proxy on every link between nodes, concurrent clients doing read / write / cas on a few hundred
// keys through the HTTP gateway, and a nemesis injecting faults: kill -9 and restart, SIGSTOP /
// SIGCONT pauses longer than the election timeout, partitions (one node isolated, majority /
// minority, bridge), slow links (latency and jitter, at times beyond the election timeout), a
// slow disk on one node, leader transfers, drains, balancer rounds. Every client event goes to a
// history (JSON Lines, docs/history-format.md). At the end: heal, restart every node, read
// every key linearizably, check one leader per group, and judge the history with the
// linearizability checker. Every loop is bounded in count and time; every process is cleaned up.
//
//   npm run nemesis -- --nodes 3 --groups 200 --time 60 --faults kill,pause,partition,latency,slowdisk,transfer,drain,balancer --seed 7
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  log?: (line: string) => void;
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
  const ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  const root = mkdtempSync(join(tmpdir(), 'flotilla-nemesis-'));
  mkdirSync(o.out, { recursive: true });
  const historyFile = join(o.out, `history-seed${o.seed}.jsonl`);
  const history = createWriteStream(historyFile);
  const ports = await freePorts(2 * o.nodes);
  const listen = new Map(ids.map((id, i) => [id, ports[i]]));
  const admin = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[o.nodes + i]}`]));
  // proxies.get(a).get(b): the hop node a dials to reach node b.
  const proxies = new Map<string, Map<string, TcpProxy>>();
  for (const a of ids) {
    const m = new Map<string, TcpProxy>();
    for (const b of ids) {
      if (a === b) continue;
      const p = new TcpProxy({ host: '127.0.0.1', port: listen.get(b)! });
      await p.listen();
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

  const spawnNode = (id: string) => {
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
      '--admin',
      admin.get(id)!,
      '--groups',
      String(o.groups),
      '--workers',
      '1',
      '--log-level',
      'warn',
      '--request-timeout-ms',
      '4000',
      ...(balancerOn ? [] : ['--no-balancer']),
    ];
    for (const p of ids) if (p !== id) args.push('--peer', `${p}=127.0.0.1:${proxies.get(id)!.get(p)!.port}`);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    child.stderr?.on('data', () => undefined);
    child.on(
      'message',
      (
        m:
          | { id: number; type: 'ok' | 'fail' | 'info'; value: unknown }
          | { fault: string; ok: boolean; error: string | null },
      ) => {
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
      for (const [opId, w] of embedded) {
        if (w.node !== id) continue;
        embedded.delete(opId);
        w.done('info', null);
      }
    });
    procs.set(id, child);
    return child;
  };
  const up = (id: string) => procs.get(id)?.exitCode === null && !paused.has(id);
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
      const targets = ids.filter(up);
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
    const all: [string, string][] = ids.flatMap((a) => ids.filter((b) => b !== a).map((b): [string, string] => [a, b]));
    const scope = random();
    if (scope < 0.35) return { links: all, what: 'all links' };
    if (scope < 0.7) {
      const x = pick(ids);
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
    const shuffled = [...ids].sort(() => random() - 0.5);
    const kind =
      o.nodes >= 5 ? pick(['isolate', 'majority', 'bridge'] as const) : pick(['isolate', 'majority'] as const);
    if (kind === 'isolate') {
      const x = shuffled[0];
      for (const y of ids) if (y !== x) cutLinks(x, y, mode);
      return `isolate ${x} (${mode})`;
    }
    if (kind === 'majority') {
      const minority = shuffled.slice(0, Math.floor((o.nodes - 1) / 2));
      for (const x of minority) for (const y of ids) if (!minority.includes(y)) cutLinks(x, y, mode);
      return `minority ${minority.join(',')} cut from the majority (${mode})`;
    }
    // Bridge: two halves that only the bridge node connects.
    const bridge = shuffled[0];
    const half = Math.floor((o.nodes - 1) / 2);
    const left = shuffled.slice(1, 1 + half);
    const right = shuffled.slice(1 + half);
    for (const x of left) for (const y of right) cutLinks(x, y, mode);
    return `bridge ${bridge} between ${left.join(',')} and ${right.join(',')} (${mode})`;
  };
  const nemesis = async (until: number) => {
    for (let n = 0; Date.now() < until && n < 10_000; n++) {
      await sleep(1500 + random() * 2500);
      if (Date.now() >= until) break;
      const f = pick(o.faults);
      try {
        switch (f) {
          case 'kill': {
            const id = pick(ids.filter(up));
            if (!id) break;
            count('kill');
            log(`nemesis: kill -9 ${id}`);
            await kill(id, 'SIGKILL');
            await sleep(1000 + random() * 2500);
            spawnNode(id);
            await waitUntil(`${id} back`, () => healthy(id), 30_000).catch(() => undefined);
            log(`nemesis: ${id} restarted`);
            break;
          }
          case 'pause': {
            const id = pick(ids.filter(up));
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
            const via = pick(ids.filter(up));
            if (!via) break;
            count('transfer');
            const group = 1 + Math.floor(random() * o.groups);
            const to = pick(ids);
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
            const id = pick(ids.filter(up));
            if (!id) break;
            count('drain');
            const r = await http(id, '/drain', { method: 'POST', body: '{}' }, 20_000).catch(() => null);
            log(`nemesis: drain ${id}: ${r?.status ?? 'no answer'}`);
            await sleep(1000 + random() * 2000);
            await http(id, '/undrain', { method: 'POST', body: '{}' }, 5000).catch(() => null);
            break;
          }
          case 'balancer': {
            const id = pick(ids.filter(up));
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
            const id = pick(ids.filter(up));
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
    const until = Date.now() + o.time * 1000;
    const clients = Array.from({ length: o.clients }, (_, c) => client(c));
    await nemesis(until);
    clientsStop = true;
    await Promise.all(clients);

    // Heal, resume, restart whatever is down, then read every key linearizably.
    healAll();
    for (const id of paused) procs.get(id)?.kill('SIGCONT');
    paused.clear();
    for (const id of slowDisks) await diskFault(id, 0, 0);
    slowDisks.clear();
    for (const id of ids) if (procs.get(id)?.exitCode !== null) spawnNode(id);
    await waitUntil(
      'all nodes healthy after healing',
      async () => (await Promise.all(ids.map(healthy))).every(Boolean),
      60_000,
    );
    let finalReads = 0;
    const finalProc = nextProcess++;
    for (const key of keys) {
      for (let attempt = 0; attempt < 10; attempt++) {
        if ((await operate(finalProc, pick(ids), 'read', key, null)) === 'ok') {
          finalReads++;
          break;
        }
        await sleep(300);
      }
    }
    // One leader per group, agreed by every node (retried while elections settle).
    let problems: string[] = [];
    const end = Date.now() + 30_000;
    do {
      problems = [];
      const per = await Promise.all(
        ids.map(async (id) => ({
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
      for (let g = 1; g <= o.groups; g++) {
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
    };
    writeFileSync(join(o.out, `summary-seed${o.seed}.json`), JSON.stringify(result, null, 2));
    log(
      `nemesis: seed ${o.seed}: ${ops} ops (${tally.ok} ok, ${tally.fail} fail, ${tally.info} info), faults ${JSON.stringify(faults)}, ` +
        `final reads ${finalReads}/${keys.length}, one leader per group: ${problems.length === 0}, linearizable: ${verdict}`,
    );
    return result;
  } finally {
    if (!history.closed) history.end();
    for (const p of procs.values()) {
      if (p.exitCode === null) {
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
    },
  });
  const faults = (values.faults ?? FAULTS.join(',')).split(',').filter(Boolean) as Fault[];
  const bad = faults.filter((f) => !FAULTS.includes(f));
  const nodes = Number(values.nodes ?? 3);
  if (bad.length || (nodes !== 3 && nodes !== 5)) {
    process.stderr.write(
      `usage: npm run nemesis -- [--nodes 3|5] [--groups N] [--time S] [--faults ${FAULTS.join(',')}] [--seed X] [--runs R] [--keys K] [--clients C] [--out DIR]\n`,
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
    });
    if (res.verdict !== 'ok' || !res.leadersOk || res.finalReads !== Number(values.keys ?? 200)) {
      failed++;
      process.stdout.write(
        `FAILED seed ${res.seed} (replay: npm run nemesis -- --nodes ${nodes} --faults ${faults.join(',')} --seed ${res.seed}); history ${res.historyFile}\n${res.checker}\n`,
      );
    }
  }
  return failed ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve('test/nemesis/run.ts')) process.exitCode = await main();
