// Benchmark runner: `npm run bench -- [scenario...] [--quick] [--out DIR]`. Writes results.json
// with the machine description next to every figure. Scenarios: raft-core, storage, transport,
// cluster (3 node processes: throughput and latency), idle (3 node processes: idle cost, elect
// time, memory; the full run adds 100,000 groups), transfer (verified transfers and a drain under
// load), drain (n1 leads all 1,000 groups and drains under load; `--concurrency N`, default 64),
// kill (kill -9 of the node leading the most groups under load: time until writes resume),
// balancer (10,000 groups, 2,000 with --quick, all led by n1, then the balancer: time to within
// 5%, moves against the minimum, then a quiet period; `--balancer JSON` patches its settings).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo } from './machine.js';
import { benchRaftCore } from './raft-core.js';
import { benchStorage } from './storage.js';
import { benchTransport } from './transport.js';
import { runCluster, runIdle, runTransfers } from './cluster.js';
import { runBalancer, runDrain, runKill } from './leadership.js';

const SCENARIOS = ['raft-core', 'storage', 'transport', 'cluster', 'idle', 'transfer', 'drain', 'kill', 'balancer'] as const;
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { quick: { type: 'boolean' }, out: { type: 'string' }, balancer: { type: 'string' }, concurrency: { type: 'string' } },
});
const chosen = positionals.length > 0 ? positionals : [...SCENARIOS];
for (const s of chosen) {
  if (!(SCENARIOS as readonly string[]).includes(s)) {
    process.stderr.write(`bench: unknown scenario "${s}" (known: ${SCENARIOS.join(', ')})\n`);
    process.exit(2);
  }
}
const quick = values.quick ?? false;
let balancerConfig: Record<string, unknown> | undefined;
try {
  balancerConfig = values.balancer ? JSON.parse(values.balancer) : undefined;
  if (balancerConfig !== undefined && (typeof balancerConfig !== 'object' || balancerConfig === null || Array.isArray(balancerConfig))) throw new Error('not a JSON object');
} catch (e) {
  process.stderr.write(`bench: --balancer must be a JSON object of balancer settings, e.g. '{"maxConcurrent":128,"intervalMs":500}' (${(e as Error).message})\n`);
  process.exit(2);
}
const concurrency = Number(values.concurrency ?? 64);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write(`bench: --concurrency must be a positive integer\n`);
  process.exit(2);
}
const out = values.out ?? 'bench-results';
const started = Date.now();
const scenarios: Record<string, unknown> = {};

if (chosen.includes('raft-core')) {
  process.stdout.write('bench: raft-core ...\n');
  const r = await benchRaftCore(quick);
  for (const x of r) process.stdout.write(`  ${x.name}: ${x.entriesPerSec.toLocaleString('en')} ${x.unit}\n`);
  scenarios.raftCore = r;
}
if (chosen.includes('storage')) {
  process.stdout.write('bench: storage (durable, fsync on) ...\n');
  const r = await benchStorage(quick);
  for (const x of r.load) {
    process.stdout.write(`  ${x.name.padEnd(22)} ${x.durableEntriesPerSec.toLocaleString('en').padStart(10)} entries/s  ` +
      `${x.commitsPerSec} commits/s  commit p50 ${x.commitP50Ms} ms  p99 ${x.commitP99Ms} ms  checkpoints ${x.checkpoints}\n`);
  }
  process.stdout.write(`  start-up: ${r.startup.groups} groups, ${r.startup.walRecordsReplayed} WAL records replayed: ${r.startup.openMs} ms\n`);
  scenarios.storage = r;
}

if (chosen.includes('transport')) {
  process.stdout.write('bench: transport (loopback, 1,000-message frames, both ends in one thread) ...\n');
  const r = await benchTransport(quick);
  for (const x of r) process.stdout.write(`  ${x.name}: ${x.value.toLocaleString('en')} ${x.unit}\n`);
  scenarios.transport = r;
}

if (chosen.includes('cluster')) {
  process.stdout.write('bench: cluster (3 node processes on 127.0.0.1, fsync on, built-in KV, embedded API) ...\n');
  const secs = quick ? 5 : 15;
  const runs = [
    { groups: 1000, workers: 1, proposers: 2000, valueBytes: 16, seconds: secs, local: true },
    { groups: 1000, workers: 1, proposers: 256, valueBytes: 16, seconds: secs, local: true },
    { groups: 1, workers: 1, proposers: 500, valueBytes: 16, seconds: secs, local: false },
    { groups: 1, workers: 1, proposers: 1500, valueBytes: 16, seconds: secs, local: true },
    ...(quick ? [] : [
      { groups: 100, workers: 1, proposers: 1000, valueBytes: 16, seconds: secs, local: true },
      { groups: 1000, workers: 2, proposers: 2000, valueBytes: 16, seconds: secs, local: true },
      { groups: 1000, workers: 1, proposers: 2000, valueBytes: 1024, seconds: secs, local: true },
    ]),
  ];
  const r = [];
  for (const o of runs) {
    const x = await runCluster(o);
    process.stdout.write(`  ${x.name.padEnd(46)} ${x.writesPerSec.toLocaleString('en').padStart(8)} writes/s  p50 ${x.p50Ms} ms  ` +
      `p99 ${x.p99Ms} ms  p99.9 ${x.p999Ms} ms  errors ${x.errors}  cpu/node ${x.cpuPctPerNode.join('/')}%\n`);
    r.push(x);
  }
  scenarios.cluster = r;
}

