// Leadership benchmarks (3 node processes on 127.0.0.1, fsync on): the balancer from full skew,
// draining every leader off a node under write load, and kill -9 of a leader node under write
// load. Full skew is made by starting n2 and n3 draining, so that n1 wins every election.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { NO_BALANCER, waitElected, withCluster, type Next } from './cluster.js';
import { pct, round } from './stats.js';

const ask = (kids: Map<string, ChildProcess>, next: Next, cmd: Record<string, unknown>, reply: string) =>
  Promise.all(
    [...kids.values()].map((c) => {
      c.send(cmd);
      return next(c, reply);
    }),
  );

/** Successful writes per second in `bucketMs` buckets from `from` to `to` (epoch ms), from the
 *  per-proposer success times the load reports with `gaps`: the timeline charts of the report. */
export interface RateTimeline {
  bucketMs: number;
  /** Epoch ms of the first bucket's start. */
  startMs: number;
  writesPerSec: number[];
  /** Events on the timeline, seconds from startMs. */
  markers: { x: number; label: string }[];
}

export function rateTimeline(
  okAt: number[][],
  from: number,
  to: number,
  bucketMs: number,
  markers: { at: number; label: string }[],
): RateTimeline {
  const n = Math.max(1, Math.ceil((to - from) / bucketMs));
  const counts = new Array<number>(n).fill(0);
  for (const times of okAt) {
    for (const t of times) {
      const b = Math.floor((t - from) / bucketMs);
      if (b >= 0 && b < n) counts[b]++;
    }
  }
  return {
    bucketMs,
    startMs: from,
    writesPerSec: counts.map((c) => Math.round((c * 1000) / bucketMs)),
    markers: markers.map((m) => ({ x: round((m.at - from) / 1000, 2), label: m.label })),
  };
}
const say = (line: string) => process.stdout.write(`  ${line}\n`);
/** The leaders per node, in the order n1, n2, n3. */
const leadersOf = (st: Record<string, unknown>[]) => st.map((s) => s.leaders as number);
/** The balancer's successful moves, summed over the nodes. */
const movesOf = (st: Record<string, unknown>[]) => st.reduce((a, s) => a + (s.moves as number), 0);
const failedOf = (st: Record<string, unknown>[]) => st.reduce((a, s) => a + (s.failedMoves as number), 0);
/** Failed balancer moves by reason, summed over the nodes (since they started). */
const reasonsOf = (st: Record<string, unknown>[]) => {
  const out: Record<string, number> = {};
  for (const s of st)
    for (const [k, n] of Object.entries((s.failedByReason as Record<string, number> | undefined) ?? {}))
      out[k] = (out[k] ?? 0) + n;
  return out;
};

/** Wait until `id` leads every group, printing progress every 5 s. The other nodes start
 *  draining, so `id` should win every election; but at 10,000 groups on 2 cores it cannot keep
 *  up with them all, the draining nodes campaign after their delay and win some, and a draining
 *  node does not give up a leadership it won. Once every group has a leader and the counts have
 *  not changed for 5 s, each other node that leads groups is told to drain() (its leaders go to
 *  `id`, the only node not draining). Returns the seconds it took and the leaders so moved. */
