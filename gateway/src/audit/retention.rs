//! Retention: removing old message bodies and old audit records without
//! ever breaking the audit chain (`[retention]` of the serve
//! configuration, `emla audit prune`, and a periodic task in `emla serve`).
//!
//! - **Bodies** of messages received more than `bodies_days` ago: first one
//!   `retention.pruned` audit event lists every `{id, sha256}` about to go,
//!   then the files are removed and the rows get `body_stored = false`,
//!   `body_pruned_at`. The hash stays in the row and in the audit records,
//!   so a copy of the message kept elsewhere can still be matched. A file
//!   shared with a message still inside the retention period (same bytes,
//!   content-addressed) stays.
//! - **Audit records** older than `audit_days`, but only up to the latest
//!   *signed* checkpoint (`audit.checkpoint` with `signed: true`), and only
//!   when the whole chain verifies: the records `seq <= S` are deleted and
//!   `(S, hash of S)` becomes the chain's anchor (`audit_anchor`), from
//!   which `emla audit verify` starts; a `retention.pruned` event records it.
//!
//! At most [`MAX_BODIES`] bodies go per run; the periodic task catches up.
//! One instance prunes at a time ([`ExclusiveJob::Retention`]); a body file
//! or row goes only when no message received since the cutoff stored it,
//! committed or not (see [`Store::remove_body`]).

use tokio::sync::watch;

use super::checkpoint;
use crate::clock::EvalTime;
use crate::config::RetentionConfig;
use crate::store::payload::{PrunedBody, RetentionPruned};
use crate::store::retention::StoredBody;
use crate::store::{
    now_ms, AuditEvent, AuditKind, ChainCheck, CheckpointData, ExclusiveJob, Store, StoreError,
};

/// The audit event kind of every pruning.
pub const EVENT_KIND: AuditKind = AuditKind::RetentionPruned;

/// Most bodies pruned in one run.
pub const MAX_BODIES: i64 = 10_000;

const DAY_MS: i64 = 86_400_000;

/// What a pruning run did (or, dry, would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Bodies received before this instant (RFC 3339) were due.
    pub bodies_before: Option<String>,
    /// The bodies pruned.
    pub bodies: Vec<StoredBody>,
    /// Bodies removed, as files or rows of `bodies` (fewer than `bodies`
    /// when shared with a younger message or already gone).
    pub files_removed: u64,
    /// What became of the audit records.
    #[serde(flatten)]
    pub audit: AuditPrune,
}

/// The audit half of a pruning run (its JSON keys start with `audit_`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AuditPrune {
    /// Records older than this instant were due.
    #[serde(rename = "audit_before")]
    pub before: Option<String>,
    /// Records pruned: the new anchor's seq.
    #[serde(rename = "audit_through")]
    pub through: Option<i64>,
    /// The new anchor's hash.
    #[serde(rename = "audit_anchor_hash")]
    pub anchor_hash: Option<String>,
    /// The signed checkpoint that covers the anchor.
    #[serde(rename = "audit_checkpoint")]
    pub checkpoint: Option<i64>,
    /// Records deleted.
    #[serde(rename = "audit_deleted")]
    pub deleted: u64,
    /// Why no record was pruned, when due but not done.
    #[serde(rename = "audit_skipped")]
    pub skipped: Option<String>,
}

impl PruneReport {
    /// A summary for the terminal.
    pub fn text(&self) -> String {
        let verb = if self.dry_run {
            "would prune"
        } else {
            "pruned"
        };
        let mut s = String::new();
        match &self.bodies_before {
            Some(before) => s.push_str(&format!(
                "bodies: {verb} {} (received before {before}), {} file(s) removed\n",
                self.bodies.len(),
                self.files_removed
            )),
            None => s.push_str("bodies: kept forever ([retention] bodies_days not set)\n"),
        }
        for b in &self.bodies {
            s.push_str(&format!("  {} {}\n", b.id, b.sha256));
        }
        let audit = &self.audit;
        match (&audit.before, audit.through, &audit.skipped) {
            (None, _, _) => {
                s.push_str("audit records: kept forever ([retention] audit_days not set)\n")
            }
            (Some(_), _, Some(why)) => s.push_str(&format!("audit records: none pruned: {why}\n")),
            (Some(before), Some(through), None) => s.push_str(&format!(
                "audit records: {verb} records up to {through} (older than {before}, covered by \
                 signed checkpoint {}); chain now starts after anchor {through} {}\n",
                audit.checkpoint.unwrap_or_default(),
                audit.anchor_hash.as_deref().unwrap_or_default()
            )),
            (Some(_), None, None) => s.push_str("audit records: nothing due\n"),
        }
        s
    }
}

fn rfc3339_ms(ms: i64) -> String {
    EvalTime::from_unix(u64::try_from(ms / 1000).unwrap_or(0)).to_rfc3339()
}

