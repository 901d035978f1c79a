//! How many notices each authority may get per hour: non-acceptance
//! notices to its senders (its policy's `rejection_notices_per_hour`) and
//! duty alerts to its duty address (`duty_alerts_per_hour`). A sender whose
//! every message is refused (a broken signer, a spoofing run) must not turn
//! the gateway into a mail cannon.

use std::collections::HashMap;
use std::sync::Mutex;

const WINDOW_MS: i64 = 3_600_000;
/// Authorities are policy-bounded; this caps the map anyway.
const MAX_TRACKED: usize = 1024;

/// Notices counted per authority in fixed one-hour windows (in memory: a
/// restart starts a new window, at most one extra hour's worth).
#[derive(Default)]
pub struct Limiter {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl Limiter {
    /// Whether `authority` may get one more notice at `now_ms`, at most
    /// `per_hour` in its window; counts it.
    pub fn allow(&self, authority: &str, per_hour: u32, now_ms: i64) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_TRACKED && !w.contains_key(authority) {
            w.retain(|_, (start, _)| now_ms - *start < WINDOW_MS);
            if w.len() >= MAX_TRACKED {
                return false;
            }
        }
        let (start, count) = w.entry(authority.to_owned()).or_insert((now_ms, 0));
        if now_ms - *start >= WINDOW_MS {
            (*start, *count) = (now_ms, 0);
        }
        if *count >= per_hour {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_authority_per_hour() {
        let l = Limiter::default();
        assert!((0..20).all(|_| l.allow("aa", 20, 0)));
        assert!(!l.allow("aa", 20, WINDOW_MS - 1));
        assert!(l.allow("bb", 20, 1), "another authority has its own budget");
        assert!(l.allow("aa", 20, WINDOW_MS), "a new hour");
        assert!((0..3).all(|_| l.allow("cc", 3, 0)));
        assert!(!l.allow("cc", 3, 0), "each authority's own limit");
    }
}
