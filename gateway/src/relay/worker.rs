//! The relay worker inside `emla serve`: claims due queue entries, delivers
//! them per next hop over reused connections, and records every attempt
//! (audit record and queue change in one transaction).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::deliver::{ConnectError, Connection, Message, Outgoing, RcptOutcome, TlsReport};
use super::encrypt::{self, Prepared};
use super::pool::Pool;
use crate::config::RelayConfig;
use crate::policy::{CurrentPolicy, NextHop, Policy};
use crate::receipts::build::{DeliveryOutcome, Failure, LogRef};
use crate::receipts::duty;
use crate::receipts::notify::{self, Original};
use crate::store::{
    Attempt as AttemptData, AttemptNote, AuditEvent, AuditKind, Claimed, DeliveryState,
    QueueUpdate, RecipientOutcome, Record, Store, StoredBody,
};

/// Most entries claimed at once.
const CLAIM_BATCH: usize = 100;

/// What the worker needs from the gateway.
pub struct Worker {
    /// This instance's part in delivery (`[relay]`).
    pub config: RelayConfig,
    /// How long deliveries in progress may finish on shutdown.
    pub shutdown_grace: Duration,
    /// The queue and the audit log.
    pub store: Store,
    /// The policy in force (next hops, retries, lifetimes).
    pub policy: Arc<CurrentPolicy>,
    /// Notified when something was queued.
    pub wake: Arc<Notify>,
    /// The TSA that timestamps delivery and failure receipts (`[evidence]`).
    pub tsa: Option<crate::smime::tsa::Tsa>,
    /// Duty alerts sent per authority (shared with intake).
    pub duty: Arc<crate::receipts::limit::Limiter>,
}

/// Starts the worker; it stops claiming when `stop` turns true, lets the
/// deliveries in progress finish within the shutdown grace, and gives back
/// what it still holds.
pub fn spawn(worker: Worker, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(Arc::new(worker), stop))
}

async fn run(gw: Arc<Worker>, mut stop: watch::Receiver<bool>) {
    let cfg = gw.config.clone();
    match gw.store.release_claims(&cfg.instance_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "relay: took back claims from before a restart"),
        Err(e) => tracing::warn!(error = %e, "relay: cannot release old claims"),
    }
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight));
    let pool = Arc::new(Pool::default());
    let mut per_hop: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let lease_ms = i64::try_from(cfg.lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        while tasks.try_join_next().is_some() {}
        for c in pool.stale(false) {
            tokio::spawn(c.quit());
        }
        if *stop.borrow() {
            break;
        }
        let free = slots.available_permits().min(CLAIM_BATCH);
        let mut full = false;
        if free > 0 {
            match gw
                .store
                .claim(&cfg.instance_id, lease_ms, free as i64)
                .await
            {
                Ok(batch) => {
                    full = batch.len() == free;
                    let policy = gw.policy.get();
                    for (hop, entries) in by_hop(&policy, batch) {
                        let limit = policy.relay.max_connections_per_destination;
                        let hop_slots = per_hop
                            .entry(hop.key())
                            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                            .clone();
                        for chunk in split(entries, limit) {
                            // Claimed no more than `free`: the permits are there.
                            let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                            let Ok(slot) = slots.clone().try_acquire_many_owned(n) else {
                                continue;
                            };
                            let (gw, pool, hop_slots, hop) =
                                (gw.clone(), pool.clone(), hop_slots.clone(), hop.clone());
                            tasks.spawn(async move {
                                let _slot = slot;
                                let _hop = hop_slots.acquire_owned().await;
                                deliver_chunk(&gw, &pool, &hop, chunk).await;
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "relay: cannot claim queue entries"),
            }
        }
        if full {
            tokio::task::yield_now().await;
            continue;
        }
        // A finished delivery frees in-flight slots: claim again at once.
        tokio::select! {
            _ = gw.wake.notified() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = stop.changed() => {}
        }
    }
    let grace = gw.shutdown_grace;
    if !tasks.is_empty() {
        tracing::info!(
            deliveries = tasks.len(),
            "relay: waiting for deliveries in progress"
        );
        let finish = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, finish).await.is_err() {
            tasks.abort_all();
        }
    }
    for c in pool.stale(true) {
        c.quit().await;
    }
    if let Err(e) = gw.store.release_claims(&cfg.instance_id).await {
        tracing::warn!(error = %e, "relay: cannot release claims at shutdown");
    }
}

/// A next hop as the current policy describes it.
#[derive(Clone, Debug)]
enum Hop {
    Known(NextHop),
    /// The entry's authority is no longer in the policy.
    Unknown(String),
}

impl Hop {
    fn key(&self) -> String {
        match self {
            Hop::Known(h) => format!("{}:{}", h.host, h.port),
            Hop::Unknown(a) => format!("unknown authority {a}"),
        }
    }

    /// Sessions are reused only under the same TLS requirement.
    fn pool_key(&self) -> String {
        match self {
            Hop::Known(h) => format!("{}:{} {:?}", h.host, h.port, h.tls),
            Hop::Unknown(_) => self.key(),
        }
    }
}

fn by_hop(policy: &Policy, batch: Vec<Claimed>) -> Vec<(Hop, Vec<Claimed>)> {
    let mut groups: Vec<(Hop, Vec<Claimed>)> = Vec::new();
    for c in batch {
        let hop = match policy
            .authorities
            .iter()
            .find(|a| a.id == c.delivery.authority)
        {
            Some(a) => Hop::Known(a.next_hop.clone()),
            None => Hop::Unknown(c.delivery.authority.clone()),
        };
        match groups.iter_mut().find(|(h, _)| h.key() == hop.key()) {
            Some((_, v)) => v.push(c),
            None => groups.push((hop, vec![c])),
        }
    }
    groups
}

/// At most `n` chunks, round-robin, so each gets its own connection.
fn split<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let n = n.clamp(1, items.len().max(1));
    let mut chunks: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        chunks[i % n].push(item);
    }
    chunks.retain(|c| !c.is_empty());
    chunks
}

