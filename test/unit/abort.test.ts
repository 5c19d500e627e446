// Cancellation helpers (src/runtime/abort.ts): one 'abort' listener per signal however many calls
// share it, gone when the last call settles; aborted calls reject with AbortError at once and the
// work's own outcome, arriving later, is dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { abortable, onAbort } from '../../src/runtime/abort.js';
import { AbortError, RuntimeError } from '../../src/runtime/errors.js';

test('one listener per signal, removed when the last registration goes', () => {
  const ac = new AbortController();
  const offs = Array.from({ length: 50 }, () => onAbort(ac.signal, () => undefined));
  assert.equal(getEventListeners(ac.signal, 'abort').length, 1);
  for (const off of offs.slice(1)) off();
  assert.equal(getEventListeners(ac.signal, 'abort').length, 1);
  offs[0]();
  offs[0](); // idempotent
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
  // A new registration after all were removed listens again.
  let fired = 0;
  onAbort(ac.signal, () => fired++);
  ac.abort();
  assert.equal(fired, 1);
});

test('abortable: before the call, during it, and not at all', async () => {
  let ran = false;
  const reason = new Error('why');
  await assert.rejects(
    abortable(AbortSignal.abort(reason), 'op', async () => {
      ran = true;
    }),
    (e) => e instanceof AbortError && e instanceof RuntimeError && e.name === 'AbortError' && e.cause === reason,
  );
  assert.equal(ran, false, 'an aborted signal never starts the work');

  const ac = new AbortController();
  let finish!: (v: string) => void;
  const p = abortable(ac.signal, 'op', () => new Promise<string>((r) => (finish = r)));
  ac.abort();
  await assert.rejects(p, (e) => e instanceof AbortError && e.code === 'Aborted' && !e.retryable);
  finish('late'); // dropped: the call already settled
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0);

  const ok = new AbortController();
  assert.equal(await abortable(ok.signal, 'op', async () => 7), 7);
  await assert.rejects(
    abortable(ok.signal, 'op', async () => {
      throw new RuntimeError('Timeout', 'slow');
    }),
    /slow/,
  );
  assert.equal(getEventListeners(ok.signal, 'abort').length, 0);
  assert.equal(await abortable(undefined, 'op', async () => 'plain'), 'plain');
});
