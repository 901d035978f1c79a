//! End-to-end tests of the operators' listener (`[metrics]`, issue #14
//! items 1–3): `/metrics` counts exactly what the gateway decided,
//! `/readyz` follows the database (PostgreSQL) and the CRLs, and
//! `log_format = "json"` writes one JSON object per line with the emla id,
//! reason and authority as fields.
//!
//! Requirements: those of `tests/support` and `tests/intake.rs`;
//! PostgreSQL at `EMLA_TEST_POSTGRES` for the database case.

#[path = "support/scrape.rs"]
mod scrape;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use scrape::{get, scrape, value};
use smtp::*;
use support::*;

const METRICS: &str = "\n[metrics]\nlisten = \"127.0.0.1:0\"\nmin_free_bytes = 1\n";

/// The `metrics listening on ADDR` address the gateway printed.
fn metrics_addr(srv: &Server) -> String {
    srv.stdout
        .iter()
        .find_map(|l| l.strip_prefix("metrics listening on "))
        .unwrap_or_else(|| panic!("no `metrics listening on` line in {:?}", srv.stdout))
        .to_owned()
}

/// `/readyz` until its status is `want` (within `within`); the last body.
fn ready_becomes(addr: &str, want: u16, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = get(addr, "/readyz");
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz body {body:?}: {e}"));
        if status == want {
            assert_eq!(json["ready"], want == 200, "{json}");
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} (wanted {want}): {json}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn scrape_after_a_known_mix_counts_exactly() {
    let (gw, srv) = Gateway::serve(Opts {
        extra_toml: METRICS.into(),
        ..Opts::default()
    });
    let addr = metrics_addr(&srv);
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_owned()));

    let good = [
        alice_to_bob(Tool::SmimeDetached),
        alice_to_bob(Tool::CmsOpaque),
    ];
    let tampered = replace_once(&alice_to_bob(Tool::SmimeDetached), b"quick", b"quack");
    let impostor = mail(Tool::SmimeDetached, "xx", "impostor", ALICE, &[BOB]);
    for m in &good {
        let (r, t) = send(srv.port, ALICE, &[BOB], m);
        assert_eq!(r.code, 250, "{t}");
    }
    for m in [&tampered, &impostor] {
        let (r, t) = send(srv.port, ALICE, &[BOB], m);
        assert_eq!(r.code, 550, "{t}");
    }

    let s = scrape(&addr);
    let ok = r#"emla_decisions_total{reason="ok",authority="aa-moj",verdict="accept"}"#;
    assert_eq!(value(&s, ok), 2.0, "{s:#?}");
    // Every decision recorded is counted once, under its reason.
    let mut by_reason: BTreeMap<(String, String), f64> = BTreeMap::new();
    for m in gw.db().messages() {
        *by_reason.entry((m.reason, m.verdict)).or_default() += 1.0;
    }
    assert_eq!(by_reason.values().sum::<f64>(), 4.0);
    let decisions: Vec<(&String, &f64)> = s
        .iter()
        .filter(|(k, _)| k.starts_with("emla_decisions_total{"))
        .collect();
    assert_eq!(
        decisions.iter().map(|(_, v)| **v).sum::<f64>(),
        4.0,
        "{decisions:?}"
    );
    for ((reason, verdict), n) in &by_reason {
        let verdict = if verdict == "accept" {
            "accept"
        } else {
            "reject"
        };
        let counted: f64 = decisions
            .iter()
            .filter(|(k, _)| {
                k.contains(&format!("reason=\"{reason}\""))
                    && k.contains(&format!("verdict=\"{verdict}\""))
            })
            .map(|(_, v)| **v)
            .sum();
        assert_eq!(counted, *n, "reason {reason}: {decisions:?}");
    }
    // Four sessions: each greeting, EHLO, MAIL, RCPT, DATA's 354 and QUIT
    // are the same; only the reply to the message differs.
    assert_eq!(
        value(&s, r#"emla_smtp_replies_total{class="5xx"}"#),
        2.0,
        "{s:#?}"
    );
    assert_eq!(
        value(&s, r#"emla_smtp_replies_total{class="4xx"}"#),
        0.0,
        "{s:#?}"
    );
    assert_eq!(
        value(&s, r#"emla_smtp_replies_total{class="3xx"}"#),
        4.0,
        "{s:#?}"
    );
    let twos = value(&s, r#"emla_smtp_replies_total{class="2xx"}"#);
    assert_eq!(
        twos,
        4.0 * 5.0 + 2.0,
        "greeting, EHLO, MAIL, RCPT, QUIT and two 250s: {s:#?}"
    );
    for h in [
        "emla_verify_seconds_count",
        "emla_commit_seconds_count",
        "emla_data_reply_seconds_count",
    ] {
        assert_eq!(value(&s, h), 4.0, "{h}: {s:#?}");
    }
    for info in ["emla_policy_info{version=", "emla_build_info{version="] {
        assert!(s.keys().any(|k| k.starts_with(info)), "{info}: {s:#?}");
    }
    assert!(
        s.keys()
            .all(|k| !k.contains("impostor") && !k.contains("\"xx")),
        "a label from a message's contents: {s:#?}"
    );
    // The queue gauges are read from the database every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = scrape(&addr);
        let depth = value(&s, r#"emla_queue_depth{status="accepted",lane="normal"}"#);
        if depth == 2.0 {
            assert!(value(&s, "emla_queue_oldest_age_seconds") >= 0.0);
            assert_eq!(value(&s, "emla_sessions"), 0.0, "{s:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "queue depth {depth}: {s:#?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        ready_becomes(&addr, 200, Duration::ZERO)["failed"],
        serde_json::json!([])
    );
}

#[test]
fn readyz_is_503_while_the_database_is_unreachable() {
    let pg = PgDb::create();
    let (_gw, srv) = Gateway::serve(Opts {
        database_url: Some(pg.url.clone()),
        extra_toml: METRICS.into(),
        ..Opts::default()
    });
    let addr = metrics_addr(&srv);
    ready_becomes(&addr, 200, Duration::from_secs(5));
    pg.allow_connections(false);
    let down = ready_becomes(&addr, 503, Duration::from_secs(10));
    assert_eq!(down["failed"], serde_json::json!(["database"]), "{down}");
    assert_eq!(down["checks"]["database"]["ok"], false, "{down}");
    assert_eq!(get(&addr, "/healthz").0, 200, "alive while not ready");
    pg.allow_connections(true);
    let up = ready_becomes(&addr, 200, Duration::from_secs(10));
    assert_eq!(up["checks"]["database"]["ok"], true, "{up}");
}

#[test]
fn readyz_is_503_while_a_hard_fail_crl_is_stale() {
    // A copy of the stale-CRL policy beside the PKI's (its paths are
    // relative), made fresh again by a reload.
    let dir = pki()
        .dir
        .join(format!("policy-ready-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("authorities")).unwrap();
    let stale = pki().dir.join("policy-stale");
    for f in ["gateway.toml", "routes.toml"] {
        if stale.join(f).exists() {
            std::fs::copy(stale.join(f), dir.join(f)).unwrap();
        }
    }
    for e in std::fs::read_dir(stale.join("authorities")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join("authorities").join(p.file_name().unwrap())).unwrap();
    }
    let (_gw, srv) = Gateway::serve(Opts {
        policy_dir: dir.clone(),
        extra_toml: METRICS.into(),
        ..Opts::default()
    });
    let addr = metrics_addr(&srv);
    let down = ready_becomes(&addr, 503, Duration::ZERO);
    assert_eq!(down["failed"], serde_json::json!(["crl"]), "{down}");
    let detail = down["checks"]["crl"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("aa-moj") && detail.contains("issuing-stale.crl.pem"),
        "{down}"
    );
    let s = scrape(&addr);
    let stale_secs = s
        .iter()
        .find(|(k, _)| {
            k.starts_with("emla_crl_next_update_seconds{") && k.contains("issuing-stale")
        })
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no gauge for the stale CRL: {s:#?}"));
    assert!(
        stale_secs < 0.0,
        "a stale CRL's seconds to nextUpdate: {stale_secs}"
    );

    let aa = dir.join("authorities/aa-moj.toml");
    let text = std::fs::read_to_string(&aa).unwrap();
    std::fs::write(
        &aa,
        text.replace("issuing-stale.crl.pem", "issuing.crl.pem"),
    )
    .unwrap();
    srv.signal("HUP");
    let up = ready_becomes(&addr, 200, Duration::from_secs(10));
    assert_eq!(up["checks"]["crl"]["ok"], true, "{up}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_logs_carry_the_emla_id_reason_and_authority() {
    let (_gw, srv) = Gateway::serve(Opts {
        top_extra: "log_format = \"json\"\n".into(),
        ..Opts::default()
    });
    let (r, t) = send(srv.port, ALICE, &[BOB], &alice_to_bob(Tool::SmimeDetached));
    assert_eq!(r.code, 250, "{t}");
    let id = r.text().rsplit(' ').next().unwrap().to_owned();
    let impostor = mail(Tool::SmimeDetached, "xx", "impostor", ALICE, &[BOB]);
    assert_eq!(send(srv.port, ALICE, &[BOB], &impostor).0.code, 550);

    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events: Vec<serde_json::Value> = srv
            .stderr()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect();
        let decisions = events
            .iter()
            .filter(|e| e["message"] == "decision recorded")
            .count();
        if decisions == 2 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let decided: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "decision recorded")
        .collect();
    assert_eq!(decided.len(), 2, "{events:#?}");
    let accepted = decided.iter().find(|e| e["emla_id"] == id.as_str());
    let accepted = accepted.unwrap_or_else(|| panic!("no event for {id}: {decided:#?}"));
    assert_eq!(accepted["reason"], "ok");
    assert_eq!(accepted["authority"], "aa-moj");
    assert_eq!(accepted["level"], "INFO");
    let refused = decided
        .iter()
        .find(|e| e["emla_id"] != id.as_str())
        .unwrap();
    assert_ne!(refused["reason"], "ok", "{refused}");
    assert!(refused["emla_id"].as_str().is_some_and(|s| !s.is_empty()));
}
