//! End-to-end tests of `emla verify` against a generated PKI and messages
//! signed by independent tools (OpenSSL `smime`/`cms`, Python `cryptography`).
//!
//! Needs `openssl` and `python3` with `cryptography` (see `tests/support`).

mod support;

use support::*;

// ---------------------------------------------------------------------------
// Fixture sanity: the signed messages verify with OpenSSL itself, and the
// tampering helpers really break them. These do not involve emla.
// ---------------------------------------------------------------------------

#[test]
fn fixtures_verify_with_openssl() {
    for tool in Tool::ALL {
        let m = alice_to_bob(tool);
        assert!(openssl_verifies(&m, "aa"), "{tool:?} fixture must verify");
    }
    let raw = with_headers(
        ALICE,
        &[BOB],
        &sign(Tool::SmimeDetached, "aa", "alice", &text_body(), &[]),
    );
    assert!(openssl_verifies(&raw, "aa"), "LF fixture must verify");
    assert!(
        openssl_verifies(&crlf(&raw), "aa"),
        "CRLF fixture must verify"
    );
}

#[test]
fn fixtures_tampering_breaks_openssl() {
    let m = alice_to_bob(Tool::SmimeDetached);
    assert!(openssl_verifies(&m, "aa"));
    assert!(!openssl_verifies(
        &replace_once(&m, b"quick", b"quack"),
        "aa"
    ));
    assert!(!openssl_verifies(&flip_signature_bit(&m), "aa"));
    assert!(!openssl_verifies(&tamper_signing_time(&m), "aa"));
    assert!(!openssl_verifies(
        &replace_once(
            &m,
            b"Content-Transfer-Encoding: 7bit\r\n",
            b"Content-Transfer-Encoding: 7bit\r\nX-Injected: yes\r\n"
        ),
        "aa"
    ));
    // Re-encoding without a change keeps it valid (the helper is faithful).
    assert!(openssl_verifies(&edit_cms(&m, |_| {}), "aa"));
    for tool in [Tool::CmsOpaque, Tool::PyDetached, Tool::PyOpaque] {
        let m = alice_to_bob(tool);
        assert!(openssl_verifies(&edit_cms(&m, |_| {}), "aa"), "{tool:?}");
        assert!(!openssl_verifies(&flip_signature_bit(&m), "aa"), "{tool:?}");
        assert!(
            !openssl_verifies(&tamper_signing_time(&m), "aa"),
            "{tool:?}"
        );
    }
    let eve = mail(Tool::CmsDetached, "aa", "eve", EVE, &[BOB]);
    assert!(openssl_verifies(&eve, "aa"));
    assert!(!openssl_verifies(&flip_signature_bit(&eve), "aa"));
}

// ---------------------------------------------------------------------------
// Accepted messages
// ---------------------------------------------------------------------------

fn accept_alice(tool: Tool) -> serde_json::Value {
    Verify::new(alice_to_bob(tool)).run().assert_accept()
}

#[test]
fn accept_openssl_smime_detached() {
    let v = accept_alice(Tool::SmimeDetached);
    assert_eq!(v["authority"], "aa-moj", "{v:#}");
    let signers = v["signers"].as_array().expect("signers array");
    assert_eq!(signers.len(), 1, "{v:#}");
    let s = &signers[0];
    assert!(
        s["emails"].as_array().unwrap().iter().any(|e| e == ALICE),
        "{v:#}"
    );
    assert_eq!(s["authority"], "aa-moj", "{v:#}");
    assert_eq!(s["chain"].as_array().map(Vec::len), Some(3), "{v:#}");
    assert!(
        s["key_algorithm"].as_str().unwrap().contains("rsa"),
        "{v:#}"
    );
    assert!(
        s["signature_algorithm"]
            .as_str()
            .unwrap()
            .contains("sha256"),
        "{v:#}"
    );
    assert_eq!(s["sha256"].as_str().map(str::len), Some(64), "{v:#}");
    for k in ["subject", "issuer", "serial"] {
        assert!(s[k].is_string(), "{k}: {v:#}");
    }
    let r = &v["recipients"][0];
    assert_eq!(r["recipient"], BOB, "{v:#}");
    assert_eq!(r["route"], "aa-to-bb", "{v:#}");
    assert_eq!(r["authority"], "bb-moj", "{v:#}");
}

