// The leader balancer on three in-process nodes: from every leader on one node to a fair spread,
// then still; explainable plans; no action while a node is down; weights shape the fair share.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type FlotillaNode, type StartOptions } from '../../src/runtime/node.js';
import { freePorts, until } from '../helpers/net.js';

const IDS = ['n1', 'n2', 'n3'];
const GROUPS = 30;

async function cluster(extra: Partial<StartOptions>, fn: (nodes: Map<string, FlotillaNode>) => Promise<void>) {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-bal-'));
  const ports = await freePorts(3);
  const addr = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const nodes = new Map<string, FlotillaNode>();
  try {
    await Promise.all(IDS.map(async (id) => nodes.set(id, await startNode({
      id, dataDir: join(root, id), listen: addr.get(id)!, groups: GROUPS, tickMs: 20, workers: 1,
      peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, addr.get(p)!])), ...extra,
    }))));
    await until('every group led', async () => (await counts(nodes)).reduce((a, b) => a + b, 0) === GROUPS, 60_000);
    await fn(nodes);
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

async function counts(nodes: Map<string, FlotillaNode>): Promise<number[]> {
  return Promise.all(IDS.filter((id) => nodes.has(id)).map(async (id) => (await nodes.get(id)!.status()).leaders));
}

async function skewTo(nodes: Map<string, FlotillaNode>, to: string): Promise<void> {
  for (let g = 1; g <= GROUPS; g++) {
    try {
      await nodes.get(to)!.transferLeader(g, to);
    } catch {
      // already there
    }
  }
  await until(`all leaders on ${to}`, async () => (await nodes.get(to)!.status()).leaders === GROUPS, 30_000);
}

const rounds = (nodes: Map<string, FlotillaNode>) => Promise.all([...nodes.values()].map((n) => n.balanceRound()));

test('from all leaders on one node to a fair spread, then no more moves; explainable; still while a node is down', async () => {
  const balancer = { enabled: false, intervalMs: 60_000, warmupMs: 0, maxConcurrent: 4, cooldownMs: 0 };
  await cluster({ balancer }, async (nodes) => {
    await skewTo(nodes, 'n1');
    await rounds(nodes); // exchange summaries
    const plan = await nodes.get('n1')!.balancePlan();
    assert.equal(plan.idle, null);
    assert.ok(plan.moves.length > 0 && plan.moves.length <= 4, 'bounded per round');
    assert.match(plan.moves[0].reason, /^count: n1 has \d+ > fair share [\d.]+; n[23] has \d+$/);
    assert.equal((await nodes.get('n2')!.balancePlan()).idle?.startsWith('balanced'), true, 'an under-loaded node sheds nothing');
    for (let i = 0; i < 20; i++) {
      await rounds(nodes);
      const c = await counts(nodes);
      if (Math.max(...c) <= 11) break;
    }
    const c = await counts(nodes);
    assert.ok(Math.max(...c) <= 11 && Math.min(...c) >= 9, `converged to a fair spread: ${c}`);
    const moves = (await nodes.get('n1')!.status()).balancer!.moves;
    assert.ok(moves >= 19 && moves <= 22, `close to the minimum number of moves (20): ${moves}`);
    for (let i = 0; i < 3; i++) await rounds(nodes);
    const after = await Promise.all(IDS.map(async (id) => (await nodes.get(id)!.status()).balancer!.moves));
    assert.deepEqual(after, [moves, 0, 0], 'no more moves once balanced (and the others never shed)');

    // A node goes down: nobody acts.
    await nodes.get('n3')!.stop();
    nodes.delete('n3');
    await until('n3 seen down', async () => !(await nodes.get('n1')!.status()).peers.includes('n3'), 10_000);
    await skewTo(nodes, 'n2');
    const still = await nodes.get('n2')!.balanceRound();
    assert.match(still.idle ?? '', /unhealthy: n3 unreachable/);
    assert.deepEqual(still.moves, []);
  });
});

test('weights shape the fair share', async () => {
  const balancer = { enabled: false, intervalMs: 60_000, warmupMs: 0, maxConcurrent: 30, cooldownMs: 0, weights: { n1: 2, n2: 1, n3: 1 } };
  await cluster({ balancer }, async (nodes) => {
    await skewTo(nodes, 'n2');
    for (let i = 0; i < 10; i++) await rounds(nodes);
    const [a, b, c] = await counts(nodes);
    assert.ok(a >= 13 && a <= 16 && b <= 9 && c <= 9, `n1 (weight 2) holds about half: ${[a, b, c]}`);
  });
});

test('a bad balancer setting is refused naming the field', async () => {
  await assert.rejects(startNode({ id: 'n1', dataDir: join(tmpdir(), 'never'), listen: '127.0.0.1:1', peers: {}, groups: 1, balancer: { tolerance: -1 } }),
    /balancer\.tolerance: must be a number >= 0/);
  await assert.rejects(startNode({ id: 'n1', dataDir: join(tmpdir(), 'never'), listen: '127.0.0.1:1', peers: {}, groups: 1, balancer: { intervalMS: 5 } as never }),
    /balancer\.intervalMS: unknown setting/);
});

test('load policy: hot groups on one node are spread by what they serve, hottest first', async () => {
  const balancer = { enabled: false, intervalMs: 60_000, warmupMs: 0, maxConcurrent: 2, cooldownMs: 0, policy: 'load' as const, minLoad: 5 };
  await cluster({ balancer }, async (nodes) => {
    // The hot set: 6 groups, all led by n1.
    const hot = [1, 2, 3, 4, 5, 6];
    for (const g of hot) {
      try {
        await nodes.get('n1')!.transferLeader(g, 'n1');
      } catch {
        // already there
      }
    }
    const enc = new TextEncoder();
    let stop = false;
    const writers = hot.map(async (g) => {
      for (let i = 0; !stop; i++) {
        try {
          await nodes.get(IDS[i % 3])!.propose(g, { op: 'put', key: enc.encode(`hot-${g}`), value: enc.encode(String(i)) });
        } catch {
          // counted by the other tests; here only the placement of load matters
        }
      }
    });
    try {
      await rounds(nodes); // first counters
      await new Promise((r) => setTimeout(r, 400));
      await rounds(nodes); // first rates and summaries
      await new Promise((r) => setTimeout(r, 400));
      const plan = await nodes.get('n1')!.balancePlan();
      assert.equal(plan.policy, 'load');
      assert.ok(plan.moves.length > 0, `n1 sheds load: ${plan.idle}`);
      assert.match(plan.moves[0].reason, /^load: n1 serves \d+ ops\/s > fair share \d+; group \d carries \d+; n[23] serves \d+$/);
      for (let i = 0; i < 8; i++) {
        await rounds(nodes);
        await new Promise((r) => setTimeout(r, 400));
      }
      const led = await Promise.all(IDS.map(async (id) => (await nodes.get(id)!.status({ detail: true })).perGroup!
        .filter((g) => hot.includes((g as { group: number }).group) && (g as { role: string }).role === 'leader').length));
      assert.ok(Math.max(...led) <= 3 && Math.min(...led) >= 1, `hot groups spread over the nodes: ${led}`);
      const moves = (await nodes.get('n1')!.status()).balancer!.moves;
      assert.ok(moves >= 3 && moves <= 5, `about the minimum number of moves (4): ${moves}`);
    } finally {
      stop = true;
      await Promise.allSettled(writers);
    }
  });
});
