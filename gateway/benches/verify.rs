//! Benchmark of `emla::verify::verify` against the raw cost of the same
//! cryptographic work.
//!
//! Run with `cargo bench --bench verify` (see `bench/README.md`).
//!
//! Setup (not timed): the test PKI of `tests/support/pki.py` is generated
//! (shared with the end-to-end tests' support module); a realistic evidence message (multipart/mixed: a
//! short text/plain note and a base64 `application/pdf` attachment, CRLF lines
//! of 76 characters) of 10 KB and of 10 MB is signed detached with
//! `openssl cms -sign` by `alice` (RSA-2048) and by `eve` (ECDSA P-256), chain
//! of 3 (official -> issuing CA -> root CA), and normalised to CRLF as it would
//! arrive over SMTP. A copy of the sample policy with `max_message_size` raised
//! to 32 MiB is loaded once with `emla::policy::load`.
//!
//! Groups:
//! - `verify/{rsa2048,p256}/{10KB,10MB}`: the whole `emla::verify::verify`
//!   (MIME parsing, CMS parsing, digest, signature, path validation with CRLs,
//!   sender binding and routing).
//! - `floor/{rsa2048,p256}/{10KB,10MB}`: the least `verify` must do,
//!   done directly with `ring`: one SHA-256 over the signed content and the
//!   one CMS signer signature over the DER signed attributes (located,
//!   decoded and extracted in setup, which checks that the digest equals
//!   the messageDigest and that the signature verifies). The goal of
//!   issue 15: `verify/…/10KB` at most 2× this.
//! - `baseline/{rsa2048,p256}/{10KB,10MB}`: the raw cost of the same
//!   cryptographic work done directly with `ring`: one SHA-256 over the signed
//!   content (the first part of the multipart/signed, located in setup) plus
//!   the three signature verifications of the chain (the CMS signer signature
//!   over the DER signed attributes, the signer certificate by the issuing CA,
//!   the issuing CA certificate by the root). Everything that can be prepared
//!   (locating the content, decoding the CMS and certificates, extracting
//!   keys, TBS bytes and signatures) is done in setup.
//! - `baseline-crl/{rsa2048,p256}/{10KB,10MB}`: `baseline` plus the
//!   signatures of the two CRLs of the chain (issuing CA's CRL, root CA's
//!   CRL), which webpki would re-verify on every message; emla verifies them
//!   once per key, at first use. For information: the goal (verify <= 1.5x) is
//!   measured against `baseline`.
//! - `verify-crl100k/{rsa2048,p256}/10KB`: `verify` of the same 10 KB
//!   messages under a copy of the policy whose AA issuing-CA CRL lists
//!   100 000 revoked serials, none of them the signer's (generated in setup
//!   by `bench/big-crl.py`, signed by `certs/aa/issuing.key`). Setup checks
//!   that the signer's revocation evidence names that CRL (method `crl`,
//!   its SHA-256).
//! - `verify-ocsp/{rsa2048,p256}/10KB`: `verify` of the same messages under
//!   a copy of the policy whose AA authority has only the root's CRL and
//!   `ocsp = "prefer"`, with a `RevocationSet` holding, for each signer, a
//!   real `openssl ocsp` response (signed by the issuing CA, nextUpdate a
//!   day ahead) validated with `emla::trust::ocsp::check_response`. Setup
//!   checks that the signer's evidence is that answer (method `ocsp`). The
//!   issuing CA is still checked against the root's CRL.
//!
//! In every `verify*` group the CRL signatures are checked at first use
//! (the first iteration) and remembered per key; the OCSP answers were
//! validated when they were put into the set: the caches are warm.
//!
//! Requirements: `openssl` 3.x and `python3` with `cryptography` on `PATH`
//! (override with `EMLA_TEST_OPENSSL` / `EMLA_TEST_PYTHON`, as for the tests).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use der::asn1::{BitString, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use emla::trust::revocation::RevocationSet;
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::crl::CertificateList;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

