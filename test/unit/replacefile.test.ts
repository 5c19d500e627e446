// replaceFile: a data dir's small JSON files are replaced whole. A write that fails part way (here:
// its scratch file cannot be written) leaves the old file as it was, never a truncated one; the
// next replacement works, whatever scratch file an earlier one left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replaceFile } from '../../src/runtime/replacefile.js';

test('a replacement that fails part way leaves the old file whole; a later one succeeds', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-replace-'));
  try {
    const path = join(dir, 'cluster.json');
    replaceFile(path, '{"v":1}');
    assert.equal(readFileSync(path, 'utf8'), '{"v":1}');
    // The scratch file cannot be written (a directory stands in its place): the write fails
    // before the old file is touched.
    mkdirSync(`${path}.tmp`);
    assert.throws(() => replaceFile(path, '{"v":2}'), /EISDIR/);
    assert.equal(readFileSync(path, 'utf8'), '{"v":1}', 'the old file is intact');
    rmSync(`${path}.tmp`, { recursive: true });
    // A scratch file left by a process killed mid-write is simply overwritten.
    writeFileSync(`${path}.tmp`, '{"v":');
    replaceFile(path, '{"v":3}');
    assert.equal(readFileSync(path, 'utf8'), '{"v":3}');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
