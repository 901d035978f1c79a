//! End-to-end tests of the auditors' web view: `emla serve` with
//! `[audit_web]` on port 0, real signed messages sent over SMTP, then the
//! pages read by headless Chromium (logged in through `/login?token=…`), by
//! Python's `http.client` (bearer tokens, a client certificate, refusals)
//! and the server's log.
//!
//! Requirements beyond `tests/support`: Chromium at `/usr/bin/chromium`
//! (Debian package `chromium`; another path in `EMLA_TEST_CHROMIUM`). The
//! test fails, never skips, without it.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use smtp::*;
use support::*;

/// The auditor's token (only its hash goes into the tokens file).
const TOKEN: &str = "tok-3f9a1c27e8d54b6a9e0f1d2c3b4a5968";
/// The name the tokens file gives it.
const AUDITOR: &str = "Jane Auditor (AA)";
/// The subject of the `<script>` message.
const EVIL_SUBJECT: &str = "<script>alert('x')</script> MLA 2026/0099";

/// Server certificate for 127.0.0.1, a CA for auditors and one auditor's
/// client certificate, made with `openssl`.
struct WebPki {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn run(cmd: &mut Command) {
    run_ok(cmd);
}

fn web_pki(dir: &Path) -> WebPki {
    let o = openssl();
    let p = |n: &str| dir.join(n);
    let ec = NEW_P256_KEY;
    // `openssl req` with a fresh P-256 key: `args`, then the key and output files.
    let req = |args: &[&str], key: &str, out: &str| {
        run(Command::new(&o)
            .arg("req")
            .args(args)
            .args(ec)
            .arg("-keyout")
            .arg(p(key))
            .arg("-out")
            .arg(p(out)));
    };
    req(
        &[
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        "web.key",
        "web.pem",
    );
    req(
        &["-x509", "-days", "2", "-subj", "/CN=Auditors CA"],
        "ca.key",
        "ca.pem",
    );
    std::fs::write(
        p("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    req(
        &["-new", "-subj", "/O=Court AA/CN=Ann Auditor"],
        "client.key",
        "client.csr",
    );
    run(Command::new(&o)
        .args(["x509", "-req", "-days", "2", "-set_serial", "7", "-in"])
        .arg(p("client.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("client.ext"))
        .arg("-out")
        .arg(p("client.pem")));
    WebPki {
        cert: p("web.pem"),
        key: p("web.key"),
        client_ca: p("ca.pem"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
    }
}

/// A gateway with `[audit_web]` (tokens and client certificates), its
/// files in a directory of their own.
fn web_gateway() -> (Gateway, WebPki, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pki = web_pki(dir.path());
    let tokens = dir.path().join("auditors.tokens");
    std::fs::write(
        &tokens,
        format!(
            "# name, then SHA-256 of the token\n{AUDITOR} {}\n",
            sha256_hex(TOKEN.as_bytes())
        ),
    )
    .unwrap();
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let extra = format!(
        "\n[audit_web]\nlisten = \"127.0.0.1:0\"\ncert = {}\nkey = {}\ntokens_file = {}\n\
         client_ca = {}\n",
        q(&pki.cert),
        q(&pki.key),
        q(&tokens),
        q(&pki.client_ca)
    );
    let gw = Gateway::new(Opts {
        extra_toml: extra,
        ..Opts::default()
    });
    (gw, pki, dir)
}

/// The web port from the `audit web listening on ADDR` line.
fn web_port(srv: &Server) -> u16 {
    srv.stdout
        .iter()
        .find_map(|l| l.strip_prefix("audit web listening on "))
        .and_then(|a| a.rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `audit web listening on` line in {:?}", srv.stdout))
}

/// One HTTPS exchange (Python `http.client`, the server certificate
/// verified).
struct Http {
    status: u16,
    headers: Value,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> &str {
        self.headers[name].as_str().unwrap_or("")
    }
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}\n{}", self.status, self.headers, self.body)
    }
}

fn https(
    pki: &WebPki,
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    client: bool,
) -> Http {
    let mut cmd = Command::new(std::env::var("EMLA_TEST_PYTHON").unwrap_or("python3".into()));
    cmd.arg(support_dir().join("https_get.py"))
        .args([
            "--port",
            &port.to_string(),
            "--method",
            method,
            "--path",
            path,
        ])
        .arg("--cafile")
        .arg(&pki.cert);
    for h in headers {
        cmd.args(["--header", h]);
    }
    if client {
        cmd.arg("--cert")
            .arg(&pki.client_cert)
            .arg("--key")
            .arg(&pki.client_key);
    }
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "https_get.py {method} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("https_get.py prints JSON");
    Http {
        status: v["status"].as_u64().unwrap() as u16,
        headers: v["headers"].clone(),
        body: v["body"].as_str().unwrap_or("").to_string(),
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn chromium() -> String {
    let path = std::env::var("EMLA_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "Chromium not found at {path}: install the Debian package `chromium` \
         (`apt-get install -y chromium`; .ci/run does) or set EMLA_TEST_CHROMIUM"
    );
    path
}

/// Headless Chromium with a profile of its own, accepting the test's
/// self-signed server certificate.
fn headless(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--ignore-certificate-errors",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// The DOM headless Chromium builds for `https://127.0.0.1:PORT/login?
/// token=…&next=PATH`: the login sets the session cookie and redirects to
/// `path`.
fn browse(port: u16, path: &str, profile: &Path) -> String {
    let next: String = form_encode(path);
    let url = format!("https://127.0.0.1:{port}/login?token={TOKEN}&next={next}");
    let mut cmd = headless(profile);
    cmd.arg("--dump-dom").arg(&url);
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(120));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url}: {:?}\n--- stdout\n{dom}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Alice's signed message to Bob with another `Subject:` (outside the
/// signed entity, so it still verifies).
fn with_subject(subject: &str) -> Vec<u8> {
    let msg = alice_to_bob(Tool::SmimeDetached);
    replace_once(
        &msg,
        b"Subject: MLA request 2026/0042\r\n",
        format!("Subject: {subject}\r\n").as_bytes(),
    )
}

fn accepted(port: u16, msg: &[u8]) -> String {
    let (r, t) = send(port, ALICE, &[BOB], msg);
    r.accepted_id()
        .unwrap_or_else(|| panic!("not accepted: {r}\n{t}"))
}

/// The ids of `/api/search`'s `messages`, in order.
fn message_ids(v: &Value) -> Vec<&str> {
    field_strs(&v["messages"], "id")
}

#[test]
fn auditors_browse_search_and_timeline() {
    let (gw, pki, _files) = web_gateway();
    let mut srv = gw.start();
    let port = web_port(&srv);

    // Real data: two accepted messages (one with markup in its subject) and
    // one rejected (its signature broken).
    let plain = accepted(srv.port, &with_subject("MLA request 2026/0042"));
    let evil = accepted(srv.port, &with_subject(EVIL_SUBJECT));
    let broken = flip_signature_bit(&alice_to_bob(Tool::SmimeDetached));
    let (r, t) = send(srv.port, ALICE, &[BOB], &broken);
    assert_eq!(r.code, 550, "bad signature refused: {r}\n{t}");
    let rejected = gw
        .db()
        .messages()
        .into_iter()
        .find(|m| m.verdict == "reject")
        .map(|m| m.id)
        .expect("the rejected message is recorded");
    let audit_records = gw.db().audit().len();

    browsed(port, [&plain, &evil, &rejected], audit_records);
    refusals(&pki, port);
    token_pages(&pki, port, [&plain, &evil], audit_records);

    // A client certificate from the auditors' CA.
    let r = https(&pki, port, "GET", "/chain", &[], true);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("CN=Ann Auditor"), "{r:?}");
    assert!(r.body.contains("(certificate)"), "{r:?}");

    // The log names auditors and refusals.
    let log = srv.stderr();
    assert!(log.contains("unauthenticated request refused"), "{log}");
    assert!(log.contains("reason=unknown token"), "{log}");
    assert!(log.contains(&format!("auditor={AUDITOR}")), "{log}");
    assert!(log.contains("Ann Auditor"), "{log}");
    assert!(!log.contains(TOKEN), "the token is never logged:\n{log}");

    // SIGTERM stops the web view with the gateway.
    srv.signal("TERM");
    let st = srv.wait_exit(Duration::from_secs(20));
    assert!(st.is_some_and(|s| s.success()), "exit: {st:?}");
    assert!(srv.stderr().contains("audit web view stopped"));
}

/// [`auditors_browse_search_and_timeline`], step 1: headless Chromium
/// shows search results from the database and a timeline.
fn browsed(port: u16, [plain, evil, rejected]: [&str; 3], audit_records: usize) {
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(port, "/search", profile.path());
    for id in [plain, evil, rejected] {
        assert!(
            dom.contains(&format!(">{id}</a>")),
            "{id} in results:\n{dom}"
        );
    }
    assert!(dom.contains(AUDITOR), "auditor name:\n{dom}");
    assert!(dom.contains("MLA request 2026/0042"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert('x')&lt;/script&gt; MLA 2026/0099"),
        "the subject is shown as text:\n{dom}"
    );
    assert!(!dom.contains("<script"), "no script element:\n{dom}");
    assert!(dom.contains("bad-signature"), "{dom}");
    assert!(dom.contains("<td>rejected</td>"), "its state:\n{dom}");
    assert!(dom.contains("<td>accepted</td>"), "their state:\n{dom}");

    // A filter: only the rejected message.
    let dom = browse(port, "/search?verdict=reject", profile.path());
    assert!(dom.contains(&format!(">{rejected}</a>")), "{dom}");
    assert!(!dom.contains(&format!(">{plain}</a>")), "{dom}");

    // The timeline of the `<script>` message: accept event, chain intact.
    let dom = browse(port, &format!("/message?id={evil}"), profile.path());
    assert!(dom.contains("message.accepted"), "accept event:\n{dom}");
    assert!(dom.contains("decided"), "{dom}");
    assert!(dom.contains("ACCEPT ok"), "{dom}");
    assert!(
        dom.contains("state accepted"),
        "its queue entry's state:\n{dom}"
    );
    assert!(
        dom.contains("audit chain <strong>intact</strong>"),
        "chain status:\n{dom}"
    );
    assert!(dom.contains(&format!("{audit_records} records")), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");
}

/// Step 2: plain HTTPS without a valid credential, or with a method other
/// than GET and HEAD, is refused.
fn refusals(pki: &WebPki, port: u16) {
    let r = https(pki, port, "GET", "/search", &[], false);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").starts_with("Bearer"), "{r:?}");
    let r = https(
        pki,
        port,
        "GET",
        "/search",
        &[&bearer("wrong-token")],
        false,
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate").contains("invalid_token"),
        "{r:?}"
    );
    let r = https(
        pki,
        port,
        "GET",
        "/search",
        &["Authorization: Basic eDp5"],
        false,
    );
    assert_eq!(r.status, 401, "{r:?}");
    let r = https(pki, port, "GET", "/login?token=wrong", &[], false);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("set-cookie"), "", "{r:?}");
    let stale = "Cookie: __Host-emla_session=00";
    let r = https(pki, port, "GET", "/search", &[stale], false);
    assert_eq!(r.status, 401, "{r:?}");
    // Methods other than GET/HEAD: 405 before authentication.
    for (method, auth) in [
        ("POST", None),
        ("POST", Some(bearer(TOKEN))),
        ("DELETE", None),
    ] {
        let h: Vec<&str> = auth.iter().map(String::as_str).collect();
        let r = https(pki, port, method, "/search", &h, false);
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), "GET, HEAD", "{r:?}");
    }
}

/// Step 3: with the token, the pages, their headers and the JSON API.
fn token_pages(pki: &WebPki, port: u16, [plain, evil]: [&str; 2], audit_records: usize) {
    let ok = bearer(TOKEN);
    let r = https(pki, port, "GET", "/search", &[&ok], false);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r
        .header("content-security-policy")
        .starts_with("default-src 'none'"));
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("referrer-policy"), "no-referrer");
    assert_eq!(r.header("cache-control"), "no-store");
    assert!(r.body.contains(plain), "{r:?}");
    let r = https(pki, port, "HEAD", "/search", &[&ok], false);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "", "HEAD has no body");
    let r = https(
        pki,
        port,
        "GET",
        "/api/search?verdict=accept",
        &[&ok],
        false,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let ids = message_ids(&v);
    assert_eq!(ids, [evil, plain], "newest first: {r:?}");
    assert_eq!(v["auditor"], AUDITOR);
    assert_eq!(v["messages"][0]["subject"], EVIL_SUBJECT);
    // Paging with the cursor.
    let r = https(pki, port, "GET", "/api/search?limit=1", &[&ok], false);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let next = v["next_after"].as_str().expect("a full page has a cursor");
    let path = format!("/api/search?limit=1&after={}", form_encode(next));
    let r = https(pki, port, "GET", &path, &[&ok], false);
    let v2: Value = serde_json::from_str(&r.body).unwrap();
    assert_ne!(v["messages"][0]["id"], v2["messages"][0]["id"], "{r:?}");
    let r = https(pki, port, "GET", "/search?since=yesterday", &[&ok], false);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("--since"), "{r:?}");
    let r = https(pki, port, "GET", "/message?id=no-such-id", &[&ok], false);
    assert_eq!(r.status, 404, "{r:?}");
    let r = https(pki, port, "GET", "/api/chain", &[&ok], false);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "intact", "{r:?}");
    assert_eq!(v["records"], audit_records as u64, "{r:?}");
    let r = https(
        pki,
        port,
        "GET",
        &format!("/api/message?id={evil}"),
        &[&ok],
        false,
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["id"], evil, "{r:?}");
    assert_eq!(v["queue"][0]["status"], "accepted", "{r:?}");
    // The state filter, by today's names and by the older one.
    for (state, want) in [
        ("accepted", vec![evil, plain]),
        ("queued", vec![evil, plain]),
        ("relayed", vec![]),
    ] {
        let path = format!("/api/search?status={state}");
        let r = https(pki, port, "GET", &path, &[&ok], false);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(message_ids(&v), want, "{state}: {r:?}");
    }
    let r = https(pki, port, "GET", "/search?status=sent", &[&ok], false);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body.contains("expected one of accepted, relayed"),
        "{r:?}"
    );
}

