//! The hash chain over the `audit` table.
//!
//! Every audit record carries `prev_hash` (the `hash` of the record before
//! it, or 64 zeros for the first record) and `hash`, the lowercase hex
//! SHA-256 of this canonical form, fields joined by one line feed (`\n`,
//! 0x0A) and no line feed at the end:
//!
//! ```text
//! prev_hash_hex "\n" seq "\n" at_ms "\n" kind "\n" message_id_or_empty "\n" data_json
//! ```
//!
//! - `prev_hash_hex`: 64 lowercase hex digits;
//! - `seq`, `at_ms`: decimal integers as stored (no sign, no padding);
//! - `kind`: the event kind, e.g. `message.accepted`;
//! - `message_id_or_empty`: the emla message id, or nothing when NULL;
//! - `data_json`: the `data` column, byte for byte (compact serde_json
//!   text, which never contains a raw line feed).
//!
//! `kind` and `message_id` may not contain a line feed, so the form is
//! unambiguous. Records are numbered 1, 2, 3… without gaps, and the single
//! row of `audit_head` holds the seq and hash of the last one, updated in the
//! same transaction as every append. `docs/audit-chain.md` shows how to
//! re-check the chain with `sqlite3` (or `psql`) and `sha256sum`.

use sha2::{Digest, Sha256};

use super::ChainCheck;

/// `prev_hash` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical bytes a record's hash is computed over.
pub fn canonical(
    prev_hash: &str,
    seq: i64,
    at_ms: i64,
    kind: &str,
    message_id: Option<&str>,
    data_json: &str,
) -> String {
    format!(
        "{prev_hash}\n{seq}\n{at_ms}\n{kind}\n{}\n{data_json}",
        message_id.unwrap_or("")
    )
}

/// The hash of a record: lowercase hex SHA-256 of its [`canonical`] form.
pub fn record_hash(canonical_form: &str) -> String {
    hex::encode(Sha256::digest(canonical_form.as_bytes()))
}

/// What a record says, without where it stands: the lowercase hex SHA-256
/// of the last three fields of [`canonical`] (`kind "\n" message_id "\n"
/// data`). A receipt names its event by this hash, which is known before
/// the record's seq, time and `prev_hash` are (see
/// `docs/evidence-vocabulary.md`, "Receipts anchor the log").
pub fn content_hash(kind: &str, message_id: Option<&str>, data_json: &str) -> String {
    let form = format!("{kind}\n{}\n{data_json}", message_id.unwrap_or(""));
    hex::encode(Sha256::digest(form.as_bytes()))
}

/// One row of `audit` as stored.
#[derive(Clone, Debug)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// Time, ms since the epoch.
    pub at: i64,
    /// The message it concerns.
    pub message_id: Option<String>,
    /// Event kind.
    pub kind: String,
    /// The JSON text exactly as hashed.
    pub data: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

impl AuditRow {
    /// The hash its fields give (what `hash` must be).
    pub fn computed_hash(&self) -> String {
        record_hash(&canonical(
            &self.prev_hash,
            self.seq,
            self.at,
            &self.kind,
            self.message_id.as_deref(),
            &self.data,
        ))
    }

    /// Its [`content_hash`].
    pub fn content_hash(&self) -> String {
        content_hash(&self.kind, self.message_id.as_deref(), &self.data)
    }

    /// Its kind, when it is one of the [`AuditKind`](super::AuditKind)s
    /// (the text is kept as stored: the hash covers it).
    pub fn audit_kind(&self) -> Option<super::AuditKind> {
        super::AuditKind::parse(&self.kind)
    }
}

/// Walks the chain record by record (in seq order) with bounded memory and
/// reports the first broken link.
#[derive(Debug)]
pub struct Verifier {
    last_seq: i64,
    last_hash: String,
    records: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            last_seq: 0,
            last_hash: GENESIS.to_string(),
            records: 0,
        }
    }
}

impl Verifier {
    /// A verifier for a chain whose records up to `seq` were pruned: the
    /// next record must be `seq + 1` and link to `hash` (the anchor stands
    /// in for the genesis; see `docs/audit-chain.md`, "Pruning").
    pub fn from_anchor(seq: i64, hash: &str) -> Self {
        Verifier {
            last_seq: seq,
            last_hash: hash.to_string(),
            records: 0,
        }
    }

    /// Checks the next record; `Err` is the first problem found.
    pub fn push(&mut self, row: &AuditRow) -> Result<(), ChainCheck> {
        let expected = self.last_seq + 1;
        if row.seq != expected {
            let problem = if row.seq < expected {
                format!(
                    "record {} appears after record {} (seq not increasing)",
                    row.seq, self.last_seq
                )
            } else if self.last_seq == 0 {
                format!("record 1 is missing (the chain starts at seq {})", row.seq)
            } else {
                format!(
                    "record {expected} is missing (seq jumps from {} to {})",
                    self.last_seq, row.seq
                )
            };
            return Err(broken(expected, problem));
        }
        let computed = row.computed_hash();
        if computed != row.hash {
            return Err(broken(
                row.seq,
                format!(
                    "record {} was edited (stored hash {} != computed {computed})",
                    row.seq, row.hash
                ),
            ));
        }
        if row.prev_hash != self.last_hash {
            let problem = if self.last_seq == 0 {
                format!(
                    "record 1 does not start the chain (prev_hash {} is not {GENESIS})",
                    row.prev_hash
                )
            } else {
                format!(
                    "record {} does not link to record {} (reordered or replaced: \
                     prev_hash {} != hash of record {} {})",
                    row.seq, self.last_seq, row.prev_hash, self.last_seq, self.last_hash
                )
            };
            return Err(broken(row.seq, problem));
        }
        self.last_seq = row.seq;
        self.last_hash.clone_from(&row.hash);
        self.records += 1;
        Ok(())
    }

