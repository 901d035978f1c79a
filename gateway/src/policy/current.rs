//! The policy in force: every decision reads it, a reload replaces it whole
//! (a decision under way keeps the version it started with).

use std::sync::{Arc, RwLock};

use super::Policy;

/// The policy in force, shared by the stages.
pub struct CurrentPolicy {
    inner: RwLock<Arc<Policy>>,
}

impl CurrentPolicy {
    /// Starts with `policy` in force.
    pub fn new(policy: Policy) -> CurrentPolicy {
        CurrentPolicy {
            inner: RwLock::new(Arc::new(policy)),
        }
    }

    /// The policy in force now.
    pub fn get(&self) -> Arc<Policy> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `policy` in force; returns the one it replaces.
    pub fn replace(&self, policy: Policy) -> Arc<Policy> {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, Arc::new(policy))
    }
}
