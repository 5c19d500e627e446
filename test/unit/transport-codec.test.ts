// Frame codec: round trips of every Raft message type, arbitrary chunking, limits, garbage,
// per-item validation, copying of binary data, the pinned structure table, and the wire size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import {
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameEncoder,
  SCHEMA,
  type DecodeResult,
  type Envelope,
} from '../../src/transport/codec.js';
import { FrameTooLarge, MalformedFrame } from '../../src/transport/errors.js';
import { MESSAGE_TYPES, type Message } from '../../src/raft/index.js';
import { sample } from '../helpers/messages.js';

const bytes = (s: string) => new TextEncoder().encode(s);

/** A typical leader append: one 16 B entry. */
function typicalAppend(group: number): Message {
  return {
    type: 'app',
    group,
    from: 'n1',
    to: 'n2',
    term: 5,
    index: 1000 + group,
    logTerm: 5,
    commit: 999 + group,
    entries: [{ index: 1001 + group, term: 5, type: 'normal', data: new Uint8Array(16).fill(7) }],
  };
}

/** Binary data compared by content whatever the class (Buffer on decode, Uint8Array on input). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bin: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/** A frame around an arbitrary body packed with the shared table (for hostile or odd items). */
function rawFrame(
  body: unknown,
  packr = new Packr({ structures: SCHEMA(), maxSharedStructures: SCHEMA().length }),
): Buffer {
  const b = packr.pack(body);
  const out = Buffer.alloc(FRAME_HEADER_BYTES + b.length);
  out.writeUInt32BE(b.length, 0);
  out.set(b, FRAME_HEADER_BYTES);
  return out;
}

function frameWithBody(body: Uint8Array): Buffer {
  const out = Buffer.alloc(FRAME_HEADER_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

function batches(rs: DecodeResult[]): Envelope[][] {
  return rs.map((r) => {
    assert.equal(r.kind, 'batch', `expected a batch, got ${r.kind === 'error' ? r.error.message : r.kind}`);
    return r.kind === 'batch' ? r.envelopes : [];
  });
}

const allTypes: Envelope[] = MESSAGE_TYPES.map((t, i) => ({ k: 'raft', m: sample(t, i + 1) }));

test('every Raft message type, with entries and a snapshot, round-trips in one frame', () => {
  const envs: Envelope[] = [
    ...allTypes,
    { k: 'app', t: 'forward', p: { group: 3, data: bytes('cmd'), n: [1, 2.5, 'x', null, true] } },
  ];
  const frame = new FrameEncoder().encodeBatch(envs);
  const rs = new FrameDecoder().decode(frame);
  assert.equal(rs.length, 1);
  const [got] = batches(rs);
  assert.deepEqual(plain(got), plain(envs));
  const r = rs[0];
  assert.ok(r.kind === 'batch' && r.dropped === null && r.items === envs.length && r.frameBytes === frame.length);
});

test('the frame header is a big-endian u32 body length and the buffer is exactly one frame', () => {
  const enc = new FrameEncoder();
  const a = enc.encodeBatch([allTypes[0]]);
  const b = enc.encodeBatch([allTypes[1], allTypes[2]]);
  assert.equal(a.readUInt32BE(0), a.length - FRAME_HEADER_BYTES);
  assert.equal(b.readUInt32BE(0), b.length - FRAME_HEADER_BYTES);
  // Both are views into msgpackr's slab: encoding b must not have overwritten a.
  assert.deepEqual(plain(batches(new FrameDecoder().decode(a))[0]), plain([allTypes[0]]));
  const copy = FrameEncoder.detach(a);
  assert.equal(copy.buffer.byteLength, a.length);
  assert.deepEqual([...copy], [...a]);
});

test('key order of the input does not matter: messages are written in the schema order', () => {
  // Built like the core builds them (spread, then group/from/term appended).
  const coreOrder = {
    type: 'app',
    to: 'n2',
    index: 10,
    logTerm: 6,
    entries: [{ data: bytes('x'), type: 'normal', term: 6, index: 11 }],
    commit: 9,
    group: 1,
    from: 'n1',
    term: 7,
  } as unknown as Message;
  const schemaOrder: Message = {
    type: 'app',
    group: 1,
    from: 'n1',
    to: 'n2',
    term: 7,
    index: 10,
    logTerm: 6,
    commit: 9,
    entries: [{ index: 11, term: 6, type: 'normal', data: bytes('x') }],
  };
  const enc = new FrameEncoder();
  assert.deepEqual(
    [...enc.encodeBatch([{ k: 'raft', m: coreOrder }])],
    [...enc.encodeBatch([{ k: 'raft', m: schemaOrder }])],
  );
});

test('frames split at every byte boundary, and in 1-byte chunks, decode identically', () => {
  const enc = new FrameEncoder();
  const frames = [enc.encodeBatch(allTypes.slice(0, 5)), enc.encodeBatch([]), enc.encodeBatch(allTypes.slice(5))].map(
    (f) => FrameEncoder.detach(f),
  );
  const stream = Buffer.concat(frames);
  const expected = plain([allTypes.slice(0, 5), [], allTypes.slice(5)]);
  for (let i = 0; i <= stream.length; i++) {
    const dec = new FrameDecoder();
    const rs = [...dec.decode(stream.subarray(0, i)), ...dec.decode(stream.subarray(i))];
    assert.deepEqual(plain(batches(rs)), expected, `split at ${i}`);
    assert.equal(dec.bufferedBytes, 0);
  }
  for (let i = 1; i < stream.length; i += 7) {
    for (let j = i; j <= stream.length; j += 13) {
      const dec = new FrameDecoder();
      const rs = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)].flatMap((c) => dec.decode(c));
      assert.deepEqual(plain(batches(rs)), expected, `split at ${i}, ${j}`);
    }
  }
  const dec = new FrameDecoder();
  const rs: DecodeResult[] = [];
  for (let i = 0; i < stream.length; i++) {
    rs.push(...dec.decode(stream.subarray(i, i + 1)));
    assert.ok(dec.bufferedBytes <= dec.maxFrameBytes);
  }
  assert.deepEqual(plain(batches(rs)), expected);
  assert.equal(dec.stats.frames, 3);
  assert.equal(dec.stats.envelopes, allTypes.length);
});

