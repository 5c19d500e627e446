// The replica placement planner: which replicas should move where, as a pure function of one
// snapshot of the cluster (nodes, each group's replicas, moves in flight, the time). It decides;
// the mover (group 0's leader, design note 8) executes. The same input always gives the same plan
// (everything is walked in id order), so a dry run shows exactly what a round would do.
//
// A plan has four phases, in this order, sharing the per-node move limits; a group moves at most
// once per plan and a group with a move in flight (a learner, a leaving voter) not at all; the
// counts are those after the moves in flight. A group's replication is "up to": capped at the
// number of active nodes.
//  1. repair: a group with fewer voters than its replication gets one more (from = null); a group
//     with a replica on a node down for at least `repairDelayMs` (or removed) gets it replaced.
//     The groups with the fewest healthy voters go first, group 0 first among equals.
//  2. decommission: every replica on a `decommissioning` node moves to an active, up node;
//     group 0's last, once nothing else is left there.
//  3. zone: a group with two replicas in one zone while a zone it lacks has a node that could
//     take one moves one there. Not a group with a replica on a decommissioning node: that
//     replica's move goes to a zone the group lacks first, and often fixes the zones too.
//  4. balance: replica counts per active, up node into the band around the fair share.
// 3 and 4 wait while any node is down (but not yet past the delay) or any group needs repair:
// moving replicas around a hole would be undone when the node comes back or the repair lands.
//
// Balance moves only when a move takes the distance from the band down: with E the replicas above
// the band's top, D those missing below its bottom (over active nodes) and R those still on
// decommissioning nodes (each of which will fill a missing one as it leaves), no plan can do
// better than R + max(E, D - R) moves (`minimumMoves`); a balance move must lower max(E, D - R)
// and raise neither E nor D, so unconstrained it meets the minimum, and since every move also
// narrows the gap between a source and a target, nothing goes back and forth. It never takes a
// group's replicas into fewer zones, so balance and zone moves cannot undo each other.
// Targets of repair and decommission are ranked: a zone the group lacks, then a rack it lacks,
// then the fewest replicas, then the id.
import type { NodeId } from '../raft/types.js';
import type { Labels } from './balancer.js';
import { BalancerConfigError } from './errors.js';

export type NodeState = 'active' | 'decommissioning' | 'removed';

export interface PlacementNode {
  readonly id: NodeId;
  readonly labels?: Labels;
  readonly state: NodeState;
  readonly up: boolean;
  /** When it went down (same clock as `nowMs`). Without it a down node counts as just gone down:
   *  its replicas are never replaced. */
  readonly downSinceMs?: number;
}

export interface PlacementGroup {
  readonly id: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Its own replication when not the cluster's (group 0 may have up to five). */
  readonly replication?: number;
  /** The voter a move in flight (its learner) will remove: counted as gone already, so the
   *  counts are those after the moves in flight, and a source is not emptied twice. */
  readonly leaving?: NodeId;
}

export interface ReplicaPlannerConfig {
  /** The band around the fair share, as a fraction of it (widened to the integers either side
   *  of the share when narrower). Default 0.05. */
  readonly tolerance?: number;
  /** Moves in flight per node, as source or target (a down source does no work and is not
   *  counted). Default 2. */
  readonly maxMovesPerNode?: number;
  /** How long a node must be down before its replicas are replaced elsewhere. Default 300,000. */
  readonly repairDelayMs?: number;
  /** Moves in one plan at most. Default 64. */
  readonly maxMovesPerPlan?: number;
}

export const REPLICA_PLANNER_DEFAULTS: Required<ReplicaPlannerConfig> = {
  tolerance: 0.05,
  maxMovesPerNode: 2,
  repairDelayMs: 300_000,
  maxMovesPerPlan: 64,
};

export interface PlacementInput {
  readonly nodes: readonly PlacementNode[];
  readonly groups: readonly PlacementGroup[];
  /** Voters per group (unless the group says otherwise). */
  readonly replication: number;
  /** Moves in flight per node, as source or target. */
  readonly inFlight?: Readonly<Record<NodeId, number>>;
  readonly nowMs: number;
  readonly config?: ReplicaPlannerConfig;
}

