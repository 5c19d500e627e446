// ReplicaMover: executes the replica planner's moves (design note 8, "One mover"). It runs on
// group 0's leader and owns the moves in flight: the node calls round() on its own timer (the
// mover has none), each round plans on a fresh view with the moves in flight folded in, and
// starts what the plan allows. A move is addLearner(to) → promote(to) → removeMember(from).
//
// Rules that keep every group at its full replica count:
//  - one move per group at a time; a group with a move in flight, or whose last change has not
//    shown in the view yet, is passed to the planner as busy (`leaving` set), so it is neither
//    moved again nor counted twice;
//  - a move failing before promotion is undone (the learner removed) before the group is touched
//    again; if that removal fails too, the learner is removed in a later round. A failed
//    promotion is first checked against the nodes (it may have applied), and only a learner is
//    ever removed by a rollback;
//  - a move failing at the removal of its source (after promotion) retries it a few times, then
//    leaves the group with a voter too many. The planner never removes a replica (it only moves
//    them), so the mover does: a group with more voters than its replication (capped at the
//    active nodes, as the planner caps it) and no learner loses one voter per round: the one it
//    meant to remove if still there, else one on a removed or unknown node, then on a
//    decommissioning node, then on a down node, then on the node holding the most replicas.
//    The same rule lets a decommission finish where no node is left to move a replica to (group 0
//    of five on five nodes, or replication 3 on three nodes: replication is "up to");
//  - a learner nobody is moving (a move of an earlier mover, a manual add never promoted) blocks
//    its group in the planner. If it sits on an active node and its group needs it (fewer voters
//    than its replication, or a voter on a node that is decommissioning, down, removed or
//    unknown), the mover adopts it after ADOPT_AFTER_MS: the move resumes at its promotion and
//    removes that voter (a group-0 leader killed mid-move otherwise held a decommission for a
//    minute). Any other such learner is removed after min(moveTimeoutMs, 60 s) seen so.
//  - a failed move reads its group's configuration again (MoverHost.refreshGroup) before the
//    group is planned again: the view may have missed a change for good (a lost notice), and
//    the same move, planned from it, would fail every round;
//  - before a decommissioning node is marked removed it is asked which groups it holds: one
//    the view missed (a replica added to it by another mover, its notice lost) is read again
//    and moved first, else that group would keep counting a removed node as a voter.
// A decommissioning node that holds nothing and takes part in no move is then marked 'removed'.
import type { Logger } from 'pino';
import {
  type NodeState,
  type PlacementGroup,
  type PlacementNode,
  planReplicas,
  REPLICA_PLANNER_DEFAULTS,
  type ReplicaMoveKind,
  type ReplicaPlan,
  type ReplicaPlannerConfig,
  validateReplicaPlannerConfig,
} from '../balancer/replicas.js';
import { BalancerConfigError } from '../balancer/errors.js';
import { FlotillaError } from '../errors.js';
import type { NodeId } from '../raft/types.js';

/** What the mover needs of its node. */
export interface MoverHost {
  readonly log: Logger;
  nowMs(): number;
  /** The cluster now: nodes (state from the metadata group, up = connected/alive, downSinceMs),
   *  every group's voters/learners as this node knows them, and the cluster's replication. */
  view(): { nodes: PlacementNode[]; groups: PlacementGroup[]; replication: number };
  addLearner(group: number, node: NodeId, timeoutMs: number, signal: AbortSignal): Promise<void>;
  promote(group: number, node: NodeId, timeoutMs: number, signal: AbortSignal): Promise<void>;
  removeMember(group: number, node: NodeId, timeoutMs: number, signal: AbortSignal): Promise<void>;
  /** Read the group's configuration again from its replicas into view() (a failed move may come
   *  from a view that missed a change); resolves with whether the view changed. */
  refreshGroup(group: number): Promise<boolean>;
  /** The groups that still have a replica on `node`, by its own word, each one's configuration
   *  read again into view() (see Membership.stillOn); [] when `node` cannot be asked. */
  stillOn(node: NodeId): Promise<number[]>;
  /** Record a node's lifecycle state in the metadata group (used to mark a drained-out
   *  decommissioning node 'removed'). */
  setNodeState(node: NodeId, state: 'removed'): Promise<void>;
}

