//! OCSP (RFC 6960), the client side, as pure functions: where to ask
//! ([`ocsp_urls`]), what to ask ([`request`]) and whether an answer can be
//! believed ([`check_response`]). Fetching is the caller's (see
//! [`super::http`]); nothing here touches the network or the clock.
//!
//! Requests follow RFC 5019 (the "lightweight" profile every public
//! responder and `openssl ocsp` serve): one certificate, a SHA-1 CertID, no
//! nonce (caching responders do not echo one) and no requestor signature.
//! SHA-1 there is only an identifier hash, not a signature.
//!
//! A response is believed only when it is signed, with an algorithm the
//! gateway accepts for certificates ([`super::CHAIN_ALGORITHMS`]: no MD5 or
//! SHA-1), either by the certificate's issuer itself or by a delegated
//! responder certificate carried in the response that the issuer signed,
//! that holds extKeyUsage id-kp-OCSPSigning and is valid at the evaluation
//! time (RFC 6960 §4.2.2.2). The delegated certificate's own revocation
//! status is not checked (as with id-pkix-ocsp-nocheck, which such
//! certificates normally carry). A response without nextUpdate is taken as
//! valid for [`NO_NEXT_UPDATE_VALIDITY`] after its thisUpdate.

use std::fmt;

use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, CrlReason};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, OcspRequest, OcspResponse, OcspResponseStatus, ResponderId,
    TbsRequest,
};

use crate::asn1::Reader;
use crate::clock::EvalTime;

/// How long a response without nextUpdate is believed after its
/// thisUpdate: one hour (RFC 5019 §2.2.4 leaves it to the client; CRLs of
/// the test and demo PKIs are refreshed far more rarely).
pub const NO_NEXT_UPDATE_VALIDITY: u64 = 3600;

/// The media type of an OCSP request body (RFC 6960 Appendix A.1).
pub const REQUEST_CONTENT_TYPE: &str = "application/ocsp-request";

/// id-ad-ocsp (1.3.6.1.5.5.7.48.1).
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// SHA-1 and SHA-256, the CertID hash algorithms accepted.
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), DER value octets.
const OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

/// The identity of a certificate for caching its status: SHA-256 over the
/// issuer's name and public key and the serial number (what a CertID says,
/// independent of the CertID's hash algorithm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertKey(pub [u8; 32]);

impl fmt::Display for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A DER OCSPRequest for one certificate, and that certificate's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The OCSPRequest, to POST as [`REQUEST_CONTENT_TYPE`].
    pub der: Vec<u8>,
    /// The certificate's cache key.
    pub key: CertKey,
}

/// The status a responder gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked (as far as the responder knows).
    Good,
    /// Revoked at `time` (Unix seconds), with the reason when given
    /// (RFC 5280 name, e.g. `keyCompromise`).
    Revoked {
        /// revocationTime, Unix seconds.
        time: u64,
        /// revocationReason, RFC 5280 name.
        reason: Option<String>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// A response that verified, for the certificate asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The certificate's status.
    pub status: CertStatus,
    /// thisUpdate of the SingleResponse, Unix seconds.
    pub this_update: u64,
    /// nextUpdate of the SingleResponse, when present, Unix seconds.
    pub next_update: Option<u64>,
    /// producedAt of the response, Unix seconds.
    pub produced_at: u64,
    /// Subject of the certificate whose key signed the response (RFC 4514).
    pub responder: String,
    /// Whether that is a delegated responder certificate, not the issuer.
    pub delegated: bool,
}

impl Answer {
    /// Until when the answer may be used (cached): nextUpdate, or
    /// thisUpdate + [`NO_NEXT_UPDATE_VALIDITY`] without one.
    pub fn valid_until(&self) -> u64 {
        self.next_update
            .unwrap_or(self.this_update.saturating_add(NO_NEXT_UPDATE_VALIDITY))
    }
}

