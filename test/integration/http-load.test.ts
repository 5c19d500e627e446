// The HTTP load generator of the gateway benchmark (src/bench/http-load.ts) against a tiny in-process
// server, and (when the etcd binary is installed) against a real 3-member etcd cluster, which
// must be gone afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { runHttpLoad } from '../../src/bench/http-load.js';
import { etcdAvailable, runEtcdHttp, withEtcd } from '../../src/bench/etcd.js';

test('runHttpLoad counts writes, latencies and errors by status', async () => {
  let n = 0;
  const paths = new Set<string>();
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      paths.add(`${req.method} ${req.url}`);
      // Every 10th request fails, as a store that is briefly unavailable would.
      res.writeHead(++n % 10 === 0 ? 503 : 204, { 'content-type': 'application/json' });
      res.end(n % 10 === 0 ? '{"error":"Unavailable","message":"try again"}' : undefined);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const r = await runHttpLoad({
      targets: [`http://127.0.0.1:${port}`],
      clients: 4,
      seconds: 1,
      valueBytes: 16,
      kind: 'flotilla',
      keys: 3,
      timeline: true,
      retryPauseMs: 1,
    });
    assert.ok(r.writes > 50, `writes ${r.writes}`);
    assert.ok(r.writesPerSec > 50);
    assert.ok((r.errorsByKind['HTTP 503'] ?? 0) > 0, JSON.stringify(r.errorsByKind));
    assert.equal(r.errors, r.errorsByKind['HTTP 503']);
    // About one in ten fails (requests outside the window are not counted either way).
    assert.ok(r.errors > r.writes / 20 && r.errors < r.writes / 5, `${r.errors} errors for ${r.writes} writes`);
    assert.equal(r.errorMessages['try again'], r.errors);
    assert.ok(r.p50Ms > 0 && r.p99Ms >= r.p50Ms && r.p999Ms >= r.p99Ms, `${r.p50Ms} ${r.p99Ms} ${r.p999Ms}`);
    assert.equal(r.stalled, 0);
    assert.ok(r.longestClientGapMs > 0 && r.longestClientGapMs < 1000);
    assert.ok(r.timeline && r.timeline.ok.reduce((a, b) => a + b, 0) >= r.writes);
    assert.ok(r.requests && r.requests.length % 5 === 0);
    // Keys are k<client>-<i mod keys>, PUT to /kv/.
    assert.ok(
      paths.has('PUT /kv/k0-0') && paths.has('PUT /kv/k3-2') && !paths.has('PUT /kv/k0-3'),
      [...paths].join(','),
    );
  } finally {
    server.close();
  }
});

test('runHttpLoad reports refused connections and fails over to the next target', async () => {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = (closed.address() as { port: number }).port;
  await new Promise((r) => closed.close(r));
  try {
    const r = await runHttpLoad({
      targets: [`http://127.0.0.1:${deadPort}`, `http://127.0.0.1:${port}`],
      clients: 2,
      seconds: 0.5,
      valueBytes: 16,
      kind: 'flotilla',
    });
    // Client 0 starts on the dead target, is refused once, then stays on the live one.
    assert.equal(r.errorsByKind.ECONNREFUSED, 1, JSON.stringify(r.errorsByKind));
    assert.ok(r.writes > 20);
  } finally {
    server.close();
  }
});

test('etcd: a 3-member cluster takes puts through its HTTP gateway and is gone afterwards', async (t) => {
  const avail = etcdAvailable();
  if (!avail.available) {
    t.skip(`etcd not installed: ${avail.reason}`);
    return;
  }
  let pids: number[] = [];
  const r = await withEtcd(async (cluster) => {
    pids = cluster.members.map((m) => m.pid);
    assert.equal(cluster.endpoints.length, 3);
    assert.ok(await cluster.leader());
    return runEtcdHttp({ clients: 4, seconds: 1, valueBytes: 16, cluster });
  });
  assert.ok(r.available && r.writes > 0, JSON.stringify(r));
  assert.equal(pids.length, 3);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `etcd pid ${pid} still running`);
});
