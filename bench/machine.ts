// Describes the machine a benchmark ran on, so results are never quoted without their context.
import os from 'node:os';
import { readFileSync } from 'node:fs';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  node: string;
  dependencies: Record<string, string>;
  date: string;
}

export function machineInfo(): MachineInfo {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const deps: Record<string, string> = {};
  for (const name of Object.keys(pkg.dependencies)) {
    try {
      const p = JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string };
      deps[name] = p.version;
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
