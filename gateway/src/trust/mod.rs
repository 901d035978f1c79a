//! Certificate path validation and revocation: does a signer certificate
//! chain to the trust anchors of one particular authority?

pub mod cert;
pub mod http;
pub mod memo;
pub mod ocsp;
pub mod pss;
pub mod revocation;

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use rustls_pki_types::{CertificateDer, TrustAnchor};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage};

use crate::clock::EvalTime;
use crate::reason::Reason;
use cert::{CertFacts, CertInfo};
use memo::{Generations, Memo};
use revocation::{Crl, CrlPolicy, OcspMode, RevocationSet, StatusEvidence, Want};

/// Why a signer certificate's path or its revocation status is not
/// acceptable. Each variant carries what its sentence names; `verify`
/// takes the reason code from [`Reason::from`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustError {
    // Certificates as sent.
    /// A certificate sent with the message cannot be parsed.
    MessageCert(cert::CertError),
    /// The validator cannot read the signer certificate.
    SignerCert(webpki::Error),
    /// A certificate of the chain cannot be parsed for the revocation check.
    ChainCert(String),
    /// A certificate is signed with a refused algorithm (MD5, SHA-1).
    WeakCertSignature {
        /// Its subject.
        subject: String,
        /// The algorithm's name.
        algorithm: &'static str,
    },
    /// A certificate has an RSA key shorter than the policy allows.
    ShortRsaKey {
        /// Its subject.
        subject: String,
        /// The key's size in bits.
        bits: usize,
        /// The policy's minimum.
        min: usize,
    },

    // Path validation.
    /// A certificate of the path has expired at the evaluation time.
    Expired {
        /// Its notAfter, Unix seconds.
        not_after: u64,
        /// The evaluation time, Unix seconds.
        time: u64,
    },
    /// A certificate of the path is not yet valid at the evaluation time.
    NotYetValid {
        /// Its notBefore, Unix seconds.
        not_before: u64,
        /// The evaluation time, Unix seconds.
        time: u64,
    },
    /// No issuer on the path is an anchor of the authority or was sent.
    UnknownIssuer {
        /// The authority's id.
        authority: String,
        /// Its country.
        country: String,
    },
    /// A certificate's signature does not verify with its issuer's key.
    BadCertSignature {
        /// The authority's id.
        authority: String,
        /// Its country.
        country: String,
    },
    /// The path validated, but to an anchor not among the authority's
    /// anchor certificates.
    UnidentifiedAnchor,
    /// Another reason the path does not lead to the authority's anchors.
    Untrusted(webpki::Error),
    /// keyUsage or extKeyUsage on the path does not allow e-mail signing.
    WrongUsage(webpki::Error),
    /// A certificate of the path is signed with a refused algorithm.
    WeakAlgorithm(webpki::Error),
    /// A certificate of the path is malformed.
    Malformed(webpki::Error),
    /// The signer certificate's extKeyUsage or keyUsage does not allow
    /// e-mail signing (RFC 8550 §4.4, `require_email_eku`).
    SignerUsage {
        /// Its subject.
        subject: String,
        /// What is wrong.
        problem: UsageProblem,
    },

    // Revocation.
    /// The validator found a certificate of the path on a CRL.
    CrlRevoked {
        /// The authority's id.
        authority: String,
    },
    /// The validator found a stale CRL.
    CrlStale {
        /// The authority's id.
        authority: String,
        /// The CRL's nextUpdate, Unix seconds.
        next_update: u64,
        /// The evaluation time, Unix seconds.
        time: u64,
    },
    /// The validator found no CRL covering a certificate of the path.
    NoCrlCoverage {
        /// The authority's id.
        authority: String,
    },
    /// A certificate of the path is on its issuer's CRL.
    RevokedByCrl {
        /// The certificate's subject.
        subject: String,
        /// Its serial, hex.
        serial: String,
        /// The CRL's issuer.
        issuer: String,
        /// The revocation date, Unix seconds.
        since: u64,
        /// The CRL reason code, if given.
        reason: Option<String>,
    },
    /// An OCSP responder says a certificate of the path is revoked.
    RevokedByOcsp {
        /// The certificate's subject.
        subject: String,
        /// Its serial, hex.
        serial: String,
        /// Who signed the answer.
        responder: String,
        /// The revocation time, Unix seconds.
        since: u64,
        /// The CRL reason code, if given.
        reason: Option<String>,
    },
    /// An OCSP responder does not know a certificate of the path.
    OcspUnknown {
        /// Who signed the answer.
        responder: String,
        /// The certificate's subject.
        subject: String,
        /// Its serial, hex.
        serial: String,
    },
    /// No fresh CRL, and no OCSP responder to ask.
    CrlUnavailable(revocation::NoStatus),
    /// No fresh CRL, and no OCSP answer from the certificate's responders.
    OcspUnavailable {
        /// Why no CRL settles it.
        crl: revocation::NoStatus,
        /// The responder URLs.
        responders: Vec<String>,
    },
}

