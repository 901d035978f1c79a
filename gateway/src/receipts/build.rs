//! Receipts and non-delivery notices the gateway sends back to a sender
//! (issue #4): pure builders, no I/O.
//!
//! Each builder returns an unsigned [`Receipt`] (top-level headers plus the
//! MIME entity to be signed); [`Receipt::sign`] turns it into the complete
//! `multipart/signed` message with the gateway's [`SigningIdentity`].
//!
//! - [`acceptance_receipt`]: the gateway accepted and recorded the message;
//! - [`delivery_receipt`]: the next hop accepted it (relayed, with its
//!   queue id);
//! - [`non_delivery_notice`]: an RFC 3464 delivery status notification;
//! - [`delay_notice`]: the same, `Action: delayed`, while still trying;
//! - [`rejection_notice`]: the gateway refused the message.
//!
//! Acceptance and delivery receipts are `multipart/mixed` with a human
//! `text/plain` part and a machine-readable `application/json` part
//! (`receipt.json`, fields documented on [`acceptance_receipt`]). Every
//! value taken from the original message is sanitized: no CR or LF reaches
//! a header, and non-ASCII text is RFC 2047-encoded.
//!
//! The caller decides whether to send at all: never to a null reverse-path
//! (the builders return `None` for an empty sender), never in answer to a
//! message that is itself `Auto-Submitted`, and only for the kinds the
//! sender's authority wants ([`crate::policy::ReceiptKinds`]).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use serde_json::json;

use crate::clock::EvalTime;
use crate::policy::ReceiptKind;
use crate::smime::sign::{base64_lines, random_hex, SignedMime, SigningIdentity};
use crate::store::{DeliveryState, RemEvent};

/// The certificate that signed the original message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerSummary {
    /// Subject DN (RFC 4514).
    pub subject: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
}

/// What every receipt says about the original message.
#[derive(Clone, Debug)]
pub struct ReceiptContext {
    /// The gateway's host name (Message-IDs, `Reporting-MTA`).
    pub gateway_hostname: String,
    /// The address receipts come from (the postmaster; it must be the
    /// signing certificate's address for receipts to verify).
    pub from_address: String,
    /// emla's id of the message (`X-Emla-Message-Id`).
    pub message_id: String,
    /// The original `Message-ID`, with or without angle brackets.
    pub original_message_id: Option<String>,
    /// The original `Subject`, decoded to Unicode text.
    pub original_subject: Option<String>,
    /// The envelope sender: the receipt's recipient. Empty for a null
    /// reverse-path, to which nothing is sent.
    pub sender: String,
    /// The envelope recipients of the original message.
    pub recipients: Vec<String>,
    /// SHA-256 of the message as received, hex.
    pub sha256: String,
    /// When the gateway accepted it.
    pub received_at: SystemTime,
    /// Its verified signer, if any.
    pub signer: Option<SignerSummary>,
    /// The name of the route it took.
    pub route: String,
    /// The policy version it was judged under.
    pub policy_version: String,
    /// The request kind the message declared (`[[kind]]` id), if any.
    pub request_kind: Option<String>,
    /// The DSN parameters its client gave (ENVID, ORCPT), named in a
    /// non-delivery notice (RFC 3464 §2.2.1, §2.3.1).
    pub dsn: crate::envelope::Dsn,
    /// Where the receipt's event stands in the audit log.
    pub log: Option<LogRef>,
}

/// The audit record of a receipt's event and the log around it when the
/// receipt was issued (`docs/evidence-vocabulary.md`, "Receipts anchor
/// the log"). The record's own seq and hash exist only once it is
/// committed, after the receipt is signed; so the receipt names the record
/// by its content and the committed head it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRef {
    /// The record's kind, e.g. `message.accepted`.
    pub kind: String,
    /// Its content hash (`store::chain::content_hash`).
    pub content_sha256: String,
    /// The seq of the committed chain head when the receipt was made: the
    /// record lies after it.
    pub after_seq: i64,
    /// That head's hash.
    pub after_hash: String,
    /// The latest signed checkpoint then, `(seq, hash)`.
    pub checkpoint: Option<(i64, String)>,
}

impl LogRef {
    /// `receipt.json`'s `audit` object.
    fn json(&self) -> serde_json::Value {
        json!({
            "record": {"kind": self.kind, "content_sha256": self.content_sha256},
            "after": {"seq": self.after_seq, "hash": self.after_hash},
            "checkpoint": self.checkpoint.as_ref().map(|(seq, hash)| json!({"seq": seq, "hash": hash})),
        })
    }
}

/// The ETSI EN 319 522-1 event a receipt of `kind` is the evidence of;
/// the standard has none for a delay notice.
pub fn evidence(kind: ReceiptKind) -> Option<RemEvent> {
    match kind {
        ReceiptKind::Acceptance => Some(RemEvent::SubmissionAcceptance),
        ReceiptKind::Rejection => Some(RemEvent::SubmissionRejection),
        ReceiptKind::Delivery => Some(RemEvent::RelayAcceptance),
        ReceiptKind::Failure => Some(RemEvent::RelayFailure),
        ReceiptKind::Delay => None,
    }
}

