//! Reads and writes for signed checkpoints, evidence bundles and
//! retention (see [`audit::checkpoint`](crate::audit::checkpoint),
//! [`audit::export`](crate::audit::export) and
//! [`audit::retention`](crate::audit::retention)).
//!
//! Pruning never breaks the chain: pruned bodies keep their hash in the
//! message row and in the audit records, and pruned audit records leave
//! their last seq and hash in `audit_anchor`, from which
//! [`Store::verify_chain`] then starts (the anchor replaces the 64 zeros of
//! the genesis).

use sqlx::Row;

use super::chain::{AuditRow, Verifier};
use super::db::{audit_row, from_row, on_pool, Db};
use super::{files, Store, StoreError};

/// Where the chain starts after audit records were pruned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainAnchor {
    /// The seq of the last pruned record (the next kept record is seq + 1).
    pub seq: i64,
    /// Its hash: the `prev_hash` of record seq + 1.
    pub hash: String,
    /// When the records were pruned, ms since the epoch.
    pub pruned_at: i64,
}

/// Where the log stood when a receipt was issued: what the receipt names
/// besides its own event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogAnchor {
    /// The seq of the committed chain head (0: empty log).
    pub head_seq: i64,
    /// Its hash.
    pub head_hash: String,
    /// The latest signed checkpoint's `(seq, hash)`, if there is one.
    pub checkpoint: Option<(i64, String)>,
}

/// A message whose body file retention may remove.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredBody {
    /// The emla message id.
    pub id: String,
    /// SHA-256 of the body (the file name).
    pub sha256: String,
    /// Reception time, ms.
    pub received_at: i64,
}

fn read_err(e: sqlx::Error) -> StoreError {
    StoreError::sqlx("reading the audit chain", e)
}

impl Db {
    async fn evidence_anchor(&self) -> Result<Option<ChainAnchor>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query("SELECT seq, hash, pruned_at FROM audit_anchor WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            row.map(|r| Ok(from_row!(r, ChainAnchor { seq, hash, pruned_at }))).transpose()
        })
    }

    async fn evidence_kind(&self, kind: &str, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query(
                "SELECT seq, at, message_id, kind, data, prev_hash, hash FROM audit \
                 WHERE kind = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(kind)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| audit_row!(r)).collect()
        })
    }

    async fn evidence_old_bodies(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<StoredBody>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query(
                "SELECT id, sha256, received_at FROM messages \
                 WHERE body_stored = $1 AND received_at < $2 ORDER BY received_at, id LIMIT $3",
            )
            .bind(true)
            .bind(before_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok(from_row!(r, StoredBody { id, sha256, received_at }))).collect()
        })
    }

    async fn evidence_body_kept_elsewhere(
        &self,
        sha256: &str,
        before_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        on_pool!(self, pool, d => {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages WHERE sha256 = $1 AND body_stored = $2 \
                 AND received_at >= $3",
            )
            .bind(sha256)
            .bind(true)
            .bind(before_ms)
            .fetch_one(pool)
            .await?;
            Ok(n > 0)
        })
    }

    /// Deletes the `bodies` row unless it was stored at or after
    /// `before_ms` or a message received since keeps it. A writer storing
    /// the same body updates the row, so the DELETE waits for its commit
    /// and then re-checks `stored_at` (PostgreSQL); SQLite has one writer.
    async fn evidence_remove_body_row(
        &self,
        sha256: &str,
        before_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let _turn = self.write_turn().await;
        on_pool!(self, pool, d => {
            let n = sqlx::query(
                "DELETE FROM bodies WHERE sha256 = $1 AND stored_at < $2 AND NOT EXISTS \
                 (SELECT 1 FROM messages WHERE sha256 = $1 AND body_stored = $3 \
                 AND received_at >= $2)",
            )
            .bind(sha256)
            .bind(before_ms)
            .bind(true)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n > 0)
        })
    }

    async fn evidence_mark_pruned(&self, ids: &[String], at_ms: i64) -> Result<(), sqlx::Error> {
        on_pool!(self, pool, d => {
            let mut tx = pool.begin().await?;
            for id in ids {
                sqlx::query("UPDATE messages SET body_stored = $1, body_pruned_at = $2 WHERE id = $3")
                    .bind(false)
                    .bind(at_ms)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    async fn evidence_first_at_or_after(&self, at_ms: i64) -> Result<Option<i64>, sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query_scalar("SELECT MIN(seq) FROM audit WHERE at >= $1")
                .bind(at_ms)
                .fetch_one(pool)
                .await
        })
    }

    async fn evidence_prune_audit(
        &self,
        through: i64,
        hash: &str,
        at_ms: i64,
    ) -> Result<u64, sqlx::Error> {
        on_pool!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM audit WHERE seq <= $1")
                .bind(through)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM audit_anchor WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO audit_anchor (id, seq, hash, pruned_at) VALUES (1, $1, $2, $3)")
                .bind(through)
                .bind(hash)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(deleted)
        })
    }
}

impl Store {
    /// The data directory (bodies under `messages/`).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// The chain head as `audit_head` holds it: `(seq, hash)`; `(0, 64
    /// zeros)` for an empty log.
    pub async fn chain_head(&self) -> Result<(i64, String), StoreError> {
        self.inner.db.head().await.map_err(read_err)
    }

    /// Where the chain starts: the anchor left by pruning, if any.
    pub async fn chain_anchor(&self) -> Result<Option<ChainAnchor>, StoreError> {
        self.inner.db.evidence_anchor().await.map_err(read_err)
    }

