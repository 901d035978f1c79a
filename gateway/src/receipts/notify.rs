//! Which receipts a sender gets, and how a signed receipt becomes a message
//! the gateway sends: a message row with its bytes, a queue entry to the
//! sender's own authority, and an audit record on the original message.
//! The caller puts all three in the same transaction as the decision that
//! caused them, so a receipt is never lost nor sent for something
//! unrecorded.
//!
//! No receipt goes to a null sender, answers an `Auto-Submitted` message or
//! a receipt (which has a null sender), or leaves without the gateway's
//! signing identity. Receipts go only to an authorized domain: the
//! accepted message's sender's, or for a rejection notice the authority
//! that owns the envelope sender's domain.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::build::{
    self as receipt, DeliveryOutcome, Failure, LogRef, Receipt, ReceiptContext, SignerSummary,
};
use crate::policy::{Authority, Lane, Policy, ReceiptKind};
use crate::reason::Reason;
use crate::smime::sign::{Detached, SignedMime, SigningIdentity};
use crate::smime::tsa::{Stamp, Tsa};
use crate::store::payload::{ReceiptQueued, Timestamp};
use crate::store::retention::LogAnchor;
use crate::store::{AuditEvent, MessageRecord, QueueEntry, Record, SessionInfo, Signer};

/// What the receipts of an accepted message repeat about it.
#[derive(Clone, Debug)]
pub struct Original<'a> {
    /// Its emla id.
    pub id: &'a str,
    /// When it was received (ms since the epoch).
    pub received_at_ms: i64,
    /// SHA-256 of its bytes, hex.
    pub sha256: &'a str,
    /// MAIL FROM: the receipts' recipient.
    pub sender: &'a str,
    /// RCPT TO.
    pub recipients: &'a [String],
    /// Its `Subject:`.
    pub subject: Option<&'a str>,
    /// Its `Message-ID:`.
    pub message_id: Option<&'a str>,
    /// Its signers as recorded (`emla verify --json`'s `signers`).
    pub signers: &'a Value,
    /// The sender's authority.
    pub sender_authority: Option<&'a str>,
    /// The route(s) it took.
    pub route: &'a str,
    /// The policy version it was judged under.
    pub policy_version: &'a str,
    /// Its case reference.
    pub case_ref: Option<&'a str>,
    /// The request kind it declared (`[[kind]]` id).
    pub request_kind: Option<&'a str>,
    /// Whether it is itself an automatic message (`Auto-Submitted:` other
    /// than `no`).
    pub auto_submitted: bool,
    /// The DSN parameters its client gave, if any.
    pub dsn: Option<&'a crate::envelope::Dsn>,
    /// The audit record of the event its receipts report ([`log_ref`]).
    pub log: Option<&'a LogRef>,
}

/// How a receipt names `event`'s record, recorded in the same transaction
/// as the receipt, when the log stood at `anchor`.
pub fn log_ref(event: &AuditEvent, anchor: &LogAnchor) -> LogRef {
    LogRef {
        kind: event.kind.as_str().to_owned(),
        content_sha256: event.content_hash(),
        after_seq: anchor.head_seq,
        after_hash: anchor.head_hash.clone(),
        checkpoint: anchor.checkpoint.clone(),
    }
}

/// Whether a receipt of `kind` may be due for a message from `sender` of
/// authority `sender_authority` (the caller then reads the log's anchor).
pub fn may_be_due(
    policy: &Policy,
    sender: &str,
    sender_authority: Option<&str>,
    kind: ReceiptKind,
    asked: bool,
) -> bool {
    !sender.is_empty()
        && policy.gateway.signing.is_some()
        && policy
            .authorities
            .iter()
            .find(|a| Some(a.id.as_str()) == sender_authority)
            .is_some_and(|a| asked || a.receipts.contains(kind))
}