/// The state of the message a receipt of `kind` reports (`receipt.json`'s
/// `state`, a report's `X-Emla-State`).
pub fn state(kind: ReceiptKind) -> DeliveryState {
    match kind {
        ReceiptKind::Acceptance => DeliveryState::Accepted,
        ReceiptKind::Rejection => DeliveryState::Rejected,
        ReceiptKind::Delivery => DeliveryState::Relayed,
        ReceiptKind::Failure => DeliveryState::Failed,
        ReceiptKind::Delay => DeliveryState::Delayed,
    }
}

/// The next hop's acceptance of (some recipients of) the message: relayed.
#[derive(Clone, Debug)]
pub struct DeliveryOutcome {
    /// The recipients relayed in this transaction.
    pub recipients: Vec<String>,
    /// The next hop, `host:port`.
    pub next_hop: String,
    /// Its SMTP reply code to the end of DATA, e.g. 250.
    pub reply_code: u16,
    /// Its reply text, in full.
    pub reply_text: String,
    /// Its queue id, read from the reply when it names one.
    pub queue_id: Option<String>,
    /// The TLS version and cipher suite used, `None` for plain SMTP.
    pub tls: Option<String>,
    /// When it answered.
    pub at: SystemTime,
}

/// A permanent failure for some recipients.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The recipients that failed.
    pub recipients: Vec<String>,
    /// RFC 3463 enhanced status, e.g. `5.1.1` (`5.0.0` stands in for an
    /// invalid one).
    pub status: String,
    /// The diagnostic: the remote reply (`550 5.1.1 no such user`) or the
    /// gateway's own reason.
    pub diagnostic: String,
    /// The remote MTA that refused, if one did.
    pub remote_mta: Option<String>,
    /// When the gateway gave up.
    pub at: SystemTime,
}

/// An unsigned receipt: top-level headers and the entity to sign.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// Which kind it is.
    pub kind: ReceiptKind,
    /// Top-level headers, already encoded (ASCII, no CR or LF but folds).
    pub headers: Vec<(&'static str, String)>,
    /// The MIME entity the signature covers, CRLF line endings.
    pub entity: Vec<u8>,
    /// When the event it reports happened (Date, signingTime).
    pub at: SystemTime,
}

impl Receipt {
    /// The complete signed message, signed as of the receipt's time.
    pub fn sign(&self, identity: &SigningIdentity) -> Vec<u8> {
        self.sign_parts(identity).to_message(None)
    }

    /// As [`Receipt::sign`], the signature part still open to a timestamp.
    pub fn sign_parts(&self, identity: &SigningIdentity) -> SignedMime {
        let headers: Vec<(&str, String)> =
            self.headers.iter().map(|(n, v)| (*n, v.clone())).collect();
        identity.sign_mime_parts(&headers, &self.entity, self.at)
    }

