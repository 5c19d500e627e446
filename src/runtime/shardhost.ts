// ShardHost: one shard as the node's main thread talks to it, independent of where it runs. It
// loads the user state machine module (if any), opens the shard's LMDB environment, recovers and
// bootstraps its groups, runs the Shard loop, and speaks the worker protocol (protocol.ts): it
// handles ToWorker requests and notices and emits FromWorker events and answers. A piscina worker
// wraps it in a PackedPort (worker.ts); in inline mode the node's main thread calls request()
// directly (inline.ts).
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Message, NodeId } from '../raft/types.js';
import { LogStore } from '../storage/logstore.js';
import { RaftBatchCodec, RaftBatchError } from '../transport/raftbatch.js';
import { errorToWire } from './errors.js';
import { Shard } from './shard.js';
import { UserStateMachineHost, type UserStateMachineModule } from './statemachine.js';
import type {
  CallKind,
  CallMessage,
  CallReply,
  CallRequest,
  FromWorker,
  ShardNotice,
  ToWorker,
  WorkerInit,
} from './protocol.js';
import { workerOf } from './protocol.js';
import type { ShardStatus } from './status.js';

export class ShardHost {
  readonly stats = { dropsNoRoute: 0, dropsInvalid: 0, batchesIn: 0, batchesOut: 0, snapFramesOut: 0 };
  private readonly codec = new RaftBatchCodec();
  private readonly peerWorkers: Map<NodeId, number>;
  private stopped: (() => void) | null = null;
  /** Resolves once a 'stop' request finished (store closed, answer emitted). */
  readonly done: Promise<void>;
  private readonly handlers: CallHandlers;

  private constructor(
    readonly init: WorkerInit,
    readonly shard: Shard,
    private readonly store: LogStore,
    private readonly emit: (m: FromWorker) => void,
    private readonly log: Logger,
  ) {
    this.peerWorkers = new Map(Object.entries(init.peerWorkers));
    this.done = new Promise<void>((r) => (this.stopped = r));
    this.handlers = handlers(this);
  }

  /** Open the shard: `emit` receives every event and answer, `log` its log lines. */
  static async open(init: WorkerInit, emit: (m: FromWorker) => void, log: Logger): Promise<ShardHost> {
    const userModule = init.stateMachine ? await loadStateMachine(init.stateMachine.module) : null;
    const store = await LogStore.open({
      path: init.dataDir,
      noSync: init.noSync,
      onEvent: (e) => log.info({ event: e }, 'storage event'),
    });
    let host: ShardHost | null = null;
    const shard = Shard.open({
      snapshotStreams: {
        dir: join(init.dataDir, 'snapstage'),
        limits: init.snapshotStream,
        send: (to, group, frame, bulk) => host!.sendSnapshotFrame(to, group, frame, bulk),
      },
      nodeId: init.nodeId,
      store,
      send: (to, msgs) => host!.send(to, msgs),
      tickMs: init.tickMs,
      raft: init.raft,
      seed: init.seed,
      requestTimeoutMs: init.requestTimeoutMs,
      logger: log,
      campaignDelay: init.campaignDelay,
      stateMachine: userModule
        ? (s) => new UserStateMachineHost(s, userModule, init.stateMachine?.snapshotEvery, log)
        : undefined,
      onLeader: (g, l, term, cause) => emit({ kind: 'leader', group: g, leader: l, term, cause }),
      onConf: (g, c, index) =>
        emit({ kind: 'conf', group: g, voters: [...c.voters], learners: [...c.learners], index }),
      onBrief: (b) => emit({ kind: 'brief', leaders: b.leaders, commitP99Ms: b.commitP99Ms }),
    });
    host = new ShardHost(init, shard, store, emit, log);
    for (const [g, voters] of init.groups) if (!shard.has(g)) shard.createGroup(g, { voters, learners: [] });
    return host;
  }

