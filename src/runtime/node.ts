// FlotillaNode: one node of a cluster. The main thread owns the TCP transport, deterministic
// placement, the cluster-id guard, request routing and the embedded API; the groups live in W
// worker threads (ShardWorkers), each with its own LMDB environment and one loop. Raft traffic
// is packed and unpacked in the workers; the main thread relays those bytes between TCP and the
// workers without decoding them. Proposals carry a client session (storage/session.ts), so the
// runtime retries them across leader changes, transfers and timeouts within the caller's
// deadline, and each is applied at most once.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { NodeId } from '../raft/types.js';
import { encodeKvCommandView, type KvCommand, type KvResult } from '../storage/kv.js';
import { SessionClient, encodeCommand } from '../storage/session.js';
import { Transport, parseAddress, validateTransportSecurity, type Envelope, type TransportSecurity } from '../transport/index.js';
import { RuntimeError, TransferError } from './errors.js';
import {
  COMMIT_P99_WINDOW_MS, PLANNED_CAUSES, workerOf, type Consistency, type LeaderChangeCause, type LeaderChangeKind, type PlannedCause, type ShardBrief, type ShardRequest, type Shards,
} from './protocol.js';
import type { LedGroup, RaftTuning, TransferDone } from './shard.js';
import { APPLY_ERROR_KEY, encodeUserCommand } from './statemachine.js';
import { ShardWorkers, type ShardWorkersOptions } from './workers.js';
import { NODE_FLAGS, semiSpaceConfigured } from './heap.js';
import { clusterIdOf, defaultWorkers, groupOfKey, placement } from './placement.js';
import { Forwarder, type FwdReply } from './forwarder.js';

export { clusterIdOf, defaultWorkers, groupOfKey, placement } from './placement.js';
import { InlineShards } from './inline.js';
import { Histogram, RecentSamples, tenthMs } from './histogram.js';
import { adviseStability, type StabilityWarning } from './advisor.js';
import { fresh, slowerThanLeader, type NodeView } from './preflight.js';
import { LoopTiming } from './looptiming.js';
import { LeaderBalancer, validateBalancerConfig, type BalancerConfig, type LedInfo, type NodeSummary, type Plan } from '../balancer/balancer.js';

export interface StartOptions {
  readonly id: NodeId;
  readonly dataDir: string;
  /** 'host:port' this node listens on for other nodes. */
  readonly listen: string;
  /** Every other node: id -> 'host:port'. */
  readonly peers: Readonly<Record<NodeId, string>>;
  /** Groups bootstrapped with the cluster (ids 1..groups). */
  readonly groups: number;
  /** Replicas per group. Default min(3, nodes). */
  readonly replication?: number;
  /** Worker threads of this node, one shard each; 0 runs one shard on the main thread (no worker
   *  thread: cheapest per write when the node has few cores or shares them). Default:
   *  `defaultWorkers()`, 0 on machines with at most 2 cores, else the number of cores. The shard
   *  count (max(1, workers)) is fixed for a data dir; 0 and 1 are interchangeable. */
  readonly workers?: number;
  /** Locality labels of this node (used by the leader balancer). */
  readonly labels?: Readonly<{ zone?: string; rack?: string }>;
  /** Milliseconds per tick (= heartbeat interval). Default 100, as etcd. */
  readonly tickMs?: number;
  /** Election timeout in ticks. Default 10 (1 s at 100 ms, as etcd). */
  readonly electionTicks?: number;
  /** How long a candidate waits for a split vote to resolve before trying again, in ticks
   *  (randomized in [R, 2R)). Default electionTicks. Shorter resolves split votes sooner without
   *  making failure detection twitchier. */
  readonly electionRoundTicks?: number;
  /** Multiplies tickMs for slow disks or networks (Vault's performance multiplier). Default 1. */
  readonly timingScale?: number;
  /** Default deadline of a client request. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Admission limits: beyond them a new proposal fails at once with a retryable `Overloaded`
   *  instead of growing memory. Per node, counting proposals made here and proposals forwarded
   *  here until answered: `maxPendingProposals` (default 20,000) and `maxPendingBytes` (default
   *  64 MiB). Per group, the Raft core caps uncommitted bytes (`raft.maxUncommittedBytes`). */
  readonly limits?: { readonly maxPendingProposals?: number; readonly maxPendingBytes?: number };
  readonly raft?: RaftTuning;
  /** User state machine: a module exporting createStateMachine(group), loaded in every worker.
   *  Default: the built-in key-value store. */
  readonly stateMachine?: { readonly module: string; readonly snapshotEvery?: number };
  /** The leader balancer (src/balancer): automatic rounds run when `enabled` is true; plan() and
   *  round() are always available. Default: not started. */
  readonly balancer?: BalancerConfig;
  /** Start in maintenance (as after drain()): peers never send leadership here and this node's
   *  groups campaign only when no healthy peer does, until undrain(). Default false. */
  readonly draining?: boolean;
  /** Skip fsync (tests of protocol behaviour only; never in production). Default false. */
  readonly noSync?: boolean;
  /** Authentication between nodes (every node of the cluster needs the same kind):
   *  `tls: { ca, cert, key }` (PEM) for mutual TLS with certificates from a cluster CA, each
   *  naming its node id in CN or a subjectAltName; `secret` (at least 16 characters) for a
   *  cluster secret proved by HMAC challenge-response in the handshake (never sent; does not
   *  encrypt). Both may be combined. Default: neither (plain TCP). See README, Transport security. */
  readonly transportSecurity?: TransportSecurity;
  readonly logger?: Logger;
}



/** Dynamic groups (created or removed at run time), persisted beside the shards. */
interface GroupsFile {
  created: Record<string, NodeId[]>;
  removed: number[];
}

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
}

export interface ProposeOptions {
  /** Deadline for the whole call, retries included. Default: the node's requestTimeoutMs. */
  readonly timeoutMs?: number;
}

export interface ReadOptions extends ProposeOptions {
  /** 'linearizable' (default: ReadIndex, a heartbeat round), 'lease' (the leader answers from
   *  its lease when `raft.leaseReads` is on — no round trip, relies on bounded clock drift; else
   *  as 'linearizable'; reads served by a follower always take the round), or 'stale' (this
   *  replica's state now). */
  readonly consistency?: 'linearizable' | 'lease' | 'stale';
}

const enc = new TextEncoder();
const asBytes = (k: Uint8Array | string): Uint8Array => (typeof k === 'string' ? enc.encode(k) : k);
/** Results cross thread and node boundaries as Buffers or Uint8Arrays: callers always get the latter. */
const plainBytes = (b: Uint8Array | null | undefined): Uint8Array | null =>
  b == null ? null : b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How far back the round-trip p99 of the stability advisor looks. */
const RECENT_RTT_MS = 60_000;

/** A peer's locality labels as it announced them (strings only; anything else dropped). */
function cleanLabels(x: unknown): { zone?: string; rack?: string } | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const { zone, rack } = x as Record<string, unknown>;
  return { ...(typeof zone === 'string' ? { zone } : {}), ...(typeof rack === 'string' ? { rack } : {}) };
}

