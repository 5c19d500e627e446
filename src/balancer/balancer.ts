// LeaderBalancer: runs on every node and sheds leaderships this node should not hold. Only a
// leader can transfer, so each node acts on its own excess; nodes learn each other's leader
// counts, load, labels and health from small summaries exchanged every round.
//
// A round plans, in this order (each group moves at most once per round):
//  1. locality preferences: a group whose leader is not on the most preferred labels any healthy
//     voter of it has moves there (`preferences`, like CockroachDB's lease preferences);
//  2. follow-the-workload: a group most of whose requests come from another zone moves to a voter
//     in that zone (`followWorkload`);
//  3. the balance policy: `count` (leaders per node against a weighted fair share) or `load`
//     (per group an EWMA of writes/s + reads/s + bytes/s ÷ bytesPerOp; node load = the sum over
//     the groups it leads; the hottest groups move first). Balance moves never take a group away
//     from where 1 and 2 put it, so the phases cannot fight each other.
//
// When to balance, after TiKV PD and CockroachDB. A dead band keeps a balanced node still under
// small drift: a node sheds when it is over its fair share by more than `tolerance`. That alone
// let an under-loaded node stay so for good (after an undrain, 287/355/358 leaders against a
// share of 333: nobody is 10% over), and an under-loaded node cannot pull leaderships to itself.
// So a node also sheds when it is over its share, the least loaded node that may lead is under
// its own, and either of the two is more than half the band off: a source and a target are
// compared, as PD compares their scores, and at rest every node is within half the band. Both
// rules also want the gap to be worth a move (`minExcess` leaders, `minLoad` ops/s).
// Once started a node goes on down to its fair share (hysteresis). A target fills up to its
// share rounded up for count, so an integer split (333/333/334) is final; for load, which moves
// in uneven steps, up to half the band over it, while the source stops half the band under its
// own and never ends less loaded than the target: the reverse move never helps, so nothing goes
// back and forth. Nodes shedding at once split a target's gap by their excess.
// The fair shares need a total every node agrees on, and summaries made at different times
// miss or double the moves between them: the total comes from a settled view (view() says
// which), and load waits until a node that gained leaderships has measured them.
// Besides: at most `maxConcurrent` transfers per round, a per-group cooldown, a jittered
// interval, no leadership onto a node that started in the last `warmupMs` or is draining, and no
// action at all while a node is unreachable or draining.
//
// Targets are ranked by these criteria in order, each breaking ties of the last: up-to-date log
// first, then stable reachability, then storage latency (fsync tail) and CPU headroom, then
// maintenance sequencing (a node to be maintained next is last), then locality preference.
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import { BalancerConfigError } from './errors.js';

export interface Labels {
  readonly zone?: string;
  readonly rack?: string;
}

/** Where the leader of some groups should be: the first label set any healthy voter matches. */
export interface LeaderPreference {
  /** The groups it covers: ids, or an inclusive id range. (Keys reach groups by hash, so a key
   *  range is expressed as the groups its keys live in: `groupOfKey`.) */
  readonly groups: readonly number[] | { readonly from: number; readonly to: number };
  /** Label sets in order of preference, e.g. [{zone: 'a'}, {zone: 'b'}]. */
  readonly leaders: readonly Labels[];
}

export interface FollowWorkloadConfig {
  /** Default true (it acts only when nodes carry distinct `zone` labels). */
  readonly enabled?: boolean;
  /** Act on a group only when it serves at least this many requests/s (enough samples that a
   *  share is not noise: with 3 even zones, 10 requests show a 60% majority by chance 1 time in
   *  4; 40 requests, 1 in 10,000). Default 20. */
  readonly minRate?: number;
  /** ... and one other zone sends at least this share of them. Default 0.6. */
  readonly minShare?: number;
}

/** The health policy: a node whose storage is much slower than the rest of the cluster's gives
 *  its leaderships away, and nobody gives it any while that lasts ("green dashboard, bad leader":
 *  every replica is up, but a leader on a slow disk makes every write of its groups slow). */
export interface HealthConfig {
  /** Default true. */
  readonly enabled?: boolean;
  /** A node is slow when its storage commit p99 (last minute) is at least this many times the
   *  cluster's median... Default 4. */
  readonly factor?: number;
  /** ... and at least this many milliseconds above it... Default 20. */
  readonly minGapMs?: number;
  /** ... for this long; it is well again once it has been under that bar as long. Default 30,000. */
  readonly sustainMs?: number;
}

export interface BalancerConfig {
  /** Run rounds automatically. Default true. */
  readonly enabled?: boolean;
  /** Milliseconds between rounds (jittered by ±25%); a node still shedding goes on sooner. Default 2,000. */
  readonly intervalMs?: number;
  /** The dead band, as a fraction of the fair share. A node sheds when it is above
   *  fairShare × (1 + tolerance); or when it is above its fair share, the least loaded node that
   *  may take leaderships is below its own, and either of the two is more than tolerance / 2
   *  off (so at rest every node is within ±tolerance / 2). Once started it sheds down to its
   *  fair share. Default 0.1. */
  readonly tolerance?: number;
  /** count policy: ... and only when the excess (in the second case, the excess plus the other
   *  node's shortfall) is at least this many leaders. Default 2. */
  readonly minExcess?: number;
  /** Transfers per round at most. Default 64. */
  readonly maxConcurrent?: number;
  /** A group moved by the balancer is not moved again for this long. Default 30,000 ms. */
  readonly cooldownMs?: number;
  /** No leadership onto a node that started less than this ago. Default 5,000 ms. */
  readonly warmupMs?: number;
  /** Relative capacity per node (fair share is proportional). Default 1 each. */
  readonly weights?: Readonly<Record<NodeId, number>>;
  /** 'count' (leaders per node) or 'load' (served work per node). Default 'count'. */
  readonly policy?: 'count' | 'load';
  /** load policy: the same as minExcess, in ops/s. Default 20. */
  readonly minLoad?: number;
  /** load policy: never move a group carrying less than this share of the node's load. Default 0.01. */
  readonly minGroupShare?: number;
  /** load policy: bytes/s written count as one op/s per this many bytes. Default 4,096. */
  readonly bytesPerOp?: number;
  /** Locality preferences for leaders, per group. Default none. */
  readonly preferences?: readonly LeaderPreference[];
  readonly followWorkload?: FollowWorkloadConfig;
  readonly health?: HealthConfig;
}

const KNOWN = new Set([
  'enabled',
  'intervalMs',
  'tolerance',
  'minExcess',
  'maxConcurrent',
  'cooldownMs',
  'warmupMs',
  'weights',
  'policy',
  'minLoad',
  'minGroupShare',
  'bytesPerOp',
  'preferences',
  'followWorkload',
  'health',
]);

