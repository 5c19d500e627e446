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
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { pino, type Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import {
  DEFAULT_MAX_FRAME_BYTES, FrameDecoder, FrameEncoder, FrameTooLarge, estimateEnvelopeBytes,
  type DecodeResult, type DropReason, type Envelope,
} from './codec.js';
import {
  HANDSHAKE_MAX_FRAME_BYTES, HandshakeError, checkAcceptorReply, checkDialerHello, makeHello, makeRefusal,
  type HandshakeCheck, type HandshakeReason,
} from './handshake.js';

/** Why the transport dropped something: decoder reasons plus the transport's own. */
export type TransportDropReason =
  | DropReason
  | 'QueueFull' //            send() to a peer whose queue is at maxQueueBytes
  | 'TooLarge' //             one envelope alone does not fit in a frame
  | 'EncodeError' //          msgpack cannot encode the envelope (e.g. a Symbol in an app payload)
  | 'UnknownPeer' //          send() to a node that is not in `peers`
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
}

export interface ReconnectOptions {
  /** First retry delay. Default 50 ms. */
  minMs?: number;
  /** Largest delay. Default 2 s. */
  maxMs?: number;
  /** [0, 1) source for jitter; inject for deterministic tests. Default Math.random. */
  random?: () => number;
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
}

export interface TransportEvents {
  /** A handshake with the peer completed (it was down before). */
  peerUp: [peer: NodeId];
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
}

interface Peer {
  readonly id: NodeId;
  host: string;
  port: number;
  readonly dial: boolean;
  removed: boolean;
  queue: Envelope[];
  queueBytes: number;
  link: Link | null; // the open link
  dialing: Link | null; // an outbound link not yet open
  timer: NodeJS.Timeout | null;
  attempt: number;
  full: boolean;
  st: PeerStats;
}

