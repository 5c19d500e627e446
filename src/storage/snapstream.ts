// Snapshot streams: a group's snapshot moves from one shard to another as a sequence of
// checksummed chunks beside the Raft traffic (the Raft `snap` message carries only the metadata).
// Owns the frame format, the limits, the sender's window and retransmission, and the receiver's
// staging file and verification. Transport-agnostic: frames are bytes handed to and from the
// caller, time is passed in. Protocol, limits and failure cases: docs/snapshots.md.
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Reader, Writer } from './codec.js';
import { crc32 } from './crc32.js';
import { SnapshotStreamError } from './errors.js';

/** Which snapshot a stream carries: a group's state at (index, term). */
export interface SnapshotId {
  readonly group: number;
  readonly index: number;
  readonly term: number;
}

/** What the last chunk says about the whole stream. */
export interface StreamEnd {
  readonly chunks: number;
  readonly bytes: number;
  /** CRC-32 of every data byte of the stream, in order. */
  readonly crc: number;
}

/** The receiver's answer: `next` is the first chunk it lacks. 'restart': it holds nothing of this
 *  stream (send from chunk 0); 'refused': it will not take this stream now (a newer one is being
 *  staged); 'done': every chunk arrived and the totals matched. */
export type AckStatus = 'more' | 'done' | 'restart' | 'refused';

export type SnapFrame =
  | {
      readonly kind: 'chunk';
      readonly id: SnapshotId;
      readonly seq: number;
      readonly data: Uint8Array;
      readonly end: StreamEnd | null;
    }
  | { readonly kind: 'ack'; readonly id: SnapshotId; readonly next: number; readonly status: AckStatus };

const VERSION = 1;
const KIND_CHUNK = 1;
const KIND_ACK = 2;
const STATUSES: readonly AckStatus[] = ['more', 'done', 'restart', 'refused'];
/** Frame bytes besides a chunk's data (header, totals, CRC), rounded up. */
export const CHUNK_OVERHEAD_BYTES = 64;

/** The bytes of one frame; its trailing CRC-32 covers everything before it. */
export function encodeSnapFrame(f: SnapFrame): Uint8Array {
  const w = new Writer(f.kind === 'chunk' ? f.data.byteLength + CHUNK_OVERHEAD_BYTES : 48);
  w.u8(VERSION);
  w.u8(f.kind === 'chunk' ? KIND_CHUNK : KIND_ACK);
  w.u32(f.id.group);
  w.num(f.id.index);
  w.num(f.id.term);
  if (f.kind === 'chunk') {
    w.u32(f.seq);
    w.bytes(f.data);
    w.u8(f.end ? 1 : 0);
    if (f.end) {
      w.u32(f.end.chunks);
      w.num(f.end.bytes);
      w.u32(f.end.crc);
    }
  } else {
    w.u32(f.next);
    w.u8(STATUSES.indexOf(f.status));
  }
  return w.finish();
}

/** Decode and verify a frame; throws SnapshotStreamError 'BadFrame' (nothing in it is trusted). */
export function decodeSnapFrame(b: Uint8Array): SnapFrame {
  try {
    const r = new Reader(b, 'snapshot frame');
    if (r.u8() !== VERSION) throw new Error('unknown version');
    const kind = r.u8();
    const id: SnapshotId = { group: r.u32(), index: r.num(), term: r.num() };
    if (kind === KIND_CHUNK) {
      const seq = r.u32();
      const data = r.bytes();
      const end = r.u8() === 1 ? { chunks: r.u32(), bytes: r.num(), crc: r.u32() } : null;
      r.done();
      return { kind: 'chunk', id, seq, data, end };
    }
    if (kind !== KIND_ACK) throw new Error(`unknown kind ${kind}`);
    const next = r.u32();
    const status = STATUSES[r.u8()];
    r.done();
    if (status === undefined) throw new Error('unknown ack status');
    return { kind: 'ack', id, next, status };
  } catch (e) {
    throw new SnapshotStreamError('BadFrame', `snapshot frame refused: ${(e as Error).message}`, { cause: e });
  }
}

export function sameSnapshot(a: SnapshotId, b: SnapshotId): boolean {
  return a.group === b.group && a.index === b.index && a.term === b.term;
}

