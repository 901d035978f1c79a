//! The auditors' read-only web view (`[audit_web]` in the serve
//! configuration): the search of `emla audit search`, the timeline of
//! `emla audit show` and the integrity of the audit chain, over HTTPS on a
//! listener of its own.
//!
//! - **Read-only.** Only `GET` and `HEAD`; any other method gets `405`
//!   (with `Allow: GET, HEAD`) before authentication, whatever the path.
//! - **Authentication** on every page but `/style.css` and `/login`:
//!   `Authorization: Bearer TOKEN` (its SHA-256 listed in `tokens_file`), a
//!   client certificate chaining to `client_ca`, or the session cookie of a
//!   browser that opened `/login?token=TOKEN[&next=/path]` (the token is
//!   exchanged for a random session id in an `HttpOnly; Secure;
//!   SameSite=Strict` cookie, then the browser is sent to `next`). Anything
//!   else gets `401` with `WWW-Authenticate: Bearer` and a log line.
//! - **Pages**: `/` and `/search` (form, results, next-page link),
//!   `/message?id=ID` (timeline and chain status), `/chain`; the same as
//!   JSON under `/api/search`, `/api/message`, `/api/chain`, or with
//!   `?format=json`.
//! - **Headers**: a Content-Security-Policy that allows nothing but the
//!   stylesheet and the form's own target, `nosniff`, `no-referrer`,
//!   `no-store`, framing denied.
//!
//! HTTP is hyper 1 (HTTP/1.1 only) over the gateway's tokio-rustls.

pub mod auth;
pub mod charts;
pub mod html;
pub mod overview;
pub mod query;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use self::auth::{Auditor, Refusal, Sessions, TokenFile, Via};
use super::{cli, render, AuditError};
use crate::config::AuditWeb;
use crate::policy::CurrentPolicy;
use crate::store::{ChainCheck, Store};

/// Most connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a connection stays open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// How long a walk of the audit chain is reused before the next page view
/// walks it again (the page shows when it was checked).
pub const CHAIN_CHECK_TTL: Duration = Duration::from_secs(10);

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

type Body = Full<Bytes>;

/// The web view's state, shared by its connections.
pub struct Web {
    store: Store,
    policy: Arc<CurrentPolicy>,
    /// The revocation downloader's directory (its `state.json`).
    revocation_dir: PathBuf,
    tokens: Option<TokenFile>,
    sessions: Sessions,
    chain: tokio::sync::Mutex<Option<(Instant, i64, ChainCheck)>>,
}

/// What the TLS layer knows about a connection.
#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    /// Subject DN of a verified client certificate.
    cert_subject: Option<String>,
}

