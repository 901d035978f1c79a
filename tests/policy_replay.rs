//! End-to-end tests of `emla policy replay`: a gateway records a mix of
//! traffic, then candidate policies are replayed against it; each edit
//! finds exactly the messages it affects.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::{Path, PathBuf};

use smtp::changed_ids;
use support::{mail, pki, Tool, ALICE, BEA, BOB};

/// The recorded mix: two accepted messages (one to two recipients), one
/// refused by a route at the end of DATA (body not kept), one with a broken
/// signature (body not kept).
struct Recorded {
    gw: smtp::Gateway,
    accepted: Vec<String>,
    two_recipients: String,
}

fn record() -> Recorded {
    let gw = smtp::Gateway::new(smtp::Opts::default());
    let srv = gw.start();
    let mut accepted = Vec::new();
    let (r, t) = smtp::send(
        srv.port,
        ALICE,
        &[BOB],
        &mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[BOB]),
    );
    accepted.push(r.accepted_id().unwrap_or_else(|| panic!("{t}")));
    let (r, t) = smtp::send(
        srv.port,
        ALICE,
        &[BOB, BEA],
        &mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[BOB, BEA]),
    );
    let two_recipients = r.accepted_id().unwrap_or_else(|| panic!("{t}"));
    accepted.push(two_recipients.clone());
    let internal = "clerk@justice.aa.example";
    // From the null reverse-path, From: names the sender and the route is
    // judged at the end of DATA: recorded, refused, body not kept.
    let (r, t) = smtp::send(
        srv.port,
        "",
        &[internal],
        &mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[internal]),
    );
    assert!(r.code >= 500 && r.text().contains("route-denied"), "{t}");
    let broken =
        support::flip_signature_bit(&mail(Tool::SmimeDetached, "aa", "alice", ALICE, &[BOB]));
    let (r, t) = smtp::send(srv.port, ALICE, &[BOB], &broken);
    assert!(r.code >= 500, "{t}");
    drop(srv);
    Recorded {
        gw,
        accepted,
        two_recipients,
    }
}

/// A copy of the test policy with `edits` (file, text, replacement).
fn candidate(name: &str, edits: &[(&str, &str, &str)]) -> PathBuf {
    support::policy_variant(&pki().policy(), &format!("replay-{name}"), edits)
}

fn replay(rec: &Recorded, policy: &Path) -> (i32, serde_json::Value) {
    smtp::policy_replay_json(&rec.gw.config, policy)
}

#[test]
fn each_edit_finds_exactly_the_messages_it_affects() {
    let rec = record();

    // The same policy: nothing changes; the broken message cannot be
    // judged again (its body was not kept), the route refusal can.
    let (code, v) = replay(&rec, &candidate("same", &[]));
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["judged"], 3, "{v}");
    assert_eq!(v["envelope_only"], 1, "{v}");
    assert_eq!(v["not_rejudged"], 1, "{v}");
    assert_eq!(changed_ids(&v), Vec::<String>::new());

    // Removing the route: both accepted messages would be refused.
    let no_route = candidate(
        "no-route",
        &[(
            "routes.toml",
            "name = \"aa-to-bb\"\nfrom = \"authority:aa-moj\"",
            "name = \"aa-to-bb\"\nfrom = \"nobody@justice.aa.example\"",
        )],
    );
    let (code, v) = replay(&rec, &no_route);
    assert_eq!(code, 1, "{v}");
    assert_eq!(changed_ids(&v), rec.accepted);
    let c = &v["changes"][0];
    assert_eq!(c["old"]["verdict"], "accept");
    assert_eq!(c["new"]["verdict"], "reject");
    assert_eq!(c["new"]["reason"], "route-denied");
    assert_eq!(c["differs"], serde_json::json!(["verdict", "reason"]));
    assert_eq!(c["envelope_only"], false);

    // Revoking AA's anchor (BB's root in its place): the signatures no
    // longer chain.
    let no_anchor = candidate(
        "no-anchor",
        &[(
            "authorities/aa-moj.toml",
            "trust_anchors = [\"../certs/aa/root.pem\"]",
            "trust_anchors = [\"../certs/bb/root.pem\"]",
        )],
    );
    let (code, v) = replay(&rec, &no_anchor);
    assert_eq!(code, 1, "{v}");
    assert_eq!(changed_ids(&v), rec.accepted);
    assert_eq!(v["changes"][1]["new"]["reason"], "untrusted-chain", "{v}");

    // Tightening a limit: only the message to two recipients.
    let one_rcpt = candidate(
        "one-rcpt",
        &[("gateway.toml", "max_recipients = 5", "max_recipients = 1")],
    );
    let (code, v) = replay(&rec, &one_rcpt);
    assert_eq!(code, 1, "{v}");
    assert_eq!(changed_ids(&v), std::slice::from_ref(&rec.two_recipients));
    assert_eq!(v["changes"][0]["new"]["reason"], "too-many-recipients");

    // A new route for internal mail: the refused message, judged on its
    // envelope, would now be relayed, and says so.
    let internal = candidate(
        "internal",
        &[(
            "routes.toml",
            "[[route]]\nname = \"no-internal\"",
            "[[route]]\nname = \"aa-internal\"\nfrom = \"authority:aa-moj\"\nto = \"authority:aa-moj\"\n\
             action = \"relay\"\nlane = \"urgent\"\n\n[[route]]\nname = \"no-internal\"",
        )],
    );
    let (code, out) = smtp::emla_cli(
        &["policy", "replay", internal.to_str().unwrap()],
        &rec.gw.config,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("<> -> clerk@justice.aa.example (envelope only: body not kept)"),
        "{out}"
    );
    assert!(
        out.contains("  reject route-denied -> accept ok\n"),
        "{out}"
    );
    assert!(
        out.contains(": 1 would change (1 judged on the envelope alone, 1 not re-judged"),
        "{out}"
    );

    // A period without those messages; bad flags are usage errors.
    let replay_with = |flag: &str, value: &str| {
        let policy = no_route.to_str().unwrap();
        smtp::emla_cli(&["policy", "replay", policy, flag, value], &rec.gw.config)
    };
    let (code, out) = replay_with("--until", "2020-01-01");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replayed 0 message(s)"), "{out}");
    let (code, out) = replay_with("--since", "7y");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("expected a number and a unit"), "{out}");
}
