// The node's metrics in Prometheus text format 0.0.4 (FlotillaNode.metrics, GET /metrics): a
// pure renderer from the node's status report, its histograms and the process sample, and the
// exposition writer the admin server reuses for its own counters. Every failure and drop counter
// is printed for every reason it can have, at 0 until it happens, so that an alert on a rate sees
// a series from the first scrape. A scrape costs one status round (O(shards) messages) and no
// work on the request path.
import type { HandshakeReason } from '../transport/handshake.js';
import type { TransportDropReason } from '../transport/transport.js';
import type { MoveKind } from '../balancer/balancer.js';
import { TRANSFER_FAIL_REASONS, type TransferFailReason } from './errors.js';
import { mergeHistograms, renderHistogram, type HistogramSnapshot } from './histogram.js';
import { BUILD, GC_KINDS, processSampler, type BuildInfo, type ProcessSample } from './processmetrics.js';
import type { NodeStatus } from './status.js';
import type { SnapshotStreamStats } from './shardsnapshots.js';

type Labels = Readonly<Record<string, string | number>>;

const label = (v: string | number) => String(v).replace(/["\\\n]/g, '_');
const num = (v: number) => (v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));

/** Lines of one exposition: a family's HELP and TYPE lines, then its samples. */
export class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge' | 'summary', help: string, samples: [Labels, number][]): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) this.sample(name, labels, v);
    return this;
  }

  /** One more sample of the family written last (a summary's _sum and _count, say). */
  sample(name: string, labels: Labels, v: number): this {
    const l = Object.entries(labels)
      .map(([k, x]) => `${k}="${label(x)}"`)
      .join(',');
    this.lines.push(`${name}${l ? `{${l}}` : ''} ${num(v)}`);
    return this;
  }

  /** A histogram family; a second call with the same name and an empty help adds one more
   *  labelled series to it. */
  histogram(name: string, help: string, labels: Record<string, string>, h: HistogramSnapshot): this {
    const lines = renderHistogram(name, help, labels, h);
    this.lines.push(...(help === '' ? lines.slice(2) : lines));
    return this;
  }

  text(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}

// Every reason of every failure counter, exhaustive by type: a reason added to its union without
// a line here does not compile.
const DROP_REASONS: Record<TransportDropReason, true> = {
  FrameTooLarge: true,
  MalformedFrame: true,
  InvalidEnvelope: true,
  UnknownKind: true,
  'raft.WrongGroup': true,
  'raft.NotAddressedToMe': true,
  'raft.UnknownSender': true,
  'raft.Malformed': true,
  'raft.StaleTerm': true,
  QueueFull: true,
  TooLarge: true,
  EncodeError: true,
  UnknownPeer: true,
  PeerRemoved: true,
  Closed: true,
  FrameBeforeHandshake: true,
  UnexpectedControl: true,
  InternalError: true,
};
const HANDSHAKE_REASONS: Record<HandshakeReason, true> = {
  ProtocolMismatch: true,
  WrongCluster: true,
  UnknownNode: true,
  WrongDirection: true,
  BadHandshake: true,
  UnexpectedNode: true,
  Refused: true,
  HandshakeTimeout: true,
  AuthMismatch: true,
  AuthFailed: true,
  CertMismatch: true,
  TlsFailed: true,
  Removed: true,
  Unreachable: true,
  ClusterMismatch: true,
  DuplicateId: true,
  DuplicateAddress: true,
  Decommissioned: true,
  Unauthenticated: true,
  NotReady: true,
};
const TRANSFER_OUTCOMES: Readonly<Record<TransferFailReason | 'completed', true>> = {
  completed: true,
  ...TRANSFER_FAIL_REASONS,
};
const MOVE_KINDS: Record<MoveKind, true> = { health: true, locality: true, workload: true, count: true, load: true };

