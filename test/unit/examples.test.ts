// Every example in examples/ runs and reports success (they are what users copy from).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('examples/raft-core-in-memory.ts runs and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/raft-core-in-memory.ts'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /OK: all replicas applied the same commands; leadership moved/);
  assert.match(r.stdout, /transfer to n\d completed after 0 ticks/);
});

test('examples/bank-ledger/run.ts runs a 3-node ledger and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/bank-ledger/run.ts'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /\d+ transfers applied, \d+ rejected for insufficient funds/);
  assert.match(r.stdout, /OK: money conserved in all 8 branches on every node/);
});
