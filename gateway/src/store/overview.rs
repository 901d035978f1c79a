//! The figures of the web view's overview, aggregated in SQL over a
//! bounded period (the same statements on SQLite and PostgreSQL): messages
//! per day per sender authority, refusals by reason, delivery latency
//! percentiles, the queue by state and the newest checkpoint.

use sqlx::Row;

use super::db::{on_pool, Db};
use super::kind::AuditKind;
use super::state::{sql_names, DeliveryState};
use super::{Store, StoreError};

/// The longest period an overview covers, in days: the per-day series stay
/// small whatever the traffic.
pub const MAX_DAYS: i64 = 90;

/// Most authorities named in the per-day series; the rest are summed as
/// [`OTHER`].
pub const TOP_AUTHORITIES: i64 = 8;

/// Most refusal reasons listed (there are fewer reasons than this today).
pub const TOP_REASONS: i64 = 20;

/// The authority label of messages from authorities past the top ones.
pub const OTHER: &str = "(other)";

/// The authority label of messages no authority sent (refused before one
/// was known).
pub const NONE: &str = "(none)";

const DAY_MS: i64 = 86_400_000;

/// Messages received on one UTC day from one authority.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct DayCount {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The sender's authority, [`NONE`] or [`OTHER`].
    #[sqlx(rename = "who")]
    pub authority: String,
    /// Messages accepted.
    pub accepted: i64,
    /// Messages refused.
    pub rejected: i64,
}

/// Refusals for one reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ReasonCount {
    /// The reason code.
    pub reason: String,
    /// How many messages it refused.
    #[sqlx(rename = "n")]
    pub count: i64,
}

/// Time from reception to the next hop's `250`, over the entries relayed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Entries relayed.
    pub count: i64,
    /// Percentiles (nearest rank), milliseconds: 50, 90, 99, 100.
    pub p50_ms: Option<i64>,
    /// 90th percentile.
    pub p90_ms: Option<i64>,
    /// 99th percentile.
    pub p99_ms: Option<i64>,
    /// The slowest.
    pub max_ms: Option<i64>,
}

/// Queue entries in one state (all of them, not only the period's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StateCount {
    /// The state.
    pub state: DeliveryState,
    /// How many entries are in it.
    pub count: i64,
}

/// The newest checkpoint record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LastCheckpoint {
    /// Its audit record's seq.
    pub record_seq: i64,
    /// When it was written (ms since the epoch).
    pub at_ms: i64,
    /// The chain head it states.
    pub head_seq: Option<i64>,
    /// Whether it was signed.
    pub signed: bool,
}

/// The overview of `[from_ms, until_ms)`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Overview {
    /// Start of the period (ms, inclusive).
    pub from_ms: i64,
    /// End of the period (ms, exclusive).
    pub until_ms: i64,
    /// Per day and authority, days ascending.
    pub per_day: Vec<DayCount>,
    /// Refusals by reason, most frequent first.
    pub refusals: Vec<ReasonCount>,
    /// Delivery latency of the period's messages.
    pub latency: Latency,
    /// The queue now, by state.
    pub queue: Vec<StateCount>,
    /// The newest checkpoint, if any was written.
    pub checkpoint: Option<LastCheckpoint>,
}

/// Nearest-rank index (0-based) of percentile `p` among `n` sorted values.
fn rank(p: i64, n: i64) -> i64 {
    ((p * n + 99) / 100 - 1).clamp(0, n - 1)
}

impl Db {
    async fn per_day(&self, from: i64, until: i64) -> Result<Vec<DayCount>, sqlx::Error> {
        let sql = format!(
            "WITH leaders AS (SELECT authority FROM messages WHERE received_at >= $1 \
             AND received_at < $2 AND authority IS NOT NULL GROUP BY authority \
             ORDER BY COUNT(*) DESC, authority LIMIT $3) \
             SELECT received_at / {DAY_MS} AS day, \
             CASE WHEN m.authority IS NULL THEN '{NONE}' \
             WHEN m.authority IN (SELECT authority FROM leaders) THEN m.authority \
             ELSE '{OTHER}' END AS who, \
             SUM(CASE WHEN verdict = 'accept' THEN 1 ELSE 0 END) AS accepted, \
             SUM(CASE WHEN verdict = 'reject' THEN 1 ELSE 0 END) AS rejected \
             FROM messages m WHERE received_at >= $1 AND received_at < $2 \
             GROUP BY 1, 2 ORDER BY 1, 2"
        );
        on_pool!(self, pool, d => {
            sqlx::query_as(&sql)
                .bind(from)
                .bind(until)
                .bind(TOP_AUTHORITIES)
                .fetch_all(pool)
                .await
        })
    }

