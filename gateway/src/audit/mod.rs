//! The auditors' tools over the message log and the audit chain:
//! searching ([`cli::search`]), one message's history ([`cli::show`]), and
//! the read-only web view `emla serve` can expose ([`web`]). The case
//! reference every message is filed under is [`crate::case_ref`], shared
//! with intake.
//!
//! The runners return their rendered output as a `String`; `main.rs` prints
//! it and maps an [`AuditError`] to the exit code it names.

pub mod backlog;
pub mod bundle_policy;
pub mod bundle_receipts;
pub mod checkpoint;
pub mod cli;
pub mod export;
pub mod policies;
pub mod receipt;
pub mod render;
pub mod replay;
pub mod retention;
pub mod show;
pub mod web;

use crate::store::StoreError;

/// Why an audit command could not give an answer.
#[derive(Debug)]
pub enum AuditError {
    /// The arguments are wrong (a bad time, an unknown reason code or
    /// country, …): exit code 2.
    Usage(String),
    /// The thing asked for does not exist (`emla audit show` of an unknown
    /// id): exit code 1.
    NotFound(String),
    /// The store cannot be read: exit code 2.
    Store(StoreError),
}

impl AuditError {
    /// The exit code of the CLI contract: 1 not found, 2 usage or
    /// configuration.
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::NotFound(_) => 1,
            AuditError::Usage(_) => 2,
            AuditError::Store(e) => e.exit_code(),
        }
    }
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Usage(e) | AuditError::NotFound(e) => f.write_str(e),
            AuditError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AuditError {}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> Self {
        AuditError::Store(e)
    }
}
