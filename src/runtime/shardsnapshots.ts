// ShardSnapshots: a shard's snapshot streams, both ways (protocol: docs/snapshots.md). The Raft
// core's `snap` message leaves with the metadata only: a leader's shard holds it, streams the
// group's state to the follower's shard in chunks (storage/snapstream.ts) and lets the message go
// once the follower has staged and verified every byte. The follower's shard steps a `snap`
// message into its core only when the matching staged snapshot is there, and installs it from
// the staging file when the core hands the snapshot back in a Ready. Chunks are bulk traffic
// (the transport sends them only behind Raft messages); acknowledgements are ordinary traffic.
import type { Logger } from 'pino';
import type { MsgSnap, NodeId, Snapshot, SnapshotMeta } from '../raft/types.js';
import {
  SnapshotSender,
  SnapshotStager,
  decodeSnapFrame,
  encodeSnapFrame,
  sameSnapshot,
  type SnapFrame,
  type SnapshotId,
  type SnapshotStreamLimits,
  type StagedSnapshot,
} from '../storage/snapstream.js';
import type { PreparedRestore } from '../storage/kv.js';
import { RuntimeError } from './errors.js';
import type { Group } from './group.js';
import type { ShardStateMachine } from './statemachine.js';

/** Counters of a shard's snapshot streams (reported in its status and as metrics). */
export interface SnapshotStreamStats {
  /** Streams this shard sent to the end, and that failed (the leader retries those). */
  sent: number;
  sendFailed: number;
  /** Streams received whole and verified; snapshots installed from them. */
  received: number;
  installed: number;
  /** Data bytes sent and received (resent chunks counted again). */
  bytesSent: number;
  bytesReceived: number;
  chunksResent: number;
  /** Frames or streams refused (bad CRC, totals that differ, staging I/O), and `snap` messages
   *  dropped because their data had not been staged. */
  refused: number;
  unstaged: number;
  /** Streams going out now, and waiting for a slot. */
  sending: number;
  queued: number;
  /** Streams being staged now. */
  receiving: number;
}

/** What the shard gives its snapshot streams. */
export interface SnapshotAccess {
  readonly sm: ShardStateMachine;
  readonly log: Logger;
  group(id: number): Group | undefined;
  /** The metadata of a snapshot of `group` at `index` (its term, the membership). */
  metaAt(group: number, index: number): SnapshotMeta;
  /** A stream frame for the shard of `to` that hosts `group`; `bulk` for chunks. */
  sendFrame(to: NodeId, group: number, frame: Uint8Array, bulk: boolean): void;
  /** Raft messages for `to` (the held `snap` message, once its data is there). */
  sendRaft(to: NodeId, msgs: MsgSnap[]): void;
  /** The group has something to do (reportSnapshot was called). */
  touch(g: Group): void;
  /** The liveness layer reports `peer` down: resending to it would only fill the link's queue. */
  isDown(peer: NodeId): boolean;
}

interface Outgoing {
  msg: MsgSnap;
  readonly sender: SnapshotSender;
}

/** A complete staging being decoded ahead of its install, a slice per event-loop turn (job
 *  null: the state machine does not decode this group ahead; it is installed by restoreStream). */
interface Preparing {
  readonly id: SnapshotId;
  readonly from: NodeId;
  readonly pieces: Generator<Uint8Array>;
  readonly job: PreparedRestore | null;
  done: boolean;
}

/** A staged snapshot whose `snap` message was stepped, with its decoding (if prepared). */
interface Claimed {
  readonly staged: StagedSnapshot;
  readonly job: PreparedRestore | null;
}

/** Image bytes decoded per slice while preparing (a few ms of the shard's thread). */
const PREPARE_SLICE_BYTES = 4 * 1024 * 1024;

const EMPTY = new Uint8Array(0);

function idOf(m: MsgSnap): SnapshotId {
  return { group: m.group, index: m.snapshot.meta.index, term: m.snapshot.meta.term };
}

