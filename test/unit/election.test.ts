// Leader election: randomized timeouts and the two clocks, PreVote, CheckQuorum, leader
// stickiness, the vote rules of the Raft paper (figure 2, §5.2, §5.4.1), term handling, learners,
// single-node groups and election safety under message loss.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  MemoryStorage,
  RaftNode,
  resolveConfig,
  seededRandom,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type Ready,
  type Role,
} from '../../src/raft/index.js';
import { TestCluster, text, chaosTick } from '../helpers/cluster.js';

const G = 1;

/** assert.ok with a default message: without one, node:assert re-parses the (transpiled) source
 *  to describe the failing expression, which can take minutes. */
function ok(value: unknown, message = 'expected a truthy value'): asserts value {
  assert.ok(value, message);
}

// ---------------------------------------------------------------------------------------------
// Local helpers: a single RaftNode driven by hand, with a tiny host that persists into its
// MemoryStorage (MemoryStorage.persist) and advances.

interface NodeOpts extends Partial<Omit<RaftConfig, 'id' | 'group' | 'storage' | 'random'>> {
  id?: NodeId;
  voters?: NodeId[];
  learners?: NodeId[];
  /** terms[i] is the term of the entry at index i+1 (already durable). */
  terms?: number[];
  term?: number;
  vote?: NodeId;
  commit?: number;
  seed?: number;
}

function mkStorage(
  voters: NodeId[],
  learners: NodeId[],
  terms: number[],
  term: number,
  vote: NodeId,
  commit: number,
): MemoryStorage {
  const st = new MemoryStorage({ voters: [...voters].sort(), learners: [...learners].sort() });
  const ents: Entry[] = terms.map((t, i) => ({ index: i + 1, term: t, type: 'normal', data: text(`e${i + 1}`) }));
  st.append(ents);
  st.setHardState({ term, vote, commit });
  return st;
}

function mkNode(o: NodeOpts = {}): { n: RaftNode; st: MemoryStorage } {
  const {
    id = 'a',
    voters = ['a', 'b', 'c'],
    learners = [],
    terms = [],
    term = 0,
    vote = '',
    commit = 0,
    seed = 1,
    ...cfg
  } = o;
  const st = mkStorage(voters, learners, terms, term, vote, commit);
  const n = new RaftNode({
    electionTicks: 10,
    heartbeatTicks: 1,
    ...cfg,
    id,
    group: G,
    storage: st,
    random: seededRandom(seed),
  });
  return { n, st };
}

/** Persist and advance every pending Ready; returns them. */
function drain(n: RaftNode, st: MemoryStorage): Ready[] {
  const out: Ready[] = [];
  while (n.hasReady()) {
    const rd = n.ready();
    st.persist(rd);
    out.push(rd);
    n.advance();
  }
  return out;
}

const allMsgs = (rds: Ready[]): Message[] => rds.flatMap((r) => [...r.messages, ...r.messagesAfterPersist]);

const voteReq = (
  from: NodeId,
  to: NodeId,
  term: number,
  index: number,
  logTerm: number,
  type: 'vote' | 'preVote' = 'vote',
): Message => ({ type, group: G, from, to, term, index, logTerm, transfer: false });
const voteResp = (
  from: NodeId,
  to: NodeId,
  term: number,
  reject: boolean,
  type: 'voteResp' | 'preVoteResp' = 'voteResp',
): Message => ({ type, group: G, from, to, term, reject });
const app = (
  from: NodeId,
  to: NodeId,
  term: number,
  index: number,
  logTerm: number,
  entries: Entry[] = [],
  commit = 0,
): Message => ({ type: 'app', group: G, from, to, term, index, logTerm, entries, commit });
const hb = (from: NodeId, to: NodeId, term: number, commit = 0): Message => ({
  type: 'hb',
  group: G,
  from,
  to,
  term,
  commit,
  ctx: '',
  seq: 0,
  quiesce: false,
});
const appResp = (from: NodeId, to: NodeId, term: number, index: number, reject = false): Message => ({
  type: 'appResp',
  group: G,
  from,
  to,
  term,
  index,
  reject,
  hintIndex: 0,
  hintTerm: 0,
});

const role = (n: RaftNode): Role => n.status().role;

/** Tick until the node leaves the follower role; returns the number of ticks (or Infinity). */
function ticksUntilCampaign(n: RaftNode, limit: number): number {
  for (let k = 1; k <= limit; k++) {
    n.tick();
    if (role(n) !== 'follower') return k;
  }
  return Infinity;
}

/** Ticks (1-based, from now) at which the node sent a new round of (pre)vote requests. */
function campaignTicks(n: RaftNode, st: MemoryStorage, ticks: number): number[] {
  const at: number[] = [];
  for (let k = 1; k <= ticks; k++) {
    n.tick();
    const ms = allMsgs(drain(n, st));
    if (ms.some((m) => m.type === 'preVote' || m.type === 'vote')) at.push(k);
  }
  return at;
}

const diffs = (xs: number[]): number[] => xs.slice(1).map((x, i) => x - xs[i]);

/** Record every (term, leader) observed after any input to any node of the cluster, even leaders
 *  that step down again before their Ready is processed. */
