//! The `mailin` handler: the checks made as each SMTP command arrives, so
//! bad mail is refused before its body is read, and the bounded collection
//! of the body during DATA.
//!
//! `mailin` calls are synchronous; everything that needs I/O (auditing an
//! early rejection, verifying and recording a message) is left for the
//! async session driver to do between lines.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mailin::{Handler, Response};

use super::command::{BadCommand, Mail, Rcpt, Staged};
use super::reply::Reply;
use crate::envelope::{Dsn, PathError, RcptDsn};
use crate::policy::{Policy, RouteDecision};
use crate::reason::Reason;
use crate::store::payload::{RefusedFor, SmtpRejected};
use crate::store::{AuditEvent, SessionInfo};

/// What the driver must do after a line was processed.
pub enum Pending {
    /// Nothing: send mailin's reply.
    None,
    /// An early rejection to audit before its reply is sent.
    Refusal(Refusal),
    /// A complete message to verify and record; the reply comes from that.
    Message(Transaction),
}

/// An early rejection: its audit event and reply, with the stage and
/// reason it is counted under (see [`Refusals`](super::budget::Refusals)).
pub struct Refusal {
    /// The `smtp.rejected` record.
    pub event: AuditEvent,
    /// What the client is told once the record is durable.
    pub reply: Reply,
    /// The command refused (`mail`, `rcpt`, …).
    pub stage: &'static str,
    /// Why.
    pub reason: Reason,
}

/// A transaction whose DATA ended.
pub struct Transaction {
    /// MAIL FROM; empty for the null reverse-path.
    pub mail_from: String,
    /// RCPT TO, each address once.
    pub rcpt_to: Vec<String>,
    /// The DSN parameters given (RFC 3461).
    pub dsn: Dsn,
    /// For the postmaster: kept, not judged ([`super::postmaster`]).
    pub postmaster: bool,
    /// The message, dot-unstuffed, as received (empty when too large).
    pub body: Data,
    /// Why the spool file could not be written (the client retries).
    pub spool_error: Option<String>,
    /// Bytes received, counted even past the limit.
    pub received: u64,
    /// The size limit was exceeded.
    pub too_large: bool,
    /// Why the message is malformed at the SMTP level (over-long line).
    pub malformed: Option<String>,
    /// The policy the transaction was judged under.
    pub policy: Arc<Policy>,
}

/// A message's bytes as DATA received them: in memory up to
/// [`IN_MEMORY_MAX`](crate::store::IN_MEMORY_MAX), past it in a spool file.
pub enum Data {
    /// Held in memory.
    Memory(Vec<u8>),
    /// Written to `DATA_DIR/spool/` as received, not yet fsynced.
    Spool(Box<crate::store::BodyWriter>),
}

