// The `flotilla` command line as an operator meets it, run as real processes: every command's
// --help (exit 0, its own usage), an option it does not take (exit 2, its usage on stderr, no
// stack trace), --json answers that parse against a real single-node cluster, and connection
// errors that name their cause.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processCluster } from '../helpers/procs.js';
import { freePorts, until } from '../helpers/net.js';

const MAIN = 'src/cli/main.ts';

interface Run {
  readonly args: readonly string[];
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `flotilla ARGS` with no admin address or token in the environment. */
function cli(...args: string[]): Promise<Run> {
  const env = { ...process.env };
  delete env.FLOTILLA_ADMIN;
  delete env.FLOTILLA_ADMIN_TOKEN;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
      timeout: 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.once('close', (status) => resolve({ args, status, stdout, stderr }));
  });
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

const OPERATOR = ['status', 'transfer', 'drain', 'undrain', 'balance', 'member'];
/** What each command's usage starts with. */
const USAGE: Record<string, string> = {
  start: 'Usage: flotilla start ',
  demo: 'Usage: flotilla demo ',
  bench: 'usage: flotilla bench ',
  version: 'Usage: flotilla version',
  help: 'Usage: flotilla <command>',
  ...Object.fromEntries(OPERATOR.map((c) => [c, `Usage: flotilla ${c} --admin HOST:PORT`])),
};
const where = (r: Run) => `flotilla ${r.args.join(' ')} -> ${r.status}\n${r.stdout}\n${r.stderr}`;

test('every command prints its own usage for --help and refuses an option it does not take', async () => {
  const cmds = Object.keys(USAGE);
  const helps = await all([...cmds.map((c) => [c, '--help']), ...OPERATOR.map((c) => [c, '-h'])]);
  for (const r of helps) {
    assert.equal(r.status, 0, where(r));
    assert.ok(r.stdout.includes(USAGE[r.args[0]]), where(r));
    assert.equal(r.stderr, '', where(r));
  }
  // Each operator command lists only its own options: transfer's --to is not undrain's.
  const help = (c: string) => helps.find((r) => r.args[0] === c)?.stdout ?? '';
  assert.match(help('transfer'), /--to NODE/);
  assert.doesNotMatch(help('undrain'), /--to |--group /);
  assert.match(help('status'), /--json/);
  // `version` prints the package's version, run from the source tree as from a build.
  const [ver] = await all([['version']]);
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  assert.equal(ver.status, 0, where(ver));
  assert.equal(ver.stdout, `${pkg.version}\n`, where(ver));

  const bogus = await all([
    ...cmds.map((c) => [c, '--bogus']),
    ['undrain', '--admin', '127.0.0.1:1', '--group', '3'],
    ['balance', '--admin', '127.0.0.1:1', '--to', 'n2'],
  ]);
  for (const r of bogus) {
    assert.equal(r.status, 2, where(r));
    assert.ok(r.stderr.includes(USAGE[r.args[0]]), `usage on stderr: ${where(r)}`);
    assert.match(r.stderr, /Unknown option '--(bogus|group|to)'/, where(r));
    assert.doesNotMatch(r.stderr, /\n\s+at /, `no stack trace: ${where(r)}`);
    assert.equal(r.stdout, '', where(r));
  }
});

test('bad values are usage errors (exit 2), never stack traces', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-'));
  try {
    const runs = await all([
      ['start', '--id', 'n1', '--data', dir, '--listen', '127.0.0.1:1', '--log-level', 'verbose'],
      ['transfer', '--admin', '127.0.0.1:1', '--group', 'seven', '--to', 'n2'],
      ['drain', '--admin', '127.0.0.1:1', '--concurrency', '0'],
      ['member', '--admin', '127.0.0.1:1', '--group', '1', '--promote', 'n2', '--remove', 'n3'],
      ['status'],
      ['status', '--admin', 'https://127.0.0.1:8001'],
      ['status', '--admin', '127.0.0.1'],
      ['nonsense'],
    ]);
    const [logLevel, group, concurrency, member, noAdmin, https, noPort, unknown] = runs;
    for (const r of runs) {
      assert.equal(r.status, 2, where(r));
      assert.doesNotMatch(r.stderr, /\n\s+at /, where(r));
    }
    assert.match(logLevel.stderr, /config: logLevel: must be one of .*\(got "verbose"\)/);
    assert.match(group.stderr, /--group must be a positive integer \(got "seven"\)/);
    assert.match(concurrency.stderr, /--concurrency must be a positive integer/);
    assert.match(member.stderr, /exactly one of --add-learner/);
    assert.match(noAdmin.stderr, /--admin HOST:PORT is required/);
    assert.match(https.stderr, /plain HTTP; give HOST:PORT \(drop "https:\/\/"\)/);
    assert.match(noPort.stderr, /--admin must be HOST:PORT/);
    assert.match(unknown.stderr, /unknown command "nonsense"/);
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