/// openssl smime (opaque), openssl cms (detached, opaque, opaque streamed
/// BER) and Python `cryptography` (detached, opaque).
#[test]
fn accept_every_other_signing_tool() {
    // openssl smime detached: accept_openssl_smime_detached.
    for tool in &Tool::ALL[1..] {
        Verify::new(alice_to_bob(*tool))
            .run()
            .case(format!("{tool:?}"))
            .assert_accept();
    }
}

/// OpenSSL's own output, untouched: LF line endings outside the signed
/// content, CRLF inside it (as a file saved by a tool, not SMTP DATA). The
/// file is judged as DATA, as the gateway would judge it: bare LF is
/// smuggling; the same message with CRLF throughout is accepted.
#[test]
fn lf_files_are_refused_as_the_gateway_would_and_crlf_accepted() {
    for tool in [Tool::SmimeDetached, Tool::SmimeOpaque] {
        let m = with_headers(ALICE, &[BOB], &sign(tool, "aa", "alice", &text_body(), &[]));
        let lf = String::from_utf8(m.clone()).unwrap().replace("\r\n", "\n");
        let v = Verify::new(lf.into_bytes())
            .run()
            .assert_reject("smuggling");
        assert_eq!(
            v["detail"], "bare LF received (line 1); lines must end with CRLF, as in SMTP DATA",
            "{tool:?}: {v:#}"
        );
        Verify::new(crlf(&m)).run().assert_accept();
    }
}

#[test]
fn accept_eve_ecdsa() {
    let m = mail(Tool::SmimeDetached, "aa", "eve", EVE, &[BOB]);
    let v = Verify::new(m).mail_from(Some(EVE)).run().assert_accept();
    assert!(
        v["signers"][0]["key_algorithm"]
            .as_str()
            .unwrap_or("")
            .contains("ecdsa"),
        "{v:#}"
    );
}

#[test]
fn accept_eve_ecdsa_python() {
    let m = mail(Tool::PyDetached, "aa", "eve", EVE, &[BOB]);
    Verify::new(m).mail_from(Some(EVE)).run().assert_accept();
}

#[test]
fn accept_bob_to_alice() {
    let m = mail(Tool::CmsDetached, "bb", "bob", BOB, &[ALICE]);
    let v = Verify::new(m)
        .mail_from(Some(BOB))
        .rcpt(&[ALICE])
        .run()
        .assert_accept();
    assert_eq!(v["authority"], "bb-moj", "{v:#}");
    assert_eq!(v["recipients"][0]["route"], "bb-to-aa", "{v:#}");
}

#[test]
fn accept_bea_ecdsa_to_alice() {
    let m = mail(Tool::SmimeOpaque, "bb", "bea", BEA, &[ALICE]);
    Verify::new(m)
        .mail_from(Some(BEA))
        .rcpt(&[ALICE])
        .run()
        .assert_accept();
}

#[test]
fn accept_from_with_display_name() {
    let m = mail(
        Tool::SmimeDetached,
        "aa",
        "alice",
        "\"Alice Official\" <alice@justice.aa.example>",
        &[BOB],
    );
    Verify::new(m).run().assert_accept();
}

#[test]
fn accept_two_recipients() {
    let m = mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[BOB, BEA]);
    let v = Verify::new(m).rcpt(&[BOB, BEA]).run().assert_accept();
    assert_eq!(v["recipients"].as_array().map(Vec::len), Some(2), "{v:#}");
}

