//! Shared helpers for the end-to-end tests: a generated test PKI, messages
//! signed by independent tools (OpenSSL `smime` and `cms`, Python
//! `cryptography`), tampering helpers, and a runner for `emla verify`.
//!
//! The PKI (`pki.py`) is generated once per test binary into
//! `$CARGO_TARGET_TMPDIR/emla-test-pki-<pid>` and reused by every test of
//! that binary. Certificate validity is relative to the generation time, so a
//! PKI is never reused across runs.
//!
//! Requirements on the test host: `openssl` (3.x) and `python3` with the
//! `cryptography` package on `PATH` (override with `EMLA_TEST_OPENSSL` and
//! `EMLA_TEST_PYTHON`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

pub mod cmd;
pub use cmd::{openssl, run_ok};

/// `openssl req` arguments for a fresh unencrypted P-256 key.
pub const NEW_P256_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// The support directory holding `pki.py` and `sign_py.py`.
pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support")
}

fn python() -> String {
    std::env::var("EMLA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Calls `probe` every `pause` until it is done (`Ok`), for at most
/// `limit`; then panics with what it last said was missing.
pub fn eventually<T>(
    limit: Duration,
    pause: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match probe() {
            Ok(done) => return done,
            Err(missing) => assert!(
                std::time::Instant::now() < deadline,
                "after {limit:?}: {missing}"
            ),
        }
        std::thread::sleep(pause);
    }
}

/// The `field` string of each element of the JSON array `list`, in order.
pub fn field_strs<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|e| {
            e[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field}: {e}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The test PKI
// ---------------------------------------------------------------------------

/// The generated PKI and policy directories (see `tests/support/pki.py`).
pub struct Pki {
    /// The output directory of `pki.py`.
    pub dir: PathBuf,
    /// A scratch directory for messages, under `dir`.
    scratch: PathBuf,
}

/// The PKI of this test binary, generated on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_old_pkis(&base);
        let dir = base.join(format!("emla-test-pki-{}", std::process::id()));
        run_ok(
            Command::new(python())
                .arg(support_dir().join("pki.py"))
                .arg(&dir),
        );
        assert!(dir.join(".done").exists(), "pki.py did not finish");
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        Pki { dir, scratch }
    })
}