function watchRoles(c: TestCluster): {
  leaders: Map<number, Set<NodeId>>;
  candidates: Map<number, Set<NodeId>>;
  rewrap: () => void;
} {
  const leaders = new Map<number, Set<NodeId>>();
  const candidates = new Map<number, Set<NodeId>>();
  const wrapped = new WeakSet<RaftNode>();
  const look = (n: RaftNode) => {
    const s = n.status();
    const target = s.role === 'leader' ? leaders : s.role === 'candidate' ? candidates : null;
    if (!target) return;
    if (!target.has(s.term)) target.set(s.term, new Set());
    target.get(s.term)!.add(n.id);
  };
  const rewrap = () => {
    for (const n of c.nodes.values()) {
      if (wrapped.has(n)) continue;
      wrapped.add(n);
      const step = n.step.bind(n);
      const tick = n.tick.bind(n);
      const campaign = n.campaign.bind(n);
      n.step = (m) => {
        const r = step(m);
        look(n);
        return r;
      };
      n.tick = () => {
        tick();
        look(n);
      };
      n.campaign = () => {
        campaign();
        look(n);
      };
    }
  };
  rewrap();
  return { leaders, candidates, rewrap };
}

// ---------------------------------------------------------------------------------------------

describe('randomized election timeout', () => {
  for (const T of [5, 10, 17]) {
    test(`a follower campaigns after a number of ticks in [T, 2T) (T=${T}), over many seeds`, () => {
      const seen = new Set<number>();
      for (let seed = 1; seed <= 300; seed++) {
        const { n } = mkNode({ electionTicks: T, seed });
        const k = ticksUntilCampaign(n, 3 * T);
        ok(k >= T, `seed ${seed}: campaigned after ${k} ticks, earlier than T=${T}`);
        ok(k < 2 * T, `seed ${seed}: campaigned after ${k} ticks, not before 2T=${2 * T}`);
        assert.equal(role(n), 'preCandidate', 'PreVote is on by default');
        seen.add(k);
      }
      // Randomized: with 300 seeds every value in [T, 2T) shows up.
      assert.equal(seen.size, T, `timeouts seen: ${[...seen].sort((a, b) => a - b)}`);
    });
  }

  test('the clock restarts on every message from the leader: campaign [T, 2T) after the last heartbeat', () => {
    const T = 10;
    for (let seed = 1; seed <= 100; seed++) {
      const { n, st } = mkNode({ electionTicks: T, seed, term: 1 });
      // Hear from leader b a few times at arbitrary moments, each within T ticks of the last.
      const rnd = seededRandom(seed + 1000);
      for (let j = 0; j < 5; j++) {
        const gap = Math.floor(rnd() * (T - 1));
        for (let i = 0; i < gap; i++) n.tick();
        assert.equal(role(n), 'follower');
        n.step(hb('b', 'a', 1));
        drain(n, st);
      }
      const k = ticksUntilCampaign(n, 3 * T);
      ok(k >= T && k < 2 * T, `seed ${seed}: campaign ${k} ticks after the last heartbeat`);
    }
  });
});

describe('two clocks: election round vs failure detection', () => {
  const T = 20;
  const R = 4;

  for (const preVote of [true, false]) {
    test(`with electionRoundTicks R < T a ${preVote ? 'pre-candidate' : 'candidate'} retries after [R, 2R) but detection waits [T, 2T)`, () => {
      const roundsSeen = new Set<number>();
      for (let seed = 1; seed <= 100; seed++) {
        const { n, st } = mkNode({ electionTicks: T, electionRoundTicks: R, preVote, seed, term: 3 });
        const at = campaignTicks(n, st, 2 * T + 20 * R);
        ok(at.length >= 5, `seed ${seed}: only ${at.length} rounds`);
        ok(
          at[0] >= T && at[0] < 2 * T,
          `seed ${seed}: failure detection fired after ${at[0]} ticks, want [${T}, ${2 * T})`,
        );
        for (const d of diffs(at)) {
          ok(d >= R && d < 2 * R, `seed ${seed}: retried after ${d} ticks, want [${R}, ${2 * R}) (rounds at ${at})`);
          roundsSeen.add(d);
        }
        if (preVote) {
          assert.equal(n.status().term, 3, 'pre-vote rounds never change the term');
          assert.equal(role(n), 'preCandidate');
        } else {
          assert.equal(n.status().term, 3 + at.length, 'each candidate round increments the term');
          assert.equal(role(n), 'candidate');
        }
      }
      assert.equal(roundsSeen.size, R, `round timeouts seen: ${[...roundsSeen]}`);
    });
  }

  test('after hearing from a leader again, a former (pre)candidate waits [T, 2T), not [R, 2R)', () => {
    for (let seed = 1; seed <= 100; seed++) {
      const { n, st } = mkNode({ electionTicks: T, electionRoundTicks: R, seed, term: 3 });
      const at = campaignTicks(n, st, 2 * T + 3 * R);
      ok(at.length >= 2);
      assert.equal(role(n), 'preCandidate');
      n.step(hb('b', 'a', 3));
      drain(n, st);
      assert.equal(role(n), 'follower');
      assert.equal(n.status().leader, 'b');
      const k = ticksUntilCampaign(n, 3 * T);
      ok(k >= T && k < 2 * T, `seed ${seed}: re-detected failure after ${k} ticks, want [${T}, ${2 * T})`);
    }
  });

  test('by default R = T: both the first campaign and the retries fall in [T, 2T)', () => {
    const T2 = 8;
    const cfg = resolveConfig({
      id: 'a',
      group: G,
      storage: new MemoryStorage(),
      random: seededRandom(1),
      electionTicks: T2,
    });
    assert.equal(cfg.electionRoundTicks, T2);
    assert.equal(
      resolveConfig({ id: 'a', group: G, storage: new MemoryStorage(), random: seededRandom(1) }).electionRoundTicks,
      10,
    );
    const retries = new Set<number>();
    for (const preVote of [true, false]) {
      for (let seed = 1; seed <= 60; seed++) {
        const { n, st } = mkNode({ electionTicks: T2, preVote, seed, term: 1 });
        const at = campaignTicks(n, st, 12 * T2);
        ok(at.length >= 5);
        ok(at[0] >= T2 && at[0] < 2 * T2);
        for (const d of diffs(at)) {
          ok(d >= T2 && d < 2 * T2, `seed ${seed}: retry after ${d}, want [${T2}, ${2 * T2})`);
          retries.add(d);
        }
      }
    }
    ok(retries.size > T2 / 2, 'retry timeouts are randomized');
  });
});

