// Raft: the protocol state machine of one replica of one group. Pure and deterministic: inputs are
// ticks, messages and local requests; outputs accumulate in outboxes that RaftNode drains into a
// Ready. Owns roles and terms, elections (PreVote, CheckQuorum, stickiness, two clocks),
// replication and flow control, leader transfer, membership and ReadIndex/lease reads. Quiescence
// (quiesce.ts) and fast failover (failover.ts) live apart, driven from here.
import { resolveConfig, tuningOf, type RaftConfig, type Tuning } from './config.js';
import type { RandomSource } from './rand.js';
import { applyConfChange, decodeConfChange, encodeConfChange, validateConfChange } from './confchange.js';
import { append, NOTHING } from './empty.js';
import { RaftLog } from './log.js';
import type { Progress } from './progress.js';
import { FailoverPlan } from './failover.js';
import { followerQuiesce, maybeQuiesce, quiesceIfCaughtUp, unquiesce, wakesQuiesced } from './quiesce.js';
import { randInt } from './rand.js';
import { ReadIndexQueue, type PendingRead } from './readindex.js';
import { Tracker } from './tracker.js';
import {
  NONE,
  RaftError,
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type MsgApp,
  type MsgAppResp,
  type MsgHeartbeat,
  type MsgHeartbeatResp,
  type MsgSnap,
  type MsgVote,
  type NodeId,
  type ProposeResult,
  type ReadRequestResult,
  type ReadState,
  type RejectReason,
  type Role,
  type Snapshot,
  type TransferAbortReason,
  type TransferOutcome,
  type TransferRequestResult,
} from './types.js';
import { validateMessage } from './validate.js';

/** Messages that do not promise anything about local durable state may leave before the persist. */
// A heartbeat response promises nothing about the log (only that we heard this leader in this
// term; a term change in the same Ready still holds every message back): it need not wait for
// the fsync, and a ReadIndex round or a lease then costs no disk write on the followers. A
// candidate's vote request promises nothing either: the candidate counts its own vote only once
// durable (awaitingOwnVote), so the requests travel while its new term is being written.
const SEND_BEFORE_PERSIST = new Set<Message['type']>([
  'app',
  'hb',
  'hbResp',
  'snap',
  'timeoutNow',
  'readIndexResp',
  'preVote',
  'vote',
  'transferLeader',
  'readIndex',
]);

type Outgoing = Message extends infer M
  ? M extends Message
    ? Omit<M, 'group' | 'from' | 'term'> & { term?: number }
    : never
  : never;

export type StepResult = { readonly ok: true } | { readonly ok: false; readonly reason: RejectReason };

interface Transfer {
  readonly target: NodeId;
  elapsed: number;
  /** `elapsed` when TimeoutNow went out (-1 before). */
  sentAt: number;
}

/** Ticks a transfer may outlive its timeout when TimeoutNow went out just before it: the target
 *  is campaigning, and a leader that resumed proposals now would make the target's log stale
 *  and lose the election (leaving the group leaderless for another election timeout). */
const TIMEOUT_NOW_GRACE_TICKS = 2;

export interface PeerStatus {
  readonly match: number;
  readonly next: number;
  readonly state: string;
  readonly recentActive: boolean;
  readonly inflight: number;
  readonly learner: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly group: number;
  readonly role: Role;
  readonly leader: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly quiesced: boolean;
  readonly transferTarget: NodeId | null;
  readonly conf: ConfState;
  readonly progress: Record<NodeId, PeerStatus>;
}

const OK: StepResult = { ok: true };

// Bits of Raft.flags.
const QUIESCED = 1;
const CONF_CHANGED = 2;
const PENDING_BROADCAST = 4;
const PENDING_PROBE = 8;
const STARTUP_QUIET = 16;
const LEASE_REVOKED = 32;
const AWAITING_OWN_VOTE = 64;
const LEAVING = 128;

const NO_REJECTIONS: Readonly<Record<RejectReason, number>> = Object.freeze({
  WrongGroup: 0,
  NotAddressedToMe: 0,
  UnknownSender: 0,
  Malformed: 0,
  StaleTerm: 0,
});

/** Ticks without an append ack, while heartbeats are answered, before appends count as lost. */
const LOST_APPEND_TICKS = 3;

/** Package-internal: the package exports RaftNode, which owns one of these privately. Members
 *  without `private` are for RaftNode (draining outboxes into a Ready) and the helper modules
 *  (quiesce.ts); tests and tools read the state through RaftView (RaftNode.inspect()). */
export class Raft {
  readonly id: NodeId;
  readonly group: number;
  /** Shared with every replica of the same tunables (see tuningOf). */
  readonly cfg: Tuning;
  private readonly random: RandomSource;
  readonly log: RaftLog;
  readonly tracker: Tracker;

  term = 0;
  vote: NodeId = NONE;
  leader: NodeId = NONE;
  role: Role = 'follower';

  electionElapsed = 0;
  /** Real ticks (coalesced ones counted in full) since we last heard a leader, for the lease
   *  check on votes and for fast failover: the leader's lease runs on real ticks too. */
  silence = 0;
  heartbeatElapsed = 0;
  randomizedTimeout = 0;
  /** Monotonic tick counter while leader; heartbeats carry it so replies date a lease. */
  leaderTicks = 0;
  /** Extra ticks this node waits before campaigning on its own (TimeoutNow is unaffected): a
   *  node being drained for maintenance lets the others win elections while they can. */
  campaignDelay = 0;

  transfer: Transfer | null = null;
  /** Counts the ticks of startupQuiet. */
  private startupTicks = 0;
  /** The latest term known to have been started by a leader transfer (TimeoutNow): sent by us as
   *  leader, campaigned for by us as target, or asked for in a transfer vote request. Lets the
   *  host tell planned leader changes from elections. */
  private transferTerm = 0;
  /** A transfer whose outcome depends on who leads the next term. */
  private transferVerdict: { target: NodeId; term: number; ticks: number; newTerm: number } | null = null;
  pendingConfIndex = 0;
  idleTicks = 0;
  /** The boolean state, one bit each (see the accessors below): a node holds 100,000 replicas. */
  private flags = 0;
  /** A fast failover in progress (see failover.ts); null for nearly every replica. */
  private failover: FailoverPlan | null = null;

  /** Outboxes drained by RaftNode.ready(). Empty ones are the shared NOTHING (most replicas are
   *  idle most of the time): add to them only with `append`. */
  msgsNow: Message[] = NOTHING;
  msgsAfterPersist: Message[] = NOTHING;
  readStates: ReadState[] = NOTHING;
  droppedReads: string[] = NOTHING;
  transferOutcomes: TransferOutcome[] = NOTHING;

