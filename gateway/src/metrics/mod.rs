//! The gateway's Prometheus metrics (`[metrics]`, docs/contracts.md
//! "Metrics"): one registry, filled by typed calls from the stages and
//! encoded for `/metrics`.
//!
//! It imports nothing of the crate, so every stage can record into it. The
//! registry is process-wide, like the log subscriber: a stage records with
//! one line (`crate::metrics::with(|m| m.…)`) instead of carrying a handle
//! through every struct, and records nothing when `[metrics]` is off.
//!
//! Label values are bounded: authorities and next hops are kept only when
//! the policy in force names them ([`Metrics::set_policy`]), anything else
//! becomes `other` (`none` when there is none), so no message can add a
//! series.

mod labels;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};

use labels::{
    ClassLabels, CrlLabels, DecisionLabels, FetchLabels, KindLabels, LaneLabels, OutcomeLabels,
    QueueLabels, RelayLabels, VersionLabels,
};

/// A label value for an unknown authority or next hop.
pub const OTHER: &str = "other";
/// A label value for no authority.
pub const NONE: &str = "none";

type FloatGauge = Gauge<f64, AtomicU64>;

/// Which duration a [`Metrics::observe`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// From the end of DATA to the reply.
    DataToReply,
    /// Signature, chain and policy checks of one message.
    Verify,
    /// The durable record of one decision.
    Commit,
}

/// The policy's names a label may take.
#[derive(Default)]
struct Known {
    authorities: BTreeSet<String>,
    next_hops: BTreeSet<String>,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    known: RwLock<Known>,
    decisions: Family<DecisionLabels, Counter>,
    smtp_replies: Family<ClassLabels, Counter>,
    relay_attempts: Family<RelayLabels, Counter>,
    receipts: Family<KindLabels, Counter>,
    revocation_fetches: Family<FetchLabels, Counter>,
    duty_alerts: Family<OutcomeLabels, Counter>,
    data_to_reply: Histogram,
    verify: Histogram,
    commit: Histogram,
    delivery: Family<LaneLabels, Histogram>,
    sessions: Gauge,
    sessions_per_client_max: Gauge,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_oldest: FloatGauge,
    crl_next_update: Family<CrlLabels, FloatGauge>,
    checkpoint_age: FloatGauge,
    policy_info: Family<VersionLabels, Gauge>,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// Turns recording on (idempotent) and returns the registry.
pub fn install() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::new)
}

/// Runs `f` on the registry when metrics are on.
pub fn with(f: impl FnOnce(&Metrics)) {
    if let Some(m) = GLOBAL.get() {
        f(m);
    }
}

/// Awaits `f`, observing how long it took as `timer`.
pub async fn timed<F: std::future::Future>(timer: Timer, f: F) -> F::Output {
    let start = Instant::now();
    let out = f.await;
    with(|m| m.observe(timer, start.elapsed().as_secs_f64()));
    out
}

/// Registers each `name, unit => metric, help;` row (the unit `None` or
/// a [`Unit`]): a clone of the handle the stages record into, as
/// `emla_<name>`.
macro_rules! register {
    ($r:expr; $($name:literal, $unit:ident => $metric:expr, $help:literal;)*) => {
        $(add(&mut $r, $name, $help, register!(@unit $unit), $metric.clone());)*
    };
    (@unit None) => {
        None
    };
    (@unit $unit:ident) => {
        Some(Unit::$unit)
    };
}

fn add(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, metric: impl Metric) {
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, metric),
        None => r.register(name, help, metric),
    }
}

