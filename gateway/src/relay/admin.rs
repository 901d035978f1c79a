//! `emla queue list|show|retry|cancel`: administrators' view of the relay
//! queue. Every change is audited with the operator's name.

use clap::{Args, Subcommand};

use crate::store::rows::to_json_text;
use crate::store::{
    Attempt, AuditEvent, AuditKind, AuditRecord, QueueAction, QueueFilter, QueueRow, QueueStatus,
    QueueUpdate, Record, Store,
};
use crate::text::{align, table_cell as cut, time_utc, visible};

/// `emla queue …`.
#[derive(Clone, Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue entries, newest first.
    List(ListArgs),
    /// One entry and every delivery attempt made for it.
    Show(EntryArgs),
    /// Make a queued entry due now, or queue a failed one again.
    Retry(EntryArgs),
    /// Stop delivering a queued entry.
    Cancel(EntryArgs),
}

/// Options of `emla queue list`.
#[derive(Clone, Debug, Args)]
pub struct ListArgs {
    /// Only entries with this status: queued, delivered, failed, cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Only entries of this emla message id.
    #[arg(long)]
    pub message: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of the commands on one entry.
#[derive(Clone, Debug, Args)]
pub struct EntryArgs {
    /// The queue entry id (the first column of `emla queue list`).
    pub id: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why a queue command gives no answer.
#[derive(Debug)]
pub enum QueueError {
    /// Wrong arguments: exit 2.
    Usage(String),
    /// No such entry, or not in a state the command applies to: exit 1.
    Refused(String),
    /// The store cannot be read or written: exit 2.
    Store(String),
}

impl QueueError {
    /// The exit code of the CLI contract.
    pub fn exit_code(&self) -> u8 {
        match self {
            QueueError::Refused(_) => 1,
            QueueError::Usage(_) | QueueError::Store(_) => 2,
        }
    }
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Usage(e) | QueueError::Refused(e) | QueueError::Store(e) => f.write_str(e),
        }
    }
}

impl From<crate::store::StoreError> for QueueError {
    fn from(e: crate::store::StoreError) -> Self {
        QueueError::Store(e.to_string())
    }
}

/// Runs `cmd`; returns the text to print.
pub async fn run(store: &Store, cmd: &QueueCommand) -> Result<String, QueueError> {
    match cmd {
        QueueCommand::List(a) => list(store, a).await,
        QueueCommand::Show(a) => show(store, a).await,
        QueueCommand::Retry(a) => change(store, a, Change::Retry).await,
        QueueCommand::Cancel(a) => change(store, a, Change::Cancel).await,
    }
}

