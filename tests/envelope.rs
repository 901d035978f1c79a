//! End-to-end tests of the SMTP envelope (issue 11, "Envelopes"): `emla
//! serve` on a loopback port, driven over raw sockets and with swaks.
//! RFC 5321 paths, the null reverse-path, DSN parameters (RFC 3461),
//! SMTPUTF8 refused, duplicate recipients merged, every reply with an
//! enhanced status code, and the smuggling variants that must never start
//! a second transaction.
//!
//! Requirements beyond `tests/support`: `swaks`.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::time::Duration;

use smtp::*;
use support::*;

fn signed() -> Vec<u8> {
    alice_to_bob(Tool::SmimeDetached)
}

/// Message `id` is recorded for Bob alone, and queued once, for him alone.
fn assert_for_bob_once(gw: &Gateway, id: &str) {
    let bob = format!("[\"{BOB}\"]");
    let q = gw.db().queue_of(id);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].recipients, bob, "{q:?}");
    assert_eq!(gw.db().message(id).unwrap().rcpt_to, bob);
}

/// The refusals recorded before DATA whose data names `reason`.
fn audited(gw: &Gateway, reason: &str) -> Vec<AuditRow> {
    gw.db()
        .early_rejections()
        .into_iter()
        .filter(|a| a.data.contains(&format!("\"{reason}\"")))
        .collect()
}

/// Runs swaks (`swaks(…)`'s arguments): whether it succeeded must be `ok`,
/// and what it printed must hold `needle`; returns that transcript.
fn swaks_says(
    (port, from, to, msg, extra): (u16, &str, &str, &[u8], &[&str]),
    ok: bool,
    needle: &str,
) -> String {
    let (code, out) = swaks(port, from, to, msg, extra);
    assert_eq!(code == Some(0), ok, "{out}");
    assert!(out.contains(needle), "{needle:?} in: {out}");
    out
}

#[test]
fn invalid_paths_get_501_bad_address_and_are_audited() {
    let (gw, srv, mut c) = Gateway::greeted(Opts::default());
    let long_local = format!("{}@justice.aa.example", "x".repeat(65));
    let long_path = format!("{}@{}", "x".repeat(60), vec!["d".repeat(60); 4].join("."));
    // The first of a session's refusals of a kind is audited on its own: the
    // ESC one, so the record is seen to hold no raw ESC.
    let bad = [
        "al\x1b[32mACCEPT\x1b[0mice@justice.aa.example",
        "al\0ice@justice.aa.example",
        "@justice.aa.example",
        "alice@@justice.aa.example",
        "alice@justice@aa.example",
        "alice@justice..aa.example",
        "alice@justice_aa.example",
        "alice",
        long_local.as_str(),
        long_path.as_str(),
    ];
    for path in bad {
        let r = c.cmd(&format!("MAIL FROM:<{path}>"));
        assert_eq!(r.code, 501, "{path:?}:\n{}", c.transcript);
        assert!(r.text().starts_with("5.1.7 bad-address: "), "{path:?}: {r}");
        assert!(!r.text().contains('\x1b'), "an ESC echoed: {r:?}");
    }
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
    for path in ["", "bob@@justice.bb.example", "b\0b@justice.bb.example"] {
        let r = c.cmd(&format!("RCPT TO:<{path}>"));
        assert_eq!(r.code, 501, "{path:?}:\n{}", c.transcript);
        assert!(r.text().starts_with("5.1.3 bad-address: "), "{path:?}: {r}");
    }
    // A source route is accepted, and dropped before the next hop.
    let r = c.cmd(&format!("RCPT TO:<@relay.example,@other.example:{BOB}>"));
    assert_eq!(r.code, 250, "{}", c.transcript);
    let msg = signed();
    let r = c.data(&msg);
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", c.transcript));
    c.quit();
    assert_for_bob_once(&gw, &id);

    // One record each for MAIL and RCPT; the repeats are summed up when the
    // session ends.
    let refused = audited(&gw, "bad-address");
    assert_eq!(refused.len(), 2, "{refused:#?}");
    // Written as the session ends, just after QUIT.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let summary = loop {
        let found = gw
            .db()
            .audit()
            .into_iter()
            .find(|a| a.kind == "smtp.session-summary");
        match found {
            Some(s) => break s,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => panic!("no session summary"),
        }
    };
    let summary: serde_json::Value = serde_json::from_str(&summary.data).unwrap();
    let repeats = &summary["repeated_refusals"];
    assert_eq!(repeats[0]["stage"], "mail", "{summary:#}");
    assert_eq!(repeats[0]["count"], bad.len() - 1, "{summary:#}");
    assert_eq!(repeats[1]["stage"], "rcpt", "{summary:#}");
    assert_eq!(repeats[1]["count"], 2, "{summary:#}");
    assert!(
        refused.iter().all(|a| !a.data.contains('\x1b')),
        "the audit record holds no raw ESC: {refused:#?}"
    );

    // swaks sees the same.
    swaks_says(
        (srv.port, ALICE, "bob@@justice.bb.example", &msg, &[]),
        false,
        "501 5.1.3 bad-address: ",
    );
    swaks_says(
        (srv.port, "alice..x@justice.aa.example", BOB, &msg, &[]),
        false,
        "501 5.1.7 bad-address: ",
    );
    gw.assert_audit_intact();
}

