//! End-to-end tests of bodies encrypted at rest (`[storage] encrypt_bodies`,
//! docs/at-rest.md): `emla serve` takes signed mail from swaks and from a
//! raw SMTP client, and afterwards no byte of the message's text is found
//! anywhere under the data directory nor in a dump of the database
//! (`sqlite3 .dump`, `pg_dump`), on SQLite and PostgreSQL, with bodies in
//! files and in the database. The relay still delivers the received bytes
//! to a real counterpart (the aiosmtpd sink), `emla audit export` writes
//! them in clear, and bodies sealed before `emla keys rotate` stay readable
//! after it. Wrong or missing keys and altered bodies get clear errors.
//!
//! Requirements beyond `tests/support`: `swaks`, `sqlite3`, `pg_dump`,
//! Python `aiosmtpd`, PostgreSQL at `EMLA_TEST_POSTGRES`.

#[path = "support/proc.rs"]
mod proc;
#[path = "support/sink.rs"]
mod sink;
#[path = "support/smtp.rs"]
mod smtp;
mod support;
#[macro_use]
#[path = "support/testdb.rs"]
mod testdb;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use emla::config::{BodyStorage, KekSource, StorageConfig};
use emla::store::{MessageRecord, Record, Store, StoreError};
use sink::*;
use smtp::*;
use support::*;
use testdb::{Backend, TestDb};

/// The first bytes of a sealed body (`emla::store::seal::MAGIC`).
const MAGIC: &[u8] = b"\0EMLAENC";

/// A text unique to this run and call, found only in the message body.
fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("AtRestMarker{tag}{}x{nanos}", std::process::id())
}

/// A signed message (detached, so the text stays in clear in the MIME)
/// whose body says `marker` on every line, over three 64 KiB segments.
fn marked_message(marker: &str) -> Vec<u8> {
    let mut body = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n".to_vec();
    while body.len() < 150_000 {
        body.extend_from_slice(format!("Witness statement {marker} follows.\r\n").as_bytes());
    }
    crlf(&with_headers(
        ALICE,
        &[BOB],
        &sign(Tool::SmimeDetached, "aa", "alice", &body, &[]),
    ))
}

/// A key-encryption key file (64 hex digits) in `dir`.
fn kek_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n", hex::encode([byte; 32]))).unwrap();
    p
}

/// `[storage]` sealing under the KEK in `kek`; `[audit]` so that `emla
/// audit export` may write its checkpoint with the test policy, which has
/// no signing identity.
fn storage_toml(kek: &Path) -> String {
    format!(
        "\n[storage]\nencrypt_bodies = true\nkek_file = {:?}\n\
         \n[audit]\nallow_unsigned_checkpoints = true\n",
        kek.display().to_string()
    )
}

/// A policy whose bb-moj next hop is 127.0.0.1:`port`, retried after a second.
fn policy_to(port: u16) -> PolicyCopy {
    let p = PolicyCopy::new();
    p.edit(
        "authorities/bb-moj.toml",
        "url = \"smtp://127.0.0.1:2626\"",
        &format!("url = \"smtp://127.0.0.1:{port}\""),
    );
    let gw = p.0.join("gateway.toml");
    let mut text = std::fs::read_to_string(&gw).unwrap();
    text += "\n[relay]\nretry_initial_secs = 1\nretry_max_secs = 2\nconnect_timeout_secs = 5\n";
    std::fs::write(&gw, text).unwrap();
    p
}

/// A sealing, relaying gateway: next hop at `port`, the KEK in `kek`.
fn sealing_gateway(policy: &PolicyCopy, kek: &Path, db: Option<&str>, in_db: bool) -> Gateway {
    Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        database_url: db.map(str::to_owned),
        relay: Some("poll_ms = 100\n".into()),
        top_extra: if in_db {
            "body_storage = \"database\"\n".into()
        } else {
            String::new()
        },
        extra_toml: storage_toml(kek),
        ..Opts::default()
    })
}

