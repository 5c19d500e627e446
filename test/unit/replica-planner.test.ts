// The replica placement planner: safety of every plan on random clusters (limits, targets, no
// co-location, no loss of replication), determinism, and convergence of plan → apply rounds for
// adding a node, zone spreading, decommission and repair, counted against minimumMoves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  minimumMoves,
  type PlacementGroup,
  type PlacementInput,
  type PlacementNode,
  planReplicas,
  type ReplicaPlan,
  validateReplicaPlannerConfig,
} from '../../src/balancer/replicas.js';
import { BalancerConfigError } from '../../src/balancer/errors.js';

const MIN = 60_000;

/** A small seeded generator, so a failing case replays from fast-check's seed. */
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

function pick<T>(r: () => number, xs: readonly T[], k: number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, k);
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `n${i + 1}`);

function upNodes(n: number, zones: number): PlacementNode[] {
  return ids(n).map((id, i) => ({
    id,
    state: 'active' as const,
    up: true,
    labels: zones > 0 ? { zone: `z${i % zones}` } : undefined,
  }));
}

/** Group g on nodes g, g+1, ... (mod n): balanced, distinct nodes. */
function roundRobin(nodes: readonly string[], groups: number, rf: number): PlacementGroup[] {
  return Array.from({ length: groups }, (_, g) => ({
    id: g,
    voters: Array.from({ length: rf }, (_, i) => nodes[(g + i) % nodes.length]),
    learners: [],
  }));
}

function apply(groups: readonly PlacementGroup[], plan: ReplicaPlan): PlacementGroup[] {
  const byGroup = new Map(plan.moves.map((m) => [m.group, m]));
  return groups.map((g) => {
    const m = byGroup.get(g.id);
    if (!m) return g;
    const voters = m.from === null ? [...g.voters, m.to] : g.voters.map((v) => (v === m.from ? m.to : v));
    return { ...g, voters, learners: g.learners.filter((l) => l !== m.from) };
  });
}

function counts(groups: readonly PlacementGroup[]): Map<string, number> {
  const c = new Map<string, number>();
  for (const g of groups) for (const r of [...g.voters, ...g.learners]) c.set(r, (c.get(r) ?? 0) + 1);
  return c;
}

/** Plan → apply (every move completes before the next round) until a plan has no moves. */
function converge(input: PlacementInput, maxRounds: number) {
  let groups = input.groups;
  let moves = 0;
  const kinds = new Map<string, number>();
  const plans: ReplicaPlan[] = [];
  for (let round = 0; round < maxRounds; round++) {
    const plan = planReplicas({ ...input, groups });
    plans.push(plan);
    if (plan.moves.length === 0) return { groups, moves, kinds, plans, last: plan };
    for (const m of plan.moves) kinds.set(m.kind, (kinds.get(m.kind) ?? 0) + 1);
    moves += plan.moves.length;
    groups = apply(groups, plan);
  }
  assert.fail(`no fixed point after ${maxRounds} rounds (${moves} moves)`);
}

/** Groups with two replicas in one zone while an active, up node of a zone they lack exists. */
function fixableZoneViolations(nodes: readonly PlacementNode[], groups: readonly PlacementGroup[]): number {
  const zone = new Map(nodes.map((n) => [n.id, n.labels?.zone ?? `-${n.id}`]));
  const open = nodes.filter((n) => n.state === 'active' && n.up);
  let v = 0;
  for (const g of groups) {
    const zs = new Set(g.voters.map((r) => zone.get(r)));
    if (zs.size < g.voters.length && open.some((n) => !zs.has(zone.get(n.id)))) v++;
  }
  return v;
}

function inBand(plan: ReplicaPlan, groups: readonly PlacementGroup[], nodes: readonly PlacementNode[]): boolean {
  const c = counts(groups);
  return nodes
    .filter((n) => n.state === 'active' && n.up)
    .every((n) => (c.get(n.id) ?? 0) >= plan.band.low && (c.get(n.id) ?? 0) <= plan.band.high);
}

