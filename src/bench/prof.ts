// Summarise V8 CPU profiles (.cpuprofile files written by `node --cpu-prof`): the top functions by
// self time, and self time by source file, over every profile given (or every profile in the
// directories given). Used to report where a write's CPU goes before and after a change:
//   npm run build && BENCH_PROF=/tmp/prof node dist/src/bench/cluster.js 1000 1 1000 8 local
//   node --import tsx src/bench/prof.ts /tmp/prof [--top 25] [--thread worker|main]
// With --alloc it reads .heapprofile files (BENCH_HEAP_LOAD in src/bench/cluster.ts) instead: bytes
// allocated by function, garbage included.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  top: { fn: string; file: string; selfMs: number; pct: number }[];
  files: { file: string; selfMs: number; pct: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '(native)';
  const i = url.indexOf('/src/');
  if (i >= 0) return url.slice(i + 1);
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0)
    return url
      .slice(nm + 'node_modules/'.length)
      .split('/')
      .slice(0, 2)
      .join('/');
  if (url.startsWith('node:')) return url;
  return basename(url);
}

export function summarise(files: string[], top = 20): ProfileSummary {
  const byFn = new Map<string, { fn: string; file: string; selfMs: number }>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    const self = new Map<number, number>();
    for (let i = 0; i < p.samples.length; i++)
      self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
    for (const [id, ms] of self) {
      const n = nodes.get(id)!;
      const name = n.callFrame.functionName || '(anonymous)';
      if (name === '(idle)' || name === '(program)') continue;
      const file = shortUrl(n.callFrame.url);
      const key = `${name} ${file}:${n.callFrame.lineNumber + 1}`;
      const e = byFn.get(key) ?? { fn: name, file: `${file}:${n.callFrame.lineNumber + 1}`, selfMs: 0 };
      e.selfMs += ms;
      byFn.set(key, e);
      byFile.set(file, (byFile.get(file) ?? 0) + ms);
      total += ms;
    }
  }
  const pct = (ms: number) => Math.round((1000 * ms) / Math.max(total, 1e-9)) / 10;
  return {
    totalMs: Math.round(total),
    top: [...byFn.values()]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top)
      .map((e) => ({ ...e, selfMs: Math.round(e.selfMs), pct: pct(e.selfMs) })),
    files: [...byFile]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([file, ms]) => ({ file, selfMs: Math.round(ms), pct: pct(ms) })),
  };
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** Bytes allocated by function (self), over every sampling heap profile given. */
export function summariseAlloc(
  files: string[],
  top = 20,
): { totalBytes: number; top: { fn: string; file: string; bytes: number; pct: number }[] } {
  const byFn = new Map<string, { fn: string; file: string; bytes: number }>();
  let total = 0;
  const walk = (n: HeapNode) => {
    if (n.selfSize > 0) {
      const file = shortUrl(n.callFrame.url);
      const fn = `${n.callFrame.functionName || '(anonymous)'}  ${file}:${n.callFrame.lineNumber + 1}`;
      const e = byFn.get(fn) ?? {
        fn: n.callFrame.functionName || '(anonymous)',
        file: `${file}:${n.callFrame.lineNumber + 1}`,
        bytes: 0,
      };
      e.bytes += n.selfSize;
      byFn.set(fn, e);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  for (const f of files) walk((JSON.parse(readFileSync(f, 'utf8')) as { head: HeapNode }).head);
  return {
    totalBytes: total,
    top: [...byFn.values()]
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, top)
      .map((e) => ({ ...e, pct: Math.round((e.bytes / (total || 1)) * 1000) / 10 })),
  };
}

function profilesIn(paths: string[], thread: string | undefined, ext = '.cpuprofile'): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p)) if (f.endsWith(ext)) out.push(join(p, f));
    } else out.push(p);
  }
  if (!thread) return out;
  // Node names profiles CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is main.
  return out.filter((f) => {
    const tid = Number(basename(f).split('.').at(-3));
    return thread === 'main' ? tid === 0 : tid !== 0;
  });
}

if (process.argv[1] === import.meta.filename) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string' }, thread: { type: 'string' }, alloc: { type: 'boolean' } },
  });
  if (values.alloc) {
    const files = profilesIn(positionals, undefined, '.heapprofile');
    const a = summariseAlloc(files, Number(values.top ?? 20));
    process.stdout.write(
      `${files.length} profiles, ${(a.totalBytes / 2 ** 20).toFixed(1)} MiB allocated (sampled)\n\nbytes allocated by function:\n`,
    );
    for (const e of a.top)
      process.stdout.write(
        `${String(e.pct).padStart(5)}%  ${(e.bytes / 2 ** 20).toFixed(1).padStart(8)} MiB  ${e.fn}  ${e.file}\n`,
      );
    process.exit(0);
  }
  const files = profilesIn(positionals, values.thread);
  const s = summarise(files, Number(values.top ?? 20));
  process.stdout.write(
    `${files.length} profiles, ${s.totalMs} ms of samples (idle excluded)\n\nself time by function:\n`,
  );
  for (const e of s.top)
    process.stdout.write(`${String(e.pct).padStart(5)}%  ${String(e.selfMs).padStart(7)} ms  ${e.fn}  ${e.file}\n`);
  process.stdout.write('\nself time by file:\n');
  for (const e of s.files)
    process.stdout.write(`${String(e.pct).padStart(5)}%  ${String(e.selfMs).padStart(7)} ms  ${e.file}\n`);
}
