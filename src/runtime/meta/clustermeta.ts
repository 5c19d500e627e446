// The cluster metadata state machine (group 0, design note 8): the cluster id, the nodes (address,
// labels, lifecycle state) and the directory of group replicas. Pure and deterministic: apply()
// depends only on the state, the command and the log index it is given, and refusals are results,
// so every replica of group 0 holds the same state after the same log. No I/O and no clock; the
// node feeds it committed commands (codec.ts decodes them) and reads it through the helpers.
import type { NodeId } from '../../raft/types.js';
import { parseAddress } from '../../transport/transport.js';
import { NODE_ID_FORBIDDEN } from '../startoptions.js';
import { ClusterMetaError, type MetaRefusal } from './errors.js';

export type NodeState = 'active' | 'decommissioning' | 'removed';

export interface NodeLabels {
  readonly zone?: string;
  readonly rack?: string;
}

/** A node as it asks to be admitted. */
export interface NodeSpec {
  readonly id: NodeId;
  /** 'host:port' (or '[v6]:port') it listens on for other nodes. */
  readonly address: string;
  readonly labels: NodeLabels;
}

export interface MetaNode extends NodeSpec {
  readonly state: NodeState;
  /** The log index of the command that admitted it (bootstrap or addNode). */
  readonly joinedAt: number;
}

/** Where a group's replicas are, as last reported: a routing hint for nodes without one (the
 *  group's own Raft configuration is the authority). */
