// Admin HTTP server of a node (node:http), and the request handler behind it, which an
// application can mount on a server of its own: GET /status, /health, /metrics, operator routes
// (transfer, drain, members, balancer, the cluster's nodes and their decommission), and a key-value gateway for clients in any language —
// PUT /kv/<key> (body = value), GET /kv/<key>[?consistency=stale] (404 when missing),
// POST /kv/<key>?cas with JSON {"expected":..., "value":...} (409 when the compare fails),
// DELETE /kv/<key> (says whether it removed a value). HEAD answers wherever GET does. Errors are
// JSON {error, message} with a fitting status; a wrong method is 405 with an Allow header.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { FlotillaNode } from '../runtime/node.js';
import { RUNTIME_ERROR_CODES, RuntimeError, TransferError, type RuntimeErrorCode } from '../runtime/errors.js';
import { Exposition, allReasons } from '../runtime/metrics.js';
import { processSampler } from '../runtime/processmetrics.js';
import { isObject } from '../guards.js';

export const MAX_BODY_BYTES = 1 << 20;
export const MAX_KEY_BYTES = 1024;

// Exhaustive by type: a new runtime code must be given its HTTP status here.
const STATUS_OF: Record<RuntimeErrorCode, number> = {
  InvalidArgument: 400,
  NotLeader: 503,
  Unavailable: 503,
  Overloaded: 429,
  TransferInProgress: 503,
  ConfChangeInProgress: 503,
  Timeout: 504,
  Stopped: 503,
  StorageFailed: 500,
  TransferFailed: 409,
  // The state machine refused the command (its own message): well-formed HTTP, an unprocessable write.
  StateMachineError: 422,
  // The gateway passes no AbortSignal, so no request of its own ends this way; a 503 if one did.
  Aborted: 503,
};

/** Error codes of the HTTP layer itself (the runtime's are RuntimeErrorCode). */
export type HttpErrorCode =
  | 'InvalidArgument'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'MethodNotAllowed'
  | 'Internal';

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: HttpErrorCode,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

// Every code an error answer can carry, exhaustive by type, so that the error counter shows each
// at 0 from the start.
const ERROR_CODES: Readonly<Record<HttpErrorCode | RuntimeErrorCode, true>> = {
  ...RUNTIME_ERROR_CODES,
  Unauthorized: true,
  Forbidden: true,
  NotFound: true,
  MethodNotAllowed: true,
  Internal: true,
};

/** The methods each route takes (HEAD wherever GET), for routing and the Allow header of a 405. */
const ROUTES: Readonly<Record<string, readonly string[]>> = {
  '/status': ['GET', 'HEAD'],
  '/health': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
  '/transfer': ['POST'],
  '/drain': ['POST'],
  '/undrain': ['POST'],
  '/members': ['POST'],
  '/balance': ['POST'],
  '/balance/plan': ['GET', 'HEAD'],
  '/balance/config': ['GET', 'HEAD', 'POST'],
  '/debug/crash-worker': ['POST'],
  '/debug/disk-delay': ['POST'],
  '/nodes': ['GET', 'HEAD'],
};
/** POST starts a node's decommission, DELETE cancels it (`/nodes/<id>/decommission`). */
const DECOMMISSION_ROUTE = '/nodes/<id>/decommission';
const DECOMMISSION_METHODS: readonly string[] = ['POST', 'DELETE'];
const KV_METHODS: readonly string[] = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'];

function methodNotAllowed(method: string | undefined, route: string, allowed: readonly string[]): HttpError {
  const allow = allowed.join(', ');
  return new HttpError(405, 'MethodNotAllowed', `${method} not allowed on ${route} (allowed: ${allow})`, {
    allow,
  });
}

/** A JSON answer (a HEAD request gets the same status and headers; node:http leaves out the body). */
function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendBytes(res, status, Buffer.from(JSON.stringify(body)), 'application/json', headers);
}

function sendBytes(
  res: ServerResponse,
  status: number,
  data: Buffer,
  type: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...headers, 'content-type': type, 'content-length': data.length });
  res.end(data);
}

const OK_BODY = Buffer.from('{"ok":true}');
const DELETED_BODY = Buffer.from('{"ok":true,"deleted":true}');
const MISSING_BODY = Buffer.from('{"ok":true,"deleted":false}');

/** The answer to a successful write: a constant body, and the node id of the key's leader as
 *  this node knows it (x-flotilla-leader), so a client that knows where each node serves can
 *  send the next write for that key straight there (any node still serves any key). */
