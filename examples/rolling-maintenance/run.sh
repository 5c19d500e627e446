#!/usr/bin/env bash
# Rolling maintenance with the CLI and plain restarts. For each node in turn: SIGTERM it (the node
# first drains itself: its leaderships are handed over to the other replicas, bounded by
# --stop-drain-ms, default 10 s; a second SIGTERM would stop it at once), wait for it to exit,
# check that the other nodes lead every group at that moment, start it again with the same flags,
# wait until it is healthy and its peers see it as no longer draining, then go on to the next. A
# writer keeps writing through the nodes not being restarted the whole time and must see no failed
# write. At the end the leader balancer hands leaderships back to the restarted nodes (after their
# warm-up) and the script shows the leader counts evening out.
#
# The explicit alternative, for an operator who wants to check before stopping a node:
#   flotilla drain --admin HOST:PORT --wait --avoid NEXT   # exit 1, naming the groups, if any did not move
#   flotilla status --admin HOST:PORT                      # 0 leaders
#   kill -TERM PID; ...maintenance...; flotilla start ... --draining
#   flotilla undrain --admin HOST:PORT                     # the balancer brings leaders back
# (--avoid NEXT keeps the leaderships off the node to be maintained next.)
#
#   bash examples/rolling-maintenance/run.sh      (from the repository root, after npm ci)
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x
cd "$(dirname "$0")/../.."
FLOTILLA=(node --import tsx src/cli/main.ts)
GROUPS_N=200
NODES=(n1 n2 n3)
DIR=$(mktemp -d)
declare -A RAFT ADMIN PID
WRITER=
cleanup() {
  for p in "${PID[@]}" $WRITER; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

ports=($(node -e 'const n=require("net");let o=[],k=6;for(let i=0;i<6;i++){const s=n.createServer().listen(0,"127.0.0.1",()=>{o.push(s.address().port);s.close();if(--k===0)console.log(o.join(" "))})}'))
i=0; for n in "${NODES[@]}"; do RAFT[$n]=127.0.0.1:${ports[$i]}; ADMIN[$n]=127.0.0.1:${ports[$((i+3))]}; i=$((i+1)); done

now_ms() { date +%s%3N; }
fail() { echo "FAILED: $*"; for n in "${NODES[@]}"; do echo "--- $n log (tail)"; tail -5 "$DIR/$n.log" 2>/dev/null || true; done; exit 1; }

# leaders NODE...: "n1=67 n2=66 sum=133" from each node's GET /status ("-" for one that does not answer).
leaders() {
  local args=(); for n in "$@"; do args+=("$n=${ADMIN[$n]}"); done
  node -e '
    (async () => { let sum = 0; const out = [];
      for (const a of process.argv.slice(1)) { const [id, addr] = a.split("=");
        try { const s = await (await fetch(`http://${addr}/status`, { signal: AbortSignal.timeout(5000) })).json(); sum += s.leaders; out.push(`${id}=${s.leaders}`); }
        catch { out.push(`${id}=-`); } }
      console.log(`${out.join(" ")} sum=${sum}`); })();' "${args[@]}"
}
sum_of() { echo "${1##*sum=}"; }

# draining_peers NODE...: the ids the given nodes consider draining, space-separated ("?" if one does not answer).
draining_peers() {
  local args=(); for n in "$@"; do args+=("${ADMIN[$n]}"); done
  node -e '
    (async () => { const out = new Set();
      for (const addr of process.argv.slice(1)) {
        try { const s = await (await fetch(`http://${addr}/status`, { signal: AbortSignal.timeout(5000) })).json(); for (const d of s.drainingPeers) out.add(d); }
        catch { out.add("?"); } }
      console.log([...out].join(" ")); })();' "${args[@]}"
}

# poll SECONDS INTERVAL COMMAND...: run COMMAND every INTERVAL seconds until it succeeds; fail
# (return 1) once SECONDS have passed.
poll() {
  local end=$((SECONDS + $1)) interval=$2; shift 2
  until "$@"; do [ "$SECONDS" -ge "$end" ] && return 1; sleep "$interval"; done
}

# exited PID: the process is gone or a zombie (a child of this script stays one until `wait`).
exited() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null || true); [ -z "$st" ] || [ "${st:0:1}" = Z ]; }
healthy() { curl -sf "http://${ADMIN[$1]}/health" >/dev/null 2>&1; }
all_led() { local l; l=$(leaders "${NODES[@]}"); [ "$(sum_of "$l")" = "$GROUPS_N" ]; }
others_of() { local o=(); for p in "${NODES[@]}"; do [ "$p" != "$1" ] && o+=("$p"); done; echo "${o[@]}"; }
# spread: every group is led and every node leads at least 90% of its fair share (the balancer's
# doing: it fills a node that has warmed up to its share, 67/67/66 here).
spread() {
  local l c fair=$(( GROUPS_N / ${#NODES[@]} )); l=$(leaders "${NODES[@]}")
  [ "$(sum_of "$l")" = "$GROUPS_N" ] || return 1
  for n in "${NODES[@]}"; do c=${l#*"$n="}; c=${c%% *}; [ "$c" != - ] && [ "$c" -ge $(( fair * 9 / 10 )) ] || return 1; done
}
not_draining_for_peers() { local d; d=$(draining_peers $(others_of "$1")); [[ " $d " != *" $1 "* && " $d " != *" ? "* ]]; }

start() { # start NODE: the same flags every time (no --draining, no undrain afterwards)
  local n=$1
  local peers=(); for p in $(others_of "$n"); do peers+=(--peer "$p=${RAFT[$p]}"); done
  "${FLOTILLA[@]}" start --id "$n" --data "$DIR/$n" --listen "${RAFT[$n]}" --admin "${ADMIN[$n]}" \
    --groups "$GROUPS_N" --workers 1 --log-level info "${peers[@]}" >>"$DIR/$n.log" 2>&1 &
  PID[$n]=$!
  poll 30 0.1 healthy "$n" || fail "node $n did not become healthy within 30 s"
}

t0=$(now_ms)
for n in "${NODES[@]}"; do start "$n"; done
poll 30 0.1 all_led || fail "not every group got a leader within 30 s: $(leaders "${NODES[@]}")"
poll 60 0.1 spread || fail "the balancer did not spread the leaders within 60 s: $(leaders "${NODES[@]}")"
echo "3 nodes up, $GROUPS_N groups, leaders: $(leaders "${NODES[@]}")"

# A writer through the whole run, through every node except the one being restarted (file
# $DIR/skip). Before each request it records the skip it has seen in $DIR/seen, so the script can
# wait until no request is on its way to the node it is about to stop.
node -e '
  const [admins, skipFile, seenFile, stopFile] = [process.argv[1].split(","), process.argv[2], process.argv[3], process.argv[4]];
  const fs = require("fs"); let ok = 0, failed = 0, i = 0; const errors = [];
  const read = (f) => { try { return fs.readFileSync(f, "utf8").trim(); } catch { return ""; } };
  (async () => { while (!fs.existsSync(stopFile)) {
    const skip = read(skipFile); fs.writeFileSync(seenFile + ".tmp", skip); fs.renameSync(seenFile + ".tmp", seenFile);
    const targets = admins.filter((a) => !a.startsWith(skip + "=")); const [id, t] = targets[i % targets.length].split("=");
    try {
      const r = await fetch(`http://${t}/kv/key${i % 500}`, { method: "PUT", body: String(i), signal: AbortSignal.timeout(20000) });
      if (r.status === 200) ok++; else { failed++; if (errors.length < 5) errors.push(`${id}: ${r.status} ${await r.text()}`); }
    } catch (e) { failed++; if (errors.length < 5) errors.push(`${id}: ${e.message}`); }
    i++; }
    fs.writeFileSync(stopFile + ".result", `${ok} ${failed}\n${errors.join("\n")}\n`); })();
' "n1=${ADMIN[n1]},n2=${ADMIN[n2]},n3=${ADMIN[n3]}" "$DIR/skip" "$DIR/seen" "$DIR/stop" &
WRITER=$!
writer_sees() { [ "$(cat "$DIR/seen" 2>/dev/null || true)" = "$1" ]; }
poll 10 0.1 writer_sees "" || fail "the writer did not start"

for n in "${NODES[@]}"; do
  echo "--- $n: restart (SIGTERM drains it first); leaders before: $(leaders "${NODES[@]}")"
  echo "$n" > "$DIR/skip"
  poll 30 0.1 writer_sees "$n" || fail "the writer did not stop using $n"
  t=$(now_ms)
  kill -TERM "${PID[$n]}"
  poll 30 0.1 exited "${PID[$n]}" || fail "$n did not exit within 30 s of SIGTERM"
  rc=0; wait "${PID[$n]}" || rc=$?; unset "PID[$n]"
  [ "$rc" = 0 ] || fail "$n exited with status $rc"
  after=$(leaders $(others_of "$n"))
  outcome=$(grep -o '"outcome":"[^"]*"' "$DIR/$n.log" | tail -1 | cut -d'"' -f4)
  echo "$n exited 0 after $(( $(now_ms) - t )) ms (stop drain: ${outcome:-?}); the others lead: $after"
  [ "$(sum_of "$after")" = "$GROUPS_N" ] || fail "after $n stopped, the others lead $(sum_of "$after") of $GROUPS_N groups"
  t=$(now_ms)
  start "$n"
  poll 10 0.1 not_draining_for_peers "$n" || fail "the peers of $n still consider it draining: $(draining_peers $(others_of "$n"))"
  rm -f "$DIR/skip"
  echo "$n is back: healthy and not draining for its peers $(( $(now_ms) - t )) ms after start"
done

# The balancer gives the restarted nodes leaderships back once they have warmed up (5 s by
# default). The writer keeps writing.
t=$(now_ms)
if poll 60 0.1 spread; then
  echo "leaders spread back by the balancer $(( $(now_ms) - t )) ms after the last restart: $(leaders "${NODES[@]}")"
else
  fail "the balancer did not spread the leaders back within 60 s: $(leaders "${NODES[@]}")"
fi

touch "$DIR/stop"
poll 30 0.1 test -s "$DIR/stop.result" || fail "the writer did not finish"
read -r OK FAILED < "$DIR/stop.result"
"${FLOTILLA[@]}" status --admin "${ADMIN[n1]}" > "$DIR/status.txt"; head -3 "$DIR/status.txt"
echo "writes: $OK acknowledged, $FAILED failed"
[ "$FAILED" = "0" ] && [ "$OK" -gt 0 ] || { tail -n +2 "$DIR/stop.result"; fail "writes failed during maintenance"; }
echo "OK: rolling maintenance with plain restarts done on n1, n2, n3 in $(( ($(now_ms) - t0) / 1000 )) s with no failed write"
