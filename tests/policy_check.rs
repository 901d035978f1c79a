//! End-to-end tests of `emla policy check`: the real binary on policy
//! directories built in a temporary directory, one test per class of
//! problem, each asserting the exact `file:line:col: message` lines.
//!
//! The certificates and CRLs are made once per run with the `openssl` CLI,
//! with fixed validity dates so messages are deterministic; every check runs
//! with `--at 2030-01-01T00:00:00Z`.

#[path = "support/cmd.rs"]
mod cmd;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cmd::run_ok;
use tempfile::TempDir;

const AT: &str = "2030-01-01T00:00:00Z";

/// Makes the test PKI (once per run) and returns its directory.
fn pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy_check_pki");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(PKI_SCRIPT)
                .current_dir(&dir),
        );
        dir
    })
}

/// Shell script making the test PKI in the current directory with `openssl ca`
/// (which, unlike `openssl req -x509`, takes explicit validity dates).
const PKI_SCRIPT: &str = r#"
set -eu
cat > ca.cnf <<'CONF'
[ ca ]
default_ca = d
[ d ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
crlnumber = ./crlnumber
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = p
unique_subject = no
email_in_dn = no
crl_extensions = crl_ext
[ p ]
commonName = supplied
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ ca_nocrl_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign
[ leaf_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
[ crl_ext ]
authorityKeyIdentifier = keyid:always
CONF
mkdir newcerts
: > index.txt
echo 1000 > serial
echo 01 > crlnumber
run() { "$@" 2>err.txt || { cat err.txt >&2; exit 1; }; }
key_csr() {
    run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
    run openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
}
# selfsign NAME CN START END
selfsign() {
    key_csr "$1" "$2"
    run openssl ca -batch -notext -config ca.cnf -selfsign -keyfile "$1.key" -in "$1.csr" \
        -startdate "$3" -enddate "$4" -extensions ca_ext -out "$1.pem"
}
# sign NAME CN ISSUER EXTENSIONS
sign() {
    key_csr "$1" "$2"
    run openssl ca -batch -notext -config ca.cnf -cert "$3.pem" -keyfile "$3.key" -in "$1.csr" \
        -startdate 20200101000000Z -enddate 20991231000000Z -extensions "$4" -out "$1.pem"
}
crl() {
    run openssl ca -batch -config ca.cnf -gencrl -cert "$1.pem" -keyfile "$1.key" -out "$1.crl.pem"
}
selfsign aa-root "AA Root CA" 20200101000000Z 20991231000000Z
sign aa-issuing "AA Issuing CA" aa-root ca_ext
sign aa-clerk "AA Clerk" aa-issuing leaf_ext
selfsign bb-root "BB Root CA" 20200101000000Z 20991231000000Z
selfsign expired "Expired CA" 20200101000000Z 20210101000000Z
selfsign future "Future CA" 20900101000000Z 20950101000000Z
sign aa-nocrl "AA No CRL CA" aa-root ca_nocrl_ext
selfsign aa-root-forged "AA Root CA" 20200101000000Z 20991231000000Z
crl aa-root-forged
# Version 1 certificates: openssl ca writes v1 when it adds no extension.
key_csr v1-root "V1 Root CA"
run openssl ca -batch -notext -config ca.cnf -selfsign -keyfile v1-root.key -in v1-root.csr \
    -startdate 20200101000000Z -enddate 20991231000000Z -out v1-root.pem
key_csr v1-inter "V1 Intermediate CA"
run openssl ca -batch -notext -config ca.cnf -cert aa-root.pem -keyfile aa-root.key -in v1-inter.csr \
    -startdate 20200101000000Z -enddate 20991231000000Z -out v1-inter.pem
crl aa-root
crl aa-issuing
crl aa-nocrl
crl bb-root
"#;

/// A policy directory (`policy/`) with its certificates (`certs/`) in a
/// temporary directory; starts as a valid policy with two authorities.
struct Fixture {
    root: TempDir,
}

/// The policy files the fixture starts with (it has no `gateway.toml`).
const AA_MOJ: &str = include_str!("support/policy_check/aa-moj.toml");
const BB_MOJ: &str = include_str!("support/policy_check/bb-moj.toml");
const ROUTES: &str = include_str!("support/policy_check/routes.toml");

impl Fixture {
    fn new() -> Self {
        let pki = pki();
        let root = tempfile::tempdir().unwrap();
        let certs = root.path().join("certs");
        fs::create_dir_all(certs.join("bb")).unwrap();
        fs::create_dir_all(certs.join("bb-crls")).unwrap();
        for entry in fs::read_dir(pki).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "pem") {
                fs::copy(&path, certs.join(path.file_name().unwrap())).unwrap();
            }
        }
        fs::copy(pki.join("bb-root.pem"), certs.join("bb/root.pem")).unwrap();
        fs::copy(pki.join("bb-root.crl.pem"), certs.join("bb-crls/root.crl")).unwrap();
        let f = Fixture { root };
        f.write("policy/authorities/aa-moj.toml", AA_MOJ);
        f.write("policy/authorities/bb-moj.toml", BB_MOJ);
        f.write("policy/routes.toml", ROUTES);
        f
    }

    /// A new fixture with one `edit`.
    fn edited(rel: &str, from: &str, to: &str) -> Self {
        let f = Fixture::new();
        f.edit(rel, from, to);
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// Replaces the one occurrence of `from` in `rel` with `to`.
    fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = fs::read_to_string(self.path(rel)).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{from:?} in {rel}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Runs `emla policy check policy --at AT` in the fixture; exit code and
    /// standard output.
    fn check(&self) -> (i32, String) {
        self.check_at(AT)
    }

    fn check_at(&self, at: &str) -> (i32, String) {
        run(self.root.path(), &["policy", "check", "policy", "--at", at])
    }

    /// Asserts the check passes (exit 0); returns its standard output.
    fn passes(&self) -> String {
        let (code, stdout) = self.check();
        assert_eq!(code, 0, "{stdout}");
        stdout
    }

    /// Asserts that the check fails with exactly these problems.
    fn assert_problems(&self, expected: &[&str]) {
        self.assert_problems_at(AT, expected);
    }

    fn assert_problems_at(&self, at: &str, expected: &[&str]) {
        let (code, stdout) = self.check_at(at);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, expected);
        assert_eq!(code, 1);
    }
}

