//! Helpers for the SMTP intake tests (`tests/intake.rs`): a running
//! `emla serve` that is killed when dropped, a raw SMTP client that keeps a
//! transcript, queries of the store's tables, and runners for the external
//! clients (swaks, s-nail, Python `smtplib`).
//!
//! Included by `tests/intake.rs` with `#[path = "support/smtp.rs"] mod smtp;`
//! next to `mod support;`, so `tests/verify.rs` does not compile it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::{Connection, Row};

use crate::support::{pki, support_dir, ALICE, BOB};

// ---------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------

/// What goes into the test gateway's `emla.toml`.
#[derive(Clone, Debug)]
pub struct Opts {
    /// `policy_dir` (default: the test PKI's normal policy).
    pub policy_dir: PathBuf,
    /// `require_tls` (default false; needs `tls`).
    pub require_tls: bool,
    /// `database_url` (default: SQLite under the data directory).
    pub database_url: Option<String>,
    /// `keep_rejected_bodies`.
    pub keep_rejected_bodies: bool,
    /// `data_dir` (default: `data` next to the configuration file).
    pub data_dir: Option<PathBuf>,
    /// `Some(lines)`: run the relay worker, with these more lines of the
    /// `[relay]` table (`lease_secs = 3`, …); off by default (the intake
    /// tests have no next hop).
    pub relay: Option<String>,
    /// More top-level lines (`max_sessions = 2`, `command_timeout_secs = 2`,
    /// `body_storage = "database"`, …).
    pub top_extra: String,
    /// TOML appended at the end of the file (further tables such as
    /// `[audit_web]`).
    pub extra_toml: String,
    /// `[tls] cert`, `key`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The port to listen on (default 0: any free port).
    pub port: u16,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            policy_dir: pki().policy(),
            require_tls: false,
            database_url: None,
            keep_rejected_bodies: false,
            data_dir: None,
            relay: None,
            top_extra: String::new(),
            extra_toml: String::new(),
            tls: None,
            port: 0,
        }
    }
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A gateway installation: a temporary directory with `emla.toml` and the
/// data directory. [`Gateway::start`] runs it; it can be started again on
/// the same data.
pub struct Gateway {
    tmp: tempfile::TempDir,
    /// `emla.toml`.
    pub config: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The options it was written from.
    pub opts: Opts,
    starts: AtomicUsize,
}

impl Gateway {
    /// Writes the configuration of a new installation.
    pub fn new(opts: Opts) -> Gateway {
        // Under /tmp: the data directory holds a Unix socket, whose path is
        // limited to about 100 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("emla-it-")
            .tempdir()
            .expect("temp dir");
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let mut t = format!("listen = [\"127.0.0.1:{}\"]\n", opts.port);
        t += &format!("data_dir = {}\n", toml_str(&data_dir));
        t += &format!("policy_dir = {}\n", toml_str(&opts.policy_dir));
        if let Some(u) = &opts.database_url {
            t += &format!("database_url = {u:?}\n");
        }
        t += &format!("require_tls = {}\n", opts.require_tls);
        t += &format!("keep_rejected_bodies = {}\n", opts.keep_rejected_bodies);
        t += &opts.top_extra;
        t += &format!(
            "\n[relay]\nenabled = {}\n{}\n",
            opts.relay.is_some(),
            opts.relay.as_deref().unwrap_or_default()
        );
        if let Some((cert, key)) = &opts.tls {
            t += &format!(
                "\n[tls]\ncert = {}\nkey = {}\n",
                toml_str(cert),
                toml_str(key)
            );
        }
        t += &opts.extra_toml;
        let config = tmp.path().join("emla.toml");
        std::fs::write(&config, t).expect("write emla.toml");
        Gateway {
            tmp,
            config,
            data_dir,
            opts,
            starts: AtomicUsize::new(0),
        }
    }

    /// `Gateway::new(opts)`, started.
    pub fn serve(opts: Opts) -> (Gateway, Server) {
        let gw = Gateway::new(opts);
        let srv = gw.start();
        (gw, srv)
    }

    /// [`Gateway::serve`], and a client session past EHLO.
    pub fn greeted(opts: Opts) -> (Gateway, Server, Client) {
        let (gw, srv) = Gateway::serve(opts);
        let mut c = srv.connect();
        c.ehlo();
        (gw, srv, c)
    }

