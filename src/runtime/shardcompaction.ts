// How far a shard compacts its groups' logs: up to what is applied, durable in the state machine
// and not needed by an active follower; in steps of `retain` after commits, and all the way
// before a checkpoint. Free functions rather than an object: maybeCompact runs for every group
// that applied entries in a turn, and this keeps that path the direct call it was.
import type { LogStore } from '../storage/logstore.js';
import type { Group } from './group.js';
import type { ShardStateMachine } from './statemachine.js';

/** The highest index `g` may compact to: applied, durable in its state machine, and not needed
 *  by an active follower (a follower one round behind a busy leader must not need a snapshot). */
function compactableIndex(g: Group, sm: ShardStateMachine): number {
  return Math.min(g.applied, sm.compactableTo(g.id), g.node.compactionFloor() - 1);
}

/** Compact in steps of `retain` entries so that compaction is not a per-commit cost. */
export function maybeCompact(g: Group, sm: ShardStateMachine, store: LogStore, retain: number): void {
  // Plus `retain` entries for the slightly slower followers.
  const upTo = compactableIndex(g, sm) - retain;
  if (upTo > g.storage.firstIndex() + retain) store.compact(g.id, upTo);
}

/** Before a checkpoint: compact every group as far as its state machine and its active
 *  followers allow, without the `retain` margin. The entries a checkpoint would otherwise move
 *  into the log table are those that outlived a whole checkpoint interval, which is not what a
 *  slightly slow follower needs; dropping them keeps a group's entries written once (in the
 *  WAL). One pass over the shard's groups per checkpoint (tens of MiB of WAL). */
export function compactForCheckpoint(groups: Iterable<Group>, sm: ShardStateMachine, store: LogStore): void {
  for (const g of groups) {
    const upTo = compactableIndex(g, sm);
    if (upTo >= g.storage.firstIndex() && upTo <= g.storage.lastIndex()) store.compact(g.id, upTo);
  }
}
