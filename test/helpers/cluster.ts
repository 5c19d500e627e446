// TestCluster: a synchronous in-memory network of RaftNodes for unit tests. Messages are queued and
// delivered only when a test says so, so tests can interleave ticks, drops and deliveries exactly.
// The host contract is followed faithfully (MemoryGroup.drain: messages, persist,
// messagesAfterPersist, apply, advance); this adds links that drop, and a record of everything
// applied, read, transferred and sent for assertions.
import {
  MemoryStorage,
  RaftNode,
  seededRandom,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type ReadState,
  type Ready,
  type Snapshot,
  type SoftState,
  type TransferOutcome,
} from '../../src/raft/index.js';
import { MemoryGroup } from '../../src/raft/memgroup.js';

export interface ClusterOptions extends Partial<Omit<RaftConfig, 'id' | 'group' | 'storage' | 'random' | 'applied'>> {
  learners?: NodeId[];
  seed?: number;
  group?: number;
}

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);

export class TestCluster extends MemoryGroup {
  /** Normal, non-empty entries applied by each node, in order. */
  readonly applied = new Map<NodeId, Entry[]>();
  readonly appliedIndex = new Map<NodeId, number>();
  readonly readStates = new Map<NodeId, ReadState[]>();
  readonly transfers = new Map<NodeId, TransferOutcome[]>();
  readonly softStates = new Map<NodeId, SoftState[]>();
  readonly snapshotsInstalled = new Map<NodeId, Snapshot[]>();
  /** Every message ever sent (for assertions). */
  sent: Message[] = [];
  /** Links that drop messages: "a->b". */
  private cut = new Set<string>();
  /** Extra drop rule; return true to drop. */
  dropIf: ((m: Message) => boolean) | null = null;
  readonly group: number;
  private readonly seed: number;

  constructor(
    ids: NodeId[],
    readonly opts: ClusterOptions = {},
  ) {
    super();
    this.group = opts.group ?? 1;
    this.seed = opts.seed ?? 1;
    const conf: ConfState = { voters: [...ids].sort(), learners: [...(opts.learners ?? [])].sort() };
    for (const id of [...ids, ...(opts.learners ?? [])]) this.add(id, new MemoryStorage(conf));
  }

  /** Add (or restart) a node over the given storage. */
  add(id: NodeId, storage: MemoryStorage, applied = 0): RaftNode {
    const { learners: _l, seed: _s, group: _g, ...cfg } = this.opts;
    const n = new RaftNode({
      electionTicks: 10,
      heartbeatTicks: 1,
      ...cfg,
      id,
      group: this.group,
      storage,
      applied,
      random: seededRandom(this.seed * 7919 + hash(id)),
    });
    this.nodes.set(id, n);
    this.storages.set(id, storage);
    for (const m of [this.applied, this.readStates, this.transfers, this.softStates, this.snapshotsInstalled]) {
      if (!m.has(id)) (m as Map<NodeId, unknown[]>).set(id, []);
    }
    this.appliedIndex.set(id, applied);
    // After a restart the state machine restarts from its snapshot: entries above it re-apply.
    this.applied.set(
      id,
      this.applied.get(id)!.filter((e) => e.index <= applied),
    );
    return n;
  }

  /** A node with empty storage and empty configuration (joins through the leader). */
  addEmpty(id: NodeId): RaftNode {
    return this.add(id, new MemoryStorage({ voters: [], learners: [] }));
  }

