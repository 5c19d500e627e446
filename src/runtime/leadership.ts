// Leadership: planned moves of group leadership and what decides whether they may happen now.
// It runs verified transfers (from any node, forwarded to the current leader), drains and
// undrains this node, hands over at the leader's end after the preflight checks on what the
// target said about itself, and keeps the evidence those decisions weigh: which peers are
// draining, their latest views of themselves and their timing, round trips, and unplanned leader
// changes (the stability advisor refuses planned moves while the cluster flaps). Planned and
// unplanned leader changes are counted apart, by who planned them, because only the unplanned
// ones say anything about stability.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import type { LedInfo } from '../balancer/balancer.js';
import type { Envelope } from '../transport/index.js';
import { TransferError, type RuntimeError } from './errors.js';
import { throwIfAborted } from './abort.js';
import type { NodeEventSink } from './events.js';
import { Histogram, RecentSamples, tenthMs } from './histogram.js';
import { adviseStability, type StabilityWarning } from './advisor.js';
import { fresh, slowerThanLeader, type NodeView } from './preflight.js';
import { notice, type PeerTiming, type RequestKind, type Requests } from './peerprotocol.js';
import type { GroupCall, LeaderChangeCause, LeaderChangeKind, PlannedCause, ShardNotice } from './protocol.js';
import type { TransferDone } from './shard.js';
import type { Leading } from './shardtransfers.js';
import type { NodeStatus } from './status.js';

export interface TransferResult {
  readonly group: number;
  /** The leader that handed over (the target itself when it already led). */
  readonly from: NodeId;
  readonly to: NodeId;
  /** The target's term once verified. */
  readonly term: number;
  /** Request to verified new leader. */
  readonly ms: number;
  /** The target's lag in entries at request time, as its leader saw it (0 when it already led). */
  readonly lag: number;
  /** Where the time went: the target catching up (request to TimeoutNow sent), its campaign
   *  (TimeoutNow to the old leader hearing it lead) and verification (to a committed entry of
   *  its term, confirmed by the target). Request forwarding counts in catch-up. */
  readonly phases: { readonly catchUpMs: number; readonly campaignMs: number; readonly verifyMs: number };
  /** Commit latency p99 (proposal accepted -> committed, last minute, ms) of the shard that led
   *  the group before (as it handed over) and of the target's (as it confirmed): what writes of
   *  the group saw before, and what the target's other groups see now. null: no writes there.
   *  A target much worse than its predecessor is the "green dashboard, bad leader" case. */
  readonly commitP99Ms: { readonly before: number | null; readonly after: number | null };
}

export interface DrainReport {
  readonly node: NodeId;
  readonly moved: number;
  readonly failed: { readonly group: number; readonly reason: string }[];
  readonly ms: number;
  readonly transfers: TransferResult[];
}

export interface TransferOptions {
  /** Deadline for the whole transfer, verification included. Default max(5 s, 3 election timeouts). */
  readonly timeoutMs?: number;
  /** Refuse (TargetLagging) a target further behind than this many entries. Default 10,000. */
  readonly maxLagEntries?: number;
  /** Who planned it, for flotilla_leader_changes_total{cause}. Default 'transfer'. */
  readonly cause?: PlannedCause;
  /** Override the refusals that protect service rather than safety: TargetLagging,
   *  TargetNeedsSnapshot, TargetNoQuorum, TargetSlow and ClusterUnstable. */
  readonly force?: boolean;
  /** Abort: the call rejects at once and no leader is asked (again) to hand over; a hand-over
   *  already asked for may still complete. */
  readonly signal?: AbortSignal;
}

export interface DrainOptions {
  readonly avoid?: NodeId[];
  readonly concurrency?: number;
  readonly timeoutMs?: number;
  readonly force?: boolean;
  /** Abort: the call rejects at once and no further group is moved (moves under way may still
   *  complete). The node stays marked draining until undrain(). */
  readonly signal?: AbortSignal;
}

