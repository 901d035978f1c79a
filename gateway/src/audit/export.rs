//! `emla audit export ID --out DIR|FILE.zip`: an evidence bundle for one
//! message, checkable with `openssl`, `sha256sum` and `python3` alone.
//!
//! The bundle is a directory, or the same files in a zip archive when
//! `--out` ends in `.zip` (unpack it, e.g. `unzip FILE.zip -d bundle`, then
//! check in that directory; the checksums travel inside). Layout:
//!
//! ```text
//! README.txt                 what is in it and how to check it
//! verify.sh                  the check commands of README.txt, as a script
//! SHA256SUMS                 sha256sum -c SHA256SUMS
//! message.eml                the message exactly as received (when kept);
//!                            of one that arrived encrypted, the decrypted
//!                            signed message
//! received-encrypted.eml     of one that arrived encrypted: the bytes as
//! encryption.json            received, and how (gateway certificate, algorithms)
//! recorded.json              the message row as recorded at reception
//! verification.json / .txt   emla verify, re-run on message.eml at the
//!                            reception time under the current policy
//! certs/anchors.pem          trust anchors of the sender's authority
//! certs/intermediates.pem    its configured intermediate CAs and the certificates the
//!                            message carries
//! revocation/crl-SHA.crl     the CRLs that decided the message (DER, as
//!                            archived at reception; SHA = SHA-256 of the
//!                            file, named by the decision's audit record)
//! revocation/ocsp-SHA.der    the OCSP responses that did (with .cert.pem
//!                            and .issuer.pem, for `openssl ocsp`)
//! revocation/evidence.json   the decision record's revocation evidence
//! crls/crls.pem              only for messages recorded before evidence
//! certs/anchors-and-crls.pem was archived: the CRLs loaded at export
//! audit/message-records.json the audit records naming the message
//! audit/records.jsonl        the proof: every record from the message's
//!                            first one up to the checkpoint's seq
//! audit/verify_chain.py      recomputes the proof's hashes
//! checkpoint/checkpoint-N.json, .p7s, ca.pem
//! delivery.json              queue entries (deliveries) of the message
//! receipts.json              audit records of receipts for the message
//! receipts/ID.eml            the receipts as sent, audit/verify_receipts.py
//! timestamps/*.tst, tsa-ca.pem  the RFC 3161 tokens, each on its own
//! policy/VERSION/...         the archived policy version that decided it
//!                            (policy/, certs/ as `emla policy show --extract`
//!                            lays them out, manifest.json), or
//!                            policy/NOT-ARCHIVED.txt; policy/verify_policy.py
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::checkpoint::{self, Checkpoint};
use super::cli::history;
use super::show::History;
use super::AuditError;
use crate::clock::EvalTime;
use crate::config::Config;
use crate::policy::{Authority, Policy};
use crate::store::chain::AuditRow;
use crate::store::{AuditKind, AuditRecord, Evidence, MessageRow, Store};
use crate::trust::revocation::{Crl, Method, RevocationSet};
use crate::verify::{self, Envelope};

/// `emla audit export`.
#[derive(Clone, Debug, Args)]
pub struct ExportArgs {
    /// The emla message id (or its `Message-ID:`).
    pub id: String,
    /// The directory to create (it must not exist, or be empty), or a
    /// `.zip` file to create (it must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// Configuration file (database, policy, `[audit] checkpoint_dir`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The signed checkpoint to prove the records against (default: the
    /// earliest in `checkpoint_dir` that covers the message's last record;
    /// a new one is written when none does).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

/// The proof checker written into every bundle as `audit/verify_chain.py`
/// (and quoted in README.txt).
pub const VERIFY_CHAIN_PY: &str = r#"# Recomputes the emla audit hash chain of audit/records.jsonl and checks that
# it ends in the signed checkpoint, and that the message's decision record
# names the SHA-256 of message.eml. Usage: python3 audit/verify_chain.py ID
import hashlib, json, os, sys
msg_id = sys.argv[1]
cp_file = [f for f in os.listdir("checkpoint") if f.endswith(".json")][0]
cp = json.load(open(os.path.join("checkpoint", cp_file)))
prev = None
last = None
body_sha = None
if os.path.exists("message.eml"):
    body_sha = hashlib.sha256(open("message.eml", "rb").read()).hexdigest()
named = False
revocation = []
for line in open("audit/records.jsonl", encoding="utf-8"):
    r = json.loads(line)
    if prev is not None and (r["seq"] != last + 1 or r["prev_hash"] != prev):
        sys.exit("record %d does not link to record %d" % (r["seq"], last))
    form = "\n".join([r["prev_hash"], str(r["seq"]), str(r["at"]), r["kind"],
                      r["message_id"] or "", r["data"]])
    h = hashlib.sha256(form.encode("utf-8")).hexdigest()
    if h != r["hash"]:
        sys.exit("record %d: computed hash %s != recorded %s" % (r["seq"], h, r["hash"]))
    if r["message_id"] == msg_id and body_sha is not None:
        if json.loads(r["data"]).get("sha256") == body_sha:
            named = True
    if r["message_id"] == msg_id and r["kind"] in ("message.accepted", "message.rejected"):
        revocation = json.loads(r["data"]).get("revocation") or []
    prev, last = h, r["seq"]
if last != cp["seq"] or prev != cp["hash"]:
    sys.exit("the chain ends at record %s hash %s, the checkpoint says %d %s"
             % (last, prev, cp["seq"], cp["hash"]))
if body_sha is not None and not named:
    sys.exit("no audit record of %s names the SHA-256 %s of message.eml" % (msg_id, body_sha))
# The CRLs and OCSP responses the decision record names are here, byte for byte.
for ev in revocation:
    if ev.get("method") not in ("crl", "ocsp") or not ev.get("sha256"):
        continue
    f = "revocation/%s-%s.%s" % (ev["method"], ev["sha256"], "crl" if ev["method"] == "crl" else "der")
    if not os.path.exists(f):
        sys.exit("the decision record names %s, which is not in the bundle" % f)
    if hashlib.sha256(open(f, "rb").read()).hexdigest() != ev["sha256"]:
        sys.exit("%s does not have the SHA-256 the decision record names" % f)
    print("revocation evidence OK: %s (%s of %s)" % (f, ev["method"], ev.get("subject")))
print("chain proof OK: records up to %d hash to the signed checkpoint %s" % (last, prev))
"#;

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn usage(e: impl std::fmt::Display) -> AuditError {
    AuditError::Usage(e.to_string())
}

/// Files written, relative path → bytes, in order.
#[derive(Default)]
pub(super) struct Bundle {
    files: Vec<(String, Vec<u8>)>,
}

impl Bundle {
    pub(super) fn add(&mut self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.files.push((path.to_string(), bytes.into()));
    }
}

/// The revocation data that decided a message, as archived at reception.
#[derive(Default)]
struct Archive {
    /// The evidence list of the decision's audit record; `None` when it was
    /// recorded before evidence was archived.
    evidence: Option<Vec<Evidence>>,
    /// `(sha256, DER)` of each CRL it names, in order.
    crls: Vec<(String, Vec<u8>)>,
    /// The OCSP responses it names.
    ocsp: Vec<OcspFile>,
    /// SHA-256s it names that `revocation_data` lacks.
    missing: Vec<String>,
    /// Certificates whose status was not established (soft-fail).
    unchecked: Vec<String>,
}

/// One archived OCSP response, with the certificate it answers for and
/// that certificate's issuer (for `openssl ocsp -cert -issuer`).
struct OcspFile {
    sha256: String,
    der: Vec<u8>,
    subject: String,
    cert: Option<Vec<u8>>,
    issuer: Option<Vec<u8>>,
}

impl Archive {
    /// Whether the decision's revocation data is all here.
    fn archived(&self) -> bool {
        self.evidence.is_some() && self.missing.is_empty()
    }