  /** Reads waiting for a heartbeat round; null while none is (the usual case). */
  private reads: ReadIndexQueue | null = null;
  /** Reads waiting for this leader's first commit (NOTHING when none; add with `append`). */
  private readsBeforeCommit: { ctx: string; from: NodeId; lease: boolean }[] = NOTHING;
  /** (index, bytes) of proposals not yet committed, for the uncommitted-bytes cap (NOTHING when
   *  none; add with `append`). */
  private uncommitted: [number, number][] = NOTHING;
  private uncommittedBytes = 0;

  /** Rejected inputs by reason, allocated at the first rejection (see `rejected`). */
  private rejections: Record<RejectReason, number> | null = null;

  private flag(bit: number): boolean {
    return (this.flags & bit) !== 0;
  }

  private setFlag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  /** The group is quiesced: ticks do nothing until a message or a local request wakes it. */
  get quiesced(): boolean {
    return this.flag(QUIESCED);
  }
  set quiesced(on: boolean) {
    this.setFlag(QUIESCED, on);
  }

  /** The membership changed since the last Ready. */
  get confChanged(): boolean {
    return this.flag(CONF_CHANGED);
  }
  set confChanged(on: boolean) {
    this.setFlag(CONF_CHANGED, on);
  }

  /** Leader has appended entries (or, without skipCommitBroadcast, advanced its commit index)
   *  since the last broadcast; flushed once per Ready. */
  private get pendingBroadcast(): boolean {
    return this.flag(PENDING_BROADCAST);
  }
  private set pendingBroadcast(on: boolean) {
    this.setFlag(PENDING_BROADCAST, on);
  }

  /** The membership changed: every follower gets an append, or an empty probe if it has nothing
   *  new (a new member must be probed to start replicating). */
  private get pendingProbe(): boolean {
    return this.flag(PENDING_PROBE);
  }
  private set pendingProbe(on: boolean) {
    this.setFlag(PENDING_PROBE, on);
  }

  /** Freshly started: refuse votes until electionTicks of real time have passed (see
   *  constructor); `startupTicks` counts them. */
  private get startupQuiet(): boolean {
    return this.flag(STARTUP_QUIET);
  }
  private set startupQuiet(on: boolean) {
    this.setFlag(STARTUP_QUIET, on);
  }

  /** TimeoutNow was sent this term: voters may now ignore stickiness, so no lease holds. */
  private get leaseRevoked(): boolean {
    return this.flag(LEASE_REVOKED);
  }
  private set leaseRevoked(on: boolean) {
    this.setFlag(LEASE_REVOKED, on);
  }

  /** A candidate whose vote requests left before its new term and self-vote were durable: it
   *  counts its own vote (and may win) only once the host persisted them (onVoteDurable). A
   *  self-vote lost in a crash could otherwise elect a second leader in the same term. */
  private get awaitingOwnVote(): boolean {
    return this.flag(AWAITING_OWN_VOTE);
  }
  private set awaitingOwnVote(on: boolean) {
    this.setFlag(AWAITING_OWN_VOTE, on);
  }

  /** This leader's own removal/demotion is applied: it hands over and stops taking proposals. */
  private get leaving(): boolean {
    return this.flag(LEAVING);
  }
  private set leaving(on: boolean) {
    this.setFlag(LEAVING, on);
  }

  /** Send a follower an empty append when only the commit index moved (etcd's behaviour); off
   *  with skipCommitBroadcast, when followers learn it from the next append or heartbeat. */
  private get bcastCommit(): boolean {
    return !this.cfg.skipCommitBroadcast;
  }

  /** Rejected inputs by reason; the host exports these as metrics. */
  get rejected(): Readonly<Record<RejectReason, number>> {
    return this.rejections ?? NO_REJECTIONS;
  }

  private countRejected(reason: RejectReason): void {
    this.rejections ??= { ...NO_REJECTIONS };
    this.rejections[reason]++;
  }

  constructor(config: RaftConfig) {
    const resolved = resolveConfig(config);
    this.cfg = tuningOf(resolved);
    this.random = resolved.random;
    this.id = resolved.id;
    this.group = resolved.group;
    const st = resolved.storage.initialState();
    this.log = new RaftLog(resolved.storage, resolved.applied);
    this.tracker = new Tracker(this.cfg.maxInflight);
    this.tracker.setConf(st.conf, this.log.lastIndex() + 1);
    this.term = st.hardState.term;
    this.vote = st.hardState.vote;
    this.becomeFollower(this.term, NONE);
    // Before it went down, this node may have promised a leader (by answering its heartbeat) not
    // to vote for anyone else for electionTicks; with lease reads a restart must not break that
    // promise, or the leader's lease could serve stale reads. So a fresh process refuses
    // (non-transfer) votes for electionTicks. (All replicas of a group share this setting.)
    // A brand-new replica (term 0) has promised nothing.
    this.startupQuiet = this.cfg.checkQuorum && this.cfg.leaseReads && st.hardState.term > 0;
  }

