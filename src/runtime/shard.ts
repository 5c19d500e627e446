// Shard: hosts many Raft groups of one shard over one LogStore and state machine, and runs its
// loop. A turn ticks the groups that may be awake, steps received messages, collects every
// group's Ready, sends what may leave before the write, stages every group's log changes as ONE
// WAL record, applies committed entries (into the state machine's memtable) and answers their
// callers, then starts the commit; when that commit is durable (completeBatch, in commit order)
// the acknowledgements and votes leave and the groups advance. Up to BATCHES_IN_FLIGHT turns may
// have their commit in flight. No timer per group or per request: one tick timer per shard,
// quiesced groups are not ticked, deadlines are swept. Transport-agnostic: outbound messages go to
// an injected `send`, inbound ones arrive through `receive`. What a turn only feeds or consults
// lives beside it: shardreads, shardtransfers, shardreports, shardcompaction, shardoptions (.ts);
// smrouter.ts keeps group 0 on the KV beside a user state machine.
import type { Logger } from 'pino';
import { pino } from 'pino';
import { RaftNode } from '../raft/node.js';
import type { ConfChange, ConfState, Entry, SoftState, Message, NodeId, ProposeResult, Ready } from '../raft/types.js';
import { KvStateMachine, kvEntryData, type KvCommand } from '../storage/kv.js';
import { RuntimeError } from './errors.js';
import type { ShardStateMachine } from './statemachine.js';
import { COMMIT_P99_WINDOW_MS, type GroupConf, type ShardBrief } from './protocol.js';
import { Histogram, RecentSamples } from './histogram.js';
import { Deadlines, Waiter, newGroup, ownWaiters, type Group, type LedGroup, type TransferDone } from './group.js';
import { ShardReads, rejectRequests } from './shardreads.js';
import { Handovers, type HandoverAccess, type Leading, type TransferOptions } from './shardtransfers.js';
import { ShardReports } from './shardreports.js';
import { compactForCheckpoint, maybeCompact } from './shardcompaction.js';
import { GroupRouter } from './smrouter.js';
import { ShardSnapshots } from './shardsnapshots.js';
import { raftConfigOf, type ShardOptions } from './shardoptions.js';
import type { GroupView, ShardSummary } from './status.js';

export type { LedGroup, TransferDone } from './group.js';
export type { RaftTuning, ShardOptions } from './shardoptions.js';

/** Loop turns whose commit may be in flight at once (and so Readies per group). Measured on 2
 *  cores, 3 nodes, 1,000 groups (3 runs each, medians): 1 vs 2 in flight, 24.3k vs 26.7k
 *  writes/s at 3,000 proposers and p50 5.1 vs 4.3 ms at 3 proposers. */
const BATCHES_IN_FLIGHT = 2;

/** Messages a turn may start for with one more commit in flight (see Shard.urgent). */
const URGENT: ReadonlySet<Message['type']> = new Set<Message['type']>([
  'timeoutNow',
  'vote',
  'voteResp',
  'preVote',
  'preVoteResp',
]);

/** One loop turn from its start to its commit being durable. */
interface Batch {
  readonly readies: [Group, Ready][];
  /** Committed entries applied this turn, with the state machine's results. */
  readonly results: [Group, Entry[], unknown[]][];
  readonly knownCommitted: number;
  readonly commit: Promise<void>;
  durable: boolean;
}

export class Shard {
  readonly sm: ShardStateMachine;
  private readonly groups = new Map<number, Group>();
  private inbox: Message[] = [];
  /** Groups with something to do this iteration (stepped, proposed, woken). */
  private active = new Set<Group>();
  /** Groups that were not quiesced at their last tick, or were touched since. */
  private readonly awake = new Set<Group>();
  private tickDue = false;
  private readonly deadlines = new Deadlines();
  private lastTickAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private scheduled = false;
  private started = false;
  /** A turn is running (synchronously). */
  private turning = false;
  /** Turns whose commit is in flight, oldest first. */
  private pending: Batch[] = [];
  /** Outbound messages of the current turn, by destination node. */
  private readonly out = new Map<NodeId, Message[]>();
  private stopped = false;
  /** The inbox holds an election or hand-over message (or a transfer was just asked for): the
   *  next turn may start with one commit more in flight than usual, so that leadership does not
   *  wait behind the write load's fsyncs at every hop of a transfer or an election. */
  private urgent = false;
  /** Peers the liveness layer reports down: a group that becomes leader learns of them at once
   *  (else it would wait on them forever and never quiesce). */
  private readonly downPeers = new Set<NodeId>();
  private campaignDelay = 0;
  /** The last proposals' commit latencies (accepted -> known committed) of the last minute, for
   *  a transfer's evidence. */
  private readonly recentCommitLatency = new RecentSamples(256, COMMIT_P99_WINDOW_MS);
  /** Latency histograms: each storage commit (fsync), proposal accepted -> known committed, and
   *  known committed -> applied and answered. */
  readonly histograms = { fsync: new Histogram(), commit: new Histogram(), apply: new Histogram() };
  /** Groups removed since the last iteration; their storage goes with the next commit. */
  private removals: number[] = [];
  /** This turn's state machine write that must be durable before its WAL record (installs). */
  private firstWrite: (() => void) | null = null;
  private readonly log: Logger;
  private readonly tickMs: number;
  private readonly retain: number;
  private readonly reads: ShardReads;
  private readonly handovers: Handovers;
  private readonly reports: ShardReports;
  /** Snapshot streams (null: snapshots travel inline in their `snap` message). */
  readonly snapshots: ShardSnapshots | null;
  readonly stats = {
    loops: 0,
    commits: 0,
    messagesIn: 0,
    messagesOut: 0,
    rejected: 0,
    ticks: 0,
    /** Readies handled, groups ticked, entries applied (work counts for the benchmarks). */
    readies: 0,
    groupTicks: 0,
    applied: 0,
    /** Committed entries the built-in KV refused because their command does not decode. */
    malformedEntries: 0,
    /** Milliseconds spent per phase: stepping+ticking, collecting Readies, staging (log writes,
     *  applies), awaiting the commit, and after it (acks, waiters, advance). */
    msStep: 0,
    msReady: 0,
    msStage: 0,
    msCommit: 0,
    msAfter: 0,
    msSmWrite: 0,
    /** Outcomes of leader transfers this shard's leaders started. */
    transfers: { completed: 0, aborted: 0 },
  };
  /** When the running turn's current phase started (see lap). */
  private lapAt = 0;

