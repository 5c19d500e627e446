// The cluster metadata state machine (src/runtime/meta): each command's outcomes and refusals,
// then properties over random command sequences: replicas applying the same log agree, snapshots
// and encodings round-trip, a removed node never comes back, the version counts changes exactly,
// and decoding hostile bytes fails only with the typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  applyEncoded,
  ClusterMeta,
  ClusterMetaError,
  decodeMetaCommand,
  decodeMetaSnapshot,
  encodeMetaCommand,
  encodeMetaSnapshot,
  snapshotProblem,
  type AddNode,
  type MetaCommand,
  type MetaResult,
  type MetaSnapshot,
  type NodeState,
} from '../../src/runtime/meta/index.js';
import { FlotillaError } from '../../src/errors.js';
import { crc32 } from '../../src/storage/crc32.js';

const RUNS = process.env.FLOTILLA_LONG === '1' ? 20_000 : 300;

function boot(): ClusterMeta {
  const m = new ClusterMeta();
  const r = m.apply(
    {
      type: 'bootstrap',
      clusterId: 'c1',
      nodes: [
        { id: 'n1', address: 'h1:7001', labels: { zone: 'a' } },
        { id: 'n2', address: 'h2:7001', labels: { zone: 'b', rack: 'r1' } },
        { id: 'n3', address: 'h3:7001', labels: {} },
      ],
    },
    1,
  );
  assert.deepEqual(r, { ok: true, changed: true, version: 1 });
  return m;
}

const add = (id: string, address: string, extra: Partial<AddNode> = {}): AddNode => ({
  type: 'addNode',
  id,
  address,
  labels: {},
  clusterId: 'c1',
  ...extra,
});

const reason = (r: MetaResult): string | undefined => (r.ok ? undefined : r.reason);
const changed = (r: MetaResult): boolean => r.ok && r.changed;

test('bootstrap: only once per cluster, every other command waits for it', () => {
  const empty = new ClusterMeta();
  assert.equal(reason(empty.apply(add('n4', 'h4:1'), 1)), 'NotBootstrapped');
  assert.equal(reason(empty.apply({ type: 'removeGroup', group: 1 }, 1)), 'NotBootstrapped');
  assert.equal(
    reason(empty.apply({ type: 'bootstrap', clusterId: 'c1', nodes: [] }, 1)),
    'InvalidNode',
    'a cluster needs a node',
  );
  const dupId = empty.apply(
    {
      type: 'bootstrap',
      clusterId: 'c1',
      nodes: [
        { id: 'n1', address: 'h1:1', labels: {} },
        { id: 'n1', address: 'h2:1', labels: {} },
      ],
    },
    1,
  );
  assert.equal(reason(dupId), 'DuplicateId');
  assert.equal(empty.version, 0, 'refusals change nothing');
  assert.equal(empty.bootstrapped, false);

  const m = boot();
  assert.equal(m.clusterId, 'c1');
  assert.deepEqual(
    m.activeNodes().map((n) => [n.id, n.joinedAt, n.state]),
    [
      ['n1', 1, 'active'],
      ['n2', 1, 'active'],
      ['n3', 1, 'active'],
    ],
  );
  assert.deepEqual(m.nodeOf('n2')?.labels, { zone: 'b', rack: 'r1' });
  // A retried bootstrap of the same cluster is a no-op; another cluster's is refused.
  assert.deepEqual(m.apply({ type: 'bootstrap', clusterId: 'c1', nodes: [] }, 9), {
    ok: true,
    changed: false,
    version: 1,
  });
  assert.equal(reason(m.apply({ type: 'bootstrap', clusterId: 'c2', nodes: [] }, 9)), 'AlreadyBootstrapped');
});

