//! End-to-end test of the archive of policy versions: `emla serve` archives
//! the version it starts with and each one a reload puts in force; `emla
//! policy show` lists them, shows one, gives back its files (which load
//! again to the same version) and refuses an archive that was altered.

#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use sqlx::Connection;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn versions(config: &Path) -> Vec<String> {
    let (code, out) = smtp::emla_cli(&["policy", "show", "--json"], config);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect()
}

fn checked_version(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emla"))
        .args(["policy", "check", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    v["version"].as_str().unwrap().to_owned()
}

#[test]
fn every_version_in_force_is_archived_and_shown_intact() {
    let work = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    copy_dir(
        &repo.join("certs/sample"),
        &work.path().join("certs/sample"),
    );
    let policy = work.path().join("policy");
    copy_dir(&repo.join("policy"), &policy);
    let first = checked_version(&policy);

    let gw = smtp::Gateway::new(smtp::Opts {
        policy_dir: policy.clone(),
        ..smtp::Opts::default()
    });
    let server = gw.start();
    assert_eq!(versions(&gw.config), std::slice::from_ref(&first));

    // An edit, reloaded: archived before it is in force.
    let gateway_toml = policy.join("gateway.toml");
    let text = fs::read_to_string(&gateway_toml).unwrap();
    fs::write(
        &gateway_toml,
        text.replace("max_recipients = 50", "max_recipients = 7"),
    )
    .unwrap();
    let second = checked_version(&policy);
    let (code, out) = smtp::emla_cli(&["policy", "reload"], &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&second), "{out}");
    assert_eq!(versions(&gw.config), [first.clone(), second.clone()]);
    drop(server);

    // One version by a prefix: its files, intact.
    let (code, out) = smtp::emla_cli(&["policy", "show", &first[..12]], &gw.config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("policy version {first}\n")),
        "{out}"
    );
    assert!(out.contains("files intact (18 file(s))"), "{out}");
    assert!(out.contains("  gateway.toml\n"), "{out}");
    assert!(out.contains("  ../certs/sample/aa-moj/root.pem\n"), "{out}");
    let (code, out) = smtp::emla_cli(
        &["policy", "show", &first, "--file", "gateway.toml"],
        &gw.config,
    );
    assert_eq!(code, 0);
    assert!(out.contains("max_recipients = 50"), "{out}");

    // Extracted, the first version loads again, to the same version.
    let ex = work.path().join("extracted");
    let (code, out) = smtp::emla_cli(
        &["policy", "show", &first, "--extract", ex.to_str().unwrap()],
        &gw.config,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(checked_version(&ex.join("policy")), first);

    // Unknown and malformed versions.
    let (code, out) = smtp::emla_cli(&["policy", "show", "0000000"], &gw.config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no policy version 0000000 was ever in force here"),
        "{out}"
    );
    let (code, out) = smtp::emla_cli(&["policy", "show", "xyz"], &gw.config);
    assert_eq!(code, 2, "{out}");

    // An archived file altered in the database is reported, not shown.
    let url = gw.database_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "UPDATE policy_blobs SET content = CAST('max_recipients = 500' AS BLOB) \
             WHERE sha256 = (SELECT sha256 FROM policy_files WHERE version = $1 \
             AND name = 'gateway.toml')",
        )
        .bind(&first)
        .execute(&mut db)
        .await
        .unwrap();
    });
    let (code, out) = smtp::emla_cli(&["policy", "show", &first], &gw.config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("archived file \"gateway.toml\" was altered"),
        "{out}"
    );
}
