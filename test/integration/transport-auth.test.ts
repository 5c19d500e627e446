// Transport authentication: mutual TLS with certificates from a cluster CA (node ids checked
// against the certificates) and the cluster secret's HMAC challenge-response, over 127.0.0.1.
// A throwaway PKI is made with the `openssl` CLI in a temporary directory. Every refusal is
// checked for its typed error, log line and counter, and for nothing being delivered.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AUTH_SCHEME,
  FrameDecoder,
  FrameEncoder,
  HandshakeError,
  Transport,
  authProof,
  certificateNames,
  makeHello,
  makeProofFrame,
  parseAddress,
  type AuthTranscript,
  type DecodeResult,
  type Envelope,
  type TransportOptions,
  type TransportTlsOptions,
} from '../../src/transport/index.js';
import { closeAdmin, startAdmin } from '../../src/http/admin.js';
import { pino } from 'pino';
import { startNode as startFlotilla, type FlotillaNode, type StartOptions } from '../../src/runtime/node.js';
import { ConfigError, parseStartArgs } from '../../src/cli/start.js';
import type { NodeId } from '../../src/raft/index.js';
import { freePorts, until } from '../helpers/net.js';
import { memoryLogger } from '../helpers/log.js';

const HOST = '127.0.0.1';
const CLUSTER = 'auth-cluster';
const SECRET = 'correct horse battery staple 42';
const WRONG = 'incorrect mule battery staple 43';

// ---------------------------------------------------------------------------------------------
// A throwaway PKI: CA "A" (the cluster) and CA "B" (a stranger), made once for the whole file.

interface Pki {
  dir: string;
  /** `${ca}:${name}` -> PEMs; ca is 'A' or 'B'. */
  node(ca: 'A' | 'B', name: string): TransportTlsOptions;
  caPem(ca: 'A' | 'B'): string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makePki(): Pki {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    throw new Error('transport-auth tests need the openssl CLI to make their throwaway CA and certificates');
  }
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-pki-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['A', 'B']) {
    openssl(
      [
        'req',
        '-x509',
        ...ec,
        '-keyout',
        `ca${ca}.key`,
        '-out',
        `ca${ca}.pem`,
        '-days',
        '2',
        '-subj',
        `/CN=flotilla test CA ${ca}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
  }
  let serial = 1000;
  const issue = (ca: 'A' | 'B', name: string, cn: string, san: string | null) => {
    const base = `${ca}-${name}`;
    openssl(['req', '-new', ...ec, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${cn}`], dir);
    const ext = [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth,clientAuth',
    ];
    if (san !== null) ext.push(`subjectAltName=${san}`);
    writeFileSync(join(dir, `${base}.ext`), ext.join('\n') + '\n');
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        `ca${ca}.pem`,
        '-CAkey',
        `ca${ca}.key`,
        '-set_serial',
        String(serial++),
        '-days',
        '2',
        '-out',
        `${base}.pem`,
        '-extfile',
        `${base}.ext`,
      ],
      dir,
    );
  };
  // n1: identified by CN only; n2: by a SAN only (its CN is something else); n3: both.
  issue('A', 'n1', 'n1', null);
  issue('A', 'n2', 'flotilla node two', 'DNS:n2');
  issue('A', 'n3', 'n3', 'DNS:n3,IP:127.0.0.1');
  issue('B', 'n1', 'n1', 'DNS:n1');
  issue('B', 'n2', 'n2', 'DNS:n2');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    dir,
    caPem: (ca) => read(`ca${ca}.pem`),
    node: (ca, name) => ({ ca: read(`ca${ca}.pem`), cert: read(`${ca}-${name}.pem`), key: read(`${ca}-${name}.key`) }),
  };
}

