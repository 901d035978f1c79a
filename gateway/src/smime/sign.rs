//! The gateway's own S/MIME signature: a certificate chain and its private
//! key, producing CMS SignedData (RFC 5652) and `multipart/signed` messages
//! (RFC 8551 §3.5.3) for receipts, non-delivery notices and checkpoints.
//!
//! Signing uses `ring`, already the gateway's cryptography provider, so no
//! second implementation of RSA or ECDSA enters the build. `ring` reads RSA
//! keys as PKCS#8 or PKCS#1 directly; EC keys (PKCS#8 or SEC1) are reduced
//! to their private scalar and paired with the certificate's public point,
//! which is also the check that the key belongs to the certificate. The CMS
//! structure is assembled by hand from DER pieces so that certificates are
//! embedded exactly as loaded.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use der::asn1::{GeneralizedTime, ObjectIdentifier, UtcTime};
use der::{DateTime, Encode};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as rsig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;

use super::cms::{
    ATTR_CONTENT_TYPE, ATTR_MESSAGE_DIGEST, ATTR_SIGNING_TIME, ID_DATA, ID_SIGNED_DATA,
};
use crate::asn1::{write_tlv, Reader, Tlv};
use crate::trust::cert::DigestAlg;
use crate::trust::cert::{CertInfo, KeyAlg};

const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The private half of a signing identity.
enum Key {
    /// RSA, signing PKCS#1 v1.5 with SHA-256.
    Rsa(RsaKeyPair),
    /// ECDSA, P-256 with SHA-256 or P-384 with SHA-384.
    Ecdsa(EcdsaKeyPair),
}

/// The gateway's signing certificate chain and private key.
///
/// Loaded once per policy load and shared (it is `Send + Sync`); the key
/// never leaves this value and is not printed by `Debug`.
pub struct SigningIdentity {
    /// Certificates as loaded, leaf first.
    chain: Vec<Vec<u8>>,
    key: Key,
    /// DER IssuerAndSerialNumber of the leaf.
    issuer_and_serial: Vec<u8>,
    digest: DigestAlg,
    /// rfc822Name SANs of the leaf.
    emails: Vec<String>,
    subject: String,
    not_before: u64,
    not_after: u64,
    rng: SystemRandom,
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("subject", &self.subject)
            .field("emails", &self.emails)
            .field("digest", &self.digest)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// Loads a certificate chain (PEM, leaf first; further certificates
    /// are included in every signature) and its private key (PEM: PKCS#8,
    /// PKCS#1 for RSA or SEC1 for EC, unencrypted).
    ///
    /// Supported keys: RSA of 2048 bits or more (signing with SHA-256),
    /// ECDSA P-256 (SHA-256) and P-384 (SHA-384). The key must belong to
    /// the leaf certificate. Errors name the file and what is wrong.
    pub fn load(cert_pem: &Path, key_pem: &Path) -> Result<SigningIdentity, String> {
        let cert_text = std::fs::read(cert_pem)
            .map_err(|e| format!("{}: cannot read: {e}", cert_pem.display()))?;
        let key_text = std::fs::read(key_pem)
            .map_err(|e| format!("{}: cannot read: {e}", key_pem.display()))?;
        Self::from_pem(&cert_text, &key_text, &cert_pem.display().to_string()).map_err(
            |(file, e)| match file {
                PemFile::Cert => format!("{}: {e}", cert_pem.display()),
                PemFile::Key => format!("{}: {e}", key_pem.display()),
            },
        )
    }