    /// The value of the first header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The receipt for an accepted message, or `None` for a null sender.
///
/// `receipt.json` holds: `type` (`acceptance`), `state` (the message's,
/// [`state`]: `accepted`), `evidence`, `audit`, `message_id` (emla's),
/// `original_message_id`, `received_at` (RFC 3339), `sha256`, `sender`,
/// `recipients`, `signer` (`subject`, `serial`, `sha256`, or null),
/// `route`, `policy_version`.
pub fn acceptance_receipt(ctx: &ReceiptContext) -> Option<Receipt> {
    let subject = ctx.original_subject.as_deref().unwrap_or("(no subject)");
    let mut text = format!(
        "Your message was accepted by the secure gateway {host} and recorded\r\n\
         as evidence. It will now be relayed; you will be told when the next\r\n\
         hop has taken it (relayed) or if it cannot be.\r\n\r\n",
        host = ascii_only(&ctx.gateway_hostname),
    );
    text.push_str(&facts(ctx, subject));
    let data = receipt_json(ctx, "acceptance");
    build_mixed(
        ctx,
        ReceiptKind::Acceptance,
        "Accepted",
        &text,
        &data,
        ctx.received_at,
    )
}

/// The notice for a message the gateway refused at the end of DATA
/// (PEC's avviso di non accettazione), or `None` for a null sender.
/// `receipt.json` holds what [`acceptance_receipt`] does (with `type`
/// `rejection`, `state` `rejected`, and `audit` naming the
/// `message.rejected` record) plus `reason` (the reason code), `detail`
/// and `rejected_at`.
pub fn rejection_notice(ctx: &ReceiptContext, reason: &str, detail: &str) -> Option<Receipt> {
    let subject = ctx.original_subject.as_deref().unwrap_or("(no subject)");
    let mut text = format!(
        "Your message was NOT accepted by the secure gateway {host}; it\r\n\
         has not been relayed to anyone.\r\n\r\nReason: {reason}: {detail}\r\n\r\n",
        host = ascii_only(&ctx.gateway_hostname),
        reason = one_line(reason),
        detail = one_line(detail),
    );
    text.push_str(&facts(ctx, subject));
    let mut data = receipt_json(ctx, "rejection");
    data["reason"] = json!(reason);
    data["detail"] = json!(detail);
    data["rejected_at"] = json!(rfc3339(ctx.received_at));
    build_mixed(
        ctx,
        ReceiptKind::Rejection,
        "Not accepted",
        &text,
        &data,
        ctx.received_at,
    )
}

/// An alert to a duty officer at `to` about the urgent-lane message of
/// `ctx`: `event` (`refused`, `delayed`, `failed`) is what happened,
/// `what` says it for people, `kind` is the notice whose state it reports
/// (`receipt.json`'s `state` and `evidence`). `receipt.json` holds what
/// [`acceptance_receipt`] does (with `type` `duty-alert`) plus `event` and
/// `what`; the header `X-Emla-Duty-Alert: EVENT` stands for
/// `X-Emla-Receipt`, and `Auto-Submitted` is `auto-generated`.
pub fn duty_alert(
    ctx: &ReceiptContext,
    kind: ReceiptKind,
    event: &str,
    what: &str,
    to: &str,
    at: SystemTime,
) -> Option<Receipt> {
    let subject = ctx.original_subject.as_deref().unwrap_or("(no subject)");
    let mut text = format!(
        "An urgent-lane message at the secure gateway {host} needs attention\r\n\
         (UNTOC art. 18(13)): {what}\r\n\r\n",
        host = ascii_only(&ctx.gateway_hostname),
        what = one_line(what),
    );
    text.push_str(&facts(ctx, subject));
    let mut data = receipt_json(ctx, "duty-alert");
    data["event"] = json!(event);
    data["what"] = json!(what);
    let prefix = format!("Urgent-lane alert ({})", ascii_only(event));
    let mut r = build_mixed(ctx, kind, &prefix, &text, &data, at)?;
    for (name, value) in &mut r.headers {
        match *name {
            "To" => *value = address(to),
            "Message-ID" => *value = value.replacen(kind.name(), "duty-alert", 1),
            "X-Emla-Receipt" => (*name, *value) = ("X-Emla-Duty-Alert", ascii_only(event)),
            // Not a reply to the duty officer's mail (RFC 3834 §5).
            "Auto-Submitted" => *value = "auto-generated".to_owned(),
            _ => {}
        }
    }
    Some(r)
}

/// The `receipt.json` fields every receipt has, of type `kind`, for
/// `ctx.recipients`.
fn receipt_json(ctx: &ReceiptContext, kind: &str) -> serde_json::Value {
    json!({
        "type": kind,
        "message_id": ctx.message_id,
        "original_message_id": ctx.original_message_id,
        "subject": ctx.original_subject,
        "received_at": rfc3339(ctx.received_at),
        "sha256": ctx.sha256,
        "sender": ctx.sender,
        "recipients": ctx.recipients,
        "signer": signer_json(ctx),
        "route": ctx.route,
        "request_kind": ctx.request_kind,
        "policy_version": ctx.policy_version,
    })
}

/// The receipt for a relay to the next hop (its `250`), or `None` for a
/// null sender. `receipt.json` holds what [`acceptance_receipt`] does
/// (with `type` `delivery`, `state` `relayed` and `recipients` the ones
/// relayed) plus `relayed_at` (and the same time as `delivered_at`, its
/// older name), `next_hop`, `next_hop_queue_id` (the next hop's queue id
/// from its reply, or null), `reply_code`, `reply_text`, `tls`.
pub fn delivery_receipt(ctx: &ReceiptContext, outcome: &DeliveryOutcome) -> Option<Receipt> {
    let subject = ctx.original_subject.as_deref().unwrap_or("(no subject)");
    let hop = one_line(&outcome.next_hop);
    let relayed = match &outcome.queue_id {
        Some(id) => format!("relayed to {hop}, its queue id {}", one_line(id)),
        None => format!("relayed to {hop} (its reply names no queue id)"),
    };
    let mut text = format!(
        "Your message was {relayed}, by the secure gateway {host}.\r\n\
         The next hop accepted it at {at}:\r\n\r\n    {code} {reply}\r\n\r\n\
         The gateway's part is done: the next hop now delivers it.\r\n\
         Transport security: {tls}\r\n\r\n",
        host = ascii_only(&ctx.gateway_hostname),
        at = rfc3339(outcome.at),
        code = outcome.reply_code,
        reply = one_line(&outcome.reply_text),
        tls = outcome
            .tls
            .as_deref()
            .map_or_else(|| "none (plain SMTP)".to_owned(), one_line),
    );
    let delivered = ReceiptContext {
        recipients: outcome.recipients.clone(),
        ..ctx.clone()
    };
    text.push_str(&facts(&delivered, subject));
    let mut data = receipt_json(&delivered, "delivery");
    data["relayed_at"] = json!(rfc3339(outcome.at));
    data["delivered_at"] = json!(rfc3339(outcome.at));
    data["next_hop"] = json!(outcome.next_hop);
    data["next_hop_queue_id"] = json!(outcome.queue_id);
    data["reply_code"] = json!(outcome.reply_code);
    data["reply_text"] = json!(outcome.reply_text);
    data["tls"] = json!(outcome.tls);
    build_mixed(
        ctx,
        ReceiptKind::Delivery,
        "Relayed",
        &text,
        &data,
        outcome.at,
    )
}

/// An RFC 3464 non-delivery notice, or `None` for a null sender:
/// `multipart/report; report-type=delivery-status` with a human text part,
/// the `message/delivery-status` part (one per-recipient block for each
/// failed recipient, `Action: failed`) and the original header section
/// (`original_headers`, as received) as `text/rfc822-headers`. The whole
/// report is the signed entity.
pub fn non_delivery_notice(
    ctx: &ReceiptContext,
    failure: &Failure,
    original_headers: &[u8],
) -> Option<Receipt> {
    status_report(ctx, failure, original_headers, None)
}

/// An RFC 3464 delay notice (`Action: delayed`), or `None` for a null
/// sender: the same report as [`non_delivery_notice`] for recipients still
/// deferred, with a 4.x.x status and `Will-Retry-Until: retry_until` (the
/// end of the queue lifetime).
pub fn delay_notice(
    ctx: &ReceiptContext,
    delay: &Failure,
    retry_until: SystemTime,
    original_headers: &[u8],
) -> Option<Receipt> {
    status_report(ctx, delay, original_headers, Some(retry_until))
}

/// The report of [`non_delivery_notice`] (`retry_until` none) or
/// [`delay_notice`].
fn status_report(
    ctx: &ReceiptContext,
    failure: &Failure,
    original_headers: &[u8],
    retry_until: Option<SystemTime>,
) -> Option<Receipt> {
    if ctx.sender.trim().is_empty() {
        return None;
    }
    let rng = SystemRandom::new();
    let subject = ctx.original_subject.as_deref().unwrap_or("(no subject)");
    let (kind, action, class, prefix) = match retry_until {
        None => (ReceiptKind::Failure, "failed", "5.0.0", "Undeliverable"),
        Some(_) => (ReceiptKind::Delay, "delayed", "4.0.0", "Delayed"),
    };
    // A delay is transient (4.x.x); an expiry fails with 4.4.7, as usual.
    let fits_action = retry_until.is_none() || failure.status.starts_with('4');
    let status = if is_status(&failure.status) && fits_action {
        failure.status.as_str()
    } else {
        class
    };
    let mut text = match retry_until {
        None => format!(
            "Your message could not be delivered by the secure gateway {host}\r\n\
             to the following recipients:\r\n\r\n",
            host = ascii_only(&ctx.gateway_hostname),
        ),
        Some(_) => format!(
            "Your message has not yet been delivered by the secure gateway {host}\r\n\
             to the following recipients. This is a warning only: delivery\r\n\
             is still being tried, you need not send it again.\r\n\r\n",
            host = ascii_only(&ctx.gateway_hostname),
        ),
    };
    for r in &failure.recipients {
        text.push_str(&format!("    {}\r\n", one_line(r)));
    }
    let reason = if retry_until.is_some() {
        "Last error"
    } else {
        "Reason"
    };
    text.push_str(&format!(
        "\r\n{reason}: {}\r\nStatus: {status}\r\n",
        one_line(&failure.diagnostic)
    ));
    if let Some(until) = retry_until {
        text.push_str(&format!("Will retry until: {}\r\n", rfc5322_date(until)));
    }
    text.push_str("\r\n");
    text.push_str(&facts(ctx, subject));

    let host = ascii_only(&ctx.gateway_hostname);
    let mut dsn = match &ctx.dsn.envid {
        Some(envid) => format!("Original-Envelope-Id: {}\r\n", ascii_only(envid)),
        None => String::new(),
    };
    dsn.push_str(&format!(
        "Reporting-MTA: dns; {host}\r\nX-Emla-Message-Id: {}\r\nArrival-Date: {}\r\n",
        ascii_only(&ctx.message_id),
        rfc5322_date(ctx.received_at)
    ));
    dsn.push_str(&dsn_log_fields(kind, ctx.log.as_ref()));
    for r in &failure.recipients {
        if let Some(orcpt) = ctx.dsn.recipient(r).and_then(|d| d.orcpt.as_deref()) {
            dsn.push_str(&format!("\r\nOriginal-Recipient: {}", ascii_only(orcpt)));
        }
        dsn.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {status}\r\n",
            ascii_only(r)
        ));
        if let Some(mta) = &failure.remote_mta {
            dsn.push_str(&format!("Remote-MTA: dns; {}\r\n", ascii_only(mta)));
        }
        dsn.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
            ascii_only(&failure.diagnostic),
            rfc5322_date(failure.at)
        ));
        if let Some(until) = retry_until {
            dsn.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }

    let mut headers = crlf_text(original_headers);
    if let Some(end) = memchr::memmem::find(&headers, b"\r\n\r\n") {
        headers.truncate(end + 2);
    }
    if !headers.is_empty() && !headers.ends_with(b"\r\n") {
        headers.extend_from_slice(b"\r\n");
    }

    let parts = vec![
        text_part("text/plain; charset=utf-8", text.as_bytes(), None),
        [
            b"Content-Type: message/delivery-status\r\n\r\n".as_slice(),
            dsn.as_bytes(),
        ]
        .concat(),
        text_part("text/rfc822-headers; charset=utf-8", &headers, None),
    ];
    let entity = multipart(
        &rng,
        "multipart/report; report-type=delivery-status",
        &parts,
    );
    Some(Receipt {
        kind,
        headers: top_headers(ctx, kind, prefix, failure.at, &rng),
        entity,
        at: failure.at,
    })
}