/// The emla id from swaks's transcript of an accepted message.
fn swaks_send(port: u16, msg: &[u8]) -> String {
    let (code, out) = swaks(port, ALICE, BOB, msg, &[]);
    assert_eq!(code, Some(0), "{out}");
    out.split("accepted as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|id| id.trim_matches(|c| c == '<' || c == '>').to_owned())
        .unwrap_or_else(|| panic!("no id in:\n{out}"))
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if find(&bytes, needle).is_some() {
                    found.push(p);
                }
            }
        }
    }
    found
}

/// A text dump of the whole database: `sqlite3 FILE .dump` or `pg_dump URL`
/// (blobs appear as hex in both, so the marker is looked for in hex too).
fn dump_database(url: &str) -> String {
    let out = match url.strip_prefix("sqlite://") {
        Some(file) => Command::new("sqlite3").arg(file).arg(".dump").output(),
        None => Command::new("pg_dump").arg(url).output(),
    }
    .unwrap_or_else(|e| panic!("cannot dump {url} (sqlite3, pg_dump): {e}"));
    support::cmd::assert_succeeded("dumping the database", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No trace of `marker` in the data directory or the database, in clear
/// or in hex; the dump does hold the row of message `id`.
fn assert_no_plaintext(gw: &Gateway, marker: &str, id: &str) {
    let in_files = files_containing(&gw.data_dir, marker.as_bytes());
    assert!(in_files.is_empty(), "plaintext in {in_files:?}");
    let dump = dump_database(&gw.database_url());
    assert!(dump.contains(id), "not the gateway's database? {dump}");
    let lower = dump.to_ascii_lowercase();
    assert!(!dump.contains(marker), "plaintext in the database dump");
    assert!(
        !lower.contains(&hex::encode(marker.as_bytes())),
        "plaintext (hex) in the database dump"
    );
}

/// `emla audit export ID --config CONFIG` into a new directory: the
/// bundle's message.eml, or the output of the failed command (which then
/// wrote no message.eml).
fn export(config: &Path, id: &str) -> Result<Vec<u8>, String> {
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    let (code, out) = emla_cli(
        &["audit", "export", id, "--out", bundle.to_str().unwrap()],
        config,
    );
    let message = std::fs::read(bundle.join("message.eml")).ok();
    match (code, message) {
        (0, Some(m)) => Ok(m),
        (0, None) => panic!("no message.eml: {out}"),
        (_, None) => Err(out),
        (_, Some(_)) => panic!("failed, but wrote message.eml: {out}"),
    }
}

/// The message.eml `emla audit export ID` writes.
fn exported_message(gw: &Gateway, id: &str) -> Vec<u8> {
    export(&gw.config, id).unwrap_or_else(|out| panic!("export failed: {out}"))
}

/// The output of `emla audit export ID`, which must fail.
fn export_fails(config: &Path, id: &str) -> String {
    export(config, id).map(|_| ()).unwrap_err()
}

/// The message among `got` that was relayed as emla id `id`.
fn relayed_as<'a>(got: &'a [Vec<u8>], id: &str) -> &'a [u8] {
    got.iter()
        .find(|m| find(m, format!(" id {id}").as_bytes()).is_some())
        .unwrap_or_else(|| panic!("{id} not relayed"))
}

/// A sealing gateway whose next hop (the returned port) is down, after it
/// accepted one marked message and was killed: the message waits in the
/// queue. Also its KEK file and emla id.
fn one_queued(
    tag: &str,
) -> (
    u16,
    PolicyCopy,
    tempfile::TempDir,
    PathBuf,
    Gateway,
    String,
    Vec<u8>,
) {
    let port = free_port();
    let policy = policy_to(port);
    let keys = tempfile::tempdir().unwrap();
    let kek = kek_file(keys.path(), "kek", 0x17);
    let gw = sealing_gateway(&policy, &kek, None, false);
    let mut srv = gw.start();
    let msg = marked_message(&marker(tag));
    let id = swaks_send(srv.port, &msg);
    srv.kill();
    (port, policy, keys, kek, gw, id, msg)
}