  private constructor(private readonly opts: ShardOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    const kv = () =>
      new KvStateMachine(opts.store, {
        onMalformed: (group, index, reason) => {
          this.stats.malformedEntries++;
          this.log.warn({ group, index, reason }, 'committed KV entry does not decode: refused (StateMachineError)');
        },
      });
    // A user state machine runs every group but the metadata group, which stays the KV (smrouter);
    // a factory that makes the KV itself (tests tune its flushes) serves every group alone.
    const custom = opts.stateMachine?.(opts.store);
    this.sm = !custom ? kv() : custom instanceof KvStateMachine ? custom : new GroupRouter(kv(), custom);
    this.tickMs = opts.tickMs ?? 100;
    this.retain = opts.retainEntries ?? 64;
    this.campaignDelay = opts.campaignDelay ?? 0;
    opts.store.beforeCheckpoint = () => compactForCheckpoint(this.groups.values(), this.sm, opts.store);
    // The helpers reach the loop only through these (each a closure made once, here).
    const access: HandoverAccess = {
      nodeId: opts.nodeId,
      groups: this.groups,
      downPeers: this.downPeers,
      outcomes: this.stats.transfers,
      log: this.log,
      group: (id) => this.group(id),
      touch: (g) => this.touch(g),
      schedule: () => this.schedule(),
      stopped: () => this.stopped,
      hurry: () => {
        this.urgent = true;
      },
      commitLatencyP99Ms: () => this.commitLatencyP99Ms(),
      withDeadline: (what, timeoutMs, register) => this.deadlines.promise(what, this.timeoutOf(timeoutMs), register),
    };
    this.reads = new ShardReads(access);
    const streams = opts.snapshotStreams;
    this.snapshots = streams
      ? new ShardSnapshots(
          {
            sm: this.sm,
            log: this.log,
            group: (id) => this.groups.get(id),
            metaAt: (id, index) => {
              const st = this.group(id).storage;
              return { index, term: st.term(index), conf: st.conf() };
            },
            sendFrame: streams.send,
            sendRaft: (to, msgs) => {
              this.stats.messagesOut += msgs.length;
              opts.send(to, msgs);
            },
            touch: (g) => {
              this.touch(g);
              this.schedule();
            },
            isDown: (peer) => this.downPeers.has(peer),
          },
          streams.limits,
          streams.dir,
        )
      : null;
    this.handovers = new Handovers(access);
    this.reports = new ShardReports(
      opts.nodeId,
      this.groups,
      this.downPeers,
      opts.onBrief,
      () => this.started && !this.stopped,
      this.log,
    );
  }

  /** p99 of the commit durations of the last minute in ms (null without any). An idle shard
   *  commits nothing: without the age limit the tail of its last busy moment (thousands of
   *  start-up elections) would speak for it forever, and a node's disk would look slow, or the
   *  cluster unstable, long after. */
  commitP99Ms(): number | null {
    return this.reports.commitP99Ms();
  }

  /** p99 of the commit latency (proposal accepted -> known committed) of this shard's leaders
   *  over the last minute, in ms (null without any): what a group led here sees. */
  commitLatencyP99Ms(): number | null {
    return this.recentCommitLatency.p99();
  }

  /** Open a shard over a recovered store: every group in it comes back with its durable state. */
  static open(opts: ShardOptions): Shard {
    const s = new Shard(opts);
    for (const g of opts.store.groupIds()) s.attach(g);
    return s;
  }

