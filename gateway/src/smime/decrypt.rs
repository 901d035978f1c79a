//! Inbound decryption: an `application/pkcs7-mime` EnvelopedData (RFC 5652)
//! or AuthEnvelopedData (RFC 5083) encrypted to one of the gateway's
//! decryption certificates is opened here, before any signature check, and
//! the signed message inside is what the gateway then judges and relays.
//!
//! Key transport RSA-OAEP and RSA PKCS#1 v1.5, key agreement ECDH
//! (RFC 5753 dhSinglePass, P-256/P-384, AES key wrap); content encryption
//! AES-CBC and AES-GCM (RFC 5084). RSA and ECDH go through OpenSSL: its RSA
//! decryption is constant-time, where the pure-Rust `rsa` crate is not
//! (RUSTSEC-2023-0071). OpenSSL 3.0 has no implicit rejection, so a
//! PKCS#1 v1.5 padding failure goes on with a random key (RFC 3218 §2.3.2):
//! it fails later, at the content, like any wrong key.

use std::fmt;

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use openssl::pkey::{PKey, Private};
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::enveloped_data::{
    EncryptedContentInfo, EnvelopedData, KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo,
    KeyTransRecipientInfo, OriginatorIdentifierOrKey, OriginatorInfo, RecipientIdentifier,
    RecipientInfo, RecipientInfos,
};
use x509_cert::attr::Attributes;

use super::mime::Entity;
use super::MIME_TYPES;
use crate::reason::Reason;
use crate::trust::cert::{CertInfo, KeyAlg};

const OID_ENVELOPED: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const OID_AUTH_ENVELOPED: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_P_SPECIFIED: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.9");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Hashes by OID, as OAEP and the X9.63 KDF name them.
const HASHES: [(&str, Hash); 5] = [
    ("1.3.14.3.2.26", Hash::Sha1),
    ("2.16.840.1.101.3.4.2.4", Hash::Sha224),
    ("2.16.840.1.101.3.4.2.1", Hash::Sha256),
    ("2.16.840.1.101.3.4.2.2", Hash::Sha384),
    ("2.16.840.1.101.3.4.2.3", Hash::Sha512),
];

/// RFC 5753 / SEC 1 key agreement schemes: standard and cofactor DH are the
/// same on P-256 and P-384 (cofactor 1).
const KEY_AGREEMENT: [(&str, Hash); 10] = [
    ("1.3.133.16.840.63.0.2", Hash::Sha1),
    ("1.3.132.1.11.0", Hash::Sha224),
    ("1.3.132.1.11.1", Hash::Sha256),
    ("1.3.132.1.11.2", Hash::Sha384),
    ("1.3.132.1.11.3", Hash::Sha512),
    ("1.3.133.16.840.63.0.3", Hash::Sha1),
    ("1.3.132.1.14.0", Hash::Sha224),
    ("1.3.132.1.14.1", Hash::Sha256),
    ("1.3.132.1.14.2", Hash::Sha384),
    ("1.3.132.1.14.3", Hash::Sha512),
];

/// AES key wrap (RFC 3394) by OID, with the key-encryption key length.
const KEY_WRAP: [(&str, usize); 3] = [
    ("2.16.840.1.101.3.4.1.5", 16),
    ("2.16.840.1.101.3.4.1.25", 24),
    ("2.16.840.1.101.3.4.1.45", 32),
];

/// Content encryption algorithms emla opens.
const CONTENT: [(&str, Content); 6] = [
    ("2.16.840.1.101.3.4.1.2", Content::Cbc(16)),
    ("2.16.840.1.101.3.4.1.22", Content::Cbc(24)),
    ("2.16.840.1.101.3.4.1.42", Content::Cbc(32)),
    ("2.16.840.1.101.3.4.1.6", Content::Gcm(16)),
    ("2.16.840.1.101.3.4.1.26", Content::Gcm(24)),
    ("2.16.840.1.101.3.4.1.46", Content::Gcm(32)),
];

/// Content encryption algorithms refused by name.
const WEAK_CONTENT: [(&str, &str); 4] = [
    ("1.2.840.113549.3.7", "3DES (des-ede3-cbc)"),
    ("1.2.840.113549.3.2", "RC2 (rc2-cbc)"),
    ("1.3.14.3.2.7", "DES (des-cbc)"),
    ("1.2.840.113549.3.4", "RC4"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn by_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        let s = oid.to_string();
        HASHES.iter().find(|(o, _)| *o == s).map(|(_, h)| *h)
    }

    fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha224 => "sha224",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }

    fn md(self) -> &'static openssl::md::MdRef {
        match self {
            Hash::Sha1 => openssl::md::Md::sha1(),
            Hash::Sha224 => openssl::md::Md::sha224(),
            Hash::Sha256 => openssl::md::Md::sha256(),
            Hash::Sha384 => openssl::md::Md::sha384(),
            Hash::Sha512 => openssl::md::Md::sha512(),
        }
    }

    fn digest(self) -> openssl::hash::MessageDigest {
        use openssl::hash::MessageDigest as M;
        match self {
            Hash::Sha1 => M::sha1(),
            Hash::Sha224 => M::sha224(),
            Hash::Sha256 => M::sha256(),
            Hash::Sha384 => M::sha384(),
            Hash::Sha512 => M::sha512(),
        }
    }
}

