// Every example in examples/ runs and reports success (they are what users copy from).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('examples/raft-core-in-memory.ts runs and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/raft-core-in-memory.ts'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /OK: all replicas applied the same commands; leadership moved/);
  assert.match(r.stdout, /transfer to n\d completed after 0 ticks/);
});

test('examples/bank-ledger/run.ts runs a 3-node ledger and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/bank-ledger/run.ts'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /\d+ transfers applied, \d+ rejected for insufficient funds/);
  assert.match(r.stdout, /OK: money conserved in all 8 branches on every node/);
});

test('examples/notes-service.ts serves notes from an embedded 3-node cluster and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/notes-service.ts'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /moved group \d+ from n\d to n2 in [\d.]+ ms \(verified\)/);
  assert.match(r.stdout, /OK: 20 notes written through the service and read back linearizably after a leader moved/);
});

test('examples/grow-and-shrink.ts adds a node and decommissions one under writes and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/grow-and-shrink.ts'], {
    encoding: 'utf8',
    timeout: 180_000,
  });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /n4 joined cluster [0-9a-f]+: n1=\d+ n2=\d+ n3=\d+ n4=0/);
  assert.match(r.stdout, /balanced \d+ ms after the join: n1=\d+ n2=\d+ n3=\d+ n4=\d+/);
  assert.match(r.stdout, /n1 removed \d+ ms after its decommission: n1=0\(removed\)/);
  assert.match(r.stdout, /writes: \d+ acknowledged, 0 failed/);
  assert.match(r.stdout, /OK: n4 joined and was filled, n1 was emptied and removed/);
});

test('examples/rolling-maintenance/run.sh restarts every node with a plain SIGTERM (it drains itself) with no failed write', () => {
  const r = spawnSync('bash', ['examples/rolling-maintenance/run.sh'], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  for (const n of ['n1', 'n2', 'n3']) {
    assert.match(
      r.stdout,
      new RegExp(`${n} exited 0 after \\d+ ms \\(stop drain: moved \\d+, failed 0\\); the others lead: .* sum=200`),
      `${n} handed every leadership over before it exited`,
    );
  }
  assert.match(
    r.stdout,
    /leaders spread back by the balancer \d+ ms after the last restart: n1=\d+ n2=\d+ n3=\d+ sum=200/,
  );
  assert.match(r.stdout, /writes: \d+ acknowledged, 0 failed/);
  assert.match(
    r.stdout,
    /OK: rolling maintenance with plain restarts done on n1, n2, n3 in \d+ s with no failed write/,
  );
});

test('examples/balancer/run.ts meets its locality preferences and weights and ends with OK', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/balancer/run.ts'], {
    encoding: 'utf8',
    timeout: 180_000,
  });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /OK: all 33 preferred groups led in their preferred zone; weights respected/);
});

test('examples/tls-cluster/run.sh runs 3 nodes over mutual TLS from config files and refuses an intruder', () => {
  const r = spawnSync('bash', ['examples/tls-cluster/run.sh'], { encoding: 'utf8', timeout: 180_000 });
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout.slice(-3000)}\n${r.stderr}`);
  assert.match(r.stdout, /"reason":"TlsFailed"/, 'the intruder is refused in the TLS handshake, with a log line');
  assert.match(r.stdout, /peers of n1 while the intruder runs: \[n2\]/);
  assert.match(
    r.stdout,
    /OK: 3 nodes over mutual TLS with a cluster secret; 10 writes read back on n3; the intruder's certificate was refused/,
  );
});