/// Starts the web view if `[audit_web]` is configured: reads the tokens
/// file and the TLS files, binds the listener and prints `audit web
/// listening on ADDR` (scripts and tests wait for it). Returns the accept
/// task, which ends when `stop` turns true; `None` when the view is off.
/// Errors name the file or address that failed.
pub async fn spawn(
    cfg: Option<AuditWeb>,
    store: Store,
    policy: Arc<CurrentPolicy>,
    revocation_dir: PathBuf,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, String> {
    let Some(cfg) = cfg else {
        return Ok(None);
    };
    let tokens = cfg
        .tokens_file
        .as_deref()
        .map(TokenFile::load)
        .transpose()
        .map_err(|e| format!("[audit_web] {e}"))?;
    let acceptor = acceptor(&cfg).map_err(|e| format!("[audit_web] {e}"))?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("[audit_web] cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("audit web listening on {local}");
    tracing::info!(%local, tokens = tokens.is_some(), client_ca = cfg.client_ca.is_some(),
        "audit web view listening (HTTPS)");
    let web = Arc::new(Web {
        store,
        policy,
        revocation_dir,
        tokens,
        sessions: Sessions::default(),
        chain: tokio::sync::Mutex::new(None),
    });
    Ok(Some(tokio::spawn(accept_loop(
        web, listener, acceptor, stop,
    ))))
}

/// TLS 1.2/1.3 with the configured certificate; client certificates are
/// asked for when `client_ca` is set, verified against it, and optional
/// (a connection without one must authenticate at the HTTP level).
fn acceptor(cfg: &AuditWeb) -> Result<TlsAcceptor, String> {
    let (certs, key) = crate::tls::cert_and_key(&cfg.tls)?;
    let builder = crate::tls::builder()?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let what = |e: &dyn std::fmt::Display| format!("client_ca {}: {e}", ca.display());
            let mut roots = rustls::RootCertStore::empty();
            let certs = crate::pem::read_certificates(ca).map_err(|e| format!("client_ca {e}"))?;
            for c in certs {
                roots.add(c).map_err(|e| what(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| what(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key do not match or are unusable: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    web: Arc<Web>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, addr) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "audit web: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let web = web.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, error = %e, "audit web: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "audit web: TLS handshake timed out");
                    return;
                }
            };
            let cert_subject = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| {
                    crate::trust::cert::CertInfo::parse(der)
                        .map(|c| c.subject())
                        .unwrap_or_else(|_| "(unparsable client certificate)".into())
                });
            let peer = Peer { addr, cert_subject };
            let service = hyper::service::service_fn(move |req| {
                let web = web.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(web.handle(&peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(tls), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "audit web: connection"),
                Err(_) => tracing::debug!(peer = %addr, "audit web: connection lifetime over"),
                Ok(Ok(())) => {}
            }
        });
    }
    tracing::info!("audit web view stopped");
}

/// A response with the security headers every answer carries.
fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let mut set = |name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::CACHE_CONTROL, "no-store");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