/// What is wrong with the signer certificate's usage extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageProblem {
    /// No extKeyUsage, and the policy requires one with emailProtection.
    NoEku,
    /// anyExtendedKeyUsage without emailProtection, which the policy requires.
    AnyEkuOnly,
    /// extKeyUsage without emailProtection or anyExtendedKeyUsage.
    EkuWithoutEmail,
    /// keyUsage without digitalSignature or nonRepudiation.
    KeyUsage,
}

impl fmt::Display for UsageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UsageProblem::NoEku => {
                "has no extKeyUsage; the policy (require_email_eku) requires one with emailProtection"
            }
            UsageProblem::AnyEkuOnly => {
                "has an extKeyUsage with anyExtendedKeyUsage but without emailProtection, \
                 which the policy (require_email_eku) requires"
            }
            UsageProblem::EkuWithoutEmail => {
                "has an extKeyUsage without emailProtection or anyExtendedKeyUsage"
            }
            UsageProblem::KeyUsage => "has keyUsage without digitalSignature or nonRepudiation",
        })
    }
}

impl TrustError {
    /// The error for a rustls-webpki path validation failure against
    /// `authority`.
    fn from_webpki(e: webpki::Error, authority: &AuthorityTrust<'_>) -> TrustError {
        use webpki::Error as E;
        let id = || authority.id.to_string();
        match e {
            E::CertExpired { time, not_after } => TrustError::Expired {
                not_after: not_after.as_secs(),
                time: time.as_secs(),
            },
            E::CertNotValidYet { time, not_before } => TrustError::NotYetValid {
                not_before: not_before.as_secs(),
                time: time.as_secs(),
            },
            E::CertRevoked => TrustError::CrlRevoked { authority: id() },
            E::CrlExpired { time, next_update } => TrustError::CrlStale {
                authority: id(),
                next_update: next_update.as_secs(),
                time: time.as_secs(),
            },
            E::UnknownRevocationStatus => TrustError::NoCrlCoverage { authority: id() },
            E::UnknownIssuer => TrustError::UnknownIssuer {
                authority: id(),
                country: authority.country.to_string(),
            },
            E::InvalidSignatureForPublicKey => TrustError::BadCertSignature {
                authority: id(),
                country: authority.country.to_string(),
            },
            E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension | E::CaUsedAsEndEntity => {
                TrustError::WrongUsage(e)
            }
            E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                TrustError::WeakAlgorithm(e)
            }
            E::BadDer
            | E::BadDerTime
            | E::TrailingData(_)
            | E::MalformedExtensions
            | E::ExtensionValueInvalid
            | E::InvalidCertValidity
            | E::InvalidSerialNumber
            | E::SignatureAlgorithmMismatch => TrustError::Malformed(e),
            _ => TrustError::Untrusted(e),
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: &u64| EvalTime::from_unix(*t).to_rfc3339();
        let chain = "a certificate of the signer's chain";
        match self {
            TrustError::MessageCert(e) => write!(f, "certificate in the message: {e}"),
            TrustError::SignerCert(e) => write!(f, "signer certificate: {e}"),
            TrustError::ChainCert(e) => write!(f, "certificate of the chain: {e}"),
            TrustError::WeakCertSignature { subject, algorithm } => {
                write!(f, "certificate {subject} is signed with {algorithm}")
            }
            TrustError::ShortRsaKey { subject, bits, min } => write!(
                f,
                "certificate {subject} has a {bits}-bit RSA key (minimum {min})"
            ),
            TrustError::Expired { not_after, time } => write!(
                f,
                "{chain} expired at {} (evaluation time {})",
                when(not_after),
                when(time)
            ),
            TrustError::NotYetValid { not_before, time } => write!(
                f,
                "{chain} is valid only from {} (evaluation time {})",
                when(not_before),
                when(time)
            ),
            TrustError::UnknownIssuer { authority, country } => write!(
                f,
                "the signer certificate does not chain to the trust anchors of authority \
                 {authority} ({country}): no issuer on its path is one of them or was sent \
                 with the message"
            ),
            TrustError::BadCertSignature { authority, country } => write!(
                f,
                "the signer certificate does not chain to the trust anchors of authority \
                 {authority} ({country}): the signature on a certificate of its path does not \
                 verify with its issuer's key"
            ),
            TrustError::UnidentifiedAnchor => {
                f.write_str("the validated path ends at an anchor that cannot be identified")
            }
            TrustError::Untrusted(e)
            | TrustError::WrongUsage(e)
            | TrustError::WeakAlgorithm(e)
            | TrustError::Malformed(e) => f.write_str(&describe(e)),
            TrustError::SignerUsage { subject, problem } => {
                write!(f, "signer certificate {subject} {problem}")
            }
            TrustError::CrlRevoked { authority } => {
                write!(f, "{chain} is revoked by a CRL of authority {authority}")
            }
            TrustError::CrlStale {
                authority,
                next_update,
                time,
            } => write!(
                f,
                "a CRL of authority {authority} is stale: its nextUpdate was {} \
                 (evaluation time {})",
                when(next_update),
                when(time)
            ),
            TrustError::NoCrlCoverage { authority } => {
                write!(f, "no CRL of authority {authority} covers {chain}")
            }
            TrustError::RevokedByCrl {
                subject,
                serial,
                issuer,
                since,
                reason,
            } => write!(
                f,
                "certificate {subject} (serial {serial}) is revoked by the CRL of {issuer} \
                 since {}{}",
                when(since),
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            TrustError::RevokedByOcsp {
                subject,
                serial,
                responder,
                since,
                reason,
            } => write!(
                f,
                "certificate {subject} (serial {serial}) is revoked according to the OCSP \
                 responder {responder} since {}{}",
                when(since),
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            TrustError::OcspUnknown {
                responder,
                subject,
                serial,
            } => write!(
                f,
                "the OCSP responder {responder} does not know certificate {subject} \
                 (serial {serial})"
            ),
            TrustError::CrlUnavailable(crl) => crl.fmt(f),
            TrustError::OcspUnavailable { crl, responders } => write!(
                f,
                "{crl}, and no OCSP answer from {} is at hand",
                responders.join(", ")
            ),
        }
    }
}

impl std::error::Error for TrustError {}

impl From<&TrustError> for Reason {
    fn from(e: &TrustError) -> Reason {
        match e {
            TrustError::MessageCert(_)
            | TrustError::SignerCert(_)
            | TrustError::ChainCert(_)
            | TrustError::Malformed(_) => Reason::Malformed,
            TrustError::WeakCertSignature { .. }
            | TrustError::ShortRsaKey { .. }
            | TrustError::WeakAlgorithm(_) => Reason::WeakAlgorithm,
            TrustError::Expired { .. } => Reason::Expired,
            TrustError::NotYetValid { .. } => Reason::NotYetValid,
            TrustError::UnknownIssuer { .. }
            | TrustError::BadCertSignature { .. }
            | TrustError::UnidentifiedAnchor
            | TrustError::Untrusted(_) => Reason::UntrustedChain,
            TrustError::WrongUsage(_) | TrustError::SignerUsage { .. } => Reason::WrongUsage,
            TrustError::CrlRevoked { .. }
            | TrustError::RevokedByCrl { .. }
            | TrustError::RevokedByOcsp { .. } => Reason::Revoked,
            TrustError::CrlStale { .. }
            | TrustError::NoCrlCoverage { .. }
            | TrustError::CrlUnavailable(_) => Reason::CrlUnavailable,
            TrustError::OcspUnavailable { .. } => Reason::OcspUnavailable,
            TrustError::OcspUnknown { .. } => Reason::RevocationUnknown,
        }
    }
}

/// id-kp-emailProtection (1.3.6.1.5.5.7.3.4), DER value octets.
const EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];
/// anyExtendedKeyUsage (2.5.29.37.0), DER value octets.
const ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// The extKeyUsage rule of RFC 8550 §4.4 for every certificate of the path:
/// no extension, or one holding emailProtection or anyExtendedKeyUsage.
/// (webpki's `KeyUsage::required_if_present(EMAIL_PROTECTION)` refuses an
/// extension holding only anyExtendedKeyUsage.) The stricter
/// `require_email_eku` policy is applied to the signer by `verify`.
struct EmailEku;

impl ExtendedKeyUsageValidator for EmailEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let (email, any) = (
            KeyPurposeId::new(EMAIL_PROTECTION),
            KeyPurposeId::new(ANY_EKU),
        );
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if id == email || id == any {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: KeyUsage::required(EMAIL_PROTECTION),
                present,
            },
        ))
    }
}

