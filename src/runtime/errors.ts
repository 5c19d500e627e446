// Typed errors of the runtime API. Every pending promise settles with one of these codes, so
// callers can decide: retry elsewhere (NotLeader, with a hint), retry later (Unavailable,
// Overloaded, TransferInProgress), or give up (InvalidArgument, StateMachineError, Stopped,
// StorageFailed; Aborted is the caller's own AbortSignal).
import { FlotillaError } from '../errors.js';
import type { NodeId, ProposeResult } from '../raft/types.js';
import type { BalancerConfigError } from '../balancer/errors.js';

export type RuntimeErrorCode =
  | 'NotLeader'
  | 'Timeout'
  | 'Unavailable'
  | 'Stopped'
  | 'InvalidArgument'
  | 'StorageFailed'
  | 'Overloaded'
  | 'TransferInProgress'
  | 'ConfChangeInProgress'
  | 'TransferFailed'
  | 'Aborted'
  /** The state machine (built-in KV or the user's) refused the command or query; the message is
   *  its own. A refused command that was committed is the same refusal on every replica. */
  | 'StateMachineError';

export class RuntimeError extends FlotillaError<RuntimeErrorCode> {
  constructor(
    code: RuntimeErrorCode,
    message: string,
    readonly leader: NodeId = '',
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }

  /** Whether the same request may succeed if retried (possibly on another node). */
  get retryable(): boolean {
    return (
      this.code === 'NotLeader' ||
      this.code === 'Unavailable' ||
      this.code === 'Overloaded' ||
      this.code === 'TransferInProgress' ||
      this.code === 'Timeout'
    );
  }

  static fromProposal(r: Extract<ProposeResult, { ok: false }>, leader: NodeId): RuntimeError {
    switch (r.reason) {
      case 'NotLeader':
        return new RuntimeError('NotLeader', 'this node is not the leader', r.leader || leader);
      case 'TransferInProgress':
        return new RuntimeError('TransferInProgress', `leadership is moving to ${r.target}`, r.target);
      case 'ConfChangeInProgress':
        return new RuntimeError('ConfChangeInProgress', 'a membership change is in progress');
      case 'TooLarge':
        return new RuntimeError('InvalidArgument', `proposal larger than ${r.limit} bytes`);
      case 'Overloaded':
        return new RuntimeError('Overloaded', `more than ${r.limit} uncommitted bytes`);
      case 'InvalidConfChange':
        return new RuntimeError('InvalidArgument', r.detail);
    }
  }

  /** A balancer configuration refused (at start-up or on reconfigure), as the caller sees it. */
  static fromBalancer(e: BalancerConfigError): RuntimeError {
    switch (e.code) {
      case 'UnknownSetting':
      case 'InvalidSetting':
        return new RuntimeError('InvalidArgument', e.message);
    }
  }
}

/** What is wrong with a StartOptions field: a name startNode does not know, a value of the
 *  wrong type or out of range, or one setting given twice with different values. */
export type StartOptionsProblem = 'UnknownSetting' | 'InvalidValue' | 'ConflictingOptions';

/** startNode refused its options before starting anything. An InvalidArgument (as every
 *  refusal of a caller's input) that names the field as in StartOptions, dotted when nested
 *  ('limits.maxPendingBytes', 'balancer.health.factor'). */
export class StartOptionsError extends RuntimeError {
  declare readonly code: 'InvalidArgument';
  constructor(
    readonly field: string,
    readonly problem: StartOptionsProblem,
    why: string,
  ) {
    super('InvalidArgument', `${field}: ${why}`);
  }
}

/** Why a leader transfer was refused or did not complete (the old leader stays leader unless
 *  the reason says otherwise). */
