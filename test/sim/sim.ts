// The simulation engine: a discrete-event loop over message deliveries, node ticks and "driver"
// actions (client requests, admin operations and faults), all drawn from one seeded stream, so a
// seed replays exactly. Time is in units of TICK/100; every node ticks once per TICK.
//
// A run alternates calm windows (no faults: proposals, reads, compaction and *watched* leader
// transfers) and chaos windows (drops, duplicates, slow and stale messages, partitions and one-way
// cuts, crashes — immediate, mid-Ready and fast reboots —, process pauses, membership changes,
// forced campaigns, transfers to anyone) for `steps` steps. Then HEAL: every fault removed, every
// node restarted, and the group must converge within HEAL_ELECTIONS election timeouts to one
// leader that all members follow, with every acknowledged write applied everywhere.
//
// Safety invariants are checked incrementally by Checker (checker.ts) as hosts persist, apply and
// change role; transfer liveness by watchTransfer below; convergence by heal().
import {
  MESSAGE_TYPES,
  type ConfChange,
  type ConfState,
  type Message,
  type NodeId,
  type Role,
  type TransferOutcome,
} from '../../src/raft/types.js';
import { Checker, type Clock, type Violation } from './checker.js';
import { chooseConfig, describeConfig, nodeId, type ClusterConfig } from './config.js';
import { describeNodes, diagnose } from './diagnose.js';
import { fmtMsg } from './format.js';
import { CRASH_POINTS, CRASH_TRIGGERS, Host, type HostEnv, type Hooks, type RaftOptions } from './host.js';
import { CALM, Network, TICK, type Conditions } from './network.js';
import { EventQueue } from './queue.js';
import { Rng } from './rng.js';
import { Tracer, type TraceSink } from './trace.js';

export const DEFAULT_STEPS = 3000;
/** Extra ticks beyond one election timeout that a planned transfer may leave the group leaderless. */
export const TRANSFER_SLACK_TICKS = 2;
/** HEAL must converge within this many election timeouts. */
export const HEAL_ELECTIONS = 40;
/** Node ids a run may ever use (initial members plus the ones membership changes add). */
const MAX_IDS = 9;
/** Members (voters + learners) the driver grows a group to, at most. */
const MAX_MEMBERS = 7;

export interface SimOptions {
  readonly seed: number;
  readonly steps?: number;
  readonly trace?: TraceSink;
  readonly hooks?: Hooks;
}

export interface SimStats {
  messages: number;
  dropped: number;
  proposals: number;
  acked: number;
  reads: number;
  leaderships: number;
  crashes: number;
  transfers: number;
  checkedTransfers: number;
  confChanges: number;
  compactions: number;
  snapshotsSent: number;
}

export interface SimResult {
  readonly seed: number;
  readonly config: string;
  readonly violations: readonly Violation[];
  /** Steps of the fault phase. */
  readonly steps: number;
  /** Steps the HEAL phase took to converge (or gave up after). */
  readonly healSteps: number;
  readonly ticks: number;
  readonly fingerprint: string;
  readonly stats: SimStats;
}

type Phase = 'calm' | 'chaos' | 'heal';

type SimEvent =
  | { kind: 'msg'; time: number; seq: number; msg: Message; fromInc: number; lost: boolean }
  | { kind: 'tick'; time: number; seq: number; host: Host }
  | { kind: 'drive'; time: number; seq: number };

/** A planned transfer being watched for liveness (invariant 6). */
interface TransferWatch {
  readonly from: NodeId;
  readonly target: NodeId;
  readonly start: number;
  readonly voters: readonly NodeId[];
  leaderlessSince: number | null;
}

const MSG_CODE = new Map(MESSAGE_TYPES.map((t, i) => [t, i] as const));
const enc = new TextEncoder();

export function runSeed(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}

