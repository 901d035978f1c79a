//! Replays: anyone holding one signed request could submit it again, and it
//! would travel again as a new formal request. A message whose SignerInfo
//! signature was accepted within the policy's replay window is recognised
//! by the SHA-256 of that signature value (stored with the accepted message,
//! indexed) and is not relayed a second time.
//!
//! The signature, not the bytes, is the key: a client or an MTA on the way
//! may re-wrap headers, but cannot make a new signature. It is remembered
//! per recipient: a message is a replay when every one of its recipients
//! already had this signature, so an MTA that splits one message into
//! several transactions (other recipients, same bytes) loses nothing. A
//! transaction that adds a recipient is accepted whole, and the recipients
//! that had it get it twice, as plain SMTP would.
//!
//! Two sessions carrying the same message at the same moment are kept
//! apart by a claim held while the first is judged and recorded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::store::{Store, StoreError};
use crate::verify::SignerReport;

/// The replay keys of one accepted message: for each recipient, one key
/// per signer, SHA-256 over the signature's hash and the lowercased address.
#[derive(Default)]
pub struct ReplayKeys {
    signatures: Vec<String>,
    per_recipient: Vec<Vec<String>>,
}

impl ReplayKeys {
    /// The keys of a message signed by `signers` for `rcpt_to`.
    pub fn of(signers: &[SignerReport], rcpt_to: &[String]) -> ReplayKeys {
        let signatures: Vec<String> = signers.iter().map(|s| s.signature_sha256.clone()).collect();
        let mut rcpts: Vec<String> = rcpt_to.iter().map(|r| r.to_ascii_lowercase()).collect();
        rcpts.sort();
        rcpts.dedup();
        let per_recipient: Vec<Vec<String>> = rcpts
            .iter()
            .map(|r| {
                signatures
                    .iter()
                    .map(|sig| {
                        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                        ctx.update(sig.as_bytes());
                        ctx.update(b"\0");
                        ctx.update(r.as_bytes());
                        hex::encode(ctx.finish())
                    })
                    .collect()
            })
            .collect();
        ReplayKeys {
            signatures,
            per_recipient,
        }
    }

    /// Whether there is nothing to look up (no signer, or not accepted).
    pub fn is_empty(&self) -> bool {
        self.per_recipient.iter().all(Vec::is_empty)
    }

    /// Every key, as stored with the message.
    pub fn all(&self) -> Vec<String> {
        self.per_recipient.concat()
    }

    /// The signers' signature hashes.
    pub fn signatures(&self) -> &[String] {
        &self.signatures
    }

    /// The keys to store with the accepted message.
    pub fn into_stored(self) -> Vec<String> {
        self.all()
    }

    /// The first message accepted since `since_ms` with this signature, when
    /// every recipient of this one already had it: then this is a replay.
    pub async fn earlier(
        &self,
        store: &Store,
        since_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let found = store.accepted_with_signature(&self.all(), since_ms).await?;
        let first_of = |keys: &[String]| {
            found
                .iter()
                .find(|(k, _)| keys.contains(k))
                .map(|(_, id)| id.clone())
        };
        let mut first = None;
        for keys in &self.per_recipient {
            match first_of(keys) {
                Some(id) => first = first.or(Some(id)),
                None => return Ok(None),
            }
        }
        Ok(first)
    }
}

/// The signatures being judged right now, across sessions.
#[derive(Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// A session's hold on its message's signatures, released when dropped.
pub struct Claim {
    keys: Arc<Mutex<HashSet<String>>>,
    held: Vec<String>,
}

impl InFlight {
    /// Holds `keys` for one session, unless another session holds one of
    /// them.
    pub fn claim(&self, keys: &[String]) -> Option<Claim> {
        let mut set = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.iter().any(|k| set.contains(k)) {
            return None;
        }
        set.extend(keys.iter().cloned());
        Some(Claim {
            keys: self.keys.clone(),
            held: keys.to_vec(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.held {
            set.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(signature_sha256: &str) -> SignerReport {
        SignerReport {
            email: None,
            emails: Vec::new(),
            subject: String::new(),
            issuer: String::new(),
            serial: String::new(),
            sha256: String::new(),
            key_algorithm: String::new(),
            signature_algorithm: String::new(),
            signature_sha256: signature_sha256.into(),
            chain: Vec::new(),
            authority: None,
        }
    }

    #[test]
    fn keys_are_per_recipient_and_signer_case_insensitively() {
        let rcpt = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let one = ReplayKeys::of(&[signer("s1")], &rcpt(&["Bob@B.example"]));
        let same = ReplayKeys::of(&[signer("s1")], &rcpt(&["bob@b.example", "BOB@b.example"]));
        assert_eq!(one.all(), same.all(), "case and repeats do not matter");
        let two = ReplayKeys::of(&[signer("s1"), signer("s2")], &rcpt(&["a@x", "b@x"]));
        assert_eq!(two.per_recipient.len(), 2);
        assert_eq!(two.all().len(), 4);
        let other = ReplayKeys::of(&[signer("s2")], &rcpt(&["bob@b.example"]));
        assert_ne!(one.all(), other.all(), "another signature, another key");
        assert!(ReplayKeys::of(&[], &rcpt(&["a@x"])).is_empty());
    }

    #[test]
    fn a_claimed_signature_cannot_be_claimed_twice_until_released() {
        let inflight = InFlight::default();
        let a = vec!["aa".to_string()];
        let first = inflight.claim(&a).expect("first claim");
        assert!(inflight.claim(&a).is_none(), "held by the first session");
        assert!(inflight.claim(&["bb".to_string()]).is_some(), "another key");
        drop(first);
        assert!(inflight.claim(&a).is_some(), "released");
    }
}
