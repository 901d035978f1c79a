#!/usr/bin/env python3
"""Generate the emla test PKI and matching policy directories.

Usage: pki.py OUTDIR

Idempotent: does nothing when OUTDIR/.done exists. Writes into a temporary
sibling directory first and renames it into place, so a concurrent or
interrupted run never leaves a half-written OUTDIR behind.

Layout (all PEM):
  certs/<cc>/root.pem, root.key, root.crl.pem
  certs/<cc>/issuing.pem, issuing.key, issuing.crl.pem
  certs/<cc>/chain.pem            the issuing CA certificate (for -certfile)
  certs/<cc>/<name>.pem, <name>.key  officials (PKCS#8 keys)
  certs/aa/issuing-stale.crl.pem  nextUpdate in the past
  certs/aa/gateway{,-p384,-rsa}.pem, .key  the gateway's signing identity
                                  (P-256, P-384, RSA-2048; SAN
                                  postmaster@justice.aa.example; the .pem
                                  holds the certificate then the issuing CA)
  certs/bb/gateway.pem, .key      a second gateway's (P-256, SAN
                                  postmaster@justice.bb.example)
  certs/aa/gateway-enc-{rsa,p256,p384}.pem, .key  the gateway's decryption
                                  certificates (keyEncipherment / keyAgreement)
  certs/aa/stranger-enc.pem, .key an RSA encryption certificate the gateway
                                  does not hold (mail encrypted to someone else)
  certs/aa/weak-enc.pem, .key     RSA-1024 encryption certificate (policy check)
  policy/, policy-stale/, policy-nocrl/   policy directories (see below)
  policy-decrypt/                 policy/ with [[decryption]] of gateway-enc-*

Validity (relative to generation time): CAs now-1d..now+10y; officials
now-1d..now+1y, except expired (now-400d..now-1d) and notyet (now+14d..now+400d).
CRLs: lastUpdate now-1d, nextUpdate now+30d (the stale one: nextUpdate now-1d).
CAs are ECDSA P-384 signing with SHA-384; officials' certificates are signed
with SHA-256 (ecdsa-with-SHA256), except sha1 (ecdsa-with-SHA1).

Countries: aa (aa-moj, justice.aa.example), bb (bb-moj, justice.bb.example)
and the foreign root xx, which no policy trusts.

Requires Python 3.11+ and `cryptography` (tested with 48).
"""

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)

COUNTRIES = {
    "aa": ("AA", "Ministry of Justice of AA", "justice.aa.example"),
    "bb": ("BB", "Ministry of Justice of BB", "justice.bb.example"),
    "xx": ("XX", "Foreign Authority of XX", "foreign.xx.example"),
}


def rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def name(cc, org, cn):
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, cc),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def ski(pub):
    return x509.SubjectKeyIdentifier.from_public_key(pub)


def aki(issuer_cert):
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )


def issuer_aki(issuer_cert):
    try:
        return aki(issuer_cert)
    except x509.ExtensionNotFound:  # a version 1 CA has no extensions
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()
        )


def key_usage(sign=False, encipher=False, ca=False):
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def enc_ku(agreement=False):
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=not agreement,
        data_encipherment=False,
        key_agreement=agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


DECRYPTION_KEYS = {
    "gateway-enc-rsa": (rsa_key, False),
    "gateway-enc-p256": (lambda: ec.generate_private_key(ec.SECP256R1()), True),
    "gateway-enc-p384": (lambda: ec.generate_private_key(ec.SECP384R1()), True),
    "stranger-enc": (rsa_key, False),
    "weak-enc": (lambda: rsa_key(1024), False),
}

DECRYPTION_TOML = "".join(
    f'''
[[decryption]]
certificate = "../certs/aa/{nm}.pem"
key = "../certs/aa/{nm}.key"
'''
    for nm in ("gateway-enc-rsa", "gateway-enc-p256", "gateway-enc-p384")
)


def ca_ku():
    return key_usage(ca=True)


def ee_ku(sign=True, encipher=False):
    return key_usage(sign, encipher)


CA_ROOT = x509.BasicConstraints(ca=True, path_length=None)
CA_ISSUING = x509.BasicConstraints(ca=True, path_length=0)
END_ENTITY = x509.BasicConstraints(ca=False, path_length=None)


