//! `gateway.toml`: the `[gateway]` settings and the `[limits]`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::files::{io_reason, is_dns_name, At, FileSet, Source, TableReader};
use super::kind::{self, KindSettings};
use super::{
    CrlPolicy, Diagnostic, DigestAlg, GatewaySettings, Limits, Named, RelaySettings, Replay,
};
use crate::clock::EvalTime;
use crate::smime::decrypt::DecryptionKey;
use crate::smime::sign::{PemFile, SigningIdentity};

/// The file name inside the policy directory.
pub(super) const FILE: &str = "gateway.toml";

const GATEWAY_KEYS: &[&str] = &["hostname", "postmaster", "signing_cert", "signing_key"];

const LIMIT_KEYS: &[&str] = &[
    "max_message_size",
    "max_recipients",
    "max_header_size",
    "max_mime_depth",
    "signing_time_skew_secs",
    "min_rsa_bits",
    "digests",
    "crl",
    "require_email_eku",
    "replay",
    "replay_window_days",
    "allow_unsigned_text",
];

const RELAY_KEYS: &[&str] = &[
    "queue_lifetime_secs",
    "urgent_queue_lifetime_secs",
    "delay_warning_secs",
    "urgent_delay_warning_secs",
    "retry_initial_secs",
    "retry_max_secs",
    "max_connections_per_destination",
    "connect_timeout_secs",
    "urgent_alert_secs",
    "duty_alerts_per_hour",
];

/// Largest `duty_alerts_per_hour`.
const MAX_DUTY_ALERTS_PER_HOUR: u64 = 10_000;

/// Reads `gateway.toml` from `src` (already read from disk; files it
/// names are relative to `dir` and recorded in `files`); every problem
/// goes to `diags`, and defaults stand in for whatever is absent or wrong.
pub(super) fn parse(
    src: &Source,
    dir: &Path,
    now: EvalTime,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
) -> (GatewaySettings, Limits, RelaySettings, KindSettings) {
    let mut gateway = GatewaySettings::default();
    let mut limits = Limits::default();
    let mut relay = RelaySettings::default();
    let doc = match src.parse() {
        Ok(doc) => doc,
        Err(d) => {
            diags.push(d);
            return (gateway, limits, relay, KindSettings::default());
        }
    };
    let top = TableReader::new(
        src,
        doc.get_ref(),
        0..0,
        "",
        &["gateway", "limits", "relay", "kinds", "kind", "decryption"],
        diags,
    );
    if let Some(t) = top.table("gateway", "[gateway]", GATEWAY_KEYS, diags) {
        if let Some((name, span)) = t.string("hostname", diags) {
            if is_dns_name(&name.to_ascii_lowercase()) {
                gateway.hostname = name;
            } else {
                diags.push(src.diag(&span, format!("invalid hostname {name:?}")));
            }
        }
        gateway.postmaster = format!("postmaster@{}", gateway.hostname);
        let postmaster = t.string("postmaster", diags);
        if let Some((address, span)) = &postmaster {
            if is_address(address) {
                gateway.postmaster = address.clone();
            } else {
                diags.push(src.diag(
                    span,
                    format!("invalid postmaster {address:?}: expected an address local@domain"),
                ));
            }
        }
        let cert = t.string("signing_cert", diags);
        let key = t.string("signing_key", diags);
        match (&cert, &key) {
            (Some(cert), Some(key)) => {
                if let Some(id) = load_signing(src, dir, cert, key, files, diags) {
                    if !id.has_mail_address(&gateway.postmaster) {
                        let span = postmaster.as_ref().map_or(&cert.1, |(_, s)| s);
                        diags.push(src.diag(
                            span,
                            format!(
                                "the signing certificate does not name the postmaster address \
                                 {:?} (its address: {}): receipts from it would fail the \
                                 recipients' sender checks",
                                gateway.postmaster,
                                id.mail_address().unwrap_or_else(|| "none".into())
                            ),
                        ));
                    }
                    let (not_before, not_after) = id.validity();
                    let when = |secs| EvalTime::from_unix(secs).to_rfc3339();
                    if now.unix() > not_after {
                        diags.push(src.diag(
                            &cert.1,
                            format!("the signing certificate expired at {}", when(not_after)),
                        ));
                    } else if now.unix() < not_before {
                        diags.push(src.diag(
                            &cert.1,
                            format!(
                                "the signing certificate is not valid before {}",
                                when(not_before)
                            ),
                        ));
                    }
                    gateway.signing = Some(Arc::new(id));
                }
            }
            (Some((_, span)), None) => {
                diags.push(src.diag(span, "signing_cert requires signing_key"))
            }
            (None, Some((_, span))) => {
                diags.push(src.diag(span, "signing_key requires signing_cert"))
            }
            (None, None) => {}
        }
    } else {
        gateway.postmaster = format!("postmaster@{}", gateway.hostname);
    }
    if let Some(t) = top.table("limits", "[limits]", LIMIT_KEYS, diags) {
        parse_limits(&t, &mut limits, diags);
    }
    if let Some(t) = top.table("relay", "[relay]", RELAY_KEYS, diags) {
        parse_relay(&t, &mut relay, diags);
    }
    gateway.decryption = parse_decryption(&top, dir, limits.min_rsa_bits, files, diags);
    let settings = top.table("kinds", "[kinds]", kind::SETTINGS_KEYS, diags);
    let kinds = kind::parse(&top, settings, diags);
    (gateway, limits, relay, kinds)
}

