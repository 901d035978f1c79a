//! End-to-end tests of SMTP intake: `emla serve` on port 0 with its own data
//! directory, driven by real clients (swaks, Python `smtplib`, s-nail) and by
//! a raw TCP client for what no well-behaved client sends (smuggling,
//! oversized streams, idle sessions). Each test checks the SMTP replies and
//! then the store: message rows, body files, queue entries, the audit chain.
//!
//! Requirements beyond `tests/support`: `swaks` and `s-nail` (Debian
//! packages), PostgreSQL at `EMLA_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`, a role that may create
//! databases), and root for the disk-full test (skipped otherwise).

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp::*;
use support::*;

/// `max_message_size` of the test policy.
const LIMIT: usize = 1048576;

/// A fresh signed message from Alice to Bob (each call a new Message-ID).
fn signed() -> Vec<u8> {
    alice_to_bob(Tool::SmimeDetached)
}

/// The id in `250 2.0.0 accepted as ID` in a client's transcript.
fn id_in_transcript(t: &str) -> Option<String> {
    let rest = &t[t.find("250 2.0.0 accepted as ")? + "250 2.0.0 accepted as ".len()..];
    let id = rest.split_whitespace().next()?;
    Some(id.trim_matches(|c| c == '<' || c == '>').to_string())
}

/// Asserts that `id` was accepted and stored exactly: message row, body file
/// equal to `msg`, one queue entry to bb-moj's next hop, audit rows.
fn assert_stored(gw: &Gateway, id: &str, msg: &[u8]) -> MessageRow {
    let db = gw.db();
    let m = db
        .message(id)
        .unwrap_or_else(|| panic!("no message row {id}: {:?}", db.messages()));
    assert_eq!(m.verdict, "accept", "{m:?}");
    assert_eq!(m.reason, "ok", "{m:?}");
    assert_eq!(m.sha256, sha256_hex(msg), "sha256 of the sent bytes: {m:?}");
    assert_eq!(m.size, msg.len() as i64, "{m:?}");
    assert_eq!(m.mail_from, ALICE, "{m:?}");
    assert!(m.rcpt_to.contains(BOB), "{m:?}");
    assert!(m.body_stored, "{m:?}");
    assert_eq!(m.client_ip, "127.0.0.1", "{m:?}");
    let path = gw.body_path(&m.sha256);
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(body == msg, "stored body differs from the sent bytes");
    assert!(
        openssl_verifies(&body, "aa"),
        "stored body no longer verifies"
    );
    let q = db.queue_of(id);
    assert_eq!(q.len(), 1, "one queue entry: {q:?}");
    assert_eq!(q[0].next_hop, "127.0.0.1:2626", "{q:?}");
    assert!(q[0].recipients.contains(BOB), "{q:?}");
    let audit = db.audit_about(id);
    assert!(
        audit.iter().any(|a| a.kind.contains("accept")),
        "audit rows of {id}: {audit:?}"
    );
    m
}

/// Sends `msg` from Alice to Bob on `port`: the id it was accepted as (else
/// a panic naming `when`, with the transcript).
fn send_accepted(port: u16, msg: &[u8], when: &str) -> String {
    let (r, t) = send(port, ALICE, &[BOB], msg);
    r.accepted_id().unwrap_or_else(|| panic!("{when}:\n{t}"))
}

/// A gateway with these top-level lines in its `emla.toml`, started.
fn serve_with(top_extra: &str) -> (Gateway, Server) {
    Gateway::serve(Opts {
        top_extra: top_extra.into(),
        ..Opts::default()
    })
}

fn count_accepted(gw: &Gateway) -> usize {
    gw.db()
        .messages()
        .iter()
        .filter(|m| m.verdict == "accept")
        .count()
}

// ---------------------------------------------------------------------------
// Greeting, EHLO
// ---------------------------------------------------------------------------

#[test]
fn greeting_and_ehlo_keywords() {
    let (_gw, srv) = Gateway::serve(Opts::default());
    let mut c = srv.connect();
    let g = c.greeting.clone().unwrap();
    assert_eq!(g.code, 220, "{}", c.transcript);
    assert!(g.text().starts_with("emla.test ESMTP"), "{}", c.transcript);
    let e = c.ehlo();
    assert_eq!(e.code, 250, "{}", c.transcript);
    for kw in [
        "SIZE 1048576",
        "8BITMIME",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            e.lines.iter().any(|l| l.eq_ignore_ascii_case(kw)),
            "EHLO lacks {kw}:\n{}",
            c.transcript
        );
    }
    assert!(
        !e.lines.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")),
        "STARTTLS offered without [tls]:\n{}",
        c.transcript
    );
    c.quit();
}

// ---------------------------------------------------------------------------
// 1. swaks
// ---------------------------------------------------------------------------

