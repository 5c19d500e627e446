// `flotilla bench` end to end on its fastest scenario: the runner writes results.json (machine,
// fsync probe, provenance, figures with units), report.md and charts, and --compare against an
// earlier results.json prints ratios, names that run's commit and flags a regression planted in
// the earlier file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Results } from '../../src/bench/results.js';

const bench = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'bench', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });

test('flotilla bench micro --quick writes results, report and a comparison', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-cli-'));
  try {
    const a = bench('micro', '--quick', '--out', join(dir, 'a'));
    assert.equal(a.status, 0, a.stderr + a.stdout);
    assert.match(a.stdout, /bench \[1\/1\] micro: .* \.\.\. \(at \d+ s\)/, 'progress line');
    assert.match(a.stdout, /fsync \(4 KiB \+ fdatasync\) p50 [\d.]+ ms/);
    const r = JSON.parse(readFileSync(join(dir, 'a', 'results.json'), 'utf8')) as Results;
    assert.equal(r.schema, 1);
    assert.ok(r.machine.cores > 0 && r.machine.cpuModel.length > 0 && r.machine.fsync.samples > 0);
    assert.deepEqual(r.ran, ['micro']);
    assert.ok(r.provenance, 'provenance recorded');
    assert.deepEqual(r.provenance.args, ['micro', '--quick', '--out', join(dir, 'a')]);
    assert.equal(r.provenance.command, `flotilla bench micro --quick --out ${join(dir, 'a')}`);
    assert.equal(r.provenance.code.kind, 'git', 'run from a clone');
    assert.match(r.provenance.version, /^\d+\.\d+\.\d+/);
    const f = r.figures.find((x) => x.id.startsWith('micro/raft-core/'));
    assert.ok(f && f.value > 0 && f.unit === 'entries/s' && f.better === 'higher', JSON.stringify(r.figures));
    const md = readFileSync(join(dir, 'a', 'report.md'), 'utf8');
    assert.match(md, /## Machine/);
    assert.match(md, /Raft core/);
    assert.ok(md.includes(`- Command: \`${r.provenance.command}\``));
    assert.match(md, /- Code: flotilla \d+\.\d+\.\d+\S*, commit [0-9a-f]{7,}/);
    assert.doesNotMatch(md, /^Figures:/m, 'each figure once: in its table');
    // An earlier run that was twice as fast on every higher-is-better figure: a regression now.
    const faster: Results = {
      ...r,
      figures: r.figures.map((x) => (x.better === 'higher' ? { ...x, value: x.value * 2 } : x)),
    };
    writeFileSync(join(dir, 'before.json'), JSON.stringify(faster));
    const b = bench('micro', '--quick', '--out', join(dir, 'b'), '--compare', join(dir, 'before.json'));
    assert.equal(b.status, 0, b.stderr + b.stdout);
    assert.match(b.stdout, /REGRESSION/);
    assert.ok(existsSync(join(dir, 'b', 'report.md')));
    const mdB = readFileSync(join(dir, 'b', 'report.md'), 'utf8');
    assert.match(mdB, /Compared with/);
    assert.match(
      mdB,
      /Before: commit [0-9a-f]{7,} \((clean|dirty[^)]*)\), flotilla /,
      'the earlier run named by commit',
    );
    // Bad input is refused with a usage error, not a crash.
    assert.equal(bench('nonsense').status, 2);
    assert.equal(bench('micro', '--compare', join(dir, 'missing.json')).status, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
