// The etcd gRPC load (src/bench/etcd-grpc.ts through the load generator of src/bench/http-load.ts)
// against a real 3-member etcd cluster: writes land, none fail, and what was written is in etcd
// afterwards, read back through a client of its own. Skipped, with the reason, without the etcd
// binary or the etcd3 dev dependency.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { etcdPathAvailable, runEtcdLoad, withEtcd } from '../../src/bench/etcd.js';

test('etcd gRPC load: writes succeed and are readable from etcd afterwards', async (t) => {
  const avail = await etcdPathAvailable('grpc');
  if (!avail.available) {
    t.skip(`etcd through gRPC not available: ${avail.reason}`);
    return;
  }
  const { Etcd3 } = await import('etcd3');
  await withEtcd(async (cluster) => {
    const r = await runEtcdLoad({
      path: 'grpc',
      clients: 4,
      seconds: 1,
      valueBytes: 16,
      warmupSeconds: 0,
      primeWrites: 100,
      cluster,
    });
    assert.ok(r.available, JSON.stringify(r));
    assert.equal(r.path, 'grpc');
    assert.match(r.client ?? '', /^etcd3 \d+\.\d+\.\d+$/);
    assert.equal(r.kind, 'etcd-grpc');
    assert.ok(r.writes > 0, `writes ${r.writes}`);
    assert.equal(r.errors, 0, JSON.stringify(r.errorsByKind));
    assert.ok(r.p50Ms > 0 && r.p99Ms >= r.p50Ms && r.maxMs >= r.p99Ms, `${r.p50Ms} ${r.p99Ms} ${r.maxMs}`);
    assert.ok(r.cpu.driverCores > 0, 'the load generator measured its own CPU');

    // Every client wrote its own keys k<client>-<i mod 100>, 16 B each, spread over the members.
    const reader = new Etcd3({ hosts: cluster.endpoints });
    try {
      const kvs = await reader.getAll().prefix('k').buffers();
      for (let c = 0; c < 4; c++) {
        const v = kvs[`k${c}-0`];
        assert.ok(v, `k${c}-0 missing; keys: ${Object.keys(kvs).slice(0, 10).join(',')}`);
        assert.equal(v.length, 16);
      }
      assert.ok(
        Object.keys(kvs).every((k) => /^k[0-3]-\d+$/.test(k)),
        'only the clients’ keys',
      );
    } finally {
      reader.close();
    }
  });
});
