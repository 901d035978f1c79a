//! What the gateway needs to know about one certificate.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName, SubjectKeyIdentifier};
use x509_cert::Certificate;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Certificate signature algorithms that are refused wherever they appear.
pub(crate) const WEAK_SIGNATURES: [(&str, &str); 6] = [
    ("1.2.840.113549.1.1.2", "md2WithRSAEncryption"),
    ("1.2.840.113549.1.1.4", "md5WithRSAEncryption"),
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    ("1.2.840.10040.4.3", "dsa-with-sha1"),
    ("1.3.14.3.2.29", "sha1WithRSASignature"),
];

/// A certificate's public key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSA with this modulus size.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
    /// Anything else (unsupported for signing).
    Other,
}

impl std::fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlg::Rsa { bits } => write!(f, "rsa-{bits}"),
            KeyAlg::EcP256 => f.write_str("ecdsa-p256"),
            KeyAlg::EcP384 => f.write_str("ecdsa-p384"),
            KeyAlg::Ed25519 => f.write_str("ed25519"),
            KeyAlg::Other => f.write_str("unsupported"),
        }
    }
}

/// A parsed certificate with the facts verification and reports use.
pub struct CertInfo<'a> {
    /// The certificate as encoded.
    pub der: &'a [u8],
    /// The decoded certificate.
    pub cert: Certificate,
    /// rfc822Name SANs, as written.
    pub emails: Vec<String>,
    /// The public key type.
    pub key: KeyAlg,
    /// Subject key identifier, if present.
    pub ski: Option<Vec<u8>>,
    /// keyUsage allows digitalSignature or nonRepudiation (`None`: no extension).
    pub signing_usage: Option<bool>,
    /// extKeyUsage includes emailProtection (`None`: no extension).
    pub email_protection: Option<bool>,
}

impl<'a> CertInfo<'a> {
    /// Parses a DER certificate.
    pub fn parse(der: &'a [u8]) -> Result<Self, String> {
        let cert =
            Certificate::from_der(der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let tbs = &cert.tbs_certificate;
        let mut emails = Vec::new();
        if let Ok(Some((_, san))) = tbs.get::<SubjectAltName>() {
            for name in san.0 {
                if let GeneralName::Rfc822Name(email) = name {
                    emails.push(email.to_string());
                }
            }
        }
        let ski = match tbs.get::<SubjectKeyIdentifier>() {
            Ok(Some((_, ski))) => Some(ski.0.as_bytes().to_vec()),
            _ => None,
        };
        let signing_usage = match tbs.get::<KeyUsage>() {
            Ok(Some((_, ku))) => Some(ku.digital_signature() || ku.non_repudiation()),
            Ok(None) => None,
            Err(_) => Some(false),
        };
        let email_protection = match tbs.get::<ExtendedKeyUsage>() {
            Ok(Some((_, eku))) => Some(eku.0.contains(&EMAIL_PROTECTION)),
            Ok(None) => None,
            Err(_) => Some(false),
        };
        let key = key_alg(&cert);
        Ok(CertInfo {
            der,
            cert,
            emails,
            key,
            ski,
            signing_usage,
            email_protection,
        })
    }

    /// Subject DN (RFC 4514).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// Issuer DN (RFC 4514).
    pub fn issuer(&self) -> String {
        self.cert.tbs_certificate.issuer.to_string()
    }

    /// Serial number, lower-case hex.
    pub fn serial_hex(&self) -> String {
        hex::encode(self.cert.tbs_certificate.serial_number.as_bytes())
    }

    /// SHA-256 of the DER, lower-case hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, self.der))
    }

    /// Why this certificate uses a refused algorithm, if it does.
    pub fn weakness(&self, min_rsa_bits: usize) -> Option<String> {
        let oid = self.cert.signature_algorithm.oid.to_string();
        if let Some((_, name)) = WEAK_SIGNATURES.iter().find(|(o, _)| *o == oid) {
            return Some(format!(
                "certificate {} is signed with {name}",
                self.subject()
            ));
        }
        match self.key {
            KeyAlg::Rsa { bits } if bits < min_rsa_bits => Some(format!(
                "certificate {} has a {bits}-bit RSA key (minimum {min_rsa_bits})",
                self.subject()
            )),
            _ => None,
        }
    }

    /// Whether this is the certificate a SignerIdentifier names.
    pub fn matches(&self, sid: &cms::signed_data::SignerIdentifier) -> bool {
        use cms::signed_data::SignerIdentifier as Sid;
        match sid {
            Sid::IssuerAndSerialNumber(ias) => {
                let tbs = &self.cert.tbs_certificate;
                ias.serial_number == tbs.serial_number
                    && ias.issuer.to_der().ok() == tbs.issuer.to_der().ok()
            }
            Sid::SubjectKeyIdentifier(ski) => self.ski.as_deref() == Some(ski.0.as_bytes()),
        }
    }
}

fn key_alg(cert: &Certificate) -> KeyAlg {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let oid = spki.algorithm.oid;
    if oid == RSA_ENCRYPTION || oid == RSASSA_PSS {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .and_then(rsa_modulus_bits)
            .unwrap_or(0);
        return KeyAlg::Rsa { bits };
    }
    if oid == ED25519 {
        return KeyAlg::Ed25519;
    }
    if oid == EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return match curve {
            Some(c) if c == P256 => KeyAlg::EcP256,
            Some(c) if c == P384 => KeyAlg::EcP384,
            _ => KeyAlg::Other,
        };
    }
    KeyAlg::Other
}

/// Size in bits of the modulus of a DER RSAPublicKey.
fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<usize> {
    let mut outer = crate::smime::der::Reader::new(rsa_public_key);
    let seq = outer.read().ok()?;
    let modulus = crate::smime::der::Reader::new(seq.value).read().ok()?.value;
    let significant: &[u8] = {
        let skip = modulus.iter().take_while(|&&b| b == 0).count();
        &modulus[skip..]
    };
    let first = *significant.first()?;
    Some(significant.len() * 8 - first.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_ignore_sign_byte() {
        // SEQUENCE { INTEGER 0x00 0x80 0x01, INTEGER 3 }
        let key = [0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&key), Some(16));
    }
}
