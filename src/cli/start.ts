// `flotilla start`: run one node as a process. Options come from flags or a JSON config file
// (--config) with the same fields; a bad value is reported naming its field. The first SIGTERM or
// SIGINT drains the node's leaderships (bounded by stopDrainMs) so that its groups hand over
// instead of waiting out an election, then stops the node cleanly (pending requests settled,
// LMDB and sockets closed) and exits 0; a second signal stops at once.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startNode, type FlotillaNode, type StartOptions } from '../runtime/node.js';
import {
  MIN_SECRET_LENGTH,
  parseAddress,
  validateTransportSecurity,
  type TransportSecurity,
} from '../transport/index.js';
import { closeAdmin, startAdmin } from '../http/admin.js';
import { START_HELP } from './start-help.js';
import { FlotillaError } from '../errors.js';
import { isObject } from './json.js';

export type ConfigErrorCode =
  /** A field's value is missing, of the wrong type or out of range. */
  | 'InvalidValue'
  /** The config file, or a file a field names (TLS material, the cluster secret), cannot be read. */
  | 'UnreadableFile'
  /** Options that exclude each other were both given. */
  | 'ConflictingOptions'
  /** One of options that only work together was given without the others. */
  | 'IncompleteOptions';

/** A start configuration refused, naming its field (as in the config file). */
export class ConfigError extends FlotillaError<ConfigErrorCode> {
  constructor(
    readonly field: string,
    why: string,
    code: ConfigErrorCode = 'InvalidValue',
  ) {
    super(code, `config: ${field}: ${why}`);
  }
}

interface NodeConfig {
  id: string;
  data: string;
  listen: string;
  peers: Record<string, string>;
  groups: number;
  replication?: number;
  admin?: string;
  tickMs?: number;
  electionTicks?: number;
  electionRoundTicks?: number;
  workers?: number;
  zone?: string;
  rack?: string;
  timingScale?: number;
  requestTimeoutMs?: number;
  stateMachine?: string;
  faultInjection?: boolean;
  balancer?: Record<string, unknown>;
  draining?: boolean;
  /** On SIGTERM/SIGINT, drain for at most this long before stopping (0: stop at once). Default 10,000. */
  stopDrainMs?: number;
  adminToken?: string;
  transportSecurity?: TransportSecurity;
}

function positiveInt(field: string, v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1)
    throw new ConfigError(field, `must be a positive integer (got ${JSON.stringify(v)})`);
  return n;
}

function address(field: string, v: unknown): string {
  if (typeof v !== 'string') throw new ConfigError(field, 'must be "host:port"');
  try {
    parseAddress(v);
  } catch {
    throw new ConfigError(field, `must be "host:port" (got ${JSON.stringify(v)})`);
  }
  return v;
}

