// Typed errors of the runtime API. Every pending promise settles with one of these codes, so
// callers can decide: retry elsewhere (NotLeader, with a hint), retry later (Unavailable,
// Overloaded, TransferInProgress), or give up (InvalidArgument, Stopped, StorageFailed).
import type { NodeId, ProposeResult } from '../raft/types.js';

export type RuntimeErrorCode =
  | 'NotLeader'
  | 'Timeout'
  | 'Unavailable'
  | 'Stopped'
  | 'InvalidArgument'
  | 'StorageFailed'
  | 'Overloaded'
  | 'TransferInProgress'
  | 'ConfChangeInProgress';

export class RuntimeError extends Error {
  constructor(readonly code: RuntimeErrorCode, message: string, readonly leader: NodeId = '') {
    super(message);
    this.name = 'RuntimeError';
  }

  /** Whether the same request may succeed if retried (possibly on another node). */
  get retryable(): boolean {
    return this.code === 'NotLeader' || this.code === 'Unavailable' || this.code === 'Overloaded' ||
      this.code === 'TransferInProgress' || this.code === 'Timeout';
  }

  static fromProposal(r: Extract<ProposeResult, { ok: false }>, leader: NodeId): RuntimeError {
    switch (r.reason) {
      case 'NotLeader': return new RuntimeError('NotLeader', 'this node is not the leader', r.leader || leader);
      case 'TransferInProgress': return new RuntimeError('TransferInProgress', `leadership is moving to ${r.target}`, r.target);
      case 'ConfChangeInProgress': return new RuntimeError('ConfChangeInProgress', 'a membership change is in progress');
      case 'TooLarge': return new RuntimeError('InvalidArgument', `proposal larger than ${r.limit} bytes`);
      case 'Overloaded': return new RuntimeError('Overloaded', `more than ${r.limit} uncommitted bytes`);
      case 'InvalidConfChange': return new RuntimeError('InvalidArgument', r.detail);
    }
  }
}
