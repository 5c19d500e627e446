// Quiescence: an idle, caught-up group stops ticking and sending; proposals and messages wake it;
// a quiesced follower whose leader died is woken by the liveness hook; leases do not survive it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, type ClusterOptions } from '../helpers/cluster.js';
import type { Message, MsgHeartbeat, NodeId } from '../../src/raft/index.js';

const N = 3;

function started(opts: ClusterOptions = {}, ids: NodeId[] = ['a', 'b', 'c']): TestCluster {
  const c = new TestCluster(ids, { quiesceAfterTicks: N, ...opts });
  c.elect(ids[0]);
  assert.equal(c.leader(), ids[0]);
  assert.ok(c.propose(ids[0], 'x1').ok);
  c.stabilize();
  return c;
}

const isQuiesceHb = (m: Message): m is MsgHeartbeat => m.type === 'hb' && m.quiesce;

/** Tick everyone until the leader has quiesced (bounded); returns the number of ticks. */
function tickUntilQuiesced(c: TestCluster, leader: NodeId, max = 20): number {
  for (let i = 1; i <= max; i++) {
    c.tickAll(1);
    if (c.node(leader).isQuiesced()) return i;
  }
  assert.fail(`${leader} did not quiesce within ${max} ticks`);
}

/** A fully quiesced three-node group with a as leader. */
function quiesced(opts: ClusterOptions = {}): TestCluster {
  const c = started(opts);
  tickUntilQuiesced(c, 'a');
  for (const id of ['a', 'b', 'c']) assert.equal(c.node(id).isQuiesced(), true, `${id} quiesced`);
  return c;
}

test('an idle leader quiesces after N idle ticks and then sends nothing', () => {
  const c = started();
  const mark = c.sent.length;
  for (let i = 1; i < N; i++) {
    c.tickAll(1);
    assert.equal(c.node('a').isQuiesced(), false, `not yet quiesced after ${i} ticks`);
  }
  const ticks = tickUntilQuiesced(c, 'a', 2);
  assert.ok(ticks <= 2);
  const qhb = c.sent.slice(mark).filter(isQuiesceHb);
  assert.deepEqual(qhb.map((m) => `${m.from}->${m.to}`).sort(), ['a->b', 'a->c'], 'one quiesce heartbeat per follower');
  for (const m of qhb) assert.equal(m.commit, c.node('a').status().commit);
  for (const id of ['a', 'b', 'c']) assert.equal(c.node(id).isQuiesced(), true);
  assert.equal(c.node('a').status().quiesced, true);

  const quiet = c.sent.length;
  const terms = ['a', 'b', 'c'].map((id) => c.node(id).status().term);
  c.tickAll(200);
  assert.equal(c.sent.length, quiet, 'no messages at all while quiesced');
  assert.equal(c.leader(), 'a');
  assert.deepEqual(
    ['a', 'b', 'c'].map((id) => c.node(id).status().term),
    terms,
  );
  for (const id of ['a', 'b', 'c']) assert.equal(c.node(id).isQuiesced(), true);
});

test('quiesced followers never campaign, however long they are ticked', () => {
  const c = quiesced();
  const mark = c.sent.length;
  for (let i = 0; i < 500; i++) {
    c.tick('b');
    c.tick('c');
  }
  c.process();
  assert.equal(c.sent.length, mark);
  for (const id of ['b', 'c']) {
    assert.equal(c.node(id).status().role, 'follower');
    assert.equal(c.node(id).status().leader, 'a');
  }
});

test('a proposal wakes a quiesced group and commits normally', () => {
  const c = quiesced();
  const r = c.propose('a', 'wake');
  assert.ok(r.ok);
  assert.equal(c.node('a').isQuiesced(), false);
  c.stabilize();
  for (const id of ['a', 'b', 'c']) {
    assert.equal(c.appliedData(id).at(-1), 'wake');
    assert.equal(c.node(id).isQuiesced(), false, `${id} woken`);
  }
  // Heartbeats resume, and once idle again the group quiesces again.
  const mark = c.sent.length;
  c.tickAll(1);
  assert.ok(c.sent.slice(mark).some((m) => m.type === 'hb' && !m.quiesce));
  tickUntilQuiesced(c, 'a');
  assert.ok(c.node('b').isQuiesced() && c.node('c').isQuiesced());
});

