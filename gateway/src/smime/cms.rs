//! CMS SignedData (RFC 5652) as carried by S/MIME.
//!
//! The outer structure is walked by hand so that the original encodings of
//! certificates and signed attributes survive: signatures cover those exact
//! bytes, and decoding a SET OF into the `cms` types re-sorts it.

use std::sync::{LazyLock, Mutex};

use cms::content_info::CmsVersion;
use cms::signed_data::{SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::Decode;
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::signature::{MD5, SHA1, SHA256_OID, SHA384_OID, SHA512_OID};
use crate::asn1::{Reader, Tlv};
use crate::reason::Reason;
use crate::trust::cert::CertInfo;
use crate::trust::memo::Generations;

/// id-signedData.
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-envelopedData.
pub const ID_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// id-authEnvelopedData.
pub const ID_AUTH_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
/// id-data.
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-contentType attribute.
pub const ATTR_CONTENT_TYPE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest attribute.
pub const ATTR_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-signingTime attribute.
pub const ATTR_SIGNING_TIME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");

/// Why a CMS object could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum CmsError {
    /// EnvelopedData or AuthEnvelopedData: encrypted, not signed.
    EncryptedOnly,
    /// Another content type than SignedData.
    NotSignedData(ObjectIdentifier),
    /// A SignedData without SignerInfos.
    NoSigners,
    /// Unparsable or inconsistent CMS: what is wrong.
    Malformed(String),
    /// The signed attributes of a SignerInfo cannot be read: what is wrong.
    Attributes(String),
    /// A version other than the one RFC 5652 (§5.1, §5.3) assigns.
    Version {
        /// `SignedData` or `SignerInfo N`.
        what: String,
        /// The version found (`None`: not a small integer).
        found: Option<i64>,
        /// The version the content calls for.
        expected: u8,
    },
    /// An element of `certificates` is not a parseable X.509 certificate.
    Certificate {
        /// Its index in the set.
        index: usize,
        /// What it is, or why it does not parse.
        problem: String,
    },
    /// An element of `crls` is not a parseable CertificateList.
    Crl {
        /// Its index in the set.
        index: usize,
        /// What it is, or why it does not parse.
        problem: String,
    },
    /// `digestAlgorithms` is empty, does not parse, or lists an algorithm
    /// that is not a supported digest.
    DigestAlgorithms(String),
    /// `digestAlgorithms` lists MD5 or SHA-1 (the name).
    WeakDigest(&'static str),
    /// A SignerInfo's digest algorithm is missing from `digestAlgorithms`.
    DigestNotListed {
        /// The SignerInfo's index.
        signer: usize,
        /// Its digest algorithm.
        oid: ObjectIdentifier,
    },
}

impl std::fmt::Display for CmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmsError::EncryptedOnly => f.write_str("the message is encrypted but not signed"),
            CmsError::NotSignedData(oid) => write!(f, "CMS content type {oid} is not signedData"),
            CmsError::NoSigners => f.write_str("the SignedData has no signers"),
            CmsError::Malformed(d) => write!(f, "CMS: {d}"),
            CmsError::Attributes(d) => f.write_str(d),
            CmsError::Version {
                what,
                found,
                expected,
            } => {
                let found = found.map_or("out of range".to_string(), |v| v.to_string());
                write!(
                    f,
                    "CMS: {what} version is {found}; RFC 5652 requires {expected} for this content"
                )
            }
            CmsError::Certificate { index, problem } => {
                write!(f, "CMS: certificates[{index}] {problem}")
            }
            CmsError::Crl { index, problem } => write!(f, "CMS: crls[{index}] {problem}"),
            CmsError::DigestAlgorithms(d) => write!(f, "CMS: digestAlgorithms {d}"),
            CmsError::WeakDigest(name) => {
                write!(f, "CMS: digestAlgorithms lists {name}, which is refused")
            }
            CmsError::DigestNotListed { signer, oid } => write!(
                f,
                "CMS: the digest algorithm {oid} of SignerInfo {signer} is not in digestAlgorithms"
            ),
        }
    }
}

impl std::error::Error for CmsError {}

