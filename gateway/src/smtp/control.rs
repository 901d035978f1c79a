//! The control socket (`DATA_DIR/emla.sock`): how `emla policy reload`
//! asks the running gateway to reload (and `emla crl fetch` to download
//! CRLs now), and learns whether it did.
//! One request line, one JSON reply line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::Gateway;

/// The socket's path under the data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("emla.sock")
}

/// Listens on the control socket until the task is dropped.
pub async fn listen(gw: Arc<Gateway>) -> Result<tokio::task::JoinHandle<()>, String> {
    let path = socket_path(&gw.config.data_dir);
    // A socket left by a killed gateway would make bind fail.
    if UnixStream::connect(&path).await.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path).map_err(|e| {
        format!(
            "cannot listen on the control socket {}: {e}",
            path.display()
        )
    })?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let gw = gw.clone();
            tokio::spawn(async move {
                let _ = serve_one(gw, stream).await;
            });
        }
    }))
}

async fn serve_one(gw: Arc<Gateway>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(256)).read_line(&mut line).await?;
    let reply = match line.trim() {
        "reload" => match gw.reload_policy().await {
            Ok(version) => serde_json::json!({"ok": true, "version": version}),
            Err(problems) => serde_json::json!({"ok": false, "problems": problems}),
        },
        "crl-fetch" => {
            let outcomes = gw.revocation.refresh(&gw.policy(), &gw.store, true).await;
            serde_json::json!({"ok": true, "outcomes": outcomes})
        }
        other => {
            serde_json::json!({"ok": false, "problems": [format!("unknown request {other:?}")]})
        }
    };
    write.write_all(format!("{reply}\n").as_bytes()).await
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
