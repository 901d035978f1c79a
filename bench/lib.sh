# Shared by the benchmarks' run.sh scripts (sourced, not run).
# Before sourcing: ROOT. Sets the tools both benchmarks use; every one can be
# overridden from the environment.
OPENSSL=${EMLA_TEST_OPENSSL:-openssl}
PYTHON=${EMLA_TEST_PYTHON:-python3}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
EMLA=${EMLA_BIN:-$TARGET/release/emla}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
FROM=alice@justice.aa.example
RCPT=bob@justice.bb.example

# build_emla: builds the release binary, unless EMLA_BIN names one.
build_emla() {
    if [[ -z ${EMLA_BIN:-} ]]; then
        echo "== building $EMLA" >&2
        (cd "$ROOT" && cargo build --release --quiet --bin emla)
    fi
}

# make_messages BENCH COUNT: the test PKI in $WORK/pki and COUNT signed messages in
# $WORK/msgs; sets MSG (the first, CRLF) and LF (an LF copy for smtp-source) and checks
# that `emla verify` accepts MSG.
make_messages() {
    "$PYTHON" "$ROOT/tests/support/pki.py" "$WORK/pki" >/dev/null
    "$PYTHON" "$ROOT/bench/intake/messages.py" "$WORK/pki" "$WORK/msgs" "$2" "$OPENSSL"
    MSG=$WORK/msgs/crlf/0000.eml
    LF=$WORK/msgs/msg-lf.eml
    "$EMLA" verify "$MSG" --policy "$WORK/pki/policy" --mail-from "$FROM" --rcpt "$RCPT" >/dev/null ||
        { echo "$1: the benchmark message is not accepted by emla verify" >&2; exit 1; }
}

# wait_listening BENCH: waits (at most 10 s) for the `listening on` line of the gateway
# started as SERVER_PID with its output in $RUN/serve.out; sets PORT, or exits.
wait_listening() {
    local i
    PORT=
    for ((i = 0; i < 100; i++)); do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$RUN/serve.out" 2>/dev/null || true)
        [[ -n $PORT ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "$1: emla serve did not start:" >&2
    cat "$RUN/serve.err" >&2
    exit 1
}

# emla_config DBURL POLICY_DIR: the settings every benchmark's gateway shares (loopback, no
# TLS, 200 sessions, all of them from one client address if need be, data in $DATA), for the head of its configuration file.
emla_config() {
    cat <<EOF
listen = ["127.0.0.1:0"]
data_dir = "$DATA"
database_url = "$1"
policy_dir = "$2"
require_tls = false
max_sessions = 200
max_sessions_per_client = 200
EOF
}

# serve_emla BENCH: starts `emla serve --config $CFG` with its output in $RUN (stderr
# appended: a restart in the same run keeps the first log) and waits for it; sets
# SERVER_PID and PORT, or exits.
serve_emla() {
    # Made first: the background job may open it after wait_listening's first read.
    : >"$RUN/serve.out"
    "$EMLA" serve --config "$CFG" >"$RUN/serve.out" 2>>"$RUN/serve.err" &
    SERVER_PID=$!
    wait_listening "$1"
}
