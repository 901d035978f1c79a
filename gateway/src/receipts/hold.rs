//! `[evidence] tsa_unavailable = "wait"`: a receipt whose signature got no
//! timestamp token is not sent unstamped. It is held in the database
//! (`receipt_holds`, in the transaction of the decision that issued it, so
//! a restart loses nothing) with a `receipt.held` record, and a job asks
//! the TSA again with exponential backoff. Once a token is granted the
//! token goes into the signature (an unsigned attribute: the signature is
//! unchanged) and the receipt is queued; after `tsa_wait_max_secs` it is
//! queued without one. Either way its `receipt.queued` record says so
//! (`timestamp`: status, `tries`, `waited_secs`), in the transaction that
//! removes the hold.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use super::notify::{timestamp_record, Outgoing};
use crate::config::OnUnavailable;
use crate::smime::tsa::{self, Stamp, Tsa};
use crate::store::holds::{Hold, HoldChange};
use crate::store::payload::{ReceiptHeld, ReceiptQueued};
use crate::store::{
    AuditEvent, MessageHeaders, MessageRecord, QueueEntry, Record, SessionInfo, Store,
};

/// Held receipts handled in one round.
const PER_ROUND: i64 = 20;
/// How long a claimed hold is this instance's (one TSA request and the
/// write that follows take far less).
const CLAIM: Duration = Duration::from_secs(120);

/// Asks `tsa` for a token over `o`'s signature, then adds `o` to `record`:
/// queued (with the token, or without one when the TSA gave none and
/// `tsa_unavailable` is `send`), or held for a later token (`wait`).
pub async fn stamp_or_hold(o: Outgoing, record: &mut Record, tsa: Option<&Tsa>) {
    let stamp = o.stamp(tsa).await;
    match (tsa.map(Tsa::unavailable), &stamp) {
        (Some(OnUnavailable::Wait { max, retry }), Some(s)) if s.token().is_none() => {
            hold(o, record, s, max, retry)
        }
        _ => o.add_to(record, stamp.as_ref()),
    }
}

/// What a held receipt becomes once sent: its row (but the bytes), its
/// queue entry and its `receipt.queued` record.
#[derive(Serialize, Deserialize)]
struct Held {
    row: Row,
    queue: QueueEntry,
    queued: ReceiptQueued,
}

/// The fields of a receipt's message row other than its bytes.
#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    received_at_ms: i64,
    session: SessionInfo,
    rcpt_to: Vec<String>,
    headers: MessageHeaders,
    detail: String,
    authority: Option<String>,
    policy_version: String,
    case_ref: Option<String>,
}

impl Row {
    fn of(m: &MessageRecord) -> Row {
        Row {
            id: m.id.clone(),
            received_at_ms: m.received_at_ms,
            session: m.session.clone(),
            rcpt_to: m.rcpt_to.clone(),
            headers: m.headers.clone(),
            detail: m.detail.clone(),
            authority: m.authority.clone(),
            policy_version: m.policy_version.clone(),
            case_ref: m.case_ref.clone(),
        }
    }

    /// The row of a gateway message (null sender, as
    /// [`gateway_message`](super::notify::gateway_message) makes it).
    fn into_record(self, bytes: Vec<u8>) -> MessageRecord {
        MessageRecord {
            id: self.id,
            received_at_ms: self.received_at_ms,
            sha256: hex::encode(tsa::sha256(&bytes)),
            size: bytes.len() as u64,
            session: self.session,
            mail_from: String::new(),
            rcpt_to: self.rcpt_to,
            headers: self.headers,
            reason: crate::reason::Reason::Ok,
            detail: self.detail,
            signers: serde_json::json!([]),
            authority: self.authority,
            policy_version: self.policy_version,
            case_ref: self.case_ref,
            kind: None,
            signature_keys: Vec::new(),
            body: Some(bytes.into()),
            dsn: None,
        }
    }
}

/// Holds `o` in `record`'s transaction: its first try failed with `stamp`.
fn hold(o: Outgoing, record: &mut Record, stamp: &Stamp, max: Duration, retry: Duration) {
    let (signed, message, queue, original, queued) = o.into_parts();
    crate::metrics::with(|m| m.receipt(&queued.receipt));
    let now = crate::store::now_ms();
    let deadline = now.saturating_add(ms(max));
    let next = now.saturating_add(ms(backoff(retry, 1))).min(deadline);
    let held = Held {
        row: Row::of(&message),
        queue,
        queued: queued.clone(),
    };
    record.events.push(AuditEvent::of(
        Some(original.clone()),
        &held_record(&queued, 1, next, deadline, stamp),
    ));
    record.holds.push(HoldChange::Insert(Hold {
        receipt_id: message.id,
        original_id: original,
        held_at_ms: now,
        deadline_ms: deadline,
        next_try_ms: next,
        tries: 1,
        body: signed.to_message(None),
        receipt: serde_json::to_string(&held).unwrap_or_default(),
    }));
}

fn held_record(q: &ReceiptQueued, tries: i64, next: i64, deadline: i64, s: &Stamp) -> ReceiptHeld {
    ReceiptHeld {
        receipt: q.receipt.clone(),
        receipt_id: q.receipt_id.clone(),
        to: q.to.clone(),
        tries,
        next_try_at: crate::text::time_rfc3339(next),
        deadline: crate::text::time_rfc3339(deadline),
        timestamp: timestamp_record(s),
    }
}

