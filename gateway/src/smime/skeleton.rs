//! A large message read from its file in one streaming pass, in bounded
//! memory: its MIME skeleton for the checks [`verify`](crate::verify)
//! makes in memory, and where the content a detached signature covers
//! lies in the file, with its SHA-256.
//!
//! The skeleton is the message with the lines of leaf bodies left out,
//! except those starting with `--` (only such a line can be a delimiter,
//! in any reading of the structure). Header sections, the preamble and
//! epilogue of a top-level `multipart/signed`, and the CMS (the signature
//! part, or the body of an opaque `application/pkcs7-mime`) are kept
//! whole. So the delimiters, header fields, nesting and CMS that
//! [`mime`](super::mime) and [`extract`](super::extract) see in the
//! skeleton are those of the message, and only the digest of the signed
//! content must come from the file.
//!
//! Every piece kept is bounded: a header section by `max_header_size`,
//! the CMS by [`MAX_HELD`], the rest of the skeleton by
//! [`MAX_STRUCTURE`], a line by [`MAX_LINE`]. Past a bound the message is
//! refused, saying which.

use std::fmt;
use std::io::{self, BufRead};

use super::mime::Entity;

/// Most bytes of CMS (base64 as transmitted) held in memory: what any
/// message under the old 25 MiB limit could carry.
pub const MAX_HELD: usize = 32 << 20;

/// Most bytes of header sections, delimiter lines and unsigned text kept.
pub const MAX_STRUCTURE: usize = 4 << 20;

/// Longest line read (the intake refuses lines over 1000 bytes before
/// this is reached).
pub const MAX_LINE: usize = 64 * 1024;

/// Why a spooled message cannot be judged in bounded memory.
#[derive(Debug)]
pub enum SkeletonError {
    /// A piece the checks need whole is larger than its bound.
    TooLarge(String),
    /// A line is not CRLF-terminated or too long.
    Line(String),
    /// The file could not be read.
    Io(io::Error),
}

impl fmt::Display for SkeletonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkeletonError::TooLarge(s) | SkeletonError::Line(s) => f.write_str(s),
            SkeletonError::Io(e) => write!(f, "cannot read the spooled message: {e}"),
        }
    }
}

impl From<io::Error> for SkeletonError {
    fn from(e: io::Error) -> Self {
        SkeletonError::Io(e)
    }
}

/// Where the first part of a top-level `multipart/signed` lies in the
/// file (the line break before the next delimiter excluded, as
/// [`split_multipart`](super::mime::split_multipart) cuts it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRange {
    /// Offset of its first byte.
    pub start: u64,
    /// Offset after its last byte.
    pub end: u64,
    /// SHA-256 of those bytes.
    pub sha256: Vec<u8>,
}

/// A message read by [`read`].
pub struct Skeleton {
    /// The skeleton (see the module docs).
    pub raw: Vec<u8>,
    /// The signed content of a detached signature, when the message is a
    /// `multipart/signed` with at least two parts.
    pub signed: Option<SignedRange>,
    /// Bytes read.
    pub len: u64,
}

/// A multipart entity open in the walk.
struct Frame {
    boundary: Vec<u8>,
    /// Parts begun so far.
    parts: usize,
    closed: bool,
    /// The message's own `multipart/signed`.
    top_signed: bool,
}

/// What the next line is part of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The header section of an entity; `signature`: the second part of
    /// the top `multipart/signed`; `top`: the message's own.
    Header { top: bool, signature: bool },
    /// A body whose lines are kept (CMS).
    Held,
    /// Text outside the parts of the top `multipart/signed`: kept.
    Outside,
    /// Any other body: only `--` lines kept.
    Leaf,
}

/// Whether `line` is a delimiter of `boundary` (RFC 2046 §5.1.1, as
/// [`split_multipart`](super::mime::split_multipart) reads one), and
/// whether it is the closing one.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    super::mime::delimiter_rest(rest).map(|(closing, _)| closing)
}

/// The walk's state.
struct Walk {
    raw: Vec<u8>,
    held: usize,
    header: Vec<u8>,
    max_header: usize,
    stack: Vec<Frame>,
    mode: Mode,
    /// Inside the first part of the top `multipart/signed`.
    in_signed: bool,
    signed_start: u64,
    signed: Option<SignedRange>,
    sha256: ring::digest::Context,
    /// A CRLF of the signed part not hashed yet: it belongs to the next
    /// delimiter if one follows.
    pending_crlf: bool,
}

impl Walk {
    fn keep(&mut self, line: &[u8]) -> Result<(), SkeletonError> {
        if self.raw.len() - self.held + line.len() > MAX_STRUCTURE {
            return Err(SkeletonError::TooLarge(format!(
                "the MIME structure (header sections, delimiter lines and text outside the \
                 signature) is more than {MAX_STRUCTURE} bytes, more than the gateway judges \
                 in bounded memory"
            )));
        }
        self.raw.extend_from_slice(line);
        Ok(())
    }

