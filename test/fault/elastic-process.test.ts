// An elastic cluster of real `flotilla start` processes (node-child.ts: the CLI plus an IPC channel
// for the cluster record) under a steady write load through the HTTP gateway of nodes that are
// never faulted. It proves, with processes and kill -9 rather than in-process stops:
// (a) a node started with --join is admitted and the replica mover fills it until every node's
//     replica count is inside the planner's band;
// (d) a join under a member's id is refused: the process exits non-zero naming DuplicateId, and
//     the cluster keeps serving;
// (b) a node killed with SIGKILL for longer than replicas.repairDelayMs (3 s) has its replicas
//     replaced: every group is back to 3 voters, all on live nodes;
// (c) a decommissioned node is emptied and marked removed, and `flotilla start` on its old data
//     dir exits non-zero saying it was decommissioned;
// and throughout, no write fails, and at the end every acknowledged write is read back
// (linearizable GET) from a surviving node.
//
// Node counts: repair needs a live node outside each group that lost a replica, and after the
// repair the decommission needs one more, so the cluster grows to five (n4, then n5 join) before
// n3 is killed; the decommission of n2 then leaves three live active nodes for 3 replicas.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replicaBand } from '../../src/balancer/replicas.js';
import type { ClusterNode } from '../../src/runtime/node.js';
import type { MoverStatus } from '../../src/runtime/mover.js';
import type { NodeStatus } from '../../src/runtime/status.js';
import { until } from '../helpers/net.js';
import { nodeProcs } from '../helpers/nodeprocs.js';

const GROUPS = 30;
const WRITERS = 4;
const BOOT = ['n1', 'n2', 'n3'];
/** Replicas in all over `active` nodes: group 0 (the cluster record) keeps 3, or 5 once there
 *  are five active nodes. */
const replicas = (active: number) => GROUPS * 3 + (active >= 5 ? 5 : 3);

type Mover = MoverStatus & { runsHere: boolean };

