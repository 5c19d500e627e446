// Transport over 127.0.0.1: delivery between two and three nodes, one frame per peer per turn,
// handshake refusals, reconnects after a peer restarts, hostile connections, the bounded queue.
// Waits are for events or states, bounded by a deadline that fails the test; nothing asserts
// how long anything took.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FrameDecoder,
  FrameEncoder,
  HandshakeError,
  PROTOCOL_VERSION,
  Transport,
  backoffDelay,
  makeHello,
  parseAddress,
  type DecodeResult,
  type Envelope,
  type TransportOptions,
} from '../../src/transport/index.js';
import type { Message, NodeId } from '../../src/raft/index.js';
import { memoryLogger } from '../helpers/log.js';
import { freePorts } from '../helpers/net.js';

const HOST = '127.0.0.1';
const CLUSTER = 'test-cluster';

function hb(from: NodeId, to: NodeId, group: number): Envelope {
  return { k: 'raft', m: { type: 'hb', group, from, to, term: 3, commit: group, ctx: '', seq: group, quiesce: false } };
}

function append(from: NodeId, to: NodeId, group: number): Envelope {
  return {
    k: 'raft',
    m: {
      type: 'app',
      group,
      from,
      to,
      term: 4,
      index: 10,
      logTerm: 4,
      commit: 9,
      entries: [{ index: 11, term: 4, type: 'normal', data: new Uint8Array(16).fill(group & 0xff) }],
    },
  };
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
    reconnect: { minMs: 20, maxMs: 200, random: () => 0.5 },
    onEnvelopes: (from, envs) => {
      for (const env of envs) got.push({ from, env });
    },
    ...opts,
  });
  t.on('peerUp', (p) => events.push(`up:${p}`));
  t.on('peerDown', (p) => events.push(`down:${p}`));
  t.on('handshakeError', (e) => events.push(`hs:${e.side}:${e.reason}`));
  t.on('protocolError', (e) => events.push(`proto:${e.reason}`));
  t.on('backpressure', (e) => events.push(`bp:${e.peer}`));
  const a = await t.start();
  ctx.after(() => t.close());
  return { t, addr: `${a.host}:${a.port}`, got, events };
}

/** Tell every node about every other. */
function mesh(nodes: Node[]): void {
  for (const a of nodes) for (const b of nodes) if (a !== b) a.t.setPeer(b.t.nodeId, b.addr);
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A hand-driven client speaking the wire protocol. */
async function rawClient(ctx: TestContext, addr: string) {
  const { host, port } = parseAddress(addr);
  const sock = net.connect({ host, port });
  ctx.after(() => sock.destroy());
  const dec = new FrameDecoder();
  const frames: DecodeResult[] = [];
  let closed = false;
  sock.on('data', (c) => frames.push(...dec.decode(c)));
  sock.on('error', () => {});
  sock.on('close', () => (closed = true));
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  return { sock, frames, isClosed: () => closed, enc: new FrameEncoder() };
}

function helloFrame(enc: FrameEncoder, nodeId: NodeId, over: Record<string, unknown> = {}): Buffer {
  return enc.encodeControl({ ...makeHello(CLUSTER, nodeId, 1 << 20), ...over });
}

test('backoff: starts at min, doubles to max, jitter stays in the upper half', () => {
  assert.equal(
    backoffDelay(0, 50, 2000, () => 0),
    50,
  );
  assert.equal(
    backoffDelay(0, 50, 2000, () => 1 - 1e-12),
    50,
  );
  assert.equal(
    backoffDelay(3, 50, 2000, () => 1 - 1e-12),
    400,
  );
  assert.equal(
    backoffDelay(3, 50, 2000, () => 0),
    200,
  );
  assert.equal(
    backoffDelay(20, 50, 2000, () => 1 - 1e-12),
    2000,
  );
  assert.equal(
    backoffDelay(1000, 50, 2000, () => 0),
    1000,
  );
  for (let a = 0; a < 40; a++) {
    const d = backoffDelay(a, 50, 2000, Math.random);
    assert.ok(d >= 50 && d <= 2000, `${a}: ${d}`);
  }
});

test('two nodes exchange envelopes both ways and report each other up', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b') && b.t.isConnected('a'), 'connection');
  assert.deepEqual(a.events, ['up:b']);
  assert.deepEqual(b.events, ['up:a']);

  const toB = [append('a', 'b', 1), { k: 'app', t: 'load', p: { groups: 12, leaders: [1, 2] } } as Envelope];
  for (const e of toB) assert.equal(a.t.send('b', e), true);
  b.t.send('a', hb('b', 'a', 7));
  await waitFor(() => b.got.length === 2 && a.got.length === 1, 'delivery');
  assert.deepEqual(
    b.got.map((g) => g.from),
    ['a', 'a'],
  );
  const m = (b.got[0].env as Extract<Envelope, { k: 'raft' }>).m as Extract<Message, { type: 'app' }>;
  assert.deepEqual([...m.entries[0].data], [...new Uint8Array(16).fill(1)]);
  assert.deepEqual(b.got[1].env, toB[1]);
  assert.deepEqual(a.got[0], { from: 'b', env: hb('b', 'a', 7) });
  // One connection for the pair: a (smaller id) dialled, b accepted.
  assert.equal(a.t.stats().peers.b.dials, 1);
  assert.equal(b.t.stats().peers.a.dials, 0);
});