    /// Whether every certificate of the path was judged by an archived
    /// CRL, so that `openssl cms -verify -crl_check_all` checks it all.
    fn crl_only(&self) -> bool {
        self.archived()
            && !self.crls.is_empty()
            && self.ocsp.is_empty()
            && self.unchecked.is_empty()
    }

    /// What the re-verification used, for people.
    fn describe(&self) -> String {
        match &self.evidence {
            None => "revocation data: the policy's CRL files as loaded at export (the message was \
                     recorded before revocation evidence was archived)"
                .into(),
            Some(_) if !self.missing.is_empty() => format!(
                "revocation data: the policy's CRL files as loaded at export, because the archived \
                 revocation data {} named by the audit record is missing from the database",
                self.missing.join(", ")
            ),
            Some(_) => {
                let mut s = format!(
                    "revocation data: the {} CRL(s) archived at reception, not the policy's CRL files of today",
                    self.crls.len()
                );
                if !self.ocsp.is_empty() {
                    let _ = write!(
                        s,
                        "; {} OCSP response(s) archived at reception, which emla cannot re-judge \
                         here (it would need to fetch anew) and verify.sh checks with openssl ocsp",
                        self.ocsp.len()
                    );
                }
                if !self.unchecked.is_empty() {
                    let _ = write!(
                        s,
                        "; no revocation status for {} (accepted under soft-fail)",
                        self.unchecked.join(", ")
                    );
                }
                s
            }
        }
    }
}

/// Reads the revocation data the decision record of the message names.
async fn archive(
    store: &Store,
    decision: Option<&AuditRecord>,
    raw: Option<&[u8]>,
    authority: Option<&Authority>,
) -> Result<Archive, AuditError> {
    let Some(evidence) = decision
        .and_then(AuditRecord::decision)
        .and_then(|d| d.revocation)
    else {
        return Ok(Archive::default());
    };
    let mut a = Archive {
        evidence: Some(evidence.clone()),
        ..Archive::default()
    };
    let mut pool: Vec<Vec<u8>> = raw.map(message_certs).unwrap_or_default();
    if let Some(auth) = authority {
        pool.extend(auth.intermediates.iter().map(|c| c.to_vec()));
        pool.extend(auth.anchor_certs.iter().map(|c| c.to_vec()));
    }
    for ev in &evidence {
        let subject = ev.subject.clone();
        let Some(sha) = ev.sha256.as_deref() else {
            if ev.method == Method::None {
                a.unchecked.push(subject);
            }
            continue;
        };
        if a.crls.iter().any(|(s, _)| s == sha) || a.ocsp.iter().any(|o| o.sha256 == sha) {
            continue;
        }
        let Some((kind, der)) = store.revocation_blob(sha).await? else {
            a.missing.push(sha.to_string());
            continue;
        };
        if kind == "crl" {
            a.crls.push((sha.to_string(), der));
        } else {
            let serial = ev.serial.as_str();
            let cert = pool.iter().find(|c| cert_is(c, &subject, serial)).cloned();
            let issuer = cert.as_ref().and_then(|c| {
                pool.iter()
                    .find(|i| crate::trust::revocation::signature_verifies(c, &spki_of(i)))
                    .cloned()
            });
            a.ocsp.push(OcspFile {
                sha256: sha.to_string(),
                der,
                subject,
                cert,
                issuer,
            });
        }
    }
    Ok(a)
}

/// The certificates a signed message carries.
fn message_certs(raw: &[u8]) -> Vec<Vec<u8>> {
    let Ok(top) = crate::smime::mime::Entity::parse(raw) else {
        return Vec::new();
    };
    let Ok(container) = crate::smime::extract(&top) else {
        return Vec::new();
    };
    let Ok(signed) = crate::smime::cms::parse(&container.cms_der) else {
        return Vec::new();
    };
    signed.certificates.iter().map(|c| c.to_vec()).collect()
}

/// The SubjectPublicKeyInfo (DER) of a certificate, empty when unparsable.
fn spki_of(cert: &[u8]) -> Vec<u8> {
    use der::{Decode as _, Encode as _};
    x509_cert::Certificate::from_der(cert)
        .ok()
        .and_then(|c| c.tbs_certificate.subject_public_key_info.to_der().ok())
        .unwrap_or_default()
}

/// Whether `der` is the certificate with this subject (RFC 4514) and
/// serial (hex), as evidence names it.
fn cert_is(der: &[u8], subject: &str, serial: &str) -> bool {
    use der::Decode as _;
    x509_cert::Certificate::from_der(der).is_ok_and(|c| {
        let tbs = &c.tbs_certificate;
        hex::encode(tbs.serial_number.as_bytes()) == serial && tbs.subject.to_string() == subject
    })
}

/// Writes the bundle of message `args.id` to `args.out`; returns a summary.
pub async fn export(
    store: &Store,
    policy: &Policy,
    config: &Config,
    args: &ExportArgs,
) -> Result<String, AuditError> {
    let h = history(store, &args.id).await?;
    let id = h.id.clone();
    let m = h
        .message
        .clone()
        .ok_or_else(|| AuditError::NotFound(format!("no message row for {id}")))?;
    let zip = check_out(&args.out)?;
    let (first_seq, last_seq) = record_span(&h)?;
    let proof = Proof::gather(store, policy, config, args, first_seq, last_seq).await?;

    let mut b = Bundle::default();
    let received = received_time(&m);
    let message = add_message(&mut b, store, policy, &h, &m, received).await?;

    // The audit records and the proof.
    add_records(&mut b, &h.events, &proof.records);

    // The checkpoint and the CA its signer chains to.
    let cp = &proof.checkpoint;
    let cp_name = format!("checkpoint-{}", cp.seq);
    let ca_pem = add_checkpoint(&mut b, policy, &proof, &cp_name);
    let cp_p7s = format!("checkpoint/{cp_name}.p7s");
    let stamps = super::bundle_receipts::add(
        &mut b,
        store,
        config,
        &h.events,
        proof.signature.as_deref().map(|d| (cp_p7s.as_str(), d)),
    )
    .await;
    let policy_files = super::bundle_policy::add(&mut b, store, &m).await?;

    add_deliveries(&mut b, &h);

    // The check script and README.
    let signed = proof.signature.is_some() && !ca_pem.is_empty();
    let mut script = check_script(
        &id,
        message.raw.is_some() && message.authority.is_some(),
        &message.archive,
        message.has_untrusted,
        received,
        &cp_name,
        signed,
        cp.eval_time(),
    );
    super::bundle_receipts::script(&mut script, &stamps, signed, cp.eval_time());
    super::bundle_policy::script(&mut script, &policy_files, &id);
    script.push_str("echo 'evidence bundle OK'\n");
    b.add("verify.sh", script.clone());
    let files =
        super::bundle_receipts::readme(&stamps) + &super::bundle_policy::readme(&policy_files);
    b.add(
        "README.txt",
        readme(
            &id,
            &m,
            cp,
            first_seq,
            &script,
            message.raw.is_some(),
            &message.archive,
            &files,
        ),
    );

    // SHA256SUMS over everything, then write.
    write_bundle(&args.out, zip, &mut b)?;
    Ok(format!(
        "evidence bundle for {id} written to {} ({} files; records {first_seq}..{} proven \
         by checkpoint {})\n",
        args.out.display(),
        b.files.len(),
        cp.seq,
        proof.json.display()
    ))
}

/// The first and last audit record of the message.
fn record_span(h: &History) -> Result<(i64, i64), AuditError> {
    let first = h.events.iter().map(|e| e.seq).min();
    let last = h.events.iter().map(|e| e.seq).max();
    first.zip(last).ok_or_else(|| {
        AuditError::NotFound(format!("message {} has no audit records (pruned?)", h.id))
    })
}

/// The message's part of a bundle, as the check script and README need it.
struct MessagePart<'p> {
    /// The message as received, when its body is kept.
    raw: Option<Vec<u8>>,
    /// The revocation data that decided it.
    archive: Archive,
    /// The sender's authority, as recorded or as re-verified.
    authority: Option<&'p Authority>,
    /// Whether `certs/intermediates.pem` holds any certificate.
    has_untrusted: bool,
}

