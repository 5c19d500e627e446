// Client sessions (Raft dissertation §6.3): every proposal the runtime makes carries the proposing
// client's id, a sequence number and the lowest sequence number it still awaits an answer for.
// A state machine applies each (client, seq) at most once: a retry after a timeout or a leader
// change that finds its first attempt already applied gets the recorded result instead of a second
// application. Results below `lo` are discarded (the client has its answers), which keeps a
// session's table as small as the client's in-flight window.
//
// Owns: the command envelope (entry data) format, the per-(group, client) session record, and the
// marker of a result that is a refusal (recorded like any other).
// Where records live is the state machine's business (SessionStore): the built-in KV keeps them in
// LMDB in the same transaction as the data and applied index; a user state machine keeps them in
// memory and in its snapshots. Either way they change exactly when the state does.
import { Packr, Unpackr } from 'msgpackr';
import { RaftError, type Entry } from '../raft/types.js';
import { Reader, Writer } from './codec.js';

export interface SessionHeader {
  readonly client: string;
  readonly seq: number;
  /** The client has answers for every seq below this. */
  readonly lo: number;
}

/** Results kept per session at most (a client with more in flight loses the oldest: a retry of
 *  one of those is then not recognised — the window is far above what one node keeps in flight). */
export const MAX_RESULTS_PER_SESSION = 65_536;

export interface SessionRecord {
  lo: number;
  /** seq -> result of its application. */
  readonly results: Map<number, unknown>;
}

/** Marks a result that is the state machine's refusal of a committed command (a user apply that
 *  threw, a KV command that does not decode): recorded and returned like any result, the same on
 *  every replica, and a StateMachineError with this message for the proposer. */
export const APPLY_ERROR_KEY = '__flotillaApplyError';

export interface ApplyRejection {
  readonly [APPLY_ERROR_KEY]: string;
}

export function applyRejection(message: string): ApplyRejection {
  return { [APPLY_ERROR_KEY]: message };
}

const scratch = new Writer(4096);
// Tags 0 and 1 end in a CRC-32 (written before entries travelled only inside checksummed WAL
// records and Raft batches); 2 and 3 do not, and are what is written now. Both are read.
const TAG_PLAIN_CRC = 0;
const TAG_SESSION_CRC = 1;
const TAG_PLAIN = 2;
const TAG_SESSION = 3;

/** Entry data for a proposal: the session header (or none) and the state machine's command. */
export function encodeCommand(h: SessionHeader | null, payload: Uint8Array): Uint8Array {
  const w = scratch.reset();
  if (h === null) {
    w.u8(TAG_PLAIN);
  } else {
    w.u8(TAG_SESSION);
    w.str(h.client);
    w.num(h.seq);
    w.num(h.lo);
  }
  w.bytes(payload);
  return w.finishPlain();
}

export function decodeCommand(data: Uint8Array): { header: SessionHeader | null; payload: Uint8Array } {
  const env = readEnvelope(data, new Envelope());
  const header = env.session ? { client: env.client, seq: env.seq, lo: env.lo } : null;
  // A view into the entry's data: callers decode it at once.
  return { header, payload: data.subarray(env.start, env.end) };
}

/** One entry's envelope as read in place: its session header's fields (when `session`) and where
 *  the command lies in the data. The built-in KV store reuses one for every entry it applies:
 *  no header object and no view per entry. */
export class Envelope {
  session = false;
  client = '';
  seq = 0;
  lo = 0;
  start = 0;
  end = 0;
}

/** Read `data`'s envelope into `out` (throws RaftError 'Malformed' or CorruptRecord when bad). */
export function readEnvelope(data: Uint8Array, out: Envelope): Envelope {
  const first = data.byteLength > 0 ? data[0] : -1;
  // Only the tags that carry a CRC-32 are checked: an unknown tag is malformed, not corrupt.
  const r = new Reader(data, 'command', first === TAG_PLAIN_CRC || first === TAG_SESSION_CRC);
  const tag = r.u8();
  out.session = tag === TAG_SESSION || tag === TAG_SESSION_CRC;
  if (out.session) {
    out.client = r.str();
    out.seq = r.num();
    out.lo = r.num();
  } else if (tag !== TAG_PLAIN && tag !== TAG_PLAIN_CRC) {
    throw new RaftError('Malformed', `unknown command tag ${tag}`);
  }
  out.start = r.skipBytes();
  out.end = r.pos;
  r.done();
  return out;
}

