// node.metrics() on a fresh node: a well-formed exposition with the build, the process figures and
// every failure counter at 0 before anything failed; the exported admin handler serving /health
// and /metrics from an application's own node:http server; and the cluster's nodes by state and
// the joins a node answered, as a second node joins and is decommissioned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminHandler, HandshakeError, startNode, type FlotillaNode } from '../../src/index.js';
import { freePorts, until } from '../helpers/net.js';

const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** name{labels} -> value, and each family's TYPE, checking the text format as it goes. */
function parse(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.trimEnd().split('\n')) {
    const type = line.match(/^# TYPE ([a-z_:][a-z0-9_:]*) (counter|gauge|histogram|summary)$/);
    if (type) {
      assert.ok(!types.has(type[1]), `one TYPE line for ${type[1]}`);
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = line.match(/^([a-z_:][a-z0-9_:]*(?:\{(?:[a-z_]+="[^"\\\n]*",?)*\})?) (\S+)$/);
    assert.ok(m, `a sample line: ${line}`);
    const v = Number(m[2].replace('+Inf', 'Infinity'));
    assert.ok(!Number.isNaN(v), line);
    assert.ok(!samples.has(m[1]), `one sample for ${m[1]}`);
    samples.set(m[1], v);
  }
  return { samples, types };
}

test('node.metrics(): build, process figures, failure counters at 0; adminHandler on an own server', {
  timeout: 60_000,
}, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-metrics-'));
  const [port] = await freePorts(1);
  const node = await startNode({
    id: 'n1',
    dataDir: join(root, 'n1'),
    listen: `127.0.0.1:${port}`,
    groups: 4,
    peers: {},
  });
  t.after(async () => {
    await node.stop();
    rmSync(root, { recursive: true, force: true });
  });

  await t.test('a fresh node', async () => {
    const first = parse(await node.metrics());
    const s = first.samples;
    const build = [...s.keys()].find((k) => k.startsWith('flotilla_build_info{'));
    assert.ok(build, 'build info');
    assert.equal(s.get(build), 1);
    assert.match(build, new RegExp(`version="${VERSION.replace(/\./g, '\\.')}"`));
    assert.match(build, new RegExp(`nodejs="${process.version}"`));
    assert.equal(first.types.get('flotilla_build_info'), 'gauge');

    assert.ok((s.get('flotilla_process_resident_memory_bytes{node="n1"}') ?? 0) > 0);
    assert.ok((s.get('flotilla_process_heap_used_bytes{node="n1"}') ?? 0) > 0);
    assert.ok((s.get('flotilla_process_heap_total_bytes{node="n1"}') ?? 0) > 0);
    assert.ok(s.has('flotilla_process_external_memory_bytes{node="n1"}'));
    assert.ok((s.get('flotilla_process_cpu_seconds_total{node="n1",mode="user"}') ?? 0) > 0);
    assert.ok(s.has('flotilla_process_cpu_seconds_total{node="n1",mode="system"}'));
    assert.equal(first.types.get('flotilla_process_event_loop_delay_seconds'), 'summary');
    for (const q of ['0.5', '0.99'])
      assert.ok(s.has(`flotilla_process_event_loop_delay_seconds{node="n1",quantile="${q}"}`), q);
    assert.ok(s.has('flotilla_process_event_loop_delay_seconds_count{node="n1"}'));
    assert.ok(s.has('flotilla_process_event_loop_delay_max_seconds{node="n1"}'));
    for (const kind of ['minor', 'major', 'incremental', 'weakcb']) {
      assert.ok(s.has(`flotilla_process_gc_pauses_total{node="n1",kind="${kind}"}`), kind);
      assert.ok(s.has(`flotilla_process_gc_pause_seconds_total{node="n1",kind="${kind}"}`), kind);
    }

    // Nothing has failed yet, and every reason shows already.
    const zero = (name: string, label: string, values: string[]) => {
      for (const v of values) assert.equal(s.get(`${name}{node="n1",${label}="${v}"}`), 0, `${name} ${v}`);
    };
    zero('flotilla_transport_handshake_failures_total', 'reason', [
      'WrongCluster',
      'AuthFailed',
      'TlsFailed',
      'Removed',
    ]);
    zero('flotilla_transport_handshake_failures_total', 'reason', ['DuplicateId', 'Unauthenticated', 'NotReady']);
    zero('flotilla_transport_dropped_total', 'reason', [
      'MalformedFrame',
      'QueueFull',
      'raft.StaleTerm',
      'PeerRemoved',
    ]);
    zero('flotilla_transfers_total', 'outcome', ['completed', 'TargetLagging', 'Timeout', 'ClusterUnstable']);
    zero('flotilla_balancer_moves_total', 'reason', ['health', 'count', 'load']);
    zero('flotilla_runtime_dropped_total', 'reason', ['NoWorker', 'BadMessage']);
    zero('flotilla_leader_changes_total', 'cause', ['transfer', 'failover']);
    assert.equal(s.get('flotilla_transport_handler_errors_total{node="n1"}'), 0);
    for (const c of ['peers_added', 'peers_removed', 'peers_readdressed', 'joins_accepted'])
      assert.equal(s.get(`flotilla_transport_${c}_total{node="n1"}`), 0, c);
    assert.equal(s.get('flotilla_groups{node="n1"}'), 4);

    // The cluster's nodes by state (before any join or decommission: the configured nodes, active),
    // and the cluster record's counters at 0.
    assert.equal(first.types.get('flotilla_cluster_nodes'), 'gauge');
    assert.equal(s.get('flotilla_cluster_nodes{node="n1",state="active"}'), 1);
    zero('flotilla_cluster_nodes', 'state', ['decommissioning', 'removed']);
    zero('flotilla_joins_total', 'outcome', ['admitted', 'refused']);
    for (const c of ['syncs', 'sync_failures', 'cas_retries']) {
      assert.equal(s.get(`flotilla_cluster_record_${c}_total{node="n1"}`), 0, c);
      assert.equal(first.types.get(`flotilla_cluster_record_${c}_total`), 'counter', c);
    }
  });

  await t.test('garbage collections are counted by kind', async () => {
    const minor = async () =>
      parse(await node.metrics()).samples.get('flotilla_process_gc_pauses_total{node="n1",kind="minor"}') ?? 0;
    const before = await minor();
    // Short-lived garbage: young-generation collections.
    let keep = 0;
    for (let i = 0; i < 200; i++) keep += new Array(50_000).fill(i).length;
    assert.ok(keep > 0);
    await sleep(50); // observer entries arrive after the collection, asynchronously
    assert.ok((await minor()) > before, 'minor collections counted');
  });

  await t.test('the exported handler, mounted on an application server', async () => {
    const handler = adminHandler(node);
    const server = createServer((req, res) => {
      if (req.url === '/app') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('app');
        return;
      }
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as { ok: boolean; id: string; groups: number };
    assert.equal(body.ok, true);
    assert.equal(body.id, 'n1');
    assert.equal(body.groups, 4);
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const m = parse(await metrics.text()).samples;
    assert.equal(m.get('flotilla_groups{node="n1"}'), 4);
    assert.equal(m.get('flotilla_http_errors_total{node="n1",code="NotFound"}'), 0);
    assert.equal(await (await fetch(`${base}/app`)).text(), 'app', 'the application keeps its own routes');
  });
});

test('node.metrics(): the cluster nodes by state and the joins answered, as a node joins and leaves', {
  timeout: 60_000,
}, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-metrics-'));
  const ports = await freePorts(3);
  const base = (id: string, i: number) => ({
    id,
    dataDir: join(root, id),
    listen: `127.0.0.1:${ports[i]}`,
    tickMs: 20,
    noSync: true,
    balancer: { enabled: false },
    transportSecurity: { secret: 'metrics-test-secret-0123456789' },
  });
  const nodes: FlotillaNode[] = [];
  t.after(async () => {
    for (const n of nodes.reverse()) await n.stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
  const n1 = await startNode({ ...base('n1', 0), groups: 2, peers: {} });
  nodes.push(n1);
  const sample = async (name: string) => parse(await n1.metrics()).samples.get(name);

  nodes.push(await startNode({ ...base('n2', 1), join: `127.0.0.1:${ports[0]}` }));
  await assert.rejects(
    startNode({ ...base('n2', 2), dataDir: join(root, 'dup'), join: `127.0.0.1:${ports[0]}` }),
    (e: unknown) => e instanceof HandshakeError && e.reason === 'DuplicateId',
  );
  assert.equal(await sample('flotilla_joins_total{node="n1",outcome="admitted"}'), 1);
  assert.equal(await sample('flotilla_joins_total{node="n1",outcome="refused"}'), 1);
  assert.equal(await sample('flotilla_cluster_nodes{node="n1",state="active"}'), 2);

  await n1.decommission('n2');
  assert.equal(await sample('flotilla_cluster_nodes{node="n1",state="active"}'), 1);
  assert.equal(await sample('flotilla_cluster_nodes{node="n1",state="decommissioning"}'), 1);
  // n2 follows the record by reading it (told by n1 that it changed).
  await until('n2 read the record', async () => {
    const s = parse(await nodes[1].metrics()).samples;
    return (
      (s.get('flotilla_cluster_record_syncs_total{node="n2"}') ?? 0) > 0 &&
      s.get('flotilla_cluster_nodes{node="n2",state="decommissioning"}') === 1
    );
  });
  await n1.cancelDecommission('n2');
  assert.equal(await sample('flotilla_cluster_nodes{node="n1",state="decommissioning"}'), 0);
  assert.equal(await sample('flotilla_cluster_nodes{node="n1",state="active"}'), 2);
});