export class ShardSnapshots {
  private readonly out = new Map<string, Outgoing>();
  /** Held `snap` messages waiting for a sending slot, by follower and group. */
  private readonly waiting = new Map<string, MsgSnap>();
  private readonly stager: SnapshotStager;
  /** Staged snapshots whose `snap` message was stepped, by group: installed from here. */
  private readonly claimed = new Map<number, Claimed>();
  /** Complete stagings being decoded ahead, by group (with a state machine that can). */
  private readonly preparing = new Map<number, Preparing>();
  private prepareScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly counts = {
    sent: 0,
    sendFailed: 0,
    received: 0,
    installed: 0,
    bytesSent: 0,
    bytesReceived: 0,
    chunksResent: 0,
    refused: 0,
    unstaged: 0,
  };

  constructor(
    private readonly access: SnapshotAccess,
    private readonly limits: SnapshotStreamLimits,
    stageDir: string,
  ) {
    // With a state machine that decodes ahead, a stream is answered 'done' only once decoded.
    this.stager = new SnapshotStager(stageDir, limits.giveUpMs, access.sm.prepareRestore !== undefined);
  }

  get stats(): SnapshotStreamStats {
    return {
      ...this.counts,
      sending: this.out.size,
      queued: this.waiting.size,
      receiving: this.stager.inProgress,
    };
  }

  // --- sending -----------------------------------------------------------------------------------

  /** A leader's outgoing `snap` message (metadata only): held until its data has streamed. One
   *  stream per follower and group at a time: a newer message for a stream under way is dropped
   *  (the stream carries a committed state; the follower catches up from it). */
  hold(m: MsgSnap): void {
    if (this.closed) return;
    const key = `${m.to}/${m.group}`;
    const o = this.out.get(key);
    if (o) {
      if (sameSnapshot(o.sender.id, idOf(m))) o.msg = m;
      return;
    }
    this.waiting.set(key, m);
    this.startWaiting();
  }

  private startWaiting(): void {
    for (const [key, m] of this.waiting) {
      if (this.out.size >= this.limits.maxOutgoing) return;
      this.waiting.delete(key);
      this.start(key, m);
    }
  }

  /** Open the group's state now and stream it. The message is re-dated to the index the state
   *  is read at (a held message may have waited while more was applied): any committed state is
   *  a valid snapshot for the follower. */
  private start(key: string, m: MsgSnap): void {
    const g = this.access.group(m.group);
    if (!g) return;
    const { index, reader } = this.access.sm.openSnapshot(m.group);
    const meta = index === m.snapshot.meta.index ? m.snapshot.meta : this.access.metaAt(m.group, index);
    const msg: MsgSnap = { ...m, snapshot: { meta, data: EMPTY } };
    const now = performance.now();
    const sender = new SnapshotSender(idOf(msg), reader, this.limits, now);
    this.out.set(key, { msg, sender });
    this.access.log.info({ group: m.group, to: m.to, index }, 'snapshot stream started');
    this.sendChunks(msg.to, msg.group, sender.pump(now));
    this.armTimer();
  }

  private sendChunks(to: NodeId, group: number, frames: Uint8Array[]): void {
    for (const f of frames) this.access.sendFrame(to, group, f, true);
  }

  private finish(key: string, o: Outgoing, ok: boolean, reason: string): void {
    this.out.delete(key);
    o.sender.close();
    const { msg, sender } = o;
    this.counts.bytesSent += sender.stats.bytes;
    this.counts.chunksResent += sender.stats.resent;
    if (ok) {
      this.counts.sent++;
      this.access.sendRaft(msg.to, [msg]);
      this.access.log.info(
        { group: msg.group, to: msg.to, index: msg.snapshot.meta.index, bytes: sender.stats.bytes },
        'snapshot stream done',
      );
    } else {
      this.counts.sendFailed++;
      this.access.log.warn({ group: msg.group, to: msg.to, reason }, 'snapshot stream failed');
    }
    const g = this.access.group(msg.group);
    if (g) {
      g.node.reportSnapshot(msg.to, ok);
      this.access.touch(g);
    }
    this.startWaiting();
  }