/// Delivers `entries` to `hop` one after the other over one connection,
/// opening a new one when the last broke.
async fn deliver_chunk(gw: &Worker, pool: &Pool, hop: &Hop, entries: Vec<Claimed>) {
    let policy = gw.policy.get();
    let timeout = gw.config.transaction_timeout;
    let mut conn: Option<Connection> = None;
    while let Some(mut c) = pool.take(&hop.pool_key()) {
        if c.alive().await {
            conn = Some(c);
            break;
        }
    }
    for entry in entries {
        let mut attempt = Attempt {
            entry: &entry,
            hop: hop.key(),
            tls: None,
            original: None,
            encryption: None,
            started: Instant::now(),
        };
        let next_hop = match hop {
            Hop::Known(h) => h,
            Hop::Unknown(a) => {
                let why = format!("authority {a} is no longer in the policy");
                record(gw, &policy, &attempt, deferred_all(&entry, None, &why)).await;
                continue;
            }
        };
        let (body, head) = match stored(gw, &entry.sha256, &policy).await {
            Ok(body) => body,
            Err(e) => {
                let why = format!("cannot read the stored message: {e}");
                record(gw, &policy, &attempt, deferred_all(&entry, None, &why)).await;
                continue;
            }
        };
        attempt.original = Some(match (&head, &body) {
            (Some(head), _) => head.as_slice(),
            (None, StoredBody::Bytes(b)) => b.as_slice(),
            (None, StoredBody::File(_)) => &[][..],
        });
        let prepared = outbound(gw, &policy, &entry, &body).await;
        attempt.encryption = prepared.report();
        let message = match (&prepared, &body) {
            (Prepared::Encrypted { message, .. }, _) => Message::Bytes(message),
            (Prepared::Defer(why), _) => {
                record(gw, &policy, &attempt, deferred_all(&entry, None, why)).await;
                continue;
            }
            (Prepared::Clear(_), StoredBody::Bytes(b)) => Message::Bytes(b),
            (Prepared::Clear(_), StoredBody::File(r)) => Message::File(&r.file, r.len),
        };
        if conn.as_ref().is_none_or(|c| !c.usable()) {
            match Connection::open(
                next_hop,
                &policy.gateway.hostname,
                policy.relay.connect_timeout,
            )
            .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    record(gw, &policy, &attempt, connect_failed(&entry, &e)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let trace = received_field(&policy, &entry);
        let mail = Outgoing {
            from: &entry.mail_from,
            recipients: &entry.delivery.recipients,
            dsn: entry.dsn.as_ref(),
            trace: &trace,
            message,
        };
        let outcomes = c.send(&mail, timeout).await;
        attempt.tls = Some(c.tls.clone());
        record(gw, &policy, &attempt, outcomes).await;
    }
    if let Some(c) = conn {
        let max = policy.relay.max_connections_per_destination;
        if let Some(extra) = pool.put(&hop.pool_key(), c, max) {
            extra.quit().await;
        }
    }
}

/// The stored message of a queue entry, with its header section when it
/// is streamed from its file (what notices about it need of it).
async fn stored(
    gw: &Worker,
    sha256: &str,
    policy: &crate::policy::Policy,
) -> Result<(StoredBody, Option<Vec<u8>>), crate::store::StoreError> {
    let body = gw.store.open_stored_body(sha256).await?;
    let head = match &body {
        StoredBody::Bytes(_) => None,
        StoredBody::File(r) => {
            let max = policy.limits.max_header_size;
            Some(crate::smime::mime::read_head(&r.file, max).map_err(|e| {
                crate::store::StoreError::Unavailable(format!("reading the stored message: {e}"))
            })?)
        }
    };
    Ok((body, head))
}

/// One delivery attempt of one queue entry.
struct Attempt<'a> {
    entry: &'a Claimed,
    /// The next hop as logged and audited.
    hop: String,
    /// What the connection's TLS was, if one was made.
    tls: Option<TlsReport>,
    /// The message as stored, once read.
    original: Option<&'a [u8]>,
    /// How it was encrypted, when its authority has `encrypt` set.
    encryption: Option<crate::store::AttemptEncryption>,
    started: Instant,
}

/// What is sent of `body` for `entry`: encrypted when the recipients'
/// authority says so (a body streamed from its file is then read whole).
async fn outbound(gw: &Worker, policy: &Policy, entry: &Claimed, body: &StoredBody) -> Prepared {
    let Some(authority) = policy
        .authorities
        .iter()
        .find(|a| a.id == entry.delivery.authority)
        .filter(|a| a.encryption.mode != crate::policy::EncryptMode::Never)
    else {
        return Prepared::Clear(None);
    };
    let whole;
    let body = match body {
        StoredBody::Bytes(b) => b.as_slice(),
        StoredBody::File(_) => match gw.store.read_body(&entry.sha256).await {
            Ok(b) => {
                whole = b;
                whole.as_slice()
            }
            Err(e) => {
                return Prepared::Defer(format!(
                    "cannot read the stored message to encrypt it: {e}"
                ))
            }
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    encrypt::prepare(&authority.encryption, body, now)
}

fn deferred_all(entry: &Claimed, code: Option<u16>, why: &str) -> Vec<RcptOutcome> {
    entry
        .delivery
        .recipients
        .iter()
        .map(|_| RcptOutcome::Deferred {
            code,
            reply: why.to_owned(),
        })
        .collect()
}

fn connect_failed(entry: &Claimed, e: &ConnectError) -> Vec<RcptOutcome> {
    match (e.permanent, e.code) {
        (true, Some(code)) => entry
            .delivery
            .recipients
            .iter()
            .map(|_| RcptOutcome::Refused {
                code,
                reply: e.reason.clone(),
            })
            .collect(),
        _ => deferred_all(entry, e.code, &e.reason),
    }
}

/// The `Received:` field sent in front of the stored message: the only
/// change relaying makes, outside anything a signature covers.
fn received_field(policy: &Policy, entry: &Claimed) -> Vec<u8> {
    let with = if entry.session.tls_version.is_some() {
        "ESMTPS"
    } else {
        "ESMTP"
    };
    let received = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(entry.received_at_ms).unwrap_or(0));
    let when = crate::receipts::build::rfc5322_date(received);
    let helo: String = entry
        .session
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()[];".contains(*c))
        .take(255)
        .collect();
    format!(
        "Received: from {helo} ([{}])\r\n\tby {} (emla) with {with} id {}\r\n\t; {when}\r\n",
        entry.session.client_ip, policy.gateway.hostname, entry.delivery.message_id
    )
    .into_bytes()
}

/// What an attempt makes of its queue entry.
struct NextState {
    status: DeliveryState,
    next_attempt_at: i64,
    /// Failed because the queue lifetime ran out.
    expired: bool,
    /// The first recipient's error (with the lifetime, when expired).
    error: Option<String>,
    /// The recipients to try again.
    deferred: Vec<String>,
}

impl NextState {
    /// Where a recipient with outcome `o` stands after the attempt.
    fn of_recipient(&self, o: &RcptOutcome) -> DeliveryState {
        match o {
            RcptOutcome::Relayed { .. } => DeliveryState::Relayed,
            RcptOutcome::Refused { .. } => DeliveryState::Failed,
            RcptOutcome::Deferred { .. } if self.expired => DeliveryState::Failed,
            RcptOutcome::Deferred { .. } => self.status,
        }
    }
}

/// The entry's state after `outcomes` at `now`: relayed (or failed) when
/// no recipient is deferred, failed when the queue lifetime has run out,
/// otherwise still accepted (delayed once past its delay warning time)
/// for the retry delay.
fn next_state(policy: &Policy, entry: &Claimed, outcomes: &[RcptOutcome], now: i64) -> NextState {
    let relayed = outcomes
        .iter()
        .filter(|o| matches!(o, RcptOutcome::Relayed { .. }))
        .count();
    let deferred: Vec<String> = entry
        .delivery
        .recipients
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, RcptOutcome::Deferred { .. }))
        .map(|(r, _)| r.clone())
        .collect();
    let lane = entry.delivery.lane;
    let lifetime = policy.relay.lifetime(lane);
    let expires_at = entry.created_at_ms + i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let failures = u32::try_from(entry.attempts + 1).unwrap_or(u32::MAX);
    let (status, next_attempt_at, expired) = if deferred.is_empty() {
        let status = if relayed > 0 {
            DeliveryState::Relayed
        } else {
            DeliveryState::Failed
        };
        (status, now, false)
    } else if now >= expires_at {
        (DeliveryState::Failed, now, true)
    } else {
        let wait = policy.relay.retry_delay(failures);
        let at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        // The delay notice is due at its time, not at the retry after it.
        let warn_at = delay_warning_at(policy, entry);
        let (status, at) = if now < warn_at {
            (DeliveryState::Accepted, at.min(warn_at))
        } else {
            (DeliveryState::Delayed, at)
        };
        // So is the duty alert, from the queue's own times (restarts included).
        let at = match duty::alert_at(&policy.relay, lane, entry.created_at_ms) {
            Some(alert_at) if now < alert_at => at.min(alert_at),
            _ => at,
        };
        (status, at.min(expires_at), false)
    };
    let error = outcomes.iter().find_map(|o| match o {
        RcptOutcome::Relayed { .. } => None,
        RcptOutcome::Deferred { reply, .. } | RcptOutcome::Refused { reply, .. } => {
            Some(reply.clone())
        }
    });
    let error = if expired {
        Some(format!(
            "queue lifetime of {} ({} lane) ran out; last error: {}",
            humanize(lifetime),
            lane.as_str(),
            error.unwrap_or_default()
        ))
    } else {
        error
    };
    NextState {
        status,
        next_attempt_at,
        expired,
        error,
        deferred,
    }
}

