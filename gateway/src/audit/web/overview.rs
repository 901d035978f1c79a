//! The overview (the landing page), the queue page and the CRL status
//! page: figures from the store and the revocation downloader's state,
//! charts as inline SVG ([`super::charts`]), every chart followed by a
//! table of the same numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hyper::{Response, StatusCode};
use serde_json::json;

use super::auth::Auditor;
use super::charts::{bars, stacked, Series};
use super::html::{self, esc};
use super::query::Pairs;
use super::{error_response, json_body, respond, Body, HTML, JSON};
use crate::revocation::cli::CrlRow;
use crate::revocation::State;
use crate::store::overview::{Overview, MAX_DAYS};
use crate::store::{DeliveryState, QueueFilter, QueueRow};
use crate::text::{time_rfc3339, time_utc};

/// The period when `days` is not given.
pub const DEFAULT_DAYS: i64 = 7;

/// Entries of each stuck state (delayed, failed) listed on the overview.
pub const STUCK_LISTED: u32 = 10;

/// `?days=N`: a whole number of days from 1 to [`MAX_DAYS`]; the error
/// names the parameter and the range.
pub fn days(pairs: &[(String, String)]) -> Result<i64, String> {
    let Some(v) = super::query::get(pairs, "days") else {
        return Ok(DEFAULT_DAYS);
    };
    match v.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_DAYS).contains(&n) => Ok(n),
        _ => Err(format!(
            "days {v:?}: expected a whole number of days from 1 to {MAX_DAYS}"
        )),
    }
}

/// The OCSP answers held for one authority.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OcspRow {
    /// The authority.
    pub authority: String,
    /// Certificates with an answer held.
    pub held: usize,
    /// Of those, answers past their validity.
    pub stale: usize,
    /// The soonest end of validity among them (RFC 3339).
    pub soonest_until: Option<String>,
    /// The last error of a request, if any failed.
    pub last_error: Option<String>,
}

/// Per authority, the OCSP answers the downloader holds.
pub fn ocsp_rows(state: &State, now_unix: u64) -> Vec<OcspRow> {
    let mut by: BTreeMap<&str, OcspRow> = BTreeMap::new();
    for src in state.ocsp.values() {
        for a in &src.authorities {
            let r = by.entry(a).or_insert_with(|| OcspRow {
                authority: a.clone(),
                held: 0,
                stale: 0,
                soonest_until: None,
                last_error: None,
            });
            if src.sha256.is_some() {
                r.held += 1;
            }
            if src.valid_until.is_none_or(|u| u < now_unix) {
                r.stale += 1;
            }
            if let Some(u) = src.valid_until {
                let t = time_rfc3339(u as i64 * 1000);
                if r.soonest_until.as_ref().is_none_or(|s| t < *s) {
                    r.soonest_until = Some(t);
                }
            }
            if src.schedule.last_error.is_some() {
                r.last_error.clone_from(&src.schedule.last_error);
            }
        }
    }
    by.into_values().collect()
}

fn figure(out: &mut String, id: &str, title: &str, svg: Option<String>) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" id=\"{id}\"><figcaption>{}</figcaption>{}</figure>",
        esc(title),
        svg.unwrap_or_else(|| "<p class=\"error\">the chart could not be drawn</p>".into())
    );
}

fn day_label(day: i64) -> String {
    time_utc(day * 86_400_000).chars().take(10).collect()
}

/// Messages per day per authority: the chart and its table.
fn per_day(out: &mut String, o: &Overview) {
    let first = o.from_ms / 86_400_000;
    let last = o.until_ms / 86_400_000;
    let days: Vec<i64> = (first..last).collect();
    let mut by: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for d in &o.per_day {
        let v = by
            .entry(d.authority.as_str())
            .or_insert_with(|| vec![0; days.len()]);
        if let Some(slot) = v.get_mut((d.day - first) as usize) {
            *slot += d.accepted + d.rejected;
        }
    }
    let categories: Vec<String> = days
        .iter()
        .map(|d| day_label(*d)[5..].to_string())
        .collect();
    let series: Vec<Series> = by
        .iter()
        .map(|(name, values)| Series {
            name: (*name).to_string(),
            values: values.clone(),
        })
        .collect();
    figure(
        out,
        "per-day",
        "messages per day per sender authority",
        stacked(&categories, &series, "messages"),
    );
    out.push_str(
        "<table id=\"per-day-table\"><thead><tr><th>day (UTC)</th><th>authority</th>\
         <th>accepted</th><th>refused</th></tr></thead><tbody>\n",
    );
    for d in &o.per_day {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            day_label(d.day),
            esc(&d.authority),
            d.accepted,
            d.rejected
        );
    }
    out.push_str("</tbody></table>\n");
}

