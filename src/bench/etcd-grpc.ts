// etcd's native API, gRPC, through the `etcd3` npm package: the like-for-like peer of flotilla's
// embedded API (HTTP is compared with etcd's HTTP gateway instead). etcd3 is a dev dependency,
// loaded with a dynamic import, so the shipped bench runs without it and says why it skipped.
// Owns: etcd3Available (the skip reason and the client's version) and grpcWriter, the puts the
// load generator process (http-load.ts, kind 'etcd-grpc') and the failover probe issue. The
// closed loop itself, its latency, error, gap and CPU accounting are http-load.ts's, shared
// with the HTTP rows, so the two etcd paths differ only in how a put reaches etcd.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { IOptions } from 'etcd3';
import type { PeerInfo } from './results.js';
import type { WriteOutcome } from './http-load.js';

type Etcd3Module = typeof import('etcd3');

export const ETCD3_MISSING = 'the etcd3 package (a dev dependency) is not installed';

/** etcd3, or why it cannot be used. Imported once per process. */
let loading: Promise<Etcd3Module | { reason: string }> | undefined;
function loadEtcd3(): Promise<Etcd3Module | { reason: string }> {
  loading ??= import('etcd3').then(
    (m) => m,
    (e: NodeJS.ErrnoException) => ({
      reason:
        e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND'
          ? ETCD3_MISSING
          : `the etcd3 package does not load: ${e.message}`,
    }),
  );
  return loading;
}

/** Whether the etcd3 client can be loaded here, and its version ("etcd3 1.1.2"). */
export async function etcd3Available(): Promise<PeerInfo> {
  const m = await loadEtcd3();
  if ('reason' in m) return { available: false, reason: m.reason };
  let version = '?';
  try {
    const require = createRequire(import.meta.url);
    version = (JSON.parse(readFileSync(require.resolve('etcd3/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // The package loads but hides its package.json: the version stays unknown.
  }
  return { available: true, version: `etcd3 ${version}` };
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** A fault-handling policy that only calls through. etcd3's defaults retry a failed call up to
 *  three times and stop calling a member for 5 s after three failures in a row; the load
 *  generator is to see every failure itself and fail over the way its HTTP clients do, so a
 *  write that failed is counted as failed on either path. */
class CallThrough implements Policy {
  declare readonly _altReturn: never;
  readonly onSuccess: Policy['onSuccess'] = () => ({ dispose() {} });
  readonly onFailure: Policy['onFailure'] = () => ({ dispose() {} });
  async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
    return fn({ signal: signal ?? new AbortController().signal });
  }
}

export interface GrpcWriter {
  /** Put `valueBytes` bytes at `key` through the client of endpoints[target]. */
  put(target: number, key: string, timeoutMs?: number): Promise<WriteOutcome>;
  close(): void;
}

/** One etcd3 client per endpoint (one HTTP/2 connection each, every call a stream on it), so a
 *  writer's calls go to the member it chose, as an HTTP client's do, and the cost of a client per
 *  writer is not paid: 3,000 writers share 3 connections. */
export async function grpcWriter(endpoints: string[], valueBytes: number, timeoutMs: number): Promise<GrpcWriter> {
  const m = await loadEtcd3();
  if ('reason' in m) throw new Error(m.reason);
  const clients = endpoints.map(
    (host) =>
      new m.Etcd3({
        hosts: [host],
        grpcOptions: { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0 },
        faultHandling: { host: () => new CallThrough(), global: new CallThrough() },
      }),
  );
  const value = Buffer.alloc(valueBytes, 'x');
  return {
    async put(target, key, deadlineMs = timeoutMs) {
      try {
        await clients[target].kv.put({ key: Buffer.from(key), value }, { deadline: Date.now() + deadlineMs });
        return { ok: true };
      } catch (e) {
        // etcd3 types gRPC statuses as error classes (GRPCUnavailableError, GRPCDeadlineExceededError,
        // EtcdError for etcd's own "etcdserver: ..." texts): the class is the kind.
        const err = e instanceof Error ? e : new Error(String(e));
        return { ok: false, kind: err.constructor.name, message: err.message.slice(0, 80) };
      }
    },
    close() {
      for (const c of clients) c.close();
    },
  };
}