#[test]
fn accept_without_envelope_sender() {
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .mail_from(None)
        .run()
        .assert_accept();
}

// ---------------------------------------------------------------------------
// Not signed / not parseable
// ---------------------------------------------------------------------------

#[test]
fn reject_unsigned_plain_text() {
    let m = with_headers(ALICE, &[BOB], &text_body());
    let m = [b"MIME-Version: 1.0\r\n".as_slice(), &m].concat();
    Verify::new(m).run().assert_reject("unsigned");
}

#[test]
fn reject_encrypted_only() {
    let pki = pki();
    let input = pki.write_scratch("body", &text_body());
    let out = pki.scratch_file("enc");
    run_ok(
        std::process::Command::new(support::openssl())
            .args(["smime", "-encrypt", "-aes256", "-in"])
            .arg(&input)
            .arg("-out")
            .arg(&out)
            .arg(pki.cert("bb", "bob")),
    );
    let m = crlf(&with_headers(ALICE, &[BOB], &std::fs::read(&out).unwrap()));
    // Encrypted to Bob, not to a gateway certificate: it cannot be judged
    // (tests/decrypt.rs: encrypted to the gateway but not signed is unsigned).
    Verify::new(m).run().assert_reject("not-for-gateway");
}

#[test]
fn reject_pgp_signed() {
    let mut entity = b"MIME-Version: 1.0\r\n\
        Content-Type: multipart/signed; micalg=pgp-sha256;\r\n \
        protocol=\"application/pgp-signature\"; boundary=\"pgp-b\"\r\n\
        \r\n\
        --pgp-b\r\n"
        .to_vec();
    entity.extend_from_slice(&text_body());
    entity.extend_from_slice(
        b"\r\n--pgp-b\r\n\
        Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\
        \r\n\
        -----BEGIN PGP SIGNATURE-----\r\n\
        \r\n\
        iHUEARYIAB0WIQTpZ8m2bM1nKrr0iD1u5D3w9bbbbQUCZ0000AAKCRBu5D3w9bbb\r\n\
        bQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\
        =AAAA\r\n\
        -----END PGP SIGNATURE-----\r\n\
        \r\n\
        --pgp-b--\r\n",
    );
    let m = with_headers(ALICE, &[BOB], &entity);
    Verify::new(m).run().assert_reject("unsigned");
}

/// A signature part (detached) or signed-data (opaque) that is no CMS.
#[test]
fn reject_garbage_cms() {
    let garbage: [(Tool, &[u8]); 2] = [
        (
            Tool::SmimeDetached,
            b"this is not a CMS SignedData object at all",
        ),
        (Tool::SmimeOpaque, &[0x30, 0x03, 0x02, 0x01]),
    ];
    for (tool, cms) in garbage {
        let m = replace_cms(&alice_to_bob(tool), cms);
        Verify::new(m)
            .run()
            .case(format!("{tool:?}"))
            .assert_reject("malformed");
    }
}

// ---------------------------------------------------------------------------
// Integrity
// ---------------------------------------------------------------------------

#[test]
fn reject_tampered_body_byte() {
    for tool in [Tool::SmimeDetached, Tool::CmsDetached, Tool::PyDetached] {
        let m = replace_once(&alice_to_bob(tool), b"quick", b"quack");
        Verify::new(m).run().assert_reject("digest-mismatch");
    }
}

#[test]
fn reject_tampered_header_inside_signed_part() {
    let m = replace_once(
        &alice_to_bob(Tool::SmimeDetached),
        b"Content-Transfer-Encoding: 7bit\r\n",
        b"Content-Transfer-Encoding: 7bit\r\nX-Injected: yes\r\n",
    );
    Verify::new(m).run().assert_reject("digest-mismatch");
}