/// A signed receipt ready to record, once its signature has a timestamp
/// (or not): see [`Outgoing::stamp`].
pub struct Outgoing {
    signed: SignedMime,
    message: MessageRecord,
    queue: QueueEntry,
    original: String,
    queued: ReceiptQueued,
}

impl Outgoing {
    /// Asks `tsa` (when configured) for a token over the signature: at
    /// most the TSA's timeout, so a receipt is never held back for long.
    pub async fn stamp(&self, tsa: Option<&Tsa>) -> Option<Stamp> {
        stamp(tsa, self.signed.signature()).await
    }

    /// Its parts: the signed message still open to a token, its row, queue
    /// entry, the original's id and its `receipt.queued` record.
    pub fn into_parts(self) -> (SignedMime, MessageRecord, QueueEntry, String, ReceiptQueued) {
        (
            self.signed,
            self.message,
            self.queue,
            self.original,
            self.queued,
        )
    }

    /// Adds the receipt's row, queue entry and audit record to `record`,
    /// with `stamp`'s token in its signature when granted, and what became
    /// of the timestamp in the audit record.
    pub fn add_to(self, record: &mut Record, stamp: Option<&Stamp>) {
        crate::metrics::with(|m| m.receipt(&self.queued.receipt));
        let Outgoing {
            signed,
            mut message,
            queue,
            original,
            mut queued,
        } = self;
        let bytes = signed.to_message(stamp.and_then(Stamp::token));
        message.sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        message.size = bytes.len() as u64;
        message.body = Some(bytes.into());
        queued.sha256 = message.sha256.clone();
        queued.timestamp = stamp.map(timestamp_record);
        record.outgoing.push(message);
        record.queue.push(queue);
        record.events.push(AuditEvent::of(Some(original), &queued));
    }
}

/// A token over `signature`'s value from `tsa`, if one is configured.
pub async fn stamp(tsa: Option<&Tsa>, signature: &Detached) -> Option<Stamp> {
    let tsa = tsa?;
    let stamp = tsa.stamp(signature.signature_value()).await;
    match &stamp {
        Stamp::Granted(_) => {}
        Stamp::Unavailable(e) => {
            tracing::warn!(tsa = tsa.url(), error = %e, "no timestamp: the TSA is unavailable")
        }
        Stamp::Refused(e) => {
            tracing::error!(tsa = tsa.url(), error = %e, "no timestamp: the TSA's answer is refused")
        }
    }
    Some(stamp)
}

/// What the audit record says of a timestamp.
pub fn timestamp_record(stamp: &Stamp) -> Timestamp {
    match stamp {
        Stamp::Granted(t) => Timestamp {
            status: "granted".into(),
            gen_time: Some(t.gen_time.clone()),
            tsa: Some(t.tsa.clone()),
            serial: Some(t.serial.clone()),
            sha256: Some(hex::encode(crate::smime::tsa::sha256(&t.der))),
            ..Timestamp::default()
        },
        Stamp::Unavailable(e) => Timestamp {
            status: "unavailable".into(),
            detail: Some(e.clone()),
            ..Timestamp::default()
        },
        Stamp::Refused(e) => Timestamp {
            status: "refused".into(),
            detail: Some(e.clone()),
            ..Timestamp::default()
        },
    }
}

/// The acceptance receipt, if the sender's authority wants it.
pub fn acceptance(policy: &Policy, o: &Original<'_>) -> Option<Outgoing> {
    notice(
        policy,
        o,
        ReceiptKind::Acceptance,
        false,
        receipt::acceptance_receipt,
    )
}

/// The delivery receipt for `outcome` (the next hop's `250`: relayed), if
/// wanted, or `asked` for (DSN `NOTIFY=SUCCESS`).
pub fn delivery(
    policy: &Policy,
    o: &Original<'_>,
    outcome: &DeliveryOutcome,
    asked: bool,
) -> Option<Outgoing> {
    notice(policy, o, ReceiptKind::Delivery, asked, |ctx| {
        receipt::delivery_receipt(ctx, outcome)
    })
}

