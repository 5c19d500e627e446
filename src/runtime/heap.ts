// V8 heap sizing for the threads that run shards. A shard turn allocates many short-lived objects
// (entries, messages, proposal promises) and keeps a good share of them alive until the commit it
// started resolves, so with V8's default young generation (16 MiB semi-spaces) the scavenger runs
// every few tens of milliseconds and copies the same in-flight objects again and again.
// Measured on 2 cores, 3 shards in one thread (bench/shard-loop.ts 1000 3000 8, 1,000 groups,
// 3,000 proposers): 248 scavenges taking 2.4 s at 16 MiB, 76 taking 1.9 s at 64 MiB; in the
// 3-process embedded benchmark (1,000 active groups, warm rows) the median went from 47k to 55k
// writes/s and CPU per write from 41 to 36 µs cluster-wide. 32 and 128 MiB measured no better
// than 64. An idle node's young generation shrinks back, so the cost is memory under load only.
//
// A worker thread takes its limit from `resourceLimits`; the main thread only from node's command
// line or NODE_OPTIONS, which a running process cannot change. The `flotilla` executable keeps the
// portable `#!/usr/bin/env node` (`env -S` to pass flags is missing from BusyBox, as on Alpine), so
// a node whose main thread runs shards without NODE_FLAGS logs how to start it with them; the demo
// and the benchmark nodes are started with them.

/** Semi-space size for threads that run shards, MiB. */
export const SEMI_SPACE_MB = 64;

/** Node flags for a process whose main thread runs shards (the inline layout). */
export const NODE_FLAGS: readonly string[] = [`--max-semi-space-size=${SEMI_SPACE_MB}`];

/** Worker `resourceLimits` giving a shard worker the same young generation: V8 sizes the young
 *  generation as three semi-spaces (two for copying, one for new large objects). */
export function shardWorkerLimits(): { maxYoungGenerationSizeMb: number } {
  return { maxYoungGenerationSizeMb: 3 * SEMI_SPACE_MB };
}

/** Whether this process was started with a semi-space size of its own choosing. */
export function semiSpaceConfigured(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const has = (a: string) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(a);
  return execArgv.some(has) || nodeOptions.split(/\s+/).some(has);
}
