// StartOptions, what startNode takes: the fields, every default in one place (START_DEFAULTS,
// plus the two computed from the machine and the cluster), and the checks of their shape, each
// naming its field. The settings table of `flotilla start` (src/cli/settings.ts) documents its
// defaults from here, and `flotilla start --help` loads this module, so it imports nothing heavy:
// what needs the transport or the balancer to check (addresses, TLS material, balancer settings)
// is checked by startNode through those layers' own validators.
import type { Logger } from 'pino';
import type { BalancerConfig } from '../balancer/balancer.js';
import type { ReplicaMoverConfig } from './mover.js';
import { isObject } from '../guards.js';
import { RAFT_DEFAULTS } from '../raft/config.js';
import type { NodeId } from '../raft/types.js';
import {
  DEFAULT_SNAPSHOT_STREAM,
  type SnapshotStreamLimits,
  type SnapshotStreamOptions,
} from '../storage/snapstream.js';
import type { TransportSecurity } from '../transport/transport.js';
import { StartOptionsError, type StartOptionsProblem } from './errors.js';
import { defaultWorkers } from './placement.js';
import type { RaftTuning } from './shardoptions.js';

export { defaultWorkers } from './placement.js';

export interface StartOptions {
  /** This node's id: non-empty, without ':', '|' or ','. */
  readonly id: NodeId;
  readonly dataDir: string;
  /** 'host:port' this node listens on for other nodes. */
  readonly listen: string;
  /** 'host:port' other nodes dial to reach this one, when not `listen` (a bind address such as
   *  0.0.0.0, or a port forwarded). Recorded in the cluster's node list when this node joins or
   *  bootstraps the metadata group. Default: `listen`. */
  readonly advertise?: string;
  /** Join a running cluster: 'host:port' of any member's listen address. Used only when the data
   *  dir holds no cluster yet; the node asks to be admitted (same secret or certificates as the
   *  members), learns the cluster id, the groups and the nodes from the answer, and holds no
   *  replica until the replica balancer gives it some. `peers`, `groups` and `replication` are
   *  then taken from the cluster. Default: none (bootstrap from `peers`). */
  readonly join?: string;
  /** Every other node: id -> 'host:port'. Default none (a one-node cluster). */
  readonly peers?: Readonly<Record<NodeId, string>>;
  /** Groups bootstrapped with the cluster (ids 1..groups). Default 100. */
  readonly groups?: number;
  /** Replicas per group. Default `defaultReplication(nodes)`, min(3, nodes). */
  readonly replication?: number;
  /** Worker threads of this node, one shard each; 0 runs one shard on the main thread (no worker
   *  thread: cheapest per write when the node has few cores or shares them). Default:
   *  `defaultWorkers()`, 0 on machines with at most 2 cores, else the number of cores. The shard
   *  count (max(1, workers)) is fixed for a data dir; 0 and 1 are interchangeable. */
  readonly workers?: number;
  /** Locality labels of this node (used by the leader balancer). */
  readonly labels?: Readonly<{ zone?: string; rack?: string }>;
  /** Milliseconds per tick (= heartbeat interval). Default 100, as etcd. */
  readonly tickMs?: number;
  /** Election timeout in ticks. Default 10 (1 s at 100 ms, as etcd). `raft.electionTicks` is the
   *  same setting. */
  readonly electionTicks?: number;
  /** How long a candidate waits for a split vote to resolve before trying again, in ticks
   *  (randomized in [R, 2R)). Default electionTicks. Shorter resolves split votes sooner without
   *  making failure detection twitchier. `raft.electionRoundTicks` is the same setting. */
  readonly electionRoundTicks?: number;
  /** Multiplies tickMs for slow disks or networks (Vault's performance multiplier), in (0, 100].
   *  Default 1. */
  readonly timingScale?: number;
  /** Default deadline of a client request. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Admission limits: beyond them a new proposal fails at once with a retryable `Overloaded`
   *  instead of growing memory. Per node, counting proposals made here and proposals forwarded
   *  here until answered: `maxPendingProposals` (default 20,000) and `maxPendingBytes` (default
   *  64 MiB). Per group, the Raft core caps uncommitted bytes (`raft.maxUncommittedBytes`). */
  readonly limits?: { readonly maxPendingProposals?: number; readonly maxPendingBytes?: number };
  readonly raft?: RaftTuning;
  /** User state machine: a module exporting createStateMachine(group), loaded in every worker.
   *  Default: the built-in key-value store. */
  readonly stateMachine?: { readonly module: string; readonly snapshotEvery?: number };
  /** The leader balancer (src/balancer): automatic rounds run when `enabled` is true; plan() and
   *  round() are always available. Default: enabled, with the defaults of src/balancer/balancer.ts. */
  readonly balancer?: BalancerConfig;
  /** The replica mover (design note 8): decommissions, repairs and replica balancing, run by
   *  group 0's leader once the cluster record exists (after the first join or decommission).
   *  Fields: tolerance (0.05), maxMovesPerNode (2), repairDelayMs (300,000), maxMovesPerPlan
   *  (64), moveTimeoutMs (600,000), balance (true; false runs only repair and decommission
   *  moves). Checked by startNode (src/runtime/mover.ts). */
  readonly replicas?: ReplicaMoverConfig;
  /** Start in maintenance (as after drain()): peers never send leadership here and this node's
   *  groups campaign only when no healthy peer does, until undrain(). Default false. */
  readonly draining?: boolean;
  /** Skip fsync (tests of protocol behaviour only; never in production). Default false. */
  readonly noSync?: boolean;
  /** Authentication between nodes (every node of the cluster needs the same kind):
   *  `tls: { ca, cert, key }` (PEM) for mutual TLS with certificates from a cluster CA, each
   *  naming its node id in CN or a subjectAltName; `secret` (at least 16 characters) for a
   *  cluster secret proved by HMAC challenge-response in the handshake (never sent; does not
   *  encrypt). Both may be combined. Default: neither (plain TCP). See docs/security.md. */
  readonly transportSecurity?: TransportSecurity;
  /** Snapshot streaming (docs/snapshots.md): chunk size, window, streams at once, timeouts.
   *  Default: 1 MiB chunks, 4 unacknowledged per stream, 2 streams per shard; the ranges are
   *  checked by startNode against the frame limit. */
  readonly snapshotStream?: SnapshotStreamOptions;
  /** Default: silent. */
  readonly logger?: Logger;
}