  // ------------------------------------------------------------------------------------------
  // Role transitions

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.leader = NONE;
    this.electionElapsed = 0;
    this.silence = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedTimeout(this.cfg.electionTicks);
    this.tracker.resetVotes();
    // Only a leader tracks its peers' progress; becomeLeader starts afresh.
    this.tracker.dropProgress();
    this.pendingConfIndex = 0;
    this.uncommitted = NOTHING;
    this.uncommittedBytes = 0;
    this.quiesced = false;
    this.idleTicks = 0;
    this.pendingBroadcast = false;
    this.pendingProbe = false;
    this.leaseRevoked = false;
    this.awaitingOwnVote = false;
    this.leaving = false;
    this.forgetFailedLeader();
    this.dropReads();
  }

  private resetRandomizedTimeout(base: number): void {
    this.randomizedTimeout = randInt(this.random, base, 2 * base);
  }

  private dropReads(): void {
    const pending = [
      ...(this.reads?.drain() ?? NOTHING),
      ...this.readsBeforeCommit.map((r) => ({ ...r, index: 0, acks: new Set<NodeId>() })),
    ];
    this.reads = null;
    this.readsBeforeCommit = NOTHING;
    for (const r of pending) this.releaseRead(r, 0);
  }

  private becomeFollower(term: number, leader: NodeId): void {
    if (this.transfer) {
      if (leader === this.transfer.target) this.endTransfer('completed');
      else if (leader === NONE && term > this.term) {
        // Deposed by a higher term whose leader we do not know yet: judge when we learn it.
        this.transferVerdict = {
          target: this.transfer.target,
          term: this.term,
          ticks: this.transfer.elapsed,
          newTerm: term,
        };
        this.transfer = null;
      } else this.endTransfer('aborted', 'LeadershipLost');
    }
    this.reset(term);
    this.role = 'follower';
    this.leader = leader;
    this.failover = null; // reset forgot the report; no early retries either
  }

  private becomePreCandidate(): void {
    if (this.role === 'leader') throw new RaftError('Invariant', 'leader cannot become pre-candidate');
    // PreVote does not touch term or vote: a failed pre-election leaves no trace.
    this.role = 'preCandidate';
    this.leader = NONE;
    this.tracker.resetVotes();
    this.electionElapsed = 0;
    this.silence = 0;
    this.resetRandomizedTimeout(this.cfg.electionRoundTicks);
  }

  private becomeCandidate(): void {
    if (this.role === 'leader') throw new RaftError('Invariant', 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.resetRandomizedTimeout(this.cfg.electionRoundTicks);
  }

  private becomeLeader(): void {
    if (this.role === 'follower') throw new RaftError('Invariant', 'follower cannot become leader directly');
    this.reset(this.term);
    this.role = 'leader';
    this.leader = this.id;
    this.tracker.trackProgress(this.log.lastIndex() + 1);
    const self = this.tracker.progressOf(this.id);
    if (self) {
      self.maybeUpdate(this.log.stableLastIndex());
      self.becomeReplicate();
      self.recentActive = true;
    }
    // A new leader may not know which conf changes are applied; forbid new ones until its own
    // term's first entry is applied (fixes the single-server-change bug of the thesis errata).
    this.pendingConfIndex = this.appendEntries([{ index: 0, term: 0, type: 'normal', data: new Uint8Array(0) }]);
  }

  // ------------------------------------------------------------------------------------------
  // Inputs

  /** One tick of the election and heartbeat clocks. `elapsed` is how many tick intervals of real
   *  time passed since the previous call (a host whose timer coalesced ticks under load says so):
   *  the election and heartbeat clocks still advance by one — running slow is safe — but the
   *  leader's lease clock advances by all of them, since a lease must never outlive real time. */
  tick(elapsed = 1): void {
    if (!Number.isSafeInteger(elapsed) || elapsed < 1)
      throw new RaftError('InvalidArgument', `tick: elapsed must be a positive integer, got ${elapsed}`);
    // Counted apart from the election clock, which every campaign resets: a candidate whose
    // election round is shorter than the election timeout would otherwise stay quiet forever
    // and refuse every vote (two such restarted candidates never elect anyone).
    if (this.startupQuiet) {
      this.startupTicks += elapsed;
      if (this.startupTicks >= this.cfg.electionTicks) this.startupQuiet = false;
    }
    if (this.quiesced) return;
    if (this.role === 'leader') {
      this.leaderTicks += elapsed - 1;
      this.tickLeader();
    } else {
      this.silence += elapsed;
      this.tickElection();
    }
    if (this.transferVerdict) this.judgeTransfer();
  }

  private tickElection(): void {
    this.electionElapsed++;
    const f = this.failover;
    const due =
      f?.campaignDue(this.role === 'preCandidate', this.silence, this.campaignDelay) ??
      this.electionElapsed >= this.randomizedTimeout + this.campaignDelay;
    // A node that cannot campaign keeps counting: resetting its clock would keep it "in lease"
    // with a dead leader forever, refusing every vote.
    if (due && this.promotable()) {
      this.electionElapsed = 0;
      this.silence = 0;
      if (f) {
        f.campaigned();
        if (f.idle) this.failover = null;
      }
      this.hup(false);
    }
  }

  private tickLeader(): void {
    this.leaderTicks++;
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (
      this.transfer &&
      ++this.transfer.elapsed >= this.cfg.electionTicks &&
      (this.transfer.sentAt < 0 || this.transfer.elapsed - this.transfer.sentAt >= TIMEOUT_NOW_GRACE_TICKS)
    ) {
      this.endTransfer('aborted', 'Timeout');
    } else if (
      this.transfer &&
      this.transfer.sentAt >= 0 &&
      (this.transfer.elapsed - this.transfer.sentAt) % this.cfg.heartbeatTicks === 0 &&
      this.tracker.progressOf(this.transfer.target)?.match === this.log.lastIndex()
    ) {
      // Not taken over yet: say it again each heartbeat interval. The target may have ignored
      // the first one (it had not yet applied the change that made it a voter) or lost it; one
      // that already campaigned finds this one stale.
      this.sendTimeoutNow(this.transfer.target);
    }
    if (this.leaving) this.handOver();
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        if (!this.tracker.quorumActive(this.id)) {
          this.becomeFollower(this.term, NONE);
          return;
        }
        for (const pr of this.tracker.progress) if (pr.id !== this.id) pr.recentActive = false;
      }
    }
    for (const pr of this.tracker.progress) {
      const id = pr.id;
      if (id === this.id) continue;
      if (pr.state === 'replicate' && pr.match < this.log.lastIndex()) {
        // Appends lost in flight leave no trace on the follower; fall back to probing.
        if (++pr.ticksSinceAck >= this.cfg.electionTicks) {
          pr.becomeProbe();
          pr.ticksSinceAck = 0;
          this.sendAppend(id, true);
        }
      } else if (pr.state === 'snapshot' && ++pr.snapshotTicks >= 2 * this.cfg.electionTicks) {
        pr.becomeProbe();
      }
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      // Carry the newest pending read so a lost confirmation round is retried; its quorum of
      // acks releases every earlier read too.
      this.bcastHeartbeat(this.reads?.lastCtx() ?? '', true);
    }
    maybeQuiesce(this);
  }

  /** Start an election now, as if the election timeout had fired. */
  startElection(): void {
    this.hup(false);
  }

  /** Start an election (after a timeout, or at once when `transfer`). */
  private hup(transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) return;
    // A timeout campaign waits for committed conf changes to apply (as etcd). A transfer need not:
    // configurations one member apart have intersecting majorities, so counting votes in either
    // is safe, and a leader handing over after its own removal must not be kept waiting.
    if (!transfer && this.hasUnappliedConf()) return;
    if (this.cfg.preVote && !transfer) this.campaign('preCandidate', false);
    else this.campaign('candidate', transfer);
  }

  private campaign(kind: 'preCandidate' | 'candidate', transfer: boolean): void {
    let voteTerm: number;
    if (kind === 'preCandidate') {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
    }
    if (kind === 'candidate') {
      if (transfer) this.transferTerm = this.term;
      // The requests leave now, in parallel with persisting the new term and vote; our own vote
      // counts once that write is durable (onVoteDurable).
      this.awaitingOwnVote = true;
    } else {
      // A pre-vote promises nothing: it counts at once.
      this.tracker.recordVote(this.id, true);
      if (this.tracker.tally() === 'won') {
        this.campaign('candidate', transfer);
        return;
      }
    }
    const type = kind === 'preCandidate' ? 'preVote' : 'vote';
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    for (const id of this.tracker.voters) {
      if (id === this.id) continue;
      this.send({ type, to: id, term: voteTerm, index, logTerm, transfer });
    }
  }

  private promotable(): boolean {
    return this.tracker.isVoter(this.id) && this.log.unstableSnap === null;
  }

  /** Is there a conf entry in (applied, upTo]? Conf entries are rare and the range short (the
   *  unapplied tail), so a scan is cheap. */
  private confEntryAfterApplied(upTo: number): boolean {
    if (upTo <= this.log.applied) return false;
    return this.log.entries(this.log.applied + 1, upTo + 1, Number.MAX_SAFE_INTEGER).some((e) => e.type === 'conf');
  }

  private hasUnappliedConf(): boolean {
    return this.confEntryAfterApplied(this.log.committed);
  }

  step(m: Message): StepResult {
    const bad = validateMessage(m);
    if (bad) return this.reject(bad);
    if (m.group !== this.group) return this.reject('WrongGroup');
    if (m.to !== this.id) return this.reject('NotAddressedToMe');
    if (m.from === this.id) return this.reject('Malformed');
    if (!this.acceptsFrom(m)) return this.reject('UnknownSender');
    if (this.quiesced && wakesQuiesced(m)) unquiesce(this);

    if (m.term > this.term) {
      if (
        (m.type === 'vote' || m.type === 'preVote') &&
        !this.tracker.isMember(m.from) &&
        this.tracker.voters.length > 0 &&
        !this.log.isUpToDate(m.index, m.logTerm)
      ) {
        // A removed server keeps campaigning (it never learns it was removed); its higher term
        // would depose healthy leaders and candidates. It cannot win our vote with a log behind
        // ours, so drop the request as if lost (always safe). A new member that is up to date is
        // still answered.
        this.countRejected('UnknownSender');
        return OK;
      }
      if ((m.type === 'vote' || m.type === 'preVote') && !m.transfer) {
        // Leader stickiness: while we hear from a live leader, refuse to help depose it.
        // Real ticks: the leader's lease (leaseReads) is dated in real ticks as well.
        // A voter told that the leader's node is down has no stickiness to keep, unless leases
        // are in use (then the old lease must lapse first, whatever the liveness layer says).
        const inLease =
          this.cfg.checkQuorum &&
          (this.leader !== NONE || this.startupQuiet) &&
          this.silence < this.cfg.electionTicks &&
          !(this.failover?.armed && !this.cfg.leaseReads);
        if (inLease) return OK;
      }
      if (m.type === 'preVote' || (m.type === 'preVoteResp' && !m.reject)) {
        // A pre-vote (or a grant of ours) carries a future term: it changes nothing here.
      } else {
        const isLeaderMsg = m.type === 'app' || m.type === 'hb' || m.type === 'snap';
        this.becomeFollower(m.term, isLeaderMsg ? m.from : NONE);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === 'app' || m.type === 'hb')) {
        // A deposed leader cut off by a partition: tell it the new term so it steps down.
        this.send({ type: 'appResp', to: m.from, index: 0, reject: false, hintIndex: 0, hintTerm: 0 });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', to: m.from, reject: true });
      }
      this.countRejected('StaleTerm');
      return OK;
    }

    if (m.type === 'vote' || m.type === 'preVote') {
      if (m.type === 'vote' && m.transfer && m.term === this.term) this.transferTerm = m.term;
      this.handleVoteRequest(m);
    } else {
      switch (this.role) {
        case 'leader':
          this.stepLeader(m);
          break;
        case 'candidate':
        case 'preCandidate':
          this.stepCandidate(m);
          break;
        case 'follower':
          this.stepFollower(m);
          break;
      }
    }
    if (this.transferVerdict) this.judgeTransfer();
    return OK;
  }

  private judgeTransfer(): void {
    const v = this.transferVerdict!;
    let completed: boolean;
    if (this.leader !== NONE) completed = this.leader === v.target && this.term === v.newTerm;
    else if (this.role !== 'follower' || this.term > v.newTerm) completed = false;
    else return;
    this.transferVerdict = null;
    if (completed)
      this.transferOutcomes = append(this.transferOutcomes, {
        target: v.target,
        term: v.term,
        ticks: v.ticks,
        status: 'completed',
      });
    else
      this.transferOutcomes = append(this.transferOutcomes, {
        target: v.target,
        term: v.term,
        ticks: v.ticks,
        status: 'aborted',
        reason: 'LeadershipLost',
      });
  }

  private reject(reason: RejectReason): StepResult {
    this.countRejected(reason);
    return { ok: false, reason };
  }

  /** Responses only count from members. A leader's messages and vote requests are accepted from
   *  anyone, because our configuration may lag behind the one that elected (or added) the sender:
   *  a voter that has not yet received its own promotion must still be able to vote. */
  private acceptsFrom(m: Message): boolean {
    switch (m.type) {
      case 'app':
      case 'hb':
      case 'snap':
      case 'timeoutNow':
      case 'vote':
      case 'preVote':
        return true;
      default:
        return this.tracker.isMember(m.from);
    }
  }

  private handleVoteRequest(m: MsgVote): void {
    const respType = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.leader === NONE) ||
      (m.type === 'preVote' && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      this.send({ type: respType, to: m.from, term: m.term, reject: false });
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.silence = 0;
        this.vote = m.from;
      } else if (this.failover) this.deferToBetterSurvivor(this.failover, m.from);
    } else {
      this.send({ type: respType, to: m.from, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    const pr = this.tracker.progressOf(m.from);
    switch (m.type) {
      case 'appResp':
        if (pr) this.handleAppResp(m, pr);
        return;
      case 'hbResp':
        if (pr) this.handleHeartbeatResp(m, pr);
        return;
      case 'transferLeader':
        this.transferLeader(m.target);
        return;
      case 'readIndex':
        // Reads forwarded by followers always take a heartbeat round: only the leader's own
        // callers choose to trust its lease.
        this.handleReadRequest(m.ctx, m.from, false);
        return;
      default:
        return; // app/hb/snap of the same term from another node cannot happen; ignore.
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case 'hb':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case 'voteResp':
      case 'preVoteResp': {
        if ((m.type === 'voteResp') !== (this.role === 'candidate')) return;
        this.tracker.recordVote(m.from, !m.reject);
        const r = this.tracker.tally();
        if (r === 'won' && this.awaitingOwnVote) return; // leads only once its own vote is durable
        if (r === 'won') {
          if (this.role === 'preCandidate') this.campaign('candidate', false);
          else this.winElection();
        } else if (r === 'lost') {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      case 'timeoutNow':
        // A caught-up target that happened to start a pre-election still takes the handover.
        if (this.role === 'preCandidate') this.hup(true);
        return;
      case 'readIndex':
        this.send({ type: 'readIndexResp', to: m.from, ctx: m.ctx, index: 0 });
        return;
      default:
        return;
    }
  }

  /** A new term or a live leader: the failover report no longer applies. */
  private forgetFailedLeader(): void {
    const f = this.failover;
    if (f === null) return;
    f.forgetLeader();
    if (f.idle) this.failover = null;
  }

  /** We granted a pre-vote to `candidate` during a fast failover: a better-ranked survivor goes
   *  first, and our own pre-campaign, if any, is abandoned (see FailoverPlan.deferTo). */
  private deferToBetterSurvivor(f: FailoverPlan, candidate: NodeId): void {
    if (this.role !== 'follower' && this.role !== 'preCandidate') return;
    if (!f.deferTo(candidate, this.tracker, this.silence) || this.role !== 'preCandidate') return;
    this.role = 'follower';
    this.tracker.resetVotes();
  }

  /** A follower heard its leader: the election clocks restart and a failover report is moot. */
  private heardLeader(from: NodeId): void {
    this.electionElapsed = 0;
    this.silence = 0;
    this.forgetFailedLeader();
    this.leader = from;
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.heardLeader(m.from);
        this.handleAppend(m);
        return;
      case 'hb':
        this.heardLeader(m.from);
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.heardLeader(m.from);
        this.handleSnapshot(m);
        return;
      case 'timeoutNow':
        // Campaign at once, skipping PreVote and overriding stickiness. The term increment
        // happens inside this step, so heartbeats the outgoing leader sent in the meantime are
        // stale on arrival and cannot cancel the election (the PySyncObj PR #200 bug).
        if (this.leader === NONE || m.from === this.leader) this.hup(true);
        return;
      case 'transferLeader':
        if (this.leader !== NONE) this.send({ type: 'transferLeader', to: this.leader, target: m.target });
        return;
      case 'readIndex':
        this.send({ type: 'readIndexResp', to: m.from, ctx: m.ctx, index: 0 });
        return;
      case 'readIndexResp':
        if (m.index > 0) this.readStates = append(this.readStates, { index: m.index, ctx: m.ctx });
        else this.droppedReads = append(this.droppedReads, m.ctx);
        return;
      default:
        return;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Replication

  private handleAppend(m: MsgApp): void {
    if (m.index < this.log.committed) {
      this.appResp(m.from, this.log.committed, false, 0, 0);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== null) {
      this.appResp(m.from, lastNew, false, 0, 0);
      return;
    }
    // Reject with a hint: the last index at or below m.index whose term is <= m.logTerm, so the
    // leader can skip every entry of a conflicting term in one round trip.
    const hintIndex = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    const hintTerm = this.log.termOf(hintIndex) ?? 0;
    this.appResp(m.from, m.index, true, hintIndex, hintTerm);
  }

  private handleHeartbeat(m: MsgHeartbeat): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    if (m.quiesce) {
      followerQuiesce(this, m.commit);
      return; // no reply: it would wake the leader again
    }
    this.msgsNow = append(this.msgsNow, {
      type: 'hbResp',
      group: this.group,
      from: this.id,
      to: m.from,
      term: this.term,
      ctx: m.ctx,
      seq: m.seq,
    });
  }

  private handleSnapshot(m: MsgSnap): void {
    const s = m.snapshot;
    if (this.restore(s)) {
      this.send({ type: 'appResp', to: m.from, index: this.log.lastIndex(), reject: false, hintIndex: 0, hintTerm: 0 });
    } else {
      this.send({ type: 'appResp', to: m.from, index: this.log.committed, reject: false, hintIndex: 0, hintTerm: 0 });
    }
  }

  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.tracker.setConf(s.meta.conf, this.log.lastIndex() + 1);
    this.confChanged = true;
    return true;
  }

  private handleAppResp(m: MsgAppResp, pr: Progress): void {
    pr.recentActive = true;
    if (!m.reject) pr.ackedSinceHeartbeat = true;
    pr.unreachable = false;
    if (m.reject) {
      let next = m.hintIndex;
      if (m.hintTerm > 0) next = this.log.findConflictByTerm(m.hintIndex, m.hintTerm);
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    // An ack beyond our log cannot be honest (or is from a log we have since truncated).
    if (m.index > this.log.lastIndex()) return;
    const wasPaused = pr.isPaused();
    pr.ticksSinceAck = 0;
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') pr.freeInflightsLE(m.index);

    if (this.maybeCommit() && this.bcastCommit) this.bcastAppend(true);
    else if (wasPaused) this.sendAppend(m.from, false);
    // Pipeline: keep the window full.
    while (this.sendAppend(m.from, false)) {
      /* fill */
    }

    if (this.transfer && m.from === this.transfer.target && pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(m.from);
    }
    quiesceIfCaughtUp(this);
  }

  private handleHeartbeatResp(m: MsgHeartbeatResp, pr: Progress): void {
    pr.recentActive = true;
    pr.unreachable = false;
    pr.probeSent = false;
    // Only sequence numbers we actually sent can date a lease.
    if (m.seq > pr.ackedSeq && m.seq <= this.leaderTicks) pr.ackedSeq = m.seq;
    if (pr.state === 'replicate' && pr.inflightsFull()) pr.freeFirstInflight();
    if (pr.state === 'replicate' && pr.match < this.log.lastIndex() && pr.ticksSinceAck >= LOST_APPEND_TICKS) {
      // The follower answers heartbeats but has acked none of our appends for a while: they were
      // lost (the follower cannot know). Probe from its match index instead of waiting.
      pr.becomeProbe();
      pr.ticksSinceAck = 0;
    }
    // In probe state an empty probe is still worth sending: it is how a follower that lost our
    // last probe (or a snapshot) learns where to resume.
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, pr.state === 'probe');
    if (m.ctx) {
      const released = this.reads?.ack(m.ctx, m.from, (acks) => this.hasQuorum(acks)) ?? NOTHING;
      if (this.reads?.size === 0) this.reads = null;
      for (const r of released) this.releaseRead(r, r.index);
    }
  }

  private hasQuorum(ids: ReadonlySet<NodeId>): boolean {
    let n = 0;
    for (const v of this.tracker.voters) if (ids.has(v)) n++;
    return n >= this.tracker.quorum();
  }

  /** Send the next append (or snapshot) to `to`. Returns true if something was sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progressOf(to);
    if (!pr || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.termOf(prevIndex);
    let entries: Entry[] = [];
    let needSnapshot = prevTerm === null;
    if (!needSnapshot) {
      try {
        entries = this.log.entries(pr.next, this.log.lastIndex() + 1, this.cfg.maxMsgBytes);
      } catch (e) {
        if (e instanceof RaftError && e.code === 'Compacted') needSnapshot = true;
        else throw e;
      }
    }
    if (needSnapshot) return this.sendSnapshot(to, pr);
    // An empty append is still worth sending when it tells the follower a newer commit index
    // (unless commit indexes ride on later appends and heartbeats only).
    if (entries.length === 0 && !sendIfEmpty && !(this.bcastCommit && pr.canBumpCommit(this.log.committed)))
      return false;
    this.msgsNow = append(this.msgsNow, {
      type: 'app',
      group: this.group,
      from: this.id,
      to,
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm as number,
      commit: this.log.committed,
      entries,
    });
    pr.appendedSinceHeartbeat = true;
    pr.sentEntries(entries.length > 0 ? entries[entries.length - 1].index : prevIndex, entries.length);
    pr.sentCommit = Math.max(pr.sentCommit, this.log.committed);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    const snapshot = this.log.storage.snapshot();
    if (snapshot.meta.index === 0)
      throw new RaftError('Invariant', `log compacted but storage has no snapshot (to ${to})`);
    pr.becomeSnapshot(snapshot.meta.index);
    this.send({ type: 'snap', to, snapshot });
    return true;
  }

  /** Send every follower what it lacks; with `probe`, an empty append to those that lack
   *  nothing (after an election or a membership change). */
  private bcastAppend(probe: boolean): void {
    for (const pr of this.tracker.progress) if (pr.id !== this.id) this.sendAppend(pr.id, probe);
  }

  /** `periodic`: the tick's heartbeat, which a follower in replicate state does not need when it
   *  got and answered an append since the last heartbeat, or has appends in flight sent less than
   *  LOST_APPEND_TICKS ago (the append reset its election clock and carried the commit
   *  index; the answers keep the leader's quorum check alive; a follower that stopped answering
   *  gets heartbeats again after LOST_APPEND_TICKS, which is how lost appends are noticed and a
   *  deposed leader learns the new term). Under load this removes most heartbeat traffic of
   *  thousands of groups, also while slow round trips keep appends in flight for several ticks.
   *  Never skipped for reads (the round confirms leadership) or with lease reads (the lease is
   *  extended by heartbeat acks). */
  private bcastHeartbeat(ctx: string, periodic = false): void {
    const mayCoast = periodic && this.cfg.coastHeartbeats && ctx === '' && !this.cfg.leaseReads;
    for (const pr of this.tracker.progress) {
      const id = pr.id;
      if (id === this.id) continue;
      const coast =
        mayCoast &&
        pr.state === 'replicate' &&
        ((pr.appendedSinceHeartbeat && pr.ackedSinceHeartbeat) ||
          (pr.inflightCount() > 0 && pr.ticksSinceAck < LOST_APPEND_TICKS));
      pr.appendedSinceHeartbeat = false;
      pr.ackedSinceHeartbeat = false;
      if (coast) continue;
      const commit = Math.min(pr.match, this.log.committed);
      pr.sentCommit = Math.max(pr.sentCommit, commit);
      this.msgsNow = append(this.msgsNow, {
        type: 'hb',
        group: this.group,
        from: this.id,
        to: id,
        term: this.term,
        commit,
        ctx,
        seq: this.leaderTicks,
        quiesce: false,
      });
    }
  }

  private maybeCommit(): boolean {
    const mci = this.tracker.committedIndex();
    // Raft §5.4.2: only entries of the current term are committed by counting replicas.
    if (mci <= this.log.committed || this.log.termOf(mci) !== this.term) return false;
    this.log.commitTo(mci);
    while (this.uncommitted.length > 0 && this.uncommitted[0][0] <= mci) {
      this.uncommittedBytes -= this.uncommitted.shift()![1];
    }
    if (this.uncommitted.length === 0) this.uncommitted = NOTHING; // frees the backing store
    if (this.readsBeforeCommit.length > 0) {
      const waiting = this.readsBeforeCommit;
      this.readsBeforeCommit = NOTHING;
      for (const r of waiting) this.handleReadRequest(r.ctx, r.from, r.lease);
    }
    return true;
  }

  private appendEntries(entries: Entry[]): number {
    let index = this.log.lastIndex();
    const stamped = entries.map((e) => ({ index: ++index, term: this.term, type: e.type, data: e.data }));
    this.log.append(stamped);
    this.pendingBroadcast = true;
    return index;
  }

  /** The host made the hard state of `term` durable: a candidate of that term now counts the
   *  vote it gave itself, and may win with it. */
  onVoteDurable(term: number): void {
    if (!this.awaitingOwnVote || this.role !== 'candidate' || this.term !== term || this.vote !== this.id) return;
    this.awaitingOwnVote = false;
    this.tracker.recordVote(this.id, true);
    const r = this.tracker.tally();
    if (r === 'won') this.winElection();
    else if (r === 'lost') this.becomeFollower(this.term, NONE);
  }

  private winElection(): void {
    this.becomeLeader();
    this.bcastAppend(true);
  }

  /** Called by RaftNode once the host persisted entries up to the log's stable index. */
  onPersisted(): void {
    if (this.role !== 'leader') return;
    const self = this.tracker.progressOf(this.id);
    if (self?.maybeUpdate(this.log.stableLastIndex()) && this.maybeCommit() && this.bcastCommit)
      this.pendingBroadcast = true;
    quiesceIfCaughtUp(this);
  }

  /** Appends or probes are waiting for the next Ready. */
  broadcastPending(): boolean {
    return (this.pendingBroadcast || this.pendingProbe) && this.role === 'leader';
  }

  flushBroadcast(): void {
    if (!this.pendingBroadcast && !this.pendingProbe) return;
    const probe = this.pendingProbe || this.bcastCommit;
    this.pendingBroadcast = false;
    this.pendingProbe = false;
    if (this.role === 'leader') this.bcastAppend(probe);
  }

  // ------------------------------------------------------------------------------------------
  // Local requests

  propose(data: Uint8Array): ProposeResult {
    return this.proposeEntry('normal', data);
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    if (this.role !== 'leader') return { ok: false, reason: 'NotLeader', leader: this.leader };
    if (this.pendingConfIndex > this.log.applied) return { ok: false, reason: 'ConfChangeInProgress' };
    // Every earlier conf entry is applied (pendingConfIndex), so the tracker holds the membership
    // this change applies to and the result recorded in the entry is exact.
    const current = this.tracker.conf();
    const why = validateConfChange(current, cc);
    if (why) return { ok: false, reason: 'InvalidConfChange', detail: why };
    const r = this.proposeEntry('conf', encodeConfChange(cc, applyConfChange(current, cc)));
    if (r.ok) this.pendingConfIndex = r.index;
    return r;
  }

  private proposeEntry(type: 'normal' | 'conf', data: Uint8Array): ProposeResult {
    if (this.role !== 'leader') return { ok: false, reason: 'NotLeader', leader: this.leader };
    if (this.transfer) return { ok: false, reason: 'TransferInProgress', target: this.transfer.target };
    if (this.leaving) return { ok: false, reason: 'NotLeader', leader: NONE };
    if (data.byteLength > this.cfg.maxProposalBytes)
      return { ok: false, reason: 'TooLarge', limit: this.cfg.maxProposalBytes };
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + data.byteLength > this.cfg.maxUncommittedBytes) {
      return { ok: false, reason: 'Overloaded', limit: this.cfg.maxUncommittedBytes };
    }
    if (this.quiesced) unquiesce(this);
    const index = this.appendEntries([{ index: 0, term: 0, type, data }]);
    this.uncommitted = append(this.uncommitted, [index, data.byteLength]);
    this.uncommittedBytes += data.byteLength;
    return { ok: true, index, term: this.term };
  }

  transferLeader(target: NodeId): TransferRequestResult {
    if (this.role !== 'leader') {
      if (this.leader !== NONE && this.role === 'follower') {
        this.send({ type: 'transferLeader', to: this.leader, target });
        return { ok: true, started: true };
      }
      return { ok: false, reason: 'NotLeader', leader: this.leader };
    }
    if (target === this.id) return { ok: false, reason: 'TargetIsSelf', leader: this.id };
    if (!this.tracker.isMember(target)) return { ok: false, reason: 'TargetNotMember', leader: this.id };
    if (this.tracker.isLearner(target)) return { ok: false, reason: 'TargetIsLearner', leader: this.id };
    if (this.confChangePending()) return { ok: false, reason: 'ConfChangeInProgress', leader: this.id };
    if (this.quiesced) unquiesce(this);
    if (this.transfer) {
      if (this.transfer.target === target) return { ok: true, started: false };
      this.endTransfer('aborted', 'Superseded');
    }
    this.transfer = { target, elapsed: 0, sentAt: -1 };
    const pr = this.tracker.progressOf(target)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target, true);
    return { ok: true, started: true };
  }

  /** A leaving leader transfers to the remaining voter with the highest match index. */
  private handOver(): void {
    if (this.transfer) return;
    let best: NodeId = NONE;
    let bestMatch = -1;
    for (const id of this.tracker.voters) {
      const pr = this.tracker.progressOf(id);
      if (pr && id !== this.id && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best === NONE) return;
    this.transfer = { target: best, elapsed: 0, sentAt: -1 };
    const pr = this.tracker.progressOf(best)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(best);
    else this.sendAppend(best, true);
  }

  private sendTimeoutNow(to: NodeId): void {
    // The target's campaign overrides stickiness, which is what a lease relies on.
    this.leaseRevoked = true;
    if (this.transfer && this.transfer.sentAt < 0) this.transfer.sentAt = this.transfer.elapsed; // the first one: the grace never moves
    this.transferTerm = this.term + 1;
    this.send({ type: 'timeoutNow', to });
  }

  /** Is a conf entry appended but not yet applied? (A new leader's pendingConfIndex is only a
   *  conservative bound; transfers need the exact answer.) */
  private confChangePending(): boolean {
    return this.pendingConfIndex > this.log.applied && this.confEntryAfterApplied(this.log.lastIndex());
  }

  private endTransfer(status: 'completed' | 'aborted', reason?: TransferAbortReason): void {
    const t = this.transfer;
    if (!t) return;
    this.transfer = null;
    if (status === 'completed') {
      this.transferOutcomes = append(this.transferOutcomes, {
        target: t.target,
        term: this.term,
        ticks: t.elapsed,
        status,
      });
    } else {
      this.transferOutcomes = append(this.transferOutcomes, {
        target: t.target,
        term: this.term,
        ticks: t.elapsed,
        status,
        reason: reason ?? 'Timeout',
      });
    }
  }

  /** Was the election of `term` started by a leader transfer (as far as this replica saw)? */
  electedByTransfer(term: number): boolean {
    return this.transferTerm === term;
  }

  /** Leader with an entry of its own term committed: a quorum accepted this leadership and the
   *  commit index is current (what a transfer's target reports to confirm it took over). */
  leadsWithCommittedTerm(): boolean {
    return this.role === 'leader' && this.log.termOf(this.log.committed) === this.term;
  }

  /** `lease`: with leaseReads configured, a leader may answer from its lease (no heartbeat
   *  round). Followers always forward, and forwarded reads always take a heartbeat round. */
  readIndex(ctx: string, lease = true): ReadRequestResult {
    if (ctx.length === 0) throw new RaftError('InvalidArgument', 'read ctx must be non-empty');
    if (this.role === 'leader') {
      if (this.quiesced) unquiesce(this);
      this.handleReadRequest(ctx, this.id, lease);
      return { ok: true };
    }
    if (this.leader !== NONE && this.role === 'follower') {
      this.send({ type: 'readIndex', to: this.leader, ctx });
      return { ok: true };
    }
    return { ok: false, reason: 'NoLeader', leader: this.leader };
  }

  private handleReadRequest(ctx: string, from: NodeId, lease: boolean): void {
    if (this.log.termOf(this.log.committed) !== this.term) {
      // Until an entry of this term commits, the leader's commit index may be stale (§6.4 step 1).
      this.readsBeforeCommit = append(this.readsBeforeCommit, { ctx, from, lease });
      return;
    }
    const index = this.log.committed;
    if (this.tracker.voters.length === 1 && this.tracker.isVoter(this.id)) {
      this.releaseRead({ ctx, index, from, acks: new Set() }, index);
      return;
    }
    if (lease && this.cfg.leaseReads && this.leaseValid()) {
      this.releaseRead({ ctx, index, from, acks: new Set() }, index);
      return;
    }
    this.reads ??= new ReadIndexQueue();
    if (this.reads.add(ctx, index, from, this.id)) this.bcastHeartbeat(ctx);
  }

  /** A quorum acknowledged a heartbeat sent recently enough that none of them can have voted
   *  for anyone else yet (they refuse votes for electionTicks after hearing from us). */
  private leaseValid(): boolean {
    if (this.leaseRevoked || this.transfer) return false;
    const acked = this.tracker.quorumValue((id, pr) => (id === this.id ? this.leaderTicks : pr.ackedSeq));
    return acked > this.leaderTicks - (this.cfg.electionTicks - this.cfg.leaseMarginTicks);
  }

  private releaseRead(r: PendingRead, index: number): void {
    if (r.from === this.id) {
      if (index > 0) this.readStates = append(this.readStates, { index, ctx: r.ctx });
      else this.droppedReads = append(this.droppedReads, r.ctx);
    } else {
      this.send({ type: 'readIndexResp', to: r.from, ctx: r.ctx, index });
      // The follower serves the read once it has applied `index`: with no commit broadcast it
      // might otherwise learn that commit only at the next heartbeat.
      const pr = this.tracker.progressOf(r.from);
      if (!this.bcastCommit && index > 0 && pr && pr.sentCommit < index) this.sendAppend(r.from, true);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Membership

  /** Apply a committed conf entry (called as it is handed to the host). Idempotent. */
  applyConfEntry(e: Entry): void {
    let conf: ConfState;
    try {
      conf = decodeConfChange(e.data).conf;
    } catch {
      return; // validated at proposal time; a corrupt entry is skipped rather than crash the group
    }
    this.tracker.setConf(conf, this.log.lastIndex() + 1);
    this.confChanged = true;
    if (this.transfer && !this.tracker.isVoter(this.transfer.target)) this.endTransfer('aborted', 'TargetRemoved');
    if (this.role === 'leader') {
      if (!this.tracker.isVoter(this.id)) {
        // Removed or demoted. Stepping down at once can deadlock the group: the remaining voters
        // may not know the removal committed (their config still counts us) and our longer log
        // would refuse their votes. Instead keep replicating (we no longer count to quorum),
        // refuse proposals, and hand leadership to the most caught-up remaining voter.
        this.leaving = true;
        this.handOver();
        this.pendingProbe = true;
        return;
      }
      const self = this.tracker.progressOf(this.id);
      if (self && self.match === 0) {
        self.maybeUpdate(this.log.stableLastIndex());
        self.becomeReplicate();
      }
      this.maybeCommit();
      this.pendingProbe = true;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Quiescence and liveness hooks

  /** Reads are waiting for a heartbeat round or for this leader's first commit. */
  readsPending(): boolean {
    return this.reads !== null || this.readsBeforeCommit.length > 0;
  }

  /** Wake a quiesced group (e.g. the host has work for it). A leader heartbeats at once. */
  wake(): void {
    if (!this.quiesced) return;
    unquiesce(this);
    if (this.role === 'leader') this.bcastHeartbeat('');
  }

  /** The host's node-liveness layer says our leader's node is down. A quiesced follower restarts
   *  its election clock from zero (so a lease the leader may still hold expires first), and a
   *  voter plans a fast failover (see failover.ts). */
  leaderUnreachable(): void {
    if (this.role !== 'follower') return;
    if (this.quiesced) unquiesce(this);
    if (this.leader === NONE || !this.tracker.isVoter(this.id)) return;
    this.failover = FailoverPlan.start(
      this.group,
      this.id,
      this.leader,
      this.tracker,
      this.cfg.leaseReads,
      this.cfg.electionTicks,
    );
  }

  /** The host could not reach `id` (connection down, send failed). */
  reportUnreachable(id: NodeId): void {
    const pr = this.tracker.progressOf(id);
    if (this.role !== 'leader' || !pr || id === this.id) return;
    pr.unreachable = true;
    if (pr.state === 'replicate') pr.becomeProbe();
  }

  /** The host finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.tracker.progressOf(id);
    if (this.role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true; // wait for the follower's reply (or a heartbeat reply) before probing
  }

  // ------------------------------------------------------------------------------------------

  /** An append response: it promises our log, so it leaves after the persist. */
  private appResp(to: NodeId, index: number, reject: boolean, hintIndex: number, hintTerm: number): void {
    this.msgsAfterPersist = append(this.msgsAfterPersist, {
      type: 'appResp',
      group: this.group,
      from: this.id,
      to,
      term: this.term,
      index,
      reject,
      hintIndex,
      hintTerm,
    });
  }

  private send(m: Outgoing): void {
    const full = { ...m, group: this.group, from: this.id, term: m.term ?? this.term } as Message;
    if (SEND_BEFORE_PERSIST.has(full.type)) this.msgsNow = append(this.msgsNow, full);
    else this.msgsAfterPersist = append(this.msgsAfterPersist, full);
  }

  /** Lowest log index a leader still needs in order to feed its recently active followers by
   *  appends rather than snapshots (Infinity when it is not the leader, or has no such peer). */
  compactionFloor(): number {
    if (this.role !== 'leader') return Infinity;
    let floor = Infinity;
    for (const pr of this.tracker.progress) {
      if (pr.id !== this.id && pr.recentActive && !pr.unreachable) floor = Math.min(floor, pr.match + 1);
    }
    return floor;
  }

  /** Leader only: entries each peer lacks (last index - match), the balancer's "caught up" test
   *  without the cost of a full status(). */
  peerLag(): Record<NodeId, number> | null {
    if (this.role !== 'leader') return null;
    const last = this.log.lastIndex();
    const out: Record<NodeId, number> = {};
    for (const pr of this.tracker.progress) if (pr.id !== this.id) out[pr.id] = last - pr.match;
    return out;
  }

  status(): RaftStatus {
    const progress: Record<NodeId, PeerStatus> = {};
    if (this.role === 'leader') {
      for (const pr of this.tracker.progress) {
        progress[pr.id] = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          inflight: pr.inflightCount(),
          learner: pr.isLearner,
        };
      }
    }
    return {
      id: this.id,
      group: this.group,
      role: this.role,
      leader: this.leader,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      quiesced: this.quiesced,
      transferTarget: this.transfer?.target ?? null,
      conf: this.tracker.conf(),
      progress,
    };
  }
}
