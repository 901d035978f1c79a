//! `emla policy diff`: what an edit changes between two loaded policies,
//! named the way the policy files name it, so an administrator can read
//! the change before reloading and an auditor can read it afterwards.
//!
//! Both sides are compared after loading, not as text: a moved line or a
//! reformatted file is no change, while a CRL file replaced under the same
//! name or an anchor swapped for another certificate is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::{
    Authority, Kind, KindSettings, Limits, Matcher, Named, Policy, RelaySettings, Route,
    RouteAction, TlsMode,
};
use crate::text::list_or_none;
use crate::trust::cert::CertInfo;

/// Which part of the policy a change is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// `gateway.toml` `[gateway]`.
    Gateway,
    /// `gateway.toml` `[limits]`.
    Limits,
    /// `gateway.toml` `[relay]`.
    Relay,
    /// `gateway.toml` `[kinds]`.
    Kinds,
    /// A `[[kind]]` of `gateway.toml`.
    Kind,
    /// A file under `authorities/`.
    Authority,
    /// `routes.toml`.
    Route,
}

/// What happened to the thing a change names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Only in the new policy.
    Added,
    /// Only in the old policy.
    Removed,
    /// In both, with another value.
    Changed,
    /// A route in both, at another place in the order (first match wins).
    Moved,
}

/// One difference between two policies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The part of the policy.
    pub section: Section,
    /// The authority id, route name or setting key it concerns.
    pub subject: String,
    /// Added, removed, changed or moved.
    pub action: Action,
    /// The field of an authority or route, when the change is to one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    /// The old value, as the policy files would write it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// The new value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.section {
            Section::Gateway => format!("[gateway] {}", self.subject),
            Section::Limits => format!("[limits] {}", self.subject),
            Section::Relay => format!("[relay] {}", self.subject),
            Section::Kinds => format!("[kinds] {}", self.subject),
            Section::Kind => format!("kind {}", self.subject),
            Section::Authority => format!("authority {}", self.subject),
            Section::Route => format!("route {:?}", self.subject),
        };
        let old = self.old.as_deref().unwrap_or("");
        let new = self.new.as_deref().unwrap_or("");
        match (self.action, self.field) {
            (Action::Added, None) => write!(f, "{subject} added: {new}"),
            (Action::Removed, None) => write!(f, "{subject} removed (was: {old})"),
            (Action::Added, Some(field)) => write!(f, "{subject}: {field} added: {new}"),
            (Action::Removed, Some(field)) => write!(f, "{subject}: {field} removed: {old}"),
            (Action::Moved, _) => write!(f, "{subject} moved: {old} -> {new} (first match wins)"),
            (Action::Changed, None) => write!(f, "{subject}: {old} -> {new}"),
            (Action::Changed, Some(field)) => write!(f, "{subject}: {field}: {old} -> {new}"),
        }
    }
}

/// Every difference from `old` to `new`: settings first, then kinds, then
/// authorities by id, then routes in the new order.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    type Values = fn(&Policy) -> Vec<(&'static str, String)>;
    let sections: [(Section, Values); 4] = [
        (Section::Gateway, gateway_values),
        (Section::Limits, |p| limit_values(&p.limits)),
        (Section::Relay, |p| relay_values(&p.relay)),
        (Section::Kinds, |p| kind_settings(&p.kinds)),
    ];
    for (section, values) in sections {
        settings(section, &values(old), &values(new), &mut out);
    }
    kinds(&old.kinds.kinds, &new.kinds.kinds, &mut out);
    authorities(old, new, &mut out);
    routes(&old.routes, &new.routes, &mut out);
    out
}

fn kind_settings(k: &KindSettings) -> Vec<(&'static str, String)> {
    vec![
        ("trust_outer_header", k.trust_outer_header.to_string()),
        ("unknown", k.unknown.name().to_owned()),
    ]
}

/// A kind's fields as the policy writes them.
fn kind_fields(k: &Kind) -> Vec<(&'static str, String)> {
    let (header, values) = match &k.header {
        Some((h, v)) => (h.clone(), v.join(", ")),
        None => ("none".into(), "none".into()),
    };
    vec![
        ("name", k.name.clone()),
        ("header", header),
        ("values", values),
        (
            "subject",
            k.subject.clone().unwrap_or_else(|| "none".into()),
        ),
        ("lane", k.lane.map_or("none", |l| l.as_str()).to_owned()),
    ]
}

fn kind_summary(k: &Kind) -> String {
    let fields: Vec<String> = kind_fields(k)
        .into_iter()
        .filter(|(_, v)| v != "none")
        .map(|(f, v)| format!("{f} {v}"))
        .collect();
    fields.join(", ")
}