#[test]
fn reject_tampered_signature_value() {
    for tool in [Tool::SmimeDetached, Tool::CmsOpaque, Tool::PyDetached] {
        let m = flip_signature_bit(&alice_to_bob(tool));
        Verify::new(m).run().assert_reject("bad-signature");
    }
}

#[test]
fn reject_tampered_signature_value_ecdsa() {
    let m = flip_signature_bit(&mail(Tool::CmsDetached, "aa", "eve", EVE, &[BOB]));
    Verify::new(m)
        .mail_from(Some(EVE))
        .run()
        .assert_reject("bad-signature");
}

#[test]
fn reject_tampered_signed_attributes() {
    let m = tamper_signing_time(&alice_to_bob(Tool::SmimeDetached));
    Verify::new(m).run().assert_reject("bad-signature");
}

/// Without signed attributes the signature covers the content itself, so a
/// changed body is a bad signature, not a digest mismatch.
#[test]
fn reject_tampered_body_without_signed_attributes() {
    let signed = sign(Tool::CmsDetached, "aa", "alice", &text_body(), &["-noattr"]);
    let m = crlf(&with_headers(ALICE, &[BOB], &signed));
    assert!(openssl_verifies(&m, "aa"), "-noattr fixture must verify");
    Verify::new(m.clone()).run().assert_accept();
    let m = replace_once(&m, b"quick", b"quack");
    Verify::new(m).run().assert_reject("bad-signature");
}

// ---------------------------------------------------------------------------
// Certificate validity, revocation, usage
// ---------------------------------------------------------------------------

/// `m` from `addr`, judged under the policy directory `policy`.
fn verify_from(addr: &str, m: Vec<u8>, policy: &str) -> Outcome {
    Verify::new(m)
        .mail_from(Some(addr))
        .policy(pki().policy_named(policy))
        .run()
        .case(format!("{addr} under {policy}"))
}

/// AA's official `certs/aa/NAME` signs to Bob (openssl smime), under the
/// normal policy.
fn aa_official(name: &str) -> Outcome {
    aa_official_policy(name, "policy")
}

fn aa_official_policy(name: &str, policy: &str) -> Outcome {
    let addr = format!("{name}@justice.aa.example");
    let m = mail(Tool::SmimeDetached, "aa", name, &addr, &[BOB]);
    verify_from(&addr, m, policy)
}

/// The verdict on each of AA's officials ("ok": accepted). RFC 8550 §4.4: a
/// signer certificate without extKeyUsage is acceptable.
const OFFICIALS: &[(&str, &str)] = &[
    ("expired", "expired"),
    ("notyet", "not-yet-valid"),
    ("revoked", "revoked"),
    ("wrongeku", "wrong-usage"),
    ("noeku", "ok"),
    ("anyeku", "ok"),
    ("wrongku", "wrong-usage"),
    ("weakrsa", "weak-algorithm"),
    ("sha1", "weak-algorithm"),
];

#[test]
fn each_official_gets_its_verdict() {
    for &(name, reason) in OFFICIALS {
        aa_official(name).assert_verdict(reason);
    }
}

#[test]
fn accept_not_yet_valid_at_later_time() {
    // notyet is valid from now+14d; the CRLs are fresh until now+30d.
    let addr = "notyet@justice.aa.example";
    let m = mail(Tool::SmimeDetached, "aa", "notyet", addr, &[BOB]);
    Verify::new(m)
        .mail_from(Some(addr))
        .at(&days_from_now(20))
        .run()
        .assert_accept();
}

#[test]
fn reject_signing_time_beyond_skew() {
    // Judged an hour before it was signed: the certificate is already valid
    // (from yesterday) but signingTime lies beyond the 300 s skew.
    let hour_ago = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let v = Verify::new(alice_to_bob(Tool::SmimeDetached))
        .at(&hour_ago)
        .run()
        .assert_reject("not-yet-valid");
    assert!(v["detail"].as_str().unwrap().contains("signingTime"), "{v}");
}

