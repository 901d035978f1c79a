//! S/MIME: the MIME shape of a signed message, its CMS SignedData, and the
//! digest and signature checks of each SignerInfo.

pub mod check;
pub mod cms;
pub mod decrypt;
pub mod mime;
pub mod sign;
pub mod signature;
pub mod skeleton;
pub mod tsa;

use std::fmt;

use base64::Engine;

use crate::reason::Reason;
use mime::{Entity, MimeError};

/// How the signature is attached (RFC 8551 §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `multipart/signed`: clear-signed content plus a detached signature.
    Detached,
    /// `application/pkcs7-mime; smime-type=signed-data`: content inside CMS.
    Opaque,
}

/// The signature container of a message, ready for [`cms::parse`].
pub struct Envelope<'a> {
    /// Detached or opaque.
    pub form: Form,
    /// The signed MIME entity of a detached signature, as transmitted.
    pub detached_content: Option<&'a [u8]>,
    /// The CMS ContentInfo, normalised to DER.
    pub cms_der: Vec<u8>,
    /// Of a detached signature, the multipart/signed body's preamble and
    /// epilogue: text no signature covers (empty for an opaque one).
    pub outside: (&'a [u8], &'a [u8]),
    /// Of a detached signature, the parts of the multipart/signed body and
    /// the signature part parsed: the depth check need not do it again.
    pub parsed: Option<(Vec<&'a [u8]>, Entity<'a>)>,
}

/// Which unsigned text of a multipart/signed body holds more than white
/// space and the customary notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnsignedText {
    /// Before the first boundary.
    Preamble,
    /// After the closing boundary.
    Epilogue,
}

impl fmt::Display for UnsignedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnsignedText::Preamble => "text before the first boundary of multipart/signed",
            UnsignedText::Epilogue => "text after the closing boundary of multipart/signed",
        })
    }
}

/// The notices signing tools put in the preamble for readers without MIME
/// (OpenSSL, emla, s-nail, Thunderbird, Outlook), after "This is a" or
/// "This is an", with or without a final period: harmless if a client
/// shows them.
const NOTICES: [&str; 4] = [
    "s/mime signed message",
    "cryptographically signed message in mime format",
    "multi-part message in mime format",
    "multipart message in mime format",
];

/// Whether `text` (trimmed) is one of the [`NOTICES`].
fn is_notice(text: &[u8]) -> bool {
    let t = text.strip_suffix(b".").unwrap_or(text).to_ascii_lowercase();
    let Some(rest) = t
        .strip_prefix(b"this is an ")
        .or_else(|| t.strip_prefix(b"this is a "))
    else {
        return false;
    };
    NOTICES.iter().any(|n| rest == n.as_bytes())
}

impl Envelope<'_> {
    /// The first piece of unsigned text that is neither white space nor a
    /// customary notice, with its content (trimmed).
    pub fn unsigned_text(&self) -> Option<(UnsignedText, &[u8])> {
        let (preamble, epilogue) = self.outside;
        let preamble = preamble.trim_ascii();
        let epilogue = epilogue.trim_ascii();
        if !preamble.is_empty() && !is_notice(preamble) {
            return Some((UnsignedText::Preamble, preamble));
        }
        (!epilogue.is_empty()).then_some((UnsignedText::Epilogue, epilogue))
    }
}

/// Why a message offers no usable S/MIME signature.
#[derive(Debug, PartialEq, Eq)]
pub enum ExtractError {
    /// `multipart/signed` with another protocol (PGP, …); lower-cased.
    OtherProtocol(String),
    /// `application/pkcs7-mime` holding enveloped (encrypted) data only.
    EncryptedOnly,
    /// `application/pkcs7-mime` with another smime-type (lower-cased).
    NoSignatureType(String),
    /// A Content-Type that carries no S/MIME signature.
    NotSmime(String),
    /// The MIME structure of the signature container is broken.
    Mime(MimeError),
    /// `multipart/signed` without exactly two parts: how many it has.
    PartCount(usize),
    /// The second part of `multipart/signed` has this Content-Type.
    SignaturePartType(String),
    /// The CMS part has an unusable Content-Transfer-Encoding.
    TransferEncoding(String),
    /// The base64 of the CMS part does not decode.
    Base64(base64::DecodeError),
    /// The CMS part is BER that cannot be normalised to DER.
    Encoding(crate::asn1::Asn1Error),
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::OtherProtocol(p) => {
                write!(f, "multipart/signed with protocol {p} is not S/MIME")
            }
            ExtractError::EncryptedOnly => f.write_str("the message is encrypted but not signed"),
            ExtractError::NoSignatureType(t) => write!(
                f,
                "application/pkcs7-mime with smime-type={t} carries no signature"
            ),
            ExtractError::NotSmime(ct) => {
                write!(f, "Content-Type {ct} is not an S/MIME signed message")
            }
            ExtractError::Mime(e) => e.fmt(f),
            ExtractError::PartCount(n) => {
                write!(f, "multipart/signed has {n} parts, expected 2")
            }
            ExtractError::SignaturePartType(ct) => write!(
                f,
                "the second part of multipart/signed is {ct}, expected application/pkcs7-signature"
            ),
            ExtractError::TransferEncoding(cte) => {
                write!(f, "CMS part with Content-Transfer-Encoding {cte}")
            }
            ExtractError::Base64(e) => write!(f, "base64 of the CMS part: {e}"),
            ExtractError::Encoding(e) => write!(f, "CMS encoding: {e}"),
        }
    }
}

