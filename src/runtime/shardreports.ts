// What a shard reports of its leadership and load: its brief (leaders, storage commit p99),
// pushed through onBrief only when it changed, for the leader balancer to read every round
// without waking the shard's thread; the groups it leads, for a balancer round that moves some;
// the summary counts of a node's status; and, in its log, a periodic summary of leader changes
// (one line per group would be 100,000 info lines per node for one election wave). Apart from
// the loop because the loop only feeds it (a storage commit's duration, a leadership change)
// and all the rest is cold.
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import { COMMIT_P99_WINDOW_MS, type LeaderChangeKind, type ShardBrief } from './protocol.js';
import { RecentSamples } from './histogram.js';
import type { Group, LedGroup } from './group.js';
import type { GroupView, ShardSummary } from './status.js';

/** Storage commits in COMMIT_P99_WINDOW_MS below which commitP99Ms has no figure: a quiet
 *  shard's one checkpoint commit must not make its disk look slow (to the health policy, a
 *  transfer's preflight, the advisor) for a minute. */
const MIN_COMMITS_FOR_P99 = 20;

/** How often a busy shard checks its brief for a change to report (see ShardOptions.onBrief). */
const BRIEF_MS = 250;

/** How often, at most, a shard sums up its leader changes at info (per-group lines are debug);
 *  nothing is written while nothing changes. */
export const LEADER_SUMMARY_MS = 10_000;

export class ShardReports {
  /** Groups this node leads, kept as leadership changes (brief() must not walk the groups). */
  private ledCount = 0;
  private lastBrief: ShardBrief = { leaders: -1, commitP99Ms: null };
  private timer: NodeJS.Timeout | null = null;
  private queued = false;
  /** The last storage commit durations, for the stability advisor's p99, the transfer preflight
   *  and the health policy; of the last minute only. */
  private readonly recentCommits = new RecentSamples(256, COMMIT_P99_WINDOW_MS);
  /** Groups that got a (known) new leader since the last summary line, by cause. */
  private changes: Record<LeaderChangeKind, number> = { transfer: 0, election: 0, failover: 0 };
  private summaryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly nodeId: NodeId,
    private readonly groups: ReadonlyMap<number, Group>,
    /** Peers the liveness layer reports down. */
    private readonly downPeers: ReadonlySet<NodeId>,
    private readonly onBrief: ((brief: ShardBrief) => void) | undefined,
    /** The shard is started and not stopped: only then is anything reported. */
    private readonly running: () => boolean,
    private readonly log: Logger,
  ) {}

  /** See Shard.commitP99Ms. */
  commitP99Ms(): number | null {
    return this.recentCommits.p99(performance.now(), MIN_COMMITS_FOR_P99);
  }

  brief(): ShardBrief {
    return { leaders: this.ledCount, commitP99Ms: this.commitP99Ms() };
  }

  /** A storage commit took `ms`: report the brief once a little later if it changed by then (the
   *  commit p99 moves with every commit: it is not worth a message each time). Only commits arm
   *  it, so a shard with nothing going on reports (and runs) nothing. */
  committed(ms: number): void {
    this.recentCommits.add(ms);
    if (this.timer !== null || !this.onBrief || !this.running()) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pushBrief();
    }, BRIEF_MS);
  }

  /** A group's leader changed, and the groups this node leads with it by `delta`; `cause` when
   *  the group has a known new leader (counted for the summary line). The leader count is
   *  reported as soon as the turn that changed it ends (a balancer round right after its
   *  transfers must see them), once per turn however many groups changed. */
  leadersChanged(delta: number, cause: LeaderChangeKind | null = null): void {
    this.ledCount += delta;
    if (cause !== null) {
      this.changes[cause]++;
      this.summaryTimer ??= setTimeout(() => {
        this.summaryTimer = null;
        this.logSummary();
      }, LEADER_SUMMARY_MS).unref();
    }
    if (this.queued || !this.onBrief) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      if (this.running()) this.pushBrief();
    });
  }

  /** Push the brief through onBrief if it changed since the last push. */
  pushBrief(): void {
    const b = this.brief();
    if (b.leaders === this.lastBrief.leaders && b.commitP99Ms === this.lastBrief.commitP99Ms) return;
    this.lastBrief = b;
    this.onBrief?.(b);
  }

  /** Write (and reset) the leader changes since the last summary, if any. */
  private logSummary(): void {
    const { transfer, election, failover } = this.changes;
    const changed = transfer + election + failover;
    if (changed === 0) return;
    this.changes = { transfer: 0, election: 0, failover: 0 };
    this.log.info(
      { changed, transfer, election, failover, leading: this.ledCount, groups: this.groups.size },
      `leaders changed: ${changed} group${changed === 1 ? '' : 's'} (transfer ${transfer}, election ${election}, failover ${failover}), now leading ${this.ledCount}`,
    );
  }

  /** No more delayed report (the shard stops); the leader changes not summed up yet are. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.summaryTimer) clearTimeout(this.summaryTimer);
    this.summaryTimer = null;
    this.logSummary();
  }

  /** See Shard.led. */
  led(): LedGroup[] {
    const out: LedGroup[] = [];
    for (const g of this.groups.values()) {
      if (g.leader !== this.nodeId) continue;
      const conf = g.storage.conf();
      out.push({
        group: g.id,
        served: g.served,
        lag: g.node.peerLag() ?? {},
        learners: conf.learners.length ? [...conf.learners] : undefined,
      });
    }
    return out;
  }

  /** See Shard.summary. */
  summary(cap: number): ShardSummary {
    let leaders = 0;
    let quiesced = 0;
    let evenVoterCount = 0;
    const evenVoters: number[] = [];
    for (const g of this.groups.values()) {
      if (g.leader === this.nodeId) leaders++;
      if (g.node.isQuiesced()) quiesced++;
      const v = g.storage.conf().voters.length;
      if (v > 0 && v % 2 === 0 && evenVoterCount++ < cap) evenVoters.push(g.id);
    }
    return { groups: this.groups.size, leaders, quiesced, evenVoterCount, evenVoters };
  }

  /** See Shard.groupView. */
  groupView(g: Group): GroupView {
    const st = g.node.status();
    let reached = 0;
    for (const v of st.conf.voters) if (v === this.nodeId || !this.downPeers.has(v)) reached++;
    return { ...st, served: g.served, hasQuorum: reached > st.conf.voters.length / 2 };
  }

  /** Why `g` has a new leader in `term`, as this replica can tell (see ShardOptions.onLeader). */
  leaderChangeKind(g: Group, term: number): LeaderChangeKind {
    if (g.node.electedByTransfer(term)) return 'transfer';
    if (this.downPeers.size > 0) for (const v of g.storage.conf().voters) if (this.downPeers.has(v)) return 'failover';
    return 'election';
  }
}
