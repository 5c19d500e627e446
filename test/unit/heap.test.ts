import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  IdleCollector,
  NODE_FLAGS,
  SEMI_SPACE_MB,
  semiSpaceConfigured,
  shardWorkerLimits,
  threadProbe,
} from '../../src/runtime/heap.js';

test('the flotilla executable keeps a portable shebang (flags go through NODE_OPTIONS)', () => {
  // `env -S node --flag` is not understood by every env (BusyBox's, as on Alpine, has no -S).
  assert.equal(readFileSync('src/cli/main.ts', 'utf8').split('\n')[0], '#!/usr/bin/env node');
  assert.equal(semiSpaceConfigured([], NODE_FLAGS.join(' ')), true, 'NODE_FLAGS work as NODE_OPTIONS');
});

test('a shard worker gets three semi-spaces of young generation', () => {
  assert.deepEqual(shardWorkerLimits(), { maxYoungGenerationSizeMb: 3 * SEMI_SPACE_MB });
  assert.ok(NODE_FLAGS.includes(`--max-semi-space-size=${SEMI_SPACE_MB}`));
});

test('semiSpaceConfigured reads the command line and NODE_OPTIONS', () => {
  assert.equal(semiSpaceConfigured([], ''), false);
  assert.equal(
    semiSpaceConfigured(['--import', 'tsx', '--max-old-space-size=8192'], '--max-old-space-size=4096'),
    false,
  );
  assert.equal(semiSpaceConfigured(['--max-semi-space-size=32'], ''), true);
  assert.equal(semiSpaceConfigured(['--max_semi_space_size=32'], ''), true);
  assert.equal(semiSpaceConfigured([], '--enable-source-maps --max-semi-space-size=64'), true);
});

const MiB = 2 ** 20;

/** A probe whose utilization and heap the test sets; collect() drops the heap to `live`. */
function fakeProbe(heap: number) {
  const p = {
    util: 0,
    heap,
    live: heap,
    /** Committed heap: V8 gives back only part of what one collection freed. */
    committed: heap,
    collections: 0,
    utilization: () => p.util,
    heapUsed: () => p.heap,
    heapCommitted: () => Math.max(p.committed, p.heap),
    collect: () => {
      p.collections++;
      p.committed = Math.max(p.live, Math.round((p.committed + p.live) / 2));
      p.heap = p.live;
    },
  };
  return p;
}

test('an idle thread collects once after its heap grew, not while busy or after small growth', () => {
  const p = fakeProbe(200 * MiB);
  const c = new IdleCollector(p, { quietUtilization: 0.02, minGrowthBytes: 64 * MiB, followUps: 0 });
  p.heap = 250 * MiB; // grew by less than it held after the last collection
  assert.equal(c.check(), false);
  p.heap = 900 * MiB; // a burst: mostly garbage now
  p.util = 0.5; // still busy
  assert.equal(c.check(), false);
  p.util = 0.001;
  assert.equal(c.check(), true);
  assert.equal(p.collections, 1);
  assert.equal(c.stats.collections, 1);
  assert.equal(c.check(), false, 'nothing grew since');
  p.heap = 300 * MiB;
  assert.equal(c.check(), false);
  assert.equal(p.collections, 1);
});

test('a collection V8 ran itself lowers the baseline', () => {
  const p = fakeProbe(400 * MiB);
  const c = new IdleCollector(p, { minGrowthBytes: 64 * MiB, followUps: 0 });
  p.heap = 100 * MiB; // V8 collected on its own
  assert.equal(c.check(), false);
  p.heap = 210 * MiB; // grew by more than 100 MiB (and 64): worth one
  assert.equal(c.check(), true);
});

test('follow-up collections run while most of the committed heap is empty, at most followUps', () => {
  const p = fakeProbe(100 * MiB);
  const c = new IdleCollector(p, { quietUtilization: 0.05, minGrowthBytes: 64 * MiB, followUps: 2 });
  p.heap = 1000 * MiB;
  p.committed = 1000 * MiB;
  p.util = 0.01;
  assert.equal(c.check(), true); // committed 550 MiB for 100 live
  p.util = 0.5;
  assert.equal(c.check(), false, 'not while busy');
  p.util = 0.01;
  assert.equal(c.check(), true); // 325 MiB committed
  assert.equal(c.check(), true); // 212 MiB: the last follow-up
  assert.equal(c.check(), false, 'follow-ups used up');
  assert.equal(p.collections, 3);

  const q = fakeProbe(100 * MiB);
  const d = new IdleCollector(q, { minGrowthBytes: 64 * MiB, followUps: 5 });
  q.heap = 400 * MiB;
  q.committed = 400 * MiB;
  assert.equal(d.check(), true); // committed 250 for 100 live: 150 empty, worth one more
  assert.equal(d.check(), true); // committed 175: 75 empty, less than what is live
  assert.equal(d.check(), false, 'committed heap mostly in use: no more');
  assert.equal(q.collections, 2);
});

test('the thread probe measures this thread and can collect', () => {
  const probe = threadProbe();
  assert.equal(typeof probe.collect, 'function');
  assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'no global gc leaks to scripts');
  let junk: object[] | null = Array.from({ length: 500_000 }, (_, i) => ({ i }));
  const before = probe.heapUsed();
  junk = null;
  probe.collect!();
  assert.ok(probe.heapUsed() < before - 10 * MiB, `heap ${before} -> ${probe.heapUsed()}`);
  const u = probe.utilization();
  assert.ok(u >= 0 && u <= 1);
  void junk;
});