/// The integer `key` of `t` when it is at least 1 (else a diagnostic).
fn positive(t: &TableReader<'_, '_>, key: &str, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let (n, span) = t.integer(key, diags)?;
    if n < 1 {
        diags.push(
            t.src()
                .diag(&span, format!("{key} must be at least 1, found {n}")),
        );
        return None;
    }
    u64::try_from(n).ok()
}

/// Fills `relay` from the `[relay]` table.
fn parse_relay(t: &TableReader<'_, '_>, relay: &mut RelaySettings, diags: &mut Vec<Diagnostic>) {
    let src = t.src();
    let positive = |key: &str, diags: &mut Vec<Diagnostic>| positive(t, key, diags);
    let durations: [(&str, &mut Duration); 6] = [
        ("queue_lifetime_secs", &mut relay.queue_lifetime),
        (
            "urgent_queue_lifetime_secs",
            &mut relay.urgent_queue_lifetime,
        ),
        ("delay_warning_secs", &mut relay.delay_warning),
        ("urgent_delay_warning_secs", &mut relay.urgent_delay_warning),
        ("retry_initial_secs", &mut relay.retry_initial),
        ("retry_max_secs", &mut relay.retry_max),
    ];
    for (key, field) in durations {
        if let Some(n) = positive(key, diags) {
            *field = Duration::from_secs(n);
        }
    }
    if let Some(n) = positive("max_connections_per_destination", diags) {
        relay.max_connections_per_destination = n as usize;
    }
    if let Some(n) = positive("connect_timeout_secs", diags) {
        relay.connect_timeout = Duration::from_secs(n);
    }
    parse_duty(t, relay, diags);
    let header = t.header();
    if relay.urgent_queue_lifetime > relay.queue_lifetime {
        let span = t
            .span_of("urgent_queue_lifetime_secs")
            .unwrap_or(header.clone());
        diags.push(src.diag(
            &span,
            "urgent_queue_lifetime_secs must not exceed queue_lifetime_secs",
        ));
    }
    if relay.retry_initial > relay.retry_max {
        let span = t.span_of("retry_initial_secs").unwrap_or(header);
        diags.push(src.diag(&span, "retry_initial_secs must not exceed retry_max_secs"));
    }
}

/// `urgent_alert_secs` (at most the urgent queue lifetime, to which the
/// default shrinks) and `duty_alerts_per_hour`.
fn parse_duty(t: &TableReader<'_, '_>, relay: &mut RelaySettings, diags: &mut Vec<Diagnostic>) {
    let src = t.src();
    relay.urgent_alert = relay.urgent_alert.min(relay.urgent_queue_lifetime);
    if let Some(n) = positive(t, "urgent_alert_secs", diags) {
        relay.urgent_alert = Duration::from_secs(n);
        if relay.urgent_alert > relay.urgent_queue_lifetime {
            let span = t.span_of("urgent_alert_secs").unwrap_or_else(|| t.header());
            diags.push(src.diag(
                &span,
                "urgent_alert_secs must not exceed urgent_queue_lifetime_secs",
            ));
        }
    }
    if let Some(n) = positive(t, "duty_alerts_per_hour", diags) {
        match u32::try_from(n) {
            Ok(v) if n <= MAX_DUTY_ALERTS_PER_HOUR => relay.duty_alerts_per_hour = v,
            _ => {
                let span = t
                    .span_of("duty_alerts_per_hour")
                    .unwrap_or_else(|| t.header());
                diags.push(src.diag(
                    &span,
                    format!(
                        "duty_alerts_per_hour must be from 1 to {MAX_DUTY_ALERTS_PER_HOUR}, found {n}"
                    ),
                ));
            }
        }
    }
}

