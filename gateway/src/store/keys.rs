//! The data keys of bodies encrypted at rest (see [`seal`](super::seal)
//! for the format): random AES-256 keys, each wrapped by the
//! key-encryption key (KEK) and kept in the `data_keys` table, so every
//! instance sharing the database reads every body. The KEK itself is never
//! stored by emla: it is read at start from a file, an environment variable
//! or a systemd credential (`[storage]`).
//!
//! The newest key seals; older ones stay for reading (`emla keys rotate`
//! adds one). A running store looks for a newer key at most every
//! [`REFRESH`], and reloads at once when a body names a key it lacks.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sqlx::Row;

use super::db::{on_pool, Db};
use super::seal::{self, DataKey, Kek, Keyring, KEY_LEN};
use super::StoreError;
use crate::config::{KekSource, StorageConfig};

/// How long a sealing store keeps using its current key before it looks
/// for a newer one (another process ran `emla keys rotate`).
pub const REFRESH: Duration = Duration::from_secs(60);

/// One row of `data_keys`, as `emla keys list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The id sealed bodies name.
    pub id: u32,
    /// When it was made, ms since the epoch.
    pub created_at: i64,
    /// Whether new bodies are sealed under it (the newest).
    pub current: bool,
}

/// The KEK `source` names.
pub fn load_kek(source: &KekSource) -> Result<Kek, String> {
    let (bytes, what) = match source {
        KekSource::File(p) => (read_secret(p)?, source.to_string()),
        KekSource::Env(name) => {
            let v = std::env::var_os(name)
                .ok_or_else(|| format!("[storage] kek_env: the variable {name} is not set"))?;
            (v.into_encoded_bytes(), source.to_string())
        }
        KekSource::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                format!(
                    "[storage] kek_credential {name}: $CREDENTIALS_DIRECTORY is not set \
                     (systemd sets it for a unit with LoadCredential={name}:…)"
                )
            })?;
            if name.is_empty() || name.contains('/') || name == ".." {
                return Err(format!(
                    "[storage] kek_credential {name:?}: not a credential name"
                ));
            }
            (
                read_secret(&Path::new(&dir).join(name))?,
                source.to_string(),
            )
        }
    };
    parse_key(&bytes)
        .map(|k| Kek::new(&k))
        .map_err(|e| format!("[storage] {what}: {e}"))
}

fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "[storage] cannot read the key-encryption key {}: {e}",
            path.display()
        )
    })
}

/// 32 bytes as given: raw (a file of exactly 32 bytes, not all text), or
/// 64 hex digits, or base64, surrounding white space ignored. A 32-letter
/// text is no raw key: it would be a passphrase, not a random key.
fn parse_key(bytes: &[u8]) -> Result<[u8; KEY_LEN], String> {
    let text = |b: &u8| b.is_ascii_graphic() || b.is_ascii_whitespace();
    if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
        if !raw.iter().all(text) {
            return Ok(raw);
        }
    }
    let text = bytes.trim_ascii();
    let decoded = if text.len() == 2 * KEY_LEN && text.iter().all(u8::is_ascii_hexdigit) {
        hex::decode(text).ok()
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    };
    decoded
        .and_then(|d| <[u8; KEY_LEN]>::try_from(d).ok())
        .ok_or_else(|| {
            format!(
                "expected a 256-bit key: 32 bytes, 64 hex digits or base64 of 32 bytes \
                 (make one with `openssl rand -hex 32`), found {} bytes that are none of these",
                bytes.len()
            )
        })
}

/// Sealing and opening bodies: the KEK, whether to seal, the keys loaded.
pub struct Sealing {
    kek: Kek,
    /// Names the KEK in messages (`kek_file /etc/…`).
    source: String,
    encrypt: bool,
    loaded: RwLock<(Arc<Keyring>, Instant)>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("source", &self.source)
            .field("encrypt", &self.encrypt)
            .finish()
    }
}