/// Runs `emla serve` on a configuration that must be refused; returns the
/// exit code and standard error.
fn refused(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let pki = web_pki(dir.path());
    std::fs::write(dir.path().join("bad.tokens"), "jane\n").unwrap();
    let text = config
        .replace("CERT", &pki.cert.display().to_string())
        .replace("KEY", &pki.key.display().to_string());
    let path = dir.path().join("emla.toml");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\nrequire_tls = false\ndata_dir = \"data\"\n\
             policy_dir = {:?}\n{text}",
            pki_policy()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emla"));
    cmd.arg("serve").arg("--config").arg(&path);
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(30));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pki_policy() -> String {
    pki().policy().display().to_string()
}

#[test]
fn configuration_problems_are_named() {
    let (code, err) =
        refused("[audit_web]\nlisten = \"127.0.0.1:0\"\ncert = \"CERT\"\nkey = \"KEY\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("needs tokens_file or client_ca"), "{err}");
    let (code, err) = refused(
        "[audit_web]\nlisten = \"127.0.0.1:0\"\ncert = \"CERT\"\nkey = \"KEY\"\n\
         tokens_file = \"bad.tokens\"\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.tokens:1: expected `NAME SHA256-HEX"),
        "{err}"
    );
    let (code, err) = refused(
        "[audit_web]\nlisten = \"127.0.0.1:0\"\ncert = \"CERT\"\nkey = \"KEY\"\n\
         client_ca = \"missing-ca.pem\"\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("client_ca") && err.contains("missing-ca.pem"),
        "{err}"
    );
}

