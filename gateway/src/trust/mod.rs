//! Certificate path validation and revocation: does a signer certificate
//! chain to the trust anchors of one particular authority?

pub mod cert;
pub mod http;
pub mod memo;
pub mod ocsp;

use der::{Decode, Encode};
use rustls_pki_types::CertificateDer;
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::Certificate;

use crate::clock::EvalTime;
use crate::policy::{Authority, CrlPolicy};
use crate::reason::Reason;
use memo::Memo;

/// id-kp-emailProtection (1.3.6.1.5.5.7.3.4), DER value octets.
const EMAIL_PROTECTION: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

/// Signature algorithms accepted on certificates and CRLs. SHA-1 and MD5
/// are absent, so chains using them cannot validate. Successes are
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
];

/// A chain that validated: DER certificates from the signer to the anchor's
/// issuer-side (intermediates only; the anchor is reported separately).
pub struct ValidPath {
    /// Intermediate certificates used, signer side first.
    pub intermediates: Vec<Vec<u8>>,
    /// Index of the anchor in `Authority::anchor_certs`, when identified.
    pub anchor: Option<usize>,
}

/// Validates `signer` against `authority`'s anchors at `at`, with
/// intermediates from the message and the authority's configuration, and
/// revocation from the authority's CRLs.
pub fn validate(
    authority: &Authority,
    crl_policy: CrlPolicy,
    signer: &[u8],
    message_certs: &[&[u8]],
    at: EvalTime,
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
            &authority.anchors,
            &intermediates,
            at.to_webpki(),
            // CA certificates commonly carry no EKU; the signer's own EKU is
            // required by the caller (`verify`), which sees the whole picture.
            KeyUsage::required_if_present(EMAIL_PROTECTION),
            // Revocation is checked below against CRLs verified at load:
            // webpki would re-verify every CRL signature for every message.
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
    check_revocation(authority, crl_policy, &chain, at)?;
    Ok(valid)
}

/// Checks every certificate of `chain` (signer first, anchor last; the
/// anchor itself is not checked) against the CRL of its issuer.
fn check_revocation(
    authority: &Authority,
    crl_policy: CrlPolicy,
    chain: &[&[u8]],
    at: EvalTime,
) -> Result<(), (Reason, String)> {
    let parsed: Vec<Certificate> = chain
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect::<Result<_, _>>()
        .map_err(|e| (Reason::Malformed, format!("certificate of the chain: {e}")))?;
    let hard = crl_policy == CrlPolicy::HardFail;
    for pair in parsed.windows(2) {
        let (cert, issuer) = (&pair[0].tbs_certificate, &pair[1].tbs_certificate);
        let issuer_name = cert.issuer.to_der().unwrap_or_default();
        let issuer_spki = issuer.subject_public_key_info.to_der().unwrap_or_default();
        let crl = authority
            .crls
            .iter()
            .find(|c| c.issuer == issuer_name && c.signer_spki == issuer_spki);
        let Some(crl) = crl else {
            if hard {
                return Err((
                    Reason::CrlUnavailable,
                    format!(
                        "authority {} has no CRL from {}, the issuer of {}",
                        authority.id, cert.issuer, cert.subject
                    ),
                ));
            }
            continue;
        };
        if crl.next_update < at.unix() && hard {
            return Err((
                Reason::CrlUnavailable,
                format!(
                    "the CRL of {} (authority {}) is stale: its nextUpdate was {} (evaluation time {})",
                    cert.issuer,
                    authority.id,
                    EvalTime::from_unix(crl.next_update).to_rfc3339(),
                    at.to_rfc3339()
                ),
            ));
        }
        let serial = cert.serial_number.as_bytes();
        match crl.list.find_serial(serial) {
            Ok(None) => {}
            Ok(Some(entry)) => {
                return Err((
                    Reason::Revoked,
                    format!(
                        "certificate {} (serial {}) is revoked by the CRL of {} since {}{}",
                        cert.subject,
                        hex::encode(serial),
                        cert.issuer,
                        EvalTime::from_unix(entry.revocation_date.as_secs()).to_rfc3339(),
                        entry
                            .reason_code
                            .map(|r| format!(" ({r:?})"))
                            .unwrap_or_default()
                    ),
                ))
            }
            Err(e) => {
                return Err((
                    Reason::Malformed,
                    format!("CRL of {} cannot be searched: {e}", cert.issuer),
                ))
            }
        }
    }
    Ok(())
}

fn map_error(e: &webpki::Error, authority: &Authority) -> (Reason, String) {
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
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::MalformedExtensions => {
            Reason::Malformed
        }
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
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            "a certificate of the signer's chain restricts extKeyUsage without emailProtection"
                .to_string()
        }
        E::CaUsedAsEndEntity => "the signer certificate is a CA certificate".to_string(),
        _ if reason == Reason::UntrustedChain => format!(
            "the signer certificate does not chain to the trust anchors of authority {} ({}): {e:?}",
            authority.id, authority.country
        ),
        _ if reason == Reason::WeakAlgorithm => {
            format!("the signer's chain uses a refused signature algorithm: {e:?}")
        }
        _ => format!("certificate path: {e:?}"),
    };
    (reason, detail)
}