test('addNode: admits once, refuses each conflict with its reason', () => {
  const m = boot();
  const r = m.apply(add('n4', 'h4:7001', { labels: { zone: 'c' } }), 17);
  assert.ok(r.ok && r.changed);
  assert.deepEqual(r.node, { id: 'n4', address: 'h4:7001', labels: { zone: 'c' }, state: 'active', joinedAt: 17 });
  assert.equal(r.version, 2);
  // A retried join: same id, address and labels.
  const again = m.apply(add('n4', 'h4:7001', { labels: { zone: 'c' } }), 18);
  assert.ok(again.ok);
  assert.equal(again.changed, false);
  assert.equal(again.node.joinedAt, 17);
  assert.equal(m.version, 2);

  assert.equal(reason(m.apply(add('n5', 'h5:1', { clusterId: 'c2' }), 19)), 'ClusterMismatch');
  assert.equal(reason(m.apply(add('n4', 'h9:1'), 19)), 'DuplicateId', 'another address');
  assert.equal(reason(m.apply(add('n4', 'h4:7001', { labels: { zone: 'd' } }), 19)), 'DuplicateId', 'other labels');
  assert.equal(reason(m.apply(add('n5', 'h1:7001'), 19)), 'DuplicateAddress');
  for (const bad of ['', 'a:b', 'a|b', 'a,b', 'x'.repeat(129)])
    assert.equal(reason(m.apply(add(bad, 'h5:1'), 19)), 'InvalidNode', `id ${JSON.stringify(bad)}`);
  for (const bad of ['', 'h5', 'h5:0', 'h5:70000', ':80'])
    assert.equal(reason(m.apply(add('n5', bad), 19)), 'InvalidNode', `address ${JSON.stringify(bad)}`);
  assert.equal(reason(m.apply(add('n5', 'h5:1', { labels: { zone: '' } }), 19)), 'InvalidNode');
  assert.equal(m.version, 2);

  // While decommissioning the id is taken even for the same address; once removed it is gone
  // for good, and its address is free for a new id.
  assert.ok(m.apply({ type: 'setNodeState', id: 'n4', state: 'decommissioning' }, 20).ok);
  assert.equal(reason(m.apply(add('n4', 'h4:7001', { labels: { zone: 'c' } }), 21)), 'DuplicateId');
  assert.equal(reason(m.apply(add('n5', 'h4:7001'), 21)), 'DuplicateAddress');
  assert.ok(m.apply({ type: 'setNodeState', id: 'n4', state: 'removed' }, 22).ok);
  assert.equal(reason(m.apply(add('n4', 'h4:7001', { labels: { zone: 'c' } }), 23)), 'Decommissioned');
  const reuse = m.apply(add('n5', 'h4:7001'), 24);
  assert.ok(reuse.ok && reuse.changed);
  assert.deepEqual(
    m.members().map((n) => n.id),
    ['n1', 'n2', 'n3', 'n5'],
  );
  assert.deepEqual(
    m.allNodes().map((n) => `${n.id}:${n.state}`),
    ['n1:active', 'n2:active', 'n3:active', 'n4:removed', 'n5:active'],
  );
});

