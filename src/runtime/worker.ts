// The piscina task that runs inside each worker thread: one never-ending task per worker (it
// returns only when told to stop). It opens the shard (ShardHost) and connects it to the main
// thread through one PackedPort: requests and answers, Raft traffic as packed message batches
// (the main thread relays those bytes to and from TCP without decoding them), and the shard's
// log lines, which the main thread writes with the node's logger (workerlog.ts).
import { threadId, type MessagePort } from 'node:worker_threads';
import { PackedPort } from './channel.js';
import { IdleCollector, threadProbe } from './heap.js';
import { ShardHost } from './shardhost.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { workerLogger } from './workerlog.js';

export default async function host(init: WorkerInit & { port: MessagePort }): Promise<string> {
  let shard: ShardHost | null = null;
  // The port exists before the shard opens so that what the opening logs reaches the main
  // thread; the main thread sends nothing before the shard reports 'started'.
  const port = new PackedPort<FromWorker, ToWorker>(init.port, (items) => {
    for (const m of items) shard?.handle(m);
  });
  const log = workerLogger(init.logLevel ?? 'silent', (r) => port.post(r));
  const emit = (m: FromWorker) => port.post(m.kind === 'started' ? { ...m, threadId } : m);
  try {
    shard = await ShardHost.open(init, emit, log);
  } catch (e) {
    port.close(); // flushes what the failed opening logged
    throw e;
  }
  shard.start();
  const collector = new IdleCollector(threadProbe(), {}, log);
  collector.start();
  await shard.done;
  collector.stop();
  port.close();
  return 'stopped';
}
