// Bad input never corrupts state: structural validation, routing rejections (group, addressee,
// sender), stale terms, hostile field values, and a property test that throws garbage and mutated
// real messages at a live three-node group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TestCluster, text } from '../helpers/cluster.js';
import {
  MESSAGE_TYPES,
  validateMessage,
  type Message,
  type MessageType,
  type NodeId,
  type RaftNode,
  type RaftStatus,
} from '../../src/raft/index.js';

// ---------------------------------------------------------------------------------------------
// Valid samples of every message type (a -> b, group 1, term 1).

function sample(type: MessageType): Message {
  const base = { group: 1, from: 'a', to: 'b', term: 1 };
  switch (type) {
    case 'app':
      return {
        ...base,
        type,
        index: 1,
        logTerm: 1,
        commit: 1,
        entries: [
          { index: 2, term: 1, type: 'normal', data: text('x') },
          { index: 3, term: 1, type: 'conf', data: text('addLearner:d') },
        ],
      };
    case 'appResp':
      return { ...base, type, index: 3, reject: false, hintIndex: 0, hintTerm: 0 };
    case 'hb':
      return { ...base, type, commit: 1, ctx: '', seq: 4, quiesce: false };
    case 'hbResp':
      return { ...base, type, ctx: 'r', seq: 4 };
    case 'vote':
    case 'preVote':
      return { ...base, type, index: 3, logTerm: 1, transfer: false };
    case 'voteResp':
    case 'preVoteResp':
      return { ...base, type, reject: true };
    case 'snap':
      return {
        ...base,
        type,
        snapshot: { meta: { index: 5, term: 1, conf: { voters: ['a', 'b', 'c'], learners: [] } }, data: text('img') },
      };
    case 'timeoutNow':
      return { ...base, type };
    case 'transferLeader':
      return { ...base, type, target: 'c' };
    case 'readIndex':
      return { ...base, type, ctx: 'r' };
    case 'readIndexResp':
      return { ...base, type, ctx: 'r', index: 3 };
  }
}

type Loose = Record<string, unknown>;
const loose = (m: Message): Loose => structuredClone(m) as unknown as Loose;
const withField = (m: Message, k: string, v: unknown): Loose => ({ ...loose(m), [k]: v });

const BAD_NUMBERS: unknown[] = [
  -1,
  1.5,
  2 ** 53,
  Number.MAX_VALUE,
  NaN,
  Infinity,
  -Infinity,
  '1',
  null,
  undefined,
  true,
  {},
  [1],
];

// ---------------------------------------------------------------------------------------------
// validateMessage

test('validateMessage accepts a well-formed message of every type', () => {
  for (const t of MESSAGE_TYPES) assert.equal(validateMessage(sample(t)), null, t);
  // Buffers are Uint8Arrays.
  const app = sample('app') as Extract<Message, { type: 'app' }>;
  assert.equal(validateMessage({ ...app, entries: [{ ...app.entries[0], data: Buffer.from('x') }] }), null);
});

test('validateMessage rejects non-objects and unknown types', () => {
  for (const v of [null, undefined, 0, 42, 'app', true, Symbol('x'), () => 1, [], [sample('hb')], new Uint8Array(4)]) {
    assert.equal(validateMessage(v), 'Malformed', String(typeof v));
  }
  for (const type of ['bogus', '', 'APP', 'constructor', '__proto__', 'toString', 1, null, undefined]) {
    assert.equal(validateMessage(withField(sample('hb'), 'type', type)), 'Malformed', String(type));
  }
});

test('validateMessage rejects negative, fractional, huge and non-numeric terms, groups and indexes', () => {
  for (const t of MESSAGE_TYPES) {
    for (const bad of BAD_NUMBERS) {
      assert.equal(validateMessage(withField(sample(t), 'term', bad)), 'Malformed', `${t} term=${String(bad)}`);
      assert.equal(validateMessage(withField(sample(t), 'group', bad)), 'Malformed', `${t} group=${String(bad)}`);
    }
  }
  const numeric: [MessageType, string][] = [
    ['app', 'index'],
    ['app', 'logTerm'],
    ['app', 'commit'],
    ['appResp', 'index'],
    ['appResp', 'hintIndex'],
    ['appResp', 'hintTerm'],
    ['hb', 'commit'],
    ['vote', 'index'],
    ['vote', 'logTerm'],
    ['preVote', 'index'],
    ['readIndexResp', 'index'],
  ];
  for (const [t, k] of numeric) {
    for (const bad of BAD_NUMBERS)
      assert.equal(validateMessage(withField(sample(t), k, bad)), 'Malformed', `${t}.${k}=${String(bad)}`);
  }
});