test('updateNode: a node states its own address and labels; conflicts refused', () => {
  const m = boot();
  const v = m.version;
  const r = m.apply({ type: 'updateNode', id: 'n3', address: 'h3:7001', labels: { zone: 'c' } }, 0);
  assert.ok(changed(r));
  assert.deepEqual(m.nodeOf('n3')!.labels, { zone: 'c' });
  assert.equal(m.nodeOf('n3')!.state, 'active');
  assert.equal(m.version, v + 1);
  const again = m.apply({ type: 'updateNode', id: 'n3', address: 'h3:7001', labels: { zone: 'c' } }, 0);
  assert.ok(again.ok && !again.changed, 'the same again is a no-op');
  assert.equal(m.version, v + 1);
  assert.equal(
    reason(m.apply({ type: 'updateNode', id: 'n3', address: 'h1:7001', labels: {} }, 0)),
    'DuplicateAddress',
  );
  assert.equal(reason(m.apply({ type: 'updateNode', id: 'n9', address: 'h9:7001', labels: {} }, 0)), 'UnknownNode');
  assert.equal(reason(m.apply({ type: 'updateNode', id: 'n3', address: 'nope', labels: {} }, 0)), 'InvalidNode');
  assert.ok(changed(m.apply({ type: 'setNodeState', id: 'n3', state: 'decommissioning' }, 0)));
  assert.ok(changed(m.apply({ type: 'updateNode', id: 'n3', address: 'h3:7002', labels: {} }, 0)));
  assert.equal(m.nodeOf('n3')!.state, 'decommissioning', 'an update keeps the state');
  assert.ok(changed(m.apply({ type: 'setNodeState', id: 'n3', state: 'removed' }, 0)));
  assert.equal(reason(m.apply({ type: 'updateNode', id: 'n3', address: 'h3:7003', labels: {} }, 0)), 'Decommissioned');
});

test('setNodeState: only the legal transitions; removed is final', () => {
  const states: NodeState[] = ['active', 'decommissioning', 'removed'];
  const legal = new Set(['active>decommissioning', 'decommissioning>active', 'decommissioning>removed']);
  for (const from of states)
    for (const to of states) {
      const m = boot();
      if (from !== 'active') m.apply({ type: 'setNodeState', id: 'n3', state: 'decommissioning' }, 2);
      if (from === 'removed') m.apply({ type: 'setNodeState', id: 'n3', state: 'removed' }, 3);
      assert.equal(m.nodeOf('n3')?.state, from);
      const v = m.version;
      const r = m.apply({ type: 'setNodeState', id: 'n3', state: to }, 4);
      if (from === to) assert.ok(r.ok && !r.changed && m.version === v, `${from}>${to} is a no-op`);
      else if (legal.has(`${from}>${to}`)) assert.ok(r.ok && r.changed && m.version === v + 1, `${from}>${to}`);
      else assert.equal(reason(r), 'IllegalTransition', `${from}>${to}`);
      assert.equal(m.nodeOf('n3')?.state, r.ok ? to : from);
    }
  const unknown = boot().apply({ type: 'setNodeState', id: 'n9', state: 'removed' }, 2);
  assert.equal(reason(unknown), 'UnknownNode');
  assert.ok(!unknown.ok);
  const e = ClusterMetaError.refused(unknown);
  assert.equal(e.code, 'UnknownNode');
  assert.match(e.message, /n9/);
});

test('setReplicas: newer configurations only; the directory answers by group and by node', () => {
  const m = boot();
  const set = (group: number, voters: string[], learners: string[], confIndex: number) =>
    m.apply({ type: 'setReplicas', group, voters, learners, confIndex }, 0);
  assert.ok(set(1, ['n2', 'n1', 'n3'], [], 5).ok);
  assert.deepEqual(m.replicasOf(1), { group: 1, voters: ['n1', 'n2', 'n3'], learners: [], confIndex: 5 });
  // A late report of an older (or the same) configuration does not roll it back.
  const late = set(1, ['n1'], [], 4);
  assert.ok(late.ok && !late.changed);
  assert.ok(!changed(set(1, ['n1'], [], 5)));
  assert.deepEqual(m.replicasOf(1)?.voters, ['n1', 'n2', 'n3']);
  assert.ok(changed(set(1, ['n1', 'n2'], ['n3'], 9)));
  assert.ok(set(2, ['n3'], [], 1).ok);
  assert.equal(reason(set(3, ['n1', 'n9'], [], 1)), 'UnknownNode');
  assert.equal(reason(set(3, [], ['n1'], 1)), 'InvalidReplicas', 'no voter');
  assert.equal(reason(set(3, ['n1'], ['n1'], 1)), 'InvalidReplicas', 'listed twice');
  assert.equal(reason(set(-1, ['n1'], [], 1)), 'InvalidReplicas');
  assert.equal(reason(set(3, ['n1'], [], 1.5)), 'InvalidReplicas');
  assert.deepEqual(m.groupsOn('n3'), [1, 2]);
  assert.deepEqual(m.groupsOn('n2'), [1]);
  assert.deepEqual(m.groupsOn('n9'), []);
  assert.deepEqual(
    [...m.countsPerNode()],
    [
      ['n1', { voters: 1, learners: 0 }],
      ['n2', { voters: 1, learners: 0 }],
      ['n3', { voters: 1, learners: 1 }],
    ],
  );
  assert.ok(changed(m.apply({ type: 'removeGroup', group: 2 }, 0)));
  assert.ok(!changed(m.apply({ type: 'removeGroup', group: 2 }, 0)));
  assert.equal(m.replicasOf(2), undefined);
  assert.deepEqual(m.groupsOn('n3'), [1]);
  assert.equal(m.groupCount, 1);
});

