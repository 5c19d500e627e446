// Linearizable reads: ReadIndex on the leader and through followers, the new-leader rule, single-voter
// groups, lease reads and what happens to pending reads when the leader steps down.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, type ClusterOptions, captureReadies } from '../helpers/cluster.js';
import {
  MemoryStorage,
  RaftError,
  RaftNode,
  resolveConfig,
  seededRandom,
  type Message,
  type MsgHeartbeat,
  type NodeId,
  type Ready,
} from '../../src/raft/index.js';

const dropped = (rds: Ready[]): string[] => rds.flatMap((r) => [...r.droppedReads]);

function started(ids: NodeId[] = ['a', 'b', 'c'], opts: ClusterOptions = {}): TestCluster {
  const c = new TestCluster(ids, opts);
  c.elect(ids[0]);
  assert.equal(c.leader(), ids[0]);
  assert.ok(c.propose(ids[0], 'x1').ok);
  c.stabilize();
  return c;
}

const isReadHb =
  (ctx: string) =>
  (m: Message): m is MsgHeartbeat =>
    m.type === 'hb' && m.ctx === ctx;

/** Transfer leadership to `to`, delivering step by step; stop as soon as `to` is leader (its
 *  no-op entry appended, not yet replicated). */
function electStepwise(c: TestCluster, from: NodeId, to: NodeId): void {
  assert.ok(c.node(from).transferLeader(to).ok);
  for (let i = 0; i < 20 && c.node(to).status().role !== 'leader'; i++) {
    c.process();
    c.deliver();
  }
  assert.equal(c.node(to).status().role, 'leader');
}

// ---------------------------------------------------------------------------------------------
// ReadIndex on the leader

test('leader ReadIndex waits for a quorum of heartbeat responses', () => {
  const c = started(['a', 'b', 'c', 'd', 'e']);
  const commit = c.node('a').status().commit;
  assert.deepEqual(c.node('a').readIndex('r1'), { ok: true });
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), []);
  const hbs = c.queue.filter(isReadHb('r1'));
  assert.deepEqual(hbs.map((m) => m.to).sort(), ['b', 'c', 'd', 'e']);

  // Heartbeats reach everybody, but responses come back one at a time.
  c.deliver(isReadHb('r1'));
  c.process();
  const resps = c.queue.filter((m) => m.type === 'hbResp' && m.ctx === 'r1');
  assert.equal(resps.length, 4);
  c.deliver((m) => m.type === 'hbResp' && m.from === 'b');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [], 'leader + 1 of 5 is not a quorum');
  c.deliver((m) => m.type === 'hbResp' && m.from === 'c');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [{ index: commit, ctx: 'r1' }], 'leader + 2 of 5 is a quorum');
  // Late responses do not produce a second ReadState.
  c.stabilize();
  assert.equal(c.readStates.get('a')!.length, 1);
});

test('a read index is the commit index at the time of the request', () => {
  const c = started();
  const commit = c.node('a').status().commit;
  c.node('a').readIndex('early');
  c.process('a');
  c.queue = c.queue.filter((m) => m.type === 'hb'); // keep only the read round
  // A proposal after the read is not part of it, even if it commits before the round completes.
  assert.ok(c.propose('a', 'later').ok);
  c.stabilize();
  const rs = c.readStates.get('a')!;
  assert.deepEqual(rs, [{ index: commit, ctx: 'early' }]);
  assert.ok(c.node('a').status().commit > commit);
});

test('a read whose heartbeat round was lost is retried by later heartbeats', () => {
  const c = started();
  const readies = captureReadies(c, 'a');
  c.node('a').readIndex('lost-round');
  c.process('a');
  assert.equal(c.queue.filter(isReadHb('lost-round')).length, 2);
  c.queue = []; // the whole round is lost; the leader stays leader
  c.tickAll(20);
  assert.equal(c.leader(), 'a');
  assert.equal(
    c.readStates.get('a')!.length + dropped(readies).length,
    1,
    'the read is answered or dropped, not left hanging',
  );
  assert.deepEqual(
    c.readStates.get('a')!.map((r) => r.ctx),
    ['lost-round'],
  );
});

