//! What the gateway needs to know about one certificate.

use std::sync::{Arc, LazyLock, Mutex};

use super::memo::Generations;
use super::TrustError;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use ring::digest;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName, SubjectKeyIdentifier};
use x509_cert::Certificate;

/// A certificate that is not a DER X.509 certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertError(pub der::Error);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unparsable certificate: {}", self.0)
    }
}

impl std::error::Error for CertError {}

/// For callers that still collect errors as sentences (the audit
/// checkpoint verifier).
impl From<CertError> for String {
    fn from(e: CertError) -> String {
        e.to_string()
    }
}

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
const ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// A digest algorithm a signature may use and the policy may allow. MD5
/// and SHA-1 are not representable: they are always refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlg {
    /// Lower-case name, e.g. `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Sha384 => "sha384",
            DigestAlg::Sha512 => "sha512",
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        self.ring().output_len()
    }

    /// The `ring` digest.
    pub(crate) fn ring(self) -> &'static digest::Algorithm {
        match self {
            DigestAlg::Sha256 => &digest::SHA256,
            DigestAlg::Sha384 => &digest::SHA384,
            DigestAlg::Sha512 => &digest::SHA512,
        }
    }
}

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
    /// RSA (rsaEncryption key) with this modulus size.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// RSA restricted to RSASSA-PSS signatures (id-RSASSA-PSS key).
    RsaPss {
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
            KeyAlg::RsaPss { bits } => write!(f, "rsa-pss-{bits}"),
            KeyAlg::EcP256 => f.write_str("ecdsa-p256"),
            KeyAlg::EcP384 => f.write_str("ecdsa-p384"),
            KeyAlg::Ed25519 => f.write_str("ed25519"),
            KeyAlg::Other => f.write_str("unsupported"),
        }
    }
}

/// What verification and reports use of one certificate, parsed once per
/// DER encoding: every message of an authority carries the same few
/// certificates, and decoding one is a good part of a message's cost.
pub struct CertFacts {
    /// The certificate as encoded.
    pub der: Vec<u8>,
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
    /// extKeyUsage includes anyExtendedKeyUsage (false without the extension).
    pub any_eku: bool,
    /// The contents of the SubjectPublicKeyInfo's AlgorithmIdentifier
    /// (OID and parameters), as encoded.
    pub spki_alg: Vec<u8>,
    /// SHA-256 of the DER.
    pub sha256: [u8; 32],
    /// DER of the subject Name (`None`: it does not re-encode).
    pub subject_der: Option<Vec<u8>>,
    /// DER of the issuer Name (`None`: it does not re-encode).
    pub issuer_der: Option<Vec<u8>>,
    /// DER of the SubjectPublicKeyInfo (empty if it does not re-encode).
    pub spki_der: Vec<u8>,
    /// No keyUsage, an unreadable one, or one allowing cRLSign: what
    /// [`super::revocation::Crl::signed_by_cert`] accepts.
    pub crl_sign: bool,
    /// notBefore and notAfter, Unix seconds.
    pub validity: (u64, u64),
    /// The name of its refused signature algorithm, if it has one.
    weak_signature: Option<&'static str>,
    /// Whether webpki reads it as an end-entity certificate.
    pub webpki_parses: bool,
    subject: String,
    issuer: String,
    serial_hex: String,
    sha256_hex: String,
}

/// A parsed certificate with the facts verification and reports use
/// ([`CertFacts`], shared by every parse of the same DER).
pub struct CertInfo<'a> {
    /// The certificate as encoded.
    pub der: &'a [u8],
    facts: Arc<CertFacts>,
}

impl std::ops::Deref for CertInfo<'_> {
    type Target = CertFacts;

    fn deref(&self) -> &CertFacts {
        &self.facts
    }
}

/// Facts remembered per generation; two generations are kept.
const FACTS_GENERATION: usize = 1024;

/// Facts by [`facts_key`]; a hit counts only if its DER is the same.
type FactsMemo = Generations<(usize, [u8; 32]), Arc<CertFacts>>;

static FACTS: LazyLock<Mutex<FactsMemo>> =
    LazyLock::new(|| Mutex::new(Generations::new(FACTS_GENERATION)));

/// Where facts are looked up: the length and the last 32 bytes (within the
/// signature, so they differ between certificates); cheaper than hashing
/// the whole DER, which a hit compares anyway.
fn facts_key(der: &[u8]) -> (usize, [u8; 32]) {
    let mut tail = [0u8; 32];
    let n = der.len().min(32);
    tail[..n].copy_from_slice(&der[der.len() - n..]);
    (der.len(), tail)
}

