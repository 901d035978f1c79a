//! Signed checkpoints, evidence bundles and retention (issue #5):
//!
//! - a consistent rewrite of the whole audit table (every hash recomputed)
//!   passes the plain chain walk but not the signed checkpoint, on SQLite
//!   and PostgreSQL;
//! - retention prunes bodies and audit records below a signed checkpoint
//!   and the chain still verifies from its anchor;
//! - end to end: `emla serve` receives a real signed message and writes a
//!   checkpoint by itself, `emla audit export` writes a bundle whose
//!   README commands (openssl, sha256sum, python3) pass, and tampered
//!   bundles fail them; `emla audit verify --checkpoints` exits 1 naming the
//!   seq and both hashes after a rewrite;
//! - revocation evidence: a message accepted under a CRL file still checks
//!   (verify.sh, openssl alone, as of reception) with the CRL archived at
//!   reception after that file was replaced by one revoking the signer;
//!   a tampered archived CRL fails; older records fall back to today's CRLs.
//!
//! - RFC 3161 tokens in bundles: each token of the checkpoint and of the
//!   receipts is its own file beside the receipt as sent, and verify.sh
//!   checks them with `openssl ts -verify` (a real `openssl ts` TSA on
//!   loopback) and the receipt against the records; a tampered token or
//!   receipt fails.
//!
//! Needs `openssl`, `python3` with `cryptography`, `sha256sum`, and
//! PostgreSQL as for `tests/audit.rs`.

#[path = "support/proc.rs"]
mod proc;
#[path = "support/smtp.rs"]
mod smtp;
mod support;
#[path = "support/tsa.rs"]
mod tsa_support;

#[macro_use]
#[path = "support/testdb.rs"]
mod testdb;

use emla::config::AuditConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use emla::audit::checkpoint::{self, Outcome};
use emla::audit::retention;
use emla::config::RetentionConfig;
use emla::store::chain::{canonical, record_hash, GENESIS};
use emla::store::{
    now_ms, AuditEvent, AuditKind, ChainCheck, MessageRecord, Record, SessionInfo, Store,
};
use emla::{EvalTime, Reason};
use serde_json::json;
use sha2::{Digest, Sha256};
use smtp::{emla_cli, run_checks};
use support::{alice_to_bob, copy_dir, pki, signing_policy, Tool, ALICE, BOB};
use testdb::{Backend, TestDb};

const DAY_MS: i64 = 86_400_000;

fn root_ca(cc: &str) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    checkpoint::read_ca(&pki().cert(cc, "root")).unwrap()
}

/// SQL that rewrites every record of `rows` consistently: record
/// `changed` gets `new_data`, and every hash from there on, every
/// prev_hash and the head are recomputed exactly as emla computes them.
fn rewrite_sql(rows: &[emla::store::chain::AuditRow], changed: i64, new_data: &str) -> String {
    let mut prev = rows
        .first()
        .map(|r| r.prev_hash.clone())
        .unwrap_or(GENESIS.into());
    let mut sql = String::new();
    for r in rows {
        let data = if r.seq == changed {
            new_data.to_string()
        } else {
            r.data.clone()
        };
        let hash = record_hash(&canonical(
            &prev,
            r.seq,
            r.at,
            &r.kind,
            r.message_id.as_deref(),
            &data,
        ));
        sql += &format!(
            "UPDATE audit SET data = '{}', prev_hash = '{prev}', hash = '{hash}' WHERE seq = {};\n",
            data.replace('\'', "''"),
            r.seq
        );
        prev = hash;
    }
    sql += &format!("UPDATE audit_head SET hash = '{prev}' WHERE id = 1;\n");
    sql
}

fn event(i: usize) -> Record {
    Record {
        events: vec![AuditEvent {
            kind: AuditKind::PolicyReloaded,
            message_id: Some(format!("m{i}")),
            data: json!({"n": i, "who": "alice@justice.aa.example"}),
        }],
        ..Record::default()
    }
}

// ---------------------------------------------------------------------------
// A whole-log rewrite
// ---------------------------------------------------------------------------

async fn checkpoint_detects_a_consistent_rewrite(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    for i in 0..5 {
        store.record(event(i)).await.unwrap();
    }
    let policy = emla::policy::load(&signing_policy(), EvalTime::now()).unwrap();
    let dir = db.dir.path().join("checkpoints");
    let w = checkpoint::write(&store, &policy, &dir, &AuditConfig::default(), None)
        .await
        .unwrap();
    assert_eq!(w.checkpoint.seq, 5);
    assert_eq!(w.json, dir.join("checkpoint-5.json"));
    assert!(dir.join("checkpoint-5.p7s").exists());
    // The checkpoint is itself recorded, as record 6.
    let ev = store.audit_record(6).await.unwrap().unwrap();
    assert_eq!(ev.kind, "audit.checkpoint");
    assert!(ev.data.contains("\"signed\":true"), "{}", ev.data);

    let ca = root_ca("aa");
    let ok = checkpoint::check(&store, &w.json, &ca, false)
        .await
        .unwrap();
    assert_eq!(ok.outcome, Outcome::Matches, "{}", ok.text());
    assert!(ok.signer.as_deref().unwrap().contains("emla gateway"));

    // Another country's CA does not vouch for the gateway.
    let other = checkpoint::check(&store, &w.json, &root_ca("bb"), false)
        .await
        .unwrap();
    assert!(
        matches!(other.outcome, Outcome::BadSignature(ref e) if e.contains("does not chain")),
        "{other:?}"
    );

    // Rewrite the whole table consistently, changing record 2.
    let (head, _) = store.chain_head().await.unwrap();
    let rows = store.audit_range(0, head).await.unwrap();
    db.exec(&rewrite_sql(
        &rows,
        2,
        r#"{"n":99,"who":"mallory@evil.example"}"#,
    ))
    .await;
    assert!(
        matches!(
            store.verify_chain().await.unwrap(),
            ChainCheck::Intact { records: 6, .. }
        ),
        "the plain chain walk cannot see a consistent rewrite"
    );
    let broken = checkpoint::check(&store, &w.json, &ca, false)
        .await
        .unwrap();
    let Outcome::Mismatch { database } = &broken.outcome else {
        panic!("expected a mismatch: {broken:?}");
    };
    assert_ne!(database, &w.checkpoint.hash);
    let text = broken.text();
    assert!(text.contains("checkpoint seq 5"), "{text}");
    assert!(
        text.contains(&w.checkpoint.hash) && text.contains(database.as_str()),
        "{text}"
    );

    // A checkpoint edited to match the rewrite no longer verifies.
    let forged = std::fs::read_to_string(&w.json)
        .unwrap()
        .replace(&w.checkpoint.hash, database);
    std::fs::write(&w.json, forged).unwrap();
    let c = checkpoint::check(&store, &w.json, &ca, false)
        .await
        .unwrap();
    assert!(
        matches!(c.outcome, Outcome::BadSignature(ref e) if e.contains("digest")),
        "{c:?}"
    );
    // Without its .p7s it is refused unless unsigned ones are allowed.
    std::fs::remove_file(dir.join("checkpoint-5.p7s")).unwrap();
    let c = checkpoint::check(&store, &w.json, &ca, false)
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Unsigned);
    db.drop_db().await;
}
both!(checkpoint_detects_a_consistent_rewrite);

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

