//! A counterpart mail server for the relay tests: `sink.py` (Python
//! `aiosmtpd`) on a loopback port, keeping each message exactly as it came
//! off the wire, and the checks that a relayed copy is the sent message.
//!
//! Included with `#[path = "support/sink.rs"] mod sink;` next to `mod
//! support;` and `#[path = "support/smtp.rs"] mod smtp;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::smtp::Server;
use crate::support::{find, openssl_verifies, support_dir};

/// A running `sink.py`; killed when dropped.
pub struct Sink {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    /// `sink.py ARGS` on any free port.
    pub fn start(args: &[&str]) -> Sink {
        Self::start_on(0, args)
    }

    /// `sink.py --port PORT ARGS` (0: any free port); waits for its `ready` line.
    pub fn start_on(port: u16, args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(support_dir().join("sink.py"))
            .arg("--dir")
            .arg(dir.path())
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3 sink.py (needs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("sink.py did not start: {line:?}"));
        Sink { child, port, dir }
    }

    /// The delivered messages, in order, waiting up to `within` for `n`.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The delivered messages so far, in order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// The envelope and peer of the `n`th message (from 1).
    pub fn envelope(&self, n: usize) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{n:04}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The delivered messages whose envelope is for `rcpt`, waiting up to 20 s
/// for `n` of them.
pub fn delivered_to(sink: &Sink, rcpt: &str, n: usize) -> Vec<(Value, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<(Value, String)> = sink
            .messages()
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    sink.envelope(i + 1),
                    String::from_utf8_lossy(&m).into_owned(),
                )
            })
            .filter(|(env, _)| env["rcpt_tos"][0] == rcpt)
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `sink` to take one message, asserts it took exactly one (with
/// the gateway's stderr otherwise) and that it is `sent` (emla id `id`)
/// relayed unchanged.
pub fn assert_relayed_once(sink: &Sink, srv: &Server, id: &str, sent: &[u8]) {
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "not delivered:\n{}", srv.stderr());
    assert_relayed_exactly(&got[0], sent, id);
}

/// Asserts `delivered` is `sent` behind exactly one `Received:` field that
/// names the emla id, and still verifies.
pub fn assert_relayed_exactly(delivered: &[u8], sent: &[u8], id: &str) {
    let at = find(delivered, sent).unwrap_or_else(|| {
        panic!(
            "the delivered message does not contain the sent bytes:\n{}",
            String::from_utf8_lossy(delivered)
        )
    });
    assert_eq!(at + sent.len(), delivered.len(), "bytes after the message");
    let trace = std::str::from_utf8(&delivered[..at]).unwrap();
    assert!(trace.starts_with("Received: from "), "{trace}");
    assert!(trace.contains(&format!(" id {id}")), "{trace}");
    assert_eq!(trace.matches("Received:").count(), 1, "{trace}");
    assert!(trace.ends_with("\r\n"), "{trace:?}");
    assert!(
        openssl_verifies(delivered, "aa"),
        "the relayed copy does not verify"
    );
}

/// A free loopback port: nothing listens there until a sink starts on it
/// (a next hop that is down).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the first header field `name` of a delivered message.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n\r\n")
        .next()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}
