// Leadership as an operation, on three in-process nodes with two workers each over real TCP:
// verified transfers from any node, typed refusals, zero failed writes while leadership moves,
// and drain/undrain for planned maintenance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type FlotillaNode, type StartOptions } from '../../src/runtime/node.js';
import { TransferError } from '../../src/runtime/errors.js';
import { freePorts, until } from '../helpers/net.js';

const IDS = ['n1', 'n2', 'n3'];
const GROUPS = 12;
const dec = new TextDecoder();

async function cluster(fn: (nodes: Map<string, FlotillaNode>) => Promise<void>, extra: Partial<StartOptions> = {}) {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-lead-'));
  const ports = await freePorts(3);
  const addr = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const optsOf = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr.get(id)!,
    groups: GROUPS,
    tickMs: 20,
    requestTimeoutMs: 15_000,
    workers: 2,
    peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
    ...extra,
  });
  const nodes = new Map<string, FlotillaNode>();
  try {
    await Promise.all(IDS.map(async (id) => nodes.set(id, await startNode(optsOf(id)))));
    await until(
      'every group led',
      async () =>
        (await Promise.all([...nodes.values()].map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0) === GROUPS,
      60_000,
    );
    await fn(nodes);
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

async function leaderOf(nodes: Map<string, FlotillaNode>, group: number): Promise<string> {
  for (const n of nodes.values()) {
    const st = await n.status({ detail: true });
    if ((st.perGroup as { group: number; role: string }[]).some((g) => g.group === group && g.role === 'leader'))
      return n.id;
  }
  return '';
}

const rejectsWith = (p: Promise<unknown>, reason: string) =>
  assert.rejects(p, (e: unknown) => e instanceof TransferError && e.reason === reason && e.code === 'TransferFailed');

test('a transfer requested on any node resolves once the target leads and serves; typed refusals', async () => {
  await cluster(async (nodes) => {
    const from = await leaderOf(nodes, 1);
    const to = IDS.find((x) => x !== from)!;
    const asker = IDS.find((x) => x !== from && x !== to)!; // neither leader nor target: forwarded
    const r = await nodes.get(asker)!.transferLeader(1, to);
    assert.equal(r.to, to);
    assert.equal(r.from, from);
    assert.equal((await nodes.get(asker)!.status()).transfers.completed, 1, 'outcomes are counted');
    assert.ok(r.ms > 0 && r.term > 0);
    // Evidence: the target's lag at request time and where the time went.
    assert.ok(r.lag >= 0, `lag ${r.lag}`);
    const { catchUpMs, campaignMs, verifyMs } = r.phases;
    assert.ok(catchUpMs >= 0 && campaignMs > 0 && verifyMs >= 0, JSON.stringify(r.phases));
    assert.ok(
      Math.abs(catchUpMs + campaignMs + verifyMs - r.ms) < 1,
      `phases ${JSON.stringify(r.phases)} add up to ${r.ms}`,
    );
    assert.equal(nodes.get(asker)!.histograms.transferCampaign.snapshot().count, 1, 'phase histograms observe it');
    await until(
      'the target counts a planned change',
      async () => nodes.get(to)!.leaderChangesByCause.transfer >= 1,
      5_000,
    );
    // The old leader's replica learns the new leader with its next commit, and tells the node
    // through the worker channel: it may count a moment after the caller was answered.
    await until('so does the old leader', async () => nodes.get(from)!.leaderChangesByCause.transfer >= 1, 5_000);
    await until('and the asker', async () => nodes.get(asker)!.leaderChangesByCause.transfer >= 1, 5_000);
    assert.equal(await leaderOf(nodes, 1), to, 'the target leads');
    // Asking again for the current leader is answered at once.
    const again = await nodes.get(from)!.transferLeader(1, to);
    assert.equal(again.to, to);

    // A group on n1 and n2 only: n3 is not a member.
    await nodes.get('n1')!.createGroup(40, ['n1', 'n2']);
    await until('group 40 led', async () => (await leaderOf(nodes, 40)) !== '', 20_000);
    await rejectsWith(nodes.get('n3')!.transferLeader(40, 'n3'), 'TargetNotMember');
    // A draining node is never a target.
    await nodes.get('n3')!.drain();
    await until(
      'n2 knows n3 drains',
      async () => (await nodes.get('n2')!.status()).drainingPeers.includes('n3'),
      5_000,
    );
    const g2 = await leaderOf(nodes, 2);
    if (g2 !== 'n3') await rejectsWith(nodes.get(g2)!.transferLeader(2, 'n3'), 'TargetDraining');
    nodes.get('n3')!.undrain();
    await until(
      'n3 undrained everywhere',
      async () => !(await nodes.get('n1')!.status()).drainingPeers.includes('n3'),
      5_000,
    );
    // An unreachable target is refused at once (the old leader stays leader).
    const g3 = await leaderOf(nodes, 3);
    const down = IDS.find((x) => x !== g3)!;
    await nodes.get(down)!.stop();
    nodes.delete(down);
    await until(`${g3} sees ${down} down`, async () => !(await nodes.get(g3)!.status()).peers.includes(down), 10_000);
    await rejectsWith(nodes.get(g3)!.transferLeader(3, down), 'TargetUnhealthy');
    assert.equal(await leaderOf(nodes, 3), g3, 'the old leader stays leader');
  });
});

test('NotVerified: the target takes over but the other disks stall, so it cannot show it serves in time; then the group recovers', async () => {
  await cluster(
    async (nodes) => {
      const g = 5;
      const from = await leaderOf(nodes, g);
      const to = IDS.find((x) => x !== from)!;
      // The other two disks stall for 2 s a write: their votes come after 2 s, so the target leads
      // (and the old leader hears it: the hand-over is done) at about 2 s, well within the old
      // leader's 4-8 s election timeout; but an entry of the target's term needs one of them to
      // write it too, at 4 s or later, after the 3 s deadline.
      const others = IDS.filter((x) => x !== to);
      for (const x of others) nodes.get(x)!.setDiskDelay(2_000);
      await rejectsWith(nodes.get(from)!.transferLeader(g, to, { timeoutMs: 3_000, force: true }), 'NotVerified');
      assert.equal((await nodes.get(from)!.status()).transfers.NotVerified, 1, 'counted by reason');
      for (const x of others) nodes.get(x)!.setDiskDelay(0);
      const enc = new TextEncoder();
      await nodes.get(from)!.propose(g, { op: 'put', key: enc.encode('after'), value: enc.encode('1') });
      assert.equal(
        dec.decode((await nodes.get(from)!.read(g, enc.encode('after'))) as Uint8Array),
        '1',
        'the group serves again',
      );
      // No balancer: the timeline above holds only if nobody else moves group 5 meanwhile. With it
      // on, a round of the start-up rebalancing could hand the group to the stalled third node and
      // this transfer then found no leader in time (Timeout, once in a fresh-clone run).
    },
    { tickMs: 100, electionTicks: 40, balancer: { enabled: false } },
  );
});

test('writes see no error and lose nothing while leadership moves back and forth; drain moves every leader off a node under load', async () => {
  await cluster(async (nodes) => {
    const acked = new Map<string, string>();
    let errors = 0;
    let firstError = '';
    let stop = false;
    const writers = IDS.map(async (id, w) => {
      for (let i = 0; !stop; i++) {
        const key = `k${w}-${i % 20}`;
        const value = `${w}:${i}`;
        try {
          await nodes.get(id)!.kv.put(key, value);
          acked.set(key, value);
        } catch (e) {
          errors++;
          firstError ||= `${(e as Error).name}: ${(e as Error).message}`;
        }
      }
    });
    try {
      // 20 transfers of random groups to random replicas while the writers run.
      const evidence: { before: number | null; after: number | null }[] = [];
      for (let i = 0; i < 20; i++) {
        const g = 1 + ((i * 5) % GROUPS);
        const from = await leaderOf(nodes, g);
        const to = IDS[(IDS.indexOf(from) + 1 + (i % 2)) % 3];
        const r = await nodes.get(IDS[i % 3])!.transferLeader(g, to);
        assert.equal(r.to, to);
        evidence.push(r.commitP99Ms);
      }
      // Each result carries the commit p99 where the group was led before and where it is led now
      // (both shards lead groups the writers write to).
      assert.ok(
        evidence.some(
          (e) => typeof e.before === 'number' && e.before > 0 && typeof e.after === 'number' && e.after > 0,
        ),
        `commit p99 before and after: ${JSON.stringify(evidence)}`,
      );
      // Drain n1 under the same load.
      const before = (await nodes.get('n1')!.status()).leaders;
      const drains = (id: string) => nodes.get(id)!.leaderChangesByCause.drain;
      const drains0 = { n1: drains('n1'), n2: drains('n2') };
      const report = await nodes.get('n1')!.drain({ avoid: ['n3'] });
      assert.deepEqual(report.failed, [], 'every leadership moved');
      assert.equal(report.moved, before);
      assert.ok(
        report.transfers.every((t) => t.to === 'n2'),
        'avoid is honoured when another target exists',
      );
      assert.equal((await nodes.get('n1')!.status()).leaders, 0, 'n1 leads nothing');
      // The hand-overs count as planned (drain) where they were asked for and where they landed,
      // not as elections: a drain is not flapping.
      await until('n2 counted every drained leadership', async () => drains('n2') - drains0.n2 >= report.moved, 5_000);
      await until('n1 counted every drained leadership', async () => drains('n1') - drains0.n1 >= report.moved, 5_000);
      nodes.get('n1')!.undrain();
    } finally {
      stop = true;
      await Promise.allSettled(writers);
    }
    assert.equal(errors, 0, `no write failed (first: ${firstError})`);
    for (const [key, value] of acked) {
      assert.equal(dec.decode((await nodes.get('n3')!.kv.get(key))!), value, `${key} on n3`);
    }
  });
});

test('membership in the safe order: add a learner, refuse it as a transfer target, promote it once caught up, remove an old member', async () => {
  await cluster(async (nodes) => {
    const n1 = nodes.get('n1')!;
    await n1.createGroup(40, ['n1', 'n2']);
    await until('group 40 led', async () => (await leaderOf(nodes, 40)) !== '', 20_000);
    // A node without a replica cannot be made a voter directly: it would count towards the quorum
    // with no log (two voters of three, and the group stalls).
    await assert.rejects(n1.promote(40, 'n3'), /holds no replica of group 40: add it as a learner first/);
    assert.deepEqual(n1.replicasOf(40), ['n1', 'n2']);
    const enc = new TextEncoder();
    for (let i = 0; i < 20; i++)
      await n1.propose(40, { op: 'put', key: enc.encode(`m${i}`), value: enc.encode(`v${i}`) });
    await nodes.get('n2')!.addLearner(40, 'n3');
    await until(
      'everyone routes group 40 to n3 too',
      async () => IDS.every((id) => nodes.get(id)!.replicasOf(40).includes('n3')),
      10_000,
    );
    const leader = await leaderOf(nodes, 40);
    await rejectsWith(nodes.get(leader)!.transferLeader(40, 'n3'), 'TargetIsLearner');
    await assert.rejects(nodes.get('n3')!.addLearner(40, 'n3'), /already holds a replica/);
    await until(
      'the learner caught up',
      async () =>
        dec.decode(
          ((await nodes.get('n3')!.read(40, enc.encode('m19'), { consistency: 'stale' })) as Uint8Array | null) ??
            new Uint8Array(),
        ) === 'v19',
      20_000,
    );
    await n1.promote(40, 'n3');
    const r = await n1.transferLeader(40, 'n3');
    assert.equal(r.to, 'n3', 'a promoted voter can lead');
    await nodes.get('n3')!.removeMember(40, 'n1');
    await until(
      'n1 dropped its replica',
      async () => !((await n1.status({ detail: true })).perGroup as { group: number }[]).some((g) => g.group === 40),
      20_000,
    );
    // The routing table follows the applied membership (a notification after the replica is gone).
    await until('n1 routes group 40 to n2 and n3 only', async () => n1.replicasOf(40).join() === 'n2,n3', 10_000);
    assert.deepEqual(n1.replicasOf(40), ['n2', 'n3']);
    // Still served from any node (n1 forwards).
    await n1.propose(40, { op: 'put', key: enc.encode('after'), value: enc.encode('x') });
    assert.equal(dec.decode((await nodes.get('n2')!.read(40, enc.encode('after'))) as Uint8Array), 'x');
  });
});
