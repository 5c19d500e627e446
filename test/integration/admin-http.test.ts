// The admin HTTP server's connection handling: the keep-alive timeout it advertises is shorter
// than the one it applies (so a client never reuses a connection the server is closing), and once
// the node is stopping every response asks the client to close its connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startNode } from '../../src/runtime/node.js';
import { closeAdmin, KEEP_ALIVE_ADVERTISED_S, KEEP_ALIVE_IDLE_MS, startAdmin } from '../../src/http/admin.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePorts } from '../helpers/net.js';

test('admin HTTP: keep-alive advertised below the real idle timeout; Connection: close once stopping', {
  timeout: 30_000,
}, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-admin-'));
  const [port] = await freePorts(1);
  const node = await startNode({
    id: 'n1',
    dataDir: join(root, 'n1'),
    listen: `127.0.0.1:${port}`,
    groups: 1,
    peers: {},
  });
  let stopping = false;
  const admin = await startAdmin(node, '127.0.0.1', 0, pino({ level: 'silent' }), {
    stopping: () => stopping,
    faultInjection: true,
  });
  t.after(async () => {
    await node.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${(admin.address() as { port: number }).port}/health`;

  assert.ok(KEEP_ALIVE_IDLE_MS - KEEP_ALIVE_ADVERTISED_S * 1000 >= 5_000, 'a margin of seconds, not one');
  assert.equal(admin.keepAliveTimeout, KEEP_ALIVE_IDLE_MS);
  const r = await fetch(url);
  await r.arrayBuffer();
  assert.equal(r.headers.get('connection'), 'keep-alive');
  assert.equal(r.headers.get('keep-alive'), `timeout=${KEEP_ALIVE_ADVERTISED_S}`, 'one Keep-Alive line, ours');

  stopping = true;
  const s = await fetch(url);
  await s.arrayBuffer();
  assert.equal(s.headers.get('connection'), 'close');
  assert.equal(s.headers.get('keep-alive'), null);

  // A request in flight when the server closes is answered, and its connection, kept alive (the
  // request came before the stop), does not hold the stop for the 65 s keep-alive timeout: the
  // test's own timeout would fail first. Slow disk writes keep the PUT in flight.
  stopping = false;
  const base = url.replace('/health', '');
  assert.equal((await fetch(`${base}/debug/disk-delay?ms=400`, { method: 'POST' })).status, 200);
  const put = fetch(`${base}/kv/k`, { method: 'PUT', body: 'v' });
  await sleep(100);
  stopping = true;
  await closeAdmin(admin);
  const answered = await put;
  assert.equal(answered.status, 200, 'the in-flight write is answered, not cut');
  assert.equal(answered.headers.get('connection'), 'keep-alive');
  assert.equal(admin.listening, false);
});