async function waitAllOn(
  kids: Map<string, ChildProcess>,
  next: Next,
  id: string,
  groups: number,
  limitMs: number,
): Promise<{ seconds: number; strays: number; strayDrainMs: number }> {
  const t0 = performance.now();
  let shown = t0;
  let last = '';
  let lastChange = t0;
  let strays = 0;
  let strayDrainMs = 0;
  const ids = [...kids.keys()];
  for (;;) {
    const st = await ask(kids, next, { cmd: 'status' }, 'status');
    const leaders = leadersOf(st);
    const mine = leaders[ids.indexOf(id)];
    const now = performance.now();
    if (mine >= groups) {
      say(
        `${id} leads all ${groups.toLocaleString('en')} groups after ${round((now - t0) / 1000, 1)} s` +
          (strays ? ` (${strays} won by the draining nodes, drained to ${id} in ${strayDrainMs} ms)` : ''),
      );
      return { seconds: (now - t0) / 1000, strays, strayDrainMs };
    }
    if (now - t0 > limitMs)
      throw new Error(`${id} leads ${mine} of ${groups} after ${limitMs} ms (leaders ${leaders.join('/')})`);
    if (leaders.join('/') !== last) {
      last = leaders.join('/');
      lastChange = now;
    }
    if (leaders.reduce((a, b) => a + b, 0) === groups && now - lastChange >= 5000) {
      const others = ids.filter((x, i) => x !== id && leaders[i] > 0);
      say(`every group is led (${leaders.join('/')}); ${others.join(', ')} drain their leaders to ${id}`);
      const t = performance.now();
      const d = await Promise.all(
        others.map((x) => {
          kids.get(x)!.send({ cmd: 'drain', concurrency: 64 });
          return next(kids.get(x)!, 'drained');
        }),
      );
      strays += d.reduce((a, r) => a + (r.moved as number), 0);
      strayDrainMs += Math.round(performance.now() - t);
      say(
        `moved ${d.map((r) => r.moved).join(' + ')} leaders (failed ${d.map((r) => r.failed).join(' + ')}) in ${Math.round(performance.now() - t)} ms`,
      );
      lastChange = performance.now();
      continue;
    }
    if (now - shown >= 5000) {
      shown = now;
      say(
        `electing: ${id} leads ${mine.toLocaleString('en')} of ${groups.toLocaleString('en')} (leaders ${leaders.join('/')}) at ${round((now - t0) / 1000, 0)} s`,
      );
    }
    await sleep(250);
  }
}

export interface BalancerBenchResult {
  groups: number;
  /** The balancer settings applied on every node when it was enabled (the rest are defaults). */
  config: Record<string, unknown>;
  /** Seconds until n1 led every group (n2 and n3 started draining). */
  skewSeconds: number;
  /** Leaderships the draining n2 and n3 won at start-up anyway, moved to n1 with drain(). */
  skewStrayLeaders: number;
  idealPerNode: number;
  /** The band counted as within 5% of the ideal: [ceil(0.95 ideal), floor(1.05 ideal)]. */
  band: [number, number];
  /** Seconds from enabling the balancer until every node is within 5% of the ideal count. */
  within5PctSeconds: number | null;
  leadersAtWithin5Pct: number[];
  movesToWithin5Pct: number;
  /** Until the moves stopped (no move for settleQuietMs): seconds from enabling, total moves. */
  settledSeconds: number | null;
  leadersAtSettled: number[];
  totalMoves: number;
  /** Fewest moves that reach the band: max(groups - band max, 2 x band min). */
  minMovesWithin5Pct: number;
  /** Fewest moves that reach exact balance: groups - ceil(groups / 3). */
  minMovesExact: number;
  /** totalMoves / minMovesWithin5Pct (target <= 1.1). */
  ratioToMinimum: number | null;
  ratioToExact: number | null;
  movesByKind: Record<string, number>;
  rounds: number;
  quietSeconds: number;
  /** Moves during the quiet period that follows settling (target 0). */
  movesWhileQuiet: number;
  movesPerNodeWhileQuiet: number[];
  /** Smallest and largest leader count of any node during the quiet period. */
  quietLeaderRange: [number, number];
  failedMoves: number;
  finalLeaders: number[];
  /** Every second from enabling to settled: [seconds, leaders n1, n2, n3, moves]. */
  timeline: number[][];
  /** After the quiet period, a tenth of the groups get a leader preference for one zone (the
   *  nodes are in zones a, b, c; the zone of the node leading the fewest of them): how many meet
   *  it and when, with how many moves, and the leader counts once the balancer is still again
   *  (null when not run). */
  locality: {
    zone: string;
    leadersThereBefore: number;
    preferredGroups: number;
    met: number;
    share: number;
    seconds: number | null;
    moves: number;
    failedMoves: number;
    leaders: number[];
    failedByReason: Record<string, number>;
  } | null;
}

