//! Searching the message log: the query an auditor's filters become, and
//! the SQL it runs as (the same text on both backends).
//!
//! Results are ordered by `(received_at, id)`, newest first unless
//! ascending, and paged either by offset or by keyset: a [`Cursor`] names
//! the last row of a page, and the next page starts strictly after it, so
//! rows recorded meanwhile neither repeat nor shift a page.
//!
//! The most selective look-up drives the query: a sender, recipient or
//! signer key reads its page straight from its index table (which repeats
//! `received_at` for that purpose); otherwise `messages` is read through
//! the index matching the filters (`reason`, `authority`, `verdict`,
//! `case_ref`, `message_id`, `received_at`). The other filters are checked
//! per row.

use serde::Serialize;

use crate::reason::Reason;

/// A position in the result order: the `(received_at, id)` of a row. Its
/// text form (`RECEIVED_AT_MS:ID`) is what `--after` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// `received_at` of the row, ms since the epoch.
    pub received_at_ms: i64,
    /// The emla message id of the row.
    pub id: String,
}

impl Cursor {
    /// Parses `RECEIVED_AT_MS:ID`.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (at, id) = text.split_once(':')?;
        Some(Cursor {
            received_at_ms: at.parse().ok()?,
            id: id.to_string(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.received_at_ms, self.id)
    }
}

/// Which certificate a signer filter names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerKey {
    /// SHA-256 fingerprint of the certificate, lowercase hex.
    Sha256(String),
    /// Serial number, lowercase hex without separators.
    Serial(String),
}

/// Filters (all must hold), order and page of a search. Text values are
/// given as stored: addresses as [`index::address_key`](super::index::address_key)
/// makes them, hex as [`index::hex_key`](super::index::hex_key).
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// `received_at >= since` (ms).
    pub since_ms: Option<i64>,
    /// `received_at < until` (ms).
    pub until_ms: Option<i64>,
    /// A sender key: an address or `@domain`.
    pub sender: Option<String>,
    /// A recipient key: an address or `@domain`.
    pub recipient: Option<String>,
    /// The sender's authority is one of these (`Some(vec![])` matches
    /// nothing).
    pub authorities: Option<Vec<String>>,
    /// A signer certificate.
    pub signer: Option<SignerKey>,
    /// Reason code.
    pub reason: Option<Reason>,
    /// Accepted or rejected.
    pub verdict: Option<super::Verdict>,
    /// Some queue entry of the message is in this state.
    pub status: Option<super::DeliveryState>,
    /// The `Message-ID:` header, with or without angle brackets.
    pub message_id: Option<String>,
    /// The emla message id.
    pub id: Option<String>,
    /// The case reference (compared case-insensitively).
    pub case_ref: Option<String>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Start strictly after this row (keyset paging).
    pub after: Option<Cursor>,
    /// Rows to skip (offset paging; slower for deep pages).
    pub offset: u64,
    /// Rows to return at most.
    pub limit: u32,
}

/// One row of a search result.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MessageSummary {
    /// The emla message id.
    pub id: String,
    /// Reception time, ms since the epoch.
    pub received_at: i64,
    /// Accepted or rejected.
    pub verdict: super::Verdict,
    /// Reason code.
    pub reason: Reason,
    /// Detail of the verdict.
    pub detail: String,
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO.
    pub rcpt_to: Vec<String>,
    /// `From:` as received.
    pub header_from: Option<String>,
    /// `To:` as received.
    pub header_to: Option<String>,
    /// `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:`.
    pub message_id: Option<String>,
    /// The sender's authority.
    pub authority: Option<String>,
    /// The case reference.
    pub case_ref: Option<String>,
    /// SHA-256 of the raw message.
    pub sha256: String,
    /// Size in bytes.
    pub size: i64,
    /// Where it stands: `rejected`, or the state of its least advanced
    /// queue entry ([`super::state::summary`]); `None` for an accepted
    /// message without queue entries.
    pub state: Option<super::DeliveryState>,
}

impl MessageSummary {
    /// The cursor of this row, for the page after it.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            received_at_ms: self.received_at,
            id: self.id.clone(),
        }
    }
}

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// TEXT.
    Text(String),
    /// BIGINT / INTEGER.
    Int(i64),
}

/// The columns every search selects from `messages m`.
pub const COLUMNS: &str = "m.id, m.received_at, m.verdict, m.reason, m.detail, m.mail_from, \
     m.rcpt_to, m.header_from, m.header_to, m.subject, m.message_id, m.authority, m.case_ref, \
     m.sha256, m.size";