/// The per-message extension fields (RFC 3464 §7) of a non-delivery
/// notice that name its audit record, as `receipt.json`'s `evidence` and
/// `audit` do in the other receipts.
fn dsn_log_fields(kind: ReceiptKind, log: Option<&LogRef>) -> String {
    let mut s = format!("X-Emla-State: {}\r\n", state(kind));
    if let Some(e) = evidence(kind) {
        s.push_str(&format!("X-Emla-Evidence: {e}\r\n"));
    }
    if let Some(log) = log {
        s.push_str(&format!(
            "X-Emla-Audit-Record: {}; content-sha256={}; after-seq={}; after-hash={}\r\n",
            ascii_only(&log.kind),
            ascii_only(&log.content_sha256),
            log.after_seq,
            ascii_only(&log.after_hash)
        ));
        match &log.checkpoint {
            Some((seq, hash)) => s.push_str(&format!(
                "X-Emla-Audit-Checkpoint: seq={seq}; hash={}\r\n",
                ascii_only(hash)
            )),
            None => s.push_str("X-Emla-Audit-Checkpoint: none\r\n"),
        }
    }
    s
}

/// The human lines naming the receipt's audit record and checkpoint.
fn log_facts(log: &LogRef) -> String {
    let mut s = format!(
        "\r\nAudit record:   {} with content SHA-256\r\n                {}\r\n\
         \x20 appended after record {} (hash {})\r\n",
        one_line(&log.kind),
        one_line(&log.content_sha256),
        log.after_seq,
        one_line(&log.after_hash)
    );
    match &log.checkpoint {
        Some((seq, hash)) => s.push_str(&format!(
            "Checkpoint:     signed at record {seq} (hash {})\r\n",
            one_line(hash)
        )),
        None => s.push_str("Checkpoint:     none signed yet\r\n"),
    }
    s.push_str("Check it with:  emla audit verify --receipt FILE\r\n");
    s
}

