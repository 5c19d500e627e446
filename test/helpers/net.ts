// Helpers for tests that open real sockets on 127.0.0.1.
import { createServer } from 'node:net';

/** n distinct free TCP ports on 127.0.0.1, drawn from below the kernel's ephemeral range
 *  (32768+ here), so concurrent tests binding port 0 cannot be handed one of them between our
 *  check and the moment a child process binds it. Each candidate is checked by binding it. */
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

/** Poll `cond` (sync or async; a throw counts as false) until it holds, or fail naming `what`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    let ok = false;
    try {
      ok = await cond();
    } catch {
      ok = false;
    }
    if (ok) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
