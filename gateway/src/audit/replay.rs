//! `emla policy replay`: the recorded traffic of a period judged again under
//! a candidate policy, as of each message's reception, listing every
//! message whose verdict, reason, route, next hop or lane would change.
//! It reads the database and the kept bodies only; the running gateway is
//! untouched.
//!
//! A message whose body was not kept is judged on its envelope alone
//! (sender authority, allowed clients, recipient count, routes) and marked
//! so; one refused for a reason only its body can show again (a bad
//! signature, say) is counted as not re-judged rather than guessed at.

use std::sync::Arc;

use serde::Serialize;

use super::AuditError;
use crate::clock::EvalTime;
use crate::policy::Policy;
use crate::reason::Reason;
use crate::store::decisions::Decided;
use crate::store::rows::Verdict as RecordedVerdict;
use crate::store::search::Cursor;
use crate::store::Store;
use crate::trust::revocation::RevocationSet;
use crate::verify::{self, Envelope, RecipientRoute, Verdict};

/// The period replayed, `[from_ms, until_ms)`.
#[derive(Clone, Copy, Debug)]
pub struct Period {
    /// Start, Unix ms.
    pub from_ms: i64,
    /// End (excluded), Unix ms.
    pub until_ms: i64,
}

/// A decision, as recorded or as the candidate would make it.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// `accept` or `reject`.
    pub verdict: &'static str,
    /// The reason code.
    pub reason: Reason,
    /// Each recipient's routing (accepted messages).
    pub recipients: Vec<RecipientRoute>,
}

/// A message the candidate would decide otherwise.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The emla id.
    pub id: String,
    /// Reception time (RFC 3339).
    pub received_at: String,
    /// MAIL FROM.
    pub mail_from: String,
    /// RCPT TO.
    pub rcpt_to: Vec<String>,
    /// The request kind recorded for it.
    pub kind: Option<String>,
    /// Judged on the envelope alone (the body was not kept).
    pub envelope_only: bool,
    /// What differs: `verdict`, `reason`, `route`, `next_hop`, `lane`.
    pub differs: Vec<&'static str>,
    /// As recorded.
    pub old: Outcome,
    /// Under the candidate.
    pub new: Outcome,
}

/// What a replay found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The candidate's version.
    pub candidate_version: String,
    /// Messages judged again (with or without their body).
    pub judged: u64,
    /// Of those, on the envelope alone.
    pub envelope_only: u64,
    /// Messages not judged again: body not kept and refused for a reason
    /// only the body shows, or decision record pruned.
    pub not_rejudged: u64,
    /// Those the candidate would decide otherwise, in reception order.
    pub changes: Vec<Change>,
}

impl Period {
    /// The period the flags name: `--since DURATION` (up to now), or
    /// `--from T` and/or `--until T` (RFC 3339 or a date); all recorded
    /// traffic without them.
    pub fn from_flags(
        since: Option<&str>,
        from: Option<&str>,
        until: Option<&str>,
        now_ms: i64,
    ) -> Result<Period, AuditError> {
        if since.is_some() && (from.is_some() || until.is_some()) {
            return Err(AuditError::Usage(
                "--since goes alone, or use --from and --until".into(),
            ));
        }
        if let Some(text) = since {
            return Ok(Period {
                from_ms: now_ms.saturating_sub(duration_ms(text)?),
                until_ms: now_ms.saturating_add(1),
            });
        }
        let at = |flag, t: Option<&str>, default| {
            t.map_or(Ok(default), |t| super::cli::parse_time(flag, t))
        };
        let period = Period {
            from_ms: at("--from", from, 0)?,
            until_ms: at("--until", until, now_ms.saturating_add(1))?,
        };
        if period.from_ms >= period.until_ms {
            return Err(AuditError::Usage(format!(
                "--from must come before --until ({from:?} is not before {until:?})"
            )));
        }
        Ok(period)
    }
}

/// `90s`, `30m`, `24h`, `7d` or `2w`, in ms.
fn duration_ms(text: &str) -> Result<i64, AuditError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match n.parse::<i64>() {
        Ok(n) if secs > 0 && n > 0 => Ok(n.saturating_mul(secs * 1000)),
        _ => Err(AuditError::Usage(format!(
            "--since {text:?}: expected a number and a unit: 90s, 30m, 24h, 7d or 2w"
        ))),
    }
}

const PAGE: i64 = 2000;

