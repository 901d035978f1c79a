//! RFC 3161 signature timestamps (issue #12, item 1) against a real TSA on
//! loopback: `openssl ts -reply` behind `tests/support/tsa_serve.py`, with
//! a TSA certificate (extendedKeyUsage critical timeStamping) made here.
//!
//! - a token over a gateway signature is granted, sits in the CMS as
//!   id-smime-aa-timeStampToken, and the README's openssl commands verify
//!   it; `openssl cms -verify` still accepts the signature;
//! - a token over another imprint, or from a TSA outside `tsa_ca`, is
//!   refused; a TSA that is down gives `unavailable` within the timeout;
//! - a checkpoint written with the TSA carries the token and its audit
//!   record says `granted`; with the TSA down it is written without one
//!   and the record says `unavailable`;
//! - the backlog job adds the token to such a checkpoint once the TSA is
//!   back (`openssl ts -verify` checks it, the signature still verifies,
//!   `audit.checkpoint-stamped` names both files' SHA-256);
//! - a token whose ESS signingCertificateV2 names another certificate
//!   than the one that signed it (a twin: same key, issuer and serial) is
//!   refused.
//!
//! Needs `openssl` and `python3`.

#[path = "support/proc.rs"]
mod proc;
mod support;
#[allow(unused_macros)]
#[path = "support/testdb.rs"]
mod testdb;
#[path = "support/tsa.rs"]
mod tsa_support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use emla::asn1::{write_tlv, Reader};
use emla::audit::{backlog, checkpoint};
use emla::config::AuditConfig;
use emla::smime::sign::SigningIdentity;
use emla::smime::tsa::{self, Stamp, Tsa};
use emla::store::CheckpointData;
use emla::EvalTime;
use support::pki;
use testdb::{Backend, TestDb};
use tsa_support::{closed_port, readme_check, tsa_at, tsa_pki, Server};

