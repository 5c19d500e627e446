// The worker loop end to end, in one process: three shards (one per node), each over its own LMDB
// LogStore, wired by an in-memory network. Elections, writes, linearizable reads on every node,
// a planned transfer, and a node restart from disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogStore } from '../../src/storage/logstore.js';
import { Shard } from '../../src/runtime/shard.js';
import type { Message, NodeId } from '../../src/raft/types.js';
import { until } from '../helpers/net.js';
import { KvStateMachine, type KvResult } from '../../src/storage/kv.js';
import type { ShardBrief } from '../../src/runtime/protocol.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const IDS: NodeId[] = ['n1', 'n2', 'n3'];
const CONF = { voters: IDS, learners: [] };

class Net {
  shards = new Map<NodeId, Shard>();
  down = new Set<NodeId>();
  send = (from: NodeId) => (to: NodeId, msgs: Message[]) => {
    setImmediate(() => {
      if (this.down.has(from) || this.down.has(to)) return;
      this.shards.get(to)?.receive(msgs);
    });
  };
}

const stores = new Map<NodeId, LogStore>();

/** What a client does with a retryable error (NotLeader, Unavailable, TransferInProgress...):
 *  try again shortly. The runtime will do this itself once client sessions land. */
async function retry<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= 100 || !(e as { retryable?: boolean }).retryable) throw e;
      await sleep(20);
    }
  }
}

async function openNode(
  net: Net,
  dirs: Map<NodeId, string>,
  id: NodeId,
  onBrief?: (b: ShardBrief) => void,
): Promise<Shard> {
  const store = await LogStore.open({ path: dirs.get(id)!, noSync: true });
  stores.set(id, store);
  const shard = Shard.open({
    nodeId: id,
    store,
    send: net.send(id),
    tickMs: 10,
    raft: { electionTicks: 10 },
    seed: 7,
    requestTimeoutMs: 1000,
    onBrief,
  });
  net.shards.set(id, shard);
  shard.start();
  return shard;
}

function leaderOf(net: Net, g: number): NodeId | null {
  const leaders = IDS.filter((id) => net.shards.get(id)?.status(g).role === 'leader');
  return leaders.length === 1 ? leaders[0] : null;
}