/// When `entry` is due its delay notice (ms since the epoch).
fn delay_warning_at(policy: &Policy, entry: &Claimed) -> i64 {
    let warn = policy.relay.delay_warning(entry.delivery.lane);
    entry
        .created_at_ms
        .saturating_add(i64::try_from(warn.as_millis()).unwrap_or(i64::MAX))
}

/// Whether this attempt at `now`, which leaves recipients deferred, is the
/// one that owes the delay notice: the first after the warning time, and
/// before the queue lifetime runs out (then the failure notice says it
/// all). The notice is recorded with the attempt, which moves
/// `last_attempt_at` past the warning time: once per entry, restarts
/// included.
/// Gives the end of the queue lifetime.
fn delay_due(policy: &Policy, entry: &Claimed, now: i64) -> Option<i64> {
    let warn_at = delay_warning_at(policy, entry);
    let lifetime = policy.relay.lifetime(entry.delivery.lane);
    let expires_at = entry
        .created_at_ms
        .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
    let first = entry.last_attempt_at_ms.is_none_or(|t| t < warn_at);
    (now >= warn_at && first && warn_at < expires_at).then_some(expires_at)
}

/// Records one attempt: the audit record and the entry's new state, with
/// the notices it owes the sender, in one transaction.
async fn record(gw: &Worker, policy: &Policy, attempt: &Attempt<'_>, outcomes: Vec<RcptOutcome>) {
    let entry = attempt.entry;
    let now = crate::store::now_ms();
    let next = next_state(policy, entry, &outcomes, now);
    let mut record = attempt_record(gw, attempt, &outcomes, &next, now);
    let delay = (!next.expired)
        .then(|| delay_due(policy, entry, now))
        .flatten();
    let owes = settled(&outcomes, next.expired) || delay.is_some();
    let Ok(log) = receipt_anchor(gw, policy, entry, owes, &record.events[0]).await else {
        // The claim runs out and the entry is tried again.
        return;
    };
    let owing = Owing {
        policy,
        attempt,
        outcomes: &outcomes,
        at: std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0)),
    };
    let receipts = owing.notices(next.expired, delay, log.as_ref());
    let mut notified = !receipts.is_empty();
    for r in receipts {
        // Bounded by tsa_timeout_secs, within the delivery's lease.
        crate::receipts::hold::stamp_or_hold(r, &mut record, gw.tsa.as_ref()).await;
    }
    if let Some(event) = duty_event(policy, entry, &next, now) {
        let o = original_of(entry, false, None);
        let alert = duty::Alert {
            original: &o,
            event,
            receiving: vec![entry.delivery.authority.clone()],
            delivery: Some((entry.id, attempt.hop.clone())),
        };
        notified |= duty::add(policy, &gw.duty, &alert, &mut record, now);
    }
    store_attempt(gw, attempt, record, notified, &next).await;
}

