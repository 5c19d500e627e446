// Helpers for tests that open real sockets on 127.0.0.1.
import { createServer } from 'node:net';

/** n distinct free TCP ports on 127.0.0.1 (bound once, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    ports.push((srv.address() as { port: number }).port);
    await new Promise<void>((r) => srv.close(() => r()));
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
