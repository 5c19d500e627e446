// A bank on flotilla: three nodes in this process (each with its own data dir, TCP port and two
// worker threads) replicate a ledger per branch (one Raft group per branch) with the user state
// machine in ./ledger.ts. Random transfers run from every node concurrently; an overdraft is
// rejected by the state machine; at the end every node reads every branch linearizably and the
// money is conserved. Run: npx tsx examples/bank-ledger/run.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { startNode, type FlotillaNode } from '../../src/index.js';

const BRANCHES = 8;
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave'];
const OPENING = 1_000;

async function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => r(p));
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'flotilla-bank-'));
const ids = ['n1', 'n2', 'n3'];
const ports = await Promise.all(ids.map(() => freePort()));
const addr = Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
const nodes: FlotillaNode[] = [];
try {
  for (const id of ids) {
    nodes.push(
      await startNode({
        id,
        dataDir: join(dir, id),
        listen: addr[id],
        groups: BRANCHES,
        workers: 2,
        tickMs: 50,
        peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addr[p]])),
        stateMachine: { module: resolve(import.meta.dirname, 'ledger.ts') },
      }),
    );
  }
  // Open the accounts of every branch (group ids 1..BRANCHES), from any node.
  for (let b = 1; b <= BRANCHES; b++) {
    for (const a of ACCOUNTS) await nodes[b % 3].propose(b, { op: 'open', account: a, balance: OPENING });
  }
  let done = 0;
  let rejected = 0;
  await Promise.all(
    nodes.map(async (node, n) => {
      for (let i = 0; i < 150; i++) {
        const b = 1 + ((i * 7 + n) % BRANCHES);
        const from = ACCOUNTS[(i + n) % 4];
        const to = ACCOUNTS[(i + n + 1 + (i % 3)) % 4];
        try {
          await node.propose(b, { op: 'transfer', from, to, amount: 1 + ((i * 37) % 120) });
          done++;
        } catch (e) {
          if ((e as { code?: string }).code !== 'StateMachineError') throw e;
          rejected++; // insufficient funds: the ledger said no, nothing changed
        }
      }
    }),
  );
  for (let b = 1; b <= BRANCHES; b++) {
    const totals = await Promise.all(nodes.map((node) => node.read<number>(b, { total: true })));
    if (totals.some((t) => t !== OPENING * ACCOUNTS.length))
      throw new Error(`branch ${b}: totals ${totals.join(', ')}`);
  }
  console.log(
    `${done} transfers applied, ${rejected} rejected for insufficient funds; branch 1 on n3:`,
    await nodes[2].read(1, { accounts: true }),
  );
  console.log(`OK: money conserved in all ${BRANCHES} branches on every node`);
} finally {
  for (const n of nodes) await n.stop();
  rmSync(dir, { recursive: true, force: true });
}