impl From<&CmsError> for Reason {
    fn from(e: &CmsError) -> Reason {
        match e {
            CmsError::EncryptedOnly | CmsError::NotSignedData(_) | CmsError::NoSigners => {
                Reason::Unsigned
            }
            CmsError::Malformed(_)
            | CmsError::Attributes(_)
            | CmsError::Version { .. }
            | CmsError::Certificate { .. }
            | CmsError::Crl { .. }
            | CmsError::DigestAlgorithms(_)
            | CmsError::DigestNotListed { .. } => Reason::Malformed,
            CmsError::WeakDigest(_) => Reason::WeakAlgorithm,
        }
    }
}

fn malformed(what: impl std::fmt::Display) -> CmsError {
    CmsError::Malformed(what.to_string())
}

fn bad_attribute(what: impl std::fmt::Display) -> CmsError {
    CmsError::Attributes(what.to_string())
}

/// A parsed SignedData, borrowing from its DER encoding.
pub struct SignedData<'a> {
    /// eContentType.
    pub content_type: ObjectIdentifier,
    /// The encapsulated content, absent for a detached signature.
    pub content: Option<&'a [u8]>,
    /// The certificate set, each certificate as encoded.
    pub certificates: Vec<&'a [u8]>,
    /// The same certificates parsed, in the same order.
    pub parsed_certificates: Vec<CertInfo<'a>>,
    /// digestAlgorithms, in encoded order.
    pub digest_algorithms: Vec<ObjectIdentifier>,
    /// The signers, in encoded order.
    pub signers: Vec<Signer>,
}

/// One SignerInfo.
pub struct Signer {
    /// The decoded SignerInfo.
    pub info: SignerInfo,
    /// The signed attributes re-tagged as the DER `SET OF` that the
    /// signature covers (RFC 5652 §5.4), from the original bytes.
    pub signed_attrs: Option<Vec<u8>>,
}

/// Values of the signed attributes that matter to verification.
#[derive(Debug, Default)]
pub struct SignedAttributes<'a> {
    /// messageDigest.
    pub message_digest: Option<&'a [u8]>,
    /// contentType.
    pub content_type: Option<ObjectIdentifier>,
    /// signingTime, seconds since the Unix epoch.
    pub signing_time: Option<u64>,
}

impl Signer {
    /// Extracts messageDigest, contentType and signingTime, refusing
    /// attributes that must be single-valued but are not.
    pub fn attributes(&self) -> Result<SignedAttributes<'_>, CmsError> {
        let mut out = SignedAttributes::default();
        let Some(attrs) = &self.info.signed_attrs else {
            return Ok(out);
        };
        for attr in attrs.iter() {
            let known = [ATTR_MESSAGE_DIGEST, ATTR_CONTENT_TYPE, ATTR_SIGNING_TIME];
            if !known.contains(&attr.oid) {
                continue;
            }
            let [value] = attr.values.as_slice() else {
                return Err(bad_attribute(format!(
                    "signed attribute {} must have exactly one value",
                    attr.oid
                )));
            };
            if attr.oid == ATTR_MESSAGE_DIGEST {
                if out.message_digest.is_some() {
                    return Err(bad_attribute("two messageDigest attributes"));
                }
                let digest = value
                    .decode_as::<der::asn1::OctetStringRef<'_>>()
                    .map_err(|e| bad_attribute(format!("messageDigest: {e}")))?;
                out.message_digest = Some(digest.as_bytes());
            } else if attr.oid == ATTR_CONTENT_TYPE {
                let oid = value
                    .decode_as::<ObjectIdentifier>()
                    .map_err(|e| bad_attribute(format!("contentType attribute: {e}")))?;
                out.content_type = Some(oid);
            } else {
                let t = der::Encode::to_der(value)
                    .and_then(|d| x509_cert::time::Time::from_der(&d))
                    .map_err(|e| bad_attribute(format!("signingTime: {e}")))?;
                out.signing_time = Some(t.to_unix_duration().as_secs());
            }
        }
        Ok(out)
    }
}