    /// As [`SigningIdentity::load`], from the contents of the two files;
    /// `cert_name` names the certificate file in messages about the key.
    /// An error says which file it concerns.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_name: &str,
    ) -> Result<SigningIdentity, (PemFile, String)> {
        let chain = crate::pem::certificates(cert_pem)
            .map_err(|e| (PemFile::Cert, e.to_string()))?
            .into_iter()
            .map(|c| c.to_vec())
            .collect();
        let key = crate::pem::private_key(key_pem).map_err(|e| (PemFile::Key, e.to_string()))?;
        Self::from_der(chain, key, cert_name).map_err(|e| match e {
            LoadError::Cert(e) => (PemFile::Cert, e),
            LoadError::Key(e) => (PemFile::Key, e),
        })
    }

    /// Builds an identity from DER certificates (leaf first) and a key.
    fn from_der(
        chain: Vec<Vec<u8>>,
        key: PrivateKeyDer<'_>,
        cert_name: &str,
    ) -> Result<SigningIdentity, LoadError> {
        let leaf = chain
            .first()
            .ok_or_else(|| LoadError::Cert("no certificate found".into()))?
            .clone();
        let leaf = leaf.as_slice();
        let info = CertInfo::parse(leaf).map_err(|e| LoadError::Cert(e.to_string()))?;
        let spki = &info.cert.tbs_certificate.subject_public_key_info;
        let public = spki.subject_public_key.raw_bytes();
        let rng = SystemRandom::new();
        let mismatch = || {
            LoadError::Key(format!(
                "the private key does not belong to the certificate in {cert_name}"
            ))
        };
        let (key, digest) = match (info.key, &key) {
            (KeyAlg::Rsa { bits }, _) if bits < 2048 => {
                return Err(LoadError::Cert(format!(
                    "the certificate's RSA key has {bits} bits; at least 2048 are required"
                )))
            }
            (KeyAlg::Rsa { .. }, PrivateKeyDer::Pkcs8(_) | PrivateKeyDer::Pkcs1(_)) => {
                let pair = match &key {
                    PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
                    PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
                    _ => unreachable!("matched above"),
                }
                .map_err(|e| LoadError::Key(format!("not a usable RSA private key: {e}")))?;
                if pair.public_key().as_ref() != public {
                    return Err(mismatch());
                }
                (Key::Rsa(pair), DigestAlg::Sha256)
            }
            (KeyAlg::EcP256 | KeyAlg::EcP384, PrivateKeyDer::Pkcs8(_) | PrivateKeyDer::Sec1(_)) => {
                let (alg, digest) = if info.key == KeyAlg::EcP256 {
                    (&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, DigestAlg::Sha256)
                } else {
                    (&rsig::ECDSA_P384_SHA384_ASN1_SIGNING, DigestAlg::Sha384)
                };
                let sec1 = match &key {
                    PrivateKeyDer::Pkcs8(k) => ec_from_pkcs8(k.secret_pkcs8_der())?,
                    PrivateKeyDer::Sec1(k) => k.secret_sec1_der(),
                    _ => unreachable!("matched above"),
                };
                let scalar = ec_private_scalar(sec1)?;
                let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, scalar, public, &rng)
                    .map_err(|_| mismatch())?;
                (Key::Ecdsa(pair), digest)
            }
            (KeyAlg::Rsa { .. } | KeyAlg::EcP256 | KeyAlg::EcP384, other) => {
                let kind = match other {
                    PrivateKeyDer::Pkcs1(_) => "an RSA (PKCS#1) key",
                    PrivateKeyDer::Sec1(_) => "an EC (SEC1) key",
                    _ => "a key of another type",
                };
                return Err(LoadError::Key(format!(
                    "{kind}, but the certificate in {cert_name} has a {} key",
                    info.key
                )));
            }
            (other, _) => {
                return Err(LoadError::Cert(format!(
                    "the certificate has a {other} key; signing supports RSA, ECDSA P-256 and P-384"
                )))
            }
        };
        let issuer_and_serial = issuer_and_serial(leaf).map_err(LoadError::Cert)?;
        let validity = &info.cert.tbs_certificate.validity;
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        Ok(SigningIdentity {
            emails: info.emails.clone(),
            subject: info.subject(),
            not_before,
            not_after,
            chain,
            key,
            issuer_and_serial,
            digest,
            rng,
        })
    }

    /// The leaf certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The first rfc822Name SAN of the certificate, if any.
    pub fn mail_address(&self) -> Option<String> {
        self.emails.first().cloned()
    }

    /// Whether the certificate names `address` as an rfc822Name SAN
    /// (compared case-insensitively).
    pub fn has_mail_address(&self, address: &str) -> bool {
        self.emails.iter().any(|e| e.eq_ignore_ascii_case(address))
    }

    /// The certificate's validity period, seconds since the Unix epoch
    /// (notBefore, notAfter).
    pub fn validity(&self) -> (u64, u64) {
        (self.not_before, self.not_after)
    }

    /// The certificate's subject DN (RFC 4514).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The digest used in signatures: SHA-256, or SHA-384 for P-384 keys.
    pub fn digest(&self) -> DigestAlg {
        self.digest
    }

    /// The `micalg` parameter of `multipart/signed`: `sha-256` or `sha-384`.
    pub fn micalg(&self) -> &'static str {
        match self.digest {
            DigestAlg::Sha384 => "sha-384",
            _ => "sha-256",
        }
    }

    /// A detached CMS SignedData (DER) over `content` (signed as is: pass
    /// canonical CRLF text), with the signed attributes contentType (data),
    /// messageDigest and signingTime (`at`), and the certificate chain.
    ///
    /// # Panics
    ///
    /// Only if the operating system's random number generator fails, which
    /// `ring` reports for ECDSA nonces and RSA blinding; nothing can be
    /// signed then.
    pub fn sign_detached_der(&self, content: &[u8], at: SystemTime) -> Vec<u8> {
        self.sign_detached(content, at).to_der(None)
    }

    /// As [`SigningIdentity::sign_detached_der`], but the SignedData is
    /// assembled later ([`Detached::to_der`]), so that a timestamp token
    /// over the signature value can be added as an unsigned attribute.
    ///
    /// # Panics
    ///
    /// As [`SigningIdentity::sign_detached_der`].
    pub fn sign_detached(&self, content: &[u8], at: SystemTime) -> Detached {
        let digest = super::signature::digest_plain(self.digest, content);
        let (digest_oid, sig_alg) = match (&self.key, self.digest) {
            (Key::Rsa(_), _) => (OID_SHA256, alg_id(OID_SHA256_WITH_RSA, true)),
            (Key::Ecdsa(_), DigestAlg::Sha384) => (OID_SHA384, alg_id(OID_ECDSA_SHA384, false)),
            (Key::Ecdsa(_), _) => (OID_SHA256, alg_id(OID_ECDSA_SHA256, false)),
        };
        let digest_alg = alg_id(digest_oid, false);

        // Signed attributes: a DER SET OF, sorted by encoding.
        let mut attrs = [
            attribute(ATTR_CONTENT_TYPE, &oid_der(ID_DATA)),
            attribute(ATTR_SIGNING_TIME, &time_der(at)),
            attribute(ATTR_MESSAGE_DIGEST, &tlv(0x04, &digest)),
        ];
        attrs.sort();
        let attrs = attrs.concat();
        let signature = self.sign_raw(&tlv(0x31, &attrs));

        let mut signer_info = tlv(0x02, &[1]);
        signer_info.extend_from_slice(&self.issuer_and_serial);
        signer_info.extend_from_slice(&digest_alg);
        write_tlv(&mut signer_info, 0xa0, &attrs);
        signer_info.extend_from_slice(&sig_alg);
        write_tlv(&mut signer_info, 0x04, &signature);

        let mut certs = self.chain.clone();
        certs.sort(); // DER SET OF order
        Detached {
            digest_alg,
            certs: certs.concat(),
            signer_info,
            signature,
        }
    }

    /// A complete RFC 5322 message, `multipart/signed` (RFC 8551 §3.5.3):
    /// the top-level `headers` in order (a CR or LF that is not part of a
    /// fold, CRLF followed by a space or tab, becomes a space; encode
    /// non-ASCII text before), `MIME-Version`,
    /// then `entity` (a MIME entity with its own header section; bare LF
    /// line endings are made CRLF) and its detached signature as
    /// `smime.p7s`. CRLF throughout.
    ///
    /// # Panics
    ///
    /// As [`SigningIdentity::sign_detached_der`].
    pub fn sign_mime(&self, headers: &[(&str, String)], entity: &[u8], at: SystemTime) -> Vec<u8> {
        self.sign_mime_parts(headers, entity, at).to_message(None)
    }

    /// As [`SigningIdentity::sign_mime`], assembled later
    /// ([`SignedMime::to_message`]) so that a timestamp token can be added.
    ///
    /// # Panics
    ///
    /// As [`SigningIdentity::sign_detached_der`].
    pub fn sign_mime_parts(
        &self,
        headers: &[(&str, String)],
        entity: &[u8],
        at: SystemTime,
    ) -> SignedMime {
        let entity = super::signature::canonical(entity);
        let signature = self.sign_detached(&entity, at);
        let boundary = loop {
            let b = format!("----emla-signed-{}", self.random_hex(12));
            if memchr::memmem::find(&entity, b.as_bytes()).is_none() {
                break b;
            }
        };
        let mut head = Vec::with_capacity(entity.len() + 1024);
        for (name, value) in headers {
            let clean = header_value(value);
            head.extend_from_slice(format!("{name}: {clean}\r\n").as_bytes());
        }
        head.extend_from_slice(
            format!(
                "MIME-Version: 1.0\r\n\
                 Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n \
                 micalg={}; boundary=\"{boundary}\"\r\n\
                 \r\n\
                 This is an S/MIME signed message.\r\n\
                 \r\n\
                 --{boundary}\r\n",
                self.micalg()
            )
            .as_bytes(),
        );
        head.extend_from_slice(&entity);
        head.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\n\
                 Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\
                 Content-Description: S/MIME Cryptographic Signature\r\n\
                 \r\n"
            )
            .as_bytes(),
        );
        SignedMime {
            head,
            signature,
            tail: format!("--{boundary}--\r\n"),
        }
    }

    /// `n` random bytes as lower-case hex (Message-IDs, boundaries).
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn random_hex(&self, n: usize) -> String {
        random_hex(&self.rng, n)
    }

    /// Signs `message` with the key (hashing included).
    fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        const RNG_FAILED: &str = "the system random number generator failed while signing";
        match &self.key {
            Key::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&rsig::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .expect(RNG_FAILED);
                sig
            }
            Key::Ecdsa(pair) => pair
                .sign(&self.rng, message)
                .expect(RNG_FAILED)
                .as_ref()
                .to_vec(),
        }
    }
}

