// Scale: 3 node processes x 10,000 groups on this 2-core machine elect every group and then go
// quiet: every replica quiesces and no Raft traffic flows while idle. Then one node is killed
// (kill -9): only the groups it led wake up to elect (the liveness layer tells their followers),
// the rest stay quiesced, and once the new leaders are in place the cluster is silent again —
// a dead peer neither wakes every group at once nor keeps them awake.
//
// "Quiet" is judged once the leader balancer has settled too: right after an election the
// leaders are uneven and the balancer moves a few hundred of them in rounds 100 ms apart, and
// every replica can be quiesced between two rounds. Settled = leader counts, balancer moves and
// quiesced replicas unchanged for longer than two balancer rounds (a round with no move changes
// nothing the next round looks at, so the balancer stays still from there).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { until } from '../helpers/net.js';
import { processCluster } from '../helpers/procs.js';

const GROUPS = 10_000;
const ids = ['n1', 'n2', 'n3'];

interface Status {
  leaders: number;
  quiesced: number;
  groups: number;
  runtime: { relayedOut: number };
  balancer?: { moves: number };
}

const BALANCER_ROUND_MS = 2000;

test('3 processes x 10,000 groups elect every group, go silent, and stay calm when a node dies', async (t) => {
  const c = await processCluster('scale', ids, ['--groups', String(GROUPS), '--workers', '2', '--log-level', 'warn']);
  const { admin, procs } = c;
  const status = async (id: string) => (await (await fetch(`${admin.get(id)}/status`)).json()) as Status;
  const all = async (nodes: string[]) => Promise.all(nodes.map(status));
  const sum = (xs: Status[], k: 'leaders' | 'quiesced') => xs.reduce((a, s) => a + s[k], 0);
  const t0 = Date.now();
  try {
    for (const id of ids) c.spawnNode(id);
    await until('every group elected', async () => sum(await all(ids), 'leaders') === GROUPS, 300_000, 250);
    const elected = Date.now() - t0;
    // Leader counts, balancer moves and quiesced replicas unchanged for two balancer rounds and more.
    const settled = async (nodes: string[], what: string) => {
      let last = '';
      let since = Date.now();
      await until(
        what,
        async () => {
          const xs = await all(nodes);
          const key = JSON.stringify(xs.map((s) => [s.leaders, s.quiesced, s.balancer?.moves ?? 0]));
          if (key !== last) {
            last = key;
            since = Date.now();
          }
          return sum(xs, 'quiesced') === nodes.length * GROUPS && Date.now() - since > 2 * BALANCER_ROUND_MS + 500;
        },
        180_000,
        500,
      );
    };
    await settled(ids, 'every replica quiesced and the balancer settled');
    const quiet = Date.now() - t0;
    const silent = async (nodes: string[], what: string) => {
      const before = (await all(nodes)).map((s) => s.runtime.relayedOut);
      await sleep(3000);
      const after = (await all(nodes)).map((s) => s.runtime.relayedOut);
      assert.deepEqual(after, before, `${what}: no Raft batch left any node in 3 s`);
    };
    await silent(ids, 'all quiesced');

    // n3 dies. Only the groups it led (a third) elect; the others never needed to wake.
    const ledByN3 = (await status('n3')).leaders;
    procs.get('n3')!.kill('SIGKILL');
    const killed = Date.now();
    const live = ['n1', 'n2'];
    await until("n3's groups re-elected", async () => sum(await all(live), 'leaders') === GROUPS, 180_000, 250);
    const reelected = Date.now() - killed;
    await settled(live, 'quiet again');
    await silent(live, 'after the failover');
    t.diagnostic(
      `elected ${GROUPS} groups in ${(elected / 1000).toFixed(1)} s, all ${3 * GROUPS} replicas quiesced at ` +
        `${(quiet / 1000).toFixed(1)} s; n3 led ${ledByN3}: re-elected in ${(reelected / 1000).toFixed(1)} s, quiet again at ` +
        `${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`,
    );
  } finally {
    c.cleanup();
  }
});
