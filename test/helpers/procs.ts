// Real `flotilla start` processes on 127.0.0.1 for fault tests: ports, data dirs, spawning (and
// respawning) a node by id, and cleanup that kills whatever is left.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './net.js';

const MAIN = 'src/cli/main.ts';

export interface ProcessCluster {
  readonly ids: readonly string[];
  /** 'http://127.0.0.1:port' of each node's admin server. */
  readonly admin: ReadonlyMap<string, string>;
  readonly procs: Map<string, ChildProcess>;
  /** Start (or restart) node `id` with the cluster's flags. */
  spawnNode(id: string): ChildProcess;
  /** Kill every process still running and delete the data dirs. */
  cleanup(): void;
}

/** `flags` are the `flotilla start` options every node gets (beyond id, data, listen, admin, peers). */
export async function processCluster(
  name: string,
  ids: readonly string[],
  flags: readonly string[],
): Promise<ProcessCluster> {
  const root = mkdtempSync(join(tmpdir(), `flotilla-${name}-`));
  const ports = await freePorts(2 * ids.length);
  const raft = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const adminAddr = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[ids.length + i]}`]));
  const procs = new Map<string, ChildProcess>();
  return {
    ids,
    admin: new Map([...adminAddr].map(([id, a]) => [id, `http://${a}`])),
    procs,
    spawnNode(id) {
      const args = [
        '--import',
        'tsx',
        MAIN,
        'start',
        '--id',
        id,
        '--data',
        join(root, id),
        '--listen',
        raft.get(id)!,
        '--admin',
        adminAddr.get(id)!,
        ...flags,
      ];
      for (const p of ids) if (p !== id) args.push('--peer', `${p}=${raft.get(p)}`);
      const p = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      procs.set(id, p);
      return p;
    },
    cleanup() {
      for (const p of procs.values()) if (p.exitCode === null) p.kill('SIGKILL');
      rmSync(root, { recursive: true, force: true });
    },
  };
}