test('restore refuses a snapshot that breaks the invariants, and keeps its state', () => {
  const m = boot();
  const good = m.snapshot();
  const bad: MetaSnapshot[] = [
    { ...good, clusterId: '' },
    { ...good, version: -1 },
    { ...good, nodes: [...good.nodes].reverse() },
    { ...good, nodes: good.nodes.map((n) => ({ ...n, address: 'h1:7001' })) },
    { ...good, groups: [{ group: 1, voters: ['n7'], learners: [], confIndex: 1 }] },
    { ...good, nodes: [{ ...good.nodes[0], state: 'gone' as NodeState }] },
  ];
  const other = new ClusterMeta();
  for (const s of bad) {
    assert.notEqual(snapshotProblem(s), null);
    assert.throws(
      () => other.restore(s),
      (e) => e instanceof ClusterMetaError && e.code === 'Corrupt',
    );
    assert.equal(other.version, 0);
    // Bytes of it (when its fields can be encoded at all) do not decode either.
    let bytes: Uint8Array | null = null;
    try {
      bytes = encodeMetaSnapshot(s);
    } catch (e) {
      assert.ok(e instanceof ClusterMetaError && e.code === 'Unencodable');
    }
    if (bytes !== null)
      assert.throws(
        () => decodeMetaSnapshot(bytes),
        (e) => e instanceof ClusterMetaError && e.code === 'Corrupt',
      );
  }
});

test('encoding refuses what would not decode', () => {
  const unencodable: MetaCommand[] = [
    { type: 'setReplicas', group: 1, voters: ['n1'], learners: [], confIndex: -1 },
    { type: 'setReplicas', group: 2 ** 32, voters: ['n1'], learners: [], confIndex: 1 },
    { type: 'removeGroup', group: 0.5 },
    { type: 'setNodeState', id: 'n1', state: 'gone' as NodeState },
    { type: 'setNodeState', id: 'a\ud800', state: 'active' },
    add('x'.repeat(30_000), 'h:1'),
  ];
  for (const c of unencodable)
    assert.throws(
      () => encodeMetaCommand(c),
      (e) => e instanceof ClusterMetaError && e.code === 'Unencodable',
    );
  try {
    encodeMetaCommand(unencodable[0]);
  } catch (e) {
    assert.ok(
      e instanceof FlotillaError && e.name === 'ClusterMetaError',
      'one of flotilla errors, named for its class',
    );
  }
  // A truncated or altered record is refused, never half-read.
  const b = encodeMetaCommand(add('n4', 'h4:1'));
  for (const cut of [0, 1, 3, b.length - 1])
    assert.throws(() => decodeMetaCommand(b.subarray(0, cut)), ClusterMetaError);
  const flipped = b.slice();
  flipped[3] ^= 1;
  assert.throws(() => decodeMetaCommand(flipped), ClusterMetaError);
});

// --- properties -----------------------------------------------------------------------------------