/// Signature algorithms accepted on certificates and CRLs. SHA-1 and MD5
/// are absent, so chains using them cannot validate. RSASSA-PSS is accepted
/// from rsaEncryption and from id-RSASSA-PSS keys ([`pss`]). Successes are
/// remembered ([`memo`]).
pub static CHAIN_ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    &Memo(webpki::ring::ECDSA_P256_SHA256),
    &Memo(webpki::ring::ECDSA_P256_SHA384),
    &Memo(webpki::ring::ECDSA_P384_SHA256),
    &Memo(webpki::ring::ECDSA_P384_SHA384),
    &Memo(webpki::ring::ED25519),
    &Memo(webpki::ring::RSA_PKCS1_2048_8192_SHA256),
    &Memo(webpki::ring::RSA_PKCS1_2048_8192_SHA384),
    &Memo(webpki::ring::RSA_PKCS1_2048_8192_SHA512),
    &Memo(webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS),
    &Memo(webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS),
    &Memo(webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS),
    &Memo(webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY),
    &Memo(webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY),
    &Memo(webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY),
    &Memo(&pss::ANY_KEY_SHA256),
    &Memo(&pss::ANY_KEY_SHA384),
    &Memo(&pss::ANY_KEY_SHA512),
    &Memo(&pss::SHA256_KEY),
    &Memo(&pss::SHA384_KEY),
    &Memo(&pss::SHA512_KEY),
];