/// A detached signature made but not yet assembled: the SignerInfo's
/// unsigned attributes (a timestamp token) can still be added, since they
/// are outside what the signature covers.
#[derive(Clone, Debug)]
pub struct Detached {
    digest_alg: Vec<u8>,
    /// The certificates, DER SET OF order, concatenated.
    certs: Vec<u8>,
    /// The SignerInfo's fields up to and including the signature.
    signer_info: Vec<u8>,
    signature: Vec<u8>,
}

impl Detached {
    /// The SignerInfo's signature value: what a signature timestamp covers.
    pub fn signature_value(&self) -> &[u8] {
        &self.signature
    }

    /// The ContentInfo (DER), with `token` (a DER TimeStampToken) as the
    /// unsigned attribute id-smime-aa-timeStampToken (RFC 3161 appendix A).
    pub fn to_der(&self, token: Option<&[u8]>) -> Vec<u8> {
        let mut signer_info = self.signer_info.clone();
        if let Some(token) = token {
            write_tlv(
                &mut signer_info,
                0xa1,
                &attribute(super::tsa::ATTR_TIMESTAMP_TOKEN, token),
            );
        }
        let mut signed_data = tlv(0x02, &[1]);
        write_tlv(&mut signed_data, 0x31, &self.digest_alg);
        write_tlv(&mut signed_data, 0x30, &oid_der(ID_DATA));
        write_tlv(&mut signed_data, 0xa0, &self.certs);
        write_tlv(&mut signed_data, 0x31, &tlv(0x30, &signer_info));

        let mut content_info = oid_der(ID_SIGNED_DATA);
        write_tlv(&mut content_info, 0xa0, &tlv(0x30, &signed_data));
        tlv(0x30, &content_info)
    }
}