test('three shards elect, replicate, read linearizably, transfer and survive a restart', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-shard-'));
  const dirs = new Map(IDS.map((id) => [id, join(root, id)]));
  const net = new Net();
  try {
    for (const id of IDS) {
      const s = await openNode(net, dirs, id);
      for (let g = 1; g <= 20; g++) s.createGroup(g, CONF);
    }
    await until(
      'every group has one leader',
      () => [...Array(20).keys()].every((i) => leaderOf(net, i + 1) !== null),
      120_000,
    );

    // Writes through each group's leader, then linearizable reads on every node.
    for (let g = 1; g <= 20; g++) {
      const r = await retry(() =>
        net.shards
          .get(leaderOf(net, g) ?? 'n1')!
          .propose(g, { op: 'put', key: enc.encode(`k${g}`), value: enc.encode(`v${g}`) }),
      );
      assert.deepEqual(r, { op: 'put' });
    }
    // Each answered proposal is timed once, on the leader that accepted it (a superseded or
    // timed-out attempt is not); every shard timed its storage commits.
    const hist = (k: 'fsync' | 'commit' | 'apply') => IDS.map((id) => net.shards.get(id)!.histograms[k].count);
    assert.equal(
      hist('commit').reduce((a, b) => a + b, 0),
      20,
      `commit latency: one per answered write (${hist('commit')})`,
    );
    assert.equal(
      hist('apply').reduce((a, b) => a + b, 0),
      20,
      `apply latency: one per answered write (${hist('apply')})`,
    );
    assert.ok(
      hist('fsync').every((n) => n > 0),
      `every shard timed its storage commits (${hist('fsync')})`,
    );
    for (const id of IDS) {
      const s = net.shards.get(id)!;
      for (let g = 1; g <= 20; g++) {
        await retry(() => s.readBarrier(g));
        assert.equal(dec.decode(s.get(g, enc.encode(`k${g}`)) ?? new Uint8Array()), `v${g}`, `${id} reads group ${g}`);
      }
    }
    // cas semantics through the log.
    const l1 = net.shards.get(leaderOf(net, 1)!)!;
    const ok = <KvResult | null>(
      await l1.propose(1, { op: 'cas', key: enc.encode('k1'), expected: enc.encode('v1'), value: enc.encode('w1') })
    );
    const bad = <KvResult | null>(
      await l1.propose(1, { op: 'cas', key: enc.encode('k1'), expected: enc.encode('v1'), value: enc.encode('x1') })
    );
    assert.equal(ok && ok.op === 'cas' && ok.swapped, true);
    assert.equal(bad && bad.op === 'cas' && bad.swapped, false);

    // A follower refuses proposals with a leader hint.
    const follower = IDS.find((id) => id !== leaderOf(net, 2))!;
    await assert.rejects(
      net.shards.get(follower)!.propose(2, { op: 'put', key: enc.encode('x'), value: enc.encode('y') }),
      (e: Error & { code?: string; leader?: string }) => e.code === 'NotLeader' && e.leader === leaderOf(net, 2),
    );

    // Planned transfer of group 3 to a chosen follower.
    const from = leaderOf(net, 3)!;
    const to = IDS.find((id) => id !== from)!;
    assert.equal(net.shards.get(from)!.transferLeader(3, to).ok, true);
    await until('transfer of group 3', () => leaderOf(net, 3) === to);
    const after = await retry(() =>
      net.shards.get(to)!.propose(3, { op: 'put', key: enc.encode('k3'), value: enc.encode('moved') }),
    );
    assert.deepEqual(after, { op: 'put' });

    // Restart n1 from disk: its groups come back with their data and catch up.
    const n1 = net.shards.get('n1')!;
    await n1.stop();
    net.down.add('n1');
    // The node-liveness layer (transport peerDown) tells the survivors; quiesced groups whose
    // leader was n1 would otherwise stay quiet, by design (no per-group heartbeats while idle).
    for (const id of ['n2', 'n3']) net.shards.get(id)!.peerDown('n1');
    for (let g = 4; g <= 6; g++) {
      const others = IDS.filter((id) => id !== 'n1');
      await until(
        `group ${g} led without n1`,
        () => others.filter((id) => net.shards.get(id)!.status(g).role === 'leader').length === 1,
      );
      const l = others.find((id) => net.shards.get(id)!.status(g).role === 'leader')!;
      await retry(() =>
        net.shards.get(l)!.propose(g, { op: 'put', key: enc.encode(`k${g}`), value: enc.encode('while-n1-down') }),
      );
    }
    // Close n1's store and reopen it.
    await stores.get('n1')!.close();
    net.down.delete('n1');
    const re = await openNode(net, dirs, 'n1');
    for (const id of ['n2', 'n3']) net.shards.get(id)!.peerUp('n1');
    assert.equal(re.groupIds().length, 20);
    for (let g = 4; g <= 6; g++) {
      await retry(() => re.readBarrier(g));
      assert.equal(dec.decode(re.get(g, enc.encode(`k${g}`)) ?? new Uint8Array()), 'while-n1-down');
    }
    assert.equal(dec.decode(re.get(1, enc.encode('k1')) ?? new Uint8Array()), 'w1', 'data written before the restart');
    t.diagnostic(`loops per node: ${IDS.map((id) => net.shards.get(id)!.stats.loops).join(', ')}`);
  } finally {
    for (const s of net.shards.values()) await s.stop();
    for (const s of stores.values()) await s.close().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
});

test('a shard whose groups are all quiesced stops ticking and flushes its state machine; any activity resumes it', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-shard-idle-'));
  const dirs = new Map(IDS.map((id) => [id, join(root, id)]));
  const net = new Net();
  stores.clear();
  // Each shard's pushed briefs: what the node's balancer reads instead of asking the shard.
  const briefs = new Map<NodeId, ShardBrief[]>(IDS.map((id) => [id, []]));
  const led = () => IDS.map((id) => briefs.get(id)!.at(-1)?.leaders ?? -1);
  try {
    for (const id of IDS) {
      const s = await openNode(net, dirs, id, (b) => briefs.get(id)!.push(b));
      for (let g = 1; g <= 5; g++) s.createGroup(g, CONF);
    }
    await until('every group has one leader', () => [1, 2, 3, 4, 5].every((g) => leaderOf(net, g) !== null), 60_000);
    await retry(() =>
      net.shards.get(leaderOf(net, 1)!)!.propose(1, { op: 'put', key: enc.encode('k'), value: enc.encode('v') }),
    );
    await until('every replica quiesced', () => IDS.every((id) => net.shards.get(id)!.summary().quiesced === 5));
    await until('the pushed leader counts match', () =>
      led().every((n, i) => n === net.shards.get(IDS[i])!.summary().leaders),
    );
    assert.equal(
      led().reduce((a, b) => a + b, 0),
      5,
    );
    // Idle: ticks stop (the tick timer is 10 ms here; a few may still be on their way).
    await sleep(400);
    const before = IDS.map((id) => net.shards.get(id)!.stats.ticks);
    const pushed = IDS.map((id) => briefs.get(id)!.length);
    await sleep(300);
    assert.deepEqual(
      IDS.map((id) => net.shards.get(id)!.stats.ticks),
      before,
      'no tick while every group is quiesced',
    );
    assert.deepEqual(
      IDS.map((id) => briefs.get(id)!.length),
      pushed,
      'no brief pushed while quiet',
    );
    // The state machine flushed on the way to idle: durable applied = applied.
    for (const id of IDS) {
      const sm = net.shards.get(id)!.sm;
      assert.ok(sm instanceof KvStateMachine);
      assert.equal(sm.durableApplied(1), sm.applied(1), `${id}: memtable flushed when it went idle`);
    }
    // A write wakes it: ticks again, and the write commits.
    const r = await retry(() =>
      net.shards.get(leaderOf(net, 2)!)!.propose(2, { op: 'put', key: enc.encode('k2'), value: enc.encode('v2') }),
    );
    assert.deepEqual(r, { op: 'put' });
    const leader2 = net.shards.get(leaderOf(net, 2)!)!;
    const t0 = leader2.stats.ticks;
    await until('ticking again', () => leader2.stats.ticks > t0, 2000);
    // A led group removed: its shard reports one leader fewer, without being asked.
    const owner = leaderOf(net, 3)!;
    const had = led()[IDS.indexOf(owner)];
    net.shards.get(owner)!.removeGroup(3);
    await until('the removal is reported', () => led()[IDS.indexOf(owner)] === had - 1, 2000);
  } finally {
    for (const s of net.shards.values()) await s.stop();
    for (const s of stores.values()) await s.close().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
});

