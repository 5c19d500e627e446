// Property tests of the frame decoder and the handshake checks against hostile input: random
// bytes, mutated valid frames, valid streams cut anywhere, random handshake bodies. Invariants:
// nothing throws (failures come back as typed values), every call returns (each frame consumes
// at least its 4-byte header), buffered bytes stay within maxFrameBytes + the chunk just pushed,
// and every rejection is counted. 50,000 inputs in total; 1,000,000 with FLOTILLA_LONG=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameEncoder,
  FrameTooLarge,
  MalformedFrame,
  PROTOCOL_VERSION,
  checkAcceptorReply,
  checkDialerHello,
  checkJoined,
  checkProofFrame,
  makeHello,
  type AcceptPolicy,
  type Envelope,
} from '../../src/transport/index.js';
import { MESSAGE_TYPES, validateMessage, type Message, type MessageType } from '../../src/raft/index.js';

const TOTAL = process.env.FLOTILLA_LONG === '1' ? 1_000_000 : 50_000;
const RUNS = {
  randomBytes: Math.round(TOTAL * 0.3),
  mutated: Math.round(TOTAL * 0.4),
  chunked: Math.round(TOTAL * 0.2),
  handshake: Math.round(TOTAL * 0.1),
};
const MAX_FRAME = 2048; // small, so that length prefixes often exceed it

function sample(type: MessageType, group: number, n: number): Message {
  const base = { group, from: 'n1', to: 'n2', term: 7 };
  switch (type) {
    case 'app':
      return {
        ...base,
        type,
        index: 10,
        logTerm: 6,
        commit: 9,
        entries: Array.from({ length: n % 4 }, (_, i) => ({
          index: 11 + i,
          term: 7,
          type: 'normal' as const,
          data: new Uint8Array(n % 20).fill(i),
        })),
      };
    case 'appResp':
      return { ...base, type, index: n, reject: n % 2 === 0, hintIndex: 0, hintTerm: 0 };
    case 'hb':
      return { ...base, type, commit: n, ctx: 'c'.repeat(n % 5), seq: n, quiesce: false };
    case 'hbResp':
      return { ...base, type, ctx: '', seq: n };
    case 'vote':
    case 'preVote':
      return { ...base, type, index: n, logTerm: 7, transfer: false };
    case 'voteResp':
    case 'preVoteResp':
      return { ...base, type, reject: true };
    case 'snap':
      return {
        ...base,
        type,
        snapshot: {
          meta: { index: 5 + n, term: 6, conf: { voters: ['n1', 'n2'], learners: [] } },
          data: new Uint8Array(n % 32),
        },
      };
    case 'timeoutNow':
      return { ...base, type };
    case 'transferLeader':
      return { ...base, type, target: 'n3' };
    case 'readIndex':
      return { ...base, type, ctx: 'r' };
    case 'readIndexResp':
      return { ...base, type, ctx: 'r', index: n };
  }
}

// A pool of valid frames (all message types, app payloads, empty batches, a handshake).
const enc = new FrameEncoder();
const POOL: Buffer[] = [];
for (let i = 0; i < 40; i++) {
  const envs: Envelope[] = [];
  for (let j = 0; j < i % 7; j++)
    envs.push({ k: 'raft', m: sample(MESSAGE_TYPES[(i + j) % MESSAGE_TYPES.length], i, j + i) });
  if (i % 3 === 0) envs.push({ k: 'app', t: 'load', p: { g: i, s: 'x'.repeat(i), b: new Uint8Array(i) } });
  POOL.push(FrameEncoder.detach(enc.encodeBatch(envs)));
}
POOL.push(FrameEncoder.detach(enc.encodeControl({ hs: 'hello', protocol: 1, clusterId: 'c', nodeId: 'n1' })));
const POOL_ITEMS = POOL.length;

interface Tally {
  errors: number;
  frames: number;
  items: number;
  kept: number;
  dropped: number;
}