/// Removes PKIs of earlier runs (older than an hour): they are never reused.
fn remove_old_pkis(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for e in entries.flatten() {
        let name = e.file_name();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t < hour_ago)
            .unwrap_or(false);
        if name.to_string_lossy().starts_with("emla-test-pki-") && old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Pki {
    /// `certs/<cc>/<name>.pem`.
    pub fn cert(&self, cc: &str, name: &str) -> PathBuf {
        self.dir.join(format!("certs/{cc}/{name}.pem"))
    }
    /// `certs/<cc>/<name>.key` (PKCS#8 PEM).
    pub fn key(&self, cc: &str, name: &str) -> PathBuf {
        self.dir.join(format!("certs/{cc}/{name}.key"))
    }
    /// `certs/<cc>/chain.pem`: the issuing CA, for `-certfile`.
    pub fn chain(&self, cc: &str) -> PathBuf {
        self.dir.join(format!("certs/{cc}/chain.pem"))
    }
    /// The normal policy directory.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy")
    }
    /// `policy-stale` (AA's issuing CRL is past nextUpdate) or `policy-nocrl`
    /// (AA's issuing CRL is missing).
    pub fn policy_named(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// A fresh, unique path in the scratch directory.
    pub fn scratch_file(&self, stem: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("{stem}-{n}"))
    }
    /// Writes `data` to a fresh scratch file and returns its path.
    pub fn write_scratch(&self, stem: &str, data: &[u8]) -> PathBuf {
        let p = self.scratch_file(stem);
        std::fs::write(&p, data).expect("write scratch file");
        p
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// Addresses of the test officials.
pub const ALICE: &str = "alice@justice.aa.example";
pub const EVE: &str = "eve@justice.aa.example";
pub const BOB: &str = "bob@justice.bb.example";
pub const BEA: &str = "bea@justice.bb.example";

/// A small text/plain MIME entity with CRLF line endings.
pub fn text_body() -> Vec<u8> {
    b"Content-Type: text/plain; charset=utf-8\r\n\
      Content-Transfer-Encoding: 7bit\r\n\
      \r\n\
      Request for mutual legal assistance, case 2026/0042.\r\n\
      \r\n\
      The quick brown fox jumps over the lazy dog.\r\n\
      Please confirm receipt.\r\n"
        .to_vec()
}

/// A text/plain entity of at least `size` bytes (lines of 76 characters).
pub fn big_body(size: usize) -> Vec<u8> {
    let mut b = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n".to_vec();
    let line = [b'x'; 76];
    while b.len() < size {
        b.extend_from_slice(&line);
        b.extend_from_slice(b"\r\n");
    }
    b
}

/// A text/plain entity wrapped in `depth` nested multipart/mixed entities.
pub fn nested_body(depth: usize) -> Vec<u8> {
    let mut inner = text_body();
    for level in (1..=depth).rev() {
        let boundary = format!("nest-{level}");
        let mut b = format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
        )
        .into_bytes();
        b.extend_from_slice(&inner);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        inner = b;
    }
    inner
}

/// How a message is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `openssl smime -sign` (multipart/signed, application/x-pkcs7-signature).
    SmimeDetached,
    /// `openssl smime -sign -nodetach` (application/x-pkcs7-mime signed-data).
    SmimeOpaque,
    /// `openssl cms -sign` (multipart/signed, application/pkcs7-signature).
    CmsDetached,
    /// `openssl cms -sign -nodetach` (application/pkcs7-mime signed-data).
    CmsOpaque,
    /// `openssl cms -sign -nodetach -stream`: indefinite-length BER.
    CmsOpaqueStream,
    /// `sign_py.py` (cryptography; multipart/signed).
    PyDetached,
    /// `sign_py.py --opaque` (cryptography; application/pkcs7-mime DER).
    PyOpaque,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 7] = [
        Tool::SmimeDetached,
        Tool::SmimeOpaque,
        Tool::CmsDetached,
        Tool::CmsOpaque,
        Tool::CmsOpaqueStream,
        Tool::PyDetached,
        Tool::PyOpaque,
    ];

    /// Whether the signed content travels outside the CMS object.
    pub fn detached(self) -> bool {
        matches!(
            self,
            Tool::SmimeDetached | Tool::CmsDetached | Tool::PyDetached
        )
    }
}

/// Signs the MIME entity `body` as `certs/<cc>/<signer>` with `tool`, passing
/// `extra` arguments to the tool; returns the tool's raw output: a MIME
/// entity starting with `MIME-Version:`, without From/To/Subject headers.
///
/// Line endings are the tool's: OpenSSL writes LF everywhere except inside
/// the signed content, which it writes canonical (CRLF); `sign_py.py` writes
/// CRLF throughout.
pub fn sign(tool: Tool, cc: &str, signer: &str, body: &[u8], extra: &[&str]) -> Vec<u8> {
    let pki = pki();
    let input = pki.write_scratch("body", body);
    let output = pki.scratch_file("signed");
    let mut cmd;
    match tool {
        Tool::PyDetached | Tool::PyOpaque => {
            cmd = Command::new(python());
            cmd.arg(support_dir().join("sign_py.py"))
                .arg(pki.key(cc, signer))
                .arg(pki.cert(cc, signer))
                .arg(pki.chain(cc))
                .arg(&input)
                .arg(&output)
                .arg("--no-headers");
            if tool == Tool::PyOpaque {
                cmd.arg("--opaque");
            }
        }
        _ => {
            cmd = Command::new(openssl());
            let smime = matches!(tool, Tool::SmimeDetached | Tool::SmimeOpaque);
            cmd.arg(if smime { "smime" } else { "cms" })
                .arg("-sign")
                .arg("-in")
                .arg(&input)
                .arg("-signer")
                .arg(pki.cert(cc, signer))
                .arg("-inkey")
                .arg(pki.key(cc, signer))
                .arg("-certfile")
                .arg(pki.chain(cc))
                .arg("-out")
                .arg(&output);
            if !tool.detached() {
                cmd.arg("-nodetach");
            }
            if tool == Tool::CmsOpaqueStream {
                cmd.arg("-stream");
            }
        }
    }
    cmd.args(extra);
    run_ok(&mut cmd);
    std::fs::read(&output).expect("read signed output")
}

