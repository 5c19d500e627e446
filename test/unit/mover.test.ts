// The replica mover against an in-memory cluster: decommission to 'removed', filling a new node in
// exactly the planner's minimum of moves, rollback of a failed promotion, a voter too many after a
// failed removal, a view that missed a change, balance off, per-node limits, stop, and a dry run
// without side effects. The fake checks at every call that no group has two changes at once, loses
// a voter it needs (below its replication, capped at the active nodes) or has more than one replica
// too many.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { minimumMoves, type PlacementNode, replicaBand } from '../../src/balancer/replicas.js';
import { AbortError, RuntimeError } from '../../src/runtime/errors.js';
import { type MoverHost, ReplicaMover, type ReplicaMoverConfig } from '../../src/runtime/mover.js';

type Op = 'addLearner' | 'promote' | 'removeMember';

interface Held {
  readonly op: Op;
  readonly group: number;
  readonly node: string;
  go(): void;
}

class FakeCluster implements MoverHost {
  readonly log = pino({ level: 'silent' });
  now = 1_000;
  readonly nodes = new Map<string, { id: string; state: PlacementNode['state']; up: boolean; zone?: string }>();
  readonly groups = new Map<number, { voters: string[]; learners: string[]; replication?: number }>();
  readonly calls: { op: Op; group: number; node: string }[] = [];
  readonly states: [string, string][] = [];
  readonly violations: string[] = [];
  readonly held: Held[] = [];
  /** Calls wait for release() instead of the next turn. */
  hold = false;
  /** A failure to inject, asked at each call after its wait. */
  fail?: (op: Op, group: number, node: string) => Error | undefined;
  /** view() shows the snapshot taken at the last sync() (a node that hears of changes late). */
  lagging = false;
  private snapshot: ReturnType<MoverHost['view']> | null = null;
  private readonly busy = new Set<number>();
  pendingStates = 0;

  constructor(
    nodes: string[],
    readonly replication = 3,
  ) {
    for (const id of nodes) this.nodes.set(id, { id, state: 'active', up: true });
  }

  view(): ReturnType<MoverHost['view']> {
    if (this.lagging && this.snapshot !== null) return this.snapshot;
    return this.fresh();
  }

  sync(): void {
    this.snapshot = this.fresh();
  }

  private fresh(): ReturnType<MoverHost['view']> {
    return {
      nodes: [...this.nodes.values()].map((n) => ({
        id: n.id,
        state: n.state,
        up: n.up,
        ...(n.zone !== undefined ? { labels: { zone: n.zone } } : {}),
      })),
      groups: [...this.groups].map(([id, g]) => ({
        id,
        voters: [...g.voters],
        learners: [...g.learners],
        ...(g.replication !== undefined ? { replication: g.replication } : {}),
      })),
      replication: this.replication,
    };
  }

  nowMs(): number {
    return this.now;
  }

  /** Voters a group must keep: its replication, capped at the active nodes (as the planner does). */
  private floor(group: number): number {
    const active = [...this.nodes.values()].filter((n) => n.state === 'active').length;
    return Math.min(this.groups.get(group)!.replication ?? this.replication, active);
  }