/** Throws a BalancerConfigError naming the first bad field (a message an operator can act on). */
export function validateBalancerConfig(c: BalancerConfig): void {
  if (typeof c !== 'object' || c === null || Array.isArray(c))
    throw new BalancerConfigError('InvalidSetting', 'balancer', 'must be an object');
  for (const k of Object.keys(c))
    if (!KNOWN.has(k)) throw new BalancerConfigError('UnknownSetting', `balancer.${k}`, 'unknown setting');
  if (c.policy !== undefined && c.policy !== 'count' && c.policy !== 'load')
    throw new BalancerConfigError('InvalidSetting', 'balancer.policy', "must be 'count' or 'load'");
  if (c.enabled !== undefined && typeof c.enabled !== 'boolean')
    throw new BalancerConfigError('InvalidSetting', 'balancer.enabled', 'must be true or false');
  const num = (path: string, v: unknown, min: number, max = Infinity) => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max)) {
      throw new BalancerConfigError(
        'InvalidSetting',
        `balancer.${path}`,
        `must be a number ${max === Infinity ? `>= ${min}` : `in ${min}..${max}`}`,
      );
    }
  };
  num('intervalMs', c.intervalMs, 10);
  num('tolerance', c.tolerance, 0);
  num('minExcess', c.minExcess, 1);
  num('maxConcurrent', c.maxConcurrent, 1);
  num('cooldownMs', c.cooldownMs, 0);
  num('warmupMs', c.warmupMs, 0);
  num('minLoad', c.minLoad, 0);
  num('minGroupShare', c.minGroupShare, 0);
  num('bytesPerOp', c.bytesPerOp, 1);
  if (c.weights !== undefined) {
    if (typeof c.weights !== 'object' || c.weights === null)
      throw new BalancerConfigError('InvalidSetting', 'balancer.weights', 'must be an object {node: weight}');
    for (const [n, w] of Object.entries(c.weights))
      if (typeof w !== 'number' || !(w > 0))
        throw new BalancerConfigError('InvalidSetting', `balancer.weights.${n}`, 'must be a number > 0');
  }
  if (c.preferences !== undefined) {
    if (!Array.isArray(c.preferences))
      throw new BalancerConfigError('InvalidSetting', 'balancer.preferences', 'must be a list of {groups, leaders}');
    c.preferences.forEach((p: LeaderPreference, i: number) => {
      const at = `balancer.preferences[${i}]`;
      if (typeof p !== 'object' || p === null)
        throw new BalancerConfigError('InvalidSetting', at, 'must be {groups, leaders}');
      const g = p.groups as unknown;
      const okList = Array.isArray(g) && g.every((x) => Number.isInteger(x) && x > 0);
      const okRange =
        !Array.isArray(g) &&
        typeof g === 'object' &&
        g !== null &&
        Number.isInteger((g as { from: number }).from) &&
        Number.isInteger((g as { to: number }).to) &&
        (g as { from: number }).from <= (g as { to: number }).to;
      if (!okList && !okRange)
        throw new BalancerConfigError('InvalidSetting', `${at}.groups`, 'must be a list of group ids or {from, to}');
      if (!Array.isArray(p.leaders) || p.leaders.length === 0)
        throw new BalancerConfigError(
          'InvalidSetting',
          `${at}.leaders`,
          'must be a non-empty list of label sets like {"zone": "a"}',
        );
      p.leaders.forEach((l, j) => {
        if (typeof l !== 'object' || l === null || Object.keys(l).length === 0)
          throw new BalancerConfigError(
            'InvalidSetting',
            `${at}.leaders[${j}]`,
            'must be a label set like {"zone": "a"}',
          );
        for (const [k, v] of Object.entries(l)) {
          if (k !== 'zone' && k !== 'rack')
            throw new BalancerConfigError('UnknownSetting', `${at}.leaders[${j}].${k}`, 'unknown label (zone or rack)');
          if (typeof v !== 'string')
            throw new BalancerConfigError('InvalidSetting', `${at}.leaders[${j}].${k}`, 'must be a string');
        }
      });
    });
  }
  if (c.followWorkload !== undefined) {
    const f = c.followWorkload;
    if (typeof f !== 'object' || f === null)
      throw new BalancerConfigError('InvalidSetting', 'balancer.followWorkload', 'must be an object');
    for (const k of Object.keys(f))
      if (!['enabled', 'minRate', 'minShare'].includes(k))
        throw new BalancerConfigError('UnknownSetting', `balancer.followWorkload.${k}`, 'unknown setting');
    if (f.enabled !== undefined && typeof f.enabled !== 'boolean')
      throw new BalancerConfigError('InvalidSetting', 'balancer.followWorkload.enabled', 'must be true or false');
    num('followWorkload.minRate', f.minRate, 0);
    num('followWorkload.minShare', f.minShare, 0.5, 1);
  }
  if (c.health !== undefined) {
    const h = c.health;
    if (typeof h !== 'object' || h === null)
      throw new BalancerConfigError('InvalidSetting', 'balancer.health', 'must be an object');
    for (const k of Object.keys(h))
      if (!['enabled', 'factor', 'minGapMs', 'sustainMs'].includes(k))
        throw new BalancerConfigError('UnknownSetting', `balancer.health.${k}`, 'unknown setting');
    if (h.enabled !== undefined && typeof h.enabled !== 'boolean')
      throw new BalancerConfigError('InvalidSetting', 'balancer.health.enabled', 'must be true or false');
    num('health.factor', h.factor, 1);
    num('health.minGapMs', h.minGapMs, 0);
    num('health.sustainMs', h.sustainMs, 0);
  }
}

export const BALANCER_DEFAULTS = {
  enabled: true,
  intervalMs: 2_000,
  tolerance: 0.1,
  minExcess: 2,
  maxConcurrent: 64,
  cooldownMs: 30_000,
  warmupMs: 5_000,
  policy: 'count',
  minLoad: 20,
  minGroupShare: 0.01,
  bytesPerOp: 4096,
  followWorkload: { enabled: true, minRate: 20, minShare: 0.6 },
  health: { enabled: true, factor: 4, minGapMs: 20, sustainMs: 30_000 },
} as const;