/** Counts by reason over every known reason (0 when absent), plus any reason not known here. */
export function allReasons(
  known: Readonly<Record<string, true>>,
  counts: Readonly<Record<string, number | undefined>>,
) {
  const out: Record<string, number> = {};
  for (const k of Object.keys(known)) out[k] = 0;
  for (const [k, n] of Object.entries(counts)) out[k] = (out[k] ?? 0) + (n ?? 0);
  return out;
}

/** What the renderer reads: one status report and the main thread's histograms. */
export interface MetricsInput {
  readonly status: NodeStatus;
  readonly histograms: {
    readonly transfer: HistogramSnapshot;
    readonly transferCatchUp: HistogramSnapshot;
    readonly transferCampaign: HistogramSnapshot;
    readonly transferVerify: HistogramSnapshot;
    readonly rtt: HistogramSnapshot;
    readonly gc: HistogramSnapshot;
  };
  readonly process: ProcessSample;
  readonly build: BuildInfo;
  readonly cluster: ClusterFigures;
}

/** The cluster's nodes by state, as this node last saw the cluster record, and its roster's
 *  counters (FlotillaNode.clusterStats). */
export interface ClusterFigures {
  readonly nodes: Readonly<Record<ClusterNodeState, number>>;
  readonly stats: ClusterStats;
  /** The replica mover's counters on this node, by move kind. */
  readonly moves: Readonly<Record<string, MoveCounts>>;
}
interface MoveCounts {
  readonly started: number;
  readonly completed: number;
  readonly failed: number;
  readonly rolledBack: number;
}
type ClusterNodeState = 'active' | 'decommissioning' | 'removed';
interface ClusterStats {
  readonly joinsAdmitted: number;
  readonly joinsRefused: number;
  readonly syncs: number;
  readonly syncFailures: number;
  readonly casRetries: number;
}

/** The parts of a node the exposition reads (FlotillaNode has them all). */
export interface MetricsSource {
  status(): Promise<NodeStatus>;
  readonly histograms: Readonly<
    Record<'transfer' | 'transferCatchUp' | 'transferCampaign' | 'transferVerify' | 'rtt', Snapshotting>
  >;
  readonly loopTiming: { readonly gc: Snapshotting };
  clusterNodes(): readonly { readonly state: ClusterNodeState }[];
  readonly clusterStats: ClusterStats;
  moverStatus(): { readonly counters: Readonly<Record<string, MoveCounts>> };
}
interface Snapshotting {
  snapshot(): HistogramSnapshot;
}

/** The exposition of one node and its process. */
export async function nodeMetrics(node: MetricsSource): Promise<string> {
  const status = await node.status();
  const h = node.histograms;
  return renderMetrics({
    status,
    histograms: {
      transfer: h.transfer.snapshot(),
      transferCatchUp: h.transferCatchUp.snapshot(),
      transferCampaign: h.transferCampaign.snapshot(),
      transferVerify: h.transferVerify.snapshot(),
      rtt: h.rtt.snapshot(),
      gc: node.loopTiming.gc.snapshot(),
    },
    process: processSampler().sample(),
    build: BUILD,
    cluster: clusterFigures(node),
  }).text();
}

function clusterFigures(node: MetricsSource): ClusterFigures {
  const nodes: Record<ClusterNodeState, number> = { active: 0, decommissioning: 0, removed: 0 };
  for (const c of node.clusterNodes()) nodes[c.state]++;
  return { nodes, stats: { ...node.clusterStats }, moves: node.moverStatus().counters };
}

