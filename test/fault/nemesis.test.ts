// A short nemesis run in CI (docs/testing.md documents long ones): three real node processes behind
// test-controlled proxies, clients doing read / write / cas through the HTTP gateway while the
// nemesis kills, pauses, partitions, slows links (latency and jitter) and one node's disk,
// transfers, drains and runs balancer rounds; then every key is read back and the whole history
// must be linearizable, with one leader per group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNemesis, FAULTS } from '../nemesis/run.js';

test('nemesis: 3 nodes under every fault kind stay linearizable and lose no acknowledged write', async () => {
  const seed = Number(process.env.NEMESIS_SEED ?? Date.now() % 100_000);
  const out = mkdtempSync(join(tmpdir(), 'flotilla-nemesis-out-'));
  const lines: string[] = [];
  try {
    const r = await runNemesis({
      nodes: 3,
      groups: 60,
      time: 45,
      faults: [...FAULTS],
      seed,
      keys: 100,
      clients: 8,
      out,
      log: (l) => lines.push(l),
    });
    const replay = `replay: NEMESIS_SEED=${seed} or npm run nemesis -- --nodes 3 --groups 60 --time 45 --keys 100 --clients 8 --seed ${seed}`;
    process.stdout.write(`# ${lines.at(-1)}\n`);
    assert.equal(r.verdict, 'ok', `linearizable (${replay}): ${r.checker}\n${lines.slice(-15).join('\n')}`);
    assert.equal(r.finalReads, 100, `every key read back after healing (${replay})`);
    assert.ok(r.leadersOk, `one leader per group (${replay}): ${r.leaderProblems.join('; ')}`);
    assert.ok(r.ok > 500, `real load: ${r.ok} ok operations`);
    assert.ok(Object.values(r.faults).reduce((a, b) => a + b, 0) >= 5, `faults injected: ${JSON.stringify(r.faults)}`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
