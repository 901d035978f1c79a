//! The case reference of a message: what `emla audit search --case` finds.
//!
//! The rule: the `X-MLA-Reference` header field when the message has one
//! (unfolded, trimmed, at most [`MAX_LEN`] characters), else the first match
//! of the case pattern in `Subject:`. The default pattern,
//! [`DEFAULT_PATTERN`], finds references such as `MLA-2026-17`,
//! `MLA 2026-17` or `mla2026-17` (case-insensitive); a deployment with
//! another numbering gives its own regular expression.

use std::sync::LazyLock;

use mail_parser::MessageParser;

/// The default case pattern: `MLA`, an optional `-` or space, a four-digit
/// year, `-`, a number; case-insensitive, on word boundaries.
pub const DEFAULT_PATTERN: &str = r"(?i)\bMLA[- ]?\d{4}-\d+\b";

/// The longest case reference kept, in characters; longer header values are
/// cut there.
pub const MAX_LEN: usize = 200;

/// A compiled case pattern.
#[derive(Clone, Debug)]
pub struct CaseRefPattern {
    regex: regex::Regex,
}

static DEFAULT: LazyLock<CaseRefPattern> = LazyLock::new(|| {
    CaseRefPattern::new(DEFAULT_PATTERN).expect("the default case pattern compiles")
});

impl CaseRefPattern {
    /// Compiles a pattern (Rust `regex` syntax); the error says why it does
    /// not compile.
    pub fn new(pattern: &str) -> Result<CaseRefPattern, String> {
        regex::Regex::new(pattern)
            .map(|regex| CaseRefPattern { regex })
            .map_err(|e| format!("case pattern {pattern:?}: {e}"))
    }

    /// The default pattern ([`DEFAULT_PATTERN`]), compiled once.
    pub fn standard() -> &'static CaseRefPattern {
        &DEFAULT
    }

    /// The first match in `subject`.
    pub fn find<'a>(&self, subject: &'a str) -> Option<&'a str> {
        self.regex.find(subject).map(|m| m.as_str())
    }
}

impl Default for CaseRefPattern {
    fn default() -> Self {
        CaseRefPattern::standard().clone()
    }
}

/// The case reference from an `X-MLA-Reference` value (if any) and the
/// subject (if any), by the rule above.
pub fn case_ref(
    header: Option<&str>,
    subject: Option<&str>,
    pattern: &CaseRefPattern,
) -> Option<String> {
    if let Some(h) = header {
        let unfolded = h.split_whitespace().collect::<Vec<_>>().join(" ");
        if !unfolded.is_empty() {
            return Some(unfolded.chars().take(MAX_LEN).collect());
        }
    }
    subject
        .and_then(|s| pattern.find(s))
        .map(|m| m.chars().take(MAX_LEN).collect())
}

/// The case reference of a raw message (RFC 5322): its `X-MLA-Reference`
/// header field, else the pattern's first match in its decoded `Subject:`.
pub fn from_message(raw: &[u8], pattern: &CaseRefPattern) -> Option<String> {
    let m = MessageParser::new().parse_headers(raw)?;
    let header = m.header_raw("X-MLA-Reference");
    case_ref(header, m.subject(), pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_over_subject() {
        let p = CaseRefPattern::standard();
        assert_eq!(
            case_ref(Some("  AA/2026/0042\r\n  rev 2 "), Some("MLA-2026-1"), p).as_deref(),
            Some("AA/2026/0042 rev 2")
        );
        assert_eq!(
            case_ref(Some("  "), Some("Re: request MLA 2026-17 (urgent)"), p).as_deref(),
            Some("MLA 2026-17")
        );
        assert_eq!(
            case_ref(None, Some("mla2026-5 evidence"), p).as_deref(),
            Some("mla2026-5")
        );
        assert_eq!(case_ref(None, Some("XMLA-2026-17"), p), None);
        assert_eq!(case_ref(None, None, p), None);
    }

    #[test]
    fn from_raw_message() {
        let raw = b"From: a@x.example\r\nSubject: =?utf-8?q?MLA-2026-9_=C3=A9?=\r\n\r\nbody\r\n";
        let p = CaseRefPattern::standard();
        assert_eq!(from_message(raw, p).as_deref(), Some("MLA-2026-9"));
        let raw = b"X-MLA-Reference: BB-77\r\nSubject: MLA-2026-9\r\n\r\nbody\r\n";
        assert_eq!(from_message(raw, p).as_deref(), Some("BB-77"));
        let custom = CaseRefPattern::new(r"Case #(\d+)").unwrap();
        assert_eq!(
            case_ref(None, Some("Re: Case #123"), &custom).as_deref(),
            Some("Case #123")
        );
        assert!(CaseRefPattern::new("(").is_err());
    }
}
