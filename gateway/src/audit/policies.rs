//! `emla policy show`: the archived policy versions ([`crate::store::policies`]).
//! Every version shown is checked first: its files must hash to the
//! version's name, so what is shown is what decided.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::AuditError;
use crate::clock::EvalTime;
use crate::policy::FileSet;
use crate::store::policies::{ArchivedFile, ArchivedPolicy, Lookup};
use crate::store::Store;

/// What to show.
#[derive(Debug, Default)]
pub struct ShowArgs {
    /// A version or its first hex digits; `None` lists every version.
    pub version: Option<String>,
    /// Print this one file's content instead of the list.
    pub file: Option<String>,
    /// Write the version's files under this directory, so `emla policy
    /// check DIR/policy` can load it again.
    pub extract: Option<PathBuf>,
    /// One JSON object instead of text.
    pub json: bool,
}

#[derive(Serialize)]
struct FileLine<'a> {
    name: &'a str,
    sha256: &'a str,
    size: usize,
}

/// Runs `emla policy show`; returns what to print (a file's bytes for
/// `--file`).
pub async fn show(store: &Store, args: &ShowArgs) -> Result<Vec<u8>, AuditError> {
    let Some(prefix) = &args.version else {
        return list(store, args.json).await;
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuditError::Usage(format!(
            "policy version {prefix:?}: expected hex digits (a version or its start)"
        )));
    }
    let p = match store
        .archived_policy(&prefix.to_ascii_lowercase())
        .await
        .map_err(AuditError::Store)?
    {
        Lookup::Found(p) => p,
        Lookup::Unknown => {
            return Err(AuditError::NotFound(format!(
                "no policy version {prefix} was ever in force here (`emla policy show` lists them)"
            )))
        }
        Lookup::Ambiguous(vs) => {
            return Err(AuditError::Usage(format!(
                "policy version {prefix} is ambiguous: {}; give more digits",
                vs.join(", ")
            )))
        }
    };
    check(&p)?;
    if let Some(name) = &args.file {
        return match p.files.iter().find(|f| &f.name == name) {
            Some(f) => Ok(f.content.clone()),
            None => Err(AuditError::NotFound(format!(
                "policy version {} has no file {name:?}",
                p.version
            ))),
        };
    }
    if let Some(dir) = &args.extract {
        let root = extract(&p, dir)?;
        return Ok(format!(
            "policy version {} extracted: {} file(s); check it with `emla policy check {}`\n",
            p.version,
            p.files.len(),
            root.display()
        )
        .into_bytes());
    }
    Ok(render(&p, args.json).into_bytes())
}

/// The archive must give back exactly the bytes the version was computed
/// over; a changed blob or file list is reported, never shown as the
/// policy.
pub(crate) fn check(p: &ArchivedPolicy) -> Result<(), AuditError> {
    let mut set = FileSet::default();
    for f in &p.files {
        let actual = hex::encode(ring::digest::digest(&ring::digest::SHA256, &f.content));
        if actual != f.sha256 {
            return Err(AuditError::NotFound(format!(
                "policy version {}: archived file {:?} was altered (SHA-256 {actual}, recorded {})",
                p.version, f.name, f.sha256
            )));
        }
        set.add(f.name.clone(), &f.content);
    }
    let computed = set.version();
    if computed != p.version {
        return Err(AuditError::NotFound(format!(
            "policy version {}: the archived files hash to {computed}: the archive was altered",
            p.version
        )));
    }
    Ok(())
}

fn when(ms: i64) -> String {
    EvalTime::from_unix((ms.max(0) / 1000) as u64).to_rfc3339()
}

fn render(p: &ArchivedPolicy, json: bool) -> String {
    let files: Vec<FileLine> = p
        .files
        .iter()
        .map(|f| FileLine {
            name: &f.name,
            sha256: &f.sha256,
            size: f.content.len(),
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "version": p.version,
            "first_in_force": when(p.first_in_force_ms),
            "intact": true,
            "files": files,
        });
        return format!("{v}\n");
    }
    let mut out = format!(
        "policy version {}\nfirst in force {}; files intact ({} file(s)):\n",
        p.version,
        when(p.first_in_force_ms),
        files.len()
    );
    for f in &files {
        out.push_str(&format!("  {}  {:>8}  {}\n", f.sha256, f.size, f.name));
    }
    out
}

async fn list(store: &Store, json: bool) -> Result<Vec<u8>, AuditError> {
    let versions = store.archived_policies().await.map_err(AuditError::Store)?;
    if json {
        let v: Vec<_> = versions
            .iter()
            .map(|(v, ms)| serde_json::json!({"version": v, "first_in_force": when(*ms)}))
            .collect();
        return Ok(format!("{}\n", serde_json::json!({ "versions": v })).into_bytes());
    }
    let mut out = String::new();
    for (v, ms) in &versions {
        out.push_str(&format!("{}  first in force {}\n", v, when(*ms)));
    }
    if versions.is_empty() {
        out.push_str(
            "no policy version archived yet (the gateway archives each one it puts in force)\n",
        );
    }
    Ok(out.into_bytes())
}

