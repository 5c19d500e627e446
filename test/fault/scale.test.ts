// Scale: 3 nodes x 10,000 groups (three shards in this process, over LMDB) elect every group and
// then go quiet: every replica quiesces and no message flows while idle, however long.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogStore } from '../../src/storage/logstore.js';
import { Shard } from '../../src/runtime/shard.js';
import type { Message, NodeId } from '../../src/raft/types.js';
import { until } from '../helpers/net.js';

const GROUPS = 10_000;
const IDS: NodeId[] = ['n1', 'n2', 'n3'];

test('3 nodes x 10,000 groups elect every group, then every replica quiesces and the network goes silent', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-scale-'));
  const shards = new Map<NodeId, Shard>();
  const stores: LogStore[] = [];
  let messages = 0;
  const send = (to: NodeId, ms: Message[]) => {
    messages += ms.length;
    setImmediate(() => shards.get(to)?.receive(ms));
  };
  const t0 = performance.now();
  try {
    for (const id of IDS) {
      // noSync: this test is about protocol behaviour at scale; fsync cost is in the benchmarks.
      const store = await LogStore.open({ path: join(root, id), noSync: true });
      stores.push(store);
      const s = Shard.open({ nodeId: id, store, send, tickMs: 100, seed: 3 });
      for (let g = 1; g <= GROUPS; g++) s.createGroup(g, { voters: IDS, learners: [] });
      shards.set(id, s);
      s.start();
    }
    const count = (pred: (s: Shard, g: number) => boolean) => {
      let n = 0;
      for (const s of shards.values()) for (const g of s.groupIds()) if (pred(s, g)) n++;
      return n;
    };
    await until('every group elected', () => count((s, g) => s.status(g).role === 'leader') === GROUPS, 240_000, 500);
    const elected = performance.now() - t0;
    await until('every replica quiesced', () => count((s, g) => s.status(g).quiesced) === 3 * GROUPS, 120_000, 500);
    const quiet = performance.now() - t0;
    // Each group has exactly one leader, and no group has two.
    for (let g = 1; g <= GROUPS; g += 97) {
      assert.equal(IDS.filter((id) => shards.get(id)!.status(g).role === 'leader').length, 1, `group ${g}`);
    }
    const before = messages;
    const cpu0 = process.cpuUsage();
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, 3000));
    const cpu = process.cpuUsage(cpu0);
    const idlePct = (100 * (cpu.user + cpu.system)) / 1000 / (performance.now() - w0);
    assert.equal(messages - before, 0, 'no message at all while every group is quiesced');
    t.diagnostic(`elected in ${(elected / 1000).toFixed(1)} s, all quiesced at ${(quiet / 1000).toFixed(1)} s; ` +
      `idle: ${idlePct.toFixed(1)}% of one core for all three nodes; rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`);
  } finally {
    for (const s of shards.values()) await s.stop();
    for (const s of stores) await s.close();
    rmSync(root, { recursive: true, force: true });
  }
});
