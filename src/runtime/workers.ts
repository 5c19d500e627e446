// ShardWorkers: the main thread's side of a node's worker threads. Owns the piscina pool (W
// long-lived threads, one never-ending host task each), one PackedPort per shard, request/answer
// correlation, and supervision: when a worker dies, piscina replaces the thread but does not
// resubmit the task, so this restarts that shard from its LMDB environment (with backoff), while
// its requests fail fast with Unavailable (retryable) instead of hanging. The workers' log lines
// arrive on the same ports and are written with the node's logger (workerlog.ts).
import { MessageChannel } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import { PackedPort } from './channel.js';
import { errorFromWire, RuntimeError } from './errors.js';
import { shardWorkerLimits } from './heap.js';
import type {
  CallAnswer,
  CallKind,
  CallMessage,
  CallReply,
  CallRequest,
  FromWorker,
  LeaderChangeKind,
  ShardBrief,
  ShardNotice,
  Shards,
  ToWorker,
  WorkerInit,
} from './protocol.js';
import { replayWorkerLog } from './workerlog.js';

/** Requests sent to a worker and not answered yet, by id. */
class PendingCalls {
  private readonly calls = new Map<
    number,
    { readonly resolve: (v: unknown) => void; readonly reject: (e: Error) => void }
  >();
  private seq = 0;

  /** Send request `kind` through `port`; resolves with its answer (see settle). */
  call<K extends CallKind>(
    kind: K,
    request: CallRequest<K>,
    port: { post(m: CallMessage): void },
  ): Promise<CallReply<K>> {
    const id = ++this.seq;
    // The kind's own member of the union (TypeScript does not relate a generic object to it).
    const m = { kind, id, request } as CallMessage;
    return new Promise<CallReply<K>>((resolve, reject) => {
      // The answer carrying this id is the reply to this request: ShardHost answers each kind
      // with what its handler, typed by ShardCalls, resolved with.
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      port.post(m);
    });
  }

  /** An answer arrived: settle its call (if still waiting). */
  settle(a: CallAnswer): void {
    const c = this.calls.get(a.id);
    if (!c) return;
    this.calls.delete(a.id);
    if (a.ok) c.resolve(a.result);
    else c.reject(errorFromWire(a));
  }

  /** Fail every waiting call with `err`. */
  rejectAll(err: Error): void {
    for (const c of this.calls.values()) c.reject(err);
    this.calls.clear();
  }
}

interface Slot {
  readonly index: number;
  port: PackedPort<ToWorker, FromWorker> | null;
  threadId: number;
  up: boolean;
  readonly calls: PendingCalls;
  restarts: number;
  startedAt: number;
  readyWaiters: (() => void)[];
  /** The node's logger for this worker's lines (bound to its index). */
  readonly log: Logger;
}

export interface ShardWorkersOptions {
  readonly workers: number;
  /** Start-up parameters of shard `i` (called at each (re)start, so they can be current). */
  readonly init: (index: number) => WorkerInit;
  readonly log: Logger;
  /** Raft bytes a shard wants sent to worker `worker` of node `target`. */
  readonly onOut: (target: NodeId, worker: number, batch: Uint8Array) => void;
  /** A snapshot stream frame a shard wants sent to worker `worker` of node `target`. */
  readonly onSnapshotFrame: (target: NodeId, worker: number, frame: Uint8Array, bulk: boolean) => void;
  readonly onLeader: (group: number, leader: NodeId, term: number, cause: LeaderChangeKind) => void;
  readonly onConf?: (group: number, voters: NodeId[], learners: NodeId[], index: number) => void;
  /** A shard's brief changed (it pushes one on start, then as it changes). */
  readonly onBrief?: (index: number, brief: ShardBrief) => void;
  /** A shard (re)started; the node re-sends what the new worker must know. */
  readonly onStarted?: (index: number) => void;
  /** A worker died and its shard restarts in `restartInMs`. */
  readonly onRestart?: (index: number, reason: string, restartInMs: number) => void;
}

const here = fileURLToPath(import.meta.url);
const WORKER_FILE = here.replace(/workers\.(ts|js)$/, 'worker.$1');
const MAX_BACKOFF_MS = 5_000;

export class ShardWorkers implements Shards {
  private readonly pool: Piscina;
  private readonly slots: Slot[] = [];
  private stopping = false;
  readonly stats = { restarts: 0 };

  constructor(private readonly opts: ShardWorkersOptions) {
    this.pool = new Piscina({
      filename: WORKER_FILE,
      minThreads: opts.workers,
      maxThreads: opts.workers,
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      // The default 'sync' parks an idle worker in Atomics.wait, which freezes its timers (the
      // shard's tick timer) and its MessagePort: a long-lived host task must not be parked.
      atomics: 'disabled',
      // A host task never ends while the node runs: piscina must never queue one behind another.
      maxQueue: opts.workers,
      resourceLimits: shardWorkerLimits(),
    });
    for (let i = 0; i < opts.workers; i++) {
      this.slots.push({
        index: i,
        port: null,
        threadId: -1,
        up: false,
        calls: new PendingCalls(),
        restarts: 0,
        startedAt: 0,
        readyWaiters: [],
        log: opts.log.child({ worker: i }),
      });
    }
  }

