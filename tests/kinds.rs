//! Request kinds end to end (issue #13): `emla serve` with a policy whose
//! routes match on `kind`, real signed mail declaring its kind in the signed
//! entity (or outside it), then the SMTP replies, `emla audit search
//! --kind` and `emla verify --json`.
//!
//! The policy is the test policy plus BB's ministry of foreign affairs
//! (`bb-mfa`, domain `mfa.bb.example`, under BB's CA) and two kinds:
//! extradition requests go from AA's central authority to BB only through
//! the MFA; MLA requests (and mail of no kind) central to central.

#[path = "support/sink.rs"]
mod sink;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use sink::*;
use smtp::*;
use support::*;

const ENVOY: &str = "envoy@mfa.bb.example";
const MFA_HOP: &str = "127.0.0.1:2727";
const DIPLOMATIC_REASON: &str = "extradition requests to BB go through the diplomatic channel";

const KINDS: &str = r#"
[[kind]]
id = "mla-request"
header = "X-MLA-Type"

[[kind]]
id = "extradition-request"
header = "X-MLA-Type"
values = ["extradition-request", "extradition"]
"#;

const KIND_ROUTES: &str = r#"[[route]]
name = "extradition-via-mfa"
from = "authority:aa-moj"
to = "authority:bb-mfa"
kind = ["extradition-request"]
action = "relay"

[[route]]
name = "extradition-not-central"
from = "authority:aa-moj"
to = "country:BB"
kind = ["extradition-request"]
action = "reject"
reason = "extradition requests to BB go through the diplomatic channel"

"#;

/// The test policy with `bb-mfa`, the kinds and the kind routes
/// (`gateway_extra` appended to `gateway.toml`), made once per name.
fn kinds_policy(name: &str, gateway_extra: &str) -> PathBuf {
    kinds_policy_on(&pki().policy(), name, gateway_extra)
}

/// [`kinds_policy`] made from the policy directory `base`.
fn kinds_policy_on(base: &Path, name: &str, gateway_extra: &str) -> PathBuf {
    static DIRS: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let made = DIRS.get_or_init(Default::default);
    let mut made = made.lock().unwrap();
    let dir = pki()
        .dir
        .join(format!("policy-kinds-{name}-{}", std::process::id()));
    if made.iter().any(|n| n == name) {
        return dir;
    }
    copy_dir(base, &dir);
    let mfa = std::fs::read_to_string(dir.join("authorities/bb-moj.toml"))
        .unwrap()
        .replace("id = \"bb-moj\"", "id = \"bb-mfa\"")
        .replace("justice.bb.example", "mfa.bb.example")
        .replace("127.0.0.1:2626", MFA_HOP);
    std::fs::write(dir.join("authorities/bb-mfa.toml"), mfa).unwrap();
    let gateway = std::fs::read_to_string(dir.join("gateway.toml")).unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        format!("{gateway}{gateway_extra}{KINDS}"),
    )
    .unwrap();
    let routes = std::fs::read_to_string(dir.join("routes.toml")).unwrap();
    std::fs::write(dir.join("routes.toml"), format!("{KIND_ROUTES}{routes}")).unwrap();
    made.push(name.to_owned());
    dir
}

/// A message from Alice to `to`, signed (openssl smime, detached), whose
/// signed entity starts with `signed_fields` and whose outer header has
/// `outer_fields` (each `Name: value\r\n`).
fn declaring(signed_fields: &str, outer_fields: &str, to: &str) -> Vec<u8> {
    let mut body = signed_fields.as_bytes().to_vec();
    body.extend_from_slice(&numbered_body());
    let mut m = headers(ALICE, &[to]);
    m.extend_from_slice(outer_fields.as_bytes());
    m.extend_from_slice(&sign(Tool::SmimeDetached, "aa", "alice", &body, &[]));
    crlf(&m)
}

