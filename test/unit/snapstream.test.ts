// Snapshot streams (src/storage/snapstream.ts) without a network: frames carried by hand between a
// sender and a stager, with losses, duplicates, reordering, corruption and a dropped link.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SnapshotSender,
  SnapshotStager,
  decodeSnapFrame,
  encodeSnapFrame,
  snapshotStreamLimits,
  type SnapFrame,
  type SnapshotId,
  type SnapshotReader,
  type StageStep,
} from '../../src/storage/snapstream.js';
import { SnapshotStreamError } from '../../src/storage/errors.js';

const ID: SnapshotId = { group: 7, index: 1234, term: 3 };
const limits = snapshotStreamLimits({ chunkBytes: 4096, window: 3, ackTimeoutMs: 100, giveUpMs: 1_000 });

function image(bytes: number, seed = 1): Uint8Array {
  const b = new Uint8Array(bytes);
  let x = seed;
  for (let i = 0; i < bytes; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A reader over `b` in odd-sized pieces (the sender must pack them into whole chunks). */
function reader(b: Uint8Array): SnapshotReader & { closed: boolean } {
  let at = 0;
  const r = {
    closed: false,
    read(max: number) {
      if (at >= b.byteLength) return null;
      const n = Math.min(max, 1000 + (at % 777), b.byteLength - at);
      const out = b.slice(at, at + n);
      at += n;
      return out;
    },
    close() {
      r.closed = true;
    },
  };
  return r;
}

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-snapstream-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const chunkOf = (b: Uint8Array) => {
  const f = decodeSnapFrame(b);
  assert.equal(f.kind, 'chunk');
  return f as Extract<SnapFrame, { kind: 'chunk' }>;
};
const ackOf = (s: StageStep) => decodeSnapFrame(s.ack) as Extract<SnapFrame, { kind: 'ack' }>;

function installed(stager: SnapshotStager, id = ID): Uint8Array {
  const staged = stager.take(id);
  assert.ok(staged, 'a complete staging');
  const out = new Uint8Array(Buffer.concat([...staged.chunks(5000)]));
  staged.remove();
  return out;
}

test('frames round-trip; a flipped bit anywhere is refused with a typed error', () => {
  const f: SnapFrame = {
    kind: 'chunk',
    id: ID,
    seq: 5,
    data: image(300),
    end: { chunks: 6, bytes: 9000, crc: 0xdeadbeef },
  };
  const b = encodeSnapFrame(f);
  assert.deepEqual(decodeSnapFrame(b), f);
  const a: SnapFrame = { kind: 'ack', id: ID, next: 9, status: 'restart' };
  assert.deepEqual(decodeSnapFrame(encodeSnapFrame(a)), a);
  for (const at of [0, 3, 40, b.byteLength - 1]) {
    const bad = b.slice();
    bad[at] ^= 0x10;
    assert.throws(
      () => decodeSnapFrame(bad),
      (e: unknown) => e instanceof SnapshotStreamError && e.code === 'SnapshotStream' && e.fault === 'BadFrame',
    );
  }
});

test('limits are validated, and a chunk must fit in a frame', () => {
  assert.equal(snapshotStreamLimits().chunkBytes, 1024 * 1024);
  assert.throws(() => snapshotStreamLimits({ chunkBytes: 100 }), RangeError);
  assert.throws(() => snapshotStreamLimits({ window: 0 }), RangeError);
  assert.throws(() => snapshotStreamLimits({ maxOutgoing: 1.5 }), RangeError);
  assert.throws(() => snapshotStreamLimits({ chunkBytes: 1 << 20 }, 1 << 20), /does not fit/);
});

test('a whole stream: in order, windowed, verified, staged in a file and read back exactly', () => {
  withDir((dir) => {
    const data = image(50_000);
    const src = reader(data);
    const sender = new SnapshotSender(ID, src, limits, 0);
    const stager = new SnapshotStager(dir);
    let frames = sender.pump(0);
    assert.equal(frames.length, limits.window, 'no more than the window unacknowledged');
    let outcome = null;
    let chunks = 0;
    while (outcome === null) {
      const next: Uint8Array[] = [];
      for (const f of frames) {
        const c = chunkOf(f);
        assert.ok(c.data.byteLength <= limits.chunkBytes);
        chunks++;
        const step = stager.onChunk(c, 0);
        assert.equal(step.error, null);
        const r = sender.onAck(ackOf(step), 0);
        next.push(...r.frames);
        outcome ??= r.outcome;
      }
      frames = next;
    }
    assert.equal(outcome, 'done');
    assert.equal(chunks, Math.ceil(50_000 / 4096));
    sender.close();
    assert.ok(src.closed);
    assert.deepEqual(installed(stager), data);
    assert.equal(stager.size, 0);
  });
});

test('duplicates and gaps are answered with the first missing chunk; the sender resends after its timeout', () => {
  withDir((dir) => {
    const data = image(30_000);
    const sender = new SnapshotSender(ID, reader(data), limits, 0);
    const stager = new SnapshotStager(dir);
    const [f0, , f2] = sender.pump(0).map(chunkOf);
    assert.equal(ackOf(stager.onChunk(f0, 0)).next, 1);
    // f1 is lost: f2 arrives out of order and is not staged.
    const gap = ackOf(stager.onChunk(f2, 0));
    assert.deepEqual([gap.next, gap.status], [1, 'more']);
    // A duplicate of f0: same answer, nothing appended twice.
    assert.equal(ackOf(stager.onChunk(f0, 0)).next, 1);
    assert.equal(stager.staged(ID.group)?.bytes, f0.data.byteLength);
    let r = sender.onAck(gap, 10);
    assert.equal(r.frames.length, 1, 'chunk 0 acknowledged: one more fits the window');
    r = sender.onTimer(50);
    assert.deepEqual(r.frames, [], 'not before the ack timeout');
    r = sender.onTimer(200);
    assert.deepEqual(
      r.frames.map((f) => chunkOf(f).seq),
      [1, 2, 3],
      'go-back-N from the first unacknowledged chunk',
    );
    let frames = r.frames;
    let outcome = null;
    while (outcome === null) {
      const next: Uint8Array[] = [];
      for (const f of frames) {
        const step = sender.onAck(ackOf(stager.onChunk(chunkOf(f), 300)), 300);
        next.push(...step.frames);
        outcome ??= step.outcome;
      }
      frames = next;
    }
    assert.equal(outcome, 'done');
    assert.deepEqual(installed(stager), data);
  });
});

test('after a dropped link the stream resumes where the receiver stands, keeping what it staged', () => {
  withDir((dir) => {
    const data = image(60_000);
    const sender = new SnapshotSender(ID, reader(data), limits, 0);
    const stager = new SnapshotStager(dir);
    // Five chunks get through; then the link drops everything in flight both ways.
    let frames = sender.pump(0);
    let delivered = 0;
    while (delivered < 5) {
      const next: Uint8Array[] = [];
      for (const f of frames) {
        if (delivered >= 5) break;
        next.push(...sender.onAck(ackOf(stager.onChunk(chunkOf(f), 0)), 0).frames);
        delivered++;
      }
      frames = next;
    }
    assert.equal(stager.staged(ID.group)?.next, 5);
    // The link is back: the sender's timer resends its window; the receiver keeps its 5 chunks.
    const again = sender.onTimer(500);
    assert.equal(chunkOf(again.frames[0]).seq, 5, "resumes at the receiver's next chunk, not at 0");
    frames = again.frames;
    let outcome = null;
    while (outcome === null) {
      const next: Uint8Array[] = [];
      for (const f of frames) {
        const step = sender.onAck(ackOf(stager.onChunk(chunkOf(f), 600)), 600);
        next.push(...step.frames);
        outcome ??= step.outcome;
      }
      frames = next;
    }
    assert.equal(outcome, 'done');
    assert.deepEqual(installed(stager), data);
  });
});

test('totals that do not match are refused with StreamChecksum and nothing is left to install', () => {
  withDir((dir) => {
    const stager = new SnapshotStager(dir);
    const data = image(5000);
    stager.onChunk({ kind: 'chunk', id: ID, seq: 0, data: data.subarray(0, 4096), end: null }, 0);
    const step = stager.onChunk(
      { kind: 'chunk', id: ID, seq: 1, data: data.subarray(4096), end: { chunks: 2, bytes: 5000, crc: 12345 } },
      0,
    );
    assert.ok(step.error instanceof SnapshotStreamError && step.error.fault === 'StreamChecksum');
    assert.deepEqual([ackOf(step).status, ackOf(step).next], ['restart', 0]);
    assert.equal(stager.take(ID), null, 'an unverified stream is never handed out');
    assert.equal(stager.size, 0);
  });
});

test('a receiver that lost its staging makes the sender fail (the leader retries), unless chunk 0 is still held', () => {
  withDir((dir) => {
    const stager = new SnapshotStager(dir);
    const sender = new SnapshotSender(ID, reader(image(40_000)), limits, 0);
    const [f0] = sender.pump(0).map(chunkOf);
    // A chunk other than the first, for a stream the receiver does not know: 'restart'.
    const lost = ackOf(stager.onChunk({ ...f0, seq: 1 }, 0));
    assert.equal(lost.status, 'restart');
    assert.equal(sender.onAck(lost, 0).frames.length, 3, 'chunk 0 still held: resend from it');
    sender.onAck(ackOf(stager.onChunk(f0, 0)), 0);
    assert.equal(sender.onAck(lost, 0).outcome, 'failed', 'chunk 0 acknowledged and dropped: cannot go back');
  });
});

test('a staged file changed on disk is caught when it is read back for install', () => {
  withDir((dir) => {
    const stager = new SnapshotStager(dir);
    const data = image(3000);
    const sender = new SnapshotSender(ID, reader(data), limits, 0);
    const step = stager.onChunk(chunkOf(sender.pump(0)[0]), 0);
    assert.ok(step.completed);
    const path = join(dir, `${ID.group}-${ID.index}-${ID.term}.part`);
    const b = readFileSync(path);
    b[100] ^= 1;
    writeFileSync(path, b);
    const staged = stager.take(ID)!;
    assert.throws(
      () => [...staged.chunks()],
      (e: unknown) => e instanceof SnapshotStreamError && e.fault === 'StreamChecksum',
    );
  });
});

test('an older snapshot does not push out a newer one still moving; an idle one expires', () => {
  withDir((dir) => {
    const stager = new SnapshotStager(dir, 1_000);
    const newer = { ...ID, index: 2000 };
    stager.onChunk({ kind: 'chunk', id: newer, seq: 0, data: image(10), end: null }, 0);
    const older = ackOf(stager.onChunk({ kind: 'chunk', id: ID, seq: 0, data: image(10), end: null }, 10));
    assert.equal(older.status, 'refused');
    // Once the newer one stalled for giveUpMs it may be replaced.
    const later = ackOf(stager.onChunk({ kind: 'chunk', id: ID, seq: 0, data: image(10), end: null }, 2_000));
    assert.deepEqual([later.status, later.next], ['more', 1]);
    assert.equal(stager.staged(ID.group)?.id.index, ID.index);
    stager.expire(5_000);
    assert.equal(stager.size, 0, 'an abandoned staging is dropped');
  });
});

test('holdDone: a complete stream is answered "more" until its owner says it is ready; the sender waits, keeping the last chunk', () => {
  withDir((dir) => {
    const stager = new SnapshotStager(dir, 1_000, true);
    const sender = new SnapshotSender(ID, reader(image(10_000)), limits, 0);
    let frames = sender.pump(0);
    let last: StageStep | null = null;
    while (frames.length > 0) {
      const next: Uint8Array[] = [];
      for (const f of frames) {
        last = stager.onChunk(chunkOf(f), 0);
        const r = sender.onAck(ackOf(last), 0);
        assert.equal(r.outcome, null, 'not done before the receiver is ready');
        next.push(...r.frames);
      }
      frames = next;
    }
    assert.ok(last?.completed);
    assert.equal(ackOf(last!).status, 'more');
    assert.equal(stager.take(ID), null, 'not taken before it is ready');
    // The 'done' is lost: the sender asks again by resending its last chunk.
    const again = sender.onTimer(500);
    assert.deepEqual(
      again.frames.map((f) => chunkOf(f).seq),
      [2],
    );
    assert.equal(ackOf(stager.onChunk(chunkOf(again.frames[0]), 500)).status, 'more');
    assert.ok(stager.completed(ID), 'a complete staging can be read before it is ready');
    const done = stager.ready(ID, 600);
    assert.ok(done);
    assert.equal(sender.onAck(decodeSnapFrame(done) as Extract<SnapFrame, { kind: 'ack' }>, 600).outcome, 'done');
    assert.ok(stager.take(ID));
  });
});

test('a sender resends nothing to a peer known down, and gives up after giveUpMs without progress', () => {
  const sender = new SnapshotSender(ID, reader(image(20_000)), limits, 0);
  assert.equal(sender.pump(0).length, limits.window);
  assert.deepEqual(sender.onTimer(500, false).frames, [], 'no resend while the peer is down');
  assert.equal(sender.onTimer(600).frames.length, limits.window, 'resent once it is not');
  const r = sender.onTimer(limits.giveUpMs + 1);
  assert.equal(r.outcome, 'failed');
  assert.match(r.reason, /no progress/);
});