fn message(i: usize, received_at_ms: i64) -> Record {
    message_as(&format!("msg-{i}"), i, received_at_ms)
}

/// A message `id` whose bytes are those of message `i`.
fn message_as(id: &str, i: usize, received_at_ms: i64) -> Record {
    let raw =
        format!("From: alice@justice.aa.example\r\nSubject: {i}\r\n\r\nbody {i}\r\n").into_bytes();
    let sha256 = hex::encode(Sha256::digest(&raw));
    accepted_record(
        id,
        &raw,
        received_at_ms,
        Some(format!("{i}")),
        "v",
        json!({ "sha256": sha256 }),
    )
}

/// The record of message `id` (bytes `raw`), accepted from Alice to Bob
/// under policy `policy_version`, with one `MessageAccepted` event of `data`.
fn accepted_record(
    id: &str,
    raw: &[u8],
    received_at_ms: i64,
    subject: Option<String>,
    policy_version: &str,
    data: serde_json::Value,
) -> Record {
    Record {
        message: Some(MessageRecord {
            id: id.to_string(),
            received_at_ms,
            sha256: hex::encode(Sha256::digest(raw)),
            size: raw.len() as u64,
            session: SessionInfo::default(),
            mail_from: ALICE.into(),
            rcpt_to: vec![BOB.into()],
            headers: emla::store::MessageHeaders {
                header_from: Some(ALICE.into()),
                header_to: Some(BOB.into()),
                subject,
                ..Default::default()
            },
            reason: Reason::Ok,
            detail: "ok".into(),
            signers: json!([]),
            authority: Some("aa-moj".into()),
            policy_version: policy_version.into(),
            case_ref: None,
            kind: None,
            signature_keys: Vec::new(),
            body: Some(Arc::<[u8]>::from(raw).into()),
            dsn: None,
        }),
        events: vec![AuditEvent {
            kind: AuditKind::MessageAccepted,
            message_id: Some(id.to_string()),
            data,
        }],
        ..Record::default()
    }
}

async fn retention_keeps_the_chain_verifiable(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    let now = now_ms();
    for i in 0..3 {
        store.record(message(i, now - 400 * DAY_MS)).await.unwrap();
        // Its file as old as it (retention also goes by the file's mtime).
        let m = store.message(&format!("msg-{i}")).await.unwrap().unwrap();
        let then = std::time::SystemTime::now() - Duration::from_secs(400 * 86_400);
        let file = std::fs::File::open(store.body_path(&m.sha256).unwrap()).unwrap();
        file.set_modified(then).unwrap();
    }
    store.record(message(3, now)).await.unwrap();
    // A young message with the same bytes as old msg-1: the shared file stays.
    store
        .record(message_as("msg-1-again", 1, now))
        .await
        .unwrap();
    let sha = |s: &Store, id: &str| {
        let s = s.clone();
        let id = id.to_string();
        async move { s.message(&id).await.unwrap().unwrap().sha256 }
    };
    let old_sha = sha(&store, "msg-0").await;
    let new_sha = sha(&store, "msg-3").await;
    let cfg = RetentionConfig {
        bodies_days: Some(365),
        audit_days: None,
        interval: Duration::from_secs(3600),
    };
    // Dry run: nothing changes.
    let r = retention::prune(&store, &cfg, now, true).await.unwrap();
    assert_eq!(r.bodies.len(), 3);
    assert!(store.body_path(&old_sha).unwrap().exists());

    let r = retention::prune(&store, &cfg, now, false).await.unwrap();
    assert_eq!((r.bodies.len(), r.files_removed), (3, 2), "{}", r.text());
    assert!(!store.body_path(&old_sha).unwrap().exists());
    assert!(store.body_path(&new_sha).unwrap().exists());
    let shared = sha(&store, "msg-1").await;
    assert!(
        store.body_path(&shared).unwrap().exists(),
        "shared with msg-1-again"
    );
    assert!(!store.message("msg-1").await.unwrap().unwrap().body_stored);
    let m0 = store.message("msg-0").await.unwrap().unwrap();
    assert!(!m0.body_stored);
    assert_eq!(m0.sha256, old_sha, "the hash stays");
    let pruned = store
        .audit_of_kind(AuditKind::RetentionPruned, 10)
        .await
        .unwrap();
    assert_eq!(pruned.len(), 1);
    assert!(pruned[0].data.contains(&old_sha) && pruned[0].data.contains("msg-0"));
    assert!(matches!(
        store.verify_chain().await.unwrap(),
        ChainCheck::Intact { .. }
    ));

    // Audit records: nothing without a signed checkpoint.
    let cfg = RetentionConfig {
        bodies_days: None,
        audit_days: Some(365),
        interval: Duration::from_secs(3600),
    };
    let later = now + 400 * DAY_MS;
    let r = retention::prune(&store, &cfg, later, false).await.unwrap();
    assert!(r
        .audit
        .skipped
        .as_deref()
        .unwrap()
        .contains("no signed checkpoint"));

    let policy = emla::policy::load(&signing_policy(), EvalTime::now()).unwrap();
    let w = checkpoint::write(
        &store,
        &policy,
        &db.dir.path().join("cp"),
        &AuditConfig::default(),
        None,
    )
    .await
    .unwrap();
    store.record(event(9)).await.unwrap(); // after the checkpoint: kept
    let r = retention::prune(&store, &cfg, later, false).await.unwrap();
    assert_eq!(r.audit.through, Some(w.checkpoint.seq), "{}", r.text());
    assert_eq!(r.audit.deleted, w.checkpoint.seq as u64);
    let anchor = store.chain_anchor().await.unwrap().unwrap();
    assert_eq!(
        (anchor.seq, anchor.hash.as_str()),
        (w.checkpoint.seq, w.checkpoint.hash.as_str())
    );
    assert!(store.audit_record(1).await.unwrap().is_none());
    match store.verify_chain().await.unwrap() {
        ChainCheck::Intact { records, .. } => assert_eq!(records, 3), // checkpoint event, 9, pruning
        broken => panic!("{broken:?}"),
    }
    // The checkpoint is still checkable: against the anchor.
    let c = checkpoint::check(&store, &w.json, &root_ca("aa"), false)
        .await
        .unwrap();
    assert_eq!(c.outcome, Outcome::Matches, "{}", c.text());
    // Removing the anchor shows.
    db.exec("DELETE FROM audit_anchor").await;
    assert!(matches!(
        store.verify_chain().await.unwrap(),
        ChainCheck::Broken { .. }
    ));
    db.drop_db().await;
}
both!(retention_keeps_the_chain_verifiable);