/// The human summary of the original message shared by every receipt.
fn facts(ctx: &ReceiptContext, subject: &str) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<16}{}\r\n", one_line(v)));
    line("emla message id:", &ctx.message_id);
    if let Some(id) = &ctx.original_message_id {
        line("Message-ID:", id);
    }
    line("Subject:", subject);
    line("Received:", &rfc3339(ctx.received_at));
    line("SHA-256:", &ctx.sha256);
    line("Sender:", &ctx.sender);
    line("Recipients:", &ctx.recipients.join(", "));
    match &ctx.signer {
        Some(signer) => {
            line("Signed by:", &signer.subject);
            line("  serial:", &signer.serial);
            line("  SHA-256:", &signer.sha256);
        }
        None => line("Signed by:", "(no verified signature)"),
    }
    line("Route:", &ctx.route);
    if let Some(k) = &ctx.request_kind {
        line("Request kind:", k);
    }
    line("Policy version:", &ctx.policy_version);
    if let Some(log) = &ctx.log {
        s.push_str(&log_facts(log));
    }
    s
}

fn signer_json(ctx: &ReceiptContext) -> serde_json::Value {
    match &ctx.signer {
        Some(s) => json!({"subject": s.subject, "serial": s.serial, "sha256": s.sha256}),
        None => serde_json::Value::Null,
    }
}

/// A `multipart/mixed` receipt: text plus `receipt.json`.
fn build_mixed(
    ctx: &ReceiptContext,
    kind: ReceiptKind,
    prefix: &str,
    text: &str,
    data: &serde_json::Value,
    at: SystemTime,
) -> Option<Receipt> {
    if ctx.sender.trim().is_empty() {
        return None;
    }
    let rng = SystemRandom::new();
    let mut data = data.clone();
    data["state"] = json!(state(kind));
    data["evidence"] = json!(evidence(kind).map(RemEvent::as_str));
    data["audit"] = ctx
        .log
        .as_ref()
        .map_or(serde_json::Value::Null, LogRef::json);
    let mut json = serde_json::to_vec_pretty(&data).unwrap_or_default();
    json.push(b'\n');
    let parts = vec![
        text_part("text/plain; charset=utf-8", text.as_bytes(), None),
        text_part(
            "application/json; charset=utf-8; name=\"receipt.json\"",
            &json,
            Some("attachment; filename=\"receipt.json\""),
        ),
    ];
    Some(Receipt {
        kind,
        headers: top_headers(ctx, kind, prefix, at, &rng),
        entity: multipart(&rng, "multipart/mixed", &parts),
        at,
    })
}

/// The top-level headers every receipt carries.
fn top_headers(
    ctx: &ReceiptContext,
    kind: ReceiptKind,
    prefix: &str,
    at: SystemTime,
    rng: &SystemRandom,
) -> Vec<(&'static str, String)> {
    let subject = format!(
        "{prefix}: {}",
        ctx.original_subject.as_deref().unwrap_or("(no subject)")
    );
    let host = ascii_only(&ctx.gateway_hostname);
    let mut h = vec![
        ("From", address(&ctx.from_address)),
        ("To", address(&ctx.sender)),
        ("Subject", encode_header("Subject", &subject)),
        ("Date", rfc5322_date(at)),
        (
            "Message-ID",
            format!("<{}.{}@{host}>", kind.name(), random_hex(rng, 16)),
        ),
    ];
    if let Some(id) = ctx.original_message_id.as_deref().and_then(msg_id) {
        h.push(("In-Reply-To", id.clone()));
        h.push(("References", id));
    }
    h.push(("Auto-Submitted", "auto-replied".to_owned()));
    h.push(("X-Emla-Message-Id", ascii_only(&ctx.message_id)));
    h.push(("X-Emla-Receipt", kind.name().to_owned()));
    h
}