function newPeerStats(): PeerStats {
  return {
    connected: false, framesSent: 0, bytesSent: 0, envelopesSent: 0, framesReceived: 0, bytesReceived: 0,
    envelopesReceived: 0, queuedEnvelopes: 0, queuedBytes: 0, dials: 0, dialFailures: 0, connects: 0,
    reconnects: 0, disconnects: 0, duplicates: 0, backpressureEvents: 0, drops: {},
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

  constructor(opts: TransportOptions) {
    super();
    this.nodeId = opts.nodeId;
    this.clusterId = opts.clusterId;
    this.listenOn = { ...opts.listen };
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxQueueBytes = opts.maxQueueBytes ?? 64 * 1024 * 1024;
    this.hwm = opts.writableHighWaterMark ?? 1024 * 1024;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5000;
    this.backoff = { minMs: opts.reconnect?.minMs ?? 50, maxMs: opts.reconnect?.maxMs ?? 2000, random: opts.reconnect?.random ?? Math.random };
    this.encoder = new FrameEncoder({ maxFrameBytes: this.maxFrameBytes }); // validates the limit
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ module: 'transport', node: opts.nodeId });
    this.onEnvelopes = opts.onEnvelopes ?? null;
    if (!(this.maxFrameBytes >= HANDSHAKE_MAX_FRAME_BYTES)) throw new RangeError(`maxFrameBytes must be at least ${HANDSHAKE_MAX_FRAME_BYTES}`);
    for (const [id, addr] of Object.entries(opts.peers)) this.setPeer(id, addr);
  }

  /** Add a peer or change its address (used for the next dial; a live connection is kept).
   *  The node's own id is ignored. */
  setPeer(id: NodeId, addr: string): void {
    if (id === this.nodeId) return;
    const { host, port } = parseAddress(addr);
    const known = this.peers.get(id);
    if (known !== undefined) {
      known.host = host;
      known.port = port;
      return;
    }
    const p: Peer = {
      id, host, port, dial: dials(this.nodeId, id), removed: false, queue: [], queueBytes: 0, link: null,
      dialing: null, timer: null, attempt: 0, full: false, st: newPeerStats(),
    };
    this.peers.set(id, p);
    if (p.dial && this.server !== null && !this.closing) this.dial(p);
  }

  /** Forget a peer: its queue is dropped, its connection closed (peerDown fires if it was up),
   *  and it may no longer connect. */
  removePeer(id: NodeId): void {
    const p = this.peers.get(id);
    if (p === undefined) return;
    this.peers.delete(id);
    p.removed = true;
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
    p.queue = [];
    p.queueBytes = 0;
    if (p.link !== null) this.destroyLink(p.link, 'peer removed');
    if (p.dialing !== null) this.destroyLink(p.dialing, 'peer removed');
  }

  /** Listen, then start dialling the peers this node dials. Resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.server) throw new Error('transport already started');
    if (this.closing) throw new Error('transport is closed');
    const server = net.createServer({ highWaterMark: this.hwm, noDelay: true }, (s) => this.onInbound(s));
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
    this.log.info({ address: this.bound }, 'listening');
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
      bump(this.drops, 'UnknownPeer');
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
      peers[p.id] = { ...p.st, connected: p.link !== null, queuedEnvelopes: p.queue.length, queuedBytes: p.queueBytes, drops: { ...p.st.drops } };
    }
    return { peers, drops: { ...this.drops }, handshakeFailures: { ...this.handshakeFailures }, handlerErrors: this.handlerErrors };
  }

  /** Stop listening, end every connection (queued envelopes are written first, best effort),
   *  cancel reconnects. No events fire once close() has been called. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
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

  private dial(p: Peer): void {
    p.timer = null;
    if (this.closing || p.removed || p.link !== null || p.dialing !== null) return;
    // writableHighWaterMark is a stream.Duplex option that net.Socket passes through.
    const socket = new net.Socket({ writableHighWaterMark: this.hwm } as net.SocketConstructorOpts);
    const link = this.newLink(socket, 'out', p);
    p.dialing = link;
    p.st.dials++;
    socket.connect({ host: p.host, port: p.port }, () => {
      if (link.state !== 'handshake') return;
      socket.setNoDelay(true);
      socket.write(this.encoder.encodeControl({ ...makeHello(this.clusterId, this.nodeId, this.maxFrameBytes) }));
    });
  }

  private newLink(socket: net.Socket, dir: 'in' | 'out', peer: Peer | null): Link {
    const remote = dir === 'in' ? `${socket.remoteAddress}:${socket.remotePort}` : `${peer!.host}:${peer!.port}`;
    const link: Link = {
      socket, dir, remote, peer, state: 'handshake', blocked: false, timer: null, closeReason: 'connection closed',
      sendLimit: this.maxFrameBytes,
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
    socket.on('error', (err) => {
      if (link.state === 'handshake' && dir === 'out') {
        link.peer!.st.dialFailures++;
        this.log.debug({ peer: link.peer!.id, err: err.message }, 'dial failed');
      } else {
        this.log.debug({ remote, peer: link.peer?.id, err: err.message }, 'socket error');
      }
      link.closeReason = err.message;
    });
    socket.on('close', () => this.onClose(link));
    link.timer = setTimeout(() => {
      if (link.state !== 'handshake') return;
      const err = new HandshakeError('HandshakeTimeout', dir === 'in' ? 'accept' : 'dial',
        `no handshake within ${this.handshakeTimeoutMs} ms`, peer?.id ?? null, remote);
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
      if (link.state === 'handshake' || link.state === 'open') this.protocolError(link, 'InternalError', err instanceof Error ? err.message : typeof err);
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
      this.handshakeFailed(new HandshakeError('BadHandshake', link.dir === 'in' ? 'accept' : 'dial', detail, link.peer?.id ?? null, link.remote));
      this.protocolError(link, 'FrameBeforeHandshake', detail);
      return;
    }
    if (link.dir === 'in') {
      const check = checkDialerHello(r.body, {
        clusterId: this.clusterId,
        selfId: this.nodeId,
        isPeer: (id) => this.peers.has(id),
        dialsUs: (id) => dials(id, this.nodeId),
      });
      if (!check.ok) {
        this.refuse(link, check);
        return;
      }
      const p = this.peers.get(check.hello.nodeId)!;
      link.socket.write(this.encoder.encodeControl({ ...makeHello(this.clusterId, this.nodeId, this.maxFrameBytes) }));
      this.open(link, p, check.hello.maxFrameBytes);
    } else {
      const p = link.peer!;
      const check = checkAcceptorReply(r.body, { clusterId: this.clusterId, peer: p.id });
      if (!check.ok) {
        this.handshakeFailed(new HandshakeError(check.reason, 'dial', check.detail, p.id, link.remote));
        this.destroyLink(link, `handshake failed: ${check.reason}`);
        return;
      }
      this.open(link, p, check.hello.maxFrameBytes);
    }
  }

  private open(link: Link, p: Peer, peerMaxFrame: number): void {
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
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
      this.log.info({ peer: p.id, remote: link.remote, old: old.remote }, 'duplicate connection: keeping the newer one');
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
      this.log.warn({ peer: p.id, hs: String(r.body.hs).slice(0, 32) /* a string: see FrameDecoder */ }, 'control frame after handshake ignored');
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
    this.log.warn({ reason: err.reason, side: err.side, peer: err.peer, remote: err.remote, detail: err.detail }, 'handshake failed');
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
    if (p.queue.length === 0 || link === null || link.state !== 'open' || link.blocked) return;
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
    let ok = true;
    for (const { frame, count } of frames) {
      ok = link.socket.write(frame);
      p.st.framesSent++;
      p.st.bytesSent += frame.length;
      p.st.envelopesSent += count;
    }
    if (!ok) link.blocked = true;
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
      this.log.warn({ peer: p.id, reason, kind: envs[0].k, err: err instanceof Error ? err.message : typeof err }, 'envelope dropped');
    }
  }
}
