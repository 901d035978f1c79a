//! Who is asking: bearer tokens (checked against a file of SHA-256 hashes),
//! client certificates (verified by rustls against `client_ca`), and the
//! browser session a one-time `/login?token=…` opens.
//!
//! Only hashes of tokens and of session ids are kept in memory or on disk;
//! hashes are compared in constant time, every entry of the file each time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// Name of the session cookie. The `__Host-` prefix makes browsers refuse it
/// unless it is `Secure`, has `Path=/` and no `Domain`.
pub const SESSION_COOKIE: &str = "__Host-emla_session";

/// How long a browser session lasts after `/login`.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Most sessions kept at once; a login beyond it first drops expired ones,
/// then the oldest.
pub const MAX_SESSIONS: usize = 1000;

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest32 {
    Sha256::digest(data).into()
}

/// Compares two digests in constant time (no early exit).
pub fn digest_eq(a: &Digest32, b: &Digest32) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// How an auditor proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer` with a listed token.
    Token,
    /// A client certificate that chains to `client_ca`.
    Certificate,
    /// The session cookie of a `/login?token=…`.
    Session,
}

impl Via {
    /// `token`, `certificate` or `session`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Certificate => "certificate",
            Via::Session => "session",
        }
    }
}

/// An authenticated auditor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auditor {
    /// The token's name, or the certificate's subject DN (RFC 4514).
    pub name: String,
    /// How they authenticated.
    pub via: Via,
}

/// One line of the tokens file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The auditor's name (may contain spaces).
    pub name: String,
    /// SHA-256 of the token.
    pub hash: Digest32,
}

/// Parses a tokens file: one `NAME SHA256-HEX` per line (the hash is the
/// last field, the name everything before it), blank lines and lines
/// starting with `#` ignored. Errors are `LINE: problem`; a file without
/// any token is an error too.
pub fn parse_tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens: Vec<Token> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = n + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hex_hash)) = line.rsplit_once(|c: char| c.is_ascii_whitespace()) else {
            return Err(format!(
                "{at}: expected `NAME SHA256-HEX-OF-TOKEN`, found one field"
            ));
        };
        let name = name.trim();
        if name.chars().any(char::is_control) {
            return Err(format!("{at}: the name has a control character"));
        }
        let mut hash = [0u8; 32];
        if hex_hash.len() != 64 || hex::decode_to_slice(hex_hash, &mut hash).is_err() {
            return Err(format!(
                "{at}: {hex_hash:?} is not a SHA-256 in hex (64 digits); store the hash \
                 of the token, never the token"
            ));
        }
        if let Some(t) = tokens.iter().find(|t| t.name == name) {
            return Err(format!("{at}: the name {:?} is listed twice", t.name));
        }
        if tokens.iter().any(|t| t.hash == hash) {
            return Err(format!("{at}: this hash is listed twice"));
        }
        tokens.push(Token {
            name: name.to_string(),
            hash,
        });
    }
    if tokens.is_empty() {
        return Err("no token listed".into());
    }
    Ok(tokens)
}

/// The tokens file, read again whenever its modification time changes (so
/// adding or removing an auditor needs no restart). A file that became
/// unreadable or invalid keeps the last good list and is logged.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<(Option<SystemTime>, Vec<Token>)>,
}

