// Describes the machine a benchmark ran on, so results are never quoted without their context.
import os from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
  dependencies: Record<string, string>;
  date: string;
}

/** The package.json of this package: the nearest one above this file (src/bench in a clone,
 *  dist/src/bench in a build or an installed package). */
export function ownPackageJson(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) return p;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${import.meta.dirname}`);
  }
}

/** The installed version of a dependency, looked up where Node would resolve it from here. */
function installedVersion(name: string): string {
  for (const dir of createRequire(import.meta.url).resolve.paths(name) ?? []) {
    const p = join(dir, name, 'package.json');
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return 'missing';
}

export function machineInfo(): MachineInfo {
  const pkg = JSON.parse(readFileSync(ownPackageJson(), 'utf8')) as { dependencies: Record<string, string> };
  const deps: Record<string, string> = {};
  for (const name of Object.keys(pkg.dependencies)) {
    try {
      deps[name] = installedVersion(name);
    } catch {
      deps[name] = 'missing';
    }
  }
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    dependencies: deps,
    date: new Date().toISOString(),
  };
}
