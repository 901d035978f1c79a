//! The receipts and timestamp tokens of an evidence bundle
//! ([`super::export`]): each receipt issued for the message as it was sent
//! (`receipts/ID.eml`), each RFC 3161 token on its own (`timestamps/`,
//! DER TimeStampToken) with the TSA's CA, and the steps of `verify.sh`
//! that check them without emla: the receipt's signature (`openssl cms
//! -verify`), its bytes and the log position it names against the bundle's
//! records (`audit/verify_receipts.py`), and each token with `openssl ts
//! -verify` over SHA-256 of the signature value it stamps, taken out of the
//! signature as README.md shows.

use std::fmt::Write as _;

use crate::clock::EvalTime;
use crate::smime::tsa;
use crate::store::payload::ReceiptQueued;
use crate::store::{AuditRecord, Store};

/// The checker written into every bundle as `audit/verify_receipts.py`.
pub const VERIFY_RECEIPTS_PY: &str = r#"# Checks each receipt under receipts/ against audit/records.jsonl: a
# receipt.queued record names its id and the SHA-256 of its bytes, and the
# log position it states (the record of its event, by kind and content
# hash, after the head it names) is in the records. Usage:
# python3 audit/verify_receipts.py
import email, email.policy, hashlib, json, os, sys
records = [json.loads(l) for l in open("audit/records.jsonl", encoding="utf-8")]
by_seq = {r["seq"]: r for r in records}
def hash_at(seq):
    if seq in by_seq:
        return by_seq[seq]["hash"]
    if records and seq == records[0]["seq"] - 1:
        return records[0]["prev_hash"]
    return None
def claim(msg):
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "application/json":
            v = json.loads(part.get_payload(decode=True))
            a = v["audit"]
            cp = a.get("checkpoint")
            return (v["message_id"], a["record"]["kind"], a["record"]["content_sha256"],
                    a["after"]["seq"], a["after"]["hash"], cp and (cp["seq"], cp["hash"]))
        if ctype == "message/delivery-status":
            text = part.as_bytes().decode("utf-8", "replace")
            fields = {}
            for line in text.splitlines():
                if ":" in line:
                    k, v = line.split(":", 1)
                    fields.setdefault(k.strip().lower(), v.strip())
            rec = [i.strip() for i in fields["x-emla-audit-record"].split(";")]
            p = dict(i.split("=", 1) for i in rec[1:] if "=" in i)
            cp = fields.get("x-emla-audit-checkpoint", "none")
            cpd = None if cp == "none" else dict(
                i.strip().split("=", 1) for i in cp.split(";") if "=" in i)
            return (fields["x-emla-message-id"], rec[0], p["content-sha256"],
                    int(p["after-seq"]), p["after-hash"], cpd and (int(cpd["seq"]), cpd["hash"]))
    sys.exit("no receipt.json nor delivery-status part")
names = sorted(os.listdir("receipts")) if os.path.isdir("receipts") else []
for name in names:
    rid = name[:-len(".eml")]
    raw = open(os.path.join("receipts", name), "rb").read()
    sha = hashlib.sha256(raw).hexdigest()
    queued = [r for r in records if r["kind"] == "receipt.queued"
              and json.loads(r["data"]).get("receipt_id") == rid]
    if not queued:
        sys.exit("receipts/%s: no receipt.queued record names it" % name)
    if json.loads(queued[0]["data"]).get("sha256") != sha:
        sys.exit("receipts/%s: its SHA-256 %s is not the one its receipt.queued record %d names"
                 % (name, sha, queued[0]["seq"]))
    mid, kind, content, after_seq, after_hash, cp = claim(
        email.message_from_bytes(raw, policy=email.policy.compat32))
    held = hash_at(after_seq)
    if held is not None and held != after_hash:
        sys.exit("receipts/%s names record %d with hash %s, the log has %s"
                 % (name, after_seq, after_hash, held))
    found = [r for r in records if r["seq"] > after_seq and r["kind"] == kind
             and hashlib.sha256("\n".join([r["kind"], r["message_id"] or "", r["data"]])
                                .encode("utf-8")).hexdigest() == content]
    if not found:
        sys.exit("receipts/%s: no %s record of %s after record %d with content SHA-256 %s"
                 % (name, kind, mid, after_seq, content))
    if cp and hash_at(cp[0]) not in (None, cp[1]):
        sys.exit("receipts/%s names checkpoint record %d with hash %s, the log has %s"
                 % (name, cp[0], cp[1], hash_at(cp[0])))
    print("receipt OK: receipts/%s (%s of %s is record %d)" % (name, kind, mid, found[0]["seq"]))