/// The duty alert an attempt of an urgent-lane entry owes: when it failed
/// it for good, or when it is the first past `urgent_alert_secs` and left
/// it pending.
fn duty_event(policy: &Policy, entry: &Claimed, next: &NextState, now: i64) -> Option<duty::Event> {
    let error = next.error.clone().unwrap_or_default();
    let alert_at = duty::alert_at(&policy.relay, entry.delivery.lane, entry.created_at_ms)?;
    if next.status == DeliveryState::Failed {
        return Some(duty::Event::Failed { error });
    }
    (next.status.is_pending() && duty::delayed_due(Some(alert_at), entry.last_attempt_at_ms, now))
        .then_some(duty::Event::Delayed {
            since_ms: entry.created_at_ms,
            error,
        })
}

/// What receipts and alerts repeat of `entry`'s message.
fn original_of<'a>(
    entry: &'a Claimed,
    auto_submitted: bool,
    log: Option<&'a LogRef>,
) -> Original<'a> {
    Original {
        id: &entry.delivery.message_id,
        received_at_ms: entry.received_at_ms,
        sha256: &entry.sha256,
        sender: &entry.mail_from,
        recipients: &entry.rcpt_to,
        subject: entry.headers.subject.as_deref(),
        message_id: entry.headers.message_id.as_deref(),
        signers: &entry.signers,
        sender_authority: entry.sender_authority.as_deref(),
        route: &entry.delivery.route,
        policy_version: &entry.policy_version,
        case_ref: entry.case_ref.as_deref(),
        request_kind: entry.kind.as_deref(),
        auto_submitted,
        dsn: entry.dsn.as_ref(),
        log,
    }
}

