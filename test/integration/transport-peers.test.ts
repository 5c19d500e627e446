// The transport's peers changing at run time, over 127.0.0.1: a peer added and used both ways,
// removed (link closed, queue dropped and counted, its handshakes refused as Removed, never added
// back), re-addressed; and the join handshake: admitted, refused for a wrong or missing secret,
// and refused for each reason the owner can give. Waits are for events or states, bounded by a
// deadline that fails the test.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  PeerRemovedError,
  Transport,
  requestJoin,
  type Envelope,
  type JoinAnswer,
  type JoinRefusalReason,
  type JoinRequest,
  type TransportOptions,
  type TransportTlsOptions,
} from '../../src/transport/index.js';
import type { NodeId } from '../../src/raft/index.js';
import { memoryLogger } from '../helpers/log.js';

const HOST = '127.0.0.1';
const CLUSTER = 'peers-cluster';
const SECRET = 'correct horse battery staple 42';
const WRONG = 'incorrect mule battery staple 43';

function hb(from: NodeId, to: NodeId, group: number): Envelope {
  return { k: 'raft', m: { type: 'hb', group, from, to, term: 3, commit: group, ctx: '', seq: group, quiesce: false } };
}

interface Node {
  t: Transport;
  addr: string;
  got: { from: NodeId; env: Envelope }[];
  events: string[];
}

async function startNode(ctx: TestContext, id: NodeId, opts: Partial<TransportOptions> = {}): Promise<Node> {
  const got: Node['got'] = [];
  const events: string[] = [];
  const t = new Transport({
    nodeId: id,
    clusterId: CLUSTER,
    listen: { host: HOST, port: 0 },
    peers: {},
    reconnect: { minMs: 20, maxMs: 100, random: () => 0.5 },
    handshakeTimeoutMs: 2000,
    onEnvelopes: (from, envs) => {
      for (const env of envs) got.push({ from, env });
    },
    ...opts,
  });
  t.on('peerUp', (p) => events.push(`up:${p}`));
  t.on('peerDown', (p) => events.push(`down:${p}`));
  t.on('handshakeError', (e) => events.push(`hs:${e.side}:${e.reason}`));
  t.on('joined', (r) => events.push(`joined:${r.id}`));
  const a = await t.start();
  ctx.after(() => t.close());
  return { t, addr: `${a.host}:${a.port}`, got, events };
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('a peer added at run time is dialled and carries frames both ways', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  a.t.addPeer('b', b.addr);
  b.t.addPeer('a', a.addr);
  await waitFor(() => a.t.isConnected('b') && b.t.isConnected('a'), 'connection');
  assert.ok(a.t.send('b', hb('a', 'b', 1)));
  assert.ok(b.t.send('a', hb('b', 'a', 2)));
  await waitFor(() => a.got.length === 1 && b.got.length === 1, 'delivery both ways');
  assert.equal(b.got[0].from, 'a');
  assert.equal(a.got[0].from, 'b');
  // The same address again changes nothing: no reconnect.
  a.t.addPeer('b', b.addr);
  b.t.addPeer('a', a.addr);
  a.t.addPeer('a', '127.0.0.1:1'); // its own id: ignored
  assert.ok(a.t.isConnected('b'));
  assert.deepEqual(a.events, ['up:b']);
  assert.equal(a.t.stats().peersAdded, 1);
  assert.equal(a.t.stats().peersReaddressed, 0);
  assert.deepEqual(a.t.peerIds(), ['b']);
  assert.throws(() => a.t.addPeer('c', 'nonsense'), RangeError);
  // Configured peers are not counted as added.
  const c = await startNode(t, 'c', { peers: { a: a.addr } });
  assert.equal(c.t.stats().peersAdded, 0);
});