/// A multipart entity (header section included) of `parts`, with a fresh
/// boundary that occurs in none of them.
fn multipart(rng: &SystemRandom, content_type: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let boundary = loop {
        let b = format!("----emla-part-{}", random_hex(rng, 12));
        if parts
            .iter()
            .all(|p| memchr::memmem::find(p, b.as_bytes()).is_none())
        {
            break b;
        }
    };
    let mut out =
        format!("Content-Type: {content_type};\r\n boundary=\"{boundary}\"\r\n\r\n").into_bytes();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(p);
        if !p.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// A leaf part: 7bit when the text is ASCII with short lines, base64
/// otherwise (signed content must survive 7-bit transport unchanged).
fn text_part(content_type: &str, body: &[u8], disposition: Option<&str>) -> Vec<u8> {
    let body = crlf_text(body);
    let seven_bit = body.iter().all(|&b| b.is_ascii() && b != 0)
        && body.split(|&b| b == b'\n').all(|l| l.len() <= 998);
    let mut out = format!("Content-Type: {content_type}\r\n").into_bytes();
    if let Some(d) = disposition {
        out.extend_from_slice(format!("Content-Disposition: {d}\r\n").as_bytes());
    }
    if seven_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n\r\n");
        out.extend_from_slice(&body);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        out.extend_from_slice(&base64_lines(&body));
    }
    out
}

