// Membership: which nodes hold a replica of each group, and the changes to that. Bootstrapped
// groups come from placement; groups created or removed at run time, and every membership change
// a replica reports, are kept in the data dir's groups.json so that a restarted node routes to the
// replicas as they are now, not as they were bootstrapped. Changes to one group's replicas go
// through its Raft log (learner, voter, removal); creating or removing a whole group involves
// every node, because each must be able to route to it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import type { Envelope } from '../transport/index.js';
import { RuntimeError } from './errors.js';
import { notice, type RequestKind, type Requests } from './peerprotocol.js';
import { placement } from './placement.js';
import { replaceFile } from './replacefile.js';
import { notAMember } from '../raft/index.js';
import { isObject } from '../guards.js';
import type { GroupCall, GroupConf, MemberChange } from './protocol.js';

/** How long a configuration change may wait to be written to groups.json (see saveSoon). */
const SAVE_DELAY_MS = 1_000;
/** How often a group is read again because of leader hints (refreshHinted), at most. */
const HINT_REFRESH_MS = 1_000;
/** Groups whose last such read is remembered; beyond, the memory starts again. */
const MAX_HINTED = 4_096;

/** Dynamic groups (created or removed at run time), persisted beside the shards. */
interface GroupsFile {
  created: Record<string, NodeId[]>;
  removed: number[];
  /** The log index of the configuration each entry of `created` came from (absent: not known). */
  confIndex?: Record<string, number>;
}

/** What membership needs of its node. */
export interface MembershipHost {
  readonly id: NodeId;
  /** Every other node. */
  readonly peers: readonly NodeId[];
  readonly dataDir: string;
  /** How long a group creation or removal waits for each peer. */
  readonly timeoutMs: number;
  readonly log: Logger;
  isConnected(peer: NodeId): boolean;
  send(peer: NodeId, e: Envelope): void;
  /** A request to the shard that hosts `group`. */
  readonly shard: GroupCall;
  /** Request `kind` of node `target`; resolves with its answer, as the peer sent it. */
  forward<K extends RequestKind>(target: NodeId, kind: K, payload: Requests[K], timeoutMs: number): Promise<unknown>;
  /** Run `attempt` against the group's leader (retried as a proposal is) until it succeeds or the deadline. */
  withRetries(
    group: number,
    timeoutMs: number,
    attempt: (target: NodeId, ms: number) => Promise<unknown>,
    signal: AbortSignal | undefined,
  ): Promise<unknown>;
  /** The group is gone: its leader as last heard is no longer one. */
  forgetLeader(group: number): void;
  /** How long a configuration change may wait to be written (default SAVE_DELAY_MS; tests). */
  readonly saveDelayMs?: number;
}

export class Membership {
  private readonly members: Map<number, NodeId[]>;
  /** The learners among each group's replicas, as last reported (in memory: a learner is a move
   *  in flight, and a restarted node hears every local group's configuration again). */
  private readonly learners = new Map<number, NodeId[]>();
  private changes = 0;
  private readonly file: GroupsFile;
  /** When each group was last read again because a replica named a leader the map lacks. */
  private readonly hinted = new Map<number, number>();
  /** A write of groups.json is due (configuration changes not written yet: saveSoon). */
  private pending: NodeJS.Timeout | null = null;

  /** `bootstrap`: the placement of the groups the cluster started with. */
  constructor(
    private readonly host: MembershipHost,
    bootstrap: Map<number, NodeId[]>,
  ) {
    const path = join(host.dataDir, 'groups.json');
    this.file = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : { created: {}, removed: [] };
    this.members = bootstrap;
    for (const [g, m] of Object.entries(this.file.created)) this.members.set(Number(g), m);
    for (const g of this.file.removed) this.members.delete(g);
  }

  /** The nodes holding a replica of `group`. */
  replicasOf(group: number): NodeId[] {
    const m = this.members.get(group);
    if (!m) throw new RuntimeError('InvalidArgument', `unknown group ${group}`);
    return m;
  }

  has(group: number): boolean {
    return this.members.has(group);
  }

  /** Every group of the cluster, as this node knows it, with its replicas. */
  entries(): IterableIterator<[number, NodeId[]]> {
    return this.members.entries();
  }

  groupIds(): number[] {
    return [...this.members.keys()];
  }

  /** The learners of `group` as last reported (none known: []). */
  learnersOf(group: number): readonly NodeId[] {
    return this.learners.get(group) ?? [];
  }

  /** Create the metadata group (group 0) on `replicas`, on every node; a no-op where it exists
   *  (two nodes may race to create it, with the same replicas: the first node ids in order). */
  async createMetaGroup(replicas: readonly NodeId[]): Promise<void> {
    if (this.members.has(0)) return;
    const m = [...replicas].sort();
    await this.everywhere('gcreate', { group: 0, replicas: m }, () => this.applyCreate(0, m));
  }

