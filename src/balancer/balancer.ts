// LeaderBalancer: runs on every node and sheds leaderships this node should not hold, by count
// (leaders per node against a weighted fair share). Only a leader can transfer, so each node acts
// on its own excess; nodes learn each other's counts from small summaries exchanged every round.
//
// Stability, after TiKV PD and CockroachDB: a dead band (act only above the fair share by a
// tolerance and by at least `minExcess` leaders), at most `maxConcurrent` transfers per round, a
// per-group cooldown, a jittered interval, no leadership onto a node that started in the last
// `warmupMs`, onto a draining node or a node in `avoid`, and no action at all while the cluster
// is unhealthy (a node unreachable or draining). Every move is a verified transfer.
//
// Policies: `count` (leaders per node) and `load` (per group, an EWMA of the writes plus reads/s
// it served as leader; a node's load is the sum over the groups it leads; the hottest groups move
// first, groups under `minGroupShare` of the node's load never move, nothing moves below
// `minLoad` ops/s of excess). Not yet: bytes/s in the load, locality preferences and
// follow-the-workload.
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';

export interface BalancerConfig {
  /** Run rounds automatically. Default true. */
  readonly enabled?: boolean;
  /** Milliseconds between rounds (jittered by ±25%). Default 2,000. */
  readonly intervalMs?: number;
  /** Act only when this node holds more than fairShare × (1 + tolerance). Default 0.1. */
  readonly tolerance?: number;
  /** ... and at least this many leaders above its fair share. Default 2. */
  readonly minExcess?: number;
  /** Transfers started per round at most. Default 8. */
  readonly maxConcurrent?: number;
  /** A group moved by the balancer is not moved again for this long. Default 30,000 ms. */
  readonly cooldownMs?: number;
  /** No leadership onto a node that started less than this ago. Default 5,000 ms. */
  readonly warmupMs?: number;
  /** Relative capacity per node (fair share is proportional). Default 1 each. */
  readonly weights?: Readonly<Record<NodeId, number>>;
  /** 'count' (leaders per node) or 'load' (served ops/s per node). Default 'count'. */
  readonly policy?: 'count' | 'load';
  /** load policy: act only when the excess is at least this many ops/s. Default 20. */
  readonly minLoad?: number;
  /** load policy: never move a group carrying less than this share of the node's load. Default 0.01. */
  readonly minGroupShare?: number;
}

/** Throws naming the first bad field (a message an operator can act on). */
export function validateBalancerConfig(c: BalancerConfig): void {
  const known = new Set(['enabled', 'intervalMs', 'tolerance', 'minExcess', 'maxConcurrent', 'cooldownMs', 'warmupMs', 'weights', 'policy', 'minLoad', 'minGroupShare']);
  if (c.policy !== undefined && c.policy !== 'count' && c.policy !== 'load') throw new Error("balancer.policy: must be 'count' or 'load'");
  for (const k of Object.keys(c)) if (!known.has(k)) throw new Error(`balancer.${k}: unknown setting`);
  if (c.enabled !== undefined && typeof c.enabled !== 'boolean') throw new Error('balancer.enabled: must be true or false');
  const num = (k: keyof BalancerConfig, min: number) => {
    const v = c[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < min)) throw new Error(`balancer.${k}: must be a number >= ${min}`);
  };
  num('intervalMs', 10);
  num('tolerance', 0);
  num('minExcess', 1);
  num('maxConcurrent', 1);
  num('cooldownMs', 0);
  num('warmupMs', 0);
  num('minLoad', 0);
  num('minGroupShare', 0);
  if (c.weights !== undefined) {
    if (typeof c.weights !== 'object' || c.weights === null) throw new Error('balancer.weights: must be an object {node: weight}');
    for (const [n, w] of Object.entries(c.weights)) if (typeof w !== 'number' || !(w > 0)) throw new Error(`balancer.weights.${n}: must be a number > 0`);
  }
}

