//! Raw messages as content-addressed files:
//! `DATA_DIR/messages/<first 2 hex>/<sha256 hex>.eml`.
//!
//! A body is written to a temporary file in its final directory, fsynced,
//! renamed into place, and the directory fsynced, so after [`store_body`]
//! returns the file survives a crash. A file that already exists under its
//! hash is the same content and is not written again, but its mtime is set
//! to now: the mtime says when a message last relied on the file.
//!
//! # Retention against a message being accepted
//!
//! Messages with the same bytes share one file, and a message relies on it
//! from [`store_body`] until its row is committed, before which retention
//! cannot see it in the database. Retention removes a file only through
//! [`remove_untouched`], with a cutoff no later than the reception time of
//! any message it must keep:
//!
//! 1. it renames the file aside (`.<sha256>.<pid>.<n>.prune`, same
//!    directory): atomic, so from then on no writer can touch that inode
//!    through the path;
//! 2. it reads the mtime of the renamed inode: a writer that touched the
//!    file before the rename did so after its message was received, so at
//!    or after the cutoff, and the file is put back (linked to its path;
//!    a copy written meanwhile is the same bytes); otherwise it is deleted.
//!
//! A writer that comes after the rename finds no file (its touch fails)
//! and writes a new one. So every message that [`store_body`] returned for
//! has its file, whatever the interleaving, across processes and instances
//! sharing the directory. A file left aside by a crash between the two
//! steps is put back by [`restore_set_aside`] at the next pruning, which
//! decides again. Retention also asks the database first (a committed
//! message received since the cutoff keeps the file), which covers a touch
//! lost with a machine crash (mtimes are not fsynced). While a file is
//! aside (microseconds), a reader of it gets "not found"; the relay treats
//! that as a temporary failure and retries.

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
#[cfg(test)]
pub fn store_body(data_dir: &Path, sha256: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    store_body_sealed(data_dir, sha256, bytes, None)
}

/// Durably stores `bytes` under their hash, which must be `sha256`, the
/// file sealed under `seal` when given (see [`seal`](super::seal)): the
/// name stays the plaintext's hash, and a file already there in clear is
/// sealed anew. Returns the file's path. Blocking.
pub fn store_body_sealed(
    data_dir: &Path,
    sha256: &str,
    bytes: &[u8],
    seal: Option<&std::sync::Arc<super::seal::DataKey>>,
) -> Result<PathBuf, StoreError> {
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
    let unavailable =
        |what: &str, e: io::Error| StoreError::Unavailable(format!("{what} for {sha256}: {e}"));
    // Not there, or not ours to touch (another owner): a fresh copy, same
    // bytes, is renamed over it.
    if (seal.is_none() || starts_sealed(&path)) && touch(&path).is_ok() {
        return Ok(path);
    }
    let dir = path.parent().expect("body path has a parent");
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| unavailable("creating the body directory", e))?;
        sync_dir(&messages_dir(data_dir)).map_err(|e| unavailable("syncing messages/", e))?;
    }
    let tmp = dir.join(temp_name(sha256));
    let written = write_synced(&tmp, bytes, seal).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(unavailable("writing the body", e));
    }
    sync_dir(dir).map_err(|e| unavailable("syncing the body directory", e))?;
    Ok(path)
}

/// Sets the mtime of the file at `path` to now (not found: `NotFound`).
fn touch(path: &Path) -> io::Result<()> {
    File::open(path)?.set_modified(std::time::SystemTime::now())
}

/// What [`remove_untouched`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The file was deleted.
    Removed,
    /// A message stored it at or after the cutoff: put back.
    Kept,
    /// There was no file.
    Absent,
}

/// A body file renamed aside, to be deleted or put back.
#[derive(Debug)]
pub struct SetAside {
    path: PathBuf,
    aside: PathBuf,
}

