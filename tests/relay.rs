//! End-to-end tests of the relay: `emla serve` accepts a signed message
//! from a real client and delivers it to a real counterpart MTA (a Python
//! `aiosmtpd` sink, `tests/support/sink.py`, on a loopback port); the
//! delivered bytes must be the received ones with one `Received:` line in
//! front and must still pass `openssl smime -verify`. Also: retry after the
//! next hop was down, permanent refusal, SIGKILL mid-delivery, required and
//! pinned TLS, and `emla queue`.
//!
//! Requirements beyond `tests/support`: Python `aiosmtpd` (PyPI).

#[path = "support/proc.rs"]
mod proc;
#[path = "support/sink.rs"]
mod sink;
#[path = "support/smtp.rs"]
mod smtp;
mod support;
#[path = "support/tsa.rs"]
mod tsa_support;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sink::*;
use smtp::*;
use support::*;

/// A policy whose bb-moj next hop is 127.0.0.1:`port` with `tls` lines,
/// retrying after a second.
fn policy_to(port: u16, tls: &str) -> PolicyCopy {
    let p = PolicyCopy::new();
    p.edit(
        "authorities/bb-moj.toml",
        "url = \"smtp://127.0.0.1:2626\"\ntls = \"opportunistic\"",
        &format!("url = \"smtp://127.0.0.1:{port}\"\n{tls}"),
    );
    let gw = p.0.join("gateway.toml");
    let mut text = std::fs::read_to_string(&gw).unwrap();
    text += "\n[relay]\nretry_initial_secs = 1\nretry_max_secs = 2\nconnect_timeout_secs = 5\n";
    std::fs::write(&gw, text).unwrap();
    p
}

fn relaying(policy: &PolicyCopy, extra: &str) -> Gateway {
    Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        relay: Some(format!("poll_ms = 100\n{extra}")),
        ..Opts::default()
    })
}