impl Sealing {
    /// With a KEK configured: the KEK read and every data key unwrapped
    /// (the first made when sealing and there is none). A KEK that does not
    /// unwrap them is a configuration error: the gateway does not start.
    pub async fn open(db: &Db, cfg: &StorageConfig) -> Result<Option<Sealing>, StoreError> {
        let Some(source) = &cfg.kek else {
            return Ok(None);
        };
        let kek = load_kek(source).map_err(StoreError::Config)?;
        let sealing = Sealing {
            kek,
            source: source.to_string(),
            encrypt: cfg.encrypt_bodies,
            loaded: RwLock::new((Arc::new(Keyring::default()), Instant::now())),
        };
        if cfg.encrypt_bodies && db.data_keys().await.map_err(read_err)?.is_empty() {
            sealing.add_key(db).await?;
        }
        sealing.reload(db).await?;
        Ok(Some(sealing))
    }

    fn cached(&self) -> (Arc<Keyring>, Instant) {
        let guard = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        (guard.0.clone(), guard.1)
    }

    /// Reads and unwraps every data key.
    async fn reload(&self, db: &Db) -> Result<Arc<Keyring>, StoreError> {
        let rows = db.data_keys().await.map_err(read_err)?;
        let mut keys = Vec::with_capacity(rows.len());
        for (id, _, wrapped) in rows {
            keys.push(self.kek.unwrap_key(id, &wrapped).ok_or_else(|| {
                StoreError::Config(format!(
                    "the key-encryption key ({}) does not unwrap data key {id}: it is not the \
                     KEK that wrapped the keys of this database, or the row was altered",
                    self.source
                ))
            })?);
        }
        let ring = Arc::new(Keyring::new(keys));
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = (ring.clone(), Instant::now());
        Ok(ring)
    }

    /// The key to seal a new body under; `None` when bodies are not sealed.
    pub async fn sealing_key(&self, db: &Db) -> Result<Option<Arc<DataKey>>, StoreError> {
        if !self.encrypt {
            return Ok(None);
        }
        let (mut ring, at) = self.cached();
        if at.elapsed() >= REFRESH {
            match self.reload(db).await {
                Ok(r) => ring = r,
                // The key in hand still seals well: a database hiccup here
                // must not refuse mail.
                Err(e) => tracing::warn!(error = %e, "cannot look for a newer data key"),
            }
        }
        ring.current()
            .cloned()
            .map(Some)
            .ok_or_else(|| StoreError::Bug("no data key to seal bodies under".into()))
    }

    /// The keyring holding data key `id`, reloaded if the cached one lacks
    /// it (another instance rotated); may still lack it.
    pub async fn keyring_for(&self, db: &Db, id: u32) -> Result<Arc<Keyring>, StoreError> {
        let (ring, _) = self.cached();
        if ring.get(id).is_some() {
            return Ok(ring);
        }
        self.reload(db).await
    }

    /// Adds a new data key, which becomes current; returns its id.
    pub async fn add_key(&self, db: &Db) -> Result<u32, StoreError> {
        // Two processes adding at once: the loser of the primary key takes
        // the next id.
        for _ in 0..5 {
            let next = db
                .data_keys()
                .await
                .map_err(read_err)?
                .last()
                .map_or(1, |(id, _, _)| id + 1);
            let key: [u8; KEY_LEN] = seal::random().map_err(|e| StoreError::Bug(e.to_string()))?;
            let wrapped = self
                .kek
                .wrap_key(next, &key)
                .map_err(|e| StoreError::Bug(e.to_string()))?;
            let added = db
                .insert_data_key(next, &wrapped, super::now_ms())
                .await
                .map_err(|e| StoreError::sqlx("adding a data key", e))?;
            if added {
                self.reload(db).await?;
                return Ok(next);
            }
        }
        Err(StoreError::Unavailable(
            "adding a data key: other processes keep adding keys at the same time".into(),
        ))
    }

    /// Wraps every data key anew under `new`, in one transaction (this
    /// KEK must unwrap them all); returns how many. From then on only `new`
    /// opens the store.
    pub async fn rewrap(&self, db: &Db, new: &Kek) -> Result<usize, StoreError> {
        let rows = db.data_keys().await.map_err(read_err)?;
        let mut rewrapped = Vec::with_capacity(rows.len());
        for (id, _, wrapped) in rows {
            let key = self.kek.unwrap_bytes(id, &wrapped).ok_or_else(|| {
                StoreError::Config(format!(
                    "the key-encryption key ({}) does not unwrap data key {id}",
                    self.source
                ))
            })?;
            let again = new
                .wrap_key(id, &key)
                .map_err(|e| StoreError::Bug(e.to_string()))?;
            rewrapped.push((id, again));
        }
        db.replace_wrapped(&rewrapped)
            .await
            .map_err(|e| StoreError::sqlx("wrapping the data keys anew", e))?;
        Ok(rewrapped.len())
    }

