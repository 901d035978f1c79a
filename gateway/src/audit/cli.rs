//! `emla audit search` and `emla audit show`: arguments (clap) and runners.
//!
//! `main.rs` parses [`SearchArgs`] / [`ShowArgs`], opens the store (and, for
//! `--country`, the policy: see [`SearchArgs::needs_policy`]), calls
//! [`search`] / [`show`], prints the `String` they return and exits with
//! [`AuditError::exit_code`] on error.

use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};

use super::{render, show::History, AuditError};
use crate::policy::Policy;
use crate::reason::Reason;
use crate::store::index::{address_key, hex_key};
use crate::store::{Cursor, DeliveryState, SearchQuery, SignerKey, Store, Verdict};

/// Default page size of `emla audit search`.
pub const DEFAULT_LIMIT: u32 = 50;

/// Largest page `--limit` accepts.
pub const MAX_LIMIT: u32 = 10_000;

/// The verdict a search asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    /// Accepted messages.
    Accept,
    /// Rejected messages.
    Reject,
}

/// `emla audit search`: find messages in the log. Filters combine with AND;
/// the output is one page, newest first.
#[derive(Clone, Debug, Default, Args)]
#[command(group(ArgGroup::new("format").args(["json", "csv"])))]
#[command(group(ArgGroup::new("paging").args(["page", "after"])))]
pub struct SearchArgs {
    /// Configuration file naming the database (default: the embedded
    /// default). Read by `main`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Policy directory, read only to map `--country` to authorities
    /// (default: the configuration's `policy_dir`, `policy/` without one).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Received at or after this instant (RFC 3339, or a date YYYY-MM-DD
    /// meaning its midnight UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before this instant (RFC 3339, or YYYY-MM-DD).
    #[arg(long)]
    pub until: Option<String>,
    /// Sender: MAIL FROM or a `From:` address (case-insensitive);
    /// `@domain` (or a bare domain) matches any address of that domain.
    #[arg(long)]
    pub from: Option<String>,
    /// Recipient: RCPT TO or a `To:` address; `@domain` as for --from.
    #[arg(long)]
    pub to: Option<String>,
    /// Sender's authority id; repeat for several.
    #[arg(long)]
    pub authority: Vec<String>,
    /// Sender's country (two letters), mapped to authority ids by the
    /// policy; repeat for several.
    #[arg(long)]
    pub country: Vec<String>,
    /// Signer certificate: SHA-256 fingerprint (64 hex digits) or serial
    /// number (hex; `:` allowed).
    #[arg(long)]
    pub signer: Option<String>,
    /// Reason code, e.g. `bad-signature`.
    #[arg(long)]
    pub reason: Option<String>,
    /// Verdict.
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// State of some queue entry of the message: accepted, relayed,
    /// delayed, failed, cancelled (the older names queued and delivered
    /// still work).
    #[arg(long)]
    pub status: Option<String>,
    /// The `Message-ID:` header (angle brackets optional).
    #[arg(long = "message-id")]
    pub message_id: Option<String>,
    /// The emla message id.
    #[arg(long)]
    pub id: Option<String>,
    /// Case reference (`X-MLA-Reference`, or the case pattern found in the
    /// subject at reception); case-insensitive.
    #[arg(long = "case")]
    pub case_ref: Option<String>,
    /// Request kind, a `[[kind]]` id of the policy (e.g.
    /// `extradition-request`), as declared at reception.
    #[arg(long)]
    pub kind: Option<String>,
    /// Rows per page.
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: u32,
    /// Page number, from 1 (offset paging).
    #[arg(long)]
    pub page: Option<u64>,
    /// Continue after this row: the cursor printed under a full page (or a
    /// row's `cursor` in JSON and CSV).
    #[arg(long)]
    pub after: Option<String>,
    /// Oldest first.
    #[arg(long)]
    pub asc: bool,
    /// Print one JSON array of objects.
    #[arg(long)]
    pub json: bool,
    /// Print CSV (RFC 4180).
    #[arg(long)]
    pub csv: bool,
}

impl SearchArgs {
    /// Whether these arguments need the policy (`--country`).
    pub fn needs_policy(&self) -> bool {
        !self.country.is_empty()
    }