test('3 → 4 nodes, 1,000 groups × 3: the minimum is 713 moves and the planner makes exactly those', () => {
  const nodes = upNodes(4, 0);
  const groups = roundRobin(ids(3), 1000, 3);
  const input: PlacementInput = { nodes, groups, replication: 3, nowMs: 0 };
  assert.equal(minimumMoves(input), 713); // fair share 750, band 713..787
  const r = converge(input, 1000);
  assert.equal(r.moves, 713);
  assert.deepEqual([...counts(r.groups).values()].sort(), [713, 762, 762, 763]);
  assert.deepEqual(r.last.blocked, []);
  // Two in flight per node: the new node takes two a round.
  assert.equal(r.plans[0].moves.length, 2);
});

test('every plan is safe and deterministic on random clusters', () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer(),
        n: fc.integer({ min: 3, max: 7 }),
        zones: fc.integer({ min: 0, max: 3 }),
        groups: fc.integer({ min: 1, max: 2000 }),
        rf: fc.integer({ min: 1, max: 3 }),
        maxMovesPerNode: fc.integer({ min: 1, max: 4 }),
        maxMovesPerPlan: fc.integer({ min: 1, max: 100 }),
      }),
      ({ seed, n, zones, groups: G, rf, maxMovesPerNode, maxMovesPerPlan }) => {
        const r = rng(seed);
        const now = 10 * MIN;
        const nodes: PlacementNode[] = ids(n).map((id, i) => {
          const s = r();
          const up = r() < 0.8;
          return {
            id,
            state: s < 0.7 ? 'active' : s < 0.85 ? 'decommissioning' : 'removed',
            up,
            downSinceMs: up ? undefined : now - Math.floor(r() * 10 * MIN),
            labels: zones > 0 ? { zone: `z${i % zones}`, rack: r() < 0.5 ? 'r1' : 'r2' } : undefined,
          };
        });
        const all = ids(n);
        const groups: PlacementGroup[] = Array.from({ length: G }, (_, g) => {
          const k = r() < 0.1 ? Math.max(1, rf - 1) : rf;
          const on = pick(r, all, Math.min(k + 1, n));
          const learner = r() < 0.05 && on.length > k;
          return { id: g, voters: on.slice(0, k), learners: learner ? [on[k]] : [] };
        });
        const inFlight = Object.fromEntries(all.map((id) => [id, Math.floor(r() * 3)]));
        const input: PlacementInput = {
          nodes,
          groups,
          replication: rf,
          inFlight,
          nowMs: now,
          config: { maxMovesPerNode, maxMovesPerPlan },
        };
        const plan = planReplicas(input);
        const node = new Map(nodes.map((x) => [x.id, x]));
        assert.ok(plan.moves.length <= maxMovesPerPlan);
        const slots = new Map<string, number>();
        const moved = new Set<number>();
        const byId = new Map(groups.map((g) => [g.id, g]));
        for (const m of plan.moves) {
          const g = byId.get(m.group)!;
          const t = node.get(m.to)!;
          assert.equal(t.state, 'active', `target ${m.to} not active`);
          assert.equal(t.up, true, `target ${m.to} down`);
          assert.ok(![...g.voters, ...g.learners].includes(m.to), `group ${g.id} already on ${m.to}`);
          assert.ok(m.from === null || g.voters.includes(m.from));
          assert.equal(g.learners.length, 0, 'a group with a move in flight moved again');
          assert.ok(!moved.has(m.group), 'two moves of one group');
          moved.add(m.group);
          assert.ok(m.reason.length > 0);
          slots.set(m.to, (slots.get(m.to) ?? 0) + 1);
          const src = m.from === null ? undefined : node.get(m.from);
          if (m.from !== null && src?.up && src.state !== 'removed') slots.set(m.from, (slots.get(m.from) ?? 0) + 1);
        }
        for (const [id, k] of slots) assert.ok(k <= Math.max(0, maxMovesPerNode - inFlight[id]), `${id}: ${k} moves`);
        // No group loses replicas or healthy voters.
        const healthy = (g: PlacementGroup) =>
          g.voters.filter((v) => {
            const x = node.get(v)!;
            return x.state !== 'removed' && (x.up || now - x.downSinceMs! < 5 * MIN);
          }).length;
        const after = apply(groups, plan);
        for (let i = 0; i < G; i++) {
          assert.ok(after[i].voters.length >= groups[i].voters.length);
          assert.ok(healthy(after[i]) >= healthy(groups[i]));
        }
        // Repair before balance. Replication is "up to" the active nodes (the planner's rule): with
        // rf 3 and two active nodes, two voters are a full group, not a hole.
        const full = Math.min(rf, Math.max(1, nodes.filter((x) => x.state === 'active').length));
        const hole =
          nodes.some((x) => x.state !== 'removed' && !x.up && now - x.downSinceMs! < 5 * MIN) ||
          groups.some((g) => healthy(g) < full || g.voters.length !== healthy(g));
        if (hole) assert.ok(plan.moves.every((m) => m.kind !== 'balance' && m.kind !== 'zone'));
        // The order of the input does not matter.
        const shuffled = planReplicas({
          ...input,
          nodes: pick(r, nodes, n),
          groups: pick(r, groups, G).map((g) => ({ ...g, voters: pick(r, g.voters, g.voters.length) })),
        });
        assert.deepEqual(shuffled, plan);
      },
    ),
    { numRuns: 60 },
  );
});

