// node:test wrapper for the simulator: a fixed batch of seeds must be clean, a seed must replay
// bit-for-bit, and deliberately broken hosts must be caught (the invariants are not vacuous).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SAFETY_KINDS, type Violation } from './checker.js';
import type { Hooks } from './host.js';
import { runSeed, type SimResult } from './sim.js';

const FIXED_SEEDS = Array.from({ length: 20 }, (_, i) => 1 + i);

function show(r: SimResult): string {
  return r.violations.map((v) => `seed ${r.seed} [${v.kind}] step ${v.step}: ${v.detail}`).join('\n');
}

/** Runs seeds until one reports a violation; returns its violations (empty if none did). */
function firstFailure(hooks: Hooks, seeds: number): Violation[] {
  for (let seed = 1; seed <= seeds; seed++) {
    const r = runSeed({ seed, hooks });
    if (r.violations.length > 0) return [...r.violations];
  }
  return [];
}

describe('simulator', () => {
  it('finds no violations on a fixed set of seeds', () => {
    for (const seed of FIXED_SEEDS) {
      const r = runSeed({ seed });
      assert.equal(r.violations.length, 0, `replay: npm run sim -- --seeds 1 --start ${seed} --verbose\n${show(r)}`);
      assert.ok(r.steps > 0 && r.stats.messages > 0, 'the run did something');
    }
  });

  it('replays a seed exactly (same fingerprint, with or without a trace sink)', () => {
    for (const seed of [7, 42]) {
      const a = runSeed({ seed });
      const b = runSeed({ seed });
      const lines: string[] = [];
      const c = runSeed({ seed, trace: (l) => lines.push(l) });
      assert.equal(a.fingerprint, b.fingerprint);
      assert.equal(a.fingerprint, c.fingerprint, 'verbose tracing must not perturb the run');
      assert.deepEqual(a.stats, b.stats);
      assert.equal(a.steps + a.healSteps, c.steps + c.healSteps);
      assert.ok(lines.length > 100, 'the verbose trace has content');
    }
    assert.notEqual(runSeed({ seed: 7 }).fingerprint, runSeed({ seed: 8 }).fingerprint, 'different seeds differ');
  });

  it('catches a disk that loses acknowledged entries on crash', () => {
    const v = firstFailure({ lyingDisk: true }, 20);
    assert.ok(v.some((x) => SAFETY_KINDS.includes(x.kind)), `expected a safety violation, got ${JSON.stringify(v)}`);
  });

  it('catches a node that forgets its vote on restart', () => {
    const v = firstFailure({ forgetVote: true }, 30);
    assert.ok(v.some((x) => x.kind === 'vote-safety' || x.kind === 'election-safety'), `expected a vote violation, got ${JSON.stringify(v)}`);
  });
});
