//! One SMTP session, driven from tokio: reads lines with bounds and
//! timeouts, refuses bare LF / bare CR (SMTP smuggling) before `mailin`
//! sees them, adds what `mailin` lacks (SIZE, PIPELINING, enhanced status
//! codes), upgrades to TLS, and runs the async steps the handler left
//! pending.
//!
//! The session is generic over its stream: the intake passes a
//! `TcpStream`, the tests an in-memory `tokio::io::duplex` half. STARTTLS
//! wraps whatever stream the session was given.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use mailin::{Action, Response, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::commit;
use super::handler::{Intake, Pending, Shared};
use super::reply::Reply;
use super::Service;
use crate::reason::Reason;
use crate::store::AuditEvent;
use crate::wire::{self, WireProblem, MAX_TEXT_LINE};

/// Longest command line accepted (RFC 5321 §4.5.3.1.4: 512 with CRLF).
const MAX_COMMAND_LINE: usize = 2048;

/// The session's connection: the stream it was given, then, after
/// STARTTLS, TLS over that stream.
enum Conn<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Between taking the plain stream and the end of the handshake.
    Upgrading,
}

/// The I/O of one session: the connection with its read buffer.
type Io<S> = BufReader<Conn<S>>;

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake in progress")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

/// Why a session ended, for the log.
enum End {
    Quit,
    ClientGone,
    Refused,
}

/// One line read from the client.
enum Line {
    Ok(Vec<u8>),
    /// Longer than allowed; consumed up to its end.
    TooLong,
    Eof,
}

/// Runs one session with the client at `peer` over `stream` to its end.
/// When `shutdown` turns true, a session at the prompt is closed with
/// `421`; one inside a transaction may finish it within the shutdown grace.
pub async fn run<S>(
    gw: Arc<Service>,
    stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let policy_source = {
        let gw = gw.clone();
        Box::new(move || gw.policy())
    };
    let state = Arc::new(Mutex::new(Intake::new(
        peer.ip(),
        gw.config.require_tls,
        policy_source,
    )));
    let mut builder = SessionBuilder::new(gw.policy().gateway.hostname.clone());
    if gw.tls.is_some() {
        builder.enable_start_tls();
    }
    let mut smtp = builder.build(peer.ip(), Shared(state.clone()));
    let state = Shared(state);
    let mut io: Io<S> = BufReader::new(Conn::Plain(stream));
    let hostname = gw.policy().gateway.hostname.clone();
    let greeting = format!("220 {hostname} ESMTP emla\r\n");
    if io.get_mut().write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let end = drive(&gw, &mut smtp, &state, &mut io, &mut shutdown).await;
    let _ = io.get_mut().flush().await;
    let _ = io.get_mut().shutdown().await;
    tracing::debug!(
        peer = %peer,
        end = match end {
            End::Quit => "quit",
            End::ClientGone => "client gone",
            End::Refused => "closed by the gateway",
        },
        "session ended"
    );
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    gw: &Arc<Service>,
    smtp: &mut Session<Shared>,
    state: &Shared,
    io: &mut Io<S>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let mut lp = Loop::default();
    loop {
        let (line, in_data) = match next_line(gw, state, io, shutdown, &mut lp).await {
            Step::Go(read) => read,
            Step::Again => continue,
            Step::End(end) => return end,
        };
        let line = match screen(gw, state, io, &mut lp.out, line, in_data).await {
            Step::Go(line) => line,
            Step::Again => continue,
            Step::End(end) => return end,
        };
        if let Some(end) = respond(gw, smtp, state, io, &mut lp.out, &line, in_data).await {
            return end;
        }
    }
}

/// What [`drive`] does next with a line: go on with it, read the next one,
/// or end the session.
enum Step<T> {
    Go(T),
    Again,
    End(End),
}

/// What [`drive`] keeps from one line to the next.
#[derive(Default)]
struct Loop {
    /// Replies not yet sent (pipelining).
    out: Vec<u8>,
    /// The end of the shutdown grace, once shutdown has begun.
    grace_until: Option<Instant>,
    /// The line being read.
    partial: Partial,
}

