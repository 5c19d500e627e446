// SIGKILL crash test: a child process (logstore-crash-child.ts) writes entries, hard states and KV
// puts for 50 groups, acknowledging on stdout only after each commit resolved, while the KV
// flushes its memtable only every few commits; it is killed at a random moment (often while
// applying, between two flushes), then the parent reopens the store and checks that everything
// acknowledged is in the log, that the KV's durable applied index never passes the log nor goes
// back, that replaying the log after it rebuilds exactly the state of the last entry, and that
// nothing is applied twice. The next round's child resumes on the same directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LogStore } from '../../src/storage/logstore.js';
import { KvStateMachine, decodeKvCommand } from '../../src/storage/kv.js';
import { decodeCommand } from '../../src/storage/session.js';
import { seededRandom } from '../../src/raft/rand.js';

const CHILD = fileURLToPath(new URL('./logstore-crash-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Mirrors of the child's constants (the child module cannot be imported: it runs on load).
const GROUPS = 50;
const KEYS_PER_GROUP = 3;
const keyOf = (index: number): string => `k${index % KEYS_PER_GROUP}`;
const valueFor = (group: number, index: number, token: string): string => `${group}:${index}:${token}`;

/** Kill points per CI run (each ~1 s); CRASH_ROUNDS=N for a longer check. */
const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 12);
const enc = new TextEncoder();
const dec = new TextDecoder();

interface ChildRun {
  lines: string[];
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  hung: boolean;
}

/** Spawn the child and SIGKILL it `delayMs` after it reports ready (or after spawn). */
function runChild(dir: string, seed: number, delayMs: number, afterReady: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, String(seed)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    let stderr = '';
    const lines: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    let hung = false;
    const safety = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, 30_000);
    const arm = () => {
      timer ??= setTimeout(() => child.kill('SIGKILL'), delayMs);
    };
    if (!afterReady) arm();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      for (let k = buf.indexOf('\n'); k >= 0; k = buf.indexOf('\n')) {
        const line = buf.slice(0, k);
        buf = buf.slice(k + 1);
        lines.push(line);
        if (afterReady && line.startsWith('{"ready"')) arm();
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    // 'close': the process has exited and its stdout is drained. A trailing partial line (the
    // kill interrupted the write) is ignored: it acknowledges nothing.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(safety);
      resolve({ lines, stderr, code, signal, hung });
    });
  });
}