impl std::error::Error for ExtractError {}

impl From<MimeError> for ExtractError {
    fn from(e: MimeError) -> Self {
        ExtractError::Mime(e)
    }
}

impl From<&ExtractError> for Reason {
    fn from(e: &ExtractError) -> Reason {
        match e {
            ExtractError::OtherProtocol(_)
            | ExtractError::EncryptedOnly
            | ExtractError::NoSignatureType(_)
            | ExtractError::NotSmime(_) => Reason::Unsigned,
            ExtractError::Mime(e) => Reason::from(e),
            ExtractError::PartCount(_)
            | ExtractError::SignaturePartType(_)
            | ExtractError::TransferEncoding(_)
            | ExtractError::Base64(_)
            | ExtractError::Encoding(_) => Reason::Malformed,
        }
    }
}

const SIGNATURE_TYPES: [&str; 2] = [
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
];
const MIME_TYPES: [&str; 2] = ["application/pkcs7-mime", "application/x-pkcs7-mime"];

/// Finds the outermost S/MIME signature of a message whose top-level
/// entity is `top`.
pub fn extract<'a>(top: &Entity<'a>) -> Result<Envelope<'a>, ExtractError> {
    let ct = top.content_type.as_str();
    if ct == "multipart/signed" {
        let protocol = top.param("protocol").map(|p| p.to_ascii_lowercase());
        if let Some(p) = &protocol {
            if !SIGNATURE_TYPES.contains(&p.as_str()) {
                return Err(ExtractError::OtherProtocol(p.clone()));
            }
        }
        let body = top.multipart()?;
        let [content, signature] = body.parts.as_slice() else {
            return Err(ExtractError::PartCount(body.parts.len()));
        };
        let (content, signature) = (*content, *signature);
        let sig = Entity::parse(signature)?;
        if !SIGNATURE_TYPES.contains(&sig.content_type.as_str()) {
            return Err(ExtractError::SignaturePartType(sig.content_type));
        }
        let cms_der = decode_cms(&sig)?;
        return Ok(Envelope {
            form: Form::Detached,
            detached_content: Some(content),
            cms_der,
            outside: (body.preamble, body.epilogue),
            parsed: Some((body.parts, sig)),
        });
    }
    if MIME_TYPES.contains(&ct) {
        let smime_type = top.param("smime-type").map(|s| s.to_ascii_lowercase());
        match smime_type.as_deref() {
            Some("signed-data") | None => {}
            Some("enveloped-data" | "authenveloped-data") => {
                return Err(ExtractError::EncryptedOnly)
            }
            Some(other) => return Err(ExtractError::NoSignatureType(other.to_string())),
        }
        let cms_der = decode_cms(top)?;
        return Ok(Envelope {
            form: Form::Opaque,
            detached_content: None,
            cms_der,
            outside: (b"", b""),
            parsed: None,
        });
    }
    Err(ExtractError::NotSmime(ct.to_string()))
}

/// Decodes the body of an entity holding CMS, normalising BER to DER.
fn decode_cms(entity: &Entity<'_>) -> Result<Vec<u8>, ExtractError> {
    let raw = match entity.transfer_encoding.as_deref() {
        Some("base64") => decode_base64(entity.body())?,
        None | Some("binary" | "8bit" | "7bit") => entity.body().to_vec(),
        Some(other) => return Err(ExtractError::TransferEncoding(other.to_string())),
    };
    if crate::asn1::needs_normalising(&raw) {
        crate::asn1::to_der(&raw).map_err(ExtractError::Encoding)
    } else {
        Ok(raw)
    }
}

