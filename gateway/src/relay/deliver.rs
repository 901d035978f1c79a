//! One SMTP conversation with a next hop (lettre's low-level connection):
//! connect, STARTTLS as the policy demands, then transactions whose bytes
//! are the stored message exactly, with only a `Received:` line in front.
//!
//! lettre's `SmtpTransport::send_raw` is not used: it cannot pin a
//! certificate, reports nothing per recipient and gives up on a whole
//! transaction at the first refused RCPT.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, RcptParameter,
};
use lettre::Address;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::envelope::Dsn;
use crate::policy::{NextHop, TlsMode};
use crate::store::DeliveryState;

/// How one recipient fared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum RcptOutcome {
    /// The next hop accepted the message for it (its `250` to the data):
    /// relayed.
    Relayed {
        /// SMTP reply code.
        code: u16,
        /// The reply, joined to one line.
        reply: String,
    },
    /// Try again later (`4xx`, network or TLS trouble).
    Deferred {
        /// SMTP reply code, when the next hop answered.
        code: Option<u16>,
        /// What went wrong.
        reply: String,
    },
    /// Refused for good (`5xx`).
    Refused {
        /// SMTP reply code.
        code: u16,
        /// The reply.
        reply: String,
    },
}

impl RcptOutcome {
    fn from_error(e: &lettre::transport::smtp::Error) -> RcptOutcome {
        let code = e.status().map(u16::from);
        match code {
            Some(code) if e.is_permanent() => RcptOutcome::Refused {
                code,
                reply: e.to_string(),
            },
            code => RcptOutcome::Deferred {
                code,
                reply: e.to_string(),
            },
        }
    }
}

impl RcptOutcome {
    /// The next hop's queue id, when it relayed and its reply names one.
    pub fn queue_id(&self) -> Option<String> {
        match self {
            RcptOutcome::Relayed { reply, .. } => super::queue_id::next_hop_queue_id(reply),
            _ => None,
        }
    }

    /// As the attempt's audit record holds it, the recipient now in `state`.
    pub fn to_record(&self, state: DeliveryState) -> crate::store::Outcome {
        let (result, code, reply) = match self {
            RcptOutcome::Relayed { code, reply } => ("relayed", Some(*code), reply),
            RcptOutcome::Deferred { code, reply } => ("deferred", *code, reply),
            RcptOutcome::Refused { code, reply } => ("refused", Some(*code), reply),
        };
        crate::store::Outcome {
            result: Some(result.to_string()),
            code,
            reply: Some(reply.clone()),
            queue_id: self.queue_id(),
            state: Some(state),
        }
    }
}

/// What the connection was protected with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsReport {
    /// Whether STARTTLS was used.
    pub encrypted: bool,
    /// SHA-256 of the next hop's certificate (DER), hex, when encrypted.
    pub peer_certificate_sha256: Option<String>,
    /// How the certificate was checked: `validated`, `pinned`, `unchecked`
    /// (opportunistic) or `none` (plain text).
    pub verification: &'static str,
}

impl TlsReport {
    /// As the attempt's audit record holds it.
    pub fn to_record(&self) -> crate::store::AttemptTls {
        crate::store::AttemptTls {
            encrypted: self.encrypted,
            verification: Some(self.verification.to_string()),
            peer_certificate_sha256: self.peer_certificate_sha256.clone(),
        }
    }
}

/// Why no transaction could be tried at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectError {
    /// Whether it is worth trying again (it is for network and TLS
    /// trouble, and for `4xx` greetings).
    pub permanent: bool,
    /// SMTP code, when the next hop answered.
    pub code: Option<u16>,
    /// What failed, naming the next hop.
    pub reason: String,
}

/// What one transaction sends: the envelope, the DSN parameters (passed
/// on if the next hop offers DSN), the trace field, then the message
/// exactly (it must end in CRLF).
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// MAIL FROM; empty for the null reverse-path.
    pub from: &'a str,
    /// RCPT TO.
    pub recipients: &'a [String],
    /// The DSN parameters the message came with.
    pub dsn: Option<&'a Dsn>,
    /// The `Received:` field put before the message.
    pub trace: &'a [u8],
    /// The message as stored.
    pub message: Message<'a>,
}