/** What a node tells the others each round. */
export interface NodeSummary {
  readonly leaders: number;
  /** Sum of the load of the groups it leads (load policy). */
  readonly load?: number;
  readonly draining: boolean;
  readonly uptimeMs: number;
  readonly labels?: Labels;
  /** p99 of its storage commits (fsync), ms. */
  readonly fsyncP99Ms?: number | null;
  /** CPU in use, as a fraction of its cores. */
  readonly cpu?: number | null;
  /** When it was made (the sender's Date.now()): moves we completed before then are in it. */
  readonly madeAt?: number;
  /** It judges its own storage slow (the health policy): it takes no leaderships. */
  readonly slow?: boolean;
}

/** A group this node leads, as the balancer sees it. */
export interface LedInfo {
  readonly group: number;
  readonly replicas: readonly NodeId[];
  readonly served?: { readonly writes: number; readonly reads: number; readonly bytes?: number };
  /** Entries each peer lacks. */
  readonly lag?: Readonly<Record<NodeId, number>>;
  readonly learners?: readonly NodeId[];
}

/** What the balancer needs from its node. */
export interface BalancerHost {
  readonly id: NodeId;
  readonly peers: readonly NodeId[];
  readonly labels?: Labels;
  isConnected(peer: NodeId): boolean;
  isDraining(): boolean;
  uptimeMs(): number;
  ledGroups(): Promise<LedInfo[]>;
  /** How many groups it leads, without listing them: a round that finds nothing to move (the
   *  steady state) needs no more, and listing thousands of groups every round was most of an
   *  idle node's CPU. Optional: without it every round lists. */
  ledCount?(): Promise<number>;
  transfer(group: number, to: NodeId): Promise<unknown>;
  broadcastSummary(s: NodeSummary): void;
  /** Requests served as leader since the last call, per group and per origin node. */
  takeOrigins?(): Map<number, Map<NodeId, number>>;
  /** This node's storage tail and CPU use, for the peers' target ranking. */
  health?(): Promise<{ fsyncP99Ms: number | null; cpu: number | null }>;
}

export type MoveKind = 'health' | 'locality' | 'workload' | 'count' | 'load';

export interface PlannedMove {
  readonly group: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly kind: MoveKind;
  readonly reason: string;
  /** The policy's measure (leaders, load, or for locality the preference rank: 0 = best) of
   *  the source and the target, before and after this move. */
  readonly before: { readonly from: number; readonly to: number };
  readonly after: { readonly from: number; readonly to: number };
}

export interface Plan {
  readonly node: NodeId;
  readonly policy?: 'count' | 'load';
  /** Why nothing (more) is planned, when that is the case. */
  readonly idle: string | null;
  /** Per node: leaders (count policy) or load (load policy). */
  readonly leaders: Record<NodeId, number>;
  readonly fairShare: Record<NodeId, number>;
  /** Largest relative distance of any node from its fair share, before and after the moves. */
  readonly score?: { readonly before: number; readonly after: number };
  /** Nodes the health policy holds slow (they shed their leaderships and take none), and why
   *  for this node when it is one. */
  readonly slow?: { readonly nodes: NodeId[]; readonly self?: string };
  readonly moves: PlannedMove[];
}

/** What ranks one candidate target (see rankTargets for the order). */
export interface TargetFacts {
  readonly id: NodeId;
  /** Entries it lacks (0 = caught up). */
  readonly lag: number;
  /** Its summary is recent (it has been reachable without gaps). */
  readonly stable: boolean;
  readonly fsyncP99Ms?: number | null;
  readonly cpu?: number | null;
  /** Named as the next to be maintained. */
  readonly avoid?: boolean;
  /** Index of the first leader preference it matches (0 = best; Infinity = none or no preference). */
  readonly preference?: number;
  /** The policy's measure per unit of weight: less is a better target. */
  readonly measure?: number;
}