fn swaks_flow(gw: &Gateway) {
    let srv = gw.start();
    let msg = signed();
    let (code, out) = swaks(srv.port, ALICE, BOB, &msg, &[]);
    assert_eq!(code, Some(0), "swaks:\n{out}");
    let id = id_in_transcript(&out).unwrap_or_else(|| panic!("no `accepted as`:\n{out}"));
    let m = assert_stored(gw, &id, &msg);
    assert_eq!(m.helo, "client.test", "{m:?}");
    assert_eq!(m.tls_version, None, "{m:?}");
    gw.assert_audit_intact();
}

#[test]
fn swaks_signed_message_is_stored_byte_for_byte() {
    swaks_flow(&Gateway::new(Opts::default()));
}

#[test]
fn swaks_signed_message_is_stored_in_postgres() {
    let pg = PgDb::create();
    swaks_flow(&Gateway::new(Opts {
        database_url: Some(pg.url.clone()),
        ..Opts::default()
    }));
}

// ---------------------------------------------------------------------------
// 2. Python smtplib
// ---------------------------------------------------------------------------

fn unsigned_message() -> Vec<u8> {
    let m = with_headers(ALICE, &[BOB], &text_body());
    [b"MIME-Version: 1.0\r\n".as_slice(), &m].concat()
}

fn tampered_message() -> Vec<u8> {
    replace_once(&alice_to_bob(Tool::SmimeDetached), b"quick", b"quack")
}

#[test]
fn python_smtplib_accepts_signed_and_refuses_tampered_and_unsigned() {
    let pki = pki();
    let (gw, srv) = Gateway::serve(Opts::default());
    let good = alice_to_bob(Tool::CmsDetached);
    let opaque = alice_to_bob(Tool::CmsOpaque);
    let tampered = tampered_message();
    let unsigned = unsigned_message();
    let files: Vec<PathBuf> = [&good, &opaque, &tampered, &unsigned]
        .iter()
        .map(|m| pki.write_scratch("smtplib.eml", m))
        .collect();
    let r = smtp_send_py(srv.port, ALICE, &[BOB], &files);
    assert_eq!(r.len(), 4, "{r:?}");
    for (i, msg) in [(0, &good), (1, &opaque)] {
        assert_eq!(r[i]["code"], 250, "{r:?}");
        let reply = r[i]["reply"].as_str().unwrap();
        let id = reply
            .strip_prefix("2.0.0 accepted as ")
            .unwrap_or_else(|| panic!("{r:?}"))
            .trim_matches(|c| c == '<' || c == '>');
        assert_stored(&gw, id, msg);
    }
    for (i, msg, code) in [
        (2, &tampered, "digest-mismatch"),
        (3, &unsigned, "unsigned"),
    ] {
        assert_eq!(r[i]["stage"], "data", "{r:?}");
        assert_eq!(r[i]["code"], 550, "{r:?}");
        let reply = r[i]["reply"].as_str().unwrap();
        assert!(
            reply.starts_with(&format!("5.7.1 {code}: ")),
            "{code}: {r:?}"
        );
        let sha = sha256_hex(msg);
        let rows: Vec<_> = gw
            .db()
            .messages()
            .into_iter()
            .filter(|m| m.sha256 == sha)
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "one message row for the {code} one: {rows:?}"
        );
        let m = &rows[0];
        assert_eq!((m.verdict.as_str(), m.reason.as_str()), ("reject", code));
        assert!(!m.body_stored, "{m:?}");
        assert!(
            !gw.body_path(&sha).exists(),
            "rejected body kept although keep_rejected_bodies = false"
        );
        let audit = gw.db().audit_about(&m.id);
        assert!(
            audit
                .iter()
                .any(|a| a.kind.contains("reject") && a.data.contains(code)),
            "audit rows of the {code} message: {audit:?}"
        );
    }
    assert_eq!(gw.body_files().len(), 2, "{:?}", gw.body_files());
    gw.assert_audit_intact();
}

#[test]
fn keep_rejected_bodies_keeps_the_tampered_body() {
    let (gw, srv) = Gateway::serve(Opts {
        keep_rejected_bodies: true,
        ..Opts::default()
    });
    let tampered = tampered_message();
    let (r, t) = send(srv.port, ALICE, &[BOB], &tampered);
    assert_eq!(r.code, 550, "{t}");
    assert!(r.text().starts_with("5.7.1 digest-mismatch: "), "{t}");
    let sha = sha256_hex(&tampered);
    let m = gw
        .db()
        .messages()
        .into_iter()
        .find(|m| m.sha256 == sha)
        .expect("message row");
    assert_eq!(m.verdict, "reject");
    assert!(m.body_stored, "{m:?}");
    assert_eq!(std::fs::read(gw.body_path(&sha)).unwrap(), tampered);
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 3. s-nail as the officials' S/MIME client
// ---------------------------------------------------------------------------

/// Signs and sends `body` with s-nail as Alice to Bob; returns exit code
/// and the verbose SMTP dialogue.
fn snail_send(port: u16, body: &str) -> (Option<i32>, String) {
    let pki = pki();
    // s-nail wants the private key followed by the certificate in one file.
    let mut signer = std::fs::read(pki.key("aa", "alice")).unwrap();
    signer.extend_from_slice(&std::fs::read(pki.cert("aa", "alice")).unwrap());
    let signer = pki.write_scratch("snail-signer.pem", &signer);
    let input = pki.write_scratch("snail-body.txt", body.as_bytes());
    let home = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new("s-nail")
            .env("HOME", home.path())
            .env("LC_ALL", "C.UTF-8")
            // -:/ loads no resource files; -. ends options, forcing send mode.
            .args([
                "-:/",
                "-v",
                "-Sv15-compat",
                "-Sttycharset=utf-8",
                "-Snosave",
            ])
            .arg(format!("-Sfrom={ALICE}"))
            .arg("-Shostname=client.test")
            .arg("-Ssmime-sign")
            .arg(format!("-Ssmime-sign-cert={}", signer.display()))
            .arg(format!(
                "-Ssmime-sign-include-certs={}",
                pki.chain("aa").display()
            ))
            .arg(format!("-Smta=smtp://127.0.0.1:{port}"))
            .args(["-Ssmtp-auth=none", "-s", "MLA request 2026/0042", "-.", BOB]),
        Some(&input),
        Duration::from_secs(60),
    );
    (out.status.code(), output_text(&out))
}