/// What path validation needs of one authority: its trust anchors, the
/// certificates and CRL files its policy lists, how its revocation status
/// is learnt, and its id and country for messages. Lent by
/// `policy::Authority::trust`.
#[derive(Clone, Copy)]
pub struct AuthorityTrust<'a> {
    /// Stable identifier, e.g. `fr-moj`.
    pub id: &'a str,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: &'a str,
    /// Its trust anchors.
    pub anchors: &'a [TrustAnchor<'static>],
    /// The anchors' certificates, in the order of `anchors`.
    pub anchor_certs: &'a [CertificateDer<'static>],
    /// Configured intermediate CA certificates.
    pub intermediates: &'a [CertificateDer<'static>],
    /// The CRL files its policy lists.
    pub crls: &'a [Arc<Crl>],
    /// Whether and how OCSP is asked.
    pub ocsp: OcspMode,
    /// Whether the CRL distribution points of its CA certificates are
    /// downloaded.
    pub fetch_cdp: bool,
}

/// A chain that validated: DER certificates from the signer to the anchor's
/// issuer-side (intermediates only; the anchor is reported separately).
pub struct ValidPath {
    /// Intermediate certificates used, signer side first.
    pub intermediates: Vec<Vec<u8>>,
    /// Index of the anchor in [`AuthorityTrust::anchor_certs`], when identified.
    pub anchor: Option<usize>,
    /// The path's certificates parsed: signer, intermediates, anchor.
    pub chain: Vec<Arc<CertFacts>>,
}

/// The revocation side of one validation: where data comes from, how
/// strict to be, and what was used.
pub struct RevocationCheck<'a> {
    /// Data gathered at run time (downloads, OCSP answers).
    pub fetched: &'a RevocationSet,
    /// Missing or stale status: refuse or accept.
    pub crl_policy: CrlPolicy,
    /// What established each certificate's status.
    pub evidence: Vec<StatusEvidence>,
    /// Revocation data that was needed but not at hand.
    pub wants: Vec<Want>,
    /// The CA certificates (DER) of the validated path below the anchor:
    /// downloaded CRLs may be signed by them.
    pub path_cas: Vec<Vec<u8>>,
}

impl<'a> RevocationCheck<'a> {
    /// A check with nothing used yet.
    pub fn new(fetched: &'a RevocationSet, crl_policy: CrlPolicy) -> Self {
        RevocationCheck {
            fetched,
            crl_policy,
            evidence: Vec::new(),
            wants: Vec::new(),
            path_cas: Vec::new(),
        }
    }
}

/// Validates `signer` against `authority`'s anchors at `at`, with
/// intermediates from the message and the authority's configuration, then
/// the revocation status of every certificate of the path ([`revocation`]).
/// A path that validated before (the same certificates, the same trust
/// inputs) is taken from [`PATHS`] while `at` is within the validity of its
/// certificates; revocation is checked on every call.
pub fn validate(
    authority: &AuthorityTrust<'_>,
    signer: &CertInfo<'_>,
    message_certs: &[CertInfo<'_>],
    at: EvalTime,
    rev: &mut RevocationCheck<'_>,
) -> Result<ValidPath, TrustError> {
    let key = path_key(authority, signer, message_certs);
    let t = at.unix();
    let cached = PATHS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .filter(|v| v.window.0 <= t && t <= v.window.1);
    let path = match cached {
        Some(path) => path,
        None => {
            let path = Arc::new(build_path(authority, signer, message_certs, at)?);
            if path.chain.is_ok() {
                PATHS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, path.clone());
            }
            path
        }
    };
    rev.path_cas.clone_from(&path.intermediates);
    let chain = path.chain.clone()?;
    let parsed: Vec<&CertFacts> = chain.iter().map(|c| &**c).collect();
    let sources = revocation::Sources {
        files: authority.crls,
        fetched: rev.fetched,
    };
    let opts = revocation::Options {
        crl_policy: rev.crl_policy,
        ocsp: authority.ocsp,
        fetch_cdp: authority.fetch_cdp,
    };
    revocation::check_path(
        &parsed,
        &sources,
        opts,
        at,
        &mut rev.evidence,
        &mut rev.wants,
    )?;
    Ok(ValidPath {
        intermediates: path.intermediates.clone(),
        anchor: Some(path.anchor),
        chain,
    })
}