#[test]
fn a_broken_chain_shows_on_every_page_that_reports_it() {
    let (gw, pki, _files) = web_gateway();
    let srv = gw.start();
    let port = web_port(&srv);
    let id = accepted(srv.port, &with_subject("MLA request 2026/0042"));
    // Edit the first audit record behind the gateway's back.
    let url = gw.database_url();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(
                "UPDATE audit SET data = '{\"forged\":true}' \
                 WHERE seq = (SELECT MIN(seq) FROM audit)",
            )
            .execute(&mut c)
            .await
            .unwrap();
            let _ = c.close().await;
        });
    let ok = bearer(TOKEN);
    let r = https(&pki, port, "GET", "/api/chain", &[&ok], false);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "broken", "{r:?}");
    assert_eq!(v["seq"], 1, "{r:?}");
    let r = https(&pki, port, "GET", "/chain", &[&ok], false);
    assert!(
        r.body.contains("<strong>BROKEN</strong> at record 1"),
        "{r:?}"
    );
    let r = https(
        &pki,
        port,
        "GET",
        &format!("/message?id={id}"),
        &[&ok],
        false,
    );
    assert!(
        r.body.contains("<strong>BROKEN</strong> at record 1"),
        "{r:?}"
    );
    assert!(
        srv.stderr().contains("the audit chain is broken"),
        "{}",
        srv.stderr()
    );
}