"#;

/// What [`add`] put in the bundle, for `verify.sh` and README.txt.
#[derive(Default)]
pub struct Added {
    /// Receipt ids, each `receipts/ID.eml`.
    pub receipts: Vec<String>,
    /// Tokens: `(signature source, token file)`; the source is
    /// `checkpoint/…p7s` or `receipts/ID.eml`.
    pub tokens: Vec<(String, String)>,
    /// Whether `timestamps/tsa-ca.pem` is there.
    pub tsa_ca: bool,
    /// What could not be included, for README.txt.
    pub notes: Vec<String>,
}

/// Adds the receipts named by `events`' `receipt.queued` records and every
/// timestamp token (theirs and the checkpoint's `cp_sig`) to `b`.
pub(super) async fn add(
    b: &mut super::export::Bundle,
    store: &Store,
    config: &crate::config::Config,
    events: &[AuditRecord],
    cp_p7s: Option<(&str, &[u8])>,
) -> Added {
    let mut a = Added::default();
    if let Some((path, der)) = cp_p7s {
        token_file(b, &mut a, path, der, &format!("timestamps/{}", stem(path)));
    }
    for q in events
        .iter()
        .filter_map(AuditRecord::payload::<ReceiptQueued>)
    {
        let id = q.receipt_id.clone();
        let raw = match store.read_body(&q.sha256).await {
            Ok(raw) => raw,
            Err(e) => {
                a.notes
                    .push(format!("receipt {id}: its bytes are not kept ({e})"));
                continue;
            }
        };
        let path = format!("receipts/{id}.eml");
        match crate::smime::mime::Entity::parse(&raw)
            .map_err(|e| e.to_string())
            .and_then(|top| crate::smime::extract(&top).map_err(|e| e.to_string()))
        {
            Ok(c) => token_file(
                b,
                &mut a,
                &path,
                &c.cms_der,
                &format!("timestamps/receipt-{id}"),
            ),
            Err(e) => a.notes.push(format!("{path}: no signature found ({e})")),
        }
        b.add(&path, raw);
        a.receipts.push(id);
    }
    if !a.receipts.is_empty() {
        b.add("audit/verify_receipts.py", VERIFY_RECEIPTS_PY);
    }
    if !a.tokens.is_empty() {
        match config.evidence.tsa.as_ref().map(|t| std::fs::read(&t.ca)) {
            Some(Ok(pem)) => {
                b.add("timestamps/tsa-ca.pem", pem);
                a.tsa_ca = true;
            }
            Some(Err(e)) => a.notes.push(format!("the TSA CA ([evidence] tsa_ca): {e}")),
            None => a
                .notes
                .push("no [evidence] tsa_ca configured: the tokens' TSA is not checked".into()),
        }
    }
    a
}

/// `timestamps/NAME.tst` with the token of the CMS signature `der` (from
/// `source`), if it has one.
fn token_file(b: &mut super::export::Bundle, a: &mut Added, source: &str, der: &[u8], name: &str) {
    match tsa::token_of(der) {
        Ok(Some(token)) => {
            let file = format!("{name}.tst");
            b.add(&file, token);
            a.tokens.push((source.to_owned(), file));
        }
        Ok(None) => a
            .notes
            .push(format!("{source}: signed without a timestamp token")),
        Err(e) => a.notes.push(format!("{source}: {e}")),
    }
}

