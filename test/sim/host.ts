// One simulated server hosting one replica: the RaftNode, the durable storage it would find after
// a crash, the in-memory state machine, and the client bookkeeping (proposals waiting to be
// acknowledged, reads waiting to be served). Implements the host contract of node.ts step by step,
// with crash points between the steps of a Ready.
import type { RaftConfig } from '../../src/raft/config.js';
import { RaftNode } from '../../src/raft/node.js';
import { seededRandom } from '../../src/raft/rand.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  NodeId,
  ProposeResult,
  ReadRequestResult,
  ReadState,
  Ready,
  Role,
  Snapshot,
  TransferOutcome,
  TransferRequestResult,
} from '../../src/raft/types.js';
import type { Checker } from './checker.js';
import { entryKey } from './hash.js';
import { mixSeed, type Rng } from './rng.js';
import { StateMachine } from './statemachine.js';
import type { Tracer } from './trace.js';

/** Where inside a Ready a crash lands; everything after it is lost. */
export type CrashPoint = 'beforeSend' | 'afterSend' | 'afterPersist' | 'afterPersistSend' | 'afterApply';
export const CRASH_POINTS: readonly CrashPoint[] = [
  'beforeSend',
  'afterSend',
  'afterPersist',
  'afterPersistSend',
  'afterApply',
];

/** Which Ready an armed crash waits for: the dangerous windows are around votes, appends,
 *  commits and snapshots, so the driver aims at them instead of hoping to land there. */
export type CrashTrigger = 'any' | 'vote' | 'entries' | 'commit' | 'snapshot';
export const CRASH_TRIGGERS: readonly CrashTrigger[] = ['any', 'vote', 'entries', 'commit', 'snapshot'];

export interface ArmedCrash {
  readonly point: CrashPoint;
  readonly trigger: CrashTrigger;
  /** Restart at once from durable state (a process that dies and is restarted by its supervisor). */
  readonly reboot: boolean;
}

/** Deliberately broken host behaviours, for proving that the checker can fail. */
export interface Hooks {
  /** On crash the "disk" loses the last few log entries it claimed were durable. */
  readonly lyingDisk?: boolean;
  /** On restart the node forgets whom it voted for in its current term. */
  readonly forgetVote?: boolean;
  /** The transport silently loses vote requests of transfer campaigns (breaks transfer liveness). */
  readonly dropTransferVotes?: boolean;
}

export type RaftOptions = Omit<RaftConfig, 'id' | 'group' | 'storage' | 'random' | 'applied'>;

/** What a host needs from the simulation around it. */
export interface HostEnv {
  readonly seed: number;
  readonly group: number;
  readonly checker: Checker;
  readonly trace: Tracer;
  readonly rng: Rng;
  readonly hooks: Hooks;
  readonly raftOptions: RaftOptions;
  readonly bootstrapConf: ConfState;
  /** Puts a message on the wire; false if the link is known down (the host's send fails). */
  send(from: Host, m: Message): boolean;
  onTransferOutcome(host: Host, t: TransferOutcome): void;
  onRole(host: Host, role: Role, term: number): void;
}

interface PendingProposal {
  readonly term: number;
  readonly key: number;
  readonly label: string;
}

const ROLE_CODE: Record<Role, number> = { follower: 0, preCandidate: 1, candidate: 2, leader: 3 };

export class Host {
  durable: MemoryStorage;
  node: RaftNode | null = null;
  sm: StateMachine;
  incarnation = 0;
  armedCrash: ArmedCrash | null = null;
  /** A frozen process (GC pause, stalled VM): no ticks until then, messages wait in its buffers. */
  pausedUntil = 0;
  /** Ticks that fell due while frozen: the host contract replays them, from its monotonic clock,
   *  before it handles anything that arrived meanwhile (a lease must see the time that passed). */
  missedTicks = 0;
  private proposals = new Map<number, PendingProposal>();
  private pendingReads: ReadState[] = [];
  private unreachable: NodeId[] = [];
  private lastRole: Role | null = null;
  private lastTerm = -1;
  private lastLeaderTerm = -1;

  constructor(
    readonly id: NodeId,
    /** Small integer identity for fingerprints and per-node random streams. */
    readonly num: number,
    private readonly env: HostEnv,
    /** Membership the replica's storage starts with: the bootstrap one for founding members; for
     *  a node added later either that or empty (it learns the membership from the log). */
    initialConf: ConfState,
  ) {
    this.durable = new MemoryStorage(initialConf);
    this.sm = StateMachine.bootstrap(env.bootstrapConf);
    this.boot();
  }