let pkiCache: Pki | null = null;
function pki(): Pki {
  pkiCache ??= makePki();
  return pkiCache;
}
process.on('exit', () => {
  if (pkiCache) rmSync(pkiCache.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Helpers (as in transport.test.ts)

function hb(from: NodeId, to: NodeId, group: number): Envelope {
  return { k: 'raft', m: { type: 'hb', group, from, to, term: 3, commit: group, ctx: '', seq: group, quiesce: false } };
}

interface Node {
  t: Transport;
  addr: string;
  got: { from: NodeId; env: Envelope }[];
  events: string[];
  errors: HandshakeError[];
}

async function startT(ctx: TestContext, id: NodeId, opts: Partial<TransportOptions> = {}): Promise<Node> {
  const got: Node['got'] = [];
  const events: string[] = [];
  const errors: HandshakeError[] = [];
  const t = new Transport({
    nodeId: id,
    clusterId: CLUSTER,
    listen: { host: HOST, port: 0 },
    peers: {},
    reconnect: { minMs: 20, maxMs: 100, random: () => 0.5 },
    onEnvelopes: (from, envs) => {
      for (const env of envs) got.push({ from, env });
    },
    ...opts,
  });
  t.on('peerUp', (p) => events.push(`up:${p}`));
  t.on('peerDown', (p) => events.push(`down:${p}`));
  t.on('handshakeError', (e) => {
    errors.push(e);
    events.push(`hs:${e.side}:${e.reason}`);
  });
  const a = await t.start();
  ctx.after(() => t.close());
  return { t, addr: `${a.host}:${a.port}`, got, events, errors };
}

async function waitFor(cond: () => boolean, what: string, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A TCP proxy in front of `target` recording every byte in both directions. */
async function tap(ctx: TestContext, target: string) {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect(parseAddress(target));
    for (const s of [c, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    c.on('data', (d: Buffer) => {
      chunks.push(Buffer.from(d));
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      chunks.push(Buffer.from(d));
      c.write(d);
    });
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  ctx.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const { port } = server.address() as net.AddressInfo;
  return { addr: `${HOST}:${port}`, bytes: () => Buffer.concat(chunks) };
}

/** A hand-driven plain-TCP client speaking the wire protocol. */
async function rawClient(ctx: TestContext, addr: string) {
  const sock = net.connect(parseAddress(addr));
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

function control(r: DecodeResult | undefined): Readonly<Record<string, unknown>> {
  assert.ok(r !== undefined && r.kind === 'control', `expected a control frame, got ${r?.kind}`);
  return r.body;
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS

test('certificateNames: CN (string or several) and subjectAltName values, quoted ones included', () => {
  assert.deepEqual(certificateNames({ subject: { CN: 'n1' } }), ['n1'], 'CN only');
  assert.deepEqual(
    certificateNames({
      subject: { CN: ['a', 'b'] },
      subjectaltname: 'DNS:n2, IP Address:127.0.0.1, URI:spiffe://c/n2',
    }),
    ['a', 'b', 'n2', '127.0.0.1', 'spiffe://c/n2'],
    'CNs and SANs',
  );
  assert.deepEqual(
    certificateNames({ subjectaltname: 'DNS:"evil, DNS:n2", DNS:n3' }),
    ['evil, DNS:n2', 'n3'],
    'a quoted SAN is one value',
  );
  assert.deepEqual(certificateNames({}), [], 'no names');
  assert.deepEqual(certificateNames(null), [], 'no certificate');
});

test('TLS options are checked when the transport is built', () => {
  const n1 = pki().node('A', 'n1');
  const base = { nodeId: 'n1', clusterId: CLUSTER, listen: { host: HOST, port: 0 }, peers: {} };
  assert.throws(
    () => new Transport({ ...base, tls: { ...n1, ca: 'not a pem' } }),
    /^RangeError: tls\.ca:/,
    'garbage CA',
  );
  assert.throws(() => new Transport({ ...base, tls: { ...n1, cert: '' } }), /^RangeError: tls\.cert:/, 'empty cert');
  assert.throws(
    () => new Transport({ ...base, tls: { ...n1, key: pki().node('A', 'n2').key } }),
    /^RangeError: tls\.key:/,
    'key of another cert',
  );
  assert.throws(() => new Transport({ ...base, secret: 'short' }), /^RangeError: secret:/, 'short secret');
});

test('mutual TLS: nodes with certificates from the cluster CA connect and exchange messages, encrypted', async (t) => {
  const n2 = await startT(t, 'n2', { tls: pki().node('A', 'n2') });
  const proxy = await tap(t, n2.addr);
  const n1 = await startT(t, 'n1', { tls: pki().node('A', 'n1'), peers: { n2: proxy.addr } });
  n2.t.setPeer('n1', n1.addr);
  await waitFor(() => n1.t.isConnected('n2') && n2.t.isConnected('n1'), 'TLS link up');
  n1.t.send('n2', hb('n1', 'n2', 1));
  n2.t.send('n1', hb('n2', 'n1', 2));
  await waitFor(() => n1.got.length === 1 && n2.got.length === 1, 'delivery both ways');
  assert.equal(n2.got[0].from, 'n1', 'n2 got it from n1');
  assert.equal(n1.got[0].from, 'n2', 'n1 got it from n2');
  assert.deepEqual(n1.events, ['up:n2'], 'dialer: one peerUp, no handshake errors');
  assert.deepEqual(n2.events, ['up:n1'], 'acceptor: one peerUp, no handshake errors');
  const wire = proxy.bytes();
  assert.ok(wire.length > 500, `the proxy saw the TLS traffic (${wire.length} bytes)`);
  assert.equal(
    wire.includes(Buffer.from(CLUSTER)),
    false,
    'the cluster id of the hello is not visible: the link is encrypted',
  );
  assert.equal(wire[0], 0x16, 'the first byte on the wire is a TLS handshake record');
  await n1.t.close();
  await waitFor(() => n2.events.includes('down:n1'), 'peer down');
  await sleep(50);
  assert.deepEqual(n2.t.stats().handshakeFailures, {}, 'a good TLS connection closing is not counted as a failure');
});

test('mutual TLS: a certificate from another CA cannot connect, in either direction; nothing is delivered', async (t) => {
  const memA = memoryLogger();
  // Strangers trust the cluster CA (so only their own certificate is wrong) but hold B's certificates.
  const stranger = (name: string): TransportTlsOptions => ({ ...pki().node('B', name), ca: pki().caPem('A') });

  // (1) A stranger dials a cluster node: the acceptor rejects its client certificate.
  const acceptor = await startT(t, 'n2', { tls: pki().node('A', 'n2'), logger: memA.logger });
  const evilDialer = await startT(t, 'n1', { tls: stranger('n1'), peers: { n2: acceptor.addr } });
  acceptor.t.setPeer('n1', '127.0.0.1:1');
  // (2) A cluster node dials a stranger: the dialer rejects the server certificate.
  const evilAcceptor = await startT(t, 'n2', { tls: stranger('n2') });
  const dialer = await startT(t, 'n1', { tls: pki().node('A', 'n1'), peers: { n2: evilAcceptor.addr } });
  evilAcceptor.t.setPeer('n1', '127.0.0.1:1');

  for (let i = 0; i < 3; i++) {
    evilDialer.t.send('n2', hb('n1', 'n2', 10 + i));
    evilAcceptor.t.send('n1', hb('n2', 'n1', 20 + i));
  }
  await waitFor(
    () => (acceptor.t.stats().handshakeFailures.TlsFailed ?? 0) >= 2,
    'the acceptor refuses the stranger twice (a retry too)',
  );
  await waitFor(
    () => (dialer.t.stats().handshakeFailures.TlsFailed ?? 0) >= 2,
    'the dialer refuses the stranger twice',
  );
  await sleep(100);

  assert.equal(acceptor.got.length, 0, 'nothing from the stranger reached the acceptor');
  assert.equal(dialer.got.length, 0, 'nothing from the stranger reached the dialer');
  assert.equal(
    acceptor.events.some((e) => e.startsWith('up:')),
    false,
    'the acceptor never saw the stranger up',
  );
  assert.equal(
    dialer.events.some((e) => e.startsWith('up:')),
    false,
    'the dialer never saw the stranger up',
  );
  assert.equal(
    evilDialer.events.some((e) => e.startsWith('up:')),
    false,
    'the stranger never got a link (dialling)',
  );
  assert.ok(
    evilDialer.errors.some((x) => x.reason === 'TlsFailed' && x.side === 'dial'),
    'the stranger is told its TLS handshake failed',
  );
  assert.equal(
    evilAcceptor.events.some((e) => e.startsWith('up:')),
    false,
    'the stranger never got a link (accepting)',
  );
  const e = acceptor.errors.find((x) => x.reason === 'TlsFailed');
  assert.ok(e instanceof HandshakeError && e.side === 'accept', 'a typed accept-side error');
  assert.ok(
    dialer.errors.some((x) => x.reason === 'TlsFailed' && x.side === 'dial' && x.peer === 'n2'),
    'a typed dial-side error naming the peer',
  );
  assert.ok(
    memA.lines.some((l) => l.reason === 'TlsFailed' && l.msg === 'handshake failed'),
    'a log line on the acceptor',
  );
});

test("mutual TLS: a node presenting n3's certificate while claiming to be n2 is refused (CertMismatch)", async (t) => {
  const mem = memoryLogger();
  const n3cert = pki().node('A', 'n3');
  // (1) The impostor dials the real n3 (n2 < n3): n3 checks the client certificate against the claim.
  const n3 = await startT(t, 'n3', { tls: n3cert, logger: mem.logger });
  const impostorDialer = await startT(t, 'n2', { tls: n3cert, peers: { n3: n3.addr } });
  n3.t.setPeer('n2', '127.0.0.1:1');
  // (2) The real n1 dials the impostor (n1 < n2): n1 checks the server certificate.
  const impostorAcceptor = await startT(t, 'n2', { tls: n3cert });
  const n1 = await startT(t, 'n1', { tls: pki().node('A', 'n1'), peers: { n2: impostorAcceptor.addr } });
  impostorAcceptor.t.setPeer('n1', n1.addr);

  impostorDialer.t.send('n3', hb('n2', 'n3', 1));
  impostorAcceptor.t.send('n1', hb('n2', 'n1', 2));
  await waitFor(() => (n3.t.stats().handshakeFailures.CertMismatch ?? 0) >= 2, 'n3 refuses the impostor (twice)');
  await waitFor(() => (n1.t.stats().handshakeFailures.CertMismatch ?? 0) >= 2, 'n1 refuses the impostor (twice)');
  await waitFor(() => impostorDialer.events.includes('hs:dial:CertMismatch'), 'the impostor is told why');
  await sleep(100);

  const refusal = n3.errors.find((e) => e.reason === 'CertMismatch')!;
  assert.equal(refusal.side, 'accept', 'refused on accept');
  assert.equal(refusal.peer, 'n2', 'the claimed id is reported');
  assert.match(refusal.detail, /n3/, 'the detail names what the certificate says');
  assert.ok(
    mem.lines.some((l) => l.reason === 'CertMismatch' && l.msg === 'handshake failed'),
    'a log line',
  );
  assert.ok(
    n1.errors.some((e) => e.reason === 'CertMismatch' && e.side === 'dial' && e.peer === 'n2'),
    'the dialer refuses the wrong server certificate',
  );
  assert.equal(n3.got.length + n1.got.length, 0, 'nothing delivered from the impostor');
  assert.equal(
    n3.events.some((e) => e.startsWith('up:')) || n1.events.some((e) => e.startsWith('up:')),
    false,
    'no peerUp for the impostor',
  );
});

test('a plain-TCP node cannot talk to a TLS node (either way)', async (t) => {
  const tlsNode = await startT(t, 'n2', { tls: pki().node('A', 'n2') });
  tlsNode.t.setPeer('n1', '127.0.0.1:1');
  const c = await rawClient(t, tlsNode.addr);
  c.sock.write(c.enc.encodeControl({ ...makeHello(CLUSTER, 'n1', 1 << 20) }));
  c.sock.write(c.enc.encodeBatch([hb('n1', 'n2', 1)]));
  await waitFor(() => c.isClosed(), 'the TLS listener drops the plain client');
  assert.equal(c.frames.length, 0, 'no frame answered to a plain client');
  await waitFor(() => (tlsNode.t.stats().handshakeFailures.TlsFailed ?? 0) >= 1, 'counted as TlsFailed');

  const plain = await startT(t, 'n4');
  const tlsDialer = await startT(t, 'n3', { tls: pki().node('A', 'n3'), peers: { n4: plain.addr } });
  plain.t.setPeer('n3', tlsDialer.addr);
  tlsDialer.t.send('n4', hb('n3', 'n4', 1));
  await waitFor(
    () => (tlsDialer.t.stats().peers.n4.dialFailures ?? 0) >= 2,
    'the TLS dialer fails against a plain listener',
  );
  assert.equal(plain.got.length + tlsNode.got.length, 0, 'nothing delivered');
  assert.equal(tlsDialer.t.isConnected('n4'), false, 'no link');
});

// ---------------------------------------------------------------------------------------------
// Cluster secret

test('cluster secret: matching secrets connect; wrong or missing secrets are refused; the secret never crosses the wire', async (t) => {
  const mem = memoryLogger();
  const acceptor = await startT(t, 'n5', { secret: SECRET, logger: mem.logger });
  for (const id of ['n1', 'n2', 'n3']) acceptor.t.setPeer(id, '127.0.0.1:1'); // they dial n5
  const taps = {
    good: await tap(t, acceptor.addr),
    wrong: await tap(t, acceptor.addr),
    none: await tap(t, acceptor.addr),
  };
  const good = await startT(t, 'n1', { secret: SECRET, peers: { n5: taps.good.addr } });
  const wrong = await startT(t, 'n2', { secret: WRONG, peers: { n5: taps.wrong.addr } });
  const none = await startT(t, 'n3', { peers: { n5: taps.none.addr } });

  await waitFor(() => good.t.isConnected('n5') && acceptor.t.isConnected('n1'), 'the good node connects');
  good.t.send('n5', hb('n1', 'n5', 1));
  acceptor.t.send('n1', hb('n5', 'n1', 2));
  wrong.t.send('n5', hb('n2', 'n5', 3));
  none.t.send('n5', hb('n3', 'n5', 4));
  await waitFor(() => (acceptor.t.stats().handshakeFailures.AuthFailed ?? 0) >= 2, 'the wrong secret refused (twice)');
  await waitFor(
    () => (acceptor.t.stats().handshakeFailures.AuthMismatch ?? 0) >= 2,
    'the missing secret refused (twice)',
  );
  await waitFor(() => acceptor.got.length === 1 && good.got.length === 1, 'good delivery both ways');
  await sleep(100);

  assert.deepEqual(
    acceptor.got.map((g) => g.from),
    ['n1'],
    'only the good node delivered anything',
  );
  assert.deepEqual(
    acceptor.events.filter((e) => e.startsWith('up:')),
    ['up:n1'],
    'only the good node came up',
  );
  assert.equal(wrong.t.isConnected('n5') || none.t.isConnected('n5'), false, 'the others have no link');
  assert.ok(wrong.events.includes('hs:dial:AuthFailed'), 'the wrong-secret node is told AuthFailed');
  assert.ok(none.events.includes('hs:dial:AuthMismatch'), 'the secret-less node is told AuthMismatch');
  assert.equal(
    wrong.events.some((e) => e.startsWith('up:')) || none.events.some((e) => e.startsWith('up:')),
    false,
    'no peerUp for the refused',
  );

  const failed = acceptor.errors.find((e) => e.reason === 'AuthFailed')!;
  assert.ok(failed instanceof HandshakeError, 'typed error');
  assert.equal(failed.side, 'accept', 'refused on accept');
  assert.equal(failed.peer, 'n2', 'names the claimed node');
  const mismatch = acceptor.errors.find((e) => e.reason === 'AuthMismatch')!;
  assert.match(mismatch.detail, /requires the cluster secret/, `a clear reason: ${mismatch.detail}`);
  assert.ok(
    mem.lines.some((l) => l.reason === 'AuthFailed' && l.msg === 'handshake failed' && l.peer === 'n2'),
    'a log line for AuthFailed',
  );
  assert.ok(
    mem.lines.some((l) => l.reason === 'AuthMismatch' && l.msg === 'handshake failed'),
    'a log line for AuthMismatch',
  );

  for (const [name, p] of Object.entries(taps)) {
    const wire = p.bytes();
    assert.ok(wire.length > 0, `${name}: the proxy saw traffic`);
    for (const s of [SECRET, WRONG]) {
      for (const form of [
        Buffer.from(s),
        Buffer.from(Buffer.from(s).toString('hex')),
        Buffer.from(Buffer.from(s).toString('base64')),
      ]) {
        assert.equal(wire.includes(form), false, `${name}: the secret is not on the wire (${form.length} bytes form)`);
      }
    }
  }
  assert.ok(
    taps.good.bytes().includes(Buffer.from(AUTH_SCHEME)),
    'the good link went through the challenge (and through the proxy)',
  );
});

test('cluster secret: a node without one refuses a peer that sends one, with a clear reason', async (t) => {
  const acceptor = await startT(t, 'n9');
  acceptor.t.setPeer('n8', '127.0.0.1:1');
  const dialer = await startT(t, 'n8', { secret: SECRET, peers: { n9: acceptor.addr } });
  dialer.t.send('n9', hb('n8', 'n9', 1));
  await waitFor(
    () =>
      dialer.events.includes('hs:dial:AuthMismatch') && (acceptor.t.stats().handshakeFailures.AuthMismatch ?? 0) >= 1,
    'mismatch both sides',
  );
  const e = acceptor.errors.find((x) => x.reason === 'AuthMismatch')!;
  assert.match(e.detail, /uses a cluster secret but "n9" has none configured/, `clear reason: ${e.detail}`);
  assert.equal(acceptor.got.length, 0, 'nothing delivered');
  assert.equal(dialer.t.isConnected('n9'), false, 'no link');
});

test('cluster secret on the wire: reflected or replayed proofs are refused; the protocol as specified is accepted', async (t) => {
  const acceptor = await startT(t, 'n5', { secret: SECRET });
  acceptor.t.setPeer('n1', '127.0.0.1:1');
  const nonce = Buffer.alloc(32, 7);
  const transcriptWith = (acceptorNonce: Uint8Array): AuthTranscript => ({
    clusterId: CLUSTER,
    dialer: 'n1',
    acceptor: 'n5',
    dialerNonce: nonce,
    acceptorNonce,
  });

  const session = async () => {
    const c = await rawClient(t, acceptor.addr);
    c.sock.write(c.enc.encodeControl({ ...makeHello(CLUSTER, 'n1', 1 << 20, { scheme: AUTH_SCHEME, nonce }) }));
    await waitFor(() => c.frames.length >= 1, 'challenge');
    const hello = control(c.frames[0]);
    assert.equal(hello.hs, 'hello', 'the acceptor answers with its hello');
    const auth = hello.auth as { scheme: string; nonce: Uint8Array };
    assert.equal(auth.scheme, AUTH_SCHEME, 'with a challenge');
    assert.equal(auth.nonce.length, 32, 'a 32-byte nonce');
    assert.equal('proof' in hello, false, 'and no proof before the dialer proved itself');
    return { c, acceptorNonce: auth.nonce };
  };

  // Reflection: the acceptor's own kind of proof (role "acceptor") is useless as the dialer's.
  const r = await session();
  r.c.sock.write(
    r.c.enc.encodeControl({
      ...makeProofFrame('auth', authProof(SECRET, 'acceptor', transcriptWith(r.acceptorNonce))),
    }),
  );
  await waitFor(() => r.c.isClosed(), 'reflected proof: closed');
  assert.equal(control(r.c.frames[1]).reason, 'AuthFailed', 'reflected proof refused');

  // The specified exchange works and the acceptor proves itself back.
  const ok = await session();
  const firstNonce = ok.acceptorNonce;
  const goodProof = authProof(SECRET, 'dialer', transcriptWith(firstNonce));
  ok.c.sock.write(ok.c.enc.encodeControl({ ...makeProofFrame('auth', goodProof) }));
  await waitFor(() => ok.c.frames.length >= 2, 'ok');
  const reply = control(ok.c.frames[1]);
  assert.equal(reply.hs, 'ok', 'accepted');
  assert.deepEqual(
    Buffer.from(reply.proof as Uint8Array),
    authProof(SECRET, 'acceptor', transcriptWith(firstNonce)),
    'the acceptor proves the secret',
  );
  await waitFor(() => acceptor.t.isConnected('n1'), 'peer up');
  ok.c.sock.write(ok.c.enc.encodeBatch([hb('n1', 'n5', 1)]));
  await waitFor(() => acceptor.got.length === 1, 'delivered after the proof');
  ok.c.sock.destroy();
  await waitFor(() => !acceptor.t.isConnected('n1'), 'peer down');

  // Replay: the same proof in a new session (new acceptor nonce) is refused.
  const replay = await session();
  assert.notDeepEqual(Buffer.from(replay.acceptorNonce), Buffer.from(firstNonce), 'a fresh nonce per connection');
  replay.c.sock.write(replay.c.enc.encodeControl({ ...makeProofFrame('auth', goodProof) }));
  replay.c.sock.write(replay.c.enc.encodeBatch([hb('n1', 'n5', 2)]));
  await waitFor(() => replay.c.isClosed(), 'replay: closed');
  assert.equal(control(replay.c.frames[1]).reason, 'AuthFailed', 'replayed proof refused');

  // Data right after the hello, without a proof, is refused too.
  const early = await session();
  early.c.sock.write(early.c.enc.encodeBatch([hb('n1', 'n5', 3)]));
  await waitFor(() => early.c.isClosed(), 'early data: closed');

  assert.equal(acceptor.got.length, 1, 'only the authenticated session delivered anything');
  assert.equal(acceptor.t.stats().handshakeFailures.AuthFailed, 2, 'two AuthFailed counted');
});

test('TLS and a cluster secret together: both must be right', async (t) => {
  const n2 = await startT(t, 'n2', { tls: pki().node('A', 'n2'), secret: SECRET });
  const n1 = await startT(t, 'n1', { tls: pki().node('A', 'n1'), secret: SECRET, peers: { n2: n2.addr } });
  n2.t.setPeer('n1', n1.addr);
  await waitFor(() => n1.t.isConnected('n2') && n2.t.isConnected('n1'), 'TLS + secret link');
  n1.t.send('n2', hb('n1', 'n2', 1));
  await waitFor(() => n2.got.length === 1, 'delivery');
  // n3: a valid certificate for its id, the wrong secret. n4: the right secret, n3's certificate.
  const n3 = await startT(t, 'n3', { tls: pki().node('A', 'n3'), secret: WRONG });
  const n4 = await startT(t, 'n4', { tls: pki().node('A', 'n3'), secret: SECRET });
  // n2 dials n3: n3 has a valid certificate but the wrong secret.
  n2.t.setPeer('n3', n3.addr);
  n3.t.setPeer('n2', n2.addr);
  n3.t.send('n2', hb('n3', 'n2', 2));
  await waitFor(
    () => (n3.t.stats().handshakeFailures.AuthFailed ?? 0) >= 1 && n2.events.includes('hs:dial:AuthFailed'),
    'wrong secret over TLS refused',
  );
  // n2 dials n4: the right secret, but n4's certificate names n3.
  n2.t.setPeer('n4', n4.addr);
  n4.t.setPeer('n2', n2.addr);
  n4.t.send('n2', hb('n4', 'n2', 3));
  await waitFor(
    () => n2.errors.some((e) => e.reason === 'CertMismatch' && e.peer === 'n4'),
    'right secret, wrong certificate refused',
  );
  await sleep(100);
  assert.deepEqual(
    n2.got.map((g) => g.from),
    ['n1'],
    'only n1 delivered',
  );
  assert.equal(n2.t.isConnected('n3') || n2.t.isConnected('n4'), false, 'no link to the refused');
});

// ---------------------------------------------------------------------------------------------
// startNode and `flotilla start`

test('three startNode nodes with mutual TLS and a cluster secret elect leaders and serve kv put/get', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-auth-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(3);
  const addr = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const optsOf = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr.get(id)!,
    groups: 6,
    tickMs: 20,
    requestTimeoutMs: 8000,
    workers: 1,
    noSync: true,
    peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
    transportSecurity: { tls: pki().node('A', id), secret: SECRET },
  });
  const nodes = new Map<string, FlotillaNode>();
  try {
    await assert.rejects(
      startFlotilla({ ...optsOf('n1'), transportSecurity: { secret: 'short' } }),
      /InvalidArgument|transportSecurity\.secret/,
      'a short secret is refused',
    );
    for (const id of ids) nodes.set(id, await startFlotilla(optsOf(id)));
    await until(
      'every group led',
      async () =>
        (await Promise.all([...nodes.values()].map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0) === 6,
      60_000,
    );
    for (const [id, n] of nodes) for (let k = 0; k < 6; k++) await n.kv.put(`${id}-k${k}`, `v-${id}-${k}`);
    const dec = new TextDecoder();
    for (const n of nodes.values()) {
      for (const w of ids)
        assert.equal(dec.decode((await n.kv.get(`${w}-k3`))!), `v-${w}-3`, `${n.id} reads ${w}'s key`);
    }

    // An intruder with a certificate from another CA, claiming to be n1, cannot join n3.
    const intruder = new Transport({
      nodeId: 'n1',
      clusterId: 'whatever',
      listen: { host: HOST, port: 0 },
      peers: { n3: addr.get('n3')! },
      tls: { ...pki().node('B', 'n1'), ca: pki().caPem('A') },
    });
    await intruder.start();
    t.after(() => intruder.close());
    await until(
      'n3 refuses the intruder',
      async () => ((await nodes.get('n3')!.status()).transport.handshakeFailures.TlsFailed ?? 0) >= 1,
      10_000,
    );
    assert.equal(intruder.isConnected('n3'), false, 'the intruder has no link');
    // Operators see the refusal in /metrics.
    const admin = await startAdmin(nodes.get('n3')!, HOST, 0, pino({ level: 'silent' }));
    t.after(() => closeAdmin(admin));
    const text = await (await fetch(`http://${HOST}:${(admin.address() as { port: number }).port}/metrics`)).text();
    const m = /flotilla_transport_handshake_failures_total\{node="n3",reason="TlsFailed"\} (\d+)/.exec(text);
    assert.ok(
      m && Number(m[1]) >= 1,
      `handshake failures in /metrics:\n${text
        .split('\n')
        .filter((l) => l.includes('transport_'))
        .join('\n')}`,
    );
    // A loaded machine may drop and redial a link (20 ms ticks here); the real peers stay welcome.
    await until(
      'n3 still talks to the real n1 and n2',
      async () => (await nodes.get('n3')!.status()).peers.sort().join() === 'n1,n2',
      10_000,
    );
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
});

test('flotilla start: TLS and cluster-secret flags, config fields and the environment; bad values name their field', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-auth-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = pki().dir;
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, `${SECRET}\n`);
  const shortFile = join(dir, 'short');
  writeFileSync(shortFile, 'tooshort\n');
  const base = ['--id', 'n1', '--data', dir, '--listen', '127.0.0.1:7001'];
  const tlsFlags = [
    '--tls-ca',
    join(p, 'caA.pem'),
    '--tls-cert',
    join(p, 'A-n1.pem'),
    '--tls-key',
    join(p, 'A-n1.key'),
  ];
  const saved = process.env.FLOTILLA_CLUSTER_SECRET;
  delete process.env.FLOTILLA_CLUSTER_SECRET;
  t.after(() => {
    if (saved === undefined) delete process.env.FLOTILLA_CLUSTER_SECRET;
    else process.env.FLOTILLA_CLUSTER_SECRET = saved;
  });
  const fieldOf = (argv: string[]) => {
    try {
      parseStartArgs(argv);
    } catch (e) {
      assert.ok(e instanceof ConfigError, `a ConfigError, got ${(e as Error).message}`);
      return e.field;
    }
    return null;
  };

  assert.equal(parseStartArgs(base).transportSecurity, undefined, 'nothing by default');
  const both = parseStartArgs([...base, ...tlsFlags, '--cluster-secret-file', secretFile]).transportSecurity!;
  assert.equal(both.secret, SECRET, 'secret read from the file, trailing newline dropped');
  assert.match(String(both.tls!.cert), /BEGIN CERTIFICATE/, 'certificate read');
  assert.match(String(both.tls!.key), /PRIVATE KEY/, 'key read');

  const cfgFile = join(dir, 'node.json');
  writeFileSync(
    cfgFile,
    JSON.stringify({
      tlsCa: join(p, 'caA.pem'),
      tlsCert: join(p, 'A-n1.pem'),
      tlsKey: join(p, 'A-n1.key'),
      clusterSecretFile: secretFile,
    }),
  );
  const fromFile = parseStartArgs([...base, '--config', cfgFile]).transportSecurity!;
  assert.equal(fromFile.secret, SECRET, 'config field clusterSecretFile');
  assert.ok(fromFile.tls, 'config fields tlsCa/tlsCert/tlsKey');

  process.env.FLOTILLA_CLUSTER_SECRET = SECRET;
  assert.equal(parseStartArgs(base).transportSecurity?.secret, SECRET, 'FLOTILLA_CLUSTER_SECRET');
  process.env.FLOTILLA_CLUSTER_SECRET = 'short';
  assert.equal(fieldOf(base), 'FLOTILLA_CLUSTER_SECRET', 'a short secret in the environment');
  delete process.env.FLOTILLA_CLUSTER_SECRET;

  assert.equal(
    fieldOf([...base, '--cluster-secret-file', shortFile]),
    'transportSecurity.secret',
    'secret shorter than 16 characters',
  );
  assert.equal(
    fieldOf([...base, '--cluster-secret-file', join(dir, 'missing')]),
    'transportSecurity.secret',
    'unreadable secret file',
  );
  assert.equal(
    fieldOf([...base, '--tls-ca', join(p, 'caA.pem'), '--tls-cert', join(p, 'A-n1.pem')]),
    'transportSecurity.tls.key',
    'TLS flags must come together',
  );
  assert.equal(
    fieldOf([...base, ...tlsFlags.slice(0, 4), '--tls-key', join(dir, 'missing.key')]),
    'transportSecurity.tls.key',
    'unreadable key',
  );
  assert.equal(
    fieldOf([...base, '--tls-ca', secretFile, ...tlsFlags.slice(2)]),
    'transportSecurity.tls.ca',
    'a CA file that is not a certificate',
  );
  assert.equal(
    fieldOf([...base, ...tlsFlags.slice(0, 4), '--tls-key', join(p, 'A-n2.key')]),
    'transportSecurity.tls.key',
    'a key that does not match the certificate',
  );
});