test('any message other than the quiesce heartbeat wakes a quiesced follower', () => {
  const probes: ((term: number, commit: number, last: number) => Message)[] = [
    (term, commit) => ({ type: 'hb', group: 1, from: 'a', to: 'b', term, commit, ctx: '', seq: 99, quiesce: false }),
    (term, _commit, last) => ({
      type: 'app',
      group: 1,
      from: 'a',
      to: 'b',
      term,
      index: last,
      logTerm: term,
      entries: [],
      commit: last,
    }),
    (term, _commit, last) => ({
      type: 'preVote',
      group: 1,
      from: 'c',
      to: 'b',
      term: term + 1,
      index: last,
      logTerm: term,
      transfer: false,
    }),
    (term) => ({ type: 'readIndex', group: 1, from: 'c', to: 'b', term, ctx: 'r' }),
    (term) => ({ type: 'transferLeader', group: 1, from: 'c', to: 'b', term, target: 'c' }),
  ];
  for (const make of probes) {
    const c = quiesced();
    const st = c.node('b').status();
    const m = make(st.term, st.commit, st.lastIndex);
    assert.deepEqual(c.node('b').step(m), { ok: true }, m.type);
    assert.equal(c.node('b').isQuiesced(), false, `${m.type} wakes b`);
  }
  // The quiesce heartbeat itself does not.
  const c = quiesced();
  const st = c.node('b').status();
  c.node('b').step({
    type: 'hb',
    group: 1,
    from: 'a',
    to: 'b',
    term: st.term,
    commit: st.commit,
    ctx: '',
    seq: 0,
    quiesce: true,
  });
  assert.equal(c.node('b').isQuiesced(), true);
});

test('a woken follower runs its election clock again', () => {
  const c = quiesced();
  c.isolate('a');
  const st = c.node('b').status();
  c.node('b').step({
    type: 'hb',
    group: 1,
    from: 'a',
    to: 'b',
    term: st.term,
    commit: st.commit,
    ctx: '',
    seq: 0,
    quiesce: false,
  });
  c.process();
  c.queue = [];
  for (let i = 0; i < 40 && c.node('b').status().role === 'follower'; i++) {
    c.tick('b');
    c.process('b');
  }
  assert.notEqual(c.node('b').status().role, 'follower', 'b campaigns once its leader stays silent');
});

test('followers of a leader lost while quiesced stay quiet until leaderUnreachable, then elect', () => {
  const c = quiesced();
  const term = c.node('a').status().term;
  c.isolate('a'); // a's node dies
  const mark = c.sent.length;
  for (let i = 0; i < 300; i++) {
    c.tick('b');
    c.tick('c');
    c.stabilize();
  }
  assert.equal(c.sent.length, mark, 'no election storm without the liveness signal');
  for (const id of ['b', 'c']) assert.equal(c.node(id).status().term, term);

  c.node('b').leaderUnreachable();
  c.node('c').leaderUnreachable();
  assert.equal(c.node('b').isQuiesced(), false);
  assert.equal(c.node('c').isQuiesced(), false);
  let leader: NodeId | undefined;
  for (let i = 0; i < 100 && !leader; i++) {
    c.tick('b');
    c.tick('c');
    c.stabilize();
    leader = ['b', 'c'].find((id) => c.node(id).status().role === 'leader');
  }
  assert.ok(leader, 'one of b, c is elected');
  assert.ok(c.node(leader!).status().term > term);
  assert.ok(c.propose(leader!, 'new-era').ok);
  c.stabilize();
  for (const id of ['b', 'c']) assert.equal(c.appliedData(id).at(-1), 'new-era');
});

test('with lease reads, leaderUnreachable restarts the election clock from zero: no election for electionTicks', () => {
  const c = quiesced({ leaseReads: true, checkQuorum: true });
  c.isolate('a');
  c.node('b').leaderUnreachable();
  c.node('c').leaderUnreachable();
  const mark = c.sent.length;
  for (let i = 0; i < 9; i++) {
    c.tick('b');
    c.tick('c');
    c.stabilize();
  }
  assert.equal(c.sent.slice(mark).filter((m) => m.type === 'preVote' || m.type === 'vote').length, 0);
});

