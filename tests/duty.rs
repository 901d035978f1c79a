//! Duty alerts for the urgent lane (issue #14 item 5, UNTOC art. 18(13)),
//! end to end: `emla serve` relays an urgent-lane request (route
//! `aa-to-bb`, `lane = "urgent"`) to bb-moj, whose next hop is down (a
//! closed loopback port). After `urgent_alert_secs` both authorities' duty
//! officers get one signed alert at the sink that is aa-moj's next hop
//! (bb-moj's duty address is in aa-moj's domain, so its alert can arrive
//! while bb-moj is down); not again on the next attempts nor after a
//! restart. A refused urgent request alerts them too, within the hourly
//! cap (the suppressed ones are audited), and so does one the next hop
//! refuses for good.
//!
//! Requirements: those of `tests/relay.rs` (Python `aiosmtpd`, openssl).

#[path = "support/sink.rs"]
mod sink;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sink::{free_port, header, Sink};
use smtp::*;
use support::*;

const AA_DUTY: &str = "duty@justice.aa.example";
const BB_DUTY: &str = "bb-duty@justice.aa.example";

/// The test policy with aa-to-bb in the urgent lane, aa-moj's next hop at
/// `aa_port` and bb-moj's at `bb_port`, both authorities with a duty
/// address, the gateway signing as aa's postmaster, alerts after 2 s and
/// at most `per_hour` per duty address.
fn urgent_policy(aa_port: u16, bb_port: u16, per_hour: u32) -> PolicyCopy {
    let p = PolicyCopy::new();
    let hop = "url = \"smtp://127.0.0.1:2626\"";
    p.edit(
        "authorities/aa-moj.toml",
        hop,
        &format!("url = \"smtp://127.0.0.1:{aa_port}\""),
    );
    p.edit(
        "authorities/bb-moj.toml",
        hop,
        &format!("url = \"smtp://127.0.0.1:{bb_port}\""),
    );
    // No receipts: the sink holds the alerts alone.
    p.edit(
        "authorities/aa-moj.toml",
        "\ndomains = ",
        &format!("\nreceipts = []\nduty = \"{AA_DUTY}\"\ndomains = "),
    );
    p.edit(
        "authorities/bb-moj.toml",
        "\ndomains = ",
        &format!("\nduty = \"{BB_DUTY}\"\ndomains = "),
    );
    p.edit(
        "routes.toml",
        "to = \"authority:bb-moj\"\naction = \"relay\"\n",
        "to = \"authority:bb-moj\"\naction = \"relay\"\nlane = \"urgent\"\n",
    );
    p.edit(
        "gateway.toml",
        "[gateway]\n",
        "[gateway]\npostmaster = \"postmaster@justice.aa.example\"\n\
         signing_cert = \"../certs/aa/gateway.pem\"\nsigning_key = \"../certs/aa/gateway.key\"\n",
    );
    let gw = p.0.join("gateway.toml");
    let mut text = std::fs::read_to_string(&gw).unwrap();
    text += &format!(
        "\n[relay]\nretry_initial_secs = 1\nretry_max_secs = 1\nconnect_timeout_secs = 2\n\
         urgent_alert_secs = 2\nduty_alerts_per_hour = {per_hour}\n"
    );
    std::fs::write(&gw, text).unwrap();
    p
}

fn relaying(policy: &PolicyCopy) -> Gateway {
    Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        relay: Some("poll_ms = 100\n".into()),
        ..Opts::default()
    })
}

/// The alerts at `sink`: (envelope recipient, message), in arrival order.
fn alerts(sink: &Sink) -> Vec<(String, String)> {
    sink.messages()
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let rcpt = sink.envelope(i + 1)["rcpt_tos"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (rcpt, String::from_utf8_lossy(&m).into_owned())
        })
        .collect()
}

/// Waits up to 20 s for `n` alerts.
fn wait_alerts(sink: &Sink, n: usize, srv: &Server) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = alerts(sink);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} alerts:\n{}",
            got.len(),
            srv.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `duty.alert` records of `gw`'s log.
fn alert_records(gw: &Gateway) -> Vec<(String, Value)> {
    gw.db()
        .audit()
        .into_iter()
        .filter(|a| a.kind == "duty.alert")
        .map(|a| {
            let id = a.message_id.clone().unwrap_or_default();
            (id, serde_json::from_str(&a.data).unwrap())
        })
        .collect()
}

