//! S/MIME: the MIME shape of a signed message, its CMS SignedData, and the
//! digest and signature checks of each SignerInfo.

pub mod cms;
pub mod mime;
pub mod sign;
pub mod signature;

use base64::Engine;

use mime::Entity;

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
}

/// Why a message offers no usable S/MIME signature.
#[derive(Debug, PartialEq, Eq)]
pub enum ExtractError {
    /// No S/MIME signature at all.
    Unsigned(String),
    /// The signature container is broken.
    Malformed(String),
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
                return Err(ExtractError::Unsigned(format!(
                    "multipart/signed with protocol {p} is not S/MIME"
                )));
            }
        }
        let parts = top.parts().map_err(ExtractError::Malformed)?;
        let [content, signature] = parts.as_slice() else {
            return Err(ExtractError::Malformed(format!(
                "multipart/signed has {} parts, expected 2",
                parts.len()
            )));
        };
        let sig = Entity::parse(signature).map_err(ExtractError::Malformed)?;
        if !SIGNATURE_TYPES.contains(&sig.content_type.as_str()) {
            return Err(ExtractError::Malformed(format!(
                "the second part of multipart/signed is {}, expected application/pkcs7-signature",
                sig.content_type
            )));
        }
        let cms_der = decode_cms(&sig)?;
        return Ok(Envelope {
            form: Form::Detached,
            detached_content: Some(content),
            cms_der,
        });
    }
    if MIME_TYPES.contains(&ct) {
        let smime_type = top.param("smime-type").map(|s| s.to_ascii_lowercase());
        match smime_type.as_deref() {
            Some("signed-data") | None => {}
            Some("enveloped-data" | "authenveloped-data") => {
                return Err(ExtractError::Unsigned(
                    "the message is encrypted but not signed".into(),
                ))
            }
            Some(other) => {
                return Err(ExtractError::Unsigned(format!(
                    "application/pkcs7-mime with smime-type={other} carries no signature"
                )))
            }
        }
        let cms_der = decode_cms(top)?;
        return Ok(Envelope {
            form: Form::Opaque,
            detached_content: None,
            cms_der,
        });
    }
    Err(ExtractError::Unsigned(format!(
        "Content-Type {ct} is not an S/MIME signed message"
    )))
}

/// Decodes the body of an entity holding CMS, normalising BER to DER.
fn decode_cms(entity: &Entity<'_>) -> Result<Vec<u8>, ExtractError> {
    let raw = match entity.transfer_encoding.as_deref() {
        Some("base64") => decode_base64(entity.body())?,
        None | Some("binary" | "8bit" | "7bit") => entity.body().to_vec(),
        Some(other) => {
            return Err(ExtractError::Malformed(format!(
                "CMS part with Content-Transfer-Encoding {other}"
            )))
        }
    };
    if crate::asn1::needs_normalising(&raw) {
        crate::asn1::to_der(&raw).map_err(|e| ExtractError::Malformed(format!("CMS encoding: {e}")))
    } else {
        Ok(raw)
    }
}

/// Decodes MIME base64 (line breaks and blanks ignored) in bounded chunks,
/// so memory stays at the decoded size.
fn decode_base64(body: &[u8]) -> Result<Vec<u8>, ExtractError> {
    const CHUNK: usize = 64 * 1024;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let mut chunk = Vec::with_capacity(CHUNK);
    for &b in body {
        if b.is_ascii_whitespace() {
            continue;
        }
        chunk.push(b);
        if chunk.len() == CHUNK {
            engine
                .decode_vec(&chunk, &mut out)
                .map_err(|e| ExtractError::Malformed(format!("base64 of the CMS part: {e}")))?;
            chunk.clear();
        }
    }
    engine
        .decode_vec(&chunk, &mut out)
        .map_err(|e| ExtractError::Malformed(format!("base64 of the CMS part: {e}")))?;
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
    }

    #[test]
    fn classifies_unsigned_and_pgp() {
        let plain = Entity::parse(b"Content-Type: text/plain\r\n\r\nhi\r\n").unwrap();
        assert!(matches!(extract(&plain), Err(ExtractError::Unsigned(_))));
        let pgp = Entity::parse(
            b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x\r\n\r\nb\r\n--x--\r\n",
        )
        .unwrap();
        assert!(matches!(extract(&pgp), Err(ExtractError::Unsigned(_))));
        let enc = Entity::parse(
            b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nAAAA\r\n",
        )
        .unwrap();
        assert!(matches!(extract(&enc), Err(ExtractError::Unsigned(_))));
    }
}
