#!/usr/bin/env bash
# Relay benchmark: end-to-end throughput client -> gateway -> smtp-sink with
# signed 10 KB messages, emla against Postfix in the same run.
#
# Usage: bash bench/relay/run.sh            (see bench/relay/README.md)
#
# Every repetition runs, each with a fresh sink and a fresh gateway:
#   emla     `emla serve` (release, SQLite, relay on) relaying to smtp-sink;
#   postfix  a throwaway Postfix instance (own config, queue and data
#            directories under the work directory) relaying to smtp-sink;
# (the order alternates between repetitions), and, with SIDES naming it,
#   emla-metrics  the emla side with [metrics] on and /metrics scraped once a
#                 second during the load (a harsher rate than Prometheus's 15 s);
# and, once, emla split in two:
#   emla-intake  the same load with the relay off (intake only);
#   emla-drain   the gateway restarted with the relay on: the time to empty
#                that queue into the sink.
# The load is Postfix's smtp-source, 20 sessions, the same signed message
# (bench/intake/messages.py; LF file, smtp-source appends CRLF), each to a
# recipient of its own (-N: 1bob@, 2bob@, ...; emla's replay check, keyed on
# the signature and the recipient, would answer every repeat of one signed
# message to one recipient "250 already accepted" and relay it no more);
# Postfix gets exactly the same load:
#   smtp-source -N -F msg-lf.eml -m N -s 20 -d -f alice@justice.aa.example \
#       -t bob@justice.bb.example 127.0.0.1:PORT
# The time runs from the start of the load until `smtp-sink -c` has counted
# the N-th message (bench/relay/drive.py polls its counter every 10 ms).
# Reported: end-to-end messages/s, intake messages/s (N / smtp-source's wall
# time), how many had reached the sink when the load ended, the drain after
# it, CPU of the gateway (emla process; Postfix master and all its children),
# of the sink and of the machine, and the ratio emla/Postfix of the medians.
#
# Checks (exit 1 if one fails): the sink counted exactly N messages (and no
# more after a settle second); on emla: `emla queue list --status relayed`
# has N entries and none is still accepted, delayed or failed, `emla audit verify`
# exits 0; on Postfix: its queue is empty.
#
# Environment (all optional):
#   N=2000          messages per load          SESSIONS=20  smtp-source sessions
#   RUNS=3          repetitions of the emla / postfix pair
#   CONN=20         [relay] max_connections_per_destination (policy) and
#                   Postfix's default_destination_concurrency_limit
#   IN_FLIGHT=64    [relay] max_in_flight (gateway config)
#   POLL_MS=50      [relay] poll_ms
#   SPLIT=1         also run emla-intake / emla-drain (0: skip)
#   SIDES="emla postfix"   which sides to run (also: emla-metrics)
#   PF_IN_FLOW_DELAY=1s     Postfix's in_flow_delay (its default; 0s: off)
#   OUT=DIR         keep results.md, results.tsv, per-run JSON and logs there
#   RUN_TIMEOUT=300 upper bound in seconds on any single load or drain
#   EMLA_BIN=PATH   use this emla binary instead of building target/release/emla
# Needs: cargo, openssl 3.x, python3 (+ `cryptography` for the PKI), Postfix
# (`postfix`, `smtp-source`, `smtp-sink`, `postqueue`), sqlite3, root (the
# throwaway Postfix instance and `smtp-sink -u postfix`).
# Targets 127.0.0.1 only; every load is bounded in count and by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/relay
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
N=${N:-2000}
SESSIONS=${SESSIONS:-20}
RUNS=${RUNS:-3}
CONN=${CONN:-20}
IN_FLIGHT=${IN_FLIGHT:-64}
POLL_MS=${POLL_MS:-50}
SPLIT=${SPLIT:-1}
SIDES=${SIDES:-emla postfix}
PF_IN_FLOW_DELAY=${PF_IN_FLOW_DELAY:-1s}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

