//! The one place every clock-dependent check takes its "now" from.
//!
//! `emla verify --at RFC3339` pins it, so a message can be judged as of any
//! instant (`docs/contracts.md`, "Evaluation time").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tick of a background job of `emla serve`: waits `every`, and says
/// whether to go on (false once `stop` turned true, at once).
pub async fn tick(every: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(every) => {}
        _ = stop.changed() => return false,
    }
    !*stop.borrow()
}

/// An instant at which certificates, CRLs and signing times are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EvalTime {
    secs: u64,
}

impl EvalTime {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        EvalTime { secs }
    }

    /// Seconds since the Unix epoch.
    pub fn from_unix(secs: u64) -> Self {
        EvalTime { secs }
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-28T10:00:00Z`.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("invalid RFC 3339 time {s:?}: {e}"))?;
        let secs =
            u64::try_from(t.unix_timestamp()).map_err(|_| format!("time {s:?} is before 1970"))?;
        Ok(EvalTime { secs })
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> u64 {
        self.secs
    }

    /// The same instant for rustls-webpki.
    pub fn to_webpki(self) -> rustls_pki_types::UnixTime {
        rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(self.secs))
    }

    /// RFC 3339 rendering, UTC.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.secs as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.secs.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_rfc3339() {
        let t = EvalTime::parse_rfc3339("2026-11-28T10:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T09:00:00Z");
        assert!(EvalTime::parse_rfc3339("yesterday").is_err());
    }
}