test('adding a node converges into the band in at most the minimum number of moves, then stays', () => {
  fc.assert(
    fc.property(
      fc.record({
        n: fc.integer({ min: 3, max: 6 }),
        groups: fc.integer({ min: 1, max: 1000 }),
        rf: fc.integer({ min: 1, max: 3 }),
        distinctZones: fc.boolean(),
        maxMovesPerNode: fc.integer({ min: 1, max: 8 }),
        tolerance: fc.constantFrom(0, 0.05, 0.1),
      }),
      ({ n, groups: G, rf, distinctZones, maxMovesPerNode, tolerance }) => {
        const nodes = upNodes(n + 1, distinctZones ? n + 1 : 0);
        const input: PlacementInput = {
          nodes,
          groups: roundRobin(ids(n), G, rf),
          replication: rf,
          nowMs: 0,
          config: { maxMovesPerNode, tolerance },
        };
        const min = minimumMoves(input);
        const r = converge(input, min + 10);
        assert.ok(inBand(r.last, r.groups, nodes), `out of band ${[...counts(r.groups)]}`);
        // Every balance move lowers max(E, D - R) by one, so no more than the minimum.
        assert.ok(r.moves <= min, `${r.moves} moves, minimum ${min}`);
        assert.deepEqual(r.last.blocked, []);
        assert.deepEqual(
          [...r.kinds.keys()].filter((k) => k !== 'balance'),
          [],
        );
      },
    ),
    { numRuns: 40 },
  );
});

