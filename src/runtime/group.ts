// The records a shard keeps per Raft group (Group), the callers waiting on it (Waiter, read
// batches) and the deadlines of those callers (Deadlines), swept by the shard's tick timer rather
// than a timer per request: tens of thousands of requests per second are in flight under load.
// Also what the shard's helpers (reads, hand-overs) may reach of it (ShardAccess), so that they
// keep their own state and touch the loop's only through a few calls.
import type { RaftNode } from '../raft/node.js';
import { NONE, type NodeId } from '../raft/types.js';
import type { GroupStorage } from '../storage/logstore.js';
import { RuntimeError } from './errors.js';

/** A group this node leads, as the leader balancer sees it. */
export interface LedGroup {
  readonly group: number;
  /** Work served as leader (cumulative). */
  readonly served: { writes: number; bytes: number; reads: number };
  /** Entries each peer lacks. */
  readonly lag: Record<NodeId, number>;
  /** Non-voting members (never a leadership target). */
  readonly learners?: NodeId[];
}

/** Something a caller waits for, with a deadline swept by the shard's tick timer (no timer per
 *  request: tens of thousands per second under load). */
export interface Deadline {
  readonly deadline: number;
  settled: boolean;
  /** The deadline passed unsettled: reject with Timeout. */
  expire(): void;
}

/** A caller waiting for the entry at a log index (a proposal or a membership change). One object
 *  per proposal, no closures of its own. */
export class Waiter implements Deadline {
  settled = false;
  constructor(
    readonly g: Group,
    readonly index: number,
    readonly term: number,
    /** When the proposal was accepted (performance.now()), for the commit latency histogram;
     *  0 = not timed. */
    readonly startedAt: number,
    readonly deadline: number,
    private readonly res: (r: unknown) => void,
    private readonly rej: (e: Error) => void,
  ) {}

  resolve(r: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.res(r);
  }

  reject(e: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.rej(e);
  }

  expire(): void {
    if (this.g.waiters.get(this.index) === this) this.g.waiters.delete(this.index);
    this.reject(
      new RuntimeError(
        'Timeout',
        `entry at ${this.index} of group ${this.g.id} not applied before the deadline (outcome unknown)`,
      ),
    );
  }
}

export interface ReadWaiter {
  index: number;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
}

/** A transfer this shard's leader started, toward one target: its callers and the evidence
 *  kept for them (when it was asked for, how far behind the target was, when TimeoutNow left). */
export interface PendingTransfer {
  readonly callers: { resolve: (r: TransferDone) => void; reject: (e: Error) => void }[];
  /** performance.now() at the first request. */
  readonly at: number;
  /** The target's lag in entries at the first request. */
  readonly lag: number;
  /** performance.now() when TimeoutNow first left for the target (-1 before). */
  sentAt: number;
}

/** A group's replica on this shard. The three maps start as shared empty ones (a node may hold
 *  100,000 replicas, most of them never waited on): use own*() before adding to one. */
export interface Group {
  readonly id: number;
  readonly node: RaftNode;
  readonly storage: GroupStorage;
  /** Proposals waiting to be applied, by log index. */
  waiters: Map<number, Waiter>;
  /** Linearizable reads: by ctx until the ReadIndex arrives, then waiting for apply. */
  reads: Map<string, ReadWaiter>;
  applied: number;
  leader: NodeId;
  /** Transfers in progress, by target: settled by the core's transfer outcome. */
  transfers: Map<NodeId, PendingTransfer>;
  /** Work served as leader (cumulative): writes applied, their bytes, reads answered. */
  readonly served: { writes: number; bytes: number; reads: number };
  /** Reads that arrived since the last loop turn, not yet given to the core: [ReadIndex, lease]. */
  readonly readBatches: [ReadBatch | null, ReadBatch | null];
}

/** A map that is always empty: reading, deleting and clearing work, adding throws. */
class NoEntries<K, V> extends Map<K, V> {
  override set(): this {
    throw new Error('a shared empty map: the group must own one before adding to it');
  }
}

const NO_WAITERS: Map<number, Waiter> = new NoEntries();
const NO_READS: Map<string, ReadWaiter> = new NoEntries();
const NO_TRANSFERS: Map<NodeId, PendingTransfer> = new NoEntries();

