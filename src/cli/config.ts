// `flotilla start` configuration: flags and the JSON config file, both read through the one table
// of settings (src/cli/settings.ts), into StartOptions plus the few settings of the process around
// the node. The file uses StartOptions' names; its former names are still read, each with a
// warning; an unknown name or a bad value is a ConfigError naming the setting.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MIN_SECRET_LENGTH } from '../transport/secret.js';
import { parseAddress, validateTransportSecurity, type TransportSecurity } from '../transport/transport.js';
import { validateBalancerConfig, type BalancerConfig } from '../balancer/balancer.js';
import { BalancerConfigError } from '../balancer/errors.js';
import { RAFT_TUNING_TYPES, resolveStartOptions, type StartOptions } from '../runtime/startoptions.js';
import { StartOptionsError } from '../runtime/errors.js';
import { FlotillaError } from '../errors.js';
import { isObject } from './json.js';
import { LOG_LEVELS, SETTINGS, type Setting } from './settings.js';

export type ConfigErrorCode =
  /** A setting's value is missing, of the wrong type or out of range. */
  | 'InvalidValue'
  /** A name the config file does not know (a typo, or a setting of another version). */
  | 'UnknownSetting'
  /** The config file, or a file a setting names (TLS material, the cluster secret), cannot be read. */
  | 'UnreadableFile'
  /** Options that exclude each other were both given. */
  | 'ConflictingOptions'
  /** One of options that only work together was given without the others. */
  | 'IncompleteOptions';

/** A start configuration refused, naming its setting (as in the config file). */
export class ConfigError extends FlotillaError<ConfigErrorCode> {
  constructor(
    readonly field: string,
    why: string,
    code: ConfigErrorCode = 'InvalidValue',
  ) {
    super(code, `config: ${field}: ${why}`);
  }
}

/** Settings of the process around the node: its admin server, logging and signal handling. */
export interface ProcessSettings {
  readonly admin?: string;
  readonly adminToken?: string;
  readonly adminReadToken?: string;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  readonly stopDrainMs: number;
  readonly faultInjection: boolean;
}

/** StartOptions a configuration sets: all bar the logger (`flotilla start` makes it) and the
 *  test-only noSync. */
export type NodeSettings = Omit<StartOptions, 'logger' | 'noSync'>;

/** What `flotilla start` runs: the node's options and the process settings. */
export type StartConfig = NodeSettings & ProcessSettings;

/** A value and the name it was given under (reported in errors). */
interface Given {
  readonly value: unknown;
  readonly field: string;
  /** A path to read the value from (flags and former names of TLS material and the secret). */
  readonly isPath?: boolean;
  /** Given as text (a flag, the environment): a number is parsed from it. */
  readonly text?: boolean;
}

function fail(field: string, why: string, code?: ConfigErrorCode): never {
  throw new ConfigError(field, why, code);
}

const shown = (v: unknown) => JSON.stringify(v) ?? String(v);

/** Flags arrive as strings; numbers in the file must be JSON numbers. */
function integer(g: Given, min: number): number {
  const n = g.text && typeof g.value === 'string' && g.value.trim() !== '' ? Number(g.value) : g.value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min)
    fail(g.field, `must be ${min === 0 ? 'a non-negative' : 'a positive'} integer (got ${shown(g.value)})`);
  return n;
}

function readText(field: string, path: unknown): string {
  if (typeof path !== 'string' || path.length === 0) fail(field, 'must be a file path');
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    return fail(field, `cannot read ${path}: ${(e as Error).message}`, 'UnreadableFile');
  }
}

/** A 'pem' or 'secret' value: the text itself, or {"file": PATH}. */
function material(g: Given): string {
  if (g.isPath) return readText(g.field, g.value);
  if (typeof g.value === 'string' && g.value.length > 0) return g.value;
  if (isObject(g.value)) {
    for (const k of Object.keys(g.value))
      if (k !== 'file') fail(`${g.field}.${k}`, 'unknown setting', 'UnknownSetting');
    return readText(`${g.field}.file`, g.value.file);
  }
  return fail(g.field, 'must be the text itself or {"file": PATH}');
}

