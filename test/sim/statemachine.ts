// The replicated state machine each simulated host applies entries to. Its state is a hash chain
// over the applied entries (so two replicas with equal (applied, hash) applied identical
// histories) plus the membership at the applied index, which the host needs to take a snapshot
// (storage.createSnapshot wants the ConfState *at* the snapshot index, not the core's current one).
import { applyConfChange, decodeConfChange } from '../../src/raft/confchange.js';
import type { ConfChange, ConfState, Entry, Snapshot } from '../../src/raft/types.js';
import { entryKey, mix2 } from './hash.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export class StateMachine {
  constructor(
    public applied: number,
    public hash: number,
    public conf: ConfState,
  ) {}

  static bootstrap(conf: ConfState): StateMachine {
    return new StateMachine(0, 0, conf);
  }

  /** Rebuilds the state machine from a snapshot image (the only thing that survives a crash). */
  static fromSnapshot(s: Snapshot, bootstrapConf: ConfState): StateMachine {
    if (s.meta.index === 0) return StateMachine.bootstrap(bootstrapConf);
    const img = decodeImage(s.data);
    if (!img || img.index !== s.meta.index) {
      throw new Error(`snapshot image ${JSON.stringify(dec.decode(s.data))} does not match meta index ${s.meta.index}`);
    }
    return new StateMachine(img.index, img.hash, s.meta.conf);
  }

  /** Applies one committed entry; returns the entry's content key. */
  apply(e: Entry): number {
    const key = entryKey(e.type, e.data);
    this.hash = mix2(this.hash, key);
    this.applied = e.index;
    if (e.type === 'conf') this.conf = confAfter(this.conf, e.data);
    return key;
  }

  image(): Uint8Array {
    return enc.encode(`${this.applied}:${this.hash}`);
  }
}

/** Membership after a conf entry. The entry format is the core's: either a bare change (applied
 *  to the previous membership) or a change that also carries the resulting membership (taken as
 *  is). Both shapes are accepted so the simulator keeps working while that format evolves. */
export function confAfter(prev: ConfState, data: Uint8Array): ConfState {
  let decoded: unknown;
  try {
    decoded = decodeConfChange(data);
  } catch {
    return prev; // the core skips undecodable conf entries too; the simulator never proposes one
  }
  if (isRecord(decoded) && isConf(decoded.conf)) return decoded.conf;
  if (isRecord(decoded) && typeof decoded.type === 'string' && typeof decoded.node === 'string') {
    return applyConfChange(prev, decoded as unknown as ConfChange);
  }
  throw new Error(`unrecognised conf change entry shape: ${JSON.stringify(decoded)}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

function isConf(x: unknown): x is ConfState {
  return isRecord(x) && Array.isArray(x.voters) && Array.isArray(x.learners);
}

export function decodeImage(data: Uint8Array): { index: number; hash: number } | null {
  const m = /^(\d+):(\d+)$/.exec(dec.decode(data));
  return m ? { index: Number(m[1]), hash: Number(m[2]) } : null;
}
