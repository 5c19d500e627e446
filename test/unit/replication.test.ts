// Log replication: the leader's no-op, commitment of current-term entries only (figure 8), log
// matching and fast backtracking, flow control (probe/replicate, pipelining, maxInflight,
// maxMsgBytes), the Ready message classification, loss recovery, proposal admission, in-order
// exactly-once delivery of committed entries, and restarts from persisted storage.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  MemoryStorage,
  RaftNode,
  seededRandom,
  type Entry,
  type Message,
  type MsgApp,
  type NodeId,
  type Ready,
} from '../../src/raft/index.js';
import { TestCluster, str, text, chaosTick } from '../helpers/cluster.js';

const G = 1;

/** assert.ok with a default message: without one, node:assert re-parses the (transpiled) source
 *  to describe the failing expression, which can take minutes. */
function ok(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}

// ---------------------------------------------------------------------------------------------
// Local helpers.

/** A storage holding `log` (entry i+1 has term log[i][0] and data log[i][1]) and a hard state. */
function storageWith(
  voters: NodeId[],
  log: [number, string][],
  term: number,
  commit: number,
  vote: NodeId = '',
): MemoryStorage {
  const st = new MemoryStorage({ voters: [...voters].sort(), learners: [] });
  st.append(log.map(([t, d], i) => ({ index: i + 1, term: t, type: 'normal' as const, data: text(d) })));
  st.setHardState({ term, vote, commit });
  return st;
}

/** `n` entries of term t with data `${tag}${k}`. */
const run = (t: number, n: number, tag: string): [number, string][] =>
  Array.from({ length: n }, (_, k) => [t, `${tag}${k}`]);

/** Call `hook` with every Ready any node of the cluster produces (before the cluster persists it).
 *  Returns a function to call after TestCluster.restart (new node objects). */
function tapReadies(c: TestCluster, hook: (id: NodeId, rd: Ready) => void): () => void {
  const wrapped = new WeakSet<RaftNode>();
  const wrap = () => {
    for (const [id, n] of c.nodes) {
      if (wrapped.has(n)) continue;
      wrapped.add(n);
      const ready = n.ready.bind(n);
      n.ready = () => {
        const rd = ready();
        hook(id, rd);
        return rd;
      };
    }
  };
  wrap();
  return wrap;
}

/** Process/deliver until quiet, rewriting queued messages with `transform` before each delivery. */
function settle(c: TestCluster, transform: (m: Message) => Message): void {
  for (let i = 0; i < 1000; i++) {
    c.process();
    if (c.queue.length === 0) return;
    c.queue = c.queue.map(transform);
    c.deliver();
  }
  throw new Error('did not settle');
}

/** Deliver the k-th queued message alone (ignores cut links). */
function deliverAt(c: TestCluster, k: number): Message {
  const [m] = c.queue.splice(k, 1);
  c.node(m.to).step(m);
  return m;
}

const isApp = (m: Message): m is MsgApp => m.type === 'app';
const appsTo = (ms: readonly Message[], from: NodeId, to: NodeId): MsgApp[] =>
  ms.filter((m): m is MsgApp => isApp(m) && m.from === from && m.to === to && m.entries.length > 0);
const dataBytes = (es: readonly Entry[]): number => es.reduce((s, e) => s + e.data.byteLength, 0);

// ---------------------------------------------------------------------------------------------