/// Why no OCSP request could be made or a response is not believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OcspError {
    /// A certificate or the response does not parse, or is not what it
    /// should be (what is wrong).
    Malformed(String),
    /// The certificate was not issued by the certificate given as its
    /// issuer (both subjects).
    WrongIssuer {
        /// Subject of the certificate.
        cert: String,
        /// Subject of the certificate given as its issuer.
        issuer: String,
    },
    /// The responder answered with an error status (its RFC 6960 name,
    /// e.g. `tryLater`).
    NotSuccessful(String),
    /// The response holds no status for the certificate (its serial, hex).
    NoMatchingResponse {
        /// The certificate's serial number, hex.
        serial: String,
    },
    /// The response's signature does not verify (with whose key).
    BadSignature(String),
    /// The response is signed by someone not entitled to (why).
    UnauthorizedResponder(String),
    /// nextUpdate (or thisUpdate + [`NO_NEXT_UPDATE_VALIDITY`] when
    /// `implied`) lies before the evaluation time.
    Stale {
        /// Until when the response was valid, Unix seconds.
        next_update: u64,
        /// The evaluation time, Unix seconds.
        at: u64,
        /// The response had no nextUpdate; `next_update` is implied.
        implied: bool,
    },
    /// thisUpdate lies in the future beyond the allowed skew.
    NotYetValid {
        /// thisUpdate, Unix seconds.
        this_update: u64,
        /// The evaluation time, Unix seconds.
        at: u64,
    },
    /// The response (or the delegated responder certificate) is signed
    /// with a refused or unsupported algorithm (which).
    WeakAlgorithm(String),
}

fn when(secs: u64) -> String {
    EvalTime::from_unix(secs).to_rfc3339()
}

impl fmt::Display for OcspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use OcspError as E;
        match self {
            E::Malformed(what) => write!(f, "malformed OCSP data: {what}"),
            E::WrongIssuer { cert, issuer } => write!(
                f,
                "certificate {cert} was not issued by {issuer}, given as its issuer"
            ),
            E::NotSuccessful(status) => {
                write!(f, "the OCSP responder answered with error status {status}")
            }
            E::NoMatchingResponse { serial } => write!(
                f,
                "the OCSP response holds no status for the certificate with serial {serial}"
            ),
            E::BadSignature(whose) => write!(
                f,
                "the signature of the OCSP response does not verify with the key of {whose}"
            ),
            E::UnauthorizedResponder(why) => {
                write!(f, "the OCSP response is not from an authorized responder: {why}")
            }
            E::Stale {
                next_update,
                at,
                implied: false,
            } => write!(
                f,
                "the OCSP response is stale: its nextUpdate was {} (evaluation time {})",
                when(*next_update),
                when(*at)
            ),
            E::Stale {
                next_update,
                at,
                implied: true,
            } => write!(
                f,
                "the OCSP response is stale: it has no nextUpdate and is believed for {} s after its thisUpdate, until {} (evaluation time {})",
                NO_NEXT_UPDATE_VALIDITY,
                when(*next_update),
                when(*at)
            ),
            E::NotYetValid { this_update, at } => write!(
                f,
                "the OCSP response is not yet valid: its thisUpdate is {} (evaluation time {})",
                when(*this_update),
                when(*at)
            ),
            E::WeakAlgorithm(what) => write!(f, "the OCSP response {what}"),
        }
    }
}

impl std::error::Error for OcspError {}

/// The http(s) OCSP responder URLs of a certificate's Authority
/// Information Access extension (id-ad-ocsp), in order; none when the
/// certificate does not parse or names none.
pub fn ocsp_urls(cert_der: &[u8]) -> Vec<String> {
    let Ok(cert) = Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let Ok(Some((_, aia))) = cert.tbs_certificate.get::<AuthorityInfoAccessSyntax>() else {
        return Vec::new();
    };
    aia.0
        .iter()
        .filter(|ad| ad.access_method == ID_AD_OCSP)
        .filter_map(|ad| match &ad.access_location {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str().to_owned()),
            _ => None,
        })
        .filter(|uri| super::revocation::is_http_url(uri))
        .collect()
}

/// The parsed certificate and its issuer, checked to belong together by
/// name.
struct Pair {
    cert: Certificate,
    issuer: Certificate,
    issuer_name: Vec<u8>,
}