/// Replays `period` under `candidate`, with the revocation data the
/// gateway gathered (`fetched`).
pub async fn replay(
    store: &Store,
    candidate: Arc<Policy>,
    fetched: Arc<RevocationSet>,
    period: Period,
) -> Result<Report, AuditError> {
    let mut report = Report {
        candidate_version: candidate.version.clone(),
        ..Report::default()
    };
    let mut after = Cursor {
        received_at_ms: i64::MIN,
        id: String::new(),
    };
    loop {
        let page = store
            .decided_between(period.from_ms, period.until_ms, &after, PAGE)
            .await
            .map_err(AuditError::Store)?;
        let Some(last) = page.last() else { break };
        after = Cursor {
            received_at_ms: last.message.received_at,
            id: last.message.id.clone(),
        };
        let mut jobs = Vec::with_capacity(page.len());
        for d in page {
            let body = if d.message.body_stored {
                store.read_body(&d.message.sha256).await.ok()
            } else {
                None
            };
            jobs.push((d, body));
        }
        for judged in judge_page(jobs, &candidate, &fetched).await? {
            match judged {
                None => report.not_rejudged += 1,
                Some((envelope_only, change)) => {
                    report.judged += 1;
                    report.envelope_only += u64::from(envelope_only);
                    report.changes.extend(change);
                }
            }
        }
    }
    Ok(report)
}

type Judged = Option<(bool, Option<Change>)>;

/// Judges one page on every core, keeping the page's order.
async fn judge_page(
    jobs: Vec<(Decided, Option<Vec<u8>>)>,
    candidate: &Arc<Policy>,
    fetched: &Arc<RevocationSet>,
) -> Result<Vec<Judged>, AuditError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = jobs.len().div_ceil(cores).max(1);
    let mut chunks = Vec::new();
    let mut rest = jobs;
    while !rest.is_empty() {
        let tail = rest.split_off(per.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (p, f) = (candidate.clone(), fetched.clone());
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|(d, body)| one(&d, body.as_deref(), &p, &f))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.map_err(|e| {
            AuditError::Store(crate::store::StoreError::Bug(format!(
                "a replay task failed: {e}"
            )))
        })?);
    }
    Ok(out)
}

fn one(d: &Decided, body: Option<&[u8]>, candidate: &Policy, fetched: &RevocationSet) -> Judged {
    let m = &d.message;
    let old = recorded(d)?;
    let at = EvalTime::from_unix((m.received_at.max(0) / 1000) as u64);
    let (verdict, envelope_only) = match body {
        Some(raw) => {
            let envelope = Envelope {
                mail_from: (!m.mail_from.is_empty()).then_some(m.mail_from.as_str()),
                rcpt_to: &m.rcpt_to,
            };
            (
                verify::verify_data(candidate, fetched, raw, &envelope, at),
                false,
            )
        }
        None if !envelope_decides(old.reason) => return None,
        None => {
            let sender = if m.mail_from.is_empty() {
                m.headers.header_from.clone().unwrap_or_default()
            } else {
                m.mail_from.clone()
            };
            (
                verify::verify_envelope(candidate, &sender, &m.rcpt_to, m.kind.as_deref(), at),
                true,
            )
        }
    };
    let new = outcome(&admitted(candidate, &m.session.client_ip, verdict));
    let differs = differences(&old, &new);
    let change = (!differs.is_empty()).then(|| Change {
        id: m.id.clone(),
        received_at: EvalTime::from_unix((m.received_at.max(0) / 1000) as u64).to_rfc3339(),
        mail_from: m.mail_from.clone(),
        rcpt_to: m.rcpt_to.clone(),
        kind: m.kind.clone(),
        envelope_only,
        differs,
        old,
        new,
    });
    Some((envelope_only, change))
}

/// Reasons the envelope alone decides; any other refusal needs the body.
fn envelope_decides(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Ok
            | Reason::UnauthorizedDomain
            | Reason::UnauthorizedClient
            | Reason::RouteDenied
            | Reason::TooManyRecipients
    )
}

/// The recorded decision; `None` without its decision record (pruned).
fn recorded(d: &Decided) -> Option<Outcome> {
    let decision = d.decision.as_ref()?;
    let accepted = d.message.verdict == RecordedVerdict::Accept;
    Some(Outcome {
        verdict: if accepted { "accept" } else { "reject" },
        reason: d.message.reason,
        recipients: decision
            .recipients
            .iter()
            .map(|r| RecipientRoute {
                recipient: r.recipient.clone().unwrap_or_default(),
                route: r.route.clone(),
                authority: r.authority.clone(),
                next_hop: r.next_hop.clone(),
                lane: r.lane,
            })
            .collect(),
    })
}

/// The intake's client check, which the verdict alone does not make: the
/// sender's authority must admit the recorded client address.
fn admitted(candidate: &Policy, client_ip: &str, verdict: Verdict) -> Verdict {
    if !verdict.accepted() {
        return verdict;
    }
    let ip = client_ip.parse::<std::net::IpAddr>().ok();
    let authority = candidate
        .authorities
        .iter()
        .find(|a| verdict.authority.as_deref() == Some(a.id.as_str()));
    match (authority, ip) {
        (Some(a), Some(ip)) if !a.admits_client(ip) => Verdict::rejected(
            Reason::UnauthorizedClient,
            format!(
                "client {client_ip} may not submit mail for authority {}",
                a.id
            ),
        ),
        _ => verdict,
    }
}

fn outcome(v: &Verdict) -> Outcome {
    Outcome {
        verdict: if v.accepted() { "accept" } else { "reject" },
        reason: v.reason,
        recipients: v.recipients.clone(),
    }
}

