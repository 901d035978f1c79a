//! What the downloader knows, on disk under `DATA_DIR/revocation/`:
//!
//! ```text
//! state.json          every CRL source: where from, for whom, last outcome
//! crl/<sha256>.crl    CRLs held (DER), content-addressed
//! ca/<sha256>.der     CA certificates seen in validated paths, which
//!                     downloaded CRLs may be signed by
//! ocsp/<sha256>.der   OCSP responses held (DER), content-addressed
//! cert/<sha256>.der   the certificates they answer for (checked again
//!                     against their issuer in ca/ when loaded)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use der::{Decode, Encode};

use x509_cert::Certificate;

use crate::fsutil::write_atomic;
use crate::policy::Policy;
use crate::trust::revocation::{distribution_points, Crl};

/// Why a source is downloaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Listed in an authority's `crl_urls`.
    #[default]
    CrlUrls,
    /// A distribution point of a certificate (`fetch_crls = "cdp"`).
    Cdp,
}

/// One CRL source and its last outcome.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CrlSource {
    /// Why it is downloaded.
    pub origin: Origin,
    /// The authorities it serves.
    pub authorities: BTreeSet<String>,
    /// Whether the current policy still asks for it.
    pub active: bool,
    /// SHA-256 of the CRL held from it.
    pub sha256: Option<String>,
    /// Issuer of the CRL held.
    pub issuer: Option<String>,
    /// thisUpdate of the CRL held, Unix seconds.
    pub this_update: Option<u64>,
    /// nextUpdate of the CRL held, Unix seconds.
    pub next_update: Option<u64>,
    /// Last successful download, Unix seconds.
    pub last_success: Option<u64>,
    /// Its attempts: when to download it next.
    #[serde(flatten)]
    pub schedule: Schedule,
}

/// One certificate whose status is asked of an OCSP responder.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OcspSource {
    /// The responder URLs (authorityInfoAccess).
    pub urls: Vec<String>,
    /// SHA-256 of the certificate (under `cert/`).
    pub cert: String,
    /// SHA-256 of its issuer (under `ca/`).
    pub issuer: String,
    /// The authorities it was asked for.
    pub authorities: BTreeSet<String>,
    /// SHA-256 of the response held (under `ocsp/`).
    pub sha256: Option<String>,
    /// Until when the response held may be used, Unix seconds.
    pub valid_until: Option<u64>,
    /// thisUpdate of the response held, Unix seconds.
    pub this_update: Option<u64>,
    /// Its requests: not asked again before `next_attempt` after a failure.
    #[serde(flatten)]
    pub schedule: Schedule,
}

/// The attempts on one source (CRL download, OCSP request): the last one,
/// the failures in a row and when to try next.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Last attempt, Unix seconds.
    pub last_attempt: Option<u64>,
    /// What went wrong the last time, when it did.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// When to try next, Unix seconds.
    pub next_attempt: u64,
}

impl Schedule {
    /// Whether failures in a row put off the next attempt past `now`.
    pub fn backing_off(&self, now: u64) -> bool {
        self.failures > 0 && now < self.next_attempt
    }

    /// An attempt worked: the failures are over.
    pub fn succeeded(&mut self) {
        self.last_error = None;
        self.failures = 0;
    }

    /// An attempt failed with `why`; the next is due at `retry_at` of the
    /// failures in a row.
    pub fn failed(&mut self, why: &str, retry_at: impl FnOnce(u32) -> u64) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(why.to_owned());
        self.next_attempt = retry_at(self.failures);
    }
}

/// The downloader's state.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// CRL sources by URL.
    pub crls: BTreeMap<String, CrlSource>,
    /// SHA-256 of the CA certificates kept under `ca/`.
    pub cas: BTreeSet<String>,
    /// OCSP subjects by certificate key (hex).
    #[serde(default)]
    pub ocsp: BTreeMap<String, OcspSource>,
}

const FILE: &str = "state.json";

impl State {
    /// Reads `dir/state.json`; empty when absent or unreadable (logged).
    pub fn load(dir: &Path) -> State {
        match std::fs::read(dir.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "revocation state unreadable; starting afresh");
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    /// Writes `dir/state.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        write_atomic(&dir.join(FILE), &json).map_err(|e| format!("{}: {e}", dir.display()))
    }

