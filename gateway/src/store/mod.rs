//! Durable record: raw messages (content-addressed files), the message
//! table, the hash-chained audit log and the delivery queue, over sqlx
//! (SQLite by default, PostgreSQL when the URL says so).
//!
//! Nothing is answered `250` before [`Store::record`] returned `Ok`: by then
//! the body file and the database transaction are both on disk.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::config::BodyStorage;
use crate::reason::Reason;
use crate::trust::revocation::Method;

mod batch;
pub mod chain;
pub(crate) mod db;
pub mod decisions;
mod error;
mod evidence;
mod files;
pub mod holds;
pub mod index;
pub mod jobs;
pub mod keys;
pub mod kind;
pub mod ops;
pub mod overview;
pub mod payload;
pub mod policies;
pub mod queue;
mod recorder;
pub mod replay;
pub mod retention;
pub mod rows;
pub mod seal;
pub mod search;
pub mod state;

pub use crate::policy::Lane;
pub use error::StoreError;
pub use files::{open_body, BodyReader, BodyWriter, Spooled};
pub use jobs::{ExclusiveJob, JobLock};
pub use kind::{AuditKind, RemEvent};
pub use payload::Payload;
pub use queue::{AttemptNote, Claimed, QueueFilter, QueueUpdate};
pub use recorder::now_ms;
pub use rows::{
    Attempt, AttemptEncryption, AttemptTls, AuditRecord, CheckpointData, CheckpointMail,
    CheckpointSigner, ClearReason, Decision, Evidence, MessageRow, Outcome, QueueAction,
    QueueEntryHistory, QueueRow, RecipientOutcome, Route, Signer, Verdict,
};
pub use search::{Cursor, MessageSummary, SearchQuery, SignerKey};
pub use state::DeliveryState;

use db::Db;
use recorder::{Counters, Job, Prepared, PreparedEvent, PreparedMessage, PreparedQueue};

/// Facts about the SMTP session a decision was made in.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
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

/// The header fields of a message that its row keeps (as decoded; `None`
/// when absent); named as the columns of `messages`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MessageHeaders {
    /// `From:`.
    pub header_from: Option<String>,
    /// `To:`.
    pub header_to: Option<String>,
    /// `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:`.
    pub message_id: Option<String>,
    /// `Date:`.
    pub date: Option<String>,
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
    /// Header fields of the message.
    pub headers: MessageHeaders,
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
    /// The case reference: the `X-MLA-Reference` header, else the first
    /// match of the case pattern in `Subject:` (see
    /// [`case_ref`](crate::case_ref)); searched by
    /// `emla audit search --case`.
    pub case_ref: Option<String>,
    /// The request kind it declared (`[[kind]]` id); searched by
    /// `emla audit search --kind`.
    pub kind: Option<String>,
    /// The replay keys of an accepted message (see
    /// [`intake::replay`](crate::intake::replay)); empty otherwise.
    pub signature_keys: Vec<String>,
    /// The raw bytes to keep (always for accepted messages; for rejected
    /// ones only when configured). `None`: only the hash is kept.
    pub body: Option<Body>,
    /// The DSN parameters its client gave, if any.
    pub dsn: Option<crate::envelope::Dsn>,
}

/// A message's raw bytes: in memory, or, for a large one, in the spool
/// file it was received into (see [`BodyWriter`]).
#[derive(Clone, Debug)]
pub enum Body {
    /// Held in memory.
    Bytes(Arc<[u8]>),
    /// In `DATA_DIR/spool/`, fsynced.
    Spooled(Arc<Spooled>),
}

impl Body {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Spooled(s) => s.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes when in memory.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Body::Bytes(b) => Some(b),
            Body::Spooled(_) => None,
        }
    }
}

impl From<Arc<[u8]>> for Body {
    fn from(b: Arc<[u8]>) -> Body {
        Body::Bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body::Bytes(b.into())
    }
}

impl From<&[u8]> for Body {
    fn from(b: &[u8]) -> Body {
        Body::Bytes(b.into())
    }
}

