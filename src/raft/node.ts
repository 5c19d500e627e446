// RaftNode: the host-facing wrapper around Raft. Collects what changed since the last Ready
// (hard state, soft state, unstable log, committed entries, messages, reads, transfer outcomes)
// into one batch, and learns from advance() what the host made durable. A host may hold up to
// `maxReadiesInFlight` Readies at once (pipelined writes): each hands out only what the earlier
// ones did not, and advance() acknowledges the oldest.
import type { RaftConfig } from './config.js';
import { Raft, type RaftStatus, type StepResult } from './raft.js';
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  NodeId,
  ProposeResult,
  ReadRequestResult,
  Ready,
  RejectReason,
  Snapshot,
  SoftState,
  TransferRequestResult,
} from './types.js';
import { RaftError } from './types.js';
import { append, NOTHING } from './empty.js';
import type { RaftView } from './view.js';

interface InProgress {
  lastEntry: { index: number; term: number } | null;
  snapIndex: number;
  /** The term whose hard state (term and vote) this Ready persists, else 0. */
  voteTerm: number;
}

/** Set by RaftNode's static block: the white-box test hooks below reach the Raft inside. */
let raftOf: (n: RaftNode) => Raft;

export class RaftNode {
  /** The protocol state machine. Private: the host drives it through the methods below, and tests
   *  and tools read it through inspect(). */
  private readonly raft: Raft;
  // The soft and hard state of the newest Ready handed out (or the initial ones), as plain fields:
  // two objects per replica cost more than these six numbers and strings.
  private prevRole: SoftState['role'];
  private prevLeader: NodeId;
  private prevSoftTerm: number;
  private prevHardTerm: number;
  private prevVote: NodeId;
  private prevCommit: number;
  /** Readies handed out and not yet advanced, oldest first (NOTHING when none; add with
   *  `append`). */
  private inFlight: InProgress[] = NOTHING;