// --- limits --------------------------------------------------------------------------------------

export interface SnapshotStreamOptions {
  /** Data bytes per chunk (one chunk per frame). Default 1 MiB; 4 KiB .. 16 MiB. */
  readonly chunkBytes?: number;
  /** Chunks a stream may have sent and not yet acknowledged. Default 4; 1 .. 64. */
  readonly window?: number;
  /** Streams a shard sends at once; more wait their turn. Default 2; 1 .. 64. */
  readonly maxOutgoing?: number;
  /** Unacknowledged chunks are sent again after this long without an acknowledgement. Default
   *  2,000 ms. */
  readonly ackTimeoutMs?: number;
  /** A stream that made no progress for this long fails (the leader retries). Default 30,000 ms;
   *  also how long a receiver keeps a stalled staging before another stream may replace it. */
  readonly giveUpMs?: number;
}

export type SnapshotStreamLimits = Required<SnapshotStreamOptions>;

export const DEFAULT_SNAPSHOT_STREAM: SnapshotStreamLimits = Object.freeze({
  chunkBytes: 1024 * 1024,
  window: 4,
  maxOutgoing: 2,
  ackTimeoutMs: 2_000,
  giveUpMs: 30_000,
});

/** The limits with defaults filled in; throws RangeError for a value out of range, or a chunk
 *  that would not fit in a frame of `maxFrameBytes`. */
export function snapshotStreamLimits(
  o: SnapshotStreamOptions = {},
  maxFrameBytes = Number.POSITIVE_INFINITY,
): SnapshotStreamLimits {
  const d = DEFAULT_SNAPSHOT_STREAM;
  const l: SnapshotStreamLimits = {
    chunkBytes: o.chunkBytes ?? d.chunkBytes,
    window: o.window ?? d.window,
    maxOutgoing: o.maxOutgoing ?? d.maxOutgoing,
    ackTimeoutMs: o.ackTimeoutMs ?? d.ackTimeoutMs,
    giveUpMs: o.giveUpMs ?? d.giveUpMs,
  };
  const check = (name: keyof SnapshotStreamLimits, lo: number, hi: number) => {
    const v = l[name];
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new RangeError(`snapshot stream ${name} must be an integer in ${lo}..${hi} (got ${v})`);
  };
  check('chunkBytes', 4096, 16 * 1024 * 1024);
  check('window', 1, 64);
  check('maxOutgoing', 1, 64);
  check('ackTimeoutMs', 10, 600_000);
  check('giveUpMs', 100, 3_600_000);
  // Room for the frame's own header and the envelope around it.
  if (l.chunkBytes + 4 * CHUNK_OVERHEAD_BYTES > maxFrameBytes)
    throw new RangeError(`snapshot chunkBytes ${l.chunkBytes} does not fit in a ${maxFrameBytes}-byte frame`);
  return l;
}

// --- sender --------------------------------------------------------------------------------------

/** The bytes of one snapshot, read front to back without holding them all. */
export interface SnapshotReader {
  /** Up to `max` next bytes (at least one), or null at the end. */
  read(max: number): Uint8Array | null;
  /** Release what the reader holds (a read transaction); called once, however the stream ends. */
  close(): void;
}

export type StreamOutcome = 'done' | 'failed';

/** What the caller does after an event: send `frames` (in order); an outcome ends the stream. */
export interface SenderStep {
  readonly frames: Uint8Array[];
  readonly outcome: StreamOutcome | null;
  readonly reason: string;
}

/** One outgoing stream: reads the snapshot a chunk at a time, keeps at most `window` chunks sent
 *  and unacknowledged (the only ones it holds), sends them again after `ackTimeoutMs` without an
 *  acknowledgement (go-back-N: after a dropped link the receiver's `next` says where to resume),
 *  and fails after `giveUpMs` without progress. */
export class SnapshotSender {
  /** Sent and not yet acknowledged, oldest first. */
  private unacked: { seq: number; frame: Uint8Array }[] = [];
  private nextSeq = 0;
  private crc = 0;
  private bytes = 0;
  /** Read ahead one chunk, to know which chunk is the last. */
  private ahead: Uint8Array | null;
  private ended = false;
  private lastProgressAt: number;
  private lastSendAt: number;
  private closed = false;
  readonly stats = { chunks: 0, resent: 0, bytes: 0 };