impl Data {
    /// Bytes received and kept.
    pub fn len(&self) -> u64 {
        match self {
            Data::Memory(b) => b.len() as u64,
            Data::Spool(w) => w.len(),
        }
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-session state behind the `mailin` state machine.
pub struct Intake {
    /// Facts about the session, for audit records.
    pub session: SessionInfo,
    /// STARTTLS has completed.
    pub tls_active: bool,
    /// The postmaster's mailbox, where `RCPT TO:<postmaster>` is kept;
    /// without it, postmaster is an address like any other.
    pub postmaster_box: Option<crate::config::PostmasterConfig>,
    /// Where a large message is spooled; without it, every message is
    /// held in memory.
    pub spool: Option<crate::store::Store>,
    require_tls: bool,
    ip: IpAddr,
    current_policy: Box<dyn Fn() -> Arc<Policy> + Send + Sync>,
    policy: Option<Arc<Policy>>,
    mail_from: String,
    rcpt_to: Vec<String>,
    dsn: Dsn,
    postmaster: bool,
    /// The command the session parsed for `mailin`'s stand-in line.
    staged: Option<Staged>,
    body: Vec<u8>,
    writer: Option<crate::store::BodyWriter>,
    spool_error: Option<String>,
    received: u64,
    too_large: bool,
    in_data: bool,
    malformed: Option<String>,
    pending: Pending,
}

impl Intake {
    /// A handler for a session from `ip`, reading the policy in force at
    /// each MAIL command from `current_policy`.
    pub fn new(
        ip: IpAddr,
        require_tls: bool,
        current_policy: Box<dyn Fn() -> Arc<Policy> + Send + Sync>,
    ) -> Intake {
        Intake {
            session: SessionInfo {
                client_ip: ip.to_string(),
                ..SessionInfo::default()
            },
            tls_active: false,
            postmaster_box: None,
            spool: None,
            require_tls,
            ip,
            current_policy,
            policy: None,
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            dsn: Dsn::default(),
            postmaster: false,
            staged: None,
            body: Vec::new(),
            writer: None,
            spool_error: None,
            received: 0,
            too_large: false,
            in_data: false,
            malformed: None,
            pending: Pending::None,
        }
    }

    /// Whether the session is inside DATA.
    pub fn in_data(&self) -> bool {
        self.in_data
    }

    /// Whether a transaction is open (MAIL given, not yet finished).
    pub fn in_transaction(&self) -> bool {
        self.policy.is_some()
    }

    /// Keeps the command parsed from the line `mailin` gets a stand-in
    /// for; `None` clears what `mailin` did not take (a command out of
    /// sequence).
    pub fn stage(&mut self, staged: Option<Staged>) {
        self.staged = staged;
    }

    /// Takes what the driver must do for the line just processed.
    pub fn take_pending(&mut self) -> Pending {
        std::mem::replace(&mut self.pending, Pending::None)
    }

    /// The size limit in force for MAIL `SIZE=` checks.
    pub fn max_message_size(&self) -> u64 {
        (self.current_policy)().limits.max_message_size
    }

    /// An early rejection: its reply, with the audit event left pending.
    fn refuse(
        &mut self,
        stage: &'static str,
        reason: Reason,
        detail: String,
        rcpt: Option<&str>,
    ) -> Response {
        let reply = Reply::reject(reason, &detail);
        self.refuse_with(stage, reason, reply, detail, rcpt)
    }

    /// [`Intake::refuse`] with a reply other than the reason's own.
    fn refuse_with(
        &mut self,
        stage: &'static str,
        reason: Reason,
        reply: Reply,
        detail: String,
        rcpt: Option<&str>,
    ) -> Response {
        let policy = self
            .policy
            .clone()
            .unwrap_or_else(|| (self.current_policy)());
        let event = self.rejected(
            stage,
            reason,
            &detail,
            &policy.version,
            RefusedFor::Rcpt(rcpt.map(str::to_owned)),
        );
        let response = Response::custom(reply.code, reply.text.clone());
        self.pending = Pending::Refusal(Refusal {
            event,
            reply,
            stage,
            reason,
        });
        response
    }

    /// Audits a refusal decided by the driver (size, smuggling, TLS).
    pub fn refusal_event(&self, stage: &str, reason: Reason, detail: &str) -> AuditEvent {
        let version = (self.current_policy)().version.clone();
        self.rejected(
            stage,
            reason,
            detail,
            &version,
            RefusedFor::RcptTo(self.rcpt_to.clone()),
        )
    }

    /// The `SmtpRejected` event of a refusal at `stage` under policy
    /// `policy_version`; `refused_for` names whom the refused command or
    /// transaction was for.
    fn rejected(
        &self,
        stage: &str,
        reason: Reason,
        detail: &str,
        policy_version: &str,
        refused_for: RefusedFor,
    ) -> AuditEvent {
        AuditEvent::of(
            None,
            &SmtpRejected {
                stage: stage.to_owned(),
                session: self.session.clone(),
                mail_from: self.mail_from.clone(),
                reason,
                detail: detail.to_owned(),
                policy_version: policy_version.to_owned(),
                refused_for,
            },
        )
    }

    /// Marks the message being received as malformed (refused at the end).
    pub fn mark_malformed(&mut self, why: &str) {
        if self.malformed.is_none() {
            self.malformed = Some(why.to_string());
        }
    }

    /// Abandons the transaction (the connection is closing).
    pub fn abort(&mut self) {
        self.policy = None;
        self.in_data = false;
        self.body = Vec::new();
        self.writer = None;
    }
}

impl Intake {
    /// See [`Handler`].
    pub fn helo(&mut self, _ip: IpAddr, domain: &str) -> Response {
        self.session.helo = domain.to_string();
        mailin::response::OK
    }

    /// See [`Handler`]. The command itself is the one staged.
    pub fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.policy = None;
        self.rcpt_to.clear();
        self.dsn = Dsn::default();
        self.postmaster = false;
        let mail = match self.staged.take() {
            Some(Staged::Mail(Ok(m))) => m,
            Some(Staged::Mail(Err(refusal))) => {
                self.mail_from = match &refusal {
                    BadCommand::Path(_, raw) => raw.clone(),
                    BadCommand::Param(_) => String::new(),
                };
                return self.refused_command("mail", refusal, None);
            }
            _ => return Response::custom(501, "5.5.4 Syntax: MAIL FROM:<address>".into()),
        };
        let Mail {
            from,
            size,
            ret,
            envid,
        } = mail;
        self.mail_from = from.clone();
        if self.require_tls && !self.tls_active {
            return Response::custom(530, "5.7.0 Must issue a STARTTLS command first".into());
        }
        let policy = (self.current_policy)();
        let limit = policy.limits.max_message_size;
        let refusal = match (size, policy.authority_for_address(&from)) {
            (Some(size), _) if size > limit => Some((
                Reason::TooLarge,
                format!("declared size {size} exceeds the limit of {limit} bytes"),
            )),
            // The null reverse-path (RFC 5321 §4.5.5): the message is judged
            // by its From: authority, which must admit the client (commit).
            _ if from.is_empty() => None,
            (_, None) => Some((
                Reason::UnauthorizedDomain,
                format!("sender <{from}> is not in a domain of any authority"),
            )),
            (_, Some(a)) if !a.admits_client(self.ip) => Some((
                Reason::UnauthorizedClient,
                format!(
                    "client {} may not submit mail for authority {}",
                    self.ip, a.id
                ),
            )),
            (_, Some(_)) => None,
        };
        self.policy = Some(policy);
        if let Some((reason, detail)) = refusal {
            let r = self.refuse("mail", reason, detail, None);
            self.policy = None;
            return r;
        }
        self.dsn.ret = ret;
        self.dsn.envid = envid;
        Response::custom(250, "2.1.0 Sender OK".into())
    }

    /// The reply to a command refused by its syntax; a bad path is audited.
    fn refused_command(
        &mut self,
        stage: &'static str,
        refusal: BadCommand,
        rcpt: Option<&str>,
    ) -> Response {
        match refusal {
            BadCommand::Param(reply) => Response::custom(reply.code, reply.text),
            BadCommand::Path(e, raw) => {
                let (code, enhanced) = match (&e, stage) {
                    (PathError::NonAscii, _) => (553, "5.6.7"),
                    (_, "mail") => (501, "5.1.7"),
                    _ => (501, "5.1.3"),
                };
                let detail = format!("<{}>: {e}", raw.escape_default());
                let reason = Reason::BadAddress;
                let reply = Reply::new(code, format!("{enhanced} {reason}: {detail}"));
                let rcpt = rcpt.map(|_| raw.as_str());
                self.refuse_with(stage, reason, reply, detail, rcpt)
            }
        }
    }

    /// See [`Handler`]. The command itself is the one staged.
    pub fn rcpt(&mut self, _to: &str) -> Response {
        let staged = self.staged.take();
        let Some(policy) = self.policy.clone() else {
            return Response::custom(503, "5.5.1 MAIL first".into());
        };
        let rcpt = match staged {
            Some(Staged::Rcpt(Ok(r))) => r,
            Some(Staged::Rcpt(Err(refusal))) => {
                return self.refused_command("rcpt", refusal, Some(""));
            }
            _ => return Response::custom(501, "5.5.4 Syntax: RCPT TO:<address>".into()),
        };
        let Rcpt { to, notify, orcpt } = rcpt;
        let postmaster = self
            .postmaster_box
            .as_ref()
            .and_then(|_| super::postmaster::address(&to, &policy.gateway.hostname));
        let to = postmaster.as_deref().unwrap_or(&to);
        // Merged (case-insensitively): the next hop gets each address once.
        // The first RCPT's DSN parameters stay.
        if self.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(to)) {
            return Response::custom(250, "2.1.5 Recipient OK (already given)".into());
        }
        if !self.rcpt_to.is_empty() && postmaster.is_some() != self.postmaster {
            // RFC 5321 §4.5.3.1.10: the client sends the rest again later.
            return Response::custom(
                452,
                "4.5.3 mail for the postmaster goes in a transaction of its own".into(),
            );
        }
        if let (Some(_), Some(cfg)) = (&postmaster, &self.postmaster_box) {
            if let Some(why) = super::postmaster::full(cfg, 0) {
                let r = super::postmaster::full_reply(&why);
                return Response::custom(r.code, r.text);
            }
            self.postmaster = true;
            self.rcpt_to.push(to.to_string());
            return Response::custom(250, "2.1.5 Recipient OK (the postmaster)".into());
        }
        if self.rcpt_to.len() >= policy.limits.max_recipients {
            let detail = format!(
                "at most {} recipients per message",
                policy.limits.max_recipients
            );
            return self.refuse("rcpt", Reason::TooManyRecipients, detail, Some(to));
        }
        let refusal = if self.mail_from.is_empty() {
            // A null sender's routes are those of its From: (verify).
            match policy.authority_for_address(to) {
                Some(_) => None,
                None => Some((
                    Reason::UnauthorizedDomain,
                    format!("recipient <{to}> is not in a domain of any authority"),
                )),
            }
        } else {
            // A decision that depends on the request kind waits for DATA.
            match policy.route_any_kind(&self.mail_from, to) {
                None | Some(RouteDecision::Relay { .. }) => None,
                Some(RouteDecision::Reject { route }) => Some((
                    Reason::RouteDenied,
                    format!("route {} refuses it: {}", route.name, route.reason),
                )),
                Some(RouteDecision::UnknownRecipientDomain) => Some((
                    Reason::UnauthorizedDomain,
                    format!("recipient <{to}> is not in a domain of any authority"),
                )),
                Some(RouteDecision::NoRoute) => Some((
                    Reason::RouteDenied,
                    format!("no route allows <{}> to write to <{to}>", self.mail_from),
                )),
            }
        };
        if let Some((reason, detail)) = refusal {
            return self.refuse("rcpt", reason, detail, Some(to));
        }
        self.rcpt_to.push(to.to_string());
        if notify.is_some() || orcpt.is_some() {
            self.dsn.recipients.push(RcptDsn {
                recipient: to.to_string(),
                notify,
                orcpt,
            });
        }
        Response::custom(250, "2.1.5 Recipient OK".into())
    }

