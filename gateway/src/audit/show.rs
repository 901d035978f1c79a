//! One message's history as a readable timeline (`emla audit show`):
//! received, verified, decided, then every audit record that names the
//! message and its queue entries.

use serde_json::{json, Value};

use crate::text::time_rfc3339;

/// Everything recorded about one message.
#[derive(Clone, Debug)]
pub struct History {
    /// The emla message id.
    pub id: String,
    /// The message row ([`Store::message`](crate::store::Store::message)),
    /// absent when only audit records name the id.
    pub message: Option<Value>,
    /// Its audit records in seq order
    /// ([`Store::audit_events`](crate::store::Store::audit_events)).
    pub events: Vec<Value>,
    /// Its queue rows ([`Store::queue_entries`](crate::store::Store::queue_entries)).
    pub queue: Vec<Value>,
}

/// Kinds of the audit record that carries the decision itself.
const DECISION_KINDS: [&str; 2] = ["message.accepted", "message.rejected"];

impl History {
    /// `{"id", "message", "events", "queue"}` as one pretty JSON object;
    /// events keep `data` parsed and `data_text` exactly as hashed.
    pub fn json(&self) -> String {
        let v = json!({
            "id": self.id,
            "message": self.message,
            "events": self.events,
            "queue": self.queue,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The timeline as text.
    pub fn text(&self) -> String {
        let mut out = Out::default();
        out.line(0, &format!("message {}", self.id));
        if let Some(m) = &self.message {
            if let Some(c) = s(m, "case_ref") {
                out.field(1, "case", &c);
            }
            self.received(&mut out, m);
            verified(&mut out, m);
            self.decided(&mut out, m);
        } else {
            out.line(1, "no message row: only audit records name this id");
        }
        self.events(&mut out);
        self.queue(&mut out);
        out.0
    }

    fn received(&self, out: &mut Out, m: &Value) {
        out.blank();
        out.line(0, &format!("{}  received", at(m.get("received_at"))));
        let mut client = format!(
            "{} (HELO {})",
            s(m, "client_ip").unwrap_or_default(),
            s(m, "helo").unwrap_or_default()
        );
        match (s(m, "tls_version"), s(m, "tls_cipher")) {
            (Some(v), Some(c)) => client.push_str(&format!(", {v} {c}")),
            (Some(v), None) => client.push_str(&format!(", {v}")),
            _ => client.push_str(", no TLS"),
        }
        out.field(1, "client", &client);
        out.field(
            1,
            "mail from",
            &format!("<{}>", s(m, "mail_from").unwrap_or_default()),
        );
        let rcpt: Vec<String> = m
            .get("rcpt_to")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|r| format!("<{}>", r.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        out.field(1, "rcpt to", &rcpt.join(", "));
        for (label, key) in [
            ("From:", "header_from"),
            ("To:", "header_to"),
            ("Subject:", "subject"),
            ("Message-ID:", "message_id"),
            ("Date:", "date"),
        ] {
            if let Some(v) = s(m, key) {
                out.field(1, label, &v);
            }
        }
        out.field(
            1,
            "size",
            &format!(
                "{} bytes",
                m.get("size").and_then(Value::as_i64).unwrap_or(0)
            ),
        );
        out.field(1, "sha256", &s(m, "sha256").unwrap_or_default());
        let kept = m
            .get("body_stored")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.field(
            1,
            "body",
            if kept {
                "kept (content-addressed by its sha256)"
            } else {
                "not kept (only its hash)"
            },
        );
    }

    fn decided(&self, out: &mut Out, m: &Value) {
        let decision = self
            .events
            .iter()
            .find(|e| DECISION_KINDS.contains(&e["kind"].as_str().unwrap_or_default()));
        out.blank();
        let when = decision
            .map(|e| at(e.get("at")))
            .unwrap_or_else(|| at(m.get("received_at")));
        out.line(0, &format!("{when}  decided"));
        let verdict = s(m, "verdict").unwrap_or_default().to_uppercase();
        out.field(
            1,
            "verdict",
            &format!("{verdict} {}", s(m, "reason").unwrap_or_default()),
        );
        out.field(1, "detail", &s(m, "detail").unwrap_or_default());
        out.field(
            1,
            "authority",
            &s(m, "authority").unwrap_or_else(|| "-".into()),
        );
        out.field(1, "policy", &s(m, "policy_version").unwrap_or_default());
        let routes = decision
            .and_then(|e| e["data"].get("recipients"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in &routes {
            let text = format!(
                "{} → route {}, authority {}, next hop {}, lane {}",
                r["recipient"].as_str().unwrap_or("?"),
                r["route"].as_str().unwrap_or("-"),
                r["authority"].as_str().unwrap_or("-"),
                r["next_hop"].as_str().unwrap_or("-"),
                r["lane"].as_str().unwrap_or("-"),
            );
            out.field(1, "route", &text);
        }
    }

    fn events(&self, out: &mut Out) {
        out.blank();
        if self.events.is_empty() {
            out.line(0, "audit records: none");
            return;
        }
        out.line(0, "audit records");
        for e in &self.events {
            let kind = e["kind"].as_str().unwrap_or_default();
            let hash = e["hash"].as_str().unwrap_or_default();
            out.line(
                1,
                &format!(
                    "{}  #{}  {kind}  (hash {})",
                    at(e.get("at")),
                    e["seq"],
                    hash.get(..16).unwrap_or(hash)
                ),
            );
            if !DECISION_KINDS.contains(&kind) {
                if let Some(data) = e["data"].as_object() {
                    for (k, v) in data {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.field(2, k, &v);
                    }
                } else {
                    out.field(2, "data", e["data_text"].as_str().unwrap_or_default());
                }
            }
        }
    }

    fn queue(&self, out: &mut Out) {
        out.blank();
        if self.queue.is_empty() {
            out.line(0, "queue: no entries");
            return;
        }
        out.line(0, "queue");
        for q in &self.queue {
            let recipients: Vec<&str> = q["recipients"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.line(
                1,
                &format!(
                    "#{}  {}  status {}  attempts {}",
                    q["id"],
                    q["next_hop"].as_str().unwrap_or_default(),
                    q["status"].as_str().unwrap_or_default(),
                    q["attempts"]
                ),
            );
            out.field(2, "authority", q["authority"].as_str().unwrap_or_default());
            out.field(2, "route", q["route"].as_str().unwrap_or_default());
            out.field(2, "lane", q["lane"].as_str().unwrap_or_default());
            out.field(2, "recipients", &recipients.join(", "));
            out.field(2, "created", &at(q.get("created_at")));
            out.field(2, "next attempt", &at(q.get("next_attempt_at")));
            if let Some(c) = q["claimed_by"].as_str() {
                out.field(
                    2,
                    "claimed by",
                    &format!("{c} until {}", at(q.get("lease_until"))),
                );
            }
        }
    }
}

fn verified(out: &mut Out, m: &Value) {
    out.blank();
    out.line(0, &format!("{}  verified", at(m.get("received_at"))));
    let signers = m
        .get("signers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if signers.is_empty() {
        out.line(1, "no signer");
    }
    for (n, sg) in signers.iter().enumerate() {
        out.field(
            1,
            &format!("signer {}", n + 1),
            &s(sg, "email").unwrap_or_else(|| "-".into()),
        );
        for key in ["subject", "issuer", "serial", "sha256", "authority"] {
            if let Some(v) = s(sg, key) {
                out.field(2, key, &v);
            }
        }
        if let Some(chain) = sg.get("chain").and_then(Value::as_array) {
            let names: Vec<&str> = chain.iter().filter_map(Value::as_str).collect();
            if !names.is_empty() {
                out.field(2, "chain", &names.join(" → "));
            }
        }
    }
}

/// A string field, control characters shown as spaces.
fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(|t| {
        t.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    })
}

/// A time in ms as RFC 3339 (UTC, milliseconds), or `-`.
fn at(v: Option<&Value>) -> String {
    v.and_then(Value::as_i64)
        .map(time_rfc3339)
        .unwrap_or_else(|| "-".into())
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

    fn blank(&mut self) {
        self.0.push('\n');
    }
}
