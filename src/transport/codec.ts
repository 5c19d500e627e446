// Wire codec for node-to-node frames. Owns the frame format, the fixed msgpack structure table,
// the Envelope union and the incremental decoder (limits, validation, drop accounting).
//
// Frame:  u32 big-endian (network order) body length | body (exactly one msgpack value)
// Body:   { items: Envelope[] }  a batch of many groups' messages (one per destination per turn)
//         { hs: string, ... }    a control frame (the connection handshake, see handshake.ts)
//
// Why a fixed structure table: msgpackr "records" put property names on the wire once per
// structure instead of once per object (≈57 B instead of ≈110 B for an append with a 16 B entry).
// Both sides build the same table from code and pin `maxSharedStructures` to its length, so
// packing an unknown shape never appends to it (the shape goes inline in that frame) and no
// per-connection negotiation is needed: a fresh decoder after a reconnect decodes everything.
// Changing SCHEMA() changes SCHEMA_FINGERPRINT, which the handshake compares (ProtocolMismatch).
//
// Adding an envelope kind: add a member to `Envelope`, a validator to ENVELOPE_KINDS, and
// (optionally, for size) its shape to SCHEMA(). Older peers drop and count unknown kinds without
// losing the rest of the frame.
import { Packr, Unpackr, RESERVE_START_SPACE } from 'msgpackr';
import type { Entry, Message, RejectReason } from '../raft/types.js';
import { validateMessage } from '../raft/validate.js';
import { RAFT_BATCH_VERSION } from './raftbatch.js';
import { FrameTooLarge, MalformedFrame } from './errors.js';

export const FRAME_HEADER_BYTES = 4;
/** Default limit on a whole frame (header included). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** The header is a u32, so no frame can be larger than this. */
export const MAX_FRAME_LIMIT = 0xffffffff + FRAME_HEADER_BYTES;
const MAX_APP_TYPE = 128;

// ---------------------------------------------------------------------------------------------
// Envelopes

/** A Raft message for one group; validated with validateMessage() on receipt. */
export interface RaftEnvelope {
  readonly k: 'raft';
  readonly m: Message;
}

/** An opaque runtime payload (forwarded proposals, liveness/load summaries). `t` names it for
 *  the runtime; the transport never looks inside `p`. */
export interface AppEnvelope {
  readonly k: 'app';
  readonly t: string;
  readonly p: unknown;
}

/** Many Raft messages for one worker (shard) of the receiving node, already packed by the
 *  sending worker with RaftBatchCodec (raftbatch.ts). The receiving node's main thread hands `b` to worker
 *  `w` without decoding it; that worker decodes and validates every message. This keeps the
 *  per-message codec work off the main thread, which only relays bytes. */
export interface RaftBatchEnvelope {
  readonly k: 'rb';
  readonly w: number;
  readonly b: Uint8Array;
}

export type Envelope = RaftEnvelope | AppEnvelope | RaftBatchEnvelope;
export type EnvelopeKind = Envelope['k'];

/** Per-kind structural check of a decoded item: null = keep, else the drop reason. */
const ENVELOPE_KINDS: Record<EnvelopeKind, (e: Record<string, unknown>) => DropReason | null> = {
  raft: (e) => {
    const r = validateMessage(e.m);
    return r === null ? null : `raft.${r}`;
  },
  app: (e) => (typeof e.t === 'string' && e.t.length > 0 && e.t.length <= MAX_APP_TYPE ? null : 'InvalidEnvelope'),
  rb: (e) =>
    Number.isInteger(e.w) && (e.w as number) >= 0 && (e.w as number) < MAX_WORKERS && e.b instanceof Uint8Array
      ? null
      : 'InvalidEnvelope',
};

/** Worker (shard) indices on the wire are below this. */
export const MAX_WORKERS = 1024;

/** Why something received was dropped. Frame-level reasons drop a whole frame; the others one item. */
export type DropReason =
  | 'FrameTooLarge'
  | 'MalformedFrame'
  | 'InvalidEnvelope'
  | 'UnknownKind'
  | `raft.${RejectReason}`;

// ---------------------------------------------------------------------------------------------
// The structure table. Keys are listed in the order the encoder writes them (see canonical()).

