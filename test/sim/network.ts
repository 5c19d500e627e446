// The simulated network's fault state: which links are cut (partitions, one-way cuts) and the
// current loss / duplication / delay profile. Delivery itself is scheduled by the engine; links are
// checked both when a message is sent (a refused connection) and when it arrives (a partition that
// started while it was in flight swallows it).
import type { NodeId } from '../../src/raft/types.js';
import type { Rng } from './rng.js';

/** Simulated time units per tick: message delays are a fraction of a tick or a few ticks. */
export const TICK = 100;

export interface Conditions {
  readonly drop: number;
  readonly dup: number;
  /** Probability that a message is held for 1-5 ticks (reordering across rounds). */
  readonly longDelay: number;
}

export const CALM: Conditions = { drop: 0, dup: 0, longDelay: 0 };
/** Longest "slow" delay, in ticks; a quarter of slow messages are stale ones held up to
 *  STALE_DELAY_TICKS (an old packet surfacing after elections have moved on). */
export const MAX_DELAY_TICKS = 5;
export const STALE_DELAY_TICKS = 30;

export class Network {
  cond: Conditions = CALM;
  /** Partition side of each node; nodes on different sides cannot talk. Absent = side 0. */
  private side = new Map<NodeId, number>();
  /** One-way cuts "from>to". */
  private cuts = new Set<string>();

  linkUp(from: NodeId, to: NodeId): boolean {
    if ((this.side.get(from) ?? 0) !== (this.side.get(to) ?? 0)) return false;
    return this.cuts.size === 0 || !this.cuts.has(`${from}>${to}`);
  }

  get faulty(): boolean {
    return this.side.size > 0 || this.cuts.size > 0 || this.cond !== CALM;
  }

  /** Delay of one message in time units. */
  delay(rng: Rng): number {
    if (this.cond.longDelay > 0 && rng.chance(this.cond.longDelay)) {
      return rng.chance(0.25) ? rng.int(TICK, STALE_DELAY_TICKS * TICK) : rng.int(TICK, MAX_DELAY_TICKS * TICK);
    }
    return rng.int(2, 45);
  }

  isolate(id: NodeId): void {
    this.side.set(id, 1 + this.side.size);
  }

  split(a: readonly NodeId[]): void {
    this.side.clear();
    for (const id of a) this.side.set(id, 1);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}>${to}`);
  }

  heal(): void {
    this.side.clear();
    this.cuts.clear();
  }

  describe(): string {
    const parts: string[] = [];
    if (this.side.size > 0) parts.push(`sides{${[...this.side].map(([k, v]) => `${k}:${v}`).join(',')}}`);
    if (this.cuts.size > 0) parts.push(`cuts{${[...this.cuts].join(',')}}`);
    parts.push(`drop=${this.cond.drop} dup=${this.cond.dup} long=${this.cond.longDelay}`);
    return parts.join(' ');
  }
}
