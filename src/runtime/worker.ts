// The piscina task that runs inside each worker thread: one never-ending task per worker (it
// returns only when told to stop). It opens the shard (ShardHost) and connects it to the main
// thread through one PackedPort: requests and answers, and Raft traffic as packed message
// batches (the main thread relays those bytes to and from TCP without decoding them).
import { threadId, type MessagePort } from 'node:worker_threads';
import { pino } from 'pino';
import { PackedPort } from './channel.js';
import { IdleCollector, threadProbe } from './heap.js';
import { ShardHost } from './shardhost.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

export default async function host(init: WorkerInit & { port: MessagePort }): Promise<string> {
  const log = pino({ level: init.logLevel ?? 'silent', base: { node: init.nodeId, worker: init.index } });
  let port: PackedPort<FromWorker, ToWorker> | null = null;
  const emit = (m: FromWorker) => port?.post(m.kind === 'started' ? { ...m, threadId } : m);
  const shard = await ShardHost.open(init, emit, log);
  port = new PackedPort<FromWorker, ToWorker>(init.port, (items) => {
    for (const m of items) shard.handle(m);
  });
  shard.start();
  const collector = new IdleCollector(threadProbe(), {}, log);
  collector.start();
  await shard.done;
  collector.stop();
  port.flush();
  port.close();
  return 'stopped';
}