  private attach(id: number): Group {
    const storage = this.opts.store.storage(id);
    const snapIndex = storage.firstIndex() - 1;
    if (this.sm.applied(id) < snapIndex) {
      // The log holds nothing between the state machine's image and its snapshot: the entries in
      // between were never applied here. The install order (stageWrites) rules this out; if it
      // happens anyway, stop loudly rather than let the core count them as applied.
      throw new RuntimeError(
        'StorageFailed',
        `group ${id} on ${this.opts.nodeId}: state machine applied ${this.sm.applied(id)} is behind the log's snapshot at ${snapIndex}; entries ${this.sm.applied(id) + 1}..${snapIndex} were never applied`,
      );
    }
    const node = new RaftNode(raftConfigOf(this.opts, id, storage, this.sm.applied(id), BATCHES_IN_FLIGHT));
    if (this.campaignDelay) node.setCampaignDelay(this.campaignDelay);
    const metaAt = (index: number) => ({ index, term: storage.term(index), conf: storage.conf() });
    // With streams the core's `snap` message carries the metadata only; the data follows it.
    storage.snapshotSource = this.snapshots
      ? () => ({ meta: metaAt(this.sm.applied(id)), data: new Uint8Array(0) })
      : () => this.sm.snapshot(id, metaAt);
    const g = newGroup(id, node, storage, this.sm.applied(id));
    this.groups.set(id, g);
    this.touch(g);
    return g;
  }

  /** Bootstrap a group with its initial membership (durable with the next commit). */
  createGroup(id: number, conf: ConfState): void {
    if (this.groups.has(id))
      throw new RuntimeError('InvalidArgument', `group ${id} already exists on ${this.opts.nodeId}`);
    const pending = this.removals.indexOf(id);
    if (pending >= 0) {
      // Removed and re-created before the removal reached storage: drop the old copy first (both
      // are staged for the next commit, in this order).
      this.removals.splice(pending, 1);
      this.opts.store.deleteGroup(id);
      this.sm.dropGroup(id);
    }
    this.opts.store.createGroup(id, conf);
    this.attach(id);
    this.schedule();
  }

  /** Remove a group from this node: its log, hard state and state machine data go with the next
   *  commit; pending requests reject with NotLeader (retried on the group's other replicas). */
  removeGroup(id: number): void {
    const g = this.group(id);
    this.groups.delete(id);
    if (g.leader === this.opts.nodeId) this.reports.leadersChanged(-1);
    this.active.delete(g);
    this.awake.delete(g);
    // Retryable: the group lives on elsewhere when a replica moved (a proposal that was already
    // in the log is kept single by its client session).
    rejectRequests(g, new RuntimeError('NotLeader', `group ${id} was removed from ${this.opts.nodeId}`));
    // Storage is touched only between iterations (an iteration may be awaiting a commit that
    // includes this group's writes).
    this.removals.push(id);
    this.schedule();
  }

  has(id: number): boolean {
    return this.groups.has(id);
  }

  groupIds(): number[] {
    return [...this.groups.keys()];
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.resumeTicking();
    this.schedule();
    this.reports.pushBrief();
  }

  /** Run the tick timer (again). Ticks that fall due while an iteration is running are coalesced
   *  into one. Election clocks then run slow under load, which is safe and acts as back-pressure
   *  (delivering every owed tick at 10,000 groups per thread livelocked elections: broadcast time
   *  exceeded the timeout). */
  private resumeTicking(): void {
    if (this.timer !== null || !this.started || this.stopped) return;
    this.lastTickAt = performance.now();
    this.timer = setInterval(() => this.onTick(), this.tickMs);
  }

  private onTick(): void {
    this.tickDue = true;
    this.deadlines.sweep(performance.now());
    if (
      this.awake.size === 0 &&
      this.deadlines.size === 0 &&
      !this.reads.waiting() &&
      this.pending.length === 0 &&
      this.inbox.length === 0
    ) {
      // Every group is quiesced and nobody waits: no timer fires until something wakes a group
      // (a message, a proposal, a read, a peer going down all touch one). Whatever the state
      // machine still holds unflushed is flushed now, so a restart after a long quiet replays
      // nothing.
      clearInterval(this.timer!);
      this.timer = null;
      this.tickDue = false;
      const write = this.opts.store.failed ? null : this.sm.prepareWrite(true);
      if (write) {
        this.opts.store.commit(write).then(
          () => this.sm.committed(),
          (e: Error) => this.failAll(e),
        );
      }
      return;
    }
    this.schedule();
  }

  /** A snapshot stream frame from node `from` (ignored without streams). */
  receiveSnapshotFrame(from: NodeId, frame: Uint8Array): void {
    if (!this.stopped) this.snapshots?.onFrame(from, frame);
  }

  /** Messages from other nodes (already validated structurally by the transport). */
  receive(msgs: readonly Message[]): void {
    for (const m of msgs) {
      this.inbox.push(m);
      if (URGENT.has(m.type)) this.urgent = true;
    }
    this.stats.messagesIn += msgs.length;
    this.schedule();
  }