/// The attempt's audit record (`relay.*`, each recipient's reply, state
/// and the next hop's queue id) and the change of its queue entry.
fn attempt_record(
    gw: &Worker,
    attempt: &Attempt<'_>,
    outcomes: &[RcptOutcome],
    next: &NextState,
    now: i64,
) -> Record {
    let entry = attempt.entry;
    let kind = match next.status {
        DeliveryState::Relayed => AuditKind::RelayDelivered,
        DeliveryState::Failed => AuditKind::RelayFailed,
        _ => AuditKind::RelayDeferred,
    };
    let pending = next.status.is_pending();
    let data = AttemptData {
        queue_id: Some(entry.id),
        attempt: Some(entry.attempts + 1),
        next_hop: Some(attempt.hop.clone()),
        authority: Some(entry.delivery.authority.clone()),
        route: Some(entry.delivery.route.clone()),
        lane: Some(entry.delivery.lane),
        instance: Some(gw.config.instance_id.clone()),
        tls: attempt.tls.as_ref().map(TlsReport::to_record),
        encryption: attempt.encryption.clone(),
        recipients: entry
            .delivery
            .recipients
            .iter()
            .zip(outcomes)
            .map(|(r, o)| RecipientOutcome {
                recipient: Some(r.clone()),
                outcome: o.to_record(next.of_recipient(o)),
            })
            .collect(),
        status: Some(next.status),
        expired: next.expired,
        error: next.error.clone(),
        next_attempt_at: pending.then_some(next.next_attempt_at),
        duration_ms: Some(attempt.started.elapsed().as_millis() as u64),
    };
    let event = AuditEvent {
        kind,
        message_id: Some(entry.delivery.message_id.clone()),
        data: serde_json::to_value(&data).unwrap_or_default(),
    };
    let remaining = (pending && next.deferred.len() < entry.delivery.recipients.len())
        .then(|| next.deferred.clone());
    let update = QueueUpdate {
        queue_id: entry.id,
        holder: Some(gw.config.instance_id.clone()),
        only_if: &DeliveryState::PENDING,
        status: next.status,
        next_attempt_at_ms: next.next_attempt_at,
        attempt: Some(AttemptNote {
            at_ms: now,
            error: next.error.clone(),
        }),
        recipients: remaining,
        next_hop_queue_id: outcomes.iter().find_map(RcptOutcome::queue_id),
    };
    Record {
        events: vec![event],
        queue_updates: vec![update],
        ..Record::default()
    }
}