/// Kinds by id: added, removed, and each changed field.
fn kinds(old: &[Kind], new: &[Kind], out: &mut Vec<Change>) {
    for k in old.iter().filter(|k| !new.iter().any(|n| n.id == k.id)) {
        out.push(Change {
            old: Some(kind_summary(k)),
            ..change(Section::Kind, &k.id, Action::Removed)
        });
    }
    for k in new {
        let Some(was) = old.iter().find(|o| o.id == k.id) else {
            out.push(Change {
                new: Some(kind_summary(k)),
                ..change(Section::Kind, &k.id, Action::Added)
            });
            continue;
        };
        for ((field, a), (_, b)) in kind_fields(was).into_iter().zip(kind_fields(k)) {
            changed_field(Section::Kind, &k.id, field, a, b, out);
        }
    }
}

/// A route's `kind`, as the policy writes it.
fn route_kinds(r: &Route) -> String {
    if r.kinds.is_empty() {
        "every kind".to_owned()
    } else {
        r.kinds.join(", ")
    }
}

fn lane(r: &Route) -> String {
    r.lane
        .map_or("the kind's, else normal", |l| l.as_str())
        .to_owned()
}

fn change(section: Section, subject: &str, action: Action) -> Change {
    Change {
        section,
        subject: subject.to_owned(),
        action,
        field: None,
        old: None,
        new: None,
    }
}

/// A change of one field of an authority, kind or route, when `old != new`.
fn changed_field(
    section: Section,
    subject: &str,
    field: &'static str,
    old: String,
    new: String,
    out: &mut Vec<Change>,
) {
    if old != new {
        out.push(Change {
            field: Some(field),
            old: Some(old),
            new: Some(new),
            ..change(section, subject, Action::Changed)
        });
    }
}