  /** Group 0 exists and this node missed its creation (a `gcreate` lost with a link that looked
   *  up: creation needs every node, but only tries once). Route to it, and host an empty replica
   *  if this node is one of its members: never having had the group, it acknowledged nothing in
   *  it, so starting empty is what the creation would have left; its leader catches it up, and
   *  with no voters of its own it cannot campaign before a configuration arrives. */
  async learnMetaGroup(replicas: readonly NodeId[]): Promise<boolean> {
    if (this.members.has(0) || this.file.removed.includes(0)) return false;
    const m = [...replicas].sort();
    this.members.set(0, m);
    this.file.created['0'] = m;
    this.save();
    if (m.includes(this.host.id)) await this.host.shard(0, 'create', { group: 0, voters: [] });
    return true;
  }

  /** Take every group's replicas from another node (a joined node learns where groups are before
   *  it holds any): stale entries cost a redirect, never a wrong answer. Groups this node hosts
   *  are left as its own replicas report them. */
  adoptDirectory(entries: readonly (readonly [number, readonly NodeId[]])[]): void {
    for (const [g, replicas] of entries) {
      if (this.members.get(g)?.includes(this.host.id)) continue;
      this.members.set(g, [...replicas]);
      this.file.created[String(g)] = [...replicas];
    }
    this.save();
  }

  /** FlotillaNode.addLearner: the replica exists (empty) before the leader starts sending to it. */
  async addLearner(group: number, nodeId: NodeId, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const replicas = this.replicasOf(group);
    if (!this.isNode(nodeId)) throw new RuntimeError('InvalidArgument', `${nodeId} is not a node of the cluster`);
    if (replicas.includes(nodeId))
      throw new RuntimeError('InvalidArgument', `${nodeId} already holds a replica of group ${group}`);
    if (nodeId === this.host.id) await this.host.shard(group, 'create', { group, voters: [] });
    else await this.host.forward(nodeId, 'gjoin', { group }, timeoutMs);
    await this.change(group, 'addLearner', nodeId, timeoutMs, signal);
  }

  /** FlotillaNode.promote: only a node that already holds a replica (a learner added first) may
   *  become a voter; a node without one would count towards the quorum while it has no log. */
  async promote(group: number, nodeId: NodeId, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (!this.replicasOf(group).includes(nodeId))
      throw new RuntimeError(
        'InvalidArgument',
        `${nodeId} holds no replica of group ${group}: add it as a learner first`,
      );
    await this.change(group, 'addVoter', nodeId, timeoutMs, signal);
  }

  /** FlotillaNode.removeMember: the copy is deleted only once the group no longer counts it. */
  async removeMember(group: number, nodeId: NodeId, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (!this.replicasOf(group).includes(nodeId))
      throw new RuntimeError('InvalidArgument', `${nodeId} holds no replica of group ${group}`);
    try {
      await this.change(group, 'remove', nodeId, timeoutMs, signal);
    } catch (e) {
      // The group's leader says it is not a member: this node's map was behind (the removal it
      // asks for is done already). Take the leader's word, and drop the copy below as usual.
      if (!(e instanceof RuntimeError && e.code === 'InvalidArgument' && e.message.endsWith(notAMember(nodeId))))
        throw e;
      const left = this.replicasOf(group).filter((r) => r !== nodeId);
      this.members.set(group, left);
      this.file.created[String(group)] = left;
      this.save();
    }
    if (nodeId === this.host.id) await this.host.shard(group, 'remove', { group }).catch(() => undefined);
    else await this.host.forward(nodeId, 'gdrop', { group }, timeoutMs).catch(() => undefined); // best effort: it is no longer a member
  }

  async createGroup(group: number, replicas?: NodeId[]): Promise<number> {
    if (!Number.isInteger(group) || group < 1 || group > 0xffffffff)
      throw new RuntimeError('InvalidArgument', 'group: must be a positive integer');
    if (this.members.has(group)) throw new RuntimeError('InvalidArgument', `group ${group} exists`);
    const nodes = [this.host.id, ...this.host.peers];
    const m = [...(replicas ?? placement(nodes, group, Math.min(3, nodes.length)).get(group)!)].sort();
    if (m.length === 0 || m.some((r) => !nodes.includes(r)) || new Set(m).size !== m.length) {
      throw new RuntimeError('InvalidArgument', `replicas: must be distinct nodes of the cluster`);
    }
    await this.everywhere('gcreate', { group, replicas: m }, () => this.applyCreate(group, m));
    return group;
  }

  async removeGroup(group: number): Promise<void> {
    this.replicasOf(group);
    await this.everywhere('gremove', { group }, () => this.applyRemove(group));
  }