export interface GroupReplicas {
  readonly group: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** The log index (in the group's own log) of the configuration this describes. */
  readonly confIndex: number;
}

export type MetaCommand =
  | { readonly type: 'bootstrap'; readonly clusterId: string; readonly nodes: readonly NodeSpec[] }
  | AddNode
  | SetNodeState
  | UpdateNode
  | ({ readonly type: 'setReplicas' } & GroupReplicas)
  | { readonly type: 'removeGroup'; readonly group: number };

export interface AddNode extends NodeSpec {
  readonly type: 'addNode';
  readonly clusterId: string;
}

/** A node not removed states its own address and labels (a bootstrap node's labels are known
 *  only to itself when the record is first written; an address can change across a restart). */
export interface UpdateNode extends NodeSpec {
  readonly type: 'updateNode';
}

export interface SetNodeState {
  readonly type: 'setNodeState';
  readonly id: NodeId;
  readonly state: NodeState;
}

/** A command taken. `changed` is false for one that found its effect already there (a retried
 *  join or bootstrap, a state already set, a directory report not newer than the recorded one):
 *  then `version` did not move. */
export interface MetaApplied {
  readonly ok: true;
  readonly changed: boolean;
  /** The state's version after the command. */
  readonly version: number;
}

/** addNode and setNodeState taken: the node as it is now. */
export interface NodeApplied extends MetaApplied {
  readonly node: MetaNode;
}

export interface MetaRefused {
  readonly ok: false;
  readonly reason: MetaRefusal;
  readonly detail: string;
}

export type MetaResult = MetaApplied | MetaRefused;
export type NodeResult = NodeApplied | MetaRefused;

/** The whole state as a value: nodes by id, groups by number (so equal states are equal values,
 *  and encode to equal bytes). Before bootstrap: clusterId '', version 0, nothing else. */
export interface MetaSnapshot {
  readonly clusterId: string;
  readonly version: number;
  readonly nodes: readonly MetaNode[];
  readonly groups: readonly GroupReplicas[];
}

/** Longest id, cluster id, address and label value taken (all are echoed in logs and headers). */
export const META_LIMITS = { id: 128, clusterId: 128, address: 300, label: 64 } as const;

const MAX_GROUP = 0xffff_ffff;

/** How a node id breaks the rules of StartOptions.id (non-empty, none of ':', '|', ','), or null. */
export function nodeIdProblem(id: unknown): string | null {
  if (typeof id !== 'string' || id.length === 0) return 'the node id must be a non-empty string';
  if (id.length > META_LIMITS.id) return `the node id is longer than ${META_LIMITS.id} characters`;
  if (NODE_ID_FORBIDDEN.test(id)) return `the node id ${JSON.stringify(id)} contains ":", "|" or ","`;
  return null;
}

function addressProblem(a: unknown): string | null {
  if (typeof a !== 'string' || a.length === 0 || a.length > META_LIMITS.address)
    return `the address must be "host:port" of at most ${META_LIMITS.address} characters`;
  try {
    parseAddress(a);
    return null;
  } catch {
    return `the address ${JSON.stringify(a)} is not "host:port"`;
  }
}

function labelsProblem(l: unknown): string | null {
  if (typeof l !== 'object' || l === null) return 'labels must be an object {zone?, rack?}';
  const { zone, rack } = l as NodeLabels;
  for (const [k, v] of [
    ['zone', zone],
    ['rack', rack],
  ] as const) {
    if (v !== undefined && (typeof v !== 'string' || v.length === 0 || v.length > META_LIMITS.label))
      return `label ${k} must be a non-empty string of at most ${META_LIMITS.label} characters`;
  }
  return null;
}

function clusterIdProblem(c: unknown): string | null {
  return typeof c === 'string' && c.length > 0 && c.length <= META_LIMITS.clusterId
    ? null
    : `the cluster id must be a non-empty string of at most ${META_LIMITS.clusterId} characters`;
}

function specProblem(s: NodeSpec): string | null {
  if (typeof s !== 'object' || s === null) return 'a node must be an object {id, address, labels}';
  return nodeIdProblem(s.id) ?? addressProblem(s.address) ?? labelsProblem(s.labels);
}

const isIndex = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
const isGroup = (n: unknown): n is number => isIndex(n) && n <= MAX_GROUP;

/** Only the known labels, without undefined ones: what the state stores and compares. */
function normalLabels(l: NodeLabels): NodeLabels {
  const out: { zone?: string; rack?: string } = {};
  if (l.zone !== undefined) out.zone = l.zone;
  if (l.rack !== undefined) out.rack = l.rack;
  return Object.freeze(out);
}

const sameLabels = (a: NodeLabels, b: NodeLabels) => a.zone === b.zone && a.rack === b.rack;

function nodeRecord(s: NodeSpec, state: NodeState, joinedAt: number): MetaNode {
  return Object.freeze({ id: s.id, address: s.address, labels: normalLabels(s.labels), state, joinedAt });
}

const refuse = (reason: MetaRefusal, detail: string): MetaRefused => ({ ok: false, reason, detail });

const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A frozen copy of `ids` in order (most come in order already: skip the sort then). */
function sortedIds(ids: readonly NodeId[]): readonly NodeId[] {
  const out = ids.slice();
  for (let i = 1; i < out.length; i++)
    if (out[i - 1] > out[i]) {
      out.sort(byId);
      break;
    }
  return Object.freeze(out);
}

/** The legal lifecycle steps (a state set to itself is taken as a no-op, not here). */
const TRANSITIONS: Readonly<Record<NodeState, readonly NodeState[]>> = {
  active: ['decommissioning'],
  decommissioning: ['active', 'removed'],
  removed: [],
};

export class ClusterMeta {
  #clusterId = '';
  #version = 0;
  readonly #nodes = new Map<NodeId, MetaNode>();
  readonly #groups = new Map<number, GroupReplicas>();
  /** node → the groups it holds a replica of (voter or learner), kept with the directory. */
  readonly #byNode = new Map<NodeId, Set<number>>();

  /** '' until bootstrapped. */
  get clusterId(): string {
    return this.#clusterId;
  }

  /** Bumped by one for every command that changed the state. */
  get version(): number {
    return this.#version;
  }

  get bootstrapped(): boolean {
    return this.#clusterId !== '';
  }

  /** Apply one committed command at log index `index`. Never throws for any command value: a
   *  command the state cannot take is refused (the same way on every replica). */
  apply(cmd: AddNode | SetNodeState | UpdateNode, index: number): NodeResult;
  apply(cmd: MetaCommand, index: number): MetaResult;
  apply(cmd: MetaCommand, index: number): MetaResult | NodeResult {
    if (typeof cmd !== 'object' || cmd === null) return refuse('Corrupt', 'not a command');
    if (cmd.type === 'bootstrap') return this.#bootstrap(cmd.clusterId, cmd.nodes, index);
    if (!this.bootstrapped) return refuse('NotBootstrapped', `${cmd.type} before the cluster was bootstrapped`);
    switch (cmd.type) {
      case 'addNode':
        return this.#addNode(cmd, index);
      case 'setNodeState':
        return this.#setNodeState(cmd.id, cmd.state);
      case 'updateNode':
        return this.#updateNode(cmd);
      case 'setReplicas':
        return this.#setReplicas(cmd);
      case 'removeGroup':
        return this.#removeGroup(cmd.group);
      default:
        return refuse('Corrupt', 'unknown command type');
    }
  }