/// One delivery to make: a message to one next hop, for some recipients.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueEntry {
    /// The emla message id.
    pub message_id: String,
    /// `host:port` of the next hop.
    pub next_hop: String,
    /// The recipients' authority.
    pub authority: String,
    /// The route that allowed it.
    pub route: String,
    /// The delivery lane.
    pub lane: Lane,
    /// Recipients at that next hop.
    pub recipients: Vec<String>,
}

/// One audit record before it is chained.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// The emla message id it concerns, if any.
    pub message_id: Option<String>,
    /// Everything about it, as one JSON object.
    pub data: serde_json::Value,
}

impl AuditEvent {
    /// The [`chain::content_hash`] its record will have: `data` serialised
    /// as [`Store::record`] stores it.
    pub fn content_hash(&self) -> String {
        chain::content_hash(
            self.kind.as_str(),
            self.message_id.as_deref(),
            &to_json(&self.data).unwrap_or_default(),
        )
    }
}

/// One CRL or OCSP response that decided a message, kept in the
/// `revocation_data` table under the SHA-256 of its bytes (the name the
/// audit record gives it).
#[derive(Clone, Debug)]
pub struct RevocationBlob {
    /// SHA-256 of `der`, lowercase hex.
    pub sha256: String,
    /// `crl` or `ocsp`.
    pub kind: String,
    /// The CRL (DER CertificateList) or OCSP response (DER OCSPResponse)
    /// exactly as used.
    pub der: Arc<[u8]>,
}

impl RevocationBlob {
    /// The blobs of a verdict's revocation evidence: one per distinct CRL
    /// or OCSP response whose bytes it carries.
    pub fn of(evidence: &[crate::trust::revocation::StatusEvidence]) -> Vec<RevocationBlob> {
        let mut out: Vec<RevocationBlob> = Vec::new();
        for e in evidence {
            let (Some(sha256), Some(der)) = (&e.sha256, &e.der) else {
                continue;
            };
            let (Method::Crl | Method::Ocsp) = e.method else {
                continue;
            };
            if out.iter().any(|b| &b.sha256 == sha256) {
                continue;
            }
            out.push(RevocationBlob {
                sha256: sha256.clone(),
                kind: e.method.as_str().to_string(),
                der: der.clone(),
            });
        }
        out
    }
}

/// What one decision writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The message row (absent for decisions before DATA).
    pub message: Option<MessageRecord>,
    /// Messages the gateway itself sends because of this decision
    /// (receipts, non-delivery notices), with their bodies; their queue
    /// entries go in `queue`.
    pub outgoing: Vec<MessageRecord>,
    /// Audit events, in order.
    pub events: Vec<AuditEvent>,
    /// Queue entries (accepted messages only).
    pub queue: Vec<QueueEntry>,
    /// Changes to queue entries (attempt outcomes, administrators' actions).
    pub queue_updates: Vec<QueueUpdate>,
    /// The CRLs and OCSP responses the decision used (content-addressed;
    /// one already archived is not written again).
    pub revocation: Vec<RevocationBlob>,
    /// Receipts held for their timestamp token, tried again, or released.
    pub holds: Vec<holds::HoldChange>,
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

/// What the writer has done since the store was opened (see
/// [`Store::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed: with group commit, fewer than `records`
    /// under load.
    pub transactions: u64,
    /// Records ([`Store::record`] calls) committed.
    pub records: u64,
    /// Audit events appended.
    pub events: u64,
    /// Transactions that failed (their callers got the error).
    pub failed: u64,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    data_dir: PathBuf,
    bodies: BodyStorage,
    /// With a KEK configured: bodies sealed at rest (see [`keys`]).
    sealing: Option<keys::Sealing>,
    writer: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    /// SHA-256s of revocation data known to be in `revocation_data`.
    archived: Mutex<Archived>,
}

/// Hashes of revocation data already committed, so that the same
/// multi-megabyte CRL is not sent with every message: bounded, the oldest
/// forgotten first (a forgotten one is sent again and ignored by
/// `ON CONFLICT DO NOTHING`). Rows of `revocation_data` are never deleted,
/// so a remembered hash stays true.
#[derive(Default)]
struct Archived {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Archived {
    /// Hashes remembered at most.
    const MAX: usize = 4096;