#[test]
fn accept_signing_time_within_skew() {
    let two_minutes_ago = (time::OffsetDateTime::now_utc() - time::Duration::minutes(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .at(&two_minutes_ago)
        .run()
        .assert_accept();
}

#[test]
fn reject_alice_two_years_ahead() {
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .at(&days_from_now(730))
        .run()
        .assert_reject("expired");
}

/// AA's issuing CRL past its nextUpdate, or missing.
#[test]
fn reject_stale_or_missing_crl() {
    for policy in ["policy-stale", "policy-nocrl"] {
        verify_from(ALICE, alice_to_bob(Tool::SmimeDetached), policy)
            .assert_reject("crl-unavailable");
    }
}

/// Only the root is an anchor; the issuing CA comes with each message and
/// its CRL is a policy file of an unconfigured issuer.
#[test]
fn roots_only_policy_accepts_what_should_pass_and_refuses_the_rest() {
    let roots = pki().policy_named("policy-roots");
    for tool in Tool::ALL {
        Verify::new(alice_to_bob(tool))
            .policy(roots.clone())
            .run()
            .assert_accept();
    }
    for name in ["eve", "noeku", "anyeku"] {
        aa_official_policy(name, "policy-roots").assert_accept();
    }

    let v = aa_official_policy("revoked", "policy-roots").assert_reject("revoked");
    assert!(
        v["detail"].as_str().unwrap().contains("Issuing CA"),
        "revoked by the issuing CA's CRL: {v:#}"
    );
    aa_official_policy("expired", "policy-roots").assert_reject("expired");
    // Each certificate of the path names the CRL that settled it.
    let v = Verify::new(alice_to_bob(Tool::CmsDetached))
        .policy(roots.clone())
        .run()
        .assert_accept();
    let ev = v["revocation"].as_array().expect("revocation evidence");
    assert_eq!(ev.len(), 2, "{v:#}");
    assert!(ev.iter().all(|e| e["method"] == "crl"), "{v:#}");
    assert!(
        ev[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("issuing.crl.pem"),
        "{v:#}"
    );
    assert!(
        ev[1]["source"].as_str().unwrap().ends_with("root.crl.pem"),
        "{v:#}"
    );
}

#[test]
fn reject_no_eku_when_required() {
    aa_official_policy("noeku", "policy-strict-eku")
        .assert_reject_saying("wrong-usage", &["has no extKeyUsage", "require_email_eku"]);
}

#[test]
fn reject_any_eku_when_required() {
    let v = aa_official_policy("anyeku", "policy-strict-eku").assert_reject("wrong-usage");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("anyExtendedKeyUsage"),
        "{v}"
    );
    aa_official_policy("alice", "policy-strict-eku").assert_accept();
}

#[test]
fn reject_wrong_eku_detail_is_a_sentence() {
    let v = aa_official("wrongeku").assert_reject("wrong-usage");
    let d = v["detail"].as_str().unwrap();
    assert!(d.contains("serverAuth (1.3.6.1.5.5.7.3.1)"), "{d}");
    assert!(!d.contains('{') && !d.contains("Context"), "{d}");
}

#[test]
fn reject_sha1_message_digest() {
    let signed = sign(
        Tool::SmimeDetached,
        "aa",
        "alice",
        &text_body(),
        &["-md", "sha1"],
    );
    let m = crlf(&with_headers(ALICE, &[BOB], &signed));
    Verify::new(m).run().assert_reject("weak-algorithm");
}

// ---------------------------------------------------------------------------
// Algorithms: RSA-PSS, mismatched signature algorithms, version 1 anchors
// ---------------------------------------------------------------------------

/// Like [`aa_official_policy`], signed with `openssl cms` and `extra` options.
fn aa_signed(name: &str, policy: &str, extra: &[&str]) -> Outcome {
    let addr = format!("{name}@justice.aa.example");
    let signed = sign(Tool::CmsDetached, "aa", name, &text_body(), extra);
    verify_from(&addr, crlf(&with_headers(&addr, &[BOB], &signed)), policy)
}

/// An id-RSASSA-PSS key restricted to SHA-256 (RFC 4055 parameters):
/// OpenSSL signs with RSASSA-PSS, SHA-256, the key's 32-byte salt.
#[test]
fn accept_rsa_pss_key_with_sha256_parameters() {
    let v = aa_signed("pss256", "policy", &["-keyopt", "rsa_padding_mode:pss"]).assert_accept();
    assert_eq!(v["signers"][0]["key_algorithm"], "rsa-pss-2048", "{v:#}");
    assert_eq!(
        v["signers"][0]["signature_algorithm"], "sha256-rsa-pss",
        "{v:#}"
    );
}

/// RSASSA-PSS with the salt as long as the hash: from an id-RSASSA-PSS key
/// without parameters (`pss`, SHA-256 and SHA-384), and as SignerInfos of
/// an ordinary (rsaEncryption) RSA key (`alice`, SHA-256 and SHA-512).
#[test]
fn accept_rsa_pss_signatures() {
    let cases = [
        ("pss", "sha256", Some("rsa-pss-2048")),
        ("pss", "sha384", Some("rsa-pss-2048")),
        ("alice", "sha256", None),
        ("alice", "sha512", None),
    ];
    for (name, md, key) in cases {
        let opts = [
            "-md",
            md,
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:digest",
        ];
        let v = aa_signed(name, "policy", &opts).assert_accept();
        let s = &v["signers"][0];
        if let Some(key) = key {
            assert_eq!(s["key_algorithm"], key, "{name} {md}: {v:#}");
        }
        assert_eq!(
            s["signature_algorithm"],
            format!("{md}-rsa-pss"),
            "{name} {md}: {v:#}"
        );
    }
}

/// OpenSSL's default RSASSA-PSS salt is the longest possible (222 bytes for
/// RSA-2048 with SHA-256); ring verifies only a salt as long as the hash.
/// The refusal says so instead of calling the signature bad.
#[test]
fn rsa_pss_with_openssl_default_salt_is_refused_with_the_reason() {
    aa_signed("alice", "policy", &["-keyopt", "rsa_padding_mode:pss"]).assert_reject_saying(
        "weak-algorithm",
        &["222-byte salt", "rsa_pss_saltlen:digest"],
    );
}

/// An issuing CA with an id-RSASSA-PSS key (SHA-256 parameters) in the
/// chain: its RSASSA-PSS signatures on the official's certificate and on its
/// CRL verify.
#[test]
fn accept_chain_through_rsa_pss_ca() {
    let v = aa_signed("pssca", "policy-alg", &[]).assert_accept();
    let chain = v["signers"][0]["chain"].as_array().unwrap();
    assert!(
        chain[1].as_str().unwrap().contains("RSA-PSS Issuing CA"),
        "{v:#}"
    );
    // Without the RSA-PSS CA configured (nor sent), there is no path.
    aa_signed("pssca", "policy", &[]).assert_reject("untrusted-chain");
}

/// A message signed under a self-signed version 1 root is accepted when the
/// root is a trust anchor.
#[test]
fn accept_under_version_1_root() {
    let v = aa_signed("v1official", "policy-alg", &[]).assert_accept();
    let chain = v["signers"][0]["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{v:#}");
    assert!(
        chain[1].as_str().unwrap().contains("Legacy V1 Root"),
        "{v:#}"
    );
    let v = aa_signed("v1official", "policy", &[]).assert_reject("untrusted-chain");
    let d = v["detail"].as_str().unwrap();
    assert!(
        !d.contains("UnknownIssuer") && d.contains("authority aa-moj"),
        "{d}"
    );
}

/// sha256WithRSAEncryption AlgorithmIdentifier (with NULL parameters).
const SHA256_WITH_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// rsaEncryption AlgorithmIdentifier (with NULL parameters).
const RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// ecdsa-with-SHA256 AlgorithmIdentifier.
const ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// An RSA signatureAlgorithm in the SignerInfo of an ECDSA key: the
/// signature cannot be the key's, so it is a bad signature, not a weak one.
#[test]
fn reject_rsa_signature_algorithm_for_ecdsa_key() {
    let m = mail(Tool::CmsDetached, "aa", "eve", EVE, &[BOB]);
    let m = edit_cms(&m, |der| {
        replace_last_tlv(der, ECDSA_SHA256, SHA256_WITH_RSA)
    });
    Verify::new(m)
        .mail_from(Some(EVE))
        .run()
        .assert_reject_saying("bad-signature", &["sha256WithRSAEncryption", "ecdsa-p256"]);
}

/// And an ECDSA one for an RSA key.
#[test]
fn reject_ecdsa_signature_algorithm_for_rsa_key() {
    let m = alice_to_bob(Tool::CmsDetached);
    let m = edit_cms(&m, |der| {
        replace_last_tlv(der, RSA_ENCRYPTION, ECDSA_SHA256)
    });
    Verify::new(m)
        .run()
        .assert_reject_saying("bad-signature", &["ecdsa-with-SHA256", "rsa-2048"]);
}

/// A SignerInfo naming rsaEncryption (PKCS#1 v1.5) for an id-RSASSA-PSS
/// key, which may only make RSASSA-PSS signatures: OpenSSL 3.0 writes this
/// for such keys unless told `-keyopt rsa_padding_mode:pss`.
#[test]
fn reject_pkcs1_signature_algorithm_for_rsa_pss_key() {
    aa_signed("pss256", "policy", &[])
        .assert_reject_saying("bad-signature", &["rsaEncryption", "rsa-pss-2048"]);
}

// ---------------------------------------------------------------------------
// Trust: which authority may sign for which domain
// ---------------------------------------------------------------------------

/// Mail From: alice, signed by others: an impostor under a root no policy
/// trusts; BB's (trusted) CA's certificate for alice@justice.aa.example
/// (cross-country impersonation); and (see "Sender binding")
/// mallory@justice.aa.example.
#[test]
fn reject_signers_who_may_not_sign_for_alice() {
    let signers = [
        ("xx", "impostor", "untrusted-chain"),
        ("bb", "bbsigns", "untrusted-chain"),
        ("aa", "wrongemail", "sender-mismatch"),
    ];
    for (cc, name, reason) in signers {
        let m = mail(Tool::SmimeDetached, cc, name, ALICE, &[BOB]);
        Verify::new(m).run().case(name).assert_reject(reason);
    }
}

// ---------------------------------------------------------------------------
// Sender binding
// ---------------------------------------------------------------------------

#[test]
fn reject_two_from_addresses() {
    let m = mail(
        Tool::SmimeDetached,
        "aa",
        "alice",
        "alice@justice.aa.example, eve@justice.aa.example",
        &[BOB],
    );
    Verify::new(m).run().assert_reject("sender-mismatch");
}

#[test]
fn reject_envelope_sender_of_other_authority() {
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .mail_from(Some(BEA))
        .run()
        .assert_reject("sender-mismatch");
}

#[test]
fn reject_envelope_sender_unknown_domain() {
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .mail_from(Some("alice@evil.example"))
        .run()
        .assert_reject("unauthorized-domain");
}

// ---------------------------------------------------------------------------
// Routing and limits
// ---------------------------------------------------------------------------

#[test]
fn reject_recipient_unknown_domain() {
    let m = mail(
        Tool::SmimeDetached,
        "aa",
        "alice",
        ALICE,
        &["carol@elsewhere.example"],
    );
    Verify::new(m)
        .rcpt(&["carol@elsewhere.example"])
        .run()
        .assert_reject("unauthorized-domain");
}

#[test]
fn reject_internal_route() {
    let m = mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[EVE]);
    Verify::new(m)
        .rcpt(&[EVE])
        .run()
        .assert_reject("route-denied");
}

#[test]
fn reject_too_many_recipients() {
    let rcpt: Vec<String> = (1..=6)
        .map(|i| format!("official{i}@justice.bb.example"))
        .collect();
    let rcpt: Vec<&str> = rcpt.iter().map(String::as_str).collect();
    let m = mail(Tool::SmimeDetached, "aa", "alice", ALICE, &rcpt);
    Verify::new(m)
        .rcpt(&rcpt)
        .run()
        .assert_reject("too-many-recipients");
}

#[test]
fn reject_too_large() {
    let signed = sign(
        Tool::SmimeDetached,
        "aa",
        "alice",
        &big_body(1024 * 1024 + 4096),
        &[],
    );
    let m = crlf(&with_headers(ALICE, &[BOB], &signed));
    assert!(m.len() > 1024 * 1024);
    Verify::new(m).run().assert_reject("too-large");
}

#[test]
fn reject_too_deep() {
    let signed = sign(Tool::SmimeDetached, "aa", "alice", &nested_body(10), &[]);
    let m = crlf(&with_headers(ALICE, &[BOB], &signed));
    assert!(openssl_verifies(&m, "aa"), "nested fixture must verify");
    Verify::new(m).run().assert_reject("too-deep");
}

#[test]
fn accept_moderately_nested() {
    // multipart/signed + 3 multipart/mixed + text/plain: well under 8.
    let signed = sign(Tool::SmimeDetached, "aa", "alice", &nested_body(3), &[]);
    let m = crlf(&with_headers(ALICE, &[BOB], &signed));
    Verify::new(m).run().assert_accept();
}

/// A signed message inside another signature: the outermost is judged. A
/// forwarded, already-signed request from BB inside AA's own signature
/// (alice, AA) is accepted; a valid inner signature by alice cannot vouch for
/// an impostor's outer one.
#[test]
fn nested_signatures_are_judged_by_the_outermost() {
    let cases = [
        ((Tool::CmsDetached, "bb", "bob"), ("aa", "alice"), "ok"),
        (
            (Tool::SmimeDetached, "aa", "alice"),
            ("xx", "impostor"),
            "untrusted-chain",
        ),
    ];
    for ((tool, cc, name), (outer_cc, outer_name), reason) in cases {
        let inner = sign(tool, cc, name, &text_body(), &[]);
        let outer = sign(
            Tool::SmimeDetached,
            outer_cc,
            outer_name,
            &crlf(&inner),
            &[],
        );
        let m = crlf(&with_headers(ALICE, &[BOB], &outer));
        Verify::new(m).run().case(outer_name).assert_verdict(reason);
    }
}

// ---------------------------------------------------------------------------
// CLI contract
// ---------------------------------------------------------------------------

/// A bad `--at` value (usage error) and a missing policy directory
/// (configuration error) exit 2.
#[test]
fn usage_and_config_errors_exit_2() {
    let alice = || Verify::new(alice_to_bob(Tool::SmimeDetached));
    for (case, v) in [
        ("bad --at", alice().at("next tuesday")),
        (
            "no policy directory",
            alice().policy(pki().dir.join("no-such-policy")),
        ),
    ] {
        let o = v.run().case(case);
        assert_eq!(o.code, Some(2), "{o:?}");
    }
}

#[test]
fn human_output_accept() {
    let o = Verify::new(alice_to_bob(Tool::SmimeDetached)).text().run();
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.starts_with("ACCEPT ok"), "{o:?}");
}

#[test]
fn human_output_reject() {
    let m = with_headers(ALICE, &[BOB], &text_body());
    let o = Verify::new(m).text().run();
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stdout.starts_with("REJECT unsigned"), "{o:?}");
}
