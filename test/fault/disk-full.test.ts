// Full disk: a child process runs under `ulimit -f` (with SIGXFSZ ignored, so a write past the
// limit fails with an error instead of killing the process) and writes until a commit fails. The
// store must fail-stop cleanly and everything acknowledged must be readable afterwards.
//
// This file is also the child: with FLOTILLA_DISK_FULL_CHILD=1 it runs childMain() instead of
// registering tests:  node --import tsx disk-full.test.ts <dir>
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogStore, StorageFailed } from '../../src/storage/logstore.js';
import { KvStateMachine, decodeKvCommand, kvEntryData } from '../../src/storage/kv.js';
import { decodeCommand } from '../../src/storage/session.js';
import type { Entry } from '../../src/raft/types.js';
import { flushKv } from '../helpers/kv.js';

const GROUPS = 4;
const KEYS = 3;
/** `ulimit -f` in dash counts 512-byte blocks: 4096 blocks = 2 MiB. */
const LIMIT_BLOCKS = 4096;
const PAD = 'p'.repeat(1500);
const enc = new TextEncoder();
const dec = new TextDecoder();
const keyOf = (i: number): string => `k${i % KEYS}`;
const valueFor = (g: number, i: number, token: string): string => `${g}:${i}:${token}:${PAD}`;

interface FailedReport {
  name: string;
  message: string;
  isStorageFailed: boolean;
  sameAsStoreFailed: boolean;
  causeMessage: string | null;
  commits: number;
}
interface AfterReport {
  commit: string;
  commitIsStoreFailed: boolean;
  write: string;
  createGroup: string;
  checkpoint: string;
  storeFailedSet: boolean;
}
interface DoneReport {
  unhandled: string[];
  closeError: string | null;
}

const errName = (e: unknown): string => (e instanceof Error ? e.name : String(e));

async function childMain(): Promise<void> {
  const unhandled: string[] = [];
  process.on('unhandledRejection', (e) => {
    unhandled.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  });
  const out = (o: unknown): void => {
    process.stdout.write(JSON.stringify(o) + '\n');
  };
  const dir = process.argv[2];
  const store = await LogStore.open({ path: dir, checkpointBytes: 256 * 1024 });
  const kv = new KvStateMachine(store);
  for (let g = 1; g <= GROUPS; g++) store.createGroup(g, { voters: ['a'], learners: [] });
  await store.commit();
  let commits = 0;
  let seq = 0;
  try {
    for (; commits < 100_000; commits++) {
      const acks: [number, number, string][] = [];
      for (let g = 1; g <= GROUPS; g++) {
        const last = store.storage(g).lastIndex();
        const es: Entry[] = [];
        for (let i = last + 1; i <= last + 2; i++) {
          const token = `t${++seq}`;
          es.push({
            index: i,
            term: 1,
            type: 'normal',
            data: kvEntryData({ op: 'put', key: enc.encode(keyOf(i)), value: enc.encode(valueFor(g, i, token)) }),
          });
          acks.push([g, i, token]);
        }
        store.write({ group: g, entries: es, hardState: { term: 1, vote: 'a', commit: last + 2 } });
        kv.apply(g, es);
      }
      await flushKv(store, kv);
      out({ ack: acks });
    }
    out({ noFailure: commits });
  } catch (e) {
    const err = e as Error & { cause?: unknown };
    const report: FailedReport = {
      name: err.name,
      message: err.message,
      isStorageFailed: e instanceof StorageFailed,
      sameAsStoreFailed: store.failed === e,
      causeMessage: err.cause instanceof Error ? err.cause.message : err.cause === undefined ? null : String(err.cause),
      commits,
    };
    out({ failed: report });
  }
  const after: AfterReport = {
    commit: 'resolved',
    commitIsStoreFailed: false,
    write: 'ok',
    createGroup: 'ok',
    checkpoint: 'resolved',
    storeFailedSet: store.failed !== null,
  };
  try {
    await store.commit(kv.prepareWrite(true) ?? undefined);
  } catch (e) {
    after.commit = errName(e);
    after.commitIsStoreFailed = e === store.failed;
  }
  try {
    store.write({ group: 1, hardState: { term: 1, vote: 'a', commit: 0 } });
  } catch (e) {
    after.write = errName(e);
  }
  try {
    store.createGroup(99, { voters: ['a'], learners: [] });
  } catch (e) {
    after.createGroup = errName(e);
  }
  try {
    await store.checkpoint();
  } catch (e) {
    after.checkpoint = errName(e);
  }
  out({ after });
  // Give stray rejections from the storage engine time to surface.
  await sleep(300);
  let closeError: string | null = null;
  try {
    await store.close();
  } catch (e) {
    closeError = String(e);
  }
  await sleep(50);
  const done: DoneReport = { unhandled, closeError };
  out({ done });
}

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  acks: [number, number, string][];
  failed?: FailedReport;
  after?: AfterReport;
  done?: DoneReport;
  noFailure?: number;
}