test('validateMessage rejects heartbeat sequence numbers that are not non-negative integers', () => {
  for (const t of ['hb', 'hbResp'] as const) {
    for (const bad of [NaN, Infinity, -Infinity, -1, 1.5, 2 ** 53, '4', null, undefined]) {
      assert.equal(validateMessage(withField(sample(t), 'seq', bad)), 'Malformed', `${t}.seq=${String(bad)}`);
    }
  }
});

test('validateMessage rejects a message with any field missing', () => {
  for (const t of MESSAGE_TYPES) {
    for (const k of Object.keys(sample(t))) {
      const m = loose(sample(t));
      delete m[k];
      assert.equal(validateMessage(m), 'Malformed', `${t} without ${k}`);
    }
  }
});

test('validateMessage rejects bad ids, booleans and strings', () => {
  for (const t of MESSAGE_TYPES) {
    for (const bad of ['', 'x'.repeat(129), 1, null, ['a']]) {
      assert.equal(validateMessage(withField(sample(t), 'from', bad)), 'Malformed', `${t} from=${String(bad)}`);
      assert.equal(validateMessage(withField(sample(t), 'to', bad)), 'Malformed', `${t} to=${String(bad)}`);
    }
  }
  for (const [t, k] of [
    ['appResp', 'reject'],
    ['hb', 'quiesce'],
    ['vote', 'transfer'],
    ['voteResp', 'reject'],
    ['preVoteResp', 'reject'],
  ] as const) {
    for (const bad of [0, 1, 'true', null])
      assert.equal(validateMessage(withField(sample(t), k, bad)), 'Malformed', `${t}.${k}=${String(bad)}`);
  }
  assert.equal(validateMessage(withField(sample('transferLeader'), 'target', '')), 'Malformed');
  assert.equal(validateMessage(withField(sample('readIndex'), 'ctx', '')), 'Malformed', 'empty read ctx');
});

test('validateMessage rejects oversized ctx', () => {
  const big = 'c'.repeat(257);
  for (const t of ['hb', 'hbResp', 'readIndex', 'readIndexResp'] as const) {
    assert.equal(validateMessage(withField(sample(t), 'ctx', big)), 'Malformed', t);
    assert.equal(validateMessage(withField(sample(t), 'ctx', 'c'.repeat(256))), null, `${t} at the limit`);
    assert.equal(validateMessage(withField(sample(t), 'ctx', 7)), 'Malformed', `${t} numeric ctx`);
  }
});

test('validateMessage rejects entries with wrong indexes, terms, types or data', () => {
  const app = sample('app') as Extract<Message, { type: 'app' }>;
  const [e2, e3] = app.entries;
  const bad: [string, unknown[]][] = [
    ['gap', [e2, { ...e3, index: 4 }]],
    ['duplicate index', [e2, { ...e3, index: 2 }]],
    ['starts after index+1', [{ ...e2, index: 3 }]],
    ['starts at index', [{ ...e2, index: 1 }]],
    ['term beyond message term', [{ ...e2, term: 2 }]],
    [
      'decreasing terms',
      [
        { ...e2, term: 1 },
        { ...e3, term: 0 },
      ],
    ],
    ['term below logTerm', [{ ...e2, term: 0 }]],
    ['negative term', [{ ...e2, term: -1 }]],
    ['fractional index', [{ ...e2, index: 2.5 }]],
    ['array data', [{ ...e2, data: [1, 2] }]],
    ['string data', [{ ...e2, data: 'x' }]],
    ['ArrayBuffer data', [{ ...e2, data: new ArrayBuffer(2) }]],
    ['missing data', [{ index: 2, term: 1, type: 'normal' }]],
    ['unknown entry type', [{ ...e2, type: 'snapshot' }]],
    ['null entry', [null]],
    ['number entry', [5]],
  ];
  for (const [why, entries] of bad) assert.equal(validateMessage({ ...app, entries }), 'Malformed', why);
  assert.equal(validateMessage({ ...app, entries: {} }), 'Malformed', 'entries not an array');
  assert.equal(validateMessage({ ...app, logTerm: 2 }), 'Malformed', 'logTerm beyond term');
  assert.equal(validateMessage({ ...app, entries: [] }), null, 'an empty probe is fine');
});