/** Push the chunks one by one, draining after each, checking every invariant on the way. */
function feed(dec: FrameDecoder, chunks: Uint8Array[]): Tally {
  const tally: Tally = { errors: 0, frames: 0, items: 0, kept: 0, dropped: 0 };
  for (const c of chunks) {
    dec.push(c);
    // Each returned frame consumes at least a header, so this bounds the loop: no hang.
    let budget = Math.floor((dec.bufferedBytes + c.length) / FRAME_HEADER_BYTES) + 2;
    for (let r = dec.next(); r !== null; r = dec.next()) {
      assert.ok(--budget >= 0, 'decoder returned more results than the input can hold');
      if (r.kind === 'error') {
        assert.ok(r.error instanceof FrameTooLarge || r.error instanceof MalformedFrame);
        tally.errors++;
        continue;
      }
      tally.frames++;
      if (r.kind === 'control') {
        assert.equal(typeof r.body.hs, 'string');
        continue;
      }
      const dropped = Object.values(r.dropped ?? {}).reduce((a, b) => a + b, 0);
      assert.equal(r.envelopes.length + dropped, r.items);
      tally.items += r.items;
      tally.kept += r.envelopes.length;
      tally.dropped += dropped;
      for (const e of r.envelopes) {
        if (e.k === 'raft') assert.equal(validateMessage(e.m), null);
        else assert.ok(e.k === 'app' && typeof e.t === 'string' && e.t.length > 0);
      }
    }
    assert.ok(dec.bufferedBytes <= dec.maxFrameBytes + c.length, `buffered ${dec.bufferedBytes}`);
  }
  const counted = Object.values(dec.stats.drops).reduce((a, b) => a + b, 0);
  assert.equal(counted, tally.errors + tally.dropped, 'every rejection is counted');
  assert.equal(dec.stats.envelopes, tally.kept);
  return tally;
}

/** Cut `buf` at the given (unsorted, possibly out of range) points. */
function cut(buf: Uint8Array, points: number[]): Uint8Array[] {
  const ps = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of ps) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

const mutation = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    op: fc.constant('length' as const),
    value: fc.oneof(fc.nat({ max: 4096 }), fc.constant(0xffffffff), fc.nat()),
  }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(frame: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = Uint8Array.from(frame);
  for (const m of ms) {
    const at = b.length === 0 ? 0 : 'at' in m ? m.at % b.length : 0;
    switch (m.op) {
      case 'flip':
        if (b.length > 0) b[at] = m.byte;
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]);
        break;
      case 'length':
        if (b.length >= 4) new DataView(b.buffer, b.byteOffset).setUint32(0, m.value);
        break;
    }
  }
  return b;
}

test(`random bytes in random chunks (${RUNS.randomBytes} runs)`, () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 6 }), fc.boolean(), (chunks, prefix) => {
      // Half the time behind a plausible small header, so bodies reach the msgpack decoder.
      const all = prefix && chunks.length > 0 ? [Uint8Array.of(0, 0, 0, chunks[0].length), ...chunks] : chunks;
      feed(new FrameDecoder({ maxFrameBytes: MAX_FRAME }), all);
    }),
    { numRuns: RUNS.randomBytes },
  );
});

test(`mutated valid frames, concatenated and re-chunked (${RUNS.mutated} runs)`, () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ frame: fc.nat({ max: POOL_ITEMS - 1 }), ms: fc.array(mutation, { maxLength: 3 }) }), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.array(fc.nat(), { maxLength: 4 }),
      (frames, points) => {
        const parts = frames.map(({ frame, ms }) => mutate(POOL[frame], ms));
        const stream = Buffer.concat(parts);
        const dec = new FrameDecoder({ maxFrameBytes: MAX_FRAME });
        const tally = feed(dec, cut(stream, points));
        // Unmutated streams must decode completely.
        if (frames.every((f) => f.ms.length === 0)) {
          assert.equal(tally.errors, 0);
          assert.equal(tally.frames, frames.length);
          assert.equal(tally.dropped, 0);
        }
      },
    ),
    { numRuns: RUNS.mutated },
  );
});

test(`valid streams cut at arbitrary points decode exactly (${RUNS.chunked} runs)`, () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat({ max: POOL_ITEMS - 1 }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (ids, points) => {
        const stream = Buffer.concat(ids.map((i) => POOL[i]));
        const whole = feed(new FrameDecoder({ maxFrameBytes: MAX_FRAME }), [stream]);
        const dec = new FrameDecoder({ maxFrameBytes: MAX_FRAME });
        const pieces = feed(dec, cut(stream, points));
        assert.deepEqual(pieces, whole);
        assert.equal(whole.frames, ids.length);
        assert.equal(dec.bufferedBytes, 0);
      },
    ),
    { numRuns: RUNS.chunked },
  );
});

