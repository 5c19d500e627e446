// The shard host that runs inside each piscina worker thread: one never-ending task per worker
// (it returns only when told to stop). It opens the worker's own LMDB environment, recovers every
// group in it, bootstraps the groups placed on it, runs the Shard loop, and talks to the main
// thread through one PackedPort: requests and answers, and Raft traffic as packed message batches
// (the main thread relays those bytes to and from TCP without decoding them).
import { threadId, type MessagePort } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pino } from 'pino';
import type { Message, NodeId } from '../raft/types.js';
import { LogStore } from '../storage/logstore.js';
import { MessageBatchCodec, MalformedFrame } from '../transport/codec.js';
import { PackedPort } from './channel.js';
import { RuntimeError, TransferError } from './errors.js';
import { Shard, type RaftTuning } from './shard.js';
import { UserStateMachineHost, type UserStateMachineModule } from './statemachine.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { workerOf } from './protocol.js';

export default async function host(init: WorkerInit & { port: MessagePort }): Promise<string> {
  const log = pino({ level: init.logLevel ?? 'silent', base: { node: init.nodeId, worker: init.index } });
  const codec = new MessageBatchCodec();
  const peerWorkers = new Map<NodeId, number>(Object.entries(init.peerWorkers));
  const stats = { dropsNoRoute: 0, dropsInvalid: 0, batchesIn: 0, batchesOut: 0 };
  let port: PackedPort<FromWorker, ToWorker> | null = null;
  const post = (m: FromWorker) => port?.post(m);

  let userModule: UserStateMachineModule | null = null;
  if (init.stateMachine) {
    const spec = init.stateMachine.module;
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
    userModule = { createStateMachine: create };
  }

  const store = await LogStore.open({
    path: init.dataDir, noSync: init.noSync,
    onEvent: (e) => log.info({ event: e }, 'storage event'),
  });
  const send = (to: NodeId, msgs: Message[]) => {
    const w = peerWorkers.get(to);
    if (w === undefined) {
      stats.dropsNoRoute += msgs.length; // peer never seen: Raft retransmits once it is
      return;
    }
    if (w === 1) {
      stats.batchesOut++;
      post({ t: 'out', to, w: 0, b: codec.encode(msgs) });
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
      stats.batchesOut++;
      post({ t: 'out', to, w: i, b: codec.encode(q) });
    }
  };
  const shard = Shard.open({
    nodeId: init.nodeId, store, send, tickMs: init.tickMs, raft: init.raft as RaftTuning, seed: init.seed,
    requestTimeoutMs: init.requestTimeoutMs, logger: log, campaignDelay: init.campaignDelay,
    stateMachine: userModule ? (s) => new UserStateMachineHost(s, userModule!, init.stateMachine?.snapshotEvery) : undefined,
    onLeader: (g, l, term) => post({ t: 'lead', g, l, term }),
    onConf: (g, c) => post({ t: 'conf', g, voters: [...c.voters], learners: [...c.learners] }),
  });
  for (const [g, voters] of init.groups) if (!shard.has(g)) shard.createGroup(g, { voters, learners: [] });

  let stopped: (() => void) | null = null;
  const done = new Promise<void>((r) => (stopped = r));

  const reply = (id: number, p: Promise<unknown>) => {
    p.then(
      (r) => post({ t: 're', id, ok: true, r: r ?? null }),
      (e: unknown) => {
        const err = e instanceof RuntimeError ? e : new RuntimeError('InvalidArgument', e instanceof Error ? e.message : String(e));
        post({ t: 're', id, ok: false, code: err.code, msg: err.message, leader: err.leader, reason: err instanceof TransferError ? err.reason : undefined });
      },
    );
  };
  const guard = <T>(f: () => T): Promise<T> => {
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(e);
    }
  };

  const onMessage = (m: ToWorker) => {
    switch (m.t) {
      case 'raft': {
        stats.batchesIn++;
        const r = codec.decode(m.b);
        if (r instanceof MalformedFrame) {
          stats.dropsInvalid++;
          log.warn({ err: r.message }, 'malformed message batch dropped');
          return;
        }
        if (r.dropped) {
          stats.dropsInvalid += Object.values(r.dropped).reduce((a, b) => a + (b ?? 0), 0);
          log.warn({ dropped: r.dropped }, 'invalid messages dropped');
        }
        if (r.messages.length) shard.receive(r.messages);
        return;
      }
      case 'propose':
        reply(m.id, shard.propose(m.g, m.d, m.to));
        return;
      case 'read':
        reply(m.id, guard(() => shard.read(m.g, m.q, m.c, m.to)));
        return;
      case 'peers':
        for (const [p, w] of Object.entries(m.w)) peerWorkers.set(p, w);
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
      case 'status':
        reply(m.id, guard(() => statusOf(shard, m.detail, stats)));
        return;
      case 'transfer':
        reply(m.id, guard(() => shard.transferLeader(m.g, m.to)));
        return;
      case 'xfer':
        reply(m.id, shard.transfer(m.g, m.target, { timeoutMs: m.to, maxLagEntries: m.lag, draining: new Set(m.draining) }));
        return;
      case 'led':
        reply(m.id, guard(() => shard.led()));
        return;
      case 'member':
        reply(m.id, shard.changeMembership(m.g, { type: m.type, node: m.node }, m.to));
        return;
      case 'verify':
        reply(m.id, guard(() => shard.verifyLeader(m.g, m.to)));
        return;
      case 'create':
        reply(m.id, guard(() => {
          if (!shard.has(m.g)) shard.createGroup(m.g, { voters: m.voters, learners: m.learners ?? [] });
          return null;
        }));
        return;
      case 'remove':
        reply(m.id, guard(() => {
          if (shard.has(m.g)) shard.removeGroup(m.g);
          return null;
        }));
        return;
      case 'stop':
        void (async () => {
          await shard.stop();
          await store.close();
          post({ t: 're', id: m.id, ok: true, r: null });
          port?.flush();
          stopped?.();
        })();
        return;
    }
  };
  port = new PackedPort<FromWorker, ToWorker>(init.port, (items) => {
    for (const m of items) {
      try {
        onMessage(m);
      } catch (e) {
        log.error({ err: e }, 'worker request failed');
        if ('id' in m && typeof m.id === 'number') {
          post({ t: 're', id: m.id, ok: false, code: 'InvalidArgument', msg: (e as Error).message, leader: '' });
        }
      }
    }
  });
  shard.start();
  post({ t: 'started', threadId, groups: shard.groupIds().length });
  log.info({ groups: shard.groupIds().length, threadId }, 'shard started');
  await done;
  port.close();
  return 'stopped';
}

function statusOf(shard: Shard, detail: boolean, stats: Record<string, number>) {
  const h = shard.histograms;
  const base = {
    ...shard.summary(), loop: shard.stats, routing: stats, commitP99Ms: shard.commitP99Ms(),
    histograms: { fsync: h.fsync.snapshot(), commit: h.commit.snapshot(), apply: h.apply.snapshot() },
  };
  if (!detail) return base;
  return { ...base, perGroup: shard.groupIds().map((g) => ({ ...shard.status(g), served: shard.served(g) })) };
}
