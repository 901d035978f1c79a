//! The gateway's TLS server side (STARTTLS, the auditors' web view): its
//! certificate and key, TLS 1.2 and 1.3 only.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Reads a PEM certificate chain (leaf first) and its private key; errors
/// name the file and what is wrong with it.
pub fn cert_and_key(
    files: &TlsFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs =
        crate::pem::read_certificates(&files.cert).map_err(|e| format!("TLS certificate {e}"))?;
    let key = crate::pem::read_private_key(&files.key).map_err(|e| format!("TLS key {e}"))?;
    Ok((certs, key))
}

/// A server configuration builder: ring, TLS 1.3 and 1.2.
pub fn builder(
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))
}

/// Loads the certificate chain and key into a TLS acceptor (no client
/// certificates).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let (certs, key) = cert_and_key(files)?;
    let config = builder()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not match or are unusable: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
