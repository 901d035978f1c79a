//! End of DATA: verify the message, record the decision durably, and only
//! then reply. `250` means the body file and the transaction are on disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use mail_parser::MessageParser;

use super::handler::{Data, Transaction};
use super::replay::ReplayKeys;
use super::reply::Reply;
use super::Service;
use crate::case_ref::{case_ref, CaseRefPattern};
use crate::clock::EvalTime;
use crate::policy::Replay;
use crate::reason::Reason;
use crate::receipts::duty;
use crate::receipts::notify::{self, Original};
use crate::store::payload::MessageDuplicate;
use crate::store::{
    AuditEvent, AuditKind, Body, Decision, Lane, MessageRecord, QueueEntry, Record, RevocationBlob,
    Route, SessionInfo, Signer,
};
use crate::verify::{self, Envelope, Verdict};

/// Verifies one message off the async workers (signature and chain checks
/// are CPU work). When the decision lacked revocation data (an OCSP answer,
/// a CRL from a distribution point), it is fetched and the message is
/// judged once more.
async fn judge(
    gw: &Arc<Service>,
    policy: &Arc<crate::policy::Policy>,
    body: &Body,
    mail_from: &str,
    rcpt_to: &[String],
) -> Verdict {
    let once = || {
        let (policy, body, mail_from, rcpt_to) = (
            policy.clone(),
            body.clone(),
            mail_from.to_owned(),
            rcpt_to.to_vec(),
        );
        let fetched = gw.revocation.current();
        tokio::task::spawn_blocking(move || {
            let envelope = Envelope {
                // The null reverse-path: From: alone names the authority.
                mail_from: (!mail_from.is_empty()).then_some(mail_from.as_str()),
                rcpt_to: &rcpt_to,
            };
            let at = EvalTime::now();
            match &body {
                Body::Bytes(bytes) => verify::verify(&policy, &fetched, bytes, &envelope, at),
                Body::Spooled(s) => {
                    verify::verify_spooled(&policy, &fetched, s.path(), &envelope, at)
                }
            }
        })
    };
    let mut judged = once().await;
    if let Ok(v) = &judged {
        gw.revocation.learn_cas(&v.path_cas).await;
        if !v.wanted.is_empty()
            && gw
                .revocation
                .fetch_wanted(&gw.store, policy, v.authority.as_deref(), &v.wanted)
                .await
        {
            judged = once().await;
        }
    }
    judged.unwrap_or_else(|e| {
        Verdict::rejected(
            Reason::TemporaryFailure,
            format!("verification did not complete: {e}"),
        )
    })
}

