// A long run at a steady write rate, with the state machine compacting behind it, must not grow
// the data directory without bound: checkpoints delete WAL records and compacted rows, and LMDB
// reuses the freed pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogStore } from '../../src/storage/logstore.js';
import type { Entry } from '../../src/raft/types.js';

test('steady writes with compaction keep the data file bounded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bounded-'));
  try {
    // noSync: file growth does not depend on fsync, and this keeps the test fast.
    const store = await LogStore.open({ path: dir, noSync: true, checkpointBytes: 256 << 10 });
    const groups = 50;
    const conf = { voters: ['a', 'b', 'c'], learners: [] };
    for (let g = 0; g < groups; g++) store.createGroup(g, conf);
    await store.commit();
    const next = new Array<number>(groups).fill(1);
    const data = new Uint8Array(200).fill(3);
    const size = () => statSync(join(dir, 'data.mdb')).size;
    const samples: number[] = [];
    let written = 0;
    for (let round = 1; round <= 3000; round++) {
      for (let g = 0; g < groups; g++) {
        const ents: Entry[] = [];
        for (let k = 0; k < 2; k++) ents.push({ index: next[g]++, term: 1, type: 'normal', data });
        store.write({ group: g, entries: ents, hardState: { term: 1, vote: 'a', commit: next[g] - 1 } });
        written += 2 * data.byteLength;
        if (round % 20 === 0 && next[g] > 40) store.compact(g, next[g] - 40);
      }
      await store.commit();
      if (round % 500 === 0) samples.push(size());
    }
    const stats = store.stats;
    await store.close();
    t.diagnostic(
      `wrote ${(written / 2 ** 20).toFixed(1)} MiB of entry data; data.mdb sizes every 500 rounds (MiB): ` +
        samples.map((b) => (b / 2 ** 20).toFixed(2)).join(', ') +
        `; checkpoints ${stats.checkpoints}`,
    );
    assert.ok(stats.checkpoints >= 10, `expected many checkpoints, got ${stats.checkpoints}`);
    // After warm-up the file must level off: the last size may not exceed the size at 1/3 of the
    // run by more than 25%, and it must be far below the volume written.
    const warm = samples[1];
    const last = samples[samples.length - 1];
    assert.ok(last <= warm * 1.25, `data file kept growing: ${warm} -> ${last} bytes`);
    assert.ok(last < written / 4, `data file ${last} bytes is not small next to ${written} bytes written`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