describe('PreVote', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`on by default: an isolated node never raises its term and does not disrupt the leader on rejoin (seed ${seed})`, () => {
      const c = new TestCluster(['a', 'b', 'c'], { seed });
      c.elect('a');
      const term = c.node('a').status().term;
      assert.equal(c.leader(), 'a');
      c.isolate('c');
      const sentBefore = c.sent.length;
      c.tickAll(100);
      const fromC = c.sent.slice(sentBefore).filter((m) => m.from === 'c');
      ok(fromC.filter((m) => m.type === 'preVote').length >= 4, 'the isolated node did time out repeatedly');
      assert.equal(fromC.filter((m) => m.type === 'vote').length, 0, 'no real vote without winning the pre-vote');
      assert.equal(c.node('c').status().term, term, 'isolated node kept its term');
      ok(['preCandidate', 'follower'].includes(role(c.node('c'))));
      assert.equal(c.leader(), 'a');
      // Work continues meanwhile, so c is also behind.
      assert.equal(c.propose('a', 'during').ok, true);
      c.stabilize();

      const aSoft = c.softStates.get('a')!.length;
      const bSoft = c.softStates.get('b')!.length;
      c.heal();
      c.tickAll(50);
      assert.equal(c.leader(), 'a', 'leader unchanged after rejoin');
      for (const id of ['a', 'b', 'c']) assert.equal(c.node(id).status().term, term, `${id} term unchanged`);
      assert.equal(c.softStates.get('a')!.length, aSoft, 'the leader never changed role');
      assert.equal(c.softStates.get('b')!.length, bSoft, 'the follower never changed role');
      assert.equal(c.leaderOf('c'), 'a');
      assert.equal(role(c.node('c')), 'follower');
      assert.deepEqual(c.appliedData('c'), ['during'], 'the rejoined node caught up');
    });
  }

  for (const seed of [1, 2, 3]) {
    test(`contrast, preVote:false: an isolated node's term grows and its rejoin forces a new election (seed ${seed})`, () => {
      const c = new TestCluster(['a', 'b', 'c'], { seed, preVote: false });
      c.elect('a');
      const term = c.node('a').status().term;
      c.isolate('c');
      c.tickAll(100);
      const cTerm = c.node('c').status().term;
      ok(cTerm >= term + 3, `isolated node's term grew (${term} -> ${cTerm})`);
      assert.equal(role(c.node('c')), 'candidate');
      assert.equal(c.leader(), 'a', 'the majority kept its leader meanwhile');
      assert.equal(c.node('a').status().term, term);

      const aSoft = c.softStates.get('a')!.length;
      c.heal();
      c.tickAll(60);
      const after = c.softStates.get('a')!.slice(aSoft);
      ok(
        after.some((s) => s.role === 'follower' && s.term >= cTerm),
        'the old leader was deposed by the higher term',
      );
      const l = c.leader();
      ok(l, 'a new leader was elected');
      ok(c.node(l!).status().term >= cTerm, 'the new election ran at a term >= the disruptive one');
      for (const id of ['a', 'b', 'c']) assert.equal(c.node(id).status().term, c.node(l!).status().term);
    });
  }
});

describe('CheckQuorum', () => {
  const T = 10;

  test('a leader partitioned from the majority steps down within one to two election timeouts', () => {
    const c = new TestCluster(['a', 'b', 'c', 'd', 'e'], { seed: 7 });
    c.elect('a');
    const term = c.node('a').status().term;
    // Partition {a, b} | {c, d, e}: a keeps b, a minority of 2.
    for (const x of ['c', 'd', 'e']) {
      c.cutLink('a', x);
      c.cutLink('b', x);
    }
    let steppedDownAt = Infinity;
    for (let k = 1; k <= 2 * T; k++) {
      c.tick('a');
      c.stabilize();
      if (role(c.node('a')) !== 'leader') {
        steppedDownAt = k;
        break;
      }
    }
    ok(steppedDownAt >= T, `stepped down after ${steppedDownAt} ticks: too early (needs a full window)`);
    ok(steppedDownAt <= 2 * T, `still leader after ${2 * T} ticks without a quorum`);
    assert.equal(role(c.node('a')), 'follower');
    assert.equal(c.node('a').status().leader, '');
    assert.equal(c.node('a').status().term, term, 'stepping down does not change the term');
    // And a proposal is refused from then on.
    const r = c.propose('a', 'x');
    assert.equal(r.ok, false);
    // The majority side elects a new leader.
    c.tickAll(40);
    const l = c.leader();
    ok(l && ['c', 'd', 'e'].includes(l), `new leader on the majority side, got ${l}`);
  });

  test('a leader with a quorum (but not everyone) stays leader indefinitely', () => {
    const c = new TestCluster(['a', 'b', 'c', 'd', 'e'], { seed: 8 });
    c.elect('a');
    const term = c.node('a').status().term;
    c.cutLink('a', 'd');
    c.cutLink('a', 'e');
    for (let k = 0; k < 10 * T; k++) {
      c.tick('a');
      c.tick('b');
      c.tick('c');
      c.stabilize();
      assert.equal(role(c.node('a')), 'leader', `lost leadership at tick ${k}`);
    }
    assert.equal(c.node('a').status().term, term);
  });

  test('a fully connected leader stays leader and the term never moves', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 9 });
    c.elect('a');
    c.tickAll(200);
    assert.equal(c.leader(), 'a');
    for (const id of ['a', 'b', 'c']) assert.equal(c.node(id).status().term, 1);
  });

  test('contrast, checkQuorum:false: an isolated leader never steps down on its own', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 7, checkQuorum: false });
    c.elect('a');
    c.isolate('a');
    for (let k = 0; k < 10 * T; k++) {
      c.tick('a');
      c.stabilize();
    }
    assert.equal(role(c.node('a')), 'leader');
  });
});

