// WalFiles: append and reopen, segment rotation and deletion, torn tails cut off, damage refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WalFiles } from '../../src/storage/wal.js';
import { CorruptRecord } from '../../src/storage/errors.js';

const payload = (i: number) => new Uint8Array(100 + (i % 7)).fill(i & 0xff);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-wal-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('records come back in order after reopening, across segments; dropThrough deletes only covered segments', async () => {
  await withDir(async (dir) => {
    let { wal, records } = WalFiles.open(dir, { segmentBytes: 1024 });
    assert.equal(records.length, 0);
    for (let i = 1; i <= 40; i++) await wal.append(i, payload(i));
    wal.close();
    const segs = readdirSync(dir).filter((f) => f.endsWith('.log'));
    assert.ok(segs.length >= 4, `${segs.length} segments of 1 KiB`);
    ({ wal, records } = WalFiles.open(dir, { segmentBytes: 1024 }));
    assert.deepEqual(
      records.map((r) => r.lsn),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    for (const r of records) assert.deepEqual([...r.payload], [...payload(r.lsn)]);
    await wal.append(41, payload(41));
    wal.dropThrough(20);
    wal.close();
    ({ wal, records } = WalFiles.open(dir, { segmentBytes: 1024 }));
    assert.ok(records[0].lsn <= 21, `records from ${records[0].lsn}: nothing after 20 was dropped`);
    assert.ok(records[0].lsn > 1, 'segments wholly at or below 20 are gone');
    assert.equal(records.at(-1)!.lsn, 41);
    wal.close();
  });
});

test("damage in an older segment is refused even when it is that segment's last record", async () => {
  await withDir(async (dir) => {
    const { wal } = WalFiles.open(dir, { segmentBytes: 1024 });
    for (let i = 1; i <= 20; i++) await wal.append(i, payload(i));
    wal.close();
    const first = readdirSync(dir)
      .filter((f) => f.endsWith('.log'))
      .sort()[0];
    const buf = readFileSync(join(dir, first));
    buf[20] ^= 0xff;
    writeFileSync(join(dir, first), buf);
    assert.throws(
      () => WalFiles.open(dir, { segmentBytes: 1024 }),
      (e: unknown) => e instanceof CorruptRecord,
    );
  });
});

test('a 64 MiB segment is read only up to its end mark; records across its read chunks come back whole; a torn tail past them is cut, damage past them refused (and found fast: payload bytes read as a length once cost a checksum of tens of MiB per byte offset)', {
  timeout: 60_000,
}, async () => {
  await withDir(async (dir) => {
    // Records of 300 KiB and 1.5 MiB straddle the 1 MiB read chunks and their doublings.
    const big = (i: number) => new Uint8Array(i % 2 === 0 ? 1536 << 10 : 300 << 10).fill(i & 0xff);
    let { wal, records } = WalFiles.open(dir);
    for (let i = 1; i <= 6; i++) await wal.append(i, big(i));
    wal.close();
    ({ wal, records } = WalFiles.open(dir));
    assert.deepEqual(
      records.map((r) => [r.lsn, r.payload.length, r.payload[0], r.payload.at(-1)]),
      Array.from({ length: 6 }, (_, k) => [k + 1, big(k + 1).length, (k + 1) & 0xff, (k + 1) & 0xff]),
    );
    // Appends go on after the last record, and come back.
    await wal.append(7, big(7));
    wal.close();
    const [seg] = readdirSync(dir).filter((f) => f.endsWith('.log'));
    const path = join(dir, seg);
    ({ wal, records } = WalFiles.open(dir));
    wal.close();
    assert.deepEqual(
      records.map((r) => r.lsn),
      [1, 2, 3, 4, 5, 6, 7],
    );
    // Tear the last record (its trailer zeroed, as a crash mid-write leaves it): cut off.
    const file = readFileSync(path);
    const end = records.reduce((n, r) => n + 12 + r.payload.length + 4, 0);
    file.fill(0, end - 4, end);
    writeFileSync(path, file);
    ({ wal, records } = WalFiles.open(dir));
    assert.deepEqual(
      records.map((r) => r.lsn),
      [1, 2, 3, 4, 5, 6],
    );
    await wal.append(7, payload(7));
    wal.close();
    // Damage in record 3 with valid records after it, 5 MiB into the file: refused.
    const again = readFileSync(path);
    const third = records.slice(0, 2).reduce((n, r) => n + 12 + r.payload.length + 4, 0);
    again[third + 100] ^= 0xff;
    writeFileSync(path, again);
    assert.throws(
      () => WalFiles.open(dir),
      (e: unknown) => e instanceof CorruptRecord,
    );
  });
});
