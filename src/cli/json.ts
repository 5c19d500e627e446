// JSON the command line reads from outside the process (a config file, a node's admin answers):
// narrowed by checks, never asserted, so that a bad file or an answer of another version gives a
// clear message (or a '-' in a table) instead of a TypeError.
import type { NodeStatus } from '../runtime/node.js';

export { isObject } from '../guards.js';

/** `x` when it is a list, else an empty one. */
export function list(x: unknown): unknown[] {
  return Array.isArray(x) ? x : [];
}

/** GET /status as JSON: NodeStatus's fields, each still to be checked where it is read. */
export type StatusJson = { readonly [K in keyof NodeStatus]?: unknown };