fn snail_flow(body: &str) {
    let (gw, srv) = Gateway::serve(Opts::default());
    let (code, out) = snail_send(srv.port, body);
    let rows = gw.db().messages();
    assert_eq!(code, Some(0), "s-nail:\n{out}\nrows: {rows:?}");
    assert_eq!(rows.len(), 1, "{rows:?}\n{out}");
    let m = &rows[0];
    assert_eq!(
        (m.verdict.as_str(), m.reason.as_str()),
        ("accept", "ok"),
        "{m:?}\n{out}"
    );
    let stored = std::fs::read(gw.body_path(&m.sha256)).expect("body file");
    assert_eq!(sha256_hex(&stored), m.sha256);
    assert!(
        openssl_verifies(&stored, "aa"),
        "stored s-nail message verifies"
    );
    gw.assert_audit_intact();
}

#[test]
fn snail_signs_and_sends_utf8_text() {
    // Non-ASCII text: s-nail writes Content-Type and quoted-printable
    // headers into the signed part.
    snail_flow("Demande d’entraide judiciaire — affaire 2026/0042.\nMerci.\n");
}

#[test]
fn snail_signs_and_sends_plain_ascii_text() {
    // Plain ASCII: s-nail's signed part has an empty header section
    // (a blank line, then the text), which is text/plain by default.
    snail_flow("Request for mutual legal assistance, case 2026/0042.\n");
}

// ---------------------------------------------------------------------------
// 4. Refusals before DATA
// ---------------------------------------------------------------------------

