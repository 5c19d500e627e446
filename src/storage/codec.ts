// Binary encodings of what the log engine writes: WAL records (one per durable commit, holding the
// changes of every group in that commit), log entries and per-group metadata. Every value ends in
// a CRC-32 so that a truncated or garbage value read back is detected instead of trusted.
import type { ConfState, Entry, HardState, SnapshotMeta } from '../raft/types.js';
import { crc32 } from './crc32.js';
import { CorruptRecord } from './errors.js';

const utf8 = new TextEncoder();

/** Encoded short strings (node ids in every hard state): a handful of distinct values written
 *  thousands of times per commit, so encode each once. Bounded so odd input cannot grow it. */
const strCache = new Map<string, Uint8Array>();
function encodeStr(s: string): Uint8Array {
  let b = strCache.get(s);
  if (b === undefined) {
    b = utf8.encode(s);
    if (s.length <= 64 && strCache.size < 4096) strCache.set(s, b);
  }
  return b;
}
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export class Writer {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(size = 4096) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  private need(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.pos));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }

  u8(v: number): void {
    this.need(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.need(2);
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }

  u32(v: number): void {
    this.need(4);
    this.view.setUint32(this.pos, v, true);
    this.pos += 4;
  }

  /** A non-negative integer below 2^53 (indexes, terms). */
  num(v: number): void {
    this.need(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  bytes(b: Uint8Array): void {
    this.u32(b.byteLength);
    this.need(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
  }

  str(s: string): void {
    const b = encodeStr(s);
    this.u16(b.byteLength);
    this.need(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
  }

  /** Append the CRC of everything written and return an exact-size copy. */
  finish(): Uint8Array {
    this.u32(crc32(this.buf, 0, this.pos));
    return this.buf.slice(0, this.pos);
  }

  /** Like finish(), but a view into this writer's buffer: valid until the writer is reused. */
  finishView(): Uint8Array {
    this.u32(crc32(this.buf, 0, this.pos));
    return this.buf.subarray(0, this.pos);
  }

  /** Without a CRC (for data that travels inside a checksummed record), an exact-size copy. */
  finishPlain(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  /** finishPlain() as a view into this writer's buffer: valid until the writer is reused. */
  finishPlainView(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Start over, keeping the buffer (a scratch writer saves an allocation per small record). */
  reset(): this {
    this.pos = 0;
    return this;
  }
}

/** Little-endian f64 decoding through a shared 8-byte scratch (no DataView per value read: a
 *  Reader is made for every command applied). */
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function readU32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)) + b[p + 3] * 0x1000000;
}

/** Strings decoded lately, with their bytes. The strings records carry are few and repeat (a
 *  proposing client's id in every entry, node ids in hard states and configurations): comparing
 *  a few bytes is cheaper than decoding UTF-8 into a new string each time (which was 4% of the
 *  CPU of a write, plus its garbage). */
const STR_CACHE = 16;
const STR_CACHE_MAX_BYTES = 64;
const cachedBytes: (Uint8Array | null)[] = new Array<Uint8Array | null>(STR_CACHE).fill(null);
const cachedStrings: string[] = new Array<string>(STR_CACHE).fill('');
let cacheNext = 0;

function readShortString(buf: Uint8Array, pos: number, n: number): string {
  if (n === 0) return '';
  if (n > STR_CACHE_MAX_BYTES) return fromUtf8.decode(buf.subarray(pos, pos + n));
  search: for (let i = 0; i < STR_CACHE; i++) {
    const c = cachedBytes[i];
    if (c === null || c.length !== n) continue;
    for (let j = 0; j < n; j++) if (c[j] !== buf[pos + j]) continue search;
    return cachedStrings[i];
  }
  // Decoded (and validated: the decoder is fatal) before it is cached; same bytes, same string.
  const s = fromUtf8.decode(buf.subarray(pos, pos + n));
  const i = cacheNext;
  cacheNext = (cacheNext + 1) % STR_CACHE;
  cachedBytes[i] = Uint8Array.prototype.slice.call(buf, pos, pos + n);
  cachedStrings[i] = s;
  return s;
}

export class Reader {
  pos = 0;
  readonly end: number;

  /** `checked`: the value ends in a CRC-32 of the rest (verified here); false for values that
   *  travel inside a checksummed record (log entries inside WAL records and Raft batches). */
  constructor(
    readonly buf: Uint8Array,
    readonly what: string,
    checked = true,
    start = 0,
    end = buf.byteLength,
  ) {
    if (!checked) {
      this.pos = start;
      this.end = end;
      return;
    }
    if (buf.byteLength < 4) throw new CorruptRecord(what, `too short (${buf.byteLength} bytes)`);
    this.end = buf.byteLength - 4;
    const want = readU32(buf, this.end);
    const got = crc32(buf, 0, this.end);
    if (want !== got) throw new CorruptRecord(what, `checksum mismatch (stored ${want}, computed ${got})`, true);
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new CorruptRecord(this.what, `truncated at byte ${this.pos}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }

  u16(): number {
    this.need(2);
    const b = this.buf;
    const v = b[this.pos] | (b[this.pos + 1] << 8);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = readU32(this.buf, this.pos);
    this.pos += 4;
    return v;
  }

  num(): number {
    this.need(8);
    const b = this.buf;
    let v: number;
    if (LITTLE_ENDIAN) {
      for (let i = 0; i < 8; i++) f64Bytes[i] = b[this.pos + i];
      v = f64[0];
    } else {
      v = new DataView(b.buffer, b.byteOffset, b.byteLength).getFloat64(this.pos, true);
    }
    this.pos += 8;
    if (!Number.isSafeInteger(v) || v < 0)
      throw new CorruptRecord(this.what, `bad integer ${v} at byte ${this.pos - 8}`);
    return v;
  }

  bytes(): Uint8Array {
    const n = this.u32();
    this.need(n);
    // Copy: the source buffer may be reused by LMDB or a network read (Buffer.prototype.slice
    // would only make a view).
    const b = Uint8Array.prototype.slice.call(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /** Skip a length-prefixed byte string (as bytes() reads); returns where its bytes start (they
   *  end at `pos`). For decoding in place without a view object. */
  skipBytes(): number {
    const n = this.u32();
    this.need(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  /** Like bytes() but a view into the record (no copy): only for data decoded at once. */
  bytesView(): Uint8Array {
    const n = this.u32();
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  str(): string {
    const n = this.u16();
    this.need(n);
    const s = readShortString(this.buf, this.pos, n);
    this.pos += n;
    return s;
  }

  done(): void {
    if (this.pos !== this.end) throw new CorruptRecord(this.what, `${this.end - this.pos} trailing bytes`);
  }
}

// --- shared pieces -------------------------------------------------------------------------------

export function writeConf(w: Writer, c: ConfState): void {
  w.u16(c.voters.length);
  for (const v of c.voters) w.str(v);
  w.u16(c.learners.length);
  for (const l of c.learners) w.str(l);
}

export function readConf(r: Reader): ConfState {
  const voters: string[] = [];
  for (let n = r.u16(); n > 0; n--) voters.push(r.str());
  const learners: string[] = [];
  for (let n = r.u16(); n > 0; n--) learners.push(r.str());
  return { voters, learners };
}

export function writeHardState(w: Writer, h: HardState): void {
  w.num(h.term);
  w.num(h.commit);
  w.str(h.vote);
}

export function readHardState(r: Reader): HardState {
  const term = r.num();
  const commit = r.num();
  const vote = r.str();
  return { term, vote, commit };
}

export function writeSnapMeta(w: Writer, m: SnapshotMeta): void {
  w.num(m.index);
  w.num(m.term);
  writeConf(w, m.conf);
}

export function readSnapMeta(r: Reader): SnapshotMeta {
  const index = r.num();
  const term = r.num();
  return { index, term, conf: readConf(r) };
}

function writeEntryBody(w: Writer, e: Entry): void {
  w.num(e.term);
  w.u8(e.type === 'conf' ? 1 : 0);
  w.bytes(e.data);
}

function readEntryBody(r: Reader, index: number): Entry {
  const term = r.num();
  const t = r.u8();
  if (t > 1) throw new CorruptRecord(r.what, `bad entry type ${t}`);
  return { index, term, type: t === 1 ? 'conf' : 'normal', data: r.bytes() };
}

// --- single entries (the checkpointed log) -------------------------------------------------------

export function encodeEntry(e: Entry): Uint8Array {
  const w = new Writer(e.data.byteLength + 32);
  writeEntryBody(w, e);
  return w.finish();
}

export function decodeEntry(buf: Uint8Array, index: number, group?: number): Entry {
  const r = new Reader(buf, group === undefined ? `log entry ${index}` : `log entry ${index} of group ${group}`);
  const e = readEntryBody(r, index);
  r.done();
  return e;
}

// --- WAL records ----------------------------------------------------------------------------------

/** One group's changes in one commit. Entries replace any suffix from their first index on. */
export interface GroupWrite {
  readonly group: number;
  readonly hardState?: HardState;
  readonly snapshot?: SnapshotMeta;
  readonly conf?: ConfState;
  readonly entries?: readonly Entry[];
}

export type WalOp =
  | { readonly op: 'write'; readonly w: GroupWrite }
  | { readonly op: 'compact'; readonly group: number; readonly index: number }
  | { readonly op: 'create'; readonly group: number; readonly conf: ConfState }
  | { readonly op: 'delete'; readonly group: number };

const WAL_MAGIC = 0x31574c46; // "FLW1"

export function encodeWal(ops: readonly WalOp[]): Uint8Array {
  let size = 64;
  for (const o of ops) {
    size += 64;
    if (o.op === 'write' && o.w.entries) for (const e of o.w.entries) size += e.data.byteLength + 24;
  }
  const w = new Writer(size);
  w.u32(WAL_MAGIC);
  w.u32(ops.length);
  for (const o of ops) {
    switch (o.op) {
      case 'write': {
        const g = o.w;
        w.u8(1);
        w.u32(g.group);
        w.u8((g.hardState ? 1 : 0) | (g.snapshot ? 2 : 0) | (g.conf ? 4 : 0));
        if (g.hardState) writeHardState(w, g.hardState);
        if (g.snapshot) writeSnapMeta(w, g.snapshot);
        if (g.conf) writeConf(w, g.conf);
        const ents = g.entries ?? [];
        w.u32(ents.length);
        if (ents.length > 0) w.num(ents[0].index);
        for (const e of ents) writeEntryBody(w, e);
        break;
      }
      case 'compact':
        w.u8(2);
        w.u32(o.group);
        w.num(o.index);
        break;
      case 'create':
        w.u8(3);
        w.u32(o.group);
        writeConf(w, o.conf);
        break;
      case 'delete':
        w.u8(4);
        w.u32(o.group);
        break;
    }
  }
  return w.finish();
}

export function decodeWal(buf: Uint8Array, lsn: number): WalOp[] {
  const r = new Reader(buf, `wal record ${lsn}`);
  if (r.u32() !== WAL_MAGIC) throw new CorruptRecord(r.what, 'bad magic');
  const ops: WalOp[] = [];
  for (let n = r.u32(); n > 0; n--) {
    const op = r.u8();
    const group = r.u32();
    switch (op) {
      case 1: {
        const flags = r.u8();
        const hardState = flags & 1 ? readHardState(r) : undefined;
        const snapshot = flags & 2 ? readSnapMeta(r) : undefined;
        const conf = flags & 4 ? readConf(r) : undefined;
        const count = r.u32();
        const entries: Entry[] = [];
        if (count > 0) {
          const first = r.num();
          for (let i = 0; i < count; i++) entries.push(readEntryBody(r, first + i));
        }
        ops.push({ op: 'write', w: { group, hardState, snapshot, conf, entries } });
        break;
      }
      case 2:
        ops.push({ op: 'compact', group, index: r.num() });
        break;
      case 3:
        ops.push({ op: 'create', group, conf: readConf(r) });
        break;
      case 4:
        ops.push({ op: 'delete', group });
        break;
      default:
        throw new CorruptRecord(r.what, `unknown op ${op}`);
    }
  }
  r.done();
  return ops;
}

// --- group metadata (written at checkpoints) -------------------------------------------------------

export interface GroupMeta {
  readonly hardState: HardState;
  readonly snapshot: SnapshotMeta;
  readonly conf: ConfState;
  /** Entries (snapshot.index, flushedLast] are in the checkpointed log. */
  readonly flushedLast: number;
}

export function encodeMeta(m: GroupMeta): Uint8Array {
  const w = new Writer(256);
  writeHardState(w, m.hardState);
  writeSnapMeta(w, m.snapshot);
  writeConf(w, m.conf);
  w.num(m.flushedLast);
  return w.finish();
}

export function decodeMeta(buf: Uint8Array, group: number): GroupMeta {
  const r = new Reader(buf, `meta of group ${group}`);
  const hardState = readHardState(r);
  const snapshot = readSnapMeta(r);
  const conf = readConf(r);
  const flushedLast = r.num();
  r.done();
  return { hardState, snapshot, conf, flushedLast };
}
