//! One message's history as a readable timeline (`emla audit show`):
//! received, verified, decided, then every audit record that names the
//! message and its queue entries.

use serde_json::{json, Value};

use crate::store::{AuditRecord, DeliveryState, Lane, MessageRow, QueueRow};
use crate::text::{time_rfc3339, visible};

/// Everything recorded about one message.
#[derive(Clone, Debug)]
pub struct History {
    /// The emla message id.
    pub id: String,
    /// The message row ([`Store::message`](crate::store::Store::message)),
    /// absent when only audit records name the id.
    pub message: Option<MessageRow>,
    /// Its audit records in seq order
    /// ([`Store::audit_events`](crate::store::Store::audit_events)).
    pub events: Vec<AuditRecord>,
    /// Its queue rows ([`Store::queue_entries`](crate::store::Store::queue_entries)).
    pub queue: Vec<QueueRow>,
}

impl History {
    /// `{"id", "message", "events", "queue"}` as one pretty JSON object;
    /// events keep `data` parsed and `data_text` exactly as hashed, and
    /// carry `rem_event`, the EN 319 522-1 name of their kind, and for a
    /// delivery attempt `state`, the state it left the entry in by today's
    /// name (neither is part of the hashed record).
    pub fn json(&self) -> String {
        let events: Vec<Value> = self
            .events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["rem_event"] = json!(e.kind.rem_event().map(|r| r.as_str()));
                if let Some(state) = state_after(e) {
                    v["state"] = json!(state);
                }
                v
            })
            .collect();
        let v = json!({
            "id": self.id,
            "message": self.message,
            "events": events,
            "queue": self.queue,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The record of the decision (the last `message.accepted` or
    /// `message.rejected`).
    pub fn decision_record(&self) -> Option<&AuditRecord> {
        self.events.iter().rev().find(|e| e.kind.is_decision())
    }

    /// The timeline as text.
    pub fn text(&self) -> String {
        let mut out = Out::default();
        out.line(0, &format!("message {}", self.id));
        if let Some(m) = &self.message {
            if let Some(c) = &m.case_ref {
                out.field(1, "case", &clean(c));
            }
            if let Some(k) = &m.kind {
                out.field(1, "kind", &clean(k));
            }
            self.received(&mut out, m);
            verified(&mut out, m);
            self.decided(&mut out, m);
        } else {
            out.line(1, "no message row: only audit records name this id");
        }
        self.events(&mut out);
        self.queue(&mut out);
        // Every field, whichever printed it: what the log holds is shown,
        // never obeyed by the terminal.
        visible(&out.0, &['\n'])
    }

    fn received(&self, out: &mut Out, m: &MessageRow) {
        out.blank();
        out.line(0, &format!("{}  received", at(m.received_at)));
        let mut client = format!(
            "{} (HELO {})",
            clean(&m.session.client_ip),
            clean(&m.session.helo)
        );
        match (&m.session.tls_version, &m.session.tls_cipher) {
            (Some(v), Some(c)) => client.push_str(&format!(", {} {}", clean(v), clean(c))),
            (Some(v), None) => client.push_str(&format!(", {}", clean(v))),
            _ => client.push_str(", no TLS"),
        }
        out.field(1, "client", &client);
        out.field(1, "mail from", &format!("<{}>", clean(&m.mail_from)));
        let rcpt: Vec<String> = m.rcpt_to.iter().map(|r| format!("<{r}>")).collect();
        out.field(1, "rcpt to", &rcpt.join(", "));
        out.fields_present(
            1,
            &[
                ("From:", &m.headers.header_from),
                ("To:", &m.headers.header_to),
                ("Subject:", &m.headers.subject),
                ("Message-ID:", &m.headers.message_id),
                ("Date:", &m.headers.date),
            ],
        );
        out.field(1, "size", &format!("{} bytes", m.size));
        out.field(1, "sha256", &clean(&m.sha256));
        out.field(
            1,
            "body",
            if m.body_stored {
                "kept (content-addressed by its sha256)"
            } else {
                "not kept (only its hash)"
            },
        );
    }

    fn decided(&self, out: &mut Out, m: &MessageRow) {
        let record = self.events.iter().find(|e| e.kind.is_decision());
        out.blank();
        let when = at(record.map_or(m.received_at, |e| e.at));
        out.line(0, &format!("{when}  decided"));
        out.field(
            1,
            "verdict",
            &format!("{} {}", m.verdict.as_str().to_uppercase(), m.reason),
        );
        out.field(1, "detail", &clean(&m.detail));
        out.field(
            1,
            "authority",
            &m.authority.as_deref().map_or_else(|| "-".into(), clean),
        );
        out.field(1, "policy", &clean(&m.policy_version));
        let decision = record.and_then(AuditRecord::decision).unwrap_or_default();
        for r in &decision.recipients {
            let text = format!(
                "{} → route {}, authority {}, next hop {}, lane {}",
                r.recipient.as_deref().unwrap_or("?"),
                r.route.as_deref().unwrap_or("-"),
                r.authority.as_deref().unwrap_or("-"),
                r.next_hop.as_deref().unwrap_or("-"),
                r.lane.map_or("-", Lane::as_str),
            );
            out.field(1, "route", &text);
        }
    }

    fn events(&self, out: &mut Out) {
        for e in out.section("audit records", "none", &self.events) {
            let hash = &e.hash;
            out.line(
                1,
                &format!(
                    "{}  #{}  {}{}  (hash {})",
                    at(e.at),
                    e.seq,
                    e.kind,
                    e.kind
                        .rem_event()
                        .map_or_else(String::new, |r| format!(" [{r}]")),
                    hash.get(..16).unwrap_or(hash)
                ),
            );
            if !e.kind.is_decision() {
                // The other kinds' data is shown as recorded, key by key.
                if let Some(data) = e.data.as_object() {
                    for (k, v) in data {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.field(2, k, &v);
                    }
                } else {
                    out.field(2, "data", &e.data_text);
                }
            }
            if let Some(state) = state_after(e) {
                // Older records say `queued` and `delivered`: the state by
                // today's name, beside the data as recorded.
                out.field(2, "→ state", state.as_str());
            }
        }
    }

    fn queue(&self, out: &mut Out) {
        for q in out.section("queue", "no entries", &self.queue) {
            out.line(
                1,
                &format!(
                    "#{}  {}  state {}  attempts {}",
                    q.id, q.delivery.next_hop, q.status, q.attempts
                ),
            );
            if let Some(id) = &q.next_hop_queue_id {
                out.field(
                    2,
                    "relayed as",
                    &format!("{} (the next hop's queue id)", clean(id)),
                );
            }
            out.field(2, "authority", &q.delivery.authority);
            out.field(2, "route", &q.delivery.route);
            out.field(2, "lane", q.delivery.lane.as_str());
            out.field(2, "recipients", &q.delivery.recipients.join(", "));
            out.field(2, "created", &at(q.created_at));
            out.field(2, "next attempt", &at(q.next_attempt_at));
            if let Some(c) = &q.claimed_by {
                let until = q.lease_until.map_or_else(|| "-".into(), at);
                out.field(2, "claimed by", &format!("{c} until {until}"));
            }
        }
    }
}

/// The state a delivery attempt left its queue entry in (its `status`).
fn state_after(e: &AuditRecord) -> Option<DeliveryState> {
    e.attempt().and_then(|a| a.status)
}

fn verified(out: &mut Out, m: &MessageRow) {
    out.blank();
    out.line(0, &format!("{}  verified", at(m.received_at)));
    let signers = m.signer_list();
    if signers.is_empty() {
        out.line(1, "no signer");
    }
    for (n, sg) in signers.iter().enumerate() {
        out.field(
            1,
            &format!("signer {}", n + 1),
            &sg.email.as_deref().map_or_else(|| "-".into(), clean),
        );
        out.fields_present(
            2,
            &[
                ("subject", &sg.subject),
                ("issuer", &sg.issuer),
                ("serial", &sg.serial),
                ("sha256", &sg.sha256),
                ("authority", &sg.authority),
            ],
        );
        if !sg.chain.is_empty() {
            out.field(2, "chain", &sg.chain.join(" → "));
        }
    }
}

/// Text from the log on one line: control characters written out.
fn clean(t: &str) -> String {
    visible(t, &[])
}

/// A time in ms as RFC 3339 (UTC, milliseconds).
fn at(ms: i64) -> String {
    time_rfc3339(ms)
}

/// Indented lines; field labels padded to one column per level.
#[derive(Default)]
struct Out(String);

impl Out {
    fn line(&mut self, level: usize, text: &str) {
        self.0.push_str(&"  ".repeat(level));
        self.0.push_str(text);
        self.0.push('\n');
    }

    fn field(&mut self, level: usize, label: &str, value: &str) {
        self.line(level, format!("{label:<13} {value}").trim_end());
    }

    /// The fields that have a value, cleaned; the others are left out.
    fn fields_present(&mut self, level: usize, fields: &[(&str, &Option<String>)]) {
        for &(label, value) in fields {
            if let Some(v) = value {
                self.field(level, label, &clean(v));
            }
        }
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }

    /// After a blank line, the heading of a list (`title: none_text` when
    /// it is empty); gives back the items to show under it.
    fn section<'a, T>(&mut self, title: &str, none_text: &str, items: &'a [T]) -> &'a [T] {
        self.blank();
        if items.is_empty() {
            self.line(0, &format!("{title}: {none_text}"));
        } else {
            self.line(0, title);
        }
        items
    }
}
