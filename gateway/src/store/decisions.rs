//! The recorded decisions of a period, page by page, each message with the
//! decision record that judged it: what `emla policy replay` judges again.

use sqlx::Row;

use super::db::{
    addresses, from_row, message_row, on_pool, parse_json, reason, verdict, Db, MESSAGE_COLUMNS,
};
use super::kind::AuditKind;
use super::rows::{Decision, MessageRow};
use super::search::Cursor;
use super::{MessageHeaders, SessionInfo};
use super::{Store, StoreError};

/// A message as recorded, with its decision.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The message row.
    pub message: MessageRow,
    /// Its decision record's data (`message.accepted` or
    /// `message.rejected`); `None` when the record was pruned.
    pub decision: Option<Decision>,
}

impl Db {
    async fn decided(
        &self,
        from_ms: i64,
        until_ms: i64,
        after: &Cursor,
        limit: i64,
    ) -> Result<Vec<Decided>, sqlx::Error> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS}, (SELECT a.data FROM audit a WHERE a.message_id = m.id \
             AND a.kind IN ('{accepted}', '{rejected}') ORDER BY a.seq LIMIT 1) AS decision \
             FROM messages m WHERE received_at >= $1 AND received_at < $2 \
             AND (received_at > $3 OR (received_at = $3 AND id > $4)) \
             ORDER BY received_at, id LIMIT $5",
            accepted = AuditKind::MessageAccepted.as_str(),
            rejected = AuditKind::MessageRejected.as_str(),
        );
        on_pool!(self, pool, d => {
            let rows = sqlx::query(&sql)
                .bind(from_ms)
                .bind(until_ms)
                .bind(after.received_at_ms)
                .bind(&after.id)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    let data: Option<String> = r.try_get("decision")?;
                    Ok(Decided {
                        message: message_row!(r),
                        decision: data.map(|d| super::rows::typed(&parse_json(&d))),
                    })
                })
                .collect()
        })
    }
}

impl Store {
    /// Up to `limit` messages received in `[from_ms, until_ms)` after
    /// `after` (in `(received_at, id)` order), with their decisions.
    pub async fn decided_between(
        &self,
        from_ms: i64,
        until_ms: i64,
        after: &Cursor,
        limit: i64,
    ) -> Result<Vec<Decided>, StoreError> {
        self.inner
            .db
            .decided(from_ms, until_ms, after, limit)
            .await
            .map_err(|e| StoreError::sqlx("reading recorded decisions", e))
    }
}
