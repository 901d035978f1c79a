//! The composition root of `emla serve`: builds what the stages share (the
//! store, the policy in force, the revocation data, the relay's wake-up)
//! and starts them as peers — intake, relay, the auditors' web view,
//! checkpoints, retention, revocation downloads and the control socket. It
//! alone handles signals and shutdown; the stages only see what they are
//! given.

pub mod control;
pub mod ops;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::clock::EvalTime;
use crate::config::Config;
use crate::policy::{self, CurrentPolicy, Policy};
use crate::revocation::Revocation;
use crate::store::payload::{PolicyReloadFailed, PolicyReloaded};
use crate::store::{AuditEvent, Payload, Store};

/// What the root itself (reloads, the control socket) works with.
pub struct Shared {
    /// The runtime configuration.
    pub config: Config,
    /// The durable record.
    pub store: Store,
    /// The policy in force.
    pub policy: Arc<CurrentPolicy>,
    /// Revocation data gathered at run time.
    pub revocation: Arc<Revocation>,
}

impl Shared {
    /// Loads the policy again; on any problem the current one stays. Both
    /// outcomes are audited. Returns the new version or the problems.
    pub async fn reload_policy(&self) -> Result<String, Vec<String>> {
        let old = self.policy.get().version.clone();
        match policy::load(&self.config.policy_dir, EvalTime::now()) {
            Ok(p) => {
                let version = p.version.clone();
                if let Err(e) = archive(&self.store, &p).await {
                    let problem = format!("cannot archive policy version {version}: {e}");
                    tracing::error!("{problem}; keeping version {old}");
                    self.audit(&PolicyReloadFailed {
                        kept: old,
                        problems: vec![problem.clone()],
                    })
                    .await;
                    return Err(vec![problem]);
                }
                // Recorded before it is in force: every decision made under
                // it comes after this record in the chain.
                self.audit(&PolicyReloaded {
                    previous: old,
                    version: version.clone(),
                })
                .await;
                ops::note_policy(&p);
                self.policy.replace(p);
                tracing::info!(%version, "policy reloaded");
                // New CRL sources are fetched at once.
                self.revocation.wake();
                Ok(version)
            }
            Err(diags) => {
                let problems: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                tracing::error!(problems = ?problems, "policy reload failed; keeping version {old}");
                self.audit(&PolicyReloadFailed {
                    kept: old,
                    problems: problems.clone(),
                })
                .await;
                Err(problems)
            }
        }
    }

    /// Records a reload's outcome (about no message).
    async fn audit<P: Payload>(&self, payload: &P) {
        if let Err(e) = self.store.audit(AuditEvent::of(None, payload)).await {
            tracing::error!(error = %e, "cannot audit the policy reload");
        }
    }
}

/// Archives a policy about to be put in force (see
/// [`crate::store::policies`]): no version decides anything that cannot be
/// shown later.
pub async fn archive(store: &Store, policy: &Policy) -> Result<(), crate::store::StoreError> {
    let files: Vec<(&str, &[u8])> = policy.files.iter().collect();
    store
        .archive_policy(&policy.version, &files, crate::store::now_ms())
        .await
}

