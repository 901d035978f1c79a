//! `authorities/*.toml`: one authority per file, with its domains, its PKI
//! and its next hop.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::files::{
    file_diag, io_reason, is_dns_name, one_of, read_source, At, FileSet, Source, TableReader,
};
use super::pki::{self, Ctx, Role};
use super::{Authority, Diagnostic, NextHop, OcspMode, ReceiptKind, ReceiptKinds, TlsMode};
use crate::clock::EvalTime;

/// The directory inside the policy directory.
pub(super) const DIR: &str = "authorities";

const KEYS: &[&str] = &[
    "id",
    "country",
    "name",
    "domains",
    "trust_anchors",
    "intermediates",
    "crls",
    "crl_urls",
    "fetch_crls",
    "ocsp",
    "allowed_clients",
    "receipts",
    "rejection_notices_per_hour",
    "duty",
    "encrypt",
    "encryption_certificates",
    "encryption_cipher",
    "next_hop",
];

/// Default of `rejection_notices_per_hour`.
pub const REJECTION_NOTICES_PER_HOUR: u32 = 20;
/// Largest `rejection_notices_per_hour` (one a minute is 60; this is far
/// beyond what any authority should need).
const MAX_REJECTION_NOTICES_PER_HOUR: i64 = 10_000;
const NEXT_HOP_KEYS: &[&str] = &["url", "tls", "ca_file", "pin_sha256"];

/// One authority file as read: what cross-file checks need (with
/// positions), and the authority itself when the file had no problem.
pub(super) struct AuthoritySpec {
    /// The file.
    pub src: Source,
    /// `id`, when present and valid.
    pub id: Option<At<String>>,
    /// `country`, when present and valid.
    pub country: Option<At<String>>,
    /// The valid entries of `domains`, lower case.
    pub domains: Vec<At<String>>,
    /// `duty`, when present and a valid address.
    pub duty: Option<At<String>>,
    /// The authority, when its file had no problem.
    pub built: Option<Authority>,
}