export interface ReplicaMoverConfig extends ReplicaPlannerConfig {
  /** The deadline of each step of a move (addLearner, promote, each removal). promote is refused
   *  until the learner has caught up, which for a big group is a whole streamed snapshot, so it
   *  is long. Also how long a completed change may take to show in view() before the mover
   *  believes the view again, and how long a learner nobody moves stays. Default 600,000. */
  readonly moveTimeoutMs?: number;
  /** Run balance and zone moves. false: only repair and decommission moves (and removals of a
   *  voter too many) run; balance and zone moves are still planned and shown. Default true. */
  readonly balance?: boolean;
}

export const REPLICA_MOVER_DEFAULTS: Required<ReplicaMoverConfig> = {
  ...REPLICA_PLANNER_DEFAULTS,
  moveTimeoutMs: 600_000,
  balance: true,
};

/** A learner nobody here moves (an earlier group-0 leader's move, cut short when it died) is
 *  removed after this long at most: waiting the whole moveTimeoutMs would hold a decommission for
 *  ten minutes. If that learner was still catching up for a live mover, its move rolls back and
 *  is planned again: work lost, never a replica. */
const ORPHAN_LEARNER_MS = 60_000;

/** How long a learner nobody moves must be seen before the mover adopts it. A node that lost
 *  group 0's leadership starts no new moves but finishes those in flight, so an adopted learner
 *  may still be promoted by that node too: both promotions succeed (the second finds a voter),
 *  and each removes the voter it meant to, nearly always the same one (the decommissioning or
 *  down node, the only voter the group needs to lose); the second removal then finds it gone.
 *  Should they differ, the group runs one replica short until a repair move. */
const ADOPT_AFTER_MS = 3_000;

/** Removals of a move's source tried back to back before the group is left a voter too many. */
const REMOVE_ATTEMPTS = 3;
/** Groups whose last error status() keeps. */
const MAX_ERRORS = 256;

/** Throws a BalancerConfigError naming the first bad field. */
export function validateReplicaMoverConfig(c: ReplicaMoverConfig): void {
  if (typeof c !== 'object' || c === null || Array.isArray(c))
    throw new BalancerConfigError('InvalidSetting', 'replicas', 'must be an object');
  const { moveTimeoutMs, balance, ...planner } = c;
  validateReplicaPlannerConfig(planner);
  if (
    moveTimeoutMs !== undefined &&
    (typeof moveTimeoutMs !== 'number' || !Number.isFinite(moveTimeoutMs) || moveTimeoutMs < 1)
  )
    throw new BalancerConfigError('InvalidSetting', 'replicas.moveTimeoutMs', 'must be a number >= 1');
  if (balance !== undefined && typeof balance !== 'boolean')
    throw new BalancerConfigError('InvalidSetting', 'replicas.balance', 'must be a boolean');
}

/** A planned move, or 'trim': the removal of a voter too many or of a learner nobody moves. */
export type MoverMoveKind = ReplicaMoveKind | 'trim';
export type MoveStep = 'learner' | 'promote' | 'remove';

/** A replica the mover removes without a move (see the header). */
export interface ReplicaRemoval {
  readonly group: number;
  readonly node: NodeId;
  readonly reason: string;
}

/** A learner nobody moves that the mover promotes, removing `from` after (see the header). */
export interface ReplicaAdoption {
  readonly group: number;
  readonly kind: ReplicaMoveKind;
  /** The learner promoted. */
  readonly node: NodeId;
  /** The voter removed once it is promoted; null when the group is short of voters. */
  readonly from: NodeId | null;
  readonly reason: string;
}

/** The planner's plan, plus the removals and adoptions the mover starts before its moves. */
export interface MoverPlan extends ReplicaPlan {
  readonly removals: ReplicaRemoval[];
  readonly adoptions: ReplicaAdoption[];
}

export interface MoveInFlight {
  readonly group: number;
  readonly kind: MoverMoveKind;
  /** The replica that leaves; null for a repair's add. */
  readonly from: NodeId | null;
  /** The new replica; null for a trim. */
  readonly to: NodeId | null;
  readonly step: MoveStep;
  readonly startedMs: number;
}

export interface MoveCounters {
  started: number;
  completed: number;
  failed: number;
  /** Failed moves whose learner was removed again. */
  rolledBack: number;
}

export interface MoverError {
  readonly group: number;
  readonly kind: MoverMoveKind;
  readonly step: MoveStep;
  readonly atMs: number;
  readonly code?: string;
  readonly message: string;
}