/// An RFC 5322 header block (CRLF, no trailing blank line): From, To,
/// Subject, Date, Message-ID. `from` is the literal `From:` value.
pub fn headers(from: &str, to: &[&str]) -> Vec<u8> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .expect("format date");
    let domain = from
        .rsplit('@')
        .next()
        .unwrap_or("test.example")
        .trim_end_matches('>');
    let mut h = format!("From: {from}\r\n");
    if !to.is_empty() {
        h.push_str(&format!("To: {}\r\n", to.join(", ")));
    }
    h.push_str("Subject: MLA request 2026/0042\r\n");
    h.push_str(&format!("Date: {date}\r\n"));
    h.push_str(&format!(
        "Message-ID: <{}.{}@{domain}>\r\n",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    h.into_bytes()
}

/// `headers` followed by `entity` (which starts with its own MIME headers).
pub fn with_headers(from: &str, to: &[&str], entity: &[u8]) -> Vec<u8> {
    let mut m = headers(from, to);
    m.extend_from_slice(entity);
    m
}

/// Normalizes every line ending to CRLF, as an MTA does before SMTP DATA.
pub fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\n' | b'\r' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `text_body()` with a line numbering it: each call a new request, so
/// two of them are never one signed message sent twice (a replay).
pub fn numbered_body() -> Vec<u8> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut body = text_body();
    body.extend_from_slice(format!("Request {}-{n}.\r\n", std::process::id()).as_bytes());
    body
}

/// The standard signed message: [`numbered_body`] signed by
/// `certs/<cc>/<signer>` with `tool`, with `From: from` and `To: to`, CRLF
/// throughout.
pub fn mail(tool: Tool, cc: &str, signer: &str, from: &str, to: &[&str]) -> Vec<u8> {
    crlf(&with_headers(
        from,
        to,
        &sign(tool, cc, signer, &numbered_body(), &[]),
    ))
}

/// Alice's message to Bob, signed with `tool`.
pub fn alice_to_bob(tool: Tool) -> Vec<u8> {
    mail(tool, "aa", "alice", ALICE, &[BOB])
}

// ---------------------------------------------------------------------------
// Tampering
// ---------------------------------------------------------------------------

/// Position of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Replaces the first occurrence of `from` by `to`; panics when absent.
pub fn replace_once(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = find(hay, from)
        .unwrap_or_else(|| panic!("{:?} not found in message", String::from_utf8_lossy(from)));
    let mut out = hay[..i].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&hay[i + from.len()..]);
    out
}

/// The byte range of the base64 body of the part whose headers contain
/// `marker` (e.g. `smime.p7s`), in a CRLF message: from after the blank line
/// ending the part's headers to the next CRLF followed by `--` or the end.
fn base64_range(msg: &[u8], marker: &[u8]) -> std::ops::Range<usize> {
    let m = find(msg, marker).expect("signature part marker");
    let start = m + find(&msg[m..], b"\r\n\r\n").expect("end of part headers") + 4;
    let end = find(&msg[start..], b"\r\n--")
        .map(|e| start + e)
        .unwrap_or(msg.len());
    start..end
}

/// Decodes the CMS object of a CRLF message's `smime.p7s` part (detached) or
/// `smime.p7m` body (opaque), lets `f` edit the DER, and re-encodes it.
pub fn edit_cms(msg: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let marker: &[u8] = if find(msg, b"smime.p7s").is_some() {
        b"smime.p7s"
    } else {
        b"smime.p7m"
    };
    let range = base64_range(msg, marker);
    let b64: Vec<u8> = msg[range.clone()]
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let b64e = base64::engine::general_purpose::STANDARD;
    let mut der = b64e.decode(&b64).expect("signature part is base64");
    f(&mut der);
    let enc = b64e.encode(&der);
    let mut wrapped = Vec::new();
    for chunk in enc.as_bytes().chunks(64) {
        wrapped.extend_from_slice(chunk);
        wrapped.extend_from_slice(b"\r\n");
    }
    // Keep the original's ending: the range stops before the CRLF of a
    // following boundary, so drop our last CRLF in that case.
    if range.end < msg.len() {
        wrapped.truncate(wrapped.len() - 2);
    }
    let mut out = msg[..range.start].to_vec();
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(&msg[range.end..]);
    out
}

/// Replaces the whole signature part's content with base64 of `bytes`.
pub fn replace_cms(msg: &[u8], bytes: &[u8]) -> Vec<u8> {
    edit_cms(msg, |der| *der = bytes.to_vec())
}