/// The stored message a transaction sends.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    /// In memory.
    Bytes(&'a [u8]),
    /// A large one: its file (read from the start), of `len` bytes, sent
    /// in chunks.
    File(&'a std::fs::File, u64),
}

/// An open SMTP session with a next hop, reusable for several messages.
pub struct Connection {
    conn: AsyncSmtpConnection,
    /// Set when a streamed message cannot be read on: the connection then
    /// fails its next write, so the next hop never gets the final dot of a
    /// cut message.
    poison: Arc<AtomicBool>,
    hop: String,
    /// Whether the next hop offers DSN (RFC 3461): lettre's `ServerInfo`
    /// keeps only the extensions it knows, so emla asks again itself.
    dsn: bool,
    /// What TLS gave this connection.
    pub tls: TlsReport,
}

impl Connection {
    /// Connects to `hop` and applies its TLS requirement. `hello` is the
    /// gateway's host name.
    pub async fn open(
        hop: &NextHop,
        hello: &str,
        timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let mut c = Self::open_session(hop, hello, timeout).await?;
        let ehlo = c
            .conn
            .command(Ehlo::new(ClientId::Domain(hello.to_owned())));
        c.dsn = match tokio::time::timeout(timeout, ehlo).await {
            Ok(Ok(r)) => r.message().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("DSN"))
            }),
            _ => false,
        };
        Ok(c)
    }

    async fn open_session(
        hop: &NextHop,
        hello: &str,
        timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let name = format!("{}:{}", hop.host, hop.port);
        let client_id = ClientId::Domain(hello.to_owned());
        let fail = |permanent: bool, code: Option<u16>, what: String| ConnectError {
            permanent,
            code,
            reason: format!("{name}: {what}"),
        };
        let (mut conn, poison) = connect(hop, &client_id, timeout, &name).await?;
        let params = match &hop.tls {
            TlsMode::Opportunistic if !conn.can_starttls() => {
                return Ok(Connection {
                    conn,
                    poison,
                    hop: name,
                    dsn: false,
                    tls: TlsReport {
                        verification: "none",
                        ..TlsReport::default()
                    },
                });
            }
            TlsMode::Required { .. } | TlsMode::Pinned { .. } if !conn.can_starttls() => {
                conn.abort().await;
                // Required TLS is never downgraded; the peer may be fixed later.
                return Err(fail(
                    false,
                    None,
                    "does not offer STARTTLS, which the policy requires".into(),
                ));
            }
            mode => tls_parameters(&hop.host, mode).map_err(|e| fail(true, None, e))?,
        };
        let upgraded = tokio::time::timeout(timeout, conn.starttls(params, &client_id)).await;
        match upgraded {
            Ok(Ok(())) => {}
            Ok(Err(e)) if matches!(hop.tls, TlsMode::Opportunistic) => {
                // RFC 7435: a failed opportunistic handshake falls back to plain text.
                tracing::info!(next_hop = %name, error = %e, "STARTTLS failed; retrying in plain text");
                return Self::plain_after_tls_failure(hop, hello, timeout, &name).await;
            }
            Ok(Err(e)) => return Err(fail(false, None, format!("STARTTLS failed: {e}"))),
            Err(_) => {
                return Err(fail(
                    false,
                    None,
                    format!("STARTTLS took longer than {timeout:?}"),
                ))
            }
        }
        let peer = conn
            .peer_certificate()
            .map(|der| hex::encode(Sha256::digest(der)))
            .ok();
        let verification = match &hop.tls {
            TlsMode::Required { .. } => "validated",
            TlsMode::Opportunistic => "unchecked",
            TlsMode::Pinned { sha256 } => {
                let want = hex::encode(sha256);
                if peer.as_deref() != Some(want.as_str()) {
                    conn.abort().await;
                    return Err(fail(
                        false,
                        None,
                        format!(
                            "certificate SHA-256 {} does not match the pinned {want}",
                            peer.as_deref().unwrap_or("(none)")
                        ),
                    ));
                }
                "pinned"
            }
        };
        Ok(Connection {
            conn,
            poison,
            hop: name,
            dsn: false,
            tls: TlsReport {
                encrypted: true,
                peer_certificate_sha256: peer,
                verification,
            },
        })
    }

    async fn plain_after_tls_failure(
        hop: &NextHop,
        hello: &str,
        timeout: Duration,
        name: &str,
    ) -> Result<Connection, ConnectError> {
        let (conn, poison) =
            connect(hop, &ClientId::Domain(hello.to_owned()), timeout, name).await?;
        Ok(Connection {
            conn,
            poison,
            hop: name.to_owned(),
            dsn: false,
            tls: TlsReport {
                verification: "none",
                ..TlsReport::default()
            },
        })
    }

    /// Whether the next hop still answers (NOOP): a kept session may have
    /// been closed by the other side meanwhile.
    pub async fn alive(&mut self) -> bool {
        !self.conn.has_broken() && self.conn.test_connected().await
    }

    /// Whether the session can carry another transaction.
    pub fn usable(&self) -> bool {
        !self.conn.has_broken()
    }

    /// One transaction for `mail`, within `timeout`: MAIL FROM, RCPT TO
    /// each recipient, and, if any was accepted, DATA. Returns one outcome
    /// per recipient, in order.
    pub async fn send(&mut self, mail: &Outgoing<'_>, timeout: Duration) -> Vec<RcptOutcome> {
        match tokio::time::timeout(timeout, self.transaction(mail)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                self.conn.abort().await;
                let reply = format!("{}: no reply within {timeout:?}", self.hop);
                mail.recipients
                    .iter()
                    .map(|_| RcptOutcome::Deferred {
                        code: None,
                        reply: reply.clone(),
                    })
                    .collect()
            }
        }
    }

    async fn transaction(&mut self, mail: &Outgoing<'_>) -> Vec<RcptOutcome> {
        let (from, recipients) = (mail.from, mail.recipients);
        let trace = mail.trace;
        let eight_bit = match mail.message {
            Message::Bytes(b) => !(trace.is_ascii() && b.is_ascii()),
            // Not read twice to find out: BODY=8BITMIME is harmless on
            // 7-bit text (RFC 6152).
            Message::File(..) => true,
        };
        let dsn = mail.dsn.filter(|_| self.dsn);
        let all = |o: RcptOutcome| recipients.iter().map(|_| o.clone()).collect::<Vec<_>>();
        // An empty sender is the null reverse-path of receipts and notices.
        let sender = match from {
            "" => None,
            from => match Address::from_str(from) {
                Ok(a) => Some(a),
                Err(e) => {
                    return all(RcptOutcome::Refused {
                        code: 550,
                        reply: format!("sender {from:?} is not an address lettre accepts: {e}"),
                    })
                }
            },
        };
        let mut params = Vec::new();
        if eight_bit
            && self
                .conn
                .server_info()
                .supports_feature(Extension::EightBitMime)
        {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        // lettre encodes the values as xtext; they are kept decoded.
        let other = |keyword: &str, value: &str| (keyword.to_owned(), Some(value.to_owned()));
        if let Some(dsn) = dsn {
            let ret = dsn.ret.map(|r| other("RET", r.as_str()));
            let envid = dsn.envid.as_deref().map(|e| other("ENVID", e));
            for (keyword, value) in ret.into_iter().chain(envid) {
                params.push(MailParameter::Other { keyword, value });
            }
        }
        if let Err(e) = self.conn.command(Mail::new(sender, params)).await {
            let outcome = RcptOutcome::from_error(&e);
            self.reset().await;
            return all(outcome);
        }
        let mut outcomes: Vec<Option<RcptOutcome>> = Vec::with_capacity(recipients.len());
        for rcpt in recipients {
            let address = match Address::from_str(rcpt) {
                Ok(a) => a,
                Err(e) => {
                    outcomes.push(Some(RcptOutcome::Refused {
                        code: 550,
                        reply: format!("recipient {rcpt:?} is not an address lettre accepts: {e}"),
                    }));
                    continue;
                }
            };
            let mut params = Vec::new();
            if let Some(r) = dsn.and_then(|d| d.recipient(rcpt)) {
                let notify = r.notify.map(|n| other("NOTIFY", &n.to_string()));
                let orcpt = r.orcpt.as_deref().map(|o| other("ORCPT", o));
                for (keyword, value) in notify.into_iter().chain(orcpt) {
                    params.push(RcptParameter::Other { keyword, value });
                }
            }
            match self.conn.command(Rcpt::new(address, params)).await {
                Ok(_) => outcomes.push(None),
                Err(e) if self.conn.has_broken() || e.status().is_none() => {
                    return all(RcptOutcome::from_error(&e));
                }
                Err(e) => outcomes.push(Some(RcptOutcome::from_error(&e))),
            }
        }
        if outcomes.iter().all(Option::is_some) {
            self.reset().await;
            return outcomes.into_iter().flatten().collect();
        }
        if let Err(e) = self.conn.command(Data).await {
            let outcome = RcptOutcome::from_error(&e);
            self.reset().await;
            return outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| outcome.clone()))
                .collect();
        }
        let sent = match mail.message {
            Message::Bytes(message) => {
                // lettre ends the data with CRLF . CRLF itself: the message's own
                // final CRLF is that first CRLF, so the bytes arrive unchanged.
                let body = message.strip_suffix(b"\r\n").unwrap_or(message);
                // One buffer, one write: a small first segment would wait for the
                // peer's delayed ACK (Nagle), some 40 ms per message.
                let mut data = Vec::with_capacity(trace.len() + body.len());
                data.extend_from_slice(trace);
                data.extend_from_slice(body);
                self.conn.message(&data).await
            }
            Message::File(file, len) => {
                let chunks = Chunks::new(file, len, trace, self.poison.clone());
                self.conn.message_iter(chunks).await
            }
        };
        let result = match sent {
            Ok(r) => RcptOutcome::Relayed {
                code: u16::from(r.code()),
                reply: r.message().collect::<Vec<_>>().join(" "),
            },
            Err(e) => {
                let o = RcptOutcome::from_error(&e);
                if e.status().is_none() {
                    // No reply to the final dot: the next hop may or may
                    // not have the message. Retrying risks a duplicate,
                    // which is better than a loss.
                    self.conn.abort().await;
                }
                o
            }
        };
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| result.clone()))
            .collect()
    }

    async fn reset(&mut self) {
        if !self.conn.has_broken() && self.conn.command(Rset).await.is_err() {
            self.conn.abort().await;
        }
    }

    /// Ends the session politely.
    pub async fn quit(mut self) {
        if !self.conn.has_broken() {
            let _ = self.conn.quit().await;
        }
    }
}

