// Admission control: beyond the node's pending-proposal limits, new proposals fail at once with a
// retryable Overloaded (nothing proposed, nothing applied) instead of queueing without bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode } from '../../src/runtime/node.js';
import type { RuntimeError } from '../../src/runtime/errors.js';
import { freePorts, until } from '../helpers/net.js';

test('a burst beyond maxPendingProposals is refused with Overloaded; refused writes never apply; admitted ones all do', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-overload-'));
  const [port] = await freePorts(1);
  const node = await startNode({
    id: 'n1',
    dataDir: root,
    listen: `127.0.0.1:${port}`,
    peers: {},
    groups: 4,
    workers: 1,
    tickMs: 20,
    limits: { maxPendingProposals: 40 },
  });
  try {
    await until('groups led', async () => (await node.status()).leaders === 4, 20_000);
    const enc = new TextEncoder();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 600 }, (_, i) => node.kv.put(enc.encode(`k${i}`), enc.encode(`v${i}`))),
    );
    const refused = outcomes.map((o, i) => [o, i] as const).filter(([o]) => o.status === 'rejected');
    const admitted = outcomes.length - refused.length;
    assert.ok(refused.length > 0, 'some proposals were refused');
    assert.ok(admitted >= 40, `at least the limit was admitted: ${admitted}`);
    for (const [o] of refused) {
      const e = (o as PromiseRejectedResult).reason as RuntimeError;
      assert.equal(e.code, 'Overloaded', `refused with Overloaded, not ${e.code}: ${e.message}`);
      assert.equal(e.retryable, true, 'Overloaded is retryable');
    }
    const dec = new TextDecoder();
    for (let i = 0; i < outcomes.length; i += 7) {
      const v = await node.kv.get(enc.encode(`k${i}`));
      if (outcomes[i].status === 'fulfilled') assert.equal(v && dec.decode(v), `v${i}`, `admitted write k${i} applied`);
      else assert.equal(v, null, `refused write k${i} never applied`);
    }
    assert.ok((await node.status()).runtime.overloaded === refused.length, 'every refusal counted');
    await node.kv.put(enc.encode('after'), enc.encode('ok')); // the budget came back
  } finally {
    await node.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