/// Flips one bit near the end of the DER SignedData. With no unsigned
/// attributes the last field of the (last) SignerInfo is the signature value,
/// so this corrupts the signature and nothing else.
pub fn flip_signature_bit(msg: &[u8]) -> Vec<u8> {
    edit_cms(msg, |der| {
        assert!(
            der[1] != 0x80,
            "indefinite-length BER: the signature is not at the end"
        );
        let n = der.len();
        der[n - 8] ^= 0x01;
    })
}

/// DER of the signingTime attribute type (1.2.840.113549.1.9.5).
const SIGNING_TIME_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05,
];

/// Changes the last digit of the seconds of the signingTime signed attribute
/// (UTCTime `YYMMDDHHMMSSZ`): the attributes still parse, their signature no
/// longer verifies.
pub fn tamper_signing_time(msg: &[u8]) -> Vec<u8> {
    edit_cms(msg, |der| {
        let i = find(der, &SIGNING_TIME_OID).expect("signingTime attribute");
        let v = i + SIGNING_TIME_OID.len();
        assert_eq!(&der[v..v + 4], &[0x31, 0x0f, 0x17, 0x0d], "UTCTime value");
        let digit = v + 4 + 11;
        der[digit] = if der[digit] == b'0' { b'1' } else { b'0' };
    })
}

/// xorshift64*: a deterministic sequence for a fixed seed, no dependency
/// (the mutation tests).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// Running `emla verify`
// ---------------------------------------------------------------------------

/// What one run of `emla verify` produced.
pub struct Outcome {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The message file that was judged (kept for debugging).
    pub message: PathBuf,
    /// The case of a table this run belongs to (empty: none).
    pub case: String,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.case.is_empty() {
            write!(f, "case {}: ", self.case)?;
        }
        write!(
            f,
            "exit {:?}, message {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.message.display(),
            self.stdout,
            self.stderr
        )
    }
}

impl Outcome {
    /// Names the run `case` (of a table) in the failure messages.
    pub fn case(mut self, case: impl Into<String>) -> Self {
        self.case = case.into();
        self
    }

    /// The `--json` object printed on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {self:?}"))
    }

    /// Asserts the verdict, the reason code and the matching exit code.
    pub fn assert_verdict(&self, reason: &str) -> serde_json::Value {
        let accept = reason == "ok";
        let want_code = if accept { 0 } else { 1 };
        assert_eq!(
            self.code,
            Some(want_code),
            "expected exit {want_code} ({reason}): {self:?}"
        );
        let v = self.json();
        if std::env::var_os("EMLA_TEST_VERBOSE").is_some() {
            eprintln!(
                "emla verify {}: {} {}",
                self.message.display(),
                v["reason"],
                v["detail"]
            );
        }
        assert_eq!(v["reason"], reason, "reason: {self:?}");
        assert_eq!(
            v["verdict"],
            if accept { "accept" } else { "reject" },
            "verdict: {self:?}"
        );
        assert!(v["detail"].is_string(), "detail is a string: {self:?}");
        v
    }

    /// Asserts acceptance.
    pub fn assert_accept(&self) -> serde_json::Value {
        self.assert_verdict("ok")
    }

    /// Asserts rejection with `reason`.
    pub fn assert_reject(&self, reason: &str) -> serde_json::Value {
        assert_ne!(reason, "ok");
        self.assert_verdict(reason)
    }

    /// Asserts rejection with `reason` and a detail that contains every one
    /// of `needles`; returns the detail.
    pub fn assert_reject_saying(&self, reason: &str, needles: &[&str]) -> String {
        let v = self.assert_reject(reason);
        let d = v["detail"].as_str().unwrap().to_owned();
        for n in needles {
            assert!(d.contains(n), "{n:?} not in the detail {d:?}: {self:?}");
        }
        d
    }
}

/// One invocation of `emla verify`.
pub struct Verify {
    /// The message bytes.
    pub message: Vec<u8>,
    /// `--policy`.
    pub policy: PathBuf,
    /// `--mail-from`.
    pub mail_from: Option<String>,
    /// `--rcpt`, repeated.
    pub rcpt: Vec<String>,
    /// Further arguments (`--at ...`).
    pub args: Vec<String>,
    /// `--json`.
    pub json: bool,
}

