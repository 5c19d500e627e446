// InlineShards: the node's shards on its own main thread (`workers: 0`). Same contract as
// ShardWorkers, without the thread: a request is a function call and Raft batches go from the
// shard to the transport (and back) without crossing a MessagePort. Why: when a node has one or
// two cores (or shares them with other node processes), a worker thread buys no parallelism but
// costs, per write, two port crossings each way and a copy of every Raft batch through the main
// thread (measured in docs/runtime.md, "Shards on the main thread or in workers").
//
// The hot requests (propose, read) call the shard directly and settle with its own errors; the
// rest go through ShardHost.handle and its answers, as they would to a worker.
import type { Logger } from 'pino';
import { RuntimeError, TransferError } from './errors.js';
import { IdleCollector, threadProbe } from './heap.js';
import { ShardHost } from './shardhost.js';
import type { FromWorker, ShardRequest, Shards, ToWorker } from './protocol.js';
import type { ShardWorkersOptions } from './workers.js';

interface Call {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
}

export class InlineShards implements Shards {
  private readonly hosts: (ShardHost | null)[];
  private readonly calls = new Map<number, Call>();
  private seq = 0;
  private stopping = false;
  readonly stats = { restarts: 0 };
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
      const log = this.opts.log.child({ shard: i });
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
    switch (m.t) {
      case 'out':
        this.opts.onOut(m.to, m.w, m.b);
        return;
      case 'lead':
        this.opts.onLeader(m.g, m.l, m.term, m.c);
        return;
      case 'conf':
        this.opts.onConf?.(m.g, m.voters, m.learners);
        return;
      case 'brief':
        this.opts.onBrief?.(index, { leaders: m.leaders, commitP99Ms: m.p99 });
        return;
      case 're': {
        const c = this.calls.get(m.id);
        if (!c) return;
        this.calls.delete(m.id);
        if (m.ok) c.resolve(m.r);
        else c.reject(m.reason ? new TransferError(m.reason, m.msg, m.leader) : new RuntimeError(m.code, m.msg, m.leader));
        return;
      }
      case 'started':
        this.opts.log.info({ shard: index, groups: m.groups }, 'shard up (inline)');
        this.opts.onStarted?.(index);
        return;
    }
  }

  call(index: number, req: ShardRequest): Promise<unknown> {
    const host = this.hosts[index];
    if (this.stopping) return Promise.reject(new RuntimeError('Stopped', 'node stopping'));
    if (host === null) return Promise.reject(new RuntimeError('Unavailable', `shard ${index} is not open`));
    switch (req.t) {
      case 'propose':
        return host.shard.propose(req.g, req.d, req.to);
      case 'read':
        return host.shard.read(req.g, req.q, req.c, req.to);
      default: {
        const id = ++this.seq;
        return new Promise((resolve, reject) => {
          this.calls.set(id, { resolve, reject });
          host.handle({ ...req, id } as ToWorker);
        });
      }
    }
  }

  post(index: number, m: ToWorker): void {
    const host = this.hosts[index];
    if (host !== null && !this.stopping) host.handle(m);
  }

  broadcast(m: ToWorker): void {
    for (let i = 0; i < this.hosts.length; i++) this.post(i, m);
  }

  crash(index: number): Promise<void> {
    return Promise.reject(new RuntimeError('InvalidArgument', `shard ${index} runs on the main thread (workers: 0): there is no worker thread to crash`));
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.collector.stop();
    await Promise.all(this.hosts.map((h) => h?.shutdown()));
    const err = new RuntimeError('Stopped', 'node stopping');
    for (const c of this.calls.values()) c.reject(err);
    this.calls.clear();
  }
}
