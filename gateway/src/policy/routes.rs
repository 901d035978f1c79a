//! `routes.toml`: the `[[route]]` rules, in order.

use std::collections::HashMap;
use std::ops::Range;

use super::authority::is_id;
use super::files::{is_dns_name, one_of, At, Source, TableReader};
use super::{Diagnostic, Lane, Matcher, Route, RouteAction};

/// The file name inside the policy directory.
pub(super) const FILE: &str = "routes.toml";

const ROUTE_KEYS: &[&str] = &["name", "from", "to", "kind", "action", "reason", "lane"];

/// One `[[route]]` as read, with positions for cross-file checks.
pub(super) struct RouteSpec {
    /// The `[[route]]` header.
    pub header: Range<usize>,
    /// `name`, when present.
    pub name: Option<At<String>>,
    /// The sender matchers, when all were valid.
    pub from: Option<Vec<At<Matcher>>>,
    /// The recipient matchers, when all were valid.
    pub to: Option<Vec<At<Matcher>>>,
    /// The request kinds (`kind`), when valid; empty: every kind.
    pub kinds: Option<Vec<At<String>>>,
    /// The route, when the rule had no problem.
    pub built: Option<Route>,
}

/// Reads the routes of `src`; every problem goes to `diags`.
pub(super) fn parse(src: &Source, diags: &mut Vec<Diagnostic>) -> Vec<RouteSpec> {
    let doc = match src.parse() {
        Ok(doc) => doc,
        Err(d) => {
            diags.push(d);
            return Vec::new();
        }
    };
    let top = TableReader::new(src, doc.get_ref(), 0..0, "", &["route"], diags);
    let mut specs = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (table, header) in top.tables("route", diags).unwrap_or_default() {
        let t = TableReader::new(src, table, header, "[[route]]", ROUTE_KEYS, diags);
        let spec = parse_route(&t, diags);
        if let Some((name, span)) = &spec.name {
            match names.get(name) {
                Some(&first) => diags.push(src.diag(
                    span,
                    format!("duplicate route name {name:?} (first defined on line {first})"),
                )),
                None => {
                    names.insert(name.clone(), src.position(span.start).0);
                }
            }
        }
        specs.push(spec);
    }
    specs
}

