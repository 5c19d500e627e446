// ShardHost: one shard as the node's main thread talks to it, independent of where it runs. It
// loads the user state machine module (if any), opens the shard's LMDB environment, recovers and
// bootstraps its groups, runs the Shard loop, and speaks the worker protocol (protocol.ts): it
// handles ToWorker requests and emits FromWorker events and answers. A piscina worker wraps it in
// a PackedPort (worker.ts); in inline mode the node's main thread calls it directly (inline.ts).
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Message, NodeId } from '../raft/types.js';
import { LogStore } from '../storage/logstore.js';
import { RaftBatchCodec, RaftBatchError } from '../transport/raftbatch.js';
import { RuntimeError, TransferError } from './errors.js';
import { Shard, type RaftTuning } from './shard.js';
import { UserStateMachineHost, type UserStateMachineModule } from './statemachine.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { workerOf } from './protocol.js';

export class ShardHost {
  readonly stats = { dropsNoRoute: 0, dropsInvalid: 0, batchesIn: 0, batchesOut: 0 };
  private readonly codec = new RaftBatchCodec();
  private readonly peerWorkers: Map<NodeId, number>;
  private stopped: (() => void) | null = null;
  /** Resolves once a 'stop' request finished (store closed, answer emitted). */
  readonly done: Promise<void>;

  private constructor(
    readonly init: WorkerInit,
    readonly shard: Shard,
    private readonly store: LogStore,
    private readonly emit: (m: FromWorker) => void,
    private readonly log: Logger,
  ) {
    this.peerWorkers = new Map(Object.entries(init.peerWorkers));
    this.done = new Promise<void>((r) => (this.stopped = r));
  }

  /** Open the shard: `emit` receives every event and answer, `log` its log lines. */
  static async open(init: WorkerInit, emit: (m: FromWorker) => void, log: Logger): Promise<ShardHost> {
    const userModule = init.stateMachine ? await loadStateMachine(init.stateMachine.module) : null;
    const store = await LogStore.open({
      path: init.dataDir, noSync: init.noSync,
      onEvent: (e) => log.info({ event: e }, 'storage event'),
    });
    let host: ShardHost | null = null;
    const shard = Shard.open({
      nodeId: init.nodeId, store, send: (to, msgs) => host!.send(to, msgs), tickMs: init.tickMs, raft: init.raft as RaftTuning,
      seed: init.seed, requestTimeoutMs: init.requestTimeoutMs, logger: log, campaignDelay: init.campaignDelay,
      stateMachine: userModule ? (s) => new UserStateMachineHost(s, userModule, init.stateMachine?.snapshotEvery) : undefined,
      onLeader: (g, l, term, cause) => emit({ t: 'lead', g, l, term, c: cause }),
      onConf: (g, c) => emit({ t: 'conf', g, voters: [...c.voters], learners: [...c.learners] }),
      onBrief: (b) => emit({ t: 'brief', leaders: b.leaders, p99: b.commitP99Ms }),
    });
    host = new ShardHost(init, shard, store, emit, log);
    for (const [g, voters] of init.groups) if (!shard.has(g)) shard.createGroup(g, { voters, learners: [] });
    return host;
  }

  start(): void {
    this.shard.start();
    this.emit({ t: 'started', threadId: -1, groups: this.shard.groupIds().length });
    this.log.info({ groups: this.shard.groupIds().length }, 'shard started');
  }

  /** One loop turn's messages for node `to`: one packed batch per destination shard. */
  private send(to: NodeId, msgs: Message[]): void {
    const w = this.peerWorkers.get(to);
    if (w === undefined) {
      this.stats.dropsNoRoute += msgs.length; // peer never seen: Raft retransmits once it is
      return;
    }
    if (w === 1) {
      this.stats.batchesOut++;
      this.emit({ t: 'out', to, w: 0, b: this.codec.encode(msgs) });
      return;
    }
    const split = new Map<number, Message[]>();
    for (const m of msgs) {
      const i = workerOf(m.group, w);
      let q = split.get(i);
      if (!q) split.set(i, (q = []));
      q.push(m);
    }
    for (const [i, q] of split) {
      this.stats.batchesOut++;
      this.emit({ t: 'out', to, w: i, b: this.codec.encode(q) });
    }
  }

  /** A packed batch of Raft messages from another node. */
  receive(b: Uint8Array): void {
    this.stats.batchesIn++;
    const r = this.codec.decode(b);
    if (r instanceof RaftBatchError) {
      this.stats.dropsInvalid++;
      this.log.warn({ err: r.message }, 'malformed message batch dropped');
      return;
    }
    if (r.dropped) {
      this.stats.dropsInvalid += Object.values(r.dropped).reduce((a, n) => a + (n ?? 0), 0);
      this.log.warn({ dropped: r.dropped }, 'invalid messages dropped');
    }
    if (r.messages.length) this.shard.receive(r.messages);
  }