/// Parses a DER ContentInfo that must hold SignedData.
pub fn parse(der: &[u8]) -> Result<SignedData<'_>, CmsError> {
    let mut sd = Reader::new(signed_data_of(der)?);
    let version = field(&mut sd, 0x02, "SignedData version is not an INTEGER")?;
    let digests = field(&mut sd, 0x31, "SignedData digestAlgorithms is not a SET")?;
    let digest_algorithms = parse_digest_algorithms(digests.value)?;
    let encap = field(&mut sd, 0x30, "encapContentInfo is not a SEQUENCE")?;
    let (content_type, content) = parse_encap(encap)?;
    let parsed_certificates = parse_certificates(&mut sd)?;
    let certificates = parsed_certificates.iter().map(|c| c.der).collect();
    check_crls(&mut sd)?;
    let infos = field(&mut sd, 0x31, "SignedData signerInfos is not a SET")?;
    end(&sd, "trailing data in SignedData")?;
    let signers = parse_signers(infos.value)?;
    check_versions(small_int(version.value), content_type, &signers)?;
    for (signer, s) in signers.iter().enumerate() {
        let oid = s.info.digest_alg.oid;
        if !digest_algorithms.contains(&oid) {
            return Err(CmsError::DigestNotListed { signer, oid });
        }
    }
    Ok(SignedData {
        content_type,
        content,
        certificates,
        parsed_certificates,
        digest_algorithms,
        signers,
    })
}

/// The content of the SignedData SEQUENCE a ContentInfo holds.
fn signed_data_of(der: &[u8]) -> Result<&[u8], CmsError> {
    let mut top = Reader::new(der);
    let content_info = field(&mut top, 0x30, "CMS ContentInfo is not a SEQUENCE")?;
    end(&top, "trailing data after the CMS ContentInfo")?;
    let mut ci = Reader::new(content_info.value);
    let oid = read_oid(&mut ci, "ContentInfo contentType")?;
    if oid == ID_ENVELOPED_DATA || oid == ID_AUTH_ENVELOPED_DATA {
        return Err(CmsError::EncryptedOnly);
    }
    if oid != ID_SIGNED_DATA {
        return Err(CmsError::NotSignedData(oid));
    }
    let explicit = field(&mut ci, 0xa0, "ContentInfo content is not [0] EXPLICIT")?;
    end(&ci, "trailing data in the CMS ContentInfo")?;
    let mut inner = Reader::new(explicit.value);
    let signed_data = field(&mut inner, 0x30, "SignedData is not a SEQUENCE")?;
    end(&inner, "trailing data after the SignedData")?;
    Ok(signed_data.value)
}

/// The next TLV of `r`, which must have `tag` (else `what` is wrong).
fn field<'a>(r: &mut Reader<'a>, tag: u8, what: &'static str) -> Result<Tlv<'a>, CmsError> {
    r.expect(tag, what).map_err(malformed)
}

/// Nothing may follow in `r` (else `trailing` is wrong).
fn end(r: &Reader<'_>, trailing: &str) -> Result<(), CmsError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(malformed(trailing))
    }
}

/// The certificates `[0]` of SignedData, if present, parsed.
fn parse_certificates<'a>(sd: &mut Reader<'a>) -> Result<Vec<CertInfo<'a>>, CmsError> {
    let mut certificates = Vec::new();
    if sd.peek_tag() != Some(0xa0) {
        return Ok(certificates);
    }
    let set = sd.read().map_err(malformed)?;
    let mut certs = Reader::new(set.value);
    while !certs.is_empty() {
        let index = certificates.len();
        let choice = certs.read().map_err(malformed)?;
        // Only X.509 certificates: OpenSSL refuses a set it cannot
        // decode, and nothing else plays a part in S/MIME signing.
        if choice.tag != 0x30 {
            return Err(CmsError::Certificate {
                index,
                problem: format!("is not an X.509 certificate but {}", describe(choice.tag)),
            });
        }
        let cert = CertInfo::parse(choice.raw).map_err(|e| CmsError::Certificate {
            index,
            problem: format!("does not parse as an X.509 certificate: {}", e.0),
        })?;
        let tbs = &cert.cert.tbs_certificate;
        if let Some(problem) =
            bad_name("subject", &tbs.subject).or_else(|| bad_name("issuer", &tbs.issuer))
        {
            return Err(CmsError::Certificate { index, problem });
        }
        certificates.push(cert);
    }
    Ok(certificates)
}

