// A nemesis node: `flotilla start` with the same flags, plus clients on the embedded API in this
// process. The harness sends each operation over IPC (after recording its invoke) and records the
// answer; if this process is killed the harness records the operation as info. The same channel
// carries faults injected inside the process (a slow disk), told apart from operations by shape.
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

const dec = new TextDecoder();
process.exitCode = await runStart(process.argv.slice(2), {
  onNode: (node) => {
    process.on('message', (m: Op | Fault) => {
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
