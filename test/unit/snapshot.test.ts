// Snapshots: a follower behind the leader's compaction point is caught up by a snapshot and then by
// normal replication; lost snapshots are retried; reportSnapshot; stale snapshots are ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, text, captureReadies } from '../helpers/cluster.js';
import type { Message, MsgSnap, NodeId } from '../../src/raft/index.js';

const snapsTo = (ms: readonly Message[], to: NodeId): MsgSnap[] =>
  ms.filter((m): m is MsgSnap => m.type === 'snap' && m.to === to);

/** Tick until a snapshot to `to` has been sent (the leader first gives up waiting for acks of the
 *  appends lost during the partition, one election timeout), bounded. */
function tickUntilSnapSent(c: TestCluster, to: NodeId, max = 25): void {
  const n0 = snapsTo(c.sent, to).length;
  for (let i = 0; i < max && snapsTo(c.sent, to).length === n0; i++) c.tickAll(1);
  assert.equal(snapsTo(c.sent, to).length, n0 + 1, 'a snapshot was sent');
}

/** Leader a; c misses five entries while isolated; a then compacts its whole applied log. */
function laggingFollower(): { c: TestCluster; snapIndex: number } {
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('a');
  assert.ok(c.propose('a', 'x1').ok);
  c.stabilize();
  c.isolate('c');
  for (let i = 0; i < 5; i++) assert.ok(c.propose('a', `p${i}`).ok);
  c.stabilize();
  c.compact('a', 'image');
  const st = c.storages.get('a')!;
  const snapIndex = st.snapshot().meta.index;
  assert.equal(snapIndex, c.node('a').status().commit);
  assert.ok(st.firstIndex() > c.node('c').status().lastIndex + 1, 'c needs entries the leader no longer has');
  return { c, snapIndex };
}

test('a follower behind the compaction point installs a snapshot, then replicates normally', () => {
  const { c, snapIndex } = laggingFollower();
  const readies = captureReadies(c, 'c');
  c.heal();
  tickUntilSnapSent(c, 'c');
  const snaps = snapsTo(c.sent, 'c');
  assert.equal(snaps.length, 1);
  assert.equal(snaps[0].snapshot.meta.index, snapIndex);
  assert.deepEqual(snaps[0].snapshot.data, text('image'));
  // The host saw the snapshot in a Ready, with nothing to apply from the log in the same batch.
  const withSnap = readies.filter((r) => r.snapshot !== null);
  assert.equal(withSnap.length, 1);
  assert.equal(withSnap[0].snapshot!.meta.index, snapIndex);
  assert.equal(withSnap[0].committed.length, 0);
  assert.equal(c.snapshotsInstalled.get('c')!.length, 1);
  const st = c.node('c').status();
  assert.equal(st.commit, snapIndex);
  assert.equal(st.applied, snapIndex);
  assert.deepEqual(st.conf, { voters: ['a', 'b', 'c'], learners: [] });
  assert.equal(c.storages.get('c')!.firstIndex(), snapIndex + 1);
  assert.equal(c.node('a').status().progress.c.state, 'replicate');
  assert.equal(c.node('a').status().progress.c.match, snapIndex);

  // Normal replication resumes.
  const r = c.propose('a', 'after');
  assert.ok(r.ok);
  c.stabilize();
  assert.equal(c.appliedData('c').at(-1), 'after');
  assert.equal(c.appliedIndex.get('c'), r.index);
  assert.equal(snapsTo(c.sent, 'c').length, 1, 'no second snapshot');
  assert.deepEqual(c.persistedLog('c').at(-1), [r.index, c.node('a').status().term]);
});

test('a dropped snapshot is retried and does not wedge the follower', () => {
  const { c, snapIndex } = laggingFollower();
  c.heal();
  let droppedSnaps = 0;
  c.dropIf = (m) => {
    if (m.type === 'snap' && droppedSnaps === 0) {
      droppedSnaps++;
      return true;
    }
    return false;
  };
  tickUntilSnapSent(c, 'c');
  assert.equal(droppedSnaps, 1);
  assert.equal(c.node('a').status().progress.c.state, 'snapshot');
  for (let i = 0; i < 100 && c.snapshotsInstalled.get('c')!.length === 0; i++) c.tickAll(1);
  assert.equal(c.snapshotsInstalled.get('c')!.length, 1, 'installed after a retry');
  assert.equal(snapsTo(c.sent, 'c').length, 2);
  assert.equal(c.node('c').status().commit, snapIndex);
  assert.ok(c.propose('a', 'after').ok);
  c.stabilize();
  assert.equal(c.appliedData('c').at(-1), 'after');
  assert.equal(c.leader(), 'a');
});

