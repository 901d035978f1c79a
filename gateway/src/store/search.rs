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
    /// The request kind (`[[kind]]` id) it declared.
    pub kind: Option<String>,
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
    /// The request kind it declared.
    pub kind: Option<String>,
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
     m.kind, m.sha256, m.size";

/// The SQL text and its binds (`$1`, `$2`, … in order).
pub fn sql(q: &SearchQuery) -> (String, Vec<Bind>) {
    let mut w = Where::default();
    // The driving table: its (received_at, message id) columns order the page.
    let (from, t, i) = driving_table(q, &mut w);
    index_filters(q, &mut w);
    row_filters(q, t, &mut w);
    let (cmp, dir) = if q.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(c) = &q.after {
        let at = w.bind(Bind::Int(c.received_at_ms));
        let id = w.bind(Bind::text(&c.id));
        w.conds.push(format!("({t}, {i}) {cmp} ({at}, {id})"));
    }
    let limit = w.bind(Bind::Int(i64::from(q.limit)));
    let offset = w.bind(Bind::Int(i64::try_from(q.offset).unwrap_or(i64::MAX)));
    let where_ = if w.conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", w.conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS}, {} FROM {from}{where_} ORDER BY {t} {dir}, {i} {dir} \
         LIMIT {limit} OFFSET {offset}",
        super::state::summary_rank_sql()
    );
    (sql, w.binds)
}

impl Bind {
    fn text(s: &str) -> Bind {
        Bind::Text(s.to_string())
    }
}

/// The conditions of a search and the values bound in them, in order.
#[derive(Default)]
struct Where {
    conds: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    /// The placeholder of `value`, bound next.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// Adds the condition `cond` makes of the placeholder of `value`.
    fn cond(&mut self, value: Bind, cond: impl FnOnce(String) -> String) {
        let placeholder = self.bind(value);
        self.conds.push(cond(placeholder));
    }
}

/// The column of the signer index a signer key is looked up in.
fn signer_column(s: &SignerKey) -> (&'static str, Bind) {
    match s {
        SignerKey::Sha256(v) => ("sha256", Bind::text(v)),
        SignerKey::Serial(v) => ("serial", Bind::text(v)),
    }
}

/// The table that drives the query (the most selective look-up), with its
/// `received_at` and message id columns; its look-up goes into `w`.
fn driving_table(q: &SearchQuery, w: &mut Where) -> (String, &'static str, &'static str) {
    let (table, column, key) = if let Some(s) = &q.sender {
        ("message_senders", "address", Bind::text(s))
    } else if let Some(r) = &q.recipient {
        ("message_recipients", "address", Bind::text(r))
    } else if let Some(s) = &q.signer {
        let (column, key) = signer_column(s);
        ("message_signers", column, key)
    } else {
        return ("messages m".to_string(), "m.received_at", "m.id");
    };
    w.cond(key, |p| format!("k.{column} = {p}"));
    (
        format!("{table} k JOIN messages m ON m.id = k.message_id"),
        "k.received_at",
        "k.message_id",
    )
}

/// The index-table filters that do not drive: checked per row by primary
/// key.
fn index_filters(q: &SearchQuery, w: &mut Where) {
    if let (Some(_), Some(r)) = (&q.sender, &q.recipient) {
        w.cond(Bind::text(r), |p| {
            format!(
                "EXISTS (SELECT 1 FROM message_recipients r WHERE r.address = {p} \
                 AND r.received_at = m.received_at AND r.message_id = m.id)"
            )
        });
    }
    if q.sender.is_some() || q.recipient.is_some() {
        if let Some(s) = &q.signer {
            let (col, key) = signer_column(s);
            w.cond(key, |p| {
                format!(
                    "EXISTS (SELECT 1 FROM message_signers s WHERE s.{col} = {p} \
                     AND s.received_at = m.received_at AND s.message_id = m.id)"
                )
            });
        }
    }
}

/// The filters on the row of `messages` (and its queue entries); `t` is
/// the driving table's `received_at` column.
fn row_filters(q: &SearchQuery, t: &str, w: &mut Where) {
    if let Some(since) = q.since_ms {
        w.cond(Bind::Int(since), |p| format!("{t} >= {p}"));
    }
    if let Some(until) = q.until_ms {
        w.cond(Bind::Int(until), |p| format!("{t} < {p}"));
    }
    match q.authorities.as_deref() {
        None => {}
        Some([]) => w.conds.push("1 = 0".into()),
        Some([one]) => w.cond(Bind::text(one), |p| format!("m.authority = {p}")),
        Some(many) => {
            let list: Vec<String> = many.iter().map(|a| w.bind(Bind::text(a))).collect();
            w.conds
                .push(format!("m.authority IN ({})", list.join(", ")));
        }
    }
    if let Some(r) = q.reason {
        w.cond(Bind::text(r.as_str()), |p| format!("m.reason = {p}"));
    }
    if let Some(v) = q.verdict {
        w.cond(Bind::text(v.as_str()), |p| format!("m.verdict = {p}"));
    }
    if let Some(s) = q.status {
        w.conds.push(format!(
            "EXISTS (SELECT 1 FROM queue q WHERE q.message_id = m.id AND q.status IN ({}))",
            super::state::sql_names(&[s])
        ));
    }
    if let Some(mid) = &q.message_id {
        let bare = mid.trim().trim_start_matches('<').trim_end_matches('>');
        let a = w.bind(Bind::text(bare));
        let b = w.bind(Bind::Text(format!("<{bare}>")));
        w.conds.push(format!("m.message_id IN ({a}, {b})"));
    }
    if let Some(id) = &q.id {
        w.cond(Bind::text(id), |p| format!("m.id = {p}"));
    }
    if let Some(c) = &q.case_ref {
        w.cond(Bind::text(c.trim()), |p| {
            format!("upper(m.case_ref) = upper({p})")
        });
    }
    if let Some(k) = &q.kind {
        w.cond(Bind::text(k.trim()), |p| format!("m.kind = {p}"));
    }
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
