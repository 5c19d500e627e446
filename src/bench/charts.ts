// Chart and label builders shared by the scenarios and the runner: readable row names ("1 group,
// 16 B, 3,000 writers"), latency against achieved throughput, and the failover timeline that puts
// flotilla's and etcd's recovery on one time axis. Pure functions of scenario output, so the
// report tests build them from synthetic rows.
import type { RateTimeline } from './leadership.js';
import { median, type Chart, type Family } from './results.js';

const fmt = (n: number) => n.toLocaleString('en-US');

/** "1 group", "1,000 groups". */
export function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${fmt(n)} ${n === 1 ? noun : plural}`;
}

/** A write-matrix row as a person reads it: "1,000 groups, 16 B, 3,000 writers". The writers
 *  are left out when they are the matrix's usual number, to keep chart labels short. */
export function rowLabel(x: { activeGroups: number; valueBytes: number; proposers: number }, usual?: number): string {
  const parts = [count(x.activeGroups, 'group'), `${fmt(x.valueBytes)} B`];
  if (x.proposers !== usual) parts.push(count(x.proposers, 'writer'));
  return parts.join(', ');
}

export interface LatencyPoint {
  writesPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** p50 and p99 against the throughput each load achieved, one pair of lines per system or mode.
 *  The y axis is logarithmic: a queue's p99 grows by decades while its p50 moves by milliseconds. */
export function latencyThroughputChart(
  family: Family,
  title: string,
  lines: { name: string; points: LatencyPoint[] }[],
): Chart {
  const series = lines.flatMap((l) =>
    (['p50Ms', 'p99Ms'] as const).map((k) => ({
      name: `${l.name}${l.name ? ' ' : ''}${k === 'p50Ms' ? 'p50' : 'p99'}`,
      points: l.points.map((p) => [p.writesPerSec, p[k]] as [number, number]),
    })),
  );
  return {
    family,
    title,
    kind: 'line',
    xLabel: 'achieved writes/s',
    yLabel: 'latency (ms)',
    yLog: true,
    series,
  };
}

export interface FlotillaKill {
  timeline: RateTimeline;
  victim: string;
  victimLeaders: number;
  reelectedMs: number;
  /** How the load was driven, for the legend, e.g. "embedded API, 64 writers per node". */
  load: string;
}

export interface EtcdKill {
  version: string;
  clients: number;
  /** How its writers reached it: the HTTP gateway (the default, as results before gRPC) or its
   *  gRPC client. */
  path?: 'http' | 'grpc';
  /** Successful requests per bucket from the load's start, and where the kill fell in it. */
  timeline: { bucketMs: number; ok: number[] };
  killAtTimelineMs: number;
  writesPossibleMs: number | null;
}

const BEFORE_SEC = 3;

/** Points of a rate as % of its median over the BEFORE_SEC seconds before the kill; x in
 *  seconds from the kill. Empty when there was no rate before the kill to compare with. */
function relative(rates: number[], bucketMs: number, killAtMs: number): [number, number][] {
  const before = rates.filter((_, i) => i * bucketMs < killAtMs && i * bucketMs >= killAtMs - BEFORE_SEC * 1000);
  const base = median(before);
  if (!(base > 0)) return [];
  return rates
    .map((r, i) => [(i * bucketMs - killAtMs) / 1000, (100 * r) / base] as [number, number])
    .filter(([x]) => x >= -BEFORE_SEC - 2);
}

/**
 * kill -9 of a leader, flotilla and etcd on one axis: seconds from the kill, writes/s as a share
 * of each system's own rate just before it. Even with etcd under its own gRPC client the two
 * systems run different write rates (and through its HTTP gateway different client paths), so
 * the share compares what a failover is about, how long writes stop and how they come back.
 */
export function failoverChart(f: FlotillaKill | undefined, e: EtcdKill | undefined): Chart | null {
  if (!f && !e) return null;
  const series: Chart['series'] = [];
  const markers: { x: number; label: string }[] = [{ x: 0, label: 'kill -9 of a leader' }];
  if (f) {
    // The kill's position in flotilla's timeline is its marker (leadership.ts puts it there).
    const kill = f.timeline.markers.find((m) => m.label.startsWith('kill -9'));
    if (kill) {
      series.push({
        name: `flotilla (${f.load}; ${f.victim} led ${fmt(f.victimLeaders)} groups)`,
        points: relative(f.timeline.writesPerSec, f.timeline.bucketMs, kill.x * 1000),
      });
      if (f.reelectedMs >= 0) markers.push({ x: f.reelectedMs / 1000, label: 'flotilla: all led again' });
    }
  }
  if (e) {
    series.push({
      name:
        e.path === 'grpc'
          ? `etcd ${e.version} (gRPC client, ${count(e.clients, 'writer')})`
          : `etcd ${e.version} (HTTP gateway, ${count(e.clients, 'client')})`,
      points: relative(
        e.timeline.ok.map((n) => (n * 1000) / e.timeline.bucketMs),
        e.timeline.bucketMs,
        e.killAtTimelineMs,
      ),
    });
    if (e.writesPossibleMs !== null) markers.push({ x: e.writesPossibleMs / 1000, label: 'etcd: writes possible' });
  }
  return {
    family: 'failover',
    title: 'Writes around kill -9 of a leader, as a share of each system’s rate before it',
    kind: 'timeline',
    xLabel: 'seconds from the kill',
    yLabel: '% of the writes/s before the kill',
    series,
    markers,
  };
}