/// A `multipart/signed` message whose signature part is still to be
/// assembled (see [`Detached`]).
#[derive(Clone, Debug)]
pub struct SignedMime {
    /// Everything up to the base64 of the signature.
    head: Vec<u8>,
    signature: Detached,
    /// The closing boundary.
    tail: String,
}

impl SignedMime {
    /// The detached signature.
    pub fn signature(&self) -> &Detached {
        &self.signature
    }

    /// The complete message, with `token` in the signature if given.
    pub fn to_message(&self, token: Option<&[u8]>) -> Vec<u8> {
        let der = self.signature.to_der(token);
        let mut out = Vec::with_capacity(self.head.len() + der.len() * 2);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&base64_lines(&der));
        out.extend_from_slice(self.tail.as_bytes());
        out
    }
}

/// Which of the two files of a signing identity a problem concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PemFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

/// Which file a load problem belongs to.
enum LoadError {
    Cert(String),
    Key(String),
}

/// A header value that cannot start a new header line: CRLF stays only as
/// a fold (followed by a space or tab, with something after it); every
/// other CR or LF becomes a space.
fn header_value(value: &str) -> String {
    let b = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    for (pos, c) in value.char_indices() {
        if pos < i {
            continue; // the LF of a kept fold
        }
        let fold = c == '\r'
            && b.get(pos + 1) == Some(&b'\n')
            && matches!(b.get(pos + 2), Some(b' ' | b'\t'))
            && b[pos + 2..]
                .iter()
                .any(|&x| !matches!(x, b' ' | b'\t' | b'\r' | b'\n'));
        if fold {
            out.push_str("\r\n");
            i = pos + 2;
        } else if c == '\r' || c == '\n' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// `n` random bytes from `rng` as lower-case hex.
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn random_hex(rng: &dyn SecureRandom, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes)
        .expect("the system random number generator failed");
    hex::encode(bytes)
}

/// Base64 in lines of 76 characters, each ending in CRLF.
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The SEC1 ECPrivateKey inside a PKCS#8 PrivateKeyInfo for an EC key.
fn ec_from_pkcs8(pkcs8: &[u8]) -> Result<&[u8], LoadError> {
    const PKCS8: &str = "PKCS#8 private key";
    let mut r = key_sequence(pkcs8, PKCS8)?;
    key_field(&mut r, 0x02, "version is not an INTEGER", PKCS8)?;
    let alg = key_field(&mut r, 0x30, "algorithm is not a SEQUENCE", PKCS8)?;
    let mut alg = Reader::new(alg.value);
    let oid = key_field(&mut alg, 0x06, "algorithm OID missing", PKCS8)?;
    if oid.raw != oid_der(OID_EC_PUBLIC_KEY).as_slice() {
        return Err(LoadError::Key(
            "the private key is not an EC key, but the certificate's key is".into(),
        ));
    }
    let key = key_field(&mut r, 0x04, "privateKey is not an OCTET STRING", PKCS8)?;
    Ok(key.value)
}

/// The private scalar of a SEC1 ECPrivateKey (RFC 5915).
fn ec_private_scalar(sec1: &[u8]) -> Result<&[u8], LoadError> {
    const SEC1: &str = "EC private key";
    let mut r = key_sequence(sec1, SEC1)?;
    let version = key_field(&mut r, 0x02, "version is not an INTEGER", SEC1)?;
    if version.value != [1] {
        return Err(malformed_key(SEC1, "version is not 1"));
    }
    let scalar = key_field(&mut r, 0x04, "privateKey is not an OCTET STRING", SEC1)?;
    Ok(scalar.value)
}

/// The fields of the DER SEQUENCE `der` starts with, a private key
/// `structure`.
fn key_sequence<'a>(der: &'a [u8], structure: &str) -> Result<Reader<'a>, LoadError> {
    let seq = key_field(&mut Reader::new(der), 0x30, "not a SEQUENCE", structure)?;
    Ok(Reader::new(seq.value))
}

