// Free TCP ports on 127.0.0.1 for processes started later (benchmark clusters, test nodes): the
// one place that picks them, shared by the suite and the tests.
import { createServer } from 'node:net';

/** n distinct free TCP ports on 127.0.0.1, drawn from below the kernel's ephemeral range
 *  (32768+ on Linux), so concurrent processes binding port 0 cannot be handed one of them between
 *  our check and the moment a child process binds it. Each candidate is checked by binding it. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (ports.includes(port)) continue;
    const srv = createServer();
    const ok = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
    if (!ok) continue;
    await new Promise<void>((r) => srv.close(() => r()));
    ports.push(port);
  }
  return ports;
}
