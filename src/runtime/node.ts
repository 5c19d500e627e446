// FlotillaNode: one node of a cluster — its groups (one Shard, in this thread for now; worker
// threads come next), the TCP transport to the other nodes, deterministic placement, the cluster
// id guard, and the embedded API: propose/read on any node (forwarded to the group's leader),
// and a key-value facade that routes each key to its group by hash.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { Message, NodeId } from '../raft/types.js';
import { LogStore } from '../storage/logstore.js';
import { decodeKvCommand, encodeKvCommand, type KvCommand, type KvResult } from '../storage/kv.js';
import { Transport, parseAddress, type Envelope } from '../transport/index.js';
import { RuntimeError, type RuntimeErrorCode } from './errors.js';
import { Shard, type RaftTuning } from './shard.js';

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
  /** Milliseconds per tick (= heartbeat interval). Default 100, as etcd. */
  readonly tickMs?: number;
  /** Election timeout in ticks. Default 10 (1 s at 100 ms, as etcd). */
  readonly electionTicks?: number;
  /** Multiplies tickMs for slow disks or networks (Vault's performance multiplier). Default 1. */
  readonly timingScale?: number;
  /** Deadline of a client request. Default 10 s. */
  readonly requestTimeoutMs?: number;
  readonly raft?: RaftTuning;
  readonly logger?: Logger;
}

/** Replicas of each group: `replication` consecutive nodes (sorted by id) starting at a
 *  group-dependent offset, so leaders and load spread evenly and every node computes the same. */
export function placement(nodes: readonly NodeId[], groups: number, replication: number): Map<number, NodeId[]> {
  const sorted = [...nodes].sort();
  const out = new Map<number, NodeId[]>();
  for (let g = 1; g <= groups; g++) {
    const members: NodeId[] = [];
    for (let k = 0; k < replication; k++) members.push(sorted[(g - 1 + k) % sorted.length]);
    out.set(g, members.sort());
  }
  return out;
}

/** Derived from the bootstrap configuration: nodes restarted with another one refuse to start. */
export function clusterIdOf(nodes: readonly NodeId[], groups: number, replication: number): string {
  const h = createHash('sha256').update(JSON.stringify({ nodes: [...nodes].sort(), groups, replication })).digest('hex');
  return h.slice(0, 16);
}

/** Group of a key: a stable hash of its bytes. */
export function groupOfKey(key: Uint8Array, groups: number): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i], 16777619);
  return ((h >>> 0) % groups) + 1;
}

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

type FwdReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; code: RuntimeErrorCode; message: string; leader: NodeId };

const enc = new TextEncoder();
const asBytes = (k: Uint8Array | string): Uint8Array => (typeof k === 'string' ? enc.encode(k) : k);

export class FlotillaNode {
  readonly clusterId: string;
  private readonly members: Map<number, NodeId[]>;
  private readonly pending = new Map<number, Pending>();
  private reqSeq = 0;
  private stopped = false;
  private readonly timeoutMs: number;

  private constructor(
    readonly id: NodeId,
    private readonly opts: StartOptions,
    private readonly store: LogStore,
    private readonly shard: Shard,
    private readonly transport: Transport,
    private readonly log: Logger,
    members: Map<number, NodeId[]>,
    clusterId: string,
  ) {
    this.members = members;
    this.clusterId = clusterId;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
  }