test('validateMessage rejects malformed snapshots', () => {
  const s = sample('snap') as Extract<Message, { type: 'snap' }>;
  const meta = s.snapshot.meta;
  const bad: [string, unknown][] = [
    ['empty voters', { ...s.snapshot, meta: { ...meta, conf: { voters: [], learners: ['a'] } } }],
    ['index 0', { ...s.snapshot, meta: { ...meta, index: 0 } }],
    ['negative index', { ...s.snapshot, meta: { ...meta, index: -5 } }],
    ['fractional term', { ...s.snapshot, meta: { ...meta, term: 0.5 } }],
    ['voters not a list', { ...s.snapshot, meta: { ...meta, conf: { voters: 'a,b', learners: [] } } }],
    ['empty voter id', { ...s.snapshot, meta: { ...meta, conf: { voters: ['a', ''], learners: [] } } }],
    ['learners missing', { ...s.snapshot, meta: { ...meta, conf: { voters: ['a'] } } }],
    ['conf missing', { ...s.snapshot, meta: { index: 5, term: 1 } }],
    ['meta missing', { data: text('x') }],
    ['data not bytes', { ...s.snapshot, data: 'img' }],
    ['not an object', 'snapshot'],
    ['null', null],
  ];
  for (const [why, snapshot] of bad) assert.equal(validateMessage({ ...s, snapshot }), 'Malformed', why);
});

// ---------------------------------------------------------------------------------------------
// Stepping bad input into live nodes

function started(): TestCluster {
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('a');
  for (let i = 0; i < 3; i++) assert.ok(c.propose('a', `p${i}`).ok);
  c.stabilize();
  c.tickAll(1);
  return c;
}

interface Snap {
  status: RaftStatus;
  persisted: [number, number][];
  hard: unknown;
  hasReady: boolean;
}

function snap(c: TestCluster, id: NodeId): Snap {
  const st = c.storages.get(id)!;
  return {
    status: c.node(id).status(),
    persisted: c.persistedLog(id),
    hard: { ...st.hardState },
    hasReady: c.node(id).hasReady(),
  };
}

/** Addressed, current-term, member-sent versions of the samples for node `to` of cluster c. */
function addressed(c: TestCluster, type: MessageType, from: NodeId, to: NodeId): Message {
  return { ...sample(type), from, to, term: c.node(to).status().term } as Message;
}

test('malformed messages stepped into a node return Malformed and leave its state untouched', () => {
  const c = started();
  const malformed: unknown[] = [
    null,
    'hb',
    42,
    { type: 'hb' },
    withField(addressed(c, 'hb', 'a', 'b'), 'term', -1),
    withField(addressed(c, 'hb', 'a', 'b'), 'term', 2.5),
    withField(addressed(c, 'hb', 'a', 'b'), 'term', 2 ** 60),
    withField(addressed(c, 'app', 'a', 'b'), 'entries', [{ index: 9, term: 1, type: 'normal', data: text('x') }]),
    withField(addressed(c, 'app', 'a', 'b'), 'entries', [{ index: 2, term: 1, type: 'normal', data: 'x' }]),
    withField(addressed(c, 'readIndex', 'c', 'a'), 'ctx', 'q'.repeat(1000)),
    withField(addressed(c, 'snap', 'a', 'b'), 'snapshot', {
      meta: { index: 50, term: 1, conf: { voters: [], learners: [] } },
      data: text('x'),
    }),
    withField(addressed(c, 'vote', 'c', 'b'), 'term', Infinity),
    withField(addressed(c, 'appResp', 'b', 'a'), 'index', -3),
  ];
  for (const target of ['a', 'b']) {
    for (const m of malformed) {
      const before = snap(c, target);
      const counted = c.node(target).rejected.Malformed;
      const r = c.node(target).step(m as Message);
      assert.deepEqual(r, { ok: false, reason: 'Malformed' }, JSON.stringify(m));
      assert.deepEqual(snap(c, target), before);
      assert.equal(c.node(target).rejected.Malformed, counted + 1);
    }
  }
  assert.equal(c.leader(), 'a');
});

