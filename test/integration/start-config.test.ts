// `flotilla start` configuration: the JSON config file's fields as docs/runtime.md documents them,
// flags overriding the file, and a bad value reported by the name of its field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseStartArgs } from '../../src/cli/start.js';

const withFile = (cfg: unknown, fn: (path: string) => void) => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cfg-'));
  try {
    const p = join(dir, 'node.json');
    writeFileSync(p, JSON.stringify(cfg));
    fn(p);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

const base = {
  id: 'n1',
  data: '/tmp/x',
  listen: '127.0.0.1:7001',
  peers: { n2: '127.0.0.1:7002', n3: '127.0.0.1:7003' },
};

test('a config file with every documented field is read; flags override it', () => {
  withFile(
    {
      ...base,
      groups: 64,
      replication: 3,
      admin: '127.0.0.1:8001',
      workers: 2,
      zone: 'a',
      rack: 'r1',
      tickMs: 50,
      electionTicks: 20,
      electionRoundTicks: 4,
      timingScale: 2,
      requestTimeoutMs: 5000,
      logLevel: 'warn',
      balancer: { enabled: true, policy: 'count' },
    },
    (path) => {
      const c = parseStartArgs(['--config', path]);
      assert.equal(c.id, 'n1');
      assert.deepEqual(c.peers, base.peers);
      assert.equal(c.groups, 64);
      assert.equal(c.workers, 2);
      assert.equal(c.zone, 'a');
      assert.equal(c.rack, 'r1');
      assert.equal(c.timingScale, 2);
      assert.equal(c.electionTicks, 20);
      assert.equal(c.electionRoundTicks, 4);
      assert.equal(c.requestTimeoutMs, 5000);
      assert.equal(c.logLevel, 'warn');
      const o = parseStartArgs([
        '--config',
        path,
        '--timing-scale',
        '3',
        '--groups',
        '10',
        '--zone',
        'b',
        '--election-round-ticks',
        '6',
      ]);
      assert.equal(o.electionRoundTicks, 6);
      assert.equal(o.timingScale, 3);
      assert.equal(o.groups, 10);
      assert.equal(o.zone, 'b');
    },
  );
});

test('a bad value names its field', () => {
  const bad = (argv: string[], field: string) =>
    assert.throws(
      () => parseStartArgs(argv),
      (e: unknown) => e instanceof ConfigError && e.field === field,
    );
  const flags = ['--id', 'n1', '--data', '/tmp/x', '--listen', '127.0.0.1:7001'];
  bad([...flags, '--timing-scale', '0'], 'timingScale');
  bad([...flags, '--timing-scale', 'fast'], 'timingScale');
  bad([...flags, '--listen', 'nowhere'], 'listen');
  bad([...flags, '--election-round-ticks', '0'], 'electionRoundTicks');
  bad(['--data', '/tmp/x', '--listen', '127.0.0.1:7001'], 'id');
  withFile({ ...base, peers: ['n2'] }, (path) => bad(['--config', path], 'peers'));
});

test('a config file or TLS file that cannot be read is an UnreadableFile naming its field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cfg-'));
  try {
    const missing = join(dir, 'absent.pem');
    const unreadable = (argv: string[], field: string) =>
      assert.throws(
        () => parseStartArgs(argv),
        (e: unknown) =>
          e instanceof ConfigError && e.code === 'UnreadableFile' && e.field === field && /cannot read/.test(e.message),
      );
    unreadable(['--config', join(dir, 'absent.json')], 'config');
    unreadable(
      [
        '--id',
        'n1',
        '--data',
        dir,
        '--listen',
        '127.0.0.1:7001',
        '--tls-ca',
        missing,
        '--tls-cert',
        missing,
        '--tls-key',
        missing,
      ],
      'tlsCa',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
