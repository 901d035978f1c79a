//! Routing decisions: which rule applies to a sender and a recipient.

use super::{Matcher, Policy, RouteAction, RouteDecision};

/// The decision for one sender/recipient pair: the recipient's domain must
/// belong to an authority, then the first rule whose sender and recipient
/// matchers both match decides.
pub(super) fn decide<'p>(policy: &'p Policy, from: &str, to: &str) -> RouteDecision<'p> {
    let Some(authority) = policy.authority_for_address(to) else {
        return RouteDecision::UnknownRecipientDomain;
    };
    let hit = policy.routes.iter().find(|r| {
        r.from.iter().any(|m| m.matches(from, policy)) && r.to.iter().any(|m| m.matches(to, policy))
    });
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
fn glob(pattern: &[u8], text: &[u8]) -> bool {
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
    use crate::policy::{Authority, GatewaySettings, Lane, Limits, NextHop, Route, TlsMode};
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
        }
    }

    fn route(name: &str, from: Vec<Matcher>, to: Vec<Matcher>, action: RouteAction) -> Route {
        Route {
            name: name.into(),
            from,
            to,
            action,
            reason: String::new(),
            lane: Lane::Normal,
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
        match p.route("x@justice.bb.example", "y@justice.aa.example") {
            RouteDecision::Relay { route, authority } => {
                assert_eq!(route.name, "bb-to-aa");
                assert_eq!(authority.id, "aa-moj");
            }
            other => panic!("{other:?}"),
        }
        match p.route("x@mfa.bb.example", "y@justice.aa.example") {
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
            assert_eq!(p.route(from, to), want, "{from} → {to}");
        }
    }
}