/// Every authority file of the policy, in file-name order, and whether all
/// of them could be read and parsed (otherwise references to authority ids
/// and countries cannot be judged).
pub(super) fn load_all(
    dir: &Path,
    now: EvalTime,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> (Vec<AuthoritySpec>, bool) {
    let adir = dir.join(DIR);
    let listing = match fs::read_dir(&adir) {
        Ok(l) => l,
        Err(e) => {
            diags.push(file_diag(
                &adir,
                format!("cannot read the authorities directory: {}", io_reason(&e)),
            ));
            return (Vec::new(), false);
        }
    };
    let mut names: Vec<String> = listing
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    let mut complete = true;
    let mut specs = Vec::new();
    for name in names {
        let rel = format!("{DIR}/{name}");
        match read_source(dir, &rel, files) {
            Ok(Some(src)) => match parse(src, dir, now, files, diags, notes) {
                Some(spec) => {
                    // An invalid id or country would make routes naming it
                    // look wrong too: judge references only when all are known.
                    complete &= spec.id.is_some() && spec.country.is_some();
                    specs.push(spec);
                }
                None => complete = false,
            },
            Ok(None) => complete = false,
            Err(d) => {
                diags.push(d);
                complete = false;
            }
        }
    }
    (specs, complete)
}

/// Reads one authority file; `None` when it is not valid TOML.
fn parse(
    src: Source,
    dir: &Path,
    now: EvalTime,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> Option<AuthoritySpec> {
    let before = diags.len();
    let doc = match src.parse() {
        Ok(doc) => doc,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let top = TableReader::new(&src, doc.get_ref(), 0..0, "", KEYS, diags);

    let ident = Identity::read(&top, &src, diags);
    let ctx = Ctx {
        dir,
        src: &src,
        now,
    };
    let label = ident.id.as_ref().map_or("?", |(id, _)| id.as_str());
    let pki = Pki::read(&top, &ctx, label, files, diags, notes);
    let allowed_clients = read_clients(&top, diags);
    let receipts = read_receipts(&top, diags);
    let rejection_notices_per_hour = read_rejection_limit(&top, diags);
    let duty = top.string("duty", diags).filter(|(address, span)| {
        let ok = super::gateway::is_address(address);
        if !ok {
            diags.push(src.diag(
                span,
                format!("invalid duty address {address:?}: expected an address local@domain"),
            ));
        }
        ok
    });
    let encryption = super::encryption::read(&top, &ctx, files, diags, notes);
    let next_hop = top
        .require("next_hop", diags)
        .table("next_hop", "[next_hop]", NEXT_HOP_KEYS, diags)
        .and_then(|t| parse_next_hop(&t, &ctx, files, diags));

    let built = match (&ident.id, &ident.country, &ident.name, next_hop) {
        (Some(id), Some(country), Some(name), Some(next_hop)) if diags.len() == before => {
            let anchor_tas = pki.anchors.iter().filter_map(pki::trust_anchor).collect();
            Some(Authority {
                id: id.0.clone(),
                country: country.0.clone(),
                name: name.0.clone(),
                domains: ident.domains.iter().map(|(d, _)| d.clone()).collect(),
                anchors: anchor_tas,
                anchor_certs: pki.anchors.iter().map(|a| a.der.clone()).collect(),
                intermediates: pki.intermediates.iter().map(|a| a.der.clone()).collect(),
                crls: pki.crls,
                crl_urls: pki.crl_urls,
                fetch_cdp: pki.fetch_cdp,
                ocsp: pki.ocsp,
                allowed_clients,
                next_hop,
                receipts,
                rejection_notices_per_hour,
                duty: duty.as_ref().map(|(d, _)| d.clone()),
                encryption,
            })
        }
        _ => None,
    };
    Some(AuthoritySpec {
        id: ident.id,
        country: ident.country,
        domains: ident.domains,
        duty,
        built,
        src,
    })
}

/// An authority's identity fields, each when present and valid.
struct Identity {
    id: Option<At<String>>,
    country: Option<At<String>>,
    name: Option<At<String>>,
    /// The valid entries of `domains`, lower case.
    domains: Vec<At<String>>,
}

impl Identity {
    /// `id`, `country`, `name` and `domains`.
    fn read(top: &TableReader<'_, '_>, src: &Source, diags: &mut Vec<Diagnostic>) -> Identity {
        let id = required_id(top, "authority", diags);
        let country = top.required_string("country", diags).filter(|(cc, span)| {
            let ok = cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase());
            if !ok {
                diags.push(src.diag(
                    span,
                    format!(
                        "invalid country {cc:?}: expected two upper-case letters (ISO 3166-1 alpha-2)"
                    ),
                ));
            }
            ok
        });
        let name = top.required_string("name", diags).filter(|(n, span)| {
            let ok = !n.trim().is_empty();
            if !ok {
                diags.push(src.diag(span, "name must not be empty"));
            }
            ok
        });
        let mut domains: Vec<At<String>> = Vec::new();
        for (d, span) in top.required_list("domains", diags).unwrap_or_default() {
            let lower = d.to_ascii_lowercase();
            if !is_dns_name(&lower) {
                diags.push(src.diag(&span, format!("invalid domain {d:?}: not a DNS name")));
            } else if domains.iter().any(|(seen, _)| *seen == lower) {
                diags.push(src.diag(&span, format!("domain {d:?} is listed twice")));
            } else {
                domains.push((lower, span));
            }
        }
        Identity {
            id,
            country,
            name,
            domains,
        }
    }
}

/// An authority's PKI: its certificates, CRLs and revocation sources.
struct Pki {
    anchors: Vec<pki::CaCert>,
    intermediates: Vec<pki::CaCert>,
    crls: Vec<std::sync::Arc<super::Crl>>,
    crl_urls: Vec<String>,
    fetch_cdp: bool,
    ocsp: OcspMode,
}

impl Pki {
    /// `trust_anchors`, `intermediates` and `crls` (checked against those
    /// CAs; `label` names the authority in diagnostics), then the
    /// revocation sources.
    fn read(
        top: &TableReader<'_, '_>,
        ctx: &Ctx<'_>,
        label: &str,
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
        notes: &mut Vec<Diagnostic>,
    ) -> Pki {
        let anchor_paths = top
            .required_list("trust_anchors", diags)
            .unwrap_or_default();
        let (anchors, anchors_ok) = ctx.load_cas(
            "trust_anchors",
            Role::Anchor,
            &anchor_paths,
            files,
            diags,
            notes,
        );
        let inter_paths = top.string_list("intermediates", diags).unwrap_or_default();
        let (intermediates, inter_ok) = ctx.load_cas(
            "intermediates",
            Role::Intermediate,
            &inter_paths,
            files,
            diags,
            notes,
        );
        let crl_paths = top.string_list("crls", diags).unwrap_or_default();
        let cas: Vec<&pki::CaCert> = anchors.iter().chain(&intermediates).collect();
        let crls = ctx.load_crls(
            &crl_paths,
            &cas,
            anchors_ok && inter_ok,
            label,
            files,
            diags,
            notes,
        );
        let (crl_urls, fetch_cdp, ocsp) = revocation_sources(top, ctx.src, diags);
        Pki {
            anchors,
            intermediates,
            crls,
            crl_urls,
            fetch_cdp,
            ocsp,
        }
    }
}

/// `crl_urls`, `fetch_crls` (whether to fetch from CRL distribution
/// points) and `ocsp`.
fn revocation_sources(
    top: &TableReader<'_, '_>,
    src: &Source,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<String>, bool, OcspMode) {
    let mut crl_urls = Vec::new();
    for (url, span) in top.string_list("crl_urls", diags).unwrap_or_default() {
        match check_fetch_url(&url) {
            Ok(()) if crl_urls.contains(&url) => {
                diags.push(src.diag(&span, format!("CRL URL {url:?} is listed twice")))
            }
            Ok(()) => crl_urls.push(url),
            Err(why) => diags.push(src.diag(&span, format!("invalid CRL URL {url:?}: {why}"))),
        }
    }
    let fetch_cdp = top
        .choice("fetch_crls", &[("off", false), ("cdp", true)], diags)
        .unwrap_or(false);
    let ocsp_modes = [
        ("off", OcspMode::Off),
        ("fallback", OcspMode::Fallback),
        ("prefer", OcspMode::Prefer),
    ];
    let ocsp = top.choice("ocsp", &ocsp_modes, diags).unwrap_or_default();
    (crl_urls, fetch_cdp, ocsp)
}

/// `allowed_clients`: the valid entries.
fn read_clients(top: &TableReader<'_, '_>, diags: &mut Vec<Diagnostic>) -> Vec<ipnet::IpNet> {
    let src = top.src();
    let mut allowed_clients = Vec::new();
    for (net, span) in top
        .string_list("allowed_clients", diags)
        .unwrap_or_default()
    {
        match parse_client_net(&net) {
            Ok(n) => allowed_clients.push(n),
            Err(e) => diags.push(src.diag(&span, e)),
        }
    }
    allowed_clients
}

/// `receipts`: the receipt kinds sent (all when the key is absent).
fn read_receipts(top: &TableReader<'_, '_>, diags: &mut Vec<Diagnostic>) -> ReceiptKinds {
    let src = top.src();
    match top.string_list("receipts", diags) {
        None => ReceiptKinds::ALL,
        Some(list) => {
            let mut kinds = ReceiptKinds::NONE;
            for (name, span) in &list {
                match ReceiptKind::ALL.iter().find(|k| k.name() == name) {
                    Some(&k) => kinds = kinds.with(k),
                    None => diags.push(src.diag(
                        span,
                        format!(
                            "unknown receipt kind {name:?}; expected any of: \
                             \"acceptance\", \"delivery\", \"failure\", \"delay\", \"rejection\""
                        ),
                    )),
                }
            }
            kinds
        }
    }
}

/// `rejection_notices_per_hour`: at most this many rejection notices per
/// hour to the authority's senders (default
/// [`REJECTION_NOTICES_PER_HOUR`]).
fn read_rejection_limit(top: &TableReader<'_, '_>, diags: &mut Vec<Diagnostic>) -> u32 {
    let src = top.src();
    let Some((n, span)) = top.integer("rejection_notices_per_hour", diags) else {
        return REJECTION_NOTICES_PER_HOUR;
    };
    match u32::try_from(n) {
        Ok(v) if (1..=MAX_REJECTION_NOTICES_PER_HOUR).contains(&n) => v,
        _ => {
            diags.push(src.diag(
                &span,
                format!(
                    "rejection_notices_per_hour must be from 1 to \
                     {MAX_REJECTION_NOTICES_PER_HOUR}, found {n} (to send none, leave \
                     \"rejection\" out of receipts)"
                ),
            ));
            REJECTION_NOTICES_PER_HOUR
        }
    }
}

/// An `allowed_clients` entry: an address or a CIDR network.
fn parse_client_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    let net: ipnet::IpNet = s.parse().map_err(|_| {
        format!("invalid client network {s:?}: expected an IP address or CIDR such as 192.0.2.0/24")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "client network {s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Checks a URL revocation data is downloaded from: http or https, with
/// a host.
pub(super) fn check_fetch_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected http://host/path or https://host/path".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("the scheme must be http or https, not {scheme:?}"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || url.chars().any(char::is_whitespace) {
        return Err("expected a host and no user name or spaces".to_owned());
    }
    Ok(())
}

/// The required `id` of a `what` (authority, kind), reported when it is not
/// an [`is_id`].
pub(super) fn required_id(
    t: &TableReader<'_, '_>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<At<String>> {
    t.required_string("id", diags).filter(|(id, span)| {
        let ok = is_id(id);
        if !ok {
            diags.push(t.src().diag(
                span,
                format!("invalid {what} id {id:?}: use lower-case letters, digits and '-'"),
            ));
        }
        ok
    })
}

/// Whether `s` is a valid authority id: `[a-z0-9-]+`.
pub(super) fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads `[next_hop]`.
fn parse_next_hop(
    t: &TableReader<'_, '_>,
    ctx: &Ctx<'_>,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
) -> Option<NextHop> {
    let src = t.src();
    let before = diags.len();
    let url = t.required_string("url", diags);
    let target = url.as_ref().and_then(|(url, span)| match parse_url(url) {
        Ok(hp) => Some(hp),
        Err(why) => {
            diags.push(src.diag(span, format!("invalid url {url:?}: {why}")));
            None
        }
    });
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Required,
        Opportunistic,
        Pinned,
    }
    let tls_value = t.string("tls", diags);
    let mode = match &tls_value {
        None => Some(Mode::Required),
        Some(v) => one_of(
            src,
            "tls",
            v,
            &[
                ("required", Mode::Required),
                ("opportunistic", Mode::Opportunistic),
                ("pinned", Mode::Pinned),
            ],
            diags,
        ),
    };
    let ca_file = t.string("ca_file", diags);
    let pin = t.string("pin_sha256", diags);
    let tls = match mode? {
        Mode::Required => {
            reject_key(t, "pin_sha256", pin.as_ref(), diags);
            let ca = match &ca_file {
                Some(written) => Some(ctx.load_tls_cas(written, files, diags)?),
                None => None,
            };
            TlsMode::Required { ca_file: ca }
        }
        Mode::Opportunistic => {
            reject_key(t, "pin_sha256", pin.as_ref(), diags);
            if let Some((_, span)) = &ca_file {
                diags.push(src.diag(span, "ca_file is only allowed with tls = \"required\""));
            }
            TlsMode::Opportunistic
        }
        Mode::Pinned => {
            if let Some((_, span)) = &ca_file {
                diags.push(src.diag(span, "ca_file is only allowed with tls = \"required\""));
            }
            match &pin {
                None => {
                    let span = tls_value.map_or_else(|| t.header(), |(_, s)| s);
                    diags.push(src.diag(&span, "tls = \"pinned\" requires pin_sha256"));
                    return None;
                }
                Some((hexpin, span)) => {
                    let mut sha256 = [0u8; 32];
                    if hex::decode_to_slice(hexpin, &mut sha256).is_err() {
                        diags.push(src.diag(
                            span,
                            format!(
                                "invalid pin_sha256 {hexpin:?}: expected 64 hexadecimal digits"
                            ),
                        ));
                        return None;
                    }
                    TlsMode::Pinned { sha256 }
                }
            }
        }
    };
    let (host, port) = target?;
    (diags.len() == before).then_some(NextHop { host, port, tls })
}

/// Reports `key` as only allowed with `tls = "pinned"`.
fn reject_key(
    t: &TableReader<'_, '_>,
    key: &str,
    value: Option<&At<String>>,
    diags: &mut Vec<Diagnostic>,
) {
    if let Some((_, span)) = value {
        diags.push(
            t.src()
                .diag(span, format!("{key} is only allowed with tls = \"pinned\"")),
        );
    }
}

/// Parses `smtp://host[:port]` (port 25 by default); the host is a DNS name
/// or an IP literal (IPv6 in brackets).
pub(super) fn parse_url(url: &str) -> Result<(String, u16), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected smtp://host[:port]".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("smtp") {
        return Err(format!("the scheme must be smtp, not {scheme:?}"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("expected smtp://host[:port] with no user, path or query".to_owned());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("unterminated IPv6 literal".to_owned());
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {addr:?}"));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err("expected smtp://host[:port]".to_owned()),
            },
        };
        (addr.to_owned(), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err("missing host".to_owned());
        }
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(&host) {
            return Err(format!("invalid host {host:?}"));
        }
        (host, port)
    };
    let port = match port {
        None => 25,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("invalid port {p:?}")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("smtp://mx.justice.aa.example"),
            Ok(("mx.justice.aa.example".to_owned(), 25))
        );
        assert_eq!(
            parse_url("smtp://MX.example:2525/"),
            Ok(("mx.example".to_owned(), 2525))
        );
        assert_eq!(parse_url("smtp://[::1]:26"), Ok(("::1".to_owned(), 26)));
        assert_eq!(
            parse_url("smtp://192.0.2.1"),
            Ok(("192.0.2.1".to_owned(), 25))
        );
        assert!(parse_url("http://mx.example").is_err());
        assert!(parse_url("smtp://mx.example:0").is_err());
        assert!(parse_url("smtp://mx.example:99999").is_err());
        assert!(parse_url("smtp://").is_err());
        assert!(parse_url("smtp://u@mx.example").is_err());
        assert!(parse_url("mx.example").is_err());
    }

    #[test]
    fn client_networks() {
        assert_eq!(
            parse_client_net("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_client_net("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        let e = parse_client_net("192.0.2.7/24").unwrap_err();
        assert!(e.contains("did you mean 192.0.2.0/24"), "{e}");
        assert!(parse_client_net("mx.example").is_err());
    }

    #[test]
    fn ids() {
        assert!(is_id("aa-moj"));
        assert!(!is_id("AA-moj"));
        assert!(!is_id(""));
        assert!(!is_id("aa_moj"));
    }
}