test('heartbeat answers from a learner do not count toward the read quorum', () => {
  const c = started(['a', 'b', 'c'], { learners: ['l'] });
  c.tickAll(2);
  assert.deepEqual(c.node('a').status().conf, { voters: ['a', 'b', 'c'], learners: ['l'] });
  c.node('a').readIndex('rl');
  c.process('a');
  assert.equal(c.queue.filter(isReadHb('rl')).length, 3);
  c.queue = c.queue.filter((m) => m.to === 'l'); // the voters never see the round
  c.stabilize();
  assert.ok(
    c.sent.some((m) => m.type === 'hbResp' && m.from === 'l' && m.ctx === 'rl'),
    'the learner answered',
  );
  assert.deepEqual(c.readStates.get('a'), []);
});

test('a partitioned old leader cannot serve a ReadIndex', () => {
  const c = started();
  const readies = captureReadies(c, 'a');
  c.isolate('a');
  assert.deepEqual(c.node('a').readIndex('stale?'), { ok: true });
  c.stabilize();
  // Meanwhile the majority elects a new leader and moves on.
  let elected: NodeId | null = null;
  for (let i = 0; i < 60 && !elected; i++) {
    c.tick('b');
    c.tick('c');
    if (i < 9) c.tick('a'); // a keeps believing it leads, short of its CheckQuorum deadline
    c.stabilize();
    elected = ['b', 'c'].find((id) => c.node(id).status().role === 'leader') ?? null;
  }
  assert.ok(elected);
  assert.ok(c.propose(elected!, 'new').ok);
  c.stabilize();
  assert.equal(c.node('a').status().role, 'leader', 'a has not noticed yet');
  assert.deepEqual(c.readStates.get('a'), [], 'no ReadState while cut off from the majority');
  assert.deepEqual(dropped(readies), []);
  // Once its CheckQuorum deadline passes (at most two windows), it steps down and reports the
  // read as dropped.
  c.tick('a', 20);
  c.process('a');
  assert.notEqual(c.node('a').status().role, 'leader');
  assert.deepEqual(c.readStates.get('a'), []);
  assert.deepEqual(dropped(readies), ['stale?']);
});

test('a new leader defers reads until an entry of its term is committed', () => {
  const c = started();
  c.tickAll(2);
  electStepwise(c, 'a', 'b');
  const st = c.node('b').status();
  const term = st.term;
  const noop = st.lastIndex;
  assert.ok(st.commit < noop);
  assert.deepEqual(c.node('b').readIndex('r'), { ok: true });
  c.process('b');
  assert.deepEqual(c.readStates.get('b'), []);
  assert.equal(c.queue.filter(isReadHb('r')).length, 0, 'no read round before the no-op commits');
  c.stabilize();
  const rs = c.readStates.get('b')!;
  assert.equal(rs.length, 1);
  assert.equal(rs[0].ctx, 'r');
  assert.ok(rs[0].index >= noop, `read index ${rs[0].index} covers the no-op at ${noop}`);
  assert.equal(c.storages.get('b')!.term(rs[0].index), term);
});

test('a ReadIndex from a follower is forwarded to the leader and answered on the follower', () => {
  const c = started();
  const commit = c.node('a').status().commit;
  assert.deepEqual(c.node('b').readIndex('f1'), { ok: true });
  c.process('b');
  assert.ok(c.queue.some((m) => m.type === 'readIndex' && m.from === 'b' && m.to === 'a' && m.ctx === 'f1'));
  c.stabilize();
  assert.deepEqual(c.readStates.get('b'), [{ index: commit, ctx: 'f1' }]);
  assert.deepEqual(c.readStates.get('a'), []);
  assert.ok(c.sent.some((m) => m.type === 'readIndexResp' && m.to === 'b' && m.index === commit));
});