/// Statements run on the gateway's SQLite database behind its back: the
/// relay's outcomes, which this test has no next hop to produce.
fn set_queue_states(url: &str, statements: &[String]) {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        for s in statements {
            let done = sqlx::query(s).execute(&mut c).await.unwrap();
            assert_eq!(done.rows_affected(), 1, "{s}");
        }
    });
}

/// Headless Chromium's screenshot of `path` (after the login): a PNG.
fn screenshot(port: u16, path: &str, profile: &Path, out: &Path) -> Vec<u8> {
    let url = format!(
        "https://127.0.0.1:{port}/login?token={TOKEN}&next={}",
        form_encode(path)
    );
    let mut cmd = headless(profile);
    cmd.args(["--hide-scrollbars", "--window-size=1280,2400"])
        .arg(format!("--screenshot={}", out.display()))
        .arg(&url);
    let o = run_with_timeout(&mut cmd, None, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "chromium --screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The overview charts what the database holds: a known mix of accepted
/// and refused mail over SMTP, entries relayed, delayed and failed; then
/// Chromium's DOM and screenshot, the JSON, the queue and CRL pages, the
/// refusals without a credential, and no write action anywhere.
#[test]
fn the_overview_charts_real_data() {
    let (gw, pki, files) = web_gateway();
    let srv = gw.start();
    let port = web_port(&srv);
    let ids: Vec<String> = (0..3)
        .map(|i| accepted(srv.port, &with_subject(&format!("MLA request 2026/00{i}"))))
        .collect();
    let broken = flip_signature_bit(&alice_to_bob(Tool::SmimeDetached));
    for _ in 0..2 {
        let (r, t) = send(srv.port, ALICE, &[BOB], &broken);
        assert_eq!(r.code, 550, "{r}\n{t}");
    }
    let unsigned = with_headers(ALICE, &[BOB], &crlf(&text_body()));
    let (r, t) = send(srv.port, ALICE, &[BOB], &unsigned);
    assert_eq!(r.code, 550, "{r}\n{t}");
    let q = |id: &str| id.replace('\'', "''");
    set_queue_states(
        &gw.database_url(),
        &[
            format!(
                "UPDATE queue SET status = 'relayed', last_attempt_at = (SELECT received_at \
                 FROM messages WHERE id = '{}') + 4000 WHERE message_id = '{0}'",
                q(&ids[0])
            ),
            format!(
                "UPDATE queue SET status = 'delayed', attempts = 3, \
                 last_error = '451 4.2.1 mailbox busy' WHERE message_id = '{}'",
                q(&ids[1])
            ),
            format!(
                "UPDATE queue SET status = 'failed', attempts = 1, \
                 last_error = '550 5.1.1 no such user' WHERE message_id = '{}'",
                q(&ids[2])
            ),
        ],
    );

    // Chromium: the landing page after login is the overview.
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(port, "/", profile.path());
    assert!(dom.contains("<h1>overview</h1>"), "{dom}");
    // The text drawn in a chart: axis labels, legends, each bar's value.
    let texts = |svg: &str| -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim().into()))
            .collect()
    };
    let figure = |id: &str| -> Vec<String> {
        let start = dom
            .find(&format!("<figure class=\"chart\" id=\"{id}\">"))
            .unwrap_or_else(|| panic!("figure {id}:\n{dom}"));
        let end = start + dom[start..].find("</figure>").unwrap();
        let f = dom[start..end].to_string();
        assert!(f.contains("<svg"), "{id} is an SVG chart:\n{f}");
        texts(&f)
    };
    let has = |texts: &[String], t: &str| texts.iter().any(|x| x == t);
    // Six messages today: the day's bar is labelled 6.
    let per_day = figure("per-day");
    assert!(has(&per_day, "6"), "{per_day:?}");
    let refusals = figure("refusals");
    for label in ["bad-signature", "2", "unsigned", "1"] {
        assert!(has(&refusals, label), "{label}: {refusals:?}");
    }
    let latency = figure("latency");
    assert!(dom.contains("(milliseconds), 1 relayed"), "{dom}");
    assert!(has(&latency, "4000"), "4 s to relay: {latency:?}");
    assert!(dom.contains("<td>4.0</td>"), "latency table:\n{dom}");
    let queue = figure("queue");
    for label in ["relayed", "delayed", "failed"] {
        assert!(has(&queue, label), "{queue:?}");
    }
    assert!(dom.contains("451 4.2.1 mailbox busy"), "{dom}");
    assert!(dom.contains("550 5.1.1 no such user"), "{dom}");
    assert!(dom.contains("id=\"crls\""), "CRL freshness:\n{dom}");
    assert!(dom.contains("id=\"checkpoint\""), "{dom}");
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<form"), "no form on the overview:\n{dom}");

    // The screenshot: a PNG of a drawn page, not an empty one.
    let png = screenshot(
        port,
        "/",
        profile.path(),
        &files.path().join("overview.png"),
    );
    // EMLA_TEST_SCREENSHOT=FILE keeps it, to look at.
    if let Ok(keep) = std::env::var("EMLA_TEST_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a page with charts: {} bytes",
        png.len()
    );

    // The same figures as JSON, and the period checked.
    let ok = bearer(TOKEN);
    let r = https(&pki, port, "GET", "/api/overview?days=1", &[&ok], false);
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["days"], 1);
    assert_eq!(
        v["figures"]["refusals"],
        serde_json::json!([{"reason": "bad-signature", "count": 2},
                           {"reason": "unsigned", "count": 1}]),
        "{r:?}"
    );
    assert_eq!(v["figures"]["latency"]["count"], 1, "{r:?}");
    assert_eq!(v["figures"]["latency"]["p50_ms"], 4000, "{r:?}");
    let stuck = field_strs(&v["stuck"], "status");
    assert_eq!(stuck, ["delayed", "failed"], "{r:?}");
    for bad in ["0", "91", "week"] {
        let r = https(&pki, port, "GET", &format!("/?days={bad}"), &[&ok], false);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(r.body.contains("from 1 to 90"), "{r:?}");
    }

    // The queue page, read-only, by state.
    let r = https(&pki, port, "GET", "/queue?status=failed", &[&ok], false);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains(&ids[2]) && !r.body.contains(&format!(">{}<", ids[1])),
        "{r:?}"
    );
    assert!(r.body.contains("550 5.1.1 no such user"), "{r:?}");
    let r = https(&pki, port, "GET", "/queue?status=sent", &[&ok], false);
    assert_eq!(r.status, 400, "{r:?}");
    // The CRL status page: the policy's CRLs per authority.
    let r = https(&pki, port, "GET", "/crl", &[&ok], false);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("<h1>CRL status</h1>"), "{r:?}");
    assert!(r.body.contains("<td>file</td>"), "{r:?}");
    let dom = browse(port, "/queue", profile.path());
    assert!(dom.contains("mailbox busy"), "{dom}");

    // No credential: refused on every new page; no method but GET/HEAD.
    for path in [
        "/",
        "/overview",
        "/queue",
        "/crl",
        "/api/overview",
        "/api/queue",
    ] {
        let r = https(&pki, port, "GET", path, &[], false);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert!(!r.body.contains("mailbox busy"), "{r:?}");
        let r = https(&pki, port, "POST", path, &[&ok], false);
        assert_eq!(r.status, 405, "{path}: {r:?}");
    }
    // No write action: the only form is the search's, and it is a GET.
    for path in ["/", "/queue", "/crl", "/search", "/chain"] {
        let r = https(&pki, port, "GET", path, &[&ok], false);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let b = r.body.to_ascii_lowercase();
        assert_eq!(
            b.matches("<form").count(),
            b.matches("<form class=\"search\" method=\"get\"").count(),
            "{path}: {b}"
        );
        assert!(
            !b.contains("method=\"post\"") && !b.contains("<script"),
            "{path}"
        );
    }
    drop(srv);
}
