// Operator commands that talk to a running node's admin HTTP address: `status`, `transfer`,
// `drain`, `undrain`, `balance`, `member`, `nodes`, `decommission`. Each command declares its own options (refused when
// not its own) and usage; with --json each prints what the node answered as one JSON document.
// Exit codes: 0 done, 1 the node refused or could not be reached (the reason on stderr), 2 usage.
import { parseArgs } from 'node:util';
import { isObject, list, type StatusJson } from './json.js';
import { wrapWords } from './wrap.js';
import { AdminUnreachable, call, parseAdmin, type Admin, type Answer } from './request.js';

type OptionSpec = { readonly type: 'string' | 'boolean'; readonly arg?: string; readonly doc: string };
type Values = Readonly<Record<string, string | boolean | undefined>>;

interface Command {
  /** The synopsis after `flotilla NAME --admin HOST:PORT`. */
  readonly synopsis: string;
  readonly about: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  run(admin: Admin, v: Values, out: Output): Promise<number>;
}

/** Options every operator command takes. */
const COMMON: Readonly<Record<string, OptionSpec>> = {
  admin: { type: 'string', arg: 'HOST:PORT', doc: "the node's admin address (or FLOTILLA_ADMIN)" },
  token: {
    type: 'string',
    arg: 'TOKEN',
    doc: 'the admin token, when the node requires one (or FLOTILLA_ADMIN_TOKEN)',
  },
  json: { type: 'boolean', doc: 'print what the node answered as JSON (also on refusal)' },
  help: { type: 'boolean', doc: 'print this help' },
};

class Usage extends Error {}

/** Where a command's result goes: a human line, or the JSON document. */
class Output {
  constructor(
    private readonly cmd: string,
    readonly json: boolean,
  ) {}
  /** A successful result: `text` for people, `doc` with --json. */
  done(text: string, doc: unknown): number {
    process.stdout.write(this.json ? `${JSON.stringify(doc, null, 2)}\n` : text);
    return 0;
  }
  /** A refusal or failure: the reason on stderr; with --json the document on stdout too. */
  failed(reason: string, doc: unknown): number {
    process.stderr.write(`flotilla ${this.cmd}: ${reason}\n`);
    if (this.json) process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return 1;
  }
  /** A non-2xx answer of the node, with its typed error and reason. */
  refused(r: Answer): number {
    const j = r.json;
    const hint = r.status === 401 ? ' (give the token with --token or FLOTILLA_ADMIN_TOKEN)' : '';
    return this.failed(`${j.error ?? r.status}${j.reason ? ` (${j.reason})` : ''}: ${j.message ?? ''}${hint}`, {
      status: r.status,
      ...j,
    });
  }
}

function positive(name: string, v: string | boolean | undefined, required: boolean): number | undefined {
  if (v === undefined) {
    if (required) throw new Usage(`--${name} is required (a positive integer)`);
    return undefined;
  }
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < 1)
    throw new Usage(`--${name} must be a positive integer (got ${JSON.stringify(v)})`);
  return n;
}

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

function table(st: StatusJson, nodes: string | undefined): string {
  const shards = list(st.shards).filter(isObject);
  const balancer = isObject(st.balancer) ? st.balancer : null;
  const lines = [
    `node ${st.id}  cluster ${st.clusterId}  workers ${st.workers}  restarts ${st.workerRestarts}${st.draining ? '  DRAINING' : ''}`,
    `groups ${st.groups}  leaders ${st.leaders}  quiesced ${st.quiesced}  peers up: ${list(st.peers).join(', ') || '-'}`,
    `draining peers: ${list(st.drainingPeers).join(', ') || '-'}  transfers: ${JSON.stringify(st.transfers ?? {})}`,
    ...(nodes === undefined ? [] : [`nodes: ${nodes}`]),
    ...(balancer
      ? [
          `balancer: rounds ${balancer.rounds}  moves ${JSON.stringify(balancer.movesByKind ?? {})}  failed ${balancer.failed}`,
        ]
      : []),
    '',
    'worker  up   groups  leaders  quiesced',
    ...shards.map(
      (s) =>
        `${String(s.worker).padEnd(8)}${(s.up ? 'yes' : 'NO').padEnd(5)}${String(s.groups).padStart(6)}${String(s.leaders).padStart(9)}${String(s.quiesced).padStart(10)}`,
    ),
  ];
  return lines.join('\n') + '\n';
}

