// Real node processes (`flotilla start`) on 127.0.0.1, driven through the admin HTTP gateway:
// writes and reads on every node, cas conflicts, 404s, config errors that name their field, and
// a clean exit on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { freePorts, until } from '../helpers/net.js';

const MAIN = 'src/cli/main.ts';
const TOKEN = 'test-admin-token-42';
const authFor = (id: string): Record<string, string> => (id === 'n3' ? { authorization: `Bearer ${TOKEN}` } : {});

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));
}

test('config errors name the field and exit 2', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'start', ...args], { encoding: 'utf8', timeout: 30_000 });
  let r = run(['--data', '/tmp/x', '--listen', '127.0.0.1:1']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /config: id: required/);
  r = run(['--id', 'n1', '--data', '/tmp/x', '--listen', 'nope']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /config: listen: must be "host:port"/);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cfg-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ id: 'n1', data: dir, listen: '127.0.0.1:1', groups: -3 }));
  r = run(['--config', join(dir, 'c.json')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /config: groups: must be a positive integer/);
  rmSync(dir, { recursive: true, force: true });
});

test('a port already in use is reported clearly and the process exits 1', async () => {
  const [port] = await freePorts(1);
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bind-'));
  try {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          MAIN,
          'start',
          '--id',
          'n1',
          '--data',
          dir,
          '--listen',
          `127.0.0.1:${port}`,
          '--log-level',
          'silent',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      p.stderr!.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      p.once('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /flotilla start: listen: cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    assert.doesNotMatch(r.stderr, /at Server\./, 'no stack trace');
  } finally {
    await new Promise<void>((r) => blocker.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('three node processes serve the HTTP key-value gateway and stop cleanly on SIGTERM', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-proc-'));
  const ids = ['n1', 'n2', 'n3'];
  const ports = await freePorts(6);
  const raft = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const admin = new Map(ids.map((id, i) => [id, `http://127.0.0.1:${ports[3 + i]}`]));
  const procs = new Map<string, ChildProcess>();
  try {
    for (const [i, id] of ids.entries()) {
      const args = [
        '--import',
        'tsx',
        MAIN,
        'start',
        '--id',
        id,
        '--data',
        join(root, id),
        '--listen',
        raft.get(id)!,
        '--admin',
        `127.0.0.1:${ports[3 + i]}`,
        '--groups',
        '8',
        '--tick-ms',
        '20',
        '--log-level',
        'warn',
      ];
      for (const p of ids) if (p !== id) args.push('--peer', `${p}=${raft.get(p)}`);
      if (id === 'n3') args.push('--admin-token', TOKEN);
      procs.set(id, spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] }));
    }
    // A child that dies (e.g. cannot bind) fails the test at once instead of at the deadline.
    const early = new Promise<never>((_, reject) => {
      for (const [id, p] of procs) p.once('exit', (code) => reject(new Error(`${id} exited early with code ${code}`)));
    });
    early.catch(() => {}); // the processes exit later on purpose (SIGTERM)
    await Promise.race([
      early,
      until(
        'all groups led',
        async () => {
          let leaders = 0;
          for (const a of admin.values())
            leaders += ((await (await fetch(`${a}/status`)).json()) as { leaders: number }).leaders;
          return leaders === 8;
        },
        120_000,
        50,
      ),
    ]);
    for (const [i, id] of ids.entries()) {
      const r = await fetch(`${admin.get(id)}/kv/key-${i}`, {
        method: 'PUT',
        body: `value-${i}`,
        headers: authFor(id),
      });
      assert.equal(r.status, 200, await r.text());
    }
    for (const [id, a] of admin) {
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${a}/kv/key-${i}`, { headers: authFor(id) });
        assert.equal(r.status, 200);
        assert.equal(await r.text(), `value-${i}`);
      }
      assert.equal((await fetch(`${a}/kv/missing`, { headers: authFor(id) })).status, 404);
      assert.equal((await fetch(`${a}/kv/key-0?consistency=stale`, { headers: authFor(id) })).status, 200);
    }
    assert.equal((await fetch(`${admin.get('n3')}/kv/key-0`)).status, 401, 'with a token, key reads need it too');
    const cas = (expected: string | null, value: string) =>
      fetch(`${admin.get('n2')}/kv/c?cas`, { method: 'POST', body: JSON.stringify({ expected, value }) });
    assert.equal((await cas(null, 'one')).status, 200);
    const conflict = await cas(null, 'two');
    assert.equal(conflict.status, 409);
    assert.deepEqual(await conflict.json(), { swapped: false, current: 'one' });
    const unauthorized = await fetch(`${admin.get('n3')}/kv/c`, { method: 'DELETE' });
    assert.equal(unauthorized.status, 401, 'n3 requires its admin token for changes');
    assert.equal(((await unauthorized.json()) as { error: string }).error, 'Unauthorized');
    assert.equal(
      (await fetch(`${admin.get('n3')}/kv/c`, { method: 'DELETE', headers: { authorization: 'Bearer wrong-token!' } }))
        .status,
      401,
    );
    assert.equal((await fetch(`${admin.get('n3')}/kv/c`, { method: 'DELETE', headers: authFor('n3') })).status, 200);
    assert.equal((await fetch(`${admin.get('n3')}/status`)).status, 200, 'reads need no token');
    // Asynchronous, so that this process's event loop keeps running while a command runs: a
    // blocked loop misses the server closing an idle keep-alive socket and the next fetch on it
    // fails with "other side closed".
    const cli = (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: 60_000,
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          stdout += d;
        });
        child.stderr.setEncoding('utf8').on('data', (d: string) => {
          stderr += d;
        });
        child.on('close', (status) => resolve({ status, stdout, stderr }));
      });
    const health = (await (await fetch(`${admin.get('n3')}/health`)).json()) as {
      ok: boolean;
      warnings: { kind: string; fix: string }[];
    };
    assert.equal(health.ok, true);
    assert.ok(
      Array.isArray(health.warnings) && health.warnings.every((w) => w.kind && w.fix),
      "health carries the advisor's warnings",
    );
    assert.equal(
      (await cli('undrain', '--admin', admin.get('n3')!.slice(7))).status,
      1,
      'CLI without the token: refused',
    );
    assert.equal((await cli('undrain', '--admin', admin.get('n3')!.slice(7), '--token', TOKEN)).status, 0);
    assert.equal((await fetch(`${admin.get('n1')}/kv/c`)).status, 404);
    const bad = await fetch(`${admin.get('n1')}/kv/c?cas`, { method: 'POST', body: 'not json' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: string }).error, 'InvalidArgument');

    // Operator commands against the admin address.
    const adminOf = (id: string) => admin.get(id)!.slice('http://'.length);
    let r = await cli('status', '--admin', adminOf('n1'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /node n1 .*workers/);
    assert.match(r.stdout, /worker {2}up {3}groups {2}leaders {2}quiesced/);
    // The per-group view, as run before a transfer.
    r = await cli('status', '--admin', adminOf('n1'), '--groups');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^group {2}role {7}leader {2}term {4}commit {3}applied {2}quorum {2}peers/m);
    const rows = r.stdout.split('\n').filter((l) => /^\d+ +[a-zA-Z]+\*? /.test(l));
    assert.equal(rows.length, 8, 'a row per group');
    // Where n1 leads (the row says so), each peer's match/lag/state follows.
    for (const row of rows.filter((l) => /^\d+ +leader\*? +n1 /.test(l)))
      assert.match(row, / n[23] \d+\/\d+\/\w+/, row);
    r = await cli('status', '--admin', adminOf('n1'), '--groups', '--group', '3', '--json');
    assert.equal(r.status, 0, r.stderr);
    const g3 = JSON.parse(r.stdout) as {
      node: string;
      uptimeMs: number;
      groups: { group: number; hasQuorum: boolean; conf: { voters: string[] } }[];
    };
    assert.deepEqual(
      g3.groups.map((g) => [g.group, g.hasQuorum, g.conf.voters]),
      [[3, true, ['n1', 'n2', 'n3']]],
    );
    assert.ok(g3.uptimeMs > 0);
    assert.equal(
      (await cli('status', '--admin', adminOf('n1'), '--groups', '--group', '99')).status,
      1,
      'no replica of group 99: exit 1',
    );
    assert.equal(
      (await cli('status', '--admin', adminOf('n1'), '--group', '3')).status,
      2,
      '--group without --groups: usage',
    );
    // Connection errors name their cause.
    r = await cli('status', '--admin', '127.0.0.1:1');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot reach 127\.0\.0\.1:1: .*ECONNREFUSED/);
    r = await cli('status', '--admin', `http://${adminOf('n1')}`);
    assert.equal(r.status, 0, `an http:// address is taken as HOST:PORT: ${r.stderr}`);
    r = await cli('transfer', '--admin', adminOf('n2'), '--group', '1', '--to', 'n3');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /group 1: n\d -> n3 verified in [\d.]+ ms/);
    r = await cli('transfer', '--admin', adminOf('n2'), '--group', '1', '--to', 'n9');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /TransferFailed \(TargetNotMember\)/);
    r = await cli('transfer', '--admin', adminOf('n2'), '--to', 'n3');
    assert.equal(r.status, 2, 'usage error');
    r = await cli('drain', '--admin', adminOf('n1'), '--avoid', 'n3', '--wait');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /drained n1: moved \d+ leaders in \d+ ms; failed 0/);
    assert.equal(
      ((await (await fetch(`${admin.get('n1')}/status`)).json()) as { leaders: number }).leaders,
      0,
      'n1 leads nothing',
    );
    const put = await fetch(`${admin.get('n1')}/kv/after-drain`, { method: 'PUT', body: 'ok' });
    assert.equal(put.status, 200, 'a drained node still serves clients');
    r = await cli('undrain', '--admin', adminOf('n1'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal((await cli('status', '--admin', '127.0.0.1:1')).status, 1, 'unreachable admin: exit 1');
    r = await cli('balance', '--admin', adminOf('n2'), '--dry-run');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /would move \d+ leaders/);
    // Membership through the CLI: group 1 has all three nodes; remove n2, then add it back as a
    // learner and promote it.
    r = await cli('member', '--admin', adminOf('n1'), '--group', '1', '--remove', 'n2');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /group 1: remove n2 done; replicas n1, n3/);
    r = await cli('member', '--admin', adminOf('n1'), '--group', '1', '--add-learner', 'n2');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    r = await cli('member', '--admin', adminOf('n1'), '--group', '1', '--promote', 'n2');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /group 1: promote n2 done; replicas n1, n2, n3/);
    assert.equal((await cli('member', '--admin', adminOf('n1'), '--group', '1')).status, 2, 'usage: one operation');
    // Prometheus metrics.
    const m = await (await fetch(`${admin.get('n2')}/metrics`)).text();
    assert.match(
      m,
      /# TYPE flotilla_leaders gauge\nflotilla_leaders\{node="n2"\} \d+/,
      'leaders gauge with its TYPE line',
    );
    assert.match(
      m,
      /flotilla_transfers_total\{node="n2",outcome="completed"\} [1-9]/,
      'the CLI transfer asked on n2 is counted',
    );
    assert.match(m, /flotilla_peer_connected\{node="n2",peer="n1"\} 1/, 'n2 is linked to n1');
    const histogram = (text: string, name: string) => {
      const buckets = [...text.matchAll(new RegExp(`^${name}_bucket\\{node="n\\d",le="([^"]+)"\\} (\\d+)$`, 'gm'))].map(
        (x) => Number(x[2]),
      );
      const count = Number(new RegExp(`^${name}_count\\{node="n\\d"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
      assert.ok(buckets.length === 15, `${name}: 14 bounds and +Inf (${buckets.length})`);
      assert.ok(
        buckets.every((b, i) => i === 0 || b >= buckets[i - 1]),
        `${name}: cumulative buckets ${buckets}`,
      );
      assert.equal(buckets.at(-1), count, `${name}: the +Inf bucket equals the count`);
      return count;
    };
    assert.ok(histogram(m, 'flotilla_fsync_duration_seconds') > 0, 'storage commits observed');
    assert.ok(histogram(m, 'flotilla_transfer_duration_seconds') >= 1, 'the CLI transfer asked on n2 is timed');
    assert.ok(histogram(m, 'flotilla_peer_rtt_seconds') > 0, 'peer round trips observed');
    assert.ok(histogram(m, 'flotilla_gc_pause_seconds') >= 0, 'main-thread GC pauses exposed');
    assert.match(m, /^flotilla_pending_proposals\{node="n2"\} \d+$/m, 'pending proposals gauge');
    assert.match(m, /^flotilla_event_loop_delay_p99_seconds\{node="n2"\} [\d.e-]+$/m, 'event-loop delay gauge');
    const all = await Promise.all(
      ['n1', 'n2', 'n3'].map(async (id) => (await fetch(`${admin.get(id)}/metrics`)).text()),
    );
    assert.ok(
      all.reduce((a, t) => a + histogram(t, 'flotilla_commit_latency_seconds'), 0) > 0,
      'proposal commit latency observed on the leaders',
    );
    assert.ok(
      all.reduce((a, t) => a + histogram(t, 'flotilla_apply_latency_seconds'), 0) > 0,
      'apply latency observed on the leaders',
    );
    assert.match(m, /flotilla_proposals_total\{node="n2"\} [1-9]\d*$/m, 'the writes and CAS asked on n2 are counted');
    assert.match(
      m,
      /flotilla_leader_changes_total\{node="n2",cause="election"\} [1-9]\d*$/m,
      "the first elections are seen by n2's replicas",
    );
    for (const cause of ['transfer', 'drain', 'balancer', 'failover']) {
      assert.match(
        m,
        new RegExp(`^flotilla_leader_changes_total\\{node="n2",cause="${cause}"\\} \\d+$`, 'm'),
        `leader changes by cause: ${cause}`,
      );
    }
    assert.match(
      m,
      /flotilla_transfer_phase_seconds_count\{node="n2",phase="campaign"\} [1-9]\d*$/m,
      'transfer phases observed',
    );
    assert.match(m, /flotilla_not_leader_total\{node="n2"\} \d+$/m, 'not-leader counter exposed');
    assert.match(m, /flotilla_requests_retried_total\{node="n2"\} \d+$/m, 'retried attempts exposed');
    assert.match(m, /flotilla_balancer_moves_total\{node="n2",reason="count"\} \d+/, 'balancer moves by reason');

    // Graceful stop: the first SIGTERM hands n2's leaderships over before the process exits, so
    // its groups never wait out an election.
    const leadersOf = async (id: string) =>
      ((await (await fetch(`${admin.get(id)}/status`)).json()) as { leaders: number }).leaders;
    await until(
      'n2 leads a group',
      async () => {
        if ((await leadersOf('n2')) > 0) return true;
        await cli('transfer', '--admin', adminOf('n1'), '--group', '2', '--to', 'n2');
        return false;
      },
      20_000,
    );
    procs.get('n2')!.kill('SIGTERM');
    assert.equal(await exited(procs.get('n2')!), 0, 'n2 exits 0 on SIGTERM');
    procs.delete('n2');
    assert.equal(
      (await leadersOf('n1')) + (await leadersOf('n3')),
      8,
      'every group was handed over before n2 exited: led at once by n1 and n3',
    );
    for (const p of procs.values()) p.kill('SIGTERM');
    for (const [id, p] of procs) assert.equal(await exited(p), 0, `${id} exits 0 on SIGTERM`);
  } finally {
    for (const p of procs.values()) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
});
