//! Signed checkpoints of the audit chain head.
//!
//! The hash chain detects any edit, deletion or reordering of audit records
//! — except a consistent rewrite by someone holding the database, who can
//! recompute every hash and the head. A checkpoint closes that gap: the
//! gateway writes the head `{seq, hash}` to a small JSON document outside
//! the database, signs it with its S/MIME signing identity (CMS detached
//! SignedData, DER), and records an `audit.checkpoint` event. Whoever keeps
//! a copy of the two files can later prove that record `seq` of the log
//! still has exactly that hash, and so that nothing up to it changed
//! (`emla audit verify --checkpoint FILE`).
//!
//! Files, in `[audit] checkpoint_dir` (default `DATA_DIR/checkpoints`):
//!
//! - `checkpoint-<seq>.json`: the document, one line of JSON ending in a
//!   line feed, keys in this order: `format` (`emla-checkpoint/1`), `seq`,
//!   `hash`, `at` (RFC 3339, UTC), `at_ms`, `gateway` (hostname),
//!   `policy_version`. The signature covers the file's bytes exactly.
//! - `checkpoint-<seq>.p7s`: CMS SignedData (DER), detached, signed
//!   attributes contentType, messageDigest and signingTime, with the
//!   gateway's certificate chain. Check it with
//!   `openssl cms -verify -binary -inform DER -in checkpoint-<seq>.p7s
//!   -content checkpoint-<seq>.json -CAfile CA.pem -out /dev/null`.
//!
//! Without a signing identity (`signing_cert`/`signing_key` in the
//! policy's `gateway.toml`) no checkpoint is written, unless `[audit]
//! allow_unsigned_checkpoints = true`, in which case the `.json` is written
//! alone, with a warning; `emla audit verify --checkpoint` refuses unsigned
//! checkpoints unless given `--allow-unsigned`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use webpki::KeyUsage;

use crate::clock::EvalTime;
use crate::config::AuditConfig;
use crate::policy::{CurrentPolicy, Policy};
use crate::smime::cms;
use crate::smime::tsa::{Stamp, Tsa};
use crate::store::{
    AuditEvent, AuditKind, CheckpointData, CheckpointMail, CheckpointSigner, ExclusiveJob, Record,
    Store, StoreError,
};

/// The `format` of a checkpoint document.
pub const FORMAT: &str = "emla-checkpoint/1";

/// The audit event kind recorded for every checkpoint written.
pub const EVENT_KIND: AuditKind = AuditKind::AuditCheckpoint;

/// id-kp-emailProtection, DER value octets.
const EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

/// What a checkpoint states: record `seq` of the chain has hash `hash`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Always [`FORMAT`].
    pub format: String,
    /// The seq of the chain head when it was written (0: empty log).
    pub seq: i64,
    /// The hash of record `seq` (64 zeros for an empty log).
    pub hash: String,
    /// When it was written, RFC 3339 UTC.
    pub at: String,
    /// The same instant, ms since the epoch.
    pub at_ms: i64,
    /// The gateway's hostname (policy `[gateway] hostname`).
    pub gateway: String,
    /// The policy version in force.
    pub policy_version: String,
}

impl Checkpoint {
    /// The document's bytes exactly as written and signed: the fields in
    /// declaration order as compact JSON, then one line feed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a checkpoint serializes");
        v.push(b'\n');
        v
    }

    /// Parses a checkpoint document.
    pub fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
        let c: Checkpoint =
            serde_json::from_slice(bytes).map_err(|e| format!("not a checkpoint document: {e}"))?;
        if c.format != FORMAT {
            return Err(format!("format {:?} is not {FORMAT:?}", c.format));
        }
        if c.seq < 0 || c.hash.len() != 64 || !c.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "seq {} / hash {:?} are not a chain position",
                c.seq, c.hash
            ));
        }
        Ok(c)
    }

    /// The instant it was written, for certificate validity.
    pub fn eval_time(&self) -> EvalTime {
        EvalTime::from_unix(u64::try_from(self.at_ms / 1000).unwrap_or(0))
    }
}

