// Snapshot streaming benchmark: a group with a large state (default 256 MiB) catches up a replica
// that was down while the group's log was compacted past it, by a streamed snapshot, while the
// other groups on the same nodes keep serving. Reports the stream's throughput (MiB/s, data
// bytes from the first chunk to the install) and the latency of follower reads of the other
// groups at the catching-up replica before and during the stream: such a read is a ReadIndex
// round whose answer comes back over the very link that carries the chunks, so its worst case is
// the worst wait of a heartbeat-class message behind the stream.
//
// Three nodes in this process (one worker thread each, fsync off: this measures the stream, not
// the disk), n1 leading every group. Direct use:
//   node --import tsx src/bench/snapshot.ts [--mib 256] [--chunk-kib 1024] [--groups 32]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startNode, type FlotillaNode, type StartOptions } from '../runtime/node.js';
import { freePorts } from './ports.js';
import { pct, round } from './stats.js';

export interface SnapshotBenchOptions {
  /** State of the big group, MiB. */
  readonly mib: number;
  readonly chunkBytes: number;
  /** Groups in all; group 1 is the big one, the others are probed. */
  readonly groups: number;
  readonly valueBytes: number;
  readonly say: (line: string) => void;
}

export interface SnapshotBenchResult {
  readonly stateMiB: number;
  readonly chunkBytes: number;
  readonly streamedBytes: number;
  readonly streamSeconds: number;
  readonly mibPerSec: number;
  /** Follower reads of the other groups at the catching-up replica (ms): with no stream, and
   *  from the stream's first chunk to 3 s after the install (its commit included). */
  readonly idle: ProbeStats;
  readonly during: ProbeStats;
  readonly resentChunks: number;
  /** New leaders seen by n1 and n2 (not counting n3's own start-up) from n3's restart to the end
   *  of the window: 0 when the stream cost no group its leader. */
  readonly leaderChanges: number;
}