/// Sends the pipelined replies when no command waits, closes the session at
/// the prompt on shutdown, and reads the next line within the timeout;
/// returns it with whether it is a line of the message (DATA).
async fn next_line<S: AsyncRead + AsyncWrite + Unpin>(
    gw: &Arc<Service>,
    state: &Shared,
    io: &mut Io<S>,
    shutdown: &mut watch::Receiver<bool>,
    lp: &mut Loop,
) -> Step<(Vec<u8>, bool)> {
    let out = &mut lp.out;
    // Pipelined replies go out together, once no complete command is
    // waiting in the input.
    if !out.is_empty() && memchr::memchr(b'\n', io.buffer()).is_none() {
        if io.get_mut().write_all(out).await.is_err() {
            return Step::End(End::ClientGone);
        }
        out.clear();
    }
    let in_data = state.lock().in_data();
    let stopping = *shutdown.borrow();
    if stopping && lp.grace_until.is_none() {
        lp.grace_until = Some(Instant::now() + gw.config.shutdown_grace);
    }
    if stopping && !state.lock().in_transaction() {
        return Step::End(close(io, out, "421 4.3.2 emla is shutting down, try again later").await);
    }
    let mut timeout = if in_data {
        gw.config.data_timeout
    } else {
        gw.config.command_timeout
    };
    if let Some(until) = lp.grace_until {
        timeout = timeout.min(until.saturating_duration_since(Instant::now()));
    }
    let max = if in_data {
        MAX_TEXT_LINE
    } else {
        MAX_COMMAND_LINE
    };
    let line = tokio::select! {
        r = tokio::time::timeout(timeout, read_line(io, max, &mut lp.partial)) => r,
        _ = shutdown.changed(), if !stopping => return Step::Again,
    };
    match line {
        Err(_) if stopping => {
            state.lock().abort();
            Step::End(
                close(
                    io,
                    out,
                    "421 4.3.2 emla is shutting down, transaction aborted",
                )
                .await,
            )
        }
        Err(_) => {
            state.lock().abort();
            Step::End(close(io, out, "421 4.4.2 idle too long, closing connection").await)
        }
        Ok(Err(_)) | Ok(Ok(Line::Eof)) => Step::End(End::ClientGone),
        Ok(Ok(Line::TooLong)) if in_data => {
            // Refused at the end of DATA, like any malformed message.
            state
                .lock()
                .mark_malformed(&WireProblem::LineTooLong.to_string());
            Step::Again
        }
        Ok(Ok(Line::TooLong)) => {
            out.extend_from_slice(b"500 5.5.2 Line too long\r\n");
            Step::Again
        }
        Ok(Ok(Line::Ok(line))) => Step::Go((line, in_data)),
    }
}

/// Refuses what must not reach the SMTP state machine: a bare CR or LF
/// (closing the session), control characters in a command, a `MAIL` whose
/// `SIZE=` is over the limit. Returns the line to process, a command
/// without its `MAIL` parameters.
async fn screen<S: AsyncRead + AsyncWrite + Unpin>(
    gw: &Arc<Service>,
    state: &Shared,
    io: &mut Io<S>,
    out: &mut Vec<u8>,
    line: Vec<u8>,
    in_data: bool,
) -> Step<Vec<u8>> {
    // The line rules of `emla verify` too: one function for both.
    let problem = if in_data {
        wire::text_line(&line)
    } else {
        wire::line_ending(&line)
    };
    if let Some(problem) = problem.filter(|p| p.reason() != Reason::Smuggling) {
        // Refused at the end of DATA, like an over-long line.
        state.lock().mark_malformed(&problem.to_string());
    } else if let Some(problem) = problem {
        let detail = format!("{problem}; lines must end with CRLF");
        let event = state.lock().refusal_event(
            if in_data { "data" } else { "command" },
            Reason::Smuggling,
            &detail,
        );
        state.lock().abort();
        let reply = audited(gw, event, Reply::reject(Reason::Smuggling, &detail)).await;
        // Where the message ends is unknowable now: close.
        out.extend_from_slice(&reply.wire());
        let _ = io.get_mut().write_all(out).await;
        return Step::End(End::Refused);
    }
    if !in_data && has_control_character(&line) {
        // mailin would take a NUL inside an address: an address no
        // mail client shows as it is.
        out.extend_from_slice(b"501 5.5.2 control characters are not allowed in commands\r\n");
        return Step::Again;
    }
    if !in_data {
        if let Some((reply, detail)) = check_mail_size(state, &line) {
            let event = state
                .lock()
                .refusal_event("mail", Reason::TooLarge, &detail);
            out.extend_from_slice(&audited(gw, event, reply).await.wire());
            return Step::Again;
        }
    }
    Step::Go(if in_data {
        line
    } else {
        strip_mail_params(line)
    })
}

