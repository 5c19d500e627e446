// FlotillaNode: one node of a cluster. The main thread owns the TCP transport, deterministic
// placement, the cluster-id guard, request routing and the embedded API; the groups live in W
// worker threads (ShardWorkers), each with its own LMDB environment and one loop. Raft traffic
// is packed and unpacked in the workers; the main thread relays those bytes between TCP and the
// workers without decoding them. Proposals carry a client session (storage/session.ts), so the
// runtime retries them across leader changes, transfers and timeouts within the caller's
// deadline, and each is applied at most once.
//
// This class is the facade: what each concern needs of the node goes to it through a small host
// interface, and the public methods delegate. Placement is in placement.ts, the node-to-node
// protocol in peerprotocol.ts, planned leadership moves and their gates in leadership.ts, group
// membership and its persistence in membership.ts; routing and retries stay here for now.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { replaceFile } from './replacefile.js';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { NodeId } from '../raft/types.js';
import { encodeKvCommandView, type KvCommand, type KvResult } from '../storage/kv.js';
import { SessionClient, encodeCommand } from '../storage/session.js';
import { snapshotStreamLimits, type SnapshotStreamLimits } from '../storage/snapstream.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  PeerRemovedError,
  Transport,
  parseAddress,
  requestJoin,
  validateTransportSecurity,
  type Envelope,
} from '../transport/index.js';
import { RuntimeError, StartOptionsError } from './errors.js';
import { abortable, onAbort, throwIfAborted } from './abort.js';
import type { NodeEventName, NodeEventSink, NodeEvents } from './events.js';
import {
  COMMIT_P99_WINDOW_MS,
  workerOf,
  type CallKind,
  type CallReply,
  type CallRequest,
  type Consistency,
  type ShardBrief,
  type Shards,
} from './protocol.js';
import type { ClusterBrief, GroupView, NodeStatus, RuntimeStats, ShardEntry } from './status.js';
import { encodeUserCommand, rejectionError } from './statemachine.js';
import { ShardWorkers, type ShardWorkersOptions } from './workers.js';
import { NODE_FLAGS, semiSpaceConfigured } from './heap.js';
import { clusterIdOf, groupOfKey, placement } from './placement.js';
import { Forwarder } from './forwarder.js';
import { PeerProtocol, notice, type RequestKind, type Requests } from './peerprotocol.js';
import {
  Leadership,
  jittered,
  type DrainOptions,
  type DrainReport,
  type TransferOptions,
  type TransferResult,
} from './leadership.js';
import { Membership } from './membership.js';
import {
  META_GROUP,
  META_KEY,
  META_REPLICAS,
  Roster,
  decodeJoinInfo,
  readRosterFile,
  writeRosterFile,
} from './roster.js';
import { ClusterMetaError, type MetaNode, type NodeSpec, type NodeState } from './meta/index.js';
import {
  REPLICA_MOVER_DEFAULTS,
  ReplicaMover,
  validateReplicaMoverConfig,
  type MoverPlan,
  type MoverStatus,
} from './mover.js';
import type { PlacementGroup, PlacementNode } from '../balancer/replicas.js';
import { nodeMetrics } from './metrics.js';

export { clusterIdOf, defaultWorkers, groupOfKey, placement } from './placement.js';
export type { DrainOptions, DrainReport, TransferOptions, TransferResult } from './leadership.js';
export type { ClusterBrief, GroupView, NodeStatus, RuntimeStats, ShardEntry, ShardStatus } from './status.js';
import { InlineShards } from './inline.js';
import type { StabilityWarning } from './advisor.js';
import { LoopTiming } from './looptiming.js';
import {
  LeaderBalancer,
  validateBalancerConfig,
  type BalancerConfig,
  type LedInfo,
  type Plan,
} from '../balancer/balancer.js';
import { BalancerConfigError } from '../balancer/errors.js';
import { resolveStartOptions, type ResolvedStartOptions, type StartOptions } from './startoptions.js';

export { START_DEFAULTS, defaultReplication, type StartOptions } from './startoptions.js';

/** What every promise-returning call of the API accepts. */
export interface CallOptions {
  /** Abort the call: it rejects at once with an AbortError (a RuntimeError, code 'Aborted').
   *  What was not yet handed to a replica is withdrawn; what was may still take effect. */
  readonly signal?: AbortSignal;
}

export interface ProposeOptions extends CallOptions {
  /** Deadline for the whole call, retries included. Default: the node's requestTimeoutMs. */
  readonly timeoutMs?: number;
}

export type { Consistency } from './protocol.js';

export interface StatusOptions extends CallOptions {
  /** Every group's Raft status too. */
  readonly detail?: boolean;
}

export interface ReadOptions extends ProposeOptions {
  /** 'linearizable' (default: ReadIndex, a heartbeat round), 'lease' (the leader answers from
   *  its lease when `raft.leaseReads` is on — no round trip, relies on bounded clock drift; else
   *  as 'linearizable'; reads served by a follower always take the round), or 'stale' (this
   *  replica's state now). */
  readonly consistency?: Consistency;
}

/** A node of the cluster, as FlotillaNode.clusterNodes() reports it. */
export interface ClusterNode extends MetaNode {
  /** This node has a link to it (for itself: not removed). */
  readonly up: boolean;
  /** Replicas it holds, as this node knows the groups' replicas. */
  readonly replicas: number;
}

/** The result of kv.cas. */
export interface CasResult {
  readonly swapped: boolean;
  /** The value after the call (the new one when swapped). */
  readonly current: Uint8Array | null;
}

/** The result of kv.delete (etcd's DeleteRange `deleted` count, for one key). */
export interface DeleteResult {
  /** The key held a value that this delete removed (false: it was missing; the delete is still
   *  in the log). Decided where the delete applied, so a retry of the same call gets the same. */
  readonly deleted: boolean;
}

/** How often a node reads the cluster record (group 0) besides when a peer says it changed. */
const META_SYNC_MS = 2_000;

/** A peer's 'dir' answer, checked: [group, replicas][] (undefined when it is not one). */
function directoryOf(x: unknown): [number, NodeId[]][] | undefined {
  if (!Array.isArray(x)) return undefined;
  const out: [number, NodeId[]][] = [];
  for (const e of x as unknown[]) {
    if (!Array.isArray(e) || e.length !== 2) return undefined;
    const [g, r] = e as unknown[];
    if (!Number.isInteger(g) || !Array.isArray(r) || !r.every((x) => typeof x === 'string')) return undefined;
    out.push([g as number, r as NodeId[]]);
  }
  return out;
}

/** Mover rounds while moves are planned or in flight: a finished move's slot is refilled soon. */
const MOVER_BUSY_MS = 100;
/** An idle mover plans again at least this often even if nothing it watches changed. */
const MOVER_IDLE_MAX_MS = 60_000;

/** What a data dir's cluster.json holds. */
interface ClusterFile {
  readonly clusterId: string;
  readonly node: NodeId;
  readonly workers?: number;
  /** Present for a node that joined a running cluster: the shape it was told. */
  readonly joined?: { readonly groups: number; readonly replication: number };
}

/** The app envelope type of a snapshot stream frame (`p`: { w: worker, b: frame bytes }). */
const SNAPSHOT_FRAME = 'snap';

const enc = new TextEncoder();
const asBytes = (k: Uint8Array | string): Uint8Array => (typeof k === 'string' ? enc.encode(k) : k);
/** Results cross thread and node boundaries as Buffers or Uint8Arrays: callers always get the latter. */
const plainBytes = (b: Uint8Array | null | undefined): Uint8Array | null =>
  b == null ? null : b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/** The cluster as the replica planner sees it (MoverHost.view). */
type PlacementView = { nodes: PlacementNode[]; groups: PlacementGroup[]; replication: number };