  start(): void {
    this.shard.start();
    this.emit({ kind: 'started', threadId: -1, groups: this.shard.groupIds().length });
    this.log.info({ groups: this.shard.groupIds().length }, 'shard started');
  }

  /** One loop turn's messages for node `target`: one packed batch per destination shard. */
  private send(target: NodeId, msgs: Message[]): void {
    const w = this.peerWorkers.get(target);
    if (w === undefined) {
      this.stats.dropsNoRoute += msgs.length; // peer never seen: Raft retransmits once it is
      return;
    }
    if (w === 1) {
      this.stats.batchesOut++;
      this.emit({ kind: 'out', target, worker: 0, batch: this.codec.encode(msgs) });
      return;
    }
    const split = new Map<number, Message[]>();
    for (const m of msgs) {
      const i = workerOf(m.group, w);
      let q = split.get(i);
      if (!q) {
        q = [];
        split.set(i, q);
      }
      q.push(m);
    }
    for (const [i, q] of split) {
      this.stats.batchesOut++;
      this.emit({ kind: 'out', target, worker: i, batch: this.codec.encode(q) });
    }
  }

  /** A snapshot stream frame for the shard of node `to` that hosts `group`. */
  private sendSnapshotFrame(to: NodeId, group: number, frame: Uint8Array, bulk: boolean): void {
    const w = this.peerWorkers.get(to);
    if (w === undefined) {
      this.stats.dropsNoRoute++; // the stream resends once the peer is known
      return;
    }
    this.stats.snapFramesOut++;
    this.emit({ kind: 'snapOut', target: to, worker: workerOf(group, w), frame, bulk });
  }

  /** A packed batch of Raft messages from another node. */
  receive(b: Uint8Array): void {
    this.stats.batchesIn++;
    const r = this.codec.decode(b);
    if (r instanceof RaftBatchError) {
      this.stats.dropsInvalid++;
      this.log.warn({ err: r }, 'malformed message batch dropped');
      return;
    }
    if (r.dropped) {
      this.stats.dropsInvalid += Object.values(r.dropped).reduce((a, n) => a + (n ?? 0), 0);
      this.log.warn({ dropped: r.dropped }, 'invalid messages dropped');
    }
    if (r.messages.length) this.shard.receive(r.messages);
  }

  /** Answer request `id` with the outcome of `p` (its error as code, message and leader hint). */
  private answer(id: number, p: Promise<unknown>): void {
    p.then(
      (result) => this.emit({ kind: 'reply', id, ok: true, result: result ?? null }),
      (e: unknown) => this.emit({ kind: 'reply', id, ok: false, ...errorToWire(e) }),
    );
  }

  /** Handle one request or notice from the node. Never throws: a failing request is answered
   *  with its error. */
  handle(m: ToWorker): void {
    try {
      if ('id' in m) this.onCall(m);
      else this.onNotice(m);
    } catch (e) {
      this.log.error({ err: e }, 'worker request failed');
      if ('id' in m)
        this.emit({
          kind: 'reply',
          id: m.id,
          ok: false,
          code: 'InvalidArgument',
          message: (e as Error).message,
          leader: '',
        });
    }
  }