impl Pair {
    fn parse(cert_der: &[u8], issuer_der: &[u8]) -> Result<Pair, OcspError> {
        let cert = Certificate::from_der(cert_der)
            .map_err(|e| OcspError::Malformed(format!("the certificate does not parse: {e}")))?;
        let issuer = Certificate::from_der(issuer_der).map_err(|e| {
            OcspError::Malformed(format!("the issuer certificate does not parse: {e}"))
        })?;
        let issuer_name = der_of(&issuer.tbs_certificate.subject)?;
        if der_of(&cert.tbs_certificate.issuer)? != issuer_name {
            return Err(OcspError::WrongIssuer {
                cert: crate::trust::cert::dn(&cert.tbs_certificate.subject),
                issuer: crate::trust::cert::dn(&issuer.tbs_certificate.subject),
            });
        }
        Ok(Pair {
            cert,
            issuer,
            issuer_name,
        })
    }

    fn issuer_key(&self) -> &[u8] {
        self.issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
    }

    fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate.serial_number.as_bytes()
    }

    fn key(&self) -> Result<CertKey, OcspError> {
        Ok(super::revocation::cert_key(&self.issuer, self.serial()))
    }

    /// The CertID of the certificate with SHA-1 (as RFC 5019 requires).
    fn cert_id_sha1(&self) -> Result<CertId, OcspError> {
        let hash = |data: &[u8]| {
            OctetString::new(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref(),
            )
        };
        let malformed = |e: der::Error| OcspError::Malformed(e.to_string());
        Ok(CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: SHA1,
                parameters: Some(Null.into()),
            },
            issuer_name_hash: hash(&self.issuer_name).map_err(malformed)?,
            issuer_key_hash: hash(self.issuer_key()).map_err(malformed)?,
            serial_number: self.cert.tbs_certificate.serial_number.clone(),
        })
    }

    /// Whether `id` names this certificate (SHA-1 or SHA-256 CertID).
    fn matches(&self, id: &CertId) -> bool {
        let alg = if id.hash_algorithm.oid == SHA1 {
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY
        } else if id.hash_algorithm.oid == SHA256 {
            &ring::digest::SHA256
        } else {
            return false;
        };
        id.serial_number == self.cert.tbs_certificate.serial_number
            && id.issuer_name_hash.as_bytes()
                == ring::digest::digest(alg, &self.issuer_name).as_ref()
            && id.issuer_key_hash.as_bytes()
                == ring::digest::digest(alg, self.issuer_key()).as_ref()
    }
}

fn der_of<T: Encode>(value: &T) -> Result<Vec<u8>, OcspError> {
    value
        .to_der()
        .map_err(|e| OcspError::Malformed(format!("cannot be encoded: {e}")))
}

/// An OCSPRequest for `cert_der`, issued by `issuer_der` (both DER): one
/// SHA-1 CertID, no nonce, unsigned.
pub fn request(cert_der: &[u8], issuer_der: &[u8]) -> Result<Request, OcspError> {
    let pair = Pair::parse(cert_der, issuer_der)?;
    let req = OcspRequest {
        tbs_request: TbsRequest {
            version: Default::default(),
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: pair.cert_id_sha1()?,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    Ok(Request {
        der: der_of(&req)?,
        key: pair.key()?,
    })
}

/// The cache key of `cert_der` issued by `issuer_der` (as in
/// [`Request::key`]).
pub fn cert_key(cert_der: &[u8], issuer_der: &[u8]) -> Result<CertKey, OcspError> {
    Pair::parse(cert_der, issuer_der)?.key()
}

/// The raw parts of a BasicOCSPResponse the signature covers and carries.
struct RawBasic<'a> {
    tbs_response_data: &'a [u8],
    certs: Vec<&'a [u8]>,
}

fn raw_basic(basic: &[u8]) -> Result<RawBasic<'_>, OcspError> {
    let bad = |e: crate::asn1::Asn1Error| OcspError::Malformed(format!("BasicOCSPResponse: {e}"));
    let outer = Reader::new(basic)
        .expect(0x30, "not a SEQUENCE")
        .map_err(bad)?;
    let mut fields = Reader::new(outer.value);
    let tbs = fields
        .expect(0x30, "tbsResponseData is not a SEQUENCE")
        .map_err(bad)?;
    fields.read().map_err(bad)?; // signatureAlgorithm
    fields.read().map_err(bad)?; // signature
    let mut certs = Vec::new();
    if fields.peek_tag() == Some(0xa0) {
        let explicit = fields.read().map_err(bad)?;
        let seq = Reader::new(explicit.value)
            .expect(0x30, "certs is not a SEQUENCE")
            .map_err(bad)?;
        let mut list = Reader::new(seq.value);
        while !list.is_empty() {
            certs.push(list.read().map_err(bad)?.raw);
        }
    }
    Ok(RawBasic {
        tbs_response_data: tbs.raw,
        certs,
    })
}

