//! Jobs that run on one gateway instance at a time: the checkpoint writer
//! and retention (see `docs/contracts.md`, "Running two instances").
//!
//! [`Store::exclusive`] gives a [`JobLock`] or, when another instance (or
//! an `emla audit prune` by hand) holds the job, `None`: the caller skips
//! that round.
//!
//! - **PostgreSQL:** `pg_try_advisory_lock(KEY)` on a connection taken out
//!   of the pool for the job's duration. A session-level advisory lock
//!   belongs to that connection: it goes with an explicit
//!   `pg_advisory_unlock` when the job ends, or with the connection when
//!   the process dies or the network drops it. The keys are fixed (see
//!   [`ExclusiveJob::key`]) so that every version of emla agrees on them.
//! - **SQLite:** an exclusive `flock` on `DATA_DIR/<job>.lock`, released
//!   when the file is closed (by the job's end or the process's death).
//!   SQLite serialises writers anyway; the lock keeps a second process on
//!   the same data directory (`emla audit prune` while `emla serve` prunes)
//!   from interleaving a job's reads and writes with another's.
//!
//! A lock can be lost while a job runs (the lock connection dropped), so
//! the jobs do not rely on it for correctness: a checkpoint number is
//! unique in the database (table `checkpoints`, written in the same
//! transaction as the chain append), and body removal re-checks on disk
//! (see [`files`](super::files)).

use std::fs::File;

use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use super::db::Db;
use super::{Store, StoreError};

/// A job that runs on one instance at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExclusiveJob {
    /// The periodic checkpoint writer.
    Checkpoint,
    /// Retention (periodic and `emla audit prune`).
    Retention,
}

impl ExclusiveJob {
    /// Its name, as logged and as the SQLite lock file is named.
    pub fn name(self) -> &'static str {
        match self {
            ExclusiveJob::Checkpoint => "checkpoint",
            ExclusiveJob::Retention => "retention",
        }
    }

    /// Its PostgreSQL advisory lock key: `"emla"` in ASCII in the high 32
    /// bits, the job's number in the low ones.
    pub fn key(self) -> i64 {
        const EMLA: i64 = 0x656d_6c61 << 32;
        EMLA | match self {
            ExclusiveJob::Checkpoint => 1,
            ExclusiveJob::Retention => 2,
        }
    }
}

/// The right to run a job, until dropped or [`JobLock::release`]d.
#[derive(Debug)]
pub struct JobLock {
    job: ExclusiveJob,
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// The connection that holds the advisory lock.
    Postgres(Option<PoolConnection<Postgres>>),
    /// The locked file (closing it unlocks).
    File(#[allow(dead_code)] File),
}

impl JobLock {
    /// The job it is for.
    pub fn job(&self) -> ExclusiveJob {
        self.job
    }

    /// Gives the lock back now (dropping it does the same, less politely
    /// on PostgreSQL: the connection is closed instead of unlocked).
    pub async fn release(mut self) {
        if let Held::Postgres(conn) = &mut self.held {
            if let Some(mut c) = conn.take() {
                let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(self.job.key())
                    .fetch_one(&mut *c)
                    .await;
                if !matches!(unlocked, Ok(true)) {
                    // Whatever happened, the session must not keep it.
                    let _ = c.detach();
                }
            }
        }
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        if let Held::Postgres(conn) = &mut self.held {
            // Not released: closing the session is what unlocks it.
            if let Some(c) = conn.take() {
                drop(c.detach());
            }
        }
    }
}

impl Store {
    /// Takes the lock of `job` if no one holds it (see the module docs);
    /// `Ok(None)`: another instance runs it now.
    pub async fn exclusive(&self, job: ExclusiveJob) -> Result<Option<JobLock>, StoreError> {
        let held = match &self.inner.db {
            Db::Postgres(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| StoreError::sqlx("taking a job lock", e))?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(job.key())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| StoreError::sqlx("taking a job lock", e))?;
                if !got {
                    return Ok(None);
                }
                Held::Postgres(Some(conn))
            }
            Db::Sqlite(..) => {
                let path = self.inner.data_dir.join(format!("{}.lock", job.name()));
                let file = crate::fsutil::create_private(&path)
                    .or_else(|_| File::options().write(true).open(&path))
                    .map_err(|e| {
                        StoreError::Unavailable(format!("opening {}: {e}", path.display()))
                    })?;
                match file.try_lock() {
                    Ok(()) => Held::File(file),
                    Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(StoreError::Unavailable(format!(
                            "locking {}: {e}",
                            path.display()
                        )))
                    }
                }
            }
        };
        Ok(Some(JobLock { job, held }))
    }

    /// [`Store::exclusive`] for one round of a periodic job: `None` means
    /// skip the round (logged at debug level when another instance holds
    /// the job, as an error when the lock could not be asked for).
    pub async fn exclusive_round(&self, job: ExclusiveJob) -> Option<JobLock> {
        match self.exclusive(job).await {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                tracing::debug!(
                    job = job.name(),
                    "another instance holds the job; round skipped"
                );
                None
            }
            Err(e) => {
                tracing::error!(job = job.name(), error = %e, "cannot take the job lock; round skipped");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_and_distinct() {
        assert_eq!(ExclusiveJob::Checkpoint.key(), 0x656d_6c61_0000_0001);
        assert_eq!(ExclusiveJob::Retention.key(), 0x656d_6c61_0000_0002);
    }

    #[tokio::test]
    async fn sqlite_lock_is_exclusive_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("emla.db").display());
        let store = Store::open(&url, dir.path()).await.unwrap();
        let lock = store.exclusive(ExclusiveJob::Retention).await.unwrap();
        assert!(lock.is_some());
        assert!(store
            .exclusive(ExclusiveJob::Retention)
            .await
            .unwrap()
            .is_none());
        let other = store.exclusive(ExclusiveJob::Checkpoint).await.unwrap();
        assert!(other.is_some(), "jobs lock independently");
        lock.unwrap().release().await;
        assert!(store
            .exclusive(ExclusiveJob::Retention)
            .await
            .unwrap()
            .is_some());
    }
}