/// A content encryption algorithm, with its key length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    Cbc(usize),
    Gcm(usize),
}

impl Content {
    fn key_len(self) -> usize {
        match self {
            Content::Cbc(n) | Content::Gcm(n) => n,
        }
    }

    fn name(self) -> String {
        match self {
            Content::Cbc(n) => format!("aes-{}-cbc", n * 8),
            Content::Gcm(n) => format!("aes-{}-gcm", n * 8),
        }
    }
}

/// One of the gateway's decryption certificates with its private key.
pub struct DecryptionKey {
    /// The certificate, DER.
    cert: Vec<u8>,
    /// DER IssuerAndSerialNumber of the certificate.
    issuer_and_serial: Vec<u8>,
    /// Its subjectKeyIdentifier, if it has one.
    ski: Option<Vec<u8>>,
    key: PKey<Private>,
    /// What the audit record names it by.
    pub id: RecipientId,
    /// `rsa-3072`, `ec-p256`, …
    pub algorithm: String,
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A gateway certificate as the audit record names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecipientId {
    /// Subject DN (RFC 4514).
    pub subject: String,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// subjectKeyIdentifier, hex, when the certificate has one.
    pub ski: Option<String>,
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
}

impl DecryptionKey {
    /// Loads a certificate (PEM, the first one) and its private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1, unencrypted). The key must belong to the
    /// certificate, be RSA of `min_rsa_bits` or more or EC P-256/P-384, and
    /// the certificate's keyUsage, if any, must allow keyEncipherment (RSA)
    /// or keyAgreement (EC). An error says which file it concerns.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        min_rsa_bits: usize,
    ) -> Result<DecryptionKey, (super::sign::PemFile, String)> {
        use super::sign::PemFile;
        let cert_err = |e: String| (PemFile::Cert, e);
        let der = crate::pem::certificates(cert_pem)
            .map_err(|e| cert_err(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| cert_err("no certificate found".into()))?
            .to_vec();
        let info = CertInfo::parse(&der).map_err(|e| cert_err(e.to_string()))?;
        let algorithm = match info.key {
            KeyAlg::Rsa { bits } if bits < min_rsa_bits => {
                return Err(cert_err(format!(
                "the certificate's RSA key has {bits} bits; at least {min_rsa_bits} are required"
            )))
            }
            KeyAlg::Rsa { .. } | KeyAlg::EcP256 | KeyAlg::EcP384 => info.key.to_string(),
            other => {
                return Err(cert_err(format!(
                    "the certificate's key is {other}; decryption needs RSA or EC P-256/P-384"
                )))
            }
        };
        let usage = key_usage(&info.cert);
        let needed = match info.key {
            KeyAlg::Rsa { .. } => ("keyEncipherment", usage.map(|u| u.key_encipherment())),
            _ => ("keyAgreement", usage.map(|u| u.key_agreement())),
        };
        if needed.1 == Some(false) {
            return Err(cert_err(format!(
                "the certificate's keyUsage does not allow {}",
                needed.0
            )));
        }
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| {
            (
                PemFile::Key,
                format!("cannot read the private key (PEM, unencrypted): {e}"),
            )
        })?;
        let public = openssl::x509::X509::from_der(&der)
            .and_then(|c| c.public_key())
            .map_err(|e| cert_err(e.to_string()))?;
        if !public.public_eq(&key) {
            return Err((
                PemFile::Key,
                "the private key does not belong to the certificate".into(),
            ));
        }
        let tbs = &info.cert.tbs_certificate;
        let issuer_and_serial = IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }
        .to_der()
        .map_err(|e| cert_err(e.to_string()))?;
        let ski = tbs
            .get::<SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .map(|(_, s)| s.0.as_bytes().to_vec());
        let id = RecipientId {
            subject: info.subject(),
            issuer: info.issuer(),
            serial: info.serial_hex(),
            ski: ski.as_ref().map(hex::encode),
            sha256: info.sha256_hex(),
        };
        Ok(DecryptionKey {
            issuer_and_serial,
            ski,
            key,
            id,
            algorithm,
            cert: der.clone(),
        })
    }

    /// The certificate, DER.
    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    fn is(&self, rid: &RecipientIdentifier) -> bool {
        match rid {
            RecipientIdentifier::IssuerAndSerialNumber(ias) => {
                ias.to_der().is_ok_and(|d| d == self.issuer_and_serial)
            }
            RecipientIdentifier::SubjectKeyIdentifier(s) => {
                self.ski.as_deref() == Some(s.0.as_bytes())
            }
        }
    }

    fn is_kari(&self, rid: &KeyAgreeRecipientIdentifier) -> bool {
        match rid {
            KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => {
                ias.to_der().is_ok_and(|d| d == self.issuer_and_serial)
            }
            KeyAgreeRecipientIdentifier::RKeyId(k) => {
                self.ski.as_deref() == Some(k.subject_key_identifier.0.as_bytes())
            }
        }
    }
}

