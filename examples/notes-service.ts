// An application that embeds flotilla as its storage layer: a small HTTP notes service. Three
// flotilla nodes run inside this process (in production each would be its own process on its own
// machine, with the same code); the service stores each note through the node's key-value API,
// so every write is on a quorum's disk before the HTTP answer.
//
//   npx tsx examples/notes-service.ts           # self-test: writes, reads, moves leaders, prints OK
//   npx tsx examples/notes-service.ts --serve   # keep serving on http://127.0.0.1:8080
//
// API: PUT /notes/<id> (body: the note), GET /notes/<id> (linearizable; ?stale for a local read),
// DELETE /notes/<id>.
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type FlotillaNode } from '../src/index.js';

const serve = process.argv.includes('--serve');
const root = mkdtempSync(join(tmpdir(), 'notes-'));
const ids = ['n1', 'n2', 'n3'];
// Free ports for the nodes' Raft listeners (fixed ones in production).
const raftPorts = await Promise.all(
  ids.map(
    () =>
      new Promise<number>((resolve) => {
        const s = createNetServer().listen(0, '127.0.0.1', () => {
          const { port } = s.address() as { port: number };
          s.close(() => resolve(port));
        });
      }),
  ),
);
const addr = (i: number) => `127.0.0.1:${raftPorts[i]}`;

// 1. Start the storage nodes: 64 Raft groups, replicated on all three.
const nodes: FlotillaNode[] = await Promise.all(
  ids.map((id, i) =>
    startNode({
      id,
      dataDir: join(root, id),
      listen: addr(i),
      groups: 64,
      workers: 1,
      peers: Object.fromEntries(ids.map((p, j) => [p, addr(j)]).filter(([p]) => p !== id)),
      labels: { zone: `zone-${i}` },
    }),
  ),
);

// 2. The service: any node can serve any request (it forwards to the group's leader).
const enc = new TextEncoder();
const dec = new TextDecoder();
function service(node: FlotillaNode): Server {
  return createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/notes\/([\w-]{1,64})$/.exec(url.pathname);
    if (!m) return void res.writeHead(404).end('not found\n');
    const key = `note/${m[1]}`;
    try {
      if (req.method === 'PUT') {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        await node.kv.put(key, Buffer.concat(chunks));
        return void res.writeHead(204).end();
      }
      if (req.method === 'GET') {
        // A client that hangs up withdraws its read (the signal aborts it).
        const gone = new AbortController();
        res.on('close', () => gone.abort());
        const consistency = url.searchParams.has('stale') ? 'stale' : 'linearizable';
        const v = await node.kv.get(enc.encode(key), { consistency, signal: gone.signal });
        return v === null
          ? void res.writeHead(404).end('no such note\n')
          : void res.writeHead(200, { 'content-type': 'text/plain' }).end(dec.decode(v));
      }
      if (req.method === 'DELETE') {
        await node.kv.delete(key);
        return void res.writeHead(204).end();
      }
      res.writeHead(405).end();
    } catch (e) {
      // Typed, retryable errors (NotLeader, Unavailable, Overloaded, Timeout) become 503 with Retry-After.
      const code = (e as { code?: string }).code ?? 'Error';
      res
        .writeHead(code === 'InvalidArgument' ? 400 : 503, { 'retry-after': '1' })
        .end(`${code}: ${(e as Error).message}\n`);
    }
  });
}
const server = service(nodes[0]);
await new Promise<void>((r) => server.listen(serve ? 8080 : 0, '127.0.0.1', () => r()));
const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

async function shutdown(): Promise<void> {
  server.close();
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(root, { recursive: true, force: true });
}

if (serve) {
  process.stdout.write(`notes service on ${base} (PUT/GET/DELETE /notes/<id>); Ctrl-C stops\n`);
  process.on('SIGINT', () => void shutdown().then(() => process.exit(0)));
} else {
  // 3. Self-test: write notes, move a leader, read everything back.
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${base}/notes/n${i}`, { method: 'PUT', body: `note number ${i}` });
    if (r.status !== 204) throw new Error(`PUT failed: ${r.status} ${await r.text()}`);
  }
  const st = await nodes[0].status({ detail: true });
  const led = (st.perGroup as { group: number; role: string }[]).find((g) => g.role === 'leader');
  if (led) {
    const t = await nodes[0].transferLeader(led.group, 'n2');
    process.stdout.write(`moved group ${t.group} from ${t.from} to ${t.to} in ${t.ms} ms (verified)\n`);
  }
  let ok = 0;
  for (let i = 0; i < 20; i++) if ((await (await fetch(`${base}/notes/n${i}`)).text()) === `note number ${i}`) ok++;
  const missing = (await fetch(`${base}/notes/nope`)).status;
  await shutdown();
  if (ok !== 20 || missing !== 404) throw new Error(`read back ${ok}/20 notes, missing note status ${missing}`);
  process.stdout.write('OK: 20 notes written through the service and read back linearizably after a leader moved\n');
}