/// `emla audit search --kind KIND --json`: the ids found.
fn ids_of_kind(gw: &Gateway, kind: &str) -> Vec<String> {
    let (code, out) = emla_cli(&["audit", "search", "--kind", kind, "--json"], &gw.config);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("no rows in {out}"))
        .iter()
        .map(|r| {
            assert_eq!(r["kind"], kind, "{r}");
            r["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn kinds_route_differently_central_to_central_refused_diplomatic_relayed() {
    let policy = kinds_policy("main", "");
    let (gw, srv, mut c) = Gateway::greeted(Opts {
        policy_dir: policy.clone(),
        ..Opts::default()
    });
    let extradition = declaring("X-MLA-Type: Extradition\r\n", "", ENVOY);

    // Central to central: the route's reason, at the end of DATA (RCPT
    // cannot know the kind yet).
    let r = c.transaction(ALICE, &[BOB], &extradition);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains("5.7.1"), "{}", r.text());
    assert!(
        r.text().contains("extradition-not-central") && r.text().contains(DIPLOMATIC_REASON),
        "{}",
        r.text()
    );

    // The same message through the diplomatic channel is relayed there.
    let r = c.transaction(ALICE, &[ENVOY], &extradition);
    assert_eq!(r.code, 250, "{}", r.text());
    let id = r.accepted_id().expect("accepted id");
    let (code, shown) = emla_cli(&["audit", "show", &id, "--json"], &gw.config);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("\"extradition-via-mfa\""), "{shown}");
    assert!(shown.contains(MFA_HOP), "{shown}");
    assert!(shown.contains("extradition-request"), "{shown}");

    // An MLA request, and mail of no kind, go central to central.
    let mla = declaring("X-MLA-Type: mla-request\r\n", "", BOB);
    let r = c.transaction(ALICE, &[BOB], &mla);
    assert_eq!(r.code, 250, "{}", r.text());
    let mla_id = r.accepted_id().unwrap();
    let r = c.transaction(ALICE, &[BOB], &declaring("", "", BOB));
    assert_eq!(r.code, 250, "{}", r.text());
    // …but not to the MFA: only extradition requests have a route there.
    let r = c.transaction(ALICE, &[ENVOY], &mla);
    assert_eq!(r.code, 550, "{}", r.text());

    // Both extradition requests, the refused one and the relayed one.
    let extraditions = ids_of_kind(&gw, "extradition-request");
    assert_eq!(extraditions.len(), 2, "{extraditions:?}");
    assert!(extraditions.contains(&id), "{extraditions:?}");
    // The MLA request relayed, and the one refused on the way to the MFA.
    let mla = ids_of_kind(&gw, "mla-request");
    assert_eq!(mla.len(), 2, "{mla:?}");
    assert!(mla.contains(&mla_id), "{mla:?}");
    c.quit();
    drop(srv);
    gw.assert_audit_intact();

    // `emla verify --json` names the kind and the route.
    let v = Verify::new(extradition)
        .rcpt(&[ENVOY])
        .policy(policy)
        .run()
        .assert_verdict("ok");
    assert_eq!(v["kind"], "extradition-request", "{v}");
    assert_eq!(v["recipients"][0]["route"], "extradition-via-mfa", "{v}");
    assert_eq!(v["recipients"][0]["next_hop"], MFA_HOP, "{v}");
}

/// The relay delivers what the kind routes decide: BB's ministry of
/// foreign affairs (`bb-mfa`), BB's central authority (`bb-moj`) and AA's
/// (`aa-moj`, where Alice's receipts go) are each a counterpart sink on a
/// loopback port, and the gateway signs receipts.
#[test]
fn the_relay_delivers_an_extradition_request_to_the_mfa_and_nothing_to_bb_central() {
    let (mfa, central, aa) = (Sink::start(&[]), Sink::start(&[]), Sink::start(&[]));
    let policy = kinds_policy_on(&signing_policy(), "relay", "");
    for (authority, hop, sink) in [
        ("bb-mfa", MFA_HOP, &mfa),
        ("bb-moj", "127.0.0.1:2626", &central),
        ("aa-moj", "127.0.0.1:2626", &aa),
    ] {
        let file = policy.join(format!("authorities/{authority}.toml"));
        edit_file(&file, hop, &format!("127.0.0.1:{}", sink.port));
    }
    let (gw, srv, mut c) = Gateway::greeted(Opts {
        policy_dir: policy,
        relay: Some("poll_ms = 100\n".into()),
        ..Opts::default()
    });
    let extradition = declaring("X-MLA-Type: extradition-request\r\n", "", ENVOY);
    let r = c.transaction(ALICE, &[BOB], &extradition);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains(DIPLOMATIC_REASON), "{}", r.text());
    let r = c.transaction(ALICE, &[ENVOY], &extradition);
    let id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", c.transcript));
    // An MLA request central to central, so that BB's central sink is seen
    // taking mail.
    let mla = declaring("X-MLA-Type: mla-request\r\n", "", BOB);
    let r = c.transaction(ALICE, &[BOB], &mla);
    let mla_id = r
        .accepted_id()
        .unwrap_or_else(|| panic!("{}", c.transcript));
    c.quit();

    // Each delivered unchanged behind one Received: field, to its own hop.
    assert_relayed_once(&mfa, &srv, &id, &extradition);
    assert_eq!(mfa.envelope(1)["rcpt_tos"], json!([ENVOY]));
    assert_relayed_once(&central, &srv, &mla_id, &mla);
    assert_eq!(central.envelope(1)["rcpt_tos"], json!([BOB]));

    // Receipts (accepted, then relayed) name the kind; by the time they are
    // all in, still nothing more reached BB's central authority.
    let receipts = delivered_to(&aa, ALICE, 4);
    assert_eq!(receipts.len(), 4, "{}", srv.stderr());
    let about = |msg_id: &str| -> Vec<String> {
        let field = format!("X-Emla-Message-Id: {msg_id}\r\n");
        let of: Vec<_> = receipts
            .iter()
            .filter(|(_, r)| r.contains(&field))
            .collect();
        assert_eq!(of.len(), 2, "{receipts:#?}");
        of.iter().map(|(_, r)| r.clone()).collect()
    };
    for r in about(&id) {
        assert!(r.contains("Request kind:   extradition-request\r\n"), "{r}");
        assert!(
            r.contains("\"request_kind\": \"extradition-request\","),
            "{r}"
        );
        assert!(openssl_verifies(r.as_bytes(), "aa"), "{r}");
    }
    for r in about(&mla_id) {
        assert!(r.contains("\"request_kind\": \"mla-request\","), "{r}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        central.messages().len(),
        1,
        "BB's central authority got more"
    );
    assert_eq!(mfa.messages().len(), 1);
    drop(srv);
    gw.assert_audit_intact();
}

