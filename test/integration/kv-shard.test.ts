// The built-in KV under real shard loops (three shards over their own LMDB stores, an in-memory
// network): a committed entry whose command does not decode is refused on every replica and the
// group goes on; an entry whose bytes fail their CRC-32 stops each shard that applies it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogStore } from '../../src/storage/logstore.js';
import { Writer } from '../../src/storage/codec.js';
import { encodeCommand } from '../../src/storage/session.js';
import { Shard } from '../../src/runtime/shard.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import { rejectionError } from '../../src/runtime/statemachine.js';
import type { Message, NodeId } from '../../src/raft/types.js';
import { until } from '../helpers/net.js';
import { memoryLogger } from '../helpers/log.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const IDS: NodeId[] = ['n1', 'n2', 'n3'];
const GROUP = 1;

interface Replica {
  shard: Shard;
  store: LogStore;
  lines: Record<string, unknown>[];
}

/** Three shards with one group, elected; `fn` runs against the leader's shard. */
async function withGroup(fn: (leader: Shard, replicas: Map<NodeId, Replica>) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-kv-shard-'));
  const replicas = new Map<NodeId, Replica>();
  try {
    for (const id of IDS) {
      const store = await LogStore.open({ path: join(root, id), noSync: true });
      const { logger, lines } = memoryLogger('warn');
      const shard = Shard.open({
        nodeId: id,
        store,
        send: (to: NodeId, msgs: Message[]) => setImmediate(() => replicas.get(to)?.shard.receive(msgs)),
        tickMs: 10,
        raft: { electionTicks: 10 },
        seed: 3,
        requestTimeoutMs: 5000,
        logger,
      });
      replicas.set(id, { shard, store, lines });
      shard.createGroup(GROUP, { voters: IDS, learners: [] });
      shard.start();
    }
    const leaderOf = () => [...replicas.values()].filter((r) => r.shard.status(GROUP).role === 'leader');
    await until('a leader', () => leaderOf().length === 1, 30_000);
    await fn(leaderOf()[0].shard, replicas);
  } finally {
    for (const r of replicas.values()) await r.shard.stop();
    for (const r of replicas.values()) await r.store.close().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}

const put = (key: string, value: string) => ({ op: 'put' as const, key: enc.encode(key), value: enc.encode(value) });

test('a committed KV entry that does not decode is refused with StateMachineError on every replica; later writes apply', async () => {
  await withGroup(async (leader, replicas) => {
    await leader.propose(GROUP, put('k', 'before'));
    // Entry data no client can make (the node validates what it proposes): an unknown op byte.
    const malformed = encodeCommand(null, Uint8Array.from([0x87, 1, 0, 0, 0, 0x6b]));
    const result = await leader.propose(GROUP, malformed);
    const err = rejectionError(result);
    assert.ok(err instanceof RuntimeError, 'the proposer gets a rejection');
    assert.equal(err.code, 'StateMachineError');
    assert.match(err.message, /^malformed KV command at index \d+ of group 1: .*unknown kv op byte 135/);
    const index = Number(/at index (\d+)/.exec(err.message)![1]);
    // The shard goes on: later writes apply, on every replica.
    assert.deepEqual(await leader.propose(GROUP, put('k', 'after')), { op: 'put' });
    for (const [id, r] of replicas) {
      await r.shard.readBarrier(GROUP);
      assert.equal(dec.decode(r.shard.get(GROUP, enc.encode('k')) ?? new Uint8Array()), 'after', id);
      assert.equal(r.shard.stats.malformedEntries, 1, `${id} counted it`);
      const warned = r.lines.filter((l) => l.group === GROUP && l.index === index);
      assert.equal(warned.length, 1, `${id} warned once, naming group and index`);
      assert.equal(warned[0].level, 40);
    }
  });
});

test('a committed KV entry whose bytes fail their CRC-32 stops each shard that applies it', async () => {
  await withGroup(async (leader, replicas) => {
    await leader.propose(GROUP, put('k', 'before'));
    // A put as older versions wrote it (ending in a CRC-32), with a byte changed after the CRC.
    const w = new Writer();
    w.u8(0);
    w.bytes(enc.encode('k'));
    w.bytes(enc.encode('corrupted'));
    const cmd = w.finish();
    cmd[6] ^= 1;
    await assert.rejects(
      leader.propose(GROUP, encodeCommand(null, cmd)),
      (e: unknown) => e instanceof RuntimeError && e.code === 'StorageFailed' && /checksum mismatch/.test(e.message),
    );
    await assert.rejects(
      leader.propose(GROUP, put('k', 'later')),
      (e: unknown) => (e as RuntimeError).code === 'Stopped',
    );
    // The entry is committed, so a follower holding it wins the next election, commits it again
    // in its term and applies it: it stops too. No replica skips the entry or applies past it.
    const failed = (r: Replica) => r.lines.some((l) => l.msg === 'shard failed; stopping');
    const leaderId = [...replicas].find(([, r]) => r.shard === leader)![0];
    for (const [id, r] of replicas) if (id !== leaderId) r.shard.peerDown(leaderId);
    await until('a second replica stopped', () => [...replicas.values()].filter(failed).length >= 2, 30_000);
    for (const [id, r] of replicas) {
      for (const l of r.lines.filter((x) => x.msg === 'shard failed; stopping'))
        assert.match(JSON.stringify(l.err), /checksum mismatch/, id);
      assert.equal(r.shard.stats.malformedEntries, 0, id);
      assert.equal(dec.decode(r.shard.get(GROUP, enc.encode('k')) ?? new Uint8Array()), 'before', id);
    }
  });
});
