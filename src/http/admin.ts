// Admin HTTP server of a node (node:http): GET /status, GET /health, and a key-value gateway for
// clients in any language — PUT /kv/<key> (body = value), GET /kv/<key>[?consistency=stale]
// (404 when missing), POST /kv/<key>?cas with JSON {"expected":..., "value":...} (409 when the
// compare fails), DELETE /kv/<key>. Errors are JSON {error, message} with a fitting status.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { FlotillaNode } from '../runtime/node.js';
import { RuntimeError, TransferError } from '../runtime/errors.js';
import { mergeHistograms, renderHistogram } from '../runtime/histogram.js';

export const MAX_BODY_BYTES = 1 << 20;
export const MAX_KEY_BYTES = 1024;

const STATUS_OF: Record<string, number> = {
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
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const data = type === 'application/json' ? JSON.stringify(body) : (body as Buffer);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

const OK_BODY = Buffer.from('{"ok":true}');

/** The answer to a successful write: a constant body, and the node id of the key's leader as
 *  this node knows it (x-flotilla-leader), so a client that knows where each node serves can
 *  send the next write for that key straight there (any node still serves any key). */
function sendOk(res: ServerResponse, leader: string | undefined): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': OK_BODY.length,
  };
  if (leader) headers['x-flotilla-leader'] = leader;
  res.writeHead(200, headers);
  res.end(OK_BODY);
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
  /** When set, every request that changes state (any method but GET/HEAD) must carry
   *  `Authorization: Bearer <token>`. */
  readonly token?: string;
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

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
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