fn key_usage(cert: &Certificate) -> Option<x509_cert::ext::pkix::KeyUsage> {
    cert.tbs_certificate
        .get::<x509_cert::ext::pkix::KeyUsage>()
        .ok()
        .flatten()
        .map(|(_, ku)| ku)
}

/// How an encrypted message arrived, for the audit record.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EncryptionReport {
    /// `enveloped-data` or `authenveloped-data`.
    pub cms_type: String,
    /// The gateway certificate it was opened with.
    pub recipient: Option<RecipientId>,
    /// Key transport or agreement, e.g. `rsaes-oaep-sha256`,
    /// `rsaes-pkcs1-v1_5`, `ecdh-p256-sha256kdf-aes256-wrap`.
    pub key_algorithm: Option<String>,
    /// Content encryption, e.g. `aes-256-gcm`.
    pub content_algorithm: Option<String>,
    /// How many RecipientInfos the message has.
    pub recipient_count: usize,
    /// SHA-256 of the message exactly as received (encrypted), hex.
    pub received_sha256: String,
    /// Its size in bytes.
    pub received_size: u64,
    /// SHA-256 of the decrypted message judged (and kept, and relayed), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrypted_sha256: Option<String>,
    /// Of a triple-wrapped message (RFC 2634), the subjects of the outer
    /// signature's signers, which verified before the decryption.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outer_signers: Vec<String>,
    /// Under AES-CBC, the real reason a refused message answered
    /// `decrypt-failed` (the reply names none, so it is no oracle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Whether the content-encryption key was had and the content
    /// decrypted with it (whatever came out).
    #[serde(skip)]
    pub opened: bool,
    /// Whether the content encryption had its own integrity check (GCM):
    /// without one (CBC), the signature inside is the only one.
    #[serde(skip)]
    pub authenticated: bool,
}

/// Why an encrypted message cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum DecryptError {
    /// The CMS or its parameters cannot be parsed.
    Malformed(String),
    /// A refused or unknown algorithm.
    Weak(String),
    /// No RecipientInfo names a gateway decryption certificate.
    NotForGateway(String),
    /// The key or the content does not decrypt (wrong key, tampering).
    Failed(String),
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptError::Malformed(s) => write!(f, "the encrypted message: {s}"),
            DecryptError::Weak(s) | DecryptError::NotForGateway(s) | DecryptError::Failed(s) => {
                f.write_str(s)
            }
        }
    }
}

impl From<&DecryptError> for Reason {
    fn from(e: &DecryptError) -> Reason {
        match e {
            DecryptError::Malformed(_) => Reason::Malformed,
            DecryptError::Weak(_) => Reason::WeakAlgorithm,
            DecryptError::NotForGateway(_) => Reason::NotForGateway,
            DecryptError::Failed(_) => Reason::DecryptFailed,
        }
    }
}

/// An encrypted message opened: the report and the content.
pub struct Opened {
    /// What the audit record says of it (filled as far as it got).
    pub report: EncryptionReport,
    /// The decrypted MIME entity, or why there is none.
    pub content: Result<Vec<u8>, DecryptError>,
}

/// Whether `top` is an S/MIME encrypted entity (`application/pkcs7-mime`
/// with `smime-type=enveloped-data` or `authEnveloped-data`).
/// Without `smime-type` (optional, RFC 8551 §3.2.2; s-nail leaves it out),
/// the CMS content type at the start of the body decides.
pub fn is_encrypted(top: &Entity<'_>) -> bool {
    if !MIME_TYPES.contains(&top.content_type.as_str()) {
        return false;
    }
    match top.param("smime-type").map(|s| s.to_ascii_lowercase()) {
        Some(t) => t == "enveloped-data" || t == "authenveloped-data",
        None => starts_encrypted(top),
    }
}

/// Whether the (base64 or binary) CMS of `entity` begins as a ContentInfo
/// of EnvelopedData or AuthEnvelopedData: its first bytes are decoded only.
fn starts_encrypted(entity: &Entity<'_>) -> bool {
    let body = entity.body();
    let head: Vec<u8> = if entity.transfer_encoding.as_deref() == Some("base64") {
        let chars: Vec<u8> = body
            .iter()
            .take(256)
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .take(64)
            .collect();
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(&chars) {
            Ok(b) => b,
            Err(_) => return false,
        }
    } else {
        body.iter().take(48).copied().collect()
    };
    // SEQUENCE (any length form), then the OID of the content type.
    let Some(rest) = head.strip_prefix(&[0x30]) else {
        return false;
    };
    let skip = match rest.first() {
        Some(&n) if n < 0x80 => 1,
        Some(&0x80) => 1,
        Some(&n) => 1 + usize::from(n & 0x7f),
        None => return false,
    };
    let oid = rest.get(skip..).unwrap_or_default();
    [OID_ENVELOPED, OID_AUTH_ENVELOPED].iter().any(|o| {
        let der = o.as_bytes();
        oid.first() == Some(&0x06)
            && oid.get(1).map(|&l| usize::from(l)) == Some(der.len())
            && oid.get(2..2 + der.len()) == Some(der)
    })
}

