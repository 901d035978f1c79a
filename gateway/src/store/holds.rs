//! Receipts held for their timestamp token (`[evidence] tsa_unavailable =
//! "wait"`), table `receipt_holds`: written, retried and removed in the
//! write transaction of a [`Record`](super::Record) (`holds`), so a held
//! receipt is never lost nor sent twice; read by the job that asks the TSA
//! again ([`crate::receipts::hold`]).

use super::db::{on_pool, Db};
use super::{Store, StoreError};

/// One held receipt, as its row reads.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Hold {
    /// The emla id the receipt gets once sent.
    pub receipt_id: String,
    /// The message it is a receipt of.
    pub original_id: String,
    /// When it was held (ms since the epoch).
    #[sqlx(rename = "held_at")]
    pub held_at_ms: i64,
    /// When it goes out even without a token.
    #[sqlx(rename = "deadline")]
    pub deadline_ms: i64,
    /// When the TSA is asked again.
    #[sqlx(rename = "next_try")]
    pub next_try_ms: i64,
    /// How many times the TSA gave no token.
    pub tries: i64,
    /// The signed receipt, without a token.
    pub body: Vec<u8>,
    /// What it becomes once sent (JSON, [`crate::receipts::hold`]).
    pub receipt: String,
}

/// A change to `receipt_holds`, in a record's transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldChange {
    /// A receipt is held.
    Insert(Hold),
    /// The TSA gave no token again: try once more at `next_try_ms`.
    Retry {
        /// The held receipt.
        receipt_id: String,
        /// Failures so far.
        tries: i64,
        /// The next try.
        next_try_ms: i64,
    },
    /// It is queued (with a token, or after the wait): no longer held.
    Done(String),
}

/// Writes `changes` in transaction `tx` (either backend).
macro_rules! write_holds {
    ($tx:expr, $changes:expr) => {{
        for c in $changes {
            match c {
                HoldChange::Insert(h) => {
                    sqlx::query(
                        "INSERT INTO receipt_holds (receipt_id, original_id, held_at, deadline, \
                         next_try, tries, body, receipt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&h.receipt_id)
                    .bind(&h.original_id)
                    .bind(h.held_at_ms)
                    .bind(h.deadline_ms)
                    .bind(h.next_try_ms)
                    .bind(h.tries)
                    .bind(&h.body[..])
                    .bind(&h.receipt)
                    .execute(&mut **$tx)
                    .await?;
                }
                HoldChange::Retry {
                    receipt_id,
                    tries,
                    next_try_ms,
                } => {
                    sqlx::query(
                        "UPDATE receipt_holds SET tries = $1, next_try = $2 WHERE receipt_id = $3",
                    )
                    .bind(*tries)
                    .bind(*next_try_ms)
                    .bind(receipt_id)
                    .execute(&mut **$tx)
                    .await?;
                }
                HoldChange::Done(id) => {
                    sqlx::query("DELETE FROM receipt_holds WHERE receipt_id = $1")
                        .bind(id)
                        .execute(&mut **$tx)
                        .await?;
                }
            }
        }
        Ok::<(), sqlx::Error>(())
    }};
}

pub(super) use write_holds;

impl Db {
    async fn due_holds(&self, now_ms: i64, limit: i64) -> Result<Vec<Hold>, sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query_as(
                "SELECT receipt_id, original_id, held_at, deadline, next_try, tries, body, receipt \
                 FROM receipt_holds WHERE next_try <= $1 ORDER BY next_try LIMIT $2",
            )
            .bind(now_ms)
            .bind(limit)
            .fetch_all(pool)
            .await
        })
    }

    async fn claim_hold(&self, id: &str, seen: i64, until: i64) -> Result<bool, sqlx::Error> {
        on_pool!(self, pool, d => {
            let done = sqlx::query(
                "UPDATE receipt_holds SET next_try = $1 WHERE receipt_id = $2 AND next_try = $3",
            )
            .bind(until)
            .bind(id)
            .bind(seen)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

impl Store {
    /// Held receipts whose next try is due at `now_ms`, the most overdue
    /// first, at most `limit`.
    pub async fn due_holds(&self, now_ms: i64, limit: i64) -> Result<Vec<Hold>, StoreError> {
        self.inner
            .db
            .due_holds(now_ms, limit)
            .await
            .map_err(|e| StoreError::sqlx("reading held receipts", e))
    }

    /// Takes held receipt `h` for this instance until `until_ms` (its next
    /// try moved there), so that instances sharing the database never ask
    /// for it together; false when another one took it first.
    pub async fn claim_hold(&self, h: &Hold, until_ms: i64) -> Result<bool, StoreError> {
        self.inner
            .db
            .claim_hold(&h.receipt_id, h.next_try_ms, until_ms)
            .await
            .map_err(|e| StoreError::sqlx("claiming a held receipt", e))
    }
}