def builder(subject, issuer, public_key, not_after, basic, not_before=None):
    """A certificate of `public_key` for `subject` from `issuer` (names) with
    what all of them here have: a random serial, valid from a day ago (or
    `not_before`) to `not_after`, and critical BasicConstraints `basic`."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after)
        .add_extension(basic, critical=True)
    )


def make_root(cc):
    code, org, _ = COUNTRIES[cc]
    key = ec.generate_private_key(ec.SECP384R1())
    subj = name(code, org, f"{org} Root CA")
    cert = (
        builder(subj, subj, key.public_key(), NOW + 3650 * DAY, CA_ROOT)
        .add_extension(ca_ku(), critical=True)
        .add_extension(ski(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
            critical=False,
        )
        .sign(key, hashes.SHA384())
    )
    return key, cert


def make_issuing(cc, root_key, root_cert, key=None, what="Issuing CA", digest=hashes.SHA384):
    """An issuing CA "ORG WHAT" under the root (a fresh P-384 key unless `key`)."""
    code, org, _ = COUNTRIES[cc]
    key = key or ec.generate_private_key(ec.SECP384R1())
    cert = (
        builder(
            name(code, org, f"{org} {what}"),
            root_cert.subject,
            key.public_key(),
            NOW + 3650 * DAY,
            CA_ISSUING,
        )
        .add_extension(ca_ku(), critical=True)
        .add_extension(ski(key.public_key()), critical=False)
        .add_extension(aki(root_cert), critical=False)
        .sign(root_key, digest())
    )
    return key, cert


def make_official(
    cc,
    ca_key,
    ca_cert,
    cn,
    email,
    key,
    not_before=None,
    not_after=None,
    eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
    ku=None,
    hash_alg=None,
):
    code, org, _ = COUNTRIES[cc]
    b = (
        builder(
            name(code, org, cn),
            ca_cert.subject,
            key.public_key(),
            not_after or NOW + 365 * DAY,
            END_ENTITY,
            not_before,
        )
        .add_extension(ku or ee_ku(), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
        .add_extension(ski(key.public_key()), critical=False)
        .add_extension(issuer_aki(ca_cert), critical=False)
    )
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    if isinstance(hash_alg, hashes.SHA1):
        cert = resign_ecdsa_sha1(cert, ca_key)
    return cert


# --- minimal DER, for the SHA-1 certificate cryptography refuses to sign ---

ECDSA_SHA256_ALGID = bytes.fromhex("300a06082a8648ce3d040302")
ECDSA_SHA1_ALGID = bytes.fromhex("300906072a8648ce3d0401")


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der_tlv(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def der_split(data):
    """Returns (tag, content, rest) of the first TLV in data."""
    tag = data[0]
    first = data[1]
    if first < 0x80:
        n, off = first, 2
    else:
        k = first & 0x7F
        n, off = int.from_bytes(data[2 : 2 + k], "big"), 2 + k
    return tag, data[off : off + n], data[off + n :]


def resign_ecdsa_sha1(cert, ca_key):
    """Re-signs cert (issued by an ECDSA CA) with ecdsa-with-SHA1.

    cryptography >= 45 refuses SHA-1 for certificate signatures, so the
    TBSCertificate is edited by hand: its signature AlgorithmIdentifier
    becomes ecdsa-with-SHA1, then it is signed and wrapped again.
    """
    _, tbs_content, _ = der_split(cert.tbs_certificate_bytes)
    assert ECDSA_SHA256_ALGID in tbs_content, "issuer must be an ECDSA CA"
    tbs_content = tbs_content.replace(ECDSA_SHA256_ALGID, ECDSA_SHA1_ALGID, 1)
    tbs = der_tlv(0x30, tbs_content)
    sig = ca_key.sign(tbs, ec.ECDSA(hashes.SHA1()))
    der = der_tlv(0x30, tbs + ECDSA_SHA1_ALGID + der_tlv(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def resign_tbs(tbs_content, ca_key):
    """Wraps edited TBSCertificate contents and signs them with ca_key
    (an ECDSA CA: ecdsa-with-SHA256, the algorithm the TBS names)."""
    tbs = der_tlv(0x30, tbs_content)
    sig = ca_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    der = der_tlv(0x30, tbs + ECDSA_SHA256_ALGID + der_tlv(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def with_spki(cert, key, spki_der, ca_key):
    """cert (issued by an ECDSA CA for the RSA key) with its
    SubjectPublicKeyInfo replaced by spki_der (the same key as
    id-RSASSA-PSS, which cryptography cannot write), re-signed."""
    _, tbs_content, _ = der_split(cert.tbs_certificate_bytes)
    rsa_spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert rsa_spki in tbs_content
    return resign_tbs(tbs_content.replace(rsa_spki, spki_der, 1), ca_key)


def as_v1(cert, key):
    """A self-signed (ECDSA P-384, SHA-384) certificate rewritten as
    version 1: no version field, no extensions."""
    _, rest, _ = der_split(cert.tbs_certificate_bytes)
    fields = []
    while rest:
        tag, content, after = der_split(rest)
        fields.append(rest[: len(rest) - len(after)])
        rest = after
    assert fields[0][0] == 0xA0 and fields[-1][0] == 0xA3
    tbs = der_tlv(0x30, b"".join(fields[1:-1]))
    sig = key.sign(tbs, ec.ECDSA(hashes.SHA384()))
    alg = bytes.fromhex("300a06082a8648ce3d040303")  # ecdsa-with-SHA384
    assert alg in tbs
    der = der_tlv(0x30, tbs + alg + der_tlv(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def pss_key(path, *pkeyopts):
    """An RSA-PSS (id-RSASSA-PSS) 2048-bit key made by openssl at path;
    returns (the key as loaded by cryptography, its DER SPKI)."""
    opts = [a for o in ("rsa_keygen_bits:2048",) + pkeyopts for a in ("-pkeyopt", o)]
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA-PSS", *opts, "-out", path],
        check=True,
        capture_output=True,
    )
    spki = subprocess.run(
        ["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return key, spki


PSS_SHA256_OPTS = (
    "rsa_pss_keygen_md:sha256",
    "rsa_pss_keygen_mgf1_md:sha256",
    "rsa_pss_keygen_saltlen:32",
)


def make_crl(ca_key, ca_cert, revoked_serials, next_update, sign=None):
    try:
        ca_aki = aki(ca_cert)
    except x509.ExtensionNotFound:  # a version 1 CA has no extensions
        ca_aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(min(NOW - DAY, next_update - 2 * DAY))
        .next_update(next_update)
        .add_extension(ca_aki, critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in revoked_serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - DAY)
            .add_extension(
                x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False
            )
            .build()
        )
    if sign is not None:
        return sign(b)
    return b.sign(ca_key, hashes.SHA256())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def gen_country(out, cc, officials, revoked_names=()):
    """Create root + issuing CA and officials; returns (issuing key, cert)."""
    d = os.path.join(out, "certs", cc)
    root_key, root_cert = make_root(cc)
    iss_key, iss_cert = make_issuing(cc, root_key, root_cert)
    write(f"{d}/root.pem", pem_cert(root_cert))
    write(f"{d}/root.key", pem_key(root_key))
    write(f"{d}/issuing.pem", pem_cert(iss_cert))
    write(f"{d}/issuing.key", pem_key(iss_key))
    write(f"{d}/chain.pem", pem_cert(iss_cert))
    revoked = []
    for nm, kwargs in officials.items():
        kwargs = dict(kwargs)
        key = kwargs.pop("key")
        cn = kwargs.pop("cn", nm)
        email = kwargs.pop("email")
        cert = make_official(cc, iss_key, iss_cert, cn, email, key, **kwargs)
        write(f"{d}/{nm}.pem", pem_cert(cert))
        write(f"{d}/{nm}.key", pem_key(key))
        if nm in revoked_names:
            revoked.append(cert.serial_number)
    root_crl = make_crl(root_key, root_cert, [], NOW + 30 * DAY)
    iss_crl = make_crl(iss_key, iss_cert, revoked, NOW + 30 * DAY)
    write(f"{d}/root.crl.pem", root_crl.public_bytes(serialization.Encoding.PEM))
    write(f"{d}/issuing.crl.pem", iss_crl.public_bytes(serialization.Encoding.PEM))
    return iss_key, iss_cert, revoked


GATEWAY_TOML = """[gateway]
hostname = "emla.test"

