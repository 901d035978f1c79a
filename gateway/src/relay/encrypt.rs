//! S/MIME encryption of relayed mail (`encrypt` of the recipients'
//! authority): the stored message, byte for byte as received and signed,
//! becomes the content of an EnvelopedData (AES-256-CBC) or
//! AuthEnvelopedData (AES-256-GCM) to every valid encryption certificate of
//! that authority, so the counterpart decrypts exactly the signed message
//! the sender made. Done with OpenSSL's CMS, the implementation the
//! counterparts' own tools decrypt with.

use crate::policy::{ContentCipher, EncryptMode, Encryption};
use crate::store::{AttemptEncryption as Report, ClearReason as Clear};
use base64::Engine;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::X509;

/// Header fields of the original carried onto the encrypted message, so
/// the counterpart's mail system files and threads it as before.
const CARRIED: [&str; 9] = [
    "from",
    "to",
    "cc",
    "date",
    "subject",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
];

/// What is sent for one delivery.
pub enum Prepared {
    /// The stored message itself.
    Clear(Option<Clear>),
    /// The stored message encrypted.
    Encrypted {
        /// The message to send.
        message: Vec<u8>,
        /// What was done, for the audit record.
        report: Report,
    },
    /// Nothing may be sent now (`encrypt = "always"` without a usable
    /// certificate, or the encryption failed): the delivery is deferred.
    Defer(String),
}

impl Prepared {
    /// The audit report of a message that is sent.
    pub fn report(&self) -> Option<Report> {
        match self {
            Prepared::Clear(None) | Prepared::Defer(_) => None,
            Prepared::Clear(Some(why)) => Some(Report {
                clear: Some(*why),
                ..Report::default()
            }),
            Prepared::Encrypted { report, .. } => Some(report.clone()),
        }
    }
}

/// What to send of `message` to an authority encrypting as `enc`, at
/// `now` (seconds since the epoch).
pub fn prepare(enc: &Encryption, message: &[u8], now: u64) -> Prepared {
    if enc.mode == EncryptMode::Never {
        return Prepared::Clear(None);
    }
    let valid: Vec<_> = enc
        .certificates
        .iter()
        .filter(|c| c.valid_at(now))
        .collect();
    if valid.is_empty() {
        return match enc.mode {
            EncryptMode::Always => Prepared::Defer(format!(
                "encrypt = \"always\" and no encryption certificate is valid now ({} configured); not sent in clear",
                enc.certificates.len()
            )),
            _ => Prepared::Clear(Some(Clear::NoValidCertificate)),
        };
    }
    let ders: Vec<&[u8]> = valid.iter().map(|c| c.der.as_ref()).collect();
    match wrap(message, &ders, enc.cipher) {
        Ok(message) => Prepared::Encrypted {
            message,
            report: Report {
                encrypted: true,
                cipher: Some(enc.cipher.name().to_string()),
                certificates: valid.iter().map(|c| c.sha256.clone()).collect(),
                clear: None,
            },
        },
        Err(e) => Prepared::Defer(format!("cannot encrypt the message: {e}")),
    }
}

/// `message` as the content of an S/MIME encrypted message to the
/// certificates `ders`: the carried header fields, then an
/// `application/pkcs7-mime` entity holding the CMS in base64.
pub fn wrap(
    message: &[u8],
    ders: &[&[u8]],
    cipher: ContentCipher,
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut certs = Stack::new()?;
    for der in ders {
        certs.push(X509::from_der(der)?)?;
    }
    let (ossl, smime_type) = match cipher {
        ContentCipher::Aes256Cbc => (Cipher::aes_256_cbc(), "enveloped-data"),
        ContentCipher::Aes256Gcm => (Cipher::aes_256_gcm(), "authEnveloped-data"),
    };
    // BINARY: the signed bytes go in as they are (no text canonicalisation).
    let cms = CmsContentInfo::encrypt(&certs, message, ossl, CMSOptions::BINARY)?;
    let der = cms.to_der()?;
    let mut out = carried_fields(message);
    out.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
             Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
        )
        .as_bytes(),
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    for line in b64.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The [`CARRIED`] fields of `message`'s header, raw (folding kept), each
/// ending with CRLF.
fn carried_fields(message: &[u8]) -> Vec<u8> {
    let header = &message[..crate::smime::mime::header_len(message)];
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.is_empty() {
            break;
        }
        if !matches!(body[0], b' ' | b'\t') {
            let name = body.split(|&b| b == b':').next().unwrap_or_default();
            keep = body.contains(&b':')
                && CARRIED
                    .iter()
                    .any(|c| c.as_bytes().eq_ignore_ascii_case(name.trim_ascii_end()));
        }
        if keep {
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_addressing_fields_with_their_folding() {
        let m = b"Received: from x\r\n\tby y\r\nFrom: a@x.example\r\nSubject: one\r\n two\r\nX-Secret: no\r\nContent-Type: text/plain\r\n\r\nFrom: body\r\n";
        assert_eq!(
            carried_fields(m),
            b"From: a@x.example\r\nSubject: one\r\n two\r\n".to_vec()
        );
    }

    #[test]
    fn never_and_missing_certificates() {
        let mut enc = Encryption::default();
        assert!(matches!(prepare(&enc, b"x", 0), Prepared::Clear(None)));
        enc.mode = EncryptMode::WhenCertificate;
        assert!(matches!(
            prepare(&enc, b"x", 0),
            Prepared::Clear(Some(Clear::NoValidCertificate))
        ));
        enc.mode = EncryptMode::Always;
        match prepare(&enc, b"x", 0) {
            Prepared::Defer(why) => assert!(why.contains("not sent in clear"), "{why}"),
            _ => panic!("always without a certificate must defer"),
        }
    }
}