test('transfer preflight: every refusal is typed, and force overrides the ones that protect service', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-preflight-'));
  const net = new Net();
  // Messages to a node can be lost without the node being reported down (a lagging follower).
  const lossy = new Set<NodeId>();
  const send = (from: NodeId) => (to: NodeId, msgs: Message[]) => {
    if (!lossy.has(to)) net.send(from)(to, msgs);
  };
  const shards: Shard[] = [];
  const reason = (r: string) => (e: unknown) => (e as { reason?: string }).reason === r;
  try {
    for (const id of IDS) {
      const store = await LogStore.open({ path: join(root, id), noSync: true });
      stores.set(id, store);
      const s = Shard.open({
        nodeId: id,
        store,
        send: send(id),
        tickMs: 10,
        // Election rounds of 0.5-1 s: this test is about refusals, not elections. With 0.1 s
        // rounds its TargetNeedsSnapshot step once timed out in CI, most likely because group 1
        // changed leader and only the old one had been told that b is down (it is told to every
        // node now, and the step follows the current leader).
        raft: { electionTicks: 50 },
        seed: 7,
        requestTimeoutMs: 3000,
        retainEntries: 2,
        stateMachine: (st) => new KvStateMachine(st, { flushIntervalMs: 20 }),
      });
      net.shards.set(id, s);
      shards.push(s);
      s.start();
      s.createGroup(1, CONF);
      // Group 2 has a fourth voter that never starts: 3 of 4 still elect and commit.
      s.createGroup(2, { voters: [...IDS, 'n4'], learners: [] });
    }
    await until('both groups led', () => leaderOf(net, 1) !== null && leaderOf(net, 2) !== null, 60_000);
    const put = (g: number, k: string) =>
      retry(() =>
        net.shards.get(leaderOf(net, g) ?? 'n1')!.propose(g, { op: 'put', key: enc.encode(k), value: enc.encode('v') }),
      );
    await put(1, 'a');

    // TargetNoQuorum: the target says (its own links) it reaches no other voter.
    let l = leaderOf(net, 1)!;
    let [a, b] = IDS.filter((x) => x !== l);
    await assert.rejects(net.shards.get(l)!.transfer(1, a, { reach: [] }), reason('TargetNoQuorum'));
    assert.equal(leaderOf(net, 1), l, 'a refusal leaves the leader in place');
    // Reaching one more voter is a quorum of three.
    const done = await net.shards.get(l)!.transfer(1, a, { reach: [b] });
    assert.equal(done.to, a);
    assert.ok(done.lag >= 0 && done.campaignMs >= 0 && done.catchUpMs >= 0, JSON.stringify(done));
    await until('a leads group 1', () => leaderOf(net, 1) === a);
    await net.shards.get(a)!.awaitLeadership(1, 5_000); // its term has a committed entry: it may hand over
    // ... and force overrides it.
    l = a;
    [a, b] = IDS.filter((x) => x !== l);
    assert.equal((await net.shards.get(l)!.transfer(1, a, { reach: [], force: true })).to, a);
    await until('the forced target leads', () => leaderOf(net, 1) === a);
    await net.shards.get(a)!.awaitLeadership(1, 5_000); // its term has a committed entry: it may hand over

    // TargetLagging: b stops receiving (but is not reported down) while the group writes.
    l = a;
    [a, b] = IDS.filter((x) => x !== l);
    lossy.add(b);
    for (let i = 0; i < 5; i++) await put(1, `lag${i}`);
    await assert.rejects(net.shards.get(l)!.transfer(1, b, { maxLagEntries: 2 }), reason('TargetLagging'));

    // TargetNeedsSnapshot: b reported down, so the leader compacts past what b has. Every node is
    // told, and the leader is looked up again: should group 1 change leader meanwhile, the new
    // one must also know that b is down, or it keeps b's entries for good.
    for (const [id, sh] of net.shards) if (id !== b) sh.peerDown(b);
    for (let i = 0; i < 40; i++) await put(1, `snap${i}`);
    await until(
      'the leader compacted past b',
      () => {
        const cur = leaderOf(net, 1);
        if (cur === null || cur === b) return false;
        const st = net.shards.get(cur)!.status(1);
        if (st.firstIndex <= (st.progress[b]?.next ?? Infinity)) return false;
        l = cur;
        return true;
      },
      20_000,
    );
    for (const [id, sh] of net.shards) if (id !== b) sh.peerUp(b);
    await assert.rejects(net.shards.get(l)!.transfer(1, b, { maxLagEntries: 1_000 }), reason('TargetNeedsSnapshot'));
    lossy.delete(b);
    // Forced, it waits for the snapshot and the catch-up, then hands over.
    assert.equal((await net.shards.get(l)!.transfer(1, b, { force: true, timeoutMs: 10_000 })).to, b);

    // NoQuorum: the leader of group 2 hears only the target (n4 never runs, the third is down).
    // (Group 2 may have lost its leader while b heard nothing: wait for one.)
    await until('group 2 led', () => leaderOf(net, 2) !== null, 20_000);
    const l2 = leaderOf(net, 2)!;
    const [x, y] = IDS.filter((n) => n !== l2);
    net.shards.get(l2)!.peerDown(y);
    net.shards.get(l2)!.peerDown('n4');
    await assert.rejects(
      net.shards.get(l2)!.transfer(2, x, { force: true }),
      reason('NoQuorum'),
      'force does not override a safety refusal',
    );
    net.shards.get(l2)!.peerUp(y);
    await assert.rejects(net.shards.get(l2)!.transfer(2, 'n4'), reason('TargetUnhealthy'));
  } finally {
    for (const s of shards) await s.stop();
    for (const s of stores.values()) await s.close().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
});