/// Compares `key = value` lists in which every key is on both sides.
fn settings(
    section: Section,
    old: &[(&'static str, String)],
    new: &[(&'static str, String)],
    out: &mut Vec<Change>,
) {
    for ((key, a), (_, b)) in old.iter().zip(new) {
        if a != b {
            out.push(Change {
                old: Some(a.clone()),
                new: Some(b.clone()),
                ..change(section, key, Action::Changed)
            });
        }
    }
}

fn gateway_values(p: &Policy) -> Vec<(&'static str, String)> {
    let g = &p.gateway;
    let signing = match &g.signing {
        Some(id) => certificate(id.certificate_der()),
        None => "none (receipts and checkpoint signatures off)".to_owned(),
    };
    vec![
        ("hostname", g.hostname.clone()),
        ("postmaster", g.postmaster.clone()),
        ("signing_cert", signing),
    ]
}

fn limit_values(l: &Limits) -> Vec<(&'static str, String)> {
    let digests: Vec<&str> = l.digests.iter().map(|d| d.name()).collect();
    vec![
        ("max_message_size", l.max_message_size.to_string()),
        ("max_recipients", l.max_recipients.to_string()),
        ("max_header_size", l.max_header_size.to_string()),
        ("max_mime_depth", l.max_mime_depth.to_string()),
        ("signing_time_skew_secs", secs(l.signing_time_skew)),
        ("min_rsa_bits", l.min_rsa_bits.to_string()),
        ("digests", digests.join(", ")),
        ("crl", l.crl.name().to_owned()),
        ("require_email_eku", l.require_email_eku.to_string()),
        ("replay", l.replay.name().to_owned()),
        (
            "replay_window_days",
            (l.replay_window.as_secs() / 86_400).to_string(),
        ),
        ("allow_unsigned_text", l.allow_unsigned_text.to_string()),
    ]
}

fn relay_values(r: &RelaySettings) -> Vec<(&'static str, String)> {
    vec![
        ("queue_lifetime_secs", secs(r.queue_lifetime)),
        ("urgent_queue_lifetime_secs", secs(r.urgent_queue_lifetime)),
        ("delay_warning_secs", secs(r.delay_warning)),
        ("urgent_delay_warning_secs", secs(r.urgent_delay_warning)),
        ("retry_initial_secs", secs(r.retry_initial)),
        ("retry_max_secs", secs(r.retry_max)),
        (
            "max_connections_per_destination",
            r.max_connections_per_destination.to_string(),
        ),
        ("connect_timeout_secs", secs(r.connect_timeout)),
        ("urgent_alert_secs", secs(r.urgent_alert)),
        ("duty_alerts_per_hour", r.duty_alerts_per_hour.to_string()),
    ]
}

fn secs(d: std::time::Duration) -> String {
    d.as_secs().to_string()
}

/// A certificate as an administrator recognises it: subject and SHA-256.
fn certificate(der: &[u8]) -> String {
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, der));
    match CertInfo::parse(der) {
        Ok(c) => format!("{} (SHA-256 {sha})", c.subject()),
        Err(_) => format!("SHA-256 {sha}"),
    }
}

fn authorities(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let index = |p: &Policy| -> BTreeMap<String, usize> {
        p.authorities
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect()
    };
    let (before, after) = (index(old), index(new));
    let ids: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for id in ids {
        match (before.get(id), after.get(id)) {
            (Some(_), None) => out.push(Change {
                old: Some(summary(&old.authorities[before[id]])),
                ..change(Section::Authority, id, Action::Removed)
            }),
            (None, Some(&i)) => out.push(Change {
                new: Some(summary(&new.authorities[i])),
                ..change(Section::Authority, id, Action::Added)
            }),
            (Some(&a), Some(&b)) => authority(
                &old.authorities[a],
                &old.dir,
                &new.authorities[b],
                &new.dir,
                out,
            ),
            (None, None) => {}
        }
    }
}

fn summary(a: &Authority) -> String {
    format!(
        "{}, {:?}, domains {}, next hop {}",
        a.country,
        a.name,
        a.domains.join(", "),
        next_hop(a)
    )
}

fn next_hop(a: &Authority) -> String {
    let h = &a.next_hop;
    let tls = match &h.tls {
        TlsMode::Required { ca_file: None } => "tls required".to_owned(),
        TlsMode::Required { ca_file: Some(_) } => "tls required, own CA file".to_owned(),
        TlsMode::Opportunistic => "tls opportunistic".to_owned(),
        TlsMode::Pinned { sha256 } => format!("tls pinned {}", hex::encode(sha256)),
    };
    format!("smtp://{}:{} ({tls})", h.host, h.port)
}

/// The per-field comparison of one authority present on both sides.
fn authority(
    old: &Authority,
    old_dir: &Path,
    new: &Authority,
    new_dir: &Path,
    out: &mut Vec<Change>,
) {
    let scalar = |field, a, b, out: &mut Vec<Change>| {
        changed_field(Section::Authority, &old.id, field, a, b, out)
    };
    scalar("country", old.country.clone(), new.country.clone(), out);
    scalar("name", old.name.clone(), new.name.clone(), out);
    scalar("next_hop", next_hop(old), next_hop(new), out);
    scalar(
        "ocsp",
        old.ocsp.as_str().into(),
        new.ocsp.as_str().into(),
        out,
    );
    let fetch = |a: &Authority| if a.fetch_cdp { "cdp" } else { "off" }.to_owned();
    scalar("fetch_crls", fetch(old), fetch(new), out);
    let receipts = |a: &Authority| {
        let names: Vec<&str> = super::ReceiptKind::ALL
            .into_iter()
            .filter(|k| a.receipts.contains(*k))
            .map(|k| k.name())
            .collect();
        list_or_none(&names)
    };
    scalar("receipts", receipts(old), receipts(new), out);
    scalar(
        "rejection_notices_per_hour",
        old.rejection_notices_per_hour.to_string(),
        new.rejection_notices_per_hour.to_string(),
        out,
    );
    let duty = |a: &Authority| a.duty.clone().unwrap_or_else(|| "none".to_owned());
    scalar("duty", duty(old), duty(new), out);
    let encrypt = |a: &Authority| {
        super::EncryptMode::NAMES
            .iter()
            .find(|(_, m)| *m == a.encryption.mode)
            .map_or("?", |(n, _)| n)
            .to_owned()
    };
    scalar("encrypt", encrypt(old), encrypt(new), out);
    scalar(
        "encryption_cipher",
        old.encryption.cipher.name().to_owned(),
        new.encryption.cipher.name().to_owned(),
        out,
    );

    let members = |field: &'static str, a: Vec<String>, b: Vec<String>, out: &mut Vec<Change>| {
        members(&old.id, field, a, b, out)
    };
    members("domain", old.domains.clone(), new.domains.clone(), out);
    let certs = |ders: &[rustls_pki_types::CertificateDer<'_>]| {
        ders.iter().map(|d| certificate(d)).collect::<Vec<_>>()
    };
    members(
        "trust anchor",
        certs(&old.anchor_certs),
        certs(&new.anchor_certs),
        out,
    );
    members(
        "intermediate",
        certs(&old.intermediates),
        certs(&new.intermediates),
        out,
    );
    let encryption_certs = |a: &Authority| {
        let ders: Vec<_> = a
            .encryption
            .certificates
            .iter()
            .map(|c| c.der.clone())
            .collect();
        certs(&ders)
    };
    members(
        "encryption certificate",
        encryption_certs(old),
        encryption_certs(new),
        out,
    );
    members("crl_url", old.crl_urls.clone(), new.crl_urls.clone(), out);
    let clients = |a: &Authority| a.allowed_clients.iter().map(|n| n.to_string()).collect();
    members("allowed client", clients(old), clients(new), out);
    crls(old, old_dir, new, new_dir, out);
}

/// Added and removed members of a set-like field.
fn members(
    id: &str,
    field: &'static str,
    old: Vec<String>,
    new: Vec<String>,
    out: &mut Vec<Change>,
) {
    let (a, b): (BTreeSet<String>, BTreeSet<String>) =
        (old.into_iter().collect(), new.into_iter().collect());
    for gone in a.difference(&b) {
        out.push(Change {
            field: Some(field),
            old: Some(gone.clone()),
            ..change(Section::Authority, id, Action::Removed)
        });
    }
    for added in b.difference(&a) {
        out.push(Change {
            field: Some(field),
            new: Some(added.clone()),
            ..change(Section::Authority, id, Action::Added)
        });
    }
}

/// CRL files, by their path inside the policy directory: added, removed,
/// or replaced by another CRL under the same name.
fn crls(old: &Authority, old_dir: &Path, new: &Authority, new_dir: &Path, out: &mut Vec<Change>) {
    // Keyed by path and place in the file: a PEM file may hold several.
    let files = |a: &Authority, dir: &Path| -> BTreeMap<(String, usize), String> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        a.crls
            .iter()
            .map(|c| {
                let path = Path::new(&c.source);
                let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
                let number = c.number.as_deref().map_or("none".to_owned(), hex::encode);
                let desc = format!(
                    "{shown} (issuer {}, number {number}, SHA-256 {})",
                    c.issuer_text, c.sha256
                );
                let place = seen.entry(shown.clone()).or_default();
                *place += 1;
                ((shown, *place), desc)
            })
            .collect()
    };
    let (a, b) = (files(old, old_dir), files(new, new_dir));
    for (key, was) in &a {
        match b.get(key) {
            None => out.push(Change {
                field: Some("crl file"),
                old: Some(was.clone()),
                ..change(Section::Authority, &old.id, Action::Removed)
            }),
            Some(now) if now != was => out.push(Change {
                field: Some("crl file"),
                old: Some(was.clone()),
                new: Some(now.clone()),
                ..change(Section::Authority, &old.id, Action::Changed)
            }),
            Some(_) => {}
        }
    }
    for (key, now) in &b {
        if !a.contains_key(key) {
            out.push(Change {
                field: Some("crl file"),
                new: Some(now.clone()),
                ..change(Section::Authority, &old.id, Action::Added)
            });
        }
    }
}