/// Whether `s` is a plain address `local@domain` (no display name, no
/// white space or controls, a DNS domain).
pub(super) fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"@".contains(&b))
        && is_dns_name(&domain.to_ascii_lowercase())
}

/// Loads `signing_cert` and `signing_key` (paths relative to `dir`),
/// recording the certificate for the policy version (the key is not
/// hashed: it must match the certificate, so the certificate pins it).
fn load_signing(
    src: &Source,
    dir: &Path,
    (cert, cert_span): &At<String>,
    (key, key_span): &At<String>,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
) -> Option<SigningIdentity> {
    let cert_bytes = match std::fs::read(dir.join(cert)) {
        Ok(b) => Some(b),
        Err(e) => {
            let why = io_reason(&e);
            diags.push(src.diag(
                cert_span,
                format!("cannot read signing_cert {cert:?}: {why}"),
            ));
            None
        }
    };
    let key_path = dir.join(key);
    let key_bytes = match std::fs::read(&key_path) {
        Ok(b) => Some(b),
        Err(e) => {
            let why = io_reason(&e);
            diags.push(src.diag(key_span, format!("cannot read signing_key {key:?}: {why}")));
            None
        }
    };
    let (cert_bytes, key_bytes) = (cert_bytes?, key_bytes?);
    files.add(cert.clone(), &cert_bytes);
    warn_if_readable_by_others(&key_path, "signing key");
    match SigningIdentity::from_pem(&cert_bytes, &key_bytes, &format!("signing_cert {cert:?}")) {
        Ok(id) => Some(id),
        Err((PemFile::Cert, e)) => {
            diags.push(src.diag(cert_span, format!("signing_cert {cert:?}: {e}")));
            None
        }
        Err((PemFile::Key, e)) => {
            diags.push(src.diag(key_span, format!("signing_key {key:?}: {e}")));
            None
        }
    }
}

const DECRYPTION_KEYS: &[&str] = &["certificate", "key"];

/// The `[[decryption]]` certificates and keys (several for a rollover:
/// mail encrypted to any of them is opened). An expired certificate stays
/// usable: mail encrypted to it before it expired still decrypts.
fn parse_decryption(
    top: &TableReader<'_, '_>,
    dir: &Path,
    min_rsa_bits: usize,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Arc<DecryptionKey>> {
    let src = top.src();
    let mut out: Vec<Arc<DecryptionKey>> = Vec::new();
    for (table, header) in top.tables("decryption", diags).unwrap_or_default() {
        let t = TableReader::new(src, table, header, "[[decryption]]", DECRYPTION_KEYS, diags);
        let (Some((cert, cert_span)), Some((key, key_span))) = (
            t.required_string("certificate", diags),
            t.required_string("key", diags),
        ) else {
            continue;
        };
        let read = |name: &str, what: &str, span, diags: &mut Vec<Diagnostic>| {
            std::fs::read(dir.join(name))
                .map_err(|e| {
                    let why = io_reason(&e);
                    diags.push(src.diag(span, format!("cannot read {what} {name:?}: {why}")));
                })
                .ok()
        };
        let cert_bytes = read(&cert, "the decryption certificate", &cert_span, diags);
        let key_bytes = read(&key, "the decryption key", &key_span, diags);
        let (Some(cert_bytes), Some(key_bytes)) = (cert_bytes, key_bytes) else {
            continue;
        };
        files.add(cert.clone(), &cert_bytes);
        warn_if_readable_by_others(&dir.join(&key), "decryption key");
        match DecryptionKey::from_pem(&cert_bytes, &key_bytes, min_rsa_bits) {
            Ok(k) if out.iter().any(|o| o.id.sha256 == k.id.sha256) => diags.push(src.diag(
                &cert_span,
                format!("decryption certificate {cert:?} is listed twice"),
            )),
            Ok(k) => out.push(Arc::new(k)),
            Err((PemFile::Cert, e)) => {
                diags.push(src.diag(&cert_span, format!("decryption certificate {cert:?}: {e}")))
            }
            Err((PemFile::Key, e)) => {
                diags.push(src.diag(&key_span, format!("decryption key {key:?}: {e}")))
            }
        }
    }
    out
}

/// Logs a warning when the private key file is readable by other users
/// (a warning only: the file's protection is the administrator's call,
/// and a policy check by another user must still work).
fn warn_if_readable_by_others(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    "the {what} {} is readable by every user of this host; \
                     restrict it (chmod o-r)",
                    path.display()
                );
            }
        }
    }
}