test('three nodes: full mesh delivery', async (t) => {
  const nodes = [await startNode(t, 'n1'), await startNode(t, 'n2'), await startNode(t, 'n3')];
  mesh(nodes);
  await waitFor(() => nodes.every((n) => n.t.connectedPeers().length === 2), 'mesh');
  for (const n of nodes) for (const o of nodes) if (n !== o) n.t.send(o.t.nodeId, hb(n.t.nodeId, o.t.nodeId, 1));
  await waitFor(() => nodes.every((n) => n.got.length === 2), 'delivery');
  for (const n of nodes) {
    assert.deepEqual(
      n.got.map((g) => g.from).sort(),
      nodes.filter((o) => o !== n).map((o) => o.t.nodeId),
    );
    for (const g of n.got) assert.equal((g.env as Extract<Envelope, { k: 'raft' }>).m.to, n.t.nodeId);
  }
});

test('everything sent to a peer in one turn goes out as exactly one frame', async (t) => {
  const nodes = [await startNode(t, 'n1'), await startNode(t, 'n2'), await startNode(t, 'n3')];
  mesh(nodes);
  const [n1, n2, n3] = nodes;
  await waitFor(() => n1.t.connectedPeers().length === 2, 'connections');
  for (let g = 0; g < 500; g++) n1.t.send('n2', append('n1', 'n2', g));
  for (let g = 0; g < 300; g++) n1.t.send('n3', hb('n1', 'n3', g));
  await waitFor(() => n2.got.length === 500 && n3.got.length === 300, 'delivery');
  const s = n1.t.stats();
  assert.equal(s.peers.n2.framesSent, 1);
  assert.equal(s.peers.n2.envelopesSent, 500);
  assert.equal(s.peers.n3.framesSent, 1);
  assert.equal(n2.t.stats().peers.n1.framesReceived, 1);
  assert.equal(n3.t.stats().peers.n1.envelopesReceived, 300);
  assert.deepEqual(
    n2.got.map((g) => (g.env as Extract<Envelope, { k: 'raft' }>).m.group),
    [...Array(500).keys()],
  );
  // The next turn is the next frame.
  n1.t.send('n2', hb('n1', 'n2', 1));
  await waitFor(() => n2.got.length === 501, 'second frame');
  assert.equal(n1.t.stats().peers.n2.framesSent, 2);
});

