//! The OCSP client (`emla::trust::ocsp`) against a real `openssl ocsp`
//! responder on loopback, reached with the gateway's own HTTP client
//! (`emla::trust::http`): good, revoked and unknown certificates, a
//! responder that is down, delegated responders with and without
//! id-kp-OCSPSigning, a responder key no CA vouches for, stale answers and
//! refused signature digests. The PKI is made by each test with the openssl
//! CLI in a temp dir (`tests/support/ocsp.rs`).
//!
//! Requirements: `openssl` 3.x (override with `EMLA_TEST_OPENSSL`).

#[path = "support/ocsp.rs"]
mod ocsp;
#[path = "support/proc.rs"]
mod proc;

use std::process::Command;

use emla::trust::http::{Http, HttpError, HttpLimits};
use emla::trust::ocsp::{
    check_response, ocsp_urls, request, Answer, CertStatus, OcspError, REQUEST_CONTENT_TYPE,
};
use ocsp::{now, IndexStatus, Issued, Pki, Profile, Responder, ResponderOpts};

/// Clock skew allowed in these tests.
const SKEW: u64 = 300;

/// A CA with its leaves: `good` (valid in the index), `revoked`
/// (keyCompromise an hour ago), `unknown` (issued, not in the index), and
/// two delegated responder certificates, with and without the EKU.
struct World {
    _tmp: tempfile::TempDir,
    pki: Pki,
    good: Issued,
    revoked: Issued,
    unknown: Issued,
    responder: Issued,
    responder_noeku: Issued,
    revoked_at: u64,
    index: std::path::PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut pki = Pki::new(tmp.path(), "Test OCSP CA", "http://ocsp.test.example/ocsp");
    let good = pki.issue("good", "good official", Profile::Leaf);
    let revoked = pki.issue("revoked", "revoked official", Profile::Leaf);
    let unknown = pki.issue("unknown", "unknown official", Profile::Leaf);
    let responder = pki.issue("responder", "Test OCSP responder", Profile::Responder);
    let responder_noeku = pki.issue(
        "responder-noeku",
        "Test responder without EKU",
        Profile::ResponderNoEku,
    );
    let revoked_at = now() - 3600;
    let index = pki.write_index(&[
        (&good, IndexStatus::Valid),
        (
            &revoked,
            IndexStatus::Revoked(revoked_at, Some("keyCompromise")),
        ),
        (&responder, IndexStatus::Valid),
    ]);
    World {
        _tmp: tmp,
        pki,
        good,
        revoked,
        unknown,
        responder,
        responder_noeku,
        revoked_at,
        index,
    }
}

fn http() -> Http {
    Http::new(HttpLimits {
        max_bytes: 64 * 1024,
        connect_timeout: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(15),
        max_redirects: 0,
    })
    .expect("HTTP client")
}

/// POSTs the request for `cert` and returns the raw response.
async fn ask(responder: &Responder, cert: &Issued, ca: &Issued) -> Result<Vec<u8>, HttpError> {
    let req = request(&cert.der, &ca.der).expect("OCSP request");
    let got = http()
        .post(&responder.url(), REQUEST_CONTENT_TYPE, req.der)
        .await?;
    Ok(got.bytes)
}

/// Asks and checks as of now.
async fn check(responder: &Responder, cert: &Issued, ca: &Issued) -> Result<Answer, OcspError> {
    check_at(responder, cert, ca, now()).await
}

async fn check_at(
    responder: &Responder,
    cert: &Issued,
    ca: &Issued,
    at: u64,
) -> Result<Answer, OcspError> {
    let der = ask(responder, cert, ca)
        .await
        .unwrap_or_else(|e| panic!("{e}\nresponder stderr:\n{}", responder.stderr()));
    check_response(&der, &cert.der, &ca.der, at, SKEW)
}

/// `e` is the error `pat` and its message contains `text`.
macro_rules! assert_error {
    ($e:expr, $pat:pat, $text:expr) => {{
        let e = &$e;
        assert!(matches!(e, $pat), "{e:?}");
        assert!(e.to_string().contains($text), "{e}");
    }};
}