    fn hold(&mut self, line: &[u8], top: bool) -> Result<(), SkeletonError> {
        if self.held + line.len() > MAX_HELD {
            let what = if top {
                "an opaque signed message (application/pkcs7-mime; smime-type=signed-data)"
            } else {
                "the signature part (CMS) of multipart/signed"
            };
            let advice = if top {
                "; send large evidence as multipart/signed (a detached signature)"
            } else {
                ""
            };
            return Err(SkeletonError::TooLarge(format!(
                "{what} is more than {MAX_HELD} bytes, the most the gateway verifies in \
                 memory{advice}"
            )));
        }
        self.held += line.len();
        self.raw.extend_from_slice(line);
        Ok(())
    }

    fn line(&mut self, line: &[u8], offset: u64) -> Result<(), SkeletonError> {
        if line.starts_with(b"--") {
            // The outermost multipart's delimiter wins, as the in-memory
            // split of the outer body comes first.
            let hit = self
                .stack
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.closed)
                .find_map(|(i, f)| delimiter(line, &f.boundary).map(|c| (i, c)));
            if let Some((i, closing)) = hit {
                if !self.stack[i].top_signed {
                    self.digest(line);
                }
                // A header section cut by a delimiter is kept as it is.
                let header = std::mem::take(&mut self.header);
                self.keep(&header)?;
                return self.delimiter_line(line, offset, i, closing);
            }
        }
        self.digest(line);
        match self.mode {
            Mode::Header { top, signature } => self.header_line(line, top, signature),
            Mode::Held => self.hold(line, self.stack.is_empty()),
            Mode::Outside => self.keep(line),
            _ if line.starts_with(b"--") => self.keep(line),
            _ => Ok(()),
        }
    }

    /// Hashes `line` when it is of the signed part, but for its CRLF,
    /// which belongs to the next delimiter if one follows.
    fn digest(&mut self, line: &[u8]) {
        if !self.in_signed {
            return;
        }
        if self.pending_crlf {
            self.sha256.update(b"\r\n");
        }
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        self.sha256.update(text);
        self.pending_crlf = text.len() < line.len();
    }

    fn delimiter_line(
        &mut self,
        line: &[u8],
        offset: u64,
        i: usize,
        closing: bool,
    ) -> Result<(), SkeletonError> {
        self.stack.truncate(i + 1);
        self.keep(line)?;
        let frame = &mut self.stack[i];
        let top_signed = frame.top_signed;
        if top_signed && self.in_signed {
            // The CRLF before the delimiter belongs to it.
            self.in_signed = false;
            let sha256 = std::mem::replace(
                &mut self.sha256,
                ring::digest::Context::new(&ring::digest::SHA256),
            );
            let end = offset.saturating_sub(2).max(self.signed_start);
            self.signed = Some(SignedRange {
                start: self.signed_start,
                end,
                sha256: sha256.finish().as_ref().to_vec(),
            });
        }
        if closing {
            frame.closed = true;
            self.mode = if top_signed {
                Mode::Outside
            } else {
                Mode::Leaf
            };
            return Ok(());
        }
        frame.parts += 1;
        let part = frame.parts;
        if top_signed && part == 1 {
            self.in_signed = true;
            self.pending_crlf = false;
            self.signed_start = offset + line.len() as u64;
        }
        self.mode = Mode::Header {
            top: false,
            signature: top_signed && part == 2,
        };
        Ok(())
    }

    fn header_line(
        &mut self,
        line: &[u8],
        top: bool,
        signature: bool,
    ) -> Result<(), SkeletonError> {
        if self.header.len() + line.len() > self.max_header {
            let which = if top { "the message" } else { "a body part" };
            return Err(SkeletonError::TooLarge(format!(
                "the header section of {which} is more than {} bytes, the limit",
                self.max_header
            )));
        }
        self.header.extend_from_slice(line);
        if line != b"\r\n" && line != b"\n" {
            return Ok(());
        }
        let header = std::mem::take(&mut self.header);
        self.keep(&header)?;
        self.mode = match Entity::parse(&header) {
            // What does not parse is refused when the skeleton is judged.
            Err(_) => Mode::Leaf,
            Ok(e) if e.is_multipart() => match e.param("boundary").filter(|b| !b.is_empty()) {
                Some(b) => {
                    let top_signed = top && e.content_type == "multipart/signed";
                    self.stack.push(Frame {
                        boundary: b.as_bytes().to_vec(),
                        parts: 0,
                        closed: false,
                        top_signed,
                    });
                    if top_signed {
                        Mode::Outside
                    } else {
                        Mode::Leaf
                    }
                }
                None => Mode::Leaf,
            },
            Ok(e)
                if e.content_type == "message/rfc822"
                    && !matches!(
                        e.transfer_encoding.as_deref(),
                        Some("base64" | "quoted-printable")
                    ) =>
            {
                Mode::Header {
                    top: false,
                    signature: false,
                }
            }
            Ok(_) if signature => Mode::Held,
            Ok(e) if top && super::MIME_TYPES.contains(&e.content_type.as_str()) => Mode::Held,
            Ok(_) => Mode::Leaf,
        };
        Ok(())
    }
}