/** Prometheus text exposition of the node's counters and gauges. */
async function metrics(node: FlotillaNode): Promise<string> {
  const st = await node.status();
  const lines: string[] = [];
  const metric = (
    name: string,
    type: 'counter' | 'gauge',
    help: string,
    samples: [Record<string, string | number>, number][],
  ) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) {
      const l = Object.entries(labels)
        .map(([k, x]) => `${k}="${String(x).replace(/["\\\n]/g, '_')}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${v}`);
    }
  };
  const node_ = { node: st.id };
  metric('flotilla_groups', 'gauge', 'Groups hosted by this node.', [[node_, st.groups]]);
  metric('flotilla_leaders', 'gauge', 'Groups this node leads.', [[node_, st.leaders]]);
  metric('flotilla_quiesced_groups', 'gauge', 'Groups quiesced on this node.', [[node_, st.quiesced]]);
  metric('flotilla_draining', 'gauge', '1 while this node drains.', [[node_, st.draining ? 1 : 0]]);
  metric(
    'flotilla_worker_up',
    'gauge',
    '1 when the worker hosting a shard is up.',
    st.shards.map((w) => [{ ...node_, worker: w.worker }, w.up ? 1 : 0]),
  );
  metric('flotilla_worker_restarts_total', 'counter', 'Worker threads restarted after dying.', [
    [node_, st.workerRestarts],
  ]);
  metric(
    'flotilla_transfers_total',
    'counter',
    'Leader transfers requested on this node, by outcome.',
    Object.entries(st.transfers).map(([outcome, n]) => [{ ...node_, outcome }, n]),
  );
  metric('flotilla_requests_forwarded_total', 'counter', 'Requests forwarded to another node.', [
    [node_, st.runtime.forwarded],
  ]);
  metric(
    'flotilla_requests_retried_total',
    'counter',
    'Attempts retried (not leader, transfer, unavailable, timeout).',
    [[node_, st.runtime.retries]],
  );
  metric(
    'flotilla_peer_connected',
    'gauge',
    '1 when the link to a peer is up.',
    Object.entries(st.transport.peers).map(([peer, p]) => [{ ...node_, peer }, p.connected ? 1 : 0]),
  );
  metric(
    'flotilla_peer_frames_sent_total',
    'counter',
    'Frames sent to a peer.',
    Object.entries(st.transport.peers).map(([peer, p]) => [{ ...node_, peer }, p.framesSent]),
  );
  // Refused or failed node handshakes (wrong cluster, unknown node, TLS, cluster secret): a rising
  // count is a misconfigured node or an intruder, either way worth an alert.
  metric(
    'flotilla_transport_handshake_failures_total',
    'counter',
    'Node handshakes refused or failed, by reason.',
    Object.entries(st.transport.handshakeFailures).map(([reason, n]) => [{ ...node_, reason }, n ?? 0]),
  );
  const drops: Record<string, number> = {};
  for (const [reason, n] of Object.entries(st.transport.drops)) drops[reason] = n ?? 0;
  for (const p of Object.values(st.transport.peers))
    for (const [reason, n] of Object.entries(p.drops)) drops[reason] = (drops[reason] ?? 0) + (n ?? 0);
  metric(
    'flotilla_transport_dropped_total',
    'counter',
    'Frames or messages dropped as malformed, oversized, unknown or unauthenticated, by reason.',
    Object.entries(drops).map(([reason, n]) => [{ ...node_, reason }, n]),
  );
  const loops = st.shards.flatMap((w) => (w.up ? [[w.worker, w.loop] as const] : []));
  metric(
    'flotilla_shard_commits_total',
    'counter',
    'LMDB commits of a shard loop.',
    loops.map(([w, l]) => [{ ...node_, worker: w }, l.commits]),
  );
  metric(
    'flotilla_shard_messages_in_total',
    'counter',
    'Raft messages stepped by a shard.',
    loops.map(([w, l]) => [{ ...node_, worker: w }, l.messagesIn]),
  );
  metric(
    'flotilla_shard_commit_wait_seconds_total',
    'counter',
    'Time a shard loop spent awaiting commits.',
    loops.map(([w, l]) => [{ ...node_, worker: w }, l.msCommit / 1000]),
  );
  metric('flotilla_proposals_total', 'counter', 'Proposals made through this node.', [[node_, st.runtime.proposals]]);
  metric('flotilla_pending_proposals', 'gauge', 'Proposals accepted by this node and not yet answered.', [
    [node_, st.pending.proposals],
  ]);
  metric(
    'flotilla_event_loop_delay_p99_seconds',
    'gauge',
    'Main-thread event-loop delay, p99 over the last minute or so.',
    [[node_, st.eventLoop.p99Ms / 1000]],
  );
  metric(
    'flotilla_event_loop_delay_max_seconds',
    'gauge',
    'Main-thread event-loop delay, max over the last minute or so.',
    [[node_, st.eventLoop.maxMs / 1000]],
  );
  metric('flotilla_reads_total', 'counter', 'Reads made through this node.', [[node_, st.runtime.reads]]);
  metric('flotilla_not_leader_total', 'counter', 'Attempts answered NotLeader (then retried to the leader).', [
    [node_, st.runtime.notLeader],
  ]);
  metric('flotilla_overloaded_total', 'counter', 'Proposals refused with Overloaded (pending limits).', [
    [node_, st.runtime.overloaded],
  ]);
  // Planned moves (transfer, drain, balancer) apart from failovers and elections: only the
  // unplanned ones say something is wrong.
  metric(
    'flotilla_leader_changes_total',
    'counter',
    'New leaders seen by the local replicas, by cause (transfer, drain, balancer: planned; failover, election: not).',
    Object.entries(st.leaderChanges).map(([cause, n]) => [{ ...node_, cause }, n]),
  );
  if (st.balancer) {
    metric(
      'flotilla_balancer_moves_total',
      'counter',
      'Leaderships moved by the balancer, by reason.',
      Object.entries(st.balancer.movesByKind).map(([reason, n]) => [{ ...node_, reason }, n]),
    );
    metric('flotilla_balancer_failed_total', 'counter', 'Balancer moves that failed.', [[node_, st.balancer.failed]]);
    metric('flotilla_balancer_rounds_total', 'counter', 'Balancer rounds run.', [[node_, st.balancer.rounds]]);
    metric(
      'flotilla_storage_slow',
      'gauge',
      "The health policy holds this node's storage slow against the cluster's (1): it sheds its leaderships and takes none.",
      [[node_, st.slowStorage ? 1 : 0]],
    );
  }
  const shardHist = (k: 'fsync' | 'commit' | 'apply') =>
    mergeHistograms(st.shards.map((w) => (w.up ? w.histograms[k] : undefined)));
  lines.push(
    ...renderHistogram(
      'flotilla_fsync_duration_seconds',
      'Duration of each shard storage commit (one fsync for all groups of a loop turn).',
      node_,
      shardHist('fsync'),
    ),
    ...renderHistogram(
      'flotilla_commit_latency_seconds',
      'Proposal accepted by the leader to known committed.',
      node_,
      shardHist('commit'),
    ),
    ...renderHistogram(
      'flotilla_apply_latency_seconds',
      'Known committed to applied and answered.',
      node_,
      shardHist('apply'),
    ),
    ...renderHistogram(
      'flotilla_transfer_duration_seconds',
      'Leader transfers requested here: request to verified new leader.',
      node_,
      node.histograms.transfer.snapshot(),
    ),
    ...renderHistogram(
      'flotilla_transfer_phase_seconds',
      "Phases of those transfers: catch_up (request to TimeoutNow sent), campaign (to the old leader hearing the target lead), verify (to a committed entry of the target's term).",
      { ...node_, phase: 'catch_up' },
      node.histograms.transferCatchUp.snapshot(),
    ),
    ...renderHistogram(
      'flotilla_transfer_phase_seconds',
      '',
      { ...node_, phase: 'campaign' },
      node.histograms.transferCampaign.snapshot(),
    ).slice(2),
    ...renderHistogram(
      'flotilla_transfer_phase_seconds',
      '',
      { ...node_, phase: 'verify' },
      node.histograms.transferVerify.snapshot(),
    ).slice(2),
    ...renderHistogram(
      'flotilla_gc_pause_seconds',
      'Garbage-collection pauses of the main thread.',
      node_,
      node.loopTiming.gc.snapshot(),
    ),
    ...renderHistogram(
      'flotilla_peer_rtt_seconds',
      'Round trips to peers (1 s pings).',
      node_,
      node.histograms.rtt.snapshot(),
    ),
  );
  return lines.join('\n') + '\n';
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

