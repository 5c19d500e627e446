// Minimal hand-driven reproductions of core bugs the simulator found. Each scenario wires a few
// RaftNodes together (a MemoryGroup) with a FIFO queue the scenario can filter, follows the host
// contract synchronously, and reports whether the buggy outcome happened. Run them with
// `npm run sim -- --repro all` (or a scenario name).
import { MemoryGroup } from '../../src/raft/memgroup.js';
import { RaftNode } from '../../src/raft/node.js';
import { seededRandom, type RandomSource } from '../../src/raft/rand.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { ConfState, Message, NodeId } from '../../src/raft/types.js';
import type { RaftOptions } from './host.js';

export interface ReproResult {
  /** True when the core still shows the bug. */
  readonly reproduced: boolean;
  readonly detail: string;
}

export interface Repro {
  readonly summary: string;
  readonly run: () => ReproResult;
}

const OPTS = { electionTicks: 10, heartbeatTicks: 1, preVote: true, checkQuorum: true } as const;

/** A tiny synchronous cluster: every Ready is handled in full (persist, send, advance) at once. */
class Mini extends MemoryGroup {
  private seed = 1;
  private readonly randoms = new Map<NodeId, RandomSource>();

  constructor(private readonly opts: RaftOptions) {
    super();
  }

  add(id: NodeId, conf: ConfState, random?: RandomSource): void {
    this.storages.set(id, new MemoryStorage(conf));
    if (random) this.randoms.set(id, random);
    this.boot(id);
  }

  /** Crash and restart from what was persisted (no snapshots here, so applied = 0). */
  restart(id: NodeId): void {
    this.boot(id);
  }

  private boot(id: NodeId): void {
    const storage = this.storages.get(id)!;
    const random = this.randoms.get(id) ?? seededRandom(this.seed++);
    this.nodes.set(id, new RaftNode({ ...this.opts, id, group: 1, storage, random, applied: 0 }));
  }

  /** Delivers everything queued (and what that produces), one message at a time, dropping
   *  messages `drop` selects. */
  deliver(drop: (m: Message) => boolean = () => false): void {
    for (let guard = 0; this.queue.length > 0; guard++) {
      if (guard > 100_000) throw new Error('message storm');
      const m = this.queue.shift()!;
      const to = this.nodes.get(m.to);
      if (!to || drop(m)) continue;
      to.step(m);
      this.drain(m.to);
    }
  }

  /** Ticks every node `n` times, delivering messages after each round. */
  run(ticks: number, drop?: (m: Message) => boolean): void {
    for (let t = 0; t < ticks; t++) {
      for (const [id, n] of this.nodes) {
        n.tick();
        this.drain(id);
      }
      this.deliver(drop);
    }
  }

  leaders(): NodeId[] {
    return [...this.nodes].filter(([, n]) => n.inspect().role === 'leader').map(([id]) => id);
  }
}

/** Applied-state bookkeeping for the lease scenarios: the commit index a node would read at. */
function commitOf(c: Mini, id: NodeId): number {
  return c.node(id).inspect().log.committed;
}

/** Three voters with lease reads on, n1 elected and settled. */
function leaseCluster(): Mini {
  const c = new Mini({ ...OPTS, leaseReads: true, leaseMarginTicks: 2 });
  const conf = { voters: ['n1', 'n2', 'n3'], learners: [] };
  for (const id of conf.voters) c.add(id, conf);
  c.node('n1').campaign();
  c.drain('n1');
  c.run(5);
  return c;
}

