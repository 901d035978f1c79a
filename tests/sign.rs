//! The gateway's own S/MIME signatures (`emla::smime::sign`) and the
//! receipts and non-delivery notices built with them
//! (`emla::receipts::build`), checked by the real `openssl cms -verify` and
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
    openssl_cms_verify(
        Command::new(openssl())
            .args([
                "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
            ])
            .arg("-content")
            .arg(&c)
            .arg("-in")
            .arg(&s),
    )
}

/// `openssl cms -verify` of a whole S/MIME message.
fn openssl_verifies_smime(msg: &[u8]) -> bool {
    let p = pki();
    let m = p.write_scratch("msg.eml", msg);
    openssl_cms_verify(
        Command::new(openssl())
            .args(["cms", "-verify", "-in"])
            .arg(&m),
    )
}

/// Whether `cmd` (an `openssl cms -verify …`), given the test root as
/// `-CAfile` and its output discarded, succeeds.
fn openssl_cms_verify(cmd: &mut Command) -> bool {
    cmd.arg("-CAfile")
        .arg(ca_file())
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl")
        .status
        .success()
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

// ---------------------------------------------------------------------------
// Policy: the gateway's signing identity and receipt kinds
// ---------------------------------------------------------------------------

/// A policy directory beside the PKI's own `policy/` (so its `../certs`
/// paths hold), with this `gateway.toml` and, when given, an extra line in
/// `aa-moj.toml`.
fn policy_dir(gateway_toml: &str, aa_extra: &str) -> PathBuf {
    let p = pki();
    let dir = p
        .dir
        .join(p.scratch_file("policy").file_name().expect("scratch name"));
    std::fs::create_dir_all(dir.join("authorities")).unwrap();
    for f in ["routes.toml", "authorities/bb-moj.toml"] {
        std::fs::copy(p.policy().join(f), dir.join(f)).unwrap();
    }
    let aa = std::fs::read_to_string(p.policy().join("authorities/aa-moj.toml")).unwrap();
    let aa = aa.replacen("\n[next_hop]", &format!("{aa_extra}\n\n[next_hop]"), 1);
    std::fs::write(dir.join("authorities/aa-moj.toml"), aa).unwrap();
    std::fs::write(dir.join("gateway.toml"), gateway_toml).unwrap();
    dir
}

const SIGNING_TOML: &str = "[gateway]\nhostname = \"emla.test\"\n\
    postmaster = \"postmaster@justice.aa.example\"\n\
    signing_cert = \"../certs/aa/gateway.pem\"\nsigning_key = \"../certs/aa/gateway.key\"\n";

fn load_policy(dir: &Path) -> Result<emla::policy::Policy, Vec<String>> {
    emla::policy::load(dir, emla::EvalTime::now())
        .map_err(|d| d.iter().map(|d| d.to_string()).collect())
}

#[test]
fn policy_loads_signing_identity_and_receipt_kinds() {
    use emla::policy::{ReceiptKind, ReceiptKinds};
    let dir = policy_dir(SIGNING_TOML, "receipts = [\"failure\"]");
    let p = load_policy(&dir).unwrap_or_else(|d| panic!("{d:#?}"));
    let id = p.gateway.signing.as_ref().expect("signing identity");
    assert_eq!(
        id.mail_address().as_deref(),
        Some("postmaster@justice.aa.example")
    );
    assert_eq!(p.gateway.postmaster, "postmaster@justice.aa.example");
    let aa = p.authority_for_domain("justice.aa.example").unwrap();
    assert!(aa.receipts.contains(ReceiptKind::Failure));
    assert!(!aa.receipts.contains(ReceiptKind::Acceptance));
    let bb = p.authority_for_domain("justice.bb.example").unwrap();
    assert_eq!(bb.receipts, ReceiptKinds::ALL);

    // Without signing keys: receipts off, postmaster defaults to the host.
    let dir = policy_dir("[gateway]\nhostname = \"emla.test\"\n", "receipts = []");
    let p = load_policy(&dir).unwrap_or_else(|d| panic!("{d:#?}"));
    assert!(p.gateway.signing.is_none());
    assert_eq!(p.gateway.postmaster, "postmaster@emla.test");
    let aa = p.authority_for_domain("justice.aa.example").unwrap();
    assert_eq!(aa.receipts, ReceiptKinds::NONE);
}

#[test]
fn policy_signing_problems_are_located() {
    let dir = |gw: &str, aa: &str| policy_dir(gw, aa);
    let problems = |d: &Path| load_policy(d).err().unwrap_or_default();

    let d = dir(
        &SIGNING_TOML.replace("gateway.key", "eve.key"),
        "receipts = [\"acceptance\", \"delivered\"]",
    );
    let got = problems(&d);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].contains("aa-moj.toml:")
            && got[0].ends_with(
                "unknown receipt kind \"delivered\"; expected any of: \"acceptance\", \"delivery\", \"failure\", \"delay\", \"rejection\""
            ),
        "{got:#?}"
    );
    assert!(
        got[1].contains("gateway.toml:5:15: signing_key \"../certs/aa/eve.key\": ")
            && got[1].contains("does not belong to the certificate"),
        "{got:#?}"
    );

    let d = dir(&SIGNING_TOML.replace("gateway.pem", "missing.pem"), "");
    let got = problems(&d);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].ends_with(
            "gateway.toml:4:16: cannot read signing_cert \"../certs/aa/missing.pem\": no such file or directory"
        ),
        "{got:#?}"
    );

    let d = dir(
        "[gateway]\nhostname = \"emla.test\"\nsigning_cert = \"../certs/aa/gateway.pem\"\n",
        "",
    );
    let got = problems(&d);
    assert!(
        got.len() == 1 && got[0].ends_with("gateway.toml:3:16: signing_cert requires signing_key"),
        "{got:#?}"
    );

    // Judged two years on, the gateway certificate has expired.
    let d = dir(SIGNING_TOML, "");
    let later = emla::EvalTime::from_unix(emla::EvalTime::now().unix() + 2 * 365 * 86_400);
    let got: Vec<String> = emla::policy::load(&d, later)
        .err()
        .unwrap_or_default()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        got.len() == 1 && got[0].contains("gateway.toml:4:16: the signing certificate expired at "),
        "{got:#?}"
    );

    // The default postmaster (postmaster@emla.test) is not the certificate's address.
    let d = dir(
        &SIGNING_TOML.replace("postmaster = \"postmaster@justice.aa.example\"\n", ""),
        "",
    );
    let got = problems(&d);
    assert!(
        got.len() == 1
            && got[0].contains("gateway.toml:3:16: the signing certificate does not name the postmaster address \"postmaster@emla.test\""),
        "{got:#?}"
    );
}