/// The wait after the `tries`-th failure: `retry`, doubled each time, at
/// most 16 times `retry`.
fn backoff(retry: Duration, tries: i64) -> Duration {
    let n = u32::try_from(tries).unwrap_or(u32::MAX);
    crate::backoff::exponential(retry, retry.saturating_mul(16), n)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Starts the job that asks the TSA again for held receipts (`emla
/// serve`, with `tsa_unavailable = "wait"`); `wake` is the relay's.
pub fn spawn(
    store: Store,
    tsa: Option<Tsa>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let tsa = tsa?;
    let OnUnavailable::Wait { retry, .. } = tsa.unavailable() else {
        return None;
    };
    let every = retry.min(Duration::from_secs(5));
    Some(tokio::spawn(async move {
        while crate::clock::tick(every, &mut stop).await {
            if round(&store, &tsa, retry).await > 0 {
                wake.notify_one();
            }
        }
    }))
}

/// One round over the due holds; returns how many receipts were queued.
pub async fn round(store: &Store, tsa: &Tsa, retry: Duration) -> usize {
    let now = crate::store::now_ms();
    let due = match store.due_holds(now, PER_ROUND).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "held receipts: cannot read them");
            return 0;
        }
    };
    let mut queued = 0;
    for h in due {
        match store.claim_hold(&h, now.saturating_add(ms(CLAIM))).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(error = %e, "held receipts: cannot claim one");
                return queued;
            }
        }
        let id = h.receipt_id.clone();
        match try_once(tsa, &h, retry).await {
            Ok((record, sent)) => match store.record(record).await {
                Ok(()) => queued += usize::from(sent),
                // The claim runs out and the hold is tried again.
                Err(e) => tracing::error!(receipt = %id, error = %e, "held receipt: not recorded"),
            },
            Err(e) => tracing::error!(receipt = %id, error = %e, "held receipt: unusable"),
        }
    }
    queued
}

/// Asks the TSA once for `h`: the record that queues it (with the token,
/// or at its deadline without), or that holds it until the next try; and
/// whether it is queued.
async fn try_once(tsa: &Tsa, h: &Hold, retry: Duration) -> Result<(Record, bool), String> {
    let held: Held =
        serde_json::from_str(&h.receipt).map_err(|e| format!("the held receipt's data: {e}"))?;
    let cms = signature_of(&h.body)?;
    let stamp = tsa.stamp(&tsa::signature_value_of(&cms)?).await;
    let now = crate::store::now_ms();
    let tries = h.tries + i64::from(stamp.token().is_none());
    let bytes = match &stamp {
        Stamp::Granted(t) => with_token(&h.body, &cms, &t.der)?,
        _ if now >= h.deadline_ms => h.body.clone(),
        _ => {
            let next = now.saturating_add(ms(backoff(retry, tries)));
            let next = next.min(h.deadline_ms);
            let event = held_record(&held.queued, tries, next, h.deadline_ms, &stamp);
            let record = Record {
                events: vec![AuditEvent::of(Some(h.original_id.clone()), &event)],
                holds: vec![HoldChange::Retry {
                    receipt_id: h.receipt_id.clone(),
                    tries,
                    next_try_ms: next,
                }],
                ..Record::default()
            };
            return Ok((record, false));
        }
    };
    let message = held.row.into_record(bytes);
    let mut queued = held.queued;
    queued.sha256 = message.sha256.clone();
    let mut ts = timestamp_record(&stamp);
    if stamp.token().is_none() {
        ts.detail = Some(format!(
            "no token within tsa_wait_max_secs; sent without one: {}",
            ts.detail.unwrap_or_default()
        ));
    }
    ts.tries = Some(tries);
    ts.waited_secs = Some(u64::try_from((now - h.held_at_ms) / 1000).unwrap_or(0));
    queued.timestamp = Some(ts);
    let record = Record {
        events: vec![AuditEvent::of(Some(h.original_id.clone()), &queued)],
        outgoing: vec![message],
        queue: vec![held.queue],
        holds: vec![HoldChange::Done(h.receipt_id.clone())],
        ..Record::default()
    };
    Ok((record, true))
}

/// The CMS signature (DER) of a signed receipt.
fn signature_of(body: &[u8]) -> Result<Vec<u8>, String> {
    let top = crate::smime::mime::Entity::parse(body).map_err(|e| e.to_string())?;
    let c = crate::smime::extract(&top).map_err(|e| e.to_string())?;
    Ok(c.cms_der)
}

/// `body` with `token` added to its signature `cms`: the signature part's
/// base64 replaced, nothing else changed.
fn with_token(body: &[u8], cms: &[u8], token: &[u8]) -> Result<Vec<u8>, String> {
    use crate::smime::sign::base64_lines;
    let old = base64_lines(cms);
    let new = base64_lines(&tsa::add_token(cms, token)?);
    let at = memchr::memmem::find(body, &old)
        .ok_or("the held receipt's signature is not where it was written")?;
    Ok([&body[..at], &new, &body[at + old.len()..]].concat())
}