fn refusals(out: &mut String, o: &Overview) {
    let items: Vec<(String, i64)> = o
        .refusals
        .iter()
        .map(|r| (r.reason.clone(), r.count))
        .collect();
    figure(
        out,
        "refusals",
        "refusals by reason",
        bars(&items, "refused"),
    );
}

fn seconds(ms: Option<i64>) -> String {
    ms.map_or("-".into(), |m| format!("{:.1}", m as f64 / 1000.0))
}

fn latency(out: &mut String, o: &Overview) {
    let l = &o.latency;
    let items: Vec<(String, i64)> = [
        ("p50", l.p50_ms),
        ("p90", l.p90_ms),
        ("p99", l.p99_ms),
        ("max", l.max_ms),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.unwrap_or(0)))
    .collect();
    figure(
        out,
        "latency",
        &format!(
            "delivery latency, reception to relay (milliseconds), {} relayed",
            l.count
        ),
        bars(&items, "ms"),
    );
    let _ = writeln!(
        out,
        "<table id=\"latency-table\"><tr><th>relayed</th><th>p50 s</th><th>p90 s</th>\
         <th>p99 s</th><th>max s</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td></tr></table>",
        l.count,
        seconds(l.p50_ms),
        seconds(l.p90_ms),
        seconds(l.p99_ms),
        seconds(l.max_ms)
    );
}

/// The queue's entries as a table (newest first), each linking to its
/// message.
pub fn queue_table(rows: &[QueueRow], id: &str) -> String {
    if rows.is_empty() {
        return format!("<p id=\"{id}\">none</p>\n");
    }
    let mut t = format!(
        "<table id=\"{id}\"><thead><tr><th>entry</th><th>message</th><th>state</th>\
         <th>next hop</th><th>lane</th><th>attempts</th><th>queued (UTC)</th>\
         <th>last attempt (UTC)</th><th>last error</th></tr></thead><tbody>\n"
    );
    for q in rows {
        let href = super::query::link("/message", &[("id".into(), q.delivery.message_id.clone())]);
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"last-error\">{}</td></tr>",
            q.id,
            esc(&href),
            esc(&q.delivery.message_id),
            q.status.as_str(),
            esc(&q.delivery.next_hop),
            q.delivery.lane.as_str(),
            q.attempts,
            esc(&time_utc(q.created_at)),
            esc(&q.last_attempt_at.map(time_utc).unwrap_or_default()),
            esc(q.last_error.as_deref().unwrap_or(""))
        );
    }
    t.push_str("</tbody></table>\n");
    t
}

fn queue(out: &mut String, o: &Overview, stuck: &[QueueRow]) {
    let items: Vec<(String, i64)> = DeliveryState::ALL
        .iter()
        .filter(|s| **s != DeliveryState::Rejected)
        .map(|s| {
            let n = o
                .queue
                .iter()
                .find(|c| c.state == *s)
                .map_or(0, |c| c.count);
            (s.as_str().to_string(), n)
        })
        .collect();
    figure(
        out,
        "queue",
        "the queue now, by state",
        bars(&items, "entries"),
    );
    out.push_str("<h3>delayed and failed</h3>\n");
    out.push_str(&queue_table(stuck, "stuck"));
    out.push_str("<p><a href=\"/queue\">the whole queue</a></p>\n");
}