test('refusals: wrong cluster and unknown node are refused with a typed reason; good peers keep working', async (t) => {
  const mem = memoryLogger();
  const good = await startNode(t, 'n1');
  const acceptor = await startNode(t, 'n2', { logger: mem.logger });
  mesh([good, acceptor]);
  await waitFor(() => good.t.isConnected('n2'), 'good link');

  // n0 < n2, so n0 dials; its cluster id is wrong.
  const wrongCluster = await startNode(t, 'n0', { clusterId: 'another-cluster', peers: { n2: acceptor.addr } });
  // m0 is in the right cluster but not in n2's peer list.
  const stranger = await startNode(t, 'm0', { peers: { n2: acceptor.addr } });
  const errors: HandshakeError[] = [];
  acceptor.t.on('handshakeError', (e) => errors.push(e));
  await waitFor(
    () => wrongCluster.events.includes('hs:dial:WrongCluster') && stranger.events.includes('hs:dial:UnknownNode'),
    'refusals',
  );
  await waitFor(
    () => errors.some((e) => e.reason === 'WrongCluster') && errors.some((e) => e.reason === 'UnknownNode'),
    'acceptor events',
  );

  const wc = errors.find((e) => e.reason === 'WrongCluster')!;
  assert.equal(wc.side, 'accept');
  assert.equal(wc.peer, 'n0');
  assert.ok(wc instanceof HandshakeError);
  assert.equal(errors.find((e) => e.reason === 'UnknownNode')!.peer, 'm0');
  assert.ok(mem.lines.some((l) => l.reason === 'WrongCluster' && l.msg === 'handshake failed'));
  assert.ok(mem.lines.some((l) => l.reason === 'UnknownNode' && l.msg === 'handshake failed'));
  assert.ok((acceptor.t.stats().handshakeFailures.WrongCluster ?? 0) >= 1);
  assert.equal(wrongCluster.t.isConnected('n2'), false);
  assert.equal(stranger.t.isConnected('n2'), false);
  assert.deepEqual(
    acceptor.events.filter((e) => e.startsWith('up:')),
    ['up:n1'],
  );

  good.t.send('n2', hb('n1', 'n2', 5));
  acceptor.t.send('n1', hb('n2', 'n1', 6));
  await waitFor(() => acceptor.got.length === 1 && good.got.length === 1, 'delivery after refusals');
});

test('refusals on the wire: a raw client gets a refuse frame naming the reason, then the connection ends', async (t) => {
  const acceptor = await startNode(t, 'n2');
  acceptor.t.setPeer('n1', '127.0.0.1:1'); // n1 dials n2: only the membership matters here
  acceptor.t.setPeer('n3', '127.0.0.1:1');
  const cases: [string, (enc: FrameEncoder) => Buffer][] = [
    ['ProtocolMismatch', (enc) => helloFrame(enc, 'n1', { protocol: PROTOCOL_VERSION + 1 })],
    ['ProtocolMismatch', (enc) => helloFrame(enc, 'n1', { schema: 'deadbeef' })],
    ['WrongCluster', (enc) => helloFrame(enc, 'n1', { clusterId: 'x' })],
    ['UnknownNode', (enc) => helloFrame(enc, 'n9')],
    ['UnknownNode', (enc) => helloFrame(enc, 'n2')], // itself
    ['WrongDirection', (enc) => helloFrame(enc, 'n3')], // n2 dials n3, not the reverse
    ['BadHandshake', (enc) => enc.encodeControl({ hs: 'hello', protocol: PROTOCOL_VERSION })],
  ];
  for (const [reason, frame] of cases) {
    const c = await rawClient(t, acceptor.addr);
    c.sock.write(frame(c.enc));
    await waitFor(() => c.isClosed(), `${reason}: close`);
    assert.equal(c.frames.length, 1, reason);
    const r = c.frames[0];
    assert.ok(r.kind === 'control' && r.body.hs === 'refuse', reason);
    assert.equal(r.body.reason, reason);
  }
  assert.deepEqual(acceptor.t.stats().handshakeFailures, {
    ProtocolMismatch: 2,
    WrongCluster: 1,
    UnknownNode: 2,
    WrongDirection: 1,
    BadHandshake: 1,
  });
  assert.deepEqual(
    acceptor.events.filter((e) => e.startsWith('up:')),
    [],
  );
});

