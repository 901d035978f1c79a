//! The delivery queue: claiming due entries under a lease, recording the
//! outcome of an attempt, and the rows `emla queue` shows.
//!
//! An entry is `accepted` (then `delayed`, past its delay warning) until an
//! attempt ends it: `relayed`, `failed` (a permanent refusal or the queue
//! lifetime ran out) or `cancelled` (by an administrator); see
//! [`DeliveryState`]. A gateway instance claims due entries by writing its
//! id and a lease expiry; another instance may take an entry over only once
//! that lease has run out, so an instance that dies mid-delivery delays its
//! entries by one lease, and a message is delivered at least once.

use serde::Deserialize;
use serde_json::Value;
use sqlx::Row;

use super::db::{decode, from_row, on_pool, Db};
use super::rows::QueueRow;
use super::state::{sql_names, DeliveryState};
use super::{Lane, MessageHeaders, QueueEntry, SessionInfo};

/// A change to one queue entry, written in the same transaction as the
/// audit record that explains it.
#[derive(Clone, Debug)]
pub struct QueueUpdate {
    /// The entry.
    pub queue_id: i64,
    /// Apply only while this instance holds the claim (an attempt's
    /// outcome); `None` for administrators' actions.
    pub holder: Option<String>,
    /// Apply only while the entry is in one of these states.
    pub only_if: &'static [DeliveryState],
    /// The new state.
    pub status: DeliveryState,
    /// When the next attempt is due (ms since the epoch).
    pub next_attempt_at_ms: i64,
    /// Whether this update ends an attempt (counted, with its time and error).
    pub attempt: Option<AttemptNote>,
    /// The recipients still to relay to, when only some were done.
    pub recipients: Option<Vec<String>>,
    /// The next hop's queue id from its `250`, when this attempt relayed
    /// and the reply named one.
    pub next_hop_queue_id: Option<String>,
}

/// What an attempt left on its entry.
#[derive(Clone, Debug)]
pub struct AttemptNote {
    /// When it ended (ms since the epoch).
    pub at_ms: i64,
    /// Why it did not deliver, if it did not.
    pub error: Option<String>,
}

/// A queue entry claimed for delivery, with what the attempt needs of its
/// message.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// Queue row id.
    pub id: i64,
    /// The delivery.
    pub delivery: QueueEntry,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When the entry was queued (ms since the epoch).
    pub created_at_ms: i64,
    /// When it was last tried, if ever (ms since the epoch).
    pub last_attempt_at_ms: Option<i64>,
    /// MAIL FROM of the message.
    pub mail_from: String,
    /// SHA-256 of the raw message (its body file name).
    pub sha256: String,
    /// The header fields of the message.
    pub headers: MessageHeaders,
    /// The SMTP session that submitted it.
    pub session: SessionInfo,
    /// When it was received (ms since the epoch).
    pub received_at_ms: i64,
    /// All envelope recipients of the message.
    pub rcpt_to: Vec<String>,
    /// Its signers as recorded.
    pub signers: Value,
    /// The sender's authority.
    pub sender_authority: Option<String>,
    /// The policy version it was accepted under.
    pub policy_version: String,
    /// Its case reference.
    pub case_ref: Option<String>,
    /// The request kind it declared.
    pub kind: Option<String>,
    /// The DSN parameters its client gave, if any.
    pub dsn: Option<crate::envelope::Dsn>,
}