for tool in "$SMTP_SOURCE" "$SMTP_SINK" postfix postqueue sqlite3 "$OPENSSL" "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "relay: $tool is missing" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "relay: needs root (a throwaway Postfix instance, smtp-sink -u postfix)" >&2; exit 2; }
id postfix >/dev/null 2>&1 || { echo "relay: no postfix user" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/emla-relay.XXXXXX")
# Postfix's daemons run as the postfix user and must reach their queue.
chmod 755 "$WORK"
KEEP_OUT=${OUT:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
SERVER_PID=
SINK_PID=
PF_DIR=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n $SINK_PID ]]; then kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; fi
    if [[ -n $PF_DIR ]]; then postfix -c "$PF_DIR/etc" stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

build_emla
echo "== emla: $EMLA ($("$EMLA" --version)); $(postconf -d mail_version 2>/dev/null | sed 's/mail_version = /Postfix /')" >&2

echo "== generating the test PKI and the signed message" >&2
make_messages relay 1
echo "   message: $(stat -c %s "$MSG") bytes on the wire; $N messages per load, $SESSIONS sessions" >&2

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_port PORT PID: until something listens on 127.0.0.1:PORT (PID must stay alive).
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        "$PYTHON" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null && return 0
        [[ -z ${2:-} ]] || kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

RUN_NO=0
# new_run NAME: a directory for this run and a fresh sink; sets RUN, SINK_PORT, SINK_PID.
new_run() {
    RUN_NO=$((RUN_NO + 1))
    RUN=$WORK/run-$RUN_NO-$1
    mkdir -p "$RUN"
    SINK_PORT=$(free_port)
    # -c: counters after every transaction; 256: backlog. Bounded by timeout.
    timeout "$((3 * RUN_TIMEOUT))" "$SMTP_SINK" -c -u postfix "127.0.0.1:$SINK_PORT" 256 >"$RUN/sink.out" 2>"$RUN/sink.err" &
    SINK_PID=$!
    wait_port "$SINK_PORT" "$SINK_PID" || { echo "relay: smtp-sink did not start" >&2; cat "$RUN/sink.err" >&2; exit 1; }
}

stop_sink() {
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=
}

# start_emla RELAY(true|false) [REUSE_RUN]: a gateway on 127.0.0.1:0 relaying bb-moj to the sink.
# Sets SERVER_PID, PORT, CFG, DATA.
start_emla() {
    local relay=$1
    DATA=$RUN/data
    CFG=$RUN/emla.toml
    local policy=$WORK/pki/policy-run-$RUN_NO
    if [[ ! -d $policy ]]; then
        cp -r "$WORK/pki/policy" "$policy"
        sed -i "s|^url = \"smtp://127.0.0.1:2626\"|url = \"smtp://127.0.0.1:$SINK_PORT\"|" "$policy/authorities/bb-moj.toml"
        grep -q "127.0.0.1:$SINK_PORT" "$policy/authorities/bb-moj.toml" || { echo "relay: cannot point bb-moj at the sink" >&2; exit 1; }
        printf '\n[relay]\nmax_connections_per_destination = %s\n' "$CONN" >>"$policy/gateway.toml"
    fi
    mkdir -p "$DATA"
    {
        emla_config "sqlite://$DATA/emla.db" "$policy"
        cat <<EOF

[relay]
enabled = $relay
poll_ms = $POLL_MS
max_in_flight = $IN_FLIGHT
EOF
    } >"$CFG"
    if [[ ${2:-} == metrics ]]; then
        METRICS_PORT=$(free_port)
        printf '\n[metrics]\nlisten = "127.0.0.1:%s"\nmin_free_bytes = 1\n' "$METRICS_PORT" >>"$CFG"
    fi
    serve_emla relay
}

stop_emla() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
}

