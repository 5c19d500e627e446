// Command line: npm run sim -- --seeds N --start S [--steps K] [--verbose] [--inject lying-disk|forget-vote|drop-transfer-votes]
// Runs seeds S..S+N-1; prints each violation with a replay command; the last line is always
// `seeds: N, violations: V` and the exit code is non-zero when V > 0.
// `npm run sim -- --repro NAME|all` runs the hand-written reproductions of core bugs instead.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { Hooks } from './host.js';
import { REPROS } from './repro.js';
import { DEFAULT_STEPS, runSeed } from './sim.js';

const INJECT: Record<string, Hooks> = {
  'lying-disk': { lyingDisk: true },
  'forget-vote': { forgetVote: true },
  'drop-transfer-votes': { dropTransferVotes: true },
};

function main(): number {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '100' },
      start: { type: 'string', default: '1' },
      steps: { type: 'string', default: String(DEFAULT_STEPS) },
      verbose: { type: 'boolean', default: false },
      inject: { type: 'string' },
      repro: { type: 'string' },
    },
    strict: true,
  });
  if (values.repro !== undefined) return repro(values.repro);
  const seeds = intArg('seeds', values.seeds);
  const start = intArg('start', values.start);
  const steps = intArg('steps', values.steps);
  const hooks = values.inject === undefined ? undefined : INJECT[values.inject];
  if (values.inject !== undefined && !hooks)
    throw new Error(`--inject must be one of ${Object.keys(INJECT).join(', ')}`);
  const verbose = values.verbose;
  const extra =
    (steps !== DEFAULT_STEPS ? ` --steps ${steps}` : '') + (values.inject ? ` --inject ${values.inject}` : '');

  let violations = 0;
  let failingSeeds = 0;
  let totalSteps = 0;
  const totals: Record<string, number> = {};
  const t0 = performance.now();
  for (let seed = start; seed < start + seeds; seed++) {
    const r = runSeed({ seed, steps, hooks, trace: verbose ? (line) => console.log(line) : undefined });
    totalSteps += r.steps + r.healSteps;
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
    if (verbose) {
      console.log(
        `seed ${seed}: ${r.steps}+${r.healSteps} steps, ${r.ticks.toFixed(1)} ticks, fingerprint ${r.fingerprint}`,
      );
      console.log(`  ${r.config}`);
      console.log(`  ${JSON.stringify(r.stats)}`);
    }
    if (r.violations.length === 0) continue;
    violations += r.violations.length;
    failingSeeds++;
    console.log(`FAIL seed ${seed} (${r.config})`);
    for (const v of r.violations) console.log(`  [${v.kind}] at step ${v.step} (t=${v.time.toFixed(2)}): ${v.detail}`);
    console.log(`  replay: npm run sim -- --seeds 1 --start ${seed}${extra} --verbose`);
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `totals: ${Object.entries(totals)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  );
  console.log(`failing seeds: ${failingSeeds}`);
  console.log(
    `throughput: ${(seeds / secs).toFixed(1)} seeds/s, ${Math.round(totalSteps / secs)} steps/s (${totalSteps} steps in ${secs.toFixed(2)} s)`,
  );
  console.log(`seeds: ${seeds}, violations: ${violations}`);
  return violations > 0 ? 1 : 0;
}

function repro(name: string): number {
  const names = name === 'all' ? Object.keys(REPROS) : [name];
  let reproduced = 0;
  for (const n of names) {
    const r = REPROS[n];
    if (!r) throw new Error(`unknown repro ${n}; one of: all, ${Object.keys(REPROS).join(', ')}`);
    const out = r.run();
    if (out.reproduced) reproduced++;
    console.log(`${out.reproduced ? 'REPRODUCED' : 'not reproduced (fixed?)'}: ${n}\n  ${r.summary}\n  ${out.detail}`);
  }
  console.log(`repros: ${names.length}, reproduced: ${reproduced}`);
  return reproduced > 0 ? 1 : 0;
}

function intArg(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

process.exitCode = main();
