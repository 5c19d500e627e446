import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { NODE_FLAGS, SEMI_SPACE_MB, semiSpaceConfigured, shardWorkerLimits } from '../../src/runtime/heap.js';

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
  assert.equal(semiSpaceConfigured(['--import', 'tsx', '--max-old-space-size=8192'], '--max-old-space-size=4096'), false);
  assert.equal(semiSpaceConfigured(['--max-semi-space-size=32'], ''), true);
  assert.equal(semiSpaceConfigured(['--max_semi_space_size=32'], ''), true);
  assert.equal(semiSpaceConfigured([], '--enable-source-maps --max-semi-space-size=64'), true);
});
