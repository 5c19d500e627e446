// The command line of the benchmark runner (`flotilla bench`, `npm run bench`): its usage, its
// scenarios and the checks of its arguments. Apart from run.ts, which imports every scenario and
// with them the runtime, so that `flotilla bench --help` and a usage error answer without
// loading any of it.
import { parseArgs } from 'node:util';

export const BENCH_USAGE = `Usage: flotilla bench [scenario...] [--quick] [--repeat N] [--out DIR] [--compare FILE]
                      [--rate R[,R...]]
scenarios (default: all, in this order):
  micro       Raft core and transport micro benchmarks (tinybench)
  storage     LMDB log engine: durable entries/s and commit latency per worker
  throughput  writes/s and p50/p99/p99.9 vs active groups (1..10,000) and payload (16 B..1 KiB),
              embedded API; then the idle cost of the same cluster; etcd through its gRPC
              client (etcd3) at 1/256/3,000 writers beside the 1-group rows, when installed
  http        the HTTP key-value gateway at 1/16/256 clients, side by side with etcd when
              installed; etcd move-leader and kill -9 under load (192 writers through its
              gRPC client when etcd3 is installed, else 16 HTTP clients)
  reads       ReadIndex and lease reads mixed 9:1 with writes
  idle        100,000 quiesced groups: time to elect, CPU and RSS (full run only)
  transfer    verified leader transfers and a drain under load
  transfer-http  100 transfers as POST /transfer to the leader's admin address under 16 HTTP
              writers (timed at the client), then the same through the CLI beside its start-up
  drain       n1 leads all 1,000 groups and drains under load (full run only)
  kill        kill -9 of the node leading the most groups under load
  balancer    the balancer from full skew: time, moves vs the minimum, quiet period
  snapshot    a 256 MiB group (32 MiB --quick) catches up a replica by a streamed snapshot:
              MiB/s, and follower reads of the other groups over the streaming link
  elastic     a 4th node joins 3 nodes with 1,000 groups (100 --quick) under writes, then one
              is decommissioned: time to the replica band / to removed, moves vs the minimum,
              p99 and writes/s against the baseline, failed writes
options:
  --quick           small sizes, finishes in under 3 minutes on 2 cores
  --repeat N        run each scenario N times; figures and table cells are medians of the runs
                    with their range (default 1)
  --out DIR         where results.json, report.md and the charts go (default bench-results)
  --compare FILE    an earlier results.json: print ratios and flag regressions beyond the noise;
                    the report names that run's commit and date (or says it recorded none)
  --balancer JSON   balancer settings for the balancer scenario
  --rate R[,R...]   offered writes/s for the throughput scenario's open-loop latency sweep
                    (1,000 groups; default 5,000..80,000, or 5,000,15,000 with --quick)
  --concurrency N   drain concurrency for the drain scenario (default 64)
`;

/** Every scenario, in the order they run. */
export const SCENARIOS = [
  'micro',
  'storage',
  'throughput',
  'http',
  'reads',
  'idle',
  'transfer',
  'transfer-http',
  'drain',
  'kill',
  'balancer',
  'snapshot',
  'elastic',
] as const;
export type Scenario = (typeof SCENARIOS)[number];
/** Older scenario names, still accepted. */
const ALIASES: Record<string, Scenario> = {
  'raft-core': 'micro',
  transport: 'micro',
  cluster: 'throughput',
  peers: 'http',
  etcd: 'http',
};

export interface BenchArgs {
  /** The scenarios to run, in SCENARIOS' order. */
  readonly order: readonly Scenario[];
  readonly quick: boolean;
  readonly balancerConfig: Record<string, unknown> | undefined;
  readonly concurrency: number;
  readonly repeat: number;
  /** Offered rates (writes/s) for the throughput scenario's open-loop sweep; undefined = its own. */
  readonly rates: readonly number[] | undefined;
  /** An earlier results.json to compare with (read and checked by the runner). */
  readonly compare: string | undefined;
  readonly out: string;
}

export type BenchCommand =
  | { readonly kind: 'run'; readonly args: BenchArgs }
  | { readonly kind: 'help' }
  /** A usage error: the message (the usage goes with it). */
  | { readonly kind: 'usage'; readonly message: string };

const OPTIONS = {
  quick: { type: 'boolean' },
  out: { type: 'string' },
  balancer: { type: 'string' },
  concurrency: { type: 'string' },
  repeat: { type: 'string' },
  rate: { type: 'string' },
  compare: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `argv` (the arguments after `flotilla bench`) as a run, a request for help or a usage error. */
export function parseBenchArgs(argv: readonly string[]): BenchCommand {
  const usage = (message: string): BenchCommand => ({ kind: 'usage', message });
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: OPTIONS });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  const chosen: Scenario[] = [];
  for (const p of positionals) {
    const n = (SCENARIOS as readonly string[]).includes(p) ? (p as Scenario) : ALIASES[p];
    if (!n) return usage(`unknown scenario "${p}"`);
    if (!chosen.includes(n)) chosen.push(n);
  }
  const quick = values.quick ?? false;
  // The default set: every scenario; --quick leaves out the two whose point is size or duration.
  const order = (
    chosen.length > 0 ? chosen : SCENARIOS.filter((s) => !(quick && (s === 'idle' || s === 'drain')))
  ).sort((a, b) => SCENARIOS.indexOf(a) - SCENARIOS.indexOf(b));
  let balancerConfig: Record<string, unknown> | undefined;
  try {
    const b: unknown = values.balancer ? JSON.parse(values.balancer) : undefined;
    if (b !== undefined && (typeof b !== 'object' || b === null || Array.isArray(b)))
      throw new Error('not a JSON object');
    balancerConfig = b === undefined ? undefined : { ...b };
  } catch (e) {
    return usage(
      `--balancer must be a JSON object of balancer settings, e.g. '{"maxConcurrent":128,"intervalMs":500}' (${(e as Error).message})`,
    );
  }
  const concurrency = Number(values.concurrency ?? 64);
  if (!Number.isInteger(concurrency) || concurrency < 1) return usage('--concurrency must be a positive integer');
  const repeat = Number(values.repeat ?? 1);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 20) return usage('--repeat must be an integer from 1 to 20');
  let rates: number[] | undefined;
  if (values.rate !== undefined) {
    rates = values.rate.split(',').map(Number);
    if (rates.some((r) => !Number.isInteger(r) || r < 1 || r > 10_000_000))
      return usage('--rate must be writes/s as positive integers, comma-separated (e.g. 5000,20000)');
    rates.sort((a, b) => a - b);
  }
  return {
    kind: 'run',
    args: {
      order,
      quick,
      balancerConfig,
      concurrency,
      repeat,
      rates,
      compare: values.compare,
      out: values.out ?? 'bench-results',
    },
  };
}
