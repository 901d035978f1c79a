//! The bounded HTTP client of revocation fetching (`emla::trust::http`)
//! against a real HTTP server on loopback (`tests/support/http_serve.py`,
//! Python's `http.server`): files, statuses, size limits, redirects, schemes
//! and timeouts.
//!
//! Requirements: `python3` (override with `EMLA_TEST_PYTHON`).

#[path = "support/proc.rs"]
mod proc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use emla::trust::http::{Http, HttpError, HttpLimits};
use proc::Proc;

/// `http_serve.py` on a free loopback port, serving `dir`; killed on drop.
struct Server {
    _proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// `extra`: `[CERT, KEY]` for HTTPS.
    fn start_with(extra: &[&Path]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let python = std::env::var("EMLA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut proc = Proc::spawn(
            "http_serve.py",
            Command::new(python)
                .arg(support_dir().join("http_serve.py"))
                .arg(dir.path())
                .args(extra),
        );
        let port = proc
            .wait_line("listening on ", Duration::from_secs(20))
            .trim()
            .parse()
            .expect("port number");
        Server {
            _proc: proc,
            port,
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support")
}

fn client(limits: HttpLimits) -> Http {
    Http::new(limits).expect("HTTP client")
}

fn small_limits() -> HttpLimits {
    HttpLimits {
        max_bytes: 1024,
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        max_redirects: 3,
    }
}

#[tokio::test]
async fn a_file_is_fetched() {
    let server = Server::start();
    let content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(server.dir().join("issuing.crl"), &content).unwrap();
    let http = client(HttpLimits::default());
    let got = http.get(&server.url("/files/issuing.crl")).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, content);
    assert_eq!(got.final_url, server.url("/files/issuing.crl"));
    // POST: the body and its content type arrive.
    let got = http
        .post(
            &server.url("/echo"),
            "application/ocsp-request",
            b"\x30\x03\x02\x01\x00".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(got.bytes, b"\x30\x03\x02\x01\x00");
}

#[tokio::test]
async fn a_status_other_than_2xx_is_an_error() {
    let server = Server::start();
    let http = client(small_limits());
    for (path, status) in [("/files/missing.crl", 404), ("/status/500", 500)] {
        let url = server.url(path);
        let e = http.get(&url).await.unwrap_err();
        assert_eq!(
            e,
            HttpError::Status {
                url: url.clone(),
                status
            }
        );
        let text = e.to_string();
        assert!(
            text.contains(&url) && text.contains(&status.to_string()),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let server = Server::start();
    let http = client(small_limits());
    // Exactly the limit is fine.
    let got = http.get(&server.url("/big?n=1024")).await.unwrap();
    assert_eq!(got.bytes.len(), 1024);
    // Announced by Content-Length, or chunked without a length: refused.
    for path in ["/big?n=1025", "/chunked?n=100000", "/chunked?n=1025"] {
        let url = server.url(path);
        let e = http.get(&url).await.unwrap_err();
        assert_eq!(e, HttpError::TooLarge { url, limit: 1024 }, "{path}");
        assert!(e.to_string().contains("1024 bytes"), "{e}");
    }
}

#[tokio::test]
async fn redirects_are_followed_within_the_limit() {
    let server = Server::start();
    let http = client(small_limits());
    let got = http.get(&server.url("/hops/3")).await.unwrap();
    assert_eq!(got.bytes, b"arrived");
    assert_eq!(got.final_url, server.url("/hops/0"));

    let e = http.get(&server.url("/hops/4")).await.unwrap_err();
    assert!(
        matches!(e, HttpError::TooManyRedirects { limit: 3, ref url } if url.ends_with("/hops/1")),
        "{e:?}"
    );
    let e = http.get(&server.url("/loop")).await.unwrap_err();
    assert!(matches!(e, HttpError::TooManyRedirects { .. }), "{e:?}");
    assert!(e.to_string().contains("/loop"), "{e}");
    // A POST loop (307 keeps the method) is refused the same way.
    let e = http
        .post(&server.url("/loop"), "application/ocsp-request", vec![1])
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::TooManyRedirects { .. }), "{e:?}");

    // No redirects allowed at all.
    let none = client(HttpLimits {
        max_redirects: 0,
        ..small_limits()
    });
    let e = none.get(&server.url("/hops/1")).await.unwrap_err();
    assert!(
        matches!(e, HttpError::TooManyRedirects { limit: 0, .. }),
        "{e:?}"
    );

    // 303 turns a POST into a GET of the file.
    std::fs::write(server.dir().join("r.der"), b"response").unwrap();
    let got = http
        .post(
            &server.url("/see-other?name=r.der"),
            "application/ocsp-request",
            vec![1, 2, 3],
        )
        .await
        .unwrap();
    assert_eq!(got.bytes, b"response");
    assert_eq!(got.final_url, server.url("/files/r.der"));
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let server = Server::start();
    let http = client(small_limits());
    for (target, scheme) in [
        ("file:///etc/passwd", "file"),
        ("ftp://127.0.0.1/x.crl", "ftp"),
        ("ldap://127.0.0.1/cn=CA?certificateRevocationList", "ldap"),
    ] {
        let url = server.url(&format!("/redirect?to={}", urlencode(target)));
        let e = http.get(&url).await.unwrap_err();
        match &e {
            HttpError::Scheme { scheme: s, url } => {
                assert_eq!(s, scheme);
                assert!(url.starts_with(scheme), "{url}");
            }
            other => panic!("{target}: expected a scheme error, got {other:?}"),
        }
        assert!(e.to_string().contains("not http or https"), "{e}");
    }
    // The same for the URL given directly.
    let e = http.get("file:///etc/passwd").await.unwrap_err();
    assert!(matches!(e, HttpError::Scheme { .. }), "{e:?}");
    let e = http.get("no url at all").await.unwrap_err();
    assert!(matches!(e, HttpError::BadUrl { .. }), "{e:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepted by the kernel (listen backlog), never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ca.crl", silent.local_addr().unwrap());
    let limits = HttpLimits {
        timeout: Duration::from_secs(2),
        ..small_limits()
    };
    let http = client(limits);
    let started = Instant::now();
    let e = http.get(&url).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(e.to_string().contains(&url), "{e}");

    // Headers arrive, the body stalls: the total timeout still holds.
    let server = Server::start();
    let started = Instant::now();
    let e = http.get(&server.url("/slow")).await.unwrap_err();
    assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

#[tokio::test]
async fn a_closed_port_is_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/ocsp");
    let http = client(small_limits());
    let e = http
        .post(&url, "application/ocsp-request", vec![0x30, 0x00])
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Connect { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to {url}")),
        "{e}"
    );
}

#[tokio::test]
async fn https_trusts_only_the_webpki_roots() {
    // A self-signed server certificate for 127.0.0.1 is not trusted.
    let keys = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (keys.path().join("cert.pem"), keys.path().join("key.pem"));
    let openssl = std::env::var("EMLA_TEST_OPENSSL").unwrap_or_else(|_| "openssl".into());
    let out = Command::new(openssl)
        .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(out.status.success(), "{out:?}");
    let server = Server::start_with(&[&cert, &key]);
    std::fs::write(server.dir().join("a.crl"), b"crl").unwrap();
    let url = format!("https://127.0.0.1:{}/files/a.crl", server.port);
    let e = client(small_limits()).get(&url).await.unwrap_err();
    assert!(matches!(e, HttpError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
