//! What the operators' gauges read of the database: the open queue by
//! state and lane, and the time of the last signed checkpoint. Both are
//! index lookups (`queue (status, …)`, `audit (kind, seq)`), so a scrape or
//! a readiness probe stays cheap however large the log grows.

use sqlx::Row;

use super::db::{on_pool, Db};
use super::Store;

/// The open queue entries of one state and lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    /// `accepted` or `delayed`.
    pub status: String,
    /// `normal` or `urgent`.
    pub lane: String,
    /// How many.
    pub entries: u64,
    /// When the oldest of them was accepted (ms since the epoch).
    pub oldest_ms: i64,
}

/// The gauges' reading of the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpsReading {
    /// Entries not yet ended, by state and lane.
    pub queue: Vec<QueueDepth>,
    /// When the last checkpoint was written (ms since the epoch), if any.
    pub last_checkpoint_ms: Option<i64>,
}

impl Db {
    async fn ops_reading(&self) -> Result<OpsReading, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query(
                "SELECT status, lane, COUNT(*) AS n, MIN(created_at) AS oldest FROM queue \
                 WHERE status IN ('accepted', 'delayed') GROUP BY status, lane",
            )
            .fetch_all(pool)
            .await?;
            let mut queue = Vec::new();
            for r in &rows {
                queue.push(QueueDepth {
                    status: r.try_get("status")?,
                    lane: r.try_get("lane")?,
                    entries: r.try_get::<i64, _>("n")?.max(0) as u64,
                    oldest_ms: r.try_get("oldest")?,
                });
            }
            let last_checkpoint_ms = sqlx::query(
                "SELECT at FROM audit WHERE kind IN ('audit.checkpoint', 'audit.checkpoint-stamped') \
                 ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<i64, _>("at"))
            .transpose()?;
            Ok(OpsReading { queue, last_checkpoint_ms })
        })
    }

    async fn ping(&self) -> Result<(), sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query("SELECT 1").fetch_one(pool).await.map(|_| ())
        })
    }
}

impl Store {
    /// The open queue and the last checkpoint, for the gauges.
    pub async fn ops_reading(&self) -> Result<OpsReading, super::StoreError> {
        super::named("reading the queue depth", self.inner.db.ops_reading()).await
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), super::StoreError> {
        super::named("pinging the database", self.inner.db.ping()).await
    }
}