/// The crls `[1]` of SignedData, if present: not trusted (the policy and
/// downloads supply CRLs), but they must parse, as they do for OpenSSL.
fn check_crls(sd: &mut Reader<'_>) -> Result<(), CmsError> {
    if sd.peek_tag() != Some(0xa1) {
        return Ok(());
    }
    let set = sd.read().map_err(malformed)?;
    let mut crls = Reader::new(set.value);
    let mut index = 0;
    while !crls.is_empty() {
        let choice = crls.read().map_err(malformed)?;
        let problem = if choice.tag != 0x30 {
            Some(format!(
                "is not a CertificateList but {}",
                describe(choice.tag)
            ))
        } else {
            match x509_cert::crl::CertificateList::from_der(choice.raw) {
                Ok(crl) => bad_name("issuer", &crl.tbs_cert_list.issuer),
                Err(e) => Some(format!("does not parse as a CertificateList: {e}")),
            }
        };
        if let Some(problem) = problem {
            return Err(CmsError::Crl { index, problem });
        }
        index += 1;
    }
    Ok(())
}

/// The SignerInfos of the signerInfos SET (at least one).
fn parse_signers(infos: &[u8]) -> Result<Vec<Signer>, CmsError> {
    let mut signers = Vec::new();
    let mut reader = Reader::new(infos);
    while !reader.is_empty() {
        let tlv = field(&mut reader, 0x30, "SignerInfo is not a SEQUENCE")?;
        signers.push(parse_signer(tlv)?);
    }
    if signers.is_empty() {
        return Err(CmsError::NoSigners);
    }
    Ok(signers)
}

/// Why a distinguished name holds a value OpenSSL cannot decode, if it
/// does: one of the string types certificates use (OpenSSL refuses other
/// types and classes, e.g. an \[APPLICATION 19\] where PrintableString
/// was), and for those it converts to UTF-8 when it reads the certificate
/// (UTF8String, BMPString), a valid one. One bad value fails the whole
/// message there. (`der` refuses a UniversalString outright.)
fn bad_name(what: &str, name: &x509_cert::name::Name) -> Option<String> {
    let bad = name.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|atv| {
        let v = atv.value.value();
        let ok = match der::Tagged::tag(&atv.value).octet() {
            0x0c => std::str::from_utf8(v).is_ok(),
            0x1e => {
                v.len() % 2 == 0
                    && v.chunks(2)
                        .all(|c| char::from_u32(u32::from(c[0]) << 8 | u32::from(c[1])).is_some())
            }
            // NumericString, PrintableString, T61String, IA5String.
            0x12 | 0x13 | 0x14 | 0x16 => true,
            _ => false,
        };
        (!ok).then_some(atv.oid)
    })?;
    Some(format!("has an invalid value for {bad} in its {what}"))
}

/// A name for a TLV that is not what was expected.
fn describe(tag: u8) -> String {
    match tag {
        0x04 => "an OCTET STRING".into(),
        0x05 => "a NULL".into(),
        0xa0 => "an extendedCertificate (obsolete)".into(),
        0xa1 => "a v1 attribute certificate or another revocation format".into(),
        0xa2 => "a v2 attribute certificate".into(),
        0xa3 => "an other-format certificate".into(),
        t => format!("a value with tag 0x{t:02x}"),
    }
}

/// A DER INTEGER's value when it fits in an `i64`.
fn small_int(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let first = if value[0] & 0x80 != 0 { -1i64 } else { 0 };
    Some(value.iter().fold(first, |n, &b| (n << 8) | i64::from(b)))
}

