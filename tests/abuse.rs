//! End-to-end tests of the limits that keep one abusive client from taking
//! the intake from the other authorities (issue #11, "Abusive clients"):
//! the hard error limit, junk commands, the command cap, the session
//! lifetime and the per-client-address session cap, with the audit log
//! getting one record per kind of refusal and one summary per session
//! instead of one record per refused command. A signed message accepted
//! once is not relayed again when replayed. And the data directory is
//! private: MLA requests are not for other local users to read.
//!
//! Requirements: those of `tests/support` and `tests/intake.rs` (swaks).

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smtp::*;
use support::*;

/// A recipient outside every authority: each RCPT is refused.
const STRANGER: &str = "someone@nowhere.example";

/// The default options with these top-level `keys` (the limits).
fn limits(keys: &str) -> Opts {
    Opts {
        top_extra: format!("{keys}\n"),
        ..Opts::default()
    }
}

/// The `smtp.session-summary` records, waiting a little for the session's
/// end to be recorded.
fn summaries(gw: &Gateway, expected: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<serde_json::Value> = gw
            .db()
            .audit()
            .into_iter()
            .filter(|a| a.kind == "smtp.session-summary")
            .map(|a| serde_json::from_str(&a.data).expect("audit data is JSON"))
            .collect();
        if found.len() >= expected || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The gateway's `421` that closes `c`'s session, and the close.
fn closing_reply(c: &mut Client) -> Reply {
    let r = c.read_reply().expect("the closing reply");
    assert_eq!(r.code, 421, "{}", c.transcript);
    assert!(c.closed_within(Duration::from_secs(2)), "{}", c.transcript);
    r
}

/// `n` refused RCPTs in one session: the session is closed at the hard
/// error limit, one refusal is recorded on its own and the rest are counted
/// in the summary.
#[test]
fn refused_recipients_hit_the_hard_error_limit_and_are_summed_up() {
    let (gw, _srv, mut c) = Gateway::greeted(limits("hard_error_limit = 5"));
    assert_eq!(c.cmd(&format!("MAIL FROM:<{ALICE}>")).code, 250);
    for i in 1..=5 {
        let r = c.cmd(&format!("RCPT TO:<{STRANGER}>"));
        assert!(r.code >= 500, "RCPT {i}: {}", c.transcript);
    }
    let r = closing_reply(&mut c);
    assert!(r.text().contains("too many errors"), "{}", c.transcript);

    let refusals: Vec<_> = gw
        .db()
        .early_rejections()
        .into_iter()
        .filter(|a| a.data.contains(STRANGER))
        .collect();
    assert_eq!(refusals.len(), 1, "one record for five equal refusals");
    let s = summaries(&gw, 1);
    assert_eq!(s.len(), 1, "one summary");
    assert_eq!(s[0]["closed"], "hard-error-limit");
    let repeated = s[0]["repeated_refusals"]
        .as_array()
        .expect("repeated_refusals");
    assert_eq!(repeated.len(), 1, "{repeated:?}");
    assert_eq!(repeated[0]["stage"], "rcpt");
    assert_eq!(repeated[0]["count"], 4);
    assert_eq!(s[0]["session"]["client_ip"], "127.0.0.1");
    gw.assert_audit_intact();
}

/// Unknown commands are errors too; swaks, a real client, sees the 421.
#[test]
fn unknown_commands_hit_the_hard_error_limit() {
    let (gw, srv) = Gateway::serve(limits("hard_error_limit = 3"));
    let mut c = srv.connect();
    for _ in 0..3 {
        assert_eq!(c.cmd("XYZZY").code, 500, "{}", c.transcript);
    }
    closing_reply(&mut c);

    // swaks sends RCPTs for each of its comma-separated recipients.
    let many = [STRANGER; 4].join(",");
    let (_, out) = swaks(
        srv.port,
        ALICE,
        &many,
        &alice_to_bob(Tool::SmimeDetached),
        &[],
    );
    assert!(out.contains("<** 421 4.7.0 too many errors"), "{out}");
    assert_eq!(
        summaries(&gw, 2).len(),
        2,
        "each closed session is summed up"
    );
}

/// NOOP, RSET, VRFY, EXPN and HELP count as errors past the junk limit.
#[test]
fn junk_commands_past_their_limit_count_as_errors() {
    let (_gw, srv) = Gateway::serve(limits("junk_command_limit = 3\nhard_error_limit = 2"));
    let mut c = srv.connect();
    for cmd in ["NOOP", "RSET", "NOOP", "NOOP"] {
        assert_eq!(c.cmd(cmd).code, 250, "{cmd}: {}", c.transcript);
    }
    assert_eq!(c.cmd("NOOP").code, 250, "{}", c.transcript);
    closing_reply(&mut c);
}

/// A session may send `max_commands` commands; a message is accepted
/// before the cap, and its acceptance is not undone by it.
#[test]
fn the_command_cap_closes_the_session() {
    let (gw, _srv, mut c) = Gateway::greeted(limits("max_commands = 5"));
    let msg = alice_to_bob(Tool::SmimeDetached);
    let r = c.transaction(ALICE, &[BOB], &msg); // MAIL, RCPT, DATA, the dot
    assert!(r.accepted_id().is_some(), "{}", c.transcript);
    assert_eq!(c.cmd("NOOP").code, 250, "{}", c.transcript);
    let r = closing_reply(&mut c);
    assert!(r.text().contains("too many commands"), "{}", c.transcript);
    let s = summaries(&gw, 1);
    assert_eq!(s[0]["closed"], "command-limit", "{s:?}");
    assert_eq!(gw.db().messages().len(), 1);
}

/// A client that keeps a session alive with NOOPs is closed at the end of
/// its lifetime.
#[test]
fn a_session_is_closed_at_the_end_of_its_lifetime() {
    let (gw, srv) = Gateway::serve(limits("max_session_secs = 2"));
    let t0 = Instant::now();
    let mut c = srv.connect();
    c.ehlo();
    let r = loop {
        std::thread::sleep(Duration::from_millis(300));
        let r = c
            .try_cmd("NOOP")
            .expect("the session answers until it closes");
        if r.code != 250 {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(6), "{}", c.transcript);
    };
    assert_eq!(r.code, 421, "{}", c.transcript);
    assert!(
        r.text().starts_with("4.4.2 session too long"),
        "{}",
        c.transcript
    );
    let lived = t0.elapsed();
    assert!(lived >= Duration::from_secs(2), "closed after {lived:?}");
    assert_eq!(summaries(&gw, 1)[0]["closed"], "lifetime");
}

/// One address holding its share of sessions gets `421`; another address
/// is still served.
#[test]
fn sessions_are_capped_per_client_address() {
    let (_gw, srv) = Gateway::serve(limits("max_sessions_per_client = 2"));
    let a = Ipv4Addr::new(127, 0, 0, 1);
    let held: Vec<Client> = (0..2)
        .map(|_| Client::connect_from(srv.port, a).expect("connect"))
        .collect();
    for c in &held {
        assert_eq!(c.greeting.as_ref().unwrap().code, 220, "{}", c.transcript);
    }
    let third = Client::connect_from(srv.port, a).expect("connect");
    let g = third.greeting.as_ref().unwrap();
    assert_eq!(g.code, 421, "{}", third.transcript);
    assert!(g
        .text()
        .starts_with("4.7.0 Too many sessions from your address"));

    let mut other = Client::connect_from(srv.port, Ipv4Addr::new(127, 0, 0, 2)).expect("connect");
    assert_eq!(
        other.greeting.as_ref().unwrap().code,
        220,
        "{}",
        other.transcript
    );
    other.ehlo();
    let r = other.transaction(ALICE, &[BOB], &alice_to_bob(Tool::SmimeDetached));
    assert!(r.accepted_id().is_some(), "{}", other.transcript);

    // A slot given back is taken again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let c = Client::connect_from(srv.port, a).expect("connect");
        if c.greeting.as_ref().unwrap().code == 220 {
            break;
        }
        assert!(Instant::now() < deadline, "slot not given back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Started with umask 022 on a data directory made `0755`, the gateway
/// narrows it to `0700` and creates every file `0600`: the database and its
/// journals, message bodies, revocation state.
#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    // The child inherits it: the usual umask, under which files are 0644.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let gw = Gateway::new(Opts::default());
    std::fs::create_dir_all(&gw.data_dir).unwrap();
    std::fs::set_permissions(&gw.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let srv = gw.start();
    let mut c = srv.connect();
    c.ehlo();
    let r = c.transaction(ALICE, &[BOB], &alice_to_bob(Tool::SmimeDetached));
    assert!(r.accepted_id().is_some(), "{}", c.transcript);
    c.quit();
    assert_eq!(gw.body_files().len(), 1, "the body is on disk");

    let mut seen = 0;
    let mut dirs = vec![gw.data_dir.clone()];
    while let Some(dir) = dirs.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}: {mode:o}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}: {mode:o}", path.display());
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 2,
        "the database and the body at least ({seen} files)"
    );
}