    /// The data keys, oldest first.
    pub async fn list(&self, db: &Db) -> Result<Vec<KeyInfo>, StoreError> {
        let ring = self.reload(db).await?;
        let current = ring.current().map(|k| k.id());
        Ok(db
            .data_keys()
            .await
            .map_err(read_err)?
            .into_iter()
            .map(|(id, created_at, _)| KeyInfo {
                id,
                created_at,
                current: Some(id) == current,
            })
            .collect())
    }
}

fn read_err(e: sqlx::Error) -> StoreError {
    StoreError::sqlx("reading the data keys", e)
}

impl Db {
    /// Rows of `data_keys` by id: id, created_at, wrapped key.
    async fn data_keys(&self) -> Result<Vec<(u32, i64, Vec<u8>)>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query("SELECT id, created_at, wrapped FROM data_keys ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    let id: i64 = r.try_get("id")?;
                    let id = u32::try_from(id).map_err(|_| {
                        super::db::decode("id", format!("data key id {id} is out of range"))
                    })?;
                    Ok((id, r.try_get("created_at")?, r.try_get("wrapped")?))
                })
                .collect()
        })
    }

    /// Sets the wrapped form of each key `(id, wrapped)`, all or none.
    async fn replace_wrapped(&self, keys: &[(u32, Vec<u8>)]) -> Result<(), sqlx::Error> {
        on_pool!(self, pool, d => {
            let mut tx = pool.begin().await?;
            for (id, wrapped) in keys {
                sqlx::query("UPDATE data_keys SET wrapped = $1 WHERE id = $2")
                    .bind(wrapped)
                    .bind(i64::from(*id))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// Inserts a wrapped key; false when the id is taken.
    async fn insert_data_key(
        &self,
        id: u32,
        wrapped: &[u8],
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        on_pool!(self, pool, d => {
            let done = sqlx::query(
                "INSERT INTO data_keys (id, wrapped, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(i64::from(id))
            .bind(wrapped)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keks_are_read_raw_hex_or_base64_and_named_when_wrong() {
        let raw = [7u8; 32];
        assert_eq!(parse_key(&raw).unwrap(), raw);
        let e = parse_key(b"a passphrase of 32 letters, long").unwrap_err();
        assert!(e.contains("found 32 bytes"), "{e}");
        let hex = format!("{}\n", hex::encode(raw));
        assert_eq!(parse_key(hex.as_bytes()).unwrap(), raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(parse_key(b64.as_bytes()).unwrap(), raw);
        let e = parse_key(b"too short").unwrap_err();
        assert!(e.contains("expected a 256-bit key"), "{e}");
        assert!(parse_key(hex::encode([1u8; 16]).as_bytes()).is_err());
    }

    #[test]
    fn a_kek_comes_from_a_file_a_variable_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let hex = hex::encode([3u8; 32]);
        std::fs::write(dir.path().join("kek"), &hex).unwrap();
        let wrapped = |k: Kek| k.wrap_key(1, &[9; 32]).unwrap();
        let by_file = wrapped(load_kek(&KekSource::File(dir.path().join("kek"))).unwrap());
        assert!(Kek::new(&[3; 32]).unwrap_key(1, &by_file).is_some());
        let e = load_kek(&KekSource::File(dir.path().join("none")))
            .err()
            .unwrap();
        assert!(e.contains("cannot read the key-encryption key"), "{e}");
        let e = load_kek(&KekSource::Env("EMLA_TEST_NO_SUCH_KEK".into()))
            .err()
            .unwrap();
        assert!(e.contains("EMLA_TEST_NO_SUCH_KEK is not set"), "{e}");
        let e = load_kek(&KekSource::Credential("../kek".into()))
            .err()
            .unwrap();
        assert!(
            e.contains("CREDENTIALS_DIRECTORY") || e.contains("not a credential"),
            "{e}"
        );
    }
}
