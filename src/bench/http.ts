// The "HTTP gateway vs peers" scenario: flotilla's admin key-value gateway (3 node processes on
// 127.0.0.1, fsync on, 1,000 groups) and etcd's HTTP gateway, driven back to back by the same
// keep-alive load generator with the same client counts and value size, so the writes/s and
// latency compare with a networked store; then etcd's planned transfer and kill -9 under load,
// through its own gRPC client when etcd3 is installed (they are set beside flotilla's
// embedded-API transfer and kill scenarios), else through its HTTP gateway.
// Owns: runFlotillaHttp, runPeers and the direct-use entry
// (`node --import tsx src/bench/http.ts [quick]`, JSON on stdout, progress on stderr).
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { NO_BALANCER, counters, perWrite, profileNodes, waitElected, withCluster, type PerWrite } from './cluster.js';
import {
  etcdAvailable,
  etcdPathAvailable,
  grpcPeer,
  runEtcdKill,
  runEtcdMoveLeader,
  runEtcdSeries,
  type EtcdHttpResult,
  type EtcdKillResult,
  type EtcdMoveLeaderResult,
  type Unavailable,
} from './etcd.js';
import { runHttpLoad, type HttpLoadResult } from './http-load.js';
import { freePorts } from './ports.js';
import { round } from './stats.js';
import type { PeerInfo } from './results.js';

export type FlotillaHttpResult = Omit<HttpLoadResult, 'requests' | 'timeline'> & {
  groups: number;
  electSeconds: number;
  perWrite: PerWrite | null;
};

/** Throughput and latency through flotilla's HTTP gateway: 3 nodes (1 worker each, balancer off)
 *  serving the admin gateway on free ports; for each entry of `clients`, that many keep-alive
 *  clients spread over the 3, one after the other on the same cluster. */
