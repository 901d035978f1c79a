//! Checks across files: unique authority ids, domains owned by one
//! authority, routes referring to known authorities and countries, and
//! routes made unreachable by earlier ones (for the kinds they match).

use std::collections::HashMap;

use super::authority::AuthoritySpec;
use super::files::Source;
use super::routes::RouteSpec;
use super::{Diagnostic, KindSettings, Matcher};
use crate::text::list_or_none;

/// What the authorities declare, for judging routes.
#[derive(Default)]
pub(super) struct Directory {
    /// Authority id → country.
    countries: HashMap<String, String>,
    /// Domain → owning authority id (`None` when the owner's id is unknown).
    owners: HashMap<String, Option<String>>,
}

impl Directory {
    fn country_of(&self, id: &str) -> Option<&str> {
        self.countries.get(id).map(String::as_str)
    }

    fn owner_of(&self, domain: &str) -> Option<&str> {
        self.owners.get(domain).and_then(|o| o.as_deref())
    }

    fn has_country(&self, cc: &str) -> bool {
        self.countries.values().any(|c| c == cc)
    }
}

/// Checks authority ids and domains across files; returns what they declare.
pub(super) fn authorities(specs: &[AuthoritySpec], diags: &mut Vec<Diagnostic>) -> Directory {
    let mut dir = Directory::default();
    let mut id_files: HashMap<&str, &AuthoritySpec> = HashMap::new();
    let mut domain_files: HashMap<&str, &AuthoritySpec> = HashMap::new();
    for spec in specs {
        if let Some((id, span)) = &spec.id {
            match id_files.get(id.as_str()) {
                Some(first) => {
                    let file = first.src.path.display();
                    let problem = format!("duplicate authority id {id:?} (already used in {file})");
                    diags.push(spec.src.diag(span, problem));
                }
                None => {
                    id_files.insert(id, spec);
                    if let Some((cc, _)) = &spec.country {
                        dir.countries.insert(id.clone(), cc.clone());
                    }
                }
            }
        }
        for (domain, span) in &spec.domains {
            match domain_files.get(domain.as_str()) {
                Some(first) => {
                    let owner = match &first.id {
                        Some((id, _)) => format!("authority {id:?}"),
                        None => "another authority".to_owned(),
                    };
                    let file = first.src.path.display();
                    let problem = format!("domain {domain:?} is already owned by {owner} ({file})");
                    diags.push(spec.src.diag(span, problem));
                }
                None => {
                    domain_files.insert(domain, spec);
                    dir.owners
                        .insert(domain.clone(), spec.id.as_ref().map(|(id, _)| id.clone()));
                }
            }
        }
    }
    for spec in specs {
        if let Some((address, span)) = &spec.duty {
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
            if !domain_files.contains_key(domain.to_ascii_lowercase().as_str()) {
                diags.push(spec.src.diag(
                    span,
                    format!(
                        "duty address {address:?} is in no authority's domain: \
                         the gateway could not relay its alerts"
                    ),
                ));
            }
        }
    }
    dir
}

/// Checks that routes refer to declared authorities and countries (only
/// when every authority file could be read: `complete`) and to declared
/// kinds, and that no route is shadowed by an earlier one.
pub(super) fn routes(
    src: &Source,
    specs: &[RouteSpec],
    dir: &Directory,
    kinds: &KindSettings,
    complete: bool,
    diags: &mut Vec<Diagnostic>,
) {
    for spec in specs {
        let name = spec.name.as_ref().map_or("?", |(n, _)| n.as_str());
        for (id, span) in spec.kinds.iter().flatten() {
            if kinds.get(id).is_none() {
                let known: Vec<&str> = kinds.kinds.iter().map(|k| k.id.as_str()).collect();
                diags.push(src.diag(
                    span,
                    format!(
                        "route {name:?} refers to unknown kind {id:?} (gateway.toml declares: {})",
                        list_or_none(&known)
                    ),
                ));
            }
        }
        let matchers = spec.from.iter().chain(&spec.to).flatten();
        for (m, span) in matchers.filter(|_| complete) {
            match m {
                Matcher::Authority(id) if dir.country_of(id).is_none() => diags.push(src.diag(
                    span,
                    format!("route {name:?} refers to unknown authority {id:?}"),
                )),
                Matcher::Country(cc) if !dir.has_country(cc) => diags.push(src.diag(
                    span,
                    format!("route {name:?} refers to country {cc:?}, which has no authority"),
                )),
                _ => {}
            }
        }
    }
    for (i, later) in specs.iter().enumerate() {
        let (Some(from), Some(to), Some(lk)) = (&later.from, &later.to, &later.kinds) else {
            continue;
        };
        let shadow =
            specs[..i].iter().find(
                |earlier| match (&earlier.from, &earlier.to, &earlier.kinds) {
                    (Some(ef), Some(et), Some(ek)) => {
                        all_covered(ef, from, dir)
                            && all_covered(et, to, dir)
                            && kinds_covered(ek, lk)
                    }
                    _ => false,
                },
            );
        if let Some(earlier) = shadow {
            let name = later.name.as_ref().map_or("?", |(n, _)| n.as_str());
            let earlier_name = earlier.name.as_ref().map_or("?", |(n, _)| n.as_str());
            let line = src.position(earlier.header.start).0;
            let span = later
                .name
                .as_ref()
                .map_or(later.header.clone(), |(_, s)| s.clone());
            diags.push(src.diag(
                &span,
                format!(
                    "route {name:?} is unreachable: route {earlier_name:?} (line {line}) \
                     already matches every sender, recipient and kind it matches"
                ),
            ));
        }
    }
}