/// Opens the encrypted entity `top` (the message itself, or the signed
/// content of a triple wrap) of the message `raw`, as received, with one of
/// `keys`.
pub fn open(keys: &[std::sync::Arc<DecryptionKey>], top: &Entity<'_>, raw: &[u8]) -> Opened {
    let mut report = EncryptionReport {
        received_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, raw)),
        received_size: raw.len() as u64,
        ..EncryptionReport::default()
    };
    let content = open_cms(keys, top, &mut report);
    Opened { report, content }
}

/// The parts of EnvelopedData and AuthEnvelopedData that decryption reads.
struct Envelope {
    recipients: RecipientInfos,
    content: EncryptedContentInfo,
    /// AuthEnvelopedData: the MAC (GCM tag) and the DER of authAttrs.
    auth: Option<(Vec<u8>, Vec<u8>)>,
}

/// AuthEnvelopedData (RFC 5083 §2.1); the `cms` crate 0.2 lacks it.
#[derive(Clone, Debug, der::Sequence)]
struct AuthEnvelopedData {
    version: CmsVersion,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    originator_info: Option<OriginatorInfo>,
    recip_infos: RecipientInfos,
    auth_encrypted_content: EncryptedContentInfo,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    auth_attrs: Option<Attributes>,
    mac: OctetString,
    #[asn1(
        context_specific = "2",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    unauth_attrs: Option<Attributes>,
}

/// GCMParameters (RFC 5084 §3.2).
#[derive(Clone, Debug, der::Sequence)]
struct GcmParameters {
    nonce: OctetString,
    #[asn1(default = "default_icv_len")]
    icv_len: u8,
}

fn default_icv_len() -> u8 {
    12
}

/// RSAES-OAEP-params (RFC 4055 §4.1); absent fields are SHA-1, MGF1-SHA-1
/// and the empty label.
#[derive(Clone, Debug, Default, der::Sequence)]
struct OaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mgf: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    label: Option<AlgorithmIdentifierOwned>,
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2), the X9.63 KDF's SharedInfo.
#[derive(Clone, Debug, der::Sequence)]
struct SharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

fn malformed(what: &str, e: impl fmt::Display) -> DecryptError {
    DecryptError::Malformed(format!("{what}: {e}"))
}

fn open_cms(
    keys: &[std::sync::Arc<DecryptionKey>],
    top: &Entity<'_>,
    report: &mut EncryptionReport,
) -> Result<Vec<u8>, DecryptError> {
    let der = super::decode_cms(top).map_err(|e| DecryptError::Malformed(e.to_string()))?;
    let info = ContentInfo::from_der(&der).map_err(|e| malformed("ContentInfo", e))?;
    let envelope = if info.content_type == OID_ENVELOPED {
        report.cms_type = "enveloped-data".into();
        let e: EnvelopedData = info
            .content
            .decode_as()
            .map_err(|e| malformed("EnvelopedData", e))?;
        Envelope {
            recipients: e.recip_infos,
            content: e.encrypted_content,
            auth: None,
        }
    } else if info.content_type == OID_AUTH_ENVELOPED {
        report.cms_type = "authenveloped-data".into();
        let e: AuthEnvelopedData = info
            .content
            .decode_as()
            .map_err(|e| malformed("AuthEnvelopedData", e))?;
        let aad = match &e.auth_attrs {
            Some(a) => a.to_der().map_err(|e| malformed("authAttrs", e))?,
            None => Vec::new(),
        };
        Envelope {
            recipients: e.recip_infos,
            content: e.auth_encrypted_content,
            auth: Some((e.mac.as_bytes().to_vec(), aad)),
        }
    } else {
        return Err(DecryptError::Malformed(format!(
            "smime-type says encrypted, but the CMS content type is {}",
            info.content_type
        )));
    };
    let alg = &envelope.content.content_enc_alg;
    let content = content_alg(alg)?;
    report.content_algorithm = Some(content.name());
    report.authenticated = matches!(content, Content::Gcm(_));
    if envelope.auth.is_some() != matches!(content, Content::Gcm(_)) {
        return Err(DecryptError::Malformed(format!(
            "{} is not allowed in {}",
            content.name(),
            report.cms_type
        )));
    }
    if envelope.content.content_type != OID_DATA {
        return Err(DecryptError::Malformed(format!(
            "the encrypted content is of type {}, expected id-data",
            envelope.content.content_type
        )));
    }
    let recipients: Vec<&RecipientInfo> = envelope.recipients.0.iter().collect();
    report.recipient_count = recipients.len();
    let (key, ri) = find_recipient(keys, &recipients).ok_or_else(|| {
        DecryptError::NotForGateway(if keys.is_empty() {
            "the message is encrypted, and the gateway has no decryption certificate \
             ([[decryption]] in gateway.toml)"
                .into()
        } else {
            format!(
                "the message is encrypted to {} recipient(s), none of them a decryption \
                 certificate of this gateway",
                recipients.len()
            )
        })
    })?;
    report.recipient = Some(key.id.clone());
    let cek = match ri {
        Found::Ktri(k) => key_transport(key, k, content.key_len(), report)?,
        Found::Kari(k, enc_key) => key_agreement(key, k, enc_key, report)?,
    };
    report.opened = true;
    decrypt_content(&envelope, alg, content, &cek)
}