/// The next field of a private key `structure`, which must have `tag`.
fn key_field<'a>(
    r: &mut Reader<'a>,
    tag: u8,
    what: &'static str,
    structure: &str,
) -> Result<Tlv<'a>, LoadError> {
    r.expect(tag, what)
        .map_err(|e| malformed_key(structure, e.0))
}

fn malformed_key(structure: &str, what: &str) -> LoadError {
    LoadError::Key(format!("malformed {structure}: {what}"))
}

/// DER IssuerAndSerialNumber of a certificate, from its own bytes.
fn issuer_and_serial(cert: &[u8]) -> Result<Vec<u8>, String> {
    let walk = || -> Result<Vec<u8>, crate::asn1::Asn1Error> {
        let outer = Reader::new(cert).expect(0x30, "certificate is not a SEQUENCE")?;
        let tbs = Reader::new(outer.value).expect(0x30, "TBSCertificate is not a SEQUENCE")?;
        let mut r = Reader::new(tbs.value);
        if r.peek_tag() == Some(0xa0) {
            r.read()?; // version
        }
        let serial = r.expect(0x02, "serialNumber is not an INTEGER")?;
        r.expect(0x30, "signature is not a SEQUENCE")?;
        let issuer = r.expect(0x30, "issuer is not a SEQUENCE")?;
        Ok(tlv(0x30, &[issuer.raw, serial.raw].concat()))
    };
    walk().map_err(|e| format!("unparsable certificate: {e}"))
}

