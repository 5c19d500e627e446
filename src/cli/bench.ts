// `flotilla bench`: runs the benchmark suite (bench/run.ts) of the repository this command was
// installed from, with its arguments. The suite starts node processes, etcd when installed, and
// TypeScript through tsx, so it runs from a clone (`npm ci` installs tsx), not from a published
// package, which ships only the runtime.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/** The repository root holding bench/run.ts: two levels above src/cli, three above dist/src/cli. */
export function findBenchRunner(from = dirname(fileURLToPath(import.meta.url))): string | null {
  for (const up of ['../..', '../../..']) {
    const p = join(from, up, 'bench', 'run.ts');
    if (existsSync(p)) return p;
  }
  return null;
}

export async function runBench(args: string[]): Promise<number> {
  const runner = findBenchRunner();
  if (!runner) {
    process.stderr.write('flotilla bench: bench/run.ts not found: the benchmark suite runs from a clone of the repository (git clone, npm ci, npx flotilla bench)\n');
    return 1;
  }
  let tsx: string;
  try {
    tsx = import.meta.resolve('tsx');
  } catch {
    process.stderr.write('flotilla bench: tsx is not installed (it is a dev dependency: run npm ci in the repository)\n');
    return 1;
  }
  const child = spawn(process.execPath, ['--import', tsx, runner, ...args], { stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal; a SIGTERM to us is passed on.
  const onTerm = () => child.kill('SIGTERM');
  process.once('SIGTERM', onTerm);
  return new Promise((resolve) => child.once('exit', (code, signal) => {
    process.off('SIGTERM', onTerm);
    resolve(code ?? (signal ? 1 : 0));
  }));
}