/// `checkpoint-<seq>.json` in `dir`.
pub fn json_path(dir: &Path, seq: i64) -> PathBuf {
    dir.join(format!("checkpoint-{seq}.json"))
}

/// The signature file next to a checkpoint document: `….json` → `….p7s`.
pub fn p7s_path(json: &Path) -> PathBuf {
    json.with_extension("p7s")
}

/// Why no checkpoint could be written.
#[derive(Debug)]
pub enum CheckpointError {
    /// No signing identity and unsigned checkpoints not allowed; or the
    /// directory cannot be written: a configuration problem (exit 2).
    Config(String),
    /// The store failed.
    Store(StoreError),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Config(e) => f.write_str(e),
            CheckpointError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl From<StoreError> for CheckpointError {
    fn from(e: StoreError) -> Self {
        CheckpointError::Store(e)
    }
}

/// A checkpoint that was written.
#[derive(Clone, Debug)]
pub struct Written {
    /// What it states.
    pub checkpoint: Checkpoint,
    /// The `.json` file.
    pub json: PathBuf,
    /// The `.p7s` file (absent when unsigned).
    pub p7s: Option<PathBuf>,
}

/// Writes a checkpoint of the current chain head to `dir` (created if
/// needed), signed with the policy's signing identity, then records an
/// `audit.checkpoint` event naming it (that event is therefore the first
/// record the checkpoint does not cover). With `checkpoint_mail`, the same
/// transaction queues a signed mail carrying both files to that address.
pub async fn write(
    store: &Store,
    policy: &Policy,
    dir: &Path,
    audit: &crate::config::AuditConfig,
    tsa: Option<&Tsa>,
) -> Result<Written, CheckpointError> {
    let allow_unsigned = audit.allow_unsigned;
    let signing = policy.gateway.signing.clone();
    if signing.is_none() && !allow_unsigned {
        return Err(CheckpointError::Config(format!(
            "no checkpoint written: the policy {} has no signing identity \
             ([gateway] signing_cert, signing_key); set [audit] \
             allow_unsigned_checkpoints = true to write unsigned ones",
            policy.dir.display()
        )));
    }
    let (seq, hash) = store.chain_head().await?;
    let now = SystemTime::now();
    let at_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let checkpoint = Checkpoint {
        format: FORMAT.into(),
        seq,
        hash,
        at: EvalTime::from_unix((at_ms / 1000) as u64).to_rfc3339(),
        at_ms,
        gateway: policy.gateway.hostname.clone(),
        policy_version: policy.version.clone(),
    };
    let bytes = checkpoint.to_bytes();
    let detached = signing.as_ref().map(|id| id.sign_detached(&bytes, now));
    let stamp = match &detached {
        Some(d) => crate::receipts::notify::stamp(tsa, d).await,
        None => None,
    };
    let signature = detached
        .as_ref()
        .map(|d| d.to_der(stamp.as_ref().and_then(Stamp::token)));
    let json = json_path(dir, seq);
    let p7s = signature.as_ref().map(|_| p7s_path(&json));
    write_files(dir, &json, p7s.as_deref(), &bytes, signature.as_deref()).await?;
    let mut data = CheckpointData {
        seq: checkpoint.seq,
        hash: checkpoint.hash.clone(),
        at: checkpoint.at.clone(),
        file: json.file_name().map(|n| n.to_string_lossy().into_owned()),
        sha256: hex::encode(Sha256::digest(&bytes)),
        signed: signature.is_some(),
        signer: signing.as_ref().map(|id| CheckpointSigner {
            subject: id.subject().to_string(),
            sha256: hex::encode(Sha256::digest(id.certificate_der())),
        }),
        mailed: None,
        timestamp: stamp
            .as_ref()
            .map(crate::receipts::notify::timestamp_record),
    };
    let mut outgoing = None;
    if let Some(to) = &audit.checkpoint_mail {
        match (&signing, policy.authority_for_address(to)) {
            (Some(id), Some(authority)) => {
                let (m, q) = mail(
                    policy,
                    authority,
                    id,
                    to,
                    &checkpoint,
                    &bytes,
                    signature.as_deref(),
                    now,
                );
                // In the checkpoint's own record: it stays the chain head.
                data.mailed = Some(CheckpointMail {
                    to: to.clone(),
                    mail_id: m.id.clone(),
                });
                outgoing = Some((m, q));
            }
            (None, _) => {
                tracing::warn!(to = %to, "checkpoint_mail: an unsigned checkpoint is not mailed")
            }
            (_, None) => tracing::warn!(
                to = %to,
                "checkpoint_mail: the address is in no authority's domain; not mailed"
            ),
        }
    }
    let mut record = Record {
        events: vec![AuditEvent {
            kind: EVENT_KIND,
            message_id: None,
            data: serde_json::to_value(&data).unwrap_or_default(),
        }],
        ..Record::default()
    };
    if let Some((m, q)) = outgoing {
        record.outgoing.push(m);
        record.queue.push(q);
    }
    store.record(record).await?;
    if signature.is_none() {
        tracing::warn!(
            seq = checkpoint.seq,
            "audit checkpoint written UNSIGNED (no signing identity in the policy)"
        );
    }
    Ok(Written {
        checkpoint,
        json,
        p7s,
    })
}

/// Writes the checkpoint's files into `dir` (created if needed), each
/// fsynced: the signature first (a `.json` without its `.p7s` would look
/// unsigned), then the directory.
async fn write_files(
    dir: &Path,
    json: &Path,
    p7s: Option<&Path>,
    bytes: &[u8],
    signature: Option<&[u8]>,
) -> Result<(), CheckpointError> {
    let (dir, json, p7s, bytes, signature) = (
        dir.to_path_buf(),
        json.to_path_buf(),
        p7s.map(Path::to_path_buf),
        bytes.to_vec(),
        signature.map(<[u8]>::to_vec),
    );
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let (Some(p), Some(s)) = (&p7s, &signature) {
            write_synced(p, s)?;
        }
        write_synced(&json, &bytes)?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
    })
    .await
    .map_err(|e| CheckpointError::Config(format!("writing the checkpoint: {e}")))?
    .map_err(CheckpointError::Config)
}