export type ReplicaMoveKind = 'repair' | 'decommission' | 'balance' | 'zone';

export interface ReplicaMove {
  readonly group: number;
  readonly kind: ReplicaMoveKind;
  /** The replica that leaves (after the new one has caught up); null: add only. */
  readonly from: NodeId | null;
  readonly to: NodeId;
  readonly reason: string;
}

export interface ReplicaPlan {
  /** In the order to start them. */
  readonly moves: ReplicaMove[];
  /** Why nothing (more) is planned, where that is the case. */
  readonly blocked: string[];
  /** Replicas (voters and learners, less those leaving) per node before the moves. */
  readonly replicas: Record<NodeId, number>;
  /** Replicas per active, up node, and the band balance keeps them in ([low, high], inclusive). */
  readonly fairShare: number;
  readonly band: { readonly low: number; readonly high: number };
}

const KNOWN = new Set(Object.keys(REPLICA_PLANNER_DEFAULTS));

/** Throws a BalancerConfigError naming the first bad field. */
export function validateReplicaPlannerConfig(c: ReplicaPlannerConfig): void {
  if (typeof c !== 'object' || c === null || Array.isArray(c))
    throw new BalancerConfigError('InvalidSetting', 'replicas', 'must be an object');
  for (const k of Object.keys(c))
    if (!KNOWN.has(k)) throw new BalancerConfigError('UnknownSetting', `replicas.${k}`, 'unknown setting');
  const num = (path: string, v: unknown, min: number, max: number, int: boolean) => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (int && !Number.isInteger(v)))
      throw new BalancerConfigError(
        'InvalidSetting',
        `replicas.${path}`,
        `must be ${int ? 'an integer' : 'a number'} ${max === Infinity ? `>= ${min}` : `in ${min}..${max}`}`,
      );
  };
  num('tolerance', c.tolerance, 0, 1, false);
  num('maxMovesPerNode', c.maxMovesPerNode, 1, Infinity, true);
  num('repairDelayMs', c.repairDelayMs, 0, Infinity, false);
  num('maxMovesPerPlan', c.maxMovesPerPlan, 1, Infinity, true);
}

function resolve(c: ReplicaPlannerConfig | undefined): Required<ReplicaPlannerConfig> {
  if (c === undefined) return REPLICA_PLANNER_DEFAULTS;
  validateReplicaPlannerConfig(c);
  return { ...REPLICA_PLANNER_DEFAULTS, ...c };
}

/** The band for `total` replicas over `nodes` nodes: ±tolerance of the share, and never
 *  narrower than the integers either side of it (so an even split is always inside). */
export function replicaBand(total: number, nodes: number, tolerance: number): { low: number; high: number } {
  const fair = total / nodes;
  const eps = 1e-9;
  return {
    low: Math.max(0, Math.min(Math.floor(fair), Math.ceil(fair * (1 - tolerance) - eps))),
    high: Math.max(Math.ceil(fair), Math.floor(fair * (1 + tolerance) + eps)),
  };
}

const byId = (a: NodeId, b: NodeId) => (a < b ? -1 : a > b ? 1 : 0);

function fmtMs(ms: number): string {
  if (ms < 120_000) return `${Math.floor(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.floor(ms / 60_000)} min`;
  return `${Math.floor(ms / 3_600_000)} h`;
}

/** Where a node's replicas land for counting: every node of the input, plus node ids groups name
 *  that the input lacks (treated as removed). */
interface Census {
  readonly count: Map<NodeId, number>;
  /** Active and up: the nodes balance spreads over, and the only targets. */
  readonly eligible: NodeId[];
  readonly decommissioning: NodeId[];
}

function census(nodes: readonly PlacementNode[], groups: readonly PlacementGroup[]): Census {
  const count = new Map<NodeId, number>();
  for (const n of nodes) count.set(n.id, 0);
  for (const g of groups)
    for (const r of [...g.voters, ...g.learners]) if (r !== g.leaving) count.set(r, (count.get(r) ?? 0) + 1);
  const sorted = [...nodes].sort((a, b) => byId(a.id, b.id));
  return {
    count,
    eligible: sorted.filter((n) => n.state === 'active' && n.up).map((n) => n.id),
    decommissioning: sorted.filter((n) => n.state === 'decommissioning').map((n) => n.id),
  };
}

