//! Sessions per client address: one address may hold at most
//! `max_sessions_per_client` of the intake's sessions, so a single client
//! (or a single misbehaving MTA) cannot starve the other authorities.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open sessions of each client address.
#[derive(Clone)]
pub struct Clients {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    limit: usize,
}

/// One session's place in its client's count, given back when dropped.
pub struct Slot {
    clients: Clients,
    ip: IpAddr,
}

impl Clients {
    /// A count allowing `limit` sessions per address.
    pub fn new(limit: usize) -> Clients {
        Clients {
            open: Arc::default(),
            limit,
        }
    }

    /// A slot for a new session from `ip`, unless it already has `limit`.
    pub fn enter(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        crate::metrics::with(|m| {
            m.sessions(
                open.values().sum(),
                open.values().copied().max().unwrap_or(0),
            )
        });
        Some(Slot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        crate::metrics::with(|m| {
            m.sessions(
                open.values().sum(),
                open.values().copied().max().unwrap_or(0),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_capped_and_others_are_not() {
        let clients = Clients::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = clients.enter(a).unwrap();
        let _s2 = clients.enter(a).unwrap();
        assert!(
            clients.enter(a).is_none(),
            "a third session from one address"
        );
        assert!(
            clients.enter(b).is_some(),
            "another address is not affected"
        );
        drop(s1);
        assert!(
            clients.enter(a).is_some(),
            "a slot is given back when a session ends"
        );
        assert_eq!(
            clients.open.lock().unwrap().get(&b),
            None,
            "empty counts are removed"
        );
    }
}
