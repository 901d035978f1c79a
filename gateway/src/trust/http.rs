//! A bounded HTTP client for revocation data (CRLs, OCSP responses).
//!
//! Revocation URLs come from certificates, i.e. from whoever issued them, so
//! every fetch is bounded: only `http` and `https` (on every redirect hop),
//! a few redirects, a body size limit enforced while reading, connect and
//! total timeouts. HTTPS trusts the Mozilla roots (webpki-roots); revocation
//! data is signed, so the transport only has to be reliable, not trusted.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

/// The bounds of every fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest body accepted, in bytes (announced or read).
    pub max_bytes: u64,
    /// Longest wait for one TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest time for the whole fetch: every redirect hop and the body.
    pub timeout: Duration,
    /// Most redirects followed (0: none).
    pub max_redirects: usize,
}

impl Default for HttpLimits {
    /// 20 MiB, 10 s to connect, 30 s in all, 3 redirects: CRLs of large
    /// CAs reach a few MiB, OCSP responses a few KiB.
    fn default() -> Self {
        HttpLimits {
            max_bytes: 20 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_redirects: 3,
        }
    }
}

/// A body fetched with a 2xx status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// The URL it came from, after redirects.
    pub final_url: String,
    /// The HTTP status (2xx).
    pub status: u16,
}

