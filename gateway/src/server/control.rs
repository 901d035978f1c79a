//! The control socket, server side: answers [`crate::control`] requests.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::Shared;
use crate::control::{socket_path, CRL_FETCH, RELOAD};

/// Listens on the control socket until the task is aborted.
pub async fn listen(shared: Arc<Shared>) -> Result<tokio::task::JoinHandle<()>, String> {
    let path = socket_path(&shared.config.data_dir);
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
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = serve_one(shared, stream).await;
            });
        }
    }))
}

async fn serve_one(shared: Arc<Shared>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(256)).read_line(&mut line).await?;
    let reply = match line.trim() {
        RELOAD => match shared.reload_policy().await {
            Ok(version) => serde_json::json!({"ok": true, "version": version}),
            Err(problems) => serde_json::json!({"ok": false, "problems": problems}),
        },
        CRL_FETCH => {
            let outcomes = shared
                .revocation
                .refresh(&shared.policy.get(), &shared.store, true)
                .await;
            serde_json::json!({"ok": true, "outcomes": outcomes})
        }
        other => {
            serde_json::json!({"ok": false, "problems": [format!("unknown request {other:?}")]})
        }
    };
    write.write_all(format!("{reply}\n").as_bytes()).await
}
