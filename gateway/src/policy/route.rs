//! Routing decisions: which rule applies to a sender and a recipient.

use super::{Matcher, Policy, Route, RouteAction, RouteDecision};

/// The decision for one sender/recipient pair and a message of `kind`:
/// the recipient's domain must belong to an authority, then the first rule
/// whose sender and recipient matchers both match, and that applies to the
/// kind, decides.
pub(super) fn decide<'p>(
    policy: &'p Policy,
    from: &str,
    to: &str,
    kind: Option<&str>,
) -> RouteDecision<'p> {
    let Some(authority) = policy.authority_for_address(to) else {
        return RouteDecision::UnknownRecipientDomain;
    };
    let hit = candidates(policy, from, to).find(|r| r.applies_to(kind));
    outcome(hit, authority)
}

/// [`decide`] for a message whose kind is not known yet: `None` when the
/// first matching rule is restricted to some kinds (the decision, and its
/// reason, then depend on the kind).
pub(super) fn decide_any_kind<'p>(
    policy: &'p Policy,
    from: &str,
    to: &str,
) -> Option<RouteDecision<'p>> {
    let Some(authority) = policy.authority_for_address(to) else {
        return Some(RouteDecision::UnknownRecipientDomain);
    };
    match candidates(policy, from, to).next() {
        Some(r) if !r.kinds.is_empty() => None,
        hit => Some(outcome(hit, authority)),
    }
}

/// The rules matching the sender and the recipient, in order.
fn candidates<'p, 'a>(
    policy: &'p Policy,
    from: &'a str,
    to: &'a str,
) -> impl Iterator<Item = &'p Route> + 'a
where
    'p: 'a,
{
    policy.routes.iter().filter(move |r| {
        r.from.iter().any(|m| m.matches(from, policy)) && r.to.iter().any(|m| m.matches(to, policy))
    })
}

fn outcome<'p>(hit: Option<&'p Route>, authority: &'p super::Authority) -> RouteDecision<'p> {
    match hit {
        None => RouteDecision::NoRoute,
        Some(route) => match route.action {
            RouteAction::Relay => RouteDecision::Relay { route, authority },
            RouteAction::Reject => RouteDecision::Reject { route },
        },
    }
}

