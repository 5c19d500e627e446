// GroupRouter: the state machine of a shard configured with a user state machine. Group 0 (the
// metadata group, design note 8) always runs the built-in KV store, whose entries hold the
// cluster metadata; every other group runs the user's. Used only with a user state machine: a
// shard of the built-in KV keeps its one KvStateMachine, with no routing on its path.
//
// Owns: which of the two applies, answers, snapshots, restores and drops a group, and one commit
// for the writes of both. Why it is safe to share one shard:
//  - Durability: prepareWrite() asks both and returns one closure running both writes, inside
//    the commit that carried them before. Each counts its own prepared writes (the KV a queue of
//    cut generations, the user host a queue of saved blob indexes) and takes committed() as "my
//    oldest prepared write is durable"; so committed() is passed only to those whose prepareWrite
//    returned writes for that commit (a queue of which, oldest first). Telling one whose write
//    was not in that commit would mark a later, not yet durable, generation durable, and the log
//    could be compacted past what a restart needs.
//  - Client sessions: each state machine is its own SessionStore, keyed by (group, client), and
//    a group is applied by one of them only, so group 0's sessions live in the KV's tables (in
//    the same LMDB transaction as its data) and a user group's in its host's blob, as before.
//  - LMDB: both open tables in the shard's LogStore environment under distinct names (the KV
//    'kv', 'applied', 'sessions', 'kvstage'; the user host 'usm'; the log's own 'wal', 'log',
//    'meta', 'ctl'), and each keys its rows by group, so neither reads or clears the other's.
//  - Snapshots: the KV decodes a streamed image ahead of its install (prepareRestore); a user
//    group's image is restored at install (prepareRestore answers null for it).
// Commands reach group 0 encoded as KV commands (encodeKvCommandView in a session envelope):
// what the node proposes there must be encoded for the KV whatever the shard's other groups run.
import type { Entry, Snapshot, SnapshotMeta } from '../raft/types.js';
import type { KvStateMachine, PreparedRestore } from '../storage/kv.js';
import type { SnapshotReader } from '../storage/snapstream.js';
import type { ShardStateMachine } from './statemachine.js';

/** The metadata group: always the built-in KV store. */
export const META_GROUP = 0;

/** Bits of a pending commit: whose prepared write it carries. */
const KV = 1;
const USER = 2;

export class GroupRouter implements ShardStateMachine {
  /** Per prepared write not yet durable (oldest first): KV | USER, whose writes it runs. */
  private readonly pending: number[] = [];

  constructor(
    readonly kv: KvStateMachine,
    readonly user: ShardStateMachine,
  ) {}

  private of(group: number): ShardStateMachine {
    return group === META_GROUP ? this.kv : this.user;
  }

  applied(group: number): number {
    return this.of(group).applied(group);
  }

  apply(group: number, entries: readonly Entry[]): unknown[] {
    return this.of(group).apply(group, entries);
  }

  query(group: number, query: unknown): unknown {
    return this.of(group).query(group, query);
  }

  snapshot(group: number, metaAt: (index: number) => SnapshotMeta): Snapshot {
    return this.of(group).snapshot(group, metaAt);
  }

  restore(group: number, snapshot: Snapshot): void {
    this.of(group).restore(group, snapshot);
  }

  openSnapshot(group: number): { index: number; reader: SnapshotReader } {
    return this.of(group).openSnapshot(group);
  }

  restoreStream(group: number, meta: SnapshotMeta, pieces: Iterable<Uint8Array>): void {
    this.of(group).restoreStream(group, meta, pieces);
  }

  prepareRestore(group: number, index: number, pieces: Iterable<Uint8Array>): PreparedRestore | null {
    const sm = this.of(group);
    return sm.prepareRestore ? sm.prepareRestore(group, index, pieces) : null;
  }

  prepareWrite(force = false): (() => void) | null {
    const k = this.kv.prepareWrite(force);
    const u = this.user.prepareWrite(force);
    if (k === null && u === null) return null;
    this.pending.push((k ? KV : 0) | (u ? USER : 0));
    if (k === null) return u;
    if (u === null) return k;
    return () => {
      k();
      u();
    };
  }

  committed(): void {
    const p = this.pending.shift();
    if (p === undefined) return;
    if (p & KV) this.kv.committed();
    if (p & USER) this.user.committed();
  }

  compactableTo(group: number): number {
    return this.of(group).compactableTo(group);
  }

  dropGroup(group: number): void {
    this.of(group).dropGroup(group);
  }

  /** The KV holds nothing to release (its tables belong to the store). */
  async close(): Promise<void> {
    await this.user.close?.();
  }
}
