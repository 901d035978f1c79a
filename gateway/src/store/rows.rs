//! What the store gives back, typed: the message row, queue entries, audit
//! records, and the parts of audit records' `data` that renderers read
//! (a decision, a delivery attempt, an operator's action).
//!
//! Every type serialises to the JSON the `--json` outputs have always
//! shown (field names are column names). Output goes through
//! [`serde_json::Value`], whose objects keep keys sorted, so the bytes are
//! those of the JSON objects the store used to build by hand.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kind::AuditKind;
use super::state::DeliveryState;
use super::Lane;
use crate::reason::Reason;

/// The verdict column of a message: what a reason code amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Accepted (`Reason::Ok`).
    Accept,
    /// Rejected (any other reason).
    Reject,
}

impl Verdict {
    /// The verdict of a reason code.
    pub fn of(reason: Reason) -> Verdict {
        if reason == Reason::Ok {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }

    /// As stored: `accept` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
        }
    }

    /// Parses a stored verdict.
    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Accept, Verdict::Reject]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `messages` (the JSON columns parsed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRow {
    /// The emla message id.
    pub id: String,
    /// Reception time, ms since the epoch.
    pub received_at: i64,
    /// SHA-256 of the raw message, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// The SMTP session (its columns).
    #[serde(flatten)]
    pub session: super::SessionInfo,
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO.
    pub rcpt_to: Vec<String>,
    /// The header fields (their columns).
    #[serde(flatten)]
    pub headers: super::MessageHeaders,
    /// Accepted or rejected.
    pub verdict: Verdict,
    /// The reason code.
    pub reason: Reason,
    /// The verdict's detail.
    pub detail: String,
    /// The signer reports as recorded (`emla verify --json`'s `signers`),
    /// kept as recorded so `recorded.json` shows them byte for byte; read
    /// them with [`MessageRow::signer_list`].
    pub signers: Value,
    /// The sender's authority.
    pub authority: Option<String>,
    /// The policy version of the decision.
    pub policy_version: String,
    /// Whether the body is kept.
    pub body_stored: bool,
    /// The case reference.
    pub case_ref: Option<String>,
    /// The request kind it declared (`[[kind]]` id).
    pub kind: Option<String>,
}

impl MessageRow {
    /// The recorded signers, typed (empty when the column holds no list).
    pub fn signer_list(&self) -> Vec<Signer> {
        list_of(&self.signers)
    }

    /// Whether the message was accepted.
    pub fn accepted(&self) -> bool {
        self.reason == Reason::Ok
    }
}

/// One signer as recorded (a
/// [`SignerReport`](crate::verify::SignerReport) as the audit record holds it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Signer {
    /// The signer's address.
    pub email: Option<String>,
    /// rfc822Name SANs of the certificate.
    pub emails: Vec<String>,
    /// Subject DN.
    pub subject: Option<String>,
    /// Issuer DN.
    pub issuer: Option<String>,
    /// Serial number, hex.
    pub serial: Option<String>,
    /// SHA-256 of the certificate, hex.
    pub sha256: Option<String>,
    /// Public key algorithm.
    pub key_algorithm: Option<String>,
    /// Digest and signature algorithm of the SignerInfo.
    pub signature_algorithm: Option<String>,
    /// SHA-256 of the SignerInfo's signature value (the replay key).
    pub signature_sha256: Option<String>,
    /// Subjects of the validated chain.
    pub chain: Vec<String>,
    /// The authority whose anchors validated it.
    pub authority: Option<String>,
}

/// A row of `queue`: one delivery to one next hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRow {
    /// Queue row id.
    pub id: i64,
    /// The delivery (its recipients: those still to deliver to).
    #[serde(flatten)]
    pub delivery: super::QueueEntry,
    /// Where it stands.
    pub status: DeliveryState,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due, ms.
    pub next_attempt_at: i64,
    /// When it was queued, ms.
    pub created_at: i64,
    /// The instance holding a claim on it.
    pub claimed_by: Option<String>,
    /// Until when, ms.
    pub lease_until: Option<i64>,
    /// When the last attempt ended, ms.
    pub last_attempt_at: Option<i64>,
    /// Why the last attempt did not deliver.
    pub last_error: Option<String>,
    /// Last change, ms.
    pub updated_at: Option<i64>,
    /// The next hop's queue id from its `250` (the last one, when several
    /// attempts relayed some recipients each), when its reply named one.
    pub next_hop_queue_id: Option<String>,
}