export interface MoverStatus {
  readonly stopped: boolean;
  readonly inFlight: MoveInFlight[];
  readonly counters: Record<MoverMoveKind, MoveCounters>;
  /** The last error per group, oldest first, for at most 256 groups. */
  readonly lastErrors: MoverError[];
  /** Per decommissioning node, the replicas (voters and learners) still on it. */
  readonly decommissioning: Record<NodeId, number>;
}

interface Flight {
  readonly group: number;
  readonly kind: MoverMoveKind;
  readonly from: NodeId | null;
  readonly to: NodeId | null;
  step: MoveStep;
  readonly startedMs: number;
  readonly ctl: AbortController;
  done: Promise<void>;
  failed: boolean;
}

/** A change made that the view may not show yet: until it does, the group stays busy. */
interface Settling {
  readonly leaving: NodeId | null;
  readonly joining: NodeId | null;
  readonly untilMs: number;
}

type View = ReturnType<MoverHost['view']>;

const KINDS: readonly MoverMoveKind[] = ['repair', 'decommission', 'zone', 'balance', 'trim'];
const byId = (a: NodeId, b: NodeId) => (a < b ? -1 : a > b ? 1 : 0);
const orphanKey = (group: number, node: NodeId) => `${group}\u0000${node}`;

export class ReplicaMover {
  private readonly cfg: Required<ReplicaMoverConfig>;
  private readonly planner: ReplicaPlannerConfig;
  private readonly flights = new Map<number, Flight>();
  private readonly settling = new Map<number, Settling>();
  /** The voter a failed move meant to remove, per group. */
  private readonly intents = new Map<number, NodeId>();
  /** A learner a failed move could not remove, per group. */
  private readonly strayLearners = new Map<number, NodeId>();
  /** When a learner nobody moves was first seen, per group and node. */
  private readonly orphanSince = new Map<string, number>();
  private readonly counters: Record<MoverMoveKind, MoveCounters>;
  private readonly errors = new Map<number, MoverError>();
  private readonly marking = new Map<NodeId, Promise<void>>();
  private readonly marked = new Set<NodeId>();
  private stopped = false;

  constructor(
    private readonly host: MoverHost,
    config: ReplicaMoverConfig = {},
  ) {
    validateReplicaMoverConfig(config);
    this.cfg = { ...REPLICA_MOVER_DEFAULTS, ...config };
    const { moveTimeoutMs: _t, balance: _b, ...planner } = config;
    this.planner = planner;
    this.counters = Object.fromEntries(
      KINDS.map((k) => [k, { started: 0, completed: 0, failed: 0, rolledBack: 0 }]),
    ) as Record<MoverMoveKind, MoveCounters>;
  }

  /** A dry run: what round() would start now. No side effects. */
  plan(): MoverPlan {
    return this.compute(this.host.view(), this.host.nowMs());
  }

  /** Plans and starts every planned move and removal not already in flight (without awaiting
   *  them); returns the plan. A no-op once stopped. */
  round(): MoverPlan {
    if (this.stopped)
      return {
        moves: [],
        removals: [],
        adoptions: [],
        blocked: ['the mover is stopped'],
        replicas: {},
        fairShare: 0,
        band: { low: 0, high: 0 },
      };
    const v = this.host.view();
    const now = this.host.nowMs();
    this.observe(v, now);
    const p = this.compute(v, now);
    for (const r of p.removals) if (!this.flights.has(r.group)) this.start(r.group, 'trim', r.node, null, r.reason);
    for (const a of p.adoptions)
      if (!this.flights.has(a.group)) this.start(a.group, a.kind, a.from, a.node, a.reason, 'promote');
    for (const m of p.moves) {
      if (this.flights.has(m.group)) continue;
      if (!this.cfg.balance && (m.kind === 'balance' || m.kind === 'zone')) continue;
      this.start(m.group, m.kind, m.from, m.to, m.reason);
    }
    this.finishDecommissions();
    return p;
  }

  status(): MoverStatus {
    const v = this.host.view();
    const decommissioning: Record<NodeId, number> = {};
    for (const n of v.nodes) if (n.state === 'decommissioning') decommissioning[n.id] = 0;
    for (const g of v.groups)
      for (const r of [...g.voters, ...g.learners]) if (r in decommissioning) decommissioning[r]++;
    return {
      stopped: this.stopped,
      inFlight: [...this.flights.values()].map((f) => ({
        group: f.group,
        kind: f.kind,
        from: f.from,
        to: f.to,
        step: f.step,
        startedMs: f.startedMs,
      })),
      counters: Object.fromEntries(KINDS.map((k) => [k, { ...this.counters[k] }])) as Record<
        MoverMoveKind,
        MoveCounters
      >,
      lastErrors: [...this.errors.values()],
      decommissioning,
    };
  }

