//! Revocation data at run time: CRLs downloaded ahead of need (an
//! authority's `crl_urls`, and with `fetch_crls = "cdp"` the distribution
//! points of the certificates it uses), OCSP answers asked when a message
//! needs one and refreshed before they expire. The last good copy of each
//! is kept on disk, content-addressed, so a restart starts warm; every
//! change and every failure is audited (`crl.updated`, `crl.fetch-failed`,
//! `ocsp.updated`, `ocsp.fetch-failed`).
//!
//! Nothing fetched is trusted here: a CRL must verify with the key of a CA
//! the gateway knows (configured, or seen in a validated path) before it is
//! held, and [`trust::revocation`](crate::trust::revocation) checks it again
//! against the issuer of each path it is used for.

pub mod cli;
mod state;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::sync::{Mutex, MutexGuard};

use tokio::sync::{watch, Notify};

use crate::clock::EvalTime;
use crate::config::RevocationConfig;
use crate::policy::Policy;
use crate::store::payload::{
    CrlDownload, CrlFetchFailed, CrlUpdated, OcspFetchFailed, OcspUpdated,
};
use crate::store::{AuditEvent, Store};
use crate::trust::http::{Http, HttpLimits};
use crate::trust::ocsp;
use crate::trust::revocation::{CertStatus, Crl, OcspAnswer, RevocationSet, Want, CLOCK_SKEW_SECS};
pub use state::{CrlSource, OcspSource, Origin, State};

/// The revocation data of one gateway process.
pub struct Revocation {
    dir: PathBuf,
    settings: RevocationConfig,
    set: RwLock<Arc<RevocationSet>>,
    /// Never held across a download: a message waiting for one OCSP answer
    /// does not wait for another source's download.
    state: Mutex<State>,
    /// Serializes writes of `state.json`, so a later snapshot is never
    /// overwritten by an earlier one.
    saving: Mutex<()>,
    /// URLs (and OCSP certificate keys) being fetched now: one fetch each.
    inflight: Mutex<BTreeSet<String>>,
    http: std::sync::OnceLock<Result<Http, String>>,
    ocsp_http: std::sync::OnceLock<Result<Http, String>>,
    /// Wakes the refresher (new sources, `emla crl fetch`).
    wake: Notify,
    /// SHA-256 of the CA certificates already kept: the common case of
    /// [`Revocation::learn_cas`] takes no lock a download may hold.
    seen_cas: std::sync::Mutex<BTreeSet<String>>,
}

/// What one download did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FetchOutcome {
    /// The URL.
    pub url: String,
    /// `updated`, `unchanged`, `failed`, or `skipped` (a download from there is in progress).
    pub result: &'static str,
    /// What went wrong, or what is held now.
    pub detail: String,
}

impl Revocation {
    /// The revocation data kept under `data_dir/revocation/`, loaded from
    /// disk (what cannot be read is skipped with a warning).
    pub fn open(data_dir: &Path, settings: &RevocationConfig) -> Revocation {
        let dir = data_dir.join("revocation");
        let state = State::load(&dir);
        let mut set = RevocationSet::default();
        for (url, src) in &state.crls {
            let Some(sha) = &src.sha256 else { continue };
            match state::read_crl(&dir, sha, url) {
                Ok(crl) => set.put_crl(Arc::new(crl)),
                Err(e) => tracing::warn!(%url, error = %e, "held CRL cannot be loaded"),
            }
        }
        let now = EvalTime::now();
        for (id, src) in &state.ocsp {
            let Some(sha) = &src.sha256 else { continue };
            let loaded = (|| {
                let der = state::read_kept(&dir, "ocsp", sha, "der")?;
                let cert = state::read_kept(&dir, "cert", &src.cert, "der")?;
                let issuer = state::read_kept(&dir, "ca", &src.issuer, "der")?;
                let key = ocsp::cert_key(&cert, &issuer).map_err(|e| e.to_string())?;
                let url = src.urls.first().cloned().unwrap_or_default();
                Ok::<_, String>((key, answer_of(der, &cert, &issuer, &url, now)?))
            })();
            match loaded {
                Ok((key, answer)) => set.put_ocsp(key, Arc::new(answer)),
                Err(e) => {
                    tracing::info!(certificate = %id, error = %e, "held OCSP answer not used")
                }
            }
        }
        Revocation {
            seen_cas: std::sync::Mutex::new(state.cas.clone()),
            dir,
            settings: settings.clone(),
            set: RwLock::new(Arc::new(set)),
            state: Mutex::new(state),
            saving: Mutex::new(()),
            inflight: Mutex::new(BTreeSet::new()),
            http: std::sync::OnceLock::new(),
            ocsp_http: std::sync::OnceLock::new(),
            wake: Notify::new(),
        }
    }

