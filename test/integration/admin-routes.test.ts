// The admin HTTP server's routing and access rules on a real node: bad percent-encoding is a 400,
// HEAD answers wherever GET does, a wrong method is a 405 naming the allowed ones, DELETE says
// whether it removed a value, and with tokens set a key read needs the admin or the read token
// while a change needs the admin token; the cluster's nodes are listed openly, and a decommission
// or its cancel needs the admin token and names what it refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startNode } from '../../src/runtime/node.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import { adminHandler, closeAdmin, startAdmin } from '../../src/http/admin.js';
import { freePorts } from '../helpers/net.js';

const ADMIN = 'admin-token-0123';
const READER = 'read-token-4567';

test('admin HTTP: encoding, HEAD, 405 with Allow, DELETE outcome, read token', { timeout: 60_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-routes-'));
  const [port] = await freePorts(1);
  const node = await startNode({
    id: 'n1',
    dataDir: join(root, 'n1'),
    listen: `127.0.0.1:${port}`,
    groups: 2,
    peers: {},
  });
  const admin = await startAdmin(node, '127.0.0.1', 0, pino({ level: 'silent' }), {
    token: ADMIN,
    readToken: READER,
  });
  t.after(async () => {
    await closeAdmin(admin);
    await node.stop();
    rmSync(root, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${(admin.address() as { port: number }).port}`;
  const call = (method: string, path: string, token?: string, body?: string) =>
    fetch(base + path, { method, body, headers: token ? { authorization: `Bearer ${token}` } : {} });
  const json = async (r: Response) => (await r.json()) as Record<string, unknown>;

  await t.test('a malformed percent escape in a key is 400 InvalidArgument', async () => {
    for (const [method, token] of [
      ['GET', READER],
      ['PUT', ADMIN],
      ['DELETE', ADMIN],
    ] as const) {
      const r = await call(method, '/kv/%E0%A4%A', token, method === 'PUT' ? 'v' : undefined);
      assert.equal(r.status, 400, method);
      assert.equal((await json(r)).error, 'InvalidArgument');
    }
    const r = await call('GET', '/kv/%', READER);
    assert.equal(r.status, 400);
  });

  await t.test('a key read needs a token; the read token reads and changes nothing', async () => {
    assert.equal((await call('PUT', '/kv/k', ADMIN, 'value-1')).status, 200);
    const anon = await call('GET', '/kv/k');
    assert.equal(anon.status, 401);
    assert.equal((await json(anon)).error, 'Unauthorized');
    assert.equal((await call('HEAD', '/kv/k')).status, 401);
    assert.equal((await call('GET', '/kv/k', 'wrong-token-000')).status, 401);
    const read = await call('GET', '/kv/k', READER);
    assert.equal(read.status, 200);
    assert.equal(await read.text(), 'value-1');
    assert.equal((await call('GET', '/kv/k', ADMIN)).status, 200, 'the admin token reads too');
    for (const method of ['PUT', 'DELETE'])
      assert.equal((await call(method, '/kv/k', READER, method === 'PUT' ? 'x' : undefined)).status, 401, method);
    assert.equal((await call('POST', '/kv/k?cas', READER, '{"expected":null,"value":"x"}')).status, 401);
    assert.equal((await call('POST', '/undrain', READER)).status, 401, 'nor any other change');
    for (const path of ['/status', '/health', '/metrics', '/balance/config'])
      assert.equal((await call('GET', path)).status, 200, `${path} stays open`);
  });

  await t.test('HEAD answers as GET does, without a body', async () => {
    for (const [path, token] of [
      ['/health', undefined],
      ['/status', undefined],
      ['/metrics', undefined],
      ['/balance/plan', undefined],
      ['/kv/k', READER],
      ['/kv/missing', READER],
    ] as const) {
      const get = await call('GET', path, token);
      const getBody = Buffer.from(await get.arrayBuffer());
      const head = await call('HEAD', path, token);
      assert.equal(head.status, get.status, path);
      assert.equal(head.headers.get('content-type'), get.headers.get('content-type'), path);
      assert.equal((await head.arrayBuffer()).byteLength, 0, `${path}: no body`);
      if (path.startsWith('/kv/')) {
        // Stable answers: the same length, announced.
        assert.equal(Number(head.headers.get('content-length')), getBody.length, path);
      }
    }
    assert.equal((await call('HEAD', '/kv/missing', READER)).status, 404);
  });

  await t.test('a wrong method is 405 with the allowed methods', async () => {
    for (const [method, path, allow] of [
      ['DELETE', '/status', 'GET, HEAD'],
      ['POST', '/health', 'GET, HEAD'],
      ['PUT', '/metrics', 'GET, HEAD'],
      ['GET', '/transfer', 'POST'],
      ['DELETE', '/balance/config', 'GET, HEAD, POST'],
      ['PATCH', '/kv/k', 'GET, HEAD, PUT, POST, DELETE'],
    ] as const) {
      const r = await call(method, path, ADMIN);
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${path}`);
      assert.equal((await json(r)).error, 'MethodNotAllowed');
    }
    const none = await call('GET', '/nowhere');
    assert.equal(none.status, 404, 'an unknown path is still 404');
    assert.equal(none.headers.get('allow'), null);
  });

  await t.test('DELETE says whether it removed a value, in one proposal and no read', async () => {
    assert.equal((await call('PUT', '/kv/d', ADMIN, 'x')).status, 200);
    /** A DELETE's answer, and the proposals and reads it made on the node. */
    const del = async (key: string) => {
      const before = { ...node.stats };
      const r = await call('DELETE', `/kv/${key}`, ADMIN);
      assert.equal(r.status, 200);
      const body = await json(r);
      return { body, proposals: node.stats.proposals - before.proposals, reads: node.stats.reads - before.reads };
    };
    assert.deepEqual(await del('d'), { body: { ok: true, deleted: true }, proposals: 1, reads: 0 });
    assert.equal((await call('GET', '/kv/d', ADMIN)).status, 404);
    assert.deepEqual(await del('d'), { body: { ok: true, deleted: false }, proposals: 1, reads: 0 });
    assert.deepEqual(await del('never-written'), { body: { ok: true, deleted: false }, proposals: 1, reads: 0 });
    // The embedded API answers the same.
    await node.kv.put('e', 'y');
    assert.deepEqual(await node.kv.delete('e'), { deleted: true });
    assert.deepEqual(await node.kv.delete('e'), { deleted: false });
  });

  await t.test('error answers are counted by code, every code from 0', async () => {
    const text = await (await call('GET', '/metrics')).text();
    const count = (code: string) => {
      const m = text.match(new RegExp(`^flotilla_http_errors_total\\{node="n1",code="${code}"\\} (\\d+)$`, 'm'));
      assert.ok(m, `a series for ${code}`);
      return Number(m[1]);
    };
    assert.ok(count('MethodNotAllowed') >= 6);
    assert.ok(count('Unauthorized') >= 3);
    assert.ok(count('InvalidArgument') >= 4);
    assert.equal(count('StorageFailed'), 0);
    assert.equal(count('Internal'), 0);
    assert.equal(count('NotFound'), 1, 'the unknown path; a missing key is an answer, not an error');
  });

  await t.test('GET /nodes; POST and DELETE /nodes/<id>/decommission', async () => {
    const list = await call('GET', '/nodes');
    assert.equal(list.status, 200);
    const { nodes } = (await json(list)) as { nodes: Record<string, unknown>[] };
    assert.deepEqual(
      nodes.map((n) => [n.id, n.state, n.up, n.replicas]),
      [['n1', 'active', true, 2]],
    );
    const head = await call('HEAD', '/nodes');
    assert.equal(head.status, 200);
    assert.equal((await head.arrayBuffer()).byteLength, 0);

    for (const [method, path, allow] of [
      ['POST', '/nodes', 'GET, HEAD'],
      ['GET', '/nodes/n1/decommission', 'POST, DELETE'],
      ['PUT', '/nodes/n1/decommission', 'POST, DELETE'],
    ] as const) {
      const r = await call(method, path, ADMIN);
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${path}`);
    }
    for (const method of ['POST', 'DELETE']) {
      assert.equal((await call(method, '/nodes/n1/decommission')).status, 401, `${method} without a token`);
      assert.equal((await call(method, '/nodes/n1/decommission', READER)).status, 401, `${method}: the read token`);
    }
    assert.equal((await call('POST', '/nodes/n1/x/decommission', ADMIN)).status, 404, 'an id is one segment');

    const refused = async (method: string, path: string, message: RegExp) => {
      const r = await call(method, path, ADMIN);
      assert.equal(r.status, 400, `${method} ${path}`);
      const body = await json(r);
      assert.equal(body.error, 'InvalidArgument');
      assert.match(String(body.message), message);
    };
    await refused('POST', '/nodes/n9/decommission', /no node n9/);
    await refused('DELETE', '/nodes/n9/decommission', /UnknownNode/);
    await refused('POST', '/nodes/n1/decommission', /would leave 0 active nodes/);
    await refused('POST', '/nodes/%E0%A4%A/decommission', /bad percent-encoding/);
    await refused('DELETE', '/nodes/%/decommission', /bad percent-encoding/);
    await refused('DELETE', '/nodes//decommission', /empty/);

    // Cancelling on an active node is a no-op that answers the node; the id is percent-decoded.
    const cancel = await call('DELETE', '/nodes/n%31/decommission', ADMIN);
    assert.equal(cancel.status, 200);
    const n1 = await json(cancel);
    assert.equal(n1.id, 'n1');
    assert.equal(n1.state, 'active');
    assert.equal(n1.up, true);
  });

  await t.test('a read token without an admin token is refused', () => {
    assert.throws(
      () => adminHandler(node, { readToken: READER }),
      (e: unknown) => e instanceof RuntimeError && e.code === 'InvalidArgument',
    );
  });
});