#[test]
fn early_rejects_are_audited_without_message_rows() {
    let (gw, srv) = Gateway::serve(Opts::default());
    let mut c = srv.connect();
    c.ehlo();
    c.expect(
        "MAIL FROM:<mallory@evil.example>",
        550,
        "5.7.1 unauthorized-domain: ",
    );
    c.cmd("RSET");
    c.expect(
        &format!("MAIL FROM:<{ALICE}> SIZE={}", LIMIT + 1),
        552,
        "5.3.4 too-large: ",
    );
    c.cmd("RSET");
    let r = c.cmd(&format!("MAIL FROM:<{ALICE}> SIZE={LIMIT}"));
    assert_eq!(r.code, 250, "SIZE at the limit: {}", c.transcript);
    c.expect(
        "RCPT TO:<someone@unknown.example>",
        550,
        "5.7.1 unauthorized-domain: ",
    );
    c.expect(&format!("RCPT TO:<{EVE}>"), 550, "5.7.1 route-denied: ");
    c.cmd("RSET");
    c.cmd(&format!("MAIL FROM:<{ALICE}>"));
    for n in 1..=5 {
        let rcpt = format!("RCPT TO:<official{n}@justice.bb.example>");
        assert_eq!(c.cmd(&rcpt).code, 250, "recipient {n}: {}", c.transcript);
    }
    c.expect(
        "RCPT TO:<official6@justice.bb.example>",
        452,
        "4.5.3 too-many-recipients: ",
    );
    c.cmd("RSET");
    let transcript = c.transcript.clone();
    c.quit();

    let db = gw.db();
    assert!(
        db.messages().is_empty(),
        "no message rows: {:?}",
        db.messages()
    );
    let rejections: Vec<_> = db
        .audit()
        .into_iter()
        .filter(|a| a.kind.contains("reject"))
        .collect();
    for code in [
        "unauthorized-domain",
        "too-large",
        "route-denied",
        "too-many-recipients",
    ] {
        assert!(
            rejections.iter().any(|a| a.data.contains(code)),
            "no audit row for {code}: {rejections:#?}\n{transcript}"
        );
    }
    assert!(rejections.len() >= 5, "{rejections:#?}");
    assert!(
        rejections
            .iter()
            .filter(|a| a.data.contains("unauthorized-domain"))
            .count()
            >= 2,
        "both unauthorized domains audited: {rejections:#?}"
    );
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 5. SMTP smuggling
// ---------------------------------------------------------------------------

#[test]
fn smuggling_is_refused_and_the_connection_closed() {
    let (gw, srv) = Gateway::serve(Opts::default());
    let mut smuggled = smuggled_transaction(&signed());
    smuggled.extend_from_slice(b".\r\n");
    let outer = dot_stuff(&signed());
    let cut = find(&outer, b"\r\n\r\n").unwrap() + 2; // after the outer headers
    let with = |mid: &[u8], tail: &[u8]| -> Vec<u8> { [&outer[..cut], mid, tail].concat() };
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        // A server ending DATA at <LF>.<CR><LF> would run the second transaction.
        ("LF.CRLF", with(b"X-A: 1\n.\r\n", &smuggled)),
        ("CRLF.LF", with(b"X-A: 1\r\n.\n", &smuggled)),
        // The final dot ends the data; the bare CR sits in the headers.
        ("bare CR", {
            let mut p = with(b"X-A: 1\r2\r\n", &outer[cut..]);
            p.extend_from_slice(b".\r\n");
            p
        }),
        ("bare LF", {
            let mut p = with(b"X-A: 1\n2\r\n", &outer[cut..]);
            p.extend_from_slice(b".\r\n");
            p
        }),
    ];
    for (name, payload) in &payloads {
        let mut c = srv.connect();
        c.ehlo();
        assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
        assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        // The server may refuse and close while we are still sending.
        let _ = c.send_raw(payload);
        let r = c.read_reply();
        let t = c.transcript.clone();
        let r = r.unwrap_or_else(|e| panic!("{name}: no reply ({e}):\n{t}"));
        assert_eq!(r.code, 550, "{name}:\n{t}");
        assert!(r.text().starts_with("5.5.2 smuggling: "), "{name}:\n{t}");
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{name}: connection left open:\n{}",
            c.transcript
        );
    }
    // A bare LF ending a command line.
    let mut c = srv.connect();
    c.ehlo();
    let _ = c.send_raw(format!("MAIL FROM:<{ALICE}>\nRCPT TO:<{BOB}>\r\n").as_bytes());
    let r = c.read_reply();
    let t = c.transcript.clone();
    let r = r.unwrap_or_else(|e| panic!("command LF: no reply ({e}):\n{t}"));
    assert_eq!(r.code, 550, "command LF:\n{t}");
    assert!(
        r.text().starts_with("5.5.2 smuggling: "),
        "command LF:\n{t}"
    );
    assert!(c.closed_within(Duration::from_secs(3)), "{}", c.transcript);

    assert_eq!(count_accepted(&gw), 0, "{:?}", gw.db().messages());
    let audited = gw
        .db()
        .audit()
        .into_iter()
        .filter(|a| a.data.contains("smuggling"))
        .count();
    assert!(audited > payloads.len(), "smuggling audited: {audited}");
    // The gateway still serves proper sessions.
    let msg = signed();
    let id = send_accepted(srv.port, &msg, "not accepted");
    assert_stored(&gw, &id, &msg);
    assert_eq!(count_accepted(&gw), 1);
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 6. Size
// ---------------------------------------------------------------------------

/// An unsigned message of exactly `size` bytes, CRLF lines, no leading dots.
fn message_of_size(size: usize) -> Vec<u8> {
    let mut m = headers(ALICE, &[BOB]);
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
    while m.len() + 78 <= size {
        m.extend_from_slice(&[b'x'; 76]);
        m.extend_from_slice(b"\r\n");
    }
    let rest = size - m.len();
    assert!(rest >= 2 || rest == 0);
    if rest > 0 {
        m.extend(std::iter::repeat_n(b'y', rest - 2));
        m.extend_from_slice(b"\r\n");
    }
    assert_eq!(m.len(), size);
    m
}

