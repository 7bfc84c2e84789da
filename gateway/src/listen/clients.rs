//! Open client connections, shared by every worker and listener: the cap of
//! `GATEWAY_MAX_CONNECTIONS` on all of them together, so that the process keeps descriptors and
//! memory for the connections it serves, and per client address the cap of
//! `max_connections_per_client` (`[settings]`), so that one client cannot hold the descriptors
//! everyone else needs.
//!
//! A client is its IPv4 address, or the /64 network of its IPv6 address: one host is usually
//! given a whole /64 and can pick any address in it (the granularity nginx and HAProxy users
//! apply with `limit_conn` on a masked key). Entries exist only while their client has a
//! connection open, so the table is never larger than the number of open connections, however
//! many addresses an attacker rotates through.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{
            AtomicU64, AtomicUsize,
            Ordering::{AcqRel, Acquire, Relaxed},
        },
    },
};

/// Whom a connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.to_bits()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
                Some(v4) => Self::V4(v4.to_bits()),
                None => Self::V6(network_64(v6)),
            },
        }
    }
}

fn network_64(ip: Ipv6Addr) -> u64 {
    u64::try_from(ip.to_bits() >> 64).unwrap_or(0)
}

/// Every open client connection of the process, by client.
#[derive(Debug)]
pub struct ClientConnections {
    by_client: Mutex<HashMap<ClientKey, u32>>,
    /// Open connections, from every client (trusted proxies too): never more than `max_open`.
    open: AtomicUsize,
    /// `GATEWAY_MAX_CONNECTIONS`.
    max_open: usize,
    /// Connections closed at once because their client had `max_connections_per_client` open.
    refused: AtomicU64,
    /// Connections closed at once because `max_open` were open.
    refused_over_total: AtomicU64,
}

/// `GATEWAY_MAX_CONNECTIONS` when unset: far more than a gateway in front of two services needs
/// (the per-client cap keeps one client to 256 of them), few enough that the descriptors and
/// the memory they take (tens of KiB each, with their buffers) fit an ordinary host.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

impl Default for ClientConnections {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CONNECTIONS)
    }
}

/// One open connection; dropping it (when the connection ends) gives its place back.
#[derive(Debug)]
pub struct Permit {
    owner: Arc<ClientConnections>,
    /// `None` for an uncapped connection (a trusted proxy's, or no cap set).
    client: Option<ClientKey>,
}

impl ClientConnections {
    /// No connection open yet; at most `max_open` at a time.
    pub fn new(max_open: usize) -> Self {
        Self {
            by_client: Mutex::default(),
            open: AtomicUsize::new(0),
            max_open,
            refused: AtomicU64::new(0),
            refused_over_total: AtomicU64::new(0),
        }
    }

    /// A permit for a new connection from `ip`, unless `max_open` connections are open, or
    /// that client already has `limit` open (`None` for no limit).
    pub fn open(self: &Arc<Self>, ip: IpAddr, limit: Option<NonZeroU32>) -> Option<Permit> {
        // One atomic step, never counted past the cap: workers accepting at the same moment
        // cannot together go over it.
        let reserved = self.open.fetch_update(AcqRel, Acquire, |open| {
            (open < self.max_open).then_some(open + 1)
        });
        if reserved.is_err() {
            self.refused_over_total.fetch_add(1, Relaxed);
            return None;
        }
        let client = match limit {
            Some(limit) => {
                let key = ClientKey::of(ip);
                let mut by_client = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
                let open = by_client.entry(key).or_insert(0);
                if *open >= limit.get() {
                    // Never 0 here: a new entry gets its first connection below.
                    self.refused.fetch_add(1, Relaxed);
                    self.open.fetch_sub(1, AcqRel);
                    return None;
                }
                *open += 1;
                Some(key)
            }
            None => None,
        };
        Some(Permit {
            owner: Arc::clone(self),
            client,
        })
    }

    /// Client connections open now.
    pub fn open_count(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Connections refused so far for being over the per-client cap.
    pub fn refused_count(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Connections refused so far because `GATEWAY_MAX_CONNECTIONS` were open.
    pub fn refused_over_total(&self) -> u64 {
        self.refused_over_total.load(Relaxed)
    }

    /// Clients with a capped connection open (the size of the table).
    pub fn clients(&self) -> usize {
        self.by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.owner.open.fetch_sub(1, AcqRel);
        let Some(key) = self.client else {
            return;
        };
        let mut by_client = self
            .owner
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(open) = by_client.get_mut(&key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_client.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn limit(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[test]
    fn a_client_gets_up_to_its_limit_and_its_places_back() {
        let connections = Arc::new(ClientConnections::default());
        let first = connections.open(ip("203.0.113.7"), limit(2));
        let second = connections.open(ip("203.0.113.7"), limit(2));
        assert!(first.is_some() && second.is_some());
        assert!(connections.open(ip("203.0.113.7"), limit(2)).is_none());
        assert!(connections.open(ip("203.0.113.8"), limit(2)).is_some());
        assert_eq!(connections.refused_count(), 1);
        drop(first);
        assert!(connections.open(ip("203.0.113.7"), limit(2)).is_some());
    }

    #[test]
    fn the_table_holds_only_clients_with_connections_open() {
        let connections = Arc::new(ClientConnections::default());
        for n in 0..1000u32 {
            let permit = connections.open(IpAddr::V4(n.into()), limit(1));
            assert!(permit.is_some());
        }
        assert_eq!(connections.clients(), 0);
        assert_eq!(connections.open_count(), 0);
        let held = connections.open(ip("198.51.100.1"), limit(1));
        assert_eq!((connections.clients(), connections.open_count()), (1, 1));
        drop(held);
        assert_eq!(connections.clients(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let connections = Arc::new(ClientConnections::default());
        let _one = connections.open(ip("2001:db8:1:2::1"), limit(1));
        assert!(
            connections
                .open(ip("2001:db8:1:2:ffff::9"), limit(1))
                .is_none()
        );
        assert!(connections.open(ip("2001:db8:1:3::1"), limit(1)).is_some());
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
    }

    #[test]
    fn no_more_than_max_open_from_all_clients_together() {
        let connections = Arc::new(ClientConnections::new(3));
        let mut held: Vec<_> = (1..=3u32)
            .map(|n| connections.open(IpAddr::V4(n.into()), limit(10)))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(connections.open(ip("192.0.2.9"), None).is_none());
        assert!(connections.open(ip("192.0.2.9"), limit(10)).is_none());
        assert_eq!(connections.refused_over_total(), 2);
        assert_eq!(
            (connections.open_count(), connections.refused_count()),
            (3, 0)
        );
        held.pop();
        assert!(connections.open(ip("192.0.2.9"), None).is_some());
        // Refused by its client's cap: its reserved place is given back.
        let per_client = Arc::new(ClientConnections::new(2));
        let _one = per_client.open(ip("192.0.2.1"), limit(1));
        assert!(per_client.open(ip("192.0.2.1"), limit(1)).is_none());
        assert_eq!(per_client.open_count(), 1);
        assert!(per_client.open(ip("192.0.2.2"), limit(1)).is_some());
    }

    #[test]
    fn no_limit_counts_but_never_refuses() {
        let connections = Arc::new(ClientConnections::default());
        let permits: Vec<_> = (0..10)
            .map(|_| connections.open(ip("192.0.2.1"), None))
            .collect();
        assert!(permits.iter().all(Option::is_some));
        assert_eq!((connections.open_count(), connections.clients()), (10, 0));
    }
}
