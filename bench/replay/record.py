#!/usr/bin/env python3
"""Records traffic for the replay benchmark: N distinctly signed messages into emla serve.

Usage: record.py --pki DIR --port PORT --messages N --refused R [--sessions 20]
                 [--workers 2] [--timeout SECONDS]

Every message is its own ~10 KB evidence entity (bench/intake/messages.py's
shape, its own attachment bytes and case number) signed detached by
alice@justice.aa.example with Python `cryptography` (RSA-2048, chain of 3,
as tests/support/sign_py.py does), so each has its own signature: the
gateway would answer a repeated signature with the first message's id
instead of recording it again. Signing runs on --workers processes before
the load. The first N - R are sent MAIL FROM alice (accepted), the last R
From: and MAIL FROM eve@justice.aa.example (refused after DATA: not the
signer, the body kept), all RCPT TO bob@justice.bb.example, over --sessions sessions
with bench/intake/load.py's client. 127.0.0.1 only; bounded by --timeout.
"""
import argparse
import asyncio
import base64
import email.utils
import hashlib
import multiprocessing
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "intake"))
import load  # noqa: E402
import messages  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: E402

RCPT = "bob@justice.bb.example"
T = None
SPLIT = None


def init(pki, split):
    """A template signed by `cryptography` once; see signed()."""
    global T, SPLIT
    SPLIT = split
    certs = os.path.join(pki, "certs", "aa")
    with open(os.path.join(certs, "alice.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(certs, "alice.pem"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(certs, "chain.pem"), "rb") as f:
        chain = x509.load_pem_x509_certificates(f.read())
    content = messages.entity(0)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(
        cert, key, hashes.SHA256())
    for c in chain:
        builder = builder.add_certificate(c)
    smime = re.sub(rb"\r?\n", b"\r\n", builder.sign(
        serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))
    # The signature part's base64, as cryptography wrapped it.
    b64 = re.search(rb'filename="smime\.p7s"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n(\r\n)?--',
                    smime).group(1)
    der = base64.b64decode(b64)
    wrap = b64.index(b"\r\n")
    assert smime.count(content) == 1 and smime.count(b64) == 1, "template layout"
    digest = hashlib.sha256(content).digest()
    at_digest = der.index(b"\x04\x20" + digest) + 2
    assert der[-260:-256] == b"\x04\x82\x01\x00", "RSA-2048 signature last, no unsigned attributes"
    # signedAttrs: [0] IMPLICIT SET, first attribute contentType.
    ct = der.index(b"\x30\x18\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x03")
    if der[ct - 3] == 0xA0 and der[ct - 2] == 0x81:
        attrs = (ct - 3, ct + der[ct - 1])
    else:
        assert der[ct - 4] == 0xA0 and der[ct - 3] == 0x82, "signedAttrs header"
        attrs = (ct - 4, ct + (der[ct - 2] << 8 | der[ct - 1]))
    T = (key, content, smime, der, b64, wrap, at_digest, attrs)


def signed(i):
    """Message i, CRLF, dot-stuffed and ended for DATA: the template with
    entity i in place of entity 0, its digest in the signed attributes and
    a new RSA signature over them (everything else, signingTime included,
    as cryptography wrote it), so each message has its own signature."""
    key, content0, smime, der, b64, wrap, at_digest, (a0, a1) = T
    content = messages.entity(i)
    d = bytearray(der)
    d[at_digest:at_digest + 32] = hashlib.sha256(content).digest()
    attrs = b"\x31" + bytes(d[a0 + 1:a1])
    d[-256:] = key.sign(attrs, padding.PKCS1v15(), hashes.SHA256())
    new = base64.b64encode(bytes(d))
    new = b"\r\n".join(new[k:k + wrap] for k in range(0, len(new), wrap))
    body = smime.replace(content0, content).replace(b64, new)
    sender = "alice" if i < SPLIT else "eve"
    head = (f"From: {sender}@justice.aa.example\r\nTo: {RCPT}\r\n"
            f"Subject: MLA request AA-2024-{i:06d}: evidence\r\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
            f"Message-ID: <replay-{i}@justice.aa.example>\r\n").encode()
    return re.sub(rb"(?m)^\.", b"..", head + body) + b".\r\n"


async def send(args, payloads, mail_from):
    envelope = f"MAIL FROM:<{mail_from}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode()
    run = load.Run(len(payloads), payloads, envelope, False)
    tasks = [asyncio.create_task(load.session(run, "127.0.0.1", args.port))
             for _ in range(args.sessions)]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    errors = [repr(t.exception()) for t in done if t.exception()]
    return run, errors + (["sessions still running at the timeout"] if pending else [])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pki", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--refused", type=int, required=True)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600.0)
    a = p.parse_args()
    t0 = time.perf_counter()
    split = a.messages - a.refused
    with multiprocessing.Pool(a.workers, init, (a.pki, split)) as pool:
        payloads = pool.map(signed, range(a.messages), chunksize=200)
    t1 = time.perf_counter()
    print(f"signed {a.messages} messages in {t1 - t0:.1f} s", file=sys.stderr)
    ok = True
    for part, mail_from, want in ((payloads[:split], "alice@justice.aa.example", True),
                                  (payloads[split:], "eve@justice.aa.example", False)):
        if not part:
            continue
        # Sessions end after a number of commands, and after a few refusals:
        # each batch gets new ones (500 messages, or 10 refusals, per session).
        batch = a.sessions * (500 if want else 10)
        refused, accepted, errors, texts = 0, 0, [], {}
        for k in range(0, len(part), batch):
            run, errs = asyncio.run(send(a, part[k:k + batch], mail_from))
            accepted += run.accepted
            refused += sum(run.refused.values())
            errors += errs
            for t, n in run.refused.items():
                texts[t] = texts.get(t, 0) + n
        print(f"sent {len(part)} MAIL FROM {mail_from}: {accepted} accepted, {refused} refused"
              f" {texts}", file=sys.stderr)
        for e in errors[:5]:
            print(f"error: {e}", file=sys.stderr)
        ok = ok and not errors and (accepted if want else refused) == len(part)
    print(f"recorded in {time.perf_counter() - t1:.1f} s", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