/// The RFC 3464 report for `report`'s recipients, if wanted or `asked` for
/// (DSN `NOTIFY=FAILURE`, `NOTIFY=DELAY`): a non-delivery notice when
/// `retry_until` is `None`, else a delay notice (delivery is tried until
/// then). `original` is the message as received (its header section is
/// quoted).
pub fn status_report(
    policy: &Policy,
    o: &Original<'_>,
    report: &Failure,
    retry_until: Option<SystemTime>,
    original: &[u8],
    asked: bool,
) -> Option<Outgoing> {
    let headers = &original[..crate::smime::mime::header_len(original)];
    let kind = match retry_until {
        None => ReceiptKind::Failure,
        Some(_) => ReceiptKind::Delay,
    };
    notice(policy, o, kind, asked, |ctx| match retry_until {
        None => receipt::non_delivery_notice(ctx, report, headers),
        Some(until) => receipt::delay_notice(ctx, report, until, headers),
    })
}

/// The non-acceptance notice of a message refused for `reason`, if its
/// sender's authority (`o.sender_authority`, which the caller takes from
/// the envelope sender's domain) lists `rejection`.
pub fn rejection(
    policy: &Policy,
    o: &Original<'_>,
    reason: Reason,
    detail: &str,
) -> Option<Outgoing> {
    notice(policy, o, ReceiptKind::Rejection, false, |ctx| {
        receipt::rejection_notice(ctx, reason.as_str(), detail)
    })
}

/// The receipt of `kind` that `build` makes, signed and ready to record,
/// when it is due ([`wanted`]).
fn notice(
    policy: &Policy,
    o: &Original<'_>,
    kind: ReceiptKind,
    asked: bool,
    build: impl FnOnce(&ReceiptContext) -> Option<Receipt>,
) -> Option<Outgoing> {
    let (authority, identity) = wanted(policy, o, kind, asked)?;
    let r = build(&context(policy, o))?;
    Some(outgoing(policy, authority, identity, o, &r))
}

/// Whether `raw`'s header section says it was sent automatically.
pub fn is_auto_submitted(raw: &[u8]) -> bool {
    mail_parser::MessageParser::new()
        .parse_headers(raw)
        .and_then(|m| {
            m.header_raw("Auto-Submitted")
                .map(|v| !v.trim().eq_ignore_ascii_case("no"))
        })
        .unwrap_or(false)
}

