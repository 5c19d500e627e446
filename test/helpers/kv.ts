// Driving the built-in KV state machine by hand (tests that use a LogStore without a shard).
import type { LogStore } from '../../src/storage/logstore.js';
import type { KvStateMachine } from '../../src/storage/kv.js';

/** Commit what is staged in the log and flush everything the KV applied, in one transaction. */
export async function flushKv(store: LogStore, kv: KvStateMachine): Promise<void> {
  const w = kv.prepareWrite(true);
  await store.commit(w ?? undefined);
  if (w) kv.committed();
}
