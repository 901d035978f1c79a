//! `[metrics]`: the operators' plain-HTTP listener, meant for a scrape
//! network: `/metrics` (Prometheus text format), `/healthz` (the process
//! answers) and `/readyz` (it can take mail: 200, or 503 with a JSON body
//! naming each check that failed).
//!
//! The gauges that come from the database are read by one task every
//! [`GAUGE_PERIOD`], never per scrape, so scrapes cost no query however
//! often they come; a probe pings the database with [`DB_TIMEOUT`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::Shared;
use crate::config::MetricsConfig;
use crate::metrics::Metrics;
use crate::policy::{CrlPolicy, Policy};

/// How often the database's gauges are read.
pub const GAUGE_PERIOD: Duration = Duration::from_secs(5);
/// How long a readiness probe waits for the database.
pub const DB_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapers and probes at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 16;

/// Names the policy's authorities and next hops as the labels' values.
pub fn note_policy(policy: &Policy) {
    crate::metrics::with(|m| {
        m.set_policy(
            &policy.version,
            policy.authorities.iter().map(|a| a.id.clone()),
            policy
                .authorities
                .iter()
                .map(|a| format!("{}:{}", a.next_hop.host, a.next_hop.port)),
        )
    });
}

/// Binds the listener and starts it and the gauge reader; prints
/// `metrics listening on ADDR`.
pub async fn spawn(
    cfg: MetricsConfig,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let metrics = crate::metrics::install();
    note_policy(&shared.policy.get());
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("[metrics] cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("metrics listening on {local}");
    tracing::info!(%local, "metrics and health listening (HTTP)");
    let gauges = tokio::spawn(read_gauges(metrics, shared.clone(), stop.clone()));
    let ops = Arc::new(Ops {
        shared,
        metrics,
        min_free_bytes: cfg.min_free_bytes,
    });
    Ok(vec![tokio::spawn(accept_loop(ops, listener, stop)), gauges])
}

struct Ops {
    shared: Arc<Shared>,
    metrics: &'static Metrics,
    min_free_bytes: u64,
}

async fn read_gauges(m: &'static Metrics, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let now_ms = crate::store::now_ms();
        match tokio::time::timeout(DB_TIMEOUT, shared.store.ops_reading()).await {
            Ok(Ok(r)) => {
                let depth: Vec<_> = r
                    .queue
                    .iter()
                    .map(|q| (q.status.clone(), q.lane.clone(), q.entries))
                    .collect();
                let oldest = r.queue.iter().map(|q| q.oldest_ms).min();
                let age = |ms: i64| (now_ms - ms).max(0) as f64 / 1000.0;
                m.queue(&depth, oldest.map_or(0.0, age));
                m.checkpoint_age(r.last_checkpoint_ms.map(age));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the queue depth"),
            Err(_) => tracing::warn!("metrics: the database did not answer in time"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(GAUGE_PERIOD) => {}
        }
    }
}

async fn accept_loop(ops: Arc<Ops>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let tcp = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let ops = ops.clone();
                async move { Ok::<_, Infallible>(ops.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

impl Ops {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".into(),
            );
        }
        match req.uri().path() {
            "/metrics" => {
                let policy = self.shared.policy.get();
                self.metrics.crls(&crl_seconds(&self.shared, &policy));
                respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.metrics.encode(),
                )
            }
            "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => {
                let (ready, body) = self.readiness().await;
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                respond(status, "application/json", format!("{body}\n"))
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }

    /// Every check, each `{"ok": …, "detail": …}`; ready when all pass.
    async fn readiness(&self) -> (bool, serde_json::Value) {
        let policy = self.shared.policy.get();
        let database = match tokio::time::timeout(DB_TIMEOUT, self.shared.store.ping()).await {
            Ok(Ok(())) => Ok("answers".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", DB_TIMEOUT.as_secs())),
        };
        let checks = [
            ("policy", Ok(format!("version {}", policy.version))),
            ("database", database),
            (
                "disk",
                free_space(&self.shared.config.data_dir, self.min_free_bytes),
            ),
            ("crl", crl_fresh(&self.shared, &policy)),
        ];
        let ready = checks.iter().all(|(_, c)| c.is_ok());
        let mut failed = Vec::new();
        let mut body = serde_json::Map::new();
        for (name, check) in checks {
            let (ok, detail) = match check {
                Ok(d) => (true, d),
                Err(d) => {
                    failed.push(name);
                    (false, d)
                }
            };
            body.insert(name.into(), json!({ "ok": ok, "detail": detail }));
        }
        let body = json!({ "ready": ready, "failed": failed, "checks": body });
        (ready, body)
    }
}

/// The data directory's free space (for an unprivileged process) against
/// `min`.
fn free_space(dir: &std::path::Path, min: u64) -> Result<String, String> {
    let st = rustix::fs::statvfs(dir)
        .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < min {
        Err(format!(
            "{} has {free} bytes free, below min_free_bytes {min}",
            dir.display()
        ))
    } else {
        Ok(format!("{free} bytes free"))
    }
}

/// Under `crl = "hard-fail"` a stale CRL refuses its authority's mail, so
/// the gateway is not ready; under soft-fail it is only a warning.
fn crl_fresh(shared: &Shared, policy: &Policy) -> Result<String, String> {
    let rows = shared.revocation.status(policy);
    let stale: Vec<String> = rows
        .iter()
        .filter(|r| r.stale)
        .map(|r| format!("{} {}", r.authority, r.source))
        .collect();
    if stale.is_empty() || policy.limits.crl != CrlPolicy::HardFail {
        Ok(format!("{} CRLs, {} stale", rows.len(), stale.len()))
    } else {
        Err(format!("stale under hard-fail: {}", stale.join(", ")))
    }
}

fn crl_seconds(shared: &Shared, policy: &Policy) -> Vec<(String, String, f64)> {
    let now = crate::clock::EvalTime::now().unix() as f64;
    shared
        .revocation
        .status(policy)
        .into_iter()
        .filter_map(|r| {
            let next = r.next_update_unix? as f64;
            Some((r.authority, r.source, next - now))
        })
        .collect()
}