/// A queue entry with the audit records of its attempts and of the
/// operators' actions on it (`emla queue show`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueEntryHistory {
    /// The entry.
    pub entry: QueueRow,
    /// Its `relay.*` and `queue.*` records, in seq order.
    pub events: Vec<AuditRecord>,
}

/// An audit record as read back: the row, `data` parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number.
    pub seq: i64,
    /// Time, ms since the epoch.
    pub at: i64,
    /// The message it concerns.
    pub message_id: Option<String>,
    /// What it records.
    pub kind: AuditKind,
    /// Its data; the shape depends on `kind` (see [`AuditRecord::decision`],
    /// [`AuditRecord::attempt`], [`AuditRecord::queue_action`]).
    pub data: Value,
    /// The data exactly as hashed.
    pub data_text: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

impl AuditRecord {
    /// The decision, for `message.accepted` and `message.rejected`.
    pub fn decision(&self) -> Option<Decision> {
        self.kind.is_decision().then(|| typed(&self.data))
    }

    /// The delivery attempt, for `relay.*`.
    pub fn attempt(&self) -> Option<Attempt> {
        matches!(
            self.kind,
            AuditKind::RelayDelivered | AuditKind::RelayDeferred | AuditKind::RelayFailed
        )
        .then(|| typed(&self.data))
    }

    /// The operator's action, for `queue.*`.
    pub fn queue_action(&self) -> Option<QueueAction> {
        matches!(self.kind, AuditKind::QueueRetry | AuditKind::QueueCancelled)
            .then(|| typed(&self.data))
    }

    /// The queue entry a `relay.*` or `queue.*` record is about.
    pub fn queue_id(&self) -> Option<i64> {
        if !self.kind.is_queue_event() {
            return None;
        }
        self.attempt()
            .and_then(|a| a.queue_id)
            .or_else(|| self.queue_action().map(|q| q.queue_id))
    }
}

/// The data of a decision record (`message.accepted`,
/// `message.rejected`); written (by the intake) and read with this type.
/// Fields are optional so that records of older versions still read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Decision {
    /// The SMTP session.
    pub session: Option<super::SessionInfo>,
    /// MAIL FROM.
    pub mail_from: Option<String>,
    /// RCPT TO.
    pub rcpt_to: Vec<String>,
    /// Size in bytes (as received, also when too large).
    pub size: Option<u64>,
    /// `From:`.
    pub from: Option<String>,
    /// `To:`.
    pub to: Option<String>,
    /// `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:`.
    pub message_id: Option<String>,
    /// `Date:`.
    pub date: Option<String>,
    /// Accepted or rejected.
    pub verdict: Option<Verdict>,
    /// The reason code.
    pub reason: Option<Reason>,
    /// The detail.
    pub detail: Option<String>,
    /// SHA-256 of the raw message.
    pub sha256: Option<String>,
    /// The signers.
    pub signers: Vec<Signer>,
    /// The routing of each recipient.
    pub recipients: Vec<Route>,
    /// What established the revocation status of each certificate; `None`
    /// in records written before revocation evidence was recorded.
    pub revocation: Option<Vec<Evidence>>,
    /// The sender's authority.
    pub authority: Option<String>,
    /// The request kind the message declared (`[[kind]]` id); absent when
    /// none (and in records written before kinds existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The policy version.
    pub policy_version: Option<String>,
    /// Whether the body is kept.
    pub body_stored: Option<bool>,
    /// Of a message that arrived S/MIME-encrypted: how, and to which
    /// gateway certificate. `size` and `sha256` are then those of the
    /// decrypted message, which is what is kept, judged and relayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How an inbound message was encrypted (see