/// Adds the message and its re-verification, the certificates of the
/// sender's authority and the revocation data that decided it.
async fn add_message<'p>(
    b: &mut Bundle,
    store: &Store,
    policy: &'p Policy,
    h: &History,
    m: &MessageRow,
    received: EvalTime,
) -> Result<MessagePart<'p>, AuditError> {
    let raw = if m.body_stored {
        Some(store.read_body(&m.sha256).await?)
    } else {
        None
    };

    // The revocation data that decided the message, as archived at
    // reception. The re-verification uses exactly that (the policy's CRL
    // files of today left out); without it (recorded before evidence was
    // archived), today's CRL files.
    let authority = m
        .authority
        .as_deref()
        .and_then(|a| policy.authorities.iter().find(|x| x.id == a));
    let archive = archive(store, h.decision_record(), raw.as_deref(), authority).await?;
    let reverified = reverify(policy, &archive, raw.as_deref(), m, received)?;
    add_verification(
        b,
        policy,
        &h.id,
        m,
        raw.as_deref(),
        reverified.as_ref(),
        &archive,
    );
    add_received_encrypted(b, store, h).await?;

    // Certificates of the sender's authority; the revocation data that
    // decided (or, for older records, the CRLs loaded now).
    let authority = authority.or_else(|| {
        let id = reverified.as_ref().and_then(|v| v.authority.clone())?;
        policy.authorities.iter().find(|x| x.id == id)
    });
    let has_untrusted = add_certs_and_revocation(b, authority, &archive, raw.as_deref());
    Ok(MessagePart {
        raw,
        archive,
        authority,
        has_untrusted,
    })
}