class Simulation implements HostEnv, Clock {
  step = 0;
  now = 0;
  readonly seed: number;
  readonly group = 1;
  readonly rng: Rng;
  readonly checker: Checker;
  readonly trace: Tracer;
  readonly hooks: Hooks;
  readonly raftOptions: RaftOptions;
  readonly bootstrapConf: ConfState;
  private readonly cfg: ClusterConfig;
  private readonly E: number;
  private readonly maxSteps: number;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly net = new Network();
  private readonly hosts = new Map<NodeId, Host>();
  private nextIdNum: number;
  private phase: Phase = 'calm';
  private phaseStart = 0;
  private phaseEnd = 0;
  private watch: TransferWatch | null = null;
  /** Time by which every slow or stale message sent so far has landed. */
  private quietAfter = 0;
  private seqs = { proposal: 0, read: 0 };
  private stopped = false;
  readonly stats: SimStats = {
    messages: 0,
    dropped: 0,
    proposals: 0,
    acked: 0,
    reads: 0,
    leaderships: 0,
    crashes: 0,
    transfers: 0,
    checkedTransfers: 0,
    confChanges: 0,
    compactions: 0,
    snapshotsSent: 0,
  };

  constructor(opts: SimOptions) {
    this.seed = opts.seed;
    this.maxSteps = opts.steps ?? DEFAULT_STEPS;
    this.hooks = opts.hooks ?? {};
    this.rng = new Rng(opts.seed);
    this.checker = new Checker(this);
    this.trace = new Tracer(this, opts.trace ?? null);
    this.cfg = chooseConfig(this.rng);
    this.raftOptions = this.cfg.raft;
    this.bootstrapConf = this.cfg.conf;
    this.E = this.cfg.raft.electionTicks;
    const ids = [...this.cfg.conf.voters, ...this.cfg.conf.learners];
    this.nextIdNum = ids.length + 1;
    this.trace.line(() => `seed ${this.seed}: ${describeConfig(this.cfg)}`);
    for (const id of ids) this.addHost(id, this.cfg.conf);
    this.queue.push({ kind: 'drive', time: this.rng.int(1, TICK) });
    this.enterPhase('calm');
  }

  get ticks(): number {
    return this.now / TICK;
  }

  // --- HostEnv ---------------------------------------------------------------------------------

  send(from: Host, m: Message): boolean {
    this.stats.messages++;
    const to = this.hosts.get(m.to);
    if (m.type === 'snap') this.stats.snapshotsSent++;
    // A refused connection: the target is down or cut off right now.
    if (!to?.up || !this.net.linkUp(m.from, m.to)) {
      this.stats.dropped++;
      this.trace.line(
        () => `${m.from} -> ${m.to} ${fmtMsg(m)} REFUSED (${!to ? 'no such node' : !to.up ? 'down' : 'link cut'})`,
      );
      if (m.type === 'snap')
        this.queue.push({ kind: 'msg', time: this.now + 1, msg: m, fromInc: from.incarnation, lost: true });
      return false;
    }
    const c = this.net.cond;
    const lost = c.drop > 0 && this.rng.chance(c.drop);
    if (lost) {
      this.stats.dropped++;
      this.trace.line(() => `${m.from} -> ${m.to} ${fmtMsg(m)} DROPPED`);
    }
    // Lost messages still get an event when they are snapshots, so the sender can be told.
    if (!lost || m.type === 'snap') this.schedule(m, from, lost);
    if (!lost && c.dup > 0 && this.rng.chance(c.dup)) {
      this.trace.line(() => `${m.from} -> ${m.to} ${fmtMsg(m)} DUPLICATED`);
      this.schedule(m, from, false);
    }
    return true;
  }

  private schedule(m: Message, from: Host, lost: boolean): void {
    const delay = this.net.delay(this.rng);
    const time = this.now + delay;
    // Only slow and stale messages matter to a calm window; ordinary ones land within a tick.
    if (delay >= TICK && time > this.quietAfter) this.quietAfter = time;
    this.queue.push({ kind: 'msg', time, msg: m, fromInc: from.incarnation, lost });
  }

  onTransferOutcome(host: Host, t: TransferOutcome): void {
    this.trace.line(
      () =>
        `TRANSFER ${host.id} -> ${t.target} ${t.status}${t.status === 'aborted' ? ` (${t.reason})` : ''} after ${t.ticks} ticks, term ${t.term}`,
    );
    this.trace.mark(80, host.num, t.status === 'completed' ? 1 : 0, t.ticks);
    if (t.status === 'completed') this.checker.onTransferCompleted(host.id, t.target, t.term);
  }

