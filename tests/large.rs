//! End-to-end tests of large messages (docs/large-messages.md): above the
//! in-memory threshold (1 MiB) a message is spooled to the data directory
//! while received, verified from its file, stored by moving the spool file
//! into place and relayed in chunks. The real binary, a real client and an
//! `aiosmtpd` sink (`tests/support/sink.py`) on loopback; the relayed copy
//! must be the received bytes behind one `Received:` line and pass
//! `openssl smime -verify`.
//!
//! Requirements beyond `tests/support`: Python `aiosmtpd` (PyPI).

#[path = "support/sink.rs"]
mod sink;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::Path;
use std::time::Duration;

use sink::*;
use smtp::*;
use support::*;

const MIB: usize = 1 << 20;

/// A policy relaying bb-moj to the sink at `port`, with `max_message_size`
/// raised to 64 MiB.
fn large_policy(port: u16) -> PolicyCopy {
    let p = PolicyCopy::new();
    p.edit(
        "authorities/bb-moj.toml",
        "url = \"smtp://127.0.0.1:2626\"",
        &format!("url = \"smtp://127.0.0.1:{port}\""),
    );
    p.edit(
        "gateway.toml",
        "max_message_size = 1048576",
        &format!("max_message_size = {}", 64 * MIB),
    );
    p
}

/// A gateway on `policy`, relaying.
fn relaying(policy: &PolicyCopy) -> Gateway {
    Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        relay: Some("poll_ms = 100".into()),
        ..Opts::default()
    })
}

/// A detached-signed message from alice to bob of about `size` bytes: a
/// base64 attachment in lines of 76 characters, as evidence travels.
fn evidence(size: usize) -> Vec<u8> {
    let mut entity = b"Content-Type: multipart/mixed; boundary=\"ev\"\r\n\r\n--ev\r\n\
        Content-Type: text/plain\r\n\r\nEvidence for case 2026/0042.\r\n--ev\r\n\
        Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let mut n = 0u32;
    while entity.len() < size {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let line: String = (0..76)
            .map(|i| {
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                alphabet[((n >> (i % 24)) as usize + i) % 64] as char
            })
            .collect();
        entity.extend_from_slice(line.as_bytes());
        entity.extend_from_slice(b"\r\n");
    }
    entity.extend_from_slice(b"--ev--\r\n");
    let signed = sign(Tool::SmimeDetached, "aa", "alice", &entity, &[]);
    crlf(&with_headers(ALICE, &[BOB], &signed))
}

fn spool_files(data: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(data.join("spool")) {
        Ok(d) => d.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_large_message_is_spooled_stored_and_relayed_byte_for_byte() {
    let sink = Sink::start(&[]);
    let policy = large_policy(sink.port);
    let gw = relaying(&policy);
    let srv = gw.start();
    let msg = evidence(30 * MIB);
    assert!(msg.len() > 30 * MIB);
    let before = srv.proc_status_kb("VmHWM");
    let (r, t) = send(srv.port, ALICE, &[BOB], &msg);
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted:\n{t}\n{}", srv.stderr()));
    // Stored whole under its hash; nothing left in the spool.
    let stored = std::fs::read(gw.body_path(&sha256_hex(&msg))).unwrap();
    assert!(
        stored == msg,
        "the stored body differs from the sent message"
    );
    assert!(
        spool_files(&gw.data_dir).is_empty(),
        "{:?}",
        spool_files(&gw.data_dir)
    );
    let got = sink.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "not relayed:\n{}", srv.stderr());
    assert_relayed_exactly(&got[0], &msg, &id);
    // Received and relayed in bounded memory (a debug build: generous).
    let grew = srv.proc_status_kb("VmHWM").saturating_sub(before) * 1024;
    eprintln!("30 MiB message: VmHWM grew by {} KiB", grew / 1024);
    assert!(
        grew < 24 * MIB as u64,
        "peak RSS grew by {grew} bytes for a {} byte message",
        msg.len()
    );
    gw.assert_audit_intact();
}

#[test]
fn large_messages_are_refused_for_what_is_wrong_with_them() {
    let sink = Sink::start(&[]);
    let policy = large_policy(sink.port);
    let gw = relaying(&policy);
    let srv = gw.start();
    let msg = evidence(3 * MIB);

    // One base64 character changed in the signed attachment.
    let mut at = find(&msg, b"Content-Transfer-Encoding: base64\r\n\r\n").unwrap() + 40 + MIB;
    while !msg[at].is_ascii_alphanumeric() {
        at += 1;
    }
    let mut tampered = msg.clone();
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let (r, t) = send(srv.port, ALICE, &[BOB], &tampered);
    assert_eq!(r.code, 550, "{t}");
    assert!(r.text().contains("digest-mismatch"), "{t}");

    // A header section longer than max_header_size (64 KiB).
    let mut long_header = b"X-Padding: ".to_vec();
    for _ in 0..2000 {
        long_header.extend_from_slice(b"0123456789012345678901234567890123456789\r\n ");
    }
    long_header.extend_from_slice(b"end\r\n");
    long_header.extend_from_slice(&msg);
    let (r, t) = send(srv.port, ALICE, &[BOB], &long_header);
    assert_eq!(r.code, 552, "{t}");
    assert!(
        r.text()
            .contains("header section of the message is more than 65536 bytes"),
        "{t}"
    );

    // A base64 line of 2 MiB: refused by the line rule, memory bounded.
    let before = srv.proc_status_kb("VmHWM");
    let mut huge_line = msg[..find(&msg, b"\r\n\r\n").unwrap() + 4].to_vec();
    huge_line.extend(std::iter::repeat_n(b'A', 2 * MIB));
    huge_line.extend_from_slice(b"\r\n");
    let (r, t) = send(srv.port, ALICE, &[BOB], &huge_line);
    assert_eq!(r.code, 550, "{t}");
    assert!(r.text().contains("exceeds 998 characters"), "{t}");
    let grew = srv.proc_status_kb("VmHWM").saturating_sub(before) * 1024;
    assert!(
        grew < 2 * MIB as u64,
        "peak RSS grew by {grew} bytes for one long line"
    );

    // An opaque signed-data body over what is verified in memory (32 MiB).
    let mut opaque = headers(ALICE, &[BOB]);
    opaque.extend_from_slice(
        b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data; \
          name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = [[b'M'; 76].as_slice(), b"\r\n"].concat();
    while opaque.len() < 33 * MIB {
        opaque.extend_from_slice(&line);
    }
    let (r, t) = send(srv.port, ALICE, &[BOB], &opaque);
    assert_eq!(r.code, 552, "{t}");
    assert!(
        r.text().contains("send large evidence as multipart/signed"),
        "{t}"
    );

    assert!(sink.messages().is_empty(), "a refused message was relayed");
    assert!(
        spool_files(&gw.data_dir).is_empty(),
        "{:?}",
        spool_files(&gw.data_dir)
    );
}

#[test]
fn stale_spool_files_are_removed_at_start() {
    let gw = Gateway::new(Opts::default());
    let spool = gw.data_dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // A process id no process has (pid_max is at most 2^22).
    let stale = spool.join("4194305.0.spool");
    std::fs::write(&stale, b"half a message").unwrap();
    let srv = gw.start();
    assert!(!stale.exists(), "{}", srv.stderr());
}