fn identity() -> SigningIdentity {
    let p = pki();
    SigningIdentity::load(&p.cert("aa", "gateway"), &p.key("aa", "gateway")).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn granted_token_verifies_with_openssl() {
    let server = Server::start();
    let id = identity();
    let content = b"a receipt's signed entity\r\n";
    let signed = id.sign_detached(content, SystemTime::now());
    let stamp = rt().block_on(server.tsa("/good").stamp(signed.signature_value()));
    let Stamp::Granted(token) = &stamp else {
        panic!("not granted: {stamp:?}")
    };
    assert_eq!(token.tsa, "CN=Test TSA good");
    assert_eq!(token.policy, "1.2.3.4.1");
    let der = signed.to_der(stamp.token());
    assert_eq!(
        tsa::token_of(&der).unwrap().as_deref(),
        Some(&token.der[..])
    );
    assert_eq!(tsa::token_of(&signed.to_der(None)).unwrap(), None);
    // A token added later gives the same bytes as one added when signing.
    assert_eq!(
        tsa::add_token(&signed.to_der(None), &token.der).unwrap(),
        der
    );
    assert!(tsa::add_token(&der, &token.der).is_err(), "a second token");

    let dir = tempfile::tempdir().unwrap();
    let p7s = dir.path().join("x.p7s");
    std::fs::write(&p7s, &der).unwrap();
    let out = readme_check(&p7s, &tsa_pki().ca());
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "README check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same commands refuse another TSA CA.
    let rogue = tsa_pki().dir.join("rogue-ca-cert.pem");
    assert!(!readme_check(&p7s, &rogue).status.success());
    // The signature itself is unchanged by the unsigned attribute.
    let data = dir.path().join("content");
    std::fs::write(&data, content).unwrap();
    let p = pki();
    support::run_ok(
        Command::new(support::openssl())
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(&p7s)
            .arg("-content")
            .arg(&data)
            .arg("-CAfile")
            .arg(p.dir.join("certs/aa/root.pem"))
            .arg("-certfile")
            .arg(p.chain("aa"))
            .args(["-purpose", "any", "-out", "/dev/null"]),
    );
}

#[test]
fn foreign_imprint_and_untrusted_tsa_are_refused() {
    let server = Server::start();
    let signed = identity().sign_detached(b"x", SystemTime::now());
    let rt = rt();
    let other = rt.block_on(server.tsa("/good/other").stamp(signed.signature_value()));
    match &other {
        Stamp::Refused(e) => assert!(e.contains("another imprint"), "{e}"),
        s => panic!("a token over another imprint was not refused: {s:?}"),
    }
    let rogue = rt.block_on(server.tsa("/rogue").stamp(signed.signature_value()));
    match &rogue {
        Stamp::Refused(e) => assert!(e.contains("does not chain"), "{e}"),
        s => panic!("a token from an untrusted TSA was not refused: {s:?}"),
    }
    // A good token, checked against another signature's imprint.
    let good = rt.block_on(server.tsa("/good").stamp(signed.signature_value()));
    let token = good.token().expect("granted").to_vec();
    let ca = emla::pem::read_certificates(&tsa_pki().ca()).unwrap();
    let e = tsa::check_token(&token, &tsa::sha256(b"another"), None, &ca).unwrap_err();
    assert!(e.contains("another imprint"), "{e}");
    let policy = der::asn1::ObjectIdentifier::new_unwrap("1.2.3.4.9");
    let imprint = tsa::sha256(signed.signature_value());
    let e = tsa::check_token(&token, &imprint, Some(&policy), &ca).unwrap_err();
    assert!(e.contains("not the configured 1.2.3.4.9"), "{e}");
    assert!(tsa::check_token(&token, &imprint, None, &ca).is_ok());
}

#[test]
fn tsa_down_is_unavailable_within_the_timeout() {
    let signed = identity().sign_detached(b"x", SystemTime::now());
    let t0 = Instant::now();
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let stamp = rt().block_on(tsa_at(&url).stamp(signed.signature_value()));
    assert!(matches!(stamp, Stamp::Unavailable(_)), "{stamp:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// Writes a checkpoint with `tsa` and returns its `.p7s` and what its
/// audit record says of the timestamp.
async fn checkpoint_with(tsa: &Tsa) -> (Vec<u8>, emla::store::payload::Timestamp) {
    let (db, store) = TestDb::with_store(Backend::Sqlite).await;
    let mut policy = emla::policy::load(&pki().policy(), EvalTime::now()).unwrap();
    policy.gateway.signing = Some(std::sync::Arc::new(identity()));
    let dir = db.dir.path().join("checkpoints");
    let w = checkpoint::write(&store, &policy, &dir, &AuditConfig::default(), Some(tsa))
        .await
        .unwrap();
    let p7s = std::fs::read(w.p7s.unwrap()).unwrap();
    let seq = w.checkpoint.seq + 1;
    let ev = store.audit_record(seq).await.unwrap().unwrap();
    assert_eq!(ev.kind, "audit.checkpoint");
    let data: CheckpointData = serde_json::from_str(&ev.data).unwrap();
    db.close(store).await;
    (p7s, data.timestamp.expect("the record names the timestamp"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_carry_a_token_or_say_why_not() {
    let server = Server::start();
    let (p7s, ts) = checkpoint_with(&server.tsa("/good")).await;
    assert_eq!(ts.status, "granted", "{ts:?}");
    assert_eq!(ts.tsa.as_deref(), Some("CN=Test TSA good"));
    let token = tsa::token_of(&p7s).unwrap().expect("a token in the .p7s");
    assert_eq!(ts.sha256, Some(hex::encode(tsa::sha256(&token))));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoint.p7s");
    std::fs::write(&file, &p7s).unwrap();
    support::cmd::assert_succeeded("README check", &readme_check(&file, &tsa_pki().ca()));

    let down = tsa_at(&format!("http://127.0.0.1:{}/", closed_port()));
    let (p7s, ts) = checkpoint_with(&down).await;
    assert_eq!(ts.status, "unavailable", "{ts:?}");
    assert!(ts.detail.is_some() && ts.gen_time.is_none());
    assert_eq!(tsa::token_of(&p7s).unwrap(), None);

    let (_, ts) = checkpoint_with(&server.tsa("/rogue")).await;
    assert_eq!(ts.status, "refused", "{ts:?}");
    assert!(ts.detail.unwrap().contains("does not chain"));
}

/// `der` with the TLV `old` inside it replaced by `new`, the lengths of the
/// TLVs around it rewritten.
fn replace_tlv(der: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    if der == old {
        return new.to_vec();
    }
    let t = Reader::new(der).read().unwrap();
    let inside = t.value.windows(old.len()).any(|w| w == old);
    if t.tag & 0x20 == 0 || !inside {
        return der.to_vec();
    }
    let mut r = Reader::new(t.value);
    let mut value = Vec::new();
    while !r.is_empty() {
        value.extend(replace_tlv(r.read().unwrap().raw, old, new));
    }
    let mut out = Vec::new();
    write_tlv(&mut out, t.tag, &value);
    out
}

#[test]
fn a_token_whose_ess_attribute_names_another_certificate_is_refused() {
    let server = Server::start();
    let signed = identity().sign_detached(b"x", SystemTime::now());
    let stamp = rt().block_on(server.tsa("/good").stamp(signed.signature_value()));
    let token = stamp.token().expect("granted").to_vec();
    let cert = |name: &str| {
        emla::pem::read_certificates(&tsa_pki().dir.join(name))
            .unwrap()
            .remove(0)
            .to_vec()
    };
    // The twin has the good TSA's key, issuer and serial: the token's
    // signature verifies with it and it chains; only ESS tells them apart.
    let swapped = replace_tlv(&token, &cert("good.pem"), &cert("twin.pem"));
    assert_ne!(swapped, token, "the token carries the TSA certificate");
    let ca = emla::pem::read_certificates(&tsa_pki().ca()).unwrap();
    let imprint = tsa::sha256(signed.signature_value());
    let e = tsa::check_token(&swapped, &imprint, None, &ca).unwrap_err();
    assert!(
        e.contains("ESS signingCertificate names another certificate"),
        "{e}"
    );
    assert!(tsa::check_token(&token, &imprint, None, &ca).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_stamps_a_checkpoint_written_while_the_tsa_was_down() {
    let server = Server::start();
    let (db, store) = TestDb::with_store(Backend::Sqlite).await;
    let mut policy = emla::policy::load(&pki().policy(), EvalTime::now()).unwrap();
    policy.gateway.signing = Some(std::sync::Arc::new(identity()));
    let dir = db.dir.path().join("checkpoints");
    let down = tsa_at(&format!("http://127.0.0.1:{}/", closed_port()));
    let w = checkpoint::write(&store, &policy, &dir, &AuditConfig::default(), Some(&down))
        .await
        .unwrap();
    let p7s = w.p7s.clone().unwrap();
    let before = std::fs::read(&p7s).unwrap();
    assert_eq!(tsa::token_of(&before).unwrap(), None);

    // Still down: nothing changes, the checkpoint waits.
    let b = backlog::stamp_checkpoints(&store, &dir, &down).await;
    assert_eq!((b.stamped.len(), b.left), (0, 1), "{b:?}");
    assert_eq!(std::fs::read(&p7s).unwrap(), before);

    let b = backlog::stamp_checkpoints(&store, &dir, &server.tsa("/good")).await;
    assert_eq!((b.stamped, b.left), (vec![w.checkpoint.seq], 0));
    let after = std::fs::read(&p7s).unwrap();
    let token = tsa::token_of(&after).unwrap().expect("a token now");
    let out = readme_check(&p7s, &tsa_pki().ca());
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{out:?}"
    );
    // The signature over the checkpoint still verifies.
    let root = checkpoint::read_ca(&pki().dir.join("certs/aa/root.pem")).unwrap();
    let json = std::fs::read(&w.json).unwrap();
    checkpoint::verify_detached(&json, &after, &root, w.checkpoint.eval_time()).unwrap();

    let (head, _) = store.chain_head().await.unwrap();
    let ev = store.audit_record(head).await.unwrap().unwrap();
    assert_eq!(ev.kind, "audit.checkpoint-stamped");
    let data: emla::store::payload::AuditCheckpointStamped =
        serde_json::from_str(&ev.data).unwrap();
    assert_eq!(data.seq, w.checkpoint.seq);
    assert_eq!(data.sha256_before, hex::encode(tsa::sha256(&before)));
    assert_eq!(data.sha256, hex::encode(tsa::sha256(&after)));
    assert_eq!(data.timestamp.status, "granted");
    assert_eq!(
        data.timestamp.sha256,
        Some(hex::encode(tsa::sha256(&token)))
    );

    // Done: a second run finds nothing to stamp.
    let b = backlog::stamp_checkpoints(&store, &dir, &server.tsa("/good")).await;
    assert_eq!((b.stamped.len(), b.left), (0, 0));
    db.close(store).await;
}