test('leaderUnreachable on a non-quiesced follower or a leader changes nothing', () => {
  const c = started();
  const before = ['a', 'b', 'c'].map((id) => c.node(id).status());
  for (const id of ['a', 'b', 'c']) c.node(id).leaderUnreachable();
  assert.deepEqual(
    ['a', 'b', 'c'].map((id) => c.node(id).status()),
    before,
  );
});

test('a leader with a follower reported unreachable can still quiesce if a quorum is caught up', () => {
  const c = started();
  c.isolate('c');
  const r = c.propose('a', 'without-c');
  assert.ok(r.ok);
  c.stabilize();
  assert.equal(c.node('a').status().commit, r.index);
  c.node('a').reportUnreachable('c');
  const mark = c.sent.length;
  tickUntilQuiesced(c, 'a');
  const qhb = c.sent.slice(mark).filter(isQuiesceHb);
  assert.deepEqual(
    qhb.map((m) => m.to),
    ['b'],
    'quiesce heartbeat only to the reachable follower',
  );
  assert.equal(c.node('b').isQuiesced(), true);
  const quiet = c.sent.length;
  c.tickAll(50);
  // (c, cut off and never told to quiesce, may try to campaign; its messages are lost.)
  assert.deepEqual(
    c.sent.slice(quiet).filter((m) => m.from !== 'c'),
    [],
    'a and b send nothing',
  );
  assert.equal(c.node('a').status().role, 'leader');
  // When c comes back and the group wakes, c catches up.
  c.heal();
  c.node('a').wake();
  c.tickAll(15);
  assert.equal(c.appliedData('c').at(-1), 'without-c');
});

test('a leader does not quiesce while a reachable follower is behind', () => {
  const c = started();
  c.isolate('c');
  assert.ok(c.propose('a', 'c-misses-this').ok);
  c.stabilize();
  for (let i = 0; i < 15; i++) {
    const mark = c.sent.length;
    c.tickAll(1);
    assert.equal(c.node('a').isQuiesced(), false);
    assert.ok(
      c.sent.slice(mark).some((m) => m.type === 'hb' && m.to === 'c' && !m.quiesce),
      'keeps heartbeating c',
    );
  }
  assert.equal(c.sent.filter(isQuiesceHb).length, 0);
});

test('a follower that is behind does not quiesce on a quiesce heartbeat', () => {
  const c = started();
  const st = c.node('b').status();
  // The leader claims a commit index beyond b's log: b is not caught up and keeps its clock.
  c.node('b').step({
    type: 'hb',
    group: 1,
    from: 'a',
    to: 'b',
    term: st.term,
    commit: st.lastIndex + 5,
    ctx: '',
    seq: 0,
    quiesce: true,
  });
  assert.equal(c.node('b').isQuiesced(), false);
});

test('quiescence does not break lease safety: after a quiesced period a lease read needs a heartbeat round', () => {
  const c = quiesced({ leaseReads: true });
  c.tickAll(30);
  assert.ok(c.node('a').isQuiesced());
  const commit = c.node('a').status().commit;
  c.node('a').readIndex('after-quiet');
  c.process('a');
  assert.deepEqual(c.readStates.get('a'), [], 'not served from the lease');
  assert.equal(c.queue.filter((m) => m.type === 'hb' && m.ctx === 'after-quiet').length, 2);
  c.stabilize();
  assert.deepEqual(c.readStates.get('a'), [{ index: commit, ctx: 'after-quiet' }]);
});

test('a quiesced leader partitioned away cannot serve lease reads after the others elect a new leader', () => {
  const c = quiesced({ leaseReads: true });
  c.isolate('a');
  c.node('b').leaderUnreachable();
  c.node('c').leaderUnreachable();
  let leader: NodeId | undefined;
  for (let i = 0; i < 100 && !leader; i++) {
    c.tick('b');
    c.tick('c');
    c.stabilize();
    leader = ['b', 'c'].find((id) => c.node(id).status().role === 'leader');
  }
  assert.ok(leader);
  assert.ok(c.propose(leader!, 'newer').ok);
  c.stabilize();
  // The old leader still thinks it leads (it is quiesced and was never told otherwise).
  assert.equal(c.node('a').status().role, 'leader');
  c.node('a').readIndex('stale');
  c.stabilize();
  assert.deepEqual(c.readStates.get('a'), [], 'an old leader must not answer from its lease');
});