  /** A group was created (here or by a peer): route to it, and host a replica if this node is one. */
  async applyCreate(group: number, replicas: NodeId[]): Promise<void> {
    this.members.set(group, replicas);
    // A new group's log starts again: configurations of an earlier group of that id do not count.
    if (this.file.confIndex) delete this.file.confIndex[String(group)];
    this.file.created[String(group)] = replicas;
    this.file.removed = this.file.removed.filter((g) => g !== group);
    this.save();
    if (replicas.includes(this.host.id)) await this.host.shard(group, 'create', { group, voters: replicas });
  }

  /** A group was removed (here or by a peer): forget it, and delete the local replica if any. */
  async applyRemove(group: number): Promise<void> {
    const wasLocal = this.members.get(group)?.includes(this.host.id) ?? false;
    this.members.delete(group);
    this.learners.delete(group);
    this.host.forgetLeader(group);
    delete this.file.created[String(group)];
    if (this.file.confIndex) delete this.file.confIndex[String(group)];
    if (!this.file.removed.includes(group)) this.file.removed.push(group);
    this.save();
    if (wasLocal) await this.host.shard(group, 'remove', { group });
  }

  /** Membership of `group` changed (reported by a local replica, or by a peer): route to the new
   *  replicas and remember them across restarts. `index` is the configuration's log index:
   *  notices from different nodes arrive in any order, and an older configuration arriving late
   *  must not replace a newer one (it left a moved replica in the map for good). 0: not known
   *  (a peer of an older version), taken as before. */
  onConf(group: number, voters: NodeId[], learners: NodeId[], local: boolean, index = 0): void {
    if (!this.members.has(group) && !local) return;
    const replicas = [...new Set([...voters, ...learners])].sort();
    if (replicas.length === 0) return; // a joining replica before it has heard from the leader
    const known = this.file.confIndex?.[String(group)] ?? 0;
    if (index > 0 && index < known) return;
    if (index > known) {
      const indexes = this.file.confIndex ?? {};
      indexes[String(group)] = index;
      this.file.confIndex = indexes;
    }
    const before = this.learners.get(group)?.join(',') ?? '';
    if (learners.length > 0) this.learners.set(group, [...learners].sort());
    else this.learners.delete(group);
    if ((this.learners.get(group)?.join(',') ?? '') !== before) this.changes++;
    const prev = this.members.get(group);
    if (prev && prev.length === replicas.length && prev.every((r, i) => r === replicas[i])) {
      if (index > known) this.saveSoon();
      return;
    }
    this.members.set(group, replicas);
    this.file.created[String(group)] = replicas;
    this.saveSoon();
    this.host.log.info({ group, voters, learners, index }, 'membership changed');
    if (local) for (const p of this.host.peers) this.host.send(p, notice('gconf', { group, voters, learners, index }));
  }

  /** Ask every reachable node (this one too) for its replica's configuration of `group`, and
   *  take the newest. A node that holds no replica of a group hears of its changes only through
   *  `gconf` notices, which are one-way: one lost leaves the map behind until the group changes
   *  again, and the replica mover, planning from this map, would retry a move that cannot be
   *  made. It calls this when a move fails: one request per node, only then. Resolves with
   *  whether the map changed. */
  async refresh(group: number, timeoutMs: number): Promise<boolean> {
    if (!this.members.has(group)) return false;
    const asks = [
      this.host.shard(group, 'conf', { group }),
      ...this.host.peers
        .filter((p) => this.host.isConnected(p))
        .map((p) => this.host.forward(p, 'conf', { group }, timeoutMs)),
    ];
    let best: GroupConf | undefined;
    for (const r of await Promise.allSettled(asks))
      if (r.status === 'fulfilled' && isGroupConf(r.value) && (best === undefined || r.value.index > best.index))
        best = r.value;
    if (best === undefined || !this.members.has(group)) return false;
    const before = this.members.get(group)?.join(',');
    this.onConf(group, [...best.voters], [...best.learners], false, best.index);
    return this.members.get(group)?.join(',') !== before;
  }

  /** A replica of `group` named as its leader a node the map does not have among the group's
   *  replicas: the map missed a change (a lost notice). Requests follow a leader hint only to a
   *  replica in the map, so until the map is right a request would go round the replicas it
   *  lists until its deadline. Reads the group again in the background, at most once per
   *  HINT_REFRESH_MS per group; the next attempt routes by the new map. */
  refreshHinted(group: number, timeoutMs: number, nowMs = Date.now()): boolean {
    if (!this.members.has(group) || nowMs - (this.hinted.get(group) ?? -Infinity) < HINT_REFRESH_MS) return false;
    if (this.hinted.size >= MAX_HINTED) this.hinted.clear();
    this.hinted.set(group, nowMs);
    this.refresh(group, timeoutMs).then(
      (changed) => changed && this.host.log.info({ group }, 'group map was behind a leader hint: read again'),
      (err: unknown) => this.host.log.debug({ group, err }, 'could not read the group configuration again'),
    );
    return true;
  }