export class FlotillaNode {
  readonly clusterId: string;
  readonly workerCount: number;
  private forwarder!: Forwarder;
  /** Leader of each group as last heard (local workers' reports and NotLeader hints). */
  private readonly leaders = new Map<number, NodeId>();
  private readonly peerWorkers = new Map<NodeId, number>();
  /** Nodes (peers) that announced they are draining: never a transfer target. */
  private readonly drainingNodes = new Set<NodeId>();
  private draining = false;
  private readonly electionMs: number;
  private readonly electionTicks: number;
  /** Fault injection: see setDiskDelay. */
  private diskDelay = { ms: 0, jitterMs: 0 };
  /** Each shard's last pushed brief and when it arrived (see briefs()). */
  private readonly shardBriefs: (ShardBrief & { at: number })[] = [];
  /** Transfers this node requested, by outcome ('completed' or the failure reason). */
  readonly transferStats: Record<string, number> = {};
  private readonly session: SessionClient;
  private stopped = false;
  private readonly timeoutMs: number;
  /** One attempt of a proposal or read waits at most this long before it is retried. */
  private readonly attemptMs: number;
  private workers!: Shards;
  private balancer!: LeaderBalancer;
  /** Round trips to peers (ms) for the stability advisor: the last minute only, as the commit
   *  p99. Kept by count instead, a slow start-up election on a busy machine stayed in the p99 for
   *  minutes at two pings a second and kept planned transfers refused as ClusterUnstable. */
  private readonly rtts = new RecentSamples(1024, RECENT_RTT_MS);
  /** When local replicas saw an unplanned leader change (ms since epoch), for flapping detection:
   *  a drain or a balancer round moves many leaders on purpose and is not flapping. */
  private readonly leaderChanges: number[] = [];
  /** Leader changes seen by local replicas (once per replica that saw a new leader), by cause. */
  readonly leaderChangesByCause: Record<LeaderChangeCause, number> = { transfer: 0, drain: 0, balancer: 0, failover: 0, election: 0 };
  /** Why transfers this node asked for, handed over or is the target of were started, by group,
   *  until shortly after their deadline: how a planned change is told apart by who planned it. */
  private readonly plannedCauses = new Map<number, { cause: PlannedCause; until: number }>();
  /** What each peer said about itself in its latest summary, and what this node last said. */
  private readonly views = new Map<NodeId, NodeView>();
  private ownView: NodeView | null = null;
  /** The timing each peer said it runs (on connect), for the advisor's mismatch check. */
  private readonly peerTiming = new Map<NodeId, { electionMs: number; heartbeatMs: number }>();
  private stability: { at: number; warnings: StabilityWarning[] } | null = null;
  private pinger: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  /** Requests served as leader per group and origin node since the balancer last looked
   *  (follow-the-workload). */
  private origins = new Map<number, Map<NodeId, number>>();
  private cpuMark = { usage: process.cpuUsage(), at: performance.now() };
  private transport!: Transport;
  readonly stats = { forwarded: 0, retries: 0, relayedIn: 0, relayedOut: 0, dropsNoWorker: 0, proposals: 0, reads: 0, notLeader: 0, leaderChanges: 0, overloaded: 0 };
  private pendingProposals = 0;
  /** This thread's event-loop delay and GC pauses. */
  readonly loopTiming = new LoopTiming();
  /** Retries waiting for a group to have a leader again. */
  private readonly leaderWaits = new Map<number, Set<() => void>>();
  private pendingBytes = 0;
  /** Verified transfers requested here (request -> verified new leader) and peer round trips. */
  readonly histograms = {
    transfer: new Histogram(), rtt: new Histogram(),
    /** The phases of those transfers (see TransferResult.phases). */
    transferCatchUp: new Histogram(), transferCampaign: new Histogram(), transferVerify: new Histogram(),
  };

  private constructor(
    readonly id: NodeId,
    private readonly opts: StartOptions,
    private readonly members: Map<number, NodeId[]>,
    private readonly groupsFile: GroupsFile,
    private readonly log: Logger,
    clusterId: string,
    workers: number,
    electionMs: number,
  ) {
    this.clusterId = clusterId;
    this.workerCount = workers;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.attemptMs = Math.max(1000, 3 * electionMs);
    this.electionMs = electionMs;
    this.electionTicks = Math.max(1, Math.round(electionMs / ((opts.tickMs ?? 100) * (opts.timingScale ?? 1))));
    // Fresh per process: sequence numbers restart at 1 under a new id.
    this.session = new SessionClient(`${opts.id}/${randomBytes(6).toString('hex')}`);
  }

