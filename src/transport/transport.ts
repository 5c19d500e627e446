// Node-to-node transport. Owns the TCP links between nodes, the per-peer bounded send queues and
// their once-per-turn batching into frames, the connection policy, reconnects, hostile-input
// handling and the transport's counters. Frame format: codec.ts; first frame: handshake.ts.
//
// Connection policy (one TCP connection per node pair): of two nodes, the one whose id is smaller
// (plain JS string comparison, the same on both sides) dials and the other accepts. A dialer that
// hears nothing back reconnects with jittered exponential backoff; an acceptor only waits. If an
// acceptor gets a second connection from a peer that already has one, the NEWER one is kept and
// the old one closed: a dialer only dials when it believes it has no connection, so the old one
// is dead from its point of view (half-open), and keeping it would black-hole traffic. The swap
// emits no peerDown/peerUp (the peer never stopped being reachable from here); it is counted.
//
// Sending: send() only queues. All envelopes queued for a peer within one event-loop turn go out
// as one frame from a setImmediate callback (after all of the turn's I/O callbacks), split only if
// the frame would exceed the peer's advertised frame limit. While the socket is over its
// high-water mark the queue grows instead and is written as one frame on 'drain'. The queue is
// bounded (estimated bytes queued + bytes in the socket's buffer); when full, sends are dropped
// and counted — Raft retransmits — and a 'backpressure' event fires once per full episode.
// Envelopes queued while a peer is disconnected (up to the bound) are sent after reconnecting.
//
// Receiving: every frame is decoded and validated in codec.ts; invalid items are dropped and
// counted per reason, the rest of the frame is delivered to `onEnvelopes(from, envelopes)`. A
// broken stream (oversized length, undecodable frame, a data frame before the handshake) closes
// that connection only, with a log line and a counter; outbound links then reconnect.
//
// Authentication (both optional, combinable; see docs/security.md):
//  - `tls`: mutual TLS below the framing. The acceptor listens with tls.createServer (requestCert,
//    rejectUnauthorized) and the dialer connects with tls.connect (rejectUnauthorized), both
//    trusting only the cluster CA. Host names are not checked; node ids are: a dialer refuses an
//    acceptor whose certificate does not name the node it dialled, an acceptor refuses a dialer
//    whose certificate does not name the node id its hello claims (CertMismatch), so one node's
//    certificate cannot impersonate another. Failed TLS handshakes are counted as TlsFailed.
//  - `secret`: a cluster secret proved in the handshake (HMAC challenge-response, handshake.ts);
//    it authenticates the handshake, not the bytes after it (use TLS for that).
// Either way, nothing is delivered and no peerUp fires before every check passed.
//
// Peers change at run time (an elastic cluster, docs/design.md note 8): addPeer() starts dialling
// or accepting a node (a new address for a known one closes its link, which is then redialled
// there); removePeer() closes the link, drops what is queued for it (counted as PeerRemoved),
// refuses its later handshakes (Removed) and never dials it again. A removed id is never added
// back (PeerRemovedError). A node not in the cluster yet connects in join mode (handshake.ts;
// the joiner's side is join.ts): it is authenticated as a member would be, then the owner's
// onJoinRequest decides; without one every join is refused as NotReady.
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import { FrameTooLarge, HandshakeError, PeerRemovedError, TransportStateError } from './errors.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameDecoder,
  FrameEncoder,
  estimateEnvelopeBytes,
  type DecodeResult,
  type DropReason,
  type Envelope,
} from './codec.js';
import {
  HANDSHAKE_MAX_FRAME_BYTES,
  MIN_SECRET_LENGTH,
  authProof,
  checkAcceptorReply,
  checkDialerHello,
  checkProofFrame,
  makeHello,
  makeJoined,
  makeProofFrame,
  makeRefusal,
  newAuthSlot,
  verifyProof,
  type AuthTranscript,
  type HandshakeCheck,
  type HandshakeReason,
  type JoinRefusalReason,
  type JoinSlot,
} from './handshake.js';

/** Why the transport dropped something: decoder reasons plus the transport's own. */
export type TransportDropReason =
  | DropReason
  | 'QueueFull' //            send() to a peer whose queue is at maxQueueBytes
  | 'TooLarge' //             one envelope alone does not fit in a frame
  | 'EncodeError' //          msgpack cannot encode the envelope (e.g. a Symbol in an app payload)
  | 'UnknownPeer' //          send() to a node that is not in `peers`
  | 'PeerRemoved' //          queued for a peer when it was removed, or sent to it afterwards
  | 'Closed' //               send() after close()
  | 'FrameBeforeHandshake' // a data frame arrived before the handshake completed
  | 'UnexpectedControl' //    a control frame after the handshake (ignored)
  | 'InternalError'; //       a bug handling a connection's input: logged, that connection closed

export interface PeerStats {
  connected: boolean;
  /** Data frames (batches); handshake frames are not counted. */
  framesSent: number;
  bytesSent: number;
  envelopesSent: number;
  /** The largest data frame sent, bytes (header included). */
  largestFrameSent: number;
  framesReceived: number;
  bytesReceived: number;
  envelopesReceived: number;
  queuedEnvelopes: number;
  queuedBytes: number;
  /** Outbound connection attempts (dialling side only). */
  dials: number;
  dialFailures: number;
  /** Completed handshakes; `reconnects` counts those after the first. */
  connects: number;
  reconnects: number;
  disconnects: number;
  /** Connections replaced by a newer one from the same peer. */
  duplicates: number;
  backpressureEvents: number;
  drops: Partial<Record<TransportDropReason, number>>;
}

export interface TransportStats {
  peers: Record<NodeId, PeerStats>;
  /** Drops not attributable to a known peer (unauthenticated connections, unknown destinations). */
  drops: Partial<Record<TransportDropReason, number>>;
  handshakeFailures: Partial<Record<HandshakeReason, number>>;
  /** Exceptions thrown by onEnvelopes (logged and swallowed so one bad handler cannot kill links). */
  handlerErrors: number;
  /** Peers added after construction (addPeer/setPeer of a new id). */
  peersAdded: number;
  /** Ids removed (removePeer); their later handshakes count as handshakeFailures.Removed. */
  peersRemoved: number;
  /** Known peers given a new address (their link was closed and redialled). */
  peersReaddressed: number;
  /** Join requests admitted by onJoinRequest (refusals are in handshakeFailures by reason). */
  joinsAccepted: number;
}

/** A join request, handed to TransportOptions.onJoinRequest once the joiner is authenticated. */
export interface JoinRequest {
  readonly id: NodeId;
  /** The address it says members should dial, 'host:port' (not checked against `remote`). */
  readonly address: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Where the connection comes from. */
  readonly remote: string;
}

/** The owner's answer: admit (the joiner learns the cluster id) or refuse with a reason. */
export type JoinAnswer =
  | { readonly accept: true; readonly info?: Uint8Array }
  | { readonly accept: false; readonly reason: JoinRefusalReason; readonly detail?: string };