function sendOk(res: ServerResponse, leader: string | undefined, body = OK_BODY): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': body.length,
  };
  if (leader) headers['x-flotilla-leader'] = leader;
  res.writeHead(200, headers);
  res.end(body);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, 'InvalidArgument', `body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export interface AdminOptions {
  /** Enables POST /debug/crash-worker?worker=N and /debug/disk-delay?ms=M&jitterMs=J (fault
   *  drills and tests). Default false. */
  readonly faultInjection?: boolean;
  /** When set, every request that changes state (any method but GET/HEAD) and every read of a
   *  key (GET/HEAD /kv/<key>) must carry `Authorization: Bearer <token>`. /status, /health,
   *  /metrics and the balancer's GET routes stay open: probes and scrapers read them. */
  readonly token?: string;
  /** A second token that reads keys (GET/HEAD /kv/<key>) and changes nothing: for clients that
   *  only read. Only together with `token` (flag `--admin-read-token`). */
  readonly readToken?: string;
  /** Where a request that failed unexpectedly is logged. Default: silent. */
  readonly logger?: Logger;
  /** True once the node has begun to stop: from then on every response asks its client to close
   *  the connection, so no client holds an idle keep-alive connection when the server closes. */
  readonly stopping?: () => boolean;
}

/** How long the server keeps an idle keep-alive connection, and the shorter time it advertises
 *  (`Keep-Alive: timeout=`). A request a client writes on a connection the server is closing at
 *  that moment fails with "other side closed", though the server never read it. Clients give up
 *  an idle connection shortly before the advertised timeout (undici: one second), a margin an
 *  event-loop stall on a busy machine can eat; with Node's default (5 s advertised, 5 s real) that
 *  race showed up as failed PUTs under load and right after long operator commands. Advertising
 *  60 s and closing at 65 s needs a 6 s stall to lose the race, and expiries are rare. */
export const KEEP_ALIVE_IDLE_MS = 65_000;
export const KEEP_ALIVE_ADVERTISED_S = 60;

/** A request body as JSON, or a 400 with `usage` when it is not JSON. */
function parseJson(text: string, usage: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'InvalidArgument', usage);
  }
}

function authorized(req: IncomingMessage, token: string): boolean {
  const h = req.headers.authorization ?? '';
  const given = Buffer.from(h.startsWith('Bearer ') ? h.slice(7) : '');
  const want = Buffer.from(token);
  // Same-length compare in constant time; a length mismatch compares against itself, so a wrong
  // length costs the same time as a wrong token.
  if (given.length !== want.length) {
    timingSafeEqual(want, want);
    return false;
  }
  return timingSafeEqual(given, want);
}

/** Stop the admin server: no new connections, idle ones closed at once, and a connection that
 *  goes idle after answering its last request closed as soon as it does (swept every 100 ms: the
 *  keep-alive timeout is long, and close() alone would wait it out). After `graceMs` whatever is
 *  still open is cut. Resolves when every connection has ended. */
export function closeAdmin(server: Server, graceMs = 5_000): Promise<void> {
  return new Promise((resolve) => {
    const sweep = setInterval(() => server.closeIdleConnections(), 100);
    const cut = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearInterval(sweep);
      clearTimeout(cut);
      resolve();
    });
  });
}

/** The admin routes as a node:http request handler, for an application that serves them (or
 *  some: it can pass only /metrics and /health on to it) from a server of its own. `startAdmin`
 *  is this handler on a server with the keep-alive and timeout settings described above. */
export function adminHandler(
  node: FlotillaNode,
  o: AdminOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  if (o.readToken !== undefined && !o.token)
    throw new RuntimeError('InvalidArgument', 'admin readToken is only meaningful together with token');
  const log = o.logger ?? pino({ level: 'silent' });
  const errors = allReasons(ERROR_CODES, {});
  const ctx: Context = { node, o, errors };
  // GC and event-loop figures count from here, not from the first scrape.
  processSampler();
  return (req, res) => {
    if (o.stopping?.()) res.setHeader('Connection', 'close');
    handle(ctx, req, res).catch((e: unknown) => {
      if (e instanceof HttpError) {
        errors[e.code]++;
        return send(res, e.status, { error: e.code, message: e.message }, { ...e.headers });
      }
      if (e instanceof RuntimeError) {
        errors[e.code]++;
        return send(res, STATUS_OF[e.code] ?? 500, {
          error: e.code,
          message: e.message,
          leader: e.leader || undefined,
          reason: e instanceof TransferError ? e.reason : undefined,
        });
      }
      errors.Internal++;
      log.error({ err: e, method: req.method, url: req.url }, 'admin request failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      send(res, 500, { error: 'Internal', message: (e as Error).message });
    });
  };
}

export function startAdmin(
  node: FlotillaNode,
  host: string,
  port: number,
  log: Logger,
  o: AdminOptions = {},
): Promise<Server> {
  const handler = adminHandler(node, { logger: log, ...o });
  const server = createServer((req, res) => {
    if (!o.stopping?.() && res.shouldKeepAlive) {
      // Set by hand so that Node does not add its own Keep-Alive line with the real timeout.
      res.setHeader('Connection', 'keep-alive');
      res.setHeader('Keep-Alive', `timeout=${KEEP_ALIVE_ADVERTISED_S}`);
    }
    handler(req, res);
  });
  // Slow clients cannot hold the server.
  server.requestTimeout = 15_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = KEEP_ALIVE_IDLE_MS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/** What every request of one handler shares: its node, options and error counts by code. */
interface Context {
  readonly node: FlotillaNode;
  readonly o: AdminOptions;
  readonly errors: Record<string, number>;
}

/** Whether a request may go on: a change needs the admin token, a key read the admin or the
 *  read token; with no token set, anything goes. */
function allowed(req: IncomingMessage, o: AdminOptions, what: 'change' | 'readKey'): boolean {
  if (!o.token) return true;
  if (authorized(req, o.token)) return true;
  return what === 'readKey' && o.readToken !== undefined && authorized(req, o.readToken);
}

async function handle(ctx: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { node, o } = ctx;
  const raw = req.url ?? '/';
  const reading = req.method === 'GET' || req.method === 'HEAD';
  // The key-value gateway is the hot path: its path and query are split by hand (a URL object
  // per request costs more than the rest of the routing).
  if (raw.startsWith('/kv/')) {
    if (!KV_METHODS.includes(req.method ?? '')) throw methodNotAllowed(req.method, '/kv/<key>', KV_METHODS);
    if (!allowed(req, o, reading ? 'readKey' : 'change')) {
      throw new HttpError(
        401,
        'Unauthorized',
        'this admin address requires "Authorization: Bearer <token>" for keys (the read token reads them)',
      );
    }
    const q = raw.indexOf('?');
    return kv(node, req, res, q < 0 ? raw.slice(4) : raw.slice(4, q), q < 0 ? '' : raw.slice(q + 1));
  }
  let url: URL;
  try {
    url = new URL(raw, 'http://admin');
  } catch {
    throw new HttpError(400, 'InvalidArgument', 'malformed request target');
  }
  // The one route with a parameter: a node id, percent-encoded as one path segment.
  const nodeSegment = decommissionTarget(url.pathname);
  const route = nodeSegment === undefined ? url.pathname : DECOMMISSION_ROUTE;
  const methods =
    nodeSegment !== undefined ? DECOMMISSION_METHODS : Object.hasOwn(ROUTES, route) ? ROUTES[route] : undefined;
  if (!methods) throw new HttpError(404, 'NotFound', `no route ${req.method} ${url.pathname}`);
  if (!methods.includes(req.method ?? '')) throw methodNotAllowed(req.method, route, methods);
  if (!reading && !allowed(req, o, 'change'))
    throw new HttpError(401, 'Unauthorized', 'this admin address requires "Authorization: Bearer <token>" for changes');
  if (nodeSegment !== undefined) {
    let id: string;
    try {
      id = decodeURIComponent(nodeSegment);
    } catch {
      throw new HttpError(400, 'InvalidArgument', 'node id: bad percent-encoding');
    }
    if (id.length === 0) throw new HttpError(400, 'InvalidArgument', 'node id: empty');
    // A client that goes away stops the wait (the first decommission of a cluster creates group 0,
    // which waits for every node); what was already recorded stays.
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const n =
      req.method === 'POST'
        ? await node.decommission(id, { signal: gone.signal })
        : await node.cancelDecommission(id, { signal: gone.signal });
    return send(res, 200, n);
  }
  if (url.pathname === '/nodes' && reading) return send(res, 200, { nodes: node.clusterNodes() });
  if (url.pathname === '/metrics' && reading) {
    const http = new Exposition().family(
      'flotilla_http_errors_total',
      'counter',
      'Error answers of the admin HTTP server, by error code.',
      Object.entries(ctx.errors).map(([code, k]) => [{ node: node.id, code }, k]),
    );
    const text = (await node.metrics()) + http.text();
    return sendBytes(res, 200, Buffer.from(text), 'text/plain; version=0.0.4');
  }
  if (
    req.method === 'POST' &&
    (url.pathname === '/transfer' || url.pathname === '/drain' || url.pathname === '/undrain')
  ) {
    let body: Record<string, unknown> = {};
    const raw = (await readBody(req)).toString('utf8');
    if (raw.trim().length > 0) {
      const parsed = parseJson(raw, 'body must be JSON');
      if (!isObject(parsed)) throw new HttpError(400, 'InvalidArgument', 'body must be a JSON object');
      body = parsed;
    }
    if (url.pathname === '/transfer') {
      const group = Number(body.group);
      if (!Number.isInteger(group) || group < 1)
        throw new HttpError(400, 'InvalidArgument', 'group: a positive integer is required');
      if (typeof body.to !== 'string' || body.to.length === 0)
        throw new HttpError(400, 'InvalidArgument', 'to: the target node id is required');
      const timeoutMs = body.timeoutMs === undefined ? undefined : Number(body.timeoutMs);
      if (body.force !== undefined && typeof body.force !== 'boolean')
        throw new HttpError(400, 'InvalidArgument', 'force: true or false');
      return send(res, 200, await node.transferLeader(group, body.to, { timeoutMs, force: body.force === true }));
    }
    if (url.pathname === '/drain') {
      const avoid = body.avoid === undefined ? [] : body.avoid;
      if (!Array.isArray(avoid) || !avoid.every((x) => typeof x === 'string'))
        throw new HttpError(400, 'InvalidArgument', 'avoid: an array of node ids');
      const concurrency = body.concurrency === undefined ? undefined : Number(body.concurrency);
      if (body.force !== undefined && typeof body.force !== 'boolean')
        throw new HttpError(400, 'InvalidArgument', 'force: true or false');
      const r = await node.drain({ avoid, concurrency, force: body.force === true });
      return send(res, r.failed.length === 0 ? 200 : 207, { ...r, transfers: undefined });
    }
    node.undrain();
    return send(res, 200, { ok: true, draining: false });
  }
  if (url.pathname === '/members' && req.method === 'POST') {
    const parsed = parseJson(
      (await readBody(req)).toString('utf8'),
      'body must be JSON {"group": G, "op": "addLearner"|"promote"|"remove", "node": "n4"}',
    );
    // Any other JSON value has none of the fields: refused below for the first one missing.
    const body: Record<string, unknown> = isObject(parsed) ? parsed : {};
    const group = Number(body.group);
    if (!Number.isInteger(group) || group < 1)
      throw new HttpError(400, 'InvalidArgument', 'group: a positive integer is required');
    if (typeof body.node !== 'string' || body.node.length === 0)
      throw new HttpError(400, 'InvalidArgument', 'node: a node id is required');
    switch (body.op) {
      case 'addLearner':
        await node.addLearner(group, body.node);
        break;
      case 'promote':
        await node.promote(group, body.node);
        break;
      case 'remove':
        await node.removeMember(group, body.node);
        break;
      default:
        throw new HttpError(400, 'InvalidArgument', 'op: one of addLearner, promote, remove');
    }
    return send(res, 200, { ok: true, group, replicas: node.replicasOf(group) });
  }
  // The leader balancer's plan, and the replica mover's (null before the cluster record exists;
  // it moves only on group 0's leader, so ask that node for the plan that will run).
  if (url.pathname === '/balance/plan' && reading)
    return send(res, 200, { ...(await node.balancePlan()), replicas: node.replicaPlan() });
  if (url.pathname === '/balance/config' && reading) return send(res, 200, node.balancerConfig());
  if (url.pathname === '/balance/config' && req.method === 'POST') {
    const patch = parseJson((await readBody(req)).toString('utf8'), 'body must be a JSON object of balancer settings');
    // Checked field by field by the balancer (a bad one is refused with InvalidArgument naming it).
    return send(res, 200, node.configureBalancer(patch as Parameters<FlotillaNode['configureBalancer']>[0]));
  }
  if (url.pathname === '/balance' && req.method === 'POST') return send(res, 200, await node.balanceRound());
  if (url.pathname === '/debug/crash-worker' && req.method === 'POST') {
    if (!o.faultInjection)
      throw new HttpError(403, 'Forbidden', 'fault injection is disabled (start with --fault-injection)');
    const w = Number(url.searchParams.get('worker') ?? 0);
    if (!Number.isInteger(w) || w < 0 || w >= node.workerCount)
      throw new HttpError(400, 'InvalidArgument', `worker must be 0..${node.workerCount - 1}`);
    await node.crashWorker(w);
    return send(res, 200, { ok: true, crashed: w });
  }
  if (url.pathname === '/debug/disk-delay' && req.method === 'POST') {
    if (!o.faultInjection)
      throw new HttpError(403, 'Forbidden', 'fault injection is disabled (start with --fault-injection)');
    const num = (k: string) => {
      const v = Number(url.searchParams.get(k) ?? 0);
      if (!Number.isFinite(v) || v < 0 || v > 60_000)
        throw new HttpError(400, 'InvalidArgument', `${k} must be a number of milliseconds in 0..60000`);
      return v;
    };
    const ms = num('ms');
    const jitterMs = num('jitterMs');
    node.setDiskDelay(ms, jitterMs);
    return send(res, 200, { ok: true, ms, jitterMs });
  }
  if (url.pathname === '/status' && reading) {
    const st = await node.status({ detail: url.searchParams.has('groups') });
    return send(res, 200, st);
  }
  if (url.pathname === '/health' && reading) {
    const st = await node.status();
    const ok = st.shards.every((s) => s.up);
    const warnings = await node.stabilityWarnings();
    return send(res, ok ? 200 : 503, {
      ok,
      id: st.id,
      groups: st.groups,
      leaders: st.leaders,
      peers: st.peers,
      workers: st.workers,
      warnings,
    });
  }
  // Unreachable while ROUTES and the branches above agree.
  throw new HttpError(404, 'NotFound', `no route ${req.method} ${url.pathname}`);
}

/** The raw id segment of `/nodes/<id>/decommission`, or undefined for any other path. */
function decommissionTarget(path: string): string | undefined {
  const prefix = '/nodes/';
  const suffix = '/decommission';
  if (!path.startsWith(prefix) || !path.endsWith(suffix) || path.length < prefix.length + suffix.length)
    return undefined;
  const segment = path.slice(prefix.length, path.length - suffix.length);
  return segment.includes('/') ? undefined : segment;
}

async function kv(
  node: FlotillaNode,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: string,
): Promise<void> {
  let key: Buffer;
  try {
    key = Buffer.from(decodeURIComponent(path), 'utf8');
  } catch {
    throw new HttpError(400, 'InvalidArgument', 'key: bad percent-encoding');
  }
  if (key.length === 0 || key.length > MAX_KEY_BYTES)
    throw new HttpError(400, 'InvalidArgument', `key must be 1..${MAX_KEY_BYTES} bytes`);
  const params = query === '' ? null : new URLSearchParams(query);
  switch (req.method) {
    case 'HEAD':
    case 'GET': {
      const consistency = params?.get('consistency') === 'stale' ? 'stale' : 'linearizable';
      const v = await node.kv.get(key, consistency);
      // A missing key is an answer, not an error: not counted with the errors.
      if (v === null) return send(res, 404, { error: 'NotFound', message: 'no such key' });
      return sendBytes(res, 200, Buffer.from(v.buffer, v.byteOffset, v.byteLength), 'application/octet-stream');
    }
    case 'PUT': {
      await node.kv.put(key, await readBody(req));
      return sendOk(res, node.kv.leaderOf(key));
    }
    case 'DELETE': {
      const { deleted } = await node.kv.delete(key);
      return sendOk(res, node.kv.leaderOf(key), deleted ? DELETED_BODY : MISSING_BODY);
    }
    case 'POST': {
      if (!params?.has('cas')) throw new HttpError(400, 'InvalidArgument', 'POST /kv/<key> needs ?cas');
      let body: { expected?: unknown; value?: unknown };
      try {
        body = JSON.parse((await readBody(req)).toString('utf8')) as typeof body;
      } catch {
        throw new HttpError(
          400,
          'InvalidArgument',
          'body must be JSON {"expected": string|null, "value": string|null}',
        );
      }
      const str = (x: unknown, f: string) => {
        if (x === null || typeof x === 'string') return x;
        throw new HttpError(400, 'InvalidArgument', `${f} must be a string or null`);
      };
      const r = await node.kv.cas(key, str(body.expected ?? null, 'expected'), str(body.value ?? null, 'value'));
      const current = r.current === null ? null : Buffer.from(r.current).toString('utf8');
      return send(res, r.swapped ? 200 : 409, { swapped: r.swapped, current });
    }
    default:
      throw methodNotAllowed(req.method, '/kv/<key>', KV_METHODS);
  }
}