/// A path webpki validated, with what the revocation check and the reports
/// need of it.
struct Validated {
    /// Its intermediates (DER), signer side first.
    intermediates: Vec<Vec<u8>>,
    /// Index of its anchor in [`AuthorityTrust::anchor_certs`].
    anchor: usize,
    /// Signer, intermediates and anchor parsed, or why one does not parse.
    chain: Result<Vec<Arc<CertFacts>>, TrustError>,
    /// When every certificate whose validity webpki checks (all but the
    /// anchor) is valid: notBefore..=notAfter, Unix seconds.
    window: (u64, u64),
}

/// Validated paths per generation; two generations are kept.
const PATH_GENERATION: usize = 512;

/// Paths that validated, by [`path_key`]: only successes, so a path is
/// reused exactly when webpki would validate it again (signatures, names,
/// constraints and usages are functions of the bytes; the time is checked
/// against the window).
static PATHS: LazyLock<Mutex<Generations<[u8; 32], Arc<Validated>>>> =
    LazyLock::new(|| Mutex::new(Generations::new(PATH_GENERATION)));

/// SHA-256 of everything path validation reads besides the time: the
/// signer, the message's certificates in order, and the authority's
/// intermediates, anchors and anchor certificates.
fn path_key(
    authority: &AuthorityTrust<'_>,
    signer: &CertInfo<'_>,
    message_certs: &[CertInfo<'_>],
) -> [u8; 32] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefixed, so no two inputs share an encoding.
    let mut part = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(&signer.sha256);
    for c in message_certs {
        part(&c.sha256);
    }
    for group in [authority.intermediates, authority.anchor_certs] {
        part(&(group.len() as u64).to_be_bytes());
        for c in group {
            // By the SHA-256 of its facts (found, not computed, once parsed).
            match CertInfo::parse(c) {
                Ok(info) => part(&info.sha256),
                Err(_) => part(&[&[0u8][..], c.as_ref()].concat()),
            }
        }
    }
    part(&(authority.anchors.len() as u64).to_be_bytes());
    for a in authority.anchors {
        part(a.subject.as_ref());
        part(a.subject_public_key_info.as_ref());
        match &a.name_constraints {
            Some(nc) => part(&[&[1u8][..], nc.as_ref()].concat()),
            None => part(&[0]),
        }
    }
    h.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Path validation by webpki (without revocation) and the anchor it ended at.
fn build_path(
    authority: &AuthorityTrust<'_>,
    signer: &CertInfo<'_>,
    message_certs: &[CertInfo<'_>],
    at: EvalTime,
) -> Result<Validated, TrustError> {
    let signer_der = CertificateDer::from(signer.der);
    let ee = EndEntityCert::try_from(&signer_der).map_err(TrustError::SignerCert)?;
    let mut intermediates: Vec<CertificateDer<'_>> = message_certs
        .iter()
        .filter(|c| c.der != signer.der)
        .map(|c| CertificateDer::from(c.der))
        .collect();
    intermediates.extend(authority.intermediates.iter().cloned());

    let path = ee
        .verify_for_usage(
            CHAIN_ALGORITHMS,
            authority.anchors,
            &intermediates,
            at.to_webpki(),
            // CA certificates commonly carry no EKU; a stricter rule for the
            // signer's own EKU is the caller's (`verify`), which sees the
            // whole picture.
            EmailEku,
            // Revocation is checked afterwards, against the issuers of this path.
            None,
            None,
        )
        .map_err(|e| TrustError::from_webpki(e, authority))?;

    let anchor_subject = path.anchor().subject.as_ref();
    let anchor = authority
        .anchor_certs
        .iter()
        .position(|c| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.subject.as_ref() == anchor_subject)
                .unwrap_or(false)
        })
        .ok_or(TrustError::UnidentifiedAnchor)?;
    let intermediates: Vec<Vec<u8>> = path
        .intermediate_certificates()
        .map(|c| c.der().to_vec())
        .collect();
    let mut chain = vec![signer.facts().clone()];
    let mut window = signer.validity;
    let parsed = intermediates
        .iter()
        .map(|der| CertInfo::parse(der).map(|c| c.facts().clone()))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|cas| {
            let anchor = CertInfo::parse(&authority.anchor_certs[anchor])?;
            Ok((cas, anchor.facts().clone()))
        })
        .map_err(|e| TrustError::ChainCert(e.0.to_string()));
    let chain = parsed.map(|(cas, anchor)| {
        for ca in &cas {
            window = (window.0.max(ca.validity.0), window.1.min(ca.validity.1));
        }
        chain.extend(cas);
        chain.push(anchor);
        chain
    });
    Ok(Validated {
        intermediates,
        anchor,
        chain,
        window,
    })
}