test('with moves in flight for a round, adding a node still takes no more than the minimum', () => {
  fc.assert(
    fc.property(
      fc.record({
        n: fc.integer({ min: 3, max: 6 }),
        groups: fc.integer({ min: 1, max: 600 }),
        rf: fc.integer({ min: 1, max: 3 }),
        maxMovesPerNode: fc.integer({ min: 1, max: 4 }),
      }),
      ({ n, groups: G, rf, maxMovesPerNode }) => {
        const nodes = upNodes(n + 1, 0);
        const config = { maxMovesPerNode };
        let groups: PlacementGroup[] = roundRobin(ids(n), G, rf);
        const min = minimumMoves({ nodes, groups, config });
        let pending: ReplicaPlan['moves'] = [];
        let moves = 0;
        for (let round = 0; ; round++) {
          assert.ok(round < 2 * min + 10, 'no fixed point');
          const inFlight: Record<string, number> = {};
          for (const m of pending) for (const x of [m.from, m.to]) if (x) inFlight[x] = (inFlight[x] ?? 0) + 1;
          const plan = planReplicas({ nodes, groups, replication: rf, nowMs: 0, inFlight, config });
          if (plan.moves.length === 0 && pending.length === 0) {
            assert.ok(inBand(plan, groups, nodes));
            break;
          }
          const busy = { ...inFlight };
          for (const m of plan.moves) for (const x of [m.from, m.to]) if (x) busy[x] = (busy[x] ?? 0) + 1;
          for (const [x, k] of Object.entries(busy)) assert.ok(k <= Math.max(maxMovesPerNode, inFlight[x] ?? 0));
          moves += plan.moves.length;
          // Last round's moves finish; this round's start: a learner, and the voter it replaces.
          const done = new Map(pending.map((m) => [m.group, m]));
          const started = new Map(plan.moves.map((m) => [m.group, m]));
          groups = groups.map((g) => {
            const f = done.get(g.id);
            if (f) return { id: g.id, voters: [...g.voters.filter((v) => v !== f.from), f.to], learners: [] };
            const s = started.get(g.id);
            if (s) return { ...g, learners: [s.to], leaving: s.from ?? undefined };
            return g;
          });
          pending = plan.moves;
        }
        assert.ok(moves <= min, `${moves} moves, minimum ${min}`);
      },
    ),
    { numRuns: 30 },
  );
});

test('with zones, rounds reach a fixed point with every fixable zone violation fixed', () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer(),
        n: fc.integer({ min: 3, max: 7 }),
        zones: fc.integer({ min: 2, max: 3 }),
        groups: fc.integer({ min: 1, max: 600 }),
        rf: fc.integer({ min: 2, max: 3 }),
      }),
      ({ seed, n, zones, groups: G, rf }) => {
        const r = rng(seed);
        const nodes = upNodes(n, zones);
        const groups = Array.from({ length: G }, (_, g) => ({ id: g, voters: pick(r, ids(n), rf), learners: [] }));
        const input: PlacementInput = { nodes, groups, replication: rf, nowMs: 0, config: { maxMovesPerNode: 4 } };
        const min = minimumMoves(input);
        const v0 = fixableZoneViolations(nodes, groups);
        const res = converge(input, 4 * (min + v0) + 10);
        assert.equal(fixableZoneViolations(nodes, res.groups), 0);
        // Never a worse zone spread along the way.
        let prev = v0;
        let gs: PlacementGroup[] = groups;
        for (const p of res.plans) {
          gs = apply(gs, p);
          const v = fixableZoneViolations(nodes, gs);
          assert.ok(v <= prev);
          prev = v;
        }
        // A zone fix can cost one balance move more (it may take a replica off a light node).
        assert.ok(res.moves <= min + 2 * v0, `${res.moves} moves, minimum ${min} + ${v0} zone fixes`);
        if (!inBand(res.last, res.groups, nodes)) assert.ok(res.last.blocked.some((b) => b.startsWith('balance:')));
      },
    ),
    { numRuns: 40 },
  );
});

