// The benchmark runner's command line: scenarios, options and usage errors, parsed without
// running anything.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBenchArgs } from '../../src/bench/args.js';

test('--rate gives the open-loop sweep its rates, sorted; bad rates are usage errors', () => {
  const r = parseBenchArgs(['throughput', '--rate', '20000,5000']);
  assert.equal(r.kind, 'run');
  if (r.kind === 'run') {
    assert.deepEqual(r.args.rates, [5000, 20000]);
    assert.deepEqual(r.args.order, ['throughput']);
  }
  const none = parseBenchArgs(['throughput']);
  assert.ok(none.kind === 'run' && none.args.rates === undefined);
  for (const bad of ['0', 'fast', '5000,', '1.5'])
    assert.deepEqual(parseBenchArgs(['--rate', bad]).kind, 'usage', `--rate ${bad}`);
});

test('scenario aliases resolve, repeat is bounded, help wins', () => {
  const r = parseBenchArgs(['etcd', 'raft-core', '--repeat', '3']);
  assert.ok(r.kind === 'run');
  if (r.kind === 'run') {
    assert.deepEqual(r.args.order, ['micro', 'http']);
    assert.equal(r.args.repeat, 3);
  }
  assert.equal(parseBenchArgs(['--repeat', '21']).kind, 'usage');
  assert.equal(parseBenchArgs(['--bogus']).kind, 'usage');
  assert.equal(parseBenchArgs(['--help', '--bogus']).kind, 'usage');
  assert.equal(parseBenchArgs(['-h']).kind, 'help');
});
