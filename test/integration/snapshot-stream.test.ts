// Snapshot streaming between real nodes (three in one process, over TCP): a follower that was
// down while its group's log was compacted past it catches up from a snapshot streamed in many
// small chunks, ends with the leader's data, and no frame on any link came near the snapshot's
// size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNode, type FlotillaNode, type StartOptions } from '../../src/runtime/node.js';
import type { ShardEntry } from '../../src/runtime/status.js';
import { freePorts, until } from '../helpers/net.js';

const IDS = ['n1', 'n2', 'n3'];
const CHUNK = 64 * 1024;
const VALUE = 16 * 1024;
const KEYS = 256; // 4 MiB of values: 64 chunks and more

type Streams = NonNullable<Extract<ShardEntry, { up: true }>['snapshots']>;

async function streams(n: FlotillaNode): Promise<Streams> {
  const st = await n.status();
  const sum: Record<string, number> = {};
  for (const s of st.shards) {
    if (!s.up || !s.snapshots) continue;
    for (const [k, v] of Object.entries(s.snapshots)) sum[k] = (sum[k] ?? 0) + v;
  }
  return sum as unknown as Streams;
}

function valueAt(i: number, round: number): string {
  return `${round}:${i}:`.padEnd(VALUE, String.fromCharCode(97 + ((i + round) % 26)));
}

for (const workers of [0, 1])
  test(`a follower behind a compacted log catches up from a streamed snapshot of several MiB (workers: ${workers})`, async () => {
    const root = mkdtempSync(join(tmpdir(), 'flotilla-snap-'));
    const ports = await freePorts(3);
    const addr = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    const optsOf = (id: string): StartOptions => ({
      id,
      dataDir: join(root, id),
      listen: addr.get(id)!,
      groups: 1,
      tickMs: 20,
      workers,
      noSync: true,
      requestTimeoutMs: 20_000,
      snapshotStream: { chunkBytes: CHUNK, window: 4 },
      peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
    });
    const nodes = new Map<string, FlotillaNode>();
    try {
      for (const id of IDS) nodes.set(id, await startNode(optsOf(id)));
      const n1 = nodes.get('n1')!;
      await n1.kv.put('hello', 'world');
      // n3 goes away; the group moves on without it and compacts its log past what n3 has.
      await nodes.get('n3')!.stop();
      nodes.delete('n3');
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < KEYS; i += 16) {
          const puts = [];
          for (let j = i; j < i + 16; j++) puts.push(n1.kv.put(`key-${j}`, valueAt(j, round)));
          await Promise.all(puts);
        }
      }
      await n1.kv.delete('key-0');
      // The state machine flushes every 3 s; compaction follows the flush and a few more writes.
      await sleep(3_500);
      for (let i = 0; i < 80; i++) await n1.kv.put(`tail-${i}`, `t${i}`);
      const leaderFirst = async () => {
        for (const n of nodes.values()) {
          const g = (await n.status({ detail: true })).perGroup?.find((v) => v.group === 1 && v.role === 'leader');
          if (g) return g;
        }
        return null;
      };
      await until('the leader compacted its log', async () => ((await leaderFirst())?.firstIndex ?? 0) > 100, 20_000);

      const n3 = await startNode(optsOf('n3'));
      nodes.set('n3', n3);
      await until('n3 installed a streamed snapshot', async () => (await streams(n3)).installed >= 1, 60_000);
      // Everything the leader has, n3 has (stale reads: n3's own state).
      await until('n3 has the last write', async () => (await n3.kv.get('tail-79', 'stale')) !== null, 20_000);
      const dec = new TextDecoder();
      for (let i = 0; i < KEYS; i++) {
        const want = await n1.kv.get(`key-${i}`);
        const got = await n3.kv.get(`key-${i}`, 'stale');
        assert.equal(got === null ? null : dec.decode(got), want === null ? null : dec.decode(want), `key-${i}`);
      }
      assert.equal(await n3.kv.get('key-0', 'stale'), null, 'a delete before the snapshot stays deleted');
      assert.equal(dec.decode((await n3.kv.get('hello', 'stale'))!), 'world');

      const metrics = await n3.metrics();
      assert.match(metrics, /flotilla_snapshot_streams_total\{node="n3",outcome="installed"\} [1-9]/);
      const got = await streams(n3);
      assert.ok(got.bytesReceived >= (KEYS - 1) * VALUE, `received ${got.bytesReceived} bytes: the whole state`);
      assert.equal(got.refused, 0);
      let sent = 0;
      for (const id of ['n1', 'n2']) sent += (await streams(nodes.get(id)!)).sent;
      assert.ok(sent >= 1, 'a leader streamed the snapshot');
      // No frame on any link carried the snapshot whole: the largest ones are the test's own
      // batches of appends (16 values), far below the 4 MiB state.
      for (const n of nodes.values()) {
        const t = (await n.status()).transport;
        for (const [peer, p] of Object.entries(t.peers)) {
          assert.ok(p.largestFrameSent < 1024 * 1024, `${n.id} -> ${peer}: largest frame ${p.largestFrameSent}`);
          assert.equal(p.drops.TooLarge ?? 0, 0);
        }
      }
    } finally {
      for (const n of nodes.values()) await n.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