    /// See [`Handler`].
    pub fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        if self.policy.is_none() || self.rcpt_to.is_empty() {
            return Response::custom(554, "5.5.1 No valid recipients".into());
        }
        self.in_data = true;
        self.body = Vec::with_capacity(64 * 1024);
        self.writer = None;
        self.spool_error = None;
        self.received = 0;
        self.too_large = false;
        self.malformed = None;
        mailin::response::START_DATA
    }

    /// See [`Handler`].
    pub fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.received += buf.len() as u64;
        let limit = self
            .policy
            .as_ref()
            .map_or(0, |p| p.limits.max_message_size);
        if self.received > limit {
            // Memory stays bounded: past the limit bytes are only counted.
            self.too_large = true;
            self.body = Vec::new();
            self.writer = None;
        } else if self.spool_error.is_some() {
            // Only counted: the client is told to retry.
        } else if let Some(w) = &mut self.writer {
            if let Err(e) = w.write(buf) {
                self.spooling_failed(&e);
            }
        } else if self.body.len() + buf.len() > crate::store::IN_MEMORY_MAX as usize
            && self.spool.is_some()
        {
            // Past the in-memory threshold: what came so far goes first.
            // Buffered writes to the page cache; the fsync waits for the end.
            let head = std::mem::take(&mut self.body);
            let created = self.spool.as_ref().map(|s| s.spool(&head));
            match created {
                Some(Ok(mut w)) => match w.write(buf) {
                    Ok(()) => self.writer = Some(w),
                    Err(e) => self.spooling_failed(&e),
                },
                Some(Err(e)) => self.spooling_failed(&e),
                None => {}
            }
        } else {
            self.body.extend_from_slice(buf);
        }
        Ok(())
    }

    fn spooling_failed(&mut self, e: &io::Error) {
        tracing::error!(error = %e, "cannot spool a message being received");
        self.spool_error = Some(format!("cannot spool the message ({e})"));
        self.writer = None;
        self.body = Vec::new();
    }

    /// See [`Handler`].
    pub fn data_end(&mut self) -> Response {
        self.in_data = false;
        let Some(policy) = self.policy.take() else {
            return Response::custom(503, "5.5.1 No transaction".into());
        };
        self.pending = Pending::Message(Transaction {
            mail_from: std::mem::take(&mut self.mail_from),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            dsn: std::mem::take(&mut self.dsn),
            postmaster: std::mem::take(&mut self.postmaster),
            body: match self.writer.take() {
                Some(w) => Data::Spool(Box::new(w)),
                None => Data::Memory(std::mem::take(&mut self.body)),
            },
            spool_error: self.spool_error.take(),
            received: self.received,
            too_large: self.too_large,
            malformed: self.malformed.take(),
            policy,
        });
        // Replaced by the driver with the verdict's reply.
        Response::custom(250, "2.0.0 pending".into())
    }
}

/// The handler `mailin` owns: the session's state, shared with the async
/// driver (the lock is never held across an await).
pub struct Shared(pub Arc<Mutex<Intake>>);

impl Shared {
    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, Intake> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Handler for Shared {
    fn helo(&mut self, ip: IpAddr, domain: &str) -> Response {
        self.lock().helo(ip, domain)
    }
    fn mail(&mut self, ip: IpAddr, domain: &str, from: &str) -> Response {
        self.lock().mail(ip, domain, from)
    }
    fn rcpt(&mut self, to: &str) -> Response {
        self.lock().rcpt(to)
    }
    fn data_start(&mut self, domain: &str, from: &str, is8bit: bool, to: &[String]) -> Response {
        self.lock().data_start(domain, from, is8bit, to)
    }
    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.lock().data(buf)
    }
    fn data_end(&mut self) -> Response {
        self.lock().data_end()
    }
}