[limits]
max_message_size = 1048576
max_recipients = 5
max_mime_depth = 8
"""

ROUTES_TOML = """[[route]]
name = "aa-to-bb"
from = "authority:aa-moj"
to = "authority:bb-moj"
action = "relay"

[[route]]
name = "bb-to-aa"
from = "authority:bb-moj"
to = "authority:aa-moj"
action = "relay"

[[route]]
name = "no-internal"
from = "*"
to = "*"
action = "reject"
reason = "internal mail is not relayed"
"""


def authority_toml(cc, crls, anchors=("root.pem",), intermediates=("issuing.pem",)):
    code, org, domain = COUNTRIES[cc]
    paths = lambda names: ", ".join(f'"../certs/{cc}/{c}"' for c in names)  # noqa: E731
    return f"""id = "{cc}-moj"
country = "{code}"
name = "{org}"
domains = ["{domain}"]
trust_anchors = [{paths(anchors)}]
intermediates = [{paths(intermediates)}]
crls = [{paths(crls)}]

[next_hop]
url = "smtp://127.0.0.1:2626"
tls = "opportunistic"
"""


def write_policy(out, dirname, aa_crls, gateway_extra="", **aa):
    p = os.path.join(out, dirname)
    write(f"{p}/gateway.toml", GATEWAY_TOML + gateway_extra)
    write(f"{p}/routes.toml", ROUTES_TOML)
    write(f"{p}/authorities/aa-moj.toml", authority_toml("aa", aa_crls, **aa))
    write(
        f"{p}/authorities/bb-moj.toml",
        authority_toml("bb", ["root.crl.pem", "issuing.crl.pem"]),
    )


GATEWAY_EMAIL = "postmaster@justice.aa.example"
GATEWAY_KEYS = {
    "gateway": lambda: ec.generate_private_key(ec.SECP256R1()),
    "gateway-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "gateway-rsa": rsa_key,
}


def generate(out):
    aa = "justice.aa.example"
    bb = "justice.bb.example"
    p256 = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
    sign_only = dict(eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,))
    aa_officials = {
        "alice": dict(key=rsa_key(), email=f"alice@{aa}", cn="Alice Official"),
        "eve": dict(key=p256(), email=f"eve@{aa}", cn="Eve Official"),
        "ed": dict(key=ed25519.Ed25519PrivateKey.generate(), email=f"ed@{aa}"),
        "expired": dict(
            key=rsa_key(),
            email=f"expired@{aa}",
            not_before=NOW - 400 * DAY,
            not_after=NOW - DAY,
        ),
        "notyet": dict(
            key=rsa_key(),
            email=f"notyet@{aa}",
            # Starts before the CRLs' nextUpdate (now+30d), so that judging
            # `--at` now+20d accepts it with fresh CRLs.
            not_before=NOW + 14 * DAY,
            not_after=NOW + 400 * DAY,
        ),
        "revoked": dict(key=rsa_key(), email=f"revoked@{aa}"),
        "wrongeku": dict(
            key=rsa_key(),
            email=f"wrongeku@{aa}",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        ),
        "noeku": dict(key=rsa_key(), email=f"noeku@{aa}", eku=None),
        "anyeku": dict(
            key=rsa_key(),
            email=f"anyeku@{aa}",
            eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,),
        ),
        "wrongku": dict(
            key=rsa_key(),
            email=f"wrongku@{aa}",
            ku=ee_ku(sign=False, encipher=True),
        ),
        "wrongemail": dict(key=rsa_key(), email=f"mallory@{aa}"),
        "weakrsa": dict(key=rsa_key(1024), email=f"weakrsa@{aa}"),
        "sha1": dict(key=rsa_key(), email=f"sha1@{aa}", hash_alg=hashes.SHA1()),
    }
    for v in aa_officials.values():
        for k, val in sign_only.items():
            v.setdefault(k, val)
    gen_country(out, "aa", aa_officials, revoked_names=("revoked",))
    bb_officials = {
        "bob": dict(key=rsa_key(), email=f"bob@{bb}", cn="Bob Official"),
        "bea": dict(key=p256(), email=f"bea@{bb}", cn="Bea Official"),
        # BB's CA signing for AA's domain: cross-country impersonation.
        "bbsigns": dict(key=rsa_key(), email=f"alice@{aa}", cn="Alice Official"),
    }
    gen_country(out, "bb", bb_officials)
    gen_country(
        out,
        "xx",
        {"impostor": dict(key=rsa_key(), email=f"alice@{aa}", cn="Alice Official")},
    )

    # Stale issuing CRL for AA (same content, nextUpdate in the past).
    d = os.path.join(out, "certs", "aa")
    with open(f"{d}/issuing.key", "rb") as f:
        iss_key = serialization.load_pem_private_key(f.read(), None)
    with open(f"{d}/issuing.pem", "rb") as f:
        iss_cert = x509.load_pem_x509_certificate(f.read())
    with open(f"{d}/revoked.pem", "rb") as f:
        revoked_serial = x509.load_pem_x509_certificate(f.read()).serial_number
    stale = make_crl(iss_key, iss_cert, [revoked_serial], NOW - DAY)
    write(f"{d}/issuing-stale.crl.pem", stale.public_bytes(serialization.Encoding.PEM))

    # The gateway's own signing certificates (receipts, DSNs), under AA's
    # issuing CA: certificate, then the chain to include, in one PEM file.
    for nm, key in GATEWAY_KEYS.items():
        gw_key = key()
        cert = make_official(
            "aa", iss_key, iss_cert, "emla gateway", GATEWAY_EMAIL, gw_key
        )
        write(f"{d}/{nm}.pem", pem_cert(cert) + pem_cert(iss_cert))
        write(f"{d}/{nm}.key", pem_key(gw_key))

    # A second gateway's signing identity, under BB's issuing CA: the
    # counterpart of two emla gateways in series (tests/relay.rs).
    d_bb = os.path.join(out, "certs", "bb")
    with open(f"{d_bb}/issuing.key", "rb") as f:
        bb_iss_key = serialization.load_pem_private_key(f.read(), None)
    with open(f"{d_bb}/issuing.pem", "rb") as f:
        bb_iss_cert = x509.load_pem_x509_certificate(f.read())
    gw_key = ec.generate_private_key(ec.SECP256R1())
    cert = make_official(
        "bb", bb_iss_key, bb_iss_cert, "emla gateway", "postmaster@justice.bb.example", gw_key
    )
    write(f"{d_bb}/gateway.pem", pem_cert(cert) + pem_cert(bb_iss_cert))
    write(f"{d_bb}/gateway.key", pem_key(gw_key))

    # The gateway's decryption certificates (inbound encrypted mail), and
    # one of someone else.
    for nm, (key, agreement) in DECRYPTION_KEYS.items():
        enc_key = key()
        cert = make_official(
            "aa", iss_key, iss_cert, "emla gateway decryption", GATEWAY_EMAIL, enc_key,
            ku=enc_ku(agreement),
        )
        write(f"{d}/{nm}.pem", pem_cert(cert))
        write(f"{d}/{nm}.key", pem_key(enc_key))

    gen_algorithms(out, iss_key, iss_cert)

    write_policy(out, "policy", ["root.crl.pem", "issuing.crl.pem"])
    write_policy(out, "policy-stale", ["root.crl.pem", "issuing-stale.crl.pem"])
    write_policy(out, "policy-nocrl", ["root.crl.pem"])
    write_policy(
        out, "policy-decrypt", ["root.crl.pem", "issuing.crl.pem"], gateway_extra=DECRYPTION_TOML
    )
    # As a real PKI is configured: only the root is trusted, the issuing CA
    # travels in each message, its CRL is listed all the same.
    write_policy(out, "policy-roots", ["root.crl.pem", "issuing.crl.pem"], intermediates=())
    write_policy(
        out,
        "policy-strict-eku",
        ["root.crl.pem", "issuing.crl.pem"],
        gateway_extra="require_email_eku = true\n",
    )
    write_policy(
        out,
        "policy-alg",
        ["root.crl.pem", "issuing.crl.pem", "v1root.crl.pem", "issuing-pss.crl.pem"],
        anchors=("root.pem", "v1root.pem"),
        intermediates=("issuing.pem", "issuing-pss.pem"),
    )


def gen_algorithms(out, iss_key, iss_cert):
    """AA's certificates for key types and anchors beyond the usual ones."""
    aa = "justice.aa.example"
    d = os.path.join(out, "certs", "aa")
    with open(f"{d}/root.key", "rb") as f:
        root_key = serialization.load_pem_private_key(f.read(), None)
    with open(f"{d}/root.pem", "rb") as f:
        root_cert = x509.load_pem_x509_certificate(f.read())

    # Officials with id-RSASSA-PSS keys (without parameters; restricted to
    # SHA-256), under the ECDSA issuing CA. The .key is openssl's PKCS#8
    # RSA-PSS key, so `openssl cms -sign` signs with RSASSA-PSS.
    for nm, opts in (("pss", ()), ("pss256", PSS_SHA256_OPTS)):
        key, spki = pss_key(f"{d}/{nm}.key", *opts)
        cert = make_official("aa", iss_key, iss_cert, nm, f"{nm}@{aa}", key)
        write(f"{d}/{nm}.pem", pem_cert(with_spki(cert, key, spki, iss_key)))

    # An issuing CA with an id-RSASSA-PSS key (SHA-256 parameters) under
    # AA's root, its official (RSASSA-PSS-signed certificate) and CRL.
    pss_ca_key, spki = pss_key(f"{d}/issuing-pss.key", *PSS_SHA256_OPTS)
    _, org, _ = COUNTRIES["aa"]
    _, ca = make_issuing("aa", root_key, root_cert, pss_ca_key, "RSA-PSS Issuing CA", hashes.SHA256)
    ca = with_spki(ca, pss_ca_key, spki, root_key)
    write(f"{d}/issuing-pss.pem", pem_cert(ca))
    pss_pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    off_key = rsa_key()
    b = (
        builder(name("AA", org, "pssca"), ca.subject, off_key.public_key(), NOW + 365 * DAY, END_ENTITY)
        .add_extension(ee_ku(), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(f"pssca@{aa}")]), critical=False
        )
        .add_extension(ski(off_key.public_key()), critical=False)
        .add_extension(aki(ca), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    )
    write(f"{d}/pssca.pem", pem_cert(b.sign(pss_ca_key, hashes.SHA256(), rsa_padding=pss_pad)))
    write(f"{d}/pssca.key", pem_key(off_key))
    write(f"{d}/pssca-chain.pem", pem_cert(ca))
    crl = make_crl(
        pss_ca_key,
        ca,
        [],
        NOW + 30 * DAY,
        sign=lambda b: b.sign(pss_ca_key, hashes.SHA256(), rsa_padding=pss_pad),
    )
    write(f"{d}/issuing-pss.crl.pem", crl.public_bytes(serialization.Encoding.PEM))

    # A self-signed version 1 root (no extensions) with an official and a CRL.
    v1_key = ec.generate_private_key(ec.SECP384R1())
    subj = name("AA", org, f"{org} Legacy V1 Root")
    v3 = (
        builder(subj, subj, v1_key.public_key(), NOW + 3650 * DAY, CA_ROOT)
        .sign(v1_key, hashes.SHA384())
    )
    v1 = as_v1(v3, v1_key)
    assert v1.version == x509.Version.v1
    write(f"{d}/v1root.pem", pem_cert(v1))
    off_key = rsa_key()
    cert = make_official("aa", v1_key, v1, "v1official", f"v1official@{aa}", off_key)
    write(f"{d}/v1official.pem", pem_cert(cert))
    write(f"{d}/v1official.key", pem_key(off_key))
    crl = make_crl(v1_key, v1, [], NOW + 30 * DAY)
    write(f"{d}/v1root.crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = os.path.abspath(sys.argv[1])
    if os.path.exists(os.path.join(out, ".done")):
        return 0
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pki-", dir=parent)
    try:
        generate(tmp)
        write(os.path.join(tmp, ".done"), NOW.isoformat() + "\n")
        if os.path.exists(os.path.join(out, ".done")):
            shutil.rmtree(tmp)  # another run finished first
            return 0
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