/// Replay over recorded traffic with kinds: an extradition request relayed
/// to the MFA, the same refused central to central (body not kept), an MLA
/// request and a message of no kind, both central to central.
#[test]
fn replay_finds_exactly_the_messages_a_kind_route_or_lane_edit_affects() {
    let policy = kinds_policy("replay", "");
    let (gw, srv, mut c) = Gateway::greeted(Opts {
        policy_dir: policy.clone(),
        ..Opts::default()
    });
    let extradition = declaring("X-MLA-Type: extradition-request\r\n", "", ENVOY);
    let r = c.transaction(ALICE, &[BOB], &extradition);
    assert_eq!(r.code, 550, "{}", r.text());
    let accepted = |c: &mut Client, to: &str, signed_fields: &str| {
        let r = c.transaction(ALICE, &[to], &declaring(signed_fields, "", to));
        r.accepted_id()
            .unwrap_or_else(|| panic!("{}", c.transcript))
    };
    let via_mfa = c
        .transaction(ALICE, &[ENVOY], &extradition)
        .accepted_id()
        .unwrap();
    let mla = accepted(&mut c, BOB, "X-MLA-Type: mla-request\r\n");
    accepted(&mut c, BOB, "");
    c.quit();
    drop(srv);
    let messages = gw.db().messages();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    let refused = messages
        .iter()
        .find(|m| m.verdict == "reject")
        .unwrap()
        .id
        .clone();
    let edited = |name: &str, file: &str, from: &str, to: &str| {
        policy_variant(
            &policy,
            &format!("kinds-replay-{name}"),
            &[(file, from, to)],
        )
    };

    // The same policy: nothing changes.
    let same = policy_variant(&policy, "kinds-replay-same", &[]);
    let (code, v) = policy_replay_json(&gw.config, &same);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["judged"].as_u64(), v["envelope_only"].as_u64()),
        (Some(4), Some(1)),
        "{v}"
    );
    assert_eq!(changed_ids(&v), Vec::<String>::new());

    // Without the route to the MFA, the extradition request relayed there
    // would be refused by the next one; nothing else changes.
    let no_mfa = edited(
        "no-mfa",
        "routes.toml",
        "name = \"extradition-via-mfa\"\nfrom = \"authority:aa-moj\"",
        "name = \"extradition-via-mfa\"\nfrom = \"nobody@justice.aa.example\"",
    );
    let (code, v) = policy_replay_json(&gw.config, &no_mfa);
    assert_eq!(code, 1, "{v}");
    assert_eq!(changed_ids(&v), [via_mfa], "{v}");
    let c = &v["changes"][0];
    assert_eq!(c["kind"], "extradition-request", "{c}");
    assert_eq!(
        (&c["old"]["verdict"], &c["new"]["verdict"]),
        (&json!("accept"), &json!("reject"))
    );
    assert_eq!(
        c["old"]["recipients"][0]["route"], "extradition-via-mfa",
        "{c}"
    );
    assert_eq!(c["old"]["recipients"][0]["next_hop"], MFA_HOP, "{c}");
    assert_eq!(c["old"]["recipients"][0]["lane"], "normal", "{c}");
    assert_eq!(c["new"]["reason"], "route-denied", "{c}");
    assert_eq!(c["differs"], json!(["verdict", "reason"]), "{c}");

    // MLA requests on the urgent lane: only the MLA request, same route.
    let urgent = edited(
        "urgent-mla",
        "gateway.toml",
        "id = \"mla-request\"\nheader = \"X-MLA-Type\"\n",
        "id = \"mla-request\"\nheader = \"X-MLA-Type\"\nlane = \"urgent\"\n",
    );
    let (code, v) = policy_replay_json(&gw.config, &urgent);
    assert_eq!(code, 1, "{v}");
    assert_eq!(changed_ids(&v), [mla], "{v}");
    let c = &v["changes"][0];
    assert_eq!(c["kind"], "mla-request", "{c}");
    assert_eq!(c["differs"], json!(["lane"]), "{c}");
    for (side, lane) in [("old", "normal"), ("new", "urgent")] {
        assert_eq!(c[side]["verdict"], "accept", "{c}");
        assert_eq!(c[side]["recipients"][0]["route"], "aa-to-bb", "{c}");
        assert_eq!(c[side]["recipients"][0]["lane"], lane, "{c}");
    }

    // Without the refusal central to central, the refused request (judged
    // on its envelope and its recorded kind) would go to BB's central
    // authority.
    let central = edited(
        "central",
        "routes.toml",
        "name = \"extradition-not-central\"\nfrom = \"authority:aa-moj\"",
        "name = \"extradition-not-central\"\nfrom = \"nobody@justice.aa.example\"",
    );
    let (code, v) = policy_replay_json(&gw.config, &central);
    assert_eq!(code, 1, "{v}");
    assert_eq!(changed_ids(&v), [refused], "{v}");
    let c = &v["changes"][0];
    assert_eq!(c["envelope_only"], true, "{c}");
    assert_eq!(c["kind"], "extradition-request", "{c}");
    assert_eq!(c["new"]["recipients"][0]["route"], "aa-to-bb", "{c}");
    assert_eq!(c["new"]["verdict"], "accept", "{c}");
}