export function renderMetrics(m: MetricsInput): Exposition {
  const st = m.status;
  const x = new Exposition();
  const n = { node: st.id };
  const by = (key: string, counts: Record<string, number>): [Labels, number][] =>
    Object.entries(counts).map(([k, v]) => [{ ...n, [key]: k }, v]);

  const build: Record<string, string> = { ...n, version: m.build.version, nodejs: m.build.nodejs };
  if (m.build.commit) build.commit = m.build.commit;
  x.family('flotilla_build_info', 'gauge', 'The running build: package version, commit when known, Node.js.', [
    [build, 1],
  ]);
  x.family('flotilla_groups', 'gauge', 'Groups hosted by this node.', [[n, st.groups]]);
  x.family('flotilla_leaders', 'gauge', 'Groups this node leads.', [[n, st.leaders]]);
  x.family('flotilla_quiesced_groups', 'gauge', 'Groups quiesced on this node.', [[n, st.quiesced]]);
  x.family('flotilla_draining', 'gauge', '1 while this node drains.', [[n, st.draining ? 1 : 0]]);
  x.family(
    'flotilla_worker_up',
    'gauge',
    '1 when the worker hosting a shard is up.',
    st.shards.map((w) => [{ ...n, worker: w.worker }, w.up ? 1 : 0]),
  );
  x.family('flotilla_worker_restarts_total', 'counter', 'Worker threads restarted after dying.', [
    [n, st.workerRestarts],
  ]);
  x.family(
    'flotilla_transfers_total',
    'counter',
    'Leader transfers requested on this node, by outcome.',
    by('outcome', allReasons(TRANSFER_OUTCOMES, st.transfers)),
  );
  x.family('flotilla_requests_forwarded_total', 'counter', 'Requests forwarded to another node.', [
    [n, st.runtime.forwarded],
  ]);
  x.family(
    'flotilla_requests_retried_total',
    'counter',
    'Attempts retried (not leader, transfer, unavailable, timeout).',
    [[n, st.runtime.retries]],
  );
  x.family(
    'flotilla_runtime_dropped_total',
    'counter',
    'Messages between threads or nodes the runtime dropped, by reason.',
    [
      [{ ...n, reason: 'NoWorker' }, st.runtime.dropsNoWorker],
      [{ ...n, reason: 'BadMessage' }, st.runtime.dropsBadMessage],
    ],
  );
  const peers = Object.entries(st.transport.peers);
  x.family(
    'flotilla_peer_connected',
    'gauge',
    '1 when the link to a peer is up.',
    peers.map(([peer, p]) => [{ ...n, peer }, p.connected ? 1 : 0]),
  );
  x.family(
    'flotilla_peer_frames_sent_total',
    'counter',
    'Frames sent to a peer.',
    peers.map(([peer, p]) => [{ ...n, peer }, p.framesSent]),
  );
  // Refused or failed node handshakes (wrong cluster, unknown node, TLS, cluster secret): a rising
  // count is a misconfigured node or an intruder, either way worth an alert.
  x.family(
    'flotilla_transport_handshake_failures_total',
    'counter',
    'Node handshakes refused or failed, by reason.',
    by('reason', allReasons(HANDSHAKE_REASONS, st.transport.handshakeFailures)),
  );
  const drops = allReasons(DROP_REASONS, st.transport.drops);
  for (const [, p] of peers)
    for (const [reason, k] of Object.entries(p.drops)) drops[reason] = (drops[reason] ?? 0) + (k ?? 0);
  x.family(
    'flotilla_transport_dropped_total',
    'counter',
    'Frames or messages dropped as malformed, oversized, unknown or unauthenticated, by reason.',
    by('reason', drops),
  );
  x.family('flotilla_transport_handler_errors_total', 'counter', 'Exceptions thrown handling received envelopes.', [
    [n, st.transport.handlerErrors],
  ]);
  // Run-time membership of the transport (an elastic cluster): peers added, removed, re-addressed,
  // and join requests admitted (refused ones are handshake failures, by reason).
  x.family('flotilla_transport_peers_added_total', 'counter', 'Peers added at run time.', [
    [n, st.transport.peersAdded],
  ]);
  x.family('flotilla_transport_peers_removed_total', 'counter', 'Peers removed for good.', [
    [n, st.transport.peersRemoved],
  ]);
  x.family('flotilla_transport_peers_readdressed_total', 'counter', 'Peers given a new address.', [
    [n, st.transport.peersReaddressed],
  ]);
  x.family('flotilla_transport_joins_accepted_total', 'counter', 'Join requests admitted.', [
    [n, st.transport.joinsAccepted],
  ]);
  // The cluster's nodes (design note 8), as this node last saw group 0's record: every state
  // shows, at 0 when no node is in it. A join is counted on the node the joiner dialled (which
  // applies it to the record), so summed over the nodes each join request counts once.
  const c = m.cluster;
  x.family(
    'flotilla_cluster_nodes',
    'gauge',
    "The cluster's nodes by state, as this node last saw the cluster record.",
    by('state', { ...c.nodes }),
  );
  x.family(
    'flotilla_joins_total',
    'counter',
    'Join requests answered by this node (the one the joiner dialled), by outcome.',
    [
      [{ ...n, outcome: 'admitted' }, c.stats.joinsAdmitted],
      [{ ...n, outcome: 'refused' }, c.stats.joinsRefused],
    ],
  );
  x.family('flotilla_cluster_record_syncs_total', 'counter', 'Reads of the cluster record that answered.', [
    [n, c.stats.syncs],
  ]);
  x.family(
    'flotilla_cluster_record_sync_failures_total',
    'counter',
    'Reads of the cluster record that failed (group 0 unreachable or without a leader).',
    [[n, c.stats.syncFailures]],
  );
  x.family(
    'flotilla_cluster_record_cas_retries_total',
    'counter',
    'Changes of the cluster record retried because it changed under them.',
    [[n, c.stats.casRetries]],
  );
  // The replica mover (it moves only on group 0's leader; counters stay where moves ran).
  const outcomes = ['started', 'completed', 'failed', 'rolledBack'] as const;
  x.family(
    'flotilla_replica_moves_total',
    'counter',
    'Replica moves run by this node, by kind (repair, decommission, zone, balance, trim) and outcome (rolled_back: undone after a failure).',
    Object.entries(c.moves).flatMap(([kind, counts]) =>
      outcomes.map((o): [Labels, number] => [
        { ...n, kind, outcome: o === 'rolledBack' ? 'rolled_back' : o },
        counts[o],
      ]),
    ),
  );
  x.family('flotilla_replica_moves_in_flight', 'gauge', 'Replica moves in flight on this node.', [
    [n, st.cluster.movesInFlight],
  ]);
  x.family('flotilla_replica_mover_here', 'gauge', '1 while this node leads group 0 and so runs the replica mover.', [
    [n, st.cluster.moverHere ? 1 : 0],
  ]);
  x.family(
    'flotilla_decommission_replicas_left',
    'gauge',
    'Replicas still on each decommissioning node, as the mover here last saw them.',
    Object.entries(st.cluster.decommissioning).map(([target, left]): [Labels, number] => [{ ...n, target }, left]),
  );
  const loops = st.shards.flatMap((w) => (w.up ? [[w.worker, w.loop] as const] : []));
  x.family(
    'flotilla_shard_commits_total',
    'counter',
    'LMDB commits of a shard loop.',
    loops.map(([w, l]) => [{ ...n, worker: w }, l.commits]),
  );
  x.family(
    'flotilla_shard_messages_in_total',
    'counter',
    'Raft messages stepped by a shard.',
    loops.map(([w, l]) => [{ ...n, worker: w }, l.messagesIn]),
  );
  x.family(
    'flotilla_shard_malformed_entries_total',
    'counter',
    'Committed KV entries whose command does not decode, refused with StateMachineError.',
    loops.map(([w, l]) => [{ ...n, worker: w }, l.malformedEntries]),
  );
  x.family(
    'flotilla_shard_commit_wait_seconds_total',
    'counter',
    'Time a shard loop spent awaiting commits.',
    loops.map(([w, l]) => [{ ...n, worker: w }, l.msCommit / 1000]),
  );
  // Snapshot streams, summed over the shards (docs/snapshots.md).
  const snap = (k: keyof SnapshotStreamStats) =>
    st.shards.reduce((a, w) => a + (w.up && w.snapshots ? w.snapshots[k] : 0), 0);
  x.family('flotilla_snapshot_streams_total', 'counter', 'Snapshot streams, by outcome.', [
    [{ ...n, outcome: 'sent' }, snap('sent')],
    [{ ...n, outcome: 'send_failed' }, snap('sendFailed')],
    [{ ...n, outcome: 'received' }, snap('received')],
    [{ ...n, outcome: 'installed' }, snap('installed')],
  ]);
  x.family('flotilla_snapshot_stream_bytes_total', 'counter', 'Snapshot data bytes streamed, by direction.', [
    [{ ...n, direction: 'sent' }, snap('bytesSent')],
    [{ ...n, direction: 'received' }, snap('bytesReceived')],
  ]);
  x.family(
    'flotilla_snapshot_stream_refused_total',
    'counter',
    'Snapshot chunks or streams refused (bad CRC, totals that differ, staging I/O).',
    [[n, snap('refused')]],
  );
  x.family('flotilla_snapshot_streams_in_flight', 'gauge', 'Snapshot streams under way, by direction.', [
    [{ ...n, direction: 'sending' }, snap('sending')],
    [{ ...n, direction: 'queued' }, snap('queued')],
    [{ ...n, direction: 'receiving' }, snap('receiving')],
  ]);
  x.family('flotilla_proposals_total', 'counter', 'Proposals made through this node.', [[n, st.runtime.proposals]]);
  x.family('flotilla_pending_proposals', 'gauge', 'Proposals accepted by this node and not yet answered.', [
    [n, st.pending.proposals],
  ]);
  x.family(
    'flotilla_event_loop_delay_p99_seconds',
    'gauge',
    'Main-thread event-loop delay, p99 over the last minute or so.',
    [[n, st.eventLoop.p99Ms / 1000]],
  );
  x.family(
    'flotilla_event_loop_delay_max_seconds',
    'gauge',
    'Main-thread event-loop delay, max over the last minute or so.',
    [[n, st.eventLoop.maxMs / 1000]],
  );
  x.family('flotilla_reads_total', 'counter', 'Reads made through this node.', [[n, st.runtime.reads]]);
  x.family('flotilla_not_leader_total', 'counter', 'Attempts answered NotLeader (then retried to the leader).', [
    [n, st.runtime.notLeader],
  ]);
  x.family('flotilla_overloaded_total', 'counter', 'Proposals refused with Overloaded (pending limits).', [
    [n, st.runtime.overloaded],
  ]);
  // Planned moves (transfer, drain, balancer) apart from failovers and elections: only the
  // unplanned ones say something is wrong.
  x.family(
    'flotilla_leader_changes_total',
    'counter',
    'New leaders seen by the local replicas, by cause (transfer, drain, balancer: planned; failover, election: not).',
    by('cause', st.leaderChanges),
  );
  if (st.balancer) {
    x.family(
      'flotilla_balancer_moves_total',
      'counter',
      'Leaderships moved by the balancer, by reason.',
      by('reason', allReasons(MOVE_KINDS, st.balancer.movesByKind)),
    );
    x.family('flotilla_balancer_failed_total', 'counter', 'Balancer moves that failed.', [[n, st.balancer.failed]]);
    x.family('flotilla_balancer_rounds_total', 'counter', 'Balancer rounds run.', [[n, st.balancer.rounds]]);
    x.family(
      'flotilla_storage_slow',
      'gauge',
      "The health policy holds this node's storage slow against the cluster's (1): it sheds its leaderships and takes none.",
      [[n, st.slowStorage ? 1 : 0]],
    );
  }
  renderProcess(x, n, m.process);
  const shardHist = (k: 'fsync' | 'commit' | 'apply') =>
    mergeHistograms(st.shards.map((w) => (w.up ? w.histograms[k] : undefined)));
  const h = m.histograms;
  return x
    .histogram(
      'flotilla_fsync_duration_seconds',
      'Duration of each shard storage commit (one fsync for all groups of a loop turn).',
      n,
      shardHist('fsync'),
    )
    .histogram(
      'flotilla_commit_latency_seconds',
      'Proposal accepted by the leader to known committed.',
      n,
      shardHist('commit'),
    )
    .histogram('flotilla_apply_latency_seconds', 'Known committed to applied and answered.', n, shardHist('apply'))
    .histogram(
      'flotilla_transfer_duration_seconds',
      'Leader transfers requested here: request to verified new leader.',
      n,
      h.transfer,
    )
    .histogram(
      'flotilla_transfer_phase_seconds',
      "Phases of those transfers: catch_up (request to TimeoutNow sent), campaign (to the old leader hearing the target lead), verify (to a committed entry of the target's term).",
      { ...n, phase: 'catch_up' },
      h.transferCatchUp,
    )
    .histogram('flotilla_transfer_phase_seconds', '', { ...n, phase: 'campaign' }, h.transferCampaign)
    .histogram('flotilla_transfer_phase_seconds', '', { ...n, phase: 'verify' }, h.transferVerify)
    .histogram('flotilla_gc_pause_seconds', 'Garbage-collection pauses of the main thread.', n, h.gc)
    .histogram('flotilla_peer_rtt_seconds', 'Round trips to peers (1 s pings).', n, h.rtt);
}