export interface ReconnectOptions {
  /** First retry delay. Default 50 ms. */
  minMs?: number;
  /** Largest delay. Default 2 s. */
  maxMs?: number;
  /** [0, 1) source for jitter; inject for deterministic tests. Default Math.random. */
  random?: () => number;
}

/** PEM-encoded material of this node for mutual TLS. */
export interface TransportTlsOptions {
  /** The cluster CA certificate(s): the only issuer trusted for peers. */
  readonly ca: string | Buffer;
  /** This node's certificate, issued by the cluster CA; its CN or a subjectAltName value must
   *  equal the node id. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

/** Authentication between nodes; every node of a cluster must use the same settings. */
export interface TransportSecurity {
  /** Mutual TLS with certificates from a cluster CA. Default: plain TCP. */
  readonly tls?: TransportTlsOptions;
  /** A shared cluster secret (at least 16 characters) proved in the handshake by an HMAC
   *  challenge-response; never sent. Default: none. */
  readonly secret?: string;
}

function pemField(field: string, v: unknown): string | Buffer {
  if (!((typeof v === 'string' || Buffer.isBuffer(v)) && v.length > 0))
    throw new RangeError(`${field}: must be a non-empty PEM string or Buffer`);
  return v;
}

/** Checks `sec` (throws a RangeError naming the field) and builds the TLS context. */
export function prepareSecurity(sec: TransportSecurity): {
  tls: (TransportTlsOptions & { context: tls.SecureContext }) | null;
  secret: string | null;
} {
  let secret: string | null = null;
  if (sec.secret !== undefined) {
    if (typeof sec.secret !== 'string' || sec.secret.length < MIN_SECRET_LENGTH) {
      throw new RangeError(`secret: must be a string of at least ${MIN_SECRET_LENGTH} characters`);
    }
    secret = sec.secret;
  }
  if (sec.tls === undefined) return { tls: null, secret };
  if (typeof sec.tls !== 'object' || sec.tls === null) throw new RangeError('tls: must be an object { ca, cert, key }');
  const ca = pemField('tls.ca', sec.tls.ca);
  const cert = pemField('tls.cert', sec.tls.cert);
  const key = pemField('tls.key', sec.tls.key);
  for (const [field, pem] of [
    ['tls.ca', ca],
    ['tls.cert', cert],
  ] as const) {
    try {
      new X509Certificate(pem);
    } catch (e) {
      throw new RangeError(`${field}: not a PEM certificate (${(e as Error).message})`);
    }
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ ca, cert, key });
  } catch (e) {
    throw new RangeError(`tls.key: ${(e as Error).message}`);
  }
  return { tls: { ca, cert, key, context }, secret };
}

/** Validate transport security options without building a transport (throws a RangeError whose
 *  message starts with the offending field). */
export function validateTransportSecurity(sec: TransportSecurity | undefined): void {
  if (sec !== undefined) prepareSecurity(sec);
}

/** The names a peer certificate vouches for: its subject CNs and subjectAltName values. */
export function certificateNames(
  cert: { subject?: { CN?: string | string[] }; subjectaltname?: string } | null | undefined,
): string[] {
  const out: string[] = [];
  const cn = cert?.subject?.CN;
  if (typeof cn === 'string') out.push(cn);
  else if (Array.isArray(cn)) out.push(...cn.filter((c): c is string => typeof c === 'string'));
  const san = cert?.subjectaltname;
  if (typeof san !== 'string') return out;
  // "DNS:a, IP Address:1.2.3.4, URI:x" — values with special characters are JSON-quoted by Node.
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    let j = colon + 1;
    if (san[j] === '"') {
      const m = /^"(?:[^"\\]|\\.)*"/.exec(san.slice(j));
      if (m === null) break;
      try {
        out.push(JSON.parse(m[0]) as string);
      } catch {
        break;
      }
      j += m[0].length;
    } else {
      const end = san.indexOf(', ', j);
      const e = end < 0 ? san.length : end;
      out.push(san.slice(j, e));
      j = e;
    }
    if (san.startsWith(', ', j)) j += 2;
    else if (j < san.length) break;
    i = j;
  }
  return out;
}

/** Why `socket`'s peer certificate does not identify `id` (null when it does). */
export function certMismatch(socket: net.Socket, id: NodeId): string | null {
  const names = certificateNames((socket as tls.TLSSocket).getPeerCertificate());
  if (names.includes(id)) return null;
  return `certificate names ${JSON.stringify(names.slice(0, 8))}, not node "${id}"`;
}

export interface TransportOptions {
  nodeId: NodeId;
  clusterId: string;
  /** Port 0 picks an ephemeral port; see address() after start(). */
  listen: { host: string; port: number };
  /** Every other node: id -> 'host:port' ('[v6addr]:port' for IPv6). An entry for nodeId is
   *  ignored. Changed later with setPeer()/removePeer(). */
  peers: Readonly<Record<NodeId, string>>;
  /** Largest frame accepted (header included); advertised to peers. Default 64 MiB. */
  maxFrameBytes?: number;
  /** Per-peer send queue bound in (estimated) bytes, socket buffer included. Default 64 MiB. */
  maxQueueBytes?: number;
  reconnect?: ReconnectOptions;
  /** Close a connection whose handshake has not completed in this time. Default 5 s. */
  handshakeTimeoutMs?: number;
  /** Socket writableHighWaterMark. Default 1 MiB (16 KiB would stall on every large frame). */
  writableHighWaterMark?: number;
  logger?: Logger;
  /** Called once per received frame with its valid envelopes (never with an empty array). */
  onEnvelopes?: (from: NodeId, envelopes: Envelope[]) => void;
  /** Mutual TLS (see TransportSecurity). Default: plain TCP. */
  tls?: TransportTlsOptions;
  /** Cluster secret proved in the handshake (see TransportSecurity). Default: none. */
  secret?: string;
  /** Decides authenticated join requests (join mode, handshake.ts). It may answer later (a
   *  promise), within handshakeTimeoutMs; a throw or rejection refuses as NotReady. Admitting
   *  does not add the peer: the owner calls addPeer() when the membership change is applied.
   *  Default: none, every join refused as NotReady. */
  onJoinRequest?: (req: JoinRequest) => JoinAnswer | Promise<JoinAnswer>;
}

export interface TransportEvents {
  /** A handshake with the peer completed (it was down before). */
  peerUp: [peer: NodeId];
  /** A join request was admitted (after onJoinRequest accepted it). */
  joined: [req: JoinRequest];
  /** The peer's connection closed; `reason` is for logs. */
  peerDown: [peer: NodeId, reason: string];
  /** A send was dropped because the peer's queue is full (once per full episode). */
  backpressure: [info: { peer: NodeId; queuedBytes: number; maxQueueBytes: number }];
  /** We refused a peer (side 'accept') or a peer refused / answered us wrongly (side 'dial'). */
  handshakeError: [err: HandshakeError];
  /** A connection was closed for a broken stream (reason is a TransportDropReason). */
  protocolError: [info: { peer: NodeId | null; remote: string; reason: TransportDropReason; detail: string }];
}