export function startAdmin(
  node: FlotillaNode,
  host: string,
  port: number,
  log: Logger,
  o: AdminOptions = {},
): Promise<Server> {
  const server = createServer((req, res) => {
    if (o.stopping?.()) res.setHeader('Connection', 'close');
    else if (res.shouldKeepAlive) {
      // Set by hand so that Node does not add its own Keep-Alive line with the real timeout.
      res.setHeader('Connection', 'keep-alive');
      res.setHeader('Keep-Alive', `timeout=${KEEP_ALIVE_ADVERTISED_S}`);
    }
    handle(node, req, res, o).catch((e: unknown) => {
      if (e instanceof HttpError) return send(res, e.status, { error: e.code, message: e.message });
      if (e instanceof RuntimeError) {
        return send(res, STATUS_OF[e.code] ?? 500, {
          error: e.code,
          message: e.message,
          leader: e.leader || undefined,
          reason: e instanceof TransferError ? e.reason : undefined,
        });
      }
      log.error({ err: e }, 'admin request failed');
      send(res, 500, { error: 'Internal', message: (e as Error).message });
    });
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

async function handle(node: FlotillaNode, req: IncomingMessage, res: ServerResponse, o: AdminOptions): Promise<void> {
  if (o.token && req.method !== 'GET' && req.method !== 'HEAD' && !authorized(req, o.token)) {
    throw new HttpError(401, 'Unauthorized', 'this admin address requires "Authorization: Bearer <token>" for changes');
  }
  const raw = req.url ?? '/';
  // The key-value gateway is the hot path: its path and query are split by hand (a URL object
  // per request costs more than the rest of the routing).
  if (raw.startsWith('/kv/')) {
    const q = raw.indexOf('?');
    return kv(node, req, res, q < 0 ? raw.slice(4) : raw.slice(4, q), q < 0 ? '' : raw.slice(q + 1));
  }
  const url = new URL(raw, 'http://admin');
  if (url.pathname === '/metrics' && req.method === 'GET') {
    const text = await metrics(node);
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
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
  if (url.pathname === '/balance/plan' && req.method === 'GET') return send(res, 200, await node.balancePlan());
  if (url.pathname === '/balance/config' && req.method === 'GET') return send(res, 200, node.balancerConfig());
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
  if (url.pathname === '/status' && req.method === 'GET') {
    const st = await node.status({ detail: url.searchParams.has('groups') });
    return send(res, 200, st);
  }
  if (url.pathname === '/health' && req.method === 'GET') {
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
  throw new HttpError(404, 'NotFound', `no route ${req.method} ${url.pathname}`);
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
    case 'GET': {
      const consistency = params?.get('consistency') === 'stale' ? 'stale' : 'linearizable';
      const v = await node.kv.get(key, consistency);
      if (v === null) throw new HttpError(404, 'NotFound', 'no such key');
      return send(res, 200, Buffer.from(v), 'application/octet-stream');
    }
    case 'PUT': {
      await node.kv.put(key, await readBody(req));
      return sendOk(res, node.kv.leaderOf(key));
    }
    case 'DELETE': {
      await node.kv.delete(key);
      return sendOk(res, node.kv.leaderOf(key));
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
      throw new HttpError(405, 'InvalidArgument', `${req.method} not allowed on /kv/<key>`);
  }
}