fn json_body(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Where `/login` may send the browser: a local path, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

impl Web {
    async fn handle(&self, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if method != Method::GET && method != Method::HEAD {
            tracing::warn!(peer = %peer.addr, %method, %path, "audit web: method refused (read-only)");
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                HTML,
                html::error_page(
                    "method not allowed",
                    None,
                    "this view is read-only: GET and HEAD only",
                ),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        if path == "/style.css" {
            return respond(
                StatusCode::OK,
                "text/css; charset=utf-8",
                html::STYLE.into(),
            );
        }
        let pairs = query::pairs(req.uri().query());
        if path == "/login" {
            return self.login(peer, &pairs);
        }
        let auditor = match self.authenticate(peer, req.headers()) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(peer = %peer.addr, %method, %path, reason = %why,
                    "audit web: unauthenticated request refused");
                return unauthorized(&why);
            }
        };
        let json = path.starts_with("/api/") || query::get(&pairs, "format") == Some("json");
        let route = path.strip_prefix("/api").unwrap_or(&path);
        let r = match route {
            "/" | "/overview" => self.overview(&auditor, &pairs, json).await,
            "/queue" => self.queue(&auditor, &pairs, json).await,
            "/crl" => self.crl(&auditor, json),
            "/search" => self.search(&auditor, &pairs, json).await,
            "/message" => self.message(&auditor, &pairs, json).await,
            "/chain" => self.chain_page(&auditor, json).await,
            _ => error_response(
                StatusCode::NOT_FOUND,
                &auditor,
                json,
                "not found",
                "no such page",
            ),
        };
        tracing::info!(auditor = %auditor.name, via = auditor.via.as_str(), peer = %peer.addr,
            %method, %path, status = r.status().as_u16(), "audit web request");
        r
    }

    fn authenticate(&self, peer: &Peer, headers: &HeaderMap) -> Result<Auditor, Refusal> {
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let token = auth::bearer(v.to_str().map_err(|_| Refusal::Malformed)?)?;
            let t = self
                .tokens
                .as_ref()
                .and_then(|f| f.find(&auth::sha256(token.as_bytes())))
                .ok_or(Refusal::UnknownToken)?;
            return Ok(Auditor {
                name: t.name,
                via: Via::Token,
            });
        }
        if let Some(subject) = &peer.cert_subject {
            return Ok(Auditor {
                name: subject.clone(),
                via: Via::Certificate,
            });
        }
        let cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match auth::session_cookie(cookies) {
            Some(id) => self.sessions.check(id, self.tokens.as_ref()),
            None => Err(Refusal::Missing),
        }
    }

    /// `/login?token=T&next=/path`: a listed token opens a browser session.
    fn login(&self, peer: &Peer, pairs: &[(String, String)]) -> Response<Body> {
        let found = query::get(pairs, "token").and_then(|t| {
            self.tokens
                .as_ref()
                .and_then(|f| f.find(&auth::sha256(t.as_bytes())))
        });
        let Some(token) = found else {
            tracing::warn!(peer = %peer.addr, "audit web: login refused (missing or unknown token)");
            return unauthorized(&Refusal::UnknownToken);
        };
        let id = match self.sessions.open(&token) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "audit web: cannot open a session");
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    HTML,
                    html::error_page("unavailable", None, &e),
                );
            }
        };
        let next = safe_next(query::get(pairs, "next"));
        tracing::info!(auditor = %token.name, peer = %peer.addr, "audit web: signed in (session)");
        let mut r = respond(
            StatusCode::SEE_OTHER,
            HTML,
            html::error_page("signed in", None, "continue to the overview"),
        );
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(next) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&id)) {
            h.insert(header::SET_COOKIE, v);
        }
        r
    }

    async fn search(&self, a: &Auditor, pairs: &[(String, String)], json: bool) -> Response<Body> {
        let policy = self.policy.get();
        let outcome = match query::search_args(pairs) {
            Err(e) => Err(AuditError::Usage(e)),
            Ok(args) => match args.query(Some(&policy)) {
                Err(e) => Err(e),
                Ok(q) => match self.store.search(&q).await {
                    Ok(rows) => Ok((rows, q.limit)),
                    Err(e) => Err(AuditError::Store(e)),
                },
            },
        };
        let (rows, limit) = match outcome {
            Ok(r) => r,
            Err(e) => {
                let status = error_status(&e, a);
                if json {
                    return respond(status, JSON, json_body(&json!({"error": e.to_string()})));
                }
                let body = format!(
                    "{}<p class=\"error\" id=\"error\">{}</p>\n",
                    html::search_form(pairs),
                    html::esc(&e.to_string())
                );
                return respond(status, HTML, html::page("search", Some(a), &body));
            }
        };
        let full = rows.len() == limit as usize;
        if json {
            let next = if full {
                rows.last().map(|r| r.cursor().to_string())
            } else {
                None
            };
            let v = json!({
                "auditor": a.name,
                "messages": rows.iter().map(render::json_row).collect::<Vec<_>>(),
                "next_after": next,
            });
            return respond(StatusCode::OK, JSON, json_body(&v));
        }
        let body = format!(
            "{}{}",
            html::search_form(pairs),
            html::results(&rows, full, pairs)
        );
        respond(StatusCode::OK, HTML, html::page("search", Some(a), &body))
    }

    async fn message(&self, a: &Auditor, pairs: &[(String, String)], json: bool) -> Response<Body> {
        let id = query::get(pairs, "id").unwrap_or("");
        let h = match cli::history(&self.store, id).await {
            Ok(h) => h,
            Err(e) => {
                let status = error_status(&e, a);
                return error_response(status, a, json, "message", &e.to_string());
            }
        };
        if json {
            return respond(StatusCode::OK, JSON, h.json());
        }
        let chain = match self.chain_check().await {
            Ok((check, at)) => html::chain_status(&check, at),
            Err(e) => format!("<p class=\"error\">{}</p>", html::esc(&e)),
        };
        let title = format!("message {}", h.id);
        respond(
            StatusCode::OK,
            HTML,
            html::page(&title, Some(a), &html::message(&h, &chain)),
        )
    }

    async fn chain_page(&self, a: &Auditor, json: bool) -> Response<Body> {
        let (check, at) = match self.chain_check().await {
            Ok(c) => c,
            Err(e) => {
                return error_response(StatusCode::SERVICE_UNAVAILABLE, a, json, "audit chain", &e);
            }
        };
        if json {
            let v = match &check {
                ChainCheck::Intact { records, head } => {
                    json!({"status": "intact", "records": records, "head": head,
                           "checked_at": crate::text::time_rfc3339(at)})
                }
                ChainCheck::Broken { seq, problem } => {
                    json!({"status": "broken", "seq": seq, "problem": problem,
                           "checked_at": crate::text::time_rfc3339(at)})
                }
            };
            return respond(StatusCode::OK, JSON, json_body(&v));
        }
        let body = format!("<h1>audit chain</h1>\n{}", html::chain_status(&check, at));
        respond(
            StatusCode::OK,
            HTML,
            html::page("audit chain", Some(a), &body),
        )
    }

    /// The chain's status, walked again when the last walk is older than
    /// [`CHAIN_CHECK_TTL`]; with the time (ms) of the walk.
    async fn chain_check(&self) -> Result<(ChainCheck, i64), String> {
        let mut cached = self.chain.lock().await;
        if let Some((when, at, check)) = &*cached {
            if when.elapsed() < CHAIN_CHECK_TTL {
                return Ok((check.clone(), *at));
            }
        }
        let check = self.store.verify_chain().await.map_err(|e| {
            tracing::error!(error = %e, "audit web: cannot walk the audit chain");
            e.to_string()
        })?;
        if let ChainCheck::Broken { seq, problem } = &check {
            tracing::error!(seq, %problem, "audit web: the audit chain is broken");
        }
        let at = crate::store::now_ms();
        *cached = Some((Instant::now(), at, check.clone()));
        Ok((check, at))
    }
}

