//! End-to-end tests of the presentation and parser-differential attacks
//! (issue 11, "Johnny, you are fired"): what a mail client could show
//! differently from what was signed is refused over SMTP, and `emla verify`
//! judges the same bytes the same way.
//!
//! Each test starts `emla serve` on loopback and sends with a raw socket
//! client (or swaks), then runs `emla verify` on the same bytes.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use smtp::*;
use support::*;

/// A CRLF message from Alice to Bob: `body` signed by her with `tool`.
fn signed_body(tool: Tool, body: &[u8]) -> Vec<u8> {
    crlf(&with_headers(
        ALICE,
        &[BOB],
        &sign(tool, "aa", "alice", body, &[]),
    ))
}

/// `msg` is refused over SMTP with `reply` (`550 5.6.0 malformed`), the
/// connection staying usable, and by `emla verify` with the same reason;
/// both details contain `detail`.
fn refused(srv: &Server, msg: &[u8], reply: &str, detail: &str) {
    let (r, t) = send(srv.port, ALICE, &[BOB], msg);
    let line = r.last();
    assert!(
        line.starts_with(&format!("{reply}: ")),
        "want {reply}:\n{t}"
    );
    assert!(line.contains(detail), "want {detail:?} in the reply:\n{t}");
    let reason = reply.split(' ').nth(2).unwrap();
    let v = Verify::new(msg.to_vec()).run().assert_reject(reason);
    let d = v["detail"].as_str().unwrap();
    assert!(d.contains(detail), "emla verify: {d}");
}

/// `msg` is accepted over SMTP and by `emla verify`.
fn accepted(srv: &Server, msg: &[u8]) {
    let (r, t) = send(srv.port, ALICE, &[BOB], msg);
    assert!(r.accepted_id().is_some(), "{t}");
    Verify::new(msg.to_vec()).run().assert_accept();
}

fn start() -> (Gateway, Server) {
    let gw = Gateway::new(Opts::default());
    let srv = gw.start();
    (gw, srv)
}

const MALFORMED: &str = "550 5.6.0 malformed";

#[test]
fn repeated_mime_fields_are_refused_at_the_top_and_inside_the_signed_entity() {
    let (gw, srv) = start();
    let msg = signed_body(Tool::CmsDetached, &text_body());
    accepted(&srv, &msg);
    // The attack: a first-header-wins parser shows the preamble.
    let johnny = replace_once(
        &replace_once(
            &msg,
            b"MIME-Version: 1.0\r\n",
            b"Content-Type: text/plain\r\nMIME-Version: 1.0\r\n",
        ),
        b"This is an S/MIME signed message",
        b"Transfer the seized funds to account 666.",
    );
    refused(&srv, &johnny, MALFORMED, "repeats Content-Type");
    let top = |extra: &[u8]| {
        replace_once(
            &msg,
            b"MIME-Version: 1.0\r\n",
            &[b"MIME-Version: 1.0\r\n", extra].concat(),
        )
    };
    refused(
        &srv,
        &top(b"Mime-Version: 1.0\r\n"),
        MALFORMED,
        "repeats MIME-Version",
    );
    refused(
        &srv,
        &top(b"Content-Transfer-Encoding: 7bit\r\ncontent-transfer-encoding : base64\r\n"),
        MALFORMED,
        "repeats Content-Transfer-Encoding",
    );
    // Validly signed, but the signed entity itself is ambiguous.
    let ambiguous = replace_once(
        &text_body(),
        b"Content-Transfer-Encoding: 7bit\r\n",
        b"Content-Transfer-Encoding: 7bit\r\nContent-Type: text/html\r\n",
    );
    for tool in [Tool::CmsDetached, Tool::CmsOpaque] {
        let m = signed_body(tool, &ambiguous);
        assert!(
            openssl_cms_verifies(&m, "aa"),
            "{tool:?}: the signature is valid"
        );
        refused(&srv, &m, MALFORMED, "repeats Content-Type");
    }
    // And in a part deep in the signed tree.
    let nested = b"Content-Type: multipart/mixed; boundary=\"in\"\r\n\r\n--in\r\n\
        Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\r\nPart one.\r\n--in--\r\n";
    refused(
        &srv,
        &signed_body(Tool::CmsDetached, nested),
        MALFORMED,
        "repeats Content-Transfer-Encoding",
    );
    gw.assert_audit_intact();
}

