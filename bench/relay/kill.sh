#!/usr/bin/env bash
# Crash benchmark: SIGKILL the gateway again and again under a relay load and
# count what the sink got: lost messages (must be 0) and duplicates per kill.
#
# Usage: bash bench/relay/kill.sh            (see bench/relay/README.md)
#
# One `emla serve` (release, SQLite, relay on, a fixed port on 127.0.0.1)
# relays to bench/relay/kill_sink.py, an aiosmtpd sink that logs the
# recipient of every message it accepts before its 250. bench/relay/kill_load.py
# sends N messages over SESSIONS sessions, the same signed message each to a
# recipient of its own (1bob@, 2bob@, ...: new to the replay check, and told
# apart at the sink); it resends what a broken connection left unanswered
# and logs every recipient it got a 250 for. While the load runs, the script
# kills the gateway with SIGKILL KILLS times, each a random MIN_MS..MAX_MS
# after the restarted gateway listens again, and restarts it on the same data
# directory and port. After the last restart the gateway runs until the sink
# has every acknowledged message (or RUN_TIMEOUT), then a settle second, then
# it is stopped.
#
# Reported (and in $OUT/kill.json): acknowledged, delivered (distinct
# recipients at the sink), lost = acknowledged but never delivered (must be
# 0: `250` only once durable, and a claimed entry is delivered at least
# once), duplicates = deliveries beyond the first per recipient, duplicates
# per kill, and the queue's final state (every entry relayed).
# Exit 1 if something was lost, the queue is not all relayed, `emla audit
# verify` fails, or the load did not settle every message.
#
# Environment (all optional):
#   N=4000  SESSIONS=20  KILLS=30  MIN_MS=200  MAX_MS=600
#   IN_FLIGHT=64 POLL_MS=50 CONN=20 (as bench/relay/run.sh)
#   RUN_TIMEOUT=300  upper bound in seconds on the load and on the drain
#   OUT=DIR          keep kill.json, the logs and the sink's record there
#   EMLA_BIN=PATH    use this emla binary instead of building target/release/emla
# Needs: cargo, openssl 3.x, python3 (+ `cryptography`, `aiosmtpd`), sqlite3.
# Targets 127.0.0.1 only; bounded in kills, messages and time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/relay
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
N=${N:-4000}
SESSIONS=${SESSIONS:-20}
KILLS=${KILLS:-30}
MIN_MS=${MIN_MS:-200}
MAX_MS=${MAX_MS:-600}
IN_FLIGHT=${IN_FLIGHT:-64}
POLL_MS=${POLL_MS:-50}
CONN=${CONN:-20}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