/// The algorithms of the digestAlgorithms SET (at least one).
fn parse_digest_algorithms(set: &[u8]) -> Result<Vec<ObjectIdentifier>, CmsError> {
    let mut out = Vec::new();
    let mut r = Reader::new(set);
    while !r.is_empty() {
        let tlv = r
            .read()
            .map_err(|e| CmsError::DigestAlgorithms(e.to_string()))?;
        let alg = x509_cert::spki::AlgorithmIdentifierOwned::from_der(tlv.raw).map_err(|e| {
            CmsError::DigestAlgorithms(format!("holds something else than an algorithm: {e}"))
        })?;
        if ![SHA256_OID, SHA384_OID, SHA512_OID].contains(&alg.oid) {
            return Err(match alg.oid.to_string().as_str() {
                MD5 => CmsError::WeakDigest("MD5"),
                SHA1 => CmsError::WeakDigest("SHA-1"),
                other => CmsError::DigestAlgorithms(format!(
                    "lists {other}, which is not a supported digest (SHA-256, SHA-384, SHA-512)"
                )),
            });
        }
        out.push(alg.oid);
    }
    if out.is_empty() {
        return Err(CmsError::DigestAlgorithms(
            "is empty: it must list the digest of every SignerInfo".into(),
        ));
    }
    Ok(out)
}

/// RFC 5652 §5.3: SignerInfo version 1 with issuerAndSerialNumber, 3 with
/// subjectKeyIdentifier; §5.1: SignedData version 3 when a SignerInfo is
/// version 3 or the content is not id-data, else 1 (versions 4 and 5 are
/// for the certificate and CRL formats refused above).
fn check_versions(
    version: Option<i64>,
    content_type: ObjectIdentifier,
    signers: &[Signer],
) -> Result<(), CmsError> {
    let mut any_v3 = false;
    for (n, s) in signers.iter().enumerate() {
        let (expected, found) = match (&s.info.sid, s.info.version) {
            (SignerIdentifier::IssuerAndSerialNumber(_), v) => (CmsVersion::V1, v),
            (SignerIdentifier::SubjectKeyIdentifier(_), v) => (CmsVersion::V3, v),
        };
        any_v3 |= expected == CmsVersion::V3;
        if found != expected {
            return Err(CmsError::Version {
                what: format!("SignerInfo {n}"),
                found: Some(found as i64),
                expected: expected as u8,
            });
        }
    }
    let expected = if any_v3 || content_type != ID_DATA {
        3
    } else {
        1
    };
    if version != Some(i64::from(expected)) {
        return Err(CmsError::Version {
            what: "SignedData".into(),
            found: version,
            expected,
        });
    }
    Ok(())
}

fn read_oid(r: &mut Reader<'_>, what: &str) -> Result<ObjectIdentifier, CmsError> {
    let tlv = r.read().map_err(|e| malformed(format!("{what}: {e}")))?;
    if tlv.tag != 0x06 {
        return Err(malformed(format!("{what} is not an OBJECT IDENTIFIER")));
    }
    ObjectIdentifier::from_bytes(tlv.value).map_err(|e| malformed(format!("{what}: {e}")))
}

fn parse_encap(encap: Tlv<'_>) -> Result<(ObjectIdentifier, Option<&[u8]>), CmsError> {
    let mut r = Reader::new(encap.value);
    let content_type = read_oid(&mut r, "eContentType")?;
    if r.is_empty() {
        return Ok((content_type, None));
    }
    let explicit = field(&mut r, 0xa0, "eContent is not [0] EXPLICIT")?;
    let mut inner = Reader::new(explicit.value);
    let octets = field(&mut inner, 0x04, "eContent is not an OCTET STRING")?;
    if !inner.is_empty() || !r.is_empty() {
        return Err(malformed("trailing data in encapContentInfo"));
    }
    Ok((content_type, Some(octets.value)))
}

fn parse_signer(tlv: Tlv<'_>) -> Result<Signer, CmsError> {
    let info = match signer_info_by_fields(tlv) {
        Some(info) => info,
        None => SignerInfo::from_der(tlv.raw).map_err(|e| malformed(format!("SignerInfo: {e}")))?,
    };
    let mut r = Reader::new(tlv.value);
    r.read().map_err(malformed)?; // version
    r.read().map_err(malformed)?; // sid
    r.read().map_err(malformed)?; // digestAlgorithm
    let signed_attrs = if r.peek_tag() == Some(0xa0) {
        let mut raw = r.read().map_err(malformed)?.raw.to_vec();
        raw[0] = 0x31;
        Some(raw)
    } else {
        None
    };
    Ok(Signer { info, signed_attrs })
}