impl TokenFile {
    /// Reads the file; errors are `PATH:LINE: problem`.
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let (mtime, tokens) = read_tokens(path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            state: Mutex::new((mtime, tokens)),
        })
    }

    /// The current list.
    pub fn tokens(&self) -> Vec<Token> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime != state.0 {
            match read_tokens(&self.path) {
                Ok(fresh) => {
                    tracing::info!(file = %self.path.display(), tokens = fresh.1.len(),
                        "audit web: tokens file reloaded");
                    *state = fresh;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit web: keeping the previous tokens");
                    state.0 = mtime;
                }
            }
        }
        state.1.clone()
    }

    /// The token whose hash is `hash`, looked at every entry in constant
    /// time per entry.
    pub fn find(&self, hash: &Digest32) -> Option<Token> {
        let mut found = None;
        for t in self.tokens() {
            if digest_eq(&t.hash, hash) && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

fn read_tokens(path: &Path) -> Result<(Option<SystemTime>, Vec<Token>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("tokens file {}: {e}", path.display()))?;
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let tokens = parse_tokens(&text).map_err(|e| format!("tokens file {}:{e}", path.display()))?;
    Ok((mtime, tokens))
}

/// Why a request carries no valid credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization`, no client certificate, no session cookie.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A well-formed token that is not listed (or tokens are not enabled).
    UnknownToken,
    /// A session cookie that is unknown or expired.
    StaleSession,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "no credentials",
            Refusal::Malformed => "malformed Authorization header (expected Bearer)",
            Refusal::UnknownToken => "unknown token",
            Refusal::StaleSession => "unknown or expired session",
        })
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme
/// case-insensitive, RFC 6750 token68 characters).
pub fn bearer(value: &str) -> Result<&str, Refusal> {
    let (scheme, rest) = value.trim().split_once(' ').ok_or(Refusal::Malformed)?;
    let token = rest.trim();
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || !token.chars().all(token68) {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

/// The value of the session cookie among `Cookie:` header values.
pub fn session_cookie<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(session_id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={session_id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

struct Session {
    name: String,
    token: Digest32,
    expires: Instant,
}

/// Browser sessions in memory, keyed by the SHA-256 of their id; they end
/// with the process, after [`SESSION_LIFETIME`], or when the token they
/// were opened with leaves the tokens file.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<Digest32, Session>>,
}

impl Sessions {
    /// Opens a session for `token`; returns its id (64 hex digits, from
    /// the system's random generator).
    pub fn open(&self, token: &Token) -> Result<String, String> {
        use ring::rand::SecureRandom;
        let mut id = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| "no randomness for a session id".to_string())?;
        let id = hex::encode(id);
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            sha256(id.as_bytes()),
            Session {
                name: token.name.clone(),
                token: token.hash,
                expires: now + SESSION_LIFETIME,
            },
        );
        Ok(id)
    }

    /// The auditor of a live session whose token is still listed.
    pub fn check(&self, id: &str, tokens: Option<&TokenFile>) -> Result<Auditor, Refusal> {
        let key = sha256(id.as_bytes());
        let (name, token) = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let s = map.get(&key).ok_or(Refusal::StaleSession)?;
            if s.expires <= Instant::now() {
                return Err(Refusal::StaleSession);
            }
            (s.name.clone(), s.token)
        };
        match tokens.and_then(|t| t.find(&token)) {
            Some(_) => Ok(Auditor {
                name,
                via: Via::Session,
            }),
            None => {
                self.map
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                Err(Refusal::StaleSession)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn tokens_file_lines() {
        let t = parse_tokens(&format!("# auditors\n\nJane Doe (AA) {H}\n")).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "Jane Doe (AA)");
        assert_eq!(t[0].hash, sha256(b"test"));
        let e = parse_tokens("# x\njane\n").unwrap_err();
        assert!(e.starts_with("2: expected `NAME SHA256-HEX"), "{e}");
        let e = parse_tokens("jane secret-token\n").unwrap_err();
        assert!(e.starts_with("1: \"secret-token\" is not a SHA-256"), "{e}");
        let e = parse_tokens(&format!("jane {H}\n\njane {}\n", "0".repeat(64))).unwrap_err();
        assert!(e.starts_with("3: the name \"jane\" is listed twice"), "{e}");
        let e = parse_tokens(&format!("jane {H}\njohn {H}\n")).unwrap_err();
        assert!(e.starts_with("2: this hash is listed twice"), "{e}");
        assert_eq!(parse_tokens("# nobody\n").unwrap_err(), "no token listed");
    }

    /// A tokens file holding `text`, in a directory removed when dropped.
    fn tokens_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auditors.tokens");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn token_file_errors_name_the_file_and_line() {
        let (_dir, p) = tokens_file(&format!("jane {H}\nbad\n"));
        let e = TokenFile::load(&p).unwrap_err();
        assert!(e.contains("auditors.tokens:2: expected"), "{e}");
        std::fs::write(&p, format!("jane {H}\n")).unwrap();
        let f = TokenFile::load(&p).unwrap();
        assert_eq!(f.find(&sha256(b"test")).unwrap().name, "jane");
        assert!(f.find(&sha256(b"other")).is_none());
    }

    #[test]
    fn authorization_header() {
        assert_eq!(bearer("Bearer abc.DEF-123~+/="), Ok("abc.DEF-123~+/="));
        assert_eq!(bearer("bearer  tok"), Ok("tok"));
        assert_eq!(bearer("Basic dXNlcjpwdw=="), Err(Refusal::Malformed));
        assert_eq!(bearer("Bearer"), Err(Refusal::Malformed));
        assert_eq!(bearer("Bearer "), Err(Refusal::Malformed));
        assert_eq!(bearer("Bearer a b"), Err(Refusal::Malformed));
        assert_eq!(bearer("Bearer tok\"en"), Err(Refusal::Malformed));
    }

    #[test]
    fn cookies() {
        let v = ["a=1; __Host-emla_session=abc ", "b=2"];
        assert_eq!(session_cookie(v.into_iter()), Some("abc"));
        assert_eq!(session_cookie(["emla_session=x"].into_iter()), None);
        let c = set_cookie("abc");
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(part), "{c}");
        }
    }

    #[test]
    fn sessions_follow_their_token() {
        let (_dir, p) = tokens_file(&format!("jane {H}\n"));
        let file = TokenFile::load(&p).unwrap();
        let token = file.find(&sha256(b"test")).unwrap();
        let s = Sessions::default();
        let id = s.open(&token).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(s.check(&id, Some(&file)).unwrap().name, "jane");
        assert_eq!(s.check("nope", Some(&file)), Err(Refusal::StaleSession));
        // The token leaves the file: its sessions end.
        std::fs::write(&p, format!("john {}\n", "1".repeat(64))).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(s.check(&id, Some(&file)), Err(Refusal::StaleSession));
    }

    #[test]
    fn digests_compare() {
        assert!(digest_eq(&sha256(b"a"), &sha256(b"a")));
        assert!(!digest_eq(&sha256(b"a"), &sha256(b"b")));
    }
}
