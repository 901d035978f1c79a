//! Digest and signature checks of one SignerInfo.

use der::asn1::ObjectIdentifier;
use der::Decode;
use ring::digest;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};
use webpki::EndEntityCert;

use super::cms::Signer;
use crate::reason::Reason;
use crate::trust::cert::{algorithm_name, oid_name, CertFacts, CertInfo, DigestAlg, KeyAlg};
use crate::trust::pss::{self, KeyParams};

/// Why a SignerInfo's algorithms cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum AlgError {
    /// A refused algorithm (MD5, SHA-1, not allowed by policy, unsupported).
    Weak(String),
    /// Inconsistent or unparsable algorithm identifiers.
    Malformed(String),
    /// A signature algorithm the signer's key cannot make (an RSA algorithm
    /// for an ECDSA key, ECDSA for RSA, PKCS#1 v1.5 for an RSASSA-PSS key…):
    /// the signature cannot be the key's.
    Mismatch(String),
}

impl std::fmt::Display for AlgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlgError::Weak(d) | AlgError::Malformed(d) | AlgError::Mismatch(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for AlgError {}

impl From<&AlgError> for Reason {
    fn from(e: &AlgError) -> Reason {
        match e {
            AlgError::Weak(_) => Reason::WeakAlgorithm,
            AlgError::Malformed(_) => Reason::Malformed,
            AlgError::Mismatch(_) => Reason::BadSignature,
        }
    }
}

/// Why a signature value does not verify with the signer certificate's key.
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The certificate's key cannot be taken out of it.
    UnusableCert(webpki::Error),
    /// The signature value is not the key's signature over the data.
    WrongValue,
    /// Verification failed otherwise (e.g. an algorithm the key cannot use).
    Other(webpki::Error),
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::UnusableCert(e) => write!(
                f,
                "the signer certificate cannot be used to check it: {}",
                crate::trust::describe(e)
            ),
            SignatureError::WrongValue => {
                f.write_str("the signature value does not match the signer's public key")
            }
            SignatureError::Other(e) => f.write_str(&crate::trust::describe(e)),
        }
    }
}

impl std::error::Error for SignatureError {}

impl From<&SignatureError> for Reason {
    fn from(e: &SignatureError) -> Reason {
        match e {
            SignatureError::UnusableCert(_)
            | SignatureError::WrongValue
            | SignatureError::Other(_) => Reason::BadSignature,
        }
    }
}

/// Digest algorithm OIDs, dotted.
pub(crate) const MD5: &str = "1.2.840.113549.2.5";
pub(crate) const SHA1: &str = "1.3.14.3.2.26";
pub(crate) const SHA256: &str = "2.16.840.1.101.3.4.2.1";
pub(crate) const SHA384: &str = "2.16.840.1.101.3.4.2.2";
pub(crate) const SHA512: &str = "2.16.840.1.101.3.4.2.3";
pub(crate) const SHA256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap(SHA256);
pub(crate) const SHA384_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap(SHA384);
pub(crate) const SHA512_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap(SHA512);
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

/// The digest algorithm a SignerInfo names, if the policy allows it.
pub fn digest_alg(oid: &ObjectIdentifier, allowed: &[DigestAlg]) -> Result<DigestAlg, AlgError> {
    let known = [
        (SHA256_OID, DigestAlg::Sha256),
        (SHA384_OID, DigestAlg::Sha384),
        (SHA512_OID, DigestAlg::Sha512),
    ];
    let found = known.iter().find(|(o, _)| o == oid).map(|(_, a)| *a);
    let Some(alg) = found else {
        return Err(AlgError::Weak(match oid.to_string().as_str() {
            MD5 => "the signature uses the MD5 digest".into(),
            SHA1 => "the signature uses the SHA-1 digest".into(),
            other => format!("digest algorithm {other} is not supported"),
        }));
    };
    if !allowed.contains(&alg) {
        return Err(AlgError::Weak(format!(
            "digest {} is not allowed by the policy",
            alg.name()
        )));
    }
    Ok(alg)
}