/// A copy of the test policy with `lines` added to `[limits]` (the last
/// table of its `gateway.toml`), beside the original so its relative paths
/// hold.
fn policy_with_limits(name: &str, lines: &str) -> std::path::PathBuf {
    let p = pki();
    let dir = p.dir.join(format!("policy-{name}-{}", std::process::id()));
    if !dir.exists() {
        copy_dir(&p.policy(), &dir);
        let g = dir.join("gateway.toml");
        let text = std::fs::read_to_string(&g).unwrap();
        std::fs::write(&g, format!("{text}{lines}\n")).unwrap();
    }
    dir
}

fn send_once(srv: &Server, msg: &[u8]) -> Reply {
    let mut c = srv.connect();
    c.ehlo();
    let r = c.transaction(ALICE, &[BOB], msg);
    c.quit();
    r
}

/// The same signed message again gets the first id and is neither recorded
/// nor queued again, also with a header added outside the signed part; the
/// replay is audited on the first message.
#[test]
fn a_replayed_message_gets_its_first_id_and_is_not_relayed_again() {
    let gw = Gateway::new(Opts::default());
    let srv = gw.start();
    let msg = alice_to_bob(Tool::SmimeDetached);
    let first = send_once(&srv, &msg);
    let id = first.accepted_id().expect("first submission accepted");
    assert_eq!(first.text(), format!("2.0.0 accepted as {id}"));

    let rewrapped = [b"X-Resent-By: mallory\r\n".as_slice(), &msg].concat();
    for (what, again) in [("the same bytes", &msg), ("a header added", &rewrapped)] {
        let r = send_once(&srv, again);
        assert_eq!(r.code, 250, "{what}: {}", r.text());
        assert_eq!(
            r.text(),
            format!("2.0.0 already accepted as {id}"),
            "{what}"
        );
    }
    // An MTA that splits one message into transactions per recipient sends
    // the same bytes to another recipient: that is no replay.
    let mut c = srv.connect();
    c.ehlo();
    let split = c.transaction(ALICE, &[BEA], &msg);
    c.quit();
    let split_id = split
        .accepted_id()
        .expect("the other recipient's copy is accepted");
    assert_ne!(split_id, id);
    assert_eq!(split.text(), format!("2.0.0 accepted as {split_id}"));

    let db = gw.db();
    assert_eq!(
        db.messages().len(),
        2,
        "replays are not recorded as messages"
    );
    assert_eq!(db.queue().len(), 2, "nor queued");
    let dups: Vec<_> = db
        .audit()
        .into_iter()
        .filter(|a| a.kind == "message.duplicate")
        .collect();
    assert_eq!(dups.len(), 2);
    for d in &dups {
        assert_eq!(d.message_id.as_deref(), Some(id.as_str()));
        let data: serde_json::Value = serde_json::from_str(&d.data).unwrap();
        assert_eq!(data["mail_from"], ALICE);
        assert_eq!(data["signature_sha256"].as_array().map(Vec::len), Some(1));
    }
    gw.assert_audit_intact();
}

