//! CMS SignedData (RFC 5652) as carried by S/MIME.
//!
//! The outer structure is walked by hand so that the original encodings of
//! certificates and signed attributes survive: signatures cover those exact
//! bytes, and decoding a SET OF into the `cms` types re-sorts it.

use cms::signed_data::SignerInfo;
use der::asn1::{ObjectIdentifier, OctetString};
use der::Decode;

use crate::asn1::{Reader, Tlv};
use crate::reason::Reason;

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
}

impl std::fmt::Display for CmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmsError::EncryptedOnly => f.write_str("the message is encrypted but not signed"),
            CmsError::NotSignedData(oid) => write!(f, "CMS content type {oid} is not signedData"),
            CmsError::NoSigners => f.write_str("the SignedData has no signers"),
            CmsError::Malformed(d) => write!(f, "CMS: {d}"),
            CmsError::Attributes(d) => f.write_str(d),
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
            CmsError::Malformed(_) | CmsError::Attributes(_) => Reason::Malformed,
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
    let mut top = Reader::new(der);
    let content_info = top
        .expect(0x30, "CMS ContentInfo is not a SEQUENCE")
        .map_err(malformed)?;
    if !top.is_empty() {
        return Err(malformed("trailing data after the CMS ContentInfo"));
    }
    let mut ci = Reader::new(content_info.value);
    let oid = read_oid(&mut ci, "ContentInfo contentType")?;
    if oid == ID_ENVELOPED_DATA || oid == ID_AUTH_ENVELOPED_DATA {
        return Err(CmsError::EncryptedOnly);
    }
    if oid != ID_SIGNED_DATA {
        return Err(CmsError::NotSignedData(oid));
    }
    let explicit = ci
        .expect(0xa0, "ContentInfo content is not [0] EXPLICIT")
        .map_err(malformed)?;
    let signed_data = Reader::new(explicit.value)
        .expect(0x30, "SignedData is not a SEQUENCE")
        .map_err(malformed)?;

    let mut sd = Reader::new(signed_data.value);
    sd.expect(0x02, "SignedData version is not an INTEGER")
        .map_err(malformed)?;
    sd.expect(0x31, "SignedData digestAlgorithms is not a SET")
        .map_err(malformed)?;
    let encap = sd
        .expect(0x30, "encapContentInfo is not a SEQUENCE")
        .map_err(malformed)?;
    let (content_type, content) = parse_encap(encap)?;

    let mut certificates = Vec::new();
    if sd.peek_tag() == Some(0xa0) {
        let set = sd.read().map_err(malformed)?;
        let mut certs = Reader::new(set.value);
        while !certs.is_empty() {
            let choice = certs.read().map_err(malformed)?;
            // Only plain X.509 certificates; attribute and other
            // certificate formats play no part in S/MIME signing.
            if choice.tag == 0x30 {
                certificates.push(choice.raw);
            }
        }
    }
    if sd.peek_tag() == Some(0xa1) {
        sd.read().map_err(malformed)?; // CRLs in messages are not trusted
    }
    let infos = sd
        .expect(0x31, "SignedData signerInfos is not a SET")
        .map_err(malformed)?;
    if !sd.is_empty() {
        return Err(malformed("trailing data in SignedData"));
    }
    let mut signers = Vec::new();
    let mut reader = Reader::new(infos.value);
    while !reader.is_empty() {
        let tlv = reader
            .expect(0x30, "SignerInfo is not a SEQUENCE")
            .map_err(malformed)?;
        signers.push(parse_signer(tlv)?);
    }
    if signers.is_empty() {
        return Err(CmsError::NoSigners);
    }
    Ok(SignedData {
        content_type,
        content,
        certificates,
        signers,
    })
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
    let explicit = r
        .expect(0xa0, "eContent is not [0] EXPLICIT")
        .map_err(malformed)?;
    let octets = Reader::new(explicit.value)
        .expect(0x04, "eContent is not an OCTET STRING")
        .map_err(malformed)?;
    Ok((content_type, Some(octets.value)))
}

fn parse_signer(tlv: Tlv<'_>) -> Result<Signer, CmsError> {
    let info = SignerInfo::from_der(tlv.raw).map_err(|e| malformed(format!("SignerInfo: {e}")))?;
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
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
        assert_eq!(
            CmsError::Malformed("trailing data in SignedData".into()).to_string(),
            "CMS: trailing data in SignedData"
        );
    }
}