/** From all leaders on n1 to within 5% of the ideal count, then until the moves stop, then a
 *  quiet period. The balancer is off until n1 leads everything, then enabled on every node at
 *  once with `configureBalancer({enabled: true, warmupMs: 0, ...config})`. */
export async function runBalancer(o: {
  groups: number;
  workers: number;
  quietSeconds: number;
  config?: Record<string, unknown>;
  locality?: boolean;
}): Promise<BalancerBenchResult> {
  const config: Record<string, unknown> = { enabled: true, warmupMs: 0, ...o.config };
  const intervalMs = typeof config.intervalMs === 'number' ? config.intervalMs : 2000;
  // A round comes at most 1.25 interval after the last; three without a move = settled.
  const settleQuietMs = Math.max(5000, Math.ceil(3 * 1.25 * intervalMs));
  return withCluster(
    o.groups,
    o.workers,
    async (kids, next) => {
      const skew = await waitAllOn(kids, next, 'n1', o.groups, 900_000);
      await ask(kids, next, { cmd: 'undrain' }, 'undrained');
      const ideal = o.groups / 3;
      const lo = Math.ceil(ideal * 0.95);
      const hi = Math.floor(ideal * 1.05);
      const status = async () => ask(kids, next, { cmd: 'status' }, 'status');
      const t0 = performance.now();
      await ask(kids, next, { cmd: 'configure', config }, 'configured');
      let within: number | null = null;
      let atWithin: Record<string, unknown>[] = [];
      let settled: number | null = null;
      let atSettled: Record<string, unknown>[] = [];
      let lastMoves = 0;
      let lastChange = 0;
      const timeline: number[][] = [];
      let st: Record<string, unknown>[] = [];
      while (performance.now() - t0 < 600_000) {
        st = await status();
        const now = performance.now() - t0;
        const leaders = leadersOf(st);
        const moves = movesOf(st);
        if (moves !== lastMoves) {
          lastMoves = moves;
          lastChange = now;
        }
        if (timeline.length === 0 || now / 1000 >= timeline.length) {
          timeline.push([round(now / 1000, 1), ...leaders, moves]);
          if (timeline.length % 5 === 1)
            say(
              `balancing: ${round(now / 1000, 1)} s: leaders ${leaders.join('/')}, moves ${moves}, failed ${failedOf(st)}`,
            );
        }
        if (within === null && leaders.every((l) => l >= lo && l <= hi)) {
          within = now / 1000;
          atWithin = st;
          say(
            `within 5% (${lo}-${hi} per node) after ${round(within, 1)} s: leaders ${leaders.join('/')}, moves ${moves}`,
          );
        }
        if (within !== null && now - lastChange >= settleQuietMs) {
          settled = lastChange / 1000;
          atSettled = st;
          say(
            `no move for ${settleQuietMs / 1000} s: settled at ${round(settled, 1)} s with leaders ${leaders.join('/')}, moves ${moves}`,
          );
          break;
        }
        await sleep(250);
      }
      if (settled === null) atSettled = st;
      const quietStart = await status();
      let range: [number, number] = [Infinity, -Infinity];
      const quietEnd = performance.now() + o.quietSeconds * 1000;
      let end = quietStart;
      let shown = performance.now();
      while (performance.now() < quietEnd) {
        await sleep(Math.min(1000, Math.max(0, quietEnd - performance.now())));
        end = await status();
        for (const l of leadersOf(end)) range = [Math.min(range[0], l), Math.max(range[1], l)];
        if (performance.now() - shown >= 30_000) {
          shown = performance.now();
          say(`quiet: leaders ${leadersOf(end).join('/')}, moves since settled ${movesOf(end) - movesOf(quietStart)}`);
        }
      }
      let locality: BalancerBenchResult['locality'] = null;
      if (o.locality) {
        // Groups 1..P prefer the zone of the node that leads the fewest of them now (which groups
        // the count phase left where depends on its order of moves: a fixed zone may already hold
        // them all and measure nothing). Every node gets the same preference (as an operator would
        // push it to all); the balancer's locality phase moves them, the count phase keeps the
        // totals even.
        const P = Math.max(1, Math.floor(o.groups / 10));
        const ledOf = async (id: string) => {
          const kid = kids.get(id)!;
          kid.send({ cmd: 'led' });
          return ((await next(kid, 'led')).groups as number[]).filter((g) => g >= 1 && g <= P).length;
        };
        const zones: Record<string, string> = { n1: 'a', n2: 'b', n3: 'c' };
        const counts = await Promise.all(Object.keys(zones).map(async (id) => [id, await ledOf(id)] as const));
        const [target, leadsAlready] = counts.reduce((a, b) => (b[1] < a[1] ? b : a));
        const zone = zones[target];
        const before = await status();
        await ask(
          kids,
          next,
          { cmd: 'configure', config: { preferences: [{ groups: { from: 1, to: P }, leaders: [{ zone }] }] } },
          'configured',
        );
        const t = performance.now();
        let met = 0;
        let seconds: number | null = null;
        let lastMoves = movesOf(before);
        let still = performance.now();
        while (performance.now() - t < 120_000) {
          await sleep(1000);
          met = await ledOf(target);
          if (met === P && seconds === null) seconds = round((performance.now() - t) / 1000, 1);
          const m = movesOf(await status());
          if (m !== lastMoves) {
            lastMoves = m;
            still = performance.now();
          }
          if (seconds !== null && performance.now() - still >= (o.quietSeconds < 60 ? 2000 : 5000)) break;
        }
        const after = await status();
        locality = {
          zone,
          leadersThereBefore: leadsAlready,
          preferredGroups: P,
          met,
          share: round(met / P, 3),
          seconds,
          moves: movesOf(after) - movesOf(before),
          failedMoves: failedOf(after) - failedOf(before),
          leaders: leadersOf(after),
          failedByReason: reasonsOf(after),
        };
        say(
          `locality: ${met} of ${P} groups preferring zone ${zone} (${target} led ${leadsAlready} of them) led there${seconds !== null ? ` after ${seconds} s` : ''}, ${locality.moves} moves, leaders ${locality.leaders.join('/')}`,
        );
      }
      const minWithin = Math.max(o.groups - hi, 2 * lo);
      const minExact = o.groups - Math.ceil(ideal);
      const totalMoves = movesOf(atSettled);
      const byKind: Record<string, number> = {};
      for (const s of end)
        for (const [k, n] of Object.entries(s.movesByKind as Record<string, number>))
          if (n) byKind[k] = (byKind[k] ?? 0) + n;
      return {
        groups: o.groups,
        config,
        skewSeconds: round(skew.seconds, 1),
        skewStrayLeaders: skew.strays,
        idealPerNode: round(ideal, 1),
        band: [lo, hi],
        within5PctSeconds: within === null ? null : round(within, 1),
        leadersAtWithin5Pct: leadersOf(atWithin),
        movesToWithin5Pct: movesOf(atWithin),
        settledSeconds: settled === null ? null : round(settled, 1),
        leadersAtSettled: leadersOf(atSettled),
        totalMoves,
        minMovesWithin5Pct: minWithin,
        minMovesExact: minExact,
        ratioToMinimum: within === null ? null : round(totalMoves / minWithin, 3),
        ratioToExact: within === null ? null : round(totalMoves / minExact, 3),
        movesByKind: byKind,
        rounds: end.reduce((a, s) => a + (s.rounds as number), 0),
        quietSeconds: o.quietSeconds,
        movesWhileQuiet: movesOf(end) - movesOf(quietStart),
        movesPerNodeWhileQuiet: end.map((s, i) => (s.moves as number) - (quietStart[i].moves as number)),
        quietLeaderRange: range,
        failedMoves: failedOf(end),
        finalLeaders: leadersOf(end),
        timeline,
        locality,
      };
    },
    (id) => [
      ...NO_BALANCER,
      '--zone',
      { n1: 'a', n2: 'b', n3: 'c' }[id] ?? 'a',
      ...(id === 'n1' ? [] : ['--draining']),
    ],
  );
}

