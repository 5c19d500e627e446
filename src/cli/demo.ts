// `flotilla demo`: a local 3-node cluster (separate processes on 127.0.0.1, zones a/b/c, a temporary
// data dir) under a steady write load through the HTTP gateway, with a live view refreshed every
// second, walking through a planned-maintenance story: drain n1, restart
// it, undrain it and let the balancer spread leaders back; then hot keys on one node moved by the
// load balancer; then a locality preference. Ends with a summary; Ctrl-C stops everything cleanly.
// Exit 0 when no write failed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { groupOfKey } from '../runtime/placement.js';
import { NODE_FLAGS } from '../runtime/heap.js';
import { isObject } from './json.js';
import { freePorts } from '../bench/ports.js';

export const DEMO_HELP = `Usage: flotilla demo [--groups N] [--duration S] [--no-tui]

  --groups N     Raft groups in the cluster (default 1000)
  --duration S   approximate length of the story in seconds (default 90; phases scale with it)
  --no-tui       plain log lines instead of the live view (for scripts and CI)
  --clients N    concurrent HTTP writers (default 32)
`;

const IDS: readonly string[] = ['n1', 'n2', 'n3'];
const ZONES: Record<string, string> = { n1: 'a', n2: 'b', n3: 'c' };

interface NodeView {
  up: boolean;
  leaders: number;
  quiesced: number;
  groups: number;
  draining: boolean;
  transfers: number;
  moves: Record<string, number>;
}

/** Closed-loop HTTP writers with per-second rate and latency tails. */
class Load {
  writes = 0;
  storeErrors = 0;
  /** Requests refused at the connection (a node being restarted): retried elsewhere, not failures. */
  connErrors = 0;
  private window: number[] = [];
  private all: number[] = [];
  private stopped = false;
  hotKeys: string[] = [];
  private running: Promise<void>[] = [];

  constructor(
    private readonly targets: () => string[],
    private readonly clients: number,
  ) {}

  start(): void {
    for (let c = 0; c < this.clients; c++) this.running.push(this.client(c));
  }

  private async client(c: number): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const t = this.targets();
      if (t.length === 0) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const hot = this.hotKeys.length > 0 && c % 2 === 0;
      const key = hot ? this.hotKeys[i % this.hotKeys.length] : `k${c}-${i % 5000}`;
      const t0 = performance.now();
      try {
        const res = await fetch(`http://${t[(c + i) % t.length]}/kv/${key}`, {
          method: 'PUT',
          body: `v${i}`,
          signal: AbortSignal.timeout(15_000),
        });
        await res.arrayBuffer();
        if (res.status === 200) {
          this.writes++;
          const ms = performance.now() - t0;
          this.window.push(ms);
          if (this.all.length < 2_000_000) this.all.push(ms);
        } else {
          this.storeErrors++;
        }
      } catch {
        this.connErrors++;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Writes and p99 since the last call. */
  tick(): { n: number; p99: number } {
    const w = this.window.sort((a, b) => a - b);
    this.window = [];
    return { n: w.length, p99: w.length ? w[Math.min(w.length - 1, Math.floor(0.99 * w.length))] : 0 };
  }

  percentile(p: number): number {
    const s = [...this.all].sort((a, b) => a - b);
    return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled(this.running);
  }
}

async function json(
  url: string,
  method = 'GET',
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
  });
  const text = await res.text();
  try {
    const parsed: unknown = JSON.parse(text);
    return { status: res.status, body: isObject(parsed) ? parsed : { message: text } };
  } catch {
    return { status: res.status, body: { message: text } };
  }
}