    fn contains(&self, sha256: &str) -> bool {
        self.set.contains(sha256)
    }

    fn insert(&mut self, sha256: &str) {
        if self.set.insert(sha256.to_string()) {
            self.order.push_back(sha256.to_string());
            while self.order.len() > Self::MAX {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner.db {
            Db::Sqlite(..) => "sqlite",
            Db::Postgres(_) => "postgres",
        };
        f.debug_struct("Store")
            .field("backend", &backend)
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store: runs the migrations of the
    /// backend `database_url` names (`sqlite://…` or `postgres://…`) and
    /// prepares `data_dir/messages/`.
    ///
    /// SQLite databases are created if missing and run in WAL mode with
    /// `synchronous=FULL`. A database that cannot be reached within a few
    /// seconds gives [`StoreError::Unavailable`]; a malformed URL
    /// [`StoreError::Config`]. Must be called inside a Tokio runtime: it
    /// starts the writer task.
    pub async fn open(database_url: &str, data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(database_url, data_dir, BodyStorage::Files).await
    }

    /// [`Store::open`], keeping bodies as `bodies` says.
    pub async fn open_with(
        database_url: &str,
        data_dir: &Path,
        bodies: BodyStorage,
    ) -> Result<Store, StoreError> {
        let clear = crate::config::StorageConfig::default();
        Self::open_sealed(database_url, data_dir, bodies, &clear).await
    }

    /// The store `config` names, bodies kept and sealed as it says.
    pub async fn open_config(config: &crate::config::Config) -> Result<Store, StoreError> {
        let (url, dir) = (&config.database_url, &config.data_dir);
        Self::open_sealed(url, dir, config.body_storage, &config.storage).await
    }

    /// [`Store::open_with`], bodies sealed at rest as `storage` says: its
    /// KEK must unwrap every data key (else [`StoreError::Config`]).
    pub async fn open_sealed(
        database_url: &str,
        data_dir: &Path,
        bodies: BodyStorage,
        storage: &crate::config::StorageConfig,
    ) -> Result<Store, StoreError> {
        files::prepare(data_dir)?;
        // Not fatal: a reader of the store (an auditor's CLI) may not write
        // there; a gateway that cannot spool answers large messages 451.
        match files::clean_spool(data_dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed spool files of unanswered messages"),
            Err(e) => tracing::warn!(
                dir = %files::spool_dir(data_dir).display(),
                error = %e,
                "cannot prepare the spool directory"
            ),
        }
        let db = Db::open(database_url).await?;
        let sealing = keys::Sealing::open(&db, storage).await?;
        let counters = Arc::new(Counters::default());
        let writer = recorder::spawn(db.clone(), counters.clone());
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                data_dir: data_dir.to_path_buf(),
                bodies,
                sealing,
                writer,
                counters,
                archived: Mutex::new(Archived::default()),
            }),
        })
    }

