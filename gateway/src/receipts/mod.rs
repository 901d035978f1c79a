//! Receipts: what the gateway tells a sender about its message, built
//! ([`build`]) and turned into messages it sends ([`notify`]). Intake uses it
//! for acceptance receipts, the relay for delivery receipts and
//! non-delivery notices, checkpoints for their signed mail; [`hold`] keeps
//! those waiting for a timestamp token; [`duty`] alerts the authorities'
//! duty officers about urgent-lane mail, within [`limit`]'s hourly caps.

pub mod build;
pub mod duty;
pub mod hold;
pub mod limit;
pub mod notify;