test('5 processes: join, bad join, repair after kill -9, decommission — no write lost', async (t) => {
  const c = nodeProcs('elastic', { replicas: { repairDelayMs: 3000 } }, [
    '--groups',
    String(GROUPS),
    '--workers',
    '0',
    '--tick-ms',
    '50',
    '--request-timeout-ms',
    '20000',
    '--log-level',
    'warn',
  ]);
  const node = (id: string) => c.nodes.get(id)!;
  const t0 = Date.now();
  const phases: string[] = [];
  const phase = (what: string) => phases.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // Writers go through nodes that are never faulted; each key is written once.
  const targets = ['n1'];
  const acked: string[] = [];
  const failures: string[] = [];
  let stop = false;
  const writer = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const key = `w${w}-${i}`;
      const via = targets[i % targets.length];
      try {
        const res = await fetch(`${node(via).admin}/kv/${key}`, {
          method: 'PUT',
          body: key,
          signal: AbortSignal.timeout(30_000),
        });
        if (res.status === 200) acked.push(key);
        else failures.push(`${key} via ${via}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer().catch(() => undefined);
      } catch (e) {
        failures.push(`${key} via ${via}: ${(e as Error).message}`);
      }
    }
  };
  /** Each group's configuration, as its leader among `ids` reports it. */
  const confs = async (ids: string[]) => {
    const out = new Map<number, { voters: string[]; learners: string[]; term: number }>();
    for (const id of ids) {
      const st = await node(id).get<NodeStatus>('/status?groups');
      for (const g of st.perGroup ?? []) {
        if (g.role !== 'leader') continue;
        const prev = out.get(g.group);
        if (!prev || prev.term < g.term)
          out.set(g.group, { voters: [...g.conf.voters], learners: [...g.conf.learners], term: g.term });
      }
    }
    return out;
  };
  const moverOf = async (ids: string[]) => {
    for (const id of ids) {
      const m = await node(id).call<Mover>('mover');
      if (m.runsHere) return m;
    }
    return null;
  };
  /** Every listed node's replica count inside the band and the mover idle, as `via` sees them:
   *  clusterNodes() counts from `via`'s group directory, so a stale entry there (a replica that
   *  was moved away still listed) shows as a total above `replicas(n)` and fails this. */
  const balanced = (via: string, ids: string[]) =>
    isBalanced(via, ids).catch((e: Error) => {
      lastSeen = `${lastSeen} / then: ${e.message}`;
      return false;
    });
  const isBalanced = async (via: string, ids: string[]) => {
    const ns = await node(via).call<ClusterNode[]>('nodes');
    const total = replicas(ids.length);
    const band = replicaBand(total, ids.length, 0.05);
    const counts = ids.map((id) => ns.find((n) => n.id === id)?.replicas ?? -1);
    const m = await moverOf(ids);
    lastSeen = `counts ${JSON.stringify(counts)} (band ${band.low}..${band.high}, total ${total}), mover ${JSON.stringify(
      m && { inFlight: m.inFlight, counters: m.counters, lastErrors: m.lastErrors },
    )}`;
    return (
      counts.reduce((a, b) => a + b, 0) === total &&
      counts.every((k) => k >= band.low && k <= band.high) &&
      m !== null &&
      m.inFlight.length === 0
    );
  };
  let lastSeen = '';
  let writers: Promise<void>[] = [];
  try {
    for (const id of BOOT) await c.start(id, { peers: BOOT });
    await until(
      'every group led',
      async () => {
        let leaders = 0;
        for (const id of BOOT) leaders += (await node(id).get<NodeStatus>('/status')).leaders;
        return leaders === GROUPS;
      },
      60_000,
      200,
    );
    phase('elected');
    writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    await until('writes flowing', () => acked.length > 50, 30_000);

    // (a) n4 joins through n1 and is filled within the band.
    const n4 = await c.start('n4', { join: node('n1').raft });
    await until('n4 serves', async () => (await fetch(`${n4.admin}/health`)).status === 200, 30_000, 100);
    targets.push('n4');
    await until('replicas balanced over 4 nodes', () => balanced('n1', ['n1', 'n2', 'n3', 'n4']), 60_000, 250);
    const onN4 = (await node('n1').call<ClusterNode[]>('nodes')).find((n) => n.id === 'n4')!;
    assert.equal(onN4.state, 'active');
    assert.ok(onN4.replicas >= replicaBand(replicas(4), 4, 0.05).low, `n4 holds ${onN4.replicas}`);
    phase('n4 joined and balanced');

    // (d) A second process claiming n2's id is refused; the cluster keeps serving.
    const dup = await c.start('n2', { join: node('n1').raft }, 'impostor');
    const dupCode = await dup.exited;
    assert.notEqual(dupCode, 0, 'a duplicate id exits non-zero');
    assert.match(dup.stderr(), /DuplicateId/);
    assert.equal(dup.stderr().trim().split('\n').length, 1, `one line: ${dup.stderr()}`);
    let mark = acked.length;
    await until('writes continue after the refused join', () => acked.length > mark + 20, 30_000);
    assert.deepEqual(
      (await node('n1').call<ClusterNode[]>('nodes')).map((n) => n.id),
      ['n1', 'n2', 'n3', 'n4'],
      'the impostor is not in the record',
    );
    phase(`duplicate id refused ("${dup.stderr().trim()}")`);

    // (b) n5 joins so that repair and then a decommission have somewhere to go; n3 is killed.
    await c.start('n5', { join: node('n4').raft });
    await until('n5 serves', async () => (await fetch(`${node('n5').admin}/health`)).status === 200, 30_000, 100);
    targets.push('n5');
    const five = ['n1', 'n2', 'n3', 'n4', 'n5'];
    await until('replicas balanced over 5 nodes', () => balanced('n1', five), 60_000, 250);
    phase('n5 joined and balanced');
    // Group 0 is on all five now: it has no live node to go to, so it keeps n3 until a
    // decommission brings its replication back to 3. The user groups are what repair restores.
    const onN3 = [...(await confs(five))].filter(([g, conf]) => g > 0 && conf.voters.includes('n3')).length;
    assert.ok(onN3 > 0, 'n3 holds replicas before the kill');
    node('n3').proc.kill('SIGKILL');
    await node('n3').exited;
    const killed = Date.now();
    const live = ['n1', 'n2', 'n4', 'n5'];
    await until(
      "n3's replicas replaced: every group has 3 live voters",
      async () => {
        const cs = await confs(live);
        if (cs.size !== GROUPS + 1) return false;
        return [...cs].every(
          ([g, conf]) =>
            g === 0 || (conf.voters.length === 3 && !conf.voters.includes('n3') && conf.learners.length === 0),
        );
      },
      90_000,
      250,
    );
    const repaired = Date.now() - killed;
    assert.ok(repaired >= 3000, `repair waited repairDelayMs (took ${repaired} ms)`);
    const m = (await moverOf(live))!;
    assert.ok(m.counters.repair.completed >= onN3, `repair moves: ${JSON.stringify(m.counters.repair)}`);
    phase(`n3 killed, ${onN3} groups repaired in ${(repaired / 1000).toFixed(1)} s`);

    // (c) Decommission n2: emptied, removed, and its restart on the old data is refused.
    const marked = await node('n1').call<ClusterNode>('decommission', 'n2');
    assert.equal(marked.state, 'decommissioning');
    await until(
      'n2 removed',
      async () => (await node('n1').call<ClusterNode[]>('nodes')).find((n) => n.id === 'n2')?.state === 'removed',
      90_000,
      250,
    );
    assert.equal((await node('n1').call<ClusterNode[]>('nodes')).find((n) => n.id === 'n2')!.replicas, 0);
    // Every group, group 0 too (back to 3 voters with 4 active nodes, dead n3 trimmed first), on
    // the three live nodes.
    const rest = ['n1', 'n4', 'n5'];
    await until(
      'every group has 3 voters, all live',
      async () => {
        const cs = await confs(rest);
        return (
          cs.size === GROUPS + 1 &&
          [...cs.values()].every((conf) => conf.voters.length === 3 && conf.voters.every((v) => rest.includes(v)))
        );
      },
      30_000,
      250,
    );
    await until('n2 knows it was removed', () => node('n2').call<boolean>('removed'), 30_000, 200);
    node('n2').proc.kill('SIGTERM');
    assert.equal(await node('n2').exited, 0);
    const back = await c.start('n2', { peers: BOOT });
    assert.notEqual(await back.exited, 0, 'a decommissioned node does not start on its old data');
    assert.match(back.stderr(), /decommissioned/);
    assert.equal(back.stderr().trim().split('\n').length, 1, `one line: ${back.stderr()}`);
    phase(`n2 decommissioned and refused ("${back.stderr().trim()}")`);

    mark = acked.length;
    await until('writes continue on the three left', () => acked.length > mark + 20, 30_000);
    stop = true;
    await Promise.all(writers);
    assert.deepEqual(failures, [], 'no write failed');
    for (const key of acked) {
      const res = await fetch(`${node('n5').admin}/kv/${key}`);
      assert.equal(res.status, 200, `${key} on n5`);
      assert.equal(await res.text(), key);
    }
    phase(`${acked.length} acknowledged writes read back`);
  } catch (e) {
    t.diagnostic(`last seen: ${lastSeen}`);
    // Where the nodes' directories (routing, the mover's view, clusterNodes' counts) disagree
    // with the groups' own configurations.
    const running = [...c.nodes].filter(([, n]) => n.proc.exitCode === null && n.proc.signalCode === null);
    const truth = await confs(running.map(([id]) => id)).catch(() => new Map());
    for (const [id, n] of running) {
      const dir = await n.call<Record<number, string[]>>('directory', String(GROUPS)).catch(() => null);
      if (dir)
        for (const [g, conf] of truth) {
          const real = [...conf.voters, ...conf.learners].sort().join(',');
          if ((dir[g] ?? []).join(',') !== real)
            t.diagnostic(`${id} routes group ${g} to ${dir[g]}, its leader's configuration is ${real}`);
        }
    }
    for (const [id, n] of c.nodes)
      t.diagnostic(`${id}: exit ${n.proc.exitCode ?? n.proc.signalCode}, stderr ${n.stderr().slice(-2000)}`);
    throw e;
  } finally {
    t.diagnostic(phases.join('; '));
    stop = true;
    await Promise.all(writers);
    c.cleanup();
  }
});
