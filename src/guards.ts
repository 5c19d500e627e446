// Narrowing of values that come from outside the process (a config file, a request body, an admin
// answer, an embedder's options): one definition for every layer. Like errors.ts it sits below
// every layer and imports nothing, so the command line can use it before loading anything else.

/** A JSON-style object: not null, not an array. */
export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