impl<'a> CertInfo<'a> {
    /// Parses a DER certificate (or finds it parsed already: the facts are
    /// a function of the bytes alone; only successes are remembered).
    pub fn parse(der: &'a [u8]) -> Result<Self, CertError> {
        let key = facts_key(der);
        let cached = FACTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|f| f.der == der);
        let facts = match cached {
            Some(f) => f,
            None => {
                let sha256 = digest::digest(&digest::SHA256, der)
                    .as_ref()
                    .try_into()
                    .expect("SHA-256 is 32 bytes");
                let f = Arc::new(CertFacts::parse(der, sha256)?);
                FACTS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, f.clone());
                f
            }
        };
        Ok(CertInfo { der, facts })
    }

    /// The shared facts.
    pub fn facts(&self) -> &Arc<CertFacts> {
        &self.facts
    }
}

impl CertFacts {
    fn parse(der: &[u8], sha256: [u8; 32]) -> Result<Self, CertError> {
        let cert = Certificate::from_der(der).map_err(CertError)?;
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
        let key_usage = tbs.get::<KeyUsage>();
        let signing_usage = match &key_usage {
            Ok(Some((_, ku))) => Some(ku.digital_signature() || ku.non_repudiation()),
            Ok(None) => None,
            Err(_) => Some(false),
        };
        let crl_sign = match &key_usage {
            Ok(Some((_, ku))) => ku.crl_sign(),
            _ => true,
        };
        let (email_protection, any_eku) = match tbs.get::<ExtendedKeyUsage>() {
            Ok(Some((_, eku))) => (
                Some(eku.0.contains(&EMAIL_PROTECTION)),
                eku.0.contains(&ANY_EKU),
            ),
            Ok(None) => (None, false),
            Err(_) => (Some(false), false),
        };
        let key = key_alg(&cert);
        let spki_alg = alg_id_contents(&tbs.subject_public_key_info.algorithm);
        let validity = (
            tbs.validity.not_before.to_unix_duration().as_secs(),
            tbs.validity.not_after.to_unix_duration().as_secs(),
        );
        let oid = cert.signature_algorithm.oid.to_string();
        let weak_signature = WEAK_SIGNATURES
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, name)| *name);
        let webpki_parses = {
            let der = rustls_pki_types::CertificateDer::from(der);
            webpki::EndEntityCert::try_from(&der).is_ok()
        };
        Ok(CertFacts {
            webpki_parses,
            weak_signature,
            der: der.to_vec(),
            subject_der: tbs.subject.to_der().ok(),
            issuer_der: tbs.issuer.to_der().ok(),
            spki_der: tbs.subject_public_key_info.to_der().unwrap_or_default(),
            subject: dn(&tbs.subject),
            issuer: dn(&tbs.issuer),
            serial_hex: hex::encode(tbs.serial_number.as_bytes()),
            sha256_hex: hex::encode(sha256),
            crl_sign,
            validity,
            sha256,
            emails,
            key,
            ski,
            signing_usage,
            email_protection,
            any_eku,
            spki_alg,
            cert,
        })
    }

    /// Subject DN (RFC 4514).
    pub fn subject(&self) -> String {
        self.subject.clone()
    }

    /// Issuer DN (RFC 4514).
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// Subject DN (RFC 4514), borrowed.
    pub fn subject_str(&self) -> &str {
        &self.subject
    }

    /// Issuer DN (RFC 4514), borrowed.
    pub fn issuer_str(&self) -> &str {
        &self.issuer
    }

    /// Serial number, lower-case hex.
    pub fn serial_hex(&self) -> String {
        self.serial_hex.clone()
    }

    /// SHA-256 of the DER, lower-case hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256_hex.clone()
    }

    /// Why this certificate uses a refused algorithm, if it does.
    pub fn weakness(&self, min_rsa_bits: usize) -> Option<TrustError> {
        if let Some(name) = self.weak_signature {
            return Some(TrustError::WeakCertSignature {
                subject: self.subject(),
                algorithm: name,
            });
        }
        match self.key {
            KeyAlg::Rsa { bits } | KeyAlg::RsaPss { bits } if bits < min_rsa_bits => {
                Some(TrustError::ShortRsaKey {
                    subject: self.subject(),
                    bits,
                    min: min_rsa_bits,
                })
            }
            _ => None,
        }
    }

    /// Whether this is the certificate a SignerIdentifier names.
    pub fn matches(&self, sid: &cms::signed_data::SignerIdentifier) -> bool {
        use cms::signed_data::SignerIdentifier as Sid;
        match sid {
            Sid::IssuerAndSerialNumber(ias) => {
                // Equal names encode equally: the encoding is needed only
                // to tell apart names that differ as decoded.
                ias.serial_number == self.cert.tbs_certificate.serial_number
                    && (ias.issuer == self.cert.tbs_certificate.issuer
                        || ias.issuer.to_der().ok() == self.issuer_der)
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
        return if oid == RSASSA_PSS {
            KeyAlg::RsaPss { bits }
        } else {
            KeyAlg::Rsa { bits }
        };
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

/// The contents (OID, then parameters) of an AlgorithmIdentifier as encoded.
fn alg_id_contents(ai: &x509_cert::spki::AlgorithmIdentifierOwned) -> Vec<u8> {
    let der = ai.to_der().unwrap_or_default();
    crate::asn1::Reader::new(&der)
        .read()
        .map(|t| t.value.to_vec())
        .unwrap_or_default()
}

/// Names of the signature, key and digest algorithms the gateway reports.
const ALGORITHM_NAMES: &[(&str, &str)] = &[
    ("1.2.840.113549.1.1.1", "RSA (rsaEncryption)"),
    ("1.2.840.113549.1.1.2", "md2WithRSAEncryption"),
    ("1.2.840.113549.1.1.4", "md5WithRSAEncryption"),
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
    ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
    ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
    ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
    ("1.2.840.10045.2.1", "ECDSA (ecPublicKey)"),
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
    ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
    ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512"),
    ("1.2.840.10040.4.3", "dsa-with-sha1"),
    ("1.3.14.3.2.29", "sha1WithRSASignature"),
    ("1.3.101.112", "Ed25519"),
    ("1.3.101.113", "Ed448"),
    ("1.3.6.1.5.5.7.3.1", "serverAuth"),
    ("1.3.6.1.5.5.7.3.2", "clientAuth"),
    ("1.3.6.1.5.5.7.3.3", "codeSigning"),
    ("1.3.6.1.5.5.7.3.4", "emailProtection"),
    ("1.3.6.1.5.5.7.3.8", "timeStamping"),
    ("1.3.6.1.5.5.7.3.9", "OCSPSigning"),
    ("2.5.29.37.0", "anyExtendedKeyUsage"),
];

/// A readable name for an object identifier (dotted form), e.g.
/// `ecdsa-with-SHA256 (1.2.840.10045.4.3.2)`.
pub fn oid_name(dotted: &str) -> String {
    match ALGORITHM_NAMES.iter().find(|(o, _)| *o == dotted) {
        Some((_, name)) => format!("{name} ({dotted})"),
        None => format!("algorithm {dotted}"),
    }
}

/// A readable name for the contents of an AlgorithmIdentifier (OID, then
/// parameters): `ecdsa-with-SHA256 (1.2.840.10045.4.3.2)`; RSASSA-PSS and
/// EC keys name their hash or curve.
pub fn algorithm_name(contents: &[u8]) -> String {
    let mut r = crate::asn1::Reader::new(contents);
    let Ok(tlv) = r.expect(0x06, "OID") else {
        return "an unparsable algorithm identifier".to_string();
    };
    let Ok(oid) = ObjectIdentifier::from_der(tlv.raw) else {
        return "an unparsable algorithm identifier".to_string();
    };
    let base = oid_name(&oid.to_string());
    if oid == RSASSA_PSS {
        use super::pss::{key_params, KeyParams};
        // Signature identifiers carry the same parameters as restricted keys.
        let params = match key_params(contents) {
            KeyParams::Any => "without parameters".to_string(),
            KeyParams::Only(h) => format!("with {} parameters", h.name()),
            KeyParams::Unsupported => "with parameters the gateway does not support".to_string(),
        };
        return format!("{base} {params}");
    }
    if oid == EC_PUBLIC_KEY {
        let curve = r
            .read()
            .ok()
            .and_then(|t| ObjectIdentifier::from_der(t.raw).ok());
        return match curve {
            Some(c) if c == P256 => format!("{base} on P-256"),
            Some(c) if c == P384 => format!("{base} on P-384"),
            Some(c) => format!("{base} on curve {c}"),
            None => base,
        };
    }
    base
}

/// Size in bits of the modulus of a DER RSAPublicKey.
fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<usize> {
    let mut outer = crate::asn1::Reader::new(rsa_public_key);
    let seq = outer.read().ok()?;
    let modulus = crate::asn1::Reader::new(seq.value).read().ok()?.value;
    let significant: &[u8] = {
        let skip = modulus.iter().take_while(|&&b| b == 0).count();
        &modulus[skip..]
    };
    let first = *significant.first()?;
    Some(significant.len() * 8 - first.leading_zeros() as usize)
}

/// A Name as RFC 4514 text, exactly as x509-cert's `Display` writes it,
/// but with the attribute names remembered: `Display` searches the whole
/// OID database for every attribute, which made naming the certificates of
/// one path a tenth of a message's verification.
pub fn dn(name: &x509_cert::name::Name) -> String {
    let mut s = String::new();
    for (i, rdn) in name.0.iter().rev().enumerate() {
        if i > 0 {
            s.push(',');
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                s.push('+');
            }
            write_atv(&mut s, atv);
        }
    }
    s
}

fn write_atv(s: &mut String, atv: &x509_cert::attr::AttributeTypeAndValue) {
    use der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
    use der::{Tag, Tagged};
    use std::fmt::Write;
    let value = match atv.value.tag() {
        Tag::PrintableString => PrintableStringRef::try_from(&atv.value)
            .ok()
            .map(|v| v.as_str()),
        Tag::Utf8String => Utf8StringRef::try_from(&atv.value).ok().map(|v| v.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(&atv.value).ok().map(|v| v.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(&atv.value)
            .ok()
            .map(|v| v.as_str()),
        _ => None,
    };
    let (Some(key), Some(value)) = (attribute_name(&atv.oid), value) else {
        let _ = write!(s, "{atv}");
        return;
    };
    s.push_str(&key);
    s.push('=');
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' if i == 0 => s.push_str("\\#"),
            ' ' if i == 0 || chars.peek().is_none() => s.push_str("\\ "),
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\x00'..='\x1f' | '\x7f' => {
                let _ = write!(s, "\\{:02x}", c as u8);
            }
            _ => s.push(c),
        }
    }
}

/// The shortest name of an attribute type, upper case, as x509-cert picks
/// it; looked up once per type.
fn attribute_name(oid: &ObjectIdentifier) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static NAMES: LazyLock<Mutex<HashMap<ObjectIdentifier, Option<String>>>> =
        LazyLock::new(Mutex::default);
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    names
        .entry(*oid)
        .or_insert_with(|| {
            der::oid::db::DB
                .find_names_for_oid(*oid)
                .fold(None::<&str>, |best, n| match best {
                    Some(b) if b.len() <= n.len() => Some(b),
                    _ => Some(n),
                })
                .map(str::to_ascii_uppercase)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_is_what_x509_cert_displays() {
        use std::str::FromStr;
        for text in [
            "CN=Ministry of Justice of AA Issuing CA,O=Ministry of Justice of AA,C=AA",
            "CN=a\\,b+OU=x\\+y,O=\\#hash,L=\\ lead,ST=trail\\ ,C=AA",
            "UID=jdoe,DC=example,DC=org,SERIALNUMBER=1234",
        ] {
            let name = x509_cert::name::Name::from_str(text).expect(text);
            assert_eq!(dn(&name), name.to_string(), "{text}");
        }
    }

    #[test]
    fn modulus_bits_ignore_sign_byte() {
        // SEQUENCE { INTEGER 0x00 0x80 0x01, INTEGER 3 }
        let key = [0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x03];
        assert_eq!(rsa_modulus_bits(&key), Some(16));
    }

    #[test]
    fn algorithm_names_are_readable() {
        use rustls_pki_types::alg_id;
        assert_eq!(
            algorithm_name(alg_id::ECDSA_SHA256.as_ref()),
            "ecdsa-with-SHA256 (1.2.840.10045.4.3.2)"
        );
        assert_eq!(
            algorithm_name(alg_id::RSA_PSS_SHA384.as_ref()),
            "RSASSA-PSS (1.2.840.113549.1.1.10) with sha384 parameters"
        );
        assert_eq!(
            algorithm_name(super::super::pss::RSASSA_PSS_KEY.as_ref()),
            "RSASSA-PSS (1.2.840.113549.1.1.10) without parameters"
        );
        assert_eq!(
            algorithm_name(alg_id::ECDSA_P384.as_ref()),
            "ECDSA (ecPublicKey) (1.2.840.10045.2.1) on P-384"
        );
        assert_eq!(
            algorithm_name(&[0x06, 0x03, 0x2a, 0x03, 0x04]),
            "algorithm 1.2.3.4"
        );
    }
}