/// Digest of `data`, with bare LF line endings hashed as CRLF (the
/// canonical form S/MIME signs, RFC 8551 §3.1.1), without copying `data`.
/// Blocks without a bare LF (all of them, for mail received over SMTP) are
/// hashed whole after a branch-free scan the compiler vectorises.
pub fn digest_canonical(alg: DigestAlg, data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 32 * 1024;
    let mut ctx = digest::Context::new(alg.ring());
    let mut prev = 0u8; // an LF at the very start is bare
    for block in data.chunks(BLOCK) {
        let bare_first = block[0] == b'\n' && prev != b'\r';
        let bare_rest = block[1..]
            .iter()
            .zip(block.iter())
            .fold(false, |acc, (&c, &p)| acc | ((c == b'\n') & (p != b'\r')));
        if !(bare_first || bare_rest) {
            ctx.update(block);
        } else {
            let mut start = 0;
            let mut p = prev;
            for (i, &c) in block.iter().enumerate() {
                if c == b'\n' && p != b'\r' {
                    ctx.update(&block[start..i]);
                    ctx.update(b"\r\n");
                    start = i + 1;
                }
                p = c;
            }
            ctx.update(&block[start..]);
        }
        prev = block[block.len() - 1];
    }
    ctx.finish().as_ref().to_vec()
}

/// Digest of `data` as is.
pub fn digest_plain(alg: DigestAlg, data: &[u8]) -> Vec<u8> {
    digest::digest(alg.ring(), data).as_ref().to_vec()
}

/// `data` with bare LF line endings turned into CRLF (borrowed when none).
pub fn canonical(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bare = memchr::memchr_iter(b'\n', data).any(|nl| nl == 0 || data[nl - 1] != b'\r');
    if !bare {
        return data.into();
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out.into()
}

/// The verification algorithm for a signer's signature, chosen from the
/// signer certificate's key, the digest algorithm and the
/// signatureAlgorithm identifier.
pub fn signature_alg(
    signer: &Signer,
    cert: &CertInfo<'_>,
    digest: DigestAlg,
) -> Result<(&'static dyn SignatureVerificationAlgorithm, String), AlgError> {
    use webpki::ring as alg;
    let key = cert.key;
    let sig_oid = signer.info.signature_algorithm.oid.to_string();
    let named_hash = match sig_oid.as_str() {
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.2" => {
            return Err(AlgError::Weak("the signature uses md5WithRSA".into()))
        }
        "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" => {
            return Err(AlgError::Weak("the signature uses SHA-1".into()))
        }
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => Some(DigestAlg::Sha256),
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Some(DigestAlg::Sha384),
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Some(DigestAlg::Sha512),
        _ => None,
    };
    if let Some(h) = named_hash {
        if h != digest {
            return Err(AlgError::Malformed(format!(
                "the signatureAlgorithm {} disagrees with the digestAlgorithm {}",
                oid_name(&sig_oid),
                digest.name()
            )));
        }
    }
    let rsa_pkcs1 = matches!(
        sig_oid.as_str(),
        "1.2.840.113549.1.1.1"
            | "1.2.840.113549.1.1.11"
            | "1.2.840.113549.1.1.12"
            | "1.2.840.113549.1.1.13"
    );
    let rsa_pss = sig_oid == "1.2.840.113549.1.1.10";
    let ecdsa_family = matches!(
        sig_oid.as_str(),
        "1.2.840.10045.2.1" | "1.2.840.10045.4.3.2" | "1.2.840.10045.4.3.3" | "1.2.840.10045.4.3.4"
    );
    let ed25519 = sig_oid == "1.3.101.112";
    let pss_hash_checked = || -> Result<DigestAlg, AlgError> {
        let hash = pss_hash(signer)?;
        if hash != digest {
            return Err(AlgError::Malformed(format!(
                "the RSASSA-PSS hash {} disagrees with the digestAlgorithm {}",
                hash.name(),
                digest.name()
            )));
        }
        Ok(hash)
    };
    let ecdsa_sha512 =
        || AlgError::Weak("ECDSA with SHA-512 is not supported; use SHA-256 or SHA-384".into());
    let chosen: &'static dyn SignatureVerificationAlgorithm = match key {
        KeyAlg::Rsa { .. } if rsa_pkcs1 => match digest {
            DigestAlg::Sha256 => alg::RSA_PKCS1_2048_8192_SHA256,
            DigestAlg::Sha384 => alg::RSA_PKCS1_2048_8192_SHA384,
            DigestAlg::Sha512 => alg::RSA_PKCS1_2048_8192_SHA512,
        },
        KeyAlg::Rsa { .. } if rsa_pss => match pss_hash_checked()? {
            DigestAlg::Sha256 => alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            DigestAlg::Sha384 => alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            DigestAlg::Sha512 => alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        },
        KeyAlg::RsaPss { .. } if rsa_pss => pss_key_alg(cert, pss_hash_checked()?)?,
        KeyAlg::EcP256 if ecdsa_family => match digest {
            DigestAlg::Sha256 => alg::ECDSA_P256_SHA256,
            DigestAlg::Sha384 => alg::ECDSA_P256_SHA384,
            DigestAlg::Sha512 => return Err(ecdsa_sha512()),
        },
        KeyAlg::EcP384 if ecdsa_family => match digest {
            DigestAlg::Sha256 => alg::ECDSA_P384_SHA256,
            DigestAlg::Sha384 => alg::ECDSA_P384_SHA384,
            DigestAlg::Sha512 => return Err(ecdsa_sha512()),
        },
        KeyAlg::Ed25519 if ed25519 => alg::ED25519,
        KeyAlg::Other => {
            return Err(AlgError::Weak(format!(
                "the signer certificate's key ({}) is not supported",
                algorithm_name(&cert.spki_alg)
            )))
        }
        _ if rsa_pkcs1 || rsa_pss || ecdsa_family || ed25519 => {
            return Err(AlgError::Mismatch(format!(
                "the SignerInfo's signatureAlgorithm {} does not fit the signer's {key} key",
                oid_name(&sig_oid)
            )))
        }
        _ => {
            return Err(AlgError::Weak(format!(
                "the signatureAlgorithm {} is not supported",
                oid_name(&sig_oid)
            )))
        }
    };
    let name = match sig_oid.as_str() {
        "1.2.840.113549.1.1.10" => format!("{}-rsa-pss", digest.name()),
        "1.3.101.112" => "ed25519".to_string(),
        _ if ecdsa_family => format!("{}-ecdsa", digest.name()),
        _ => format!("{}-rsa-pkcs1", digest.name()),
    };
    Ok((chosen, name))
}

