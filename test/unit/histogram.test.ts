// Latency histograms for /metrics: bucket placement at the bounds, cumulative rendering, merging
// the workers' snapshots.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Histogram, mergeHistograms, RecentSamples, renderHistogram } from '../../src/runtime/histogram.js';

test('observations land in the first bucket whose bound they do not exceed', () => {
  const h = new Histogram([0.001, 0.01, 0.1]);
  for (const ms of [0.5, 1, 1.0001, 10, 99, 100, 100.5, 5000]) h.observeMs(ms);
  const s = h.snapshot();
  assert.deepEqual(
    s.counts,
    [2, 2, 2, 2],
    'le=1ms gets 0.5 and 1; le=10ms 1.0001 and 10; le=100ms 99 and 100; +Inf the rest',
  );
  assert.equal(s.count, 8, 'count');
  assert.ok(Math.abs(s.sum - (0.5 + 1 + 1.0001 + 10 + 99 + 100 + 100.5 + 5000) / 1000) < 1e-9, 'sum in seconds');
});

test('rendering is cumulative with +Inf equal to the count; merge adds bucket by bucket', () => {
  const a = new Histogram([0.001, 0.01]);
  const b = new Histogram([0.001, 0.01]);
  a.observeMs(0.2);
  a.observeMs(5);
  b.observeMs(50);
  const other = new Histogram([0.5]);
  other.observeMs(1);
  const m = mergeHistograms([a.snapshot(), undefined, b.snapshot(), other.snapshot()]);
  assert.deepEqual(m.counts, [1, 1, 1], 'merged per bucket; a snapshot with other bounds is skipped');
  assert.equal(m.count, 3, 'merged count');
  const lines = renderHistogram('x_seconds', 'help', { node: 'n1' }, m);
  assert.deepEqual(
    lines.slice(2),
    [
      'x_seconds_bucket{node="n1",le="0.001"} 1',
      'x_seconds_bucket{node="n1",le="0.01"} 2',
      'x_seconds_bucket{node="n1",le="+Inf"} 3',
      `x_seconds_sum{node="n1"} ${m.sum}`,
      'x_seconds_count{node="n1"} 3',
    ],
    'Prometheus text',
  );
  assert.equal(lines[1], '# TYPE x_seconds histogram', 'type line');
});

test('RecentSamples: p99 of the window only, and none from too few samples', () => {
  const r = new RecentSamples(256, 1_000);
  assert.equal(r.p99(0), null, 'no sample, no figure');
  for (let i = 0; i < 99; i++) r.add(1, 0);
  r.add(50, 0);
  assert.equal(r.p99(10), 50, 'the worst of 100 is their p99');
  assert.equal(r.p99(10, 101), null, 'fewer samples than asked for: no figure');
  assert.equal(r.p99(2_000), null, 'samples older than the window do not count');
  r.add(7, 1_500);
  assert.equal(r.p99(2_000), 7);
});