    /// Durably records one decision: body file (fsynced), then one
    /// transaction with the message row, its chained audit events and its
    /// queue entries.
    ///
    /// Concurrent calls share transactions (group commit). A record that is
    /// inconsistent (a body whose SHA-256 is not `sha256`, a queue entry for
    /// another message, a line feed in an event message id, a
    /// revocation blob whose SHA-256 is not its name) is refused with
    /// [`StoreError::Bug`] before anything is written.
    ///
    /// Revocation blobs go into `revocation_data` in the same transaction;
    /// those this store already committed are skipped.
    pub async fn record(&self, record: Record) -> Result<(), StoreError> {
        let invalid = |e| StoreError::Bug(format!("invalid record: {e}"));
        validate(&record).map_err(invalid)?;
        let Record {
            message,
            outgoing,
            events,
            queue,
            queue_updates,
            revocation,
            holds,
        } = record;
        let revocation = self.unarchived(revocation);
        let revocation = if revocation.is_empty() {
            revocation
        } else {
            // Hashing a large CRL is CPU work: off the async workers.
            tokio::task::spawn_blocking(move || validate_blobs(&revocation).map(|()| revocation))
                .await
                .map_err(|e| StoreError::Bug(format!("checking revocation data: {e}")))?
                .map_err(invalid)?
        };
        let blob_hashes: Vec<String> = revocation.iter().map(|b| b.sha256.clone()).collect();
        let message = match message {
            Some(m) => Some(self.prepare(m).await?),
            None => None,
        };
        let mut prepared_outgoing = Vec::with_capacity(outgoing.len());
        for m in outgoing {
            prepared_outgoing.push(self.prepare(m).await?);
        }
        let events = events
            .into_iter()
            .map(|e| {
                Ok(PreparedEvent {
                    data_json: to_json(&e.data)?,
                    kind: e.kind,
                    message_id: e.message_id,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let queue = queue
            .into_iter()
            .map(|q| {
                Ok(PreparedQueue {
                    recipients_json: to_json(&q.recipients)?,
                    entry: q,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            record: Prepared {
                message,
                outgoing: prepared_outgoing,
                events,
                queue,
                queue_updates,
                revocation,
                holds,
            },
            reply,
        };
        let stopped = || StoreError::Unavailable("the store writer has stopped".into());
        self.inner.writer.send(job).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())??;
        if !blob_hashes.is_empty() {
            let mut archived = self.archived();
            for h in &blob_hashes {
                archived.insert(h);
            }
        }
        Ok(())
    }

    fn archived(&self) -> std::sync::MutexGuard<'_, Archived> {
        self.inner
            .archived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// `blobs` without those already committed (and without duplicates).
    fn unarchived(&self, blobs: Vec<RevocationBlob>) -> Vec<RevocationBlob> {
        if blobs.is_empty() {
            return blobs;
        }
        let archived = self.archived();
        let mut out: Vec<RevocationBlob> = Vec::with_capacity(blobs.len());
        for b in blobs {
            if !archived.contains(&b.sha256) && !out.iter().any(|o| o.sha256 == b.sha256) {
                out.push(b);
            }
        }
        out
    }

    /// The archived CRL or OCSP response with this SHA-256: its kind
    /// (`crl` or `ocsp`) and bytes.
    pub async fn revocation_blob(
        &self,
        sha256: &str,
    ) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        named(
            "reading revocation data",
            self.inner.db.revocation_blob(sha256),
        )
        .await
    }

    /// Durably appends one audit event (a [`Store::record`] of it alone).
    pub async fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.record(Record {
            events: vec![event],
            ..Record::default()
        })
        .await
    }

    /// A message row ready for the writer, its body (if kept) on disk.
    async fn prepare(&self, mut m: MessageRecord) -> Result<PreparedMessage, StoreError> {
        let mut body_row = None;
        let sealing_key = match (&self.inner.sealing, &m.body) {
            (Some(s), Some(_)) => s.sealing_key(&self.inner.db).await?,
            _ => None,
        };
        // A spooled body that is sealed, or kept in the `bodies` table, is
        // taken whole (see docs/large-messages.md).
        let body = match m.body.take() {
            Some(Body::Spooled(spooled))
                if sealing_key.is_some() || self.inner.bodies == BodyStorage::Database =>
            {
                let bytes = tokio::fs::read(spooled.path()).await.map_err(|e| {
                    StoreError::Unavailable(format!("reading the spooled body: {e}"))
                })?;
                Some(Body::Bytes(bytes.into()))
            }
            other => other,
        };
        let body_stored = match body {
            Some(Body::Bytes(body)) if self.inner.bodies == BodyStorage::Database => {
                body_row = Some(match sealing_key {
                    Some(key) => seal_row(key, body, &m.sha256).await?,
                    None => body,
                });
                true
            }
            Some(Body::Spooled(spooled)) => {
                let dir = self.inner.data_dir.clone();
                tokio::task::spawn_blocking(move || files::store_spooled(&dir, &spooled))
                    .await
                    .map_err(|e| StoreError::Bug(format!("writing the body: {e}")))??;
                true
            }
            Some(Body::Bytes(body)) => {
                let dir = self.inner.data_dir.clone();
                let sha = m.sha256.clone();
                tokio::task::spawn_blocking(move || {
                    files::store_body_sealed(&dir, &sha, &body, sealing_key.as_ref())
                })
                .await
                .map_err(|e| StoreError::Bug(format!("writing the body: {e}")))??;
                true
            }
            None => false,
        };
        Ok(PreparedMessage {
            size: i64::try_from(m.size).unwrap_or(i64::MAX),
            verdict: Verdict::of(m.reason),
            rcpt_to_json: to_json(&m.rcpt_to)?,
            signers_json: to_json(&m.signers)?,
            body_stored,
            body_row,
            sender_keys: index::sender_keys(&m.mail_from, m.headers.header_from.as_deref()),
            recipient_keys: index::recipient_keys(&m.rcpt_to, m.headers.header_to.as_deref()),
            signer_keys: index::signer_keys(&m.signers),
            record: m,
        })
    }

    /// Walks the audit chain from the first record.
    ///
    /// Reads the records in pages (bounded memory), recomputes every hash
    /// (see [`chain`]), checks that seq runs 1, 2, 3… without gaps, that
    /// each record links to the one before, and that `audit_head` names the
    /// last record. Records appended while the walk runs are not checked.
    pub async fn verify_chain(&self) -> Result<ChainCheck, StoreError> {
        let db = &self.inner.db;
        let read = |e| StoreError::sqlx("reading the audit chain", e);
        let (head_seq, head_hash) = db.head().await.map_err(read)?;
        let mut verifier = self.chain_start().await?;
        loop {
            let page = db
                .audit_page(verifier.last_seq(), head_seq)
                .await
                .map_err(read)?;
            if page.is_empty() {
                break;
            }
            for row in &page {
                if let Err(broken) = verifier.push(row) {
                    return Ok(broken);
                }
            }
        }
        let walked = verifier.last_seq();
        let check = verifier.finish(head_seq, &head_hash);
        if walked == head_seq && matches!(check, ChainCheck::Intact { .. }) {
            if let Some(seq) = db.first_beyond_head().await.map_err(read)? {
                return Ok(ChainCheck::Broken {
                    seq,
                    problem: format!(
                        "record {seq} lies beyond the chain head: appended outside emla"
                    ),
                });
            }
        }
        Ok(check)
    }

    /// The message row `id` (`rcpt_to` and `signers` parsed), or `None`.
    pub async fn message(&self, id: &str) -> Result<Option<MessageRow>, StoreError> {
        named("reading a message", self.inner.db.message(id)).await
    }

    /// One page of messages matching `query`, in its order (see
    /// [`search`]).
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<MessageSummary>, StoreError> {
        named("searching messages", self.inner.db.search(query)).await
    }

    /// The emla ids of the messages whose `Message-ID:` header is
    /// `header_id` (angle brackets optional), oldest first, at most 100.
    pub async fn ids_by_header_message_id(
        &self,
        header_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        named(
            "reading messages",
            self.inner.db.ids_by_header_message_id(header_id),
        )
        .await
    }

    /// The audit records of a message in seq order, `data` parsed and
    /// `data_text` the exact hashed text. A record whose kind is no
    /// [`AuditKind`] (written outside emla) makes this fail.
    pub async fn audit_events(&self, message_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        named(
            "reading audit records",
            self.inner.db.audit_events(message_id),
        )
        .await
    }

    /// The queue rows of a message in insertion order, as `emla queue
    /// list --json` shows them.
    pub async fn queue_entries(&self, message_id: &str) -> Result<Vec<QueueRow>, StoreError> {
        let mut rows = self
            .queue_rows(&QueueFilter {
                message_id: Some(message_id.to_owned()),
                limit: u32::MAX,
                ..QueueFilter::default()
            })
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Number of rows in `messages`, `audit` and `queue`.
    pub async fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        named("counting rows", self.inner.db.counts()).await
    }

    /// Claims up to `limit` due queue entries for `holder` for `lease_ms`
    /// (see [`queue`]).
    pub async fn claim(
        &self,
        holder: &str,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = recorder::now_ms();
        named(
            "claiming queue entries",
            self.inner.db.claim(holder, now, now + lease_ms, limit),
        )
        .await
    }

    /// Gives back the claims `holder` still holds.
    pub async fn release_claims(&self, holder: &str) -> Result<u64, StoreError> {
        named(
            "releasing queue claims",
            self.inner.db.release_claims(holder),
        )
        .await
    }

    /// Queue rows for `emla queue list`, newest first.
    pub async fn queue_rows(&self, filter: &QueueFilter) -> Result<Vec<QueueRow>, StoreError> {
        named("reading the queue", self.inner.db.queue_rows(filter)).await
    }

    /// One queue row.
    pub async fn queue_row(&self, id: i64) -> Result<Option<QueueRow>, StoreError> {
        named("reading the queue", self.inner.db.queue_row(id)).await
    }

    /// One queue entry with the `relay.*` and `queue.*` audit records about
    /// it, in seq order (`emla queue show`).
    pub async fn queue_entry_history(
        &self,
        id: i64,
    ) -> Result<Option<QueueEntryHistory>, StoreError> {
        let Some(entry) = self.queue_row(id).await? else {
            return Ok(None);
        };
        let events = self
            .audit_events(&entry.delivery.message_id)
            .await?
            .into_iter()
            .filter(|e| e.queue_id() == Some(id))
            .collect();
        Ok(Some(QueueEntryHistory { entry, events }))
    }

    /// The raw message with this SHA-256, as received (the `bodies` table
    /// first when bodies are kept in the database, then the file), opened
    /// if sealed at rest.
    pub async fn read_body(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let stored = self.read_stored_body(sha256).await?;
        self.unseal(sha256, stored).await
    }

    async fn read_stored_body(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        if self.inner.bodies == BodyStorage::Database {
            let row = named("reading a message body", self.inner.db.body(sha256)).await?;
            if let Some(data) = row {
                return Ok(data);
            }
        }
        let path = self
            .body_path(sha256)
            .ok_or_else(|| StoreError::Bug(format!("{sha256:?} is not a SHA-256 in hex")))?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading {}: {e}", path.display())))
    }

    /// `stored`, the body named `sha256`, opened if it is sealed, and then
    /// checked against its name (a sealed file swapped for another opens).
    async fn unseal(&self, sha256: &str, stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let Some(id) = seal::key_id(&stored) else {
            return Ok(stored);
        };
        let keys = self.keyring_of(sha256, id).await?;
        let sha = sha256.to_owned();
        tokio::task::spawn_blocking(move || {
            let plain = seal::open_to_vec(&stored, &keys).map_err(|e| body_error(&sha, &e))?;
            let actual = hex::encode(ring::digest::digest(&ring::digest::SHA256, &plain));
            if actual != sha {
                return Err(StoreError::Bug(format!(
                    "body {sha} (sealed at rest) opens to a message whose SHA-256 is {actual}: \
                     the file or row was swapped for another body"
                )));
            }
            Ok(plain)
        })
        .await
        .map_err(|e| StoreError::Bug(format!("opening a body: {e}")))?
    }

    /// The keyring to open the body `sha256`, whose header says `id` (or
    /// why it is unreadable); a body already read is not reread.
    async fn keyring_of(
        &self,
        sha256: &str,
        id: Result<u32, seal::SealError>,
    ) -> Result<Arc<seal::Keyring>, StoreError> {
        let id = id.map_err(|e| body_error(sha256, &e))?;
        let Some(sealing) = &self.inner.sealing else {
            return Err(StoreError::Config(format!(
                "body {sha256} is sealed at rest (data key {id}) but no key-encryption key \
                 is configured: [storage] kek_file, kek_env or kek_credential"
            )));
        };
        let keys = sealing.keyring_for(&self.inner.db, id).await?;
        if keys.get(id).is_none() {
            return Err(body_error(sha256, &seal::SealError::UnknownKey(id)));
        }
        Ok(keys)
    }

    /// A reader of the stored file of body `sha256` that opens it if it is
    /// sealed: for streaming a body from disk. Its reads fail (carrying a
    /// [`seal::SealError`]) at the first segment that does not
    /// authenticate; unlike [`Store::read_body`] it does not check the
    /// plaintext's hash, which the reader must (it is only known at the
    /// end). Blocking reads: use it on a blocking thread.
    pub async fn body_file_reader(
        &self,
        sha256: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, StoreError> {
        use std::io::Read as _;
        let path = self
            .body_path(sha256)
            .ok_or_else(|| StoreError::Bug(format!("{sha256:?} is not a SHA-256 in hex")))?;
        let unavailable =
            |e: std::io::Error| StoreError::Unavailable(format!("reading {}: {e}", path.display()));
        let mut file = std::fs::File::open(&path).map_err(unavailable)?;
        let mut head = Vec::with_capacity(seal::HEADER_LEN);
        (&mut file)
            .take(seal::HEADER_LEN as u64)
            .read_to_end(&mut head)
            .map_err(unavailable)?;
        let whole = std::io::Cursor::new(head.clone()).chain(file);
        let Some(id) = seal::key_id(&head) else {
            return Ok(Box::new(whole));
        };
        let keys = self.keyring_of(sha256, id).await?;
        let reader = seal::OpenReader::new(whole, &keys).map_err(|e| body_error(sha256, &e))?;
        Ok(Box::new(reader))
    }

    /// Adds a data key that seals new bodies from now on (`emla keys
    /// rotate`); older keys stay for reading. Returns its id.
    pub async fn rotate_data_key(&self) -> Result<u32, StoreError> {
        self.sealing()?.add_key(&self.inner.db).await
    }

    /// Wraps every data key under the KEK `new` instead (`emla keys
    /// rewrap`); returns how many.
    pub async fn rewrap_data_keys(&self, new: &seal::Kek) -> Result<usize, StoreError> {
        self.sealing()?.rewrap(&self.inner.db, new).await
    }

    /// The data keys (`emla keys list`), oldest first.
    pub async fn data_keys(&self) -> Result<Vec<keys::KeyInfo>, StoreError> {
        self.sealing()?.list(&self.inner.db).await
    }

    fn sealing(&self) -> Result<&keys::Sealing, StoreError> {
        self.inner.sealing.as_ref().ok_or_else(|| {
            StoreError::Config(
                "no key-encryption key is configured: [storage] kek_file, kek_env or \
                 kek_credential"
                    .into(),
            )
        })
    }

    /// What the writer has done since this store was opened.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.counters;
        StoreStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Where the raw message with this SHA-256 (lowercase hex) is kept:
    /// `data_dir/messages/<first 2 hex>/<sha256>.eml`. `None` if `sha256`
    /// is not 64 lowercase hex digits. The file exists only if a record
    /// with `body_stored` was committed (or an orphan was left by a failed
    /// one).
    pub fn body_path(&self, sha256: &str) -> Option<PathBuf> {
        files::body_path(&self.inner.data_dir, sha256)
    }

    /// A new spool file for a body being received, holding `head` already.
    /// Blocking (a file create and a write).
    pub fn spool(&self, head: &[u8]) -> std::io::Result<BodyWriter> {
        BodyWriter::create(&self.inner.data_dir, head)
    }

    /// The stored body with this SHA-256: its bytes when it is small
    /// ([`IN_MEMORY_MAX`]) or kept in the database, else the file opened
    /// for streaming.
    pub async fn open_stored_body(&self, sha256: &str) -> Result<StoredBody, StoreError> {
        // A sealed body, or one in the `bodies` table, is read whole and
        // opened (streaming through seal::OpenReader is yet to come).
        if self.inner.bodies == BodyStorage::Database || self.inner.sealing.is_some() {
            return self.read_body(sha256).await.map(StoredBody::Bytes);
        }
        let (dir, sha) = (self.inner.data_dir.clone(), sha256.to_owned());
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<StoredBody> {
            let mut r = files::open_body(&dir, &sha)?;
            if r.len > IN_MEMORY_MAX {
                return Ok(StoredBody::File(r));
            }
            let mut bytes = Vec::with_capacity(r.len as usize);
            std::io::Read::read_to_end(&mut r.file, &mut bytes)?;
            Ok(StoredBody::Bytes(bytes))
        });
        opened
            .await
            .map_err(|e| StoreError::Bug(format!("reading a body: {e}")))?
            .map_err(|e: std::io::Error| {
                StoreError::Unavailable(format!("reading the stored message: {e}"))
            })
    }
}

/// Bodies up to this size are held in memory from DATA to the relay;
/// larger ones are spooled to disk while received and streamed from the
/// file (see docs/large-messages.md).
pub const IN_MEMORY_MAX: u64 = 1 << 20;

/// A stored body as [`Store::open_stored_body`] gives it.
pub enum StoredBody {
    /// Small, or from the database: the bytes.
    Bytes(Vec<u8>),
    /// Large: the file, to stream.
    File(BodyReader),
}

/// A unique, sortable message id: reception time and 64 random bits.
pub fn new_message_id(hostname: &str) -> String {
    use ring::rand::SecureRandom;
    let mut rnd = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut rnd);
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}@{hostname}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        hex::encode(rnd)
    )
}

/// `body` sealed under `key` for the `bodies` table (off the async
/// workers: a large body is CPU work).
async fn seal_row(
    key: Arc<seal::DataKey>,
    body: Arc<[u8]>,
    sha256: &str,
) -> Result<Arc<[u8]>, StoreError> {
    let sealed = tokio::task::spawn_blocking(move || seal::seal_to_vec(&key, &body))
        .await
        .map_err(|e| StoreError::Bug(format!("sealing the body: {e}")))?;
    sealed
        .map(Arc::from)
        .map_err(|e| StoreError::Unavailable(format!("sealing body {sha256}: {e}")))
}

/// Why the sealed body `sha256` cannot be opened, as a store error.
fn body_error(sha256: &str, e: &seal::SealError) -> StoreError {
    let text = format!("body {sha256} (sealed at rest): {e}");
    match e {
        seal::SealError::Io(_) => StoreError::Unavailable(text),
        _ => StoreError::Bug(text),
    }
}

/// What a database call gives, its error named by what the store was
/// doing.
async fn named<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    call.await.map_err(|e| StoreError::sqlx(what, e))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Bug(format!("serialising a record: {e}")))
}

