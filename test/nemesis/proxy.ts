// TcpProxy: a test-controlled TCP hop between two nodes, so that the nemesis can cut links without
// touching node code. `cut('reset')` closes every connection and refuses new ones (the peer sees
// the link drop at once); `cut('blackhole')` keeps connections open but drops every byte both
// ways (the peer sees silence, as with a pulled cable); `heal()` forwards again.
import net from 'node:net';

export type CutMode = 'reset' | 'blackhole';

export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private mode: CutMode | null = null;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
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
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    // Forward only while healed: bytes arriving during a blackhole are dropped, as on a dead link.
    client.on('data', (b) => {
      if (this.mode === null) upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (this.mode === null) client.write(b);
    });
  }

  cut(mode: CutMode): void {
    this.mode = mode;
    if (mode === 'reset') {
      for (const [a, b] of this.pairs) {
        a.resetAndDestroy();
        b.resetAndDestroy();
      }
      this.pairs.clear();
    }
  }

  /** A blackholed stream lost bytes mid-frame: close it when healing so that both ends start clean
   *  (a real network would have timed it out). */
  heal(): void {
    if (this.mode === 'blackhole') {
      for (const [a, b] of this.pairs) {
        a.destroy();
        b.destroy();
      }
      this.pairs.clear();
    }
    this.mode = null;
  }

  get isCut(): boolean {
    return this.mode !== null;
  }

  close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    return new Promise((r) => this.server.close(() => r()));
  }
}