const IDS = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
const idArb = fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...IDS) }, fc.constantFrom('', 'a:b', 'n|1'));
const addrArb = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('h1:1', 'h2:1', 'h3:1', 'h4:1', 'h5:1', '[::1]:2') },
  fc.constantFrom('nope', 'h:0'),
);
const labelsArb = fc.record(
  { zone: fc.constantFrom('a', 'b', 'c', ''), rack: fc.constantFrom('r1', 'r2') },
  { requiredKeys: [] },
);
const clusterArb = fc.oneof({ weight: 8, arbitrary: fc.constant('c1') }, fc.constantFrom('c2', ''));
const stateArb = fc.constantFrom<NodeState>('active', 'decommissioning', 'removed');
const specArb = fc.record({ id: idArb, address: addrArb, labels: labelsArb });

const commandArb: fc.Arbitrary<MetaCommand> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('updateNode'),
      id: idArb,
      address: addrArb,
      labels: labelsArb,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant('bootstrap'),
      clusterId: clusterArb,
      nodes: fc.array(specArb, { maxLength: 4 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      type: fc.constant('addNode'),
      id: idArb,
      address: addrArb,
      labels: labelsArb,
      clusterId: clusterArb,
    }),
  },
  { weight: 5, arbitrary: fc.record({ type: fc.constant('setNodeState'), id: idArb, state: stateArb }) },
  {
    weight: 5,
    arbitrary: fc.record({
      type: fc.constant('setReplicas'),
      group: fc.nat(6),
      voters: fc.uniqueArray(idArb, { maxLength: 3 }),
      learners: fc.uniqueArray(idArb, { maxLength: 2 }),
      confIndex: fc.nat(30),
    }),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('removeGroup'), group: fc.nat(6) }) },
);
const logArb = fc.array(commandArb, { maxLength: 80, size: 'max' });

/** A state to start from: bootstrapped (mostly) so that sequences reach past NotBootstrapped. */
function start(bootstrapped: boolean): ClusterMeta {
  return bootstrapped ? boot() : new ClusterMeta();
}

test('property: replicas applying the same log agree on every result and state', () => {
  fc.assert(
    fc.property(fc.boolean(), logArb, (booted, log) => {
      const a = start(booted);
      const b = start(booted);
      log.forEach((c, i) => {
        // One replica takes the command as given, the other from its log entry's bytes.
        assert.deepEqual(a.apply(c, i + 2), applyEncoded(b, encodeMetaCommand(c), i + 2));
        assert.equal(snapshotProblem(a.snapshot()), null, 'apply keeps every invariant');
      });
      assert.deepEqual(a.snapshot(), b.snapshot());
      assert.deepEqual(encodeMetaSnapshot(a.snapshot()), encodeMetaSnapshot(b.snapshot()));
    }),
    { numRuns: RUNS },
  );
});

test('property: snapshot → restore and encode → decode round-trip, and the copy behaves the same', () => {
  fc.assert(
    fc.property(fc.boolean(), logArb, logArb, (booted, before, after) => {
      const a = start(booted);
      for (const [i, c] of before.entries()) a.apply(c, i + 2);
      const snap = a.snapshot();
      const decoded = decodeMetaSnapshot(encodeMetaSnapshot(snap));
      assert.deepEqual(decoded, snap);
      const b = ClusterMeta.fromSnapshot(decoded);
      assert.deepEqual(b.snapshot(), snap);
      assert.deepEqual(b.countsPerNode(), a.countsPerNode());
      for (const id of IDS) assert.deepEqual(b.groupsOn(id), a.groupsOn(id));
      for (const [i, c] of after.entries()) assert.deepEqual(b.apply(c, i + 100), a.apply(c, i + 100));
      assert.deepEqual(b.snapshot(), a.snapshot());
    }),
    { numRuns: RUNS },
  );
});