/// A DER TLV.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    write_tlv(&mut out, tag, value);
    out
}

/// The DER of an OBJECT IDENTIFIER.
fn oid_der(oid: ObjectIdentifier) -> Vec<u8> {
    tlv(0x06, oid.as_bytes())
}

/// An AlgorithmIdentifier, with NULL parameters (RSA) or none.
fn alg_id(oid: ObjectIdentifier, null_params: bool) -> Vec<u8> {
    let mut v = oid_der(oid);
    if null_params {
        v.extend_from_slice(&[0x05, 0x00]);
    }
    tlv(0x30, &v)
}

/// An Attribute with one value (already DER).
fn attribute(oid: ObjectIdentifier, value: &[u8]) -> Vec<u8> {
    let mut v = oid_der(oid);
    write_tlv(&mut v, 0x31, value);
    tlv(0x30, &v)
}

/// `at` (whole seconds) as a CMS Time: UTCTime up to 2049,
/// GeneralizedTime after (RFC 5652 §11.3).
fn time_der(at: SystemTime) -> Vec<u8> {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dt = DateTime::from_unix_duration(Duration::from_secs(secs))
        .unwrap_or_else(|_| DateTime::from_unix_duration(Duration::ZERO).expect("the epoch"));
    let encoded = match UtcTime::from_date_time(dt) {
        Ok(t) => t.to_der(),
        Err(_) => GeneralizedTime::from_date_time(dt).to_der(),
    };
    encoded.expect("a time encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_time_is_utc_until_2049() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        assert_eq!(time_der(t)[0], 0x17);
        assert_eq!(&time_der(t)[2..], b"260101000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(2_556_144_000); // 2051-01-01
        assert_eq!(time_der(t)[0], 0x18);
    }

    #[test]
    fn missing_files_are_named() {
        let e = SigningIdentity::load(Path::new("/nonexistent/c.pem"), Path::new("/x/k.pem"))
            .unwrap_err();
        assert!(e.starts_with("/nonexistent/c.pem: cannot read"), "{e}");
    }

    #[test]
    fn header_values_keep_folds_only() {
        assert_eq!(header_value("a\r\n b"), "a\r\n b");
        assert_eq!(header_value("a\r\nBcc: x"), "a  Bcc: x");
        assert_eq!(header_value("a\nb\rc"), "a b c");
        assert_eq!(header_value("a\r\n \r\n"), "a     ");
        assert_eq!(header_value("a\r\n \r\nX: y"), "a\r\n   X: y");
        assert_eq!(header_value("é\r\n\tü"), "é\r\n\tü");
    }

    #[test]
    fn base64_lines_are_76_wide() {
        let out = base64_lines(&[0u8; 100]);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn ec_scalar_from_sec1() {
        // SEQUENCE { INTEGER 1, OCTET STRING 01 02 }
        let sec1 = [0x30, 0x07, 0x02, 0x01, 0x01, 0x04, 0x02, 0x01, 0x02];
        assert_eq!(ec_private_scalar(&sec1).ok(), Some(&[1u8, 2][..]));
        assert!(ec_private_scalar(&[0x30, 0x00]).is_err());
    }
}