/// Passes the line to the SMTP state machine and queues the reply: the
/// committed message's, an audited refusal's, the EHLO reply, or mailin's
/// own. Then closes the session (`QUIT`) or upgrades it to TLS
/// (`STARTTLS`); returns how the session ended, if it did.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    gw: &Arc<Service>,
    smtp: &mut Session<Shared>,
    state: &Shared,
    io: &mut Io<S>,
    out: &mut Vec<u8>,
    line: &[u8],
    in_data: bool,
) -> Option<End> {
    let is_ehlo = !in_data && line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"EHLO ");
    let response = smtp.process(line);
    let pending = state.lock().take_pending();
    let reply: Option<Vec<u8>> = match pending {
        Pending::Message(tx) => {
            let session = state.lock().session.clone();
            Some(commit::finish(gw, &session, tx).await.wire())
        }
        Pending::Audit(event, reply) => Some(audited(gw, event, reply).await.wire()),
        Pending::None if is_ehlo && response.code == 250 => Some(ehlo_reply(gw, state, line)),
        Pending::None => match response.action {
            Action::NoReply => None,
            _ => Some(wire(&response)),
        },
    };
    if let Some(r) = reply {
        out.extend_from_slice(&r);
    }
    match response.action {
        Action::Close => {
            let _ = io.get_mut().write_all(out).await;
            return Some(End::Quit);
        }
        Action::UpgradeTls => {
            if io.get_mut().write_all(out).await.is_err() {
                return Some(End::ClientGone);
            }
            out.clear();
            match upgrade(gw, io).await {
                Ok((version, cipher)) => {
                    smtp.tls_active();
                    let mut st = state.lock();
                    st.tls_active = true;
                    st.session.tls_version = Some(version);
                    st.session.tls_cipher = Some(cipher);
                }
                Err(()) => return Some(End::ClientGone),
            }
        }
        _ => {}
    }
    None
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    out: &mut Vec<u8>,
    text: &str,
) -> End {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
    let _ = io.get_mut().write_all(out).await;
    End::Refused
}

/// `reply` once `event` is durable; a decision that cannot be audited is
/// not made: the client gets `451` and retries.
async fn audited(gw: &Service, event: AuditEvent, reply: Reply) -> Reply {
    match gw.store.audit(event).await {
        Ok(()) => reply,
        Err(e) => Reply::temporary(&format!("cannot record the decision ({e})")),
    }
}

fn wire(response: &Response) -> Vec<u8> {
    response.buffer().unwrap_or_default()
}

/// A line being read; it lives across [`read_line`] calls so that a read
/// interrupted by the shutdown signal loses no bytes.
#[derive(Default)]
struct Partial {
    line: Vec<u8>,
    too_long: bool,
}

/// Reads one line (through `\n`), at most `max` bytes; longer lines are
/// consumed and reported, so memory stays bounded. Cancellation-safe: what
/// was consumed from `io` is kept in `partial`.
async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    max: usize,
    partial: &mut Partial,
) -> std::io::Result<Line> {
    loop {
        let buf = io.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if !partial.too_long && partial.line.len() + n <= max {
            partial.line.extend_from_slice(chunk);
        } else {
            partial.too_long = true;
            partial.line.clear();
        }
        io.consume(n);
        if done {
            let Partial { line, too_long } = std::mem::take(partial);
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Ok(line)
            });
        }
    }
}