    /// A verifier positioned at the start of the kept chain: the genesis,
    /// or the [`ChainAnchor`] left by pruning.
    pub(crate) async fn chain_start(&self) -> Result<Verifier, StoreError> {
        Ok(match self.chain_anchor().await? {
            Some(a) => Verifier::from_anchor(a.seq, &a.hash),
            None => Verifier::default(),
        })
    }

    /// The audit records with `after < seq <= upto`, in seq order, read
    /// page by page into memory (callers bound the range).
    pub async fn audit_range(&self, after: i64, upto: i64) -> Result<Vec<AuditRow>, StoreError> {
        let mut out = Vec::new();
        let mut from = after;
        loop {
            let page = self
                .inner
                .db
                .audit_page(from, upto)
                .await
                .map_err(read_err)?;
            let Some(last) = page.last() else { break };
            from = last.seq;
            out.extend(page);
        }
        Ok(out)
    }

    /// The audit record `seq`, if the table holds it.
    pub async fn audit_record(&self, seq: i64) -> Result<Option<AuditRow>, StoreError> {
        let mut rows = self
            .inner
            .db
            .audit_page(seq - 1, seq)
            .await
            .map_err(read_err)?;
        Ok(rows.pop())
    }

    /// Where the log stands for a receipt issued now: the committed chain
    /// head and the latest signed checkpoint named by an `audit.checkpoint`
    /// record (see `docs/evidence-vocabulary.md`).
    pub async fn log_anchor(&self) -> Result<LogAnchor, StoreError> {
        let (head_seq, head_hash) = self.chain_head().await?;
        let checkpoint = self
            .audit_of_kind(super::AuditKind::AuditCheckpoint, 50)
            .await?
            .into_iter()
            .find_map(|r| {
                let d = super::CheckpointData::parse(&r.data)?;
                (d.signed && !d.hash.is_empty()).then_some((d.seq, d.hash))
            });
        Ok(LogAnchor {
            head_seq,
            head_hash,
            checkpoint,
        })
    }

    /// The newest `limit` records of one kind, newest first.
    pub async fn audit_of_kind(
        &self,
        kind: super::AuditKind,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.inner
            .db
            .evidence_kind(kind.as_str(), limit)
            .await
            .map_err(read_err)
    }

    /// Messages received before `before_ms` whose body is still kept,
    /// oldest first, at most `limit`.
    pub async fn bodies_before(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<StoredBody>, StoreError> {
        self.inner
            .db
            .evidence_old_bodies(before_ms, limit)
            .await
            .map_err(|e| StoreError::sqlx("reading messages", e))
    }

    /// Whether a message received at or after `before_ms` still keeps the
    /// body with this hash (the file is shared: content-addressed).
    pub async fn body_kept_after(&self, sha256: &str, before_ms: i64) -> Result<bool, StoreError> {
        self.inner
            .db
            .evidence_body_kept_elsewhere(sha256, before_ms)
            .await
            .map_err(|e| StoreError::sqlx("reading messages", e))
    }

    /// Marks the bodies of `ids` as pruned at `at_ms` (`body_stored` false,
    /// `body_pruned_at` set).
    pub async fn mark_bodies_pruned(&self, ids: &[String], at_ms: i64) -> Result<(), StoreError> {
        self.inner
            .db
            .evidence_mark_pruned(ids, at_ms)
            .await
            .map_err(|e| StoreError::sqlx("marking pruned bodies", e))
    }

    /// Removes the body with this hash (its file, and its row of `bodies`)
    /// unless a message received at or after `before_ms` stored it, even
    /// one not committed yet (see [`files`]); `Ok(true)` when something
    /// was removed.
    pub async fn remove_body(&self, sha256: &str, before_ms: i64) -> Result<bool, StoreError> {
        let row = self
            .inner
            .db
            .evidence_remove_body_row(sha256, before_ms)
            .await
            .map_err(|e| StoreError::sqlx("removing a body", e))?;
        let dir = self.inner.data_dir.clone();
        let sha = sha256.to_owned();
        let cutoff = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(before_ms).unwrap_or(0));
        let file = tokio::task::spawn_blocking(move || files::remove_untouched(&dir, &sha, cutoff))
            .await
            .map_err(|e| StoreError::Bug(format!("removing a body: {e}")))?
            .map_err(|e| StoreError::Unavailable(format!("removing the body {sha256}: {e}")))?;
        Ok(row || file == files::Removal::Removed)
    }

    /// Puts back the body files a crashed removal left aside (see
    /// [`files`]); returns how many.
    pub async fn restore_set_aside_bodies(&self) -> Result<u64, StoreError> {
        let dir = self.inner.data_dir.clone();
        tokio::task::spawn_blocking(move || files::restore_set_aside(&dir))
            .await
            .map_err(|e| StoreError::Bug(format!("restoring body files: {e}")))?
            .map_err(|e| StoreError::Unavailable(format!("restoring body files: {e}")))
    }

    /// The lowest seq of a record committed at or after `at_ms`, if any.
    pub async fn first_seq_at_or_after(&self, at_ms: i64) -> Result<Option<i64>, StoreError> {
        self.inner
            .db
            .evidence_first_at_or_after(at_ms)
            .await
            .map_err(read_err)
    }

    /// Deletes the audit records with seq <= `through` and makes (`through`,
    /// `hash`) the chain's anchor, in one transaction. The caller checks
    /// first that `hash` is the hash of record `through` and that a signed
    /// checkpoint covers it. Returns the number of records deleted.
    pub async fn prune_audit_through(
        &self,
        through: i64,
        hash: &str,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        self.inner
            .db
            .evidence_prune_audit(through, hash, at_ms)
            .await
            .map_err(|e| StoreError::sqlx("pruning audit records", e))
    }
}
