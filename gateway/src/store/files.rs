//! Raw messages as content-addressed files:
//! `DATA_DIR/messages/<first 2 hex>/<sha256 hex>.eml`.
//!
//! A body is written to a temporary file in its final directory, fsynced,
//! renamed into place, and the directory fsynced, so after [`store_body`]
//! returns the file survives a crash. A file that already exists under its
//! hash is the same content and is not written again.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::StoreError;

/// Whether `s` is a SHA-256 in lowercase hex (64 digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `DATA_DIR/messages`.
pub fn messages_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("messages")
}

/// Where the body with this hash lives (`None` if `sha256` is not 64
/// lowercase hex digits).
pub fn body_path(data_dir: &Path, sha256: &str) -> Option<PathBuf> {
    if !is_sha256_hex(sha256) {
        return None;
    }
    Some(
        messages_dir(data_dir)
            .join(&sha256[..2])
            .join(format!("{sha256}.eml")),
    )
}

/// Creates `DATA_DIR/messages/` (and `DATA_DIR`) if needed.
pub fn prepare(data_dir: &Path) -> Result<(), StoreError> {
    let dir = messages_dir(data_dir);
    if dir.is_dir() {
        return Ok(());
    }
    for d in [data_dir, &dir] {
        crate::fsutil::private_dir(d).map_err(|e| {
            StoreError::Config(format!("cannot create data directory {}: {e}", d.display()))
        })?;
    }
    sync_dir(data_dir)
        .map_err(|e| StoreError::Config(format!("cannot sync {}: {e}", data_dir.display())))
}

/// Durably stores `bytes` under their hash, which must be `sha256`.
/// Returns the file's path. Blocking: run it on a blocking thread.
pub fn store_body(data_dir: &Path, sha256: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let path = body_path(data_dir, sha256).ok_or_else(|| {
        StoreError::Bug(format!(
            "refusing to store a body: sha256 {sha256:?} is not 64 lowercase hex digits"
        ))
    })?;
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != sha256 {
        return Err(StoreError::Bug(format!(
            "refusing to store a body: its SHA-256 is {actual}, the record says {sha256}"
        )));
    }
    if path.exists() {
        return Ok(path);
    }
    let unavailable =
        |what: &str, e: io::Error| StoreError::Unavailable(format!("{what} for {sha256}: {e}"));
    let dir = path.parent().expect("body path has a parent");
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| unavailable("creating the body directory", e))?;
        sync_dir(&messages_dir(data_dir)).map_err(|e| unavailable("syncing messages/", e))?;
    }
    let tmp = dir.join(temp_name(sha256));
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(unavailable("writing the body", e));
    }
    sync_dir(dir).map_err(|e| unavailable("syncing the body directory", e))?;
    Ok(path)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = crate::fsutil::create_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A name no other writer (thread or process) uses at the same time.
fn temp_name(sha256: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{sha256}.{}.{n}.tmp", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let body = b"Subject: x\r\n\r\nhello\r\n";
        let sha = hex::encode(Sha256::digest(body));
        let path = store_body(dir.path(), &sha, body).unwrap();
        assert_eq!(
            path,
            dir.path()
                .join("messages")
                .join(&sha[..2])
                .join(format!("{sha}.eml"))
        );
        assert_eq!(fs::read(&path).unwrap(), body);
        // Second time: same path, nothing else in the directory.
        assert_eq!(store_body(dir.path(), &sha, body).unwrap(), path);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_wrong_hash_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let wrong = hex::encode(Sha256::digest(b"other"));
        let e = store_body(dir.path(), &wrong, b"body").unwrap_err();
        assert!(matches!(e, StoreError::Bug(ref m) if m.contains("SHA-256")));
        assert!(store_body(dir.path(), "../../etc/passwd", b"x").is_err());
        assert!(body_path(dir.path(), &"A".repeat(64)).is_none());
    }
}
