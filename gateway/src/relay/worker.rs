//! The relay worker inside `emla serve`: claims due queue entries, delivers
//! them per next hop over reused connections, and records every attempt
//! (audit record and queue change in one transaction).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::backoff;
use super::deliver::{ConnectError, Connection, RcptOutcome, TlsReport};
use crate::policy::{Lane, NextHop, Policy};
use crate::smtp::Gateway;
use crate::store::{AttemptNote, AuditEvent, Claimed, QueueStatus, QueueUpdate, Record};

/// Most entries claimed at once.
const CLAIM_BATCH: usize = 100;

/// Starts the worker; it stops claiming when `stop` turns true, lets the
/// deliveries in progress finish within the shutdown grace, and gives back
/// what it still holds.
pub fn spawn(gw: Arc<Gateway>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(gw, stop))
}

async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let cfg = gw.config.relay.clone();
    match gw.store.release_claims(&cfg.instance_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "relay: took back claims from before a restart"),
        Err(e) => tracing::warn!(error = %e, "relay: cannot release old claims"),
    }
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight));
    let mut per_hop: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let lease_ms = i64::try_from(cfg.lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        while tasks.try_join_next().is_some() {}
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
                    let policy = gw.policy();
                    for (hop, entries) in by_hop(&policy, batch) {
                        let limit = policy.relay.max_connections_per_destination;
                        let hop_slots = per_hop
                            .entry(hop.key())
                            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                            .clone();
                        for chunk in split(entries, limit) {
                            let gw = gw.clone();
                            let slots = slots.clone();
                            let hop_slots = hop_slots.clone();
                            let hop = hop.clone();
                            tasks.spawn(async move {
                                let _slot = slots.acquire_owned().await;
                                let _hop = hop_slots.acquire_owned().await;
                                deliver_chunk(&gw, &hop, chunk).await;
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
        tokio::select! {
            _ = gw.relay_wake.notified() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = stop.changed() => {}
        }
    }
    let grace = gw.config.shutdown_grace;
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
}

fn by_hop(policy: &Policy, batch: Vec<Claimed>) -> Vec<(Hop, Vec<Claimed>)> {
    let mut groups: Vec<(Hop, Vec<Claimed>)> = Vec::new();
    for c in batch {
        let hop = match policy.authorities.iter().find(|a| a.id == c.authority) {
            Some(a) => Hop::Known(a.next_hop.clone()),
            None => Hop::Unknown(c.authority.clone()),
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
async fn deliver_chunk(gw: &Gateway, hop: &Hop, entries: Vec<Claimed>) {
    let policy = gw.policy();
    let timeout = gw.config.relay.transaction_timeout;
    let mut conn: Option<Connection> = None;
    for entry in entries {
        let started = Instant::now();
        let next_hop = match hop {
            Hop::Known(h) => h,
            Hop::Unknown(a) => {
                let why = format!("authority {a} is no longer in the policy");
                let outcomes = deferred_all(&entry, None, &why);
                record(gw, &policy, &entry, &hop.key(), None, outcomes, started).await;
                continue;
            }
        };
        let message = match gw.store.read_body(&entry.sha256).await {
            Ok(body) => with_received(&policy, &entry, &body),
            Err(e) => {
                let why = format!("cannot read the stored message: {e}");
                let outcomes = deferred_all(&entry, None, &why);
                record(gw, &policy, &entry, &hop.key(), None, outcomes, started).await;
                continue;
            }
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
                    let outcomes = connect_failed(&entry, &e);
                    record(gw, &policy, &entry, &hop.key(), None, outcomes, started).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let outcomes = c
            .send(&entry.mail_from, &entry.recipients, &message, timeout)
            .await;
        let tls = c.tls.clone();
        record(
            gw,
            &policy,
            &entry,
            &hop.key(),
            Some(&tls),
            outcomes,
            started,
        )
        .await;
    }
    if let Some(c) = conn {
        c.quit().await;
    }
}

fn deferred_all(entry: &Claimed, code: Option<u16>, why: &str) -> Vec<RcptOutcome> {
    entry
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

/// The stored message with one `Received:` field in front: the only change
/// relaying makes, outside anything a signature covers.
fn with_received(policy: &Policy, entry: &Claimed, body: &[u8]) -> Vec<u8> {
    let with = if entry.tls_version.is_some() {
        "ESMTPS"
    } else {
        "ESMTP"
    };
    let received = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(entry.received_at_ms).unwrap_or(0));
    let when = super::receipt::rfc5322_date(received);
    let helo: String = entry
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()[];".contains(*c))
        .take(255)
        .collect();
    let mut out = format!(
        "Received: from {helo} ([{}])\r\n\tby {} (emla) with {with} id {}\r\n\t; {when}\r\n",
        entry.client_ip, policy.gateway.hostname, entry.message_id
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Records one attempt: the audit record and the entry's new state, in one
/// transaction.
async fn record(
    gw: &Gateway,
    policy: &Policy,
    entry: &Claimed,
    hop: &str,
    tls: Option<&TlsReport>,
    outcomes: Vec<RcptOutcome>,
    started: Instant,
) {
    let now = crate::store::now_ms();
    let delivered = outcomes
        .iter()
        .filter(|o| matches!(o, RcptOutcome::Delivered { .. }))
        .count();
    let deferred: Vec<String> = entry
        .recipients
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, RcptOutcome::Deferred { .. }))
        .map(|(r, _)| r.clone())
        .collect();
    let lane = Lane::parse(&entry.lane);
    let lifetime = policy.relay.lifetime(lane);
    let expires_at = entry.created_at_ms + i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let failures = u32::try_from(entry.attempts + 1).unwrap_or(u32::MAX);
    let (status, next_attempt_at, expired) = if deferred.is_empty() {
        let status = if delivered > 0 {
            QueueStatus::Delivered
        } else {
            QueueStatus::Failed
        };
        (status, now, false)
    } else if now >= expires_at {
        (QueueStatus::Failed, now, true)
    } else {
        let wait = backoff::delay(&policy.relay, failures);
        let at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        (QueueStatus::Queued, at.min(expires_at), false)
    };
    let error = outcomes.iter().find_map(|o| match o {
        RcptOutcome::Delivered { .. } => None,
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
    let kind = match status {
        QueueStatus::Delivered => "relay.delivered",
        QueueStatus::Failed => "relay.failed",
        _ => "relay.deferred",
    };
    let per_rcpt: Vec<_> = entry
        .recipients
        .iter()
        .zip(&outcomes)
        .map(|(r, o)| json!({"recipient": r, "outcome": o}))
        .collect();
    let event = AuditEvent {
        kind: kind.into(),
        message_id: Some(entry.message_id.clone()),
        data: json!({
            "queue_id": entry.id,
            "attempt": entry.attempts + 1,
            "next_hop": hop,
            "authority": entry.authority,
            "route": entry.route,
            "lane": entry.lane,
            "instance": gw.config.relay.instance_id,
            "tls": tls,
            "recipients": per_rcpt,
            "status": status,
            "expired": expired,
            "error": error,
            "next_attempt_at": (status == QueueStatus::Queued).then_some(next_attempt_at),
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
    };
    let remaining = (status == QueueStatus::Queued && deferred.len() < entry.recipients.len())
        .then_some(deferred);
    let update = QueueUpdate {
        queue_id: entry.id,
        holder: Some(gw.config.relay.instance_id.clone()),
        only_if: &[QueueStatus::Queued],
        status,
        next_attempt_at_ms: next_attempt_at,
        attempt: Some(AttemptNote {
            at_ms: now,
            error: error.clone(),
        }),
        recipients: remaining,
    };
    let result = gw
        .store
        .record(Record {
            events: vec![event],
            queue_updates: vec![update],
            ..Record::default()
        })
        .await;
    match result {
        Ok(()) => tracing::info!(
            message = %entry.message_id,
            queue_id = entry.id,
            next_hop = %hop,
            status = status.as_str(),
            error = error.as_deref().unwrap_or(""),
            "relay attempt"
        ),
        // The claim runs out and the entry is tried again: at least once.
        Err(e) => tracing::error!(
            message = %entry.message_id,
            queue_id = entry.id,
            error = %e,
            "relay: cannot record the attempt"
        ),
    }
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
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(5 * 86400)), "5d");
        assert_eq!(humanize(Duration::from_secs(4 * 3600)), "4h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
    }
}
