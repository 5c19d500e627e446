// Elastic cluster benchmark: the cost of growing and shrinking a loaded cluster. Three nodes with
// N groups serve a fixed set of writers (embedded API, 16-byte values spread over keys); after a
// warm-up and a baseline window a fourth node joins, and the replica mover (on group 0's leader)
// fills it until every node's replica count is within the band; then one of the original nodes
// is decommissioned under the same load until it is removed. Reports for each phase the time it
// took, the moves made against the fewest that reach the same end (minimumMoves of the replica
// planner on the state just before), the client p99 and writes/s against the baseline, and the
// writes that failed (target 0, never left out).
//
// Four nodes in this process (one worker thread each, fsync off, the leader balancer off: this
// measures replica moves, not the disk or leader placement), as the snapshot scenario runs its
// nodes. Writers go through n1 and n2, which stay; n3 is the one decommissioned. Direct use:
//   node --import tsx src/bench/elastic.ts [--groups 100] [--writers 32] [--seconds 5]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { minimumMoves, replicaBand, type PlacementGroup, type PlacementNode } from '../balancer/replicas.js';
import { REPLICA_MOVER_DEFAULTS, type ReplicaMoverConfig } from '../runtime/mover.js';
import { startNode, type FlotillaNode, type StartOptions } from '../runtime/node.js';
import { freePorts } from './ports.js';
import { pct, round } from './stats.js';

export interface ElasticBenchOptions {
  readonly groups: number;
  /** Concurrent writers in all, alternating between n1 and n2. */
  readonly writers: number;
  readonly warmupSeconds: number;
  readonly baselineSeconds: number;
  /** Give up on a phase after this long (the result then says it never got there). */
  readonly phaseLimitSeconds: number;
  /** Replica mover settings beyond the defaults. */
  readonly replicas?: ReplicaMoverConfig;
  readonly say: (line: string) => void;
}

/** Client-side figures of the writes that completed in a window. */
export interface WindowStats {
  readonly seconds: number;
  readonly writes: number;
  readonly writesPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Writes that failed (rejected or timed out) in the window. */
  readonly failed: number;
}

export interface MoveCounts {
  readonly balance: number;
  readonly decommission: number;
  readonly repair: number;
  readonly zone: number;
  readonly trim: number;
  /** Failed moves of any kind (each rolled back or retried by the mover). */
  readonly failed: number;
  readonly rolledBack: number;
}

export interface PhaseResult {
  /** Seconds from the join (or the decommission call) until done; null: not within the limit. */
  readonly seconds: number | null;
  /** Moves completed from the start of the phase until done (summed over every node's mover,
   *  as group 0's leadership, and with it the mover, can move). */
  readonly moves: MoveCounts;
  /** The fewest moves that reach the same end from the state just before the phase. */
  readonly minimumMoves: number;
  /** Completed moves of the phase's kind once settled (movesAtSettle) / minimumMoves: the band
   *  is reached with the last moves' learners already counted, so `moves` may be a little under. */
  readonly ratioToMinimum: number | null;
  /** Seconds from done until the mover had no move in flight and none planned (null: not
   *  within 30 s), and the moves of the phase's kind by then. */
  readonly settleSeconds: number | null;
  readonly movesAtSettle: number;
  /** The seconds after the start by which half, 90% and all of the phase's moves completed
   *  (the tail of the last moves). */
  readonly moveProgress: { readonly half: number | null; readonly p90: number | null; readonly last: number | null };
  readonly load: WindowStats;
  /** Replicas per node when done. */
  readonly replicas: Record<string, number>;
  readonly band: { readonly low: number; readonly high: number };
  /** Mover errors (group, kind, step, code) seen in the phase, at most 20. */
  readonly errors: string[];
}

