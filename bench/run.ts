// Benchmark runner: `npm run bench -- [scenario...] [--quick] [--out DIR]`. Writes results.json
// with the machine description next to every figure. Scenarios: raft-core, storage, transport.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo } from './machine.js';
import { benchRaftCore } from './raft-core.js';
import { benchStorage } from './storage.js';
import { benchTransport } from './transport.js';

const SCENARIOS = ['raft-core', 'storage', 'transport'] as const;
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { quick: { type: 'boolean' }, out: { type: 'string' } },
});
const chosen = positionals.length > 0 ? positionals : [...SCENARIOS];
for (const s of chosen) {
  if (!(SCENARIOS as readonly string[]).includes(s)) {
    process.stderr.write(`bench: unknown scenario "${s}" (known: ${SCENARIOS.join(', ')})\n`);
    process.exit(2);
  }
}
const quick = values.quick ?? false;
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

const results = { machine: machineInfo(), quick, durationSec: (Date.now() - started) / 1000, scenarios };
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2));
process.stdout.write(`wrote ${join(out, 'results.json')}\n`);