export class FlotillaNode extends EventEmitter<NodeEvents> {
  readonly clusterId: string;
  readonly workerCount: number;
  private forwarder!: Forwarder;
  /** Leader of each group as last heard (local workers' reports and NotLeader hints). */
  private readonly leaders = new Map<number, NodeId>();
  private readonly peerWorkers = new Map<NodeId, number>();
  /** The election timeout in force, ms (tick interval times election ticks). */
  readonly electionMs: number;
  private readonly electionTicks: number;
  /** Fault injection: see setDiskDelay. */
  private diskDelay = { ms: 0, jitterMs: 0 };
  /** Each shard's last pushed brief and when it arrived (see briefs()). */
  private readonly shardBriefs: (ShardBrief & { at: number })[] = [];
  /** Transfers this node requested, by outcome ('completed' or the failure reason). */
  readonly transferStats: Leadership['transferStats'];
  private readonly session: SessionClient;
  private stopped = false;
  private readonly timeoutMs: number;
  /** One attempt of a proposal or read waits at most this long before it is retried. */
  private readonly attemptMs: number;
  private workers!: Shards;
  private balancer!: LeaderBalancer;
  private readonly leadership: Leadership;
  private readonly membership: Membership;
  /** The cluster's nodes (group 0's record): joins, decommissions, peers at run time. */
  private readonly roster: Roster;
  /** Every other node this one keeps a link to, as it changes at run time (shared, in place, with
   *  membership, leadership and the balancer). */
  private readonly peers: NodeId[];
  /** This node was removed from the cluster (decommissioned): it serves nothing any more. */
  private evicted = false;
  private metaTimer: NodeJS.Timeout | null = null;
  private moverTimer: NodeJS.Timeout | null = null;
  /** The mover's last plan found nothing to do in this state (key), until `until`. */
  private moverIdle: { readonly key: string; readonly until: number } | null = null;
  /** Links that came up or went down (part of what the mover's plan depends on). */
  private linkChanges = 0;
  /** placementView's last answer, and the versions it was built at. */
  private lastView: { readonly key: string; readonly view: PlacementView } | null = null;
  /** A question to a peer about where group 0 is, in flight (learnMetaGroup). */
  private learningMeta = false;
  /** Executes replica moves (decommission, repair, balance); rounds run while this node leads group 0. */
  private readonly mover: ReplicaMover;
  /** Each node's state as this node last emitted it (nodeChange). */
  private readonly nodeStates = new Map<NodeId, NodeState>();
  /** Since when each peer has been unreachable, as this node saw it (the mover's repair delay). */
  private readonly downSince = new Map<NodeId, number>();
  private readonly protocol: PeerProtocol;
  /** Leader changes seen by local replicas (once per replica that saw a new leader), by cause. */
  readonly leaderChangesByCause: Leadership['leaderChangesByCause'];
  private pinger: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  /** Requests served as leader per group and origin node since the balancer last looked
   *  (follow-the-workload). */
  private origins = new Map<number, Map<NodeId, number>>();
  private cpuMark = { usage: process.cpuUsage(), at: performance.now() };
  private transport!: Transport;
  readonly stats: RuntimeStats = {
    forwarded: 0,
    retries: 0,
    relayedIn: 0,
    relayedOut: 0,
    dropsNoWorker: 0,
    dropsBadMessage: 0,
    proposals: 0,
    reads: 0,
    notLeader: 0,
    leaderChanges: 0,
    overloaded: 0,
  };
  private pendingProposals = 0;
  /** This thread's event-loop delay and GC pauses. */
  readonly loopTiming = new LoopTiming();
  /** Retries waiting for a group to have a leader again. */
  private readonly leaderWaits = new Map<number, Set<() => void>>();
  private pendingBytes = 0;
  /** Verified transfers requested here (request -> verified new leader) and peer round trips. */
  readonly histograms: Leadership['histograms'];
  /** How this node's concerns emit its events (see events.ts). */
  private readonly events: NodeEventSink = {
    wants: (name: NodeEventName) => this.listenerCount(name) > 0,
    emit: (name, ...args) => {
      // Emitted from inside the node's message handling: a throwing listener must not break it.
      try {
        this.emit<NodeEventName>(name, ...args);
      } catch (e) {
        this.log.error({ event: name, err: e instanceof Error ? e.message : String(e) }, 'event listener failed');
      }
    },
  };

  /** The built-in key-value store's API: keys and values as bytes or UTF-8 strings. */
  readonly kv = {
    put: async (key: Uint8Array | string, value: Uint8Array | string, o?: ProposeOptions): Promise<void> => {
      const k = asBytes(key);
      await this.propose<KvResult, KvCommand>(
        groupOfKey(k, this.opts.groups),
        { op: 'put', key: k, value: asBytes(value) },
        o,
      );
    },
    delete: async (key: Uint8Array | string, o?: ProposeOptions): Promise<DeleteResult> => {
      const k = asBytes(key);
      const r = await this.propose<KvResult | null, KvCommand>(
        groupOfKey(k, this.opts.groups),
        { op: 'delete', key: k },
        o,
      );
      // A result recorded by a version whose deletes did not tell (a retry across an upgrade)
      // has no `existed`: reported as not deleted.
      return { deleted: r !== null && r.op === 'delete' && r.existed === true };
    },
    cas: async (
      key: Uint8Array | string,
      expected: Uint8Array | string | null,
      value: Uint8Array | string | null,
      o?: ProposeOptions,
    ): Promise<CasResult> => {
      const k = asBytes(key);
      const r = await this.propose<KvResult | null, KvCommand>(
        groupOfKey(k, this.opts.groups),
        {
          op: 'cas',
          key: k,
          expected: expected === null ? null : asBytes(expected),
          value: value === null ? null : asBytes(value),
        },
        o,
      );
      return r && r.op === 'cas'
        ? { swapped: r.swapped, current: plainBytes(r.current) }
        : { swapped: false, current: null };
    },
    /** `get(key, { consistency, timeoutMs, signal })`; the older positional form
     *  `get(key, consistency, { timeoutMs })` still works. */
    get: async (
      key: Uint8Array | string,
      consistency: Consistency | ReadOptions = 'linearizable',
      o?: ProposeOptions,
    ): Promise<Uint8Array | null> => {
      const k = asBytes(key);
      const ro: ReadOptions = typeof consistency === 'string' ? { ...o, consistency } : consistency;
      return plainBytes(await this.read<Uint8Array | null>(groupOfKey(k, this.opts.groups), k, ro));
    },
    groupOf: (key: Uint8Array | string) => groupOfKey(asBytes(key), this.opts.groups),
    /** The node that leads `key`'s group as far as this node knows (undefined when it does not). */
    leaderOf: (key: Uint8Array | string): NodeId | undefined =>
      this.leaders.get(groupOfKey(asBytes(key), this.opts.groups)),
  };

