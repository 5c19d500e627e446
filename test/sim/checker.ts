// Safety invariants, checked incrementally as the hosts persist, apply and change roles. Every map
// here is global to the run (across crashes and nodes), keyed so that each check is O(1) per
// event, except leader completeness which is O(committed log) once per new leadership.
import type { Entry, HardState, NodeId } from '../../src/raft/types.js';
import type { LogView } from '../../src/raft/view.js';

export type ViolationKind =
  | 'election-safety'
  | 'log-matching'
  | 'leader-completeness'
  | 'state-machine-safety'
  | 'durability'
  | 'transfer-liveness'
  | 'read-linearizability'
  | 'liveness'
  | 'vote-safety'
  | 'leader-not-voter'
  | 'snapshot-mismatch'
  | 'transfer-outcome'
  | 'exception';

/** The invariants a broken storage layer is expected to trip (used by the self-test). */
export const SAFETY_KINDS: readonly ViolationKind[] = [
  'election-safety',
  'log-matching',
  'leader-completeness',
  'state-machine-safety',
  'durability',
  'read-linearizability',
];

export interface Violation {
  readonly kind: ViolationKind;
  readonly step: number;
  readonly time: number;
  readonly detail: string;
}

export interface Clock {
  readonly step: number;
  /** Simulated time in ticks (fractional). */
  readonly ticks: number;
}

interface LogClaim {
  key: number;
  /** Term of the entry before it, or -1 when the persisting node had compacted it away. */
  prevTerm: number;
}

interface Acked {
  readonly index: number;
  readonly term: number;
  readonly key: number;
  readonly label: string;
}

// Terms stay far below this; index * TERM_SPAN + term is a unique safe integer per (index, term).
const TERM_SPAN = 1_000_000;

export class Checker {
  readonly violations: Violation[] = [];
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** Highest term each node has led (to check transfer outcomes). */
  private readonly ledUpTo = new Map<NodeId, number>();
  private readonly logClaims = new Map<number, LogClaim>();
  /** Per index: what was applied there (first applier wins; everyone else must agree). */
  private readonly appliedKey: number[] = [];
  private readonly appliedTerm: number[] = [];
  /** Per index: the lowest current term of any node when it applied the entry. The entry was
   *  committed in that term or earlier, so every leader of a later term must hold it. */
  private readonly commitTermBound: number[] = [];
  private readonly stateHash: number[] = [];
  private maxApplied = 0;
  /** Client commands are unique, so each may be applied at one index only. */
  private readonly indexOfCommand = new Map<number, number>();
  private readonly hard = new Map<NodeId, HardState>();
  private readonly acked = new Map<number, Acked>();
  private maxAcked = 0;
  private readonly readIssuedAck = new Map<string, number>();

  constructor(private readonly clock: Clock) {}

  get ackedCount(): number {
    return this.acked.size;
  }

  get highestApplied(): number {
    return this.maxApplied;
  }

  violate(kind: ViolationKind, detail: string): void {
    this.violations.push({ kind, step: this.clock.step, time: this.clock.ticks, detail });
  }

  // --- 1. Election safety (+ only voters lead) and 3. leader completeness ---------------------

