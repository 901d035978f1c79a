#!/usr/bin/env bash
# Peak memory of `emla verify` for a 10 KB and a 10 MB signed message.
#
# Usage: bash bench/verify-memory.sh
#
# Builds the release binary, generates the test PKI (tests/support/pki.py) and
# the same evidence messages as gateway/benches/verify.rs (multipart/mixed with
# a base64 attachment, CRLF lines of 76 characters, signed by alice, RSA-2048,
# chain of 3, with `openssl cms -sign`), then measures the peak RSS of
#   emla verify MSG --policy DIR --mail-from alice@... --rcpt bob@...
# with `/usr/bin/time -f %M`. Goal: the extra memory for the 10 MB message,
# RSS(10 MB) - RSS(10 KB), is at most 2x the message size. An opaque-signed
# (`-nodetach`) 10 MB message is measured and reported too.
#
# Then a detached message of LARGE bytes (default 100 MiB): `emla verify`
# judges a file over 1 MiB as the gateway judges a spooled message, in
# bounded memory (docs/large-messages.md). Goal: its extra memory over the
# 10 KB message is under 64 MiB, whatever its size. For it and the 10 MB
# messages, `openssl cms -verify -binary -crlfeol` of the same file is timed
# and measured in the same run.
#
# Needs: cargo, openssl 3.x, python3 with `cryptography`, GNU time
# (`apt-get install time`). Honours CARGO_TARGET_DIR, EMLA_TEST_OPENSSL,
# EMLA_TEST_PYTHON. RUNS=n repeats each measurement (default 3, max kept).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPENSSL=${EMLA_TEST_OPENSSL:-openssl}
PYTHON=${EMLA_TEST_PYTHON:-python3}
RUNS=${RUNS:-3}
LARGE=${LARGE:-104857600}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
EMLA=$TARGET/release/emla
FROM=alice@justice.aa.example
RCPT=bob@justice.bb.example

if [ ! -x /usr/bin/time ]; then
    echo "verify-memory: /usr/bin/time (GNU time) is missing: apt-get install time" >&2
    exit 2
fi

echo "== building $EMLA" >&2
(cd "$ROOT" && cargo build --release --quiet --bin emla)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/emla-memory.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "== generating the test PKI" >&2
"$PYTHON" "$ROOT/tests/support/pki.py" "$WORK/pki"
CERTS=$WORK/pki/certs/aa
POLICY=$WORK/pki/policy-bench # beside policy/, so ../certs paths resolve
cp -r "$WORK/pki/policy" "$POLICY"
sed -i 's/^max_message_size = .*/max_message_size = 2147483648/' "$POLICY/gateway.toml"

# entity SIZE OUT: the evidence MIME entity of about SIZE bytes, CRLF.
entity() {
    "$PYTHON" - "$1" "$2" "$ROOT/bench/intake" <<'EOF'
import sys
sys.path.insert(0, sys.argv[3])
from messages import entity
open(sys.argv[2], "wb").write(entity(1, int(sys.argv[1]), seed=1))
EOF
}

# sign IN OUT [openssl options...]: signs as alice, CRLF throughout (OpenSSL
# 3.0 writes the signature's base64 with bare LF even with -crlfeol).
sign() {
    local in=$1 out=$2
    shift 2
    "$OPENSSL" cms -sign -md sha256 -crlfeol "$@" -in "$in" \
        -signer "$CERTS/alice.pem" -inkey "$CERTS/alice.key" -certfile "$CERTS/chain.pem" \
        -from "$FROM" -to "$RCPT" -subject "MLA request AA-2024-0001: evidence" -out "$out.lf"
    "$PYTHON" -c 'import re,sys; d=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(re.sub(rb"\r?\n", b"\r\n", d))' \
        "$out.lf" "$out"
    rm -f "$out.lf"
}

echo "== signing the messages" >&2
entity 10240 "$WORK/10k.mime"
entity 10485760 "$WORK/10m.mime"
sign "$WORK/10k.mime" "$WORK/detached-10KB.eml"
sign "$WORK/10m.mime" "$WORK/detached-10MB.eml"
sign "$WORK/10m.mime" "$WORK/opaque-10MB.eml" -nodetach
sign "$WORK/10k.mime" "$WORK/opaque-10KB.eml" -nodetach
entity "$LARGE" "$WORK/large.mime"
sign "$WORK/large.mime" "$WORK/detached-large.eml"
rm -f "$WORK/large.mime"
cat "$CERTS/root.pem" "$CERTS/chain.pem" >"$WORK/cas.pem"