/// The size of the stored (sealed) body `sha256`, its file or its
/// `bodies` row, having checked that it starts as a sealed body does.
fn sealed_size(gw: &Gateway, sha256: &str, in_db: bool) -> usize {
    if !in_db {
        let stored = std::fs::read(gw.body_path(sha256)).unwrap();
        assert!(
            stored.starts_with(MAGIC),
            "{sha256}: the file is not sealed"
        );
        return stored.len();
    }
    // Hex, in SQL: the header starts with NUL.
    let head = if gw.database_url().starts_with("sqlite:") {
        format!("LOWER(HEX(SUBSTR(data, 1, 8))) = '{}'", hex::encode(MAGIC))
    } else {
        format!(
            "encode(substring(data from 1 for 8), 'hex') = '{}'",
            hex::encode(MAGIC)
        )
    };
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(LENGTH(data)), 0) AS BIGINT) FROM bodies WHERE sha256 = '{sha256}' AND {head}"
    );
    usize::try_from(gw.db().scalar(&sql)).unwrap()
}

/// Sends two marked messages (swaks and a raw client), checks that nothing
/// is in clear at rest, that both are relayed byte for byte and exported
/// in clear.
fn sealed_end_to_end(db: Option<&str>, in_db: bool) {
    let sink = Sink::start(&[]);
    let policy = policy_to(sink.port);
    let keys = tempfile::tempdir().unwrap();
    let kek = kek_file(keys.path(), "kek", 0x42);
    let gw = sealing_gateway(&policy, &kek, db, in_db);
    let srv = gw.start();
    let mark = marker("e2e");
    let first = marked_message(&mark);
    let id1 = swaks_send(srv.port, &first);
    let second = marked_message(&format!("{mark}two"));
    let (r, t) = send(srv.port, ALICE, &[BOB], &second);
    let id2 = r.accepted_id().unwrap_or_else(|| panic!("{t}"));

    let got = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "not relayed:\n{}", srv.stderr());
    assert_relayed_exactly(relayed_as(&got, &id1), &first, &id1);
    assert_relayed_exactly(relayed_as(&got, &id2), &second, &id2);

    for (id, msg) in [(&id1, &first), (&id2, &second)] {
        let row = gw.db().message(id).unwrap();
        assert_eq!(row.sha256, sha256_hex(msg), "the hash is the plaintext's");
        assert!(row.body_stored);
        // Header, the body, one tag per 64 KiB segment.
        let size = sealed_size(&gw, &row.sha256, in_db);
        assert_eq!(
            size,
            21 + msg.len() + 16 * msg.len().div_ceil(65536),
            "{id}"
        );
        let exported = exported_message(&gw, id);
        assert_eq!(&exported, msg, "export writes the plaintext");
    }
    if in_db {
        assert!(gw.body_files().is_empty(), "{:?}", gw.body_files());
    }
    assert_no_plaintext(&gw, &mark, &id1);
    // The search itself finds the marker where it is in clear.
    let clear = tempfile::tempdir().unwrap();
    std::fs::write(clear.path().join("message.eml"), &first).unwrap();
    assert_eq!(files_containing(clear.path(), mark.as_bytes()).len(), 1);
    let (code, out) = emla_cli(&["keys", "list", "--json"], &gw.config);
    assert_eq!(code, 0, "{out}");
    let list: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list[0]["id"], 1, "{list}");
    assert_eq!(list[0]["current"], true, "{list}");
    gw.assert_audit_intact();
}

#[test]
fn sqlite_files_hold_no_plaintext_and_relay_and_export_the_original() {
    sealed_end_to_end(None, false);
}

#[test]
fn sqlite_database_bodies_hold_no_plaintext() {
    sealed_end_to_end(None, true);
}

#[test]
fn postgres_database_bodies_hold_no_plaintext() {
    assert!(
        postgres_available(),
        "PostgreSQL at {}",
        postgres_admin_url()
    );
    let pg = PgDb::create();
    sealed_end_to_end(Some(&pg.url), true);
}

#[test]
fn postgres_with_files_holds_no_plaintext() {
    assert!(
        postgres_available(),
        "PostgreSQL at {}",
        postgres_admin_url()
    );
    let pg = PgDb::create();
    sealed_end_to_end(Some(&pg.url), false);
}

