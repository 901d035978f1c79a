//! The `data` of the audit kinds that are neither decisions, delivery
//! attempts, queue actions nor checkpoints (those are in [`rows`](super::rows)):
//! one type per kind, written and read with it.
//!
//! Field names and JSON shapes are those the records have always had; the
//! store serialises through [`serde_json::Value`], whose objects keep keys
//! sorted, so the hashed text (docs/audit-chain.md) is unchanged.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::kind::AuditKind;
use super::{AuditEvent, AuditRecord, SessionInfo};
use crate::reason::Reason;

/// The data of one audit kind.
pub trait Payload: Serialize + DeserializeOwned {
    /// The kind of record it is the data of.
    fn kind(&self) -> AuditKind;
}

impl AuditEvent {
    /// The event recording `payload`, about `message_id` if any.
    pub fn of<P: Payload>(message_id: Option<String>, payload: &P) -> AuditEvent {
        AuditEvent {
            kind: payload.kind(),
            message_id,
            // Plain structs of strings and numbers always serialise.
            data: serde_json::to_value(payload).unwrap_or_default(),
        }
    }
}

impl AuditRecord {
    /// The record's data as `P`, if it is a record of `P`'s kind.
    pub fn payload<P: Payload>(&self) -> Option<P> {
        serde_json::from_value::<P>(self.data.clone())
            .ok()
            .filter(|p| p.kind() == self.kind)
    }
}

/// `smtp.rejected`: a command refused before DATA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpRejected {
    /// The SMTP stage (`mail`, `rcpt`, `data`, …).
    pub stage: String,
    /// The session.
    pub session: SessionInfo,
    /// MAIL FROM so far (empty before MAIL).
    pub mail_from: String,
    /// The reason code.
    pub reason: Reason,
    /// What was wrong.
    pub detail: String,
    /// The policy version the refusal was made under.
    pub policy_version: String,
    /// Whom the refused command or transaction was for.
    #[serde(flatten)]
    pub refused_for: RefusedFor,
}

/// Whom a refusal before DATA concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedFor {
    /// `rcpt`: the recipient of a refused RCPT (`null` for other commands).
    #[serde(rename = "rcpt")]
    Rcpt(Option<String>),
    /// `rcpt_to`: the recipients of a transaction the driver refused (size,
    /// smuggling, TLS).
    #[serde(rename = "rcpt_to")]
    RcptTo(Vec<String>),
}

/// `receipt.queued`: a receipt or notice queued for the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptQueued {
    /// Which receipt (`acceptance`, `delivery`, …).
    pub receipt: String,
    /// The emla id of the receipt message.
    pub receipt_id: String,
    /// Its recipient (the original sender).
    pub to: String,
    /// SHA-256 of the receipt message.
    pub sha256: String,
    /// Subject of the gateway certificate that signed it.
    pub signed_by: String,
    /// The signature's RFC 3161 timestamp, when a TSA is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// `receipt.held`: a receipt waits for its timestamp token
/// (`[evidence] tsa_unavailable = "wait"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptHeld {
    /// Which receipt (`acceptance`, `delivery`, …).
    pub receipt: String,
    /// The emla id it will be sent as.
    pub receipt_id: String,
    /// Its recipient.
    pub to: String,
    /// How many times the TSA gave no token.
    pub tries: i64,
    /// When the TSA is asked again (RFC 3339).
    pub next_try_at: String,
    /// When it goes out even without a token (RFC 3339).
    pub deadline: String,
    /// What the last try brought (`unavailable` or `refused`, why).
    pub timestamp: Timestamp,
}

/// `audit.checkpoint-stamped`: the backlog job added a timestamp token to
/// a checkpoint signed without one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpointStamped {
    /// The checkpoint's seq.
    pub seq: i64,
    /// The `.p7s` file rewritten.
    pub file: String,
    /// SHA-256 of the `.p7s` before (without the token).
    pub sha256_before: String,
    /// SHA-256 of the `.p7s` now.
    pub sha256: String,
    /// The token (always `granted`).
    pub timestamp: Timestamp,
}

/// What became of a signature's RFC 3161 timestamp (`[evidence] tsa_url`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timestamp {
    /// `granted` (the token is in the signature), `unavailable` (the TSA
    /// could not be reached or did not grant) or `refused` (its answer
    /// failed a check and was not used).
    pub status: String,
    /// Why there is no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The token's genTime (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gen_time: Option<String>,
    /// The TSA certificate's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsa: Option<String>,
    /// The token's serial number, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// SHA-256 of the token (DER TimeStampToken), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For a receipt that was held (`tsa_unavailable = "wait"`): how many
    /// times the TSA gave no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries: Option<i64>,
    /// And how long it was held, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_secs: Option<u64>,
}

