// `flotilla bench`: runs the benchmark suite (src/bench/run.ts) in a child process with the
// arguments given. The suite ships with the package, so an installed `flotilla bench` runs the
// compiled runner beside this file; under tsx (a clone, `node --import tsx src/cli/main.ts`) it
// runs the TypeScript one through tsx. See src/bench/run.ts for the environment variables.
// --help and usage errors are answered here, from the runner's argument checks alone: the
// runner imports every scenario, and with them the runtime.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BENCH_USAGE, parseBenchArgs } from '../bench/args.js';

/** The runner of the same build as this file and the node arguments that run it. */
function benchRunner(): { file: string; execArgv: string[] } {
  const ts = import.meta.url.endsWith('.ts');
  const file = fileURLToPath(new URL(ts ? '../bench/run.ts' : '../bench/run.js', import.meta.url));
  // tsx resolved from here (a dev dependency, present in a clone) rather than from the cwd.
  return { file, execArgv: ts ? ['--import', import.meta.resolve('tsx')] : [] };
}

export async function runBench(args: string[]): Promise<number> {
  const command = parseBenchArgs(args);
  if (command.kind === 'help') {
    process.stdout.write(BENCH_USAGE);
    return 0;
  }
  if (command.kind === 'usage') {
    process.stderr.write(`flotilla bench: ${command.message}\n\n${BENCH_USAGE}`);
    return 2;
  }
  const { file, execArgv } = benchRunner();
  const child = spawn(process.execPath, [...execArgv, file, ...args], { stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal; a SIGTERM to us is passed on.
  const onTerm = () => child.kill('SIGTERM');
  process.once('SIGTERM', onTerm);
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      process.off('SIGTERM', onTerm);
      resolve(code ?? (signal ? 1 : 0));
    }),
  );
}