/// Whether a command line (CRLF excluded) holds a control character other
/// than TAB.
fn has_control_character(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    body.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Refuses `MAIL FROM:<…> SIZE=n` above the limit before anything else.
fn check_mail_size(state: &Shared, line: &[u8]) -> Option<(Reply, String)> {
    if line.len() < 10 || !line[..10].eq_ignore_ascii_case(b"MAIL FROM:") {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    let size: u64 = text
        .split_ascii_whitespace()
        .find_map(|p| {
            p.get(..5)
                .filter(|k| k.eq_ignore_ascii_case("SIZE="))
                .map(|_| &p[5..])
        })?
        .parse()
        .ok()?;
    let limit = state.lock().max_message_size();
    (size > limit).then(|| {
        let detail = format!("declared size {size} exceeds the limit of {limit} bytes");
        (Reply::reject(Reason::TooLarge, &detail), detail)
    })
}

/// `mailin` understands only `BODY=`: other MAIL parameters (SIZE, which we
/// checked) are dropped before it parses the line.
fn strip_mail_params(line: Vec<u8>) -> Vec<u8> {
    if line.len() < 10 || !line[..10].eq_ignore_ascii_case(b"MAIL FROM:") {
        return line;
    }
    let Ok(text) = std::str::from_utf8(&line) else {
        return line;
    };
    let text = text.trim_end_matches("\r\n");
    let mut parts = text.splitn(2, '>');
    let (Some(path), rest) = (parts.next(), parts.next()) else {
        return line;
    };
    let kept: Vec<&str> = rest
        .unwrap_or("")
        .split_ascii_whitespace()
        .filter(|p| p.len() >= 5 && p[..5].eq_ignore_ascii_case("BODY="))
        .collect();
    let mut out = format!("{path}>");
    for p in kept {
        out.push(' ');
        out.push_str(p);
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The EHLO reply, with the extensions emla implements itself.
fn ehlo_reply(gw: &Service, state: &Shared, line: &[u8]) -> Vec<u8> {
    let policy = gw.policy();
    let client = String::from_utf8_lossy(&line[5..]).trim().to_string();
    let mut lines = vec![
        format!("{} greets {client}", policy.gateway.hostname),
        format!("SIZE {}", policy.limits.max_message_size),
        "8BITMIME".to_string(),
        "PIPELINING".to_string(),
        "ENHANCEDSTATUSCODES".to_string(),
    ];
    if gw.tls.is_some() && !state.lock().tls_active {
        lines.push("STARTTLS".to_string());
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("250{sep}{l}\r\n"));
    }
    out.into_bytes()
}

/// Replaces the plain stream with TLS over it. Anything the client
/// pipelined after STARTTLS is discarded (command injection,
/// CVE-2011-0411 class).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    gw: &Service,
    io: &mut Io<S>,
) -> Result<(String, String), ()> {
    let Some(acceptor) = gw.tls.clone() else {
        return Err(());
    };
    // Dropping the reader drops what it buffered.
    let Conn::Plain(plain) = std::mem::replace(io, BufReader::new(Conn::Upgrading)).into_inner()
    else {
        return Err(());
    };
    let tls = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain))
        .await
        .map_err(|_| ())?
        .map_err(|e| tracing::debug!(error = %e, "TLS handshake failed"))?;
    let conn = tls.get_ref().1;
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."))
        .unwrap_or_default();
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    *io = BufReader::new(Conn::Tls(Box::new(tls)));
    Ok((version, cipher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_parameters_other_than_body_are_dropped() {
        assert_eq!(
            strip_mail_params(b"MAIL FROM:<a@b.example> SIZE=123 BODY=8BITMIME\r\n".to_vec()),
            b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n"
        );
        assert_eq!(
            strip_mail_params(b"mail from:<a@b.example>\r\n".to_vec()),
            b"mail from:<a@b.example>\r\n"
        );
        assert_eq!(
            strip_mail_params(b"RCPT TO:<a@b.example> NOTIFY=NEVER\r\n".to_vec()),
            b"RCPT TO:<a@b.example> NOTIFY=NEVER\r\n"
        );
    }
}
