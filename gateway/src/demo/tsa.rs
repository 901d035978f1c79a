//! The demo's time-stamping authority (RFC 3161): `openssl ts -reply`
//! behind a small HTTP responder on loopback, so that the demo's receipts
//! and checkpoints carry real tokens. Its certificate (extendedKeyUsage
//! critical timeStamping) and CA are made by [`pki::tsa`](super::pki::tsa).
//! Without openssl the demo runs without it.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Largest time-stamp request taken (a SHA-256 request is under 100 bytes).
const MAX_REQUEST: usize = 16 * 1024;

/// The TSA's `openssl ts` configuration; `@SERIAL@` becomes a serial file
/// of each reply's own.
const CONFIG: &str = "[tsa]\ndefault_tsa = demo\n[demo]\nserial = @SERIAL@\n\
    signer_digest = sha256\ndefault_policy = 1.3.6.1.4.1.99999.1\n\
    digests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
    ess_cert_id_chain = no\ness_cert_id_alg = sha256\n";

/// A running demo TSA.
pub struct DemoTsa {
    /// Where to POST requests (`[evidence] tsa_url`).
    pub url: String,
    /// The CA its certificate chains to (`[evidence] tsa_ca`).
    pub ca: PathBuf,
}

struct Files {
    /// `pki/tsa`: the certificate and key.
    pki: PathBuf,
    /// Scratch space for the replies.
    work: PathBuf,
    replies: AtomicU64,
}

/// Whether `openssl` runs.
pub fn openssl_present() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Starts the TSA for the demo in `dir` (its PKI already made).
pub async fn start(dir: &Path) -> Result<DemoTsa, String> {
    let files = Arc::new(Files {
        pki: dir.join("pki/tsa"),
        work: dir.join("tsa"),
        replies: AtomicU64::new(1),
    });
    std::fs::create_dir_all(&files.work)
        .map_err(|e| format!("cannot create {}: {e}", files.work.display()))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("demo TSA: cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let files = files.clone();
                    async move { Ok::<_, Infallible>(answer(&files, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    });
    Ok(DemoTsa {
        url: format!("http://127.0.0.1:{port}/tsr"),
        ca: dir.join("pki/tsa/ca.pem"),
    })
}

async fn answer(files: &Arc<Files>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a TimeStampReq\n".into(),
        );
    }
    let query = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let files = files.clone();
    let reply = tokio::task::spawn_blocking(move || reply(&files, &query))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match reply {
        Ok(der) => {
            let mut r = Response::new(Full::new(Bytes::from(der)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/timestamp-reply"),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "demo TSA: no reply");
            plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
    }
}

/// Runs `openssl ts -reply` on one request, in a scratch directory of its
/// own (openssl rewrites the serial file: replies never share one).
fn reply(files: &Files, query: &[u8]) -> Result<Vec<u8>, String> {
    let n = files.replies.fetch_add(1, Ordering::Relaxed);
    let work = files.work.join(format!("reply-{n}"));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = (|| {
        let (q, r, serial, cnf) = (
            work.join("q.tsq"),
            work.join("r.tsr"),
            work.join("serial"),
            work.join("tsa.cnf"),
        );
        std::fs::write(&q, query).map_err(|e| e.to_string())?;
        std::fs::write(&serial, format!("{n:04x}\n")).map_err(|e| e.to_string())?;
        let config = CONFIG.replace("@SERIAL@", &serial.display().to_string());
        std::fs::write(&cnf, config).map_err(|e| e.to_string())?;
        let out = Command::new("openssl")
            .args(["ts", "-reply", "-config"])
            .arg(&cnf)
            .arg("-queryfile")
            .arg(&q)
            .arg("-signer")
            .arg(files.pki.join("tsa.pem"))
            .arg("-inkey")
            .arg(files.pki.join("tsa.key"))
            .arg("-out")
            .arg(&r)
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl ts -reply: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::read(&r).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}