/** Jittered exponential backoff: attempt 0 waits minMs, then up to min(maxMs, minMs·2^n),
 *  uniformly in its upper half (never below minMs). */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.max(minMs, Math.round(cap * (0.5 + 0.5 * random())));
}

/** The dial rule: does `self` dial `peer`? */
export function dials(self: NodeId, peer: NodeId): boolean {
  return self < peer;
}

/** 'host:port' or '[v6]:port'. */
export function parseAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const port = Number(addr.slice(i + 1));
  let host = addr.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (i <= 0 || host.length === 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new RangeError(`bad peer address "${addr}" (expected host:port)`);
  }
  return { host, port };
}

type LinkState = 'handshake' | 'open' | 'closing' | 'closed';

interface Link {
  readonly socket: net.Socket;
  readonly decoder: FrameDecoder;
  readonly dir: 'in' | 'out';
  readonly remote: string;
  state: LinkState;
  /** Outbound: the peer dialled. Inbound: set once its hello is accepted. */
  peer: Peer | null;
  /** Frames we send on this link are kept under the peer's advertised limit. */
  sendLimit: number;
  blocked: boolean;
  timer: NodeJS.Timeout | null;
  closeReason: string;
  /** Where the handshake is: awaiting the peer's hello, (acceptor) the dialer's proof, or
   *  (dialer) the acceptor's ok. The last two only with a cluster secret. */
  stage: 'hello' | 'auth' | 'ok' | 'decide';
  /** Outbound: the TCP connection is up (a failure before open is then a TLS failure). */
  connected: boolean;
  /** Outbound TLS: a TlsFailed was already reported for this connection. */
  tlsReported: boolean;
  /** Outbound with a secret: our nonce, sent in our hello. */
  nonce: Uint8Array | null;
  /** The secret exchange in progress (stages 'auth' and 'ok'). */
  auth: { readonly transcript: AuthTranscript; readonly peer: Peer | null; readonly peerMaxFrame: number } | null;
  /** Inbound join mode: the joiner (stage 'decide': its request is with onJoinRequest). */
  joiner: { readonly id: NodeId; readonly clusterId: string; readonly slot: JoinSlot } | null;
}

interface Peer {
  readonly id: NodeId;
  host: string;
  port: number;
  readonly dial: boolean;
  removed: boolean;
  queue: Envelope[];
  queueBytes: number;
  /** Bulk envelopes (sendBulk), written only behind `queue`, one per frame. */
  bulk: Envelope[];
  bulkBytes: number;
  link: Link | null; // the open link
  dialing: Link | null; // an outbound link not yet open
  timer: NodeJS.Timeout | null;
  attempt: number;
  full: boolean;
  st: PeerStats;
}

function newPeerStats(): PeerStats {
  return {
    connected: false,
    framesSent: 0,
    largestFrameSent: 0,
    bytesSent: 0,
    envelopesSent: 0,
    framesReceived: 0,
    bytesReceived: 0,
    envelopesReceived: 0,
    queuedEnvelopes: 0,
    queuedBytes: 0,
    dials: 0,
    dialFailures: 0,
    connects: 0,
    reconnects: 0,
    disconnects: 0,
    duplicates: 0,
    backpressureEvents: 0,
    drops: {},
  };
}

function bump<K extends string>(rec: Partial<Record<K, number>>, k: K, n = 1): void {
  rec[k] = (rec[k] ?? 0) + n;
}

export class Transport extends EventEmitter<TransportEvents> {
  readonly nodeId: NodeId;
  readonly clusterId: string;
  onEnvelopes: ((from: NodeId, envelopes: Envelope[]) => void) | null;

  private readonly log: Logger;
  private readonly listenOn: { host: string; port: number };
  private readonly maxFrameBytes: number;
  private readonly maxQueueBytes: number;
  private readonly hwm: number;
  private readonly handshakeTimeoutMs: number;
  private readonly backoff: { minMs: number; maxMs: number; random: () => number };
  private readonly encoder: FrameEncoder;
  private readonly peers = new Map<NodeId, Peer>();
  private readonly links = new Set<Link>();
  private server: net.Server | null = null;
  private bound: { host: string; port: number } | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly drops: Partial<Record<TransportDropReason, number>> = {};
  private readonly handshakeFailures: Partial<Record<HandshakeReason, number>> = {};
  private handlerErrors = 0;
  private peersAdded = 0;
  private peersRemoved = 0;
  private peersReaddressed = 0;
  private joinsAccepted = 0;
  /** Ids removed by removePeer: refused for good. */
  private readonly removed = new Set<NodeId>();
  private readonly onJoinRequest: NonNullable<TransportOptions['onJoinRequest']> | null;
  /** Still in the constructor: configured peers are not counted as added. */
  private constructing = true;
  private readonly tls: (TransportTlsOptions & { context: tls.SecureContext }) | null;
  private readonly secret: string | null;
  /** TLS: raw inbound sockets whose TLS handshake has not completed, by remote address. */
  private readonly tlsPending = new Map<string, { raw: net.Socket; detail: string | null }>();

  constructor(opts: TransportOptions) {
    super();
    const sec = prepareSecurity({ tls: opts.tls, secret: opts.secret });
    this.tls = sec.tls;
    this.secret = sec.secret;
    this.nodeId = opts.nodeId;
    this.clusterId = opts.clusterId;
    this.listenOn = { ...opts.listen };
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxQueueBytes = opts.maxQueueBytes ?? 64 * 1024 * 1024;
    this.hwm = opts.writableHighWaterMark ?? 1024 * 1024;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5000;
    this.backoff = {
      minMs: opts.reconnect?.minMs ?? 50,
      maxMs: opts.reconnect?.maxMs ?? 2000,
      random: opts.reconnect?.random ?? Math.random,
    };
    this.encoder = new FrameEncoder({ maxFrameBytes: this.maxFrameBytes }); // validates the limit
    // The node binds `node` in the logger it passes: bound twice, a line would carry the key twice.
    const base = opts.logger ?? pino({ level: 'silent' });
    this.log = base.child(
      base.bindings().node === undefined ? { module: 'transport', node: opts.nodeId } : { module: 'transport' },
    );
    this.onEnvelopes = opts.onEnvelopes ?? null;
    if (!(this.maxFrameBytes >= HANDSHAKE_MAX_FRAME_BYTES))
      throw new RangeError(`maxFrameBytes must be at least ${HANDSHAKE_MAX_FRAME_BYTES}`);
    this.onJoinRequest = opts.onJoinRequest ?? null;
    for (const [id, addr] of Object.entries(opts.peers)) this.setPeer(id, addr);
    this.constructing = false;
  }