/// Adds the message's queue entries and the receipts queued for it.
fn add_deliveries(b: &mut Bundle, h: &History) {
    b.add("delivery.json", pretty(&h.queue));
    let receipts: Vec<&AuditRecord> = h
        .events
        .iter()
        .filter(|e| e.kind == AuditKind::ReceiptQueued)
        .collect();
    b.add("receipts.json", pretty(&receipts));
}

/// Whether `--out` names a zip archive; an error when it exists (a zip) or
/// is not an empty directory.
fn check_out(out: &Path) -> Result<bool, AuditError> {
    let zip = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if zip && out.exists() {
        return Err(usage(format!("--out {}: exists", out.display())));
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(usage(format!(
            "--out {}: exists and is not an empty directory",
            out.display()
        )));
    }
    Ok(zip)
}

/// The checkpoint covering a message's records, and the records it proves.
struct Proof {
    /// The checkpoint's `.json` file.
    json: PathBuf,
    /// Its bytes, as read.
    bytes: Vec<u8>,
    checkpoint: Checkpoint,
    /// Its detached signature (`.p7s`), when there is one.
    signature: Option<Vec<u8>>,
    /// Every record from the message's first one up to the checkpoint's seq.
    records: Vec<AuditRow>,
}

impl Proof {
    /// The checkpoint of `--checkpoint`, or the first one in the checkpoint
    /// directory covering `last_seq` (written now when there is none),
    /// checked against the database; and the records `first_seq..` it covers.
    async fn gather(
        store: &Store,
        policy: &Policy,
        config: &Config,
        args: &ExportArgs,
        first_seq: i64,
        last_seq: i64,
    ) -> Result<Proof, AuditError> {
        // The checkpoint covering the last record.
        let cp_json = match &args.checkpoint {
            Some(p) => p.clone(),
            None => {
                let dir = &config.audit.checkpoint_dir;
                let existing = if dir.is_dir() {
                    checkpoint::list(dir).map_err(usage)?
                } else {
                    Vec::new()
                };
                match existing.into_iter().find(|(seq, _)| *seq >= last_seq) {
                    Some((_, p)) => p,
                    None => {
                        let tsa =
                            crate::smime::tsa::Tsa::configured(&config.evidence).map_err(usage)?;
                        checkpoint::write(store, policy, dir, &config.audit, tsa.as_ref())
                            .await
                            .map_err(|e| usage(format!("writing a checkpoint: {e}")))?
                            .json
                    }
                }
            }
        };
        let cp_bytes = std::fs::read(&cp_json)
            .map_err(|e| usage(format!("cannot read {}: {e}", cp_json.display())))?;
        let cp = Checkpoint::parse(&cp_bytes)
            .map_err(|e| usage(format!("{}: {e}", cp_json.display())))?;
        if cp.seq < last_seq {
            return Err(usage(format!(
                "checkpoint {} (seq {}) does not cover the message's last record {last_seq}",
                cp_json.display(),
                cp.seq
            )));
        }
        let cp_sig = std::fs::read(checkpoint::p7s_path(&cp_json)).ok();
        let outcome = checkpoint::compare(store, &cp).await?;
        if outcome != checkpoint::Outcome::Matches {
            return Err(AuditError::NotFound(format!(
                "the database does not match checkpoint {} ({outcome:?}): refusing to export a broken log",
                cp_json.display()
            )));
        }
        let records = store.audit_range(first_seq - 1, cp.seq).await?;
        if records.first().map(|r| r.seq) != Some(first_seq)
            || records.last().map(|r| r.seq) != Some(cp.seq)
            || records.len() as i64 != cp.seq - first_seq + 1
        {
            return Err(AuditError::NotFound(format!(
                "records {first_seq}..{} are not all in the database",
                cp.seq
            )));
        }
        Ok(Proof {
            json: cp_json,
            bytes: cp_bytes,
            checkpoint: cp,
            signature: cp_sig,
            records,
        })
    }
}