#[test]
fn without_encrypt_bodies_the_same_search_finds_the_plaintext() {
    // The control of the tests above: their search is not blind.
    let sink = Sink::start(&[]);
    let policy = policy_to(sink.port);
    let gw = Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        top_extra: "body_storage = \"database\"\n".into(),
        ..Opts::default()
    });
    let srv = gw.start();
    let mark = marker("clear");
    swaks_send(srv.port, &marked_message(&mark));
    assert!(!files_containing(&gw.data_dir, mark.as_bytes()).is_empty());
    let dump = dump_database(&gw.database_url()).to_ascii_lowercase();
    assert!(dump.contains(&hex::encode(mark.as_bytes())));
    let (code, out) = emla_cli(&["keys", "list"], &gw.config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no key-encryption key is configured"), "{out}");
}

/// The key id a sealed body's header names.
fn header_key_id(sealed: &[u8]) -> u32 {
    assert!(sealed.starts_with(MAGIC));
    u32::from_be_bytes(sealed[10..14].try_into().unwrap())
}

#[test]
fn bodies_sealed_before_and_after_a_rotation_are_both_relayed_and_exported() {
    // The first message waits in the queue across the rotation.
    let (port, _policy, keys, kek, gw, id1, before) = one_queued("before");

    let (code, out) = emla_cli(&["keys", "rotate"], &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("data key 2 added"), "{out}");
    let (code, out) = emla_cli(&["keys", "list"], &gw.config);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with("1 ") && !lines[1].contains("current"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("2 ") && lines[2].ends_with("current"),
        "{out}"
    );

    let srv = gw.start();
    let after = marked_message(&marker("after"));
    let id2 = swaks_send(srv.port, &after);
    let sealed = |msg: &[u8]| std::fs::read(gw.body_path(&sha256_hex(msg))).unwrap();
    assert_eq!(header_key_id(&sealed(&before)), 1);
    assert_eq!(header_key_id(&sealed(&after)), 2);

    let sink = Sink::start_on(port, &[]);
    let got = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "not relayed:\n{}", srv.stderr());
    for (id, msg) in [(&id1, &before), (&id2, &after)] {
        assert_relayed_exactly(relayed_as(&got, id), msg, id);
        assert_eq!(&exported_message(&gw, id), msg);
    }
    gw.assert_audit_intact();
    drop(srv);

    // A new KEK: both keys wrapped anew; the old KEK no longer opens the
    // store, the new one reads both bodies.
    let new_kek = kek_file(keys.path(), "new-kek", 0x18);
    let new_path = new_kek.to_str().unwrap();
    let (code, out) = emla_cli(&["keys", "rewrap", "--new-kek-file", new_path], &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 data key(s) wrapped"), "{out}");
    let (code, out) = emla_cli(&["keys", "list"], &gw.config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not unwrap data key 1"), "{out}");
    let config = std::fs::read_to_string(&gw.config).unwrap();
    let old_path = kek.to_str().unwrap();
    std::fs::write(&gw.config, config.replace(old_path, new_path)).unwrap();
    assert_eq!(exported_message(&gw, &id1), before);
    assert_eq!(exported_message(&gw, &id2), after);
}

/// `emla ARGS --config CONFIG` with environment `env`: exit code, output.
fn emla_env(args: &[&str], config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emla"));
    cmd.args(args).arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), output_text(&out))
}

/// `emla serve` that must not start: its exit code and output.
fn serve_refused(config: &Path) -> (i32, String) {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_emla"))
            .arg("serve")
            .arg("--config")
            .arg(config),
        None,
        Duration::from_secs(30),
    );
    (out.status.code().unwrap_or(-1), output_text(&out))
}