fn content_alg(alg: &AlgorithmIdentifierOwned) -> Result<Content, DecryptError> {
    let oid = alg.oid.to_string();
    if let Some((_, name)) = WEAK_CONTENT.iter().find(|(o, _)| *o == oid) {
        return Err(DecryptError::Weak(format!(
            "the message is encrypted with {name}, which is refused; use AES"
        )));
    }
    CONTENT
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            DecryptError::Weak(format!(
                "content encryption algorithm {oid} is not supported (AES-CBC or AES-GCM)"
            ))
        })
}

/// A RecipientInfo naming one of the gateway's certificates.
enum Found<'a> {
    Ktri(&'a KeyTransRecipientInfo),
    /// The KeyAgreeRecipientInfo and the wrapped key for the gateway.
    Kari(&'a KeyAgreeRecipientInfo, &'a [u8]),
}

fn find_recipient<'a, 'k>(
    keys: &'k [std::sync::Arc<DecryptionKey>],
    recipients: &[&'a RecipientInfo],
) -> Option<(&'k DecryptionKey, Found<'a>)> {
    for &ri in recipients {
        for key in keys {
            let key: &DecryptionKey = key;
            match ri {
                RecipientInfo::Ktri(k) if key.is(&k.rid) => return Some((key, Found::Ktri(k))),
                RecipientInfo::Kari(k) => {
                    if let Some(rek) = k.recipient_enc_keys.iter().find(|r| key.is_kari(&r.rid)) {
                        return Some((key, Found::Kari(k, rek.enc_key.as_bytes())));
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// The content-encryption key from an RSA key transport.
fn key_transport(
    key: &DecryptionKey,
    ktri: &KeyTransRecipientInfo,
    key_len: usize,
    report: &mut EncryptionReport,
) -> Result<Vec<u8>, DecryptError> {
    use openssl::pkey_ctx::PkeyCtx;
    use openssl::rsa::Padding;
    if key.key.id() != openssl::pkey::Id::RSA {
        return Err(DecryptError::Failed(
            "key transport to a certificate whose key is not RSA".into(),
        ));
    }
    let alg = &ktri.key_enc_alg;
    let failed = |e: openssl::error::ErrorStack| {
        DecryptError::Failed(format!("the RSA context cannot be set up: {e}"))
    };
    let mut ctx = PkeyCtx::new(&key.key).map_err(failed)?;
    ctx.decrypt_init().map_err(failed)?;
    let enc = ktri.enc_key.as_bytes();
    if alg.oid == OID_RSA {
        report.key_algorithm = Some("rsaes-pkcs1-v1_5".into());
        ctx.set_rsa_padding(Padding::PKCS1).map_err(failed)?;
        // RFC 3218 §2.3.2: a padding failure or a key of the wrong length
        // goes on with a random key, and fails at the content like it.
        let mut cek = vec![0u8; key_len];
        openssl::rand::rand_bytes(&mut cek).map_err(failed)?;
        let mut out = Vec::with_capacity(enc.len());
        let ok = ctx.decrypt_to_vec(enc, &mut out).is_ok() && out.len() == key_len;
        if ok {
            cek.copy_from_slice(&out[..key_len]);
        }
        return Ok(cek);
    }
    if alg.oid != OID_RSAES_OAEP {
        return Err(DecryptError::Weak(format!(
            "key transport algorithm {} is not supported (RSA-OAEP or RSA PKCS#1 v1.5)",
            alg.oid
        )));
    }
    let params: OaepParams = match &alg.parameters {
        Some(p) => p
            .decode_as()
            .map_err(|e| malformed("RSAES-OAEP-params", e))?,
        None => OaepParams::default(),
    };
    let hash = match &params.hash {
        Some(h) => hash_of(&h.oid, "OAEP hash")?,
        None => Hash::Sha1,
    };
    let mgf_hash = match &params.mgf {
        Some(m) if m.oid == OID_MGF1 => {
            let h: AlgorithmIdentifierOwned = m
                .parameters
                .as_ref()
                .ok_or_else(|| DecryptError::Malformed("MGF1 without its hash".into()))?
                .decode_as()
                .map_err(|e| malformed("MGF1 parameters", e))?;
            hash_of(&h.oid, "MGF1 hash")?
        }
        Some(m) => {
            return Err(DecryptError::Weak(format!(
                "OAEP mask generation {} is not supported (MGF1)",
                m.oid
            )))
        }
        None => Hash::Sha1,
    };
    let label = match &params.label {
        Some(l) if l.oid == OID_P_SPECIFIED => l
            .parameters
            .as_ref()
            .map(|p| p.decode_as::<OctetString>())
            .transpose()
            .map_err(|e| malformed("OAEP label", e))?
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_default(),
        Some(l) => {
            return Err(DecryptError::Malformed(format!(
                "OAEP label source {}",
                l.oid
            )))
        }
        None => Vec::new(),
    };
    report.key_algorithm = Some(if hash == mgf_hash {
        format!("rsaes-oaep-{}", hash.name())
    } else {
        format!("rsaes-oaep-{}-mgf1-{}", hash.name(), mgf_hash.name())
    });
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(failed)?;
    ctx.set_rsa_oaep_md(hash.md()).map_err(failed)?;
    ctx.set_rsa_mgf1_md(mgf_hash.md()).map_err(failed)?;
    if !label.is_empty() {
        ctx.set_rsa_oaep_label(&label).map_err(failed)?;
    }
    let mut out = Vec::new();
    ctx.decrypt_to_vec(enc, &mut out).map_err(|_| {
        DecryptError::Failed("the content-encryption key does not decrypt (RSA-OAEP)".into())
    })?;
    Ok(out)
}

fn hash_of(oid: &ObjectIdentifier, what: &str) -> Result<Hash, DecryptError> {
    Hash::by_oid(oid).ok_or_else(|| DecryptError::Weak(format!("{what} {oid} is not supported")))
}

/// The content-encryption key from an ECDH key agreement (RFC 5753 §3.1):
/// ephemeral-static DH, the X9.63 KDF, then AES key unwrap.
fn key_agreement(
    key: &DecryptionKey,
    kari: &KeyAgreeRecipientInfo,
    wrapped: &[u8],
    report: &mut EncryptionReport,
) -> Result<Vec<u8>, DecryptError> {
    let failed = |what: &str, e: openssl::error::ErrorStack| {
        DecryptError::Failed(format!("ECDH: {what}: {e}"))
    };
    let alg = &kari.key_enc_alg;
    let oid = alg.oid.to_string();
    let kdf = KEY_AGREEMENT
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, h)| *h)
        .ok_or_else(|| {
            DecryptError::Weak(format!(
                "key agreement algorithm {oid} is not supported (dhSinglePass-stdDH or -cofactorDH)"
            ))
        })?;
    let wrap: AlgorithmIdentifierOwned = alg
        .parameters
        .as_ref()
        .ok_or_else(|| DecryptError::Malformed("key agreement without its key wrap".into()))?
        .decode_as()
        .map_err(|e| malformed("key wrap algorithm", e))?;
    let wrap_oid = wrap.oid.to_string();
    let kek_len = KEY_WRAP
        .iter()
        .find(|(o, _)| *o == wrap_oid)
        .map(|(_, n)| *n)
        .ok_or_else(|| {
            DecryptError::Weak(format!(
                "key wrap algorithm {wrap_oid} is not supported (AES key wrap)"
            ))
        })?;
    let ec = key.key.ec_key().map_err(|_| {
        DecryptError::Failed("key agreement to a certificate whose key is not EC".into())
    })?;
    let group = ec.group();
    let curve = match group.curve_name() {
        Some(openssl::nid::Nid::X9_62_PRIME256V1) => "p256",
        Some(openssl::nid::Nid::SECP384R1) => "p384",
        _ => "ec",
    };
    report.key_algorithm = Some(format!(
        "ecdh-{curve}-{}kdf-aes{}-wrap",
        kdf.name(),
        kek_len * 8
    ));
    let OriginatorIdentifierOrKey::OriginatorKey(originator) = &kari.originator else {
        return Err(DecryptError::Weak(
            "key agreement with a static originator key is not supported (ephemeral-static only)"
                .into(),
        ));
    };
    if originator.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(DecryptError::Malformed(format!(
            "originator key algorithm {}",
            originator.algorithm.oid
        )));
    }
    let point_bytes = originator
        .public_key
        .as_bytes()
        .ok_or_else(|| DecryptError::Malformed("originator key bit string".into()))?;
    let mut bn = openssl::bn::BigNumContext::new().map_err(|e| failed("context", e))?;
    let point = openssl::ec::EcPoint::from_bytes(group, point_bytes, &mut bn).map_err(|_| {
        DecryptError::Failed("the originator key is not a point of the curve".into())
    })?;
    let peer = openssl::ec::EcKey::from_public_key(group, &point)
        .and_then(|k| k.check_key().map(|()| k))
        .and_then(PKey::from_ec_key)
        .map_err(|_| DecryptError::Failed("the originator key is not a valid public key".into()))?;
    let mut deriver = openssl::derive::Deriver::new(&key.key).map_err(|e| failed("derive", e))?;
    deriver.set_peer(&peer).map_err(|e| failed("peer", e))?;
    let z = zeroizing(deriver.derive_to_vec().map_err(|e| failed("derive", e))?);
    let shared_info = SharedInfo {
        key_info: wrap,
        entity_u_info: kari.ukm.clone(),
        supp_pub_info: OctetString::new(((kek_len * 8) as u32).to_be_bytes().to_vec())
            .map_err(|e| malformed("SharedInfo", e))?,
    }
    .to_der()
    .map_err(|e| malformed("SharedInfo", e))?;
    let kek = x963_kdf(kdf, &z.0, &shared_info, kek_len).map_err(|e| failed("KDF", e))?;
    aes_unwrap(&kek, wrapped)
}

/// Wipes a secret when dropped.
struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

fn zeroizing(v: Vec<u8>) -> Secret {
    Secret(v)
}

/// ANSI X9.63 KDF (SEC 1 §3.6.1): Hash(Z || counter || SharedInfo), …
fn x963_kdf(
    hash: Hash,
    z: &[u8],
    shared_info: &[u8],
    len: usize,
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut out = Vec::with_capacity(len + 64);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = openssl::hash::Hasher::new(hash.digest())?;
        h.update(z)?;
        h.update(&counter.to_be_bytes())?;
        h.update(shared_info)?;
        out.extend_from_slice(&h.finish()?);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

/// AES key unwrap (RFC 3394).
fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let bad = || DecryptError::Failed("the wrapped content-encryption key does not unwrap".into());
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(bad());
    }
    let aes = openssl::aes::AesKey::new_decrypt(kek).map_err(|_| bad())?;
    let mut out = vec![0u8; wrapped.len() - 8];
    openssl::aes::unwrap_key(&aes, None, &mut out, wrapped).map_err(|_| bad())?;
    Ok(out)
}

fn decrypt_content(
    envelope: &Envelope,
    alg: &AlgorithmIdentifierOwned,
    content: Content,
    cek: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    use openssl::symm::Cipher;
    let data = envelope
        .content
        .encrypted_content
        .as_ref()
        .ok_or_else(|| {
            DecryptError::Malformed("the encrypted content is detached (absent)".into())
        })?
        .as_bytes();
    let wrong_key = || {
        DecryptError::Failed(format!(
            "the content-encryption key has the wrong length for {}",
            content.name()
        ))
    };
    if cek.len() != content.key_len() {
        return Err(wrong_key());
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| DecryptError::Malformed(format!("{} without parameters", content.name())))?;
    match content {
        Content::Cbc(n) => {
            let iv: OctetString = params.decode_as().map_err(|e| malformed("CBC IV", e))?;
            if iv.as_bytes().len() != 16 {
                return Err(DecryptError::Malformed("the CBC IV is not 16 bytes".into()));
            }
            let cipher = match n {
                16 => Cipher::aes_128_cbc(),
                24 => Cipher::aes_192_cbc(),
                _ => Cipher::aes_256_cbc(),
            };
            openssl::symm::decrypt(cipher, cek, Some(iv.as_bytes()), data).map_err(|_| {
                DecryptError::Failed(
                    "the content does not decrypt (bad padding: a wrong key or a changed ciphertext)"
                        .into(),
                )
            })
        }
        Content::Gcm(n) => {
            let gcm: GcmParameters = params
                .decode_as()
                .map_err(|e| malformed("GCMParameters", e))?;
            let (mac, aad) = envelope.auth.as_ref().ok_or_else(|| {
                DecryptError::Malformed("AES-GCM outside AuthEnvelopedData".into())
            })?;
            if !(12..=16).contains(&gcm.icv_len) || mac.len() != usize::from(gcm.icv_len) {
                return Err(DecryptError::Malformed(format!(
                    "the GCM tag has {} bytes, its parameters say {}",
                    mac.len(),
                    gcm.icv_len
                )));
            }
            if gcm.nonce.as_bytes().len() != 12 {
                return Err(DecryptError::Malformed(
                    "the GCM nonce is not 12 bytes".into(),
                ));
            }
            let cipher = match n {
                16 => Cipher::aes_128_gcm(),
                24 => Cipher::aes_192_gcm(),
                _ => Cipher::aes_256_gcm(),
            };
            openssl::symm::decrypt_aead(cipher, cek, Some(gcm.nonce.as_bytes()), aad, data, mac)
                .map_err(|_| {
                    DecryptError::Failed(
                        "the content does not authenticate (GCM tag: a wrong key or a changed message)"
                            .into(),
                    )
                })
        }
    }
}

/// The message to judge and relay: the decrypted entity, with the header
/// fields of the envelope message it lacks. A decrypted entity that is a
/// whole message (it has `From:`) stands alone, as the sender signed it;
/// otherwise (a MIME entity, as mail clients encrypt) the outer fields but
/// the `Content-*` and `MIME-Version` ones go before it.
pub fn message(outer: &[u8], inner: &[u8]) -> Result<Vec<u8>, (Reason, String)> {
    let outer_fields = fields(&outer[..super::mime::header_len(outer)]);
    let inner_fields = fields(&inner[..super::mime::header_len(inner)]);
    if let Some(inner_from) = from(&inner_fields) {
        if let Some(outer_from) = from(&outer_fields) {
            if outer_from != inner_from {
                return Err((
                    Reason::SenderMismatch,
                    format!(
                        "the From: outside the encryption ({}) differs from the From: inside ({})",
                        String::from_utf8_lossy(outer_from),
                        String::from_utf8_lossy(inner_from)
                    ),
                ));
            }
        }
        return Ok(inner.to_vec());
    }
    let mut out = Vec::with_capacity(outer.len() + inner.len());
    for (name, field) in outer_fields {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(b"content-") || lower == b"mime-version" {
            continue;
        }
        out.extend_from_slice(field);
    }
    out.extend_from_slice(inner);
    Ok(out)
}

/// The header fields of a header section: (name, the whole field with its
/// continuation lines and line end).
fn fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < header.len() {
        let end = memchr::memchr(b'\n', &header[pos..]).map_or(header.len(), |i| pos + i + 1);
        let next_is_continuation = header.get(end).is_some_and(|b| *b == b' ' || *b == b'\t');
        if !next_is_continuation {
            let field = &header[start..end];
            if let Some(colon) = memchr::memchr(b':', field) {
                out.push((field[..colon].trim_ascii(), field));
            }
            start = end;
        }
        pos = end;
    }
    out
}

/// The value of the `From:` field among `fields`.
fn from<'a>(fields: &[(&'a [u8], &'a [u8])]) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(b"from"))
        .map(|(_, f)| field_value(f))
}

/// A field's value, trimmed.
fn field_value(field: &[u8]) -> &[u8] {
    let colon = memchr::memchr(b':', field).map_or(0, |i| i + 1);
    field[colon..].trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inner_entity_takes_the_outer_fields_but_content_ones() {
        let outer = b"From: a@x.example\r\nTo: b@y.example\r\nSubject: s\r\n  folded\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime;\r\n smime-type=enveloped-data\r\n\r\nAAAA\r\n";
        let inner = b"Content-Type: text/plain\r\n\r\nhi\r\n";
        let m = message(outer, inner).unwrap();
        assert_eq!(
            m,
            b"From: a@x.example\r\nTo: b@y.example\r\nSubject: s\r\n  folded\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn a_whole_inner_message_stands_alone_and_its_from_must_match() {
        let outer = b"From: a@x.example\r\nReceived: by z\r\n\r\nAAAA\r\n";
        let inner = b"From:  a@x.example\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
        assert_eq!(message(outer, inner).unwrap(), inner);
        let other = b"From: m@x.example\r\n\r\nhi\r\n";
        let (reason, detail) = message(outer, other).unwrap_err();
        assert_eq!(reason, Reason::SenderMismatch);
        assert!(detail.contains("m@x.example"), "{detail}");
    }

    #[test]
    fn without_smime_type_the_cms_content_type_decides() {
        let entity = |b64: &str| {
            format!(
                "Content-Type: application/pkcs7-mime; name=smime.p7m\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
            )
        };
        // s-nail's EnvelopedData (definite length), OpenSSL's streamed
        // SignedData (indefinite length).
        let enveloped = entity("MIIP0AYJKoZIhvcNAQcDoIIPwTCCD70CAQAxggGUMIIBkAIBADB4MGAxCzAJBgNV");
        let signed = entity("MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0B");
        assert!(is_encrypted(&Entity::parse(enveloped.as_bytes()).unwrap()));
        assert!(!is_encrypted(&Entity::parse(signed.as_bytes()).unwrap()));
        let typed =
            "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n\r\nAAAA\r\n";
        assert!(is_encrypted(&Entity::parse(typed.as_bytes()).unwrap()));
    }

    #[test]
    fn the_kdf_matches_a_known_answer() {
        // SEC 1 / X9.63 with SHA-1, a counter of one block: the hash itself.
        let z = [1u8; 32];
        let k = x963_kdf(Hash::Sha1, &z, b"info", 16).unwrap();
        let mut h = openssl::sha::Sha1::new();
        h.update(&z);
        h.update(&1u32.to_be_bytes());
        h.update(b"info");
        assert_eq!(k, h.finish()[..16]);
        assert_eq!(x963_kdf(Hash::Sha256, &z, b"", 48).unwrap().len(), 48);
    }

    #[test]
    fn every_decrypt_error_has_its_reason() {
        let s = || "x".to_string();
        let table = [
            (DecryptError::Malformed(s()), Reason::Malformed),
            (DecryptError::Weak(s()), Reason::WeakAlgorithm),
            (DecryptError::NotForGateway(s()), Reason::NotForGateway),
            (DecryptError::Failed(s()), Reason::DecryptFailed),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
    }

    #[test]
    fn weak_and_unknown_ciphers_are_refused_by_name() {
        let alg = |oid: &str| AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap(oid),
            parameters: None,
        };
        let e = content_alg(&alg("1.2.840.113549.3.7")).unwrap_err();
        assert!(e.to_string().contains("3DES"), "{e}");
        assert_eq!(Reason::from(&e), Reason::WeakAlgorithm);
        assert_eq!(
            content_alg(&alg("2.16.840.1.101.3.4.1.46")).unwrap(),
            Content::Gcm(32)
        );
        assert!(content_alg(&alg("1.2.3.4")).is_err());
    }
}
