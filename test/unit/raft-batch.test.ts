// RaftBatchCodec: round trips of every message type, limits of every field, hostile input (random
// bytes, truncation, bit flips, lying counts) never throws and never yields a message the core's
// own validation would refuse, and invalid messages are dropped one by one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MESSAGE_TYPES, type Message } from '../../src/raft/index.js';
import { sample } from '../helpers/messages.js';
import { validateMessage } from '../../src/raft/validate.js';
import { RaftBatchCodec, RaftBatchError, type RaftBatch } from '../../src/transport/raftbatch.js';

const bytes = (s: string) => new TextEncoder().encode(s);

/** Binary data compared by content whatever the class. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bin: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function ok(r: RaftBatch | RaftBatchError): RaftBatch {
  if (r instanceof RaftBatchError) assert.fail(r.message);
  return r;
}

test('every message type round-trips, in order, in one batch', () => {
  const c = new RaftBatchCodec();
  const msgs = MESSAGE_TYPES.map((t, i) => sample(t, i + 1));
  const r = ok(c.decode(c.encode(msgs)));
  assert.equal(r.dropped, null);
  assert.deepEqual(plain(r.messages), plain(msgs));
  for (const m of r.messages) assert.equal(validateMessage(m), null);
});

test('extreme but legal values survive: 2^53-1 indexes and terms, long ids and ctx, unicode, big entries', () => {
  const c = new RaftBatchCodec();
  const max = Number.MAX_SAFE_INTEGER;
  const id = 'ñ'.repeat(128);
  const msgs: Message[] = [
    {
      type: 'hb',
      group: 0xffffffff,
      from: id,
      to: 'n2',
      term: max,
      commit: max,
      ctx: 'x'.repeat(256),
      seq: max,
      quiesce: false,
    },
    { type: 'appResp', group: 0, from: 'n2', to: id, term: 0, index: max, reject: false, hintIndex: 0, hintTerm: max },
    {
      type: 'app',
      group: 3,
      from: id,
      to: 'n2',
      term: 9,
      index: max - 2,
      logTerm: 9,
      commit: 0,
      entries: [
        { index: max - 1, term: 9, type: 'normal', data: new Uint8Array(200_000).fill(3) },
        { index: max, term: 9, type: 'normal', data: new Uint8Array(0) },
      ],
    },
  ];
  const r = ok(c.decode(c.encode(msgs)));
  assert.equal(r.dropped, null);
  assert.deepEqual(plain(r.messages), plain(msgs));
});

test('decoded entry data is a copy: changing the input afterwards changes nothing', () => {
  const c = new RaftBatchCodec();
  const buf = c.encode([sample('app')]);
  const r = ok(c.decode(buf));
  buf.fill(0);
  const app = r.messages[0] as Extract<Message, { type: 'app' }>;
  assert.deepEqual([...app.entries[0].data], [...bytes('hello')]);
  assert.notEqual(app.entries[0].data.buffer, buf.buffer);
});

test('the encoder reuses its buffer but every result owns its bytes', () => {
  const c = new RaftBatchCodec();
  const a = c.encode([sample('hb', 1)]);
  const b = c.encode([sample('hb', 2)]);
  assert.notEqual(a.buffer, b.buffer);
  assert.equal(a.byteLength, a.buffer.byteLength);
  assert.equal((ok(c.decode(a)).messages[0] as Message).group, 1);
});

test('a typical append is small: one 16 B entry in under 40 bytes per message', () => {
  const c = new RaftBatchCodec();
  const msgs: Message[] = Array.from({ length: 1000 }, (_, g) => ({
    type: 'app',
    group: g,
    from: 'n1',
    to: 'n2',
    term: 5,
    index: 1000 + g,
    logTerm: 5,
    commit: 999 + g,
    entries: [{ index: 1001 + g, term: 5, type: 'normal', data: new Uint8Array(16).fill(7) }],
  }));
  const size = c.encode(msgs).byteLength;
  assert.ok(size / 1000 < 40, `${size / 1000} bytes per append`);
});

test('well-framed but invalid messages are dropped one by one, the rest kept', () => {
  const c = new RaftBatchCodec();
  const bad: Message[] = [
    { ...(sample('app') as Extract<Message, { type: 'app' }>), logTerm: 8 }, //                 logTerm above term
    {
      ...(sample('app') as Extract<Message, { type: 'app' }>),
      entries: [{ index: 11, term: 99, type: 'normal', data: bytes('x') }],
    }, // entry term above term
    {
      ...(sample('app') as Extract<Message, { type: 'app' }>),
      entries: [{ index: 11, term: 5, type: 'normal', data: bytes('x') }],
    }, // entry term below logTerm
    { ...(sample('readIndex') as Extract<Message, { type: 'readIndex' }>), ctx: '' }, //          empty read ctx
    { ...(sample('hb') as Extract<Message, { type: 'hb' }>), ctx: 'y'.repeat(257) }, //          ctx too long
  ];
  for (const m of bad) {
    const r = ok(c.decode(c.encode([sample('timeoutNow', 1), m, sample('timeoutNow', 2)])));
    assert.deepEqual(
      r.messages.map((x) => x.group),
      [1, 2],
      `kept the valid neighbours of ${JSON.stringify(plain(m)).slice(0, 80)}`,
    );
    assert.deepEqual(r.dropped, { 'raft.Malformed': 1 });
  }
  const snap = sample('snap') as Extract<Message, { type: 'snap' }>;
  const noVoters = {
    ...snap,
    snapshot: { ...snap.snapshot, meta: { ...snap.snapshot.meta, conf: { voters: [], learners: [] } } },
  };
  assert.deepEqual(ok(c.decode(c.encode([noVoters]))).dropped, { 'raft.Malformed': 1 });
});

test('broken headers and framing are typed errors; a broken message ends the batch', () => {
  const c = new RaftBatchCodec();
  const good = c.encode([sample('hb', 1), sample('app', 2), sample('hb', 3)]);
  assert.ok(c.decode(new Uint8Array(0)) instanceof RaftBatchError);
  assert.ok(c.decode(Uint8Array.of(0x00, 2, 0, 0)) instanceof RaftBatchError, 'bad magic');
  assert.ok(c.decode(Uint8Array.of(0xfb, 99, 0, 0)) instanceof RaftBatchError, 'unknown version');
  const lyingCount = good.slice();
  lyingCount[lyingCount.indexOf(3, 2)] = 0x7f; // the message count, after the id table
  const trailing = Uint8Array.of(...good, 0);
  assert.ok(c.decode(trailing) instanceof RaftBatchError, 'trailing bytes');
  // Truncated inside the second message: the first survives, the rest is counted as dropped.
  const cut = ok(c.decode(good.subarray(0, good.length - 30)));
  assert.deepEqual(
    cut.messages.map((m) => m.group),
    [1],
  );
  assert.equal(cut.dropped?.['raft.Malformed'], 2);
});

test('hostile input never throws, and whatever it yields passes the core validation', () => {
  const c = new RaftBatchCodec();
  const seeds = [
    c.encode(MESSAGE_TYPES.map((t, i) => sample(t, i))),
    c.encode([sample('app')]),
    c.encode([sample('snap')]),
  ];
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: seeds.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 64 }),
      (which, flips, cutAt, junk) => {
        const b = seeds[which].slice();
        for (const [at, v] of flips) b[at % b.length] = v;
        for (const input of [b, b.subarray(0, cutAt % (b.length + 1)), junk, Uint8Array.of(0xfb, 2, ...junk)]) {
          const r = c.decode(input);
          if (r instanceof RaftBatchError) continue;
          for (const m of r.messages) assert.equal(validateMessage(m), null, JSON.stringify(plain(m)).slice(0, 200));
        }
      },
    ),
    { numRuns: 3000, seed: 42 },
  );
});