test('a message for another group is rejected with WrongGroup', () => {
  const c = started();
  const before = snap(c, 'b');
  const m = { ...addressed(c, 'hb', 'a', 'b'), group: 2, term: 99 } as Message;
  assert.deepEqual(c.node('b').step(m), { ok: false, reason: 'WrongGroup' });
  assert.deepEqual(snap(c, 'b'), before);
  assert.equal(c.node('b').rejected.WrongGroup, 1);
});

test('a message addressed to another node is rejected with NotAddressedToMe', () => {
  const c = started();
  const before = snap(c, 'b');
  const m = { ...addressed(c, 'app', 'a', 'b'), to: 'c', term: 99 } as Message;
  assert.deepEqual(c.node('b').step(m), { ok: false, reason: 'NotAddressedToMe' });
  assert.deepEqual(snap(c, 'b'), before);
  assert.equal(c.node('b').rejected.NotAddressedToMe, 1);
});

test('responses from a non-member are rejected with UnknownSender', () => {
  const c = started();
  for (const [type, to] of [
    ['appResp', 'a'],
    ['hbResp', 'a'],
    ['voteResp', 'a'],
    ['readIndex', 'a'],
    ['transferLeader', 'a'],
    ['readIndexResp', 'b'],
  ] as const) {
    const before = snap(c, to);
    const m = { ...addressed(c, type, 'z', to), term: c.node(to).status().term + 5 } as Message;
    assert.deepEqual(c.node(to).step(m), { ok: false, reason: 'UnknownSender' }, type);
    assert.deepEqual(snap(c, to), before, type);
  }
  assert.equal(c.node('a').rejected.UnknownSender, 5);
  assert.equal(c.node('b').rejected.UnknownSender, 1);
  assert.equal(c.leader(), 'a');
});

test('vote requests from a node outside our configuration are judged, not dropped', () => {
  // A voter whose own promotion has not reached this replica yet must still get votes; the
  // candidate counts only its own voters, so answering is safe. Stickiness still applies.
  const c = started();
  const before = snap(c, 'b');
  const m = {
    ...addressed(c, 'vote', 'z', 'b'),
    term: c.node('b').status().term + 5,
    index: 100,
    logTerm: 100,
    transfer: false,
  } as Message;
  assert.deepEqual(c.node('b').step(m), { ok: true });
  assert.equal(c.node('b').rejected.UnknownSender, 0);
  assert.deepEqual(snap(c, 'b'), before, 'b heard from its leader recently: the request is ignored (stickiness)');
  c.isolate('b');
  c.tick('b', 30); // b's lease on its old leader expires
  c.process('b');
  c.queue = [];
  assert.deepEqual(c.node('b').step({ ...m, term: c.node('b').status().term + 5 } as Message), { ok: true });
  c.process('b');
  const resp = c.queue.find((x) => x.type === 'voteResp' && x.to === 'z');
  assert.ok(resp && resp.type === 'voteResp' && !resp.reject, 'b grants a vote to the up-to-date candidate z');
});

test('a message from a node to itself is rejected', () => {
  const c = started();
  const before = snap(c, 'a');
  const r = c.node('a').step(addressed(c, 'appResp', 'a', 'a'));
  assert.equal(r.ok, false);
  assert.deepEqual(snap(c, 'a'), before);
});

