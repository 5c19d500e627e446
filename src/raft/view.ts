// RaftView: a read-only window onto one replica's protocol state, for tests, the simulator and
// debugging tools that need more than status() gives (log terms, vote rules, per-peer flow
// control). RaftNode.inspect() hands out the live state typed as this view: no copy, so it is
// cheap enough to consult after every step, and no way to change anything. Hosts drive a replica
// through RaftNode and learn what changed from its Readies; they need none of this.
import type { Tuning } from './config.js';
import type { RaftLog } from './log.js';
import type { Progress } from './progress.js';
import type { ConfState, NodeId, RejectReason, Role } from './types.js';

/** The leader's view of one peer (see Progress). */
export type ProgressView = Readonly<
  Pick<
    Progress,
    | 'id'
    | 'match'
    | 'next'
    | 'state'
    | 'recentActive'
    | 'unreachable'
    | 'probeSent'
    | 'isLearner'
    | 'inflightCount'
    | 'isPaused'
  >
>;

/** The replica's log: durable part and unstable tail together (see RaftLog). */
export type LogView = Readonly<
  Pick<RaftLog, 'committed' | 'applied' | 'firstIndex' | 'lastIndex' | 'lastTerm' | 'termOf' | 'isUpToDate'>
>;

/** Membership and, while leading, per-peer progress (see Tracker). */
export interface TrackerView {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Empty unless leading. */
  readonly progress: readonly ProgressView[];
  isVoter(id: NodeId): boolean;
  isMember(id: NodeId): boolean;
  progressOf(id: NodeId): ProgressView | undefined;
  conf(): ConfState;
}

export interface RaftView {
  readonly id: NodeId;
  readonly group: number;
  readonly cfg: Tuning;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly quiesced: boolean;
  /** Ticks since the election clock last restarted, and the randomized timeout it runs to. */
  readonly electionElapsed: number;
  readonly randomizedTimeout: number;
  /** The leader transfer in progress, if any. */
  readonly transfer: { readonly target: NodeId } | null;
  /** Rejected inputs by reason. */
  readonly rejected: Readonly<Record<RejectReason, number>>;
  readonly log: LogView;
  readonly tracker: TrackerView;
}