#[test]
fn a_display_name_naming_another_address_is_sender_mismatch() {
    let (_gw, srv) = start();
    let alice = "<alice@justice.aa.example>";
    for ok in [
        format!("\"Alice Official\" {alice}"),
        format!("alice@justice.aa.example {alice}"),
        format!("\"ALICE@JUSTICE.AA.EXAMPLE\" {alice}"),
    ] {
        accepted(&srv, &mail(Tool::CmsDetached, "aa", "alice", &ok, &[BOB]));
    }
    for spoof in [
        format!("mallory@justice.fr.example {alice}"),
        format!("\"mallory@justice.fr.example\" {alice}"),
        format!("\"Mallory <mallory@justice.fr.example>\" {alice}"),
        format!("=?utf-8?B?bWFsbG9yeUBqdXN0aWNlLmZyLmV4YW1wbGU=?= {alice}"),
        format!("=?utf-8?Q?mallory=40justice=2Efr=2Eexample?= {alice}"),
        format!("=?utf-8?Q?mallory=EF=BC=A0justice.fr.example?= {alice}"),
        "alice@justice.aa.example (mallory@justice.fr.example)".to_string(),
    ] {
        let m = mail(Tool::CmsDetached, "aa", "alice", &spoof, &[BOB]);
        let (r, t) = send(srv.port, ALICE, &[BOB], &m);
        assert!(
            r.last().starts_with("550 5.7.1 sender-mismatch: the From: display name names another address, mallory@justice.fr.example,"),
            "{spoof}:\n{t}"
        );
        let v = Verify::new(m).run().assert_reject("sender-mismatch");
        assert!(v["detail"].as_str().unwrap().contains("mallory@"), "{v:#}");
    }
    // swaks, a real client, gets the same answer.
    let m = mail(
        Tool::CmsDetached,
        "aa",
        "alice",
        &format!("mallory@justice.fr.example {alice}"),
        &[BOB],
    );
    let (_, t) = swaks(srv.port, ALICE, BOB, &m, &[]);
    assert!(t.contains("550 5.7.1 sender-mismatch"), "{t}");
}

#[test]
fn nul_anywhere_in_data_is_refused_and_the_session_goes_on() {
    let (gw, srv) = start();
    let msg = signed_body(Tool::CmsDetached, &text_body());
    let in_header = replace_once(&msg, b"Subject: ", b"Subject: \0");
    let nul_body = replace_once(&text_body(), b"lazy dog", b"lazy\0dog");
    // -binary: OpenSSL's text mode would cut the line at the NUL.
    let in_signed = crlf(&with_headers(
        ALICE,
        &[BOB],
        &sign(Tool::CmsDetached, "aa", "alice", &nul_body, &["-binary"]),
    ));
    assert!(find(&in_signed, b"lazy\0dog").is_some());
    assert!(openssl_cms_verifies(&in_signed, "aa"), "validly signed");
    let in_epilogue = [&msg[..], b"\0\r\n"].concat();
    let mut c = srv.connect();
    c.ehlo();
    for m in [&in_header, &in_signed, &in_epilogue] {
        let r = c.transaction(ALICE, &[BOB], m);
        assert_eq!(
            r.last(),
            "550 5.6.0 malformed: the message contains a NUL byte",
            "{}",
            c.transcript
        );
        let v = Verify::new(m.to_vec()).run().assert_reject("malformed");
        assert!(v["detail"]
            .as_str()
            .unwrap()
            .starts_with("the message contains a NUL byte (line "));
    }
    // The session is intact: the next transaction is judged normally.
    assert!(
        c.transaction(ALICE, &[BOB], &msg).accepted_id().is_some(),
        "{}",
        c.transcript
    );
    c.quit();
    assert_eq!(
        gw.db()
            .messages()
            .iter()
            .filter(|m| m.reason == "malformed")
            .count(),
        3
    );
}

#[test]
fn unsigned_text_around_the_signed_parts_is_refused_unless_the_policy_allows_it() {
    let (_gw, srv) = start();
    let msg = signed_body(Tool::SmimeDetached, &text_body());
    let epilogue = [&msg[..], b"\r\nP.S. Release the suspect at once.\r\n"].concat();
    let preamble = replace_once(
        &msg,
        b"This is an S/MIME signed message",
        b"P.S. Release the suspect at once.",
    );
    refused(
        &srv,
        &epilogue,
        MALFORMED,
        "text after the closing boundary",
    );
    refused(&srv, &preamble, MALFORMED, "text before the first boundary");
    // White space and the signing tools' customary notice are no text.
    accepted(&srv, &[&msg[..], b"\r\n \t\r\n"].concat());
    let thunderbird = replace_once(
        &msg,
        b"This is an S/MIME signed message",
        b"This is a cryptographically signed message in MIME format.",
    );
    accepted(&srv, &thunderbird);
    // With allow_unsigned_text the operator takes the risk.
    let policy = PolicyCopy::new();
    policy.edit(
        "gateway.toml",
        "max_mime_depth = 8",
        "max_mime_depth = 8\nallow_unsigned_text = true",
    );
    let gw = Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        ..Opts::default()
    });
    let lenient = gw.start();
    for m in [&epilogue, &preamble] {
        let (r, t) = send(lenient.port, ALICE, &[BOB], m);
        assert!(r.accepted_id().is_some(), "{t}");
        Verify::new(m.to_vec())
            .policy(policy.0.clone())
            .run()
            .assert_accept();
    }
}