fn status_name(s: OcspResponseStatus) -> &'static str {
    match s {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

fn reason_name(r: CrlReason) -> &'static str {
    match r {
        CrlReason::Unspecified => "unspecified",
        CrlReason::KeyCompromise => "keyCompromise",
        CrlReason::CaCompromise => "cACompromise",
        CrlReason::AffiliationChanged => "affiliationChanged",
        CrlReason::Superseded => "superseded",
        CrlReason::CessationOfOperation => "cessationOfOperation",
        CrlReason::CertificateHold => "certificateHold",
        CrlReason::RemoveFromCRL => "removeFromCRL",
        CrlReason::PrivilegeWithdrawn => "privilegeWithdrawn",
        CrlReason::AaCompromise => "aACompromise",
    }
}

/// Whether `id` names the holder of `cert`: by subject name, or by the
/// SHA-1 hash of its public key (RFC 6960 §4.2.1).
fn responder_is(id: &ResponderId, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    match id {
        ResponderId::ByName(name) => name.to_der().ok() == tbs.subject.to_der().ok(),
        ResponderId::ByKey(hash) => {
            let key = tbs.subject_public_key_info.subject_public_key.raw_bytes();
            hash.as_bytes()
                == ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key).as_ref()
        }
    }
}

fn responder_text(id: &ResponderId) -> String {
    match id {
        ResponderId::ByName(name) => name.to_string(),
        ResponderId::ByKey(hash) => {
            format!("the key with SHA-1 hash {}", hex::encode(hash.as_bytes()))
        }
    }
}

/// The DER contents (without the SEQUENCE header) of an AlgorithmIdentifier,
/// the form rustls-pki-types compares.
fn alg_contents(alg: &AlgorithmIdentifierOwned) -> Result<Vec<u8>, OcspError> {
    let der = der_of(alg)?;
    let tlv = Reader::new(&der)
        .read()
        .map_err(|e| OcspError::Malformed(format!("algorithm identifier: {e}")))?;
    Ok(tlv.value.to_vec())
}

/// Verifies `signature` over `message` with the key of `signer`, by an
/// algorithm of [`super::CHAIN_ALGORITHMS`].
fn verify_signature(
    signer: &Certificate,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), OcspError> {
    let oid = alg.oid.to_string();
    if let Some((_, name)) = super::cert::WEAK_SIGNATURES.iter().find(|(o, _)| *o == oid) {
        return Err(OcspError::WeakAlgorithm(format!(
            "is signed with {name}, which is refused"
        )));
    }
    let spki = &signer.tbs_certificate.subject_public_key_info;
    let sig_alg = alg_contents(alg)?;
    let key_alg = alg_contents(&spki.algorithm)?;
    let Some(verifier) = super::CHAIN_ALGORITHMS.iter().find(|a| {
        a.signature_alg_id().as_ref() == sig_alg.as_slice()
            && a.public_key_alg_id().as_ref() == key_alg.as_slice()
    }) else {
        return Err(OcspError::WeakAlgorithm(format!(
            "is signed with algorithm {oid} for a {} key, which is not supported",
            spki.algorithm.oid
        )));
    };
    verifier
        .verify_signature(spki.subject_public_key.raw_bytes(), message, signature)
        .map_err(|_| {
            OcspError::BadSignature(crate::trust::cert::dn(&signer.tbs_certificate.subject))
        })
}