/// Reads one `[[route]]`.
fn parse_route(t: &TableReader<'_, '_>, diags: &mut Vec<Diagnostic>) -> RouteSpec {
    let src = t.src();
    let before = diags.len();
    let name = t.required_string("name", diags).filter(|(n, span)| {
        let ok = !n.trim().is_empty();
        if !ok {
            diags.push(src.diag(span, "route name must not be empty"));
        }
        ok
    });
    let matchers = |key: &str, diags: &mut Vec<Diagnostic>| {
        let list = t.required_list(key, diags)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (text, span) in list {
            match parse_matcher(&text) {
                Ok(m) => out.push((m, span)),
                Err(why) => {
                    diags.push(src.diag(&span, why));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    };
    let from = matchers("from", diags);
    let to = matchers("to", diags);
    let kinds = match t.string_list("kind", diags) {
        None if t.get("kind").is_some() => None,
        None => Some(Vec::new()),
        Some(list) if list.is_empty() => {
            let span = t.span_of("kind").unwrap_or_else(|| t.header());
            diags.push(src.diag(
                &span,
                "kind must not be empty (leave it out to match every kind)",
            ));
            None
        }
        Some(list) => Some(list),
    };
    let action = t.required_string("action", diags).and_then(|v| {
        one_of(
            src,
            "action",
            &v,
            &[
                ("relay", RouteAction::Relay),
                ("reject", RouteAction::Reject),
            ],
            diags,
        )
    });
    let reason = t.string("reason", diags);
    if action == Some(RouteAction::Reject)
        && reason.as_ref().is_none_or(|(r, _)| r.trim().is_empty())
    {
        let span = reason
            .as_ref()
            .map_or_else(|| t.header(), |(_, s)| s.clone());
        diags.push(src.diag(
            &span,
            "a route with action = \"reject\" requires a non-empty reason",
        ));
    }
    let lane = match t.string("lane", diags) {
        None => Some(None),
        Some(v) => one_of(
            src,
            "lane",
            &v,
            &[("normal", Lane::Normal), ("urgent", Lane::Urgent)],
            diags,
        )
        .map(Some),
    };
    let built = match (&name, &from, &to, &kinds, action, lane) {
        (Some(name), Some(from), Some(to), Some(kinds), Some(action), Some(lane))
            if diags.len() == before =>
        {
            Some(Route {
                name: name.0.clone(),
                from: from.iter().map(|(m, _)| m.clone()).collect(),
                to: to.iter().map(|(m, _)| m.clone()).collect(),
                action,
                reason: reason.map(|(r, _)| r).unwrap_or_default(),
                kinds: kinds.iter().map(|(k, _)| k.clone()).collect(),
                lane,
            })
        }
        _ => None,
    };
    RouteSpec {
        header: t.header(),
        name,
        from,
        to,
        kinds,
        built,
    }
}

/// Parses one matcher: `*`, `authority:ID`, `country:CC`, `domain:NAME` or
/// an address glob containing `@`.
pub(super) fn parse_matcher(text: &str) -> Result<Matcher, String> {
    if text == "*" {
        return Ok(Matcher::Any);
    }
    if let Some(id) = text.strip_prefix("authority:") {
        return if is_id(id) {
            Ok(Matcher::Authority(id.to_owned()))
        } else {
            Err(format!(
                "invalid matcher {text:?}: authority id {id:?} must use lower-case letters, digits and '-'"
            ))
        };
    }
    if let Some(cc) = text.strip_prefix("country:") {
        return if cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(Matcher::Country(cc.to_ascii_uppercase()))
        } else {
            Err(format!(
                "invalid matcher {text:?}: country {cc:?} must be two letters (ISO 3166-1 alpha-2)"
            ))
        };
    }
    if let Some(domain) = text.strip_prefix("domain:") {
        let lower = domain.to_ascii_lowercase();
        return if is_dns_name(&lower) {
            Ok(Matcher::Domain(lower))
        } else {
            Err(format!(
                "invalid matcher {text:?}: {domain:?} is not a DNS name"
            ))
        };
    }
    if text.contains('@') && !text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Ok(Matcher::Pattern(text.to_ascii_lowercase()));
    }
    Err(format!(
        "invalid matcher {text:?}; expected \"*\", \"authority:ID\", \"country:CC\", \
         \"domain:NAME\" or an address pattern containing '@'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse() {
        for (text, want) in [
            ("*", Matcher::Any),
            ("authority:aa-moj", Matcher::Authority("aa-moj".into())),
            ("country:bb", Matcher::Country("BB".into())),
            (
                "domain:Justice.AA.example",
                Matcher::Domain("justice.aa.example".into()),
            ),
            ("Minister@*", Matcher::Pattern("minister@*".into())),
        ] {
            assert_eq!(parse_matcher(text), Ok(want), "{text}");
        }
        assert!(parse_matcher("justice.aa.example").is_err());
        assert!(parse_matcher("country:BBB").is_err());
        assert!(parse_matcher("authority:").is_err());
        assert!(parse_matcher("domain:bad domain").is_err());
    }

    fn run(text: &str) -> (Vec<RouteSpec>, Vec<String>) {
        let src = Source::new("p/routes.toml".into(), text.to_owned());
        let mut diags = Vec::new();
        let specs = parse(&src, &mut diags);
        (specs, diags.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn routes_parse_with_defaults() {
        let (specs, d) = run(concat!(
            "[[route]]\nname = \"a\"\nfrom = \"*\"\nto = [\"country:BB\", \"x@y\"]\naction = \"relay\"\n",
            "[[route]]\nname = \"b\"\nfrom = \"*\"\nto = \"*\"\naction = \"reject\"\nreason = \"no\"\nlane = \"urgent\"\n",
            "[[route]]\nname = \"c\"\nfrom = \"*\"\nto = \"*\"\nkind = [\"mla-request\", \"x\"]\naction = \"relay\"\n",
        ));
        assert!(d.is_empty(), "{d:?}");
        let a = specs[0].built.as_ref().unwrap();
        assert_eq!(a.lane, None);
        assert!(a.kinds.is_empty());
        assert_eq!(a.to.len(), 2);
        let b = specs[1].built.as_ref().unwrap();
        assert_eq!(b.action, RouteAction::Reject);
        assert_eq!(b.reason, "no");
        let c = specs[2].built.as_ref().unwrap();
        assert_eq!(c.kinds, ["mla-request", "x"]);
        assert_eq!(b.lane, Some(Lane::Urgent));
    }

    #[test]
    fn route_problems() {
        let (_, d) = run(concat!(
            "[[route]]\nname = \"a\"\nfrom = \"*\"\nto = \"bb\"\naction = \"relay\"\n",
            "[[route]]\nname = \"a\"\nfrom = \"*\"\nto = \"*\"\naction = \"reject\"\n",
            "[[route]]\nname = \"c\"\nfrom = \"*\"\nto = \"*\"\naction = \"drop\"\nlane = \"slow\"\n",
        ));
        assert_eq!(
            d,
            vec![
                "p/routes.toml:4:6: invalid matcher \"bb\"; expected \"*\", \"authority:ID\", \
                 \"country:CC\", \"domain:NAME\" or an address pattern containing '@'",
                "p/routes.toml:6:1: a route with action = \"reject\" requires a non-empty reason",
                "p/routes.toml:7:8: duplicate route name \"a\" (first defined on line 2)",
                "p/routes.toml:15:10: invalid action \"drop\"; expected one of: \"relay\", \"reject\"",
                "p/routes.toml:16:8: invalid lane \"slow\"; expected one of: \"normal\", \"urgent\"",
            ]
        );
    }
}