// ---------------------------------------------------------------------------
// End to end: serve, export, openssl
// ---------------------------------------------------------------------------

/// The bundle's `verify.sh`, asserted to contain each of `cmds`.
fn script_running(bundle: &Path, cmds: &[&str]) -> String {
    let script = std::fs::read_to_string(bundle.join("verify.sh")).unwrap();
    for cmd in cmds {
        assert!(script.contains(cmd), "{cmd} missing:\n{script}");
    }
    script
}

/// Rewrites the file `f` with `edit` applied to its bytes.
fn edit_bytes(f: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(f).unwrap();
    edit(&mut b);
    std::fs::write(f, b).unwrap();
}

/// A copy of the bundle with `edit` applied, SHA256SUMS recomputed when
/// `fix_sums` (so that only the later checks can catch it).
fn tampered(bundle: &Path, name: &str, fix_sums: bool, edit: impl Fn(&Path)) -> PathBuf {
    let copy = bundle.with_file_name(format!(
        "{}-{name}",
        bundle.file_name().unwrap().to_string_lossy()
    ));
    copy_dir(bundle, &copy);
    edit(&copy);
    if fix_sums {
        let sums = std::fs::read_to_string(copy.join("SHA256SUMS")).unwrap();
        let fixed: String = sums
            .lines()
            .map(|l| {
                let path = &l[66..];
                let bytes = std::fs::read(copy.join(path)).unwrap();
                format!("{}  {path}\n", hex::encode(Sha256::digest(bytes)))
            })
            .collect();
        std::fs::write(copy.join("SHA256SUMS"), fixed).unwrap();
    }
    copy
}

/// `edit` made to copies of `bundle` is caught twice: by sha256sum (its
/// output says `caught`), and, with the sums fixed, by the bundle's other
/// checks, whose output it returns.
fn caught_twice(bundle: &Path, name: &str, edit: impl Fn(&Path), caught: &str) -> String {
    let (ok, out) = run_checks(&tampered(bundle, name, false, &edit));
    assert!(!ok && out.contains(caught), "{out}");
    let (ok, out) = run_checks(&tampered(bundle, &format!("{name}-sums"), true, &edit));
    assert!(!ok && !out.contains("evidence bundle OK"), "{out}");
    out
}

/// `emla serve` with the signing policy and `extra_toml`, and the id of a
/// signed message it accepted (and that message).
fn serve_one(extra_toml: String) -> (smtp::Gateway, smtp::Server, String, Vec<u8>) {
    let gw = smtp::Gateway::new(smtp::Opts {
        policy_dir: signing_policy(),
        extra_toml,
        ..smtp::Opts::default()
    });
    let server = gw.start();
    let msg = alice_to_bob(Tool::SmimeDetached);
    let (reply, t) = smtp::send(server.port, ALICE, &[BOB], &msg);
    let id = reply
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted: {t}"));
    (gw, server, id, msg)
}

/// `emla audit export ID --out DIR/bundle` into a new temporary DIR.
fn exported(gw: &smtp::Gateway, id: &str) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    let (code, out) = emla_cli(
        &["audit", "export", id, "--out", bundle.to_str().unwrap()],
        &gw.config,
    );
    assert_eq!(code, 0, "{out}");
    (work, bundle)
}