    /// The store query these arguments describe; [`AuditError::Usage`]
    /// names the first bad argument.
    pub fn query(&self, policy: Option<&Policy>) -> Result<SearchQuery, AuditError> {
        let usage = |e: String| AuditError::Usage(e);
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(usage(format!(
                "--limit must be between 1 and {MAX_LIMIT}, not {}",
                self.limit
            )));
        }
        let offset = match self.page {
            None => 0,
            Some(0) => return Err(usage("--page counts from 1".into())),
            Some(p) => (p - 1).saturating_mul(u64::from(self.limit)),
        };
        let after = match &self.after {
            None => None,
            Some(c) => Some(Cursor::parse(c).ok_or_else(|| {
                usage(format!(
                    "--after {c:?}: expected RECEIVED_AT_MS:ID as printed under a page"
                ))
            })?),
        };
        let since_ms = self
            .since
            .as_deref()
            .map(|t| parse_time("--since", t))
            .transpose()?;
        let until_ms = self
            .until
            .as_deref()
            .map(|t| parse_time("--until", t))
            .transpose()?;
        let authorities = self.authorities(policy)?;
        let signer = self.signer.as_deref().map(signer_key).transpose()?;
        let reason = match &self.reason {
            None => None,
            Some(r) => {
                let r = r.trim().to_lowercase();
                let Some(code) = Reason::parse(&r) else {
                    let all: Vec<&str> = Reason::ALL.iter().map(|c| c.as_str()).collect();
                    return Err(usage(format!(
                        "--reason {r:?} is not a reason code (one of: {})",
                        all.join(", ")
                    )));
                };
                Some(code)
            }
        };
        let nonempty = |flag: &str, v: &Option<String>| -> Result<Option<String>, AuditError> {
            match v {
                Some(x) if x.trim().is_empty() => Err(usage(format!("{flag} is empty"))),
                Some(x) => Ok(Some(x.trim().to_string())),
                None => Ok(None),
            }
        };
        Ok(SearchQuery {
            since_ms,
            until_ms,
            sender: nonempty("--from", &self.from)?.map(|a| address_key(&a)),
            recipient: nonempty("--to", &self.to)?.map(|a| address_key(&a)),
            authorities,
            signer,
            reason,
            verdict: self.verdict.map(|v| match v {
                VerdictArg::Accept => Verdict::Accept,
                VerdictArg::Reject => Verdict::Reject,
            }),
            status: self.status()?.map(|(state, _)| state),
            message_id: nonempty("--message-id", &self.message_id)?,
            id: nonempty("--id", &self.id)?,
            case_ref: nonempty("--case", &self.case_ref)?,
            kind: nonempty("--kind", &self.kind)?,
            ascending: self.asc,
            after,
            offset,
            limit: self.limit,
        })
    }

    /// `--status`, and a note when it was given by an older name.
    pub fn status(&self) -> Result<Option<(DeliveryState, Option<String>)>, AuditError> {
        self.status
            .as_deref()
            .map(|s| crate::store::state::parse_filter("--status", s).map_err(AuditError::Usage))
            .transpose()
    }

    /// The authority ids of `--authority` and of `--country` (mapped by
    /// the policy); `None` when neither is given.
    fn authorities(&self, policy: Option<&Policy>) -> Result<Option<Vec<String>>, AuditError> {
        let usage = |e: String| AuditError::Usage(e);
        let mut authorities: Option<Vec<String>> = None;
        if !self.authority.is_empty() {
            authorities = Some(
                self.authority
                    .iter()
                    .map(|a| a.trim().to_string())
                    .collect(),
            );
        }
        if !self.country.is_empty() {
            let policy = policy.ok_or_else(|| {
                usage("--country needs the policy to map countries to authorities".into())
            })?;
            let ids = authorities.get_or_insert_with(Vec::new);
            for cc in &self.country {
                let found: Vec<String> = policy
                    .authorities
                    .iter()
                    .filter(|a| a.country.eq_ignore_ascii_case(cc.trim()))
                    .map(|a| a.id.clone())
                    .collect();
                if found.is_empty() {
                    return Err(usage(format!(
                        "--country {cc}: no authority of that country in the policy {}",
                        policy.dir.display()
                    )));
                }
                ids.extend(found);
            }
        }
        Ok(authorities)
    }
}

/// The signer key of `--signer`: a SHA-256 fingerprint (64 hex digits) or
/// a serial number.
fn signer_key(s: &str) -> Result<SignerKey, AuditError> {
    let h = hex_key(s);
    if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(AuditError::Usage(format!(
            "--signer {s:?}: expected a SHA-256 fingerprint or a serial number in hex"
        )));
    }
    Ok(if h.len() == 64 {
        SignerKey::Sha256(h)
    } else {
        SignerKey::Serial(h)
    })
}

