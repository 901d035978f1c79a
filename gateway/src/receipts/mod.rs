//! Receipts: what the gateway tells a sender about its message, built
//! ([`build`]) and turned into messages it sends ([`notify`]). Intake uses it
//! for acceptance receipts, the relay for delivery receipts and
//! non-delivery notices, checkpoints for their signed mail; [`hold`] keeps
//! those waiting for a timestamp token.

pub mod build;
pub mod hold;
pub mod notify;