  constructor(
    readonly id: SnapshotId,
    private readonly source: SnapshotReader,
    private readonly limits: SnapshotStreamLimits,
    now: number,
  ) {
    this.lastProgressAt = this.lastSendAt = now;
    this.ahead = this.readChunk();
  }

  /** The next chunk's data: whole chunks whatever sizes the reader returns, the last shorter. */
  private readChunk(): Uint8Array | null {
    const max = this.limits.chunkBytes;
    const first = this.source.read(max);
    if (first === null || first.byteLength >= max) return first;
    const parts = [first];
    let n = first.byteLength;
    while (n < max) {
      const b = this.source.read(max - n);
      if (b === null) break;
      parts.push(b);
      n += b.byteLength;
    }
    return parts.length === 1 ? first : Buffer.concat(parts, n);
  }

  /** New chunks while the window has room. */
  pump(now: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    while (!this.ended && this.unacked.length < this.limits.window) {
      const data = this.ahead ?? new Uint8Array(0);
      this.ahead = this.ahead === null ? null : this.readChunk();
      this.crc = crc32(data, 0, data.byteLength, this.crc);
      this.bytes += data.byteLength;
      const seq = this.nextSeq++;
      this.ended = this.ahead === null;
      const end = this.ended ? { chunks: this.nextSeq, bytes: this.bytes, crc: this.crc } : null;
      const frame = encodeSnapFrame({ kind: 'chunk', id: this.id, seq, data, end });
      this.unacked.push({ seq, frame });
      out.push(frame);
      this.stats.chunks++;
      this.stats.bytes += data.byteLength;
    }
    if (out.length > 0) this.lastSendAt = now;
    return out;
  }

  onAck(a: Extract<SnapFrame, { kind: 'ack' }>, now: number): SenderStep {
    if (a.status === 'refused') return this.fail('the receiver refused the stream');
    const first = this.unacked.length > 0 ? this.unacked[0].seq : this.nextSeq;
    if (a.status === 'restart') {
      // The receiver holds nothing of this stream: fine while chunk 0 is still held here.
      if (first === 0) return { frames: this.resend(now), outcome: null, reason: '' };
      return this.fail(`the receiver lost the stream; the oldest chunk held is ${first}`);
    }
    // Acknowledgements are cumulative and never go back while the receiver keeps its staging.
    if (a.next < first) return this.fail(`the receiver asks for chunk ${a.next}, the oldest held is ${first}`);
    if (a.next > this.nextSeq) return this.fail(`the receiver acknowledged chunk ${a.next - 1}, never sent`);
    if (a.next > first) this.lastProgressAt = now;
    // The last chunk is kept until 'done' (the receiver may still be preparing the snapshot):
    // resending it is how a lost 'done' is asked for again.
    const keep = a.status === 'done' || !this.ended ? 0 : 1;
    while (this.unacked.length > keep && this.unacked[0].seq < a.next) this.unacked.shift();
    if (a.status === 'done') {
      if (this.ended && a.next === this.nextSeq) return { frames: [], outcome: 'done', reason: '' };
      return this.fail('the receiver reported done before the last chunk');
    }
    return { frames: this.pump(now), outcome: null, reason: '' };
  }

  /** Called now and then: resend what is unacknowledged after ackTimeoutMs (unless `resend` is
   *  false: the peer is known down), fail after giveUpMs. */
  onTimer(now: number, resend = true): SenderStep {
    if (now - this.lastProgressAt >= this.limits.giveUpMs)
      return this.fail(`no progress for ${this.limits.giveUpMs} ms`);
    if (resend && this.unacked.length > 0 && now - this.lastSendAt >= this.limits.ackTimeoutMs)
      return { frames: this.resend(now), outcome: null, reason: '' };
    return { frames: [], outcome: null, reason: '' };
  }

  private resend(now: number): Uint8Array[] {
    this.lastSendAt = now;
    this.stats.resent += this.unacked.length;
    return this.unacked.map((u) => u.frame);
  }