/** How far a state is from balance: E (replicas above the band), D (missing below it), R (still
 *  on decommissioning nodes). */
function distance(c: Census, tolerance: number) {
  let total = 0;
  let r = 0;
  for (const id of c.eligible) total += c.count.get(id) ?? 0;
  for (const id of c.decommissioning) r += c.count.get(id) ?? 0;
  total += r;
  const band = c.eligible.length > 0 ? replicaBand(total, c.eligible.length, tolerance) : { low: 0, high: 0 };
  let e = 0;
  let d = 0;
  for (const id of c.eligible) {
    const n = c.count.get(id) ?? 0;
    e += Math.max(0, n - band.high);
    d += Math.max(0, band.low - n);
  }
  return { total, fair: c.eligible.length > 0 ? total / c.eligible.length : 0, band, e, d, r };
}

/** The fewest moves that bring every active, up node into the band and empty the decommissioning
 *  nodes, placement constraints aside: R + max(E, D - R) (see the header). Repairs are not in it. */
export function minimumMoves(input: Pick<PlacementInput, 'nodes' | 'groups' | 'config'>): number {
  const cfg = resolve(input.config);
  const { e, d, r } = distance(census(input.nodes, input.groups), cfg.tolerance);
  return r + Math.max(e, d - r, 0);
}