#[test]
fn oversized_data_is_refused_without_buffering_it() {
    let (gw, srv) = Gateway::serve(Opts::default());
    // Warm up with one normal message, then take the baseline.
    let msg = signed();
    let (r, t) = send(srv.port, ALICE, &[BOB], &msg);
    assert!(r.accepted_id().is_some(), "{t}");
    let before = srv.proc_status_kb("VmHWM");

    // 20 MB of DATA without SIZE=, sent as fast as the server takes it.
    let mut c = srv.connect();
    c.ehlo();
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let mut w = c.try_clone_stream();
    let started = Instant::now();
    let writer = std::thread::spawn(move || -> (usize, Option<String>) {
        let mut chunk = headers(ALICE, &[BOB]);
        chunk.extend_from_slice(b"\r\n");
        let line = [[b'z'; 98].as_slice(), b"\r\n"].concat();
        let mut block = Vec::new();
        while block.len() < 64 * 1024 {
            block.extend_from_slice(&line);
        }
        let mut sent = 0;
        if let Err(e) = w.write_all(&chunk) {
            return (sent, Some(e.to_string()));
        }
        while sent < 20 * 1024 * 1024 {
            if let Err(e) = w.write_all(&block) {
                return (sent, Some(e.to_string()));
            }
            sent += block.len();
        }
        match w.write_all(b".\r\n") {
            Ok(()) => (sent, None),
            Err(e) => (sent, Some(e.to_string())),
        }
    });
    let (sent, write_err) = writer.join().unwrap();
    let r = c.read_reply();
    let elapsed = started.elapsed();
    let after = srv.proc_status_kb("VmHWM");
    eprintln!(
        "20 MB DATA: sent {sent} bytes in {elapsed:?} (write error: {write_err:?}); \
         VmHWM {before} kB -> {after} kB"
    );
    let r = r.unwrap_or_else(|e| panic!("no reply ({e}):\n{}", c.transcript));
    c.assert_reply(&r, 552, "5.3.4 too-large: ");
    let grew = after.saturating_sub(before) * 1024;
    assert!(
        grew < 4 * LIMIT as u64,
        "peak RSS grew by {grew} bytes while refusing a 20 MB message (limit {LIMIT})"
    );
    c.quit();

    // One byte over the limit, without SIZE=.
    let big = message_of_size(LIMIT + 1);
    let (r, t) = send(srv.port, ALICE, &[BOB], &big);
    assert_eq!(r.code, 552, "{t}");
    assert!(r.text().starts_with("5.3.4 too-large: "), "{t}");
    // Exactly at the limit it is judged on its merits (unsigned).
    let (r, t) = send(srv.port, ALICE, &[BOB], &message_of_size(LIMIT));
    assert_eq!(r.code, 550, "{t}");
    assert!(r.text().starts_with("5.7.1 unsigned: "), "{t}");
    assert_eq!(count_accepted(&gw), 1);
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 7. STARTTLS
// ---------------------------------------------------------------------------

#[test]
fn starttls_required_then_accepted_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = tls_server_cert(certs.path());
    let (gw, srv) = Gateway::serve(Opts {
        require_tls: true,
        tls: Some((cert, key)),
        ..Opts::default()
    });

    let mut c = srv.connect();
    let e = c.ehlo();
    assert!(
        e.lines.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")),
        "{}",
        c.transcript
    );
    c.expect(&format!("MAIL FROM:<{ALICE}>"), 530, "5.7.0 ");
    c.quit();

    let msg = signed();
    let (code, out) = swaks(srv.port, ALICE, BOB, &msg, &["-tls"]);
    assert_eq!(code, Some(0), "swaks -tls:\n{out}");
    let id = id_in_transcript(&out).unwrap_or_else(|| panic!("no `accepted as`:\n{out}"));
    let m = assert_stored(&gw, &id, &msg);
    let v = m.tls_version.clone().unwrap_or_default();
    assert!(v.starts_with("TLSv1."), "tls_version {v:?}: {m:?}");
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 8. Session limit and idle timeout
// ---------------------------------------------------------------------------

#[test]
fn session_limit_answers_421_immediately() {
    let (gw, srv) = serve_with("max_sessions = 2\n");
    let a = srv.connect();
    let mut b = srv.connect();
    assert_eq!(a.greeting.as_ref().unwrap().code, 220);
    assert_eq!(b.greeting.as_ref().unwrap().code, 220);

    let t0 = Instant::now();
    let mut c = Client::connect_raw(srv.port).expect("connect");
    c.set_timeout(Duration::from_secs(2));
    let r = c.read_reply();
    let waited = t0.elapsed();
    let r = r.unwrap_or_else(|e| panic!("third session: no reply ({e}):\n{}", c.transcript));
    c.assert_reply(&r, 421, "4.3.2 ");
    assert!(waited < Duration::from_secs(1), "421 after {waited:?}");
    assert!(c.closed_within(Duration::from_secs(1)), "{}", c.transcript);

    a.quit();
    // The freed slot is taken by the next connection.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut d = loop {
        let mut d = Client::connect_raw(srv.port).expect("connect");
        d.set_timeout(Duration::from_secs(2));
        let g = d.read_reply().expect("greeting");
        if g.code == 220 {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "slot not freed: {}",
            d.transcript
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    d.set_timeout(Duration::from_secs(30));
    d.ehlo();
    let msg = signed();
    let r = d.transaction(ALICE, &[BOB], &msg);
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", d.transcript));
    assert_stored(&gw, &id, &msg);
    d.quit();
    assert_eq!(b.ehlo().code, 250, "the idle session still works");
    b.quit();
}

#[test]
fn idle_session_times_out_with_421() {
    let (_gw, srv) = serve_with("command_timeout_secs = 2\n");
    let mut c = srv.connect();
    c.ehlo();
    let t0 = Instant::now();
    c.set_timeout(Duration::from_secs(5));
    let r = c.read_reply();
    let waited = t0.elapsed();
    let r = r.unwrap_or_else(|e| panic!("no 421 ({e}) after {waited:?}:\n{}", c.transcript));
    c.assert_reply(&r, 421, "4.4.2 ");
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(3),
        "421 after {waited:?}"
    );
    assert!(c.closed_within(Duration::from_secs(1)), "{}", c.transcript);
}

// ---------------------------------------------------------------------------
// 9. SIGTERM
// ---------------------------------------------------------------------------

#[test]
fn sigterm_lets_a_transaction_finish_then_exits_0() {
    let gw = Gateway::new(Opts {
        top_extra: "shutdown_grace_secs = 10\n".into(),
        ..Opts::default()
    });
    let mut srv = gw.start();
    let mut idle = srv.connect();
    idle.ehlo();
    let mut c = srv.connect();
    c.ehlo();
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{BOB}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let msg = signed();
    let wire = dot_stuff(&msg);
    // Stop half-way, in the middle of a line: the server must keep the
    // part of the line it has already read.
    let half = wire.len() / 2;
    let half = half + find(&wire[half..], b"\r\n").unwrap() + 2 + 10;
    c.send_raw(&wire[..half]).unwrap();
    // Let the server read it before the signal.
    std::thread::sleep(Duration::from_millis(200));

    srv.signal("TERM");
    // The idle session is told and closed.
    idle.set_timeout(Duration::from_secs(3));
    let r = idle.read_reply();
    let t = idle.transcript.clone();
    let r = r.unwrap_or_else(|e| panic!("idle session: no 421 ({e}):\n{t}"));
    assert_eq!(r.code, 421, "{t}");
    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "{}",
        idle.transcript
    );
    // New connections are refused (or told 421 and closed, never greeted).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match Client::connect_raw(srv.port) {
            Err(_) => break,
            Ok(mut n) => {
                n.set_timeout(Duration::from_secs(1));
                if let Ok(g) = n.read_reply() {
                    assert_ne!(g.code, 220, "greeted after SIGTERM");
                }
                assert!(
                    Instant::now() < deadline,
                    "still accepting after SIGTERM: {}",
                    n.transcript
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // The transaction in DATA finishes.
    c.send_raw(&wire[half..]).unwrap();
    c.send_raw(b".\r\n").unwrap();
    let r = c.read_reply();
    let t = c.transcript.clone();
    let r = r.unwrap_or_else(|e| panic!("no reply to the final dot ({e}):\n{t}"));
    let id = r.accepted_id().unwrap_or_else(|| panic!("{t}"));
    let _ = c.try_cmd("QUIT");
    let st = srv.wait_exit(Duration::from_secs(15));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "exit status {st:?}:\n{}",
        srv.stderr()
    );
    assert_stored(&gw, &id, &msg);
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 10. SIGKILL under load
// ---------------------------------------------------------------------------

#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    const TOTAL: usize = 200;
    const SESSIONS: usize = 5;
    let gw = Gateway::new(Opts::default());
    let mut srv = gw.start();
    // One signature, many messages: the outer headers (outside the signed
    // part) differ, so every message has its own bytes and digest. Each goes
    // to its own recipient: to one that had it already, it would be a replay.
    let entity = sign(Tool::SmimeDetached, "aa", "alice", &text_body(), &[]);
    let rcpt = |i: usize| format!("official{i}@justice.bb.example");
    let msgs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..TOTAL)
            .map(|i| crlf(&with_headers(ALICE, &[&rcpt(i)], &entity)))
            .collect(),
    );
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let attempted = Arc::new(AtomicUsize::new(0));
    let port = srv.port;
    let deadline = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..SESSIONS)
        .map(|w| {
            let (msgs, acked, attempted) = (msgs.clone(), acked.clone(), attempted.clone());
            std::thread::spawn(move || -> Vec<String> {
                let mut log = Vec::new();
                let Ok(mut c) = Client::connect_raw(port) else {
                    return log;
                };
                if c.read_reply().is_err() || c.try_cmd("EHLO load.test").is_err() {
                    return log;
                }
                for i in (w..TOTAL).step_by(SESSIONS) {
                    if Instant::now() > deadline {
                        break;
                    }
                    attempted.fetch_add(1, Ordering::Relaxed);
                    match try_send(&mut c, &rcpt(i), &msgs[i]) {
                        Ok(r) => match r.accepted_id() {
                            Some(id) => acked.lock().unwrap().push((id, sha256_hex(&msgs[i]))),
                            None => {
                                log.push(format!("message {i}: {r}"));
                                let _ = c.try_cmd("RSET");
                            }
                        },
                        Err(e) => {
                            log.push(format!("message {i}: {e}"));
                            break;
                        }
                    }
                }
                log
            })
        })
        .collect();
    // Kill once a good part has been acknowledged.
    while acked.lock().unwrap().len() < TOTAL / 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.kill();
    let logs: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "SIGKILL after {} acknowledged of {} attempted; worker notes: {logs:?}",
        acked.len(),
        attempted.load(Ordering::Relaxed)
    );
    assert!(acked.len() >= TOTAL / 4, "load did not get going: {logs:?}");
    let unexpected: Vec<_> = logs
        .iter()
        .filter(|l| l.contains(": 4") || l.contains(": 5"))
        .collect();
    assert!(unexpected.is_empty(), "refusals under load: {unexpected:?}");

    // Restart on the same data.
    let srv2 = gw.start();
    let db = gw.db();
    let rows = db.messages();
    for (id, sha) in &acked {
        let m = rows
            .iter()
            .find(|m| &m.id == id)
            .unwrap_or_else(|| panic!("acknowledged {id} lost after SIGKILL"));
        assert_eq!(&m.sha256, sha, "{m:?}");
        assert_eq!(m.verdict, "accept", "{m:?}");
    }
    // Every row (acknowledged or not: at-least-once) is complete.
    assert!(rows.len() <= TOTAL, "{} rows", rows.len());
    assert_rows_complete(&gw, &rows);
    eprintln!(
        "after restart: {} rows for {} acknowledged",
        rows.len(),
        acked.len()
    );
    gw.assert_audit_intact();
    // And the restarted gateway accepts mail.
    let msg = signed();
    let id = send_accepted(srv2.port, &msg, "not accepted");
    assert_stored(&gw, &id, &msg);
}