  /** Run request `kind` here; a handler that throws rejects instead. */
  request<K extends CallKind>(kind: K, req: CallRequest<K>): Promise<CallReply<K>> {
    const handler: (r: CallRequest<K>) => Promise<CallReply<K>> = this.handlers[kind];
    try {
      return handler(req);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private onCall(m: CallMessage): void {
    if (m.kind !== 'stop') {
      this.answer(m.id, this.request(m.kind, m.request));
      return;
    }
    // The answer leaves before `done` resolves: the worker closes its port once it does.
    void (async () => {
      await this.shutdown();
      this.emit({ kind: 'reply', id: m.id, ok: true, result: null });
      this.stopped?.();
    })();
  }

  private onNotice(m: ShardNotice): void {
    switch (m.kind) {
      case 'raft':
        this.receive(m.batch);
        return;
      case 'peers':
        for (const [p, w] of Object.entries(m.workers)) this.peerWorkers.set(p, w);
        return;
      case 'peerUp':
        this.shard.peerUp(m.peer);
        return;
      case 'peerDown':
        this.shard.peerDown(m.peer);
        return;
      case 'campaignDelay':
        this.shard.setCampaignDelay(m.ticks);
        return;
      case 'diskDelay':
        this.store.setWriteDelay(m.ms, m.jitterMs);
        return;
      case 'snap':
        this.shard.receiveSnapshotFrame(m.from, m.frame);
        return;
    }
  }

  /** Stop the loop, close the store (pending requests settle with Stopped), then the state
   *  machine (its close hooks: nothing reads it any more). */
  async shutdown(): Promise<void> {
    await this.shard.stop();
    await this.store.close();
    await this.shard.sm.close?.();
  }

  status(detail: boolean): ShardStatus {
    const shard = this.shard;
    const h = shard.histograms;
    const base: ShardStatus = {
      ...shard.summary(),
      loop: shard.stats,
      store: this.store.stats,
      routing: this.stats,
      snapshots: shard.snapshots?.stats ?? null,
      commitP99Ms: shard.commitP99Ms(),
      histograms: { fsync: h.fsync.snapshot(), commit: h.commit.snapshot(), apply: h.apply.snapshot() },
    };
    if (!detail) return base;
    return { ...base, perGroup: shard.groupIds().map((g) => shard.groupView(g)) };
  }
}

/** What each request does to the shard, typed by ShardCalls (a wrong answer does not compile). */
function handlers(host: ShardHost): CallHandlers {
  const shard = host.shard;
  return {
    propose: (r) => shard.propose(r.group, r.data, r.timeoutMs),
    read: (r) => shard.read(r.group, r.query, r.consistency, r.timeoutMs),
    status: async (r) => host.status(r.detail),
    led: async () => shard.led(),
    transfer: (r) =>
      shard.transfer(r.group, r.target, {
        timeoutMs: r.timeoutMs,
        maxLagEntries: r.maxLagEntries,
        draining: new Set(r.draining),
        force: r.force,
        reach: r.reach,
      }),
    verify: (r) => shard.verifyLeader(r.group, r.timeoutMs),
    awaitLead: (r) => shard.awaitLeadership(r.group, r.timeoutMs),
    create: async (r) => {
      if (!shard.has(r.group)) shard.createGroup(r.group, { voters: r.voters, learners: r.learners ?? [] });
      return null;
    },
    member: (r) => shard.changeMembership(r.group, { type: r.change, node: r.node }, r.timeoutMs),
    conf: async (r) => shard.configuration(r.group),
    hosted: async () => shard.groupIds(),
    remove: async (r) => {
      if (shard.has(r.group)) shard.removeGroup(r.group);
      return null;
    },
    stop: () => host.shutdown().then(() => null),
  };
}

type CallHandlers = { [K in CallKind]: (r: CallRequest<K>) => Promise<CallReply<K>> };

/** Load a user state machine module by path or package name (inside the shard's thread). */
async function loadStateMachine(spec: string): Promise<UserStateMachineModule> {
  const url =
    spec.startsWith('file:') || !(isAbsolute(spec) || spec.startsWith('.')) ? spec : pathToFileURL(resolve(spec)).href;
  let mod: Partial<UserStateMachineModule> & { default?: Partial<UserStateMachineModule> };
  try {
    mod = await import(url);
  } catch (e) {
    // Under a CommonJS-only TypeScript hook (tsx in worker threads during development) the ESM
    // loader refuses .ts files while require() handles them.
    if ((e as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e;
    mod = createRequire(pathToFileURL(resolve('package.json')).href)(
      url.startsWith('file:') ? fileURLToPath(url) : url,
    );
  }
  const create = mod.createStateMachine ?? mod.default?.createStateMachine;
  if (typeof create !== 'function')
    throw new Error(`state machine module ${spec} does not export createStateMachine(group)`);
  return { createStateMachine: create };
}