/** One group's replica on the node asked, as GET /status?groups reports it. */
interface GroupView {
  readonly group: number;
  readonly role: string;
  readonly leader: string;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly quiesced: boolean;
  readonly hasQuorum: boolean;
  readonly transferTarget: string | null;
  readonly conf: { readonly voters: readonly string[]; readonly learners: readonly string[] };
  /** Filled where this node leads. */
  readonly progress: Readonly<Record<string, { match: number; next: number; state: string }>>;
}

function groupTable(node: string, uptimeMs: number, groups: readonly GroupView[]): string {
  const lines = [`node ${node}  uptime ${Math.round(uptimeMs / 1000)} s  groups ${groups.length}`, ''];
  lines.push('group  role       leader  term    commit   applied  quorum  peers (match/lag/state where leader)');
  for (const g of groups) {
    const peers = Object.entries(g.progress ?? {})
      .filter(([p]) => p !== node)
      .map(
        ([p, pr]) =>
          `${p} ${pr.match}/${g.lastIndex - pr.match}/${pr.state}${g.conf.learners.includes(p) ? ' (learner)' : ''}`,
      );
    const others = peers.length
      ? peers.join(', ')
      : `voters ${g.conf.voters.join(',')}${g.conf.learners.length ? `; learners ${g.conf.learners.join(',')}` : ''}`;
    lines.push(
      `${String(g.group).padEnd(7)}${(g.role + (g.quiesced ? '*' : '')).padEnd(11)}${(g.leader || '-').padEnd(8)}${String(g.term).padEnd(8)}` +
        `${String(g.commit).padEnd(9)}${String(g.applied).padEnd(9)}${(g.hasQuorum ? 'yes' : 'NO').padEnd(8)}${others}` +
        (g.transferTarget ? `  transferring to ${g.transferTarget}` : ''),
    );
  }
  lines.push('', '* quiesced (idle: no heartbeats until the next write)');
  return lines.join('\n') + '\n';
}

const ok = (r: Answer) => r.status >= 200 && r.status < 300;

/** The cluster's nodes in GET /nodes, each field still to be checked where it is read. */
function clusterNodes(r: Answer): Record<string, unknown>[] {
  return list(r.json.nodes).filter(isObject);
}

function nodesTable(nodes: readonly Record<string, unknown>[]): string {
  const rows = nodes.map((n) => [
    String(n.id ?? '-'),
    String(n.state ?? '-'),
    String(n.address || '-'),
    isObject(n.labels) && typeof n.labels.zone === 'string' ? n.labels.zone : '-',
    n.up === true ? 'yes' : 'NO',
    String(n.replicas ?? '-'),
  ]);
  const head = ['id', 'state', 'address', 'zone', 'up', 'replicas'];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)) + 2);
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i])))
      .join('')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

/** `nodes: 3 active, 1 decommissioning` (the states nobody is in left out). */
function nodeCounts(nodes: readonly Record<string, unknown>[]): string {
  const counts = new Map<string, number>();
  for (const n of nodes) counts.set(String(n.state), (counts.get(String(n.state)) ?? 0) + 1);
  return [...counts].map(([state, k]) => `${k} ${state}`).join(', ') || '-';
}

/** Resolves after `ms`, or at once when `stop` is aborted. */
function pause(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener('abort', done, { once: true });
  });
}

/** Exit code of `decommission --wait` stopped by Ctrl-C (128 + SIGINT, as a shell reports it). */
const INTERRUPTED = 130;

/** `decommission --wait`: poll GET /nodes each second until `id` is removed (0) or active again
 *  (1: cancelled elsewhere); Ctrl-C stops waiting, not the decommission. A failed poll is said
 *  once and retried: the admin node may be briefly busy. */