  private async call(op: Op, group: number, node: string, signal: AbortSignal, apply: () => void): Promise<void> {
    this.calls.push({ op, group, node });
    if (this.busy.has(group)) this.violations.push(`group ${group}: two changes at once`);
    this.busy.add(group);
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(new AbortError(`${op} aborted`));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        const go = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        if (this.hold) this.held.push({ op, group, node, go });
        else setImmediate(go);
      });
      const e = this.fail?.(op, group, node);
      if (e !== undefined) throw e;
      apply();
      const g = this.groups.get(group)!;
      const rf = g.replication ?? this.replication;
      if (g.voters.length + g.learners.length > rf + 1)
        this.violations.push(`group ${group}: ${g.voters.length + g.learners.length} replicas, replication ${rf}`);
    } finally {
      this.busy.delete(group);
    }
  }

  private bad(why: string): never {
    this.violations.push(why);
    throw new RuntimeError('InvalidArgument', why);
  }

  addLearner(group: number, node: string, _t: number, signal: AbortSignal): Promise<void> {
    return this.call('addLearner', group, node, signal, () => {
      const g = this.groups.get(group)!;
      if (g.learners.length > 0) this.bad(`group ${group}: a second learner (${node})`);
      if (g.voters.includes(node)) this.bad(`group ${group}: ${node} already a voter`);
      if (this.nodes.get(node)?.state !== 'active') this.bad(`group ${group}: learner on ${node}, not active`);
      g.learners.push(node);
    });
  }

  promote(group: number, node: string, _t: number, signal: AbortSignal): Promise<void> {
    return this.call('promote', group, node, signal, () => {
      const g = this.groups.get(group)!;
      if (!g.learners.includes(node)) this.bad(`group ${group}: promote of ${node}, not a learner`);
      g.learners = g.learners.filter((x) => x !== node);
      g.voters.push(node);
    });
  }

  removeMember(group: number, node: string, _t: number, signal: AbortSignal): Promise<void> {
    return this.call('removeMember', group, node, signal, () => {
      const g = this.groups.get(group)!;
      if (!g.voters.includes(node) && !g.learners.includes(node))
        this.bad(`group ${group}: removal of ${node}, not a member`);
      if (g.voters.includes(node) && g.voters.length - 1 < this.floor(group))
        this.violations.push(`group ${group}: ${node} removed, leaving ${g.voters.length - 1} voters`);
      g.voters = g.voters.filter((x) => x !== node);
      g.learners = g.learners.filter((x) => x !== node);
    });
  }

  /** Groups read again, in order. */
  readonly refreshes: number[] = [];

  async refreshGroup(group: number): Promise<boolean> {
    this.refreshes.push(group);
    await new Promise((r) => setImmediate(r));
    if (!this.lagging || this.snapshot === null) return false;
    const now = this.fresh().groups.find((g) => g.id === group);
    const i = this.snapshot.groups.findIndex((g) => g.id === group);
    if (now === undefined || i < 0 || JSON.stringify(this.snapshot.groups[i]) === JSON.stringify(now)) return false;
    this.snapshot.groups[i] = now;
    return true;
  }

  /** Nodes asked what they hold, in order. */
  readonly asked: string[] = [];

  async stillOn(node: string): Promise<number[]> {
    this.asked.push(node);
    this.pendingStates++;
    try {
      await new Promise((r) => setImmediate(r));
      const held = [...this.groups].filter(([, g]) => g.voters.includes(node) || g.learners.includes(node));
      for (const [id] of held) await this.refreshGroup(id);
      return held.map(([id]) => id);
    } finally {
      this.pendingStates--;
    }
  }

  async setNodeState(node: string, state: 'removed'): Promise<void> {
    this.states.push([node, state]);
    this.pendingStates++;
    await new Promise((r) => setImmediate(r));
    this.pendingStates--;
    this.nodes.get(node)!.state = state;
  }

  /** Let every held call go on. */
  release(): void {
    for (const h of this.held.splice(0)) h.go();
  }

  count(node: string): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.voters.includes(node) || g.learners.includes(node)) n++;
    return n;
  }
}

/** Groups 0..n-1, group g on nodes g, g+1, ... (mod the node count). */
function place(c: FakeCluster, nodes: string[], groups: number, rf = 3): void {
  for (let g = 0; g < groups; g++)
    c.groups.set(g, { voters: Array.from({ length: rf }, (_, i) => nodes[(g + i) % nodes.length]), learners: [] });
}

const turn = () => new Promise((r) => setImmediate(r));

async function idle(m: ReplicaMover, c: FakeCluster): Promise<void> {
  for (let i = 0; i < 10_000 && (m.status().inFlight.length > 0 || c.pendingStates > 0); i++) await turn();
  await turn();
}

const started = (m: ReplicaMover) => Object.values(m.status().counters).reduce((a, k) => a + k.started, 0);

/** Rounds until one starts nothing and nothing is in flight; returns the rounds run. */
async function drive(m: ReplicaMover, c: FakeCluster, max = 500): Promise<number> {
  for (let i = 1; i <= max; i++) {
    const before = started(m);
    m.round();
    await idle(m, c);
    c.now += 1_000;
    if (started(m) === before && m.status().inFlight.length === 0) return i;
  }
  throw new Error('no fixed point');
}

