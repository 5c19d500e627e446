// The disk's durable-write latency, probed at the start of every benchmark run: a 4 KiB write
// followed by fdatasync, repeated. Every figure with fsync on is bounded by it, so results.json
// records it next to the machine description (a run on a faster disk is not a faster runtime).
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FsyncProbe } from './results.js';

export function probeFsync(o: { maxSamples?: number; maxMs?: number; dir?: string } = {}): FsyncProbe {
  const dir = mkdtempSync(join(o.dir ?? tmpdir(), 'flotilla-fsync-'));
  const fd = openSync(join(dir, 'probe'), 'w');
  const block = Buffer.alloc(4096, 7);
  const ms: number[] = [];
  const until = performance.now() + (o.maxMs ?? 2000);
  try {
    for (let i = 0; i < (o.maxSamples ?? 200) && performance.now() < until; i++) {
      const t = performance.now();
      // Rewrite the same block (as a log's tail page is rewritten) and make it durable.
      writeSync(fd, block, 0, block.length, (i % 16) * 4096);
      fdatasyncSync(fd);
      ms.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  ms.sort((a, b) => a - b);
  const at = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] ?? 0;
  return { p50Ms: Math.round(at(0.5) * 1000) / 1000, p99Ms: Math.round(at(0.99) * 1000) / 1000, samples: ms.length };
}