describe('leader stickiness', () => {
  for (const type of ['vote', 'preVote'] as const) {
    test(`a follower that heard from the leader within electionTicks ignores a ${type} request at a higher term`, () => {
      const c = new TestCluster(['a', 'b', 'c'], { seed: 11 });
      c.elect('a');
      c.tickAll(3); // heartbeats flow; b heard from a within the last tick
      const b = c.node('b');
      const before = b.status();
      assert.equal(before.leader, 'a');
      b.step(voteReq('c', 'b', before.term + 1, before.lastIndex, before.term, type));
      c.process('b');
      const replies = c.queue.filter((m) => m.from === 'b' && (m.type === 'voteResp' || m.type === 'preVoteResp'));
      assert.equal(replies.length, 0, `b answered: ${JSON.stringify(replies)}`);
      const after = b.status();
      assert.equal(after.term, before.term, 'no term change');
      assert.equal(after.vote, before.vote, 'no vote change');
      assert.equal(after.leader, 'a');
      assert.equal(after.role, 'follower');

      // Contrast: once b has not heard from a leader for electionTicks, it grants.
      c.isolate('a');
      c.tick('b', 10);
      c.process('b');
      c.queue = [];
      const s = b.status();
      b.step(voteReq('c', 'b', s.term + 1, s.lastIndex, s.term, type));
      c.process('b');
      const grant = c.queue.find(
        (m) => m.from === 'b' && m.to === 'c' && m.type === (type === 'vote' ? 'voteResp' : 'preVoteResp'),
      );
      ok(
        grant && grant.type !== 'app' && 'reject' in grant && grant.reject === false,
        'granted after the lease expired',
      );
      if (type === 'vote') assert.equal(b.status().vote, 'c');
    });
  }

  test('without CheckQuorum there is no stickiness: the follower grants at once', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 11, checkQuorum: false });
    c.elect('a');
    c.tickAll(3);
    const b = c.node('b');
    const s = b.status();
    b.step(voteReq('c', 'b', s.term + 1, s.lastIndex, s.term));
    c.process('b');
    ok(c.queue.some((m) => m.from === 'b' && m.type === 'voteResp' && !m.reject));
    assert.equal(b.status().term, s.term + 1);
  });

  test('the leader itself ignores a higher-term (pre)vote while it holds its lease', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 12 });
    c.elect('a');
    c.tickAll(2);
    const a = c.node('a');
    const s = a.status();
    for (const type of ['preVote', 'vote'] as const) {
      a.step(voteReq('c', 'a', s.term + 1, s.lastIndex, s.term, type));
    }
    c.process('a');
    assert.equal(role(a), 'leader');
    assert.equal(a.status().term, s.term);
    ok(!c.queue.some((m) => m.from === 'a' && (m.type === 'voteResp' || m.type === 'preVoteResp')));
  });
});

