// The one table of `flotilla start` settings: each setting's name (a StartOptions field, dotted
// when nested, or a setting of the process around the node), its kind, flag, default and doc.
// The config file is validated against it (src/cli/config.ts), `flotilla start --help` and the
// table in docs/operations.md are printed from it, so the three cannot drift apart. A node
// setting's default is not written here: it is read from the runtime's START_DEFAULTS, what
// startNode itself fills in, and only the defaults the runtime computes are described in words.
// It loads no more than those defaults and the secret length: `--help` must not pull in the runtime.
import { START_DEFAULTS, type StartOptions } from '../runtime/startoptions.js';
import { MIN_SECRET_LENGTH } from '../transport/secret.js';
import { wrapWords } from './wrap.js';

/** StartOptions' fields a config file sets (the logger is made by `flotilla start`; noSync is for
 *  protocol tests only). */
type NodeField = Exclude<keyof StartOptions, 'logger' | 'noSync'>;
/** Settings of the process around the node. */
type ProcessField = 'admin' | 'adminToken' | 'adminReadToken' | 'logLevel' | 'stopDrainMs' | 'faultInjection';
/** A setting's name: a StartOptions field, dotted when nested, or a process setting. */
export type SettingKey = NodeField | `${NodeField}.${string}` | ProcessField;

/** How a value is checked (src/cli/config.ts implements each). */
export type SettingKind =
  /** A node id: non-empty, without ':', '|' or ','. */
  | 'id'
  /** A non-empty string naming a file or directory. */
  | 'path'
  /** "host:port". */
  | 'address'
  /** {id: "host:port"}. */
  | 'peers'
  | 'positiveInt'
  | 'nonNegativeInt'
  /** A number in (0, 100]. */
  | 'scale'
  /** A non-empty string of at most 64 characters. */
  | 'label'
  | 'boolean'
  /** A pino level. */
  | 'logLevel'
  /** A string of at least 8 characters. */
  | 'token'
  /** PEM text, or {"file": PATH} to read it from a file. */
  | 'pem'
  /** The cluster secret itself, or {"file": PATH}. */
  | 'secret'
  /** An object of balancer settings, checked by the balancer. */
  | 'balancer'
  /** An object of replica mover settings, checked by the mover. */
  | 'replicas'
  /** An object of Raft core tunables. */
  | 'raft';