#[test]
fn serve_checkpoints_and_exported_bundle_checks_with_openssl() {
    let cp_dir_holder = tempfile::tempdir().unwrap();
    let cp_dir = cp_dir_holder.path().join("checkpoints");
    let (gw, server, id, msg) = serve_one(format!(
        "\n[audit]\ncheckpoint_interval_secs = 1\ncheckpoint_dir = {:?}\n",
        cp_dir.display().to_string()
    ));
    let covering = serve_writes_one_checkpoint(&cp_dir, &server);
    drop(server);

    // `emla audit checkpoint` writes one now.
    let (code, out) = emla_cli(&["audit", "checkpoint"], &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(+ .p7s)"), "{out}");

    let ca = pki().cert("aa", "root");
    let (cp_s, ca_s) = (cp_dir.to_str().unwrap(), ca.to_str().unwrap());
    let against = ["audit", "verify", "--checkpoints", cp_s, "--ca", ca_s];
    let (code, out) = emla_cli(&against, &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("audit chain intact") && out.contains("matches"),
        "{out}"
    );

    let (work, bundle) = bundle_checks_with_the_readme_commands(&gw, &id, &msg);
    tampered_bundles_fail(&bundle);
    rewritten_log_fails_against_the_checkpoints(&gw, &id, &against, &covering, work.path());
}

/// emla serve writes a checkpoint covering the message by itself, then,
/// idle, no further one (the head is the checkpoint's own record);
/// returns its seq and file.
fn serve_writes_one_checkpoint(cp_dir: &Path, server: &smtp::Server) -> (i64, PathBuf) {
    let covering = support::eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        let found = checkpoint::list(cp_dir).unwrap_or_default();
        found
            .into_iter()
            .find(|(seq, _)| *seq >= 1)
            .ok_or_else(|| format!("no checkpoint from emla serve:\n{}", server.stderr()))
    });
    assert!(covering.1.with_extension("p7s").exists());
    std::thread::sleep(Duration::from_millis(2500));
    let last = checkpoint::list(cp_dir).unwrap().last().unwrap().0;
    assert_eq!(
        last, covering.0,
        "a checkpoint was written with nothing new"
    );
    covering
}

/// Exports message `id` and checks the bundle with the README's commands
/// only, as a directory and as one zip file; returns the work directory and
/// the bundle.
fn bundle_checks_with_the_readme_commands(
    gw: &smtp::Gateway,
    id: &str,
    msg: &[u8],
) -> (tempfile::TempDir, PathBuf) {
    let (work, bundle) = exported(gw, id);
    assert_eq!(
        std::fs::read(bundle.join("message.eml")).unwrap(),
        msg,
        "original bytes"
    );
    let readme = std::fs::read_to_string(bundle.join("README.txt")).unwrap();
    let script = script_running(
        &bundle,
        &[
            "sha256sum -c SHA256SUMS",
            "openssl cms -verify -in message.eml",
            "-crl_check_all",
            "openssl cms -verify -binary -inform DER",
            "python3 audit/verify_chain.py",
        ],
    );
    assert!(readme.contains(&script), "README.txt quotes verify.sh");
    if let Some(keep) = std::env::var_os("EMLA_TEST_KEEP_BUNDLE") {
        copy_dir(&bundle, Path::new(&keep));
    }
    let (ok, out) = run_checks(&bundle);
    assert!(ok, "the bundle does not check:\n{out}");
    assert!(
        out.contains("chain proof OK") && out.contains("evidence bundle OK"),
        "{out}"
    );
    // The same bundle as one zip file: unpacked with Python's zipfile, the
    // same checks pass, on the same files.
    let archive = work.path().join("bundle.zip");
    let (code, out) = emla_cli(
        &["audit", "export", id, "--out", archive.to_str().unwrap()],
        &gw.config,
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = emla_cli(
        &["audit", "export", id, "--out", archive.to_str().unwrap()],
        &gw.config,
    );
    assert_eq!(code, 2, "an existing zip is not overwritten: {out}");
    let unpacked = work.path().join("unpacked");
    let st = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&archive)
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(unpacked.join("message.eml")).unwrap(), msg);
    let (ok, out) = run_checks(&unpacked);
    assert!(
        ok && out.contains("evidence bundle OK"),
        "the zip bundle does not check:\n{out}"
    );

    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("verification.json")).unwrap()).unwrap();
    assert_eq!(v["recorded"]["verdict"], "accept");
    assert_eq!(v["reverified"]["verdict"], "accept", "{v}");
    (work, bundle)
}

/// Tampered copies of `bundle` fail their checks.
fn tampered_bundles_fail(bundle: &Path) {
    // A changed byte of the message: sha256sum fails; with the sums fixed,
    // openssl fails.
    let flip = |p: &Path| {
        edit_bytes(&p.join("message.eml"), |b| {
            let at = b.windows(5).position(|w| w == b"quick").unwrap();
            b[at] = b'Q';
        })
    };
    let out = caught_twice(bundle, "msg", flip, "message.eml: FAILED");
    assert!(!out.contains("chain proof OK"), "{out}");
    assert!(
        out.to_lowercase().contains("verification failure") || out.contains("digest failure"),
        "{out}"
    );

    // An edited audit record (sums fixed): the chain proof fails.
    let t3 = tampered(bundle, "records", true, |p| {
        let f = p.join("audit/records.jsonl");
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replacen("accept", "reject", 1);
        std::fs::write(&f, text).unwrap();
    });
    let (ok, out) = run_checks(&t3);
    assert!(!ok && out.contains("computed hash"), "{out}");

    // An edited checkpoint (sums fixed): openssl refuses its signature.
    let t4 = tampered(bundle, "checkpoint", true, |p| {
        for e in std::fs::read_dir(p.join("checkpoint")).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                let t = std::fs::read_to_string(e.path())
                    .unwrap()
                    .replace("\"seq\":", "\"seq\": ");
                std::fs::write(e.path(), t).unwrap();
            }
        }
    });
    let (ok, out) = run_checks(&t4);
    assert!(!ok && !out.contains("chain proof OK"), "{out}");
}