const FROM_DOMAIN: &str = "justice.aa.example";
const RCPT: &str = "bob@justice.bb.example";
const SIZES: [(&str, usize); 2] = [("10KB", 10 * 1024), ("10MB", 10 * 1024 * 1024)];
/// (bench name, official in `certs/aa/`).
const SIGNERS: [(&str, &str); 2] = [("rsa2048", "alice"), ("p256", "eve")];
/// Revoked serials in the issuing-CA CRL of `verify-crl100k`.
const BIG_CRL_ENTRIES: usize = 100_000;

const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

// ---------------------------------------------------------------------------
// Fixture: PKI, policy, messages
// ---------------------------------------------------------------------------

/// The shared test PKI, and beside its `policy/` (so that `../certs/...`
/// paths resolve) a copy that admits 10 MB messages.
fn make_pki() -> (PathBuf, PathBuf) {
    let pki = support::pki().dir.clone();
    let policy = pki.join("policy-bench");
    copy_dir(&pki.join("policy"), &policy);
    let gateway = policy.join("gateway.toml");
    let toml = std::fs::read_to_string(&gateway).expect("gateway.toml");
    let toml: String = toml
        .lines()
        .map(|l| {
            if l.starts_with("max_message_size") {
                "max_message_size = 33554432\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&gateway, toml).expect("write gateway.toml");
    (pki, policy)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

fn python() -> String {
    std::env::var("EMLA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Copies the bench policy `policy` to `name` beside it, with the
/// `authorities/aa-moj.toml` line `from` replaced by `to`.
fn policy_variant(policy: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let dir = policy.with_file_name(name);
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(policy, &dir);
    let path = dir.join("authorities/aa-moj.toml");
    let toml = std::fs::read_to_string(&path).expect("aa-moj.toml");
    assert!(
        toml.contains(from),
        "{}: no {from:?} in\n{toml}",
        path.display()
    );
    std::fs::write(&path, toml.replace(from, to)).expect("write aa-moj.toml");
    dir
}

/// The line of the sample policy naming AA's CRL files.
const AA_CRLS: &str = r#"crls = ["../certs/aa/root.crl.pem", "../certs/aa/issuing.crl.pem"]"#;

/// A copy of the bench policy whose AA issuing-CA CRL lists
/// [`BIG_CRL_ENTRIES`] revoked serials, none of them a signer's
/// (`bench/big-crl.py`, signed by `certs/aa/issuing.key`); and the SHA-256
/// (hex) of that CRL's DER.
fn crl100k_policy(pki: &Path, policy: &Path) -> (PathBuf, String) {
    let certs = pki.join("certs/aa");
    let crl = certs.join("issuing-100k.crl.pem");
    let mut cmd = Command::new(python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/big-crl.py"))
        .arg(certs.join("issuing.pem"))
        .arg(certs.join("issuing.key"))
        .arg(BIG_CRL_ENTRIES.to_string())
        .arg(&crl);
    for (_, who) in SIGNERS {
        cmd.arg("--exclude").arg(certs.join(format!("{who}.pem")));
    }
    support::run_ok(&mut cmd);
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &pem_der(&crl)));
    let dir = policy_variant(
        policy,
        "policy-bench-crl100k",
        AA_CRLS,
        r#"crls = ["../certs/aa/root.crl.pem", "../certs/aa/issuing-100k.crl.pem"]"#,
    );
    (dir, sha256)
}

/// A copy of the bench policy where AA has no issuing-CA CRL (only the
/// root's) and asks OCSP first.
fn ocsp_policy(policy: &Path) -> PathBuf {
    policy_variant(
        policy,
        "policy-bench-ocsp",
        AA_CRLS,
        "crls = [\"../certs/aa/root.crl.pem\"]\nocsp = \"prefer\"",
    )
}

/// A real OCSP response (DER) for `certs/aa/WHO.pem`: `openssl ocsp`
/// answers the request (`-reqout`, no nonce) from an index where the
/// signers are valid, signed by the issuing CA itself, nextUpdate a day
/// ahead.
fn ocsp_response(pki: &Path, dir: &Path, who: &str) -> Vec<u8> {
    let certs = pki.join("certs/aa");
    let mut index = String::new();
    for (_, signer) in SIGNERS {
        let out = support::run_ok(
            Command::new(support::openssl())
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(certs.join(format!("{signer}.pem"))),
        );
        let serial = String::from_utf8(out).expect("serial");
        let serial = serial.trim().trim_start_matches("serial=").to_uppercase();
        index += &format!("V\t391231000000Z\t\t{serial}\tunknown\t/CN={signer}\n");
    }
    let index_path = dir.join("ocsp-index.txt");
    std::fs::write(&index_path, index).expect("write index");
    std::fs::write(dir.join("ocsp-index.txt.attr"), "unique_subject = no\n").expect("attr");
    let req = dir.join(format!("ocsp-{who}.req"));
    let resp = dir.join(format!("ocsp-{who}.resp"));
    support::run_ok(
        Command::new(support::openssl())
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(certs.join("issuing.pem"))
            .arg("-cert")
            .arg(certs.join(format!("{who}.pem")))
            .arg("-reqout")
            .arg(&req),
    );
    support::run_ok(
        Command::new(support::openssl())
            .arg("ocsp")
            .arg("-index")
            .arg(&index_path)
            .arg("-CA")
            .arg(certs.join("issuing.pem"))
            .arg("-rsigner")
            .arg(certs.join("issuing.pem"))
            .arg("-rkey")
            .arg(certs.join("issuing.key"))
            .arg("-reqin")
            .arg(&req)
            .arg("-respout")
            .arg(&resp)
            .args(["-ndays", "1"]),
    );
    std::fs::read(&resp).expect("read OCSP response")
}

/// A [`RevocationSet`] holding, for each signer, an OCSP answer made by
/// [`ocsp_response`] and validated with `emla::trust::ocsp::check_response`
/// at `at`; and each signer's answer's SHA-256 (hex).
fn ocsp_answers(
    pki: &Path,
    dir: &Path,
    at: emla::EvalTime,
) -> (RevocationSet, Vec<(&'static str, String)>) {
    use emla::trust::ocsp::{cert_key, check_response, CertStatus};
    use emla::trust::revocation::{OcspAnswer, CLOCK_SKEW_SECS};
    let certs = pki.join("certs/aa");
    let issuer = pem_der(&certs.join("issuing.pem"));
    let mut set = RevocationSet::default();
    let mut hashes = Vec::new();
    for (_, who) in SIGNERS {
        let cert = pem_der(&certs.join(format!("{who}.pem")));
        let der = ocsp_response(pki, dir, who);
        let answer = check_response(&der, &cert, &issuer, at.unix(), CLOCK_SKEW_SECS)
            .unwrap_or_else(|e| panic!("OCSP response for {who}: {e:?}"));
        assert_eq!(answer.status, CertStatus::Good, "OCSP status of {who}");
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der));
        let key = cert_key(&cert, &issuer).expect("OCSP cert key");
        set.put_ocsp(
            key,
            Arc::new(OcspAnswer {
                der: der.into(),
                sha256: sha256.clone(),
                status: answer.status.clone(),
                this_update: answer.this_update,
                next_update: answer.valid_until(),
                responder: answer.responder.clone(),
                source: "http://ocsp.justice.aa.example/ (bench: openssl ocsp)".into(),
            }),
        );
        hashes.push((who, sha256));
    }
    (set, hashes)
}

/// A MIME entity of about `size` bytes, CRLF throughout: a short note and a
/// base64 attachment of pseudo-random bytes in lines of 76 characters.
/// `bench/verify-memory.sh` builds the same shape.
fn evidence_entity(size: usize) -> Vec<u8> {
    const B: &str = "emla-bench-mixed";
    let head = format!(
        "Content-Type: multipart/mixed; boundary=\"{B}\"\r\n\r\n\
         --{B}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n\
         Request for mutual legal assistance, case AA-2024-0001: evidence attached.\r\n\r\n\
         --{B}\r\nContent-Type: application/pdf; name=\"evidence.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"evidence.pdf\"\r\n\r\n"
    );
    let tail = format!("--{B}--\r\n");
    let lines = (size.saturating_sub(head.len() + tail.len()) / 78).max(1);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..lines * 57)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut out = Vec::with_capacity(size + 128);
    out.extend_from_slice(head.as_bytes());
    for line in b64.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

/// Signs `entity` detached with `openssl cms -sign` as `who`.
fn sign(pki: &Path, dir: &Path, who: &str, entity: &[u8]) -> Vec<u8> {
    let certs = pki.join("certs/aa");
    let input = dir.join(format!("{who}-{}.mime", entity.len()));
    let output = dir.join(format!("{who}-{}.eml", entity.len()));
    std::fs::write(&input, entity).expect("write entity");
    support::run_ok(
        Command::new(support::openssl())
            .args(["cms", "-sign", "-md", "sha256", "-crlfeol"])
            .arg("-in")
            .arg(&input)
            .arg("-signer")
            .arg(certs.join(format!("{who}.pem")))
            .arg("-inkey")
            .arg(certs.join(format!("{who}.key")))
            .arg("-certfile")
            .arg(certs.join("chain.pem"))
            .args(["-from", &format!("{who}@{FROM_DOMAIN}")])
            .args(["-to", RCPT])
            .args(["-subject", "MLA request AA-2024-0001: evidence"])
            .arg("-out")
            .arg(&output),
    );
    // OpenSSL 3.0 writes the signature's base64 with bare LF even with
    // `-crlfeol`; over SMTP every line ends in CRLF.
    support::crlf(&std::fs::read(&output).expect("read signed message"))
}

// ---------------------------------------------------------------------------
// Baseline: the same cryptographic work, prepared in setup
// ---------------------------------------------------------------------------

/// One signature to verify: algorithm, public key, message, signature.
struct Check {
    alg: &'static dyn VerificationAlgorithm,
    key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Check {
    fn verify(&self) -> Result<(), ring::error::Unspecified> {
        UnparsedPublicKey::new(self.alg, &self.key).verify(&self.message, &self.signature)
    }
}

struct Baseline {
    /// The signed content: the first part of the multipart/signed.
    content: Range<usize>,
    /// CMS signer signature over the signed attributes (DER SET OF).
    signer: Check,
    /// Signer certificate by the issuing CA.
    signer_cert: Check,
    /// Issuing CA certificate by the root CA.
    issuing_cert: Check,
    /// The CRLs `verify` consults (issuing CA's, root CA's): not part of the
    /// baseline proper, timed separately as `baseline-crl`.
    crls: [Check; 2],
    /// The messageDigest signed attribute, to check the baseline in setup.
    message_digest: Vec<u8>,
}

/// One of the timed works of [`Baseline`].
type BaselineRun = fn(&Baseline, &[u8]) -> bool;

impl Baseline {
    /// The floor of `verify`: one SHA-256 over the content and the one
    /// signer signature over the signed attributes, nothing else.
    fn floor(&self, raw: &[u8]) -> bool {
        let digest = ring::digest::digest(&ring::digest::SHA256, &raw[self.content.clone()]);
        black_box(digest.as_ref());
        self.signer.verify().is_ok()
    }

    /// The timed work: one SHA-256 over the content and three signatures.
    fn run(&self, raw: &[u8]) -> bool {
        let digest = ring::digest::digest(&ring::digest::SHA256, &raw[self.content.clone()]);
        black_box(digest.as_ref());
        self.signer.verify().is_ok()
            && self.signer_cert.verify().is_ok()
            && self.issuing_cert.verify().is_ok()
    }

    /// [`Baseline::run`] plus the signatures of the two CRLs of the chain,
    /// which `verify` checks on every message through webpki.
    fn run_with_crls(&self, raw: &[u8]) -> bool {
        self.run(raw) && self.crls.iter().all(|c| c.verify().is_ok())
    }
}

/// The DER of the first PEM block of `path`.
fn pem_der(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).expect("read PEM");
    let b64: String = pem
        .split("-----BEGIN ")
        .nth(1)
        .and_then(|b| b.split("-----END").next())
        .and_then(|b| b.split_once("-----"))
        .map(|(_label, body)| body)
        .expect("a PEM block")
        .split_whitespace()
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM base64")
}

fn pem_cert(path: &Path) -> Certificate {
    Certificate::from_der(&pem_der(path)).expect("certificate DER")
}

/// The signature of the CRL at `path` by `issuer`.
fn crl_check(path: &Path, issuer: &Certificate) -> Check {
    let crl = CertificateList::from_der(&pem_der(path)).expect("CRL DER");
    signed_by(
        issuer,
        &crl.signature_algorithm,
        &crl.tbs_cert_list,
        &crl.signature,
    )
}

/// The check of `signature` (algorithm `alg`) over the DER of `tbs` by
/// `issuer`'s key.
fn signed_by(
    issuer: &Certificate,
    alg: &AlgorithmIdentifierOwned,
    tbs: &impl Encode,
    signature: &BitString,
) -> Check {
    Check {
        alg: ring_alg(&alg.oid.to_string(), issuer),
        key: public_key(issuer),
        message: tbs.to_der().expect("to-be-signed DER"),
        signature: signature.raw_bytes().to_vec(),
    }
}

fn curve(cert: &Certificate) -> Option<String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .map(|o| o.to_string())
}

/// The ring algorithm for signature algorithm `sig_oid` made with `key_cert`'s key.
fn ring_alg(sig_oid: &str, key_cert: &Certificate) -> &'static dyn VerificationAlgorithm {
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    match (sig_oid, curve(key_cert).as_deref()) {
        ("1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.11", _) => &sig::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.10045.4.3.2" | "1.2.840.10045.2.1", Some(P256)) => &sig::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.2", Some(P384)) => &sig::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", Some(P256)) => &sig::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.3", Some(P384)) => &sig::ECDSA_P384_SHA384_ASN1,
        (oid, c) => panic!("baseline: unsupported signature algorithm {oid} with key {c:?}"),
    }
}