export interface DrainBenchResult {
  groups: number;
  concurrency: number;
  /** Leaderships the draining n2 and n3 won at start-up anyway, moved to n1 with drain(). */
  skewStrayLeaders: number;
  leadersBefore: number;
  moved: number;
  failed: number;
  failReasons: unknown[];
  /** n1's leaders once drain() returned (target 0). */
  leadersAfter: number;
  drainMs: number;
  writes: number;
  failedWrites: number;
  errors: Record<string, number>;
  stalledWrites: number;
  writeP50Ms: number;
  writeP99Ms: number;
  writeMaxMs: number;
  timeline: RateTimeline;
}

/** n1 leads every group; under write load from every node, n1 drains. */
export async function runDrain(o: {
  groups: number;
  concurrency: number;
  proposers: number;
  seconds: number;
}): Promise<DrainBenchResult> {
  return withCluster(
    o.groups,
    null,
    async (kids, next) => {
      const skew = await waitAllOn(kids, next, 'n1', o.groups, 300_000);
      await ask(kids, next, { cmd: 'undrain' }, 'undrained');
      const n1 = kids.get('n1')!;
      n1.send({ cmd: 'status' });
      const before = (await next(n1, 'status')).leaders as number;
      const loadAt = Date.now();
      const loads = [...kids.values()].map((c) => {
        c.send({ cmd: 'load', seconds: o.seconds, proposers: o.proposers, valueBytes: 16, local: false, gaps: true });
        return next(c, 'result');
      });
      await sleep(Math.min(3000, (o.seconds * 1000) / 4));
      const drainAt = Date.now();
      n1.send({ cmd: 'drain', concurrency: o.concurrency });
      const d = await next(n1, 'drained');
      const drainedAt = Date.now();
      n1.send({ cmd: 'status' });
      const after = (await next(n1, 'status')).leaders as number;
      say(`n1 drained ${d.moved} leaders in ${d.ms} ms (failed ${d.failed}); n1 now leads ${after}`);
      const results = await Promise.all(loads);
      const lat = Float64Array.from(results.flatMap((r) => r.latenciesMs as number[])).sort();
      const errors: Record<string, number> = {};
      for (const r of results)
        for (const [k, n] of Object.entries(r.errorCodes as Record<string, number>)) errors[k] = (errors[k] ?? 0) + n;
      return {
        groups: o.groups,
        concurrency: o.concurrency,
        skewStrayLeaders: skew.strays,
        leadersBefore: before,
        moved: d.moved as number,
        failed: d.failed as number,
        failReasons: d.reasons as unknown[],
        leadersAfter: after,
        drainMs: d.ms as number,
        writes: results.reduce((a, r) => a + (r.writes as number), 0),
        failedWrites: results.reduce((a, r) => a + (r.errors as number), 0),
        errors,
        stalledWrites: results.reduce((a, r) => a + (r.stalls as number), 0),
        writeP50Ms: round(pct(lat, 50)),
        writeP99Ms: round(pct(lat, 99)),
        writeMaxMs: round(lat.length ? lat[lat.length - 1] : 0),
        timeline: rateTimeline(
          results.flatMap((r) => r.okAt as number[][]),
          loadAt,
          loadAt + o.seconds * 1000,
          250,
          [
            { at: drainAt, label: 'drain n1' },
            { at: drainedAt, label: `drained (${d.moved})` },
          ],
        ),
      };
    },
    (id) => [...NO_BALANCER, ...(id === 'n1' ? [] : ['--draining'])],
  );
}