/// `data` with every line ending (CR, LF or CRLF) made CRLF.
fn crlf_text(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `s` on one line: control characters (CR and LF among them) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` on one line and in printable ASCII (others become `?`), for header
/// and delivery-status fields that must be ASCII.
fn ascii_only(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c,
            c if c.is_control() => ' ',
            _ => '?',
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// An address header value: printable ASCII without white space, `<>`,
/// `,` or `;` (so one address, never a list or a group).
fn address(s: &str) -> String {
    ascii_only(s)
        .chars()
        .filter(|c| !c.is_whitespace() && !"<>,;\"()".contains(*c))
        .collect()
}

/// A `msg-id` in angle brackets, or `None` when `s` holds none usable.
fn msg_id(s: &str) -> Option<String> {
    let t = s.trim();
    let inner = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    let ok = !inner.is_empty()
        && inner.len() <= 900
        && inner.contains('@')
        && inner
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\\\"(),;".contains(&b));
    ok.then(|| format!("<{inner}>"))
}

/// Whether `s` is an RFC 3463 status `class.subject.detail` of a failure
/// (class 4 or 5).
fn is_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// An unstructured header value (RFC 5322 §2.2.3): printable ASCII as is
/// (folded at spaces), anything else as RFC 2047 `B` encoded-words of at
/// most 75 characters, one per folded line. Controls become spaces.
pub fn encode_header(name: &str, value: &str) -> String {
    let value = one_line(value);
    let first_room = 76usize.saturating_sub(name.len() + 2);
    if value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return fold_ascii(&value, first_room);
    }
    // Encoded-words: "=?UTF-8?B?" + base64 + "?=" ≤ 75 → ≤ 45 bytes of text.
    const MAX_CHUNK: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > MAX_CHUNK {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Folds printable ASCII at spaces so that lines stay near 76 characters
/// (a word longer than a line is left whole).
fn fold_ascii(value: &str, first_room: usize) -> String {
    let mut out = String::new();
    let mut room = first_room;
    let mut line_len = 0;
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if line_len + 1 + word.len() > room && line_len > 0 {
                out.push_str("\r\n ");
                room = 75;
                line_len = 0;
                out.push_str(word);
                line_len += word.len();
                continue;
            }
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

/// An RFC 5322 date in UTC, e.g. `Tue, 01 Jul 2025 10:00:00 +0000`.
pub fn rfc5322_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".to_owned())
}

/// RFC 3339 in UTC.
fn rfc3339(at: SystemTime) -> String {
    EvalTime::from_unix(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx() -> ReceiptContext {
        ReceiptContext {
            gateway_hostname: "emla.example.org".into(),
            from_address: "postmaster@emla.example.org".into(),
            message_id: "01J9ZK3".into(),
            original_message_id: Some("<abc@mx.justice.aa.example>".into()),
            original_subject: Some("Request\r\nBcc: evil@x.example".into()),
            sender: "alice@justice.aa.example".into(),
            recipients: vec!["bob@justice.bb.example".into()],
            sha256: "00".repeat(32),
            received_at: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            signer: Some(SignerSummary {
                subject: "CN=Alice".into(),
                serial: "01".into(),
                sha256: "ff".repeat(32),
            }),
            route: "aa-to-bb".into(),
            policy_version: "ab".repeat(32),
            request_kind: Some("mla-request".into()),
            dsn: crate::envelope::Dsn::default(),
            log: Some(LogRef {
                kind: "message.accepted".into(),
                content_sha256: "cc".repeat(32),
                after_seq: 41,
                after_hash: "dd".repeat(32),
                checkpoint: Some((40, "ee".repeat(32))),
            }),
        }
    }

    fn text(r: &Receipt) -> String {
        String::from_utf8(r.entity.clone()).unwrap()
    }

    #[test]
    fn acceptance_headers_are_sanitized() {
        let r = acceptance_receipt(&ctx()).unwrap();
        assert_eq!(
            r.header("Subject"),
            Some("Accepted: Request  Bcc: evil@x.example")
        );
        assert_eq!(r.header("To"), Some("alice@justice.aa.example"));
        assert_eq!(r.header("In-Reply-To"), Some("<abc@mx.justice.aa.example>"));
        assert_eq!(r.header("References"), Some("<abc@mx.justice.aa.example>"));
        assert_eq!(r.header("Auto-Submitted"), Some("auto-replied"));
        assert_eq!(r.header("X-Emla-Message-Id"), Some("01J9ZK3"));
        assert_eq!(r.header("Date"), Some("Thu, 01 Jan 2026 00:00:00 +0000"));
        let mid = r.header("Message-ID").unwrap();
        assert!(mid.starts_with("<acceptance.") && mid.ends_with("@emla.example.org>"));
        for (_, v) in &r.headers {
            assert!(!v.replace("\r\n ", "").contains(['\r', '\n']), "{v:?}");
        }
        let t = text(&r);
        assert!(t.starts_with("Content-Type: multipart/mixed;"), "{t}");
        assert!(t.contains("application/json"), "{t}");
        assert!(!t.contains("\nBcc"), "{t}");
        assert!(!t.replace("\r\n", "").contains('\n'), "bare LF in {t}");
    }

    #[test]
    fn receipts_name_their_event_and_the_log() {
        let r = acceptance_receipt(&ctx()).unwrap();
        let t = text(&r);
        let v = receipt_json_of(&t);
        assert_eq!(v["evidence"], "SubmissionAcceptance");
        assert_eq!(v["audit"]["record"]["kind"], "message.accepted");
        assert_eq!(v["audit"]["record"]["content_sha256"], "cc".repeat(32));
        assert_eq!(v["audit"]["after"]["seq"], 41);
        assert_eq!(v["audit"]["checkpoint"]["seq"], 40);
        assert!(t.contains("appended after record 41"), "{t}");
        assert!(t.contains("signed at record 40"), "{t}");
        assert_eq!(v["request_kind"], "mla-request");
        assert!(t.contains("Request kind:   mla-request\r\n"), "{t}");
        let none = ReceiptContext {
            request_kind: None,
            ..ctx()
        };
        let t = text(&acceptance_receipt(&none).unwrap());
        assert!(receipt_json_of(&t)["request_kind"].is_null(), "{t}");
        assert!(!t.contains("Request kind:"), "{t}");

        let f = Failure {
            recipients: vec!["bob@justice.bb.example".into()],
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 no such user".into(),
            remote_mta: None,
            at: UNIX_EPOCH,
        };
        let t = text(&non_delivery_notice(&ctx(), &f, b"Subject: x\r\n\r\n").unwrap());
        for field in [
            "X-Emla-State: failed\r\nX-Emla-Evidence: RelayFailure\r\n".to_owned(),
            format!(
                "X-Emla-Audit-Record: message.accepted; content-sha256={}; after-seq=41; after-hash={}\r\n",
                "cc".repeat(32),
                "dd".repeat(32)
            ),
            format!("X-Emla-Audit-Checkpoint: seq=40; hash={}\r\n", "ee".repeat(32)),
        ] {
            assert!(t.contains(&field), "{field:?} missing: {t}");
        }
    }

    /// `receipt.json` of a receipt's text.
    fn receipt_json_of(t: &str) -> serde_json::Value {
        let start = t.find("{\r\n").unwrap();
        let end = t[start..].find("}\r\n--").unwrap() + start + 1;
        serde_json::from_str(&t[start..end]).unwrap()
    }

    #[test]
    fn a_delivery_receipt_says_relayed_with_the_next_hops_queue_id() {
        let mut outcome = DeliveryOutcome {
            recipients: vec!["bob@justice.bb.example".into()],
            next_hop: "mx.justice.bb.example:25".into(),
            reply_code: 250,
            reply_text: "2.0.0 Ok: queued as 4F2A1B3C".into(),
            queue_id: Some("4F2A1B3C".into()),
            tls: None,
            at: UNIX_EPOCH + Duration::from_secs(1_767_229_200),
        };
        let r = delivery_receipt(&ctx(), &outcome).unwrap();
        assert_eq!(
            r.header("Subject"),
            Some("Relayed: Request  Bcc: evil@x.example")
        );
        let t = text(&r);
        assert!(
            t.contains("relayed to mx.justice.bb.example:25, its queue id 4F2A1B3C"),
            "{t}"
        );
        let v = receipt_json_of(&t);
        assert_eq!(v["state"], "relayed");
        assert_eq!(v["next_hop_queue_id"], "4F2A1B3C");
        assert_eq!(v["reply_text"], "2.0.0 Ok: queued as 4F2A1B3C");
        assert_eq!(v["relayed_at"], v["delivered_at"]);

        outcome.queue_id = None;
        let t = text(&delivery_receipt(&ctx(), &outcome).unwrap());
        assert!(t.contains("(its reply names no queue id)"), "{t}");
        assert_eq!(
            receipt_json_of(&t)["next_hop_queue_id"],
            serde_json::Value::Null
        );
        let v = receipt_json_of(&text(&acceptance_receipt(&ctx()).unwrap()));
        assert_eq!(v["state"], "accepted");
        let v = receipt_json_of(&text(&rejection_notice(&ctx(), "unsigned", "d").unwrap()));
        assert_eq!(v["state"], "rejected");
    }

    #[test]
    fn null_sender_gets_nothing() {
        let c = ReceiptContext {
            sender: String::new(),
            ..ctx()
        };
        assert!(acceptance_receipt(&c).is_none());
        let f = Failure {
            recipients: vec![],
            status: "5.1.1".into(),
            diagnostic: String::new(),
            remote_mta: None,
            at: SystemTime::now(),
        };
        assert!(non_delivery_notice(&c, &f, b"").is_none());
    }

    #[test]
    fn non_ascii_subject_is_encoded() {
        let v = encode_header(
            "Subject",
            "Accepted: Demande d’entraide — ÄÖÜ très urgente, dossier n° 2026/123 à traiter",
        );
        assert!(v.is_ascii(), "{v}");
        for word in v.split("\r\n ") {
            assert!(word.starts_with("=?UTF-8?B?") && word.len() <= 75, "{word}");
        }
        let long = encode_header("Subject", &"word ".repeat(40));
        assert!(long.split("\r\n").all(|l| l.len() <= 78), "{long}");
    }

    #[test]
    fn message_ids_and_statuses() {
        assert_eq!(msg_id("abc@x"), Some("<abc@x>".into()));
        assert_eq!(msg_id(" <abc@x> "), Some("<abc@x>".into()));
        assert_eq!(msg_id("<a\r\nb@x>"), None);
        assert_eq!(msg_id("nothing"), None);
        assert!(is_status("5.1.1"));
        assert!(is_status("4.4.7"));
        assert!(!is_status("2.0.0"));
        assert!(!is_status("5.1"));
        assert!(!is_status("5.1.1\r\nX: y"));
    }

    #[test]
    fn dsn_has_three_parts() {
        let f = Failure {
            recipients: vec!["bob@justice.bb.example".into()],
            status: "bogus".into(),
            diagnostic: "550 5.1.1 no\r\nsuch user".into(),
            remote_mta: Some("mx.justice.bb.example".into()),
            at: UNIX_EPOCH + Duration::from_secs(1_767_229_200),
        };
        let mut c = ctx();
        c.dsn = crate::envelope::Dsn {
            envid: Some("mla-42".into()),
            recipients: vec![crate::envelope::RcptDsn {
                recipient: "Bob@justice.bb.example".into(),
                notify: None,
                orcpt: Some("rfc822;bob@justice.bb.example".into()),
            }],
            ..Default::default()
        };
        let r = non_delivery_notice(&c, &f, b"From: a@b\nSubject: x\n\nbody").unwrap();
        let t = text(&r);
        assert!(t.starts_with("Content-Type: multipart/report; report-type=delivery-status;"));
        for part in [
            "Original-Envelope-Id: mla-42\r\nReporting-MTA: dns; emla.example.org\r\n",
            "\r\n\r\nOriginal-Recipient: rfc822;bob@justice.bb.example\r\nFinal-Recipient: ",
            "Final-Recipient: rfc822; bob@justice.bb.example\r\n",
            "Status: 5.0.0\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 no  such user\r\n",
            "Remote-MTA: dns; mx.justice.bb.example\r\n",
            "text/rfc822-headers",
            "From: a@b\r\nSubject: x\r\n",
        ] {
            assert!(t.contains(part), "{part:?} missing: {t}");
        }
        assert!(!t.contains("body"), "{t}");
        assert_eq!(
            r.header("Subject"),
            Some("Undeliverable: Request  Bcc: evil@x.example")
        );
    }

    #[test]
    fn delay_notice_says_delayed_and_until_when() {
        let f = Failure {
            recipients: vec!["bob@justice.bb.example".into()],
            status: "5.1.1".into(),
            diagnostic: "451 4.3.0 try later".into(),
            remote_mta: None,
            at: UNIX_EPOCH + Duration::from_secs(1_767_229_200),
        };
        let until = UNIX_EPOCH + Duration::from_secs(1_767_232_800);
        let r = delay_notice(&ctx(), &f, until, b"Subject: x\r\n\r\n").unwrap();
        assert_eq!(r.kind, ReceiptKind::Delay);
        let t = text(&r);
        for part in [
            "Action: delayed\r\nStatus: 4.0.0\r\n",
            "Will-Retry-Until: Thu, 01 Jan 2026 02:00:00 +0000\r\n",
            "This is a warning only",
        ] {
            assert!(t.contains(part), "{part:?} missing: {t}");
        }
        assert!(!t.contains("Action: failed"), "{t}");
        assert_eq!(r.header("X-Emla-Receipt"), Some("delay"));
        let mut c = ctx();
        c.sender = String::new();
        assert!(delay_notice(&c, &f, until, b"").is_none());
    }
}