/// Checks that `responder` (DER, from the response) is a delegated OCSP
/// responder of `issuer` valid at `at`: signed by the issuer, extKeyUsage
/// id-kp-OCSPSigning, not a CA.
fn check_delegate(
    responder: &[u8],
    subject: &str,
    issuer_der: &[u8],
    issuer_subject: &str,
    at: u64,
) -> Result<(), OcspError> {
    use webpki::Error as E;
    let responder_der = CertificateDer::from(responder);
    let ee = webpki::EndEntityCert::try_from(&responder_der).map_err(|e| {
        OcspError::Malformed(format!(
            "the responder certificate {subject} does not parse: {e}"
        ))
    })?;
    let issuer_der = CertificateDer::from(issuer_der);
    let anchor = webpki::anchor_from_trusted_cert(&issuer_der)
        .map_err(|e| OcspError::Malformed(format!("the issuer certificate: {e}")))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at));
    let anchors = [anchor];
    let result = ee.verify_for_usage(
        super::CHAIN_ALGORITHMS,
        &anchors,
        &[],
        time,
        webpki::KeyUsage::required(OCSP_SIGNING),
        None,
        None,
    );
    let unauthorized = |why: String| Err(OcspError::UnauthorizedResponder(why));
    match result {
        Ok(_) => Ok(()),
        Err(E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension) => {
            unauthorized(format!(
                "the responder certificate {subject} lacks extKeyUsage id-kp-OCSPSigning"
            ))
        }
        Err(E::CertExpired { not_after, .. }) => unauthorized(format!(
            "the responder certificate {subject} expired at {} (evaluation time {})",
            when(not_after.as_secs()),
            when(at)
        )),
        Err(E::CertNotValidYet { not_before, .. }) => unauthorized(format!(
            "the responder certificate {subject} is valid only from {} (evaluation time {})",
            when(not_before.as_secs()),
            when(at)
        )),
        Err(E::CaUsedAsEndEntity) => unauthorized(format!(
            "the responder certificate {subject} is a CA certificate"
        )),
        Err(
            E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_),
        ) => Err(OcspError::WeakAlgorithm(format!(
            "comes with responder certificate {subject}, which is signed with a refused or unsupported algorithm"
        ))),
        Err(E::UnknownIssuer | E::InvalidSignatureForPublicKey) => unauthorized(format!(
            "the responder certificate {subject} is not signed by {issuer_subject}, the issuer of the certificate"
        )),
        Err(e) => unauthorized(format!(
            "the responder certificate {subject} is not valid as a delegated responder of {issuer_subject}: {e}"
        )),
    }
}

/// Parses and validates the OCSPResponse `der` for `cert_der` issued by
/// `issuer_der` at the evaluation time `at_unix`, allowing `skew_secs` of
/// clock difference for thisUpdate (see the module documentation for what
/// is checked).
pub fn check_response(
    der: &[u8],
    cert_der: &[u8],
    issuer_der: &[u8],
    at_unix: u64,
    skew_secs: u64,
) -> Result<Answer, OcspError> {
    let pair = Pair::parse(cert_der, issuer_der)?;
    let response = OcspResponse::from_der(der)
        .map_err(|e| OcspError::Malformed(format!("the OCSP response does not parse: {e}")))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::NotSuccessful(
            status_name(response.response_status).to_owned(),
        ));
    }
    let bytes = response.response_bytes.ok_or_else(|| {
        OcspError::Malformed("a successful OCSP response without responseBytes".to_owned())
    })?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(OcspError::Malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der)
        .map_err(|e| OcspError::Malformed(format!("the BasicOCSPResponse does not parse: {e}")))?;
    let raw = raw_basic(basic_der)?;
    let data = &basic.tbs_response_data;
    let issuer_subject = crate::trust::cert::dn(&pair.issuer.tbs_certificate.subject);

    // Who signed: the issuer itself, or a delegated responder carried in
    // the response.
    let delegated_cert;
    let (signer, delegated) = if responder_is(&data.responder_id, &pair.issuer) {
        (&pair.issuer, false)
    } else {
        let found = basic
            .certs
            .iter()
            .flatten()
            .zip(&raw.certs)
            .find(|(c, _)| responder_is(&data.responder_id, c));
        let Some((cert, cert_der)) = found else {
            return Err(OcspError::UnauthorizedResponder(format!(
                "it is signed by {}, which is neither {issuer_subject}, the issuer of the certificate, nor a certificate included in the response",
                responder_text(&data.responder_id)
            )));
        };
        let subject = crate::trust::cert::dn(&cert.tbs_certificate.subject);
        check_delegate(cert_der, &subject, issuer_der, &issuer_subject, at_unix)?;
        delegated_cert = cert;
        (delegated_cert, true)
    };
    verify_signature(
        signer,
        &basic.signature_algorithm,
        raw.tbs_response_data,
        basic.signature.raw_bytes(),
    )?;

    let single = data
        .responses
        .iter()
        .find(|s| pair.matches(&s.cert_id))
        .ok_or_else(|| OcspError::NoMatchingResponse {
            serial: hex::encode(pair.serial()),
        })?;
    let secs = |t: &x509_ocsp::OcspGeneralizedTime| t.0.to_unix_duration().as_secs();
    let this_update = secs(&single.this_update);
    let next_update = single.next_update.as_ref().map(secs);
    if this_update > at_unix.saturating_add(skew_secs) {
        return Err(OcspError::NotYetValid {
            this_update,
            at: at_unix,
        });
    }
    let until = next_update.unwrap_or(this_update.saturating_add(NO_NEXT_UPDATE_VALIDITY));
    if until < at_unix {
        return Err(OcspError::Stale {
            next_update: until,
            at: at_unix,
            implied: next_update.is_none(),
        });
    }
    let status = match &single.cert_status {
        x509_ocsp::CertStatus::Good(_) => CertStatus::Good,
        x509_ocsp::CertStatus::Revoked(info) => CertStatus::Revoked {
            time: secs(&info.revocation_time),
            reason: info.revocation_reason.map(|r| reason_name(r).to_owned()),
        },
        x509_ocsp::CertStatus::Unknown(_) => CertStatus::Unknown,
    };
    Ok(Answer {
        status,
        this_update,
        next_update,
        produced_at: secs(&data.produced_at),
        responder: crate::trust::cert::dn(&signer.tbs_certificate.subject),
        delegated,
    })
}