/// The largest `max_message_size` a policy may set.
pub const MAX_MESSAGE_SIZE: u64 = 2 << 30;

/// Fills `limits` from the `[limits]` table.
fn parse_limits(t: &TableReader<'_, '_>, limits: &mut Limits, diags: &mut Vec<Diagnostic>) {
    let src = t.src();
    let positive = |key: &str, diags: &mut Vec<Diagnostic>| positive(t, key, diags);
    if let Some((n, span)) = t.integer("max_message_size", diags) {
        // Large messages are spooled and streamed (docs/large-messages.md);
        // 2 GiB is what e-CODEX/Domibus carries.
        match u64::try_from(n) {
            Ok(n) if (1..=MAX_MESSAGE_SIZE).contains(&n) => limits.max_message_size = n,
            _ => diags.push(src.diag(
                &span,
                format!("max_message_size must be from 1 to {MAX_MESSAGE_SIZE} (2 GiB), found {n}"),
            )),
        }
    }
    let counts: [(&str, &mut usize); 3] = [
        ("max_recipients", &mut limits.max_recipients),
        ("max_header_size", &mut limits.max_header_size),
        ("max_mime_depth", &mut limits.max_mime_depth),
    ];
    for (key, field) in counts {
        if let Some(n) = positive(key, diags) {
            *field = n as usize;
        }
    }
    if let Some((n, span)) = t.integer("signing_time_skew_secs", diags) {
        match u64::try_from(n) {
            Ok(secs) => limits.signing_time_skew = Duration::from_secs(secs),
            Err(_) => diags.push(src.diag(
                &span,
                format!("signing_time_skew_secs must not be negative, found {n}"),
            )),
        }
    }
    if let Some((n, span)) = t.integer("min_rsa_bits", diags) {
        if n < 2048 {
            diags.push(src.diag(
                &span,
                format!("min_rsa_bits = {n} is below the minimum of 2048"),
            ));
        } else {
            limits.min_rsa_bits = n as usize;
        }
    }
    if let Some(list) = t.string_list("digests", diags) {
        let mut digests = Vec::new();
        for (name, span) in &list {
            match name.to_ascii_lowercase().as_str() {
                "sha256" => digests.push(DigestAlg::Sha256),
                "sha384" => digests.push(DigestAlg::Sha384),
                "sha512" => digests.push(DigestAlg::Sha512),
                "md5" | "sha1" | "sha-1" => diags.push(src.diag(
                    span,
                    format!("digest {name:?} is refused: MD5 and SHA-1 are never accepted"),
                )),
                _ => diags.push(src.diag(
                    span,
                    format!("unknown digest {name:?}; expected one of: \"sha256\", \"sha384\", \"sha512\""),
                )),
            }
        }
        if list.is_empty() {
            let span = t.span_of("digests").unwrap_or_else(|| t.header());
            diags.push(src.diag(&span, "digests must not be empty"));
        } else if !digests.is_empty() {
            digests.dedup();
            limits.digests = digests;
        }
    }
    if let Some(p) = t.choice("crl", CrlPolicy::NAMES, diags) {
        limits.crl = p;
    }
    if let Some((strict, _)) = t.boolean("require_email_eku", diags) {
        limits.require_email_eku = strict;
    }
    if let Some(r) = t.choice("replay", Replay::NAMES, diags) {
        limits.replay = r;
    }
    if let Some(days) = positive("replay_window_days", diags) {
        limits.replay_window = Duration::from_secs(days * 86_400);
    }
    if let Some((allow, _)) = t.boolean("allow_unsigned_text", diags) {
        limits.allow_unsigned_text = allow;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (GatewaySettings, Limits, Vec<String>) {
        let (g, l, _, d) = run_all(text);
        (g, l, d)
    }

    fn run_all(text: &str) -> (GatewaySettings, Limits, RelaySettings, Vec<String>) {
        let src = Source::new("p/gateway.toml".into(), text.to_owned());
        let mut diags = Vec::new();
        let (g, l, r, _) = parse(
            &src,
            Path::new("p"),
            EvalTime::now(),
            &mut FileSet::default(),
            &mut diags,
        );
        (g, l, r, diags.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn relay_settings_are_read_and_checked() {
        let (_, _, r, d) = run_all(concat!(
            "[relay]
queue_lifetime_secs = 600
urgent_queue_lifetime_secs = 60
",
            "retry_initial_secs = 1
retry_max_secs = 8
max_connections_per_destination = 2
",
            "connect_timeout_secs = 5
",
        ));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r.queue_lifetime, Duration::from_secs(600));
        assert_eq!(r.urgent_queue_lifetime, Duration::from_secs(60));
        assert_eq!(r.retry_initial, Duration::from_secs(1));
        assert_eq!(r.retry_max, Duration::from_secs(8));
        assert_eq!(r.max_connections_per_destination, 2);
        assert_eq!(r.connect_timeout, Duration::from_secs(5));
        let (_, _, _, d) = run_all(
            "[relay]
queue_lifetime_secs = 60
urgent_queue_lifetime_secs = 600
retry_max_secs = 0
",
        );
        assert_eq!(
            d,
            vec![
                "p/gateway.toml:4:18: retry_max_secs must be at least 1, found 0",
                "p/gateway.toml:3:30: urgent_queue_lifetime_secs must not exceed queue_lifetime_secs",
            ]
        );
    }

    #[test]
    fn duty_alert_settings_stay_within_the_urgent_lifetime() {
        let (_, _, r, d) = run_all("[relay]\nurgent_queue_lifetime_secs = 60\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            r.urgent_alert,
            Duration::from_secs(60),
            "the default shrinks"
        );
        assert_eq!(r.duty_alerts_per_hour, 20);
        let (_, _, r, d) = run_all("[relay]\nurgent_alert_secs = 2\nduty_alerts_per_hour = 5\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            (r.urgent_alert, r.duty_alerts_per_hour),
            (Duration::from_secs(2), 5)
        );
        let (_, _, _, d) = run_all(
            "[relay]\nurgent_queue_lifetime_secs = 60\nurgent_alert_secs = 61\nduty_alerts_per_hour = 0\n",
        );
        assert_eq!(
            d,
            vec![
                "p/gateway.toml:3:21: urgent_alert_secs must not exceed urgent_queue_lifetime_secs",
                "p/gateway.toml:4:24: duty_alerts_per_hour must be at least 1, found 0",
            ]
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        let (g, l, d) = run("");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(g.hostname, "localhost");
        assert_eq!(l.max_message_size, 26_214_400);
        assert_eq!(l.max_recipients, 50);
        assert_eq!(l.max_header_size, 65_536);
        assert_eq!(l.max_mime_depth, 10);
        assert_eq!(l.signing_time_skew, Duration::from_secs(300));
        assert_eq!(l.min_rsa_bits, 2048);
        assert_eq!(
            l.digests,
            vec![DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512]
        );
        assert_eq!(l.crl, CrlPolicy::HardFail);
        assert!(!l.require_email_eku);
        assert!(!l.allow_unsigned_text);
    }

    #[test]
    fn max_message_size_may_be_2_gib() {
        let (_, l, d) = run("[limits]\nmax_message_size = 2147483648\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(l.max_message_size, 2 << 30);
        let (_, l, d) = run("[limits]\nmax_message_size = 2147483649\n");
        assert_eq!(l.max_message_size, 26_214_400);
        assert!(format!("{d:?}").contains("from 1 to 2147483648"), "{d:?}");
        let (_, _, d) = run("[limits]\nmax_message_size = 0\n");
        assert!(format!("{d:?}").contains("from 1 to"), "{d:?}");
    }

    #[test]
    fn every_limit_is_read() {
        let (g, l, d) = run(concat!(
            "[gateway]\nhostname = \"emla.example.org\"\n",
            "[limits]\nmax_message_size = 1_000\nmax_recipients = 3\n",
            "max_header_size = 100\nmax_mime_depth = 4\nsigning_time_skew_secs = 0\n",
            "min_rsa_bits = 3072\ndigests = [\"sha512\"]\ncrl = \"soft-fail\"\n",
            "require_email_eku = true\nallow_unsigned_text = true\n",
        ));
        assert!(d.is_empty(), "{d:?}");
        assert!(l.allow_unsigned_text);
        assert_eq!(g.hostname, "emla.example.org");
        assert_eq!(l.max_message_size, 1000);
        assert_eq!(l.max_recipients, 3);
        assert_eq!(l.max_header_size, 100);
        assert_eq!(l.max_mime_depth, 4);
        assert_eq!(l.signing_time_skew, Duration::ZERO);
        assert_eq!(l.min_rsa_bits, 3072);
        assert_eq!(l.digests, vec![DigestAlg::Sha512]);
        assert_eq!(l.crl, CrlPolicy::SoftFail);
        assert!(l.require_email_eku);
    }

    #[test]
    fn postmaster_defaults_to_the_hostname() {
        let (g, _, d) = run("[gateway]\nhostname = \"emla.example.org\"\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(g.postmaster, "postmaster@emla.example.org");
        assert!(g.signing.is_none());
        let (g, _, d) = run("[gateway]\npostmaster = \"receipts@emla.example.org\"\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(g.postmaster, "receipts@emla.example.org");
        let (_, _, d) = run("[gateway]\npostmaster = \"Post <p@x.example>\"\n");
        assert_eq!(
            d,
            ["p/gateway.toml:2:14: invalid postmaster \"Post <p@x.example>\": expected an address local@domain"]
        );
        let (_, _, d) = run("[gateway]\nsigning_key = \"k.pem\"\n");
        assert_eq!(
            d,
            ["p/gateway.toml:2:15: signing_key requires signing_cert"]
        );
    }

    #[test]
    fn problems_are_located() {
        let (_, _, d) = run(concat!(
            "[limits]\n",
            "max_size = 5\n",
            "min_rsa_bits = 1024\n",
            "digests = [\"sha256\", \"sha1\"]\n",
            "crl = \"maybe\"\n",
            "max_recipients = \"ten\"\n",
            "require_email_eku = \"yes\"\n",
            "replay = \"sometimes\"\n",
            "replay_window_days = 0\n",
            "allow_unsigned_text = 1\n",
        ));
        assert_eq!(
            d,
            vec![
                "p/gateway.toml:2:1: unknown key \"max_size\" in [limits]; expected one of: \
                 max_message_size, max_recipients, max_header_size, max_mime_depth, \
                 signing_time_skew_secs, min_rsa_bits, digests, crl, require_email_eku, \
                 replay, replay_window_days, allow_unsigned_text",
                "p/gateway.toml:6:18: key \"max_recipients\" in [limits] must be an integer, found string",
                "p/gateway.toml:3:16: min_rsa_bits = 1024 is below the minimum of 2048",
                "p/gateway.toml:4:22: digest \"sha1\" is refused: MD5 and SHA-1 are never accepted",
                "p/gateway.toml:5:7: invalid crl \"maybe\"; expected one of: \"hard-fail\", \"soft-fail\"",
                "p/gateway.toml:7:21: key \"require_email_eku\" in [limits] must be a boolean (true or false), found string",
                "p/gateway.toml:8:10: invalid replay \"sometimes\"; expected one of: \"same-id\", \"refuse\"",
                "p/gateway.toml:9:22: replay_window_days must be at least 1, found 0",
                "p/gateway.toml:10:23: key \"allow_unsigned_text\" in [limits] must be a boolean (true or false), found integer",
            ]
        );
    }

    #[test]
    fn syntax_error_is_located() {
        let (_, _, d) = run("[limits]\nmax_recipients = \n");
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("p/gateway.toml:2:"), "{d:?}");
        assert!(d[0].contains("syntax error"), "{d:?}");
    }
}
