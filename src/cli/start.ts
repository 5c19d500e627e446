// `flotilla start`: run one node as a process. Options come from flags or a JSON config file
// (--config), both read through the one settings table (src/cli/settings.ts, src/cli/config.ts);
// a bad value is reported naming its setting (exit 2). The first SIGTERM or SIGINT drains the
// node's leaderships (bounded by stopDrainMs) so that its groups hand over instead of waiting out
// an election, then stops the node cleanly (pending requests settled, LMDB and sockets closed) and
// exits 0; a second signal stops at once.
import { pino } from 'pino';
import { START_DEFAULTS, startNode, type FlotillaNode, type StartOptions } from '../runtime/node.js';
import { parseAddress } from '../transport/index.js';
import { closeAdmin, startAdmin } from '../http/admin.js';
import { START_HELP } from './start-help.js';
import { parseStartArgs, splitConfig, type StartConfig } from './config.js';

export { ConfigError, parseStartArgs, type ConfigErrorCode, type StartConfig } from './config.js';

/** `onNode` sees the started node (embedding hosts and test harnesses drive it in-process). */
/** What a harness embedding `flotilla start` (a test's child process) may add: see the started
 *  node, and adjust its options (e.g. noSync, which no flag sets). */
export interface StartHooks {
  readonly onNode?: (node: FlotillaNode) => void;
  readonly options?: (o: StartOptions) => StartOptions;
}

export async function runStart(argv: string[], hooks: StartHooks = {}): Promise<number> {
  let cfg: StartConfig;
  const warnings: string[] = [];
  try {
    cfg = parseStartArgs(argv, (w) => warnings.push(w));
  } catch (e) {
    process.stderr.write(`flotilla start: ${(e as Error).message}\n\n${START_HELP}`);
    return 2;
  }
  const { node: opts, process: settings } = splitConfig(cfg);
  const { admin: adminAddr, adminToken, adminReadToken, logLevel, stopDrainMs, faultInjection } = settings;
  const logger = pino({ level: logLevel });
  for (const w of warnings) logger.warn(w);
  let node: Awaited<ReturnType<typeof startNode>>;
  try {
    const given: StartOptions = { ...opts, logger };
    node = await startNode(hooks.options ? hooks.options(given) : given);
  } catch (e) {
    process.stderr.write(`flotilla start: ${(e as Error).message}\n`);
    return 1;
  }
  hooks.onNode?.(node);
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  let stopping = false;
  if (adminAddr) {
    try {
      admin = await startAdmin(node, parseAddress(adminAddr).host, parseAddress(adminAddr).port, logger, {
        faultInjection,
        token: adminToken,
        readToken: adminReadToken,
        stopping: () => stopping,
      });
    } catch (e) {
      process.stderr.write(`flotilla start: admin: cannot listen on ${adminAddr}: ${(e as Error).message}\n`);
      await node.stop();
      return 1;
    }
  }
  logger.info(
    { id: cfg.id, listen: cfg.listen, admin: adminAddr ?? null, groups: cfg.groups ?? START_DEFAULTS.groups },
    'flotilla node running',
  );
  const signal = () =>
    new Promise<string>((resolve) => {
      const on = (sig: string) => () => {
        process.off('SIGTERM', term);
        process.off('SIGINT', int);
        resolve(sig);
      };
      const term = on('SIGTERM');
      const int = on('SIGINT');
      process.once('SIGTERM', term);
      process.once('SIGINT', int);
    });
  const sig = await signal();
  // Clients finish on this node what they have sent and open no keep-alive reuse of it any more.
  stopping = true;
  if (stopDrainMs > 0) {
    // Hand the leaderships over first: its groups then never wait out an election timeout.
    // Forced: the node leaves either way, and a hand-over beats an election even to a slower
    // target. A second signal, or the bound, ends the wait.
    logger.info({ signal: sig, boundMs: stopDrainMs }, 'draining before stop (a second signal stops at once)');
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      node.drain({ force: true, timeoutMs: stopDrainMs }).then(
        (r) => `moved ${r.moved}, failed ${r.failed.length}`,
        (e: Error) => `failed: ${e.message}`,
      ),
      new Promise<string>((r) => {
        timer = setTimeout(() => r('bound reached'), stopDrainMs);
      }),
      signal().then((s) => `${s} again`),
    ]);
    clearTimeout(timer);
    logger.info({ outcome }, 'stopping');
  } else {
    logger.info({ signal: sig }, 'stopping');
  }
  if (admin) await closeAdmin(admin);
  await node.stop();
  logger.info('stopped');
  return 0;
}