  onLeader(id: NodeId, term: number, log: LogView, isVoter: boolean): void {
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== id) {
      this.violate('election-safety', `two leaders in term ${term}: ${prev} and ${id}`);
    }
    if (prev === undefined) this.leaderOfTerm.set(term, id);
    if ((this.ledUpTo.get(id) ?? -1) < term) this.ledUpTo.set(id, term);
    if (!isVoter)
      this.violate('leader-not-voter', `${id} leads term ${term} but is not a voter in its own configuration`);
    // Everything applied anywhere is committed; a leader of a later term than the one it was
    // committed in must hold it. (A leader elected late in an *earlier* term — say its vote
    // replies sat in a paused process's buffer — need not, and cannot commit anything anyway.)
    for (let i = log.firstIndex(); i <= this.maxApplied; i++) {
      const want = this.appliedTerm[i];
      if (want === undefined || this.commitTermBound[i] >= term) continue;
      const have = log.termOf(i);
      if (have !== want) {
        this.violate(
          'leader-completeness',
          `${id} became leader of term ${term} without entry ${i} (term ${want}) committed by term ${this.commitTermBound[i]}; its log has ${have === null ? 'nothing' : `term ${have}`} there (lastIndex ${log.lastIndex()})`,
        );
        return;
      }
    }
  }

  /** A leader reported its transfer to `target` (started in `term`) as completed: the target
   *  must actually have led a later term by now. */
  onTransferCompleted(from: NodeId, target: NodeId, term: number): void {
    const led = this.ledUpTo.get(target) ?? -1;
    if (led <= term)
      this.violate(
        'transfer-outcome',
        `${from} reported its transfer to ${target} from term ${term} completed, but ${target} has led no later term (highest: ${led < 0 ? 'never' : led})`,
      );
  }

  // --- 2. Log matching -------------------------------------------------------------------------

  /** Called for each entry a node persists, with the term of the entry before it. */
  onPersist(id: NodeId, e: Entry, key: number, prevTerm: number): void {
    if (prevTerm > e.term)
      this.violate(
        'log-matching',
        `${id} persisted entry ${e.index} term ${e.term} after an entry of term ${prevTerm}`,
      );
    const k = e.index * TERM_SPAN + e.term;
    const c = this.logClaims.get(k);
    if (c === undefined) {
      this.logClaims.set(k, { key, prevTerm });
      return;
    }
    if (c.key !== key)
      this.violate('log-matching', `${id} persisted a different entry at (index ${e.index}, term ${e.term})`);
    else if (c.prevTerm >= 0 && prevTerm >= 0 && c.prevTerm !== prevTerm) {
      this.violate(
        'log-matching',
        `${id} persisted (index ${e.index}, term ${e.term}) after term ${prevTerm}; another node had it after term ${c.prevTerm}`,
      );
    } else if (c.prevTerm < 0) c.prevTerm = prevTerm;
  }

  onHardState(id: NodeId, hs: HardState): void {
    const old = this.hard.get(id);
    this.hard.set(id, hs);
    if (!old) return;
    if (hs.term < old.term) this.violate('vote-safety', `${id} persisted term ${hs.term} after term ${old.term}`);
    else if (hs.term === old.term && old.vote !== '' && hs.vote !== old.vote) {
      this.violate('vote-safety', `${id} voted for ${old.vote} and then ${hs.vote || '(nobody)'} in term ${hs.term}`);
    }
  }

  // --- 4. State machine safety -----------------------------------------------------------------

  /** `term` is the applier's current term. */
  onApply(id: NodeId, term: number, e: Entry, key: number, hashAfter: number): void {
    const i = e.index;
    const bound = this.commitTermBound[i];
    if (bound === undefined || term < bound) this.commitTermBound[i] = term;
    const k = this.appliedKey[i];
    if (k === undefined) {
      this.appliedKey[i] = key;
      this.appliedTerm[i] = e.term;
      if (this.stateHash[i] === undefined) this.stateHash[i] = hashAfter;
      if (i > this.maxApplied) this.maxApplied = i;
      if (e.type === 'normal' && e.data.byteLength > 0) {
        const at = this.indexOfCommand.get(key);
        if (at === undefined) this.indexOfCommand.set(key, i);
        else
          this.violate('state-machine-safety', `the same client command was applied at index ${at} and again at ${i}`);
      }
    } else if (k !== key || this.appliedTerm[i] !== e.term) {
      this.violate(
        'state-machine-safety',
        `${id} applied (index ${i}, term ${e.term}) but another node applied term ${this.appliedTerm[i]} there${k !== key ? ' with different data' : ''}`,
      );
      return;
    }
    const h = this.stateHash[i];
    if (h !== hashAfter)
      this.violate('state-machine-safety', `${id} reached a different state after applying index ${i}`);
  }

  /** A host restored its state machine from a snapshot taken at `index`. */
  onRestore(id: NodeId, index: number, term: number, hash: number): void {
    const t = this.appliedTerm[index];
    if (t !== undefined && t !== term)
      this.violate(
        'snapshot-mismatch',
        `${id} restored a snapshot at ${index} with term ${term}, committed term there is ${t}`,
      );
    const h = this.stateHash[index];
    if (h === undefined) this.stateHash[index] = hash;
    else if (h !== hash)
      this.violate(
        'snapshot-mismatch',
        `${id} restored a snapshot at ${index} whose state differs from the applied state there`,
      );
  }

  // --- 5. Durability of acknowledged writes ----------------------------------------------------

  onAck(index: number, term: number, key: number, label: string): void {
    const prev = this.acked.get(index);
    if (prev && prev.key !== key)
      this.violate('durability', `two writes acknowledged at index ${index}: ${prev.label} and ${label}`);
    this.acked.set(index, { index, term, key, label });
    if (index > this.maxAcked) this.maxAcked = index;
  }

  /** After HEAL: every acknowledged write is in every live member's applied state. */
  checkAckedApplied(members: readonly { id: NodeId; applied: number }[]): void {
    for (const a of this.acked.values()) {
      for (const m of members) {
        if (m.applied < a.index) {
          this.violate(
            'durability',
            `acknowledged write ${a.label} at index ${a.index} not applied on ${m.id} (applied ${m.applied})`,
          );
          return;
        }
      }
      if (this.appliedKey[a.index] !== a.key) {
        this.violate('durability', `acknowledged write ${a.label} at index ${a.index} was replaced by another entry`);
        return;
      }
    }
  }

  // --- 7. Linearizable reads -------------------------------------------------------------------

  onReadIssued(ctx: string): void {
    this.readIssuedAck.set(ctx, this.maxAcked);
  }

  onReadServed(id: NodeId, ctx: string, index: number, applied: number): void {
    const need = this.readIssuedAck.get(ctx);
    if (need === undefined) return; // not ours (cannot happen) — nothing to compare against
    if (index < need) {
      this.violate(
        'read-linearizability',
        `${id} served read ${ctx} at index ${index}, but a write at index ${need} was acknowledged before the read was issued`,
      );
    }
    if (applied < index)
      this.violate(
        'read-linearizability',
        `${id} served read ${ctx} at ${index} before applying it (applied ${applied})`,
      );
  }
}
