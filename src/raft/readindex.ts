// ReadIndexQueue: linearizable reads waiting for a quorum to confirm leadership (Raft thesis §6.4).
// A read is recorded with the commit index at arrival; once a quorum answers the heartbeat round
// carrying its ctx, it and every read queued before it are released.
import type { NodeId } from './types.js';

export interface PendingRead {
  readonly ctx: string;
  readonly index: number;
  readonly from: NodeId;
  readonly acks: Set<NodeId>;
}

export class ReadIndexQueue {
  private queue: PendingRead[] = [];
  private byCtx = new Map<string, PendingRead>();

  get size(): number {
    return this.queue.length;
  }

  add(ctx: string, index: number, from: NodeId, self: NodeId): boolean {
    if (this.byCtx.has(ctx)) return false;
    const r: PendingRead = { ctx, index, from, acks: new Set([self]) };
    this.queue.push(r);
    this.byCtx.set(ctx, r);
    return true;
  }

  /** Record an ack; if `confirmed(acks)` then release this read and all earlier ones. */
  ack(ctx: string, from: NodeId, confirmed: (acks: ReadonlySet<NodeId>) => boolean): PendingRead[] {
    const r = this.byCtx.get(ctx);
    if (!r) return [];
    r.acks.add(from);
    if (!confirmed(r.acks)) return [];
    const at = this.queue.indexOf(r);
    const out = this.queue.splice(0, at + 1);
    for (const x of out) this.byCtx.delete(x.ctx);
    return out;
  }

  /** ctx of the newest pending read, or '' if none. */
  lastCtx(): string {
    return this.queue.length > 0 ? this.queue[this.queue.length - 1].ctx : '';
  }

  drain(): PendingRead[] {
    const out = this.queue;
    this.queue = [];
    this.byCtx.clear();
    return out;
  }
}