/// The verification algorithm for an RSASSA-PSS signature with `hash` by
/// an id-RSASSA-PSS key, which its parameters may restrict to one hash.
fn pss_key_alg(
    cert: &CertInfo<'_>,
    hash: DigestAlg,
) -> Result<&'static dyn SignatureVerificationAlgorithm, AlgError> {
    match pss::key_params(&cert.spki_alg) {
        KeyParams::Unsupported => Err(AlgError::Weak(format!(
            "the signer's key is {}; only id-RSASSA-PSS keys without parameters \
                 or with the RFC 4055 parameters of SHA-256, SHA-384 or SHA-512 are supported",
            algorithm_name(&cert.spki_alg)
        ))),
        KeyParams::Only(h) if h != hash => Err(AlgError::Mismatch(format!(
            "the signer's key is restricted to RSASSA-PSS with {}, \
                 but the signature uses RSASSA-PSS with {}",
            h.name(),
            hash.name()
        ))),
        _ => pss::for_key(&cert.spki_alg, hash)
            .map(|k| k as _)
            .ok_or_else(|| {
                AlgError::Weak(format!(
                    "RSASSA-PSS with {} is not supported for the signer's key",
                    hash.name()
                ))
            }),
    }
}

/// The hash of the RSASSA-PSS parameters of a SignerInfo, which must be
/// what ring verifies: MGF1 with the same hash and a salt as long as the
/// hash (the defaults, SHA-1 and a 20-byte salt, are refused).
fn pss_hash(signer: &Signer) -> Result<DigestAlg, AlgError> {
    let params = signer
        .info
        .signature_algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| AlgError::Weak("RSASSA-PSS without parameters defaults to SHA-1".into()))?;
    let bytes = der::Encode::to_der(params).map_err(|e| AlgError::Malformed(e.to_string()))?;
    pss_params_hash(&bytes)
}