/// The CRLs and OCSP answers per authority, as tables.
pub fn revocation_tables(crls: &[CrlRow], ocsp: &[OcspRow]) -> String {
    let mut t = String::from(
        "<table id=\"crls\"><thead><tr><th>authority</th><th>kind</th><th>source</th>\
         <th>nextUpdate</th><th>fresh</th><th>last success</th><th>last error</th></tr>\
         </thead><tbody>\n",
    );
    for c in crls {
        let (class, word) = if c.stale {
            ("reject", "STALE")
        } else {
            ("accept", "fresh")
        };
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&c.authority),
            c.kind,
            esc(&c.source),
            esc(c.next_update.as_deref().unwrap_or("-")),
            esc(c.last_success.as_deref().unwrap_or("")),
            esc(c.last_error.as_deref().unwrap_or(""))
        );
    }
    t.push_str("</tbody></table>\n");
    if ocsp.is_empty() {
        t.push_str("<p id=\"ocsp\">no OCSP answers held</p>\n");
        return t;
    }
    t.push_str(
        "<table id=\"ocsp\"><thead><tr><th>authority</th><th>OCSP answers held</th>\
         <th>stale</th><th>soonest end of validity</th><th>last error</th></tr></thead><tbody>\n",
    );
    for r in ocsp {
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.authority),
            r.held,
            r.stale,
            esc(r.soonest_until.as_deref().unwrap_or("-")),
            esc(r.last_error.as_deref().unwrap_or(""))
        );
    }
    t.push_str("</tbody></table>\n");
    t
}

fn checkpoint(out: &mut String, o: &Overview, now_ms: i64) {
    out.push_str("<h2>checkpoint</h2>\n");
    match &o.checkpoint {
        None => {
            out.push_str("<p id=\"checkpoint\" class=\"error\">no checkpoint written yet</p>\n")
        }
        Some(c) => {
            let age = (now_ms - c.at_ms).max(0) / 1000;
            let _ = writeln!(
                out,
                "<p id=\"checkpoint\">last checkpoint {} (record {}, head {}, {}), \
                 <strong>{}</strong> ago</p>",
                esc(&time_rfc3339(c.at_ms)),
                c.record_seq,
                c.head_seq.map_or("-".into(), |s| s.to_string()),
                if c.signed { "signed" } else { "unsigned" },
                age_text(age)
            );
        }
    }
}

