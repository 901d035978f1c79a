//! MIME structure: headers, multipart splitting and nesting depth.
//!
//! Bodies are never decoded or copied here: parts are slices of the message
//! exactly as transmitted, which is what a detached signature covers.

use std::fmt;

use mail_parser::{MessageParser, MimeHeaders};
use memchr::memmem;

use crate::reason::Reason;

/// Why the MIME structure of a message cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MimeError {
    /// The header section cannot be parsed.
    Header,
    /// A multipart entity (lower-case `type/subtype`) has no usable
    /// boundary parameter.
    NoBoundary {
        /// The entity's content type.
        content_type: String,
    },
    /// The closing delimiter comes before any part.
    NoParts {
        /// The boundary.
        boundary: String,
    },
    /// The closing delimiter is missing.
    NoClosingBoundary {
        /// The boundary.
        boundary: String,
    },
    /// A header that must occur at most once occurs again (RFC 2045 §3,
    /// RFC 5322 §3.6): parsers that take the first and parsers that take
    /// the last would show different messages.
    DuplicateHeader {
        /// The field name, as this module spells it.
        name: &'static str,
    },
    /// A line of a header section is no header field: its name is empty or
    /// holds a character RFC 5322 §3.6.8 does not allow (parsers that skip
    /// it and parsers that read it differ), or it has no colon.
    BadField {
        /// The line, cut short.
        line: String,
    },
    /// The nesting is deeper than allowed.
    TooDeep {
        /// The limit, in levels (the entity itself counting as 1).
        limit: usize,
    },
}

impl fmt::Display for MimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MimeError::Header => f.write_str("cannot parse the MIME header section"),
            MimeError::NoBoundary { content_type } => {
                write!(f, "{content_type} without a boundary parameter")
            }
            MimeError::NoParts { boundary } => {
                write!(f, "multipart body with boundary {boundary:?} has no parts")
            }
            MimeError::NoClosingBoundary { boundary } => write!(
                f,
                "multipart body is missing its closing boundary --{boundary}--"
            ),
            MimeError::DuplicateHeader { name } => write!(
                f,
                "a MIME header section repeats {name}: mail clients disagree on which one counts"
            ),
            MimeError::BadField { line } => {
                write!(
                    f,
                    "a MIME header section holds a line that is no header field: {line:?}"
                )
            }
            MimeError::TooDeep { limit } => {
                write!(f, "MIME nesting exceeds the limit of {limit} levels")
            }
        }
    }
}

impl std::error::Error for MimeError {}

impl From<&MimeError> for Reason {
    fn from(e: &MimeError) -> Reason {
        match e {
            MimeError::Header
            | MimeError::NoBoundary { .. }
            | MimeError::NoParts { .. }
            | MimeError::NoClosingBoundary { .. }
            | MimeError::DuplicateHeader { .. }
            | MimeError::BadField { .. } => Reason::Malformed,
            MimeError::TooDeep { .. } => Reason::TooDeep,
        }
    }
}

/// A MIME entity (a message or a body part) as transmitted.
pub struct Entity<'a> {
    /// The whole entity, headers included.
    pub raw: &'a [u8],
    /// Offset of the body within `raw`.
    pub body_start: usize,
    /// Lower-case `type/subtype`, `text/plain` when absent.
    pub content_type: String,
    /// Content-Type parameters, names lower-cased.
    pub params: Vec<(String, String)>,
    /// Lower-case Content-Transfer-Encoding, if any.
    pub transfer_encoding: Option<String>,
    /// Addresses of the `From:` field (empty when absent).
    pub from: Vec<String>,
    /// The display names (decoded) and group names of the `From:` field,
    /// what a mail client shows instead of the addresses.
    pub from_names: Vec<String>,
}

/// Fields a MIME entity may carry once only; a repeated one is refused.
const SINGLE_FIELDS: [&str; 3] = ["Content-Type", "MIME-Version", "Content-Transfer-Encoding"];

