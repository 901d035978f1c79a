#!/usr/bin/env python3
"""Signed ~10 KB evidence messages for the intake benchmark.

Usage: messages.py PKI_DIR OUT_DIR COUNT [OPENSSL]

Builds COUNT distinct MIME entities of about 10 KB (the same evidence shape
as gateway/benches/verify.rs and bench/verify-memory.sh: multipart/mixed with
a short text/plain note and a base64 application/pdf attachment, CRLF lines
of 76 characters; each one gets its own pseudo-random attachment and subject),
signs each detached as alice@justice.aa.example (RSA-2048, chain of 3) with

    openssl cms -sign -md sha256 -crlfeol -signer alice.pem -inkey alice.key \
        -certfile chain.pem -from alice@justice.aa.example \
        -to bob@justice.bb.example -subject "MLA request AA-2024-NNNN: evidence"

and writes
    OUT_DIR/crlf/NNNN.eml   CRLF throughout, exactly the bytes sent in DATA
                            (what load.py reads);
    OUT_DIR/msg-lf.eml      message 0000 with LF line ends, for
                            `smtp-source -F`, which appends CRLF to every line
                            (a CRLF file would put bare CRs on the wire).
"""
import base64
import os
import random
import re
import subprocess
import sys

FROM = "alice@justice.aa.example"
RCPT = "bob@justice.bb.example"
SIZE = 10240


def entity(case: int, size: int = SIZE, seed: int | None = None) -> bytes:
    """The evidence entity of about `size` bytes for request `case`; its attachment's
    pseudo-random bytes come from `seed` (default: case + 1). Also used by
    bench/verify-memory.sh."""
    b = "emla-bench-mixed"
    head = (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'
            f'--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n'
            'Content-Transfer-Encoding: 7bit\r\n\r\n'
            f'Request for mutual legal assistance, case AA-2024-{case:04d}: '
            'evidence attached.\r\n\r\n'
            f'--{b}\r\nContent-Type: application/pdf; name="evidence.pdf"\r\n'
            'Content-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="evidence.pdf"\r\n\r\n')
    tail = f'--{b}--\r\n'
    lines = max(1, (size - len(head) - len(tail)) // 78)
    seed = case + 1 if seed is None else seed
    b64 = base64.b64encode(random.Random(seed).randbytes(lines * 57)).decode()
    body = "".join(b64[i:i + 76] + "\r\n" for i in range(0, len(b64), 76))
    return (head + body + tail).encode()


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    pki, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    openssl = sys.argv[4] if len(sys.argv) == 5 else "openssl"
    certs = os.path.join(pki, "certs", "aa")
    os.makedirs(os.path.join(out, "crlf"), exist_ok=True)
    for i in range(count):
        signed = subprocess.run(
            [openssl, "cms", "-sign", "-md", "sha256", "-crlfeol",
             "-signer", os.path.join(certs, "alice.pem"),
             "-inkey", os.path.join(certs, "alice.key"),
             "-certfile", os.path.join(certs, "chain.pem"),
             "-from", FROM, "-to", RCPT,
             "-subject", f"MLA request AA-2024-{i:04d}: evidence"],
            input=entity(i), capture_output=True, check=True).stdout
        # OpenSSL 3.0 writes the signature's base64 with bare LF even with -crlfeol.
        crlf = re.sub(rb"\r?\n", b"\r\n", signed)
        assert not re.search(rb"\r(?!\n)|(?<!\r)\n", crlf), "bare CR or LF"
        with open(os.path.join(out, "crlf", f"{i:04d}.eml"), "wb") as f:
            f.write(crlf)
        if i == 0:
            with open(os.path.join(out, "msg-lf.eml"), "wb") as f:
                f.write(crlf.replace(b"\r\n", b"\n"))


if __name__ == "__main__":
    main()
