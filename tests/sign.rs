//! The gateway's own S/MIME signatures (`emla::smime::sign`) and the
//! receipts and non-delivery notices built with them
//! (`emla::relay::receipt`), checked by the real `openssl cms -verify` and
//! by emla's own verifier, on a generated PKI (`tests/support/pki.py`: the
//! gateway certificates `certs/aa/gateway{,-p384,-rsa}`).
//!
//! Needs `openssl` and `python3` with `cryptography` (see `tests/support`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use emla::smime::sign::SigningIdentity;
use support::*;

/// The gateway identities of the test PKI: (name, micalg).
const IDENTITIES: [(&str, &str); 3] = [
    ("gateway", "sha-256"),
    ("gateway-p384", "sha-384"),
    ("gateway-rsa", "sha-256"),
];

fn identity(name: &str) -> SigningIdentity {
    let p = pki();
    SigningIdentity::load(&p.cert("aa", name), &p.key("aa", name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ca_file() -> PathBuf {
    pki().cert("aa", "root")
}

/// `openssl cms -verify` of a detached DER signature over `content`.
fn openssl_verifies_der(content: &[u8], sig: &[u8]) -> bool {
    let p = pki();
    let c = p.write_scratch("content", content);
    let s = p.write_scratch("sig.der", sig);
    let out = Command::new(openssl())
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-content")
        .arg(&c)
        .arg("-in")
        .arg(&s)
        .arg("-CAfile")
        .arg(ca_file())
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    out.status.success()
}

/// `openssl cms -verify` of a whole S/MIME message.
fn openssl_verifies_smime(msg: &[u8]) -> bool {
    let p = pki();
    let m = p.write_scratch("msg.eml", msg);
    let out = Command::new(openssl())
        .args(["cms", "-verify", "-in"])
        .arg(&m)
        .arg("-CAfile")
        .arg(ca_file())
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    out.status.success()
}

/// A copy of `data` with the byte at `at` changed.
fn tamper(data: &[u8], at: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    v[at] ^= 0x01;
    v
}

/// Converts a PKCS#8 key file to the traditional form (PKCS#1 / SEC1).
fn traditional_key(key: &Path) -> PathBuf {
    let out = pki().scratch_file("trad.key");
    run_ok(
        Command::new(openssl())
            .args(["pkey", "-traditional", "-in"])
            .arg(key)
            .arg("-out")
            .arg(&out),
    );
    out
}

#[test]
fn detached_der_verifies_with_openssl() {
    let content = b"checkpoint 42: 9f86d081884c7d659a2feaa0c55ad015\r\n";
    for (name, _) in IDENTITIES {
        let id = identity(name);
        let sig = id.sign_detached_der(content, SystemTime::now());
        assert!(openssl_verifies_der(content, &sig), "{name}");
        assert!(
            !openssl_verifies_der(&tamper(content, 3), &sig),
            "{name}: tampered content must fail"
        );
        let last = sig.len() - 5; // inside the signature value
        assert!(
            !openssl_verifies_der(content, &tamper(&sig, last)),
            "{name}: tampered signature must fail"
        );
        assert_eq!(
            id.mail_address().as_deref(),
            Some("postmaster@justice.aa.example")
        );
    }
}

#[test]
fn traditional_keys_load() {
    let p = pki();
    for (name, _) in IDENTITIES {
        let key = traditional_key(&p.key("aa", name));
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(
            text.contains("BEGIN RSA PRIVATE KEY") || text.contains("BEGIN EC PRIVATE KEY"),
            "{name}: {text:.40}"
        );
        let id = SigningIdentity::load(&p.cert("aa", name), &key)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let sig = id.sign_detached_der(b"x", SystemTime::now());
        assert!(openssl_verifies_der(b"x", &sig), "{name}");
    }
}

#[test]
fn key_must_match_certificate() {
    let p = pki();
    let cases = [
        ("gateway", p.key("aa", "eve")),          // another P-256 key
        ("gateway-rsa", p.key("aa", "alice")),    // another RSA key
        ("gateway", p.key("aa", "gateway-rsa")),  // RSA key, EC cert
        ("gateway-rsa", p.key("aa", "gateway")),  // EC key, RSA cert
        ("gateway-p384", p.key("aa", "gateway")), // P-256 key, P-384 cert
    ];
    for (cert, key) in cases {
        let e = SigningIdentity::load(&p.cert("aa", cert), &key).unwrap_err();
        assert!(
            e.starts_with(&key.display().to_string()),
            "{cert} with {}: {e}",
            key.display()
        );
    }
    let e = SigningIdentity::load(&p.key("aa", "gateway"), &p.key("aa", "gateway")).unwrap_err();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    let e = SigningIdentity::load(&p.cert("aa", "gateway"), &p.cert("aa", "gateway")).unwrap_err();
    assert!(e.contains("no private key"), "{e}");
}

#[test]
fn sign_mime_verifies_with_openssl() {
    let entity = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello.\r\n";
    for (name, micalg) in IDENTITIES {
        let id = identity(name);
        let headers = [
            ("From", "postmaster@justice.aa.example".to_string()),
            ("To", BOB.to_string()),
            ("Subject", "test\r\nBcc: injected".to_string()),
        ];
        let msg = id.sign_mime(&headers, entity, SystemTime::now());
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains(&format!("micalg={micalg};")), "{text}");
        assert!(text.contains("Subject: test  Bcc: injected\r\n"), "{text}");
        assert!(!text.contains("\nBcc:"), "{text}");
        assert!(openssl_verifies_smime(&msg), "{name}\n{text}");
        let at = find(&msg, b"Hello").unwrap();
        assert!(!openssl_verifies_smime(&tamper(&msg, at)), "{name}");
    }
}