/// A consistent rewrite of the database: plain verify passes, verify
/// `against` the checkpoints fails naming the seq and both hashes, and
/// export refuses the log.
fn rewritten_log_fails_against_the_checkpoints(
    gw: &smtp::Gateway,
    id: &str,
    against: &[&str],
    covering: &(i64, PathBuf),
    work: &Path,
) {
    let url = gw.database_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&url, &gw.data_dir).await.unwrap();
        let (head, _) = store.chain_head().await.unwrap();
        let rows = store.audit_range(0, head).await.unwrap();
        let decision = rows
            .iter()
            .find(|r| r.message_id.as_deref() == Some(id))
            .unwrap();
        assert!(decision.data.contains("accept"), "{}", decision.data);
        let sql = rewrite_sql(
            &rows,
            decision.seq,
            &decision.data.replace("accept", "reject"),
        );
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
    });
    let (code, out) = emla_cli(&["audit", "verify"], &gw.config);
    assert_eq!(code, 0, "plain verify cannot see it: {out}");
    let (code, out) = emla_cli(against, &gw.config);
    assert_eq!(code, 1, "{out}");
    let cp_text = std::fs::read_to_string(&covering.1).unwrap();
    let cp: checkpoint::Checkpoint = checkpoint::Checkpoint::parse(cp_text.as_bytes()).unwrap();
    assert!(
        out.contains(&format!("checkpoint seq {}", cp.seq))
            && out.contains("BROKEN")
            && out.contains(&cp.hash),
        "{out}"
    );
    // And export refuses a log that no longer matches its checkpoint.
    let (code, out) = emla_cli(
        &[
            "audit",
            "export",
            id,
            "--out",
            work.join("b2").to_str().unwrap(),
        ],
        &gw.config,
    );
    assert_eq!(code, 1, "{out}");
}

#[test]
fn prune_and_checkpoint_cli_exit_codes() {
    // No [retention]: nothing to prune is a configuration error.
    let gw = smtp::Gateway::new(smtp::Opts::default());
    let (code, out) = emla_cli(&["audit", "prune"], &gw.config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nothing to prune"), "{out}");
    // No signing identity in the policy: no checkpoint, exit 2.
    let (code, out) = emla_cli(&["audit", "checkpoint"], &gw.config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no signing identity"), "{out}");
    // A missing checkpoint directory is a usage error.
    let (code, out) = emla_cli(
        &["audit", "verify", "--checkpoints", "/nonexistent"],
        &gw.config,
    );
    assert_eq!(code, 2, "{out}");
    // Unknown message: exit 1.
    let out_dir = gw.dir().join("bundle");
    let (code, out) = emla_cli(
        &[
            "audit",
            "export",
            "nope@x",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &gw.config,
    );
    assert_eq!(code, 1, "{out}");

    let gw = smtp::Gateway::new(smtp::Opts {
        extra_toml: "\n[retention]\nbodies_days = 1\naudit_days = 1\n".into(),
        ..smtp::Opts::default()
    });
    let (code, out) = emla_cli(&["audit", "prune", "--dry-run"], &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("bodies: would prune 0"), "{out}");
    assert!(out.contains("no signed checkpoint"), "{out}");
    let (code, out) = emla_cli(&["audit", "prune", "--json"], &gw.config);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["dry_run"], false);
}

// ---------------------------------------------------------------------------
// Revocation evidence: the CRLs that decided, archived and exported
// ---------------------------------------------------------------------------

/// A policy of its own (absolute paths) whose AA issuing CRL is the file
/// `crl`, which the test may replace.
fn policy_with_crl_file(dir: &Path, crl: &Path) -> PathBuf {
    let p = pki();
    let policy = dir.join("policy");
    copy_dir(&signing_policy(), &policy);
    let _ = std::fs::remove_file(policy.join(".done"));
    let certs = format!("\"{}/", p.dir.join("certs").display());
    for f in [
        "gateway.toml",
        "authorities/aa-moj.toml",
        "authorities/bb-moj.toml",
    ] {
        let path = policy.join(f);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"../certs/", &certs);
        std::fs::write(&path, text).unwrap();
    }
    let aa = policy.join("authorities/aa-moj.toml");
    let text = std::fs::read_to_string(&aa).unwrap().replace(
        &format!("{certs}aa/issuing.crl.pem\""),
        &format!("{:?}", crl.display().to_string()),
    );
    assert!(text.contains(&crl.display().to_string()), "{text}");
    std::fs::write(&aa, text).unwrap();
    policy
}

/// A newer CRL of AA's issuing CA (crlNumber 2, thisUpdate yesterday) that
/// revokes alice since yesterday, as PEM at `out`.
fn crl_revoking_alice(out: &Path) {
    let p = pki();
    let script = r#"
import datetime as dt, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
ca = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
alice = x509.load_pem_x509_certificate(open(sys.argv[3], "rb").read())
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
day = dt.timedelta(days=1)
crl = (x509.CertificateRevocationListBuilder()
    .issuer_name(ca.subject).last_update(now - day).next_update(now + 30 * day)
    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)
    .add_extension(x509.CRLNumber(2), critical=False)
    .add_revoked_certificate(x509.RevokedCertificateBuilder()
        .serial_number(alice.serial_number).revocation_date(now - day)
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build())
    .sign(key, hashes.SHA256()))
open(sys.argv[4], "wb").write(crl.public_bytes(serialization.Encoding.PEM))
"#;
    let st = Command::new(std::env::var("EMLA_TEST_PYTHON").unwrap_or("python3".into()))
        .arg("-c")
        .arg(script)
        .arg(p.key("aa", "issuing"))
        .arg(p.cert("aa", "issuing"))
        .arg(p.cert("aa", "alice"))
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "making the new CRL");
}