/// Verifies and records one transaction; returns the reply for the client.
pub async fn finish(gw: &Arc<Service>, session: &SessionInfo, tx: Transaction) -> Reply {
    if tx.postmaster {
        return super::postmaster::keep(gw, session, tx).await;
    }
    let id = crate::store::new_message_id(&tx.policy.gateway.hostname);
    let received_at_ms = crate::store::now_ms();
    let Transaction {
        mail_from,
        rcpt_to,
        dsn,
        postmaster: _,
        body,
        spool_error,
        received,
        too_large,
        malformed,
        policy,
    } = tx;
    let body = match body {
        Data::Memory(bytes) => Body::Bytes(bytes.into()),
        // The spool file's fsync is blocking: off the async workers.
        spooled => match tokio::task::spawn_blocking(move || finish_data(spooled)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Reply::temporary(&format!("cannot spool the message ({e})")),
            Err(e) => return Reply::temporary(&format!("cannot spool the message ({e})")),
        },
    };
    if let Some(why) = spool_error {
        return Reply::temporary(&why);
    }
    let mut verdict = if too_large {
        Verdict::rejected(
            Reason::TooLarge,
            format!(
                "message is at least {received} bytes, the limit is {}",
                policy.limits.max_message_size
            ),
        )
    } else if let Some(why) = malformed {
        Verdict::rejected(Reason::Malformed, why)
    } else {
        let judged = judge(gw, &policy, &body, &mail_from, &rcpt_to);
        let verdict = crate::metrics::timed(crate::metrics::Timer::Verify, judged).await;
        admitted(&policy, session, &mail_from, verdict)
    };
    // Of an encrypted message, the decrypted signed message is kept and
    // relayed; the bytes as received are evidence (see `received_evidence`).
    let (body, encrypted) = match verdict.decrypted.take() {
        Some(plain) => (Body::Bytes(plain), Some(body)),
        None => (body, None),
    };
    let received = if encrypted.is_some() {
        body.len()
    } else {
        received
    };
    let sha256 = match &body {
        Body::Bytes(bytes) => hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
        Body::Spooled(s) => s.sha256().to_owned(),
    };
    let replay_keys = if verdict.accepted() {
        ReplayKeys::of(&verdict.signers, &rcpt_to)
    } else {
        ReplayKeys::default()
    };
    // Held until the message is recorded, so a second session with the
    // same signature sees it.
    let Some(_claim) = gw.replays.claim(&replay_keys.all()) else {
        return Reply::temporary(
            "the same signed message is being recorded in another session; try again later",
        );
    };
    let earlier = Earlier {
        session,
        mail_from: &mail_from,
        rcpt_to: &rcpt_to,
        sha256: &sha256,
        received_at_ms,
    };
    if let Some(reply) = earlier.judge(gw, &policy, &replay_keys, &mut verdict).await {
        return reply;
    }
    let accepted = verdict.accepted();
    // What an acceptance receipt names of the log: read before the record
    // is prepared, so the receipt's event follows this head.
    let log_anchor = if accepted
        && notify::may_be_due(
            &policy,
            &mail_from,
            verdict.authority.as_deref(),
            crate::policy::ReceiptKind::Acceptance,
            false,
        ) {
        match gw.store.log_anchor().await {
            Ok(a) => Some(a),
            Err(e) => return Reply::temporary(&format!("cannot read the audit log's head ({e})")),
        }
    } else {
        None
    };
    let headers = match &body {
        Body::Bytes(bytes) => Headers::of(bytes, &gw.config.case_pattern),
        Body::Spooled(s) => {
            let max = policy.limits.max_header_size;
            let head = s
                .open()
                .and_then(|f| crate::smime::mime::read_head(&f, max));
            Headers::of(&head.unwrap_or_default(), &gw.config.case_pattern)
        }
    };
    let auto_submitted = headers.auto_submitted;
    let keep_body = accepted || (gw.config.keep_rejected_bodies && !too_large);
    let encrypted_kept = match received_evidence(gw, encrypted, keep_body, received_at_ms).await {
        Ok(kept) => kept,
        Err(reply) => return reply,
    };
    let notice_policy = policy.clone();
    let (mut record, receipt) = Judged {
        id: &id,
        received_at_ms,
        session,
        mail_from,
        rcpt_to,
        dsn,
        size: received,
        body,
        sha256,
        headers,
        verdict: &verdict,
        signature_keys: if accepted {
            replay_keys.into_stored()
        } else {
            Vec::new()
        },
        policy,
        keep_body,
        encrypted_kept,
        log_anchor,
    }
    .into_record();
    let notice = if accepted {
        receipt
    } else {
        refused_alert(gw, &notice_policy, &mut record);
        rejection_notice(gw, &notice_policy, &record, auto_submitted).await
    };
    if let Some(notice) = notice {
        // A bounded wait (tsa_timeout_secs) before the reply: the notice's
        // bytes are recorded with the decision, so its token comes first.
        crate::receipts::hold::stamp_or_hold(notice, &mut record, gw.tsa.as_ref()).await;
    }
    record_and_reply(gw, &id, &verdict, record).await
}

/// The bytes DATA received, a spool file flushed and fsynced. Blocking.
pub(super) fn finish_data(data: Data) -> std::io::Result<Body> {
    Ok(match data {
        Data::Memory(bytes) => Body::Bytes(bytes.into()),
        Data::Spool(w) => Body::Spooled(Arc::new(w.finish()?)),
    })
}

/// Records the decision (with what it sends) and replies: `250` only once
/// it is durable.
async fn record_and_reply(gw: &Service, id: &str, verdict: &Verdict, record: Record) -> Reply {
    let notified = !record.outgoing.is_empty();
    let recorded = gw.store.record(record);
    match crate::metrics::timed(crate::metrics::Timer::Commit, recorded).await {
        Ok(()) => {
            crate::metrics::with(|m| {
                m.decision(
                    verdict.reason.as_str(),
                    verdict.authority.as_deref(),
                    verdict.accepted(),
                )
            });
            tracing::info!(emla_id = %id, reason = verdict.reason.as_str(), authority = verdict.authority.as_deref().unwrap_or(""), "decision recorded");
            if verdict.accepted() || notified {
                gw.relay_wake.notify_one();
            }
            if verdict.accepted() {
                Reply::new(250, format!("2.0.0 accepted as {id}"))
            } else {
                Reply::reject(verdict.reason, &verdict.detail)
            }
        }
        Err(e) => {
            tracing::error!(emla_id = %id, error = %e, bug = e.is_bug(), "cannot record the decision");
            Reply::reject(
                e.reason(),
                &format!("cannot record the message now ({e}); try again later"),
            )
        }
    }
}