  /** Simulate a crash and restart: only persisted storage survives. */
  restart(id: NodeId): RaftNode {
    const st = this.storages.get(id)!;
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id);
    return this.add(id, st.clone(), st.snapshot().meta.index);
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }

  cutLink(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}->${b}`);
    this.cut.add(`${b}->${a}`);
  }

  heal(): void {
    this.cut.clear();
    this.dropIf = null;
  }

  /** Drain the Ready of one node (or all), following the host contract. */
  process(id?: NodeId): void {
    const ids = id ? [id] : [...this.nodes.keys()];
    for (const nid of ids) this.drain(nid, (rd) => this.record(nid, rd));
  }

  /** What the host would apply and report, kept for assertions. */
  private record(nid: NodeId, rd: Ready): void {
    if (rd.snapshot) {
      this.snapshotsInstalled.get(nid)!.push(rd.snapshot);
      this.appliedIndex.set(nid, rd.snapshot.meta.index);
    }
    for (const e of rd.committed) {
      if (e.type === 'normal' && e.data.byteLength > 0) this.applied.get(nid)!.push(e);
      this.appliedIndex.set(nid, e.index);
    }
    this.readStates.get(nid)!.push(...rd.readStates);
    this.transfers.get(nid)!.push(...rd.transfers);
    if (rd.softState) this.softStates.get(nid)!.push(rd.softState);
  }

  protected override enqueue(ms: readonly Message[]): void {
    for (const m of ms) {
      this.sent.push(m);
      this.queue.push(m);
    }
  }

  /** Deliver queued messages (optionally only those matching), dropping cut links. Returns the
   *  number delivered. Newly produced messages are queued, not delivered. */
  deliver(match?: (m: Message) => boolean): number {
    const now = this.queue;
    this.queue = [];
    let n = 0;
    for (const m of now) {
      if (match && !match(m)) {
        this.queue.push(m);
        continue;
      }
      if (this.cut.has(`${m.from}->${m.to}`) || this.dropIf?.(m)) continue;
      const to = this.nodes.get(m.to);
      if (!to) continue;
      to.step(m);
      n++;
    }
    return n;
  }

  /** Process and deliver until nothing moves (bounded). */
  stabilize(maxRounds = 1000): void {
    for (let i = 0; i < maxRounds; i++) {
      this.process();
      if (this.queue.length === 0) return;
      this.deliver();
    }
    throw new Error('cluster did not stabilize');
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.node(id).tick();
  }

  /** Tick every node n times, stabilizing after each tick. */
  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const node of this.nodes.values()) node.tick();
      this.stabilize();
    }
  }

  /** Make `id` campaign and settle. */
  elect(id: NodeId): void {
    this.node(id).campaign();
    this.stabilize();
  }

  leaderOf(id: NodeId): NodeId {
    return this.node(id).status().leader;
  }

  /** The unique leader, or null. */
  leader(): NodeId | null {
    const leaders = [...this.nodes.values()].filter((n) => n.status().role === 'leader');
    if (leaders.length !== 1) return null;
    return leaders[0].id;
  }

  propose(id: NodeId, data: string) {
    return this.node(id).propose(text(data));
  }

  appliedData(id: NodeId): string[] {
    return this.applied.get(id)!.map((e) => str(e.data));
  }

  /** Storage-level log (persisted) as [index, term] pairs. */
  persistedLog(id: NodeId): [number, number][] {
    const st = this.storages.get(id)!;
    const out: [number, number][] = [];
    for (let i = st.firstIndex(); i <= st.lastIndex(); i++) out.push([i, st.term(i)]);
    return out;
  }

  /** Take a snapshot of `id` at its applied index and compact its log. */
  compact(id: NodeId, data = 'snap'): void {
    const st = this.storages.get(id)!;
    const idx = this.appliedIndex.get(id)!;
    st.createSnapshot(idx, st.conf, text(data));
    st.compact(idx);
  }
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Record every Ready a node hands out (as long as this RaftNode instance lives). */
export function captureReadies(c: TestCluster, id: NodeId): Ready[] {
  const out: Ready[] = [];
  const n = c.node(id);
  const orig = n.ready.bind(n);
  n.ready = () => {
    const rd = orig();
    out.push(rd);
    return rd;
  };
  return out;
}

/** One tick of every node, then deliver until quiet over a network that also reorders and
 *  duplicates messages (drops are left to dropIf). */
export function chaosTick(c: TestCluster, rnd: () => number): void {
  for (const n of c.nodes.values()) n.tick();
  for (let round = 0; round < 200; round++) {
    c.process();
    if (c.queue.length === 0) return;
    const q = c.queue;
    for (let i = q.length - 1; i > 0; i--) {
      if (rnd() < 0.3) {
        const j = Math.floor(rnd() * (i + 1));
        [q[i], q[j]] = [q[j], q[i]];
      }
    }
    for (const m of q.slice()) if (rnd() < 0.05) q.push(m);
    c.deliver();
  }
}