export const BALANCER_DEFAULTS = {
  enabled: true, intervalMs: 2_000, tolerance: 0.1, minExcess: 2, maxConcurrent: 8, cooldownMs: 30_000, warmupMs: 5_000,
  policy: 'count', minLoad: 20, minGroupShare: 0.01,
} as const;

/** What a node tells the others each round. */
export interface NodeSummary {
  readonly leaders: number;
  /** Sum of the EWMA ops/s of the groups it leads (load policy). */
  readonly load?: number;
  readonly draining: boolean;
  readonly uptimeMs: number;
}

/** What the balancer needs from its node. */
export interface BalancerHost {
  readonly id: NodeId;
  readonly peers: readonly NodeId[];
  isConnected(peer: NodeId): boolean;
  isDraining(): boolean;
  uptimeMs(): number;
  /** Groups this node leads, with their replicas. */
  ledGroups(): Promise<{ group: number; replicas: NodeId[]; served?: { writes: number; reads: number } }[]>;
  transfer(group: number, to: NodeId): Promise<unknown>;
  broadcastSummary(s: NodeSummary): void;
}

export interface PlannedMove {
  readonly group: number;
  readonly to: NodeId;
  readonly reason: string;
}

export interface Plan {
  readonly node: NodeId;
  readonly policy?: 'count' | 'load';
  /** Why nothing (more) is planned, when that is the case. */
  readonly idle: string | null;
  readonly leaders: Record<NodeId, number>;
  readonly fairShare: Record<NodeId, number>;
  readonly moves: PlannedMove[];
}

export class LeaderBalancer {
  private readonly cfg: Required<Omit<BalancerConfig, 'weights' | 'policy'>> & { weights: Readonly<Record<NodeId, number>>; policy: 'count' | 'load' };
  /** Per led group: last served counters and the EWMA of its ops/s. */
  private readonly rates = new Map<number, { ops: number; at: number; ewma: number }>();
  private readonly summaries = new Map<NodeId, NodeSummary & { at: number }>();
  private readonly cooldown = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  readonly stats = { rounds: 0, moves: 0, failed: 0, skippedUnhealthy: 0 };

  constructor(private readonly host: BalancerHost, cfg: BalancerConfig, private readonly log: Logger, private readonly random: () => number = Math.random) {
    this.cfg = { ...BALANCER_DEFAULTS, ...cfg, weights: cfg.weights ?? {}, policy: cfg.policy ?? 'count' };
  }

