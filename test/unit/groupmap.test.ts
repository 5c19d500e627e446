// The node's map of group replicas (runtime/membership.ts): configuration reports from different
// nodes arrive in any order, and the map must end at the newest configuration (by its log index),
// across a restart too. A late report of an older configuration once left a moved replica in the
// map for good, and the replica mover then waited on a group that had long settled. A map that
// missed a change reads the group again from the nodes, and a change's answer updates it at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Membership, type MembershipHost } from '../../src/runtime/membership.js';
import type { Envelope } from '../../src/transport/index.js';
import { RuntimeError } from '../../src/runtime/errors.js';
import { notAMember } from '../../src/raft/index.js';

function host(
  dataDir: string,
  sent: { to: string; e: Envelope }[],
  over: Partial<MembershipHost> = {},
): MembershipHost {
  return {
    id: 'n1',
    peers: ['n2', 'n3', 'n4'],
    dataDir,
    timeoutMs: 1000,
    log: pino({ level: 'silent' }),
    isConnected: () => true,
    send: (to, e) => sent.push({ to, e }),
    shard: async () => {
      throw new Error('not used');
    },
    forward: async () => null,
    withRetries: async () => null,
    forgetLeader: () => undefined,
    ...over,
  };
}

test('an older configuration reported late does not replace a newer one, across a restart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const sent: { to: string; e: Envelope }[] = [];
    const boot = () => new Map([[7, ['n1', 'n2', 'n3']]]);
    const m = new Membership(host(dir, sent), boot());
    // A move of n3's replica to n4: learner (index 10), promoted (11), n3 removed (12).
    m.onConf(7, ['n1', 'n2', 'n3'], ['n4'], false, 10);
    assert.deepEqual(m.learnersOf(7), ['n4']);
    m.onConf(7, ['n1', 'n2', 'n4'], [], false, 12);
    assert.deepEqual(m.replicasOf(7), ['n1', 'n2', 'n4']);
    // The promotion's notice, from another node, arrives last.
    m.onConf(7, ['n1', 'n2', 'n3', 'n4'], [], false, 11);
    assert.deepEqual(m.replicasOf(7), ['n1', 'n2', 'n4'], 'the stale report is ignored');
    assert.deepEqual(m.learnersOf(7), []);
    // A report without an index (a peer of an older version) is taken as before.
    m.onConf(7, ['n1', 'n2', 'n3'], [], false, 0);
    assert.deepEqual(m.replicasOf(7), ['n1', 'n2', 'n3']);
    m.onConf(7, ['n1', 'n2', 'n4'], [], false, 12);
    m.flush(); // the node stops
    // After a restart the index is still known: the stale report is still ignored.
    const again = new Membership(host(dir, sent), boot());
    assert.deepEqual(again.replicasOf(7), ['n1', 'n2', 'n4']);
    again.onConf(7, ['n1', 'n2', 'n3', 'n4'], [], false, 11);
    assert.deepEqual(again.replicasOf(7), ['n1', 'n2', 'n4']);
    // A local replica's change is told to every peer with its index.
    again.onConf(7, ['n1', 'n2', 'n3'], [], true, 13);
    const told = sent.filter((s) => s.e.k === 'app' && s.e.t === 'gconf').map((s) => s.to);
    assert.deepEqual(told, ['n2', 'n3', 'n4']);
    const last = sent.at(-1)!.e;
    assert.ok(last.k === 'app' && (last.p as { index: number }).index === 13);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a removal the group's leader says is done already (not a member) succeeds and fixes the map", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const dropped: string[] = [];
    const m = new Membership(
      host(dir, [], {
        // The leader refuses the removal: its configuration no longer has n3.
        withRetries: async () => {
          throw new RuntimeError('InvalidArgument', notAMember('n3'));
        },
        forward: async (target, kind) => {
          dropped.push(`${kind}:${target}`);
          return null;
        },
      }),
      new Map([[7, ['n1', 'n2', 'n3']]]),
    );
    await m.removeMember(7, 'n3', 1000);
    assert.deepEqual(m.replicasOf(7), ['n1', 'n2']);
    assert.deepEqual(dropped, ['gdrop:n3'], 'the copy on n3 is still deleted');
    // Any other refusal still fails the call.
    const other = new Membership(
      host(dir, [], {
        withRetries: async () => {
          throw new RuntimeError('InvalidArgument', 'cannot remove the only voter n2');
        },
      }),
      new Map([[8, ['n2']]]),
    );
    await assert.rejects(other.removeMember(8, 'n2', 1000), /only voter/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a node that missed group 0 being created joins it with an empty replica, once, and remembers it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const calls: { kind: string; payload: unknown }[] = [];
    const shard: MembershipHost['shard'] = async (_group, kind, payload) => {
      calls.push({ kind, payload });
      return null as never;
    };
    const boot = () => new Map([[7, ['n1', 'n2', 'n3']]]);
    const m = new Membership(host(dir, [], { shard }), boot());
    assert.equal(m.has(0), false);
    assert.equal(await m.learnMetaGroup(['n3', 'n1', 'n2']), true);
    assert.deepEqual(m.replicasOf(0), ['n1', 'n2', 'n3']);
    // No configuration of its own: it cannot campaign; the leader sends it one with the log.
    assert.deepEqual(calls, [{ kind: 'create', payload: { group: 0, voters: [] } }]);
    assert.equal(await m.learnMetaGroup(['n1', 'n2', 'n3']), false, 'known now: nothing more');
    assert.equal(calls.length, 1);
    // After a restart it still knows group 0 (and would not create it again).
    const again = new Membership(host(dir, [], { shard }), boot());
    assert.deepEqual(again.replicasOf(0), ['n1', 'n2', 'n3']);
    assert.equal(await again.learnMetaGroup(['n1', 'n2', 'n3']), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // A node not among group 0's replicas only routes to it.
  const dir2 = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    let created = 0;
    const m = new Membership(
      host(dir2, [], {
        shard: async () => {
          created++;
          return null as never;
        },
      }),
      new Map(),
    );
    assert.equal(await m.learnMetaGroup(['n2', 'n3', 'n4']), true);
    assert.deepEqual(m.replicasOf(0), ['n2', 'n3', 'n4']);
    assert.equal(created, 0);
  } finally {
    rmSync(dir2, { recursive: true, force: true });
  }
});