/// The non-acceptance notice of a message `record` refuses for good (5xx),
/// when the authority owning its envelope sender's domain (never the
/// unverified `From:`) lists `rejection` and is within its hourly budget
/// (`rejection_notices_per_hour`). It names the rejection's record
/// (`message.rejected`) in the log, as every receipt names its event's.
async fn rejection_notice(
    gw: &Service,
    policy: &crate::policy::Policy,
    record: &Record,
    auto_submitted: bool,
) -> Option<notify::Outgoing> {
    let m = record.message.as_ref()?;
    if super::reply::codes(m.reason).0 < 500 || m.mail_from.is_empty() || auto_submitted {
        return None;
    }
    let authority = policy
        .authority_for_address(&m.mail_from)
        .filter(|a| a.receipts.contains(crate::policy::ReceiptKind::Rejection))?;
    let limit = authority.rejection_notices_per_hour;
    if !gw.rejections.allow(&authority.id, limit, m.received_at_ms) {
        tracing::info!(emla_id = %m.id, authority = %authority.id, limit, "rejection notice over the hourly limit");
        return None;
    }
    // Read before the record is prepared, so the rejection follows this head.
    let log = match gw.store.log_anchor().await {
        Ok(anchor) => notify::log_ref(record.events.first()?, &anchor),
        Err(e) => {
            // The refusal is still recorded; only its notice is not sent.
            tracing::error!(emla_id = %m.id, error = %e, "no rejection notice: cannot read the audit log's head");
            return None;
        }
    };
    let original = refused(m, Some(&authority.id), auto_submitted, Some(&log));
    notify::rejection(policy, &original, m.reason, &m.detail)
}

/// What notices about the refused message `m` repeat of it.
fn refused<'a>(
    m: &'a MessageRecord,
    sender_authority: Option<&'a str>,
    auto_submitted: bool,
    log: Option<&'a crate::receipts::build::LogRef>,
) -> Original<'a> {
    Original {
        id: &m.id,
        received_at_ms: m.received_at_ms,
        sha256: &m.sha256,
        sender: &m.mail_from,
        recipients: &m.rcpt_to,
        subject: m.headers.subject.as_deref(),
        message_id: m.headers.message_id.as_deref(),
        signers: &m.signers,
        sender_authority,
        route: "",
        policy_version: &m.policy_version,
        case_ref: m.case_ref.as_deref(),
        request_kind: m.kind.as_deref(),
        auto_submitted,
        dsn: m.dsn.as_ref(),
        log,
    }
}

/// Alerts the duty officers of the sending and receiving authorities when
/// `record` refuses an urgent-lane message (see [`duty`]); the alerts go
/// in the same transaction as the refusal. The lane is the one its routes
/// or its kind give.
fn refused_alert(gw: &Service, policy: &crate::policy::Policy, record: &mut Record) {
    let urgent = record.message.as_ref().is_some_and(|m| {
        duty::refused_lane(policy, &m.mail_from, &m.rcpt_to, m.kind.as_deref()) == Lane::Urgent
    });
    // Copied only for an alert: `duty::add` appends to `record` while the
    // alert still borrows the message.
    if !urgent {
        return;
    }
    let Some(m) = record.message.clone() else {
        return;
    };
    let sending = m.authority.clone().or_else(|| {
        policy
            .authority_for_address(&m.mail_from)
            .map(|a| a.id.clone())
    });
    let receiving = m
        .rcpt_to
        .iter()
        .filter_map(|r| policy.authority_for_address(r))
        .map(|a| a.id.clone())
        .collect();
    let original = refused(&m, sending.as_deref(), false, None);
    let alert = duty::Alert {
        original: &original,
        event: duty::Event::Refused {
            reason: m.reason,
            detail: m.detail.clone(),
        },
        receiving,
        delivery: None,
    };
    duty::add(policy, &gw.duty, &alert, record, m.received_at_ms);
}

