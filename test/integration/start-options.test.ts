// StartOptions: the defaults `flotilla start --help` and docs/operations.md document are the ones
// startNode runs with (both read START_DEFAULTS, and the ones the runtime computes are checked
// here one by one), and options an embedder gets wrong are refused with a StartOptionsError
// naming the field, before anything is started or written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SETTINGS, defaultText, startDefault } from '../../src/cli/settings.js';
import { ConfigError, parseStartArgs } from '../../src/cli/config.js';
import {
  START_DEFAULTS,
  defaultWorkers,
  resolveStartOptions,
  type ResolvedStartOptions,
  type StartOptions,
} from '../../src/runtime/startoptions.js';
import { StartOptionsError } from '../../src/runtime/errors.js';
import { REPLICA_MOVER_DEFAULTS } from '../../src/runtime/mover.js';
import { startNode } from '../../src/runtime/node.js';
import { freePorts } from '../helpers/net.js';

const minimal: StartOptions = { id: 'n1', dataDir: '/nonexistent/flotilla', listen: '127.0.0.1:7001' };

/** The resolved value at a setting's dotted key. */
function at(r: ResolvedStartOptions, key: string): unknown {
  let v: unknown = r;
  for (const part of key.split('.')) v = typeof v === 'object' && v !== null ? Reflect.get(v, part) : undefined;
  return v;
}

/** Each default the runtime computes, or leaves to another layer, as documented in words: what
 *  startNode must then do. A node setting documented in words without a line here fails. */
const COMPUTED: Record<string, (text: string) => void> = {
  replication: (text) => {
    assert.equal(text, 'min(3, nodes)');
    for (const n of [1, 2, 3, 5]) {
      const peers = Object.fromEntries(Array.from({ length: n - 1 }, (_, i) => [`p${i}`, `127.0.0.1:${8000 + i}`]));
      assert.equal(resolveStartOptions({ ...minimal, peers }).replication, Math.min(3, n), `${n} nodes`);
    }
  },
  workers: (text) => {
    assert.equal(text, '0 with at most 2 cores, else the number of cores');
    assert.equal(resolveStartOptions(minimal).workers, defaultWorkers());
    for (const cores of [1, 2]) assert.equal(defaultWorkers(cores), 0);
    for (const cores of [3, 8]) assert.equal(defaultWorkers(cores), cores);
  },
  electionRoundTicks: (text) => {
    assert.equal(text, 'electionTicks');
    assert.equal(resolveStartOptions(minimal).electionRoundTicks, START_DEFAULTS.electionTicks);
    assert.equal(resolveStartOptions({ ...minimal, electionTicks: 7 }).electionRoundTicks, 7);
  },
  advertise: (text) => {
    assert.equal(text, 'the listen address');
    assert.equal(resolveStartOptions(minimal).advertise, minimal.listen);
    assert.equal(resolveStartOptions({ ...minimal, advertise: 'db1:7000' }).advertise, 'db1:7000');
  },
  join: (text) => {
    assert.equal(text, 'none');
    assert.equal(resolveStartOptions(minimal).join, undefined);
    assert.throws(
      () => resolveStartOptions({ ...minimal, join: '127.0.0.1:7000', peers: { p1: '127.0.0.1:7001' } }),
      (e: unknown) => e instanceof StartOptionsError && e.field === 'join' && e.problem === 'ConflictingOptions',
    );
  },
  replicas: (text) => {
    assert.equal(text, 'balance on, 2 moves per node, repair after 300,000 ms');
    assert.equal(REPLICA_MOVER_DEFAULTS.balance, true);
    assert.equal(REPLICA_MOVER_DEFAULTS.maxMovesPerNode, 2);
    assert.equal(REPLICA_MOVER_DEFAULTS.repairDelayMs, 300_000);
    assert.equal(resolveStartOptions(minimal).replicas, undefined, 'the mover fills in its own defaults');
  },
  // Left to the layers that own them: nothing given, nothing filled in.
  raft: () =>
    assert.deepEqual(Object.keys(resolveStartOptions(minimal).raft).sort(), ['electionRoundTicks', 'electionTicks']),
  'stateMachine.module': () => assert.equal(resolveStartOptions(minimal).stateMachine, undefined),
  'stateMachine.snapshotEvery': () => assert.equal(resolveStartOptions(minimal).stateMachine, undefined),
  balancer: (text) => {
    assert.equal(text, 'enabled');
    assert.equal(resolveStartOptions(minimal).balancer, undefined);
  },
};

test("each node setting's documented default is what startNode resolves it to", () => {
  const r = resolveStartOptions(minimal);
  const checked = new Set<string>();
  for (const s of SETTINGS.filter((x) => x.scope === 'node')) {
    const text = defaultText(s);
    const runtime = startDefault(s.key);
    if (runtime !== undefined) {
      // Documented from START_DEFAULTS, and not also in words that could drift from it.
      assert.equal(s.defaultDoc, undefined, `${s.key}: documented from START_DEFAULTS only`);
      assert.deepEqual(at(r, s.key), runtime, `${s.key}: startNode uses START_DEFAULTS`);
      const shown = typeof runtime === 'object' && runtime !== null ? 'none' : String(runtime);
      assert.equal(text, shown, `${s.key}: documented as ${shown}`);
    } else if (text !== undefined) {
      const check = COMPUTED[s.key];
      assert.ok(check, `${s.key}: documented as "${text}" but not checked against startNode`);
      check(text);
    } else {
      // No default documented: nothing filled in (a required field, or an absence).
      assert.ok(s.required || at(r, s.key) === undefined, `${s.key}: no default documented, none used`);
    }
    checked.add(s.key);
  }
  assert.ok(checked.has('groups') && checked.has('limits.maxPendingBytes') && checked.has('tickMs'));
});