/// MAIL FROM Alice, RCPT TO `rcpt`, DATA `msg`: the first reply that is not
/// 250, or the reply to the data.
fn try_send(c: &mut Client, rcpt: &str, msg: &[u8]) -> std::io::Result<Reply> {
    let r = c.try_cmd(&format!("MAIL FROM:<{ALICE}>"))?;
    if r.code != 250 {
        return Ok(r);
    }
    let r = c.try_cmd(&format!("RCPT TO:<{rcpt}>"))?;
    if r.code != 250 {
        return Ok(r);
    }
    c.try_data(msg)
}

/// Every row is an accepted message with its body, audit events and queue
/// entry.
fn assert_rows_complete(gw: &Gateway, rows: &[MessageRow]) {
    let db = gw.db();
    let (audit, queue) = (db.audit(), db.queue());
    for m in rows {
        assert_eq!(m.verdict, "accept", "{m:?}");
        let body = std::fs::read(gw.body_path(&m.sha256))
            .unwrap_or_else(|e| panic!("row {} without body ({e})", m.id));
        assert_eq!(sha256_hex(&body), m.sha256, "body of {} corrupt", m.id);
        assert!(
            audit
                .iter()
                .any(|a| a.message_id.as_deref() == Some(m.id.as_str())),
            "row {} without audit events",
            m.id
        );
        assert!(
            queue.iter().any(|q| q.message_id == m.id),
            "accepted row {} without queue entry",
            m.id
        );
    }
}