fn differences(old: &Outcome, new: &Outcome) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.verdict != new.verdict {
        out.push("verdict");
    }
    if old.reason != new.reason {
        out.push("reason");
    }
    // Routing compares only where both sides accept: a refusal routes nothing.
    if old.verdict == "accept" && new.verdict == "accept" {
        let field = |f: fn(&RecipientRoute) -> Option<String>| {
            old.recipients
                .iter()
                .map(f)
                .ne(new.recipients.iter().map(f))
        };
        if field(|r| r.route.clone()) {
            out.push("route");
        }
        if field(|r| r.next_hop.clone()) {
            out.push("next_hop");
        }
        if field(|r| r.lane.map(|l| l.as_str().to_owned())) {
            out.push("lane");
        }
    }
    out
}

impl Report {
    /// The report for people: one block per change, then the totals.
    pub fn text(&self, period: Period) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for c in &self.changes {
            let _ = writeln!(
                s,
                "{} received {} <{}> -> {}{}{}",
                c.id,
                c.received_at,
                c.mail_from,
                c.rcpt_to.join(", "),
                c.kind
                    .as_ref()
                    .map_or(String::new(), |k| format!(", kind {k}")),
                if c.envelope_only {
                    " (envelope only: body not kept)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                s,
                "  {} {} -> {} {}",
                c.old.verdict, c.old.reason, c.new.verdict, c.new.reason
            );
            if c.old.verdict == "accept" && c.new.verdict == "accept" {
                for (o, n) in c.old.recipients.iter().zip(&c.new.recipients) {
                    if routing(o) != routing(n) {
                        let _ =
                            writeln!(s, "  <{}>: {} -> {}", o.recipient, routing(o), routing(n));
                    }
                }
            }
        }
        let when = |ms: i64| EvalTime::from_unix((ms.max(0) / 1000) as u64).to_rfc3339();
        let _ = writeln!(
            s,
            "replayed {} message(s) received {} to {} under policy version {}: {} would change \
             ({} judged on the envelope alone, {} not re-judged: body not kept or decision pruned)",
            self.judged,
            when(period.from_ms),
            when(period.until_ms),
            &self.candidate_version[..self.candidate_version.len().min(16)],
            self.changes.len(),
            self.envelope_only,
            self.not_rejudged
        );
        s
    }
}

fn routing(r: &RecipientRoute) -> String {
    format!(
        "route {}, next hop {}, lane {}",
        r.route.as_deref().unwrap_or("-"),
        r.next_hop.as_deref().unwrap_or("-"),
        r.lane.map_or("-", |l| l.as_str())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Lane;

    fn routed(route: &str, hop: &str, lane: Lane) -> RecipientRoute {
        RecipientRoute {
            recipient: "b@bb.example".into(),
            route: Some(route.into()),
            authority: Some("bb-moj".into()),
            next_hop: Some(hop.into()),
            lane: Some(lane),
        }
    }

    fn accept(r: Vec<RecipientRoute>) -> Outcome {
        Outcome {
            verdict: "accept",
            reason: Reason::Ok,
            recipients: r,
        }
    }

    #[test]
    fn differences_name_each_field() {
        let a = accept(vec![routed("r1", "mx:25", Lane::Normal)]);
        assert!(differences(&a, &a.clone()).is_empty());
        let b = accept(vec![routed("r2", "mx2:25", Lane::Urgent)]);
        assert_eq!(differences(&a, &b), ["route", "next_hop", "lane"]);
        let refused = Outcome {
            verdict: "reject",
            reason: Reason::RouteDenied,
            recipients: vec![],
        };
        assert_eq!(differences(&a, &refused), ["verdict", "reason"]);
    }

    #[test]
    fn durations_and_periods() {
        assert_eq!(duration_ms("90s").unwrap(), 90_000);
        assert_eq!(duration_ms("7d").unwrap(), 7 * 86_400_000);
        assert_eq!(duration_ms("2w").unwrap(), 14 * 86_400_000);
        for bad in ["", "7", "d", "0d", "7y", "-1d"] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
        let p = Period::from_flags(Some("1h"), None, None, 10_000_000).unwrap();
        assert_eq!(
            (p.from_ms, p.until_ms),
            (10_000_000 - 3_600_000, 10_000_001)
        );
        assert!(Period::from_flags(Some("1h"), Some("2026-01-01"), None, 0).is_err());
        assert!(Period::from_flags(None, Some("2026-02-01"), Some("2026-01-01"), 0).is_err());
        let all = Period::from_flags(None, None, None, 5).unwrap();
        assert_eq!((all.from_ms, all.until_ms), (0, 6));
    }

    #[test]
    fn only_envelope_reasons_are_judged_without_the_body() {
        assert!(envelope_decides(Reason::Ok));
        assert!(envelope_decides(Reason::RouteDenied));
        assert!(!envelope_decides(Reason::BadSignature));
        assert!(!envelope_decides(Reason::Revoked));
    }
}