test('several frames in one chunk all decode, in order', () => {
  const enc = new FrameEncoder();
  const frames = allTypes.map((e) => FrameEncoder.detach(enc.encodeBatch([e])));
  const rs = new FrameDecoder().decode(Buffer.concat(frames));
  assert.deepEqual(plain(batches(rs)), plain(allTypes.map((e) => [e])));
});

test('an oversized length is rejected from the header alone, before buffering, and ends the stream', () => {
  const dec = new FrameDecoder({ maxFrameBytes: 1024 });
  const hdr = Buffer.alloc(4);
  hdr.writeUInt32BE(1024 - FRAME_HEADER_BYTES + 1, 0);
  const rs = dec.decode(hdr);
  assert.equal(rs.length, 1);
  const r = rs[0];
  assert.ok(r.kind === 'error' && r.error instanceof FrameTooLarge);
  assert.equal(r.error.code, 'FrameTooLarge');
  assert.equal((r.error as FrameTooLarge).frameBytes, 1025);
  assert.equal(dec.failed, true);
  assert.equal(dec.bufferedBytes, 0);
  // Framing is lost: later bytes, even a valid frame, are discarded rather than buffered.
  const valid = new FrameEncoder().encodeBatch([allTypes[0]]);
  assert.deepEqual(dec.decode(Buffer.alloc(5000)), []);
  assert.deepEqual(dec.decode(valid), []);
  assert.equal(dec.bufferedBytes, 0);
  assert.equal(dec.stats.discardedBytes, 5000 + valid.length);
  assert.equal(dec.stats.drops.FrameTooLarge, 1);
});

test('a frame of exactly maxFrameBytes is accepted; the limit can change between frames', () => {
  const enc = new FrameEncoder();
  const big = FrameEncoder.detach(enc.encodeBatch([{ k: 'app', t: 'blob', p: new Uint8Array(3000) }]));
  const ok = new FrameDecoder({ maxFrameBytes: big.length });
  assert.equal(batches(ok.decode(big))[0].length, 1);
  const tight = new FrameDecoder({ maxFrameBytes: big.length - 1 });
  const r = tight.decode(big);
  assert.ok(r[0].kind === 'error' && r[0].error.code === 'FrameTooLarge');

  const small = FrameEncoder.detach(enc.encodeBatch([allTypes[1]]));
  const dec = new FrameDecoder({ maxFrameBytes: 1024 });
  dec.push(Buffer.concat([small, big]));
  assert.equal(dec.next()?.kind, 'batch');
  dec.setMaxFrameBytes(big.length);
  assert.equal(dec.next()?.kind, 'batch');
  assert.equal(dec.next(), null);
});

test('the encoder refuses to produce a frame above its limit', () => {
  const enc = new FrameEncoder({ maxFrameBytes: 1024 });
  assert.throws(() => enc.encodeBatch([{ k: 'app', t: 'blob', p: new Uint8Array(2000) }]), FrameTooLarge);
  assert.ok(enc.encodeBatch([{ k: 'app', t: 'blob', p: new Uint8Array(100) }]).length <= 1024);
});

