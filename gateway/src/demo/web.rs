//! The auditors' web view in the demo: a self-signed HTTPS certificate for
//! the demo's address, a random token made for this run (only its hash is
//! written), and the `/login?token=…` link that opens the overview.

use std::net::SocketAddr;
use std::path::Path;

/// The `[audit_web]` table of the demo's configuration and the link to print.
pub struct WebView {
    /// Appended to `emla.toml`.
    pub toml: String,
    /// `https://ADDR/login?token=…`.
    pub login: String,
}

/// A free port on `ip`, for the listener named `what` (the listeners
/// print no address the demo could read back before they start).
pub fn free_addr(ip: std::net::IpAddr, what: &str) -> Result<SocketAddr, String> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for {what} on {ip}: {e}"))
}

/// Makes the certificate and tokens file under `dir` and picks a free port
/// on the SMTP listener's address.
pub fn prepare(dir: &Path, listen: SocketAddr) -> Result<WebView, String> {
    let ip = listen.ip();
    let addr = free_addr(ip, "the web view")?;
    let (cert, key) = super::pki::web(dir, ip)?;
    let mut raw = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| "no randomness for the web view's token".to_string())?;
    let token = hex::encode(raw);
    let tokens = dir.join("auditors.tokens");
    let hash = hex::encode(crate::audit::web::auth::sha256(token.as_bytes()));
    std::fs::write(&tokens, format!("demo-auditor {hash}\n"))
        .map_err(|e| format!("cannot write {}: {e}", tokens.display()))?;
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    Ok(WebView {
        toml: format!(
            "\n[audit_web]\nlisten = \"{addr}\"\ncert = {}\nkey = {}\ntokens_file = {}\n",
            q(&cert),
            q(&key),
            q(&tokens)
        ),
        login: format!("https://{addr}/login?token={token}"),
    })
}