/// [`EncryptionReport`](crate::smime::decrypt::EncryptionReport)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Encryption {
    /// `enveloped-data` or `authenveloped-data`.
    pub cms_type: String,
    /// The gateway decryption certificate it was opened with.
    pub recipient: Option<EncryptionRecipient>,
    /// Key transport or agreement, e.g. `rsaes-oaep-sha256`.
    pub key_algorithm: Option<String>,
    /// Content encryption, e.g. `aes-256-gcm`.
    pub content_algorithm: Option<String>,
    /// How many RecipientInfos the message has.
    pub recipient_count: usize,
    /// SHA-256 of the encrypted message exactly as received.
    pub received_sha256: String,
    /// Its size in bytes.
    pub received_size: u64,
    /// Whether those bytes are kept (`emla audit export` writes them).
    pub received_stored: bool,
    /// SHA-256 of the decrypted message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrypted_sha256: Option<String>,
    /// Of a triple-wrapped message, the outer signature's signers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outer_signers: Vec<String>,
    /// Under AES-CBC, the real reason behind a `decrypt-failed` reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A gateway decryption certificate as a decision record names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncryptionRecipient {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// subjectKeyIdentifier, hex.
    pub ski: Option<String>,
    /// SHA-256 of the certificate.
    pub sha256: String,
}

/// Where one recipient was routed (a
/// [`RecipientRoute`](crate::verify::RecipientRoute) as recorded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Route {
    /// The recipient.
    pub recipient: Option<String>,
    /// The route's name.
    pub route: Option<String>,
    /// The recipient's authority.
    pub authority: Option<String>,
    /// `host:port` of the next hop.
    pub next_hop: Option<String>,
    /// The delivery lane.
    pub lane: Option<Lane>,
}

/// Revocation evidence for one certificate, as recorded: the trust
/// layer's own type, read back as written.
pub type Evidence = crate::trust::revocation::StatusEvidence;

/// The data of a delivery attempt record (`relay.*`); written (by the
/// relay worker) and read with this type. Fields are optional so that
/// records of older versions still read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    /// The queue entry.
    pub queue_id: Option<i64>,
    /// Which attempt (1 = the first).
    pub attempt: Option<i64>,
    /// `host:port` tried.
    pub next_hop: Option<String>,
    /// The recipients' authority.
    pub authority: Option<String>,
    /// The route that allowed the delivery.
    pub route: Option<String>,
    /// The delivery lane.
    pub lane: Option<Lane>,
    /// The gateway instance that made the attempt.
    pub instance: Option<String>,
    /// What the connection was protected with (`None`: no connection).
    pub tls: Option<AttemptTls>,
    /// How the message was S/MIME-encrypted for the recipients' authority
    /// (`None`: its authority has `encrypt = "never"`, or nothing was sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<AttemptEncryption>,
    /// Per recipient, what the next hop answered.
    pub recipients: Vec<RecipientOutcome>,
    /// The entry's state after it (records written before the state
    /// vocabulary say `queued` and `delivered`, read as `accepted` and
    /// `relayed`).
    pub status: Option<DeliveryState>,
    /// Whether the queue lifetime ran out.
    pub expired: bool,
    /// Why it did not deliver.
    pub error: Option<String>,
    /// When the next attempt is due (ms), while still queued.
    pub next_attempt_at: Option<i64>,
    /// How long the attempt took.
    pub duration_ms: Option<u64>,
}

/// The TLS of an attempt (a
/// [`TlsReport`](crate::relay::deliver::TlsReport) as recorded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptTls {
    /// Whether STARTTLS was used.
    pub encrypted: bool,
    /// How the certificate was checked.
    pub verification: Option<String>,
    /// SHA-256 of the next hop's certificate.
    pub peer_certificate_sha256: Option<String>,
}

/// How a relayed message was S/MIME-encrypted for the recipients'
/// authority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptEncryption {
    /// Whether it was encrypted.
    pub encrypted: bool,
    /// The content-encryption algorithm (`aes-256-cbc`, `aes-256-gcm`).
    pub cipher: Option<String>,
    /// SHA-256 of each certificate it was encrypted to.
    pub certificates: Vec<String>,
    /// Why it went in clear although the authority has `encrypt` set.
    pub clear: Option<ClearReason>,
}