/// A running gateway.
pub struct Server {
    /// The SMTP addresses bound.
    pub addrs: Vec<SocketAddr>,
    /// What the root works with.
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    intake: JoinHandle<()>,
    web: Option<JoinHandle<()>>,
    control: JoinHandle<()>,
    relay: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Starts every stage. With `[audit_web]`, the auditors' web view starts
/// first (its `audit web listening on ADDR` line precedes the SMTP
/// `listening on` lines).
pub async fn start(
    config: Config,
    store: Store,
    tls: Option<TlsAcceptor>,
    policy: Policy,
) -> Result<Server, String> {
    archive(&store, &policy)
        .await
        .map_err(|e| format!("cannot archive policy version {}: {e}", policy.version))?;
    let (stop, stop_rx) = watch::channel(false);
    let policy = Arc::new(CurrentPolicy::new(policy));
    let revocation = Arc::new(Revocation::open(&config.data_dir, &config.revocation));
    let relay_wake = Arc::new(Notify::new());
    let tsa = crate::smime::tsa::Tsa::configured(&config.evidence)?;

    let web = crate::audit::web::spawn(
        config.audit_web.clone(),
        store.clone(),
        policy.clone(),
        config.data_dir.join("revocation"),
        stop_rx.clone(),
    )
    .await?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        store: store.clone(),
        policy: policy.clone(),
        revocation: revocation.clone(),
    });
    let ops = match config.metrics.clone() {
        Some(m) => ops::spawn(m, shared.clone(), stop_rx.clone()).await?,
        None => Vec::new(),
    };
    // After the other listeners: `listening on` is the last line printed.
    let listeners = crate::intake::listen(&config.listen).await?;
    let addrs = listeners.addrs.clone();
    let control = control::listen(shared.clone()).await?;

    let duty = Arc::new(crate::receipts::limit::Limiter::default());
    let intake = crate::intake::Service {
        config: config.clone(),
        store: store.clone(),
        tls,
        policy: policy.clone(),
        revocation: revocation.clone(),
        relay_wake: relay_wake.clone(),
        replays: Default::default(),
        tsa: tsa.clone(),
        rejections: Default::default(),
        duty: duty.clone(),
    };
    let intake = tokio::spawn(crate::intake::serve(
        Arc::new(intake),
        listeners,
        stop_rx.clone(),
    ));
    let relay = config.relay.enabled.then(|| {
        crate::relay::spawn(
            crate::relay::worker::Worker {
                config: config.relay.clone(),
                shutdown_grace: config.shutdown_grace,
                store: store.clone(),
                policy: policy.clone(),
                wake: relay_wake.clone(),
                tsa: tsa.clone(),
                duty,
            },
            stop_rx.clone(),
        )
    });
    let refresher = {
        let policy = policy.clone();
        crate::revocation::spawn(
            revocation.clone(),
            store.clone(),
            move || policy.get(),
            stop_rx.clone(),
        )
    };
    let holds = crate::receipts::hold::spawn(
        store.clone(),
        tsa.clone(),
        relay_wake.clone(),
        stop_rx.clone(),
    );
    let checkpoints = crate::audit::checkpoint::spawn(
        config.audit.clone(),
        tsa,
        store.clone(),
        policy.clone(),
        stop_rx.clone(),
    );
    let retention =
        crate::audit::retention::spawn(config.retention.clone(), store.clone(), stop_rx.clone());
    let background = [checkpoints, retention, holds, Some(refresher)]
        .into_iter()
        .flatten()
        .chain(ops)
        .collect();
    Ok(Server {
        addrs,
        shared,
        stop,
        intake,
        web,
        control,
        relay,
        background,
    })
}

impl Server {
    /// Serves until SIGTERM or SIGINT (SIGHUP reloads the policy), then
    /// shuts down.
    pub async fn run_until_signalled(self) -> Result<(), String> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut hup =
            signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = hup.recv() => { let _ = self.shared.reload_policy().await; }
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// Stops taking sessions, lets the ones in progress and the deliveries
    /// finish within the grace period, and stops every stage.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.control.abort();
        if let Some(web) = self.web {
            let _ = tokio::time::timeout(Duration::from_secs(1), web).await;
        }
        let _ = std::fs::remove_file(crate::control::socket_path(&self.shared.config.data_dir));
        let _ = self.intake.await;
        if let Some(relay) = self.relay {
            let _ = relay.await;
        }
        for task in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// `emla serve`: starts the gateway and serves until signalled.
pub async fn run(
    config: Config,
    store: Store,
    tls: Option<TlsAcceptor>,
    policy: Policy,
) -> Result<(), String> {
    start(config, store, tls, policy)
        .await?
        .run_until_signalled()
        .await
}
