// Types shared by the Raft core and its hosts: log entries, persisted state, the wire messages
// (a discriminated union on `type`) and the Ready batch a host drains after each step.
// Nothing in here does I/O; these are plain data so that hosts can encode them as they like.
import { FlotillaError } from '../errors.js';

/** Replica id. Node ids are short strings ("n1"); a group's replicas are identified by node id. */
export type NodeId = string;

export const NONE: NodeId = '';

export type EntryType = 'normal' | 'conf';

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  /** Opaque command bytes; for `conf` entries an encoded ConfChange (see confchange.ts). Empty = no-op. */
  readonly data: Uint8Array;
}

/** What must be durable before a vote or an append is acknowledged. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/** Group membership. Learners replicate but never vote, never count to quorum and never lead. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** State machine image produced by the host; opaque to the core. */
  readonly data: Uint8Array;
}

export type ConfChangeType = 'addVoter' | 'addLearner' | 'remove';

/** One-at-a-time membership change (docs/design.md, note 1, says why not joint consensus). */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

// ---------------------------------------------------------------------------------------------
// Messages. Every message names its group so that a host multiplexing thousands of groups over
// one connection can route it, and so that the core can reject a message meant for another group.

interface MsgBase {
  readonly group: number;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/** Leader -> follower: entries following (index, logTerm). An empty `entries` is a probe. */
export interface MsgApp extends MsgBase {
  readonly type: 'app';
  readonly index: number;
  readonly logTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

/** Follower -> leader. On success `index` is the last index now matching the leader. On reject,
 *  `index` echoes the probe index and (`hintIndex`, `hintTerm`) let the leader skip a whole term. */
export interface MsgAppResp extends MsgBase {
  readonly type: 'appResp';
  readonly index: number;
  readonly reject: boolean;
  readonly hintIndex: number;
  readonly hintTerm: number;
}

/** Leader -> follower keep-alive. `ctx` carries a ReadIndex round; `seq` a lease round;
 *  `quiesce` tells a caught-up follower it may stop its election clock. */
export interface MsgHeartbeat extends MsgBase {
  readonly type: 'hb';
  readonly commit: number;
  readonly ctx: string;
  readonly seq: number;
  readonly quiesce: boolean;
}

export interface MsgHeartbeatResp extends MsgBase {
  readonly type: 'hbResp';
  readonly ctx: string;
  readonly seq: number;
}

/** Candidate -> voter. `transfer` marks a campaign started by TimeoutNow: it may override
 *  leader stickiness (the voters know the old leader handed over on purpose). */
export interface MsgVote extends MsgBase {
  readonly type: 'vote' | 'preVote';
  readonly index: number;
  readonly logTerm: number;
  readonly transfer: boolean;
}

export interface MsgVoteResp extends MsgBase {
  readonly type: 'voteResp' | 'preVoteResp';
  readonly reject: boolean;
}

export interface MsgSnap extends MsgBase {
  readonly type: 'snap';
  readonly snapshot: Snapshot;
}

/** Leader -> transfer target: campaign now, skipping PreVote. */
export interface MsgTimeoutNow extends MsgBase {
  readonly type: 'timeoutNow';
}

/** Follower -> leader: the follower's host asked for a transfer; the leader performs it. */
export interface MsgTransferLeader extends MsgBase {
  readonly type: 'transferLeader';
  readonly target: NodeId;
}

/** Follower -> leader: linearizable read request; answered with the index to wait for. */
export interface MsgReadIndex extends MsgBase {
  readonly type: 'readIndex';
  readonly ctx: string;
}

export interface MsgReadIndexResp extends MsgBase {
  readonly type: 'readIndexResp';
  readonly ctx: string;
  /** 0 means the leader could not serve it (e.g. it lost leadership); the host retries. */
  readonly index: number;
}

export type Message =
  | MsgApp
  | MsgAppResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgVote
  | MsgVoteResp
  | MsgSnap
  | MsgTimeoutNow
  | MsgTransferLeader
  | MsgReadIndex
  | MsgReadIndexResp;

export type MessageType = Message['type'];

export const MESSAGE_TYPES: readonly MessageType[] = [
  'app',
  'appResp',
  'hb',
  'hbResp',
  'vote',
  'preVote',
  'voteResp',
  'preVoteResp',
  'snap',
  'timeoutNow',
  'transferLeader',
  'readIndex',
  'readIndexResp',
];

// ---------------------------------------------------------------------------------------------
// Roles and outcomes.

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly role: Role;
  readonly leader: NodeId;
  readonly term: number;
}

/** Why a proposal was not appended. The runtime decides whether to retry elsewhere. */
export type ProposalRejection =
  | { readonly reason: 'NotLeader'; readonly leader: NodeId }
  | { readonly reason: 'TransferInProgress'; readonly target: NodeId }
  | { readonly reason: 'ConfChangeInProgress' }
  | { readonly reason: 'TooLarge'; readonly limit: number }
  | { readonly reason: 'Overloaded'; readonly limit: number }
  | { readonly reason: 'InvalidConfChange'; readonly detail: string };

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | ({ readonly ok: false } & ProposalRejection);

export type TransferRejectReason =
  | 'NotLeader'
  | 'TargetIsSelf'
  | 'TargetNotMember'
  | 'TargetIsLearner'
  | 'ConfChangeInProgress';

export type TransferRequestResult =
  | { readonly ok: true; readonly started: boolean /* false: same target already in progress */ }
  | { readonly ok: false; readonly reason: TransferRejectReason; readonly leader: NodeId };

export type TransferAbortReason =
  | 'Timeout' // target did not take over within one election timeout
  | 'Superseded' // a transfer to another target replaced it
  | 'TargetRemoved' // target left the voter set mid-way
  | 'LeadershipLost'; // this node stepped down for another reason (higher term, check quorum)

/** Reported once per transfer in the Ready that follows its end. `ticks` is how long it took. */
export type TransferOutcome =
  | { readonly target: NodeId; readonly term: number; readonly ticks: number; readonly status: 'completed' }
  | {
      readonly target: NodeId;
      readonly term: number;
      readonly ticks: number;
      readonly status: 'aborted';
      readonly reason: TransferAbortReason;
    };

export interface ReadState {
  /** Apply up to this index, then the read is linearizable. */
  readonly index: number;
  readonly ctx: string;
}

export type ReadRequestResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'NotLeader' | 'LeaseNotHeld' | 'NoLeader'; readonly leader: NodeId };