impl Verify {
    /// `message` against the normal policy, envelope alice -> bob, `--json`.
    pub fn new(message: Vec<u8>) -> Self {
        Verify {
            message,
            policy: pki().policy(),
            mail_from: Some(ALICE.into()),
            rcpt: vec![BOB.into()],
            args: Vec::new(),
            json: true,
        }
    }
    /// Sets `--mail-from` (`None`: omitted).
    pub fn mail_from(mut self, a: Option<&str>) -> Self {
        self.mail_from = a.map(Into::into);
        self
    }
    /// Sets the `--rcpt` list.
    pub fn rcpt(mut self, r: &[&str]) -> Self {
        self.rcpt = r.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Sets `--policy`.
    pub fn policy(mut self, p: PathBuf) -> Self {
        self.policy = p;
        self
    }
    /// Adds `--at T`.
    pub fn at(mut self, t: &str) -> Self {
        self.args.push("--at".into());
        self.args.push(t.into());
        self
    }
    /// Human output instead of `--json`.
    pub fn text(mut self) -> Self {
        self.json = false;
        self
    }
    /// Runs `emla verify`.
    pub fn run(self) -> Outcome {
        let path = pki().write_scratch("msg.eml", &self.message);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_emla"));
        cmd.arg("verify")
            .arg(&path)
            .arg("--policy")
            .arg(&self.policy);
        if let Some(a) = &self.mail_from {
            cmd.arg("--mail-from").arg(a);
        }
        for r in &self.rcpt {
            cmd.arg("--rcpt").arg(r);
        }
        cmd.args(&self.args);
        if self.json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("run emla");
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            message: path,
            case: String::new(),
        }
    }
}