function mover(c: FakeCluster, cfg: ReplicaMoverConfig = {}): ReplicaMover {
  return new ReplicaMover(c, cfg);
}

test('decommissioning one node of four empties it and marks it removed once', async () => {
  const nodes = ['n1', 'n2', 'n3', 'n4'];
  const c = new FakeCluster(nodes);
  place(c, nodes, 40);
  c.nodes.get('n2')!.state = 'decommissioning';
  const m = mover(c);
  assert.equal(m.status().decommissioning.n2, 30);
  await drive(m, c);
  assert.deepEqual(c.violations, []);
  assert.equal(c.count('n2'), 0);
  assert.deepEqual(c.states, [['n2', 'removed']]);
  assert.equal(c.nodes.get('n2')!.state, 'removed');
  for (const [id, g] of c.groups) {
    assert.equal(g.voters.length, 3, `group ${id}`);
    assert.equal(g.learners.length, 0, `group ${id}`);
  }
  // Group 0 (metadata) left n2 last.
  const lastOff = c.calls.filter((x) => x.op === 'removeMember' && x.node === 'n2').at(-1);
  assert.equal(lastOff?.group, 0);
  const s = m.status();
  assert.equal(s.counters.decommission.completed, 30);
  assert.equal(s.counters.decommission.failed, 0);
  // Further rounds change nothing and do not mark it again.
  await drive(m, c);
  assert.deepEqual(c.states, [['n2', 'removed']]);
});

test('a fourth node fills to the band in exactly the minimum of moves', async () => {
  const three = ['n1', 'n2', 'n3'];
  const c = new FakeCluster([...three, 'n4']);
  place(c, three, 60);
  const v = c.view();
  const min = minimumMoves({ nodes: v.nodes, groups: v.groups });
  assert.ok(min > 0);
  const m = mover(c);
  await drive(m, c);
  assert.deepEqual(c.violations, []);
  const s = m.status();
  assert.equal(s.counters.balance.started, min);
  assert.equal(s.counters.balance.completed, min);
  assert.equal(c.calls.filter((x) => x.op === 'addLearner').length, min);
  const band = replicaBand(180, 4, 0.05);
  for (const n of ['n1', 'n2', 'n3', 'n4']) {
    assert.ok(c.count(n) >= band.low && c.count(n) <= band.high, `${n}: ${c.count(n)}`);
  }
  assert.equal(m.plan().moves.length, 0);
});

test('a move failing at promote is rolled back and retried in a later round', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3']);
  c.groups.set(7, { voters: ['n1', 'n2'], learners: [] });
  let promotes = 0;
  c.fail = (op) => (op === 'promote' && promotes++ === 0 ? new RuntimeError('Timeout', 'learner behind') : undefined);
  const m = mover(c);
  m.round();
  await idle(m, c);
  assert.deepEqual(c.calls, [
    { op: 'addLearner', group: 7, node: 'n3' },
    { op: 'promote', group: 7, node: 'n3' },
    { op: 'removeMember', group: 7, node: 'n3' },
  ]);
  let s = m.status();
  assert.deepEqual(s.counters.repair, { started: 1, completed: 0, failed: 1, rolledBack: 1 });
  assert.equal(s.lastErrors.length, 1);
  assert.equal(s.lastErrors[0].group, 7);
  assert.equal(s.lastErrors[0].step, 'promote');
  assert.equal(s.lastErrors[0].code, 'Timeout');
  assert.deepEqual(c.groups.get(7), { voters: ['n1', 'n2'], learners: [] });
  await drive(m, c);
  s = m.status();
  assert.equal(s.counters.repair.completed, 1);
  assert.deepEqual(c.groups.get(7)!.voters.sort(), ['n1', 'n2', 'n3']);
  assert.deepEqual(c.violations, []);
});