test('decommission empties the node, group 0 last, onto active up nodes only', () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer(),
        n: fc.integer({ min: 4, max: 7 }),
        zones: fc.integer({ min: 0, max: 3 }),
        groups: fc.integer({ min: 1, max: 500 }),
        rf: fc.integer({ min: 1, max: 3 }),
        maxMovesPerNode: fc.integer({ min: 1, max: 4 }),
      }),
      ({ seed, n, zones, groups: G, rf, maxMovesPerNode }) => {
        const r = rng(seed);
        const nodes: PlacementNode[] = upNodes(n, zones).map((x, i) =>
          i === 0 ? { ...x, state: 'decommissioning' } : i === 1 ? { ...x, state: 'removed', up: false } : x,
        );
        // n2 is removed and holds nothing; everything else is placed at random over the rest.
        const live = ids(n).filter((id) => id !== 'n2');
        if (rf > live.length - 1) return;
        const groups = Array.from({ length: G }, (_, g) => ({ id: g, voters: pick(r, live, rf), learners: [] }));
        if (!groups[0].voters.includes('n1'))
          groups[0] = { ...groups[0], voters: ['n1', ...groups[0].voters.slice(1)] };
        const input: PlacementInput = { nodes, groups, replication: rf, nowMs: 0, config: { maxMovesPerNode } };
        const min = minimumMoves(input);
        const res = converge(input, 4 * min + 10);
        assert.equal(counts(res.groups).get('n1') ?? 0, 0);
        assert.equal(counts(res.groups).get('n2') ?? 0, 0);
        let gs: PlacementGroup[] = groups;
        for (const p of res.plans) {
          const g0 = p.moves.find((m) => m.group === 0 && m.from === 'n1');
          if (g0) assert.equal(counts(gs).get('n1'), 1, 'group 0 left before the others');
          gs = apply(gs, p);
        }
        if (zones === 0) {
          assert.ok(inBand(res.last, res.groups, nodes));
          // With the emptiest node at its move limit, a replica goes to one already in the band.
          assert.ok(res.moves <= Math.ceil(min * 1.1) + 2, `${res.moves} moves, minimum ${min}`);
        }
      },
    ),
    { numRuns: 40 },
  );
});

test('a down node waits repairDelayMs, then its replicas are replaced', () => {
  const nodes: PlacementNode[] = upNodes(5, 0).map((x) => (x.id === 'n2' ? { ...x, up: false, downSinceMs: 0 } : x));
  const groups = roundRobin(ids(5), 200, 3);
  const waiting = planReplicas({ nodes, groups, replication: 3, nowMs: 12_000 });
  assert.deepEqual(waiting.moves, []);
  assert.ok(waiting.blocked.some((b) => b.startsWith('node n2 is down (12 s < repairDelayMs 5 min): waiting')));
  assert.ok(waiting.blocked.includes('balance waits: a node is down'));

  const late = planReplicas({ nodes, groups, replication: 3, nowMs: 5 * MIN });
  assert.ok(late.moves.length > 0);
  assert.ok(late.moves.every((m) => m.kind === 'repair' && m.from === 'n2' && m.to !== 'n2'));
  assert.match(late.moves[0].reason, /node n2 is down \(5 min >= repairDelayMs 5 min\)/);
  assert.ok(late.blocked.some((b) => b.startsWith('balance waits: ')));

  const res = converge({ nodes, groups, replication: 3, nowMs: 5 * MIN }, 500);
  assert.equal(counts(res.groups).get('n2') ?? 0, 0);
  assert.ok(res.groups.every((g) => g.voters.length === 3 && new Set(g.voters).size === 3));
  assert.ok(inBand(res.last, res.groups, nodes));
});

test('an under-replicated group gets an add-only repair on the best node, and balance waits', () => {
  const nodes = upNodes(4, 2);
  const groups = [
    { id: 0, voters: ['n1', 'n2', 'n3'], learners: [] },
    { id: 7, voters: ['n1', 'n2'], learners: [] },
  ];
  const plan = planReplicas({ nodes, groups, replication: 3, nowMs: 0 });
  assert.deepEqual(
    plan.moves.map((m) => [m.group, m.kind, m.from, m.to]),
    [[7, 'repair', null, 'n4']],
  );
  assert.match(plan.moves[0].reason, /group 7 has 2 voters, replication 3/);
  assert.ok(plan.blocked.some((b) => b.startsWith('balance waits: 1 group(s) need repair first (7)')));
});