fn error_status(e: &AuditError, a: &Auditor) -> StatusCode {
    match e {
        AuditError::Usage(_) => StatusCode::BAD_REQUEST,
        AuditError::NotFound(_) => StatusCode::NOT_FOUND,
        AuditError::Store(err) => {
            tracing::error!(auditor = %a.name, error = %err, "audit web: store unavailable");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// An error as JSON `{"error": what}`, or as an HTML page titled `title`.
fn error_response(
    status: StatusCode,
    a: &Auditor,
    json: bool,
    title: &str,
    what: &str,
) -> Response<Body> {
    if json {
        respond(status, JSON, json_body(&json!({ "error": what })))
    } else {
        respond(status, HTML, html::error_page(title, Some(a), what))
    }
}

/// `401` with `WWW-Authenticate: Bearer` (RFC 6750: `invalid_token` when a
/// credential was presented and refused).
fn unauthorized(why: &Refusal) -> Response<Body> {
    let challenge = match why {
        Refusal::Missing => "Bearer realm=\"emla audit\"",
        Refusal::Malformed => "Bearer realm=\"emla audit\", error=\"invalid_request\"",
        Refusal::UnknownToken | Refusal::StaleSession => {
            "Bearer realm=\"emla audit\", error=\"invalid_token\""
        }
    };
    let mut r = respond(
        StatusCode::UNAUTHORIZED,
        HTML,
        html::error_page(
            "sign-in required",
            None,
            &format!(
                "{why}: send Authorization: Bearer TOKEN, present a client certificate, \
                 or open /login?token=TOKEN"
            ),
        ),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_redirects_stay_local() {
        assert_eq!(safe_next(Some("/message?id=x")), "/message?id=x");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/a\r\nSet-Cookie: x")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let r = respond(StatusCode::OK, HTML, String::new());
        let h = r.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert!(CSP.starts_with("default-src 'none'"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let u = unauthorized(&Refusal::UnknownToken);
        assert_eq!(u.status(), StatusCode::UNAUTHORIZED);
        assert!(u.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer "));
    }
}