export interface KillBenchResult {
  groups: number;
  /** The election timeout configured on the nodes (tickMs x electionTicks). */
  electionTimeoutMs: number;
  /** Each request's deadline (requestTimeoutMs). */
  requestTimeoutMs: number;
  victim: string;
  victimLeaders: number;
  /** From the kill until every group had a leader again (survivors polled every 100 ms). */
  reelectedMs: number;
  /** Per group of the victim's: from the kill until a survivor led it. */
  reelectP50Ms: number;
  reelectP99Ms: number;
  /** The victim's groups led again only after more than the election timeout. */
  reelectSlowerThanTimeout: number;
  /** Writes to the victim's groups that were in flight at the kill or started before every group
   *  was led again: from the kill (or their start, if later) until they succeeded. */
  lostGroupWrites: number;
  lostGroupResumeP50Ms: number;
  lostGroupResumeP99Ms: number;
  lostGroupResumeMaxMs: number;
  /** Per proposer on the surviving nodes: the longest gap between consecutive successful
   *  writes around the kill (from the last success before it, at most 1 s before). */
  resumeMaxMs: number;
  resumeP99Ms: number;
  resumeP50Ms: number;
  /** Proposers with no successful write after the kill. */
  proposersNeverResumed: number;
  writes: number;
  errors: Record<string, number>;
  /** Requests that took longer than their deadline (requestTimeoutMs). */
  overDeadline: number;
  maxLatencyMs: number;
  /** Calls still pending deadline + 5 s after the load ended (a hung caller). */
  hung: number;
  timeline: RateTimeline;
}