async function waitRemoved(admin: Admin, id: string, out: Output): Promise<number> {
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once('SIGINT', interrupt);
  const started = Date.now();
  const secs = () => Math.round((Date.now() - started) / 1000);
  let last: Record<string, unknown> | undefined;
  let said = '';
  let pollFailed = false;
  try {
    while (!stop.signal.aborted) {
      const r = await call(admin, 'GET', '/nodes').catch((e: unknown) =>
        e instanceof AdminUnreachable ? e : Promise.reject(e),
      );
      if (r instanceof AdminUnreachable || !ok(r)) {
        if (!pollFailed)
          process.stderr.write(
            `flotilla decommission: cannot read the nodes (${r instanceof AdminUnreachable ? r.message : `${r.status} ${r.json.message ?? ''}`}); retrying\n`,
          );
        pollFailed = true;
      } else {
        pollFailed = false;
        const n = clusterNodes(r).find((x) => x.id === id);
        if (n === undefined)
          return out.failed(`${id} is no longer listed by ${admin.address}`, { id, waitedS: secs() });
        last = n;
        if (n.state === 'removed') return out.done(`${id} removed after ${secs()} s\n`, { ...n, waitedS: secs() });
        if (n.state === 'active')
          return out.failed(`${id} is active again: its decommission was cancelled`, { ...n, waitedS: secs() });
        const now = `${id} ${n.state}: ${n.replicas} replicas left`;
        if (now !== said && !out.json) process.stdout.write(`${now} (${secs()} s)\n`);
        said = now;
      }
      await pause(1000, stop.signal);
    }
  } finally {
    process.removeListener('SIGINT', interrupt);
  }
  process.stderr.write(
    `flotilla decommission: stopped waiting after ${secs()} s; the decommission goes on (follow it with flotilla nodes)\n`,
  );
  if (out.json) process.stdout.write(`${JSON.stringify({ ...last, waitedS: secs(), interrupted: true }, null, 2)}\n`);
  return INTERRUPTED;
}