/// Re-runs the verification of `raw` (when kept) as of its reception: with
/// the archived revocation data and the policy reloaded without its CRL
/// files when there is an archive, else under `policy` as it is.
fn reverify(
    policy: &Policy,
    archive: &Archive,
    raw: Option<&[u8]>,
    m: &MessageRow,
    received: EvalTime,
) -> Result<Option<verify::Verdict>, AuditError> {
    let mut set = RevocationSet::default();
    let mut without_files = None;
    if archive.archived() {
        for (sha, der) in &archive.crls {
            match Crl::parse(der.clone(), format!("revocation/crl-{sha}.crl")) {
                Ok(crl) => set.put_crl(Arc::new(crl)),
                Err(e) => tracing::warn!("archived CRL {sha}: {e}"),
            }
        }
        let mut p = crate::policy::load(&policy.dir, EvalTime::now()).map_err(|d| {
            usage(format!(
                "reloading the policy {}: {}",
                policy.dir.display(),
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        for a in &mut p.authorities {
            a.crls.clear();
        }
        without_files = Some(p);
    }
    let reverify_policy = without_files.as_ref().unwrap_or(policy);
    let mail_from = &m.mail_from;
    Ok(raw.map(|raw| {
        verify::verify(
            reverify_policy,
            &set,
            raw,
            &Envelope {
                mail_from: (!mail_from.is_empty()).then_some(mail_from.as_str()),
                rcpt_to: &m.rcpt_to,
            },
            received,
        )
    }))
}

/// `message.eml` (when kept), `recorded.json`, `verification.json` and
/// `verification.txt`: the verdict recorded at reception beside the
/// re-verified one.
fn add_verification(
    b: &mut Bundle,
    policy: &Policy,
    id: &str,
    m: &MessageRow,
    raw: Option<&[u8]>,
    reverified: Option<&verify::Verdict>,
    archive: &Archive,
) {
    let received = received_time(m);
    let recorded = json!({
        "verdict": m.verdict, "reason": m.reason, "detail": m.detail,
        "signers": m.signers, "authority": m.authority,
        "policy_version": m.policy_version, "received_at": received.to_rfc3339(),
    });
    let verification = json!({
        "message": id,
        "recorded": recorded,
        "reverified": reverified.map(|v| v.to_json()),
        "reverified_at": received.to_rfc3339(),
        "reverified_under_policy_version": policy.version,
        "reverified_with_revocation_data": archive.describe(),
        "note": if raw.is_some() { Value::Null } else { json!("the body was not kept (rejected, or pruned by retention): only its SHA-256 remains") },
    });
    let mut vtext = format!(
        "message {id}\nrecorded at reception ({}), policy {}:\n  {} {}: {}\n\n",
        received.to_rfc3339(),
        m.policy_version,
        m.verdict.as_str().to_uppercase(),
        m.reason,
        m.detail
    );
    match reverified {
        Some(v) => {
            let _ = write!(
                vtext,
                "re-verified now on message.eml as of {} under policy {}\n({}):\n{}",
                received.to_rfc3339(),
                policy.version,
                archive.describe(),
                v.to_text()
            );
            for e in &v.revocation {
                let _ = writeln!(
                    vtext,
                    "revocation of {} (serial {}): {} {}",
                    e.subject,
                    e.serial,
                    e.method,
                    e.source.as_deref().unwrap_or("-")
                );
            }
        }
        None => vtext.push_str("not re-verified: the body was not kept, only its SHA-256\n"),
    }
    if let Some(raw) = raw {
        b.add("message.eml", raw.to_vec());
    }
    b.add("recorded.json", pretty(m));
    b.add("verification.json", pretty(&verification));
    b.add("verification.txt", vtext);
}

/// Of a message that arrived encrypted: `encryption.json` (how, to which
/// gateway certificate) and, when kept, `received-encrypted.eml`, the bytes
/// exactly as received. `message.eml` is then the decrypted signed message.
async fn add_received_encrypted(
    b: &mut Bundle,
    store: &Store,
    h: &History,
) -> Result<(), AuditError> {
    let Some(enc) = h
        .decision_record()
        .and_then(|r| r.decision())
        .and_then(|d| d.encryption)
    else {
        return Ok(());
    };
    if enc.received_stored {
        let bytes = store.read_body(&enc.received_sha256).await?;
        b.add("received-encrypted.eml", bytes);
    }
    b.add("encryption.json", pretty(&enc));
    Ok(())
}

/// `revocation/` (the archived evidence, CRLs and OCSP responses) and, for
/// the sender's authority, `certs/` (and `crls/` for messages recorded
/// before evidence was archived). Returns whether `certs/intermediates.pem`
/// holds any certificate.
fn add_certs_and_revocation(
    b: &mut Bundle,
    authority: Option<&Authority>,
    archive: &Archive,
    raw: Option<&[u8]>,
) -> bool {
    if let Some(evidence) = &archive.evidence {
        b.add("revocation/evidence.json", pretty(&json!(evidence)));
    }
    for (sha, der) in &archive.crls {
        b.add(&format!("revocation/crl-{sha}.crl"), der.clone());
    }
    for o in &archive.ocsp {
        b.add(&format!("revocation/ocsp-{}.der", o.sha256), o.der.clone());
        if let (Some(cert), Some(issuer)) = (&o.cert, &o.issuer) {
            b.add(
                &format!("revocation/ocsp-{}.cert.pem", o.sha256),
                pem("CERTIFICATE", cert),
            );
            b.add(
                &format!("revocation/ocsp-{}.issuer.pem", o.sha256),
                pem("CERTIFICATE", issuer),
            );
        }
    }
    let mut has_untrusted = false;
    if let Some(a) = authority {
        let anchors: String = a
            .anchor_certs
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect();
        // The configured intermediates and the certificates the message
        // carries (the issuing CA of a roots-only authority travels there).
        let mut untrusted: Vec<Vec<u8>> = a.intermediates.iter().map(|c| c.to_vec()).collect();
        for c in raw.map(message_certs).unwrap_or_default() {
            if !untrusted.contains(&c) {
                untrusted.push(c);
            }
        }
        let inter: String = untrusted.iter().map(|c| pem("CERTIFICATE", c)).collect();
        has_untrusted = !untrusted.is_empty();
        b.add("certs/anchors.pem", anchors.clone());
        b.add("certs/intermediates.pem", inter);
        if !archive.archived() {
            let crls: String = a.crls.iter().map(|c| pem("X509 CRL", &c.der)).collect();
            b.add("crls/crls.pem", crls.clone());
            // openssl cms has no -CRLfile: CRLs are read from the -CAfile.
            b.add("certs/anchors-and-crls.pem", format!("{anchors}{crls}"));
        }
    }
    has_untrusted
}

/// `audit/`: the records naming the message, the proof (`records.jsonl`)
/// and the script recomputing its hashes.
fn add_records(b: &mut Bundle, events: &[AuditRecord], records: &[AuditRow]) {
    b.add("audit/message-records.json", pretty(&events));
    let mut jsonl = String::new();
    for r in records {
        jsonl.push_str(
            &serde_json::to_string(&json!({
                "seq": r.seq, "at": r.at, "message_id": r.message_id, "kind": r.kind,
                "data": r.data, "prev_hash": r.prev_hash, "hash": r.hash,
            }))
            .unwrap_or_default(),
        );
        jsonl.push('\n');
    }
    b.add("audit/records.jsonl", jsonl);
    b.add("audit/verify_chain.py", VERIFY_CHAIN_PY);
}

/// `checkpoint/`: the checkpoint, its signature and the anchors of the
/// policy its signature verifies against (returned, PEM; empty when none).
fn add_checkpoint(b: &mut Bundle, policy: &Policy, proof: &Proof, cp_name: &str) -> String {
    let cp = &proof.checkpoint;
    let cp_bytes = &proof.bytes;
    b.add(&format!("checkpoint/{cp_name}.json"), cp_bytes.clone());
    let mut ca_pem = String::new();
    if let Some(sig) = &proof.signature {
        b.add(&format!("checkpoint/{cp_name}.p7s"), sig.clone());
        for a in &policy.authorities {
            for c in &a.anchor_certs {
                if checkpoint::verify_detached(
                    cp_bytes,
                    sig,
                    std::slice::from_ref(c),
                    cp.eval_time(),
                )
                .is_ok()
                    && !ca_pem.contains(&pem("CERTIFICATE", c))
                {
                    ca_pem.push_str(&pem("CERTIFICATE", c));
                }
            }
        }
        b.add("checkpoint/ca.pem", ca_pem.clone());
    }
    ca_pem
}

/// Adds `SHA256SUMS` over every file so far, then writes the bundle to
/// `out`: a zip archive, or the files under the directory.
fn write_bundle(out: &Path, zip: bool, b: &mut Bundle) -> Result<(), AuditError> {
    let mut sums = String::new();
    for (path, bytes) in &b.files {
        let _ = writeln!(sums, "{}  {path}", hex::encode(Sha256::digest(bytes)));
    }
    b.add("SHA256SUMS", sums);
    if zip {
        write_zip(out, &b.files).map_err(usage)?;
    } else {
        for (path, bytes) in &b.files {
            let full = out.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| usage(format!("cannot create {}: {e}", parent.display())))?;
            }
            std::fs::write(&full, bytes)
                .map_err(|e| usage(format!("cannot write {}: {e}", full.display())))?;
        }
    }
    Ok(())
}

/// The bundle's files as a zip archive (deflate; `verify.sh` executable),
/// written to a temporary name, fsynced, then renamed into place.
fn write_zip(out: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    use std::io::Write as _;
    let tmp = out.with_extension("zip.tmp");
    let written = (|| -> Result<(), String> {
        let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipWriter::new(file);
        for (path, bytes) in files {
            let mode = if path.ends_with(".sh") { 0o755 } else { 0o644 };
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(mode);
            zip.start_file(path.as_str(), options)
                .map_err(|e| e.to_string())?;
            zip.write_all(bytes).map_err(|e| e.to_string())?;
        }
        let file = zip.finish().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, out).map_err(|e| e.to_string())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", out.display())
    })
}

/// `v` as pretty JSON through [`Value`] (keys sorted), with a line feed.
fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let v = serde_json::to_value(v).unwrap_or_default();
    let mut s = serde_json::to_vec_pretty(&v).unwrap_or_default();
    s.push(b'\n');
    s
}