  private reply(id: number, p: Promise<unknown>): void {
    p.then(
      (r) => this.emit({ t: 're', id, ok: true, r: r ?? null }),
      (e: unknown) => {
        const err = e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', e instanceof Error ? e.message : String(e));
        this.emit({ t: 're', id, ok: false, code: err.code, msg: err.message, leader: err.leader, reason: err instanceof TransferError ? err.reason : undefined });
      },
    );
  }

  /** Handle one request or notice from the node. Never throws: a failing request is answered
   *  with its error. */
  handle(m: ToWorker): void {
    try {
      this.dispatch(m);
    } catch (e) {
      this.log.error({ err: e }, 'worker request failed');
      if ('id' in m && typeof m.id === 'number') {
        this.emit({ t: 're', id: m.id, ok: false, code: 'InvalidArgument', msg: (e as Error).message, leader: '' });
      }
    }
  }

  private dispatch(m: ToWorker): void {
    const shard = this.shard;
    switch (m.t) {
      case 'raft':
        this.receive(m.b);
        return;
      case 'propose':
        this.reply(m.id, shard.propose(m.g, m.d, m.to));
        return;
      case 'read':
        this.reply(m.id, guard(() => shard.read(m.g, m.q, m.c, m.to)));
        return;
      case 'peers':
        for (const [p, w] of Object.entries(m.w)) this.peerWorkers.set(p, w);
        return;
      case 'up':
        shard.peerUp(m.p);
        return;
      case 'campaignDelay':
        shard.setCampaignDelay(m.ticks);
        return;
      case 'down':
        shard.peerDown(m.p);
        return;
      case 'diskDelay':
        this.store.setWriteDelay(m.ms, m.jitterMs);
        return;
      case 'status':
        this.reply(m.id, guard(() => this.status(m.detail)));
        return;
      case 'xfer':
        this.reply(m.id, shard.transfer(m.g, m.target, { timeoutMs: m.to, maxLagEntries: m.lag, draining: new Set(m.draining), force: m.force, reach: m.reach }));
        return;
      case 'led':
        this.reply(m.id, guard(() => shard.led()));
        return;
      case 'member':
        this.reply(m.id, shard.changeMembership(m.g, { type: m.type, node: m.node }, m.to));
        return;
      case 'verify':
        this.reply(m.id, guard(() => shard.verifyLeader(m.g, m.to)));
        return;
      case 'awaitLead':
        this.reply(m.id, shard.awaitLeadership(m.g, m.to));
        return;
      case 'create':
        this.reply(m.id, guard(() => {
          if (!shard.has(m.g)) shard.createGroup(m.g, { voters: m.voters, learners: m.learners ?? [] });
          return null;
        }));
        return;
      case 'remove':
        this.reply(m.id, guard(() => {
          if (shard.has(m.g)) shard.removeGroup(m.g);
          return null;
        }));
        return;
      case 'stop':
        void (async () => {
          await this.shutdown();
          this.emit({ t: 're', id: m.id, ok: true, r: null });
          this.stopped?.();
        })();
        return;
    }
  }

  /** Stop the loop and close the store (pending requests settle with Stopped). */
  async shutdown(): Promise<void> {
    await this.shard.stop();
    await this.store.close();
  }

  status(detail: boolean) {
    const shard = this.shard;
    const h = shard.histograms;
    const base = {
      ...shard.summary(), loop: shard.stats, store: this.store.stats, routing: this.stats, commitP99Ms: shard.commitP99Ms(),
      histograms: { fsync: h.fsync.snapshot(), commit: h.commit.snapshot(), apply: h.apply.snapshot() },
    };
    if (!detail) return base;
    return { ...base, perGroup: shard.groupIds().map((g) => shard.groupView(g)) };
  }
}

function guard<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Load a user state machine module by path or package name (inside the shard's thread). */
async function loadStateMachine(spec: string): Promise<UserStateMachineModule> {
  const url = spec.startsWith('file:') || !(isAbsolute(spec) || spec.startsWith('.')) ? spec : pathToFileURL(resolve(spec)).href;
  let mod: Partial<UserStateMachineModule> & { default?: Partial<UserStateMachineModule> };
  try {
    mod = await import(url);
  } catch (e) {
    // Under a CommonJS-only TypeScript hook (tsx in worker threads during development) the ESM
    // loader refuses .ts files while require() handles them.
    if ((e as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e;
    mod = createRequire(pathToFileURL(resolve('package.json')).href)(url.startsWith('file:') ? fileURLToPath(url) : url);
  }
  const create = mod.createStateMachine ?? mod.default?.createStateMachine;
  if (typeof create !== 'function') throw new Error(`state machine module ${spec} does not export createStateMachine(group)`);
  return { createStateMachine: create };
}