test('a removed peer: link closed, queue dropped and counted, handshakes refused as Removed', async (t) => {
  const { logger, lines } = memoryLogger('info');
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b', { logger });
  a.t.addPeer('b', b.addr);
  b.t.addPeer('a', a.addr);
  await waitFor(() => a.t.isConnected('b') && b.t.isConnected('a'), 'connection');
  // Queued in this turn, removed before the turn's flush: the three are dropped, not sent.
  for (let g = 0; g < 3; g++) assert.ok(b.t.send('a', hb('b', 'a', g)));
  b.t.removePeer('a');
  assert.equal(b.t.stats().drops.PeerRemoved, 3);
  assert.equal(b.t.stats().peers.a, undefined);
  assert.equal(b.t.stats().peersRemoved, 1);
  assert.ok(b.t.isRemoved('a'));
  await waitFor(() => a.events.includes('down:b') && b.events.includes('down:a'), 'both sides down');
  // a still has b as a peer and redials; b refuses it as Removed, and both count it.
  await waitFor(
    () => (b.t.stats().handshakeFailures.Removed ?? 0) >= 2 && a.events.includes('hs:dial:Removed'),
    'reconnections refused as Removed (twice)',
  );
  assert.ok(
    lines.some((l) => l.msg === 'handshake failed' && l.reason === 'Removed'),
    'refusal logged',
  );
  assert.ok(
    lines.some((l) => l.msg === 'peer removed' && l.droppedEnvelopes === 3),
    'removal logged',
  );
  assert.equal(a.got.length, 0, 'nothing queued for the removed peer was delivered');
  assert.equal(b.t.isConnected('a'), false);
  // Sends to it are dropped under the same reason; it cannot be added back under its id.
  assert.equal(b.t.send('a', hb('b', 'a', 9)), false);
  assert.equal(b.t.stats().drops.PeerRemoved, 4);
  assert.throws(
    () => b.t.addPeer('a', a.addr),
    (e) => e instanceof PeerRemovedError && e.code === 'PeerRemoved' && e.peer === 'a',
  );
  assert.throws(() => b.t.setPeer('a', a.addr), PeerRemovedError);
  b.t.removePeer('a'); // idempotent
  assert.equal(b.t.stats().peersRemoved, 1);
});

test('a removed peer that this node dials is never dialled again', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  a.t.addPeer('b', b.addr);
  b.t.addPeer('a', a.addr);
  await waitFor(() => b.t.isConnected('a') && a.t.isConnected('b'), 'connection');
  a.t.removePeer('b');
  await waitFor(() => b.events.includes('down:a'), 'b sees a go');
  // Several backoff periods (20..100 ms) later, b has still seen only the first connection.
  const c = await startNode(t, 'c');
  a.t.addPeer('c', c.addr);
  c.t.addPeer('a', a.addr);
  await waitFor(() => a.t.isConnected('c'), 'a still dials others');
  await sleep(300);
  assert.equal(b.t.stats().peers.a.connects, 1);
  assert.equal(b.t.isConnected('a'), false);
  assert.deepEqual(b.t.stats().handshakeFailures, {});
  // An id that never was a peer can be removed too, and is then refused as well.
  a.t.removePeer('z');
  assert.throws(() => a.t.addPeer('z', c.addr), PeerRemovedError);
  assert.equal(a.t.stats().peersRemoved, 2);
});

test('a new address for a known peer closes the old link and reaches the new one', async (t) => {
  const a = await startNode(t, 'a');
  const b1 = await startNode(t, 'b');
  a.t.addPeer('b', b1.addr);
  b1.t.addPeer('a', a.addr);
  await waitFor(() => a.t.isConnected('b'), 'connection to the first b');
  // "b" moves: a new process at a new address.
  const b2 = await startNode(t, 'b');
  b2.t.addPeer('a', a.addr);
  a.t.addPeer('b', b2.addr);
  await waitFor(() => b1.events.includes('down:a'), 'the old link closed');
  // The acceptor opens on sending its hello, the dialer on reading it: wait for both.
  await waitFor(
    () => b2.t.isConnected('a') && a.events.filter((e) => e === 'up:b').length === 2,
    'a dials the new address',
  );
  assert.deepEqual(a.events, ['up:b', 'down:b', 'up:b']);
  assert.equal(a.t.stats().peersReaddressed, 1);
  assert.ok(a.t.send('b', hb('a', 'b', 5)));
  await waitFor(() => b2.got.length === 1, 'delivery at the new address');
  assert.equal(b1.got.length, 0);
});

test('a peer that dials us, re-addressed: its inbound link is closed and it comes back', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  a.t.addPeer('b', b.addr);
  b.t.addPeer('a', a.addr);
  await waitFor(() => b.t.isConnected('a') && a.t.isConnected('b'), 'connection');
  b.t.addPeer('a', '127.0.0.1:2'); // b never dials a; the address is only recorded
  await waitFor(() => b.events.filter((e) => e === 'up:a').length === 2, 'a reconnects');
  assert.deepEqual(b.events, ['up:a', 'down:a', 'up:a']);
  assert.equal(b.t.stats().peersReaddressed, 1);
});

// ---------------------------------------------------------------------------------------------
// Join mode

interface Seed extends Node {
  requests: JoinRequest[];
}

