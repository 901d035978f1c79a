//! The fixed vocabulary of audit record kinds (see `docs/contracts.md`,
//! "Audit record kinds").
//!
//! Every record of the hash-chained audit log has exactly one kind. Kinds
//! are hashed into the chain and read by auditors' tools, so their
//! spelling is a contract: add kinds, never rename or reuse one.

use std::fmt;
use std::str::FromStr;

/// What an audit record records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuditKind {
    /// `message.accepted`: a message passed every check and was recorded.
    MessageAccepted,
    /// `message.rejected`: a message was refused at the end of DATA.
    MessageRejected,
    /// `message.duplicate`: a message whose signature was accepted before
    /// came again and got the first message's id.
    MessageDuplicate,
    /// `smtp.rejected`: a command was refused before DATA.
    SmtpRejected,
    /// `smtp.session-summary`: a session's repeated refusals (audited once
    /// each on their own), or the limit that closed it.
    SmtpSessionSummary,
    /// `relay.delivered`: the next hop accepted a delivery.
    RelayDelivered,
    /// `relay.deferred`: a delivery attempt failed temporarily.
    RelayDeferred,
    /// `relay.failed`: a delivery failed for good.
    RelayFailed,
    /// `receipt.queued`: a signed receipt or non-delivery notice was queued.
    ReceiptQueued,
    /// `receipt.held`: a signed receipt waits for its timestamp token
    /// (`[evidence] tsa_unavailable = "wait"`), kept until the TSA grants
    /// one or the wait runs out.
    ReceiptHeld,
    /// `duty.alert`: an urgent-lane message was refused, delayed past
    /// `urgent_alert_secs` or failed, and the authorities' duty addresses
    /// were alerted (or the hourly cap suppressed it).
    DutyAlert,
    /// `queue.retry`: an operator retried a queue entry.
    QueueRetry,
    /// `queue.cancelled`: an operator cancelled a queue entry.
    QueueCancelled,
    /// `policy.reloaded`: a reload put a new policy in force.
    PolicyReloaded,
    /// `policy.reload-failed`: a reload kept the old policy.
    PolicyReloadFailed,
    /// `audit.checkpoint`: a signed checkpoint of the chain head was written.
    AuditCheckpoint,
    /// `audit.checkpoint-stamped`: a checkpoint signed without a timestamp
    /// got its token later (the backlog job).
    AuditCheckpointStamped,
    /// `retention.pruned`: bodies or audit records were removed by retention.
    RetentionPruned,
    /// `crl.updated`: a downloaded CRL was taken.
    CrlUpdated,
    /// `crl.fetch-failed`: a CRL download was refused or failed.
    CrlFetchFailed,
    /// `ocsp.updated`: an OCSP answer was taken.
    OcspUpdated,
    /// `ocsp.fetch-failed`: an OCSP request failed.
    OcspFetchFailed,
    /// `postmaster.kept`: mail to the postmaster was kept in the operator's
    /// mailbox.
    PostmasterKept,
}

impl AuditKind {
    /// Every kind, in documentation order.
    pub const ALL: [AuditKind; 23] = [
        AuditKind::MessageAccepted,
        AuditKind::MessageRejected,
        AuditKind::MessageDuplicate,
        AuditKind::SmtpRejected,
        AuditKind::SmtpSessionSummary,
        AuditKind::RelayDelivered,
        AuditKind::RelayDeferred,
        AuditKind::RelayFailed,
        AuditKind::ReceiptQueued,
        AuditKind::ReceiptHeld,
        AuditKind::DutyAlert,
        AuditKind::QueueRetry,
        AuditKind::QueueCancelled,
        AuditKind::PolicyReloaded,
        AuditKind::PolicyReloadFailed,
        AuditKind::AuditCheckpoint,
        AuditKind::AuditCheckpointStamped,
        AuditKind::RetentionPruned,
        AuditKind::CrlUpdated,
        AuditKind::CrlFetchFailed,
        AuditKind::OcspUpdated,
        AuditKind::OcspFetchFailed,
        AuditKind::PostmasterKept,
    ];

    /// The kinds of the record that carries a message's decision.
    pub const DECISIONS: [AuditKind; 2] = [AuditKind::MessageAccepted, AuditKind::MessageRejected];

