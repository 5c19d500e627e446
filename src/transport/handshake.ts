// The connection handshake. Owns the hello/refusal control frames and the acceptance rules.
//
// The first frame in each direction is a control frame (codec.ts: a body with a string `hs`):
//   dialer   -> acceptor  hello  { hs:'hello', protocol, clusterId, nodeId, schema, maxFrameBytes, auth }
//   acceptor -> dialer    hello  (accepted)  or  refuse { hs:'refuse', protocol, reason, detail } + close
// Only after the acceptor's hello may either side send batches.
//
// Room for authentication without a new frame format:
//  - `auth` in hello is a reserved slot ({ scheme, data } or null; today always null and ignored).
//    An HMAC scheme would put a nonce in the dialer's hello, the acceptor's nonce and proof in its
//    reply, and the dialer's proof in one more control frame (`hs: 'auth'`): the decoder already
//    routes every `hs` frame to the handshake, and the link only opens on an explicit accept.
//  - Mutual TLS would wrap the socket below the framing (node:tls) and leave all of this as is.
import type { NodeId } from '../raft/types.js';
import { SCHEMA_FINGERPRINT } from './codec.js';

export const PROTOCOL_VERSION = 1;
/** Limit on frames before the handshake completes: an unauthenticated peer gets no big buffers. */
export const HANDSHAKE_MAX_FRAME_BYTES = 64 * 1024;
const MAX_STR = 256;

/**
 * Why a handshake failed.
 *  - sent by an acceptor in a refusal: ProtocolMismatch (version or structure table), WrongCluster,
 *    UnknownNode (not in its peer list, or itself), WrongDirection (the pair's dial rule says the
 *    acceptor should have dialled), BadHandshake (first frame is not a well-formed hello);
 *  - found by a dialer: the same about the acceptor's hello, plus UnexpectedNode (the address
 *    answered with another node id) and Refused (a refusal with a reason this version does not know);
 *  - local: HandshakeTimeout (no complete handshake in time).
 */
export type HandshakeReason =
  | 'ProtocolMismatch'
  | 'WrongCluster'
  | 'UnknownNode'
  | 'WrongDirection'
  | 'BadHandshake'
  | 'UnexpectedNode'
  | 'Refused'
  | 'HandshakeTimeout';

const REFUSAL_REASONS = new Set<string>(['ProtocolMismatch', 'WrongCluster', 'UnknownNode', 'WrongDirection', 'BadHandshake']);

/** Reserved for an authentication step (not implemented; always null today). */
export interface AuthSlot {
  readonly scheme: string;
  readonly data: Uint8Array;
}

export interface Hello {
  readonly hs: 'hello';
  readonly protocol: number;
  readonly clusterId: string;
  readonly nodeId: NodeId;
  /** SCHEMA_FINGERPRINT: both sides must share the msgpack structure table. */
  readonly schema: string;
  /** The largest frame this node accepts; the peer never sends bigger ones. */
  readonly maxFrameBytes: number;
  readonly auth: AuthSlot | null;
}

export interface Refusal {
  readonly hs: 'refuse';
  readonly protocol: number;
  readonly reason: HandshakeReason;
  readonly detail: string;
}

export function makeHello(clusterId: string, nodeId: NodeId, maxFrameBytes: number): Hello {
  return { hs: 'hello', protocol: PROTOCOL_VERSION, clusterId, nodeId, schema: SCHEMA_FINGERPRINT, maxFrameBytes, auth: null };
}

export function makeRefusal(reason: HandshakeReason, detail: string): Refusal {
  return { hs: 'refuse', protocol: PROTOCOL_VERSION, reason, detail: detail.slice(0, MAX_STR) };
}

/** A failed handshake, as emitted by the transport ('handshakeError') and logged. */
export class HandshakeError extends Error {
  constructor(
    readonly reason: HandshakeReason,
    /** 'accept': we refused a peer; 'dial': a peer refused us or answered wrongly. */
    readonly side: 'accept' | 'dial',
    readonly detail: string,
    /** The node id involved, when known (claimed by the remote, or the peer we dialled). */
    readonly peer: NodeId | null,
    readonly remote: string,
  ) {
    super(`handshake ${side === 'accept' ? 'refused' : 'failed'} (${reason}): ${detail}`);
    this.name = 'HandshakeError';
  }
}

export type HandshakeCheck =
  | { readonly ok: true; readonly hello: Hello }
  | { readonly ok: false; readonly reason: HandshakeReason; readonly detail: string; readonly claimed: NodeId | null };