/// Checks the fields of the header section `head` (its blank line
/// included): each line is a field `name:` (ftext, with the white space
/// some parsers allow before the colon, RFC 5322 §4.5.4's obsolete syntax)
/// or a continuation of one, and none of [`SINGLE_FIELDS`] repeats (names
/// compared case-insensitively).
fn check_fields(head: &[u8]) -> Result<(), MimeError> {
    let mut seen = [false; SINGLE_FIELDS.len()];
    let mut in_field = false;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // the blank line ending the section, or the end
        }
        if in_field && (line[0] == b' ' || line[0] == b'\t') {
            continue; // a continuation line
        }
        let bad = || MimeError::BadField {
            line: String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned(),
        };
        let colon = memchr::memchr(b':', line).ok_or_else(bad)?;
        let name = line[..colon].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return Err(bad());
        }
        in_field = true;
        for (i, field) in SINGLE_FIELDS.iter().enumerate() {
            if name.eq_ignore_ascii_case(field.as_bytes()) {
                if seen[i] {
                    return Err(MimeError::DuplicateHeader { name: field });
                }
                seen[i] = true;
            }
        }
    }
    Ok(())
}

impl<'a> Entity<'a> {
    /// Parses the header section of `raw`.
    pub fn parse(raw: &'a [u8]) -> Result<Self, MimeError> {
        Entity::parse_and(raw, |_| ()).map(|(e, ())| e)
    }

    /// [`Entity::parse`], also handing the parsed header section (`None`
    /// for an empty one) to `f`, so a caller reading other fields need not
    /// parse it again.
    pub fn parse_and<T>(
        raw: &'a [u8],
        f: impl FnOnce(Option<&mail_parser::Message<'_>>) -> T,
    ) -> Result<(Self, T), MimeError> {
        // An empty header section (RFC 2045 defaults: text/plain, us-ascii),
        // as s-nail writes for plain ASCII text.
        if let Some(rest) = raw
            .strip_prefix(b"\r\n".as_slice())
            .or_else(|| raw.strip_prefix(b"\n".as_slice()))
        {
            let entity = Entity {
                raw,
                body_start: raw.len() - rest.len(),
                content_type: "text/plain".to_string(),
                params: Vec::new(),
                transfer_encoding: None,
                from: Vec::new(),
                from_names: Vec::new(),
            };
            return Ok((entity, f(None)));
        }
        let message = MessageParser::new()
            .parse_headers(raw)
            .ok_or(MimeError::Header)?;
        // parse_headers leaves offset_body at the end of the input.
        let body_start = header_len(raw);
        check_fields(&raw[..body_start])?;
        let (content_type, params) = match message.content_type() {
            Some(ct) => (
                [ct.ctype(), "/", ct.subtype().unwrap_or("")]
                    .concat()
                    .to_ascii_lowercase(),
                ct.attributes()
                    .unwrap_or(&[])
                    .iter()
                    .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                    .collect(),
            ),
            None => ("text/plain".to_string(), Vec::new()),
        };
        let transfer_encoding = message
            .content_transfer_encoding()
            .map(|s| s.trim().to_ascii_lowercase());
        // Every From: field counts, so a second one cannot hide behind the first.
        let from = message
            .header_values(mail_parser::HeaderName::From)
            .flat_map(|v| match v.as_address() {
                Some(a) => a
                    .iter()
                    .map(|addr| addr.address().unwrap_or("").to_string())
                    .collect::<Vec<_>>(),
                None => vec![String::new()],
            })
            .collect();
        let mut from_names = Vec::new();
        for value in message.header_values(mail_parser::HeaderName::From) {
            if let mail_parser::HeaderValue::Address(mail_parser::Address::Group(groups)) = value {
                from_names.extend(groups.iter().filter_map(|g| g.name.as_deref()));
            }
            if let Some(a) = value.as_address() {
                from_names.extend(a.iter().filter_map(|addr| addr.name()));
            }
        }
        let from_names = from_names.into_iter().map(str::to_string).collect();
        let entity = Entity {
            raw,
            body_start,
            content_type,
            params,
            transfer_encoding,
            from,
            from_names,
        };
        Ok((entity, f(Some(&message))))
    }

    /// The body, as transmitted.
    pub fn body(&self) -> &'a [u8] {
        &self.raw[self.body_start..]
    }

    /// A Content-Type parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the entity is a `multipart/*`.
    pub fn is_multipart(&self) -> bool {
        self.content_type.starts_with("multipart/")
    }

    /// The body parts of a multipart entity.
    pub fn parts(&self) -> Result<Vec<&'a [u8]>, MimeError> {
        Ok(self.multipart()?.parts)
    }

    /// The body of a multipart entity: its parts, preamble and epilogue.
    pub fn multipart(&self) -> Result<Multipart<'a>, MimeError> {
        let boundary = self
            .param("boundary")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| MimeError::NoBoundary {
                content_type: self.content_type.clone(),
            })?;
        split_multipart(self.body(), boundary)
    }
}