describe('commitment (§5.3, §5.4.2, figure 8)', () => {
  test('a new leader appends a no-op of its term and commits it', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 2 });
    c.elect('a');
    assert.equal(c.node('a').status().commit, 1, 'the leader committed its no-op');
    c.tickAll(1); // a heartbeat carries the commit index to every follower
    for (const id of ['a', 'b', 'c']) {
      assert.deepEqual(c.persistedLog(id), [[1, 1]], `${id} log`);
      assert.equal(c.node(id).status().commit, 1, `${id} commit`);
      assert.equal(c.appliedIndex.get(id), 1, `${id} applied index`);
      assert.deepEqual(c.appliedData(id), [], 'the no-op is empty: not a user entry');
    }
    const e = c.storages.get('a')!.entries(1, 2, 1 << 20)[0];
    assert.equal(e.type, 'normal');
    assert.equal(e.data.byteLength, 0);
    // A later election appends another no-op at the new term.
    c.isolate('a');
    c.tickAll(40);
    const l = c.leader();
    ok(l && l !== 'a');
    const t = c.node(l!).status().term;
    ok(t > 1);
    assert.deepEqual(c.persistedLog(l!), [
      [1, 1],
      [2, t],
    ]);
    assert.equal(c.node(l!).status().commit, 2);
  });

  test('a follower whose ack arrives after the commit learns the commit index at once, not at the next heartbeat', () => {
    // Right after an election both followers are probed. The first ack commits the no-op and the
    // leader broadcasts the new commit index, but the second follower is still paused at that
    // moment; when its own ack arrives the leader must tell it the commit index (etcd sends an
    // empty append to a follower that was paused), otherwise it lags by a heartbeat interval.
    for (let seed = 1; seed <= 5; seed++) {
      const c = new TestCluster(['a', 'b', 'c'], { seed });
      c.elect('a');
      for (const id of ['b', 'c']) {
        assert.equal(
          c.node(id).status().commit,
          1,
          `seed ${seed}: follower ${id} commit after the election settled (no tick)`,
        );
      }
    }
  });

  test('direct: an old-term entry on a majority is not committed until an entry of the current term is', () => {
    // a: [1, 2] at term 3; it wins term 4 and appends its no-op at index 3.
    const st = storageWith(
      ['a', 'b', 'c'],
      [
        [1, 'e1'],
        [2, 'e2'],
      ],
      3,
      1,
    );
    const n = new RaftNode({
      id: 'a',
      group: G,
      storage: st,
      random: seededRandom(1),
      preVote: false,
      electionTicks: 10,
    });
    const persist = () => {
      while (n.hasReady()) {
        st.persist(n.ready());
        n.advance();
      }
    };
    n.campaign();
    persist();
    n.step({ type: 'voteResp', group: G, from: 'b', to: 'a', term: 4, reject: false });
    assert.equal(n.status().role, 'leader');
    assert.equal(n.status().lastIndex, 3);
    // b acknowledges index 2 only (a and b hold (2, 2): a majority of 3).
    n.step({
      type: 'appResp',
      group: G,
      from: 'b',
      to: 'a',
      term: 4,
      index: 2,
      reject: false,
      hintIndex: 0,
      hintTerm: 0,
    });
    persist();
    assert.equal(n.status().commit, 1, 'entry 2 (term 2) must not be committed by counting replicas');
    n.step({
      type: 'appResp',
      group: G,
      from: 'c',
      to: 'a',
      term: 4,
      index: 2,
      reject: false,
      hintIndex: 0,
      hintTerm: 0,
    });
    persist();
    assert.equal(n.status().commit, 1, 'not even when every replica holds it');
    n.step({
      type: 'appResp',
      group: G,
      from: 'b',
      to: 'a',
      term: 4,
      index: 3,
      reject: false,
      hintIndex: 0,
      hintTerm: 0,
    });
    assert.equal(n.status().commit, 3, 'the no-op of term 4 on a majority commits everything before it');
  });

  /** Figure 8 (c): s1 leads term 4; (2, 2) is on s1, s2, s3 (a majority), (3, 4) only on s1, s2. */
  function figure8(seed: number): TestCluster {
    const ids = ['s1', 's2', 's3', 's4', 's5'];
    const c = new TestCluster(ids, { seed, maxMsgBytes: 1 }); // one entry per append
    c.add(
      's1',
      storageWith(
        ids,
        [
          [1, 'e1'],
          [2, 'x2'],
        ],
        3,
        1,
      ),
    );
    c.add(
      's2',
      storageWith(
        ids,
        [
          [1, 'e1'],
          [2, 'x2'],
        ],
        3,
        1,
      ),
    );
    c.add('s3', storageWith(ids, [[1, 'e1']], 3, 1));
    c.add('s4', storageWith(ids, [[1, 'e1']], 3, 1));
    c.add(
      's5',
      storageWith(
        ids,
        [
          [1, 'e1'],
          [3, 'x5'],
        ],
        3,
        1,
      ),
    );
    c.dropIf = (m) => [m.from, m.to].some((x) => x === 's4' || x === 's5');
    c.node('s1').campaign();
    // s3 receives the leader's appends without the term-4 suffix: only (2, 2) reaches it.
    settle(c, (m) => (isApp(m) && m.to === 's3' ? { ...m, entries: m.entries.filter((e) => e.term !== 4) } : m));
    const s1 = c.node('s1').status();
    assert.equal(s1.role, 'leader');
    assert.equal(s1.term, 4);
    assert.deepEqual(c.persistedLog('s1'), [
      [1, 1],
      [2, 2],
      [3, 4],
    ]);
    assert.deepEqual(c.persistedLog('s2'), [
      [1, 1],
      [2, 2],
      [3, 4],
    ]);
    assert.deepEqual(c.persistedLog('s3'), [
      [1, 1],
      [2, 2],
    ]);
    assert.equal(s1.progress.s3.match, 2, 'the leader knows s3 holds index 2');
    assert.equal(s1.progress.s2.match, 3);
    return c;
  }

  test('figure 8: (2, 2) on a majority is not committed by the term-4 leader; s5 may still overwrite it', () => {
    const c = figure8(5);
    assert.equal(c.node('s1').status().commit, 1, 'index 2 (term 2) must not be committed');
    for (const id of c.nodes.keys()) {
      ok(c.node(id).status().commit <= 1, `${id} commit`);
      ok(!c.appliedData(id).includes('x2'), `${id} applied x2`);
      ok(c.storages.get(id)!.hardState.commit <= 1);
    }
    // Why: s1 and s2 fail; s5 (last term 3) can win with s3 and s4 and replace index 2.
    c.dropIf = null;
    for (const a of ['s1', 's2']) for (const b of ['s3', 's4', 's5']) c.cutLink(a, b);
    for (let i = 0; i < 200 && c.node('s5').status().role !== 'leader'; i++) c.tickAll(1);
    assert.equal(c.node('s5').status().role, 'leader', 's5 was elected');
    assert.deepEqual(
      c.persistedLog('s3').slice(0, 2),
      [
        [1, 1],
        [2, 3],
      ],
      'index 2 replaced on s3',
    );
    c.heal();
    c.tickAll(40);
    const ref = c.persistedLog('s5');
    for (const id of c.nodes.keys()) {
      assert.deepEqual(c.persistedLog(id), ref, `${id} log`);
      assert.deepEqual(c.appliedData(id), ['e1', 'x5'], `${id} applied`);
    }
  });

  test('figure 8 (e): once the term-4 entry reaches a majority, index 2 commits with it', () => {
    const c = figure8(6);
    assert.equal(c.node('s1').status().commit, 1);
    // Let s3 receive (3, 4) now (s4 and s5 still unreachable); lost appends are retried by ticks.
    c.tickAll(25);
    assert.equal(c.node('s1').status().role, 'leader');
    assert.deepEqual(c.persistedLog('s3'), [
      [1, 1],
      [2, 2],
      [3, 4],
    ]);
    assert.equal(c.node('s1').status().commit, 3);
    for (const id of ['s1', 's2', 's3']) assert.deepEqual(c.appliedData(id), ['e1', 'x2'], `${id} applied`);
  });
});