/// `emla queue ARGS --config …`: exit code and stdout.
fn queue_cli(gw: &Gateway, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emla"))
        .arg("queue")
        .args(args)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn queue_entries(gw: &Gateway) -> Vec<Value> {
    let (code, out, err) = queue_cli(gw, &["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A policy whose next hop (at the returned free port, opportunistic TLS)
/// is down until a sink is started there.
fn next_hop_down() -> (u16, PolicyCopy) {
    let port = free_port();
    (port, policy_to(port, "tls = \"opportunistic\""))
}

/// `relaying(policy, "")`, started.
fn start_relaying(policy: &PolicyCopy) -> (Gateway, Server) {
    let gw = relaying(policy, "");
    let srv = gw.start();
    (gw, srv)
}

/// `start_relaying(policy)`, then one signed message sent: its id and bytes.
fn relay_one(policy: &PolicyCopy) -> (Gateway, Server, String, Vec<u8>) {
    let (gw, srv) = start_relaying(policy);
    let (id, msg) = send_signed(srv.port);
    (gw, srv, id, msg)
}

/// `policy_to(port)` with the next hop's certificate pinned to `pin`.
fn pinned_to(port: u16, pin: &str) -> PolicyCopy {
    policy_to(port, &format!("tls = \"pinned\"\npin_sha256 = \"{pin}\""))
}

/// After the gateway holding `held` (a connection to the silent next hop
/// `silent`) was killed: reads until the connection closes, then closes
/// both, freeing the port.
fn close_after_kill(mut held: std::net::TcpStream, silent: TcpListener) {
    let mut buf = [0u8; 1];
    let _ = held.read(&mut buf);
    drop(held);
    drop(silent);
}

/// Waits until the single queue entry satisfies `pred`.
fn wait_entry(gw: &Gateway, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let q = queue_entries(gw);
        assert_eq!(q.len(), 1, "{q:#?}");
        if pred(&q[0]) || Instant::now() > deadline {
            return q[0].clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_signed(port: u16) -> (String, Vec<u8>) {
    let msg = alice_to_bob(Tool::SmimeDetached);
    let (r, t) = send(port, ALICE, &[BOB], &msg);
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted:\n{t}"));
    (id, msg)
}

/// Waits until the single queue entry has had its first delivery attempt.
fn first_attempt(gw: &Gateway) -> Value {
    wait_entry(gw, Duration::from_secs(10), |e| {
        e["attempts"].as_i64() >= Some(1)
    })
}

/// After the first delivery attempt: asserts the single entry is still
/// queued (deferred) and returns its `last_error`.
fn deferred_error(gw: &Gateway) -> String {
    let e = first_attempt(gw);
    assert_eq!(e["status"], "accepted", "{e:#}");
    e["last_error"].as_str().expect("a last_error").to_string()
}

/// A CA and a server certificate for 127.0.0.1 issued by it (P-256):
/// `(ca.pem, server.pem, server.key)`.
fn next_hop_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key) = tls_server_cert_for(dir, "DNS:next-hop-ca.test");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_ok(
        Command::new(openssl())
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    run_ok(
        Command::new(openssl())
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-extfile"])
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
    );
    (ca, cert, key)
}

#[test]
fn relays_byte_for_byte_and_the_copy_verifies() {
    let sink = Sink::start(&[]);
    let policy = policy_to(sink.port, "tls = \"opportunistic\"");
    let (gw, srv, id, msg) = relay_one(&policy);
    assert_relayed_once(&sink, &srv, &id, &msg);
    let env = sink.envelope(1);
    assert_eq!(env["mail_from"], ALICE);
    assert_eq!(env["rcpt_tos"], serde_json::json!([BOB]));

    let e = wait_entry(&gw, Duration::from_secs(5), |e| e["status"] == "relayed");
    assert_eq!(e["status"], "relayed", "{e:#}");
    assert_eq!(e["attempts"], 1, "{e:#}");
    // The sink's "250 2.0.0 stored as 0001" is no form an MTA writes: no
    // queue id, the reply kept whole (below).
    assert!(e["next_hop_queue_id"].is_null(), "{e:#}");
    let mut delivered = gw.db().audit_of("relay.delivered");
    delivered.retain(|a| a.message_id.as_deref() == Some(&id));
    assert_eq!(delivered.len(), 1, "{:#?}", gw.db().audit());
    let data: Value = serde_json::from_str(&delivered[0].data).unwrap();
    assert_eq!(
        data["recipients"][0]["outcome"]["result"], "relayed",
        "{data:#}"
    );
    assert_eq!(data["recipients"][0]["outcome"]["code"], 250, "{data:#}");
    assert_eq!(data["next_hop"], format!("127.0.0.1:{}", sink.port));

    let (code, table, _) = queue_cli(&gw, &["list"]);
    assert_eq!(code, Some(0));
    assert!(table.contains(&id) && table.contains("relayed"), "{table}");
    // The older name still filters, and says the new one.
    let (code, table, err) = queue_cli(&gw, &["list", "--status", "delivered"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.contains(&id), "{table}");
    assert!(
        err.contains("--status delivered: the state is now called relayed"),
        "{err}"
    );
    // Two more, one after the other: the open session is reused.
    send_signed(srv.port);
    sink.wait_for(2, Duration::from_secs(20));
    send_signed(srv.port);
    assert_eq!(sink.wait_for(3, Duration::from_secs(20)).len(), 3);
    let peers: std::collections::BTreeSet<String> = (1..=3)
        .map(|n| sink.envelope(n)["peer"].to_string())
        .collect();
    assert_eq!(
        peers.len(),
        1,
        "one SMTP session for three messages: {peers:?}"
    );
    let qid = e["id"].to_string();
    let (code, show, _) = queue_cli(&gw, &["show", &qid]);
    assert_eq!(code, Some(0));
    assert!(show.contains("relay.delivered"), "{show}");
    assert!(
        show.contains("stored as 0001"),
        "the next hop's reply: {show}"
    );
    gw.assert_audit_intact();
}

#[test]
fn next_hop_down_then_up_is_delivered_after_retry() {
    let (port, policy) = next_hop_down();
    let (gw, srv, id, msg) = relay_one(&policy);
    let err = deferred_error(&gw);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "names the next hop: {err}"
    );

    let sink = Sink::start_on(port, &[]);
    assert_relayed_once(&sink, &srv, &id, &msg);
    let e = wait_entry(&gw, Duration::from_secs(5), |e| e["status"] == "relayed");
    assert!(e["attempts"].as_i64() >= Some(2), "{e:#}");
    let kinds: Vec<String> = gw
        .db()
        .audit_about(&id)
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert!(kinds.contains(&"relay.deferred".to_string()), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("relay.delivered"),
        "{kinds:?}"
    );
    gw.assert_audit_intact();
}

#[test]
fn deferred_data_is_retried_and_permanent_refusal_fails() {
    let sink = Sink::start(&["--defer", "1", "--refuse-rcpt", BEA]);
    let policy = policy_to(sink.port, "tls = \"opportunistic\"");
    let (gw, srv) = start_relaying(&policy);
    // 451 to the first DATA, then delivered.
    let (id, msg) = send_signed(srv.port);
    assert_relayed_once(&sink, &srv, &id, &msg);
    let e = wait_entry(&gw, Duration::from_secs(5), |e| e["status"] == "relayed");
    assert_eq!(e["attempts"], 2, "{e:#}");

    // 550 to the only recipient: failed at once, no retry.
    let to_bea = mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[BEA]);
    let (r, t) = send(srv.port, ALICE, &[BEA], &to_bea);
    let id2 = r.accepted_id().unwrap_or_else(|| panic!("{t}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let q = queue_entries(&gw);
        let e = q.iter().find(|e| e["message_id"] == id2.as_str()).cloned();
        if let Some(e) = e.filter(|e| e["status"] != "accepted") {
            break e;
        }
        assert!(Instant::now() < deadline, "{q:#?}\n{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(failed["attempts"], 1, "{failed:#}");
    let err = failed["last_error"].as_str().unwrap();
    assert!(err.contains("550") && err.contains("no such user"), "{err}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.messages().len(), 1, "nothing more delivered");
    gw.assert_audit_intact();
}

#[test]
fn sigkill_during_delivery_then_delivered_after_restart() {
    // A next hop that accepts the connection and never greets: the attempt
    // hangs until the gateway is killed.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let policy = policy_to(port, "tls = \"opportunistic\"");
    let gw = relaying(&policy, "");
    let mut srv = gw.start();
    let (id, msg) = send_signed(srv.port);
    silent.set_nonblocking(false).unwrap();
    let (held, _) = silent.accept().unwrap();
    let e = wait_entry(&gw, Duration::from_secs(5), |e| !e["claimed_by"].is_null());
    assert_eq!(e["status"], "accepted", "{e:#}");
    assert!(
        !e["claimed_by"].is_null(),
        "claimed while delivering: {e:#}"
    );
    srv.kill();
    close_after_kill(held, silent);

    let sink = Sink::start_on(port, &[]);
    let srv = gw.start();
    assert_relayed_once(&sink, &srv, &id, &msg);
    let e = wait_entry(&gw, Duration::from_secs(5), |e| e["status"] == "relayed");
    assert_eq!(e["status"], "relayed", "{e:#}");
    gw.assert_audit_intact();
}

#[test]
fn required_tls_validates_and_pinned_tls_checks_the_pin() {
    let certs = tempfile::tempdir().unwrap();
    let (ca_cert, cert, key) = next_hop_pki(certs.path());
    let sink = Sink::start(&[
        "--tls",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        "--require-tls",
    ]);
    let ca = ca_cert.display().to_string();

    // Required, with the sink's CA: delivered over TLS.
    let policy = policy_to(sink.port, &format!("tls = \"required\"\nca_file = {ca:?}"));
    let (gw, srv, id, msg) = relay_one(&policy);
    assert_relayed_once(&sink, &srv, &id, &msg);
    assert_eq!(sink.envelope(1)["tls"], true);
    // The sink has the message before the gateway records the next hop's 250.
    let data: Value = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let audit = gw.db().audit();
        let d = audit.iter().find(|a| a.kind == "relay.delivered");
        d.map(|d| serde_json::from_str(&d.data).unwrap())
            .ok_or_else(|| "no relay.delivered record".to_string())
    });
    assert_eq!(data["tls"]["verification"], "validated", "{data:#}");
    drop(srv);

    // Required against the system roots: the self-signed certificate fails,
    // and the message is deferred, never sent in plain text.
    let policy = policy_to(sink.port, "tls = \"required\"");
    let (gw, srv, _, _) = relay_one(&policy);
    let err = deferred_error(&gw);
    assert!(err.contains("STARTTLS failed"), "{err}");
    drop(srv);

    // Pinned: the right pin delivers, a wrong one defers.
    let der = run_ok(
        Command::new(openssl())
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert),
    );
    let pin = sha256_hex(&der);
    let policy = pinned_to(sink.port, &pin);
    let (gw, srv, _, _) = relay_one(&policy);
    let e = wait_entry(&gw, Duration::from_secs(10), |e| e["status"] != "accepted");
    assert_eq!(e["status"], "relayed", "{e:#}\n{}", srv.stderr());
    drop(srv);

    let wrong = "00".repeat(32);
    let policy = pinned_to(sink.port, &wrong);
    let (gw, srv, _, _) = relay_one(&policy);
    let err = deferred_error(&gw);
    assert!(
        err.contains(&format!("does not match the pinned {wrong}")),
        "{err}"
    );
    assert!(err.contains(&pin), "names the certificate seen: {err}");
    drop(srv);
    assert_eq!(
        sink.messages().len(),
        2,
        "only the validated and the pinned one"
    );
}

#[test]
fn queue_cancel_and_retry_are_audited_with_exit_codes() {
    let (_, policy) = next_hop_down();
    let (gw, srv, id, _) = relay_one(&policy);
    let e = first_attempt(&gw);
    let qid = e["id"].to_string();

    let (code, out, err) = queue_cli(&gw, &["cancel", &qid]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cancelled"), "{out}");
    let (code, _, err) = queue_cli(&gw, &["cancel", &qid]);
    assert_eq!(code, Some(1), "cancelling twice: {err}");
    assert!(err.contains("is cancelled"), "{err}");
    let (code, _, err) = queue_cli(&gw, &["show", "999999"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no queue entry 999999"), "{err}");
    let (code, _, err) = queue_cli(&gw, &["list", "--status", "sent"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--status \"sent\""), "{err}");

    // Cancelled stays cancelled: no more attempts.
    let attempts = e["attempts"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let e = wait_entry(&gw, Duration::ZERO, |_| true);
    assert_eq!(e["status"], "cancelled", "{e:#}");
    assert!(e["attempts"].as_i64().unwrap() <= attempts + 1, "{e:#}");

    let (code, _, err) = queue_cli(&gw, &["retry", &qid]);
    assert_eq!(code, Some(1), "retry of a cancelled entry: {err}");

    let kinds: Vec<(String, String)> = gw
        .db()
        .audit_about(&id)
        .into_iter()
        .map(|a| (a.kind, a.data))
        .collect();
    let cancel = kinds
        .iter()
        .find(|(k, _)| k == "queue.cancelled")
        .unwrap_or_else(|| panic!("{kinds:#?}"));
    assert!(cancel.1.contains("\"operator\""), "{cancel:?}");
    drop(srv);
    gw.assert_audit_intact();
}

/// [`policy_with_receipts`], but aa-moj (the sender's authority) wants no
/// receipts.
fn policy_without_aa_receipts(port: u16) -> PolicyCopy {
    let policy = policy_with_receipts(port);
    policy.edit(
        "authorities/aa-moj.toml",
        "\ndomains = ",
        "\nreceipts = []\ndomains = ",
    );
    policy
}

/// `policy_to(port)` with aa-moj's next hop at the same sink (receipts go
/// to the sender's authority) and the gateway signing as its postmaster.
fn policy_with_receipts(port: u16) -> PolicyCopy {
    gateway_policy("aa", port, port)
}

/// A policy whose aa-moj next hop is `aa_port` and bb-moj's `bb_port`, the
/// gateway signing as `postmaster@justice.CC.example` with country `cc`'s
/// gateway identity (`certs/CC/gateway.pem`).
fn gateway_policy(cc: &str, aa_port: u16, bb_port: u16) -> PolicyCopy {
    let p = policy_to(bb_port, "tls = \"opportunistic\"");
    p.edit(
        "authorities/aa-moj.toml",
        "url = \"smtp://127.0.0.1:2626\"",
        &format!("url = \"smtp://127.0.0.1:{aa_port}\""),
    );
    p.edit(
        "gateway.toml",
        "[gateway]\n",
        &format!(
            "[gateway]\npostmaster = \"postmaster@justice.{cc}.example\"\n\
             signing_cert = \"../certs/{cc}/gateway.pem\"\n\
             signing_key = \"../certs/{cc}/gateway.key\"\n"
        ),
    );
    p
}

#[test]
fn acceptance_and_delivery_receipts_are_signed_and_relayed_to_the_sender() {
    let sink = Sink::start(&[]);
    let policy = policy_with_receipts(sink.port);
    let (gw, srv, id, msg) = relay_one(&policy);

    let to_bob = delivered_to(&sink, BOB, 1);
    assert_eq!(to_bob.len(), 1, "{}", srv.stderr());
    assert_relayed_exactly(to_bob[0].1.as_bytes(), &msg, &id);
    let receipts = delivered_to(&sink, ALICE, 2);
    assert_eq!(
        receipts.len(),
        2,
        "two receipts for Alice:\n{}",
        srv.stderr()
    );
    let mut subjects = Vec::new();
    for (env, r) in &receipts {
        assert_eq!(env["mail_from"], "<>", "null reverse-path: {env}");
        assert_eq!(
            header(r, "From"),
            Some("postmaster@justice.aa.example"),
            "{r}"
        );
        assert_eq!(header(r, "X-Emla-Message-Id"), Some(id.as_str()), "{r}");
        assert_eq!(header(r, "Auto-Submitted"), Some("auto-replied"), "{r}");
        assert!(
            r.contains(&sha256_hex(&msg)),
            "names the message's SHA-256: {r}"
        );
        assert!(
            openssl_verifies(r.as_bytes(), "aa"),
            "the receipt verifies with openssl:\n{r}"
        );
        // And it is no forgery: a changed hash in the signed text fails.
        let sha = sha256_hex(&msg);
        let forged = r.replacen(&sha, &sha.to_uppercase(), 1);
        assert!(!openssl_verifies(forged.as_bytes(), "aa"));
        subjects.push(header(r, "Subject").unwrap_or_default().to_owned());
    }
    subjects.sort();
    assert!(subjects[0].starts_with("Accepted: "), "{subjects:?}");
    assert!(subjects[1].starts_with("Relayed: "), "{subjects:?}");

    // Audited on the original, delivered like any message, and not answered.
    let audit = gw.db().audit();
    let queued: Vec<_> = audit
        .iter()
        .filter(|a| a.kind == "receipt.queued" && a.message_id.as_deref() == Some(&id))
        .collect();
    assert_eq!(queued.len(), 2, "{audit:#?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.messages().len(), 3, "no receipt for a receipt");
    let q = queue_entries(&gw);
    assert_eq!(q.len(), 3, "{q:#?}");
    assert!(q.iter().all(|e| e["status"] == "relayed"), "{q:#?}");
    assert_eq!(
        q.iter().filter(|e| e["route"] == "receipt").count(),
        2,
        "{q:#?}"
    );
    gw.assert_audit_intact();
}

/// With `[evidence] tsa_url`: receipts carry a token the README's openssl
/// commands verify and `receipt.queued` says `granted`; with the TSA down
/// they still go out, without one, and the audit says `unavailable`.
#[test]
fn receipts_carry_a_timestamp_or_the_audit_says_why_not() {
    let tsa = tsa_support::Server::start();
    let ca = tsa_support::tsa_pki().ca();
    let down = format!("http://127.0.0.1:{}/", tsa_support::closed_port());
    for (url, status) in [(tsa.url("/good"), "granted"), (down, "unavailable")] {
        let sink = Sink::start(&[]);
        let policy = policy_with_receipts(sink.port);
        let gw = Gateway::new(Opts {
            policy_dir: policy.0.clone(),
            relay: Some("poll_ms = 100\n".into()),
            extra_toml: format!(
                "[evidence]\ntsa_url = \"{url}\"\ntsa_ca = \"{}\"\ntsa_timeout_secs = 3\n",
                ca.display()
            ),
            ..Opts::default()
        });
        let srv = gw.start();
        let (id, _) = send_signed(srv.port);
        let receipts = delivered_to(&sink, ALICE, 2);
        assert_eq!(receipts.len(), 2, "{status}: {}", srv.stderr());
        let queued: Vec<Value> = gw
            .db()
            .audit()
            .iter()
            .filter(|a| a.kind == "receipt.queued" && a.message_id.as_deref() == Some(&id))
            .map(|a| serde_json::from_str(&a.data).unwrap())
            .collect();
        assert_eq!(queued.len(), 2);
        for q in &queued {
            assert_eq!(q["timestamp"]["status"], status, "{q}");
        }
        for (_, r) in &receipts {
            assert!(openssl_verifies(r.as_bytes(), "aa"), "{r}");
            let mut der = Vec::new();
            edit_cms(r.as_bytes(), |d| der = d.clone());
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("smime.p7s");
            std::fs::write(&file, &der).unwrap();
            let out = tsa_support::readme_check(&file, &ca);
            assert_eq!(
                out.status.success(),
                status == "granted",
                "{status}: {out:?}"
            );
        }
        gw.assert_audit_intact();
    }
}

/// Asserts that `notice` verifies with openssl and says each of `said`,
/// and that `emla audit verify --receipt` finds the record it names;
/// returns what that said.
fn assert_signed_and_anchored(gw: &Gateway, notice: &str, said: &[&str]) -> String {
    assert!(
        openssl_verifies(notice.as_bytes(), "aa"),
        "signed:\n{notice}"
    );
    for s in said {
        assert!(notice.contains(s), "{s:?} missing:\n{notice}");
    }
    let (code, out) = verify_receipt(gw, notice);
    assert_eq!(code, Some(0), "{out}\n{notice}");
    assert!(out.contains("receipt matches the log"), "{out}");
    out
}

/// `emla audit verify --receipt FILE --config …`: exit code and output.
fn verify_receipt(gw: &Gateway, receipt: &str) -> (Option<i32>, String) {
    let file = gw
        .data_dir
        .join(format!("receipt-{}.eml", sha256_hex(receipt.as_bytes())));
    std::fs::write(&file, receipt).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(["audit", "verify", "--receipt"])
        .arg(&file)
        .arg("--config")
        .arg(&gw.config)
        .output()
        .unwrap();
    (out.status.code(), output_text(&out))
}

#[test]
fn a_bundle_whose_log_was_truncated_after_the_receipt_was_issued_is_detected_by_audit_verify_receipt(
) {
    let sink = Sink::start(&[]);
    let policy = policy_with_receipts(sink.port);
    let gw = relaying(&policy, "");
    // A signed checkpoint of the empty log, which the receipts then name.
    let cp = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(["audit", "checkpoint", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(cp.status.success(), "{}", output_text(&cp));
    let srv = gw.start();
    let (id, msg) = send_signed(srv.port);
    let receipts = delivered_to(&sink, ALICE, 2);
    assert_eq!(receipts.len(), 2, "{}", srv.stderr());
    drop(srv);
    for (_, r) in &receipts {
        assert!(r.contains("receipt.json") && r.contains("\"audit\""), "{r}");
        assert!(r.contains("Checkpoint:     signed at record 0"), "{r}");
        let (code, out) = verify_receipt(&gw, r);
        assert_eq!(code, Some(0), "{out}\n{r}");
        assert!(out.contains("receipt matches the log"), "{out}");
    }
    let accepted = gw
        .db()
        .audit()
        .into_iter()
        .find(|a| a.kind == "message.accepted" && a.message_id.as_deref() == Some(&id))
        .expect("the decision record");
    // The auditors' tools name each event's EN 319 522-1 counterpart.
    let show = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_emla"));
        cmd.args(["audit", "show", &id, "--config"]).arg(&gw.config);
        if json {
            cmd.arg("--json");
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&show(true)).unwrap();
    let rem = |kind: &str| {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["rem_event"].clone())
    };
    assert_eq!(
        rem("message.accepted"),
        Some("SubmissionAcceptance".into()),
        "{v}"
    );
    assert_eq!(
        rem("relay.delivered"),
        Some("RelayAcceptance".into()),
        "{v}"
    );
    assert_eq!(rem("receipt.queued"), Some(Value::Null), "{v}");
    assert!(show(false).contains("message.accepted [SubmissionAcceptance]"));

    // A forged receipt (its signed text changed) is refused.
    let (_, acceptance) = receipts
        .iter()
        .find(|(_, r)| r.contains("Subject: Accepted"))
        .expect("the acceptance receipt");
    let sha = sha256_hex(&msg);
    let forged = acceptance.replacen(&sha, &sha.to_uppercase(), 1);
    let (code, out) = verify_receipt(&gw, &forged);
    assert_eq!(code, Some(1), "{out}");

    // Cut the log just before the decision and make the head agree: the
    // chain alone still verifies, every receipt does not.
    let before = accepted.seq - 1;
    let db = gw.data_dir.join("emla.db");
    let sql = format!(
        "DELETE FROM audit WHERE seq > {before}; UPDATE audit_head SET seq = {before}, \
         hash = ifnull((SELECT hash FROM audit WHERE seq = {before}), '{}') WHERE id = 1;",
        "0".repeat(64)
    );
    let done = Command::new("sqlite3").arg(&db).arg(&sql).status().unwrap();
    assert!(done.success());
    let (code, out) = gw.audit_verify();
    assert_eq!(
        code,
        Some(0),
        "a clean truncation fools the chain alone: {out}"
    );
    for (_, r) in &receipts {
        let (code, out) = verify_receipt(&gw, r);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("does NOT match the log"), "{out}");
        assert!(
            out.contains("truncated"),
            "names what does not match: {out}"
        );
        assert!(out.contains(&id), "{out}");
    }
}

/// `dsn` is a delivery status report about `recipient` that says each of
/// `says`.
fn assert_status_report(dsn: &str, recipient: &str, says: &[&str]) {
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    let final_recipient = format!("Final-Recipient: rfc822; {recipient}");
    for text in says.iter().copied().chain([final_recipient.as_str()]) {
        assert!(dsn.contains(text), "{text:?} missing from:\n{dsn}");
    }
}

#[test]
fn permanent_refusal_sends_a_signed_delivery_status_notification() {
    let sink = Sink::start(&["--refuse-rcpt", BEA]);
    let policy = policy_with_receipts(sink.port);
    let (gw, srv) = start_relaying(&policy);
    let to_bea = mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[BEA]);
    let (r, t) = send(srv.port, ALICE, &[BEA], &to_bea);
    let id = r.accepted_id().unwrap_or_else(|| panic!("{t}"));

    let to_alice = delivered_to(&sink, ALICE, 2);
    assert_eq!(to_alice.len(), 2, "{}", srv.stderr());
    let dsn = to_alice
        .iter()
        .map(|(_, m)| m)
        .find(|m| m.contains("multipart/report"))
        .unwrap_or_else(|| panic!("no DSN among {to_alice:#?}"));
    // "no such user": the next hop's reply.
    let says = ["Action: failed", "Status: 5.1.1", "no such user"];
    assert_status_report(dsn, BEA, &says);
    assert!(dsn.contains("text/rfc822-headers"), "{dsn}");
    assert!(
        openssl_verifies(dsn.as_bytes(), "aa"),
        "the DSN verifies:\n{dsn}"
    );
    assert!(dsn.contains("X-Emla-Evidence: RelayFailure\r\n"), "{dsn}");
    let (code, out) = verify_receipt(&gw, dsn);
    assert_eq!(
        code,
        Some(0),
        "the DSN names its relay.failed record: {out}"
    );
    assert!(out.contains("relay.failed"), "{out}");
    assert!(
        !to_alice
            .iter()
            .any(|(_, m)| header(m, "Subject").is_some_and(|s| s.starts_with("Relayed"))),
        "no delivery receipt for a refused message"
    );
    let failed = gw
        .db()
        .audit()
        .into_iter()
        .any(|a| a.kind == "relay.failed" && a.message_id.as_deref() == Some(&id));
    assert!(failed);
    gw.assert_audit_intact();
}

#[test]
fn two_instances_share_the_queue_and_one_takes_over_when_the_other_dies() {
    assert!(
        postgres_available(),
        "PostgreSQL at {}",
        postgres_admin_url()
    );
    let pg = PgDb::create();
    // A next hop that greets nobody: instance A's attempt hangs on it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let policy = policy_to(port, "tls = \"opportunistic\"");
    let instance = |name: &str| {
        Gateway::new(Opts {
            policy_dir: policy.0.clone(),
            database_url: Some(pg.url.clone()),
            relay: Some(format!(
                "instance_id = \"{name}\"\nlease_secs = 3\ntransaction_timeout_secs = 2\npoll_ms = 100\n"
            )),
            top_extra: "body_storage = \"database\"\n".into(),
            ..Opts::default()
        })
    };
    let (a, b) = (instance("gw-a"), instance("gw-b"));
    let mut srv_a = a.start();
    let (id, msg) = send_signed(srv_a.port);
    let (held, _) = silent.accept().unwrap();
    let e = wait_entry(&a, Duration::from_secs(5), |e| e["claimed_by"] == "gw-a");
    assert_eq!(e["claimed_by"], "gw-a", "{e:#}");
    // B starts while A holds the claim, then A dies mid-delivery.
    let srv_b = b.start();
    srv_a.kill();
    close_after_kill(held, silent);
    let sink = Sink::start_on(port, &[]);
    // B has none of A's files: the body comes from the shared database.
    assert!(a.body_files().is_empty() && b.body_files().is_empty());
    assert_relayed_once(&sink, &srv_b, &id, &msg);
    let e = wait_entry(&b, Duration::from_secs(5), |e| e["status"] == "relayed");
    assert_eq!(e["status"], "relayed", "{e:#}");
    let by = b.db().audit_of("relay.delivered");
    let by = by.first().map(|r| r.data.as_str()).unwrap_or_default();
    assert!(by.contains("\"instance\":\"gw-b\""), "delivered by B: {by}");

    // Both instances relay a batch from the shared queue, each message once.
    let srv_a = a.start();
    let n = 20;
    for i in 0..n {
        let port = if i % 2 == 0 { srv_a.port } else { srv_b.port };
        send_signed(port);
    }
    let got = sink.wait_for(n + 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(sink.messages().len(), n + 1, "each message exactly once");
    let instances: std::collections::BTreeSet<String> = b
        .db()
        .audit_of("relay.delivered")
        .into_iter()
        .filter_map(|r| {
            let d: Value = serde_json::from_str(&r.data).ok()?;
            d["instance"].as_str().map(str::to_owned)
        })
        .collect();
    assert_eq!(got.len(), n + 1);
    assert!(instances.contains("gw-b"), "{instances:?}");
    b.assert_audit_intact();
}

/// A throwaway Postfix instance (`tests/support/postfix.sh`) relaying to
/// `relay_port`; stopped when dropped.
struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postfix {
    fn start(relay_port: u16) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(support_dir().join("postfix.sh"))
            .arg("start")
            .arg(dir.path())
            .arg(relay_port.to_string())
            .output()
            .expect("run tests/support/postfix.sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let port = text
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "Postfix did not start (root and Debian's postfix package needed): {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        Postfix { dir, port }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(support_dir().join("postfix.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A relaying gateway whose next hop is a Postfix relaying to a sink.
fn through_postfix() -> (Sink, Postfix, PolicyCopy, Gateway, Server) {
    let sink = Sink::start(&[]);
    let postfix = Postfix::start(sink.port);
    let policy = policy_to(postfix.port, "tls = \"opportunistic\"");
    let (gw, srv) = start_relaying(&policy);
    (sink, postfix, policy, gw, srv)
}

#[test]
fn relayed_through_a_real_postfix_the_copy_still_verifies() {
    let (sink, postfix, _policy, gw, srv) = through_postfix();
    let (id, msg) = send_signed(srv.port);
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(
        got.len(),
        1,
        "not delivered through Postfix:\n{}\n{}",
        srv.stderr(),
        std::fs::read_to_string(postfix.dir.path().join("maillog")).unwrap_or_default()
    );
    let delivered = &got[0];
    let at =
        find(delivered, &msg).expect("the sent bytes arrive unchanged behind the trace fields");
    assert_eq!(at + msg.len(), delivered.len());
    let trace = String::from_utf8_lossy(&delivered[..at]);
    assert_eq!(
        trace.matches("Received: ").count(),
        2,
        "Postfix's and emla's: {trace}"
    );
    assert!(trace.contains(&format!(" id {id}")), "{trace}");
    assert!(
        openssl_verifies(delivered, "aa"),
        "the copy Postfix delivered verifies"
    );
    let e = wait_entry(&gw, Duration::from_secs(5), |e| e["status"] == "relayed");
    assert_eq!(e["status"], "relayed", "{e:#}");
    gw.assert_audit_intact();
}

/// Postfix's answer to the data names its queue id ("250 2.0.0 Ok: queued
/// as ID"): the queue entry, `emla queue show`, the attempt's audit record
/// and the delivery receipt carry it, and it is the id Postfix's own log
/// and its `Received:` field give the message.
#[test]
fn the_next_hops_queue_id_from_postfix_is_in_the_queue_the_audit_and_the_receipt() {
    let sink = Sink::start(&[]);
    let postfix = Postfix::start(sink.port);
    // Bob's mail goes through Postfix; Alice's receipts straight to the sink.
    let policy = gateway_policy("aa", sink.port, postfix.port);
    let (gw, srv) = start_relaying(&policy);
    let (id, _) = send_signed(srv.port);
    let maillog =
        || std::fs::read_to_string(postfix.dir.path().join("maillog")).unwrap_or_default();
    let to_bob = delivered_to(&sink, BOB, 1);
    assert_eq!(to_bob.len(), 1, "{}\n{}", srv.stderr(), maillog());
    // Postfix's trace field: "by counterpart.test (Postfix) with ESMTP id ID".
    let copy = &to_bob[0].1;
    let postfix_id = copy
        .split("(Postfix) with ESMTP id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Postfix Received: field in\n{copy}"))
        .trim_end_matches(';')
        .to_owned();
    assert!(
        maillog().contains(&format!("{postfix_id}: ")),
        "Postfix's log knows {postfix_id}:\n{}",
        maillog()
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let q = queue_entries(&gw);
        let e = q.into_iter().find(|e| e["message_id"] == id.as_str());
        if let Some(e) = e.filter(|e| e["status"] == "relayed") {
            break e;
        }
        assert!(Instant::now() < deadline, "not relayed:\n{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(entry["next_hop_queue_id"], postfix_id.as_str(), "{entry:#}");
    let (code, show, err) = queue_cli(&gw, &["show", &entry["id"].to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        show.contains(&format!(
            "relayed as   {postfix_id} (the next hop's queue id)"
        )),
        "{show}"
    );
    assert!(show.contains(&format!("(queue id {postfix_id})")), "{show}");
    let (_, table, _) = queue_cli(&gw, &["list", "--message", &id]);
    assert!(table.contains(&postfix_id), "{table}");

    let attempt = gw
        .db()
        .audit_of("relay.delivered")
        .into_iter()
        .find(|a| a.message_id.as_deref() == Some(&id))
        .expect("the relay's record");
    let data: Value = serde_json::from_str(&attempt.data).unwrap();
    let outcome = &data["recipients"][0]["outcome"];
    assert_eq!(outcome["queue_id"], postfix_id.as_str(), "{data:#}");
    assert_eq!(outcome["state"], "relayed", "{data:#}");
    assert_eq!(data["status"], "relayed", "{data:#}");
    assert!(
        outcome["reply"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("queued as {postfix_id}"))),
        "the full reply is kept: {data:#}"
    );

    let receipts = delivered_to(&sink, ALICE, 2);
    let (_, receipt) = receipts
        .iter()
        .find(|(_, r)| header(r, "X-Emla-Receipt") == Some("delivery"))
        .unwrap_or_else(|| panic!("no delivery receipt:\n{}", srv.stderr()));
    assert_signed_and_anchored(
        &gw,
        receipt,
        &[
            &format!("\"next_hop_queue_id\": \"{postfix_id}\""),
            "\"state\": \"relayed\"",
            &format!(
                "relayed to 127.0.0.1:{}, its queue id {postfix_id}",
                postfix.port
            ),
        ],
    );
    gw.assert_audit_intact();
}

#[test]
fn queue_lifetime_ends_in_failure_and_a_notice_to_the_sender() {
    let sink = Sink::start(&[]);
    let down = free_port();
    // Bob's next hop stays down; Alice's (where notices go) is the sink.
    let policy = policy_with_receipts(sink.port);
    policy.edit(
        "authorities/bb-moj.toml",
        &format!("url = \"smtp://127.0.0.1:{}\"", sink.port),
        &format!("url = \"smtp://127.0.0.1:{down}\""),
    );
    policy.edit(
        "gateway.toml",
        "[relay]\n",
        "[relay]\nqueue_lifetime_secs = 3\nurgent_queue_lifetime_secs = 1\n",
    );
    let (gw, srv, id, _) = relay_one(&policy);
    let to_alice = delivered_to(&sink, ALICE, 2);
    let dsn = to_alice
        .iter()
        .map(|(_, m)| m)
        .find(|m| m.contains("multipart/report"))
        .unwrap_or_else(|| panic!("no notice after the lifetime:\n{}", srv.stderr()));
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    assert!(dsn.contains("queue lifetime"), "{dsn}");
    assert!(
        dsn.contains(&format!("127.0.0.1:{down}")),
        "names the next hop: {dsn}"
    );
    assert!(openssl_verifies(dsn.as_bytes(), "aa"), "{dsn}");
    let q = queue_entries(&gw);
    let e = q.iter().find(|e| e["message_id"] == id.as_str()).unwrap();
    assert_eq!(e["status"], "failed", "{e:#}");
    assert!(
        e["attempts"].as_i64() >= Some(2),
        "retried before giving up: {e:#}"
    );
    assert!(
        e["last_error"]
            .as_str()
            .unwrap()
            .contains("queue lifetime of 3s (normal lane)"),
        "{e:#}"
    );
    gw.assert_audit_intact();
}

/// The delay notices Alice got, by the emla id they are about.
fn delay_notices(sink: &Sink) -> Vec<(String, String)> {
    sink.messages()
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .filter(|m| header(m, "X-Emla-Receipt") == Some("delay"))
        .map(|m| (header(&m, "X-Emla-Message-Id").unwrap_or("").to_owned(), m))
        .collect()
}

/// A next hop that defers every message: after `delay_warning_secs` the
/// sender gets one signed `Action: delayed` notice, not before, and at that
/// time even though the next retry was due a minute later; not again on
/// later retries nor after a restart, and none for a recipient whose
/// NOTIFY leaves out DELAY. The entry stays queued (failure only at the
/// queue lifetime).
#[test]
fn a_deferred_message_gets_one_signed_delay_notice_at_the_warning_time() {
    let alice = Sink::start(&[]);
    let bob = Sink::start(&["--defer", "100000"]);
    let policy = gateway_policy("aa", alice.port, bob.port);
    policy.edit(
        "gateway.toml",
        "[relay]\n",
        "[relay]\ndelay_warning_secs = 3\n",
    );
    policy.edit(
        "gateway.toml",
        "retry_initial_secs = 1\nretry_max_secs = 2\n",
        "retry_initial_secs = 60\nretry_max_secs = 60\n",
    );
    let gw = relaying(&policy, "");
    let mut srv = gw.start();
    let sent = Instant::now();
    let (id, _) = send_with_params(srv.port, "", &[(BOB, "")]);
    let (quiet, _) = send_with_params(srv.port, "", &[(BOB, "NOTIFY=FAILURE")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while delay_notices(&alice).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no delay notice:\n{}",
            srv.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "sent at the warning time (3 s), not {waited:?}"
    );
    let notices = delay_notices(&alice);
    assert_eq!(notices.len(), 1, "{notices:#?}");
    let (about, dsn) = &notices[0];
    assert_eq!(about, &id);
    // "try later": the next hop's reply.
    let says = [
        "Action: delayed\r\nStatus: 4.3.0",
        "Will-Retry-Until: ",
        "try later",
    ];
    assert_status_report(dsn, BOB, &says);
    assert!(!dsn.contains("Action: failed"), "{dsn}");
    assert_signed_and_anchored(
        &gw,
        dsn,
        &[
            "X-Emla-State: delayed\r\n",
            "X-Emla-Audit-Record: relay.deferred; ",
        ],
    );

    // Retried by hand, before and after a restart: still one notice, and
    // still queued.
    let entry = |gw: &Gateway| {
        queue_entries(gw)
            .into_iter()
            .find(|e| e["message_id"] == id.as_str())
            .unwrap()
    };
    let retry = |gw: &Gateway, srv: &Server| {
        let e = entry(gw);
        let before = e["attempts"].as_i64().unwrap();
        let (code, out, err) = queue_cli(gw, &["retry", &e["id"].to_string()]);
        assert_eq!(code, Some(0), "{out}{err}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while entry(gw)["attempts"].as_i64().unwrap() <= before {
            assert!(Instant::now() < deadline, "not retried:\n{}", srv.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    retry(&gw, &srv);
    srv.kill();
    let srv = gw.start();
    retry(&gw, &srv);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(delay_notices(&alice).len(), 1, "only once");
    let e = entry(&gw);
    assert_eq!(e["status"], "delayed", "{e:#}");
    let (code, out, err) = queue_cli(&gw, &["list", "--status", "delayed"]);
    assert_eq!(code, Some(0), "{err}");
    // Both are delayed, the one whose NOTIFY wanted no notice too.
    assert!(out.contains(&id) && out.contains(&quiet), "{out}");
    let (_, out, _) = queue_cli(&gw, &["list", "--status", "accepted"]);
    assert!(!out.contains(&id) && !out.contains(&quiet), "{out}");
    let queued: Vec<Value> = gw
        .db()
        .audit()
        .iter()
        .filter(|a| a.kind == "receipt.queued")
        .map(|a| serde_json::from_str::<Value>(&a.data).unwrap())
        .filter(|d| d["receipt"] == "delay")
        .collect();
    assert_eq!(queued.len(), 1, "audited once: {queued:#?}");
    assert!(
        !delay_notices(&alice).iter().any(|(m, _)| m == &quiet),
        "NOTIFY=FAILURE: no delay notice"
    );
    gw.assert_audit_intact();
}

/// A message the gateway refuses at the end of DATA (unsigned) from an
/// authority that lists `rejection`: the sender gets a signed
/// non-acceptance notice naming the reason and the rejection's audit
/// record (which `emla audit verify --receipt` finds), at most the
/// authority's `rejection_notices_per_hour` (here 3); a null sender and an
/// `Auto-Submitted` message get none.
#[test]
fn a_refused_message_gets_a_signed_rejection_notice_within_the_hourly_limit() {
    let sink = Sink::start(&[]);
    let policy = policy_with_receipts(sink.port);
    policy.edit(
        "authorities/aa-moj.toml",
        "\ndomains = ",
        "\nreceipts = [\"rejection\"]\nrejection_notices_per_hour = 3\ndomains = ",
    );
    let (gw, srv) = start_relaying(&policy);
    let unsigned = |extra: &str| {
        format!(
            "From: {ALICE}\r\nTo: {BOB}\r\nSubject: unsigned\r\n{extra}\
             Message-ID: <u@justice.aa.example>\r\n\r\nhello\r\n"
        )
        .into_bytes()
    };
    let refused = |from: &str, msg: &[u8]| {
        let (r, t) = send(srv.port, from, &[BOB], msg);
        assert!(r.code >= 500, "refused:\n{t}");
    };
    refused("", &unsigned(""));
    refused(ALICE, &unsigned("Auto-Submitted: auto-replied\r\n"));
    refused(ALICE, &unsigned(""));
    let got = delivered_to(&sink, ALICE, 1);
    assert_eq!(got.len(), 1, "{}", srv.stderr());
    let (env, notice) = &got[0];
    assert_eq!(env["mail_from"], "<>", "{env}");
    assert_eq!(
        header(notice, "X-Emla-Receipt"),
        Some("rejection"),
        "{notice}"
    );
    assert!(
        header(notice, "Subject").is_some_and(|s| s.starts_with("Not accepted: ")),
        "{notice}"
    );
    assert!(notice.contains("\"type\": \"rejection\""), "{notice}");
    assert!(notice.contains("\"reason\": \"unsigned\""), "{notice}");
    let out = assert_signed_and_anchored(
        &gw,
        notice,
        &["\"state\": \"rejected\"", "\"kind\": \"message.rejected\""],
    );
    assert!(out.contains("message.rejected of message"), "{out}");

    for _ in 0..5 {
        refused(ALICE, &unsigned(""));
    }
    assert_eq!(delivered_to(&sink, ALICE, 3).len(), 3, "{}", srv.stderr());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.messages().len(), 3, "3 an hour, nothing else");
    let queued = gw
        .db()
        .audit()
        .iter()
        .filter(|a| a.kind == "receipt.queued" && a.data.contains("\"rejection\""))
        .count();
    assert_eq!(queued, 3);
    gw.assert_audit_intact();
}

#[test]
fn an_authority_that_wants_no_receipts_gets_none() {
    let sink = Sink::start(&[]);
    let policy = policy_without_aa_receipts(sink.port);
    let (gw, srv, id, msg) = relay_one(&policy);
    assert_relayed_once(&sink, &srv, &id, &msg);
    wait_entry(&gw, Duration::from_secs(5), |e| e["status"] == "relayed");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.messages().len(), 1, "no receipts");
    assert!(!gw.db().audit().iter().any(|a| a.kind == "receipt.queued"));
}

#[test]
fn a_checkpoint_is_mailed_signed_to_the_auditor() {
    let sink = Sink::start(&[]);
    let policy = policy_without_aa_receipts(sink.port);
    let gw = Gateway::new(Opts {
        extra_toml: format!(
            "\n[audit]\ncheckpoint_interval_secs = 0\ncheckpoint_mail = \"{BEA}\"\n"
        ),
        ..relaying(&policy, "").opts
    });
    let srv = gw.start();
    send_signed(srv.port);
    sink.wait_for(1, Duration::from_secs(20));
    let (code, out) = emla_cli(&["audit", "checkpoint"], &gw.config);
    assert_eq!(code, 0, "{out}");
    let mails = delivered_to(&sink, BEA, 1);
    assert_eq!(mails.len(), 1, "{}", srv.stderr());
    let (env, mail) = &mails[0];
    assert_eq!(env["mail_from"], "<>");
    assert!(
        header(mail, "Subject")
            .unwrap()
            .starts_with("emla audit checkpoint "),
        "{mail}"
    );
    assert!(
        mail.contains("checkpoint-") && mail.contains(".p7s"),
        "{mail}"
    );
    assert!(
        openssl_verifies(mail.as_bytes(), "aa"),
        "signed by the gateway:\n{mail}"
    );
    let cp = gw.db().audit_of("audit.checkpoint").into_iter().next();
    let cp = cp.expect("an audit.checkpoint record");
    assert!(
        cp.data.contains(&format!("\"to\":\"{BEA}\"")),
        "{}",
        cp.data
    );
    gw.assert_audit_intact();
}

// ---------------------------------------------------------------------------
// Envelopes: null reverse-path, DSN, duplicate recipients (issue 11)
// ---------------------------------------------------------------------------

/// Alice's signed message to Bob over a raw session: `MAIL FROM:<alice>`
/// then `mail_params`, one RCPT for each of `rcpts` (address, parameters).
/// Returns the emla id and the message.
fn send_with_params(port: u16, mail_params: &str, rcpts: &[(&str, &str)]) -> (String, Vec<u8>) {
    let msg = alice_to_bob(Tool::SmimeDetached);
    let mut c = Client::connect(port);
    c.ehlo();
    let r = c.cmd(&format!("MAIL FROM:<{ALICE}> {mail_params}"));
    assert_eq!(r.code, 250, "{}", c.transcript);
    for (to, params) in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{to}> {params}"));
        assert_eq!(r.code, 250, "{}", c.transcript);
    }
    let r = c.data(&msg);
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", c.transcript));
    c.quit();
    (id, msg)
}

/// Two emla gateways in series, each the other's counterpart: G1 serves
/// AA and sends BB's mail to G2; G2 serves BB and sends AA's mail (its
/// receipts to Alice) to G1. G2's receipts come from the null
/// reverse-path, signed by BB's gateway identity, which G1's policy trusts
/// as bb-moj's: G1 judges them by their From: and signature and relays them.
#[test]
fn two_gateways_in_series_pass_each_others_signed_receipts() {
    let sink = Sink::start(&[]);
    let (p1, p2) = (free_port(), free_port());
    let policy1 = gateway_policy("aa", sink.port, p2);
    let policy2 = gateway_policy("bb", p1, sink.port);
    let start = |policy: &PolicyCopy, port: u16| {
        let gw = Gateway::new(Opts {
            policy_dir: policy.0.clone(),
            relay: Some("poll_ms = 100\n".into()),
            port,
            ..Opts::default()
        });
        let srv = gw.start();
        (gw, srv)
    };
    let (g1, s1) = start(&policy1, p1);
    let (g2, s2) = start(&policy2, p2);
    let (id, msg) = send_signed(s1.port);

    let to_bob = delivered_to(&sink, BOB, 1);
    assert_eq!(to_bob.len(), 1, "{}\n{}", s1.stderr(), s2.stderr());
    let got = to_bob[0].1.as_bytes();
    let at = find(got, &msg).expect("the sent bytes arrive behind the trace fields");
    let trace = String::from_utf8_lossy(&got[..at]);
    assert_eq!(
        trace.matches("Received: ").count(),
        2,
        "G2's and G1's: {trace}"
    );
    assert!(trace.contains(&format!(" id {id}")), "{trace}");
    assert!(openssl_verifies(got, "aa"));
    // What G2 received: G1's Received: field, then the message.
    let at_g2 = find(got, b"\r\nReceived: ").expect("two trace fields") + 2;
    let received_by_g2 = sha256_hex(&got[at_g2..]);

    // Acceptance and delivery receipts from each gateway.
    let receipts = delivered_to(&sink, ALICE, 4);
    assert_eq!(receipts.len(), 4, "{}\n{}", s1.stderr(), s2.stderr());
    let from_g2: Vec<&String> = receipts
        .iter()
        .filter(|(_, r)| header(r, "From") == Some("postmaster@justice.bb.example"))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(from_g2.len(), 2, "{receipts:#?}");
    for r in &from_g2 {
        assert!(
            openssl_verifies(r.as_bytes(), "bb"),
            "G2's receipt verifies:\n{r}"
        );
        assert!(r.contains(&received_by_g2), "{r}");
    }
    assert!(receipts.iter().all(|(env, _)| env["mail_from"] == "<>"));
    // G1 accepted them from G2 as mail from the null reverse-path.
    let judged: Vec<_> = g1
        .db()
        .messages()
        .into_iter()
        .filter(|m| m.client_ip == "127.0.0.1" && m.mail_from.is_empty())
        .collect();
    assert_eq!(judged.len(), 2, "{judged:#?}");
    assert!(judged.iter().all(|m| m.verdict == "accept"), "{judged:#?}");
    // Nobody answers a receipt: nothing more arrives.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.messages().len(), 5);
    g1.assert_audit_intact();
    g2.assert_audit_intact();
}

/// A real MTA passing DSN on: Postfix takes NOTIFY, ORCPT, RET and ENVID
/// from a client and relays into emla, which offers DSN and records them.
#[test]
fn postfix_relays_dsn_parameters_into_emla_which_records_them() {
    let gw = Gateway::new(Opts::default());
    let srv = gw.start();
    let postfix = Postfix::start(srv.port);
    let (_, msg) = {
        let msg = alice_to_bob(Tool::SmimeDetached);
        let mut c = Client::connect(postfix.port);
        c.ehlo();
        for line in [
            format!("MAIL FROM:<{ALICE}> RET=HDRS ENVID=mla+2D2026-42"),
            format!("RCPT TO:<{BOB}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{BOB}"),
        ] {
            assert_eq!(c.cmd(&line).code, 250, "{}", c.transcript);
        }
        assert_eq!(c.data(&msg).code, 250, "{}", c.transcript);
        c.quit();
        ((), msg)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        if let Some(m) = gw.db().messages().into_iter().next() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "Postfix did not relay into emla:\n{}\n{}",
            srv.stderr(),
            std::fs::read_to_string(postfix.dir.path().join("maillog")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(row.verdict, "accept", "{row:?}");
    assert!(
        row.size > msg.len() as i64,
        "with Postfix's Received: {row:?}"
    );
    let dsn = gw.db().dsn(&row.id).expect("DSN parameters recorded");
    assert_eq!(dsn["ret"], "HDRS", "{dsn}");
    assert_eq!(dsn["envid"], "mla-2026-42", "{dsn}");
    let r = &dsn["recipients"][0];
    assert_eq!(r["recipient"], BOB, "{dsn}");
    assert_eq!(r["notify"], "SUCCESS,FAILURE", "{dsn}");
    assert_eq!(r["orcpt"], format!("rfc822;{BOB}"), "{dsn}");
    gw.assert_audit_intact();
}

/// emla passes DSN parameters on to a next hop that offers DSN (Postfix),
/// which proves it got them: the sink behind it offers no DSN, so Postfix
/// reports NOTIFY=SUCCESS as "relayed" to the sender, naming the ENVID and
/// the ORCPT.
#[test]
fn dsn_parameters_go_on_to_a_next_hop_that_offers_dsn() {
    let (sink, postfix, _policy, _gw, srv) = through_postfix();
    send_with_params(
        srv.port,
        "ENVID=mla-77 RET=HDRS",
        &[(BOB, &format!("NOTIFY=SUCCESS ORCPT=rfc822;{BOB}"))],
    );
    let report = delivered_to(&sink, ALICE, 1);
    let log = || std::fs::read_to_string(postfix.dir.path().join("maillog")).unwrap_or_default();
    assert_eq!(report.len(), 1, "{}\n{}", srv.stderr(), log());
    let (env, r) = &report[0];
    assert_eq!(env["mail_from"], "<>", "{env}");
    assert!(r.contains("Action: relayed"), "{r}");
    assert!(r.contains("Original-Envelope-Id: mla-77"), "{r}");
    assert!(
        r.contains(&format!("Original-Recipient: rfc822;{BOB}")),
        "{r}"
    );
    assert_eq!(delivered_to(&sink, BOB, 1).len(), 1);
}

/// emla's own notices follow NOTIFY: NEVER means no failure notice, even
/// when the authority wants one; SUCCESS asks for a delivery receipt, even
/// when it wants none. A recipient given twice is one RCPT at the next hop.
#[test]
fn notify_governs_emlas_notices_and_duplicates_are_one_rcpt() {
    let sink = Sink::start(&["--refuse-rcpt", BEA]);
    let policy = policy_with_receipts(sink.port);
    let (gw, srv) = start_relaying(&policy);
    let (id, _) = send_with_params(srv.port, "", &[(BEA, "NOTIFY=NEVER")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw
        .db()
        .audit()
        .iter()
        .any(|a| a.kind == "relay.failed" && a.message_id.as_deref() == Some(&id))
    {
        assert!(Instant::now() < deadline, "{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sink.messages().is_empty(), "NEVER: no notice at all");
    // Another recipient without NOTIFY: the acceptance receipt is due again,
    // the failure notice still only for the one who did not say NEVER.
    send_with_params(srv.port, "", &[(BEA, "NOTIFY=NEVER"), (BOB, "")]);
    let to_alice = delivered_to(&sink, ALICE, 2);
    let subjects: Vec<&str> = to_alice
        .iter()
        .filter_map(|(_, m)| header(m, "Subject"))
        .collect();
    for receipt in ["Accepted: ", "Relayed: "] {
        let found = subjects.iter().any(|s| s.starts_with(receipt));
        assert!(found, "{receipt}: {subjects:?}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    let all = sink.messages();
    assert_eq!(
        all.len(),
        3,
        "Bob's copy and two receipts, no notice for Bea"
    );
    assert!(!all.iter().any(|m| find(m, b"multipart/report").is_some()));
    drop((gw, srv));

    let sink = Sink::start(&[]);
    let policy = policy_without_aa_receipts(sink.port);
    let (_gw, srv) = start_relaying(&policy);
    let upper = BOB.to_uppercase();
    send_with_params(
        srv.port,
        "",
        &[(BOB, "NOTIFY=SUCCESS"), (upper.as_str(), "NOTIFY=SUCCESS")],
    );
    let to_bob = delivered_to(&sink, BOB, 1);
    assert_eq!(to_bob.len(), 1, "{}", srv.stderr());
    assert_eq!(
        to_bob[0].0["rcpt_tos"],
        serde_json::json!([BOB]),
        "one RCPT"
    );
    let to_alice = delivered_to(&sink, ALICE, 1);
    assert_eq!(
        to_alice.len(),
        1,
        "asked for by NOTIFY=SUCCESS: {}",
        srv.stderr()
    );
    let subject = header(&to_alice[0].1, "Subject").unwrap_or_default();
    assert!(subject.starts_with("Relayed: "), "{subject}");
}

/// The gateway of [`policy_with_receipts`] with its TSA at
/// 127.0.0.1:`tsa_port` and `tsa_unavailable = "wait"` (`more`: further
/// `[evidence]` lines, then other tables).
fn waiting_gateway(sink: &Sink, tsa_port: u16, more: &str) -> (PolicyCopy, Gateway) {
    let policy = policy_with_receipts(sink.port);
    let gw = Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        relay: Some("poll_ms = 100\n".into()),
        extra_toml: format!(
            "[evidence]\ntsa_url = \"http://127.0.0.1:{tsa_port}/good\"\ntsa_ca = \"{}\"\n\
             tsa_timeout_secs = 2\ntsa_unavailable = \"wait\"\ntsa_retry_secs = 1\n{more}",
            tsa_support::tsa_pki().ca().display()
        ),
        ..Opts::default()
    });
    (policy, gw)
}

/// The data of the audit records of `kind` about message `id`.
fn records_of(gw: &Gateway, kind: &str, id: &str) -> Vec<Value> {
    gw.db()
        .audit()
        .iter()
        .filter(|a| a.kind == kind && a.message_id.as_deref() == Some(id))
        .map(|a| serde_json::from_str(&a.data).unwrap())
        .collect()
}

/// `tsa_unavailable = "wait"`: with the TSA down both receipts are held
/// (`receipt.held`), across a restart, and none reaches the sender; once
/// the TSA is up they go out with a token that `openssl ts -verify`
/// checks, `receipt.queued` saying granted after how many tries; the
/// checkpoints `emla serve` wrote meanwhile get theirs from the backlog job.
#[test]
fn wait_mode_holds_receipts_until_the_tsa_is_back() {
    let port = tsa_support::closed_port();
    let sink = Sink::start(&[]);
    let cp = tempfile::tempdir().unwrap();
    let (_policy, gw) = waiting_gateway(
        &sink,
        port,
        &format!(
            "tsa_wait_max_secs = 120\n[audit]\ncheckpoint_interval_secs = 1\n\
             checkpoint_dir = \"{}\"\n",
            cp.path().display()
        ),
    );
    let srv = gw.start();
    let (id, _) = send_signed(srv.port);
    assert_eq!(delivered_to(&sink, BOB, 1).len(), 1, "{}", srv.stderr());
    let deadline = Instant::now() + Duration::from_secs(15);
    while records_of(&gw, "receipt.held", &id).len() < 2 {
        assert!(Instant::now() < deadline, "not held: {}", srv.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = records_of(&gw, "receipt.held", &id);
    assert_eq!(held[0]["timestamp"]["status"], "unavailable", "{held:#?}");
    assert!(records_of(&gw, "receipt.queued", &id).is_empty());
    drop(srv);
    // Held in the database: a restart keeps them, and still sends nothing.
    let srv = gw.start();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        delivered_to(&sink, ALICE, 0).is_empty(),
        "a receipt went out unstamped"
    );

    let _tsa = tsa_support::Server::start_on(port);
    let receipts = delivered_to(&sink, ALICE, 2);
    assert_eq!(receipts.len(), 2, "{}", srv.stderr());
    let ca = tsa_support::tsa_pki().ca();
    for (_, r) in &receipts {
        assert!(openssl_verifies(r.as_bytes(), "aa"), "{r}");
        let mut der = Vec::new();
        edit_cms(r.as_bytes(), |d| der = d.clone());
        let file = gw.data_dir.join("held-receipt.p7s");
        std::fs::write(&file, &der).unwrap();
        let out = tsa_support::readme_check(&file, &ca);
        assert!(out.status.success(), "{out:?}");
    }
    let queued = records_of(&gw, "receipt.queued", &id);
    assert_eq!(queued.len(), 2, "{queued:#?}");
    for q in &queued {
        assert_eq!(q["timestamp"]["status"], "granted", "{q}");
        assert!(q["timestamp"]["tries"].as_i64() >= Some(1), "{q}");
    }
    // The checkpoints written while the TSA was down: stamped by the
    // backlog job of the checkpoint writer.
    eventually(Duration::from_secs(15), Duration::from_millis(200), || {
        let p7s: Vec<Vec<u8>> = std::fs::read_dir(cp.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "p7s"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let bare = p7s
            .iter()
            .filter(|d| emla::smime::tsa::token_of(d).unwrap().is_none())
            .count();
        if !p7s.is_empty() && bare == 0 {
            Ok(())
        } else {
            Err(format!(
                "{bare} of {} checkpoints without a token",
                p7s.len()
            ))
        }
    });
    assert!(!gw.db().audit_of("audit.checkpoint-stamped").is_empty());
    drop(srv);
    gw.assert_audit_intact();
}

/// `tsa_unavailable = "wait"` with the TSA down for good: after
/// `tsa_wait_max_secs` the receipts go out without a token, and
/// `receipt.queued` says so.
#[test]
fn wait_mode_sends_unstamped_after_the_maximum_wait() {
    let sink = Sink::start(&[]);
    let (_policy, gw) =
        waiting_gateway(&sink, tsa_support::closed_port(), "tsa_wait_max_secs = 2\n");
    let srv = gw.start();
    let t0 = Instant::now();
    let (id, _) = send_signed(srv.port);
    let receipts = delivered_to(&sink, ALICE, 2);
    assert_eq!(receipts.len(), 2, "{}", srv.stderr());
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "sent before the wait ran out"
    );
    for (_, r) in &receipts {
        assert!(openssl_verifies(r.as_bytes(), "aa"), "{r}");
    }
    let queued = records_of(&gw, "receipt.queued", &id);
    assert_eq!(queued.len(), 2, "{queued:#?}");
    for q in &queued {
        assert_eq!(q["timestamp"]["status"], "unavailable", "{q}");
        let detail = q["timestamp"]["detail"].as_str().unwrap();
        assert!(detail.contains("no token within tsa_wait_max_secs"), "{q}");
    }
    assert!(records_of(&gw, "receipt.held", &id).len() >= 2);
    drop(srv);
    gw.assert_audit_intact();
}

/// An encryption certificate and key of BB's central authority, made with
/// openssl: `rsa` (2048 bits, keyEncipherment) or `ec` (P-256,
/// keyAgreement), self-signed, valid for `days`.
fn encryption_identity(name: &str, kind: &str, days: u32) -> (PathBuf, PathBuf) {
    let dir = pki().dir.join(format!("enc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (newkey, usage): (&[&str], &str) = match kind {
        "rsa" => (
            &["-newkey", "rsa:2048"],
            "keyUsage=critical,keyEncipherment",
        ),
        _ => (
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "keyUsage=critical,keyAgreement",
        ),
    };
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes"])
        .args(newkey)
        .args(["-subj", &format!("/CN=bb-moj {name}"), "-addext", usage])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", &days.to_string()]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `openssl cms -decrypt` of `msg` with `key` (and `cert`): the plaintext.
fn openssl_decrypt(msg: &[u8], cert: &Path, key: &Path) -> Vec<u8> {
    let input = pki().write_scratch("encrypted", msg);
    let out = Command::new("openssl")
        .args(["cms", "-decrypt", "-binary", "-in"])
        .arg(&input)
        .arg("-recip")
        .arg(cert)
        .arg("-inkey")
        .arg(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl cms -decrypt failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The certificate files as written in bb-moj.toml (paths relative to the
/// policy directory work as absolute ones too).
fn encrypt_lines(mode: &str, certs: &[&Path], cipher: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| format!("{:?}", c.display().to_string()))
        .collect();
    format!(
        "encrypt = \"{mode}\"\nencryption_certificates = [{}]\nencryption_cipher = \"{cipher}\"\n",
        list.join(", ")
    )
}

/// Puts `lines` at the top of bb-moj.toml (before its first table).
fn set_encryption(policy: &PolicyCopy, lines: &str) {
    policy.edit(
        "authorities/bb-moj.toml",
        "id = \"bb-moj\"\n",
        &format!("id = \"bb-moj\"\n{lines}"),
    );
}

/// `encrypt = "when-certificate"` with an RSA and an EC certificate: the
/// counterpart gets an `application/pkcs7-mime` message that either key
/// decrypts (openssl cms) to exactly the signed message Alice sent, which
/// still verifies; the attempt's audit record names the cipher and both
/// certificates.
#[test]
fn relayed_mail_is_encrypted_to_the_counterparts_certificates() {
    for cipher in ["aes-256-cbc", "aes-256-gcm"] {
        let sink = Sink::start(&[]);
        let (rsa_cert, rsa_key) = encryption_identity(&format!("rsa-{cipher}"), "rsa", 30);
        let (ec_cert, ec_key) = encryption_identity(&format!("ec-{cipher}"), "ec", 30);
        let policy = policy_to(sink.port, "tls = \"opportunistic\"");
        set_encryption(
            &policy,
            &encrypt_lines("when-certificate", &[&rsa_cert, &ec_cert], cipher),
        );
        let (gw, srv, id, sent) = relay_one(&policy);
        let got = sink.wait_for(1, Duration::from_secs(15));
        assert_eq!(got.len(), 1, "{}", srv.stderr());
        let text = String::from_utf8_lossy(&got[0]).into_owned();
        let smime_type = if cipher == "aes-256-gcm" {
            "authEnveloped-data"
        } else {
            "enveloped-data"
        };
        assert!(
            text.contains(&format!(
                "Content-Type: application/pkcs7-mime; smime-type={smime_type}"
            )),
            "{text}"
        );
        assert!(
            header(&text, "From").is_some_and(|f| f.contains(ALICE)),
            "{text}"
        );
        assert!(
            find(&got[0], b"This is an S/MIME").is_none(),
            "signed part in clear"
        );
        for (cert, key) in [(&rsa_cert, &rsa_key), (&ec_cert, &ec_key)] {
            let plain = openssl_decrypt(&got[0], cert, key);
            assert_eq!(
                plain, sent,
                "{cipher}: decrypted bytes differ from the sent message"
            );
            assert!(
                openssl_verifies(&plain, "aa"),
                "decrypted copy does not verify"
            );
        }
        let (code, shown) = emla_cli(&["audit", "show", &id, "--json"], &gw.config);
        assert_eq!(code, 0, "{shown}");
        assert!(shown.contains("\"encrypted\": true"), "{shown}");
        assert!(
            shown.contains(&format!("\"cipher\": \"{cipher}\"")),
            "{shown}"
        );
        drop(srv);
        gw.assert_audit_intact();
    }
}

/// `encrypt = "always"` and only an expired certificate: nothing reaches
/// the counterpart, the entry is deferred saying why, and at the end of
/// the queue lifetime it fails; `when-certificate` with the same expired
/// certificate relays in clear and the record says why.
#[test]
fn always_without_a_valid_certificate_defers_then_fails_and_never_sends_in_clear() {
    let sink = Sink::start(&[]);
    let (short, _) = encryption_identity("short", "rsa", 1);
    let policy = policy_to(sink.port, "tls = \"opportunistic\"");
    policy.edit(
        "gateway.toml",
        "[relay]\n",
        "[relay]\nqueue_lifetime_secs = 3\nurgent_queue_lifetime_secs = 1\n",
    );
    // An expired certificate is refused by the policy check (below), so
    // `always` is tried with none at all.
    set_encryption(&policy, "encrypt = \"always\"\n");
    let (gw, srv, id, _) = relay_one(&policy);
    let failed = wait_entry(&gw, Duration::from_secs(20), |e| e["status"] == "failed");
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not sent in clear")),
        "{failed:#}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sink.messages().is_empty(),
        "sent although it could not be encrypted"
    );
    let (code, shown) = emla_cli(&["audit", "show", &id, "--json"], &gw.config);
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("no encryption certificate is valid now"),
        "{shown}"
    );
    drop(srv);
    gw.assert_audit_intact();

    // A certificate expired at the evaluation time is refused where it is
    // configured.
    let checked = PolicyCopy::new();
    set_encryption(
        &checked,
        &encrypt_lines("when-certificate", &[&short], "aes-256-cbc"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(["policy", "check"])
        .arg(&checked.0)
        .args(["--at", &days_from_now(3)])
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.contains("bb-moj.toml:") && out.contains("expired at"),
        "the policy check names the expired certificate: {out}"
    );
}

/// Receipts go through the same relay: those to a sender whose authority
/// has `encrypt` set are encrypted to its certificates too, and decrypt to
/// a receipt signed by the gateway.
#[test]
fn receipts_to_an_encrypting_authority_are_encrypted_too() {
    let sink = Sink::start(&[]);
    let (cert, key) = encryption_identity("aa-receipts", "rsa", 30);
    let policy = policy_with_receipts(sink.port);
    policy.edit(
        "authorities/aa-moj.toml",
        "id = \"aa-moj\"\n",
        &format!(
            "id = \"aa-moj\"\n{}",
            encrypt_lines("always", &[&cert], "aes-256-cbc")
        ),
    );
    let (gw, srv, _, sent) = relay_one(&policy);
    let to_alice = delivered_to(&sink, ALICE, 2);
    assert_eq!(to_alice.len(), 2, "{}", srv.stderr());
    for (_, m) in &to_alice {
        assert!(m.contains("smime-type=enveloped-data"), "{m}");
        let plain = openssl_decrypt(m.as_bytes(), &cert, &key);
        let text = String::from_utf8_lossy(&plain);
        assert!(header(&text, "X-Emla-Receipt").is_some(), "{text}");
        assert!(
            openssl_verifies(&plain, "aa"),
            "the decrypted receipt does not verify"
        );
    }
    // Bob's authority has no `encrypt`: his copy goes as received.
    let to_bob = delivered_to(&sink, BOB, 1);
    assert!(to_bob[0].1.as_bytes().ends_with(&sent), "{}", to_bob[0].1);
    drop(srv);
    gw.assert_audit_intact();
}
