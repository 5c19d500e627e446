// Forwarder: requests this node sends to another node (a proposal or read for a group led there,
// a transfer, a membership change, ...) and their replies. Each waits under an id; replies settle
// them; a node going down fails its requests at once (retryable elsewhere); deadlines are swept
// every SWEEP_MS while any request is out, not a timer per request (thousands per second under
// load), and no timer at all on an idle node.
import type { NodeId } from '../raft/types.js';
import type { Envelope } from '../transport/index.js';
import { errorFromWire, RuntimeError, type RuntimeErrorCode, type TransferFailReason } from './errors.js';

/** How often forwarded requests are checked against their deadlines. */
const SWEEP_MS = 50;

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  /** performance.now() after which it fails with Timeout. */
  readonly deadline: number;
  /** The request kind, for the error message. */
  readonly kind: string;
  /** The node asked: if it goes down, the request fails at once (retryable) instead of at its timeout. */
  readonly target: NodeId;
}

/** The body of a `reply` envelope. */
export type FwdReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; code: RuntimeErrorCode; message: string; leader: NodeId; reason?: TransferFailReason };

export interface ForwarderHost {
  isConnected(peer: NodeId): boolean;
  /** Queue an envelope for `peer`; false when it cannot be sent. */
  send(peer: NodeId, e: Envelope): boolean;
}

export class Forwarder {
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;
  count = 0;

  constructor(private readonly host: ForwarderHost) {}

  /** Send request `kind` with `payload` to `target` and wait for its reply (or the deadline). */
  request(target: NodeId, kind: string, payload: object, timeoutMs: number): Promise<unknown> {
    // Nothing is sent to a node we know is down: fail fast (safe to retry elsewhere) instead of
    // queueing a request whose answer would only arrive, if ever, after the deadline.
    if (!this.host.isConnected(target))
      return Promise.reject(new RuntimeError('Unavailable', `${target} is not connected`));
    if (this.closed) return Promise.reject(new RuntimeError('Stopped', 'node stopped'));
    const id = ++this.seq;
    this.count++;
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
      this.sweeper.unref();
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: performance.now() + Math.max(1, timeoutMs), kind, target });
      if (!this.host.send(target, { k: 'app', t: kind, p: { ...payload, id } })) {
        this.pending.delete(id);
        reject(new RuntimeError('Unavailable', `cannot reach ${target}`));
      }
    });
  }

  /** A reply from `from`. */
  onReply(from: NodeId, r: FwdReply): void {
    const w = this.pending.get(r.id);
    if (!w) return;
    this.pending.delete(r.id);
    if (r.ok) w.resolve(r.result);
    // A peer that is stopping is, for this node, unavailable: the request may go elsewhere.
    else if (r.code === 'Stopped') w.reject(new RuntimeError('Unavailable', `${from}: ${r.message}`, r.leader));
    else w.reject(errorFromWire(r));
  }

  /** `peer` went down: its requests will not be answered; fail them now (retryable). */
  peerDown(peer: NodeId): void {
    for (const [id, q] of this.pending) {
      if (q.target !== peer) continue;
      this.pending.delete(id);
      q.reject(new RuntimeError('Unavailable', `${peer} went down while serving the request`));
    }
  }

  /** Fail the requests whose deadline passed (up to SWEEP_MS late); stop sweeping when none is out. */
  private sweep(): void {
    if (this.pending.size === 0) {
      if (this.sweeper) clearInterval(this.sweeper);
      this.sweeper = null;
      return;
    }
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(new RuntimeError('Timeout', `request ${p.kind} to ${p.target} timed out`));
    }
  }

  /** Fail everything with `err` and refuse new requests. */
  close(err: Error): void {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