test('a stale-term message is ignored and counted', () => {
  const c = started();
  // Move the group to term 2 with b as leader, then replay term-1 traffic from a.
  assert.ok(c.node('a').transferLeader('b').ok);
  c.stabilize();
  assert.equal(c.leader(), 'b');
  const term = c.node('c').status().term;
  assert.ok(term >= 2);
  const stale: Message[] = [
    { ...addressed(c, 'app', 'a', 'c'), term: 1, index: 1, logTerm: 1, entries: [], commit: 50 } as Message,
    { ...addressed(c, 'hb', 'a', 'c'), term: 1, commit: 50 } as Message,
    { ...addressed(c, 'snap', 'a', 'c'), term: 1 } as Message,
    { ...addressed(c, 'vote', 'a', 'c'), term: 1, index: 100, logTerm: 1 } as Message,
    { ...addressed(c, 'timeoutNow', 'a', 'c'), term: 1 } as Message,
  ];
  for (const m of stale) {
    const before = c.node('c').status();
    const n = c.node('c').rejected.StaleTerm;
    assert.deepEqual(c.node('c').step(m), { ok: true }, m.type);
    assert.equal(c.node('c').rejected.StaleTerm, n + 1, m.type);
    const after = c.node('c').status();
    assert.deepEqual(after, before, m.type);
  }
  c.stabilize();
  assert.equal(c.leader(), 'b');
  assert.equal(c.node('c').status().term, term);
});

test('an append ack for an index beyond the leader log is harmless', () => {
  const c = started();
  const st = c.node('a').status();
  let r: unknown;
  assert.doesNotThrow(() => {
    r = c.node('a').step({
      type: 'appResp',
      group: 1,
      from: 'b',
      to: 'a',
      term: st.term,
      index: st.lastIndex + 1000,
      reject: false,
      hintIndex: 0,
      hintTerm: 0,
    });
  });
  assert.ok(r);
  const after = c.node('a').status();
  assert.equal(after.commit, st.commit);
  assert.ok(
    after.progress.b.match <= after.lastIndex,
    `match ${after.progress.b.match} beyond last index ${after.lastIndex}`,
  );
  // The group keeps working.
  assert.doesNotThrow(() => {
    assert.ok(c.propose('a', 'still-fine').ok);
    c.stabilize();
    c.tickAll(3);
  });
  for (const id of ['a', 'b', 'c']) assert.equal(c.appliedData(id).at(-1), 'still-fine');
});

test('a heartbeat answer with an absurd sequence number cannot extend a lease forever', () => {
  for (const seq of [Infinity, Number.MAX_SAFE_INTEGER]) {
    const c = new TestCluster(['a', 'b', 'c'], { leaseReads: true });
    c.elect('a');
    c.propose('a', 'x');
    c.stabilize();
    c.tickAll(1);
    const term = c.node('a').status().term;
    c.node('a').step({ type: 'hbResp', group: 1, from: 'b', to: 'a', term, ctx: '', seq });
    c.isolate('a');
    c.tick('a', 9); // well past electionTicks - leaseMarginTicks without hearing from anyone
    c.stabilize();
    assert.equal(c.node('a').status().role, 'leader');
    c.node('a').readIndex('r');
    c.stabilize();
    assert.deepEqual(c.readStates.get('a'), [], `seq=${seq}: no lease read after the lease expired`);
  }
});

// ---------------------------------------------------------------------------------------------
// Property test

const IDS = ['a', 'b', 'c'];

/** A pool of real messages from a busy run: elections, appends, heartbeats, reads, a transfer and
 *  a snapshot. */
const POOL: Message[] = (() => {
  const c = new TestCluster(IDS, { seed: 5 });
  c.elect('a');
  for (let i = 0; i < 3; i++) c.propose('a', `p${i}`);
  c.stabilize();
  c.node('b').readIndex('rb');
  c.node('a').readIndex('ra');
  c.tickAll(2);
  c.isolate('c');
  for (let i = 0; i < 3; i++) c.propose('a', `q${i}`);
  c.stabilize();
  c.compact('a');
  c.heal();
  c.tickAll(25);
  c.node('a').transferLeader('b');
  c.stabilize();
  c.tickAll(3);
  c.node('c').transferLeader('a');
  c.stabilize();
  c.tickAll(2);
  const pool = [...c.sent, ...MESSAGE_TYPES.map(sample)];
  const types = new Set(pool.map((m) => m.type));
  for (const t of MESSAGE_TYPES) assert.ok(types.has(t), `pool has ${t}`);
  return pool;
})();

const KEYS = [
  'type',
  'group',
  'from',
  'to',
  'term',
  'index',
  'logTerm',
  'commit',
  'entries',
  'reject',
  'hintIndex',
  'hintTerm',
  'ctx',
  'seq',
  'quiesce',
  'transfer',
  'snapshot',
  'target',
];