describe('log matching and backtracking', () => {
  test('a follower with a conflicting uncommitted suffix gets it overwritten (cluster run)', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 4 });
    c.elect('a');
    assert.equal(c.propose('a', 'base').ok, true);
    c.stabilize();
    c.isolate('a');
    for (const s of ['lost1', 'lost2', 'lost3']) assert.equal(c.propose('a', s).ok, true);
    c.stabilize();
    assert.equal(c.persistedLog('a').length, 5, 'a persisted its uncommitted suffix');
    const newLeader = () => ['b', 'c'].find((x) => c.node(x).status().role === 'leader');
    for (let i = 0; i < 100 && !newLeader(); i++) {
      c.tick('b');
      c.tick('c');
      c.stabilize();
    }
    const l = newLeader()!;
    ok(l, 'b or c was elected');
    for (const s of ['new1', 'new2']) assert.equal(c.propose(l, s).ok, true);
    c.stabilize();
    c.heal();
    c.tickAll(20);
    const ref = c.persistedLog(l);
    assert.equal(ref.length, 5);
    assert.deepEqual(c.persistedLog('a'), ref, "a's log now equals the leader's");
    const data = c.storages
      .get('a')!
      .entries(1, 6, 1 << 20)
      .map((e) => str(e.data));
    assert.deepEqual(data.slice(2), ['', 'new1', 'new2']);
    for (const id of ['a', 'b', 'c']) assert.deepEqual(c.appliedData(id), ['base', 'new1', 'new2']);
  });

  test('a constructed conflicting tail (longer than the leader log) is truncated and replaced in storage', () => {
    const ids = ['a', 'b', 'c'];
    const c = new TestCluster(ids, { seed: 5 });
    c.add(
      'a',
      storageWith(
        ids,
        [
          [1, 'c1'],
          [1, 'c2'],
          [3, 'a3'],
        ],
        3,
        2,
      ),
    );
    c.add(
      'b',
      storageWith(
        ids,
        [
          [1, 'c1'],
          [1, 'c2'],
          [3, 'a3'],
        ],
        3,
        2,
      ),
    );
    c.add(
      'c',
      storageWith(
        ids,
        [
          [1, 'c1'],
          [1, 'c2'],
          [2, 'z3'],
          [2, 'z4'],
          [2, 'z5'],
          [2, 'z6'],
        ],
        2,
        2,
      ),
    );
    c.elect('a');
    assert.equal(c.leader(), 'a');
    const ref: [number, number][] = [
      [1, 1],
      [2, 1],
      [3, 3],
      [4, 4],
    ];
    assert.deepEqual(c.persistedLog('c'), ref, 'suffix replaced, stale tail (5, 6) dropped');
    const data = c.storages
      .get('c')!
      .entries(1, 5, 1 << 20)
      .map((e) => str(e.data));
    assert.deepEqual(data, ['c1', 'c2', 'a3', '']);
    for (const id of ids) assert.deepEqual(c.appliedData(id), ['c1', 'c2', 'a3']);
  });

  const cases = [
    {
      name: 'follower tail of lower terms (figure 7 f, stretched)',
      leader: [...run(1, 3, 'p'), ...run(4, 37, 'l'), ...run(6, 20, 'm')] as [number, string][],
      follower: [...run(1, 3, 'p'), ...run(2, 47, 'f'), ...run(3, 40, 'g')] as [number, string][],
      followerTerm: 3,
    },
    {
      name: 'follower tail of a higher term than the leader probe',
      leader: [...run(1, 3, 'p'), ...run(4, 37, 'l'), ...run(6, 20, 'm')] as [number, string][],
      follower: [...run(1, 3, 'p'), ...run(4, 17, 'l'), ...run(5, 60, 'h')] as [number, string][],
      followerTerm: 5,
    },
  ];
  for (const tc of cases) {
    test(`fast backtracking: ${tc.name} is fixed in O(terms) round trips, not O(entries)`, () => {
      const ids = ['a', 'b', 'c'];
      const c = new TestCluster(ids, { seed: 6 });
      c.add('a', storageWith(ids, tc.leader, 7, 3));
      c.add('b', storageWith(ids, tc.leader, 7, 3));
      c.add('c', storageWith(ids, tc.follower, tc.followerTerm, 3));
      c.elect('a');
      assert.equal(c.leader(), 'a');
      const rejects = c.sent.filter((m) => m.type === 'appResp' && m.from === 'c' && m.reject);
      const divergent = tc.leader.length - 3; // entries after the common prefix on the leader
      ok(rejects.length >= 1, 'the follower did reject at first');
      ok(rejects.length <= 3, `${rejects.length} rejected appends for ${divergent} divergent leader entries`);
      ok(c.sent.filter((m) => isApp(m) && m.to === 'c').length <= 6, 'few appends overall');
      assert.deepEqual(c.persistedLog('c'), c.persistedLog('a'));
      assert.equal(c.persistedLog('c').length, tc.leader.length + 1);
    });
  }
});

