//! End-to-end tests of revocation as a real PKI runs it: each authority
//! trusts only its root, the issuing CA travels in the message, and the
//! issuing CA's CRL is downloaded by `emla serve` from a real HTTP server on
//! loopback (`tests/support/http_serve.py`): a new CRL takes effect without
//! a reload, a forged or older CRL is refused and audited, a stale CRL with
//! the server down is a `451` under hard-fail and an accepted, logged
//! message under soft-fail.
//!
//! Requirements: those of `tests/support` and `tests/intake.rs`.

#[path = "support/proc.rs"]
mod proc;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proc::Proc;
use smtp::*;
use support::*;

/// `http_serve.py` on a free loopback port, serving a directory.
struct Http {
    proc: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

impl Http {
    fn start() -> Http {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> Http {
        let mut proc = Proc::spawn(
            "http_serve.py",
            Command::new("python3")
                .arg(support_dir().join("http_serve.py"))
                .arg(dir.path()),
        );
        let port = proc
            .wait_line("listening on ", Duration::from_secs(20))
            .trim()
            .parse()
            .expect("port number");
        Http { proc, port, dir }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/files/{name}", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stop(mut self) -> tempfile::TempDir {
        self.proc.kill();
        self.dir
    }
}

/// Runs `revoke.py WHAT --ca-cert … --ca-key …` with the test PKI's CA
/// `(country, name)`, then `args`.
fn revoke_py(what: &str, (country, ca): (&str, &str), args: &[&str]) {
    let pki = pki();
    run_ok(
        Command::new("python3")
            .arg(support_dir().join("revoke.py"))
            .args([what, "--ca-cert"])
            .arg(pki.cert(country, ca))
            .arg("--ca-key")
            .arg(pki.key(country, ca))
            .args(args),
    );
}

/// Writes a CRL of AA's issuing CA to `out`, revoking `revoked` (names of
/// `certs/aa/NAME.pem`), with crlNumber `number`.
fn issuing_crl(out: &Path, number: u32, revoked: &[&str], extra: &[&str]) {
    let pki = pki();
    let number = number.to_string();
    let mut args = vec!["--out", out.to_str().unwrap(), "--number", &number];
    let paths: Vec<String> = revoked
        .iter()
        .map(|n| pki.cert("aa", n).display().to_string())
        .collect();
    for p in &paths {
        args.extend(["--revoke", p]);
    }
    args.extend(extra);
    revoke_py("crl", ("aa", "issuing"), &args);
}

/// A policy directory beside the PKI's `certs/` where AA trusts only its
/// root (with the root's CRL file) and downloads its issuing CA's CRL from
/// `crl_url`; `crl` is the `[limits] crl` setting.
fn roots_only_policy(crl_url: &str, crl: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let pki = pki();
    let dir = pki.dir.join(format!(
        "policy-roots-{}",
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("authorities")).unwrap();
    let src = pki.policy();
    let gateway = std::fs::read_to_string(src.join("gateway.toml")).unwrap();
    let gateway = gateway.replace("[limits]\n", &format!("[limits]\ncrl = \"{crl}\"\n"));
    std::fs::write(dir.join("gateway.toml"), gateway).unwrap();
    std::fs::copy(src.join("routes.toml"), dir.join("routes.toml")).unwrap();
    std::fs::copy(
        src.join("authorities/bb-moj.toml"),
        dir.join("authorities/bb-moj.toml"),
    )
    .unwrap();
    let aa = std::fs::read_to_string(src.join("authorities/aa-moj.toml")).unwrap();
    let aa = aa
        .replace("intermediates = [\"../certs/aa/issuing.pem\"]\n", "")
        .replace(
            "crls = [\"../certs/aa/root.crl.pem\", \"../certs/aa/issuing.crl.pem\"]",
            &format!("crls = [\"../certs/aa/root.crl.pem\"]\ncrl_urls = [\"{crl_url}\"]"),
        );
    assert!(
        aa.contains("crl_urls") && !aa.contains("intermediates"),
        "{aa}"
    );
    std::fs::write(dir.join("authorities/aa-moj.toml"), aa).unwrap();
    dir
}

/// A gateway on `policy` whose downloads are retried after 1 s and
/// refreshed every `refresh` seconds.
fn gateway(policy: PathBuf, refresh: u64) -> Gateway {
    Gateway::new(Opts {
        policy_dir: policy,
        extra_toml: format!(
            "\n[revocation]\nrefresh_interval_secs = {refresh}\nretry_initial_secs = 1\n\
             retry_max_secs = 1\ntimeout_secs = 5\n\n[audit]\nallow_unsigned_checkpoints = true\n"
        ),
        ..Opts::default()
    })
}

/// The audit records of `kind`, as JSON.
fn audited(gw: &Gateway, kind: &str) -> Vec<serde_json::Value> {
    gw.db()
        .audit_of(kind)
        .into_iter()
        .map(|a| serde_json::from_str(&a.data).expect("audit data is JSON"))
        .collect()
}

/// Waits (at most 20 s) until `n` records of `kind` are in the audit log.
fn wait_audited(gw: &Gateway, kind: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = audited(gw, kind);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} {kind} records within 20 s: {:?}",
            gw.db().audit()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `emla crl ARGS --config …` of `gw`: exit code and stdout.
fn crl_cmd(gw: &Gateway, args: &[&str]) -> (i32, String) {
    emla_cli(&[&["crl"], args].concat(), &gw.config)
}

/// Sends Alice's message to Bob; returns the final reply.
fn send_alice(server: &Server) -> Reply {
    let mut c = server.connect();
    c.ehlo();
    c.transaction(ALICE, &[BOB], &alice_to_bob(Tool::CmsDetached))
}

#[test]
fn roots_only_with_downloaded_crl_accepts_then_a_new_crl_revokes_without_reload() {
    let http = Http::start();
    issuing_crl(&http.path("issuing.crl"), 1, &[], &["--der"]);
    let gw = gateway(roots_only_policy(&http.url("issuing.crl"), "hard-fail"), 1);
    let server = gw.start();
    let updated = wait_audited(&gw, "crl.updated", 1);
    assert_eq!(updated[0]["url"], http.url("issuing.crl"), "{updated:?}");
    assert_eq!(updated[0]["authorities"][0], "aa-moj", "{updated:?}");

    // Only the root is an anchor; the issuing CA comes with the message.
    let r = send_alice(&server);
    assert_eq!(r.code, 250, "{}", r.text());
    let accepted = audited(&gw, "message.accepted");
    let evidence = accepted[0]["revocation"]
        .as_array()
        .unwrap_or_else(|| panic!("no revocation evidence: {accepted:?}"));
    assert_eq!(evidence.len(), 2, "signer and issuing CA: {evidence:?}");
    assert!(
        evidence.iter().all(|e| e["method"] == "crl"),
        "{evidence:?}"
    );
    assert_eq!(
        evidence[0]["sha256"], updated[0]["sha256"],
        "the signer was checked with the downloaded CRL: {evidence:?}"
    );

    // `emla verify` judges with what the gateway downloaded only when told.
    let policy = gw.opts.policy_dir.clone();
    let msg = pki().write_scratch("alice", &alice_to_bob(Tool::CmsDetached));
    let verify = |with_config: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_emla"));
        cmd.arg("verify")
            .arg(&msg)
            .arg("--policy")
            .arg(&policy)
            .arg("--json");
        if with_config {
            cmd.arg("--config").arg(&gw.config);
        }
        let out = cmd.output().expect("run emla verify");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON verdict");
        (
            out.status.code(),
            v["reason"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(verify(true), (Some(0), "ok".to_owned()));
    assert_eq!(verify(false), (Some(1), "crl-unavailable".to_owned()));

    // A new CRL revoking Alice: the refresher picks it up, no reload.
    issuing_crl(&http.path("issuing.crl"), 2, &["alice"], &[]);
    wait_audited(&gw, "crl.updated", 2);
    let r = send_alice(&server);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains("revoked"), "{}", r.text());

    let (code, status) = crl_cmd(&gw, &["status", "--json"]);
    assert_eq!(code, 0, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let row = status["crls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == http.url("issuing.crl"))
        .unwrap_or_else(|| panic!("{status:#}"))
        .clone();
    assert_eq!(row["authority"], "aa-moj", "{row:#}");
    assert_eq!(row["kind"], "crl_urls", "{row:#}");
    assert_eq!(row["stale"], false, "{row:#}");
    assert!(
        row["issuer"].as_str().unwrap().contains("Issuing CA"),
        "{row:#}"
    );
    assert!(row["last_success"].is_string(), "{row:#}");
    gw.assert_audit_intact();
}

#[test]
fn forged_and_older_crls_are_refused_and_audited() {
    let http = Http::start();
    issuing_crl(&http.path("issuing.crl"), 5, &["alice"], &[]);
    // Long refresh: only `emla crl fetch` downloads after the start.
    let gw = gateway(
        roots_only_policy(&http.url("issuing.crl"), "hard-fail"),
        3600,
    );
    let server = gw.start();
    wait_audited(&gw, "crl.updated", 1);
    let held = crl_cmd(&gw, &["status", "--json"]).1;
    // Alice is revoked; her message brings the issuing CA, which the
    // gateway keeps: from now on its CRLs are checked when downloaded.
    let r = send_alice(&server);
    assert_eq!(r.code, 550, "{}", r.text());

    // The same issuer name, signed by XX's root: a forgery.
    let pki = pki();
    revoke_py(
        "crl",
        ("xx", "root"),
        &[
            "--issuer-name-of",
            pki.cert("aa", "issuing").to_str().unwrap(),
            "--number",
            "9",
            "--out",
            http.path("issuing.crl").to_str().unwrap(),
        ],
    );
    let (code, out) = crl_cmd(&gw, &["fetch"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not signed by any CA"), "{out}");
    let failed = wait_audited(&gw, "crl.fetch-failed", 1);
    assert!(
        failed[0]["error"].as_str().unwrap().contains("not signed"),
        "{failed:?}"
    );

    // An older CRL (crlNumber 4 < 5) that would un-revoke Alice.
    issuing_crl(&http.path("issuing.crl"), 4, &[], &[]);
    let (code, out) = crl_cmd(&gw, &["fetch", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("older than the one held"), "{out}");
    wait_audited(&gw, "crl.fetch-failed", 2);
    // What is held did not change: Alice stays revoked.
    let r = send_alice(&server);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains("revoked"), "{}", r.text());
    let now: serde_json::Value =
        serde_json::from_str(&crl_cmd(&gw, &["status", "--json"]).1).unwrap();
    let before: serde_json::Value = serde_json::from_str(&held).unwrap();
    let sha = |v: &serde_json::Value| {
        v["crls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "crl_urls")
            .map(|r| r["sha256"].clone())
    };
    assert_eq!(sha(&now), sha(&before));
    let now_row = now["crls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "crl_urls")
        .unwrap()
        .clone();
    assert!(
        now_row["last_error"].as_str().unwrap().contains("older"),
        "{now_row:#}"
    );
    gw.assert_audit_intact();
}

#[test]
fn stale_crl_with_the_server_down_is_451_under_hard_fail_and_logged_under_soft_fail() {
    for (mode, expect) in [("hard-fail", 451), ("soft-fail", 250)] {
        let http = Http::start();
        // Already past its nextUpdate when served.
        issuing_crl(
            &http.path("issuing.crl"),
            1,
            &[],
            &["--this-update", "-7200", "--next-update", "-60"],
        );
        let gw = gateway(roots_only_policy(&http.url("issuing.crl"), mode), 3600);
        let server = gw.start();
        wait_audited(&gw, "crl.updated", 1);
        let _dir = http.stop();
        let (code, out) = crl_cmd(&gw, &["fetch"]);
        assert_eq!(code, 1, "the server is down: {out}");
        let (code, out) = crl_cmd(&gw, &["status"]);
        assert_eq!(code, 1, "a stale CRL: {out}");
        assert!(out.contains("STALE"), "{out}");

        let r = send_alice(&server);
        assert_eq!(r.code, expect, "{mode}: {}", r.text());
        if expect == 451 {
            assert!(r.text().contains("crl-unavailable"), "{}", r.text());
            assert!(r.text().contains("stale"), "{}", r.text());
        } else {
            let accepted = audited(&gw, "message.accepted");
            let ev = &accepted[0]["revocation"][0];
            assert_eq!(ev["method"], "none", "{accepted:?}");
            assert!(
                ev["problem"].as_str().unwrap().contains("stale"),
                "{accepted:?}"
            );
            assert!(server.stderr().contains("soft-fail"), "logged");
        }
    }
}

#[test]
fn distribution_points_are_fetched_while_the_message_waits_then_refreshed() {
    let http = Http::start();
    issuing_crl(&http.path("cdp.crl"), 1, &[], &["--der"]);
    let email = official("cdpuser", "--cdp", &http.url("cdp.crl"));
    // No crl_urls: fetch_crls = "cdp" alone finds the CRL.
    let policy = roots_only_policy("http://127.0.0.1:9/unused.crl", "hard-fail");
    let path = policy.join("authorities/aa-moj.toml");
    let aa = std::fs::read_to_string(&path).unwrap().replace(
        "crl_urls = [\"http://127.0.0.1:9/unused.crl\"]",
        "fetch_crls = \"cdp\"\nocsp = \"off\"",
    );
    std::fs::write(&path, aa).unwrap();
    let gw = gateway(policy, 1);
    let server = gw.start();
    let r = send_as(&server, "cdpuser", &email);
    assert_eq!(r.code, 250, "{}", r.text());
    let updated = audited(&gw, "crl.updated");
    assert_eq!(updated[0]["url"], http.url("cdp.crl"), "{updated:?}");
    // The distribution point is now a source of its own, refreshed: a
    // revocation published there arrives without any message asking.
    issuing_crl(&http.path("cdp.crl"), 2, &["cdpuser"], &["--der"]);
    wait_audited(&gw, "crl.updated", 2);
    let r = send_as(&server, "cdpuser", &email);
    assert_eq!(r.code, 550, "{}", r.text());
    let (code, status) = crl_cmd(&gw, &["status", "--json"]);
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("\"kind\":\"cdp\""), "{status}");
}

// ---------------------------------------------------------------------------
// OCSP: a real `openssl ocsp` responder on loopback
// ---------------------------------------------------------------------------

/// A free loopback port (bound, then released for the responder).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Issues `certs/aa/NAME.pem` (and `.key`) under AA's issuing CA for
/// `NAME@justice.aa.example`, naming `ocsp_url` as its OCSP responder.
fn ocsp_official(name: &str, ocsp_url: &str) -> String {
    official(name, "--ocsp", ocsp_url)
}

/// Issues `certs/aa/NAME.pem` under AA's issuing CA with `flag URL`
/// (`--ocsp` or `--cdp`).
fn official(name: &str, flag: &str, url: &str) -> String {
    let pki = pki();
    revoke_py(
        "leaf",
        ("aa", "issuing"),
        &[
            "--email",
            &format!("{name}@justice.aa.example"),
            "--cert",
            pki.cert("aa", name).to_str().unwrap(),
            "--key",
            pki.key("aa", name).to_str().unwrap(),
            flag,
            url,
        ],
    );
    format!("{name}@justice.aa.example")
}

/// The serial of `certs/aa/NAME.pem`, upper-case hex (the index's form).
fn serial_of(name: &str) -> String {
    let out = run_ok(
        Command::new(openssl())
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(pki().cert("aa", name)),
    );
    let s = String::from_utf8(out).unwrap();
    s.trim().trim_start_matches("serial=").to_uppercase()
}

/// `openssl ocsp` answering for AA's issuing CA from an index of
/// `(name, revoked)` entries, signed by `signer` (`certs/aa/SIGNER`).
fn responder(dir: &Path, port: u16, entries: &[(&str, bool)], signer: &str) -> Proc {
    let mut index = String::new();
    for (name, revoked) in entries {
        let (flag, when) = if *revoked {
            ("R", "250101000000Z,keyCompromise")
        } else {
            ("V", "")
        };
        index += &format!(
            "{flag}\t391231000000Z\t{when}\t{}\tunknown\t/CN={name}\n",
            serial_of(name)
        );
    }
    std::fs::write(dir.join("index.txt"), index).unwrap();
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n").unwrap();
    let pki = pki();
    let mut p = Proc::spawn(
        "openssl ocsp",
        Command::new(openssl())
            .arg("ocsp")
            .arg("-index")
            .arg(dir.join("index.txt"))
            .args(["-port", &port.to_string()])
            .arg("-CA")
            .arg(pki.cert("aa", "issuing"))
            .arg("-rsigner")
            .arg(pki.cert("aa", signer))
            .arg("-rkey")
            .arg(pki.key("aa", signer))
            .args(["-nmin", "60", "-timeout", "10"]),
    );
    p.wait_line("ACCEPT ", Duration::from_secs(20));
    p
}

/// A policy where AA trusts only its root (its CRL covers the issuing CA)
/// and asks OCSP for what the issuing CA issued.
fn ocsp_policy(mode: &str) -> PathBuf {
    let dir = roots_only_policy("http://127.0.0.1:9/unused.crl", "hard-fail");
    let path = dir.join("authorities/aa-moj.toml");
    let aa = std::fs::read_to_string(&path).unwrap();
    let aa = aa.replace(
        "crl_urls = [\"http://127.0.0.1:9/unused.crl\"]",
        &format!("ocsp = \"{mode}\""),
    );
    std::fs::write(&path, aa).unwrap();
    dir
}

/// Sends a message signed by `certs/aa/NAME` from `email` to Bob.
fn send_as(server: &Server, name: &str, email: &str) -> Reply {
    let mut c = server.connect();
    c.ehlo();
    c.transaction(
        email,
        &[BOB],
        &mail(Tool::CmsDetached, "aa", name, email, &[BOB]),
    )
}

#[test]
fn ocsp_good_revoked_unknown_and_responder_down() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let good = ocsp_official("ocspgood", &url);
    let revoked = ocsp_official("ocsprevoked", &url);
    let unknown = ocsp_official("ocspunknown", &url);
    let later = ocsp_official("ocsplater", &url);
    let gw = gateway(ocsp_policy("fallback"), 3600);
    let server = gw.start();

    let mut ocsp = responder(
        tmp.path(),
        port,
        &[
            ("ocspgood", false),
            ("ocsprevoked", true),
            ("ocsplater", false),
        ],
        "issuing",
    );
    // No CRL of the issuing CA: the status comes from OCSP, asked while
    // the message waits.
    let r = send_as(&server, "ocspgood", &good);
    assert_eq!(r.code, 250, "{}", r.text());
    let first_id = r.accepted_id();
    let accepted = audited(&gw, "message.accepted");
    let ev = &accepted[0]["revocation"];
    assert_eq!(ev[0]["method"], "ocsp", "{ev:#}");
    assert_eq!(
        ev[1]["method"], "crl",
        "the issuing CA by the root's CRL: {ev:#}"
    );
    let updated = audited(&gw, "ocsp.updated");
    assert_eq!(updated[0]["status"], "good", "{updated:?}");
    assert_eq!(ev[0]["sha256"], updated[0]["sha256"], "{ev:#}");

    let r = send_as(&server, "ocsprevoked", &revoked);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(
        r.text().contains("revoked") && r.text().contains("OCSP"),
        "{}",
        r.text()
    );
    let r = send_as(&server, "ocspunknown", &unknown);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains("revocation-unknown"), "{}", r.text());

    // The responder goes down: the cached answer still serves; a
    // certificate never asked about is a temporary failure.
    ocsp.kill();
    let r = send_as(&server, "ocspgood", &good);
    assert_eq!(r.code, 250, "cached: {}", r.text());
    let r = send_as(&server, "ocsplater", &later);
    assert_eq!(r.code, 451, "{}", r.text());
    assert!(r.text().contains("ocsp-unavailable"), "{}", r.text());
    let failed = audited(&gw, "ocsp.fetch-failed");
    assert!(!failed.is_empty(), "{:?}", gw.db().audit());
    gw.assert_audit_intact();

    // The evidence bundle carries the OCSP response that decided, and its
    // verify.sh checks it with openssl alone, as of reception.
    let id = first_id.expect("accepted id");
    let bundle = tmp.path().join("bundle");
    let out_arg = bundle.to_str().unwrap();
    let (code, out) = emla_cli(&["audit", "export", &id, "--out", out_arg], &gw.config);
    assert_eq!(code, 0, "{out}");
    let sha = ev[0]["sha256"].as_str().unwrap();
    let ocsp_file = bundle.join(format!("revocation/ocsp-{sha}.der"));
    assert!(ocsp_file.exists(), "{}", ocsp_file.display());
    let (ok, out) = run_checks(&bundle);
    assert!(ok, "verify.sh: {out}");
    // One bit changed in the response: the bundle no longer checks.
    let mut bytes = std::fs::read(&ocsp_file).unwrap();
    let n = bytes.len() - 10;
    bytes[n] ^= 1;
    std::fs::write(&ocsp_file, &bytes).unwrap();
    let (ok, out) = run_checks(&bundle);
    assert!(!ok, "a tampered OCSP response must fail: {out}");
}

#[test]
fn ocsp_delegated_responder_needs_ocsp_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki();
    for (name, extra) in [("delegate", &[][..]), ("delegate-noeku", &["--no-eku"][..])] {
        let mut args: Vec<String> = vec![
            "--cert".to_owned(),
            pki.cert("aa", name).to_str().unwrap().to_owned(),
            "--key".to_owned(),
            pki.key("aa", name).to_str().unwrap().to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        revoke_py("responder", ("aa", "issuing"), &args);
    }
    for (signer, name, expect) in [
        ("delegate", "ocspdelegated", 250),
        ("delegate-noeku", "ocspnoeku", 451),
    ] {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/");
        let email = ocsp_official(name, &url);
        let gw = gateway(ocsp_policy("prefer"), 3600);
        let server = gw.start();
        let _ocsp = responder(tmp.path(), port, &[(name, false)], signer);
        let r = send_as(&server, name, &email);
        assert_eq!(r.code, expect, "{signer}: {}", r.text());
        if expect == 451 {
            let failed = audited(&gw, "ocsp.fetch-failed");
            assert!(
                failed[0]["error"].as_str().unwrap().contains("responder"),
                "{failed:?}"
            );
        }
    }
}