  static async start(opts: StartOptions): Promise<FlotillaNode> {
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ node: opts.id });
    const nodes = [opts.id, ...Object.keys(opts.peers).filter((p) => p !== opts.id)];
    const replication = opts.replication ?? Math.min(3, nodes.length);
    if (!Number.isInteger(opts.groups) || opts.groups < 1) throw new RuntimeError('InvalidArgument', 'groups: must be a positive integer');
    if (replication < 1 || replication > nodes.length) throw new RuntimeError('InvalidArgument', `replication: must be 1..${nodes.length}`);
    if (opts.balancer) {
      try {
        validateBalancerConfig(opts.balancer);
      } catch (e) {
        throw new RuntimeError('InvalidArgument', (e as Error).message);
      }
    }
    const threads = opts.workers ?? defaultWorkers();
    if (!Number.isInteger(threads) || threads < 0 || threads > 256) throw new RuntimeError('InvalidArgument', 'workers: must be an integer in 0..256');
    const workers = Math.max(1, threads);
    parseAddress(opts.listen);
    try {
      validateTransportSecurity(opts.transportSecurity);
    } catch (e) {
      throw new RuntimeError('InvalidArgument', `transportSecurity.${(e as Error).message}`);
    }
    const clusterId = clusterIdOf(nodes, opts.groups, replication);
    mkdirSync(opts.dataDir, { recursive: true });
    const idFile = join(opts.dataDir, 'cluster.json');
    if (existsSync(idFile)) {
      const prev = JSON.parse(readFileSync(idFile, 'utf8')) as { clusterId: string; node: NodeId; workers?: number };
      if (prev.clusterId !== clusterId || prev.node !== opts.id) {
        throw new RuntimeError('InvalidArgument',
          `${opts.dataDir} belongs to node ${prev.node} of cluster ${prev.clusterId}, but this configuration is node ` +
          `${opts.id} of cluster ${clusterId} (nodes, groups or replication differ); refusing to start`);
      }
      if (prev.workers !== undefined && prev.workers !== workers) {
        // Groups are hashed to workers and each worker owns its LMDB environment: a different
        // count would strand groups in environments no worker opens.
        throw new RuntimeError('InvalidArgument',
          `workers: ${opts.dataDir} was created with ${prev.workers} workers, not ${workers}; refusing to start`);
      }
    }
    writeFileSync(idFile, JSON.stringify({ clusterId, node: opts.id, workers }));
    const members = placement(nodes, opts.groups, replication);
    const gfPath = join(opts.dataDir, 'groups.json');
    const groupsFile: GroupsFile = existsSync(gfPath) ? JSON.parse(readFileSync(gfPath, 'utf8')) : { created: {}, removed: [] };
    for (const [g, m] of Object.entries(groupsFile.created)) members.set(Number(g), m);
    for (const g of groupsFile.removed) members.delete(g);

    const scale = opts.timingScale ?? 1;
    const tickMs = (opts.tickMs ?? 100) * scale;
    const electionTicks = opts.electionTicks ?? opts.raft?.electionTicks ?? 10;
    const node = new FlotillaNode(opts.id, opts, members, groupsFile, log, clusterId, workers, tickMs * electionTicks);
    node.draining = opts.draining === true;
    const perWorker: [number, NodeId[]][][] = Array.from({ length: workers }, () => []);
    for (const [g, m] of members) if (m.includes(opts.id)) perWorker[workerOf(g, workers)].push([g, m]);

    const shardOpts: ShardWorkersOptions = {
      workers, log,
      init: (i) => ({
        index: i, nodeId: opts.id, dataDir: join(opts.dataDir, `w${i}`), groups: perWorker[i],
        peerWorkers: Object.fromEntries(node.peerWorkers), tickMs,
        raft: { electionTicks, ...(opts.electionRoundTicks !== undefined ? { electionRoundTicks: opts.electionRoundTicks } : {}), ...opts.raft }, requestTimeoutMs: node.timeoutMs, seed: 0,
        logLevel: log.level, noSync: opts.noSync, stateMachine: opts.stateMachine,
        campaignDelay: node.draining ? 2 * node.electionTicks : 0,
      }),
      onOut: (to, w, b) => {
        node.stats.relayedOut++;
        node.transport.send(to, { k: 'rb', w, b });
      },
      onConf: (g, voters, learners) => node.onConf(g, voters, learners, true),
      onLeader: (g, l, _term, kind) => {
        if (l) node.countLeaderChange(g, kind);
        if (l) node.leaders.set(g, l);
        else node.leaders.delete(g);
        if (l) for (const wake of [...(node.leaderWaits.get(g) ?? [])]) wake();
      },
      onBrief: (i, b) => {
        node.shardBriefs[i] = { ...b, at: performance.now() };
      },
      onStarted: (i) => {
        for (const p of node.transport?.connectedPeers() ?? []) node.workers.post(i, { t: 'up', p });
        if (node.draining) node.workers.post(i, { t: 'campaignDelay', ticks: 2 * node.electionTicks });
        if (node.diskDelay.ms || node.diskDelay.jitterMs) node.workers.post(i, { t: 'diskDelay', ...node.diskDelay });
      },
    };
    node.workers = threads === 0 ? new InlineShards(shardOpts) : new ShardWorkers(shardOpts);
    if (threads === 0 && !semiSpaceConfigured()) log.info({ flags: NODE_FLAGS }, `shards run on the main thread with the default young generation: NODE_OPTIONS='${NODE_FLAGS.join(' ')}' gives less GC`);
    node.transport = new Transport({
      nodeId: opts.id, clusterId, listen: parseAddress(opts.listen), peers: opts.peers, logger: log,
      tls: opts.transportSecurity?.tls, secret: opts.transportSecurity?.secret,
      onEnvelopes: (from, envs) => node.onEnvelopes(from, envs),
    });
    node.forwarder = new Forwarder({ isConnected: (p) => node.transport.isConnected(p), send: (p, e) => node.transport.send(p, e) });
    node.transport.on('peerUp', (p) => {
      node.transport.send(p, { k: 'app', t: 'hello', p: { workers, timing: { electionMs: node.electionMs, heartbeatMs: node.electionMs / node.electionTicks } } });
      // Also when not draining: a node restarted after a drain (SIGTERM drains first) must clear
      // the mark its peers still hold, or they would never send leadership back.
      node.transport.send(p, { k: 'app', t: 'drainState', p: { draining: node.draining } });
      node.workers.broadcast({ t: 'up', p });
    });
    node.transport.on('peerDown', (p) => {
      node.workers.broadcast({ t: 'down', p });
      // Requests in flight to a node that died will not be answered: retry them elsewhere now
      // (client sessions make a proposal's retry safe even if the dead node had logged it).
      node.forwarder.peerDown(p);
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
    node.balancer = new LeaderBalancer({
      id: opts.id,
      peers: Object.keys(opts.peers).filter((p) => p !== opts.id),
      isConnected: (p) => node.transport.isConnected(p),
      isDraining: () => node.draining,
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
        node.ownView = { reach, fsyncP99Ms: sum.fsyncP99Ms ?? null, cpu: sum.cpu ?? null, at: Date.now() };
        for (const p of Object.keys(opts.peers)) node.transport.send(p, { k: 'app', t: 'summary', p: { ...sum, reach } });
      },
    }, { ...opts.balancer }, log.child({ component: 'balancer' }));
    node.balancer.start();
    node.pinger = setInterval(() => {
      for (const p of node.transport.connectedPeers()) node.transport.send(p, { k: 'app', t: 'ping', p: { at: performance.now() } });
    }, 1000);
    node.pinger.unref();
    log.info({ clusterId, workers, groups: members.size }, 'node started');
    return node;
  }

  /** The nodes holding a replica of `group`. */
  replicasOf(group: number): NodeId[] {
    const m = this.members.get(group);
    if (!m) throw new RuntimeError('InvalidArgument', `unknown group ${group}`);
    return m;
  }

  /** Every group of the cluster, as this node knows it. */
  groupIds(): number[] {
    return [...this.members.keys()];
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
  async propose(group: number, command: unknown, o: ProposeOptions = {}): Promise<unknown> {
    if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
    this.replicasOf(group);
    let payload: Uint8Array;
    try {
      payload = this.opts.stateMachine ? encodeUserCommand(command) : encodeKvCommandView(command as KvCommand);
    } catch (e) {
      throw new RuntimeError('InvalidArgument', (e as Error).message);
    }
    const release = this.admit(payload.byteLength);
    const h = this.session.begin();
    this.stats.proposals++;
    try {
      const data = encodeCommand(h, payload);
      const r = await this.withRetries(group, o.timeoutMs ?? this.timeoutMs, (target, ms) =>
        target === this.id
          ? this.serveLocal(group, this.id, { t: 'propose', g: group, d: data, to: ms })
          : this.forward(target, 'fwd', { group, d: data, to: ms }, ms + 250));
      if (r !== null && typeof r === 'object' && APPLY_ERROR_KEY in r) {
        throw new RuntimeError('InvalidArgument', `state machine rejected the command: ${(r as Record<string, string>)[APPLY_ERROR_KEY]}`);
      }
      return r;
    } finally {
      this.session.done(h.seq);
      release();
    }
  }

  /** Take one proposal of `bytes` into the node's pending budget, or refuse it (Overloaded). */
  private admit(bytes: number): () => void {
    const maxN = this.opts.limits?.maxPendingProposals ?? 20_000;
    const maxB = this.opts.limits?.maxPendingBytes ?? 64 << 20;
    if (this.pendingProposals >= maxN || this.pendingBytes + bytes > maxB) {
      this.stats.overloaded++;
      if (this.stats.overloaded % 1000 === 1) {
        this.log.warn({ pending: this.pendingProposals, bytes: this.pendingBytes, refused: this.stats.overloaded }, 'overloaded: refusing proposals');
      }
      throw new RuntimeError('Overloaded', `node ${this.id} has ${this.pendingProposals} proposals (${this.pendingBytes} bytes) pending; limits ${maxN} / ${maxB} bytes`);
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
  async read(group: number, query: unknown, o: ReadOptions = {}): Promise<unknown> {
    if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
    this.replicasOf(group);
    const c: Consistency = o.consistency === 'stale' ? 'stale' : o.consistency === 'lease' ? 'lease' : 'linearizable';
    this.stats.reads++;
    return this.withRetries(group, o.timeoutMs ?? this.timeoutMs, (target, ms) =>
      target === this.id
        ? this.serveLocal(group, this.id, { t: 'read', g: group, q: query, c, to: ms })
        : this.forward(target, 'rd', { group, q: query, c, to: ms }, ms + 250), c === 'stale');
  }

  /** Sleep `ms`, or less if a local replica of `group` reports a leader meanwhile. */
  private leaderOrSleep(group: number, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.leaderWaits.get(group);
      if (!set) this.leaderWaits.set(group, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        const s = this.leaderWaits.get(group);
        s?.delete(done);
        if (s?.size === 0) this.leaderWaits.delete(group);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  /** Hand a client request to the group's worker, noting where it came from when this node
   *  leads the group (the balancer's follow-the-workload input). */
  private serveLocal(group: number, origin: NodeId, req: ShardRequest): Promise<unknown> {
    if (this.leaders.get(group) === this.id) {
      let m = this.origins.get(group);
      if (!m) this.origins.set(group, (m = new Map()));
      m.set(origin, (m.get(origin) ?? 0) + 1);
    }
    return this.workers.call(this.workerFor(group), req);
  }

  /** Groups this node leads, with their replicas, served work and followers' lag. */
  private async ledGroups(): Promise<LedInfo[]> {
    const perWorker = await Promise.all(Array.from({ length: this.workerCount }, (_, i) =>
      this.workers.call(i, { t: 'led' }).catch(() => []) as Promise<LedGroup[]>));
    return perWorker.flat().filter((g) => this.members.has(g.group))
      .map((g) => ({ group: g.group, replicas: this.replicasOf(g.group), served: g.served, lag: g.lag, learners: g.learners }));
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
    const commits = this.briefs().map((x) => x.commitP99Ms).filter((x): x is number => typeof x === 'number');
    const now = performance.now();
    const used = process.cpuUsage(this.cpuMark.usage);
    const cpu = (used.user + used.system) / 1000 / Math.max(1, now - this.cpuMark.at) / availableParallelism();
    this.cpuMark = { usage: process.cpuUsage(), at: now };
    return { fsyncP99Ms: commits.length ? Math.max(...commits) : null, cpu };
  }

  /** Run `attempt` against the best target until it succeeds, fails for good or the deadline. */
  private async withRetries(group: number, timeoutMs: number, attempt: (target: NodeId, ms: number) => Promise<unknown>, anyReplica = false): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    const replicas = this.replicasOf(group);
    let hint: NodeId = '';
    for (let n = 0; ; n++) {
      const remaining = deadline - Date.now();
      if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
      const target = this.pickTarget(group, replicas, hint, n, anyReplica);
      try {
        return await attempt(target, Math.max(1, Math.min(remaining, this.attemptMs)));
      } catch (e) {
        const err = e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', (e as Error).message);
        if (err.code === 'NotLeader') this.stats.notLeader++;
        if (!err.retryable || deadline - Date.now() < 10) throw err;
        this.stats.retries++;
        hint = err.leader && replicas.includes(err.leader) ? err.leader : '';
        if (hint) this.leaders.set(group, hint);
        else if (this.leaders.get(group) === target) this.leaders.delete(group);
        // A hint to another node is followed at once; otherwise wait a little (election, restart).
        // A local replica learning the new leader ends the wait at once (failover, transfer).
        if (!(hint && hint !== target)) await this.leaderOrSleep(group, Math.min(jittered(Math.min(200, 5 * 2 ** Math.min(n, 6))), Math.max(0, deadline - Date.now() - 5)));
      }
    }
  }

  private pickTarget(group: number, replicas: NodeId[], hint: NodeId, n: number, anyReplica: boolean): NodeId {
    if (anyReplica && replicas.includes(this.id)) return this.id;
    if (hint) return hint;
    const cached = this.leaders.get(group);
    if (cached && replicas.includes(cached) && (cached === this.id || this.transport.isConnected(cached))) return cached;
    if (n === 0 && replicas.includes(this.id)) return this.id;
    const up = replicas.filter((r) => r === this.id || this.transport.isConnected(r));
    const pool = up.length > 0 ? up : replicas;
    return pool[n % pool.length];
  }

  readonly kv = {
    put: async (key: Uint8Array | string, value: Uint8Array | string, o?: ProposeOptions): Promise<void> => {
      const k = asBytes(key);
      await this.propose(groupOfKey(k, this.opts.groups), { op: 'put', key: k, value: asBytes(value) }, o);
    },
    delete: async (key: Uint8Array | string, o?: ProposeOptions): Promise<void> => {
      const k = asBytes(key);
      await this.propose(groupOfKey(k, this.opts.groups), { op: 'delete', key: k }, o);
    },
    cas: async (key: Uint8Array | string, expected: Uint8Array | string | null, value: Uint8Array | string | null, o?: ProposeOptions) => {
      const k = asBytes(key);
      const r = (await this.propose(groupOfKey(k, this.opts.groups), {
        op: 'cas', key: k, expected: expected === null ? null : asBytes(expected), value: value === null ? null : asBytes(value),
      }, o)) as KvResult | null;
      return r && r.op === 'cas' ? { swapped: r.swapped, current: plainBytes(r.current) } : { swapped: false, current: null };
    },
    get: async (key: Uint8Array | string, consistency: 'linearizable' | 'lease' | 'stale' = 'linearizable', o?: ProposeOptions) => {
      const k = asBytes(key);
      return plainBytes((await this.read(groupOfKey(k, this.opts.groups), k, { ...o, consistency })) as Uint8Array | null);
    },
    groupOf: (key: Uint8Array | string) => groupOfKey(asBytes(key), this.opts.groups),
    /** The node that leads `key`'s group as far as this node knows (undefined when it does not). */
    leaderOf: (key: Uint8Array | string): NodeId | undefined => this.leaders.get(groupOfKey(asBytes(key), this.opts.groups)),
  };

  /** This node and its groups. `detail` adds every group's Raft status (role, term, commit,
   *  applied, last index, quiesced, transfer, per-peer match/next/state when leader). */
  async status(o: { detail?: boolean } = {}) {
    const shards = await Promise.all(Array.from({ length: this.workerCount }, (_, i) =>
      this.workers.call(i, { t: 'status', detail: o.detail ?? false }).then(
        (r) => ({ worker: i, up: true, ...(r as Record<string, unknown>) }),
        (e: Error) => ({ worker: i, up: false, error: e.message, groups: 0, leaders: 0, quiesced: 0 }),
      )));
    const sum = (k: 'groups' | 'leaders' | 'quiesced') => shards.reduce((a, s) => a + (((s as Record<string, unknown>)[k] as number) ?? 0), 0);
    return {
      id: this.id, clusterId: this.clusterId, labels: this.opts.labels ?? {}, uptimeMs: Date.now() - this.startedAt,
      workers: this.workerCount, workerRestarts: this.workers.stats.restarts,
      groups: sum('groups'), leaders: sum('leaders'), quiesced: sum('quiesced'),
      draining: this.draining, drainingPeers: [...this.drainingNodes], transfers: this.transferStats, balancer: this.balancer?.stats,
      /** The balancer's health policy holds this node's storage slow (it sheds leaderships). */
      slowStorage: this.balancer?.isSlow(this.id) ?? false,
      leaderChanges: { ...this.leaderChangesByCause },
      pending: { proposals: this.pendingProposals, bytes: this.pendingBytes }, eventLoop: this.loopTiming.eventLoop(),
      peers: this.transport.connectedPeers(), runtime: this.stats, transport: this.transport.stats(),
      shards: shards.map((s) => ({ ...s, perGroup: undefined })),
      perGroup: o.detail ? shards.flatMap((s) => ((s as Record<string, unknown>).perGroup as unknown[]) ?? []) : undefined,
    };
  }

  /**
   * Move leadership of `group` to `target`, from any node (forwarded to the current leader), and
   * verify it: resolves once the target leads and serves (a ReadIndex round on the target), with
   * the time it took. Rejects with a TransferError whose `reason` says why (target not a member,
   * a learner, unhealthy, lagging, draining, a membership change in flight, no quorum, timed out:
   * the old leader then stays leader). Every outcome is logged and counted.
   */
  async transferLeader(group: number, target: NodeId, o: TransferOptions = {}): Promise<TransferResult> {
    const t0 = performance.now();
    const timeoutMs = o.timeoutMs ?? Math.max(5_000, 3 * this.electionMs);
    const cause = o.cause ?? 'transfer';
    const force = o.force === true;
    this.notePlanned(group, cause, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    const replicas = this.replicasOf(group);
    const outcome = (reason: string) => {
      this.transferStats[reason] = (this.transferStats[reason] ?? 0) + 1;
    };
    try {
      if (!replicas.includes(target)) throw new TransferError('TargetNotMember', `transfer of group ${group}: ${target} holds no replica`);
      if (this.drainingNodes.has(target)) throw new TransferError('TargetDraining', `transfer of group ${group}: ${target} is draining`);
      // The balancer has its own gates (it stands still while any node is unreachable or draining).
      if (!force && cause !== 'balancer') await this.refuseIfUnstable(`transfer of group ${group} to ${target}`);
      // The target reports when it leads with an entry of its term committed; asked now, so its
      // answer travels while the old leader hands over (no second round after the hand-over).
      const awaitLead = (ms: number) => (target === this.id
        ? this.workers.call(this.workerFor(group), { t: 'awaitLead', g: group, to: ms })
        : this.forward(target, 'awaitLead', { group, to: ms, cause }, ms + 250)) as Promise<{ term: number; commitP99Ms?: number | null }>;
      let led = awaitLead(timeoutMs);
      led.catch(() => undefined); // consumed below, unless the hand-over fails first
      let from: NodeId = this.leaders.get(group) ?? '';
      let done = false;
      let handover: TransferDone | null = null;
      // A target that starts draining or drops its link meanwhile will not take over: say so
      // now rather than retry until the deadline (nodes stopping together drain at each other).
      const targetGone = () => {
        if (this.drainingNodes.has(target)) throw new TransferError('TargetDraining', `transfer of group ${group}: ${target} started draining`);
        if (target !== this.id && !this.transport.isConnected(target)) throw new TransferError('TargetUnhealthy', `transfer of group ${group}: ${target} is unreachable`);
      };
      for (let n = 0; !done; n++) {
        const remaining = deadline - Date.now();
        if (remaining <= 10) throw new TransferError('Timeout', `transfer of group ${group} to ${target}: no leader answered in time`);
        if (n > 0) targetGone();
        const leader = from && (from === this.id || this.transport.isConnected(from)) ? from : this.pickTarget(group, replicas, '', n, false);
        if (leader === target) {
          // Believed to lead already: confirmed by the verification below, or forgotten.
          try {
            await (target === this.id
              ? this.workers.call(this.workerFor(group), { t: 'verify', g: group, to: Math.min(remaining, 1000) })
              : this.forward(target, 'verify', { group, to: Math.min(remaining, 1000) }, Math.min(remaining, 1000) + 250));
            break;
          } catch (e) {
            if (!(e as RuntimeError).retryable) throw e;
            this.leaders.delete(group);
            from = (e as RuntimeError).leader && (e as RuntimeError).leader !== target ? (e as RuntimeError).leader : '';
            continue;
          }
        }
        const lag = o.maxLagEntries ?? 10_000;
        try {
          handover = leader === this.id
            ? await this.handOver(group, target, remaining, lag, [], force, cause)
            : (await this.forward(leader, 'xfer', { group, target, to: remaining, lag, draining: [...this.drainingNodes], cause, force }, remaining + 250)) as TransferDone;
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
          after = typeof r.commitP99Ms === 'number' ? r.commitP99Ms : null;
          break;
        } catch (e) {
          const err = e as RuntimeError;
          const remaining = deadline - Date.now();
          if (remaining <= 10 || err.code === 'Timeout') throw new TransferError('NotVerified', `transfer of group ${group} to ${target}: not confirmed as leading in time`);
          if (!err.retryable) throw err;
          // The target was unreachable for a moment: ask again.
          await sleep(jittered(Math.min(50, 2 * 2 ** Math.min(n, 5))));
          if (!this.transport.isConnected(target) && target !== this.id) throw new TransferError('NotVerified', `transfer of group ${group} to ${target}: lost the link to the target`);
          led = awaitLead(deadline - Date.now());
        }
      }
      this.leaders.set(group, target);
      const now = performance.now();
      const ms = tenthMs(now - t0);
      const campaignMs = handover ? Math.min(Number(handover.campaignMs) || 0, handedAt - t0) : 0;
      const phases = { catchUpMs: tenthMs(handedAt - t0 - campaignMs), campaignMs: tenthMs(campaignMs), verifyMs: tenthMs(now - handedAt) };
      const lag = handover ? Number(handover.lag) || 0 : 0;
      outcome('completed');
      this.histograms.transfer.observeMs(now - t0);
      this.histograms.transferCatchUp.observeMs(phases.catchUpMs);
      this.histograms.transferCampaign.observeMs(phases.campaignMs);
      this.histograms.transferVerify.observeMs(phases.verifyMs);
      const before = handover && typeof handover.commitP99Ms === 'number' ? handover.commitP99Ms : null;
      const commitP99Ms = { before, after };
      this.log.info({ group, from: from || null, to: target, term, ms, lag, ...phases, commitP99Ms }, 'leader transfer verified');
      return { group, from: from || target, to: target, term, ms, lag, phases, commitP99Ms };
    } catch (e) {
      const reason = e instanceof TransferError ? e.reason : (e as RuntimeError).code ?? 'Error';
      outcome(reason);
      this.log.info({ group, to: target, reason, ms: Math.round(performance.now() - t0) }, 'leader transfer failed');
      throw e;
    }
  }

  /**
   * Planned maintenance: mark this node draining (other nodes stop sending leadership here) and
   * move every leadership it holds to the best eligible replica — a caught-up, recently heard
   * voter that is not draining and not in `avoid` (the nodes to be maintained next) — at most
   * `concurrency` at a time, each verified. Reports what moved and what did not, with reasons.
   */
  async drain(o: { avoid?: NodeId[]; concurrency?: number; timeoutMs?: number; force?: boolean } = {}): Promise<DrainReport> {
    const t0 = performance.now();
    if (!o.force) await this.refuseIfUnstable(`drain of ${this.id}`);
    this.draining = true;
    this.broadcastDrainState();
    // Healthy peers win this node's groups' elections first (it still campaigns if none can).
    this.workers.broadcast({ t: 'campaignDelay', ticks: 2 * this.electionTicks });
    const avoid = new Set(o.avoid ?? []);
    const moved: TransferResult[] = [];
    const failed: { group: number; reason: string }[] = [];
    let mine = await this.ledGroups();
    let next = 0;
    const worker = async () => {
      while (next < mine.length) {
        const g = mine[next++];
        // Ranked as the balancer ranks targets; nodes named in `avoid` only when nothing else can lead.
        const candidates = this.balancer.drainTargets(g, avoid, this.drainingNodes);
        if (candidates.length === 0) candidates.push(...this.balancer.drainTargets(g, new Set(), this.drainingNodes));
        if (candidates.length === 0) {
          failed.push({ group: g.group, reason: 'NoEligibleTarget' });
          continue;
        }
        try {
          moved.push(await this.transferLeader(g.group, candidates[0], { timeoutMs: o.timeoutMs, cause: 'drain', force: o.force }));
        } catch (e) {
          failed.push({ group: g.group, reason: e instanceof TransferError ? e.reason : (e as RuntimeError).code ?? String(e) });
        }
      }
    };
    // A leadership can arrive while the drain runs (a move a peer started before it heard of the
    // drain, an election this node won): look again, a bounded number of times, for groups it
    // has not tried yet.
    const tried = new Set<number>();
    for (let pass = 0; pass < 3 && mine.length > 0; pass++) {
      for (const g of mine) tried.add(g.group);
      next = 0;
      await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 16) }, worker));
      mine = (await this.ledGroups()).filter((g) => !tried.has(g.group));
    }
    const report = { node: this.id, moved: moved.length, failed, ms: Math.round(performance.now() - t0), transfers: moved };
    this.log.info({ moved: report.moved, failed: failed.length, ms: report.ms }, 'drain finished');
    return report;
  }

  /** End maintenance: leadership may come back to this node (the balancer brings it). */
  undrain(): void {
    this.draining = false;
    this.workers.broadcast({ t: 'campaignDelay', ticks: 0 });
    this.broadcastDrainState();
    this.log.info('undrained');
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** At the leader's node: the preflight checks that need what the target said about itself
   *  (its links, disk and CPU, from its latest summary), then the hand-over by the shard. */
  private handOver(group: number, target: NodeId, timeoutMs: number, lag: number, draining: NodeId[], force: boolean, cause: PlannedCause): Promise<TransferDone> {
    const now = Date.now();
    const view = fresh(this.views.get(target), now);
    // The balancer weighs the same fsync and CPU figures when it ranks targets; refusing its
    // moves here only turned a busy moment into hundreds of failed moves.
    if (!force && cause !== 'balancer') {
      const slow = slowerThanLeader(fresh(this.ownView, now), view);
      if (slow) return Promise.reject(new TransferError('TargetSlow', `transfer of group ${group} to ${target}: ${slow}`, this.id));
    }
    return this.workers.call(this.workerFor(group), {
      t: 'xfer', g: group, target, to: timeoutMs, lag, draining: [...new Set([...draining, ...this.drainingNodes])], force, reach: view?.reach ? [...view.reach] : null,
    }) as Promise<TransferDone>;
  }

  /** Refuse planned moves while the stability advisor says the cluster is unstable (the answer
   *  is cached for a second: a drain asks once per group it moves). */
  private async refuseIfUnstable(what: string): Promise<void> {
    const now = Date.now();
    if (!this.stability || now - this.stability.at > 1_000) this.stability = { at: now, warnings: await this.stabilityWarnings() };
    const bad = this.stability.warnings.find((w) => w.unstable);
    if (bad) throw new TransferError('ClusterUnstable', `${what} refused: ${bad.message} (fix: ${bad.fix}; force overrides)`);
  }

  private countLeaderChange(group: number, kind: LeaderChangeKind): void {
    this.stats.leaderChanges++;
    let cause: LeaderChangeCause = kind;
    if (kind === 'transfer') {
      const p = this.plannedCauses.get(group);
      if (p && p.until > Date.now()) cause = p.cause;
    } else {
      this.leaderChanges.push(Date.now());
      if (this.leaderChanges.length > 100_000) this.leaderChanges.splice(0, 50_000);
    }
    this.leaderChangesByCause[cause]++;
  }

  private notePlanned(group: number, cause: PlannedCause, timeoutMs: number): void {
    if (this.plannedCauses.size > 10_000) {
      const now = Date.now();
      for (const [g, p] of this.plannedCauses) if (p.until <= now) this.plannedCauses.delete(g);
    }
    this.plannedCauses.set(group, { cause, until: Date.now() + timeoutMs + 1_000 });
  }

  /** Timing budget, voter-set shape and flapping checks, each with what to change. */
  async stabilityWarnings(): Promise<StabilityWarning[]> {
    const st = await this.status();
    const commits = st.shards.map((s) => (s as { commitP99Ms?: number | null }).commitP99Ms).filter((x): x is number => typeof x === 'number');
    const now = Date.now();
    const lastMinute = this.leaderChanges.filter((t) => t > now - 60_000).length;
    const earlier = this.leaderChanges.filter((t) => t <= now - 60_000 && t > now - 11 * 60_000).length;
    const minutesUp = Math.max(1, Math.min(10, (now - this.startedAt) / 60_000 - 1));
    return adviseStability({
      electionMs: this.electionMs, heartbeatMs: this.electionMs / this.electionTicks,
      rttP99Ms: this.rtts.p99(), commitP99Ms: commits.length ? Math.max(...commits) : null,
      eventLoopP99Ms: this.loopTiming.eventLoop().p99Ms,
      peerTiming: Object.fromEntries(this.peerTiming),
      evenVoterGroups: st.shards.flatMap((s) => (s as { evenVoters?: number[] }).evenVoters ?? []),
      evenVoterCount: st.shards.reduce((a, s) => a + ((s as { evenVoterCount?: number }).evenVoterCount ?? 0), 0),
      leaderChangesLastMinute: lastMinute,
      // The first minute (bootstrap elections) is not a baseline.
      leaderChangesBaselinePerMinute: (now - this.startedAt) < 2 * 60_000 ? Infinity : earlier / minutesUp,
    });
  }

  /** The leader balancer's view: the moves it would make now, and why (or why none). */
  balancePlan(): Promise<Plan> {
    return this.balancer.plan();
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
      throw new RuntimeError('InvalidArgument', (e as Error).message);
    }
  }

  /** Run one balancer round now (exchanging summaries, then moving). */
  balanceRound(): Promise<Plan> {
    return this.balancer.round();
  }

  private broadcastDrainState(): void {
    for (const p of Object.keys(this.opts.peers)) this.transport.send(p, { k: 'app', t: 'drainState', p: { draining: this.draining } });
  }

  /** Membership of `group` changed (reported by a local replica, or by a peer): route to the new
   *  replicas and remember them across restarts. */
  private onConf(group: number, voters: NodeId[], learners: NodeId[], local: boolean): void {
    if (!this.members.has(group) && !local) return;
    const replicas = [...new Set([...voters, ...learners])].sort();
    if (replicas.length === 0) return; // a joining replica before it has heard from the leader
    const prev = this.members.get(group);
    if (prev && prev.length === replicas.length && prev.every((r, i) => r === replicas[i])) return;
    this.members.set(group, replicas);
    this.groupsFile.created[String(group)] = replicas;
    this.saveGroupsFile();
    this.log.info({ group, voters, learners }, 'membership changed');
    if (local) for (const p of Object.keys(this.opts.peers)) this.transport.send(p, { k: 'app', t: 'gconf', p: { group, voters, learners } });
  }

  /** Pattern B of the playbook, step 1: add `nodeId` to `group` as a learner (it receives the log
   *  but does not vote). Its node creates an empty replica first. Resolves once applied. */
  async addLearner(group: number, nodeId: NodeId, o: ProposeOptions = {}): Promise<void> {
    const replicas = this.replicasOf(group);
    if (!this.isNode(nodeId)) throw new RuntimeError('InvalidArgument', `${nodeId} is not a node of the cluster`);
    if (replicas.includes(nodeId)) throw new RuntimeError('InvalidArgument', `${nodeId} already holds a replica of group ${group}`);
    const ms = o.timeoutMs ?? this.timeoutMs;
    if (nodeId === this.id) await this.workers.call(this.workerFor(group), { t: 'create', g: group, voters: [] });
    else await this.forward(nodeId, 'gjoin', { group }, ms);
    await this.membership(group, 'addLearner', nodeId, ms);
  }

  /** Step 2: make a caught-up learner a voter (retried until it has caught up, or the deadline). */
  async promote(group: number, nodeId: NodeId, o: ProposeOptions = {}): Promise<void> {
    await this.membership(group, 'addVoter', nodeId, o.timeoutMs ?? this.timeoutMs);
  }

  /** Remove `nodeId`'s replica from `group` (a leader being removed hands over first); then that
   *  node deletes its copy. */
  async removeMember(group: number, nodeId: NodeId, o: ProposeOptions = {}): Promise<void> {
    if (!this.replicasOf(group).includes(nodeId)) throw new RuntimeError('InvalidArgument', `${nodeId} holds no replica of group ${group}`);
    const ms = o.timeoutMs ?? this.timeoutMs;
    await this.membership(group, 'remove', nodeId, ms);
    if (nodeId === this.id) await this.workers.call(this.workerFor(group), { t: 'remove', g: group }).catch(() => undefined);
    else await this.forward(nodeId, 'gdrop', { group }, ms).catch(() => undefined); // best effort: it is no longer a member
  }

  private isNode(id: NodeId): boolean {
    return id === this.id || Object.hasOwn(this.opts.peers, id);
  }

  private membership(group: number, type: 'addVoter' | 'addLearner' | 'remove', nodeId: NodeId, timeoutMs: number): Promise<unknown> {
    return this.withRetries(group, timeoutMs, (target, ms) =>
      target === this.id
        ? this.workers.call(this.workerFor(group), { t: 'member', g: group, type, node: nodeId, to: ms })
        : this.forward(target, 'member', { group, type, node: nodeId, to: ms }, ms + 250));
  }

  /** Create a group at run time on `replicas` (default: placement of the next id). Every node must
   *  be reachable (each records the group so that it can route to it). Returns the group id. */
  async createGroup(group: number, replicas?: NodeId[]): Promise<number> {
    if (!Number.isInteger(group) || group < 1 || group > 0xffffffff) throw new RuntimeError('InvalidArgument', 'group: must be a positive integer');
    if (this.members.has(group)) throw new RuntimeError('InvalidArgument', `group ${group} exists`);
    const nodes = [this.id, ...Object.keys(this.opts.peers)];
    const m = [...(replicas ?? placement(nodes, group, Math.min(3, nodes.length)).get(group)!)].sort();
    if (m.length === 0 || m.some((r) => !nodes.includes(r)) || new Set(m).size !== m.length) {
      throw new RuntimeError('InvalidArgument', `replicas: must be distinct nodes of the cluster`);
    }
    await this.everywhere('gcreate', { group, replicas: m });
    return group;
  }

  /** Remove a group at run time from every node (its data is deleted). */
  async removeGroup(group: number): Promise<void> {
    this.replicasOf(group);
    await this.everywhere('gremove', { group });
  }

  private async everywhere(t: 'gcreate' | 'gremove', p: Record<string, unknown>): Promise<void> {
    const peers = Object.keys(this.opts.peers);
    const down = peers.filter((x) => !this.transport.isConnected(x));
    if (down.length) throw new RuntimeError('Unavailable', `${down.join(', ')} not connected; group changes need every node`);
    await Promise.all([this.applyGroupChange(t, p), ...peers.map((x) => this.forward(x, t, p, this.timeoutMs))]);
  }

  private async applyGroupChange(t: string, p: Record<string, unknown>): Promise<void> {
    const group = Number(p.group);
    if (t === 'gcreate') {
      const replicas = p.replicas as NodeId[];
      if (!Array.isArray(replicas) || !replicas.every((r) => typeof r === 'string')) throw new RuntimeError('InvalidArgument', 'bad replicas');
      this.members.set(group, replicas);
      this.groupsFile.created[String(group)] = replicas;
      this.groupsFile.removed = this.groupsFile.removed.filter((g) => g !== group);
      this.saveGroupsFile();
      if (replicas.includes(this.id)) await this.workers.call(this.workerFor(group), { t: 'create', g: group, voters: replicas });
    } else {
      const wasLocal = this.members.get(group)?.includes(this.id) ?? false;
      this.members.delete(group);
      this.leaders.delete(group);
      delete this.groupsFile.created[String(group)];
      if (!this.groupsFile.removed.includes(group)) this.groupsFile.removed.push(group);
      this.saveGroupsFile();
      if (wasLocal) await this.workers.call(this.workerFor(group), { t: 'remove', g: group });
    }
  }

  private saveGroupsFile(): void {
    writeFileSync(join(this.opts.dataDir, 'groups.json'), JSON.stringify(this.groupsFile));
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
    if (!(ms >= 0 && jitterMs >= 0 && Number.isFinite(ms + jitterMs))) throw new RuntimeError('InvalidArgument', 'disk delay: ms and jitterMs must be finite numbers >= 0');
    this.diskDelay = { ms, jitterMs };
    this.workers.broadcast({ t: 'diskDelay', ms, jitterMs });
    this.log.warn({ ms, jitterMs }, ms || jitterMs ? 'fault injection: disk writes slowed' : 'fault injection: disk delay removed');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.forwarder.close(new RuntimeError('Stopped', `node ${this.id} stopped`));
    this.balancer?.stop();
    if (this.pinger) clearInterval(this.pinger);
    this.loopTiming.stop();
    await this.workers.stop();
    await this.transport.close();
    this.log.info('node stopped');
  }

  // --- between nodes -----------------------------------------------------------------------------

  private forward(to: NodeId, t: string, p: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    this.stats.forwarded++;
    return this.forwarder.request(to, t, p, timeoutMs);
  }

  private onEnvelopes(from: NodeId, envs: Envelope[]): void {
    for (const e of envs) {
      if (e.k === 'rb') {
        if (e.w >= this.workerCount) {
          this.stats.dropsNoWorker++;
          continue;
        }
        this.stats.relayedIn++;
        this.workers.post(e.w, { t: 'raft', b: e.b });
      } else if (e.k === 'app') {
        this.onApp(from, e.t, e.p as Record<string, unknown>);
      } else {
        this.stats.dropsNoWorker++; // single raft envelopes: not produced by this version
      }
    }
  }

  private onApp(from: NodeId, t: string, p: Record<string, unknown>): void {
    const reply = (r: FwdReply) => this.transport.send(from, { k: 'app', t: 'reply', p: r });
    const fail = (id: number, e: unknown) => {
      const err = e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', String((e as Error)?.message ?? e));
      reply({ id, ok: false, code: err.code, message: err.message, leader: err.leader, reason: err instanceof TransferError ? err.reason : undefined });
    };
    const id = Number(p?.id);
    const serve = (f: () => Promise<unknown>) => {
      let pr: Promise<unknown>;
      try {
        pr = f();
      } catch (e) {
        pr = Promise.reject(e);
      }
      pr.then((result) => reply({ id, ok: true, result }), (e) => fail(id, e));
    };
    const ms = Math.min(Math.max(1, Number(p?.to) || this.attemptMs), this.timeoutMs);
    switch (t) {
      case 'hello': {
        const w = Number(p?.workers);
        if (!Number.isInteger(w) || w < 1 || w > 1024) {
          this.log.warn({ from, workers: p?.workers }, 'bad hello from peer ignored');
          return;
        }
        this.peerWorkers.set(from, w);
        this.workers.broadcast({ t: 'peers', w: { [from]: w } });
        const timing = p?.timing as { electionMs?: unknown; heartbeatMs?: unknown } | undefined;
        if (typeof timing?.electionMs === 'number' && typeof timing.heartbeatMs === 'number') {
          this.peerTiming.set(from, { electionMs: timing.electionMs, heartbeatMs: timing.heartbeatMs });
        }
        return;
      }
      case 'fwd':
        // Served only if this node is a replica (its worker answers NotLeader with a hint otherwise).
        serve(() => {
          const group = Number(p.group);
          if (!(p.d instanceof Uint8Array)) throw new RuntimeError('InvalidArgument', 'bad forwarded proposal');
          if (!this.isLocal(group)) throw new RuntimeError('NotLeader', 'not a replica', this.leaders.get(group) ?? '');
          const release = this.admit(p.d.byteLength);
          return this.serveLocal(group, from, { t: 'propose', g: group, d: p.d, to: ms }).finally(release);
        });
        return;
      case 'rd':
        serve(() => {
          const group = Number(p.group);
          if (!this.isLocal(group)) throw new RuntimeError('NotLeader', 'not a replica', this.leaders.get(group) ?? '');
          const c: Consistency = p.c === 'stale' ? 'stale' : p.c === 'lease' ? 'lease' : 'linearizable';
          return this.serveLocal(group, from, { t: 'read', g: group, q: p.q, c, to: ms });
        });
        return;
      case 'xfer':
        serve(() => {
          const group = Number(p.group);
          if (!this.isLocal(group)) throw new RuntimeError('NotLeader', 'not a replica', this.leaders.get(group) ?? '');
          const draining = Array.isArray(p.draining) ? (p.draining as unknown[]).filter((x): x is string => typeof x === 'string') : [];
          this.notePlanned(group, plannedCause(p.cause), ms);
          return this.handOver(group, String(p.target), ms, Number(p.lag) || 10_000, draining, p.force === true, plannedCause(p.cause));
        });
        return;
      case 'verify':
        serve(() => {
          const group = Number(p.group);
          if (!this.isLocal(group)) throw new RuntimeError('NotLeader', 'not a replica', this.leaders.get(group) ?? '');
          return this.workers.call(this.workerFor(group), { t: 'verify', g: group, to: ms });
        });
        return;
      case 'awaitLead':
        serve(() => {
          const group = Number(p.group);
          if (!this.isLocal(group)) throw new RuntimeError('InvalidArgument', `${this.id} holds no replica of group ${group}`);
          this.notePlanned(group, plannedCause(p.cause), ms);
          return this.workers.call(this.workerFor(group), { t: 'awaitLead', g: group, to: ms });
        });
        return;
      case 'ping':
        this.transport.send(from, { k: 'app', t: 'pong', p: { at: p?.at } });
        return;
      case 'pong': {
        const at = Number(p?.at);
        const rtt = performance.now() - at;
        if (Number.isFinite(rtt) && rtt >= 0 && rtt < 60_000) {
          this.rtts.add(rtt);
          this.histograms.rtt.observeMs(rtt);
        }
        return;
      }
      case 'summary': {
        const sum = p as unknown as NodeSummary & { reach?: unknown };
        if (typeof sum?.leaders === 'number' && typeof sum.uptimeMs === 'number') {
          const fsyncP99Ms = typeof sum.fsyncP99Ms === 'number' && Number.isFinite(sum.fsyncP99Ms) ? sum.fsyncP99Ms : null;
          const cpu = typeof sum.cpu === 'number' && Number.isFinite(sum.cpu) ? sum.cpu : null;
          const reach = Array.isArray(sum.reach) ? sum.reach.filter((x): x is string => typeof x === 'string') : null;
          this.views.set(from, { reach, fsyncP99Ms, cpu, at: Date.now() });
          this.balancer?.onSummary(from, {
            leaders: sum.leaders, draining: sum.draining === true, uptimeMs: sum.uptimeMs,
            load: typeof sum.load === 'number' && Number.isFinite(sum.load) ? sum.load : undefined,
            labels: cleanLabels(sum.labels), fsyncP99Ms, cpu,
            madeAt: typeof sum.madeAt === 'number' && Number.isFinite(sum.madeAt) ? sum.madeAt : undefined,
            slow: sum.slow === true,
          });
        }
        return;
      }
      case 'gjoin':
        serve(async () => {
          const group = Number(p.group);
          if (!Number.isInteger(group) || group < 1) throw new RuntimeError('InvalidArgument', 'bad group');
          return this.workers.call(this.workerFor(group), { t: 'create', g: group, voters: [] });
        });
        return;
      case 'gdrop':
        serve(async () => {
          const group = Number(p.group);
          return this.workers.call(this.workerFor(group), { t: 'remove', g: group });
        });
        return;
      case 'member':
        serve(() => {
          const group = Number(p.group);
          if (!this.isLocal(group)) throw new RuntimeError('NotLeader', 'not a replica', this.leaders.get(group) ?? '');
          const type = p.type === 'addVoter' || p.type === 'addLearner' || p.type === 'remove' ? p.type : null;
          if (!type || typeof p.node !== 'string') throw new RuntimeError('InvalidArgument', 'bad membership change');
          return this.workers.call(this.workerFor(group), { t: 'member', g: group, type, node: p.node, to: ms });
        });
        return;
      case 'gconf': {
        const voters = Array.isArray(p.voters) ? (p.voters as unknown[]).filter((x): x is string => typeof x === 'string') : [];
        const learners = Array.isArray(p.learners) ? (p.learners as unknown[]).filter((x): x is string => typeof x === 'string') : [];
        this.onConf(Number(p.group), voters, learners, false);
        return;
      }
      case 'drainState':
        if (p?.draining === true) this.drainingNodes.add(from);
        else this.drainingNodes.delete(from);
        this.log.info({ peer: from, draining: p?.draining === true }, 'peer drain state');
        return;
      case 'gcreate':
      case 'gremove':
        serve(() => this.applyGroupChange(t, p).then(() => null));
        return;
      case 'reply':
        this.forwarder.onReply(from, p as unknown as FwdReply);
        return;
      default:
        this.log.warn({ from, t }, 'unknown application envelope dropped');
    }
  }
}

export function startNode(opts: StartOptions): Promise<FlotillaNode> {
  return FlotillaNode.start(opts);
}

function plannedCause(x: unknown): PlannedCause {
  return typeof x === 'string' && PLANNED_CAUSES.includes(x) ? (x as PlannedCause) : 'transfer';
}

/** A retry wait spread over [ms/2, ms]: callers that failed together (a leader died under them)
 *  do not come back in lock step. */
function jittered(ms: number): number {
  return ms * (0.5 + Math.random() / 2);
}