  /** Aborts the moves in flight and refuses further rounds; resolves once they have settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const f of this.flights.values()) f.ctl.abort();
    await Promise.allSettled([...[...this.flights.values()].map((f) => f.done), ...this.marking.values()]);
  }

  /** Forgets what the view now shows done, and notes learners nobody moves. */
  private observe(v: View, now: number): void {
    const groups = new Map(v.groups.map((g) => [g.id, g]));
    for (const [id, s] of this.settling) {
      const g = groups.get(id);
      if (g === undefined || now >= s.untilMs || !this.pending(g, s)) this.settling.delete(id);
    }
    for (const [id, node] of this.intents) {
      const g = groups.get(id);
      if (g === undefined || !g.voters.includes(node)) this.intents.delete(id);
    }
    for (const [id, node] of this.strayLearners) {
      const g = groups.get(id);
      if (g === undefined || !g.learners.includes(node)) this.strayLearners.delete(id);
    }
    const seen = new Set<string>();
    for (const g of v.groups) {
      if (this.flights.has(g.id) || this.settling.has(g.id)) continue;
      for (const l of g.learners) {
        const k = orphanKey(g.id, l);
        seen.add(k);
        if (!this.orphanSince.has(k)) this.orphanSince.set(k, now);
      }
    }
    for (const k of this.orphanSince.keys()) if (!seen.has(k)) this.orphanSince.delete(k);
  }

  /** How long a learner nobody moves may stay. */
  private orphanMs(): number {
    return Math.min(this.cfg.moveTimeoutMs, ORPHAN_LEARNER_MS);
  }

  /** Whether the view does not show a change yet. */
  private pending(g: PlacementGroup, s: Settling): boolean {
    const has = (n: NodeId) => g.voters.includes(n) || g.learners.includes(n);
    return (s.leaving !== null && has(s.leaving)) || (s.joining !== null && !g.voters.includes(s.joining));
  }