/// A message the gateway itself sends to `to`, an address of `authority`:
/// its row (holding `bytes`, signed, whose header fields are `headers`)
/// and its queue entry to that authority's next hop, on route `route`. It
/// goes from a null reverse-path, so nothing ever answers it.
#[allow(clippy::too_many_arguments)]
pub fn gateway_message(
    policy: &Policy,
    authority: &Authority,
    to: &str,
    bytes: Vec<u8>,
    headers: &[(&'static str, String)],
    detail: String,
    route: &str,
    case_ref: Option<&str>,
) -> (MessageRecord, QueueEntry) {
    let id = crate::store::new_message_id(&policy.gateway.hostname);
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let message = MessageRecord {
        id: id.clone(),
        received_at_ms: crate::store::now_ms(),
        sha256,
        size: bytes.len() as u64,
        session: SessionInfo {
            client_ip: "local".into(),
            helo: policy.gateway.hostname.clone(),
            tls_version: None,
            tls_cipher: None,
        },
        mail_from: String::new(),
        rcpt_to: vec![to.to_owned()],
        headers: crate::store::MessageHeaders {
            header_from: header("From"),
            header_to: header("To"),
            subject: header("Subject"),
            message_id: header("Message-ID"),
            date: header("Date"),
        },
        reason: Reason::Ok,
        detail,
        signers: json!([]),
        authority: Some(authority.id.clone()),
        policy_version: policy.version.clone(),
        case_ref: case_ref.map(str::to_owned),
        kind: None,
        signature_keys: Vec::new(),
        body: Some(bytes.into()),
        dsn: None,
    };
    let queue = QueueEntry {
        message_id: id,
        next_hop: format!("{}:{}", authority.next_hop.host, authority.next_hop.port),
        authority: authority.id.clone(),
        route: route.to_owned(),
        lane: Lane::Normal,
        recipients: vec![to.to_owned()],
    };
    (message, queue)
}

/// The first recorded signer, as receipts name it.
fn signer(signers: &Value) -> Option<SignerSummary> {
    let s: Signer = serde_json::from_value(signers.as_array()?.first()?.clone()).ok()?;
    Some(SignerSummary {
        subject: s.subject?,
        serial: s.serial?,
        sha256: s.sha256?,
    })
}

/// The sender's authority and the signing identity, when a receipt of
/// `kind` is due: the authority wants it, or the client `asked` for it.
fn wanted<'p>(
    policy: &'p Policy,
    o: &Original<'_>,
    kind: ReceiptKind,
    asked: bool,
) -> Option<(&'p Authority, &'p Arc<SigningIdentity>)> {
    if o.auto_submitted || o.sender.is_empty() {
        return None;
    }
    let identity = policy.gateway.signing.as_ref()?;
    let authority = policy
        .authorities
        .iter()
        .find(|a| Some(a.id.as_str()) == o.sender_authority)?;
    (asked || authority.receipts.contains(kind)).then_some((authority, identity))
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn context(policy: &Policy, o: &Original<'_>) -> ReceiptContext {
    ReceiptContext {
        gateway_hostname: policy.gateway.hostname.clone(),
        from_address: policy.gateway.postmaster.clone(),
        message_id: o.id.to_owned(),
        original_message_id: o.message_id.map(str::to_owned),
        original_subject: o.subject.map(str::to_owned),
        sender: o.sender.to_owned(),
        recipients: o.recipients.to_vec(),
        sha256: o.sha256.to_owned(),
        received_at: at(o.received_at_ms),
        signer: signer(o.signers),
        route: o.route.to_owned(),
        policy_version: o.policy_version.to_owned(),
        request_kind: o.request_kind.map(str::to_owned),
        dsn: o.dsn.cloned().unwrap_or_default(),
        log: o.log.cloned(),
    }
}

fn outgoing(
    policy: &Policy,
    authority: &Authority,
    identity: &SigningIdentity,
    o: &Original<'_>,
    r: &Receipt,
) -> Outgoing {
    let kind = r.kind.name();
    let signed = r.sign_parts(identity);
    let (message, queue) = gateway_message(
        policy,
        authority,
        o.sender,
        signed.to_message(None),
        &r.headers,
        format!("{kind} receipt for {}", o.id),
        "receipt",
        o.case_ref,
    );
    let queued = ReceiptQueued {
        receipt: kind.to_owned(),
        receipt_id: message.id.clone(),
        to: o.sender.to_owned(),
        sha256: message.sha256.clone(),
        signed_by: identity.subject().to_owned(),
        timestamp: None,
    };
    Outgoing {
        signed,
        message,
        queue,
        original: o.id.to_owned(),
        queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_submitted() {
        assert!(is_auto_submitted(
            b"Auto-Submitted: auto-replied\r\nSubject: x\r\n\r\nbody"
        ));
        assert!(!is_auto_submitted(b"Auto-Submitted: no\r\n\r\nbody"));
        assert!(!is_auto_submitted(b"Subject: x\r\n\r\nbody"));
    }

    #[test]
    fn signer_from_the_recorded_report() {
        let s = signer(&json!([{"subject": "CN=a", "serial": "01", "sha256": "ab"}])).unwrap();
        assert_eq!((s.subject.as_str(), s.serial.as_str()), ("CN=a", "01"));
        assert!(signer(&json!([])).is_none());
    }
}
