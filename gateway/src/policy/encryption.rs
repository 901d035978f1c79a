//! `encrypt`, `encryption_certificates` and `encryption_cipher` of an
//! authority file: whether mail relayed to it is S/MIME-encrypted, and to
//! which certificates.

use std::ops::Range;

use der::Decode;
use openssl::nid::Nid;
use openssl::pkey::Id;
use rustls_pki_types::CertificateDer;
use x509_cert::ext::pkix::KeyUsage;
use x509_cert::Certificate;

use super::files::{FileSet, TableReader};
use super::pki::{outside_validity, Ctx};
use super::{ContentCipher, Diagnostic, EncryptMode, Encryption, EncryptionCert};
use crate::clock::EvalTime;

/// Smallest RSA modulus a relayed message is encrypted to.
const MIN_RSA_BITS: u32 = 2048;

/// Reads the encryption settings of an authority file. A certificate that
/// cannot be used is an error; `always` without one is a note (every
/// message to it will be deferred, then fail).
pub(super) fn read(
    top: &TableReader<'_, '_>,
    ctx: &Ctx<'_>,
    files: &mut FileSet,
    diags: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) -> Encryption {
    let mode = top
        .choice("encrypt", &EncryptMode::NAMES, diags)
        .unwrap_or_default();
    let cipher = top
        .choice("encryption_cipher", &ContentCipher::NAMES, diags)
        .unwrap_or_default();
    let paths = top
        .string_list("encryption_certificates", diags)
        .unwrap_or_default();
    let mut certificates = Vec::new();
    for (shown, der, span) in ctx.load_certificates("encryption_certificates", &paths, files, diags)
    {
        match check(&der, ctx.now) {
            Ok(cert)
                if certificates
                    .iter()
                    .any(|c: &EncryptionCert| c.sha256 == cert.sha256) =>
            {
                diags.push(ctx.src.diag(
                    &span,
                    format!(
                        "certificate {:?} in {shown:?} is listed twice",
                        cert.subject
                    ),
                ))
            }
            Ok(cert) => certificates.push(cert),
            Err(why) => diags.push(ctx.src.diag(&span, format!("{shown:?}: {why}"))),
        }
    }
    if mode == EncryptMode::Always && certificates.is_empty() && paths.is_empty() {
        let span: Range<usize> = top.span_of("encrypt").unwrap_or_default();
        notes.push(ctx.src.diag(
            &span,
            "encrypt = \"always\" and no encryption_certificates: every message to this \
             authority will be deferred, then fail; none is sent in clear",
        ));
    }
    Encryption {
        mode,
        certificates,
        cipher,
    }
}

/// Checks one encryption certificate: decodable, valid now, an RSA key of
/// at least 2048 bits or a P-256/P-384 key, and a keyUsage (when present)
/// that allows encrypting to it.
fn check(der: &CertificateDer<'static>, now: EvalTime) -> Result<EncryptionCert, String> {
    let cert = Certificate::from_der(der).map_err(|e| format!("cannot parse certificate: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let subject = tbs.subject.to_string();
    let what = format!("certificate {subject:?}");
    if let Some(problem) = outside_validity(&cert, now) {
        return Err(format!("{what} {problem}"));
    }
    let key = openssl::x509::X509::from_der(der)
        .and_then(|x| x.public_key())
        .map_err(|e| format!("{what}: unreadable public key: {e}"))?;
    let ku = tbs
        .get::<KeyUsage>()
        .map_err(|e| format!("{what}: unreadable keyUsage: {e}"))?
        .map(|(_, ku)| ku);
    match key.id() {
        Id::RSA if key.bits() < MIN_RSA_BITS => {
            return Err(format!(
                "{what} has an RSA key of {} bits; at least {MIN_RSA_BITS} are required",
                key.bits()
            ))
        }
        Id::RSA if ku.is_some_and(|ku| !ku.key_encipherment()) => {
            return Err(format!(
                "{what}: its keyUsage does not allow keyEncipherment (an RSA encryption certificate needs it)"
            ))
        }
        Id::RSA => {}
        Id::EC => {
            let curve = key
                .ec_key()
                .ok()
                .and_then(|k| k.group().curve_name())
                .filter(|n| [Nid::X9_62_PRIME256V1, Nid::SECP384R1].contains(n));
            if curve.is_none() {
                return Err(format!(
                    "{what} has an EC key on a curve other than P-256 and P-384"
                ));
            }
            if ku.is_some_and(|ku| !ku.key_agreement()) {
                return Err(format!(
                    "{what}: its keyUsage does not allow keyAgreement (an EC encryption certificate needs it)"
                ));
            }
        }
        _ => {
            return Err(format!(
                "{what} has a key that cannot be encrypted to (RSA or EC P-256/P-384 expected)"
            ))
        }
    }
    let validity = &tbs.validity;
    Ok(EncryptionCert {
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, der)),
        der: der.clone(),
        subject,
        not_before: validity.not_before.to_unix_duration().as_secs(),
        not_after: validity.not_after.to_unix_duration().as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, KeyUsagePurpose};

    fn cert(
        alg: &'static rcgen::SignatureAlgorithm,
        usage: &[KeyUsagePurpose],
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut p = CertificateParams::new(vec!["enc.example".into()]).unwrap();
        p.key_usages = usage.to_vec();
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn keys_and_usages_that_can_be_encrypted_to() {
        let now = EvalTime::now();
        let p256 = cert(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &[KeyUsagePurpose::KeyAgreement],
        );
        let ok = check(&p256, now).unwrap();
        assert!(ok.valid_at(now.unix()));
        assert_eq!(ok.sha256.len(), 64);
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384, &[]);
        assert!(check(&p384, now).is_ok(), "no keyUsage: any use");
        let signing = cert(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &[KeyUsagePurpose::DigitalSignature],
        );
        let e = check(&signing, now).unwrap_err();
        assert!(e.contains("keyAgreement"), "{e}");
        let ed = cert(&rcgen::PKCS_ED25519, &[]);
        let e = check(&ed, now).unwrap_err();
        assert!(e.contains("cannot be encrypted to"), "{e}");
        // rcgen's certificates are valid from 1975.
        let e = check(&p256, EvalTime::from_unix(0)).unwrap_err();
        assert!(e.contains("is not valid before 1975"), "{e}");
    }
}