export function planReplicas(input: PlacementInput): ReplicaPlan {
  const cfg = resolve(input.config);
  if (!Number.isInteger(input.replication) || input.replication < 1)
    throw new BalancerConfigError('InvalidSetting', 'replication', 'must be an integer >= 1');
  const now = input.nowMs;
  const node = new Map(input.nodes.map((n) => [n.id, n]));
  const groups = [...input.groups].sort((a, b) => a.id - b.id);
  const cen = census(input.nodes, groups);
  const count = cen.count;
  const before = Object.fromEntries([...count.entries()].sort((a, b) => byId(a[0], b[0])));
  const dist0 = distance(cen, cfg.tolerance);
  const { band, fair } = dist0;
  const eligible = cen.eligible;
  const eligibleSet = new Set(eligible);

  const downFor = (n: PlacementNode) => (n.downSinceMs === undefined ? 0 : Math.max(0, now - n.downSinceMs));
  /** Its replicas are to be replaced: removed, unknown, or down for at least the delay. */
  const gone = (id: NodeId) => {
    const n = node.get(id);
    return n === undefined || n.state === 'removed' || (!n.up && downFor(n) >= cfg.repairDelayMs);
  };
  const zoneOf = (id: NodeId) => node.get(id)?.labels?.zone ?? `\u0000${id}`;
  const rackOf = (id: NodeId) => {
    const l = node.get(id)?.labels;
    return l?.rack === undefined ? `\u0000${id}` : `${l.zone ?? ''}\u0000${l.rack}`;
  };
  const hasZones = input.nodes.some((n) => n.labels?.zone !== undefined);

  const used = new Map<NodeId, number>();
  for (const n of input.nodes) used.set(n.id, input.inFlight?.[n.id] ?? 0);
  const room = (id: NodeId) => (used.get(id) ?? 0) < cfg.maxMovesPerNode;
  /** A source down or out of the cluster does no work (the leader streams the new replica), so it
   *  takes no slot. */
  const works = (id: NodeId) => node.get(id)?.up === true && !gone(id);
  const sourceRoom = (id: NodeId | null) => id === null || !works(id) || room(id);

  const reps = new Map<number, NodeId[]>(groups.map((g) => [g.id, [...g.voters, ...g.learners]]));
  const busy = new Set(groups.filter((g) => g.learners.length > 0 || g.leaving !== undefined).map((g) => g.id));
  const touched = new Set<number>();
  const moves: ReplicaMove[] = [];
  const blocked: string[] = [];
  let capped = false;

  const add = (group: number, kind: ReplicaMoveKind, from: NodeId | null, to: NodeId, reason: string) => {
    const rs = reps.get(group)!;
    reps.set(group, from === null ? [...rs, to] : rs.map((r) => (r === from ? to : r)));
    count.set(to, (count.get(to) ?? 0) + 1);
    used.set(to, (used.get(to) ?? 0) + 1);
    if (from !== null) {
      count.set(from, (count.get(from) ?? 0) - 1);
      if (works(from)) used.set(from, (used.get(from) ?? 0) + 1);
    }
    touched.add(group);
    moves.push({ group, kind, from, to, reason });
    if (moves.length >= cfg.maxMovesPerPlan) capped = true;
  };

  /** Best new home for a replica of `group` next to `others`, and why; null when none has room. */
  const target = (group: number, others: readonly NodeId[]): { id: NodeId; why: string } | null => {
    const holding = new Set(reps.get(group)!);
    const zones = new Set(others.map(zoneOf));
    const racks = new Set(others.map(rackOf));
    let best: { id: NodeId; key: number[] } | null = null;
    // eligible is in id order, so the first of equal keys is the lowest id.
    for (const id of eligible) {
      if (holding.has(id) || !room(id)) continue;
      const key = [zones.has(zoneOf(id)) ? 1 : 0, racks.has(rackOf(id)) ? 1 : 0, count.get(id) ?? 0];
      if (best === null || lexLess(key, best.key)) best = { id, key };
    }
    if (best === null) return null;
    const parts = [`${best.key[2]} replicas`];
    if (hasZones)
      parts.unshift(best.key[0] === 0 ? `a zone group ${group} lacks` : `no zone group ${group} lacks has room`);
    return { id: best.id, why: parts.join(', ') };
  };

  // 1. Repair.
  const waiting = input.nodes
    .filter((n) => n.state !== 'removed' && !n.up && !gone(n.id))
    .sort((a, b) => byId(a.id, b.id));
  for (const n of waiting) {
    const since =
      n.downSinceMs === undefined
        ? 'since an unknown time'
        : `${fmtMs(downFor(n))} < repairDelayMs ${fmtMs(cfg.repairDelayMs)}`;
    blocked.push(`node ${n.id} is down (${since}): waiting before replacing its ${before[n.id] ?? 0} replicas`);
  }
  const repairs: { g: PlacementGroup; rf: number; healthy: number; lost: NodeId[] }[] = [];
  // Replication is "up to": a group of 5 on a cluster of 3 active nodes is not under-replicated.
  const active = input.nodes.filter((n) => n.state === 'active').length;
  for (const g of groups) {
    const rf = Math.min(g.replication ?? input.replication, Math.max(1, active));
    const healthy = g.voters.filter((v) => !gone(v)).length;
    const lost = [...g.voters, ...g.learners].filter(gone).sort(byId);
    if (healthy < rf || lost.length > 0) repairs.push({ g, rf, healthy, lost });
  }
  repairs.sort((a, b) => a.healthy - a.rf - (b.healthy - b.rf) || a.g.id - b.g.id);
  for (const { g, rf, healthy, lost } of repairs) {
    if (capped) break;
    if (busy.has(g.id)) continue;
    const from = g.voters.length < rf ? null : (lost[0] ?? null);
    if (from === null && g.voters.length >= rf) continue;
    const others = reps.get(g.id)!.filter((r) => r !== from && !gone(r));
    const t = target(g.id, others);
    const state = `${healthy} of ${rf} voters healthy`;
    if (t === null) {
      blocked.push(`group ${g.id} needs repair (${state}): no active, up node without a replica of it has room`);
      continue;
    }
    const why =
      from === null
        ? `group ${g.id} has ${g.voters.length} voters, replication ${rf} (${state}): add one on ${t.id} (${t.why})`
        : `${describeGone(node.get(from), downFor, cfg.repairDelayMs, from)}: replace group ${g.id}'s replica there (${state}) with one on ${t.id} (${t.why})`;
    add(g.id, 'repair', from, t.id, why);
  }

  const needsRepair = new Map(repairs.map((r) => [r.g.id, r]));

  // 2. Decommission.
  for (const d of cen.decommissioning) {
    const held = groups.filter((g) => reps.get(g.id)!.includes(d)).map((g) => g.id);
    const left = held.length;
    let limited = false;
    for (const gid of [...held.filter((x) => x !== 0), ...held.filter((x) => x === 0)]) {
      if (capped) break;
      if (touched.has(gid) || busy.has(gid)) continue;
      // Not even alongside the last others: group 0 starts once they have finished.
      if (gid === 0 && left > 1) {
        blocked.push(`node ${d}: group 0 (metadata) leaves last, after its ${left - 1} other replicas`);
        continue;
      }
      const rep = needsRepair.get(gid);
      if (rep !== undefined) {
        blocked.push(`group ${gid} under-replicated (${rep.healthy} of ${rep.rf} voters healthy): repair first`);
        continue;
      }
      if (!sourceRoom(d)) {
        limited = true;
        break;
      }
      const t = target(
        gid,
        reps.get(gid)!.filter((r) => r !== d),
      );
      if (t === null) {
        blocked.push(
          `group ${gid} cannot leave decommissioning node ${d}: no active, up node without a replica of it has room`,
        );
        continue;
      }
      add(
        gid,
        'decommission',
        d,
        t.id,
        `node ${d} is decommissioning (${left} replicas on it): group ${gid} moves to ${t.id} (${t.why})`,
      );
    }
    if (limited)
      blocked.push(
        `node ${d} is decommissioning: ${count.get(d)} replicas left, at maxMovesPerNode ${cfg.maxMovesPerNode}`,
      );
  }

  const plan = (): ReplicaPlan => ({ moves, blocked, replicas: before, fairShare: fair, band });
  if (eligible.length === 0) {
    blocked.push('no node is active and up: nowhere to place replicas');
    return plan();
  }
  if (waiting.length > 0 || repairs.length > 0) {
    if (repairs.length > 0) {
      const first = repairs.slice(0, 3).map((r) => r.g.id);
      blocked.push(
        `balance waits: ${repairs.length} group(s) need repair first (${first.join(', ')}${repairs.length > 3 ? ', ...' : ''})`,
      );
    } else blocked.push('balance waits: a node is down');
    return plan();
  }

  // 3. Zone spread.
  const spread = (rs: readonly NodeId[]) => new Set(rs.map(zoneOf)).size;
  if (hasZones) {
    const leaving = new Set(cen.decommissioning);
    for (const g of groups) {
      if (capped) break;
      if (touched.has(g.id) || busy.has(g.id)) continue;
      const rs = reps.get(g.id)!;
      if (rs.some((r) => leaving.has(r))) continue;
      const zones = new Map<string, NodeId[]>();
      for (const r of rs) zones.set(zoneOf(r), [...(zones.get(zoneOf(r)) ?? []), r]);
      if (zones.size === rs.length) continue;
      const open = eligible.filter((id) => !zones.has(zoneOf(id)));
      if (open.length === 0) continue;
      // The duplicate on the fullest node leaves, for the nearest node of a zone the group lacks.
      const dups = [...zones.values()].filter((z) => z.length > 1).flat();
      const src = dups
        .filter((r) => eligibleSet.has(r) && sourceRoom(r))
        .sort((a, b) => (count.get(b) ?? 0) - (count.get(a) ?? 0) || byId(a, b))[0];
      const dst = open.filter(room).sort((a, b) => (count.get(a) ?? 0) - (count.get(b) ?? 0) || byId(a, b))[0];
      if (src === undefined || dst === undefined) {
        blocked.push(`group ${g.id} has two replicas in one zone: waiting for moves in flight`);
        continue;
      }
      add(
        g.id,
        'zone',
        src,
        dst,
        `group ${g.id} has ${zones.get(zoneOf(src))!.length} replicas in zone ${node.get(src)?.labels?.zone ?? src} while zone ${node.get(dst)?.labels?.zone ?? dst} has none: ${src} (${count.get(src) ?? 0} replicas) → ${dst} (${count.get(dst) ?? 0})`,
      );
    }
  }

  // 4. Balance.
  // Decommission and zone moves above have changed the counts (not the total, so not the band).
  let e = 0;
  let d = 0;
  let onDecom = 0;
  for (const id of eligible) {
    const n = count.get(id) ?? 0;
    e += Math.max(0, n - band.high);
    d += Math.max(0, band.low - n);
  }
  for (const id of cen.decommissioning) onDecom += count.get(id) ?? 0;
  // Group 0 moves only when no data group can.
  const order = [...groups.filter((g) => g.id !== 0), ...groups.filter((g) => g.id === 0)];
  // Each node's groups, so that a search for a group to move reads one node's, not all of them
  // (a group moved in this plan is touched and skipped, so the index needs no upkeep).
  const onNode = new Map<NodeId, PlacementGroup[]>();
  for (const g of order)
    for (const r of reps.get(g.id)!) {
      const list = onNode.get(r);
      if (list) list.push(g);
      else onNode.set(r, [g]);
    }
  let planned = 0;
  let limitedBy: NodeId | null = null;
  while (!capped) {
    const goal = Math.max(e, d - onDecom);
    if (goal <= 0) break;
    const srcs = [...eligible].sort((a, b) => (count.get(b) ?? 0) - (count.get(a) ?? 0) || byId(a, b));
    const dsts = [...eligible].sort((a, b) => (count.get(a) ?? 0) - (count.get(b) ?? 0) || byId(a, b));
    let found = false;
    for (const s of srcs) {
      const cs = count.get(s) ?? 0;
      for (const t of dsts) {
        const ct = count.get(t) ?? 0;
        if (t === s || cs - ct < 2) continue;
        const e2 = e - (cs > band.high ? 1 : 0) + (ct + 1 > band.high ? 1 : 0);
        const d2 = d - (ct < band.low ? 1 : 0) + (cs - 1 < band.low ? 1 : 0);
        if (e2 > e || d2 > d || Math.max(e2, d2 - onDecom) >= goal) continue;
        if (!room(s) || !room(t)) {
          limitedBy ??= room(s) ? t : s;
          continue;
        }
        const g = (onNode.get(s) ?? []).find((x) => {
          if (touched.has(x.id) || busy.has(x.id)) return false;
          const rs = reps.get(x.id)!;
          if (!rs.includes(s) || rs.includes(t)) return false;
          return !hasZones || spread(rs.map((r) => (r === s ? t : r))) >= spread(rs);
        });
        if (g === undefined) continue;
        add(
          g.id,
          'balance',
          s,
          t,
          `${s} holds ${cs} replicas, ${t} ${ct}; fair share ${fair.toFixed(1)}, band ${band.low}..${band.high}: ${s} ${cs}→${cs - 1}, ${t} ${ct}→${ct + 1}`,
        );
        e = e2;
        d = d2;
        planned++;
        found = true;
        break;
      }
      if (found) break;
    }
    if (!found) break;
  }
  if (planned === 0 && Math.max(e, d - onDecom) > 0) {
    if (limitedBy !== null)
      blocked.push(`balance: waiting for moves in flight (${limitedBy} is at maxMovesPerNode ${cfg.maxMovesPerNode})`);
    else {
      const out = eligible.filter((id) => (count.get(id) ?? 0) > band.high || (count.get(id) ?? 0) < band.low);
      blocked.push(
        `balance: ${out.map((id) => `${id} (${count.get(id)})`).join(', ')} outside the band ${band.low}..${band.high} (fair share ${fair.toFixed(1)}), and no move toward it keeps every group on distinct nodes and as many zones`,
      );
    }
  }
  if (capped) blocked.push(`plan capped at maxMovesPerPlan ${cfg.maxMovesPerPlan}`);
  return plan();
}

function lexLess(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

function describeGone(
  n: PlacementNode | undefined,
  downFor: (n: PlacementNode) => number,
  delay: number,
  id: NodeId,
): string {
  if (n === undefined) return `node ${id} is not a member`;
  if (n.state === 'removed') return `node ${id} is removed`;
  return `node ${id} is down (${fmtMs(downFor(n))} >= repairDelayMs ${fmtMs(delay)})`;
}
