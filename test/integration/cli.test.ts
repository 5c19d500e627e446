// The `flotilla` command line as an operator meets it, run as real processes, for every command
// `flotilla --help` lists: its --help (exit 0, its own usage, without loading the runtime), an
// option it does not take or a bad value (exit 2, its usage on stderr, no stack trace), --json
// answers that parse against a real single-node cluster, and connection errors that name their
// cause; `nodes` and `decommission` (with --wait, stopped by Ctrl-C or ended by a cancel made
// elsewhere) against a three-node cluster in this process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { processCluster } from '../helpers/procs.js';
import { startNode, type FlotillaNode, type StartOptions } from '../../src/index.js';
import { closeAdmin, startAdmin } from '../../src/http/admin.js';
import { freePorts, until } from '../helpers/net.js';

const MAIN = 'src/cli/main.ts';

/** A module hook that appends every module a process loads to the file FLOTILLA_TRACE names
 *  (hooks run on a thread of their own, so the list goes through a file). */
const TRACER = mkdtempSync(join(tmpdir(), 'flotilla-cli-trace-'));
writeFileSync(
  join(TRACER, 'hooks.mjs'),
  `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  if (process.env.FLOTILLA_TRACE && !url.startsWith('node:')) appendFileSync(process.env.FLOTILLA_TRACE, url + '\\n');
  return next(url, context);
}
`,
);
writeFileSync(
  join(TRACER, 'register.mjs'),
  `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(TRACER, 'hooks.mjs')).href)});\n`,
);
process.on('exit', () => rmSync(TRACER, { recursive: true, force: true }));
/** What help must not load: the node (and with it the shards, LMDB, the transport, the logger). */
const HEAVY = /\/src\/runtime\/node\.ts$|\/src\/bench\/run\.ts$|\/node_modules\/(lmdb|piscina|pino|msgpackr)\//;

interface Run {
  readonly args: readonly string[];
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The modules the process loaded. */
  readonly modules: readonly string[];
}

let traces = 0;

/** `flotilla ARGS` with no admin address or token in the environment. */
function cli(...args: string[]): Promise<Run> {
  return spawnCli(...args).done;
}

/** `flotilla ARGS` as a process that can be signalled while it runs, and what it wrote so far. */
function spawnCli(...args: string[]): { child: ChildProcess; stdout: () => string; done: Promise<Run> } {
  const env = { ...process.env };
  delete env.FLOTILLA_ADMIN;
  delete env.FLOTILLA_ADMIN_TOKEN;
  const trace = join(TRACER, `${traces++}.txt`);
  env.FLOTILLA_TRACE = trace;
  const register = join(TRACER, 'register.mjs');
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', register, MAIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
    timeout: 60_000,
  });
  let stdout = '';
  let stderr = '';
  const done = new Promise<Run>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.once('close', (status) => {
      let modules: string[] = [];
      try {
        modules = readFileSync(trace, 'utf8').split('\n').filter(Boolean);
      } catch {
        // nothing loaded through the hook
      }
      resolve({ args, status, stdout, stderr, modules });
    });
  });
  return { child, stdout: () => stdout, done };
}

/** Run each argument list, two processes at a time (the machine has two cores). */
async function all(lists: readonly string[][]): Promise<Run[]> {
  const out: Run[] = new Array(lists.length);
  let next = 0;
  const lane = async () => {
    while (next < lists.length) {
      const i = next++;
      out[i] = await cli(...lists[i]);
    }
  };
  await Promise.all([lane(), lane()]);
  return out;
}

const OPERATOR = ['status', 'transfer', 'drain', 'undrain', 'balance', 'member', 'nodes', 'decommission'];
/** What each command's usage starts with. */
const USAGE: Record<string, string> = {
  start: 'Usage: flotilla start ',
  demo: 'Usage: flotilla demo ',
  bench: 'Usage: flotilla bench ',
  version: 'Usage: flotilla version',
  help: 'Usage: flotilla <command>',
  ...Object.fromEntries(OPERATOR.map((c) => [c, `Usage: flotilla ${c} --admin HOST:PORT`])),
};
const where = (r: Run) => `flotilla ${r.args.join(' ')} -> ${r.status}\n${r.stdout}\n${r.stderr}`;