/// Prunes what `cfg` says is due at `now_ms` (see the module docs).
pub async fn prune(
    store: &Store,
    cfg: &RetentionConfig,
    now: i64,
    dry_run: bool,
) -> Result<PruneReport, StoreError> {
    let mut report = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    if let Some(days) = cfg.bodies_days {
        let before = now.saturating_sub(i64::try_from(days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS);
        report.bodies_before = Some(rfc3339_ms(before));
        let due = store.bodies_before(before, MAX_BODIES).await?;
        if !due.is_empty() && !dry_run {
            store
                .audit(AuditEvent::of(
                    None,
                    &RetentionPruned::Bodies {
                        received_before: rfc3339_ms(before),
                        bodies_days: days,
                        bodies: due
                            .iter()
                            .map(|b| PrunedBody {
                                id: b.id.clone(),
                                sha256: b.sha256.clone(),
                            })
                            .collect(),
                    },
                ))
                .await?;
            store.restore_set_aside_bodies().await?;
            for b in &due {
                if !store.body_kept_after(&b.sha256, before).await?
                    && store.remove_body(&b.sha256, before).await?
                {
                    report.files_removed += 1;
                }
            }
            let ids: Vec<String> = due.iter().map(|b| b.id.clone()).collect();
            store.mark_bodies_pruned(&ids, now).await?;
        }
        report.bodies = due;
    }
    if let Some(days) = cfg.audit_days {
        let before = now.saturating_sub(i64::try_from(days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS);
        report.audit.before = Some(rfc3339_ms(before));
        prune_audit(store, before, dry_run, &mut report.audit).await?;
    }
    Ok(report)
}

async fn prune_audit(
    store: &Store,
    before: i64,
    dry_run: bool,
    report: &mut AuditPrune,
) -> Result<(), StoreError> {
    let latest_signed = store
        .audit_of_kind(checkpoint::EVENT_KIND, 1000)
        .await?
        .into_iter()
        .find_map(|r| {
            let d = CheckpointData::parse(&r.data)?;
            d.signed.then_some((d.seq, d.hash))
        });
    let Some((cp_seq, cp_hash)) = latest_signed.filter(|(_, hash)| !hash.is_empty()) else {
        report.skipped = Some(
            "no signed checkpoint in the log; records are only pruned below one \
             (run `emla audit checkpoint`)"
                .into(),
        );
        return Ok(());
    };
    if let ChainCheck::Broken { seq, problem } = store.verify_chain().await? {
        report.skipped = Some(format!(
            "the audit chain is broken at record {seq} ({problem}); nothing is pruned from a broken chain"
        ));
        return Ok(());
    }
    match store.audit_record(cp_seq).await? {
        Some(r) if r.hash == cp_hash => {}
        other => {
            report.skipped = Some(format!(
                "record {cp_seq} has hash {}, not the signed checkpoint's {cp_hash}",
                other.map(|r| r.hash).unwrap_or_else(|| "(missing)".into())
            ));
            return Ok(());
        }
    }
    let first_young = store.first_seq_at_or_after(before).await?;
    let through = first_young.map_or(cp_seq, |s| (s - 1).min(cp_seq));
    let anchor = store.chain_anchor().await?.map_or(0, |a| a.seq);
    if through <= anchor {
        return Ok(());
    }
    let Some(record) = store.audit_record(through).await? else {
        report.skipped = Some(format!("record {through} is missing"));
        return Ok(());
    };
    report.through = Some(through);
    report.anchor_hash = Some(record.hash.clone());
    report.checkpoint = Some(cp_seq);
    if dry_run {
        report.deleted = u64::try_from(through - anchor).unwrap_or(0);
        return Ok(());
    }
    report.deleted = store
        .prune_audit_through(through, &record.hash, now_ms())
        .await?;
    store
        .audit(AuditEvent::of(
            None,
            &RetentionPruned::Audit {
                older_than: rfc3339_ms(before),
                through_seq: through,
                anchor_hash: record.hash,
                checkpoint_seq: cp_seq,
                checkpoint_hash: cp_hash,
                deleted: report.deleted,
            },
        ))
        .await?;
    Ok(())
}

/// Starts the periodic pruning of `emla serve` (`[retention]
/// interval_secs`); `None` when nothing is to be pruned.
pub fn spawn(
    cfg: RetentionConfig,
    store: Store,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if cfg.bodies_days.is_none() && cfg.audit_days.is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let Some(lock) = store.exclusive_round(ExclusiveJob::Retention).await else {
                continue;
            };
            let pruned = prune(&store, &cfg, now_ms(), false).await;
            lock.release().await;
            match pruned {
                Ok(r) => {
                    if !r.bodies.is_empty() || r.audit.through.is_some() {
                        tracing::info!(
                            bodies = r.bodies.len(),
                            audit_through = ?r.audit.through,
                            "retention: pruned"
                        );
                    }
                    if let Some(why) = r.audit.skipped {
                        tracing::warn!("retention: audit records not pruned: {why}");
                    }
                }
                Err(e) => tracing::error!(error = %e, "retention: pruning failed"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_keeps_flat_audit_keys() {
        let v = serde_json::to_value(PruneReport::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "audit_anchor_hash",
                "audit_before",
                "audit_checkpoint",
                "audit_deleted",
                "audit_skipped",
                "audit_through",
                "bodies",
                "bodies_before",
                "dry_run",
                "files_removed"
            ]
        );
    }
}