/// What the attempt's receipts name of the log, when it `owes` one: read
/// before the record is prepared, so the attempt's record `event` follows
/// this head. `Err` when the log cannot be read (logged).
async fn receipt_anchor(
    gw: &Worker,
    policy: &Policy,
    entry: &Claimed,
    owes: bool,
    event: &AuditEvent,
) -> Result<Option<LogRef>, ()> {
    let may_be_due = notify::may_be_due(
        policy,
        &entry.mail_from,
        entry.sender_authority.as_deref(),
        crate::policy::ReceiptKind::Delivery,
        true,
    );
    if !(owes && may_be_due) {
        return Ok(None);
    }
    match gw.store.log_anchor().await {
        Ok(anchor) => Ok(Some(notify::log_ref(event, &anchor))),
        Err(e) => {
            tracing::error!(emla_id = %entry.delivery.message_id, error = %e, "relay: cannot read the audit log's head");
            Err(())
        }
    }
}

/// Stores the attempt's `record`; wakes the relay for the notices it
/// queued.
async fn store_attempt(
    gw: &Worker,
    attempt: &Attempt<'_>,
    record: Record,
    notified: bool,
    next: &NextState,
) {
    let entry = attempt.entry;
    match gw.store.record(record).await {
        Ok(()) if notified => gw.wake.notify_one(),
        Ok(()) => {}
        // The claim runs out and the entry is tried again: at least once.
        Err(e) => {
            tracing::error!(
                emla_id = %entry.delivery.message_id,
                queue_id = entry.id,
                error = %e,
                "relay: cannot record the attempt"
            );
            return;
        }
    }
    crate::metrics::with(|m| {
        m.relay_attempt(
            &attempt.hop,
            next.status.as_str(),
            entry.delivery.lane.as_str(),
            entry.received_at_ms,
        )
    });
    tracing::info!(
        emla_id = %entry.delivery.message_id,
        queue_id = entry.id,
        next_hop = %attempt.hop,
        authority = %entry.delivery.authority,
        status = next.status.as_str(),
        error = next.error.as_deref().unwrap_or(""),
        "relay attempt"
    );
}