  // --- receiving -----------------------------------------------------------------------------------

  /** A stream frame from node `from`. */
  onFrame(from: NodeId, bytes: Uint8Array): void {
    if (this.closed) return;
    let f: SnapFrame;
    try {
      f = decodeSnapFrame(bytes);
    } catch (e) {
      this.counts.refused++;
      this.access.log.warn({ err: e, from }, 'snapshot frame refused');
      return;
    }
    if (f.kind === 'ack') {
      this.onAck(from, f);
      return;
    }
    const now = performance.now();
    if (!this.access.group(f.id.group)) {
      const ack = encodeSnapFrame({ kind: 'ack', id: f.id, next: 0, status: 'refused' });
      this.access.sendFrame(from, f.id.group, ack, false);
      return;
    }
    const step = this.stager.onChunk(f, now);
    this.armTimer();
    this.access.sendFrame(from, f.id.group, step.ack, false);
    if (step.error) {
      this.counts.refused++;
      this.access.log.warn({ err: step.error, from, group: f.id.group, seq: f.seq }, 'snapshot chunk refused');
    }
    if (step.completed) {
      this.counts.received++;
      const st = this.stager.staged(f.id.group);
      this.counts.bytesReceived += st?.bytes ?? 0;
      this.startPreparing(from, f.id);
    }
  }

  /** Decode a complete staging ahead of its install, a slice per turn; answer 'done' after. */
  private startPreparing(from: NodeId, id: SnapshotId): void {
    const prepare = this.access.sm.prepareRestore;
    const staged = this.stager.completed(id);
    if (!prepare || !staged) return;
    this.abandon(id.group);
    const pieces = staged.chunks();
    const job = prepare.call(this.access.sm, id.group, id.index, pieces);
    this.preparing.set(id.group, { id, from, pieces, job, done: job === null });
    if (job !== null) {
      this.schedulePrepare();
      return;
    }
    // Nothing to decode ahead: it may be taken now (and installed by restoreStream).
    const ack = this.stager.ready(id, performance.now());
    if (ack) this.access.sendFrame(from, id.group, ack, false);
    else this.abandon(id.group);
  }

  private schedulePrepare(): void {
    if (this.prepareScheduled || this.closed) return;
    this.prepareScheduled = true;
    setImmediate(() => {
      this.prepareScheduled = false;
      if (this.closed) return;
      let more = false;
      for (const p of [...this.preparing.values()]) {
        if (p.done || p.job === null) continue;
        try {
          if (!p.job.step(PREPARE_SLICE_BYTES)) {
            more = true;
            continue;
          }
        } catch (e) {
          this.counts.refused++;
          this.access.log.warn({ err: e, group: p.id.group, index: p.id.index }, 'staged snapshot refused');
          this.abandon(p.id.group);
          this.stager.drop(p.id.group);
          continue;
        }
        p.done = true;
        const ack = this.stager.ready(p.id, performance.now());
        if (ack) this.access.sendFrame(p.from, p.id.group, ack, false);
        else this.abandon(p.id.group); // replaced or expired meanwhile
      }
      if (more) this.schedulePrepare();
    });
  }

  /** Stop decoding the group's staging (its file is closed). */
  private abandon(group: number): void {
    const p = this.preparing.get(group);
    if (!p) return;
    this.preparing.delete(group);
    p.pieces.return(undefined);
    p.job?.discard();
  }

  private onAck(from: NodeId, a: Extract<SnapFrame, { kind: 'ack' }>): void {
    const key = `${from}/${a.id.group}`;
    const o = this.out.get(key);
    if (!o || !sameSnapshot(o.sender.id, a.id)) return; // a stream that ended already
    const step = o.sender.onAck(a, performance.now());
    this.sendChunks(from, a.id.group, step.frames);
    if (step.outcome) this.finish(key, o, step.outcome === 'done', step.reason);
  }