test('garbage bodies are MalformedFrame; framing survives and the next frame decodes', () => {
  const enc = new FrameEncoder();
  const valid = FrameEncoder.detach(enc.encodeBatch([allTypes[3]]));
  const bodies: [string, Uint8Array][] = [
    ['reserved byte 0xc1', Uint8Array.of(0xc1)],
    ['empty body', new Uint8Array(0)],
    ['a number', Uint8Array.of(0x07)],
    ['an array', Uint8Array.of(0x92, 0x01, 0x02)],
    ['a map without items or hs', rawFrame({ what: 1 }).subarray(4)],
    ['items that is not an array', rawFrame({ items: 5 }).subarray(4)],
    ['trailing bytes after the value', Buffer.concat([rawFrame({ items: [] }).subarray(4), Uint8Array.of(0x01)])],
    ['a string claiming more bytes than the frame holds', Uint8Array.of(0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61)],
    ['an array claiming 2^32-1 elements', Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff)],
    ['an undefined record id', Uint8Array.of(0x7f)],
    ['a structured-clone pointer', Uint8Array.of(0xd6, 0x70, 0, 0, 0, 1)],
  ];
  const dec = new FrameDecoder();
  for (const [name, body] of bodies) {
    const rs = dec.decode(Buffer.concat([frameWithBody(body), valid]));
    assert.equal(rs.length, 2, name);
    assert.ok(rs[0].kind === 'error' && rs[0].error instanceof MalformedFrame, `${name}: ${JSON.stringify(rs[0])}`);
    assert.equal(rs[1].kind, 'batch', name);
  }
  assert.equal(dec.stats.drops.MalformedFrame, bodies.length);
  assert.equal(dec.failed, false);
});

test('a frame redefining a shared record id inline does not corrupt later frames', () => {
  // A Packr without a shared table defines its first record shape inline as id 0x40, the id of
  // the batch shape in ours.
  const hostile = rawFrame({ x: 1, y: 2 }, new Packr({ useRecords: true }));
  const valid = FrameEncoder.detach(new FrameEncoder().encodeBatch(allTypes));
  const dec = new FrameDecoder();
  const rs = dec.decode(Buffer.concat([hostile, valid, hostile, valid]));
  assert.deepEqual(
    rs.map((r) => r.kind),
    ['error', 'batch', 'error', 'batch'],
  );
  assert.deepEqual(plain(batches([rs[1]])[0]), plain(allTypes));
  assert.deepEqual(plain(batches([rs[3]])[0]), plain(allTypes));
  // Also when the hostile frame fails half-way, after its definition.
  const cut = frameWithBody(hostile.subarray(FRAME_HEADER_BYTES, hostile.length - 1));
  const rs2 = dec.decode(Buffer.concat([cut, valid]));
  assert.deepEqual(
    rs2.map((r) => r.kind),
    ['error', 'batch'],
  );
  assert.deepEqual(plain(batches([rs2[1]])[0]), plain(allTypes));
});

test('truncated frames wait for the rest; a body shorter than its value is malformed', () => {
  const frame = FrameEncoder.detach(new FrameEncoder().encodeBatch(allTypes));
  const dec = new FrameDecoder();
  assert.deepEqual(dec.decode(frame.subarray(0, frame.length - 1)), []);
  assert.equal(dec.bufferedBytes, frame.length - 1 - FRAME_HEADER_BYTES); // the header is consumed
  assert.deepEqual(plain(batches(dec.decode(frame.subarray(frame.length - 1)))[0]), plain(allTypes));
  assert.equal(dec.bufferedBytes, 0);

  // The header says the body ends early: the msgpack value is cut.
  const cut = Buffer.from(frame.subarray(0, frame.length - 10));
  cut.writeUInt32BE(cut.length - FRAME_HEADER_BYTES, 0);
  const rs = new FrameDecoder().decode(cut);
  assert.ok(rs.length === 1 && rs[0].kind === 'error' && rs[0].error.code === 'MalformedFrame');
});