/// An accepted message from the null reverse-path was not checked at MAIL
/// against an authority's `allowed_clients`: its From: authority must
/// admit the client now.
fn admitted(
    policy: &crate::policy::Policy,
    session: &SessionInfo,
    mail_from: &str,
    verdict: Verdict,
) -> Verdict {
    if !mail_from.is_empty() || !verdict.accepted() {
        return verdict;
    }
    let ip = session.client_ip.parse::<std::net::IpAddr>().ok();
    match policy
        .authorities
        .iter()
        .find(|a| verdict.authority.as_deref() == Some(a.id.as_str()))
    {
        Some(a) if ip.is_some_and(|ip| a.admits_client(ip)) => verdict,
        a => Verdict::rejected(
            Reason::UnauthorizedClient,
            format!(
                "client {} may not submit mail for authority {}",
                session.client_ip,
                a.map_or("(none)", |a| a.id.as_str())
            ),
        ),
    }
}

/// What a replay check needs of the transaction.
struct Earlier<'a> {
    session: &'a SessionInfo,
    mail_from: &'a str,
    rcpt_to: &'a [String],
    sha256: &'a str,
    received_at_ms: i64,
}

impl Earlier<'_> {
    /// Looks up the message's signature among earlier accepted ones (see
    /// [`replay`](super::replay)). A replay under `replay = "same-id"` is
    /// answered here with the first message's id; under `"refuse"`, the
    /// verdict becomes `replay`. `None`: go on and record the verdict.
    async fn judge(
        &self,
        gw: &Service,
        policy: &crate::policy::Policy,
        keys: &ReplayKeys,
        verdict: &mut Verdict,
    ) -> Option<Reply> {
        if keys.is_empty() {
            return None;
        }
        let window = i64::try_from(policy.limits.replay_window.as_millis()).unwrap_or(i64::MAX);
        let since = self.received_at_ms.saturating_sub(window);
        let original = match keys.earlier(&gw.store, since).await {
            Ok(found) => found?,
            Err(e) => {
                return Some(Reply::temporary(&format!(
                    "cannot look up earlier signatures ({e})"
                )))
            }
        };
        if policy.limits.replay == Replay::Refuse {
            verdict.reason = Reason::Replay;
            verdict.detail = format!("this signature was already accepted as {original}");
            verdict.recipients.clear();
            return None;
        }
        let duplicate = MessageDuplicate {
            session: self.session.clone(),
            mail_from: self.mail_from.to_owned(),
            rcpt_to: self.rcpt_to.to_vec(),
            sha256: self.sha256.to_owned(),
            signature_sha256: keys.signatures().to_vec(),
            policy_version: policy.version.clone(),
        };
        let event = AuditEvent::of(Some(original.clone()), &duplicate);
        Some(match gw.store.audit(event).await {
            Ok(()) => Reply::new(250, format!("2.0.0 already accepted as {original}")),
            Err(e) => Reply::temporary(&format!("cannot record the decision ({e})")),
        })
    }
}

/// One transaction's message as judged: what its decision record, its
/// queue entries and its acceptance receipt are made of.
struct Judged<'a> {
    id: &'a str,
    received_at_ms: i64,
    session: &'a SessionInfo,
    mail_from: String,
    rcpt_to: Vec<String>,
    dsn: crate::envelope::Dsn,
    /// Bytes received.
    size: u64,
    body: Body,
    sha256: String,
    headers: Headers,
    verdict: &'a Verdict,
    /// The replay keys of an accepted message.
    signature_keys: Vec<String>,
    policy: Arc<crate::policy::Policy>,
    /// Whether the body is kept.
    keep_body: bool,
    /// Of an encrypted message, whether the bytes as received are kept.
    encrypted_kept: bool,
    /// The log as it stood, when an acceptance receipt may be due.
    log_anchor: Option<crate::store::retention::LogAnchor>,
}