#[test]
fn wrong_or_missing_keys_and_altered_bodies_get_clear_errors() {
    let (port, _policy, keys, kek, gw, id, msg) = one_queued("errors");
    let sha = sha256_hex(&msg);

    // The same KEK from a variable and from a systemd credential.
    let hex_kek = std::fs::read_to_string(&kek).unwrap();
    let config = std::fs::read_to_string(&gw.config).unwrap();
    let kek_line = format!("kek_file = {:?}", kek.display().to_string());
    let variant = |name: &str, line: &str| {
        let p = gw.dir().join(name);
        std::fs::write(&p, config.replace(&kek_line, line)).unwrap();
        p
    };
    let by_env = variant("env.toml", "kek_env = \"EMLA_TEST_KEK\"");
    let (code, out) = emla_env(
        &["keys", "list"],
        &by_env,
        &[("EMLA_TEST_KEK", hex_kek.trim())],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("current"), "{out}");
    let (code, out) = emla_env(&["keys", "list"], &by_env, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("EMLA_TEST_KEK is not set"), "{out}");
    let by_cred = variant("cred.toml", "kek_credential = \"emla-kek\"");
    std::fs::copy(&kek, keys.path().join("emla-kek")).unwrap();
    let creds = keys.path().to_str().unwrap();
    let (code, out) = emla_env(
        &["keys", "list"],
        &by_cred,
        &[("CREDENTIALS_DIRECTORY", creds)],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = emla_env(&["keys", "list"], &by_cred, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CREDENTIALS_DIRECTORY is not set"), "{out}");

    // Another KEK: the gateway does not start, the CLI says why.
    let wrong = variant(
        "wrong.toml",
        &format!(
            "kek_file = {:?}",
            kek_file(keys.path(), "other", 0x02).display().to_string()
        ),
    );
    let (code, out) = serve_refused(&wrong);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not unwrap data key 1"), "{out}");
    let (code, out) = emla_cli(
        &["audit", "export", id.as_str(), "--out", "/nonexistent/x"],
        &wrong,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not unwrap data key 1"), "{out}");
    // No KEK file, and none configured while bodies are sealed.
    let missing = variant("missing.toml", "kek_file = \"/nonexistent/kek\"");
    let (code, out) = serve_refused(&missing);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cannot read the key-encryption key /nonexistent/kek"),
        "{out}"
    );
    let none = variant("none.toml", "");
    let none_text = std::fs::read_to_string(&none)
        .unwrap()
        .replace("encrypt_bodies = true", "encrypt_bodies = false");
    std::fs::write(&none, none_text).unwrap();
    let out = export_fails(&none, &id);
    assert!(
        out.contains(&format!("body {sha} is sealed at rest (data key 1)"))
            && out.contains("no key-encryption key is configured"),
        "{out}"
    );

    // One flipped bit in the second segment: named, never exported.
    let path = gw.body_path(&sha);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[21 + 65536 + 16 + 100] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let out = export_fails(&gw.config, &id);
    assert!(
        out.contains(&format!("body {sha} (sealed at rest)"))
            && out.contains("segment 1 does not authenticate"),
        "{out}"
    );
    // Cut after its first segment.
    std::fs::write(&path, &bytes[..21 + 65536 + 16]).unwrap();
    let out = export_fails(&gw.config, &id);
    assert!(out.contains("truncated: segment 1 is missing"), "{out}");
    // Another sealed body under this body's name: opens, but to the wrong
    // hash.
    let srv = gw.start();
    let other = marked_message(&marker("other"));
    swaks_send(srv.port, &other);
    std::fs::copy(gw.body_path(&sha256_hex(&other)), &path).unwrap();
    let out = export_fails(&gw.config, &id);
    assert!(out.contains("swapped for another body"), "{out}");
    // The relay defers rather than send what does not open.
    let sink = Sink::start_on(port, &[]);
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "only the intact message is relayed");
    assert!(find(&got[0], &other).is_some());
    eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        let deferred = gw.db().audit_of("relay.deferred");
        deferred
            .iter()
            .find(|r| r.message_id.as_deref() == Some(&id) && r.data.contains("swapped"))
            .map(|_| ())
            .ok_or_else(|| format!("no relay.deferred naming the swap: {deferred:?}"))
    });
    drop(srv);
}

// ---------------------------------------------------------------------------
// The store alone, on both backends
// ---------------------------------------------------------------------------