    async fn refusals(&self, from: i64, until: i64) -> Result<Vec<ReasonCount>, sqlx::Error> {
        let sql = "SELECT reason, COUNT(*) AS n FROM messages WHERE verdict = 'reject' \
                   AND received_at >= $1 AND received_at < $2 \
                   GROUP BY reason ORDER BY n DESC, reason LIMIT $3";
        on_pool!(self, pool, d => {
            sqlx::query_as(sql)
                .bind(from)
                .bind(until)
                .bind(TOP_REASONS)
                .fetch_all(pool)
                .await
        })
    }

    /// Percentiles by counting, then reading one sorted row per percentile:
    /// the same SQL on both databases (SQLite has no percentile function).
    async fn latency(&self, from: i64, until: i64) -> Result<Latency, sqlx::Error> {
        let relayed = sql_names(&[DeliveryState::Relayed]);
        let base = format!(
            "FROM queue q JOIN messages m ON m.id = q.message_id WHERE q.status IN ({relayed}) \
             AND m.received_at >= $1 AND m.received_at < $2"
        );
        let count_sql = format!("SELECT COUNT(*) AS n {base}");
        let nth_sql = format!(
            "SELECT COALESCE(q.last_attempt_at, q.updated_at, q.created_at) - m.received_at \
             AS ms {base} ORDER BY 1 LIMIT 1 OFFSET $3"
        );
        on_pool!(self, pool, d => {
            let n: i64 = sqlx::query(&count_sql)
                .bind(from)
                .bind(until)
                .fetch_one(pool)
                .await?
                .try_get("n")?;
            let mut l = Latency { count: n, ..Latency::default() };
            if n == 0 {
                return Ok(l);
            }
            let mut at = Vec::with_capacity(4);
            for p in [50, 90, 99, 100] {
                let v: i64 = sqlx::query(&nth_sql)
                    .bind(from)
                    .bind(until)
                    .bind(rank(p, n))
                    .fetch_one(pool)
                    .await?
                    .try_get("ms")?;
                at.push(Some(v.max(0)));
            }
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms) = (at[0], at[1], at[2], at[3]);
            Ok(l)
        })
    }

    async fn queue_states(&self) -> Result<Vec<StateCount>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM queue GROUP BY status")
                .fetch_all(pool)
                .await?;
            let mut out: Vec<StateCount> = Vec::new();
            for r in &rows {
                let name: String = r.try_get("status")?;
                let n: i64 = r.try_get("n")?;
                let Some(state) = DeliveryState::parse(&name) else {
                    continue;
                };
                match out.iter_mut().find(|c| c.state == state) {
                    Some(c) => c.count += n,
                    None => out.push(StateCount { state, count: n }),
                }
            }
            out.sort_by_key(|c| DeliveryState::ALL.iter().position(|s| *s == c.state));
            Ok(out)
        })
    }

    async fn last_checkpoint(&self) -> Result<Option<LastCheckpoint>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query(
                "SELECT seq, at, data FROM audit WHERE kind = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(AuditKind::AuditCheckpoint.as_str())
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                let data: String = r.try_get("data")?;
                let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                Ok(LastCheckpoint {
                    record_seq: r.try_get("seq")?,
                    at_ms: r.try_get("at")?,
                    head_seq: v["seq"].as_i64(),
                    signed: v["signed"].as_bool().unwrap_or(false),
                })
            })
            .transpose()
        })
    }
}

impl Store {
    /// The overview of the `days` UTC days up to and including the day of
    /// `now_ms` (`days` is clamped to `1..=MAX_DAYS`).
    pub async fn overview(&self, days: i64, now_ms: i64) -> Result<Overview, StoreError> {
        let days = days.clamp(1, MAX_DAYS);
        let until_ms = (now_ms / DAY_MS + 1) * DAY_MS;
        let from_ms = until_ms - days * DAY_MS;
        let db = &self.inner.db;
        let e = |what: &'static str| move |e| StoreError::sqlx(what, e);
        Ok(Overview {
            from_ms,
            until_ms,
            per_day: db
                .per_day(from_ms, until_ms)
                .await
                .map_err(e("counting messages per day"))?,
            refusals: db
                .refusals(from_ms, until_ms)
                .await
                .map_err(e("counting refusals"))?,
            latency: db
                .latency(from_ms, until_ms)
                .await
                .map_err(e("measuring delivery latency"))?,
            queue: db.queue_states().await.map_err(e("counting the queue"))?,
            checkpoint: db
                .last_checkpoint()
                .await
                .map_err(e("reading the last checkpoint"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn nearest_rank() {
        assert_eq!(rank(50, 1), 0);
        assert_eq!(rank(100, 1), 0);
        assert_eq!(rank(50, 10), 4);
        assert_eq!(rank(90, 10), 8);
        assert_eq!(rank(99, 10), 9);
        assert_eq!(rank(100, 10), 9);
        assert_eq!(rank(50, 4), 1);
    }
}