  /** Add a peer or change its address, for the next dial only: a live connection is kept (tests
   *  and tools; a running cluster uses addPeer). The node's own id is ignored; a removed id
   *  throws PeerRemovedError. */
  setPeer(id: NodeId, addr: string): void {
    if (id === this.nodeId) return;
    if (this.removed.has(id)) throw new PeerRemovedError(id);
    const { host, port } = parseAddress(addr);
    const known = this.peers.get(id);
    if (known !== undefined) {
      known.host = host;
      known.port = port;
      return;
    }
    this.createPeer(id, host, port);
  }

  /** Start talking to `id` at `addr` (dialling it or accepting it, by the dial rule). The same
   *  address again does nothing; a new address for a known peer closes its link (peerDown fires
   *  if it was up; queued envelopes are kept) and the peer is reached at the new address. The
   *  node's own id is ignored. Throws PeerRemovedError for a removed id, RangeError for a bad
   *  address. */
  addPeer(id: NodeId, addr: string): void {
    if (id === this.nodeId) return;
    if (this.removed.has(id)) throw new PeerRemovedError(id);
    const { host, port } = parseAddress(addr);
    const p = this.peers.get(id);
    if (p === undefined) {
      this.createPeer(id, host, port);
      return;
    }
    if (p.host === host && p.port === port) return;
    this.log.info({ peer: id, from: `${p.host}:${p.port}`, to: addr }, 'peer address changed');
    p.host = host;
    p.port = port;
    p.attempt = 0;
    this.peersReaddressed++;
    // The old connection, or a dial in progress, goes to the old place: close it. onClose redials
    // a peer we dial (after minMs); one that dials us does so from its new place.
    if (p.link !== null) this.destroyLink(p.link, 'peer address changed');
    if (p.dialing !== null) this.destroyLink(p.dialing, 'peer address changed');
    if (p.link === null && p.dialing === null && p.timer !== null) {
      clearTimeout(p.timer);
      p.timer = null;
      if (p.dial && this.server !== null && !this.closing) this.dial(p);
    }
  }

  /** Peers in the list now (not the removed ones). */
  peerIds(): NodeId[] {
    return [...this.peers.keys()];
  }

  /** Was `id` removed (removePeer)? */
  isRemoved(id: NodeId): boolean {
    return this.removed.has(id);
  }

  private createPeer(id: NodeId, host: string, port: number): void {
    const p: Peer = {
      id,
      host,
      port,
      dial: dials(this.nodeId, id),
      removed: false,
      queue: [],
      queueBytes: 0,
      bulk: [],
      bulkBytes: 0,
      link: null,
      dialing: null,
      timer: null,
      attempt: 0,
      full: false,
      st: newPeerStats(),
    };
    this.peers.set(id, p);
    if (!this.constructing) {
      this.peersAdded++;
      this.log.info({ peer: id, address: `${host}:${port}` }, 'peer added');
    }
    if (p.dial && this.server !== null && !this.closing) this.dial(p);
  }

  /** Remove a node for good: its connection is closed (peerDown fires if it was up), what is
   *  queued for it is dropped (counted as PeerRemoved), it is never dialled again, its handshakes
   *  are refused (Removed) and its id can never be added again. An id that was never a peer is
   *  still marked removed. Idempotent; the node's own id is ignored. */
  removePeer(id: NodeId): void {
    if (id === this.nodeId || this.removed.has(id)) return;
    this.removed.add(id);
    this.peersRemoved++;
    const p = this.peers.get(id);
    if (p === undefined) {
      this.log.info({ peer: id }, 'unknown node marked removed');
      return;
    }
    this.peers.delete(id);
    p.removed = true;
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
    const dropped = p.queue.length + p.bulk.length;
    if (dropped > 0) bump(this.drops, 'PeerRemoved', dropped);
    this.log.info({ peer: id, droppedEnvelopes: dropped, connected: p.link !== null }, 'peer removed');
    p.queue = [];
    p.queueBytes = 0;
    p.bulk = [];
    p.bulkBytes = 0;
    if (p.link !== null) this.destroyLink(p.link, 'peer removed');
    if (p.dialing !== null) this.destroyLink(p.dialing, 'peer removed');
  }

  /** Listen, then start dialling the peers this node dials. Resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.server) throw new TransportStateError('AlreadyStarted', 'transport already started');
    if (this.closing) throw new TransportStateError('Closed', 'transport is closed');
    const server =
      this.tls === null
        ? net.createServer({ highWaterMark: this.hwm, noDelay: true }, (s) => this.onInbound(s))
        : this.tlsServer(this.tls);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenOn.port, this.listenOn.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'server error'));
    const a = server.address() as net.AddressInfo;
    this.bound = { host: a.address, port: a.port };
    this.log.info({ address: this.bound, tls: this.tls !== null, secret: this.secret !== null }, 'listening');
    for (const p of this.peers.values()) if (p.dial) this.dial(p);
    return this.bound;
  }

  /** The bound listen address (null before start()). */
  address(): { host: string; port: number } | null {
    return this.bound;
  }

  isConnected(peer: NodeId): boolean {
    return this.peers.get(peer)?.link != null;
  }

  connectedPeers(): NodeId[] {
    return [...this.peers.values()].filter((p) => p.link !== null).map((p) => p.id);
  }

  /** Queue one envelope for `to`. False if it was dropped (unknown peer, queue full, closed). */
  send(to: NodeId, envelope: Envelope): boolean {
    const p = this.peers.get(to);
    if (p === undefined) {
      bump(this.drops, this.removed.has(to) ? 'PeerRemoved' : 'UnknownPeer');
      return false;
    }
    if (this.closing) {
      bump(p.st.drops, 'Closed');
      return false;
    }
    const size = estimateEnvelopeBytes(envelope);
    const inSocket = p.link !== null ? p.link.socket.writableLength : 0;
    if (p.queueBytes + inSocket + size > this.maxQueueBytes) {
      bump(p.st.drops, 'QueueFull');
      if (!p.full) {
        p.full = true;
        p.st.backpressureEvents++;
        const info = { peer: p.id, queuedBytes: p.queueBytes + inSocket, maxQueueBytes: this.maxQueueBytes };
        this.log.warn(info, 'send queue full, dropping');
        this.emit('backpressure', info);
      }
      return false;
    }
    p.queue.push(envelope);
    p.queueBytes += size;
    this.immediate ??= setImmediate(() => this.flush());
    return true;
  }

  /** Queue one bulk envelope (a snapshot chunk) for `to`: it is written in a frame of its own,
   *  after everything send() queued, and only while the socket holds less than its high-water
   *  mark, so that a Raft frame queued later waits behind at most that and one bulk envelope.
   *  Shares send()'s bound; false if it was dropped (the sender's own timer resends). */
  sendBulk(to: NodeId, envelope: Envelope): boolean {
    const p = this.peers.get(to);
    if (p === undefined) {
      bump(this.drops, this.removed.has(to) ? 'PeerRemoved' : 'UnknownPeer');
      return false;
    }
    if (this.closing) {
      bump(p.st.drops, 'Closed');
      return false;
    }
    const size = estimateEnvelopeBytes(envelope);
    const inSocket = p.link !== null ? p.link.socket.writableLength : 0;
    if (p.queueBytes + p.bulkBytes + inSocket + size > this.maxQueueBytes) {
      bump(p.st.drops, 'QueueFull');
      return false;
    }
    p.bulk.push(envelope);
    p.bulkBytes += size;
    this.immediate ??= setImmediate(() => this.flush());
    return true;
  }