function renderProcess(x: Exposition, n: Labels, p: ProcessSample): void {
  const el = 'flotilla_process_event_loop_delay_seconds';
  x.family(
    el,
    'summary',
    'Main-thread event-loop delay: quantiles since the previous scrape, sum and count since start.',
    [
      [{ ...n, quantile: '0.5' }, p.eventLoop.p50],
      [{ ...n, quantile: '0.99' }, p.eventLoop.p99],
    ],
  )
    .sample(`${el}_sum`, n, p.eventLoop.sum)
    .sample(`${el}_count`, n, p.eventLoop.count);
  x.family(
    'flotilla_process_event_loop_delay_max_seconds',
    'gauge',
    'Main-thread event-loop delay, max since the previous scrape.',
    [[n, p.eventLoop.max]],
  );
  x.family(
    'flotilla_process_gc_pauses_total',
    'counter',
    'Garbage collections of the main thread, by kind.',
    GC_KINDS.map((kind) => [{ ...n, kind }, p.gc[kind].count]),
  );
  x.family(
    'flotilla_process_gc_pause_seconds_total',
    'counter',
    'Time the main thread spent paused in garbage collection, by kind.',
    GC_KINDS.map((kind) => [{ ...n, kind }, p.gc[kind].seconds]),
  );
  x.family('flotilla_process_resident_memory_bytes', 'gauge', 'Resident set size of the process.', [[n, p.memory.rss]]);
  x.family('flotilla_process_heap_used_bytes', 'gauge', 'V8 heap in use, main thread.', [[n, p.memory.heapUsed]]);
  x.family('flotilla_process_heap_total_bytes', 'gauge', 'V8 heap allocated, main thread.', [[n, p.memory.heapTotal]]);
  x.family(
    'flotilla_process_external_memory_bytes',
    'gauge',
    'Memory of C++ objects bound to JavaScript objects (Buffers included).',
    [[n, p.memory.external]],
  );
  x.family('flotilla_process_cpu_seconds_total', 'counter', 'CPU time of the process, all threads, by mode.', [
    [{ ...n, mode: 'user' }, p.cpu.user],
    [{ ...n, mode: 'system' }, p.cpu.system],
  ]);
}