describe('vote rules (figure 2, §5.4.1)', () => {
  // Voter log: index 1 term 1, index 2 term 1, index 3 term 2 (last = (3, 2)). Voter term 2.
  const cases: { name: string; index: number; logTerm: number; grant: boolean }[] = [
    { name: 'same last term, same length', index: 3, logTerm: 2, grant: true },
    { name: 'same last term, longer', index: 7, logTerm: 2, grant: true },
    { name: 'same last term, shorter', index: 2, logTerm: 2, grant: false },
    { name: 'higher last term, shorter', index: 1, logTerm: 3, grant: true },
    { name: 'higher last term, longer', index: 9, logTerm: 3, grant: true },
    { name: 'lower last term, much longer', index: 50, logTerm: 1, grant: false },
    { name: 'lower last term, same length', index: 3, logTerm: 1, grant: false },
    { name: 'empty log', index: 0, logTerm: 0, grant: false },
  ];
  for (const type of ['vote', 'preVote'] as const) {
    for (const tc of cases) {
      test(`${type}: ${tc.name} (${tc.index}, ${tc.logTerm}) -> ${tc.grant ? 'grant' : 'reject'}`, () => {
        const { n, st } = mkNode({ terms: [1, 1, 2], term: 2, commit: 1 });
        n.step(voteReq('b', 'a', 3, tc.index, tc.logTerm, type));
        const rds = drain(n, st);
        const resps = allMsgs(rds).filter(
          (m) => m.type === (type === 'vote' ? 'voteResp' : 'preVoteResp') && m.to === 'b',
        );
        assert.equal(resps.length, 1);
        const r = resps[0];
        ok(r.type === 'voteResp' || r.type === 'preVoteResp');
        assert.equal(r.reject, !tc.grant);
        if (type === 'vote') {
          assert.equal(n.status().term, 3, 'a vote request at a higher term always moves the term');
          assert.equal(n.status().vote, tc.grant ? 'b' : '');
          assert.deepEqual(st.hardState, { term: 3, vote: tc.grant ? 'b' : '', commit: 1 });
          if (tc.grant) assert.equal(r.term, 3);
        } else {
          assert.equal(n.status().term, 2, 'a pre-vote changes nothing locally');
          assert.equal(n.status().vote, '');
          assert.equal(st.hardState.term, 2);
          if (tc.grant) assert.equal(r.term, 3, 'a pre-vote grant carries the proposed term');
        }
      });
    }
  }

  test('one vote per term: a second candidate of the same term is refused, the first may ask again', () => {
    const { n, st } = mkNode({ voters: ['a', 'b', 'c', 'd', 'e'], terms: [1], term: 1 });
    const ask = (from: NodeId, term: number): boolean | null => {
      n.step(voteReq(from, 'a', term, 1, 1));
      const r = allMsgs(drain(n, st)).find((m) => m.type === 'voteResp' && m.to === from);
      return r && r.type === 'voteResp' ? !r.reject : null;
    };
    assert.equal(ask('b', 2), true);
    assert.equal(ask('c', 2), false, 'already voted for b in term 2');
    assert.equal(ask('d', 2), false);
    assert.equal(ask('b', 2), true, 'a repeated request from the same candidate is granted again');
    assert.equal(n.status().vote, 'b');
    assert.equal(ask('c', 3), true, 'a new term allows a new vote');
    assert.equal(ask('b', 3), false);
    assert.deepEqual(st.hardState, { term: 3, vote: 'c', commit: 0 });
  });

  test('a node that refused a candidate on log grounds can still vote for another one in that term', () => {
    const { n, st } = mkNode({ terms: [1, 2], term: 2 });
    n.step(voteReq('b', 'a', 3, 1, 1));
    n.step(voteReq('c', 'a', 3, 2, 2));
    const ms = allMsgs(drain(n, st));
    const rb = ms.find((m) => m.to === 'b');
    const rc = ms.find((m) => m.to === 'c');
    ok(rb?.type === 'voteResp' && rb.reject === true);
    ok(rc?.type === 'voteResp' && rc.reject === false);
    assert.equal(st.hardState.vote, 'c');
  });

  test('the vote is persisted before the response leaves: hardState.vote in the same Ready, response in messagesAfterPersist', () => {
    const { n } = mkNode({ terms: [1], term: 1 });
    n.step(voteReq('b', 'a', 2, 1, 1));
    const rd = n.ready();
    assert.deepEqual(rd.hardState, { term: 2, vote: 'b', commit: 0 });
    assert.equal(rd.messages.length, 0, `sent before persistence: ${JSON.stringify(rd.messages)}`);
    const resp = rd.messagesAfterPersist.find((m) => m.type === 'voteResp');
    ok(resp && resp.type === 'voteResp' && !resp.reject && resp.to === 'b' && resp.term === 2);
    n.advance();
    assert.equal(n.hasReady(), false);
  });

  test('a new term must be durable before any message carrying it leaves (forwarded read after a term change)', () => {
    const { n, st } = mkNode({ terms: [1], term: 1, commit: 1 });
    // Leader b of term 2 appears; before the host drains the Ready the application asks for a read,
    // which the follower forwards to b stamped with term 2.
    n.step(app('b', 'a', 2, 1, 1, [], 1));
    assert.deepEqual(n.readIndex('r1'), { ok: true });
    const rd = n.ready();
    assert.equal(rd.hardState?.term, 2);
    assert.deepEqual(
      rd.messages.filter((m) => m.term > st.hardState.term),
      [],
      'a term-2 message may not leave before term 2 is persisted',
    );
    ok(
      rd.messagesAfterPersist.some((m) => m.type === 'readIndex' && m.to === 'b'),
      'the read is forwarded after persisting',
    );
    n.advance();
  });

  test('a candidate asks for votes before its term is durable, but leads only once its own vote is', () => {
    const { n, st } = mkNode({ terms: [1], term: 1, preVote: false });
    n.campaign();
    const rd = n.ready();
    assert.deepEqual(rd.hardState && { term: rd.hardState.term, vote: rd.hardState.vote }, { term: 2, vote: 'a' });
    assert.deepEqual(
      rd.messages.map((m) => [m.type, m.to, m.term]),
      [
        ['vote', 'b', 2],
        ['vote', 'c', 2],
      ],
      'vote requests leave with the write',
    );
    // b's grant arrives before the host persisted the self-vote: with b alone a is one vote short.
    n.step(voteResp('b', 'a', 2, false));
    assert.equal(role(n), 'candidate', 'a self-vote that is not durable does not count');
    assert.equal(n.status().leader, '');
    assert.equal(st.hardState.term, 1, 'nothing persisted yet');
  });

  test('a candidate whose self-vote becomes durable wins with the grants it already has', () => {
    const { n, st } = mkNode({ terms: [1], term: 1, preVote: false });
    n.campaign();
    const rd = n.ready();
    n.step(voteResp('b', 'a', 2, false));
    st.persist(rd);
    n.advance();
    assert.equal(role(n), 'leader');
    const rd2 = n.ready();
    ok(
      rd2.messages.some((m) => m.type === 'app' && m.term === 2),
      'appends leave once it leads',
    );
  });

  test('a vote survives a crash: after restart from storage the node still refuses other candidates of that term', () => {
    const { n, st } = mkNode({ terms: [1], term: 1 });
    n.step(voteReq('b', 'a', 2, 1, 1));
    drain(n, st);
    const n2 = new RaftNode({ id: 'a', group: G, storage: st.clone(), random: seededRandom(5) });
    assert.equal(n2.status().term, 2);
    assert.equal(n2.status().vote, 'b');
    n2.step(voteReq('c', 'a', 2, 1, 1));
    n2.step(voteReq('b', 'a', 2, 1, 1));
    const rd = n2.ready();
    const ms = [...rd.messages, ...rd.messagesAfterPersist];
    ok(ms.some((m) => m.type === 'voteResp' && m.to === 'c' && m.reject));
    ok(ms.some((m) => m.type === 'voteResp' && m.to === 'b' && !m.reject));
  });
});