/// The signed mail that carries checkpoint `c` (its `.json` bytes and
/// `.p7s` signature as attachments) to an auditor.
#[allow(clippy::too_many_arguments)]
fn mail(
    policy: &Policy,
    authority: &crate::policy::Authority,
    identity: &crate::smime::sign::SigningIdentity,
    to: &str,
    c: &Checkpoint,
    json_bytes: &[u8],
    p7s: Option<&[u8]>,
    at: SystemTime,
) -> (crate::store::MessageRecord, crate::store::QueueEntry) {
    let host = &policy.gateway.hostname;
    let headers: Vec<(&'static str, String)> = vec![
        ("From", policy.gateway.postmaster.clone()),
        ("To", to.to_owned()),
        (
            "Subject",
            format!("emla audit checkpoint {} of {host}", c.seq),
        ),
        ("Date", crate::receipts::build::rfc5322_date(at)),
        (
            "Message-ID",
            format!("<checkpoint.{}.{}@{host}>", c.seq, identity.random_hex(8)),
        ),
        ("Auto-Submitted", "auto-generated".into()),
    ];
    let boundary = format!("emla-checkpoint-{}", identity.random_hex(12));
    let name = format!("checkpoint-{}", c.seq);
    let mut entity = format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         The audit log of {host} had {seq} records at {at}; the hash of record {seq}\r\n\
         is {hash}. Keep this mail and its attachments outside the gateway: a\r\n\
         later `emla audit verify --checkpoint {name}.json` proves the log was\r\n\
         not rewritten up to that record.\r\n",
        seq = c.seq,
        at = c.at,
        hash = c.hash,
    )
    .into_bytes();
    let mut attach = |file: &str, ctype: &str, data: &[u8]| {
        entity.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {ctype}; name=\"{file}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"{file}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        entity.extend_from_slice(&crate::smime::sign::base64_lines(data));
    };
    attach(&format!("{name}.json"), "application/json", json_bytes);
    if let Some(sig) = p7s {
        attach(&format!("{name}.p7s"), "application/pkcs7-signature", sig);
    }
    entity.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let bytes = identity.sign_mime(&headers, &entity, at);
    crate::receipts::notify::gateway_message(
        policy,
        authority,
        to,
        bytes,
        &headers,
        format!("audit checkpoint {} mailed to {to}", c.seq),
        "checkpoint",
        None,
    )
}