/** What leadership needs of its node. */
export interface LeadershipHost {
  readonly id: NodeId;
  /** Every other node (each hears this node's drain state). */
  readonly peers: readonly NodeId[];
  readonly electionMs: number;
  readonly electionTicks: number;
  readonly log: Logger;
  /** The leader of each group as last heard: a transfer corrects it as it learns. */
  readonly leaders: Map<number, NodeId>;
  replicasOf(group: number): NodeId[];
  isConnected(peer: NodeId): boolean;
  send(peer: NodeId, e: Envelope): void;
  /** A request to the shard that hosts `group`. */
  readonly shard: GroupCall;
  /** A message to every shard. */
  broadcast(m: ShardNotice): void;
  /** Request `kind` of node `target`; resolves with its answer, as the peer sent it. */
  forward<K extends RequestKind>(target: NodeId, kind: K, payload: Requests[K], timeoutMs: number): Promise<unknown>;
  /** Where a request for `group` goes on attempt `n` (the router's choice). */
  pickTarget(group: number, replicas: NodeId[], hint: NodeId, n: number, anyReplica: boolean): NodeId;
  ledGroups(): Promise<LedInfo[]>;
  /** Where a drain should move `g` first (the balancer's ranking). */
  drainTargets(g: LedInfo, avoid: ReadonlySet<NodeId>, draining: ReadonlySet<NodeId>): NodeId[];
  uptimeMs(): number;
  eventLoopP99Ms(): number;
  /** Per shard: its storage commit p99 and the groups with an even number of voters. */
  status(): Promise<Pick<NodeStatus, 'shards'>>;
  /** The node's events: transfer outcomes and drain progress are emitted here. */
  readonly events: NodeEventSink;
}

/** How far back the round-trip p99 of the stability advisor looks. */
const RECENT_RTT_MS = 60_000;

/** What a transfer weighs of the old leader's hand-over (a TransferDone). */
type Handover = Pick<TransferDone, 'campaignMs' | 'lag' | 'commitP99Ms'>;

/** A peer's answer to `transfer`, checked as anything from the wire (a bad field counts as none). */
function handoverOf(x: unknown): Handover {
  const r: Partial<Record<keyof Handover, unknown>> = typeof x === 'object' && x !== null ? x : {};
  return {
    campaignMs: Number(r.campaignMs) || 0,
    lag: Number(r.lag) || 0,
    commitP99Ms: typeof r.commitP99Ms === 'number' ? r.commitP99Ms : null,
  };
}

/** A peer's answer to `awaitLead`, checked likewise. */
function leadingOf(x: unknown): Leading {
  const r: Partial<Record<keyof Leading, unknown>> = typeof x === 'object' && x !== null ? x : {};
  return { term: Number(r.term) || 0, commitP99Ms: typeof r.commitP99Ms === 'number' ? r.commitP99Ms : null };
}

/** A retry wait spread over [ms/2, ms]: callers that failed together (a leader died under them)
 *  do not come back in lock step. */
export function jittered(ms: number): number {
  return ms * (0.5 + Math.random() / 2);
}

export class Leadership {
  /** Transfers this node requested, by outcome ('completed' or the failure reason). */
  readonly transferStats: Record<string, number> = {};
  /** Leader changes seen by local replicas (once per replica that saw a new leader), by cause. */
  readonly leaderChangesByCause: Record<LeaderChangeCause, number> = {
    transfer: 0,
    drain: 0,
    balancer: 0,
    failover: 0,
    election: 0,
  };
  /** Verified transfers requested here (request -> verified new leader) and peer round trips. */
  readonly histograms = {
    transfer: new Histogram(),
    rtt: new Histogram(),
    /** The phases of those transfers (see TransferResult.phases). */
    transferCatchUp: new Histogram(),
    transferCampaign: new Histogram(),
    transferVerify: new Histogram(),
  };
  /** Nodes (peers) that announced they are draining: never a transfer target. */
  private readonly drainingNodes = new Set<NodeId>();
  private draining: boolean;
  /** Round trips to peers (ms) for the stability advisor: the last minute only, as the commit
   *  p99. Kept by count instead, a slow start-up election on a busy machine stayed in the p99 for
   *  minutes at two pings a second and kept planned transfers refused as ClusterUnstable. */
  private readonly rtts = new RecentSamples(1024, RECENT_RTT_MS);
  /** When local replicas saw an unplanned leader change (ms since epoch), for flapping detection:
   *  a drain or a balancer round moves many leaders on purpose and is not flapping. */
  private readonly leaderChanges: number[] = [];
  /** Why transfers this node asked for, handed over or is the target of were started, by group,
   *  until shortly after their deadline: how a planned change is told apart by who planned it. */
  private readonly plannedCauses = new Map<number, { cause: PlannedCause; until: number }>();
  /** What each peer said about itself in its latest summary, and what this node last said. */
  private readonly views = new Map<NodeId, NodeView>();
  private ownView: NodeView | null = null;
  /** The timing each peer said it runs (on connect), for the advisor's mismatch check. */
  private readonly peerTiming = new Map<NodeId, PeerTiming>();
  private stability: { at: number; warnings: StabilityWarning[] } | null = null;

