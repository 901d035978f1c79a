//! `emla audit verify --receipt FILE`: a receipt, as its sender got it,
//! checked against the log (`docs/evidence-vocabulary.md`, "Receipts
//! anchor the log"): the gateway's signature, the record it names, the
//! chain up to it, and the checkpoint it names.

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};

use super::checkpoint::verify_detached;
use crate::clock::EvalTime;
use crate::smime::mime::Entity;
use crate::store::{ChainCheck, Store, StoreError};

/// What a receipt says of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// emla's id of the message the receipt is about.
    pub message_id: String,
    /// The kind of its event's record.
    pub kind: String,
    /// That record's content hash.
    pub content_sha256: String,
    /// The committed head the record follows.
    pub after_seq: i64,
    /// Its hash.
    pub after_hash: String,
    /// The latest signed checkpoint named, `(seq, hash)`.
    pub checkpoint: Option<(i64, String)>,
}

/// The outcome: the record found, or the first thing that does not match.
#[derive(Clone, Debug)]
pub struct Check {
    /// Who signed the receipt.
    pub signer: String,
    /// What the receipt claims.
    pub claim: Claim,
    /// The record of the event, `(seq, hash)`, when found.
    pub found: Option<(i64, String)>,
    /// The first mismatch, `None` when the receipt matches the log.
    pub problem: Option<String>,
}

impl Check {
    /// The report as text.
    pub fn text(&self) -> String {
        let c = &self.claim;
        match &self.problem {
            None => format!(
                "receipt matches the log: signed by {}; {} of message {} is record {} (hash {}), \
                 after record {}{}",
                self.signer,
                c.kind,
                c.message_id,
                self.found.as_ref().map_or(0, |f| f.0),
                self.found.as_ref().map_or("", |f| f.1.as_str()),
                c.after_seq,
                c.checkpoint
                    .as_ref()
                    .map_or_else(String::new, |(s, _)| format!(
                        "; checkpoint at record {s} matches"
                    )),
            ),
            Some(p) => format!(
                "receipt ({} of message {}) does NOT match the log: {p}",
                c.kind, c.message_id
            ),
        }
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let c = &self.claim;
        json!({
            "ok": self.problem.is_none(),
            "problem": self.problem,
            "signer": self.signer,
            "message_id": c.message_id,
            "record": {"kind": c.kind, "content_sha256": c.content_sha256,
                       "seq": self.found.as_ref().map(|f| f.0),
                       "hash": self.found.as_ref().map(|f| f.1.clone())},
            "after": {"seq": c.after_seq, "hash": c.after_hash},
            "checkpoint": c.checkpoint.as_ref().map(|(s, h)| json!({"seq": s, "hash": h})),
        })
    }
}

