//! Two `emla serve` instances on one PostgreSQL database (issue #12 item
//! 5): each with its own data directory, bodies in the database
//! (`body_storage = "database"`), checkpoints every second and retention
//! every second. Mail goes to both; then no checkpoint number is recorded
//! twice, `emla audit verify` passes with both instances' checkpoints, and
//! retention on both never removes a body a younger message still needs.
//!
//! Needs PostgreSQL at `EMLA_TEST_POSTGRES` (a role that may create
//! databases); skipped, saying so, when it is unset.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use smtp::{emla_cli, pg_exec, send, Gateway, Opts, PgDb};
use support::{alice_to_bob, pki, signing_policy, Tool, ALICE, BEA, BOB};

fn instance(pg: &PgDb) -> Gateway {
    Gateway::new(Opts {
        policy_dir: signing_policy(),
        database_url: Some(pg.url.clone()),
        top_extra: "body_storage = \"database\"\n".into(),
        extra_toml: "\n[audit]\ncheckpoint_interval_secs = 1\n\
                     \n[retention]\nbodies_days = 1\ninterval_secs = 1\n"
            .into(),
        ..Opts::default()
    })
}

/// Waits up to 20 s for `done`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_instances_share_checkpoints_and_retention() {
    if std::env::var_os("EMLA_TEST_POSTGRES").is_none() {
        eprintln!(
            "cluster: skipped, EMLA_TEST_POSTGRES is not set (two instances need PostgreSQL)"
        );
        return;
    }
    let pg = PgDb::create();
    let (one, two) = (instance(&pg), instance(&pg));
    let servers = [one.start(), two.start()];
    let db = one.db();

    // Mail to both, spread over a few checkpoint intervals.
    let mut ids = Vec::new();
    for i in 0..8 {
        let srv = &servers[i % 2];
        let (reply, t) = send(srv.port, ALICE, &[BOB], &alice_to_bob(Tool::SmimeDetached));
        ids.push(
            reply
                .accepted_id()
                .unwrap_or_else(|| panic!("not accepted: {t}")),
        );
        std::thread::sleep(Duration::from_millis(400));
    }

    // The same bytes again, at the other instance, for one more recipient
    // (so not a replay): one row of `bodies` for both messages.
    let shared = alice_to_bob(Tool::SmimeDetached);
    let (first, t) = send(servers[0].port, ALICE, &[BOB], &shared);
    let first = first
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted: {t}"));
    let (again, t) = send(servers[1].port, ALICE, &[BOB, BEA], &shared);
    let again = again
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted: {t}"));
    let sha = db.message(&first).unwrap().sha256;
    let rows = |sql: &str| db.scalar(&sql.replace("SHA", &sha));
    assert_eq!(
        rows("SELECT COUNT(*) FROM messages WHERE sha256 = 'SHA'"),
        2
    );
    assert_eq!(rows("SELECT COUNT(*) FROM bodies WHERE sha256 = 'SHA'"), 1);

    // The first one and the body row are now old: retention prunes the
    // message, but the body stays for the copy received today.
    pg_exec(
        &pg.url,
        &format!(
            "UPDATE messages SET received_at = received_at - 2 * 86400000 WHERE id = '{first}'; \
             UPDATE bodies SET stored_at = stored_at - 2 * 86400000 WHERE sha256 = '{sha}'"
        ),
    );
    until("retention to prune the old message", || {
        !db.message(&first).unwrap().body_stored
    });
    assert_eq!(
        rows("SELECT COUNT(*) FROM bodies WHERE sha256 = 'SHA'"),
        1,
        "a body the younger copy needs was removed"
    );
    assert!(db.message(&again).unwrap().body_stored);
    // Once no message needs it, it goes.
    pg_exec(
        &pg.url,
        &format!(
            "UPDATE messages SET received_at = received_at - 2 * 86400000 WHERE sha256 = '{sha}'"
        ),
    );
    until("retention to remove the unneeded body", || {
        rows("SELECT COUNT(*) FROM bodies WHERE sha256 = 'SHA'") == 0
    });

    // Let a last checkpoint cover everything, then stop both.
    std::thread::sleep(Duration::from_millis(2500));
    drop(servers);

    // No checkpoint number twice, however the two instances' ticks fell.
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in db.audit_of("audit.checkpoint") {
        let data: serde_json::Value = serde_json::from_str(&r.data).unwrap();
        *seen.entry(data["seq"].as_i64().unwrap()).or_default() += 1;
    }
    assert!(seen.len() >= 3, "too few checkpoints: {seen:?}");
    assert!(seen.values().all(|n| *n == 1), "a seq twice: {seen:?}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM checkpoints"),
        seen.len() as i64
    );

    // The shared chain verifies, with each instance's checkpoint files.
    let ca = pki().cert("aa", "root");
    let mut files = 0;
    for gw in [&one, &two] {
        let dir = gw.data_dir.join("checkpoints");
        files += std::fs::read_dir(&dir).map_or(0, |d| d.count());
        if !dir.exists() {
            continue;
        }
        let (code, out) = emla_cli(
            &[
                "audit",
                "verify",
                "--checkpoints",
                dir.to_str().unwrap(),
                "--ca",
                ca.to_str().unwrap(),
            ],
            &gw.config,
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("audit chain intact"), "{out}");
    }
    assert_eq!(files, 2 * seen.len(), "a .json and a .p7s per checkpoint");
    for id in &ids {
        assert!(db.message(id).unwrap().body_stored, "{id} was young");
    }
}
