#!/usr/bin/env bash
# Large-message benchmark: one detached-signed message of 1 MiB, 100 MiB and
# 1 GiB through `emla serve` (intake, verify, record, relay to a sink), with
# the gateway's peak RSS above idle and the throughput, against
# `openssl cms -verify` on the same file in the same run.
#
# Usage: bash bench/large/run.sh            (see bench/large/README.md)
#
# For each size: a multipart/mixed entity with a base64 attachment (76-char
# CRLF lines, random bytes) is written by a streaming generator, signed with
#   openssl cms -sign -md sha256 -binary -stream -crlfeol   (detached)
# and its bare LFs (OpenSSL's signature base64) turned into CRLF. A fresh
# gateway (release, SQLite, relay on, max_message_size = 2 GiB) is started;
# bench/large/drive.py sends the file over one SMTP session, streamed, and
# its own sink (discarding, hashing) takes the relayed copy. Reported:
#   peak RSS  VmHWM of the gateway after the copy arrived, minus VmHWM idle
#   intake    MB/s from the start of DATA to the gateway's 250
#   e2e       MB/s from the start of DATA to the copy's final dot at the sink
#   openssl   `openssl cms -verify -binary -crlfeol` of the same file: wall
#             time, MB/s and peak RSS (/usr/bin/time)
#   disk      sequential write speed of the work directory's disk
#             (dd 1 GiB, conv=fdatasync), the bound the gateway writes at
# Checks (exit 1): accepted, the copy is the file's bytes behind one
# Received: field; goal for 1 GiB: peak RSS above idle < 64 MiB.
#
# Environment: SIZES="1048576 104857600 1073741824" (bytes), OUT=DIR (keep
# results.md and JSON), EMLA_BIN=PATH, TIMEOUT=900 (seconds per message).
# Needs ~4x the largest size free on the work directory's disk (checked with
# df first); everything is removed at the end. Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/large
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SIZES=${SIZES:-1048576 104857600 1073741824}
TIMEOUT=${TIMEOUT:-900}

