//! Durable record: raw messages (content-addressed files), the message
//! table, the hash-chained audit log and the delivery queue, over sqlx
//! (SQLite by default, PostgreSQL when the URL says so).
//!
//! Nothing is answered `250` before [`Store::record`] returned `Ok`: by then
//! the body file and the database transaction are both on disk.

use std::path::Path;
use std::sync::Arc;

use crate::reason::Reason;

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// The database or the disk cannot take the write now (down, full,
    /// read-only): the SMTP client gets `451 4.3.0` and retries.
    Unavailable(String),
    /// The configuration (URL, data directory) is unusable.
    Config(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "storage unavailable: {e}"),
            StoreError::Config(e) => write!(f, "storage configuration: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Facts about the SMTP session a decision was made in.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SessionInfo {
    /// The client's IP address.
    pub client_ip: String,
    /// The HELO/EHLO name it gave.
    pub helo: String,
    /// TLS protocol version, if STARTTLS was used (e.g. `TLSv1.3`).
    pub tls_version: Option<String>,
    /// TLS cipher suite, if STARTTLS was used.
    pub tls_cipher: Option<String>,
}

/// One message that reached the end of DATA, accepted or rejected.
#[derive(Clone, Debug)]
pub struct MessageRecord {
    /// The emla message id (quoted in the `250` reply).
    pub id: String,
    /// Reception time, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// SHA-256 of the raw message, hex.
    pub sha256: String,
    /// Size of the raw message in bytes.
    pub size: u64,
    /// The SMTP session.
    pub session: SessionInfo,
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO, in order.
    pub rcpt_to: Vec<String>,
    /// Header fields of the message (as decoded; `None` when absent).
    pub header_from: Option<String>,
    /// `To:`.
    pub header_to: Option<String>,
    /// `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:`.
    pub message_id: Option<String>,
    /// `Date:`.
    pub date: Option<String>,
    /// The verdict's reason code (`Reason::Ok` = accepted).
    pub reason: Reason,
    /// The verdict's detail.
    pub detail: String,
    /// Signer reports, as `emla verify --json` prints them.
    pub signers: serde_json::Value,
    /// The sender's authority id.
    pub authority: Option<String>,
    /// The policy version the decision was made under.
    pub policy_version: String,
    /// The raw bytes to keep (always for accepted messages; for rejected
    /// ones only when configured). `None`: only the hash is kept.
    pub body: Option<Arc<[u8]>>,
}

/// One delivery to make: a message to one next hop, for some recipients.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QueueEntry {
    /// The emla message id.
    pub message_id: String,
    /// `host:port` of the next hop.
    pub next_hop: String,
    /// The recipients' authority.
    pub authority: String,
    /// The route that allowed it.
    pub route: String,
    /// `normal` or `urgent`.
    pub lane: String,
    /// Recipients at that next hop.
    pub recipients: Vec<String>,
}

/// One audit record before it is chained.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// What happened, e.g. `message.accepted`, `smtp.rejected`, `policy.reloaded`.
    pub kind: String,
    /// The emla message id it concerns, if any.
    pub message_id: Option<String>,
    /// Everything about it, as one JSON object.
    pub data: serde_json::Value,
}

/// What one decision writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The message row (absent for decisions before DATA).
    pub message: Option<MessageRecord>,
    /// Audit events, in order.
    pub events: Vec<AuditEvent>,
    /// Queue entries (accepted messages only).
    pub queue: Vec<QueueEntry>,
}

/// Result of walking the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every record links to its predecessor.
    Intact {
        /// Number of records.
        records: u64,
        /// Hash of the last record (hex), empty when there is none.
        head: String,
    },
    /// The first broken link.
    Broken {
        /// Sequence number of the first record that does not verify.
        seq: i64,
        /// What is wrong with it (edited, missing predecessor, reordered).
        problem: String,
    },
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    _private: Arc<()>,
}

impl Store {
    /// Opens (creating if needed) the store: runs the migrations of the
    /// backend `database_url` names (`sqlite://…` or `postgres://…`) and
    /// prepares `data_dir/messages/`.
    pub async fn open(database_url: &str, data_dir: &Path) -> Result<Store, StoreError> {
        let _ = (database_url, data_dir);
        todo!()
    }

    /// Durably records one decision: body file (fsynced), then one
    /// transaction with the message row, its chained audit events and its
    /// queue entries.
    pub async fn record(&self, record: Record) -> Result<(), StoreError> {
        let _ = record;
        todo!()
    }

    /// Walks the audit chain from the first record.
    pub async fn verify_chain(&self) -> Result<ChainCheck, StoreError> {
        todo!()
    }
}
