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
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let list = (2..keys.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT replay_key, message_id FROM accepted_signatures \
             WHERE received_at >= $1 AND replay_key IN ({list})"
        );
        on_pool!(self, pool, d => {
            let mut q = sqlx::query_as(&sql).bind(since_ms);
            for key in keys {
                q = q.bind(key);
            }
            q.fetch_all(pool).await
        })
    }
}

impl Store {
    /// Which of these replay keys (see
    /// [`ReplayKeys`](crate::intake::replay::ReplayKeys)) a message accepted
    /// at or after `since_ms` had: `(key, message id)` pairs, in one query.
    pub async fn accepted_with_signature(
        &self,
        keys: &[String],
        since_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .db
            .replay_lookup(keys, since_ms)
            .await
            .map_err(|e| StoreError::sqlx("reading accepted signatures", e))
    }
}