/// Why a fetch failed. Every variant names the URL concerned (for a
/// redirect hop: that hop's URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The URL (or a redirect's `Location`) does not parse.
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme is neither `http` nor `https`.
    Scheme {
        /// The URL refused.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// More than `max_redirects` redirects.
    TooManyRedirects {
        /// The URL that redirected once too often.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A redirect status without a usable `Location` header.
    BadRedirect {
        /// The URL that answered the redirect.
        url: String,
        /// The status.
        status: u16,
    },
    /// A status other than 2xx (after redirects).
    Status {
        /// The URL that answered.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is (or announced to be) larger than `max_bytes`.
    TooLarge {
        /// The URL whose body was refused.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The connection or the whole fetch took too long.
    Timeout {
        /// The URL being fetched.
        url: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// No connection could be made (refused, unreachable, DNS, TLS).
    Connect {
        /// The URL being fetched.
        url: String,
        /// The underlying error.
        reason: String,
    },
    /// The exchange failed after connecting (reset, malformed HTTP).
    Transfer {
        /// The URL being fetched.
        url: String,
        /// The underlying error.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    Client(String),
}

impl HttpError {
    /// The URL concerned (empty for [`HttpError::Client`]).
    pub fn url(&self) -> &str {
        use HttpError as E;
        match self {
            E::BadUrl { url, .. }
            | E::Scheme { url, .. }
            | E::TooManyRedirects { url, .. }
            | E::BadRedirect { url, .. }
            | E::Status { url, .. }
            | E::TooLarge { url, .. }
            | E::Timeout { url, .. }
            | E::Connect { url, .. }
            | E::Transfer { url, .. } => url,
            E::Client(_) => "",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HttpError as E;
        match self {
            E::BadUrl { url, reason } => write!(f, "{url:?} is not a valid URL: {reason}"),
            E::Scheme { url, scheme } => write!(
                f,
                "{url} was refused: its scheme {scheme:?} is not http or https"
            ),
            E::TooManyRedirects { url, limit } => write!(
                f,
                "{url} redirected once more after {limit} redirects, the most that are followed"
            ),
            E::BadRedirect { url, status } => write!(
                f,
                "{url} answered redirect status {status} without a usable Location header"
            ),
            E::Status { url, status } => {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                write!(f, "{url} answered HTTP status {status}{reason}")
            }
            E::TooLarge { url, limit } => write!(
                f,
                "the body of {url} was refused: it is larger than the limit of {limit} bytes"
            ),
            E::Timeout { url, after } => write!(
                f,
                "fetching {url} timed out after {:.1} s",
                after.as_secs_f64()
            ),
            E::Connect { url, reason } => write!(f, "cannot connect to {url}: {reason}"),
            E::Transfer { url, reason } => write!(f, "fetching {url} failed: {reason}"),
            E::Client(reason) => write!(f, "the HTTP client cannot be set up: {reason}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The HTTP client: one connection pool, built once from the limits.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    limits: HttpLimits,
}

impl Http {
    /// A client enforcing `limits`.
    pub fn new(limits: HttpLimits) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            // Redirects are followed by hand, so each hop's scheme is checked.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.timeout)
            .user_agent(concat!("emla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Client(chain(&e)))?;
        Ok(Http { client, limits })
    }

    /// The limits this client enforces.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// GETs `url` (a CRL, or an OCSP GET request).
    pub async fn get(&self, url: &str) -> Result<Fetched, HttpError> {
        self.fetch(url, Method::GET, None).await
    }

    /// POSTs `body` as `content_type` to `url` (an OCSP request:
    /// `application/ocsp-request`).
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Fetched, HttpError> {
        let ct = HeaderValue::from_str(content_type).map_err(|_| HttpError::BadUrl {
            url: url.to_owned(),
            reason: format!("content type {content_type:?} is not a valid header value"),
        })?;
        self.fetch(url, Method::POST, Some((ct, body))).await
    }

    async fn fetch(
        &self,
        url: &str,
        method: Method,
        body: Option<(HeaderValue, Vec<u8>)>,
    ) -> Result<Fetched, HttpError> {
        let start = checked_url(url, None)?;
        // Another bound beside the client's per-request timeout: all hops
        // and the whole body together.
        let after = self.limits.timeout;
        match tokio::time::timeout(after, self.follow(start, method, body)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                url: url.to_owned(),
                after,
            }),
        }
    }

    async fn follow(
        &self,
        mut url: Url,
        mut method: Method,
        mut body: Option<(HeaderValue, Vec<u8>)>,
    ) -> Result<Fetched, HttpError> {
        let mut redirects = 0;
        loop {
            let mut req = self.client.request(method.clone(), url.clone());
            if let Some((ct, bytes)) = &body {
                req = req.header(CONTENT_TYPE, ct.clone()).body(bytes.clone());
            }
            let mut resp = req.send().await.map_err(|e| self.map(&url, &e))?;
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                if redirects >= self.limits.max_redirects {
                    return Err(HttpError::TooManyRedirects {
                        url: url.to_string(),
                        limit: self.limits.max_redirects,
                    });
                }
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| HttpError::BadRedirect {
                        url: url.to_string(),
                        status: status.as_u16(),
                    })?;
                let next = checked_url(location, Some(&url))?;
                // 307/308 repeat the request; the others turn into a GET
                // without body, as browsers and curl do.
                if !matches!(
                    status,
                    StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                ) {
                    method = Method::GET;
                    body = None;
                }
                url = next;
                redirects += 1;
                continue;
            }
            if !status.is_success() {
                return Err(HttpError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
            }
            let limit = self.limits.max_bytes;
            let too_large = || HttpError::TooLarge {
                url: url.to_string(),
                limit,
            };
            if resp.content_length().is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.map(&url, &e))? {
                if bytes.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                bytes,
                final_url: url.to_string(),
                status: status.as_u16(),
            });
        }
    }

    fn map(&self, url: &Url, e: &reqwest::Error) -> HttpError {
        let url = url.to_string();
        if e.is_timeout() {
            // reqwest does not say which of its two timeouts ran out.
            let after = if e.is_connect() {
                self.limits.connect_timeout
            } else {
                self.limits.timeout
            };
            HttpError::Timeout { url, after }
        } else if e.is_connect() {
            HttpError::Connect {
                url,
                reason: chain(e),
            }
        } else {
            HttpError::Transfer {
                url,
                reason: chain(e),
            }
        }
    }
}

/// Parses `url` (relative to `base` for a redirect) and keeps it only when
/// it is http or https.
fn checked_url(url: &str, base: Option<&Url>) -> Result<Url, HttpError> {
    let parsed = match base {
        Some(b) => b.join(url),
        None => Url::parse(url),
    }
    .map_err(|e| HttpError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(HttpError::Scheme {
                url: parsed.to_string(),
                scheme: other.to_owned(),
            })
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(HttpError::BadUrl {
            url: url.to_owned(),
            reason: "it has no host".to_owned(),
        });
    }
    Ok(parsed)
}

/// The causes of a reqwest error as one line ("a: b"): its sources
/// without reqwest's own wrappers (which repeat the URL), or the error
/// itself when it has none.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.starts_with("client error") && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls() {
        assert!(checked_url("http://example.org/a.crl", None).is_ok());
        assert!(checked_url("https://example.org/a.crl", None).is_ok());
        let e = checked_url("file:///etc/passwd", None).unwrap_err();
        assert!(matches!(e, HttpError::Scheme { ref scheme, .. } if scheme == "file"));
        assert!(e.to_string().contains("file:///etc/passwd"), "{e}");
        let e = checked_url("ldap://dir.example.org/cn=CA", None).unwrap_err();
        assert!(matches!(e, HttpError::Scheme { .. }));
        assert!(matches!(
            checked_url("not a url", None),
            Err(HttpError::BadUrl { .. })
        ));
    }

    #[test]
    fn redirect_locations_resolve_against_the_hop() {
        let base = Url::parse("http://example.org/dir/a").unwrap();
        let u = checked_url("b.crl", Some(&base)).unwrap();
        assert_eq!(u.as_str(), "http://example.org/dir/b.crl");
        let e = checked_url("ftp://example.org/x", Some(&base)).unwrap_err();
        assert!(matches!(e, HttpError::Scheme { .. }));
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = HttpError::Status {
            url: "http://x.example/c.crl".into(),
            status: 404,
        };
        assert_eq!(
            e.to_string(),
            "http://x.example/c.crl answered HTTP status 404 (Not Found)"
        );
        assert_eq!(e.url(), "http://x.example/c.crl");
        let e = HttpError::TooLarge {
            url: "http://x.example/c.crl".into(),
            limit: 10,
        };
        assert!(e.to_string().contains("limit of 10 bytes"));
    }
}
