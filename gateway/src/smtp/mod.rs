//! Intake: the SMTP service. Accepts connections within the session limit,
//! drives each session ([`session`]) through the `mailin` state machine with
//! emla's checks ([`handler`]), and at the end of DATA verifies and records
//! the message ([`commit`]) before replying.
//!
//! `mailin-embedded` is not used: its fixed thread pool, fixed 5-minute
//! timeouts, missing SIZE and missing shutdown cannot meet the session
//! limit with `421`, configurable timeouts and SIGTERM handling. The same
//! `mailin` state machine is driven from tokio instead.

pub mod commit;
pub mod control;
pub mod handler;
pub mod reply;
pub mod session;
pub mod tls;

use std::sync::{Arc, RwLock};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::clock::EvalTime;
use crate::config::Config;
use crate::policy::{self, Policy};
use crate::revocation::Revocation;
use crate::store::{AuditEvent, Store};

/// Everything sessions share.
pub struct Gateway {
    /// The runtime configuration.
    pub config: Config,
    /// The durable record.
    pub store: Store,
    /// STARTTLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// Wakes the relay worker when a message was queued.
    pub relay_wake: tokio::sync::Notify,
    /// The SMTP addresses actually bound (set once [`serve`] listens).
    pub bound: std::sync::OnceLock<Vec<std::net::SocketAddr>>,
    /// Revocation data gathered at run time (downloaded CRLs, OCSP).
    pub revocation: Arc<Revocation>,
    policy: RwLock<Arc<Policy>>,
}

impl Gateway {
    /// Assembles the shared state.
    pub fn new(config: Config, store: Store, tls: Option<TlsAcceptor>, policy: Policy) -> Gateway {
        Gateway {
            revocation: Arc::new(Revocation::open(&config.data_dir, &config.revocation)),
            config,
            store,
            tls,
            relay_wake: tokio::sync::Notify::new(),
            bound: std::sync::OnceLock::new(),
            policy: RwLock::new(Arc::new(policy)),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the policy again; on any problem the current one stays. Both
    /// outcomes are audited. Returns the new version or the problems.
    pub async fn reload_policy(&self) -> Result<String, Vec<String>> {
        let old = self.policy().version.clone();
        let (event, result) = match policy::load(&self.config.policy_dir, EvalTime::now()) {
            Ok(p) => {
                let version = p.version.clone();
                *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
                tracing::info!(%version, "policy reloaded");
                // New CRL sources are fetched at once.
                self.revocation.wake();
                (
                    AuditEvent {
                        kind: "policy.reloaded".into(),
                        message_id: None,
                        data: serde_json::json!({"previous": old, "version": version}),
                    },
                    Ok(version),
                )
            }
            Err(diags) => {
                let problems: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                tracing::error!(problems = ?problems, "policy reload failed; keeping version {old}");
                (
                    AuditEvent {
                        kind: "policy.reload-failed".into(),
                        message_id: None,
                        data: serde_json::json!({"kept": old, "problems": problems}),
                    },
                    Err(problems),
                )
            }
        };
        if let Err(e) = self.store.audit(event).await {
            tracing::error!(error = %e, "cannot audit the policy reload");
        }
        result
    }
}

/// Runs the SMTP service until SIGTERM or SIGINT; returns once every
/// session has ended or the shutdown grace period is over.
///
/// With `[audit_web]`, the auditors' web view starts first (its `audit web
/// listening on ADDR` line precedes the SMTP `listening on` lines) and
/// stops on the same signal.
pub async fn serve(gw: Arc<Gateway>) -> Result<(), String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let web = crate::audit::web::spawn(gw.clone(), stop_rx.clone()).await?;
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in &gw.config.listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        // Scripts and tests wait for this line.
        println!("listening on {local}");
        bound.push(local);
        listeners.push(l);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = gw.bound.set(bound);

    let control = control::listen(gw.clone()).await?;
    let sessions = Arc::new(Semaphore::new(gw.config.max_sessions));
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        accept_tasks.push(tokio::spawn(accept_loop(
            gw.clone(),
            listener,
            sessions.clone(),
            stop_rx.clone(),
        )));
    }

    let relay = gw
        .config
        .relay
        .enabled
        .then(|| crate::relay::spawn(gw.clone(), stop_rx.clone()));
    let refresher = {
        let policy_of = gw.clone();
        crate::revocation::spawn(
            gw.revocation.clone(),
            gw.store.clone(),
            move || policy_of.policy(),
            stop_rx.clone(),
        )
    };
    let checkpoints = crate::audit::checkpoint::spawn(gw.clone(), stop_rx.clone());
    let retention = crate::audit::retention::spawn(gw.clone(), stop_rx.clone());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => { let _ = gw.reload_policy().await; }
        }
    }
    tracing::info!("shutting down: no new sessions");
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        t.abort();
    }
    control.abort();
    if let Some(web) = web {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), web).await;
    }
    let _ = std::fs::remove_file(control::socket_path(&gw.config.data_dir));
    // Every session holds a permit: all of them back means all ended.
    let all = u32::try_from(gw.config.max_sessions).unwrap_or(u32::MAX);
    let deadline = gw.config.shutdown_grace + std::time::Duration::from_secs(2);
    match tokio::time::timeout(deadline, sessions.acquire_many(all)).await {
        Ok(_) => tracing::info!("all sessions ended"),
        Err(_) => tracing::warn!("sessions still open after the grace period; exiting"),
    }
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    for task in [checkpoints, retention, Some(refresher)]
        .into_iter()
        .flatten()
    {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    Ok(())
}

async fn accept_loop(
    gw: Arc<Gateway>,
    listener: TcpListener,
    sessions: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (mut tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Accepted in the same instant as the shutdown signal: not greeted.
        if *stop.borrow() {
            let _ = tcp
                .write_all(b"421 4.3.2 emla is shutting down, try again later\r\n")
                .await;
            return;
        }
        match sessions.clone().try_acquire_owned() {
            Ok(permit) => {
                let gw = gw.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    session::run(gw, tcp, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(%peer, "session limit reached");
                tokio::spawn(async move {
                    let _ = tcp
                        .write_all(b"421 4.3.2 Too many sessions, try again later\r\n")
                        .await;
                    let _ = tcp.shutdown().await;
                });
            }
        }
    }
}