/// `policy.reloaded`: a new policy in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReloaded {
    /// The version before.
    pub previous: String,
    /// The version now in force.
    pub version: String,
}

/// `policy.reload-failed`: the old policy kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReloadFailed {
    /// The version kept.
    pub kept: String,
    /// What was wrong with the new files.
    pub problems: Vec<String>,
}

/// The CRL download a `crl.*` event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlDownload {
    /// Where it comes from.
    pub url: String,
    /// The authorities that use it.
    pub authorities: Vec<String>,
}

/// `crl.updated`: a downloaded CRL taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlUpdated {
    /// The download.
    #[serde(flatten)]
    pub download: CrlDownload,
    /// Its issuer.
    pub issuer: String,
    /// SHA-256 of its DER.
    pub sha256: String,
    /// SHA-256 of the CRL held before, if any.
    pub previous: Option<String>,
    /// Its cRLNumber, hex.
    pub crl_number: Option<String>,
    /// thisUpdate (RFC 3339).
    pub this_update: String,
    /// nextUpdate (RFC 3339).
    pub next_update: String,
}

/// `crl.fetch-failed`: a download refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlFetchFailed {
    /// The download.
    #[serde(flatten)]
    pub download: CrlDownload,
    /// What went wrong.
    pub error: String,
    /// Failures in a row.
    pub failures: u32,
    /// SHA-256 of the CRL still held, if any.
    pub held: Option<String>,
    /// When it is tried again (RFC 3339).
    pub next_attempt: String,
}

/// `ocsp.updated`: an OCSP answer taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcspUpdated {
    /// The responder asked.
    pub url: String,
    /// SHA-256 of the certificate it is about.
    pub certificate: String,
    /// `good`, `revoked` or `unknown`.
    pub status: String,
    /// Who signed the answer.
    pub responder: String,
    /// SHA-256 of the DER OCSPResponse.
    pub sha256: String,
    /// thisUpdate (RFC 3339).
    pub this_update: String,
    /// nextUpdate (RFC 3339).
    pub next_update: String,
}

/// `ocsp.fetch-failed`: no responder gave a valid answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcspFetchFailed {
    /// The responders asked.
    pub urls: Vec<String>,
    /// SHA-256 of the certificate.
    pub certificate: String,
    /// What went wrong, per responder.
    pub error: String,
    /// Failures in a row.
    pub failures: u32,
}

/// `retention.pruned`: bodies or audit records removed, told apart by
/// `what`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "lowercase")]
pub enum RetentionPruned {
    /// Message bodies.
    Bodies {
        /// Bodies of messages received before this (RFC 3339).
        received_before: String,
        /// The `bodies_days` in force.
        bodies_days: u64,
        /// The bodies removed.
        bodies: Vec<PrunedBody>,
    },
    /// Audit records, below a signed checkpoint.
    Audit {
        /// Records older than this (RFC 3339).
        older_than: String,
        /// The last record removed.
        through_seq: i64,
        /// Its hash, the new anchor of the chain.
        anchor_hash: String,
        /// The signed checkpoint the pruning stays below.
        checkpoint_seq: i64,
        /// Its hash.
        checkpoint_hash: String,
        /// Records removed.
        deleted: u64,
    },
}

/// One body removed by retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedBody {
    /// The emla message id.
    pub id: String,
    /// SHA-256 of the body.
    pub sha256: String,
}

/// `smtp.session-summary`: a session whose refusals repeated, or that a
/// limit closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpSessionSummary {
    /// The session.
    pub session: SessionInfo,
    /// The limit that closed it, if one did.
    pub closed: Option<SessionLimit>,
    /// The refusals not recorded on their own.
    pub repeated_refusals: Vec<RepeatedRefusal>,
}

/// A limit that closes a session (see `SessionLimits` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionLimit {
    /// `hard_error_limit` error replies without an accepted message.
    HardErrorLimit,
    /// `max_commands` commands.
    CommandLimit,
    /// `max_session_secs` (plus, in a transaction, the DATA timeout).
    Lifetime,
}

/// How many more refusals of one stage and reason a session had after the
/// first, which was recorded on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatedRefusal {
    /// The SMTP stage (`mail`, `rcpt`, `command`, …).
    pub stage: String,
    /// Their reason code.
    pub reason: Reason,
    /// How many after the first.
    pub count: u32,
}

