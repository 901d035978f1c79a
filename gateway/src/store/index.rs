//! The search keys a message row is indexed under (`message_senders`,
//! `message_recipients`, `message_signers`), computed once in Rust so that
//! the writer, the search and the benchmark's bulk loader agree.
//!
//! - An address key is the address lowercased (`alice@justice.aa.example`);
//!   every address also gives its domain key, `@` followed by the domain
//!   (`@justice.aa.example`). Keys are distinct per message.
//! - A signer is keyed by the SHA-256 fingerprint of its certificate and by
//!   its serial number, both lowercase hex without separators.

use serde_json::Value;

/// The key of one address or domain as searched and stored: trimmed,
/// angle brackets dropped, lowercased. `@domain` and a bare `domain` both
/// give the domain key `@domain`.
pub fn address_key(query: &str) -> String {
    let q = query
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase();
    if q.contains('@') || q.is_empty() {
        q
    } else {
        format!("@{q}")
    }
}

/// The addresses in a header value such as `"Doe, Alice" <alice@a.example>,
/// bob@b.example`: the contents of every `<…>`, else every comma-separated
/// part that contains `@`.
pub fn header_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let addr = after[..close].trim();
        if addr.contains('@') {
            out.push(addr.to_string());
        }
        rest = &after[close + 1..];
    }
    if out.is_empty() {
        out = value
            .split(',')
            .map(|p| p.trim().trim_matches('"').trim())
            .filter(|p| p.contains('@') && !p.contains(char::is_whitespace))
            .map(str::to_string)
            .collect();
    }
    out
}

/// The keys of a set of addresses: each address lowercased, and its domain
/// key; distinct, in first-seen order.
pub fn address_keys<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut push = |k: String| {
        if !k.is_empty() && !keys.contains(&k) {
            keys.push(k);
        }
    };
    for a in addresses {
        let a = a
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if a.is_empty() {
            continue;
        }
        let lower = a.to_lowercase();
        if let Some((_, domain)) = lower.rsplit_once('@') {
            if !domain.is_empty() {
                push(format!("@{domain}"));
            }
        }
        push(lower);
    }
    keys
}

/// Sender keys: MAIL FROM and the `From:` addresses.
pub fn sender_keys(mail_from: &str, header_from: Option<&str>) -> Vec<String> {
    let header = header_from.map(header_addresses).unwrap_or_default();
    address_keys(std::iter::once(mail_from).chain(header.iter().map(String::as_str)))
}

/// Recipient keys: RCPT TO and the `To:` addresses.
pub fn recipient_keys(rcpt_to: &[String], header_to: Option<&str>) -> Vec<String> {
    let header = header_to.map(header_addresses).unwrap_or_default();
    address_keys(
        rcpt_to
            .iter()
            .map(String::as_str)
            .chain(header.iter().map(String::as_str)),
    )
}

/// Hex as stored for certificates: lowercase, without `:`, spaces or a
/// `0x` prefix.
pub fn hex_key(hex: &str) -> String {
    let h = hex.trim().to_lowercase();
    let h = h.strip_prefix("0x").unwrap_or(&h);
    h.chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect()
}

/// `(sha256, serial)` of each signer in a signers JSON array (as `emla
/// verify --json` prints them); signers without a fingerprint are skipped,
/// a fingerprint seen twice is kept once.
pub fn signer_keys(signers: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for s in super::rows::list_of::<super::Signer>(signers) {
        let Some(sha) = s.sha256.as_deref() else {
            continue;
        };
        let sha = hex_key(sha);
        if sha.is_empty() || out.iter().any(|(k, _)| *k == sha) {
            continue;
        }
        let serial = s.serial.as_deref().map(hex_key).unwrap_or_default();
        out.push((sha, serial));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_lowercase_and_add_domains() {
        assert_eq!(
            sender_keys(
                "Alice@Justice.AA.example",
                Some("\"Doe, Alice\" <alice@justice.aa.example>")
            ),
            vec!["@justice.aa.example", "alice@justice.aa.example"]
        );
        assert_eq!(
            recipient_keys(
                &["bob@b.example".into(), "carol@b.example".into()],
                Some("bob@b.example, Dave <dave@d.example>")
            ),
            vec![
                "@b.example",
                "bob@b.example",
                "carol@b.example",
                "@d.example",
                "dave@d.example"
            ]
        );
        assert_eq!(sender_keys("", None), Vec::<String>::new());
    }

    #[test]
    fn queries_normalise_like_keys() {
        for (hex, want) in [("0A:1b:FF", "0a1bff"), ("0x0A1B", "0a1b")] {
            assert_eq!(hex_key(hex), want, "{hex:?}");
        }
        for (query, want) in [
            (" <Bob@B.example> ", "bob@b.example"),
            ("@B.example", "@b.example"),
            ("b.example", "@b.example"),
        ] {
            assert_eq!(address_key(query), want, "{query:?}");
        }
    }

    #[test]
    fn header_addresses_without_brackets() {
        assert_eq!(
            header_addresses("a@x.example, b@y.example"),
            vec!["a@x.example", "b@y.example"]
        );
        assert_eq!(
            header_addresses("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn signer_keys_skip_missing_and_duplicates() {
        let s = serde_json::json!([
            {"sha256": "AB:CD", "serial": "01:02"},
            {"sha256": "abcd", "serial": "99"},
            {"email": "x"},
        ]);
        assert_eq!(signer_keys(&s), vec![("abcd".into(), "0102".into())]);
    }
}
