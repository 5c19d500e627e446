// Single-member configuration changes: learners, promotion, removal (including of the leader),
// one-change-at-a-time, validation, and idempotent re-application after a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, captureReadies } from '../helpers/cluster.js';
import type { ConfState, Message, NodeId } from '../../src/raft/index.js';

const conf = (voters: NodeId[], learners: NodeId[] = []): ConfState => ({
  voters: [...voters].sort(),
  learners: [...learners].sort(),
});

function sentSince(c: TestCluster, mark: number, pred: (m: Message) => boolean = () => true): Message[] {
  return c.sent.slice(mark).filter(pred);
}

/** A 3-voter cluster with `a` as leader and one applied entry. */
function started(
  ids: NodeId[] = ['a', 'b', 'c'],
  opts: ConstructorParameters<typeof TestCluster>[1] = {},
): TestCluster {
  const c = new TestCluster(ids, opts);
  c.elect(ids[0]);
  assert.equal(c.leader(), ids[0]);
  assert.equal(c.propose(ids[0], 'x1').ok, true);
  c.stabilize();
  return c;
}

/** Add `id` as a learner through the leader and let it catch up. */
function addLearner(c: TestCluster, leader: NodeId, id: NodeId): void {
  c.addEmpty(id);
  const r = c.node(leader).proposeConfChange({ type: 'addLearner', node: id });
  assert.equal(r.ok, true, JSON.stringify(r));
  c.stabilize();
  c.tickAll(3);
}

/** Raft election safety over the whole run: at most one leader per term. */
function assertElectionSafety(c: TestCluster): void {
  const byTerm = new Map<number, Set<NodeId>>();
  for (const [id, states] of c.softStates) {
    for (const s of states) {
      if (s.role !== 'leader') continue;
      if (!byTerm.has(s.term)) byTerm.set(s.term, new Set());
      byTerm.get(s.term)!.add(id);
    }
  }
  for (const [term, ids] of byTerm) assert.equal(ids.size, 1, `two leaders in term ${term}: ${[...ids].join(', ')}`);
}

function commitOf(c: TestCluster, id: NodeId): number {
  return c.node(id).status().commit;
}

// ---------------------------------------------------------------------------------------------
// Learners

test('an added learner replicates entries and is tracked as a learner by the leader', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  assert.deepEqual(c.node('a').status().conf, conf(['a', 'b', 'c'], ['d']));
  assert.equal(c.node('a').status().progress.d?.learner, true);
  for (const id of ['b', 'c']) assert.deepEqual(c.node(id).status().conf, conf(['a', 'b', 'c'], ['d']));
  assert.deepEqual(c.appliedData('d'), ['x1']);
  assert.equal(c.propose('a', 'x2').ok, true);
  c.stabilize();
  assert.deepEqual(c.appliedData('d'), ['x1', 'x2']);
  assert.equal(c.node('a').status().progress.d.match, c.node('a').status().lastIndex);
  assert.equal(c.node('d').status().role, 'follower');
  assert.equal(c.node('d').status().leader, 'a');
});

test('a learner that joined through appends learns the full configuration, not just the delta', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  // d started with an empty configuration: it must end up with the same membership as everybody.
  assert.deepEqual(c.node('d').status().conf, c.node('a').status().conf);
  assert.deepEqual(c.storages.get('d')!.conf, conf(['a', 'b', 'c'], ['d']));
});

test('a learner that joined through a snapshot learns the configuration from it', () => {
  const c = started();
  for (let i = 0; i < 3; i++) c.propose('a', `p${i}`);
  c.stabilize();
  c.compact('a');
  c.addEmpty('d');
  assert.equal(c.node('a').proposeConfChange({ type: 'addLearner', node: 'd' }).ok, true);
  c.stabilize();
  c.tickAll(3);
  assert.equal(c.snapshotsInstalled.get('d')!.length, 1);
  assert.deepEqual(c.snapshotsInstalled.get('d')![0].meta.conf, conf(['a', 'b', 'c']));
  assert.deepEqual(c.node('d').status().conf, conf(['a', 'b', 'c'], ['d']));
  assert.equal(c.propose('a', 'after').ok, true);
  c.stabilize();
  assert.equal(c.appliedData('d').at(-1), 'after');
});

