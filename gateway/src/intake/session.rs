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

use super::budget::{closing_reply, is_junk, Budget, Exceeded, Refusals};
use super::command::Staged;
use super::commit;
use super::handler::{Intake, Pending, Refusal, Shared};
use super::reply::Reply;
use super::Service;
use crate::reason::Reason;
use crate::store::payload::SmtpSessionSummary;
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
    /// Lines of DATA with nothing to refuse and no final dot, dot-unstuffed
    /// and joined: passed to the handler at once, not line by line through
    /// `mailin` (whose DATA state only unstuffs them).
    Data(Vec<u8>),
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
    let mut intake = Intake::new(peer.ip(), gw.config.require_tls, policy_source);
    intake.postmaster_box = Some(gw.config.postmaster.clone());
    intake.spool = Some(gw.store.clone());
    let state = Arc::new(Mutex::new(intake));
    let mut builder = SessionBuilder::new(gw.policy().gateway.hostname.clone());
    if gw.tls.is_some() {
        builder.enable_start_tls();
    }
    let mut smtp = builder.build(peer.ip(), Shared(state.clone()));
    let state = Shared(state);
    let mut io: Io<S> = BufReader::new(Conn::Plain(stream));
    let hostname = gw.policy().gateway.hostname.clone();
    let greeting = format!("220 {hostname} ESMTP emla\r\n");
    crate::metrics::with(|m| m.smtp_replies(greeting.as_bytes()));
    if io.get_mut().write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut lp = Loop::new(gw.config.session_limits.clone());
    let end = drive(&gw, &mut smtp, &state, &mut io, &mut shutdown, &mut lp).await;
    let _ = io.get_mut().flush().await;
    let _ = io.get_mut().shutdown().await;
    if let Some(event) = summary(&state, &lp) {
        if let Err(e) = gw.store.audit(event).await {
            tracing::warn!(peer = %peer, error = %e, "cannot record the session summary");
        }
    }
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
    lp: &mut Loop,
) -> End {
    loop {
        let (line, in_data) = match next_line(gw, state, io, shutdown, lp).await {
            Step::Go(read) => read,
            Step::Again => continue,
            Step::End(end) => return end,
        };
        let replied = lp.out.len();
        let junk = !in_data && is_junk(&line);
        let screened = screen(gw, state, io, lp, line, in_data).await;
        let end = match screened {
            Step::Go(line) => respond(gw, smtp, state, io, lp, &line, in_data).await,
            Step::Again => None,
            Step::End(end) => Some(end),
        };
        if let Some(end) = end {
            return end;
        }
        // The reply this line got, if it got one (STARTTLS sent it already).
        let reply = lp.out.get(replied..).unwrap_or_default();
        let exceeded = if !in_data {
            lp.budget.command(junk, reply)
        } else if !reply.is_empty() {
            lp.budget.message(reply)
        } else {
            None
        };
        if let Some(why) = exceeded {
            state.lock().abort();
            lp.closed = Some(why);
            return close(io, &mut lp.out, closing_reply(why)).await;
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
struct Loop {
    /// Replies not yet sent (pipelining).
    out: Vec<u8>,
    /// The end of the shutdown grace, once shutdown has begun.
    grace_until: Option<Instant>,
    /// The line being read.
    partial: Partial,
    /// What the session may still do.
    budget: Budget,
    /// Its refusals, audited once per kind.
    refusals: Refusals,
    /// Why the gateway closed it, when a limit did.
    closed: Option<Exceeded>,
}

impl Loop {
    fn new(limits: crate::config::SessionLimits) -> Loop {
        Loop {
            out: Vec::new(),
            grace_until: None,
            partial: Partial::default(),
            budget: Budget::new(limits),
            refusals: Refusals::default(),
            closed: None,
        }
    }
}

/// The `smtp.session-summary` record of a session whose refusals were
/// repeated or that a limit closed; none for an ordinary session.
fn summary(state: &Shared, lp: &Loop) -> Option<AuditEvent> {
    let repeated_refusals = lp.refusals.repeated();
    if repeated_refusals.is_empty() && lp.closed.is_none() {
        return None;
    }
    let summary = SmtpSessionSummary {
        session: state.lock().session.clone(),
        closed: lp.closed,
        repeated_refusals,
    };
    Some(AuditEvent::of(None, &summary))
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
        crate::metrics::with(|m| m.smtp_replies(out));
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
    let in_transaction = state.lock().in_transaction();
    let lifetime_end = lp.budget.deadline(in_transaction, gw.config.data_timeout);
    let left = lifetime_end.saturating_duration_since(Instant::now());
    if left.is_zero() {
        state.lock().abort();
        lp.closed = Some(Exceeded::Lifetime);
        return Step::End(close(io, out, closing_reply(Exceeded::Lifetime)).await);
    }
    let timeout = timeout.min(left);
    let max = if in_data {
        MAX_TEXT_LINE
    } else {
        MAX_COMMAND_LINE
    };
    let line = tokio::select! {
        r = tokio::time::timeout(timeout, read_line(io, max, &mut lp.partial, in_data)) => r,
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
        Err(_) if Instant::now() >= lifetime_end => Step::Again,
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
        Ok(Ok(Line::Data(lines))) => {
            let _ = state.lock().data(&lines);
            Step::Again
        }
    }
}

/// Refuses what must not reach the SMTP state machine: a bare CR or LF
/// (closing the session), control characters in a command. `MAIL` and
/// `RCPT` are parsed here ([`Staged`]) and `mailin` gets a stand-in line.
/// Returns the line to process.
async fn screen<S: AsyncRead + AsyncWrite + Unpin>(
    gw: &Arc<Service>,
    state: &Shared,
    io: &mut Io<S>,
    lp: &mut Loop,
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
        let stage = if in_data { "data" } else { "command" };
        let event = state
            .lock()
            .refusal_event(stage, Reason::Smuggling, &detail);
        state.lock().abort();
        let refusal = Refusal {
            event,
            reply: Reply::reject(Reason::Smuggling, &detail),
            stage,
            reason: Reason::Smuggling,
        };
        let reply = audited(gw, &mut lp.refusals, refusal).await;
        let out = &mut lp.out;
        // Where the message ends is unknowable now: close.
        out.extend_from_slice(&reply.wire());
        crate::metrics::with(|m| m.smtp_replies(out));
        let _ = io.get_mut().write_all(out).await;
        return Step::End(End::Refused);
    }
    if !in_data {
        // Before the control-character check: a bad path is refused as
        // `bad-address` and audited, whatever is wrong with it.
        if let Some((staged, stand_in)) = Staged::of(&line) {
            state.lock().stage(Some(staged));
            return Step::Go(stand_in.to_vec());
        }
        // `MAIL` or `RCPT` without `FROM:` / `TO:` (mailin: `500`).
        let syntax = match verb(&line).as_str() {
            "MAIL" => Some("MAIL FROM:<address>"),
            "RCPT" => Some("RCPT TO:<address>"),
            _ => None,
        };
        if let Some(syntax) = syntax {
            lp.out
                .extend_from_slice(&Reply::new(501, format!("5.5.4 Syntax: {syntax}")).wire());
            return Step::Again;
        }
    }
    if !in_data && has_control_character(&line) {
        // mailin would take a NUL inside an address: an address no
        // mail client shows as it is.
        lp.out
            .extend_from_slice(b"501 5.5.2 control characters are not allowed in commands\r\n");
        return Step::Again;
    }
    Step::Go(line)
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
    lp: &mut Loop,
    line: &[u8],
    in_data: bool,
) -> Option<End> {
    let verb = if in_data { String::new() } else { verb(line) };
    if let Some(reply) = local_reply(gw, &verb, line) {
        lp.out.extend_from_slice(&reply.wire());
        return None;
    }
    let response = smtp.process(line);
    state.lock().stage(None);
    let pending = state.lock().take_pending();
    let reply: Option<Vec<u8>> = match pending {
        Pending::Message(tx) => {
            let session = state.lock().session.clone();
            let finished = commit::finish(gw, &session, tx);
            Some(
                crate::metrics::timed(crate::metrics::Timer::DataToReply, finished)
                    .await
                    .wire(),
            )
        }
        Pending::Refusal(refusal) => Some(audited(gw, &mut lp.refusals, refusal).await.wire()),
        Pending::None if verb == "EHLO" && response.code == 250 => Some(ehlo_reply(gw, state)),
        // RFC 2034 gives HELO's reply no enhanced code.
        Pending::None if verb == "HELO" && response.code == 250 => {
            Some(format!("250 {}\r\n", gw.policy().gateway.hostname).into_bytes())
        }
        Pending::None => match response.action {
            Action::NoReply => None,
            _ => Some(with_enhanced_code(&wire(&response))),
        },
    };
    let out = &mut lp.out;
    if let Some(r) = reply {
        out.extend_from_slice(&r);
    }
    match response.action {
        Action::Close => {
            crate::metrics::with(|m| m.smtp_replies(out));
            let _ = io.get_mut().write_all(out).await;
            return Some(End::Quit);
        }
        Action::UpgradeTls => {
            crate::metrics::with(|m| m.smtp_replies(out));
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
    crate::metrics::with(|m| m.smtp_replies(out));
    let _ = io.get_mut().write_all(out).await;
    End::Refused
}

/// The refusal's reply once its record is durable (see [`recorded`]). A
/// repeat of a refusal already audited in this session is only counted,
/// for the session's summary.
async fn audited(gw: &Service, refusals: &mut Refusals, refusal: Refusal) -> Reply {
    if !refusals.first(refusal.stage, refusal.reason) {
        return refusal.reply;
    }
    recorded(gw, refusal.event, refusal.reply).await
}

/// `reply` once `event` is durable; a decision that cannot be audited is
/// not made: the client gets `451` and retries.
pub(super) async fn recorded(gw: &Service, event: AuditEvent, reply: Reply) -> Reply {
    match gw.store.audit(event).await {
        Ok(()) => reply,
        Err(e) => {
            tracing::error!(error = %e, bug = e.is_bug(), "cannot audit a refusal");
            Reply::reject(e.reason(), &format!("cannot record the decision ({e})"))
        }
    }
}

fn wire(response: &Response) -> Vec<u8> {
    response.buffer().unwrap_or_default()
}

/// The command word of `line`, uppercased.
fn verb(line: &[u8]) -> String {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    String::from_utf8_lossy(&line[..end]).to_ascii_uppercase()
}

/// The replies emla gives itself, to what `mailin` would answer with
/// `500`/`503` or a reply Postfix does not give.
fn local_reply(gw: &Service, verb: &str, line: &[u8]) -> Option<Reply> {
    let arg = String::from_utf8_lossy(&line[verb.len().min(line.len())..])
        .trim()
        .to_owned();
    Some(match verb {
        "HELP" => Reply::new(
            214,
            "2.0.0 emla: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP, and STARTTLS when offered",
        ),
        // emla has no mailing lists and no accounts.
        "EXPN" => Reply::new(502, "5.5.1 EXPN is not available"),
        "AUTH" => Reply::new(502, "5.5.1 AUTH is not available"),
        "STARTTLS" if gw.tls.is_none() => Reply::new(502, "5.5.1 STARTTLS is not available"),
        "HELO" | "EHLO" if arg.is_empty() => {
            Reply::new(501, format!("5.5.4 Syntax: {verb} hostname"))
        }
        "VRFY" if arg.is_empty() => Reply::new(501, "5.5.4 Syntax: VRFY address"),
        // As Postfix answers when it cannot tell (RFC 5321 §3.5.3).
        "VRFY" => Reply::new(
            252,
            "2.0.0 Cannot VRFY the address, but a message to it will be tried",
        ),
        _ => return None,
    })
}

/// `wire` (one reply of `mailin`'s) with an RFC 2034 enhanced status code
/// after each line's reply code, where `mailin` gives none.
fn with_enhanced_code(wire: &[u8]) -> Vec<u8> {
    // mailin's only 502 is a missing argument (`MAIL`, `RCPT TO`): a 501.
    if wire.starts_with(b"502 Missing parameter") {
        return b"501 5.5.4 Syntax error: missing argument\r\n".to_vec();
    }
    let text = String::from_utf8_lossy(wire);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let rest = line.get(4..).unwrap_or("");
        let has_one = rest.split(' ').next().is_some_and(|w| {
            w.split('.').count() == 3
                && w.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
        let enhanced = match code {
            _ if has_one => None,
            // Challenges and the go-ahead for DATA carry none.
            Some(334) | Some(354) | None => None,
            Some(500) => Some("5.5.2"),
            Some(501) | Some(504) => Some("5.5.4"),
            Some(502) | Some(503) => Some("5.5.1"),
            Some(452) => Some("4.3.1"),
            Some(530) => Some("5.7.0"),
            Some(c) if c < 300 => Some("2.0.0"),
            Some(c) if c < 500 => Some("4.3.0"),
            Some(_) => Some("5.0.0"),
        };
        match enhanced {
            Some(e) if line.len() >= 4 => {
                out.push_str(&line[..4]);
                out.push_str(e);
                out.push(' ');
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
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
/// was consumed from `io` is kept in `partial`. In DATA (`data`), the
/// complete lines already buffered that need no reply are taken together
/// ([`Line::Data`]).
async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    max: usize,
    partial: &mut Partial,
    data: bool,
) -> std::io::Result<Line> {
    loop {
        let buf = io.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        if data && partial.line.is_empty() && !partial.too_long {
            let (lines, used) = plain_data_lines(buf, max);
            if used > 0 {
                io.consume(used);
                return Ok(Line::Data(lines));
            }
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

/// The complete lines at the start of `buf` that the DATA state would only
/// unstuff (no final dot, nothing [`wire::text_line`] refuses, at most
/// `max` bytes each), unstuffed and joined, with the bytes they took.
fn plain_data_lines(buf: &[u8], max: usize) -> (Vec<u8>, usize) {
    let mut lines = Vec::new();
    let mut used = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[used..]) {
        let line = &buf[used..used + i + 1];
        if line.len() > max || line == b".\r\n" || wire::text_line(line).is_some() {
            break;
        }
        if lines.is_empty() {
            lines.reserve(buf.len() - used);
        }
        lines.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        used += line.len();
    }
    (lines, used)
}

/// Whether a command line (CRLF excluded) holds a control character other
/// than TAB.
fn has_control_character(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    body.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// The EHLO reply, with the extensions emla implements itself. The
/// client's argument is not echoed: it is the client's to say, not ours
/// to repeat.
fn ehlo_reply(gw: &Service, state: &Shared) -> Vec<u8> {
    let policy = gw.policy();
    let mut lines = vec![
        policy.gateway.hostname.clone(),
        format!("SIZE {}", policy.limits.max_message_size),
        "8BITMIME".to_string(),
        "PIPELINING".to_string(),
        "ENHANCEDSTATUSCODES".to_string(),
        "DSN".to_string(),
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
    fn mailin_replies_get_enhanced_codes() {
        let cases: [(&[u8], &[u8]); 7] = [
            (
                b"502 Missing parameter\r\n",
                b"501 5.5.4 Syntax error: missing argument\r\n",
            ),
            (
                b"503 Bad sequence of commands\r\n",
                b"503 5.5.1 Bad sequence of commands\r\n",
            ),
            (b"500 Syntax error\r\n", b"500 5.5.2 Syntax error\r\n"),
            (b"221 Goodbye\r\n", b"221 2.0.0 Goodbye\r\n"),
            (b"250 OK\r\n", b"250 2.0.0 OK\r\n"),
            (b"250 2.1.0 Sender OK\r\n", b"250 2.1.0 Sender OK\r\n"),
            (b"354 Start mail input\r\n", b"354 Start mail input\r\n"),
        ];
        for (from, to) in cases {
            assert_eq!(
                with_enhanced_code(from),
                to,
                "{}",
                String::from_utf8_lossy(from)
            );
        }
        assert_eq!(verb(b"ehlo x\r\n"), "EHLO");
        assert_eq!(verb(b"HELP\r\n"), "HELP");
    }

    #[test]
    fn plain_data_lines_stop_where_a_line_needs_more() {
        let (lines, used) = plain_data_lines(b"a\r\n..b\r\n.c\r\n.\r\nafter\r\n", 1000);
        assert_eq!(
            (lines.as_slice(), used),
            (b"a\r\n.b\r\nc\r\n".as_slice(), 12)
        );
        for stop in [&b"x\n"[..], b"x\0\r\n", b"x\ry\r\n", b"partial"] {
            assert_eq!(plain_data_lines(stop, 1000).1, 0, "{stop:?}");
        }
        assert_eq!(plain_data_lines(b"0123456789\r\n", 5).1, 0);
    }
}