test('a peer that goes down and comes back is reconnected, and queued messages flow again', async (t) => {
  const a = await startNode(t, 'a');
  let b = await startNode(t, 'b');
  const port = parseAddress(b.addr).port;
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b'), 'first connection');

  await b.t.close(); // the acceptor goes away
  await waitFor(() => a.events.includes('down:b'), 'peerDown');
  await waitFor(() => a.t.stats().peers.b.dialFailures >= 1, 'a failed redial');
  a.t.send('b', hb('a', 'b', 1)); // queued while b is down

  b = await startNode(t, 'b', { listen: { host: HOST, port }, peers: { a: a.addr } });
  await waitFor(() => a.t.isConnected('b') && b.got.length === 1, 'reconnect and queued delivery');
  assert.deepEqual(a.events, ['up:b', 'down:b', 'up:b']);
  assert.equal(a.t.stats().peers.b.reconnects, 1);
  b.t.send('a', hb('b', 'a', 2));
  await waitFor(() => a.got.length === 1, 'reply after reconnect');

  // The dialling side restarts: the acceptor sees it go down and come back.
  const aPort = parseAddress(a.addr).port;
  await a.t.close();
  await waitFor(() => b.events.includes('down:a'), 'acceptor peerDown');
  const a2 = await startNode(t, 'a', { listen: { host: HOST, port: aPort }, peers: { b: b.addr } });
  await waitFor(() => b.t.isConnected('a') && a2.t.isConnected('b'), 'dialler back');
  assert.deepEqual(b.events, ['up:a', 'down:a', 'up:a']);
  a2.t.send('b', hb('a', 'b', 3));
  await waitFor(() => b.got.length === 2, 'delivery from the restarted dialler');
});

test('hostile connections are dropped and counted; the node keeps serving its peers', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b'), 'good link');

  const garbage = await rawClient(t, b.addr);
  garbage.sock.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5]));
  const malformed = await rawClient(t, b.addr);
  malformed.sock.write(Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]));
  const early = await rawClient(t, b.addr);
  early.sock.write(early.enc.encodeBatch([hb('a', 'b', 1)]));
  const oversized = await rawClient(t, b.addr);
  oversized.sock.write(Buffer.from([0x00, 0x10, 0x00, 0x00])); // 1 MiB, over the pre-handshake limit
  await waitFor(() => [garbage, malformed, early, oversized].every((c) => c.isClosed()), 'hostile sockets closed');

  const s = b.t.stats();
  assert.deepEqual(s.drops, { FrameTooLarge: 2, MalformedFrame: 1, FrameBeforeHandshake: 1 });
  assert.equal(s.handshakeFailures.BadHandshake, 1);
  assert.equal(b.got.length, 0);
  assert.deepEqual(
    b.events.filter((e) => e.startsWith('up:') || e.startsWith('down:')),
    ['up:a'],
  );

  a.t.send('b', hb('a', 'b', 2));
  await waitFor(() => b.got.length === 1, 'good peer still served');
});

