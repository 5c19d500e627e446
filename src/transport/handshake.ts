// The connection handshake. Owns the hello/auth/ok/refusal control frames, the acceptance rules
// and the cluster-secret challenge-response.
//
// The first frames in each direction are control frames (codec.ts: a body with a string `hs`):
//   dialer   -> acceptor  hello  { hs:'hello', protocol, clusterId, nodeId, schema, maxFrameBytes, auth }
//   acceptor -> dialer    hello  (accepted)  or  refuse { hs:'refuse', protocol, reason, detail } + close
// Only after the acceptor's hello may either side send batches.
//
// With a cluster secret (TransportOptions.secret) two more frames follow before anything opens:
//   dialer   hello { ..., auth: { scheme:'hmac-sha256', nonce: nD } }          (32 random bytes)
//   acceptor hello { ..., auth: { scheme:'hmac-sha256', nonce: nA } }          or refuse
//   dialer   auth  { hs:'auth', protocol, proof: HMAC(secret, 'dialer'   | transcript) }
//   acceptor ok    { hs:'ok',   protocol, proof: HMAC(secret, 'acceptor' | transcript) }  or refuse
// transcript = cluster id, dialer id, acceptor id (length-prefixed), nD, nA. The acceptor checks
// the dialer first, so it never hands a proof to a peer that has not proved itself; the dialer
// opens only on a valid ok. Fresh nonces on both sides stop replays, the role tag stops a proof
// being reflected back, and the secret itself never goes on the wire. Both sides must agree on
// using a secret: a hello with an auth slot to a node without a secret (or without one to a node
// with a secret) is refused with AuthMismatch. This authenticates the handshake only; frames after
// it are neither encrypted nor MACed (use mutual TLS for that, below the framing: transport.ts).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NodeId } from '../raft/types.js';
import { SCHEMA_FINGERPRINT } from './codec.js';

export { MIN_SECRET_LENGTH } from './secret.js';

/** 2: the cluster-secret exchange (auth slot in hello, auth and ok frames, new refusal reasons). */
export const PROTOCOL_VERSION = 2;
export const AUTH_SCHEME = 'hmac-sha256';
export const AUTH_NONCE_BYTES = 32;
const PROOF_BYTES = 32;
/** Limit on frames before the handshake completes: an unauthenticated peer gets no big buffers. */
export const HANDSHAKE_MAX_FRAME_BYTES = 64 * 1024;
const MAX_STR = 256;

/**
 * Why a handshake failed.
 *  - sent by an acceptor in a refusal: ProtocolMismatch (version or structure table), WrongCluster,
 *    UnknownNode (not in its peer list, or itself), WrongDirection (the pair's dial rule says the
 *    acceptor should have dialled), BadHandshake (first frame is not a well-formed hello),
 *    AuthMismatch (one side has a cluster secret and the other has none), AuthFailed (the
 *    dialer's proof of the cluster secret is wrong), CertMismatch (TLS: the dialer's certificate
 *    does not name the node id it claims);
 *  - found by a dialer: the same about the acceptor's replies, plus UnexpectedNode (the address
 *    answered with another node id) and Refused (a refusal with a reason this version does not know);
 *  - local: HandshakeTimeout (no complete handshake in time), TlsFailed (the TLS handshake failed:
 *    a certificate not signed by the cluster CA, none at all, or a peer not speaking TLS).
 */
export type HandshakeReason =
  | 'ProtocolMismatch'
  | 'WrongCluster'
  | 'UnknownNode'
  | 'WrongDirection'
  | 'BadHandshake'
  | 'UnexpectedNode'
  | 'Refused'
  | 'HandshakeTimeout'
  | 'AuthMismatch'
  | 'AuthFailed'
  | 'CertMismatch'
  | 'TlsFailed';

const REFUSAL_REASONS = new Set<string>([
  'ProtocolMismatch',
  'WrongCluster',
  'UnknownNode',
  'WrongDirection',
  'BadHandshake',
  'AuthMismatch',
  'AuthFailed',
  'CertMismatch',
]);

/** The cluster-secret challenge in a hello: this side's fresh nonce. */
export interface AuthSlot {
  readonly scheme: typeof AUTH_SCHEME;
  readonly nonce: Uint8Array;
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
  /** Present iff the sender has a cluster secret. */
  readonly auth: AuthSlot | null;
}

export interface Refusal {
  readonly hs: 'refuse';
  readonly protocol: number;
  readonly reason: HandshakeReason;
  readonly detail: string;
}

/** The dialer's proof (hs 'auth') or the acceptor's (hs 'ok'). */
export interface ProofFrame {
  readonly hs: 'auth' | 'ok';
  readonly protocol: number;
  readonly proof: Uint8Array;
}