  private fail(reason: string): SenderStep {
    return { frames: [], outcome: 'failed', reason };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unacked = [];
    this.source.close();
  }
}

// --- receiver ------------------------------------------------------------------------------------

interface Staging {
  readonly id: SnapshotId;
  readonly path: string;
  fd: number | null;
  next: number;
  bytes: number;
  crc: number;
  complete: boolean;
  /** Complete and answered 'done' (see `holdDone`). */
  ready: boolean;
  lastChunkAt: number;
}

/** What the receiver does with a chunk: send `ack` back; `error` is what it refused (to log). */
export interface StageStep {
  readonly ack: Uint8Array;
  readonly error: SnapshotStreamError | null;
  /** This chunk completed a verified stream. */
  readonly completed: boolean;
}

/** A whole, verified snapshot in its staging file, claimed for installing. */
export class StagedSnapshot {
  constructor(
    readonly id: SnapshotId,
    readonly bytes: number,
    private readonly crc: number,
    private readonly path: string,
  ) {}

  /** The snapshot's bytes, `size` at a time; checks the whole-stream CRC-32 again at the end
   *  (throws SnapshotStreamError 'StreamChecksum' if the file changed since it was verified). */
  *chunks(size = 1024 * 1024): Generator<Uint8Array> {
    const fd = openSync(this.path, 'r');
    try {
      let crc = 0;
      let total = 0;
      for (;;) {
        const b = new Uint8Array(size);
        const n = readSync(fd, b, 0, size, null);
        if (n === 0) break;
        const data = n === size ? b : b.subarray(0, n);
        crc = crc32(data, 0, n, crc);
        total += n;
        yield data;
      }
      if (crc !== this.crc || total !== this.bytes)
        throw new SnapshotStreamError('StreamChecksum', `staged snapshot of group ${this.id.group} changed on disk`);
    } finally {
      closeSync(fd);
    }
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}

/** The receiving side: at most one staging per group, in a file under `dir` (emptied at start:
 *  what a previous run staged is stale). A chunk is appended only in order; duplicates and gaps
 *  are answered with the first missing chunk, so the sender resumes from there. */
export class SnapshotStager {
  private readonly open = new Map<number, Staging>();
  readonly stats = { chunks: 0, bytes: 0, refused: 0, completed: 0 };

  /** `holdDone`: a complete stream is answered 'more' (everything arrived, wait) until ready()
   *  says its owner has prepared it; only then 'done', and only then may it be taken. */
  constructor(
    private readonly dir: string,
    private readonly giveUpMs = DEFAULT_SNAPSHOT_STREAM.giveUpMs,
    private readonly holdDone = false,
  ) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }

  /** Bytes staged for `group` so far (for metrics and tests), or null. */
  staged(group: number): { id: SnapshotId; next: number; bytes: number; complete: boolean } | null {
    const s = this.open.get(group);
    return s ? { id: s.id, next: s.next, bytes: s.bytes, complete: s.complete } : null;
  }

  get inProgress(): number {
    let n = 0;
    for (const s of this.open.values()) if (!s.complete) n++;
    return n;
  }