/// `message.duplicate`: a replay answered with the first message's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDuplicate {
    /// The session it came in.
    pub session: SessionInfo,
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO.
    pub rcpt_to: Vec<String>,
    /// SHA-256 of the bytes received this time (they may differ outside the
    /// signed part).
    pub sha256: String,
    /// The signers' signature hashes.
    pub signature_sha256: Vec<String>,
    /// The policy it was judged under.
    pub policy_version: String,
}

/// `duty.alert`: the duty officers of an urgent-lane message's
/// authorities alerted (or not, over the hourly cap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutyAlert {
    /// What happened: `refused`, `delayed` or `failed`.
    pub event: String,
    /// What the alerts say of it.
    pub what: String,
    /// The queue entry it concerns (`delayed`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<i64>,
    /// That entry's next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// The alerts queued.
    pub sent: Vec<DutyRecipient>,
    /// The alerts the authority's hourly cap held back.
    pub suppressed: Vec<DutyRecipient>,
    /// Subject of the gateway certificate that signed them.
    pub signed_by: String,
}

/// One duty address a [`DutyAlert`] was for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutyRecipient {
    /// The authority whose duty address it is.
    pub authority: String,
    /// The duty address.
    pub to: String,
    /// The emla id of the alert message, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
}

/// `postmaster.kept`: mail for the postmaster kept, unjudged, in the
/// mailbox under the data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostmasterKept {
    /// The session it came in.
    pub session: SessionInfo,
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO (the postmaster's addresses).
    pub rcpt_to: Vec<String>,
    /// Its id (the file's name).
    pub id: String,
    /// Where it is kept.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// `impl Payload` for each type, whose name is that of its [`AuditKind`].
macro_rules! kinds {
    ($($ty:ident),* $(,)?) => {
        $(impl Payload for $ty {
            fn kind(&self) -> AuditKind {
                AuditKind::$ty
            }
        })*
    };
}

kinds! {
    SmtpRejected,
    SmtpSessionSummary,
    MessageDuplicate,
    PostmasterKept,
    ReceiptQueued,
    ReceiptHeld,
    DutyAlert,
    AuditCheckpointStamped,
    PolicyReloaded,
    PolicyReloadFailed,
    CrlUpdated,
    CrlFetchFailed,
    OcspUpdated,
    OcspFetchFailed,
    RetentionPruned,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON the writers built by hand before these types, and what the
    /// types make of the same values: the same text, so the same hash.
    #[test]
    fn payloads_keep_the_recorded_shape() {
        let session = SessionInfo {
            client_ip: "127.0.0.1".into(),
            helo: "c".into(),
            tls_version: None,
            tls_cipher: None,
        };
        let mut by_hand = json!({
            "stage": "rcpt", "session": session, "mail_from": "a@b", "reason": Reason::RouteDenied,
            "detail": "d", "policy_version": "v1",
        });
        by_hand["rcpt"] = json!(None::<&str>);
        let typed = SmtpRejected {
            stage: "rcpt".into(),
            session,
            mail_from: "a@b".into(),
            reason: Reason::RouteDenied,
            detail: "d".into(),
            policy_version: "v1".into(),
            refused_for: RefusedFor::Rcpt(None),
        };
        let event = AuditEvent::of(None, &typed);
        assert_eq!(event.data.to_string(), by_hand.to_string());
        let back: SmtpRejected = serde_json::from_value(event.data).unwrap();
        assert_eq!(back, typed);

        let pruned = RetentionPruned::Bodies {
            received_before: "t".into(),
            bodies_days: 30,
            bodies: vec![PrunedBody {
                id: "m".into(),
                sha256: "s".into(),
            }],
        };
        let by_hand = json!({"what": "bodies", "received_before": "t", "bodies_days": 30u64,
                             "bodies": [json!({"id": "m", "sha256": "s"})]});
        let event = AuditEvent::of(None, &pruned);
        assert_eq!(event.data.to_string(), by_hand.to_string());
        let record = AuditRecord {
            seq: 1,
            at: 0,
            message_id: None,
            kind: event.kind,
            data_text: event.data.to_string(),
            data: event.data,
            prev_hash: String::new(),
            hash: String::new(),
        };
        assert_eq!(record.payload::<RetentionPruned>(), Some(pruned));
        assert_eq!(record.payload::<PolicyReloaded>(), None);
    }
}
