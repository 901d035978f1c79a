//! One SignerInfo of a SignedData checked against a CA: its messageDigest
//! over the content, its signature, and a certificate path from its
//! certificate (the others in the CMS as intermediates) to the CA with a
//! given extKeyUsage. Shared by checkpoints (emailProtection) and
//! timestamp tokens (timeStamping), which trust a CA named by the
//! operator rather than an authority of the policy.

use rustls_pki_types::CertificateDer;
use webpki::{EndEntityCert, KeyUsage};

use super::cms::{self, SignedData};
use super::signature;
use crate::clock::EvalTime;
use crate::trust::cert::{CertInfo, DigestAlg};

/// Checks the only signer of `signed` over `content` and its path to one
/// of `ca` at `at` with `usage`; `what` names the document in errors.
/// Returns the signer's certificate facts (subject, serial).
pub fn only_signer(
    signed: &SignedData<'_>,
    content: &[u8],
    ca: &[CertificateDer<'_>],
    at: EvalTime,
    usage: KeyUsage,
    what: &str,
) -> Result<SignerFacts, String> {
    let [signer] = signed.signers.as_slice() else {
        return Err(format!(
            "{} signers; a {what} has exactly one",
            signed.signers.len()
        ));
    };
    let certs: Vec<CertInfo<'_>> = signed
        .certificates
        .iter()
        .map(|d| CertInfo::parse(d))
        .collect::<Result<_, _>>()?;
    let cert = certs
        .iter()
        .find(|c| c.matches(&signer.info.sid))
        .ok_or_else(|| format!("the signer's certificate is not in the {what}"))?;
    let allowed = [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512];
    let digest =
        signature::digest_alg(&signer.info.digest_alg.oid, &allowed).map_err(|e| e.to_string())?;
    let (alg, _) = signature::signature_alg(signer, cert, digest).map_err(|e| e.to_string())?;
    let attrs_der = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| format!("the {what} has no signed attributes"))?;
    let attrs = signer.attributes().map_err(|e| e.to_string())?;
    let expected = attrs
        .message_digest
        .ok_or("the signed attributes lack messageDigest")?;
    if expected != signature::digest_plain(digest, content).as_slice() {
        return Err(format!(
            "the {} digest of the {what}'s content differs from the signed messageDigest \
             (the content was changed)",
            digest.name()
        ));
    }
    signature::verify_signature(cert.der, alg, attrs_der, cms::signature_value(signer))
        .map_err(|e| format!("the {what}'s signature does not verify: {e}"))?;
    let anchors: Vec<_> = ca
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let leaf = CertificateDer::from(cert.der);
    let ee = EndEntityCert::try_from(&leaf).map_err(|e| format!("signer certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = signed
        .certificates
        .iter()
        .filter(|c| **c != cert.der)
        .map(|c| CertificateDer::from(*c))
        .collect();
    ee.verify_for_usage(
        crate::trust::CHAIN_ALGORITHMS,
        &anchors,
        &intermediates,
        at.to_webpki(),
        usage,
        None,
        None,
    )
    .map_err(|e| {
        format!(
            "the signer {} does not chain to the given CA at {}: {e}",
            cert.subject(),
            at.to_rfc3339()
        )
    })?;
    Ok(SignerFacts {
        subject: cert.subject(),
        serial: cert.serial_hex(),
        cert: cert.der.to_vec(),
    })
}

/// Who signed, as [`only_signer`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerFacts {
    /// The certificate's subject DN.
    pub subject: String,
    /// Its serial number, hex.
    pub serial: String,
    /// The certificate, DER, as the document carries it.
    pub cert: Vec<u8>,
}