  onRole(host: Host, role: Role, term: number): void {
    if (role === 'leader') this.stats.leaderships++;
    this.trace.line(
      () =>
        `ROLE ${host.id} ${role} term ${term}${role === 'follower' && host.node?.inspect().leader ? ` (leader ${host.node.inspect().leader})` : ''}`,
    );
  }

  // --- the run ---------------------------------------------------------------------------------

  run(): SimResult {
    while (this.step < this.maxSteps && !this.stopped) this.stepOnce();
    const mainSteps = this.step;
    if (!this.stopped) this.heal();
    for (const h of this.hosts.values()) {
      const r = h.node?.inspect();
      this.trace.mark(99, h.num, r ? r.term : -1, h.sm.applied);
    }
    this.stats.acked = this.checker.ackedCount;
    return {
      seed: this.seed,
      config: describeConfig(this.cfg),
      violations: this.checker.violations,
      steps: mainSteps,
      healSteps: this.step - mainSteps,
      ticks: this.ticks,
      fingerprint: this.trace.fp.hex(),
      stats: this.stats,
    };
  }

  private stepOnce(): void {
    const ev = this.queue.pop();
    if (!ev) throw new Error('event queue ran dry (ticks always reschedule)');
    this.now = ev.time;
    const before = this.checker.violations.length;
    let counted = false;
    try {
      counted = this.handle(ev);
    } catch (e) {
      const err =
        e instanceof Error
          ? `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}`
          : String(e);
      this.checker.violate('exception', `uncaught exception: ${err}`);
      counted = true;
    }
    if (counted) {
      this.step++;
      this.watchTransfer();
    }
    if (this.checker.violations.length > before) {
      for (const v of this.checker.violations.slice(before)) {
        this.trace.line(() => `VIOLATION ${v.kind}: ${v.detail}`);
        this.trace.fp.addString(v.kind);
      }
      // Everything after the first violation is a consequence of it: stop while the trace is short.
      this.stopped = true;
    }
  }

  private handle(ev: SimEvent): boolean {
    switch (ev.kind) {
      case 'tick': {
        const h = ev.host;
        this.queue.push({ kind: 'tick', time: ev.time + TICK, host: h });
        if (!h.up) return false;
        // A paused process's timers do not fire; the host counts the ticks it owes and replays
        // them on resume (host contract: time that passed is never skipped).
        if (h.pausedUntil > this.now) {
          h.missedTicks++;
          return false;
        }
        this.catchUpTicks(h);
        if (!h.up) return true; // crashed while catching up
        this.trace.mark(1, h.num);
        this.failureDetector(h);
        if (h.up) h.tick();
        return true;
      }
      case 'msg': {
        const to = this.hosts.get(ev.msg.to);
        if (to?.up && to.pausedUntil > this.now && !ev.lost) {
          // Waits in the frozen process's socket buffer; re-queued in arrival order.
          this.queue.push({ ...ev, time: to.pausedUntil });
          return false;
        }
        if (to?.up) this.catchUpTicks(to);
        this.deliver(ev.msg, ev.fromInc, ev.lost); // deliver() copes with a host that went down
        return true;
      }
      case 'drive':
        this.queue.push({ kind: 'drive', time: ev.time + this.rng.int(15, 70) });
        return this.drive();
    }
  }

  private catchUpTicks(h: Host): void {
    // Half the time the host coalesces what it owes into one tick that says how much time passed
    // (as the runtime's timer does under load): election clocks then run slow, the lease clock
    // must not.
    if (h.missedTicks > 1 && h.up && this.rng.chance(0.5)) {
      const n = h.missedTicks;
      h.missedTicks = 0;
      // That host's election clock now runs behind real time: the time bound of a watched
      // transfer (invariant 6) no longer applies to this window.
      this.watch = null;
      h.tick(n);
      return;
    }
    while (h.missedTicks > 0 && h.up) {
      h.missedTicks--;
      h.tick();
    }
  }