  /** Whether a received `snap` message may be stepped: its data must be staged whole (then it is
   *  kept for install), or travel inline (a host without streams). */
  admit(m: MsgSnap): boolean {
    if (m.snapshot.data.byteLength > 0) return true;
    const id = idOf(m);
    const held = this.claimed.get(m.group);
    if (held && sameSnapshot(held.staged.id, id)) return true;
    const p = this.preparing.get(m.group);
    const prepared = p?.done && sameSnapshot(p.id, id) ? p : null;
    const staged = this.access.sm.prepareRestore && !prepared ? null : this.stager.take(id);
    if (!staged) {
      this.counts.unstaged++;
      return false;
    }
    if (prepared) this.preparing.delete(m.group);
    held?.staged.remove();
    held?.job?.discard();
    this.claimed.set(m.group, { staged, job: prepared?.job ?? null });
    this.armTimer();
    return true;
  }

  /** Install the snapshot the core handed back in a Ready: from its staging file (verified again
   *  as it is read), or inline. */
  install(group: number, s: Snapshot): void {
    if (s.data.byteLength > 0) {
      this.access.sm.restore(group, s);
      return;
    }
    const c = this.claimed.get(group);
    if (!c || c.staged.id.index !== s.meta.index || c.staged.id.term !== s.meta.term)
      throw new RuntimeError('StorageFailed', `snapshot of group ${group} at ${s.meta.index} has no staged data`);
    this.claimed.delete(group);
    try {
      if (c.job) c.job.apply();
      else this.access.sm.restoreStream(group, s.meta, c.staged.chunks());
    } finally {
      c.staged.remove();
    }
    this.counts.installed++;
  }

  // --- housekeeping --------------------------------------------------------------------------------

  private armTimer(): void {
    if (this.timer !== null || this.closed) return;
    const every = Math.max(10, Math.min(500, this.limits.ackTimeoutMs >>> 2));
    this.timer = setInterval(() => this.onTimer(), every);
    this.timer.unref();
  }

  private onTimer(): void {
    const now = performance.now();
    for (const [key, o] of [...this.out]) {
      // A peer reported down gets no resends (they would wait in its queue); the stream fails
      // after giveUpMs unless the peer comes back and acknowledges.
      const step = this.access.isDown(o.msg.to) ? o.sender.onTimer(now, false) : o.sender.onTimer(now);
      this.sendChunks(o.msg.to, o.msg.group, step.frames);
      if (step.outcome) this.finish(key, o, step.outcome === 'done', step.reason);
    }
    this.stager.expire(now);
    // A claimed staging the core did not take (it had committed that far already): the core
    // takes a snapshot only above its commit index, so applied stays below the snapshot's index
    // until the install; once applied reaches it, the staging is of no use.
    for (const [group, c] of [...this.claimed]) {
      const g = this.access.group(group);
      if (g && g.applied < c.staged.id.index) continue;
      c.staged.remove();
      c.job?.discard();
      this.claimed.delete(group);
    }
    // Decoded stagings that expired before their `snap` message came.
    for (const [group, p] of [...this.preparing])
      if (p.done && this.stager.staged(group)?.id.index !== p.id.index) this.abandon(group);
    if (
      this.out.size === 0 &&
      this.stager.size === 0 &&
      this.claimed.size === 0 &&
      this.preparing.size === 0 &&
      this.timer !== null
    ) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** The group left this shard: its streams and stagings go. */
  dropGroup(group: number): void {
    for (const [key, o] of [...this.out]) {
      if (o.msg.group !== group) continue;
      this.out.delete(key);
      o.sender.close();
    }
    for (const [key, m] of [...this.waiting]) if (m.group === group) this.waiting.delete(key);
    this.abandon(group);
    this.stager.drop(group);
    this.claimed.get(group)?.staged.remove();
    this.claimed.get(group)?.job?.discard();
    this.claimed.delete(group);
    this.startWaiting();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const o of this.out.values()) o.sender.close();
    this.out.clear();
    this.waiting.clear();
    for (const g of [...this.preparing.keys()]) this.abandon(g);
    this.stager.close();
    for (const c of this.claimed.values()) {
      c.staged.remove();
      c.job?.discard();
    }
    this.claimed.clear();
  }
}