/// Writes `bytes` to `path` atomically (see [`crate::fsutil`]).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::fsutil::write_atomic(path, bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Starts the periodic checkpoint writer of `emla serve` (`[audit]
/// checkpoint_interval_secs`); `None` when turned off. A tick runs only on
/// the instance that gets [`ExclusiveJob::Checkpoint`] (the others skip
/// it); one whose head record is an `audit.checkpoint` record (nothing
/// happened since the last checkpoint, whoever wrote it) writes nothing.
pub fn spawn(
    cfg: AuditConfig,
    tsa: Option<Tsa>,
    store: Store,
    policy: Arc<CurrentPolicy>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = cfg.checkpoint_interval?;
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            // One instance at a time; the head is read under the lock.
            let Some(lock) = store.exclusive_round(ExclusiveJob::Checkpoint).await else {
                continue;
            };
            if let Some(tsa) = &tsa {
                super::backlog::stamp_checkpoints(&store, &cfg.checkpoint_dir, tsa).await;
            }
            // Nothing happened since the last checkpoint (of this instance,
            // another one sharing the database, or before a restart).
            let due = head_is_checkpoint(&store).await;
            let written = match due {
                Ok(true) => None,
                Ok(false) => {
                    let policy = policy.get();
                    Some(write(&store, &policy, &cfg.checkpoint_dir, &cfg, tsa.as_ref()).await)
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit checkpoint: cannot read the chain head");
                    None
                }
            };
            lock.release().await;
            let Some(written) = written else { continue };
            match written {
                Ok(w) => {
                    tracing::info!(
                        seq = w.checkpoint.seq,
                        hash = %w.checkpoint.hash,
                        file = %w.json.display(),
                        "audit checkpoint written"
                    );
                }
                Err(e) => tracing::error!(error = %e, "audit checkpoint not written"),
            }
            // Never spin: at least a second between two checkpoints.
            tokio::time::sleep(Duration::from_secs(1).min(every)).await;
        }
    }))
}

/// Whether the head record is an `audit.checkpoint` record: the last
/// checkpoint covers everything before it.
async fn head_is_checkpoint(store: &Store) -> Result<bool, StoreError> {
    let (seq, _) = store.chain_head().await?;
    if seq == 0 {
        return Ok(false);
    }
    Ok(store
        .audit_record(seq)
        .await?
        .is_some_and(|r| r.audit_kind() == Some(EVENT_KIND)))
}

/// Reads CA certificates (PEM) for checking checkpoint signatures.
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::pem::read_certificates(path).map_err(|e| e.to_string())
}

