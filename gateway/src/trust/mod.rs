//! Certificate path validation and revocation: does a signer certificate
//! chain to the trust anchors of one particular authority?

pub mod cert;
pub mod http;
pub mod memo;
pub mod ocsp;
pub mod pss;
pub mod revocation;

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, TrustAnchor};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage};

use crate::clock::EvalTime;
use crate::reason::Reason;
use memo::Memo;
use revocation::{Crl, CrlPolicy, OcspMode, RevocationSet, StatusEvidence, Want};

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
pub fn validate(
    authority: &AuthorityTrust<'_>,
    signer: &[u8],
    message_certs: &[&[u8]],
    at: EvalTime,
    rev: &mut RevocationCheck<'_>,
) -> Result<ValidPath, (Reason, String)> {
    let signer_der = CertificateDer::from(signer);
    let ee = EndEntityCert::try_from(&signer_der)
        .map_err(|e| (Reason::Malformed, format!("signer certificate: {e}")))?;
    let mut intermediates: Vec<CertificateDer<'_>> = message_certs
        .iter()
        .filter(|c| **c != signer)
        .map(|c| CertificateDer::from(*c))
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
            // Revocation is checked below, against the issuers of this path.
            None,
            None,
        )
        .map_err(|e| map_error(&e, authority))?;

    let anchor_subject = path.anchor().subject.as_ref();
    let anchor = authority.anchor_certs.iter().position(|c| {
        webpki::anchor_from_trusted_cert(c)
            .map(|a| a.subject.as_ref() == anchor_subject)
            .unwrap_or(false)
    });
    let valid = ValidPath {
        intermediates: path
            .intermediate_certificates()
            .map(|c| c.der().to_vec())
            .collect(),
        anchor,
    };
    let anchor_der = anchor
        .and_then(|i| authority.anchor_certs.get(i))
        .ok_or_else(|| {
            (
                Reason::UntrustedChain,
                "the validated path ends at an anchor that cannot be identified".to_string(),
            )
        })?;
    let mut chain: Vec<&[u8]> = vec![signer];
    chain.extend(valid.intermediates.iter().map(Vec::as_slice));
    chain.push(anchor_der);
    rev.path_cas.clone_from(&valid.intermediates);
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
        &chain,
        &sources,
        opts,
        at,
        &mut rev.evidence,
        &mut rev.wants,
    )?;
    Ok(valid)
}

fn map_error(e: &webpki::Error, authority: &AuthorityTrust<'_>) -> (Reason, String) {
    use webpki::Error as E;
    let reason = match e {
        E::CertExpired { .. } => Reason::Expired,
        E::CertNotValidYet { .. } => Reason::NotYetValid,
        E::CertRevoked => Reason::Revoked,
        E::UnknownRevocationStatus | E::CrlExpired { .. } => Reason::CrlUnavailable,
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => Reason::WrongUsage,
        E::CaUsedAsEndEntity => Reason::WrongUsage,
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => Reason::WeakAlgorithm,
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::MalformedExtensions
        | E::ExtensionValueInvalid
        | E::InvalidCertValidity
        | E::InvalidSerialNumber
        | E::SignatureAlgorithmMismatch => Reason::Malformed,
        _ => Reason::UntrustedChain,
    };
    let when = |t: &rustls_pki_types::UnixTime| EvalTime::from_unix(t.as_secs()).to_rfc3339();
    let detail = match e {
        E::CertExpired { time, not_after } => format!(
            "a certificate of the signer's chain expired at {} (evaluation time {})",
            when(not_after),
            when(time)
        ),
        E::CertNotValidYet { time, not_before } => format!(
            "a certificate of the signer's chain is valid only from {} (evaluation time {})",
            when(not_before),
            when(time)
        ),
        E::CertRevoked => format!(
            "a certificate of the signer's chain is revoked by a CRL of authority {}",
            authority.id
        ),
        E::CrlExpired { time, next_update } => format!(
            "a CRL of authority {} is stale: its nextUpdate was {} (evaluation time {})",
            authority.id,
            when(next_update),
            when(time)
        ),
        E::UnknownRevocationStatus => format!(
            "no CRL of authority {} covers a certificate of the signer's chain",
            authority.id
        ),
        E::UnknownIssuer => format!(
            "the signer certificate does not chain to the trust anchors of authority {} ({}): \
             no issuer on its path is one of them or was sent with the message",
            authority.id, authority.country
        ),
        E::InvalidSignatureForPublicKey => format!(
            "the signer certificate does not chain to the trust anchors of authority {} ({}): \
             the signature on a certificate of its path does not verify with its issuer's key",
            authority.id, authority.country
        ),
        _ => describe(e),
    };
    (reason, detail)
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