/// The SQL text and its binds (`$1`, `$2`, … in order).
pub fn sql(q: &SearchQuery) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = Vec::new();
    let mut bind = |b: Bind| {
        binds.push(b);
        format!("${}", binds.len())
    };
    let mut conds: Vec<String> = Vec::new();
    // The driving table: its (received_at, message id) columns order the page.
    let (from, t, i) = if let Some(s) = &q.sender {
        conds.push(format!("k.address = {}", bind(Bind::Text(s.clone()))));
        (
            "message_senders k JOIN messages m ON m.id = k.message_id".to_string(),
            "k.received_at",
            "k.message_id",
        )
    } else if let Some(r) = &q.recipient {
        conds.push(format!("k.address = {}", bind(Bind::Text(r.clone()))));
        (
            "message_recipients k JOIN messages m ON m.id = k.message_id".to_string(),
            "k.received_at",
            "k.message_id",
        )
    } else if let Some(s) = &q.signer {
        let (col, v) = match s {
            SignerKey::Sha256(v) => ("sha256", v),
            SignerKey::Serial(v) => ("serial", v),
        };
        conds.push(format!("k.{col} = {}", bind(Bind::Text(v.clone()))));
        (
            "message_signers k JOIN messages m ON m.id = k.message_id".to_string(),
            "k.received_at",
            "k.message_id",
        )
    } else {
        ("messages m".to_string(), "m.received_at", "m.id")
    };
    // Secondary index-table filters, checked per row by primary key.
    if q.sender.is_some() {
        if let Some(r) = &q.recipient {
            conds.push(format!(
                "EXISTS (SELECT 1 FROM message_recipients r WHERE r.address = {} \
                 AND r.received_at = m.received_at AND r.message_id = m.id)",
                bind(Bind::Text(r.clone()))
            ));
        }
    }
    if q.sender.is_some() || q.recipient.is_some() {
        if let Some(s) = &q.signer {
            let (col, v) = match s {
                SignerKey::Sha256(v) => ("sha256", v),
                SignerKey::Serial(v) => ("serial", v),
            };
            conds.push(format!(
                "EXISTS (SELECT 1 FROM message_signers s WHERE s.{col} = {} \
                 AND s.received_at = m.received_at AND s.message_id = m.id)",
                bind(Bind::Text(v.clone()))
            ));
        }
    }
    if let Some(since) = q.since_ms {
        conds.push(format!("{t} >= {}", bind(Bind::Int(since))));
    }
    if let Some(until) = q.until_ms {
        conds.push(format!("{t} < {}", bind(Bind::Int(until))));
    }
    if let Some(auths) = &q.authorities {
        if auths.is_empty() {
            conds.push("1 = 0".into());
        } else if auths.len() == 1 {
            conds.push(format!(
                "m.authority = {}",
                bind(Bind::Text(auths[0].clone()))
            ));
        } else {
            let list: Vec<String> = auths.iter().map(|a| bind(Bind::Text(a.clone()))).collect();
            conds.push(format!("m.authority IN ({})", list.join(", ")));
        }
    }
    if let Some(r) = &q.reason {
        conds.push(format!(
            "m.reason = {}",
            bind(Bind::Text(r.as_str().to_string()))
        ));
    }
    if let Some(v) = &q.verdict {
        conds.push(format!(
            "m.verdict = {}",
            bind(Bind::Text(v.as_str().to_string()))
        ));
    }
    if let Some(s) = &q.status {
        conds.push(format!(
            "EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id AND q.status IN ({}))",
            super::state::sql_names(&[*s])
        ));
    }
    if let Some(mid) = &q.message_id {
        let bare = mid
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        let a = bind(Bind::Text(bare.clone()));
        let b = bind(Bind::Text(format!("<{bare}>")));
        conds.push(format!("m.message_id IN ({a}, {b})"));
    }
    if let Some(id) = &q.id {
        conds.push(format!("m.id = {}", bind(Bind::Text(id.clone()))));
    }
    if let Some(c) = &q.case_ref {
        conds.push(format!(
            "upper(m.case_ref) = upper({})",
            bind(Bind::Text(c.trim().to_string()))
        ));
    }
    let (cmp, dir) = if q.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(c) = &q.after {
        let at = bind(Bind::Int(c.received_at_ms));
        let id = bind(Bind::Text(c.id.clone()));
        conds.push(format!("({t}, {i}) {cmp} ({at}, {id})"));
    }
    let limit = bind(Bind::Int(i64::from(q.limit)));
    let offset = bind(Bind::Int(i64::try_from(q.offset).unwrap_or(i64::MAX)));
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS}, {} FROM {from}{where_} ORDER BY {t} {dir}, {i} {dir} \
         LIMIT {limit} OFFSET {offset}",
        super::state::summary_rank_sql()
    );
    (sql, binds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            received_at_ms: 1_767_225_600_000,
            id: "20260101T000000Z-ab@gw:x".into(),
        };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        assert_eq!(Cursor::parse("x:y"), None);
        assert_eq!(Cursor::parse("12"), None);
    }

    #[test]
    fn recipient_drives_and_binds_in_order() {
        let q = SearchQuery {
            recipient: Some("bob@b.example".into()),
            reason: Some(Reason::Ok),
            since_ms: Some(5),
            limit: 50,
            ..Default::default()
        };
        let (sql, binds) = sql(&q);
        assert!(
            sql.contains("FROM message_recipients k JOIN messages m"),
            "{sql}"
        );
        assert!(
            sql.contains("ORDER BY k.received_at DESC, k.message_id DESC"),
            "{sql}"
        );
        assert_eq!(
            binds,
            vec![
                Bind::Text("bob@b.example".into()),
                Bind::Int(5),
                Bind::Text("ok".into()),
                Bind::Int(50),
                Bind::Int(0)
            ]
        );
    }
}
