// The stability advisor: each check fires exactly when its rule says, and says what to change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoopTiming } from '../../src/runtime/looptiming.js';
import { adviseStability, type StabilityInputs } from '../../src/runtime/advisor.js';

const calm: StabilityInputs = {
  electionMs: 1000,
  heartbeatMs: 100,
  rttP99Ms: 2,
  commitP99Ms: 8,
  evenVoterGroups: [],
  leaderChangesLastMinute: 3,
  leaderChangesBaselinePerMinute: 2,
};
const kinds = (i: Partial<StabilityInputs>) => adviseStability({ ...calm, ...i }).map((w) => w.kind);

test('a calm, well-budgeted cluster gets no warning', () => {
  assert.deepEqual(adviseStability(calm), []);
  assert.deepEqual(kinds({ rttP99Ms: null, commitP99Ms: null }), [], 'nothing measured yet: nothing to say');
});

test('timing budget: broadcast p99 within 10x of the election timeout warns with the timeout to use', () => {
  assert.deepEqual(kinds({ rttP99Ms: 40, commitP99Ms: 59 }), [], '99 ms x 10 < 1000 ms');
  const w = adviseStability({ ...calm, rttP99Ms: 40, commitP99Ms: 61 });
  assert.deepEqual(
    w.map((x) => x.kind),
    ['TimingBudget'],
  );
  assert.match(w[0].message, /p99 broadcast time 101\.0 ms .* within 10x of the 1000 ms election timeout/);
  assert.match(w[0].fix, /at least 1010 ms/);
});

test('even voter counts and flapping', () => {
  const w = adviseStability({ ...calm, evenVoterGroups: [4, 9] });
  assert.deepEqual(
    w.map((x) => x.kind),
    ['EvenVoters'],
  );
  assert.match(w[0].message, /2 group\(s\) have an even number of voters \(e\.g\. 4, 9\)/);
  assert.deepEqual(
    kinds({ leaderChangesLastMinute: 9, leaderChangesBaselinePerMinute: 1 }),
    [],
    'under the absolute minimum',
  );
  assert.deepEqual(kinds({ leaderChangesLastMinute: 30, leaderChangesBaselinePerMinute: 2 }), ['Flapping']);
  assert.deepEqual(
    kinds({ leaderChangesLastMinute: 30, leaderChangesBaselinePerMinute: 12 }),
    [],
    'within 3x of the usual rate',
  );
});

test('unstable (planned moves refused): flapping, or a broadcast as long as the election timeout; not a mere warning', () => {
  const unstable = (i: Partial<StabilityInputs>) =>
    adviseStability({ ...calm, ...i })
      .filter((w) => w.unstable)
      .map((w) => w.kind);
  assert.deepEqual(unstable({ rttP99Ms: 40, commitP99Ms: 61 }), [], 'a 10x budget warning is advice, not instability');
  assert.deepEqual(unstable({ rttP99Ms: 100, commitP99Ms: 899 }), [], '999 ms < 1000 ms');
  assert.deepEqual(unstable({ rttP99Ms: 100, commitP99Ms: 900 }), ['TimingBudget']);
  assert.deepEqual(unstable({ leaderChangesLastMinute: 30, leaderChangesBaselinePerMinute: 2 }), ['Flapping']);
  assert.deepEqual(unstable({ evenVoterGroups: [4] }), [], 'even voter counts are a shape to fix, not instability');
});

test('heartbeat shorter than the round trip warns; the event loop counts in the broadcast time', () => {
  assert.deepEqual(kinds({ electionMs: 10_000, rttP99Ms: 100 }), [], 'equal is fine');
  const w = adviseStability({ ...calm, electionMs: 10_000, rttP99Ms: 101 });
  assert.deepEqual(
    w.map((x) => x.kind),
    ['HeartbeatBelowRtt'],
  );
  assert.match(w[0].fix, /at least 101 ms/);
  assert.equal(w[0].unstable, false);
  assert.deepEqual(kinds({ eventLoopP99Ms: 89 }), [], '2 + 8 + 89 = 99 ms, within budget');
  const late = adviseStability({ ...calm, eventLoopP99Ms: 91 });
  assert.deepEqual(
    late.map((x) => x.kind),
    ['TimingBudget'],
  );
  assert.match(late[0].message, /\+ event-loop delay 91\.0\)/);
});

test('nodes running different timing are named, with the settings to align', () => {
  assert.deepEqual(kinds({ peerTiming: { n2: { electionMs: 1000, heartbeatMs: 100 } } }), [], 'the same timing');
  const w = adviseStability({
    ...calm,
    peerTiming: { n2: { electionMs: 1000, heartbeatMs: 100 }, n3: { electionMs: 2000, heartbeatMs: 200 } },
  });
  assert.deepEqual(
    w.map((x) => x.kind),
    ['TimingMismatch'],
  );
  assert.match(w[0].message, /this node 100 ms heartbeat \/ 1000 ms election timeout; n3 200 \/ 2000 ms/);
  assert.doesNotMatch(w[0].message, /n2/);
});

test('event-loop delay: a start-up stall shows as the max, not as a p99 of too few samples', async () => {
  const lt = new LoopTiming();
  try {
    await new Promise((r) => setTimeout(r, 150));
    const until = performance.now() + 400;
    while (performance.now() < until) {
      /* a stall, as opening storage and starting workers make */
    }
    await new Promise((r) => setTimeout(r, 250));
    const e = lt.eventLoop();
    assert.ok(e.maxMs >= 150, `the stall is seen: max ${e.maxMs} ms`);
    assert.equal(e.p99Ms, 0, 'but a handful of samples makes no p99 for the timing budget');
  } finally {
    lt.stop();
  }
});