  /** Write every peer's queue now (normally done once per turn by a setImmediate). */
  flush(): void {
    if (this.immediate !== null) {
      clearImmediate(this.immediate);
      this.immediate = null;
    }
    for (const p of this.peers.values()) this.flushPeer(p);
  }

  stats(): TransportStats {
    const peers: Record<NodeId, PeerStats> = {};
    for (const p of this.peers.values()) {
      peers[p.id] = {
        ...p.st,
        connected: p.link !== null,
        queuedEnvelopes: p.queue.length + p.bulk.length,
        queuedBytes: p.queueBytes + p.bulkBytes,
        drops: { ...p.st.drops },
      };
    }
    return {
      peers,
      drops: { ...this.drops },
      handshakeFailures: { ...this.handshakeFailures },
      handlerErrors: this.handlerErrors,
      peersAdded: this.peersAdded,
      peersRemoved: this.peersRemoved,
      peersReaddressed: this.peersReaddressed,
      joinsAccepted: this.joinsAccepted,
    };
  }

  /** Stop listening, end every connection (queued envelopes are written first, best effort),
   *  cancel reconnects. No events fire once close() has been called. */
  close(): Promise<void> {
    if (this.closed !== null) return this.closed;
    this.flush();
    this.closing = true;
    for (const p of this.peers.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.timer = null;
    }
    const waits: Promise<void>[] = [];
    for (const link of this.links) {
      if (link.state === 'closed') continue;
      waits.push(new Promise((resolve) => link.socket.once('close', () => resolve())));
      // Open links end gracefully so what flush() just wrote arrives; the rest (connecting,
      // handshaking, refusing) have nothing worth waiting for.
      if (link.state === 'open') this.endLink(link, 'transport closed');
      else this.destroyLink(link, 'transport closed');
    }
    // TLS connections still in their TLS handshake have no link yet.
    for (const { raw } of this.tlsPending.values()) raw.destroy();
    this.tlsPending.clear();
    const server = this.server;
    if (server) waits.push(new Promise((resolve) => server.close(() => resolve())));
    this.closed = Promise.all(waits).then(() => {
      this.log.info('closed');
    });
    return this.closed;
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  private onInbound(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.newLink(socket, 'in', null);
  }

  /** The mutual-TLS listener. A client certificate not issued by the cluster CA (or none) fails
   *  the TLS handshake; such connections never reach onInbound and are counted as TlsFailed. */
  private tlsServer(t: TransportTlsOptions): tls.Server {
    const server = tls.createServer(
      {
        ca: t.ca,
        cert: t.cert,
        key: t.key,
        requestCert: true,
        rejectUnauthorized: true,
        handshakeTimeout: this.handshakeTimeoutMs,
        highWaterMark: this.hwm,
        noDelay: true,
      },
      (s) => {
        this.tlsPending.delete(`${s.remoteAddress}:${s.remotePort}`);
        this.onInbound(s);
      },
    );
    // Node destroys a client with an untrusted certificate without an event, so failures are
    // found as raw connections that close before their TLS socket was handed over.
    server.on('connection', (raw: net.Socket) => {
      const key = `${raw.remoteAddress}:${raw.remotePort}`;
      const entry = { raw, detail: null as string | null };
      this.tlsPending.set(key, entry);
      raw.once('close', () => {
        if (this.tlsPending.get(key) !== entry) return;
        this.tlsPending.delete(key);
        if (this.closing) return;
        this.handshakeFailed(
          new HandshakeError(
            'TlsFailed',
            'accept',
            entry.detail ?? 'TLS handshake failed (client certificate not issued by the cluster CA?)',
            null,
            key,
          ),
        );
      });
    });
    server.on('tlsClientError', (err: Error & { code?: string }, s: tls.TLSSocket) => {
      const entry = this.tlsPending.get(`${s.remoteAddress}:${s.remotePort}`);
      if (entry !== undefined) entry.detail = `${err.code ?? 'TLS'}: ${err.message}`.slice(0, 200);
    });
    return server;
  }

  private dial(p: Peer): void {
    p.timer = null;
    if (this.closing || p.removed || p.link !== null || p.dialing !== null) return;
    if (this.tls !== null) {
      // Host names are not checked (peers are addressed by IP as often as not); the node id is,
      // in onDialed. The chain must lead to the cluster CA.
      // highWaterMark reaches the TLSSocket (Node passes it through; @types/node omits it).
      const socket = tls.connect({
        host: p.host,
        port: p.port,
        secureContext: this.tls.context,
        rejectUnauthorized: true,
        checkServerIdentity: () => undefined,
        highWaterMark: this.hwm,
      } as tls.ConnectionOptions);
      const link = this.newLink(socket, 'out', p);
      p.dialing = link;
      p.st.dials++;
      socket.once('connect', () => (link.connected = true));
      socket.once('secureConnect', () => this.onDialed(link, p));
      return;
    }
    // writableHighWaterMark is a stream.Duplex option that net.Socket passes through.
    const socket = new net.Socket({ writableHighWaterMark: this.hwm } as net.SocketConstructorOpts);
    const link = this.newLink(socket, 'out', p);
    p.dialing = link;
    p.st.dials++;
    socket.connect({ host: p.host, port: p.port }, () => this.onDialed(link, p));
  }

  /** Connected (TLS: handshake done, chain verified): check the acceptor's identity, send hello. */
  private onDialed(link: Link, p: Peer): void {
    if (link.state !== 'handshake') return;
    link.connected = true;
    link.socket.setNoDelay(true);
    if (this.tls !== null) {
      const bad = certMismatch(link.socket, p.id);
      if (bad !== null) {
        this.dialFailed(link, 'CertMismatch', `dialled "${p.id}" but its ${bad}`);
        return;
      }
    }
    const auth = this.secret !== null ? newAuthSlot() : null;
    link.nonce = auth?.nonce ?? null;
    link.socket.write(
      this.encoder.encodeControl({ ...makeHello(this.clusterId, this.nodeId, this.maxFrameBytes, auth) }),
    );
  }

  private newLink(socket: net.Socket, dir: 'in' | 'out', peer: Peer | null): Link {
    const remote = dir === 'in' ? `${socket.remoteAddress}:${socket.remotePort}` : `${peer!.host}:${peer!.port}`;
    const link: Link = {
      socket,
      dir,
      remote,
      peer,
      state: 'handshake',
      blocked: false,
      timer: null,
      closeReason: 'connection closed',
      sendLimit: this.maxFrameBytes,
      stage: 'hello',
      connected: false,
      tlsReported: false,
      nonce: null,
      auth: null,
      joiner: null,
      // Until the handshake is done only small frames are accepted: an unauthenticated client
      // must not make us buffer maxFrameBytes.
      decoder: new FrameDecoder({ maxFrameBytes: HANDSHAKE_MAX_FRAME_BYTES }),
    };
    this.links.add(link);
    if (dir === 'in') socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => this.onData(link, chunk));
    socket.on('drain', () => {
      link.blocked = false;
      if (link.peer !== null && link.peer.link === link) this.flushPeer(link.peer);
    });
    socket.on('error', (err: Error & { code?: string }) => {
      if (link.state === 'handshake' && dir === 'out') {
        link.peer!.st.dialFailures++;
        this.log.debug({ peer: link.peer!.id, err }, 'dial failed');
        if (this.tls !== null && link.connected) {
          link.tlsReported = true;
          this.handshakeFailed(
            new HandshakeError(
              'TlsFailed',
              'dial',
              `${err.code ?? 'TLS'}: ${err.message}`.slice(0, 200),
              link.peer!.id,
              remote,
            ),
          );
        }
      } else {
        this.log.debug({ remote, peer: link.peer?.id, err }, 'socket error');
      }
      link.closeReason = err.message;
    });
    socket.on('close', () => this.onClose(link));
    link.timer = setTimeout(() => {
      if (link.state !== 'handshake') return;
      const err = new HandshakeError(
        'HandshakeTimeout',
        dir === 'in' ? 'accept' : 'dial',
        `no handshake within ${this.handshakeTimeoutMs} ms`,
        peer?.id ?? null,
        remote,
      );
      this.handshakeFailed(err);
      this.destroyLink(link, 'handshake timeout');
    }, this.handshakeTimeoutMs);
    link.timer.unref();
    return link;
  }