/** Check one value against its setting's kind; the result is what StartOptions takes. */
function check(s: Setting, g: Given): unknown {
  const { value: v, field } = g;
  switch (s.kind) {
    case 'id':
      if (typeof v !== 'string' || v.length === 0 || /[:|,]/.test(v))
        fail(field, 'required; a non-empty string without ":", "|" or ","');
      return v;
    case 'path':
      if (typeof v !== 'string' || v.length === 0) fail(field, 'must be a non-empty path');
      return v;
    case 'address':
      return address(field, v);
    case 'peers': {
      if (!isObject(v)) fail(field, 'must be an object {id: "host:port"}');
      const out: Record<string, string> = {};
      for (const [id, a] of Object.entries(v)) out[id] = address(`${field}.${id}`, a);
      return out;
    }
    case 'positiveInt':
      return integer(g, 1);
    case 'nonNegativeInt':
      return integer(g, 0);
    case 'scale': {
      const x = g.text && typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
      if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0 || x > 100)
        fail(field, `must be a number in (0, 100] (got ${shown(v)})`);
      return x;
    }
    case 'label':
      if (typeof v !== 'string' || v.length === 0 || v.length > 64)
        fail(field, 'must be a non-empty string of at most 64 characters');
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') fail(field, `must be true or false (got ${shown(v)})`);
      return v;
    case 'logLevel':
      if (typeof v !== 'string' || !(LOG_LEVELS as readonly string[]).includes(v))
        fail(field, `must be one of ${LOG_LEVELS.join(', ')} (got ${shown(v)})`);
      return v;
    case 'token':
      if (typeof v !== 'string' || v.length < 8) fail(field, 'must be at least 8 characters');
      return v;
    case 'pem':
      return material(g);
    case 'secret': {
      const secret = material(g).trim();
      if (secret.length < MIN_SECRET_LENGTH)
        fail(field, `the cluster secret must be at least ${MIN_SECRET_LENGTH} characters`);
      return secret;
    }
    case 'balancer':
      if (!isObject(v)) fail(field, 'must be an object of balancer settings');
      return v;
    case 'replicas':
      if (!isObject(v)) fail(field, 'must be an object of replica mover settings');
      return v;
    case 'raft':
      if (!isObject(v)) fail(field, 'must be an object of Raft core tunables');
      for (const [k, x] of Object.entries(v)) {
        const type = RAFT_TUNING_TYPES.get(k);
        if (type === undefined) fail(`${field}.${k}`, 'unknown setting', 'UnknownSetting');
        if (typeof x !== type) fail(`${field}.${k}`, `must be a ${type} (got ${shown(x)})`);
      }
      return v;
  }
}

function address(field: string, v: unknown): string {
  if (typeof v !== 'string') fail(field, 'must be "host:port"');
  try {
    parseAddress(v);
  } catch {
    fail(field, `must be "host:port" (got ${shown(v)})`);
  }
  return v;
}

/** Every value the file gives, by setting key, with the names it was written under. */
function fromFile(file: Record<string, unknown>, warn: (msg: string) => void): Map<string, Given> {
  const out = new Map<string, Given>();
  const put = (key: string, g: Given) => {
    const prev = out.get(key);
    if (prev) fail(g.field, `given twice (also as "${prev.field}")`, 'ConflictingOptions');
    out.set(key, g);
  };
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [name, value] of Object.entries(obj)) {
      const key = prefix + name;
      const alias = prefix === '' ? SETTINGS.find((s) => s.aliases?.includes(name)) : undefined;
      if (alias) {
        warn(`config: "${name}" is a former name: write "${alias.key}"`);
        put(alias.key, { value, field: name, isPath: alias.kind === 'pem' || alias.kind === 'secret' });
      } else if (key === 'stateMachine' && typeof value === 'string') {
        warn('config: "stateMachine" as a path is a former form: write {"module": PATH}');
        put('stateMachine.module', { value, field: key });
      } else if (SETTINGS.some((s) => s.key === key)) {
        put(key, { value, field: key });
      } else if (SETTINGS.some((s) => s.key.startsWith(`${key}.`))) {
        if (!isObject(value)) fail(key, 'must be an object');
        walk(value, `${key}.`);
      } else {
        fail(key, 'unknown setting', 'UnknownSetting');
      }
    }
  };
  walk(file, '');
  return out;
}

const FLAG_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  config: { type: 'string' },
  balancer: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};
for (const s of SETTINGS) {
  if (s.flag === undefined) continue;
  FLAG_OPTIONS[s.flag] = s.kind === 'boolean' || s.kind === 'balancer' ? { type: 'boolean' } : { type: 'string' };
  if (s.kind === 'peers') FLAG_OPTIONS[s.flag] = { type: 'string', multiple: true };
}