describe('flow control', () => {
  test('probe -> replicate: one outstanding probe until the follower answers, then replicate', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 7 });
    c.dropIf = (m) => m.type === 'appResp' && m.from === 'b';
    c.elect('a');
    const pr = () => c.node('a').status().progress.b;
    assert.equal(pr().state, 'probe');
    assert.equal(c.node('a').status().progress.c.state, 'replicate');
    const before = c.sent.length;
    for (let i = 0; i < 3; i++) {
      c.propose('a', `p${i}`);
      c.stabilize();
    }
    const toB = c.sent.slice(before).filter((m) => isApp(m) && m.to === 'b');
    const toC = appsTo(c.sent.slice(before), 'a', 'c');
    assert.equal(toB.length, 0, 'a paused probe sends nothing more');
    assert.equal(toC.length, 3, 'a replicating follower gets every proposal at once');
    c.dropIf = null;
    c.tick('a'); // heartbeat; its response unpauses the probe
    c.stabilize();
    assert.equal(pr().state, 'replicate');
    assert.equal(pr().match, 4);
    const before2 = c.sent.length;
    c.propose('a', 'q');
    c.process('a');
    assert.equal(appsTo(c.sent.slice(before2), 'a', 'b').length, 1, 'replicate: sent optimistically');
    c.stabilize();
    assert.deepEqual(c.appliedData('b'), ['p0', 'p1', 'p2', 'q']);
  });

  test('pipelining: in replicate state several appends are in flight before any ack', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 8 });
    c.elect('a');
    for (let i = 0; i < 10; i++) {
      c.propose('a', `v${i}`);
      c.process('a');
    }
    const apps = appsTo(c.queue, 'a', 'b');
    assert.equal(apps.length, 10, 'one append per proposal, none waiting for an ack');
    assert.deepEqual(
      apps.map((m) => m.entries[0].index),
      [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
    assert.equal(c.node('a').status().progress.b.inflight, 10);
    c.stabilize();
    assert.equal(c.appliedData('b').length, 10);
  });

  test('maxInflight: 4 caps the unacked appends per follower, under any delivery order', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const c = new TestCluster(['a', 'b', 'c'], { seed, maxInflight: 4 });
      c.elect('a');
      assert.equal(c.node('a').status().progress.b.state, 'replicate');
      for (let i = 0; i < 10; i++) {
        c.propose('a', `v${i}`);
        c.process('a');
      }
      assert.equal(appsTo(c.queue, 'a', 'b').length, 4, 'exactly the window is sent');
      assert.equal(c.node('a').status().progress.b.inflight, 4);
      assert.equal(c.node('a').status().progress.b.next, 6);
      // Now deliver one message at a time, FIFO per link (as over TCP) but links interleaved at
      // random, watching the window.
      const rnd = seededRandom(seed);
      const acked = new Map<NodeId, number>([
        ['b', 1],
        ['c', 1],
      ]);
      let maxOutstanding = 0;
      for (let step = 0; step < 5000 && c.queue.length > 0; step++) {
        const links = [...new Set(c.queue.map((m) => `${m.from}->${m.to}`))];
        const link = links[Math.floor(rnd() * links.length)];
        const m = deliverAt(
          c,
          c.queue.findIndex((x) => `${x.from}->${x.to}` === link),
        );
        if (m.type === 'appResp' && !m.reject && m.to === 'a') acked.set(m.from, Math.max(acked.get(m.from)!, m.index));
        c.process();
        for (const f of ['b', 'c']) {
          const out = appsTo(c.sent, 'a', f).filter((x) => x.entries[x.entries.length - 1].index > acked.get(f)!);
          maxOutstanding = Math.max(maxOutstanding, out.length);
          ok(out.length <= 4, `seed ${seed}: ${out.length} unacked appends to ${f}`);
          ok(c.node('a').status().progress[f].inflight <= 4, 'inflight window');
        }
      }
      assert.equal(maxOutstanding, 4);
      assert.equal(c.queue.length, 0);
      for (const id of ['a', 'b', 'c']) assert.equal(c.appliedData(id).length, 10, `seed ${seed}: ${id}`);
    }
  });

  test('maxMsgBytes limits the entry data per append; at least one entry per append', () => {
    const limit = 200;
    const c = new TestCluster(['a', 'b', 'c'], { seed: 9, maxMsgBytes: limit });
    c.elect('a');
    c.cutLink('a', 'b');
    const payloads: string[] = [];
    for (let i = 0; i < 12; i++) {
      const p = `${String(i).padStart(2, '0')}${'x'.repeat(38)}`; // 40 bytes
      payloads.push(p);
      assert.equal(c.propose('a', p).ok, true);
      c.stabilize();
    }
    const big = 'B'.repeat(3 * limit);
    payloads.push(big);
    assert.equal(c.propose('a', big).ok, true);
    c.stabilize();
    const before = c.sent.length;
    c.heal();
    c.tickAll(30);
    const apps = appsTo(c.sent.slice(before), 'a', 'b');
    ok(apps.length >= 4, `${apps.length} appends carried the backlog`);
    for (const m of apps) {
      ok(m.entries.length >= 1);
      if (m.entries.length > 1) ok(dataBytes(m.entries) <= limit, `append of ${dataBytes(m.entries)} bytes`);
    }
    ok(
      apps.some((m) => m.entries.length > 1),
      'small entries are batched',
    );
    const bigApp = apps.find((m) => m.entries.some((e) => e.data.byteLength === big.length));
    ok(bigApp, 'the oversized entry was sent');
    assert.equal(bigApp!.entries.length, 1, 'an entry larger than maxMsgBytes travels alone');
    assert.deepEqual(c.appliedData('b'), payloads);

    // A burst proposed before the leader's Ready is processed is still unpersisted when the
    // appends are built: the limit applies to the unstable tail as well.
    const before2 = c.sent.length;
    const burst: string[] = [];
    for (let i = 0; i < 10; i++) {
      const p = `u${String(i).padStart(2, '0')}${'y'.repeat(37)}`; // 40 bytes
      burst.push(p);
      assert.equal(c.propose('a', p).ok, true);
    }
    c.stabilize();
    for (const f of ['b', 'c']) {
      const apps2 = appsTo(c.sent.slice(before2), 'a', f);
      ok(apps2.length >= 2, `${f}: the burst was split (${apps2.length} appends)`);
      for (const m of apps2) {
        ok(m.entries.length === 1 || dataBytes(m.entries) <= limit, `${f}: append of ${dataBytes(m.entries)} bytes`);
      }
      assert.deepEqual(c.appliedData(f), [...payloads, ...burst]);
    }
  });
});

describe('Ready message classification', () => {
  test("a follower's appResp waits for persistence; the leader's app may leave before it (§10.2.1)", () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 10 });
    c.elect('a');
    const rds: { id: NodeId; rd: Ready }[] = [];
    tapReadies(c, (id, rd) => rds.push({ id, rd }));
    c.propose('a', 'x');
    c.stabilize();
    const lead = rds.find(({ id, rd }) => id === 'a' && rd.entries.some((e) => str(e.data) === 'x'));
    ok(lead, 'leader Ready carrying the new entry');
    const out = lead!.rd.messages.filter(isApp);
    assert.deepEqual(
      out.map((m) => m.to).sort(),
      ['b', 'c'],
      'appends ride in messages, alongside the unpersisted entry',
    );
    ok(out.every((m) => m.entries.some((e) => str(e.data) === 'x')));
    assert.equal(lead!.rd.messagesAfterPersist.filter(isApp).length, 0);
    for (const f of ['b', 'c']) {
      const fr = rds.find(({ id, rd }) => id === f && rd.entries.some((e) => str(e.data) === 'x'));
      ok(fr, `${f} Ready carrying the entry`);
      assert.equal(fr!.rd.messages.filter((m) => m.type === 'appResp').length, 0, `${f}: ack sent before persistence`);
      const acks = fr!.rd.messagesAfterPersist.filter((m) => m.type === 'appResp');
      assert.equal(acks.length, 1);
      ok(acks[0].type === 'appResp' && !acks[0].reject && acks[0].index === 2);
    }
    assert.deepEqual(c.appliedData('a'), ['x']);
  });

  test('with leader-side persistence pending, followers alone can commit (the leader counts itself after advance)', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 11 });
    c.elect('a');
    const a = c.node('a');
    c.propose('a', 'y');
    // The host sends the leader's messages but has not persisted its entries yet.
    const rd = a.ready();
    c.queue.push(...rd.messages);
    for (let i = 0; i < 5 && c.queue.some((m) => m.to !== 'a' || m.type === 'appResp'); i++) {
      c.deliver((m) => m.to !== 'a' || m.type === 'appResp');
      c.process('b');
      c.process('c');
    }
    assert.equal(a.status().commit, 2, 'b and c acknowledged: committed without the leader');
    c.storages.get('a')!.persist(rd);
    a.advance();
    c.stabilize();
    for (const id of ['a', 'b', 'c']) assert.deepEqual(c.appliedData(id), ['y']);
  });
});

