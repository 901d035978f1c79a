//! Request kinds end to end (issue #13): `emla serve` with a policy whose
//! routes match on `kind`, real signed mail declaring its kind in the signed
//! entity (or outside it), then the SMTP replies, `emla audit search
//! --kind` and `emla verify --json`.
//!
//! The policy is the test policy plus BB's ministry of foreign affairs
//! (`bb-mfa`, domain `mfa.bb.example`, under BB's CA) and two kinds:
//! extradition requests go from AA's central authority to BB only through
//! the MFA; MLA requests (and mail of no kind) central to central.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::PathBuf;
use std::sync::OnceLock;

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
    static DIRS: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let made = DIRS.get_or_init(Default::default);
    let mut made = made.lock().unwrap();
    let p = pki();
    let dir = p
        .dir
        .join(format!("policy-kinds-{name}-{}", std::process::id()));
    if made.iter().any(|n| n == name) {
        return dir;
    }
    copy_dir(&p.policy(), &dir);
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