/// Checks a detached CMS signature (DER) over `content`: exactly one
/// signer, its messageDigest, its signature, and a certificate path from
/// its certificate (with the others in the CMS as intermediates) to one of
/// `ca` at `at`, the signer having emailProtection if it has an
/// extKeyUsage. Returns the signer's subject.
pub fn verify_detached(
    content: &[u8],
    der: &[u8],
    ca: &[CertificateDer<'_>],
    at: EvalTime,
) -> Result<String, String> {
    let signed = cms::parse(der).map_err(|e| format!("not a CMS signature: {e}"))?;
    if signed.content.is_some() {
        return Err("the signature encapsulates content; a detached one is expected".into());
    }
    let usage = KeyUsage::required_if_present(EMAIL_PROTECTION);
    Ok(crate::smime::check::only_signer(&signed, content, ca, at, usage, "checkpoint")?.subject)
}

/// What checking one checkpoint against the database found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Record `seq` has exactly the signed hash.
    Matches,
    /// Record `seq` has another hash: the log was rewritten.
    Mismatch {
        /// The hash the database holds for record `seq`.
        database: String,
    },
    /// Record `seq` is not in the database (and was not pruned).
    Missing(String),
    /// Records up to `seq` were pruned beyond it: nothing left to compare
    /// (not a failure; the anchor was checked against a later checkpoint
    /// when it was made).
    Pruned {
        /// The anchor's seq.
        anchor: i64,
    },
    /// The document or its signature is not acceptable.
    BadSignature(String),
    /// No `.p7s` and unsigned checkpoints not allowed.
    Unsigned,
}

impl Outcome {
    /// Whether this outcome fails the verification.
    pub fn fails(&self) -> bool {
        !matches!(self, Outcome::Matches | Outcome::Pruned { .. })
    }
}

/// One checkpoint file checked.
#[derive(Clone, Debug)]
pub struct CheckpointCheck {
    /// The `.json` file.
    pub file: PathBuf,
    /// The checkpoint (absent when unreadable).
    pub checkpoint: Option<Checkpoint>,
    /// The signer's subject, when the signature verified.
    pub signer: Option<String>,
    /// The result.
    pub outcome: Outcome,
}

impl CheckpointCheck {
    /// One line for `emla audit verify`.
    pub fn text(&self) -> String {
        let f = self.file.display();
        let (seq, hash) = self
            .checkpoint
            .as_ref()
            .map(|c| (c.seq, c.hash.as_str()))
            .unwrap_or((0, ""));
        match &self.outcome {
            Outcome::Matches => format!(
                "checkpoint seq {seq} ({f}): matches, hash {hash}, signed by {}",
                self.signer.as_deref().unwrap_or("nobody (unsigned, allowed)")
            ),
            Outcome::Mismatch { database } => format!(
                "checkpoint seq {seq} ({f}): BROKEN: the signed checkpoint says hash {hash}, \
                 the database's record {seq} has hash {database}: the log was rewritten"
            ),
            Outcome::Missing(why) => format!("checkpoint seq {seq} ({f}): BROKEN: {why}"),
            Outcome::Pruned { anchor } => format!(
                "checkpoint seq {seq} ({f}): not comparable: records up to {anchor} were pruned"
            ),
            Outcome::BadSignature(e) => format!("checkpoint ({f}): BAD SIGNATURE: {e}"),
            Outcome::Unsigned => format!(
                "checkpoint seq {seq} ({f}): UNSIGNED (no {}); pass --allow-unsigned to compare it anyway",
                p7s_path(&self.file).display()
            ),
        }
    }

    /// One JSON object for `emla audit verify --json`.
    pub fn json(&self) -> serde_json::Value {
        let (result, detail) = match &self.outcome {
            Outcome::Matches => ("matches", None),
            Outcome::Mismatch { database } => ("mismatch", Some(database.clone())),
            Outcome::Missing(w) => ("missing", Some(w.clone())),
            Outcome::Pruned { anchor } => ("pruned", Some(anchor.to_string())),
            Outcome::BadSignature(e) => ("bad-signature", Some(e.clone())),
            Outcome::Unsigned => ("unsigned", None),
        };
        json!({
            "file": self.file.display().to_string(),
            "seq": self.checkpoint.as_ref().map(|c| c.seq),
            "hash": self.checkpoint.as_ref().map(|c| c.hash.clone()),
            "signer": self.signer,
            "result": result,
            "ok": !self.outcome.fails(),
            "database_hash": if let Outcome::Mismatch { database } = &self.outcome { Some(database) } else { None },
            "detail": detail,
        })
    }
}