test('a new member whose first append is lost is caught up by heartbeats alone', () => {
  const c = started();
  c.addEmpty('d');
  // The leader's first (probe) append to d is lost; no new proposal follows.
  c.dropIf = (m) => m.to === 'd' && m.type === 'app';
  assert.ok(c.node('a').proposeConfChange({ type: 'addLearner', node: 'd' }).ok);
  c.stabilize();
  c.dropIf = null;
  c.tickAll(30);
  assert.deepEqual(c.appliedData('d'), ['x1']);
  assert.equal(c.node('a').status().progress.d.match, c.node('a').status().lastIndex);
});

test('a learner never counts toward the commit quorum', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  // With the learner cut off, the voters alone commit.
  c.isolate('d');
  const before = commitOf(c, 'a');
  const r1 = c.propose('a', 'with-learner-down');
  assert.ok(r1.ok);
  c.stabilize();
  assert.equal(commitOf(c, 'a'), r1.index);
  assert.ok(commitOf(c, 'a') > before);
  assert.deepEqual(c.appliedData('b').at(-1), 'with-learner-down');
  c.heal();
  c.tickAll(15); // the lost append is retried once the leader gives up waiting for its ack
  assert.equal(c.appliedData('d').at(-1), 'with-learner-down');

  // With a voter majority cut off, the learner's ack is not enough.
  c.isolate('b');
  c.isolate('c');
  const commit = commitOf(c, 'a');
  const r2 = c.propose('a', 'majority-down');
  assert.ok(r2.ok);
  c.stabilize();
  const st = c.node('a').status();
  assert.equal(st.progress.d.match, r2.index, 'the learner acknowledged the entry');
  assert.equal(st.commit, commit, 'commit did not advance on leader + learner');
  assert.equal(commitOf(c, 'd'), commit);
  assert.ok(!c.appliedData('a').includes('majority-down'));
  // Once a voter is back, it commits.
  c.heal();
  c.tickAll(15);
  assert.equal(commitOf(c, 'a'), r2.index);
});

test('a learner never campaigns, however long it is ticked', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  c.isolate('d');
  const mark = c.sent.length;
  const term = c.node('d').status().term;
  for (let i = 0; i < 200; i++) {
    c.tick('d');
    c.process('d');
  }
  c.node('d').campaign();
  c.process('d');
  assert.equal(sentSince(c, mark, (m) => m.from === 'd' && (m.type === 'vote' || m.type === 'preVote')).length, 0);
  const st = c.node('d').status();
  assert.equal(st.role, 'follower');
  assert.equal(st.term, term);
  c.heal();
  c.tickAll(5);
  assert.equal(c.leader(), 'a');
});

// ---------------------------------------------------------------------------------------------
// Promotion

test('a promoted learner counts toward the quorum', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  const r = c.node('a').proposeConfChange({ type: 'addVoter', node: 'd' });
  assert.ok(r.ok);
  c.stabilize();
  assert.deepEqual(c.node('a').status().conf, conf(['a', 'b', 'c', 'd']));
  assert.equal(c.node('a').status().progress.d.learner, false);
  for (const id of ['b', 'c']) assert.deepEqual(c.node(id).status().conf, conf(['a', 'b', 'c', 'd']));

  // 4 voters: quorum 3. a + b alone cannot commit any more...
  c.isolate('c');
  c.isolate('d');
  const commit = commitOf(c, 'a');
  const r1 = c.propose('a', 'needs-three');
  assert.ok(r1.ok);
  c.stabilize();
  assert.equal(commitOf(c, 'a'), commit);
  // ...but a + b + d can.
  c.heal();
  c.isolate('c');
  c.tickAll(15); // appends lost while d was cut off are retried
  assert.equal(commitOf(c, 'a'), r1.index);
  assert.ok(c.appliedData('d').includes('needs-three'));
});

