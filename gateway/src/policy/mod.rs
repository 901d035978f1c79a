//! Policy files: model, loading, validation, routing decisions.
//!
//! See `policy/README.md` at the repository root for the file reference.

mod model;

pub use model::*;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::clock::EvalTime;

/// One problem found in the policy, located in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line (1 when the problem concerns the whole file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong, in words an administrator understands.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Loads and validates the policy in `dir`, judging certificate and CRL
/// validity at `now`. Returns every problem found, not just the first.
pub fn load(dir: &Path, now: EvalTime) -> Result<Policy, Vec<Diagnostic>> {
    let _ = (dir, now);
    todo!("policy loading")
}

impl Policy {
    /// The authority owning `domain` (compared case-insensitively).
    pub fn authority_for_domain(&self, domain: &str) -> Option<&Authority> {
        self.domain_index
            .get(&domain.to_ascii_lowercase())
            .map(|&i| &self.authorities[i])
    }

    /// The authority owning the domain of `address` (`local@domain`).
    pub fn authority_for_address(&self, address: &str) -> Option<&Authority> {
        let (_, domain) = address.rsplit_once('@')?;
        self.authority_for_domain(domain)
    }

    /// The routing decision for one sender/recipient pair (first match wins).
    pub fn route(&self, from: &str, to: &str) -> RouteDecision<'_> {
        let _ = (from, to);
        todo!("routing")
    }
}