impl Judged<'_> {
    /// The record to store: the message row, its decision event, its queue
    /// entries (when accepted); and its acceptance receipt (when one is
    /// due), to be timestamped and added.
    fn into_record(self) -> (Record, Option<notify::Outgoing>) {
        let accepted = self.verdict.accepted();
        let queue = if accepted {
            queue_entries(self.id, self.verdict)
        } else {
            Vec::new()
        };
        let event = self.event();
        let signers = serde_json::to_value(&self.verdict.signers).unwrap_or_default();
        let receipt = if accepted {
            self.acceptance(&signers, &event)
        } else {
            None
        };
        let Judged {
            id,
            received_at_ms,
            session,
            mail_from,
            rcpt_to,
            dsn,
            size,
            body,
            sha256,
            headers,
            verdict,
            signature_keys,
            policy,
            keep_body,
            encrypted_kept: _,
            log_anchor: _,
        } = self;
        let record = Record {
            message: Some(MessageRecord {
                id: id.to_owned(),
                received_at_ms,
                sha256,
                size,
                session: session.clone(),
                mail_from,
                rcpt_to,
                headers: crate::store::MessageHeaders {
                    header_from: headers.from,
                    header_to: headers.to,
                    subject: headers.subject,
                    message_id: headers.message_id,
                    date: headers.date,
                },
                reason: verdict.reason,
                detail: verdict.detail.clone(),
                signers,
                authority: verdict.authority.clone(),
                policy_version: policy.version.clone(),
                case_ref: headers.case_ref.clone(),
                kind: verdict.kind.clone(),
                signature_keys,
                body: keep_body.then_some(body),
                dsn: (!dsn.is_empty()).then_some(dsn),
            }),
            events: vec![event],
            queue,
            queue_updates: Vec::new(),
            outgoing: Vec::new(),
            revocation: RevocationBlob::of(&verdict.revocation),
            holds: Vec::new(),
        };
        (record, receipt)
    }

    /// The audit event of the decision (`message_accepted` or
    /// `message_rejected`).
    fn event(&self) -> AuditEvent {
        let (verdict, headers) = (self.verdict, &self.headers);
        AuditEvent {
            kind: if verdict.accepted() {
                AuditKind::MessageAccepted
            } else {
                AuditKind::MessageRejected
            },
            message_id: Some(self.id.to_owned()),
            data: serde_json::to_value(Decision {
                session: Some(self.session.clone()),
                mail_from: Some(self.mail_from.clone()),
                rcpt_to: self.rcpt_to.clone(),
                size: Some(self.size),
                sha256: Some(self.sha256.clone()),
                from: headers.from.clone(),
                to: headers.to.clone(),
                subject: headers.subject.clone(),
                message_id: headers.message_id.clone(),
                date: headers.date.clone(),
                verdict: Some(crate::store::Verdict::of(verdict.reason)),
                reason: Some(verdict.reason),
                detail: Some(verdict.detail.clone()),
                signers: verdict.signers.iter().map(signer_record).collect(),
                recipients: verdict.recipients.iter().map(route_record).collect(),
                revocation: Some(verdict.revocation.clone()),
                authority: verdict.authority.clone(),
                kind: verdict.kind.clone(),
                policy_version: Some(self.policy.version.clone()),
                body_stored: Some(self.keep_body),
                encryption: verdict
                    .encryption
                    .as_ref()
                    .map(|e| encryption_record(e, self.encrypted_kept)),
            })
            .unwrap_or_default(),
        }
    }

    /// The acceptance receipt of an accepted message, when its sender's
    /// authority wants one; `signers` as recorded, `event` the decision's.
    fn acceptance(
        &self,
        signers: &serde_json::Value,
        event: &AuditEvent,
    ) -> Option<notify::Outgoing> {
        // NOTIFY=NEVER for every recipient: the client wants no notice at all.
        if self
            .rcpt_to
            .iter()
            .all(|r| !self.dsn.notify(r, |n| !n.is_never()))
        {
            return None;
        }
        let mut routes: Vec<&str> = self
            .verdict
            .recipients
            .iter()
            .filter_map(|r| r.route.as_deref())
            .collect();
        routes.dedup();
        let log = notify::log_ref(event, self.log_anchor.as_ref()?);
        let original = Original {
            id: self.id,
            received_at_ms: self.received_at_ms,
            sha256: &self.sha256,
            sender: &self.mail_from,
            recipients: &self.rcpt_to,
            subject: self.headers.subject.as_deref(),
            message_id: self.headers.message_id.as_deref(),
            signers,
            sender_authority: self.verdict.authority.as_deref(),
            route: &routes.join(", "),
            policy_version: &self.policy.version,
            case_ref: self.headers.case_ref.as_deref(),
            request_kind: self.verdict.kind.as_deref(),
            auto_submitted: self.headers.auto_submitted,
            dsn: Some(&self.dsn),
            log: Some(&log),
        };
        notify::acceptance(&self.policy, &original)
    }
}

/// One queue entry per next hop, route and lane, with its recipients.
fn queue_entries(id: &str, verdict: &Verdict) -> Vec<QueueEntry> {
    let mut by_hop: BTreeMap<(String, String, String, Lane), Vec<String>> = BTreeMap::new();
    for r in &verdict.recipients {
        let key = (
            r.next_hop.clone().unwrap_or_default(),
            r.authority.clone().unwrap_or_default(),
            r.route.clone().unwrap_or_default(),
            r.lane.unwrap_or(Lane::Normal),
        );
        by_hop.entry(key).or_default().push(r.recipient.clone());
    }
    by_hop
        .into_iter()
        .map(
            |((next_hop, authority, route, lane), recipients)| QueueEntry {
                message_id: id.to_string(),
                next_hop,
                authority,
                route,
                lane,
                recipients,
            },
        )
        .collect()
}