/** Merge flags over the config file (over the environment, over defaults) and validate the
 *  result. `warn` hears of former names in the file (the logger does not exist yet). */
export function parseStartArgs(argv: string[], warn: (msg: string) => void = () => {}): StartConfig {
  const { values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: FLAG_OPTIONS });
  let file = new Map<string, Given>();
  if (typeof values.config === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(values.config, 'utf8'));
    } catch (e) {
      fail('config', `cannot read ${values.config}: ${(e as Error).message}`, 'UnreadableFile');
    }
    if (!isObject(parsed)) fail('config', 'must be a JSON object');
    file = fromFile(parsed, warn);
  }
  const given = new Map<Setting, Given>();
  for (const s of SETTINGS) {
    const flag = s.flag === undefined ? undefined : values[s.flag];
    let g: Given | undefined;
    if (s.kind === 'peers') g = peersGiven(file.get(s.key), flag);
    else if (s.kind === 'balancer') g = balancerGiven(file.get(s.key), values.balancer === true, flag === true);
    else if (flag !== undefined && !(s.kind === 'boolean' && flag === false))
      g = { value: flag, field: s.key, isPath: s.flagIsFile, text: true };
    else if (file.has(s.key)) g = file.get(s.key);
    else if (s.env !== undefined && process.env[s.env] !== undefined)
      g = { value: process.env[s.env], field: s.env, text: true };
    else if (s.defaultValue !== undefined) g = { value: s.defaultValue, field: s.key };
    if (g !== undefined) given.set(s, g);
    else if (s.required) fail(s.key, `required: ${s.doc}`);
  }
  // Before any file is read: a missing companion is the clearer message.
  const tls = TLS.filter((k) => [...given.keys()].some((s) => s.key === k));
  if (tls.length > 0 && tls.length < 3)
    fail(
      TLS.find((k) => !tls.includes(k)) ?? TLS[0],
      'tls ca, cert and key must be given together',
      'IncompleteOptions',
    );
  const got = new Map<string, unknown>();
  for (const [s, g] of given) got.set(s.key, check(s, g));
  const cfg = assemble(got);
  // What startNode checks beyond each value (replication within the cluster's size, workers up
  // to 256, a setting given twice): a configuration error here, not a node that fails to start.
  try {
    resolveStartOptions(splitConfig(cfg).node);
  } catch (e) {
    if (e instanceof StartOptionsError) fail(e.field, e.message.slice(e.field.length + 2), e.problem);
    throw e;
  }
  return cfg;
}

/** The node's options and the settings of the process around it. */
export function splitConfig(cfg: StartConfig): { node: NodeSettings; process: ProcessSettings } {
  const { admin, adminToken, adminReadToken, logLevel, stopDrainMs, faultInjection, ...node } = cfg;
  return { node, process: { admin, adminToken, adminReadToken, logLevel, stopDrainMs, faultInjection } };
}

function peersGiven(file: Given | undefined, flags: unknown): Given | undefined {
  if (!Array.isArray(flags) || flags.length === 0) return file;
  const peers: Record<string, unknown> = file && isObject(file.value) ? { ...file.value } : {};
  if (file && !isObject(file.value)) return file; // refused by check() with its own message
  for (const p of flags) {
    const at = typeof p === 'string' ? p.indexOf('=') : -1;
    if (at <= 0) fail('peers', `--peer must be ID=HOST:PORT (got ${shown(p)})`);
    peers[p.slice(0, at)] = p.slice(at + 1);
  }
  return { value: peers, field: 'peers' };
}

function balancerGiven(file: Given | undefined, on: boolean, off: boolean): Given | undefined {
  if (on && off) fail('balancer', '--balancer and --no-balancer both given', 'ConflictingOptions');
  if (!on && !off) return file;
  const base = file && isObject(file.value) ? file.value : {};
  return { value: { ...base, enabled: on }, field: file?.field ?? 'balancer' };
}

/** The checked values as StartConfig; cross-setting checks (TLS all or none, what the transport
 *  and the balancer accept) happen here. */