  private constructor(
    readonly id: NodeId,
    private readonly opts: ResolvedStartOptions,
    bootstrap: Map<number, NodeId[]>,
    private readonly log: Logger,
    clusterId: string,
    workers: number,
    electionMs: number,
    bootNodes: readonly NodeSpec[],
  ) {
    super();
    this.clusterId = clusterId;
    this.workerCount = workers;
    this.timeoutMs = opts.requestTimeoutMs;
    this.attemptMs = Math.max(1000, 3 * electionMs);
    this.electionMs = electionMs;
    this.electionTicks = opts.electionTicks;
    // Fresh per process: sequence numbers restart at 1 under a new id.
    this.session = new SessionClient(`${opts.id}/${randomBytes(6).toString('hex')}`);
    // What the concerns share of the node; the transport, shards and balancer exist by the time
    // any of these is called.
    const peers = Object.keys(opts.peers).filter((p) => p !== opts.id);
    this.peers = peers;
    const send = (to: NodeId, e: Envelope) => void this.transport.send(to, e);
    const isConnected = (p: NodeId) => this.transport.isConnected(p);
    const shard = <K extends CallKind>(group: number, kind: K, req: CallRequest<K>) =>
      this.workers.call(this.workerFor(group), kind, req);
    const forward = <K extends RequestKind>(target: NodeId, kind: K, payload: Requests[K], ms: number) =>
      this.forward(target, kind, payload, ms);
    this.membership = new Membership(
      {
        id: this.id,
        peers,
        dataDir: opts.dataDir,
        timeoutMs: this.timeoutMs,
        log,
        isConnected,
        send,
        shard,
        forward,
        withRetries: (g, ms, attempt, signal) => this.withRetries(g, ms, attempt, false, signal),
        forgetLeader: (g) => this.leaders.delete(g),
      },
      bootstrap,
    );
    this.roster = new Roster({
      id: this.id,
      dataDir: opts.dataDir,
      clusterId,
      log,
      groups: opts.groups,
      replication: opts.replication,
      bootstrapNodes: () => [...bootNodes],
      selfSpec: () => ({ id: this.id, address: opts.advertise, labels: opts.labels }),
      hasMetaGroup: () => this.membership.has(META_GROUP),
      createMetaGroup: (nodes) => this.membership.createMetaGroup([...nodes].sort().slice(0, META_REPLICAS)),
      readMeta: async (f) =>
        plainBytes(
          await this.read<Uint8Array | null>(META_GROUP, META_KEY, {
            consistency: f === 'fresh' ? 'linearizable' : 'stale',
          }),
        ),
      casMeta: async (expected, value) => {
        const r = await this.propose<KvResult | null, KvCommand>(META_GROUP, {
          op: 'cas',
          key: META_KEY,
          expected,
          value,
        });
        return { swapped: r !== null && r.op === 'cas' && r.swapped };
      },
      announce: (version) => {
        for (const p of this.transport.connectedPeers()) this.transport.send(p, notice('meta', { version }));
      },
      onNodes: (members, removed) => this.onNodes(members, removed),
    });
    for (const n of this.roster.nodes()) this.nodeStates.set(n.id, n.state);
    // Before the record exists the configured nodes are the cluster: not news when it is written.
    if (this.nodeStates.size === 0) for (const id of [this.id, ...peers]) this.nodeStates.set(id, 'active');
    this.mover = new ReplicaMover(
      {
        log: log.child({ component: 'mover' }),
        nowMs: () => Date.now(),
        view: () => this.placementView(),
        addLearner: (g, n, ms, signal) => this.membership.addLearner(g, n, ms, signal),
        promote: (g, n, ms, signal) => this.membership.promote(g, n, ms, signal),
        removeMember: (g, n, ms, signal) => this.membership.removeMember(g, n, ms, signal),
        refreshGroup: (g) => this.membership.refresh(g, this.attemptMs),
        stillOn: (n) => this.membership.stillOn(n, this.attemptMs),
        setNodeState: async (n, state) => {
          await this.roster.setState(n, state);
        },
      },
      opts.replicas,
    );
    this.leadership = new Leadership(
      {
        id: this.id,
        peers,
        electionMs,
        electionTicks: this.electionTicks,
        log,
        leaders: this.leaders,
        isConnected,
        send,
        shard,
        forward,
        replicasOf: (g) => this.replicasOf(g),
        broadcast: (m) => this.workers.broadcast(m),
        pickTarget: (g, replicas, hint, n, any) => this.pickTarget(g, replicas, hint, n, any),
        ledGroups: () => this.ledGroups(),
        drainTargets: (g, avoid, draining) => this.balancer.drainTargets(g, avoid, draining),
        uptimeMs: () => Date.now() - this.startedAt,
        eventLoopP99Ms: () => this.loopTiming.eventLoop().p99Ms,
        status: () => this.status(),
        events: this.events,
      },
      opts.draining,
    );
    this.protocol = new PeerProtocol({
      id: this.id,
      log,
      attemptMs: this.attemptMs,
      timeoutMs: this.timeoutMs,
      stats: this.stats,
      send,
      shard,
      leadership: this.leadership,
      membership: this.membership,
      isLocal: (g) => this.isLocal(g),
      hosted: async () =>
        (
          await Promise.all(Array.from({ length: this.workerCount }, (_, i) => this.workers.call(i, 'hosted', {})))
        ).flat(),
      leaderOf: (g) => this.leaders.get(g),
      admit: (bytes, origin) => this.admit(bytes, origin),
      serve: (g, origin, kind, req) => this.serveLocal(g, origin, kind, req),
      peerWorkers: (from, w) => {
        this.peerWorkers.set(from, w);
        this.workers.broadcast({ kind: 'peers', workers: { [from]: w } });
      },
      onSummary: (from, sum) => this.balancer?.onSummary(from, sum),
      onReply: (from, r) => this.forwarder.onReply(from, r),
      onMeta: (from, version) => {
        if (!this.membership.has(META_GROUP)) void this.learnMetaGroup(from);
        else if (version > this.roster.version) void this.roster.sync('fresh');
      },
    });
    this.transferStats = this.leadership.transferStats;
    this.leaderChangesByCause = this.leadership.leaderChangesByCause;
    this.histograms = this.leadership.histograms;
  }

