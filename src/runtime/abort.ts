// Cancellation of API calls by the caller's AbortSignal. One 'abort' listener per signal however
// many calls share it (a caller may pass one signal to thousands of concurrent proposals: a
// listener each would trip Node's MaxListeners warning and cost an EventTarget insertion per
// call); each call registers a callback in that signal's set and takes it out when it settles, so
// nothing outlives the call. No timer is involved: deadlines stay with `timeoutMs`.
import { AbortError } from './errors.js';

interface Watch {
  readonly callbacks: Set<() => void>;
  readonly fire: () => void;
}

const watches = new WeakMap<AbortSignal, Watch>();

/** Call `fn` when `signal` aborts; the returned function unregisters it (idempotent). */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let w = watches.get(signal);
  if (w === undefined) {
    const callbacks = new Set<() => void>();
    const fire = () => {
      watches.delete(signal);
      for (const f of callbacks) f();
      callbacks.clear();
    };
    w = { callbacks, fire };
    watches.set(signal, w);
    signal.addEventListener('abort', fire, { once: true });
  }
  const watch = w;
  watch.callbacks.add(fn);
  return () => {
    if (!watch.callbacks.delete(fn) || watch.callbacks.size > 0) return;
    if (watches.get(signal) === watch) watches.delete(signal);
    signal.removeEventListener('abort', watch.fire);
  };
}

/** The error an aborted call rejects with. */
export function abortError(what: string, signal: AbortSignal): AbortError {
  return new AbortError(`${what} aborted`, signal.reason);
}

/** Throw at once if `signal` has aborted (checked between the steps of a call). */
export function throwIfAborted(what: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(what, signal);
}

/**
 * Run `run` under `signal`: an already aborted signal rejects before `run` starts; a later abort
 * rejects at once while `run` goes on to its next step, where it is expected to stop (it sees
 * `signal.aborted`). Its own outcome is then dropped. Without a signal this is `run()`.
 */
export function abortable<T>(signal: AbortSignal | undefined, what: string, run: () => Promise<T>): Promise<T> {
  if (signal === undefined) return run();
  if (signal.aborted) return Promise.reject(abortError(what, signal));
  return new Promise<T>((resolve, reject) => {
    const off = onAbort(signal, () => reject(abortError(what, signal)));
    let p: Promise<T>;
    try {
      p = run();
    } catch (e) {
      off();
      reject(e);
      return;
    }
    p.then(
      (v) => {
        off();
        resolve(v);
      },
      (e: unknown) => {
        off();
        reject(e);
      },
    );
  });
}
