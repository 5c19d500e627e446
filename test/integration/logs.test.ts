// What a node writes to the logger its embedder gives startNode: the lines of shards on worker
// threads arrive there (bound to the node and the worker), leader changes are one info summary
// per shard with the per-group lines at debug, and no line carries a key twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode } from '../../src/runtime/node.js';
import { duplicateKeys, memoryLogger } from '../helpers/log.js';
import { freePorts, until } from '../helpers/net.js';

async function oneNode(workers: number, level: string) {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-logs-'));
  const [port] = await freePorts(1);
  const mem = memoryLogger(level);
  const node = await startNode({
    id: 'n1',
    dataDir: join(root, 'n1'),
    listen: `127.0.0.1:${port}`,
    groups: 3,
    workers,
    tickMs: 20,
    peers: {},
    logger: mem.logger,
  });
  await until('every group led', async () => (await node.status()).leaders === 3, 20_000);
  await node.stop();
  rmSync(root, { recursive: true, force: true });
  return mem;
}

test('worker threads log through the logger given to startNode', async () => {
  const { lines, raw } = await oneNode(1, 'info');
  const started = lines.find((l) => l.msg === 'shard started');
  assert.ok(started, 'the shard on the worker thread logged its start');
  assert.equal(started.node, 'n1');
  assert.equal(started.worker, 0);
  assert.equal(started.groups, 3);
  assert.equal(started.pid, process.pid, "the embedder's logger wrote it (its base fields)");
  const summary = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('leaders changed'));
  assert.ok(summary, 'the leader change summary of the worker reached the main logger');
  assert.equal(summary.level, 30);
  assert.equal(summary.worker, 0);
  assert.deepEqual(
    [summary.changed, summary.election, summary.transfer, summary.failover, summary.leading],
    [3, 3, 0, 0, 3],
  );
  assert.equal(summary.msg, 'leaders changed: 3 groups (transfer 0, election 3, failover 0), now leading 3');
  assert.equal(lines.filter((l) => l.msg === 'leader changed').length, 0, 'no per-group line at info');
  for (const l of raw) assert.deepEqual(duplicateKeys(l), [], l);
});

test('per-group leader changes are debug lines; the summary is info (shards on the main thread)', async () => {
  const { lines, raw } = await oneNode(0, 'debug');
  const perGroup = lines.filter((l) => l.msg === 'leader changed');
  assert.deepEqual(perGroup.map((l) => l.group).sort(), [1, 2, 3]);
  for (const l of perGroup) {
    assert.equal(l.level, 20);
    assert.equal(l.leader, 'n1');
    assert.equal(l.cause, 'election');
  }
  const summaries = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('leaders changed'));
  assert.equal(summaries.length, 1);
  assert.equal(summaries[0].level, 30);
  assert.equal(summaries[0].changed, 3);
  assert.equal(summaries[0].worker, 0);
  for (const l of raw) assert.deepEqual(duplicateKeys(l), [], l);
});
