// Operator commands that talk to a running node's admin HTTP address: `status`, `transfer`,
// `drain`, `undrain` (like etcdctl move-leader and syncobj_admin). Exit codes: 0 ok, 1 the node
// refused or could not be reached (the message says why), 2 usage error.
import { request } from 'node:http';
import { parseArgs } from 'node:util';
import { isObject, list, type StatusJson } from './json.js';

export const CLIENT_HELP = `Usage:
  flotilla status   --admin HOST:PORT [--json] [--groups [--group G]]
                    the node, its workers and the advisor's warnings; --groups: per group the
                    leader, term, commit, applied, has-quorum, each peer's match/lag/state
                    (where this node leads) and learners, as run before a transfer
  flotilla transfer --admin HOST:PORT --group G --to NODE [--timeout-ms MS] [--force]
                    refused (typed) when the target lags, needs a snapshot, does not reach a
                    quorum by its own links or is much slower than the leader, or while the
                    cluster is unstable; --force overrides those (never a safety refusal)
  flotilla drain    --admin HOST:PORT [--wait] [--avoid n2,n3] [--concurrency N] [--timeout-ms MS] [--force]
                    move every leadership off the node (never to a node in --avoid unless no
                    other can lead); --wait goes on until it leads nothing (or the timeout)
  flotilla undrain  --admin HOST:PORT
  flotilla balance  --admin HOST:PORT [--dry-run]   one balancer round now (or only its plan)
  flotilla member   --admin HOST:PORT --group G (--add-learner N | --promote N | --remove N)
                    membership in the safe order: add a learner, promote it once caught up,
                    then remove the member it replaces

  --admin HOST:PORT   the node's admin address (or FLOTILLA_ADMIN)
  --token TOKEN       the admin token, when the node requires one (or FLOTILLA_ADMIN_TOKEN)
`;

class Usage extends Error {}

let token: string | undefined;

/** One admin request. node:http, not the global fetch: the first fetch loads the bundled HTTP
 *  client and compiles its WebAssembly parser, and the process cannot exit until that finishes.
 *  Measured here: ~0.25 s of CPU per command, 0.45-1.25 s of wall time on a busy machine (it was
 *  most of what a CLI transfer took beyond the transfer itself); with node:http, 80-100 ms. */
function call(
  admin: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = {};
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.byteLength;
  }
  if (token) headers.authorization = `Bearer ${token}`;
  const colon = admin.lastIndexOf(':');
  const host = colon > 0 ? admin.slice(0, colon).replace(/^\[|\]$/g, '') : admin;
  const port = colon > 0 ? Number(admin.slice(colon + 1)) : NaN;
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => reject(new Error(`cannot reach ${admin}: ${e.message}`));
    if (admin.includes('://') || !host || !Number.isInteger(port) || port <= 0 || port > 65535) {
      fail(new Error('expected HOST:PORT (not a URL)'));
      return;
    }
    const req = request({ host, port, method, path, headers, timeout: 120_000 }, (res) => {
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
    req.once('timeout', () => req.destroy(new Error('no answer within 120 s')));
    req.on('error', fail);
    req.end(payload);
  });
}