async function startSeed(
  ctx: TestContext,
  answer: ((r: JoinRequest) => JoinAnswer | Promise<JoinAnswer>) | null,
  opts: Partial<TransportOptions> = {},
): Promise<Seed> {
  const requests: JoinRequest[] = [];
  const node = await startNode(ctx, 's', {
    secret: SECRET,
    ...(answer === null
      ? {}
      : {
          onJoinRequest: (r) => {
            requests.push(r);
            return answer(r);
          },
        }),
    ...opts,
  });
  return { ...node, requests };
}

test('a join is authenticated, admitted with the cluster id, and the node then connects', async (t) => {
  const seed = await startSeed(t, async () => {
    await sleep(20); // the owner may answer later (a leader's decision)
    return { accept: true };
  });
  const r = await requestJoin({
    nodeId: 'x',
    address: '127.0.0.1:7999',
    labels: { zone: 'z1' },
    seed: seed.addr,
    secret: SECRET,
    timeoutMs: 3000,
  });
  assert.deepEqual(r, { ok: true, clusterId: CLUSTER, acceptor: 's' });
  assert.equal(seed.requests.length, 1);
  assert.equal(seed.requests[0].id, 'x');
  assert.equal(seed.requests[0].address, '127.0.0.1:7999');
  assert.deepEqual(seed.requests[0].labels, { zone: 'z1' });
  assert.equal(seed.t.stats().joinsAccepted, 1);
  await waitFor(() => seed.events.includes('joined:x'), 'joined event');
  // Admitted: with the learnt cluster id it is a member like any other once added.
  const x = await startNode(t, 'x', { secret: SECRET, clusterId: r.ok ? r.clusterId : 'none' });
  x.t.addPeer('s', seed.addr);
  seed.t.addPeer('x', x.addr);
  await waitFor(() => x.t.isConnected('s') && seed.t.isConnected('x'), 'member connection');
  assert.ok(seed.t.send('x', hb('s', 'x', 1)));
  await waitFor(() => x.got.length === 1, 'delivery');
  assert.equal(seed.got.length, 0, 'the join connection delivered nothing');
  // Expecting the right cluster works too.
  const again = await requestJoin({
    nodeId: 'y',
    address: '127.0.0.1:7998',
    seed: seed.addr,
    secret: SECRET,
    clusterId: CLUSTER,
  });
  assert.equal(again.ok, true);
});

test('a join with a wrong or missing secret is refused as Unauthenticated before the owner sees it', async (t) => {
  const seed = await startSeed(t, () => ({ accept: true }));
  for (const secret of [WRONG, undefined]) {
    const r = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: seed.addr, secret, timeoutMs: 3000 });
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.error.code, 'HandshakeFailed');
      assert.equal(r.error.reason, 'Unauthenticated', r.error.detail);
    }
  }
  assert.equal(seed.requests.length, 0);
  assert.equal(seed.t.stats().handshakeFailures.Unauthenticated, 2);
  assert.equal(seed.t.stats().joinsAccepted, 0);
  // A joiner holding the secret does not hand it to a seed that cannot prove it.
  const impostor = await startSeed(t, () => ({ accept: true }), { secret: WRONG });
  const r = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: impostor.addr, secret: SECRET });
  assert.ok(!r.ok && r.error.reason === 'Unauthenticated', 'the impostor cannot verify the joiner either');
});

test('every refusal the owner gives reaches the joiner with its reason, and is counted', async (t) => {
  const reasons: JoinRefusalReason[] = [
    'ClusterMismatch',
    'DuplicateId',
    'DuplicateAddress',
    'Decommissioned',
    'Unauthenticated',
    'NotReady',
  ];
  let next: JoinRefusalReason = 'NotReady';
  const seed = await startSeed(t, () => ({ accept: false, reason: next, detail: `no: ${next}` }));
  for (const reason of reasons) {
    next = reason;
    const r = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: seed.addr, secret: SECRET });
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.error.reason, reason);
      assert.match(r.error.detail, new RegExp(`no: ${reason}`));
    }
    assert.equal(seed.t.stats().handshakeFailures[reason], 1, `${reason} counted`);
  }
  assert.equal(seed.requests.length, reasons.length);
  assert.equal(seed.t.stats().joinsAccepted, 0);
});

