//! Chain signatures that already verified are not verified again.
//!
//! Every message from one authority carries the same intermediate and signer
//! certificates, so path validation re-checks the same few signatures over
//! and over; at intake load that is most of the CPU (two P-384 ECDSA checks
//! per message). Only successes are remembered, keyed by SHA-256 of
//! everything the answer depends on, so the result is the one the wrapped
//! algorithm would give.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{LazyLock, Mutex};

use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256};

/// Signatures remembered per generation; two generations are kept.
const GENERATION: usize = 2048;

/// A [`SignatureVerificationAlgorithm`] that remembers its successes.
pub struct Memo(pub &'static dyn SignatureVerificationAlgorithm);

#[derive(Default)]
struct Seen {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

static SEEN: LazyLock<Mutex<Seen>> = LazyLock::new(Mutex::default);

impl Seen {
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.current.contains(key) || self.previous.contains(key)
    }

    fn insert(&mut self, key: [u8; 32]) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key);
    }
}

/// A map bounded to two generations of `cap` entries: when the current
/// one is full it becomes the previous one, and the older is dropped. An
/// entry found in the previous generation moves to the current one.
pub(crate) struct Generations<K, V> {
    cap: usize,
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
}

impl<K: Hash + Eq, V: Clone> Generations<K, V> {
    /// An empty map of generations of `cap` entries.
    pub(crate) fn new(cap: usize) -> Self {
        Generations {
            cap,
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// The value for `key`, if held.
    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.current.get(key) {
            return Some(v.clone());
        }
        let (key, v) = self.previous.remove_entry(key)?;
        self.insert(key, v.clone());
        Some(v)
    }

    /// Holds `value` for `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.current.len() >= self.cap {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }

    /// How many entries are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

impl Memo {
    fn key(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.0.public_key_alg_id().as_ref(),
            self.0.signature_alg_id().as_ref(),
            public_key,
            message,
            signature,
        ] {
            // Length-prefixed, so no two inputs share an encoding.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }
}

impl SignatureVerificationAlgorithm for Memo {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = self.key(public_key, message, signature);
        if SEEN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        self.0.verify_signature(public_key, message, signature)?;
        SEEN.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        Ok(())
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.0.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.0.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.0.fips()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memo({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_not_remembered_and_keys_separate_inputs() {
        let m = Memo(webpki::ring::ECDSA_P256_SHA256);
        assert!(m.verify_signature(b"key", b"msg", b"sig").is_err());
        assert!(m.verify_signature(b"key", b"msg", b"sig").is_err());
        assert_ne!(m.key(b"ab", b"c", b""), m.key(b"a", b"bc", b""));
    }

    #[test]
    fn generations_bound_the_memory() {
        let mut s = Seen::default();
        for i in 0..(3 * GENERATION as u32) {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            s.insert(k);
        }
        assert!(s.current.len() + s.previous.len() <= 2 * GENERATION);
    }

    #[test]
    fn generations_keep_what_is_used_and_stay_bounded() {
        let mut g = Generations::new(4);
        for i in 0..4u32 {
            g.insert(i, i * 10);
        }
        g.insert(4, 40); // 0..4 become the previous generation
        assert_eq!(g.get(&1), Some(10)); // and 1 moves back to the current
        for i in 5..8u32 {
            g.insert(i, i * 10);
        }
        // The current generation (4, 1, 5, 6) was full: 7 started a new one.
        assert_eq!(g.get(&0), None);
        assert_eq!(g.get(&1), Some(10));
        assert!(g.len() <= 8);
        for i in 0..1000u32 {
            g.insert(i, i);
        }
        assert!(g.len() <= 8);
    }
}