/// Asserts a check passed (exit 0) with a report that starts with `ok`.
fn assert_passes((code, stdout): (i32, String), ok: &str) {
    assert!(stdout.starts_with(ok), "{stdout}");
    assert_eq!(code, 0, "{stdout}");
}

fn run(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run emla");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn sample_policy_passes() {
    assert_passes(
        run(repo(), &["policy", "check", "policy"]),
        "policy: ok (3 authorities, 8 routes, 5 kinds, version ",
    );
}

/// The policy of the Docker Compose deployment (deploy/policy, with the
/// sample certificates through the deploy/certs link) loads, and every next
/// hop is the compose file's counterpart service.
#[test]
fn deploy_policy_passes() {
    let repo = repo();
    assert_passes(
        run(repo, &["policy", "check", "deploy/policy"]),
        "deploy/policy: ok (3 authorities, 6 routes, 0 kinds, version ",
    );
    let compose = fs::read_to_string(repo.join("docker-compose.yml")).unwrap();
    assert!(
        compose.contains("\n  counterpart:\n"),
        "no counterpart service"
    );
    for entry in fs::read_dir(repo.join("deploy/policy/authorities")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("url = \"smtp://counterpart:1025\""),
            "{}: next hop is not the counterpart service",
            path.display()
        );
    }
}

#[test]
fn fixture_policy_passes() {
    let f = Fixture::new();
    assert_passes(
        f.check(),
        "policy: ok (2 authorities, 2 routes, 0 kinds, version ",
    );
}

#[test]
fn version_covers_referenced_files() {
    let f = Fixture::new();
    let before = f.passes();
    let crl = f.path("certs/aa-root.crl.pem");
    let mut bytes = fs::read(&crl).unwrap();
    bytes.push(b'\n');
    fs::write(&crl, bytes).unwrap();
    let after = f.passes();
    assert_ne!(before, after);
}