/// Step 2 of `verify.sh` with the archived revocation data.
fn revocation_checks(s: &mut String, archive: &Archive, intermediates: bool, received: EvalTime) {
    let (t, when) = (received.unix(), received.to_rfc3339());
    let _ = write!(
        s,
        "# 2. The message's S/MIME signature, chain and revocation status as of its reception\n\
         #    ({when}, -attime {t}), with the revocation data that decided it, archived then:\n\
         #    each file under revocation/ is named by its SHA-256, the name the audit record\n\
         #    of the decision gives it (step 4 checks that record).\n\
         tmp=$(mktemp -d)\ntrap 'rm -rf \"$tmp\"' EXIT\n\
         for f in revocation/crl-*.crl revocation/ocsp-*.der; do\n\
         \x20 [ -e \"$f\" ] || continue\n\
         \x20 h=$(sha256sum \"$f\" | cut -c1-64)\n\
         \x20 case \"$f\" in *-\"$h\".*) ;; *) echo \"$f: its SHA-256 is $h, not the one in its name\"; exit 1 ;; esac\n\
         done\n\
         : > \"$tmp/crls.pem\"\n\
         for f in revocation/crl-*.crl; do\n\
         \x20 [ -e \"$f\" ] || continue\n\
         \x20 openssl crl -inform DER -in \"$f\" >> \"$tmp/crls.pem\"\n\
         done\n\
         # openssl cms has no -CRLfile: it reads CRLs from the -CAfile.\n\
         cat certs/anchors.pem \"$tmp/crls.pem\" > \"$tmp/anchors-and-crls.pem\"\n"
    );
    if archive.crl_only() {
        let _ = write!(
            s,
            "openssl cms -verify -in message.eml -CAfile \"$tmp/anchors-and-crls.pem\" \\\n\
             \x20 -certfile certs/intermediates.pem -crl_check_all -purpose smimesign \\\n\
             \x20 -attime {t} -signer \"$tmp/signer.pem\" -certsout \"$tmp/certs.pem\" -out /dev/null\n\
             # The signer's certificate once more with openssl verify, each archived CRL given\n\
             # with -CRLfile.\n\
             cat certs/intermediates.pem \"$tmp/certs.pem\" > \"$tmp/untrusted.pem\"\n\
             openssl verify -CAfile certs/anchors.pem -untrusted \"$tmp/untrusted.pem\" \\\n\
             \x20 -CRLfile \"$tmp/crls.pem\" -crl_check_all -purpose smimesign -attime {t} \\\n\
             \x20 \"$tmp/signer.pem\"\n"
        );
    } else {
        // Not every certificate has a CRL: the chain without revocation,
        // then each piece of evidence on its own.
        let _ = write!(
            s,
            "#    Not every certificate of the path was judged by a CRL (see revocation/evidence.json),\n\
             #    so the chain is checked without -crl_check_all and each CRL and OCSP response alone.\n\
             openssl cms -verify -in message.eml -CAfile certs/anchors.pem \\\n\
             \x20 -certfile certs/intermediates.pem -purpose smimesign \\\n\
             \x20 -attime {t} -out /dev/null\n\
             cat certs/anchors.pem certs/intermediates.pem > \"$tmp/cas.pem\"\n"
        );
        for (sha, _) in &archive.crls {
            let _ = write!(
                s,
                "openssl crl -inform DER -in revocation/crl-{sha}.crl -CAfile \"$tmp/cas.pem\" -noout 2>&1 \\\n\
                 \x20 | grep -q 'verify OK' || {{ echo 'revocation/crl-{sha}.crl: bad signature'; exit 1; }}\n"
            );
        }
        let other = if intermediates {
            " -verify_other certs/intermediates.pem"
        } else {
            ""
        };
        for o in &archive.ocsp {
            let f = format!("revocation/ocsp-{}", o.sha256);
            if o.cert.is_none() || o.issuer.is_none() {
                let _ = writeln!(
                    s,
                    "# {f}.der ({}): the certificate or its issuer was not found; check by hand.",
                    o.subject
                );
                continue;
            }
            let _ = write!(
                s,
                "# OCSP response for {subject}: signed by a responder chaining to the anchors,\n\
                 # for this certificate, \"good\", and not past its nextUpdate at reception\n\
                 # (-validity_period: the seconds since then, plus 5 minutes).\n\
                 out=$(openssl ocsp -respin {f}.der -issuer {f}.issuer.pem -cert {f}.cert.pem \\\n\
                 \x20 -CAfile certs/anchors.pem{other} -attime {t} \\\n\
                 \x20 -validity_period $(( $(date +%s) - {t} + 300 )) 2>&1) || {{ echo \"$out\"; exit 1; }}\n\
                 echo \"$out\"\n\
                 echo \"$out\" | grep -q 'Response verify OK' || {{ echo '{f}.der does not verify'; exit 1; }}\n\
                 echo \"$out\" | grep -q ': good$' || {{ echo '{f}.der does not say good'; exit 1; }}\n",
                subject = o.subject,
            );
        }
    }
}