/** Best first. Coarse buckets so that noise in one criterion does not override the next. */
export function rankTargets<T extends TargetFacts>(cands: readonly T[]): T[] {
  const lagBucket = (l: number) => (l <= 0 ? 0 : l <= 64 ? 1 : 2);
  const fsyncBucket = (ms: number | null | undefined) =>
    ms == null ? 0 : Math.max(0, Math.floor(Math.log2(Math.max(1, ms))));
  const cpuBucket = (c: number | null | undefined) => (c == null ? 0 : Math.floor(Math.min(1, Math.max(0, c)) * 4));
  const key = (t: T) => [
    lagBucket(t.lag),
    t.stable ? 0 : 1,
    fsyncBucket(t.fsyncP99Ms),
    cpuBucket(t.cpu),
    t.avoid ? 1 : 0,
    t.preference ?? Infinity,
    t.measure ?? 0,
  ];
  const keys = new Map(cands.map((t) => [t, key(t)]));
  return [...cands].sort((a, b) => {
    const ka = keys.get(a)!;
    const kb = keys.get(b)!;
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/** Index of the first label set `labels` matches (Infinity when none does). */
export function preferenceRank(pref: LeaderPreference | undefined, labels: Labels | undefined): number {
  if (!pref) return Infinity;
  for (let i = 0; i < pref.leaders.length; i++) {
    const want = pref.leaders[i];
    if (Object.entries(want).every(([k, v]) => (labels as Record<string, string | undefined> | undefined)?.[k] === v))
      return i;
  }
  return Infinity;
}

/** How old a peer's summary may be on arrival (made before moves we completed that recently). */
const SUMMARY_SLACK_MS = 1000;
/** Allowed difference between two nodes' clocks when comparing a summary's time with ours. */
const CLOCK_SKEW_MS = 50;
/** For how many intervals the total of a settled view stands in for an unsettled one's. */
const SETTLED_FOR = 10;

type Cfg = Required<Omit<BalancerConfig, 'weights' | 'policy' | 'preferences' | 'followWorkload' | 'health'>> & {
  weights: Readonly<Record<NodeId, number>>;
  policy: 'count' | 'load';
  preferences: readonly LeaderPreference[];
  followWorkload: Required<FollowWorkloadConfig>;
  health: Required<HealthConfig>;
};

/** The health policy's judgement of this node, kept across rounds (the bar must hold for a while
 *  before the judgement turns, either way). */
interface SelfHealth {
  slow: boolean;
  /** Whether the last round's figures were over the bar, and since when they have been so. */
  over: boolean;
  since: number;
  /** The last round's figures, for the plan's explanation. */
  p99Ms: number | null;
  medianMs: number | null;
}

/** The lower median (of several nodes' figures, so that a majority is never judged slow). */
function lowerMedian(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/** What a summary says of the policies' measures. */
type Measures = Pick<NodeSummary, 'leaders' | 'load'>;

interface Rate {
  writes: number;
  reads: number;
  bytes: number;
  at: number;
  /** EWMA of the load in ops/s (-1 before the second sample). */
  ewma: number;
}

export class LeaderBalancer {
  private cfg: Cfg;
  private raw: BalancerConfig;
  private readonly rates = new Map<number, Rate>();
  /** Per led group: EWMA of requests/s by origin zone. */
  private readonly origins = new Map<number, Map<string, number>>();
  private originsAt = 0;
  /** The peers' latest summaries, with when they arrived and what the earlier ones of the last
   *  few rounds said (oldest first). */
  private readonly summaries = new Map<NodeId, NodeSummary & { at: number; past: (Measures & { at: number })[] }>();
  /** Leaderships moved to a peer since its last summary arrived (its count there is behind), with
   *  when and the load each carried. */
  private readonly sentSince = new Map<NodeId, { at: number; load: number }[]>();
  /** The sum of the policy's measure over all nodes in the last settled view (see view()). */
  private settled: { at: number; total: number } | null = null;
  /** This node's leader count when view() last looked, and since when it has been that. */
  private mine = { leaders: -1, since: 0 };
  private readonly cooldown = new Map<number, number>();
  /** The count policy is shedding (hysteresis: it goes on down to the fair share). */
  private shedding = false;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private selfHealth: SelfHealth = { slow: false, over: false, since: 0, p99Ms: null, medianMs: null };
  readonly stats = {
    rounds: 0,
    moves: 0,
    failed: 0,
    skippedUnhealthy: 0,
    /** Rounds that listed this node's groups (the others needed only their count). */
    listed: 0,
    movesByKind: { health: 0, locality: 0, workload: 0, count: 0, load: 0 } as Record<MoveKind, number>,
    /** Failed moves by the transfer's reason (or error code). */
    failedByReason: {} as Record<string, number>,
  };

  constructor(
    private readonly host: BalancerHost,
    cfg: BalancerConfig,
    private readonly log: Logger,
    private readonly random: () => number = Math.random,
  ) {
    this.raw = cfg;
    this.cfg = LeaderBalancer.resolve(cfg);
  }

  private static resolve(cfg: BalancerConfig): Cfg {
    return {
      ...BALANCER_DEFAULTS,
      ...cfg,
      weights: cfg.weights ?? {},
      policy: cfg.policy ?? 'count',
      preferences: cfg.preferences ?? [],
      followWorkload: { ...BALANCER_DEFAULTS.followWorkload, ...cfg.followWorkload },
      health: { ...BALANCER_DEFAULTS.health, ...cfg.health },
    };
  }

  /** The settings in force, defaults filled in. */
  config(): Cfg {
    return this.cfg;
  }

  /** Change settings at run time (like pd-ctl config set): `patch` is merged over the current
   *  settings, validated as a whole (throws naming the field), then takes effect next round. */
  reconfigure(patch: BalancerConfig): Cfg {
    const next = { ...this.raw, ...patch };
    validateBalancerConfig(next);
    this.raw = next;
    this.cfg = LeaderBalancer.resolve(next);
    this.settled = null; // the policy (the measure summed) may have changed
    if (this.cfg.enabled) this.start();
    else this.stop();
    this.log.info({ patch }, 'balancer reconfigured');
    return this.cfg;
  }

  get enabled(): boolean {
    return this.cfg.enabled;
  }

  start(): void {
    if (this.timer || !this.cfg.enabled) return;
    this.schedule(this.cfg.intervalMs);
  }

  private schedule(ms: number): void {
    const jitter = 0.75 + 0.5 * this.random();
    this.timer = setTimeout(() => {
      void this.round().then(
        (plan) => {
          // Still shedding: go on as soon as this round's transfers are done.
          if (this.timer)
            this.schedule(plan.moves.length > 0 ? Math.min(this.cfg.intervalMs, 100) : this.cfg.intervalMs);
        },
        () => {
          if (this.timer) this.schedule(this.cfg.intervalMs);
        },
      );
    }, ms * jitter);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A peer's summary arrived (with the coalesced heartbeat traffic of the node pair). */
  onSummary(from: NodeId, s: NodeSummary): void {
    const last = this.summaries.get(from);
    const keep = Date.now() - 3 * this.cfg.intervalMs;
    const past = last
      ? [...last.past.filter((e) => e.at >= keep), { at: last.at, leaders: last.leaders, load: last.load }]
      : [];
    this.summaries.set(from, { ...s, at: Date.now(), past });
    // A summary counts the moves that completed before it was made (the target leads before we
    // see the transfer verified). Without its time (or with clocks far apart) moves of the last
    // second still count on top of it: counting a move twice only delays the next one, missing
    // it would overshoot.
    const now = Date.now();
    const made =
      typeof s.madeAt === 'number' && Math.abs(s.madeAt - now) < SUMMARY_SLACK_MS
        ? s.madeAt - CLOCK_SKEW_MS
        : now - SUMMARY_SLACK_MS;
    const recent = (this.sentSince.get(from) ?? []).filter((e) => e.at > made);
    if (recent.length) this.sentSince.set(from, recent);
    else this.sentSince.delete(from);
  }

  /** The groups of `preferences` that cover `group` (the first listed wins). */
  preferenceOf(group: number): LeaderPreference | undefined {
    return this.cfg.preferences.find((p) =>
      Array.isArray(p.groups)
        ? (p.groups as number[]).includes(group)
        : group >= (p.groups as { from: number }).from && group <= (p.groups as { to: number }).to,
    );
  }

  labelsOf(n: NodeId): Labels | undefined {
    return n === this.host.id ? this.host.labels : this.summaries.get(n)?.labels;
  }

  /** Fold the groups' served counters into their EWMA load (ops/s). */
  private updateRates(led: readonly LedInfo[], origins: Map<number, Map<NodeId, number>> | undefined): void {
    const now = Date.now();
    const seen = new Set<number>();
    for (const g of led) {
      seen.add(g.group);
      const w = g.served?.writes ?? 0;
      const r = g.served?.reads ?? 0;
      const b = g.served?.bytes ?? 0;
      const prev = this.rates.get(g.group);
      if (!prev || w < prev.writes || r < prev.reads) {
        this.rates.set(g.group, { writes: w, reads: r, bytes: b, at: now, ewma: -1 });
        continue;
      }
      const dt = (now - prev.at) / 1000;
      if (dt <= 0.05) continue;
      const rate = (w - prev.writes + r - prev.reads + (b - prev.bytes) / this.cfg.bytesPerOp) / dt;
      this.rates.set(g.group, {
        writes: w,
        reads: r,
        bytes: b,
        at: now,
        ewma: prev.ewma < 0 ? rate : 0.5 * rate + 0.5 * prev.ewma,
      });
    }
    for (const g of [...this.rates.keys()]) if (!seen.has(g)) this.rates.delete(g);
    this.updateOrigins(seen, now, origins);
  }

  private updateOrigins(led: Set<number>, now: number, counts: Map<number, Map<NodeId, number>> | undefined): void {
    if (!counts) return;
    const dt = this.originsAt ? (now - this.originsAt) / 1000 : 0;
    this.originsAt = now;
    if (dt <= 0.05) return;
    for (const g of [...this.origins.keys()]) if (!led.has(g)) this.origins.delete(g);
    for (const g of led) {
      const byZone = new Map<string, number>();
      for (const [origin, n] of counts.get(g) ?? []) {
        const z = this.labelsOf(origin)?.zone;
        if (z !== undefined) byZone.set(z, (byZone.get(z) ?? 0) + n / dt);
      }
      const prev = this.origins.get(g);
      if (!prev && byZone.size === 0) continue;
      const next = new Map<string, number>();
      for (const z of new Set([...byZone.keys(), ...(prev?.keys() ?? [])])) {
        // A slow average (about 3 rounds): one round's sample is too small to act on.
        const v = prev ? 0.3 * (byZone.get(z) ?? 0) + 0.7 * (prev.get(z) ?? 0) : (byZone.get(z) ?? 0);
        if (v >= 0.01) next.set(z, v);
      }
      if (next.size) this.origins.set(g, next);
      else this.origins.delete(g);
    }
  }

  private loadOf(group: number): number {
    return Math.max(0, this.rates.get(group)?.ewma ?? 0);
  }

  /** Relative capacity for leaderships: none while the health policy holds the node slow. */
  private weight(n: NodeId): number {
    return this.isSlow(n) ? 0 : (this.cfg.weights[n] ?? 1);
  }

  /** The health policy holds `n` slow: this node by its own judgement, a peer by its summary's. */
  isSlow(n: NodeId): boolean {
    if (!this.cfg.health.enabled) return false;
    if (n === this.host.id) return this.selfHealth.slow;
    const s = this.summaries.get(n);
    return s?.slow === true && s.at >= Date.now() - 3 * this.cfg.intervalMs;
  }

  /** Judge this node's storage against the cluster's (the health policy): slow when its commit
   *  p99 has been at least `factor` times the lower median of every node's recent figure, and
   *  `minGapMs` above it, for `sustainMs`; well again after as long under that bar. The lower
   *  median includes this node, so a majority is never slow: a cluster whose disks are all slow
   *  keeps its leaders where they are. Without figures (an idle node commits nothing) the
   *  judgement stands still. */
  judgeHealth(ownP99Ms: number | null, now = Date.now()): void {
    const h = this.cfg.health;
    const st = this.selfHealth;
    if (!h.enabled) return;
    const stale = now - 3 * this.cfg.intervalMs;
    const figures = [
      ownP99Ms,
      ...this.host.peers.map((p) => {
        const s = this.summaries.get(p);
        return s && s.at >= stale ? s.fsyncP99Ms : null;
      }),
    ].filter((x): x is number => typeof x === 'number');
    if (ownP99Ms === null || figures.length < 2) return;
    const median = lowerMedian(figures);
    st.p99Ms = ownP99Ms;
    st.medianMs = median;
    const over = ownP99Ms >= h.factor * median && ownP99Ms - median >= h.minGapMs;
    if (over !== st.over) {
      st.over = over;
      st.since = now;
    }
    if (over !== st.slow && now - st.since >= h.sustainMs) {
      st.slow = over;
      this.log.warn(
        { p99Ms: ownP99Ms, medianMs: median, factor: h.factor },
        over
          ? "health: this node's storage is slow against the cluster's; shedding its leaderships"
          : "health: this node's storage is well again; it takes leaderships again",
      );
    }
  }

  /** What every node holds by the policy's measure (this node's `mine`, the peers' from recent
   *  summaries, plus what this node sent them since: one leader or the group's load each), each
   *  node's weighted fair share, and why no round may act now (or null). */
  private view(
    mine: { value: number; leaders: number; measured: boolean },
    ofSummary: (s: Measures) => number | undefined,
    perMove: (e: { load: number }) => number,
  ): { values: Record<NodeId, number>; fairShare: Record<NodeId, number>; idle: string | null; estimated: boolean } {
    const nodes = [this.host.id, ...this.host.peers];
    const values: Record<NodeId, number> = { [this.host.id]: mine.value };
    const fairShare: Record<NodeId, number> = {};
    const now = Date.now();
    const stale = now - 3 * this.cfg.intervalMs;
    for (const p of this.host.peers) {
      const s = this.summaries.get(p);
      const v = s && s.at >= stale ? ofSummary(s) : undefined;
      if (v !== undefined) values[p] = v + (this.sentSince.get(p) ?? []).reduce((a, e) => a + perMove(e), 0);
    }
    const down = this.host.peers.filter((p) => !this.host.isConnected(p));
    const missing = this.host.peers.filter((p) => values[p] === undefined);
    // The fair shares need the cluster's total, and summaries made at different times miss or
    // double the moves made between them: a total short by a move another node just made would
    // have us shed what it already gave (and one too large would fill a target past its share).
    // So the total comes from a settled view: no leader count (ours included) changed after the
    // oldest of the summaries arrived, so each of them already counts every move between the
    // others; no move of ours is unconfirmed; every load is measured. It is kept while moves
    // are under way. Before any settled view, what a peer lost since the oldest summary counts
    // as well (its targets may not have told yet); but only the dead band acts on such an
    // estimate, and load, whose first summaries are not measured yet, waits for a settled view.
    const sum = nodes.reduce((a, n) => a + (values[n] ?? 0), 0);
    if (this.mine.leaders !== mine.leaders) this.mine = { leaders: mine.leaders, since: now };
    const oldest = Math.min(...this.host.peers.map((p) => this.summaries.get(p)?.at ?? 0));
    /** When the summaries started to show a peer's current leader count. */
    const changedAt = (s: NodeSummary & { at: number; past: (Measures & { at: number })[] }) => {
      let at = s.at;
      for (let i = s.past.length - 1; i >= 0 && s.past[i].leaders === s.leaders; i--) at = s.past[i].at;
      return at;
    };
    const settled =
      !missing.length &&
      mine.measured &&
      this.sentSince.size === 0 &&
      this.mine.since <= oldest &&
      this.host.peers.every((p) => changedAt(this.summaries.get(p)!) <= oldest);
    if (settled) this.settled = { at: now, total: sum };
    let total = sum;
    const kept = !settled && this.settled !== null && this.settled.at >= now - SETTLED_FOR * this.cfg.intervalMs;
    if (kept) total = this.settled!.total;
    else if (!settled) {
      for (const p of this.host.peers) {
        const s = this.summaries.get(p);
        if (!s || values[p] === undefined || s.at <= oldest || !s.past.length) continue;
        const then = [...s.past].reverse().find((e) => e.at <= oldest) ?? s.past[0];
        total += Math.max(0, (ofSummary(then) ?? 0) - (ofSummary(s) ?? 0));
      }
    }
    const wsum = nodes.reduce((a, n) => a + this.weight(n), 0);
    for (const n of nodes) fairShare[n] = wsum > 0 ? (total * this.weight(n)) / wsum : total / nodes.length;
    const draining = nodes.filter((n) =>
      n === this.host.id ? this.host.isDraining() : this.summaries.get(n)?.draining,
    );
    const idle = down.length
      ? `unhealthy: ${down.join(', ')} unreachable`
      : missing.length
        ? `no recent summary from ${missing.join(', ')}`
        : draining.length
          ? `maintenance: ${draining.join(', ')} draining`
          : null;
    return { values, fairShare, idle, estimated: !settled && !kept };
  }

  /** A peer may take leaderships now: reachable, not draining, warmed up. */
  private mayLead(p: NodeId): boolean {
    const s = this.summaries.get(p);
    return (
      this.host.isConnected(p) && s?.draining !== true && (s?.uptimeMs ?? 0) >= this.cfg.warmupMs && !this.isSlow(p)
    );
  }

  /** Nodes whose load is not all in their summary yet: a group's rate needs two samples on its
   *  leader, so a node that gained leaderships since its last round (or whose first summary
   *  this is) reports less than it serves, and a share computed from it would be too small. */
  private unmeasured(led: readonly LedInfo[]): NodeId[] {
    const out = led.some((g) => (this.rates.get(g.group)?.ewma ?? -1) < 0) ? [this.host.id] : [];
    for (const p of this.host.peers) {
      const s = this.summaries.get(p);
      const prev = s?.past[s.past.length - 1];
      if (s && (prev === undefined || s.leaders > prev.leaders)) out.push(p);
    }
    return out;
  }

  /** Replicas of `g` that may take its leadership now: voters, reachable, not draining, warmed
   *  up, not held slow. */
  private eligible(g: LedInfo): NodeId[] {
    const learners = new Set(g.learners ?? []);
    return g.replicas.filter((r) => r !== this.host.id && !learners.has(r) && this.mayLead(r));
  }

  /** Facts for ranking `r` as the target of `g`. */
  facts(g: LedInfo, r: NodeId, extra: { avoid?: boolean; measure?: number } = {}): TargetFacts {
    const s = this.summaries.get(r);
    return {
      id: r,
      lag: g.lag?.[r] ?? 0,
      stable: s !== undefined && s.at >= Date.now() - 1.5 * this.cfg.intervalMs,
      fsyncP99Ms: s?.fsyncP99Ms,
      cpu: s?.cpu,
      avoid: extra.avoid,
      preference: preferenceRank(this.preferenceOf(g.group), s?.labels),
      measure: extra.measure,
    };
  }

  /** Drain's choice for one group: every eligible replica not draining, best first (`avoid` last). */
  drainTargets(g: LedInfo, avoid: ReadonlySet<NodeId>, draining: ReadonlySet<NodeId>): NodeId[] {
    const learners = new Set(g.learners ?? []);
    const cands = g.replicas.filter(
      (r) => r !== this.host.id && !learners.has(r) && this.host.isConnected(r) && !draining.has(r) && !avoid.has(r),
    );
    return rankTargets(cands.map((r) => this.facts(g, r))).map((t) => t.id);
  }

  /** The moves this node would make now, and why (or why none). */
  async plan(): Promise<Plan> {
    return this.planFor(await this.host.ledGroups());
  }

  /** `led` null: only `count` is known (a brief round, see round()); the plan then has
   *  `needGroups` set where it would move something, and the round lists the groups and plans
   *  again. */
  private planFor(ledOrNull: readonly LedInfo[] | null, count = ledOrNull?.length ?? 0): Plan & { needGroups?: true } {
    const led = ledOrNull ?? [];
    const load = this.cfg.policy === 'load';
    const measureOf = (g: LedInfo) => (load ? this.loadOf(g.group) : 1);
    const unmeasured = load ? this.unmeasured(led) : [];
    const { values, fairShare, idle, estimated } = this.view(
      {
        value: ledOrNull ? led.reduce((a, g) => a + measureOf(g), 0) : count,
        leaders: count,
        measured: !unmeasured.length,
      },
      (s) => (load ? s.load : s.leaders),
      (e) => (load ? e.load : 1),
    );
    const slowNodes = [this.host.id, ...this.host.peers].filter((n) => this.isSlow(n));
    const sh = this.selfHealth;
    const selfWhy =
      this.isSlow(this.host.id) && sh.p99Ms !== null && sh.medianMs !== null
        ? `health: ${this.host.id}'s storage commit p99 ${sh.p99Ms.toFixed(1)} ms is ${(sh.p99Ms / Math.max(sh.medianMs, 0.001)).toFixed(1)}x the cluster median ${sh.medianMs.toFixed(1)} ms (bar: ${this.cfg.health.factor}x and +${this.cfg.health.minGapMs} ms for ${this.cfg.health.sustainMs / 1000} s)`
        : undefined;
    const base = {
      node: this.host.id,
      ...(load ? { policy: 'load' as const } : {}),
      leaders: values,
      fairShare,
      ...(slowNodes.length ? { slow: { nodes: slowNodes, ...(selfWhy ? { self: selfWhy } : {}) } } : {}),
    };
    if (idle) return { ...base, idle, moves: [] };
    const now = Date.now();
    const cur = { ...values };
    const moves: PlannedMove[] = [];
    const moved = new Set<number>();
    /** Per group: the targets a balance move may choose (null: any). */
    const keepWithin = new Map<number, Set<NodeId>>();
    const budget = this.cfg.maxConcurrent;
    const cooling = (g: number) => (this.cooldown.get(g) ?? 0) > now;
    const move = (
      g: LedInfo,
      to: NodeId,
      kind: MoveKind,
      reason: string,
      before: { from: number; to: number },
      after: { from: number; to: number },
    ) => {
      moves.push({ group: g.group, from: this.host.id, to, kind, reason, before, after });
      moved.add(g.group);
      const m = measureOf(g);
      cur[this.host.id] -= m;
      cur[to] = (cur[to] ?? 0) + m;
    };

    // 0. Health: a node held slow gives every leadership away, to the best-ranked replica that
    // is not (cooldowns do not hold it back: its groups' writes are slow as long as it leads).
    if (selfWhy) {
      if (!ledOrNull) return { ...base, idle: null, moves: [], needGroups: true };
      for (const g of led) {
        if (moves.length >= budget) break;
        const cands = this.eligible(g);
        if (!cands.length) continue;
        const to = rankTargets(cands.map((r) => this.facts(g, r, { measure: cur[r] / this.weight(r) })))[0].id;
        move(
          g,
          to,
          'health',
          selfWhy,
          { from: cur[this.host.id], to: cur[to] ?? 0 },
          { from: cur[this.host.id] - measureOf(g), to: (cur[to] ?? 0) + measureOf(g) },
        );
      }
    }

    // 1. Locality preferences.
    for (const g of led) {
      const pref = this.preferenceOf(g.group);
      if (!pref) continue;
      const elig = this.eligible(g);
      const mine = preferenceRank(pref, this.host.labels);
      const best = Math.min(mine, ...elig.map((r) => preferenceRank(pref, this.labelsOf(r))));
      if (best === Infinity) continue;
      // Balance moves stay on replicas as preferred as the one leading now.
      keepWithin.set(
        g.group,
        new Set(
          elig.filter((r) => preferenceRank(pref, this.labelsOf(r)) <= Math.max(best, mine === Infinity ? best : mine)),
        ),
      );
      if (mine <= best || moves.length >= budget || cooling(g.group) || moved.has(g.group)) continue;
      const targets = rankTargets(
        elig.filter((r) => preferenceRank(pref, this.labelsOf(r)) === best).map((r) => this.facts(g, r)),
      );
      if (!targets.length) continue;
      const want = JSON.stringify(pref.leaders[best]);
      move(
        g,
        targets[0].id,
        'locality',
        `locality: group ${g.group} prefers leaders on ${want}; ${this.host.id} matches ${mine === Infinity ? 'no preference' : JSON.stringify(pref.leaders[mine])}`,
        { from: mine === Infinity ? pref.leaders.length : mine, to: best },
        { from: best, to: mine === Infinity ? pref.leaders.length : mine },
      );
    }

    // 2. Follow the workload (groups without an explicit preference).
    const fw = this.cfg.followWorkload;
    const myZone = this.host.labels?.zone;
    if (fw.enabled && myZone !== undefined) {
      for (const g of led) {
        if (moved.has(g.group) || this.preferenceOf(g.group)) continue;
        const byZone = this.origins.get(g.group);
        if (!byZone) continue;
        const total = [...byZone.values()].reduce((a, b) => a + b, 0);
        if (total < fw.minRate) continue;
        const [topZone, topRate] = [...byZone].sort((a, b) => b[1] - a[1])[0];
        const share = topRate / total;
        if (share < fw.minShare) continue;
        const elig = this.eligible(g);
        if (topZone === myZone) {
          keepWithin.set(g.group, new Set(elig.filter((r) => this.labelsOf(r)?.zone === myZone)));
          continue;
        }
        const inZone = elig.filter((r) => this.labelsOf(r)?.zone === topZone);
        if (!inZone.length || moves.length >= budget || cooling(g.group)) continue;
        const to = rankTargets(inZone.map((r) => this.facts(g, r)))[0].id;
        const mineShare = (byZone.get(myZone) ?? 0) / total;
        move(
          g,
          to,
          'workload',
          `workload: ${(100 * share).toFixed(0)}% of group ${g.group}'s ${total.toFixed(0)} req/s come from zone ${topZone}; ${this.host.id} is in ${myZone}`,
          { from: mineShare, to: share },
          { from: share, to: mineShare },
        );
      }
    }

    // 3. Balance by count or load (the header says when and why).
    const me = this.host.id;
    const fair = fairShare[me];
    const mine0 = values[me];
    const over = cur[me] - fair;
    const tol = this.cfg.tolerance;
    const minGap = load ? this.cfg.minLoad : this.cfg.minExcess;
    /** Where a node stands against its fair share (0 = on it, 0.1 = 10% over). */
    const off = (n: NodeId) => (fairShare[n] > 0 ? values[n] / fairShare[n] - 1 : 0);
    const low = this.host.peers
      .filter((p) => this.mayLead(p))
      .sort((a, b) => off(a) - off(b) || (a < b ? -1 : a > b ? 1 : 0))[0] as NodeId | undefined;
    const band = mine0 > fair * (1 + tol) && mine0 - fair >= minGap;
    const pair =
      !estimated &&
      low !== undefined &&
      (load ? mine0 > fair : mine0 - fair >= 1) &&
      values[low] < fairShare[low] &&
      (off(me) > tol / 2 || -off(low) > tol / 2) &&
      mine0 - fair + (fairShare[low] - values[low]) >= minGap;
    let why: string | null = null;
    if (unmeasured.length) {
      why = `waiting: the load of ${unmeasured.join(', ')} is not all measured yet (leaderships gained since the last round)`;
    } else if (load && estimated) {
      why = 'waiting: no settled view of the total load yet';
    } else if (!band && !pair && !(!load && this.shedding && over >= 1)) {
      why = load
        ? `balanced: load ${mine0.toFixed(0)} ops/s, fair share ${fair.toFixed(0)}`
        : `balanced: ${mine0} leaders, fair share ${fair.toFixed(1)}`;
    } else if (!ledOrNull) {
      return { ...base, idle: null, moves: [], needGroups: true };
    } else {
      const weight = (n: NodeId) => this.weight(n);
      // How far a target may fill: its fair share, rounded up for count (so that an integer
      // split is final); for load, which moves in uneven steps, half the band over it, while the
      // source goes no lower than half the band under its own.
      const cap = (n: NodeId) => (load ? fairShare[n] * (1 + tol / 2) : Math.ceil(fairShare[n]));
      const floor = fair * (1 - tol / 2);
      const order = load ? [...led].sort((a, b) => this.loadOf(b.group) - this.loadOf(a.group)) : led;
      let wanted = load ? Infinity : Math.floor(over);
      const before0 = moves.length;
      // Several nodes may shed at once onto the same under-loaded node, each from summaries a
      // round old: each may fill only its share (its excess over everyone's) of a target's gap.
      const nodes = Object.keys(fairShare);
      const totalExcess = nodes.reduce((a, n) => a + Math.max(0, values[n] - fairShare[n]), 0);
      const myShare = totalExcess > 0 ? Math.max(0, mine0 - fair) / totalExcess : 1;
      const quota = Object.fromEntries(
        nodes.map((n) => [n, load ? (cap(n) - values[n]) * myShare : Math.ceil((cap(n) - values[n]) * myShare)]),
      );
      const given: Record<NodeId, number> = {};
      const pct = (x: number) => `${(100 * Math.abs(x)).toFixed(0)}%`;
      const pairNote =
        pair && !band ? `; ${me} is ${pct(off(me))} over and ${low} ${pct(off(low!))} under their fair shares` : '';
      for (const g of order) {
        if (moves.length >= budget || wanted <= 0 || cur[me] <= fair) break;
        if (moved.has(g.group) || cooling(g.group)) continue;
        const gl = measureOf(g);
        if (load && (gl < this.cfg.minGroupShare * mine0 || gl <= 0)) break; // the rest are colder still
        const keep = keepWithin.get(g.group);
        // Move only what helps: the target stays within what it may fill, and (load) we stay
        // above our floor and no less loaded than the target, so the gap between us shrinks.
        const room = (r: NodeId) =>
          cur[r] + gl <= cap(r) &&
          (given[r] ?? 0) + gl <= quota[r] &&
          (!load || (cur[me] - gl >= floor && (cur[me] - gl) / weight(me) >= (cur[r] + gl) / weight(r)));
        const cands = this.eligible(g).filter((r) => (!keep || keep.has(r)) && room(r));
        if (!cands.length) continue;
        const to = rankTargets(cands.map((r) => this.facts(g, r, { measure: cur[r] / weight(r) })))[0].id;
        const b = { from: cur[me], to: cur[to] };
        const reason = load
          ? `load: ${me} serves ${mine0.toFixed(0)} ops/s > fair share ${fair.toFixed(0)}; group ${g.group} carries ${gl.toFixed(0)}; ${to} serves ${values[to].toFixed(0)}${pairNote}`
          : `count: ${me} has ${mine0} > fair share ${fair.toFixed(1)}; ${to} has ${values[to]}${pairNote}`;
        move(g, to, load ? 'load' : 'count', reason, b, { from: cur[me] - gl, to: cur[to] + gl });
        given[to] = (given[to] ?? 0) + gl;
        wanted--;
      }
      if (moves.length === before0)
        why = load
          ? 'no move helps (targets would exceed their share, cooldown, warm-up or locality)'
          : 'no eligible target (warm-up, cooldown, replicas or locality)';
    }
    const spread = (v: Record<NodeId, number>) =>
      Math.max(
        0,
        ...Object.keys(fairShare).map((n) =>
          fairShare[n] > 0 ? Math.abs((v[n] ?? 0) - fairShare[n]) / fairShare[n] : 0,
        ),
      );
    return {
      ...base,
      idle: moves.length ? null : (why ?? 'nothing to move'),
      score: { before: spread(values), after: spread(cur) },
      moves,
    };
  }

  /** One round: tell the peers our summary, then make the planned moves (verified transfers). */
  async round(): Promise<Plan> {
    if (this.running)
      return { node: this.host.id, idle: 'a round is already running', leaders: {}, fairShare: {}, moves: [] };
    this.running = true;
    try {
      this.stats.rounds++;
      const origins = this.host.takeOrigins?.();
      // The steady state needs only how many groups this node leads: the count policy, no
      // locality preference, no workload to follow, not slow. Then the groups are listed only
      // when the plan would move some (and the round plans again with them).
      const followed =
        this.cfg.followWorkload.enabled &&
        this.host.labels?.zone !== undefined &&
        ((origins?.size ?? 0) > 0 || this.origins.size > 0);
      const brief =
        this.host.ledCount &&
        this.cfg.policy === 'count' &&
        this.cfg.preferences.length === 0 &&
        !followed &&
        !this.isSlow(this.host.id);
      let count = brief ? await this.host.ledCount!() : -1;
      let led: LedInfo[] | null = null;
      if (!brief) {
        led = await this.host.ledGroups();
        count = led.length;
        this.updateRates(led, origins);
        this.stats.listed++;
      }
      const health = await this.host.health?.().catch(() => null);
      this.judgeHealth(health?.fsyncP99Ms ?? null);
      let load = 0;
      if (led) for (const g of led) load += this.loadOf(g.group);
      else for (const r of this.rates.values()) load += Math.max(0, r.ewma);
      this.host.broadcastSummary({
        leaders: count,
        load,
        draining: this.host.isDraining(),
        uptimeMs: this.host.uptimeMs(),
        labels: this.host.labels,
        fsyncP99Ms: health?.fsyncP99Ms ?? null,
        cpu: health?.cpu ?? null,
        madeAt: Date.now(),
        slow: this.isSlow(this.host.id),
      });
      let plan = this.planFor(led, count);
      if (plan.needGroups) {
        led = await this.host.ledGroups();
        this.updateRates(led, undefined);
        this.stats.listed++;
        plan = this.planFor(led);
      }
      if (plan.idle?.startsWith('unhealthy') || plan.idle?.startsWith('maintenance')) this.stats.skippedUnhealthy++;
      const balanceMoves = plan.moves.filter((m) => m.kind === 'count').length;
      this.shedding =
        this.cfg.policy === 'count' &&
        balanceMoves > 0 &&
        count - balanceMoves > Math.ceil(plan.fairShare[this.host.id] ?? 0);
      await Promise.all(
        plan.moves.map(async (m) => {
          this.cooldown.set(m.group, Date.now() + this.cfg.cooldownMs);
          const load = this.loadOf(m.group);
          try {
            await this.host.transfer(m.group, m.to);
            this.stats.moves++;
            this.stats.movesByKind[m.kind]++;
            const sent = this.sentSince.get(m.to);
            if (sent) sent.push({ at: Date.now(), load });
            else this.sentSince.set(m.to, [{ at: Date.now(), load }]);
            this.log.info({ group: m.group, to: m.to, kind: m.kind, reason: m.reason }, 'balancer moved a leader');
          } catch (e) {
            this.stats.failed++;
            const why = (e as { reason?: string; code?: string }).reason ?? (e as { code?: string }).code ?? 'Error';
            this.stats.failedByReason[why] = (this.stats.failedByReason[why] ?? 0) + 1;
            this.log.info({ group: m.group, to: m.to, kind: m.kind, err: e }, 'balancer move failed');
          }
        }),
      );
      if (this.cooldown.size > 4 * count + 1024) {
        const now = Date.now();
        for (const [g, t] of this.cooldown) if (t <= now) this.cooldown.delete(g);
      }
      return plan;
    } finally {
      this.running = false;
    }
  }
}
