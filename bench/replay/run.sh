#!/usr/bin/env bash
# Replay benchmark: `emla policy replay` over N recorded messages with kept
# bodies, under an identical candidate and under one with a route removed.
#
# Usage: bash bench/replay/run.sh            (see bench/README.md, "Replay")
#
# It records the traffic through the real gateway, as it would be recorded
# in service: `emla serve` (SQLite, bodies kept, rejected ones too, relay
# off) takes N messages from bench/replay/record.py over 20 sessions, each
# its own ~10 KB evidence entity signed by alice@justice.aa.example with
# its own signature (a repeated signature would be answered with the first
# id, not recorded), all addressed to bob@justice.bb.example (route
# aa-to-bb). 90 % are sent MAIL FROM alice (accepted), 10 % MAIL FROM
# eve@justice.aa.example, From: eve (refused after DATA: not the signer, body kept).
# Then, with the gateway
# stopped, it times the release binary:
#   identical      emla policy replay COPY-OF-POLICY --config CFG --json
#                  expected: exit 0, N judged, no change;
#   route-removed  the same with route aa-to-bb deleted from routes.toml
#                  expected: exit 1, every message changes: the accepted
#                  ones accept -> reject route-denied, the refused ones'
#                  reason sender-mismatch -> route-denied.
# It prints messages/s and the total wall time of each, and checks the
# counts. Goal (from the issue): 100,000 messages in under 60 s; the script
# exits 1 if a check fails or, at N >= 100000, if the goal is missed.
#
# Environment (all optional):
#   N=100000        messages recorded
#   QUICK=1         test mode (.ci/run): N=300, no goal check
#   PERF=1          one more route-removed replay under `perf record -g`;
#                   the flat profile is printed and kept in $OUT/perf-flat.txt
#   OUT=DIR         keep results (results.md, the JSON reports) there
#   RUN_TIMEOUT=1800 upper bound in seconds on signing+recording and on each replay
#   EMLA_BIN=PATH   use this emla binary instead of building target/release/emla
# Needs: cargo, openssl 3.x, python3 (+ `cryptography`), sqlite3; perf for
# PERF=1 (`apt-get install linux-perf`). Targets 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
if [[ ${QUICK:-0} == 1 ]]; then
    N=${N:-300}
else
    N=${N:-100000}
fi
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
PERF=${PERF:-0}
REFUSED=$((N / 10))
ACCEPTED=$((N - REFUSED))

for tool in sqlite3 "$OPENSSL" "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "replay: $tool is missing" >&2; exit 2; }
done
[[ $PERF == 1 ]] && { command -v perf >/dev/null || { echo "replay: perf is missing (apt-get install linux-perf)" >&2; exit 2; }; }

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/emla-replay.XXXXXX")
KEEP_OUT=${OUT:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

build_emla
echo "== emla: $EMLA ($("$EMLA" --version))" >&2
echo "== generating the test PKI and a signed message" >&2
make_messages replay 1

RUN=$WORK/run
DATA=$RUN/data
CFG=$RUN/emla.toml
mkdir -p "$DATA"
{
    emla_config "sqlite://$DATA/emla.db" "$WORK/pki/policy"
    cat <<EOF
keep_rejected_bodies = true

[relay]
enabled = false
EOF
} >"$CFG"
serve_emla replay

echo "== signing $N distinct messages and recording them ($ACCEPTED to be accepted, $REFUSED refused)" >&2
started=$(date +%s.%N)
timeout "$RUN_TIMEOUT" "$PYTHON" "$ROOT/bench/replay/record.py" --pki "$WORK/pki" --port "$PORT" \
    --messages "$N" --refused "$REFUSED" --timeout "$((RUN_TIMEOUT - 10))" ||
    { echo "replay: recording failed" >&2; exit 1; }
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=
recorded=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
counts=$(sqlite3 "$DATA/emla.db" "SELECT count(*) || ' ' || sum(verdict = 'accept') || ' ' || sum(body_stored) FROM messages")
echo "   recorded in $recorded s: messages, accepted, bodies kept = $counts" >&2
[[ $counts == "$N $ACCEPTED $N" ]] ||
    { echo "replay: expected $N messages, $ACCEPTED accepted, $N bodies kept; got $counts" >&2; exit 1; }

# Beside policy/, so that its ../certs/ names resolve alike.
IDENTICAL=$WORK/pki/candidate-identical
REMOVED=$WORK/pki/candidate-route-removed
cp -r "$WORK/pki/policy" "$IDENTICAL"
cp -r "$WORK/pki/policy" "$REMOVED"
"$PYTHON" - "$REMOVED/routes.toml" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
blocks = re.split(r"(?m)^(?=\[\[route\]\])", text)
kept = [b for b in blocks if 'name = "aa-to-bb"' not in b]
assert len(kept) == len(blocks) - 1, "route aa-to-bb not found"
open(path, "w").write("".join(kept))
EOF

status=0
printf '| candidate | messages | changes | exit | wall s | messages/s |\n|---|---:|---:|---:|---:|---:|\n' >"$OUT/results.md"
# replay NAME DIR EXIT CHANGES: times one replay and checks its exit code and counts.
replay() {
    local name=$1 dir=$2 want_exit=$3 want_changes=$4 rc=0 t0 wall judged changes rate
    t0=$(date +%s.%N)
    timeout "$RUN_TIMEOUT" "$EMLA" policy replay "$dir" --config "$CFG" --json >"$OUT/$name.json" || rc=$?
    wall=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    read -r judged changes < <("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["judged"], len(r["changes"]))' "$OUT/$name.json" 2>/dev/null || echo "- -")
    rate=$(awk -v n="$N" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$judged" "$changes" "$rc" "$wall" "$rate" >>"$OUT/results.md"
    echo "   $name: $judged judged, $changes changes, exit $rc, $wall s, $rate messages/s" >&2
    if [[ $rc != "$want_exit" || $judged != "$N" || $changes != "$want_changes" ]]; then
        echo "replay: $name: expected exit $want_exit, $N judged, $want_changes changes" >&2
        status=1
    fi
    if [[ ${QUICK:-0} != 1 && $N -ge 100000 ]] && awk -v w="$wall" -v n="$N" 'BEGIN { exit !(w * 100000 / n >= 60) }'; then
        echo "replay: $name: goal missed (100,000 messages in under 60 s)" >&2
        status=1
    fi
}
echo "== replaying $N messages" >&2
replay identical "$IDENTICAL" 0 0
replay route-removed "$REMOVED" 1 "$N"
if [[ $PERF == 1 ]]; then
    echo "== perf record (route-removed)" >&2
    perf record -g -o "$WORK/perf.data" -- "$EMLA" policy replay "$REMOVED" --config "$CFG" --json >/dev/null 2>"$WORK/perf.err" || true
    perf report -i "$WORK/perf.data" --no-children --stdio --percent-limit 1 2>/dev/null | grep -v '^$' >"$OUT/perf-flat.txt" || true
    grep -E '^ +[0-9.]+%' "$OUT/perf-flat.txt" | head -30 >&2 || true
fi
echo >&2
cat "$OUT/results.md"
[[ -n $KEEP_OUT ]] || true
exit $status