test('invalid Raft items are dropped and counted; valid items in the same frame survive', () => {
  const good1: Envelope = { k: 'raft', m: sample('hb') };
  const good2: Envelope = { k: 'app', t: 'load', p: { cpu: 0.5 } };
  const app = sample('app') as Extract<Message, { type: 'app' }>;
  const items = [
    good1,
    { k: 'raft', m: { ...sample('hb'), commit: -1 } }, //                          negative
    { k: 'raft', m: { ...app, entries: [{ ...app.entries[0], index: 99 }] } }, //  entry index gap
    { k: 'raft', m: { ...sample('vote'), term: 2 ** 60 } }, //                      unsafe integer
    { k: 'raft', m: 'not a message' },
    { k: 'raft' },
    good2,
    { k: 'app', t: '' }, //                                                        app without a type
    { k: 'app', t: 'x'.repeat(500) },
    17,
    null,
    ['k', 'raft'],
  ];
  const dec = new FrameDecoder();
  const rs = dec.decode(rawFrame({ items }));
  assert.equal(rs.length, 1);
  const r = rs[0];
  assert.ok(r.kind === 'batch');
  assert.deepEqual(plain(r.envelopes), plain([good1, good2]));
  assert.equal(r.items, items.length);
  assert.deepEqual(r.dropped, { 'raft.Malformed': 5, InvalidEnvelope: 5 });
  assert.deepEqual(dec.stats.drops, { 'raft.Malformed': 5, InvalidEnvelope: 5 });
  assert.equal(dec.stats.envelopes, 2);
});

test('unknown envelope kinds are dropped and counted without losing the frame', () => {
  const items = [
    { k: 'future', x: 1 },
    { k: 42 },
    { m: sample('hb') },
    { k: 'toString' },
    { k: '__proto__' },
    { k: 'raft', m: sample('timeoutNow') },
  ];
  const dec = new FrameDecoder();
  const [r] = dec.decode(rawFrame({ items }));
  assert.ok(r.kind === 'batch');
  assert.equal(r.envelopes.length, 1);
  assert.deepEqual(r.dropped, { UnknownKind: 5 });
  assert.equal(dec.stats.drops.UnknownKind, 5);
});

test('decoded binary data is copied out of the receive buffer', () => {
  const envs: Envelope[] = [
    { k: 'raft', m: sample('app') },
    { k: 'raft', m: sample('snap') },
    { k: 'app', t: 'forward', p: { data: bytes('proposal') } },
  ];
  const chunk = FrameEncoder.detach(new FrameEncoder().encodeBatch(envs));
  const [got] = batches(new FrameDecoder().decode(chunk)); // one chunk: decoded in place
  const before = plain(got);
  chunk.fill(0xee);
  assert.deepEqual(plain(got), before);
  assert.deepEqual(plain(got), plain(envs));
  const ents = (got[0] as Extract<Envelope, { k: 'raft' }>).m as Extract<Message, { type: 'app' }>;
  assert.notEqual(ents.entries[0].data.buffer, chunk.buffer);
});

test('the structure table is pinned: unknown shapes go inline and never extend it', () => {
  const enc = new FrameEncoder();
  const before = enc.structureTable();
  assert.deepEqual(before, SCHEMA());
  // 200 distinct shapes, more than msgpackr would ever add to a shared table (32 by default).
  for (let i = 0; i < 200; i++) {
    const p = { [`field${i}`]: i, [`other${i}`]: { [`nested${i}`]: [i] } };
    const frame = enc.encodeBatch([
      { k: 'app', t: 'shape', p },
      { k: 'raft', m: { type: 'mystery', n: i } as unknown as Message },
    ]);
    // A fresh decoder (a peer that never saw anything) reads it.
    const [r] = new FrameDecoder().decode(frame);
    assert.ok(r.kind === 'batch');
    assert.deepEqual(r.envelopes, [{ k: 'app', t: 'shape', p }]);
    assert.deepEqual(r.dropped, { 'raft.Malformed': 1 });
  }
  assert.deepEqual(enc.structureTable(), before);
  // And known shapes still encode byte for byte as with a fresh encoder.
  assert.deepEqual([...enc.encodeBatch(allTypes)], [...new FrameEncoder().encodeBatch(allTypes)]);
});

test('wire size of typical append messages (one 16 B entry)', (t) => {
  const enc = new FrameEncoder();
  const batch: Envelope[] = Array.from({ length: 1000 }, (_, i) => ({ k: 'raft', m: typicalAppend(i) }));
  const frame = enc.encodeBatch(batch);
  const perMsg = frame.length / 1000;
  const single = enc.encodeBatch([batch[0]]).length;
  const hb = enc.encodeBatch([{ k: 'raft', m: sample('hb') }]).length;
  t.diagnostic(
    `append, 1000 per frame: ${perMsg.toFixed(1)} B/message (frame ${frame.length} B); alone in a frame: ${single} B; heartbeat alone: ${hb} B`,
  );
  // Field names never go on the wire: with them an append is over 110 B.
  assert.ok(perMsg < 70, `${perMsg} B/message`);
  assert.ok(single < 80, `${single} B`);
  assert.equal(batches(new FrameDecoder().decode(frame))[0].length, 1000);
});