  onChunk(f: Extract<SnapFrame, { kind: 'chunk' }>, now: number): StageStep {
    const id = f.id;
    let s = this.open.get(id.group);
    if (!s || !sameSnapshot(s.id, id)) {
      if (f.seq !== 0) return this.answer(id, 0, 'restart');
      // A stream of an older snapshot does not push out a newer one that is still moving.
      if (s && s.id.index > id.index && !s.complete && now - s.lastChunkAt < this.giveUpMs) {
        this.stats.refused++;
        return this.answer(id, 0, 'refused');
      }
      if (s) this.discard(s);
      s = {
        id,
        path: join(this.dir, `${id.group}-${id.index}-${id.term}.part`),
        fd: null,
        next: 0,
        bytes: 0,
        crc: 0,
        complete: false,
        ready: false,
        lastChunkAt: now,
      };
      try {
        s.fd = openSync(s.path, 'w');
      } catch (e) {
        return this.answer(id, 0, 'restart', this.ioError(s, e));
      }
      this.open.set(id.group, s);
    }
    if (s.complete) return this.answer(id, s.next, s.ready ? 'done' : 'more');
    if (f.seq !== s.next) return this.answer(id, s.next, 'more');
    try {
      let at = 0;
      while (at < f.data.byteLength) at += writeSync(s.fd!, f.data, at);
    } catch (e) {
      return this.answer(id, 0, 'restart', this.ioError(s, e));
    }
    s.crc = crc32(f.data, 0, f.data.byteLength, s.crc);
    s.bytes += f.data.byteLength;
    s.next++;
    s.lastChunkAt = now;
    this.stats.chunks++;
    this.stats.bytes += f.data.byteLength;
    if (f.end === null) return this.answer(id, s.next, 'more');
    if (f.end.chunks !== s.next || f.end.bytes !== s.bytes || f.end.crc !== s.crc) {
      const err = new SnapshotStreamError(
        'StreamChecksum',
        `snapshot stream of group ${id.group} at ${id.index}: sender totals ${f.end.chunks} chunks, ` +
          `${f.end.bytes} bytes, crc ${f.end.crc}; received ${s.next}, ${s.bytes}, crc ${s.crc}`,
      );
      this.discard(s);
      return this.answer(id, 0, 'restart', err);
    }
    closeSync(s.fd!);
    s.fd = null;
    s.complete = true;
    s.ready = !this.holdDone;
    this.stats.completed++;
    return { ...this.answer(id, s.next, s.ready ? 'done' : 'more'), completed: true };
  }

  /** A complete staging of exactly this snapshot, left in place (to prepare it), or null. */
  completed(id: SnapshotId): StagedSnapshot | null {
    const s = this.open.get(id.group);
    if (!s?.complete || !sameSnapshot(s.id, id)) return null;
    return new StagedSnapshot(s.id, s.bytes, s.crc, s.path);
  }

  /** The owner prepared this complete staging: it may be taken now. Returns the 'done' answer
   *  to send, or null if the staging is gone (replaced or expired). */
  ready(id: SnapshotId, now: number): Uint8Array | null {
    const s = this.open.get(id.group);
    if (!s?.complete || !sameSnapshot(s.id, id)) return null;
    s.ready = true;
    s.lastChunkAt = now;
    return this.answer(id, s.next, 'done').ack;
  }

  /** Hand over the complete staging of exactly this snapshot (the caller installs and removes
   *  it), or null. */
  take(id: SnapshotId): StagedSnapshot | null {
    const s = this.open.get(id.group);
    if (!s?.ready || !sameSnapshot(s.id, id)) return null;
    this.open.delete(id.group);
    return new StagedSnapshot(s.id, s.bytes, s.crc, s.path);
  }

  /** Stagings open (in progress, or complete and not yet taken). */
  get size(): number {
    return this.open.size;
  }

  /** Drop stagings that saw no chunk for giveUpMs: a stream abandoned midway, or a complete one
   *  whose `snap` message never came. */
  expire(now: number): void {
    for (const s of [...this.open.values()]) if (now - s.lastChunkAt >= this.giveUpMs) this.discard(s);
  }

  /** Forget the group's staging (the group was removed, or a newer snapshot was installed). */
  drop(group: number): void {
    const s = this.open.get(group);
    if (s) this.discard(s);
  }

  /** Remove every staging (the shard stops). */
  close(): void {
    for (const s of [...this.open.values()]) this.discard(s);
  }

  private discard(s: Staging): void {
    if (this.open.get(s.id.group) === s) this.open.delete(s.id.group);
    if (s.fd !== null) {
      try {
        closeSync(s.fd);
      } catch {
        // already closed by a failed write; the file goes below either way
      }
      s.fd = null;
    }
    rmSync(s.path, { force: true });
  }

  private ioError(s: Staging, e: unknown): SnapshotStreamError {
    this.discard(s);
    return new SnapshotStreamError('StagingIo', `staging snapshot of group ${s.id.group}: ${(e as Error).message}`, {
      cause: e,
    });
  }

  private answer(id: SnapshotId, next: number, status: AckStatus, error: SnapshotStreamError | null = null): StageStep {
    if (error) this.stats.refused++;
    return { ack: encodeSnapFrame({ kind: 'ack', id, next, status }), error, completed: false };
  }
}
