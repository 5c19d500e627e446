#!/usr/bin/env bash
# Rolling maintenance with the CLI, as the leader-transfer playbook prescribes: for each node in
# turn, drain it (its leaderships move to caught-up replicas, never to the node maintained next),
# verify it leads nothing, restart it (here: SIGTERM and start again, still draining), check its
# health, undrain it. A writer keeps writing through the other nodes the whole time.
#
#   bash examples/rolling-maintenance/run.sh      (from the repository root, after npm ci)
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x
cd "$(dirname "$0")/../.."
FLOTILLA=(node --import tsx src/cli/main.ts)
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT

ports=($(node -e 'const n=require("net");let o=[],k=6;for(let i=0;i<6;i++){const s=n.createServer().listen(0,"127.0.0.1",()=>{o.push(s.address().port);s.close();if(--k===0)console.log(o.join(" "))})}'))
declare -A RAFT ADMIN PID
i=0; for n in n1 n2 n3; do RAFT[$n]=127.0.0.1:${ports[$i]}; ADMIN[$n]=127.0.0.1:${ports[$((i+3))]}; i=$((i+1)); done

start() { # start NODE [extra flags]
  local n=$1; shift
  local peers=(); for p in n1 n2 n3; do [ "$p" != "$n" ] && peers+=(--peer "$p=${RAFT[$p]}"); done
  "${FLOTILLA[@]}" start --id "$n" --data "$DIR/$n" --listen "${RAFT[$n]}" --admin "${ADMIN[$n]}" --groups 200 --workers 1 \
    --log-level warn "${peers[@]}" "$@" 2>>"$DIR/$n.log" &
  PID[$n]=$!; PIDS+=($!)
  for _ in $(seq 1 150); do curl -sf "http://${ADMIN[$n]}/health" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "node $n did not become healthy"; exit 1
}

for n in n1 n2 n3; do start "$n"; done
echo "3 nodes up"

# A writer through the whole run: every node except the one being maintained (file $DIR/skip).
node -e '
  const [admins, skipFile, stopFile] = [process.argv[1].split(","), process.argv[2], process.argv[3]];
  const fs = require("fs"); let ok = 0, failed = 0, i = 0;
  (async () => { while (!fs.existsSync(stopFile)) {
    const skip = fs.existsSync(skipFile) ? fs.readFileSync(skipFile, "utf8").trim() : "";
    const targets = admins.filter((a) => !a.startsWith(skip + "=")); const t = targets[i % targets.length].split("=")[1];
    try { const r = await fetch(`http://${t}/kv/key${i % 500}`, { method: "PUT", body: String(i) }); if (r.status === 200) ok++; else failed++; } catch { failed++; }
    i++; }
    fs.writeFileSync(stopFile, `${ok} ${failed}\n`); })();
' "n1=${ADMIN[n1]},n2=${ADMIN[n2]},n3=${ADMIN[n3]}" "$DIR/skip" "$DIR/stop" &
WRITER=$!; PIDS+=($WRITER)
sleep 2

next() { case $1 in n1) echo n2;; n2) echo n3;; n3) echo n1;; esac; }
for n in n1 n2 n3; do
  echo "--- $n: drain (avoid $(next $n), maintained next)"
  "${FLOTILLA[@]}" drain --admin "${ADMIN[$n]}" --wait --avoid "$(next $n)"
  leaders=$(curl -sf "http://${ADMIN[$n]}/status" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).leaders))')
  [ "$leaders" = "0" ] || { echo "$n still leads $leaders groups"; exit 1; }
  echo "$n leads nothing; restarting it"
  echo "$n" > "$DIR/skip"; sleep 0.5
  kill -TERM "${PID[$n]}"; wait "${PID[$n]}" || true
  start "$n" --draining
  "${FLOTILLA[@]}" undrain --admin "${ADMIN[$n]}"
  rm -f "$DIR/skip"
  echo "$n is back and undrained"
done

touch "$DIR/stop"; for _ in $(seq 1 100); do [ -s "$DIR/stop" ] && break; sleep 0.1; done
read -r OK FAILED < "$DIR/stop"
"${FLOTILLA[@]}" status --admin "${ADMIN[n1]}" > "$DIR/status.txt"; head -3 "$DIR/status.txt"
echo "writes: $OK acknowledged, $FAILED failed"
[ "$FAILED" = "0" ] && [ "$OK" -gt 0 ] || { echo "FAILED: writes failed during maintenance"; exit 1; }
echo "OK: rolling maintenance done on n1, n2, n3 with no failed write"
