// Transfer preflight on the target's own word: quorum by its links, disk and CPU against the
// leader's. Each rule fires exactly at its threshold, and says nothing when unmeasured or stale.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PREFLIGHT, fresh, reachesQuorum, slowerThanLeader, type NodeView } from '../../src/runtime/preflight.js';

const view = (o: Partial<NodeView>): NodeView => ({ reach: [], fsyncP99Ms: 2, cpu: 0.2, at: 1_000, ...o });

test("quorum by the target's own links", () => {
  const voters = ['n1', 'n2', 'n3', 'n4', 'n5'];
  assert.equal(reachesQuorum('n2', voters, ['n1', 'n3']), true, 'itself and two others: 3 of 5');
  assert.equal(reachesQuorum('n2', voters, ['n1']), false, '2 of 5');
  assert.equal(reachesQuorum('n2', voters, ['n1', 'n9', 'n8']), false, 'links to non-voters do not count');
  assert.equal(reachesQuorum('n2', voters, null), null, 'unknown when it has not said');
  assert.equal(reachesQuorum('n2', ['n1', 'n2', 'n3'], ['n3']), true);
});

test('slow target: disk by ratio and margin, CPU by level and margin', () => {
  assert.equal(slowerThanLeader(view({ fsyncP99Ms: 2 }), view({ fsyncP99Ms: 8 })), null, '4x but only 6 ms worse');
  assert.equal(slowerThanLeader(view({ fsyncP99Ms: 10 }), view({ fsyncP99Ms: 39 })), null, 'under 4x');
  assert.match(
    slowerThanLeader(view({ fsyncP99Ms: 10 }), view({ fsyncP99Ms: 40 })) ?? '',
    /fsync p99 is 40\.0 ms against the leader's 10\.0 ms/,
  );
  assert.equal(
    slowerThanLeader(view({ cpu: 0.7 }), view({ cpu: 0.95 })),
    null,
    'busy, but within the margin of a busy leader',
  );
  assert.match(
    slowerThanLeader(view({ cpu: 0.5 }), view({ cpu: 0.9 })) ?? '',
    /90% of its CPU against the leader's 50%/,
  );
  assert.equal(
    slowerThanLeader(view({ fsyncP99Ms: null, cpu: null }), view({ fsyncP99Ms: 500, cpu: 1 })),
    null,
    'nothing to compare with',
  );
  assert.equal(slowerThanLeader(null, view({ fsyncP99Ms: 500 })), null);
});

test('a view older than a few summary rounds says nothing', () => {
  const v = view({ at: 1_000 });
  assert.equal(fresh(v, 1_000 + PREFLIGHT.maxViewAgeMs), v);
  assert.equal(fresh(v, 1_001 + PREFLIGHT.maxViewAgeMs), null);
  assert.equal(fresh(undefined, 0), null);
});
