// The stability advisor: checks the timing budget
// (broadcast time << election timeout << MTBF), the shape of voter sets, and the leader-change
// rate, and says what to change. Pure: the node feeds it what it measured.
export interface StabilityInputs {
  readonly electionMs: number;
  readonly heartbeatMs: number;
  /** p99 round trip to peers, ms (null until measured). */
  readonly rttP99Ms: number | null;
  /** p99 of the local LMDB commit (fsync included), ms (null until measured). */
  readonly commitP99Ms: number | null;
  /** p99 of this node's event-loop delay, ms (a late loop sends heartbeats late). Default 0. */
  readonly eventLoopP99Ms?: number;
  /** The timing each peer said it runs. */
  readonly peerTiming?: Readonly<Record<string, { readonly electionMs: number; readonly heartbeatMs: number }>>;
  /** Groups with an even number of voters (a sample), and how many there are (default: the
   *  sample's length). */
  readonly evenVoterGroups: readonly number[];
  readonly evenVoterCount?: number;
  /** Unplanned leader changes (failovers, elections; not transfers, drains or balancer moves)
   *  seen on this node in the last minute, and the usual rate. */
  readonly leaderChangesLastMinute: number;
  readonly leaderChangesBaselinePerMinute: number;
}

export interface StabilityWarning {
  readonly kind: 'TimingBudget' | 'HeartbeatBelowRtt' | 'TimingMismatch' | 'EvenVoters' | 'Flapping';
  readonly message: string;
  readonly fix: string;
  /** The cluster is unstable now, not only at risk: unplanned elections well above the usual
   *  rate, or a p99 broadcast as long as the election timeout (followers time out on a healthy
   *  leader; a new one could not hold on). Planned transfers and drains are refused (unless
   *  forced) while one is. */
  readonly unstable: boolean;
}

export function adviseStability(i: StabilityInputs): StabilityWarning[] {
  const out: StabilityWarning[] = [];
  if (i.rttP99Ms !== null || i.commitP99Ms !== null) {
    // A broadcast is a round trip plus a durable write on the followers, plus however late this
    // node's own loop runs.
    const loop = i.eventLoopP99Ms ?? 0;
    const broadcast = (i.rttP99Ms ?? 0) + (i.commitP99Ms ?? 0) + loop;
    if (broadcast * 10 > i.electionMs) {
      out.push({
        kind: 'TimingBudget',
        message: `p99 broadcast time ${broadcast.toFixed(1)} ms (RTT ${i.rttP99Ms?.toFixed(1) ?? '?'} + commit ${i.commitP99Ms?.toFixed(1) ?? '?'}${loop > 0 ? ` + event-loop delay ${loop.toFixed(1)}` : ''}) is within 10x of the ${i.electionMs} ms election timeout`,
        fix: `raise the election timeout to at least ${Math.ceil(broadcast * 10)} ms (timingScale or electionTicks), keeping the heartbeat near one RTT; or find the slow disk or link`,
        unstable: broadcast >= i.electionMs,
      });
    }
  }
  if (i.rttP99Ms !== null && i.rttP99Ms > i.heartbeatMs) {
    // A heartbeat shorter than a round trip: every interval sends again before the last answer
    // could come back, for no gain in failure detection.
    out.push({
      kind: 'HeartbeatBelowRtt',
      message: `the ${i.heartbeatMs} ms heartbeat is shorter than the p99 round trip to peers (${i.rttP99Ms.toFixed(1)} ms)`,
      fix: `raise tickMs (or timingScale) to at least ${Math.ceil(i.rttP99Ms)} ms, keeping the election timeout ten times the broadcast time`,
      unstable: false,
    });
  }
  const differ = Object.entries(i.peerTiming ?? {}).filter(
    ([, t]) => t.electionMs !== i.electionMs || t.heartbeatMs !== i.heartbeatMs,
  );
  if (differ.length > 0) {
    // Mixed timeouts make the nodes with the shortest one win (and force) most elections, and a
    // quick node declares a slow-configured leader dead too early.
    out.push({
      kind: 'TimingMismatch',
      message:
        `nodes run different timing: this node ${i.heartbeatMs} ms heartbeat / ${i.electionMs} ms election timeout; ` +
        differ.map(([p, t]) => `${p} ${t.heartbeatMs} / ${t.electionMs} ms`).join(', '),
      fix: 'give every node the same tickMs, electionTicks and timingScale (restart them one at a time, each drained first)',
      unstable: false,
    });
  }
  const even = i.evenVoterCount ?? i.evenVoterGroups.length;
  if (even > 0) {
    const sample = i.evenVoterGroups.slice(0, 5).join(', ');
    out.push({
      kind: 'EvenVoters',
      message: `${even} group(s) have an even number of voters (e.g. ${sample}): no more fault tolerance than one voter fewer, and split votes are likelier`,
      fix: 'add a voter (as a learner first, then promote) or remove one so each group has an odd count',
      unstable: false,
    });
  }
  const baseline = Math.max(1, i.leaderChangesBaselinePerMinute);
  if (i.leaderChangesLastMinute > 3 * baseline && i.leaderChangesLastMinute >= 10) {
    out.push({
      kind: 'Flapping',
      message: `${i.leaderChangesLastMinute} unplanned leader changes in the last minute (usual: ${i.leaderChangesBaselinePerMinute.toFixed(1)}/min)`,
      fix: 'check for overloaded nodes, long GC or disk stalls and packet loss; if they are expected, raise the election timeout',
      unstable: true,
    });
  }
  return out;
}
