use super::*;

#[test]
fn labels_outside_the_policy_are_folded() {
    let m = Metrics::new();
    m.set_policy("v1", ["aa".to_owned()], ["mx.bb.example".to_owned()]);
    m.decision("ok", Some("aa"), true);
    m.decision("bad-signature", Some("forged-by-sender"), false);
    m.decision("unknown-sender", None, false);
    m.relay_attempt("mx.bb.example", "relayed", "urgent", 0);
    m.relay_attempt("evil.example", "delayed", "normal", 0);
    let text = m.encode();
    for want in [
        r#"emla_decisions_total{reason="ok",authority="aa",verdict="accept"} 1"#,
        r#"emla_decisions_total{reason="bad-signature",authority="other",verdict="reject"} 1"#,
        r#"emla_decisions_total{reason="unknown-sender",authority="none",verdict="reject"} 1"#,
        r#"emla_relay_attempts_total{next_hop="mx.bb.example",outcome="relayed"} 1"#,
        r#"emla_relay_attempts_total{next_hop="other",outcome="delayed"} 1"#,
        r#"emla_delivery_seconds_count{lane="urgent"} 1"#,
        r#"emla_policy_info{version="v1"} 1"#,
        "emla_build_info{version=",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    assert!(!text.contains("forged-by-sender") && !text.contains("evil.example"));
}

#[test]
fn reply_classes_count_final_lines_only() {
    let m = Metrics::new();
    m.smtp_replies(b"250-first\r\n250 last\r\n550 5.7.1 no\r\n");
    m.smtp_replies(b"421 4.3.2 bye\r\n");
    let text = m.encode();
    assert!(
        text.contains(r#"emla_smtp_replies_total{class="2xx"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"emla_smtp_replies_total{class="5xx"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"emla_smtp_replies_total{class="4xx"} 1"#),
        "{text}"
    );
}

#[test]
fn a_new_policy_version_replaces_the_old_one() {
    let m = Metrics::new();
    m.set_policy("v1", [], []);
    m.set_policy("v2", [], []);
    let text = m.encode();
    assert!(
        text.contains(r#"emla_policy_info{version="v2"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"version="v1""#), "{text}");
}

#[test]
fn duty_alerts_count_by_outcome() {
    let m = Metrics::new();
    m.duty_alert("sent");
    m.duty_alert("sent");
    m.duty_alert("suppressed");
    let text = m.encode();
    for want in [
        r#"emla_duty_alerts_total{outcome="sent"} 2"#,
        r#"emla_duty_alerts_total{outcome="suppressed"} 1"#,
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
}