test('a promoted learner can become leader through a transfer', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  assert.ok(c.node('a').proposeConfChange({ type: 'addVoter', node: 'd' }).ok);
  c.stabilize();
  c.tickAll(2);
  assert.deepEqual(c.node('a').transferLeader('d'), { ok: true, started: true });
  c.stabilize();
  c.tickAll(30);
  assertElectionSafety(c);
  assert.equal(c.leader(), 'd', 'exactly one leader, d');
  const term = c.node('d').status().term;
  for (const id of ['a', 'b', 'c', 'd']) {
    assert.equal(c.leaderOf(id), 'd', `${id} follows d`);
    assert.equal(c.node(id).status().term, term);
  }
  assert.ok(c.transfers.get('a')!.some((t) => t.target === 'd' && t.status === 'completed'));
  const r = c.propose('d', 'from-d');
  assert.ok(r.ok);
  c.stabilize();
  for (const id of ['a', 'b', 'c', 'd']) assert.equal(c.appliedData(id).at(-1), 'from-d');
});

test('a learner promoted after joining by snapshot can become leader through a transfer', () => {
  const c = started();
  c.compact('a');
  c.addEmpty('d');
  assert.ok(c.node('a').proposeConfChange({ type: 'addLearner', node: 'd' }).ok);
  c.stabilize();
  c.tickAll(3);
  assert.equal(c.snapshotsInstalled.get('d')!.length, 1);
  assert.ok(c.node('a').proposeConfChange({ type: 'addVoter', node: 'd' }).ok);
  c.stabilize();
  c.tickAll(2);
  assert.deepEqual(c.node('d').status().conf, conf(['a', 'b', 'c', 'd']));
  assert.ok(c.node('a').transferLeader('d').ok);
  c.stabilize();
  c.tickAll(3);
  assert.equal(c.leader(), 'd');
  for (const id of ['a', 'b', 'c']) assert.equal(c.leaderOf(id), 'd');
});

// ---------------------------------------------------------------------------------------------
// Removal

test('removing a follower shrinks the quorum and stops replication to it', () => {
  const c = started(['a', 'b', 'c', 'd']);
  // 4 voters: a + b cannot commit.
  c.isolate('c');
  c.isolate('d');
  const commit = commitOf(c, 'a');
  c.propose('a', 'blocked');
  c.stabilize();
  assert.equal(commitOf(c, 'a'), commit);
  c.heal();
  c.stabilize();

  const readies = captureReadies(c, 'b');
  const r = c.node('a').proposeConfChange({ type: 'remove', node: 'd' });
  assert.ok(r.ok);
  c.stabilize();
  assert.deepEqual(c.node('a').status().conf, conf(['a', 'b', 'c']));
  assert.equal(c.node('a').status().progress.d, undefined);
  assert.deepEqual(
    readies.map((rd) => rd.conf).filter((x) => x !== null),
    [conf(['a', 'b', 'c'])],
  );
  assert.deepEqual(c.storages.get('b')!.conf, conf(['a', 'b', 'c']));

  // 3 voters: a + b now commit without c and d.
  c.isolate('c');
  c.isolate('d');
  const mark = c.sent.length;
  const r2 = c.propose('a', 'two-of-three');
  assert.ok(r2.ok);
  c.stabilize();
  c.tickAll(3);
  assert.equal(commitOf(c, 'a'), r2.index);
  assert.equal(sentSince(c, mark, (m) => m.to === 'd').length, 0, 'no messages to the removed node');
  // A response from the removed node is no longer accepted.
  const st = c.node('a').status();
  const res = c.node('a').step({
    type: 'appResp',
    group: 1,
    from: 'd',
    to: 'a',
    term: st.term,
    index: st.lastIndex,
    reject: false,
    hintIndex: 0,
    hintTerm: 0,
  });
  assert.deepEqual(res, { ok: false, reason: 'UnknownSender' });
});

