// How a state machine's refusals reach callers: a user state machine that throws in apply gives
// every proposer, on any node, a StateMachineError with its own message, the same on every
// replica (a throw is the entry's result, not a crash), and the group keeps working; a query that
// throws does the same; a result msgpack cannot encode is refused, not fatal; close() runs when
// the node stops. Malformed commands to the built-in KV are StateMachineErrors too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startNode, type FlotillaNode } from '../../src/runtime/node.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import type { KvCommand } from '../../src/storage/kv.js';
import { freePorts, until } from '../helpers/net.js';

const IDS = ['n1', 'n2', 'n3'];

/** A StateMachineError carrying exactly `message`. */
const refusal = (message: string | RegExp) => (e: unknown) => {
  assert.ok(e instanceof RuntimeError, String(e));
  assert.equal(e.code, 'StateMachineError');
  assert.equal(e.retryable, false);
  if (typeof message === 'string') assert.equal(e.message, message);
  else assert.match(e.message, message);
  return true;
};

test('a user state machine that throws: StateMachineError with its message everywhere, replicas agree, close() on stop', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-sm-'));
  const closed = join(root, 'closed');
  process.env.FLOTILLA_TEST_CLOSED = closed;
  const ports = await freePorts(3);
  const addr = Object.fromEntries(IDS.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  const nodes: FlotillaNode[] = [];
  try {
    for (const id of IDS) {
      nodes.push(
        await startNode({
          id,
          dataDir: join(root, id),
          listen: addr[id],
          groups: 2,
          workers: 1,
          tickMs: 20,
          requestTimeoutMs: 15_000,
          peers: Object.fromEntries(IDS.filter((p) => p !== id).map((p) => [p, addr[p]])),
          stateMachine: { module: resolve('test/helpers/tally-sm.ts') },
        }),
      );
    }
    const [n1, n2, n3] = nodes;
    assert.equal(await n1.propose(1, { op: 'add', key: 'a', n: 2 }), 2);
    // From every node (two of them forward to the leader): the machine's own message.
    for (const n of nodes)
      await assert.rejects(n.propose(1, { op: 'fail', why: `no from ${n.id}` }), refusal(`no from ${n.id}`));
    await assert.rejects(n2.propose(1, { op: 'addThenFail', key: 'a', n: 5, why: 'half done' }), refusal('half done'));
    await assert.rejects(n3.propose(1, { op: 'symbol' }), refusal(/symbol/));
    // The group keeps working, and every replica applied the same: the partial add included.
    assert.equal(await n3.propose(1, { op: 'add', key: 'a', n: 1 }), 8);
    const want = { counters: { a: 8 }, applied: 7 };
    for (const n of nodes) assert.deepEqual(await n.read(1, { all: true }), want, `${n.id} (linearizable)`);
    await until(
      'every replica applied the same',
      async () => {
        const views = await Promise.all(nodes.map((n) => n.read(1, { all: true }, { consistency: 'stale' })));
        return views.every((v) => JSON.stringify(v) === JSON.stringify(want));
      },
      10_000,
    );
    for (const n of nodes) await assert.rejects(n.read(2, { boom: 'bad query' }), refusal('bad query'));
    const closedGroups = () => readFileSync(closed, 'utf8').split('\n').filter(Boolean).sort();
    await n1.stop();
    assert.deepEqual(closedGroups(), ['1', '2'], "n1's replicas of both groups closed");
    await n2.stop();
    await n3.stop();
    assert.deepEqual(closedGroups(), ['1', '1', '1', '2', '2', '2'], 'every replica closed once');
  } finally {
    for (const n of nodes) await n.stop();
    delete process.env.FLOTILLA_TEST_CLOSED;
    rmSync(root, { recursive: true, force: true });
  }
});

test('a malformed command to the built-in KV is a StateMachineError naming the problem', async () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-sm-kv-'));
  const [port] = await freePorts(1);
  const node = await startNode({
    id: 'n1',
    dataDir: join(root, 'n1'),
    listen: `127.0.0.1:${port}`,
    groups: 1,
    workers: 0,
    tickMs: 20,
    peers: {},
  });
  try {
    const key = new TextEncoder().encode('k');
    const bad = (c: unknown) => node.propose(1, c as KvCommand);
    await assert.rejects(bad({ op: 'put' }), refusal('put: key must be bytes (Uint8Array)'));
    await assert.rejects(bad({ op: 'put', key }), refusal('put: value must be bytes (Uint8Array)'));
    await assert.rejects(bad({ op: 'bogus', key }), refusal('unknown KV op "bogus" (put, delete or cas)'));
    await assert.rejects(bad({ op: 'cas', key, expected: 'x', value: null }), refusal(/cas: expected must be bytes/));
    await assert.rejects(bad(null), refusal('a KV command is an object { op, key, ... }'));
    await assert.rejects(node.kv.put('', 'v'), refusal('key must be 1..1024 bytes (got 0)'));
    await node.kv.put('k', 'v'); // the group is unharmed
    assert.equal(new TextDecoder().decode((await node.kv.get('k')) ?? undefined), 'v');
  } finally {
    await node.stop();
    rmSync(root, { recursive: true, force: true });
  }
});