/// Decodes MIME base64 (line breaks, spaces and tabs ignored; no other
/// character, as OpenSSL's decoder refuses a form feed) in bounded chunks,
/// so memory stays at the decoded size.
fn decode_base64(body: &[u8]) -> Result<Vec<u8>, ExtractError> {
    const CHUNK: usize = 64 * 1024;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let mut chunk = Vec::with_capacity(CHUNK.min(body.len()));
    // Whole runs between white space are copied, not byte by byte.
    let tabs = memchr::memchr(b'\t', body).is_some();
    let mut rest = body;
    while !rest.is_empty() {
        let mut end = memchr::memchr3(b'\r', b'\n', b' ', rest).unwrap_or(rest.len());
        if tabs {
            end = memchr::memchr(b'\t', &rest[..end]).unwrap_or(end);
        }
        let mut run = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        while !run.is_empty() {
            let take = (CHUNK - chunk.len()).min(run.len());
            chunk.extend_from_slice(&run[..take]);
            run = &run[take..];
            if chunk.len() == CHUNK {
                engine
                    .decode_vec(&chunk, &mut out)
                    .map_err(ExtractError::Base64)?;
                chunk.clear();
            }
        }
    }
    engine
        .decode_vec(&chunk, &mut out)
        .map_err(ExtractError::Base64)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_ignores_line_breaks_across_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: Vec<u8> = encoded
            .as_bytes()
            .chunks(76)
            .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
            .collect();
        assert_eq!(decode_base64(&wrapped).unwrap(), data);
        assert!(decode_base64(b"@@@@").is_err());
        assert_eq!(decode_base64(b"QU \tJD\r\n").unwrap(), b"ABC");
        assert!(decode_base64(b"QU\x0cJD").is_err());
    }

    #[test]
    fn classifies_unsigned_and_pgp() {
        let plain = Entity::parse(b"Content-Type: text/plain\r\n\r\nhi\r\n").unwrap();
        let reason = |e: Result<Envelope<'_>, ExtractError>| Reason::from(&e.err().unwrap());
        assert_eq!(reason(extract(&plain)), Reason::Unsigned);
        let pgp = Entity::parse(
            b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x\r\n\r\nb\r\n--x--\r\n",
        )
        .unwrap();
        assert_eq!(reason(extract(&pgp)), Reason::Unsigned);
        let enc = Entity::parse(
            b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAAAA\r\n",
        )
        .unwrap();
        assert_eq!(reason(extract(&enc)), Reason::Unsigned);
    }

    #[test]
    fn unsigned_text_beyond_the_notice_is_found() {
        let signed = |pre: &str, post: &str| {
            format!(
                "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n\
                 {pre}--b\r\n\r\nsigned\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nMAA=\r\n--b--\r\n{post}"
            )
        };
        let found = |pre: &str, post: &str| {
            let raw = signed(pre, post);
            let top = Entity::parse(raw.as_bytes()).unwrap();
            let env = extract(&top).unwrap();
            env.unsigned_text()
                .map(|(w, t)| (w, String::from_utf8_lossy(t).into_owned()))
        };
        assert_eq!(found("", ""), None);
        assert_eq!(
            found("This is an S/MIME signed message\r\n\r\n", "\r\n \t\r\n"),
            None
        );
        assert_eq!(found("This is an S/MIME signed message.\r\n", ""), None);
        assert!(found("This is an S/MIME signed message..\r\n", "").is_some());
        assert_eq!(found("This is a S/MIME signed message.\r\n", ""), None);
        assert!(found("This is a S/MIME signed message, pay X.\r\n", "").is_some());
        assert_eq!(
            found(
                "This is a cryptographically signed message in MIME format.\r\n\r\n",
                ""
            ),
            None
        );
        assert_eq!(
            found("Pay 1000 EUR to X\r\n", ""),
            Some((UnsignedText::Preamble, "Pay 1000 EUR to X".into()))
        );
        assert_eq!(
            found("", "Unsigned postscript\r\n"),
            Some((UnsignedText::Epilogue, "Unsigned postscript".into()))
        );
    }

    /// One row per variant: the reason code `verify` reports for it.
    #[test]
    fn every_extract_error_has_its_reason() {
        use base64::Engine as _;
        let s = || "x".to_string();
        let b64 = base64::engine::general_purpose::STANDARD
            .decode("@")
            .unwrap_err();
        let ber = crate::asn1::Asn1Error("x");
        let table = [
            (ExtractError::OtherProtocol(s()), Reason::Unsigned),
            (ExtractError::EncryptedOnly, Reason::Unsigned),
            (ExtractError::NoSignatureType(s()), Reason::Unsigned),
            (ExtractError::NotSmime(s()), Reason::Unsigned),
            (ExtractError::Mime(MimeError::Header), Reason::Malformed),
            (
                ExtractError::Mime(MimeError::TooDeep { limit: 1 }),
                Reason::TooDeep,
            ),
            (ExtractError::PartCount(3), Reason::Malformed),
            (ExtractError::SignaturePartType(s()), Reason::Malformed),
            (ExtractError::TransferEncoding(s()), Reason::Malformed),
            (ExtractError::Base64(b64), Reason::Malformed),
            (ExtractError::Encoding(ber), Reason::Malformed),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
    }
}