/// SHA-256 (hex) of the DER of a PEM CRL file.
fn crl_der_sha256(pem_file: &Path) -> String {
    let out = Command::new(support::openssl())
        .args(["crl", "-outform", "DER", "-in"])
        .arg(pem_file)
        .output()
        .unwrap();
    assert!(out.status.success());
    hex::encode(Sha256::digest(&out.stdout))
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Accept a message under a policy CRL file; replace the file with a newer
/// CRL revoking the signer and restart; the bundle of the first message
/// still verifies with openssl alone as of reception, with the CRL the
/// audit record names, and emla's re-verification inside says accept; a
/// tampered archived CRL fails verify.sh. Messages recorded before evidence
/// was archived fall back to today's CRLs, and say so.
fn revocation_evidence_survives_a_newer_crl(postgres: bool) {
    let work = tempfile::tempdir().unwrap();
    let crl_file = work.path().join("issuing.crl.pem");
    std::fs::copy(pki().dir.join("certs/aa/issuing.crl.pem"), &crl_file).unwrap();
    let policy = policy_with_crl_file(work.path(), &crl_file);
    let pg = postgres.then(smtp::PgDb::create);
    let gw = smtp::Gateway::new(smtp::Opts {
        policy_dir: policy,
        database_url: pg.as_ref().map(|p| p.url.clone()),
        top_extra: if postgres {
            "body_storage = \"database\"\n".into()
        } else {
            String::new()
        },
        ..smtp::Opts::default()
    });
    let msg = alice_to_bob(Tool::SmimeDetached);
    let (id, old_sha, new_sha) = accepted_then_revoked(&gw, &msg, &crl_file);
    let evidence = decision_names_the_archived_crls(&gw, &id, &old_sha);
    let bundle = work.path().join("bundle");
    let shas = (old_sha.as_str(), new_sha.as_str());
    let backend = if postgres { "pg" } else { "sqlite" };
    exported_bundle_checks_as_of_reception(&gw, &id, &bundle, &evidence, shas, backend);
    tampered_archived_crls_fail(&bundle, &old_sha, &crl_file);

    // A message recorded before evidence was archived (no "revocation" in
    // its record): today's CRLs, and the bundle says so.
    let old_bundle = legacy_bundle(&gw, &msg, work.path(), "legacy-1@emla.test", "old");
    assert!(old_bundle.join("crls/crls.pem").exists());
    assert!(!old_bundle.join("revocation").exists());
    let readme = std::fs::read_to_string(old_bundle.join("README.txt")).unwrap();
    assert!(
        readme.contains("recorded before revocation evidence was archived"),
        "{readme}"
    );
    let v = read_json(&old_bundle.join("verification.json"));
    assert_eq!(
        v["reverified"]["reason"], "revoked",
        "today's CRL revokes alice: {v}"
    );
    drop(pg);
}

#[test]
fn revocation_evidence_survives_a_newer_crl_sqlite() {
    revocation_evidence_survives_a_newer_crl(false);
}

#[test]
fn revocation_evidence_survives_a_newer_crl_postgres() {
    revocation_evidence_survives_a_newer_crl(true);
}

/// Two messages accepted under the first CRLs; then the CA revokes alice
/// (since yesterday) and a restarted gateway refuses her. Returns the first
/// message's id and the SHA-256 of the old and the new CRL.
fn accepted_then_revoked(
    gw: &smtp::Gateway,
    msg: &[u8],
    crl_file: &Path,
) -> (String, String, String) {
    let server = gw.start();
    let (reply, t) = smtp::send(server.port, ALICE, &[BOB], msg);
    let id = reply
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted: {t}\n{}", server.stderr()));
    // A second message under the same CRLs: the same evidence, one row each.
    let (reply, t) = smtp::send(server.port, ALICE, &[BOB], msg);
    assert!(reply.accepted_id().is_some(), "{t}");
    drop(server);

    // The CA revokes alice (since yesterday); the gateway restarts with it.
    let old_sha = crl_der_sha256(crl_file);
    crl_revoking_alice(crl_file);
    let new_sha = crl_der_sha256(crl_file);
    assert_ne!(old_sha, new_sha);
    let server = gw.start();
    let (reply, t) = smtp::send(server.port, ALICE, &[BOB], msg);
    assert!(
        reply.code >= 500 && reply.text().contains("revoked"),
        "the new CRL is in force: {t}"
    );
    drop(server);
    (id, old_sha, new_sha)
}

/// The audit record of the decision on `id` names the CRLs it used, the
/// signer's being `old_sha`, each archived in the database; returns that
/// evidence.
fn decision_names_the_archived_crls(
    gw: &smtp::Gateway,
    id: &str,
    old_sha: &str,
) -> Vec<serde_json::Value> {
    let url = gw.database_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::open(&url, &gw.data_dir)).unwrap();
    let events = rt.block_on(store.audit_events(id)).unwrap();
    let decision = events
        .iter()
        .find(|e| e.kind == AuditKind::MessageAccepted)
        .unwrap();
    let evidence = decision.data["revocation"].as_array().unwrap().clone();
    assert_eq!(evidence.len(), 2, "signer and issuing CA: {evidence:?}");
    let alice_ev = evidence
        .iter()
        .find(|e| e["subject"].as_str().unwrap().contains("Alice"))
        .unwrap();
    assert_eq!(alice_ev["method"], "crl");
    assert_eq!(alice_ev["sha256"], old_sha, "{alice_ev}");
    assert!(alice_ev["this_update"].is_string() && alice_ev["next_update"].is_string());
    for e in &evidence {
        let sha = e["sha256"].as_str().unwrap();
        let (kind, der) = rt.block_on(store.revocation_blob(sha)).unwrap().unwrap();
        assert_eq!(kind, "crl");
        assert_eq!(hex::encode(Sha256::digest(&der)), sha);
    }
    evidence
}