test('removing the leader makes it step down and the remaining voters elect a new leader', () => {
  const c = started();
  const oldTerm = c.node('a').status().term;
  const r = c.node('a').proposeConfChange({ type: 'remove', node: 'a' });
  assert.ok(r.ok);
  c.stabilize();
  const st = c.node('a').status();
  assert.notEqual(st.role, 'leader');
  assert.deepEqual(st.conf, conf(['b', 'c']));
  // The removal entry is committed on the remaining voters too.
  for (const id of ['b', 'c']) {
    assert.ok(commitOf(c, id) >= r.index, `${id} knows the removal is committed`);
    assert.deepEqual(c.node(id).status().conf, conf(['b', 'c']));
  }
  let newLeader: NodeId | null = null;
  for (let i = 0; i < 100 && !newLeader; i++) {
    c.tickAll(1);
    const ls = ['b', 'c'].filter((id) => c.node(id).status().role === 'leader');
    if (ls.length === 1) newLeader = ls[0];
  }
  assert.ok(newLeader, 'b or c became leader');
  assert.ok(c.node(newLeader!).status().term > oldTerm);
  assert.notEqual(c.node('a').status().role, 'leader');
  const p = c.propose(newLeader!, 'after-removal');
  assert.ok(p.ok);
  c.stabilize();
  for (const id of ['b', 'c']) assert.equal(c.appliedData(id).at(-1), 'after-removal');
  // The removed node never campaigns.
  const mark = c.sent.length;
  c.tick('a', 100);
  c.process('a');
  assert.equal(sentSince(c, mark, (m) => m.from === 'a' && (m.type === 'vote' || m.type === 'preVote')).length, 0);
});

// ---------------------------------------------------------------------------------------------
// One change at a time

test('a second conf change while the first is not applied is refused with ConfChangeInProgress', () => {
  const c = started();
  c.addEmpty('d');
  c.addEmpty('e');
  const r1 = c.node('a').proposeConfChange({ type: 'addLearner', node: 'd' });
  assert.ok(r1.ok);
  const last = c.node('a').status().lastIndex;
  const r2 = c.node('a').proposeConfChange({ type: 'addLearner', node: 'e' });
  assert.deepEqual(r2, { ok: false, reason: 'ConfChangeInProgress' });
  assert.equal(c.node('a').status().lastIndex, last, 'nothing appended');
  // Normal proposals are not blocked.
  assert.ok(c.propose('a', 'normal').ok);
  // Committed but not yet applied still counts as in progress: deliver everything but do not let
  // the leader process its Ready (which hands out the committed entry).
  c.process('a');
  c.deliver();
  c.process('b');
  c.process('c');
  c.process('d');
  c.deliver((m) => m.to === 'a');
  assert.equal(c.node('a').status().applied < r1.index, true);
  assert.deepEqual(c.node('a').proposeConfChange({ type: 'addLearner', node: 'e' }), {
    ok: false,
    reason: 'ConfChangeInProgress',
  });
  c.stabilize();
  assert.ok(c.node('a').status().applied >= r1.index);
  const r3 = c.node('a').proposeConfChange({ type: 'addLearner', node: 'e' });
  assert.ok(r3.ok, JSON.stringify(r3));
  c.stabilize();
  assert.deepEqual(c.node('a').status().conf, conf(['a', 'b', 'c'], ['d', 'e']));
});

/** Transfer leadership from `from` to `to`, delivering step by step, and stop as soon as `to` is
 *  leader (its no-op entry is appended but not yet replicated). */
function electStepwise(c: TestCluster, from: NodeId, to: NodeId): void {
  assert.ok(c.node(from).transferLeader(to).ok);
  for (let i = 0; i < 20 && c.node(to).status().role !== 'leader'; i++) {
    c.process();
    c.deliver();
  }
  assert.equal(c.node(to).status().role, 'leader');
}

test('a new leader refuses conf changes until an entry of its term is applied (lagging commit)', () => {
  const c = started();
  // b gets entry x2 but not the commit that follows it.
  const r = c.propose('a', 'x2');
  assert.ok(r.ok);
  c.process('a');
  c.deliver((m) => m.type === 'app');
  c.process();
  c.deliver((m) => m.type === 'appResp');
  c.process('a');
  c.queue = c.queue.filter((m) => m.to !== 'b');
  assert.equal(commitOf(c, 'a'), r.index);
  assert.ok(commitOf(c, 'b') < r.index);
  c.stabilize();
  c.queue = [];

  electStepwise(c, 'a', 'b');
  const term = c.node('b').status().term;
  c.addEmpty('d');
  assert.deepEqual(c.node('b').proposeConfChange({ type: 'addLearner', node: 'd' }), {
    ok: false,
    reason: 'ConfChangeInProgress',
  });
  c.stabilize();
  const st = c.node('b').status();
  assert.equal(st.role, 'leader');
  assert.equal(st.term, term);
  const r2 = c.node('b').proposeConfChange({ type: 'addLearner', node: 'd' });
  assert.ok(r2.ok, JSON.stringify(r2));
});