  private deliver(m: Message, fromInc: number, lost: boolean): void {
    const to = this.hosts.get(m.to);
    const from = this.hosts.get(m.from);
    const arrives = !lost && to !== undefined && to.up && this.net.linkUp(m.from, m.to);
    this.trace.mark(2, MSG_CODE.get(m.type) ?? 99, m.term, arrives ? 1 : 0);
    if (!arrives) {
      this.trace.line(() => `${m.from} -> ${m.to} ${fmtMsg(m)} LOST`);
    } else {
      this.trace.line(() => `${m.from} -> ${m.to} ${fmtMsg(m)}`);
      to.deliver(m);
    }
    // The sender's transport reports how a snapshot stream ended (sometimes it never says).
    if (m.type === 'snap' && from?.up && from.incarnation === fromInc && this.rng.chance(0.8)) {
      from.reportSnapshot(m.to, arrives);
    }
  }

  /** The host's node-liveness layer (it knows which nodes are up and reachable, not their roles):
   *  a quiesced follower whose leader is down or unreachable is told so, otherwise it would wait
   *  forever with its election clock stopped; a quiesced leader is woken when a peer it had
   *  marked unreachable comes back. */
  private failureDetector(h: Host): void {
    const n = h.node!;
    if (n.inspect().role === 'leader' && n.isQuiesced()) {
      // The other direction: a peer marked unreachable (it did not block quiescence) is back.
      // Only a woken leader can tell it what it missed; a learner would otherwise lag forever.
      for (const pr of n.inspect().tracker.progress) {
        const id = pr.id;
        if (id === h.id || !pr.unreachable || !this.hosts.get(id)?.up) continue;
        if (this.net.linkUp(h.id, id) && this.net.linkUp(id, h.id)) {
          h.wake();
          return;
        }
      }
    }
    const leader = n.inspect().leader;
    if (n.inspect().role !== 'follower' || leader === '' || !n.isQuiesced()) return;
    const lh = this.hosts.get(leader);
    if (!lh?.up || !this.net.linkUp(leader, h.id)) h.leaderUnreachable();
  }

  private addHost(id: NodeId, initialConf: ConfState): Host {
    const h = new Host(id, Number(id.slice(1)), this, initialConf);
    this.hosts.set(id, h);
    this.queue.push({ kind: 'tick', time: this.now + this.rng.int(1, TICK), host: h });
    return h;
  }

  // --- phases ----------------------------------------------------------------------------------

  private enterPhase(p: 'calm' | 'chaos'): void {
    this.phase = p;
    this.phaseStart = this.now;
    const len = p === 'calm' ? this.rng.int(4 * this.E, 9 * this.E) : this.rng.int(3 * this.E, 8 * this.E);
    this.phaseEnd = this.now + len * TICK;
    if (p === 'calm') {
      this.removeFaults();
    } else {
      this.net.cond = this.randomConditions();
    }
    this.trace.line(() => `PHASE ${p} for ${len} ticks (${this.net.describe()})`);
    this.trace.mark(70, p === 'calm' ? 0 : 1, len);
  }

  private removeFaults(): void {
    this.net.heal();
    this.net.cond = CALM;
    for (const h of this.hosts.values()) {
      h.armedCrash = null;
      h.pausedUntil = 0;
      if (!h.up) h.restart();
    }
  }

  private randomConditions(): Conditions {
    return {
      drop: this.rng.pick([0, 0, 0.02, 0.05, 0.15]),
      dup: this.rng.pick([0, 0.02, 0.05]),
      longDelay: this.rng.pick([0, 0.03, 0.1]),
    };
  }

  // --- driver ----------------------------------------------------------------------------------

  /** One client/admin/fault action. Returns whether it counts as a step. */
  private drive(): boolean {
    if (this.phase === 'heal') return false;
    if (this.now >= this.phaseEnd) this.enterPhase(this.phase === 'calm' ? 'chaos' : 'calm');
    if (this.phase === 'calm') {
      const a = this.rng.weighted({ propose: 40, burst: 6, read: 14, transfer: 6, compact: 3, wake: 1 });
      return this.act(a);
    }
    const down = [...this.hosts.values()].filter((h) => !h.up).length;
    const a = this.rng.weighted({
      propose: 30,
      burst: 5,
      read: 10,
      transfer: 5,
      conf: 5,
      campaign: 1,
      wake: 1,
      compact: 3,
      crash: 3,
      crashMidReady: 3,
      crashRestart: 2,
      restart: 2 + 6 * down,
      partition: 4,
      healNet: 3,
      netCond: 2,
      pause: 2,
    });
    return this.act(a);
  }

