// The node-to-node protocol's decoder: whatever a peer sends, a malformed message costs that
// message only (dropped, logged at warn, counted), a malformed request with an id is refused at
// once, and nothing throws into the transport.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerProtocol, type PeerProtocolHost } from '../../src/runtime/peerprotocol.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import type { Envelope } from '../../src/transport/index.js';
import { memoryLogger } from '../helpers/log.js';

function fixture(over: Partial<PeerProtocolHost> = {}) {
  const { logger, lines } = memoryLogger();
  const sent: { to: string; e: Envelope }[] = [];
  const calls: unknown[][] = [];
  const note =
    (name: string) =>
    (...a: unknown[]) =>
      void calls.push([name, ...a]);
  const host: PeerProtocolHost = {
    id: 'a',
    log: logger,
    attemptMs: 1_000,
    timeoutMs: 10_000,
    stats: { dropsBadMessage: 0 },
    send: (to, e) => void sent.push({ to, e }),
    isLocal: (g) => {
      if (g > 100) throw new RuntimeError('InvalidArgument', `unknown group ${g}`);
      return g !== 2;
    },
    leaderOf: (g) => (g === 2 ? 'b' : undefined),
    admit: () => () => undefined,
    serve: async (g, origin, kind, req) => ({ g, origin, kind, req }),
    shard: async (g, kind, req) => ({ g, kind, req }),
    peerWorkers: note('peerWorkers'),
    onSummary: note('onSummary'),
    onReply: note('onReply'),
    leadership: {
      notePlanned: note('notePlanned'),
      notePeerTiming: note('notePeerTiming'),
      noteRtt: note('noteRtt'),
      noteView: note('noteView'),
      notePeerDraining: note('notePeerDraining'),
      handOver: async (group, to) => ({
        group,
        from: 'a',
        to,
        term: 2,
        ticks: 1,
        lag: 0,
        catchUpMs: 0,
        campaignMs: 0,
        commitP99Ms: null,
      }),
    },
    membership: {
      onConf: note('onConf'),
      applyCreate: async () => undefined,
      applyRemove: async () => undefined,
      entries: () => new Map<number, string[]>([[1, ['a', 'b']]]).entries(),
    },
    hosted: async () => [1],
    onMeta: note('onMeta'),
    ...over,
  };
  return { p: new PeerProtocol(host), host, sent, calls, lines };
}

const replies = (sent: { e: Envelope }[]) =>
  sent.filter((s) => s.e.k === 'app' && s.e.t === 'reply').map((s) => (s.e as { p: Record<string, unknown> }).p);
const settle = () => new Promise((r) => setImmediate(r));

test('malformed notices and unknown kinds are dropped, logged at warn and counted', () => {
  const { p, host, calls, lines } = fixture();
  const bad: [string, unknown][] = [
    ['gossip', {}],
    ['hello', { workers: 0 }],
    ['hello', null],
    ['gconf', 'x'],
    ['gconf', { group: 'one' }],
    ['summary', { leaders: 3 }],
    ['ping', { at: 'now' }],
    ['reply', { id: 1, ok: false, code: 'Nope', message: 'x' }],
    ['reply', { id: 1, ok: false, code: 'TransferFailed', message: 'x', reason: 7 }],
    ['reply', { ok: true }],
  ];
  for (const [t, body] of bad) assert.doesNotThrow(() => p.onMessage('b', t, body), t);
  assert.equal(host.stats.dropsBadMessage, bad.length);
  assert.equal(lines.filter((l) => l.level === 40).length, bad.length);
  assert.deepEqual(calls, []);
});

test('well-formed notices reach their handler with checked fields', () => {
  const { p, calls } = fixture();
  p.onMessage('b', 'hello', { workers: 4, timing: { electionMs: 1000, heartbeatMs: 100 } });
  p.onMessage('b', 'gconf', { group: 7, voters: ['a', 3, 'b'], learners: 'c' });
  p.onMessage('b', 'drainState', { draining: 'yes' });
  p.onMessage('b', 'summary', {
    leaders: 3,
    uptimeMs: 5,
    cpu: Infinity,
    labels: { zone: 'z1', rack: 9 },
    reach: ['a', 1],
  });
  p.onMessage('b', 'reply', { id: 9, ok: false, code: 'NotLeader', message: 'm' });
  assert.deepEqual(calls[0], ['peerWorkers', 'b', 4]);
  assert.deepEqual(calls[1], ['notePeerTiming', 'b', { electionMs: 1000, heartbeatMs: 100 }]);
  assert.deepEqual(calls[2], ['onConf', 7, ['a', 'b'], [], false, 0]);
  assert.deepEqual(calls[3], ['notePeerDraining', 'b', false]);
  assert.equal(calls[4][0], 'noteView');
  assert.deepEqual({ ...(calls[4][2] as object), at: 0 }, { reach: ['a'], fsyncP99Ms: null, cpu: null, at: 0 });
  assert.equal(calls[5][0], 'onSummary');
  assert.deepEqual((calls[5][2] as { labels: unknown }).labels, { zone: 'z1' });
  assert.deepEqual(calls[6], [
    'onReply',
    'b',
    { id: 9, ok: false, code: 'NotLeader', message: 'm', leader: '', reason: undefined },
  ]);
});

test('requests: refused when malformed, NotLeader off a replica, errors answered rather than thrown', async () => {
  const overloaded = () => {
    throw new RuntimeError('Overloaded', 'full');
  };
  const { p, host, sent } = fixture({ admit: overloaded });
  p.onMessage('b', 'fwd', { group: 1, d: new Uint8Array(1) }); // no id: nobody to answer
  p.onMessage('b', 'fwd', { id: 1, group: 1, d: 'not bytes' });
  p.onMessage('b', 'rd', { id: 2, group: 2, q: 'k' });
  p.onMessage('b', 'fwd', { id: 3, group: 1, d: new Uint8Array(1) });
  p.onMessage('b', 'verify', { id: 4, group: 101 });
  p.onMessage('b', 'rd', { id: 5, group: 1, q: 'k', c: 'bogus', to: 1e9 });
  await settle();
  assert.equal(host.stats.dropsBadMessage, 2);
  const r = replies(sent);
  assert.deepEqual(
    r.map((x) => [x.id, x.ok, x.code ?? null]),
    [
      [1, false, 'InvalidArgument'],
      [2, false, 'NotLeader'],
      [3, false, 'Overloaded'],
      [4, false, 'InvalidArgument'],
      [5, true, null],
    ],
  );
  assert.equal(r[1].leader, 'b', 'the leader hint rides along');
  const served = r[4].result as { kind: string; req: { consistency: string; timeoutMs: number } };
  assert.equal(served.kind, 'read');
  assert.equal(served.req.consistency, 'linearizable');
  assert.equal(served.req.timeoutMs, 10_000, "an attempt never waits longer than the node's request timeout");
});