/// See [`pss_hash`]; `params` is the DER RSASSA-PSS-params SEQUENCE.
fn pss_params_hash(params: &[u8]) -> Result<DigestAlg, AlgError> {
    let bad =
        |e: crate::asn1::Asn1Error| AlgError::Malformed(format!("RSASSA-PSS parameters: {e}"));
    let seq = crate::asn1::Reader::new(params)
        .expect(0x30, "not a SEQUENCE")
        .map_err(bad)?;
    let mut r = crate::asn1::Reader::new(seq.value);
    if r.peek_tag() != Some(0xa0) {
        return Err(AlgError::Weak(
            "RSASSA-PSS with the default SHA-1 hash".into(),
        ));
    }
    let hash = r.read().map_err(bad)?;
    let hash = digest_alg(
        &spki_alg_oid(hash.value)?,
        &[DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512],
    )?;
    if r.peek_tag() != Some(0xa1) {
        return Err(AlgError::Weak(
            "RSASSA-PSS with the default mask generation (MGF1 with SHA-1)".into(),
        ));
    }
    let mgf = r.read().map_err(bad)?;
    let mgf = x509_cert::spki::AlgorithmIdentifierOwned::from_der(mgf.value)
        .map_err(|e| AlgError::Malformed(format!("RSASSA-PSS maskGenAlgorithm: {e}")))?;
    let mgf_hash = mgf.parameters.as_ref().and_then(|p| {
        p.decode_as::<x509_cert::spki::AlgorithmIdentifierOwned>()
            .ok()
    });
    let mgf1_same_hash =
        mgf.oid == MGF1 && mgf_hash.is_some_and(|h| digest_alg(&h.oid, &[hash]).is_ok());
    if !mgf1_same_hash {
        return Err(AlgError::Weak(format!(
            "RSASSA-PSS with a mask generation other than MGF1 with {} is not supported",
            hash.name()
        )));
    }
    let want = hash.output_len();
    let salt = if r.peek_tag() == Some(0xa2) {
        let t = r.read().map_err(bad)?;
        let int = crate::asn1::Reader::new(t.value)
            .expect(0x02, "saltLength is not an INTEGER")
            .map_err(bad)?;
        int.value
            .iter()
            .try_fold(0usize, |n, &b| n.checked_mul(256).map(|n| n + b as usize))
            .unwrap_or(usize::MAX)
    } else {
        20
    };
    if salt != want {
        return Err(AlgError::Weak(format!(
            "RSASSA-PSS with a {salt}-byte salt is not supported: the salt must be as long as \
             the {} hash ({want} bytes; OpenSSL: -keyopt rsa_pss_saltlen:digest)",
            hash.name()
        )));
    }
    if r.peek_tag() == Some(0xa3) {
        let t = r.read().map_err(bad)?;
        if t.value != [0x02, 0x01, 0x01] {
            return Err(AlgError::Malformed(
                "RSASSA-PSS trailerField is not 1".into(),
            ));
        }
    }
    if !r.is_empty() {
        return Err(AlgError::Malformed(
            "RSASSA-PSS parameters have unexpected fields".into(),
        ));
    }
    Ok(hash)
}

fn spki_alg_oid(algorithm_identifier: &[u8]) -> Result<ObjectIdentifier, AlgError> {
    let ai = x509_cert::spki::AlgorithmIdentifierOwned::from_der(algorithm_identifier)
        .map_err(|e| AlgError::Malformed(format!("AlgorithmIdentifier: {e}")))?;
    Ok(ai.oid)
}

/// [`verify_signature`] with the key of a certificate already parsed:
/// what webpki's `EndEntityCert::verify_signature` does (the algorithm must
/// be the key's; its failure is [`SignatureError::WrongValue`]) without
/// parsing the certificate again. Anything unusual is left to webpki, to be
/// reported as it reports it.
pub fn verify_signature_of(
    cert: &CertFacts,
    alg: &dyn SignatureVerificationAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    match spki_value_parts(&cert.spki_der) {
        Some((key_alg, key))
            if cert.webpki_parses && alg.public_key_alg_id().as_ref() == key_alg =>
        {
            alg.verify_signature(key, message, signature)
                .map_err(|_| SignatureError::WrongValue)
        }
        _ => verify_signature(&cert.der, alg, message, signature),
    }
}

/// The contents of the AlgorithmIdentifier and the key bits of a DER
/// SubjectPublicKeyInfo, read as webpki reads them.
fn spki_value_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    use crate::asn1::Reader;
    let mut outer = Reader::new(spki);
    let seq = outer.expect(0x30, "SubjectPublicKeyInfo").ok()?;
    let mut r = Reader::new(seq.value);
    let alg = r.expect(0x30, "algorithm").ok()?;
    let bits = r.expect(0x03, "subjectPublicKey").ok()?;
    match (outer.is_empty() && r.is_empty(), bits.value) {
        (true, [0, key @ ..]) => Some((alg.value, key)),
        _ => None,
    }
}

