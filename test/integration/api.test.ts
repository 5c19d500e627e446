// The embedded API against a real three-node cluster in one process (TCP on 127.0.0.1, LMDB):
// cancellation by AbortSignal (before the call, while a proposal waits for a leader, one signal
// shared by many calls), the node's events (peers, transfers, drains, worker restarts, admission
// refusals, leader changes) and, at type level, the generic results and exported types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AbortError,
  RuntimeError,
  startNode,
  type FlotillaNode,
  type KvCommand,
  type KvResult,
  type LeaderChangeCause,
  type NodeEvents,
  type NodeStatus,
  type StartOptions,
} from '../../src/index.js';
import { freePorts, until } from '../helpers/net.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const GROUPS = 6;
/** n1's admission limit: the overload subtest fills it. */
const N1_MAX_PENDING = 16;

/** Everything a node emitted, by event name. */
function record(node: FlotillaNode): { [K in keyof NodeEvents]: NodeEvents[K][0][] } {
  const seen: { [K in keyof NodeEvents]: NodeEvents[K][0][] } = {
    leaderChange: [],
    peerUp: [],
    peerDown: [],
    transfer: [],
    drain: [],
    workerRestart: [],
    overload: [],
    nodeChange: [],
  };
  node.on('leaderChange', (e) => seen.leaderChange.push(e));
  node.on('peerUp', (e) => seen.peerUp.push(e));
  node.on('peerDown', (e) => seen.peerDown.push(e));
  node.on('transfer', (e) => seen.transfer.push(e));
  node.on('drain', (e) => seen.drain.push(e));
  node.on('workerRestart', (e) => seen.workerRestart.push(e));
  node.on('overload', (e) => seen.overload.push(e));
  node.on('nodeChange', (e) => seen.nodeChange.push(e));
  return seen;
}

const isAbort = (e: unknown): boolean =>
  e instanceof AbortError && e instanceof RuntimeError && e.name === 'AbortError' && e.code === 'Aborted';

/** The leader of `group` as `node`'s replica knows it. */
async function leaderOf(node: FlotillaNode, group: number): Promise<string> {
  const st = await node.status({ detail: true });
  return st.perGroup?.find((g) => g.group === group)?.leader ?? '';
}

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Compiles only when its type argument is `true` (a type-level assertion; nothing to run). */
function expectType<T extends true>(ok: T): T {
  return ok;
}