test('every command `flotilla --help` lists: --help prints its usage without loading the runtime; an option it does not take is refused', async () => {
  const cmds = Object.keys(USAGE);
  const runs = await all([
    ['--help'],
    ...cmds.map((c) => [c, '--help']),
    // -h goes the same way as --help: once through start's early answer, once through parseArgs.
    ['start', '-h'],
    ['transfer', '-h'],
    ['help', 'transfer'],
    ['version'],
    ['version', '--json'],
    ...cmds.map((c) => [c, '--bogus']),
    ['undrain', '--admin', '127.0.0.1:1', '--group', '3'],
    ['balance', '--admin', '127.0.0.1:1', '--to', 'n2'],
  ]);
  const run = (...args: string[]) => runs.find((r) => r.args.join(' ') === args.join(' '))!;
  // The commands tested here are the commands the help lists: one added there must be added here.
  const top = run('--help');
  const listed = /\nCommands:\n([\s\S]*?)\n\n/
    .exec(top.stdout)?.[1]
    .split('\n')
    .map((l) => l.trim().split(' ')[0]);
  assert.deepEqual(listed?.sort(), [...cmds].sort(), where(top));

  const helps = runs.filter((r) => r.args.length === 2 && (r.args[1] === '--help' || r.args[1] === '-h'));
  assert.equal(helps.length, cmds.length + 2);
  for (const r of [top, ...helps]) {
    assert.equal(r.status, 0, where(r));
    assert.ok(r.stdout.includes(USAGE[r.args[0]] ?? USAGE.help), where(r));
    assert.equal(r.stderr, '', where(r));
    // The hook saw the process (so an empty list of heavy modules means something).
    assert.ok(
      r.modules.some((m) => m.endsWith('/src/cli/main.ts')),
      `traced: ${where(r)}`,
    );
    assert.deepEqual(
      r.modules.filter((m) => HEAVY.test(m)),
      [],
      `help loads no runtime: ${where(r)}`,
    );
  }
  // Each operator command lists only its own options: transfer's --to is not undrain's.
  const help = (c: string) => run(c, '--help').stdout;
  assert.match(help('transfer'), /--to NODE/);
  assert.doesNotMatch(help('undrain'), /--to |--group /);
  assert.match(help('status'), /--json/);
  assert.equal(run('help', 'transfer').stdout, help('transfer'), 'help COMMAND is COMMAND --help');
  // `version` prints the package's version, run from the source tree as from a build.
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  const ver = run('version');
  assert.equal(ver.status, 0, where(ver));
  assert.equal(ver.stdout, `${pkg.version}\n`, where(ver));
  const verJson = run('version', '--json');
  assert.equal(verJson.status, 0, where(verJson));
  const v = JSON.parse(verJson.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(v).sort(), ['commit', 'nodejs', 'version']);
  assert.equal(v.version, pkg.version);
  assert.equal(v.nodejs, process.version);

  const bogus = runs.filter((r) => r.args.some((a) => a === '--bogus' || a === '--group' || a === '--to'));
  assert.equal(bogus.length, cmds.length + 2);
  for (const r of bogus) {
    assert.equal(r.status, 2, where(r));
    assert.ok(r.stderr.includes(USAGE[r.args[0]]), `usage on stderr: ${where(r)}`);
    assert.match(r.stderr, /Unknown option '--(bogus|group|to)'/, where(r));
    assert.doesNotMatch(r.stderr, /\n\s+at /, `no stack trace: ${where(r)}`);
    assert.equal(r.stdout, '', where(r));
  }
});