/// Reads the message from `input` (at its start) to its end; see the
/// module docs. `max_header` bounds each header section.
pub fn read(input: &mut impl BufRead, max_header: usize) -> Result<Skeleton, SkeletonError> {
    let mut walk = Walk {
        raw: Vec::with_capacity(64 * 1024),
        held: 0,
        header: Vec::new(),
        max_header,
        stack: Vec::new(),
        mode: Mode::Header {
            top: true,
            signature: false,
        },
        in_signed: false,
        signed_start: 0,
        signed: None,
        sha256: ring::digest::Context::new(&ring::digest::SHA256),
        pending_crlf: false,
    };
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = io::Read::take(&mut *input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if n > MAX_LINE {
            return Err(SkeletonError::Line(format!(
                "a line at byte {offset} is longer than {MAX_LINE} bytes"
            )));
        }
        if line.ends_with(b"\n") && !line.ends_with(b"\r\n") {
            return Err(SkeletonError::Line(format!(
                "the line at byte {offset} ends in a bare LF; lines must end with CRLF"
            )));
        }
        walk.line(&line, offset)?;
        offset += n as u64;
    }
    if !walk.header.is_empty() {
        let header = std::mem::take(&mut walk.header);
        walk.keep(&header)?;
    }
    Ok(Skeleton {
        raw: walk.raw,
        signed: walk.signed,
        len: offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton(msg: &[u8]) -> Skeleton {
        read(&mut &msg[..], 64 * 1024).unwrap()
    }

    const SIGNED: &[u8] = b"From: a@b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=\"BB\"\r\n\r\nThis is an S/MIME signed message\r\n\r\n--BB\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nhello\r\nworld\r\n--in\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\nBBBB\r\n--in--\r\n--BB-not\r\n\r\n--BB\r\nContent-Type: application/pkcs7-signature\r\n\r\nMAA=\r\n--BB--\r\nepilogue\r\n";

    #[test]
    fn leaf_bodies_are_left_out_and_the_signed_part_located() {
        let s = skeleton(SIGNED);
        let text = String::from_utf8_lossy(&s.raw).into_owned();
        assert!(!text.contains("hello") && !text.contains("AAAA"), "{text}");
        for kept in [
            "This is an S/MIME",
            "--in--\r\n",
            "--BB-not\r\n",
            "MAA=\r\n",
            "epilogue",
            "Content-Type: application/pdf",
        ] {
            assert!(text.contains(kept), "{kept}: {text}");
        }
        // The same parts, the same signed content, as the in-memory split.
        let top = Entity::parse(SIGNED).unwrap();
        let parts = top.parts().unwrap();
        let range = s.signed.unwrap();
        let signed = &SIGNED[range.start as usize..range.end as usize];
        assert_eq!(signed, parts[0]);
        let digest = ring::digest::digest(&ring::digest::SHA256, parts[0]);
        assert_eq!(range.sha256, digest.as_ref());
        let skel = Entity::parse(&s.raw).unwrap();
        assert_eq!(skel.parts().unwrap().len(), 2);
        assert_eq!(s.len, SIGNED.len() as u64);
        assert!(super::super::mime::check_depth(&s.raw, 3).is_ok());
        assert!(super::super::mime::check_depth(&s.raw, 2).is_err());
    }

    #[test]
    fn bounds_are_refused_by_name() {
        let mut long_header = b"From: a@b\r\n".to_vec();
        for _ in 0..100 {
            long_header.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n");
        }
        long_header.extend_from_slice(b"\r\nbody\r\n");
        let e = read(&mut &long_header[..], 1000).err().unwrap();
        assert!(
            e.to_string().contains("header section of the message"),
            "{e}"
        );
        let e = read(&mut &b"From: a@b\nX: y\r\n\r\n"[..], 1000)
            .err()
            .unwrap();
        assert!(e.to_string().contains("bare LF"), "{e}");
        let mut long_line = b"From: a@b\r\n\r\n".to_vec();
        long_line.extend(std::iter::repeat_n(b'A', MAX_LINE + 10));
        let e = read(&mut &long_line[..], 1000).err().unwrap();
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    #[test]
    fn an_empty_signed_part_is_empty() {
        let msg = b"Content-Type: multipart/signed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\nMAA=\r\n--b--\r\n";
        let s = skeleton(msg);
        let r = s.signed.unwrap();
        assert_eq!(r.start, r.end);
        let top = Entity::parse(msg).unwrap();
        assert_eq!(top.parts().unwrap()[0], b"");
    }
}
