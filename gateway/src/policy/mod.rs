//! Policy files: model, loading, validation, routing decisions.
//!
//! See `policy/README.md` at the repository root for the file reference.

mod authority;
mod check;
mod current;
pub mod diff;
mod encryption;
mod files;
mod gateway;
mod kind;
mod model;
mod pki;
mod route;
mod routes;

pub use current::CurrentPolicy;
pub use files::FileSet;
pub use kind::{Declared, Kind, KindSettings, UnknownKind};
pub use model::*;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::clock::EvalTime;

/// One problem found in the policy, located in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line (1 when the problem concerns the whole file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong, in words an administrator understands.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Loads and validates the policy in `dir`, judging certificate and CRL
/// validity at `now`. Returns every problem found, not just the first.
///
/// Diagnostics come sorted by file, line and column; so do the
/// [`Policy::notes`] of a policy that loads.
pub fn load(dir: &Path, now: EvalTime) -> Result<Policy, Vec<Diagnostic>> {
    if let Err(e) = std::fs::read_dir(dir) {
        return Err(vec![files::file_diag(
            dir,
            format!("cannot read the policy directory: {}", files::io_reason(&e)),
        )]);
    }
    let mut diags = Vec::new();
    // Remarks that do not make the policy fail (shown by `emla policy check`).
    let mut notes = Vec::new();
    let mut fileset = files::FileSet::default();

    let defaults = || {
        (
            GatewaySettings::default(),
            Limits::default(),
            RelaySettings::default(),
            KindSettings::default(),
        )
    };
    let (gateway, limits, relay, kinds) = match files::read_source(dir, gateway::FILE, &mut fileset)
    {
        Ok(Some(src)) => gateway::parse(&src, dir, now, &mut fileset, &mut diags),
        Ok(None) => defaults(),
        Err(d) => {
            diags.push(d);
            defaults()
        }
    };

    let (authority_specs, complete) =
        authority::load_all(dir, now, &mut fileset, &mut diags, &mut notes);
    let directory = check::authorities(&authority_specs, &mut diags);

    let route_specs = match files::read_source(dir, routes::FILE, &mut fileset) {
        Ok(Some(src)) => {
            let specs = routes::parse(&src, &mut diags);
            check::routes(&src, &specs, &directory, &kinds, complete, &mut diags);
            specs
        }
        Ok(None) => {
            diags.push(files::file_diag(
                &dir.join(routes::FILE),
                "cannot read file: no such file or directory",
            ));
            Vec::new()
        }
        Err(d) => {
            diags.push(d);
            Vec::new()
        }
    };

    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        diags.dedup();
        return Err(diags);
    }
    notes.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    notes.dedup();
    // No diagnostic means every authority and route was built.
    let authorities: Vec<Authority> = authority_specs
        .into_iter()
        .filter_map(|s| s.built)
        .collect();
    let routes: Vec<Route> = route_specs.into_iter().filter_map(|s| s.built).collect();
    let domain_index = authorities
        .iter()
        .enumerate()
        .flat_map(|(i, a)| a.domains.iter().map(move |d| (d.clone(), i)))
        .collect();
    Ok(Policy {
        dir: dir.to_path_buf(),
        version: fileset.version(),
        files: fileset,
        gateway,
        limits,
        relay,
        kinds,
        authorities,
        routes,
        domain_index,
        notes,
    })
}

impl Policy {
    /// The authority owning `domain` (compared case-insensitively).
    pub fn authority_for_domain(&self, domain: &str) -> Option<&Authority> {
        self.domain_index
            .get(&domain.to_ascii_lowercase())
            .map(|&i| &self.authorities[i])
    }

    /// The authority owning the domain of `address` (`local@domain`).
    pub fn authority_for_address(&self, address: &str) -> Option<&Authority> {
        let (_, domain) = address.rsplit_once('@')?;
        self.authority_for_domain(domain)
    }

