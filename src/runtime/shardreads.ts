// Linearizable and lease reads of a shard's groups, up to handing them to the cores: the reads
// that arrive between two loop turns wait in one batch per group and kind, and each batch becomes
// ONE ReadIndex when the next turn starts. Apart from the loop because a read waits on a ReadIndex
// round, not on the turn's commit: the loop only calls issue() once per turn, and answers what the
// cores confirmed (completeBatch, where the group's reads already are).
import { RuntimeError } from './errors.js';
import { ownReads, type Group, type ReadBatch, type ShardAccess } from './group.js';

export class ShardReads {
  /** Read batches waiting for the next loop turn. */
  private queued: ReadBatch[] = [];
  /** Makes each ReadIndex context unique on this node. */
  private seq = 0;

  constructor(private readonly shard: ShardAccess) {}

  /** Batches wait for a turn. */
  waiting(): boolean {
    return this.queued.length > 0;
  }

  /** Linearizable read barrier: resolves once this node has applied everything committed before
   *  the call (ReadIndex, forwarded to the leader by the core when this node follows). */
  barrier(groupId: number, timeoutMs: number | undefined, lease: boolean): Promise<void> {
    if (this.shard.stopped()) return Promise.reject(new RuntimeError('Stopped', 'shard stopped'));
    let g: Group;
    try {
      g = this.shard.group(groupId);
    } catch (e) {
      return Promise.reject(e);
    }
    let batch = g.readBatches[lease ? 1 : 0];
    if (!batch) {
      batch = { g, lease, waiters: new Set() };
      g.readBatches[lease ? 1 : 0] = batch;
      this.queued.push(batch);
      this.shard.schedule();
    }
    const b = batch;
    return this.shard.withDeadline<void>(`read of group ${groupId}`, timeoutMs, (resolve, reject) => {
      const w = { resolve: () => resolve(), reject };
      b.waiters.add(w);
      return () => b.waiters.delete(w);
    });
  }

  /** Hand the reads that arrived since the last turn to the cores: one ReadIndex per batch. */
  issue(): void {
    const batches = this.queued;
    this.queued = [];
    for (const b of batches) {
      const g = b.g;
      if (g.readBatches[b.lease ? 1 : 0] === b) g.readBatches[b.lease ? 1 : 0] = null;
      if (b.waiters.size === 0 || this.shard.groups.get(g.id) !== g) continue;
      const ctx = `${this.shard.nodeId}:${++this.seq}`;
      const r = g.node.readIndex(ctx, b.lease);
      if (!r.ok) {
        const err = new RuntimeError('NotLeader', `no leader for group ${g.id}`, r.leader);
        for (const w of b.waiters) w.reject(err);
        continue;
      }
      const waiters = [...b.waiters];
      ownReads(g).set(ctx, {
        index: -1,
        resolve: () => {
          for (const w of waiters) w.resolve();
        },
        reject: (e) => {
          for (const w of waiters) w.reject(e);
        },
      });
      this.shard.touch(g);
    }
  }

  /** Confirm this node leads `groupId` and serves: a ReadIndex round (a quorum still follows it,
   *  and an entry of its term is committed). Resolves with its term. */
  async verifyLeader(groupId: number, timeoutMs?: number): Promise<{ term: number }> {
    const st = this.shard.group(groupId).node.status();
    if (st.role !== 'leader')
      throw new RuntimeError('NotLeader', `${this.shard.nodeId} does not lead group ${groupId}`, st.leader);
    await this.barrier(groupId, timeoutMs, false);
    const after = this.shard.group(groupId).node.status();
    if (after.role !== 'leader')
      throw new RuntimeError('NotLeader', `${this.shard.nodeId} lost group ${groupId}`, after.leader);
    return { term: after.term };
  }
}

/** Reject every proposal and read of `g` waiting for an outcome (the group is gone or the shard
 *  stops); hand-overs are Handovers'. */
export function rejectRequests(g: Group, err: Error): void {
  for (const w of g.waiters.values()) w.reject(err);
  for (const r of g.reads.values()) r.reject(err);
  rejectBatches(g, err);
  g.waiters.clear();
  g.reads.clear();
}

/** Reject the reads of `g` not yet given to its core. */
function rejectBatches(g: Group, err: Error): void {
  for (let i = 0; i < 2; i++) {
    const b = g.readBatches[i];
    if (!b) continue;
    g.readBatches[i] = null;
    for (const w of b.waiters) w.reject(err);
    b.waiters.clear();
  }
}
