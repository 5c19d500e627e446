// The elastic benchmark scenario end to end at a small size: under writes a fourth node joins and
// is filled into the replica band, then n3 is decommissioned and removed; the result carries the
// figures the report is built from (times, moves against the planner's minimum, the load per
// window, the failed writes) and the scenario is on the bench command line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runElastic } from '../../src/bench/elastic.js';
import { parseBenchArgs, SCENARIOS } from '../../src/bench/args.js';

test('bench elastic: a join and a decommission under writes, with their figures', async () => {
  const lines: string[] = [];
  const r = await runElastic({
    groups: 8,
    writers: 4,
    warmupSeconds: 0.5,
    baselineSeconds: 1,
    phaseLimitSeconds: 60,
    say: (l) => lines.push(l),
  });
  assert.ok(r.baseline.writes > 0 && r.baseline.p99Ms > 0, JSON.stringify(r.baseline));
  assert.equal(r.mover.maxMovesPerNode, 2, 'the mover defaults');
  // 8 groups of 3 and group 0 of 3 over 4 nodes: 6.75 each, the band [6, 7]; n4 starts empty.
  assert.deepEqual(r.join.band, { low: 6, high: 7 });
  assert.equal(r.join.minimumMoves, 6);
  assert.ok(r.join.seconds !== null && r.join.seconds > 0, 'the join reached the band');
  for (const [id, n] of Object.entries(r.join.replicas)) assert.ok(n >= 6 && n <= 7, `${id}: ${n} replicas`);
  // No plan reaches the band in fewer moves than the minimum.
  assert.ok(r.join.movesAtSettle >= r.join.minimumMoves, JSON.stringify(r.join.moves));
  assert.ok(r.join.load.writes > 0);
  assert.ok(r.decommission.seconds !== null, 'n3 was removed');
  assert.equal(r.decommission.replicas.n3, 0);
  assert.ok(r.decommission.minimumMoves > 0);
  assert.equal(r.decommission.moves.decommission, r.decommission.minimumMoves, 'each replica of n3 moved once');
  assert.equal(r.failedWrites, 0, r.failedSamples.join('; '));
  assert.deepEqual(
    r.markers.map((m) => m.label),
    ['n4 joins', 'in band', 'decommission n3', 'n3 removed'],
  );
  assert.ok(r.timeline.length > 0 && r.timeline.some((w) => w > 0));
  assert.ok(lines.some((l) => l.startsWith('join: in band')));
});

test('bench elastic is a scenario of the command line', () => {
  assert.ok(SCENARIOS.includes('elastic'));
  const c = parseBenchArgs(['elastic', '--quick']);
  assert.equal(c.kind, 'run');
  if (c.kind === 'run') assert.deepEqual(c.args.order, ['elastic']);
});
