//! Open SMTP sessions kept between deliveries, per next hop, so that a
//! steady flow of messages (and receipts) to one counterpart does not pay
//! a TCP and TLS handshake each; a session idle longer than [`IDLE`] is
//! closed with QUIT.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::deliver::Connection;

/// How long an unused session stays open.
pub const IDLE: Duration = Duration::from_secs(5);

/// Idle sessions by next hop (host, port and TLS requirement).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<(Connection, Instant)>>>,
}

impl Pool {
    /// A usable idle session to `key`, if one is open.
    pub fn take(&self, key: &str) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((c, since)) = list.pop() {
            if c.usable() && since.elapsed() < IDLE {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `c` for the next delivery to `key`, at most `max` per key.
    pub fn put(&self, key: &str, c: Connection, max: usize) -> Option<Connection> {
        if !c.usable() {
            return None;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key.to_owned()).or_default();
        if list.len() >= max {
            return Some(c);
        }
        list.push((c, Instant::now()));
        None
    }

    /// Removes the sessions idle longer than [`IDLE`] (or every one, with
    /// `all`); the caller closes them.
    pub fn stale(&self, all: bool) -> Vec<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for list in idle.values_mut() {
            let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, since)| !all && since.elapsed() < IDLE);
            *list = keep;
            out.extend(old.into_iter().map(|(c, _)| c));
        }
        idle.retain(|_, l| !l.is_empty());
        out
    }
}
