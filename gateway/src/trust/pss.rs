//! RSASSA-PSS signatures by keys whose SubjectPublicKeyInfo says
//! id-RSASSA-PSS (1.2.840.113549.1.1.10) rather than rsaEncryption.
//!
//! rustls-webpki matches a signature algorithm to a key by the exact
//! AlgorithmIdentifier of the SubjectPublicKeyInfo, and its own RSA-PSS
//! algorithms only know rsaEncryption keys. The algorithms here accept the
//! id-RSASSA-PSS key encodings in use: without parameters (any of the
//! SHA-256/384/512 signatures), and with the RFC 4055 parameters of one hash
//! (MGF1 with the same hash, salt length of the hash size), which restrict the
//! key to that signature. The public key itself is the same RSAPublicKey as
//! for rsaEncryption; ring verifies it with a modulus of 2048 to 8192 bits.

use ring::signature;
use rustls_pki_types::SignatureVerificationAlgorithm as Sva;
use rustls_pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature};

use super::cert::DigestAlg;

/// id-RSASSA-PSS without parameters: the contents of its AlgorithmIdentifier.
pub const RSASSA_PSS_KEY: AlgorithmIdentifier = AlgorithmIdentifier::from_slice(&[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
]);

/// An RSASSA-PSS verification for one id-RSASSA-PSS key encoding.
pub struct PssKey {
    /// The key's AlgorithmIdentifier contents.
    key: AlgorithmIdentifier,
    /// The signature's AlgorithmIdentifier contents.
    signature: AlgorithmIdentifier,
    /// The hash of the signature.
    hash: DigestAlg,
    ring: &'static signature::RsaParameters,
}

impl PssKey {
    /// The hash of the signatures it verifies.
    pub fn hash(&self) -> DigestAlg {
        self.hash
    }
}

const fn pss(key: AlgorithmIdentifier, hash: DigestAlg) -> PssKey {
    let (signature, ring) = match hash {
        DigestAlg::Sha256 => (alg_id::RSA_PSS_SHA256, &signature::RSA_PSS_2048_8192_SHA256),
        DigestAlg::Sha384 => (alg_id::RSA_PSS_SHA384, &signature::RSA_PSS_2048_8192_SHA384),
        DigestAlg::Sha512 => (alg_id::RSA_PSS_SHA512, &signature::RSA_PSS_2048_8192_SHA512),
    };
    PssKey {
        key,
        signature,
        hash,
        ring,
    }
}

/// Unrestricted key, SHA-256 signature.
pub static ANY_KEY_SHA256: PssKey = pss(RSASSA_PSS_KEY, DigestAlg::Sha256);
/// Unrestricted key, SHA-384 signature.
pub static ANY_KEY_SHA384: PssKey = pss(RSASSA_PSS_KEY, DigestAlg::Sha384);
/// Unrestricted key, SHA-512 signature.
pub static ANY_KEY_SHA512: PssKey = pss(RSASSA_PSS_KEY, DigestAlg::Sha512);
/// Key restricted to RSASSA-PSS with SHA-256.
pub static SHA256_KEY: PssKey = pss(alg_id::RSA_PSS_SHA256, DigestAlg::Sha256);
/// Key restricted to RSASSA-PSS with SHA-384.
pub static SHA384_KEY: PssKey = pss(alg_id::RSA_PSS_SHA384, DigestAlg::Sha384);
/// Key restricted to RSASSA-PSS with SHA-512.
pub static SHA512_KEY: PssKey = pss(alg_id::RSA_PSS_SHA512, DigestAlg::Sha512);

/// Every id-RSASSA-PSS key algorithm.
pub static ALL: [&PssKey; 6] = [
    &ANY_KEY_SHA256,
    &ANY_KEY_SHA384,
    &ANY_KEY_SHA512,
    &SHA256_KEY,
    &SHA384_KEY,
    &SHA512_KEY,
];

/// What an id-RSASSA-PSS key's parameters allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyParams {
    /// No parameters: any RSASSA-PSS hash.
    Any,
    /// Restricted to this hash (RFC 4055 parameters of that hash).
    Only(DigestAlg),
    /// Parameters this gateway cannot verify with (another MGF, salt length
    /// or a SHA-1 default).
    Unsupported,
}

/// Reads the parameters of an id-RSASSA-PSS key from the contents of its
/// SubjectPublicKeyInfo AlgorithmIdentifier.
pub fn key_params(spki_alg: &[u8]) -> KeyParams {
    if spki_alg == RSASSA_PSS_KEY.as_ref() {
        return KeyParams::Any;
    }
    [&SHA256_KEY, &SHA384_KEY, &SHA512_KEY]
        .into_iter()
        .find(|k| k.key.as_ref() == spki_alg)
        .map_or(KeyParams::Unsupported, |k| KeyParams::Only(k.hash))
}

/// The algorithm verifying a `hash` RSASSA-PSS signature by a key whose
/// SubjectPublicKeyInfo AlgorithmIdentifier has the contents `spki_alg`.
pub fn for_key(spki_alg: &[u8], hash: DigestAlg) -> Option<&'static PssKey> {
    ALL.into_iter()
        .find(|k| k.key.as_ref() == spki_alg && k.hash == hash)
}

impl Sva for PssKey {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        signature::UnparsedPublicKey::new(self.ring, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.key
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature
    }
}

impl std::fmt::Debug for PssKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.key.as_ref() == RSASSA_PSS_KEY.as_ref() {
            "any"
        } else {
            self.hash.name()
        };
        write!(
            f,
            "RSASSA-PSS {} signature by an id-RSASSA-PSS key ({key} parameters)",
            self.hash.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parameters_are_recognised() {
        assert_eq!(key_params(RSASSA_PSS_KEY.as_ref()), KeyParams::Any);
        assert_eq!(
            key_params(alg_id::RSA_PSS_SHA384.as_ref()),
            KeyParams::Only(DigestAlg::Sha384)
        );
        // hashAlgorithm sha256 alone: MGF1 and salt length default to SHA-1's.
        let mut sha256_only = RSASSA_PSS_KEY.as_ref().to_vec();
        sha256_only.extend_from_slice(&[
            0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
            0x04, 0x02, 0x01, 0x05, 0x00,
        ]);
        assert_eq!(key_params(&sha256_only), KeyParams::Unsupported);
        assert!(for_key(&sha256_only, DigestAlg::Sha256).is_none());
        assert!(for_key(RSASSA_PSS_KEY.as_ref(), DigestAlg::Sha512).is_some());
        assert!(for_key(alg_id::RSA_PSS_SHA256.as_ref(), DigestAlg::Sha384).is_none());
    }
}