/// Revocation blobs must be named by the SHA-256 of their bytes.
fn validate_blobs(blobs: &[RevocationBlob]) -> Result<(), String> {
    for b in blobs {
        if !files::is_sha256_hex(&b.sha256) {
            return Err(format!(
                "revocation data: sha256 {:?} is not 64 lowercase hex digits",
                b.sha256
            ));
        }
        if !matches!(b.kind.as_str(), "crl" | "ocsp") {
            return Err(format!(
                "revocation data {}: kind {:?} is neither crl nor ocsp",
                b.sha256, b.kind
            ));
        }
        let actual = hex::encode(ring::digest::digest(&ring::digest::SHA256, &b.der));
        if actual != b.sha256 {
            return Err(format!(
                "revocation data: its SHA-256 is {actual}, the record says {}",
                b.sha256
            ));
        }
    }
    Ok(())
}

/// Programming errors a record must not carry.
fn validate(record: &Record) -> Result<(), String> {
    for m in record.message.iter().chain(&record.outgoing) {
        if !files::is_sha256_hex(&m.sha256) {
            return Err(format!(
                "message {}: sha256 {:?} is not 64 lowercase hex digits",
                m.id, m.sha256
            ));
        }
        if let Some(Body::Spooled(s)) = &m.body {
            if s.sha256() != m.sha256 {
                return Err(format!(
                    "message {}: sha256 {} but the spooled body hashes to {}",
                    m.id,
                    m.sha256,
                    s.sha256()
                ));
            }
        }
        if let Some(body) = &m.body {
            if body.len() != m.size {
                return Err(format!(
                    "message {}: size {} but the body has {} bytes",
                    m.id,
                    m.size,
                    body.len()
                ));
            }
        }
    }
    let mut ids = record
        .message
        .iter()
        .chain(&record.outgoing)
        .map(|m| &m.id)
        .peekable();
    if ids.peek().is_some() {
        let ids: Vec<&String> = ids.collect();
        if let Some(q) = record.queue.iter().find(|q| !ids.contains(&&q.message_id)) {
            return Err(format!(
                "queue entry for message {} recorded with message {}",
                q.message_id, ids[0]
            ));
        }
    }
    for e in &record.events {
        if e.message_id.as_deref().is_some_and(|id| id.contains('\n')) {
            return Err(format!(
                "audit event message id {:?} has a line feed",
                e.message_id
            ));
        }
    }
    Ok(())
}