describe('loss recovery', () => {
  for (const seed of [1, 2, 3, 4]) {
    test(`lost appends in replicate state are recovered: every proposal is applied everywhere (seed ${seed})`, () => {
      const c = new TestCluster(['a', 'b', 'c', 'd', 'e'], { seed });
      c.elect('a');
      const rnd = seededRandom(seed * 101);
      let dropped = 0;
      c.dropIf = (m) => {
        if (m.type === 'app' && m.entries.length > 0 && rnd() < 0.4) {
          dropped++;
          return true;
        }
        return false;
      };
      const want: string[] = [];
      for (let i = 0; i < 40; i++) {
        const s = `v${i}`;
        assert.equal(c.propose('a', s).ok, true);
        want.push(s);
        c.stabilize();
        if (rnd() < 0.5) c.tickAll(1);
      }
      ok(dropped > 10, `dropped ${dropped} appends`);
      // The last appends may be lost for good: only ticks can recover them.
      c.dropIf = null;
      c.tickAll(30);
      assert.equal(c.leader(), 'a', 'losing appends never cost the leadership');
      for (const id of c.nodes.keys()) assert.deepEqual(c.appliedData(id), want, `${id} applied`);
    });
  }

  test('when the very last append is lost and nothing else is proposed, ticks alone recover it', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 12 });
    c.elect('a');
    c.dropIf = (m) => m.type === 'app' && m.entries.length > 0;
    c.propose('a', 'only');
    c.stabilize();
    assert.equal(c.node('a').status().commit, 1);
    c.dropIf = null;
    c.tickAll(25);
    for (const id of ['a', 'b', 'c']) assert.deepEqual(c.appliedData(id), ['only']);
  });
});

describe('proposals', () => {
  test('NotLeader with the leader hint on a follower; with an empty hint when no leader is known', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 13 });
    assert.deepEqual(c.propose('b', 'x'), { ok: false, reason: 'NotLeader', leader: '' });
    c.elect('a');
    assert.deepEqual(c.propose('b', 'x'), { ok: false, reason: 'NotLeader', leader: 'a' });
    assert.deepEqual(c.propose('c', 'x'), { ok: false, reason: 'NotLeader', leader: 'a' });
    const r = c.propose('a', 'x');
    assert.deepEqual(r, { ok: true, index: 2, term: 1 });
    c.stabilize();
    assert.equal(c.sent.filter((m) => isApp(m) && m.entries.some((e) => str(e.data) === 'x')).length, 2);
    assert.deepEqual(c.appliedData('b'), ['x']);
  });

  test('TooLarge beyond maxProposalBytes (the limit itself is accepted)', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 14, maxProposalBytes: 64 });
    c.elect('a');
    assert.deepEqual(c.propose('a', 'z'.repeat(65)), { ok: false, reason: 'TooLarge', limit: 64 });
    const ok = c.propose('a', 'z'.repeat(64));
    assert.equal(ok.ok, true);
    c.stabilize();
    assert.deepEqual(c.appliedData('b'), ['z'.repeat(64)]);
    assert.equal(c.node('a').status().lastIndex, 2, 'the rejected proposal left no entry');
  });

  test('Overloaded beyond maxUncommittedBytes while nothing commits; accepted again once entries commit', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 15, maxUncommittedBytes: 100 });
    c.elect('a');
    c.isolate('a');
    const p40 = () => c.propose('a', 'o'.repeat(40));
    assert.equal(p40().ok, true);
    assert.equal(p40().ok, true);
    assert.deepEqual(p40(), { ok: false, reason: 'Overloaded', limit: 100 });
    assert.equal(c.propose('a', 'q'.repeat(20)).ok, true, 'exactly up to the limit is accepted');
    assert.deepEqual(c.propose('a', 'r'), { ok: false, reason: 'Overloaded', limit: 100 });
    c.stabilize();
    assert.equal(c.node('a').status().commit, 1, 'nothing committed while partitioned');
    assert.deepEqual(p40(), { ok: false, reason: 'Overloaded', limit: 100 }, 'still overloaded');
    c.heal();
    c.tickAll(25);
    assert.equal(c.leader(), 'a');
    assert.equal(c.node('a').status().commit, 4, 'no-op + 40 + 40 + 20 committed');
    assert.equal(p40().ok, true, 'accepted again after the backlog committed');
    assert.equal(p40().ok, true);
    c.stabilize();
    assert.equal(c.appliedData('c').length, 5);
  });

  test('a proposal larger than maxUncommittedBytes is accepted when nothing else is uncommitted', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 16, maxUncommittedBytes: 10 });
    c.elect('a');
    assert.equal(c.propose('a', 'w'.repeat(50)).ok, true);
    assert.equal(c.propose('a', 'w').ok, false);
    c.stabilize();
    assert.equal(c.propose('a', 'w').ok, true);
  });
});

