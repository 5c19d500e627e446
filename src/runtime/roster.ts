// Roster: the nodes of the cluster as this node knows them, and the one place that changes them
// (design note 8). The truth is a record in the metadata group, group 0: the encoded state of
// ClusterMeta (meta/clustermeta.ts) under one key of group 0's key-value store. A command (a
// join, a decommission, its cancel, a removal) is applied as a compare-and-set of that record:
// read it, apply the command to the decoded state, write the result only if the record is still
// what was read, else read again. Group 0's log orders the writes, so every node sees one
// sequence of states, and ClusterMeta's typed refusals are decided against the latest one.
// Metadata commands are rare (a join, a node state change), so a retried compare-and-set costs
// nothing that matters, and the record needs no state machine of its own in the shards.
//
// Group 0 is created on first use (the first join or decommission), on up to five nodes, so a
// cluster that never changes its nodes pays nothing for it. Every node keeps the last state it
// saw in its data dir (nodes.json): a restarted node dials the nodes that joined after its
// bootstrap before it can read group 0. It follows changes by reading the record when a peer
// says it changed and on a slow timer, and turns them into transport peers (added, re-addressed,
// removed for good).
import { existsSync, readFileSync } from 'node:fs';
import { replaceFile } from './replacefile.js';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import type { JoinAnswer, JoinRequest } from '../transport/index.js';
import { isObject } from '../guards.js';
import { RuntimeError } from './errors.js';
import {
  ClusterMeta,
  ClusterMetaError,
  decodeMetaSnapshot,
  encodeMetaSnapshot,
  type MetaCommand,
  type MetaNode,
  type MetaResult,
  type NodeSpec,
  type NodeState,
} from './meta/index.js';

/** The key of the cluster record in group 0's key-value store. */
export const META_KEY = new TextEncoder().encode('flotilla/cluster');
/** The metadata group. */
export const META_GROUP = 0;
/** Replicas of group 0 at most (a majority survives two failures). */
export const META_REPLICAS = 5;

/** What a joiner learns with its admission (the handshake's `info`). */
export interface JoinInfo {
  readonly v: 1;
  /** Key groups (ids 1..groups) and replicas per group: the joiner routes keys as the others do. */
  readonly groups: number;
  readonly replication: number;
  /** The version of the cluster record the nodes are from. */
  readonly version: number;
  /** Every node ever admitted, with its state. */
  readonly nodes: readonly MetaNode[];
}

const packr = new Packr({ useRecords: false });

export function encodeJoinInfo(info: JoinInfo): Uint8Array {
  return packr.pack(info);
}

/** The joiner's side: undefined for bytes that are not a JoinInfo of this version (the nodes'
 *  own fields are checked again when the roster takes them). */
export function decodeJoinInfo(b: Uint8Array): JoinInfo | undefined {
  let x: unknown;
  try {
    x = packr.unpack(b);
  } catch {
    return undefined;
  }
  if (!isObject(x)) return undefined;
  const { v, groups, replication, version, nodes } = x;
  if (v !== 1 || !isInt(groups) || !isInt(replication) || !isInt(version) || !Array.isArray(nodes)) return undefined;
  const out: MetaNode[] = [];
  for (const n of nodes as unknown[]) {
    if (!isObject(n)) return undefined;
    const { id, address, labels, state, joinedAt } = n;
    if (typeof id !== 'string' || typeof address !== 'string' || !isInt(joinedAt) || !isObject(labels))
      return undefined;
    if (state !== 'active' && state !== 'decommissioning' && state !== 'removed') return undefined;
    const l: { zone?: string; rack?: string } = {};
    if (typeof labels.zone === 'string') l.zone = labels.zone;
    if (typeof labels.rack === 'string') l.rack = labels.rack;
    out.push({ id, address, labels: l, state, joinedAt });
  }
  return { v, groups, replication, version, nodes: out };
}

const isInt = (x: unknown): x is number => Number.isSafeInteger(x);

/** What the roster needs of its node. */
export interface RosterHost {
  readonly id: NodeId;
  readonly dataDir: string;
  readonly clusterId: string;
  readonly log: Logger;
  readonly groups: number;
  readonly replication: number;
  /** The nodes this node was bootstrapped with (itself included), as its configuration says. */
  bootstrapNodes(): NodeSpec[];
  /** This node's address and labels as configured now. */
  selfSpec(): NodeSpec;
  /** Does group 0 exist (as this node knows)? */
  hasMetaGroup(): boolean;
  /** Create group 0 on up to META_REPLICAS of `nodes` (every node must be reachable). */
  createMetaGroup(nodes: readonly NodeId[]): Promise<void>;
  /** group 0's record, read linearizably ('fresh') or from whichever replica answers ('any'). */
  readMeta(freshness: 'fresh' | 'any'): Promise<Uint8Array | null>;
  /** Compare-and-set of group 0's record. */
  casMeta(expected: Uint8Array | null, value: Uint8Array): Promise<{ swapped: boolean }>;
  /** Tell every connected peer that the record changed. */
  announce(version: number): void;
  /** The nodes changed: `members` are every node not removed (this one included), `removed` the
   *  ids removed for good. */
  onNodes(members: readonly MetaNode[], removed: readonly NodeId[]): void;
}