const anyValue = fc.oneof(
  fc.anything({ maxDepth: 2 }),
  fc.integer({ min: -3, max: 40 }),
  fc.constantFrom(NaN, Infinity, -Infinity, -1, 0.5, 2 ** 53, 1e300, Number.MAX_SAFE_INTEGER),
  fc.string({ maxLength: 8 }),
  fc.constantFrom('a', 'b', 'c', 'z', '', 'x'.repeat(300)),
  fc.boolean(),
  fc.uint8Array({ maxLength: 8 }),
  fc.constant(undefined),
  fc.constant(null),
);

type Mutation =
  | { kind: 'set'; key: string; value: unknown }
  | { kind: 'delete'; key: string }
  | { kind: 'bump'; key: string; delta: number }
  | { kind: 'entry'; at: number; key: string; value: unknown }
  | { kind: 'dropEntry'; at: number }
  | { kind: 'snapMeta'; key: string; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.constantFrom(...KEYS), value: anyValue }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom(...KEYS) }),
  fc.record({
    kind: fc.constant('bump' as const),
    key: fc.constantFrom('term', 'index', 'logTerm', 'commit', 'hintIndex', 'hintTerm', 'seq'),
    delta: fc.integer({ min: -5, max: 1000 }),
  }),
  fc.record({
    kind: fc.constant('entry' as const),
    at: fc.nat(4),
    key: fc.constantFrom('index', 'term', 'type', 'data'),
    value: anyValue,
  }),
  fc.record({ kind: fc.constant('dropEntry' as const), at: fc.nat(4) }),
  fc.record({
    kind: fc.constant('snapMeta' as const),
    key: fc.constantFrom('index', 'term', 'voters', 'learners', 'data'),
    value: anyValue,
  }),
);

function mutate(base: Message, ms: Mutation[]): unknown {
  const m = structuredClone(base) as unknown as Loose;
  for (const mu of ms) {
    switch (mu.kind) {
      case 'set':
        m[mu.key] = mu.value;
        break;
      case 'delete':
        delete m[mu.key];
        break;
      case 'bump':
        if (typeof m[mu.key] === 'number') m[mu.key] = (m[mu.key] as number) + mu.delta;
        break;
      case 'entry': {
        const es = m.entries;
        if (Array.isArray(es) && es.length > 0) {
          const e = { ...(es[mu.at % es.length] as Loose) };
          e[mu.key] = mu.value;
          es[mu.at % es.length] = e;
        }
        break;
      }
      case 'dropEntry':
        if (Array.isArray(m.entries) && m.entries.length > 0) m.entries.splice(mu.at % m.entries.length, 1);
        break;
      case 'snapMeta': {
        const s = m.snapshot as Loose | undefined;
        if (s && typeof s === 'object' && s.meta && typeof s.meta === 'object') {
          const meta = s.meta as Loose;
          if (mu.key === 'data') s.data = mu.value;
          else if (mu.key === 'voters' || mu.key === 'learners')
            meta.conf = { ...(meta.conf as Loose), [mu.key]: mu.value };
          else meta[mu.key] = mu.value;
        }
        break;
      }
    }
  }
  return m;
}

type Cmd =
  | { kind: 'garbage'; value: unknown; target: number }
  | { kind: 'mutated'; pick: number; muts: Mutation[]; target: number }
  | { kind: 'replay'; pick: number; target: number }
  | { kind: 'tick' }
  | { kind: 'stabilize' }
  | { kind: 'propose' };

const garbageMsg = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.record(
    {
      type: fc.constantFrom(...MESSAGE_TYPES, 'nope'),
      group: fc.constantFrom(1, 2, -1, 1.5),
      from: fc.constantFrom(...IDS, 'z', ''),
      to: fc.constantFrom(...IDS),
      term: fc.oneof(fc.integer({ min: -2, max: 6 }), anyValue),
      index: anyValue,
      logTerm: anyValue,
      commit: anyValue,
      entries: fc.oneof(anyValue, fc.array(anyValue, { maxLength: 3 })),
      reject: anyValue,
      ctx: anyValue,
      seq: anyValue,
      quiesce: anyValue,
      transfer: anyValue,
      snapshot: anyValue,
      target: anyValue,
      hintIndex: anyValue,
      hintTerm: anyValue,
    },
    { requiredKeys: ['type', 'group', 'from', 'to', 'term'] },
  ),
);

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('garbage' as const), value: garbageMsg, target: fc.nat(2) }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant('mutated' as const),
      pick: fc.nat(),
      muts: fc.array(mutation, { minLength: 1, maxLength: 3 }),
      target: fc.nat(2),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ kind: fc.constant('replay' as const), pick: fc.nat(), target: fc.nat(2) }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'tick' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'stabilize' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'propose' as const }), weight: 1 },
);