/** The fixed defaults of StartOptions: what startNode uses for a field not given. */
export const START_DEFAULTS = Object.freeze({
  peers: Object.freeze({}) as Readonly<Record<NodeId, string>>,
  groups: 100,
  tickMs: 100,
  electionTicks: RAFT_DEFAULTS.electionTicks,
  timingScale: 1,
  requestTimeoutMs: 10_000,
  limits: Object.freeze({ maxPendingProposals: 20_000, maxPendingBytes: 64 << 20 }),
  draining: false,
  noSync: false,
  snapshotStream: DEFAULT_SNAPSHOT_STREAM,
});

/** Replicas per group when `replication` is not given, for a cluster of `nodes` nodes. */
export function defaultReplication(nodes: number): number {
  return Math.min(3, nodes);
}

/** StartOptions with every default filled in: what the node runs with. */
export interface ResolvedStartOptions {
  readonly id: NodeId;
  readonly dataDir: string;
  readonly listen: string;
  /** Where other nodes dial this one (`listen` unless given). */
  readonly advertise: string;
  readonly join?: string;
  readonly peers: Readonly<Record<NodeId, string>>;
  /** This node and its peers. */
  readonly nodes: readonly NodeId[];
  readonly groups: number;
  readonly replication: number;
  readonly workers: number;
  readonly labels: Readonly<{ zone?: string; rack?: string }>;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly electionRoundTicks: number;
  readonly timingScale: number;
  readonly requestTimeoutMs: number;
  readonly limits: { readonly maxPendingProposals: number; readonly maxPendingBytes: number };
  /** The Raft tuning given, with electionTicks and electionRoundTicks as resolved above. */
  readonly raft: RaftTuning;
  readonly stateMachine?: { readonly module: string; readonly snapshotEvery?: number };
  readonly balancer?: BalancerConfig;
  readonly replicas?: ReplicaMoverConfig;
  readonly draining: boolean;
  readonly noSync: boolean;
  readonly transportSecurity?: TransportSecurity;
  /** The limits given over START_DEFAULTS'; their ranges are checked by startNode. */
  readonly snapshotStream: SnapshotStreamLimits;
  readonly logger?: Logger;
}

/** Every field, exhaustive by type: a name not here is refused (a typo, or an option of another
 *  version), and a field added to StartOptions without a line here does not compile. */
const FIELDS: Readonly<Record<keyof StartOptions, true>> = {
  id: true,
  dataDir: true,
  listen: true,
  advertise: true,
  join: true,
  peers: true,
  groups: true,
  replication: true,
  workers: true,
  labels: true,
  tickMs: true,
  electionTicks: true,
  electionRoundTicks: true,
  timingScale: true,
  requestTimeoutMs: true,
  limits: true,
  raft: true,
  stateMachine: true,
  balancer: true,
  replicas: true,
  draining: true,
  noSync: true,
  transportSecurity: true,
  snapshotStream: true,
  logger: true,
};