test('a failed rollback leaves a learner that a later round removes', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3']);
  c.groups.set(7, { voters: ['n1', 'n2'], learners: [] });
  let promotes = 0;
  let removals = 0;
  c.fail = (op) => {
    if (op === 'promote' && promotes++ === 0) return new RuntimeError('Timeout', 'learner behind');
    if (op === 'removeMember' && removals++ === 0) return new RuntimeError('Unavailable', 'no leader');
    return undefined;
  };
  const m = mover(c);
  m.round();
  await idle(m, c);
  assert.deepEqual(c.groups.get(7), { voters: ['n1', 'n2'], learners: ['n3'] });
  const p = m.plan();
  assert.deepEqual(
    p.removals.map((r) => [r.group, r.node]),
    [[7, 'n3']],
  );
  assert.equal(p.moves.length, 0);
  await drive(m, c);
  assert.equal(m.status().counters.trim.completed, 1);
  assert.deepEqual(c.groups.get(7)!.voters.sort(), ['n1', 'n2', 'n3']);
  assert.deepEqual(c.groups.get(7)!.learners, []);
  assert.deepEqual(c.violations, []);
});

test('a failure at removal leaves a voter too many, removed by the next round, then decommission ends', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4']);
  c.groups.set(1, { voters: ['n1', 'n2', 'n3'], learners: [] });
  c.groups.set(2, { voters: ['n1', 'n2', 'n4'], learners: [] });
  c.nodes.get('n3')!.state = 'decommissioning';
  let failures = 0;
  c.fail = (op, _g, node) =>
    op === 'removeMember' && node === 'n3' && failures++ < 3 ? new RuntimeError('Unavailable', 'no quorum') : undefined;
  const m = mover(c);
  m.round();
  await idle(m, c);
  assert.equal(failures, 3);
  assert.deepEqual(c.groups.get(1)!.voters.sort(), ['n1', 'n2', 'n3', 'n4']);
  assert.deepEqual(m.status().counters.decommission, { started: 1, completed: 0, failed: 1, rolledBack: 0 });
  assert.deepEqual(c.states, []);
  // The next plan removes n3 instead of moving group 1 again.
  const p = m.plan();
  assert.deepEqual(
    p.removals.map((r) => [r.group, r.node]),
    [[1, 'n3']],
  );
  assert.deepEqual(p.moves, []);
  await drive(m, c);
  assert.deepEqual(c.groups.get(1)!.voters.sort(), ['n1', 'n2', 'n4']);
  assert.deepEqual(c.states, [['n3', 'removed']]);
  assert.equal(m.status().counters.trim.completed, 1);
  assert.deepEqual(c.violations, []);
});

test('a voter too many found by a fresh mover goes from the decommissioning node, else the fullest', () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4', 'n5']);
  c.groups.set(1, { voters: ['n1', 'n2', 'n3', 'n4'], learners: [] });
  c.groups.set(2, { voters: ['n2', 'n3', 'n5'], learners: [] });
  c.groups.set(3, { voters: ['n2', 'n4', 'n5'], learners: [] });
  assert.deepEqual(
    mover(c)
      .plan()
      .removals.map((r) => [r.group, r.node]),
    [[1, 'n2']],
  );
  c.nodes.get('n4')!.state = 'decommissioning';
  assert.deepEqual(
    mover(c)
      .plan()
      .removals.map((r) => [r.group, r.node]),
    [[1, 'n4']],
  );
});

test('group 0 of five on five nodes: a decommission trims it last and ends', async () => {
  const nodes = ['n1', 'n2', 'n3', 'n4', 'n5'];
  const c = new FakeCluster(nodes);
  place(c, nodes, 11);
  c.groups.set(0, { voters: [...nodes], learners: [], replication: 5 });
  c.nodes.get('n5')!.state = 'decommissioning';
  const m = mover(c);
  await drive(m, c);
  assert.deepEqual(c.violations, []);
  assert.deepEqual(c.groups.get(0)!.voters.sort(), ['n1', 'n2', 'n3', 'n4']);
  assert.equal(c.count('n5'), 0);
  assert.deepEqual(c.states, [['n5', 'removed']]);
  const lastOff = c.calls.filter((x) => x.op === 'removeMember' && x.node === 'n5').at(-1);
  assert.equal(lastOff?.group, 0);
});