/// The bundle of `id`, exported to `bundle`, holds exactly the archived
/// `evidence` (the old CRL of `(old_sha, new_sha)`, not today's) and
/// verifies with openssl alone as of reception; emla's re-verification
/// inside says accept. `EMLA_TEST_KEEP_REVOCATION_BUNDLE` keeps a copy
/// under `backend`.
fn exported_bundle_checks_as_of_reception(
    gw: &smtp::Gateway,
    id: &str,
    bundle: &Path,
    evidence: &[serde_json::Value],
    (old_sha, new_sha): (&str, &str),
    backend: &str,
) {
    let (code, out) = emla_cli(
        &["audit", "export", id, "--out", bundle.to_str().unwrap()],
        &gw.config,
    );
    assert_eq!(code, 0, "{out}");
    let archived = bundle.join(format!("revocation/crl-{old_sha}.crl"));
    let bytes = std::fs::read(&archived).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        old_sha,
        "the archived CRL is the one the audit record names"
    );
    for e in evidence {
        let f = format!("revocation/crl-{}.crl", e["sha256"].as_str().unwrap());
        assert!(bundle.join(&f).exists(), "{f}");
        let sums = std::fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
        assert!(sums.contains(&f), "{f} in SHA256SUMS");
    }
    assert!(!bundle
        .join(format!("revocation/crl-{new_sha}.crl"))
        .exists());
    assert!(
        !bundle.join("crls/crls.pem").exists(),
        "today's CRLs are not the evidence"
    );
    let script = script_running(
        bundle,
        &[
            "-crl_check_all",
            "-attime",
            "-purpose smimesign",
            "openssl crl -inform DER -in",
            "-CRLfile",
        ],
    );
    if let Some(keep) = std::env::var_os("EMLA_TEST_KEEP_REVOCATION_BUNDLE") {
        copy_dir(bundle, &Path::new(&keep).join(backend));
    }
    let (ok, out) = run_checks(bundle);
    assert!(ok, "the bundle does not check:\n{out}\n{script}");
    assert!(
        out.contains("revocation evidence OK")
            && out.contains("chain proof OK")
            && out.contains("evidence bundle OK"),
        "{out}"
    );
    let v = read_json(&bundle.join("verification.json"));
    assert_eq!(v["recorded"]["verdict"], "accept");
    assert_eq!(
        v["reverified"]["verdict"], "accept",
        "re-verified with the archived CRLs: {v}"
    );
    assert!(
        v["reverified_with_revocation_data"]
            .as_str()
            .unwrap()
            .contains("archived at reception"),
        "{v}"
    );
    let used = support::field_strs(&v["reverified"]["revocation"], "sha256");
    assert!(used.contains(&old_sha), "{used:?}");
    let readme = std::fs::read_to_string(bundle.join("README.txt")).unwrap();
    assert!(readme.contains("revocation/crl-SHA.crl"), "{readme}");
}

/// A tampered archived CRL: sha256sum fails; with the sums fixed, its name
/// (and the audit record) no longer match and verify.sh fails; today's CRL
/// (`crl_file`) in place of the archived one fails too.
fn tampered_archived_crls_fail(bundle: &Path, old_sha: &str, crl_file: &Path) {
    let flip = |p: &Path| {
        edit_bytes(&p.join(format!("revocation/crl-{old_sha}.crl")), |b| {
            let n = b.len();
            b[n - 3] ^= 0x01;
        })
    };
    let out = caught_twice(bundle, "crl", flip, ": FAILED");
    assert!(out.contains("not the one in its name"), "{out}");
    // Today's CRL put in place of the archived one (sums fixed): refused.
    let t3 = tampered(bundle, "crl-swap", true, |p| {
        let out = Command::new(support::openssl())
            .args(["crl", "-outform", "DER", "-in"])
            .arg(crl_file)
            .output()
            .unwrap();
        std::fs::write(p.join(format!("revocation/crl-{old_sha}.crl")), out.stdout).unwrap();
    });
    let (ok, out) = run_checks(&t3);
    assert!(!ok && !out.contains("evidence bundle OK"), "{out}");
}