/// Checks the checkpoint `json_file` (and its `.p7s`) against the CA
/// certificates `ca` and the database: the signature first, then that the
/// database's record `seq` (or the pruning anchor at `seq`) has exactly the
/// signed hash. Only store failures are `Err`.
pub async fn check(
    store: &Store,
    json_file: &Path,
    ca: &[CertificateDer<'_>],
    allow_unsigned: bool,
) -> Result<CheckpointCheck, StoreError> {
    let mut out = CheckpointCheck {
        file: json_file.to_path_buf(),
        checkpoint: None,
        signer: None,
        outcome: Outcome::Matches,
    };
    let bytes = match std::fs::read(json_file) {
        Ok(b) => b,
        Err(e) => {
            out.outcome = Outcome::BadSignature(format!("cannot read it: {e}"));
            return Ok(out);
        }
    };
    let cp = match Checkpoint::parse(&bytes) {
        Ok(c) => c,
        Err(e) => {
            out.outcome = Outcome::BadSignature(e);
            return Ok(out);
        }
    };
    out.checkpoint = Some(cp.clone());
    match std::fs::read(p7s_path(json_file)) {
        Ok(sig) => match verify_detached(&bytes, &sig, ca, cp.eval_time()) {
            Ok(subject) => out.signer = Some(subject),
            Err(e) => {
                out.outcome = Outcome::BadSignature(e);
                return Ok(out);
            }
        },
        Err(_) if allow_unsigned => {}
        Err(_) => {
            out.outcome = Outcome::Unsigned;
            return Ok(out);
        }
    }
    out.outcome = compare(store, &cp).await?;
    Ok(out)
}

/// Compares a checkpoint's `{seq, hash}` with the database.
pub async fn compare(store: &Store, cp: &Checkpoint) -> Result<Outcome, StoreError> {
    if cp.seq == 0 {
        return Ok(if cp.hash == crate::store::chain::GENESIS {
            Outcome::Matches
        } else {
            Outcome::Mismatch {
                database: crate::store::chain::GENESIS.into(),
            }
        });
    }
    if let Some(anchor) = store.chain_anchor().await? {
        if anchor.seq == cp.seq {
            return Ok(if anchor.hash == cp.hash {
                Outcome::Matches
            } else {
                Outcome::Mismatch {
                    database: anchor.hash,
                }
            });
        }
        if anchor.seq > cp.seq {
            return Ok(Outcome::Pruned { anchor: anchor.seq });
        }
    }
    Ok(match store.audit_record(cp.seq).await? {
        Some(r) if r.hash == cp.hash => Outcome::Matches,
        Some(r) => Outcome::Mismatch { database: r.hash },
        None => Outcome::Missing(format!(
            "the database has no record {} (records deleted from the end?)",
            cp.seq
        )),
    })
}

/// The checkpoint files (`checkpoint-<seq>.json`) in `dir`, by seq.
pub fn list(dir: &Path) -> Result<Vec<(i64, PathBuf)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name
                .strip_prefix("checkpoint-")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trips_in_key_order() {
        let c = Checkpoint {
            format: FORMAT.into(),
            seq: 7,
            hash: "ab".repeat(32),
            at: "2026-01-01T00:00:00Z".into(),
            at_ms: 1_767_225_600_000,
            gateway: "emla.test".into(),
            policy_version: "v1".into(),
        };
        let b = c.to_bytes();
        assert!(b.starts_with(b"{\"format\":\"emla-checkpoint/1\",\"seq\":7,\"hash\":\"abab"));
        assert!(b.ends_with(b"\"policy_version\":\"v1\"}\n"));
        assert_eq!(Checkpoint::parse(&b).unwrap(), c);
        assert!(Checkpoint::parse(b"{}").is_err());
    }
}