/// The recipients of an attempt owed one notice: their outcome is of its
/// kind and their DSN NOTIFY allows it (RFC 3461 §4.1).
struct Owed<'a> {
    recipients: Vec<String>,
    /// The first one's outcome, which the notice quotes.
    first: &'a RcptOutcome,
    /// Whether one of them asked for it with NOTIFY (then it is sent even
    /// if the authority wants none).
    asked: bool,
}

/// What an attempt's notices are made from.
struct Owing<'a> {
    policy: &'a Policy,
    attempt: &'a Attempt<'a>,
    outcomes: &'a [RcptOutcome],
    /// The attempt's time.
    at: std::time::SystemTime,
}

impl<'a> Owing<'a> {
    /// The delivery receipt for the recipients this attempt relayed, the
    /// non-delivery notice for those it failed for good (refused, or
    /// deferred past the queue lifetime, `expired`) and the delay notice
    /// when one is due (`delay`: the end of the queue lifetime), as the
    /// sender's authority and DSN want them; `log` is what they name of
    /// the log.
    fn notices(
        &self,
        expired: bool,
        delay: Option<i64>,
        log: Option<&LogRef>,
    ) -> Vec<notify::Outgoing> {
        let entry = self.attempt.entry;
        // Most attempts owe nobody a receipt: no parsing for them.
        if !(settled(self.outcomes, expired) || delay.is_some())
            || self.policy.gateway.signing.is_none()
            || entry.mail_from.is_empty()
        {
            return Vec::new();
        }
        let Some(original) = self.attempt.original else {
            return Vec::new();
        };
        let o = original_of(entry, notify::is_auto_submitted(original), log);
        let mut out = Vec::new();
        out.extend(self.relayed(&o));
        out.extend(self.failed(&o, expired, original));
        if let Some(until) = delay {
            out.extend(self.delayed(&o, until, original));
        }
        out
    }

