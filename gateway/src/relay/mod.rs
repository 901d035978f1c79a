//! Relay: delivers accepted messages from the queue to the next hop of the
//! recipients' authority, exactly as they were received
//! ([`deliver`]), retrying with backoff ([`backoff`](crate::backoff)) until
//! relayed (the next hop's `250`, its queue id read by [`queue_id`]),
//! refused or out of queue lifetime ([`worker`]).

pub mod admin;
pub mod deliver;
pub mod encrypt;
pub mod pool;
pub mod queue_id;
pub mod worker;

pub use worker::spawn;
