//! The SMTP envelope's vocabulary, shared by the intake (which parses it),
//! the store (which keeps it) and the relay (which passes it on): RFC 5321
//! paths and the RFC 3461 DSN parameters.
//!
//! A path is accepted only if lettre, which the relay sends with, accepts
//! its mailbox too: nothing the intake takes can die at the relay for its
//! syntax.

use std::fmt;
use std::str::FromStr;

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path, `<` and `>` included (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Longest ENVID value, decoded (RFC 3461 §4.4).
pub const MAX_ENVID: usize = 100;
/// Longest ORCPT value, decoded (RFC 3461 §4.2).
pub const MAX_ORCPT: usize = 500;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A non-ASCII character: only SMTPUTF8 allows them, and emla does not
    /// offer it (RFC 6531 §3.5: `553 5.6.7`).
    NonAscii,
    /// Anything else, with what is wrong.
    Syntax(String),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NonAscii => {
                f.write_str("non-ASCII addresses need SMTPUTF8, which emla does not offer")
            }
            PathError::Syntax(s) => f.write_str(s),
        }
    }
}

fn bad(what: impl Into<String>) -> PathError {
    PathError::Syntax(what.into())
}

/// The mailbox of a path as written between `<` and `>` (`inner`), a
/// source route stripped; the empty string for the null path when
/// `null_allowed`.
pub fn parse_path(inner: &str, null_allowed: bool) -> Result<String, PathError> {
    if !inner.is_ascii() {
        return Err(PathError::NonAscii);
    }
    if let Some(c) = inner.bytes().find(|&b| b < 0x20 || b == 0x7f) {
        return Err(bad(format!("control character 0x{c:02x} in the address")));
    }
    if inner.len() + 2 > MAX_PATH {
        return Err(bad(format!(
            "the path is {} octets, the limit is {MAX_PATH}",
            inner.len() + 2
        )));
    }
    if inner.is_empty() {
        return if null_allowed {
            Ok(String::new())
        } else {
            Err(bad("empty address"))
        };
    }
    // RFC 5321 §4.1.2 "A-d-l": accepted, then ignored (§C).
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => {
            let (route, rest) = inner
                .split_once(':')
                .ok_or_else(|| bad("source route without ':'"))?;
            for hop in route.split(',') {
                let domain = hop
                    .strip_prefix('@')
                    .ok_or_else(|| bad(format!("source route hop {hop:?} lacks '@'")))?;
                check_domain(domain)?;
            }
            rest
        }
        None => inner,
    };
    check_mailbox(mailbox)?;
    Ok(mailbox.to_owned())
}

fn check_mailbox(mailbox: &str) -> Result<(), PathError> {
    let (local, domain) = split_mailbox(mailbox)?;
    if local.len() > MAX_LOCAL_PART {
        return Err(bad(format!(
            "the local part is {} octets, the limit is {MAX_LOCAL_PART}",
            local.len()
        )));
    }
    check_domain(domain)?;
    lettre::Address::from_str(mailbox)
        .map(drop)
        .map_err(|e| bad(format!("the relay cannot send to <{mailbox}>: {e}")))
}

/// `local-part "@" domain`, the local part a Dot-string or a
/// Quoted-string (RFC 5321 §4.1.2).
fn split_mailbox(mailbox: &str) -> Result<(&str, &str), PathError> {
    let at = if mailbox.starts_with('"') {
        let mut escaped = false;
        let mut end = None;
        for (i, c) in mailbox.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| bad("unterminated quoted local part"))?;
        if mailbox.as_bytes().get(end + 1) != Some(&b'@') {
            return Err(bad("a quoted local part must be followed by '@'"));
        }
        end + 1
    } else {
        let at = mailbox
            .find('@')
            .ok_or_else(|| bad(format!("<{mailbox}> has no domain")))?;
        let local = &mailbox[..at];
        if local.is_empty() {
            return Err(bad("empty local part"));
        }
        for atom in local.split('.') {
            if atom.is_empty() {
                return Err(bad(format!("empty atom in local part {local:?}")));
            }
            if let Some(c) = atom.chars().find(|&c| !is_atext(c)) {
                return Err(bad(format!("{c:?} is not allowed in local part {local:?}")));
            }
        }
        at
    };
    let domain = &mailbox[at + 1..];
    if domain.contains('@') {
        return Err(bad(format!("more than one '@' in <{mailbox}>")));
    }
    Ok((&mailbox[..at], domain))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A domain name or an address literal (RFC 5321 §4.1.2, §4.1.3).
fn check_domain(domain: &str) -> Result<(), PathError> {
    if domain.is_empty() {
        return Err(bad("empty domain"));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(bad(format!(
            "the domain is {} octets, the limit is {MAX_DOMAIN}",
            domain.len()
        )));
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal
            .strip_suffix(']')
            .ok_or_else(|| bad(format!("unterminated address literal {domain:?}")))?;
        let ok = match literal.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                literal[5..].parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(())
        } else {
            Err(bad(format!("{domain:?} is not an address literal")))
        };
    }
    for label in domain.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ldh
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(format!("{domain:?} is not a domain name")));
        }
    }
    Ok(())
}

/// Decodes RFC 3461 xtext; `None` when it is not xtext.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            c if (33..=126).contains(&c) => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 3461 NOTIFY: never, or any of success, failure and delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// Notify on success.
    pub success: bool,
    /// Notify on failure.
    pub failure: bool,
    /// Notify on delay.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub fn is_never(&self) -> bool {
        !(self.success || self.failure || self.delay)
    }
}

impl FromStr for Notify {
    type Err = String;