async fn list(store: &Store, a: &ListArgs) -> Result<String, QueueError> {
    let status = match &a.status {
        None => None,
        Some(s) => Some(QueueStatus::parse(s).ok_or_else(|| {
            QueueError::Usage(format!(
                "--status {s:?}: expected one of queued, delivered, failed, cancelled"
            ))
        })?),
    };
    if a.limit == 0 || a.limit > 10_000 {
        return Err(QueueError::Usage(format!(
            "--limit {}: expected 1 to 10000",
            a.limit
        )));
    }
    let rows = store
        .queue_rows(&QueueFilter {
            status,
            message_id: a.message.clone(),
            limit: a.limit,
        })
        .await?;
    if a.json {
        return Ok(format!("{}\n", to_json_text(&rows)));
    }
    if rows.is_empty() {
        return Ok("no queue entries match\n".into());
    }
    let mut table = vec![[
        "ID",
        "MESSAGE",
        "STATUS",
        "TRIES",
        "NEXT ATTEMPT",
        "NEXT HOP",
        "RECIPIENTS",
        "LAST ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for r in &rows {
        let next = if r.status == QueueStatus::Queued {
            time_text(Some(r.next_attempt_at))
        } else {
            "-".into()
        };
        table.push(vec![
            r.id.to_string(),
            r.delivery.message_id.clone(),
            r.status.to_string(),
            r.attempts.to_string(),
            next,
            r.delivery.next_hop.clone(),
            r.delivery.recipients.join(", "),
            cut(r.last_error.as_deref().unwrap_or_default(), 60),
        ]);
    }
    Ok(align(&table))
}

async fn show(store: &Store, a: &EntryArgs) -> Result<String, QueueError> {
    let h = store
        .queue_entry_history(a.id)
        .await?
        .ok_or_else(|| QueueError::Refused(format!("no queue entry {}", a.id)))?;
    if a.json {
        return Ok(format!("{}\n", to_json_text(&h)));
    }
    let row = &h.entry;
    let mut out = format!(
        "queue entry {}\n  message      {}\n  status       {}\n  next hop     {} (authority {}, route {}, {} lane)\n  \
         recipients   {}\n  queued at    {}\n  attempts     {}\n",
        a.id,
        row.delivery.message_id,
        row.status,
        row.delivery.next_hop,
        row.delivery.authority,
        row.delivery.route,
        row.delivery.lane.as_str(),
        row.delivery.recipients.join(", "),
        time_text(Some(row.created_at)),
        row.attempts,
    );
    if row.status == QueueStatus::Queued {
        out += &format!("  next attempt {}\n", time_text(Some(row.next_attempt_at)));
    }
    if let Some(e) = &row.last_error {
        out += &format!("  last error   {e}\n");
    }
    if !h.events.is_empty() {
        out += "events\n";
    }
    for e in &h.events {
        out += &format!(
            "  {}  {:<16} {}\n",
            time_text(Some(e.at)),
            e.kind.as_str(),
            event_summary(e)
        );
    }
    // Recipients, errors and replies come from clients and next hops: they
    // are shown, never obeyed by the terminal.
    Ok(visible(&out, &['\n']))
}

/// One line about a `relay.*` or `queue.*` record.
fn event_summary(e: &AuditRecord) -> String {
    if let Some(action) = e.queue_action() {
        return format!("by {}", action.operator);
    }
    let d: Attempt = e.attempt().unwrap_or_default();
    let mut parts = vec![format!(
        "attempt {}",
        d.attempt.map_or_else(|| "null".into(), |n| n.to_string())
    )];
    if let Some(tls) = &d.tls {
        if tls.encrypted {
            parts.push(format!(
                "TLS ({})",
                tls.verification.as_deref().unwrap_or_default()
            ));
        } else {
            parts.push("no TLS".into());
        }
    }
    for r in &d.recipients {
        let o = &r.outcome;
        parts.push(format!(
            "{}: {} {}",
            r.recipient.as_deref().unwrap_or_default(),
            o.result.as_deref().unwrap_or_default(),
            cut(o.reply.as_deref().unwrap_or_default(), 80)
        ));
    }
    parts.join("; ")
}

#[derive(Clone, Copy)]
enum Change {
    Retry,
    Cancel,
}

async fn change(store: &Store, a: &EntryArgs, change: Change) -> Result<String, QueueError> {
    let row = entry(store, a.id).await?;
    let status = row.status;
    let (allowed, new, kind, verb): (&'static [QueueStatus], _, _, _) = match change {
        Change::Retry => (
            &[QueueStatus::Queued, QueueStatus::Failed],
            QueueStatus::Queued,
            AuditKind::QueueRetry,
            "queued for an attempt now",
        ),
        Change::Cancel => (
            &[QueueStatus::Queued],
            QueueStatus::Cancelled,
            AuditKind::QueueCancelled,
            "cancelled",
        ),
    };
    if !allowed.contains(&status) {
        return Err(QueueError::Refused(format!(
            "queue entry {} is {status}; {} applies to {} entries only",
            a.id,
            match change {
                Change::Retry => "retry",
                Change::Cancel => "cancel",
            },
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    let operator = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let now = crate::store::now_ms();
    let action = QueueAction {
        queue_id: a.id,
        previous_status: Some(status),
        operator,
    };
    store
        .record(Record {
            events: vec![AuditEvent {
                kind,
                message_id: Some(row.delivery.message_id.clone()),
                data: serde_json::to_value(&action).unwrap_or_default(),
            }],
            queue_updates: vec![QueueUpdate {
                queue_id: a.id,
                holder: None,
                only_if: allowed,
                status: new,
                next_attempt_at_ms: now,
                attempt: None,
                recipients: None,
            }],
            ..Record::default()
        })
        .await?;
    let after = entry(store, a.id).await?;
    if after.status != new {
        return Err(QueueError::Refused(format!(
            "queue entry {} changed to {} meanwhile; nothing done",
            a.id, after.status
        )));
    }
    if a.json {
        return Ok(format!("{}\n", to_json_text(&after)));
    }
    Ok(format!("queue entry {} {verb}\n", a.id))
}

async fn entry(store: &Store, id: i64) -> Result<QueueRow, QueueError> {
    store
        .queue_row(id)
        .await?
        .ok_or_else(|| QueueError::Refused(format!("no queue entry {id}")))
}

fn time_text(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), time_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_cuts() {
        let t = align(&[
            vec!["A".into(), "B".into()],
            vec!["long".into(), "x".into()],
        ]);
        assert_eq!(t, "A     B\nlong  x\n");
        assert_eq!(time_text(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time_text(None), "-");
    }
}
