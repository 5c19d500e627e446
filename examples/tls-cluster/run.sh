#!/usr/bin/env bash
# A 3-node cluster started from JSON config files, with mutual TLS between the nodes (certificates
# from a cluster CA, each naming its node id) and a shared cluster secret. Makes a throwaway CA with
# openssl, writes one config file per node, starts the nodes, writes and reads through the HTTP
# gateway, and shows that a node with a certificate from another CA is refused.
#
#   bash examples/tls-cluster/run.sh      (from the repository root, after npm ci; needs openssl)
set -euo pipefail
cd "$(dirname "$0")/../.."
FLOTILLA=(node --import tsx src/cli/main.ts)
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

# 1. A cluster CA and one certificate per node (CN = node id), plus an intruder's CA.
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
for ca in cluster intruder; do
  openssl req -x509 "${EC[@]}" -keyout "$DIR/$ca-ca.key" -out "$DIR/$ca-ca.pem" -days 2 -subj "/CN=$ca CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
done
cert() { # cert CA NODE
  openssl req -new "${EC[@]}" -keyout "$DIR/$1-$2.key" -out "$DIR/$1-$2.csr" -subj "/CN=$2" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s\n' "$2" > "$DIR/$1-$2.ext"
  openssl x509 -req -in "$DIR/$1-$2.csr" -CA "$DIR/$1-ca.pem" -CAkey "$DIR/$1-ca.key" -CAcreateserial -days 2 \
    -out "$DIR/$1-$2.pem" -extfile "$DIR/$1-$2.ext" 2>/dev/null
}
for n in n1 n2 n3; do cert cluster $n; done
cert intruder n3
head -c 32 /dev/urandom | base64 > "$DIR/cluster.secret"

# 2. One JSON config file per node (the same fields as the flags; see flotilla start --help).
ports=($(node -e 'const n=require("net");let o=[],k=6;for(let i=0;i<6;i++){const s=n.createServer().listen(0,"127.0.0.1",()=>{o.push(s.address().port);s.close();if(--k===0)console.log(o.join(" "))})}'))
declare -A RAFT ADMIN
i=0; for n in n1 n2 n3; do RAFT[$n]=127.0.0.1:${ports[$i]}; ADMIN[$n]=127.0.0.1:${ports[$((i+3))]}; i=$((i+1)); done
config() { # config NODE CA-NAME
  cat > "$DIR/$1.json" <<JSON
{
  "id": "$1", "dataDir": "$DIR/data-$1", "listen": "${RAFT[$1]}", "admin": "${ADMIN[$1]}",
  "peers": { $(for p in n1 n2 n3; do [ "$p" != "$1" ] && printf '"%s": "%s", ' "$p" "${RAFT[$p]}"; done | sed 's/, $//') },
  "groups": 50, "workers": 1, "logLevel": "warn",
  "transportSecurity": {
    "tls": { "ca": { "file": "$DIR/cluster-ca.pem" }, "cert": { "file": "$DIR/$2-$1.pem" }, "key": { "file": "$DIR/$2-$1.key" } },
    "secret": { "file": "$DIR/cluster.secret" }
  }
}
JSON
}
for n in n1 n2 n3; do config $n cluster; done
cat "$DIR/n1.json"

start() { "${FLOTILLA[@]}" start --config "$DIR/$1.json" 2>>"$DIR/$1.log" & PIDS+=($!); }
for n in n1 n2; do start $n; done
for n in n1 n2; do for _ in $(seq 1 150); do curl -sf "http://${ADMIN[$n]}/health" >/dev/null 2>&1 && break; sleep 0.2; done; done

# 3. An intruder: n3's id and address, but a certificate from another CA. It must not join.
config n3 intruder
start n3
sleep 3
PEERS=$(curl -sf "http://${ADMIN[n1]}/status" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).peers.join(",")))')
echo "peers of n1 while the intruder runs: [${PEERS}]"
[ "$PEERS" = "n2" ] || { echo "FAILED: the intruder joined"; exit 1; }
kill -9 "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

# 4. The real n3 joins; writes and reads through every node's gateway.
config n3 cluster
start n3
for _ in $(seq 1 150); do curl -sf "http://${ADMIN[n3]}/health" >/dev/null 2>&1 && break; sleep 0.2; done
for i in $(seq 1 10); do curl -sf -X PUT --data "value-$i" "http://${ADMIN[n1]}/kv/key$i" >/dev/null; done
for i in $(seq 1 10); do [ "$(curl -sf "http://${ADMIN[n3]}/kv/key$i")" = "value-$i" ] || { echo "FAILED: key$i"; exit 1; }; done
"${FLOTILLA[@]}" status --admin "${ADMIN[n3]}" > "$DIR/status.txt"; head -2 "$DIR/status.txt"
echo "OK: 3 nodes over mutual TLS with a cluster secret; 10 writes read back on n3; the intruder's certificate was refused"
