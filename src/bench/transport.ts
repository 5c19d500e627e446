// Transport throughput: two Transports in one process over loopback TCP, frames of 1,000 typical
// leader appends (one 16 B entry each). One thread does the encoding, the socket I/O and the
// decoding on both sides, so this is what one node's event loop can move, not a network limit.
import { setTimeout as sleep } from 'node:timers/promises';
import { FrameEncoder, RaftBatchCodec, Transport, type Envelope } from '../transport/index.js';
import type { Message } from '../raft/index.js';

const FRAME_MESSAGES = 1000;
const WINDOW_FRAMES = 4; // in flight; 4 × ~59 KB stays under the 1 MiB socket high-water mark

function appendEnvelopes(from: string, to: string): Envelope[] {
  return Array.from({ length: FRAME_MESSAGES }, (_, g) => ({
    k: 'raft',
    m: {
      type: 'app',
      group: g,
      from,
      to,
      term: 5,
      index: 1000 + g,
      logTerm: 5,
      commit: 999 + g,
      entries: [{ index: 1001 + g, term: 5, type: 'normal', data: new Uint8Array(16).fill(g & 0xff) }],
    },
  }));
}

/** CPU per message of the raft batch codec (encode + decode, one batch of 1,000), the format
 *  shards exchange: appends with one 16 B entry, and heartbeats. */
function codecCost(quick: boolean): { name: string; unit: string; value: number }[] {
  const codec = new RaftBatchCodec();
  const apps: Message[] = appendEnvelopes('a', 'b').map((e) => (e as Extract<Envelope, { k: 'raft' }>).m);
  const hbs: Message[] = apps.map((m) => ({
    type: 'hb',
    group: m.group,
    from: 'a',
    to: 'b',
    term: 5,
    commit: 99,
    ctx: '',
    seq: 7,
    quiesce: false,
  }));
  const cost = (msgs: Message[]) => {
    const rounds = quick ? 200 : 1000;
    for (let i = 0; i < 50; i++) codec.decode(codec.encode(msgs));
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) codec.decode(codec.encode(msgs));
    return Math.round((Number(process.hrtime.bigint() - t0) / 1e3 / rounds / msgs.length) * 1000) / 1000;
  };
  return [
    { name: 'raft batch codec, append (16 B entry) encode + decode', unit: 'µs/msg', value: cost(apps) },
    { name: 'raft batch codec, heartbeat encode + decode', unit: 'µs/msg', value: cost(hbs) },
    {
      name: 'raft batch size, append with a 16 B entry, 1,000 per batch',
      unit: 'B/msg',
      value: Math.round((codec.encode(apps).byteLength / apps.length) * 10) / 10,
    },
  ];
}

export async function benchTransport(quick: boolean): Promise<{ name: string; unit: string; value: number }[]> {
  const batch = appendEnvelopes('a', 'b');
  const frameBytes = new FrameEncoder().encodeBatch(batch).length;

  let receivedMsgs = 0;
  let receivedFrames = 0;
  let sentFrames = 0;
  let running = true;
  const a = new Transport({ nodeId: 'a', clusterId: 'bench', listen: { host: '127.0.0.1', port: 0 }, peers: {} });
  const b = new Transport({
    nodeId: 'b',
    clusterId: 'bench',
    listen: { host: '127.0.0.1', port: 0 },
    peers: {},
    onEnvelopes: (_from, envs) => {
      receivedMsgs += envs.length;
      receivedFrames++;
      pump();
    },
  });
  const aa = await a.start();
  const ba = await b.start();
  b.setPeer('a', `${aa.host}:${aa.port}`);
  a.setPeer('b', `${ba.host}:${ba.port}`);
  await new Promise<void>((resolve) => (a.isConnected('b') ? resolve() : a.once('peerUp', () => resolve())));

  function pump(): void {
    while (running && sentFrames - receivedFrames < WINDOW_FRAMES) {
      for (const e of batch) a.send('b', e);
      a.flush(); // exactly one 1,000-message frame
      sentFrames++;
    }
  }

  const measure = async (ms: number) => {
    const m0 = receivedMsgs;
    const t0 = process.hrtime.bigint();
    await sleep(ms);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    return (receivedMsgs - m0) / secs;
  };
  pump();
  await measure(quick ? 200 : 1000); // warm-up: JIT, socket buffers
  const rate = await measure(quick ? 1000 : 5000);
  running = false;
  const s = a.stats().peers.b;
  await Promise.all([a.close(), b.close()]);
  if ((s.drops.QueueFull ?? 0) > 0) throw new Error('bench: sender queue overflowed; the window is too large');

  return [
    ...codecCost(quick),
    { name: 'transport loopback, 1,000 appends (16 B entry) per frame', unit: 'msgs/s', value: Math.round(rate) },
    {
      name: 'transport wire size, append with a 16 B entry, 1,000 per frame',
      unit: 'B/msg',
      value: Math.round((frameBytes / FRAME_MESSAGES) * 10) / 10,
    },
    {
      name: 'transport loopback payload rate',
      unit: 'MB/s',
      value: Math.round(((rate * frameBytes) / FRAME_MESSAGES / 1e6) * 10) / 10,
    },
  ];
}

// Standalone: `node --import tsx src/bench/transport.ts [--quick]`.
if (import.meta.url === `file://${process.argv[1]}`) {
  for (const r of await benchTransport(process.argv.includes('--quick'))) {
    process.stdout.write(`${r.name}: ${r.value.toLocaleString('en')} ${r.unit}\n`);
  }
}
