//! `emla demo` end to end: the real binary makes its PKI, starts the
//! gateway and the mailbox, runs its scenarios and stays up; the test reads
//! its report, runs the openssl commands it prints against the delivered
//! files, checks the audit chain through the CLI, and stops it with SIGTERM.

#[path = "support/cmd.rs"]
mod cmd;
#[path = "support/scrape.rs"]
mod scrape;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cmd::run_ok;

fn emla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_emla"))
}

/// Starts `emla demo` in `demo` (with `path` as PATH, if given) and reads
/// its report up to the commands after `demo ready`.
fn start_demo(demo: &std::path::Path, path: Option<&str>) -> (std::process::Child, Vec<String>) {
    let mut cmd = emla();
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(demo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut report = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let ready = line.starts_with("demo ready");
                report.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no `demo ready` within 60 s:\n{}", report.join("\n"));
            }
        }
    }
    // The rest of the report (the commands) follows at once.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        report.push(line);
    }
    (child, report)
}

#[test]
fn demo_shows_accepts_refusals_deliveries_and_receipts_then_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let (mut child, report) = start_demo(&demo, None);
    let text = report.join("\n");
    assert_eq!(
        text.matches("gateway: 250 2.0.0 accepted as ").count(),
        2,
        "{text}"
    );
    for refusal in [
        "gateway: 550 5.7.1 digest-mismatch",
        "gateway: 550 5.7.1 sender-mismatch",
        "gateway: 550 5.7.1 unauthorized-domain",
    ] {
        assert!(text.contains(refusal), "{refusal}:\n{text}");
    }
    assert_eq!(text.matches("  relayed  to ").count(), 2, "{text}");
    assert_eq!(
        text.matches("(relayed request, byte for byte)").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("(signed receipt from the gateway)").count(),
        4,
        "{text}"
    );

    // The printed openssl commands verify the delivered request and a receipt.
    let verifies: Vec<&str> = report
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("openssl smime -verify"))
        .collect();
    assert_eq!(verifies.len(), 2, "{text}");
    for v in verifies {
        let cmd = v.split('#').next().unwrap();
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        run_ok(Command::new("openssl").args(&args));
    }
    let config = demo.join("emla.toml");
    run_ok(emla().args(["audit", "verify", "--config"]).arg(&config));
    overview_once(&demo, &text);
    metrics_count_the_demo(&text);
    check_evidence(&report, &text);
    let out = emla()
        .args([
            "queue",
            "list",
            "--status",
            "delivered",
            "--json",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let delivered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        delivered.as_array().unwrap().len(),
        6,
        "2 requests, 4 receipts"
    );

    // Private keys stay private; SIGTERM stops the demo cleanly.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(demo.join("pki/aa/anna.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "key mode {mode:o}");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // A rerun replaces the demo directory; a foreign directory is refused.
    let foreign = dir.path().join("mine");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let out = emla()
        .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was not made by `emla demo`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(foreign.join("notes.txt").exists());
}

