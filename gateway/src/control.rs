//! The control socket (`DATA_DIR/emla.sock`), client side: how `emla
//! policy reload` and `emla crl fetch` ask the running gateway (see
//! [`server::control`](crate::server::control) for the other side).
//! One request line, one JSON reply line.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Load the policy again (`emla policy reload`, like SIGHUP).
pub const RELOAD: &str = "reload";
/// Download every CRL source now (`emla crl fetch`).
pub const CRL_FETCH: &str = "crl-fetch";

/// The socket's path under the data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("emla.sock")
}

/// Sends one request to a running gateway and returns its JSON reply.
pub async fn request(data_dir: &Path, what: &str) -> Result<serde_json::Value, String> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        format!(
            "no gateway is listening on {} ({e}); is `emla serve` running with this configuration?",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{what}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| format!("unreadable reply {line:?}: {e}"))
}