# peak MSG: the largest peak RSS (KiB) over $RUNS runs; the message must be accepted.
peak() {
    local max=0 kib i
    for ((i = 0; i < RUNS; i++)); do
        if ! /usr/bin/time -o "$WORK/time" -f %M "$EMLA" verify "$1" --policy "$POLICY" \
            --mail-from "$FROM" --rcpt "$RCPT" >"$WORK/out" 2>&1; then
            echo "verify-memory: $1 was not accepted:" >&2
            cat "$WORK/out" >&2
            exit 1
        fi
        kib=$(tail -n 1 "$WORK/time")
        ((kib > max)) && max=$kib
    done
    echo "$max"
}

size_of() { stat -c %s "$1"; }

echo "== measuring (peak RSS, max of $RUNS runs)" >&2
printf '%-10s %-7s %12s %14s %16s %12s %s\n' form message "size (B)" "peak RSS (KiB)" "extra (KiB)" "extra/size" goal
status=0
for form in detached opaque; do
    small=$WORK/$form-10KB.eml
    big=$WORK/$form-10MB.eml
    rss_small=$(peak "$small")
    rss_big=$(peak "$big")
    size_big=$(size_of "$big")
    extra=$((rss_big - rss_small))
    ratio=$(awk -v e="$extra" -v s="$size_big" 'BEGIN { printf "%.2f", e * 1024 / s }')
    goal=$(awk -v r="$ratio" 'BEGIN { print (r <= 2.0) ? "ok (<= 2x)" : "MISSED (> 2x)" }')
    [[ $goal == ok* ]] || status=1
    printf '%-10s %-7s %12s %14s %16s %12s\n' "$form" 10KB "$(size_of "$small")" "$rss_small" - -
    printf '%-10s %-7s %12s %14s %16s %12s %s\n' "$form" 10MB "$size_big" "$rss_big" "$extra" "${ratio}x" "$goal"
done

large=$WORK/detached-large.eml
rss_large=$(peak "$large")
extra=$((rss_large - $(peak "$WORK/detached-10KB.eml")))
goal=$(awk -v e="$extra" 'BEGIN { print (e < 65536) ? "ok (< 64 MiB)" : "MISSED (>= 64 MiB)" }')
[[ $goal == ok* ]] || status=1
printf '%-10s %-7s %12s %14s %16s %12s %s\n' detached "$((LARGE / 1048576))MiB" "$(size_of "$large")" "$rss_large" "$extra" - "$goal"

# time_of TOOL MSG: "seconds peak-KiB" of one run.
time_of() {
    local msg=$2
    case $1 in
        emla) /usr/bin/time -o "$WORK/time" -f '%e %M' "$EMLA" verify "$msg" --policy "$POLICY" \
            --mail-from "$FROM" --rcpt "$RCPT" >/dev/null 2>&1 ;;
        openssl) /usr/bin/time -o "$WORK/time" -f '%e %M' "$OPENSSL" cms -verify -binary -crlfeol \
            -purpose any -CAfile "$WORK/cas.pem" -in "$msg" -out /dev/null >/dev/null 2>&1 ;;
    esac || { echo "verify-memory: $1 refuses $msg" >&2; exit 1; }
    tail -n 1 "$WORK/time"
}

echo >&2
echo "== emla verify against openssl cms -verify, same files (one run each)" >&2
printf '%-22s %12s %10s %12s %12s %14s\n' message "size (B)" tool "time (s)" "MB/s" "peak RSS (KiB)"
for msg in detached-10MB opaque-10MB detached-large; do
    f=$WORK/$msg.eml
    for tool in emla openssl; do
        read -r secs kib < <(time_of "$tool" "$f")
        mbs=$(awk -v b="$(size_of "$f")" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0) ? b / s / 1e6 : 0 }')
        printf '%-22s %12s %10s %12s %12s %14s\n' "$msg" "$(size_of "$f")" "$tool" "$secs" "$mbs" "$kib"
    done
done
exit $status