    /// The temporary directory holding the configuration (and by default the data).
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Starts `emla serve --config …` and waits for its `listening on` line.
    pub fn start(&self) -> Server {
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let stderr_path = self.tmp.path().join(format!("stderr-{n}.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_emla"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn emla serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on stdout.
                    continue;
                }
            }
        });
        let mut server = Server {
            child,
            port: 0,
            stdout: Vec::new(),
            stderr_path,
            exit: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    server.stdout.push(line.clone());
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let port = addr.rsplit(':').next().and_then(|p| p.parse().ok());
                        server.port = port.unwrap_or_else(|| panic!("bad line {line:?}"));
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().ok();
                    server.exit = status;
                    panic!(
                        "emla serve exited ({status:?}) before listening:\n{}",
                        server.stderr()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "emla serve did not print `listening on` within 30 s:\n{}",
                    server.stderr()
                );
            }
        }
    }

    /// The database URL the gateway uses.
    pub fn database_url(&self) -> String {
        self.opts
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("emla.db").display()))
    }

    /// Queries of the gateway's database.
    pub fn db(&self) -> Db {
        Db {
            url: self.database_url(),
        }
    }

    /// Where an accepted body with this SHA-256 (hex) is kept.
    pub fn body_path(&self, sha256: &str) -> PathBuf {
        self.data_dir
            .join("messages")
            .join(&sha256[..2])
            .join(format!("{sha256}.eml"))
    }

    /// Every file under `messages/`.
    pub fn body_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.data_dir.join("messages")) else {
            return out;
        };
        for d in dirs.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                out.extend(files.flatten().map(|f| f.path()));
            }
        }
        out
    }

    /// Runs `emla audit verify --config …`: exit code and output.
    pub fn audit_verify(&self) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_emla"))
            .args(["audit", "verify", "--config"])
            .arg(&self.config)
            .output()
            .expect("run emla audit verify");
        (out.status.code(), output_text(&out))
    }

    /// Asserts that `emla audit verify` finds the chain intact.
    pub fn assert_audit_intact(&self) {
        let (code, out) = self.audit_verify();
        assert_eq!(code, Some(0), "emla audit verify: {out}");
    }
}

/// A running `emla serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// The SMTP port it listens on (127.0.0.1).
    pub port: u16,
    /// Its standard output up to the first `listening on` line (the
    /// `audit web listening on ADDR` line comes before it).
    pub stdout: Vec<String>,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends a signal with the `kill` command (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
                return self.exit;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// A field of `/proc/PID/status` in kB (`VmHWM`, `VmRSS`).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        s.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} not in /proc status"))
    }

    /// A new client session (greeting read).
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("EMLA_TEST_VERBOSE").is_some() {
            eprintln!(
                "--- emla serve stderr (port {})\n{}",
                self.port,
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A raw SMTP client
// ---------------------------------------------------------------------------

/// One SMTP reply.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The reply code.
    pub code: u16,
    /// The text of each line, after `NNN-` / `NNN `.
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
    /// The last line as it came: `code text`.
    pub fn last(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.last().map(String::as_str).unwrap_or("")
        )
    }
    /// The emla message id of `250 2.0.0 accepted as ID`.
    pub fn accepted_id(&self) -> Option<String> {
        if self.code != 250 {
            return None;
        }
        let t = self.lines.last()?;
        let id = t.split("accepted as ").nth(1)?.split_whitespace().next()?;
        Some(id.trim_matches(|c| c == '<' || c == '>').to_string())
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.last())
    }
}

