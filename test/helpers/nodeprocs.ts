// Node processes for the elastic fault tests, started one at a time (a bootstrap node with its
// peers, or a node that joins through a member): each runs test/fault/node-child.ts, which is
// `flotilla start` plus an IPC channel to the node (cluster record, decommission, mover status).
// Shared cluster secret and config file; stderr is kept for the tests that read a refusal.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildOp } from '../fault/node-child.js';
import { freePorts } from './net.js';

const CHILD = 'test/fault/node-child.ts';

export interface NodeProc {
  readonly id: string;
  /** Raft listen address, host:port. */
  readonly raft: string;
  /** 'http://127.0.0.1:port' of the admin server. */
  readonly admin: string;
  readonly proc: ChildProcess;
  /** What the process wrote on stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
  /** An IPC request to the node in the child (see node-child.ts). */
  call<T>(op: ChildOp, node?: string): Promise<T>;
  /** GET a JSON admin route. */
  get<T>(path: string): Promise<T>;
}

export interface NodeProcs {
  readonly root: string;
  readonly nodes: Map<string, NodeProc>;
  /** Reserve the addresses of node `id` (kept across restarts). */
  addresses(id: string): Promise<{ raft: string; admin: string }>;
  /** Start node `id`: with `peers` (bootstrap or restart) or `join` (a member's raft address).
   *  `as` names the process (addresses, data dir root/as, the `nodes` entry; default `id`): an
   *  impostor reusing a member's id gets addresses and a data dir of its own. */
  start(id: string, how: { peers: string[] } | { join: string }, as?: string): Promise<NodeProc>;
  cleanup(): void;
}

/** `config`: the JSON config file every node reads; `flags`: more `flotilla start` flags;
 *  `noSync`: fsync off in every node (a test about something else than durability). */
export function nodeProcs(
  name: string,
  config: Record<string, unknown>,
  flags: readonly string[],
  opts: { readonly noSync?: boolean } = {},
): NodeProcs {
  const root = mkdtempSync(join(tmpdir(), `flotilla-${name}-`));
  const secretFile = join(root, 'secret');
  writeFileSync(secretFile, `${name}-cluster-secret-0123456789`);
  const configFile = join(root, 'config.json');
  writeFileSync(configFile, JSON.stringify(config));
  const addrs = new Map<string, { raft: string; admin: string }>();
  const nodes = new Map<string, NodeProc>();
  const all: ChildProcess[] = [];
  const addresses = async (id: string) => {
    let a = addrs.get(id);
    if (!a) {
      const [p, q] = await freePorts(2);
      a = { raft: `127.0.0.1:${p}`, admin: `127.0.0.1:${q}` };
      addrs.set(id, a);
    }
    return a;
  };
  return {
    root,
    nodes,
    addresses,
    async start(id, how, as = id) {
      const a = await addresses(as);
      const args = ['--import', 'tsx', CHILD, 'start', '--id', id, '--data', join(root, as), '--listen', a.raft];
      args.push('--admin', a.admin, '--config', configFile, '--cluster-secret-file', secretFile, ...flags);
      if ('join' in how) args.push('--join', how.join);
      else for (const p of how.peers) if (p !== id) args.push('--peer', `${p}=${(await addresses(p)).raft}`);
      const proc = spawn(process.execPath, args, {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        env: opts.noSync ? { ...process.env, NODE_CHILD_NO_SYNC: '1' } : process.env,
      });
      all.push(proc);
      let err = '';
      proc.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
      let seq = 0;
      const waiting = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
      proc.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
        const w = waiting.get(m.id);
        waiting.delete(m.id);
        if (m.ok) w?.ok(m.value);
        else w?.fail(new Error(m.error));
      });
      void exited.then(() => {
        for (const w of waiting.values()) w.fail(new Error(`${id} exited`));
        waiting.clear();
      });
      const n: NodeProc = {
        id,
        raft: a.raft,
        admin: `http://${a.admin}`,
        proc,
        stderr: () => err,
        exited,
        call<T>(op: ChildOp, node?: string) {
          return new Promise<T>((ok, fail) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return fail(new Error(`${id} exited`));
            const rid = ++seq;
            waiting.set(rid, { ok: ok as (v: unknown) => void, fail });
            proc.send({ id: rid, op, node });
          });
        },
        async get<T>(path: string) {
          const res = await fetch(`${n.admin}${path}`, { signal: AbortSignal.timeout(10_000) });
          if (res.status !== 200) throw new Error(`GET ${path} on ${id}: ${res.status} ${await res.text()}`);
          return (await res.json()) as T;
        },
      };
      nodes.set(as, n);
      return n;
    },
    cleanup() {
      for (const p of all) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      rmSync(root, { recursive: true, force: true });
    },
  };
}
