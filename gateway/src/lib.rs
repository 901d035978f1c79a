//! emla: a secure S/MIME e-mail gateway for mutual legal assistance.
//!
//! The modules follow the flow of a message: [`smime`] parses and checks the
//! signature, [`trust`] validates the signer's chain, [`policy`] holds what
//! administrators configured, and [`verify`] makes the one decision every
//! later stage relies on.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod asn1;
pub mod audit;
pub mod backoff;
pub mod case_ref;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod envelope;
pub mod fsutil;
pub mod intake;
pub mod metrics;
pub mod pem;
pub mod policy;
pub mod reason;
pub mod receipts;
pub mod relay;
pub mod revocation;
pub mod server;
pub mod smime;
pub mod store;
pub mod text;
pub mod tls;
pub mod trust;
pub mod verify;
pub mod wire;

pub use clock::EvalTime;
pub use reason::Reason;
pub use store::AuditKind;