  private compute(v: View, now: number): MoverPlan {
    const node = new Map(v.nodes.map((n) => [n.id, n]));
    const state = (id: NodeId): NodeState | undefined => node.get(id)?.state;
    const works = (id: NodeId) => {
      const n = node.get(id);
      return n?.up === true && n.state !== 'removed';
    };
    const active = v.nodes.filter((n) => n.state === 'active').length;
    const inFlight: Record<NodeId, number> = {};
    const bump = (id: NodeId | null) => {
      if (id !== null && works(id)) inFlight[id] = (inFlight[id] ?? 0) + 1;
    };
    for (const f of this.flights.values()) {
      if (f.to !== null) inFlight[f.to] = (inFlight[f.to] ?? 0) + 1;
      bump(f.from);
    }
    const max = this.cfg.maxMovesPerNode;
    const room = (id: NodeId) => !works(id) || (inFlight[id] ?? 0) < max;
    const held = new Map<NodeId, number>();
    for (const g of v.groups) for (const r of [...g.voters, ...g.learners]) held.set(r, (held.get(r) ?? 0) + 1);
    /** Which voter of an over-replicated group goes: see the header. */
    const rank = (id: NodeId) => {
      const s = state(id);
      return s === undefined || s === 'removed' ? 0 : s === 'decommissioning' ? 1 : works(id) ? 3 : 2;
    };

    const removals: ReplicaRemoval[] = [];
    const adoptions: ReplicaAdoption[] = [];
    const groups: PlacementGroup[] = [];
    for (const g of [...v.groups].sort((a, b) => a.id - b.id)) {
      const reps = [...g.voters, ...g.learners];
      const f = this.flights.get(g.id);
      if (f !== undefined) {
        // Counted as after the move; `leaving` marks the group busy even once `from` is gone.
        const learners = f.to !== null && !reps.includes(f.to) ? [...g.learners, f.to] : g.learners;
        groups.push({ ...g, learners, ...(f.from !== null ? { leaving: f.from } : {}) });
        continue;
      }
      const s = this.settling.get(g.id);
      if (s !== undefined && now < s.untilMs && this.pending(g, s)) {
        const learners = s.joining !== null && !reps.includes(s.joining) ? [...g.learners, s.joining] : g.learners;
        // Busy either way: `leaving` is still there, or `joining` shows as a learner at most.
        groups.push({ ...g, learners, ...(s.leaving !== null ? { leaving: s.leaving } : {}) });
        continue;
      }
      if (g.learners.length > 0) {
        const stray = this.strayLearners.get(g.id);
        const rf = Math.min(g.replication ?? v.replication, Math.max(1, active));
        const adopt = stray === undefined ? this.adoption(g, rf, now, state, works, rank, held) : null;
        if (adopt !== null) {
          if (room(adopt.node) && (adopt.from === null || room(adopt.from))) {
            adoptions.push(adopt);
            bump(adopt.node);
            bump(adopt.from);
          }
          groups.push({ ...g, ...(adopt.from !== null ? { leaving: adopt.from } : {}) });
          continue;
        }
        const l =
          stray !== undefined && g.learners.includes(stray)
            ? stray
            : [...g.learners]
                .sort(byId)
                .find((x) => now - (this.orphanSince.get(orphanKey(g.id, x)) ?? now) >= this.orphanMs());
        if (l !== undefined && room(l)) {
          removals.push({
            group: g.id,
            node: l,
            reason:
              l === stray
                ? `learner ${l} of group ${g.id} is left from a failed move: remove it`
                : `learner ${l} of group ${g.id} has not been promoted for moveTimeoutMs: remove it`,
          });
          bump(l);
        }
        groups.push(g);
        continue;
      }
      const rf = Math.min(g.replication ?? v.replication, Math.max(1, active));
      if (g.voters.length <= rf) {
        groups.push(g);
        continue;
      }
      const intent = this.intents.get(g.id);
      const out =
        intent !== undefined && g.voters.includes(intent)
          ? intent
          : [...g.voters].sort((a, b) => rank(a) - rank(b) || (held.get(b) ?? 0) - (held.get(a) ?? 0) || byId(a, b))[0];
      groups.push({ ...g, leaving: out });
      // Group 0 leaves a decommissioning node last (the planner's rule), also when trimmed.
      if (g.id === 0 && state(out) === 'decommissioning' && (held.get(out) ?? 0) > 1) continue;
      if (!room(out)) continue;
      const why =
        out === intent
          ? `a failed move meant to remove it`
          : rank(out) === 0
            ? `${out} is not an active node`
            : rank(out) === 1
              ? `${out} is decommissioning`
              : rank(out) === 2
                ? `${out} is down`
                : `${out} holds the most replicas (${held.get(out) ?? 0})`;
      removals.push({
        group: g.id,
        node: out,
        reason: `group ${g.id} has ${g.voters.length} voters, replication ${rf}: remove ${out} (${why})`,
      });
      bump(out);
    }
    const plan = planReplicas({
      nodes: v.nodes,
      groups,
      replication: v.replication,
      inFlight,
      nowMs: now,
      config: this.planner,
    });
    return { ...plan, removals, adoptions };
  }

  /** The adoption of one of `g`'s learners nobody moves, if it should be adopted (see the header). */
  private adoption(
    g: PlacementGroup,
    rf: number,
    now: number,
    state: (id: NodeId) => NodeState | undefined,
    works: (id: NodeId) => boolean,
    rank: (id: NodeId) => number,
    held: Map<NodeId, number>,
  ): ReplicaAdoption | null {
    const l = [...g.learners]
      .sort(byId)
      .find(
        (x) =>
          state(x) === 'active' &&
          works(x) &&
          now - (this.orphanSince.get(orphanKey(g.id, x)) ?? now) >= Math.min(ADOPT_AFTER_MS, this.orphanMs()),
      );
    if (l === undefined) return null;
    if (g.voters.length < rf)
      return {
        group: g.id,
        kind: 'repair',
        node: l,
        from: null,
        reason: `group ${g.id} has ${g.voters.length} voters, replication ${rf}: promote learner ${l}, left by an earlier move`,
      };
    const out = [...g.voters].sort((a, b) => rank(a) - rank(b) || byId(a, b))[0];
    if (out === undefined || rank(out) === 3) return null;
    // Group 0 leaves a decommissioning node last (the planner's rule).
    if (g.id === 0 && state(out) === 'decommissioning' && (held.get(out) ?? 0) > 1) return null;
    const why = rank(out) === 1 ? 'decommissioning' : rank(out) === 2 ? 'down' : 'not an active node';
    return {
      group: g.id,
      kind: rank(out) === 1 ? 'decommission' : 'repair',
      node: l,
      from: out,
      reason: `learner ${l} of group ${g.id}, left by an earlier move, replaces ${out} (${why})`,
    };
  }