export const COMMANDS: Readonly<Record<string, Command>> = {
  status: {
    synopsis: '[--groups [--group G]] [--json]',
    about:
      "The node, its workers and the stability advisor's warnings. With --groups, per group: leader, " +
      'term, commit, applied, whether this node reaches a quorum, each peer match/lag/state where it ' +
      'leads, learners (what to look at before a transfer).',
    options: {
      groups: { type: 'boolean', doc: 'one row per group this node holds' },
      group: { type: 'string', arg: 'G', doc: 'only group G (with --groups)' },
    },
    async run(admin, v, out) {
      if (v.group !== undefined && !v.groups) throw new Usage('--group G goes with --groups');
      const only = positive('group', v.group, false);
      const r = await call(admin, 'GET', v.groups ? '/status?groups' : '/status');
      if (!ok(r)) return out.refused(r);
      if (v.groups) {
        let groups = (r.json.perGroup as GroupView[] | undefined) ?? [];
        if (only !== undefined) {
          groups = groups.filter((x) => x.group === only);
          if (groups.length === 0)
            return out.failed(`${r.json.id} holds no replica of group ${only}`, {
              error: 'NoReplica',
              node: r.json.id,
              group: only,
            });
        }
        groups.sort((a, b) => a.group - b.group);
        const uptimeMs = Number(r.json.uptimeMs) || 0;
        return out.done(groupTable(String(r.json.id), uptimeMs, groups), { node: r.json.id, uptimeMs, groups });
      }
      const [health, nodes] = await Promise.all([call(admin, 'GET', '/health'), call(admin, 'GET', '/nodes')]);
      const warnings = list(health.json.warnings).filter(isObject);
      // A node of an older version has no /nodes: its status goes without the line.
      const text =
        table(r.json, ok(nodes) ? nodeCounts(clusterNodes(nodes)) : undefined) +
        warnings.map((w) => `\nWARNING ${w.kind}: ${w.message}\n  fix: ${w.fix}\n`).join('');
      return out.done(text, { ...r.json, warnings });
    },
  },
  transfer: {
    synopsis: '--group G --to NODE [--timeout-ms MS] [--force] [--json]',
    about:
      "Move group G's leadership to NODE, verified. Refused (with a typed reason) when the target " +
      'lags, needs a snapshot, does not reach a quorum by its own links or is much slower than the ' +
      'leader, or while the cluster is unstable; --force overrides those, never a safety refusal.',
    options: {
      group: { type: 'string', arg: 'G', doc: 'the group (required)' },
      to: { type: 'string', arg: 'NODE', doc: 'the node to lead it (required)' },
      'timeout-ms': { type: 'string', arg: 'MS', doc: "the transfer's deadline (default: the node's)" },
      force: { type: 'boolean', doc: 'override the advisory refusals' },
    },
    async run(admin, v, out) {
      const group = positive('group', v.group, true);
      const to = str(v.to);
      if (!to) throw new Usage('--to NODE is required');
      const timeoutMs = positive('timeout-ms', v['timeout-ms'], false);
      const r = await call(admin, 'POST', '/transfer', { group, to, timeoutMs, force: v.force === true });
      if (!ok(r)) return out.refused(r);
      const p = isObject(r.json.phases) ? r.json.phases : undefined;
      return out.done(
        `group ${group}: ${r.json.from} -> ${r.json.to} verified in ${r.json.ms} ms (term ${r.json.term})` +
          (p
            ? `; lag ${r.json.lag}, catch-up ${p.catchUpMs} ms, campaign ${p.campaignMs} ms, verify ${p.verifyMs} ms`
            : '') +
          '\n',
        r.json,
      );
    },
  },
  drain: {
    synopsis: '[--wait] [--avoid n2,n3] [--concurrency N] [--timeout-ms MS] [--force] [--json]',
    about:
      'Move every leadership off the node for maintenance (never to a node in --avoid unless no ' +
      'other can lead). Exit 1 when some group could not be moved.',
    options: {
      wait: { type: 'boolean', doc: 'go on until the node leads nothing (or --timeout-ms)' },
      avoid: { type: 'string', arg: 'IDS', doc: 'comma-separated nodes not to move leadership to' },
      concurrency: { type: 'string', arg: 'N', doc: 'transfers at once (default: set by the node)' },
      'timeout-ms': { type: 'string', arg: 'MS', doc: 'how long --wait goes on (default 60000)' },
      force: { type: 'boolean', doc: 'override the advisory refusals of each transfer' },
    },
    async run(admin, v, out) {
      const avoid = (str(v.avoid) ?? '').split(',').filter(Boolean);
      const body = { avoid, concurrency: positive('concurrency', v.concurrency, false), force: v.force === true };
      const until = Date.now() + (positive('timeout-ms', v['timeout-ms'], false) ?? 60_000);
      let r = await call(admin, 'POST', '/drain', body);
      // --wait: until this node leads nothing (a group may elect it while the drain runs, when
      // no other replica could lead), draining again each second, within --timeout-ms.
      let stillLeads = 0;
      while (v.wait && ok(r)) {
        const st = await call(admin, 'GET', '/status');
        stillLeads = Number(st.json.leaders) || 0;
        if (stillLeads === 0 || Date.now() >= until) break;
        await new Promise((res) => setTimeout(res, 1000));
        const again = await call(admin, 'POST', '/drain', body);
        r = {
          status: again.status,
          json: { ...again.json, moved: Number(r.json.moved) + Number(again.json.moved ?? 0) },
        };
      }
      if (!ok(r)) return out.refused(r);
      const failed = list(r.json.failed).filter(isObject);
      const doc = { ...r.json, ...(v.wait ? { stillLeads } : {}) };
      const text =
        `drained ${r.json.node}: moved ${r.json.moved} leaders in ${r.json.ms} ms; failed ${failed.length}\n` +
        failed.map((f) => `  group ${f.group}: ${f.reason}\n`).join('');
      // With --wait the goal is a node that leads nothing, whatever a round along the way failed.
      if (stillLeads > 0) return out.failed(`${text}${r.json.node} still leads ${stillLeads} groups`, doc);
      if (!v.wait && r.status !== 200) return out.failed(text.trimEnd(), doc);
      return out.done(text, doc);
    },
  },
  undrain: {
    synopsis: '[--json]',
    about: 'Let leadership come back to the node (after a drain or --draining).',
    options: {},
    async run(admin, _v, out) {
      const r = await call(admin, 'POST', '/undrain');
      return ok(r) ? out.done('undrained\n', r.json) : out.refused(r);
    },
  },
  balance: {
    synopsis: '[--dry-run] [--json]',
    about:
      "Run one leader-balancer round now, or with --dry-run only show its plan (and the replica mover's, on group 0's leader).",
    options: { 'dry-run': { type: 'boolean', doc: 'show the plan, move nothing' } },
    async run(admin, v, out) {
      const dry = v['dry-run'] === true;
      const r = dry ? await call(admin, 'GET', '/balance/plan') : await call(admin, 'POST', '/balance');
      if (!ok(r)) return out.refused(r);
      const moves = list(r.json.moves).filter(isObject);
      const score = isObject(r.json.score) ? r.json.score : undefined;
      const n = (x: unknown) => (typeof x !== 'number' ? '-' : Number.isInteger(x) ? String(x) : x.toFixed(2));
      const pct = (x: unknown) => (typeof x === 'number' ? `${(100 * x).toFixed(1)}%` : '-');
      const side = (x: unknown, k: string) => (isObject(x) ? n(x[k]) : '-');
      const text =
        `${dry ? 'would move' : 'moved'} ${moves.length} leaders${r.json.idle ? ` (${r.json.idle})` : ''}` +
        `${score ? `; imbalance ${pct(score.before)} -> ${pct(score.after)}` : ''}\n` +
        moves
          .map(
            (m) =>
              `  group ${m.group} -> ${m.to} [${m.kind}] ${side(m.before, 'from')}/${side(m.before, 'to')} -> ` +
              `${side(m.after, 'from')}/${side(m.after, 'to')}: ${m.reason}\n`,
          )
          .join('');
      // The replica mover's plan rides along on a dry run (null before the cluster record exists).
      const rp = isObject(r.json.replicas) ? r.json.replicas : undefined;
      const rmoves = rp ? list(rp.moves).filter(isObject) : [];
      const blocked = rp ? list(rp.blocked).filter((b): b is string => typeof b === 'string') : [];
      const replicaText = rp
        ? `would move ${rmoves.length} replicas${blocked.length ? ` (${blocked.join('; ')})` : ''}\n` +
          rmoves.map((m) => `  group ${m.group}: ${m.from ?? '(add)'} -> ${m.to} [${m.kind}]: ${m.reason}\n`).join('') +
          list(rp.adoptions)
            .filter(isObject)
            .map((a) => `  group ${a.group}: promote learner ${a.node} [${a.kind}]: ${a.reason}\n`)
            .join('') +
          list(rp.removals)
            .filter(isObject)
            .map((x) => `  group ${x.group}: remove ${x.node} [trim]: ${x.reason}\n`)
            .join('')
        : '';
      return out.done(text + replicaText, r.json);
    },
  },
  member: {
    synopsis: '--group G (--add-learner N | --promote N | --remove N) [--json]',
    about:
      "Change group G's membership in the safe order: add a learner, promote it once caught up, " +
      'then remove the member it replaces.',
    options: {
      group: { type: 'string', arg: 'G', doc: 'the group (required)' },
      'add-learner': { type: 'string', arg: 'N', doc: 'add node N as a learner' },
      promote: { type: 'string', arg: 'N', doc: 'make learner N a voter' },
      remove: { type: 'string', arg: 'N', doc: 'remove node N' },
    },
    async run(admin, v, out) {
      const group = positive('group', v.group, true);
      const ops = (
        [
          ['addLearner', str(v['add-learner'])],
          ['promote', str(v.promote)],
          ['remove', str(v.remove)],
        ] as const
      ).filter(([, x]) => x);
      if (ops.length !== 1) throw new Usage('exactly one of --add-learner N, --promote N, --remove N');
      const [op, node] = ops[0];
      const r = await call(admin, 'POST', '/members', { group, op, node });
      if (!ok(r)) return out.refused(r);
      return out.done(`group ${group}: ${op} ${node} done; replicas ${list(r.json.replicas).join(', ')}\n`, r.json);
    },
  },
  nodes: {
    synopsis: '[--json]',
    about:
      "The cluster's nodes as the node asked last saw the cluster record: id, state (active, " +
      'decommissioning, removed), address, zone, whether it has a link to each, and the replicas each ' +
      'holds as it knows them.',
    options: {},
    async run(admin, _v, out) {
      const r = await call(admin, 'GET', '/nodes');
      return ok(r) ? out.done(nodesTable(clusterNodes(r)), r.json) : out.refused(r);
    },
  },
  decommission: {
    synopsis: '--node ID [--cancel | --wait] [--json]',
    about:
      "Start a node's decommission: the cluster record marks it decommissioning, then the replica " +
      "mover (run by group 0's leader) moves each of its replicas elsewhere and marks it removed. " +
      'Refused when fewer active nodes than the replication would remain. --cancel makes it active ' +
      'again (moves in flight finish). --wait follows it each second until the node is removed ' +
      '(exit 0) or active again (cancelled elsewhere: exit 1); Ctrl-C stops waiting, not the ' +
      'decommission (exit 130).',
    options: {
      node: { type: 'string', arg: 'ID', doc: 'the node to decommission (required)' },
      cancel: { type: 'boolean', doc: 'cancel its decommission instead' },
      wait: { type: 'boolean', doc: 'follow it until the node is removed' },
    },
    async run(admin, v, out) {
      const id = str(v.node);
      if (!id) throw new Usage('--node ID is required');
      if (v.cancel && v.wait) throw new Usage('--wait follows a decommission, not its --cancel');
      const r = await call(admin, v.cancel ? 'DELETE' : 'POST', `/nodes/${encodeURIComponent(id)}/decommission`);
      if (!ok(r)) return out.refused(r);
      if (v.wait) {
        if (!out.json) process.stdout.write(`${id} ${r.json.state}: ${r.json.replicas} replicas to move\n`);
        return waitRemoved(admin, id, out);
      }
      return out.done(`${id} ${r.json.state}: ${r.json.replicas} replicas\n`, r.json);
    },
  },
};

