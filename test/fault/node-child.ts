// Child process of the elastic fault tests: `flotilla start` as the CLI runs it (runStart: the same
// flags, config file, admin server, error output and exit code), plus an IPC channel to the
// started node for what main's admin HTTP server does not expose yet: the cluster record
// (clusterNodes), decommission and the replica mover's status.
//
//   node --import tsx test/fault/node-child.ts start <flotilla start flags>   (spawned with 'ipc')
//   NODE_CHILD_NO_SYNC=1 in its environment turns fsync off.
//
// Requests on IPC: {id, op: 'nodes' | 'mover' | 'removed' | 'decommission' | 'directory', node?}; answers
// {id, ok: true, value} or {id, ok: false, error}. Not importable: running it starts the node.
import { runStart } from '../../src/cli/start.js';
import type { FlotillaNode } from '../../src/runtime/node.js';

export type ChildOp = 'nodes' | 'mover' | 'removed' | 'decommission' | 'directory';
export interface ChildRequest {
  readonly id: number;
  readonly op: ChildOp;
  readonly node?: string;
}

let node: FlotillaNode | null = null;

async function answer(req: ChildRequest): Promise<unknown> {
  if (!node) throw new Error('node not started');
  switch (req.op) {
    case 'nodes':
      return node.clusterNodes();
    case 'mover':
      return node.moverStatus();
    case 'removed':
      return node.removedFromCluster;
    case 'decommission':
      return node.decommission(req.node ?? '');
    case 'directory': {
      // Where this node routes each group (its directory), groups 0..`node` (a number here).
      const out: Record<number, string[]> = {};
      for (let g = 0; g <= Number(req.node); g++)
        try {
          out[g] = node.replicasOf(g);
        } catch {
          // not a group here
        }
      return out;
    }
  }
}

process.on('message', (req: ChildRequest) => {
  answer(req).then(
    (value) => process.send?.({ id: req.id, ok: true, value }),
    (e: unknown) => process.send?.({ id: req.id, ok: false, error: (e as Error).message }),
  );
});

const argv = process.argv.slice(2);
if (argv[0] !== 'start') throw new Error('usage: node-child.ts start <flags>');
const code = await runStart(argv.slice(1), {
  onNode: (n) => {
    node = n;
  },
  // NODE_CHILD_NO_SYNC=1: fsync off, for a test about something else than durability.
  options: (o) => (process.env.NODE_CHILD_NO_SYNC === '1' ? { ...o, noSync: true } : o),
});
process.exit(code);