const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, moreTypes: false });

export function encodeSession(rec: SessionRecord): Uint8Array {
  return Uint8Array.prototype.slice.call(packr.pack([rec.lo, [...rec.results]]));
}

export function decodeSession(bytes: Uint8Array): SessionRecord {
  const [lo, results] = unpackr.unpack(bytes) as [number, [number, unknown][]];
  return { lo, results: new Map(results) };
}

/** Where a state machine keeps its session records (reads see staged writes). */
export interface SessionStore {
  /** The record as applied so far (read only). */
  getSession(group: number, client: string): SessionRecord | undefined;
  /** The record to change for an entry being applied (created if absent). The store hands out a
   *  record nobody else holds: one already written to, or being written to, disk is copied first. */
  updateSession(group: number, client: string): SessionRecord;
}

/** Outcome of offering one entry to the session layer. */
export type SessionCheck =
  | { readonly kind: 'apply'; readonly payload: Uint8Array; readonly header: SessionHeader | null }
  | { readonly kind: 'duplicate'; readonly result: unknown };

/** Decide whether a committed normal entry applies, or is a duplicate of an applied one. */
export function checkEntry(store: SessionStore, group: number, e: Entry): SessionCheck {
  const { header, payload } = decodeCommand(e.data);
  if (header === null) return { kind: 'apply', payload, header };
  const result = duplicateResult(store, group, header.client, header.seq);
  return result === NOT_DUPLICATE ? { kind: 'apply', payload, header } : { kind: 'duplicate', result };
}

/** The result an earlier application of (client, seq) recorded, or NOT_DUPLICATE: the entry
 *  applies. checkEntry without its objects. */
export function duplicateResult(store: SessionStore, group: number, client: string, seq: number): unknown {
  const rec = store.getSession(group, client);
  if (rec === undefined) return NOT_DUPLICATE;
  // Below lo: answered and forgotten; a late copy of it in the log must not apply again.
  if (seq < rec.lo) return null;
  const r = rec.results.get(seq);
  if (r !== undefined) return r;
  return rec.results.has(seq) ? undefined : NOT_DUPLICATE;
}

export const NOT_DUPLICATE: unique symbol = Symbol('not a duplicate');

/** Record the result of an applied entry under its session. */
export function recordResult(store: SessionStore, group: number, h: SessionHeader, result: unknown): void {
  recordResultOf(store, group, h.client, h.seq, h.lo, result);
}

export function recordResultOf(
  store: SessionStore,
  group: number,
  client: string,
  seq: number,
  lo: number,
  result: unknown,
): void {
  const rec = store.updateSession(group, client);
  rec.results.set(seq, result ?? null);
  if (lo > rec.lo) {
    rec.lo = lo;
    // Results are inserted in (nearly) seq order: drop from the front while below lo. One that
    // arrived out of order may stay behind a newer one a while; it is never consulted (seq < lo
    // is answered before the table) and the size cap bounds it.
    for (const s of rec.results.keys()) {
      if (s >= rec.lo) break;
      rec.results.delete(s);
    }
  }
  if (rec.results.size > MAX_RESULTS_PER_SESSION) {
    const oldest = Math.min(...rec.results.keys());
    rec.results.delete(oldest);
  }
}

/** Per-client sequence numbers for the proposals one node makes (its client id is fresh per
 *  process start, so sequence numbers never repeat under one id). */
export class SessionClient {
  private next = 1;
  private readonly outstanding = new Set<number>();
  /** No outstanding seq is below this: lowest() only moves it up (amortised O(1) per proposal;
   *  asking the Set for its first element walks the deleted slots at its front, thousands with
   *  thousands of proposals in flight). */
  private floor = 1;

  constructor(readonly client: string) {}

  /** A header for a new proposal; call done(seq) once its caller has the outcome. */
  begin(): SessionHeader {
    const seq = this.next++;
    this.outstanding.add(seq);
    return { client: this.client, seq, lo: this.lowest() };
  }

  done(seq: number): void {
    this.outstanding.delete(seq);
  }

  private lowest(): number {
    while (this.floor < this.next && !this.outstanding.has(this.floor)) this.floor++;
    return this.floor;
  }
}
