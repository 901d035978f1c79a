//! Duty alerts for the urgent lane (UNTOC art. 18(13), urgent
//! circumstances): an urgent-lane message that is refused at intake, still
//! not relayed `urgent_alert_secs` after acceptance, or failed, sends a
//! signed alert to the `duty` address of its sending and of its receiving
//! authority. Alerts are gateway messages like receipts ([`notify`]): a
//! message row, a queue entry to the duty address's authority and a
//! `duty.alert` record, in the transaction of the event that caused them.
//!
//! At most one alert per queue entry and event: a refusal happens once, a
//! failure ends the entry, and [`delayed_due`] holds only for the first
//! attempt past the threshold, which the queue itself remembers (its last
//! attempt time, written with the alert). Each authority's duty address
//! gets at most `duty_alerts_per_hour` ([`Limiter`]); the others are
//! audited as suppressed.

use super::build::{self as receipt};
use super::limit::Limiter;
use super::notify::{self, Original};
use crate::policy::{Authority, Lane, Policy, ReceiptKind, RelaySettings, RouteDecision};
use crate::reason::Reason;
use crate::store::payload::{DutyAlert, DutyRecipient};
use crate::store::{AuditEvent, Record};

/// What happened to an urgent-lane message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Refused at the end of DATA.
    Refused {
        /// The reason code.
        reason: Reason,
        /// Its detail.
        detail: String,
    },
    /// Still not relayed at the threshold.
    Delayed {
        /// When it was accepted (ms since the epoch).
        since_ms: i64,
        /// The last attempt's error.
        error: String,
    },
    /// Failed for good.
    Failed {
        /// The last error.
        error: String,
    },
}

impl Event {
    /// Its name in alerts and the audit: `refused`, `delayed`, `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Refused { .. } => "refused",
            Event::Delayed { .. } => "delayed",
            Event::Failed { .. } => "failed",
        }
    }

    /// What an alert says of it.
    pub fn what(&self) -> String {
        match self {
            Event::Refused { reason, detail } => format!("refused: {reason}: {detail}"),
            Event::Delayed { since_ms, error } => format!(
                "not relayed yet, delayed since {}; last error: {error}",
                crate::clock::EvalTime::from_unix(u64::try_from(*since_ms / 1000).unwrap_or(0))
                    .to_rfc3339()
            ),
            Event::Failed { error } => format!("failed: {error}"),
        }
    }

    /// The notice whose state the alert reports.
    fn kind(&self) -> ReceiptKind {
        match self {
            Event::Refused { .. } => ReceiptKind::Rejection,
            Event::Delayed { .. } => ReceiptKind::Delay,
            Event::Failed { .. } => ReceiptKind::Failure,
        }
    }
}

/// One event of an urgent-lane message to alert about.
pub struct Alert<'a> {
    /// The message (its `sender_authority` is the sending authority).
    pub original: &'a Original<'a>,
    /// What happened.
    pub event: Event,
    /// The receiving authorities it concerns.
    pub receiving: Vec<String>,
    /// The queue entry and its next hop, for a delivery's events.
    pub delivery: Option<(i64, String)>,
}

/// When an urgent-lane entry accepted at `created_at_ms` alerts as
/// delayed (ms since the epoch); `None` for the normal lane.
pub fn alert_at(relay: &RelaySettings, lane: Lane, created_at_ms: i64) -> Option<i64> {
    let after = i64::try_from(relay.urgent_alert.as_millis()).unwrap_or(i64::MAX);
    (lane == Lane::Urgent).then(|| created_at_ms.saturating_add(after))
}

/// Whether an attempt at `now` of an entry still pending is the one that
/// alerts it as delayed: the first at or past `alert_at` (its previous
/// attempt, if any, came before it).
pub fn delayed_due(alert_at: Option<i64>, last_attempt_at_ms: Option<i64>, now: i64) -> bool {
    alert_at.is_some_and(|at| now >= at && last_attempt_at_ms.is_none_or(|t| t < at))
}

/// The lane of a refused message from `sender` to `rcpt_to` declaring
/// `kind`: urgent when a route its recipients match (or, where none does,
/// its kind) says so.
pub fn refused_lane(policy: &Policy, sender: &str, rcpt_to: &[String], kind: Option<&str>) -> Lane {
    let kind = kind.and_then(|k| policy.kinds.get(k));
    let urgent = rcpt_to.iter().any(|r| {
        let lane = match policy.route(sender, r, kind.map(|k| k.id.as_str())) {
            RouteDecision::Relay { route, .. } | RouteDecision::Reject { route } => {
                route.lane_for(kind)
            }
            _ => kind.and_then(|k| k.lane).unwrap_or(Lane::Normal),
        };
        lane == Lane::Urgent
    });
    if urgent {
        Lane::Urgent
    } else {
        Lane::Normal
    }
}