/** `flotilla CMD --help`: the command's synopsis, what it does, its options and the exit codes. */
export function commandHelp(cmd: string): string {
  const c = COMMANDS[cmd];
  const line = ([name, o]: [string, OptionSpec]) => {
    const head = name === 'help' ? '  -h, --help' : `  --${name}${o.arg ? ` ${o.arg}` : ''}`;
    return head.length < 22 ? `${head.padEnd(22)}${o.doc}` : `${head}\n${' '.repeat(22)}${o.doc}`;
  };
  return [
    `Usage: flotilla ${cmd} --admin HOST:PORT ${c.synopsis}`,
    '',
    ...wrapWords(c.about, 100),
    '',
    'Options:',
    ...Object.entries(c.options).map(line),
    ...Object.entries(COMMON).map(line),
    '',
    'Exit codes: 0 done, 1 refused by the node or unreachable (the reason on stderr), 2 usage error.',
    '',
  ].join('\n');
}

export async function runClient(cmd: string, argv: string[]): Promise<number> {
  const c = COMMANDS[cmd];
  if (c === undefined) throw new Error(`not an operator command: ${cmd}`);
  const usage = (msg: string) => {
    process.stderr.write(`flotilla ${cmd}: ${msg}\n\n${commandHelp(cmd)}`);
    return 2;
  };
  let values: Values;
  try {
    const options = Object.fromEntries(
      Object.entries({ ...c.options, ...COMMON }).map(([k, o]) => [
        k,
        k === 'help' ? { type: o.type, short: 'h' } : { type: o.type },
      ]),
    );
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options }));
  } catch (e) {
    return usage((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(commandHelp(cmd));
    return 0;
  }
  const out = new Output(cmd, values.json === true);
  try {
    const given = str(values.admin) ?? process.env.FLOTILLA_ADMIN;
    if (!given) throw new Usage('--admin HOST:PORT is required (or FLOTILLA_ADMIN)');
    const admin = parseAdmin(given, str(values.token) ?? process.env.FLOTILLA_ADMIN_TOKEN);
    if (typeof admin === 'string') throw new Usage(admin);
    return await c.run(admin, values, out);
  } catch (e) {
    if (e instanceof Usage) return usage(e.message);
    if (e instanceof AdminUnreachable)
      return out.failed(e.message, { error: 'Unreachable', errno: e.errno, admin: e.admin, message: e.message });
    throw e;
  }
}