  private onData(link: Link, chunk: Buffer): void {
    try {
      this.readFrames(link, chunk);
    } catch (err) {
      // Only a bug gets here (every expected failure is a value). Whatever a peer sent, it must
      // not take the process down: close this connection and keep serving the others.
      this.log.error({ err, remote: link.remote }, 'internal error handling input');
      if (link.state === 'handshake' || link.state === 'open')
        this.protocolError(link, 'InternalError', err instanceof Error ? err.message : typeof err);
    }
  }

  private readFrames(link: Link, chunk: Buffer): void {
    if (link.state !== 'handshake' && link.state !== 'open') return;
    link.decoder.push(chunk);
    for (;;) {
      if (link.state !== 'handshake' && link.state !== 'open') return;
      const r = link.decoder.next();
      if (r === null) return;
      if (r.kind === 'error') {
        this.protocolError(link, r.error.code, r.error.message);
        return;
      }
      if (link.state === 'handshake') this.onHandshakeFrame(link, r);
      else this.onOpenFrame(link, r);
    }
  }

  private onHandshakeFrame(link: Link, r: Exclude<DecodeResult, { kind: 'error' }>): void {
    if (r.kind !== 'control') {
      const detail = 'data frame before the handshake';
      this.handshakeFailed(
        new HandshakeError(
          'BadHandshake',
          link.dir === 'in' ? 'accept' : 'dial',
          detail,
          link.peer?.id ?? null,
          link.remote,
        ),
      );
      this.protocolError(link, 'FrameBeforeHandshake', detail);
      return;
    }
    if (link.dir === 'in') {
      if (link.stage === 'auth') {
        this.onDialerProof(link, r.body);
        return;
      }
      if (link.stage === 'decide') {
        // A joiner waits for the answer; anything else from it breaks the protocol.
        this.refuse(link, {
          ok: false,
          reason: 'BadHandshake',
          detail: `frame ${JSON.stringify(String(r.body.hs).slice(0, 32))} while the join request is decided`,
          claimed: link.joiner?.id ?? null,
        });
        return;
      }
      const check = checkDialerHello(r.body, {
        clusterId: this.clusterId,
        selfId: this.nodeId,
        isPeer: (id) => this.peers.has(id),
        isRemoved: (id) => this.removed.has(id),
        dialsUs: (id) => dials(id, this.nodeId),
        secret: this.secret !== null,
      });
      if (!check.ok) {
        this.refuse(link, check);
        return;
      }
      const h = check.hello;
      if (this.tls !== null) {
        const bad = certMismatch(link.socket, h.nodeId);
        if (bad !== null) {
          this.refuse(link, {
            ok: false,
            reason: h.join !== undefined ? 'Unauthenticated' : 'CertMismatch',
            detail: `${h.join !== undefined ? 'joiner' : 'dialer'} claims "${h.nodeId}" but its ${bad}`,
            claimed: h.nodeId,
          });
          return;
        }
      }
      if (h.join !== undefined) {
        this.onJoinerHello(link, { id: h.nodeId, clusterId: h.clusterId, slot: h.join }, h);
        return;
      }
      const p = this.peers.get(h.nodeId)!;
      if (this.secret === null) {
        link.socket.write(
          this.encoder.encodeControl({ ...makeHello(this.clusterId, this.nodeId, this.maxFrameBytes) }),
        );
        this.open(link, p, h.maxFrameBytes);
        return;
      }
      // Challenge the dialer; it must prove the secret before anything else happens.
      const slot = newAuthSlot();
      link.auth = {
        transcript: {
          clusterId: this.clusterId,
          dialer: h.nodeId,
          acceptor: this.nodeId,
          dialerNonce: h.auth!.nonce,
          acceptorNonce: slot.nonce,
        },
        peer: p,
        peerMaxFrame: h.maxFrameBytes,
      };
      link.stage = 'auth';
      link.socket.write(
        this.encoder.encodeControl({ ...makeHello(this.clusterId, this.nodeId, this.maxFrameBytes, slot) }),
      );
    } else {
      const p = link.peer!;
      if (link.stage === 'ok') {
        this.onAcceptorProof(link, p, r.body);
        return;
      }
      const check = checkAcceptorReply(r.body, {
        clusterId: this.clusterId,
        peer: p.id,
        self: this.nodeId,
        secret: this.secret !== null,
      });
      if (!check.ok) {
        this.dialFailed(link, check.reason, check.detail);
        return;
      }
      const h = check.hello;
      if (this.secret === null) {
        this.open(link, p, h.maxFrameBytes);
        return;
      }
      const transcript: AuthTranscript = {
        clusterId: this.clusterId,
        dialer: this.nodeId,
        acceptor: p.id,
        dialerNonce: link.nonce!,
        acceptorNonce: h.auth!.nonce,
      };
      link.auth = { transcript, peer: p, peerMaxFrame: h.maxFrameBytes };
      link.stage = 'ok';
      link.socket.write(
        this.encoder.encodeControl({ ...makeProofFrame('auth', authProof(this.secret, 'dialer', transcript)) }),
      );
    }
  }

