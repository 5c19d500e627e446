// Where a benchmark run's numbers came from: the commit (and whether the tree had uncommitted
// changes), the package version, the command line and the date. Recorded in results.json and
// printed in report.md and under every chart, so a figure copied out of the report still says
// which code produced it.
import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import { ownPackageJson } from './machine.js';

/** The code measured: a git checkout of this package, or something else (an installed package,
 *  a copied tree) with the reason no commit is given. */
export type CodeSource =
  | { kind: 'git'; commit: string; dirty: boolean; changedFiles: number }
  | { kind: 'none'; reason: string };

export interface Provenance {
  code: CodeSource;
  version: string;
  /** The arguments the runner was given (process.argv after the node binary and the script). */
  args: string[];
  /** The same as one line a person can paste: `flotilla bench ...`. */
  command: string;
  date: string;
}

function git(cwd: string, args: string[]): { ok: true; out: string } | { ok: false; err: string } {
  const r = spawnSync('git', ['-C', cwd, ...args], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return { ok: false, err: r.error.message };
  if (r.status !== 0) return { ok: false, err: (r.stderr || `exit ${r.status}`).trim() };
  return { ok: true, out: r.stdout };
}

/** The commit of the package at `root`, only when root is the top of a git work tree: an
 *  installed package under node_modules sits inside the user's repository, whose commit says
 *  nothing about this code. */
export function codeSource(root: string): CodeSource {
  const top = git(root, ['rev-parse', '--show-toplevel', '--short=7', 'HEAD']);
  if (!top.ok) return { kind: 'none', reason: /ENOENT/.test(top.err) ? 'git not installed' : 'not a git checkout' };
  const [toplevel, commit] = top.out.trim().split('\n');
  if (!commit || realpathSync(toplevel) !== realpathSync(root)) return { kind: 'none', reason: 'not a git checkout' };
  // Untracked files are left out: a local results directory or a symlinked node_modules would
  // otherwise mark every run dirty.
  const status = git(root, ['status', '--porcelain', '--untracked-files=no']);
  const changed = status.ok ? status.out.split('\n').filter((l) => l.trim() !== '').length : 0;
  return { kind: 'git', commit, dirty: changed > 0, changedFiles: changed };
}

/** Quotes an argument for a POSIX shell only when it needs it. */
function shellArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

export function commandLine(args: string[]): string {
  return ['flotilla', 'bench', ...args].map(shellArg).join(' ');
}

export function collectProvenance(args: string[], date: Date): Provenance {
  const pkgPath = ownPackageJson();
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: string };
  return {
    code: codeSource(dirname(pkgPath)),
    version: pkg.version ?? 'unknown',
    args,
    command: commandLine(args),
    date: date.toISOString(),
  };
}

/** "commit b7f3083 (dirty: 2 changed files)" or "not a git checkout". */
export function codeText(c: CodeSource): string {
  if (c.kind === 'none') return c.reason;
  return `commit ${c.commit}${c.dirty ? ` (dirty: ${c.changedFiles} changed file${c.changedFiles === 1 ? '' : 's'})` : ' (clean)'}`;
}

/** Two short lines for a chart footer: the code and date, then the command. */
export function provenanceLines(p: Provenance | undefined): string[] {
  if (!p) return ['provenance not recorded (results written before it was)'];
  return [`flotilla ${p.version}, ${codeText(p.code)}, ${p.date.replace(/\.\d+Z$/, 'Z')}`, p.command];
}