test('startNode runs with the defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-defaults-'));
  const [port] = await freePorts(1);
  // workers and noSync given only to keep the test light; everything else is left to defaults.
  const node = await startNode({ id: 'n1', dataDir: dir, listen: `127.0.0.1:${port}`, workers: 0, noSync: true });
  t.after(async () => {
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const st = await node.status();
  assert.equal(st.groups, START_DEFAULTS.groups, 'one replica of each of the default groups');
  assert.equal(node.electionMs, START_DEFAULTS.tickMs * START_DEFAULTS.timingScale * START_DEFAULTS.electionTicks);
  assert.equal(st.draining, START_DEFAULTS.draining);
  assert.equal(node.balancerConfig().enabled, true, 'the balancer is enabled by default');
});

test('options an embedder gets wrong are refused naming the field, before anything starts', async () => {
  const dir = join(tmpdir(), `flotilla-never-${process.pid}`);
  const refused = async (opts: unknown, field: string, problem = 'InvalidValue') => {
    // An embedder in JavaScript, or options built at run time, is not held back by the types.
    const given = { id: 'n1', dataDir: dir, listen: '127.0.0.1:1', ...(opts as object) } as StartOptions;
    await assert.rejects(startNode(given), (e: unknown) => {
      assert.ok(e instanceof StartOptionsError, `${field}: ${e}`);
      assert.equal(e.code, 'InvalidArgument');
      assert.equal(e.field, field);
      assert.equal(e.problem, problem);
      assert.ok(e.message.startsWith(`${field}: `), e.message);
      return true;
    });
  };
  await refused({ tickMS: 50 }, 'tickMS', 'UnknownSetting');
  await refused({ groups: '4' }, 'groups');
  await refused({ groups: 0 }, 'groups');
  await refused({ id: 'n:1' }, 'id');
  await refused({ dataDir: '' }, 'dataDir');
  await refused({ listen: 'nowhere' }, 'listen');
  await refused({ peers: { n2: 'nowhere' } }, 'peers.n2');
  await refused({ replication: 2 }, 'replication');
  await refused({ workers: 1000 }, 'workers');
  await refused({ timingScale: 0 }, 'timingScale');
  await refused({ labels: { zone: 'a', region: 'eu' } }, 'labels.region', 'UnknownSetting');
  await refused({ limits: { maxPendingBytes: -1 } }, 'limits.maxPendingBytes');
  await refused({ limits: { maxPending: 5 } }, 'limits.maxPending', 'UnknownSetting');
  await refused({ raft: { leaseRead: true } }, 'raft.leaseRead', 'UnknownSetting');
  await refused({ raft: { leaseReads: 'yes' } }, 'raft.leaseReads');
  await refused({ electionTicks: 10, raft: { electionTicks: 20 } }, 'raft.electionTicks', 'ConflictingOptions');
  await refused({ stateMachine: { modul: 'x.js' } }, 'stateMachine.modul', 'UnknownSetting');
  await refused({ draining: 'no' }, 'draining');
  await refused({ balancer: { tolerance: -1 } }, 'balancer.tolerance');
  await refused({ balancer: { intervalMS: 5 } }, 'balancer.intervalMS', 'UnknownSetting');
  await refused({ transportSecurity: { secret: 'short' } }, 'transportSecurity.secret');
  await refused({ transportSecurity: { tls: { ca: 'x', crt: 'y' } } }, 'transportSecurity.tls.crt', 'UnknownSetting');
  assert.equal(existsSync(dir), false, 'nothing was written');
  // The same setting given twice in agreement is one setting.
  assert.equal(resolveStartOptions({ ...minimal, electionTicks: 20, raft: { electionTicks: 20 } }).electionTicks, 20);
});

test('flotilla start refuses what startNode would, as a configuration error naming the setting', () => {
  const flags = ['--id', 'n1', '--data', '/tmp/x', '--listen', '127.0.0.1:7001'];
  const field = (argv: string[]) => {
    try {
      parseStartArgs(argv);
    } catch (e) {
      if (e instanceof ConfigError) return `${e.field} ${e.code}`;
      throw e;
    }
    return 'accepted';
  };
  assert.equal(field([...flags, '--replication', '2']), 'replication InvalidValue');
  assert.equal(field([...flags, '--workers', '300']), 'workers InvalidValue');
  assert.equal(field([...flags, '--peer', 'n2=127.0.0.1:7002', '--replication', '2']), 'accepted');
  assert.equal(parseStartArgs(flags).groups, undefined, 'the default is left to startNode');
});