/// Why a message went in clear to an authority with `encrypt` set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClearReason {
    /// `encrypt = "when-certificate"` and no certificate valid then.
    NoValidCertificate,
}

/// One recipient's outcome in an attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecipientOutcome {
    /// The recipient.
    pub recipient: Option<String>,
    /// What happened (a
    /// [`RcptOutcome`](crate::relay::deliver::RcptOutcome) as recorded).
    pub outcome: Outcome,
}

/// A recipient's outcome: `result` (what the next hop answered:
/// `relayed`, `deferred`, `refused`; records written before the state
/// vocabulary say `delivered` for `relayed`), the reply code and text, the
/// next hop's queue id and where the recipient stands after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome {
    /// `relayed` (older records: `delivered`), `deferred` or `refused`.
    pub result: Option<String>,
    /// The SMTP reply code.
    pub code: Option<u16>,
    /// The reply, one line, in full.
    pub reply: Option<String>,
    /// The next hop's queue id, read from its `250` when relayed (none
    /// when its reply names none in a known form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// Where the recipient stands after this attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<DeliveryState>,
}

/// The data of an operator's action on a queue entry (`queue.*`); written
/// and read with this type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueAction {
    /// The queue entry.
    pub queue_id: i64,
    /// Its state before.
    pub previous_status: Option<DeliveryState>,
    /// Who did it.
    pub operator: String,
}

/// The data of an `audit.checkpoint` record; written and read with this
/// type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointData {
    /// The seq of the chain head the checkpoint states.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// When the checkpoint was made (RFC 3339).
    pub at: String,
    /// The checkpoint file's name.
    pub file: Option<String>,
    /// SHA-256 of the checkpoint file.
    pub sha256: String,
    /// Whether a detached signature was written with it.
    pub signed: bool,
    /// The gateway certificate that signed it.
    pub signer: Option<CheckpointSigner>,
    /// Where it was mailed, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailed: Option<CheckpointMail>,
    /// The signature's RFC 3161 timestamp, when a TSA is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<super::payload::Timestamp>,
}

/// The certificate that signed a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointSigner {
    /// Its subject.
    pub subject: String,
    /// SHA-256 of its DER.
    pub sha256: String,
}

/// The mail that carried a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointMail {
    /// The auditor's address.
    pub to: String,
    /// The emla id of the mail.
    pub mail_id: String,
}

impl CheckpointData {
    /// The data of an `audit.checkpoint` record as stored (the exact
    /// text); `None` when it does not parse.
    pub fn parse(data_text: &str) -> Option<CheckpointData> {
        serde_json::from_str(data_text).ok()
    }
}

/// `data` as `T`; what does not fit (a record written by an older version,
/// or edited) reads as `T::default()`.
pub(super) fn typed<T: for<'de> Deserialize<'de> + Default>(data: &Value) -> T {
    serde_json::from_value(data.clone()).unwrap_or_default()
}

/// A JSON list as `Vec<T>`, elements that do not fit left out.
pub(super) fn list_of<T: for<'de> Deserialize<'de>>(v: &Value) -> Vec<T> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| serde_json::from_value(e.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `value` as JSON text, keys sorted as [`Value`] keeps them.
pub fn to_json_text<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_value(value)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_reads_from_its_record() {
        let data = serde_json::json!({
            "verdict": "accept", "reason": "ok", "detail": "d",
            "recipients": [{"recipient": "b@c", "route": "r", "authority": "bb",
                            "next_hop": "mx:25", "lane": "urgent"}],
            "revocation": [{"subject": "CN=a", "serial": "01", "method": "none", "issuer": ""}],
            "unrelated": 1,
        });
        let d: Decision = typed(&data);
        assert_eq!(d.reason, Some(Reason::Ok));
        assert_eq!(d.recipients[0].lane, Some(Lane::Urgent));
        assert_eq!(
            d.revocation.unwrap()[0].method,
            crate::trust::revocation::Method::None
        );
        let none: Decision = typed(&serde_json::json!({"reason": "no-such-code"}));
        assert_eq!(none, Decision::default());
    }
}