/** Merge the config file and flags into a validated NodeConfig. */
export function parseStartArgs(argv: string[]): NodeConfig & { logLevel: string } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      id: { type: 'string' },
      data: { type: 'string' },
      listen: { type: 'string' },
      peer: { type: 'string', multiple: true },
      groups: { type: 'string' },
      replication: { type: 'string' },
      admin: { type: 'string' },
      'tick-ms': { type: 'string' },
      'election-ticks': { type: 'string' },
      'election-round-ticks': { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
      workers: { type: 'string' },
      zone: { type: 'string' },
      rack: { type: 'string' },
      'timing-scale': { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'state-machine': { type: 'string' },
      'fault-injection': { type: 'boolean' },
      balancer: { type: 'boolean' },
      'no-balancer': { type: 'boolean' },
      draining: { type: 'boolean' },
      'admin-token': { type: 'string' },
      'stop-drain-ms': { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'cluster-secret-file': { type: 'string' },
    },
  });
  let file: Partial<Record<string, unknown>> = {};
  if (values.config) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(values.config, 'utf8'));
    } catch (e) {
      throw new ConfigError('config', `cannot read ${values.config}: ${(e as Error).message}`, 'UnreadableFile');
    }
    if (!isObject(parsed)) throw new ConfigError('config', 'must be a JSON object');
    file = parsed;
  }
  const peers: Record<string, string> = {};
  const filePeers = file.peers ?? {};
  if (!isObject(filePeers)) throw new ConfigError('peers', 'must be an object {id: "host:port"}');
  for (const [id, a] of Object.entries(filePeers)) peers[id] = address(`peers.${id}`, a);
  for (const p of values.peer ?? []) {
    const at = p.indexOf('=');
    if (at <= 0) throw new ConfigError('peer', `must be ID=HOST:PORT (got ${JSON.stringify(p)})`);
    peers[p.slice(0, at)] = address(`peer ${p.slice(0, at)}`, p.slice(at + 1));
  }
  const id = values.id ?? file.id;
  if (typeof id !== 'string' || id.length === 0 || /[:|,]/.test(id))
    throw new ConfigError('id', 'required; a non-empty string without ":", "|" or ","');
  delete peers[id];
  const data = values.data ?? file.data;
  if (typeof data !== 'string' || data.length === 0) throw new ConfigError('data', 'required: the data directory');
  const cfg: NodeConfig & { logLevel: string } = {
    id,
    data,
    listen: address('listen', values.listen ?? file.listen),
    peers,
    groups: positiveInt('groups', values.groups ?? file.groups ?? 100),
    logLevel: values['log-level'] ?? (typeof file.logLevel === 'string' ? file.logLevel : 'info'),
  };
  const rep = values.replication ?? file.replication;
  if (rep !== undefined) cfg.replication = positiveInt('replication', rep);
  const admin = values.admin ?? file.admin;
  if (admin !== undefined) cfg.admin = address('admin', admin);
  const tick = values['tick-ms'] ?? file.tickMs;
  if (tick !== undefined) cfg.tickMs = positiveInt('tickMs', tick);
  const el = values['election-ticks'] ?? file.electionTicks;
  if (el !== undefined) cfg.electionTicks = positiveInt('electionTicks', el);
  const round = values['election-round-ticks'] ?? file.electionRoundTicks;
  if (round !== undefined) cfg.electionRoundTicks = positiveInt('electionRoundTicks', round);
  const workers = values.workers ?? file.workers;
  if (workers !== undefined) cfg.workers = positiveInt('workers', workers);
  for (const [k, v] of [
    ['zone', values.zone ?? file.zone],
    ['rack', values.rack ?? file.rack],
  ] as const) {
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length === 0 || v.length > 64)
      throw new ConfigError(k, 'must be a non-empty string of at most 64 characters');
    cfg[k] = v;
  }
  const scale = values['timing-scale'] ?? file.timingScale;
  if (scale !== undefined) {
    const x = Number(scale);
    if (!Number.isFinite(x) || x <= 0 || x > 100)
      throw new ConfigError('timingScale', `must be a number in (0, 100] (got ${JSON.stringify(scale)})`);
    cfg.timingScale = x;
  }
  const rt = values['request-timeout-ms'] ?? file.requestTimeoutMs;
  if (rt !== undefined) cfg.requestTimeoutMs = positiveInt('requestTimeoutMs', rt);
  const sm = values['state-machine'] ?? file.stateMachine;
  if (sm !== undefined) {
    if (typeof sm !== 'string' || sm.length === 0) throw new ConfigError('stateMachine', 'must be a module path');
    cfg.stateMachine = sm;
  }
  if (values['fault-injection'] || file.faultInjection === true) cfg.faultInjection = true;
  const token =
    values['admin-token'] ??
    (typeof file.adminToken === 'string' ? file.adminToken : undefined) ??
    process.env.FLOTILLA_ADMIN_TOKEN;
  if (token !== undefined) {
    if (token.length < 8) throw new ConfigError('adminToken', 'must be at least 8 characters');
    cfg.adminToken = token;
  }
  const bal = file.balancer;
  if (bal !== undefined && !isObject(bal)) throw new ConfigError('balancer', 'must be an object');
  if (values.balancer && values['no-balancer'])
    throw new ConfigError('balancer', '--balancer and --no-balancer both given', 'ConflictingOptions');
  if (bal !== undefined || values.balancer || values['no-balancer']) {
    cfg.balancer = {
      ...(isObject(bal) ? bal : undefined),
      ...(values.balancer ? { enabled: true } : {}),
      ...(values['no-balancer'] ? { enabled: false } : {}),
    };
  }
  if (values.draining || file.draining === true) cfg.draining = true;
  const sd = values['stop-drain-ms'] ?? file.stopDrainMs;
  if (sd !== undefined) {
    const n = typeof sd === 'string' ? Number(sd) : sd;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0)
      throw new ConfigError('stopDrainMs', `must be a non-negative integer (got ${JSON.stringify(sd)})`);
    cfg.stopDrainMs = n;
  }
  const security = transportSecurity(values, file);
  if (security !== undefined) cfg.transportSecurity = security;
  return cfg;
}

function readConfigFile(field: string, path: unknown): string {
  if (typeof path !== 'string' || path.length === 0) throw new ConfigError(field, 'must be a file path');
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(field, `cannot read ${path}: ${(e as Error).message}`, 'UnreadableFile');
  }
}