test('a map that missed a change reads the group again from every reachable node and takes the newest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const asked: string[] = [];
    // n2 is behind (index 10), n3 is current (index 14), n4 is not connected, and this node's
    // own replica is gone (its shard has no such group).
    const answers: Record<string, unknown> = {
      n2: { voters: ['n1', 'n2', 'n3'], learners: ['n4'], index: 10 },
      n3: { voters: ['n2', 'n3', 'n4'], learners: [], index: 14 },
    };
    const m = new Membership(
      host(dir, [], {
        isConnected: (p) => p !== 'n4',
        shard: async () => {
          asked.push('local');
          throw new RuntimeError('InvalidArgument', 'unknown group 7');
        },
        forward: async (target, kind, payload) => {
          asked.push(`${kind}:${target}:${(payload as { group: number }).group}`);
          return answers[target];
        },
      }),
      new Map([[7, ['n1', 'n2', 'n3']]]),
    );
    m.onConf(7, ['n1', 'n2', 'n3'], [], false, 9);
    assert.equal(await m.refresh(7, 1000), true);
    assert.deepEqual(asked, ['local', 'conf:n2:7', 'conf:n3:7']);
    assert.deepEqual(m.replicasOf(7), ['n2', 'n3', 'n4']);
    // Nothing newer anywhere: unchanged. A malformed answer is ignored.
    answers.n3 = { voters: 'n9', learners: [], index: 99 };
    assert.equal(await m.refresh(7, 1000), false);
    assert.deepEqual(m.replicasOf(7), ['n2', 'n3', 'n4']);
    // An unknown group asks nobody.
    asked.length = 0;
    assert.equal(await m.refresh(8, 1000), false);
    assert.deepEqual(asked, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a membership change takes the leader's answer into the map at once, without the notice", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const m = new Membership(
      host(dir, [], {
        forward: async () => null,
        withRetries: async () => ({ voters: ['n1', 'n2', 'n3'], learners: ['n4'], index: 21 }),
      }),
      new Map([[7, ['n1', 'n2', 'n3']]]),
    );
    await m.addLearner(7, 'n4', 1000);
    assert.deepEqual(m.replicasOf(7), ['n1', 'n2', 'n3', 'n4']);
    assert.deepEqual(m.learnersOf(7), ['n4']);
    // The notice of an older configuration, arriving after, changes nothing.
    m.onConf(7, ['n1', 'n2', 'n3'], [], false, 20);
    assert.deepEqual(m.learnersOf(7), ['n4']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('before a node is removed it is asked what it holds; a group the map missed is read again and counted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const asked: string[] = [];
    const m = new Membership(
      host(dir, [], {
        isConnected: (p) => p !== 'n4',
        shard: async () => {
          throw new RuntimeError('InvalidArgument', 'no replica here');
        },
        forward: async (target, kind, payload) => {
          const g = (payload as { group: number }).group;
          asked.push(`${kind}:${target}:${g}`);
          if (kind === 'hosted') return [7, 8, 9, 'x'];
          // Group 7 has n3 (this map missed it); group 8 dropped n3 (n3's copy is left over and
          // reports its old configuration); group 9 is unknown here.
          if (g === 7) return { voters: ['n1', 'n2', 'n3'], learners: [], index: 30 };
          return target === 'n3'
            ? { voters: ['n1', 'n2', 'n3'], learners: [], index: 5 }
            : { voters: ['n1', 'n2', 'n4'], learners: [], index: 12 };
        },
      }),
      new Map([
        [7, ['n1', 'n2', 'n4']],
        [8, ['n1', 'n2', 'n4']],
      ]),
    );
    assert.deepEqual(await m.stillOn('n3', 1000), [7]);
    assert.deepEqual(m.replicasOf(7), ['n1', 'n2', 'n3']);
    assert.deepEqual(m.replicasOf(8), ['n1', 'n2', 'n4']);
    assert.equal(asked[0], 'hosted:n3:0');
    // A node that cannot be asked is taken at the map's word.
    asked.length = 0;
    assert.deepEqual(await m.stillOn('n4', 1000), []);
    assert.deepEqual(asked, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a leader hint outside the map reads the group again, at most once a second per group', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const asked: string[] = [];
    const m = new Membership(
      host(dir, [], {
        shard: async () => {
          throw new RuntimeError('InvalidArgument', 'no replica here');
        },
        forward: async (target) => {
          asked.push(target);
          return { voters: ['n2', 'n3', 'n4'], learners: [], index: 40 };
        },
      }),
      new Map([[7, ['n1', 'n2', 'n3']]]),
    );
    assert.equal(m.refreshHinted(7, 1000, 10_000), true);
    assert.equal(m.refreshHinted(7, 1000, 10_999), false, 'within a second: not again');
    assert.equal(m.refreshHinted(8, 1000, 10_999), false, 'an unknown group: nothing to read');
    for (let i = 0; i < 5 && m.replicasOf(7).join() !== 'n2,n3,n4'; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(m.replicasOf(7), ['n2', 'n3', 'n4']);
    assert.deepEqual(asked, ['n2', 'n3', 'n4']);
    assert.equal(m.refreshHinted(7, 1000, 11_000), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('configuration changes are written to groups.json together, within the delay; creations at once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-groupmap-'));
  try {
    const file = join(dir, 'groups.json');
    const read = () => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null);
    const m = new Membership(
      host(dir, [], { saveDelayMs: 30, shard: async () => null as never }),
      new Map([[7, ['n1', 'n2', 'n3']]]),
    );
    const v0 = m.version;
    m.onConf(7, ['n1', 'n2', 'n3'], ['n4'], false, 10);
    m.onConf(7, ['n1', 'n2', 'n3', 'n4'], [], false, 11);
    assert.ok(m.version > v0, 'the mover sees the change at once');
    assert.equal(read(), null, 'not written yet');
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(read().created['7'], ['n1', 'n2', 'n3', 'n4']);
    assert.equal(read().confIndex['7'], 11);
    // A group created at run time is written before the call returns (the node acknowledges it).
    await m.applyCreate(9, ['n2', 'n3', 'n4']);
    assert.deepEqual(read().created['9'], ['n2', 'n3', 'n4']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