    /// The kind as stored and hashed, e.g. `message.accepted`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::MessageAccepted => "message.accepted",
            AuditKind::MessageRejected => "message.rejected",
            AuditKind::MessageDuplicate => "message.duplicate",
            AuditKind::SmtpRejected => "smtp.rejected",
            AuditKind::SmtpSessionSummary => "smtp.session-summary",
            AuditKind::RelayDelivered => "relay.delivered",
            AuditKind::RelayDeferred => "relay.deferred",
            AuditKind::RelayFailed => "relay.failed",
            AuditKind::ReceiptQueued => "receipt.queued",
            AuditKind::ReceiptHeld => "receipt.held",
            AuditKind::DutyAlert => "duty.alert",
            AuditKind::QueueRetry => "queue.retry",
            AuditKind::QueueCancelled => "queue.cancelled",
            AuditKind::PolicyReloaded => "policy.reloaded",
            AuditKind::PolicyReloadFailed => "policy.reload-failed",
            AuditKind::AuditCheckpoint => "audit.checkpoint",
            AuditKind::AuditCheckpointStamped => "audit.checkpoint-stamped",
            AuditKind::RetentionPruned => "retention.pruned",
            AuditKind::CrlUpdated => "crl.updated",
            AuditKind::CrlFetchFailed => "crl.fetch-failed",
            AuditKind::OcspUpdated => "ocsp.updated",
            AuditKind::OcspFetchFailed => "ocsp.fetch-failed",
            AuditKind::PostmasterKept => "postmaster.kept",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<AuditKind> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The event of ETSI EN 319 522-1 (electronic registered delivery) this
    /// kind records, or `None` when the standard has no counterpart (the
    /// table in `docs/evidence-vocabulary.md` says why, kind by kind). It is
    /// shown beside the kind, never hashed into a record.
    pub fn rem_event(self) -> Option<RemEvent> {
        match self {
            AuditKind::MessageAccepted => Some(RemEvent::SubmissionAcceptance),
            AuditKind::MessageRejected => Some(RemEvent::SubmissionRejection),
            AuditKind::RelayDelivered => Some(RemEvent::RelayAcceptance),
            AuditKind::RelayFailed => Some(RemEvent::RelayFailure),
            AuditKind::MessageDuplicate
            | AuditKind::SmtpRejected
            | AuditKind::SmtpSessionSummary
            | AuditKind::RelayDeferred
            | AuditKind::ReceiptQueued
            | AuditKind::ReceiptHeld
            | AuditKind::DutyAlert
            | AuditKind::QueueRetry
            | AuditKind::QueueCancelled
            | AuditKind::PolicyReloaded
            | AuditKind::PolicyReloadFailed
            | AuditKind::AuditCheckpoint
            | AuditKind::AuditCheckpointStamped
            | AuditKind::RetentionPruned
            | AuditKind::CrlUpdated
            | AuditKind::CrlFetchFailed
            | AuditKind::OcspUpdated
            | AuditKind::OcspFetchFailed
            | AuditKind::PostmasterKept => None,
        }
    }

    /// Whether this is the record of a message's decision
    /// (`message.accepted` or `message.rejected`).
    pub fn is_decision(self) -> bool {
        AuditKind::DECISIONS.contains(&self)
    }

    /// Whether this records something done to a queue entry: a delivery
    /// attempt (`relay.*`) or an operator's action (`queue.*`).
    pub fn is_queue_event(self) -> bool {
        matches!(
            self,
            AuditKind::RelayDelivered
                | AuditKind::RelayDeferred
                | AuditKind::RelayFailed
                | AuditKind::QueueRetry
                | AuditKind::QueueCancelled
        )
    }
}

/// The events of ETSI EN 319 522-1 that emla records (their names as the
/// standard spells them, e.g. in EN 319 522-3's event identifiers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemEvent {
    /// The sender's message was accepted for delivery.
    SubmissionAcceptance,
    /// The sender's message was refused.
    SubmissionRejection,
    /// The next hop accepted the message relayed to it.
    RelayAcceptance,
    /// The message could not be relayed (refused, or not within the
    /// queue lifetime).
    RelayFailure,
}

impl RemEvent {
    /// The standard's name, e.g. `SubmissionAcceptance`.
    pub fn as_str(self) -> &'static str {
        match self {
            RemEvent::SubmissionAcceptance => "SubmissionAcceptance",
            RemEvent::SubmissionRejection => "SubmissionRejection",
            RemEvent::RelayAcceptance => "RelayAcceptance",
            RemEvent::RelayFailure => "RelayFailure",
        }
    }
}

impl fmt::Display for RemEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no [`AuditKind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown audit record kind {:?}", self.0)
    }
}

impl std::error::Error for UnknownKind {}

impl FromStr for AuditKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::parse(s).ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl serde::Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for AuditKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The backquoted codes in the first column of the table under `heading`
/// in `docs/contracts.md` (a cell may list several, `a` / `b`).
#[cfg(test)]
pub(crate) fn contract_table(heading: &str) -> Vec<String> {
    const CONTRACTS: &str = include_str!("../../../docs/contracts.md");
    let section = CONTRACTS
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/contracts.md has no section {heading:?}"));
    let mut out = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap_or_default();
        out.extend(cell.split('`').skip(1).step_by(2).map(String::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        crate::reason::assert_names_round_trip(
            &AuditKind::ALL,
            AuditKind::as_str,
            AuditKind::parse,
        );
        for k in AuditKind::ALL {
            assert_eq!(k.as_str().parse::<AuditKind>(), Ok(k));
            assert_eq!(format!("\"{k}\""), serde_json::to_string(&k).unwrap());
        }
        assert_eq!(AuditKind::parse("message.received"), None);
        assert!(serde_json::from_str::<AuditKind>("\"x\"").is_err());
    }

    #[test]
    fn every_kind_is_in_the_contract_and_back() {
        let documented = contract_table("Audit record kinds");
        let ours: Vec<String> = AuditKind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(documented, ours, "docs/contracts.md vs AuditKind::ALL");
    }

    #[test]
    fn evidence_vocabulary_matches_the_doc() {
        const DOC: &str = include_str!("../../../docs/evidence-vocabulary.md");
        let section = DOC
            .split("\n## ")
            .find(|s| s.starts_with("Audit record kinds"))
            .expect("docs/evidence-vocabulary.md has no section \"Audit record kinds\"");
        let documented: Vec<(String, String)> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].trim_matches('`').to_owned(),
                    cells[2].trim_matches('`').to_owned(),
                )
            })
            .collect();
        let ours: Vec<(String, String)> = AuditKind::ALL
            .iter()
            .map(|k| {
                let e = k.rem_event().map_or("none".to_owned(), |e| e.to_string());
                (k.to_string(), e)
            })
            .collect();
        assert_eq!(
            documented, ours,
            "docs/evidence-vocabulary.md vs AuditKind::rem_event"
        );
    }
}