export async function runFlotillaHttp(o: {
  groups: number;
  clients: number[];
  seconds: number;
  valueBytes: number;
  warmupSeconds?: number;
  warmSeconds?: number;
  settle?: boolean;
  onRow?: (r: FlotillaHttpResult) => void;
}): Promise<FlotillaHttpResult[]> {
  const ports = await freePorts(3);
  const admin = new Map(['n1', 'n2', 'n3'].map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const targets = [...admin.values()].map((a) => `http://${a}`);
  return withCluster(
    o.groups,
    null,
    async (kids: Map<string, ChildProcess>, next) => {
      const electSeconds = await waitElected(kids, next, o.groups);
      if (o.warmSeconds)
        await runHttpLoad({
          targets,
          clients: WARM_CLIENTS,
          seconds: o.warmSeconds,
          valueBytes: o.valueBytes,
          kind: 'flotilla',
        });
      const out: FlotillaHttpResult[] = [];
      for (const clients of o.clients) {
        // Start from the steady state a deployment is in: the election's catch-up traffic (or the
        // previous row's) over and the groups quiesced; the load then wakes the groups it writes.
        const t0 = performance.now();
        for (;;) {
          const st = await Promise.all(
            [...kids.values()].map((c) => {
              c.send({ cmd: 'status' });
              return next(c, 'status');
            }),
          );
          if (
            st.every((s) => s.quiesced === s.groups) ||
            performance.now() - t0 > (o.settle === false && out.length > 0 ? 0 : 30_000)
          )
            break;
          await sleep(250);
        }
        // Work counters around the whole load (warm-up included, so divided by all its writes).
        const c0 = await counters(kids, next);
        await profileNodes(kids, next, true);
        const r = await runHttpLoad({
          targets,
          clients,
          seconds: o.seconds,
          valueBytes: o.valueBytes,
          kind: 'flotilla',
          warmupSeconds: o.warmupSeconds ?? 1,
          serverPids: [...kids.values()].map((c) => c.pid!),
        });
        await profileNodes(kids, next, false);
        const c1 = await counters(kids, next);
        const { requests: _r, timeline: _t, ...rest } = r;
        const row = {
          ...rest,
          groups: o.groups,
          electSeconds: round(electSeconds, 1),
          perWrite: perWrite(c0, c1, r.totalWrites),
        };
        o.onRow?.(row);
        out.push(row);
      }
      return out;
    },
    (id) => ['--admin', admin.get(id)!, ...NO_BALANCER],
  );
}

export interface PeersRow {
  clients: number;
  flotilla: FlotillaHttpResult;
  etcd: EtcdHttpResult | Unavailable;
  /** flotilla / etcd; null when etcd was not run. */
  ratio: { writesPerSec: number | null; p50: number | null; p99: number | null };
}

export interface PeersResult {
  seconds: number;
  valueBytes: number;
  groups: number;
  rows: PeersRow[];
  etcdMoveLeader: EtcdMoveLeaderResult | Unavailable;
  etcdKill: EtcdKillResult | Unavailable;
  peers: { etcd: PeerInfo; 'etcd-grpc'?: PeerInfo; pysyncobj: PeerInfo };
}

/** Writers under etcd's move-leader and kill -9: flotilla's transfer and kill scenarios run 64
 *  embedded writers on each of 3 nodes. */
const LEADERSHIP_WRITERS = 192;

const CLIENTS = [1, 16, 256];

/** Before its rows, each system is driven by WARM_CLIENTS clients for warmSeconds (results
 *  dropped), the same for both: a node process compiles its hot paths as it runs them, and at
 *  one client a cold cluster took ~30 s to get there (measured on 2 cores, three back-to-back
 *  10 s windows at 1 client: 491, 663, 762 writes/s); the load generator warms up too, and it
 *  used to do that on flotilla's rows and then drive etcd warm. */
export const WARM_CLIENTS = 16;
export const warmSecondsFor = (quick: boolean) => (quick ? 1 : 15);
const ratio = (a: number, b: number) => (b > 0 ? round(a / b, 2) : null);

/** Flotilla and etcd through HTTP at 1, 16 and 256 clients (10 s each, 3 s quick; one cluster of
 *  each for all three), then etcd's move-leader (5 moves, 1 quick, 8 s apart) and kill -9 of its
 *  leader, 16 clients each. */
export async function runPeers(o: { quick: boolean; say: (line: string) => void }): Promise<PeersResult> {
  const seconds = o.quick ? 3 : 10;
  const valueBytes = 16;
  const groups = 1000;
  const etcd = etcdAvailable();
  if (!etcd.available) o.say(`etcd: skipped (${etcd.reason})`);
  const pysyncobj: PeerInfo = {
    available: false,
    reason: 'not driven: PySyncObj runs its load inside its own node processes (no HTTP gateway)',
  };
  const skipped: Unavailable = { available: false, reason: etcd.reason ?? 'etcd not available' };
  const warmupSeconds = o.quick ? 0.5 : 1;
  const warmSeconds = warmSecondsFor(o.quick);
  const fl = await runFlotillaHttp({
    groups,
    clients: CLIENTS,
    seconds,
    valueBytes,
    warmupSeconds,
    warmSeconds,
    settle: !o.quick,
    onRow: (f) =>
      o.say(
        `flotilla HTTP, ${f.clients} clients: ${f.writesPerSec} writes/s, p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms, p99.9 ${f.p999Ms} ms, errors ${f.errors}, ` +
          `stalled ${f.stalled}, cpu nodes/driver/other/steal ${f.cpu.serverCores}/${f.cpu.driverCores}/${f.cpu.otherCores}/${f.cpu.stealCores}`,
      ),
  });
  const series = !etcd.available
    ? skipped
    : await runEtcdSeries({
        path: 'http',
        clients: CLIENTS,
        seconds,
        valueBytes,
        warmupSeconds,
        warm: { clients: WARM_CLIENTS, seconds: warmSeconds },
        onRow: (e) =>
          o.say(
            `etcd ${e.version} HTTP, ${e.clients} clients: ${e.writesPerSec} writes/s, p50 ${e.p50Ms} ms, p99 ${e.p99Ms} ms, p99.9 ${e.p999Ms} ms, errors ${e.errors}, ` +
              `stalled ${e.stalled}, cpu members/driver/other/steal ${e.cpu.serverCores}/${e.cpu.driverCores}/${e.cpu.otherCores}/${e.cpu.stealCores}`,
          ),
      });
  const et: (EtcdHttpResult | Unavailable)[] = Array.isArray(series) ? series : CLIENTS.map(() => series);
  const rows: PeersRow[] = CLIENTS.map((clients, i) => {
    const f = fl[i];
    const e = et[i];
    return {
      clients,
      flotilla: f,
      etcd: e,
      ratio: e.available
        ? {
            writesPerSec: ratio(f.writesPerSec, e.writesPerSec),
            p50: ratio(f.p50Ms, e.p50Ms),
            p99: ratio(f.p99Ms, e.p99Ms),
          }
        : { writesPerSec: null, p50: null, p99: null },
    };
  });
  // etcd's planned transfer and failover are set beside flotilla's embedded-API scenarios
  // (transfer, kill: 64 writers per node), so they run under etcd's own client at the same 192
  // writers when etcd3 is installed; without it, under 16 HTTP clients, and labelled so.
  const grpc = etcd.available ? await etcdPathAvailable('grpc') : skipped;
  const lead = grpc.available
    ? { path: 'grpc' as const, clients: LEADERSHIP_WRITERS, what: `${LEADERSHIP_WRITERS} gRPC writers` }
    : { path: 'http' as const, clients: 16, what: '16 HTTP clients' };
  if (etcd.available && !grpc.available) o.say(`etcd through its gRPC client: skipped (${grpc.reason})`);
  const moves = o.quick ? 1 : 5;
  const etcdMoveLeader = etcd.available
    ? await runEtcdMoveLeader({ path: lead.path, clients: lead.clients, moves, seconds: 4 + moves * 8 })
    : skipped;
  if (etcdMoveLeader.available) {
    const s = etcdMoveLeader.summary;
    o.say(
      `etcd move-leader x${moves}, ${lead.what}: command ${s.commandMsMedian} ms (max ${s.commandMsMax}), new leader seen ${s.leaderSeenMsMedian} ms (max ${s.leaderSeenMsMax}), ` +
        `first success ${s.firstSuccessMsMedian} ms, gap ${s.gapMsMedian} ms (max ${s.gapMsMax}, baseline ${s.baselineGapMs}), failed/move ${s.failedPerMoveMedian} (max ${s.failedPerMoveMax}), ` +
        `stalled/move ${s.stalledPerMoveMedian} (max ${s.stalledPerMoveMax}, in ${s.movesWithStalls} of ${moves} moves), slowest ${s.slowestMs} ms`,
    );
  }
  const etcdKill = etcd.available
    ? await runEtcdKill({ path: lead.path, clients: lead.clients, seconds: o.quick ? 10 : 30 })
    : skipped;
  if (etcdKill.available) {
    const k = etcdKill;
    o.say(
      `etcd kill -9 of leader ${k.victim}, ${lead.what}: new leader seen ${k.leaderSeenMs} ms, writes possible (probe) ${k.writesPossibleMs} ms, first client write issued after the kill ok ${k.resumeMs} ms, gap ${k.gapMs} ms, ` +
        `per-client gap median ${k.clientGapMsMedian} ms max ${k.clientGapMsMax} ms, failed ${k.failed}, stalled ${k.stalled} (${k.stalledClients} clients), slowest ${k.slowestMs} ms`,
    );
  }
  return {
    seconds,
    valueBytes,
    groups,
    rows,
    etcdMoveLeader,
    etcdKill,
    peers: { etcd, ...(etcd.available ? { 'etcd-grpc': grpcPeer(grpc) } : {}), pysyncobj },
  };
}

// Direct use: node --import tsx src/bench/http.ts [quick]
//             node --import tsx src/bench/http.ts rows [seconds] [clients,...]   (the HTTP rows only)
if (process.argv[1] === import.meta.filename) {
  const say = (line: string) => process.stderr.write(`  ${line}\n`);
  if (process.argv[2] === 'rows') {
    const seconds = Number(process.argv[3] ?? 5);
    const clients = (process.argv[4] ?? '1,16,256').split(',').map(Number);
    await runFlotillaHttp({
      groups: 1000,
      clients,
      seconds,
      valueBytes: 16,
      warmupSeconds: 1,
      warmSeconds: warmSecondsFor(false),
      onRow: (f) =>
        say(
          `flotilla HTTP, ${f.clients} clients: ${f.writesPerSec} writes/s, p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms, errors ${f.errors}, cpu nodes/driver ${f.cpu.serverCores}/${f.cpu.driverCores}; per write ${JSON.stringify(f.perWrite)}`,
        ),
    });
    await runEtcdSeries({
      path: 'http',
      clients,
      seconds,
      valueBytes: 16,
      warmupSeconds: 1,
      warm: { clients: WARM_CLIENTS, seconds: warmSecondsFor(false) },
      onRow: (e) =>
        say(
          `etcd HTTP, ${e.clients} clients: ${e.writesPerSec} writes/s, p50 ${e.p50Ms} ms, p99 ${e.p99Ms} ms, errors ${e.errors}, cpu members/driver ${e.cpu.serverCores}/${e.cpu.driverCores}`,
        ),
    });
  } else {
    const r = await runPeers({ quick: process.argv[2] === 'quick', say });
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  }
}