test('SIGKILL at random points: acknowledged entries, hard state and KV state survive; nothing is applied twice', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-crash-'));
  const rand = seededRandom(0x5eed);
  /** group -> index -> token of every acknowledged entry not yet seen compacted. */
  const acked = new Map<number, Map<number, string>>();
  const maxAck = new Map<number, number>();
  const prevApplied = new Map<number, number>();
  let kills = 0;
  let killsBeforeReady = 0;
  let ackedEntries = 0;
  let ackedCommits = 0;
  let verifiedEntries = 0;
  let verifiedValues = 0;
  let redelivered = 0;
  let replayed = 0;
  let flushes = 0;
  let checkpoints = 0;
  let unackedDurable = 0;

  try {
    for (let round = 0; round < ROUNDS; round++) {
      const duringStartup = round % 5 === 4; // also kill during start-up and recovery
      const delay = duringStartup ? Math.floor(rand() * 300) : 50 + Math.floor(rand() * 351);
      const run = await runChild(dir, 1000 + round, delay, !duringStartup);
      const where = `round ${round} (kill ${delay} ms after ${duringStartup ? 'spawn' : 'ready'})`;
      assert.equal(run.hung, false, `${where}: child did not finish: ${run.stderr}`);
      assert.equal(run.signal, 'SIGKILL', `${where}: child exited on its own (code ${run.code}): ${run.stderr}`);
      kills++;

      let ready = false;
      let roundCheckpoints = 0;
      for (const line of run.lines) {
        const m = JSON.parse(line) as {
          ready?: { redelivered: number; violations: number; replayed: number };
          a?: [number, number, string][];
          f?: boolean;
          ck?: number;
        };
        if (m.ready) {
          ready = true;
          assert.equal(m.ready.violations, 0, `${where}: re-delivered entries were applied again at start-up`);
          redelivered += m.ready.redelivered;
          replayed += m.ready.replayed;
        }
        if (m.ck) roundCheckpoints = m.ck;
        if (m.f) flushes++;
        if (m.a) {
          ackedCommits++;
          for (const [g, i, token] of m.a) {
            let per = acked.get(g);
            if (!per) {
              per = new Map();
              acked.set(g, per);
            }
            assert.equal(per.has(i), false, `${where}: index ${i} of group ${g} acknowledged twice`);
            per.set(i, token);
            maxAck.set(g, Math.max(maxAck.get(g) ?? 0, i));
            ackedEntries++;
          }
        }
      }
      checkpoints += roundCheckpoints;
      if (!ready) killsBeforeReady++;

      // --- verify ----------------------------------------------------------------------------
      const st = await LogStore.open({ path: dir });
      try {
        const kv = new KvStateMachine(st);
        for (let g = 1; g <= GROUPS; g++) {
          const w = `${where}, group ${g}`;
          if (!st.has(g)) {
            assert.equal(maxAck.get(g) ?? 0, 0, `${w}: group missing but entries were acknowledged`);
            continue;
          }
          const gs = st.storage(g);
          const first = gs.firstIndex();
          const last = gs.lastIndex();
          const hs = gs.initialState().hardState;
          const durableApplied = kv.applied(g);
          const top = maxAck.get(g) ?? 0;
          assert.ok(last >= top, `${w}: last index ${last} < acknowledged ${top}`);
          assert.ok(hs.commit >= top, `${w}: hard state commit ${hs.commit} < acknowledged ${top}`);
          // The log and its hard state are written by the same transactions.
          assert.equal(hs.commit, last, `${w}: hard state commit vs last index`);
          // The KV's durable image is of one applied index, never past the log, never older than
          // the last one seen, and the log still holds everything after it.
          assert.ok(durableApplied <= last, `${w}: KV applied ${durableApplied} beyond the log (${last})`);
          assert.ok(durableApplied >= (prevApplied.get(g) ?? 0), `${w}: durable applied index went backwards`);
          assert.ok(
            first <= durableApplied + 1,
            `${w}: log compacted to ${first - 1} past the durable applied index ${durableApplied}`,
          );
          // Replay, as a restarted shard does: the state must then be that of the last entry.
          if (last > durableApplied) kv.apply(g, gs.entries(durableApplied + 1, last + 1, Infinity));
          const applied = kv.applied(g);
          assert.equal(applied, last, `${w}: KV applied index after replay vs last index`);
          unackedDurable += last - top;

          const per = acked.get(g) ?? new Map<number, string>();
          const tokenAt = (i: number): string => {
            const cmd = decodeKvCommand(decodeCommand(gs.entries(i, i + 1, Infinity)[0].data).payload);
            assert.equal(cmd.op, 'put');
            if (cmd.op !== 'put') throw new Error('unreachable');
            assert.equal(dec.decode(cmd.key), keyOf(i), `${w}: key of entry ${i}`);
            const v = dec.decode(cmd.value).split(':');
            assert.deepEqual(v.slice(0, 2), [String(g), String(i)], `${w}: value of entry ${i}`);
            return v[2];
          };
          for (const [i, token] of per) {
            if (i < first) {
              per.delete(i); // compacted: covered by the state machine from now on
              continue;
            }
            assert.equal(tokenAt(i), token, `${w}: data of acknowledged entry ${i}`);
            verifiedEntries++;
          }
          // Each key holds the last write at or below the applied index.
          for (let j = 0; j < KEYS_PER_GROUP; j++) {
            const e = applied - ((((applied - j) % KEYS_PER_GROUP) + KEYS_PER_GROUP) % KEYS_PER_GROUP);
            const got = kv.get(g, enc.encode(`k${j}`));
            if (e < 1) {
              assert.equal(got, null, `${w}: k${j} before any write`);
              continue;
            }
            assert.ok(got, `${w}: k${j} missing (last write at ${e})`);
            const [vg, vi, vt] = dec.decode(got).split(':');
            assert.deepEqual(
              [vg, vi],
              [String(g), String(e)],
              `${w}: k${j} holds the write of entry ${vi}, expected ${e}`,
            );
            const want = per.get(e) ?? (e >= first ? tokenAt(e) : undefined);
            if (want !== undefined) assert.equal(valueFor(g, e, vt), valueFor(g, e, want), `${w}: k${j} token`);
            verifiedValues++;
          }
          // A restarted node re-delivers recent committed entries: all skipped.
          const lo = Math.max(first, applied - 3);
          if (lo <= applied) {
            const again = kv.apply(g, gs.entries(lo, applied + 1, Infinity));
            assert.deepEqual(
              again,
              again.map(() => null),
              `${w}: re-delivered entries ${lo}..${applied} applied again`,
            );
          }
          prevApplied.set(g, durableApplied);
        }
      } finally {
        await st.close(); // the re-delivery check staged nothing durable
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  t.diagnostic(
    `${kills} kills (${killsBeforeReady} before the child was ready), ${ackedCommits} acknowledged commits, ` +
      `${ackedEntries} acknowledged entries, ${verifiedEntries} entry checks + ${verifiedValues} KV value checks, ` +
      `${unackedDurable} durable-but-unacknowledged entries seen, ${redelivered} entries re-delivered at start-up, ` +
      `${replayed} replayed after the durable applied index, ${flushes} memtable flushes, ${checkpoints} checkpoints in the children`,
  );
  assert.ok(replayed > 0, 'kills landed between flushes: some entries were replayed');
  assert.ok(ackedEntries > 1000, `too little work to be meaningful: ${ackedEntries} acknowledged entries`);
  assert.ok(checkpoints > 0, 'children checkpointed');
});