// ---------------------------------------------------------------------------
// Receipts, signed and checked by OpenSSL and by emla's own verifier
// ---------------------------------------------------------------------------

use emla::receipts::build::{
    acceptance_receipt, delivery_receipt, non_delivery_notice, DeliveryOutcome, Failure, Receipt,
    ReceiptContext, SignerSummary,
};

const POSTMASTER: &str = "postmaster@justice.aa.example";

/// A context for a message from Bob (BB) that the gateway accepted; the
/// receipts go back to Bob, so AA's postmaster writes to BB (route aa-to-bb).
fn context(subject: &str) -> ReceiptContext {
    ReceiptContext {
        gateway_hostname: "emla.test".into(),
        from_address: POSTMASTER.into(),
        message_id: "01JEMLA0000000000000000001".into(),
        original_message_id: Some("<req-1@mx.justice.bb.example>".into()),
        original_subject: Some(subject.into()),
        sender: BOB.into(),
        recipients: vec![ALICE.into(), EVE.into()],
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        received_at: SystemTime::now() - std::time::Duration::from_secs(60),
        signer: Some(SignerSummary {
            subject: "C=BB, O=Ministry of Justice of BB, CN=Bob Official".into(),
            serial: "1234".into(),
            sha256: "ab".repeat(32),
        }),
        route: "bb-to-aa".into(),
        policy_version: "cd".repeat(32),
        request_kind: None,
        dsn: Default::default(),
        log: None,
    }
}

const ORIGINAL_HEADERS: &[u8] = b"From: bob@justice.bb.example\r\nTo: alice@justice.aa.example\r\n\
Subject: =?UTF-8?Q?Entraide_judiciaire?=\r\nMessage-ID: <req-1@mx.justice.bb.example>\r\n\r\n";

/// One receipt of each kind.
fn receipts(subject: &str) -> Vec<Receipt> {
    let ctx = context(subject);
    let outcome = DeliveryOutcome {
        recipients: vec![ALICE.into()],
        next_hop: "mx.justice.aa.example:25".into(),
        reply_code: 250,
        reply_text: "2.0.0 Ok: queued as 4F2A1".into(),
        queue_id: Some("4F2A1".into()),
        tls: Some("TLSv1.3 TLS_AES_256_GCM_SHA384".into()),
        at: SystemTime::now(),
    };
    let failure = Failure {
        recipients: vec![EVE.into()],
        status: "5.1.1".into(),
        diagnostic: "550 5.1.1 <eve@justice.aa.example>: Recipient address rejected".into(),
        remote_mta: Some("mx.justice.aa.example".into()),
        at: SystemTime::now(),
    };
    vec![
        acceptance_receipt(&ctx).expect("acceptance"),
        delivery_receipt(&ctx, &outcome).expect("delivery"),
        non_delivery_notice(&ctx, &failure, ORIGINAL_HEADERS).expect("dsn"),
    ]
}