for tool in sqlite3 "$OPENSSL" "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "kill: $tool is missing" >&2; exit 2; }
done
"$PYTHON" -c 'import aiosmtpd' 2>/dev/null || { echo "kill: python3 aiosmtpd is missing" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/emla-kill.XXXXXX")
KEEP_OUT=${OUT:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
SERVER_PID=
SINK_PID=
LOAD_PID=
cleanup() {
    for p in $LOAD_PID $SERVER_PID $SINK_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

build_emla
echo "== emla: $EMLA ($("$EMLA" --version))" >&2
make_messages kill 1

RUN=$WORK/run
DATA=$RUN/data
CFG=$RUN/emla.toml
mkdir -p "$DATA"
timeout "$((3 * RUN_TIMEOUT))" "$PYTHON" "$HERE/kill_sink.py" --port-file "$RUN/sink.port" \
    --log "$OUT/sink.log" --timeout "$((3 * RUN_TIMEOUT))" 2>"$RUN/sink.err" &
SINK_PID=$!
for ((i = 0; i < 100; i++)); do [[ -s $RUN/sink.port ]] && break; sleep 0.1; done
SINK_PORT=$(cat "$RUN/sink.port" 2>/dev/null) || { echo "kill: the sink did not start" >&2; cat "$RUN/sink.err" >&2; exit 1; }

policy=$WORK/pki/policy-kill
cp -r "$WORK/pki/policy" "$policy"
sed -i "s|^url = \"smtp://127.0.0.1:2626\"|url = \"smtp://127.0.0.1:$SINK_PORT\"|" "$policy/authorities/bb-moj.toml"
grep -q "127.0.0.1:$SINK_PORT" "$policy/authorities/bb-moj.toml" || { echo "kill: cannot point bb-moj at the sink" >&2; exit 1; }
printf '\n[relay]\nmax_connections_per_destination = %s\n' "$CONN" >>"$policy/gateway.toml"
# A fixed port: the load reconnects to the same address after every restart.
LISTEN=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    emla_config "sqlite://$DATA/emla.db" "$policy" | sed "s|127.0.0.1:0|127.0.0.1:$LISTEN|"
    cat <<EOF

[relay]
enabled = true
poll_ms = $POLL_MS
max_in_flight = $IN_FLIGHT
EOF
} >"$CFG"

serve_emla kill
echo "== $N messages over $SESSIONS sessions, $KILLS SIGKILLs ${MIN_MS}-${MAX_MS} ms apart" >&2
t0=$(date +%s.%N)
timeout "$((RUN_TIMEOUT + 10))" "$PYTHON" "$HERE/kill_load.py" --port "$LISTEN" --messages "$N" \
    --sessions "$SESSIONS" --acked "$OUT/acked.log" --timeout "$RUN_TIMEOUT" "$MSG" \
    >"$OUT/load.json" 2>"$OUT/load.err" &
LOAD_PID=$!
kills=0
while ((kills < KILLS)) && kill -0 "$LOAD_PID" 2>/dev/null; do
    sleep "$("$PYTHON" -c 'import random,sys; print(random.randint(int(sys.argv[1]), int(sys.argv[2])) / 1000)' "$MIN_MS" "$MAX_MS")"
    kill -0 "$LOAD_PID" 2>/dev/null || break
    kill -KILL "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    kills=$((kills + 1))
    serve_emla kill
done
wait "$LOAD_PID" || true
LOAD_PID=
load_s=$("$PYTHON" -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$t0")
acked=$(sort -u "$OUT/acked.log" 2>/dev/null | wc -l)
# The drain: until every acknowledged message is at the sink (bounded).
for ((i = 0; i < RUN_TIMEOUT * 10; i++)); do
    [[ -z $(comm -23 <(sort -u "$OUT/acked.log") <(sort -u "$OUT/sink.log")) ]] && break
    sleep 0.1
done
sleep 1
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=
cat "$RUN/serve.err" >"$OUT/serve.log" 2>/dev/null || true

pending=$(sqlite3 "$DATA/emla.db" "SELECT count(*) FROM queue WHERE status <> 'relayed'")
queued=$(sqlite3 "$DATA/emla.db" "SELECT count(*) FROM queue")
if "$EMLA" audit verify --config "$CFG" >"$RUN/audit.out" 2>&1; then audit=ok; else audit="failed: $(head -c 300 "$RUN/audit.out")"; fi
"$PYTHON" - "$OUT/acked.log" "$OUT/sink.log" "$OUT/load.json" "$kills" "$pending" "$queued" "$audit" "$load_s" >"$OUT/kill.json" <<'EOF'
import collections, json, sys
acked = set(open(sys.argv[1]).read().split())
got = collections.Counter(open(sys.argv[2]).read().split())
load = json.load(open(sys.argv[3])) if open(sys.argv[3]).read().strip() else {}
kills = int(sys.argv[4])
dups = sum(c - 1 for c in got.values())
print(json.dumps({
    "messages": load.get("messages"), "kills": kills, "load_s": float(sys.argv[8]),
    "acked": len(acked), "unsettled": load.get("unsettled"), "refused": load.get("refused"),
    "delivered": len(got), "deliveries": sum(got.values()),
    "lost": len(acked - set(got)), "duplicates": dups,
    "duplicates_per_kill": round(dups / kills, 2) if kills else None,
    "queue_entries": int(sys.argv[6]), "not_relayed": int(sys.argv[5]), "audit": sys.argv[7],
}))
EOF
cat "$OUT/kill.json"
"$PYTHON" - "$OUT/kill.json" "$N" <<'EOF' || { [[ -n $KEEP_OUT ]] && echo "results kept in $OUT" >&2; exit 1; }
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
print(f"kill: {r['kills']} kills in {r['load_s']} s, {r['acked']} of {n} acknowledged, {r['delivered']} delivered, "
      f"lost {r['lost']}, duplicates {r['duplicates']} ({r['duplicates_per_kill']} per kill), "
      f"queue {r['queue_entries']} entries, {r['not_relayed']} not relayed, audit {r['audit']}", file=sys.stderr)
ok = r["lost"] == 0 and r["not_relayed"] == 0 and r["audit"] == "ok" and r["acked"] == n and not r["unsettled"]
sys.exit(0 if ok else 1)
EOF
[[ -n $KEEP_OUT ]] && echo "results kept in $OUT" >&2
exit 0