  get count(): number {
    return this.slots.length;
  }

  /** Start every shard; resolves when all are up (rejects if one fails to start). */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((s) => this.launch(s)));
  }

  isUp(index: number): boolean {
    return this.slots[index].up;
  }

  private launch(slot: Slot): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    const ready = new Promise<void>((resolve, reject) => {
      slot.readyWaiters = [resolve];
      slot.port = new PackedPort<ToWorker, FromWorker>(port1, (items) => this.onItems(slot, items));
      slot.startedAt = Date.now();
      const task = this.pool.run(
        { ...this.opts.init(slot.index), port: port2 },
        { transferList: [port2] },
      ) as Promise<string>;
      task.then(
        () => this.onExit(slot, null),
        (e: Error) => {
          if (!slot.up) reject(e);
          this.onExit(slot, e);
        },
      );
    });
    return ready;
  }

  private onItems(slot: Slot, items: FromWorker[]): void {
    for (const m of items) {
      switch (m.kind) {
        case 'out':
          this.opts.onOut(m.target, m.worker, m.batch);
          break;
        case 'snapOut':
          this.opts.onSnapshotFrame(m.target, m.worker, m.frame, m.bulk);
          break;
        case 'leader':
          this.opts.onLeader(m.group, m.leader, m.term, m.cause);
          break;
        case 'conf':
          this.opts.onConf?.(m.group, m.voters, m.learners, m.index);
          break;
        case 'brief':
          this.opts.onBrief?.(slot.index, { leaders: m.leaders, commitP99Ms: m.commitP99Ms });
          break;
        case 'reply':
          slot.calls.settle(m);
          break;
        case 'log':
          replayWorkerLog(slot.log, m);
          break;
        case 'started': {
          slot.up = true;
          slot.threadId = m.threadId;
          this.opts.log.info({ worker: slot.index, threadId: m.threadId, groups: m.groups }, 'worker up');
          this.opts.onStarted?.(slot.index);
          for (const w of slot.readyWaiters) w();
          slot.readyWaiters = [];
          break;
        }
      }
    }
  }

  private onExit(slot: Slot, err: Error | null): void {
    const wasUp = slot.up;
    slot.up = false;
    slot.port?.close();
    slot.port = null;
    const e = new RuntimeError(
      this.stopping ? 'Stopped' : 'Unavailable',
      `worker ${slot.index} ${err ? `died: ${err.message}` : 'stopped'}`,
    );
    slot.calls.rejectAll(e);
    if (this.stopping || err === null) return;
    this.stats.restarts++;
    // Backoff grows with restarts in quick succession; a worker that ran a while starts over.
    if (Date.now() - slot.startedAt > 30_000) slot.restarts = 0;
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** slot.restarts);
    slot.restarts++;
    this.opts.log.error(
      { worker: slot.index, err, wasUp, restartInMs: delay },
      'worker died; restarting its shard from disk',
    );
    this.opts.onRestart?.(slot.index, err.message, delay);
    setTimeout(() => {
      if (this.stopping) return;
      this.launch(slot).catch((e2: Error) =>
        this.opts.log.error({ worker: slot.index, err: e2 }, 'worker restart failed'),
      );
    }, delay).unref();
  }

  /** A request to shard `index`; rejects with Unavailable while that shard is down. */
  call<K extends CallKind>(index: number, kind: K, request: CallRequest<K>): Promise<CallReply<K>> {
    const slot = this.slots[index];
    if (this.stopping) return Promise.reject(new RuntimeError('Stopped', 'node stopping'));
    const port = slot.port;
    if (!slot.up || port === null)
      return Promise.reject(new RuntimeError('Unavailable', `worker ${index} is restarting`));
    return slot.calls.call(kind, request, port);
  }

  /** A message that needs no answer (dropped while the shard is down). */
  post(index: number, m: ShardNotice): void {
    const slot = this.slots[index];
    if (slot.up) slot.port?.post(m);
  }

  broadcast(m: ShardNotice): void {
    for (let i = 0; i < this.slots.length; i++) this.post(i, m);
  }

  /** Fault injection: terminate the thread hosting shard `index` as if it crashed. */
  async crash(index: number): Promise<void> {
    const slot = this.slots[index];
    const t = this.pool.threads.find((w) => w.threadId === slot.threadId);
    if (!t) throw new RuntimeError('InvalidArgument', `worker ${index} has no live thread`);
    await t.terminate();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    const live = this.slots.filter((s) => s.up);
    const stops = live.map((s) => this.call(s.index, 'stop', {}).catch(() => undefined));
    this.stopping = true;
    await Promise.race([Promise.all(stops), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await this.pool.destroy();
  }
}