/// A sentence saying what a rustls-webpki error means for the signer's
/// certificate path (or a signature checked with a certificate's key).
pub fn describe(e: &webpki::Error) -> String {
    use webpki::Error as E;
    let chain = "a certificate of the signer's chain";
    match e {
        E::BadDer => format!("{chain} is not valid DER"),
        E::BadDerTime => format!("{chain} has a validity time that is not valid DER"),
        E::TrailingData(what) => {
            format!(
                "{chain} has unexpected data after its {}",
                der_type_name(*what)
            )
        }
        E::MalformedExtensions => format!("{chain} has unparsable or duplicate extensions"),
        E::ExtensionValueInvalid => format!("{chain} has an extension with an invalid value"),
        E::InvalidCertValidity => format!("{chain} has a notBefore later than its notAfter"),
        E::InvalidSerialNumber => format!("{chain} has an invalid serial number"),
        E::SignatureAlgorithmMismatch => format!(
            "{chain} names a different signature algorithm inside (tbsCertificate) than outside"
        ),
        E::CaUsedAsEndEntity => "the signer certificate is a CA certificate".to_string(),
        E::EndEntityUsedAsCa => format!(
            "{chain} issues another certificate but is not a CA (basicConstraints cA is not set)"
        ),
        E::PathLenConstraintViolated => {
            "the signer's chain is longer than the pathLenConstraint of one of its CAs allows"
                .to_string()
        }
        E::UnsupportedCertVersion => format!(
            "{chain} is not an X.509 version 3 certificate (only a trust anchor may be version 1)"
        ),
        E::UnsupportedCriticalExtension => {
            format!("{chain} has a critical extension the gateway does not know")
        }
        E::CertDistrusted => format!("{chain} has a key that is explicitly distrusted"),
        E::NameConstraintViolation => {
            format!("{chain} has a name outside the name constraints of an issuing CA")
        }
        E::MalformedNameConstraint
        | E::InvalidNetworkMaskConstraint
        | E::MaximumNameConstraintComparisonsExceeded => {
            "the name constraints of a CA of the signer's chain cannot be processed".to_string()
        }
        E::MalformedDnsIdentifier | E::UnsupportedNameType => {
            format!("{chain} has a name the gateway cannot process")
        }
        E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded
        | E::MaximumPathDepthExceeded => {
            "path building gave up: the message offers too many candidate certificates \
             or the chain is too long"
                .to_string()
        }
        E::UnknownIssuer => {
            "the issuer of a certificate of the signer's chain is not known".to_string()
        }
        E::InvalidSignatureForPublicKey => {
            "a signature does not verify with the key that should have made it".to_string()
        }
        E::EmptyEkuExtension => {
            format!("{chain} restricts extKeyUsage without emailProtection or anyExtendedKeyUsage")
        }
        E::RequiredEkuNotFoundContext(cx) => {
            let present: Vec<String> = cx
                .present
                .iter()
                .map(|oid| {
                    let dotted: Vec<String> = oid.iter().map(usize::to_string).collect();
                    cert::oid_name(&dotted.join("."))
                })
                .collect();
            format!(
                "{chain} restricts extKeyUsage to {}, without emailProtection or \
                 anyExtendedKeyUsage",
                present.join(", ")
            )
        }
        E::UnsupportedSignatureAlgorithmContext(cx) => format!(
            "{chain} is signed with {}, which is not accepted (accepted: ECDSA P-256/P-384 \
             with SHA-256/384, Ed25519, RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512)",
            cert::algorithm_name(&cx.signature_algorithm_id)
        ),
        E::UnsupportedSignatureAlgorithmForPublicKeyContext(cx) => format!(
            "{chain} is signed with {}, which its issuer's {} key cannot make or verify",
            cert::algorithm_name(&cx.signature_algorithm_id),
            cert::algorithm_name(&cx.public_key_algorithm_id)
        ),
        E::CertRevoked => format!("{chain} is revoked"),
        E::CrlExpired { .. } => "a CRL needed for the signer's chain is stale".to_string(),
        E::UnknownRevocationStatus => {
            format!("the revocation status of {chain} cannot be established")
        }
        E::InvalidCrlSignatureForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            "the signature on a CRL for the signer's chain cannot be verified".to_string()
        }
        E::IssuerNotCrlSigner => {
            "a CRL for the signer's chain is signed by a CA whose keyUsage does not allow cRLSign"
                .to_string()
        }
        E::InvalidCrlNumber
        | E::UnsupportedCrlVersion
        | E::UnsupportedDeltaCrl
        | E::UnsupportedIndirectCrl
        | E::UnsupportedCrlIssuingDistributionPoint
        | E::UnsupportedRevocationReason
        | E::UnsupportedRevocationReasonsPartitioning => {
            "a CRL for the signer's chain has a form the gateway does not support".to_string()
        }
        _ => "the signer's certificate path cannot be validated (an error the gateway \
              has no description for)"
            .to_string(),
    }
}