  constructor(
    private readonly host: LeadershipHost,
    draining: boolean,
  ) {
    this.draining = draining;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  drainingPeers(): NodeId[] {
    return [...this.drainingNodes];
  }

  /** FlotillaNode.transferLeader: from any node, so the hand-over is asked of whichever replica
   *  leads, again as leaders change under it, until the deadline. */
  async transfer(group: number, target: NodeId, o: TransferOptions = {}): Promise<TransferResult> {
    const h = this.host;
    const t0 = performance.now();
    const timeoutMs = o.timeoutMs ?? Math.max(5_000, 3 * h.electionMs);
    const cause = o.cause ?? 'transfer';
    const force = o.force === true;
    this.notePlanned(group, cause, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    const replicas = h.replicasOf(group);
    const outcome = (reason: string) => {
      this.transferStats[reason] = (this.transferStats[reason] ?? 0) + 1;
    };
    const signal = o.signal;
    const what = `transfer of group ${group}`;
    let from: NodeId = h.leaders.get(group) ?? '';
    try {
      throwIfAborted(what, signal);
      if (!replicas.includes(target))
        throw new TransferError('TargetNotMember', `transfer of group ${group}: ${target} holds no replica`);
      if (this.drainingNodes.has(target))
        throw new TransferError('TargetDraining', `transfer of group ${group}: ${target} is draining`);
      // The balancer has its own gates (it stands still while any node is unreachable or draining).
      if (!force && cause !== 'balancer') await this.refuseIfUnstable(`transfer of group ${group} to ${target}`);
      // The target reports when it leads with an entry of its term committed; asked now, so its
      // answer travels while the old leader hands over (no second round after the hand-over).
      const awaitLead = (ms: number): Promise<Leading> =>
        target === h.id
          ? h.shard(group, 'awaitLead', { group, timeoutMs: ms })
          : h.forward(target, 'awaitLead', { group, timeoutMs: ms, cause }, ms + 250).then(leadingOf);
      let led = awaitLead(timeoutMs);
      led.catch(() => undefined); // consumed below, unless the hand-over fails first
      let done = false;
      let handover: Handover | null = null;
      // A target that starts draining or drops its link meanwhile will not take over: say so
      // now rather than retry until the deadline (nodes stopping together drain at each other).
      const targetGone = () => {
        if (this.drainingNodes.has(target))
          throw new TransferError('TargetDraining', `transfer of group ${group}: ${target} started draining`);
        if (target !== h.id && !h.isConnected(target))
          throw new TransferError('TargetUnhealthy', `transfer of group ${group}: ${target} is unreachable`);
      };
      for (let n = 0; !done; n++) {
        const remaining = deadline - Date.now();
        if (remaining <= 10)
          throw new TransferError('Timeout', `transfer of group ${group} to ${target}: no leader answered in time`);
        throwIfAborted(what, signal);
        if (n > 0) targetGone();
        const leader =
          from && (from === h.id || h.isConnected(from)) ? from : h.pickTarget(group, replicas, '', n, false);
        if (leader === target) {
          // Believed to lead already: confirmed by the verification below, or forgotten.
          try {
            await (target === h.id
              ? h.shard(group, 'verify', { group, timeoutMs: Math.min(remaining, 1000) })
              : h.forward(
                  target,
                  'verify',
                  { group, timeoutMs: Math.min(remaining, 1000) },
                  Math.min(remaining, 1000) + 250,
                ));
            break;
          } catch (e) {
            if (!(e as RuntimeError).retryable) throw e;
            h.leaders.delete(group);
            from =
              (e as RuntimeError).leader && (e as RuntimeError).leader !== target ? (e as RuntimeError).leader : '';
            continue;
          }
        }
        const maxLagEntries = o.maxLagEntries ?? 10_000;
        try {
          handover =
            leader === h.id
              ? await this.handOver(group, target, remaining, maxLagEntries, [], force, cause)
              : handoverOf(
                  await h.forward(
                    leader,
                    'transfer',
                    {
                      group,
                      target,
                      timeoutMs: remaining,
                      maxLagEntries,
                      draining: [...this.drainingNodes],
                      cause,
                      force,
                    },
                    remaining + 250,
                  ),
                );
          from = leader;
          done = true;
        } catch (e) {
          const err = e as RuntimeError;
          if (err instanceof TransferError && err.reason === 'TargetIsSelf') break;
          if (err instanceof TransferError || !err.retryable) throw err;
          from = err.leader && replicas.includes(err.leader) ? err.leader : '';
          // Unavailable: the leader is still taking over (or a shard restarts): ask it again soon.
          if (!from || err.code === 'Unavailable') await sleep(jittered(Math.min(100, 5 * 2 ** Math.min(n, 5))));
        }
      }
      // Verify: the target leads and serves (a quorum follows it, an entry of its term committed).
      const handedAt = performance.now();
      let term = 0;
      let after: number | null = null;
      for (let n = 0; ; n++) {
        try {
          const r = await led;
          term = r.term;
          after = r.commitP99Ms;
          break;
        } catch (e) {
          const err = e as RuntimeError;
          const remaining = deadline - Date.now();
          if (remaining <= 10 || err.code === 'Timeout')
            throw new TransferError(
              'NotVerified',
              `transfer of group ${group} to ${target}: not confirmed as leading in time`,
            );
          if (!err.retryable) throw err;
          // The target was unreachable for a moment: ask again.
          await sleep(jittered(Math.min(50, 2 * 2 ** Math.min(n, 5))));
          if (!h.isConnected(target) && target !== h.id)
            throw new TransferError(
              'NotVerified',
              `transfer of group ${group} to ${target}: lost the link to the target`,
            );
          led = awaitLead(deadline - Date.now());
        }
      }
      h.leaders.set(group, target);
      const now = performance.now();
      const ms = tenthMs(now - t0);
      const campaignMs = handover ? Math.min(handover.campaignMs, handedAt - t0) : 0;
      const phases = {
        catchUpMs: tenthMs(handedAt - t0 - campaignMs),
        campaignMs: tenthMs(campaignMs),
        verifyMs: tenthMs(now - handedAt),
      };
      const lag = handover ? handover.lag : 0;
      outcome('completed');
      this.histograms.transfer.observeMs(now - t0);
      this.histograms.transferCatchUp.observeMs(phases.catchUpMs);
      this.histograms.transferCampaign.observeMs(phases.campaignMs);
      this.histograms.transferVerify.observeMs(phases.verifyMs);
      const before = handover ? handover.commitP99Ms : null;
      const commitP99Ms = { before, after };
      // Per group at debug: the `transfer` event, the metrics and the shard's periodic summary
      // carry the outcome; a drain of 100,000 groups would otherwise print as many lines.
      h.log.debug(
        { group, from: from || null, to: target, term, ms, lag, ...phases, commitP99Ms },
        'leader transfer verified',
      );
      if (h.events.wants('transfer'))
        h.events.emit('transfer', {
          group,
          from: from || target,
          to: target,
          ok: true,
          reason: 'completed',
          cause,
          ms,
        });
      return { group, from: from || target, to: target, term, ms, lag, phases, commitP99Ms };
    } catch (e) {
      const reason = e instanceof TransferError ? e.reason : ((e as RuntimeError).code ?? 'InvalidArgument');
      outcome(reason);
      const ms = Math.round(performance.now() - t0);
      h.log.info({ group, to: target, reason, ms }, 'leader transfer failed');
      if (h.events.wants('transfer'))
        h.events.emit('transfer', { group, from, to: target, ok: false, reason, cause, ms });
      throw e;
    }
  }

  /** FlotillaNode.drain: peers hear of it first, so that nothing is sent back while it runs. */
  async drain(o: DrainOptions = {}): Promise<DrainReport> {
    const h = this.host;
    const t0 = performance.now();
    if (!o.force) await this.refuseIfUnstable(`drain of ${h.id}`);
    this.draining = true;
    this.broadcastDrainState();
    // Healthy peers win this node's groups' elections first (it still campaigns if none can).
    h.broadcast({ kind: 'campaignDelay', ticks: 2 * h.electionTicks });
    const avoid = new Set(o.avoid ?? []);
    const moved: TransferResult[] = [];
    const failed: { group: number; reason: string }[] = [];
    let mine = await h.ledGroups();
    let found = 0;
    let next = 0;
    const progress = (done: boolean) => {
      if (h.events.wants('drain'))
        h.events.emit('drain', {
          node: h.id,
          moved: moved.length,
          failed: failed.length,
          remaining: found - moved.length - failed.length,
          done,
        });
    };
    const worker = async () => {
      while (next < mine.length && !o.signal?.aborted) {
        const g = mine[next++];
        // Ranked as the balancer ranks targets; nodes named in `avoid` only when nothing else can lead.
        const candidates = h.drainTargets(g, avoid, this.drainingNodes);
        if (candidates.length === 0) candidates.push(...h.drainTargets(g, new Set(), this.drainingNodes));
        if (candidates.length === 0) {
          failed.push({ group: g.group, reason: 'NoEligibleTarget' });
          progress(false);
          continue;
        }
        try {
          moved.push(
            await this.transfer(g.group, candidates[0], {
              timeoutMs: o.timeoutMs,
              cause: 'drain',
              force: o.force,
              signal: o.signal,
            }),
          );
        } catch (e) {
          failed.push({
            group: g.group,
            reason: e instanceof TransferError ? e.reason : ((e as RuntimeError).code ?? String(e)),
          });
        }
        progress(false);
      }
    };
    // A leadership can arrive while the drain runs (a move a peer started before it heard of the
    // drain, an election this node won): look again, a bounded number of times, for groups it
    // has not tried yet.
    const tried = new Set<number>();
    for (let pass = 0; pass < 3 && mine.length > 0 && !o.signal?.aborted; pass++) {
      for (const g of mine) tried.add(g.group);
      found += mine.length;
      next = 0;
      await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 16) }, worker));
      mine = (await h.ledGroups()).filter((g) => !tried.has(g.group));
    }
    const report = {
      node: h.id,
      moved: moved.length,
      failed,
      ms: Math.round(performance.now() - t0),
      transfers: moved,
    };
    h.log.info(
      { moved: report.moved, failed: failed.length, ms: report.ms, aborted: o.signal?.aborted === true },
      'drain finished',
    );
    progress(true);
    return report;
  }

  undrain(): void {
    this.draining = false;
    this.host.broadcast({ kind: 'campaignDelay', ticks: 0 });
    this.broadcastDrainState();
    this.host.log.info('undrained');
  }

  /** At the leader's node: the preflight checks that need what the target said about itself
   *  (its links, disk and CPU, from its latest summary), then the hand-over by the shard. */
  handOver(
    group: number,
    target: NodeId,
    timeoutMs: number,
    maxLagEntries: number,
    draining: NodeId[],
    force: boolean,
    cause: PlannedCause,
  ): Promise<TransferDone> {
    const now = Date.now();
    const view = fresh(this.views.get(target), now);
    // The balancer weighs the same fsync and CPU figures when it ranks targets; refusing its
    // moves here only turned a busy moment into hundreds of failed moves.
    if (!force && cause !== 'balancer') {
      const slow = slowerThanLeader(fresh(this.ownView, now), view);
      if (slow)
        return Promise.reject(
          new TransferError('TargetSlow', `transfer of group ${group} to ${target}: ${slow}`, this.host.id),
        );
    }
    return this.host.shard(group, 'transfer', {
      group,
      target,
      timeoutMs,
      maxLagEntries,
      draining: [...new Set([...draining, ...this.drainingNodes])],
      force,
      reach: view?.reach ? [...view.reach] : null,
    });
  }

  /** A local replica saw `group`'s leader change: counted by cause, which is returned. */
  countLeaderChange(group: number, kind: LeaderChangeKind): LeaderChangeCause {
    let cause: LeaderChangeCause = kind;
    if (kind === 'transfer') {
      const p = this.plannedCauses.get(group);
      if (p && p.until > Date.now()) cause = p.cause;
    } else {
      this.leaderChanges.push(Date.now());
      if (this.leaderChanges.length > 100_000) this.leaderChanges.splice(0, 50_000);
    }
    this.leaderChangesByCause[cause]++;
    return cause;
  }

  /** A transfer of `group` planned by `cause` is under way here for up to `timeoutMs`. */
  notePlanned(group: number, cause: PlannedCause, timeoutMs: number): void {
    if (this.plannedCauses.size > 10_000) {
      const now = Date.now();
      for (const [g, p] of this.plannedCauses) if (p.until <= now) this.plannedCauses.delete(g);
    }
    this.plannedCauses.set(group, { cause, until: Date.now() + timeoutMs + 1_000 });
  }

  notePeerDraining(peer: NodeId, draining: boolean): void {
    if (draining) this.drainingNodes.add(peer);
    else this.drainingNodes.delete(peer);
    this.host.log.info({ peer, draining }, 'peer drain state');
  }

  noteView(peer: NodeId, view: NodeView): void {
    this.views.set(peer, view);
  }

  noteOwnView(view: NodeView): void {
    this.ownView = view;
  }

  notePeerTiming(peer: NodeId, timing: PeerTiming): void {
    this.peerTiming.set(peer, timing);
  }

  noteRtt(ms: number): void {
    this.rtts.add(ms);
    this.histograms.rtt.observeMs(ms);
  }

  /** The stability advisor on what this node measured (see advisor.ts). */
  async stabilityWarnings(): Promise<StabilityWarning[]> {
    const h = this.host;
    const st = await h.status();
    const commits = st.shards
      .map((s) => (s.up ? s.commitP99Ms : null))
      .filter((x): x is number => typeof x === 'number');
    const now = Date.now();
    const lastMinute = this.leaderChanges.filter((t) => t > now - 60_000).length;
    const earlier = this.leaderChanges.filter((t) => t <= now - 60_000 && t > now - 11 * 60_000).length;
    const uptimeMs = h.uptimeMs();
    const minutesUp = Math.max(1, Math.min(10, uptimeMs / 60_000 - 1));
    return adviseStability({
      electionMs: h.electionMs,
      heartbeatMs: h.electionMs / h.electionTicks,
      rttP99Ms: this.rtts.p99(),
      commitP99Ms: commits.length ? Math.max(...commits) : null,
      eventLoopP99Ms: h.eventLoopP99Ms(),
      peerTiming: Object.fromEntries(this.peerTiming),
      evenVoterGroups: st.shards.flatMap((s) => (s.up ? s.evenVoters : [])),
      evenVoterCount: st.shards.reduce((a, s) => a + (s.up ? s.evenVoterCount : 0), 0),
      leaderChangesLastMinute: lastMinute,
      // The first minute (bootstrap elections) is not a baseline.
      leaderChangesBaselinePerMinute: uptimeMs < 2 * 60_000 ? Infinity : earlier / minutesUp,
    });
  }

  /** Refuse planned moves while the stability advisor says the cluster is unstable (the answer
   *  is cached for a second: a drain asks once per group it moves). */
  private async refuseIfUnstable(what: string): Promise<void> {
    const now = Date.now();
    if (!this.stability || now - this.stability.at > 1_000)
      this.stability = { at: now, warnings: await this.stabilityWarnings() };
    const bad = this.stability.warnings.find((w) => w.unstable);
    if (bad)
      throw new TransferError('ClusterUnstable', `${what} refused: ${bad.message} (fix: ${bad.fix}; force overrides)`);
  }

  private broadcastDrainState(): void {
    for (const p of this.host.peers) this.host.send(p, notice('drainState', { draining: this.draining }));
  }
}