  private act(a: string): boolean {
    switch (a) {
      case 'propose':
        return this.propose(1);
      case 'burst':
        return this.propose(this.rng.int(2, 8));
      case 'read':
        return this.read();
      case 'transfer':
        return this.phase === 'calm' ? this.checkedTransfer() : this.randomTransfer();
      case 'conf':
        return this.confChange();
      case 'campaign':
        return this.onRandomUp((h) => {
          this.trace.line(() => `CAMPAIGN ${h.id}`);
          h.campaign();
        });
      case 'wake':
        return this.onRandomUp((h) => h.wake());
      case 'compact':
        return this.onRandomUp((h) => {
          if (h.compact(this.rng.int(0, 5))) this.stats.compactions++;
        });
      case 'crash':
        return this.onVictim((h) => {
          this.stats.crashes++;
          h.crash('fault');
        });
      case 'crashMidReady':
        return this.onVictim((h) => {
          const armed = {
            point: this.rng.pick(CRASH_POINTS),
            trigger: this.rng.pick(CRASH_TRIGGERS),
            reboot: this.rng.chance(0.5),
          };
          h.armedCrash = armed;
          this.stats.crashes++;
          this.trace.line(
            () =>
              `ARM crash of ${h.id} at ${armed.point} of the next ${armed.trigger} Ready${armed.reboot ? ', then reboot' : ''}`,
          );
        });
      case 'crashRestart':
        return this.onVictim((h) => {
          this.stats.crashes++;
          h.crash('fault, fast reboot');
          h.restart();
        });
      case 'restart': {
        const down = [...this.hosts.values()].filter((h) => !h.up);
        if (down.length === 0) return false;
        this.rng.pick(down).restart();
        return true;
      }
      case 'partition':
        return this.partition();
      case 'pause':
        return this.onVictim((h) => {
          const ticks = this.rng.int(1, 3 * this.E);
          h.pausedUntil = this.now + ticks * TICK;
          this.trace.line(() => `PAUSE ${h.id} for ${ticks} ticks`);
          this.trace.mark(16, h.num, ticks);
        });
      case 'healNet':
        this.net.heal();
        this.trace.line(() => `HEAL network`);
        return true;
      case 'netCond':
        this.net.cond = this.randomConditions();
        this.trace.line(() => `NET ${this.net.describe()}`);
        return true;
      default:
        throw new Error(`unknown action ${a}`);
    }
  }

  /** Hosts that can take a request now (up and not frozen). */
  private upHosts(): Host[] {
    return [...this.hosts.values()].filter((h) => h.up && h.pausedUntil <= this.now);
  }

  private onRandomUp(f: (h: Host) => void): boolean {
    const up = this.upHosts();
    if (up.length === 0) return false;
    f(this.rng.pick(up));
    return true;
  }

  /** Crash targets lean towards the leader: that is where the interesting windows are. */
  private onVictim(f: (h: Host) => void): boolean {
    const leader = this.currentLeader();
    if (leader && this.rng.chance(0.35)) {
      f(leader);
      return true;
    }
    return this.onRandomUp(f);
  }

  /** The up node that is leader in the highest term, if any. */
  private currentLeader(): Host | null {
    let best: Host | null = null;
    for (const h of this.hosts.values()) {
      const r = h.node?.inspect();
      if (r && r.role === 'leader' && (!best || r.term > best.node!.inspect().term)) best = h;
    }
    return best;
  }

  /** The current leader if it can take a request right now (not frozen). */
  private reachableLeader(): Host | null {
    const leader = this.currentLeader();
    return leader && leader.pausedUntil <= this.now ? leader : null;
  }

  private clientTarget(bias = 0.85): Host | null {
    const leader = this.reachableLeader();
    if (leader && this.rng.chance(bias)) return leader;
    const up = this.upHosts();
    return up.length > 0 ? this.rng.pick(up) : null;
  }

