// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): detects truncated or garbage records read
// back from disk. Node's zlib.crc32 (native) for anything but tiny values, where the call costs
// more than a table lookup per byte.
import { crc32 as nativeCrc32 } from 'node:zlib';

const T = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** Below this many bytes the table loop beats the native call (measured: ~40 B). */
const NATIVE_FROM = 48;

export function crc32(buf: Uint8Array, start = 0, end = buf.length, seed = 0): number {
  if (end - start >= NATIVE_FROM) return nativeCrc32(buf.subarray(start, end), seed);
  let c = ~seed;
  for (let i = start; i < end; i++) c = T[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
