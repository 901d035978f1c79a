//! `emla crl status` and `emla crl fetch`.

use std::fmt::Write;

use clap::Subcommand;

use super::{FetchOutcome, Revocation, State};
use crate::clock::EvalTime;
use crate::config::Config;
use crate::policy::Policy;
use crate::store::Store;

/// `emla crl …`.
#[derive(Clone, Debug, Subcommand)]
pub enum CrlCommand {
    /// Per authority and CA: every CRL the gateway holds or downloads, with
    /// its source, thisUpdate, nextUpdate, last download and last error.
    /// Exits 1 when a CRL is stale or a source has nothing held.
    Status {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download every CRL source now (through the running gateway when it
    /// is up, so it uses them at once). Exits 1 when a download failed.
    Fetch {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// One row of `emla crl status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CrlRow {
    /// The authority it serves.
    pub authority: String,
    /// `file`, `crl_urls` or `cdp`.
    pub kind: &'static str,
    /// The file or URL.
    pub source: String,
    /// The CRL's issuer (the CA).
    pub issuer: Option<String>,
    /// SHA-256 of the CRL held.
    pub sha256: Option<String>,
    /// thisUpdate of the CRL held.
    pub this_update: Option<String>,
    /// nextUpdate of the CRL held.
    pub next_update: Option<String>,
    /// Whether the CRL held is past its nextUpdate (or none is held).
    pub stale: bool,
    /// nextUpdate as seconds since the epoch (the gauges' reading).
    #[serde(skip)]
    pub next_update_unix: Option<u64>,
    /// Last download attempt.
    pub last_attempt: Option<String>,
    /// Last successful download.
    pub last_success: Option<String>,
    /// What went wrong the last time.
    pub last_error: Option<String>,
    /// Next download.
    pub next_attempt: Option<String>,
}

fn when(t: Option<u64>) -> Option<String> {
    t.map(|t| EvalTime::from_unix(t).to_rfc3339())
}

/// The rows of `emla crl status` for `policy` and the downloader's `state`.
pub fn status_rows(policy: &Policy, state: &State, now: EvalTime) -> Vec<CrlRow> {
    let mut rows = Vec::new();
    for a in &policy.authorities {
        for crl in &a.crls {
            rows.push(CrlRow {
                authority: a.id.clone(),
                kind: "file",
                source: crl.source.clone(),
                issuer: Some(crl.issuer_text.clone()),
                sha256: Some(crl.sha256.clone()),
                this_update: when(Some(crl.this_update)),
                next_update: when(Some(crl.next_update)),
                stale: crl.next_update < now.unix(),
                next_update_unix: Some(crl.next_update),
                last_attempt: None,
                last_success: None,
                last_error: None,
                next_attempt: None,
            });
        }
        for (url, src) in &state.crls {
            if !src.active || !src.authorities.contains(&a.id) {
                continue;
            }
            rows.push(CrlRow {
                authority: a.id.clone(),
                kind: match src.origin {
                    super::Origin::CrlUrls => "crl_urls",
                    super::Origin::Cdp => "cdp",
                },
                source: url.clone(),
                issuer: src.issuer.clone(),
                sha256: src.sha256.clone(),
                this_update: when(src.this_update),
                next_update: when(src.next_update),
                stale: src.next_update.is_none_or(|n| n < now.unix()),
                next_update_unix: src.next_update,
                last_attempt: when(src.schedule.last_attempt),
                last_success: when(src.last_success),
                last_error: src.schedule.last_error.clone(),
                next_attempt: when(Some(src.schedule.next_attempt)),
            });
        }
    }
    rows
}

/// Runs `cmd`; returns the text to print and the exit code.
pub async fn run(
    config: &Config,
    policy: &Policy,
    cmd: &CrlCommand,
) -> Result<(String, u8), String> {
    match cmd {
        CrlCommand::Status { json } => {
            let state = State::load(&config.data_dir.join("revocation"));
            let rows = status_rows(policy, &state, EvalTime::now());
            let bad = rows.iter().any(|r| r.stale);
            let text = if *json {
                format!("{}\n", serde_json::json!({ "crls": rows }))
            } else {
                status_table(&rows)
            };
            Ok((text, u8::from(bad)))
        }
        CrlCommand::Fetch { json } => {
            let outcomes =
                match crate::control::request(&config.data_dir, crate::control::CRL_FETCH).await {
                    Ok(reply) if reply["ok"] == true => {
                        serde_json::from_value::<Vec<OutcomeRow>>(reply["outcomes"].clone())
                            .map_err(|e| format!("unreadable reply from the gateway: {e}"))?
                    }
                    Ok(reply) => return Err(format!("the gateway refused: {reply}")),
                    // No gateway running: fetch from this process.
                    Err(_) => {
                        let store = Store::open_config(config)
                            .await
                            .map_err(|e| e.to_string())?;
                        let rev = Revocation::open(&config.data_dir, &config.revocation);
                        rev.refresh(policy, &store, true)
                            .await
                            .into_iter()
                            .map(OutcomeRow::from)
                            .collect()
                    }
                };
            let failed = outcomes.iter().any(|o| o.result == "failed");
            let text = if *json {
                format!("{}\n", serde_json::json!({ "outcomes": outcomes }))
            } else if outcomes.is_empty() {
                "no CRL source is configured (crl_urls, fetch_crls = \"cdp\")\n".to_owned()
            } else {
                let mut s = String::new();
                for o in &outcomes {
                    let _ = writeln!(s, "{:<9} {}: {}", o.result, o.url, o.detail);
                }
                s
            };
            Ok((text, u8::from(failed)))
        }
    }
}

/// A [`FetchOutcome`] as read back from the control socket.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct OutcomeRow {
    url: String,
    result: String,
    detail: String,
}

impl From<FetchOutcome> for OutcomeRow {
    fn from(o: FetchOutcome) -> Self {
        OutcomeRow {
            url: o.url,
            result: o.result.to_owned(),
            detail: o.detail,
        }
    }
}

fn status_table(rows: &[CrlRow]) -> String {
    if rows.is_empty() {
        return "no CRL is configured or downloaded\n".to_owned();
    }
    let mut s = String::new();
    for r in rows {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            s,
            "{} {} {}{}",
            r.authority,
            r.kind,
            r.source,
            if r.stale { "  STALE" } else { "" }
        );
        let _ = writeln!(s, "  issuer       {}", dash(&r.issuer));
        let _ = writeln!(s, "  thisUpdate   {}", dash(&r.this_update));
        let _ = writeln!(s, "  nextUpdate   {}", dash(&r.next_update));
        if r.kind != "file" {
            let _ = writeln!(s, "  last fetch   {}", dash(&r.last_attempt));
            let _ = writeln!(s, "  last success {}", dash(&r.last_success));
            let _ = writeln!(s, "  next fetch   {}", dash(&r.next_attempt));
            if let Some(e) = &r.last_error {
                let _ = writeln!(s, "  last error   {e}");
            }
        }
    }
    s
}