/// An accepted message `id` with its body, as the intake records it.
fn record_of(id: &str, raw: &[u8]) -> Record {
    Record {
        message: Some(MessageRecord {
            id: id.into(),
            received_at_ms: 1_767_225_600_000,
            sha256: sha256_hex(raw),
            size: raw.len() as u64,
            session: Default::default(),
            mail_from: ALICE.into(),
            rcpt_to: vec![BOB.into()],
            headers: Default::default(),
            reason: emla::Reason::Ok,
            detail: String::new(),
            signers: serde_json::json!([]),
            authority: Some("aa-moj".into()),
            policy_version: "p1".into(),
            case_ref: None,
            kind: None,
            signature_keys: Vec::new(),
            body: Some(raw.into()),
            dsn: None,
        }),
        ..Record::default()
    }
}

/// Sealed in files and in the `bodies` table: read back in clear across a
/// rotation, refused with another KEK, named without one.
async fn sealed_store(backend: Backend) {
    let db = TestDb::new(backend).await;
    let kek = kek_file(db.dir.path(), "kek", 0x5a);
    let sealed = StorageConfig {
        encrypt_bodies: true,
        kek: Some(KekSource::File(kek.clone())),
    };
    for (n, bodies) in [BodyStorage::Files, BodyStorage::Database]
        .into_iter()
        .enumerate()
    {
        let data = db.dir.path().join(format!("data{n}"));
        let store = Store::open_sealed(&db.url, &data, bodies, &sealed)
            .await
            .unwrap();
        let old = format!("old body {n} {}", marker("store")).into_bytes();
        store
            .record(record_of(&format!("old{n}"), &old))
            .await
            .unwrap();
        // A second instance on the same database, opened before the rotation.
        let peer = Store::open_sealed(&db.url, &data, bodies, &sealed)
            .await
            .unwrap();
        let id = store.rotate_data_key().await.unwrap();
        let new = format!("new body {n} {}", marker("store")).into_bytes();
        store
            .record(record_of(&format!("new{n}"), &new))
            .await
            .unwrap();
        assert_eq!(store.read_body(&sha256_hex(&old)).await.unwrap(), old);
        assert_eq!(store.read_body(&sha256_hex(&new)).await.unwrap(), new);
        // It learns the new key when a body names it.
        assert_eq!(peer.read_body(&sha256_hex(&new)).await.unwrap(), new);
        drop(peer);
        let keys = store.data_keys().await.unwrap();
        let ids: Vec<(u32, bool)> = keys.iter().map(|k| (k.id, k.current)).collect();
        assert_eq!(ids.last(), Some(&(id, true)), "{keys:?}");
        assert!(ids.iter().filter(|(_, c)| *c).count() == 1, "{keys:?}");
        if bodies == BodyStorage::Files {
            let file = std::fs::read(store.body_path(&sha256_hex(&new)).unwrap()).unwrap();
            assert!(file.starts_with(MAGIC));
            let mut streamed = Vec::new();
            let sha = sha256_hex(&old);
            let mut r = store.body_file_reader(&sha).await.unwrap();
            std::io::Read::read_to_end(&mut r, &mut streamed).unwrap();
            assert_eq!(streamed, old, "the streaming reader opens it too");
        }
        drop(store);

        // Another KEK: refused at open, naming the key.
        let other = StorageConfig {
            encrypt_bodies: true,
            kek: Some(KekSource::File(kek_file(db.dir.path(), "other", 0x01))),
        };
        let e = Store::open_sealed(&db.url, &data, bodies, &other)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Config(_)), "{e}");
        assert!(e.to_string().contains("does not unwrap data key 1"), "{e}");
        // No KEK: opens, and says which body it cannot read and why.
        let clear = Store::open_with(&db.url, &data, bodies).await.unwrap();
        let e = clear.read_body(&sha256_hex(&old)).await.unwrap_err();
        assert!(
            e.to_string().contains("is sealed at rest (data key ")
                && e.to_string().contains(&sha256_hex(&old)),
            "{e}"
        );
        drop(clear);
    }
    db.drop_db().await;
}

both!(sealed_store);