function runLimitedChild(dir: string): Promise<ChildResult> {
  const self = fileURLToPath(import.meta.url);
  const root = fileURLToPath(new URL('../..', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(
      'sh',
      ['-c', `trap "" XFSZ; ulimit -f ${LIMIT_BLOCKS}; exec "$0" --import tsx "$1" "$2"`, process.execPath, self, dir],
      { cwd: root, env: { ...process.env, FLOTILLA_DISK_FULL_CHILD: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const safety = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(safety);
      const r: ChildResult = { code, signal, stderr, acks: [] };
      for (const line of stdout.split('\n')) {
        if (!line) continue;
        const m = JSON.parse(line) as {
          ack?: [number, number, string][];
          failed?: FailedReport;
          after?: AfterReport;
          done?: DoneReport;
          noFailure?: number;
        };
        if (m.ack) r.acks.push(...m.ack);
        if (m.failed) r.failed = m.failed;
        if (m.after) r.after = m.after;
        if (m.done) r.done = m.done;
        if (m.noFailure !== undefined) r.noFailure = m.noFailure;
      }
      resolve(r);
    });
  });
}

if (process.env.FLOTILLA_DISK_FULL_CHILD === '1') {
  await childMain();
} else {
  describe('LogStore on a full disk (ulimit -f)', () => {
    let dir = '';
    let r: ChildResult;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'flotilla-diskfull-'));
      r = await runLimitedChild(dir);
    });

    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('the failed commit rejects with StorageFailed, store.failed is set, later calls are rejected, the process exits normally', (t) => {
      assert.equal(r.noFailure, undefined, 'the file size limit never made a commit fail');
      assert.ok(r.failed, `the child reported a failure (exit ${r.code}/${r.signal}): ${r.stderr}`);
      t.diagnostic(
        `failed after ${r.failed.commits} acknowledged commits; data file ${statSync(join(dir, 'data.mdb')).size} bytes; error: ${r.failed.message}`,
      );
      assert.ok(r.acks.length > 0, 'some commits were acknowledged before the disk filled');
      assert.equal(r.failed.name, 'StorageFailed');
      assert.ok(r.failed.isStorageFailed);
      assert.ok(r.failed.sameAsStoreFailed, 'store.failed is the rejection of the failed commit');
      assert.match(r.failed.message, /^(WAL append|LMDB commit) failed in /);
      assert.ok(r.failed.message.includes(dir), 'the message names the store path');
      assert.deepEqual(r.after, {
        commit: 'StorageFailed',
        commitIsStoreFailed: true,
        write: 'StorageFailed',
        createGroup: 'StorageFailed',
        checkpoint: 'StorageFailed',
        storeFailedSet: true,
      });
      assert.ok(r.done, `the child finished its report (exit ${r.code}/${r.signal}): ${r.stderr}`);
      assert.equal(r.done.closeError, null, 'close() after the failure works');
      assert.equal(r.signal, null, 'not killed by a signal (SIGXFSZ is ignored)');
      assert.equal(r.code, 0, `exit code 0: ${r.stderr}`);
    });

    test('every acknowledged entry is readable after reopening without the limit; the store accepts writes again', async () => {
      assert.ok(r.acks.length > 0);
      const st = await LogStore.open({ path: dir });
      try {
        const kv = new KvStateMachine(st);
        const maxAck = new Map<number, number>();
        const token = new Map<string, string>();
        for (const [g, i, tk] of r.acks) {
          maxAck.set(g, Math.max(maxAck.get(g) ?? 0, i));
          token.set(`${g}/${i}`, tk);
        }
        for (let g = 1; g <= GROUPS; g++) {
          const gs = st.storage(g);
          const top = maxAck.get(g) ?? 0;
          assert.ok(gs.lastIndex() >= top, `group ${g}: last ${gs.lastIndex()} < acknowledged ${top}`);
          assert.ok(gs.initialState().hardState.commit >= top, `group ${g}: hard state commit`);
          // The state machine's durable image may lag the log (its flush rides on an LMDB
          // transaction after the WAL append): a restart replays the rest from the log.
          assert.ok(kv.applied(g) <= gs.lastIndex(), `group ${g}: applied index beyond the log`);
          if (kv.applied(g) < gs.lastIndex()) kv.apply(g, gs.entries(kv.applied(g) + 1, gs.lastIndex() + 1, Infinity));
          assert.equal(kv.applied(g), gs.lastIndex(), `group ${g}: after replaying the log`);
          for (const e of gs.entries(1, top + 1, Infinity)) {
            const cmd = decodeKvCommand(decodeCommand(e.data).payload);
            assert.ok(cmd.op === 'put');
            assert.equal(
              dec.decode(cmd.value),
              valueFor(g, e.index, token.get(`${g}/${e.index}`)!),
              `group ${g} entry ${e.index}`,
            );
          }
          const applied = kv.applied(g);
          for (let j = 0; j < KEYS; j++) {
            const last = applied - ((((applied - j) % KEYS) + KEYS) % KEYS);
            const want =
              last >= 1 && token.has(`${g}/${last}`) ? valueFor(g, last, token.get(`${g}/${last}`)!) : undefined;
            if (want)
              assert.equal(dec.decode(kv.get(g, enc.encode(`k${j}`)) ?? new Uint8Array()), want, `group ${g} k${j}`);
          }
        }
        const last = st.storage(1).lastIndex();
        st.write({ group: 1, entries: [{ index: last + 1, term: 2, type: 'normal', data: new Uint8Array(10) }] });
        await st.commit();
        await st.checkpoint();
        assert.equal(st.storage(1).lastIndex(), last + 1);
      } finally {
        await st.close();
      }
    });

    test('the StorageFailed explains the underlying I/O error (not only "see commitError")', () => {
      assert.ok(r.failed);
      const text = `${r.failed.message} | cause: ${r.failed.causeMessage}`;
      assert.match(
        text,
        /input\/output|EIO|EFBIG|file too large|no space|ENOSPC/i,
        `StorageFailed: ${text}; lmdb stderr: ${r.stderr.trim()}`,
      );
    });

    test('no unhandled promise rejection escapes from the failed commit (it would crash a default Node process)', (t) => {
      assert.ok(r.done);
      t.diagnostic(`unhandled rejections recorded by the child: ${JSON.stringify(r.done.unhandled)}`);
      assert.deepEqual(r.done.unhandled, []);
    });
  });
}