const MSG = ['type', 'group', 'from', 'to', 'term'];

/** A fresh copy of the fixed structure table (msgpackr annotates the array it is given, so each
 *  Packr/Unpackr gets its own). Append-only by convention; any change needs a protocol bump. */
export function SCHEMA(): string[][] {
  return [
    ['items'], //                                              batch
    ['k', 'm'], //                                             raft envelope
    ['k', 't', 'p'], //                                        app envelope
    [...MSG, 'index', 'logTerm', 'commit', 'entries'], //      app
    ['index', 'term', 'type', 'data'], //                      Entry
    [...MSG, 'index', 'reject', 'hintIndex', 'hintTerm'], //   appResp
    [...MSG, 'commit', 'ctx', 'seq', 'quiesce'], //            hb
    [...MSG, 'ctx', 'seq'], //                                 hbResp
    [...MSG, 'index', 'logTerm', 'transfer'], //               vote, preVote
    [...MSG, 'reject'], //                                     voteResp, preVoteResp
    [...MSG, 'snapshot'], //                                   snap
    ['meta', 'data'], //                                       Snapshot
    ['index', 'term', 'conf'], //                              SnapshotMeta
    ['voters', 'learners'], //                                 ConfState
    [...MSG], //                                               timeoutNow
    [...MSG, 'target'], //                                     transferLeader
    [...MSG, 'ctx'], //                                        readIndex
    [...MSG, 'ctx', 'index'], //                               readIndexResp
    ['k', 'w', 'b'], //                                        raft batch envelope
  ];
}

/** FNV-1a of the table and of the raft batch layout's version; peers that differ in either cannot
 *  talk (checked in the handshake). */