export const REPROS: Record<string, Repro> = {
  'lease-read-after-follower-restart': {
    summary:
      'leaseReads: a follower promises (by acking a heartbeat) not to vote for electionTicks, but a restart ' +
      'forgets the leader (leader = NONE, so no stickiness) and it votes at once. The old leader, cut off from the ' +
      'new majority, still holds a lease on that ack and serves a read that misses a write the new leader acknowledged.',
    run: () => {
      const c = leaseCluster();
      // n3 loses its links to n1; n1 keeps its lease through n2's acks. Run until n3 has timed out.
      const cut13 = (m: Message) => (m.from === 'n1' && m.to === 'n3') || (m.from === 'n3' && m.to === 'n1');
      c.run(3 * OPTS.electionTicks, cut13);
      // n2 acks one more heartbeat (renewing n1's lease), then n1 is cut off from n2 too and n2 restarts.
      const cutN1 = (m: Message) => m.from === 'n1' || m.to === 'n1';
      c.restart('n2');
      c.node('n3').campaign();
      c.drain('n3');
      c.deliver(cutN1);
      const newLeader = c.leaders().filter((id) => id !== 'n1');
      if (newLeader.length !== 1)
        return { reproduced: false, detail: `no second leader (leaders=[${c.leaders().join(',')}])` };
      const w = c.node(newLeader[0]).propose(new TextEncoder().encode('w'));
      c.drain(newLeader[0]);
      c.deliver(cutN1);
      const wCommitted = w.ok && commitOf(c, newLeader[0]) >= w.index;
      // A client now reads from n1, which still thinks it leads term 1 within its lease.
      const read = c.node('n1').readIndex('r1');
      const n1 = c.node('n1');
      const rd = n1.hasReady() ? n1.ready() : null;
      if (rd) {
        c.storages.get('n1')!.append(rd.entries);
        n1.advance();
      }
      const served = rd?.readStates.find((s) => s.ctx === 'r1');
      return {
        reproduced: wCommitted && served !== undefined && w.ok && served.index < w.index,
        detail:
          `${newLeader[0]} leads term ${c.node(newLeader[0]).inspect().term} and committed write at ${w.ok ? w.index : '-'} ` +
          `(${wCommitted ? 'acknowledged' : 'not committed'}); n1 (role ${n1.inspect().role}, term ${n1.inspect().term}) read ${read.ok ? 'accepted' : read.reason}` +
          `${served ? `, served at index ${served.index}` : ', not served immediately'}`,
      };
    },
  },

  'lease-read-during-transfer': {
    summary:
      'leaseReads: a leader keeps serving lease reads after it sent TimeoutNow, but the transfer campaign ' +
      '(vote.transfer = true) overrides the stickiness its lease relies on. Once the target wins with the other ' +
      "voters while the old leader is cut off, the old leader serves a read that misses the new leader's writes.",
    run: () => {
      const c = leaseCluster();
      const t = c.node('n1').transferLeader('n2');
      c.drain('n1');
      // The TimeoutNow reaches n2; from then on n1 is cut off from everyone.
      const cutN1 = (m: Message) => (m.from === 'n1' && m.type !== 'timeoutNow') || m.to === 'n1';
      c.deliver(cutN1);
      const newLeader = c.leaders().filter((id) => id !== 'n1');
      if (newLeader.length !== 1)
        return {
          reproduced: false,
          detail: `transfer ${t.ok ? 'started' : t.reason}; no second leader (leaders=[${c.leaders().join(',')}])`,
        };
      const w = c.node(newLeader[0]).propose(new TextEncoder().encode('w'));
      c.drain(newLeader[0]);
      c.deliver(cutN1);
      const wCommitted = w.ok && commitOf(c, newLeader[0]) >= w.index;
      const n1 = c.node('n1');
      const read = n1.readIndex('r1');
      const rd = n1.hasReady() ? n1.ready() : null;
      if (rd) n1.advance();
      const served = rd?.readStates.find((s) => s.ctx === 'r1');
      return {
        reproduced: wCommitted && served !== undefined && w.ok && served.index < w.index,
        detail:
          `transfer n1 -> n2 ${t.ok ? 'started' : t.reason}; ${newLeader[0]} leads term ${c.node(newLeader[0]).inspect().term} and committed ` +
          `write at ${w.ok ? w.index : '-'}; n1 (role ${n1.inspect().role}, term ${n1.inspect().term}, transfer target ${n1.inspect().transfer?.target ?? '-'}) ` +
          `read ${read.ok ? 'accepted' : read.reason}${served ? `, served at index ${served.index}` : ', not served immediately'}`,
      };
    },
  },
  'lease-read-after-leader-pause': {
    summary:
      'leaseReads: the lease is measured in ticks the leader itself has seen. A leader process that is frozen ' +
      '(GC pause, stalled VM; a Node timer does not replay the ticks it missed) would resume believing its lease is ' +
      'fresh. Host contract (src/raft/types.ts): on resume the host replays the ticks its monotonic clock says it missed before ' +
      'it handles anything that arrived meanwhile; then the lease has expired and the read waits for a heartbeat round.',
    run: () => {
      const c = leaseCluster();
      // n1 freezes: it neither ticks nor receives; the others tick on and elect a new leader.
      const frozen = c.nodes.get('n1')!;
      c.nodes.delete('n1');
      c.run(4 * OPTS.electionTicks);
      c.nodes.set('n1', frozen);
      const newLeader = c.leaders().filter((id) => id !== 'n1');
      if (newLeader.length !== 1)
        return { reproduced: false, detail: `no second leader (leaders=[${c.leaders().join(',')}])` };
      const w = c.node(newLeader[0]).propose(new TextEncoder().encode('w'));
      c.drain(newLeader[0]);
      c.deliver((m) => m.to === 'n1' || m.from === 'n1');
      const wCommitted = w.ok && commitOf(c, newLeader[0]) >= w.index;
      // n1 resumes: following the host contract it first replays the ticks it missed, then the
      // first thing in its buffer is a client read.
      for (let i = 0; i < 4 * OPTS.electionTicks; i++) frozen.tick();
      const read = frozen.readIndex('r1');
      const rd = frozen.hasReady() ? frozen.ready() : null;
      if (rd) frozen.advance();
      const served = rd?.readStates.find((s) => s.ctx === 'r1');
      return {
        reproduced: wCommitted && served !== undefined && w.ok && served.index < w.index,
        detail:
          `${newLeader[0]} leads term ${c.node(newLeader[0]).inspect().term} and committed write at ${w.ok ? w.index : '-'}; ` +
          `resumed n1 (role ${frozen.inspect().role}, term ${frozen.inspect().term}) read ${read.ok ? 'accepted' : read.reason}` +
          `${served ? `, served at index ${served.index}` : ', not served immediately'}`,
      };
    },
  },
  'fresh-voter-cannot-vote': {
    summary:
      'A voter that has not yet received the log (empty or bootstrap configuration) drops vote requests from ' +
      'members it does not know (acceptsFrom -> UnknownSender). Grow 1 -> 2 voters, restart the leader before the new ' +
      'voter caught up: the group never elects a leader again.',
    run: () => {
      const c = new Mini(OPTS);
      c.add('n1', { voters: ['n1'], learners: [] });
      c.add('n2', { voters: [], learners: [] }); // joins with an empty configuration
      c.node('n1').campaign();
      c.drain('n1');
      const toN2 = (m: Message) => m.to === 'n2'; // n2 is slow: nothing reaches it yet
      const add = c.node('n1').proposeConfChange({ type: 'addLearner', node: 'n2' });
      c.drain('n1');
      c.deliver(toN2);
      const promote = c.node('n1').proposeConfChange({ type: 'addVoter', node: 'n2' });
      c.drain('n1');
      c.deliver(toN2);
      const voters = [...c.node('n1').inspect().tracker.voters].join(',');
      c.restart('n1'); // any restart of n1 now
      c.run(50 * OPTS.electionTicks);
      const leaders = c.leaders();
      return {
        reproduced: leaders.length === 0,
        detail:
          `addLearner ${add.ok ? 'ok' : add.reason}, addVoter ${promote.ok ? 'ok' : promote.reason}; n1 voters=[${voters}]; ` +
          `after ${50 * OPTS.electionTicks} ticks leaders=[${leaders.join(',')}], n1 role=${c.node('n1').inspect().role}, ` +
          `n2 rejected as UnknownSender ${c.node('n2').rejected.UnknownSender} times`,
      };
    },
  },
  'removed-leader-deadlock': {
    summary:
      'Two voters, the leader removes itself. It steps down the moment it applies the removal (applyConfEntry), ' +
      'so if the append carrying the new commit index is lost nobody ever resends it: the survivor still counts the ' +
      'old leader in its quorum, the old leader cannot campaign (not a voter) and refuses its vote because it holds ' +
      'entries it appended after the removal. No leader is ever elected again.',
    run: () => {
      const c = new Mini(OPTS);
      const conf = { voters: ['n1', 'n2'], learners: [] };
      for (const id of conf.voters) c.add(id, conf);
      c.node('n1').campaign();
      c.drain('n1');
      c.run(5);
      const rm = c.node('n1').proposeConfChange({ type: 'remove', node: 'n1' });
      c.drain('n1');
      const x = c.node('n1').propose(new TextEncoder().encode('x'));
      c.drain('n1');
      if (!rm.ok || !x.ok)
        return {
          reproduced: false,
          detail: `setup failed: remove ${rm.ok ? 'ok' : rm.reason}, propose ${x.ok ? 'ok' : x.reason}`,
        };
      // n2 gets the removal entry, but nothing after it and never the commit index that covers it.
      c.deliver(
        (m) =>
          m.from === 'n1' &&
          m.to === 'n2' &&
          ((m.type === 'app' && (m.commit >= rm.index || m.entries.some((e) => e.index > rm.index))) ||
            (m.type === 'hb' && m.commit >= rm.index)),
      );
      const n1After = `n1 role=${c.node('n1').inspect().role} voters=[${[...c.node('n1').inspect().tracker.voters].join(',')}] last=${c.node('n1').inspect().log.lastIndex()}`;
      c.run(50 * OPTS.electionTicks);
      const n2 = c.node('n2').inspect();
      return {
        reproduced: c.leaders().length === 0,
        detail:
          `removal at ${rm.index}, later entry at ${x.index}; after the commit: ${n1After}; ${50 * OPTS.electionTicks} ticks later ` +
          `leaders=[${c.leaders().join(',')}], n2 role=${n2.role} term=${n2.term} commit=${n2.log.committed} last=${n2.log.lastIndex()} voters=[${[...n2.tracker.voters].join(',')}]`,
      };
    },
  },
  'unpromoted-voter-stuck-in-lease': {
    summary:
      'A follower that is not promotable in its own view (a learner whose promotion it has not applied yet) ' +
      'resets electionElapsed to 0 whenever it reaches randomizedTimeout (tickElection), and never forgets its leader. ' +
      'When randomizedTimeout == electionTicks (one draw in electionTicks) it is therefore always "in lease" and ignores ' +
      'every (pre)vote, even from its own former leader: if the group needs its vote, no leader is ever elected.',
    run: () => {
      const c = new Mini(OPTS);
      const conf = { voters: ['n1'], learners: ['n2'] };
      c.add('n1', conf);
      c.add('n2', conf, () => 0); // election jitter draws the low end: randomizedTimeout = electionTicks
      c.node('n1').campaign();
      c.drain('n1');
      c.run(5);
      // Promote n2; the single voter commits it alone, but n2 does not hear about it yet.
      const p = c.node('n1').proposeConfChange({ type: 'addVoter', node: 'n2' });
      c.drain('n1');
      c.deliver((m) => m.to === 'n2');
      c.restart('n1'); // n1 now needs n2's vote
      c.run(50 * OPTS.electionTicks);
      const n2 = c.node('n2').inspect();
      return {
        reproduced: c.leaders().length === 0,
        detail:
          `addVoter n2 ${p.ok ? `at ${p.index}` : p.reason}; ${50 * OPTS.electionTicks} ticks later leaders=[${c.leaders().join(',')}], ` +
          `n1 role=${c.node('n1').inspect().role} voters=[${[...c.node('n1').inspect().tracker.voters].join(',')}]; n2 voters=[${[...n2.tracker.voters].join(',')}] ` +
          `leader='${n2.leader}' electionElapsed=${n2.electionElapsed} randomizedTimeout=${n2.randomizedTimeout}`,
      };
    },
  },
  'lost-append-never-resent': {
    summary:
      'Replicate state, maxInflight 1: an append (and the empty append announcing its commit) is lost; the next ' +
      'heartbeat response frees the in-flight slot (inflights.freeFirst) and sendAppend(to, sendIfEmpty=false) has ' +
      'nothing new to send from next, so the entry is never resent while the group is idle (ticksSinceAck and the ' +
      'LOST_APPEND_TICKS check only run while appends are in flight).',
    run: () => {
      const c = new Mini({ ...OPTS, maxInflight: 1 });
      const conf = { voters: ['n1', 'n2', 'n3'], learners: [] };
      for (const id of conf.voters) c.add(id, conf);
      c.node('n1').campaign();
      c.drain('n1');
      c.run(5);
      const r = c.node('n1').propose(new TextEncoder().encode('x'));
      if (!r.ok) return { reproduced: false, detail: `setup failed: propose ${r.reason}` };
      c.drain('n1');
      // Lose the appends to n2 until the next heartbeat round is over: the one carrying the entry
      // and the (empty) ones announcing its commit. Everything after that is delivered.
      const appToN2 = (m: Message) => m.type === 'app' && m.to === 'n2';
      c.deliver(appToN2);
      c.run(1, appToN2); // one heartbeat round: its reply frees the in-flight slot
      c.run(20 * OPTS.electionTicks);
      const n2 = c.node('n2').inspect().log;
      const pr = c.node('n1').inspect().tracker.progressOf('n2')!;
      return {
        reproduced: n2.lastIndex() < r.index,
        detail:
          `appends to n2 carrying entry ${r.index} and its commit lost once; ${20 * OPTS.electionTicks} ticks later n2 lastIndex=${n2.lastIndex()} ` +
          `commit=${n2.committed}; leader progress n2: ${pr.state} match=${pr.match} next=${pr.next} inflight=${pr.inflightCount()}`,
      };
    },
  },
};