/// Whether every kind `later` matches is matched by `earlier` (an empty
/// list matches every kind, and messages declaring none).
fn kinds_covered(
    earlier: &[(String, std::ops::Range<usize>)],
    later: &[(String, std::ops::Range<usize>)],
) -> bool {
    earlier.is_empty()
        || (!later.is_empty()
            && later
                .iter()
                .all(|(k, _)| earlier.iter().any(|(e, _)| e == k)))
}

/// Whether every matcher of `later` is covered by one of `earlier`.
fn all_covered(
    earlier: &[(Matcher, std::ops::Range<usize>)],
    later: &[(Matcher, std::ops::Range<usize>)],
    dir: &Directory,
) -> bool {
    later
        .iter()
        .all(|(m, _)| earlier.iter().any(|(e, _)| covers(e, m, dir)))
}

/// Whether every address `inner` matches is provably matched by `outer`.
/// Conservative: `false` unless it follows from the declarations.
pub(super) fn covers(outer: &Matcher, inner: &Matcher, dir: &Directory) -> bool {
    match (outer, inner) {
        (Matcher::Any, _) => true,
        (a, b) if a == b => true,
        (Matcher::Country(cc), Matcher::Authority(id)) => dir.country_of(id) == Some(cc),
        (Matcher::Country(cc), Matcher::Domain(d)) => {
            dir.owner_of(d).and_then(|id| dir.country_of(id)) == Some(cc)
        }
        (Matcher::Authority(id), Matcher::Domain(d)) => dir.owner_of(d) == Some(id),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        let mut d = Directory::default();
        d.countries.insert("aa-moj".into(), "AA".into());
        d.countries.insert("bb-moj".into(), "BB".into());
        d.owners
            .insert("justice.aa.example".into(), Some("aa-moj".into()));
        d
    }

    #[test]
    fn coverage() {
        let d = dir();
        let aa = Matcher::Authority("aa-moj".into());
        let bb = Matcher::Authority("bb-moj".into());
        let c_aa = Matcher::Country("AA".into());
        let dom = Matcher::Domain("justice.aa.example".into());
        let pat = Matcher::Pattern("*@justice.aa.example".into());
        assert!(covers(&Matcher::Any, &pat, &d));
        assert!(covers(&aa, &aa, &d));
        assert!(covers(&c_aa, &aa, &d));
        assert!(!covers(&c_aa, &bb, &d));
        assert!(covers(&c_aa, &dom, &d));
        assert!(covers(&aa, &dom, &d));
        assert!(!covers(&bb, &dom, &d));
        assert!(!covers(&aa, &c_aa, &d));
        assert!(!covers(&pat, &dom, &d));
        assert!(!covers(&dom, &Matcher::Any, &d));
        assert!(covers(&pat, &pat, &d));
    }

    /// The diagnostics of [`routes`] over `specs` with [`dir`].
    fn check(
        src: &Source,
        specs: &[RouteSpec],
        kinds: &KindSettings,
        complete: bool,
    ) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        routes(src, specs, &dir(), kinds, complete, &mut diags);
        diags
    }

    fn spec(src: &Source, name: &str, from: Vec<Matcher>, to: Vec<Matcher>) -> RouteSpec {
        let at = src.text_offset(name);
        RouteSpec {
            header: at.clone(),
            name: Some((name.into(), at)),
            from: Some(from.into_iter().map(|m| (m, 0..0)).collect()),
            to: Some(to.into_iter().map(|m| (m, 0..0)).collect()),
            kinds: Some(Vec::new()),
            built: None,
        }
    }

    #[test]
    fn shadowed_routes_are_reported() {
        let src = Source::new("r.toml".into(), "first\nsecond\nthird\nfourth\n".into());
        let aa = Matcher::Authority("aa-moj".into());
        let bb = Matcher::Authority("bb-moj".into());
        let specs = vec![
            spec(
                &src,
                "first",
                vec![Matcher::Country("AA".into())],
                vec![bb.clone()],
            ),
            // Covered on both sides by "first".
            spec(&src, "second", vec![aa.clone()], vec![bb.clone()]),
            // Sender side not covered (BB is not AA).
            spec(&src, "third", vec![bb.clone()], vec![bb.clone()]),
            // One matcher out of two not covered: reachable.
            spec(
                &src,
                "fourth",
                vec![aa.clone(), bb.clone()],
                vec![bb.clone()],
            ),
        ];
        let diags = check(&src, &specs, &KindSettings::default(), true);
        let got: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "r.toml:2:1: route \"second\" is unreachable: route \"first\" (line 1) \
                 already matches every sender, recipient and kind it matches"
            ]
        );
    }

    #[test]
    fn catch_all_shadows_everything_after_it() {
        let src = Source::new("r.toml".into(), "first\nsecond\n".into());
        let specs = vec![
            spec(&src, "first", vec![Matcher::Any], vec![Matcher::Any]),
            spec(
                &src,
                "second",
                vec![Matcher::Pattern("x@*".into())],
                vec![Matcher::Country("AA".into())],
            ),
        ];
        let diags = check(&src, &specs, &KindSettings::default(), true);
        assert_eq!(diags.len(), 1);
        assert!(diags[0]
            .message
            .starts_with("route \"second\" is unreachable"));
    }

    #[test]
    fn unknown_references_are_reported() {
        let src = Source::new("r.toml".into(), "first\n".into());
        let specs = vec![spec(
            &src,
            "first",
            vec![Matcher::Authority("zz-moj".into())],
            vec![Matcher::Country("ZZ".into())],
        )];
        let diags = check(&src, &specs, &KindSettings::default(), true);
        let msgs: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "route \"first\" refers to unknown authority \"zz-moj\"",
                "route \"first\" refers to country \"ZZ\", which has no authority",
            ]
        );
        // Not judged when an authority file could not be read.
        let diags = check(&src, &specs, &KindSettings::default(), false);
        assert!(diags.is_empty());
    }

    #[test]
    fn kinds_in_shadowing_and_unknown_kinds() {
        let src = Source::new(
            "r.toml".into(),
            "first\nsecond\nthird\nfourth\nfifth\nasylum\n".into(),
        );
        let kinds = KindSettings {
            kinds: ["mla-request", "extradition-request"]
                .into_iter()
                .map(|id| crate::policy::Kind {
                    id: id.into(),
                    name: id.into(),
                    header: Some(("X-MLA-Type".into(), vec![id.into()])),
                    subject: None,
                    lane: None,
                })
                .collect(),
            ..Default::default()
        };
        let with = |mut s: RouteSpec, ks: &[&str]| {
            s.kinds = Some(
                ks.iter()
                    .map(|k| (k.to_string(), src.text_offset(k)))
                    .collect(),
            );
            s
        };
        let any = || vec![Matcher::Any];
        let specs = vec![
            with(spec(&src, "first", any(), any()), &["extradition-request"]),
            // Other kinds (and none) still reach it.
            spec(&src, "second", any(), any()),
            // Only extradition requests: "first" takes them all.
            with(spec(&src, "third", any(), any()), &["extradition-request"]),
            // "second" matches every kind.
            with(spec(&src, "fourth", any(), any()), &["mla-request"]),
            with(spec(&src, "fifth", any(), any()), &["asylum"]),
        ];
        let diags = check(&src, &specs, &kinds, true);
        let got: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "r.toml:6:1: route \"fifth\" refers to unknown kind \"asylum\" \
                 (gateway.toml declares: mla-request, extradition-request)",
                "r.toml:3:1: route \"third\" is unreachable: route \"first\" (line 1) \
                 already matches every sender, recipient and kind it matches",
                "r.toml:4:1: route \"fourth\" is unreachable: route \"second\" (line 2) \
                 already matches every sender, recipient and kind it matches",
                "r.toml:5:1: route \"fifth\" is unreachable: route \"second\" (line 2) \
                 already matches every sender, recipient and kind it matches",
            ]
        );
    }
}
