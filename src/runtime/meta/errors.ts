// The typed failures of the cluster metadata (group 0's state machine, design note 8). A command
// the state refuses is a result, the same on every replica (MetaRefused, with one of the
// MetaRefusal reasons); ClusterMetaError carries such a refusal to a caller who wants to throw it,
// and is what decoding throws for bytes that are not a valid command or snapshot.
import { FlotillaError } from '../../errors.js';

/** Why the state refused a command. */
export type MetaRefusal =
  /** Any command but bootstrap before the cluster was bootstrapped. */
  | 'NotBootstrapped'
  /** A bootstrap of another cluster id on a bootstrapped state. */
  | 'AlreadyBootstrapped'
  /** addNode names another cluster. */
  | 'ClusterMismatch'
  /** An active or decommissioning node has that id (with another address or labels). */
  | 'DuplicateId'
  /** That id belonged to a removed node: a removed node never rejoins under its old id. */
  | 'Decommissioned'
  /** An active or decommissioning node listens on that address. */
  | 'DuplicateAddress'
  /** A malformed id, address, labels or cluster id. */
  | 'InvalidNode'
  /** setNodeState or setReplicas names a node the cluster never admitted. */
  | 'UnknownNode'
  /** A node state change other than active → decommissioning → removed or a cancel. */
  | 'IllegalTransition'
  /** setReplicas with no voter, a node listed twice, or a bad group or index. */
  | 'InvalidReplicas'
  /** Bytes that are not a valid command or snapshot, or a snapshot object that breaks its
   *  invariants: nothing of it is taken. A log entry that does not decode is refused with it
   *  (applyEncoded), alike on every replica, rather than stopping the apply loop. */
  | 'Corrupt';

export type ClusterMetaErrorCode =
  | MetaRefusal
  /** A command whose fields cannot be encoded (so that its bytes would not decode). */
  | 'Unencodable';

export class ClusterMetaError extends FlotillaError<ClusterMetaErrorCode> {
  /** A refusal as an error, for a caller that throws it (a join answered with it). */
  static refused(r: { readonly reason: MetaRefusal; readonly detail: string }): ClusterMetaError {
    return new ClusterMetaError(r.reason, r.detail);
  }
}

/** Every refusal, exhaustive by type: what a decoded result is checked against. */
export const META_REFUSALS: Readonly<Record<MetaRefusal, true>> = {
  NotBootstrapped: true,
  AlreadyBootstrapped: true,
  ClusterMismatch: true,
  DuplicateId: true,
  Decommissioned: true,
  DuplicateAddress: true,
  InvalidNode: true,
  UnknownNode: true,
  IllegalTransition: true,
  InvalidReplicas: true,
  Corrupt: true,
};