  start(): void {
    if (this.timer || !this.cfg.enabled) return;
    const next = () => {
      const jitter = 0.75 + 0.5 * this.random();
      this.timer = setTimeout(() => {
        void this.round().finally(() => {
          if (this.timer) next();
        });
      }, this.cfg.intervalMs * jitter);
      this.timer.unref();
    };
    next();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A peer's summary arrived (with the coalesced heartbeat traffic of the node pair). */
  onSummary(from: NodeId, s: NodeSummary): void {
    this.summaries.set(from, { ...s, at: Date.now() });
  }

  /** Fold the groups' served counters into their EWMA rates (ops/s). */
  private updateRates(led: { group: number; served?: { writes: number; reads: number } }[]): void {
    const now = Date.now();
    const seen = new Set<number>();
    for (const g of led) {
      seen.add(g.group);
      const ops = (g.served?.writes ?? 0) + (g.served?.reads ?? 0);
      const prev = this.rates.get(g.group);
      if (!prev || ops < prev.ops) {
        this.rates.set(g.group, { ops, at: now, ewma: 0 });
        continue;
      }
      const dt = (now - prev.at) / 1000;
      if (dt <= 0.05) continue;
      const rate = (ops - prev.ops) / dt;
      this.rates.set(g.group, { ops, at: now, ewma: prev.ewma === 0 ? rate : 0.5 * rate + 0.5 * prev.ewma });
    }
    for (const g of [...this.rates.keys()]) if (!seen.has(g)) this.rates.delete(g);
  }

  private loadOf(group: number): number {
    return this.rates.get(group)?.ewma ?? 0;
  }

  private weight(n: NodeId): number {
    return this.cfg.weights[n] ?? 1;
  }

  /** What every node holds by the policy's measure (this node's `mine`, the peers' from recent
   *  summaries), each node's weighted fair share, and why no round may act now (or null). */
  private view(mine: number, ofSummary: (s: NodeSummary) => number | undefined): { values: Record<NodeId, number>; fairShare: Record<NodeId, number>; idle: string | null } {
    const nodes = [this.host.id, ...this.host.peers];
    const values: Record<NodeId, number> = { [this.host.id]: mine };
    const fairShare: Record<NodeId, number> = {};
    const stale = Date.now() - 3 * this.cfg.intervalMs;
    for (const p of this.host.peers) {
      const s = this.summaries.get(p);
      const v = s && s.at >= stale ? ofSummary(s) : undefined;
      if (v !== undefined) values[p] = v;
    }
    const total = nodes.reduce((a, n) => a + (values[n] ?? 0), 0);
    const wsum = nodes.reduce((a, n) => a + this.weight(n), 0);
    for (const n of nodes) fairShare[n] = (total * this.weight(n)) / wsum;
    const down = this.host.peers.filter((p) => !this.host.isConnected(p));
    const missing = this.host.peers.filter((p) => values[p] === undefined);
    const draining = nodes.filter((n) => (n === this.host.id ? this.host.isDraining() : this.summaries.get(n)?.draining));
    const idle = down.length ? `unhealthy: ${down.join(', ')} unreachable`
      : missing.length ? `no recent summary from ${missing.join(', ')}`
      : draining.length ? `maintenance: ${draining.join(', ')} draining` : null;
    return { values, fairShare, idle };
  }

  /** The moves this node would make now, and why (or why none). */
  async plan(): Promise<Plan> {
    const led = await this.host.ledGroups();
    if (this.cfg.policy === 'load') return this.planLoad(led);
    const { values: leaders, fairShare, idle } = this.view(led.length, (s) => s.leaders);
    const result = (why: string | null, moves: PlannedMove[] = []): Plan => ({ node: this.host.id, idle: why, leaders, fairShare, moves });
    if (idle) return result(idle);
    const weight = (n: NodeId) => this.weight(n);
    const mine = leaders[this.host.id];
    const excess = Math.floor(mine - fairShare[this.host.id]);
    if (mine <= fairShare[this.host.id] * (1 + this.cfg.tolerance) || excess < this.cfg.minExcess) {
      return result(`balanced: ${mine} leaders, fair share ${fairShare[this.host.id].toFixed(1)}`);
    }
    // Targets: under their fair share, warmed up; the most under-loaded first.
    const now = Date.now();
    const counts = { ...leaders };
    const moves: PlannedMove[] = [];
    for (const g of led) {
      if (moves.length >= Math.min(excess, this.cfg.maxConcurrent)) break;
      if ((this.cooldown.get(g.group) ?? 0) > now) continue;
      const targets = g.replicas
        .filter((r) => r !== this.host.id && (this.summaries.get(r)?.uptimeMs ?? 0) >= this.cfg.warmupMs && counts[r] + 1 <= Math.ceil(fairShare[r]))
        .sort((a, b) => counts[a] / weight(a) - counts[b] / weight(b) || (a < b ? -1 : 1));
      if (targets.length === 0) continue;
      const to = targets[0];
      counts[to]++;
      counts[this.host.id]--;
      moves.push({ group: g.group, to, reason: `count: ${this.host.id} has ${mine} > fair share ${fairShare[this.host.id].toFixed(1)}; ${to} has ${leaders[to]}` });
    }
    return result(moves.length ? null : 'no eligible target (warm-up, cooldown or replicas)', moves);
  }

  private planLoad(led: { group: number; replicas: NodeId[] }[]): Plan {
    const { values: load, fairShare, idle } = this.view(led.reduce((a, g) => a + this.loadOf(g.group), 0), (s) => s.load);
    const result = (why: string | null, moves: PlannedMove[] = []): Plan => ({ node: this.host.id, policy: 'load', idle: why, leaders: load, fairShare, moves });
    if (idle) return result(idle);
    const weight = (n: NodeId) => this.weight(n);
    const mine = load[this.host.id];
    const limit = fairShare[this.host.id] * (1 + this.cfg.tolerance);
    if (mine <= limit || mine - fairShare[this.host.id] < this.cfg.minLoad) {
      return result(`balanced: load ${mine.toFixed(0)} ops/s, fair share ${fairShare[this.host.id].toFixed(0)}`);
    }
    const now = Date.now();
    const cur = { ...load };
    const moves: PlannedMove[] = [];
    const hottest = [...led].sort((a, b) => this.loadOf(b.group) - this.loadOf(a.group));
    for (const g of hottest) {
      if (moves.length >= this.cfg.maxConcurrent || cur[this.host.id] <= limit) break;
      const gl = this.loadOf(g.group);
      if (gl < this.cfg.minGroupShare * mine || gl <= 0) break; // the rest are colder still
      if ((this.cooldown.get(g.group) ?? 0) > now) continue;
      // Move only what helps: the target stays under its share and we do not overshoot below ours.
      const targets = g.replicas
        .filter((r) => r !== this.host.id && (this.summaries.get(r)?.uptimeMs ?? 0) >= this.cfg.warmupMs &&
          cur[r] + gl <= fairShare[r] * (1 + this.cfg.tolerance) && cur[this.host.id] - gl >= fairShare[this.host.id] * (1 - this.cfg.tolerance) - gl / 2)
        .sort((a, b) => cur[a] / weight(a) - cur[b] / weight(b) || (a < b ? -1 : 1));
      if (targets.length === 0) continue;
      const to = targets[0];
      cur[to] += gl;
      cur[this.host.id] -= gl;
      moves.push({ group: g.group, to, reason: `load: ${this.host.id} serves ${mine.toFixed(0)} ops/s > fair share ${fairShare[this.host.id].toFixed(0)}; group ${g.group} carries ${gl.toFixed(0)}; ${to} serves ${load[to].toFixed(0)}` });
    }
    return result(moves.length ? null : 'no move helps (targets would exceed their share, cooldown or warm-up)', moves);
  }

  /** One round: tell the peers our summary, then make the planned moves (verified transfers). */
  async round(): Promise<Plan> {
    if (this.running) return { node: this.host.id, idle: 'a round is already running', leaders: {}, fairShare: {}, moves: [] };
    this.running = true;
    try {
      this.stats.rounds++;
      const led = await this.host.ledGroups();
      this.updateRates(led);
      const load = led.reduce((a, g) => a + this.loadOf(g.group), 0);
      this.host.broadcastSummary({ leaders: led.length, load, draining: this.host.isDraining(), uptimeMs: this.host.uptimeMs() });
      const plan = await this.plan();
      if (plan.idle?.startsWith('unhealthy') || plan.idle?.startsWith('maintenance')) this.stats.skippedUnhealthy++;
      await Promise.all(plan.moves.map(async (m) => {
        this.cooldown.set(m.group, Date.now() + this.cfg.cooldownMs);
        try {
          await this.host.transfer(m.group, m.to);
          this.stats.moves++;
          this.log.info({ group: m.group, to: m.to, reason: m.reason }, 'balancer moved a leader');
        } catch (e) {
          this.stats.failed++;
          this.log.info({ group: m.group, to: m.to, err: (e as Error).message }, 'balancer move failed');
        }
      }));
      return plan;
    } finally {
      this.running = false;
    }
  }
}