export interface Setting {
  /** The name in the config file and in StartOptions; dotted when nested ('labels.zone'). */
  readonly key: SettingKey;
  readonly kind: SettingKind;
  /** 'node': a StartOptions field; 'process': the process around the node (flotilla start only). */
  readonly scope: 'node' | 'process';
  /** The flag (kebab-case) without its dashes, and the placeholder of its argument. */
  readonly flag?: string;
  readonly arg?: string;
  /** The flag names a file whose content is the value (TLS material, the cluster secret). */
  readonly flagIsFile?: boolean;
  readonly required?: boolean;
  /** A process setting's default, applied by `flotilla start` when nothing else gives a value
   *  (a node setting's default is startNode's: START_DEFAULTS). */
  readonly defaultValue?: string | number;
  /** The default in words, when it is not a value of START_DEFAULTS (the runtime computes it, or
   *  it is an absence). */
  readonly defaultDoc?: string;
  /** An environment variable read when neither flag nor file gives the value. */
  readonly env?: string;
  /** Former config-file names, still read with a warning; for 'pem' and 'secret' their value is a path. */
  readonly aliases?: readonly string[];
  readonly doc: string;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const TABLE = [
  { key: 'id', kind: 'id', scope: 'node', flag: 'id', arg: 'ID', required: true, doc: "this node's id" },
  {
    key: 'dataDir',
    kind: 'path',
    scope: 'node',
    flag: 'data',
    arg: 'DIR',
    required: true,
    aliases: ['data'],
    doc: 'the data directory',
  },
  {
    key: 'listen',
    kind: 'address',
    scope: 'node',
    flag: 'listen',
    arg: 'HOST:PORT',
    required: true,
    doc: 'the address other nodes connect to',
  },
  {
    key: 'advertise',
    kind: 'address',
    scope: 'node',
    flag: 'advertise',
    arg: 'HOST:PORT',
    defaultDoc: 'the listen address',
    doc: 'the address other nodes dial, when not the listen address (recorded when this node joins)',
  },
  {
    key: 'join',
    kind: 'address',
    scope: 'node',
    flag: 'join',
    arg: 'HOST:PORT',
    defaultDoc: 'none',
    doc: "join a running cluster through any member's listen address (an empty data dir only; then no --peer)",
  },
  {
    key: 'peers',
    kind: 'peers',
    scope: 'node',
    flag: 'peer',
    arg: 'ID=HOST:PORT',
    doc: 'every other node (repeat the flag for each; in the file {"n2": "host:port", ...})',
  },
  {
    key: 'groups',
    kind: 'positiveInt',
    scope: 'node',
    flag: 'groups',
    arg: 'N',
    doc: 'groups bootstrapped with the cluster (ids 1..N)',
  },
  {
    key: 'replication',
    kind: 'positiveInt',
    scope: 'node',
    flag: 'replication',
    arg: 'R',
    defaultDoc: 'min(3, nodes)',
    doc: 'replicas per group',
  },
  {
    key: 'workers',
    kind: 'nonNegativeInt',
    scope: 'node',
    flag: 'workers',
    arg: 'W',
    defaultDoc: '0 with at most 2 cores, else the number of cores',
    doc: 'worker threads, one shard each (0: the shard runs on the main thread)',
  },
  {
    key: 'labels.zone',
    kind: 'label',
    scope: 'node',
    flag: 'zone',
    arg: 'Z',
    aliases: ['zone'],
    doc: "this node's zone (locality for the balancer)",
  },
  {
    key: 'labels.rack',
    kind: 'label',
    scope: 'node',
    flag: 'rack',
    arg: 'R',
    aliases: ['rack'],
    doc: "this node's rack (locality for the balancer)",
  },
  {
    key: 'tickMs',
    kind: 'positiveInt',
    scope: 'node',
    flag: 'tick-ms',
    arg: 'MS',
    doc: 'the tick, which is the heartbeat interval',
  },
  {
    key: 'electionTicks',
    kind: 'positiveInt',
    scope: 'node',
    flag: 'election-ticks',
    arg: 'N',
    doc: 'election timeout in ticks: how long followers wait for a leader before campaigning',
  },
  {
    key: 'electionRoundTicks',
    kind: 'positiveInt',
    scope: 'node',
    flag: 'election-round-ticks',
    arg: 'N',
    defaultDoc: 'electionTicks',
    doc: 'how long a candidate waits for a split vote to resolve before it tries again',
  },
  {
    key: 'timingScale',
    kind: 'scale',
    scope: 'node',
    flag: 'timing-scale',
    arg: 'X',
    doc: 'multiplies tickMs for slow disks or networks',
  },
  {
    key: 'requestTimeoutMs',
    kind: 'positiveInt',
    scope: 'node',
    flag: 'request-timeout-ms',
    arg: 'MS',
    doc: 'default deadline of a client request, retries included',
  },
  {
    key: 'limits.maxPendingProposals',
    kind: 'positiveInt',
    scope: 'node',
    doc: 'admission: proposals pending on this node before new ones fail with Overloaded',
  },
  {
    key: 'limits.maxPendingBytes',
    kind: 'positiveInt',
    scope: 'node',
    doc: 'admission: bytes pending on this node before new proposals fail with Overloaded',
  },
  {
    key: 'snapshotStream.chunkBytes',
    kind: 'positiveInt',
    scope: 'node',
    doc: 'snapshot streaming: data bytes per chunk, 4 KiB..16 MiB (docs/snapshots.md)',
  },
  {
    key: 'snapshotStream.window',
    kind: 'positiveInt',
    scope: 'node',
    doc: 'snapshot streaming: chunks sent and not yet acknowledged per stream, 1..64',
  },
  {
    key: 'snapshotStream.maxOutgoing',
    kind: 'positiveInt',
    scope: 'node',
    doc: 'snapshot streaming: streams a shard sends at once, 1..64',
  },
  {
    key: 'raft',
    kind: 'raft',
    scope: 'node',
    defaultDoc: "the core's, with the runtime's choices over them",
    doc: 'Raft core tunables, e.g. {"leaseReads": true} (docs/raft-core.md)',
  },
  {
    key: 'stateMachine.module',
    kind: 'path',
    scope: 'node',
    flag: 'state-machine',
    arg: 'PATH',
    defaultDoc: 'the built-in key-value store',
    doc: 'a module exporting createStateMachine(group)',
  },
  {
    key: 'stateMachine.snapshotEvery',
    kind: 'positiveInt',
    scope: 'node',
    defaultDoc: "the state machine's",
    doc: 'applied entries between snapshots of a user state machine',
  },
  {
    key: 'balancer',
    kind: 'balancer',
    scope: 'node',
    flag: 'no-balancer',
    defaultDoc: 'enabled',
    doc: 'leader balancer settings, e.g. {"enabled": true, "policy": "count"} (docs/leadership.md); --no-balancer: no automatic rounds, --balancer: force them on',
  },
  {
    key: 'replicas',
    kind: 'replicas',
    scope: 'node',
    defaultDoc: 'balance on, 2 moves per node, repair after 300,000 ms',
    doc: 'replica mover settings (config file), e.g. {"balance": true, "maxMovesPerNode": 2, "repairDelayMs": 300000} (docs/operations.md)',
  },
  {
    key: 'draining',
    kind: 'boolean',
    scope: 'node',
    flag: 'draining',
    doc: 'start in maintenance: no leadership comes here until undrain',
  },
  {
    key: 'transportSecurity.tls.ca',
    kind: 'pem',
    scope: 'node',
    flag: 'tls-ca',
    arg: 'FILE',
    flagIsFile: true,
    aliases: ['tlsCa'],
    doc: 'mutual TLS between nodes: the cluster CA certificate (ca, cert and key go together)',
  },
  {
    key: 'transportSecurity.tls.cert',
    kind: 'pem',
    scope: 'node',
    flag: 'tls-cert',
    arg: 'FILE',
    flagIsFile: true,
    aliases: ['tlsCert'],
    doc: "this node's certificate, issued by the CA, with the node id as CN or a SAN",
  },
  {
    key: 'transportSecurity.tls.key',
    kind: 'pem',
    scope: 'node',
    flag: 'tls-key',
    arg: 'FILE',
    flagIsFile: true,
    aliases: ['tlsKey'],
    doc: "this node's private key",
  },
  {
    key: 'transportSecurity.secret',
    kind: 'secret',
    scope: 'node',
    flag: 'cluster-secret-file',
    arg: 'FILE',
    flagIsFile: true,
    env: 'FLOTILLA_CLUSTER_SECRET',
    aliases: ['clusterSecretFile'],
    doc: `a cluster secret (at least ${MIN_SECRET_LENGTH} characters, surrounding whitespace ignored) proved in the node handshake, never sent`,
  },
  {
    key: 'admin',
    kind: 'address',
    scope: 'process',
    flag: 'admin',
    arg: 'HOST:PORT',
    defaultDoc: 'none',
    doc: 'the admin HTTP address (status, health, metrics, operator routes, /kv)',
  },
  {
    key: 'adminToken',
    kind: 'token',
    scope: 'process',
    flag: 'admin-token',
    arg: 'TOKEN',
    env: 'FLOTILLA_ADMIN_TOKEN',
    defaultDoc: 'none',
    doc: 'require "Authorization: Bearer TOKEN" for every admin request that changes state, and for key reads',
  },
  {
    key: 'adminReadToken',
    kind: 'token',
    scope: 'process',
    flag: 'admin-read-token',
    arg: 'TOKEN',
    env: 'FLOTILLA_ADMIN_READ_TOKEN',
    defaultDoc: 'none',
    doc: 'a second token that may read keys (GET/HEAD /kv) and change nothing; needs adminToken',
  },
  {
    key: 'logLevel',
    kind: 'logLevel',
    scope: 'process',
    flag: 'log-level',
    arg: 'LEVEL',
    defaultValue: 'info',
    doc: `the log level: ${LOG_LEVELS.join(', ')}`,
  },
  {
    key: 'stopDrainMs',
    kind: 'nonNegativeInt',
    scope: 'process',
    flag: 'stop-drain-ms',
    arg: 'MS',
    defaultValue: 10_000,
    doc: 'on SIGTERM/SIGINT, move leaderships away for at most MS before stopping (0: stop at once; a second signal stops at once)',
  },
  {
    key: 'faultInjection',
    kind: 'boolean',
    scope: 'process',
    flag: 'fault-injection',
    defaultDoc: 'false',
    doc: 'serve POST /debug/crash-worker and /debug/disk-delay on the admin address (drills, tests)',
  },
] as const satisfies readonly Setting[];

export const SETTINGS: readonly Setting[] = TABLE;

/** Every StartOptions field has a row: this fails to compile naming a field added without one. */
type Top<K> = K extends `${infer T}.${string}` ? T : K;
type Unlisted = Exclude<NodeField | ProcessField, Top<(typeof TABLE)[number]['key']>>;
const everyFieldListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyFieldListed;

/** START_DEFAULTS' value at a dotted key ('limits.maxPendingBytes'), if it has one. */
export function startDefault(key: string): unknown {
  let at: unknown = START_DEFAULTS;
  for (const part of key.split('.')) at = typeof at === 'object' && at !== null ? Reflect.get(at, part) : undefined;
  return at;
}

/** A setting's default as documented: the process's, startNode's, or described in words. */
export function defaultText(s: Setting): string | undefined {
  if (s.defaultValue !== undefined) return String(s.defaultValue);
  const v = s.scope === 'node' ? startDefault(s.key) : undefined;
  if (v === undefined) return s.defaultDoc;
  // An empty object of peers is no peers.
  return typeof v === 'object' && v !== null && Object.keys(v).length === 0 ? 'none' : String(v);
}

function flagText(s: Setting): string {
  if (s.key === 'balancer') return '--no-balancer, --balancer';
  return `--${s.flag}${s.arg ? ` ${s.arg}` : ''}`;
}

/** `flotilla start --help`, printed from the table. */
export function startHelp(): string {
  const col = 26;
  const out = [
    'Usage: flotilla start --id ID --data DIR --listen HOST:PORT [--peer ID=HOST:PORT ...] [options]',
    '       flotilla start --config FILE [options]',
    '',
    'Options (config-file name in brackets; flags override the file):',
  ];
  for (const s of SETTINGS.filter((x) => x.flag !== undefined)) {
    const head = `  ${flagText(s)}`;
    const def = defaultText(s);
    const doc =
      `${s.doc}${s.required ? ' (required)' : def !== undefined ? ` (default ${def})` : ''}` +
      `${s.env ? ` (or ${s.env})` : ''} [${s.key}]`;
    const body = wrapWords(doc, 100, ' '.repeat(col));
    if (head.length < col - 1) out.push(head.padEnd(col) + body[0]);
    else out.push(head, ' '.repeat(col) + body[0]);
    for (const l of body.slice(1)) out.push(' '.repeat(col) + l);
  }
  out.push(
    `  --config FILE`.padEnd(col) + 'a JSON object of settings, named as in StartOptions',
    ...wrapWords(
      '(a dotted name is nested: labels.zone is {"labels": {"zone": Z}}): ' +
        SETTINGS.map((s) => s.key).join(', ') +
        '. TLS material and the secret are text or {"file": PATH}. Unknown names are refused.',
      100,
      ' '.repeat(col),
    ).map((l) => ' '.repeat(col) + l),
    '  -h, --help'.padEnd(col) + 'print this help',
    '',
    'Exit codes: 0 stopped cleanly, 1 the node could not start, 2 a usage or configuration error.',
    'Every setting with its default: docs/operations.md#configuration.',
    '',
  );
  return out.join('\n');
}

/** The settings table of docs/operations.md, printed from the table (a test keeps the doc in step). */
export function settingsMarkdown(): string {
  const cell = (t: string) => t.replaceAll('|', '\\|');
  const rows = SETTINGS.map((s) => {
    const flag = s.flag === undefined ? '' : `\`${flagText(s)}\``;
    const def = defaultText(s);
    const notes = [
      s.required ? 'required' : def !== undefined ? `default ${def}` : '',
      s.env ? `or \`${s.env}\`` : '',
      s.aliases ? `formerly ${s.aliases.map((a) => `\`${a}\``).join(', ')}` : '',
      s.scope === 'process' ? '`flotilla start` only' : '',
    ].filter(Boolean);
    return `| \`${s.key}\` | ${flag} | ${cell(s.doc)}${notes.length ? ` (${cell(notes.join('; '))})` : ''} |`;
  });
  return ['| setting | flag | what it sets |', '|---|---|---|', ...rows].join('\n');
}