test('a handshaken peer sending invalid items or an oversized frame: items dropped, then the link closed', async (t) => {
  const b = await startNode(t, 'b', { maxFrameBytes: 1 << 20 });
  b.t.setPeer('a', '127.0.0.1:1');
  const c = await rawClient(t, b.addr);
  c.sock.write(helloFrame(c.enc, 'a'));
  await waitFor(() => c.frames.length === 1, 'hello back');
  assert.ok(c.frames[0].kind === 'control' && c.frames[0].body.hs === 'hello' && c.frames[0].body.nodeId === 'b');
  await waitFor(() => b.t.isConnected('a'), 'peer up');

  const bad = { k: 'raft', m: { type: 'hb', group: 1, from: 'a', to: 'b', term: -1 } } as unknown as Envelope;
  c.sock.write(
    c.enc.encodeBatch([hb('a', 'b', 1), bad, { k: 'gossip', x: 1 } as unknown as Envelope, hb('a', 'b', 2)]),
  );
  await waitFor(() => b.got.length === 2, 'valid items');
  assert.deepEqual(
    b.got.map((g) => (g.env as Extract<Envelope, { k: 'raft' }>).m.group),
    [1, 2],
  );
  assert.deepEqual(b.t.stats().peers.a.drops, { 'raft.Malformed': 1, UnknownKind: 1 });

  const hdr = Buffer.alloc(4);
  hdr.writeUInt32BE(2 << 20, 0);
  c.sock.write(hdr);
  await waitFor(() => c.isClosed() && b.events.includes('down:a'), 'link closed');
  assert.equal(b.t.stats().peers.a.drops.FrameTooLarge, 1);
  assert.ok(b.events.includes('proto:FrameTooLarge'));
});

test('a newer connection from the same peer replaces the old one', async (t) => {
  const b = await startNode(t, 'b');
  b.t.setPeer('a', '127.0.0.1:1');
  const first = await rawClient(t, b.addr);
  first.sock.write(helloFrame(first.enc, 'a'));
  await waitFor(() => b.t.isConnected('a'), 'first');
  const second = await rawClient(t, b.addr);
  second.sock.write(helloFrame(second.enc, 'a'));
  await waitFor(() => first.isClosed(), 'old connection closed');
  assert.equal(second.isClosed(), false);
  assert.equal(b.t.stats().peers.a.duplicates, 1);
  assert.deepEqual(b.events, ['up:a']); // no flap
  b.t.send('a', hb('b', 'a', 4));
  await waitFor(() => second.frames.some((f) => f.kind === 'batch'), 'traffic on the new connection');
});

test('an unreachable peer: the queue is bounded, overflow is dropped and counted, backpressure fires once', async (t) => {
  const [deadPort] = await freePorts(1);

  const a = await startNode(t, 'a', { maxQueueBytes: 4096, peers: { b: `${HOST}:${deadPort}` } });
  await waitFor(() => a.t.stats().peers.b.dialFailures >= 2, 'dial failures');
  let accepted = 0;
  for (let g = 0; g < 200; g++) if (a.t.send('b', hb('a', 'b', g))) accepted++;
  assert.ok(accepted > 0 && accepted < 200, `accepted ${accepted}`);
  const s = a.t.stats().peers.b;
  assert.equal(s.queuedEnvelopes, accepted);
  assert.ok(s.queuedBytes <= 4096);
  assert.equal(s.drops.QueueFull, 200 - accepted);
  assert.equal(s.backpressureEvents, 1);
  assert.deepEqual(
    a.events.filter((e) => e.startsWith('bp:')),
    ['bp:b'],
  );
  assert.equal(a.t.send('nobody', hb('a', 'nobody', 1)), false);
  assert.equal(a.t.stats().drops.UnknownPeer, 1);
});