test('reportSnapshot(id, false) moves the follower back to probe, and the snapshot is sent again', () => {
  const { c } = laggingFollower();
  c.heal();
  c.dropIf = (m) => m.type === 'snap';
  tickUntilSnapSent(c, 'c');
  assert.equal(c.node('a').status().progress.c.state, 'snapshot');
  c.node('a').reportSnapshot('c', false);
  assert.equal(c.node('a').status().progress.c.state, 'probe');
  c.dropIf = null;
  // No need to wait for the snapshot timeout: the next heartbeat answer triggers a new attempt.
  c.tickAll(3);
  assert.equal(snapsTo(c.sent, 'c').length, 2);
  assert.equal(c.snapshotsInstalled.get('c')!.length, 1);
  assert.equal(c.node('a').status().progress.c.state, 'replicate');
});

test('reportSnapshot for a follower not in snapshot state changes nothing', () => {
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('a');
  c.propose('a', 'x');
  c.stabilize();
  const before = c.node('a').status().progress.b;
  c.node('a').reportSnapshot('b', false);
  assert.deepEqual(c.node('a').status().progress.b, before);
});

test('a stale snapshot (index <= commit) is ignored', () => {
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('a');
  for (let i = 0; i < 4; i++) c.propose('a', `p${i}`);
  c.stabilize();
  c.tickAll(1);
  const b = c.node('b');
  const before = b.status();
  const persistedBefore = c.persistedLog('b');
  assert.ok(before.commit >= 3);
  for (const index of [before.commit - 2, before.commit]) {
    const m: MsgSnap = {
      type: 'snap',
      group: 1,
      from: 'a',
      to: 'b',
      term: before.term,
      snapshot: {
        meta: { index, term: before.term, conf: { voters: ['x', 'y', 'z'], learners: [] } },
        data: text('old'),
      },
    };
    assert.deepEqual(b.step(m), { ok: true });
    const after = b.status();
    assert.equal(after.commit, before.commit);
    assert.equal(after.firstIndex, before.firstIndex);
    assert.equal(after.lastIndex, before.lastIndex);
    assert.deepEqual(after.conf, before.conf, "the stale snapshot's configuration is not adopted");
    // Nothing to persist; the leader is told where b really is.
    assert.ok(b.hasReady());
    const rd = b.ready();
    assert.equal(rd.snapshot, null);
    assert.equal(rd.entries.length, 0);
    assert.equal(rd.conf, null);
    const resp = [...rd.messages, ...rd.messagesAfterPersist];
    assert.equal(resp.length, 1);
    assert.ok(resp[0].type === 'appResp' && !resp[0].reject && resp[0].index === before.commit);
    b.advance();
  }
  assert.deepEqual(c.persistedLog('b'), persistedBefore);
  assert.equal(c.snapshotsInstalled.get('b')!.length, 0);
});

test('a snapshot that matches the follower log only advances its commit index', () => {
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('a');
  for (let i = 0; i < 3; i++) c.propose('a', `p${i}`);
  c.process('a');
  c.deliver((m) => m.type === 'app' && m.to === 'b');
  c.process('b');
  c.queue = [];
  const b = c.node('b');
  const st = b.status();
  assert.ok(st.commit < st.lastIndex);
  const m: MsgSnap = {
    type: 'snap',
    group: 1,
    from: 'a',
    to: 'b',
    term: st.term,
    snapshot: {
      meta: { index: st.lastIndex, term: st.term, conf: { voters: ['a', 'b', 'c'], learners: [] } },
      data: text('s'),
    },
  };
  assert.deepEqual(b.step(m), { ok: true });
  c.process('b');
  assert.equal(b.status().commit, st.lastIndex);
  assert.equal(c.snapshotsInstalled.get('b')!.length, 0, 'no need to replace a matching log');
  assert.deepEqual(c.appliedData('b'), ['p0', 'p1', 'p2']);
});
