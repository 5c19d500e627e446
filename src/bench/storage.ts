// Storage benchmark: durable entries/s and commit latency of one worker's LogStore, as a Raft
// worker loop drives it (every active group appends and updates its hard state in each commit;
// the built-in KV state machine compacts the log behind it). Also measures start-up time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { LogStore } from '../storage/logstore.js';
import type { Entry } from '../raft/types.js';
import { pct } from './stats.js';
import { count } from './charts.js';

export interface StorageResult {
  name: string;
  groups: number;
  valueBytes: number;
  entriesPerCommit: number;
  pipeline: number;
  durableEntriesPerSec: number;
  commitsPerSec: number;
  commitP50Ms: number;
  commitP99Ms: number;
  checkpoints: number;
  seconds: number;
}

/** Entries each group keeps after compaction (for followers that are slightly behind). */
const RETAIN = 32;

/** `pipeline` = commits in flight at once: 1 is a loop that awaits each commit (lowest latency);
 *  2 prepares the next batch while the previous commit is in flight (more throughput). */
async function runLoad(groups: number, valueBytes: number, seconds: number, pipeline = 1): Promise<StorageResult> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-'));
  const store = await LogStore.open({ path: dir });
  const conf = { voters: ['n1', 'n2', 'n3'], learners: [] };
  for (let g = 0; g < groups; g++) store.createGroup(g, conf);
  await store.commit();
  const perGroup = Math.max(1, Math.floor(1000 / groups));
  const next = new Array<number>(groups).fill(1);
  const data = new Uint8Array(valueBytes).fill(7);
  const lat: number[] = [];
  let entries = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let commits = 0;
  // Like the worker loop: prepare the next batch while the previous commit is in flight.
  const inflight: Promise<void>[] = [];
  while (performance.now() < deadline) {
    for (let g = 0; g < groups; g++) {
      const ents: Entry[] = [];
      for (let k = 0; k < perGroup; k++) ents.push({ index: next[g]++, term: 1, type: 'normal', data });
      store.write({ group: g, entries: ents, hardState: { term: 1, vote: 'n1', commit: next[g] - 1 } });
      entries += perGroup;
    }
    // The state machine applies behind the log and lets it compact, keeping a short tail.
    if (++commits % 10 === 0) {
      for (let g = 0; g < groups; g++) if (next[g] > RETAIN + 1) store.compact(g, next[g] - RETAIN - 1);
    }
    const s = performance.now();
    inflight.push(
      store.commit().then(() => {
        lat.push(performance.now() - s);
      }),
    );
    if (inflight.length >= pipeline) await inflight.shift();
  }
  await Promise.all(inflight);
  const secs = (performance.now() - t0) / 1000;
  const checkpoints = store.stats.checkpoints;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  lat.sort((a, b) => a - b);
  return {
    name: `${count(groups, 'group')}, ${valueBytes} B${pipeline > 1 ? `, ${pipeline} commits in flight` : ''}`,
    groups,
    valueBytes,
    entriesPerCommit: perGroup * groups,
    pipeline,
    durableEntriesPerSec: Math.round(entries / secs),
    commitsPerSec: Math.round(lat.length / secs),
    commitP50Ms: round(pct(lat, 50)),
    commitP99Ms: round(pct(lat, 99)),
    checkpoints,
    seconds: round(secs),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export interface StartupResult {
  groups: number;
  entriesPerGroup: number;
  walRecordsReplayed: number;
  openMs: number;
}

/** Start-up time of a worker store holding 10,000 groups (metadata + WAL tail, not every entry). */
export async function benchStartup(groups = 10_000, entriesPerGroup = 50): Promise<StartupResult> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-startup-'));
  let store = await LogStore.open({ path: dir, noSync: true });
  const conf = { voters: ['n1', 'n2', 'n3'], learners: [] };
  for (let g = 0; g < groups; g++) store.createGroup(g, conf);
  const data = new Uint8Array(16);
  for (let i = 1; i <= entriesPerGroup; i++) {
    for (let g = 0; g < groups; g++) {
      store.write({
        group: g,
        entries: [{ index: i, term: 1, type: 'normal', data }],
        hardState: { term: 1, vote: 'n1', commit: i },
      });
    }
    if (i === entriesPerGroup - 10) await store.checkpoint();
    else await store.commit();
  }
  await store.close();
  let replayed = 0;
  const t0 = performance.now();
  store = await LogStore.open({
    path: dir,
    onEvent: (e) => {
      if (e.kind === 'recovered') replayed = e.walRecords;
    },
  });
  const openMs = performance.now() - t0;
  if (store.groupIds().length !== groups)
    throw new Error(`recovered ${store.groupIds().length} groups, expected ${groups}`);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return { groups, entriesPerGroup, walRecordsReplayed: replayed, openMs: round(openMs) };
}

export async function benchStorage(quick: boolean): Promise<{ load: StorageResult[]; startup: StartupResult }> {
  const seconds = quick ? 0.75 : 5;
  const results: StorageResult[] = [];
  const bench = new Bench({ name: 'storage', iterations: 1, time: 0, warmup: false });
  for (const valueBytes of [16, 1024]) {
    for (const groups of [1, 100, 1000, 10_000]) {
      bench.add(`${groups} groups x ${valueBytes} B`, async () => {
        const r = await runLoad(groups, valueBytes, seconds);
        results.push(r);
        return { overriddenDuration: r.seconds * 1000 };
      });
    }
  }
  bench.add('1000 groups x 16 B, 2 commits in flight', async () => {
    const r = await runLoad(1000, 16, seconds, 2);
    results.push(r);
    return { overriddenDuration: r.seconds * 1000 };
  });
  await bench.run();
  const startup = await benchStartup();
  return { load: results, startup };
}
