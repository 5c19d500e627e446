// Structural validation of messages from the network: anything that fails here is dropped before it
// can reach the state machine. Cheap enough to run on every message (field type checks only).
import { MESSAGE_TYPES, type Message, type MessageType, type RejectReason } from './types.js';

const TYPE_SET = new Set<string>(MESSAGE_TYPES);
const MAX_ID = 128;
const MAX_CTX = 256;

function uint(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function id(v: unknown): boolean {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ID;
}

function ctx(v: unknown): boolean {
  return typeof v === 'string' && v.length <= MAX_CTX;
}

function bytes(v: unknown): boolean {
  return v instanceof Uint8Array;
}

function idList(v: unknown): boolean {
  return Array.isArray(v) && v.every(id);
}

/** Returns null if `m` is a well-formed Message, else the reason to reject it. */
export function validateMessage(m: unknown): RejectReason | null {
  if (typeof m !== 'object' || m === null) return 'Malformed';
  const r = m as Record<string, unknown>;
  if (typeof r.type !== 'string' || !TYPE_SET.has(r.type)) return 'Malformed';
  if (!uint(r.group) || !id(r.from) || !id(r.to) || !uint(r.term)) return 'Malformed';
  switch (r.type as MessageType) {
    case 'app': {
      if (!uint(r.index) || !uint(r.logTerm) || !uint(r.commit) || !Array.isArray(r.entries)) return 'Malformed';
      if ((r.logTerm as number) > (r.term as number)) return 'Malformed';
      let prevTerm = r.logTerm as number;
      let idx = r.index as number;
      for (const e of r.entries as unknown[]) {
        if (typeof e !== 'object' || e === null) return 'Malformed';
        const x = e as Record<string, unknown>;
        if (!uint(x.index) || !uint(x.term) || !bytes(x.data) || (x.type !== 'normal' && x.type !== 'conf'))
          return 'Malformed';
        idx++;
        if (x.index !== idx || (x.term as number) < prevTerm || (x.term as number) > (r.term as number))
          return 'Malformed';
        prevTerm = x.term as number;
      }
      return null;
    }
    case 'appResp':
      return uint(r.index) && typeof r.reject === 'boolean' && uint(r.hintIndex) && uint(r.hintTerm)
        ? null
        : 'Malformed';
    case 'hb':
      return uint(r.commit) && ctx(r.ctx) && uint(r.seq) && typeof r.quiesce === 'boolean' ? null : 'Malformed';
    case 'hbResp':
      return ctx(r.ctx) && uint(r.seq) ? null : 'Malformed';
    case 'vote':
    case 'preVote':
      return uint(r.index) && uint(r.logTerm) && typeof r.transfer === 'boolean' ? null : 'Malformed';
    case 'voteResp':
    case 'preVoteResp':
      return typeof r.reject === 'boolean' ? null : 'Malformed';
    case 'snap': {
      const s = r.snapshot as Record<string, unknown> | undefined;
      if (typeof s !== 'object' || s === null || !bytes(s.data)) return 'Malformed';
      const meta = s.meta as Record<string, unknown> | undefined;
      if (typeof meta !== 'object' || meta === null || !uint(meta.index) || !uint(meta.term)) return 'Malformed';
      const conf = meta.conf as Record<string, unknown> | undefined;
      if (typeof conf !== 'object' || conf === null || !idList(conf.voters) || !idList(conf.learners))
        return 'Malformed';
      if ((meta.index as number) === 0 || (conf.voters as unknown[]).length === 0) return 'Malformed';
      return null;
    }
    case 'timeoutNow':
      return null;
    case 'transferLeader':
      return id(r.target) ? null : 'Malformed';
    case 'readIndex':
      return ctx(r.ctx) && (r.ctx as string).length > 0 ? null : 'Malformed';
    case 'readIndexResp':
      return ctx(r.ctx) && uint(r.index) ? null : 'Malformed';
  }
}

export function isMessage(m: unknown): m is Message {
  return validateMessage(m) === null;
}