/// Under `replay = "refuse"` a replay is refused as `replay` and recorded
/// as a rejected message.
#[test]
fn a_replay_is_refused_when_the_policy_says_so() {
    let gw = Gateway::new(Opts {
        policy_dir: policy_with_limits("replay-refuse", "replay = \"refuse\""),
        ..Opts::default()
    });
    let srv = gw.start();
    let msg = alice_to_bob(Tool::SmimeDetached);
    let id = send_once(&srv, &msg).accepted_id().expect("accepted");
    let r = send_once(&srv, &msg);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(
        r.text().starts_with(&format!(
            "5.7.0 replay: this signature was already accepted as {id}"
        )),
        "{}",
        r.text()
    );
    let rows = gw.db().messages();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].reason, "replay");
    assert_eq!(gw.db().queue().len(), 1, "the replay is not queued");
}

/// An ESC sequence in a header field (RFC 2047-encoded, so it passes SMTP)
/// reaches the log as it is, but every renderer writes it out instead of
/// letting the auditor's terminal obey it: the table, CSV and the timeline.
#[test]
fn control_characters_are_shown_not_obeyed() {
    let gw = Gateway::new(Opts::default());
    let srv = gw.start();
    // ESC [2K ESC [1G: erase the line and paint a fake verdict over it.
    let subject = "Subject: =?utf-8?q?case_7=1B=5B2K=1B=5B1GACCEPT_ok?=\r\n";
    let msg = replace_once(
        &alice_to_bob(Tool::SmimeDetached),
        b"Subject: MLA request 2026/0042\r\n",
        subject.as_bytes(),
    );
    let id = send_once(&srv, &msg).accepted_id().expect("accepted");
    let config = gw.config.clone();
    for args in [
        vec!["audit", "search"],
        vec!["audit", "search", "--csv"],
        vec!["audit", "show", id.as_str()],
    ] {
        let (code, out) = emla_cli(&args, &config);
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(
            !out.contains('\u{1b}'),
            "{args:?} printed a raw ESC:\n{out}"
        );
        assert!(
            out.contains("\\x1b[2K\\x1b[1GACCEPT"),
            "{args:?} shows it:\n{out}"
        );
    }
    // JSON escapes it by itself (\u001b).
    let (_, json) = emla_cli(&["audit", "search", "--json"], &config);
    assert!(
        !json.contains('\u{1b}') && json.contains("\\u001b"),
        "{json}"
    );
}
