//! When to try again: exponential backoff with jitter, so that the
//! deliveries deferred by one outage do not all come back at once.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// The wait after the `failures`-th failed attempt in a row (1 = first):
/// `initial · 2^(failures-1)`, at most `max`, then ±20 %.
pub fn exponential(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1 << exp).min(max).mul_f64(jitter())
}

/// A factor in [0.8, 1.2).
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    if SystemRandom::new().fill(&mut b).is_err() {
        return 1.0;
    }
    0.8 + 0.4 * f64::from(u16::from_be_bytes(b)) / 65536.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_with_bounded_jitter() {
        let (initial, max) = (Duration::from_secs(10), Duration::from_secs(100));
        for (failures, base) in [
            (1, 10.0),
            (2, 20.0),
            (3, 40.0),
            (4, 80.0),
            (5, 100.0),
            (60, 100.0),
        ] {
            for _ in 0..50 {
                let d = exponential(initial, max, failures).as_secs_f64();
                assert!(d >= base * 0.8 && d < base * 1.2, "{failures}: {d}");
            }
        }
        let spread: std::collections::HashSet<_> = (0..20)
            .map(|_| exponential(initial, max, 1).as_millis())
            .collect();
        assert!(spread.len() > 1, "jitter varies");
    }
}