test('bad or missing values are usage errors (exit 2, the usage on stderr), never stack traces', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-'));
  try {
    const start = ['start', '--id', 'n1', '--data', dir, '--listen', '127.0.0.1:1'];
    const runs = await all([
      [...start, '--log-level', 'verbose'],
      ['transfer', '--admin', '127.0.0.1:1', '--group', 'seven', '--to', 'n2'],
      ['drain', '--admin', '127.0.0.1:1', '--concurrency', '0'],
      ['member', '--admin', '127.0.0.1:1', '--group', '1', '--promote', 'n2', '--remove', 'n3'],
      ['status'],
      ['status', '--admin', 'https://127.0.0.1:8001'],
      ['status', '--admin', '127.0.0.1'],
      ['nonsense'],
      [...start, '--replication', '2'],
      ['transfer', '--admin', '127.0.0.1:1', '--to', 'n2'],
      ['bench', 'nosuch'],
      ['demo', '--groups', '5'],
      ['decommission', '--admin', '127.0.0.1:1'],
      ['decommission', '--admin', '127.0.0.1:1', '--node', 'n2', '--cancel', '--wait'],
    ]);
    const [
      logLevel,
      group,
      concurrency,
      member,
      noAdmin,
      https,
      noPort,
      unknown,
      replication,
      noGroup,
      scenario,
      demo,
      noNode,
      cancelWait,
    ] = runs;
    for (const r of runs) {
      assert.equal(r.status, 2, where(r));
      const cmd = r === unknown ? 'help' : r.args[0];
      assert.ok(r.stderr.includes(USAGE[cmd]), `usage on stderr: ${where(r)}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /, where(r));
      assert.equal(r.stdout, '', where(r));
    }
    assert.match(logLevel.stderr, /config: logLevel: must be one of .*\(got "verbose"\)/);
    assert.match(group.stderr, /--group must be a positive integer \(got "seven"\)/);
    assert.match(concurrency.stderr, /--concurrency must be a positive integer/);
    assert.match(member.stderr, /exactly one of --add-learner/);
    assert.match(noAdmin.stderr, /--admin HOST:PORT is required/);
    assert.match(https.stderr, /plain HTTP; give HOST:PORT \(drop "https:\/\/"\)/);
    assert.match(noPort.stderr, /--admin must be HOST:PORT/);
    assert.match(unknown.stderr, /unknown command "nonsense"/);
    // What startNode would refuse is a configuration error before the node starts.
    assert.match(replication.stderr, /config: replication: must be an integer in 1\.\.1 \(got 2\)/);
    assert.match(noGroup.stderr, /--group is required/);
    assert.match(scenario.stderr, /unknown scenario "nosuch"/);
    assert.match(demo.stderr, /--groups must be an integer/);
    assert.match(noNode.stderr, /--node ID is required/);
    assert.match(cancelWait.stderr, /--wait follows a decommission, not its --cancel/);
    // The bench's usage errors are answered without starting the suite; start's come from the
    // runtime's own checks (which shows the trace would see the runtime where it is loaded).
    assert.deepEqual(
      scenario.modules.filter((m) => HEAVY.test(m)),
      [],
      where(scenario),
    );
    assert.ok(
      replication.modules.some((m) => HEAVY.test(m)),
      'the trace sees the runtime when it is loaded',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--json on every operator command, and connection errors that name their cause', async (t) => {
  const cluster = await processCluster('cli', ['n1'], ['--groups', '4', '--workers', '0', '--log-level', 'silent']);
  t.after(() => cluster.cleanup());
  cluster.spawnNode('n1');
  const url = cluster.admin.get('n1')!;
  const admin = url.slice('http://'.length);
  await until(
    'n1 leading its 4 groups',
    async () => ((await (await fetch(`${url}/status`)).json()) as { leaders: number }).leaders === 4,
    20_000,
    100,
  );
  const [free] = await freePorts(1);
  const runs = await all([
    ['status', '--admin', admin, '--json'],
    ['status', '--admin', admin, '--groups', '--group', '2', '--json'],
    ['transfer', '--admin', admin, '--group', '1', '--to', 'n1', '--json'],
    ['transfer', '--admin', admin, '--group', '1', '--to', 'n9', '--json'],
    ['balance', '--admin', admin, '--dry-run', '--json'],
    ['member', '--admin', admin, '--group', '1', '--add-learner', 'n9', '--json'],
    ['status', '--admin', `127.0.0.1:${free}`],
    ['status', '--admin', `127.0.0.1:${free}`, '--json'],
    ['status', '--admin', url],
  ]);
  const json = (r: Run) => {
    try {
      return JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {
      return assert.fail(`stdout is not one JSON document: ${where(r)}`);
    }
  };
  const [status, groups, transfer, refused, plan, member, refusedConn, refusedJson, withScheme] = runs;
  for (const r of [status, groups, transfer, plan]) assert.equal(r.status, 0, where(r));
  assert.equal(json(status).id, 'n1');
  assert.equal(json(status).leaders, 4);
  assert.ok(Array.isArray(json(status).warnings), 'the advisor warnings come with the status');
  const g = json(groups);
  assert.equal(g.node, 'n1');
  assert.deepEqual(
    (g.groups as { group: number; role: string }[]).map((x) => [x.group, x.role]),
    [[2, 'leader']],
  );
  assert.equal(json(transfer).to, 'n1');
  assert.equal(typeof json(transfer).ms, 'number');
  assert.ok(Array.isArray(json(plan).moves));
  // A refusal: exit 1, the reason on stderr, and with --json the node's typed answer on stdout.
  assert.equal(refused.status, 1, where(refused));
  assert.match(refused.stderr, /TransferFailed \(TargetNotMember\)/);
  assert.equal(json(refused).error, 'TransferFailed');
  assert.equal(json(refused).reason, 'TargetNotMember');
  assert.equal(json(refused).status, 409);
  assert.equal(member.status, 1, where(member));
  assert.equal(json(member).error, 'InvalidArgument');

  // drain on a single node has nowhere to move leadership: exit 1, every group listed; then undrain.
  const drain = await cli('drain', '--admin', admin, '--json');
  assert.equal(drain.status, 1, where(drain));
  assert.deepEqual(
    (json(drain).failed as { group: number; reason: string }[]).map((f) => f.group).sort(),
    [1, 2, 3, 4],
  );
  const undrain = await cli('undrain', '--admin', admin, '--json');
  assert.equal(undrain.status, 0, where(undrain));
  assert.deepEqual(json(undrain), { ok: true, draining: false });
  const round = await cli('balance', '--admin', admin, '--json');
  assert.equal(round.status, 0, where(round));
  assert.ok(Array.isArray(json(round).moves));

  // After the drain (the first cancel creates group 0, which a drain would list too).
  const [nodes, cancel, lastNode] = await all([
    ['nodes', '--admin', admin, '--json'],
    ['decommission', '--admin', admin, '--node', 'n1', '--cancel', '--json'],
    ['decommission', '--admin', admin, '--node', 'n1', '--json'],
  ]);
  // The cluster's nodes; a cancel on an active node changes nothing and answers the node; the
  // last node cannot be decommissioned.
  assert.equal(nodes.status, 0, where(nodes));
  assert.deepEqual(
    (json(nodes).nodes as { id: string; state: string; up: boolean }[]).map((n) => [n.id, n.state, n.up]),
    [['n1', 'active', true]],
  );
  assert.equal(cancel.status, 0, where(cancel));
  assert.equal(json(cancel).id, 'n1');
  assert.equal(json(cancel).state, 'active');
  assert.equal(lastNode.status, 1, where(lastNode));
  assert.equal(json(lastNode).error, 'InvalidArgument');
  assert.equal(json(lastNode).status, 400);
  assert.match(lastNode.stderr, /would leave 0 active nodes/);

  // Every operator command was asked for --json above, and answered one JSON document.
  for (const c of OPERATOR) {
    const asked = [...runs, drain, undrain, round, nodes, cancel, lastNode].filter(
      (r) => r.args[0] === c && r.args.includes('--json'),
    );
    assert.ok(asked.length > 0, `${c} --json is tested`);
    for (const r of asked) assert.equal(typeof json(r), 'object', where(r));
  }

  // Connection errors: the cause in words, exit 1; as JSON with --json.
  assert.equal(refusedConn.status, 1, where(refusedConn));
  assert.match(
    refusedConn.stderr,
    new RegExp(
      `nothing listens on 127\\.0\\.0\\.1:${free} \\(ECONNREFUSED\\): is the node running, and started with --admin`,
    ),
  );
  assert.equal(refusedJson.status, 1);
  assert.equal(json(refusedJson).error, 'Unreachable');
  assert.equal(json(refusedJson).errno, 'ECONNREFUSED');
  // An http:// URL is taken as its HOST:PORT.
  assert.equal(withScheme.status, 0, where(withScheme));
  assert.match(withScheme.stdout, /^node n1 /);
});

test('nodes and decommission on three nodes: the table, a status line, --wait stopped by Ctrl-C or a cancel', {
  timeout: 120_000,
}, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-cli-nodes-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(3);
  const opts = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: `127.0.0.1:${ports[ids.indexOf(id)]}`,
    peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, `127.0.0.1:${ports[ids.indexOf(p)]}`])),
    groups: 4,
    replication: 2,
    tickMs: 20,
    workers: 0,
    noSync: true,
    balancer: { enabled: false },
    labels: { zone: `z-${id}` },
  });
  const nodes = await Promise.all(ids.map((id) => startNode(opts(id))));
  const server = await startAdmin(nodes[0], '127.0.0.1', 0, pino({ level: 'silent' }));
  t.after(async () => {
    await closeAdmin(server);
    await Promise.all(nodes.map((n: FlotillaNode) => n.stop().catch(() => undefined)));
    rmSync(root, { recursive: true, force: true });
  });
  const admin = `127.0.0.1:${(server.address() as { port: number }).port}`;
  await until(
    'every group led',
    async () => (await Promise.all(nodes.map((n) => n.status()))).reduce((a, s) => a + s.leaders, 0) === 4,
    20_000,
  );
  for (const id of ids)
    await until(`n1 links to ${id}`, () => nodes[0].clusterNodes().find((n) => n.id === id)?.up === true);

  // The first cancel creates group 0 (a replica on each node), then the table shows it.
  const cancel = await cli('decommission', '--admin', admin, '--node', 'n3', '--cancel');
  assert.equal(cancel.status, 0, where(cancel));
  assert.match(cancel.stdout, /^n3 active: \d+ replicas\n$/);
  const [table, status] = await all([
    ['nodes', '--admin', admin],
    ['status', '--admin', admin],
  ]);
  assert.equal(table.status, 0, where(table));
  const rows = table.stdout.trimEnd().split('\n');
  assert.match(rows[0], /^id\s+state\s+address\s+zone\s+up\s+replicas$/);
  const seen = nodes[0].clusterNodes();
  assert.deepEqual(
    rows.slice(1).map((r) => r.split(/\s+/)),
    seen.map((n) => [
      n.id,
      'active',
      `127.0.0.1:${ports[ids.indexOf(n.id)]}`,
      n.labels.zone ?? '-',
      'yes',
      String(n.replicas),
    ]),
  );
  assert.deepEqual(
    seen.map((n) => n.id),
    ids,
  );
  assert.equal(seen[0].labels.zone, 'z-n1');
  // Four groups of two replicas, and group 0 on each of the three nodes.
  assert.equal(
    seen.reduce((a, n) => a + n.replicas, 0),
    4 * 2 + 3,
  );
  assert.equal(status.status, 0, where(status));
  assert.match(status.stdout, /^nodes: 3 active$/m);

  // n3 is down: with two replicas per group nothing can be moved off it (no quorum for a change of
  // its groups), so its decommission stays under way for as long as the test looks.
  assert.ok(seen[2].replicas >= 2, 'n3 holds a replica of a key group besides group 0');
  await nodes[2].stop();
  const progress = async (run: ReturnType<typeof spawnCli>) =>
    until('--wait reports progress', () => /n3 decommissioning: \d+ replicas left/.test(run.stdout()), 30_000);

  const interrupted = spawnCli('decommission', '--admin', admin, '--node', 'n3', '--wait');
  await progress(interrupted);
  interrupted.child.kill('SIGINT');
  const stopped = await interrupted.done;
  assert.equal(stopped.status, 130, where(stopped));
  assert.match(stopped.stderr, /stopped waiting after \d+ s; the decommission goes on/);
  assert.equal(nodes[0].clusterNodes().find((n) => n.id === 'n3')!.state, 'decommissioning', 'Ctrl-C cancels nothing');

  // Cancelled elsewhere (through n2) while a --wait follows it: exit 1, the node on stdout as JSON.
  await nodes[1].cancelDecommission('n3');
  const state = () => nodes[0].clusterNodes().find((n) => n.id === 'n3')!.state;
  await until('n1 sees the cancel', () => state() === 'active');
  const cancelled = spawnCli('decommission', '--admin', admin, '--node', 'n3', '--wait', '--json');
  await until('the CLI started the decommission', () => state() === 'decommissioning', 30_000);
  await nodes[1].cancelDecommission('n3');
  const ended = await cancelled.done;
  assert.equal(ended.status, 1, where(ended));
  assert.match(ended.stderr, /n3 is active again: its decommission was cancelled/);
  const doc = JSON.parse(ended.stdout) as Record<string, unknown>;
  assert.equal(doc.id, 'n3');
  assert.equal(doc.state, 'active');
});