/// The shell commands that check the bundle (also quoted in README.txt).
#[allow(clippy::too_many_arguments)]
fn check_script(
    id: &str,
    message: bool,
    archive: &Archive,
    intermediates: bool,
    received: EvalTime,
    cp_name: &str,
    signed: bool,
    cp_time: EvalTime,
) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Run in the bundle directory. Stops at the first failure.\nset -e\n\
         # 1. Every file is as exported.\nsha256sum -c SHA256SUMS\n",
    );
    if message && archive.archived() {
        revocation_checks(&mut s, archive, intermediates, received);
    } else if message {
        let _ = write!(
            s,
            "# 2. The message's S/MIME signature, chain and revocation, as of its reception\n\
             #    ({}): trust anchors and CRLs of the sender's authority.\n\
             openssl cms -verify -in message.eml -CAfile certs/anchors-and-crls.pem \\\n\
             \x20 -certfile certs/intermediates.pem -crl_check_all \\\n\
             \x20 -attime {} -out /dev/null\n",
            received.to_rfc3339(),
            received.unix()
        );
    }
    if signed {
        let _ = write!(
            s,
            "# 3. The checkpoint's signature (gateway certificate chained to checkpoint/ca.pem,\n\
             #    as of the checkpoint's time {}).\n\
             openssl cms -verify -binary -inform DER -in checkpoint/{cp_name}.p7s \\\n\
             \x20 -content checkpoint/{cp_name}.json -CAfile checkpoint/ca.pem \\\n\
             \x20 -attime {} -out /dev/null\n",
            cp_time.to_rfc3339(),
            cp_time.unix()
        );
    }
    let _ = write!(
        s,
        "# 4. The audit records hash, one to the next, to the signed checkpoint.\n\
         python3 audit/verify_chain.py '{id}'\n"
    );
    s
}

/// The reception time of a message, to the second.
fn received_time(m: &MessageRow) -> EvalTime {
    EvalTime::from_unix(u64::try_from(m.received_at / 1000).unwrap_or(0))
}

/// The README's revocation part: the files that hold the revocation data
/// (archived at reception, or the CRLs loaded at export) and the note on
/// what step 2 judges with them.
fn revocation_text(archive: &Archive) -> (String, String) {
    if archive.archived() {
        (
            "revocation/crl-SHA.crl      the CRLs that decided the message, exactly as archived at\n\
             \x20                           reception (DER); SHA is the file's SHA-256, which the audit\n\
             \x20                           record of the decision names (\"revocation\": [...])\n\
             revocation/ocsp-SHA.der     the OCSP responses that did (DER), with .cert.pem (the\n\
             \x20                           certificate answered for) and .issuer.pem (its issuer)\n\
             revocation/evidence.json    that record's revocation evidence: per certificate of the\n\
             \x20                           path, method (crl | ocsp | none), sha256, issuer,\n\
             \x20                           this_update, next_update, source\n"
                .to_string(),
            format!(
                "Step 2 judges the certificates as of the reception time (-attime) with the\n\
                 revocation data archived at reception, not with the CRLs of today: a CRL\n\
                 issued later (one revoking the signer since, say) does not change what\n\
                 decided. The re-verification in verification.json did the same:\n{}.\n",
                archive.describe()
            ),
        )
    } else {
        (
            "crls/crls.pem               its certificate revocation lists (as loaded at export)\n\
             certs/anchors-and-crls.pem  both in one file, for openssl's -CAfile (openssl cms\n\
             \x20                           reads CRLs from there; it has no -CRLfile)\n"
                .to_string(),
            format!(
                "NOTE: {}.\n\
                 Step 2 therefore judges the certificates as of the reception time (-attime)\n\
                 with the CRLs loaded at export, so a CRL issued after the reception may not\n\
                 yet be valid at that instant (openssl then says so), and one that revokes\n\
                 the signer since makes it fail; a CRL current at reception time, if kept,\n\
                 can be given instead.\n",
                archive.describe()
            ),
        )
    }
}

