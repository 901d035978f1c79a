//! The policy version that decided the message, in its evidence bundle
//! ([`super::export`]): the archived files ([`crate::store::policies`])
//! under `policy/VERSION/`, laid out as `emla policy show --extract` does,
//! with `manifest.json`, and the step of `verify.sh` that checks, without
//! emla, that they hash to the version the decision's audit record names
//! (`policy/verify_policy.py`). A version recorded before the archive
//! existed is not there: the bundle says so and the step only notes it.

use std::fmt::Write as _;

use serde_json::json;

use super::export::Bundle;
use super::AuditError;
use crate::clock::EvalTime;
use crate::store::policies::Lookup;
use crate::store::{MessageRow, Store};

/// The checker written into bundles as `policy/verify_policy.py`.
pub const VERIFY_POLICY_PY: &str = r#"# Checks that the archived policy files in policy/VERSION/ hash to the
# policy version the decision's audit record names (SHA-256 over every file
# in name order: its name, a NUL byte, its length as 8 big-endian bytes, its
# content). Usage: python3 policy/verify_policy.py ID
import hashlib, json, os, struct, sys
msg_id = sys.argv[1]
version = None
for line in open("audit/records.jsonl", encoding="utf-8"):
    r = json.loads(line)
    if r["message_id"] == msg_id and r["kind"] in ("message.accepted", "message.rejected"):
        version = json.loads(r["data"]).get("policy_version")
        break
if not version:
    version = json.load(open("recorded.json", encoding="utf-8")).get("policy_version")
manifest = os.path.join("policy", version or "-", "manifest.json")
if not version or not os.path.exists(manifest):
    print("NOTE: policy version %s that decided the message is not in the bundle: it was not"
          " archived (recorded before policy versions were archived); see policy/NOT-ARCHIVED.txt"
          % version)
    sys.exit(0)
m = json.load(open(manifest, encoding="utf-8"))
if m["version"] != version:
    sys.exit("%s names version %s, the decision record %s" % (manifest, m["version"], version))
h = hashlib.sha256()
for f in sorted(m["files"], key=lambda f: f["name"].encode("utf-8")):
    content = open(f["path"], "rb").read()
    actual = hashlib.sha256(content).hexdigest()
    if actual != f["sha256"]:
        sys.exit("%s (policy file %s) was altered: SHA-256 %s, archived %s"
                 % (f["path"], f["name"], actual, f["sha256"]))
    h.update(f["name"].encode("utf-8") + b"\0" + struct.pack(">Q", len(content)) + content)
if h.hexdigest() != version:
    sys.exit("the policy files in policy/%s hash to %s, not to the recorded version %s"
             % (version, h.hexdigest(), version))
print("policy version OK: the %d archived files in policy/%s hash to the version the decision"
      " record names" % (len(m["files"]), version))
"#;

/// What went into the bundle.
pub(super) struct Added {
    /// The version the decision names (empty when none is recorded).
    version: String,
    /// Whether its files are in the bundle.
    archived: bool,
    /// The policy directory inside the bundle, when archived.
    dir: String,
}

/// Adds the archived files of the version that decided `m`, or a note
/// that it was not archived. A version whose archived files no longer
/// hash to it is refused, as a broken log is.
pub(super) async fn add(
    b: &mut Bundle,
    store: &Store,
    m: &MessageRow,
) -> Result<Added, AuditError> {
    let version = m.policy_version.clone();
    b.add("policy/verify_policy.py", VERIFY_POLICY_PY);
    let lookup = if version.len() == 64 && version.bytes().all(|c| c.is_ascii_hexdigit()) {
        store.archived_policy(&version).await?
    } else {
        Lookup::Unknown
    };
    let Lookup::Found(p) = lookup else {
        b.add(
            "policy/NOT-ARCHIVED.txt",
            format!(
                "The message was decided under policy version {version}, which is not in this\n\
                 gateway's archive of policy versions: it was recorded before the gateway\n\
                 archived each version it put in force. Its files cannot be included; the\n\
                 version itself is in recorded.json and in the decision's audit record.\n"
            ),
        );
        return Ok(Added {
            version,
            archived: false,
            dir: String::new(),
        });
    };
    super::policies::check(&p)
        .map_err(|e| AuditError::NotFound(format!("refusing to export: {e}")))?;
    // Files the policy names by absolute path go under absolute/.
    let (root, placed) =
        super::policies::layout(&p, Some("absolute")).map_err(AuditError::Usage)?;
    let base = format!("policy/{}", p.version);
    let mut files = Vec::with_capacity(placed.len());
    for (path, f) in placed {
        let path = format!("{base}/{path}");
        files.push(json!({
            "name": f.name, "path": path, "sha256": f.sha256, "size": f.content.len(),
        }));
        b.add(&path, f.content.clone());
    }
    let dir = format!("{base}/{root}");
    let manifest = json!({
        "version": p.version,
        "first_in_force": EvalTime::from_unix((p.first_in_force_ms.max(0) / 1000) as u64).to_rfc3339(),
        "policy_dir": dir,
        "algorithm": "SHA-256 over every file in name order: name, NUL, length (8 bytes, big-endian), content",
        "files": files,
    });
    let mut text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    text.push(b'\n');
    b.add(&format!("{base}/manifest.json"), text);
    Ok(Added {
        version,
        archived: true,
        dir,
    })
}

/// Step 7 of `verify.sh`: the policy version.
pub(super) fn script(s: &mut String, a: &Added, id: &str) {
    let _ = write!(
        s,
        "# 7. The policy version that decided the message: the archived files under\n\
         #    policy/{v}/ hash to the version its decision record names{note}.\n\
         python3 policy/verify_policy.py '{id}'\n",
        v = if a.version.is_empty() {
            "-"
        } else {
            &a.version
        },
        note = if a.archived {
            ""
        } else {
            " (not archived: noted, not failed)"
        },
    );
}

/// README.txt's lines for these files.
pub(super) fn readme(a: &Added) -> String {
    if a.archived {
        format!(
            "policy/VERSION/             the policy version that decided the message, as archived when\n\
             \x20                           it was put in force: {dir}/ holds the policy files (the\n\
             \x20                           files they name beside it, as `emla policy show --extract`\n\
             \x20                           lays them out; those named by absolute path are\n\
             \x20                           under policy/VERSION/absolute/)\n\
             policy/VERSION/manifest.json each file's name (as hashed), path here, SHA-256 and size\n\
             policy/verify_policy.py     recomputes the version from the files (step 7)\n",
            dir = a.dir
        )
    } else {
        format!(
            "policy/NOT-ARCHIVED.txt     NOTE: the policy version that decided the message ({}) was\n\
             \x20                           not archived (recorded before versions were archived)\n\
             policy/verify_policy.py     step 7: notes that, without failing\n",
            a.version
        )
    }
}