  private start(
    group: number,
    kind: MoverMoveKind,
    from: NodeId | null,
    to: NodeId | null,
    reason: string,
    step: MoveStep = to === null ? 'remove' : 'learner',
  ): void {
    const f: Flight = {
      group,
      kind,
      from,
      to,
      step,
      startedMs: this.host.nowMs(),
      ctl: new AbortController(),
      done: Promise.resolve(),
      failed: false,
    };
    this.flights.set(group, f);
    this.counters[kind].started++;
    this.host.log.info({ group, kind, from, to, reason }, 'replica move started');
    f.done = (to === null ? this.runTrim(f) : this.runMove(f, to))
      // A failed promotion has read the group already (runMove), before its rollback.
      .then(() => (f.failed && f.step !== 'promote' && !f.ctl.signal.aborted ? this.refreshQuietly(group) : undefined))
      .finally(() => {
        this.flights.delete(group);
        this.finishDecommissions();
      });
  }

  /** Reads the group's configuration again from the nodes. After a failed move it runs while
   *  the group is still busy: the view may have missed a change (a replica that moved already,
   *  a removal that was done), and planned from it the same move would fail every round. */
  private async refreshQuietly(group: number): Promise<void> {
    try {
      if (await this.host.refreshGroup(group))
        this.host.log.info({ group }, 'replicas of a group read again after a failed step: the view was behind');
    } catch (err) {
      this.host.log.debug({ group, err }, 'could not read the group configuration again');
    }
  }

  /** The next time a plan must run although nothing it reads has changed: a learner nobody
   *  moves coming due for adoption or removal, or a change that stops holding its group
   *  (Infinity: none). The node plans again only when the view changes or this comes due;
   *  without it, an orphan learner first seen by a round that found nothing else to do waited
   *  out the node's idle minute before its adoption (a decommission then missed its deadline). */
  nextDueMs(now: number): number {
    let due = Number.POSITIVE_INFINITY;
    const at = (t: number) => {
      if (t > now && t < due) due = t;
    };
    const adopt = Math.min(ADOPT_AFTER_MS, this.orphanMs());
    for (const since of this.orphanSince.values()) {
      at(since + adopt);
      at(since + this.orphanMs());
    }
    for (const s of this.settling.values()) at(s.untilMs);
    return due;
  }

  private async runMove(f: Flight, to: NodeId): Promise<void> {
    const { group, from } = f;
    const t = this.cfg.moveTimeoutMs;
    const sig = f.ctl.signal;
    try {
      // An adopted learner is there already: the move starts at its promotion.
      if (f.step === 'learner') await this.host.addLearner(group, to, t, sig);
      f.step = 'promote';
      await this.host.promote(group, to, t, sig);
    } catch (err) {
      // A promotion that applied although its answer was lost, or refused as done already (the
      // view showed a learner the group had promoted): carry on with the removal. The nodes
      // say which, not the view, which may have missed it.
      if (!sig.aborted && f.step === 'promote') await this.refreshQuietly(group);
      if (sig.aborted || f.step !== 'promote' || !this.isVoter(group, to)) {
        this.fail(f, err);
        if (sig.aborted)
          this.host.log.warn({ group, to }, 'replica move aborted: a learner may be left (removed by a later mover)');
        else await this.rollback(f, to);
        return;
      }
      this.host.log.info({ group, to, err }, 'promotion answered with an error but applied: going on');
    }
    if (from !== null) {
      f.step = 'remove';
      let last: unknown;
      for (let i = 0; i < REMOVE_ATTEMPTS && !sig.aborted; i++) {
        try {
          await this.host.removeMember(group, from, t, sig);
          last = undefined;
          break;
        } catch (err) {
          last = err ?? new Error('removal failed');
        }
      }
      if (last !== undefined || sig.aborted) {
        this.intents.set(group, from);
        this.fail(f, last ?? new Error('aborted'));
        this.host.log.warn({ group, from }, 'group left with a voter too many: a later round removes it');
        return;
      }
    }
    this.complete(f, { leaving: from, joining: to });
  }