describe('delivery of committed entries', () => {
  const runs: { seed: number; chaos: boolean }[] = [];
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) runs.push({ seed, chaos: false });
  for (const seed of [11, 12, 13, 14, 15, 16]) runs.push({ seed, chaos: true });
  for (const { seed, chaos } of runs) {
    test(`committed entries reach the host in order, exactly once per incarnation, identical on every node, across crashes (${chaos ? 'reordering + duplicating network, ' : ''}seed ${seed})`, () => {
      const ids = ['a', 'b', 'c', 'd', 'e'];
      const c = new TestCluster(ids, { seed, electionTicks: 6 });
      const committed = new Map<NodeId, Entry[]>(ids.map((id) => [id, []]));
      const rewrap = tapReadies(c, (id, rd) => committed.get(id)!.push(...rd.committed));
      let restarts = 0;
      const rnd = seededRandom(seed * 977);
      let isolated: NodeId | null = null;
      c.dropIf = (m) => (isolated !== null && (m.from === isolated || m.to === isolated)) || rnd() < 0.1;
      const accepted: string[] = [];
      let k = 0;
      for (let t = 0; t < 400; t++) {
        const x = rnd();
        if (x < 0.5) {
          const l = c.leader();
          if (l) {
            const n = 1 + Math.floor(rnd() * 3);
            for (let i = 0; i < n; i++) {
              const s = `k${k++}`;
              if (c.propose(l, s).ok) accepted.push(s);
            }
          }
        } else if (x < 0.53) {
          isolated = ids[Math.floor(rnd() * ids.length)];
        } else if (x < 0.6) {
          isolated = null;
        } else if (x < 0.62) {
          // Crash and restart: the new incarnation re-applies from its snapshot (index 0).
          const id = ids[Math.floor(rnd() * ids.length)];
          c.restart(id);
          committed.set(id, []);
          rewrap();
          restarts++;
        }
        if (chaos) chaosTick(c, rnd);
        else c.tickAll(1);
      }
      isolated = null;
      c.dropIf = null;
      c.tickAll(60);
      const l = c.leader();
      ok(l);
      const commit = c.node(l!).status().commit;
      const ref = committed.get(l!)!;
      for (const id of ids) {
        const es = committed.get(id)!;
        assert.deepEqual(
          es.map((e) => e.index),
          Array.from({ length: es.length }, (_, i) => i + 1),
          `${id}: gaps or duplicates`,
        );
        assert.equal(es.length, commit, `${id} caught up`);
        for (let i = 0; i < es.length; i++) {
          assert.equal(es[i].term, ref[i].term, `${id} index ${i + 1} term`);
          assert.equal(str(es[i].data), str(ref[i].data), `${id} index ${i + 1} data`);
        }
        const data = c.appliedData(id);
        assert.equal(new Set(data).size, data.length, `${id} applied a command twice`);
      }
      ok(restarts > 0, 'some nodes restarted');
      // Applied commands are a subsequence of what was accepted, in acceptance order.
      const applied = c.appliedData(l!);
      ok(applied.length > 20, `progress was made (${applied.length})`);
      let j = 0;
      for (const s of applied) {
        while (j < accepted.length && accepted[j] !== s) j++;
        ok(j < accepted.length, `${s} applied out of order or never accepted`);
        j++;
      }
    });
  }
});

describe('restart from persisted storage', () => {
  test('a restarted node keeps term, vote and log; the cluster keeps working', () => {
    const ids = ['a', 'b', 'c'];
    const c = new TestCluster(ids, { seed: 17 });
    c.elect('a');
    for (const s of ['r1', 'r2', 'r3']) c.propose('a', s);
    c.stabilize();
    c.tickAll(3);
    for (const id of ids) {
      const before = c.node(id).status();
      const hs = c.storages.get(id)!.hardState;
      const log = c.persistedLog(id);
      c.restart(id);
      const after = c.node(id).status();
      assert.equal(after.term, before.term, `${id} term`);
      assert.equal(after.term, hs.term);
      assert.equal(after.vote, hs.vote, `${id} vote`);
      assert.equal(after.vote, before.vote);
      assert.equal(after.lastIndex, before.lastIndex, `${id} last index`);
      assert.equal(after.role, 'follower');
      assert.deepEqual(c.persistedLog(id), log);
      c.tickAll(30);
      const l = c.leader();
      ok(l, `a leader after restarting ${id}`);
      assert.equal(c.propose(l!, `after-${id}`).ok, true);
      c.stabilize();
    }
    const want = ['r1', 'r2', 'r3', 'after-a', 'after-b', 'after-c'];
    for (const id of ids) assert.deepEqual(c.appliedData(id), want, `${id} (re)applied everything in order`);
  });

  test('an entry applied on the leader survives the restart of any minority', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const subsets: NodeId[][] = [];
    for (let i = 0; i < ids.length; i++) {
      subsets.push([ids[i]]);
      for (let j = i + 1; j < ids.length; j++) subsets.push([ids[i], ids[j]]);
    }
    for (const sub of subsets) {
      const c = new TestCluster(ids, { seed: 18 + subsets.indexOf(sub) });
      c.elect('a');
      // d and e are unreachable: 'x' lives on exactly a bare majority {a, b, c}.
      c.isolate('d');
      c.isolate('e');
      const r = c.propose('a', 'x');
      ok(r.ok);
      c.stabilize();
      assert.deepEqual(c.appliedData('a'), ['x'], 'acknowledged: applied on the leader');
      for (const id of sub) c.restart(id);
      c.heal();
      c.tickAll(60);
      const l = c.leader();
      ok(l, `restart ${sub}: a leader`);
      assert.equal(c.propose(l!, 'y').ok, true);
      c.stabilize();
      for (const id of ids) {
        assert.deepEqual(c.appliedData(id), ['x', 'y'], `restart ${sub}: ${id} applied`);
        const at = c.applied.get(id)!.find((e) => str(e.data) === 'x')!;
        assert.equal(at.index, r.ok ? r.index : -1, `restart ${sub}: ${id} has x at its original index`);
      }
    }
  });

  test('all nodes restarted at once: committed entries survive and a new leader continues the log', () => {
    const ids = ['a', 'b', 'c'];
    const c = new TestCluster(ids, { seed: 40 });
    c.elect('b');
    for (const s of ['s1', 's2']) c.propose('b', s);
    c.stabilize();
    for (const id of ids) c.restart(id);
    c.tickAll(40);
    const l = c.leader();
    ok(l);
    ok(c.node(l!).status().term >= 2);
    c.propose(l!, 's3');
    c.stabilize();
    for (const id of ids) assert.deepEqual(c.appliedData(id), ['s1', 's2', 's3']);
  });
});