#[test]
fn the_null_reverse_path_is_judged_by_from_and_signature() {
    let (gw, srv) = Gateway::serve(Opts::default());
    let msg = signed();
    let (r, t) = send(srv.port, "", &[BOB], &msg);
    let id = r.accepted_id().unwrap_or_else(|| panic!("{t}"));
    let m = gw.db().message(&id).unwrap();
    assert_eq!((m.mail_from.as_str(), m.verdict.as_str()), ("", "accept"));

    // Like any other: unsigned is refused, and so is a From: no authority owns.
    let (r, t) = send(
        srv.port,
        "",
        &[BOB],
        &crlf(b"From: alice@justice.aa.example\nTo: bob@justice.bb.example\nSubject: x\n\nplain\n"),
    );
    assert_eq!(r.code, 550, "{t}");
    assert!(r.text().starts_with("5.7.1 unsigned: "), "{t}");
    let mut c = srv.connect();
    c.ehlo();
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    let r = c.cmd("RCPT TO:<someone@unknown.example>");
    assert!(
        r.text().starts_with("5.7.1 unauthorized-domain: "),
        "{}",
        c.transcript
    );
    c.quit();

    // swaks's null sender.
    let out = swaks_says((srv.port, "<>", BOB, &signed(), &[]), true, "MAIL FROM:<>");
    assert!(out.contains("250 2.0.0 accepted as "), "{out}");
    gw.assert_audit_intact();
}

#[test]
fn dsn_is_offered_and_its_parameters_recorded() {
    let (gw, srv) = Gateway::serve(Opts::default());
    let mut c = srv.connect();
    let e = c.ehlo();
    assert!(e.lines.iter().any(|l| l == "DSN"), "{}", c.transcript);
    assert!(
        !e.lines.iter().any(|l| l.contains("SMTPUTF8")),
        "{}",
        c.transcript
    );
    for (line, want) in [
        (format!("MAIL FROM:<{ALICE}> SIZE=abc"), "501 5.5.4 "),
        (format!("MAIL FROM:<{ALICE}> FROBNICATE=1"), "555 5.5.4 "),
        (format!("MAIL FROM:<{ALICE}> ENVID=not=xtext"), "501 5.5.4 "),
        (format!("MAIL FROM:<{ALICE}> RET=BODY"), "501 5.5.4 "),
    ] {
        let r = c.cmd(&line);
        assert!(r.last().starts_with(want), "{line}: {}", c.transcript);
    }
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{ALICE}> RET=HDRS ENVID=case+2B42"))
            .code,
        250,
        "{}",
        c.transcript
    );
    for (line, want) in [
        (
            format!("RCPT TO:<{BOB}> NOTIFY=NEVER,SUCCESS"),
            "501 5.5.4 ",
        ),
        (format!("RCPT TO:<{BOB}> ORCPT=no-semicolon"), "501 5.5.4 "),
        (format!("RCPT TO:<{BOB}> XYZZY"), "555 5.5.4 "),
    ] {
        let r = c.cmd(&line);
        assert!(r.last().starts_with(want), "{line}: {}", c.transcript);
    }
    let r = c.cmd(&format!(
        "RCPT TO:<{BOB}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{BOB}"
    ));
    assert_eq!(r.code, 250, "{}", c.transcript);
    let r = c.data(&signed());
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", c.transcript));
    c.quit();
    let dsn = gw.db().dsn(&id).expect("DSN parameters recorded");
    assert_eq!(dsn["ret"], "HDRS", "{dsn}");
    assert_eq!(dsn["envid"], "case+42", "{dsn}");
    assert_eq!(dsn["recipients"][0]["recipient"], BOB, "{dsn}");
    assert_eq!(dsn["recipients"][0]["notify"], "SUCCESS,FAILURE", "{dsn}");
    assert_eq!(
        dsn["recipients"][0]["orcpt"],
        format!("rfc822;{BOB}"),
        "{dsn}"
    );
    // Without parameters, nothing is recorded.
    let (r, t) = send(srv.port, ALICE, &[BOB], &signed());
    let id = r.accepted_id().unwrap_or_else(|| panic!("{t}"));
    assert_eq!(gw.db().dsn(&id), None);
    gw.assert_audit_intact();
}

