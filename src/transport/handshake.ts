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
//
// Join mode (a node not yet in the cluster asks to be admitted; the joiner side is join.ts):
//   joiner   -> acceptor  hello  { ..., clusterId: '' (or the id it expects), nodeId: its id,
//                                  join: { v: 1, address: 'host:port', labels: {k: v} } }
//   acceptor -> joiner    hello  { ..., clusterId: echoed from the joiner, nodeId: acceptor id }  or refuse
//   (with a secret: auth / ok exactly as above, over the same transcript, cluster id as presented)
//   acceptor -> joiner    joined { hs:'joined', protocol, clusterId }  or refuse { reason }  + close
// The acceptor authenticates a joiner as it does a member (the secret's proof, the certificate
// naming the claimed id; either failing is refused as Unauthenticated) but skips the peer-list and
// dial-rule checks, and says nothing about its cluster before the joiner has proved itself: the
// cluster id is in `joined` only. Then its owner decides (TransportOptions.onJoinRequest): accept,
// or refuse with a JoinRefusalReason. A join connection carries no data frames; it is closed
// after the answer, and an admitted node connects again as a member, with the cluster id. The
// join slot is versioned on its own (JOIN_VERSION); an acceptor that predates it treats the hello
// as a member's and refuses it (WrongCluster or UnknownNode), so it never admits anyone by mistake.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NodeId } from '../raft/types.js';
import { SCHEMA_FINGERPRINT } from './codec.js';

export { MIN_SECRET_LENGTH } from './secret.js';

/** 2: the cluster-secret exchange (auth slot in hello, auth and ok frames, new refusal reasons). */
export const PROTOCOL_VERSION = 2;
export const AUTH_SCHEME = 'hmac-sha256';
/** Version of the join slot of a hello and of the joined frame (join mode, above). */
export const JOIN_VERSION = 1;
/** Labels a joiner may present: at most this many, each key and value a short string. */
export const MAX_JOIN_LABELS = 32;
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
 *    answered with another node id) and Refused (a refusal with a reason this version does not know,
 *    or, joining, a connection closed without an answer);
 *    Removed (the node was removed from this cluster: it is never admitted again);
 *  - join refusals (join mode): Unauthenticated (wrong or missing secret, or a certificate not
 *    naming the joiner), ClusterMismatch (the joiner expects another cluster), and the owner's
 *    answers DuplicateId, DuplicateAddress, Decommissioned, NotReady (nothing to decide with now, or,
 *    found by the joiner, a connection closed after authentication without an answer:
 *    no join handler, no leader, ...; retry later);
 *  - local: HandshakeTimeout (no complete handshake in time), TlsFailed (the TLS handshake failed:
 *    a certificate not signed by the cluster CA, none at all, or a peer not speaking TLS),
 *    Unreachable (join: the seed address could not be connected to).
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
  | 'TlsFailed'
  | 'Removed'
  | 'Unreachable'
  | JoinRefusalReason;

/** Why an acceptor refuses a join (the owner's answer, or the transport's own checks). */
export type JoinRefusalReason =
  | 'ClusterMismatch'
  | 'DuplicateId'
  | 'DuplicateAddress'
  | 'Decommissioned'
  | 'Unauthenticated'
  | 'NotReady';

export const JOIN_REFUSAL_REASONS: ReadonlySet<JoinRefusalReason> = new Set<JoinRefusalReason>([
  'ClusterMismatch',
  'DuplicateId',
  'DuplicateAddress',
  'Decommissioned',
  'Unauthenticated',
  'NotReady',
]);

const REFUSAL_REASONS = new Set<string>([
  'ProtocolMismatch',
  'WrongCluster',
  'UnknownNode',
  'WrongDirection',
  'BadHandshake',
  'AuthMismatch',
  'AuthFailed',
  'CertMismatch',
  'Removed',
  ...JOIN_REFUSAL_REASONS,
]);

/** The cluster-secret challenge in a hello: this side's fresh nonce. */
export interface AuthSlot {
  readonly scheme: typeof AUTH_SCHEME;
  readonly nonce: Uint8Array;
}

/** What a joining node presents in its hello (join mode). */
export interface JoinSlot {
  readonly v: typeof JOIN_VERSION;
  /** Where the members will dial it, 'host:port'. */
  readonly address: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** The acceptor's admission of a joiner: the cluster it joined. */
export interface Joined {
  readonly hs: 'joined';
  readonly protocol: number;
  readonly v: typeof JOIN_VERSION;
  readonly clusterId: string;
  /** What the owner tells an admitted joiner beside the cluster id (opaque here: the runtime
   *  encodes its topology in it). */
  readonly info?: Uint8Array;
}

/** Largest `info` a joined frame carries: the frame must stay within HANDSHAKE_MAX_FRAME_BYTES. */
export const JOIN_INFO_MAX_BYTES = 48 * 1024;

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
  /** Present iff the sender is joining (join mode); never sent by a member. */
  readonly join?: JoinSlot;
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
  join: JoinSlot | null = null,
): Hello {
  const hello: Hello = {
    hs: 'hello',
    protocol: PROTOCOL_VERSION,
    clusterId,
    nodeId,
    schema: SCHEMA_FINGERPRINT,
    maxFrameBytes,
    auth,
  };
  // A member's hello has no join key at all: the same bytes as before join mode existed.
  return join === null ? hello : { ...hello, join };
}