  private touch(g: Group): void {
    this.active.add(g);
    this.awake.add(g);
    if (this.timer === null) this.resumeTicking();
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.kick();
    });
  }

  private group(id: number): Group {
    const g = this.groups.get(id);
    // A routing miss, not a bad request: the replica moved away (or is not created yet), and the
    // asker retries on another replica (a client session keeps a retried proposal single).
    if (!g) throw new RuntimeError('NotLeader', `no replica of group ${id} on ${this.opts.nodeId}`);
    return g;
  }

  // --- requests --------------------------------------------------------------------------------

  /** Propose on this node, which must be the group's leader; resolves with the state machine's
   *  result once applied. `command` is entry data (session.ts encodeCommand), or a KV command
   *  proposed without a session. */
  propose(groupId: number, command: Uint8Array | KvCommand, timeoutMs?: number): Promise<unknown> {
    if (this.stopped) return Promise.reject(new RuntimeError('Stopped', 'shard stopped'));
    let g: Group;
    let data: Uint8Array;
    try {
      g = this.group(groupId);
      data = command instanceof Uint8Array ? command : kvEntryData(command);
    } catch (e) {
      return Promise.reject(e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', (e as Error).message));
    }
    const r: ProposeResult = g.node.propose(data);
    if (!r.ok) return Promise.reject(RuntimeError.fromProposal(r, g.node.status().leader));
    this.touch(g);
    this.schedule();
    return this.waitFor(g, r.index, r.term, timeoutMs, true);
  }

  /** A caller's timeout, or the shard's request timeout when it gave none, ms. */
  private timeoutOf(timeoutMs: number | undefined): number {
    return Math.max(1, timeoutMs ?? this.opts.requestTimeoutMs ?? 10_000);
  }

  /** Wait for the entry proposed at (index, term) to be applied. */
  private waitFor(
    g: Group,
    index: number,
    term: number,
    timeoutMs: number | undefined,
    timed: boolean,
  ): Promise<unknown> {
    const now = performance.now();
    const deadline = now + this.timeoutOf(timeoutMs);
    return new Promise<unknown>((resolve, reject) => {
      const w = new Waiter(g, index, term, timed ? now : 0, deadline, resolve, reject);
      ownWaiters(g).set(index, w);
      this.deadlines.add(w);
    });
  }

  /** Linearizable read barrier: resolves once this node has applied everything committed before
   *  the call (ReadIndex, forwarded to the leader by the core when this node follows). */
  readBarrier(groupId: number, timeoutMs?: number, lease = false): Promise<void> {
    return this.reads.barrier(groupId, timeoutMs, lease);
  }

  /** Answer the caller waiting for committed entry `e`, if any: its result, or NotLeader when a
   *  new leader replaced its proposal with another entry at that index. */
  private settleWaiter(g: Group, e: Entry, result: unknown, knownCommitted: number): void {
    const w = g.waiters.get(e.index);
    if (!w) return;
    g.waiters.delete(e.index);
    if (w.term !== e.term) {
      w.reject(
        new RuntimeError(
          'NotLeader',
          `proposal at ${e.index} of group ${g.id} was superseded by a new leader`,
          g.node.status().leader,
        ),
      );
      return;
    }
    // A superseded proposal was never committed: it stays out of the latency histograms.
    if (w.startedAt > 0) {
      this.histograms.commit.observeMs(knownCommitted - w.startedAt);
      this.recentCommitLatency.add(knownCommitted - w.startedAt, knownCommitted);
      this.histograms.apply.observeMs(performance.now() - knownCommitted);
    }
    w.resolve(result);
  }

  /** Query the state machine; 'linearizable' waits for a read barrier first. */
  async read(
    groupId: number,
    query: unknown,
    consistency: 'linearizable' | 'lease' | 'stale' = 'linearizable',
    timeoutMs?: number,
  ): Promise<unknown> {
    if (consistency !== 'stale') await this.readBarrier(groupId, timeoutMs, consistency === 'lease');
    this.group(groupId);
    return this.sm.query(groupId, query);
  }

  /** Propose a membership change on the group's leader (this node); resolves with the new
   *  membership once the change is committed and applied. One change at a time: a second one
   *  while the first is in flight is refused with ConfChangeInProgress. */
  changeMembership(groupId: number, cc: ConfChange, timeoutMs?: number): Promise<GroupConf> {
    let g: Group;
    try {
      g = this.group(groupId);
    } catch (e) {
      return Promise.reject(e);
    }
    if (cc.type === 'addVoter') {
      // Promote only a caught-up learner (learner first, then promote): a lagging new voter would
      // weaken the quorum until it catches up.
      const st = g.node.status();
      const pr = st.progress[cc.node];
      if (st.role === 'leader' && st.conf.learners.includes(cc.node) && (!pr || pr.match < st.commit)) {
        return Promise.reject(
          new RuntimeError(
            'Unavailable',
            `${cc.node} is not caught up yet (match ${pr?.match ?? 0} < commit ${st.commit})`,
            st.leader,
          ),
        );
      }
    }
    const r = g.node.proposeConfChange(cc);
    if (!r.ok) return Promise.reject(RuntimeError.fromProposal(r, g.node.status().leader));
    this.touch(g);
    this.schedule();
    return this.waitFor(g, r.index, r.term, timeoutMs, false).then(() => confOf(g));
  }

  /** The group's configuration as this replica has applied it (for a node whose map of the
   *  group's replicas missed a change). */
  configuration(groupId: number): GroupConf {
    return confOf(this.group(groupId));
  }

  /** Confirm this node leads `groupId` and serves: a ReadIndex round (a quorum still follows it,
   *  and an entry of its term is committed). Resolves with its term. */
  verifyLeader(groupId: number, timeoutMs?: number): Promise<{ term: number }> {
    return this.reads.verifyLeader(groupId, timeoutMs);
  }

  /** Resolves with the term once this node leads `groupId` with an entry of its term committed
   *  (a quorum accepted the leadership, so no ReadIndex round is needed to trust it). A transfer's
   *  caller asks the target this while the old leader hands over: the answer arrives when the
   *  target has taken over, with no polling. Times out after `timeoutMs`. */
  awaitLeadership(groupId: number, timeoutMs?: number): Promise<Leading> {
    return this.handovers.awaitLeadership(groupId, timeoutMs);
  }

  /** A KV shard's committed value of `key` (stale read). */
  get(groupId: number, key: Uint8Array): Uint8Array | null {
    this.group(groupId);
    return this.sm.query(groupId, key) as Uint8Array | null;
  }

  transferLeader(groupId: number, target: NodeId) {
    return this.handovers.transferLeader(groupId, target);
  }

  /**
   * Hand leadership of a group this node leads to `target`, as an operation: refused at once with
   * a typed reason when the target cannot take over safely (not a member, a learner, not heard from
   * recently, a membership change in flight, this leader without a quorum) or well (further behind
   * than `maxLagEntries`, needing a snapshot, not reaching a quorum by its own links `reach`; these
   * three `force` overrides); otherwise resolves when the core reports the hand-over complete (the
   * target won its election) and rejects with the abort reason if it did not (the old leader
   * stays leader).
   */
  transfer(groupId: number, target: NodeId, o: TransferOptions = {}): Promise<TransferDone> {
    return this.handovers.transfer(groupId, target, o);
  }

  /** Counts for a node summary, from cheap per-group fields (no Raft status objects): groups,
   *  leaders, quiesced, and (up to `cap`) the groups whose voter count is even. */
  summary(cap = 100): ShardSummary {
    return this.reports.summary(cap);
  }

  /** What a balancer round needs when it has nothing to move (see LeaderBalancer.round): no
   *  object per group, no copy of any per-group state. */
  brief(): ShardBrief {
    return this.reports.brief();
  }

  /** The groups this node leads, with the work it served for each (for the balancer). */
  led(): LedGroup[] {
    return this.reports.led();
  }

  /** Cumulative work this node served for the group as its leader. */
  served(groupId: number): { writes: number; bytes: number; reads: number } {
    return this.group(groupId).served;
  }

  status(groupId: number) {
    return this.group(groupId).node.status();
  }

  /** The per-group view an operator reads before a transfer: Raft status, work served, and
   *  whether this node reaches a quorum of the group's voters (by the liveness layer). */
  groupView(groupId: number): GroupView {
    return this.reports.groupView(this.group(groupId));
  }

  leaderOf(groupId: number): NodeId {
    return this.group(groupId).node.status().leader;
  }

  /** Drain mode: every group of this shard waits `ticks` longer before campaigning on its own,
   *  so that healthy peers win elections first. New groups inherit it. */
  setCampaignDelay(ticks: number): void {
    this.campaignDelay = ticks;
    for (const g of this.groups.values()) g.node.setCampaignDelay(ticks);
  }

  /** The node-liveness layer says `peer` is down / back: tell the groups that care. */
  peerDown(peer: NodeId): void {
    this.downPeers.add(peer);
    for (const g of this.groups.values()) {
      if (g.leader === peer) g.node.leaderUnreachable();
      g.node.reportUnreachable(peer);
      this.touch(g);
    }
    this.schedule();
  }

  peerUp(peer: NodeId): void {
    this.downPeers.delete(peer);
    for (const g of this.groups.values()) {
      const st = g.node.status();
      if (st.role === 'leader' && st.conf.voters.concat(st.conf.learners).includes(peer)) {
        g.node.wake();
        this.touch(g);
      }
    }
    this.schedule();
  }

  // --- the loop ----------------------------------------------------------------------------------

  /** Run loop turns while there is work and fewer than BATCHES_IN_FLIGHT commits are pending.
   *  A turn is synchronous up to starting its commit; what must wait for durability (acks,
   *  votes, advance) runs when that commit resolves (completeBatch), in commit order. So a turn
   *  can start while the previous turn's fsync is in flight: a follower's append and the
   *  leader's next proposals do not queue behind it. */
  private kick(): void {
    if (this.turning || this.stopped) return;
    this.turning = true;
    try {
      for (let spins = 0; spins < 64 && !this.stopped && this.mayStartTurn(); spins++) {
        this.urgent = false; // this turn steps the inbox, urgent messages included
        const b = this.turn();
        if (b === null) break;
        this.pending.push(b);
        b.commit.then(
          () => this.onBatchDurable(b),
          (e: Error) => this.failAll(e),
        );
      }
    } catch (e) {
      this.failAll(e as Error);
      return;
    } finally {
      this.turning = false;
    }
    if (this.mayStartTurn() && (this.inbox.length > 0 || this.active.size > 0 || this.tickDue || this.reads.waiting()))
      this.schedule();
  }

  private mayStartTurn(): boolean {
    return this.pending.length < BATCHES_IN_FLIGHT + (this.urgent ? 1 : 0);
  }

  private onBatchDurable(b: Batch): void {
    if (this.stopped) return;
    b.durable = true;
    try {
      // Commits resolve in call order; a turn that wrote nothing resolves at once but must still
      // wait for the writes before it (its acks may cover entries those carry).
      while (this.pending.length > 0 && this.pending[0].durable) this.completeBatch(this.pending.shift()!);
    } catch (e) {
      this.failAll(e as Error);
      return;
    }
    this.schedule();
  }

  /** One loop turn up to starting its commit; null when there was nothing to do. Its steps are
   *  the methods below, in order; no step allocates beyond the turn's Readies and results. */
  private turn(): Batch | null {
    this.lapAt = performance.now();
    const removed = this.removals.length > 0;
    if (this.tickDue) this.tickAwakeGroups();
    this.reads.issue();
    this.stepInbox();
    this.handovers.settleLeaders();
    this.lap('msStep');
    const readies = this.collectReadies();
    this.lap('msReady');
    // The entries in these Readies' `committed` are known committed by now (acks stepped above, or
    // the last turn's advance): the end of commit latency and the start of apply latency.
    const knownCommitted = this.lapAt;
    if (readies.length === 0 && !removed) return null;
    this.stats.loops++;
    this.sendBeforeWrite(readies);
    const results = this.stageWrites(readies);
    // After the installs cut their generation (stageWrites): a dropped group's reset must not
    // become durable before the WAL record that deletes its log.
    this.dropRemovedGroups();
    this.lap('msStage');
    this.answerApplied(results, knownCommitted);
    const commit = this.startCommit();
    this.lap('msCommit');
    return { readies, results, knownCommitted, commit, durable: false };
  }

  /** Add the time since the last lap to phase `k` of the stats. */
  private lap(k: 'msStep' | 'msReady' | 'msStage' | 'msCommit'): void {
    const now = performance.now();
    this.stats[k] += now - this.lapAt;
    this.lapAt = now;
  }

  /** The storage of groups removed since the last turn goes with this turn's commit; true if any. */
  private dropRemovedGroups(): boolean {
    if (this.removals.length === 0) return false;
    const removed = this.removals;
    this.removals = [];
    for (const id of removed) {
      if (this.groups.has(id)) continue; // re-created since
      this.snapshots?.dropGroup(id);
      this.opts.store.deleteGroup(id);
      this.sm.dropGroup(id);
    }
    return true;
  }

  private tickAwakeGroups(): void {
    this.tickDue = false;
    this.stats.ticks++;
    // How many tick intervals really passed: the core advances election clocks by one (slow
    // is safe) and a leader's lease clock by all of them (a lease must not outlive real time).
    const now = performance.now();
    const elapsed = Math.max(1, Math.floor((now - this.lastTickAt) / this.tickMs));
    this.lastTickAt += elapsed * this.tickMs;
    if (now - this.lastTickAt > this.tickMs) this.lastTickAt = now;
    // Only groups that may be awake: a quiesced group leaves the set here and comes back with
    // its next message, proposal or wake-up (idle cost does not grow with the group count).
    for (const g of this.awake) {
      if (g.node.isQuiesced()) {
        this.awake.delete(g);
        continue;
      }
      g.node.tick(elapsed);
      this.stats.groupTicks++;
      this.active.add(g);
    }
  }

  private stepInbox(): void {
    if (this.inbox.length === 0) return;
    const inbox = this.inbox;
    this.inbox = [];
    for (const m of inbox) {
      const g = this.groups.get(m.group);
      if (!g) {
        this.stats.rejected++;
        this.log.debug({ group: m.group, from: m.from }, 'message for unknown group dropped');
        continue;
      }
      if (m.type === 'snap' && this.snapshots && !this.snapshots.admit(m)) {
        // Its data has not been staged (it streams first): the leader sends it again.
        this.stats.rejected++;
        continue;
      }
      const r = g.node.step(m);
      if (!r.ok) this.stats.rejected++;
      this.touch(g);
    }
  }

  private collectReadies(): [Group, Ready][] {
    const readies: [Group, Ready][] = [];
    for (const g of this.active) if (g.node.hasReady()) readies.push([g, g.node.ready()]);
    this.stats.readies += readies.length;
    // A group with both its Readies in flight is touched again when the older one advances.
    this.active.clear();
    return readies;
  }

  /** 1. What may leave before the write (leader appends, heartbeats, TimeoutNow), and transfer
   *  outcomes: the target leading is a fact about the target, so its callers need not wait for
   *  this node's commit. */
  private sendBeforeWrite(readies: [Group, Ready][]): void {
    for (const [g, rd] of readies) {
      if (g.transfers.size > 0) this.handovers.noteTimeoutNow(g, rd.messages);
      this.enqueue(rd.messages);
    }
    this.flush();
    for (const [g, rd] of readies) if (rd.transfers.length > 0) this.handovers.settle(g, rd.transfers);
  }

  /** 2. One commit for every group: log, hard state, snapshots; the state machine applies the
   *  committed entries into its memtable (its flush rides on this commit when due). */
  private stageWrites(readies: [Group, Ready][]): [Group, Entry[], unknown[]][] {
    const results: [Group, Entry[], unknown[]][] = [];
    let installs = 0;
    for (const [g, rd] of readies) {
      if (!rd.snapshot) continue;
      if (this.snapshots) this.snapshots.install(g.id, rd.snapshot);
      else this.sm.restore(g.id, rd.snapshot);
      installs++;
    }
    // The installed images (with what earlier turns applied, whose entries are in earlier WAL
    // records) become durable BEFORE this turn's WAL record moves those groups' first index past
    // their snapshots: the log must never claim a snapshot the state machine has not got. Entries
    // applied below come after the cut, so they still reach LMDB only after their WAL record.
    if (installs > 0) this.firstWrite = this.sm.prepareWrite(true);
    for (const [g, rd] of readies) {
      if (rd.entries.length || rd.hardState || rd.snapshot || rd.conf) {
        this.opts.store.write({
          group: g.id,
          entries: rd.entries,
          hardState: rd.hardState ?? undefined,
          snapshot: rd.snapshot?.meta,
          conf: rd.conf ?? undefined,
        });
      }
      if (rd.snapshot) g.applied = Math.max(g.applied, rd.snapshot.meta.index);
      if (rd.committed.length > 0) {
        results.push([g, rd.committed as Entry[], this.sm.apply(g.id, rd.committed)]);
        this.stats.applied += rd.committed.length;
      }
    }
    return results;
  }

  /** Answer the proposals committed here before this turn's commit: a committed entry is durable
   *  on a quorum already (the leader counts itself only once its own copy is durable), and what
   *  applying it did is visible to reads at once (the state machine reads its own memtable). A
   *  crash before the state machine's next flush replays it from the log (sessions make that
   *  idempotent), as etcd acknowledges after applying to its batched backend. Membership changes
   *  are answered after the commit, once the routing has been told (onConf in completeBatch): a
   *  caller of removeMember must see the new replicas at once. */
  private answerApplied(results: [Group, Entry[], unknown[]][], knownCommitted: number): void {
    for (const [g, ents, res] of results) {
      const leading = g.leader === this.opts.nodeId;
      for (let i = 0; i < ents.length; i++) {
        const e = ents[i];
        g.applied = e.index;
        if (leading && e.type === 'normal' && e.data.byteLength > 0) {
          g.served.writes++;
          g.served.bytes += e.data.byteLength;
        }
        if (e.type !== 'conf') this.settleWaiter(g, e, res[i], knownCommitted);
      }
    }
  }

  /** Start this turn's storage commit; the state machine's writes ride on it only when its flush
   *  is due. */
  private startCommit(): Promise<void> {
    const first = this.firstWrite;
    this.firstWrite = null;
    const smWrite = this.sm.prepareWrite();
    const c0 = performance.now();
    return this.opts.store
      .commit(
        smWrite
          ? () => {
              const w0 = performance.now();
              smWrite();
              this.stats.msSmWrite += performance.now() - w0;
            }
          : undefined,
        first ?? undefined,
      )
      .then((wrote) => {
        if (first) this.sm.committed();
        if (wrote) {
          const commitMs = performance.now() - c0;
          this.reports.committed(commitMs);
          this.histograms.fsync.observeMs(commitMs);
          this.stats.commits++;
        }
        if (smWrite) this.sm.committed();
      });
  }

  /** The rest of a turn once its commit is durable: acknowledgements and votes, outcomes,
   *  waiters, reads, compaction, advance. */
  private completeBatch(b: Batch): void {
    const t0 = performance.now();
    // 3. Acknowledgements and votes, now that they are true.
    for (const [, rd] of b.readies) this.enqueue(rd.messagesAfterPersist);
    this.flush();

    // 4. Answer waiters, serve reads, compact, advance.
    for (const [g, rd] of b.readies) {
      if (this.groups.get(g.id) !== g) continue; // removed since
      if (rd.softState) this.onSoftState(g, rd.softState);
      if (rd.conf) this.opts.onConf?.(g.id, rd.conf, lastConfIndex(rd.committed));
      else if (rd.snapshot) this.opts.onConf?.(g.id, rd.snapshot.meta.conf, rd.snapshot.meta.index);
      for (const rs of rd.readStates) {
        const w = g.reads.get(rs.ctx);
        if (w) w.index = rs.index;
      }
      for (const ctx of rd.droppedReads) {
        const w = g.reads.get(ctx);
        if (w) {
          g.reads.delete(ctx);
          w.reject(
            new RuntimeError('NotLeader', `read of group ${g.id} dropped (leadership changed)`, g.node.status().leader),
          );
        }
      }
    }
    for (const [g, ents, res] of b.results) {
      if (this.groups.get(g.id) !== g) continue;
      for (let i = 0; i < ents.length; i++)
        if (ents[i].type === 'conf') this.settleWaiter(g, ents[i], res[i], b.knownCommitted);
      maybeCompact(g, this.sm, this.opts.store, this.retain);
    }
    for (const [g] of b.readies) {
      if (this.groups.get(g.id) !== g) continue;
      if (g.reads.size > 0) {
        for (const [ctx, w] of g.reads) {
          if (w.index >= 0 && g.applied >= w.index) {
            g.reads.delete(ctx);
            g.served.reads++;
            w.resolve();
          }
        }
      }
      g.node.advance();
      this.touch(g); // advance may have produced more (e.g. a commit after self-ack)
    }
    this.handovers.settleLeaders();
    this.stats.msAfter += performance.now() - t0;
  }

  private enqueue(ms: readonly Message[]): void {
    for (const m of ms) {
      if (m.type === 'snap' && this.snapshots && m.snapshot.data.byteLength === 0) {
        this.snapshots.hold(m);
        continue;
      }
      let q = this.out.get(m.to);
      if (!q) {
        q = [];
        this.out.set(m.to, q);
      }
      q.push(m);
    }
  }

  private flush(): void {
    for (const [to, ms] of this.out) {
      this.stats.messagesOut += ms.length;
      this.opts.send(to, ms);
    }
    this.out.clear();
  }

  /** Proposals this node accepted as leader need nothing here when leadership moves: they either
   *  commit under the next leader (the term check answers them) or are overwritten (answered with
   *  NotLeader when another entry applies at their index), or time out. */
  private onSoftState(g: Group, { leader, role, term }: SoftState): void {
    if (leader !== g.leader) {
      const cause = this.reports.leaderChangeKind(g, term);
      // Per group at debug: the shard's info line is ShardReports' periodic summary. An election
      // at 100,000 groups changes that many leaders at once: build no fields unless logged.
      if (this.log.isLevelEnabled('debug'))
        this.log.debug({ group: g.id, leader, role, term, cause }, 'leader changed');
      this.reports.leadersChanged(
        (leader === this.opts.nodeId ? 1 : 0) - (g.leader === this.opts.nodeId ? 1 : 0),
        leader ? cause : null,
      );
      g.leader = leader;
      if (leader === this.opts.nodeId) for (const p of this.downPeers) g.node.reportUnreachable(p);
      this.opts.onLeader?.(g.id, leader, term, cause);
    }
  }

  private failAll(e: Error): void {
    const err = e instanceof RuntimeError ? e : new RuntimeError('StorageFailed', e.message);
    this.log.error({ err: e }, 'shard failed; stopping');
    this.stopped = true;
    this.pending = [];
    this.snapshots?.close();
    if (this.timer) clearInterval(this.timer);
    this.reports.stop();
    this.settleAll(err);
  }

  /** Reject every pending proposal, read and transfer of every group with `err`. */
  private settleAll(err: Error): void {
    for (const g of this.groups.values()) {
      rejectRequests(g, err);
      this.handovers.reject(g, err);
    }
  }

  /** Stop ticking and settle every pending request with Stopped. */
  async stop(): Promise<void> {
    // No timer from here on: the commits still in flight complete (and touch their groups) below.
    this.started = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.reports.stop();
    while (this.turning || this.pending.length > 0) {
      if (this.opts.store.failed) break;
      await new Promise((r) => setImmediate(r));
    }
    this.stopped = true;
    this.snapshots?.close();
    const err = new RuntimeError('Stopped', 'shard stopped');
    this.settleAll(err);
    // Flush the state machine so that a clean restart replays nothing (a failed store has
    // nothing more to say; its error was reported when it failed).
    const write = this.opts.store.failed ? null : this.sm.prepareWrite(true);
    if (write) {
      try {
        await this.opts.store.commit(write);
        this.sm.committed();
      } catch (e) {
        this.log.warn({ err: e }, 'final state machine flush failed; a restart replays the log');
      }
    }
  }
}

/** The core applies a configuration entry when it hands it out, so its configuration is every
 *  configuration entry up to its applied index. */
function confOf(g: Group): GroupConf {
  const st = g.node.status();
  return { voters: st.conf.voters, learners: st.conf.learners, index: st.applied };
}

/** The index of the last conf entry among `committed` (the configuration a Ready's `conf` is). */
function lastConfIndex(committed: readonly Entry[]): number {
  for (let i = committed.length - 1; i >= 0; i--) if (committed[i].type === 'conf') return committed[i].index;
  return 0;
}