/// The message's CMS with `f` applied to its SignedData fields.
fn cms_edited(msg: &[u8], f: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<u8> {
    edit_cms(msg, |der| edit_signed_data(der, f))
}

const MD5_ALG: &[u8] = &[
    0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05, 0x05, 0x00,
];

/// The fields' index of `[0] certificates`.
const CERTS: usize = 3;

/// The DER of the (first) certificate of a PEM file.
fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(path).unwrap();
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn cms_openssl_cannot_verify_is_refused() {
    let (_gw, srv) = start();
    for tool in [Tool::CmsDetached, Tool::PyOpaque] {
        let msg = signed_body(tool, &text_body());
        // The editing itself keeps the message valid.
        let same = cms_edited(&msg, |_| {});
        assert!(openssl_cms_verifies(&same, "aa"), "{tool:?}");
        accepted(&srv, &same);
        let add_to_certs = |extra: Vec<u8>| {
            cms_edited(&msg, |f| {
                f[CERTS] = der_wrap(0xa0, &[der_content(&f[CERTS]), &extra].concat())
            })
        };
        // A damaged copy of the issuing CA first: a client taking the
        // message's copy fails, one that trusts the policy's CAs does not.
        let issuing = pem_der(&pki().chain("aa"));
        let mut damaged = issuing.clone();
        let n = damaged.len();
        damaged[n - 5] ^= 0x10;
        let rival = cms_edited(&msg, |f| {
            f[CERTS] = der_wrap(0xa0, &[&damaged, der_content(&f[CERTS])].concat())
        });
        let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
            (
                "damaged CA copy",
                rival,
                "550 5.7.1 untrusted-chain",
                "differs from the CA certificate of the validated chain",
            ),
            (
                "NULL certificate",
                add_to_certs(vec![0x05, 0x00]),
                MALFORMED,
                "is not an X.509 certificate but a NULL",
            ),
            (
                "huge OCTET STRING certificate",
                add_to_certs(der_wrap(0x04, &vec![0x41; 200_000])),
                MALFORMED,
                "is not an X.509 certificate but an OCTET STRING",
            ),
            (
                "garbage CRL",
                cms_edited(&msg, |f| {
                    f.insert(CERTS + 1, der_wrap(0xa1, &[0x30, 0x03, 0x02, 0x01, 0x00]))
                }),
                MALFORMED,
                "crls[0] does not parse as a CertificateList",
            ),
            (
                "empty digestAlgorithms",
                cms_edited(&msg, |f| f[1] = vec![0x31, 0x00]),
                MALFORMED,
                "digestAlgorithms is empty",
            ),
            (
                "MD5-only digestAlgorithms",
                cms_edited(&msg, |f| f[1] = der_wrap(0x31, MD5_ALG)),
                "550 5.7.4 weak-algorithm",
                "digestAlgorithms lists MD5",
            ),
            (
                "version 99",
                cms_edited(&msg, |f| f[0] = vec![0x02, 0x01, 99]),
                MALFORMED,
                "SignedData version is 99",
            ),
        ];
        for (what, m, reply, detail) in &cases {
            // OpenSSL 3.0 ignores the version (RFC 5652 defines it), and
            // finds the issuing CA in its trusted store before the copy.
            assert_eq!(
                openssl_cms_verifies(m, "aa"),
                ["version 99", "damaged CA copy"].contains(what),
                "{tool:?} {what}: OpenSSL"
            );
            refused(&srv, m, reply, detail);
        }
    }
}

#[test]
fn emla_verify_applies_the_wire_checks_of_intake() {
    let (_gw, srv) = start();
    let msg = signed_body(Tool::CmsDetached, &text_body());
    let long = replace_once(
        &msg,
        b"Subject: ",
        &[b"X-Long: ".as_slice(), &[b'x'; 991], b"\r\nSubject: "].concat(),
    );
    let v = Verify::new(long.clone()).run().assert_reject("malformed");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("a line of the message exceeds 998 characters (line "),
        "{v:#}"
    );
    let (r, t) = send(srv.port, ALICE, &[BOB], &long);
    assert_eq!(
        r.last(),
        "550 5.6.0 malformed: a line of the message exceeds 998 characters",
        "{t}"
    );
    // 998 characters are fine.
    let at_limit = replace_once(&long, &[b'x'; 991], &[b'x'; 990]);
    accepted(&srv, &at_limit);
    for (what, bytes) in [
        ("bare LF", b"X-A: 1\n".as_slice()),
        ("bare CR", b"X-A: 1\r2\r\n"),
    ] {
        let m = replace_once(&msg, b"Subject: ", &[bytes, b"Subject: "].concat());
        let v = Verify::new(m).run().assert_reject("smuggling");
        assert!(v["detail"].as_str().unwrap().starts_with(what), "{v:#}");
    }
}