describe('terms and roles', () => {
  /** A node made leader of {a,b,c} at `term` by hand. */
  function leaderAt(term: number): { n: RaftNode; st: MemoryStorage } {
    const x = mkNode({ terms: [1], term: term - 1, preVote: false });
    x.n.campaign();
    drain(x.n, x.st);
    x.n.step(voteResp('b', 'a', term, false));
    drain(x.n, x.st);
    assert.equal(role(x.n), 'leader');
    assert.equal(x.n.status().term, term);
    return x;
  }

  test('a candidate steps down when it sees an append from a leader of the same term', () => {
    const { n, st } = mkNode({ terms: [1], term: 4, preVote: false });
    n.campaign();
    drain(n, st);
    assert.equal(role(n), 'candidate');
    assert.equal(n.status().term, 5);
    n.step(app('b', 'a', 5, 1, 1, [{ index: 2, term: 5, type: 'normal', data: text('x') }], 0));
    const ms = allMsgs(drain(n, st));
    const s = n.status();
    assert.equal(s.role, 'follower');
    assert.equal(s.leader, 'b');
    assert.equal(s.term, 5);
    assert.equal(s.vote, 'a', 'its vote of this term is kept');
    assert.equal(s.lastIndex, 2, 'the append itself was accepted');
    ok(ms.some((m) => m.type === 'appResp' && m.to === 'b' && !m.reject && m.index === 2));
  });

  test('a candidate steps down on a heartbeat of the same term; a pre-candidate on an append of its term', () => {
    const x = mkNode({ terms: [1], term: 4, preVote: false });
    x.n.campaign();
    x.n.step(hb('c', 'a', 5));
    assert.equal(role(x.n), 'follower');
    assert.equal(x.n.status().leader, 'c');

    const y = mkNode({ terms: [1], term: 4 });
    y.n.campaign();
    assert.equal(role(y.n), 'preCandidate');
    y.n.step(app('b', 'a', 4, 1, 1, [], 1));
    assert.equal(role(y.n), 'follower');
    assert.equal(y.n.status().term, 4);
    assert.equal(y.n.status().leader, 'b');
  });

  test('any role converts to follower on seeing a higher term', () => {
    type Setup = () => { n: RaftNode; st: MemoryStorage };
    const setups: Record<string, Setup> = {
      follower: () => mkNode({ terms: [1], term: 3 }),
      preCandidate: () => {
        const x = mkNode({ terms: [1], term: 3 });
        x.n.campaign();
        drain(x.n, x.st);
        return x;
      },
      candidate: () => {
        const x = mkNode({ terms: [1], term: 2, preVote: false });
        x.n.campaign();
        drain(x.n, x.st);
        return x;
      },
      leader: () => leaderAt(3),
    };
    const msgs: Record<string, (t: number) => Message> = {
      app: (t) => app('c', 'a', t, 1, 1, [], 0),
      hb: (t) => hb('c', 'a', t),
      appResp: (t) => appResp('c', 'a', t, 1),
      voteRespReject: (t) => voteResp('c', 'a', t, true),
      preVoteRespReject: (t) => voteResp('c', 'a', t, true, 'preVoteResp'),
    };
    for (const [r, setup] of Object.entries(setups)) {
      for (const [kind, mk] of Object.entries(msgs)) {
        const { n, st } = setup();
        const t0 = n.status().term;
        assert.equal(role(n), r);
        n.step(mk(t0 + 2));
        drain(n, st);
        const s = n.status();
        assert.equal(s.role, 'follower', `${r} + ${kind}`);
        assert.equal(s.term, t0 + 2, `${r} + ${kind}: term`);
        assert.equal(s.vote, '', `${r} + ${kind}: vote reset`);
        assert.equal(s.leader, kind === 'app' || kind === 'hb' ? 'c' : '', `${r} + ${kind}: leader`);
        assert.equal(st.hardState.term, t0 + 2, `${r} + ${kind}: new term persisted`);
      }
    }
  });

  test('without CheckQuorum a leader steps down on a higher-term vote request (and votes on its merits)', () => {
    const x = mkNode({ terms: [1], term: 2, preVote: false, checkQuorum: false });
    x.n.campaign();
    drain(x.n, x.st);
    x.n.step(voteResp('b', 'a', 3, false));
    drain(x.n, x.st);
    assert.equal(role(x.n), 'leader');
    const last = x.n.status().lastIndex;
    x.n.step(voteReq('c', 'a', 5, last, 3));
    const ms = allMsgs(drain(x.n, x.st));
    assert.equal(role(x.n), 'follower');
    assert.equal(x.n.status().term, 5);
    ok(ms.some((m) => m.type === 'voteResp' && m.to === 'c' && !m.reject));
  });

  test('stale-term messages are ignored: no log change, no vote, and the stale leader is told the term', () => {
    const { n, st } = mkNode({ terms: [1, 1], term: 5, commit: 1 });
    n.step(hb('b', 'a', 5, 1));
    drain(n, st);
    assert.equal(n.status().leader, 'b');
    // Old leader c of term 3 appends a conflicting entry.
    n.step(app('c', 'a', 3, 1, 1, [{ index: 2, term: 3, type: 'normal', data: text('stale') }], 2));
    n.step(hb('c', 'a', 3, 2));
    n.step(voteReq('c', 'a', 4, 100, 4));
    n.step(voteReq('c', 'a', 4, 100, 4, 'preVote'));
    const rds = drain(n, st);
    const s = n.status();
    assert.equal(s.term, 5);
    assert.equal(s.leader, 'b');
    assert.equal(s.commit, 1);
    assert.equal(s.vote, '');
    assert.deepEqual(
      rds.flatMap((r) => r.entries),
      [],
    );
    assert.equal(st.term(2), 1, 'entry 2 untouched');
    const ms = allMsgs(rds);
    ok(
      ms.every((m) => m.to === 'c' && m.term === 5),
      JSON.stringify(ms),
    );
    ok(
      !ms.some((m) => m.type === 'voteResp' || (m.type === 'preVoteResp' && !m.reject)),
      'no grant to a stale candidate',
    );
    ok(
      ms.some((m) => m.type === 'appResp'),
      'stale leader told the newer term',
    );
  });

  test('a deposed leader cut off by a partition steps down when it hears the new term; its proposals never commit', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 21 });
    c.elect('a');
    assert.equal(c.propose('a', 'one').ok, true);
    c.stabilize();
    c.isolate('a');
    // a still believes it leads (it is not ticked, so CheckQuorum cannot fire) and accepts work.
    assert.equal(c.propose('a', 'stale').ok, true);
    c.stabilize();
    // b and c elect a new leader.
    for (let i = 0; i < 60 && !['b', 'c'].some((x) => role(c.node(x)) === 'leader'); i++) {
      c.tick('b');
      c.tick('c');
      c.stabilize();
    }
    const nl = ['b', 'c'].find((x) => role(c.node(x)) === 'leader');
    ok(nl, 'majority elected a new leader');
    const newTerm = c.node(nl!).status().term;
    ok(newTerm > 1);
    assert.equal(role(c.node('a')), 'leader', 'a is a stale leader');
    assert.equal(c.propose(nl!, 'fresh').ok, true);
    c.stabilize();

    c.heal();
    c.tick('a'); // a heartbeats at its old term
    c.stabilize();
    assert.equal(role(c.node('a')), 'follower', 'stale leader stepped down');
    assert.equal(c.node('a').status().term, newTerm);
    assert.equal(c.leader(), nl);
    c.tickAll(5);
    for (const id of ['a', 'b', 'c']) assert.deepEqual(c.appliedData(id), ['one', 'fresh'], `${id} applied`);
  });
});