  /** Acceptor, stage 'auth': the dialer's proof of the secret. */
  private onDialerProof(link: Link, body: Readonly<Record<string, unknown>>): void {
    const a = link.auth!;
    const dialer = a.transcript.dialer;
    const c = checkProofFrame(body, 'auth', dialer);
    if (!c.ok) {
      this.refuse(link, c);
      return;
    }
    if (!verifyProof(this.secret!, 'dialer', a.transcript, c.proof)) {
      this.refuse(link, {
        ok: false,
        reason: link.joiner !== null ? 'Unauthenticated' : 'AuthFailed',
        detail: `node "${dialer}" did not prove the cluster secret`,
        claimed: dialer,
      });
      return;
    }
    if (a.peer === null) {
      // A joiner proved the secret: prove ours, then let the owner decide.
      link.socket.write(
        this.encoder.encodeControl({ ...makeProofFrame('ok', authProof(this.secret!, 'acceptor', a.transcript)) }),
      );
      this.decideJoin(link);
      return;
    }
    if (a.peer.removed) {
      // Removed while it was proving the secret.
      this.refuse(link, {
        ok: false,
        reason: 'Removed',
        detail: `node "${dialer}" was removed from the cluster`,
        claimed: dialer,
      });
      return;
    }
    link.socket.write(
      this.encoder.encodeControl({ ...makeProofFrame('ok', authProof(this.secret!, 'acceptor', a.transcript)) }),
    );
    this.open(link, a.peer, a.peerMaxFrame);
  }

  /** Acceptor, join mode: the joiner's hello passed the checks that need no secret. Answer with
   *  a hello that names no cluster (echoing what the joiner presented), then authenticate it. */
  private onJoinerHello(
    link: Link,
    joiner: NonNullable<Link['joiner']>,
    h: { maxFrameBytes: number; auth: { nonce: Uint8Array } | null },
  ): void {
    link.joiner = joiner;
    if (this.secret === null) {
      link.socket.write(
        this.encoder.encodeControl({ ...makeHello(joiner.clusterId, this.nodeId, this.maxFrameBytes) }),
      );
      this.decideJoin(link);
      return;
    }
    const slot = newAuthSlot();
    link.auth = {
      transcript: {
        clusterId: joiner.clusterId,
        dialer: joiner.id,
        acceptor: this.nodeId,
        dialerNonce: h.auth!.nonce,
        acceptorNonce: slot.nonce,
      },
      peer: null,
      peerMaxFrame: h.maxFrameBytes,
    };
    link.stage = 'auth';
    link.socket.write(
      this.encoder.encodeControl({ ...makeHello(joiner.clusterId, this.nodeId, this.maxFrameBytes, slot) }),
    );
  }

  /** Acceptor, join mode: the joiner is authenticated; the owner admits or refuses it. The
   *  handshake timer keeps running, so an owner that never answers costs one timeout. */
  private decideJoin(link: Link): void {
    const j = link.joiner!;
    link.stage = 'decide';
    link.auth = null;
    const refuse = (reason: JoinRefusalReason, detail: string) =>
      this.refuse(link, { ok: false, reason, detail, claimed: j.id });
    if (this.removed.has(j.id)) {
      refuse('Decommissioned', `node "${j.id}" was removed from the cluster; a replacement needs a new id`);
      return;
    }
    const handler = this.onJoinRequest;
    if (handler === null) {
      refuse('NotReady', `"${this.nodeId}" takes no join requests`);
      return;
    }
    const req: JoinRequest = { id: j.id, address: j.slot.address, labels: j.slot.labels, remote: link.remote };
    let answer: Promise<JoinAnswer>;
    try {
      answer = Promise.resolve(handler(req));
    } catch (err) {
      answer = Promise.reject(err);
    }
    answer.then(
      (a) => {
        if (link.state !== 'handshake' || this.closing) return; // timed out or closed meanwhile
        if (!a.accept) {
          refuse(a.reason, a.detail ?? `join of "${j.id}" refused`);
          return;
        }
        if (link.timer) clearTimeout(link.timer);
        link.timer = null;
        this.joinsAccepted++;
        let joined: ReturnType<typeof makeJoined>;
        try {
          joined = makeJoined(this.clusterId, a.info);
        } catch (err) {
          this.log.error({ err, joiner: j.id }, 'join answer too large');
          refuse('NotReady', `"${this.nodeId}" could not answer the join request`);
          return;
        }
        link.socket.write(this.encoder.encodeControl({ ...joined }));
        this.log.info(
          { joiner: j.id, address: j.slot.address, labels: j.slot.labels, remote: link.remote },
          'join admitted',
        );
        this.endLink(link, 'join answered');
        this.emit('joined', req);
      },
      (err: unknown) => {
        this.log.error({ err, joiner: j.id }, 'onJoinRequest failed');
        if (link.state !== 'handshake' || this.closing) return;
        refuse('NotReady', `"${this.nodeId}" could not decide the join request`);
      },
    );
  }

  /** Dialer, stage 'ok': the acceptor's verdict and its proof of the secret. */
  private onAcceptorProof(link: Link, p: Peer, body: Readonly<Record<string, unknown>>): void {
    const a = link.auth!;
    const c = checkProofFrame(body, 'ok', p.id);
    if (!c.ok) {
      this.dialFailed(link, c.reason, c.detail);
      return;
    }
    if (!verifyProof(this.secret!, 'acceptor', a.transcript, c.proof)) {
      this.dialFailed(link, 'AuthFailed', `"${p.id}" did not prove the cluster secret`);
      return;
    }
    this.open(link, p, a.peerMaxFrame);
  }

  private dialFailed(link: Link, reason: HandshakeReason, detail: string): void {
    this.handshakeFailed(new HandshakeError(reason, 'dial', detail, link.peer!.id, link.remote));
    this.destroyLink(link, `handshake failed: ${reason}`);
  }

  private open(link: Link, p: Peer, peerMaxFrame: number): void {
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
    link.auth = null;
    link.nonce = null;
    link.state = 'open';
    link.peer = p;
    link.sendLimit = Math.min(this.maxFrameBytes, peerMaxFrame);
    link.decoder.setMaxFrameBytes(this.maxFrameBytes);
    if (p.dialing === link) p.dialing = null;
    const old = p.link;
    p.link = link;
    p.attempt = 0;
    p.full = false;
    p.st.connects++;
    if (p.st.connects > 1) p.st.reconnects++;
    if (old !== null) {
      p.st.duplicates++;
      this.log.info(
        { peer: p.id, remote: link.remote, old: old.remote },
        'duplicate connection: keeping the newer one',
      );
      this.destroyLink(old, 'replaced by a newer connection');
    } else {
      this.log.info({ peer: p.id, remote: link.remote, dir: link.dir }, 'peer up');
      this.emit('peerUp', p.id);
    }
    this.flushPeer(p);
  }

