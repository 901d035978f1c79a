//! The query string of `/search` as the same [`SearchArgs`] `emla audit
//! search` parses, and links back into it.
//!
//! Parameter names are the CLI's flags without `--` (`since`, `until`,
//! `from`, `to`, `authority`, `country`, `signer`, `reason`, `verdict`,
//! `status`, `message-id`, `id`, `case`, `kind`, `limit`, `after`, `asc`), so an
//! error message naming `--since` names the form field too. Empty values
//! (what a form sends for an untouched field) mean "no filter";
//! `authority` and `country` may repeat or hold a comma-separated list.

use crate::audit::cli::{SearchArgs, VerdictArg, DEFAULT_LIMIT};

/// A decoded query string: its `(name, value)` pairs, in order.
pub type Pairs = [(String, String)];

/// Parameters that are not filters: the output format, and the login's.
const OTHER: [&str; 1] = ["format"];

/// The `(name, value)` pairs of a query string, decoded.
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `name`, if any and not empty.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.as_str())
}

/// The search the parameters describe; an unknown parameter or a bad
/// enumerated value is an error naming it. (Values are checked further by
/// [`SearchArgs::query`].)
pub fn search_args(pairs: &[(String, String)]) -> Result<SearchArgs, String> {
    let mut a = SearchArgs {
        limit: DEFAULT_LIMIT,
        ..SearchArgs::default()
    };
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() || OTHER.contains(&k.as_str()) {
            continue;
        }
        let one = Some(v.to_string());
        let list = || {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        match k.as_str() {
            "since" => a.since = one,
            "until" => a.until = one,
            "from" => a.from = one,
            "to" => a.to = one,
            "authority" => a.authority.extend(list()),
            "country" => a.country.extend(list()),
            "signer" => a.signer = one,
            "reason" => a.reason = one,
            "message-id" => a.message_id = one,
            "id" => a.id = one,
            "case" => a.case_ref = one,
            "kind" => a.kind = one,
            "after" => a.after = one,
            "asc" => a.asc = true,
            "verdict" => {
                a.verdict = Some(match v {
                    "accept" => VerdictArg::Accept,
                    "reject" => VerdictArg::Reject,
                    _ => return Err(format!("--verdict {v:?}: expected accept or reject")),
                })
            }
            "status" => a.status = one,
            "limit" => {
                a.limit = v
                    .parse()
                    .map_err(|_| format!("--limit {v:?}: expected a number"))?
            }
            other => return Err(format!("unknown search parameter {other:?}")),
        }
    }
    Ok(a)
}

/// `path?k=v&…` with the values form-encoded; empty values are left out.
pub fn link(path: &str, pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// The same parameters with `name` set to `value` (replacing every
/// previous value).
pub fn with(pairs: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != name).cloned().collect();
    out.push((name.to_string(), value.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_becomes_search_args() {
        let p = pairs(Some(
            "since=2026-01-01&from=alice%40a.example&to=&authority=aa-moj%2C+bb-moj\
             &authority=cc&verdict=accept&status=queued&message-id=%3Cx%40y%3E&case=MLA+1\
             &kind=mla-request&limit=20&after=1%3Aab&asc=on&format=json",
        ));
        let a = search_args(&p).unwrap();
        assert_eq!(a.since.as_deref(), Some("2026-01-01"));
        assert_eq!(a.from.as_deref(), Some("alice@a.example"));
        assert_eq!(a.to, None);
        assert_eq!(a.authority, ["aa-moj", "bb-moj", "cc"]);
        assert_eq!(a.verdict, Some(VerdictArg::Accept));
        assert_eq!(a.status.as_deref(), Some("queued"));
        assert_eq!(a.message_id.as_deref(), Some("<x@y>"));
        assert_eq!(a.case_ref.as_deref(), Some("MLA 1"));
        assert_eq!(a.kind.as_deref(), Some("mla-request"));
        assert_eq!(a.limit, 20);
        assert_eq!(a.after.as_deref(), Some("1:ab"));
        assert!(a.asc);
        // The older name of a state still finds it.
        assert_eq!(
            a.query(None).unwrap().status,
            Some(crate::store::DeliveryState::Accepted)
        );
        assert_eq!(search_args(&[]).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = search_args(&pairs(Some("verdict=maybe"))).unwrap_err();
        assert!(e.contains("--verdict \"maybe\""), "{e}");
        let e = search_args(&pairs(Some("limit=ten"))).unwrap_err();
        assert!(e.contains("--limit"), "{e}");
        let e = search_args(&pairs(Some("sender=x"))).unwrap_err();
        assert!(e.contains("unknown search parameter \"sender\""), "{e}");
        let a = search_args(&pairs(Some("status=sent"))).unwrap();
        let e = a.query(None).unwrap_err().to_string();
        assert!(
            e.contains("--status \"sent\": expected one of accepted"),
            "{e}"
        );
    }

    #[test]
    fn links_encode() {
        let p = pairs(Some("from=a%40b&to="));
        let l = link("/search", &with(&p, "after", "5:x&y"));
        assert_eq!(l, "/search?from=a%40b&after=5%3Ax%26y");
        assert_eq!(link("/search", &[]), "/search");
    }
}