fn seconds() -> Histogram {
    // 1 ms … ~33 s: SMTP replies, checks and commits.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn delivery_seconds() -> Histogram {
    // 0.1 s … ~1.8 days: from a direct relay to the end of a retry schedule.
    Histogram::new(exponential_buckets(0.1, 3.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("emla"),
            known: RwLock::default(),
            decisions: Family::default(),
            smtp_replies: Family::default(),
            relay_attempts: Family::default(),
            receipts: Family::default(),
            revocation_fetches: Family::default(),
            duty_alerts: Family::default(),
            data_to_reply: seconds(),
            verify: seconds(),
            commit: seconds(),
            delivery: Family::new_with_constructor(delivery_seconds),
            sessions: Gauge::default(),
            sessions_per_client_max: Gauge::default(),
            queue_depth: Family::default(),
            queue_oldest: FloatGauge::default(),
            crl_next_update: Family::default(),
            checkpoint_age: FloatGauge::default(),
            policy_info: Family::default(),
        };
        m.checkpoint_age.set(-1.0);
        m.register();
        m
    }

    fn register(&mut self) {
        register! { self.registry;
            "decisions", None => self.decisions,
                "Decisions recorded, by reason, sender authority and verdict";
            "smtp_replies", None => self.smtp_replies,
                "SMTP replies sent, by code class (2xx, 4xx, 5xx)";
            "relay_attempts", None => self.relay_attempts,
                "Delivery attempts, by next hop and outcome (the entry's state after it)";
            "receipts", None => self.receipts,
                "Receipts and notices recorded for sending, by kind";
            "revocation_fetches", None => self.revocation_fetches,
                "CRL and OCSP downloads, by source and outcome";
            "duty_alerts", None => self.duty_alerts,
                "Urgent-lane duty alerts, by outcome (sent, suppressed by the hourly cap)";
            "data_reply", Seconds => self.data_to_reply,
                "From the end of DATA to the reply";
            "verify", Seconds => self.verify,
                "Verification of one message";
            "commit", Seconds => self.commit,
                "The durable record of one decision";
            "delivery", Seconds => self.delivery,
                "From acceptance to the next hop's 250, by lane";
            "sessions", None => self.sessions,
                "SMTP sessions in use";
            "sessions_per_client_max", None => self.sessions_per_client_max,
                "The most SMTP sessions one client address holds";
            "queue_depth", None => self.queue_depth,
                "Queue entries not yet ended, by state and lane";
            "queue_oldest_age", Seconds => self.queue_oldest,
                "Age of the oldest queue entry not yet ended (0: none)";
            "crl_next_update", Seconds => self.crl_next_update,
                "Seconds until each held CRL's nextUpdate (negative: stale)";
            "checkpoint_age", Seconds => self.checkpoint_age,
                "Age of the last signed checkpoint (-1: none yet)";
            "policy_info", None => self.policy_info,
                "The policy version in force (value 1)";
        }
        self.registry.register(
            "build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
    }

    /// The Prometheus text format of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The policy in force: its version and the names labels may take.
    pub fn set_policy(
        &self,
        version: &str,
        authorities: impl IntoIterator<Item = String>,
        next_hops: impl IntoIterator<Item = String>,
    ) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.authorities = authorities.into_iter().collect();
        known.next_hops = next_hops.into_iter().collect();
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
    }

    fn known(&self, name: Option<&str>, hops: bool) -> String {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return NONE.to_owned();
        };
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let set = if hops {
            &known.next_hops
        } else {
            &known.authorities
        };
        if set.contains(name) {
            name.to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    /// One recorded decision; `reason` is a reason code (a fixed vocabulary).
    pub fn decision(&self, reason: &'static str, authority: Option<&str>, accepted: bool) {
        let labels = DecisionLabels {
            reason,
            authority: self.known(authority, false),
            verdict: if accepted { "accept" } else { "reject" },
        };
        self.decisions.get_or_create(&labels).inc();
    }

    /// The replies in `wire` (one or more CRLF lines; final lines counted).
    pub fn smtp_replies(&self, wire: &[u8]) {
        for line in wire.split(|&b| b == b'\n') {
            if let [c @ b'2'..=b'5', b'0'..=b'9', b'0'..=b'9', b' ' | b'\r', ..] = line {
                let class = ["2xx", "3xx", "4xx", "5xx"][usize::from(c - b'2')];
                self.smtp_replies
                    .get_or_create(&ClassLabels { class })
                    .inc();
            }
        }
    }

    /// One delivery attempt to `next_hop` that left its entry `outcome`; a
    /// relayed one also observes the time since acceptance.
    pub fn relay_attempt(
        &self,
        next_hop: &str,
        outcome: &'static str,
        lane: &'static str,
        accepted_at_ms: i64,
    ) {
        let labels = RelayLabels {
            next_hop: self.known(Some(next_hop), true),
            outcome,
        };
        self.relay_attempts.get_or_create(&labels).inc();
        if outcome == "relayed" {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let secs = (now_ms - accepted_at_ms).max(0) as f64 / 1000.0;
            self.delivery
                .get_or_create(&LaneLabels { lane })
                .observe(secs);
        }
    }

    /// One receipt or notice of `kind` (`acceptance`, `delivery`,
    /// `failure`, `delay`, `rejection`) added to a record for sending.
    pub fn receipt(&self, kind: &str) {
        let kind = ["acceptance", "delivery", "failure", "delay", "rejection"]
            .into_iter()
            .find(|k| *k == kind)
            .unwrap_or(OTHER);
        self.receipts.get_or_create(&KindLabels { kind }).inc();
    }

    /// One duty alert to one duty address: `sent` (recorded for sending)
    /// or `suppressed` (over the authority's hourly cap).
    pub fn duty_alert(&self, outcome: &'static str) {
        self.duty_alerts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One CRL (`source` `crl`) or OCSP (`ocsp`) download and its outcome.
    pub fn revocation_fetch(&self, source: &'static str, outcome: &'static str) {
        self.revocation_fetches
            .get_or_create(&FetchLabels { source, outcome })
            .inc();
    }

    /// A duration of `timer`, in seconds.
    pub fn observe(&self, timer: Timer, secs: f64) {
        match timer {
            Timer::DataToReply => &self.data_to_reply,
            Timer::Verify => &self.verify,
            Timer::Commit => &self.commit,
        }
        .observe(secs);
    }

    /// Sessions open now, and the most one client address holds.
    pub fn sessions(&self, open: usize, per_client_max: usize) {
        self.sessions.set(open as i64);
        self.sessions_per_client_max.set(per_client_max as i64);
    }

    /// The open queue as read from the database: `(status, lane, entries)`
    /// and the oldest entry's age.
    pub fn queue(&self, depth: &[(String, String, u64)], oldest_secs: f64) {
        self.queue_depth.clear();
        for (status, lane, n) in depth {
            let labels = QueueLabels {
                status: status.clone(),
                lane: lane.clone(),
            };
            self.queue_depth.get_or_create(&labels).set(*n as i64);
        }
        self.queue_oldest.set(oldest_secs);
    }

    /// Seconds to nextUpdate of each CRL held: `(authority, source, secs)`.
    pub fn crls(&self, crls: &[(String, String, f64)]) {
        self.crl_next_update.clear();
        for (authority, source, secs) in crls {
            let labels = CrlLabels {
                authority: self.known(Some(authority), false),
                source: source.clone(),
            };
            self.crl_next_update.get_or_create(&labels).set(*secs);
        }
    }

    /// The last checkpoint's age in seconds (`None`: no checkpoint yet).
    pub fn checkpoint_age(&self, secs: Option<f64>) {
        self.checkpoint_age.set(secs.unwrap_or(-1.0));
    }
}

#[cfg(test)]
mod tests;
