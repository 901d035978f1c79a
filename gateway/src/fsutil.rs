//! File writes that survive a crash (a file is either absent or whole),
//! and private to the gateway's user: MLA requests are not for other local
//! users to read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes everything this process creates from now on private, whatever the
/// umask it was started with: files `0600`, directories `0700`, the SQLite
/// database and its journals included.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and its parents) if needed and makes it `0700`, also
/// when it already existed with a wider mode.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Opens a new file `0600` for writing; it must not exist.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory, fsynced, renamed into place, and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomically(path, |f| f.write_all(bytes))
}

/// A new file at `path` whose bytes `fill` writes, whole or absent after a
/// crash.
fn atomically(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut f = create_private(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Copies the file `from` to `path` as [`write_atomic`] writes bytes:
/// through a temporary file, fsynced, renamed, the directory fsynced.
pub fn copy_atomic(from: &Path, path: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    atomically(path, |f| io::copy(&mut src, f).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    #[test]
    fn a_private_dir_is_narrowed_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d.join("sub")).unwrap();
        private_dir(&d).unwrap();
        for p in [&d, &d.join("sub")] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}: {mode:o}", p.display());
        }
    }
}
