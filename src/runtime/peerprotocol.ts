// The node-to-node application protocol: what nodes say to each other beside Raft traffic
// (forwarded proposals and reads, the steps of a leader transfer, membership and group changes,
// summaries, pings) and how this node answers. Requests carry an id and get exactly one `reply`,
// which the asker's Forwarder waits for; notices get none.
//
// Every payload is checked against its kind's shape before a handler sees it. A peer of another
// version, or a bug, can send anything: that must cost one message, logged and counted, never an
// exception in the transport's receive path or a handler acting on half-valid fields. A bad
// request still gets its InvalidArgument reply when it has an id, so the asker fails at once
// instead of waiting out its deadline.
//
// Payload keys are words, except on the hot path: a forwarded proposal or read crosses the wire
// once per client request, so its few keys are short. Every key that is not a word:
//
//   kind  key  meaning
//   fwd   d    the proposal's entry data (a session-encoded command)
//   fwd   to   how long the asker waits for this attempt, ms (other requests: `timeoutMs`)
//   rd    q    the state machine query
//   rd    c    its consistency ('linearizable', 'lease' or 'stale')
//   rd    to   as in fwd
//   any   id   the request's id, repeated by its `reply`
import type { Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import type { NodeSummary } from '../balancer/balancer.js';
import type { Envelope } from '../transport/index.js';
import {
  errorToWire,
  RUNTIME_ERROR_CODES,
  RuntimeError,
  TRANSFER_FAIL_REASONS,
  type RuntimeErrorCode,
  type TransferFailReason,
} from './errors.js';
import type { FwdReply } from './forwarder.js';
import type { Leadership } from './leadership.js';
import type { Membership } from './membership.js';
import {
  PLANNED_CAUSES,
  type CallReply,
  type CallRequest,
  type Consistency,
  type GroupCall,
  type MemberChange,
  type PlannedCause,
} from './protocol.js';

/** Requests, as the asker sends them. `to` and `timeoutMs`: how long the asker waits for this
 *  attempt, ms (see the table above). */
export type Requests = {
  fwd: { group: number; d: Uint8Array; to: number };
  rd: { group: number; q: unknown; c: Consistency; to: number };
  /** Hand leadership over, asked of the group's leader (see Leadership.handOver). */
  transfer: {
    group: number;
    target: NodeId;
    timeoutMs: number;
    maxLagEntries: number;
    draining: NodeId[];
    cause: PlannedCause;
    force: boolean;
  };
  verify: { group: number; timeoutMs: number };
  awaitLead: { group: number; timeoutMs: number; cause: PlannedCause };
  member: { group: number; change: MemberChange; node: NodeId; timeoutMs: number };
  gjoin: { group: number };
  gdrop: { group: number };
  gcreate: { group: number; replicas: NodeId[] };
  gremove: { group: number };
  /** This node's replica's configuration of the group (a GroupConf; an error where it holds
   *  none), for a node whose map missed a change of it. */
  conf: { group: number };
  /** The groups this node's shards hold a replica of (`group` is always 0), for the mover
   *  before it marks a decommissioned node removed. Answers the group ids. */
  hosted: { group: number };
  /** Every group's replicas as this node knows them, for a node that just joined (`group` is
   *  always 0: the directory belongs to the metadata group). Answers [group, replicas][]. */
  dir: { group: number };
};
export type RequestKind = keyof Requests;

/** Notices: one-way. */
export type Notices = {
  hello: { workers: number; timing?: PeerTiming };
  ping: { at: number };
  pong: { at: number };
  summary: NodeSummary & { reach?: readonly NodeId[] };
  /** `index`: the configuration's log index (0 from a peer that does not say: taken as before). */
  gconf: { group: number; voters: NodeId[]; learners: NodeId[]; index: number };
  drainState: { draining: boolean };
  /** The cluster record in group 0 changed (now at `version`): read it. */
  meta: { version: number };
  reply: FwdReply;
};
export type NoticeKind = keyof Notices;

export interface PeerTiming {
  readonly electionMs: number;
  readonly heartbeatMs: number;
}

/** The envelope of a notice. */
export function notice<K extends NoticeKind>(t: K, p: Notices[K]): Envelope {
  return { k: 'app', t, p };
}

/** A request as its handler sees it: the deadline is already turned into the attempt's `ms`. */
type Served<K extends RequestKind> = Omit<Requests[K], 'to' | 'timeoutMs'> & { readonly group: number };
type Raw = Record<string, unknown>;

const isInt = (x: unknown): x is number => Number.isInteger(x);
/** Group 0 is the metadata group (design note 8): forwarded reads and writes reach it too. */
const isGroup = (x: unknown): x is number => isInt(x) && x >= 0 && x <= 0xffffffff;
const isString = (x: unknown): x is string => typeof x === 'string';
const isNumber = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
/** The strings of a list (anything else in it dropped), or none. */
const strings = (x: unknown): string[] => (Array.isArray(x) ? x.filter(isString) : []);
const isPlannedCause = (x: unknown): x is PlannedCause => isString(x) && PLANNED_CAUSES.includes(x);
const plannedCause = (x: unknown): PlannedCause => (isPlannedCause(x) ? x : 'transfer');
const groupOnly = (p: Raw) => (isGroup(p.group) ? { group: p.group } : undefined);

/** Per request kind: its payload, or undefined when it is not one. */
const REQUESTS: { [K in RequestKind]: (p: Raw) => Served<K> | undefined } = {
  fwd: (p) => (isGroup(p.group) && p.d instanceof Uint8Array ? { group: p.group, d: p.d } : undefined),
  rd: (p) =>
    isGroup(p.group)
      ? { group: p.group, q: p.q, c: p.c === 'stale' ? 'stale' : p.c === 'lease' ? 'lease' : 'linearizable' }
      : undefined,
  transfer: (p) =>
    isGroup(p.group) && isString(p.target)
      ? {
          group: p.group,
          target: p.target,
          maxLagEntries: Number(p.maxLagEntries) || 10_000,
          draining: strings(p.draining),
          cause: plannedCause(p.cause),
          force: p.force === true,
        }
      : undefined,
  verify: groupOnly,
  awaitLead: (p) => (isGroup(p.group) ? { group: p.group, cause: plannedCause(p.cause) } : undefined),
  member: (p) =>
    isGroup(p.group) &&
    (p.change === 'addVoter' || p.change === 'addLearner' || p.change === 'remove') &&
    isString(p.node)
      ? { group: p.group, change: p.change, node: p.node }
      : undefined,
  gjoin: groupOnly,
  gdrop: groupOnly,
  conf: groupOnly,
  hosted: groupOnly,
  gcreate: (p) =>
    isGroup(p.group) && Array.isArray(p.replicas) && p.replicas.every(isString)
      ? { group: p.group, replicas: p.replicas }
      : undefined,
  gremove: groupOnly,
  dir: groupOnly,
};

const isRequestKind = (t: string): t is RequestKind => Object.hasOwn(REQUESTS, t);

/** How long the asker said it waits for this attempt (unchecked). */
const askedMs = (t: RequestKind, p: Raw): unknown => (t === 'fwd' || t === 'rd' ? p.to : p.timeoutMs);

/** Requests about a group that only one of its replicas can serve: elsewhere they are answered
 *  NotLeader with this node's leader hint, and the asker retries there. */
const REPLICA_ONLY: ReadonlySet<RequestKind> = new Set<RequestKind>(['fwd', 'rd', 'transfer', 'verify', 'member']);

const isCode = (x: unknown): x is RuntimeErrorCode => isString(x) && Object.hasOwn(RUNTIME_ERROR_CODES, x);
const isReason = (x: unknown): x is TransferFailReason => isString(x) && Object.hasOwn(TRANSFER_FAIL_REASONS, x);

function reply(p: Raw): FwdReply | undefined {
  if (!isNumber(p.id)) return undefined;
  if (p.ok === true) return { id: p.id, ok: true, result: p.result };
  if (p.ok !== false || !isCode(p.code) || !isString(p.message) || !(p.reason === undefined || isReason(p.reason)))
    return undefined;
  return {
    id: p.id,
    ok: false,
    code: p.code,
    message: p.message,
    leader: isString(p.leader) ? p.leader : '',
    reason: p.reason,
  };
}

/** A peer's summary with every field it may carry checked (a bad optional field is dropped). */
function summary(p: Raw): Notices['summary'] | undefined {
  if (typeof p.leaders !== 'number' || typeof p.uptimeMs !== 'number') return undefined;
  const labels = typeof p.labels === 'object' && p.labels !== null ? (p.labels as Raw) : undefined;
  return {
    leaders: p.leaders,
    draining: p.draining === true,
    uptimeMs: p.uptimeMs,
    load: isNumber(p.load) ? p.load : undefined,
    labels: labels && {
      ...(isString(labels.zone) ? { zone: labels.zone } : {}),
      ...(isString(labels.rack) ? { rack: labels.rack } : {}),
    },
    fsyncP99Ms: isNumber(p.fsyncP99Ms) ? p.fsyncP99Ms : null,
    cpu: isNumber(p.cpu) ? p.cpu : null,
    madeAt: isNumber(p.madeAt) ? p.madeAt : undefined,
    slow: p.slow === true,
    reach: Array.isArray(p.reach) ? strings(p.reach) : undefined,
  };
}

/** Per notice kind: its payload, or undefined when it is not one. */
const NOTICES: { [K in NoticeKind]: (p: Raw) => Notices[K] | undefined } = {
  hello: (p) => {
    if (!(isInt(p.workers) && p.workers >= 1 && p.workers <= 1024)) return undefined;
    const t = typeof p.timing === 'object' && p.timing !== null ? (p.timing as Raw) : {};
    return {
      workers: p.workers,
      timing:
        typeof t.electionMs === 'number' && typeof t.heartbeatMs === 'number'
          ? { electionMs: t.electionMs, heartbeatMs: t.heartbeatMs }
          : undefined,
    };
  },
  ping: (p) => (typeof p.at === 'number' ? { at: p.at } : undefined),
  pong: (p) => (typeof p.at === 'number' ? { at: p.at } : undefined),
  summary,
  gconf: (p) =>
    isGroup(p.group)
      ? {
          group: p.group,
          voters: strings(p.voters),
          learners: strings(p.learners),
          index: isInt(p.index) && p.index >= 0 ? p.index : 0,
        }
      : undefined,
  drainState: (p) => ({ draining: p.draining === true }),
  meta: (p) => (isInt(p.version) && p.version >= 0 ? { version: p.version } : undefined),
  reply,
};
const isNoticeKind = (t: string): t is NoticeKind => Object.hasOwn(NOTICES, t);

/** What the protocol needs of its node. */
export interface PeerProtocolHost {
  readonly id: NodeId;
  readonly log: Logger;
  /** A served request waits this long when the asker gave no deadline, and never longer than timeoutMs. */
  readonly attemptMs: number;
  readonly timeoutMs: number;
  /** Counts the messages dropped as malformed or of an unknown kind. */
  readonly stats: { dropsBadMessage: number };
  send(to: NodeId, e: Envelope): void;
  /** Whether this node holds a replica of `group` (InvalidArgument for an unknown group). */
  isLocal(group: number): boolean;
  leaderOf(group: number): NodeId | undefined;
  /** Take a proposal of `bytes`, made on `origin`, into the node's pending budget (or throw
   *  Overloaded); call to release. */
  admit(bytes: number, origin: NodeId): () => void;
  /** A client request from `origin` to the group's local replica. */
  serve<K extends 'propose' | 'read'>(
    group: number,
    origin: NodeId,
    kind: K,
    req: CallRequest<K>,
  ): Promise<CallReply<K>>;
  /** Any other request to the shard that hosts `group`. */
  readonly shard: GroupCall;
  peerWorkers(from: NodeId, workers: number): void;
  onSummary(from: NodeId, s: NodeSummary): void;
  onReply(from: NodeId, r: FwdReply): void;
  readonly leadership: Pick<
    Leadership,
    'notePlanned' | 'handOver' | 'notePeerTiming' | 'noteRtt' | 'noteView' | 'notePeerDraining'
  >;
  readonly membership: Pick<Membership, 'onConf' | 'applyCreate' | 'applyRemove' | 'entries'>;
  /** The groups this node's shards hold a replica of (their own word, not the map's). */
  hosted(): Promise<number[]>;
  /** A peer says the cluster record changed. */
  onMeta(from: NodeId, version: number): void;
}

type RequestHandlers = { [K in RequestKind]: (from: NodeId, m: Served<K>, ms: number) => Promise<unknown> };
type NoticeHandlers = { [K in NoticeKind]: (from: NodeId, m: Notices[K]) => void };

export class PeerProtocol {
  private readonly requests: RequestHandlers;
  private readonly notices: NoticeHandlers;

  constructor(private readonly host: PeerProtocolHost) {
    const h = host;
    this.requests = {
      fwd: (from, m, ms) => {
        const release = h.admit(m.d.byteLength, from);
        return h.serve(m.group, from, 'propose', { group: m.group, data: m.d, timeoutMs: ms }).finally(release);
      },
      rd: (from, m, ms) =>
        h.serve(m.group, from, 'read', { group: m.group, query: m.q, consistency: m.c, timeoutMs: ms }),
      transfer: (_from, m, ms) => {
        h.leadership.notePlanned(m.group, m.cause, ms);
        return h.leadership.handOver(m.group, m.target, ms, m.maxLagEntries, m.draining, m.force, m.cause);
      },
      verify: (_from, m, ms) => h.shard(m.group, 'verify', { group: m.group, timeoutMs: ms }),
      awaitLead: (_from, m, ms) => {
        if (!h.isLocal(m.group))
          throw new RuntimeError('InvalidArgument', `${h.id} holds no replica of group ${m.group}`);
        h.leadership.notePlanned(m.group, m.cause, ms);
        return h.shard(m.group, 'awaitLead', { group: m.group, timeoutMs: ms });
      },
      member: (_from, m, ms) =>
        h.shard(m.group, 'member', { group: m.group, change: m.change, node: m.node, timeoutMs: ms }),
      gjoin: (_from, m) => h.shard(m.group, 'create', { group: m.group, voters: [] }),
      gdrop: (_from, m) => h.shard(m.group, 'remove', { group: m.group }),
      conf: (_from, m) => h.shard(m.group, 'conf', { group: m.group }),
      gcreate: (_from, m) => h.membership.applyCreate(m.group, m.replicas).then(() => null),
      gremove: (_from, m) => h.membership.applyRemove(m.group).then(() => null),
      dir: async () => [...h.membership.entries()],
      hosted: () => h.hosted(),
    };
    this.notices = {
      hello: (from, m) => {
        h.peerWorkers(from, m.workers);
        if (m.timing) h.leadership.notePeerTiming(from, m.timing);
      },
      ping: (from, m) => h.send(from, notice('pong', { at: m.at })),
      pong: (_from, m) => {
        const rtt = performance.now() - m.at;
        if (Number.isFinite(rtt) && rtt >= 0 && rtt < 60_000) h.leadership.noteRtt(rtt);
      },
      summary: (from, m) => {
        const { reach, ...sum } = m;
        h.leadership.noteView(from, {
          reach: reach ? [...reach] : null,
          fsyncP99Ms: sum.fsyncP99Ms ?? null,
          cpu: sum.cpu ?? null,
          at: Date.now(),
        });
        h.onSummary(from, sum);
      },
      gconf: (_from, m) => h.membership.onConf(m.group, m.voters, m.learners, false, m.index),
      drainState: (from, m) => h.leadership.notePeerDraining(from, m.draining),
      meta: (from, m) => h.onMeta(from, m.version),
      reply: (from, m) => h.onReply(from, m),
    };
  }

  /** An application envelope of kind `t` from `from`. Never throws. */
  onMessage(from: NodeId, t: string, p: unknown): void {
    const raw = typeof p === 'object' && p !== null ? (p as Raw) : null;
    if (isRequestKind(t)) this.request(from, t, raw);
    else if (isNoticeKind(t)) this.notice(from, t, raw);
    else this.drop(from, t, 'unknown application envelope dropped');
  }

  private notice<K extends NoticeKind>(from: NodeId, t: K, raw: Raw | null): void {
    const m = raw && NOTICES[t](raw);
    if (m) this.notices[t](from, m);
    else this.drop(from, t, `bad ${t} from peer dropped`);
  }

  private request<K extends RequestKind>(from: NodeId, t: K, raw: Raw | null): void {
    const id = raw?.id;
    if (!raw || !isNumber(id)) {
      this.drop(from, t, `${t} request without an id dropped`);
      return;
    }
    const answer = (r: FwdReply) => this.host.send(from, notice('reply', r));
    const fail = (e: unknown) => answer({ id, ok: false, ...errorToWire(e) });
    const m = REQUESTS[t](raw);
    if (!m) {
      this.drop(from, t, `bad ${t} request from peer refused`);
      fail(new RuntimeError('InvalidArgument', `bad ${t} request`));
      return;
    }
    const ms = Math.min(Math.max(1, Number(askedMs(t, raw)) || this.host.attemptMs), this.host.timeoutMs);
    let pr: Promise<unknown>;
    try {
      if (REPLICA_ONLY.has(t) && !this.host.isLocal(m.group))
        throw new RuntimeError('NotLeader', 'not a replica', this.host.leaderOf(m.group) ?? '');
      pr = this.requests[t](from, m, ms);
    } catch (e) {
      pr = Promise.reject(e);
    }
    pr.then((result) => answer({ id, ok: true, result }), fail);
  }

  private drop(from: NodeId, t: string, msg: string): void {
    this.host.stats.dropsBadMessage++;
    this.host.log.warn({ from, t, dropped: this.host.stats.dropsBadMessage }, msg);
  }
}