export const SCHEMA_FINGERPRINT: string = (() => {
  const s = JSON.stringify(SCHEMA()) + `/rb${RAFT_BATCH_VERSION}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
})();

function codecOptions() {
  const structures = SCHEMA();
  // structuredClone off: its reference extensions are not part of this protocol, and a hostile
  // pointer record then fails cleanly instead of dereferencing an empty reference map.
  return { structures, maxSharedStructures: structures.length, structuredClone: false };
}

function entry(e: Entry): Entry {
  return { index: e.index, term: e.term, type: e.type, data: e.data };
}

/**
 * The message rebuilt with exactly the schema's keys in the schema's order. msgpackr matches a
 * record by key order, and the core's objects are built by spreading (their order is an
 * implementation detail of src/raft), so without this a frame would carry inline definitions.
 * Fields not in the table are not transmitted. Unknown types pass through unchanged (the
 * receiver's validation decides).
 */
export function canonical(m: Message): Message {
  const { group, from, to, term } = m;
  switch (m.type) {
    case 'app':
      return {
        type: m.type,
        group,
        from,
        to,
        term,
        index: m.index,
        logTerm: m.logTerm,
        commit: m.commit,
        entries: m.entries.map(entry),
      };
    case 'appResp':
      return {
        type: m.type,
        group,
        from,
        to,
        term,
        index: m.index,
        reject: m.reject,
        hintIndex: m.hintIndex,
        hintTerm: m.hintTerm,
      };
    case 'hb':
      return { type: m.type, group, from, to, term, commit: m.commit, ctx: m.ctx, seq: m.seq, quiesce: m.quiesce };
    case 'hbResp':
      return { type: m.type, group, from, to, term, ctx: m.ctx, seq: m.seq };
    case 'vote':
    case 'preVote':
      return { type: m.type, group, from, to, term, index: m.index, logTerm: m.logTerm, transfer: m.transfer };
    case 'voteResp':
    case 'preVoteResp':
      return { type: m.type, group, from, to, term, reject: m.reject };
    case 'snap': {
      const s = m.snapshot;
      const conf = { voters: s.meta.conf.voters, learners: s.meta.conf.learners };
      return {
        type: m.type,
        group,
        from,
        to,
        term,
        snapshot: { meta: { index: s.meta.index, term: s.meta.term, conf }, data: s.data },
      };
    }
    case 'timeoutNow':
      return { type: m.type, group, from, to, term };
    case 'transferLeader':
      return { type: m.type, group, from, to, term, target: m.target };
    case 'readIndex':
      return { type: m.type, group, from, to, term, ctx: m.ctx };
    case 'readIndexResp':
      return { type: m.type, group, from, to, term, ctx: m.ctx, index: m.index };
    default:
      return m;
  }
}

function canonicalEnvelope(e: Envelope): Envelope {
  switch (e.k) {
    case 'raft':
      return { k: 'raft', m: canonical(e.m) };
    case 'app':
      return { k: 'app', t: e.t, p: e.p };
    case 'rb':
      return { k: 'rb', w: e.w, b: e.b };
    default:
      return e;
  }
}

/**
 * A cheap upper-ish estimate of an envelope's encoded size, used for the per-peer queue bound
 * and to pre-split batches under the frame limit (the encoder's real size is checked afterwards).
 * Opaque payloads are walked to a small depth and width; anything deeper counts as 16 B.
 */
export function estimateEnvelopeBytes(e: Envelope): number {
  if (e.k === 'raft') {
    const m = e.m;
    if (m.type === 'app') {
      let n = 48;
      for (const x of m.entries) n += 24 + x.data.length;
      return n;
    }
    if (m.type === 'snap') {
      const c = m.snapshot.meta.conf;
      return 96 + m.snapshot.data.length + 16 * (c.voters.length + c.learners.length);
    }
    return 64;
  }
  if (e.k === 'app') return 8 + e.t.length + estimateValue(e.p, 3);
  if (e.k === 'rb') return 16 + e.b.length;
  return 64;
}

function estimateValue(v: unknown, depth: number): number {
  if (typeof v === 'string') return 5 + v.length * 3;
  if (v instanceof Uint8Array) return 5 + v.length;
  if (typeof v !== 'object' || v === null || depth === 0) return 9;
  let n = 5;
  let width = 0;
  if (Array.isArray(v)) {
    for (const x of v) {
      if (++width > 64) return n + (v.length - 64) * 16;
      n += estimateValue(x, depth - 1);
    }
    return n;
  }
  for (const k in v as Record<string, unknown>) {
    if (++width > 64) return n + 16 * 64;
    n += k.length + 1 + estimateValue((v as Record<string, unknown>)[k], depth - 1);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Encoder

export interface FrameEncoderOptions {
  /** Refuse to produce a frame larger than this (header included). Default 64 MiB. */
  maxFrameBytes?: number;
}

export class FrameEncoder {
  private readonly packr: Packr;
  private readonly structures: string[][];
  readonly maxFrameBytes: number;

  constructor(opts: FrameEncoderOptions = {}) {
    this.maxFrameBytes = checkLimit(opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    const o = codecOptions();
    this.structures = o.structures;
    this.packr = new Packr(o);
  }

  /** A copy of the structure table this encoder packs with (for checking it never grows). */
  structureTable(): string[][] {
    return this.structures.map((s) => [...s]);
  }

  /**
   * One frame holding all `envelopes` (may be empty). Throws FrameTooLarge if the frame would
   * exceed `limit` (default: this encoder's maxFrameBytes), a TypeError for a message that does
   * not match its declared type, and whatever msgpackr throws for an unencodable payload (a
   * Symbol, a BigInt beyond 64 bits): the caller decides what to drop (the Transport splits the
   * batch to isolate and drop the culprit).
   *
   * The result is exactly the frame's size but is a view into msgpackr's shared slab (the header
   * is written into space reserved in front of the body, so there is no copy). That is fine for
   * socket.write() and for anything that uses it and lets go; later encodes never overwrite it.
   * Copy it (`FrameEncoder.detach`) before postMessage (which would clone the whole slab) or
   * before keeping it long-term (it pins the slab).
   */
  encodeBatch(envelopes: readonly Envelope[], limit: number = this.maxFrameBytes): Buffer {
    return this.frame({ items: envelopes.map(canonicalEnvelope) }, limit);
  }

  /** A control frame (handshake); `body` must carry a string `hs`. Same buffer rules as encodeBatch. */
  encodeControl(body: { readonly hs: string } & Record<string, unknown>, limit: number = this.maxFrameBytes): Buffer {
    return this.frame(body, limit);
  }

  /** An exact-size copy with its own ArrayBuffer (safe to transfer or keep). */
  static detach(frame: Uint8Array): Buffer {
    return Buffer.from(Uint8Array.prototype.slice.call(frame).buffer);
  }

  private frame(body: object, limit: number): Buffer {
    const out = this.packr.pack(body, RESERVE_START_SPACE | FRAME_HEADER_BYTES);
    if (out.length > limit) throw new FrameTooLarge(out.length, limit);
    out.writeUInt32BE(out.length - FRAME_HEADER_BYTES, 0);
    return out;
  }
}

function checkLimit(n: number): number {
  if (!Number.isSafeInteger(n) || n <= FRAME_HEADER_BYTES || n > MAX_FRAME_LIMIT) {
    throw new RangeError(`maxFrameBytes must be an integer in (${FRAME_HEADER_BYTES}, ${MAX_FRAME_LIMIT}], got ${n}`);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Decoder

export type DecodeResult =
  | {
      readonly kind: 'batch';
      /** The valid items, in frame order. */
      readonly envelopes: Envelope[];
      /** How many items the frame held (kept + dropped). */
      readonly items: number;
      /** Items dropped from this frame, by reason; null when none were. */
      readonly dropped: Partial<Record<DropReason, number>> | null;
      readonly frameBytes: number;
    }
  | { readonly kind: 'control'; readonly body: Readonly<Record<string, unknown>>; readonly frameBytes: number }
  | { readonly kind: 'error'; readonly error: FrameTooLarge | MalformedFrame };

export interface DecoderStats {
  frames: number;
  bytes: number;
  envelopes: number;
  /** Every rejection, frame-level and item-level, by reason. */
  drops: Partial<Record<DropReason, number>>;
  /** Bytes discarded unread after a FrameTooLarge. */
  discardedBytes: number;
}

export interface FrameDecoderOptions {
  /** Largest frame accepted, header included. Default 64 MiB. */
  maxFrameBytes?: number;
}

/**
 * Incremental frame decoder. `push()` queues a chunk (any boundaries); `next()` returns one
 * decoded frame, a typed error, or null when no complete frame is buffered. Frames are taken one
 * at a time so the caller may change the limit between them (the transport accepts only small
 * frames until the handshake is done).
 *
 * Memory: a frame's length is checked against the limit as soon as its header is complete,
 * before its body is buffered, so a caller that drains after each push never holds more than
 * maxFrameBytes + one chunk. Chunks are queued and only copied together once a whole frame has
 * arrived (a frame inside one chunk is decoded in place). Pushed chunks must not be modified
 * afterwards. Decoded binary data is always copied out of the frame (entries are kept in memory
 * by the log and must not pin or alias receive buffers).
 */
export class FrameDecoder {
  private readonly unpackr: Unpackr;
  private maxFrame: number;
  private chunks: Uint8Array[] = [];
  private head = 0; // consumed bytes of chunks[0]
  private queued = 0; // unconsumed bytes in chunks
  private bodyLen = -1; // body length of the frame in progress, once its header is complete
  private dead = false;
  readonly stats: DecoderStats = { frames: 0, bytes: 0, envelopes: 0, drops: {}, discardedBytes: 0 };

  constructor(opts: FrameDecoderOptions = {}) {
    this.maxFrame = checkLimit(opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    const o = codecOptions();
    // A frame may define records inline with any id, including the table's. msgpackr puts a
    // replaced entry back after each unpack only if it is marked shared, which it does for tables
    // from getStructures() but not for `structures` given directly: without this mark, one hostile
    // frame would rewrite this decoder's table for every later frame (tested).
    for (const s of o.structures) (s as string[] & { isShared?: boolean }).isShared = true;
    this.unpackr = new Unpackr({ ...o, copyBuffers: true });
  }

  get maxFrameBytes(): number {
    return this.maxFrame;
  }

  /** Change the limit; applies to frames whose header has not been read yet. */
  setMaxFrameBytes(n: number): void {
    this.maxFrame = checkLimit(n);
  }

  /** Unconsumed bytes held. */
  get bufferedBytes(): number {
    return this.queued;
  }

  /** True after a FrameTooLarge: framing is lost, everything pushed later is discarded. */
  get failed(): boolean {
    return this.dead;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.dead) {
      this.stats.discardedBytes += chunk.length;
      return;
    }
    this.chunks.push(chunk);
    this.queued += chunk.length;
  }

  /** All frames completed by `chunk` (push + drain). */
  decode(chunk: Uint8Array): DecodeResult[] {
    this.push(chunk);
    const out: DecodeResult[] = [];
    for (let r = this.next(); r !== null; r = this.next()) out.push(r);
    return out;
  }

  next(): DecodeResult | null {
    if (this.dead) return null;
    if (this.bodyLen < 0) {
      if (this.queued < FRAME_HEADER_BYTES) return null;
      const len = this.readHeader();
      if (len + FRAME_HEADER_BYTES > this.maxFrame) {
        // Unrecoverable: we cannot skip what we refuse to buffer. Drop everything now.
        this.dead = true;
        this.stats.discardedBytes += this.queued;
        this.chunks = [];
        this.head = 0;
        this.queued = 0;
        this.count('FrameTooLarge', 1);
        return { kind: 'error', error: new FrameTooLarge(len + FRAME_HEADER_BYTES, this.maxFrame) };
      }
      this.bodyLen = len;
    }
    if (this.queued < this.bodyLen) return null;
    const body = this.take(this.bodyLen);
    const frameBytes = this.bodyLen + FRAME_HEADER_BYTES;
    this.bodyLen = -1;
    this.stats.frames++;
    this.stats.bytes += frameBytes;
    return this.decodeBody(body, frameBytes);
  }

  private readHeader(): number {
    let len = 0;
    for (let i = 0; i < FRAME_HEADER_BYTES; i++) {
      const c = this.chunks[0];
      len = len * 256 + c[this.head];
      this.advance(1);
    }
    return len;
  }

  private advance(n: number): void {
    this.head += n;
    this.queued -= n;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      this.head = 0;
    }
  }

  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n - off);
      out.set(c.subarray(this.head, this.head + k), off);
      off += k;
      this.advance(k);
    }
    return out;
  }

  private decodeBody(body: Uint8Array, frameBytes: number): DecodeResult {
    let v: unknown;
    try {
      v = this.unpackr.unpack(body);
    } catch (err) {
      return this.malformed(`msgpack: ${err instanceof Error ? err.message.slice(0, 120) : typeof err}`, frameBytes);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Map) {
      return this.malformed('body is not a record', frameBytes);
    }
    const rec = v as Record<string, unknown>;
    const items = rec.items;
    if (Array.isArray(items)) return this.batch(items, frameBytes);
    if (typeof rec.hs === 'string') return { kind: 'control', body: rec, frameBytes };
    return this.malformed('neither a batch nor a control frame', frameBytes);
  }

  private batch(items: unknown[], frameBytes: number): DecodeResult {
    const envelopes: Envelope[] = [];
    let dropped: Partial<Record<DropReason, number>> | null = null;
    for (const it of items) {
      let reason: DropReason | null;
      if (typeof it !== 'object' || it === null || Array.isArray(it) || it instanceof Map) {
        reason = 'InvalidEnvelope';
      } else {
        const k = (it as Record<string, unknown>).k;
        const check =
          typeof k === 'string' && Object.hasOwn(ENVELOPE_KINDS, k) ? ENVELOPE_KINDS[k as EnvelopeKind] : null;
        reason = check === null ? 'UnknownKind' : check(it as Record<string, unknown>);
      }
      if (reason === null) {
        envelopes.push(it as Envelope);
      } else {
        dropped ??= {};
        dropped[reason] = (dropped[reason] ?? 0) + 1;
        this.count(reason, 1);
      }
    }
    this.stats.envelopes += envelopes.length;
    return { kind: 'batch', envelopes, items: items.length, dropped, frameBytes };
  }

  private malformed(detail: string, frameBytes: number): DecodeResult {
    this.count('MalformedFrame', 1);
    return { kind: 'error', error: new MalformedFrame(detail, frameBytes) };
  }

  private count(reason: DropReason, n: number): void {
    this.stats.drops[reason] = (this.stats.drops[reason] ?? 0) + n;
  }
}
