// The text of `flotilla start --help`, apart from start.ts so that printing it loads nothing
// else (start.ts pulls in the runtime, LMDB and the transport).
import { MIN_SECRET_LENGTH } from '../transport/handshake.js';

export const START_HELP = `Usage: flotilla start --id n1 --data DIR --listen HOST:PORT --peer n2=HOST:PORT ... [options]

  --id ID               this node's id (required)
  --data DIR            data directory (required)
  --listen HOST:PORT    address for other nodes (required)
  --peer ID=HOST:PORT   another node (repeat for each)
  --groups N            groups bootstrapped with the cluster (default 100)
  --replication R       replicas per group (default min(3, nodes))
  --admin HOST:PORT     admin HTTP address (/status, /health, /kv/<key>)
  --workers W           worker threads (shards) (default: 0, the shard on the main thread, on
                        machines with at most 2 cores; else the number of cores)
  --zone Z, --rack R    locality labels of this node
  --tick-ms MS          tick = heartbeat interval (default 100)
  --election-ticks N    election timeout in ticks (default 10): how long followers wait
                        for a leader before campaigning
  --election-round-ticks N
                        how long a candidate waits for a split vote to resolve before it
                        tries again (default: election-ticks)
  --timing-scale X      multiply tick-ms for slow disks or networks (default 1)
  --request-timeout-ms  default deadline of a client request (default 10000)
  --state-machine PATH  a module exporting createStateMachine(group) (default: built-in KV)
  --config FILE         JSON file with the same fields (id, data, listen, peers {id: addr},
                        groups, replication, admin, workers, zone, rack, tickMs, electionTicks,
                        electionRoundTicks,                         timingScale, requestTimeoutMs, stopDrainMs, stateMachine, logLevel, tlsCa, tlsCert,
                        tlsKey, clusterSecretFile); flags override it
  --log-level LEVEL     pino level (default info)
  --fault-injection     enable POST /debug/crash-worker and /debug/disk-delay on the admin
                        server (drills, tests)
  --admin-token TOKEN   require "Authorization: Bearer TOKEN" for every admin request that
                        changes state (or FLOTILLA_ADMIN_TOKEN)
  --no-balancer         do not run leader balancer rounds automatically (they run by default;
                        plan and one-off rounds stay available). Config: "balancer":
                        {"enabled": true, "policy": "count", "intervalMs": 2000, "tolerance": 0.1,
                        "preferences": [{"groups": {"from": 1, "to": 50}, "leaders": [{"zone": "a"}]}],
                        "followWorkload": {"minShare": 0.6}, ...} (see docs/leadership.md)
  --draining            start in maintenance (never receives leadership until undrain)
  --stop-drain-ms MS    on SIGTERM/SIGINT, move this node's leaderships away for at most MS
                        before stopping (default 10000; 0 stops at once); a second signal
                        stops at once. Config: stopDrainMs
  --tls-ca FILE         mutual TLS between nodes: the cluster CA certificate (PEM); needs
  --tls-cert FILE       this node's certificate (PEM, issued by the CA, CN or a SAN = the node id)
  --tls-key FILE        and its private key (PEM). Config: tlsCa, tlsCert, tlsKey
  --cluster-secret-file FILE  a shared cluster secret (at least ${MIN_SECRET_LENGTH} characters; surrounding
                        whitespace ignored) proved in the node handshake, never sent (or
                        FLOTILLA_CLUSTER_SECRET; config: clusterSecretFile). Every node needs the same
                        TLS / secret settings; see docs/security.md
`;
