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

#[test]
fn accept_openssl_smime_opaque() {
    accept_alice(Tool::SmimeOpaque);
}

#[test]
fn accept_openssl_cms_detached() {
    accept_alice(Tool::CmsDetached);
}

#[test]
fn accept_openssl_cms_opaque() {
    accept_alice(Tool::CmsOpaque);
}

#[test]
fn accept_openssl_cms_opaque_streamed_ber() {
    accept_alice(Tool::CmsOpaqueStream);
}

#[test]
fn accept_python_detached() {
    accept_alice(Tool::PyDetached);
}

#[test]
fn accept_python_opaque() {
    accept_alice(Tool::PyOpaque);
}

/// OpenSSL's own output, untouched: LF line endings outside the signed
/// content, CRLF inside it (as a file saved by a tool, not SMTP DATA).
#[test]
fn accept_openssl_lf_file() {
    let m = with_headers(
        ALICE,
        &[BOB],
        &sign(Tool::SmimeDetached, "aa", "alice", &text_body(), &[]),
    );
    let m = String::from_utf8(m).unwrap().replace("\r\n", "\n");
    Verify::new(m.into_bytes()).run().assert_accept();
}

#[test]
fn accept_openssl_opaque_lf_file() {
    let m = with_headers(
        ALICE,
        &[BOB],
        &sign(Tool::SmimeOpaque, "aa", "alice", &text_body(), &[]),
    );
    let m = String::from_utf8(m).unwrap().replace("\r\n", "\n");
    Verify::new(m.into_bytes()).run().assert_accept();
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
    Verify::new(m).run().assert_reject("unsigned");
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

#[test]
fn reject_garbage_signature_part() {
    let m = replace_cms(
        &alice_to_bob(Tool::SmimeDetached),
        b"this is not a CMS SignedData object at all",
    );
    Verify::new(m).run().assert_reject("malformed");
}

#[test]
fn reject_garbage_opaque() {
    let m = replace_cms(&alice_to_bob(Tool::SmimeOpaque), &[0x30, 0x03, 0x02, 0x01]);
    Verify::new(m).run().assert_reject("malformed");
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

fn aa_official(name: &str) -> Outcome {
    let addr = format!("{name}@justice.aa.example");
    let m = mail(Tool::SmimeDetached, "aa", name, &addr, &[BOB]);
    Verify::new(m).mail_from(Some(&addr)).run()
}

#[test]
fn reject_expired() {
    aa_official("expired").assert_reject("expired");
}

#[test]
fn reject_not_yet_valid() {
    aa_official("notyet").assert_reject("not-yet-valid");
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

#[test]
fn reject_revoked() {
    aa_official("revoked").assert_reject("revoked");
}

#[test]
fn reject_stale_crl() {
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .policy(pki().policy_named("policy-stale"))
        .run()
        .assert_reject("crl-unavailable");
}

#[test]
fn reject_missing_crl() {
    Verify::new(alice_to_bob(Tool::SmimeDetached))
        .policy(pki().policy_named("policy-nocrl"))
        .run()
        .assert_reject("crl-unavailable");
}

#[test]
fn reject_wrong_eku() {
    aa_official("wrongeku").assert_reject("wrong-usage");
}

#[test]
fn reject_no_eku() {
    aa_official("noeku").assert_reject("wrong-usage");
}

#[test]
fn reject_wrong_key_usage() {
    aa_official("wrongku").assert_reject("wrong-usage");
}

#[test]
fn reject_weak_rsa_key() {
    aa_official("weakrsa").assert_reject("weak-algorithm");
}

#[test]
fn reject_sha1_certificate() {
    aa_official("sha1").assert_reject("weak-algorithm");
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
// Trust: which authority may sign for which domain
// ---------------------------------------------------------------------------

#[test]
fn reject_foreign_root_impostor() {
    let m = mail(Tool::SmimeDetached, "xx", "impostor", ALICE, &[BOB]);
    Verify::new(m).run().assert_reject("untrusted-chain");
}

#[test]
fn reject_cross_country_impersonation() {
    // BB's (trusted) CA issued a certificate for alice@justice.aa.example.
    let m = mail(Tool::SmimeDetached, "bb", "bbsigns", ALICE, &[BOB]);
    Verify::new(m).run().assert_reject("untrusted-chain");
}

// ---------------------------------------------------------------------------
// Sender binding
// ---------------------------------------------------------------------------

#[test]
fn reject_signer_email_differs_from_from() {
    // mallory@justice.aa.example signs mail From: alice.
    let m = mail(Tool::SmimeDetached, "aa", "wrongemail", ALICE, &[BOB]);
    Verify::new(m).run().assert_reject("sender-mismatch");
}

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

#[test]
fn accept_nested_signature_judges_the_outermost() {
    // A forwarded, already-signed request from BB inside AA's own signature:
    // the outer signature (alice, AA) is the one judged.
    let inner = sign(Tool::CmsDetached, "bb", "bob", &text_body(), &[]);
    let outer = sign(Tool::SmimeDetached, "aa", "alice", &crlf(&inner), &[]);
    let m = crlf(&with_headers(ALICE, &[BOB], &outer));
    Verify::new(m).run().assert_accept();
}

#[test]
fn reject_nested_signature_when_the_outermost_is_untrusted() {
    // A valid inner signature by alice cannot vouch for an impostor's outer one.
    let inner = sign(Tool::SmimeDetached, "aa", "alice", &text_body(), &[]);
    let outer = sign(Tool::SmimeDetached, "xx", "impostor", &crlf(&inner), &[]);
    let m = crlf(&with_headers(ALICE, &[BOB], &outer));
    Verify::new(m).run().assert_reject("untrusted-chain");
}

// ---------------------------------------------------------------------------
// CLI contract
// ---------------------------------------------------------------------------

#[test]
fn bad_at_value_is_usage_error() {
    let o = Verify::new(alice_to_bob(Tool::SmimeDetached))
        .at("next tuesday")
        .run();
    assert_eq!(o.code, Some(2), "{o:?}");
}

#[test]
fn missing_policy_dir_is_config_error() {
    let o = Verify::new(alice_to_bob(Tool::SmimeDetached))
        .policy(pki().dir.join("no-such-policy"))
        .run();
    assert_eq!(o.code, Some(2), "{o:?}");
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
