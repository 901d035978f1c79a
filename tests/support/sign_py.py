#!/usr/bin/env python3
"""Sign a MIME entity as S/MIME with Python `cryptography` (an independent signer).

Usage:
  sign_py.py KEY CERT CHAIN IN OUT [--opaque] [--hash sha256]
             [--from ADDR] [--to ADDR]... [--subject TEXT] [--date RFC5322-DATE]
             [--message-id ID] [--no-attributes] [--no-headers]

IN is a complete MIME entity (its own headers, a blank line, a body). KEY is a
PKCS#8 PEM private key, CERT the signer certificate, CHAIN a PEM file of extra
certificates to embed (may hold several, or be "-" for none).

Output (always CRLF line endings):
  default   multipart/signed; protocol="application/x-pkcs7-signature"
            (cryptography's Encoding.SMIME with DetachedSignature)
  --opaque  application/pkcs7-mime; smime-type=signed-data (the DER
            SignedData with encapsulated content, base64 wrapped at 76)

Then the RFC 5322 headers From/To/Subject/Date/Message-ID are prepended
(unless --no-headers): From defaults to the certificate's first rfc822Name,
To to nothing (no To: header), Subject to "Test message", Date to now,
Message-ID to a fresh <...@from-domain>.

cryptography converts LF to CRLF in the content before signing (no Binary
option), and IN is normalized to CRLF first anyway, so the signed bytes are the
canonical CRLF form that appears in the output.
"""

import argparse
import base64
import email.utils
import re
import sys
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

HASHES = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha224": hashes.SHA224,
}


def crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("key")
    ap.add_argument("cert")
    ap.add_argument("chain")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--opaque", action="store_true")
    ap.add_argument("--hash", default="sha256", choices=sorted(HASHES))
    ap.add_argument("--from", dest="from_")
    ap.add_argument("--to", action="append", default=[])
    ap.add_argument("--subject", default="Test message")
    ap.add_argument("--date")
    ap.add_argument("--message-id")
    ap.add_argument("--no-attributes", action="store_true")
    ap.add_argument("--no-headers", action="store_true")
    a = ap.parse_args()

    with open(a.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(a.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    chain = []
    if a.chain != "-":
        with open(a.chain, "rb") as f:
            chain = x509.load_pem_x509_certificates(f.read())
    with open(a.input, "rb") as f:
        data = crlf(f.read())

    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(cert, key, HASHES[a.hash]())
    )
    for c in chain:
        builder = builder.add_certificate(c)
    options = []
    if a.no_attributes:
        options.append(pkcs7.PKCS7Options.NoAttributes)

    if a.opaque:
        der = builder.sign(serialization.Encoding.DER, options)
        b64 = base64.encodebytes(der).replace(b"\n", b"\r\n")
        signed = (
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n'
            b"\r\n" + b64
        )
    else:
        options.append(pkcs7.PKCS7Options.DetachedSignature)
        signed = crlf(builder.sign(serialization.Encoding.SMIME, options))

    if not a.no_headers:
        sender = a.from_
        if sender is None:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sender = san.value.get_values_for_type(x509.RFC822Name)[0]
        domain = sender.rsplit("@", 1)[-1].strip("> ")
        headers = [f"From: {sender}"]
        if a.to:
            headers.append("To: " + ", ".join(a.to))
        headers.append(f"Subject: {a.subject}")
        headers.append("Date: " + (a.date or email.utils.formatdate(usegmt=True)))
        headers.append(
            "Message-ID: " + (a.message_id or f"<{uuid.uuid4().hex}@{domain}>")
        )
        signed = ("\r\n".join(headers) + "\r\n").encode() + signed

    with open(a.output, "wb") as f:
        f.write(signed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