  private propose(n: number): boolean {
    const h = this.clientTarget();
    if (!h) return false;
    for (let i = 0; i < n && h.up; i++) {
      const label = `p${++this.seqs.proposal}`;
      const pad = this.rng.chance(0.2) ? '.'.repeat(this.rng.int(1, 120)) : '';
      const r = h.propose(enc.encode(label + pad), label);
      this.stats.proposals++;
      this.trace.mark(10, h.num, r.ok ? r.index : 0);
      this.trace.line(() => `PROPOSE ${label} to ${h.id}: ${r.ok ? `index ${r.index} term ${r.term}` : r.reason}`);
    }
    return true;
  }

  private read(): boolean {
    // Reads often go to an arbitrary node: stale leaders serving reads is what this hunts for.
    const h = this.clientTarget(0.5);
    if (!h) return false;
    const ctx = `r${++this.seqs.read}`;
    // The read's linearization point is no earlier than its issue: fix the acknowledged set now.
    this.checker.onReadIssued(ctx);
    const r = h.readIndex(ctx);
    this.stats.reads++;
    this.trace.mark(11, h.num, r.ok ? 1 : 0);
    this.trace.line(() => `READ ${ctx} at ${h.id}: ${r.ok ? 'pending' : r.reason}`);
    return true;
  }

  /** Chaos: transfers to anyone, including learners, self and strangers (must be rejected). */
  private randomTransfer(): boolean {
    const h = this.rng.chance(0.7) ? (this.reachableLeader() ?? this.clientTarget()) : this.clientTarget();
    if (!h) return false;
    const conf = h.node!.inspect().tracker.conf();
    const kind = this.rng.weighted({ voter: 60, learner: 10, self: 10, stranger: 10, any: 10 });
    let target: NodeId;
    if (kind === 'voter' && conf.voters.length > 0) target = this.rng.pick(conf.voters);
    else if (kind === 'learner' && conf.learners.length > 0) target = this.rng.pick(conf.learners);
    else if (kind === 'self') target = h.id;
    else if (kind === 'stranger') target = 'x9';
    else target = this.rng.pick([...this.hosts.keys()]);
    const r = h.transferLeader(target);
    this.stats.transfers++;
    this.trace.mark(12, h.num, r.ok ? 1 : 0);
    this.trace.line(
      () => `TRANSFER-REQ ${h.id} -> ${target}: ${r.ok ? (r.started ? 'started' : 'already') : r.reason}`,
    );
    return true;
  }

  /** Calm: a planned transfer from a settled leader to a healthy voter, watched for liveness. */
  private checkedTransfer(): boolean {
    if (this.watch) return false;
    if (this.now < this.quietAfter || this.now - this.phaseStart < TICK) return false;
    const leader = this.currentLeader();
    if (!leader) return false;
    const lr = leader.node!.inspect();
    const conf = lr.tracker.conf();
    for (const id of [...conf.voters, ...conf.learners]) {
      const r = this.hosts.get(id)?.node?.inspect();
      if (!r || r.term > lr.term) return false;
      if (conf.voters.includes(id) && (r.term !== lr.term || r.leader !== leader.id)) return false;
    }
    const candidates = conf.voters.filter((v) => v !== leader.id);
    if (candidates.length === 0 || lr.transfer) return false;
    const target = this.rng.pick(candidates);
    const r = leader.transferLeader(target);
    this.stats.transfers++;
    this.trace.mark(13, leader.num, r.ok ? 1 : 0);
    this.trace.line(
      () =>
        `TRANSFER-REQ (watched) ${leader.id} -> ${target}: ${r.ok ? (r.started ? 'started' : 'already') : r.reason}`,
    );
    if (r.ok && r.started) {
      this.stats.checkedTransfers++;
      this.watch = { from: leader.id, target, start: this.now, voters: conf.voters, leaderlessSince: null };
    }
    return true;
  }