export function makeHello(
  clusterId: string,
  nodeId: NodeId,
  maxFrameBytes: number,
  auth: AuthSlot | null = null,
): Hello {
  return {
    hs: 'hello',
    protocol: PROTOCOL_VERSION,
    clusterId,
    nodeId,
    schema: SCHEMA_FINGERPRINT,
    maxFrameBytes,
    auth,
  };
}

export function makeRefusal(reason: HandshakeReason, detail: string): Refusal {
  return { hs: 'refuse', protocol: PROTOCOL_VERSION, reason, detail: detail.slice(0, MAX_STR) };
}

export function makeProofFrame(hs: 'auth' | 'ok', proof: Uint8Array): ProofFrame {
  return { hs, protocol: PROTOCOL_VERSION, proof };
}

/** A fresh challenge for a hello. */
export function newAuthSlot(): AuthSlot {
  return { scheme: AUTH_SCHEME, nonce: randomBytes(AUTH_NONCE_BYTES) };
}

/** What both proofs cover: who talks to whom, in which cluster, with which nonces. */
export interface AuthTranscript {
  readonly clusterId: string;
  readonly dialer: NodeId;
  readonly acceptor: NodeId;
  readonly dialerNonce: Uint8Array;
  readonly acceptorNonce: Uint8Array;
}

/** HMAC-SHA256 keyed with the secret over a role tag and the transcript (every variable-length
 *  field length-prefixed, so no two transcripts hash the same bytes). */
export function authProof(secret: string, role: 'dialer' | 'acceptor', t: AuthTranscript): Buffer {
  const h = createHmac('sha256', secret);
  const field = (b: Uint8Array) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    h.update(len);
    h.update(b);
  };
  field(Buffer.from(`flotilla/transport-auth/${PROTOCOL_VERSION}/${role}`));
  for (const s of [t.clusterId, t.dialer, t.acceptor]) field(Buffer.from(s, 'utf8'));
  field(t.dialerNonce);
  field(t.acceptorNonce);
  return h.digest();
}

/** Constant-time check of a received proof. */
export function verifyProof(
  secret: string,
  role: 'dialer' | 'acceptor',
  t: AuthTranscript,
  proof: Uint8Array,
): boolean {
  const want = authProof(secret, role, t);
  return proof.length === want.length && timingSafeEqual(want, proof);
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
  if (body.hs !== 'hello')
    return { ok: false, reason: 'BadHandshake', detail: `expected hello, got ${describe(body.hs)}`, claimed };
  // Version first: a peer speaking another version may lay out everything else differently.
  if (body.protocol !== PROTOCOL_VERSION) {
    return {
      ok: false,
      reason: 'ProtocolMismatch',
      detail: `protocol ${describe(body.protocol)}, expected ${PROTOCOL_VERSION}`,
      claimed,
    };
  }
  const { clusterId, nodeId, schema, maxFrameBytes, auth } = body;
  if (
    !str(clusterId, true) ||
    !str(nodeId) ||
    !str(schema) ||
    !Number.isSafeInteger(maxFrameBytes) ||
    (maxFrameBytes as number) < 1024
  ) {
    return { ok: false, reason: 'BadHandshake', detail: 'malformed hello', claimed };
  }
  let slot: AuthSlot | null = null;
  if (auth !== null && auth !== undefined) {
    if (typeof auth !== 'object' || Array.isArray(auth) || auth instanceof Uint8Array) {
      return { ok: false, reason: 'BadHandshake', detail: 'malformed auth slot', claimed };
    }
    const { scheme, nonce } = auth as Record<string, unknown>;
    if (scheme !== AUTH_SCHEME) {
      return {
        ok: false,
        reason: 'AuthMismatch',
        detail: `auth scheme ${describe(scheme)}, expected "${AUTH_SCHEME}"`,
        claimed,
      };
    }
    if (!(nonce instanceof Uint8Array) || nonce.length !== AUTH_NONCE_BYTES) {
      return { ok: false, reason: 'BadHandshake', detail: 'malformed auth nonce', claimed };
    }
    slot = { scheme: AUTH_SCHEME, nonce };
  }
  if (schema !== SCHEMA_FINGERPRINT) {
    return {
      ok: false,
      reason: 'ProtocolMismatch',
      detail: `structure table ${schema}, expected ${SCHEMA_FINGERPRINT}`,
      claimed,
    };
  }
  const hello: Hello = {
    hs: 'hello',
    protocol: PROTOCOL_VERSION,
    clusterId,
    nodeId,
    schema,
    maxFrameBytes: maxFrameBytes as number,
    auth: slot,
  };
  return { ok: true, hello };
}

/** Both sides must agree on using a cluster secret. */
function authAgreement(
  h: Hello,
  hasSecret: boolean,
  self: NodeId,
  peerRole: 'dialer' | 'acceptor',
): HandshakeCheck | null {
  if (hasSecret && h.auth === null) {
    return {
      ok: false,
      reason: 'AuthMismatch',
      detail: `"${self}" requires the cluster secret but ${peerRole} "${h.nodeId}" sent no challenge (no secret configured there?)`,
      claimed: h.nodeId,
    };
  }
  if (!hasSecret && h.auth !== null) {
    return {
      ok: false,
      reason: 'AuthMismatch',
      detail: `${peerRole} "${h.nodeId}" uses a cluster secret but "${self}" has none configured`,
      claimed: h.nodeId,
    };
  }
  return null;
}

