//! Mail to the postmaster (RFC 5321 §4.5.1): `RCPT TO:<postmaster>` (any
//! case) or `postmaster@` the gateway's host name. It is no formal request:
//! it is not judged as S/MIME (it may be unsigned), never relayed, and kept
//! in a bounded mailbox under the data directory (`DATA_DIR/postmaster/
//! ID.eml`) that the operator reads. The mailbox is bounded in messages,
//! bytes and messages per hour; beyond, RCPT and DATA get `452 4.2.2`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::handler::Transaction;
use super::reply::Reply;
use super::Service;
use crate::config::PostmasterConfig;
use crate::reason::Reason;
use crate::store::payload::{PostmasterKept, RefusedFor, SmtpRejected};
use crate::store::{AuditEvent, Body, SessionInfo};

/// Whether `to` (a parsed forward-path) is the postmaster of the gateway
/// called `hostname`; the address it is kept under.
pub fn address(to: &str, hostname: &str) -> Option<String> {
    let ours = format!("postmaster@{hostname}");
    (to.eq_ignore_ascii_case("postmaster") || to.eq_ignore_ascii_case(&ours)).then_some(ours)
}

/// Why the mailbox cannot take `adding` more bytes now, if it cannot.
pub fn full(cfg: &PostmasterConfig, adding: u64) -> Option<String> {
    let (count, bytes, recent) = usage(&cfg.dir);
    if count >= cfg.max_messages {
        Some(format!(
            "it holds {count} messages, the limit is {}",
            cfg.max_messages
        ))
    } else if bytes + adding > cfg.max_bytes {
        Some(format!(
            "it holds {bytes} bytes, the limit is {}",
            cfg.max_bytes
        ))
    } else if recent >= cfg.max_per_hour {
        Some(format!(
            "{recent} messages came in the last hour, the limit is {}",
            cfg.max_per_hour
        ))
    } else {
        None
    }
}

/// Messages, bytes, and messages of the last hour in the mailbox.
fn usage(dir: &Path) -> (usize, u64, usize) {
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0, 0);
    };
    let mut out = (0, 0, 0);
    for meta in entries.flatten().filter_map(|e| {
        let kept = e.file_name().to_string_lossy().ends_with(".eml");
        kept.then(|| e.metadata().ok()).flatten()
    }) {
        out.0 += 1;
        out.1 += meta.len();
        if meta.modified().is_ok_and(|t| t > hour_ago) {
            out.2 += 1;
        }
    }
    out
}

/// The reply when the mailbox is full.
pub fn full_reply(why: &str) -> Reply {
    Reply::new(
        452,
        format!("4.2.2 the postmaster mailbox is full ({why}); try again later"),
    )
}

/// Keeps a postmaster transaction; returns the reply for the client.
pub async fn keep(gw: &Service, session: &SessionInfo, tx: Transaction) -> Reply {
    let cfg = &gw.config.postmaster;
    let refusal = if tx.too_large {
        Some((
            Reason::TooLarge,
            format!("message is at least {} bytes", tx.received),
        ))
    } else {
        tx.malformed.clone().map(|why| (Reason::Malformed, why))
    };
    if let Some((reason, detail)) = refusal {
        let refused = SmtpRejected {
            stage: "data".into(),
            session: session.clone(),
            mail_from: tx.mail_from.clone(),
            reason,
            detail: format!("postmaster mail: {detail}"),
            policy_version: tx.policy.version.clone(),
            refused_for: RefusedFor::RcptTo(tx.rcpt_to.clone()),
        };
        let event = AuditEvent::of(None, &refused);
        return super::session::recorded(gw, event, Reply::reject(reason, &detail)).await;
    }
    if let Some(why) = &tx.spool_error {
        return Reply::temporary(why);
    }
    if let Some(why) = full(cfg, tx.body.len()) {
        return full_reply(&why);
    }
    let id = crate::store::new_message_id(&tx.policy.gateway.hostname);
    let path = cfg.dir.join(format!("{id}.eml"));
    let size = tx.body.len();
    let (dir, file, body) = (cfg.dir.clone(), path.clone(), tx.body);
    let written = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        match super::commit::finish_data(body)? {
            Body::Bytes(bytes) => {
                crate::fsutil::write_atomic(&file, &bytes)?;
                Ok(hex::encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    &bytes,
                )))
            }
            Body::Spooled(s) => {
                crate::fsutil::copy_atomic(s.path(), &file)?;
                Ok(s.sha256().to_owned())
            }
        }
    })
    .await;
    let sha256 = match written
        .map_err(|e| e.to_string())
        .and_then(|r: std::io::Result<String>| r.map_err(|e| e.to_string()))
    {
        Ok(sha256) => sha256,
        Err(e) => {
            tracing::error!(error = %e, "cannot keep postmaster mail");
            return Reply::temporary(&format!("cannot keep the message now ({e})"));
        }
    };
    let kept_as = PostmasterKept {
        session: session.clone(),
        mail_from: tx.mail_from.clone(),
        rcpt_to: tx.rcpt_to.clone(),
        id: id.clone(),
        file: path.display().to_string(),
        size,
        sha256,
    };
    let event = AuditEvent::of(None, &kept_as);
    let kept = Reply::new(250, format!("2.0.0 kept for the postmaster as {id}"));
    let reply = super::session::recorded(gw, event, kept).await;
    if reply.is_error() {
        // Not audited: not kept either.
        let _ = std::fs::remove_file(&path);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmaster_addresses() {
        assert_eq!(
            address("PostMaster", "gw.example").as_deref(),
            Some("postmaster@gw.example")
        );
        assert!(address("POSTMASTER@GW.example", "gw.example").is_some());
        assert!(address("postmaster@justice.aa.example", "gw.example").is_none());
        assert!(address("postmistress", "gw.example").is_none());
    }

    #[test]
    fn the_mailbox_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PostmasterConfig {
            dir: dir.path().to_path_buf(),
            max_messages: 2,
            max_bytes: 10,
            max_per_hour: 5,
        };
        assert_eq!(full(&cfg, 10), None);
        assert!(full(&cfg, 11).is_some());
        std::fs::write(dir.path().join("a.eml"), b"12345").unwrap();
        assert!(full(&cfg, 6).unwrap().contains("bytes"));
        std::fs::write(dir.path().join("b.eml"), b"1").unwrap();
        assert!(full(&cfg, 0).unwrap().contains("2 messages"));
        let cfg = PostmasterConfig {
            max_messages: 9,
            max_bytes: 99,
            max_per_hour: 2,
            ..cfg
        };
        assert!(full(&cfg, 0).unwrap().contains("last hour"));
    }
}