    /// The data held now.
    pub fn current(&self) -> Arc<RevocationSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The rows of `emla crl status` as this process holds them now.
    pub fn status(&self, policy: &Policy) -> Vec<cli::CrlRow> {
        cli::status_rows(policy, &self.st(), EvalTime::now())
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `state.json` from the state as it is now.
    fn save(&self) {
        let _turn = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = self.st().clone();
        if let Err(e) = snapshot.save(&self.dir) {
            tracing::error!(error = %e, "cannot save the revocation state");
        }
    }

    /// When to try again after the `failures`-th failure in a row.
    fn retry_at(&self, now: u64, failures: u32) -> u64 {
        let wait = crate::backoff::exponential(
            self.settings.retry_initial,
            self.settings.retry_max,
            failures,
        );
        now + wait.as_secs().max(1)
    }

    /// Marks `key` as being fetched; false when it already is.
    fn begin(&self, key: &str) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned())
    }

    fn end(&self, key: &str) {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Asks the refresher to run now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn http(&self) -> Result<&Http, String> {
        self.http
            .get_or_init(|| {
                Http::new(HttpLimits {
                    max_bytes: self.settings.max_bytes,
                    timeout: self.settings.timeout,
                    connect_timeout: self.settings.timeout.min(Duration::from_secs(10)),
                    ..HttpLimits::default()
                })
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn replace_set(&self, edit: impl FnOnce(&mut RevocationSet)) {
        let mut guard = self.set.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        edit(&mut next);
        *guard = Arc::new(next);
    }

    /// Downloads every CRL source of `policy` that is due (all of them
    /// with `force`), keeping what verifies and is not older than what is
    /// held; every change and failure is audited.
    pub async fn refresh(&self, policy: &Policy, store: &Store, force: bool) -> Vec<FetchOutcome> {
        let due: Vec<String> = {
            let mut state = self.st();
            state.plan(policy);
            let now = EvalTime::now().unix();
            state
                .crls
                .iter()
                .filter(|(_, s)| s.active && (force || s.schedule.next_attempt <= now))
                .map(|(u, _)| u.clone())
                .collect()
        };
        let mut outcomes = Vec::new();
        for url in due {
            let outcome = self.fetch_crl(policy, store, &url).await;
            crate::metrics::with(|m| m.revocation_fetch("crl", outcome.result));
            outcomes.push(outcome);
        }
        self.refresh_ocsp(store).await;
        self.save();
        outcomes
    }

    /// Downloads one CRL source and audits the outcome.
    async fn fetch_crl(&self, policy: &Policy, store: &Store, url: &str) -> FetchOutcome {
        if !self.begin(url) {
            return FetchOutcome {
                url: url.to_owned(),
                result: "skipped",
                detail: "a download from there is in progress".to_owned(),
            };
        }
        let now = EvalTime::now().unix();
        let result = self.download_crl(policy, url).await;
        self.end(url);
        let (outcome, event) = self.record_crl_outcome(url, now, result);
        if let Some(event) = event {
            self.audit(store, event).await;
        }
        outcome
    }

    /// Notes the outcome of one download in the state; returns what to
    /// report and audit.
    fn record_crl_outcome(
        &self,
        url: &str,
        now: u64,
        result: Result<(Arc<Crl>, bool), String>,
    ) -> (FetchOutcome, Option<AuditEvent>) {
        let mut state = self.st();
        let src = state.crls.entry(url.to_owned()).or_default();
        src.schedule.last_attempt = Some(now);
        let download = CrlDownload {
            url: url.to_owned(),
            authorities: src.authorities.iter().cloned().collect(),
        };
        match result {
            Ok((crl, changed)) => {
                src.last_success = Some(now);
                src.schedule.succeeded();
                src.issuer = Some(crl.issuer_text.clone());
                src.this_update = Some(crl.this_update);
                src.next_update = Some(crl.next_update);
                let previous = src.sha256.replace(crl.sha256.clone());
                let margin = self.settings.refresh_margin.as_secs();
                src.schedule.next_attempt = (now + self.settings.refresh_interval.as_secs())
                    .min(crl.next_update.saturating_sub(margin))
                    .max(now + 1);
                let detail = format!(
                    "CRL of {} ({}), thisUpdate {}, nextUpdate {}",
                    crl.issuer_text,
                    crl.sha256,
                    EvalTime::from_unix(crl.this_update).to_rfc3339(),
                    EvalTime::from_unix(crl.next_update).to_rfc3339()
                );
                let event = changed.then(|| {
                    AuditEvent::of(
                        None,
                        &CrlUpdated {
                            download,
                            issuer: crl.issuer_text.clone(),
                            sha256: crl.sha256.clone(),
                            previous,
                            crl_number: crl.number.as_ref().map(hex::encode),
                            this_update: EvalTime::from_unix(crl.this_update).to_rfc3339(),
                            next_update: EvalTime::from_unix(crl.next_update).to_rfc3339(),
                        },
                    )
                });
                let result = if changed { "updated" } else { "unchanged" };
                (
                    FetchOutcome {
                        url: url.to_owned(),
                        result,
                        detail,
                    },
                    event,
                )
            }
            Err(why) => {
                src.schedule.failed(&why, |n| self.retry_at(now, n));
                let failures = src.schedule.failures;
                tracing::warn!(%url, error = %why, failures, "CRL download failed");
                let event = AuditEvent::of(
                    None,
                    &CrlFetchFailed {
                        download,
                        error: why.clone(),
                        failures,
                        held: src.sha256.clone(),
                        next_attempt: EvalTime::from_unix(src.schedule.next_attempt).to_rfc3339(),
                    },
                );
                (
                    FetchOutcome {
                        url: url.to_owned(),
                        result: "failed",
                        detail: why,
                    },
                    Some(event),
                )
            }
        }
    }

    /// Fetches, parses and checks one CRL; holds it when it is new.
    /// Returns it and whether it changed what is held.
    async fn download_crl(&self, policy: &Policy, url: &str) -> Result<(Arc<Crl>, bool), String> {
        let fetched = self.http()?.get(url).await.map_err(|e| e.to_string())?;
        let crl = Crl::from_bytes(&fetched.bytes, url.to_owned())
            .map_err(|e| format!("the download from {url} cannot be used: {e}"))?;
        // A CA of that name the gateway knows must have signed it; when
        // none is known yet (the issuing CA of a roots-only authority, before
        // its first message), it is held and verified at first use.
        let kept = self.st().cas.clone();
        let cas = state::known_cas(&self.dir, policy, &kept);
        let named: Vec<&Vec<u8>> = cas.iter().filter(|ca| crl.names_issuer(ca)).collect();
        let signer = named.iter().find(|ca| crl.signed_by(ca)).copied();
        if signer.is_none() && !named.is_empty() {
            return Err(format!(
                "the CRL from {url} (issuer {}) is not signed by any CA the gateway knows by that name",
                crl.issuer_text
            ));
        }
        let held = self.current();
        let mut rivals: Vec<&Arc<Crl>> = held.crls_for(&crl.issuer).iter().collect();
        for a in &policy.authorities {
            rivals.extend(a.crls.iter().filter(|c| c.issuer == crl.issuer));
        }
        if let Some(same) = rivals.iter().find(|c| c.sha256 == crl.sha256) {
            if same.source == url {
                return Ok(((*same).clone(), false));
            }
        }
        let comparable = |c: &Crl| match signer {
            Some(ca) => c.signed_by(ca),
            None => c.source == url,
        };
        if let Some(newer) = rivals.iter().find(|c| comparable(c) && c.newer_than(&crl)) {
            return Err(format!(
                "the CRL from {url} (thisUpdate {}{}) is older than the one held from {} \
                 (thisUpdate {}{}); it is not used",
                EvalTime::from_unix(crl.this_update).to_rfc3339(),
                crl.number
                    .as_ref()
                    .map(|n| format!(", crlNumber {}", hex::encode(n)))
                    .unwrap_or_default(),
                newer.source,
                EvalTime::from_unix(newer.this_update).to_rfc3339(),
                newer
                    .number
                    .as_ref()
                    .map(|n| format!(", crlNumber {}", hex::encode(n)))
                    .unwrap_or_default(),
            ));
        }
        state::write_crl(&self.dir, &crl).map_err(|e| format!("cannot keep the CRL: {e}"))?;
        let crl = Arc::new(crl);
        self.replace_set(|set| set.put_crl(crl.clone()));
        Ok((crl, true))
    }

    /// Fetches what one decision lacked: CRLs from distribution points
    /// (their sources are remembered and refreshed from then on) and OCSP
    /// answers. Returns whether anything new is held, so that judging again
    /// can change the outcome. Sources that failed recently are not asked
    /// again before their retry time.
    pub async fn fetch_wanted(
        &self,
        store: &Store,
        policy: &Policy,
        authority: Option<&str>,
        wants: &[Want],
    ) -> bool {
        let mut changed = false;
        let now = EvalTime::now().unix();
        let mut urls = BTreeSet::new();
        let mut asks = Vec::new();
        {
            let mut state = self.st();
            for want in wants {
                let Want::Crl { urls: cdp, issuer } = want else {
                    asks.push(want);
                    continue;
                };
                if let Err(e) = state.learn_ca(&self.dir, issuer) {
                    tracing::warn!(error = %e, "cannot keep a CA certificate");
                }
                for url in cdp {
                    if !state.crls.contains_key(url) {
                        // A new source: the refresher plans anew.
                        self.wake();
                    }
                    let src = state.crls.entry(url.clone()).or_default();
                    src.origin = Origin::Cdp;
                    src.active = true;
                    if let Some(a) = authority {
                        src.authorities.insert(a.to_owned());
                    }
                    if src.schedule.next_attempt <= now {
                        urls.insert(url.clone());
                    }
                }
            }
        }
        for want in asks {
            changed |= self.fetch_ocsp(store, authority, want).await;
        }
        for url in urls {
            let o = self.fetch_crl(policy, store, &url).await;
            changed |= o.result == "updated";
        }
        self.save();
        changed
    }

    /// Remembers the CA certificates of a validated path, so that CRLs
    /// they sign are checked when downloaded.
    pub async fn learn_cas(&self, cas: &[Vec<u8>]) {
        let sha = |der: &[u8]| hex::encode(ring::digest::digest(&ring::digest::SHA256, der));
        let new: Vec<&Vec<u8>> = {
            let seen = self.seen_cas.lock().unwrap_or_else(|p| p.into_inner());
            cas.iter().filter(|c| !seen.contains(&sha(c))).collect()
        };
        if new.is_empty() {
            return;
        }
        let mut state = self.st();
        let before = state.cas.len();
        for der in new {
            match state.learn_ca(&self.dir, der) {
                Ok(()) => {
                    self.seen_cas
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(sha(der));
                }
                Err(e) => tracing::warn!(error = %e, "cannot keep a CA certificate"),
            }
        }
        let changed = state.cas.len() != before;
        drop(state);
        if changed {
            self.save();
        }
    }

    /// Asks the responders of one certificate for its status; holds and
    /// keeps a valid answer. A certificate whose last request failed is
    /// not asked again before its retry time. Returns whether an answer is
    /// now held.
    async fn fetch_ocsp(&self, store: &Store, authority: Option<&str>, want: &Want) -> bool {
        let Want::Ocsp {
            cert,
            issuer,
            urls,
            key,
        } = want
        else {
            return false;
        };
        let now = EvalTime::now().unix();
        let id = key.to_string();
        let keep_certs = state::keep(&self.dir, "cert", cert)
            .and_then(|c| state::keep(&self.dir, "ca", issuer).map(|i| (c, i)));
        {
            let mut state = self.st();
            let src = state.ocsp.entry(id.clone()).or_default();
            if let Ok((c, i)) = keep_certs {
                src.cert = c;
                src.issuer = i;
            }
            src.urls.clone_from(urls);
            if let Some(a) = authority {
                src.authorities.insert(a.to_owned());
            }
            if src.schedule.backing_off(now) {
                return false;
            }
            src.schedule.last_attempt = Some(now);
        }
        let flight = format!("ocsp:{id}");
        if !self.begin(&flight) {
            return false;
        }
        let mut errors = Vec::new();
        let mut got = None;
        for url in urls {
            match self.ask_ocsp(url, cert, issuer).await {
                Ok(answer) => {
                    got = Some((url, answer));
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        self.end(&flight);
        if let Some((url, answer)) = got {
            crate::metrics::with(|m| m.revocation_fetch("ocsp", "updated"));
            let answer = Arc::new(answer);
            if let Err(e) = state::write_blob(&self.dir, "ocsp", &answer.sha256, "der", &answer.der)
            {
                tracing::warn!(error = %e, "cannot keep an OCSP response");
            }
            let (changed, cert_sha) = {
                let mut state = self.st();
                let src = state.ocsp.entry(id).or_default();
                let changed = src.sha256.as_deref() != Some(&answer.sha256);
                src.sha256 = Some(answer.sha256.clone());
                src.valid_until = Some(answer.next_update);
                src.this_update = Some(answer.this_update);
                src.schedule.succeeded();
                (changed, src.cert.clone())
            };
            let (key, held) = (*key, answer.clone());
            self.replace_set(|set| set.put_ocsp(key, held));
            if changed {
                let event = AuditEvent::of(
                    None,
                    &OcspUpdated {
                        url: url.to_owned(),
                        certificate: cert_sha,
                        status: status_name(&answer.status).to_owned(),
                        responder: answer.responder.clone(),
                        sha256: answer.sha256.clone(),
                        this_update: EvalTime::from_unix(answer.this_update).to_rfc3339(),
                        next_update: EvalTime::from_unix(answer.next_update).to_rfc3339(),
                    },
                );
                self.audit(store, event).await;
            }
            return true;
        }
        let why = errors.join("; ");
        let event = {
            let mut state = self.st();
            let src = state.ocsp.entry(id).or_default();
            src.schedule.failed(&why, |n| self.retry_at(now, n));
            AuditEvent::of(
                None,
                &OcspFetchFailed {
                    urls: urls.clone(),
                    certificate: src.cert.clone(),
                    error: why.clone(),
                    failures: src.schedule.failures,
                },
            )
        };
        tracing::warn!(error = %why, "OCSP request failed");
        crate::metrics::with(|m| m.revocation_fetch("ocsp", "failed"));
        self.audit(store, event).await;
        false
    }

    /// One OCSP request and the validation of its answer.
    async fn ask_ocsp(&self, url: &str, cert: &[u8], issuer: &[u8]) -> Result<OcspAnswer, String> {
        let request = ocsp::request(cert, issuer).map_err(|e| e.to_string())?;
        let http = self.ocsp_http()?;
        let reply = http
            .post(url, ocsp::REQUEST_CONTENT_TYPE, request.der)
            .await
            .map_err(|e| e.to_string())?;
        answer_of(reply.bytes, cert, issuer, url, EvalTime::now())
    }

    fn ocsp_http(&self) -> Result<&Http, String> {
        self.ocsp_http
            .get_or_init(|| {
                Http::new(HttpLimits {
                    max_bytes: self.settings.max_bytes.min(1 << 20),
                    timeout: self.settings.ocsp_timeout,
                    connect_timeout: self.settings.ocsp_timeout,
                    ..HttpLimits::default()
                })
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn audit(&self, store: &Store, event: AuditEvent) {
        if let Err(e) = store.audit(event).await {
            tracing::error!(error = %e, "cannot audit revocation data");
        }
    }

    /// Asks again for the OCSP answers that expire within the refresh
    /// margin (or half their validity, when shorter), so messages find
    /// them fresh.
    async fn refresh_ocsp(&self, store: &Store) {
        let now = EvalTime::now().unix();
        let due: Vec<(String, OcspSource)> = self
            .st()
            .ocsp
            .iter()
            .filter(|(_, s)| {
                let Some(until) = s.valid_until else {
                    return false;
                };
                let life = until.saturating_sub(s.this_update.unwrap_or(until));
                let margin = self.settings.refresh_margin.as_secs().min(life / 2);
                until.saturating_sub(margin) <= now && !s.schedule.backing_off(now)
            })
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for (id, src) in due {
            let (Ok(cert), Ok(issuer)) = (
                state::read_kept(&self.dir, "cert", &src.cert, "der"),
                state::read_kept(&self.dir, "ca", &src.issuer, "der"),
            ) else {
                self.st().ocsp.remove(&id);
                continue;
            };
            let Ok(key) = ocsp::cert_key(&cert, &issuer) else {
                self.st().ocsp.remove(&id);
                continue;
            };
            let want = Want::Ocsp {
                cert,
                issuer,
                urls: src.urls.clone(),
                key,
            };
            self.fetch_ocsp(store, None, &want).await;
        }
    }

    /// When the refresher should look again: the earliest due source, at
    /// most a minute away.
    fn next_due(&self) -> Duration {
        let state = self.st();
        let now = EvalTime::now().unix();
        let next = state
            .crls
            .values()
            .filter(|s| s.active)
            .map(|s| s.schedule.next_attempt)
            .min()
            .unwrap_or(u64::MAX);
        let ocsp_next = state
            .ocsp
            .values()
            .filter_map(|s| s.valid_until)
            .min()
            .unwrap_or(u64::MAX);
        Duration::from_secs(next.min(ocsp_next).saturating_sub(now).clamp(1, 60))
    }
}

/// Validates an OCSP response for `cert` as of `at`.
fn answer_of(
    der: Vec<u8>,
    cert: &[u8],
    issuer: &[u8],
    url: &str,
    at: EvalTime,
) -> Result<OcspAnswer, String> {
    let checked = ocsp::check_response(&der, cert, issuer, at.unix(), CLOCK_SKEW_SECS)
        .map_err(|e| format!("the answer of {url}: {e}"))?;
    Ok(OcspAnswer {
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &der)),
        der: der.into(),
        next_update: checked.valid_until(),
        status: checked.status,
        this_update: checked.this_update,
        responder: checked.responder,
        source: url.to_owned(),
    })
}

fn status_name(s: &CertStatus) -> &'static str {
    match s {
        CertStatus::Good => "good",
        CertStatus::Revoked { .. } => "revoked",
        CertStatus::Unknown => "unknown",
    }
}

/// Starts the refresher of `emla serve`: downloads on start, then whenever
/// a source is due, woken early by [`Revocation::wake`].
pub fn spawn(
    revocation: Arc<Revocation>,
    store: Store,
    policy: impl Fn() -> Arc<Policy> + Send + 'static,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            revocation.refresh(&policy(), &store, false).await;
            let wait = revocation.next_due();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = revocation.wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    })
}