/// A multipart body (RFC 2046 §5.1.1) as transmitted.
#[derive(Debug, PartialEq, Eq)]
pub struct Multipart<'a> {
    /// The parts.
    pub parts: Vec<&'a [u8]>,
    /// What comes before the first delimiter (without the line break that
    /// belongs to it).
    pub preamble: &'a [u8],
    /// What follows the line of the closing delimiter.
    pub epilogue: &'a [u8],
}

/// What follows `--boundary` on a delimiter line (`rest`): whether the
/// delimiter closes, and how long the rest of its line is (`--`, transport
/// padding, the line break; none only for a closing one at the end).
/// `None`: not a delimiter of this boundary.
pub(super) fn delimiter_rest(rest: &[u8]) -> Option<(bool, usize)> {
    let closing = rest.starts_with(b"--");
    let after = if closing { &rest[2..] } else { rest };
    // Only transport padding may follow a delimiter on its line.
    let pad = after
        .iter()
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    let eol = match &after[pad..] {
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        [] if closing => 0,
        _ => return None,
    };
    Some((closing, usize::from(closing) * 2 + pad + eol))
}

/// Splits a multipart body into its parts (RFC 2046 §5.1.1). Each part runs
/// from after its delimiter line to before the line break that precedes the
/// next delimiter: that line break belongs to the delimiter.
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Multipart<'a>, MimeError> {
    let delimiter = format!("--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut preamble: Option<&[u8]> = None;
    let mut search = 0;
    while let Some(found) = finder.find(&body[search..]) {
        let at = search + found;
        search = at + delimiter.len();
        if at != 0 && body[at - 1] != b'\n' {
            continue; // not at a line start: part of the content
        }
        // None: a longer boundary that merely starts the same way.
        let Some((closing, tail)) = delimiter_rest(&body[at + delimiter.len()..]) else {
            continue;
        };
        let start = current.take();
        let mut end = at;
        if end > 0 && body[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        match start {
            Some(start) => parts.push(&body[start..end.max(start)]),
            None => {
                preamble.get_or_insert(&body[..end]);
            }
        }
        let line_end = at + delimiter.len() + tail;
        if closing {
            if parts.is_empty() {
                return Err(MimeError::NoParts {
                    boundary: boundary.to_string(),
                });
            }
            return Ok(Multipart {
                parts,
                preamble: preamble.unwrap_or_default(),
                epilogue: &body[line_end..],
            });
        }
        current = Some(line_end);
        search = line_end;
    }
    Err(MimeError::NoClosingBoundary {
        boundary: boundary.to_string(),
    })
}

/// Checks that MIME nesting (the entity itself counting as 1) stays within
/// `limit`, walking multiparts and `message/rfc822` without decoding.
pub fn check_depth(raw: &[u8], limit: usize) -> Result<usize, MimeError> {
    walk(raw, 1, limit, &[])
}

/// What a caller parsed already of an entity tree, for
/// [`check_depth_known`].
pub struct Known<'k, 'a> {
    /// The top entity's parts ([`Entity::parts`] of it), if split.
    pub top_parts: Option<&'k [&'a [u8]]>,
    /// Entities parsed, found by their exact slice of the message.
    pub entities: &'k [&'k Entity<'a>],
}

/// [`check_depth`] of an entity already parsed, not parsing again what
/// `known` holds (parsing is a function of the bytes: the same result).
pub fn check_depth_known(
    entity: &Entity<'_>,
    limit: usize,
    known: &Known<'_, '_>,
) -> Result<usize, MimeError> {
    if limit < 1 {
        return Err(MimeError::TooDeep { limit });
    }
    walk_entity(entity, 1, limit, known.top_parts, known.entities)
}