/// The bundle's README: what each file holds and how to check it all.
#[allow(clippy::too_many_arguments)]
fn readme(
    id: &str,
    m: &MessageRow,
    cp: &Checkpoint,
    first_seq: i64,
    script: &str,
    body: bool,
    archive: &Archive,
    stamp_files: &str,
) -> String {
    let (crl_files, crl_note) = revocation_text(archive);
    format!(
        "EVIDENCE BUNDLE — emla message {id}\n\
         ====================================\n\n\
         Exported by the emla gateway {gateway}. Everything here can be checked with\n\
         openssl (3.x), sha256sum and python3 alone, without emla.\n\n\
         The message\n-----------\n\
         received   {received}\n\
         from       <{from}>\n\
         to         {to}\n\
         subject    {subject}\n\
         sha256     {sha}\n\
         verdict    {verdict} ({reason}): {detail}\n\n\
         {body_note}\n\n\
         Files\n-----\n\
         message.eml                 the message exactly as received (byte for byte); of one\n\
         \x20                           that arrived encrypted, the decrypted signed message\n\
         received-encrypted.eml      (encrypted only) the bytes as received; encryption.json: how\n\
         recorded.json               the message row recorded at reception (verdict, signers, ...)\n\
         verification.json / .txt    the recorded verdict, and emla verify re-run on message.eml\n\
         \x20                           as of the reception time under the policy in force at export\n\
         certs/anchors.pem           trust anchors of the sender's authority\n\
         certs/intermediates.pem     its intermediate CA certificates and those the message carries\n\
         {crl_files}\
         audit/message-records.json  the audit records that name this message\n\
         audit/records.jsonl         the chain proof (below)\n\
         audit/verify_chain.py       recomputes the chain proof\n\
         checkpoint/                 the signed checkpoint ({cp_seq}.json + .p7s) and ca.pem,\n\
         \x20                           the CA its signer (the gateway) chains to\n\
         delivery.json               deliveries (queue entries) of the message\n\
         receipts.json               audit records of receipts sent for it (may be empty)\n\
         {stamp_files}\
         SHA256SUMS                  SHA-256 of every file above\n\
         verify.sh                   the commands below, as one script\n\n\
         The chain proof\n---------------\n\
         emla's audit log is a hash chain: record n carries prev_hash (the hash of\n\
         record n-1) and hash = SHA-256 of the canonical form, six fields joined by\n\
         one line feed, no line feed at the end:\n\n\
         \x20   prev_hash \\n seq \\n at \\n kind \\n message_id-or-empty \\n data\n\n\
         (seq and at in decimal; at = ms since 1970-01-01T00:00:00Z; data is the JSON\n\
         text exactly as hashed). audit/records.jsonl holds every record from\n\
         record {first_seq}, the first that names this message, up to record {cp_seq_n},\n\
         one JSON object per line with the fields seq, at, message_id, kind, data\n\
         (the exact hashed text, as a JSON string), prev_hash and hash. Records of\n\
         other messages in that range are included because the hash of each record\n\
         depends on its full content.\n\n\
         The checkpoint checkpoint/{cp_seq}.json states that record {cp_seq_n} of the\n\
         log has hash {cp_hash}; it was written\n\
         at {cp_at} and signed by the gateway (checkpoint/{cp_seq}.p7s, CMS detached,\n\
         DER, over the .json file's exact bytes). Recomputing every hash from record\n\
         {first_seq} on and arriving at that hash proves that the records of this\n\
         message existed, exactly as here, when the checkpoint was signed: changing\n\
         any of them would change the final hash. The decision record also names\n\
         the SHA-256 of message.eml, which ties the bytes to the log.\n\n\
         Compare the fingerprint of checkpoint/ca.pem with one obtained independently\n\
         (openssl x509 -in checkpoint/ca.pem -noout -fingerprint -sha256), and keep\n\
         copies of checkpoints outside the gateway: a checkpoint you hold yourself\n\
         is the strongest proof.\n\n\
         How to check (sh verify.sh runs exactly this)\n\
         ---------------------------------------------\n\
         {script}\n\
         {crl_note}\n\
         audit/verify_chain.py:\n\n{py}",
        gateway = cp.gateway,
        received = received_time(m).to_rfc3339(),
        from = m.mail_from,
        to = m.rcpt_to.iter().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(", "),
        subject = m.headers.subject.as_deref().unwrap_or_default(),
        sha = m.sha256,
        verdict = m.verdict,
        reason = m.reason,
        detail = m.detail,
        body_note = if body {
            "message.eml is the original; its SHA-256 is the one above."
        } else {
            "The body was NOT kept (rejected message, or pruned by retention): only its\nSHA-256 above remains; a copy kept elsewhere can be matched against it."
        },
        cp_seq = format!("checkpoint-{}", cp.seq),
        cp_seq_n = cp.seq,
        cp_hash = cp.hash,
        cp_at = cp.at,
        py = VERIFY_CHAIN_PY,
    )
}

/// The bundle's files as written, for tests: relative path → absolute.
pub fn bundle_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
