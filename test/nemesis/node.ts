// A nemesis node: `flotilla start` with the same flags, plus clients on the embedded API in this
// process. The harness sends each operation over IPC (after recording its invoke) and records the
// answer; if this process is killed the harness records the operation as info. The same channel
// carries faults injected inside the process (a slow disk) and the membership calls the harness
// makes (decommission, the cluster as this node sees it), told apart from operations by shape.
//
// Addresses: every node is known to the others as `<id>.nemesis:<port>`, one name for all (the
// cluster record keeps one address per node, and every node dials what the record says). This
// process resolves those names to NEMESIS_DIAL_FROM, a loopback address of its own, where the
// harness listens with one proxy per target port: so each link a → b still runs through its own
// proxy, for the nodes given at start and for those that join later alike.
import dns from 'node:dns';
import { runStart } from '../../src/cli/start.js';

interface Op {
  id: number;
  f: 'read' | 'write' | 'cas';
  key: string;
  value: unknown;
}
interface Fault {
  fault: 'disk';
  ms: number;
  jitterMs: number;
}
interface Admin {
  admin: number;
  call: 'decommission' | 'cluster';
  node?: string;
}

const dialFrom = process.env.NEMESIS_DIAL_FROM;
if (dialFrom !== undefined) {
  const lookup = dns.lookup;
  type Callback = (err: NodeJS.ErrnoException | null, address: unknown, family?: number) => void;
  const hooked = (host: string, opts: unknown, cb?: Callback) => {
    const callback = (typeof opts === 'function' ? opts : cb) as Callback;
    if (!host.endsWith('.nemesis')) return Reflect.apply(lookup, dns, [host, opts, cb]);
    const all = typeof opts === 'object' && opts !== null && (opts as { all?: boolean }).all === true;
    process.nextTick(() => (all ? callback(null, [{ address: dialFrom, family: 4 }]) : callback(null, dialFrom, 4)));
  };
  Object.assign(dns, { lookup: hooked });
}

const dec = new TextDecoder();
process.exitCode = await runStart(process.argv.slice(2), {
  onNode: (node) => {
    process.on('message', (m: Op | Fault | Admin) => {
      if ('admin' in m) {
        const answer = (ok: boolean, value: unknown, error: string | null = null) =>
          process.send?.({ admin: m.admin, ok, value, error });
        if (m.call === 'cluster') {
          answer(true, {
            nodes: node.clusterNodes(),
            mover: node.moverStatus(),
            removed: node.removedFromCluster,
            plan: node.moverStatus().runsHere ? node.replicaPlan() : null,
          });
          return;
        }
        node.decommission(m.node ?? '').then(
          (n) => answer(true, n),
          (e: Error & { code?: string }) => answer(false, null, `${e.code ?? e.name}: ${e.message}`),
        );
        return;
      }
      if ('fault' in m) {
        // Acknowledged so that the harness knows the fault is in force, not just sent.
        let error: string | null = null;
        try {
          node.setDiskDelay(m.ms, m.jitterMs);
        } catch (e) {
          error = (e as Error).message;
        }
        process.send?.({ fault: m.fault, ok: error === null, error });
        return;
      }
      const reply = (type: 'ok' | 'fail' | 'info', value: unknown = null) => process.send?.({ id: m.id, type, value });
      const run = async () => {
        if (m.f === 'read') {
          const v = await node.kv.get(m.key);
          return v === null ? null : dec.decode(v);
        }
        if (m.f === 'write') {
          await node.kv.put(m.key, String(m.value));
          return m.value;
        }
        const [expected, next] = m.value as [string | null, string];
        return (await node.kv.cas(m.key, expected, next)).swapped;
      };
      run().then(
        (v) => reply('ok', v),
        (e: { code?: string }) => {
          // Refused before anything was proposed: certainly not applied. A read changes nothing.
          const certain = e.code === 'Overloaded' || e.code === 'InvalidArgument' || m.f === 'read';
          reply(certain ? 'fail' : 'info');
        },
      );
    });
  },
});