test('a follower read also waits for the leader to confirm its leadership', () => {
  const c = started();
  c.node('b').readIndex('f2');
  c.process('b');
  c.deliver((m) => m.type === 'readIndex');
  c.process('a');
  // Drop the leader's heartbeat round: no answer may reach b.
  c.queue = c.queue.filter((m) => !(m.type === 'hb'));
  c.stabilize();
  assert.deepEqual(c.readStates.get('b'), []);
  assert.ok(!c.sent.some((m) => m.type === 'readIndexResp'));
});

test('a follower without a leader refuses a read', () => {
  const c = new TestCluster(['a', 'b', 'c']);
  const r = c.node('b').readIndex('x');
  assert.deepEqual(r, { ok: false, reason: 'NoLeader', leader: '' });
});

test('a single-voter group answers a read at once', () => {
  const c = new TestCluster(['s']);
  c.elect('s');
  assert.ok(c.propose('s', 'v').ok);
  c.stabilize();
  const commit = c.node('s').status().commit;
  c.node('s').readIndex('solo');
  c.process('s');
  assert.deepEqual(c.readStates.get('s'), [{ index: commit, ctx: 'solo' }]);
  assert.equal(c.queue.length, 0);
});

// ---------------------------------------------------------------------------------------------
// Lease reads

test('a fresh lease serves a read without a heartbeat round', () => {
  const c = started(['a', 'b', 'c'], { leaseReads: true });
  c.tickAll(1); // one heartbeat round dates the lease
  c.tick('a', 3);
  c.process('a');
  c.queue = [];
  const commit = c.node('a').status().commit;
  c.node('a').readIndex('lease');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [{ index: commit, ctx: 'lease' }]);
  assert.equal(c.queue.filter(isReadHb('lease')).length, 0);
});

test('an expired lease falls back to a heartbeat round', () => {
  const c = started(['a', 'b', 'c'], { leaseReads: true, electionTicks: 10, leaseMarginTicks: 2 });
  c.tickAll(1);
  // From here on the leader hears nothing for electionTicks - leaseMarginTicks = 8 ticks.
  c.isolate('a');
  c.tick('a', 8);
  c.stabilize();
  assert.equal(c.node('a').status().role, 'leader');
  c.node('a').readIndex('late');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [], 'no read from an expired lease');
  assert.equal(c.queue.filter(isReadHb('late')).length, 2, 'a heartbeat round is started instead');
  // With the majority reachable again, the round completes.
  c.heal();
  c.stabilize();
  const rs = c.readStates.get('a')!;
  assert.equal(rs.length, 1);
  assert.equal(rs[0].ctx, 'late');
});

test('a coalesced tick that says how much time passed expires the lease (the lease clock never runs slow)', () => {
  const c = started(['a', 'b', 'c'], { leaseReads: true, electionTicks: 10, leaseMarginTicks: 2 });
  c.tickAll(1);
  c.isolate('a');
  // The host's timer was late: one tick() call for 8 intervals of real time.
  c.node('a').tick(8);
  c.stabilize();
  assert.equal(c.node('a').status().role, 'leader', 'the election clock only moved by one');
  c.node('a').readIndex('late');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [], 'no read from a lease that real time has expired');
  assert.equal(c.queue.filter(isReadHb('late')).length, 2, 'a heartbeat round is started instead');
  assert.throws(() => c.node('a').tick(0), /elapsed must be a positive integer/);
});

test('a read that does not ask for the lease, and every read forwarded by a follower, takes a heartbeat round', () => {
  const c = started(['a', 'b', 'c'], { leaseReads: true });
  c.tickAll(1);
  c.process();
  c.queue = [];
  c.node('a').readIndex('strict', false);
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [], 'not answered from the lease');
  assert.equal(c.queue.filter(isReadHb('strict')).length, 2);
  c.stabilize();
  assert.equal(c.readStates.get('a')!.length, 1, 'answered after the round');
  c.queue = [];
  c.node('b').readIndex('from-b');
  c.process('b');
  c.deliver((m) => m.type === 'readIndex'); // to the leader, whose lease is fresh
  c.process('a');
  assert.equal(c.queue.filter(isReadHb('from-b')).length, 2, 'the leader confirms a forwarded read with a round');
  c.stabilize();
  assert.equal(c.readStates.get('b')!.length, 1, 'the follower got its read index');
});