test('late answers to the last heartbeats before quiescing do not renew the lease after waking', () => {
  const c = started({ leaseReads: true });
  // Tick until the leader quiesces, holding back the answers to the heartbeats of that last tick.
  let held: Message[] = [];
  for (let i = 0; i < 20 && !c.node('a').isQuiesced(); i++) {
    for (const id of ['a', 'b', 'c']) c.node(id).tick();
    c.process();
    c.deliver();
    c.process();
    if (c.node('a').isQuiesced()) {
      held = c.queue.filter((m) => m.type === 'hbResp');
      c.queue = c.queue.filter((m) => m.type !== 'hbResp');
    }
    c.stabilize();
  }
  assert.ok(c.node('a').isQuiesced() && c.node('b').isQuiesced() && c.node('c').isQuiesced());
  assert.equal(held.length, 2);
  const oldTerm = c.node('a').status().term;

  // a's node is cut off; the liveness layer wakes b and c, which elect a new leader and write.
  c.isolate('a');
  c.node('b').leaderUnreachable();
  c.node('c').leaderUnreachable();
  let leader: NodeId | undefined;
  for (let i = 0; i < 100 && !leader; i++) {
    c.tick('b');
    c.tick('c');
    c.stabilize();
    leader = ['b', 'c'].find((id) => c.node(id).status().role === 'leader');
  }
  assert.ok(leader);
  const w = c.propose(leader!, 'newer');
  assert.ok(w.ok);
  c.stabilize();
  assert.ok(c.node(leader!).status().commit >= w.index);

  // a wakes for a read; then the delayed answers (of its old term) arrive.
  assert.equal(c.node('a').status().term, oldTerm);
  c.node('a').readIndex('r1');
  c.stabilize();
  for (const m of held) c.node('a').step(m);
  c.node('a').readIndex('r2');
  c.stabilize();
  const served = c.readStates.get('a')!;
  assert.deepEqual(
    served,
    [],
    `stale lease read served at index ${served[0]?.index} while ${leader} committed ${w.index}`,
  );
});

test('fast failover with lease reads: a surviving voter campaigns one tick after the lease lapses, not after a randomized timeout', () => {
  // Many seeds, so that a randomized timeout (10..19 ticks) would show up as late elections.
  const late: number[] = [];
  for (let seed = 1; seed <= 20; seed++) {
    const c = new TestCluster(['a', 'b', 'c'], {
      seed,
      quiesceAfterTicks: N,
      leaseReads: true,
      checkQuorum: true,
    } as ClusterOptions);
    c.elect('a');
    c.isolate('a');
    c.node('b').leaderUnreachable();
    c.node('c').leaderUnreachable();
    const mark = c.sent.length;
    let leader: NodeId | undefined;
    let ticks = 0;
    while (!leader && ticks < 40) {
      ticks++;
      c.tick('b');
      c.tick('c');
      c.stabilize();
      if (ticks <= 10)
        assert.equal(
          c.sent.slice(mark).filter((m) => m.type === 'preVote').length,
          0,
          `seed ${seed}: no campaign inside the old leader's lease (tick ${ticks})`,
        );
      leader = ['b', 'c'].find((id) => c.node(id).status().role === 'leader');
    }
    assert.ok(leader, `seed ${seed}: elected`);
    if (ticks !== 11) late.push(seed);
  }
  assert.deepEqual(late, [], 'every seed elected at electionTicks + 1 (the first-ranked survivor, no split vote)');
});