function assemble(got: Map<string, unknown>): StartConfig {
  const str = (k: string) => {
    const v = got.get(k);
    return typeof v === 'string' ? v : undefined;
  };
  const num = (k: string) => {
    const v = got.get(k);
    return typeof v === 'number' ? v : undefined;
  };
  const obj = (k: string) => {
    const v = got.get(k);
    return isObject(v) ? v : undefined;
  };
  const id = str('id') ?? fail('id', 'required');
  const peers: Record<string, string> = {};
  for (const [p, a] of Object.entries(obj('peers') ?? {})) if (p !== id && typeof a === 'string') peers[p] = a;
  const zone = str('labels.zone');
  const rack = str('labels.rack');
  const maxPendingProposals = num('limits.maxPendingProposals');
  const maxPendingBytes = num('limits.maxPendingBytes');
  const module = str('stateMachine.module');
  const snapshotEvery = num('stateMachine.snapshotEvery');
  if (snapshotEvery !== undefined && module === undefined)
    fail('stateMachine.module', 'required with stateMachine.snapshotEvery', 'IncompleteOptions');
  if (str('adminReadToken') !== undefined && str('adminToken') === undefined)
    fail('adminReadToken', 'only meaningful together with adminToken', 'IncompleteOptions');
  const raft = obj('raft');
  const balancer = obj('balancer');
  const chunkBytes = num('snapshotStream.chunkBytes');
  const window = num('snapshotStream.window');
  const maxOutgoing = num('snapshotStream.maxOutgoing');
  const snapshotStream =
    chunkBytes === undefined && window === undefined && maxOutgoing === undefined
      ? undefined
      : { chunkBytes, window, maxOutgoing };
  return {
    id,
    dataDir: str('dataDir') ?? fail('dataDir', 'required'),
    listen: str('listen') ?? fail('listen', 'required'),
    advertise: str('advertise'),
    join: str('join'),
    peers,
    groups: num('groups'),
    replication: num('replication'),
    workers: num('workers'),
    labels: zone === undefined && rack === undefined ? undefined : { zone, rack },
    tickMs: num('tickMs'),
    electionTicks: num('electionTicks'),
    electionRoundTicks: num('electionRoundTicks'),
    timingScale: num('timingScale'),
    requestTimeoutMs: num('requestTimeoutMs'),
    limits:
      maxPendingProposals === undefined && maxPendingBytes === undefined
        ? undefined
        : { maxPendingProposals, maxPendingBytes },
    raft: raft === undefined ? undefined : { ...raft },
    snapshotStream,
    stateMachine: module === undefined ? undefined : { module, snapshotEvery },
    balancer: balancer === undefined ? undefined : balancerConfig(balancer),
    replicas: obj('replicas'),
    draining: got.get('draining') === true ? true : undefined,
    transportSecurity: transportSecurity(got),
    admin: str('admin'),
    adminToken: str('adminToken'),
    adminReadToken: str('adminReadToken'),
    logLevel: LOG_LEVELS.find((l) => l === got.get('logLevel')) ?? 'info',
    stopDrainMs: num('stopDrainMs') ?? 10_000,
    faultInjection: got.get('faultInjection') === true,
  };
}

function balancerConfig(b: Record<string, unknown>): BalancerConfig {
  // The balancer checks every field and names it ('balancer.followWorkload.minShare').
  const candidate: BalancerConfig = b;
  try {
    validateBalancerConfig(candidate);
  } catch (e) {
    if (e instanceof BalancerConfigError)
      fail(
        e.field,
        e.message.slice(e.field.length + 2),
        e.code === 'UnknownSetting' ? 'UnknownSetting' : 'InvalidValue',
      );
    throw e;
  }
  return candidate;
}

const TLS = ['transportSecurity.tls.ca', 'transportSecurity.tls.cert', 'transportSecurity.tls.key'] as const;

function transportSecurity(got: Map<string, unknown>): TransportSecurity | undefined {
  const given = TLS.filter((k) => got.has(k));
  const pem = (k: string) => String(got.get(k));
  const sec: TransportSecurity = {
    ...(given.length === 3 ? { tls: { ca: pem(TLS[0]), cert: pem(TLS[1]), key: pem(TLS[2]) } } : {}),
    ...(got.has('transportSecurity.secret') ? { secret: pem('transportSecurity.secret') } : {}),
  };
  if (sec.tls === undefined && sec.secret === undefined) return undefined;
  try {
    validateTransportSecurity(sec);
  } catch (e) {
    // The message starts with the transport's name of the field (tls.ca, tls.cert, tls.key, secret).
    const msg = (e as Error).message;
    const at = msg.indexOf(':');
    fail(`transportSecurity.${at > 0 ? msg.slice(0, at) : 'tls'}`, msg.slice(at + 1).trim());
  }
  return sec;
}