function table(st: StatusJson): string {
  const shards = list(st.shards).filter(isObject);
  const balancer = isObject(st.balancer) ? st.balancer : null;
  const lines = [
    `node ${st.id}  cluster ${st.clusterId}  workers ${st.workers}  restarts ${st.workerRestarts}${st.draining ? '  DRAINING' : ''}`,
    `groups ${st.groups}  leaders ${st.leaders}  quiesced ${st.quiesced}  peers up: ${list(st.peers).join(', ') || '-'}`,
    `draining peers: ${list(st.drainingPeers).join(', ') || '-'}  transfers: ${JSON.stringify(st.transfers ?? {})}`,
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

export async function runClient(cmd: string, argv: string[]): Promise<number> {
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        admin: { type: 'string' },
        json: { type: 'boolean' },
        group: { type: 'string' },
        to: { type: 'string' },
        groups: { type: 'boolean' },
        'timeout-ms': { type: 'string' },
        avoid: { type: 'string' },
        concurrency: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        'dry-run': { type: 'boolean' },
        token: { type: 'string' },
        wait: { type: 'boolean' },
        force: { type: 'boolean' },
        'add-learner': { type: 'string' },
        promote: { type: 'string' },
        remove: { type: 'string' },
      },
    });
    if (values.help) {
      process.stdout.write(CLIENT_HELP);
      return 0;
    }
    const admin = values.admin ?? process.env.FLOTILLA_ADMIN;
    token = values.token ?? process.env.FLOTILLA_ADMIN_TOKEN;
    if (!admin) throw new Usage('--admin HOST:PORT is required');
    let r: { status: number; json: Record<string, unknown> };
    switch (cmd) {
      case 'status': {
        if (values.group !== undefined && !values.groups) throw new Usage('--group G goes with --groups');
        r = await call(admin, 'GET', values.groups ? '/status?groups' : '/status');
        if (r.status !== 200) break;
        if (values.groups) {
          let groups = (r.json.perGroup as GroupView[] | undefined) ?? [];
          if (values.group !== undefined) {
            const g = Number(values.group);
            if (!Number.isInteger(g) || g < 1) throw new Usage('--group G (a positive integer)');
            groups = groups.filter((x) => x.group === g);
            if (groups.length === 0) {
              process.stderr.write(`flotilla status: ${r.json.id} holds no replica of group ${g}\n`);
              return 1;
            }
          }
          groups.sort((a, b) => a.group - b.group);
          const uptimeMs = Number(r.json.uptimeMs) || 0;
          if (values.json) process.stdout.write(`${JSON.stringify({ node: r.json.id, uptimeMs, groups }, null, 2)}\n`);
          else process.stdout.write(groupTable(String(r.json.id), uptimeMs, groups));
          break;
        }
        const health = await call(admin, 'GET', '/health');
        const warnings = (health.json.warnings as { kind: string; message: string; fix: string }[] | undefined) ?? [];
        if (values.json) {
          process.stdout.write(`${JSON.stringify({ ...r.json, warnings }, null, 2)}\n`);
        } else {
          process.stdout.write(table(r.json));
          for (const w of warnings) process.stdout.write(`\nWARNING ${w.kind}: ${w.message}\n  fix: ${w.fix}\n`);
        }
        break;
      }
      case 'transfer': {
        const group = Number(values.group);
        if (!Number.isInteger(group) || group < 1) throw new Usage('--group G (a positive integer) is required');
        if (!values.to) throw new Usage('--to NODE is required');
        const timeoutMs = values['timeout-ms'] === undefined ? undefined : Number(values['timeout-ms']);
        r = await call(admin, 'POST', '/transfer', { group, to: values.to, timeoutMs, force: values.force === true });
        if (r.status === 200) {
          const p = r.json.phases as { catchUpMs: number; campaignMs: number; verifyMs: number } | undefined;
          process.stdout.write(
            `group ${group}: ${r.json.from} -> ${r.json.to} verified in ${r.json.ms} ms (term ${r.json.term})` +
              (p
                ? `; lag ${r.json.lag}, catch-up ${p.catchUpMs} ms, campaign ${p.campaignMs} ms, verify ${p.verifyMs} ms`
                : '') +
              '\n',
          );
        }
        break;
      }
      case 'drain': {
        const avoid = values.avoid ? values.avoid.split(',').filter(Boolean) : [];
        const body = {
          avoid,
          concurrency: values.concurrency ? Number(values.concurrency) : undefined,
          force: values.force === true,
        };
        r = await call(admin, 'POST', '/drain', body);
        // --wait: until this node leads nothing (a group may elect it while the drain runs, when
        // no other replica could lead), draining again each second, within --timeout-ms.
        const until = Date.now() + (values['timeout-ms'] ? Number(values['timeout-ms']) : 60_000);
        while (values.wait && (r.status === 200 || r.status === 207) && Date.now() < until) {
          const st = await call(admin, 'GET', '/status');
          if (st.status === 200 && st.json.leaders === 0) break;
          await new Promise((res) => setTimeout(res, 1000));
          const again = await call(admin, 'POST', '/drain', body);
          r = {
            status: again.status,
            json: { ...again.json, moved: Number(r.json.moved) + Number(again.json.moved ?? 0) },
          };
        }
        if (values.wait && (r.status === 200 || r.status === 207)) {
          const st = await call(admin, 'GET', '/status');
          if (st.json.leaders !== 0) {
            process.stderr.write(`flotilla drain: ${st.json.id} still leads ${st.json.leaders} groups\n`);
            r = { status: 207, json: r.json };
          }
        }
        if (r.status === 200 || r.status === 207) {
          const failed = list(r.json.failed).filter(isObject);
          process.stdout.write(
            `drained ${r.json.node}: moved ${r.json.moved} leaders in ${r.json.ms} ms; failed ${failed.length}\n`,
          );
          for (const f of failed) process.stdout.write(`  group ${f.group}: ${f.reason}\n`);
          return r.status === 200 ? 0 : 1;
        }
        break;
      }
      case 'balance':
        r = values['dry-run'] ? await call(admin, 'GET', '/balance/plan') : await call(admin, 'POST', '/balance');
        if (r.status === 200) {
          const moves = r.json.moves as {
            group: number;
            to: string;
            kind: string;
            reason: string;
            before: { from: number; to: number };
            after: { from: number; to: number };
          }[];
          const score = r.json.score as { before: number; after: number } | undefined;
          process.stdout.write(
            `${values['dry-run'] ? 'would move' : 'moved'} ${moves.length} leaders${r.json.idle ? ` (${r.json.idle})` : ''}` +
              `${score ? `; imbalance ${(100 * score.before).toFixed(1)}% -> ${(100 * score.after).toFixed(1)}%` : ''}\n`,
          );
          const n = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2));
          for (const m of moves)
            process.stdout.write(
              `  group ${m.group} -> ${m.to} [${m.kind}] ${n(m.before.from)}/${n(m.before.to)} -> ${n(m.after.from)}/${n(m.after.to)}: ${m.reason}\n`,
            );
        }
        break;
      case 'member': {
        const group = Number(values.group);
        if (!Number.isInteger(group) || group < 1) throw new Usage('--group G (a positive integer) is required');
        const ops = (
          [
            ['addLearner', values['add-learner']],
            ['promote', values.promote],
            ['remove', values.remove],
          ] as const
        ).filter(([, v]) => v);
        if (ops.length !== 1) throw new Usage('exactly one of --add-learner N, --promote N, --remove N');
        r = await call(admin, 'POST', '/members', { group, op: ops[0][0], node: ops[0][1] });
        if (r.status === 200)
          process.stdout.write(
            `group ${group}: ${ops[0][0]} ${ops[0][1]} done; replicas ${(r.json.replicas as string[]).join(', ')}\n`,
          );
        break;
      }
      case 'undrain':
        r = await call(admin, 'POST', '/undrain');
        if (r.status === 200) process.stdout.write('undrained\n');
        break;
      default:
        throw new Usage(`unknown command ${cmd}`);
    }
    if (r.status !== 200) {
      process.stderr.write(
        `flotilla ${cmd}: ${r.json.error ?? r.status}${r.json.reason ? ` (${r.json.reason})` : ''}: ${r.json.message ?? ''}\n`,
      );
      return 1;
    }
    return 0;
  } catch (e) {
    if (e instanceof Usage || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`flotilla ${cmd}: ${(e as Error).message}\n\n${CLIENT_HELP}`);
      return 2;
    }
    process.stderr.write(`flotilla ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}