  /** The groups that still have a replica on `node`, by `node`'s own word: each group it says it
   *  holds that this map does not put on it is read again (refresh) first. The replica mover asks
   *  before it marks a decommissioned node removed: had this map missed a replica added to the
   *  node (a lost notice), the node would be removed while a group still counted it a voter, and
   *  nothing would ever repair that group. [] when `node` cannot be asked (a dead node is
   *  removed on this map's word). */
  async stillOn(node: NodeId, timeoutMs: number): Promise<number[]> {
    if (node === this.host.id || !this.host.isConnected(node)) return [];
    const said = await this.host.forward(node, 'hosted', { group: 0 }, timeoutMs);
    if (!Array.isArray(said)) return [];
    const out: number[] = [];
    for (const g of said) {
      if (!Number.isInteger(g) || !this.members.has(g)) continue;
      if (!this.members.get(g)!.includes(node)) await this.refresh(g, timeoutMs);
      if (this.members.get(g)?.includes(node)) out.push(g);
    }
    return out;
  }

  private isNode(id: NodeId): boolean {
    return id === this.host.id || this.host.peers.includes(id);
  }

  /** Proposed through the group's leader, retried as a proposal is; an aborted `signal` stops
   *  the retries (a change already proposed may still apply). The leader's answer is the
   *  configuration with the change applied: the map takes it at once, without waiting for the
   *  notice (which may be lost, or arrive after the caller plans its next step). */
  private async change(
    group: number,
    change: MemberChange,
    nodeId: NodeId,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const r = await this.host.withRetries(
      group,
      timeoutMs,
      (target, ms) =>
        target === this.host.id
          ? this.host.shard(group, 'member', { group, change, node: nodeId, timeoutMs: ms })
          : this.host.forward(target, 'member', { group, change, node: nodeId, timeoutMs: ms }, ms + 250),
      signal,
    );
    if (isGroupConf(r)) this.onConf(group, [...r.voters], [...r.learners], false, r.index);
  }

  private async everywhere<K extends 'gcreate' | 'gremove'>(
    t: K,
    p: Requests[K],
    local: () => Promise<void>,
  ): Promise<void> {
    const peers = this.host.peers;
    const down = peers.filter((x) => !this.host.isConnected(x));
    if (down.length)
      throw new RuntimeError('Unavailable', `${down.join(', ')} not connected; group changes need every node`);
    await Promise.all([local(), ...peers.map((x) => this.host.forward(x, t, p, this.host.timeoutMs))]);
  }

  /** Bumped whenever any group's replicas change here (the mover re-plans only then). */
  get version(): number {
    return this.changes;
  }

  /** Writes groups.json now, with any change still waiting. */
  private save(): void {
    this.changes++;
    this.write();
  }

  /** A configuration change is written within SAVE_DELAY_MS, with every other change by then.
   *  The file holds every group, and each move makes three configuration changes, each reported
   *  by every replica to every node: written at each one, with 1,000 groups, that was 11% of a
   *  core of the main thread while replicas moved. A kill in between loses what a lost notice
   *  loses (the map is a routing hint behind the groups' own logs; refresh repairs it), while
   *  group creation and removal, which the node acknowledges, are written at once (save). */
  private saveSoon(): void {
    this.changes++;
    if (this.pending !== null) return;
    this.pending = setTimeout(() => this.flush(), this.host.saveDelayMs ?? SAVE_DELAY_MS);
    this.pending.unref();
  }

  /** Writes any change still waiting (when due, and when the node stops). A failure (a full
   *  disk) is logged: the map in memory is right, and the next change writes it again. */
  flush(): void {
    if (this.pending === null) return;
    try {
      this.write();
    } catch (err) {
      this.host.log.warn({ err }, 'could not write groups.json');
    }
  }

  private write(): void {
    if (this.pending !== null) {
      clearTimeout(this.pending);
      this.pending = null;
    }
    replaceFile(join(this.host.dataDir, 'groups.json'), JSON.stringify(this.file));
  }
}

const isIds = (x: unknown): x is NodeId[] => Array.isArray(x) && x.every((i) => typeof i === 'string');

/** A configuration as a peer sent it (any shape: a peer of another version, or a bug). */
function isGroupConf(x: unknown): x is GroupConf {
  return (
    isObject(x) &&
    isIds(x.voters) &&
    isIds(x.learners) &&
    typeof x.index === 'number' &&
    Number.isInteger(x.index) &&
    x.index >= 0
  );
}
