// Leadership benchmarks (3 node processes on 127.0.0.1, fsync on): the balancer from full skew,
// draining every leader off a node under write load, and kill -9 of a leader node under write
// load. Full skew is made by starting n2 and n3 draining, so that n1 wins every election.
import type { ChildProcess } from 'node:child_process';
import { pct, round, waitElected, withCluster, type Next } from './cluster.js';

const ask = (kids: Map<string, ChildProcess>, next: Next, cmd: Record<string, unknown>, reply: string) =>
  Promise.all([...kids.values()].map((c) => {
    c.send(cmd);
    return next(c, reply);
  }));

async function waitAllOn(kids: Map<string, ChildProcess>, next: Next, id: string, groups: number, limitMs: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const c = kids.get(id)!;
    c.send({ cmd: 'status' });
    const st = await next(c, 'status');
    if ((st.leaders as number) >= groups) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > limitMs) throw new Error(`${id} leads ${st.leaders} of ${groups} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export interface BalancerBenchResult {
  groups: number;
  config: Record<string, unknown>;
  skewSeconds: number;
  /** Seconds from enabling the balancer until every node is within 5% of the ideal count. */
  within5PctSeconds: number | null;
  leadersAtWithin5Pct: number[];
  movesToWithin5Pct: number;
  minMovesWithin5Pct: number;
  minMovesExact: number;
  ratioToMinimum: number | null;
  quietSeconds: number;
  movesWhileQuiet: number;
  failedMoves: number;
  finalLeaders: number[];
  movesPerNodeWhileQuiet: number[];
}

/** From all leaders on n1 to within 5% of the ideal count, then a quiet period. */
export async function runBalancer(o: { groups: number; workers: number; quietSeconds: number; config?: Record<string, unknown> }): Promise<BalancerBenchResult> {
  const config = { enabled: true, warmupMs: 0, ...o.config };
  return withCluster(o.groups, o.workers, async (kids, next) => {
    const skewSeconds = await waitAllOn(kids, next, 'n1', o.groups, 900_000);
    await ask(kids, next, { cmd: 'undrain' }, 'undrained');
    const ideal = o.groups / 3;
    const lo = Math.ceil(ideal * 0.95);
    const hi = Math.floor(ideal * 1.05);
    const status = async () => ask(kids, next, { cmd: 'status' }, 'status');
    const t0 = performance.now();
    await ask(kids, next, { cmd: 'configure', config }, 'configured');
    let within: number | null = null;
    let at: Record<string, unknown>[] = [];
    while (performance.now() - t0 < 300_000) {
      at = await status();
      const leaders = at.map((s) => s.leaders as number);
      if (leaders.every((l) => l >= lo && l <= hi)) {
        within = (performance.now() - t0) / 1000;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const moves = (st: Record<string, unknown>[]) => st.reduce((a, s) => a + (s.moves as number), 0);
    const movesAtWithin = moves(at);
    const quietStart = await status();
    await new Promise((r) => setTimeout(r, o.quietSeconds * 1000));
    const end = await status();
    return {
      groups: o.groups, config, skewSeconds: round(skewSeconds, 1), within5PctSeconds: within === null ? null : round(within, 1),
      leadersAtWithin5Pct: at.map((s) => s.leaders as number), movesToWithin5Pct: movesAtWithin,
      minMovesWithin5Pct: o.groups - hi, minMovesExact: o.groups - Math.ceil(ideal),
      ratioToMinimum: within === null ? null : round(movesAtWithin / (o.groups - hi), 3),
      quietSeconds: o.quietSeconds, movesWhileQuiet: moves(end) - moves(quietStart),
      failedMoves: end.reduce((a, s) => a + (s.failedMoves as number), 0), finalLeaders: end.map((s) => s.leaders as number),
      movesPerNodeWhileQuiet: end.map((s, i) => (s.moves as number) - (quietStart[i].moves as number)),
    };
  }, (id) => (id === 'n1' ? [] : ['--draining']));
}

export interface DrainBenchResult {
  groups: number;
  leadersBefore: number;
  moved: number;
  failed: number;
  drainMs: number;
  writes: number;
  failedWrites: number;
  stalledWrites: number;
  writeP50Ms: number;
  writeP99Ms: number;
}

/** n1 leads every group; under write load from every node, n1 drains. */
export async function runDrain(o: { groups: number; concurrency: number; proposers: number; seconds: number }): Promise<DrainBenchResult> {
  return withCluster(o.groups, 1, async (kids, next) => {
    await waitAllOn(kids, next, 'n1', o.groups, 300_000);
    await ask(kids, next, { cmd: 'undrain' }, 'undrained');
    const n1 = kids.get('n1')!;
    n1.send({ cmd: 'status' });
    const before = (await next(n1, 'status')).leaders as number;
    const loads = [...kids.values()].map((c) => {
      c.send({ cmd: 'load', seconds: o.seconds, proposers: o.proposers, valueBytes: 16, local: false });
      return next(c, 'result');
    });
    await new Promise((r) => setTimeout(r, Math.min(3000, (o.seconds * 1000) / 4)));
    n1.send({ cmd: 'drain', concurrency: o.concurrency });
    const d = await next(n1, 'drained');
    const results = await Promise.all(loads);
    const lat = Float64Array.from(results.flatMap((r) => r.latenciesMs as number[])).sort();
    return {
      groups: o.groups, leadersBefore: before, moved: d.moved as number, failed: d.failed as number, drainMs: d.ms as number,
      writes: results.reduce((a, r) => a + (r.writes as number), 0), failedWrites: results.reduce((a, r) => a + (r.errors as number), 0),
      stalledWrites: results.reduce((a, r) => a + (r.stalls as number), 0), writeP50Ms: round(pct(lat, 50)), writeP99Ms: round(pct(lat, 99)),
    };
  }, (id) => (id === 'n1' ? [] : ['--draining']));
}

export interface KillBenchResult {
  groups: number;
  electionTimeoutMs: number;
  victim: string;
  victimLeaders: number;
  /** From the kill until every group had a leader again (polled every 25 ms). */
  reelectedMs: number;
  /** Per proposer on the surviving nodes: the longest gap between successful writes around the kill. */
  resumeMaxMs: number;
  resumeP99Ms: number;
  resumeP50Ms: number;
  writes: number;
  errors: Record<string, number>;
  /** Requests that took longer than their deadline plus 1 s (a hung caller). */
  overDeadline: number;
}

/** Write load from two nodes; kill -9 the third, which leads the most groups. */
export async function runKill(o: { groups: number; proposers: number; seconds: number; timeoutMs: number }): Promise<KillBenchResult> {
  return withCluster(o.groups, 1, async (kids, next) => {
    await waitElected(kids, next, o.groups);
    await new Promise((r) => setTimeout(r, 2000));
    const st = await Promise.all([...kids.entries()].map(async ([id, c]) => {
      c.send({ cmd: 'status' });
      return { id, leaders: (await next(c, 'status')).leaders as number };
    }));
    const victim = st.sort((a, b) => b.leaders - a.leaders)[0];
    const survivors = [...kids.entries()].filter(([id]) => id !== victim.id);
    const loads = survivors.map(([, c]) => {
      c.send({ cmd: 'load', seconds: o.seconds, proposers: o.proposers, valueBytes: 16, local: false, gaps: true });
      return next(c, 'result');
    });
    await new Promise((r) => setTimeout(r, (o.seconds * 1000) / 3));
    const v = kids.get(victim.id)!;
    kids.delete(victim.id);
    const killedAt = Date.now();
    v.kill('SIGKILL');
    // When every group has a leader again (polled on the survivors).
    let reelectedMs = -1;
    while (Date.now() - killedAt < 20_000) {
      const st = await Promise.all(survivors.map(([, c]) => {
        c.send({ cmd: 'status' });
        return next(c, 'status');
      }));
      if (st.reduce((a, x) => a + (x.leaders as number), 0) >= o.groups) {
        reelectedMs = Date.now() - killedAt;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const results = await Promise.all(loads);
    const gaps: number[] = [];
    for (const r of results) {
      for (const times of r.okAt as number[][]) {
        // The longest silence that covers the kill: from the last success before it (or the kill)
        // to the first success after.
        let gap = 0;
        let prev = killedAt;
        for (const t of times) {
          if (t < killedAt) {
            prev = t;
            continue;
          }
          gap = Math.max(gap, t - Math.max(prev, killedAt - 1000));
          prev = t;
          if (t > killedAt + 30_000) break;
        }
        gaps.push(gap);
      }
    }
    gaps.sort((a, b) => a - b);
    const lat = results.flatMap((r) => r.latenciesMs as number[]);
    const errors: Record<string, number> = {};
    for (const r of results) for (const [k, n] of Object.entries(r.errorCodes as Record<string, number>)) errors[k] = (errors[k] ?? 0) + n;
    return {
      groups: o.groups, electionTimeoutMs: 1000, victim: victim.id, victimLeaders: victim.leaders, reelectedMs,
      resumeMaxMs: Math.round(gaps.at(-1) ?? 0), resumeP99Ms: Math.round(gaps[Math.min(gaps.length - 1, Math.floor(0.99 * gaps.length))] ?? 0),
      resumeP50Ms: Math.round(gaps[Math.floor(0.5 * gaps.length)] ?? 0),
      writes: results.reduce((a, r) => a + (r.writes as number), 0), errors,
      overDeadline: lat.filter((x) => x > o.timeoutMs + 1000).length,
    };
  }, () => ['--timeout-ms', String(o.timeoutMs)]);
}