/** Write load from two nodes; kill -9 the third, which leads the most groups. */
export async function runKill(o: {
  groups: number;
  proposers: number;
  seconds: number;
  timeoutMs: number;
}): Promise<KillBenchResult> {
  let electionMs = 0;
  return withCluster(
    o.groups,
    null,
    async (kids, next) => {
      await waitElected(kids, next, o.groups);
      await sleep(2000);
      const st = await Promise.all(
        [...kids.entries()].map(async ([id, c]) => {
          c.send({ cmd: 'status' });
          const s = await next(c, 'status');
          electionMs = s.electionMs as number;
          return { id, leaders: s.leaders as number };
        }),
      );
      const victim = [...st].sort((a, b) => b.leaders - a.leaders)[0];
      say(`leaders ${st.map((x) => `${x.id} ${x.leaders}`).join(', ')}; the victim is ${victim.id}`);
      const survivors = [...kids.entries()].filter(([id]) => id !== victim.id);
      const loadAt = Date.now();
      const loads = survivors.map(([, c]) => {
        c.send({ cmd: 'load', seconds: o.seconds, proposers: o.proposers, valueBytes: 16, local: false, gaps: true });
        return next(c, 'result');
      });
      await sleep((o.seconds * 1000) / 3);
      const v = kids.get(victim.id)!;
      v.send({ cmd: 'led' });
      const lost = new Set((await next(v, 'led')).groups as number[]);
      kids.delete(victim.id);
      const killedAt = Date.now();
      v.kill('SIGKILL');
      // When each of the victim's groups has a leader on a survivor again (polled every 100 ms:
      // a detailed status costs the survivors CPU).
      let reelectedMs = -1;
      const ledAgain = new Map<number, number>();
      while (Date.now() - killedAt < 20_000) {
        const led = await Promise.all(
          survivors.map(([, c]) => {
            c.send({ cmd: 'led' });
            return next(c, 'led');
          }),
        );
        const t = Date.now() - killedAt;
        for (const l of led)
          for (const g of l.groups as number[]) if (lost.has(g) && !ledAgain.has(g)) ledAgain.set(g, t);
        if (ledAgain.size >= lost.size) {
          reelectedMs = t;
          break;
        }
        await sleep(100);
      }
      const reelect = [...ledAgain.values()].sort((a, b) => a - b);
      if (process.env.BENCH_VERBOSE) {
        const slow = [...lost]
          .filter((g) => (ledAgain.get(g) ?? Infinity) > electionMs)
          .map((g) => `${g}:${ledAgain.get(g) ?? 'never'}`);
        process.stderr.write(
          `kill: killed at ${new Date(killedAt).toISOString()}; groups led again after more than ${electionMs} ms: ${slow.join(' ')}\n`,
        );
      }
      say(
        `killed ${victim.id} (leading ${lost.size}); every group led again after ${reelectedMs} ms; ` +
          `${reelect.filter((x) => x > electionMs).length} took longer than the election timeout`,
      );
      const results = await Promise.all(loads);
      const gaps: number[] = [];
      let never = 0;
      for (const r of results) {
        for (const times of r.okAt as number[][]) {
          let gap = 0;
          let prev = killedAt - 1000;
          let resumed = false;
          for (const t of times) {
            if (t < killedAt) {
              prev = Math.max(t, killedAt - 1000);
              continue;
            }
            gap = Math.max(gap, t - prev);
            prev = t;
            resumed = true;
            if (t > killedAt + 30_000) break;
          }
          if (!resumed) {
            never++;
            gap = (r.endedAt as number) - prev;
          }
          gaps.push(gap);
        }
      }
      gaps.sort((a, b) => a - b);
      // Writes to the groups that lost their leader, in flight at the kill or started before re-election.
      const resume: number[] = [];
      for (const r of results) {
        const w = r.writeLog as number[];
        for (let i = 0; i < w.length; i += 4) {
          const [start, end, group, ok] = [w[i], w[i + 1], w[i + 2], w[i + 3]];
          if (!lost.has(group) || end < killedAt || start > killedAt + Math.max(0, reelectedMs) || !ok) continue;
          resume.push(end - Math.max(start, killedAt));
        }
      }
      resume.sort((a, b) => a - b);
      const errors: Record<string, number> = {};
      for (const r of results)
        for (const [k, n] of Object.entries(r.errorCodes as Record<string, number>)) errors[k] = (errors[k] ?? 0) + n;
      return {
        groups: o.groups,
        electionTimeoutMs: electionMs,
        requestTimeoutMs: o.timeoutMs,
        victim: victim.id,
        victimLeaders: lost.size,
        reelectedMs,
        reelectP50Ms: pct(reelect, 50),
        reelectP99Ms: pct(reelect, 99),
        reelectSlowerThanTimeout: reelect.filter((x) => x > electionMs).length,
        lostGroupWrites: resume.length,
        lostGroupResumeP50Ms: Math.round(pct(resume, 50)),
        lostGroupResumeP99Ms: Math.round(pct(resume, 99)),
        lostGroupResumeMaxMs: Math.round(resume.at(-1) ?? 0),
        resumeMaxMs: Math.round(gaps.at(-1) ?? 0),
        resumeP99Ms: Math.round(pct(gaps, 99)),
        resumeP50Ms: Math.round(pct(gaps, 50)),
        proposersNeverResumed: never,
        writes: results.reduce((a, r) => a + (r.writes as number), 0),
        errors,
        overDeadline: results.reduce((a, r) => a + (r.overDeadline as number), 0),
        maxLatencyMs: Math.round(Math.max(0, ...results.map((r) => r.maxLatencyMs as number))),
        hung: results.reduce((a, r) => a + (r.hung as number), 0),
        timeline: rateTimeline(
          results.flatMap((r) => r.okAt as number[][]),
          loadAt,
          loadAt + o.seconds * 1000,
          100,
          [
            { at: killedAt, label: `kill -9 ${victim.id}` },
            ...(reelectedMs >= 0 ? [{ at: killedAt + reelectedMs, label: 'all led again' }] : []),
          ],
        ),
      };
    },
    () => [...NO_BALANCER, '--timeout-ms', String(o.timeoutMs)],
  );
}

// Direct use: node --import tsx src/bench/leadership.ts balancer|drain|kill [groups]
if (process.argv[1] === import.meta.filename) {
  const [what, g] = process.argv.slice(2);
  const r =
    what === 'drain'
      ? await runDrain({ groups: Number(g ?? 1000), concurrency: 64, proposers: 64, seconds: 12 })
      : what === 'kill'
        ? await runKill({ groups: Number(g ?? 1000), proposers: 64, seconds: 12, timeoutMs: 10_000 })
        : await runBalancer({ groups: Number(g ?? 2000), workers: 1, quietSeconds: 30 });
  process.stdout.write(JSON.stringify(r) + '\n');
}
