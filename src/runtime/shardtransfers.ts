// Leader hand-over on a shard, both ends. The old leader's: transfer() refuses at once a target
// that cannot take over safely or well (with a typed reason), TimeoutNow's departure is stamped
// (the end of the target's catch-up), and the callers get the core's outcome with that evidence.
// The new leader's: awaitLeadership() answers once this node leads with an entry of its term
// committed, so that a transfer's caller hears of the take-over without polling. Apart from the
// loop because all of it is rare: a turn only passes on what its Readies carry (noteTimeoutNow,
// settle) and that leadership may have moved (settleLeaders).
import type { Logger } from 'pino';
import type { Message, NodeId, Ready } from '../raft/types.js';
import { RuntimeError, TransferError, type TransferFailReason } from './errors.js';
import { reachesQuorum } from './preflight.js';
import { tenthMs } from './histogram.js';
import { ownTransfers, type Group, type ShardAccess, type TransferDone } from './group.js';

/** What hand-overs need of the shard beyond its groups and its loop. */
export interface HandoverAccess extends ShardAccess {
  /** Peers the liveness layer reports down. */
  readonly downPeers: ReadonlySet<NodeId>;
  /** The shard's counts of transfer outcomes (its stats). */
  readonly outcomes: { completed: number; aborted: number };
  readonly log: Logger;
  /** Let the next turn start with one more commit in flight (see Shard.urgent). */
  hurry(): void;
  commitLatencyP99Ms(): number | null;
}

export interface TransferOptions {
  timeoutMs?: number;
  maxLagEntries?: number;
  draining?: ReadonlySet<NodeId>;
  force?: boolean;
  reach?: readonly NodeId[] | null;
}

/** This node leads, from the term given, with the commit latency p99 it sees. */
export type Leading = { term: number; commitP99Ms: number | null };

type LeadWaiter = { resolve: (r: Leading) => void; reject: (e: Error) => void };

export class Handovers {
  /** Callers of awaitLeadership, by group: checked after each turn's steps and advances. */
  private readonly leadWaiters = new Map<Group, LeadWaiter[]>();

  constructor(private readonly shard: HandoverAccess) {}

  transferLeader(groupId: number, target: NodeId) {
    const g = this.shard.group(groupId);
    const r = g.node.transferLeader(target);
    this.shard.touch(g);
    this.shard.schedule();
    return r;
  }

  /** See Shard.transfer. */
  transfer(groupId: number, target: NodeId, o: TransferOptions): Promise<TransferDone> {
    const s = this.shard;
    let g: Group;
    try {
      g = s.group(groupId);
    } catch (e) {
      return Promise.reject(e);
    }
    const st = g.node.status();
    const fail = (reason: TransferFailReason, msg: string) =>
      Promise.reject(new TransferError(reason, `transfer of group ${groupId} to ${target}: ${msg}`, st.leader));
    if (st.role !== 'leader') {
      return Promise.reject(new RuntimeError('NotLeader', `${s.nodeId} does not lead group ${groupId}`, st.leader));
    }
    if (target === s.nodeId) return fail('TargetIsSelf', 'already the leader');
    // A leader that has not yet committed an entry of its term is still taking over (the caller
    // that moved leadership here is waiting to see exactly that commit): handing over again now
    // would leave that caller unanswered until its deadline. Retry in a moment.
    if (!g.node.leadsWithCommittedTerm()) {
      return Promise.reject(
        new RuntimeError(
          'Unavailable',
          `${s.nodeId} is still taking over group ${groupId} (no entry of its term committed yet)`,
          st.leader,
        ),
      );
    }
    if (st.conf.learners.includes(target)) return fail('TargetIsLearner', 'a learner cannot lead');
    if (!st.conf.voters.includes(target)) return fail('TargetNotMember', 'not a voter of the group');
    if (o.draining?.has(target)) return fail('TargetDraining', 'the target is draining');
    const pr = st.progress[target];
    // Health comes from the node-liveness layer (the transport link), not from the core's
    // recentActive flag: that one is cleared for every peer at each CheckQuorum boundary and only
    // set again by the next response, and a quiesced group hears nothing by design.
    const heard = (id: NodeId) => !s.downPeers.has(id);
    if (!pr || !heard(target)) return fail('TargetUnhealthy', 'not heard from recently');
    const lag = st.lastIndex - pr.match;
    const bound = o.maxLagEntries ?? 10_000;
    let active = 1;
    for (const v of st.conf.voters) if (v !== s.nodeId && heard(v)) active++;
    if (active <= st.conf.voters.length / 2) return fail('NoQuorum', 'the leader does not hear from a quorum');
    if (!o.force) {
      if (lag > bound) return fail('TargetLagging', `${lag} entries behind (bound ${bound})`);
      if (pr.state === 'snapshot' || pr.next < st.firstIndex) {
        return fail(
          'TargetNeedsSnapshot',
          `it needs entries from ${pr.next}, compacted (first index ${st.firstIndex})`,
        );
      }
      if (reachesQuorum(target, st.conf.voters, o.reach ?? null) === false) {
        return fail(
          'TargetNoQuorum',
          `by its own links it reaches only ${(o.reach ?? []).filter((v) => st.conf.voters.includes(v)).join(', ') || 'no other voter'}`,
        );
      }
    }
    const r = g.node.transferLeader(target);
    s.touch(g);
    s.hurry(); // TimeoutNow leaves in the next turn, not behind the commits in flight
    s.schedule();
    if (!r.ok) return fail(r.reason === 'NotLeader' ? 'NoLeader' : r.reason, r.reason);
    return s.withDeadline<TransferDone>(`transfer of group ${groupId} to ${target}`, o.timeoutMs, (resolve, reject) => {
      let pending = g.transfers.get(target);
      if (!pending) {
        pending = { callers: [], at: performance.now(), lag, sentAt: -1 };
        ownTransfers(g).set(target, pending);
      }
      const entry = { resolve, reject };
      pending.callers.push(entry);
      return () => {
        const l = g.transfers.get(target)?.callers;
        if (l) l.splice(l.indexOf(entry), 1);
      };
    });
  }

