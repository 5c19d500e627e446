// One request to a node's admin address for the operator commands, and the address itself: a
// failed connection is reported by its cause (nothing listening, a name that does not resolve,
// no answer, not an HTTP server) with what to check, instead of a bare errno.
import { request } from 'node:http';
import { FlotillaError } from '../errors.js';
import { isObject } from './json.js';

/** Where the admin server is, and the token it may require. */
export interface Admin {
  readonly host: string;
  readonly port: number;
  /** As the operator gave it, without a scheme. */
  readonly address: string;
  readonly token?: string;
}

export interface Answer {
  readonly status: number;
  readonly json: Record<string, unknown>;
}

/** The admin address could not be reached; `errno` is the system's code (ECONNREFUSED, ...). */
export class AdminUnreachable extends FlotillaError<'Unreachable'> {
  constructor(
    readonly admin: string,
    readonly errno: string,
    why: string,
  ) {
    super('Unreachable', `cannot reach ${admin}: ${why}`);
  }
}

/** How long one request may take: a transfer or a drain answers when done (bounded by the node). */
const REQUEST_TIMEOUT_MS = 120_000;

/** `HOST:PORT`, `[v6]:PORT`, or `http://HOST:PORT[/]` (the scheme dropped: the admin server
 *  speaks plain HTTP); a string says why it is not an admin address. */
export function parseAdmin(given: string, token: string | undefined): Admin | string {
  let address = given;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(given);
  if (scheme) {
    if (scheme[1].toLowerCase() !== 'http')
      return `--admin ${given}: the admin server speaks plain HTTP; give HOST:PORT (drop "${scheme[1]}://")`;
    address = given.slice(scheme[0].length).replace(/\/$/, '');
    if (address.includes('/')) return `--admin ${given}: give HOST:PORT, without a path`;
  }
  const colon = address.lastIndexOf(':');
  const host = colon > 0 ? address.slice(0, colon).replace(/^\[|\]$/g, '') : '';
  const port = colon > 0 ? Number(address.slice(colon + 1)) : Number.NaN;
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535)
    return `--admin must be HOST:PORT, e.g. 127.0.0.1:8001 (got ${JSON.stringify(given)})`;
  return { host, port, address, token };
}

/** The cause of a failed connection in words, with what to check. */
function explain(a: Admin, e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ECONNREFUSED':
      return `nothing listens on ${a.address} (ECONNREFUSED): is the node running, and started with --admin ${a.address}?`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host name "${a.host}" does not resolve (${e.code})`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route to ${a.host} (${e.code})`;
    case 'ETIMEDOUT':
    case 'TIMEOUT':
      return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s (${e.code}): the node may be overloaded, or the address firewalled`;
    case 'ECONNRESET':
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_VERSION':
    case 'HPE_INVALID_HEADER_TOKEN':
      return `${a.address} did not answer HTTP (${e.code}): is it the node's --listen address rather than its --admin address?`;
    default:
      return `${e.message}${e.code ? ` (${e.code})` : ''}`;
  }
}

/** One admin request. node:http, not the global fetch: the first fetch loads the bundled HTTP
 *  client and compiles its WebAssembly parser, and the process cannot exit until that finishes.
 *  Measured here: ~0.25 s of CPU per command, 0.45-1.25 s of wall time on a busy machine (it was
 *  most of what a CLI transfer took beyond the transfer itself); with node:http, 80-100 ms. */
export function call(a: Admin, method: string, path: string, body?: unknown): Promise<Answer> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = {};
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.byteLength;
  }
  if (a.token) headers.authorization = `Bearer ${a.token}`;
  return new Promise((resolve, reject) => {
    const fail = (e: NodeJS.ErrnoException) =>
      reject(new AdminUnreachable(a.address, e.code ?? 'EUNKNOWN', explain(a, e)));
    const req = request({ host: a.host, port: a.port, method, path, headers, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', fail);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown>;
        try {
          const parsed: unknown = JSON.parse(text);
          json = isObject(parsed) ? parsed : { message: text };
        } catch {
          json = { message: text };
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', fail);
    req.end(payload);
  });
}