fn walk(raw: &[u8], level: usize, limit: usize, known: &[&Entity<'_>]) -> Result<usize, MimeError> {
    if level > limit {
        return Err(MimeError::TooDeep { limit });
    }
    match known.iter().find(|e| std::ptr::eq(e.raw, raw)) {
        Some(e) => walk_entity(e, level, limit, None, known),
        None => walk_entity(&Entity::parse(raw)?, level, limit, None, known),
    }
}

fn walk_entity(
    entity: &Entity<'_>,
    level: usize,
    limit: usize,
    parts: Option<&[&[u8]]>,
    known: &[&Entity<'_>],
) -> Result<usize, MimeError> {
    let mut deepest = level;
    if entity.is_multipart() {
        let split;
        let parts = match parts {
            Some(p) => p,
            None => {
                split = entity.parts()?;
                split.as_slice()
            }
        };
        for part in parts {
            deepest = deepest.max(walk(part, level + 1, limit, known)?);
        }
    } else if entity.content_type == "message/rfc822"
        && !matches!(
            entity.transfer_encoding.as_deref(),
            Some("base64" | "quoted-printable")
        )
    {
        deepest = deepest.max(walk(entity.body(), level + 1, limit, known)?);
    }
    Ok(deepest)
}

/// Length of the header section, up to and including the blank line
/// (CRLF or bare LF); stops there instead of reading the body.
pub fn header_len(raw: &[u8]) -> usize {
    let mut line_start = 0;
    for nl in memchr::memchr_iter(b'\n', raw) {
        let line = &raw[line_start..nl];
        if line.is_empty() || line == b"\r" {
            return nl + 1;
        }
        line_start = nl + 1;
    }
    raw.len()
}

/// The header section of the message in `file` (read from its start, the
/// file's cursor left alone), no further than `max` bytes: a longer one is
/// cut there.
pub fn read_head(file: &std::fs::File, max: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; max.saturating_add(4).min(1 << 30)];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
        if header_len(&head[..got]) < got {
            break;
        }
    }
    head.truncate(header_len(&head[..got]));
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &[u8] = b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"BB\"\r\n\r\nThis is an S/MIME signed message\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BB-not\r\n\r\n--BB\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--BB--\r\n";

    #[test]
    fn splits_signed_parts_exactly() {
        let e = Entity::parse(SIGNED).unwrap();
        assert_eq!(e.content_type, "multipart/signed");
        assert_eq!(e.param("Protocol"), Some("application/pkcs7-signature"));
        let parts = e.parts().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            b"Content-Type: text/plain\r\n\r\nhello\r\n--BB-not\r\n"
        );
        assert_eq!(
            parts[1],
            b"Content-Type: application/pkcs7-signature\r\n\r\nAAAA"
        );
    }

    #[test]
    fn splits_lf_only_bodies() {
        let body = b"preamble\n--x\nA: b\n\none\n--x\n\ntwo\n--x--\nepilogue\n";
        let m = split_multipart(body, "x").unwrap();
        assert_eq!(m.parts, vec![&b"A: b\n\none"[..], &b"\ntwo"[..]]);
        assert_eq!(m.preamble, b"preamble");
        assert_eq!(m.epilogue, b"epilogue\n");
    }

    #[test]
    fn empty_header_section_is_plain_text() {
        for raw in [&b"\r\nhello\r\n"[..], b"\nhello\n"] {
            let e = Entity::parse(raw).unwrap();
            assert_eq!(e.content_type, "text/plain");
            assert!(e.body().starts_with(b"hello"));
            assert!(e.from.is_empty());
        }
    }

    #[test]
    fn preamble_and_epilogue_are_what_surrounds_the_parts() {
        let m = split_multipart(b"--x\r\na\r\n--x-- \r\n", "x").unwrap();
        assert_eq!((m.preamble, m.epilogue), (&b""[..], &b""[..]));
        let m = split_multipart(b"pre\r\n\r\n--x\r\na\r\n--x--", "x").unwrap();
        assert_eq!((m.preamble, m.epilogue), (&b"pre\r\n"[..], &b""[..]));
        let m = split_multipart(b"--x\r\na\r\n--x--\r\n\r\nshown?\r\n", "x").unwrap();
        assert_eq!(m.epilogue, b"\r\nshown?\r\n");
    }

    #[test]
    fn repeated_mime_fields_are_refused_anywhere() {
        let dup = |raw: &[u8]| Entity::parse(raw).err();
        let refused = |name| Some(MimeError::DuplicateHeader { name });
        assert_eq!(
            dup(b"Content-Type: text/plain\r\nContent-Type: multipart/signed; boundary=x\r\n\r\n"),
            refused("Content-Type")
        );
        assert_eq!(
            dup(b"MIME-Version: 1.0\r\nSubject: x\r\nmime-version : 1.0\r\n\r\n"),
            refused("MIME-Version")
        );
        assert_eq!(
            dup(b"Content-Transfer-Encoding: 7bit\nCONTENT-TRANSFER-ENCODING: base64\n\n"),
            refused("Content-Transfer-Encoding")
        );
        // A folded value and the body do not count; distinct fields are fine.
        assert_eq!(
            dup(b"Content-Type: text/plain;\r\n Content-Type: x\r\nMIME-Version: 1.0\r\n\r\nContent-Type: y\r\n"),
            None
        );
        // A name a lenient parser would read as Content-Type is no field.
        assert_eq!(
            dup(b"Content\t-Type: application/pkcs7-mime\r\n\r\n"),
            Some(MimeError::BadField {
                line: "Content\t-Type: application/pkcs7-mime".into()
            })
        );
        assert!(dup(b"no colon here\r\n\r\n").is_some());
        assert!(dup(b" leading: continuation\r\n\r\n").is_some());
        assert!(dup(b": empty name\r\n\r\n").is_some());
        let e = MimeError::DuplicateHeader {
            name: "Content-Type",
        };
        assert_eq!(Reason::from(&e), Reason::Malformed);
        assert!(e.to_string().contains("repeats Content-Type"), "{e}");
        // Every entity of a tree is parsed, so a repeat in a part is found too.
        let nested = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\ncontent-type: text/html\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(check_depth(nested, 5), Err(e));
    }

    #[test]
    fn from_display_names_are_kept_decoded() {
        let names = |raw: &[u8]| Entity::parse(raw).unwrap().from_names;
        assert_eq!(
            names(b"From: mallory@fr.example <alice@aa.example>\r\n\r\n"),
            ["mallory@fr.example"]
        );
        assert_eq!(
            names(b"From: =?utf-8?q?mallory=40fr=2Eexample?= <alice@aa.example>\r\n\r\n"),
            ["mallory@fr.example"]
        );
        assert_eq!(
            names(b"From: \"Mallory <mallory@fr.example>\" <alice@aa.example>\r\n\r\n"),
            ["Mallory <mallory@fr.example>"]
        );
        assert!(names(b"From: alice@aa.example\r\n\r\n").is_empty());
    }

    #[test]
    fn missing_close_is_an_error() {
        assert!(split_multipart(b"--x\r\nhi\r\n", "x").is_err());
    }

    #[test]
    fn depth_counts_nesting() {
        let mut msg = b"Content-Type: text/plain\r\n\r\nleaf\r\n".to_vec();
        for i in 0..5 {
            let b = format!("b{i}");
            let mut outer =
                format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n")
                    .into_bytes();
            outer.extend_from_slice(&msg);
            outer.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
            msg = outer;
        }
        assert_eq!(check_depth(&msg, 10), Ok(6));
        assert_eq!(check_depth(&msg, 5), Err(MimeError::TooDeep { limit: 5 }));
        let top = Entity::parse(&msg).unwrap();
        let parts = top.parts().unwrap();
        let inner = Entity::parse(parts[0]).unwrap();
        for limit in 0..8 {
            for known in [
                Known {
                    top_parts: None,
                    entities: &[],
                },
                Known {
                    top_parts: Some(&parts),
                    entities: &[&inner],
                },
            ] {
                assert_eq!(
                    check_depth_known(&top, limit, &known),
                    check_depth(&msg, limit)
                );
            }
        }
    }

    /// One row per variant: the reason code `verify` reports for it.
    #[test]
    fn every_mime_error_has_its_reason() {
        let b = || "x".to_string();
        let table = [
            (MimeError::Header, Reason::Malformed),
            (
                MimeError::NoBoundary { content_type: b() },
                Reason::Malformed,
            ),
            (MimeError::NoParts { boundary: b() }, Reason::Malformed),
            (
                MimeError::NoClosingBoundary { boundary: b() },
                Reason::Malformed,
            ),
            (
                MimeError::DuplicateHeader {
                    name: "MIME-Version",
                },
                Reason::Malformed,
            ),
            (MimeError::BadField { line: b() }, Reason::Malformed),
            (MimeError::TooDeep { limit: 3 }, Reason::TooDeep),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
        assert_eq!(
            MimeError::TooDeep { limit: 3 }.to_string(),
            "MIME nesting exceeds the limit of 3 levels"
        );
    }

    #[test]
    fn header_len_finds_blank_line() {
        assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_len(b"A: b\n\nbody"), 6);
        assert_eq!(header_len(b"\r\nbody"), 2);
    }
}