    /// The routing decision for one sender/recipient pair (first match wins).
    ///
    /// The recipient's domain must belong to an authority
    /// ([`RouteDecision::UnknownRecipientDomain`] otherwise); then the first
    /// route whose `from` matches the sender and whose `to` matches the
    /// recipient decides ([`RouteDecision::NoRoute`] when none does).
    /// A route with `kind = [...]` matches only messages of those kinds;
    /// one without matches every message.
    pub fn route(&self, from: &str, to: &str, kind: Option<&str>) -> RouteDecision<'_> {
        route::decide(self, from, to, kind)
    }

    /// The routing decision before the message (and so its kind) is
    /// known, as at RCPT: `None` when it depends on the kind.
    pub fn route_any_kind(&self, from: &str, to: &str) -> Option<RouteDecision<'_>> {
        route::decide_any_kind(self, from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample policy shipped in `policy/` loads and routes as its
    /// comments say.
    #[test]
    fn sample_policy_routes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy");
        let p = load(&dir, EvalTime::now()).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(p.authorities.len(), 3);
        assert_eq!(p.version.len(), 64);
        assert_eq!(p.gateway.hostname, "emla.example.org");
        let relay_kind = |from: &str, to: &str, kind: Option<&str>| match p.route(from, to, kind) {
            RouteDecision::Relay { route, authority } => (
                route.name.clone(),
                authority.id.clone(),
                route.lane_for(kind.and_then(|k| p.kinds.get(k))),
            ),
            other => panic!("{from} -> {to}: {other:?}"),
        };
        let relay = |from: &str, to: &str| relay_kind(from, to, None);
        assert_eq!(
            relay("urgent@justice.aa.example", "x@Justice.BB.example"),
            (
                "aa-urgent-to-bb-central".into(),
                "bb-moj".into(),
                Lane::Urgent
            )
        );
        assert_eq!(
            relay("clerk@justice.aa.example", "x@justice.bb.example"),
            (
                "aa-central-to-bb-central".into(),
                "bb-moj".into(),
                Lane::Normal
            )
        );
        assert_eq!(
            relay("envoy@mfa.bb.example", "x@justice.aa.example").0,
            "bb-diplomatic-to-aa-central"
        );
        assert!(matches!(
            p.route("clerk@justice.bb.example", "envoy@mfa.bb.example", None),
            RouteDecision::Reject { route } if route.name == "no-domestic-bb"
        ));
        assert_eq!(
            p.route("envoy@mfa.bb.example", "x@justice.bb.example", None),
            RouteDecision::Reject {
                route: &p.routes[7]
            }
        );
        // Kinds: extradition through the diplomatic channel only; urgent
        // provisional arrests central to central on the urgent lane.
        let ex = Some("extradition-request");
        assert_eq!(
            relay_kind("clerk@justice.aa.example", "envoy@mfa.bb.example", ex).0,
            "aa-extradition-to-bb-diplomatic"
        );
        assert!(matches!(
            p.route("clerk@justice.aa.example", "x@justice.bb.example", ex),
            RouteDecision::Reject { route } if route.name == "aa-extradition-not-to-bb-central"
        ));
        assert_eq!(
            relay_kind(
                "clerk@justice.aa.example",
                "x@justice.bb.example",
                Some("provisional-arrest")
            ),
            (
                "aa-central-to-bb-central".into(),
                "bb-moj".into(),
                Lane::Urgent
            )
        );
        assert_eq!(p.kinds.kinds.len(), 5);
        assert!(matches!(
            p.route("clerk@justice.bb.example", "judge@justice.bb.example", None),
            RouteDecision::Reject { route } if route.name == "no-domestic-bb"
        ));
        for (from, to) in [
            ("clerk@justice.aa.example", "judge@justice.aa.example"),
            ("x@elsewhere.example", "x@justice.bb.example"),
        ] {
            assert_eq!(
                p.route(from, to, None),
                RouteDecision::NoRoute,
                "{from} → {to}"
            );
        }
        let bb_moj = p.authority_for_domain("justice.bb.example").unwrap();
        assert_eq!(bb_moj.anchors.len(), 1);
        assert_eq!(bb_moj.intermediates.len(), 1);
        assert_eq!(bb_moj.crls.len(), 2);
        assert!(matches!(
            bb_moj.next_hop.tls,
            TlsMode::Required { ca_file: Some(_) }
        ));
    }
}