test('a lease is not extended by acks of heartbeats the leader sent long ago', () => {
  const c = started(['a', 'b', 'c'], { leaseReads: true });
  c.tickAll(1);
  // Heartbeats go out but their answers are delayed by 8 ticks.
  c.tick('a', 1);
  c.process('a');
  c.deliver();
  c.process();
  const late = c.queue.filter((m) => m.type === 'hbResp');
  assert.equal(late.length, 2);
  c.queue = [];
  c.isolate('a');
  c.tick('a', 8);
  c.stabilize();
  c.heal();
  for (const m of late) c.node('a').step(m);
  c.node('a').readIndex('r');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [], 'the answers date the lease to when the heartbeat was sent');
  assert.equal(c.queue.filter(isReadHb('r')).length, 2);
});

test('leaseReads without checkQuorum is an invalid configuration', () => {
  const base = {
    id: 'a',
    group: 1,
    storage: new MemoryStorage({ voters: ['a'], learners: [] }),
    random: seededRandom(1),
  };
  assert.throws(
    () => resolveConfig({ ...base, leaseReads: true, checkQuorum: false }),
    (e: unknown) => e instanceof RaftError && e.code === 'InvalidConfig',
  );
  assert.throws(
    () => new RaftNode({ ...base, leaseReads: true, checkQuorum: false }),
    (e: unknown) => e instanceof RaftError && e.code === 'InvalidConfig',
  );
  assert.doesNotThrow(() => resolveConfig({ ...base, leaseReads: true, checkQuorum: true }));
  assert.doesNotThrow(() => resolveConfig({ ...base, leaseReads: false, checkQuorum: false }));
});

// ---------------------------------------------------------------------------------------------
// Step-down

test('reads pending on a leader that steps down are reported as dropped', () => {
  const c = started();
  const readies = captureReadies(c, 'a');
  c.node('a').readIndex('p1');
  c.node('a').readIndex('p2');
  c.process('a');
  c.queue = []; // the heartbeat round is lost
  const term = c.node('a').status().term;
  // A higher term from a voter deposes the leader.
  const res = c.node('a').step({ type: 'hbResp', group: 1, from: 'c', to: 'a', term: term + 1, ctx: '', seq: 0 });
  assert.deepEqual(res, { ok: true });
  c.process('a');
  assert.equal(c.node('a').status().role, 'follower');
  assert.deepEqual(dropped(readies).sort(), ['p1', 'p2']);
  assert.deepEqual(c.readStates.get('a'), []);
});

test('reads deferred by a new leader are dropped if it steps down before committing', () => {
  const c = started();
  c.tickAll(2);
  electStepwise(c, 'a', 'b');
  const readies = captureReadies(c, 'b');
  c.node('b').readIndex('early');
  c.process('b');
  c.queue = [];
  c.tick('b', 10); // CheckQuorum: nobody answered
  c.process('b');
  assert.notEqual(c.node('b').status().role, 'leader');
  assert.deepEqual(dropped(readies), ['early']);
});

test('a follower read pending on a leader that steps down comes back as dropped', () => {
  const c = started();
  const readiesB = captureReadies(c, 'b');
  c.node('b').readIndex('fwd');
  c.process('b');
  c.deliver((m) => m.type === 'readIndex');
  c.process('a');
  c.queue = c.queue.filter((m) => m.type !== 'hb');
  const term = c.node('a').status().term;
  c.node('a').step({ type: 'hbResp', group: 1, from: 'c', to: 'a', term: term + 1, ctx: '', seq: 0 });
  c.process('a');
  const resp = c.queue.find((m) => m.type === 'readIndexResp');
  assert.ok(resp && resp.type === 'readIndexResp' && resp.index === 0 && resp.to === 'b');
  c.deliver((m) => m.type === 'readIndexResp');
  c.process('b');
  assert.deepEqual(dropped(readiesB), ['fwd']);
  assert.deepEqual(c.readStates.get('b'), []);
});