export interface ProbeStats {
  readonly reads: number;
  /** Reads that failed or timed out (5 s) in the window: not in the percentiles. */
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const IDS = ['n1', 'n2', 'n3'];

type Streams = Record<string, number>;

async function streams(n: FlotillaNode): Promise<Streams> {
  const sum: Streams = {};
  for (const s of (await n.status()).shards) {
    if (!s.up || !s.snapshots) continue;
    for (const [k, v] of Object.entries(s.snapshots)) sum[k] = (sum[k] ?? 0) + v;
  }
  return sum;
}

function stats(ms: number[], failed: number): ProbeStats {
  const s = [...ms].sort((a, b) => a - b);
  return {
    reads: s.length,
    failed,
    p50Ms: round(pct(s, 50), 2),
    p99Ms: round(pct(s, 99), 2),
    maxMs: round(s.length ? s[s.length - 1] : 0, 2),
  };
}

/** Follower reads of groups 2..groups at `n`, one at a time, until `stop()`; each sample is the
 *  read's start time and latency. Failed reads (the replica still catching up) are skipped. */
function probe(
  n: FlotillaNode,
  groups: number,
): { samples: [number, number][]; failures: number[]; stop: () => Promise<void> } {
  const samples: [number, number][] = [];
  const failures: number[] = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      const g = 2 + (i % (groups - 1));
      const t0 = performance.now();
      try {
        await n.read(g, new TextEncoder().encode('probe'), { consistency: 'linearizable', timeoutMs: 5_000 });
        samples.push([t0, performance.now() - t0]);
      } catch {
        failures.push(t0);
        await sleep(20);
      }
      await sleep(5);
    }
  })();
  return {
    samples,
    failures,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

export async function runSnapshotStream(o: SnapshotBenchOptions): Promise<SnapshotBenchResult> {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-bench-snap-'));
  const ports = await freePorts(3);
  const addr = new Map(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const optsOf = (id: string): StartOptions => ({
    id,
    dataDir: join(root, id),
    listen: addr.get(id)!,
    groups: o.groups,
    workers: 1,
    noSync: true,
    requestTimeoutMs: 60_000,
    balancer: { enabled: false },
    snapshotStream: { chunkBytes: o.chunkBytes },
    peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, addr.get(p)!])),
  });
  const nodes = new Map<string, FlotillaNode>();
  try {
    for (const id of IDS) nodes.set(id, await startNode(optsOf(id)));
    const n1 = nodes.get('n1')!;
    for (let g = 1; g <= o.groups; g++) {
      for (;;) {
        try {
          await n1.transferLeader(g, 'n1');
          break;
        } catch {
          await sleep(100);
        }
      }
    }
    o.say(`${o.groups} groups led by n1`);
    const n3 = nodes.get('n3')!;
    const idle = probe(n3, o.groups);
    await sleep(3_000);
    await idle.stop();
    await n3.stop();
    nodes.delete('n3');

    const value = new Uint8Array(o.valueBytes);
    const puts = Math.ceil((o.mib * 1024 * 1024) / o.valueBytes);
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < puts) {
          const i = next++;
          value[0] = i & 0xff;
          await n1.propose(1, { op: 'put', key: new TextEncoder().encode(`big-${i}`), value });
        }
      }),
    );
    o.say(`group 1 filled: ${o.mib} MiB in ${round((performance.now() - t0) / 1000, 1)} s`);
    // Flushed by the state machine every 3 s; the log is compacted after the flush.
    await sleep(3_500);
    const small = new Uint8Array(16);
    for (let i = 0; i < 200; i++)
      await n1.propose(1, { op: 'put', key: new TextEncoder().encode(`tail-${i}`), value: small });

    const changes = async () => {
      let n = 0;
      for (const id of ['n1', 'n2']) n += (await nodes.get(id)!.status()).runtime.leaderChanges;
      return n;
    };
    const changesBefore = await changes();
    const again = await startNode(optsOf('n3'));
    nodes.set('n3', again);
    const during = probe(again, o.groups);
    let start = 0;
    let end = 0;
    for (;;) {
      const s1 = await streams(n1);
      if (start === 0 && (s1.sending ?? 0) > 0) start = performance.now();
      const s3 = await streams(again);
      if ((s3.installed ?? 0) > 0) {
        end = performance.now();
        if (start === 0) start = end;
        break;
      }
      await sleep(50);
    }
    // The install's commit (the LMDB write of the group's rows) runs after the install turn that
    // the counter reports: keep probing a while so that the window covers it.
    await sleep(3_000);
    const until = performance.now();
    await during.stop();
    const s3 = await streams(again);
    const s1 = await streams(n1);
    const seconds = (end - start) / 1000;
    const inStream = during.samples.filter(([t]) => t >= start && t <= until).map(([, ms]) => ms);
    return {
      stateMiB: o.mib,
      chunkBytes: o.chunkBytes,
      streamedBytes: s3.bytesReceived ?? 0,
      streamSeconds: round(seconds, 2),
      mibPerSec: round((s3.bytesReceived ?? 0) / 1024 / 1024 / Math.max(seconds, 0.001), 1),
      idle: stats(
        idle.samples.map(([, ms]) => ms),
        idle.failures.length,
      ),
      during: stats(inStream, during.failures.filter((t) => t >= start && t <= until).length),
      resentChunks: s1.chunksResent ?? 0,
      leaderChanges: (await changes()) - changesBefore,
    };
  } finally {
    for (const n of nodes.values()) await n.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1]?.match(/snapshot\.(ts|js)$/)) {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '256' },
      'chunk-kib': { type: 'string', default: '1024' },
      groups: { type: 'string', default: '32' },
      'value-kib': { type: 'string', default: '64' },
    },
  });
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const r = await runSnapshotStream({
    mib: Number(values.mib),
    chunkBytes: Number(values['chunk-kib']) * 1024,
    groups: Number(values.groups),
    valueBytes: Number(values['value-kib']) * 1024,
    say,
  });
  say(JSON.stringify(r, null, 2));
  process.exit(0);
}