  static async start(opts: StartOptions): Promise<FlotillaNode> {
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ node: opts.id });
    const nodes = [opts.id, ...Object.keys(opts.peers).filter((p) => p !== opts.id)];
    const replication = opts.replication ?? Math.min(3, nodes.length);
    if (!Number.isInteger(opts.groups) || opts.groups < 1) throw new RuntimeError('InvalidArgument', 'groups: must be a positive integer');
    if (replication < 1 || replication > nodes.length) throw new RuntimeError('InvalidArgument', `replication: must be 1..${nodes.length}`);
    parseAddress(opts.listen);
    const clusterId = clusterIdOf(nodes, opts.groups, replication);
    mkdirSync(opts.dataDir, { recursive: true });
    const idFile = join(opts.dataDir, 'cluster.json');
    if (existsSync(idFile)) {
      const prev = JSON.parse(readFileSync(idFile, 'utf8')) as { clusterId: string; node: NodeId };
      if (prev.clusterId !== clusterId || prev.node !== opts.id) {
        throw new RuntimeError('InvalidArgument',
          `${opts.dataDir} belongs to node ${prev.node} of cluster ${prev.clusterId}, but this configuration is node ` +
          `${opts.id} of cluster ${clusterId} (nodes, groups or replication differ); refusing to start`);
      }
    } else {
      writeFileSync(idFile, JSON.stringify({ clusterId, node: opts.id }));
    }
    const members = placement(nodes, opts.groups, replication);
    const store = await LogStore.open({ path: join(opts.dataDir, 'w0') });
    const tickMs = (opts.tickMs ?? 100) * (opts.timingScale ?? 1);
    let transport: Transport | null = null;
    const shard = Shard.open({
      nodeId: opts.id, store, tickMs, logger: log, requestTimeoutMs: opts.requestTimeoutMs,
      raft: { electionTicks: opts.electionTicks ?? 10, ...opts.raft },
      send: (to: NodeId, msgs: Message[]) => {
        for (const m of msgs) transport?.send(to, { k: 'raft', m });
      },
    });
    for (const [g, m] of members) {
      if (m.includes(opts.id) && !store.has(g)) shard.createGroup(g, { voters: m, learners: [] });
    }
    let node: FlotillaNode | null = null;
    transport = new Transport({
      nodeId: opts.id, clusterId, listen: parseAddress(opts.listen), peers: opts.peers, logger: log,
      onEnvelopes: (from, envs) => node?.onEnvelopes(from, envs),
    });
    transport.on('peerUp', (p) => shard.peerUp(p));
    transport.on('peerDown', (p) => shard.peerDown(p));
    node = new FlotillaNode(opts.id, opts, store, shard, transport, log, members, clusterId);
    try {
      await transport.start();
    } catch (e) {
      await shard.stop();
      await store.close();
      throw new RuntimeError('InvalidArgument', `listen: cannot listen on ${opts.listen}: ${(e as Error).message}`);
    }
    shard.start();
    log.info({ clusterId, groups: shard.groupIds().length }, 'node started');
    return node;
  }

  /** The nodes holding a replica of `group`. */
  replicasOf(group: number): NodeId[] {
    const m = this.members.get(group);
    if (!m) throw new RuntimeError('InvalidArgument', `unknown group ${group}`);
    return m;
  }

  private isLocal(group: number): boolean {
    return this.replicasOf(group).includes(this.id);
  }

  // --- embedded API ------------------------------------------------------------------------------

  /** Propose a command to `group` from any node; resolves with the state machine's result. Retries
   *  (within the deadline) only rejections that guarantee the command was not applied. */
  async propose(group: number, cmd: KvCommand, timeoutMs = this.timeoutMs): Promise<KvResult | null> {
    const deadline = Date.now() + timeoutMs;
    let hint = this.isLocal(group) ? this.shard.leaderOf(group) || this.id : this.replicasOf(group)[0];
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new RuntimeError('Stopped', `node ${this.id} stopped`);
      try {
        if (hint === this.id && this.isLocal(group)) return await this.shard.propose(group, cmd);
        return (await this.forward(hint, 'fwd', { group, cmd: encodeKvCommand(cmd) }, deadline - Date.now())) as KvResult | null;
      } catch (e) {
        const err = e as RuntimeError;
        const safe = err.code === 'NotLeader' || err.code === 'TransferInProgress' || err.code === 'Overloaded' || err.code === 'Unavailable';
        if (!safe || Date.now() + 10 >= deadline) throw e;
        const replicas = this.replicasOf(group);
        hint = err.leader && replicas.includes(err.leader) ? err.leader : replicas[attempt % replicas.length];
        await new Promise((r) => setTimeout(r, Math.min(200, 5 * 2 ** Math.min(attempt, 6))));
      }
    }
  }

  /** Read a key. 'linearizable' (default) waits for a ReadIndex barrier on a replica; 'stale'
   *  returns this replica's value at once. */
  async read(group: number, key: Uint8Array, consistency: 'linearizable' | 'stale' = 'linearizable'): Promise<Uint8Array | null> {
    const deadline = Date.now() + this.timeoutMs;
    if (this.isLocal(group)) {
      if (consistency === 'linearizable') {
        for (let attempt = 0; ; attempt++) {
          try {
            await this.shard.readBarrier(group);
            break;
          } catch (e) {
            if (!(e as RuntimeError).retryable || Date.now() + 10 >= deadline) throw e;
            await new Promise((r) => setTimeout(r, Math.min(200, 5 * 2 ** Math.min(attempt, 6))));
          }
        }
      }
      return this.shard.get(group, key);
    }
    const r = await this.forward(this.replicasOf(group)[0], 'rd', { group, key, consistency }, this.timeoutMs);
    return (r as Uint8Array | null) ?? null;
  }

  readonly kv = {
    put: (key: Uint8Array | string, value: Uint8Array | string) => {
      const k = asBytes(key);
      return this.propose(groupOfKey(k, this.opts.groups), { op: 'put', key: k, value: asBytes(value) }).then(() => undefined);
    },
    delete: (key: Uint8Array | string) => {
      const k = asBytes(key);
      return this.propose(groupOfKey(k, this.opts.groups), { op: 'delete', key: k }).then(() => undefined);
    },
    cas: async (key: Uint8Array | string, expected: Uint8Array | string | null, value: Uint8Array | string | null) => {
      const k = asBytes(key);
      const r = await this.propose(groupOfKey(k, this.opts.groups), {
        op: 'cas', key: k, expected: expected === null ? null : asBytes(expected), value: value === null ? null : asBytes(value),
      });
      return r && r.op === 'cas' ? { swapped: r.swapped, current: r.current } : { swapped: false, current: null };
    },
    get: (key: Uint8Array | string, consistency: 'linearizable' | 'stale' = 'linearizable') => {
      const k = asBytes(key);
      return this.read(groupOfKey(k, this.opts.groups), k, consistency);
    },
  };

  status() {
    const groups = this.shard.groupIds().map((g) => this.shard.status(g));
    return {
      id: this.id, clusterId: this.clusterId,
      groups: groups.length, leaders: groups.filter((s) => s.role === 'leader').length,
      quiesced: groups.filter((s) => s.quiesced).length,
      peers: this.transport.connectedPeers(), shard: this.shard.stats, transport: this.transport.stats(),
      perGroup: groups,
    };
  }

  transferLeader(group: number, target: NodeId) {
    return this.shard.transferLeader(group, target);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new RuntimeError('Stopped', `node ${this.id} stopped`));
    }
    this.pending.clear();
    await this.shard.stop();
    await this.transport.close();
    await this.store.close();
  }

  // --- forwarding between nodes ---------------------------------------------------------------

  private forward(to: NodeId, t: 'fwd' | 'rd', p: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    // Nothing is sent to a node we know is down: fail fast (safe to retry elsewhere) instead of
    // queueing a request whose answer would only arrive, if ever, after the deadline.
    if (!this.transport.isConnected(to)) return Promise.reject(new RuntimeError('Unavailable', `${to} is not connected`));
    const id = ++this.reqSeq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RuntimeError('Timeout', `request ${t} to ${to} timed out`));
      }, Math.max(1, timeoutMs));
      this.pending.set(id, { resolve, reject, timer });
      if (!this.transport.send(to, { k: 'app', t, p: { ...p, id } })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new RuntimeError('Unavailable', `cannot reach ${to}`));
      }
    });
  }

  private onEnvelopes(from: NodeId, envs: Envelope[]): void {
    const raft: Message[] = [];
    for (const e of envs) {
      if (e.k === 'raft') raft.push(e.m);
      else this.onApp(from, e.t, e.p as Record<string, unknown>);
    }
    if (raft.length > 0) this.shard.receive(raft);
  }

  private onApp(from: NodeId, t: string, p: Record<string, unknown>): void {
    const reply = (r: FwdReply) => this.transport.send(from, { k: 'app', t: 'reply', p: r });
    const fail = (id: number, e: unknown) => {
      const err = e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', String((e as Error)?.message ?? e));
      reply({ id, ok: false, code: err.code, message: err.message, leader: err.leader });
    };
    const id = Number(p?.id);
    switch (t) {
      case 'fwd': {
        // Served only if this node leads the group; otherwise the caller retries with our hint.
        let cmd: KvCommand;
        try {
          cmd = decodeKvCommand(p.cmd as Uint8Array);
          if (!this.isLocal(Number(p.group))) throw new RuntimeError('NotLeader', 'not a replica', this.replicasOf(Number(p.group))[0]);
        } catch (e) {
          fail(id, e);
          return;
        }
        this.shard.propose(Number(p.group), cmd).then((result) => reply({ id, ok: true, result }), (e) => fail(id, e));
        return;
      }
      case 'rd': {
        const group = Number(p.group);
        const key = p.key as Uint8Array;
        this.read(group, key, p.consistency === 'stale' ? 'stale' : 'linearizable')
          .then((v) => reply({ id, ok: true, result: v }), (e) => fail(id, e));
        return;
      }
      case 'reply': {
        const r = p as unknown as FwdReply;
        const w = this.pending.get(r.id);
        if (!w) return;
        this.pending.delete(r.id);
        clearTimeout(w.timer);
        if (r.ok) w.resolve(r.result);
        else w.reject(new RuntimeError(r.code, r.message, r.leader));
        return;
      }
      default:
        this.log.warn({ from, t }, 'unknown application envelope dropped');
    }
  }
}

export function startNode(opts: StartOptions): Promise<FlotillaNode> {
  return FlotillaNode.start(opts);
}