  /** Invariant 6: during a calm window a planned transfer never leaves the group leaderless for
   *  more than one election timeout plus slack. */
  private watchTransfer(): void {
    const w = this.watch;
    if (!w) return;
    if (this.phase !== 'calm') {
      this.watch = null; // faults resumed: the window is no longer calm, nothing to judge
      return;
    }
    let maxTerm = 0;
    let leaderTerm = -1;
    for (const id of w.voters) {
      const r = this.hosts.get(id)?.node?.inspect();
      if (!r) continue;
      if (r.term > maxTerm) maxTerm = r.term;
      if (r.role === 'leader' && r.term > leaderTerm) leaderTerm = r.term;
    }
    if (leaderTerm >= maxTerm) {
      w.leaderlessSince = null;
      if (this.now - w.start > 3 * this.E * TICK) this.watch = null;
      return;
    }
    if (w.leaderlessSince === null) w.leaderlessSince = this.now;
    const gap = (this.now - w.leaderlessSince) / TICK;
    if (gap > this.E + TRANSFER_SLACK_TICKS) {
      this.checker.violate(
        'transfer-liveness',
        `transfer ${w.from} -> ${w.target} started at t=${(w.start / TICK).toFixed(2)} in a calm window left the group leaderless for ${gap.toFixed(2)} ticks (> electionTicks ${this.E} + ${TRANSFER_SLACK_TICKS}); ${describeNodes(this.hosts.values())}`,
      );
      this.watch = null;
    }
  }

  private confChange(): boolean {
    const leader = this.reachableLeader();
    if (!leader) {
      // Nobody to ask: exercise the NotLeader rejection instead.
      return this.onRandomUp((h) => {
        const r = h.proposeConfChange({ type: 'addLearner', node: 'x9' });
        this.trace.line(() => `CONF-REQ ${h.id} addLearner x9: ${r.ok ? 'ok' : r.reason}`);
      });
    }
    const conf = leader.node!.inspect().tracker.conf();
    const members = conf.voters.length + conf.learners.length;
    const canSpawn = this.nextIdNum <= MAX_IDS && members < MAX_MEMBERS;
    const nv = conf.voters.length;
    // Removing or demoting a voter must leave enough live voters for a quorum.
    const upVoters = conf.voters.filter((v) => this.hosts.get(v)?.up).length;
    const canShrink = (nv > 3 || (nv === 3 && this.rng.chance(0.15))) && upVoters - 1 >= Math.floor((nv - 1) / 2) + 1;
    const op = this.rng.weighted({
      addLearner: canSpawn ? 4 : 0,
      addVoterFresh: canSpawn && nv >= 3 ? 1 : 0,
      promote: conf.learners.length > 0 ? 4 : 0,
      removeLearner: conf.learners.length > 0 ? 1 : 0,
      removeVoter: canShrink ? 2 : 0,
      demote: canShrink ? 1 : 0,
      edge: 1,
    });
    let cc: ConfChange;
    let spawn: NodeId | null = null;
    switch (op) {
      case 'addLearner':
        spawn = nodeId(this.nextIdNum);
        cc = { type: 'addLearner', node: spawn };
        break;
      case 'addVoterFresh':
        spawn = nodeId(this.nextIdNum);
        cc = { type: 'addVoter', node: spawn };
        break;
      case 'promote':
        cc = { type: 'addVoter', node: this.rng.pick(conf.learners) };
        break;
      case 'removeLearner':
        cc = { type: 'remove', node: this.rng.pick(conf.learners) };
        break;
      case 'removeVoter':
        cc = { type: 'remove', node: this.rng.pick(conf.voters) };
        break;
      case 'demote':
        cc = { type: 'addLearner', node: this.rng.pick(conf.voters) };
        break;
      default: // edge cases, mostly invalid (the core must reject them), some merely unusual
        cc = this.rng.pick<ConfChange>([
          { type: 'remove', node: 'x9' },
          { type: 'addVoter', node: this.rng.pick(conf.voters) },
          { type: 'remove', node: conf.voters[0] },
          { type: 'addLearner', node: 'bad:id' },
        ]);
    }
    const others = this.upHosts();
    const target = others.length > 0 && this.rng.chance(0.1) ? this.rng.pick(others) : leader;
    const r = target.proposeConfChange(cc);
    this.stats.confChanges++;
    this.trace.mark(14, target.num, r.ok ? r.index : 0);
    this.trace.line(
      () =>
        `CONF-REQ ${target.id} ${cc.type} ${cc.node}: ${r.ok ? `index ${r.index}` : `${r.reason}${r.reason === 'InvalidConfChange' ? ` (${r.detail})` : ''}`}`,
    );
    if (r.ok && spawn !== null) {
      this.nextIdNum++;
      this.addHost(spawn, this.cfg.joinConf);
    }
    return true;
  }