/// Parses an RFC 3339 instant, or a date `YYYY-MM-DD` (its midnight UTC),
/// to ms since the epoch.
pub fn parse_time(flag: &str, text: &str) -> Result<i64, AuditError> {
    use time::format_description::well_known::Rfc3339;
    let t = text.trim();
    let parsed = time::OffsetDateTime::parse(t, &Rfc3339)
        .or_else(|e| date_only(t).map(|d| d.midnight().assume_utc()).ok_or(e));
    match parsed {
        Ok(dt) => Ok((dt.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(e) => Err(AuditError::Usage(format!(
            "{flag} {text:?}: expected RFC 3339 (2026-01-31T12:00:00Z) or a date: {e}"
        ))),
    }
}

/// `YYYY-MM-DD`.
fn date_only(t: &str) -> Option<time::Date> {
    let mut parts = t.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// Runs a search and renders one page: the table, `--json` (one array) or
/// `--csv`. A page that comes back full ends the table with the `--after`
/// cursor of the next page. No match is not an error (the table says `no
/// messages match`, JSON is `[]`, CSV has its header only).
pub async fn search(
    store: &Store,
    policy: Option<&Policy>,
    args: &SearchArgs,
) -> Result<String, AuditError> {
    let query = args.query(policy)?;
    if let Some((_, Some(note))) = args.status()? {
        // On stderr, so that --json and --csv stay what they are.
        eprintln!("note: {note}");
    }
    let rows = store.search(&query).await?;
    let full = rows.len() == query.limit as usize;
    Ok(if args.json {
        render::json(&rows)
    } else if args.csv {
        render::csv(&rows)
    } else {
        render::table(&rows, full)
    })
}

/// `emla audit show ID`: one message's history.
#[derive(Clone, Debug, Default, Args)]
pub struct ShowArgs {
    /// The emla message id (as in the `250 … accepted as ID` reply), or the
    /// message's `Message-ID:` header.
    pub id: String,
    /// Configuration file naming the database (default: the embedded
    /// default). Read by `main`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON object (`id`, `message`, `events`, `queue`).
    #[arg(long)]
    pub json: bool,
}

/// Gathers what the store holds about one message: its row, audit records
/// and queue entries. `args.id` is an emla id, or else a `Message-ID:` that
/// exactly one message carries. Nothing recorded under it:
/// [`AuditError::NotFound`]; a `Message-ID:` shared by several messages:
/// [`AuditError::Usage`] listing their ids.
pub async fn history(store: &Store, id: &str) -> Result<History, AuditError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(AuditError::Usage("the message id is empty".into()));
    }
    let mut id = id.to_string();
    let mut message = store.message(&id).await?;
    if message.is_none() {
        let ids = store.ids_by_header_message_id(&id).await?;
        match ids.as_slice() {
            [] => {}
            [one] => {
                id = one.clone();
                message = store.message(&id).await?;
            }
            several => {
                return Err(AuditError::Usage(format!(
                    "{} messages have Message-ID {id}; show one by its emla id: {}",
                    several.len(),
                    several.join(", ")
                )))
            }
        }
    }
    let events = store.audit_events(&id).await?;
    if message.is_none() && events.is_empty() {
        return Err(AuditError::NotFound(format!(
            "no message {id} in the log (neither an emla id nor a Message-ID)"
        )));
    }
    let queue = store.queue_entries(&id).await?;
    Ok(History {
        id,
        message,
        events,
        queue,
    })
}

/// Runs `emla audit show`: the timeline as text, or `--json`.
pub async fn show(store: &Store, args: &ShowArgs) -> Result<String, AuditError> {
    let h = history(store, &args.id).await?;
    Ok(if args.json { h.json() } else { h.text() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("--since", "2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000
        );
        assert_eq!(
            parse_time("--since", "2026-01-01T01:00:00.5+01:00").unwrap(),
            1_767_225_600_500
        );
        assert_eq!(
            parse_time("--since", "2026-01-01").unwrap(),
            1_767_225_600_000
        );
        let e = parse_time("--until", "yesterday").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--until"), "{e}");
    }

    #[test]
    fn arguments_become_a_query() {
        let args = SearchArgs {
            from: Some("Alice@Justice.AA.example".into()),
            signer: Some("0A:1B".into()),
            reason: Some("Bad-Signature".into()),
            page: Some(3),
            limit: 20,
            ..Default::default()
        };
        let q = args.query(None).unwrap();
        assert_eq!(q.sender.as_deref(), Some("alice@justice.aa.example"));
        assert_eq!(q.signer, Some(SignerKey::Serial("0a1b".into())));
        assert_eq!(q.reason, Some(Reason::BadSignature));
        assert_eq!(q.offset, 40);
        let bad = SearchArgs {
            reason: Some("nope".into()),
            limit: 5,
            ..Default::default()
        };
        assert!(matches!(bad.query(None), Err(AuditError::Usage(_))));
        let country = SearchArgs {
            country: vec!["AA".into()],
            limit: 5,
            ..Default::default()
        };
        assert!(country.needs_policy());
        assert!(matches!(country.query(None), Err(AuditError::Usage(_))));
    }
}