describe('compaction floor', () => {
  test('a leader reports the lowest index an active follower still needs; a lagging cut-off follower does not hold it back', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 5 });
    c.elect('a');
    c.tickAll(1);
    assert.equal(c.node('b').compactionFloor(), Infinity, 'a follower needs nothing kept');
    const caughtUp = c.node('a').status().lastIndex;
    assert.equal(c.node('a').compactionFloor(), caughtUp + 1, 'everyone has everything');
    // c is cut off; a keeps committing with b.
    c.isolate('c');
    for (let i = 0; i < 5; i++) {
      assert.equal(c.propose('a', `x${i}`).ok, true);
      c.stabilize();
    }
    assert.equal(c.node('a').status().commit, caughtUp + 5);
    assert.equal(c.node('a').compactionFloor(), caughtUp + 1, 'c is still recently active: its entries are kept');
    // After an election timeout without replies c is no longer recently active: the floor follows b.
    for (let i = 0; i < 12; i++) {
      c.tick('a');
      c.stabilize();
    }
    assert.equal(c.node('a').status().role, 'leader');
    assert.equal(c.node('a').compactionFloor(), c.node('a').status().lastIndex + 1, 'only b counts now');
  });
});

describe('one round per write (skipCommitBroadcast, mustSync)', () => {
  test('with skipCommitBroadcast a write costs one append and one ack per follower; followers learn the commit at the next heartbeat', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 3, skipCommitBroadcast: true });
    c.elect('a');
    c.tickAll(1); // the no-op's commit reaches the followers
    const before = c.sent.length;
    c.propose('a', 'w1');
    c.stabilize();
    const msgs = c.sent.slice(before);
    assert.deepEqual(
      msgs.map((m) => `${m.type} ${m.from}->${m.to}`).sort(),
      ['app a->b', 'app a->c', 'appResp b->a', 'appResp c->a'],
      'no empty commit append, no second round',
    );
    assert.deepEqual(c.appliedData('a'), ['w1'], 'the leader applies at once');
    assert.deepEqual(c.appliedData('b'), [], 'a follower has not heard of the commit yet');
    c.tick('a');
    c.stabilize();
    for (const f of ['b', 'c']) assert.deepEqual(c.appliedData(f), ['w1'], `${f} applies after the heartbeat`);
  });

  test('without it (etcd behaviour) the same write takes a second round: empty commit appends and their acks', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 3 });
    c.elect('a');
    const before = c.sent.length;
    c.propose('a', 'w1');
    c.stabilize();
    const types = c.sent.slice(before).map((m) => m.type);
    assert.equal(types.filter((t) => t === 'app').length, 4);
    assert.equal(types.filter((t) => t === 'appResp').length, 4);
    for (const f of ['b', 'c']) assert.deepEqual(c.appliedData(f), ['w1']);
  });

  test('with skipCommitBroadcast a follower serving a ReadIndex read is sent the commit with the read index', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 4, skipCommitBroadcast: true });
    c.elect('a');
    c.propose('a', 'w1');
    c.stabilize();
    assert.equal(c.node('b').status().commit < c.node('a').status().commit, true, 'b lags before the read');
    c.node('b').readIndex('r1');
    c.stabilize();
    const rs = c.readStates.get('b')!.find((r) => r.ctx === 'r1');
    ok(rs, 'the read index reached b');
    ok(
      (c.appliedIndex.get('b') ?? 0) >= rs.index,
      `b applied ${c.appliedIndex.get('b')} >= read index ${rs.index} without a tick`,
    );
  });

  test('with skipCommitBroadcast a quiescing leader tells the followers the last commit', () => {
    const c = new TestCluster(['a', 'b', 'c'], {
      seed: 5,
      skipCommitBroadcast: true,
      coastHeartbeats: true,
      quiesceAfterTicks: 2,
    });
    c.elect('a');
    c.propose('a', 'w1');
    c.stabilize();
    for (let i = 0; i < 3; i++) c.tickAll(1);
    for (const id of ['a', 'b', 'c']) {
      assert.equal(c.node(id).isQuiesced(), true, `${id} quiesced`);
      assert.equal(c.node(id).status().commit, c.node('a').status().lastIndex, `${id} knows the last commit`);
    }
    assert.deepEqual(c.appliedData('c'), ['w1']);
  });

  test('mustSync: new entries, a new term or vote, and membership changes must be durable; a commit-only Ready need not', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 6, skipCommitBroadcast: true });
    const last = new Map<NodeId, { term: number; vote: NodeId }>();
    let commitOnly = 0;
    let checked = 0;
    tapReadies(c, (id, rd) => {
      const prev = last.get(id) ?? { term: 0, vote: '' };
      const voteOrTerm = rd.hardState !== null && (rd.hardState.term !== prev.term || rd.hardState.vote !== prev.vote);
      if (rd.hardState) last.set(id, { term: rd.hardState.term, vote: rd.hardState.vote });
      const want = rd.entries.length > 0 || rd.snapshot !== null || rd.conf !== null || voteOrTerm;
      assert.equal(
        rd.mustSync,
        want,
        `${id}: entries ${rd.entries.length}, hard state ${JSON.stringify(rd.hardState)}`,
      );
      if (!want && rd.hardState !== null) commitOnly++;
      checked++;
    });
    c.elect('a');
    c.propose('a', 'w1');
    c.stabilize();
    c.tickAll(2);
    ok(checked > 5 && commitOnly >= 3, `${checked} Readies, ${commitOnly} commit-only ones`);
  });

  test('a replica restarted with a stale commit index but a later applied index resumes from what it applied', () => {
    const st = storageWith(['a', 'b', 'c'], run(1, 5, 'e'), 1, 2);
    const n = new RaftNode({ id: 'a', group: G, storage: st, random: seededRandom(1), applied: 4 });
    assert.equal(n.status().commit, 4, 'an applied entry was committed');
    assert.equal(n.status().applied, 4);
    assert.equal(n.hasReady(), false, 'nothing is handed out again');
    const beyond = new RaftNode({
      id: 'a',
      group: G,
      storage: storageWith(['a', 'b', 'c'], run(1, 3, 'e'), 1, 2),
      random: seededRandom(1),
      applied: 9,
    });
    assert.equal(beyond.status().commit, 2, 'an applied index beyond the log is not trusted as a commit index');
  });
});