/** The Raft core tunables `raft` may set (RaftTuning's fields) and the type of each; their ranges
 *  are the core's to check. */
export const RAFT_TUNING_TYPES: ReadonlyMap<string, 'number' | 'boolean'> = new Map([
  ...Object.entries(RAFT_DEFAULTS)
    .filter(([k]) => k !== 'applied')
    .map(([k, v]): [string, 'number' | 'boolean'] => [k, typeof v === 'boolean' ? 'boolean' : 'number']),
  ['electionRoundTicks', 'number'],
]);

/** What a node id must not contain (conf change entries separate ids and fields with these,
 *  src/raft/confchange.ts); it must also be non-empty. The cluster metadata checks joining
 *  nodes' ids by the same rule. */
export const NODE_ID_FORBIDDEN = /[:|,]/;

function fail(field: string, why: string, problem: StartOptionsProblem = 'InvalidValue'): never {
  throw new StartOptionsError(field, problem, why);
}

const shown = (v: unknown) => (typeof v === 'function' ? 'a function' : (JSON.stringify(v) ?? String(v)));

/** `o`'s own keys that are not in `known`, refused naming the first (under `field`, '' at the top). */
function onlyKnown(field: string, o: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!known.includes(k)) fail(field ? `${field}.${k}` : k, 'unknown option', 'UnknownSetting');
}

function integer(field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    fail(
      field,
      max < Number.MAX_SAFE_INTEGER
        ? `must be an integer in ${min}..${max} (got ${shown(v)})`
        : `must be ${min === 0 ? 'a non-negative' : 'a positive'} integer (got ${shown(v)})`,
    );
  return v;
}

function text(field: string, v: unknown, max = Number.POSITIVE_INFINITY): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    fail(field, `must be a non-empty string${max < Number.POSITIVE_INFINITY ? ` of at most ${max} characters` : ''}`);
  return v;
}

function flag(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(field, `must be true or false (got ${shown(v)})`);
  return v;
}

/** One setting given twice (top level and under `raft`) must agree. */
function same(field: string, top: number | undefined, inRaft: unknown): number | undefined {
  if (top !== undefined && inRaft !== undefined && top !== inRaft)
    fail(`raft.${field}`, `${shown(inRaft)} contradicts ${field} ${top}`, 'ConflictingOptions');
  return top ?? (typeof inRaft === 'number' ? inRaft : undefined);
}

/** Check `opts` and fill in the defaults. Throws a StartOptionsError naming the first bad field
 *  (dotted when nested: 'limits.maxPendingBytes'). */