  get up(): boolean {
    return this.node !== null;
  }

  get role(): Role | null {
    return this.node ? this.node.inspect().role : null;
  }

  // --- lifecycle -------------------------------------------------------------------------------

  /** Builds a RaftNode from durable state only, as a process starting up would. */
  private boot(): void {
    this.missedTicks = 0; // a new process owes no ticks of the old one
    this.incarnation++;
    const snap = this.durable.snapshot();
    this.sm = StateMachine.fromSnapshot(snap, this.env.bootstrapConf);
    if (snap.meta.index > 0) this.env.checker.onRestore(this.id, snap.meta.index, snap.meta.term, this.sm.hash);
    this.node = new RaftNode({
      ...this.env.raftOptions,
      id: this.id,
      group: this.env.group,
      storage: this.durable,
      random: seededRandom(mixSeed(this.env.seed, this.num, this.incarnation)),
      applied: this.sm.applied,
    });
    this.lastRole = null;
    this.lastTerm = -1;
    this.observe();
  }

  crash(why: string): void {
    if (!this.node) return;
    this.env.trace.line(() => `CRASH ${this.id} (${why})`);
    this.env.trace.mark(90, this.num, this.incarnation);
    this.node = null;
    this.held = null; // its write never reached the disk
    this.armedCrash = null;
    this.pausedUntil = 0;
    // Clients waiting on this process lose their answers; nothing is acknowledged for them.
    this.proposals.clear();
    this.pendingReads = [];
    this.unreachable = [];
  }

  restart(): void {
    if (this.node) return;
    // A fresh copy: nothing the dead process held in memory can leak into the new one.
    this.durable = this.durable.clone();
    if (this.env.hooks.lyingDisk) this.loseUnsyncedTail();
    if (this.env.hooks.forgetVote) {
      this.durable.setHardState({ ...this.durable.hardState, vote: '' });
    }
    this.boot();
    this.env.trace.line(
      () =>
        `RESTART ${this.id} inc=${this.incarnation} term=${this.durable.hardState.term} vote=${this.durable.hardState.vote || '-'} applied=${this.sm.applied} last=${this.durable.lastIndex()}`,
    );
    this.env.trace.mark(91, this.num, this.incarnation);
  }

  /** Test hook: a disk that acknowledged writes it never made durable loses the last 1-3 entries
   *  (and the vote that came with them). Real storage must never do this. */
  private loseUnsyncedTail(): void {
    const d = this.durable;
    const snapIndex = d.snapshot().meta.index;
    const keepTo = Math.max(snapIndex, d.lastIndex() - this.env.rng.int(1, 3));
    const fresh = new MemoryStorage(d.conf);
    if (snapIndex > 0) fresh.applySnapshot(d.snapshot());
    if (keepTo > snapIndex) fresh.append(d.entries(snapIndex + 1, keepTo + 1, Number.MAX_SAFE_INTEGER));
    fresh.conf = d.conf;
    fresh.setHardState({ term: d.hardState.term, vote: '', commit: Math.min(d.hardState.commit, keepTo) });
    this.durable = fresh;
  }

  // --- inputs: each is followed by draining every Ready it produced ---------------------------

  tick(elapsed = 1): void {
    this.node!.tick(elapsed);
    this.drain();
  }

  deliver(m: Message): void {
    const r = this.node!.step(m);
    if (!r.ok) this.env.trace.line(() => `${this.id} rejected ${m.type} from ${m.from}: ${r.reason}`);
    this.drain();
  }

  propose(data: Uint8Array, label: string): ProposeResult {
    const r = this.node!.propose(data);
    if (r.ok) this.proposals.set(r.index, { term: r.term, key: entryKey('normal', data), label });
    this.drain();
    return r;
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    const r = this.node!.proposeConfChange(cc);
    this.drain();
    return r;
  }

  readIndex(ctx: string): ReadRequestResult {
    const r = this.node!.readIndex(ctx);
    this.drain();
    return r;
  }

  transferLeader(target: NodeId): TransferRequestResult {
    const r = this.node!.transferLeader(target);
    this.drain();
    return r;
  }

  campaign(): void {
    this.node!.campaign();
    this.drain();
  }

  wake(): void {
    this.node!.wake();
    this.drain();
  }

  leaderUnreachable(): void {
    this.node!.leaderUnreachable();
    this.drain();
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    this.node!.reportSnapshot(to, ok);
    this.drain();
  }