/// Adds `alert`'s signed messages (one per duty address of its sending and
/// receiving authorities, within their hourly cap) and its `duty.alert`
/// record to `record`; whether any message was queued.
pub fn add(
    policy: &Policy,
    limiter: &Limiter,
    alert: &Alert<'_>,
    record: &mut Record,
    now_ms: i64,
) -> bool {
    let o = alert.original;
    let duty: Vec<(&Authority, &str)> =
        duty_addresses(policy, o.sender_authority, &alert.receiving);
    if duty.is_empty() {
        return false;
    }
    let Some(identity) = policy.gateway.signing.as_ref() else {
        tracing::warn!(emla_id = %o.id, event = alert.event.name(), "no duty alert: the gateway has no signing identity");
        return false;
    };
    let what = match &alert.delivery {
        Some((_, hop)) => format!("{} (next hop {hop})", alert.event.what()),
        None => alert.event.what(),
    };
    let mut ctx = notify::context(policy, o);
    if ctx.sender.is_empty() {
        ctx.sender = "<>".to_owned();
    }
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
    let (mut sent, mut suppressed) = (Vec::new(), Vec::new());
    for (authority, to) in duty {
        let mut who = DutyRecipient {
            authority: authority.id.clone(),
            to: to.to_owned(),
            alert_id: None,
        };
        let cap = policy.relay.duty_alerts_per_hour;
        // Policy check makes every duty address one of an authority's domains.
        let owner = policy.authority_for_address(to);
        let built = owner
            .filter(|_| limiter.allow(&authority.id, cap, now_ms))
            .and_then(|owner| {
                let r = receipt::duty_alert(
                    &ctx,
                    alert.event.kind(),
                    alert.event.name(),
                    &what,
                    to,
                    at,
                )?;
                Some((owner, r))
            });
        let Some((owner, r)) = built else {
            tracing::warn!(emla_id = %o.id, authority = %authority.id, to, cap, "duty alert suppressed");
            crate::metrics::with(|m| m.duty_alert("suppressed"));
            suppressed.push(who);
            continue;
        };
        let (message, queue) = notify::gateway_message(
            policy,
            owner,
            to,
            r.sign(identity),
            &r.headers,
            format!("duty alert ({}) for {}", alert.event.name(), o.id),
            "duty-alert",
            o.case_ref,
        );
        tracing::info!(emla_id = %o.id, authority = %authority.id, to, event = alert.event.name(), alert_id = %message.id, "duty alert queued");
        crate::metrics::with(|m| m.duty_alert("sent"));
        who.alert_id = Some(message.id.clone());
        sent.push(who);
        record.outgoing.push(message);
        record.queue.push(queue);
    }
    let queued = !sent.is_empty();
    let data = DutyAlert {
        event: alert.event.name().to_owned(),
        what,
        queue_id: alert.delivery.as_ref().map(|(id, _)| *id),
        next_hop: alert.delivery.as_ref().map(|(_, hop)| hop.clone()),
        sent,
        suppressed,
        signed_by: identity.subject().to_owned(),
    };
    record
        .events
        .push(AuditEvent::of(Some(o.id.to_owned()), &data));
    queued
}

/// The authorities among `sending` and `receiving` that have a duty
/// address, once each, the sending one first.
fn duty_addresses<'p>(
    policy: &'p Policy,
    sending: Option<&str>,
    receiving: &[String],
) -> Vec<(&'p Authority, &'p str)> {
    let mut out: Vec<(&Authority, &str)> = Vec::new();
    for id in sending
        .into_iter()
        .chain(receiving.iter().map(String::as_str))
    {
        let Some(a) = policy.authorities.iter().find(|a| a.id == id) else {
            continue;
        };
        if let Some(to) = a.duty.as_deref() {
            if !out.iter().any(|(b, _)| b.id == a.id) {
                out.push((a, to));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delayed_alerts_once_at_the_first_attempt_past_the_threshold() {
        let at = Some(10_000);
        assert!(!delayed_due(at, None, 9_999), "not before");
        assert!(delayed_due(at, None, 10_000), "at the threshold");
        assert!(
            delayed_due(at, Some(9_000), 12_000),
            "first attempt past it"
        );
        assert!(
            !delayed_due(at, Some(10_000), 12_000),
            "the attempt at it alerted"
        );
        assert!(
            !delayed_due(at, Some(11_000), 12_000),
            "a later attempt, a restart"
        );
        assert!(!delayed_due(None, None, 99_999), "normal lane: never");
    }

    #[test]
    fn the_threshold_is_the_urgent_lanes_only() {
        let relay = RelaySettings {
            urgent_alert: std::time::Duration::from_secs(2),
            ..RelaySettings::default()
        };
        assert_eq!(alert_at(&relay, Lane::Urgent, 1_000), Some(3_000));
        assert_eq!(alert_at(&relay, Lane::Normal, 1_000), None);
    }

    #[test]
    fn events_say_what_happened() {
        let refused = Event::Refused {
            reason: Reason::Unsigned,
            detail: "no signature".into(),
        };
        assert_eq!(refused.name(), "refused");
        assert_eq!(refused.what(), "refused: unsigned: no signature");
        let delayed = Event::Delayed {
            since_ms: 0,
            error: "connection refused".into(),
        };
        assert_eq!(
            delayed.what(),
            "not relayed yet, delayed since 1970-01-01T00:00:00Z; last error: connection refused"
        );
        assert_eq!(delayed.kind(), ReceiptKind::Delay);
        let failed = Event::Failed {
            error: "550 no".into(),
        };
        assert_eq!(
            (failed.name(), failed.kind()),
            ("failed", ReceiptKind::Failure)
        );
    }
}
