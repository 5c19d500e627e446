// A user state machine's snapshot for a lagging replica, through the host's streaming pair
// (openSnapshot / restoreStream): as one msgpack blob, or, when the module implements
// saveSnapshot / restoreSnapshot, as its own chunks read lazily.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogStore } from '../../src/storage/logstore.js';
import {
  UserStateMachineHost,
  encodeUserCommand,
  type UserStateMachine,
  type UserStateMachineModule,
} from '../../src/runtime/statemachine.js';
import { encodeCommand } from '../../src/storage/session.js';
import type { Entry, SnapshotMeta } from '../../src/raft/types.js';

const META = (index: number): SnapshotMeta => ({ index, term: 1, conf: { voters: ['a'], learners: [] } });

/** A list of strings; with `chunked`, its snapshot streams one chunk per item. */
function listModule(chunked: boolean, seen: { saves: number; chunksRestored: number }): UserStateMachineModule {
  return {
    createStateMachine(): UserStateMachine {
      let items: string[] = [];
      const sm: UserStateMachine = {
        apply: (c) => {
          items.push(String(c));
          return items.length;
        },
        query: () => items,
        snapshot: () => items,
        restore: (s) => {
          items = [...(s as string[])];
        },
      };
      if (chunked) {
        sm.saveSnapshot = function* () {
          seen.saves++;
          const view = [...items]; // the state at the call
          for (const it of view) yield new TextEncoder().encode(it);
        };
        sm.restoreSnapshot = (chunks) => {
          items = [];
          for (const c of chunks) {
            seen.chunksRestored++;
            items.push(new TextDecoder().decode(c));
          }
        };
      }
      return sm;
    },
  };
}

function entries(from: number, cmds: string[]): Entry[] {
  return cmds.map((c, i) => ({
    index: from + i,
    term: 1,
    type: 'normal' as const,
    data: encodeCommand(null, encodeUserCommand(c)),
  }));
}

for (const chunked of [false, true])
  test(`a user state machine's snapshot streams and restores (${chunked ? 'its own chunks' : 'one blob'})`, async () => {
    const root = mkdtempSync(join(tmpdir(), 'flotilla-usm-snap-'));
    const a = await LogStore.open({ path: join(root, 'a'), noSync: true });
    const b = await LogStore.open({ path: join(root, 'b'), noSync: true });
    try {
      const seen = { saves: 0, chunksRestored: 0 };
      const ha = new UserStateMachineHost(a, listModule(chunked, seen));
      const hb = new UserStateMachineHost(b, listModule(chunked, seen));
      const big = 'x'.repeat(5000);
      ha.apply(1, entries(1, ['one', big, 'three']));
      const { index, reader } = ha.openSnapshot(1);
      assert.equal(index, 3);
      // Applied after the reader opened: not in the snapshot.
      ha.apply(1, entries(4, ['four']));
      const pieces: Uint8Array[] = [];
      for (let p = reader.read(1000); p !== null; p = reader.read(1000)) {
        assert.ok(p.byteLength <= 1000);
        pieces.push(p.slice());
      }
      reader.close();
      hb.restoreStream(1, META(index), pieces);
      assert.deepEqual(hb.query(1, null), ['one', big, 'three']);
      assert.equal(hb.applied(1), 3);
      assert.equal(seen.saves, chunked ? 1 : 0);
      assert.equal(seen.chunksRestored, chunked ? 3 : 0);
      // The restored replica goes on applying from there.
      hb.apply(1, entries(4, ['four']));
      assert.deepEqual(hb.query(1, null), ha.query(1, null));
    } finally {
      await a.close();
      await b.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