test('balance off: decommission still runs, balance moves are planned but not made', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4', 'n5']);
  place(c, ['n1', 'n2', 'n3'], 30);
  c.nodes.get('n1')!.state = 'decommissioning';
  const m = mover(c, { balance: false });
  await drive(m, c);
  assert.deepEqual(c.violations, []);
  assert.deepEqual(c.states, [['n1', 'removed']]);
  const s = m.status();
  assert.equal(s.counters.decommission.completed, 30);
  assert.equal(s.counters.balance.started, 0);
  assert.equal(s.counters.zone.started, 0);
  const p = m.plan();
  assert.ok(
    p.moves.some((x) => x.kind === 'balance'),
    'balance moves are still planned',
  );
  // With balance on, the same mover state moves them.
  const on = mover(c);
  await drive(on, c);
  assert.ok(on.status().counters.balance.completed > 0);
  assert.deepEqual(on.plan().moves, []);
  assert.deepEqual(c.violations, []);
});

test('moves in flight stay within maxMovesPerNode and one per group', async () => {
  const three = ['n1', 'n2', 'n3'];
  const c = new FakeCluster([...three, 'n4']);
  place(c, three, 60);
  c.nodes.get('n1')!.state = 'decommissioning';
  c.hold = true;
  const m = mover(c, { maxMovesPerNode: 2 });
  let peak = 0;
  for (let i = 0; i < 2_000; i++) {
    m.round();
    m.round(); // a second round while nothing has finished starts nothing more
    const per = new Map<string, number>();
    const groups = new Set<number>();
    for (const f of m.status().inFlight) {
      assert.ok(!groups.has(f.group), `group ${f.group} twice`);
      groups.add(f.group);
      for (const n of [f.from, f.to]) if (n !== null) per.set(n, (per.get(n) ?? 0) + 1);
    }
    for (const [n, k] of per) assert.ok(k <= 2, `${n}: ${k} moves in flight`);
    peak = Math.max(peak, ...per.values());
    const heldPer = new Map<string, number>();
    for (const h of c.held) heldPer.set(h.node, (heldPer.get(h.node) ?? 0) + 1);
    for (const [n, k] of heldPer) assert.ok(k <= 2, `${n}: ${k} calls at once`);
    if (c.held.length === 0 && m.status().inFlight.length === 0) break;
    c.release();
    await turn();
    await turn();
  }
  assert.equal(peak, 2);
  assert.equal(c.count('n1'), 0);
  assert.deepEqual(c.states, [['n1', 'removed']]);
  assert.deepEqual(c.violations, []);
});

test('stop() aborts the moves in flight; later rounds do nothing', async () => {
  const three = ['n1', 'n2', 'n3'];
  const c = new FakeCluster([...three, 'n4']);
  place(c, three, 30);
  c.hold = true;
  const m = mover(c);
  m.round();
  const n = m.status().inFlight.length;
  assert.ok(n > 0);
  await m.stop();
  const s = m.status();
  assert.equal(s.stopped, true);
  assert.deepEqual(s.inFlight, []);
  assert.equal(s.counters.balance.failed, n);
  assert.equal(s.lastErrors[0].code, 'Aborted');
  const calls = c.calls.length;
  const p = m.round();
  assert.deepEqual(p.moves, []);
  assert.equal(c.calls.length, calls);
  assert.equal(c.held.length, n); // never released: the aborts settled them
});

test('plan() is a dry run: no calls, no state, and what round() then starts', async () => {
  const three = ['n1', 'n2', 'n3'];
  const c = new FakeCluster([...three, 'n4']);
  place(c, three, 30);
  c.nodes.get('n2')!.state = 'decommissioning';
  const m = mover(c);
  const a = m.plan();
  const b = m.plan();
  assert.deepEqual(a, b);
  assert.equal(c.calls.length, 0);
  assert.deepEqual(c.states, []);
  assert.deepEqual(m.status().inFlight, []);
  assert.ok(a.moves.length > 0);
  c.hold = true;
  const r = m.round();
  assert.deepEqual(r, a);
  assert.deepEqual(
    m
      .status()
      .inFlight.map((f) => [f.group, f.from, f.to])
      .sort(),
    a.moves.map((x) => [x.group, x.from, x.to]).sort(),
  );
  await m.stop();
});