/** For messages about hostile values: never calls into them (String() would run their toString). */
function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 32));
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return `${v}`;
  return typeof v;
}

function str(v: unknown, allowEmpty = false): v is string {
  return typeof v === 'string' && v.length <= MAX_STR && (allowEmpty || v.length > 0);
}

/** Structural and version checks common to both directions. */
function parseHello(body: Readonly<Record<string, unknown>>): HandshakeCheck {
  const claimed = str(body.nodeId) ? body.nodeId : null;
  if (body.hs !== 'hello') return { ok: false, reason: 'BadHandshake', detail: `expected hello, got ${describe(body.hs)}`, claimed };
  // Version first: a peer speaking another version may lay out everything else differently.
  if (body.protocol !== PROTOCOL_VERSION) {
    return { ok: false, reason: 'ProtocolMismatch', detail: `protocol ${describe(body.protocol)}, expected ${PROTOCOL_VERSION}`, claimed };
  }
  const { clusterId, nodeId, schema, maxFrameBytes, auth } = body;
  if (!str(clusterId, true) || !str(nodeId) || !str(schema) || !Number.isSafeInteger(maxFrameBytes) || (maxFrameBytes as number) < 1024) {
    return { ok: false, reason: 'BadHandshake', detail: 'malformed hello', claimed };
  }
  if (auth !== null && auth !== undefined && (typeof auth !== 'object' || Array.isArray(auth))) {
    return { ok: false, reason: 'BadHandshake', detail: 'malformed auth slot', claimed };
  }
  if (schema !== SCHEMA_FINGERPRINT) {
    return { ok: false, reason: 'ProtocolMismatch', detail: `structure table ${schema}, expected ${SCHEMA_FINGERPRINT}`, claimed };
  }
  const hello: Hello = { hs: 'hello', protocol: PROTOCOL_VERSION, clusterId, nodeId, schema, maxFrameBytes: maxFrameBytes as number, auth: null };
  return { ok: true, hello };
}

export interface AcceptPolicy {
  readonly clusterId: string;
  readonly selfId: NodeId;
  /** Is `id` in this node's peer list? */
  isPeer(id: NodeId): boolean;
  /** Should `id` dial us (the pair's dial rule)? */
  dialsUs(id: NodeId): boolean;
}

/** The acceptor's decision on a dialer's first frame. */
export function checkDialerHello(body: Readonly<Record<string, unknown>>, policy: AcceptPolicy): HandshakeCheck {
  const r = parseHello(body);
  if (!r.ok) return r;
  const h = r.hello;
  if (h.clusterId !== policy.clusterId) {
    return { ok: false, reason: 'WrongCluster', detail: `cluster "${h.clusterId}", expected "${policy.clusterId}"`, claimed: h.nodeId };
  }
  if (h.nodeId === policy.selfId || !policy.isPeer(h.nodeId)) {
    return { ok: false, reason: 'UnknownNode', detail: `node "${h.nodeId}" is not a peer of "${policy.selfId}"`, claimed: h.nodeId };
  }
  if (!policy.dialsUs(h.nodeId)) {
    return { ok: false, reason: 'WrongDirection', detail: `"${policy.selfId}" dials "${h.nodeId}", not the reverse`, claimed: h.nodeId };
  }
  return r;
}

/** The dialer's decision on the acceptor's first frame (a hello or a refusal). */
export function checkAcceptorReply(
  body: Readonly<Record<string, unknown>>,
  expect: { readonly clusterId: string; readonly peer: NodeId },
): HandshakeCheck {
  if (body.hs === 'refuse') {
    const reason = typeof body.reason === 'string' && REFUSAL_REASONS.has(body.reason) ? (body.reason as HandshakeReason) : 'Refused';
    const detail = str(body.detail, true) ? body.detail : '';
    return { ok: false, reason, detail: `refused by "${expect.peer}": ${detail}`, claimed: expect.peer };
  }
  const r = parseHello(body);
  if (!r.ok) return r;
  const h = r.hello;
  if (h.clusterId !== expect.clusterId) {
    return { ok: false, reason: 'WrongCluster', detail: `acceptor is in cluster "${h.clusterId}", expected "${expect.clusterId}"`, claimed: h.nodeId };
  }
  if (h.nodeId !== expect.peer) {
    return { ok: false, reason: 'UnexpectedNode', detail: `dialled "${expect.peer}" but "${h.nodeId}" answered`, claimed: h.nodeId };
  }
  return r;
}