export interface ElasticBenchResult {
  readonly groups: number;
  readonly writers: number;
  /** The mover settings in force (the defaults with the bench's changes). */
  readonly mover: Required<ReplicaMoverConfig>;
  readonly baseline: WindowStats;
  /** How long startNode({ join }) took (admission, directory), ms. */
  readonly joinCallMs: number;
  readonly join: PhaseResult;
  readonly decommission: PhaseResult;
  /** Every write that failed, first 20 messages. */
  readonly failedWrites: number;
  readonly failedSamples: string[];
  /** Successful writes per second, 1 s buckets from the start of the baseline. */
  readonly timeline: number[];
  /** Events on the timeline (seconds from its start). */
  readonly markers: { x: number; label: string }[];
}

interface Write {
  readonly at: number;
  readonly ms: number;
  readonly ok: boolean;
}

/** `count` writers alternating over `via`, each putting its own keys one after another (so the
 *  writes spread over every group) until stopped; every write's end time and latency kept. */
function writers(via: FlotillaNode[], count: number) {
  const log: Write[] = [];
  const errors: string[] = [];
  let running = true;
  const value = 'v'.repeat(16);
  const done = Promise.all(
    Array.from({ length: count }, async (_, w) => {
      const node = via[w % via.length];
      for (let i = 0; running; i++) {
        const t0 = performance.now();
        try {
          await node.kv.put(`w${w}-${i % 4096}`, value, { timeoutMs: 15_000 });
          log.push({ at: performance.now(), ms: performance.now() - t0, ok: true });
        } catch (e) {
          log.push({ at: performance.now(), ms: performance.now() - t0, ok: false });
          if (errors.length < 20) errors.push(`w${w}: ${(e as Error).message}`);
          await sleep(10);
        }
      }
    }),
  );
  return {
    log,
    errors,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

function window(log: readonly Write[], from: number, to: number): WindowStats {
  const inside = log.filter((w) => w.at >= from && w.at < to);
  const ok = inside
    .filter((w) => w.ok)
    .map((w) => w.ms)
    .sort((a, b) => a - b);
  const seconds = Math.max(0.001, (to - from) / 1000);
  return {
    seconds: round(seconds, 1),
    writes: ok.length,
    writesPerSec: Math.round(ok.length / seconds),
    p50Ms: round(pct(ok, 50), 2),
    p99Ms: round(pct(ok, 99), 2),
    maxMs: round(ok.length ? ok[ok.length - 1] : 0, 2),
    failed: inside.length - ok.length,
  };
}

const KINDS = ['balance', 'decommission', 'repair', 'zone', 'trim'] as const;

/** The mover's counters summed over the nodes (each node counts the moves it ran while it led
 *  group 0). */
function moveCounts(nodes: Iterable<FlotillaNode>): MoveCounts {
  const sum = { balance: 0, decommission: 0, repair: 0, zone: 0, trim: 0, failed: 0, rolledBack: 0 };
  for (const n of nodes) {
    const c = n.moverStatus().counters;
    for (const k of KINDS) {
      sum[k] += c[k].completed;
      sum.failed += c[k].failed;
      sum.rolledBack += c[k].rolledBack;
    }
  }
  return sum;
}

const minus = (a: MoveCounts, b: MoveCounts): MoveCounts => ({
  balance: a.balance - b.balance,
  decommission: a.decommission - b.decommission,
  repair: a.repair - b.repair,
  zone: a.zone - b.zone,
  trim: a.trim - b.trim,
  failed: a.failed - b.failed,
  rolledBack: a.rolledBack - b.rolledBack,
});

/** The planner's input: every node active and up unless `states` says otherwise. */
function placement(
  ids: readonly string[],
  groups: readonly PlacementGroup[],
  states: Record<string, PlacementNode['state']> = {},
): { nodes: PlacementNode[]; groups: readonly PlacementGroup[] } {
  return { nodes: ids.map((id) => ({ id, state: states[id] ?? 'active', up: true })), groups };
}

function groupsOf(from: FlotillaNode, count: number, first: number): PlacementGroup[] {
  const out: PlacementGroup[] = [];
  for (let g = first; g <= count; g++) out.push({ id: g, voters: from.replicasOf(g), learners: [] });
  return out;
}

export async function runElastic(o: ElasticBenchOptions): Promise<ElasticBenchResult> {
  const mover: Required<ReplicaMoverConfig> = { ...REPLICA_MOVER_DEFAULTS, ...o.replicas };
  const planner = { tolerance: mover.tolerance };
  const root = mkdtempSync(join(tmpdir(), 'flotilla-bench-elastic-'));
  const ids = ['n1', 'n2', 'n3', 'n4'];
  const ports = await freePorts(4);
  const addr = (id: string) => `127.0.0.1:${ports[ids.indexOf(id)]}`;
  const base = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr(id),
    workers: 1,
    noSync: true,
    requestTimeoutMs: 15_000,
    balancer: { enabled: false },
    replicas: o.replicas ?? {},
  });
  const seeds = ids.slice(0, 3);
  const nodes = new Map<string, FlotillaNode>();
  const limitMs = o.phaseLimitSeconds * 1000;
  let load: ReturnType<typeof writers> | undefined;
  try {
    for (const id of seeds)
      nodes.set(
        id,
        await startNode({
          ...base(id),
          groups: o.groups,
          peers: Object.fromEntries(seeds.filter((p) => p !== id).map((p) => [p, addr(p)])),
        }),
      );
    const n1 = nodes.get('n1')!;
    for (const t0 = performance.now(); ; ) {
      const led = (await Promise.all([...nodes.values()].map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0);
      if (led >= o.groups) break;
      if (performance.now() - t0 > limitMs) throw new Error(`${led} of ${o.groups} groups led after ${limitMs} ms`);
      await sleep(200);
    }
    o.say(`${o.groups} groups led on 3 nodes; ${o.writers} writers through n1 and n2`);
    load = writers([n1, nodes.get('n2')!], o.writers);
    await sleep(o.warmupSeconds * 1000);
    const baseFrom = performance.now();
    await sleep(o.baselineSeconds * 1000);
    const baseTo = performance.now();
    const baseline = window(load.log, baseFrom, baseTo);
    o.say(`baseline: ${baseline.writesPerSec} writes/s, p99 ${baseline.p99Ms} ms, ${baseline.failed} failed`);
    const markers: { at: number; label: string }[] = [];

    /** Polls every 100 ms until `done()`, then until the mover is still; the phase's figures. */
    const phase = async (
      kind: 'balance' | 'decommission',
      t0: number,
      before: MoveCounts,
      minimum: number,
      done: () => boolean,
      total: () => number,
    ): Promise<PhaseResult> => {
      const wall0 = Date.now();
      const progress: [number, number][] = [];
      let doneAt: number | null = null;
      const errors = new Set<string>();
      const note = () => {
        for (const n of nodes.values())
          for (const e of n.moverStatus().lastErrors)
            if (e.atMs >= wall0 && errors.size < 20)
              errors.add(`group ${e.group} ${e.kind} ${e.step}: ${e.code ?? 'error'}`);
      };
      let last = 0;
      /** The phase's completed moves now, noted with the time whenever they changed. */
      const track = () => {
        const m = minus(moveCounts(nodes.values()), before)[kind];
        if (m !== last) {
          last = m;
          progress.push([performance.now(), m]);
        }
        return m;
      };
      let shown = t0;
      while (doneAt === null && performance.now() - t0 < limitMs) {
        const m = track();
        if (done()) doneAt = performance.now();
        else await sleep(100);
        if (performance.now() - shown >= 5000) {
          shown = performance.now();
          const runner = [...nodes.values()].find((n) => n.moverStatus().runsHere);
          const st = runner?.moverStatus();
          o.say(
            `  ${round((shown - t0) / 1000, 0)} s: ${m} ${kind} moves, ${st?.inFlight.length ?? '?'} in flight on ${runner?.id ?? 'no mover'}; ` +
              `replicas ${n1
                .clusterNodes()
                .map((n) => `${n.id} ${n.replicas}${n.state === 'active' ? '' : ` (${n.state})`}`)
                .join(', ')}` +
              (st && Object.keys(st.decommissioning).length ? `; left ${JSON.stringify(st.decommissioning)}` : '') +
              (runner && st?.inFlight.length === 0
                ? `; plan: ${runner.replicaPlan()?.blocked.join('; ') ?? '-'}`
                : '') +
              (runner && st && Object.keys(st.decommissioning).length
                ? `; on it: ${[...Array(o.groups + 1).keys()]
                    .filter((g) => Object.keys(st.decommissioning).some((d) => runner.replicasOf(g).includes(d)))
                    .slice(0, 5)
                    .map((g) => `${g} [${runner.replicasOf(g).join(',')}] on n1 [${n1.replicasOf(g).join(',')}]`)
                    .join('; ')}; errors ${JSON.stringify(st.lastErrors.slice(-3))}`
                : ''),
          );
        }
      }
      note();
      const at = doneAt ?? performance.now();
      const moves = minus(moveCounts(nodes.values()), before);
      // Then until nothing is in flight or planned on the node running the mover.
      let settleAt: number | null = null;
      for (const s0 = performance.now(); doneAt !== null && performance.now() - s0 < 30_000; ) {
        track();
        const runner = [...nodes.values()].find((n) => n.moverStatus().runsHere);
        const plan = runner?.replicaPlan();
        if (runner && runner.moverStatus().inFlight.length === 0 && plan && plan.moves.length === 0) {
          settleAt = performance.now();
          break;
        }
        await sleep(100);
      }
      note();
      const atSettle = minus(moveCounts(nodes.values()), before)[kind];
      const by = (share: number) => {
        const want = Math.ceil(share * atSettle);
        const hit = progress.find(([, m]) => m >= want);
        return hit && want > 0 ? round((hit[0] - t0) / 1000, 1) : null;
      };
      const replicas = Object.fromEntries(n1.clusterNodes().map((n) => [n.id, n.replicas]));
      const active = n1.clusterNodes().filter((n) => n.state === 'active').length;
      return {
        seconds: doneAt === null ? null : round((doneAt - t0) / 1000, 2),
        moves,
        minimumMoves: minimum,
        ratioToMinimum: minimum > 0 ? round(atSettle / minimum, 2) : null,
        settleSeconds: settleAt === null ? null : round((settleAt - at) / 1000, 1),
        movesAtSettle: atSettle,
        moveProgress: { half: by(0.5), p90: by(0.9), last: by(1) },
        load: window(load!.log, t0, at),
        replicas,
        band: replicaBand(total(), active, mover.tolerance),
        errors: [...errors],
      };
    };

    // --- join: the planner's minimum from the state just before it. Group 0 does not exist yet;
    // the join creates it on the three seed nodes (replication min(3, active) until five), so it
    // is counted as a group of three replicas on n1..n3, with n4 active, up and empty.
    const before = groupsOf(n1, o.groups, 1);
    const withMeta = [{ id: 0, voters: seeds, learners: [], replication: 3 }, ...before];
    const joinMinimum = minimumMoves({ ...placement(ids, withMeta), config: planner });
    const totalAfterJoin = 3 * o.groups + 3;
    const joinBefore = moveCounts(nodes.values());
    const tJoin = performance.now();
    markers.push({ at: tJoin, label: 'n4 joins' });
    nodes.set('n4', await startNode({ ...base('n4'), join: addr('n2') }));
    const joinCallMs = Math.round(performance.now() - tJoin);
    o.say(`n4 admitted in ${joinCallMs} ms; the mover fills it (minimum ${joinMinimum} moves)`);
    const joinBand = replicaBand(totalAfterJoin, 4, mover.tolerance);
    const inBand = () => {
      const listed = n1.clusterNodes();
      return (
        listed.length === 4 &&
        listed.every((n) => n.state === 'active' && n.replicas >= joinBand.low && n.replicas <= joinBand.high)
      );
    };
    const joined = await phase('balance', tJoin, joinBefore, joinMinimum, inBand, () => totalAfterJoin);
    if (joined.seconds !== null) markers.push({ at: tJoin + joined.seconds * 1000, label: 'in band' });
    o.say(
      `join: in band [${joinBand.low}, ${joinBand.high}] after ${joined.seconds ?? 'never'} s with ${joined.moves.balance} balance moves ` +
        `and ${joined.movesAtSettle} once settled ` +
        `(minimum ${joinMinimum}, ${joined.ratioToMinimum}x); ` +
        `p99 ${joined.load.p99Ms} ms, ${joined.load.writesPerSec} writes/s, ${joined.load.failed} failed writes`,
    );

    // --- decommission n3: every replica it holds must move (group 0's included).
    const victim = 'n3';
    const allGroups = groupsOf(n1, o.groups, 0);
    const decomMinimum = minimumMoves({
      ...placement(ids, allGroups, { [victim]: 'decommissioning' }),
      config: planner,
    });
    const decomBefore = moveCounts(nodes.values());
    const tDecom = performance.now();
    markers.push({ at: tDecom, label: `decommission ${victim}` });
    await n1.decommission(victim);
    o.say(`${victim} decommissioning (minimum ${decomMinimum} moves)`);
    const removed = () => n1.clusterNodes().find((n) => n.id === victim)?.state === 'removed';
    const decom = await phase('decommission', tDecom, decomBefore, decomMinimum, removed, () =>
      n1.clusterNodes().reduce((a, n) => a + (n.state === 'active' ? n.replicas : 0), 0),
    );
    if (decom.seconds !== null) markers.push({ at: tDecom + decom.seconds * 1000, label: `${victim} removed` });
    const end = performance.now();
    await load.stop();
    o.say(
      `decommission: ${victim} removed after ${decom.seconds ?? 'never'} s with ${decom.moves.decommission} moves ` +
        `(minimum ${decomMinimum}); p99 ${decom.load.p99Ms} ms, ${decom.load.writesPerSec} writes/s, ${decom.load.failed} failed writes`,
    );
    const buckets = Math.max(1, Math.ceil((end - baseFrom) / 1000));
    const timeline = new Array<number>(buckets).fill(0);
    for (const w of load.log) {
      const b = Math.floor((w.at - baseFrom) / 1000);
      if (w.ok && b >= 0 && b < buckets) timeline[b]++;
    }
    return {
      groups: o.groups,
      writers: o.writers,
      mover,
      baseline,
      joinCallMs,
      join: joined,
      decommission: decom,
      failedWrites: load.log.filter((w) => !w.ok).length,
      failedSamples: [...load.errors],
      timeline,
      markers: markers.map((m) => ({ x: round((m.at - baseFrom) / 1000, 1), label: m.label })),
    };
  } finally {
    await load?.stop();
    for (const n of nodes.values()) await n.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1]?.match(/elastic\.(ts|js)$/)) {
  const { values } = parseArgs({
    options: {
      groups: { type: 'string', default: '100' },
      writers: { type: 'string', default: '32' },
      seconds: { type: 'string', default: '5' },
      'max-moves-per-node': { type: 'string' },
    },
  });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const r = await runElastic({
    groups: Number(values.groups),
    writers: Number(values.writers),
    warmupSeconds: 3,
    baselineSeconds: Number(values.seconds),
    phaseLimitSeconds: 600,
    replicas: values['max-moves-per-node'] ? { maxMovesPerNode: Number(values['max-moves-per-node']) } : undefined,
    say,
  });
  say(JSON.stringify(r, null, 2));
  process.exit(0);
}