    fn from_str(s: &str) -> Result<Notify, String> {
        if s.eq_ignore_ascii_case("NEVER") {
            return Ok(Notify::default());
        }
        let mut n = Notify::default();
        for word in s.split(',') {
            let flag = match word.to_ascii_uppercase().as_str() {
                "SUCCESS" => &mut n.success,
                "FAILURE" => &mut n.failure,
                "DELAY" => &mut n.delay,
                _ => {
                    return Err(format!(
                        "NOTIFY={s}: NEVER, or a list of SUCCESS, FAILURE and DELAY"
                    ))
                }
            };
            if *flag {
                return Err(format!("NOTIFY={s} repeats {word}"));
            }
            *flag = true;
        }
        Ok(n)
    }
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_never() {
            return f.write_str("NEVER");
        }
        let words: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, w)| on.then_some(w))
        .collect();
        f.write_str(&words.join(","))
    }
}

impl serde::Serialize for Notify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Notify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Notify, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// RFC 3461 RET: what a DSN returns of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Ret {
    /// The whole message.
    Full,
    /// Its header section.
    Hdrs,
}

impl Ret {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// One recipient's DSN parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RcptDsn {
    /// The recipient (RCPT TO) they were given with.
    pub recipient: String,
    /// NOTIFY, if given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify: Option<Notify>,
    /// ORCPT, decoded: `addr-type;address`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub orcpt: Option<String>,
}

/// A message's DSN parameters (RFC 3461), as given by its client.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dsn {
    /// RET, if given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ret: Option<Ret>,
    /// ENVID, decoded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub envid: Option<String>,
    /// The recipients given NOTIFY or ORCPT.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub recipients: Vec<RcptDsn>,
}

impl Dsn {
    /// Whether no parameter was given.
    pub fn is_empty(&self) -> bool {
        self.ret.is_none() && self.envid.is_none() && self.recipients.is_empty()
    }

    /// The parameters given with `recipient`, if any.
    pub fn recipient(&self, recipient: &str) -> Option<&RcptDsn> {
        self.recipients
            .iter()
            .find(|r| r.recipient.eq_ignore_ascii_case(recipient))
    }

    /// Whether a notice of the kind `wants` selects may go about
    /// `recipient`: yes unless NOTIFY was given without it.
    pub fn notify(&self, recipient: &str, wants: impl Fn(&Notify) -> bool) -> bool {
        self.recipient(recipient)
            .and_then(|r| r.notify.as_ref())
            .is_none_or(wants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_rfc_5321() {
        let ok = |p: &str| parse_path(p, false).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(ok("a@b.example"), "a@b.example");
        assert_eq!(ok("@r1.example,@r2.example:a@b.example"), "a@b.example");
        assert_eq!(ok("first.last+tag@b.example"), "first.last+tag@b.example");
        assert_eq!(ok("a@[127.0.0.1]"), "a@[127.0.0.1]");
        assert_eq!(parse_path("", true).unwrap(), "");
        let long_local = format!("{}@b.example", "x".repeat(65));
        let long_path = format!("{}@{}", "x".repeat(60), vec!["d".repeat(60); 4].join("."));
        let long_domain = format!("a@{}", vec!["d".repeat(63); 5].join("."));
        for bad in [
            "",
            "a\0b@c.example",
            "a\x1b[32m@c.example",
            "@c.example",
            "a@@c.example",
            "a@b@c.example",
            "a@",
            "a",
            "a..b@c.example",
            ".a@c.example",
            "a@-c.example",
            "a@c..example",
            "a@c_d.example",
            "a b@c.example",
            "a@[1.2.3]",
            "@r1.example:",
            "@r1.example",
            "@:a@b.example",
            "\"unterminated@c.example",
            long_local.as_str(),
            long_path.as_str(),
            long_domain.as_str(),
        ] {
            assert!(
                matches!(parse_path(bad, false), Err(PathError::Syntax(_))),
                "{bad:?} accepted: {:?}",
                parse_path(bad, false)
            );
        }
        assert_eq!(parse_path("ü@c.example", false), Err(PathError::NonAscii));
    }

    #[test]
    fn xtext_and_notify() {
        assert_eq!(xtext_decode("a+2Bb").as_deref(), Some("a+b"));
        assert_eq!(xtext_decode("rfc822;a@b").as_deref(), Some("rfc822;a@b"));
        for bad in ["a+2b", "a+2", "a=b", "a b", "+ZZ"] {
            assert_eq!(xtext_decode(bad), None, "{bad}");
        }
        let n: Notify = "success,FAILURE".parse().unwrap();
        assert_eq!(n.to_string(), "SUCCESS,FAILURE");
        assert!("NEVER".parse::<Notify>().unwrap().is_never());
        for bad in ["NEVER,SUCCESS", "SOMETIMES", "SUCCESS,SUCCESS", ""] {
            assert!(bad.parse::<Notify>().is_err(), "{bad}");
        }
        let dsn = Dsn {
            ret: Some(Ret::Hdrs),
            envid: Some("QQ314159".into()),
            recipients: vec![RcptDsn {
                recipient: "a@b.example".into(),
                notify: Some("NEVER".parse().unwrap()),
                orcpt: Some("rfc822;a@b.example".into()),
            }],
        };
        let json = serde_json::to_string(&dsn).unwrap();
        assert_eq!(serde_json::from_str::<Dsn>(&json).unwrap(), dsn);
        assert!(!dsn.notify("A@b.example", |n| n.failure));
        assert!(dsn.notify("other@b.example", |n| n.failure));
    }
}