  static async start(given: StartOptions): Promise<FlotillaNode> {
    let opts = resolveStartOptions(given);
    const { nodes, replication } = opts;
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ node: opts.id });
    // What the layers below check themselves, refused naming the field as StartOptions does.
    address('listen', opts.listen);
    for (const [p, a] of Object.entries(opts.peers)) address(`peers.${p}`, a);
    if (opts.balancer) {
      try {
        validateBalancerConfig(opts.balancer);
      } catch (e) {
        if (!(e instanceof BalancerConfigError)) throw e;
        const problem = e.code === 'UnknownSetting' ? 'UnknownSetting' : 'InvalidValue';
        throw new StartOptionsError(e.field, problem, e.message.slice(e.field.length + 2));
      }
    }
    if (opts.replicas) {
      try {
        validateReplicaMoverConfig(opts.replicas);
      } catch (e) {
        if (!(e instanceof BalancerConfigError)) throw e;
        const problem = e.code === 'UnknownSetting' ? 'UnknownSetting' : 'InvalidValue';
        const field = e.field.startsWith('replicas') ? e.field : `replicas.${e.field}`;
        throw new StartOptionsError(field, problem, e.message.slice(e.field.length + 2));
      }
    }
    try {
      validateTransportSecurity(opts.transportSecurity);
    } catch (e) {
      // The transport's message starts with its name of the field: 'tls.ca: ...', 'secret: ...'.
      const msg = (e as Error).message;
      const at = msg.indexOf(': ');
      throw at > 0
        ? new StartOptionsError(`transportSecurity.${msg.slice(0, at)}`, 'InvalidValue', msg.slice(at + 2))
        : new StartOptionsError('transportSecurity', 'InvalidValue', msg);
    }
    const threads = opts.workers;
    const workers = Math.max(1, threads);
    let snapshotStream: SnapshotStreamLimits;
    try {
      snapshotStream = snapshotStreamLimits(opts.snapshotStream, DEFAULT_MAX_FRAME_BYTES);
    } catch (e) {
      throw new StartOptionsError('snapshotStream', 'InvalidValue', (e as Error).message);
    }
    mkdirSync(opts.dataDir, { recursive: true });
    const idFile = join(opts.dataDir, 'cluster.json');
    const prev = existsSync(idFile) ? (JSON.parse(readFileSync(idFile, 'utf8')) as ClusterFile) : null;
    if (prev !== null && prev.workers !== undefined && prev.workers !== workers) {
      // Groups are hashed to workers and each worker owns its LMDB environment: a different
      // count would strand groups in environments no worker opens.
      throw new RuntimeError(
        'InvalidArgument',
        `workers: ${opts.dataDir} was created with ${prev.workers} workers, not ${workers}; refusing to start`,
      );
    }
    // The nodes the cluster was bootstrapped with, with where to reach them (the record of group 0
    // starts from them); a node that joined has none of its own.
    const bootNodes: NodeSpec[] = [];
    let clusterId: string;
    let bootstrap: Map<number, NodeId[]>;
    /** Joined just now: the member that admitted this node (it answers the directory). */
    let admittedBy: NodeId | null = null;
    if (prev?.joined !== undefined) {
      // A node that joined: the cluster's shape is what it was told, whatever the flags say.
      if (prev.node !== opts.id)
        throw new RuntimeError(
          'InvalidArgument',
          `${opts.dataDir} belongs to node ${prev.node} of cluster ${prev.clusterId}, not ${opts.id}; refusing to start`,
        );
      clusterId = prev.clusterId;
      opts = { ...opts, groups: prev.joined.groups, replication: prev.joined.replication };
      bootstrap = new Map();
    } else if (prev === null && opts.join !== undefined) {
      const r = await requestJoin({
        nodeId: opts.id,
        address: opts.advertise,
        labels: { ...opts.labels },
        seed: opts.join,
        tls: opts.transportSecurity?.tls,
        secret: opts.transportSecurity?.secret,
        logger: log,
      });
      if (!r.ok) {
        log.error({ seed: opts.join, reason: r.error.reason, err: r.error }, 'join refused');
        throw r.error;
      }
      const info = r.info === undefined ? undefined : decodeJoinInfo(r.info);
      if (info === undefined)
        throw new RuntimeError('Unavailable', `${opts.join} admitted ${opts.id} but sent no readable cluster topology`);
      clusterId = r.clusterId;
      admittedBy = r.acceptor;
      opts = { ...opts, groups: info.groups, replication: info.replication };
      bootstrap = new Map();
      // The node list first: a crash between the two files leaves a data dir that is not a
      // member yet (it joins again, as a retried join), never a member that knows no peers.
      writeRosterFile(opts.dataDir, info.version, info.nodes);
      log.info({ clusterId, acceptor: r.acceptor, nodes: info.nodes.length }, 'joined the cluster');
    } else {
      if (prev !== null && opts.join !== undefined)
        throw new RuntimeError(
          'InvalidArgument',
          `join: ${opts.dataDir} already holds node ${prev.node} of cluster ${prev.clusterId}, which was bootstrapped ` +
            'with it: --join is for an empty data dir (restart this node with its original peers)',
        );
      clusterId = clusterIdOf(nodes, opts.groups, replication);
      if (prev !== null && (prev.clusterId !== clusterId || prev.node !== opts.id)) {
        throw new RuntimeError(
          'InvalidArgument',
          `${opts.dataDir} belongs to node ${prev.node} of cluster ${prev.clusterId}, but this configuration is node ` +
            `${opts.id} of cluster ${clusterId} (nodes, groups or replication differ); refusing to start`,
        );
      }
      bootstrap = placement(nodes, opts.groups, replication);
      bootNodes.push({ id: opts.id, address: opts.advertise, labels: opts.labels });
      for (const [p, a] of Object.entries(opts.peers))
        if (p !== opts.id) bootNodes.push({ id: p, address: a, labels: {} });
    }
    const file: ClusterFile = { clusterId, node: opts.id, workers };
    replaceFile(
      idFile,
      JSON.stringify(
        prev?.joined !== undefined || admittedBy !== null
          ? { ...file, joined: { groups: opts.groups, replication: opts.replication } }
          : file,
      ),
    );
    // Peers: the configured ones, then every node the cluster record listed when last seen.
    const known = readRosterFile(opts.dataDir);
    const peerAddrs: Record<NodeId, string> = {};
    for (const [p, a] of Object.entries(opts.peers)) if (p !== opts.id) peerAddrs[p] = a;
    const removedPeers: NodeId[] = [];
    for (const n of known?.nodes ?? []) {
      if (n.id === opts.id) continue;
      if (n.state === 'removed') {
        removedPeers.push(n.id);
        delete peerAddrs[n.id];
      } else peerAddrs[n.id] = n.address;
    }
    if (known?.nodes.some((n) => n.id === opts.id && n.state === 'removed'))
      throw new RuntimeError(
        'InvalidArgument',
        `${opts.id} was decommissioned from cluster ${clusterId}: a removed node never rejoins with its old data ` +
          '(start a new node with a new id and an empty data dir)',
      );
    opts = { ...opts, peers: peerAddrs };

    const tickMs = opts.tickMs * opts.timingScale;
    const electionTicks = opts.electionTicks;
    const node = new FlotillaNode(opts.id, opts, bootstrap, log, clusterId, workers, tickMs * electionTicks, bootNodes);
    const perWorker: [number, NodeId[]][][] = Array.from({ length: workers }, () => []);
    for (const [g, m] of node.membership.entries())
      if (m.includes(opts.id)) perWorker[workerOf(g, workers)].push([g, m]);

    const shardOpts: ShardWorkersOptions = {
      workers,
      log,
      init: (i) => ({
        index: i,
        nodeId: opts.id,
        dataDir: join(opts.dataDir, `w${i}`),
        groups: perWorker[i],
        peerWorkers: Object.fromEntries(node.peerWorkers),
        tickMs,
        raft: opts.raft,
        requestTimeoutMs: node.timeoutMs,
        seed: 0,
        logLevel: log.level,
        noSync: opts.noSync,
        stateMachine: opts.stateMachine,
        campaignDelay: node.isDraining ? 2 * node.electionTicks : 0,
        snapshotStream,
      }),
      onOut: (target, worker, batch) => {
        node.stats.relayedOut++;
        node.transport.send(target, { k: 'rb', w: worker, b: batch });
      },
      onSnapshotFrame: (target, worker, frame, bulk) => {
        const e: Envelope = { k: 'app', t: SNAPSHOT_FRAME, p: { w: worker, b: frame } };
        if (bulk) node.transport.sendBulk(target, e);
        else node.transport.send(target, e);
      },
      onConf: (g, voters, learners, index) => node.membership.onConf(g, voters, learners, true, index),
      onLeader: (g, l, term, kind) => {
        if (!l) {
          node.leaders.delete(g);
          return;
        }
        node.stats.leaderChanges++;
        const cause = node.leadership.countLeaderChange(g, kind);
        node.leaders.set(g, l);
        const waits = node.leaderWaits.get(g);
        if (waits) for (const wake of [...waits]) wake();
        if (node.events.wants('leaderChange')) node.events.emit('leaderChange', { group: g, leader: l, term, cause });
      },
      onRestart: (worker, reason, restartInMs) => {
        if (node.events.wants('workerRestart')) node.events.emit('workerRestart', { worker, reason, restartInMs });
      },
      onBrief: (i, b) => {
        node.shardBriefs[i] = { ...b, at: performance.now() };
      },
      onStarted: (i) => {
        for (const p of node.transport?.connectedPeers() ?? []) node.workers.post(i, { kind: 'peerUp', peer: p });
        if (node.isDraining) node.workers.post(i, { kind: 'campaignDelay', ticks: 2 * node.electionTicks });
        if (node.diskDelay.ms || node.diskDelay.jitterMs)
          node.workers.post(i, { kind: 'diskDelay', ...node.diskDelay });
      },
    };
    node.workers = threads === 0 ? new InlineShards(shardOpts) : new ShardWorkers(shardOpts);
    if (threads === 0 && !semiSpaceConfigured())
      log.info(
        { flags: NODE_FLAGS },
        `shards run on the main thread with the default young generation: NODE_OPTIONS='${NODE_FLAGS.join(' ')}' gives less GC`,
      );
    node.transport = new Transport({
      nodeId: opts.id,
      clusterId,
      listen: parseAddress(opts.listen),
      peers: opts.peers,
      logger: log,
      tls: opts.transportSecurity?.tls,
      secret: opts.transportSecurity?.secret,
      onEnvelopes: (from, envs) => node.onEnvelopes(from, envs),
      onJoinRequest: (req) => node.roster.admit(req),
    });
    for (const id of removedPeers) node.transport.removePeer(id);
    node.forwarder = new Forwarder({
      isConnected: (p) => node.transport.isConnected(p),
      send: (p, e) => node.transport.send(p, e),
    });
    node.transport.on('peerUp', (p) => {
      node.linkChanges++;
      node.transport.send(
        p,
        notice('hello', {
          workers,
          timing: { electionMs: node.electionMs, heartbeatMs: node.electionMs / node.electionTicks },
        }),
      );
      // Also when not draining: a node restarted after a drain (SIGTERM drains first) must clear
      // the mark its peers still hold, or they would never send leadership back.
      node.transport.send(p, notice('drainState', { draining: node.isDraining }));
      // The record's version, once it exists: a peer that missed group 0's creation learns of
      // it here at the latest (onMeta), one that fell behind reads the record again.
      if (node.membership.has(META_GROUP) && node.roster.version > 0)
        node.transport.send(p, notice('meta', { version: node.roster.version }));
      node.workers.broadcast({ kind: 'peerUp', peer: p });
      if (node.events.wants('peerUp')) node.events.emit('peerUp', { peer: p });
    });
    node.transport.on('handshakeError', (err) => {
      // A member refused this node as removed: it was decommissioned while away (or the notice
      // was lost with the link). It never serves again from this data dir.
      if (err.reason !== 'Removed' || err.side !== 'dial' || node.evicted) return;
      node.evicted = true;
      node.roster.noteSelfRemoved();
      log.error({ by: err.peer }, 'this node was removed from the cluster: it will not start again from this data dir');
    });
    node.transport.on('peerDown', (p) => {
      node.linkChanges++;
      node.workers.broadcast({ kind: 'peerDown', peer: p });
      // Requests in flight to a node that died will not be answered: retry them elsewhere now
      // (client sessions make a proposal's retry safe even if the dead node had logged it).
      node.forwarder.peerDown(p);
      if (node.events.wants('peerDown')) node.events.emit('peerDown', { peer: p });
    });
    try {
      await node.workers.start();
    } catch (e) {
      await node.workers.stop();
      await node.transport.close();
      throw new RuntimeError('StorageFailed', `cannot start the shards: ${(e as Error).message}`);
    }
    try {
      await node.transport.start();
    } catch (e) {
      await node.workers.stop();
      throw new RuntimeError('InvalidArgument', `listen: cannot listen on ${opts.listen}: ${(e as Error).message}`);
    }
    node.balancer = new LeaderBalancer(
      {
        id: opts.id,
        peers: node.peers,
        isConnected: (p) => node.transport.isConnected(p),
        isDraining: () => node.isDraining,
        uptimeMs: () => Date.now() - node.startedAt,
        labels: opts.labels,
        ledGroups: () => node.ledGroups(),
        ledCount: async () => node.briefs().reduce((a, b) => a + b.leaders, 0),
        takeOrigins: () => {
          const o = node.origins;
          node.origins = new Map();
          return o;
        },
        health: () => node.health(),
        transfer: (g, to) => node.transferLeader(g, to, { cause: 'balancer' }),
        broadcastSummary: (sum) => {
          // Its own links ride along: a transfer's preflight asks the target's view, not the leader's.
          const reach = node.transport.connectedPeers();
          node.leadership.noteOwnView({
            reach,
            fsyncP99Ms: sum.fsyncP99Ms ?? null,
            cpu: sum.cpu ?? null,
            at: Date.now(),
          });
          for (const p of node.peers) node.transport.send(p, notice('summary', { ...sum, reach }));
        },
      },
      { ...opts.balancer },
      log.child({ component: 'balancer' }),
    );
    node.balancer.start();
    node.pinger = setInterval(() => {
      for (const p of node.transport.connectedPeers())
        node.transport.send(p, notice('ping', { at: performance.now() }));
    }, 1000);
    node.pinger.unref();
    if (admittedBy !== null) await node.fetchDirectory(admittedBy);
    // The cluster record is read on a slow timer too: a notice of a change can be lost with a link.
    node.metaTimer = setInterval(() => void node.roster.sync(), META_SYNC_MS);
    node.metaTimer.unref();
    void node.roster.sync();
    node.scheduleMover(META_SYNC_MS);
    log.info({ clusterId, workers, groups: node.groupIds().length }, 'node started');
    return node;
  }

  /** The next mover round in `ms`. */
  private scheduleMover(ms: number): void {
    if (this.stopped) return;
    this.moverTimer = setTimeout(() => this.scheduleMover(this.moverRound()), ms);
    this.moverTimer.unref();
  }

  /** One round of the replica mover, when this node leads group 0 and the cluster record exists
   *  (moves already started elsewhere finish there; the mover here sees them as learners).
   *  Answers when to run the next. A plan walks every group (about 4 ms per 1,000 groups on
   *  this machine, 150 ms for 100,000), so an idle cluster is not planned again until something
   *  it depends on changes (a group's replicas, the nodes, a link, a repair coming due; at
   *  least once a minute), and while moves run the pace is 100 ms or five times the last plan's
   *  cost, whichever is longer. */
  private moverRound(): number {
    if (this.stopped || this.evicted || this.leaders.get(META_GROUP) !== this.id) {
      this.moverIdle = null;
      return META_SYNC_MS;
    }
    if (this.roster.nodes().length === 0) return META_SYNC_MS;
    const now = Date.now();
    const key = `${this.membership.version}/${this.roster.version}/${this.linkChanges}`;
    const idle = this.moverIdle;
    if (idle !== null && idle.key === key && now < idle.until) return META_SYNC_MS;
    try {
      const t0 = performance.now();
      const plan = this.mover.round();
      const cost = performance.now() - t0;
      const busy =
        plan.moves.length > 0 ||
        plan.removals.length > 0 ||
        plan.adoptions.length > 0 ||
        this.mover.status().inFlight.length > 0;
      if (busy) {
        this.moverIdle = null;
        return Math.max(MOVER_BUSY_MS, 5 * cost);
      }
      this.moverIdle = {
        key,
        until: Math.min(now + MOVER_IDLE_MAX_MS, this.repairDue(now), this.mover.nextDueMs(now)),
      };
      return META_SYNC_MS;
    } catch (e) {
      this.log.warn({ err: e }, 'replica mover round failed');
      return META_SYNC_MS;
    }
  }

  /** When the first down node's replicas come due for repair (a plan must run then even if
   *  nothing else changed), or never. */
  private repairDue(now: number): number {
    const delay = this.opts.replicas?.repairDelayMs ?? REPLICA_MOVER_DEFAULTS.repairDelayMs;
    let due = Number.POSITIVE_INFINITY;
    for (const since of this.downSince.values()) due = Math.min(due, Math.max(now + 1, since + delay));
    return due;
  }

  /** The cluster as the replica planner sees it from here. Kept until the group map, the cluster
   *  record or a link changes (the same key the mover's idle test uses): it walks every group,
   *  and the mover asks for it several times a round, at the end of every move and for every
   *  status; rebuilt for each, it took 4% of a core on the main thread while replicas moved
   *  (1,000 groups). Callers must not change it. */
  private placementView(): PlacementView {
    const key = `${this.membership.version}/${this.roster.version}/${this.linkChanges}`;
    if (this.lastView?.key === key) return this.lastView.view;
    const view = this.buildPlacementView();
    this.lastView = { key, view };
    return view;
  }

  private buildPlacementView(): PlacementView {
    const now = Date.now();
    const nodes: PlacementNode[] = this.roster.nodes().map((n) => {
      const up = n.id === this.id || this.transport.isConnected(n.id);
      if (up) this.downSince.delete(n.id);
      else if (!this.downSince.has(n.id)) this.downSince.set(n.id, now);
      return {
        id: n.id,
        labels: n.id === this.id ? this.opts.labels : n.labels,
        state: n.state,
        up,
        downSinceMs: this.downSince.get(n.id),
      };
    });
    const active = nodes.filter((n) => n.state === 'active').length;
    // Group 0 keeps an odd voter count: five once there are five nodes, else three (or fewer).
    const metaReplication = active >= META_REPLICAS ? META_REPLICAS : Math.min(3, active);
    const groups: PlacementGroup[] = [];
    for (const [g, replicas] of this.membership.entries()) {
      const learners = this.membership.learnersOf(g);
      groups.push({
        id: g,
        voters: replicas.filter((r) => !learners.includes(r)),
        learners: [...learners],
        ...(g === META_GROUP ? { replication: metaReplication } : {}),
      });
    }
    return { nodes, groups, replication: this.opts.replication };
  }

  /** Emit nodeChange when `id`'s state differs from what this node last knew. */
  private noteNodeState(id: NodeId, state: NodeState, address: string): void {
    const previous = this.nodeStates.get(id) ?? null;
    if (previous === state) return;
    this.nodeStates.set(id, state);
    this.events.emit('nodeChange', { node: id, state, previous, address });
  }

  /** A peer announced the cluster record but this node has no group 0: it missed the group's
   *  creation. Ask that peer where group 0 is, join it (membership.learnMetaGroup), read the
   *  record. One question at a time; the next announcement asks again if this one failed. */
  private async learnMetaGroup(from: NodeId): Promise<void> {
    if (this.learningMeta || this.stopped) return;
    this.learningMeta = true;
    try {
      const entries = directoryOf(await this.forward(from, 'dir', { group: META_GROUP }, 2_000));
      const meta = entries?.find(([g]) => g === META_GROUP);
      if (meta === undefined) return;
      if (await this.membership.learnMetaGroup(meta[1])) {
        // A member missed the creation; a node that joined may just hear of it before its directory.
        if (meta[1].includes(this.id))
          this.log.warn(
            { from, replicas: meta[1] },
            'group 0 was created without this node hearing of it: joined it now',
          );
        else this.log.info({ from, replicas: meta[1] }, 'learned where group 0 is');
        await this.roster.sync('fresh');
      }
    } catch (e) {
      this.log.debug({ from, err: e }, 'could not learn where group 0 is');
    } finally {
      this.learningMeta = false;
    }
  }

  /** A node that just joined learns where every group's replicas are from a member (first the
   *  one that admitted it), before it serves: it holds none of them yet. */
  private async fetchDirectory(first: NodeId): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    for (let n = 0; ; n++) {
      const others = this.peers.filter((p) => p !== first);
      const target = n === 0 ? first : (others.find((p) => this.transport.isConnected(p)) ?? first);
      try {
        const answer = await this.forward(target, 'dir', { group: META_GROUP }, 2_000);
        const entries = directoryOf(answer);
        if (entries === undefined) throw new RuntimeError('InvalidArgument', `${target} sent a malformed directory`);
        this.membership.adoptDirectory(entries);
        this.log.info({ from: target, groups: entries.length }, 'group directory received');
        return;
      } catch (e) {
        if (Date.now() > deadline)
          throw new RuntimeError(
            'Unavailable',
            `joined, but no member sent the group directory: ${(e as Error).message}`,
          );
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** The cluster record changed: keep a link to every node in it, none to a removed one. */
  private onNodes(members: readonly MetaNode[], removed: readonly NodeId[]): void {
    if (this.events.wants('nodeChange')) {
      for (const n of members) this.noteNodeState(n.id, n.state, n.address);
      for (const id of removed) this.noteNodeState(id, 'removed', this.roster.node(id)?.address ?? '');
    }
    for (const n of members) {
      if (n.id === this.id) continue;
      if (!this.peers.includes(n.id)) {
        this.peers.push(n.id);
        this.log.info({ peer: n.id, address: n.address, state: n.state }, 'node added to the cluster');
      }
      try {
        this.transport.addPeer(n.id, n.address);
      } catch (e) {
        if (!(e instanceof PeerRemovedError)) throw e;
      }
    }
    for (const id of removed) {
      if (id === this.id) {
        if (!this.evicted)
          this.log.error({ node: id }, 'this node was removed from the cluster: it serves nothing any more');
        this.evicted = true;
        continue;
      }
      const i = this.peers.indexOf(id);
      if (i >= 0) {
        this.peers.splice(i, 1);
        this.log.info({ peer: id }, 'node removed from the cluster');
      }
      this.transport.removePeer(id);
    }
  }

  /** The nodes holding a replica of `group`. */
  replicasOf(group: number): NodeId[] {
    return this.membership.replicasOf(group);
  }

  /** Every group of the cluster, as this node knows it. */
  groupIds(): number[] {
    return this.membership.groupIds();
  }

  private isLocal(group: number): boolean {
    return this.replicasOf(group).includes(this.id);
  }

  private workerFor(group: number): number {
    return workerOf(group, this.workerCount);
  }

  // --- embedded API ------------------------------------------------------------------------------

  /**
   * Propose `command` to `group` from any node; resolves with the state machine's result after
   * commit and apply. With the built-in KV the command is a KvCommand; with a user state machine
   * any msgpack value. Leader changes, transfers, unreachable nodes and timed-out attempts are
   * retried (to the new leader) until the deadline; the client session makes every retry safe.
   */
  propose<R = unknown, C = unknown>(group: number, command: C, o: ProposeOptions = {}): Promise<R> {
    const signal = o.signal;
    if (signal === undefined) return this.proposeNow<R>(group, command, o.timeoutMs, undefined);
    return abortable(signal, `proposal to group ${group}`, () =>
      this.proposeNow<R>(group, command, o.timeoutMs, signal),
    );
  }

  private async proposeNow<R>(
    group: number,
    command: unknown,
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<R> {
    if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
    this.replicasOf(group);
    let payload: Uint8Array;
    try {
      // Group 0 (the cluster record) runs the built-in KV whatever the other groups run.
      payload =
        this.opts.stateMachine && group !== META_GROUP
          ? encodeUserCommand(command)
          : encodeKvCommandView(command as KvCommand);
    } catch (e) {
      // The KV refuses a malformed command as it refuses any: a user's command msgpack cannot
      // encode is the caller's mistake.
      throw new RuntimeError(this.opts.stateMachine ? 'InvalidArgument' : 'StateMachineError', (e as Error).message);
    }
    const release = this.admit(payload.byteLength, this.id);
    const h = this.session.begin();
    this.stats.proposals++;
    try {
      const data = encodeCommand(h, payload);
      const r = await this.withRetries(
        group,
        timeoutMs ?? this.timeoutMs,
        (target, ms) =>
          target === this.id
            ? this.serveLocal(group, this.id, 'propose', { group, data, timeoutMs: ms })
            : this.forward(target, 'fwd', { group, d: data, to: ms }, ms + 250),
        false,
        signal,
      );
      const rejected = rejectionError(r);
      if (rejected) throw rejected;
      // The state machine's result as the caller typed it (it crossed a thread or the network).
      return r as R;
    } finally {
      this.session.done(h.seq);
      release();
    }
  }

  /** Take one proposal of `bytes` (made on `origin`) into the node's pending budget, or refuse
   *  it (Overloaded). */
  private admit(bytes: number, origin: NodeId): () => void {
    const { maxPendingProposals: maxN, maxPendingBytes: maxB } = this.opts.limits;
    if (this.pendingProposals >= maxN || this.pendingBytes + bytes > maxB) {
      this.stats.overloaded++;
      if (this.events.wants('overload'))
        this.events.emit('overload', {
          shed: 'proposal',
          bytes,
          origin,
          limit: this.pendingProposals >= maxN ? 'maxPendingProposals' : 'maxPendingBytes',
          pendingProposals: this.pendingProposals,
          pendingBytes: this.pendingBytes,
        });
      if (this.stats.overloaded % 1000 === 1) {
        this.log.warn(
          { pending: this.pendingProposals, bytes: this.pendingBytes, refused: this.stats.overloaded },
          'overloaded: refusing proposals',
        );
      }
      throw new RuntimeError(
        'Overloaded',
        `node ${this.id} has ${this.pendingProposals} proposals (${this.pendingBytes} bytes) pending; limits ${maxN} / ${maxB} bytes`,
      );
    }
    this.pendingProposals++;
    this.pendingBytes += bytes;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.pendingProposals--;
      this.pendingBytes -= bytes;
    };
  }

  /** Query `group`'s state machine (KV: the query is a key). Linearizable (ReadIndex) by default. */
  read<R = unknown, Q = unknown>(group: number, query: Q, o: ReadOptions = {}): Promise<R> {
    const signal = o.signal;
    if (signal === undefined) return this.readNow<R>(group, query, o, undefined);
    return abortable(signal, `read of group ${group}`, () => this.readNow<R>(group, query, o, signal));
  }

  private async readNow<R>(group: number, query: unknown, o: ReadOptions, signal: AbortSignal | undefined): Promise<R> {
    if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
    this.replicasOf(group);
    const c: Consistency = o.consistency === 'stale' ? 'stale' : o.consistency === 'lease' ? 'lease' : 'linearizable';
    this.stats.reads++;
    const r = await this.withRetries(
      group,
      o.timeoutMs ?? this.timeoutMs,
      (target, ms) =>
        target === this.id
          ? this.serveLocal(group, this.id, 'read', { group, query, consistency: c, timeoutMs: ms })
          : this.forward(target, 'rd', { group, q: query, c, to: ms }, ms + 250),
      c === 'stale',
      signal,
    );
    // The state machine's answer as the caller typed it (it crossed a thread or the network).
    return r as R;
  }

  /** Sleep `ms`, or less if a local replica of `group` reports a leader meanwhile (or `signal`
   *  aborts: the retry loop then stops). */
  private leaderOrSleep(group: number, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      let set = this.leaderWaits.get(group);
      if (!set) {
        set = new Set();
        this.leaderWaits.set(group, set);
      }
      const done = () => {
        clearTimeout(timer);
        off?.();
        const s = this.leaderWaits.get(group);
        s?.delete(done);
        if (s?.size === 0) this.leaderWaits.delete(group);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const off = signal ? onAbort(signal, done) : undefined;
      set.add(done);
    });
  }

  /** Hand a client request to the group's worker, noting where it came from when this node
   *  leads the group (the balancer's follow-the-workload input). */
  private serveLocal<K extends 'propose' | 'read'>(
    group: number,
    origin: NodeId,
    kind: K,
    req: CallRequest<K>,
  ): Promise<CallReply<K>> {
    if (this.leaders.get(group) === this.id) {
      let m = this.origins.get(group);
      if (!m) {
        m = new Map();
        this.origins.set(group, m);
      }
      m.set(origin, (m.get(origin) ?? 0) + 1);
    }
    return this.workers.call(this.workerFor(group), kind, req);
  }

  /** Groups this node leads, with their replicas, served work and followers' lag. */
  private async ledGroups(): Promise<LedInfo[]> {
    const perWorker = await Promise.all(
      Array.from({ length: this.workerCount }, (_, i) => this.workers.call(i, 'led', {}).catch(() => [])),
    );
    return perWorker
      .flat()
      .filter((g) => this.membership.has(g.group))
      .map((g) => ({
        group: g.group,
        replicas: this.replicasOf(g.group),
        served: g.served,
        lag: g.lag,
        learners: g.learners,
      }));
  }

  /** Each shard's leader count and storage commit p99: what a balancer round needs every time,
   *  as the shards last pushed them (they do while busy, within BRIEF_MS of a change). Asking
   *  instead woke every worker twice a round: with 100,000 groups that cost 10-25% of a core per
   *  node in garbage collections of the idle workers' large heaps. A shard quiet for a whole
   *  window has no commit p99 any more; one that is down leads nothing. */
  private briefs(): ShardBrief[] {
    const now = performance.now();
    return Array.from({ length: this.workerCount }, (_, i) => {
      const b = this.shardBriefs[i];
      if (!b || !this.workers.isUp(i)) return { leaders: 0, commitP99Ms: null };
      return { leaders: b.leaders, commitP99Ms: now - b.at > COMMIT_P99_WINDOW_MS ? null : b.commitP99Ms };
    });
  }

  /** Storage tail (worst shard's commit p99) and CPU use since the last call, as a fraction of the cores. */
  private async health(): Promise<{ fsyncP99Ms: number | null; cpu: number | null }> {
    const commits = this.briefs()
      .map((x) => x.commitP99Ms)
      .filter((x): x is number => typeof x === 'number');
    const now = performance.now();
    const used = process.cpuUsage(this.cpuMark.usage);
    const cpu = (used.user + used.system) / 1000 / Math.max(1, now - this.cpuMark.at) / availableParallelism();
    this.cpuMark = { usage: process.cpuUsage(), at: now };
    return { fsyncP99Ms: commits.length ? Math.max(...commits) : null, cpu };
  }

  /** Run `attempt` against the best target until it succeeds, fails for good or the deadline.
   *  An aborted `signal` stops it before the next attempt: a request not handed to a replica yet
   *  is never handed over. */
  private async withRetries(
    group: number,
    timeoutMs: number,
    attempt: (target: NodeId, ms: number) => Promise<unknown>,
    anyReplica = false,
    signal?: AbortSignal,
  ): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    let replicas = this.replicasOf(group);
    let hint: NodeId = '';
    for (let n = 0; ; n++) {
      // Replicas move at run time (the mover): each attempt routes by what is known now.
      if (n > 0 && this.membership.has(group)) replicas = this.replicasOf(group);
      const remaining = deadline - Date.now();
      if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
      throwIfAborted(`request to group ${group}`, signal);
      const target = this.pickTarget(group, replicas, hint, n, anyReplica);
      try {
        return await attempt(target, Math.max(1, Math.min(remaining, this.attemptMs)));
      } catch (e) {
        const err = e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', (e as Error).message);
        if (err.code === 'NotLeader') this.stats.notLeader++;
        if (!err.retryable || deadline - Date.now() < 10) throw err;
        this.stats.retries++;
        hint = err.leader && replicas.includes(err.leader) ? err.leader : '';
        if (err.leader && !hint && err.leader !== this.id) this.membership.refreshHinted(group, this.attemptMs);
        if (hint) this.leaders.set(group, hint);
        else if (this.leaders.get(group) === target) this.leaders.delete(group);
        // A hint to another node is followed at once; otherwise wait a little (election, restart).
        // A local replica learning the new leader ends the wait at once (failover, transfer).
        if (!(hint && hint !== target))
          await this.leaderOrSleep(
            group,
            Math.min(jittered(Math.min(200, 5 * 2 ** Math.min(n, 6))), Math.max(0, deadline - Date.now() - 5)),
            signal,
          );
      }
    }
  }

  private pickTarget(group: number, replicas: NodeId[], hint: NodeId, n: number, anyReplica: boolean): NodeId {
    if (anyReplica && replicas.includes(this.id)) return this.id;
    if (hint) return hint;
    const cached = this.leaders.get(group);
    if (cached && replicas.includes(cached) && (cached === this.id || this.transport.isConnected(cached)))
      return cached;
    if (n === 0 && replicas.includes(this.id)) return this.id;
    const up = replicas.filter((r) => r === this.id || this.transport.isConnected(r));
    const pool = up.length > 0 ? up : replicas;
    return pool[n % pool.length];
  }

  /** This node and its groups. `detail` adds every group's Raft status (role, term, commit,
   *  applied, last index, quiesced, transfer, per-peer match/next/state when leader). */
  status(o: StatusOptions = {}): Promise<NodeStatus> {
    return abortable(o.signal, 'status', () => this.statusNow(o.detail ?? false));
  }

  private async statusNow(detail: boolean): Promise<NodeStatus> {
    const perGroup: GroupView[][] = []; // by shard: the list keeps shard order
    const shards = await Promise.all(
      Array.from({ length: this.workerCount }, (_, i) =>
        this.workers.call(i, 'status', { detail }).then(
          ({ perGroup: groups, ...st }): ShardEntry => {
            if (groups) perGroup[i] = groups;
            return { worker: i, up: true, ...st };
          },
          (e: Error): ShardEntry => ({ worker: i, up: false, error: e.message, groups: 0, leaders: 0, quiesced: 0 }),
        ),
      ),
    );
    const sum = (k: 'groups' | 'leaders' | 'quiesced') => shards.reduce((a, s) => a + s[k], 0);
    return {
      id: this.id,
      clusterId: this.clusterId,
      labels: this.opts.labels,
      uptimeMs: Date.now() - this.startedAt,
      workers: this.workerCount,
      workerRestarts: this.workers.stats.restarts,
      groups: sum('groups'),
      leaders: sum('leaders'),
      quiesced: sum('quiesced'),
      draining: this.isDraining,
      drainingPeers: this.leadership.drainingPeers(),
      transfers: this.transferStats,
      balancer: this.balancer?.stats,
      /** The balancer's health policy holds this node's storage slow (it sheds leaderships). */
      slowStorage: this.balancer?.isSlow(this.id) ?? false,
      leaderChanges: { ...this.leaderChangesByCause },
      pending: { proposals: this.pendingProposals, bytes: this.pendingBytes },
      eventLoop: this.loopTiming.eventLoop(),
      peers: this.transport.connectedPeers(),
      runtime: this.stats,
      transport: this.transport.stats(),
      shards,
      perGroup: detail ? perGroup.flat() : undefined,
      cluster: this.clusterBrief(),
    };
  }

  private clusterBrief(): ClusterBrief {
    const nodes = { active: 0, decommissioning: 0, removed: 0 };
    for (const n of this.clusterNodes()) nodes[n.state]++;
    const m = this.moverStatus();
    return {
      nodes,
      moverHere: m.runsHere,
      movesInFlight: m.inFlight.length,
      decommissioning: m.decommissioning,
      removed: this.evicted,
    };
  }

  /**
   * Move leadership of `group` to `target`, from any node (forwarded to the current leader), and
   * verify it: resolves once the target leads and serves (a ReadIndex round on the target), with
   * the time it took. Rejects with a TransferError whose `reason` says why (target not a member,
   * a learner, unhealthy, lagging, draining, a membership change in flight, no quorum, timed out:
   * the old leader then stays leader). Every outcome is logged and counted.
   */
  transferLeader(group: number, target: NodeId, o: TransferOptions = {}): Promise<TransferResult> {
    return abortable(o.signal, `transfer of group ${group}`, () => this.leadership.transfer(group, target, o));
  }

  /**
   * Planned maintenance: mark this node draining (other nodes stop sending leadership here) and
   * move every leadership it holds to the best eligible replica — a caught-up, recently heard
   * voter that is not draining and not in `avoid` (the nodes to be maintained next) — at most
   * `concurrency` at a time, each verified. Reports what moved and what did not, with reasons.
   */
  drain(o: DrainOptions = {}): Promise<DrainReport> {
    return abortable(o.signal, `drain of ${this.id}`, () => this.leadership.drain(o));
  }

  /** End maintenance: leadership may come back to this node (the balancer brings it). */
  undrain(): void {
    this.leadership.undrain();
  }

  get isDraining(): boolean {
    return this.leadership.isDraining;
  }

  /** This node and its process in Prometheus text format 0.0.4 (what GET /metrics serves). */
  metrics(): Promise<string> {
    return nodeMetrics(this);
  }

  /** Timing budget, voter-set shape and flapping checks, each with what to change. */
  stabilityWarnings(o: CallOptions = {}): Promise<StabilityWarning[]> {
    return abortable(o.signal, 'stability check', () => this.leadership.stabilityWarnings());
  }

  /** The leader balancer's view: the moves it would make now, and why (or why none). */
  balancePlan(o: CallOptions = {}): Promise<Plan> {
    return abortable(o.signal, 'balance plan', () => this.balancer.plan());
  }

  /** The leader balancer's settings in force (defaults filled in). */
  balancerConfig(): BalancerConfig {
    return this.balancer.config();
  }

  /** Change the leader balancer's settings at run time on this node (merged over the current
   *  ones; a bad field is refused with InvalidArgument naming it). */
  configureBalancer(patch: BalancerConfig): BalancerConfig {
    try {
      return this.balancer.reconfigure(patch);
    } catch (e) {
      throw e instanceof BalancerConfigError ? RuntimeError.fromBalancer(e) : e;
    }
  }

  /** Run one balancer round now (exchanging summaries, then moving). An abort rejects the call;
   *  the round's moves already asked for go on. */
  balanceRound(o: CallOptions = {}): Promise<Plan> {
    return abortable(o.signal, 'balance round', () => this.balancer.round());
  }

  /** Membership change, step 1 of three (add a learner, promote it, remove the old member): add
   *  `nodeId` to `group` as a learner (it receives the log but does not vote). Its node creates an
   *  empty replica first. Resolves once applied. */
  addLearner(group: number, nodeId: NodeId, o: ProposeOptions = {}): Promise<void> {
    return abortable(o.signal, `adding learner ${nodeId} to group ${group}`, () =>
      this.membership.addLearner(group, nodeId, o.timeoutMs ?? this.timeoutMs, o.signal),
    );
  }

  /** Step 2: make a caught-up learner a voter (retried until it has caught up, or the deadline). */
  promote(group: number, nodeId: NodeId, o: ProposeOptions = {}): Promise<void> {
    return abortable(o.signal, `promotion of ${nodeId} in group ${group}`, () =>
      this.membership.promote(group, nodeId, o.timeoutMs ?? this.timeoutMs, o.signal),
    );
  }

  /** Remove `nodeId`'s replica from `group` (a leader being removed hands over first); then that
   *  node deletes its copy. */
  removeMember(group: number, nodeId: NodeId, o: ProposeOptions = {}): Promise<void> {
    return abortable(o.signal, `removal of ${nodeId} from group ${group}`, () =>
      this.membership.removeMember(group, nodeId, o.timeoutMs ?? this.timeoutMs, o.signal),
    );
  }

  /** Create a group at run time on `replicas` (default: placement of the next id). Every node must
   *  be reachable (each records the group so that it can route to it). Returns the group id. An
   *  abort after the call started rejects it but does not undo the creation where it happened. */
  createGroup(group: number, replicas?: NodeId[], o: CallOptions = {}): Promise<number> {
    return abortable(o.signal, `creation of group ${group}`, () => this.membership.createGroup(group, replicas));
  }

  /** Remove a group at run time from every node (its data is deleted). An abort after the call
   *  started rejects it but does not stop the removal. */
  removeGroup(group: number, o: CallOptions = {}): Promise<void> {
    return abortable(o.signal, `removal of group ${group}`, () => this.membership.removeGroup(group));
  }

  /** The cluster's nodes as this node last saw them in the cluster record (group 0), each with
   *  its state, address, labels, whether this node has a link to it, and the replicas it holds
   *  as this node knows them. Before the record was first used: the configured nodes, active. */
  clusterNodes(): ClusterNode[] {
    const recorded = this.roster.nodes();
    const count = new Map<NodeId, number>();
    for (const [, replicas] of this.membership.entries())
      for (const r of replicas) count.set(r, (count.get(r) ?? 0) + 1);
    const base: MetaNode[] =
      recorded.length > 0
        ? recorded
        : [this.id, ...this.peers].sort().map((id) => ({
            id,
            address: id === this.id ? this.opts.advertise : (this.opts.peers[id] ?? ''),
            labels: id === this.id ? this.opts.labels : {},
            state: 'active' as const,
            joinedAt: 0,
          }));
    return base.map((n) => ({
      ...n,
      up: n.id === this.id ? !this.evicted : this.transport.isConnected(n.id),
      replicas: count.get(n.id) ?? 0,
    }));
  }

  /**
   * Decommission node `nodeId`: mark it decommissioning in the cluster record; the replica mover
   * (run by group 0's leader) then moves each of its replicas to another node (learner, caught
   * up, promoted, leadership handed over, old replica removed) and finally marks it removed, after
   * which its links are refused for good. Resolves with the node as recorded. Refused
   * (InvalidArgument) when fewer active nodes than the replication would remain. The first
   * decommission or join of a cluster creates group 0, which needs every node connected.
   */
  async decommission(nodeId: NodeId, o: CallOptions = {}): Promise<ClusterNode> {
    return abortable(o.signal, `decommission of ${nodeId}`, async () => {
      const active = this.clusterNodes().filter((n) => n.state === 'active');
      if (!this.clusterNodes().some((n) => n.id === nodeId))
        throw new RuntimeError('InvalidArgument', `no node ${nodeId} in the cluster`);
      if (active.some((n) => n.id === nodeId) && active.length - 1 < this.opts.replication)
        throw new RuntimeError(
          'InvalidArgument',
          `decommissioning ${nodeId} would leave ${active.length - 1} active nodes for ${this.opts.replication} ` +
            'replicas per group: add a node first',
        );
      await this.metaCall(() => this.roster.setState(nodeId, 'decommissioning'));
      return this.clusterNodes().find((n) => n.id === nodeId)!;
    });
  }

  /** Cancel a decommission: the node is active again (moves in flight finish; no new ones start).
   *  Refused (IllegalTransition) once it was removed. */
  async cancelDecommission(nodeId: NodeId, o: CallOptions = {}): Promise<ClusterNode> {
    return abortable(o.signal, `cancel of ${nodeId}'s decommission`, async () => {
      await this.metaCall(() => this.roster.setState(nodeId, 'active'));
      return this.clusterNodes().find((n) => n.id === nodeId)!;
    });
  }

  /** The replica mover's dry run from here: the moves a round would start now and why (or why
   *  none). Meaningful on group 0's leader, which runs the rounds. */
  replicaPlan(): MoverPlan | null {
    return this.roster.nodes().length === 0 ? null : this.mover.plan();
  }

  /** The replica mover on this node: moves in flight, counters by kind, errors, decommission
   *  progress. Moves run only on group 0's leader (`runsHere`). */
  moverStatus(): MoverStatus & { readonly runsHere: boolean } {
    return { ...this.mover.status(), runsHere: this.leaders.get(META_GROUP) === this.id };
  }

  /** This node was decommissioned (the cluster record says so, or a member refused it as removed). */
  get removedFromCluster(): boolean {
    return this.evicted;
  }

  /** Joins admitted and refused here, cluster record reads and compare-and-set retries. */
  get clusterStats(): Readonly<Roster['stats']> {
    return this.roster.stats;
  }

  /** A cluster record command, its refusal turned into an InvalidArgument naming the reason. */
  private async metaCall<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof ClusterMetaError) throw new RuntimeError('InvalidArgument', `${e.code}: ${e.message}`);
      throw e;
    }
  }

  /** Fault injection (tests, chaos drills): kill worker `index`'s thread as if it crashed. The
   *  node restarts that shard from disk. */
  crashWorker(index: number): Promise<void> {
    return this.workers.crash(index);
  }

  /** Fault injection (tests, slow-disk drills): every durable write of this node's storage takes
   *  `ms` (plus up to `jitterMs`) longer, as on a slow or saturated disk; (0, 0) heals. Nothing
   *  is acknowledged earlier than before: only later. Kept across worker restarts. */
  setDiskDelay(ms: number, jitterMs = 0): void {
    if (!(ms >= 0 && jitterMs >= 0 && Number.isFinite(ms + jitterMs)))
      throw new RuntimeError('InvalidArgument', 'disk delay: ms and jitterMs must be finite numbers >= 0');
    this.diskDelay = { ms, jitterMs };
    this.workers.broadcast({ kind: 'diskDelay', ms, jitterMs });
    this.log.warn(
      { ms, jitterMs },
      ms || jitterMs ? 'fault injection: disk writes slowed' : 'fault injection: disk delay removed',
    );
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.forwarder.close(new RuntimeError('Stopped', `node ${this.id} stopped`));
    this.balancer?.stop();
    if (this.pinger) clearInterval(this.pinger);
    if (this.metaTimer) clearInterval(this.metaTimer);
    if (this.moverTimer) clearTimeout(this.moverTimer);
    this.roster.stop();
    await this.mover.stop();
    this.membership.flush();
    this.loopTiming.stop();
    await this.workers.stop();
    await this.transport.close();
    this.log.info('node stopped');
  }

  // --- between nodes -----------------------------------------------------------------------------

  private forward<K extends RequestKind>(
    target: NodeId,
    kind: K,
    payload: Requests[K],
    timeoutMs: number,
  ): Promise<unknown> {
    this.stats.forwarded++;
    return this.forwarder.request(target, kind, payload, timeoutMs);
  }

  private onEnvelopes(from: NodeId, envs: Envelope[]): void {
    for (const e of envs) {
      if (e.k === 'rb') {
        if (e.w >= this.workerCount) {
          this.stats.dropsNoWorker++;
          continue;
        }
        this.stats.relayedIn++;
        this.workers.post(e.w, { kind: 'raft', batch: e.b });
      } else if (e.k === 'app' && e.t === SNAPSHOT_FRAME) {
        // Relayed undecoded, like Raft batches: the worker checks the frame's CRC and contents.
        const p = e.p as { w?: unknown; b?: unknown } | null;
        const w = p?.w;
        if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w >= this.workerCount) {
          this.stats.dropsNoWorker++;
          continue;
        }
        if (!(p?.b instanceof Uint8Array)) continue;
        this.workers.post(w, { kind: 'snap', from, frame: p.b });
      } else if (e.k === 'app') {
        this.protocol.onMessage(from, e.t, e.p);
      } else {
        this.stats.dropsNoWorker++; // single raft envelopes: not produced by this version
      }
    }
  }
}

/** `addr` as the transport parses it, or a StartOptionsError naming `field`. */
function address(field: string, addr: string): void {
  try {
    parseAddress(addr);
  } catch {
    throw new StartOptionsError(field, 'InvalidValue', `must be "host:port" (got ${JSON.stringify(addr)})`);
  }
}

export function startNode(opts: StartOptions): Promise<FlotillaNode> {
  return FlotillaNode.start(opts);
}
