#!/usr/bin/env python3
"""Write a large CRL for the `verify-crl100k` benchmark group.

    big-crl.py CA_CERT CA_KEY COUNT OUT [--exclude CERT ...]

The CRL is issued by CA_CERT (its subject, its key identifier) and signed
with CA_KEY (SHA-256). It lists COUNT revoked serial numbers, pseudo-random
positive 64-bit-or-longer integers (seeded, so repeated runs give the same
list), none of them the serial of an --exclude certificate. thisUpdate is a
day ago, nextUpdate 30 days ahead, crlNumber 2; each entry carries a
revocation date and the reason keyCompromise, as real CRLs do. Written as
PEM to OUT.

Needs `cryptography` (the same as tests/support/pki.py).
"""

import argparse
import datetime
import random

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ca_cert")
    p.add_argument("ca_key")
    p.add_argument("count", type=int)
    p.add_argument("out")
    p.add_argument("--exclude", action="append", default=[])
    a = p.parse_args()

    with open(a.ca_cert, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(a.ca_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    excluded = set()
    for path in a.exclude:
        with open(path, "rb") as f:
            excluded.add(x509.load_pem_x509_certificate(f.read()).serial_number)

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    revoked_at = now - datetime.timedelta(days=2)
    reason = x509.CRLReason(x509.ReasonFlags.key_compromise)
    rng = random.Random(20240001)
    serials = set()
    while len(serials) < a.count:
        # 64 to 127 bits, positive, like the serials CAs issue.
        s = rng.getrandbits(127) | (1 << 63)
        if s not in excluded:
            serials.add(s)
    entries = [
        x509.RevokedCertificateBuilder()
        .serial_number(s)
        .revocation_date(revoked_at)
        .add_extension(reason, critical=False)
        .build()
        for s in sorted(serials)
    ]
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # Passing the entries to the constructor: add_revoked_certificate copies
    # the list on every call (quadratic for 100 000 entries).
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca.subject,
        last_update=now - datetime.timedelta(days=1),
        next_update=now + datetime.timedelta(days=30),
        extensions=[
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            ),
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(2)),
        ],
        revoked_certificates=entries,
    )
    crl = builder.sign(key, hashes.SHA256())
    with open(a.out, "wb") as f:
        f.write(crl.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    main()