  private async runTrim(f: Flight): Promise<void> {
    const node = f.from!;
    try {
      await this.host.removeMember(f.group, node, this.cfg.moveTimeoutMs, f.ctl.signal);
    } catch (err) {
      this.fail(f, err);
      return;
    }
    this.intents.delete(f.group);
    this.strayLearners.delete(f.group);
    this.complete(f, { leaving: node, joining: null });
  }

  /** Undoes a move that failed before its promotion: the learner goes (if the view has it as
   *  one). Never a voter: a rollback that removed one, shown as a learner by a view that missed
   *  its promotion, took a healthy group down to two voters. */
  private async rollback(f: Flight, to: NodeId): Promise<void> {
    const g = this.host.view().groups.find((x) => x.id === f.group);
    if (g === undefined || !g.learners.includes(to)) return;
    try {
      await this.host.removeMember(f.group, to, this.cfg.moveTimeoutMs, f.ctl.signal);
    } catch (err) {
      this.strayLearners.set(f.group, to);
      this.host.log.warn({ group: f.group, to, err }, 'rollback failed: a later round removes the learner');
      return;
    }
    this.counters[f.kind].rolledBack++;
    this.settling.set(f.group, { leaving: to, joining: null, untilMs: this.host.nowMs() + this.cfg.moveTimeoutMs });
    this.host.log.info({ group: f.group, to }, 'replica move rolled back');
  }

  private isVoter(group: number, node: NodeId): boolean {
    return this.host.view().groups.some((g) => g.id === group && g.voters.includes(node));
  }

  private complete(f: Flight, s: Omit<Settling, 'untilMs'>): void {
    const now = this.host.nowMs();
    this.counters[f.kind].completed++;
    this.settling.set(f.group, { ...s, untilMs: now + this.cfg.moveTimeoutMs });
    this.host.log.info(
      { group: f.group, kind: f.kind, from: f.from, to: f.to, ms: now - f.startedMs },
      'replica move completed',
    );
  }

  private fail(f: Flight, err: unknown): void {
    f.failed = true;
    const now = this.host.nowMs();
    this.counters[f.kind].failed++;
    const e: MoverError = {
      group: f.group,
      kind: f.kind,
      step: f.step,
      atMs: now,
      ...(err instanceof FlotillaError ? { code: err.code } : {}),
      message: err instanceof Error ? err.message : String(err),
    };
    this.errors.delete(f.group);
    this.errors.set(f.group, e);
    if (this.errors.size > MAX_ERRORS) this.errors.delete(this.errors.keys().next().value!);
    this.host.log.warn(
      { group: f.group, kind: f.kind, from: f.from, to: f.to, step: f.step, ms: now - f.startedMs, err },
      'replica move failed',
    );
  }

  /** Marks `id` removed unless it says it still holds replicas the view missed (resolves with
   *  those groups, now in the view, so the next rounds move them). */
  private async markRemoved(id: NodeId): Promise<number[]> {
    const held = await this.host.stillOn(id);
    if (held.length > 0) return held;
    await this.host.setNodeState(id, 'removed');
    return [];
  }

  /** Marks 'removed' each decommissioning node that holds nothing and takes part in no move. */
  private finishDecommissions(): void {
    if (this.stopped) return;
    const v = this.host.view();
    const busy = new Set<NodeId>();
    for (const g of v.groups) for (const r of [...g.voters, ...g.learners]) busy.add(r);
    for (const f of this.flights.values()) {
      if (f.from !== null) busy.add(f.from);
      if (f.to !== null) busy.add(f.to);
    }
    for (const n of v.nodes) {
      const id = n.id;
      if (n.state !== 'decommissioning' || busy.has(id) || this.marked.has(id) || this.marking.has(id)) continue;
      const p = this.markRemoved(id).then(
        (held) => {
          if (held.length > 0) {
            this.host.log.warn(
              { node: id, groups: held.slice(0, 16) },
              'decommissioned node still holds replicas the view missed: moving them first',
            );
            return;
          }
          this.marked.add(id);
          this.host.log.info({ node: id }, 'decommissioned node emptied: marked removed');
        },
        (err: unknown) => this.host.log.warn({ node: id, err }, 'could not mark a decommissioned node removed'),
      );
      this.marking.set(
        id,
        p.finally(() => this.marking.delete(id)),
      );
    }
  }
}
