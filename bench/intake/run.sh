#!/usr/bin/env bash
# Intake load benchmark: signed 10 KB messages into `emla serve`, on SQLite and
# PostgreSQL, at 1, 20 and 100 concurrent SMTP sessions.
#
# Usage: bash bench/intake/run.sh            (see bench/intake/README.md)
#
# For every backend x sessions it runs three loads, each against a freshly
# started gateway (fresh data directory; for PostgreSQL a fresh database,
# dropped afterwards):
#   smtp-source  Postfix's smtp-source, one identical message (-F, -d);
#   load-same    bench/intake/load.py with that same message;
#   load-distinct  load.py with DISTINCT distinctly signed messages round-robin,
#                each sent with its own Message-ID header (--unique, outside the
#                signed content), so that every message is byte-distinct and
#                writes and fsyncs its own body file.
# Every load gives each message a recipient of its own (smtp-source -N,
# load.py --number-rcpt: 1bob@, 2bob@, ...): the gateway answers a signature
# it accepted before for the same recipient "250 already accepted" without
# recording it (intake/replay.rs), so repeating one signed message to one
# recipient would measure the replay check, not intake.
# It reports messages/s, p50/p99/max DATA->250 latency (load.py), the server's
# CPU (utime+stime of the emla process over the run, % of one core, and CPU ms
# per message), the PostgreSQL server processes' CPU, the client's CPU and how
# busy the whole machine was (% of one core; 2 cores = 200 %). After each
# load it stops the gateway and checks that the database holds exactly one accepted message, one audit
# record and one queue entry per message sent, that the body files are there,
# and that `emla audit verify` exits 0.
#
# Goal (from the issue): SQLite, 20 sessions: >= 500 messages/s accepted
# durably with p99 DATA->250 under 50 ms. Checked on the SQLite/20/load-distinct
# line (the strictest: every message fsyncs its own body file); the script
# exits 1 if the goal or any durability check fails.
#
# Environment (all optional):
#   BACKENDS="sqlite postgres"   SESSIONS="1 20 100"
#   N1=1000   messages for 1 session     N=5000   messages for 20 and 100
#   DISTINCT=200  distinct signed messages for load-distinct
#   PGURL=postgres://postgres@127.0.0.1:5432   (trust auth; a database
#                 emla_bench_<pid>_<n> is created and dropped per run)
#   PERF=1    after the table, one more SQLite/20/load-distinct run (not in the
#             table: perf slows it) under `perf record --call-graph dwarf`;
#             prints where emla's CPU goes and keeps the reports in
#             $OUT/perf-flat.txt and $OUT/perf-callers.txt
#   OUT=DIR   keep results (results.md, results.tsv, per-run JSON) there
#             (default: a temporary directory, removed at the end)
#   RUN_TIMEOUT=300  upper bound in seconds on any single load
#   EMLA_BIN=PATH    use this emla binary instead of building target/release/emla
# Needs: cargo, openssl 3.x, python3 (+ `cryptography` for the PKI),
# postfix (`/usr/sbin/smtp-source`), GNU time (`/usr/bin/time`), psql for
# PostgreSQL, sqlite3, perf (`apt-get install linux-perf`) for PERF=1.
# Targets 127.0.0.1 only; every load is bounded in count and by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/intake
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BACKENDS=${BACKENDS:-sqlite postgres}
SESSIONS=${SESSIONS:-1 20 100}
N1=${N1:-1000}
N=${N:-5000}
DISTINCT=${DISTINCT:-200}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
PERF=${PERF:-0}
HZ=$(getconf CLK_TCK)

for tool in "$SMTP_SOURCE" /usr/bin/time sqlite3 "$OPENSSL" "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "intake: $tool is missing" >&2; exit 2; }
done
[[ $BACKENDS == *postgres* ]] && { command -v psql >/dev/null || { echo "intake: psql is missing" >&2; exit 2; }; }

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/emla-intake.XXXXXX")
KEEP_OUT=${OUT:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
SERVER_PID=
PGDB=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n $PGDB ]]; then psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

build_emla
echo "== emla: $EMLA ($("$EMLA" --version))" >&2

echo "== generating the test PKI and $DISTINCT signed messages" >&2
make_messages intake "$DISTINCT"
SAME=$MSG
echo "   message: $(stat -c %s "$SAME") bytes on the wire" >&2