/// Checks that `alerts` are one signed alert of `event` about `id` for
/// each duty address, saying `says`.
fn assert_alerted(alerts: &[(String, String)], id: &str, event: &str, says: &str) {
    let mut to: Vec<&str> = alerts.iter().map(|(r, _)| r.as_str()).collect();
    to.sort();
    assert_eq!(to, [BB_DUTY, AA_DUTY], "{alerts:#?}");
    for (rcpt, m) in alerts {
        assert_eq!(header(m, "X-Emla-Duty-Alert"), Some(event), "{m}");
        assert_eq!(header(m, "Auto-Submitted"), Some("auto-generated"), "{m}");
        assert_eq!(header(m, "X-Emla-Message-Id"), Some(id), "{m}");
        assert_eq!(
            header(m, "To").map(|t| t.contains(rcpt.as_str())),
            Some(true),
            "{m}"
        );
        assert!(header(m, "Subject").is_some_and(|s| s.starts_with("Urgent-lane alert (")));
        for s in [
            says,
            "\"type\": \"duty-alert\"",
            ALICE,
            BOB,
            "UNTOC art. 18(13)",
        ] {
            assert!(m.contains(s), "{s:?} missing:\n{m}");
        }
        assert!(openssl_verifies(m.as_bytes(), "aa"), "signed:\n{m}");
    }
}

#[test]
fn an_urgent_message_to_a_next_hop_that_is_down_alerts_both_duty_officers_once() {
    let sink = Sink::start(&[]);
    let down = free_port();
    let policy = urgent_policy(sink.port, down, 20);
    let gw = relaying(&policy);
    let mut srv = gw.start();
    let sent = Instant::now();
    let (r, t) = send(srv.port, ALICE, &[BOB], &alice_to_bob(Tool::SmimeDetached));
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted:\n{t}"));

    let got = wait_alerts(&sink, 2, &srv);
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "at urgent_alert_secs (2 s), not {waited:?}"
    );
    assert_alerted(&got, &id, "delayed", "delayed since ");
    assert!(
        got[0].1.contains(&format!("127.0.0.1:{down}")),
        "{}",
        got[0].1
    );

    // Later attempts, and attempts after a restart, alert no more.
    std::thread::sleep(Duration::from_secs(3));
    srv.kill();
    let srv = gw.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(alerts(&sink).len(), 2, "once:\n{}", srv.stderr());
    let attempts = gw
        .db()
        .audit()
        .iter()
        .filter(|a| a.kind == "relay.deferred")
        .count();
    assert!(attempts >= 4, "retried meanwhile: {attempts}");
    let records = alert_records(&gw);
    assert_eq!(records.len(), 1, "{records:#?}");
    let (about, data) = &records[0];
    assert_eq!(about, &id);
    assert_eq!(data["event"], "delayed", "{data}");
    assert_eq!(data["next_hop"], format!("127.0.0.1:{down}"), "{data}");
    let sent_to: Vec<&str> = data["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["to"].as_str().unwrap())
        .collect();
    assert_eq!(sent_to, [AA_DUTY, BB_DUTY], "{data}");
    assert_eq!(data["suppressed"], serde_json::json!([]), "{data}");
    gw.assert_audit_intact();
}

#[test]
fn a_refused_urgent_message_alerts_within_the_hourly_cap() {
    let sink = Sink::start(&[]);
    let policy = urgent_policy(sink.port, free_port(), 1);
    let gw = relaying(&policy);
    let srv = gw.start();
    let unsigned = format!("From: {ALICE}\r\nTo: {BOB}\r\nSubject: urgent\r\n\r\nhelp\r\n");
    for _ in 0..2 {
        let (r, t) = send(srv.port, ALICE, &[BOB], unsigned.as_bytes());
        assert!(r.code >= 500, "refused:\n{t}");
    }
    let ids: Vec<String> = gw
        .db()
        .messages()
        .into_iter()
        .filter(|m| m.verdict == "reject")
        .map(|m| m.id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let got = wait_alerts(&sink, 2, &srv);
    assert_alerted(&got, &ids[0], "refused", "refused: unsigned: ");
    // The second refusal is over the cap of 1 an hour: audited, not sent.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(alerts(&sink).len(), 2, "{}", srv.stderr());
    let records = alert_records(&gw);
    assert_eq!(records.len(), 2, "{records:#?}");
    let (about, data) = &records[1];
    assert_eq!(about, &ids[1]);
    assert_eq!(data["event"], "refused", "{data}");
    assert_eq!(data["sent"], serde_json::json!([]), "{data}");
    assert_eq!(data["suppressed"].as_array().unwrap().len(), 2, "{data}");
    gw.assert_audit_intact();
}

#[test]
fn an_urgent_message_the_next_hop_refuses_alerts_as_failed() {
    let sink = Sink::start(&[]);
    let refusing = Sink::start(&["--refuse-rcpt", BOB]);
    let policy = urgent_policy(sink.port, refusing.port, 20);
    let gw = relaying(&policy);
    let srv = gw.start();
    let (r, t) = send(srv.port, ALICE, &[BOB], &alice_to_bob(Tool::SmimeDetached));
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("not accepted:\n{t}"));
    let got = wait_alerts(&sink, 2, &srv);
    assert_alerted(&got, &id, "failed", "failed: ");
    let records = alert_records(&gw);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].1["event"], "failed", "{:#}", records[0].1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(alerts(&sink).len(), 2, "once");
    gw.assert_audit_intact();
}