/// Decoded values by their exact encoding, for the parts of a SignerInfo
/// that every message of one signer repeats (a function of the bytes).
struct Repeated {
    sids: Generations<Vec<u8>, SignerIdentifier>,
    algorithms: Generations<Vec<u8>, AlgorithmIdentifierOwned>,
}

static REPEATED: LazyLock<Mutex<Repeated>> = LazyLock::new(|| {
    Mutex::new(Repeated {
        sids: Generations::new(256),
        algorithms: Generations::new(64),
    })
});

/// `SignerInfo::from_der` field by field, the sid and the algorithms taken
/// from [`REPEATED`] when seen before. `None` unless every field decodes
/// and they come in the one order the plain layout has (version, sid,
/// digestAlgorithm, \[0\] signedAttrs?, signatureAlgorithm, signature,
/// \[1\] unsignedAttrs?): then the caller decodes it whole, which decides
/// (and words the error) exactly as before.
fn signer_info_by_fields(tlv: Tlv<'_>) -> Option<SignerInfo> {
    use cms::signed_data::{SignedAttributes, UnsignedAttributes};
    // The outer header must be DER too (minimal length), as `from_der` checks.
    let mut outer = der::SliceReader::new(tlv.raw).ok()?;
    let header = <der::Header as Decode>::decode(&mut outer).ok()?;
    if u32::from(header.length) as usize != tlv.value.len() {
        return None;
    }
    let mut r = Reader::new(tlv.value);
    let version = CmsVersion::from_der(r.expect(0x02, "").ok()?.raw).ok()?;
    let sid_der = r.read().ok()?.raw;
    let digest_der = r.expect(0x30, "").ok()?.raw;
    let signed = (r.peek_tag() == Some(0xa0))
        .then(|| r.read())
        .transpose()
        .ok()?;
    let sig_alg_der = r.expect(0x30, "").ok()?.raw;
    let signature = OctetString::from_der(r.expect(0x04, "").ok()?.raw).ok()?;
    let unsigned = (r.peek_tag() == Some(0xa1))
        .then(|| r.read())
        .transpose()
        .ok()?;
    if !r.is_empty() {
        return None;
    }
    let as_set = |t: Tlv<'_>| [&[0x31][..], &t.raw[1..]].concat();
    let signed_attrs = match signed {
        Some(t) => Some(SignedAttributes::from_der(&as_set(t)).ok()?),
        None => None,
    };
    let unsigned_attrs = match unsigned {
        Some(t) => Some(UnsignedAttributes::from_der(&as_set(t)).ok()?),
        None => None,
    };
    let mut repeated = REPEATED.lock().unwrap_or_else(|p| p.into_inner());
    let sid = match repeated.sids.get(sid_der) {
        Some(sid) => sid,
        None => {
            let sid = SignerIdentifier::from_der(sid_der).ok()?;
            repeated.sids.insert(sid_der.to_vec(), sid.clone());
            sid
        }
    };
    let mut algorithm = |der: &[u8]| match repeated.algorithms.get(der) {
        Some(alg) => Some(alg),
        None => {
            let alg = AlgorithmIdentifierOwned::from_der(der).ok()?;
            repeated.algorithms.insert(der.to_vec(), alg.clone());
            Some(alg)
        }
    };
    Some(SignerInfo {
        version,
        sid,
        digest_alg: algorithm(digest_der)?,
        signed_attrs,
        signature_algorithm: algorithm(sig_alg_der)?,
        signature,
        unsigned_attrs,
    })
}