test('a zone move spreads a group, and its reason says why', () => {
  const nodes = upNodes(3, 3);
  const groups = [{ id: 1, voters: ['n1', 'n4'], learners: [] }];
  const four: PlacementNode[] = [...nodes, { id: 'n4', state: 'active', up: true, labels: { zone: 'z0' } }];
  const plan = planReplicas({ nodes: four, groups, replication: 2, nowMs: 0 });
  assert.equal(plan.moves.length, 1);
  assert.equal(plan.moves[0].kind, 'zone');
  assert.equal(plan.moves[0].to, 'n2');
  assert.match(plan.moves[0].reason, /group 1 has 2 replicas in zone z0 while zone z1 has none/);
});

test('a group on a decommissioning node gets no zone move: its decommission move spreads it', () => {
  const zone = (id: string, z: string, state: PlacementNode['state'] = 'active'): PlacementNode => ({
    id,
    state,
    up: true,
    labels: { zone: z },
  });
  const nodes = [zone('n1', 'z0'), zone('n2', 'z1'), zone('n3', 'z2'), zone('n4', 'z0', 'decommissioning')];
  // Group 2 has two replicas in z0, one on the decommissioning n4, which moves one group at a time.
  const groups = [
    { id: 1, voters: ['n1', 'n2', 'n4'], learners: [] },
    { id: 2, voters: ['n1', 'n3', 'n4'], learners: [] },
    { id: 3, voters: ['n1', 'n2', 'n3'], learners: [] },
  ];
  const input: PlacementInput = { nodes, groups, replication: 3, nowMs: 0, config: { maxMovesPerNode: 1 } };
  assert.deepEqual(
    planReplicas(input).moves.map((m) => [m.group, m.kind, m.from, m.to]),
    [[1, 'decommission', 'n4', 'n3']],
    'group 2 waits for its decommission move (to z1) instead of a zone move first',
  );
  const res = converge(input, 20);
  assert.equal(res.moves, 2, 'one move per replica on n4, the minimum');
  assert.deepEqual(
    res.groups.map((g) => [...g.voters].sort()),
    [
      ['n1', 'n2', 'n3'],
      ['n1', 'n2', 'n3'],
      ['n1', 'n2', 'n3'],
    ],
  );
});

test('a group replicated more widely than there are active nodes is not under-replicated', () => {
  const nodes = upNodes(3, 0);
  const groups = [{ id: 0, voters: ids(3), learners: [], replication: 5 }, ...roundRobin(ids(2), 30, 2).slice(1)];
  const plan = planReplicas({ nodes, groups, replication: 2, nowMs: 0 });
  assert.ok(plan.moves.length > 0);
  assert.ok(plan.moves.every((m) => m.kind === 'balance' && m.to === 'n3' && m.group !== 0));
});

test('the configuration is checked field by field', () => {
  validateReplicaPlannerConfig({ tolerance: 0.1, maxMovesPerNode: 3, repairDelayMs: 0, maxMovesPerPlan: 10 });
  const bad = (c: object, field: string) =>
    assert.throws(
      () => validateReplicaPlannerConfig(c),
      (e: unknown) => e instanceof BalancerConfigError && e.field === field,
    );
  bad({ tolerence: 0.1 }, 'replicas.tolerence');
  bad({ tolerance: -1 }, 'replicas.tolerance');
  bad({ maxMovesPerNode: 0 }, 'replicas.maxMovesPerNode');
  bad({ maxMovesPerNode: 1.5 }, 'replicas.maxMovesPerNode');
  bad({ repairDelayMs: Number.NaN }, 'replicas.repairDelayMs');
  assert.throws(
    () => planReplicas({ nodes: [], groups: [], replication: 3, nowMs: 0, config: { maxMovesPerPlan: 0 } }),
    BalancerConfigError,
  );
});