for tool in "$OPENSSL" "$PYTHON" /usr/bin/time dd df; do
    command -v "$tool" >/dev/null || { echo "large: $tool is missing" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/emla-large.XXXXXX")
KEEP_OUT=${OUT:-}
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

largest=0
for s in $SIZES; do ((s > largest)) && largest=$s; done
need_kib=$((largest * 4 / 1024 + 1048576))
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if ((free_kib < need_kib)); then
    echo "large: $WORK has $((free_kib / 1024)) MiB free, needs $((need_kib / 1024)) MiB" >&2
    exit 2
fi

build_emla
echo "== emla: $EMLA ($("$EMLA" --version)); $("$OPENSSL" version)" >&2
"$PYTHON" "$ROOT/tests/support/pki.py" "$WORK/pki" >/dev/null
CERTS=$WORK/pki/certs/aa
cat "$CERTS/root.pem" "$CERTS/chain.pem" >"$WORK/cas.pem"

echo "== disk: dd 1 GiB with fdatasync" >&2
disk=$(dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 conv=fdatasync 2>&1 | awk '/copied/ { print $(NF-1), $NF }')
rm -f "$WORK/dd"

# entity SIZE OUT: the evidence entity, streamed (random base64, CRLF lines of 76).
entity() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import base64, os, sys
size, out = int(sys.argv[1]), sys.argv[2]
block = base64.encodebytes(os.urandom(57 * 16384)).replace(b"\n", b"\r\n")
with open(out, "wb") as f:
    f.write(b"Content-Type: multipart/mixed; boundary=\"evidence\"\r\n\r\n--evidence\r\n"
            b"Content-Type: text/plain\r\n\r\nEvidence for case 2026/0042.\r\n--evidence\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    n = f.tell()
    while n < size:
        piece = block[: max(78, min(len(block), (size - n) // 78 * 78))]
        f.write(piece)
        n += len(piece)
    f.write(b"--evidence--\r\n")
EOF
}

# crlf IN OUT: bare LF to CRLF, streamed.
crlf() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], "rb") as i, open(sys.argv[2], "wb") as o:
    carry = b""
    while chunk := i.read(1 << 20):
        chunk = carry + chunk
        carry = chunk[-1:] if chunk.endswith(b"\r") else b""
        chunk = chunk[: len(chunk) - len(carry)]
        o.write(chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    o.write(carry)
EOF
}

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

human() { awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%g GiB", b / 1073741824; else printf "%g MiB", b / 1048576 }'; }

printf '| message | bytes | gateway idle (MiB) | peak above idle (MiB) | intake MB/s | end to end MB/s | openssl cms -verify s | openssl MB/s | openssl peak RSS (MiB) |\n' >"$OUT/results.md"
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n' >>"$OUT/results.md"
status=0
for size in $SIZES; do
    name=$(human "$size")
    echo "== $name: generating and signing" >&2
    entity "$size" "$WORK/entity.mime"
    "$OPENSSL" cms -sign -md sha256 -binary -stream -crlfeol -in "$WORK/entity.mime" \
        -signer "$CERTS/alice.pem" -inkey "$CERTS/alice.key" -certfile "$CERTS/chain.pem" \
        -from "$FROM" -to "$RCPT" -subject "MLA request AA-2024-0001: evidence" -out "$WORK/signed.lf"
    rm -f "$WORK/entity.mime"
    crlf "$WORK/signed.lf" "$WORK/msg.eml"
    rm -f "$WORK/signed.lf"
    bytes=$(stat -c %s "$WORK/msg.eml")

    echo "== $name: openssl cms -verify" >&2
    /usr/bin/time -o "$WORK/time" -f '%e %M' "$OPENSSL" cms -verify -binary -crlfeol -purpose any \
        -CAfile "$WORK/cas.pem" -in "$WORK/msg.eml" -out /dev/null 2>"$WORK/openssl.err" ||
        { echo "large: openssl cms -verify refuses the $name message" >&2; cat "$WORK/openssl.err" >&2; exit 1; }
    read -r os_s os_kib <"$WORK/time"

    echo "== $name: through emla" >&2
    RUN=$WORK/run-$size
    DATA=$RUN/data
    CFG=$RUN/emla.toml
    mkdir -p "$DATA"
    SINK_PORT=$(free_port)
    policy=$WORK/pki/policy-run-$size # beside policy/, so ../certs paths resolve
    cp -r "$WORK/pki/policy" "$policy"
    sed -i "s|^url = \"smtp://127.0.0.1:2626\"|url = \"smtp://127.0.0.1:$SINK_PORT\"|" "$policy/authorities/bb-moj.toml"
    sed -i 's/^max_message_size = .*/max_message_size = 2147483648/' "$policy/gateway.toml"
    {
        emla_config "sqlite://$DATA/emla.db" "$policy"
        printf '\n[relay]\npoll_ms = 50\n'
    } >"$CFG"
    serve_emla large
    sleep 0.5
    timeout "$TIMEOUT" "$PYTHON" "$HERE/drive.py" --gateway "$PORT" --sink-port "$SINK_PORT" \
        --pid "$SERVER_PID" --message "$WORK/msg.eml" --mail-from "$FROM" --rcpt "$RCPT" \
        --timeout "$TIMEOUT" --json "$OUT/$size.json" || status=1
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    "$PYTHON" - "$OUT/$size.json" "$name" "$bytes" "$os_s" "$os_kib" >>"$OUT/results.md" <<'EOF' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
name, size, os_s, os_kib = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print(f"| {name} | {size} | {r['idle_hwm_kib'] / 1024:.1f} | {r['above_idle_kib'] / 1024:.1f} | "
      f"{r['intake_mb_s']:.0f} | {r['end_to_end_mb_s']:.0f} | {os_s:.2f} | {size / os_s / 1e6:.0f} | {os_kib / 1024:.0f} |")
if size >= 1 << 30 and r["above_idle_kib"] >= 64 * 1024:
    print(f"large: {name}: peak RSS {r['above_idle_kib']} KiB above idle misses the goal (< 64 MiB)", file=sys.stderr)
    sys.exit(1)
EOF
    rm -rf "$RUN" "$policy" "$WORK/msg.eml"
done
echo "disk sequential write (dd 1 GiB, fdatasync): $disk" >>"$OUT/results.md"
cat "$OUT/results.md"
if [[ -n $KEEP_OUT ]]; then echo "results kept in $OUT" >&2; else echo "(OUT=DIR keeps them)" >&2; fi
exit $status