test(`handshake checks never throw on arbitrary bodies (${RUNS.handshake} runs)`, () => {
  const policy = {
    clusterId: 'c',
    selfId: 'n2',
    isPeer: (id: string) => id === 'n1',
    isRemoved: (id: string) => id === 'n0',
    dialsUs: (id: string) => id < 'n2',
  };
  const body = fc.oneof(
    fc.dictionary(fc.string(), fc.anything()),
    fc.record(
      {
        hs: fc.oneof(
          fc.constant('hello'),
          fc.constant('refuse'),
          fc.constant('auth'),
          fc.constant('ok'),
          fc.constant('joined'),
          fc.string(),
        ),
        protocol: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.anything()),
        clusterId: fc.oneof(fc.constant('c'), fc.anything()),
        nodeId: fc.oneof(fc.constant('n1'), fc.anything()),
        schema: fc.anything(),
        maxFrameBytes: fc.anything(),
        auth: fc.oneof(
          fc.record({
            scheme: fc.constant('hmac-sha256'),
            nonce: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.anything()),
          }),
          fc.anything(),
        ),
        proof: fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.anything()),
        join: fc.oneof(
          fc.record({
            v: fc.oneof(fc.constant(1), fc.anything()),
            address: fc.oneof(fc.constant('127.0.0.1:1'), fc.anything()),
            labels: fc.oneof(fc.dictionary(fc.string(), fc.string()), fc.anything()),
          }),
          fc.anything(),
        ),
        v: fc.oneof(fc.constant(1), fc.anything()),
        reason: fc.anything(),
        detail: fc.anything(),
      },
      { requiredKeys: ['hs'] },
    ),
  );
  fc.assert(
    fc.property(body, (b) => {
      const r1 = checkDialerHello(b, policy);
      const r2 = checkAcceptorReply(b, { clusterId: 'c', peer: 'n2' });
      const r3 = checkDialerHello(b, { ...policy, secret: true });
      const r4 = checkAcceptorReply(b, { clusterId: 'c', peer: 'n2', self: 'n1', secret: true });
      const r5 = checkProofFrame(b, 'auth', 'n1');
      const r6 = checkProofFrame(b, 'ok', 'n2');
      const r7 = checkAcceptorReply(b, { clusterId: '', peer: null, self: 'n1', secret: true });
      const r8 = checkJoined(b, 'n2');
      for (const r of [r1, r2, r3, r4, r5, r6, r7, r8]) {
        if (!r.ok) assert.equal(typeof r.reason, 'string');
      }
    }),
    { numRuns: RUNS.handshake },
  );
});

test('join hellos: parsed apart from member hellos, versioned, bounded', () => {
  const policy = {
    clusterId: 'c',
    selfId: 'n2',
    isPeer: (id: string) => id === 'n1',
    isRemoved: (id: string) => id === 'n0',
    dialsUs: (id: string) => id < 'n2',
  };
  const join = { v: 1 as const, address: '127.0.0.1:9', labels: { zone: 'a' } };
  // Not a peer, any dial direction: still fine as a joiner (the owner decides later).
  const ok = checkDialerHello({ ...makeHello('', 'n9', 1 << 20, null, join) }, policy);
  assert.ok(ok.ok && ok.hello.join?.address === '127.0.0.1:9' && ok.hello.join.labels.zone === 'a');
  const reason = (b: Record<string, unknown>, p: AcceptPolicy = policy) => {
    const r = checkDialerHello(b, p);
    return r.ok ? 'ok' : r.reason;
  };
  const hello = (over: Record<string, unknown>) => ({ ...makeHello('', 'n9', 1 << 20, null, join), ...over });
  assert.equal(reason(hello({ join: { ...join, v: 2 } })), 'ProtocolMismatch');
  assert.equal(reason(hello({ join: { ...join, address: 7 } })), 'BadHandshake');
  const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
  assert.equal(reason(hello({ join: { ...join, labels: many } })), 'BadHandshake');
  assert.equal(reason(hello({ join: { ...join, labels: { zone: 3 } } })), 'BadHandshake');
  assert.equal(reason(hello({ clusterId: 'other' })), 'ClusterMismatch');
  assert.equal(reason(hello({ clusterId: 'c' })), 'ok');
  assert.equal(reason(hello({ nodeId: 'n2' })), 'DuplicateId');
  assert.equal(reason(hello({}), { ...policy, secret: true }), 'Unauthenticated');
  // A member's hello has no join key, and a removed member is refused as Removed.
  assert.equal('join' in makeHello('c', 'n1', 1 << 20), false);
  assert.equal(reason({ ...makeHello('c', 'n0', 1 << 20) }), 'Removed');
  assert.equal(reason({ ...makeHello('c', 'n1', 1 << 20) }), 'ok');
  // The answer.
  assert.deepEqual(checkJoined({ hs: 'joined', protocol: PROTOCOL_VERSION, v: 1, clusterId: 'c' }, 'n2'), {
    ok: true,
    clusterId: 'c',
  });
  const bad = checkJoined({ hs: 'joined', protocol: PROTOCOL_VERSION, v: 2, clusterId: 'c' }, 'n2');
  assert.ok(!bad.ok && bad.reason === 'ProtocolMismatch');
  const refused = checkJoined(
    { hs: 'refuse', protocol: PROTOCOL_VERSION, reason: 'DuplicateAddress', detail: 'x' },
    'n2',
  );
  assert.ok(!refused.ok && refused.reason === 'DuplicateAddress');
});