/// The header fields recorded with every message.
/// A signer as the decision record holds it.
fn signer_record(s: &crate::verify::SignerReport) -> Signer {
    Signer {
        email: s.email.clone(),
        emails: s.emails.clone(),
        subject: Some(s.subject.clone()),
        issuer: Some(s.issuer.clone()),
        serial: Some(s.serial.clone()),
        sha256: Some(s.sha256.clone()),
        key_algorithm: Some(s.key_algorithm.clone()),
        signature_algorithm: Some(s.signature_algorithm.clone()),
        signature_sha256: Some(s.signature_sha256.clone()),
        chain: s.chain.clone(),
        authority: s.authority.clone(),
    }
}

/// Of an encrypted message whose body is kept, the bytes as received,
/// stored before the record names them. `Ok(kept)`, or the reply when
/// they cannot be stored.
async fn received_evidence(
    gw: &Service,
    encrypted: Option<Body>,
    keep_body: bool,
    received_at_ms: i64,
) -> Result<bool, Reply> {
    let Some(body) = encrypted.filter(|_| keep_body) else {
        return Ok(false);
    };
    // A spooled encrypted message was decryptable, so it is within the
    // CMS bound of a skeleton (32 MiB): taken whole.
    let bytes: Arc<[u8]> = match body {
        Body::Bytes(bytes) => bytes,
        Body::Spooled(s) => match tokio::fs::read(s.path()).await {
            Ok(b) => b.into(),
            Err(e) => {
                return Err(Reply::temporary(&format!(
                    "cannot read the spooled message ({e})"
                )))
            }
        },
    };
    match gw.store.keep_evidence(bytes, received_at_ms).await {
        Ok(_) => Ok(true),
        Err(e) => Err(Reply::temporary(&format!(
            "cannot keep the encrypted message as received ({e})"
        ))),
    }
}

/// How a message arrived encrypted, as the decision record holds it.
fn encryption_record(
    e: &crate::smime::decrypt::EncryptionReport,
    received_stored: bool,
) -> crate::store::rows::Encryption {
    crate::store::rows::Encryption {
        cms_type: e.cms_type.clone(),
        recipient: e
            .recipient
            .as_ref()
            .map(|r| crate::store::rows::EncryptionRecipient {
                subject: r.subject.clone(),
                issuer: r.issuer.clone(),
                serial: r.serial.clone(),
                ski: r.ski.clone(),
                sha256: r.sha256.clone(),
            }),
        key_algorithm: e.key_algorithm.clone(),
        content_algorithm: e.content_algorithm.clone(),
        recipient_count: e.recipient_count,
        received_sha256: e.received_sha256.clone(),
        received_size: e.received_size,
        received_stored,
        decrypted_sha256: e.decrypted_sha256.clone(),
        outer_signers: e.outer_signers.clone(),
        problem: e.problem.clone(),
    }
}

/// A recipient's routing as the decision record holds it.
fn route_record(r: &crate::verify::RecipientRoute) -> Route {
    Route {
        recipient: Some(r.recipient.clone()),
        route: r.route.clone(),
        authority: r.authority.clone(),
        next_hop: r.next_hop.clone(),
        lane: r.lane,
    }
}

#[derive(Default)]
struct Headers {
    from: Option<String>,
    to: Option<String>,
    subject: Option<String>,
    message_id: Option<String>,
    date: Option<String>,
    case_ref: Option<String>,
    auto_submitted: bool,
}

impl Headers {
    fn of(raw: &[u8], case_pattern: &CaseRefPattern) -> Headers {
        let Some(m) = MessageParser::new().parse_headers(raw) else {
            return Headers::default();
        };
        let raw_value = |name: &str| m.header_raw(name).map(|v| v.trim().to_string());
        Headers {
            from: raw_value("From"),
            to: raw_value("To"),
            subject: m.subject().map(str::to_string),
            message_id: m.message_id().map(str::to_string),
            date: raw_value("Date"),
            case_ref: case_ref(m.header_raw("X-MLA-Reference"), m.subject(), case_pattern),
            auto_submitted: m
                .header_raw("Auto-Submitted")
                .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no")),
        }
    }
}