test('a view that hears of changes late: no change is made twice, no voter lost', async () => {
  const three = ['n1', 'n2', 'n3'];
  const c = new FakeCluster([...three, 'n4']);
  place(c, three, 30);
  c.nodes.get('n3')!.state = 'decommissioning';
  c.lagging = true;
  c.sync();
  const m = mover(c);
  for (let i = 0; i < 400; i++) {
    m.round();
    await idle(m, c);
    c.now += 1_000;
    if (i % 3 === 2) c.sync();
  }
  c.sync();
  await drive(m, c);
  assert.deepEqual(c.violations, []);
  assert.equal(c.count('n3'), 0);
  assert.deepEqual(c.states, [['n3', 'removed']]);
  for (const g of c.groups.values()) assert.equal(g.voters.length, 3);
});

test('a view that missed a change for good: the failed move reads the group again, and the decommission ends', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4']);
  c.nodes.get('n1')!.state = 'decommissioning';
  c.groups.set(5, { voters: ['n1', 'n2', 'n3'], learners: [] });
  c.groups.set(6, { voters: ['n2', 'n3', 'n4'], learners: [] });
  c.lagging = true;
  c.sync();
  // Another mover already moved group 5 off n1 to n4; the notice of it never reached this view.
  c.groups.get(5)!.voters = ['n2', 'n3', 'n4'];
  const m = mover(c);
  assert.deepEqual(
    m.plan().moves.map((x) => [x.group, x.from, x.to]),
    [[5, 'n1', 'n4']],
    'planned from the stale view',
  );
  const rounds = await drive(m, c, 20);
  assert.ok(rounds <= 3, `ended in ${rounds} rounds`);
  // The group's leader refused the learner (n4 is a voter already) once; then the view was right.
  assert.deepEqual(c.violations, ['group 5: n4 already a voter']);
  assert.deepEqual(c.refreshes, [5]);
  assert.equal(m.status().counters.decommission.failed, 1);
  assert.deepEqual(c.states, [['n1', 'removed']]);
  assert.deepEqual(c.groups.get(5), { voters: ['n2', 'n3', 'n4'], learners: [] });
});

test('a view that missed a replica added to a decommissioning node: asked before removal, the node is emptied first', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4']);
  c.nodes.get('n1')!.state = 'decommissioning';
  c.groups.set(5, { voters: ['n2', 'n3', 'n4'], learners: [] });
  c.lagging = true;
  c.sync();
  // An earlier mover moved group 5's replica from n4 to n1 before the decommission began; this
  // view never heard of it.
  c.groups.get(5)!.voters = ['n1', 'n2', 'n3'];
  const m = mover(c);
  // The view shows n1 empty: before marking it removed the mover asks n1, and learns of group 5.
  await drive(m, c, 20);
  assert.deepEqual(c.asked, ['n1']);
  assert.deepEqual(c.refreshes, [5]);
  assert.deepEqual(c.states, []);
  assert.deepEqual(
    m.plan().moves.map((x) => [x.group, x.from, x.to]),
    [[5, 'n1', 'n4']],
  );
  await drive(m, c, 20);
  c.sync(); // the move's own change reaches the view
  await drive(m, c, 20);
  assert.deepEqual(c.violations, []);
  assert.equal(c.count('n1'), 0, 'n1 emptied before it is removed');
  assert.deepEqual(c.states, [['n1', 'removed']]);
  assert.equal(c.groups.get(5)!.voters.length, 3);
});