/// A readable name of the DER structure a webpki error names.
fn der_type_name(t: webpki::DerTypeId) -> &'static str {
    use webpki::DerTypeId as D;
    match t {
        D::Certificate => "certificate",
        D::CertificateExtensions | D::Extension => "extensions",
        D::CertificateTbsCertificate => "tbsCertificate",
        D::SubjectPublicKeyInfo => "subjectPublicKeyInfo",
        D::SignatureAlgorithm => "signature algorithm",
        D::Signature | D::SignedData => "signature",
        D::Time => "validity time",
        D::TrustAnchorV1 | D::TrustAnchorV1TbsCertificate => "trust anchor fields",
        _ => "fields",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per variant: the reason code `verify` reports for it
    /// (docs/contracts.md, "Reason codes").
    #[test]
    fn every_certificate_error_has_its_reason() {
        let s = || "x".to_string();
        let table = [
            (
                TrustError::MessageCert(cert::CertError(der::Error::from(der::ErrorKind::Failed))),
                Reason::Malformed,
            ),
            (
                TrustError::SignerCert(webpki::Error::BadDer),
                Reason::Malformed,
            ),
            (TrustError::ChainCert(s()), Reason::Malformed),
            (
                TrustError::WeakCertSignature {
                    subject: s(),
                    algorithm: "md5WithRSAEncryption",
                },
                Reason::WeakAlgorithm,
            ),
            (
                TrustError::ShortRsaKey {
                    subject: s(),
                    bits: 1024,
                    min: 2048,
                },
                Reason::WeakAlgorithm,
            ),
            (
                TrustError::Expired {
                    not_after: 1,
                    time: 2,
                },
                Reason::Expired,
            ),
            (
                TrustError::NotYetValid {
                    not_before: 2,
                    time: 1,
                },
                Reason::NotYetValid,
            ),
            (
                TrustError::UnknownIssuer {
                    authority: s(),
                    country: s(),
                },
                Reason::UntrustedChain,
            ),
            (
                TrustError::BadCertSignature {
                    authority: s(),
                    country: s(),
                },
                Reason::UntrustedChain,
            ),
            (TrustError::UnidentifiedAnchor, Reason::UntrustedChain),
            (
                TrustError::Untrusted(webpki::Error::EndEntityUsedAsCa),
                Reason::UntrustedChain,
            ),
            (
                TrustError::WrongUsage(webpki::Error::EmptyEkuExtension),
                Reason::WrongUsage,
            ),
            (
                TrustError::WeakAlgorithm(webpki::Error::UnsupportedSignatureAlgorithmContext(
                    webpki::UnsupportedSignatureAlgorithmContext {
                        signature_algorithm_id: Vec::new(),
                        supported_algorithms: Vec::new(),
                    },
                )),
                Reason::WeakAlgorithm,
            ),
            (
                TrustError::Malformed(webpki::Error::BadDer),
                Reason::Malformed,
            ),
            (
                TrustError::SignerUsage {
                    subject: s(),
                    problem: UsageProblem::KeyUsage,
                },
                Reason::WrongUsage,
            ),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
    }

    #[test]
    fn every_revocation_error_has_its_reason() {
        use revocation::NoStatus;
        let s = || "x".to_string();
        let no_crl = || NoStatus::NoCrl {
            issuer: s(),
            subject: s(),
        };
        let table = [
            (TrustError::CrlRevoked { authority: s() }, Reason::Revoked),
            (
                TrustError::CrlStale {
                    authority: s(),
                    next_update: 1,
                    time: 2,
                },
                Reason::CrlUnavailable,
            ),
            (
                TrustError::NoCrlCoverage { authority: s() },
                Reason::CrlUnavailable,
            ),
            (
                TrustError::RevokedByCrl {
                    subject: s(),
                    serial: s(),
                    issuer: s(),
                    since: 1,
                    reason: None,
                },
                Reason::Revoked,
            ),
            (
                TrustError::RevokedByOcsp {
                    subject: s(),
                    serial: s(),
                    responder: s(),
                    since: 1,
                    reason: Some("keyCompromise".into()),
                },
                Reason::Revoked,
            ),
            (
                TrustError::OcspUnknown {
                    responder: s(),
                    subject: s(),
                    serial: s(),
                },
                Reason::RevocationUnknown,
            ),
            (TrustError::CrlUnavailable(no_crl()), Reason::CrlUnavailable),
            (
                TrustError::OcspUnavailable {
                    crl: no_crl(),
                    responders: vec![s()],
                },
                Reason::OcspUnavailable,
            ),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
    }

    /// The webpki errors land in the variants (and so the reasons) the
    /// old per-call-site table gave them.
    #[test]
    fn webpki_errors_keep_their_reasons() {
        use rustls_pki_types::UnixTime;
        use std::time::Duration;
        use webpki::Error as E;
        let authority = AuthorityTrust {
            id: "fr-moj",
            country: "FR",
            anchors: &[],
            anchor_certs: &[],
            intermediates: &[],
            crls: &[],
            ocsp: OcspMode::Off,
            fetch_cdp: false,
        };
        let t = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        let table = [
            (
                E::CertExpired {
                    time: t(2),
                    not_after: t(1),
                },
                Reason::Expired,
            ),
            (
                E::CertNotValidYet {
                    time: t(1),
                    not_before: t(2),
                },
                Reason::NotYetValid,
            ),
            (E::CertRevoked, Reason::Revoked),
            (E::UnknownRevocationStatus, Reason::CrlUnavailable),
            (
                E::CrlExpired {
                    time: t(2),
                    next_update: t(1),
                },
                Reason::CrlUnavailable,
            ),
            (E::EmptyEkuExtension, Reason::WrongUsage),
            (E::CaUsedAsEndEntity, Reason::WrongUsage),
            (E::BadDer, Reason::Malformed),
            (E::SignatureAlgorithmMismatch, Reason::Malformed),
            (E::UnknownIssuer, Reason::UntrustedChain),
            (E::InvalidSignatureForPublicKey, Reason::UntrustedChain),
            (E::PathLenConstraintViolated, Reason::UntrustedChain),
        ];
        for (e, r) in table {
            let te = TrustError::from_webpki(e.clone(), &authority);
            assert_eq!(Reason::from(&te), r, "{e:?}");
        }
        let expired = TrustError::from_webpki(
            E::CertExpired {
                time: t(86_400),
                not_after: t(0),
            },
            &authority,
        );
        assert_eq!(
            expired.to_string(),
            "a certificate of the signer's chain expired at 1970-01-01T00:00:00Z \
             (evaluation time 1970-01-02T00:00:00Z)"
        );
    }

    /// No detail is a `{:?}` dump: each is a sentence (letters and spaces,
    /// no struct braces or variant names).
    #[test]
    fn every_error_is_a_sentence() {
        use webpki::Error as E;
        let errors = [
            E::BadDer,
            E::UnknownIssuer,
            E::UnsupportedCertVersion,
            E::EndEntityUsedAsCa,
            E::InvalidSignatureForPublicKey,
            E::MaximumPathDepthExceeded,
            E::UnsupportedSignatureAlgorithmForPublicKeyContext(
                webpki::UnsupportedSignatureAlgorithmForPublicKeyContext {
                    signature_algorithm_id: rustls_pki_types::alg_id::RSA_PSS_SHA256
                        .as_ref()
                        .to_vec(),
                    public_key_algorithm_id: pss::RSASSA_PSS_KEY.as_ref().to_vec(),
                },
            ),
            E::UnsupportedSignatureAlgorithmContext(webpki::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: rustls_pki_types::alg_id::ECDSA_SHA512.as_ref().to_vec(),
                supported_algorithms: Vec::new(),
            }),
            E::RequiredEkuNotFoundContext(webpki::RequiredEkuNotFoundContext {
                required: KeyUsage::required(EMAIL_PROTECTION),
                present: vec![vec![1, 3, 6, 1, 5, 5, 7, 3, 1]],
            }),
        ];
        for e in &errors {
            let d = describe(e);
            assert!(
                !d.contains('{') && !d.contains("Context") && !d.contains("::"),
                "{e:?}: {d}"
            );
            assert!(d.contains(' '), "{e:?}: {d}");
        }
        assert!(describe(&errors[6]).contains("RSASSA-PSS"));
        assert!(describe(&errors[8]).contains("serverAuth (1.3.6.1.5.5.7.3.1)"));
    }
}