test('property: commands round-trip through their encoding', () => {
  fc.assert(
    fc.property(commandArb, (c) => {
      // (JSON: fast-check's records have no prototype, decoded ones do.)
      assert.deepEqual(decodeMetaCommand(encodeMetaCommand(c)), JSON.parse(JSON.stringify(c)));
    }),
    { numRuns: RUNS * 10 },
  );
});

test('property: a removed node is never re-added; the version counts changes exactly', () => {
  fc.assert(
    fc.property(fc.boolean(), logArb, (booted, log) => {
      const m = start(booted);
      const removed = new Set<string>();
      log.forEach((c, i) => {
        const v = m.version;
        const bytes = encodeMetaSnapshot(m.snapshot());
        const r = m.apply(c, i + 2);
        if (r.ok) {
          assert.equal(m.version, v + (r.changed ? 1 : 0));
          assert.equal(r.version, m.version);
          if (!r.changed) assert.deepEqual(encodeMetaSnapshot(m.snapshot()), bytes, 'a no-op changes nothing');
        } else {
          assert.equal(m.version, v);
          assert.deepEqual(encodeMetaSnapshot(m.snapshot()), bytes, 'a refusal changes nothing');
        }
        // Refused, and for that reason unless the command is malformed or of another cluster.
        if (c.type === 'addNode' && removed.has(c.id))
          assert.ok(['Decommissioned', 'InvalidNode', 'ClusterMismatch'].includes(reason(r) ?? 'taken'));
        for (const id of removed) assert.equal(m.nodeOf(id)?.state, 'removed');
        for (const n of m.allNodes()) if (n.state === 'removed') removed.add(n.id);
      });
    }),
    { numRuns: RUNS },
  );
});

/** `body` with a valid CRC-32 appended, so that the decoder's parsing (not only its checksum) meets it. */
function withCrc(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

function onlyCorrupt(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ClusterMetaError && e.code === 'Corrupt', `threw ${String(e)}`);
  }
}

test('property: decoding hostile bytes fails only with the typed error', () => {
  const valid = fc.oneof(
    commandArb.map((c) => encodeMetaCommand(c)),
    logArb.map((log) => {
      const m = boot();
      for (const [i, c] of log.entries()) m.apply(c, i + 2);
      return encodeMetaSnapshot(m.snapshot());
    }),
  );
  // A valid record with some bytes changed or cut, its CRC recomputed.
  const mutated = fc
    .tuple(
      valid,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
    )
    .map(([b, edits, cut]) => {
      const body = b.slice(0, b.length - 4);
      for (const [at, v] of edits) if (body.length > 0) body[at % body.length] = v;
      return withCrc(body.subarray(0, body.length - (cut % 3 === 0 ? cut % Math.max(1, body.length) : 0)));
    });
  const random = fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map(withCrc));
  fc.assert(
    fc.property(fc.oneof(mutated, random), (bytes) => {
      onlyCorrupt(() => decodeMetaCommand(bytes));
      // As a log entry: refused as Corrupt, or a command taken or refused, never a throw.
      const r = applyEncoded(boot(), bytes, 5);
      if (!r.ok && r.reason === 'Corrupt') assert.throws(() => decodeMetaCommand(bytes), ClusterMetaError);
      onlyCorrupt(() => {
        const s = decodeMetaSnapshot(bytes);
        // Whatever decodes is a state restore() takes.
        ClusterMeta.fromSnapshot(s);
      });
    }),
    { numRuns: RUNS * 20 },
  );
  // Invalid UTF-8 under a valid CRC (the reader's decoder is fatal).
  const body = encodeMetaCommand({ type: 'setNodeState', id: 'nn', state: 'active' }).slice(0, -4);
  body[4] = 0xff;
  onlyCorrupt(() => decodeMetaCommand(withCrc(body)));
  assert.throws(() => decodeMetaCommand(withCrc(body)), ClusterMetaError);
});
