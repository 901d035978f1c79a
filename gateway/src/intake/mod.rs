//! Intake: the SMTP service. Accepts connections within the session limit,
//! drives each session ([`session`]) through the `mailin` state machine with
//! emla's checks ([`handler`]), and at the end of DATA verifies and records
//! the message ([`commit`]) before replying. The composition root
//! ([`server`](crate::server)) starts it beside the other stages.
//!
//! `mailin-embedded` is not used: its fixed thread pool, fixed 5-minute
//! timeouts, missing SIZE and missing shutdown cannot meet the session
//! limit with `421`, configurable timeouts and SIGTERM handling. The same
//! `mailin` state machine is driven from tokio instead.

pub mod budget;
pub mod clients;
pub mod command;
pub mod commit;
pub mod handler;
pub mod postmaster;
pub mod replay;
pub mod reply;
pub mod session;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_envelope;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::policy::{CurrentPolicy, Policy};
use crate::revocation::Revocation;
use crate::store::Store;
use clients::Clients;

/// What the intake's sessions share.
pub struct Service {
    /// The runtime configuration.
    pub config: Config,
    /// The durable record.
    pub store: Store,
    /// STARTTLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// The policy in force.
    pub policy: Arc<CurrentPolicy>,
    /// Revocation data gathered at run time (downloaded CRLs, OCSP).
    pub revocation: Arc<Revocation>,
    /// Wakes the relay worker when a message was queued.
    pub relay_wake: Arc<Notify>,
    /// Signatures being judged now (see [`replay`]).
    pub replays: replay::InFlight,
    /// The TSA that timestamps acceptance receipts (`[evidence]`).
    pub tsa: Option<crate::smime::tsa::Tsa>,
    /// Rejection notices sent per sender authority.
    pub rejections: crate::receipts::limit::Limiter,
    /// Duty alerts sent per authority (shared with the relay).
    pub duty: Arc<crate::receipts::limit::Limiter>,
}

impl Service {
    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.get()
    }
}

/// The SMTP listeners, bound.
pub struct Listeners {
    listeners: Vec<TcpListener>,
    /// The addresses actually bound.
    pub addrs: Vec<SocketAddr>,
}

/// Binds every configured address and prints one `listening on ADDR` line
/// each (scripts and tests wait for them).
pub async fn listen(addrs: &[SocketAddr]) -> Result<Listeners, String> {
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {local}");
        bound.push(local);
        listeners.push(l);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(Listeners {
        listeners,
        addrs: bound,
    })
}

/// Accepts sessions within the session limit until `stop` turns true,
/// then waits for the sessions to end (at most the shutdown grace).
pub async fn serve(svc: Arc<Service>, listeners: Listeners, stop: watch::Receiver<bool>) {
    let sessions = Arc::new(Semaphore::new(svc.config.max_sessions));
    let clients = Clients::new(svc.config.session_limits.per_client);
    let mut accept_tasks = Vec::new();
    for listener in listeners.listeners {
        accept_tasks.push(tokio::spawn(accept_loop(
            svc.clone(),
            listener,
            sessions.clone(),
            clients.clone(),
            stop.clone(),
        )));
    }
    let mut stopped = stop.clone();
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            break;
        }
    }
    tracing::info!("shutting down: no new sessions");
    for t in accept_tasks {
        t.abort();
    }
    // Every session holds a permit: all of them back means all ended.
    let all = u32::try_from(svc.config.max_sessions).unwrap_or(u32::MAX);
    let deadline = svc.config.shutdown_grace + std::time::Duration::from_secs(2);
    let ended = tokio::time::timeout(deadline, sessions.acquire_many(all))
        .await
        .is_ok();
    if ended {
        tracing::info!("all sessions ended");
    } else {
        tracing::warn!("sessions still open after the grace period; exiting");
    }
}

async fn accept_loop(
    gw: Arc<Service>,
    listener: TcpListener,
    sessions: Arc<Semaphore>,
    clients: Clients,
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
        let refusal: &'static [u8] = match clients.enter(peer.ip()) {
            None => {
                tracing::warn!(%peer, "session limit per client address reached");
                b"421 4.7.0 Too many sessions from your address, try again later\r\n"
            }
            Some(slot) => match sessions.clone().try_acquire_owned() {
                Ok(permit) => {
                    let gw = gw.clone();
                    let stop = stop.clone();
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(async move {
                        session::run(gw, tcp, peer, stop).await;
                        drop((permit, slot));
                    });
                    continue;
                }
                Err(_) => {
                    tracing::warn!(%peer, "session limit reached");
                    b"421 4.3.2 Too many sessions, try again later\r\n"
                }
            },
        };
        tokio::spawn(async move {
            crate::metrics::with(|m| m.smtp_replies(refusal));
            let _ = tcp.write_all(refusal).await;
            let _ = tcp.shutdown().await;
        });
    }
}
