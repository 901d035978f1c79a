//! The timestamp backlog of checkpoints: a checkpoint signed while the TSA
//! was down (or before `[evidence] tsa_url` was set) gets its token later.
//! The TSA stamps the signature value already in the `.p7s`, so the token
//! proves the signature existed at its genTime, later than the
//! checkpoint's own `at` but still before anything that could rewrite the
//! log unnoticed afterwards. The file is rewritten atomically with the
//! token as unsigned attribute (the signature is unchanged) and an
//! `audit.checkpoint-stamped` record names both versions' SHA-256.
//!
//! Run from the checkpoint writer's own tick, so whatever keeps a single
//! writer per log also keeps a single backlog job.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::smime::tsa::{self, Stamp, Tsa};
use crate::store::payload::AuditCheckpointStamped;
use crate::store::{AuditEvent, Record, Store};

/// At most this many checkpoints are stamped in one tick, so a long
/// backlog is worked off over several ticks without holding the writer.
const PER_TICK: usize = 20;

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Checkpoints that got their token.
    pub stamped: Vec<i64>,
    /// Checkpoints still without one (the TSA down or its answer refused).
    pub left: usize,
}

/// Stamps the signed checkpoints in `dir` that have no token yet, oldest
/// first, at most [`PER_TICK`]; stops at the first TSA that is unavailable
/// (the rest waits for the next tick). Errors are logged, never fatal.
pub async fn stamp_checkpoints(store: &Store, dir: &Path, tsa: &Tsa) -> Backlog {
    let mut out = Backlog::default();
    let pending = match unstamped(dir).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "timestamp backlog: cannot read the checkpoints");
            return out;
        }
    };
    out.left = pending.len();
    for (seq, path, der) in pending.into_iter().take(PER_TICK) {
        let signature = match tsa::signature_value_of(&der) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "timestamp backlog: not a signature");
                continue;
            }
        };
        let stamp = tsa.stamp(&signature).await;
        let token = match &stamp {
            Stamp::Granted(t) => t,
            Stamp::Unavailable(e) => {
                tracing::warn!(tsa = tsa.url(), error = %e, "timestamp backlog: the TSA is unavailable");
                break;
            }
            Stamp::Refused(e) => {
                tracing::error!(tsa = tsa.url(), seq, error = %e, "timestamp backlog: the TSA's answer is refused");
                continue;
            }
        };
        match rewrite(store, seq, &path, &der, &token.der, &stamp).await {
            Ok(()) => {
                tracing::info!(seq, file = %path.display(), gen_time = %token.gen_time, "checkpoint timestamped");
                out.stamped.push(seq);
                out.left -= 1;
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "timestamp backlog: not rewritten")
            }
        }
    }
    out
}

/// The file with `token` added, then its record. A crash between the two
/// leaves a stamped file without its record; the token is in the file and
/// the record only repeats it.
async fn rewrite(
    store: &Store,
    seq: i64,
    path: &Path,
    der: &[u8],
    token: &[u8],
    stamp: &Stamp,
) -> Result<(), String> {
    let stamped = tsa::add_token(der, token)?;
    let (p, bytes) = (path.to_path_buf(), stamped.clone());
    tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&p, &bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let data = AuditCheckpointStamped {
        seq,
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256_before: hex::encode(Sha256::digest(der)),
        sha256: hex::encode(Sha256::digest(&stamped)),
        timestamp: crate::receipts::notify::timestamp_record(stamp),
    };
    let record = Record {
        events: vec![AuditEvent::of(None, &data)],
        ..Record::default()
    };
    store.record(record).await.map_err(|e| e.to_string())
}

/// The `checkpoint-<seq>.p7s` files of `dir` without a token, by seq,
/// with their bytes.
async fn unstamped(dir: &Path) -> Result<Vec<(i64, PathBuf, Vec<u8>)>, String> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("checkpoint-")?.strip_suffix(".p7s"))
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            let der = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if matches!(tsa::token_of(&der), Ok(None)) {
                out.push((seq, path, der));
            }
        }
        out.sort_by_key(|(seq, _, _)| *seq);
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?
}