/// emla's own verdict on a receipt sent from the postmaster to Bob.
fn emla_verdict(policy: &emla::policy::Policy, msg: &[u8]) -> emla::verify::Verdict {
    let rcpt = vec![BOB.to_string()];
    let env = emla::verify::Envelope {
        mail_from: Some(POSTMASTER),
        rcpt_to: &rcpt,
    };
    emla::verify::verify(
        policy,
        &emla::trust::revocation::RevocationSet::default(),
        msg,
        &env,
        emla::EvalTime::now(),
    )
}

#[test]
fn receipts_verify_with_openssl_and_emla() {
    let dir = policy_dir(SIGNING_TOML, "");
    let policy = load_policy(&dir).unwrap_or_else(|d| panic!("{d:#?}"));
    for (name, _) in IDENTITIES {
        let id = identity(name);
        for subject in [
            "Request for assistance 2026/17",
            "Entraide judiciaire — ÉTAT urgent\r\nBcc: x@y",
        ] {
            for r in receipts(subject) {
                let what = format!("{name} {:?} {subject:?}", r.kind);
                let msg = r.sign(&id);
                let text = String::from_utf8_lossy(&msg).into_owned();
                assert!(!text.replace("\r\n", "").contains('\n'), "{what}: bare LF");
                assert!(!text.contains("\nBcc:"), "{what}: header injection\n{text}");
                assert!(openssl_verifies_smime(&msg), "{what}\n{text}");
                let v = emla_verdict(&policy, &msg);
                assert!(v.accepted(), "{what}: {} {}\n{text}", v.reason, v.detail);

                // The entity alone, as a detached DER signature.
                let sig = id.sign_detached_der(&r.entity, r.at);
                assert!(openssl_verifies_der(&r.entity, &sig), "{what}");

                // One byte changed inside the signed entity breaks both.
                let at = find(&msg, b"Content-Type: text/plain").expect("text part") + 20;
                let bad = tamper(&msg, at);
                assert!(
                    !openssl_verifies_smime(&bad),
                    "{what}: tampered copy verified"
                );
                let v = emla_verdict(&policy, &bad);
                assert!(!v.accepted(), "{what}: emla accepted a tampered copy");
            }
        }
    }
}

#[test]
fn dsn_is_a_multipart_report_with_three_parts() {
    use mail_parser::{MessageParser, MimeHeaders, PartType};
    let id = identity("gateway");
    let dsn = &receipts("Entraide")[2];
    let msg = dsn.sign(&id);
    let parsed = MessageParser::default().parse(&msg).expect("parses");
    let root = parsed.part(0).unwrap();
    let ct = root.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("signed")));
    let PartType::Multipart(signed) = &root.body else {
        panic!("multipart/signed has no parts")
    };
    assert_eq!(signed.len(), 2);
    let report = parsed.part(signed[0]).unwrap();
    let ct = report.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let PartType::Multipart(parts) = &report.body else {
        panic!("multipart/report has no parts")
    };
    let types: Vec<String> = parts
        .iter()
        .map(|&i| {
            let ct = parsed.part(i).unwrap().content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let status = String::from_utf8_lossy(parsed.part(parts[1]).unwrap().contents()).into_owned();
    for field in [
        "Reporting-MTA: dns; emla.test",
        "Arrival-Date: ",
        "Final-Recipient: rfc822; eve@justice.aa.example",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.justice.aa.example",
        "Diagnostic-Code: smtp; 550 5.1.1",
    ] {
        assert!(status.contains(field), "{field:?} missing in\n{status}");
    }
    let headers = String::from_utf8_lossy(parsed.part(parts[2]).unwrap().contents()).into_owned();
    assert!(
        headers.contains("Message-ID: <req-1@mx.justice.bb.example>"),
        "{headers}"
    );
    assert_eq!(parsed.subject(), Some("Undeliverable: Entraide"));
    assert_eq!(
        parsed.in_reply_to().as_text(),
        Some("req-1@mx.justice.bb.example")
    );
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
}

#[test]
fn acceptance_receipt_carries_json() {
    use mail_parser::{MessageParser, MimeHeaders};
    let id = identity("gateway");
    let msg = receipts("Entraide judiciaire — urgent")[0].sign(&id);
    let parsed = MessageParser::default().parse(&msg).expect("parses");
    assert_eq!(
        parsed.subject(),
        Some("Accepted: Entraide judiciaire — urgent")
    );
    let json = parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("json"))
        })
        .expect("a JSON part");
    let v: serde_json::Value = serde_json::from_slice(json.contents()).expect("valid JSON");
    assert_eq!(v["type"], "acceptance");
    assert_eq!(v["message_id"], "01JEMLA0000000000000000001");
    assert_eq!(v["recipients"][1], EVE);
    assert_eq!(v["signer"]["serial"], "1234");
    assert_eq!(v["route"], "bb-to-aa");
}