test('unencodable or oversized envelopes are dropped alone; the rest of the turn is delivered', async (t) => {
  const a = await startNode(t, 'a', { maxFrameBytes: 128 * 1024 });
  const b = await startNode(t, 'b');
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b'), 'connection');
  a.t.send('b', hb('a', 'b', 1));
  a.t.send('b', { k: 'app', t: 'bad', p: Symbol('no') });
  a.t.send('b', hb('a', 'b', 2));
  a.t.send('b', { k: 'app', t: 'huge', p: new Uint8Array(200 * 1024) });
  a.t.send('b', hb('a', 'b', 3));
  await waitFor(() => b.got.length === 3, 'delivery');
  assert.deepEqual(
    b.got.map((g) => (g.env as Extract<Envelope, { k: 'raft' }>).m.group),
    [1, 2, 3],
  );
  assert.deepEqual(a.t.stats().peers.b.drops, { EncodeError: 1, TooLarge: 1 });
  // b accepts 64 MiB frames, but a never sends more than a's own limit either way.
  b.t.send('a', { k: 'app', t: 'big', p: new Uint8Array(100 * 1024) });
  await waitFor(() => a.got.length === 1, 'under the limit');
});

test('a throwing onEnvelopes handler is counted and does not break the link', async (t) => {
  const a = await startNode(t, 'a');
  let calls = 0;
  const b = await startNode(t, 'b', {
    onEnvelopes: () => {
      calls++;
      if (calls === 1) throw new Error('handler bug');
    },
  });
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b'), 'connection');
  a.t.send('b', hb('a', 'b', 1));
  await waitFor(() => calls === 1, 'first call');
  a.t.send('b', hb('a', 'b', 2));
  await waitFor(() => calls === 2, 'second call');
  assert.equal(b.t.stats().handlerErrors, 1);
  assert.equal(b.t.isConnected('a'), true);
});

test('close() ends connections and the server; later sends are refused', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b') && b.t.isConnected('a'), 'connection');
  a.t.send('b', hb('a', 'b', 1)); // flushed by close()
  await a.t.close();
  await waitFor(() => b.events.includes('down:a'), 'b sees a go');
  assert.equal(b.got.length, 1);
  assert.deepEqual(a.events, ['up:b']); // nothing after close()
  assert.equal(a.t.send('b', hb('a', 'b', 2)), false);
  assert.equal(a.t.stats().peers.b.drops.Closed, 1);
  const { port } = parseAddress(a.addr);
  await assert.rejects(
    new Promise((resolve, reject) => {
      const s = net.connect({ host: HOST, port }, () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', reject);
    }),
  );
});

/** A hand-driven acceptor for peer 'b': answers the handshake advertising `maxFrameBytes`, then
 *  records every frame; `pauseAfterHello` makes it stop reading. */