  /** Stamp when TimeoutNow first left for a pending transfer's target (the end of catch-up). */
  noteTimeoutNow(g: Group, ms: readonly Message[]): void {
    for (const m of ms) {
      if (m.type !== 'timeoutNow') continue;
      const p = g.transfers.get(m.to);
      if (p && p.sentAt < 0) p.sentAt = performance.now();
    }
  }

  /** Answer the callers of the transfers whose outcome the core reported. */
  settle(g: Group, outcomes: Ready['transfers']): void {
    const now = performance.now();
    for (const tr of outcomes) {
      this.shard.outcomes[tr.status]++;
      const p = g.transfers.get(tr.target);
      g.transfers.delete(tr.target);
      const sentAt = p && p.sentAt >= 0 ? p.sentAt : now;
      const evidence = {
        lag: p?.lag ?? 0,
        catchUpMs: p ? tenthMs(sentAt - p.at) : 0,
        campaignMs: p ? tenthMs(now - sentAt) : 0,
        commitP99Ms: this.shard.commitLatencyP99Ms(),
      };
      for (const c of p?.callers ?? []) {
        if (tr.status === 'completed')
          c.resolve({
            group: g.id,
            from: this.shard.nodeId,
            to: tr.target,
            term: tr.term,
            ticks: tr.ticks,
            ...evidence,
          });
        else
          c.reject(
            new TransferError(
              tr.reason,
              `transfer of group ${g.id} to ${tr.target} aborted: ${tr.reason}`,
              g.node.status().leader,
            ),
          );
      }
      // Per group at debug (a drain of 100,000 groups would print as many lines); the shard's
      // periodic leader-change summary counts transfers at info, and an abort stays at info.
      if (tr.status === 'completed')
        this.shard.log.debug(
          { group: g.id, target: tr.target, term: tr.term, ticks: tr.ticks, ...evidence },
          'leader transfer completed',
        );
      else
        this.shard.log.info(
          { group: g.id, target: tr.target, term: tr.term, ticks: tr.ticks, reason: tr.reason, ...evidence },
          'leader transfer aborted',
        );
    }
  }

  /** See Shard.awaitLeadership. */
  async awaitLeadership(groupId: number, timeoutMs?: number): Promise<Leading> {
    const s = this.shard;
    if (s.stopped()) throw new RuntimeError('Stopped', 'shard stopped');
    const g = s.group(groupId);
    if (g.node.leadsWithCommittedTerm()) return { term: g.node.status().term, commitP99Ms: s.commitLatencyP99Ms() };
    return s.withDeadline<Leading>(`leadership of group ${groupId}`, timeoutMs, (resolve, reject) => {
      let list = this.leadWaiters.get(g);
      if (!list) {
        list = [];
        this.leadWaiters.set(g, list);
      }
      const w = { resolve, reject };
      list.push(w);
      return () => {
        const l = this.leadWaiters.get(g);
        if (!l) return;
        l.splice(l.indexOf(w), 1);
        if (l.length === 0) this.leadWaiters.delete(g);
      };
    });
  }

  /** Answer the callers of awaitLeadership whose group now has its leader here (or is gone). */
  settleLeaders(): void {
    if (this.leadWaiters.size === 0) return;
    for (const [g, list] of this.leadWaiters) {
      if (this.shard.groups.get(g.id) !== g) {
        this.leadWaiters.delete(g);
        for (const w of list)
          w.reject(new RuntimeError('NotLeader', `group ${g.id} was removed from ${this.shard.nodeId}`));
        continue;
      }
      if (!g.node.leadsWithCommittedTerm()) continue;
      this.leadWaiters.delete(g);
      const term = g.node.status().term;
      const commitP99Ms = this.shard.commitLatencyP99Ms();
      for (const w of list) w.resolve({ term, commitP99Ms });
    }
  }

  /** Reject every caller waiting on a hand-over of `g` with `err`. */
  reject(g: Group, err: Error): void {
    for (const p of g.transfers.values()) for (const c of p.callers) c.reject(err);
    for (const w of this.leadWaiters.get(g) ?? []) w.reject(err);
    g.transfers.clear();
  }
}