#[cfg(test)]
mod tests {
    //! Responses built here (rcgen certificates, ring signatures) for what
    //! `openssl ocsp` cannot be made to send; `tests/ocsp.rs` covers a real
    //! responder.
    use super::*;
    use der::asn1::{BitString, GeneralizedTime};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SerialNumber};
    use x509_ocsp::{OcspGeneralizedTime, ResponseBytes, ResponseData, SingleResponse};

    const AT: u64 = 1_800_000_000;
    const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

    struct Fixture {
        ca_key: KeyPair,
        ca: Vec<u8>,
        leaf: Vec<u8>,
        other: Vec<u8>,
    }

    fn params(cn: &str, serial: u8) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from_slice(&[serial]));
        p.not_before = time::OffsetDateTime::from_unix_timestamp(AT as i64 - 86400).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(AT as i64 + 86400).unwrap();
        p
    }

    fn fixture() -> Fixture {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = params("Unit CA", 1);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let leaf = params("leaf", 2)
            .signed_by(&KeyPair::generate().unwrap(), &ca, &ca_key)
            .unwrap();
        let other = params("other", 3)
            .signed_by(&KeyPair::generate().unwrap(), &ca, &ca_key)
            .unwrap();
        Fixture {
            ca: ca.der().to_vec(),
            leaf: leaf.der().to_vec(),
            other: other.der().to_vec(),
            ca_key,
        }
    }

    fn gt(secs: u64) -> OcspGeneralizedTime {
        OcspGeneralizedTime(
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs)).unwrap(),
        )
    }

    fn cert_id(f: &Fixture, cert: &[u8], sha256: bool) -> CertId {
        let pair = Pair::parse(cert, &f.ca).unwrap();
        let id = pair.cert_id_sha1().unwrap();
        if !sha256 {
            return id;
        }
        let h = |d: &[u8]| {
            OctetString::new(ring::digest::digest(&ring::digest::SHA256, d).as_ref()).unwrap()
        };
        CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: SHA256,
                parameters: None,
            },
            issuer_name_hash: h(&pair.issuer_name),
            issuer_key_hash: h(pair.issuer_key()),
            ..id
        }
    }

    fn single(
        id: CertId,
        status: x509_ocsp::CertStatus,
        this: u64,
        next: Option<u64>,
    ) -> SingleResponse {
        SingleResponse {
            cert_id: id,
            cert_status: status,
            this_update: gt(this),
            next_update: next.map(gt),
            single_extensions: None,
        }
    }

    /// A successful response signed with the CA's key (ECDSA P-256 SHA-256),
    /// its ResponderID by key hash; `tamper` flips a signature bit.
    fn response(f: &Fixture, responses: Vec<SingleResponse>, tamper: bool) -> Vec<u8> {
        let ca = Certificate::from_der(&f.ca).unwrap();
        let key = ca
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let key_hash = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, key);
        let data = ResponseData {
            version: Default::default(),
            responder_id: ResponderId::ByKey(OctetString::new(key_hash.as_ref()).unwrap()),
            produced_at: gt(AT),
            responses,
            response_extensions: None,
        };
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &f.ca_key.serialize_der(),
            &rng,
        )
        .unwrap();
        let mut sig = signer
            .sign(&rng, &data.to_der().unwrap())
            .unwrap()
            .as_ref()
            .to_vec();
        if tamper {
            let last = sig.len() - 1;
            sig[last] ^= 1;
        }
        let basic = BasicOcspResponse {
            tbs_response_data: data,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: ECDSA_SHA256,
                parameters: None,
            },
            signature: BitString::from_bytes(&sig).unwrap(),
            certs: None,
        };
        OcspResponse {
            response_status: OcspResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: ID_PKIX_OCSP_BASIC,
                response: OctetString::new(basic.to_der().unwrap()).unwrap(),
            }),
        }
        .to_der()
        .unwrap()
    }

    fn good(f: &Fixture, cert: &[u8], sha256: bool, this: u64, next: Option<u64>) -> Vec<u8> {
        let s = single(
            cert_id(f, cert, sha256),
            x509_ocsp::CertStatus::good(),
            this,
            next,
        );
        response(f, vec![s], false)
    }

    #[test]
    fn sha256_cert_ids_and_responder_by_key_hash() {
        let f = fixture();
        let der = good(&f, &f.leaf, true, AT - 60, Some(AT + 3600));
        let a = check_response(&der, &f.leaf, &f.ca, AT, 300).unwrap();
        assert_eq!(a.status, CertStatus::Good);
        assert_eq!(a.responder, "CN=Unit CA");
        assert!(!a.delegated);
        assert_eq!(a.next_update, Some(AT + 3600));
        assert_eq!(a.produced_at, AT);
    }

    #[test]
    fn the_matching_single_response_is_chosen() {
        let f = fixture();
        let revoked = x509_ocsp::CertStatus::Revoked(x509_ocsp::RevokedInfo {
            revocation_time: gt(AT - 100),
            revocation_reason: Some(CrlReason::CaCompromise),
        });
        let der = response(
            &f,
            vec![
                single(
                    cert_id(&f, &f.other, false),
                    x509_ocsp::CertStatus::good(),
                    AT,
                    None,
                ),
                single(cert_id(&f, &f.leaf, false), revoked, AT, None),
            ],
            false,
        );
        let a = check_response(&der, &f.leaf, &f.ca, AT, 0).unwrap();
        assert_eq!(
            a.status,
            CertStatus::Revoked {
                time: AT - 100,
                reason: Some("cACompromise".into())
            }
        );
        let a = check_response(&der, &f.other, &f.ca, AT, 0).unwrap();
        assert_eq!(a.status, CertStatus::Good);
    }

    #[test]
    fn an_unknown_cert_id_hash_matches_nothing() {
        let f = fixture();
        let mut id = cert_id(&f, &f.leaf, false);
        id.hash_algorithm.oid = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5"); // MD5
        let s = single(id, x509_ocsp::CertStatus::good(), AT, None);
        let e = check_response(&response(&f, vec![s], false), &f.leaf, &f.ca, AT, 0).unwrap_err();
        assert_eq!(
            e,
            OcspError::NoMatchingResponse {
                serial: "02".into()
            }
        );
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let f = fixture();
        let s = single(
            cert_id(&f, &f.leaf, false),
            x509_ocsp::CertStatus::good(),
            AT,
            None,
        );
        let e = check_response(&response(&f, vec![s], true), &f.leaf, &f.ca, AT, 0).unwrap_err();
        assert!(matches!(e, OcspError::BadSignature(_)), "{e:?}");
    }

    #[test]
    fn times_with_skew() {
        let f = fixture();
        // thisUpdate ahead of the evaluation time: within the skew or not.
        let der = good(&f, &f.leaf, false, AT + 200, None);
        assert!(check_response(&der, &f.leaf, &f.ca, AT, 300).is_ok());
        let e = check_response(&der, &f.leaf, &f.ca, AT, 100).unwrap_err();
        assert_eq!(
            e,
            OcspError::NotYetValid {
                this_update: AT + 200,
                at: AT
            }
        );
        // nextUpdate exactly now is still valid, a second earlier is stale.
        let der = good(&f, &f.leaf, false, AT - 600, Some(AT));
        assert!(check_response(&der, &f.leaf, &f.ca, AT, 0).is_ok());
        let e = check_response(&der, &f.leaf, &f.ca, AT + 1, 0).unwrap_err();
        assert_eq!(
            e,
            OcspError::Stale {
                next_update: AT,
                at: AT + 1,
                implied: false
            }
        );
        assert_eq!(
            e.to_string(),
            "the OCSP response is stale: its nextUpdate was 2027-01-15T08:00:00Z (evaluation time 2027-01-15T08:00:01Z)"
        );
        // Without nextUpdate: an hour after thisUpdate.
        let der = good(&f, &f.leaf, false, AT, None);
        assert!(check_response(&der, &f.leaf, &f.ca, AT + NO_NEXT_UPDATE_VALIDITY, 0).is_ok());
        let e =
            check_response(&der, &f.leaf, &f.ca, AT + NO_NEXT_UPDATE_VALIDITY + 1, 0).unwrap_err();
        assert!(matches!(e, OcspError::Stale { implied: true, .. }), "{e:?}");
    }

    #[test]
    fn error_statuses_and_malformed_responses() {
        let f = fixture();
        let try_later = OcspResponse::try_later().to_der().unwrap();
        let e = check_response(&try_later, &f.leaf, &f.ca, AT, 0).unwrap_err();
        assert_eq!(e, OcspError::NotSuccessful("tryLater".into()));
        assert_eq!(
            e.to_string(),
            "the OCSP responder answered with error status tryLater"
        );
        let e = check_response(b"<html>", &f.leaf, &f.ca, AT, 0).unwrap_err();
        assert!(matches!(e, OcspError::Malformed(_)), "{e:?}");
        let empty = OcspResponse {
            response_status: OcspResponseStatus::Successful,
            response_bytes: None,
        };
        let e = check_response(&empty.to_der().unwrap(), &f.leaf, &f.ca, AT, 0).unwrap_err();
        assert!(matches!(e, OcspError::Malformed(_)), "{e:?}");
        let other_type = OcspResponse {
            response_status: OcspResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: ID_AD_OCSP,
                response: OctetString::new(vec![0x30, 0x00]).unwrap(),
            }),
        };
        let e = check_response(&other_type.to_der().unwrap(), &f.leaf, &f.ca, AT, 0).unwrap_err();
        assert!(e.to_string().contains("not id-pkix-ocsp-basic"), "{e}");
    }

    #[test]
    fn requests_and_keys() {
        let f = fixture();
        let r = request(&f.leaf, &f.ca).unwrap();
        let parsed = OcspRequest::from_der(&r.der).unwrap();
        assert!(parsed.optional_signature.is_none());
        assert!(parsed.tbs_request.request_extensions.is_none(), "no nonce");
        let list = &parsed.tbs_request.request_list;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].req_cert.hash_algorithm.oid, SHA1);
        assert_eq!(list[0].req_cert, cert_id(&f, &f.leaf, false));
        assert_eq!(r.key, cert_key(&f.leaf, &f.ca).unwrap());
        assert_ne!(r.key, cert_key(&f.other, &f.ca).unwrap());
        assert_eq!(r.key.to_string().len(), 64);
        assert!(matches!(
            request(&f.leaf, &f.leaf),
            Err(OcspError::WrongIssuer { .. })
        ));
        assert!(matches!(
            request(b"junk", &f.ca),
            Err(OcspError::Malformed(_))
        ));
    }
}