fn age_text(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// The overview page's body.
pub fn page(
    o: &Overview,
    days: i64,
    stuck: &[QueueRow],
    crls: &[CrlRow],
    ocsp: &[OcspRow],
    now_ms: i64,
) -> String {
    let mut b = format!(
        "<h1>overview</h1>\n<p id=\"period\">the last {days} days: {} to {} (UTC) · \
         period: <a href=\"/?days=1\">1 day</a> · <a href=\"/?days=7\">7 days</a> · \
         <a href=\"/?days=30\">30 days</a> · <a href=\"/?days=90\">90 days</a> · \
         <a href=\"/api/overview?days={days}\">as JSON</a></p>\n",
        esc(&time_utc(o.from_ms)),
        esc(&time_utc(o.until_ms))
    );
    b.push_str("<h2>messages</h2>\n");
    per_day(&mut b, o);
    refusals(&mut b, o);
    b.push_str("<h2>delivery</h2>\n");
    latency(&mut b, o);
    queue(&mut b, o, stuck);
    b.push_str("<h2>CRL and OCSP freshness</h2>\n");
    b.push_str(&revocation_tables(crls, ocsp));
    checkpoint(&mut b, o, now_ms);
    b
}

/// Most queue entries the queue page lists.
pub const QUEUE_PAGE_LIMIT: u32 = 200;

impl super::Web {
    /// The CRL rows of `emla crl status` and the OCSP answers, now.
    fn freshness(&self) -> (Vec<CrlRow>, Vec<OcspRow>) {
        let state = State::load(&self.revocation_dir);
        let now = crate::clock::EvalTime::now();
        let crls = crate::revocation::cli::status_rows(&self.policy.get(), &state, now);
        (crls, ocsp_rows(&state, now.unix()))
    }

    /// `/` and `/overview?days=N`.
    pub(super) async fn overview(&self, a: &Auditor, pairs: &Pairs, json: bool) -> Response<Body> {
        let days = match days(pairs) {
            Ok(d) => d,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, a, json, "overview", &e),
        };
        let now = crate::store::now_ms();
        let mut stuck = Vec::new();
        let figures = match self.store.overview(days, now).await {
            Ok(o) => o,
            Err(e) => return self.unavailable(a, json, "overview", &e),
        };
        for status in [DeliveryState::Delayed, DeliveryState::Failed] {
            let f = QueueFilter {
                status: Some(status),
                limit: STUCK_LISTED,
                ..QueueFilter::default()
            };
            match self.store.queue_rows(&f).await {
                Ok(rows) => stuck.extend(rows),
                Err(e) => return self.unavailable(a, json, "overview", &e),
            }
        }
        let (crls, ocsp) = self.freshness();
        if json {
            let v = json!({"auditor": a.name, "days": days, "figures": figures,
                           "stuck": stuck, "crls": crls, "ocsp": ocsp});
            return respond(StatusCode::OK, JSON, json_body(&v));
        }
        let body = page(&figures, days, &stuck, &crls, &ocsp, now);
        respond(StatusCode::OK, HTML, html::page("overview", Some(a), &body))
    }

    /// `/queue?status=S`: the queue, newest first, read-only.
    pub(super) async fn queue(&self, a: &Auditor, pairs: &Pairs, json: bool) -> Response<Body> {
        let status = match super::query::get(pairs, "status") {
            None => None,
            Some(s) => match crate::store::state::parse_filter("status", s) {
                Ok((state, _)) => Some(state),
                Err(e) => return error_response(StatusCode::BAD_REQUEST, a, json, "queue", &e),
            },
        };
        let f = QueueFilter {
            status,
            limit: QUEUE_PAGE_LIMIT,
            ..QueueFilter::default()
        };
        let rows = match self.store.queue_rows(&f).await {
            Ok(r) => r,
            Err(e) => return self.unavailable(a, json, "queue", &e),
        };
        if json {
            return respond(
                StatusCode::OK,
                JSON,
                json_body(&json!({"auditor": a.name, "queue": rows})),
            );
        }
        let mut b =
            String::from("<h1>queue</h1>\n<p id=\"states\">state: <a href=\"/queue\">any</a>");
        for s in DeliveryState::ALL
            .iter()
            .filter(|s| **s != DeliveryState::Rejected)
        {
            let _ = write!(b, " · <a href=\"/queue?status={0}\">{0}</a>", s.as_str());
        }
        let _ = writeln!(
            b,
            " · <a href=\"{}\">as JSON</a></p>\n<p>the newest {QUEUE_PAGE_LIMIT} entries{}</p>",
            esc(&super::query::link(
                "/api/queue",
                &super::query::with(pairs, "format", "")
            )),
            status.map_or(String::new(), |s| format!(" in state {s}"))
        );
        b.push_str(&queue_table(&rows, "queue-table"));
        respond(StatusCode::OK, HTML, html::page("queue", Some(a), &b))
    }

    /// `/crl`: the CRLs and OCSP answers per authority.
    pub(super) fn crl(&self, a: &Auditor, json: bool) -> Response<Body> {
        let (crls, ocsp) = self.freshness();
        if json {
            return respond(
                StatusCode::OK,
                JSON,
                json_body(&json!({"crls": crls, "ocsp": ocsp})),
            );
        }
        let stale = crls.iter().filter(|c| c.stale).count();
        let b = format!(
            "<h1>CRL status</h1>\n<p id=\"crl-summary\" class=\"{}\">{} CRL sources, {stale} stale</p>\n{}",
            if stale > 0 { "error" } else { "chain-intact" },
            crls.len(),
            revocation_tables(&crls, &ocsp)
        );
        respond(StatusCode::OK, HTML, html::page("CRL status", Some(a), &b))
    }

    fn unavailable(
        &self,
        a: &Auditor,
        json: bool,
        title: &str,
        e: &crate::store::StoreError,
    ) -> Response<Body> {
        tracing::error!(auditor = %a.name, error = %e, "audit web: store unavailable");
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            a,
            json,
            title,
            &e.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_checked() {
        let p = |q: &str| super::super::query::pairs(Some(q));
        assert_eq!(days(&p("")), Ok(DEFAULT_DAYS));
        assert_eq!(days(&p("days=30")), Ok(30));
        assert_eq!(days(&p("days=90")), Ok(90));
        for bad in ["days=0", "days=91", "days=x", "days=-1", "days=1.5"] {
            let e = days(&p(bad)).unwrap_err();
            assert!(e.contains("from 1 to 90"), "{bad}: {e}");
        }
    }

    #[test]
    fn ages() {
        assert_eq!(age_text(5), "5 s");
        assert_eq!(age_text(600), "10 min");
        assert_eq!(age_text(3 * 3600), "3 h");
        assert_eq!(age_text(3 * 86_400), "3 days");
    }
}
