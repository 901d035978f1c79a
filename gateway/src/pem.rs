//! Certificates, CRLs and private keys read from PEM files: the one place
//! that decodes them, so that every file the gateway is given gets the same
//! clear error (which file, and what is wrong with it).

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// What is wrong with the contents of a PEM file.
#[derive(Debug)]
pub enum PemError {
    /// The file could not be read.
    Read(std::io::Error),
    /// A PEM block is malformed (bad base64, no END line).
    Syntax(rustls_pki_types::pem::Error),
    /// No certificate in it.
    NoCertificate,
    /// No CRL in it.
    NoCrl,
    /// No private key in it.
    NoKey,
    /// More than one private key: which one is meant is unclear.
    ManyKeys(usize),
    /// The private key is encrypted (the gateway has no passphrase).
    EncryptedKey,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::Read(e) => write!(f, "cannot read: {e}"),
            PemError::Syntax(e) => write!(f, "unreadable PEM: {e}"),
            PemError::NoCertificate => f.write_str("no CERTIFICATE found"),
            PemError::NoCrl => f.write_str("no X509 CRL found"),
            PemError::NoKey => f.write_str(
                "no private key found (expected PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" \
                 or \"EC PRIVATE KEY\")",
            ),
            PemError::ManyKeys(n) => write!(f, "{n} private keys found; exactly one is expected"),
            PemError::EncryptedKey => {
                f.write_str("the private key is encrypted; an unencrypted key is required")
            }
        }
    }
}

impl std::error::Error for PemError {}

/// A [`PemError`] with the file it concerns; shown as `FILE: what`.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub error: PemError,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for FileError {}

/// Every certificate of a file, in order: its PEM `CERTIFICATE` blocks, or
/// the whole file when it is one DER certificate (no PEM, starts with a
/// SEQUENCE tag).
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = pem_or_der(bytes)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// Every CRL of a file, in order: PEM `X509 CRL` blocks or one DER CRL.
pub fn crls(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    let crls = pem_or_der(bytes)?;
    if crls.is_empty() {
        return Err(PemError::NoCrl);
    }
    Ok(crls)
}

/// The one private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC),
/// unencrypted. Other blocks (a certificate beside the key) are ignored.
pub fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    if memchr::memmem::find(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----").is_some() {
        return Err(PemError::EncryptedKey);
    }
    let mut keys = PrivateKeyDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Syntax)?;
    match keys.len() {
        0 => Err(PemError::NoKey),
        1 => Ok(keys.remove(0)),
        n => Err(PemError::ManyKeys(n)),
    }
}

/// [`certificates`] of the file at `path`.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    read(path)
        .and_then(|b| certificates(&b))
        .map_err(in_file(path))
}

/// [`private_key`] of the file at `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    read(path)
        .and_then(|b| private_key(&b))
        .map_err(in_file(path))
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(PemError::Read)
}

fn in_file(path: &Path) -> impl FnOnce(PemError) -> FileError + '_ {
    move |error| FileError {
        path: path.to_owned(),
        error,
    }
}

/// The items of type `T` in PEM, or the whole of `bytes` when they hold no
/// PEM and start as DER does; nothing otherwise.
fn pem_or_der<T: PemObject + From<Vec<u8>>>(bytes: &[u8]) -> Result<Vec<T>, PemError> {
    if memchr::memmem::find(bytes, b"-----BEGIN ").is_some() {
        T::pem_slice_iter(bytes)
            .collect::<Result<_, _>>()
            .map_err(PemError::Syntax)
    } else if bytes.first() == Some(&0x30) {
        Ok(vec![T::from(bytes.to_vec())])
    } else {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(label: &str, body: &str) -> String {
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    #[test]
    fn certificates_from_pem_or_der() {
        let two = block("CERTIFICATE", "MAEC") + &block("CERTIFICATE", "MAED");
        let certs = certificates(two.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[1].as_ref(), &[0x30, 0x01, 0x03]);
        assert_eq!(certificates(&[0x30, 0]).unwrap()[0].as_ref(), &[0x30, 0]);
        for none in [&b"notes\n"[..], b"", block("X509 CRL", "MAEC").as_bytes()] {
            assert!(matches!(certificates(none), Err(PemError::NoCertificate)));
        }
        let bad = "-----BEGIN CERTIFICATE-----\nMAEC\n";
        let e = certificates(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("unreadable PEM: "), "{e}");
        assert_eq!(crls(block("X509 CRL", "MAEC").as_bytes()).unwrap().len(), 1);
        assert!(matches!(crls(two.as_bytes()), Err(PemError::NoCrl)));
    }

    #[test]
    fn exactly_one_unencrypted_key() {
        let cert = block("CERTIFICATE", "MAEC");
        let key = block("PRIVATE KEY", "MAED");
        let with_cert = cert.clone() + &key;
        assert!(matches!(
            private_key(with_cert.as_bytes()),
            Ok(PrivateKeyDer::Pkcs8(_))
        ));
        let rsa = block("RSA PRIVATE KEY", "MAED");
        assert!(matches!(
            private_key(rsa.as_bytes()),
            Ok(PrivateKeyDer::Pkcs1(_))
        ));
        let e = private_key((key.clone() + &block("EC PRIVATE KEY", "MAED")).as_bytes());
        assert_eq!(
            e.unwrap_err().to_string(),
            "2 private keys found; exactly one is expected"
        );
        assert!(matches!(private_key(cert.as_bytes()), Err(PemError::NoKey)));
        let enc = block("ENCRYPTED PRIVATE KEY", "MAED");
        assert!(matches!(
            private_key(enc.as_bytes()),
            Err(PemError::EncryptedKey)
        ));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = read_certificates(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{e}"
        );
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "no key here\n").unwrap();
        let e = read_private_key(&notes).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: no private key found", notes.display())),
            "{e}"
        );
    }
}