fn matchers(ms: &[Matcher]) -> String {
    let words: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
    words.join(", ")
}

fn action(r: &Route) -> String {
    match r.action {
        RouteAction::Relay => "relay".to_owned(),
        RouteAction::Reject => format!("reject ({:?})", r.reason),
    }
}

fn route_summary(r: &Route, position: usize) -> String {
    let kinds = if r.kinds.is_empty() {
        String::new()
    } else {
        format!(" for kind {}", route_kinds(r))
    };
    let lane = r
        .lane
        .map_or(String::new(), |l| format!(", lane {}", l.as_str()));
    format!(
        "at position {position}: from {} to {}{kinds}, {}{lane}",
        matchers(&r.from),
        matchers(&r.to),
        action(r),
    )
}

/// Routes by name; for those on both sides, each changed field, and a move
/// where the order among them changed (the first matching route decides).
fn routes(old: &[Route], new: &[Route], out: &mut Vec<Change>) {
    let position = |rs: &[Route], name: &str| rs.iter().position(|r| r.name == name);
    for (i, r) in old.iter().enumerate() {
        if position(new, &r.name).is_none() {
            out.push(Change {
                old: Some(route_summary(r, i + 1)),
                ..change(Section::Route, &r.name, Action::Removed)
            });
        }
    }
    let common_old: Vec<&str> = old
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| position(new, n).is_some())
        .collect();
    let common_new: Vec<&str> = new
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| position(old, n).is_some())
        .collect();
    for (i, r) in new.iter().enumerate() {
        let Some(j) = position(old, &r.name) else {
            out.push(Change {
                new: Some(route_summary(r, i + 1)),
                ..change(Section::Route, &r.name, Action::Added)
            });
            continue;
        };
        let was = &old[j];
        let field = |field, a, b, out: &mut Vec<Change>| {
            changed_field(Section::Route, &r.name, field, a, b, out)
        };
        field("from", matchers(&was.from), matchers(&r.from), out);
        field("to", matchers(&was.to), matchers(&r.to), out);
        field("kind", route_kinds(was), route_kinds(r), out);
        field("action", action(was), action(r), out);
        field("lane", lane(was), lane(r), out);
        let rank = |names: &[&str]| names.iter().position(|n| *n == r.name);
        if rank(&common_old) != rank(&common_new) {
            out.push(Change {
                old: Some(format!("position {}", j + 1)),
                new: Some(format!("position {}", i + 1)),
                ..change(Section::Route, &r.name, Action::Moved)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The changes `diff` finds from `old` to `new`, as printed.
    fn printed<T>(diff: fn(&[T], &[T], &mut Vec<Change>), old: &[T], new: &[T]) -> Vec<String> {
        let mut out = Vec::new();
        diff(old, new, &mut out);
        out.iter().map(|c| c.to_string()).collect()
    }

    fn route(name: &str, to: &str) -> Route {
        Route {
            name: name.into(),
            from: vec![Matcher::Any],
            to: vec![Matcher::Country(to.into())],
            action: RouteAction::Relay,
            reason: String::new(),
            kinds: Vec::new(),
            lane: None,
        }
    }

    #[test]
    fn routes_added_removed_changed_and_moved() {
        let old = [route("a", "AA"), route("b", "BB"), route("c", "CC")];
        let mut c2 = route("c", "CC");
        c2.action = RouteAction::Reject;
        c2.reason = "closed".into();
        c2.kinds = vec!["mla-request".into()];
        let mut d = route("d", "DD");
        d.kinds = vec!["extradition-request".into()];
        d.lane = Some(super::super::Lane::Urgent);
        let new = [c2, route("a", "DD"), d];
        assert_eq!(
            printed(routes, &old, &new),
            [
                "route \"b\" removed (was: at position 2: from * to country:BB, relay)",
                "route \"c\": kind: every kind -> mla-request",
                "route \"c\": action: relay -> reject (\"closed\")",
                "route \"c\" moved: position 3 -> position 1 (first match wins)",
                "route \"a\": to: country:AA -> country:DD",
                "route \"a\" moved: position 1 -> position 2 (first match wins)",
                "route \"d\" added: at position 3: from * to country:DD for kind \
                 extradition-request, relay, lane urgent",
            ]
        );
    }

    #[test]
    fn a_route_shifted_by_an_insertion_has_not_moved() {
        let old = [route("a", "AA"), route("b", "BB")];
        let new = [route("new", "NN"), route("a", "AA"), route("b", "BB")];
        let mut out = Vec::new();
        routes(&old, &new, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].action, Action::Added);
    }

    #[test]
    fn set_fields_report_each_member() {
        let mut out = Vec::new();
        members(
            "aa-moj",
            "domain",
            vec!["a.example".into(), "b.example".into()],
            vec!["b.example".into(), "c.example".into()],
            &mut out,
        );
        let text: Vec<String> = out.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            [
                "authority aa-moj: domain removed: a.example",
                "authority aa-moj: domain added: c.example",
            ]
        );
    }

    #[test]
    fn kinds_added_removed_and_changed() {
        let kind = |id: &str, lane| Kind {
            id: id.into(),
            name: id.into(),
            header: Some(("X-MLA-Type".into(), vec![id.into()])),
            subject: None,
            lane,
        };
        let old = [kind("mla-request", None), kind("asylum", None)];
        let new = [
            kind("mla-request", Some(super::super::Lane::Urgent)),
            kind("extradition-request", None),
        ];
        assert_eq!(
            printed(kinds, &old, &new),
            [
                "kind asylum removed (was: name asylum, header X-MLA-Type, values asylum)",
                "kind mla-request: lane: none -> urgent",
                "kind extradition-request added: name extradition-request, header X-MLA-Type, \
                 values extradition-request",
            ]
        );
        let mut out = Vec::new();
        let trusting = KindSettings {
            trust_outer_header: true,
            ..Default::default()
        };
        settings(
            Section::Kinds,
            &kind_settings(&KindSettings::default()),
            &kind_settings(&trusting),
            &mut out,
        );
        assert_eq!(
            out[0].to_string(),
            "[kinds] trust_outer_header: false -> true"
        );
    }
}