/**
 * Everything the host must do after a step. Order of operations for the host:
 *  1. send `messages` (they do not depend on this batch being durable: leader appends per
 *     Raft thesis §10.2.1, heartbeats, a candidate's vote requests);
 *  2. persist `snapshot`, `entries` (replacing any conflicting suffix) and `hardState` atomically;
 *  3. send `messagesAfterPersist` (acknowledgements and votes, which promise durability);
 *  4. apply `committed` in order, serve `readStates` once applied >= their index;
 *  5. call `advance()`.
 */
export interface Ready {
  readonly group: number;
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly committed: readonly Entry[];
  readonly messages: readonly Message[];
  readonly messagesAfterPersist: readonly Message[];
  readonly readStates: readonly ReadState[];
  readonly transfers: readonly TransferOutcome[];
  /** Membership after applying the `conf` entries in `committed`; persist with the applied index. */
  readonly conf: ConfState | null;
  /** Reads answered by the leader on behalf of followers are in messages; this lists failed local reads. */
  readonly droppedReads: readonly string[];
  /** Whether step 2 must be durable before step 3 (etcd's MustSync): new entries, a snapshot, a
   *  new term or vote, or a membership change. When false the only change to persist is a higher
   *  commit index, which the host may write lazily (with its next durable write, or never: a
   *  replica that forgets how far it knew the log committed learns it again from the leader, and
   *  an applied index implies its entries were committed). */
  readonly mustSync: boolean;
}

/** A typed error for bad input: the core drops the message and counts the reason. */
export type RejectReason = 'WrongGroup' | 'NotAddressedToMe' | 'UnknownSender' | 'Malformed' | 'StaleTerm';

/** What went wrong, for callers that switch on RaftError.code. */
export type RaftErrorCode =
  /** An entry at or below the snapshot index was asked for: the log no longer holds it. */
  | 'Compacted'
  /** An entry, range or index beyond the last index was asked for. */
  | 'Unavailable'
  /** An append would leave a hole after the last index. */
  | 'Gap'
  /** The log would lose or rewrite a committed entry: a bug, or a host that broke the contract. */
  | 'Safety'
  /** An internal invariant does not hold (a bug in the core or a misuse of the Ready protocol). */
  | 'Invariant'
  /** A caller passed an argument out of range. */
  | 'InvalidArgument'
  /** A RaftConfig that cannot work (e.g. lease reads without CheckQuorum). */
  | 'InvalidConfig'
  /** Undecodable bytes: a conf change entry, or (in src/storage) a command or snapshot. */
  | 'Malformed'
  /** src/storage's log store, which implements Storage and so throws RaftErrors too: the group
   *  already exists, or does not. */
  | 'Exists'
  | 'UnknownGroup';

/** Thrown by the core and by Storage implementations; `name` is 'RaftError' (FlotillaError sets it). */
export class RaftError extends FlotillaError<RaftErrorCode> {}