/// RFC 3339 rendering of now + `days`.
pub fn days_from_now(days: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

/// Verifies `msg` with `openssl smime -verify` against `cc`'s root (a fixture
/// sanity check independent of emla). Returns whether it verified.
pub fn openssl_verifies(msg: &[u8], cc: &str) -> bool {
    let pki = pki();
    let path = pki.write_scratch("openssl.eml", msg);
    let out = Command::new(openssl())
        .args(["smime", "-verify", "-purpose", "smimesign", "-CAfile"])
        .arg(pki.dir.join(format!("certs/{cc}/root.pem")))
        .arg("-certfile")
        .arg(pki.chain(cc))
        .arg("-in")
        .arg(&path)
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    out.status.success()
}

/// Whether `openssl cms -verify` accepts `msg` as emla judges it: the
/// message as it travels (`-binary`: no line-ending translation, as emla
/// refuses bare LF, so canonical and raw content are the same bytes;
/// `-crlfeol`: the CRLF before a boundary belongs to it, RFC 2046 §5.1.1,
/// where `-binary` alone keeps its CR in the content), with the CAs the
/// policy gives `cc` (its root and issuing CA in `-CAfile`: OpenSSL takes
/// intermediates only from the message or the trusted store, and still
/// needs a path to the self-signed root), any key purpose (`-purpose any`:
/// emla applies RFC 8550's rule itself). No `-certfile`: the signer's
/// certificate must travel in the message, as emla requires. No CRL check:
/// emla's revocation checks only refuse more.
pub fn openssl_cms_verifies(msg: &[u8], cc: &str) -> bool {
    let pki = pki();
    let cas = pki.dir.join(format!("certs/{cc}/policy-cas.pem"));
    if !cas.exists() {
        let both = [
            std::fs::read(pki.dir.join(format!("certs/{cc}/root.pem"))).expect("root"),
            std::fs::read(pki.chain(cc)).expect("chain"),
        ]
        .concat();
        // Written whole under another name first: tests run in parallel.
        let tmp = pki.scratch_file("policy-cas");
        std::fs::write(&tmp, both).expect("write CA bundle");
        std::fs::rename(&tmp, &cas).expect("CA bundle");
    }
    let path = pki.write_scratch("openssl-cms.eml", msg);
    let out = Command::new(openssl())
        .args(["cms", "-verify", "-binary", "-crlfeol", "-purpose", "any"])
        .arg("-CAfile")
        .arg(&cas)
        .arg("-in")
        .arg(&path)
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    let _ = std::fs::remove_file(&path);
    out.status.success()
}

// ---------------------------------------------------------------------------
// Re-encoding DER
// ---------------------------------------------------------------------------

/// Header length and content length of the DER TLV at the start of `der`
/// (definite lengths only).
pub fn tlv_header(der: &[u8]) -> (usize, usize) {
    let first = der[1] as usize;
    if first < 0x80 {
        return (2, first);
    }
    let k = first & 0x7f;
    assert!(k > 0, "indefinite-length BER: re-encode DER only");
    let len = der[2..2 + k]
        .iter()
        .fold(0usize, |n, &b| n * 256 + b as usize);
    (2 + k, len)
}

/// The DER TLV of `tag` around `content`.
pub fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// `der` with the TLV `old` starting at byte `at` replaced by `new`, every
/// enclosing length re-encoded.
fn replace_tlv_at(der: &[u8], at: usize, old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < der.len() {
        let (h, n) = tlv_header(&der[pos..]);
        let raw = &der[pos..pos + h + n];
        if pos == at && raw == old {
            out.extend_from_slice(new);
        } else if der[pos] & 0x20 != 0 && at > pos && at < pos + h + n {
            let inner = replace_tlv_at(&der[pos + h..pos + h + n], at - pos - h, old, new);
            out.extend_from_slice(&der_wrap(der[pos], &inner));
        } else {
            out.extend_from_slice(raw);
        }
        pos += h + n;
    }
    out
}

/// Replaces the last occurrence of the DER TLV `old` (e.g. the
/// SignerInfo's signatureAlgorithm, which follows the certificates) by
/// `new`, re-encoding the lengths around it.
pub fn replace_last_tlv(der: &mut Vec<u8>, old: &[u8], new: &[u8]) {
    let at = der
        .windows(old.len())
        .rposition(|w| w == old)
        .expect("TLV to replace");
    let out = replace_tlv_at(der, at, old, new);
    assert_ne!(&out, der, "the TLV was not at a TLV boundary");
    *der = out;
}

/// Copies the tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Replaces the first `from` (which must occur) by `to` in the file `path`.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(from),
        "{} has no {from:?}:\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A fresh copy of the policy directory `base` beside the PKI's `certs/`
/// (`policy-NAME-PID`), with each `(file, from, to)` edit made.
pub fn policy_variant(base: &Path, name: &str, edits: &[(&str, &str, &str)]) -> PathBuf {
    let dir = pki()
        .dir
        .join(format!("policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(base, &dir);
    for (file, from, to) in edits {
        edit_file(&dir.join(file), from, to);
    }
    dir
}

/// The consecutive TLVs of a DER `content`, each whole.
pub fn der_items(content: &[u8]) -> Vec<Vec<u8>> {
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < content.len() {
        let (h, n) = tlv_header(&content[pos..]);
        items.push(content[pos..pos + h + n].to_vec());
        pos += h + n;
    }
    items
}

/// The content of the DER TLV `tlv`.
pub fn der_content(tlv: &[u8]) -> &[u8] {
    let (h, n) = tlv_header(tlv);
    &tlv[h..h + n]
}

/// Lets `f` edit the fields of the SignedData in the DER ContentInfo `der`
/// (version, digestAlgorithms, encapContentInfo, [0] certificates, [1]
/// crls, signerInfos: those present, in order), then re-encodes it.
pub fn edit_signed_data(der: &mut Vec<u8>, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let ci = der_items(der_content(der));
    let sd = der_content(der_content(&ci[1])).to_vec();
    let mut fields = der_items(&sd);
    f(&mut fields);
    let sd = der_wrap(0x30, &fields.concat());
    *der = der_wrap(0x30, &[ci[0].clone(), der_wrap(0xa0, &sd)].concat());
}

/// A copy of the test policy whose `gateway.toml` names the gateway's
/// signing identity (`certs/aa/gateway.pem`, under AA's CA).
pub fn signing_policy() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let p = pki();
        let dir = p.dir.join("policy-signing");
        if !dir.join(".done").exists() {
            copy_dir(&p.policy(), &dir);
            let g = dir.join("gateway.toml");
            let text = std::fs::read_to_string(&g).unwrap().replace(
                "hostname = \"emla.test\"\n",
                "hostname = \"emla.test\"\npostmaster = \"postmaster@justice.aa.example\"\n\
                 signing_cert = \"../certs/aa/gateway.pem\"\nsigning_key = \"../certs/aa/gateway.key\"\n",
            );
            std::fs::write(&g, text).unwrap();
            std::fs::write(dir.join(".done"), "").unwrap();
        }
        dir
    })
    .clone()
}