/** Why a compare-and-set loop gave up: the record changed under it this many times. */
const MAX_CAS_ATTEMPTS = 20;

export class Roster {
  #meta: ClusterMeta | null = null;
  /** The version of the last state adopted (0: none yet). */
  #version = 0;
  #syncing: Promise<void> | null = null;
  /** A sync was asked for while one ran: run another after it. */
  #again = false;
  /** The next read must be linearizable. */
  #fresh = false;
  #stopped = false;
  /** An updateNode of this node's own entry is being applied (or was refused: not retried). */
  #correcting: 'no' | 'running' | 'refused' = 'no';
  /** Counters for /metrics. */
  readonly stats = { joinsAdmitted: 0, joinsRefused: 0, syncs: 0, syncFailures: 0, casRetries: 0 };

  constructor(private readonly host: RosterHost) {
    const raw = readRosterFile(host.dataDir);
    if (raw !== null) {
      this.#version = raw.version;
      // Kept as a state without a cluster record: enough to know the nodes until group 0 answers.
      this.#meta = ClusterMeta.fromSnapshot({
        clusterId: host.clusterId,
        version: raw.version,
        nodes: raw.nodes,
        groups: [],
      });
    }
  }

  /** Every node ever admitted as last seen (empty until group 0 was first used). */
  nodes(): MetaNode[] {
    return this.#meta?.allNodes() ?? [];
  }

  node(id: NodeId): MetaNode | undefined {
    return this.#meta?.nodeOf(id);
  }

  get version(): number {
    return this.#version;
  }

  /** Apply one command to the cluster record (creating group 0 and the record on first use).
   *  Refusals are results; transport and timeout failures throw. */
  async apply(cmd: MetaCommand): Promise<MetaResult> {
    if (!this.host.hasMetaGroup()) {
      const boot = this.host.bootstrapNodes().map((n) => n.id);
      // Only the nodes still in the cluster can hold it; those this node knows of as removed cannot.
      const removed = new Set(
        this.nodes()
          .filter((n) => n.state === 'removed')
          .map((n) => n.id),
      );
      await this.host.createMetaGroup(boot.filter((n) => !removed.has(n)));
    }
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.host.readMeta('fresh');
      const meta = cur === null ? this.#bootstrapped() : ClusterMeta.fromSnapshot(decodeMetaSnapshot(cur));
      const r = meta.apply(cmd, meta.version + 1);
      if (!r.ok || !r.changed) {
        this.#adopt(meta);
        return r;
      }
      const { swapped } = await this.host.casMeta(cur, encodeMetaSnapshot(meta.snapshot()));
      if (swapped) {
        this.#adopt(meta);
        this.host.announce(meta.version);
        return r;
      }
      this.stats.casRetries++;
    }
    throw new RuntimeError('Unavailable', `the cluster record kept changing: ${cmd.type} not applied, retry`);
  }

  /** The state a first command starts from: the bootstrap nodes (the cluster id is fixed). */
  #bootstrapped(): ClusterMeta {
    const m = new ClusterMeta();
    const r = m.apply({ type: 'bootstrap', clusterId: this.host.clusterId, nodes: this.host.bootstrapNodes() }, 1);
    if (!r.ok) throw new RuntimeError('InvalidArgument', `cannot bootstrap the cluster record: ${r.detail}`);
    return m;
  }

  /** Decide a join request (the transport's onJoinRequest). */
  async admit(req: JoinRequest): Promise<JoinAnswer> {
    const labels: { zone?: string; rack?: string } = {};
    if (typeof req.labels.zone === 'string') labels.zone = req.labels.zone;
    if (typeof req.labels.rack === 'string') labels.rack = req.labels.rack;
    let r: MetaResult;
    try {
      r = await this.apply({
        type: 'addNode',
        clusterId: this.host.clusterId,
        id: req.id,
        address: req.address,
        labels,
      });
    } catch (e) {
      this.stats.joinsRefused++;
      this.host.log.warn({ joiner: req.id, err: e }, 'join not decided');
      return { accept: false, reason: 'NotReady', detail: (e as Error).message };
    }
    if (!r.ok) {
      this.stats.joinsRefused++;
      this.host.log.warn({ joiner: req.id, address: req.address, reason: r.reason, detail: r.detail }, 'join refused');
      const reason =
        r.reason === 'DuplicateId' ||
        r.reason === 'DuplicateAddress' ||
        r.reason === 'Decommissioned' ||
        r.reason === 'ClusterMismatch'
          ? r.reason
          : 'NotReady';
      return { accept: false, reason, detail: r.detail };
    }
    this.stats.joinsAdmitted++;
    this.host.log.info({ joiner: req.id, address: req.address, labels }, 'node admitted to the cluster');
    return {
      accept: true,
      info: encodeJoinInfo({
        v: 1,
        groups: this.host.groups,
        replication: this.host.replication,
        version: this.#version,
        nodes: this.nodes(),
      }),
    };
  }

  /** Set a node's lifecycle state (decommission, its cancel, the final removal). */
  async setState(id: NodeId, state: NodeState): Promise<MetaNode> {
    const r = await this.apply({ type: 'setNodeState', id, state });
    if (!r.ok) throw ClusterMetaError.refused(r);
    const n = this.#meta?.nodeOf(id);
    if (n === undefined) throw new RuntimeError('InvalidArgument', `no node ${id}`);
    return n;
  }

  /** Read the record and adopt it if newer; runs one at a time (a call during one runs after it).
   *  'fresh' when a peer said it changed: a lagging local replica would not show it yet. */
  sync(freshness: 'fresh' | 'any' = 'any'): Promise<void> {
    if (this.#stopped || !this.host.hasMetaGroup()) return Promise.resolve();
    if (freshness === 'fresh') this.#fresh = true;
    if (this.#syncing !== null) {
      this.#again = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#again = false;
        const f = this.#fresh ? 'fresh' : 'any';
        this.#fresh = false;
        try {
          const cur = await this.host.readMeta(f);
          this.stats.syncs++;
          if (cur !== null) this.#adopt(ClusterMeta.fromSnapshot(decodeMetaSnapshot(cur)));
        } catch (e) {
          this.stats.syncFailures++;
          this.host.log.debug({ err: e }, 'cluster record not read');
        }
      } while (this.#again && !this.#stopped);
      this.#syncing = null;
    })();
    return this.#syncing;
  }

  stop(): void {
    this.#stopped = true;
  }

  /** A member refused this node as removed (it was decommissioned while away): remember it, so
   *  that this data dir never starts again. A local fact only; the record said it first. */
  noteSelfRemoved(): void {
    const me = this.#meta?.nodeOf(this.host.id);
    const others = this.nodes().filter((n) => n.id !== this.host.id);
    const self: MetaNode = me
      ? { ...me, state: 'removed' }
      : { id: this.host.id, address: '', labels: {}, state: 'removed', joinedAt: 0 };
    writeRosterFile(this.host.dataDir, this.#version, [...others, self]);
  }

  #adopt(meta: ClusterMeta): void {
    if (meta.version < this.#version) return;
    const changed = meta.version > this.#version || this.#meta === null;
    this.#meta = meta;
    this.#version = meta.version;
    if (!changed) return;
    const all = meta.allNodes();
    this.#save(all);
    this.host.onNodes(
      all.filter((n) => n.state !== 'removed'),
      all.filter((n) => n.state === 'removed').map((n) => n.id),
    );
    this.#correctSelf(meta);
  }

  /** The record's entry for this node says another address or other labels than its
   *  configuration (bootstrap nodes are first written with only the writer's labels known):
   *  state its own. One at a time; a refusal (an address taken) is logged and not retried. */
  #correctSelf(meta: ClusterMeta): void {
    const mine = meta.nodeOf(this.host.id);
    if (mine === undefined || mine.state === 'removed' || this.#correcting !== 'no' || this.#stopped) return;
    const want = this.host.selfSpec();
    const labels = (l: { zone?: string; rack?: string }) => `${l.zone ?? ''}\u0000${l.rack ?? ''}`;
    if (mine.address === want.address && labels(mine.labels) === labels(want.labels)) return;
    this.#correcting = 'running';
    this.apply({ type: 'updateNode', id: want.id, address: want.address, labels: want.labels }).then(
      (r) => {
        this.#correcting = r.ok ? 'no' : 'refused';
        if (r.ok)
          this.host.log.info({ address: want.address, labels: want.labels }, 'own entry in the cluster record updated');
        else this.host.log.warn({ reason: r.reason, detail: r.detail }, 'own entry in the cluster record not updated');
      },
      (e: unknown) => {
        this.#correcting = 'no';
        this.host.log.debug({ err: e }, 'own entry in the cluster record not updated yet');
      },
    );
  }

  #save(nodes: MetaNode[]): void {
    writeRosterFile(this.host.dataDir, this.#version, nodes);
  }
}

/** What a data dir's nodes.json says: the nodes as last seen, or null when there is none. */
export function readRosterFile(dataDir: string): { version: number; nodes: MetaNode[] } | null {
  const path = join(dataDir, 'nodes.json');
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { version: number; nodes: MetaNode[] }) : null;
}

/** Replace nodes.json whole (written aside and renamed: a crash leaves the old or the new). */
export function writeRosterFile(dataDir: string, version: number, nodes: readonly MetaNode[]): void {
  const path = join(dataDir, 'nodes.json');
  replaceFile(path, JSON.stringify({ version, nodes }));
}