export function resolveStartOptions(opts: StartOptions): ResolvedStartOptions {
  // Embedders in JavaScript, or with options built at run time, reach here unchecked by types.
  const o: unknown = opts;
  if (!isObject(o)) return fail('options', 'must be an object of StartOptions');
  onlyKnown('', o, Object.keys(FIELDS));
  /** Field `k` as given, after `check` (when given). */
  const checked = <K extends keyof StartOptions>(k: K, check: (field: string, v: unknown) => void) => {
    const v: StartOptions[K] = opts[k];
    if (v !== undefined) check(k, v);
    return v;
  };
  const positive = (f: string, v: unknown) => integer(f, v, 1);

  const id = text('id', o.id);
  if (NODE_ID_FORBIDDEN.test(id)) fail('id', `must not contain ":", "|" or "," (got ${shown(id)})`);
  const peers =
    checked('peers', (f, v) => {
      if (!isObject(v)) fail(f, 'must be an object {id: "host:port"}');
      for (const [p, a] of Object.entries(v)) text(`${f}.${p}`, a);
    }) ?? START_DEFAULTS.peers;
  const nodes = [id, ...Object.keys(peers).filter((p) => p !== id)];
  const labels = checked('labels', (f, v) => {
    if (!isObject(v)) return fail(f, 'must be an object {zone, rack}');
    onlyKnown(f, v, ['zone', 'rack']);
    for (const k of ['zone', 'rack'] as const) if (v[k] !== undefined) text(`${f}.${k}`, v[k], 64);
  });
  const raft = checked('raft', (f, v) => {
    if (!isObject(v)) return fail(f, 'must be an object of Raft core tunables');
    for (const [k, x] of Object.entries(v)) {
      const type = RAFT_TUNING_TYPES.get(k);
      if (type === undefined) fail(`${f}.${k}`, 'unknown option', 'UnknownSetting');
      if (x !== undefined && typeof x !== type) fail(`${f}.${k}`, `must be a ${type} (got ${shown(x)})`);
    }
  });
  const electionTicks =
    same('electionTicks', checked('electionTicks', positive), raft?.electionTicks) ?? START_DEFAULTS.electionTicks;
  const electionRoundTicks =
    same('electionRoundTicks', checked('electionRoundTicks', positive), raft?.electionRoundTicks) ?? electionTicks;
  const limits = checked('limits', (f, v) => {
    if (!isObject(v)) return fail(f, 'must be an object {maxPendingProposals, maxPendingBytes}');
    onlyKnown(f, v, ['maxPendingProposals', 'maxPendingBytes']);
    for (const k of ['maxPendingProposals', 'maxPendingBytes'] as const)
      if (v[k] !== undefined) integer(`${f}.${k}`, v[k], 1);
  });
  const stateMachine = checked('stateMachine', (f, v) => {
    if (!isObject(v)) return fail(f, 'must be an object {module, snapshotEvery}');
    onlyKnown(f, v, ['module', 'snapshotEvery']);
    text(`${f}.module`, v.module);
    if (v.snapshotEvery !== undefined) integer(`${f}.snapshotEvery`, v.snapshotEvery, 1);
  });
  const listen = text('listen', o.listen);
  const join = checked('join', text);
  if (join !== undefined && Object.keys(peers).some((p) => p !== id))
    fail('join', 'a joining node takes its peers from the cluster: give join or peers, not both', 'ConflictingOptions');
  return {
    id,
    dataDir: text('dataDir', o.dataDir),
    listen,
    advertise: checked('advertise', text) ?? listen,
    join,
    peers,
    nodes,
    groups: checked('groups', positive) ?? START_DEFAULTS.groups,
    replication: checked('replication', (f, v) => integer(f, v, 1, nodes.length)) ?? defaultReplication(nodes.length),
    workers: checked('workers', (f, v) => integer(f, v, 0, 256)) ?? defaultWorkers(),
    labels: labels ?? {},
    tickMs: checked('tickMs', positive) ?? START_DEFAULTS.tickMs,
    electionTicks,
    electionRoundTicks,
    timingScale:
      checked('timingScale', (f, v) => {
        if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 100)
          fail(f, `must be a number in (0, 100] (got ${shown(v)})`);
      }) ?? START_DEFAULTS.timingScale,
    requestTimeoutMs: checked('requestTimeoutMs', positive) ?? START_DEFAULTS.requestTimeoutMs,
    limits: {
      maxPendingProposals: limits?.maxPendingProposals ?? START_DEFAULTS.limits.maxPendingProposals,
      maxPendingBytes: limits?.maxPendingBytes ?? START_DEFAULTS.limits.maxPendingBytes,
    },
    raft: { ...raft, electionTicks, electionRoundTicks },
    stateMachine,
    // The balancer's fields, and the transport's values, are theirs to check (startNode asks them).
    balancer: checked('balancer', (f, v) => {
      if (!isObject(v)) fail(f, 'must be an object of balancer settings');
    }),
    replicas: checked('replicas', (f, v) => {
      if (!isObject(v)) fail(f, 'must be an object of replica mover settings');
    }),
    draining: checked('draining', flag) ?? START_DEFAULTS.draining,
    noSync: checked('noSync', flag) ?? START_DEFAULTS.noSync,
    transportSecurity: checked('transportSecurity', (f, v) => {
      if (!isObject(v)) return fail(f, 'must be an object {tls, secret}');
      onlyKnown(f, v, ['tls', 'secret']);
      if (isObject(v.tls)) onlyKnown(`${f}.tls`, v.tls, ['ca', 'cert', 'key']);
    }),
    snapshotStream: {
      ...START_DEFAULTS.snapshotStream,
      ...checked('snapshotStream', (f, v) => {
        if (!isObject(v)) return fail(f, 'must be an object {chunkBytes, window, maxOutgoing, ackTimeoutMs, giveUpMs}');
        const keys = ['chunkBytes', 'window', 'maxOutgoing', 'ackTimeoutMs', 'giveUpMs'] as const;
        onlyKnown(f, v, keys);
        for (const k of keys) if (v[k] !== undefined) integer(`${f}.${k}`, v[k], 1);
      }),
    },
    logger: checked('logger', (f, v) => {
      if (!isObject(v) || typeof v.child !== 'function') fail(f, 'must be a pino logger');
    }),
  };
}
