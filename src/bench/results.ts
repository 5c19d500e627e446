// The shape of a benchmark run's results.json, shared by the scenarios (which produce figures,
// tables and chart series), the Markdown/SVG report and `--compare`. Scenarios keep their raw
// output under `scenarios`; everything a person reads or a comparison checks is a Figure, so a
// regression check never needs to know a scenario's private shape.
import type { MachineInfo } from './machine.js';
import type { Provenance } from './provenance.js';

/** A scenario family: one section of the report and one SVG chart. */
export type Family =
  | 'throughput'
  | 'http'
  | 'reads'
  | 'idle'
  | 'transfer'
  | 'failover'
  | 'balancer'
  | 'snapshot'
  | 'elastic'
  | 'storage'
  | 'micro';

export const FAMILY_TITLES: Record<Family, string> = {
  throughput: 'Throughput and latency vs active groups and payload (embedded API)',
  http: 'HTTP key-value gateway vs peers (same clients, same value size)',
  reads: 'Reads: ReadIndex and lease, mixed 9:1 read:write',
  idle: 'Idle cost: quiesced groups',
  transfer: 'Planned leader transfer and drain under load',
  failover: 'Unplanned failover: kill -9 of a leader node under load',
  balancer: 'Leader balancer: from full skew to balanced',
  snapshot: 'Snapshot streaming: a large group catches up a replica beside the other groups',
  elastic: 'Elastic cluster: a node joins, then one is decommissioned, under writes',
  storage: 'Storage: durable entries/s and commit latency',
  micro: 'Micro benchmarks (Raft core, transport)',
};

/** Which direction is an improvement; 'none' figures are reported but never flagged. */
export type Better = 'higher' | 'lower' | 'none';

export interface Figure {
  /** Stable across runs (compare matches on it), e.g. "throughput/1000g/16B/writesPerSec". */
  id: string;
  family: Family;
  label: string;
  /** The median of `samples` when the scenario was repeated. */
  value: number;
  unit: string;
  better: Better;
  /** One value per repetition (absent when run once). */
  samples?: number[];
  /** A table of the family shows this figure, so the report does not list it again. */
  inTable?: boolean;
  /** How the load reached the store: flotilla's embedded API, an HTTP gateway (flotilla's or
   *  etcd's), or etcd's gRPC API through its client (etcd3), the peer of the embedded API. A peer
   *  figure without it went through etcd's HTTP gateway (results written before gRPC). */
  api?: 'embedded' | 'http' | 'grpc';
  /** Set when the figure measures another system, e.g. "etcd, through its HTTP gateway": the
   *  report keeps such figures apart from flotilla's unless both went through the same path. */
  peer?: string;
}

/** A table cell folded over repeated runs: the median and the range of the runs that had it. */
export interface StatCell {
  median: number;
  min: number;
  max: number;
  runs: number;
  /** Text after the number, e.g. "x" in "1.45x". */
  suffix?: string;
}

export type Cell = string | number | StatCell;

export interface Table {
  family: Family;
  title: string;
  columns: string[];
  rows: Cell[][];
  note?: string;
  /** How many leading columns name a row (default 1): repetitions are matched on them. */
  keyColumns?: number;
}

export interface Series {
  name: string;
  points: [number, number][];
}

export interface Chart {
  family: Family;
  title: string;
  /** line: y against x (e.g. writes/s against groups); bar: one bar per point per series, x as
   *  category index with `categories` naming them; timeline: y against seconds, with markers. */
  kind: 'line' | 'bar' | 'timeline';
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  /** Log y axis (line charts), for latencies that span decades. */
  yLog?: boolean;
  categories?: string[];
  series: Series[];
  /** Vertical lines on a timeline (e.g. "kill -9 n3" at x = 10.2). */
  markers?: { x: number; label: string }[];
}

/** A target the issue set, with whether this run met it. `met` is null when not measured. */
export interface Target {
  id: string;
  text: string;
  met: boolean | null;
  detail: string;
}

export interface PeerInfo {
  available: boolean;
  version?: string;
  /** Why the peer was skipped, when it was. */
  reason?: string;
}

export interface FsyncProbe {
  p50Ms: number;
  p99Ms: number;
  samples: number;
}

export interface Results {
  schema: 1;
  /** Which code, invoked how, and when; absent in results written before it was recorded. */
  provenance?: Provenance;
  machine: MachineInfo & { fsync: FsyncProbe };
  /** Which runtime code the node processes ran. */
  nodeCode: string;
  quick: boolean;
  repeat: number;
  startedAt: string;
  durationSec: number;
  /** Scenario names run, in order. */
  ran: string[];
  figures: Figure[];
  tables: Table[];
  charts: Chart[];
  targets: Target[];
  peers: Record<string, PeerInfo>;
  /** Raw scenario output (shapes private to each scenario). */
  scenarios: Record<string, unknown>;
}

/** The median of a non-empty list (mean of the middle two for even lengths). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function isStat(c: Cell | null | undefined): c is StatCell {
  return typeof c === 'object' && c !== null;
}

/** Relative spread of repeated samples: (max - min) / median; 0 for one sample. */
export function spread(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = median(xs);
  if (m === 0) return 0;
  return (Math.max(...xs) - Math.min(...xs)) / Math.abs(m);
}