test('the transport refuses joins itself: removed id, another cluster, no owner, a failing owner', async (t) => {
  const seed = await startSeed(t, () => ({ accept: true }));
  seed.t.removePeer('gone');
  const removed = await requestJoin({ nodeId: 'gone', address: '127.0.0.1:7999', seed: seed.addr, secret: SECRET });
  assert.ok(!removed.ok && removed.error.reason === 'Decommissioned');
  const other = await requestJoin({
    nodeId: 'x',
    address: '127.0.0.1:7999',
    seed: seed.addr,
    secret: SECRET,
    clusterId: 'another-cluster',
  });
  assert.ok(!other.ok && other.error.reason === 'ClusterMismatch');
  const self = await requestJoin({ nodeId: 's', address: '127.0.0.1:7999', seed: seed.addr, secret: SECRET });
  assert.ok(!self.ok && self.error.reason === 'DuplicateId');
  assert.equal(seed.requests.length, 0, 'none of these reached the owner');

  const closed = await startSeed(t, null);
  const none = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: closed.addr, secret: SECRET });
  assert.ok(!none.ok && none.error.reason === 'NotReady');

  const broken = await startSeed(t, () => {
    throw new Error('no leader');
  });
  const failing = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: broken.addr, secret: SECRET });
  assert.ok(!failing.ok && failing.error.reason === 'NotReady');

  // A member's handshake is unchanged: an unknown member id is still UnknownNode, not a join.
  const stranger = await startNode(t, 'a', { secret: SECRET, peers: { s: seed.addr } });
  await waitFor(() => stranger.events.includes('hs:dial:UnknownNode'), 'a member hello from a non-peer refused');
  await closed.t.close();
  const unreachable = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: closed.addr, secret: SECRET });
  assert.ok(!unreachable.ok && unreachable.error.reason === 'Unreachable');
});

test('a join without a secret on either side is admitted; a seed that never answers times out', async (t) => {
  const seed = await startNode(t, 's', { onJoinRequest: () => ({ accept: true }) });
  const r = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: seed.addr });
  assert.deepEqual(r, { ok: true, clusterId: CLUSTER, acceptor: 's' });
  const silent = await startNode(t, 't', {
    secret: SECRET,
    handshakeTimeoutMs: 300,
    onJoinRequest: () => new Promise<JoinAnswer>(() => {}),
  });
  const late = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: silent.addr, secret: SECRET });
  // Closed after authentication with no answer: nothing was refused, so it is retryable (NotReady).
  assert.ok(!late.ok && late.error.reason === 'NotReady', 'closed without an answer');
  await waitFor(() => (silent.t.stats().handshakeFailures.HandshakeTimeout ?? 0) === 1, 'the seed times the join out');
  assert.equal(silent.t.stats().joinsAccepted, 0);
});

// A throwaway cluster CA (openssl CLI) with certificates naming s and x.
function makeCerts(t: TestContext): Record<'s' | 'x', TransportTlsOptions> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-peers-pki-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=peers test CA']);
  writeFileSync(join(dir, 'leaf.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const out = {} as Record<'s' | 'x', TransportTlsOptions>;
  let serial = 10;
  for (const id of ['s', 'x'] as const) {
    ssl(['req', '-new', ...ec, '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${id}`]);
    ssl([
      'x509',
      '-req',
      '-in',
      `${id}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-set_serial',
      String(serial++),
      '-days',
      '2',
      '-out',
      `${id}.pem`,
      '-extfile',
      'leaf.ext',
    ]);
    out[id] = { ca: read('ca.pem'), cert: read(`${id}.pem`), key: read(`${id}.key`) };
  }
  return out;
}

test('with TLS a joiner is admitted under the id its certificate names, refused under another', async (t) => {
  const certs = makeCerts(t);
  const seed = await startSeed(t, () => ({ accept: true }), { secret: undefined, tls: certs.s });
  const ok = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: seed.addr, tls: certs.x });
  assert.deepEqual(ok, { ok: true, clusterId: CLUSTER, acceptor: 's' });
  const impostor = await requestJoin({ nodeId: 'y', address: '127.0.0.1:7999', seed: seed.addr, tls: certs.x });
  assert.ok(!impostor.ok && impostor.error.reason === 'Unauthenticated', "x's certificate does not make it y");
  assert.equal(seed.requests.length, 1);
  assert.equal(seed.t.stats().handshakeFailures.Unauthenticated, 1);
  // Without TLS the seed's TLS handshake fails: the joiner sees its connection closed unanswered.
  const plain = await requestJoin({ nodeId: 'x', address: '127.0.0.1:7999', seed: seed.addr, timeoutMs: 2000 });
  assert.ok(!plain.ok && plain.error.reason === 'Refused', plain.ok ? 'admitted' : plain.error.message);
  await waitFor(() => (seed.t.stats().handshakeFailures.TlsFailed ?? 0) === 1, 'the seed counts a TLS failure');
  assert.equal(seed.requests.length, 1);
});