  /** Host-initiated log compaction: snapshot the state machine at its applied index and drop
   *  the log up to `keep` entries before it. */
  compact(keep: number): boolean {
    const at = this.sm.applied;
    if (at <= this.durable.snapshot().meta.index) return false;
    this.durable.createSnapshot(at, this.sm.conf, this.sm.image());
    this.durable.compact(Math.max(at - keep, this.durable.firstIndex() - 1));
    this.env.trace.line(() => `COMPACT ${this.id} snapshot@${at} first=${this.durable.firstIndex()}`);
    this.env.trace.mark(92, this.num, at);
    return true;
  }

  // --- the Ready loop --------------------------------------------------------------------------

  /** A pipelining host (maxReadiesInFlight 2): the Ready handed out and sent, whose write is
   *  still in flight. It completes at the next drain, after the next Ready (if any) was handed
   *  out: so inputs arrive, and new Readies are made, while a write is pending. */
  private held: { rd: Ready; at: CrashPoint | null } | null = null;

  drain(): void {
    let rounds = 0;
    const node0 = this.node;
    // A held write may stay in flight across this input (as on a real host, messages arrive
    // while a write is being made durable: a candidate hears votes before its own vote is on
    // disk), but not across many: it completes now with probability 0.6.
    let finishHeld = this.held !== null && this.env.rng.chance(0.6);
    while (this.node && this.node === node0 && (this.node.hasReady() || finishHeld)) {
      if (++rounds > 10_000) throw new Error(`${this.id}: hasReady() never settles`);
      const older = this.held;
      this.held = null;
      let fresh: { rd: Ready; at: CrashPoint | null } | null = null;
      if (this.node.hasReady()) {
        fresh = this.handOut(this.node);
        if (fresh === null) return; // crashed while sending
      }
      if (older && !this.finish(older)) return;
      finishHeld = false;
      if (fresh && this.node && this.pipelined && this.env.rng.chance(0.5)) this.held = fresh;
      else if (fresh && !this.finish(fresh)) return;
      if (this.node && this.unreachable.length > 0) {
        const ids = this.unreachable;
        this.unreachable = [];
        for (const id of ids) this.node.reportUnreachable(id);
      }
    }
    this.observe();
  }

  private get pipelined(): boolean {
    return (this.env.raftOptions.maxReadiesInFlight ?? 1) > 1;
  }

  /** Crash here if armed for this point on this Ready; true when it did (the rest is lost). */
  private dies(at: CrashPoint | null, point: CrashPoint, what: string): boolean {
    const armed = this.armedCrash;
    if (at !== point || !armed) return false;
    this.crash(`mid-ready on a ${armed.trigger} Ready: ${what}`);
    if (armed.reboot) this.restart();
    return true;
  }

  /** Steps 1 of the host contract: take the Ready, send what may leave before the write. */
  private handOut(node: RaftNode): { rd: Ready; at: CrashPoint | null } | null {
    this.observe();
    const rd = node.ready();
    // ready() applies conf entries to the tracker, which can depose a leader that removed itself.
    this.observe();
    const armed = this.armedCrash;
    const at = armed && triggered(armed.trigger, rd, this.durable.hardState) ? armed.point : null;
    if (this.dies(at, 'beforeSend', 'nothing done')) return null;
    // (1) Messages that do not depend on this batch being durable.
    this.sendAll(rd.messages);
    if (this.dies(at, 'afterSend', 'sent but not persisted')) return null;
    return { rd, at };
  }

  /** Steps 2-5: persist, send what waited for it, apply, advance. False if it crashed. */
  private finish({ rd, at }: { rd: Ready; at: CrashPoint | null }): boolean {
    const node = this.node!;
    const dies = (point: CrashPoint, what: string) => this.dies(at, point, what);
    // (2) Persist atomically.
    this.persist(rd);
    if (dies('afterPersist', 'persisted, acks not sent')) return false;
    // (3) Messages that promise durability.
    this.sendAll(rd.messagesAfterPersist);
    if (dies('afterPersistSend', 'acks sent, nothing applied')) return false;
    // (4) Apply, serve reads, record outcomes.
    if (rd.snapshot) this.restoreFrom(rd.snapshot);
    for (const e of rd.committed) this.apply(e);
    for (const rs of rd.readStates) this.pendingReads.push(rs);
    this.serveReads();
    for (const ctx of rd.droppedReads) this.env.trace.line(() => `${this.id} read ${ctx} dropped`);
    for (const t of rd.transfers) this.env.onTransferOutcome(this, t);
    if (dies('afterApply', 'applied, advance() not called')) return false;
    // (5)
    node.advance();
    return true;
  }

