// Helpers for tests that open real sockets on 127.0.0.1.
import { setTimeout as sleep } from 'node:timers/promises';

// Port picking is shared with the benchmark suite, which ships and so cannot import from test/.
export { freePorts } from '../../src/bench/ports.js';

/** Poll `cond` (sync or async; a throw counts as false) until it holds, or fail naming `what`. */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 15_000,
  everyMs = 20,
): Promise<void> {
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
    await sleep(everyMs);
  }
}