describe('pipelined Readies (maxReadiesInFlight)', () => {
  test('with 2 in flight the next Ready carries only what the first did not; the leader counts its copy once advanced', () => {
    const st = storageWith(['a'], [], 1, 0);
    const n = new RaftNode({ id: 'a', group: G, storage: st, random: seededRandom(1), maxReadiesInFlight: 2 });
    n.campaign();
    while (n.hasReady()) {
      const rd = n.ready();
      st.persist(rd);
      n.advance();
    }
    assert.equal(n.status().role, 'leader');
    const base = n.status().lastIndex;
    n.propose(text('x'));
    const r1 = n.ready();
    assert.deepEqual(
      r1.entries.map((e) => str(e.data)),
      ['x'],
    );
    n.propose(text('y'));
    assert.equal(n.hasReady(), true, 'a second Ready while the first is in flight');
    const r2 = n.ready();
    assert.deepEqual(
      r2.entries.map((e) => str(e.data)),
      ['y'],
      'x is not handed out twice',
    );
    assert.equal(n.hasReady(), false, 'two in flight: no third');
    n.propose(text('z'));
    assert.equal(n.hasReady(), false);
    assert.throws(() => n.ready(), /in flight/);
    assert.equal(n.status().commit, base, 'nothing committed before the leader persisted its copy');
    st.persist(r1);
    n.advance();
    assert.equal(n.status().commit, base + 1, 'x commits once its Ready is advanced (single voter)');
    st.persist(r2);
    n.advance();
    assert.equal(n.status().commit, base + 2);
    const r3 = n.ready();
    assert.deepEqual(
      r3.entries.map((e) => str(e.data)),
      ['z'],
    );
    assert.deepEqual(
      r3.committed.map((e) => str(e.data)),
      ['x', 'y'],
      'committed entries handed out once, in order',
    );
  });

  test('by default (1) no Ready is made while one is in flight', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 2 });
    c.elect('a');
    c.propose('a', 'x');
    const n = c.node('a');
    n.ready();
    c.propose('a', 'y');
    assert.equal(n.hasReady(), false);
    assert.throws(() => n.ready(), /in flight/);
    n.advance();
    assert.equal(n.hasReady(), true);
  });

  test('a follower: entries handed out and then replaced by a new leader before they were persisted are handed out again', () => {
    const st = storageWith(['a', 'b', 'c'], run(1, 2, 'e'), 1, 2);
    const n = new RaftNode({ id: 'b', group: G, storage: st, random: seededRandom(1), maxReadiesInFlight: 2 });
    const ent = (index: number, term: number, d: string): Entry => ({ index, term, type: 'normal', data: text(d) });
    n.step({
      type: 'app',
      group: G,
      from: 'a',
      to: 'b',
      term: 2,
      index: 2,
      logTerm: 1,
      commit: 2,
      entries: [ent(3, 2, 'old3'), ent(4, 2, 'old4')],
    });
    const r1 = n.ready();
    assert.deepEqual(
      r1.entries.map((e) => str(e.data)),
      ['old3', 'old4'],
    );
    // A leader of term 3 overwrites index 4 before r1 is durable.
    n.step({
      type: 'app',
      group: G,
      from: 'c',
      to: 'b',
      term: 3,
      index: 3,
      logTerm: 2,
      commit: 2,
      entries: [ent(4, 3, 'new4')],
    });
    const r2 = n.ready();
    assert.deepEqual(
      r2.entries.map((e) => `${e.index}:${str(e.data)}`),
      ['4:new4'],
      'the replacement is handed out',
    );
    st.append(r1.entries);
    n.advance();
    st.append(r2.entries);
    n.advance();
    assert.deepEqual(
      st.entries(3, 5, Infinity).map((e) => str(e.data)),
      ['old3', 'new4'],
    );
    assert.equal(n.status().lastIndex, 4);
    assert.equal(n.hasReady(), false, 'nothing left unstable or unhanded');
  });
});

describe('coasting heartbeats (coastHeartbeats)', () => {
  const hbsTo = (ms: readonly Message[], to: NodeId) =>
    ms.filter((m) => m.type === 'hb' && m.to === to && !m.quiesce).length;

  test('a follower that got and answered an append since the last heartbeat is not sent the next one; an idle one is', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 9, coastHeartbeats: true });
    c.elect('a');
    c.tickAll(1);
    c.propose('a', 'w');
    c.stabilize();
    let mark = c.sent.length;
    c.tick('a');
    c.process('a');
    assert.equal(hbsTo(c.sent.slice(mark), 'b'), 0, 'b got and acked an append: no heartbeat');
    c.stabilize();
    mark = c.sent.length;
    c.tick('a');
    c.process('a');
    assert.equal(hbsTo(c.sent.slice(mark), 'b'), 1, 'nothing since: the heartbeat goes out');
  });

  test('while an append is in flight the follower is not heartbeaten, for fewer than 3 ticks; then heartbeats resume and nobody campaigns', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 10, coastHeartbeats: true, electionTicks: 10 });
    c.elect('a');
    c.tickAll(1);
    c.dropIf = (m) => m.type === 'appResp' && m.from === 'b'; // b's acks are slow (here: lost)
    c.propose('a', 'w');
    c.stabilize();
    const perTick: number[] = [];
    for (let i = 0; i < 6; i++) {
      const mark = c.sent.length;
      c.tickAll(1);
      perTick.push(hbsTo(c.sent.slice(mark), 'b'));
    }
    assert.deepEqual(perTick.slice(0, 2), [0, 0], `no heartbeat while the append is recent: ${perTick}`);
    assert.ok(
      perTick.slice(2).some((n) => n > 0),
      `heartbeats resume once it is not: ${perTick}`,
    );
    assert.equal(c.leader(), 'a');
    assert.equal(c.node('b').status().term, c.node('a').status().term, 'b never campaigned');
  });
});