  private partition(): boolean {
    const ids = [...this.hosts.keys()];
    if (ids.length < 2) return false;
    const kind = this.rng.weighted({ isolateLeader: 3, isolate: 3, split: 3, oneWay: 2 });
    const leader = this.currentLeader();
    if (kind === 'isolateLeader' && leader) this.net.isolate(leader.id);
    else if (kind === 'isolate' || kind === 'isolateLeader') this.net.isolate(this.rng.pick(ids));
    else if (kind === 'split') this.net.split(this.rng.subset(ids, 0.5));
    else {
      const a = this.rng.pick(ids);
      const b = this.rng.pick(ids.filter((x) => x !== a));
      this.net.cutOneWay(a, b);
      if (this.rng.chance(0.3)) this.net.cutOneWay(b, a);
    }
    this.trace.line(() => `PARTITION ${kind}: ${this.net.describe()}`);
    this.trace.mark(15, ids.length);
    return true;
  }

  // --- HEAL ------------------------------------------------------------------------------------

  private heal(): void {
    this.phase = 'heal';
    this.watch = null;
    this.removeFaults();
    this.trace.line(() => `PHASE heal: all faults removed, every node up`);
    this.trace.mark(71);
    const deadline = this.now + HEAL_ELECTIONS * this.E * TICK;
    let nextCheck = this.now;
    let why: string | null = 'not checked yet';
    while (!this.stopped && this.now < deadline) {
      this.stepOnce();
      if (this.now >= nextCheck) {
        nextCheck = this.now + TICK / 2;
        why = this.unstable();
        if (why === null) break;
      }
    }
    if (this.stopped) return;
    if (why !== null) {
      const hints = diagnose(this.hosts);
      this.checker.violate(
        'liveness',
        `no stable leader ${HEAL_ELECTIONS} election timeouts after HEAL: ${why}${hints.length > 0 ? ` [diagnosis: ${hints.join('; ')}]` : ''}; ${describeNodes(this.hosts.values())}`,
      );
      return;
    }
    this.finalChecks();
  }

  /** Null when the group has converged, else why not. */
  private unstable(): string | null {
    const leader = this.currentLeader();
    if (!leader) return 'no leader';
    const lr = leader.node!.inspect();
    const conf = lr.tracker.conf();
    let leaders = 0;
    for (const id of [...conf.voters, ...conf.learners]) {
      const h = this.hosts.get(id);
      const r = h?.node?.inspect();
      if (!h || !r) return `member ${id} is down`;
      if (r.role === 'leader') leaders++;
      if (r.term !== lr.term || r.leader !== leader.id)
        return `${id} is at term ${r.term} following '${r.leader}', leader ${leader.id} is at term ${lr.term}`;
      if (h.sm.applied !== lr.log.committed) return `${id} applied ${h.sm.applied} of ${lr.log.committed}`;
    }
    if (leaders !== 1) return `${leaders} leaders among members`;
    if (lr.log.committed !== lr.log.lastIndex())
      return `leader ${leader.id} committed ${lr.log.committed} of ${lr.log.lastIndex()}`;
    if (lr.log.termOf(lr.log.committed) !== lr.term)
      return `leader ${leader.id} has not committed an entry of its term`;
    return null;
  }

  private finalChecks(): void {
    const leader = this.currentLeader()!;
    const conf = leader.node!.inspect().tracker.conf();
    const members = [...conf.voters, ...conf.learners].map((id) => this.hosts.get(id)!);
    const ref = leader.sm;
    for (const h of members) {
      if (h.sm.applied !== ref.applied || h.sm.hash !== ref.hash) {
        this.checker.violate(
          'state-machine-safety',
          `after HEAL ${h.id} has state (${h.sm.applied}, ${h.sm.hash}) but leader ${leader.id} has (${ref.applied}, ${ref.hash})`,
        );
      }
    }
    this.checker.checkAckedApplied(members.map((h) => ({ id: h.id, applied: h.sm.applied })));
    this.trace.line(
      () =>
        `STABLE leader ${leader.id} term ${leader.node!.inspect().term} applied ${ref.applied} members ${members.map((h) => h.id).join(',')} acked ${this.checker.ackedCount}`,
    );
  }
}
