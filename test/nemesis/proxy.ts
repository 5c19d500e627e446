// TcpProxy: a test-controlled TCP hop between two nodes, so that the nemesis can cut links without
// touching node code. `cut('reset')` closes every connection and refuses new ones (the peer sees
// the link drop at once); `cut('blackhole')` keeps connections open but drops every byte both
// ways (the peer sees silence, as with a pulled cable); `delay(ms, jitterMs)` forwards every
// chunk late (a slow or congested link); `heal()` forwards again at once.
import net from 'node:net';

export type CutMode = 'reset' | 'blackhole';

/** One direction of one connection: chunks waiting for their due time, oldest first. */
class Lane {
  private readonly queue: { due: number; chunk: Buffer }[] = [];
  private head = 0;
  /** Due time of the last chunk queued: a later chunk is never due earlier, so the stream keeps
   *  its byte order whatever the jitter draws. */
  private lastDue = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly out: net.Socket) {}

  get busy(): boolean {
    return this.head < this.queue.length;
  }

  push(chunk: Buffer, lateMs: number): void {
    const due = Math.max(this.lastDue, Date.now() + lateMs);
    this.lastDue = due;
    this.queue.push({ due, chunk });
    if (!this.timer) this.arm();
  }

  /** Forward everything queued now, in order (the delay was lifted). */
  flush(): void {
    this.stop();
    while (this.busy) this.out.write(this.queue[this.head++].chunk);
    this.reset();
  }

  /** Forget everything queued: the link was cut, those bytes never arrive. */
  drop(): void {
    this.stop();
    this.reset();
  }

  private reset(): void {
    this.queue.length = 0;
    this.head = 0;
    this.lastDue = 0;
  }

  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  // One timer per lane rather than per chunk: a busy link under delay queues thousands of chunks.
  private arm(): void {
    this.timer = setTimeout(
      () => {
        this.timer = null;
        const now = Date.now();
        while (this.busy && this.queue[this.head].due <= now) this.out.write(this.queue[this.head++].chunk);
        if (!this.busy) this.reset();
        else {
          if (this.head > 1024) {
            // Keep a long-lagged lane from growing.
            this.queue.splice(0, this.head);
            this.head = 0;
          }
          this.arm();
        }
      },
      Math.max(0, this.queue[this.head].due - Date.now()),
    );
  }
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  lanes: [Lane, Lane];
}

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  private mode: CutMode | null = null;
  private lag = { ms: 0, jitterMs: 0 };
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** `host`: which loopback address it listens on (the nemesis gives every dialing node its own,
   *  so that one port can stand for one target node on every link to it). */
  listen(port = 0, host = '127.0.0.1'): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  private accept(client: net.Socket): void {
    if (this.mode === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    const pair: Pair = { client, upstream, lanes: [new Lane(upstream), new Lane(client)] };
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      for (const l of pair.lanes) l.drop();
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    const forward = (lane: Lane, out: net.Socket) => (b: Buffer) => {
      // Bytes arriving during a cut are dropped, as on a dead link.
      if (this.mode !== null) return;
      const { ms, jitterMs } = this.lag;
      if (ms > 0 || jitterMs > 0) lane.push(b, ms + Math.random() * jitterMs);
      else if (lane.busy)
        lane.push(b, 0); // behind bytes still queued from a delay just lifted
      else out.write(b);
    };
    client.on('data', forward(pair.lanes[0], upstream));
    upstream.on('data', forward(pair.lanes[1], client));
  }

  /** Every chunk is forwarded `ms` plus up to `jitterMs` late; per direction the stream keeps its
   *  order (a chunk waits for the one before it). `delay(0, 0)` forwards what is queued at once. */
  delay(ms: number, jitterMs = 0): void {
    if (!(ms >= 0 && jitterMs >= 0 && Number.isFinite(ms + jitterMs)))
      throw new RangeError('delay: ms and jitterMs must be finite numbers >= 0');
    this.lag = { ms, jitterMs };
    if (ms === 0 && jitterMs === 0) for (const p of this.pairs) for (const l of p.lanes) l.flush();
  }

  cut(mode: CutMode): void {
    this.mode = mode;
    for (const p of this.pairs) for (const l of p.lanes) l.drop();
    if (mode === 'reset') {
      for (const { client, upstream } of this.pairs) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      this.pairs.clear();
    }
  }

  /** Lifts cuts and delays. A blackholed stream lost bytes mid-frame: close it when healing so
   *  that both ends start clean (a real network would have timed it out). */
  heal(): void {
    if (this.mode === 'blackhole') {
      for (const { client, upstream } of this.pairs) {
        client.destroy();
        upstream.destroy();
      }
      this.pairs.clear();
    }
    this.mode = null;
    this.delay(0, 0);
  }

  get isCut(): boolean {
    return this.mode !== null;
  }

  get isDelayed(): boolean {
    return this.lag.ms > 0 || this.lag.jitterMs > 0;
  }

  close(): Promise<void> {
    for (const { client, upstream, lanes } of this.pairs) {
      for (const l of lanes) l.drop();
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    return new Promise((r) => this.server.close(() => r()));
  }
}