fn stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// Steps 5 and 6 of `verify.sh`: the receipts (signature as of `cp_time`,
/// with the checkpoint's CA, then against the records) and the tokens.
pub(super) fn script(s: &mut String, a: &Added, signed: bool, cp_time: EvalTime) {
    if !a.receipts.is_empty() {
        s.push_str(
            "# 5. The receipts sent for the message: the gateway's signature (checkpoint/ca.pem),\n\
             #    then their bytes and the log position each names, against audit/records.jsonl.\n",
        );
        if signed {
            for id in &a.receipts {
                let _ = writeln!(
                    s,
                    "openssl cms -verify -in receipts/{id}.eml -CAfile checkpoint/ca.pem \
                     -attime {} -out /dev/null",
                    cp_time.unix()
                );
            }
        }
        s.push_str("python3 audit/verify_receipts.py\n");
    }
    if a.tokens.is_empty() || !a.tsa_ca {
        return;
    }
    s.push_str(
        "# 6. Each RFC 3161 token (timestamps/*.tst) is the one in its signature and stamps\n\
         #    SHA-256 of that signature's value (README.md, \"Trusted timestamps\").\n\
         ts_tmp=$(mktemp -d)\ntrap 'rm -rf \"${tmp:-}\" \"$ts_tmp\"' EXIT\n\
         tlv() { sed -E 's/^ *([0-9]+):d=[0-9]+ +hl= *([0-9]+) +l= *([0-9]+).*/\\1 \\2 \\3/'; }\n\
         check_token() {\n\
         \x20 sig=$1 tst=$2\n\
         \x20 openssl asn1parse -inform DER -in \"$sig\" > \"$ts_tmp/cms.txt\"\n\
         \x20 set -- $(awk '/d=5 / && /OCTET STRING/ {print; exit}' \"$ts_tmp/cms.txt\" | tlv)\n\
         \x20 digest=$(tail -c +$(($1 + $2 + 1)) \"$sig\" | head -c \"$3\" | openssl dgst -sha256 -r | cut -d' ' -f1)\n\
         \x20 set -- $(awk '/id-smime-aa-timeStampToken/ {t=1} t && /d=8 / {print; exit}' \"$ts_tmp/cms.txt\" | tlv)\n\
         \x20 tail -c +$(($1 + 1)) \"$sig\" | head -c $(($2 + $3)) > \"$ts_tmp/token.tst\"\n\
         \x20 cmp -s \"$ts_tmp/token.tst\" \"$tst\" || { echo \"$tst: not the token in its signature\"; exit 1; }\n\
         \x20 openssl ts -verify -digest \"$digest\" -in \"$tst\" -token_in -CAfile timestamps/tsa-ca.pem\n\
         }\n",
    );
    for (source, tst) in &a.tokens {
        if source.ends_with(".eml") {
            let _ = writeln!(
                s,
                "openssl cms -cmsout -in {source} -outform DER -out \"$ts_tmp/sig.p7s\"\n\
                 check_token \"$ts_tmp/sig.p7s\" {tst}"
            );
        } else {
            let _ = writeln!(s, "check_token {source} {tst}");
        }
    }
}

/// README.txt's lines for these files.
pub(super) fn readme(a: &Added) -> String {
    let mut s = String::new();
    if !a.receipts.is_empty() {
        s.push_str(
            "receipts/ID.eml             the receipts sent for the message, as sent (signed)\n\
             audit/verify_receipts.py    checks them against audit/records.jsonl\n",
        );
    }
    if !a.tokens.is_empty() {
        s.push_str(
            "timestamps/*.tst            each RFC 3161 timestamp token (DER TimeStampToken), taken\n\
             \x20                           out of the checkpoint's and the receipts' signatures\n",
        );
    }
    if a.tsa_ca {
        s.push_str("timestamps/tsa-ca.pem       the CA the TSA certificate chains to ([evidence] tsa_ca)\n");
    }
    for n in &a.notes {
        let _ = writeln!(s, "NOTE: {n}");
    }
    s
}