/// Selects for the `emla queue list`.
#[derive(Clone, Debug, Default)]
pub struct QueueFilter {
    /// Only entries in this state.
    pub status: Option<DeliveryState>,
    /// Only entries of this message.
    pub message_id: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

const CLAIMED_COLUMNS: &str = "q.id, q.message_id, q.next_hop, q.authority, q.route, q.lane, \
     q.recipients, q.attempts, q.created_at, q.last_attempt_at, m.mail_from, m.sha256, m.header_from, \
     m.header_to, m.subject, m.message_id AS header_message_id, m.date, m.helo, m.client_ip, \
     m.tls_version, m.tls_cipher, m.received_at, m.rcpt_to, m.signers, m.authority AS sender_authority, m.policy_version, m.case_ref, \
     m.kind, m.dsn";

const ROW_COLUMNS: &str = "id, message_id, next_hop, authority, route, lane, recipients, \
     status, attempts, next_attempt_at, created_at, claimed_by, lease_until, last_attempt_at, \
     last_error, updated_at, next_hop_queue_id";

/// The [`QueueEntry`] of a row of `queue` (any backend).
macro_rules! queue_entry {
    ($r:ident) => {
        from_row!($r, QueueEntry { message_id, next_hop, authority, route };
            lane: Lane::parse(&$r.try_get::<String, _>("lane")?),
            recipients: json_col($r.try_get("recipients")?),
        )
    };
}

/// A [`QueueRow`] from any backend's row.
macro_rules! queue_row {
    ($r:ident) => {{
        let status: String = $r.try_get("status")?;
        Ok::<_, sqlx::Error>(from_row!($r, QueueRow {
            id, attempts, next_attempt_at, created_at, claimed_by, lease_until, last_attempt_at,
            last_error, updated_at, next_hop_queue_id,
        }; delivery: queue_entry!($r),
            status: DeliveryState::parse(&status)
                .ok_or_else(|| decode("status", format!("unknown queue state {status:?}")))?,
        ))
    }};
}

/// A JSON column; what does not parse reads as the default (empty).
fn json_col<T: for<'de> Deserialize<'de> + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

impl Db {
    /// Claims up to `limit` due entries for `holder` until `lease_until_ms`,
    /// urgent lane first, then oldest due; returns them with their
    /// messages' details.
    pub async fn claim(
        &self,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
        let _turn = self.write_turn().await;
        on_pool!(&self.claims(), pool, d => {
            let mut tx = pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(&format!(
                "UPDATE queue SET claimed_by = $1, lease_until = $2 WHERE id IN (\
                 SELECT id FROM queue WHERE status IN ({pending}) AND next_attempt_at <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3) \
                 ORDER BY CASE lane WHEN 'urgent' THEN 0 ELSE 1 END, next_attempt_at, id \
                 LIMIT $4{skip_locked}) RETURNING id",
                pending = sql_names(&DeliveryState::PENDING),
                skip_locked = d.skip_locked
            ))
            .bind(holder)
            .bind(lease_until_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut claimed = Vec::with_capacity(ids.len());
            if !ids.is_empty() {
                let list = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                let sql = format!(
                    "SELECT {CLAIMED_COLUMNS} FROM queue q JOIN messages m ON m.id = q.message_id \
                     WHERE q.id IN ({list})"
                );
                let mut q = sqlx::query(&sql);
                for id in &ids {
                    q = q.bind(*id);
                }
                for r in q.fetch_all(&mut *tx).await? {
                    claimed.push(from_row!(r, Claimed {
                        id, attempts, mail_from, sha256, sender_authority, policy_version, case_ref,
                        kind,
                    }; delivery: queue_entry!(r),
                        headers: from_row!(r, MessageHeaders { header_from, header_to, subject, date };
                            message_id: r.try_get("header_message_id")?,
                        ),
                        session: from_row!(r, SessionInfo { helo, client_ip, tls_version, tls_cipher }),
                        created_at_ms: r.try_get("created_at")?,
                        last_attempt_at_ms: r.try_get("last_attempt_at")?,
                        received_at_ms: r.try_get("received_at")?,
                        rcpt_to: json_col(r.try_get("rcpt_to")?),
                        signers: json_col(r.try_get("signers")?),
                        dsn: r
                            .try_get::<Option<String>, _>("dsn")?
                            .and_then(|d| serde_json::from_str(&d).ok()),
                    ));
                }
            }
            tx.commit().await?;
            claimed.sort_by_key(|c| (c.delivery.lane != Lane::Urgent, c.id));
            Ok(claimed)
        })
    }

    /// Gives back every claim `holder` still has (an instance restarting
    /// after a crash takes its own entries back at once).
    pub async fn release_claims(&self, holder: &str) -> Result<u64, sqlx::Error> {
        let _turn = self.write_turn().await;
        on_pool!(self, pool, d => {
            Ok(sqlx::query(&format!(
                "UPDATE queue SET claimed_by = NULL, lease_until = NULL \
                 WHERE claimed_by = $1 AND status IN ({})",
                sql_names(&DeliveryState::PENDING)
            ))
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Queue rows, newest first.
    pub async fn queue_rows(&self, f: &QueueFilter) -> Result<Vec<QueueRow>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let mut sql = format!("SELECT {ROW_COLUMNS} FROM queue WHERE 1 = 1");
            let mut n = 0;
            if let Some(s) = f.status {
                sql += &format!(" AND status IN ({})", sql_names(&[s]));
            }
            if f.message_id.is_some() {
                n += 1;
                sql += &format!(" AND message_id = ${n}");
            }
            sql += &format!(" ORDER BY id DESC LIMIT ${}", n + 1);
            let mut q = sqlx::query(&sql);
            if let Some(m) = &f.message_id {
                q = q.bind(m);
            }
            let rows = q.bind(i64::from(f.limit)).fetch_all(pool).await?;
            rows.iter().map(|r| queue_row!(r)).collect()
        })
    }

    /// One queue row.
    pub async fn queue_row(&self, id: i64) -> Result<Option<QueueRow>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query(&format!("SELECT {ROW_COLUMNS} FROM queue WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| queue_row!(r)).transpose()
        })
    }
}

/// The statement that applies a [`QueueUpdate`]; binds, in order: status,
/// next_attempt_at, attempted (0/1), attempt time, attempt error, now, queue
/// id, remaining recipients (JSON or NULL), the next hop's queue id (or
/// NULL), and the holder when there is one.
pub(super) fn update_sql(u: &QueueUpdate) -> String {
    let statuses = sql_names(u.only_if);
    let mut sql = format!(
        "UPDATE queue SET status = $1, next_attempt_at = $2, attempts = attempts + $3, \
         last_attempt_at = COALESCE($4, last_attempt_at), \
         last_error = CASE WHEN $3 = 1 THEN $5 ELSE last_error END, \
         claimed_by = NULL, lease_until = NULL, updated_at = $6, \
         recipients = COALESCE($8, recipients), \
         next_hop_queue_id = COALESCE($9, next_hop_queue_id) \
         WHERE id = $7 AND status IN ({statuses})"
    );
    if u.holder.is_some() {
        sql += " AND claimed_by = $10";
    }
    sql
}