test('embedded API: abort signals, events, typed results', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-api-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(3);
  const addr = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const optsOf = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr.get(id)!,
    groups: GROUPS,
    tickMs: 20,
    requestTimeoutMs: 8000,
    workers: 1,
    noSync: true,
    balancer: { enabled: false },
    ...(id === 'n1' ? { limits: { maxPendingProposals: N1_MAX_PENDING } } : {}),
    peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
  });
  const nodes = new Map<string, FlotillaNode>();
  try {
    const n1 = await startNode(optsOf('n1'));
    nodes.set('n1', n1);
    const ev1 = record(n1);

    await t.test('a proposal waiting for a leader is withdrawn by an abort and never proposed', async () => {
      // n1 alone: no group can elect a leader, so the proposal waits at n1 between attempts.
      const ac = new AbortController();
      const p = n1.kv.put('withdrawn', 'x', { signal: ac.signal, timeoutMs: 60_000 });
      await until('the proposal retries at n1', async () => n1.stats.retries >= 3);
      assert.equal((await n1.status()).pending.proposals, 1);
      ac.abort();
      await assert.rejects(p, isAbort);
      // The retry loop stopped: the proposal left admission control without being handed over.
      await until('admission released', async () => (await n1.status()).pending.proposals === 0);
      assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
    });

    for (const id of ['n2', 'n3']) nodes.set(id, await startNode(optsOf(id)));
    const ev2 = record(nodes.get('n2')!);
    await until(
      'every group led',
      async () =>
        (await Promise.all([...nodes.values()].map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0) === GROUPS,
      60_000,
    );

    await t.test('peers coming up are events', async () => {
      await until('peerUp n2 and n3 at n1', () => ['n2', 'n3'].every((p) => ev1.peerUp.some((e) => e.peer === p)));
      // The withdrawn proposal was never written anywhere.
      for (const n of nodes.values()) assert.equal(await n.kv.get('withdrawn'), null);
    });

    await t.test('an aborted signal rejects every call at once and writes nothing', async () => {
      const reason = new Error('caller gave up');
      const signal = AbortSignal.abort(reason);
      const before = { ...n1.stats };
      const transfers = { ...n1.transferStats };
      const calls: [string, () => Promise<unknown>][] = [
        ['kv.put', () => n1.kv.put('pre-aborted', 'x', { signal })],
        ['kv.delete', () => n1.kv.delete('pre-aborted', { signal })],
        ['kv.cas', () => n1.kv.cas('pre-aborted', null, 'x', { signal })],
        ['kv.get', () => n1.kv.get('pre-aborted', { signal })],
        ['kv.get positional', () => n1.kv.get('pre-aborted', 'stale', { signal })],
        [
          'propose',
          () => n1.propose(1, { op: 'put', key: enc.encode('pre-aborted'), value: enc.encode('x') }, { signal }),
        ],
        ['read', () => n1.read(1, enc.encode('pre-aborted'), { signal })],
        ['transferLeader', () => n1.transferLeader(1, 'n2', { signal })],
        ['drain', () => n1.drain({ signal })],
        ['addLearner', () => n1.addLearner(1, 'n3', { signal })],
        ['promote', () => n1.promote(1, 'n3', { signal })],
        ['removeMember', () => n1.removeMember(1, 'n3', { signal })],
        ['createGroup', () => n1.createGroup(GROUPS + 1, undefined, { signal })],
        ['removeGroup', () => n1.removeGroup(1, { signal })],
        ['status', () => n1.status({ signal })],
        ['balancePlan', () => n1.balancePlan({ signal })],
        ['balanceRound', () => n1.balanceRound({ signal })],
        ['stabilityWarnings', () => n1.stabilityWarnings({ signal })],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), (e) => isAbort(e) && (e as Error).cause === reason, name);
      }
      assert.equal(n1.stats.proposals, before.proposals);
      assert.equal(n1.stats.reads, before.reads);
      assert.deepEqual(n1.transferStats, transfers);
      assert.equal(n1.isDraining, false);
      assert.deepEqual(
        n1.groupIds().sort(),
        Array.from({ length: GROUPS }, (_, i) => i + 1),
      );
      assert.equal(await n1.kv.get('pre-aborted'), null);
    });

    await t.test('one signal for many calls: listeners removed, no MaxListeners warning', async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      try {
        const ac = new AbortController();
        for (let i = 0; i < 100; i++) await n1.kv.put(`shared-${i % 10}`, `v${i}`, { signal: ac.signal });
        assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
        // Concurrent calls share one listener.
        const inFlight = Array.from({ length: 10 }, (_, i) =>
          n1.kv.get(`shared-${i}`, { signal: ac.signal, consistency: 'linearizable' }),
        );
        assert.equal(getEventListeners(ac.signal, 'abort').length, 1);
        const values = await Promise.all(inFlight);
        assert.deepEqual(
          values.map((v) => dec.decode(v!)),
          Array.from({ length: 10 }, (_, i) => `v${90 + i}`),
        );
        assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(
          warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
          [],
        );
      } finally {
        process.off('warning', onWarning);
      }
    });

    await t.test('results are typed by the caller', async () => {
      const key = enc.encode('typed');
      const r = await n1.propose<KvResult | null, KvCommand>(n1.kv.groupOf(key), { op: 'put', key, value: key });
      assert.equal(r?.op, 'put');
      const v = await n1.read<Uint8Array | null>(n1.kv.groupOf(key), key);
      assert.equal(dec.decode(v!), 'typed');
      type Balance = { readonly balance: number };
      expectType<Equal<Awaited<ReturnType<typeof n1.propose<Balance>>>, Balance>>(true);
      expectType<Equal<Awaited<ReturnType<typeof n1.read<Balance>>>, Balance>>(true);
      expectType<Equal<Awaited<ReturnType<typeof n1.propose>>, unknown>>(true);
      expectType<Equal<Awaited<ReturnType<FlotillaNode['status']>>, NodeStatus>>(true);
      expectType<Equal<NodeEvents['leaderChange'][0]['cause'], LeaderChangeCause>>(true);
      // A command type named by the caller is checked.
      type KvArg = Parameters<typeof n1.propose<unknown, KvCommand>>[1];
      // @ts-expect-error: not a KvCommand
      const bad: KvArg = { op: 'nope' };
      assert.equal(bad.op, 'nope');
    });

    await t.test('a transfer: outcome and leader-change events', async () => {
      const g = 1;
      const leader = await leaderOf(n1, g);
      const target = leader === 'n2' ? 'n1' : 'n2';
      const res = await n1.transferLeader(g, target, { force: true });
      assert.equal(res.to, target);
      const ok = ev1.transfer.find((e) => e.group === g && e.ok);
      assert.ok(ok, 'a transfer event');
      assert.deepEqual(
        { ...ok, ms: 0 },
        { group: g, from: res.from, to: target, ok: true, reason: 'completed', cause: 'transfer', ms: 0 },
      );
      await until('leaderChange at n1', () =>
        ev1.leaderChange.some(
          (e) => e.group === g && e.leader === target && e.cause === 'transfer' && e.term === res.term,
        ),
      );
      await assert.rejects(n1.transferLeader(g, 'nx'), /holds no replica/);
      assert.deepEqual(
        ev1.transfer.filter((e) => !e.ok).map((e) => [e.group, e.to, e.reason]),
        [[g, 'nx', 'TargetNotMember']],
      );
    });

    await t.test('a drain reports its progress', async () => {
      const n2 = nodes.get('n2')!;
      if ((await n2.status()).leaders === 0) await n1.transferLeader(2, 'n2', { force: true });
      const report = await n2.drain({ force: true });
      const last = ev2.drain.at(-1)!;
      assert.deepEqual(last, {
        node: 'n2',
        moved: report.moved,
        failed: report.failed.length,
        remaining: 0,
        done: true,
      });
      assert.equal(ev2.drain.length, report.moved + report.failed.length + 1);
      assert.deepEqual(
        ev2.drain.map((e) => e.moved + e.failed),
        [
          ...Array.from({ length: report.moved + report.failed.length }, (_, i) => i + 1),
          report.moved + report.failed.length,
        ],
      );
      assert.ok(report.moved > 0);
      assert.equal(ev2.transfer.filter((e) => e.cause === 'drain' && e.ok).length, report.moved);
      await until('leaderChange caused by the drain at n2', () => ev2.leaderChange.some((e) => e.cause === 'drain'));
      n2.undrain();
    });

    await t.test('a peer going down and up (a throwing listener does not break the node)', async () => {
      const boom = () => {
        throw new Error('listener bug');
      };
      n1.on('peerUp', boom);
      n1.on('leaderChange', boom);
      try {
        await nodes.get('n3')!.stop();
        nodes.delete('n3');
        await until('peerDown n3 at n1', () => ev1.peerDown.some((e) => e.peer === 'n3'));
        const ups = ev1.peerUp.filter((e) => e.peer === 'n3').length;
        const n3 = await startNode(optsOf('n3'));
        nodes.set('n3', n3);
        await until('peerUp n3 at n1 again', () => ev1.peerUp.filter((e) => e.peer === 'n3').length > ups);
        // Writes through the restarted node land, and n1 (whose listeners threw) serves them.
        for (let k = 0; k < GROUPS * 2; k++) await n3.kv.put(`after-restart-${k}`, `r${k}`);
        for (let k = 0; k < GROUPS * 2; k++)
          assert.equal(dec.decode((await n1.kv.get(`after-restart-${k}`))!), `r${k}`);
      } finally {
        n1.off('peerUp', boom);
        n1.off('leaderChange', boom);
      }
    });

    await t.test('a worker restart', async () => {
      await n1.crashWorker(0);
      await until('workerRestart at n1', () => ev1.workerRestart.some((e) => e.worker === 0));
      assert.ok(ev1.workerRestart[0].reason.length > 0);
      await until('n1 shard back', async () => (await n1.status()).shards.every((s) => s.up), 30_000);
    });

    await t.test('proposals shed by admission control are events', async () => {
      const calls = Array.from({ length: 4 * N1_MAX_PENDING }, (_, i) => n1.kv.put(`load-${i}`, 'x'));
      const outcomes = await Promise.allSettled(calls);
      const refused = outcomes.filter(
        (o) => o.status === 'rejected' && o.reason instanceof RuntimeError && o.reason.code === 'Overloaded',
      ).length;
      assert.equal(refused, 3 * N1_MAX_PENDING);
      assert.equal(ev1.overload.length, refused);
      assert.ok(
        ev1.overload.every((e) => e.origin === 'n1' && e.limit === 'maxPendingProposals' && e.shed === 'proposal'),
      );
    });
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
