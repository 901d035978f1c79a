//! Relay: delivers accepted messages from the queue to the next hop of the
//! recipients' authority, exactly as they were received
//! ([`deliver`]), retrying with backoff ([`backoff`](crate::backoff)) until delivered,
//! refused or out of queue lifetime ([`worker`]).

pub mod admin;
pub mod deliver;
pub mod pool;
pub mod worker;

pub use worker::spawn;