#[tokio::test]
async fn good_revoked_and_unknown_from_the_ca_itself() {
    let w = world();
    let ca = &w.pki.ca;
    let r = Responder::start(&w.index, ca, ca, &ResponderOpts::default());

    let a = check(&r, &w.good, ca).await.expect("good");
    assert_eq!(a.status, CertStatus::Good);
    assert!(!a.delegated);
    assert_eq!(a.responder, "CN=Test OCSP CA");
    assert!(a.this_update <= now() + SKEW && a.this_update + 600 > now());
    assert_eq!(a.next_update, None);
    assert_eq!(a.valid_until(), a.this_update + 3600);
    assert!(a.produced_at >= a.this_update);

    let a = check(&r, &w.revoked, ca).await.expect("revoked");
    assert_eq!(
        a.status,
        CertStatus::Revoked {
            time: w.revoked_at,
            reason: Some("keyCompromise".into())
        }
    );

    let a = check(&r, &w.unknown, ca).await.expect("unknown");
    assert_eq!(a.status, CertStatus::Unknown);

    // The answer for one certificate is not taken for another.
    let der = ask(&r, &w.good, ca).await.unwrap();
    let e = check_response(&der, &w.revoked.der, &ca.der, now(), SKEW).unwrap_err();
    assert_error!(e, OcspError::NoMatchingResponse { .. }, "serial");
}

#[tokio::test]
async fn responder_id_by_key_and_a_next_update() {
    let w = world();
    let ca = &w.pki.ca;
    let opts = ResponderOpts {
        by_key: true,
        next_update_minutes: Some(30),
        ..Default::default()
    };
    let r = Responder::start(&w.index, ca, ca, &opts);
    let a = check(&r, &w.good, ca).await.expect("good");
    assert_eq!(a.status, CertStatus::Good);
    let next = a.next_update.expect("nextUpdate");
    assert!(next >= a.this_update + 29 * 60 && next <= a.this_update + 31 * 60);
    assert_eq!(a.valid_until(), next);
}

#[tokio::test]
async fn a_responder_that_is_down_is_a_connection_error() {
    let w = world();
    let ca = &w.pki.ca;
    let mut r = Responder::start(&w.index, ca, ca, &ResponderOpts::default());
    assert!(check(&r, &w.good, ca).await.is_ok());
    r.stop();
    let e = ask(&r, &w.good, ca).await.unwrap_err();
    assert_error!(e, HttpError::Connect { .. }, &r.url());
}

#[tokio::test]
async fn a_delegated_responder_with_ocsp_signing_is_accepted() {
    let w = world();
    let ca = &w.pki.ca;
    let r = Responder::start(&w.index, ca, &w.responder, &ResponderOpts::default());
    let a = check(&r, &w.revoked, ca)
        .await
        .expect("revoked via delegate");
    assert!(matches!(a.status, CertStatus::Revoked { .. }));
    assert!(a.delegated);
    assert_eq!(a.responder, "CN=Test OCSP responder");
    let a = check(&r, &w.good, ca).await.expect("good via delegate");
    assert_eq!(a.status, CertStatus::Good);

    // The delegate must be valid at the evaluation time: 40 days on it has
    // expired (and the response would be stale anyway; the responder is
    // judged first).
    let e = check_at(&r, &w.good, ca, now() + 40 * 86400)
        .await
        .unwrap_err();
    assert_error!(e, OcspError::UnauthorizedResponder(_), "expired");
}