/// Verifies `signature` over `message` with the key of `cert`.
pub fn verify_signature(
    cert: &[u8],
    alg: &dyn SignatureVerificationAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let der = CertificateDer::from(cert);
    let ee = EndEntityCert::try_from(&der).map_err(SignatureError::UnusableCert)?;
    ee.verify_signature(alg, message, signature)
        .map_err(|e| match e {
            webpki::Error::InvalidSignatureForPublicKey => SignatureError::WrongValue,
            other => SignatureError::Other(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per variant: the reason code `verify` reports for it.
    #[test]
    fn every_alg_error_has_its_reason() {
        let table = [
            (AlgError::Weak("x".into()), Reason::WeakAlgorithm),
            (AlgError::Malformed("x".into()), Reason::Malformed),
            (AlgError::Mismatch("x".into()), Reason::BadSignature),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
    }

    /// One row per variant: the reason code `verify` reports for it.
    #[test]
    fn every_signature_error_has_its_reason() {
        let table = [
            (
                SignatureError::UnusableCert(webpki::Error::BadDer),
                Reason::BadSignature,
            ),
            (SignatureError::WrongValue, Reason::BadSignature),
            (
                SignatureError::Other(webpki::Error::UnknownIssuer),
                Reason::BadSignature,
            ),
        ];
        for (e, r) in &table {
            assert_eq!(Reason::from(e), *r, "{e:?}");
        }
    }

    #[test]
    fn canonical_digest_equals_digest_of_crlf_copy() {
        let lf = b"line one\nline two\r\nthree\n";
        let crlf = canonical(lf);
        assert_eq!(&*crlf, b"line one\r\nline two\r\nthree\r\n");
        assert_eq!(
            digest_canonical(DigestAlg::Sha256, lf),
            digest_plain(DigestAlg::Sha256, &crlf)
        );
        assert!(matches!(
            canonical(b"a\r\nb"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn canonical_digest_across_block_boundaries() {
        // CR ending one 32 KiB block and LF starting the next is one CRLF;
        // a bare LF starting a block must still become CRLF.
        for (at, first) in [(32 * 1024, b'\r'), (32 * 1024, b'x'), (64 * 1024, b'\r')] {
            let mut data = vec![b'a'; 100 * 1024];
            data[at - 1] = first;
            data[at] = b'\n';
            data[5] = b'\n';
            data[70_000] = b'\n';
            data[70_001] = b'\n';
            assert_eq!(
                digest_canonical(DigestAlg::Sha256, &data),
                digest_plain(DigestAlg::Sha256, &canonical(&data)),
                "boundary at {at} preceded by {first}"
            );
        }
        assert_eq!(
            digest_canonical(DigestAlg::Sha256, b"\nx"),
            digest_plain(DigestAlg::Sha256, b"\r\nx")
        );
        assert_eq!(
            digest_canonical(DigestAlg::Sha256, b""),
            digest_plain(DigestAlg::Sha256, b"")
        );
    }

    #[test]
    fn pss_parameters_must_be_what_ring_verifies() {
        use rustls_pki_types::alg_id;
        // The RFC 4055 SHA-256 parameters, as OpenSSL writes them with
        // -keyopt rsa_pss_saltlen:digest (alg_id contents: OID, then them).
        let params = |alg: &[u8]| alg[11..].to_vec();
        let sha256 = params(alg_id::RSA_PSS_SHA256.as_ref());
        assert_eq!(pss_params_hash(&sha256), Ok(DigestAlg::Sha256));
        let sha512 = params(alg_id::RSA_PSS_SHA512.as_ref());
        assert_eq!(pss_params_hash(&sha512), Ok(DigestAlg::Sha512));
        // OpenSSL's default salt (the maximum, 222 bytes for RSA-2048).
        let mut max_salt = sha256[..sha256.len() - 5].to_vec();
        max_salt.extend_from_slice(&[0xa2, 0x04, 0x02, 0x02, 0x00, 0xde]);
        max_salt[1] += 1;
        match pss_params_hash(&max_salt) {
            Err(AlgError::Weak(d)) => assert!(d.contains("222-byte salt"), "{d}"),
            other => panic!("{other:?}"),
        }
        // hashAlgorithm alone: MGF1 with SHA-1.
        let hash_only = [
            0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
            0x04, 0x02, 0x01, 0x05, 0x00,
        ];
        assert!(matches!(
            pss_params_hash(&hash_only),
            Err(AlgError::Weak(_))
        ));
    }

    #[test]
    fn refuses_weak_and_disallowed_digests() {
        let all = [DigestAlg::Sha256];
        let sha1 = ObjectIdentifier::new_unwrap(SHA1);
        assert!(matches!(digest_alg(&sha1, &all), Err(AlgError::Weak(_))));
        let sha512 = ObjectIdentifier::new_unwrap(SHA512);
        assert!(matches!(digest_alg(&sha512, &all), Err(AlgError::Weak(_))));
        let sha256 = ObjectIdentifier::new_unwrap(SHA256);
        assert_eq!(digest_alg(&sha256, &all), Ok(DigestAlg::Sha256));
    }
}