  static {
    raftOf = (n) => n.raft;
  }

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevRole = this.raft.role;
    this.prevLeader = this.raft.leader;
    this.prevSoftTerm = this.raft.term;
    this.prevHardTerm = this.raft.term;
    this.prevVote = this.raft.vote;
    this.prevCommit = this.raft.log.committed;
  }

  get id(): NodeId {
    return this.raft.id;
  }

  get group(): number {
    return this.raft.group;
  }

  /** See Raft.tick: `elapsed` tick intervals of real time passed (default 1). */
  tick(elapsed = 1): void {
    this.raft.tick(elapsed);
  }

  step(m: Message): StepResult {
    return this.raft.step(m);
  }

  propose(data: Uint8Array): ProposeResult {
    return this.raft.propose(data);
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.raft.proposeConfChange(cc);
  }

  readIndex(ctx: string, lease = true): ReadRequestResult {
    return this.raft.readIndex(ctx, lease);
  }

  transferLeader(target: NodeId): TransferRequestResult {
    return this.raft.transferLeader(target);
  }

  /** Start an election now (tests, bootstrap of a single-node group). */
  campaign(): void {
    this.raft.startElection();
  }

  wake(): void {
    this.raft.wake();
  }

  leaderUnreachable(): void {
    this.raft.leaderUnreachable();
  }

  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok);
  }

  isQuiesced(): boolean {
    return this.raft.quiesced;
  }

  status(): RaftStatus {
    return this.raft.status();
  }

  /** The live protocol state, read-only (see view.ts): for tests, the simulator and debugging. */
  inspect(): RaftView {
    return this.raft;
  }

  /** Rejected inputs by reason; the host exports these as metrics. */
  get rejected(): Readonly<Record<RejectReason, number>> {
    return this.raft.rejected;
  }

  /** Wait `ticks` more than the election timeout before campaigning on its own (0 = normal).
   *  For a node being drained: healthy peers win elections first; it still campaigns if none does. */
  setCampaignDelay(ticks: number): void {
    if (!Number.isSafeInteger(ticks) || ticks < 0)
      throw new RaftError('InvalidArgument', `campaign delay must be a non-negative integer, got ${ticks}`);
    this.raft.campaignDelay = ticks;
  }

  /** See Raft.compactionFloor: hosts compact below it so followers catch up without snapshots. */
  compactionFloor(): number {
    return this.raft.compactionFloor();
  }

  /** See Raft.electedByTransfer. */
  electedByTransfer(term: number): boolean {
    return this.raft.electedByTransfer(term);
  }

  /** See Raft.leadsWithCommittedTerm. */
  leadsWithCommittedTerm(): boolean {
    return this.raft.leadsWithCommittedTerm();
  }

  /** See Raft.peerLag. */
  peerLag(): Record<NodeId, number> | null {
    return this.raft.peerLag();
  }

  private softState(): SoftState {
    return { role: this.raft.role, leader: this.raft.leader, term: this.raft.term };
  }

  private hardState(): HardState {
    return { term: this.raft.term, vote: this.raft.vote, commit: this.raft.log.committed };
  }

  hasReady(): boolean {
    const r = this.raft;
    if (this.inFlight.length >= r.cfg.maxReadiesInFlight) return false;
    if (r.broadcastPending()) return true;
    if (r.msgsNow.length || r.msgsAfterPersist.length || r.readStates.length || r.droppedReads.length) return true;
    if (r.transferOutcomes.length || r.confChanged) return true;
    if (r.log.hasUnhanded() || r.log.hasNextCommitted()) return true;
    if (r.term !== this.prevHardTerm || r.vote !== this.prevVote || r.log.committed !== this.prevCommit) return true;
    return r.role !== this.prevRole || r.leader !== this.prevLeader || r.term !== this.prevSoftTerm;
  }

  /** Drain everything pending into a Ready. The host calls advance() once it is persisted; it may
   *  call ready() again before that only while fewer than maxReadiesInFlight are outstanding. */
  ready(): Ready {
    const r = this.raft;
    const max = r.cfg.maxReadiesInFlight;
    if (this.inFlight.length >= max) {
      throw new RaftError(
        'Invariant',
        `ready() with ${this.inFlight.length} Readies in flight (maxReadiesInFlight ${max})`,
      );
    }
    r.flushBroadcast();
    const log = r.log;
    const snapshot: Snapshot | null = log.unstableSnap !== null && !log.snapHanded ? log.unstableSnap : null;
    if (snapshot) log.snapHanded = true;
    const entries: readonly Entry[] = log.hasUnhanded() ? log.takeUnhanded() : NO_ENTRIES;
    let committed: readonly Entry[] = NO_ENTRIES;
    if (snapshot) {
      log.applied = Math.max(log.applied, snapshot.meta.index);
    } else if (log.hasNextCommitted()) {
      committed = log.nextCommitted(r.cfg.maxCommittedBytesPerReady);
      for (const e of committed) if (e.type === 'conf') r.applyConfEntry(e);
      if (committed.length > 0) log.applied = committed[committed.length - 1].index;
    }
    // Objects only for what changed: most Readies of a busy group change neither.
    const softChanged = r.role !== this.prevRole || r.leader !== this.prevLeader || r.term !== this.prevSoftTerm;
    const voteChanged = r.term !== this.prevHardTerm || r.vote !== this.prevVote;
    const hardChanged = voteChanged || r.log.committed !== this.prevCommit;
    const soft = softChanged ? this.softState() : null;
    const hard = hardChanged ? this.hardState() : null;
    let messages: readonly Message[] = take(r.msgsNow);
    if (messages.length > 0) r.msgsNow = NOTHING;
    let after: readonly Message[] = take(r.msgsAfterPersist);
    if (after.length > 0) r.msgsAfterPersist = NOTHING;
    if (voteChanged) {
      // A new term or vote must be durable before anything that promises it leaves, except a
      // candidate's vote requests: they promise nothing (the candidate counts its own vote only
      // once durable), so they go out in parallel with the write, saving one fsync per election.
      const requests = messages.filter((m) => m.type === 'vote' || m.type === 'preVote');
      after =
        requests.length === messages.length
          ? after
          : messages.filter((m) => m.type !== 'vote' && m.type !== 'preVote').concat(after);
      messages = requests.length > 0 ? requests : NO_MESSAGES;
    }
    const conf: ConfState | null = r.confChanged ? r.tracker.conf() : null;
    const rd: Ready = {
      group: r.group,
      softState: soft,
      hardState: hard,
      snapshot,
      entries,
      committed,
      messages,
      messagesAfterPersist: after,
      readStates: take(r.readStates),
      transfers: take(r.transferOutcomes),
      conf,
      droppedReads: take(r.droppedReads),
      mustSync: voteChanged || entries.length > 0 || snapshot !== null || conf !== null,
    };
    if (r.readStates.length > 0) r.readStates = NOTHING;
    if (r.droppedReads.length > 0) r.droppedReads = NOTHING;
    if (r.transferOutcomes.length > 0) r.transferOutcomes = NOTHING;
    r.confChanged = false;
    if (soft) {
      this.prevRole = soft.role;
      this.prevLeader = soft.leader;
      this.prevSoftTerm = soft.term;
    }
    if (hard) {
      this.prevHardTerm = hard.term;
      this.prevVote = hard.vote;
      this.prevCommit = hard.commit;
    }
    const last = entries.length > 0 ? entries[entries.length - 1] : null;
    this.inFlight = append(this.inFlight, {
      lastEntry: last ? { index: last.index, term: last.term } : null,
      snapIndex: snapshot ? snapshot.meta.index : 0,
      voteTerm: voteChanged ? r.term : 0,
    });
    return rd;
  }

  /** The host persisted the oldest Ready it holds (and sent its messages). */
  advance(): void {
    const p = this.inFlight.shift();
    if (!p) return;
    if (this.inFlight.length === 0) this.inFlight = NOTHING; // frees the backing store
    const log = this.raft.log;
    if (p.snapIndex > 0) log.stableSnapTo(p.snapIndex);
    if (p.lastEntry) log.stableTo(p.lastEntry.index, p.lastEntry.term);
    if (p.voteTerm > 0) this.raft.onVoteDurable(p.voteTerm);
    this.raft.onPersisted();
  }
}

const NO_ENTRIES: readonly Entry[] = NOTHING;
const NO_MESSAGES: readonly Message[] = NOTHING;

/** The outbox itself when it has something (the caller then gives Raft a fresh one), else a
 *  shared empty array: a Ready allocates nothing for what it does not carry. */
function take<T>(xs: T[]): readonly T[] {
  return xs.length > 0 ? xs : NOTHING;
}

/** White-box tests only (not exported from the package): apply a committed conf entry the way
 *  ready() does, to reach paths the public API guards against. */
export function applyConfEntryForTest(n: RaftNode, e: Entry): void {
  raftOf(n).applyConfEntry(e);
}