test('a leader still taking over (no entry of its term committed) refuses to hand over again, retryably', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-takeover-'));
  const net = new Net();
  const shards: Shard[] = [];
  try {
    for (const id of IDS) {
      const store = await LogStore.open({ path: join(root, id), noSync: true });
      stores.set(id, store);
      // Election rounds (1-2 s) well above the stalled writes, or no election would finish.
      const s = Shard.open({
        nodeId: id,
        store,
        send: net.send(id),
        tickMs: 10,
        raft: { electionTicks: 100 },
        seed: 7,
        requestTimeoutMs: 3000,
      });
      net.shards.set(id, s);
      shards.push(s);
      s.start();
      s.createGroup(1, CONF);
    }
    await until('group 1 led', () => leaderOf(net, 1) !== null, 60_000);
    const l = leaderOf(net, 1)!;
    await net.shards.get(l)!.awaitLeadership(1, 5_000);
    const [a, b] = IDS.filter((x) => x !== l);
    // The other two disks stall: a wins once their votes are written, and its first entry is
    // committed only once one of them has written that too, a while later.
    stores.get(l)!.setWriteDelay(200);
    stores.get(b)!.setWriteDelay(200);
    const handover = net.shards.get(l)!.transfer(1, a, { timeoutMs: 5_000 });
    handover.catch(() => undefined);
    await until(`${a} leads`, () => net.shards.get(a)!.status(1).role === 'leader', 5_000, 5);
    await assert.rejects(
      net.shards.get(a)!.transfer(1, b),
      (e: unknown) =>
        (e as { code?: string }).code === 'Unavailable' &&
        (e as { retryable?: boolean }).retryable === true &&
        /still taking over/.test((e as Error).message),
    );
    stores.get(l)!.setWriteDelay(0);
    stores.get(b)!.setWriteDelay(0);
    await net.shards.get(a)!.awaitLeadership(1, 5_000);
    // Once its term has a committed entry, it hands over as usual.
    assert.equal((await retry(() => net.shards.get(a)!.transfer(1, b))).to, b);
  } finally {
    for (const s of shards) await s.stop();
    for (const s of stores.values()) await s.close().catch(() => {});
    stores.clear();
    rmSync(root, { recursive: true, force: true });
  }
});
