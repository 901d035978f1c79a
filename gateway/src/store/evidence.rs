//! Bytes kept as evidence beside a message's body: of an inbound encrypted
//! message, the message exactly as received (the record's body is the
//! decrypted signed message, which is judged and relayed). Content-addressed
//! and stored like bodies (file or `bodies` row), so [`Store::read_body`]
//! reads them, and retention removes them with the bodies of their age.

use std::sync::Arc;

use super::{files, named, BodyStorage, Store, StoreError};

impl Store {
    /// Durably stores `bytes` under their SHA-256 (returned, lowercase hex),
    /// before the record naming them is committed.
    pub async fn keep_evidence(
        &self,
        bytes: Arc<[u8]>,
        received_at_ms: i64,
    ) -> Result<String, StoreError> {
        let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        // Sealed like the bodies when they are ([storage] encrypt_bodies).
        let key = match &self.inner.sealing {
            Some(s) => s.sealing_key(&self.inner.db).await?,
            None => None,
        };
        if self.inner.bodies == BodyStorage::Database {
            let row = match key {
                Some(key) => super::seal_row(key, bytes, &sha).await?,
                None => bytes,
            };
            let stored = self.inner.db.store_body(&sha, &row, received_at_ms);
            named("storing evidence bytes", stored).await?;
            return Ok(sha);
        }
        let dir = self.inner.data_dir.clone();
        let name = sha.clone();
        tokio::task::spawn_blocking(move || {
            files::store_body_sealed(&dir, &name, &bytes, key.as_ref()).map(drop)
        })
        .await
        .map_err(|e| StoreError::Bug(format!("writing evidence bytes: {e}")))??;
        Ok(sha)
    }
}
