// InlineShards: the node's shards on its own main thread (`workers: 0`). Same contract as
// ShardWorkers, without the thread: a request is a function call and Raft batches go from the
// shard to the transport (and back) without crossing a MessagePort. Why: when a node has one or
// two cores (or shares them with other node processes), a worker thread buys no parallelism but
// costs, per write, two port crossings each way and a copy of every Raft batch through the main
// thread (measured in docs/runtime.md, "Shards on the main thread or in workers").
//
// Every request runs ShardHost.request directly. The hot ones (propose, read) settle with the
// shard's own errors; the rest fail as they would through a worker, with a RuntimeError.
import type { Logger } from 'pino';
import { asRuntimeError, RuntimeError } from './errors.js';
import { IdleCollector, threadProbe } from './heap.js';
import { ShardHost } from './shardhost.js';
import type { CallKind, CallReply, CallRequest, FromWorker, ShardNotice, Shards } from './protocol.js';
import type { ShardWorkersOptions } from './workers.js';

export class InlineShards implements Shards {
  readonly stats = { restarts: 0 };
  private readonly hosts: (ShardHost | null)[];
  private stopping = false;
  /** The main thread runs the shards here: it collects its own heap once quiet after a burst. */
  private readonly collector: IdleCollector;

  constructor(private readonly opts: ShardWorkersOptions & { readonly log: Logger }) {
    this.hosts = Array.from({ length: opts.workers }, () => null);
    this.collector = new IdleCollector(threadProbe(), {}, opts.log);
  }

  get count(): number {
    return this.hosts.length;
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.hosts.length; i++) {
      const init = this.opts.init(i);
      const log = this.opts.log.child({ worker: i }); // as a worker thread's lines are bound
      const host = await ShardHost.open(init, (m) => this.onEvent(i, m), log);
      this.hosts[i] = host;
      host.start();
    }
    this.collector.start();
  }

  isUp(index: number): boolean {
    return this.hosts[index] !== null && !this.stopping;
  }

  private onEvent(index: number, m: FromWorker): void {
    switch (m.kind) {
      case 'out':
        this.opts.onOut(m.target, m.worker, m.batch);
        return;
      case 'snapOut':
        this.opts.onSnapshotFrame(m.target, m.worker, m.frame, m.bulk);
        return;
      case 'leader':
        this.opts.onLeader(m.group, m.leader, m.term, m.cause);
        return;
      case 'conf':
        this.opts.onConf?.(m.group, m.voters, m.learners, m.index);
        return;
      case 'brief':
        this.opts.onBrief?.(index, { leaders: m.leaders, commitP99Ms: m.commitP99Ms });
        return;
      case 'reply':
      case 'log':
        return; // requests are function calls and the shard logs with the node's logger here
      case 'started':
        this.opts.log.info({ worker: index, groups: m.groups }, 'shard up (inline)');
        this.opts.onStarted?.(index);
        return;
    }
  }

  call<K extends CallKind>(index: number, kind: K, request: CallRequest<K>): Promise<CallReply<K>> {
    const host = this.hosts[index];
    if (this.stopping) return Promise.reject(new RuntimeError('Stopped', 'node stopping'));
    if (host === null) return Promise.reject(new RuntimeError('Unavailable', `shard ${index} is not open`));
    if (kind === 'propose' || kind === 'read') return host.request(kind, request);
    return host.request(kind, request).catch((e: unknown) => {
      throw asRuntimeError(e);
    });
  }

  post(index: number, m: ShardNotice): void {
    const host = this.hosts[index];
    if (host !== null && !this.stopping) host.handle(m);
  }

  broadcast(m: ShardNotice): void {
    for (let i = 0; i < this.hosts.length; i++) this.post(i, m);
  }

  crash(index: number): Promise<void> {
    return Promise.reject(
      new RuntimeError(
        'InvalidArgument',
        `shard ${index} runs on the main thread (workers: 0): there is no worker thread to crash`,
      ),
    );
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.collector.stop();
    await Promise.all(this.hosts.map((h) => h?.shutdown()));
  }
}