export type TransferFailReason =
  | 'TargetNotMember'
  | 'TargetIsLearner'
  | 'TargetIsSelf' // the target already leads the group (not an error for callers that only want it there)
  | 'TargetUnhealthy' // not heard from recently, or reported down by the transport
  | 'TargetLagging' // further behind than the catch-up bound
  | 'TargetDraining'
  | 'ConfChangeInProgress'
  | 'NoQuorum'
  | 'NoLeader'
  | 'Timeout' // the target did not take over in time
  | 'Superseded'
  | 'LeadershipLost'
  | 'TargetRemoved'
  | 'NotVerified' // the target took over but did not confirm it serves within the deadline
  // Preflight refusals that `force` overrides (besides TargetLagging):
  | 'TargetNoQuorum' // the target says it does not reach a quorum of the group's voters
  | 'TargetNeedsSnapshot' // the leader no longer has the entries the target lacks
  | 'TargetSlow' // the target's fsync p99 or CPU is much worse than the leader's
  | 'ClusterUnstable'; // the stability advisor reports recent unplanned elections or a broadcast as long as the election timeout

export class TransferError extends RuntimeError {
  declare readonly code: 'TransferFailed';
  constructor(
    readonly reason: TransferFailReason,
    message: string,
    leader: NodeId = '',
  ) {
    super('TransferFailed', message, leader);
  }
}

/** A call whose AbortSignal fired before it settled. A RuntimeError (code 'Aborted', never
 *  retryable) named 'AbortError', so both `instanceof RuntimeError` and the platform's
 *  `err.name === 'AbortError'` check recognise it; `cause` is the signal's reason. */
export class AbortError extends RuntimeError {
  declare readonly code: 'Aborted';
  constructor(message: string, reason?: unknown) {
    super('Aborted', message, '', reason === undefined ? undefined : { cause: reason });
  }
}

/** An error as it crosses a thread or the network (a shard's reply, a peer's reply): what a
 *  RuntimeError is rebuilt from on the other side. */
export interface ErrorWire {
  readonly code: RuntimeErrorCode;
  readonly message: string;
  readonly leader: NodeId;
  readonly reason?: TransferFailReason;
}

/** Any thrown value as callers receive it: a RuntimeError stays one, anything else becomes
 *  InvalidArgument with its message. */
export function asRuntimeError(e: unknown): RuntimeError {
  return e instanceof RuntimeError
    ? e
    : new RuntimeError('InvalidArgument', e instanceof Error ? e.message : String(e));
}

/** The wire form of any thrown value. */
export function errorToWire(e: unknown): ErrorWire {
  const err = asRuntimeError(e);
  return {
    code: err.code,
    message: err.message,
    leader: err.leader,
    reason: err instanceof TransferError ? err.reason : undefined,
  };
}

/** The error a wire form stands for (a TransferError when it carries a reason). */
export function errorFromWire(w: ErrorWire): RuntimeError {
  return w.reason ? new TransferError(w.reason, w.message, w.leader) : new RuntimeError(w.code, w.message, w.leader);
}

// Every code and every reason, exhaustive by type (one added above without a line here does not
// compile): checked against what a peer sends, and printed at 0 by the failure counters.
export const RUNTIME_ERROR_CODES: Readonly<Record<RuntimeErrorCode, true>> = {
  NotLeader: true,
  Timeout: true,
  Unavailable: true,
  Stopped: true,
  InvalidArgument: true,
  StorageFailed: true,
  Overloaded: true,
  TransferInProgress: true,
  ConfChangeInProgress: true,
  TransferFailed: true,
  Aborted: true,
  StateMachineError: true,
};

export const TRANSFER_FAIL_REASONS: Readonly<Record<TransferFailReason, true>> = {
  TargetNotMember: true,
  TargetIsLearner: true,
  TargetIsSelf: true,
  TargetUnhealthy: true,
  TargetLagging: true,
  TargetDraining: true,
  ConfChangeInProgress: true,
  NoQuorum: true,
  NoLeader: true,
  Timeout: true,
  Superseded: true,
  LeadershipLost: true,
  TargetRemoved: true,
  NotVerified: true,
  TargetNoQuorum: true,
  TargetNeedsSnapshot: true,
  TargetSlow: true,
  ClusterUnstable: true,
};