describe('learners', () => {
  test('a learner never campaigns, connected or isolated, even when asked to', () => {
    const c = new TestCluster(['a', 'b', 'c'], { seed: 31, learners: ['l'] });
    c.elect('a');
    c.tickAll(50);
    c.isolate('l');
    c.tickAll(100);
    c.node('l').campaign();
    c.tickAll(5);
    c.heal();
    c.isolate('a');
    c.tickAll(100); // the leader is gone: voters elect a new one, the learner still never runs
    const fromL = c.sent.filter((m) => m.from === 'l');
    assert.equal(fromL.filter((m) => m.type === 'vote' || m.type === 'preVote').length, 0);
    ok(
      c.softStates.get('l')!.every((s) => s.role === 'follower'),
      JSON.stringify(c.softStates.get('l')),
    );
    assert.equal(role(c.node('l')), 'follower');
    ok(
      c.sent.some((m) => m.type === 'app' && m.to === 'l'),
      'the learner does replicate',
    );
  });

  test('a learner-only node driven directly: ticks and campaign() leave it a follower at the same term', () => {
    const { n, st } = mkNode({ id: 'l', voters: ['a', 'b', 'c'], learners: ['l'], terms: [1], term: 1 });
    for (let i = 0; i < 100; i++) n.tick();
    n.campaign();
    const rds = drain(n, st);
    assert.equal(role(n), 'follower');
    assert.equal(n.status().term, 1);
    assert.equal(allMsgs(rds).length, 0);
  });
});

describe('single-node group', () => {
  test('elects itself on campaign and commits its no-op only after the Ready is persisted', () => {
    const { n, st } = mkNode({ voters: ['a'] });
    n.campaign();
    assert.equal(role(n), 'candidate', 'its own vote counts once durable');
    const rd0 = n.ready();
    assert.deepEqual(rd0.hardState && { term: rd0.hardState.term, vote: rd0.hardState.vote }, { term: 1, vote: 'a' });
    st.persist(rd0);
    n.advance();
    assert.equal(role(n), 'leader');
    assert.equal(n.status().term, 1);
    const rd1 = n.ready();
    assert.deepEqual(rd1.softState, { role: 'leader', leader: 'a', term: 1 });
    assert.equal(
      rd1.hardState,
      null,
      'term and vote already durable; the no-op is not committed in the Ready that carries it',
    );
    assert.deepEqual(
      rd1.entries.map((e) => [e.index, e.term, e.data.byteLength]),
      [[1, 1, 0]],
    );
    assert.deepEqual(rd1.committed, []);
    assert.equal(n.status().commit, 0, 'not committed before persistence');
    // Ticking or asking again does not commit it either: only advance() counts the leader.
    n.tick();
    assert.equal(n.status().commit, 0);
    st.persist(rd1);
    n.advance();
    assert.equal(n.status().commit, 1, 'committed once durable');
    ok(n.hasReady());
    const rd2 = n.ready();
    assert.deepEqual(
      rd2.committed.map((e) => e.index),
      [1],
    );
    assert.equal(rd2.hardState?.commit, 1);
    n.advance();

    const p = n.propose(text('x'));
    ok(p.ok && p.index === 2);
    const rd3 = n.ready();
    assert.deepEqual(
      rd3.entries.map((e) => e.index),
      [2],
    );
    assert.deepEqual(rd3.committed, [], 'a proposal is not committed before it is persisted');
    assert.equal(n.status().commit, 1);
    st.persist(rd3);
    n.advance();
    const rd4 = n.ready();
    assert.deepEqual(
      rd4.committed.map((e) => new TextDecoder().decode(e.data)),
      ['x'],
    );
    n.advance();
  });

  test('a single-node group also elects itself by timeout', () => {
    const c = new TestCluster(['a'], { seed: 4 });
    c.tickAll(20);
    assert.equal(c.leader(), 'a');
    assert.equal(c.propose('a', 'v').ok, true);
    c.stabilize();
    assert.deepEqual(c.appliedData('a'), ['v']);
  });
});

