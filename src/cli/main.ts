#!/usr/bin/env node
// The `flotilla` command line. Parses arguments with node:util parseArgs; each subcommand lives in
// its own module, imported only when that command runs: help, version and the admin commands
// must not load the runtime, LMDB or the benchmark suite. Measured here: `flotilla --help` took
// 0.25-0.33 s with them loaded, 0.11-0.15 s without, which is what `node -e 0` takes (0.09-0.13 s);
// compiled, medians of 21 runs: `demo --help` 0.25 s while demo.ts imported the runtime, 0.13 s
// since; `bench --help` 0.37 s while the runner answered it, 0.12 s since (node -e 0: 0.10 s).
// Every command takes --help and refuses options it does not know. Exit codes: 0 done, 1 refused
// or failed (the reason on stderr), 2 usage error (the command's usage on stderr).
import { parseArgs } from 'node:util';

const HELP = `flotilla — a multi-group Raft runtime for Node.js

Usage: flotilla <command> [options]      (flotilla <command> --help: its options)

Commands:
  start            run a node
  status           a node's status as a table (--groups: per group)
  transfer         move a group's leadership to a node, verified (--group G --to NODE)
  drain            move every leadership off a node for maintenance (--avoid n2,n3)
  undrain          let leadership come back to a node
  balance          run one leader-balancer round now (--dry-run: show the plan)
  member           change a group's membership (--add-learner N, --promote N, --remove N)
  nodes            the cluster's nodes: state, address, zone, link, replicas
  decommission     empty a node and remove it from the cluster (--node ID; --cancel, --wait)
  demo             a local 3-node cluster under load: drain, restart, undrain, balancer, locality
  bench            the benchmark suite, etcd side by side when installed
  version          print the version
  help [COMMAND]   print this help, or a command's

Options:
  -h, --help       print this help

status, transfer, drain, undrain, balance, member, nodes and decommission take --admin HOST:PORT
(a node's admin address) and --json (what the node answered, as JSON); version takes --json too.
Exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 usage error (usage on stderr).
`;

const VERSION_HELP = `Usage: flotilla version [--json]

Print the version of flotilla.

Options:
  --json           {"version", "commit", "nodejs"}: the commit when the build sets FLOTILLA_COMMIT
  -h, --help       print this help
`;

const OPERATOR = ['status', 'transfer', 'drain', 'undrain', 'balance', 'member', 'nodes', 'decommission'];

/** A command that takes next to nothing: --help, and --json for version. */
function bare(
  cmd: 'version' | 'help',
  argv: string[],
  help: string,
): { help: boolean; json: boolean; positionals: string[] } | number {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: cmd === 'help',
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        ...(cmd === 'version' ? { json: { type: 'boolean' } } : {}),
      },
    });
    return { help: values.help === true, json: values.json === true, positionals };
  } catch (e) {
    process.stderr.write(`flotilla ${cmd}: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (cmd === 'start') {
    // Help loads nothing but the settings table: start.ts pulls in the runtime and LMDB.
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write((await import('./start-help.js')).START_HELP);
      return 0;
    }
    return (await import('./start.js')).runStart(rest);
  }
  if (cmd === 'demo') return (await import('./demo.js')).runDemo(rest);
  if (cmd === 'bench') return (await import('./bench.js')).runBench(rest);
  if (OPERATOR.includes(cmd)) return (await import('./client.js')).runClient(cmd, rest);
  if (cmd === 'version') {
    const v = bare(cmd, rest, VERSION_HELP);
    if (typeof v === 'number') return v;
    if (v.help) {
      process.stdout.write(VERSION_HELP);
      return 0;
    }
    // The runtime's reading of package.json finds it from src/ (tsx) and from dist/ alike.
    const { BUILD } = await import('../runtime/processmetrics.js');
    process.stdout.write(
      v.json
        ? `${JSON.stringify({ version: BUILD.version, commit: BUILD.commit ?? null, nodejs: BUILD.nodejs }, null, 2)}\n`
        : `${BUILD.version}\n`,
    );
    return 0;
  }
  if (cmd === 'help') {
    const v = bare(cmd, rest, HELP);
    if (typeof v === 'number') return v;
    const [topic, ...more] = v.positionals;
    if (topic === undefined || v.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (
      more.length > 0 ||
      !(OPERATOR.includes(topic) || ['start', 'demo', 'bench', 'version', 'help'].includes(topic))
    ) {
      process.stderr.write(`flotilla help: unknown command "${v.positionals.join(' ')}"\n\n${HELP}`);
      return 2;
    }
    return topic === 'help' ? main(['--help']) : main([topic, '--help']);
  }
  process.stderr.write(
    `flotilla: ${cmd.startsWith('-') ? `unknown option "${cmd}"` : `unknown command "${cmd}"`}\n\n${HELP}`,
  );
  return 2;
}

// A reader that stops early (`flotilla status | head -3`) closes the pipe: that is not a failure
// of the command, and must not end it with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});
process.exitCode = await main(process.argv.slice(2));
