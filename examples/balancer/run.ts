// Balancer configuration with localities, weights and follow-the-workload: three `flotilla start`
// processes in zones a, b and c, each given the balancer section of ./balancer.json in its config
// file. Groups 1-30 prefer leaders in zone a (else b), groups 31-33 in zone c; n1 has weight 2, so
// it should lead about half of the rest. Prints the plan and the outcome; OK when the preferences
// are met and the weights respected.
//
//   npx tsx examples/balancer/run.ts
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const balancer = JSON.parse(readFileSync(join(import.meta.dirname, 'balancer.json'), 'utf8'));
const ids = ['n1', 'n2', 'n3'];
const zones: Record<string, string> = { n1: 'a', n2: 'b', n3: 'c' };
const GROUPS = 90;
const root = mkdtempSync(join(tmpdir(), 'balancer-example-'));
const ports = await Promise.all(
  Array.from(
    { length: 6 },
    () =>
      new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const { port } = s.address() as { port: number };
          s.close(() => resolve(port));
        });
      }),
  ),
);
const raft = (i: number) => `127.0.0.1:${ports[i]}`;
const admin = (i: number) => `127.0.0.1:${ports[3 + i]}`;
const procs: ChildProcess[] = [];
const get = async (i: number, path: string) =>
  (await fetch(`http://${admin(i)}${path}`)).json() as Promise<Record<string, unknown>>;

try {
  ids.forEach((id, i) => {
    const config = {
      id,
      dataDir: join(root, id),
      listen: raft(i),
      admin: admin(i),
      groups: GROUPS,
      workers: 1,
      labels: { zone: zones[id] },
      logLevel: 'warn',
      peers: Object.fromEntries(ids.map((p, j) => [p, raft(j)]).filter(([p]) => p !== id)),
      balancer,
    };
    writeFileSync(join(root, `${id}.json`), JSON.stringify(config, null, 2));
    procs.push(
      spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'start', '--config', join(root, `${id}.json`)], {
        stdio: 'inherit',
      }),
    );
  });
  // Wait for the balancer to settle: preferences met and no moves planned.
  const deadline = Date.now() + 90_000;
  let met = 0;
  let leaders: number[] = [];
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    try {
      const per = await Promise.all(ids.map((_, i) => get(i, '/status?groups')));
      leaders = per.map((s) => s.leaders as number);
      const leaderOf = new Map<number, string>();
      for (const [i, s] of per.entries()) {
        for (const g of s.perGroup as { group: number; role: string }[])
          if (g.role === 'leader') leaderOf.set(g.group, ids[i]);
      }
      met =
        [...Array(30).keys()].filter((k) => leaderOf.get(k + 1) === 'n1').length +
        [31, 32, 33].filter((g) => leaderOf.get(g) === 'n3').length;
      const plans = await Promise.all(ids.map((_, i) => get(i, '/balance/plan')));
      if (met === 33 && plans.every((p) => (p.moves as unknown[]).length === 0) && leaderOf.size === GROUPS) break;
    } catch {
      // still starting
    }
    if (Date.now() > deadline) throw new Error(`not settled: preferences met for ${met}/33 groups, leaders ${leaders}`);
  }
  const plan = await get(1, '/balance/plan');
  process.stdout.write(`leaders per node (n1 has weight 2): ${ids.map((id, i) => `${id}=${leaders[i]}`).join(' ')}\n`);
  process.stdout.write(`n2's plan now: ${plan.idle}\n`);
  if (leaders[0] <= Math.max(leaders[1], leaders[2])) throw new Error('n1 (weight 2) should lead the most');
  process.stdout.write(`OK: all 33 preferred groups led in their preferred zone; weights respected\n`);
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1500));
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
}