/** --tls-ca/--tls-cert/--tls-key (all or none) and the cluster secret (file, or the environment). */
function transportSecurity(
  values: Record<string, unknown>,
  file: Partial<Record<string, unknown>>,
): TransportSecurity | undefined {
  const paths = {
    tlsCa: values['tls-ca'] ?? file.tlsCa,
    tlsCert: values['tls-cert'] ?? file.tlsCert,
    tlsKey: values['tls-key'] ?? file.tlsKey,
  };
  const given = Object.entries(paths)
    .filter(([, v]) => v !== undefined)
    .map(([k]) => k);
  if (given.length > 0 && given.length < 3) {
    throw new ConfigError(
      Object.keys(paths).find((k) => !given.includes(k))!,
      'tlsCa, tlsCert and tlsKey must be given together',
      'IncompleteOptions',
    );
  }
  const sec: { tls?: { ca: string; cert: string; key: string }; secret?: string } = {};
  if (given.length === 3) {
    sec.tls = {
      ca: readConfigFile('tlsCa', paths.tlsCa),
      cert: readConfigFile('tlsCert', paths.tlsCert),
      key: readConfigFile('tlsKey', paths.tlsKey),
    };
  }
  const secretFile = values['cluster-secret-file'] ?? file.clusterSecretFile;
  const env = process.env.FLOTILLA_CLUSTER_SECRET;
  if (secretFile !== undefined || env !== undefined) {
    const field = secretFile !== undefined ? 'clusterSecretFile' : 'FLOTILLA_CLUSTER_SECRET';
    const secret = (secretFile !== undefined ? readConfigFile(field, secretFile) : env!).trim();
    if (secret.length < MIN_SECRET_LENGTH)
      throw new ConfigError(field, `the cluster secret must be at least ${MIN_SECRET_LENGTH} characters`);
    sec.secret = secret;
  }
  if (sec.tls === undefined && sec.secret === undefined) return undefined;
  try {
    validateTransportSecurity(sec);
  } catch (e) {
    // The message starts with the option's field (tls.ca, tls.cert, tls.key, secret).
    const msg = (e as Error).message;
    const field =
      ({ 'tls.ca': 'tlsCa', 'tls.cert': 'tlsCert', 'tls.key': 'tlsKey' } as Record<string, string>)[
        msg.slice(0, msg.indexOf(':'))
      ] ?? 'tls';
    throw new ConfigError(field, msg.slice(msg.indexOf(':') + 1).trim());
  }
  return sec;
}

/** `onNode` sees the started node (embedding hosts and test harnesses drive it in-process). */
export async function runStart(argv: string[], hooks: { onNode?: (node: FlotillaNode) => void } = {}): Promise<number> {
  let cfg: ReturnType<typeof parseStartArgs>;
  try {
    cfg = parseStartArgs(argv);
  } catch (e) {
    process.stderr.write(`flotilla start: ${(e as Error).message}\n\n${START_HELP}`);
    return 2;
  }
  const logger = pino({ level: cfg.logLevel });
  const opts: StartOptions = {
    id: cfg.id,
    dataDir: cfg.data,
    listen: cfg.listen,
    peers: cfg.peers,
    groups: cfg.groups,
    replication: cfg.replication,
    tickMs: cfg.tickMs,
    electionTicks: cfg.electionTicks,
    electionRoundTicks: cfg.electionRoundTicks,
    logger,
    workers: cfg.workers,
    labels: { zone: cfg.zone, rack: cfg.rack },
    timingScale: cfg.timingScale,
    requestTimeoutMs: cfg.requestTimeoutMs,
    stateMachine: cfg.stateMachine ? { module: cfg.stateMachine } : undefined,
    balancer: cfg.balancer as StartOptions['balancer'],
    draining: cfg.draining,
    transportSecurity: cfg.transportSecurity,
  };
  let node: Awaited<ReturnType<typeof startNode>>;
  try {
    node = await startNode(opts);
  } catch (e) {
    process.stderr.write(`flotilla start: ${(e as Error).message}\n`);
    return 1;
  }
  hooks.onNode?.(node);
  let admin: Awaited<ReturnType<typeof startAdmin>> | null = null;
  let stopping = false;
  if (cfg.admin) {
    try {
      admin = await startAdmin(node, parseAddress(cfg.admin).host, parseAddress(cfg.admin).port, logger, {
        faultInjection: cfg.faultInjection,
        token: cfg.adminToken,
        stopping: () => stopping,
      });
    } catch (e) {
      process.stderr.write(`flotilla start: admin: cannot listen on ${cfg.admin}: ${(e as Error).message}\n`);
      await node.stop();
      return 1;
    }
  }
  logger.info(
    { id: cfg.id, listen: cfg.listen, admin: cfg.admin ?? null, groups: cfg.groups },
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
  const stopDrainMs = cfg.stopDrainMs ?? 10_000;
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
