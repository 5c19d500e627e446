// A shard's leader change summary: nothing while nothing changes, one info line per
// LEADER_SUMMARY_MS with the changes by cause and the groups led, and what is left when it stops.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { LEADER_SUMMARY_MS, ShardReports } from '../../src/runtime/shardreports.js';
import { memoryLogger } from '../helpers/log.js';

test('leader changes are summed up once per interval, and on stop', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { logger, lines } = memoryLogger('debug');
    const r = new ShardReports('n1', new Map(), new Set(), undefined, () => true, logger);
    const summaries = () => lines.filter((l) => String(l.msg).startsWith('leaders changed'));
    mock.timers.tick(3 * LEADER_SUMMARY_MS);
    assert.equal(summaries().length, 0, 'nothing changed: nothing written');
    r.leadersChanged(1, 'election');
    r.leadersChanged(1, 'election');
    r.leadersChanged(-1, 'transfer');
    r.leadersChanged(0, 'failover');
    r.leadersChanged(0, null); // a leader lost, none known yet: not a change to count
    mock.timers.tick(LEADER_SUMMARY_MS - 1);
    assert.equal(summaries().length, 0, 'not before the interval');
    mock.timers.tick(1);
    assert.equal(summaries().length, 1);
    const [s] = summaries();
    assert.equal(s.level, 30);
    assert.equal(s.msg, 'leaders changed: 4 groups (transfer 1, election 2, failover 1), now leading 1');
    assert.deepEqual([s.changed, s.transfer, s.election, s.failover, s.leading], [4, 1, 2, 1, 1]);
    mock.timers.tick(5 * LEADER_SUMMARY_MS);
    assert.equal(summaries().length, 1, 'quiet again: no line');
    r.leadersChanged(1, 'transfer');
    r.stop();
    assert.equal(summaries().length, 2, 'the last changes are written when the shard stops');
    assert.equal(summaries()[1].msg, 'leaders changed: 1 group (transfer 1, election 0, failover 0), now leading 2');
    mock.timers.tick(LEADER_SUMMARY_MS);
    assert.equal(summaries().length, 2, 'and not again');
  } finally {
    mock.timers.reset();
  }
});