  private onOpenFrame(link: Link, r: Exclude<DecodeResult, { kind: 'error' }>): void {
    const p = link.peer!;
    if (r.kind === 'control') {
      // Reserved for future in-band control; ignored so that newer peers can add some.
      bump(p.st.drops, 'UnexpectedControl');
      this.log.warn(
        { peer: p.id, hs: String(r.body.hs).slice(0, 32) /* a string: see FrameDecoder */ },
        'control frame after handshake ignored',
      );
      return;
    }
    p.st.framesReceived++;
    p.st.bytesReceived += r.frameBytes;
    p.st.envelopesReceived += r.envelopes.length;
    if (r.dropped !== null) {
      for (const [reason, n] of Object.entries(r.dropped) as [DropReason, number][]) bump(p.st.drops, reason, n);
      this.log.warn({ peer: p.id, dropped: r.dropped, kept: r.envelopes.length }, 'invalid items dropped from frame');
    }
    if (r.envelopes.length === 0 || this.onEnvelopes === null) return;
    try {
      this.onEnvelopes(p.id, r.envelopes);
    } catch (err) {
      this.handlerErrors++;
      this.log.error({ err, peer: p.id }, 'onEnvelopes threw');
    }
  }

  private refuse(link: Link, check: Extract<HandshakeCheck, { ok: false }>): void {
    this.handshakeFailed(new HandshakeError(check.reason, 'accept', check.detail, check.claimed, link.remote));
    try {
      link.socket.write(this.encoder.encodeControl({ ...makeRefusal(check.reason, check.detail) }));
    } catch (err) {
      this.log.error({ err }, 'could not encode refusal');
    }
    this.endLink(link, `refused: ${check.reason}`);
  }

  private handshakeFailed(err: HandshakeError): void {
    bump(this.handshakeFailures, err.reason);
    this.log.warn(
      { reason: err.reason, side: err.side, peer: err.peer, remote: err.remote, detail: err.detail },
      'handshake failed',
    );
    if (!this.closing) this.emit('handshakeError', err);
  }

  private protocolError(link: Link, reason: TransportDropReason, detail: string): void {
    const p = link.state === 'open' ? link.peer : null;
    bump(p !== null ? p.st.drops : this.drops, reason);
    this.log.warn({ peer: p?.id ?? null, remote: link.remote, reason, detail }, 'closing connection: protocol error');
    if (!this.closing) this.emit('protocolError', { peer: p?.id ?? null, remote: link.remote, reason, detail });
    this.destroyLink(link, `protocol error: ${reason}`);
  }

  /** Graceful: lets written frames (a refusal) reach the peer; forced after a grace period. */
  private endLink(link: Link, reason: string): void {
    if (link.state === 'closing' || link.state === 'closed') return;
    link.state = 'closing';
    link.closeReason = reason;
    link.socket.end();
    setTimeout(() => link.socket.destroy(), 2000).unref();
  }

  private destroyLink(link: Link, reason: string): void {
    if (link.state === 'closed') return;
    if (link.state !== 'closing') link.closeReason = reason;
    link.state = 'closing';
    link.socket.destroy();
  }

  private onClose(link: Link): void {
    if (
      link.state === 'handshake' &&
      link.dir === 'out' &&
      this.tls !== null &&
      link.connected &&
      !link.tlsReported &&
      !this.closing
    ) {
      // With TLS 1.3 the client finishes its side first; an acceptor that rejects our
      // certificate then just closes the connection.
      link.peer!.st.dialFailures++;
      this.handshakeFailed(
        new HandshakeError(
          'TlsFailed',
          'dial',
          'connection closed during the handshake (our certificate rejected by the peer?)',
          link.peer!.id,
          link.remote,
        ),
      );
    }
    link.state = 'closed';
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
    this.links.delete(link);
    const p = link.peer;
    if (p === null) return;
    if (p.dialing === link) p.dialing = null;
    if (p.link === link) {
      p.link = null;
      p.st.disconnects++;
      if (!this.closing) {
        this.log.info({ peer: p.id, reason: link.closeReason }, 'peer down');
        this.emit('peerDown', p.id, link.closeReason);
      }
    }
    if (p.dial && p.link === null) this.scheduleDial(p);
  }

  private scheduleDial(p: Peer): void {
    if (this.closing || p.removed || p.timer !== null || p.dialing !== null) return;
    const delay = backoffDelay(p.attempt++, this.backoff.minMs, this.backoff.maxMs, this.backoff.random);
    p.timer = setTimeout(() => this.dial(p), delay);
    p.timer.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  private flushPeer(p: Peer): void {
    const link = p.link;
    if (link === null || link.state !== 'open' || link.blocked) return;
    if (p.queue.length > 0) this.flushQueue(p, link);
    while (p.bulk.length > 0 && !link.blocked && link.socket.writableLength < this.hwm) {
      const e = p.bulk.shift()!;
      p.bulkBytes -= estimateEnvelopeBytes(e);
      const frames: { frame: Buffer; count: number }[] = [];
      this.encodeInto(p, [e], link.sendLimit, frames);
      for (const { frame, count } of frames) this.write(p, link, frame, count);
    }
  }

  private write(p: Peer, link: Link, frame: Buffer, count: number): void {
    if (!link.socket.write(frame)) link.blocked = true;
    p.st.framesSent++;
    p.st.bytesSent += frame.length;
    p.st.envelopesSent += count;
    if (frame.length > p.st.largestFrameSent) p.st.largestFrameSent = frame.length;
  }

  private flushQueue(p: Peer, link: Link): void {
    const queue = p.queue;
    p.queue = [];
    p.queueBytes = 0;
    p.full = false;
    const frames: { frame: Buffer; count: number }[] = [];
    // Pre-split by estimate so a huge backlog is not encoded into one oversized buffer first.
    const budget = link.sendLimit >>> 1;
    let start = 0;
    let acc = 0;
    for (let i = 0; i < queue.length; i++) {
      const s = estimateEnvelopeBytes(queue[i]);
      if (i > start && acc + s > budget) {
        this.encodeInto(p, queue.slice(start, i), link.sendLimit, frames);
        start = i;
        acc = 0;
      }
      acc += s;
    }
    this.encodeInto(p, start === 0 ? queue : queue.slice(start), link.sendLimit, frames);
    for (const { frame, count } of frames) this.write(p, link, frame, count);
  }

  /** Encode as one frame; on failure split in halves until the offending envelope is alone, then
   *  drop it (too large for any frame, or not encodable). */
  private encodeInto(p: Peer, envs: Envelope[], limit: number, out: { frame: Buffer; count: number }[]): void {
    try {
      out.push({ frame: this.encoder.encodeBatch(envs, limit), count: envs.length });
      return;
    } catch (err) {
      if (envs.length > 1) {
        const mid = envs.length >>> 1;
        this.encodeInto(p, envs.slice(0, mid), limit, out);
        this.encodeInto(p, envs.slice(mid), limit, out);
        return;
      }
      const reason = err instanceof FrameTooLarge ? 'TooLarge' : 'EncodeError';
      bump(p.st.drops, reason);
      this.log.warn({ peer: p.id, reason, kind: envs[0].k, err }, 'envelope dropped');
    }
  }
}