/// Why a receipt cannot be judged at all (exit code 1: the thing checked
/// is broken) or the store cannot be read (exit code 2).
#[derive(Debug)]
pub enum Error {
    /// Not a receipt with a valid signature of the gateway, or it names no
    /// audit record.
    Receipt(String),
    /// The log cannot be read.
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

/// Checks the signed receipt `raw`: its signature chains to `ca` (and,
/// with `identity`, is by that certificate), then [`against_log`].
pub async fn check(
    store: &Store,
    raw: &[u8],
    ca: &[CertificateDer<'_>],
    identity: Option<&[u8]>,
) -> Result<Check, Error> {
    let (signer, claim) = read(raw, ca, identity).map_err(Error::Receipt)?;
    let (found, problem) = match against_log(store, &claim).await? {
        Ok(found) => (Some(found), None),
        Err(p) => (None, Some(p)),
    };
    Ok(Check {
        signer,
        claim,
        found,
        problem,
    })
}

/// The signer's subject and the claim of a receipt whose signature holds.
fn read(
    raw: &[u8],
    ca: &[CertificateDer<'_>],
    identity: Option<&[u8]>,
) -> Result<(String, Claim), String> {
    let top = Entity::parse(raw).map_err(|e| format!("not a MIME message: {e}"))?;
    let env = crate::smime::extract(&top).map_err(|e| format!("not a signed receipt: {e}"))?;
    let content = env
        .detached_content
        .ok_or("not a multipart/signed receipt")?;
    let at = signing_time(&env.cms_der).unwrap_or_else(EvalTime::now);
    let signer = verify_detached(content, &env.cms_der, ca, at)
        .map_err(|e| format!("the receipt's signature: {e}"))?;
    if let Some(cert) = identity {
        let ours = crate::trust::cert::CertInfo::parse(cert)
            .map_err(|e| format!("the gateway's signing certificate: {e}"))?;
        let signed = crate::smime::cms::parse(&env.cms_der).map_err(|e| e.to_string())?;
        if !signed.signers.iter().all(|s| ours.matches(&s.info.sid)) {
            return Err(format!(
                "the receipt is signed by {signer}, not with the gateway's signing certificate"
            ));
        }
    }
    Ok((signer, claim(content)?))
}

/// The signingTime of the CMS signature, to judge the certificate as of
/// when the receipt was made.
fn signing_time(der: &[u8]) -> Option<EvalTime> {
    let signed = crate::smime::cms::parse(der).ok()?;
    let t = signed.signers.first()?.attributes().ok()?.signing_time?;
    Some(EvalTime::from_unix(t))
}

/// What the signed entity `content` says of the log: `receipt.json`'s
/// `audit`, or a non-delivery notice's `X-Emla-Audit-*` fields.
fn claim(content: &[u8]) -> Result<Claim, String> {
    let entity = Entity::parse(content).map_err(|e| format!("the signed part: {e}"))?;
    let parts = entity
        .parts()
        .map_err(|e| format!("the signed part: {e}"))?;
    for part in parts {
        let p = Entity::parse(part).map_err(|e| format!("a part of the receipt: {e}"))?;
        match p.content_type.as_str() {
            "application/json" => return json_claim(&decoded(&p)?),
            "message/delivery-status" => return dsn_claim(&decoded(&p)?),
            _ => {}
        }
    }
    Err("the receipt has neither receipt.json nor a delivery-status part".into())
}

fn decoded(p: &Entity<'_>) -> Result<Vec<u8>, String> {
    match p.transfer_encoding.as_deref() {
        Some("base64") => {
            let text: Vec<u8> = p
                .body()
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("a base64 part of the receipt: {e}"))
        }
        _ => Ok(p.body().to_vec()),
    }
}

fn json_claim(data: &[u8]) -> Result<Claim, String> {
    let v: Value =
        serde_json::from_slice(data).map_err(|e| format!("receipt.json is not JSON: {e}"))?;
    let a = &v["audit"];
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let missing =
        || "receipt.json names no audit record (`audit` missing or incomplete)".to_owned();
    let checkpoint = match &a["checkpoint"] {
        Value::Null => None,
        c => Some((
            c["seq"].as_i64().ok_or_else(missing)?,
            s(&c["hash"]).ok_or_else(missing)?,
        )),
    };
    Ok(Claim {
        message_id: s(&v["message_id"]).ok_or_else(missing)?,
        kind: s(&a["record"]["kind"]).ok_or_else(missing)?,
        content_sha256: s(&a["record"]["content_sha256"]).ok_or_else(missing)?,
        after_seq: a["after"]["seq"].as_i64().ok_or_else(missing)?,
        after_hash: s(&a["after"]["hash"]).ok_or_else(missing)?,
        checkpoint,
    })
}

fn dsn_claim(data: &[u8]) -> Result<Claim, String> {
    let text = String::from_utf8_lossy(data);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let missing = || "the notice names no audit record (X-Emla-Audit-Record)".to_owned();
    let record = field("X-Emla-Audit-Record:").ok_or_else(missing)?;
    let mut items = record.split(';').map(str::trim);
    let kind = items.next().unwrap_or_default().to_owned();
    let params: Vec<(&str, &str)> = items.filter_map(|i| i.split_once('=')).collect();
    let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let checkpoint = match field("X-Emla-Audit-Checkpoint:").as_deref() {
        None | Some("none") => None,
        Some(c) => {
            let get = |k: &str| {
                c.split(';')
                    .filter_map(|i| i.trim().split_once('='))
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_owned())
            };
            Some((
                get("seq")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(missing)?,
                get("hash").ok_or_else(missing)?,
            ))
        }
    };
    Ok(Claim {
        message_id: field("X-Emla-Message-Id:").ok_or_else(missing)?,
        kind,
        content_sha256: param("content-sha256").ok_or_else(missing)?.to_owned(),
        after_seq: param("after-seq")
            .and_then(|s| s.parse().ok())
            .ok_or_else(missing)?,
        after_hash: param("after-hash").ok_or_else(missing)?.to_owned(),
        checkpoint,
    })
}

/// The event's record `(seq, hash)` when the log holds what `claim` says,
/// else the first mismatch.
pub async fn against_log(
    store: &Store,
    claim: &Claim,
) -> Result<Result<(i64, String), String>, StoreError> {
    if let ChainCheck::Broken { seq, problem } = store.verify_chain().await? {
        return Ok(Err(format!(
            "the audit chain is broken at record {seq}: {problem}"
        )));
    }
    let pruned = store.chain_anchor().await?;
    let (head, _) = store.chain_head().await?;
    // A record at or below the pruning anchor is compared with it.
    let pruned = pruned.as_ref();
    let hash_at = |seq: i64| async move {
        match pruned {
            _ if seq == 0 => Ok(Some(crate::store::chain::GENESIS.to_owned())),
            Some(a) if seq == a.seq => Ok(Some(a.hash.clone())),
            Some(a) if seq < a.seq => Ok(None),
            _ => Ok::<_, StoreError>(store.audit_record(seq).await?.map(|r| r.hash)),
        }
    };
    let named = |what: &str, seq: i64, hash: &str, held: Option<String>| match held {
        Some(h) if h == hash => Ok(()),
        Some(h) => Err(format!(
            "{what} names record {seq} with hash {hash}, the log holds {h} (rewritten)"
        )),
        None if seq > head => Err(format!(
            "{what} names record {seq}, the log ends at record {head} (truncated)"
        )),
        None => Err(format!(
            "{what} names record {seq}, which the log no longer holds"
        )),
    };
    if claim.after_seq > 0 {
        let held = hash_at(claim.after_seq).await?;
        if let Err(p) = named(
            "the receipt's head",
            claim.after_seq,
            &claim.after_hash,
            held,
        ) {
            return Ok(Err(p));
        }
    }
    if let Some((seq, hash)) = &claim.checkpoint {
        let held = hash_at(*seq).await?;
        if let Err(p) = named("the receipt's checkpoint", *seq, hash, held) {
            return Ok(Err(p));
        }
        let stated = store
            .audit_of_kind(crate::store::AuditKind::AuditCheckpoint, 1000)
            .await?
            .iter()
            .filter_map(|r| crate::store::CheckpointData::parse(&r.data))
            .any(|d| d.seq == *seq && d.hash == *hash);
        if !stated {
            return Ok(Err(format!(
                "no audit.checkpoint record states the receipt's checkpoint at record {seq}"
            )));
        }
    }
    let found = store
        .audit_events(&claim.message_id)
        .await?
        .into_iter()
        .find(|r| {
            r.seq > claim.after_seq
                && r.kind.as_str() == claim.kind
                && crate::store::chain::content_hash(
                    r.kind.as_str(),
                    r.message_id.as_deref(),
                    &r.data_text,
                ) == claim.content_sha256
        });
    Ok(match found {
        Some(r) => Ok((r.seq, r.hash)),
        None => Err(format!(
            "the log holds no {} record of message {} after record {} with content SHA-256 {} \
             (truncated or rewritten after the receipt was issued)",
            claim.kind, claim.message_id, claim.after_seq, claim.content_sha256
        )),
    })
}