#[tokio::test]
async fn a_delegated_responder_without_ocsp_signing_is_refused() {
    let w = world();
    let ca = &w.pki.ca;
    let r = Responder::start(&w.index, ca, &w.responder_noeku, &ResponderOpts::default());
    let e = check(&r, &w.good, ca).await.unwrap_err();
    assert!(matches!(e, OcspError::UnauthorizedResponder(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("Test responder without EKU") && text.contains("id-kp-OCSPSigning"),
        "{text}"
    );
}

#[tokio::test]
async fn a_response_signed_by_an_unrelated_key_is_refused() {
    let w = world();
    let ca = &w.pki.ca;
    let stranger = ocsp::self_signed(&w.pki.dir, "stranger", "Stranger responder", false);
    // With its certificate in the response: not issued by the CA.
    let r = Responder::start(&w.index, ca, &stranger, &ResponderOpts::default());
    let e = check(&r, &w.good, ca).await.unwrap_err();
    assert!(matches!(e, OcspError::UnauthorizedResponder(_)), "{e:?}");
    assert!(
        e.to_string().contains("is not signed by CN=Test OCSP CA"),
        "{e}"
    );
    drop(r);
    // Without it: no certificate to vouch for the key at all.
    let opts = ResponderOpts {
        no_certs: true,
        ..Default::default()
    };
    let r = Responder::start(&w.index, ca, &stranger, &opts);
    let e = check(&r, &w.good, ca).await.unwrap_err();
    assert_error!(e, OcspError::UnauthorizedResponder(_), "neither");
    drop(r);
    // A genuine delegate whose certificate is left out is no better.
    let r = Responder::start(&w.index, ca, &w.responder, &opts);
    let e = check(&r, &w.good, ca).await.unwrap_err();
    assert!(matches!(e, OcspError::UnauthorizedResponder(_)), "{e:?}");
}

#[tokio::test]
async fn a_response_naming_the_ca_but_signed_by_another_key_is_refused() {
    // Another CA with the same name: the responder ID matches our issuer by
    // name, but the signature is made with the other CA's key.
    let w = world();
    let ca = &w.pki.ca;
    let twin_dir = w.pki.dir.join("twin");
    let twin = Pki::new(&twin_dir, "Test OCSP CA", "http://ocsp.test.example/ocsp");
    let r = Responder::start(&w.index, &twin.ca, &twin.ca, &ResponderOpts::default());
    // The twin computes CertIDs from its own key, so ask with the twin as
    // issuer and judge against the real one.
    let der = ask(&r, &w.good, &twin.ca).await.expect("response");
    let e = check_response(&der, &w.good.der, &ca.der, now(), SKEW).unwrap_err();
    assert_error!(e, OcspError::BadSignature(_), "does not verify");
}

#[tokio::test]
async fn stale_responses_are_refused() {
    let w = world();
    let ca = &w.pki.ca;
    // nextUpdate one minute after thisUpdate, judged five minutes on.
    let opts = ResponderOpts {
        next_update_minutes: Some(1),
        ..Default::default()
    };
    let r = Responder::start(&w.index, ca, ca, &opts);
    let e = check_at(&r, &w.good, ca, now() + 300).await.unwrap_err();
    assert!(
        matches!(e, OcspError::Stale { implied: false, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("nextUpdate was"), "{e}");
    drop(r);
    // No nextUpdate: believed for an hour after thisUpdate.
    let r = Responder::start(&w.index, ca, ca, &ResponderOpts::default());
    assert!(check_at(&r, &w.good, ca, now() + 1800).await.is_ok());
    let e = check_at(&r, &w.good, ca, now() + 2 * 3600)
        .await
        .unwrap_err();
    assert!(matches!(e, OcspError::Stale { implied: true, .. }), "{e:?}");
    // Judged long before thisUpdate: not yet valid (beyond the skew).
    let e = check_at(&r, &w.good, ca, now() - 3600).await.unwrap_err();
    assert!(matches!(e, OcspError::NotYetValid { .. }), "{e:?}");
    // Within the skew it is fine.
    assert!(check_at(&r, &w.good, ca, now() - 60).await.is_ok());
}

#[tokio::test]
async fn sha1_signed_responses_are_refused() {
    let w = world();
    let ca = &w.pki.ca;
    let opts = ResponderOpts {
        digest: Some("sha1"),
        ..Default::default()
    };
    let r = Responder::start(&w.index, ca, ca, &opts);
    let e = check(&r, &w.good, ca).await.unwrap_err();
    assert_error!(e, OcspError::WeakAlgorithm(_), "sha1WithRSAEncryption");
}

#[test]
fn the_request_is_what_openssl_sends_and_urls_come_from_the_aia() {
    let w = world();
    let ca = &w.pki.ca;
    let req = request(&w.good.der, &ca.der).unwrap();
    let reqout = w.pki.dir.join("openssl-req.der");
    let out = Command::new(std::env::var("EMLA_TEST_OPENSSL").unwrap_or("openssl".into()))
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(&ca.pem)
        .arg("-cert")
        .arg(&w.good.pem)
        .arg("-reqout")
        .arg(&reqout)
        .output()
        .expect("openssl ocsp -reqout");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(req.der, std::fs::read(&reqout).unwrap());

    // The cache key: one per certificate, stable.
    let again = request(&w.good.der, &ca.der).unwrap();
    assert_eq!(req.key, again.key);
    assert_ne!(req.key, request(&w.revoked.der, &ca.der).unwrap().key);

    // A certificate and a CA that did not issue it.
    let e = request(&w.good.der, &w.responder.der).unwrap_err();
    assert!(matches!(e, OcspError::WrongIssuer { .. }), "{e:?}");

    // The AIA of a leaf: the http OCSP URL only (not caIssuers, not ldap).
    assert_eq!(
        ocsp_urls(&w.good.der),
        vec!["http://ocsp.test.example/ocsp".to_string()]
    );
    assert!(ocsp_urls(&ca.der).is_empty());
    assert!(ocsp_urls(b"not a certificate").is_empty());
}