/// A stored message file as lettre's `message_iter` takes it: the trace
/// field, then the file in chunks, without its final CRLF (lettre's
/// CRLF . CRLF ends it), so memory stays at one chunk whatever the size.
/// lettre dot-stuffs across chunks. A read that fails sets `poison`: the
/// connection's next write fails, so the cut message gets no final dot.
struct Chunks<'a> {
    file: &'a std::fs::File,
    /// Bytes of the file still to send, its final CRLF excluded.
    left: u64,
    trace: Option<&'a [u8]>,
    poison: Arc<AtomicBool>,
}

impl<'a> Chunks<'a> {
    const CHUNK: usize = 256 * 1024;

    fn new(file: &'a std::fs::File, len: u64, trace: &'a [u8], poison: Arc<AtomicBool>) -> Self {
        use std::os::unix::fs::FileExt;
        // The final CRLF is lettre's to send, as for a message in memory.
        let mut end = [0u8; 2];
        let crlf = len >= 2 && file.read_exact_at(&mut end, len - 2).is_ok() && &end == b"\r\n";
        Chunks {
            file,
            left: if crlf { len - 2 } else { len },
            trace: Some(trace),
            poison,
        }
    }

    fn read(&mut self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let head = self.trace.take().unwrap_or_default();
        let want = Self::CHUNK.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut chunk = Vec::with_capacity(head.len() + want);
        chunk.extend_from_slice(head);
        let mut file = self.file;
        let got = blocking(|| (&mut file).take(want as u64).read_to_end(&mut chunk))?;
        if got < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the stored message is shorter than its size",
            ));
        }
        self.left -= got as u64;
        Ok(chunk)
    }
}