function describe(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) =>
      x instanceof Uint8Array
        ? `bytes(${x.length})`
        : typeof x === 'number' && !Number.isFinite(x)
          ? String(x)
          : x === undefined
            ? 'undefined'
            : typeof x === 'bigint'
              ? `${x}n`
              : x,
    );
  } catch {
    return String(v);
  }
}

test('property: garbage and mutated messages never throw and never break invariants', () => {
  const t0 = Date.now();
  fc.assert(
    fc.property(fc.array(cmd, { minLength: 1, maxLength: 12 }), (cmds) => {
      const c = new TestCluster(IDS);
      c.elect('a');
      c.propose('a', 'init');
      c.stabilize();
      const terms = new Map<NodeId, number>(IDS.map((id) => [id, c.node(id).status().term]));
      const commits = new Map<NodeId, number>(IDS.map((id) => [id, c.node(id).status().commit]));
      const check = (where: string): void => {
        for (const id of IDS) {
          const st = c.node(id).status();
          assert.ok(st.term >= terms.get(id)!, `${where}: term of ${id} went back ${terms.get(id)} -> ${st.term}`);
          assert.ok(
            st.commit >= commits.get(id)!,
            `${where}: commit of ${id} went back ${commits.get(id)} -> ${st.commit}`,
          );
          assert.ok(st.commit <= st.lastIndex, `${where}: commit of ${id} beyond its last index`);
          assert.ok(st.applied <= st.commit, `${where}: applied of ${id} beyond commit`);
          terms.set(id, st.term);
          commits.set(id, st.commit);
        }
      };
      const stepInto = (m: unknown, fallback: number, where: string): void => {
        const to =
          typeof (m as Loose)?.to === 'string' && IDS.includes((m as Loose).to as string)
            ? ((m as Loose).to as NodeId)
            : IDS[fallback];
        const n: RaftNode = c.node(to);
        const before = snap(c, to);
        let r;
        try {
          r = n.step(m as Message);
        } catch (e) {
          throw new Error(`${where}: step into ${to} threw ${(e as Error).message} for ${describe(m)}`);
        }
        if (!r.ok)
          assert.deepEqual(snap(c, to), before, `${where}: rejected (${r.reason}) but state changed: ${describe(m)}`);
        check(`${where} ${describe(m)}`);
      };
      for (const [i, k] of cmds.entries()) {
        const where = `cmd ${i} (${k.kind})`;
        switch (k.kind) {
          case 'garbage':
            stepInto(k.value, k.target, where);
            break;
          case 'mutated':
            stepInto(mutate(POOL[k.pick % POOL.length], k.muts), k.target, where);
            break;
          case 'replay':
            stepInto(structuredClone(POOL[k.pick % POOL.length]), k.target, where);
            break;
          case 'tick':
            try {
              c.tickAll(1);
            } catch (e) {
              throw new Error(`${where}: ${(e as Error).message}`);
            }
            check(where);
            break;
          case 'stabilize':
            try {
              c.stabilize();
            } catch (e) {
              throw new Error(`${where}: ${(e as Error).message}`);
            }
            check(where);
            break;
          case 'propose': {
            const l = c.leader();
            try {
              if (l) c.propose(l, `v${i}`);
              c.stabilize();
            } catch (e) {
              throw new Error(`${where}: ${(e as Error).message}`);
            }
            check(where);
            break;
          }
        }
      }
      try {
        c.stabilize();
      } catch (e) {
        throw new Error(`final stabilize: ${(e as Error).message}`);
      }
      check('end');
    }),
    { numRuns: 250, seed: 20240611, includeErrorInReport: true },
  );
  assert.ok(Date.now() - t0 < 3000, `property test took ${Date.now() - t0} ms`);
});