    /// The seq of the last record checked (0 before any).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Compares the walked chain with `audit_head` (`head_seq`, `head_hash`).
    pub fn finish(self, head_seq: i64, head_hash: &str) -> ChainCheck {
        if head_seq > self.last_seq {
            let last = if self.last_seq == 0 {
                "there are no records".to_string()
            } else {
                format!("the last record is {}", self.last_seq)
            };
            return broken(
                self.last_seq + 1,
                format!("chain head says seq {head_seq} but {last} (records deleted from the end)"),
            );
        }
        if head_seq < self.last_seq {
            return broken(
                head_seq + 1,
                format!(
                    "record {} lies beyond the chain head (seq {head_seq}): appended outside emla",
                    head_seq + 1
                ),
            );
        }
        if head_hash != self.last_hash {
            return broken(
                self.last_seq,
                format!(
                    "chain head hash {head_hash} != hash of record {} {} (head or last record replaced)",
                    self.last_seq, self.last_hash
                ),
            );
        }
        ChainCheck::Intact {
            records: self.records,
            head: if self.records == 0 {
                String::new()
            } else {
                self.last_hash
            },
        }
    }
}

fn broken(seq: i64, problem: String) -> ChainCheck {
    ChainCheck::Broken { seq, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let data = format!("{{\"n\":{seq}}}");
                let hash = record_hash(&canonical(
                    &prev,
                    seq,
                    1000 + seq,
                    "test",
                    Some("m1"),
                    &data,
                ));
                let row = AuditRow {
                    seq,
                    at: 1000 + seq,
                    message_id: Some("m1".into()),
                    kind: "test".into(),
                    data,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn check(rows: &[AuditRow], head_seq: i64, head_hash: &str) -> ChainCheck {
        let mut v = Verifier::default();
        for r in rows {
            if let Err(b) = v.push(r) {
                return b;
            }
        }
        v.finish(head_seq, head_hash)
    }

    fn broken_seq(c: ChainCheck) -> (i64, String) {
        match c {
            ChainCheck::Broken { seq, problem } => (seq, problem),
            other => panic!("expected broken, got {other:?}"),
        }
    }

    #[test]
    fn worked_example_matches_docs() {
        // The example of docs/audit-chain.md.
        let form = canonical(
            GENESIS,
            1,
            1767225600000,
            "message.accepted",
            Some("m1"),
            r#"{"reason":"ok"}"#,
        );
        assert_eq!(
            form,
            format!("{GENESIS}\n1\n1767225600000\nmessage.accepted\nm1\n{{\"reason\":\"ok\"}}")
        );
        assert_eq!(
            record_hash(&form),
            "5fdf26d9d2dc9d5c5549d88a88f9d243aba9f0590d02cac09922a9e0c7c7f937"
        );
    }

    #[test]
    fn intact_and_empty() {
        let rows = chain(5);
        let head = rows[4].hash.clone();
        assert_eq!(
            check(&rows, 5, &head),
            ChainCheck::Intact {
                records: 5,
                head: head.clone()
            }
        );
        assert_eq!(
            check(&[], 0, GENESIS),
            ChainCheck::Intact {
                records: 0,
                head: String::new()
            }
        );
    }

    #[test]
    fn edited_record() {
        let mut rows = chain(5);
        let head = rows[4].hash.clone();
        rows[2].data = "{\"n\":99}".into();
        let (seq, p) = broken_seq(check(&rows, 5, &head));
        assert_eq!(seq, 3);
        assert!(p.contains("record 3 was edited"), "{p}");
    }

    #[test]
    fn rehashed_record_breaks_link() {
        let mut rows = chain(5);
        let head = rows[4].hash.clone();
        rows[2].data = "{\"n\":99}".into();
        rows[2].hash = rows[2].computed_hash();
        let (seq, p) = broken_seq(check(&rows, 5, &head));
        assert_eq!(seq, 4);
        assert!(p.contains("record 4 does not link to record 3"), "{p}");
    }

    #[test]
    fn missing_records() {
        let rows = chain(5);
        let head = rows[4].hash.clone();
        let mut middle = rows.clone();
        middle.remove(2);
        let (seq, p) = broken_seq(check(&middle, 5, &head));
        assert_eq!(seq, 3);
        assert!(p.contains("seq jumps from 2 to 4"), "{p}");

        let (seq, p) = broken_seq(check(&rows[1..], 5, &head));
        assert_eq!(seq, 1);
        assert!(p.contains("record 1 is missing"), "{p}");

        let (seq, p) = broken_seq(check(&rows[..4], 5, &head));
        assert_eq!(seq, 5);
        assert!(
            p.contains("chain head says seq 5 but the last record is 4"),
            "{p}"
        );

        let (seq, p) = broken_seq(check(&[], 5, &head));
        assert_eq!(seq, 1);
        assert!(p.contains("there are no records"), "{p}");
    }

    #[test]
    fn beyond_head_and_wrong_head_hash() {
        let rows = chain(5);
        let (seq, _) = broken_seq(check(&rows, 4, &rows[3].hash));
        assert_eq!(seq, 5);
        let (seq, p) = broken_seq(check(&rows, 5, GENESIS));
        assert_eq!(seq, 5);
        assert!(p.contains("chain head hash"), "{p}");
    }

    #[test]
    fn bad_genesis() {
        let mut rows = chain(1);
        rows[0].prev_hash = "1".repeat(64);
        rows[0].hash = rows[0].computed_hash();
        let (seq, p) = broken_seq(check(&rows, 1, &rows[0].hash.clone()));
        assert_eq!(seq, 1);
        assert!(p.contains("does not start the chain"), "{p}");
    }
}
