//! End-to-end tests of `emla policy diff`: the real binary on a copy of the
//! sample policy and an edited copy, one test per kind of change, each
//! asserting the exact lines an administrator reads and the exit code.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The sample policy twice (`old/`, `new/`) beside the sample certificates
/// it names (`../certs/sample/...`).
struct Pair {
    _tmp: TempDir,
    root: PathBuf,
}

impl Pair {
    fn new() -> Pair {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().to_path_buf();
        copy_dir(&repo().join("certs/sample"), &root.join("certs/sample"));
        copy_dir(&repo().join("policy"), &root.join("old"));
        copy_dir(&repo().join("policy"), &root.join("new"));
        Pair { _tmp: tmp, root }
    }

    /// Replaces `from` by `to` in the new side's `file`, which must hold it.
    fn edit(&self, file: &str, from: &str, to: &str) -> &Pair {
        let path = self.root.join("new").join(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} does not contain {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
        self
    }

    fn diff(&self, extra: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_emla"))
            .args(["policy", "diff", "old", "new"])
            .args(extra)
            .current_dir(&self.root)
            .output()
            .expect("run emla");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// The lines of a diff that must find changes (exit 1).
    fn changes(&self) -> Vec<String> {
        let (code, out, err) = self.diff(&[]);
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        out.lines().map(str::to_owned).collect()
    }
}

/// Asserts `line` starts with `start` and contains each of `more`.
fn assert_line(line: &str, start: &str, more: &[&str]) {
    assert!(line.starts_with(start), "{line}");
    for m in more {
        assert!(line.contains(m), "{m:?} in {line}");
    }
}

/// Subject (as the gateway writes DNs) and SHA-256 of a sample certificate.
fn sample_cert(rel: &str) -> String {
    let pem = fs::read(repo().join("certs/sample").join(rel)).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    hex::encode(Sha256::digest(&der))
}

#[test]
fn identical_policies_exit_0() {
    let (code, out, err) = Pair::new().diff(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "");
    assert!(err.ends_with(": 0 change(s)\n"), "{err}");
}

#[test]
fn settings() {
    let p = Pair::new();
    p.edit(
        "gateway.toml",
        "max_message_size = 26214400",
        "max_message_size = 10485760",
    )
    .edit("gateway.toml", "crl = \"hard-fail\"", "crl = \"soft-fail\"")
    .edit(
        "gateway.toml",
        "hostname = \"emla.example.org\"",
        "hostname = \"gw.example.org\"",
    );
    assert_eq!(
        p.changes(),
        [
            "[gateway] hostname: emla.example.org -> gw.example.org",
            // postmaster@HOSTNAME unless set: the edit changes it too.
            "[gateway] postmaster: postmaster@emla.example.org -> postmaster@gw.example.org",
            "[limits] max_message_size: 26214400 -> 10485760",
            "[limits] crl: hard-fail -> soft-fail",
        ]
    );
}

#[test]
fn authority_added_and_removed() {
    let p = Pair::new();
    fs::rename(
        p.root.join("new/authorities/bb-mfa.toml"),
        p.root.join("old-bb-mfa.toml"),
    )
    .unwrap();
    // Routes naming the removed authority would not load: drop them.
    let routes = p.root.join("new/routes.toml");
    let text = fs::read_to_string(&routes).unwrap();
    let kept: Vec<&str> = text
        .split("[[route]]")
        .filter(|r| !r.contains("bb-mfa"))
        .collect();
    fs::write(&routes, kept.join("[[route]]")).unwrap();
    let lines = p.changes();
    assert_eq!(
        lines[0],
        "authority bb-mfa removed (was: BB, \"Ministry of Foreign Affairs of BB\", \
         domains mfa.bb.example, next hop smtp://mx.mfa.bb.example:25 (tls pinned \
         ac207c2fdf6cae4a6ed8ffac1a898f884c0d52e06489e2fdd23ea73aa96d6608))",
        "{lines:#?}"
    );
    assert!(lines[1..].iter().all(|l| l.starts_with("route ")
        && l.contains(" removed (was: at position ")
        && l.contains("authority:bb-mfa")));

    // And back: the same authority, added.
    let (code, out, _) = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(["policy", "diff", "new", "old"])
        .current_dir(&p.root)
        .output()
        .map(|o| {
            (
                o.status.code().unwrap(),
                String::from_utf8(o.stdout).unwrap(),
                o.stderr,
            )
        })
        .unwrap();
    assert_eq!(code, 1);
    assert!(
        out.starts_with("authority bb-mfa added: BB, \"Ministry of Foreign Affairs of BB\""),
        "{out}"
    );
}

#[test]
fn domains_next_hop_ocsp_and_receipts() {
    let p = Pair::new();
    p.edit(
        "authorities/aa-moj.toml",
        "domains = [\"justice.aa.example\"]",
        "domains = [\"mlat.aa.example\"]\nreceipts = [\"acceptance\", \"failure\"]\n\
         rejection_notices_per_hour = 5",
    )
    .edit(
        "authorities/aa-moj.toml",
        "ocsp = \"fallback\"",
        "ocsp = \"prefer\"",
    )
    .edit(
        "authorities/aa-moj.toml",
        "url = \"smtp://mx.justice.aa.example:25\"\ntls = \"required\"",
        "url = \"smtp://mx2.justice.aa.example:587\"\ntls = \"opportunistic\"",
    );
    // The route for the old domain's address no longer matches anything
    // valid; keep it pointing at the new domain, and the duty address too.
    p.edit(
        "routes.toml",
        "from = \"urgent@justice.aa.example\"",
        "from = \"urgent@mlat.aa.example\"",
    )
    .edit(
        "authorities/aa-moj.toml",
        "duty = \"duty@justice.aa.example\"",
        "duty = \"duty@mlat.aa.example\"",
    );
    assert_eq!(
        p.changes(),
        [
            "authority aa-moj: next_hop: smtp://mx.justice.aa.example:25 (tls required) -> \
             smtp://mx2.justice.aa.example:587 (tls opportunistic)",
            "authority aa-moj: ocsp: fallback -> prefer",
            "authority aa-moj: receipts: acceptance, delivery, failure, delay -> acceptance, failure",
            "authority aa-moj: rejection_notices_per_hour: 20 -> 5",
            "authority aa-moj: duty: duty@justice.aa.example -> duty@mlat.aa.example",
            "authority aa-moj: domain removed: justice.aa.example",
            "authority aa-moj: domain added: mlat.aa.example",
            "route \"aa-urgent-to-bb-central\": from: urgent@justice.aa.example -> urgent@mlat.aa.example",
        ]
    );
}

#[test]
fn anchors_by_fingerprint_and_crl_sources() {
    let p = Pair::new();
    p.edit(
        "authorities/aa-moj.toml",
        "trust_anchors = [\"../certs/sample/aa-moj/root.pem\"]",
        "trust_anchors = [\"../certs/sample/aa-moj/root.pem\", \"../certs/sample/bb-moj/root.pem\"]",
    )
    .edit(
        "authorities/aa-moj.toml",
        ", \"../certs/sample/aa-moj/issuing.crl.pem\"]",
        "]\ncrl_urls = [\"http://crl.justice.aa.example/issuing.crl\"]",
    );
    let lines = p.changes();
    let bb_root = sample_cert("bb-moj/root.pem");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(
        lines[0],
        format!(
            "authority aa-moj: trust anchor added: CN=Ministry of Justice of BB Root CA,\
             O=Ministry of Justice of BB,C=BB (SHA-256 {bb_root})"
        )
    );
    assert_eq!(
        lines[1],
        "authority aa-moj: crl_url added: http://crl.justice.aa.example/issuing.crl"
    );
    assert_line(
        &lines[2],
        "authority aa-moj: crl file removed: ../certs/sample/aa-moj/issuing.crl.pem \
         (issuer CN=Ministry of Justice of AA Issuing CA,",
        &[],
    );
}

#[test]
fn a_crl_replaced_under_the_same_name_is_a_change() {
    let p = Pair::new();
    // Both sides name `crl.pem`; the new side's file holds another CRL.
    let sample = p.root.join("certs/sample/aa-moj");
    fs::copy(sample.join("issuing.crl.pem"), p.root.join("old/crl.pem")).unwrap();
    fs::copy(sample.join("root.crl.pem"), p.root.join("new/crl.pem")).unwrap();
    let name = "\"../certs/sample/aa-moj/issuing.crl.pem\"";
    for side in ["old", "new"] {
        let path = p.root.join(side).join("authorities/aa-moj.toml");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace(name, "\"crl.pem\"")).unwrap();
    }
    let lines = p.changes();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line(
        &lines[0],
        "authority aa-moj: crl file: crl.pem (issuer CN=Ministry of Justice of AA Issuing CA,",
        &[" -> crl.pem (issuer CN=Ministry of Justice of AA Root CA,"],
    );
}

#[test]
fn routes_added_removed_changed_and_moved() {
    let p = Pair::new();
    let routes = p.root.join("new/routes.toml");
    let text = fs::read_to_string(&routes).unwrap();
    let (head, rest) = text.split_once("[[route]]").unwrap();
    let mut blocks: Vec<String> = rest.split("[[route]]").map(str::to_owned).collect();
    // The urgent route goes last (moved), the central one is dropped, one
    // is new.
    let at = |blocks: &[String], name: &str| {
        blocks
            .iter()
            .position(|b| b.contains(&format!("name = \"{name}\"")))
            .unwrap()
    };
    let urgent = blocks.remove(at(&blocks, "aa-urgent-to-bb-central"));
    let dropped = blocks.remove(at(&blocks, "aa-central-to-bb-central"));
    assert!(dropped.contains("aa-central-to-bb-central"), "{dropped}");
    blocks.push(urgent);
    blocks.insert(
        0,
        "\nname = \"aa-urgent-to-bb-diplomatic-refused\"\nfrom = \"urgent@justice.aa.example\"\n\
         to = \"authority:bb-mfa\"\naction = \"reject\"\nreason = \"through the MFA only\"\n\n"
            .to_owned(),
    );
    fs::write(
        &routes,
        format!("{head}[[route]]{}", blocks.join("[[route]]")),
    )
    .unwrap();
    p.edit(
        "routes.toml",
        "name = \"bb-central-to-aa-central\"\nfrom = \"authority:bb-moj\"",
        "name = \"bb-central-to-aa-central\"\nfrom = \"domain:justice.bb.example\"",
    );
    let lines = p.changes();
    assert_eq!(
        lines[0],
        "route \"aa-central-to-bb-central\" removed (was: at position 4: from authority:aa-moj \
         to authority:bb-moj, relay)",
        "{lines:#?}"
    );
    assert_eq!(
        lines[1],
        "route \"aa-urgent-to-bb-diplomatic-refused\" added: at position 1: from \
         urgent@justice.aa.example to authority:bb-mfa, reject (\"through the MFA only\")"
    );
    assert!(
        lines.contains(
            &"route \"bb-central-to-aa-central\": from: authority:bb-moj -> domain:justice.bb.example"
                .to_owned()
        ),
        "{lines:#?}"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("route \"aa-urgent-to-bb-central\" moved: position 3 -> position "),
        "{lines:#?}"
    );
    assert!(last.ends_with(" (first match wins)"));
}

#[test]
fn json_names_section_subject_and_values() {
    let p = Pair::new();
    p.edit("gateway.toml", "max_recipients = 50", "max_recipients = 20");
    let (code, out, _) = p.diff(&["--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["old"]["version"].as_str().unwrap().len(), 64);
    assert_ne!(v["old"]["version"], v["new"]["version"]);
    assert_eq!(
        v["changes"],
        serde_json::json!([{
            "section": "limits",
            "subject": "max_recipients",
            "action": "changed",
            "old": "50",
            "new": "20",
        }])
    );
}

#[test]
fn a_policy_that_does_not_load_exits_2() {
    let p = Pair::new();
    p.edit(
        "routes.toml",
        "to = \"authority:bb-moj\"",
        "to = \"authority:nobody\"",
    );
    let (code, out, err) = p.diff(&[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("routes.toml:"), "{err}");
    assert!(err.contains("nobody"), "{err}");
    assert!(err.contains("run `emla policy check new`"), "{err}");
}

#[test]
fn kinds_and_the_kinds_of_a_route() {
    let p = Pair::new();
    p.edit(
        "gateway.toml",
        "[[kind]]\nid = \"mla-response\"\nname = \"Answer to a request for mutual legal assistance\"\n\
         header = \"X-MLA-Type\"\n\n",
        "",
    )
    .edit(
        "gateway.toml",
        "header = \"X-MLA-Type\"\nlane = \"urgent\"",
        "header = \"X-MLA-Type\"\nlane = \"normal\"",
    )
    .edit("gateway.toml", "unknown = \"refuse\"", "unknown = \"no-kind\"")
    .edit(
        "routes.toml",
        "to = \"authority:bb-mfa\"\nkind = [\"extradition-request\"]",
        "to = \"authority:bb-mfa\"\nkind = [\"extradition-request\", \"provisional-arrest\"]",
    );
    assert_eq!(
        p.changes(),
        [
            "[kinds] unknown: refuse -> no-kind",
            "kind mla-response removed (was: name Answer to a request for mutual legal assistance, \
             header X-MLA-Type, values mla-response)",
            "kind provisional-arrest: lane: urgent -> normal",
            "route \"aa-extradition-to-bb-diplomatic\": kind: extradition-request -> \
             extradition-request, provisional-arrest",
        ]
    );
}