  // --- reads ------------------------------------------------------------------------------------

  nodeOf(id: NodeId): MetaNode | undefined {
    return this.#nodes.get(id);
  }

  /** Every node ever admitted, removed ones included, by id. */
  allNodes(): MetaNode[] {
    return [...this.#nodes.values()].sort((a, b) => byId(a.id, b.id));
  }

  /** Nodes in state 'active', by id. */
  activeNodes(): MetaNode[] {
    return this.allNodes().filter((n) => n.state === 'active');
  }

  /** Nodes not removed (active or decommissioning), by id: the peers a node keeps links to. */
  members(): MetaNode[] {
    return this.allNodes().filter((n) => n.state !== 'removed');
  }

  replicasOf(group: number): GroupReplicas | undefined {
    return this.#groups.get(group);
  }

  /** The groups with a replica (voter or learner) on `node` in the directory, ascending. */
  groupsOn(node: NodeId): number[] {
    return [...(this.#byNode.get(node) ?? [])].sort((a, b) => a - b);
  }

  /** Replicas per node in the directory, for every node not removed (zeros included) and any
   *  removed one still listed, by id. */
  countsPerNode(): Map<NodeId, { voters: number; learners: number }> {
    const counts = new Map<NodeId, { voters: number; learners: number }>();
    for (const n of this.allNodes())
      if (n.state !== 'removed' || this.#byNode.has(n.id)) counts.set(n.id, { voters: 0, learners: 0 });
    for (const g of this.#groups.values()) {
      for (const v of g.voters) {
        const c = counts.get(v);
        if (c) c.voters++;
      }
      for (const l of g.learners) {
        const c = counts.get(l);
        if (c) c.learners++;
      }
    }
    return counts;
  }

  /** The number of groups in the directory. */
  get groupCount(): number {
    return this.#groups.size;
  }

  // --- snapshots --------------------------------------------------------------------------------

  snapshot(): MetaSnapshot {
    return {
      clusterId: this.#clusterId,
      version: this.#version,
      nodes: this.allNodes(),
      groups: [...this.#groups.values()].sort((a, b) => a.group - b.group),
    };
  }

  /** Replace the state with `snap`, after checking it (a ClusterMetaError 'Corrupt' naming the
   *  first problem leaves the state untouched). */
  restore(snap: MetaSnapshot): void {
    const problem = snapshotProblem(snap);
    if (problem !== null) throw new ClusterMetaError('Corrupt', `cluster metadata snapshot: ${problem}`);
    this.#clusterId = snap.clusterId;
    this.#version = snap.version;
    this.#nodes.clear();
    this.#groups.clear();
    this.#byNode.clear();
    for (const n of snap.nodes) this.#nodes.set(n.id, nodeRecord(n, n.state, n.joinedAt));
    for (const g of snap.groups) this.#putGroup(g);
  }

  static fromSnapshot(snap: MetaSnapshot): ClusterMeta {
    const m = new ClusterMeta();
    m.restore(snap);
    return m;
  }

  // --- commands ---------------------------------------------------------------------------------

  #changed(): number {
    return ++this.#version;
  }

  #bootstrap(clusterId: string, nodes: readonly NodeSpec[], index: number): MetaResult {
    // A retried bootstrap (every seed node may propose it) finds its cluster already there; the
    // cluster id is derived from the seed list, so the same id is the same bootstrap.
    if (this.bootstrapped)
      return clusterId === this.#clusterId
        ? { ok: true, changed: false, version: this.#version }
        : refuse('AlreadyBootstrapped', `the cluster is ${this.#clusterId}, not ${String(clusterId)}`);
    const cp = clusterIdProblem(clusterId);
    if (cp !== null) return refuse('InvalidNode', cp);
    if (!isIndex(index)) return refuse('InvalidNode', 'bad log index');
    if (!Array.isArray(nodes) || nodes.length === 0) return refuse('InvalidNode', 'bootstrap needs at least one node');
    const ids = new Set<NodeId>();
    const addrs = new Set<string>();
    for (const s of nodes) {
      const p = specProblem(s);
      if (p !== null) return refuse('InvalidNode', p);
      if (ids.has(s.id)) return refuse('DuplicateId', `node ${s.id} is listed twice`);
      if (addrs.has(s.address)) return refuse('DuplicateAddress', `address ${s.address} is listed twice`);
      ids.add(s.id);
      addrs.add(s.address);
    }
    this.#clusterId = clusterId;
    for (const s of nodes) this.#nodes.set(s.id, nodeRecord(s, 'active', index));
    return { ok: true, changed: true, version: this.#changed() };
  }

  #addNode(cmd: AddNode, index: number): NodeResult {
    const p = specProblem(cmd) ?? clusterIdProblem(cmd.clusterId) ?? (isIndex(index) ? null : 'bad log index');
    if (p !== null) return refuse('InvalidNode', p);
    if (cmd.clusterId !== this.#clusterId)
      return refuse('ClusterMismatch', `node ${cmd.id} belongs to cluster ${cmd.clusterId}, not ${this.#clusterId}`);
    const old = this.#nodes.get(cmd.id);
    if (old !== undefined) {
      if (old.state === 'removed')
        return refuse('Decommissioned', `node ${cmd.id} was removed; a removed node never rejoins under its id`);
      // A retried join: the same node asking again while its first admission is already applied.
      if (old.state === 'active' && old.address === cmd.address && sameLabels(old.labels, normalLabels(cmd.labels)))
        return { ok: true, changed: false, version: this.#version, node: old };
      return refuse('DuplicateId', `node ${cmd.id} is already a member (${old.state}, at ${old.address})`);
    }
    for (const n of this.#nodes.values())
      if (n.state !== 'removed' && n.address === cmd.address)
        return refuse('DuplicateAddress', `node ${n.id} listens on ${cmd.address}`);
    const node = nodeRecord(cmd, 'active', index);
    this.#nodes.set(node.id, node);
    return { ok: true, changed: true, version: this.#changed(), node };
  }

  #updateNode(cmd: UpdateNode): NodeResult {
    const p = specProblem(cmd);
    if (p !== null) return refuse('InvalidNode', p);
    const old = this.#nodes.get(cmd.id);
    if (old === undefined) return refuse('UnknownNode', `no node ${cmd.id}`);
    if (old.state === 'removed') return refuse('Decommissioned', `node ${cmd.id} was removed`);
    const labels = normalLabels(cmd.labels);
    if (old.address === cmd.address && sameLabels(old.labels, labels))
      return { ok: true, changed: false, version: this.#version, node: old };
    for (const n of this.#nodes.values())
      if (n.id !== cmd.id && n.state !== 'removed' && n.address === cmd.address)
        return refuse('DuplicateAddress', `node ${n.id} listens on ${cmd.address}`);
    const node = nodeRecord(cmd, old.state, old.joinedAt);
    this.#nodes.set(node.id, node);
    return { ok: true, changed: true, version: this.#changed(), node };
  }

  #setNodeState(id: NodeId, state: NodeState): NodeResult {
    const old = typeof id === 'string' ? this.#nodes.get(id) : undefined;
    if (old === undefined) return refuse('UnknownNode', `no node ${String(id)}`);
    if (state === old.state) return { ok: true, changed: false, version: this.#version, node: old };
    if (!Object.hasOwn(TRANSITIONS, state) || !TRANSITIONS[old.state].includes(state))
      return refuse('IllegalTransition', `node ${id} cannot go from ${old.state} to ${String(state)}`);
    const node = nodeRecord(old, state, old.joinedAt);
    this.#nodes.set(id, node);
    return { ok: true, changed: true, version: this.#changed(), node };
  }

  #setReplicas(g: GroupReplicas): MetaResult {
    const p = replicasProblem(g, (id) => this.#nodes.has(id));
    if (p !== null) return refuse(p.unknown ? 'UnknownNode' : 'InvalidReplicas', p.detail);
    const old = this.#groups.get(g.group);
    // A report no newer than the recorded one is late (or a repeat): it must not roll back.
    if (old !== undefined && g.confIndex <= old.confIndex) return { ok: true, changed: false, version: this.#version };
    if (old !== undefined) this.#dropGroup(old);
    this.#putGroup(g);
    return { ok: true, changed: true, version: this.#changed() };
  }

  #removeGroup(group: number): MetaResult {
    if (!isGroup(group)) return refuse('InvalidReplicas', `bad group ${String(group)}`);
    const old = this.#groups.get(group);
    if (old === undefined) return { ok: true, changed: false, version: this.#version };
    this.#dropGroup(old);
    return { ok: true, changed: true, version: this.#changed() };
  }

  #putGroup(g: GroupReplicas): void {
    const entry: GroupReplicas = Object.freeze({
      group: g.group,
      voters: sortedIds(g.voters),
      learners: sortedIds(g.learners),
      confIndex: g.confIndex,
    });
    this.#groups.set(g.group, entry);
    for (const id of entry.voters) this.#index(id, g.group);
    for (const id of entry.learners) this.#index(id, g.group);
  }

  #index(id: NodeId, group: number): void {
    const s = this.#byNode.get(id);
    if (s === undefined) this.#byNode.set(id, new Set([group]));
    else s.add(group);
  }

  #dropGroup(g: GroupReplicas): void {
    this.#groups.delete(g.group);
    for (const id of g.voters) this.#unindex(id, g.group);
    for (const id of g.learners) this.#unindex(id, g.group);
  }

  #unindex(id: NodeId, group: number): void {
    const s = this.#byNode.get(id);
    s?.delete(group);
    if (s?.size === 0) this.#byNode.delete(id);
  }
}

/** What is wrong with a directory entry (`unknown`: it names a node `known` does not know). */
function replicasProblem(
  g: GroupReplicas,
  known: (id: NodeId) => boolean,
): { unknown: boolean; detail: string } | null {
  const bad = (detail: string) => ({ unknown: false, detail });
  if (!isGroup(g.group)) return bad(`bad group ${String(g.group)}`);
  if (!isIndex(g.confIndex)) return bad(`bad configuration index for group ${g.group}`);
  if (!Array.isArray(g.voters) || !Array.isArray(g.learners))
    return bad(`group ${g.group}: voters and learners must be lists`);
  if (g.voters.length === 0) return bad(`group ${g.group} has no voter`);
  const all = g.learners.length === 0 ? g.voters : [...g.voters, ...g.learners];
  const seen = all.length > 8 ? new Set<NodeId>() : null;
  for (let i = 0; i < all.length; i++) {
    const id = all[i];
    // Removed nodes are known: a late report may still name one, and it is still a valid hint.
    // A known id has passed nodeIdProblem when its node was admitted.
    if (!known(id)) {
      const p = nodeIdProblem(id);
      return p !== null
        ? bad(`group ${g.group}: ${p}`)
        : { unknown: true, detail: `group ${g.group} names unknown node ${id}` };
    }
    if (seen === null ? all.indexOf(id) < i : seen.has(id)) return bad(`group ${g.group} lists node ${id} twice`);
    seen?.add(id);
  }
  return null;
}

const NODE_STATES: ReadonlySet<unknown> = new Set<NodeState>(['active', 'decommissioning', 'removed']);

/** What breaks a snapshot's invariants (the ones apply() keeps), or null. */
export function snapshotProblem(s: MetaSnapshot): string | null {
  if (typeof s !== 'object' || s === null) return 'not an object';
  if (!isIndex(s.version)) return 'bad version';
  if (!Array.isArray(s.nodes) || !Array.isArray(s.groups)) return 'nodes and groups must be lists';
  if (s.clusterId === '')
    return s.version === 0 && s.nodes.length === 0 && s.groups.length === 0 ? null : 'state without a cluster id';
  const cp = clusterIdProblem(s.clusterId);
  if (cp !== null) return cp;
  if (s.version === 0 || s.nodes.length === 0) return 'a bootstrapped state has a version and nodes';
  const liveAddrs = new Set<string>();
  let prev: NodeId | null = null;
  for (const n of s.nodes) {
    const p = specProblem(n);
    if (p !== null) return p;
    if (prev !== null && byId(prev, n.id) >= 0) return `nodes not in order of id at ${n.id}`;
    prev = n.id;
    if (!NODE_STATES.has(n.state)) return `node ${n.id}: bad state`;
    if (!isIndex(n.joinedAt)) return `node ${n.id}: bad joinedAt`;
    if (n.state !== 'removed') {
      if (liveAddrs.has(n.address)) return `address ${n.address} held by two nodes`;
      liveAddrs.add(n.address);
    }
  }
  const ids = new Set(s.nodes.map((n) => n.id));
  let prevGroup = -1;
  for (const g of s.groups) {
    if (typeof g !== 'object' || g === null) return 'a group must be an object';
    const p = replicasProblem(g, (id) => ids.has(id));
    if (p !== null) return p.detail;
    if (g.group <= prevGroup) return `groups not in ascending order at ${g.group}`;
    prevGroup = g.group;
  }
  return null;
}