async function rawAcceptor(ctx: TestContext, maxFrameBytes: number, pauseAfterHello: boolean) {
  const sockets: net.Socket[] = [];
  const dec = new FrameDecoder();
  const state = { received: 0, frameSizes: [] as number[], sockets };
  const server = net.createServer((s) => {
    sockets.push(s);
    const enc = new FrameEncoder();
    s.on('error', () => {});
    s.on('data', (c) => {
      for (const r of dec.decode(c)) {
        if (r.kind === 'control') {
          s.write(helloFrame(enc, 'b', { maxFrameBytes }));
          if (pauseAfterHello) s.pause();
        } else if (r.kind === 'batch') {
          state.received += r.envelopes.length;
          state.frameSizes.push(r.frameBytes);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  ctx.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, state };
}

test('frames stay under the limit the peer advertised', async (t) => {
  const raw = await rawAcceptor(t, 64 * 1024, false);
  const a = await startNode(t, 'a', { peers: { b: `${HOST}:${raw.port}` } });
  await waitFor(() => a.t.isConnected('b'), 'handshake');
  for (let i = 0; i < 10; i++) a.t.send('b', { k: 'app', t: 'blob', p: new Uint8Array(20 * 1024) });
  await waitFor(() => raw.state.received === 10, 'delivery');
  assert.ok(raw.state.frameSizes.length > 1);
  for (const n of raw.state.frameSizes) assert.ok(n <= 64 * 1024, `${n}`);
});

test('socket backpressure: writes stop at the high-water mark, the queue absorbs up to its bound, drain sends the backlog as one frame', async (t) => {
  const raw = await rawAcceptor(t, 64 << 20, true);
  const port = raw.port;
  const a = await startNode(t, 'a', { maxQueueBytes: 8 << 20, peers: { b: `${HOST}:${port}` } });
  await waitFor(() => a.t.isConnected('b'), 'handshake with the stalled peer');

  const payload = new Uint8Array(64 * 1024);
  let sent = 0;
  let accepted = 0;
  for (let turn = 0; turn < 2000 && !a.events.includes('bp:b'); turn++) {
    for (let i = 0; i < 16; i++) {
      sent++;
      if (a.t.send('b', { k: 'app', t: 'blob', p: payload })) accepted++;
    }
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(a.events.includes('bp:b'), 'the queue filled up');
  const stalled = a.t.stats().peers.b;
  assert.ok(stalled.queuedEnvelopes > 0, 'envelopes wait in the queue while the socket is blocked');
  assert.ok(stalled.queuedBytes <= 8 << 20);
  assert.equal(stalled.drops.QueueFull, sent - accepted);

  for (const s of raw.state.sockets) s.resume();
  await waitFor(() => raw.state.received === accepted, 'everything accepted is delivered', 10_000);
  const after = a.t.stats().peers.b;
  assert.equal(after.queuedEnvelopes, 0);
  assert.equal(after.framesSent, stalled.framesSent + 1, 'the backlog went out as one frame');
  assert.equal(after.envelopesSent, accepted);
});

test('removePeer closes the connection and stops reconnecting', async (t) => {
  const a = await startNode(t, 'a');
  const b = await startNode(t, 'b');
  mesh([a, b]);
  await waitFor(() => a.t.isConnected('b') && b.t.isConnected('a'), 'connection');
  a.t.removePeer('b');
  await waitFor(() => a.events.includes('down:b') && b.events.includes('down:a'), 'both sides down');
  assert.equal(a.t.send('b', hb('a', 'b', 1)), false);
  assert.equal(a.t.stats().peers.b, undefined);
  // b still knows a, but a never dials again: wait for a later event on a, then check.
  const c = await startNode(t, 'c');
  mesh([a, c]);
  await waitFor(() => a.t.isConnected('c'), 'a still dials others');
  assert.equal(b.t.isConnected('a'), false);
});

test('bulk envelopes go one per frame and never ahead of envelopes sent in the same turn', async (t) => {
  const nodes = [await startNode(t, 'n1'), await startNode(t, 'n2')];
  mesh(nodes);
  const [n1, n2] = nodes;
  await waitFor(() => n1.t.isConnected('n2'), 'connection');
  const chunk = new Uint8Array(256 * 1024);
  // Bulk first, then Raft traffic, in one turn: the Raft traffic still leaves first.
  for (let i = 0; i < 3; i++) n1.t.sendBulk('n2', { k: 'app', t: 'bulk', p: { i, b: chunk } });
  for (let g = 0; g < 50; g++) n1.t.send('n2', hb('n1', 'n2', g));
  await waitFor(() => n2.got.length === 53, 'delivery');
  const kinds = n2.got.map((g) => g.env.k);
  assert.deepEqual(kinds.slice(0, 50), Array(50).fill('raft'), 'Raft envelopes before any bulk one');
  const bulk = n2.got
    .slice(50)
    .map((g) => (g.env as Extract<Envelope, { k: 'app' }>).p as { i: number; b: Uint8Array });
  assert.deepEqual(
    bulk.map((p) => p.i),
    [0, 1, 2],
    'bulk envelopes in order',
  );
  for (const p of bulk) assert.equal(p.b.byteLength, chunk.byteLength);
  const s = n1.t.stats().peers.n2;
  assert.equal(s.framesSent, 4, 'one frame of Raft envelopes, then one frame per bulk envelope');
  assert.ok(s.largestFrameSent < chunk.byteLength + 1024);
  assert.equal(s.queuedEnvelopes, 0);
});