fn cert_check(cert: &Certificate, issuer: &Certificate) -> Check {
    signed_by(
        issuer,
        &cert.signature_algorithm,
        &cert.tbs_certificate,
        &cert.signature,
    )
}

fn public_key(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

/// Locates the two parts of the multipart/signed `raw` (CRLF): the signed
/// content and the base64 body of the signature part.
fn split_signed(raw: &[u8]) -> (Range<usize>, Vec<u8>) {
    let text = std::str::from_utf8(raw).expect("ASCII message");
    let header_end = text.find("\r\n\r\n").expect("header section") + 4;
    let boundary = text[..header_end]
        .split("boundary=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("boundary parameter");
    let delimiter = format!("\r\n--{boundary}\r\n");
    let first = header_end - 2 + text[header_end - 2..].find(&delimiter).expect("first part");
    let start = first + delimiter.len();
    let second = start + text[start..].find(&delimiter).expect("second part");
    let sig_part = &text[second + delimiter.len()..];
    let sig_body_start = sig_part.find("\r\n\r\n").expect("signature headers") + 4;
    let close = format!("\r\n--{boundary}--");
    let sig_body = &sig_part[sig_body_start..sig_part.find(&close).expect("closing boundary")];
    let b64: String = sig_body.split_whitespace().collect();
    let cms = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("signature base64");
    (start..second, cms)
}

fn baseline(raw: &[u8], certs: &Path, who: &str) -> Baseline {
    let (content, cms_der) = split_signed(raw);
    let ci = ContentInfo::from_der(&cms_der).expect("CMS ContentInfo");
    let sd: SignedData = ci.content.decode_as().expect("SignedData");
    let si = sd.signer_infos.0.get(0).expect("one SignerInfo");
    let attrs = si.signed_attrs.as_ref().expect("signed attributes");
    let message_digest = attrs
        .iter()
        .find(|a| a.oid == OID_MESSAGE_DIGEST)
        .and_then(|a| a.values.get(0))
        .map(|v| {
            v.decode_as::<OctetStringRef<'_>>()
                .expect("messageDigest")
                .as_bytes()
                .to_vec()
        })
        .expect("messageDigest attribute");

    let signer_cert = pem_cert(&certs.join(format!("{who}.pem")));
    let issuing = pem_cert(&certs.join("issuing.pem"));
    let root = pem_cert(&certs.join("root.pem"));
    Baseline {
        content,
        signer: Check {
            alg: ring_alg(&si.signature_algorithm.oid.to_string(), &signer_cert),
            key: public_key(&signer_cert),
            message: attrs.to_der().expect("signed attributes DER"),
            signature: si.signature.as_bytes().to_vec(),
        },
        signer_cert: cert_check(&signer_cert, &issuing),
        issuing_cert: cert_check(&issuing, &root),
        crls: [
            crl_check(&certs.join("issuing.crl.pem"), &issuing),
            crl_check(&certs.join("root.crl.pem"), &root),
        ],
        message_digest,
    }
}

// ---------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------

struct Case {
    name: String,
    size: &'static str,
    /// The official in `certs/aa/`.
    who: &'static str,
    from: String,
    raw: Vec<u8>,
    baseline: Baseline,
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (pki, policy_dir) = make_pki();
    let at = emla::EvalTime::now();
    let policy = load_policy(&policy_dir, at);
    let rcpts = vec![RCPT.to_string()];
    let cases = make_cases(&pki, tmp.path());
    let fetched = RevocationSet::default();
    check_cases(&policy, &fetched, &cases, &rcpts, at);

    // The revocation paths, 10 KB messages only: the same messages under
    // copies of the policy.
    let small: Vec<&Case> = cases.iter().filter(|c| c.size == "10KB").collect();
    let load = |dir: &Path| load_policy(dir, at);

    // A 100 000-entry issuing-CA CRL: the signer must be judged by it.
    let (crl100k_dir, crl100k_sha256) = crl100k_policy(&pki, &policy_dir);
    let crl100k = load(&crl100k_dir);
    for case in &small {
        let verdict = judge(&crl100k, &fetched, case, &rcpts, at, "verify-crl100k");
        // The signer must be checked against the 100k CRL.
        let crl = Some(crl100k_sha256.as_str());
        assert_signer_checked(&verdict, &pki, case, "verify-crl100k", "crl", crl);
    }

    // No issuing-CA CRL, OCSP preferred, a validated answer held per signer.
    let ocsp = load(&ocsp_policy(&policy_dir));
    let (answers, answer_sha256) = ocsp_answers(&pki, tmp.path(), at);
    for case in &small {
        let verdict = judge(&ocsp, &answers, case, &rcpts, at, "verify-ocsp");
        let expected = answer_sha256
            .iter()
            .find(|(who, _)| *who == case.who)
            .map(|(_, h)| h.as_str());
        assert_signer_checked(&verdict, &pki, case, "verify-ocsp", "ocsp", expected);
    }

    let all: Vec<&Case> = cases.iter().collect();
    bench_group(c, "verify", &policy, &fetched, &all, &rcpts, at);
    bench_group(c, "verify-crl100k", &crl100k, &fetched, &small, &rcpts, at);
    bench_group(c, "verify-ocsp", &ocsp, &answers, &small, &rcpts, at);

    let baselines: [(&str, BaselineRun); 3] = [
        ("floor", Baseline::floor),
        ("baseline", Baseline::run),
        ("baseline-crl", Baseline::run_with_crls),
    ];
    for (name, run) in baselines {
        let mut group = c.benchmark_group(name);
        for case in &cases {
            configure(&mut group, case.size);
            group.throughput(Throughput::Bytes(case.raw.len() as u64));
            group.bench_function(&case.name, |b| {
                b.iter(|| run(&case.baseline, black_box(&case.raw)))
            });
        }
        group.finish();
    }
}

/// The policy in `dir`, which must load.
fn load_policy(dir: &Path, at: emla::EvalTime) -> emla::policy::Policy {
    emla::policy::load(dir, at).unwrap_or_else(|diags| {
        let list: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        panic!("policy {}:\n{}", dir.display(), list.join("\n"))
    })
}

/// One message per size and signer, with its baseline.
fn make_cases(pki: &Path, tmp: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for (size_name, size) in SIZES {
        let entity = evidence_entity(size);
        for (name, who) in SIGNERS {
            let raw = sign(pki, tmp, who, &entity);
            let baseline = baseline(&raw, &pki.join("certs/aa"), who);
            cases.push(Case {
                name: format!("{name}/{size_name}"),
                size: size_name,
                who,
                from: format!("{who}@{FROM_DOMAIN}"),
                raw,
                baseline,
            });
        }
    }
    cases
}

/// Both sides must do their work successfully before anything is timed.
fn check_cases(
    policy: &emla::policy::Policy,
    fetched: &RevocationSet,
    cases: &[Case],
    rcpts: &[String],
    at: emla::EvalTime,
) {
    for case in cases {
        judge(policy, fetched, case, rcpts, at, "verify");
        let b = &case.baseline;
        let content = &case.raw[b.content.clone()];
        let digest = ring::digest::digest(&ring::digest::SHA256, content);
        assert_eq!(
            digest.as_ref(),
            b.message_digest,
            "baseline/{}: digest",
            case.name
        );
        b.signer.verify().expect("baseline: CMS signer signature");
        b.signer_cert
            .verify()
            .expect("baseline: signer certificate");
        b.issuing_cert
            .verify()
            .expect("baseline: issuing CA certificate");
        for crl in &b.crls {
            crl.verify().expect("baseline: CRL signature");
        }
        assert!(b.floor(&case.raw));
        assert!(b.run_with_crls(&case.raw));
    }
}

/// Sample sizes and times of a group for messages of `size`.
fn configure<M: criterion::measurement::Measurement>(
    group: &mut criterion::BenchmarkGroup<'_, M>,
    size: &str,
) {
    if size == "10MB" {
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
    } else {
        group
            .sample_size(50)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
    }
}

/// Verifies `case` under `policy` with `fetched`, which must accept.
fn judge(
    policy: &emla::policy::Policy,
    fetched: &RevocationSet,
    case: &Case,
    rcpts: &[String],
    at: emla::EvalTime,
    group: &str,
) -> emla::verify::Verdict {
    let envelope = emla::verify::Envelope {
        mail_from: Some(&case.from),
        rcpt_to: rcpts,
    };
    let verdict = emla::verify::verify(policy, fetched, &case.raw, &envelope, at);
    assert!(
        verdict.accepted(),
        "{group}/{} must accept: {} {}",
        case.name,
        verdict.reason,
        verdict.detail
    );
    verdict
}

/// The revocation evidence of `verdict` for the signer of `case` has
/// `method` and names the data by `sha256`.
fn assert_signer_checked(
    verdict: &emla::verify::Verdict,
    pki: &Path,
    case: &Case,
    group: &str,
    method: &str,
    sha256: Option<&str>,
) {
    let cert = pem_cert(&pki.join(format!("certs/aa/{}.pem", case.who)));
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    let ev = verdict
        .revocation
        .iter()
        .find(|e| e.serial == serial)
        .unwrap_or_else(|| {
            panic!(
                "{group}/{}: no revocation evidence for the signer: {:?}",
                case.name, verdict.revocation
            )
        });
    let found = (ev.method.as_str(), ev.sha256.as_deref());
    assert_eq!(found, (method, sha256), "{group}/{}: {ev:?}", case.name);
}

/// One group timing `emla::verify::verify` of `cases` under `policy` with
/// `fetched`, sampled as [`configure`] says for their size.
fn bench_group(
    c: &mut Criterion,
    name: &str,
    policy: &emla::policy::Policy,
    fetched: &RevocationSet,
    cases: &[&Case],
    rcpts: &[String],
    at: emla::EvalTime,
) {
    let mut group = c.benchmark_group(name);
    for case in cases {
        configure(&mut group, case.size);
        group.throughput(Throughput::Bytes(case.raw.len() as u64));
        let envelope = emla::verify::Envelope {
            mail_from: Some(&case.from),
            rcpt_to: rcpts,
        };
        group.bench_function(&case.name, |b| {
            b.iter(|| emla::verify::verify(policy, fetched, black_box(&case.raw), &envelope, at))
        });
    }
    group.finish();
}

criterion_group!(verify_benches, benches);
criterion_main!(verify_benches);
