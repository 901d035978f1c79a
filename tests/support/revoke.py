#!/usr/bin/env python3
"""Revocation fixtures made during a test, with Python `cryptography`.

  revoke.py crl --ca-cert C --ca-key K --out OUT [--revoke CERT]...
                [--number N] [--this-update S] [--next-update S]
                [--issuer-name-of CERT] [--der]
      A CRL signed by K, issued in the name of C (or of --issuer-name-of),
      thisUpdate/nextUpdate S seconds from now (default -3600 / +86400).

  revoke.py leaf --ca-cert C --ca-key K --email E --cert OUT --key OUT
                 [--cdp URL]... [--ocsp URL]...
      An S/MIME signing certificate (P-256) issued by C, with the given CRL
      distribution points and OCSP responder URLs.

  revoke.py responder --ca-cert C --ca-key K --cert OUT --key OUT [--no-eku]
      A delegated OCSP responder certificate (id-kp-OCSPSigning) issued by C.
"""

import argparse
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def load(cert_path, key_path):
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def crl(a):
    ca_cert, ca_key = load(a.ca_cert, a.ca_key)
    issuer = ca_cert.subject
    if a.issuer_name_of:
        with open(a.issuer_name_of, "rb") as f:
            issuer = x509.load_pem_x509_certificate(f.read()).subject
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(NOW + dt.timedelta(seconds=a.this_update))
        .next_update(NOW + dt.timedelta(seconds=a.next_update))
        .add_extension(x509.CRLNumber(a.number), critical=False)
    )
    for path in a.revoke or []:
        with open(path, "rb") as f:
            serial = x509.load_pem_x509_certificate(f.read()).serial_number
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - dt.timedelta(seconds=60))
            .add_extension(
                x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False
            )
            .build()
        )
    out = b.sign(ca_key, hashes.SHA256())
    enc = serialization.Encoding.DER if a.der else serialization.Encoding.PEM
    with open(a.out, "wb") as f:
        f.write(out.public_bytes(enc))


def issue(ca_cert, ca_key, subject, key, extensions):
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    return b.sign(ca_key, hashes.SHA256())


def ku(**on):
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def write_pair(a, cert, key):
    with open(a.cert, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(a.key, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def subject_of(ca_cert, cn):
    attrs = [a for a in ca_cert.subject if a.oid != NameOID.COMMON_NAME]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def leaf(a):
    ca_cert, ca_key = load(a.ca_cert, a.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    exts = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (ku(digital_signature=True, content_commitment=True), True),
        (x509.SubjectAlternativeName([x509.RFC822Name(a.email)]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
    ]
    if a.cdp:
        exts.append(
            (
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(u)], None, None, None
                        )
                        for u in a.cdp
                    ]
                ),
                False,
            )
        )
    if a.ocsp:
        exts.append(
            (
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(u),
                        )
                        for u in a.ocsp
                    ]
                ),
                False,
            )
        )
    cert = issue(ca_cert, ca_key, subject_of(ca_cert, a.email), key, exts)
    write_pair(a, cert, key)


def responder(a):
    ca_cert, ca_key = load(a.ca_cert, a.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    exts = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (ku(digital_signature=True), True),
    ]
    if not a.no_eku:
        exts.append((x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False))
    cert = issue(ca_cert, ca_key, subject_of(ca_cert, "OCSP Responder"), key, exts)
    write_pair(a, cert, key)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crl")
    c.add_argument("--ca-cert", required=True)
    c.add_argument("--ca-key", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--revoke", action="append")
    c.add_argument("--number", type=int, default=1)
    c.add_argument("--this-update", type=int, default=-3600)
    c.add_argument("--next-update", type=int, default=86400)
    c.add_argument("--issuer-name-of")
    c.add_argument("--der", action="store_true")
    l = sub.add_parser("leaf")
    for n in ("--ca-cert", "--ca-key", "--email", "--cert", "--key"):
        l.add_argument(n, required=True)
    l.add_argument("--cdp", action="append")
    l.add_argument("--ocsp", action="append")
    r = sub.add_parser("responder")
    for n in ("--ca-cert", "--ca-key", "--cert", "--key"):
        r.add_argument(n, required=True)
    r.add_argument("--no-eku", action="store_true")
    a = p.parse_args()
    {"crl": crl, "leaf": leaf, "responder": responder}[a.cmd](a)


if __name__ == "__main__":
    main()
