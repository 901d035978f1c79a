//! The demo's counterpart mailbox: a small SMTP server on loopback that
//! stands in for every authority's mail server and files each message it
//! receives as `NNNN.eml` (exactly as received, dot-unstuffed).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One delivered message.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// The file it was written to.
    pub path: PathBuf,
    /// MAIL FROM (empty for a null reverse-path).
    pub from: String,
    /// RCPT TO.
    pub to: Vec<String>,
    /// Its `Subject:` line, as sent.
    pub subject: String,
}

/// A running mailbox.
pub struct Mailbox {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: Arc<Mutex<Vec<Delivered>>>,
}

/// Numbers the files; concurrent sessions each take their own.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Longest line or message the mailbox takes.
const MAX_LINE: u64 = 4096;
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

impl Mailbox {
    /// Listens on 127.0.0.1 (any port) and files messages under `dir`.
    pub async fn start(dir: PathBuf) -> Result<Mailbox, String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("demo mailbox: cannot listen: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = received.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (dir, shared) = (dir.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = session(tcp, dir, shared).await;
                });
            }
        });
        Ok(Mailbox { port, received })
    }

    /// What it has received so far, in order.
    pub fn received(&self) -> Vec<Delivered> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn session(
    tcp: TcpStream,
    dir: PathBuf,
    received: Arc<Mutex<Vec<Delivered>>>,
) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 mailbox.demo.example ESMTP demo mailbox\r\n")
        .await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let cmd = text.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if cmd.starts_with("EHLO") {
            b"250-mailbox.demo.example\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
        } else if cmd.starts_with("HELO") || cmd.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if cmd.starts_with("MAIL FROM:") {
            from = address(&text[10..]);
            to.clear();
            b"250 OK\r\n"
        } else if cmd.starts_with("RCPT TO:") {
            to.push(address(&text[8..]));
            b"250 OK\r\n"
        } else if cmd.starts_with("RSET") {
            to.clear();
            b"250 OK\r\n"
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n").await?;
            let message = read_data(&mut r).await?;
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!("{n:04}.eml"));
            tokio::fs::write(&path, &message).await?;
            let subject = subject(&message);
            received
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Delivered {
                    path,
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    subject,
                });
            b"250 2.0.0 filed\r\n"
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.2 not implemented\r\n"
        };
        w.write_all(reply).await?;
    }
}

async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(message);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        if message.len() + unstuffed.len() > MAX_MESSAGE {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        message.extend_from_slice(unstuffed);
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg
        .strip_prefix('<')
        .and_then(|a| a.split_once('>'))
        .map_or(arg, |(a, _)| a);
    inner.split_whitespace().next().unwrap_or("").to_owned()
}

fn subject(message: &[u8]) -> String {
    let head = &message[..crate::smime::mime::header_len(message)];
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            l.get(..8)
                .filter(|p| p.eq_ignore_ascii_case("subject:"))
                .map(|_| l[8..].trim().to_owned())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_subject() {
        assert_eq!(address("<a@b.example> SIZE=10"), "a@b.example");
        assert_eq!(address("<>"), "");
        assert_eq!(
            subject(b"From: x\r\nSubject: Hello\r\n\r\nSubject: no"),
            "Hello"
        );
    }
}