// ---------------------------------------------------------------------------
// 11. Database unavailable (PostgreSQL)
// ---------------------------------------------------------------------------

#[test]
fn database_unavailable_gives_451_never_250() {
    let pg = PgDb::create();
    let (gw, srv) = Gateway::serve(Opts {
        database_url: Some(pg.url.clone()),
        ..Opts::default()
    });
    let msg = signed();
    let id1 = send_accepted(srv.port, &msg, "not accepted");

    pg.allow_connections(false);
    let down = signed();
    let (r, t) = send(srv.port, ALICE, &[BOB], &down);
    assert_ne!(r.code, 250, "accepted while the database is down:\n{t}");
    assert_eq!(r.code, 451, "{t}");
    assert!(r.text().starts_with("4.3.0 temporary-failure: "), "{t}");

    pg.allow_connections(true);
    let again = signed();
    let id3 = send_accepted(srv.port, &again, "after recovery");
    assert_stored(&gw, &id1, &msg);
    assert_stored(&gw, &id3, &again);
    let sha = sha256_hex(&down);
    assert!(
        gw.db().messages().iter().all(|m| m.sha256 != sha),
        "the 451'd message was recorded"
    );
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// 12. Disk full
// ---------------------------------------------------------------------------

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not root".into());
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_gives_451() {
    let mnt = tempfile::Builder::new()
        .prefix("emla-it-full-")
        .tempdir()
        .unwrap();
    let fs = match Tmpfs::mount(mnt.path(), "2m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED disk_full_gives_451: cannot mount a tmpfs ({e})");
            return;
        }
    };
    let (gw, srv) = Gateway::serve(Opts {
        data_dir: Some(fs.0.join("data")),
        ..Opts::default()
    });
    let msg = signed();
    let id1 = send_accepted(srv.port, &msg, "not accepted");

    // Fill the file system.
    let filler = fs.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 16 * 1024];
        for _ in 0..1024 {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }
    let full = signed();
    let (r, t) = send(srv.port, ALICE, &[BOB], &full);
    assert_ne!(r.code, 250, "accepted on a full disk:\n{t}");
    assert_eq!(r.code, 451, "{t}");
    assert!(r.text().starts_with("4.3.0 temporary-failure: "), "{t}");

    std::fs::remove_file(&filler).unwrap();
    let again = signed();
    let id3 = send_accepted(srv.port, &again, "after freeing space");
    assert_stored(&gw, &id1, &msg);
    assert_stored(&gw, &id3, &again);
    gw.assert_audit_intact();
    drop(srv);
}

