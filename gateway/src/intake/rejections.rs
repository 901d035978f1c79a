//! How many non-acceptance notices each sender authority may get: a
//! sender whose every message is refused (a broken signer, a spoofing
//! run) must not turn the gateway into a mail cannon.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most rejection notices per sender authority per window.
pub const PER_HOUR: u32 = 20;
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
    /// Whether `authority` may get one more notice at `now_ms`; counts it.
    pub fn allow(&self, authority: &str, now_ms: i64) -> bool {
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
        if *count >= PER_HOUR {
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
        assert!((0..PER_HOUR).all(|_| l.allow("aa", 0)));
        assert!(!l.allow("aa", WINDOW_MS - 1));
        assert!(l.allow("bb", 1), "another authority has its own budget");
        assert!(l.allow("aa", WINDOW_MS), "a new hour");
    }
}
