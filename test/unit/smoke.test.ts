import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster } from '../helpers/cluster.js';

test('three nodes elect a leader and replicate a proposal', () => {
  const c = new TestCluster(['a', 'b', 'c']);
  c.elect('a');
  assert.equal(c.leader(), 'a');
  const r = c.propose('a', 'x=1');
  assert.equal(r.ok, true);
  c.stabilize();
  for (const id of ['a', 'b', 'c']) assert.deepEqual(c.appliedData(id), ['x=1']);
});

test('election by timeout with prevote', () => {
  const c = new TestCluster(['a', 'b', 'c'], { seed: 3 });
  c.tickAll(25);
  const l = c.leader();
  assert.ok(l, 'a leader is elected by ticks alone');
  assert.equal(c.node(l!).status().term, 1);
});
