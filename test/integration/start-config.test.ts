// `flotilla start` configuration: the JSON config file's settings, named as in StartOptions, with
// the former names still read (and warned about), flags overriding the file, an unknown name or a
// bad value reported by the name of its setting, and the help and docs printed from the one table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseStartArgs } from '../../src/cli/start.js';
import { SETTINGS, settingsMarkdown } from '../../src/cli/settings.js';
import { START_HELP } from '../../src/cli/start-help.js';

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
  dataDir: '/tmp/x',
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
      labels: { zone: 'a', rack: 'r1' },
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
      assert.equal(c.dataDir, '/tmp/x');
      assert.equal(c.admin, '127.0.0.1:8001');
      assert.deepEqual(c.labels, { zone: 'a', rack: 'r1' });
      assert.deepEqual(c.balancer, { enabled: true, policy: 'count' });
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
      assert.deepEqual(o.labels, { zone: 'b', rack: 'r1' });
      assert.equal(parseStartArgs(['--config', path, '--no-balancer']).balancer?.enabled, false);
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
      'transportSecurity.tls.ca',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the file takes the settings StartOptions takes, nested as there', () => {
  withFile(
    {
      ...base,
      limits: { maxPendingProposals: 500, maxPendingBytes: 1 << 20 },
      raft: { leaseReads: true, maxInflight: 64 },
      stateMachine: { module: './sm.js', snapshotEvery: 1000 },
      draining: true,
      transportSecurity: { secret: 'a-secret-of-twenty-chars' },
      stopDrainMs: 0,
      faultInjection: true,
    },
    (path) => {
      const warnings: string[] = [];
      const c = parseStartArgs(['--config', path], (w) => warnings.push(w));
      assert.deepEqual(warnings, [], 'current names draw no warning');
      assert.deepEqual(c.limits, { maxPendingProposals: 500, maxPendingBytes: 1 << 20 });
      assert.deepEqual(c.raft, { leaseReads: true, maxInflight: 64 });
      assert.deepEqual(c.stateMachine, { module: './sm.js', snapshotEvery: 1000 });
      assert.equal(c.draining, true);
      assert.equal(c.transportSecurity?.secret, 'a-secret-of-twenty-chars');
      assert.equal(c.stopDrainMs, 0);
      assert.equal(c.faultInjection, true);
      assert.equal(c.logLevel, 'info', 'the default');
    },
  );
});

test('former names are still read, each with a warning naming the current one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cfg-'));
  try {
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, 'a-secret-of-twenty-chars\n');
    withFile(
      {
        ...base,
        dataDir: undefined,
        data: '/tmp/old',
        zone: 'a',
        rack: 'r2',
        stateMachine: './sm.js',
        clusterSecretFile: secretFile,
      },
      (path) => {
        const warnings: string[] = [];
        const c = parseStartArgs(['--config', path], (w) => warnings.push(w));
        assert.equal(c.dataDir, '/tmp/old');
        assert.deepEqual(c.labels, { zone: 'a', rack: 'r2' });
        assert.deepEqual(c.stateMachine, { module: './sm.js', snapshotEvery: undefined });
        assert.equal(c.transportSecurity?.secret, 'a-secret-of-twenty-chars', 'read from the file the old name gives');
        assert.equal(warnings.length, 5);
        for (const [old, now] of [
          ['data', 'dataDir'],
          ['zone', 'labels.zone'],
          ['rack', 'labels.rack'],
          ['clusterSecretFile', 'transportSecurity.secret'],
        ])
          assert.ok(
            warnings.some((w) => w.includes(`"${old}"`) && w.includes(`"${now}"`)),
            `${old} -> ${now} in ${warnings.join(' / ')}`,
          );
        assert.ok(warnings.some((w) => w.includes('{"module": PATH}')));
      },
    );
    // The same setting under both names is refused rather than one silently winning.
    withFile({ ...base, data: '/tmp/old' }, (path) =>
      assert.throws(
        () => parseStartArgs(['--config', path]),
        (e: unknown) => e instanceof ConfigError && e.code === 'ConflictingOptions' && e.field === 'data',
      ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown name, at any depth, is an UnknownSetting naming it', () => {
  const unknown = (extra: Record<string, unknown>, field: string) =>
    withFile({ ...base, ...extra }, (path) =>
      assert.throws(
        () => parseStartArgs(['--config', path]),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.code === 'UnknownSetting' &&
          e.field === field &&
          e.message === `config: ${field}: unknown setting`,
      ),
    );
  unknown({ grups: 4 }, 'grups');
  unknown({ labels: { region: 'eu' } }, 'labels.region');
  unknown({ limits: { maxPending: 1 } }, 'limits.maxPending');
  unknown({ transportSecurity: { tls: { ca: 'x', crt: 'y' } } }, 'transportSecurity.tls.crt');
  unknown({ raft: { leaseRead: true } }, 'raft.leaseRead');
  unknown({ balancer: { polcy: 'count' } }, 'balancer.polcy');
  unknown({ transportSecurity: { secret: { path: '/x' } } }, 'transportSecurity.secret.path');
});

test('a bad value in the file names its setting; TLS material may be text or {"file": PATH}', () => {
  const bad = (extra: Record<string, unknown>, field: string, code = 'InvalidValue') =>
    withFile({ ...base, ...extra }, (path) =>
      assert.throws(
        () => parseStartArgs(['--config', path]),
        (e: unknown) => e instanceof ConfigError && e.code === code && e.field === field,
      ),
    );
  bad({ groups: '64' }, 'groups');
  bad({ workers: -1 }, 'workers');
  bad({ labels: 'a' }, 'labels');
  bad({ logLevel: 'verbose' }, 'logLevel');
  bad({ draining: 'yes' }, 'draining');
  bad({ raft: { leaseReads: 1 } }, 'raft.leaseReads');
  bad({ balancer: { policy: 'random' } }, 'balancer.policy');
  bad({ stateMachine: { snapshotEvery: 10 } }, 'stateMachine.module', 'IncompleteOptions');
  bad({ transportSecurity: { tls: { ca: 'not pem', cert: 'x', key: 'y' } } }, 'transportSecurity.tls.ca');
  bad(
    { transportSecurity: { tls: { ca: { file: '/nonexistent/ca.pem' }, cert: 'x', key: 'y' } } },
    'transportSecurity.tls.ca.file',
    'UnreadableFile',
  );
  bad({ transportSecurity: { tls: { ca: 'x' } } }, 'transportSecurity.tls.cert', 'IncompleteOptions');
  bad({ transportSecurity: { secret: 'short' } }, 'transportSecurity.secret');
  bad({ adminReadToken: 'reader-token-1' }, 'adminReadToken', 'IncompleteOptions');
  withFile({ ...base, adminToken: 'admin-token-1', adminReadToken: 'reader-token-1' }, (path) =>
    assert.equal(parseStartArgs(['--config', path]).adminReadToken, 'reader-token-1'),
  );
  // An unknown flag is refused by the parser (flotilla start turns it into exit 2 with the usage).
  assert.throws(() => parseStartArgs(['--config', '/nonexistent.json', '--grups', '4']), /Unknown option '--grups'/);
});

test('the help and the docs are printed from the one settings table', () => {
  for (const s of SETTINGS) {
    assert.ok(START_HELP.includes(s.key), `--help names ${s.key}`);
    if (s.flag) assert.ok(START_HELP.includes(`--${s.flag}`), `--help lists --${s.flag}`);
  }
  const ops = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  assert.ok(
    ops.includes(settingsMarkdown()),
    'docs/operations.md carries the table settingsMarkdown() prints (regenerate it after changing the table)',
  );
});