if (chosen.includes('idle')) {
  process.stdout.write('bench: idle (3 node processes, every group elected then quiesced) ...\n');
  const r = [];
  for (const groups of quick ? [10_000] : [10_000, 100_000]) {
    const x = await runIdle({ groups, workers: 1, seconds: 10 });
    process.stdout.write(`  ${groups.toLocaleString('en')} groups: elected in ${x.electSeconds} s, quiesced at ${x.quiesceSeconds} s, ` +
      `idle cpu/node ${x.idleCpuPctPerNode.join('/')}% of one core, rss/node ${x.rssMiBPerNode.join('/')} MiB ` +
      `(${x.rssKiBPerReplica} KiB per replica), Raft batches while idle ${x.raftBatchesWhileIdle}, frames ${x.framesWhileIdle}\n`);
    r.push(x);
  }
  scenarios.idle = r;
}

if (chosen.includes('transfer')) {
  process.stdout.write('bench: transfer (3 node processes, 1,000 groups, writes from every node; n1 moves 100 leaderships, then drains) ...\n');
  const x = await runTransfers({ groups: 1000, transfers: quick ? 30 : 100, proposers: 64, seconds: quick ? 15 : 30 });
  process.stdout.write(`  ${x.transfers} verified transfers: p50 ${x.transferP50Ms} ms, p99 ${x.transferP99Ms} ms, max ${x.transferMaxMs} ms, ` +
    `failed ${x.transferFailures.length}; drain: ${x.drain ? `${x.drain.moved} leaders in ${x.drain.ms} ms, failed ${x.drain.failed}` : 'not run'}; ` +
    `writes ${x.writes}, failed ${x.failedWrites}, stalled >1 s ${x.stalledWrites}, write p99 ${x.writeP99Ms} ms\n`);
  scenarios.transfer = x;
}

if (chosen.includes('drain')) {
  process.stdout.write(`bench: drain (3 node processes, n1 leads all 1,000 groups, writes from every node; n1 drains, concurrency ${concurrency}) ...\n`);
  const x = await runDrain({ groups: 1000, concurrency, proposers: 64, seconds: quick ? 12 : 20 });
  process.stdout.write(`  drained ${x.moved} of ${x.leadersBefore} leaders in ${x.drainMs} ms, failed ${x.failed}, n1 leads ${x.leadersAfter} after; writes ${x.writes}, ` +
    `failed ${x.failedWrites}, stalled >1 s ${x.stalledWrites}, write p50 ${x.writeP50Ms} ms p99 ${x.writeP99Ms} ms max ${x.writeMaxMs} ms\n`);
  scenarios.drain = x;
}

if (chosen.includes('kill')) {
  process.stdout.write('bench: kill (3 node processes, 1,000 groups, writes from two nodes; kill -9 of the third, which leads the most) ...\n');
  const x = await runKill({ groups: 1000, proposers: 64, seconds: quick ? 12 : 20, timeoutMs: 10_000 });
  process.stdout.write(`  killed ${x.victim} (leading ${x.victimLeaders}), all its groups led again after ${x.reelectedMs} ms (p50 ${x.reelectP50Ms} ms, p99 ${x.reelectP99Ms} ms, ${x.reelectSlowerThanTimeout} slower than the ${x.electionTimeoutMs} ms election timeout); ` +
    `writes to its groups resumed: p50 ${x.lostGroupResumeP50Ms} ms, p99 ${x.lostGroupResumeP99Ms} ms, max ${x.lostGroupResumeMaxMs} ms (${x.lostGroupWrites} writes); ` +
    `longest gap per proposer: p50 ${x.resumeP50Ms} ms, p99 ${x.resumeP99Ms} ms, max ${x.resumeMaxMs} ms, never resumed ${x.proposersNeverResumed}; ` +
    `writes ${x.writes}, errors ${JSON.stringify(x.errors)}, over the ${x.requestTimeoutMs} ms deadline ${x.overDeadline}, hung ${x.hung}\n`);
  scenarios.kill = x;
}

if (chosen.includes('balancer')) {
  const groups = quick ? 2000 : 10_000;
  process.stdout.write(`bench: balancer (3 node processes, ${groups.toLocaleString('en')} groups all led by n1, then the balancer) ...\n`);
  const x = await runBalancer({ groups, workers: 1, quietSeconds: quick ? 30 : 300, config: balancerConfig });
  process.stdout.write(`  config ${JSON.stringify(x.config)}; skew in ${x.skewSeconds} s (${x.skewStrayLeaders} stray leaders drained to n1); within 5% (${x.band.join('-')} per node) in ${x.within5PctSeconds ?? 'never'} s ` +
    `(${x.leadersAtWithin5Pct.join('/')}, ${x.movesToWithin5Pct} moves); settled at ${x.settledSeconds ?? 'never'} s (${x.leadersAtSettled.join('/')}) ` +
    `with ${x.totalMoves} moves: minimum ${x.minMovesWithin5Pct} for 5%, ${x.minMovesExact} exact, ratio ${x.ratioToMinimum} / ${x.ratioToExact}; ` +
    `${x.movesWhileQuiet} moves in the next ${x.quietSeconds} s (leaders ${x.quietLeaderRange.join('-')}); failed moves ${x.failedMoves}; final ${x.finalLeaders.join('/')}\n`);
  scenarios.balancer = x;
}

// Which runtime code the node processes ran (see bench/cluster-node.ts).
const nodeCode = process.env.BENCH_SRC === '1' ? 'src/ via tsx' : process.env.BENCH_DIST ? `build in ${process.env.BENCH_DIST}` : 'dist/ (compiled), else src/ via tsx';
const results = { machine: machineInfo(), nodeCode, quick, durationSec: (Date.now() - started) / 1000, scenarios };
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2));
process.stdout.write(`wrote ${join(out, 'results.json')}\n`);