  private sendAll(ms: readonly Message[]): void {
    for (const m of ms) {
      if (this.env.hooks.dropTransferVotes && m.type === 'vote' && m.transfer) continue;
      if (!this.env.send(this, m) && this.node?.inspect().role === 'leader') this.unreachable.push(m.to);
    }
  }

  private persist(rd: Ready): void {
    const d = this.durable;
    const c = this.env.checker;
    if (rd.snapshot) d.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) {
      let prevTerm = termAt(d, rd.entries[0].index - 1);
      for (const e of rd.entries) {
        c.onPersist(this.id, e, entryKey(e.type, e.data), prevTerm);
        prevTerm = e.term;
      }
      d.append(rd.entries);
    }
    if (rd.hardState) {
      // A Ready that only moves the commit index need not be durable (mustSync false): a real
      // host writes it lazily. Model the worst case at random: sometimes it never reaches the
      // disk before the next crash.
      if (rd.mustSync || this.env.rng.int(0, 1) === 0) {
        c.onHardState(this.id, rd.hardState);
        d.setHardState(rd.hardState);
      }
    }
    if (rd.conf) d.conf = rd.conf;
  }

  private restoreFrom(s: Snapshot): void {
    this.sm = StateMachine.fromSnapshot(s, this.env.bootstrapConf);
    this.env.checker.onRestore(this.id, s.meta.index, s.meta.term, this.sm.hash);
    for (const i of [...this.proposals.keys()]) if (i <= s.meta.index) this.proposals.delete(i);
    this.env.trace.line(() => `${this.id} restored snapshot@${s.meta.index} term ${s.meta.term}`);
    this.env.trace.mark(93, this.num, s.meta.index);
  }

  private apply(e: Entry): void {
    if (e.index !== this.sm.applied + 1) {
      this.env.checker.violate(
        'state-machine-safety',
        `${this.id} was handed entry ${e.index} to apply after ${this.sm.applied}`,
      );
    }
    const key = this.sm.apply(e);
    this.env.checker.onApply(this.id, this.node?.inspect().term ?? 0, e, key, this.sm.hash);
    this.env.trace.mark(94, this.num, e.index, key);
    const p = this.proposals.get(e.index);
    if (p === undefined) return;
    this.proposals.delete(e.index);
    if (p.term !== e.term) {
      this.env.trace.line(
        () => `${this.id} proposal ${p.label} at ${e.index} lost (term ${p.term} replaced by ${e.term})`,
      );
      return;
    }
    if (p.key !== key) {
      this.env.checker.violate(
        'log-matching',
        `${this.id} applied a different entry at (${e.index}, ${e.term}) than it accepted as ${p.label}`,
      );
      return;
    }
    this.env.checker.onAck(e.index, e.term, key, p.label);
    this.env.trace.line(() => `ACK ${p.label} at ${e.index} term ${e.term} by ${this.id}`);
  }

  private serveReads(): void {
    if (this.pendingReads.length === 0) return;
    const keep: ReadState[] = [];
    for (const rs of this.pendingReads) {
      if (rs.index <= this.sm.applied) {
        this.env.checker.onReadServed(this.id, rs.ctx, rs.index, this.sm.applied);
        this.env.trace.line(() => `READ ${rs.ctx} served by ${this.id} at ${rs.index}`);
      } else keep.push(rs);
    }
    this.pendingReads = keep;
  }

  /** Reports role/term changes and checks every new leadership. */
  private observe(): void {
    const n = this.node;
    if (!n) return;
    const r = n.inspect();
    if (r.role !== this.lastRole || r.term !== this.lastTerm) {
      this.lastRole = r.role;
      this.lastTerm = r.term;
      this.env.trace.mark(95, this.num, ROLE_CODE[r.role], r.term);
      this.env.onRole(this, r.role, r.term);
    }
    if (r.role === 'leader' && r.term !== this.lastLeaderTerm) {
      this.lastLeaderTerm = r.term;
      this.env.checker.onLeader(this.id, r.term, r.log, r.tracker.isVoter(this.id));
    }
  }
}

function triggered(t: CrashTrigger, rd: Ready, durable: HardState): boolean {
  switch (t) {
    case 'any':
      return true;
    case 'vote':
      return (
        rd.hardState !== null &&
        rd.hardState.vote !== '' &&
        (rd.hardState.vote !== durable.vote || rd.hardState.term !== durable.term)
      );
    case 'entries':
      return rd.entries.length > 0;
    case 'commit':
      return rd.committed.length > 0;
    case 'snapshot':
      return rd.snapshot !== null;
  }
}

function termAt(s: MemoryStorage, i: number): number {
  if (i < s.firstIndex() - 1 || i > s.lastIndex()) return -1;
  return s.term(i);
}