impl Iterator for Chunks<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 && self.trace.is_none() {
            return None;
        }
        match self.read() {
            Ok(chunk) => Some(chunk),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored message being relayed");
                self.poison.store(true, Ordering::SeqCst);
                None
            }
        }
    }
}

/// Runs the file read `f` where blocking is allowed: on a multi-threaded
/// runtime, with the worker handed over (`block_in_place`).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The TCP stream under a connection, failing every write once `poison`
/// is set (see [`Chunks`]).
#[derive(Debug)]
struct Guarded {
    tcp: tokio::net::TcpStream,
    poison: Arc<AtomicBool>,
}

impl Guarded {
    fn poisoned(&self) -> bool {
        self.poison.load(Ordering::SeqCst)
    }
}

fn cut() -> std::io::Error {
    std::io::Error::other("the message being sent could not be read to its end")
}

impl tokio::io::AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.poisoned() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.poisoned() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for Guarded {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.peer_addr()
    }
}

/// A plain-text session with `hop`, greeted and EHLO'd within `timeout`.
async fn connect(
    hop: &NextHop,
    client_id: &ClientId,
    timeout: Duration,
    name: &str,
) -> Result<(AsyncSmtpConnection, Arc<AtomicBool>), ConnectError> {
    let deferred = |reason: String| ConnectError {
        permanent: false,
        code: None,
        reason: format!("{name}: {reason}"),
    };
    let opened = async {
        let tcp = tokio::net::TcpStream::connect((hop.host.as_str(), hop.port))
            .await
            .map_err(|e| deferred(format!("cannot connect: {e}")))?;
        // Kept sessions carry many small writes (the final dot, the next
        // MAIL); without this each waits for the peer's delayed ACK.
        tcp.set_nodelay(true)
            .map_err(|e| deferred(format!("cannot set TCP_NODELAY: {e}")))?;
        let poison = Arc::new(AtomicBool::new(false));
        let stream = Guarded {
            tcp,
            poison: poison.clone(),
        };
        AsyncSmtpConnection::connect_with_transport(Box::new(stream), client_id)
            .await
            .map(|c| (c, poison))
            .map_err(|e| ConnectError {
                permanent: e.is_permanent(),
                code: e.status().map(u16::from),
                reason: format!("{name}: cannot connect: {e}"),
            })
    };
    match tokio::time::timeout(timeout, opened).await {
        Ok(result) => result,
        Err(_) => Err(deferred(format!("no greeting within {timeout:?}"))),
    }
}

/// TLS parameters for `mode`; errors name the bad CA file.
fn tls_parameters(host: &str, mode: &TlsMode) -> Result<TlsParameters, String> {
    let builder = TlsParameters::builder(host.to_owned());
    let builder = match mode {
        TlsMode::Required { ca_file: None } => builder,
        TlsMode::Required {
            ca_file: Some(path),
        } => {
            let certs = crate::pem::read_certificates(path).map_err(|e| format!("CA file {e}"))?;
            let mut b =
                builder.certificate_store(lettre::transport::smtp::client::CertificateStore::None);
            for cert in certs {
                let cert = Certificate::from_der(cert.to_vec())
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
                b = b.add_root_certificate(cert);
            }
            b
        }
        // Opportunistic TLS checks nothing; a pin is checked after the handshake.
        TlsMode::Opportunistic | TlsMode::Pinned { .. } => {
            builder.dangerous_accept_invalid_certs(true)
        }
    };
    builder
        .build_rustls()
        .map_err(|e| format!("TLS set-up for {host}: {e}"))
}
