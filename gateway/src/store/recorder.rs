//! Group commit: one writer task per [`Store`](super::Store) takes every
//! record queued since its last commit (up to [`MAX_BATCH`]) and writes them
//! in one transaction, so under load one fsync covers many messages.
//!
//! Callers prepare their record (body file already on disk, JSON already
//! serialised) and wait on a oneshot for the outcome of the transaction that
//! contains it. When a transaction fails, every caller in it gets the
//! [`StoreError`] of the failure (unavailable, or a bug); nothing of the batch is recorded. A batch
//! that fails on a constraint (a duplicate message id, a queue entry for an
//! unknown message) is retried record by record, so one bad record does not
//! turn away the others. The writer never stops on an error: a database that
//! is down fails the batches of that moment and the pool reconnects later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::db::Db;
use super::queue::QueueUpdate;
use super::{MessageRecord, QueueEntry, StoreError};

/// Most records written in one transaction.
pub const MAX_BATCH: usize = 128;

/// Records waiting for the writer before callers wait to enqueue.
pub const CHANNEL: usize = 1024;

/// A message row ready to insert.
#[derive(Debug)]
pub struct PreparedMessage {
    /// The record, with its body dropped (it is on disk already).
    pub record: MessageRecord,
    /// `size` as the database stores it.
    pub size: i64,
    /// `accept` or `reject`.
    pub verdict: super::Verdict,
    /// `rcpt_to` as JSON text.
    pub rcpt_to_json: String,
    /// `signers` as JSON text.
    pub signers_json: String,
    /// Whether the body was kept (as a file, or in `body_row`).
    pub body_stored: bool,
    /// The body, when it goes into the `bodies` table in this transaction.
    pub body_row: Option<std::sync::Arc<[u8]>>,
    /// Rows of `message_senders` (see [`index`](super::index)).
    pub sender_keys: Vec<String>,
    /// Rows of `message_recipients`.
    pub recipient_keys: Vec<String>,
    /// Rows of `message_signers`: `(sha256, serial)`.
    pub signer_keys: Vec<(String, String)>,
}

/// An audit event with its data serialised once, exactly as it is hashed.
#[derive(Debug)]
pub struct PreparedEvent {
    /// Event kind.
    pub kind: super::AuditKind,
    /// The message it concerns.
    pub message_id: Option<String>,
    /// `data` as JSON text.
    pub data_json: String,
}

/// A queue entry with its recipients serialised.
#[derive(Debug)]
pub struct PreparedQueue {
    /// The entry.
    pub entry: QueueEntry,
    /// `recipients` as JSON text.
    pub recipients_json: String,
}

/// One [`Record`](super::Record), ready for the writer.
#[derive(Debug)]
pub struct Prepared {
    /// The message row.
    pub message: Option<PreparedMessage>,
    /// Rows of messages the gateway itself sends.
    pub outgoing: Vec<PreparedMessage>,
    /// Audit events, in order.
    pub events: Vec<PreparedEvent>,
    /// Queue rows.
    pub queue: Vec<PreparedQueue>,
    /// Changes to existing queue rows.
    pub queue_updates: Vec<QueueUpdate>,
    /// Rows of `revocation_data` (inserted unless present).
    pub revocation: Vec<super::RevocationBlob>,
    /// Changes to held receipts.
    pub holds: Vec<super::holds::HoldChange>,
}

/// Counters of the writer's work.
#[derive(Debug, Default)]
pub struct Counters {
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Audit events committed.
    pub events: AtomicU64,
    /// Transactions that failed.
    pub failed: AtomicU64,
}

/// What a caller hands the writer.
pub struct Job {
    /// The record.
    pub record: Prepared,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Starts the writer task; it ends when every sender is dropped.
pub fn spawn(db: Db, counters: Arc<Counters>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(run(db, counters, rx));
    tx
}

async fn run(db: Db, counters: Arc<Counters>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (records, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|j| (j.record, j.reply)).unzip();
        let (records, result) = commit(&db, &counters, records).await;
        match result {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) if is_constraint(&e) && records.len() > 1 => {
                tracing::warn!(
                    "store: batch of {} rejected ({e}); retrying record by record",
                    records.len()
                );
                for (record, reply) in records.into_iter().zip(replies) {
                    let (_, result) = commit(&db, &counters, vec![record]).await;
                    let _ = reply.send(result.map_err(to_store_error));
                }
            }
            Err(e) => {
                tracing::error!(
                    "store: transaction of {} records failed: {e}",
                    replies.len()
                );
                let e = to_store_error(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Why a commit failed.
enum CommitError {
    /// The database said no.
    Sql(sqlx::Error),
    /// The transaction task panicked (a bug); the batch is not recorded.
    Panicked,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Sql(e) => e.fmt(f),
            CommitError::Panicked => f.write_str("the transaction task panicked"),
        }
    }
}

/// Writes `records` in one transaction, on a task of its own so that even a
/// panic only fails this batch. Gives the records back for a retry.
async fn commit(
    db: &Db,
    counters: &Counters,
    records: Vec<Prepared>,
) -> (Vec<Prepared>, Result<(), CommitError>) {
    let n = records.len() as u64;
    let task_db = db.clone();
    let joined = tokio::spawn(async move {
        let result = task_db.write_batch(&records, now_ms()).await;
        (records, result)
    })
    .await;
    let (records, error) = match joined {
        Ok((records, Ok(events))) => {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            counters.records.fetch_add(n, Ordering::Relaxed);
            counters.events.fetch_add(events, Ordering::Relaxed);
            return (records, Ok(()));
        }
        Ok((records, Err(e))) => (records, CommitError::Sql(e)),
        Err(_) => (Vec::new(), CommitError::Panicked),
    };
    counters.failed.fetch_add(1, Ordering::Relaxed);
    (records, Err(error))
}

fn is_constraint(e: &CommitError) -> bool {
    match e {
        CommitError::Sql(sqlx::Error::Database(d)) => {
            !matches!(d.kind(), sqlx::error::ErrorKind::Other)
        }
        _ => false,
    }
}

fn to_store_error(e: CommitError) -> StoreError {
    match e {
        CommitError::Sql(e) => StoreError::sqlx("recording", e),
        CommitError::Panicked => StoreError::Bug("recording: the transaction task panicked".into()),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
