//! `emla queue list|show|retry|cancel`: administrators' view of the relay
//! queue. Every change is audited with the operator's name.

use clap::{Args, Subcommand};

use crate::store::rows::to_json_text;
use crate::store::{
    Attempt, AuditEvent, AuditKind, AuditRecord, DeliveryState, QueueAction, QueueFilter, QueueRow,
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
    /// Only entries in this state: accepted, relayed, delayed, failed,
    /// cancelled (the older names queued and delivered still work).
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
        Some(s) => {
            let (state, note) =
                crate::store::state::parse_filter("--status", s).map_err(QueueError::Usage)?;
            if let Some(note) = note {
                // On stderr, so that --json stays one JSON value.
                eprintln!("note: {note}");
            }
            Some(state)
        }
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
        "STATE",
        "TRIES",
        "NEXT ATTEMPT",
        "NEXT HOP",
        "NEXT HOP QUEUE ID",
        "RECIPIENTS",
        "LAST ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for r in &rows {
        let next = if r.status.is_pending() {
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
            r.next_hop_queue_id.clone().unwrap_or_else(|| "-".into()),
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
        "queue entry {}\n  message      {}\n  state        {}\n  next hop     {} (authority {}, route {}, {} lane)\n  \
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
    if row.status.is_pending() {
        out += &format!("  next attempt {}\n", time_text(Some(row.next_attempt_at)));
    }
    if let Some(id) = &row.next_hop_queue_id {
        out += &format!("  relayed as   {id} (the next hop's queue id)\n");
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
    if let Some(state) = d.status {
        parts.push(format!("now {state}"));
    }
    for r in &d.recipients {
        let o = &r.outcome;
        let queue_id = o
            .queue_id
            .as_ref()
            .map_or_else(String::new, |id| format!(" (queue id {id})"));
        parts.push(format!(
            "{}: {}{queue_id} {}",
            r.recipient.as_deref().unwrap_or_default(),
            recipient_state(o),
            cut(o.reply.as_deref().unwrap_or_default(), 80)
        ));
    }
    parts.join("; ")
}

/// A recipient's state after an attempt, in the state vocabulary: as
/// recorded, or for a record written before it, its `result` (`delivered`
/// reads as relayed).
fn recipient_state(o: &crate::store::Outcome) -> String {
    match (o.state, o.result.as_deref()) {
        (Some(state), _) => state.to_string(),
        (None, Some(r)) => DeliveryState::parse(r).map_or_else(|| r.to_owned(), |s| s.to_string()),
        (None, None) => String::new(),
    }
}

#[derive(Clone, Copy)]
enum Change {
    Retry,
    Cancel,
}

async fn change(store: &Store, a: &EntryArgs, change: Change) -> Result<String, QueueError> {
    let row = entry(store, a.id).await?;
    let status = row.status;
    // A retried delayed entry is still delayed; a failed one is pending again.
    let retried = if status == DeliveryState::Delayed {
        DeliveryState::Delayed
    } else {
        DeliveryState::Accepted
    };
    let (allowed, new, kind, verb): (&'static [DeliveryState], _, _, _) = match change {
        Change::Retry => (
            &[
                DeliveryState::Accepted,
                DeliveryState::Delayed,
                DeliveryState::Failed,
            ],
            retried,
            AuditKind::QueueRetry,
            "due for an attempt now",
        ),
        Change::Cancel => (
            &DeliveryState::PENDING,
            DeliveryState::Cancelled,
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
                next_hop_queue_id: None,
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