export function newGroup(id: number, node: RaftNode, storage: GroupStorage, applied: number): Group {
  return {
    id,
    node,
    storage,
    waiters: NO_WAITERS,
    reads: NO_READS,
    applied,
    leader: NONE,
    transfers: NO_TRANSFERS,
    served: { writes: 0, bytes: 0, reads: 0 },
    readBatches: [null, null],
  };
}

export function ownWaiters(g: Group): Map<number, Waiter> {
  if (g.waiters === NO_WAITERS) g.waiters = new Map();
  return g.waiters;
}

export function ownReads(g: Group): Map<string, ReadWaiter> {
  if (g.reads === NO_READS) g.reads = new Map();
  return g.reads;
}

export function ownTransfers(g: Group): Map<NodeId, PendingTransfer> {
  if (g.transfers === NO_TRANSFERS) g.transfers = new Map();
  return g.transfers;
}

/** Linearizable reads of one group that arrived between two loop turns. They share one ReadIndex
 *  (one heartbeat round instead of one per read, as etcd's server coalesces reads): the index is
 *  taken when the batch is handed to the core, after every member arrived, so it is at least the
 *  commit index each of them saw. */
export interface ReadBatch {
  readonly g: Group;
  readonly lease: boolean;
  readonly waiters: Set<{ resolve: () => void; reject: (e: Error) => void }>;
}

/** A completed hand-over as the old leader saw it. */
export interface TransferDone {
  readonly group: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly ticks: number;
  /** The target's lag in entries when the transfer was requested. */
  readonly lag: number;
  /** Request to TimeoutNow sent: the target catching up. */
  readonly catchUpMs: number;
  /** TimeoutNow sent to this leader hearing the target lead. */
  readonly campaignMs: number;
  /** This leader's commit latency p99 (last minute) as it hands over, ms (null: no writes). */
  readonly commitP99Ms: number | null;
}

/** The deadlines of a shard's callers: fired (rejected with Timeout) by sweep(), up to one sweep
 *  interval late; settled ones are dropped at the next sweep. */
export class Deadlines {
  private xs: Deadline[] = [];

  add(d: Deadline): void {
    this.xs.push(d);
  }

  /** Deadlines not yet swept away (settled ones included until the next sweep). */
  get size(): number {
    return this.xs.length;
  }

  /** A promise that rejects with Timeout after `ms`; `register` files the caller wherever it
   *  waits and returns how to unfile it. */
  promise<T>(
    what: string,
    ms: number,
    register: (res: (v: T) => void, rej: (e: Error) => void) => () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const d: Deadline = {
        deadline: performance.now() + ms,
        settled: false,
        expire: () => {
          unregister();
          reject(new RuntimeError('Timeout', `${what} timed out after ${ms} ms`));
        },
      };
      this.xs.push(d);
      const unregister = register(
        (v) => {
          d.settled = true;
          resolve(v);
        },
        (e) => {
          d.settled = true;
          reject(e);
        },
      );
    });
  }

  /** Fire the deadlines that passed by `now`; drop the settled ones (in place). */
  sweep(now: number): void {
    const xs = this.xs;
    if (xs.length === 0) return;
    let j = 0;
    for (let i = 0; i < xs.length; i++) {
      const d = xs[i];
      if (d.settled) continue;
      if (d.deadline <= now) {
        d.expire();
        d.settled = true;
        continue;
      }
      xs[j++] = d;
    }
    xs.length = j;
  }
}

/** What a shard's helpers (shardreads.ts, shardtransfers.ts) may reach of the shard. */
export interface ShardAccess {
  readonly nodeId: NodeId;
  readonly groups: ReadonlyMap<number, Group>;
  /** The group, or throws InvalidArgument. */
  group(id: number): Group;
  /** Give `g` to the next turn (and wake the tick timer if it sleeps). */
  touch(g: Group): void;
  /** Run a loop turn soon. */
  schedule(): void;
  stopped(): boolean;
  /** Deadlines.promise with the shard's request timeout when `timeoutMs` is not given. */
  withDeadline<T>(
    what: string,
    timeoutMs: number | undefined,
    register: (res: (v: T) => void, rej: (e: Error) => void) => () => void,
  ): Promise<T>;
}