#[test]
fn a_kind_field_outside_the_signature_is_not_trusted_by_default() {
    let forged = declaring("", "X-MLA-Type: extradition-request\r\n", ENVOY);
    let strict = kinds_policy("strict", "");
    // Not trusted: a message of no kind, which has no route to the MFA…
    let out = Verify::new(forged.clone())
        .rcpt(&[ENVOY])
        .policy(strict.clone())
        .run()
        .assert_verdict("route-denied");
    assert!(out["kind"].is_null(), "{out}");
    // …and goes central to central.
    let out = Verify::new(forged.clone())
        .policy(strict)
        .run()
        .assert_verdict("ok");
    assert!(out["kind"].is_null(), "{out}");
    // With trust_outer_header = true the outer field counts.
    let trusting = kinds_policy("trusting", "\n[kinds]\ntrust_outer_header = true\n");
    let out = Verify::new(forged)
        .rcpt(&[ENVOY])
        .policy(trusting.clone())
        .run()
        .assert_verdict("ok");
    assert_eq!(out["kind"], "extradition-request", "{out}");
    // The signed field wins over the outer one, even when trusted.
    let both = declaring(
        "X-MLA-Type: mla-request\r\n",
        "X-MLA-Type: extradition-request\r\n",
        BOB,
    );
    let out = Verify::new(both)
        .policy(trusting)
        .run()
        .assert_verdict("ok");
    assert_eq!(out["kind"], "mla-request", "{out}");
}

#[test]
fn an_unknown_kind_is_refused_unless_the_policy_says_otherwise() {
    let asylum = declaring("X-MLA-Type: asylum-request\r\n", "", BOB);
    let (gw, srv, mut c) = Gateway::greeted(Opts {
        policy_dir: kinds_policy("unknown", ""),
        ..Opts::default()
    });
    let r = c.transaction(ALICE, &[BOB], &asylum);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains("5.7.0"), "{}", r.text());
    assert!(r.text().contains("asylum-request"), "{}", r.text());
    c.quit();
    drop(srv);
    let (code, out) = emla_cli(
        &["audit", "search", "--reason", "unknown-kind", "--json"],
        &gw.config,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("asylum-request"), "{out}");

    let lenient = kinds_policy("no-kind", "\n[kinds]\nunknown = \"no-kind\"\n");
    let out = Verify::new(asylum)
        .policy(lenient)
        .run()
        .assert_verdict("ok");
    assert!(out["kind"].is_null(), "{out}");
}