/// Step 1 of a removal: the file renamed aside (`None`: there is none).
pub fn set_aside(data_dir: &Path, sha256: &str) -> io::Result<Option<SetAside>> {
    let Some(path) = body_path(data_dir, sha256) else {
        return Ok(None);
    };
    let dir = path.parent().expect("body path has a parent");
    let aside = dir.join(aside_name(sha256));
    match fs::rename(&path, &aside) {
        Ok(()) => Ok(Some(SetAside { path, aside })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl SetAside {
    /// Step 2: deletes the file unless it was touched at or after `cutoff`,
    /// then puts it back.
    pub fn finish(self, cutoff: std::time::SystemTime) -> io::Result<Removal> {
        let modified = match fs::metadata(&self.aside) {
            Ok(m) => m.modified()?,
            // Put back already (a restore ran meanwhile).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Kept),
            Err(e) => return Err(e),
        };
        if modified >= cutoff {
            put_back(&self.aside, &self.path)?;
            return Ok(Removal::Kept);
        }
        fs::remove_file(&self.aside)?;
        Ok(Removal::Removed)
    }
}

/// Removes the body file with this hash unless a message stored it at or
/// after `cutoff` (see the module docs). Blocking.
pub fn remove_untouched(
    data_dir: &Path,
    sha256: &str,
    cutoff: std::time::SystemTime,
) -> io::Result<Removal> {
    match set_aside(data_dir, sha256)? {
        Some(s) => s.finish(cutoff),
        None => Ok(Removal::Absent),
    }
}

/// Puts back every file a crashed removal left aside; returns how many.
/// Blocking.
pub fn restore_set_aside(data_dir: &Path) -> io::Result<u64> {
    let mut n = 0;
    for sub in fs::read_dir(messages_dir(data_dir))? {
        let sub = sub?.path();
        if !sub.is_dir() {
            continue;
        }
        for e in fs::read_dir(&sub)? {
            let aside = e?.path();
            let name = aside.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let sha = name.get(1..65).unwrap_or("");
            if !name.ends_with(".prune") || !is_sha256_hex(sha) {
                continue;
            }
            put_back(&aside, &sub.join(format!("{sha}.eml")))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Links `aside` back to `path` (a copy already there is the same bytes),
/// then removes `aside`.
fn put_back(aside: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(aside, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    fs::remove_file(aside)?;
    sync_dir(path.parent().expect("body path has a parent"))
}

fn write_synced(
    path: &Path,
    bytes: &[u8],
    seal: Option<&std::sync::Arc<super::seal::DataKey>>,
) -> io::Result<()> {
    let mut f = crate::fsutil::create_private(path)?;
    match seal {
        None => f.write_all(bytes)?,
        Some(key) => {
            let mut w = super::seal::SealWriter::new(&mut f, key.clone())?;
            w.write_all(bytes)?;
            w.finish()?;
        }
    }
    f.sync_all()
}

/// Whether the file at `path` is a sealed body (false: absent or in clear).
fn starts_sealed(path: &Path) -> bool {
    let mut head = [0u8; super::seal::MAGIC.len()];
    File::open(path)
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| super::seal::is_sealed(&head))
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

/// Where [`set_aside`] renames a file to.
fn aside_name(sha256: &str) -> String {
    temp_name(sha256).replace(".tmp", ".prune")
}

/// `DATA_DIR/spool`: message bodies being received, too large to hold in
/// memory (see [`BodyWriter`]).
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}

/// Creates `DATA_DIR/spool/` and removes what a stopped process left in it
/// (messages it had not yet answered `250` for: their clients retry). A
/// file of a process still running (another instance sharing the data
/// directory) is left alone. Returns how many were removed. Blocking.
pub fn clean_spool(data_dir: &Path) -> io::Result<u64> {
    let dir = spool_dir(data_dir);
    if !dir.is_dir() {
        crate::fsutil::private_dir(&dir)?;
        return Ok(0);
    }
    let mut removed = 0;
    for e in fs::read_dir(&dir)? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let pid = name.split('.').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid
            .is_some_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists());
        if name.ends_with(".spool") && !alive && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A body being received, written to `DATA_DIR/spool/` as it arrives,
/// with its SHA-256 and length taken along the way. Dropped unfinished,
/// it removes its file.
pub struct BodyWriter {
    file: io::BufWriter<File>,
    path: PathBuf,
    sha256: Sha256,
    len: u64,
}

impl BodyWriter {
    /// Writes go to the kernel in pieces of this size.
    const BUFFER: usize = 256 * 1024;

    /// A new spool file under `data_dir`, holding `head` already.
    pub fn create(data_dir: &Path, head: &[u8]) -> io::Result<BodyWriter> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = spool_dir(data_dir).join(format!("{}.{n}.spool", std::process::id()));
        let file = crate::fsutil::create_private(&path)?;
        let mut w = BodyWriter {
            file: io::BufWriter::with_capacity(Self::BUFFER, file),
            path,
            sha256: Sha256::new(),
            len: 0,
        };
        w.write(head)?;
        Ok(w)
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sha256.update(bytes);
        self.len += bytes.len() as u64;
        self.file.write_all(bytes)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes and fsyncs the file: the body as received, durable once
    /// [`store_spooled`] has renamed it into place. Blocking.
    pub fn finish(mut self) -> io::Result<Spooled> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let path = std::mem::take(&mut self.path);
        let sha256 = hex::encode(std::mem::take(&mut self.sha256).finalize());
        Ok(Spooled {
            path,
            sha256,
            len: self.len,
        })
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A received body in the spool, fsynced: its path, SHA-256 and length.
/// Removed when dropped, unless [`store_spooled`] moved it into place.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    sha256: String,
    len: u64,
}

impl Spooled {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its SHA-256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Opens it for reading.
    pub fn open(&self) -> io::Result<File> {
        File::open(&self.path)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Durably stores the spooled body `spooled` under its hash, as
/// [`store_body`] stores bytes, by renaming the spool file into place (the
/// same file system); the spool copy is gone afterwards. Blocking.
pub fn store_spooled(data_dir: &Path, spooled: &Spooled) -> Result<PathBuf, StoreError> {
    let sha256 = spooled.sha256();
    let path = body_path(data_dir, sha256).ok_or_else(|| {
        StoreError::Bug(format!(
            "refusing to store a body: sha256 {sha256:?} is not 64 lowercase hex digits"
        ))
    })?;
    let unavailable =
        |what: &str, e: io::Error| StoreError::Unavailable(format!("{what} for {sha256}: {e}"));
    if touch(&path).is_ok() {
        return Ok(path);
    }
    let dir = path.parent().expect("body path has a parent");
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| unavailable("creating the body directory", e))?;
        sync_dir(&messages_dir(data_dir)).map_err(|e| unavailable("syncing messages/", e))?;
    }
    // A hard link, not a rename: the spool file stays the caller's (its
    // drop removes it), and a second store of the same body finds it.
    match fs::hard_link(&spooled.path, &path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unavailable("moving the spooled body into place", e)),
    }
    File::open(&path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .map_err(|e| unavailable("touching the body", e))?;
    sync_dir(dir).map_err(|e| unavailable("syncing the body directory", e))?;
    Ok(path)
}

/// A stored body opened for reading, as [`open_body`] gives it.
pub struct BodyReader {
    /// The file, at its start.
    pub file: File,
    /// Its length.
    pub len: u64,
}

/// Opens the body file with this hash for reading (streamed by the relay
/// and by verification, never read whole). Blocking.
pub fn open_body(data_dir: &Path, sha256: &str) -> io::Result<BodyReader> {
    let path = body_path(data_dir, sha256).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{sha256:?} is not a SHA-256 in hex"),
        )
    })?;
    let file = File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let len = file.metadata()?.len();
    Ok(BodyReader { file, len })
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

    /// A stored body whose file was last touched a day ago.
    fn old_body(dir: &Path) -> (String, PathBuf, std::time::SystemTime) {
        prepare(dir).unwrap();
        let sha = hex::encode(Sha256::digest(BODY));
        let path = store_body(dir, &sha, BODY).unwrap();
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        File::open(&path).unwrap().set_modified(now - day).unwrap();
        // Retention's cutoff: an hour ago (bodies received before go).
        (sha, path, now - day / 24)
    }

    const BODY: &[u8] = b"Subject: shared\r\n\r\nsame bytes\r\n";

    #[test]
    fn an_untouched_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (sha, path, cutoff) = old_body(dir.path());
        assert_eq!(
            remove_untouched(dir.path(), &sha, cutoff).unwrap(),
            Removal::Removed
        );
        assert!(!path.exists());
        assert_eq!(
            remove_untouched(dir.path(), &sha, cutoff).unwrap(),
            Removal::Absent
        );
    }

    #[test]
    fn a_message_stored_at_either_step_keeps_its_file() {
        for between in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (sha, path, cutoff) = old_body(dir.path());
            // A new message with the same bytes, not yet committed: before
            // the rename it touches the file, after it it writes a new one.
            if !between {
                store_body(dir.path(), &sha, BODY).unwrap();
            }
            let aside = set_aside(dir.path(), &sha).unwrap().unwrap();
            assert!(!path.exists());
            if between {
                store_body(dir.path(), &sha, BODY).unwrap();
            }
            let expected = if between {
                Removal::Removed
            } else {
                Removal::Kept
            };
            assert_eq!(aside.finish(cutoff).unwrap(), expected, "{between}");
            assert_eq!(fs::read(&path).unwrap(), BODY, "{between}");
            assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        }
    }

    #[test]
    fn a_crash_while_set_aside_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let (sha, path, _) = old_body(dir.path());
        let aside = set_aside(dir.path(), &sha).unwrap().unwrap();
        drop(aside);
        assert!(!path.exists());
        assert_eq!(restore_set_aside(dir.path()).unwrap(), 1);
        assert_eq!(fs::read(&path).unwrap(), BODY);
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