/// A plain-TCP SMTP client that records a transcript.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// `C: …` / `S: …` lines (DATA content abbreviated).
    pub transcript: String,
    /// The greeting.
    pub greeting: Option<Reply>,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(port: u16) -> Client {
        let mut c = Client::connect_raw(port).expect("connect to emla");
        let g = c.read_reply().unwrap_or_else(|e| panic!("greeting: {e}"));
        c.greeting = Some(g);
        c
    }

    /// Connects without reading anything.
    pub fn connect_raw(port: u16) -> std::io::Result<Client> {
        Client::over(TcpStream::connect(("127.0.0.1", port))?)
    }

    fn over(stream: TcpStream) -> std::io::Result<Client> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            transcript: String::new(),
            greeting: None,
        })
    }

    /// Connects from the loopback address `source` (e.g. 127.0.0.2) and
    /// reads the greeting, or whatever the server says first.
    pub fn connect_from(port: u16, source: std::net::Ipv4Addr) -> std::io::Result<Client> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&std::net::SocketAddr::from((source, 0)).into())?;
        socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        let mut c = Client::over(socket.into())?;
        c.greeting = Some(c.read_reply()?);
        Ok(c)
    }

    /// Sets the read timeout.
    pub fn set_timeout(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("timeout");
    }

    /// A clone of the socket (for a writer thread).
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone stream")
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string());
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by server",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = match self.read_line() {
                Ok(l) => l,
                Err(e) => {
                    self.transcript += &format!("S: <{e}>\n");
                    return Err(e);
                }
            };
            self.transcript += &format!("S: {line}\n");
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: {line:?}"),
                ));
            };
            let sep = line.as_bytes().get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_string());
            if sep != Some(b'-') {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Sends bytes as they are (abbreviated in the transcript).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let shown = if bytes.len() > 200 {
            format!("<{} bytes>", bytes.len())
        } else {
            format!("{:?}", String::from_utf8_lossy(bytes))
        };
        self.transcript += &format!("C: {shown}\n");
        self.stream.write_all(bytes)
    }

    /// Sends one command line (CRLF added) and reads the reply.
    pub fn try_cmd(&mut self, line: &str) -> std::io::Result<Reply> {
        self.transcript += &format!("C: {line}\n");
        self.stream.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// [`Client::try_cmd`], panicking with the transcript on I/O errors.
    pub fn cmd(&mut self, line: &str) -> Reply {
        match self.try_cmd(line) {
            Ok(r) => r,
            Err(e) => panic!("{line}: {e}\n{}", self.transcript),
        }
    }

    /// Sends `line` and asserts the reply (see [`Client::assert_reply`]).
    pub fn expect(&mut self, line: &str, code: u16, text: &str) -> Reply {
        let r = self.cmd(line);
        self.assert_reply(&r, code, text);
        r
    }

    /// Asserts `r` has `code` and a text that starts with `text`; the
    /// message shows the transcript.
    pub fn assert_reply(&self, r: &Reply, code: u16, text: &str) {
        assert_eq!(r.code, code, "{}", self.transcript);
        assert!(r.text().starts_with(text), "{}", self.transcript);
    }

    /// `EHLO client.test`.
    pub fn ehlo(&mut self) -> Reply {
        self.cmd("EHLO client.test")
    }

    /// Sends DATA, the dot-stuffed `msg` (which must end in CRLF) and the
    /// final dot; returns the 354 refusal or the final reply.
    pub fn try_data(&mut self, msg: &[u8]) -> std::io::Result<Reply> {
        let r = self.try_cmd("DATA")?;
        if r.code != 354 {
            return Ok(r);
        }
        self.send_raw(&dot_stuff(msg))?;
        self.send_raw(b".\r\n")?;
        self.read_reply()
    }

    /// [`Client::try_data`], panicking with the transcript on I/O errors.
    pub fn data(&mut self, msg: &[u8]) -> Reply {
        match self.try_data(msg) {
            Ok(r) => r,
            Err(e) => panic!("DATA: {e}\n{}", self.transcript),
        }
    }

    /// A whole transaction after EHLO: MAIL, each RCPT, DATA. Returns the
    /// first refusal, or the reply to the final dot.
    pub fn transaction(&mut self, from: &str, to: &[&str], msg: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if r.code != 250 {
            return r;
        }
        let mut any = false;
        let mut refusal = None;
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>"));
            if r.code == 250 {
                any = true;
            } else {
                refusal.get_or_insert(r);
            }
        }
        if !any {
            return refusal.expect("at least one recipient");
        }
        self.data(msg)
    }

    /// Whether the server closes the connection within `within`: a read
    /// returns end-of-file or a reset. Replies that arrive first are recorded.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.transcript += "S: <closed>\n";
                    return true;
                }
                Ok(n) => {
                    self.transcript += &format!("S: {:?}\n", String::from_utf8_lossy(&chunk[..n]));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(e) => {
                    self.transcript += &format!("S: <{e}>\n");
                    return true;
                }
            }
        }
    }

    /// Sends QUIT (ignoring errors) and closes.
    pub fn quit(mut self) {
        let _ = self.try_cmd("QUIT");
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Closes the socket without QUIT.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A second transaction as a client hides it in the data of a first (SMTP
/// smuggling): MAIL FROM Alice, RCPT TO Bob, DATA and `message`
/// dot-stuffed, without the final dot.
pub fn smuggled_transaction(message: &[u8]) -> Vec<u8> {
    let mut t = format!("MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n").into_bytes();
    t.extend_from_slice(&dot_stuff(message));
    t
}

/// Dot-stuffing (RFC 5321 4.5.2).
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

/// One session: EHLO, a transaction, QUIT. Returns the transaction's
/// final reply and the transcript.
pub fn send(port: u16, from: &str, to: &[&str], msg: &[u8]) -> (Reply, String) {
    let mut c = Client::connect(port);
    c.ehlo();
    let r = c.transaction(from, to, msg);
    let t = c.transcript.clone();
    c.quit();
    (r, t)
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

// ---------------------------------------------------------------------------
// The store's tables
// ---------------------------------------------------------------------------

/// A row of `messages`.
#[derive(Clone, Debug)]
pub struct MessageRow {
    pub id: String,
    pub sha256: String,
    pub size: i64,
    pub mail_from: String,
    pub rcpt_to: String,
    pub verdict: String,
    pub reason: String,
    pub detail: String,
    pub body_stored: bool,
    pub client_ip: String,
    pub helo: String,
    pub tls_version: Option<String>,
}

/// A row of `queue`.
#[derive(Clone, Debug)]
pub struct QueueRow {
    pub message_id: String,
    pub next_hop: String,
    pub recipients: String,
    pub status: String,
}

/// A row of `audit`.
#[derive(Clone, Debug)]
pub struct AuditRow {
    pub seq: i64,
    pub kind: String,
    pub message_id: Option<String>,
    pub data: String,
}

/// Read-only queries of a gateway's database (SQLite or PostgreSQL).
pub struct Db {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `$sql` on the database at `$url` and maps each row with `|$r| $body`
/// (the body is compiled once per backend).
macro_rules! fetch {
    ($url:expr, $sql:expr, |$r:ident| $body:expr) => {{
        let url: &str = $url;
        let sql: &str = $sql;
        runtime().block_on(async {
            if url.starts_with("sqlite:") {
                fetch!(@on sqlx::SqliteConnection, url, sql, |$r| $body)
            } else {
                fetch!(@on sqlx::PgConnection, url, sql, |$r| $body)
            }
        })
    }};
    (@on $conn:ty, $url:ident, $sql:ident, |$r:ident| $body:expr) => {{
        let mut c = <$conn>::connect($url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", $url));
        let rows = sqlx::query($sql)
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", $sql));
        let out: Vec<_> = rows.iter().map(|$r| $body).collect();
        let _ = c.close().await;
        out
    }};
}

impl Db {
    /// Every row of `messages`.
    pub fn messages(&self) -> Vec<MessageRow> {
        fetch!(
            &self.url,
            "SELECT id, sha256, size, mail_from, rcpt_to, verdict, reason, detail, \
             CAST(CASE WHEN body_stored THEN 1 ELSE 0 END AS BIGINT) AS stored, \
             client_ip, helo, tls_version FROM messages ORDER BY received_at, id",
            |r| MessageRow {
                id: r.get("id"),
                sha256: r.get("sha256"),
                size: r.get("size"),
                mail_from: r.get("mail_from"),
                rcpt_to: r.get("rcpt_to"),
                verdict: r.get("verdict"),
                reason: r.get("reason"),
                detail: r.get("detail"),
                body_stored: r.get::<i64, _>("stored") != 0,
                client_ip: r.get("client_ip"),
                helo: r.get("helo"),
                tls_version: r.get("tls_version"),
            }
        )
    }

    /// The `dsn` column (JSON) of message `id`.
    pub fn dsn(&self, id: &str) -> Option<serde_json::Value> {
        let sql = format!(
            "SELECT dsn FROM messages WHERE id = '{}'",
            id.replace('\'', "''")
        );
        fetch!(&self.url, &sql, |r| r.get::<Option<String>, _>("dsn"))
            .into_iter()
            .flatten()
            .next()
            .map(|d| serde_json::from_str(&d).expect("dsn is JSON"))
    }

    /// The row of message `id`.
    pub fn message(&self, id: &str) -> Option<MessageRow> {
        self.messages().into_iter().find(|m| m.id == id)
    }

    /// The rows of `queue` for message `id`.
    pub fn queue_of(&self, id: &str) -> Vec<QueueRow> {
        self.queue()
            .into_iter()
            .filter(|q| q.message_id == id)
            .collect()
    }

    /// Every row of `queue`.
    pub fn queue(&self) -> Vec<QueueRow> {
        fetch!(
            &self.url,
            "SELECT message_id, next_hop, recipients, status FROM queue ORDER BY id",
            |r| QueueRow {
                message_id: r.get("message_id"),
                next_hop: r.get("next_hop"),
                recipients: r.get("recipients"),
                status: r.get("status"),
            }
        )
    }

    /// Every row of `audit`, in chain order.
    pub fn audit(&self) -> Vec<AuditRow> {
        fetch!(
            &self.url,
            "SELECT seq, kind, message_id, data FROM audit ORDER BY seq",
            |r| AuditRow {
                seq: r.get("seq"),
                kind: r.get("kind"),
                message_id: r.get("message_id"),
                data: r.get("data"),
            }
        )
    }

    /// The rows of `audit` that `keep` keeps, in chain order.
    fn audit_where(&self, keep: impl Fn(&AuditRow) -> bool) -> Vec<AuditRow> {
        let mut rows = self.audit();
        rows.retain(keep);
        rows
    }

    /// The one BIGINT that `sql` selects (e.g. a `COUNT(*)`).
    pub fn scalar(&self, sql: &str) -> i64 {
        fetch!(&self.url, sql, |r| r.get::<i64, _>(0))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }

    /// The rows of `audit` of one kind, in chain order.
    pub fn audit_of(&self, kind: &str) -> Vec<AuditRow> {
        self.audit_where(|a| a.kind == kind)
    }

    /// The rows of `audit` about message `id`, in chain order.
    pub fn audit_about(&self, id: &str) -> Vec<AuditRow> {
        self.audit_where(|a| a.message_id.as_deref() == Some(id))
    }

    /// Audit rows of refusals decided before DATA (kind mentions a
    /// rejection, no message id).
    pub fn early_rejections(&self) -> Vec<AuditRow> {
        self.audit_where(|a| a.kind.contains("reject") && a.message_id.is_none())
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// The PostgreSQL URL of a database the role may create databases from
/// (`EMLA_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`).
pub fn postgres_admin_url() -> String {
    std::env::var("EMLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL database, dropped (with FORCE) when this is dropped.
pub struct PgDb {
    /// The database's name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl PgDb {
    /// Creates `emla_it_<pid>_<n>`.
    pub fn create() -> PgDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "emla_it_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = postgres_admin_url();
        pg_exec(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        pg_exec(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').expect("URL has a database").0;
        PgDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Refuses (`false`) or allows new connections, and with `false`
    /// terminates the existing ones.
    pub fn allow_connections(&self, allow: bool) {
        let admin = postgres_admin_url();
        pg_exec(
            &admin,
            &format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", self.name),
        );
        if !allow {
            pg_exec(
                &admin,
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{}' AND pid <> pg_backend_pid()",
                    self.name
                ),
            );
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin = postgres_admin_url();
        let _ = std::panic::catch_unwind(|| {
            pg_exec(
                &admin,
                &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name),
            );
            pg_exec(
                &admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        });
    }
}

/// Runs one statement on PostgreSQL.
pub fn pg_exec(url: &str, sql: &str) {
    runtime().block_on(async {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set EMLA_TEST_POSTGRES): {e}"));
        sqlx::raw_sql(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = c.close().await;
    })
}

/// Whether PostgreSQL answers at [`postgres_admin_url`].
pub fn postgres_available() -> bool {
    runtime().block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&postgres_admin_url()),
        )
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false)
    })
}

// ---------------------------------------------------------------------------
// External clients
// ---------------------------------------------------------------------------

/// Runs a command with a time limit (killing it when over); returns its output.
/// Standard input comes from `stdin` (a file) or is empty.
pub fn run_with_timeout(cmd: &mut Command, stdin: Option<&Path>, limit: Duration) -> Output {
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).expect("open stdin file")),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait");
            eprintln!("{cmd:?} killed after {limit:?}");
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

/// Whether `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Writes `msg` for `swaks --data @FILE`. swaks appends CRLF before the
/// final dot, so the file leaves out the message's last CRLF: the bytes on
/// the wire are then exactly `msg` (swaks dot-stuffs the rest itself).
pub fn swaks_data_file(msg: &[u8]) -> PathBuf {
    assert!(msg.ends_with(b"\r\n"), "message ends with CRLF");
    pki().write_scratch("swaks.eml", &msg[..msg.len() - 2])
}

/// `swaks --server 127.0.0.1 --port P --from F --to T --data @FILE` plus
/// `extra`; returns exit code and transcript (stdout + stderr).
pub fn swaks(port: u16, from: &str, to: &str, msg: &[u8], extra: &[&str]) -> (Option<i32>, String) {
    let file = swaks_data_file(msg);
    let out = run_with_timeout(
        Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--helo", "client.test", "--from", from, "--to", to])
            .arg("--data")
            .arg(format!("@{}", file.display()))
            .args(extra),
        None,
        Duration::from_secs(60),
    );
    (out.status.code(), output_text(&out))
}

/// The replies `tests/support/smtp_send.py` printed, one JSON object per file.
pub fn smtp_send_py(
    port: u16,
    from: &str,
    to: &[&str],
    files: &[PathBuf],
) -> Vec<serde_json::Value> {
    let python = std::env::var("EMLA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.arg(support_dir().join("smtp_send.py"))
        .args(["--port", &port.to_string(), "--from", from]);
    for t in to {
        cmd.args(["--to", t]);
    }
    cmd.args(files);
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(60));
    crate::support::cmd::assert_succeeded("smtp_send.py", &out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A self-signed TLS server certificate for `emla.test` (ECDSA P-256),
/// written with `openssl req`; returns (cert, key).
pub fn tls_server_cert(dir: &Path) -> (PathBuf, PathBuf) {
    tls_server_cert_for(dir, "DNS:emla.test")
}

/// A self-signed P-256 server certificate with `san` (e.g. `IP:127.0.0.1`).
pub fn tls_server_cert_for(dir: &Path, san: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join("tls-cert.pem");
    let key = dir.join("tls-key.pem");
    crate::support::run_ok(
        Command::new(crate::support::openssl())
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:P-256")
            .args(["-nodes", "-days", "2", "-subj", "/CN=emla.test"])
            .arg("-addext")
            .arg(format!("subjectAltName={san}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

// ---------------------------------------------------------------------------
// Policy copies
// ---------------------------------------------------------------------------

/// A copy of the test policy next to the PKI's `certs/` (the authority
/// files point at `../certs/…`); removed when dropped.
pub struct PolicyCopy(pub PathBuf);

impl PolicyCopy {
    pub fn new() -> PolicyCopy {
        static N: AtomicUsize = AtomicUsize::new(0);
        let src = pki().policy();
        let dst = pki().dir.join(format!(
            "policy-reload-{}",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(dst.join("authorities")).unwrap();
        for f in ["gateway.toml", "routes.toml"] {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
        for e in std::fs::read_dir(src.join("authorities"))
            .unwrap()
            .flatten()
        {
            std::fs::copy(e.path(), dst.join("authorities").join(e.file_name())).unwrap();
        }
        PolicyCopy(dst)
    }

    /// Replaces `from` (which must occur) with `to` in the policy file `file`.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        crate::support::edit_file(&self.0.join(file), from, to);
    }
}

impl Drop for PolicyCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The `emla` CLI and evidence bundles
// ---------------------------------------------------------------------------

/// The stdout of `out` followed by its stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `emla ARGS --config CONFIG`: exit code (-1 when killed by a signal)
/// and stdout followed by stderr.
pub fn emla_cli(args: &[&str], config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("cannot run emla {args:?}: {e}"));
    (out.status.code().unwrap_or(-1), output_text(&out))
}

/// `emla policy replay POLICY --json --config CONFIG`: exit code and the
/// report.
pub fn policy_replay_json(config: &Path, policy: &Path) -> (i32, serde_json::Value) {
    let (code, out) = emla_cli(
        &["policy", "replay", policy.to_str().unwrap(), "--json"],
        config,
    );
    let json = out.lines().next().unwrap_or_default();
    let v = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    (code, v)
}

/// The ids of a replay report's changes, in order.
pub fn changed_ids(report: &serde_json::Value) -> Vec<String> {
    report["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {report}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs an evidence bundle's `verify.sh` in `dir`: success and output.
pub fn run_checks(dir: &Path) -> (bool, String) {
    let out = Command::new("sh")
        .arg("verify.sh")
        .current_dir(dir)
        .output()
        .expect("run sh verify.sh");
    (out.status.success(), output_text(&out))
}