test('fast failover without lease reads: the survivors elect two ticks after the report; a voter still hearing the leader ignores it', () => {
  const late: number[] = [];
  for (let seed = 1; seed <= 20; seed++) {
    const c = new TestCluster(['a', 'b', 'c'], { seed, quiesceAfterTicks: N, checkQuorum: true } as ClusterOptions);
    c.elect('a');
    c.isolate('a');
    c.node('b').leaderUnreachable();
    c.node('c').leaderUnreachable();
    let ticks = 0;
    let leader: NodeId | undefined;
    while (!leader && ticks < 40) {
      ticks++;
      c.tick('b');
      c.tick('c');
      c.stabilize();
      leader = ['b', 'c'].find((id) => c.node(id).status().role === 'leader');
    }
    if (ticks !== 2) late.push(seed);
  }
  assert.deepEqual(late, [], 'every seed elected at tick 2');

  // A false report on one follower only: the other still hears the leader and ignores the
  // pre-vote, so no term is raised and the leader stays.
  const c = new TestCluster(['a', 'b', 'c'], { quiesceAfterTicks: 1000, checkQuorum: true } as ClusterOptions);
  c.elect('a');
  const term = c.node('a').status().term;
  c.node('b').leaderUnreachable();
  for (let i = 0; i < 6; i++) {
    c.tickAll(1);
    c.stabilize();
  }
  assert.equal(c.node('a').status().role, 'leader', 'a still leads');
  assert.equal(c.node('a').status().term, term, 'no term raised');
});

test('fast failover with coalesced ticks: both survivors campaign at once, the worse-ranked steps back, one round elects', () => {
  // On a loaded host a worker's ticks coalesce: both survivors can pass their staggered campaign
  // tick in the same iteration. Each grants the other's pre-vote; without stepping back both would
  // go on to a real vote at the same term, vote for themselves and split.
  for (let round = 0; round < 20; round++) {
    const c = quiesced({ group: 1 + round });
    const term = c.node('a').status().term;
    c.isolate('a');
    c.node('b').leaderUnreachable();
    c.node('c').leaderUnreachable();
    c.node('b').tick(10);
    c.node('c').tick(10);
    c.stabilize();
    const leaders = ['b', 'c'].filter((id) => c.node(id).status().role === 'leader');
    assert.equal(
      leaders.length,
      1,
      `group ${1 + round}: one survivor leads after one round (roles ${['b', 'c'].map((id) => c.node(id).status().role)})`,
    );
    assert.equal(c.node(leaders[0]).status().term, term + 1, 'no split vote: a single term increment');
  }
});

test('quiesceAtOnce: a write to an idle group costs its appends, its acks and one quiesce heartbeat per follower, and no tick', () => {
  for (const skipCommitBroadcast of [true, false]) {
    const c = quiesced({ quiesceAtOnce: true, skipCommitBroadcast, coastHeartbeats: true });
    const mark = c.sent.length;
    assert.ok(c.propose('a', 'w').ok);
    c.stabilize(); // no tick
    for (const id of ['a', 'b', 'c']) {
      assert.equal(
        c.node(id).isQuiesced(),
        true,
        `${id} quiesced again without a tick (skipCommitBroadcast ${skipCommitBroadcast})`,
      );
      assert.equal(c.node(id).status().commit, c.node('a').status().lastIndex, `${id} knows the commit`);
      assert.ok(c.appliedData(id).includes('w'), `${id} applied the write`);
    }
    const types = c.sent
      .slice(mark)
      .map((m) => (isQuiesceHb(m) ? 'quiesce' : m.type))
      .sort();
    const want = skipCommitBroadcast
      ? ['app', 'app', 'appResp', 'appResp', 'quiesce', 'quiesce']
      : ['app', 'app', 'app', 'app', 'appResp', 'appResp', 'appResp', 'appResp', 'quiesce', 'quiesce'];
    assert.deepEqual(types, want);
  }
});

test('quiesceAtOnce waits for every reachable follower: a slow one keeps the group awake until it acknowledges', () => {
  const c = quiesced({ quiesceAtOnce: true, skipCommitBroadcast: true });
  c.dropIf = (m) => m.from === 'c' && m.type === 'appResp';
  assert.ok(c.propose('a', 'w').ok);
  c.stabilize();
  assert.equal(c.node('a').isQuiesced(), false, 'c has not acknowledged');
  c.heal();
  // Its lost acks are noticed (a probe after a few ticks without one), then it catches up.
  tickUntilQuiesced(c, 'a');
  for (const id of ['b', 'c']) assert.equal(c.node(id).isQuiesced(), true);
});