    /// The recipients whose outcome `is` one of the kind `wants` selects of
    /// NOTIFY, if any.
    fn owed(
        &self,
        wants: fn(&crate::envelope::Notify) -> bool,
        is: impl Fn(&RcptOutcome) -> bool,
    ) -> Option<Owed<'a>> {
        let entry = self.attempt.entry;
        let no_dsn = crate::envelope::Dsn::default();
        let dsn = entry.dsn.as_ref().unwrap_or(&no_dsn);
        let mut owed: Option<Owed<'a>> = None;
        for (r, o) in entry.delivery.recipients.iter().zip(self.outcomes) {
            if !(is(o) && dsn.notify(r, wants)) {
                continue;
            }
            let asked = dsn
                .recipient(r)
                .and_then(|d| d.notify.as_ref())
                .is_some_and(wants);
            match &mut owed {
                Some(w) => {
                    w.recipients.push(r.clone());
                    w.asked |= asked;
                }
                None => {
                    owed = Some(Owed {
                        recipients: vec![r.clone()],
                        first: o,
                        asked,
                    })
                }
            }
        }
        owed
    }

    /// The delivery receipt: relayed, with the next hop's reply and queue id.
    fn relayed(&self, o: &Original<'_>) -> Option<notify::Outgoing> {
        let owed = self.owed(|n| n.success, |o| matches!(o, RcptOutcome::Relayed { .. }))?;
        let RcptOutcome::Relayed { code, reply } = owed.first else {
            return None;
        };
        let outcome = DeliveryOutcome {
            recipients: owed.recipients,
            next_hop: self.attempt.hop.clone(),
            reply_code: *code,
            reply_text: reply.clone(),
            queue_id: owed.first.queue_id(),
            tls: self.attempt.tls.as_ref().map(|t| match t.verification {
                "none" => "none".to_owned(),
                v => format!("STARTTLS, certificate {v}"),
            }),
            at: self.at,
        };
        notify::delivery(self.policy, o, &outcome, owed.asked)
    }

    /// The non-delivery notice: refused, or not relayed within the queue
    /// lifetime (`expired`).
    fn failed(&self, o: &Original<'_>, expired: bool, original: &[u8]) -> Option<notify::Outgoing> {
        let owed = self.owed(
            |n| n.failure,
            |o| match o {
                RcptOutcome::Refused { .. } => true,
                RcptOutcome::Deferred { .. } => expired,
                RcptOutcome::Relayed { .. } => false,
            },
        )?;
        let (status, diagnostic) = match owed.first {
            RcptOutcome::Refused { code, reply } => (enhanced_status(*code, reply), reply.clone()),
            RcptOutcome::Deferred { reply, .. } => (
                "4.4.7".to_owned(),
                format!("not delivered within the queue lifetime; last error: {reply}"),
            ),
            RcptOutcome::Relayed { .. } => return None,
        };
        let report = Failure {
            recipients: owed.recipients,
            status,
            diagnostic,
            remote_mta: Some(self.attempt.hop.clone()),
            at: self.at,
        };
        notify::status_report(self.policy, o, &report, None, original, owed.asked)
    }

    /// The delay notice for the recipients still deferred; delivery is
    /// tried until `expires_at` (ms).
    fn delayed(
        &self,
        o: &Original<'_>,
        expires_at: i64,
        original: &[u8],
    ) -> Option<notify::Outgoing> {
        let owed = self.owed(|n| n.delay, |o| matches!(o, RcptOutcome::Deferred { .. }))?;
        let RcptOutcome::Deferred { code, reply } = owed.first else {
            return None;
        };
        let report = Failure {
            recipients: owed.recipients,
            status: code.map_or_else(|| "4.0.0".to_owned(), |c| enhanced_status(c, reply)),
            diagnostic: reply.clone(),
            remote_mta: Some(self.attempt.hop.clone()),
            at: self.at,
        };
        let until =
            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(expires_at).unwrap_or(0));
        notify::status_report(self.policy, o, &report, Some(until), original, owed.asked)
    }
}

/// Whether some recipient's outcome is final: relayed, refused, or
/// deferred past the queue lifetime.
fn settled(outcomes: &[RcptOutcome], expired: bool) -> bool {
    outcomes
        .iter()
        .any(|o| !matches!(o, RcptOutcome::Deferred { .. }) || expired)
}

/// The RFC 3463 status in a reply (`5.1.1` in `550 5.1.1 no such user`),
/// else the class of its code (`5.0.0`).
fn enhanced_status(code: u16, reply: &str) -> String {
    reply
        .split_whitespace()
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && parts[0] == (code / 100).to_string()
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}.0.0", code / 100))
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_spreads_round_robin_within_the_limit() {
        assert_eq!(
            split(vec![1, 2, 3, 4, 5], 2),
            vec![vec![1, 3, 5], vec![2, 4]]
        );
        assert_eq!(split(vec![1], 4), vec![vec![1]]);
        assert!(split(Vec::<u8>::new(), 4).is_empty());
    }

    #[test]
    fn enhanced_status_comes_from_the_reply() {
        assert_eq!(enhanced_status(550, "550 5.1.1 <x>: no such user"), "5.1.1");
        assert_eq!(
            enhanced_status(554, "permanent error (554): rejected"),
            "5.0.0"
        );
        assert_eq!(enhanced_status(550, "see RFC 5.1 or 4.2.0"), "5.0.0");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(5 * 86400)), "5d");
        assert_eq!(humanize(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
    }
}