/// The policy directory and each file's path in an extracted version.
pub(crate) type Placed<'a> = (String, Vec<(String, &'a ArchivedFile)>);

/// Where each file of `p` goes in a directory, so that the names resolve
/// as they did: policy files under `policy/`, and a file the policy named
/// as `../certs/x.pem` at `certs/x.pem` (deeper `../` add `policy.d/`
/// levels above `policy/`). Returns the policy directory and each file's
/// path, both relative, `/`-separated and without `..`. A name that cannot
/// be placed so (an absolute path, say) goes under `elsewhere` by its plain
/// components, or is refused without it. Shared by `--extract` and the
/// evidence bundle, so both lay a version out alike.
pub(crate) fn layout<'a>(
    p: &'a ArchivedPolicy,
    elsewhere: Option<&str>,
) -> Result<Placed<'a>, String> {
    let ups = |name: &str| {
        Path::new(name)
            .components()
            .take_while(|c| matches!(c, Component::ParentDir))
            .count()
    };
    let plain = |c: Component<'a>| match c {
        Component::Normal(n) => n.to_str(),
        _ => None,
    };
    let depth = p.files.iter().map(|f| ups(&f.name)).max().unwrap_or(0);
    let mut base = vec!["policy.d"; depth.saturating_sub(1)];
    base.push("policy");
    let mut placed = Vec::with_capacity(p.files.len());
    for f in &p.files {
        let up = ups(&f.name);
        let inner: Option<Vec<&str>> = Path::new(&f.name)
            .components()
            .skip(up)
            .map(plain)
            .collect::<Option<_>>()
            .filter(|v: &Vec<&str>| !v.is_empty());
        let parts: Vec<&str> = match (inner, elsewhere) {
            (Some(inner), _) => base[..base.len() - up]
                .iter()
                .copied()
                .chain(inner)
                .collect(),
            (None, Some(dir)) => std::iter::once(dir)
                .chain(Path::new(&f.name).components().filter_map(plain))
                .collect(),
            (None, None) => {
                return Err(format!("archived file name {:?} cannot be placed", f.name))
            }
        };
        placed.push((parts.join("/"), f));
    }
    Ok((base.join("/"), placed))
}

/// Writes the files under `dir` as [`layout`] places them.
fn extract(p: &ArchivedPolicy, dir: &Path) -> Result<PathBuf, AuditError> {
    let usage = |e: String| AuditError::Usage(e);
    let (root, placed) =
        layout(p, None).map_err(|e| usage(format!("{e} under {}", dir.display())))?;
    let root = dir.join(root);
    if root.exists() {
        return Err(usage(format!(
            "{} exists already: extract into an empty directory",
            root.display()
        )));
    }
    for (path, f) in placed {
        let target = dir.join(path);
        let parent = target.parent().expect("a file name has a parent");
        std::fs::create_dir_all(parent)
            .and_then(|_| std::fs::write(&target, &f.content))
            .map_err(|e| usage(format!("cannot write {}: {e}", target.display())))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(names: &[&str]) -> ArchivedPolicy {
        ArchivedPolicy {
            version: String::new(),
            first_in_force_ms: 0,
            files: names
                .iter()
                .map(|n| ArchivedFile {
                    name: (*n).into(),
                    sha256: String::new(),
                    content: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn layout_resolves_names_as_the_policy_did() {
        let cases: [(&[&str], &str, &[&str]); 2] = [
            (
                &["routes.toml", "authorities/aa.toml", "../certs/aa/root.pem"],
                "policy",
                &[
                    "policy/routes.toml",
                    "policy/authorities/aa.toml",
                    "certs/aa/root.pem",
                ],
            ),
            (
                &["a.toml", "../../pki/ca.pem", "../c.pem"],
                "policy.d/policy",
                &["policy.d/policy/a.toml", "pki/ca.pem", "policy.d/c.pem"],
            ),
        ];
        for (names, want_root, want_paths) in cases {
            let p = version(names);
            let (root, placed) = layout(&p, None).unwrap();
            assert_eq!(root, want_root, "{names:?}");
            let paths: Vec<&str> = placed.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(paths, want_paths, "{names:?}");
        }
        for bad in ["/etc/ca.pem", "certs/../../x", "..", "./x"] {
            assert!(layout(&version(&[bad]), None).is_err(), "{bad}");
        }
        let abs = version(&["/etc/pki/ca.pem"]);
        let (_, placed) = layout(&abs, Some("absolute")).unwrap();
        assert_eq!(placed[0].0, "absolute/etc/pki/ca.pem");
    }
}
