// node:test wrapper for the simulator: a fixed batch of seeds must be clean, a seed must replay
// bit-for-bit, and deliberately broken hosts must be caught (the invariants are not vacuous).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SAFETY_KINDS, type Violation } from './checker.js';
import type { Hooks } from './host.js';
import { REPROS } from './repro.js';
import { runSeed, type SimResult } from './sim.js';

const FIXED_SEEDS = Array.from({ length: 20 }, (_, i) => 1 + i);

function show(r: SimResult): string {
  return r.violations.map((v) => `seed ${r.seed} [${v.kind}] step ${v.step}: ${v.detail}`).join('\n');
}

/** Runs seeds 1..`seeds` until one reports a violation `want` accepts; returns everything seen. */
function hunt(hooks: Hooks, seeds: number, want: (v: Violation) => boolean): { found: boolean; seen: string[] } {
  const seen: string[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const r = runSeed({ seed, hooks });
    for (const v of r.violations) seen.push(`seed ${seed} [${v.kind}] ${v.detail.slice(0, 160)}`);
    if (r.violations.some(want)) return { found: true, seen };
  }
  return { found: false, seen };
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
    const r = hunt({ lyingDisk: true }, 20, (v) => SAFETY_KINDS.includes(v.kind));
    assert.ok(r.found, `expected a safety violation; saw:\n${r.seen.join('\n')}`);
  });

  it('catches a node that forgets its vote on restart', () => {
    const r = hunt({ forgetVote: true }, 30, (v) => v.kind === 'vote-safety' || v.kind === 'election-safety');
    assert.ok(r.found, `expected a vote violation; saw:\n${r.seen.join('\n')}`);
  });

  it('catches a transport that loses transfer campaigns (transfer liveness)', () => {
    const r = hunt({ dropTransferVotes: true }, 30, (v) => v.kind === 'transfer-liveness');
    assert.ok(r.found, `expected a transfer-liveness violation; saw:\n${r.seen.join('\n')}`);
  });

  // Core bugs the simulator found, as minimal scenarios; all fixed, kept as regression tests.
  describe('core bugs found by the simulator stay fixed', () => {
    for (const [name, r] of Object.entries(REPROS)) {
      it(name, () => {
        const out = r.run();
        assert.equal(out.reproduced, false, out.detail);
      });
    }
  });
});