test('a new leader refuses conf changes until an entry of its term is applied (fully applied log)', () => {
  const c = started();
  c.tickAll(2);
  // b has applied its entire log before it is elected.
  assert.equal(c.node('b').status().applied, c.node('b').status().lastIndex);
  electStepwise(c, 'a', 'b');
  c.addEmpty('d');
  const r = c.node('b').proposeConfChange({ type: 'addLearner', node: 'd' });
  assert.deepEqual(r, { ok: false, reason: 'ConfChangeInProgress' }, 'no entry of the new term has been applied yet');
  c.stabilize();
  assert.ok(c.node('b').proposeConfChange({ type: 'addLearner', node: 'd' }).ok);
});

// ---------------------------------------------------------------------------------------------
// Validation

test('invalid conf changes are rejected with InvalidConfChange and change nothing', () => {
  const c = started();
  const last = c.node('a').status().lastIndex;
  const cases = [
    { type: 'addVoter', node: 'b' },
    { type: 'addVoter', node: 'a' },
    { type: 'remove', node: 'zz' },
  ] as const;
  for (const cc of cases) {
    const r = c.node('a').proposeConfChange(cc);
    assert.equal(r.ok, false, JSON.stringify(cc));
    assert.equal(!r.ok && r.reason, 'InvalidConfChange', JSON.stringify(cc));
  }
  assert.equal(c.node('a').status().lastIndex, last);
  // A rejected change does not block a valid one.
  c.addEmpty('d');
  assert.ok(c.node('a').proposeConfChange({ type: 'addLearner', node: 'd' }).ok);
  c.stabilize();
  const r = c.node('a').proposeConfChange({ type: 'addLearner', node: 'd' });
  assert.equal(!r.ok && r.reason, 'InvalidConfChange', 'adding an existing learner');

  const single = new TestCluster(['s']);
  single.elect('s');
  single.stabilize();
  assert.equal(single.leader(), 's');
  const rs = single.node('s').proposeConfChange({ type: 'remove', node: 's' });
  assert.equal(rs.ok, false);
  assert.equal(!rs.ok && rs.reason, 'InvalidConfChange');
  assert.deepEqual(single.node('s').status().conf, conf(['s']));
});

test('a follower cannot propose a conf change', () => {
  const c = started();
  const r = c.node('b').proposeConfChange({ type: 'remove', node: 'c' });
  assert.deepEqual(r, { ok: false, reason: 'NotLeader', leader: 'a' });
});

// ---------------------------------------------------------------------------------------------
// Restart

test('conf application is idempotent across a restart', () => {
  const c = started();
  addLearner(c, 'a', 'd');
  assert.ok(c.node('a').proposeConfChange({ type: 'remove', node: 'd' }).ok);
  c.stabilize();
  assert.ok(c.node('a').proposeConfChange({ type: 'remove', node: 'c' }).ok);
  c.stabilize();
  c.tickAll(2);
  const want = conf(['a', 'b']);
  for (const id of ['a', 'b']) assert.deepEqual(c.node(id).status().conf, want);

  // Restart a follower: it re-applies the whole log (no snapshot) on top of the persisted conf.
  c.restart('b');
  assert.deepEqual(c.node('b').status().conf, want);
  const readies = captureReadies(c, 'b');
  c.stabilize();
  assert.deepEqual(c.node('b').status().conf, want);
  for (const rd of readies) if (rd.conf) assert.deepEqual(rd.conf, want);
  assert.deepEqual(c.storages.get('b')!.conf, want);

  // Restart the leader too: the group keeps working with the 2-voter configuration.
  c.restart('a');
  assert.deepEqual(c.node('a').status().conf, want);
  c.tickAll(60);
  const l = c.leader();
  assert.ok(l === 'a' || l === 'b');
  for (const id of ['a', 'b']) assert.deepEqual(c.node(id).status().conf, want);
  assert.ok(c.propose(l!, 'after-restart').ok);
  c.stabilize();
  for (const id of ['a', 'b']) assert.equal(c.appliedData(id).at(-1), 'after-restart');
});