export async function runDemo(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        groups: { type: 'string' },
        duration: { type: 'string' },
        'no-tui': { type: 'boolean' },
        clients: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`flotilla demo: ${(e as Error).message}\n\n${DEMO_HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  const groups = Number(values.groups ?? 1000);
  const duration = Number(values.duration ?? 90);
  const clients = Number(values.clients ?? 32);
  if (!Number.isInteger(groups) || groups < 10 || groups > 100_000)
    return usage('--groups must be an integer in 10..100000');
  if (!(duration >= 20 && duration <= 3600)) return usage('--duration must be 20..3600 seconds');
  if (!Number.isInteger(clients) || clients < 1 || clients > 1024) return usage('--clients must be 1..1024');
  const tui = !values['no-tui'] && process.stdout.isTTY === true;
  const scale = duration / 90;

  // Children run the same build as this process: the compiled one, or the sources under tsx.
  const self = fileURLToPath(import.meta.url);
  const main = self.replace(/demo\.(ts|js)$/, (_m, ext: string) => `main.${ext}`);
  const execArgv = self.endsWith('.ts') ? ['--import', 'tsx'] : [];

  const root = mkdtempSync(join(tmpdir(), 'flotilla-demo-'));
  const ports = await freePorts(6);
  const raft = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const admin = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[3 + i]}`]));
  const procs = new Map<string, ChildProcess>();
  const up = new Set<string>();
  const view = new Map<string, NodeView>();
  const events: string[] = [];
  let step = 'starting 3 nodes';
  let stopping = false;
  const t0 = performance.now();
  const elapsed = () => ((performance.now() - t0) / 1000).toFixed(0).padStart(3);
  const say = (line: string) => {
    events.push(`[${elapsed()}s] ${line}`);
    if (events.length > 8) events.shift();
    if (!tui) process.stdout.write(`[${elapsed()}s] ${line}\n`);
  };

  const spawnNode = (id: string, extra: string[] = []) => {
    const cfg = {
      id,
      dataDir: join(root, id),
      listen: raft.get(id),
      admin: admin.get(id),
      groups,
      workers: 1,
      labels: { zone: ZONES[id] },
      logLevel: 'warn',
      peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, raft.get(p)])),
      balancer: { intervalMs: 1000, warmupMs: 3000, cooldownMs: 10_000, maxConcurrent: 64 },
    };
    const file = join(root, `${id}.json`);
    writeFileSync(file, JSON.stringify(cfg));
    const p = spawn(process.execPath, [...NODE_FLAGS, ...execArgv, main, 'start', '--config', file, ...extra], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    p.stderr?.on('data', (b: Buffer) => {
      for (const line of b.toString().split('\n'))
        if (line.trim() && !tui) process.stderr.write(`${id}: ${line.slice(0, 300)}\n`);
    });
    procs.set(id, p);
    return p;
  };
  const load = new Load(() => [...up].map((id) => admin.get(id)!), clients);
  const cleanup = () => {
    for (const p of procs.values()) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  };
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    say('Ctrl-C: stopping');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const poll = async () => {
    await Promise.all(
      IDS.map(async (id) => {
        if (!up.has(id)) {
          view.set(id, {
            ...(view.get(id) ?? { leaders: 0, quiesced: 0, groups: 0, draining: false, transfers: 0, moves: {} }),
            up: false,
          });
          return;
        }
        try {
          const st = (await json(`http://${admin.get(id)}/status`)).body;
          const transfers = Object.values((st.transfers as Record<string, number>) ?? {}).reduce((a, b) => a + b, 0);
          view.set(id, {
            up: true,
            leaders: Number(st.leaders),
            quiesced: Number(st.quiesced),
            groups: Number(st.groups),
            draining: st.draining === true,
            transfers,
            moves: (st.balancer as { movesByKind?: Record<string, number> })?.movesByKind ?? {},
          });
        } catch {
          // between polls a restarting node answers nothing
        }
      }),
    );
  };
  let rate = { n: 0, p99: 0 };
  const render = () => {
    if (!tui) return;
    const width = 40;
    const lines = [
      `\x1b[1mflotilla demo\x1b[0m — 3 nodes, ${groups} groups, ${clients} HTTP writers   (Ctrl-C stops)`,
      '',
      ...IDS.map((id) => {
        const v = view.get(id);
        const bar = v?.up ? '█'.repeat(Math.round((width * v.leaders) / groups)) : '';
        const state = !v?.up ? 'DOWN' : v.draining ? 'DRAINING' : '';
        return `${id} zone ${ZONES[id]}  ${bar.padEnd(width)} ${String(v?.leaders ?? 0).padStart(5)} leaders  quiesced ${String(v?.quiesced ?? 0).padStart(5)}  ${state}`;
      }),
      '',
      `writes/s ${String(rate.n).padStart(6)}   p99 ${rate.p99.toFixed(0).padStart(5)} ms   failed writes ${load.storeErrors}   total ${load.writes}`,
      `transfers ${IDS.reduce((a, id) => a + (view.get(id)?.transfers ?? 0), 0)}   balancer moves ${JSON.stringify(sumMoves(view))}`,
      '',
      `\x1b[1mnow:\x1b[0m ${step}`,
      '',
      ...events,
    ];
    process.stdout.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
  };
  const ticker = setInterval(() => {
    rate = load.tick();
    void poll().then(() => {
      render();
      if (!tui) {
        const leaders = IDS.map((id) => `${id}=${view.get(id)?.up ? view.get(id)!.leaders : 'down'}`).join(' ');
        process.stdout.write(
          `[${elapsed()}s] writes/s ${rate.n} p99 ${rate.p99.toFixed(0)}ms failed ${load.storeErrors} leaders ${leaders}\n`,
        );
      }
    });
  }, 1000);

  const sleep = async (s: number) => {
    const end = performance.now() + s * 1000;
    while (!stopping && performance.now() < end) await new Promise((r) => setTimeout(r, 100));
  };
  const waitFor = async (what: string, cond: () => Promise<boolean> | boolean, s: number) => {
    const end = performance.now() + s * 1000;
    while (!stopping && performance.now() < end) {
      if (await cond()) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    if (!stopping) say(`(${what}: not within ${s.toFixed(0)} s)`);
    return false;
  };
  const healthy = async (id: string) => {
    try {
      return (await fetch(`http://${admin.get(id)}/health`, { signal: AbortSignal.timeout(2000) })).status === 200;
    } catch {
      return false;
    }
  };
  const leadersOf = async (id: string): Promise<{ group: number; role: string }[]> =>
    ((await json(`http://${admin.get(id)}/status?groups`)).body.perGroup as { group: number; role: string }[]) ?? [];
  const story: Record<string, string> = {};
  const mark = (k: string, v: string) => {
    story[k] = v;
    say(v);
  };

  let code = 0;
  try {
    for (const id of IDS) spawnNode(id);
    await waitFor('nodes up', async () => (await Promise.all(IDS.map(healthy))).every(Boolean), 60);
    for (const id of IDS) up.add(id);
    step = `electing ${groups} groups`;
    const tElect = performance.now();
    await waitFor(
      'all groups elected',
      async () => {
        await poll();
        return IDS.reduce((a, id) => a + (view.get(id)?.leaders ?? 0), 0) >= groups;
      },
      120,
    );
    mark('elected', `all ${groups} groups elected in ${((performance.now() - tElect) / 1000).toFixed(1)} s`);
    load.start();
    step = 'steady write load';
    await sleep(8 * scale);

    // 1. Planned maintenance of n1: drain, restart, undrain (transfer -> verify -> drain).
    step = 'draining n1: every leadership moves to a caught-up replica, each transfer verified';
    const errorsBefore = load.storeErrors;
    const dr = (await json(`http://${admin.get('n1')}/drain`, 'POST', {})).body;
    mark(
      'drain',
      `drained n1: moved ${dr.moved} leaders in ${dr.ms} ms, ${(dr.failed as unknown[] | undefined)?.length ?? '?'} failed; failed writes meanwhile: ${load.storeErrors - errorsBefore}`,
    );
    await sleep(3 * scale);
    if (stopping) return 130;
    step = 'restarting n1 (SIGTERM, then start again, still draining)';
    up.delete('n1');
    const p1 = procs.get('n1')!;
    const exited = new Promise((r) => p1.once('exit', r));
    p1.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    spawnNode('n1', ['--draining']);
    await waitFor('n1 back', () => healthy('n1'), 60);
    up.add('n1');
    mark('restart', `n1 restarted; writes kept flowing through n2 and n3 (failed writes so far: ${load.storeErrors})`);
    await sleep(2 * scale);
    step = 'undrain n1: the balancer brings leaders back (after its warm-up)';
    await json(`http://${admin.get('n1')}/undrain`, 'POST', {});
    const tBack = performance.now();
    const fair = groups / 3;
    await waitFor(
      'leaders spread back',
      async () => (view.get('n1')?.leaders ?? 0) >= 0.9 * fair,
      Math.max(20, 40 * scale),
    );
    mark(
      'undrain',
      `balancer: n1 back to ${view.get('n1')?.leaders} leaders (fair share ${fair.toFixed(0)}) in ${((performance.now() - tBack) / 1000).toFixed(1)} s`,
    );
    await sleep(3 * scale);
    if (stopping) return 130;

    // 2. Hot keys on n2: the load policy moves the hottest leaders off it.
    step = 'hot keys: half the writers hit 8 groups led by n2; balancer policy -> load';
    const n2led = (await leadersOf('n2'))
      .filter((g) => g.role === 'leader')
      .map((g) => g.group)
      .slice(0, 8);
    const hot: string[] = [];
    const enc = new TextEncoder();
    for (let i = 0; hot.length < 64 && i < 1_000_000; i++)
      if (n2led.includes(groupOfKey(enc.encode(`hot${i}`), groups))) hot.push(`hot${i}`);
    load.hotKeys = hot;
    await Promise.all(
      IDS.map((id) =>
        json(`http://${admin.get(id)}/balance/config`, 'POST', { policy: 'load', minLoad: 20, cooldownMs: 10_000 }),
      ),
    );
    const hotOnN2 = async () =>
      (await leadersOf('n2')).filter((g) => g.role === 'leader' && n2led.includes(g.group)).length;
    await waitFor('hot groups spread', async () => (await hotOnN2()) <= 4, Math.max(20, 30 * scale));
    mark(
      'hot',
      `load balancer: n2 now leads ${await hotOnN2()} of the 8 hot groups; load moves ${sumMoves(view).load ?? 0}`,
    );
    load.hotKeys = [];
    await sleep(3 * scale);
    if (stopping) return 130;

    // 3. A locality preference: the first 10% of groups want their leader in zone c.
    const prefGroups = Math.max(1, Math.floor(groups / 10));
    step = `locality: groups 1..${prefGroups} prefer leaders in zone c`;
    await Promise.all(
      IDS.map((id) =>
        json(`http://${admin.get(id)}/balance/config`, 'POST', {
          policy: 'count',
          preferences: [{ groups: { from: 1, to: prefGroups }, leaders: [{ zone: 'c' }] }],
        }),
      ),
    );
    const inZoneC = async () =>
      (await leadersOf('n3')).filter((g) => g.role === 'leader' && g.group <= prefGroups).length;
    await waitFor('preference met', async () => (await inZoneC()) >= prefGroups, Math.max(20, 30 * scale));
    mark('locality', `locality: ${await inZoneC()} of ${prefGroups} preferred groups led in zone c`);
    await sleep(3 * scale);
  } finally {
    clearInterval(ticker);
    await load.stop();
    await poll().catch(() => undefined);
    const summary = [
      '',
      `summary: ${load.writes} writes acknowledged, ${load.storeErrors} failed, p50 ${load.percentile(0.5).toFixed(1)} ms, p99 ${load.percentile(0.99).toFixed(1)} ms`,
      `  transfers ${IDS.reduce((a, id) => a + (view.get(id)?.transfers ?? 0), 0)}, balancer moves ${JSON.stringify(sumMoves(view))}`,
      ...Object.values(story).map((s) => `  ${s}`),
      '',
    ];
    if (tui) render();
    process.stdout.write(summary.join('\n'));
    await Promise.all(
      [...procs.values()].map((p) => {
        if (p.exitCode !== null) return Promise.resolve();
        const done = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        return Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      }),
    );
    cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    code = stopping ? 130 : load.storeErrors === 0 ? 0 : 1;
  }
  return code;
}

function sumMoves(view: Map<string, NodeView>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of view.values()) for (const [k, n] of Object.entries(v.moves)) if (n) out[k] = (out[k] ?? 0) + n;
  return out;
}

function usage(msg: string): number {
  process.stderr.write(`flotilla demo: ${msg}\n\n${DEMO_HELP}`);
  return 2;
}