#[test]
fn bundle_includes_and_checks_timestamp_tokens_and_receipts() {
    let tsa = tsa_support::Server::start();
    let holder = tempfile::tempdir().unwrap();
    let cp_dir = holder.path().join("checkpoints");
    let (gw, server, id, _) = serve_one(format!(
        "\n[audit]\ncheckpoint_dir = {:?}\n[evidence]\ntsa_url = {:?}\ntsa_ca = {:?}\n",
        cp_dir.display().to_string(),
        tsa.url("/good"),
        tsa_support::tsa_pki().ca().display().to_string()
    ));
    drop(server);

    // The export writes a checkpoint, stamped too.
    let (_work, bundle) = exported(&gw, &id);
    let receipts: Vec<PathBuf> = std::fs::read_dir(bundle.join("receipts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(receipts.len(), 1, "the acceptance receipt: {receipts:?}");
    let rid = receipts[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let tokens: Vec<String> = std::fs::read_dir(bundle.join("timestamps"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tst"))
        .collect();
    assert!(tokens.contains(&format!("receipt-{rid}.tst")), "{tokens:?}");
    assert!(
        tokens.iter().any(|t| t.starts_with("checkpoint-")),
        "{tokens:?}"
    );
    assert!(bundle.join("timestamps/tsa-ca.pem").exists());
    script_running(
        &bundle,
        &[
            "openssl ts -verify",
            "python3 audit/verify_receipts.py",
            &format!("openssl cms -verify -in receipts/{rid}.eml"),
        ],
    );
    let readme = std::fs::read_to_string(bundle.join("README.txt")).unwrap();
    assert!(readme.contains("timestamps/*.tst"), "{readme}");
    if let Some(keep) = std::env::var_os("EMLA_TEST_KEEP_STAMPED_BUNDLE") {
        copy_dir(&bundle, Path::new(&keep));
    }
    let (ok, out) = run_checks(&bundle);
    assert!(ok, "the bundle does not check:\n{out}");
    assert!(out.contains("receipt OK: receipts/"), "{out}");
    assert_eq!(out.matches("Verification: OK").count(), 2, "{out}");
    assert!(out.contains("evidence bundle OK"), "{out}");

    // A changed byte of the receipt's token, SHA256SUMS fixed: fails.
    let token = format!("timestamps/receipt-{rid}.tst");
    let t = tampered(&bundle, "token", true, |b| {
        edit_bytes(&b.join(&token), |x| {
            let n = x.len();
            x[n - 8] ^= 0x01;
        })
    });
    let (ok, out) = run_checks(&t);
    assert!(!ok, "a tampered token passed:\n{out}");
    // The checkpoint's token swapped for the receipt's: not its imprint.
    let cp_token = tokens
        .iter()
        .find(|t| t.starts_with("checkpoint-"))
        .unwrap();
    let t = tampered(&bundle, "swapped", true, |b| {
        let receipt_token = std::fs::read(b.join(&token)).unwrap();
        std::fs::write(b.join("timestamps").join(cp_token), receipt_token).unwrap();
    });
    let (ok, out) = run_checks(&t);
    assert!(!ok, "a swapped token passed:\n{out}");
    // The receipt's Subject (outside its signature) changed: its bytes no
    // longer have the SHA-256 the log names.
    let t = tampered(&bundle, "receipt", true, |b| {
        edit_bytes(&b.join(format!("receipts/{rid}.eml")), |x| {
            let at = x.windows(9).position(|w| w == b"Subject: ").unwrap() + 9;
            x.insert(at, b'X');
        })
    });
    let (ok, out) = run_checks(&t);
    assert!(
        !ok && out.contains("is not the one its receipt.queued record"),
        "a changed receipt passed:\n{out}"
    );
}

/// Records `msg` as message `id` accepted under `policy_version`, as an
/// older gateway did (no revocation evidence, a version not archived), and
/// exports it to `work/legacy`.
fn legacy_bundle(
    gw: &smtp::Gateway,
    msg: &[u8],
    work: &Path,
    id: &str,
    policy_version: &str,
) -> PathBuf {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(Store::open(&gw.database_url(), &gw.data_dir))
        .unwrap();
    let sha256 = hex::encode(Sha256::digest(msg));
    let data = json!({"sha256": sha256, "verdict": "accept", "policy_version": policy_version});
    rt.block_on(store.record(accepted_record(
        id,
        msg,
        now_ms(),
        None,
        policy_version,
        data,
    )))
    .unwrap();
    drop(store);
    let bundle = work.join("legacy");
    let (code, out) = emla_cli(
        &["audit", "export", id, "--out", bundle.to_str().unwrap()],
        &gw.config,
    );
    assert_eq!(code, 0, "{out}");
    bundle
}

/// An exported bundle carries the archived policy version that matches the
/// recorded hash: its files under `policy/VERSION/` (as `emla policy show
/// --extract` lays them out, loadable by `emla policy check`), checked by
/// verify.sh; an altered policy file fails it, even with SHA256SUMS and
/// the manifest fixed. A version recorded before the archive existed is
/// noted, not failed.
#[test]
fn exported_bundle_carries_the_archived_policy_version() {
    let (gw, server, id, msg) = serve_one(String::new());
    drop(server);
    let (work, bundle) = exported(&gw, &id);
    let version = read_json(&bundle.join("recorded.json"))["policy_version"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(&bundle.join(format!("policy/{version}/manifest.json")));
    assert_eq!(manifest["version"], version.as_str());
    let routes = bundle
        .join(manifest["policy_dir"].as_str().unwrap())
        .join("routes.toml");
    assert!(routes.is_file(), "{manifest}");
    // The files the version hashed, and nothing else: the gateway's signing
    // key, which the policy names but does not hash, stays out.
    let names = support::field_strs(&manifest["files"], "name");
    assert!(names.contains(&"routes.toml"), "{names:?}");
    let files = emla::audit::export::bundle_files(&bundle);
    assert!(
        !files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "key")),
        "no private key in the bundle: {files:?}"
    );
    script_running(&bundle, &["python3 policy/verify_policy.py"]);
    let readme = std::fs::read_to_string(bundle.join("README.txt")).unwrap();
    assert!(readme.contains("policy/VERSION/manifest.json"), "{readme}");
    let (ok, out) = run_checks(&bundle);
    assert!(
        ok && out.contains("policy version OK") && out.contains("evidence bundle OK"),
        "{out}"
    );

    // A changed route: sha256sum fails; with the sums fixed, the manifest's
    // SHA-256 does; with the manifest fixed too, the version does.
    let rel = routes.strip_prefix(&bundle).unwrap().to_path_buf();
    let edit = |p: &Path| {
        let f = p.join(&rel);
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, text.replacen("relay", "reject", 1)).unwrap();
    };
    let out = caught_twice(&bundle, "policy", edit, "routes.toml: FAILED");
    assert!(out.contains("was altered"), "{out}");
    let rel_s = rel.to_str().unwrap().to_string();
    let manifest_rel = format!("policy/{version}/manifest.json");
    let (ok, out) = run_checks(&tampered(&bundle, "policy-manifest", true, |p| {
        edit(p);
        let new_sha = hex::encode(Sha256::digest(std::fs::read(p.join(&rel)).unwrap()));
        let mut m = read_json(&p.join(&manifest_rel));
        for f in m["files"].as_array_mut().unwrap() {
            if f["path"] == rel_s.as_str() {
                f["sha256"] = json!(new_sha);
            }
        }
        std::fs::write(p.join(&manifest_rel), m.to_string()).unwrap();
    }));
    assert!(
        !ok && out.contains("not to the recorded version") && !out.contains("evidence bundle OK"),
        "{out}"
    );

    // Recorded before versions were archived: the bundle says so, and the
    // policy step notes it without failing.
    let legacy = "legacy-policy@emla.test";
    let old_version = "0".repeat(64);
    let old_bundle = legacy_bundle(&gw, &msg, work.path(), legacy, &old_version);
    let note = std::fs::read_to_string(old_bundle.join("policy/NOT-ARCHIVED.txt")).unwrap();
    assert!(
        note.contains(&old_version) && note.contains("not in"),
        "{note}"
    );
    assert!(!old_bundle.join(format!("policy/{old_version}")).exists());
    let out = Command::new("python3")
        .args(["policy/verify_policy.py", legacy])
        .current_dir(&old_bundle)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("NOTE") && text.contains("not archived"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