describe('election safety under message loss', () => {
  const configs = [
    { name: 'preVote', opts: {}, chaos: false },
    { name: 'no preVote, short rounds', opts: { preVote: false, electionRoundTicks: 2 }, chaos: false },
    { name: 'no preVote, no checkQuorum', opts: { preVote: false, checkQuorum: false }, chaos: false },
    { name: 'preVote, reordering + duplicating network', opts: { electionRoundTicks: 3 }, chaos: true },
    {
      name: 'no preVote, reordering + duplicating network',
      opts: { preVote: false, electionRoundTicks: 2 },
      chaos: true,
    },
  ];
  for (const { name, opts, chaos } of configs) {
    test(`5 nodes, random drops, many seeds: at most one leader per term (${name})`, () => {
      let leaderTerms = 0;
      let splitTerms = 0;
      for (let seed = 1; seed <= 40; seed++) {
        const c = new TestCluster(['a', 'b', 'c', 'd', 'e'], { seed, ...opts });
        const w = watchRoles(c);
        const rnd = seededRandom(seed * 31 + 7);
        const dropRate = 0.1 + 0.4 * rnd();
        c.dropIf = () => rnd() < dropRate;
        for (let t = 0; t < 300; t++) {
          if (chaos) chaosTick(c, rnd);
          else c.tickAll(1);
          if (rnd() < 0.05) {
            const l = c.leader();
            if (l && rnd() < 0.5) c.propose(l, `p${t}`);
          }
        }
        c.dropIf = null;
        c.tickAll(60);
        for (const [term, ids] of w.leaders) {
          assert.equal(ids.size, 1, `seed ${seed}: term ${term} had leaders ${[...ids]}`);
        }
        for (const ids of w.candidates.values()) if (ids.size > 1) splitTerms++;
        leaderTerms += w.leaders.size;
        ok(c.leader(), `seed ${seed}: a leader after the network heals`);
        // The logs agree on everything committed.
        const l = c.leader()!;
        const commit = c.node(l).status().commit;
        const ref = c.persistedLog(l).filter(([i]) => i <= commit);
        for (const id of c.nodes.keys()) {
          const mine = c.persistedLog(id).filter(([i]) => i <= Math.min(commit, c.node(id).status().commit));
          assert.deepEqual(
            mine,
            ref.slice(0, mine.length),
            `seed ${seed}: ${id} diverges from the leader below commit`,
          );
        }
      }
      ok(leaderTerms >= 40, `elections happened (${leaderTerms})`);
      if (opts.preVote === false) ok(splitTerms > 0, 'some terms had competing candidates');
    });
  }
});

describe('restart with lease reads', () => {
  test('a restarted replica refuses votes for one election timeout of real time, even while it campaigns in shorter rounds', () => {
    // A restarted replica keeps the promise its heartbeat answers made to the old leader: no vote
    // for electionTicks. That quiet must end by the clock, not by the election clock, which every
    // campaign resets: a replica that first timed out at exactly T and then ran rounds of R < T
    // never saw it reach T and refused every vote forever; restarted voters in that state never
    // elected anyone (found by the simulator).
    const st = mkStorage(['a', 'b', 'c'], [], [1, 1], 1, 'a', 2);
    const rnd = seededRandom(3);
    let first = true;
    // The first timeout at exactly T.
    const random = () => {
      if (!first) return rnd();
      first = false;
      return 0;
    };
    const n = new RaftNode({
      id: 'a',
      group: G,
      storage: st,
      random,
      electionTicks: 6,
      electionRoundTicks: 3,
      preVote: false,
      checkQuorum: true,
      leaseReads: true,
    });
    const granted = (term: number) => {
      n.step(voteReq('c', 'a', term, 2, 1));
      return allMsgs(drain(n, st)).some((m) => m.type === 'voteResp' && m.to === 'c' && !m.reject);
    };
    for (let k = 1; k <= 5; k++) {
      n.tick();
      drain(n, st);
    }
    assert.equal(granted(50), false, 'refused within the first election timeout after the restart');
    for (let k = 6; k <= 30; k++) {
      n.tick();
      drain(n, st);
    }
    assert.equal(role(n), 'candidate', 'still campaigning in short rounds');
    assert.equal(granted(100), true, 'grants once an election timeout of real time passed');
  });
});

describe('campaign delay (drain)', () => {
  test('a node with a campaign delay lets a healthy peer win, and still campaigns when no one else can', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const c = new TestCluster(['a', 'b', 'c'], { seed });
      c.elect('a');
      c.node('b').setCampaignDelay(30);
      c.isolate('a');
      for (let i = 0; i < 40 && !['b', 'c'].some((id) => c.node(id).status().role === 'leader'); i++) {
        c.tickAll(1);
        c.stabilize();
      }
      assert.equal(c.node('c').status().role, 'leader', `seed ${seed}: the peer without delay wins`);
      assert.equal(c.node('b').status().role, 'follower', `seed ${seed}`);
    }
    // Only b could lead (c is cut off too): b campaigns after its timeout plus the delay.
    const c = new TestCluster(['a', 'b', 'c'], { seed: 9 });
    c.elect('a');
    c.node('b').setCampaignDelay(15);
    c.isolate('a');
    c.isolate('c');
    let ticks = 0;
    while (c.node('b').status().role === 'follower' && ticks < 100) {
      c.tick('b');
      c.stabilize();
      ticks++;
    }
    assert.ok(ticks > 15 + 10 - 1, `b waited its timeout plus the delay (${ticks} ticks)`);
    assert.notEqual(c.node('b').status().role, 'follower', 'then it campaigned');
    assert.throws(() => c.node('b').setCampaignDelay(-1), /non-negative integer/);
  });
});