# check_emla: the queue has N relayed entries and nothing else; the audit chain verifies.
check_emla() {
    local relayed pending failed
    local limit=$((N < 10000 ? N + 1 : 10000))
    relayed=$("$EMLA" queue list --status relayed --json --limit "$limit" --config "$CFG" | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)))')
    pending=$(sqlite3 "$DATA/emla.db" "SELECT count(*) FROM queue WHERE status <> 'relayed'")
    CHECK_EMLA=ok
    [[ $relayed == "$N" ]] || CHECK_EMLA="queue: $relayed relayed, expected $N"
    [[ $pending == 0 ]] || CHECK_EMLA="$CHECK_EMLA; $pending entries not relayed"
    if ! "$EMLA" audit verify --config "$CFG" >"$RUN/audit.out" 2>&1; then
        CHECK_EMLA="$CHECK_EMLA; audit verify failed: $(head -c 300 "$RUN/audit.out")"
    fi
    [[ $CHECK_EMLA == ok ]] || CHECK_EMLA=${CHECK_EMLA#ok; }
}

# start_postfix: a throwaway Postfix instance relaying everything to the sink.
# Sets PF_DIR, PF_PORT, PF_PID (master).
start_postfix() {
    PF_DIR=$RUN/postfix
    local ready
    ready=$(POSTFIX_MAIN_CF_EXTRA="
# Up to CONN connections to the sink from the start, as emla's max_connections_per_destination.
default_destination_concurrency_limit = $CONN
smtp_destination_concurrency_limit = $CONN
initial_destination_concurrency = $CONN
# Postfix's inflow control: smtpd pauses up to this long before a message when
# the queue manager is behind (default 1s). PF_IN_FLOW_DELAY=0s turns it off.
in_flow_delay = $PF_IN_FLOW_DELAY" bash "$ROOT/tests/support/postfix.sh" start "$PF_DIR" "$SINK_PORT" 2>"$RUN/postfix-start.out") ||
        { echo "relay: postfix did not start:" >&2; cat "$RUN/postfix-start.out" "$PF_DIR/maillog" >&2; exit 1; }
    PF_PORT=${ready#ready }
    PF_PID=$(head -n 1 "$PF_DIR/spool/pid/master.pid" | tr -d ' ')
}

stop_postfix() {
    postfix -c "$PF_DIR/etc" stop >>"$RUN/postfix-start.out" 2>&1 || true
    cp "$PF_DIR/maillog" "$RUN/maillog" 2>/dev/null || true
    PF_DIR=
}

printf 'run\tside\tmessages\te2e_msgs_per_s\tintake_msgs_per_s\tat_sink_when_load_ended\tdrain_s\te2e_s\tsink_sessions\tgateway_cpu_pct\tgateway_cpu_ms_per_msg\tsink_cpu_pct\tclient_cpu_pct\tmachine_busy_pct\tloadavg\tcheck\n' >"$OUT/results.tsv"
status=0

# record REP SIDE JSON CHECK
record() {
    local rep=$1 side=$2 json=$3 check=$4 line
    line=$("$PYTHON" - "$json" "$N" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
e2e, intake = r["end_to_end_s"], r["intake_s"]
hz = r["hz"]
g = r["ticks"].get("gateway", 0)
def f(x, d=0): return "-" if x is None else f"{x:.{d}f}"
print("\t".join([
    f(n / e2e if e2e else None), f(n / intake if intake else None),
    str(r["sink_at_load_end"]) if intake else "-",
    f(e2e - intake if e2e and intake else None, 2), f(e2e, 2), str(r.get("sink_sessions", "-")),
    f(r["cpu_pct"].get("gateway")), f(1000 * g / hz / n, 2),
    f(r["cpu_pct"].get("sink")),
    f(100 * r["client_cpu_s"] / e2e if e2e else None),
    f(r["cpu_pct"]["machine"]), r["loadavg_start"]]))
EOF
)
    [[ $check == ok ]] || status=1
    printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$side" "$N" "$line" "$check" >>"$OUT/results.tsv"
    IFS=$'\t' read -r e2e intake atsink drain secs sess gcpu gms scpu ccpu busy la <<<"$line"
    printf '   %-2s %-12s e2e %5s msg/s (%6s s)  intake %5s msg/s  at sink when load ended %5s  drain %5s s  sink sessions ended %5s  gateway %4s%% (%s ms/msg)  sink %3s%%  client %3s%%  machine %3s%%  load %s  %s\n' \
        "$rep" "$side" "$e2e" "$secs" "$intake" "$atsink" "$drain" "$sess" "$gcpu" "$gms" "$scpu" "$ccpu" "$busy" "$la" "$check" >&2
}

# sink_check JSON: "ok" when the sink counted exactly N (after the settle time).
sink_check() {
    "$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); n=int(sys.argv[2])
f, e, rc = r["sink_final"], r["end_to_end_s"], r["load_rc"]
print("ok" if f == n and e is not None and rc == 0 else f"sink counted {f} of {n}" + ("" if e is not None else " (timed out)") + ("" if rc == 0 else f"; smtp-source exit {rc}"))' "$1" "$N"
}

# -N: a new recipient per message, so that no message is a replay (see the head).
load_cmd() { echo timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" -N -F "$LF" -m "$N" -s "$SESSIONS" -d -f "$FROM" -t "$RCPT" "127.0.0.1:$1"; }

# finish_emla REP SIDE JSON LOG: after a load on emla, stops the gateway and the sink,
# records the line with the sink's and the gateway's checks, and keeps the gateway's log.
finish_emla() {
    local check
    check=$(sink_check "$3")
    stop_emla
    stop_sink
    check_emla
    [[ $CHECK_EMLA == ok ]] || check="${check#ok}${check:+; }$CHECK_EMLA"
    check=${check#; }
    record "$1" "$2" "$3" "${check:-ok}"
    cp "$RUN/serve.err" "$4" 2>/dev/null || true
}

run_emla() {
    local rep=$1 side=${2:-emla} json scraper= failed_scrapes
    new_run "$side"
    if [[ $side == emla-metrics ]]; then
        start_emla true metrics
        # Bounded: at most RUN_TIMEOUT scrapes, killed when the load ends.
        "$PYTHON" -c '
import sys, time, urllib.request
for _ in range(int(sys.argv[2])):
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read()
    time.sleep(1)' "$METRICS_PORT" "$RUN_TIMEOUT" >"$RUN/scrape.out" 2>&1 &
        scraper=$!
    else
        start_emla true
    fi
    json=$OUT/$side-$rep.json
    # shellcheck disable=SC2046
    "$PYTHON" "$HERE/drive.py" --sink-out "$RUN/sink.out" --messages "$N" --timeout "$RUN_TIMEOUT" \
        --json "$json" --watch gateway="$SERVER_PID" --watch sink="$SINK_PID" \
        -- $(load_cmd "$PORT") >"$RUN/drive.out" 2>"$RUN/load.err" || true
    if [[ -n $scraper ]]; then
        kill "$scraper" 2>/dev/null || true
        wait "$scraper" 2>/dev/null || true
        failed_scrapes=$(grep -c . "$RUN/scrape.out" || true)
        [[ $failed_scrapes == 0 ]] || echo "relay: a scrape failed: $(head -c 300 "$RUN/scrape.out")" >&2
    fi
    finish_emla "$rep" "$side" "$json" "$OUT/$side-$rep.serve.log"
}

run_postfix() {
    local rep=$1 json check queue
    new_run postfix
    start_postfix
    json=$OUT/postfix-$rep.json
    # shellcheck disable=SC2046
    "$PYTHON" "$HERE/drive.py" --sink-out "$RUN/sink.out" --messages "$N" --timeout "$RUN_TIMEOUT" \
        --json "$json" --watch gateway="$PF_PID" --watch sink="$SINK_PID" \
        -- $(load_cmd "$PF_PORT") >"$RUN/drive.out" 2>"$RUN/load.err" || true
    check=$(sink_check "$json")
    queue=$(postqueue -c "$PF_DIR/etc" -p 2>&1 | tail -n 1)
    [[ $queue == "Mail queue is empty" ]] || check="${check#ok}; postfix queue: $queue"
    stop_postfix
    stop_sink
    check=${check#; }
    record "$rep" postfix "$json" "${check:-ok}"
    cp "$RUN/maillog" "$OUT/postfix-$rep.maillog" 2>/dev/null || true
}

# run_split: intake with the relay off, then a restart with the relay on and the drain.
run_split() {
    local json check
    new_run emla-split
    start_emla false
    json=$OUT/emla-intake.json
    # shellcheck disable=SC2046
    "$PYTHON" "$HERE/drive.py" --sink-out "$RUN/sink.out" --messages 0 --settle 0 --timeout "$RUN_TIMEOUT" \
        --json "$json" --watch gateway="$SERVER_PID" --watch sink="$SINK_PID" \
        -- $(load_cmd "$PORT") >"$RUN/drive-intake.out" 2>"$RUN/load.err" || true
    stop_emla
    local queued
    queued=$(sqlite3 "$DATA/emla.db" "SELECT count(*) FROM queue WHERE status = 'queued'")
    check=ok
    [[ $queued == "$N" ]] || check="$queued queued after intake, expected $N"
    # The intake line: its time is the load's; nothing is expected at the sink.
    "$PYTHON" - "$json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); r["end_to_end_s"] = None; r["sink_at_load_end"] = 0
json.dump(r, open(sys.argv[1], "w"), indent=1)
EOF
    record - emla-intake "$json" "$check"
    # The drain runs from the gateway's start (it claims at once) to the N-th message at the sink.
    local t0
    t0=$("$PYTHON" -c 'import time; print(time.time())')
    start_emla true
    json=$OUT/emla-drain.json
    "$PYTHON" "$HERE/drive.py" --sink-out "$RUN/sink.out" --messages "$N" --timeout "$RUN_TIMEOUT" --no-load --t0-epoch "$t0" \
        --json "$json" --watch gateway="$SERVER_PID" --watch sink="$SINK_PID" >"$RUN/drive-drain.out" 2>&1 || true
    finish_emla - emla-drain "$json" "$OUT/emla-split.serve.log"
}

echo "== $RUNS repetitions: $SIDES (fresh sink and gateway per line)" >&2
for ((rep = 1; rep <= RUNS; rep++)); do
    order=$SIDES
    ((rep % 2 == 0)) && order=$(tr ' ' '\n' <<<"$SIDES" | tac | tr '\n' ' ')
    for side in $order; do
        case $side in
            emla) run_emla "$rep" ;;
            emla-metrics) run_emla "$rep" emla-metrics ;;
            postfix) run_postfix "$rep" ;;
        esac
    done
done
[[ $SPLIT == 1 && $SIDES == *emla* ]] && run_split

# The results as a Markdown table, and the medians.
{
    echo "| run | side | e2e msg/s | intake msg/s | at sink when load ended | drain after load s | e2e s | sink sessions ended | gateway CPU % | gateway CPU ms/msg | sink CPU % | client CPU % | machine busy % | load avg at start | check |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    tail -n +2 "$OUT/results.tsv" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 }'
    echo
    "$PYTHON" - "$OUT/results.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {}
for side in ("emla", "emla-metrics", "postfix"):
    v = [float(r["e2e_msgs_per_s"]) for r in rows if r["side"] == side and r["e2e_msgs_per_s"] != "-"]
    if v:
        med[side] = statistics.median(v)
        print(f"- {side}: median end-to-end **{med[side]:.0f} msg/s** over {len(v)} runs ({', '.join(f'{x:.0f}' for x in v)})")
if "emla" in med and "postfix" in med:
    print(f"- **emla / Postfix = {med['emla'] / med['postfix']:.2f}** (goal >= 2.0)")
if "emla" in med and "emla-metrics" in med:
    print(f"- **metrics on / off = {med['emla-metrics'] / med['emla']:.3f}** (goal >= 0.97)")
EOF
} >"$OUT/results.md"
cat "$OUT/results.md"
[[ -n $KEEP_OUT ]] && echo "results kept in $OUT" >&2
exit "$status"