export interface AcceptPolicy {
  readonly clusterId: string;
  readonly selfId: NodeId;
  /** Is `id` in this node's peer list? */
  isPeer(id: NodeId): boolean;
  /** Should `id` dial us (the pair's dial rule)? */
  dialsUs(id: NodeId): boolean;
  /** Does this node have a cluster secret (then the dialer must send a challenge)? Default false. */
  readonly secret?: boolean;
}

/** The acceptor's decision on a dialer's first frame. */
export function checkDialerHello(body: Readonly<Record<string, unknown>>, policy: AcceptPolicy): HandshakeCheck {
  const r = parseHello(body);
  if (!r.ok) return r;
  const h = r.hello;
  if (h.clusterId !== policy.clusterId) {
    return {
      ok: false,
      reason: 'WrongCluster',
      detail: `cluster "${h.clusterId}", expected "${policy.clusterId}"`,
      claimed: h.nodeId,
    };
  }
  if (h.nodeId === policy.selfId || !policy.isPeer(h.nodeId)) {
    return {
      ok: false,
      reason: 'UnknownNode',
      detail: `node "${h.nodeId}" is not a peer of "${policy.selfId}"`,
      claimed: h.nodeId,
    };
  }
  if (!policy.dialsUs(h.nodeId)) {
    return {
      ok: false,
      reason: 'WrongDirection',
      detail: `"${policy.selfId}" dials "${h.nodeId}", not the reverse`,
      claimed: h.nodeId,
    };
  }
  return authAgreement(h, policy.secret === true, policy.selfId, 'dialer') ?? r;
}

/** The dialer's decision on the acceptor's first frame (a hello or a refusal). */
export function checkAcceptorReply(
  body: Readonly<Record<string, unknown>>,
  expect: { readonly clusterId: string; readonly peer: NodeId; readonly self?: NodeId; readonly secret?: boolean },
): HandshakeCheck {
  if (body.hs === 'refuse') return refusalOf(body, expect.peer);
  const r = parseHello(body);
  if (!r.ok) return r;
  const h = r.hello;
  if (h.clusterId !== expect.clusterId) {
    return {
      ok: false,
      reason: 'WrongCluster',
      detail: `acceptor is in cluster "${h.clusterId}", expected "${expect.clusterId}"`,
      claimed: h.nodeId,
    };
  }
  if (h.nodeId !== expect.peer) {
    return {
      ok: false,
      reason: 'UnexpectedNode',
      detail: `dialled "${expect.peer}" but "${h.nodeId}" answered`,
      claimed: h.nodeId,
    };
  }
  return authAgreement(h, expect.secret === true, expect.self ?? '?', 'acceptor') ?? r;
}

function refusalOf(body: Readonly<Record<string, unknown>>, peer: NodeId): Extract<HandshakeCheck, { ok: false }> {
  const reason =
    typeof body.reason === 'string' && REFUSAL_REASONS.has(body.reason) ? (body.reason as HandshakeReason) : 'Refused';
  const detail = str(body.detail, true) ? body.detail : '';
  return { ok: false, reason, detail: `refused by "${peer}": ${detail}`, claimed: peer };
}

export type ProofCheck =
  | { readonly ok: true; readonly proof: Uint8Array }
  | { readonly ok: false; readonly reason: HandshakeReason; readonly detail: string; readonly claimed: NodeId | null };

/** The structure of a proof frame: the acceptor expects `auth` from the dialer, the dialer `ok`
 *  (or a refusal) from the acceptor. Whether the proof is right is verifyProof's business. */
export function checkProofFrame(
  body: Readonly<Record<string, unknown>>,
  expect: 'auth' | 'ok',
  peer: NodeId,
): ProofCheck {
  if (expect === 'ok' && body.hs === 'refuse') return refusalOf(body, peer);
  if (body.hs !== expect)
    return { ok: false, reason: 'BadHandshake', detail: `expected ${expect}, got ${describe(body.hs)}`, claimed: peer };
  if (body.protocol !== PROTOCOL_VERSION) {
    return {
      ok: false,
      reason: 'ProtocolMismatch',
      detail: `protocol ${describe(body.protocol)}, expected ${PROTOCOL_VERSION}`,
      claimed: peer,
    };
  }
  const proof = body.proof;
  if (!(proof instanceof Uint8Array) || proof.length !== PROOF_BYTES)
    return { ok: false, reason: 'BadHandshake', detail: `malformed ${expect} frame`, claimed: peer };
  return { ok: true, proof };
}