// ---------------------------------------------------------------------------
// 13. Policy reload
// ---------------------------------------------------------------------------

/// The reply to `RCPT TO:<to>` after `MAIL FROM:<from>`, in a new session.
fn rcpt_reply(port: u16, from: &str, to: &str) -> (Reply, String) {
    let mut c = Client::connect(port);
    c.ehlo();
    let m = c.cmd(&format!("MAIL FROM:<{from}>"));
    assert_eq!(m.code, 250, "{}", c.transcript);
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    let t = c.transcript.clone();
    c.quit();
    (r, t)
}

#[test]
fn sighup_reloads_the_policy_and_keeps_it_when_broken() {
    let policy = PolicyCopy::new();
    let (gw, srv) = Gateway::serve(Opts {
        policy_dir: policy.0.clone(),
        ..Opts::default()
    });
    let (r, t) = rcpt_reply(srv.port, BOB, ALICE);
    assert_eq!(r.code, 250, "bb -> aa before the change:\n{t}");

    // bb-to-aa: relay -> reject.
    let routes = policy.0.join("routes.toml");
    let text = std::fs::read_to_string(&routes).unwrap();
    let from = "name = \"bb-to-aa\"\nfrom = \"authority:bb-moj\"\nto = \"authority:aa-moj\"\naction = \"relay\"";
    assert!(text.contains(from), "{text}");
    let text = text.replace(
        from,
        "name = \"bb-to-aa\"\nfrom = \"authority:bb-moj\"\nto = \"authority:aa-moj\"\n\
         action = \"reject\"\nreason = \"suspended\"",
    );
    std::fs::write(&routes, text).unwrap();
    // The edited policy still passes `emla policy check`.
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_emla"))
            .args(["policy", "check"])
            .arg(&policy.0),
    );
    srv.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (r, t) = loop {
        let (r, t) = rcpt_reply(srv.port, BOB, ALICE);
        if r.code != 250 || Instant::now() > deadline {
            break (r, t);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.code, 550, "after SIGHUP:\n{t}\n{}", srv.stderr());
    assert!(r.text().starts_with("5.7.1 route-denied: "), "{t}");
    let (r, t) = rcpt_reply(srv.port, ALICE, BOB);
    assert_eq!(r.code, 250, "aa -> bb unchanged:\n{t}");
    assert!(
        gw.db().audit().iter().any(|a| a.kind == "policy.reloaded"),
        "{:?}",
        gw.db().audit()
    );

    // A broken policy: the last good one stays.
    std::fs::write(&routes, "[[route]\nname = \n").unwrap();
    srv.signal("HUP");
    eventually(Duration::from_secs(5), Duration::from_millis(100), || {
        let audit = gw.db().audit();
        let failed = |a: &AuditRow| a.kind.contains("reload") && a.kind.contains("fail");
        if audit.iter().any(failed) {
            Ok(())
        } else {
            Err(format!(
                "no reload-failed audit row: {audit:?}\n{}",
                srv.stderr()
            ))
        }
    });
    let (r, t) = rcpt_reply(srv.port, BOB, ALICE);
    assert_eq!(r.code, 550, "{t}");
    assert!(r.text().starts_with("5.7.1 route-denied: "), "{t}");
    let msg = signed();
    let id = send_accepted(srv.port, &msg, "not accepted");
    assert_stored(&gw, &id, &msg);
    gw.assert_audit_intact();
}

#[test]
fn client_outside_allowed_clients_is_refused_and_audited() {
    let policy = PolicyCopy::new();
    let aa = policy.0.join("authorities/aa-moj.toml");
    let text = std::fs::read_to_string(&aa).unwrap();
    let text = text.replacen(
        "\ndomains = ",
        "\nallowed_clients = [\"192.0.2.0/24\", \"2001:db8::/32\"]\ndomains = ",
        1,
    );
    std::fs::write(&aa, text).unwrap();
    let (gw, srv) = Gateway::serve(Opts {
        policy_dir: policy.0.clone(),
        ..Opts::default()
    });
    let mut c = srv.connect();
    c.ehlo();
    let r = c.expect(
        &format!("MAIL FROM:<{ALICE}>"),
        550,
        "5.7.1 unauthorized-client: ",
    );
    assert!(
        r.text().contains("127.0.0.1"),
        "names the client: {}",
        c.transcript
    );
    c.cmd("RSET");
    // Another authority without a list still accepts this client.
    let r = c.cmd(&format!("MAIL FROM:<{BOB}>"));
    assert_eq!(r.code, 250, "{}", c.transcript);
    c.quit();
    let rejected = gw.db().early_rejections();
    assert!(
        rejected
            .iter()
            .any(|a| a.data.contains("unauthorized-client") && a.data.contains("127.0.0.1")),
        "{rejected:#?}"
    );
    gw.assert_audit_intact();
}