impl Matcher {
    /// Whether `address` (`local@domain`, compared case-insensitively)
    /// matches, looking authorities up in `policy`.
    pub fn matches(&self, address: &str, policy: &Policy) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Authority(id) => policy
                .authority_for_address(address)
                .is_some_and(|a| a.id == *id),
            Matcher::Country(cc) => policy
                .authority_for_address(address)
                .is_some_and(|a| a.country == *cc),
            Matcher::Domain(d) => address
                .rsplit_once('@')
                .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(d)),
            Matcher::Pattern(p) => glob(p.as_bytes(), address.to_ascii_lowercase().as_bytes()),
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes
/// (possibly empty) and every other byte matches itself. Linear in
/// practice: on a mismatch it retries from the last `*` only.
pub(super) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Authority, GatewaySettings, Kind, Lane, Limits, NextHop, Route, TlsMode};
    use std::collections::HashMap;

    fn authority(id: &str, country: &str, domain: &str) -> Authority {
        Authority {
            id: id.into(),
            country: country.into(),
            name: id.into(),
            domains: vec![domain.into()],
            anchors: Vec::new(),
            anchor_certs: Vec::new(),
            intermediates: Vec::new(),
            crls: Vec::new(),
            crl_urls: Vec::new(),
            fetch_cdp: false,
            ocsp: Default::default(),
            allowed_clients: Vec::new(),
            next_hop: NextHop {
                host: format!("mx.{domain}"),
                port: 25,
                tls: TlsMode::Opportunistic,
            },
            receipts: crate::policy::ReceiptKinds::ALL,
            rejection_notices_per_hour: crate::policy::authority::REJECTION_NOTICES_PER_HOUR,
            duty: None,
            encryption: Default::default(),
        }
    }

    fn route(name: &str, from: Vec<Matcher>, to: Vec<Matcher>, action: RouteAction) -> Route {
        Route {
            name: name.into(),
            from,
            to,
            action,
            reason: String::new(),
            kinds: Vec::new(),
            lane: None,
        }
    }

    fn policy(routes: Vec<Route>) -> Policy {
        let authorities = vec![
            authority("aa-moj", "AA", "justice.aa.example"),
            authority("bb-moj", "BB", "justice.bb.example"),
            authority("bb-mfa", "BB", "mfa.bb.example"),
        ];
        let domain_index: HashMap<String, usize> = authorities
            .iter()
            .enumerate()
            .flat_map(|(i, a)| a.domains.iter().map(move |d| (d.clone(), i)))
            .collect();
        Policy {
            dir: "policy".into(),
            version: String::new(),
            files: Default::default(),
            gateway: GatewaySettings::default(),
            limits: Limits::default(),
            relay: Default::default(),
            kinds: Default::default(),
            authorities,
            routes,
            domain_index,
            notes: Vec::new(),
        }
    }

    #[test]
    fn glob_matching() {
        assert!(glob(b"*", b""));
        assert!(glob(b"*@justice.aa.example", b"clerk@justice.aa.example"));
        assert!(glob(b"minister@*", b"minister@mfa.bb.example"));
        assert!(!glob(b"minister@*", b"deputy@mfa.bb.example"));
        assert!(glob(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob(b"a*b*c", b"aXXbYYbd"));
        assert!(glob(b"x@y", b"x@y"));
        assert!(!glob(b"x@y", b"x@yz"));
    }

    #[test]
    fn matchers_are_case_insensitive() {
        let p = policy(Vec::new());
        let addr = "Clerk@JUSTICE.aa.example";
        assert!(Matcher::Authority("aa-moj".into()).matches(addr, &p));
        assert!(Matcher::Country("AA".into()).matches(addr, &p));
        assert!(!Matcher::Country("BB".into()).matches(addr, &p));
        assert!(Matcher::Domain("justice.aa.example".into()).matches(addr, &p));
        assert!(Matcher::Pattern("clerk@*".into()).matches(addr, &p));
        assert!(!Matcher::Authority("aa-moj".into()).matches("x@elsewhere.example", &p));
        assert!(Matcher::Any.matches("", &p));
    }

    #[test]
    fn first_matching_route_decides() {
        let p = policy(vec![
            route(
                "no-mfa-to-aa",
                vec![Matcher::Authority("bb-mfa".into())],
                vec![Matcher::Country("AA".into())],
                RouteAction::Reject,
            ),
            route(
                "bb-to-aa",
                vec![Matcher::Country("BB".into())],
                vec![Matcher::Authority("aa-moj".into())],
                RouteAction::Relay,
            ),
        ]);
        match p.route("x@justice.bb.example", "y@justice.aa.example", None) {
            RouteDecision::Relay { route, authority } => {
                assert_eq!(route.name, "bb-to-aa");
                assert_eq!(authority.id, "aa-moj");
            }
            other => panic!("{other:?}"),
        }
        match p.route("x@mfa.bb.example", "y@justice.aa.example", None) {
            RouteDecision::Reject { route } => assert_eq!(route.name, "no-mfa-to-aa"),
            other => panic!("{other:?}"),
        }
        for (from, to, want) in [
            (
                "x@justice.aa.example",
                "y@justice.bb.example",
                RouteDecision::NoRoute,
            ),
            (
                "x@justice.bb.example",
                "y@unknown.example",
                RouteDecision::UnknownRecipientDomain,
            ),
            (
                "x@justice.bb.example",
                "no-at-sign",
                RouteDecision::UnknownRecipientDomain,
            ),
        ] {
            assert_eq!(p.route(from, to, None), want, "{from} → {to}");
        }
    }

    #[test]
    fn kinds_route_differently() {
        let aa_moj = || vec![Matcher::Authority("aa-moj".into())];
        let bb = || vec![Matcher::Country("BB".into())];
        let mut extradition = route("extradition-via-mfa", aa_moj(), bb(), RouteAction::Relay);
        extradition.kinds = vec!["extradition-request".into()];
        extradition.to = vec![Matcher::Authority("bb-mfa".into())];
        let mut no_extradition = route(
            "extradition-not-central",
            aa_moj(),
            bb(),
            RouteAction::Reject,
        );
        no_extradition.kinds = vec!["extradition-request".into()];
        let bb_moj = vec![Matcher::Authority("bb-moj".into())];
        let central = route("central", aa_moj(), bb_moj, RouteAction::Relay);
        let p = policy(vec![extradition, no_extradition, central]);
        let name = |d: RouteDecision<'_>| match d {
            RouteDecision::Relay { route, .. } => format!("relay {}", route.name),
            RouteDecision::Reject { route } => format!("reject {}", route.name),
            other => format!("{other:?}"),
        };
        let (aa, moj, mfa) = (
            "x@justice.aa.example",
            "y@justice.bb.example",
            "y@mfa.bb.example",
        );
        let ex = Some("extradition-request");
        assert_eq!(name(p.route(aa, mfa, ex)), "relay extradition-via-mfa");
        assert_eq!(name(p.route(aa, moj, ex)), "reject extradition-not-central");
        assert_eq!(name(p.route(aa, moj, None)), "relay central");
        assert_eq!(name(p.route(aa, moj, Some("mla-request"))), "relay central");
        assert_eq!(name(p.route(aa, mfa, None)), "NoRoute");
        // Before DATA: the first match is kind-restricted, so no answer yet.
        assert_eq!(p.route_any_kind(aa, moj), None);
        assert_eq!(
            p.route_any_kind("x@justice.bb.example", moj),
            Some(RouteDecision::NoRoute)
        );
        let urgent = Kind {
            id: "urgent".into(),
            name: "urgent".into(),
            header: None,
            subject: Some("*".into()),
            lane: Some(Lane::Urgent),
        };
        assert_eq!(p.routes[2].lane_for(Some(&urgent)), Lane::Urgent);
        assert_eq!(p.routes[2].lane_for(None), Lane::Normal);
    }
}