#[test]
fn smtputf8_and_non_ascii_paths_are_refused() {
    let (_gw, srv, mut c) = Gateway::greeted(Opts::default());
    let r = c.cmd(&format!("MAIL FROM:<{ALICE}> SMTPUTF8"));
    assert!(r.last().starts_with("555 5.5.4 "), "{}", c.transcript);
    let r = c.cmd("MAIL FROM:<ålice@justice.aa.example>");
    assert!(
        r.last().starts_with("553 5.6.7 bad-address: "),
        "{}",
        c.transcript
    );
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
    let r = c.cmd("RCPT TO:<böb@justice.bb.example>");
    assert_eq!(r.code, 553, "{}", c.transcript);
    c.quit();
    let out = swaks_says(
        (srv.port, ALICE, "böb@justice.bb.example", &signed(), &[]),
        false,
        "553 5.6.7 bad-address: ",
    );
    assert!(
        !out.contains("250-SMTPUTF8") && !out.contains("250 SMTPUTF8"),
        "{out}"
    );
}

#[test]
fn duplicate_recipients_are_merged() {
    let (gw, srv, mut c) = Gateway::greeted(Opts::default());
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
    for to in [BOB, &BOB.to_uppercase(), "Bob@Justice.BB.example"] {
        let r = c.cmd(&format!("RCPT TO:<{to}>"));
        assert_eq!(r.code, 250, "{}", c.transcript);
    }
    let id = c
        .data(&signed())
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", c.transcript));
    c.quit();
    assert_for_bob_once(&gw, &id);

    // swaks with the address twice.
    let to = format!("{BOB},{}", BOB.to_uppercase());
    let (code, out) = swaks(srv.port, ALICE, &to, &signed(), &[]);
    assert_eq!(code, Some(0), "{out}");
    let id = out
        .split("accepted as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"));
    assert_for_bob_once(&gw, id);
}