test('an adopted learner the view shows but the group promoted already: the move goes on, no voter is rolled back', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4']);
  c.nodes.get('n2')!.state = 'decommissioning';
  c.groups.set(5, { voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
  c.lagging = true;
  c.sync();
  // An earlier mover promoted n4 and died before removing n2; this view never heard of the promotion.
  c.groups.set(5, { voters: ['n1', 'n2', 'n3', 'n4'], learners: [] });
  const m = mover(c);
  m.round();
  await idle(m, c);
  assert.equal(c.calls.length, 0, 'the learner may be a live move of another mover: left alone at first');
  // The next round is due when the learner may be adopted, though nothing else changed.
  assert.equal(m.nextDueMs(c.now), c.now + 3_000);
  c.now += 3_000;
  m.round();
  await idle(m, c);
  assert.deepEqual(
    c.calls.map((x) => [x.op, x.group, x.node]),
    [
      ['promote', 5, 'n4'],
      ['removeMember', 5, 'n2'],
    ],
    'the refused promotion is read again and found done; n4 is never removed',
  );
  assert.deepEqual(c.violations, ['group 5: promote of n4, not a learner']);
  assert.deepEqual(c.groups.get(5), { voters: ['n1', 'n3', 'n4'], learners: [] });
  assert.equal(m.status().counters.decommission.completed, 1);
});

test('configuration is checked', () => {
  const c = new FakeCluster(['n1']);
  assert.throws(() => mover(c, { moveTimeoutMs: 0 }), /replicas\.moveTimeoutMs/);
  assert.throws(() => mover(c, { tolerance: 2 }), /replicas\.tolerance/);
  assert.throws(() => mover(c, { balance: 'yes' as unknown as boolean }), /replicas\.balance/);
});

test('a learner nobody moves is removed once it has been seen for moveTimeoutMs', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4']);
  c.groups.set(3, { voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
  const m = mover(c, { moveTimeoutMs: 60_000 });
  m.round();
  await idle(m, c);
  assert.equal(c.calls.length, 0, 'a learner may be a move of someone else: left alone at first');
  c.now += 59_999;
  m.round();
  await idle(m, c);
  assert.equal(c.calls.length, 0);
  c.now += 1;
  assert.deepEqual(
    m.plan().removals.map((r) => [r.group, r.node]),
    [[3, 'n4']],
  );
  await drive(m, c);
  assert.deepEqual(c.groups.get(3), { voters: ['n1', 'n2', 'n3'], learners: [] });
  assert.deepEqual(c.violations, []);
});

test('a learner left by an earlier mover is adopted when its group needs it: promoted, then the voter it replaces removed', async () => {
  const c = new FakeCluster(['n1', 'n2', 'n3', 'n4']);
  c.nodes.get('n2')!.state = 'decommissioning';
  // Group 5: an earlier mover added n4 to replace n2 and died before promoting it.
  c.groups.set(5, { voters: ['n1', 'n2', 'n3'], learners: ['n4'] });
  // Group 6: short of a voter, with a learner on an active node.
  c.groups.set(6, { voters: ['n1', 'n3'], learners: ['n4'] });
  // Group 7: its voters are fine, so its learner is not adopted (removed later, as above).
  c.groups.set(7, { voters: ['n1', 'n3', 'n4'], learners: ['n4x'] });
  c.nodes.set('n4x', { id: 'n4x', state: 'active', up: true });
  const m = mover(c);
  m.round();
  await idle(m, c);
  assert.equal(c.calls.length, 0, 'a learner may still be a live move of another mover: left alone at first');
  c.now += 2_999;
  assert.deepEqual(m.plan().adoptions, []);
  c.now += 1;
  assert.deepEqual(
    m.plan().adoptions.map((a) => [a.group, a.node, a.from, a.kind]),
    [
      [5, 'n4', 'n2', 'decommission'],
      [6, 'n4', null, 'repair'],
    ],
  );
  m.round();
  await idle(m, c);
  assert.deepEqual(c.groups.get(5), { voters: ['n1', 'n3', 'n4'], learners: [] });
  assert.deepEqual(c.groups.get(6), { voters: ['n1', 'n3', 'n4'], learners: [] });
  assert.deepEqual(c.groups.get(7), { voters: ['n1', 'n3', 'n4'], learners: ['n4x'] });
  assert.ok(!c.calls.some((x) => x.op === 'addLearner'), 'adopted moves start at the promotion');
  assert.deepEqual(
    c.calls.map((x) => [x.op, x.group, x.node]),
    [
      ['promote', 5, 'n4'],
      ['promote', 6, 'n4'],
      ['removeMember', 5, 'n2'],
    ],
  );
  assert.equal(m.status().counters.decommission.completed, 1);
  assert.equal(m.status().counters.repair.completed, 1);
  await drive(m, c);
  assert.ok(
    c.states.some(([n, s]) => n === 'n2' && s === 'removed'),
    'the decommission finished',
  );
  assert.deepEqual(c.violations, []);
});