export function makeJoined(clusterId: string, info?: Uint8Array): Joined {
  if (info !== undefined && info.byteLength > JOIN_INFO_MAX_BYTES)
    throw new RangeError(`join info of ${info.byteLength} bytes is over ${JOIN_INFO_MAX_BYTES}`);
  return info === undefined
    ? { hs: 'joined', protocol: PROTOCOL_VERSION, v: JOIN_VERSION, clusterId }
    : { hs: 'joined', protocol: PROTOCOL_VERSION, v: JOIN_VERSION, clusterId, info };
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
  let join: JoinSlot | null = null;
  if (body.join !== undefined && body.join !== null) {
    const j = parseJoinSlot(body.join);
    if (typeof j === 'string') {
      return {
        ok: false,
        reason: j.startsWith('join version') ? 'ProtocolMismatch' : 'BadHandshake',
        detail: j,
        claimed,
      };
    }
    join = j;
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
    ...(join === null ? {} : { join }),
  };
  return { ok: true, hello };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** A join slot, or why it is not one. */
function parseJoinSlot(v: unknown): JoinSlot | string {
  if (!isRecord(v)) return 'malformed join slot';
  if (v.v !== JOIN_VERSION) return `join version ${describe(v.v)}, expected ${JOIN_VERSION}`;
  if (!str(v.address)) return 'malformed join address';
  const labels = v.labels ?? {};
  if (!isRecord(labels)) return 'malformed join labels';
  const entries = Object.entries(labels);
  if (entries.length > MAX_JOIN_LABELS) return `more than ${MAX_JOIN_LABELS} join labels`;
  for (const [k, val] of entries) if (!str(k) || !str(val, true)) return 'malformed join label';
  return { v: JOIN_VERSION, address: v.address, labels: Object.fromEntries(entries) as Record<string, string> };
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
  /** Was `id` removed from the peer list (refused with Removed)? Default: never. */
  isRemoved?(id: NodeId): boolean;
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
  if (h.join !== undefined) return checkJoinerHello(r, policy);
  if (h.clusterId !== policy.clusterId) {
    return {
      ok: false,
      reason: 'WrongCluster',
      detail: `cluster "${h.clusterId}", expected "${policy.clusterId}"`,
      claimed: h.nodeId,
    };
  }
  if (policy.isRemoved?.(h.nodeId) === true) {
    return {
      ok: false,
      reason: 'Removed',
      detail: `node "${h.nodeId}" was removed from the cluster`,
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

/** Join mode: no peer-list or dial-rule check (the owner decides after authentication). */
function checkJoinerHello(r: Extract<HandshakeCheck, { ok: true }>, policy: AcceptPolicy): HandshakeCheck {
  const h = r.hello;
  if (h.clusterId !== '' && h.clusterId !== policy.clusterId) {
    return {
      ok: false,
      reason: 'ClusterMismatch',
      detail: `joiner "${h.nodeId}" expects another cluster`,
      claimed: h.nodeId,
    };
  }
  if (h.nodeId === policy.selfId) {
    return { ok: false, reason: 'DuplicateId', detail: `"${h.nodeId}" is the acceptor's own id`, claimed: h.nodeId };
  }
  const bad = authAgreement(h, policy.secret === true, policy.selfId, 'dialer');
  if (bad !== null && !bad.ok) return { ...bad, reason: 'Unauthenticated', detail: `${bad.reason}: ${bad.detail}` };
  return r;
}

/** The dialer's decision on the acceptor's first frame (a hello or a refusal). */
export function checkAcceptorReply(
  body: Readonly<Record<string, unknown>>,
  expect: {
    readonly clusterId: string;
    /** The node dialled; null when any may answer (a joiner dialling a seed address). */
    readonly peer: NodeId | null;
    readonly self?: NodeId;
    readonly secret?: boolean;
  },
): HandshakeCheck {
  if (body.hs === 'refuse') return refusalOf(body, expect.peer ?? 'seed');
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
  if (expect.peer !== null && h.nodeId !== expect.peer) {
    return {
      ok: false,
      reason: 'UnexpectedNode',
      detail: `dialled "${expect.peer}" but "${h.nodeId}" answered`,
      claimed: h.nodeId,
    };
  }
  return authAgreement(h, expect.secret === true, expect.self ?? '?', 'acceptor') ?? r;
}

/** A refusal frame as a failed check (an unknown reason becomes Refused). */
export function refusalOf(
  body: Readonly<Record<string, unknown>>,
  peer: NodeId,
): Extract<HandshakeCheck, { ok: false }> {
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

export type JoinedCheck =
  | { readonly ok: true; readonly clusterId: string; readonly info?: Uint8Array }
  | { readonly ok: false; readonly reason: HandshakeReason; readonly detail: string; readonly claimed: NodeId | null };

/** The joiner's decision on the acceptor's answer: joined or a refusal. */
export function checkJoined(body: Readonly<Record<string, unknown>>, acceptor: NodeId): JoinedCheck {
  if (body.hs === 'refuse') return refusalOf(body, acceptor);
  if (body.hs !== 'joined')
    return {
      ok: false,
      reason: 'BadHandshake',
      detail: `expected joined, got ${describe(body.hs)}`,
      claimed: acceptor,
    };
  if (body.protocol !== PROTOCOL_VERSION || body.v !== JOIN_VERSION) {
    return {
      ok: false,
      reason: 'ProtocolMismatch',
      detail: `joined protocol ${describe(body.protocol)} v ${describe(body.v)}, expected ${PROTOCOL_VERSION} v ${JOIN_VERSION}`,
      claimed: acceptor,
    };
  }
  if (!str(body.clusterId))
    return { ok: false, reason: 'BadHandshake', detail: 'malformed joined frame', claimed: acceptor };
  if (body.info !== undefined && !(body.info instanceof Uint8Array))
    return { ok: false, reason: 'BadHandshake', detail: 'malformed joined frame (info)', claimed: acceptor };
  return body.info === undefined
    ? { ok: true, clusterId: body.clusterId }
    : { ok: true, clusterId: body.clusterId, info: body.info };
}