#[test]
fn unparsable_certificate() {
    let f = Fixture::new();
    f.write(
        "certs/broken.pem",
        "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
    );
    f.edit(
        "policy/authorities/aa-moj.toml",
        "aa-root.pem\"]",
        "aa-root.pem\", \"../certs/broken.pem\"]",
    );
    let (code, stdout) = f.check();
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with(
            "policy/authorities/aa-moj.toml:5:42: cannot parse certificate in \"../certs/broken.pem\": "
        ),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

/// A self-signed version 1 certificate (no basicConstraints) may be a
/// trust anchor: the check passes (exit 0) with a note.
#[test]
fn version_1_anchor_is_a_note() {
    let f = Fixture::edited(
        "policy/authorities/bb-moj.toml",
        "[\"../certs/bb\"]\ncrls",
        "[\"../certs/bb\", \"../certs/v1-root.pem\"]\ncrls",
    );
    let note = "policy/authorities/bb-moj.toml:5:33: certificate \"CN=V1 Root CA\" in \
                \"../certs/v1-root.pem\" is a self-signed version 1 certificate (no \
                basicConstraints); it is accepted as a trust anchor only, never as an intermediate";
    let (code, stdout) = f.check();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("policy: ok (2 authorities, 2 routes, 0 kinds, version "),
        "{stdout}"
    );
    assert_eq!(lines[1], format!("note: {note}"));
    let (code, stdout) = run(
        f.path("").as_path(),
        &["policy", "check", "policy", "--at", AT, "--json"],
    );
    assert_eq!(code, 0, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["notes"],
        serde_json::json!([{
            "file": "policy/authorities/bb-moj.toml",
            "line": 5,
            "col": 33,
            "message": note.split_once("33: ").unwrap().1,
        }]),
        "{v}"
    );
    // A policy without such an anchor has an empty notes array.
    let f = Fixture::new();
    let (_, stdout) = run(
        f.path("").as_path(),
        &["policy", "check", "policy", "--at", AT, "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["notes"], serde_json::json!([]), "{v}");
}

/// A version 1 certificate is never an intermediate, nor an anchor when it
/// is not self-signed.
#[test]
fn require_email_eku_must_be_a_boolean() {
    let f = Fixture::new();
    f.write("policy/gateway.toml", "[limits]\nrequire_email_eku = 1\n");
    f.assert_problems(&[
        "policy/gateway.toml:2:21: key \"require_email_eku\" in [limits] must be a boolean \
         (true or false), found integer",
    ]);
    f.write(
        "policy/gateway.toml",
        "[limits]\nrequire_email_eku = true\n",
    );
    assert_eq!(f.check().0, 0);
}

#[test]
fn every_ca_is_judged_at_the_given_time() {
    let f = Fixture::new();
    f.assert_problems_at(
        "2100-01-01T00:00:00Z",
        &[
            "policy/authorities/aa-moj.toml:5:18: certificate \"CN=AA Root CA\" in \
             \"../certs/aa-root.pem\" expired at 2099-12-31T00:00:00Z",
            "policy/authorities/aa-moj.toml:6:18: certificate \"CN=AA Issuing CA\" in \
             \"../certs/aa-issuing.pem\" expired at 2099-12-31T00:00:00Z",
            "policy/authorities/bb-moj.toml:5:18: certificate \"CN=BB Root CA\" in \
             \"../certs/bb/root.pem\" expired at 2099-12-31T00:00:00Z",
        ],
    );
}

#[test]
fn crl_of_an_unconfigured_issuer_is_accepted() {
    // Its issuer may be an issuing CA that travels in messages: it is
    // checked against the issuer of each path at use.
    let f = Fixture::edited(
        "policy/authorities/aa-moj.toml",
        "../certs/aa-root.crl.pem",
        "../certs/bb-root.crl.pem",
    );
    let stdout = f.passes();
    assert!(
        stdout.contains(
            "note: policy/authorities/aa-moj.toml:7:9: CRL in \"../certs/bb-root.crl.pem\" is issued \
             by \"CN=BB Root CA\", which is not a CA configured for authority \"aa-moj\""
        ),
        "{stdout}"
    );
    let (code, json) = run(
        f.root.path(),
        &["policy", "check", "policy", "--at", AT, "--json"],
    );
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let notes = v["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{v:#}");
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap()
            .contains("CN=BB Root CA"),
        "{v:#}"
    );
}

#[test]
fn duplicate_authority_id() {
    let f = Fixture::new();
    f.write(
        "policy/authorities/cc-moj.toml",
        &AA_MOJ.replace("justice.aa.example", "justice.cc.example"),
    );
    f.assert_problems(&[
        "policy/authorities/cc-moj.toml:1:6: duplicate authority id \"aa-moj\" \
         (already used in policy/authorities/aa-moj.toml)",
    ]);
}

#[test]
fn unreachable_route() {
    let f = Fixture::new();
    f.write(
        "policy/routes.toml",
        &format!(
            "{ROUTES}\n[[route]]\nname = \"aa-to-bb-moj\"\nfrom = \"domain:justice.aa.example\"\n\
             to = \"authority:bb-moj\"\naction = \"reject\"\nreason = \"never reached\"\n"
        ),
    );
    f.assert_problems(&[
        "policy/routes.toml:15:8: route \"aa-to-bb-moj\" is unreachable: route \"aa-to-bb\" \
         (line 1) already matches every sender, recipient and kind it matches",
    ]);
}

#[test]
fn kinds_in_routes_are_checked() {
    let f = Fixture::new();
    let gateway = std::fs::read_to_string(f.path("policy/gateway.toml")).unwrap_or_default();
    f.write(
        "policy/gateway.toml",
        &format!("{gateway}\n[[kind]]\nid = \"extradition-request\"\nheader = \"X-MLA-Type\"\n"),
    );
    // A route for one kind does not shadow a later one for every kind;
    // one naming an undeclared kind is located.
    f.write(
        "policy/routes.toml",
        &format!(
            "[[route]]\nname = \"extradition\"\nfrom = \"*\"\nto = \"*\"\n\
             kind = [\"extradition-request\", \"asylum\"]\naction = \"reject\"\nreason = \"no\"\n\n\
             {ROUTES}"
        ),
    );
    f.assert_problems(&[
        "policy/routes.toml:5:32: route \"extradition\" refers to unknown kind \"asylum\" \
         (gateway.toml declares: extradition-request)",
    ]);
    // A later route for the same kind, from and to no more than the first
    // matches, is unreachable; the same route for every kind is not.
    let extradition = "[[route]]\nname = \"extradition\"\nfrom = \"*\"\nto = \"*\"\n\
                       kind = [\"extradition-request\"]\naction = \"reject\"\nreason = \"no\"\n\n";
    let later = |kind: &str| {
        format!(
            "{extradition}{ROUTES}\n[[route]]\nname = \"aa-internal\"\nfrom = \"authority:aa-moj\"\n\
             to = \"authority:aa-moj\"\n{kind}action = \"relay\"\n"
        )
    };
    f.write(
        "policy/routes.toml",
        &later("kind = [\"extradition-request\"]\n"),
    );
    f.assert_problems(&[
        "policy/routes.toml:23:8: route \"aa-internal\" is unreachable: route \"extradition\" \
         (line 1) already matches every sender, recipient and kind it matches",
    ]);
    f.write("policy/routes.toml", &later(""));
    assert_passes(
        f.check(),
        "policy: ok (2 authorities, 4 routes, 1 kinds, version ",
    );
    let (code, stdout) = run(
        f.path("").as_path(),
        &["policy", "check", "policy", "--at", AT, "--json"],
    );
    assert_eq!(code, 0, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((&v["routes"], &v["kinds"]), (&4.into(), &1.into()), "{v}");
}

#[test]
fn pin_without_pinned() {
    let f = Fixture::new();
    f.edit(
        "policy/authorities/bb-moj.toml",
        "tls = \"opportunistic\"\n",
        &format!(
            "tls = \"opportunistic\"\npin_sha256 = \"{}\"\n",
            "ab".repeat(32)
        ),
    );
    f.assert_problems(&[
        "policy/authorities/bb-moj.toml:11:14: pin_sha256 is only allowed with tls = \"pinned\"",
    ]);
}

#[test]
fn rejection_notice_limit_is_checked() {
    let f = Fixture::new();
    let (file, key) = (
        "policy/authorities/aa-moj.toml",
        "receipts = [\"rejection\"]\n",
    );
    f.edit(
        file,
        "\n[next_hop]",
        &format!("{key}rejection_notices_per_hour = 0\n\n[next_hop]"),
    );
    f.assert_problems(&[
        "policy/authorities/aa-moj.toml:9:30: rejection_notices_per_hour must be from 1 to \
         10000, found 0 (to send none, leave \"rejection\" out of receipts)",
    ]);
    f.edit(
        file,
        "rejection_notices_per_hour = 0",
        "rejection_notices_per_hour = \"20\"",
    );
    f.assert_problems(&[
        "policy/authorities/aa-moj.toml:9:30: key \"rejection_notices_per_hour\" must be an \
         integer, found string",
    ]);
    f.edit(
        file,
        "rejection_notices_per_hour = \"20\"",
        "rejection_notices_per_hour = 3",
    );
    f.passes();
}

#[test]
fn duty_addresses_are_checked() {
    let f = Fixture::new();
    let file = "policy/authorities/aa-moj.toml";
    f.edit(
        file,
        "\n[next_hop]",
        "duty = \"Duty <duty@justice.aa.example>\"\n\n[next_hop]",
    );
    f.assert_problems(&[
        "policy/authorities/aa-moj.toml:8:8: invalid duty address \"Duty \
         <duty@justice.aa.example>\": expected an address local@domain",
    ]);
    f.edit(
        file,
        "\"Duty <duty@justice.aa.example>\"",
        "\"duty@elsewhere.example\"",
    );
    f.assert_problems(&[
        "policy/authorities/aa-moj.toml:8:8: duty address \"duty@elsewhere.example\" is in \
         no authority's domain: the gateway could not relay its alerts",
    ]);
    // Another authority's domain relays it.
    f.edit(file, "duty@elsewhere.example", "duty@justice.bb.example");
    f.passes();
}

/// A change to the fixture.
enum Change {
    /// Writes the file (relative to the fixture) with this text.
    Write(&'static str, &'static str),
    /// Replaces the one occurrence of `.1` in the file `.0` with `.2`.
    Edit(&'static str, &'static str, &'static str),
}
use Change::{Edit, Write};

/// A fixture broken by `changes`, and exactly the problems the check must
/// report for it, in order.
struct Broken {
    name: &'static str,
    changes: &'static [Change],
    problems: &'static [&'static str],
}

const BROKEN: &[Broken] = &[
    Broken {
        name: "toml_syntax_error",
        changes: &[
            Edit(
                "policy/routes.toml",
                "action = \"relay\"\n\n",
                "action = relay\n\n",
            ),
        ],
        problems: &[
            "policy/routes.toml:5:10: syntax error: string values must be quoted, expected literal string",
        ],
    },
    Broken {
        name: "unknown_key",
        changes: &[
            Write("policy/gateway.toml", "[limits]\nmax_recipients = 10\nmax_size = 1000\n"),
        ],
        problems: &[
            "policy/gateway.toml:3:1: unknown key \"max_size\" in [limits]; expected one of: \
             max_message_size, max_recipients, max_header_size, max_mime_depth, \
             signing_time_skew_secs, min_rsa_bits, digests, crl, require_email_eku, replay, \
             replay_window_days, allow_unsigned_text",
        ],
    },
    Broken {
        name: "wrong_type",
        changes: &[
            Write("policy/gateway.toml", "[limits]\nmax_recipients = \"ten\"\n"),
        ],
        problems: &[
            "policy/gateway.toml:2:18: key \"max_recipients\" in [limits] must be an integer, found string",
        ],
    },
    Broken {
        name: "missing_required_keys",
        changes: &[
            Edit(
                "policy/authorities/bb-moj.toml",
                "name = \"Ministry of Justice of BB\"\n",
                "",
            ),
            Edit(
                "policy/routes.toml",
                "action = \"relay\"\nlane",
                "lane",
            ),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:1:1: missing required key \"name\"",
            "policy/routes.toml:7:1: missing required key \"action\" in [[route]]",
        ],
    },
    Broken {
        name: "missing_referenced_file",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "\"../certs/aa-issuing.pem\"",
                "\"../certs/aa-issuing.pem\", \"../certs/nowhere.pem\"",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:6:45: cannot read intermediates entry \
             \"../certs/nowhere.pem\": no such file or directory",
        ],
    },
    Broken {
        name: "file_without_certificate",
        changes: &[
            Write("certs/bb/notes.pem", "not a certificate\n"),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:5:18: \"../certs/bb/notes.pem\" holds no certificate",
        ],
    },
    Broken {
        name: "anchor_that_is_not_a_ca",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "aa-root.pem\"]",
                "aa-root.pem\", \"../certs/aa-clerk.pem\"]",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:5:42: certificate \"CN=AA Clerk\" in \"../certs/aa-clerk.pem\" \
             is not a CA certificate (basicConstraints cA is not set); a trust anchor must be a CA",
        ],
    },
    Broken {
        name: "version_1_certificate_only_as_self_signed_anchor",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "aa-issuing.pem\"]",
                "aa-issuing.pem\", \"../certs/v1-root.pem\"]",
            ),
            Edit(
                "policy/authorities/aa-moj.toml",
                "aa-root.pem\"]",
                "aa-root.pem\", \"../certs/v1-inter.pem\"]",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:5:42: certificate \"CN=V1 Intermediate CA\" in \
             \"../certs/v1-inter.pem\" is not a CA certificate (basicConstraints cA is not set); \
             a trust anchor must be a CA (a version 1 certificate is accepted only as a self-signed \
             trust anchor)",
            "policy/authorities/aa-moj.toml:6:45: certificate \"CN=V1 Root CA\" in \
             \"../certs/v1-root.pem\" is not a CA certificate (basicConstraints cA is not set); \
             an intermediate must be a CA (a version 1 certificate is accepted only as a \
             self-signed trust anchor)",
        ],
    },
    Broken {
        name: "intermediate_that_is_not_a_ca",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "aa-issuing.pem\"]",
                "aa-clerk.pem\"]",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:6:18: certificate \"CN=AA Clerk\" in \"../certs/aa-clerk.pem\" \
             is not a CA certificate (basicConstraints cA is not set); an intermediate must be a CA",
        ],
    },
    Broken {
        name: "expired_anchor",
        changes: &[
            Edit(
                "policy/authorities/bb-moj.toml",
                "[\"../certs/bb\"]\ncrls",
                "[\"../certs/bb\", \"../certs/expired.pem\"]\ncrls",
            ),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:5:33: certificate \"CN=Expired CA\" in \
             \"../certs/expired.pem\" expired at 2021-01-01T00:00:00Z",
        ],
    },
    Broken {
        name: "anchor_not_yet_valid",
        changes: &[
            Edit(
                "policy/authorities/bb-moj.toml",
                "[\"../certs/bb\"]\ncrls",
                "[\"../certs/bb\", \"../certs/future.pem\"]\ncrls",
            ),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:5:33: certificate \"CN=Future CA\" in \
             \"../certs/future.pem\" is not valid before 2090-01-01T00:00:00Z",
        ],
    },
    Broken {
        name: "crl_of_a_configured_issuer_signed_by_another_key",
        // Same issuer name as AA's root, another key: a forgery.
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "../certs/aa-root.crl.pem",
                "../certs/aa-root-forged.crl.pem",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:7:9: CRL in \"../certs/aa-root-forged.crl.pem\" \
             (issuer \"CN=AA Root CA\") is not signed by the key of the CA of that name configured \
             for authority \"aa-moj\"",
        ],
    },
    Broken {
        name: "crl_signed_by_a_ca_without_crl_sign",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "intermediates = [\"../certs/aa-issuing.pem\"]",
                "intermediates = [\"../certs/aa-issuing.pem\", \"../certs/aa-nocrl.pem\"]",
            ),
            Edit(
                "policy/authorities/aa-moj.toml",
                "\"../certs/aa-issuing.crl.pem\"]",
                "\"../certs/aa-issuing.crl.pem\", \"../certs/aa-nocrl.crl.pem\"]",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:7:68: CRL in \"../certs/aa-nocrl.crl.pem\" is signed by \
             \"CN=AA No CRL CA\", whose keyUsage does not allow cRLSign",
        ],
    },
    Broken {
        name: "crl_file_without_crl",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "../certs/aa-root.crl.pem",
                "../certs/aa-root.pem",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:7:9: \"../certs/aa-root.pem\" holds no CRL",
        ],
    },
    Broken {
        name: "overlapping_domains",
        changes: &[
            Edit(
                "policy/authorities/bb-moj.toml",
                "[\"justice.bb.example\"]",
                "[\"justice.bb.example\", \"Justice.AA.example\"]",
            ),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:4:34: domain \"justice.aa.example\" is already owned by \
             authority \"aa-moj\" (policy/authorities/aa-moj.toml)",
        ],
    },
    Broken {
        name: "route_to_unknown_authority_or_country",
        changes: &[
            Edit(
                "policy/routes.toml",
                "to = \"country:BB\"",
                "to = [\"country:BB\", \"country:ZZ\"]",
            ),
            Edit(
                "policy/routes.toml",
                "from = \"authority:bb-moj\"",
                "from = \"authority:zz-moj\"",
            ),
        ],
        problems: &[
            "policy/routes.toml:4:21: route \"aa-to-bb\" refers to country \"ZZ\", which has no authority",
            "policy/routes.toml:9:8: route \"bb-to-aa\" refers to unknown authority \"zz-moj\"",
        ],
    },
    Broken {
        name: "duplicate_route_name",
        changes: &[
            Edit(
                "policy/routes.toml",
                "name = \"bb-to-aa\"",
                "name = \"aa-to-bb\"",
            ),
        ],
        problems: &[
            "policy/routes.toml:8:8: duplicate route name \"aa-to-bb\" (first defined on line 2)",
        ],
    },
    Broken {
        name: "pinned_without_pin",
        changes: &[
            Edit(
                "policy/authorities/bb-moj.toml",
                "\"opportunistic\"",
                "\"pinned\"",
            ),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:10:7: tls = \"pinned\" requires pin_sha256",
        ],
    },
    Broken {
        name: "invalid_url",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "smtp://mx.justice.aa.example",
                "https://mx.justice.aa.example",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:10:7: invalid url \"https://mx.justice.aa.example\": \
             the scheme must be smtp, not \"https\"",
        ],
    },
    Broken {
        name: "invalid_lane_and_action",
        changes: &[
            Edit(
                "policy/routes.toml",
                "\"urgent\"",
                "\"express\"",
            ),
            Edit(
                "policy/routes.toml",
                "action = \"relay\"\n\n",
                "action = \"forward\"\n\n",
            ),
        ],
        problems: &[
            "policy/routes.toml:5:10: invalid action \"forward\"; expected one of: \"relay\", \"reject\"",
            "policy/routes.toml:12:8: invalid lane \"express\"; expected one of: \"normal\", \"urgent\"",
        ],
    },
    Broken {
        name: "reject_without_reason",
        changes: &[
            Edit(
                "policy/routes.toml",
                "action = \"relay\"\nlane",
                "action = \"reject\"\nlane",
            ),
        ],
        problems: &[
            "policy/routes.toml:7:1: a route with action = \"reject\" requires a non-empty reason",
        ],
    },
    Broken {
        name: "invalid_crl_policy",
        changes: &[
            Write("policy/gateway.toml", "[limits]\ncrl = \"ignore\"\n"),
        ],
        problems: &[
            "policy/gateway.toml:2:7: invalid crl \"ignore\"; expected one of: \"hard-fail\", \"soft-fail\"",
        ],
    },
    Broken {
        name: "weak_rsa_minimum",
        changes: &[
            Write("policy/gateway.toml", "[limits]\nmin_rsa_bits = 1024\n"),
        ],
        problems: &[
            "policy/gateway.toml:2:16: min_rsa_bits = 1024 is below the minimum of 2048",
        ],
    },
    Broken {
        name: "weak_digests",
        changes: &[
            Write(
                "policy/gateway.toml",
                "[limits]\ndigests = [\"sha256\", \"md5\", \"sha1\"]\n",
            ),
        ],
        problems: &[
            "policy/gateway.toml:2:22: digest \"md5\" is refused: MD5 and SHA-1 are never accepted",
            "policy/gateway.toml:2:29: digest \"sha1\" is refused: MD5 and SHA-1 are never accepted",
        ],
    },
    Broken {
        name: "every_problem_is_reported_in_file_order",
        changes: &[
            Write("policy/gateway.toml", "[gateway]\nhost = \"x\"\n"),
            Edit(
                "policy/authorities/bb-moj.toml",
                "country = \"BB\"",
                "country = \"bb\"",
            ),
            Edit(
                "policy/routes.toml",
                "\"urgent\"",
                "\"express\"",
            ),
        ],
        problems: &[
            "policy/authorities/bb-moj.toml:2:11: invalid country \"bb\": expected two upper-case \
             letters (ISO 3166-1 alpha-2)",
            "policy/gateway.toml:2:1: unknown key \"host\" in [gateway]; expected one of: hostname, postmaster, signing_cert, signing_key",
            "policy/routes.toml:12:8: invalid lane \"express\"; expected one of: \"normal\", \"urgent\"",
        ],
    },
    Broken {
        name: "revocation_sources",
        changes: &[
            Edit(
                "policy/authorities/aa-moj.toml",
                "\n[next_hop]",
                "crl_urls = [\"ftp://crl.aa.example/x.crl\", \"http://crl.aa.example/i.crl\", \
                 \"http://crl.aa.example/i.crl\"]\nfetch_crls = \"always\"\nocsp = \"maybe\"\n\n[next_hop]",
            ),
        ],
        problems: &[
            "policy/authorities/aa-moj.toml:8:13: invalid CRL URL \"ftp://crl.aa.example/x.crl\": \
             the scheme must be http or https, not \"ftp\"",
            "policy/authorities/aa-moj.toml:8:74: CRL URL \"http://crl.aa.example/i.crl\" is listed twice",
            "policy/authorities/aa-moj.toml:9:14: invalid fetch_crls \"always\"; expected one of: \"off\", \"cdp\"",
            "policy/authorities/aa-moj.toml:10:8: invalid ocsp \"maybe\"; expected one of: \"off\", \"fallback\", \"prefer\"",
        ],
    },
];

#[test]
fn each_broken_fixture_gets_exactly_its_problems() {
    for case in BROKEN {
        let f = Fixture::new();
        for change in case.changes {
            match *change {
                Write(rel, text) => f.write(rel, text),
                Edit(rel, from, to) => f.edit(rel, from, to),
            }
        }
        let (code, stdout) = f.check();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines, case.problems, "{}", case.name);
        assert_eq!(code, 1, "{}", case.name);
    }
}

#[test]
fn missing_policy_directory() {
    let f = Fixture::new();
    let (code, stdout) = run(f.root.path(), &["policy", "check", "nowhere"]);
    assert_eq!(
        stdout,
        "nowhere:1:1: cannot read the policy directory: no such file or directory\n"
    );
    assert_eq!(code, 1);
}

#[test]
fn revocation_sources_valid() {
    let f = Fixture::edited("policy/authorities/aa-moj.toml", "\n[next_hop]", "crl_urls = \"https://crl.aa.example/issuing.crl\"\nfetch_crls = \"cdp\"\nocsp = \"prefer\"\n\n[next_hop]");
    f.passes();
}