#[test]
fn every_reply_has_an_enhanced_code_and_no_echo() {
    let (_gw, srv) = Gateway::serve(Opts::default());
    let mut c = srv.connect();
    let marker = "client-name-that-must-not-come-back.example";
    let e = c.cmd(&format!("EHLO {marker}"));
    assert_eq!(e.code, 250);
    assert_eq!(e.lines[0], "emla.test", "{}", c.transcript);
    let h = c.cmd(&format!("HELO {marker}"));
    assert_eq!(h.last(), "250 emla.test", "{}", c.transcript);
    for (line, want) in [
        ("STARTTLS", "502 5.5.1 "),
        ("EXPN staff", "502 5.5.1 "),
        ("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "502 5.5.1 "),
        ("HELP", "214 2.0.0 "),
        (&format!("VRFY {BOB}"), "252 2.0.0 "),
        ("VRFY", "501 5.5.4 "),
        ("NOOP", "250 2.0.0 "),
        ("RSET", "250 2.0.0 "),
        ("DATA", "503 5.5.1 "),
        (&format!("RCPT TO:<{BOB}>"), "503 5.5.1 "),
        ("FROBNICATE", "500 5.5.2 "),
        ("EHLO", "501 5.5.4 "),
        ("MAIL", "501 5.5.4 "),
        ("RCPT TO <x@y.example>", "501 5.5.4 "),
    ] {
        let r = c.cmd(line);
        assert!(r.last().starts_with(want), "{line}: {}", c.transcript);
    }
    assert!(
        !c.transcript.contains(&format!("S: 250-{marker}")),
        "{}",
        c.transcript
    );
    let r = c.cmd("QUIT");
    assert_eq!(r.last(), "221 2.0.0 Goodbye", "{}", c.transcript);
    assert!(c.closed_within(Duration::from_secs(3)));

    let out = swaks_says(
        (srv.port, ALICE, BOB, &signed(), &["--quit-after", "EHLO"]),
        true,
        "<-  250-emla.test\n",
    );
    assert!(!out.contains("greets"), "{out}");
    assert!(out.contains("221 2.0.0 "), "{out}");
}

/// The smuggling variants of the issue: a second transaction hidden in the
/// data is never run. Each payload is the outer message with `mid` and the
/// smuggled transaction after its header section, then a proper end.
#[test]
fn smuggling_variants_never_start_a_second_transaction() {
    let (gw, srv) = Gateway::serve(Opts::default());
    let inner = signed();
    let smuggled = smuggled_transaction(&inner);
    // Bare CR or LF: refused and the session closed. The others are no end
    // of data (a line "\0." or " ."): the smuggled text stays inside the
    // one message, whatever its verdict.
    let variants: [(&str, &[u8], bool); 5] = [
        ("\\n.\\n", b"X-A: 1\n.\n", true),
        ("\\r.\\r", b"X-A: 1\r.\r", true),
        ("\\r\\n.\\r", b"X-A: 1\r\n.\r", true),
        ("\\r\\n\\0.\\r\\n", b"X-A: 1\r\n\0.\r\n", false),
        ("\\r\\n .\\r\\n", b"X-A: 1\r\n .\r\n", false),
    ];
    for (name, mid, bare) in variants {
        let outer = dot_stuff(&signed());
        let cut = find(&outer, b"\r\n\r\n").unwrap() + 2;
        let mut payload = [&outer[..cut], mid, &smuggled, b"\r\n", &outer[cut..]].concat();
        payload.extend_from_slice(b".\r\n");
        let mut c = srv.connect();
        c.ehlo();
        assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
        assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        let _ = c.send_raw(&payload);
        let r = c.read_reply();
        let t = c.transcript.clone();
        let r = r.unwrap_or_else(|e| panic!("{name}: no reply ({e}):\n{t}"));
        if bare {
            assert_eq!(r.code, 550, "{name}:\n{t}");
            assert!(r.text().starts_with("5.5.2 smuggling: "), "{name}:\n{t}");
            assert!(c.closed_within(Duration::from_secs(3)), "{name}:\n{t}");
            continue;
        }
        // One reply for the whole payload: the next is QUIT's.
        let q = c.cmd("QUIT");
        assert_eq!(
            q.code, 221,
            "{name}: a second transaction ran:\n{}",
            c.transcript
        );
    }
    let inner_sha = sha256_hex(&inner);
    let rows = gw.db().messages();
    assert!(rows.iter().all(|m| m.sha256 != inner_sha), "{rows:#?}");
    assert!(
        rows.len() <= 2,
        "one row per transaction at most: {rows:#?}"
    );
    gw.assert_audit_intact();
}

#[test]
fn postmaster_mail_is_kept_unjudged_in_a_bounded_mailbox() {
    let gw = Gateway::new(Opts {
        extra_toml: "\n[postmaster]\nmax_messages = 2\n".into(),
        ..Opts::default()
    });
    let srv = gw.start();
    let note =
        crlf(b"From: admin@justice.bb.example\nSubject: your MX\n\nUnsigned, and welcome.\n");
    let mut c = srv.connect();
    c.ehlo();
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<PostMaster>").code, 250, "{}", c.transcript);
    let r = c.cmd(&format!("RCPT TO:<{BOB}>"));
    assert!(r.last().starts_with("452 4.5.3 "), "{}", c.transcript);
    let r = c.data(&note);
    assert!(
        r.last()
            .starts_with("250 2.0.0 kept for the postmaster as "),
        "{}",
        c.transcript
    );
    c.quit();
    swaks_says(
        (srv.port, BOB, "postmaster@emla.test", &note, &[]),
        true,
        "kept for the postmaster as ",
    );
    // The mailbox holds two: the third waits.
    swaks_says(
        (srv.port, BOB, "postmaster", &note, &[]),
        false,
        "452 4.2.2 the postmaster mailbox is full",
    );

    let kept: Vec<_> = std::fs::read_dir(gw.data_dir.join("postmaster"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|k| *k == note), "kept as received");
    let db = gw.db();
    assert!(db.messages().is_empty(), "not judged: {:?}", db.messages());
    assert!(db.queue().is_empty(), "never relayed: {:?}", db.queue());
    let audited = db
        .audit()
        .into_iter()
        .filter(|a| a.kind == "postmaster.kept")
        .count();
    assert_eq!(audited, 2);
    gw.assert_audit_intact();
}
