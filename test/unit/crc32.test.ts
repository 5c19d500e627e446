// CRC-32 known vectors, and the two code paths (table below the native threshold, zlib above)
// agreeing with a bit-by-bit reference at every length around it, at offsets, and when chained.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from '../../src/storage/crc32.js';

/** Bit by bit, straight from the definition (reflected, polynomial 0xEDB88320). */
function reference(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

const ascii = (s: string) => new TextEncoder().encode(s);

test('crc32: known vectors', () => {
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(ascii('a')), 0xe8b7be43);
  assert.equal(crc32(ascii('123456789')), 0xcbf43926);
  assert.equal(crc32(ascii('The quick brown fox jumps over the lazy dog')), 0x414fa339);
  assert.equal(crc32(new Uint8Array(4096)), reference(new Uint8Array(4096)));
});

test('crc32: every length to 300 bytes, at an offset, and chained with a seed', () => {
  const buf = new Uint8Array(320);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 131 + 17) & 0xff;
  for (let n = 0; n <= 300; n++) {
    const want = reference(buf.subarray(7, 7 + n));
    assert.equal(crc32(buf, 7, 7 + n), want, `${n} bytes at offset 7`);
    const cut = n >>> 1;
    assert.equal(crc32(buf, 7 + cut, 7 + n, crc32(buf, 7, 7 + cut)), want, `${n} bytes in two parts`);
  }
});
