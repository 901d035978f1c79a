//! The signatures of accepted messages, looked up to recognise a replay
//! (see [`intake::replay`](crate::intake::replay)). Written in the same
//! transaction as the message (`Db::write_batch`).

use super::db::{on_pool, Db};
use super::{Store, StoreError};

impl Db {
    async fn replay_lookup(
        &self,
        keys: &[String],
        since_ms: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        for key in keys {
            let found: Option<String> = on_pool!(self, pool, d => {
                sqlx::query_scalar(
                    "SELECT message_id FROM accepted_signatures \
                     WHERE replay_key = $1 AND received_at >= $2",
                )
                .bind(key)
                .bind(since_ms)
                .fetch_optional(pool)
                .await
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

impl Store {
    /// The id of a message accepted at or after `since_ms` that had one of
    /// these replay keys (see [`ReplayKeys`](crate::intake::replay::ReplayKeys)).
    pub async fn accepted_with_signature(
        &self,
        keys: &[String],
        since_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.inner
            .db
            .replay_lookup(keys, since_ms)
            .await
            .map_err(|e| StoreError::sqlx("reading accepted signatures", e))
    }
}