# cpu_ticks PID: utime + stime of the process (all threads), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# pg_ticks: utime + stime of all PostgreSQL server processes, in clock ticks.
pg_ticks() { cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 == "(postgres)" { t += $14 + $15 } END { print t + 0 }'; }
# busy_ticks: clock ticks the machine was busy (all CPUs; not idle, not iowait).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# snapshot: "SERVER PG BUSY" ticks now.
snapshot() { echo "$(cpu_ticks "$SERVER_PID") $(pg_ticks) $(busy_ticks)"; }

RUN_NO=0
# start BACKEND: a fresh gateway; sets SERVER_PID, PORT, CFG, DATA, DBURL.
start() {
    local backend=$1
    RUN_NO=$((RUN_NO + 1))
    # Each run gets its own directory, and none is deleted before the end:
    # on ext4 without a journal (as here) the inode allocator skips inodes
    # freed in the last 30 s (recently_deleted), so deleting the previous
    # run's thousands of body files would slow this run's file creation.
    RUN=$WORK/run-$RUN_NO
    DATA=$RUN/data
    CFG=$RUN/emla.toml
    mkdir -p "$DATA"
    if [[ $backend == postgres ]]; then
        PGDB=emla_bench_$$_$RUN_NO
        psql -q "$PGURL/postgres" -c "CREATE DATABASE $PGDB" >/dev/null
        DBURL=$PGURL/$PGDB
    else
        DBURL=sqlite://$DATA/emla.db
    fi
    {
        emla_config "$DBURL" "$WORK/pki/policy"
        cat <<EOF

# Intake only: delivery is measured by bench/relay.
[relay]
enabled = false
EOF
    } >"$CFG"
    serve_emla intake
}

# stop_and_check EXPECTED BODIES: stops the gateway, then checks the store.
# Sets CHECK to "ok" or a description of what is wrong.
stop_and_check() {
    local expected=$1 bodies=$2 counts files audit
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
    local q="SELECT (SELECT count(*) FROM messages WHERE verdict = 'accept') || ' ' || (SELECT count(*) FROM audit) || ' ' || (SELECT count(*) FROM queue)"
    if [[ -n $PGDB ]]; then
        counts=$(psql -qtA "$DBURL" -c "$q")
    else
        counts=$(sqlite3 "$DATA/emla.db" "$q")
    fi
    files=$(find "$DATA/messages" -name '*.eml' | wc -l)
    if "$EMLA" audit verify --config "$CFG" >"$RUN/audit.out" 2>&1; then audit=ok; else audit="FAILED: $(cat "$RUN/audit.out")"; fi
    CHECK=ok
    [[ $counts == "$expected $expected $expected" ]] || CHECK="messages/audit/queue = $counts, expected $expected each"
    [[ $files == "$bodies" ]] || CHECK="$CHECK; $files body files, expected $bodies"
    [[ $audit == ok ]] || CHECK="$CHECK; audit verify $audit"
    if [[ -n $PGDB ]]; then
        psql -q "$PGURL/postgres" -c "DROP DATABASE $PGDB" >/dev/null
        PGDB=
    fi
}

printf 'backend\tsessions\tload\tmessages\taccepted\tmsgs_per_s\tp50_ms\tp99_ms\tmax_ms\tserver_cpu_pct\tserver_cpu_ms_per_msg\tpg_cpu_pct\tclient_cpu_pct\tmachine_busy_pct\tcheck\n' >"$OUT/results.tsv"
status=0

# record BACKEND SESSIONS LOAD MESSAGES ACCEPTED WALL P50 P99 MAX "BEFORE" "AFTER" CLIENT_CPU_S
# (BEFORE and AFTER are snapshots: server, PostgreSQL and machine-busy ticks).
record() {
    local backend=$1 s=$2 load=$3 m=$4 acc=$5 wall=$6 p50=$7 p99=$8 max=$9 before=${10} after=${11} ccpu=${12}
    local rate scpu sms cpct pgpct busy ticks
    read -r s0 p0 b0 <<<"$before"
    read -r s1 p1 b1 <<<"$after"
    ticks=$((s1 - s0))
    pct() { awk -v t="$1" -v h="$HZ" -v w="$wall" 'BEGIN { printf "%.0f", 100 * t / h / w }'; }
    rate=$(awk -v a="$acc" -v w="$wall" 'BEGIN { printf "%.0f", a / w }')
    scpu=$(pct "$ticks")
    sms=$(awk -v t="$ticks" -v h="$HZ" -v m="$m" 'BEGIN { printf "%.2f", 1000 * t / h / m }')
    pgpct=-
    [[ $backend == postgres ]] && pgpct=$(pct "$((p1 - p0))")
    busy=$(pct "$((b1 - b0))")
    cpct=$(awk -v c="$ccpu" -v w="$wall" 'BEGIN { printf "%.0f", 100 * c / w }')
    [[ $acc == "$m" ]] || CHECK="accepted $acc of $m; $CHECK"
    [[ $CHECK == ok ]] || status=1
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$s" "$load" "$m" "$acc" \
        "$rate" "$p50" "$p99" "$max" "$scpu" "$sms" "$pgpct" "$cpct" "$busy" "$CHECK" >>"$OUT/results.tsv"
    printf '   %-8s %3s sessions %-13s %5s msgs %6s msg/s  p50 %6s  p99 %6s  max %6s ms  server %4s%% (%s ms/msg)  pg %3s%%  client %3s%%  machine %3s%%  %s\n' \
        "$backend" "$s" "$load" "$m" "$rate" "$p50" "$p99" "$max" "$scpu" "$sms" "$pgpct" "$cpct" "$busy" "$CHECK" >&2
}

# load_py BACKEND SESSIONS NAME MESSAGES BODIES FILES...
load_py() {
    local backend=$1 s=$2 name=$3 m=$4 bodies=$5
    shift 5
    start "$backend"
    local json=$OUT/$backend-$s-$name.json
    timeout "$RUN_TIMEOUT" "$PYTHON" "$HERE/load.py" --port "$PORT" --sessions "$s" --messages "$m" \
        --timeout "$((RUN_TIMEOUT - 10))" --number-rcpt --watch-pid "$SERVER_PID" --json "$json" "$@" >/dev/null || true
    stop_and_check "$m" "$bodies"
    local vals
    local acc wall p50 p99 max sv pg busy ccpu
    read -r acc wall p50 p99 max sv pg busy ccpu < <("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["accepted"], r["wall_s"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["server_ticks"], r["pg_ticks"], r["busy_ticks"], r["client_cpu_pct"] * r["wall_s"] / 100)' "$json" 2>/dev/null || echo "0 1 - - - 0 0 0 0")
    record "$backend" "$s" "$name" "$m" "$acc" "$wall" "$p50" "$p99" "$max" "0 0 0" "$sv $pg $busy" "$ccpu"
}

# smtp_source BACKEND SESSIONS MESSAGES
smtp_source() {
    local backend=$1 s=$2 m=$3 before after times wall ccpu acc
    start "$backend"
    before=$(snapshot)
    # GNU time: wall, user, sys of smtp-source.
    /usr/bin/time -f '%e %U %S' -o "$RUN/time" \
        timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" -N -F "$LF" -m "$m" -s "$s" -d -f "$FROM" -t "$RCPT" "127.0.0.1:$PORT" \
        >"$RUN/smtp-source.out" 2>&1 || true
    after=$(snapshot)
    times=$(tail -n 1 "$RUN/time")
    wall=$(cut -d' ' -f1 <<<"$times")
    ccpu=$(awk '{ print $2 + $3 }' <<<"$times")
    stop_and_check "$m" 1
    # smtp-source stops at the first non-2xx reply, so "all recorded" is the count check.
    if [[ $CHECK == ok ]]; then acc=$m; else acc=$(sed -n 's/^messages\/audit\/queue = \([0-9]*\) .*/\1/p' <<<"$CHECK"); acc=${acc:-0}; fi
    record "$backend" "$s" smtp-source "$m" "$acc" "$wall" - - - "$before" "$after" "$ccpu"
}

echo "== load (${N1} messages at 1 session, ${N} otherwise; fresh gateway per line)" >&2
for backend in $BACKENDS; do
    for s in $SESSIONS; do
        m=$N
        ((s == 1)) && m=$N1
        smtp_source "$backend" "$s" "$m"
        load_py "$backend" "$s" load-same "$m" 1 "$SAME"
        load_py "$backend" "$s" load-distinct "$m" "$m" --unique "$WORK"/msgs/crlf/*.eml
    done
done

# The results as a Markdown table.
{
    echo "| backend | sessions | load | msg/s | p50 ms | p99 ms | max ms | emla CPU % | emla CPU ms/msg | PostgreSQL CPU % | client CPU % | machine busy % | durable check |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    tail -n +2 "$OUT/results.tsv" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }'
} >"$OUT/results.md"
cat "$OUT/results.md"

# PERF=1: where emla's CPU goes, on one more SQLite / 20 sessions / distinct run.
if [[ $PERF == 1 ]]; then
    command -v perf >/dev/null || { echo "intake: perf is missing (apt-get install linux-perf)" >&2; exit 2; }
    echo "== profiling emla: sqlite, 20 sessions, $N distinct messages (perf record --call-graph dwarf)" >&2
    start sqlite
    perf record --call-graph dwarf,16384 -F 499 -o "$WORK/perf.data" -p "$SERVER_PID" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 1
    timeout "$RUN_TIMEOUT" "$PYTHON" "$HERE/load.py" --port "$PORT" --sessions 20 --messages "$N" \
        --timeout "$((RUN_TIMEOUT - 10))" --number-rcpt --unique "$WORK"/msgs/crlf/*.eml >&2 || true
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    stop_and_check "$N" "$N"
    # Self time per symbol, and inclusive time of the stages (emla's own
    # functions, webpki, ring's ECDSA/RSA, file and socket syscalls).
    perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
        grep '%' | head -80 >"$OUT/perf-flat.txt" || true
    perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
        grep '%' | grep -E 'emla::|webpki::|ring::(ec|rsa)|sqlx_(core|sqlite)::|sys_(fsync|openat|write|sendto|recvfrom|futex|rename)|ext4_|tcp_' |
        head -80 >"$OUT/perf-callers.txt" || true
    echo "emla CPU by kind (self time, % of emla's samples):" >&2
    awk '{ p = $1; sub(/%/, "", p); s = $0
           if (s ~ /ring_core|p384|nistz384|elem_|LIMBS|bn_|limbs_|ecp_nistz/) k = "ring bignum: P-384 ECDSA + RSA verification"
           else if (s ~ /\[k\]/) k = "kernel: syscalls (files, fsync, sockets, futex), scheduling"
           else if (s ~ /sqlite3/) k = "SQLite"
           else if (s ~ /malloc|free|memmove|memcpy|memcmp|memset|realloc|_int_|consolidate|unlink_chunk/) k = "libc malloc / memcpy"
           else if (s ~ /sha256|sha2::/) k = "SHA-256"
           else k = "everything else (SMTP, MIME, CMS, tokio, sqlx)"
           t[k] += p }
         END { for (k in t) printf "  %5.1f %%  %s\n", t[k], k }' "$OUT/perf-flat.txt" | sort -rn >&2
    echo "inclusive (children), selected:" >&2
    grep -E 'emla::trust::validate$|emla::verify::verify$|emla::smtp::commit::finish|emla::store::files::store_body|emla::store::db::Db::write_batch|EcdsaVerificationAlgorithm|rsa::verification::verify_rsa_|__x64_sys_fsync|ext4_create|__x64_sys_sendto|__x64_sys_futex' \
        "$OUT/perf-callers.txt" | awk '{ printf "  %s  %s\n", $1, substr($0, index($0, $4)) }' | sed 's/ *- *- *$//' >&2
fi

# The goal: SQLite, 20 sessions, >= 500 msg/s, p99 < 50 ms.
if [[ $BACKENDS == *sqlite* && " $SESSIONS " == *" 20 "* ]]; then
    goal=$(awk -F'\t' '$1 == "sqlite" && $2 == 20 && $3 == "load-distinct" { print ($6 >= 500 && $8 < 50) ? "met" : "MISSED"; f = 1 } END { if (!f) print "MISSED" }' "$OUT/results.tsv")
    echo "goal (SQLite, 20 sessions, distinct messages: >= 500 msg/s, p99 < 50 ms): $goal" >&2
    [[ $goal == met ]] || status=1
fi
[[ -n $KEEP_OUT ]] && echo "results kept in $OUT" >&2
exit "$status"