/// The signature value of a signer.
pub fn signature_value(signer: &Signer) -> &[u8] {
    let s: &OctetString = &signer.info.signature;
    s.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per variant: the reason code `verify` reports for it.
    #[test]
    fn every_cms_error_has_its_reason() {
        let table = [
            (CmsError::EncryptedOnly, Reason::Unsigned),
            (CmsError::NotSignedData(ID_DATA), Reason::Unsigned),
            (CmsError::NoSigners, Reason::Unsigned),
            (CmsError::Malformed("x".into()), Reason::Malformed),
            (CmsError::Attributes("x".into()), Reason::Malformed),
            (
                CmsError::Version {
                    what: "SignedData".into(),
                    found: Some(99),
                    expected: 1,
                },
                Reason::Malformed,
            ),
            (
                CmsError::Certificate {
                    index: 0,
                    problem: "x".into(),
                },
                Reason::Malformed,
            ),
            (
                CmsError::Crl {
                    index: 0,
                    problem: "x".into(),
                },
                Reason::Malformed,
            ),
            (CmsError::DigestAlgorithms("x".into()), Reason::Malformed),
            (CmsError::WeakDigest("MD5"), Reason::WeakAlgorithm),
            (
                CmsError::DigestNotListed {
                    signer: 0,
                    oid: ID_DATA,
                },
                Reason::Malformed,
            ),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
        assert_eq!(
            CmsError::Malformed("trailing data in SignedData".into()).to_string(),
            "CMS: trailing data in SignedData"
        );
    }

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::asn1::write_tlv(&mut out, tag, value);
        out
    }

    const SHA256_ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    ];
    const SHA512_ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
    ];
    const MD5_ALG: &[u8] = &[
        0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05, 0x05, 0x00,
    ];
    const RSA_ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];

    /// The parts of a minimal detached SignedData, one SignerInfo
    /// (issuerAndSerialNumber, SHA-256), each replaceable.
    struct Sd {
        version: Vec<u8>,
        digests: Vec<u8>,
        certs: Option<Vec<u8>>,
        crls: Option<Vec<u8>>,
        signer_version: u8,
        after: Vec<u8>,
    }

    impl Default for Sd {
        fn default() -> Self {
            Sd {
                version: vec![1],
                digests: SHA256_ALG.to_vec(),
                certs: None,
                crls: None,
                signer_version: 1,
                after: Vec::new(),
            }
        }
    }

    impl Sd {
        fn der(&self) -> Vec<u8> {
            let sid = tlv(0x30, &[tlv(0x30, &[]), tlv(0x02, &[1])].concat());
            let signer = [
                tlv(0x02, &[self.signer_version]),
                sid,
                SHA256_ALG.to_vec(),
                RSA_ALG.to_vec(),
                tlv(0x04, &[0]),
            ]
            .concat();
            let encap = tlv(0x30, &tlv(0x06, &ID_DATA.to_der().unwrap()[2..]));
            let mut body = [tlv(0x02, &self.version), tlv(0x31, &self.digests), encap].concat();
            if let Some(c) = &self.certs {
                body.extend(tlv(0xa0, c));
            }
            if let Some(c) = &self.crls {
                body.extend(tlv(0xa1, c));
            }
            body.extend(tlv(0x31, &tlv(0x30, &signer)));
            let sd = [tlv(0x30, &body), self.after.clone()].concat();
            let oid = der::Encode::to_der(&ID_SIGNED_DATA).unwrap();
            tlv(0x30, &[oid, tlv(0xa0, &sd)].concat())
        }

        fn error(&self) -> Option<CmsError> {
            parse(&self.der()).err()
        }
    }

    use der::Encode as _;

    /// The error of parsing the default SignedData as `f` changes it.
    fn sd_error(f: impl FnOnce(&mut Sd)) -> Option<CmsError> {
        let mut sd = Sd::default();
        f(&mut sd);
        sd.error()
    }

    #[test]
    fn minimal_signed_data_parses() {
        let der = Sd::default().der();
        let sd = parse(&der).unwrap();
        assert_eq!(sd.digest_algorithms.len(), 1);
        assert!(sd.content.is_none());
        assert!(sd.certificates.is_empty());
    }

    #[test]
    fn versions_are_the_ones_rfc_5652_assigns() {
        let e = sd_error(|s| s.version = vec![99]).unwrap();
        assert_eq!(
            e.to_string(),
            "CMS: SignedData version is 99; RFC 5652 requires 1 for this content"
        );
        let e = sd_error(|s| s.version = vec![3]);
        assert!(
            matches!(e, Some(CmsError::Version { expected: 1, .. })),
            "{e:?}"
        );
        let e = sd_error(|s| s.version = vec![1; 12]);
        assert!(
            matches!(e, Some(CmsError::Version { found: None, .. })),
            "{e:?}"
        );
        let e = sd_error(|s| s.signer_version = 3);
        assert!(
            matches!(&e, Some(CmsError::Version { what, expected: 1, .. }) if what == "SignerInfo 0"),
            "{e:?}"
        );
    }

    #[test]
    fn digest_algorithms_must_cover_the_signers_and_be_strong() {
        let with = |digests: Vec<u8>| sd_error(|s| s.digests = digests);
        assert!(matches!(with(vec![]), Some(CmsError::DigestAlgorithms(_))));
        let md5 = with(MD5_ALG.to_vec()).unwrap();
        assert_eq!(Reason::from(&md5), Reason::WeakAlgorithm);
        assert!(matches!(
            with(SHA512_ALG.to_vec()),
            Some(CmsError::DigestNotListed { signer: 0, .. })
        ));
        assert!(with([SHA512_ALG, SHA256_ALG].concat()).is_none());
        assert!(matches!(
            with(RSA_ALG.to_vec()),
            Some(CmsError::DigestAlgorithms(_))
        ));
        assert!(matches!(
            with(tlv(0x05, &[])),
            Some(CmsError::DigestAlgorithms(_))
        ));
    }

    #[test]
    fn every_certificate_and_crl_must_parse() {
        let certs = |c: Vec<u8>| sd_error(|s| s.certs = Some(c));
        let problem = |e: Option<CmsError>| match e {
            Some(CmsError::Certificate { index, problem }) => (index, problem),
            e => panic!("{e:?}"),
        };
        assert_eq!(
            problem(certs(tlv(0x05, &[]))),
            (0, "is not an X.509 certificate but a NULL".into())
        );
        let huge = tlv(0x04, &vec![0x41; 100_000]);
        assert_eq!(
            problem(certs(huge)).1,
            "is not an X.509 certificate but an OCTET STRING"
        );
        assert!(problem(certs(tlv(0xa2, &[])))
            .1
            .contains("attribute certificate"));
        assert!(problem(certs(tlv(0x30, &[0x02, 0x01, 0x00])))
            .1
            .starts_with("does not parse as an X.509 certificate"));
        let crls = sd_error(|s| s.crls = Some(tlv(0x30, &[0x02, 0x01, 0x00])));
        assert!(
            matches!(crls, Some(CmsError::Crl { index: 0, .. })),
            "{crls:?}"
        );
        let other = sd_error(|s| s.crls = Some(tlv(0xa1, &[0x06, 0x01, 0x01]))).unwrap();
        assert!(
            other
                .to_string()
                .starts_with("CMS: crls[0] is not a CertificateList"),
            "{other}"
        );
    }

    #[test]
    fn names_with_undecodable_strings_are_refused() {
        let name = |tag: u8, value: &[u8]| {
            let der = tlv(
                0x30,
                &tlv(
                    0x31,
                    &tlv(
                        0x30,
                        &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(tag, value)].concat(),
                    ),
                ),
            );
            x509_cert::name::Name::from_der(&der).unwrap()
        };
        assert_eq!(
            bad_name("subject", &name(0x0c, "Ministère".as_bytes())),
            None
        );
        assert_eq!(bad_name("subject", &name(0x13, b"AA")), None);
        assert_eq!(
            bad_name("subject", &name(0x0c, b"Mini\xf4ry")),
            Some("has an invalid value for 2.5.4.3 in its subject".into())
        );
        assert!(bad_name("issuer", &name(0x1e, &[0, 0x41, 0])).is_some());
        assert!(bad_name("issuer", &name(0x1e, &[0xd8, 0x00])).is_some());
        assert_eq!(bad_name("issuer", &name(0x1e, &[0, 0x41])), None);
        assert!(bad_name("issuer", &name(0x53, b"AA")).is_some());
        assert!(bad_name("issuer", &name(0x04, b"AA")).is_some());
        assert_eq!(bad_name("issuer", &name(0x16, b"a@b.example")), None);
    }

    #[test]
    fn trailing_data_after_the_signed_data_is_refused() {
        let e = sd_error(|s| s.after = vec![0x05, 0x00]).unwrap();
        assert_eq!(e.to_string(), "CMS: trailing data after the SignedData");
    }
}