    /// Marks the sources `policy` asks for as active (adding new ones, due
    /// now) and the others as inactive. Distribution points learnt from
    /// messages stay active while their authorities fetch them.
    pub fn plan(&mut self, policy: &Policy) {
        let mut wanted: BTreeMap<String, (Origin, BTreeSet<String>)> = BTreeMap::new();
        for a in &policy.authorities {
            for url in &a.crl_urls {
                let e = wanted
                    .entry(url.clone())
                    .or_insert((Origin::CrlUrls, BTreeSet::new()));
                e.0 = Origin::CrlUrls;
                e.1.insert(a.id.clone());
            }
            if !a.fetch_cdp {
                continue;
            }
            for der in a.anchor_certs.iter().chain(&a.intermediates) {
                let Ok(cert) = Certificate::from_der(der) else {
                    continue;
                };
                for url in distribution_points(&cert) {
                    wanted
                        .entry(url)
                        .or_insert((Origin::Cdp, BTreeSet::new()))
                        .1
                        .insert(a.id.clone());
                }
            }
        }
        let cdp_authorities: BTreeSet<&str> = policy
            .authorities
            .iter()
            .filter(|a| a.fetch_cdp)
            .map(|a| a.id.as_str())
            .collect();
        for (url, src) in self.crls.iter_mut() {
            src.active = match wanted.get(url) {
                Some(_) => true,
                None => {
                    src.origin == Origin::Cdp
                        && src
                            .authorities
                            .iter()
                            .any(|a| cdp_authorities.contains(a.as_str()))
                }
            };
        }
        for (url, (origin, authorities)) in wanted {
            let src = self.crls.entry(url).or_default();
            src.origin = origin;
            src.active = true;
            src.authorities.extend(authorities);
        }
    }

    /// Keeps a CA certificate seen in a validated path.
    pub fn learn_ca(&mut self, dir: &Path, der: &[u8]) -> Result<(), String> {
        let sha = keep(dir, "ca", der)?;
        self.cas.insert(sha);
        Ok(())
    }
}

/// Keeps a certificate under `dir/sub/<sha256>.der`; returns the SHA-256.
pub fn keep(dir: &Path, sub: &str, der: &[u8]) -> Result<String, String> {
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, der));
    let path = dir.join(sub).join(format!("{sha}.der"));
    if path.exists() {
        return Ok(sha);
    }
    // Only certificates, exactly as parsed: nothing else lands here.
    let parsed = Certificate::from_der(der).and_then(|c| c.to_der());
    if parsed.as_deref() != Ok(der) {
        return Err("not a DER certificate".to_owned());
    }
    write_file(&path, der)?;
    Ok(sha)
}

/// Reads what [`keep`] or [`write_blob`] wrote.
pub fn read_kept(dir: &Path, sub: &str, sha256: &str, ext: &str) -> Result<Vec<u8>, String> {
    let path = dir.join(sub).join(format!("{sha256}.{ext}"));
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every CA certificate a downloaded CRL may be signed by: the policy's
/// anchors and intermediates, and the CAs seen in paths (`kept`, SHA-256
/// of the files under `dir/ca/`).
pub fn known_cas(dir: &Path, policy: &Policy, kept: &BTreeSet<String>) -> Vec<Vec<u8>> {
    let mut cas: Vec<Vec<u8>> = policy
        .authorities
        .iter()
        .flat_map(|a| a.anchor_certs.iter().chain(&a.intermediates))
        .map(|c| c.to_vec())
        .collect();
    for sha in kept {
        match read_kept(dir, "ca", sha, "der") {
            Ok(der) => cas.push(der),
            Err(e) => tracing::warn!(%sha, error = %e, "kept CA certificate unreadable"),
        }
    }
    cas
}

/// Keeps `bytes` under `dir/sub/<sha256>.<ext>`, content-addressed.
pub fn write_blob(
    dir: &Path,
    sub: &str,
    sha256: &str,
    ext: &str,
    bytes: &[u8],
) -> Result<(), String> {
    let path = dir.join(sub).join(format!("{sha256}.{ext}"));
    if path.exists() {
        return Ok(());
    }
    write_file(&path, bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    write_atomic(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a held CRL.
pub fn read_crl(dir: &Path, sha256: &str, source: &str) -> Result<Crl, String> {
    let der = read_kept(dir, "crl", sha256, "crl")?;
    Crl::parse(der, source.to_owned()).map_err(|e| format!("CRL {sha256}: {e}"))
}

/// Keeps a CRL, content-addressed.
pub fn write_crl(dir: &Path, crl: &Crl) -> Result<(), String> {
    write_blob(dir, "crl", &crl.sha256, "crl", &crl.der)
}