/// The printed `http://ADDR/metrics` serves the Prometheus text format,
/// its counters those of the demo's traffic: two requests accepted (their
/// acceptance and delivery receipts), the altered one refused, six
/// deliveries relayed (two requests, four receipts), no duty alert.
fn metrics_count_the_demo(text: &str) {
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .unwrap_or_else(|| panic!("no metrics URL:\n{text}"));
    let addr = &url["http://".len()..url.len() - "/metrics".len()];
    let sum = |s: &std::collections::BTreeMap<String, f64>, prefix: &str, label: &str| -> f64 {
        s.iter()
            .filter(|(k, _)| k.starts_with(prefix) && k.contains(label))
            .map(|(_, v)| v)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = scrape::scrape(addr);
        // The last delivery is counted once it is recorded.
        let relayed = sum(&s, "emla_relay_attempts_total{", "outcome=\"relayed\"");
        if relayed >= 6.0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let accepted = sum(&s, "emla_decisions_total{", "verdict=\"accept\"");
    assert_eq!(accepted, 2.0, "{s:#?}");
    let value = |series: &str| scrape::value(&s, series);
    assert_eq!(
        value(
            r#"emla_decisions_total{reason="digest-mismatch",authority="aa-moj",verdict="reject"}"#
        ),
        1.0,
        "{s:#?}"
    );
    assert_eq!(
        value(r#"emla_receipts_total{kind="acceptance"}"#),
        2.0,
        "{s:#?}"
    );
    assert_eq!(
        value(r#"emla_receipts_total{kind="delivery"}"#),
        2.0,
        "{s:#?}"
    );
    assert_eq!(
        sum(&s, "emla_relay_attempts_total{", "outcome=\"relayed\""),
        6.0,
        "{s:#?}"
    );
    assert_eq!(sum(&s, "emla_duty_alerts_total{", ""), 0.0, "{s:#?}");
    assert!(
        s.keys().any(|k| k.starts_with("emla_policy_info{version=")),
        "{s:#?}"
    );
}

/// One HTTPS request to the demo's web view (Python's `http.client`, the
/// demo's certificate as the CA): `(status, headers, body)` as JSON.
fn web_get(demo: &std::path::Path, port: &str, path: &str, header: &str) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/https_get.py");
    let out = run_ok(
        Command::new("python3")
            .arg(script)
            .args([
                "--port", port, "--path", path, "--header", header, "--cafile",
            ])
            .arg(demo.join("pki/web/web.pem")),
    );
    serde_json::from_slice(&out).unwrap()
}

/// The printed login link opens a session; the overview charts the
/// demo's own traffic.
fn overview_once(demo: &std::path::Path, text: &str) {
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.contains("/login?token="))
        .unwrap_or_else(|| panic!("no web view login link:\n{text}"));
    let rest = url.strip_prefix("https://127.0.0.1:").expect("on loopback");
    let (port, path) = rest.split_once('/').unwrap();
    let login = web_get(demo, port, &format!("/{path}"), "X-Test: 1");
    assert_eq!(login["status"], 303, "{login}");
    assert_eq!(login["headers"]["location"], "/", "{login}");
    let cookie = login["headers"]["set-cookie"].as_str().unwrap();
    let session = cookie.split(';').next().unwrap();
    let page = web_get(demo, port, "/", &format!("Cookie: {session}"));
    assert_eq!(page["status"], 200, "{page}");
    let body = page["body"].as_str().unwrap();
    assert!(body.contains("<h1>overview</h1>"), "{body}");
    assert!(body.contains("<svg"), "{body}");
    // (The unauthorized domain is refused at RCPT: no message is recorded.)
    for reason in ["digest-mismatch", "sender-mismatch"] {
        assert!(
            body.contains(&format!(">\n{reason}\n</text>")),
            "{reason} charted:\n{body}"
        );
    }
    let anonymous = web_get(demo, port, "/", "X-Test: 1");
    assert_eq!(anonymous["status"], 401, "{anonymous}");
}

/// The demo's TSA stamped its receipts and checkpoint, and the commands it
/// prints export a bundle that checks and verify a receipt's token.
fn check_evidence(report: &[String], text: &str) {
    assert!(text.contains("  TSA      http://127.0.0.1:"), "{text}");
    assert!(
        text.contains("Signed checkpoint of the audit log: ")
            && text.contains(", its .p7s with a timestamp token"),
        "{text}"
    );
    let printed = |start: &str| -> String {
        report
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line:\n{text}"))
            .to_string()
    };
    let cwd = tempfile::tempdir().unwrap();
    for start in [
        "emla audit export ",
        "(cd ",
        "openssl cms -cmsout ",
        "FILE=",
    ] {
        let mut line = printed(start);
        if let Some(args) = line.strip_prefix("emla ") {
            line = format!("{} {args}", env!("CARGO_BIN_EXE_emla"));
        }
        let out = run_ok(
            Command::new("sh")
                .args(["-c", &line])
                .current_dir(cwd.path()),
        );
        if start == "FILE=" {
            let said = String::from_utf8_lossy(&out);
            assert!(said.contains("Verification: OK"), "{said}");
        }
    }
    let litter: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(
        litter.is_empty(),
        "the commands wrote into the current directory: {litter:?}"
    );
}

#[test]
fn without_openssl_the_demo_runs_without_a_tsa_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, report) = start_demo(&dir.path().join("demo"), Some("/nonexistent"));
    let _ = child.kill();
    let _ = child.wait();
    let text = report.join("\n");
    assert!(
        text.contains("TSA      none: openssl was not found"),
        "{text}"
    );
    assert!(text.contains(", without a timestamp token)"), "{text}");
    assert!(!text.contains("FILE="), "{text}");
    assert_eq!(
        text.matches("gateway: 250 2.0.0 accepted as ").count(),
        2,
        "{text}"
    );
}
