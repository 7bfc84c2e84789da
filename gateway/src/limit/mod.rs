//! The live side of `[limits.<name>]`: a [`Limiter`] holds the buckets of one limit, each a
//! GCRA token bucket (governor's), keyed by client, user or nothing (one for the route).
//!
//! governor rather than buckets of our own: its GCRA keeps one 64-bit number per key, updated
//! with a compare-and-swap (no lock on the hot path, no timer per bucket), it is exact about
//! bursts and tells when a refused request would pass (Retry-After), and its keyed state can
//! forget the keys that are full again (`retain_recent`). Memory stays bounded two ways: a
//! background task forgets full buckets every [`PRUNE_EVERY`] ([`Limiter::prune`]), and a limit
//! never holds more than [`MAX_KEYS`] keys ([`store`] says what happens beyond: new keys share
//! one bucket, existing keys keep theirs).
//!
//! Limiters outlive generations: a reload whose `[limits.<name>]` is as it was keeps that
//! limit's buckets ([`Limiters::carried_over`]), so a reload cannot hand an attacker a fresh
//! burst; a changed block starts with empty buckets.

pub mod store;

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
};
use http::HeaderValue;

use crate::{
    listen::clients::ClientKey,
    routes::{LimitKey, RateLimit, RouteTable},
};
use store::CappedStore;

/// The most keys one limit holds: at about 100 bytes a key, some 10 MB. Beyond it, new keys
/// share one bucket until the clean-up makes room (see [`store`]).
pub const MAX_KEYS: usize = 100_000;

/// How often the buckets that are full again are forgotten.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Whose bucket a request is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `key = "route"`: everyone's.
    Route,
    /// The client's address (an IPv6 client by its /64, as for its connections): an address
    /// rotated inside one's own /64 is still the same client.
    Client(ClientKey),
    /// The user the door check vouched for, by a hash of their `X-User-Id` (a key of eight
    /// bytes whatever the id's length; seeded per limiter, so ids cannot be picked to collide).
    User(u64),
}

type Buckets = RateLimiter<Key, CappedStore<Key>, DefaultClock, NoOpMiddleware>;

/// The buckets of one limit.
#[derive(Debug)]
pub struct Limiter {
    /// Its settings as the file gave them.
    pub spec: Arc<RateLimit>,
    buckets: Buckets,
    user_ids: RandomState,
    /// Whether its clean-up task runs (started once, by the first generation that holds it).
    pruning: AtomicBool,
}

impl Limiter {
    pub fn new(spec: Arc<RateLimit>) -> Self {
        Self::with_max_keys(spec, MAX_KEYS)
    }

    /// A limiter that holds at most `max_keys` keys.
    pub fn with_max_keys(spec: Arc<RateLimit>, max_keys: usize) -> Self {
        // The parser refuses a rate faster than one request per nanosecond.
        let quota = Quota::with_period(spec.rate.period())
            .unwrap_or_else(|| Quota::per_second(spec.rate.count))
            .allow_burst(spec.burst);
        let buckets = RateLimiter::new(quota, CappedStore::new(max_keys), DefaultClock::default());
        Self {
            spec,
            buckets,
            user_ids: RandomState::new(),
            pruning: AtomicBool::new(false),
        }
    }

    /// The bucket of a request from `client` (as `trusted_proxies` decided it), vouched for as
    /// `user` by a door check. A route kept per user whose check passed without an `X-User-Id`
    /// counts the request against its client instead.
    pub fn key(&self, client: IpAddr, user: Option<&HeaderValue>) -> Key {
        match (self.spec.key, user) {
            (LimitKey::Route, _) => Key::Route,
            (LimitKey::User, Some(id)) => Key::User(self.user_ids.hash_one(id.as_bytes())),
            (LimitKey::Client | LimitKey::User, _) => Key::Client(ClientKey::of(client)),
        }
    }

    /// Takes one request from `key`'s bucket; when it is empty, how long until one would pass.
    pub fn check(&self, key: &Key) -> Result<(), Duration> {
        self.buckets
            .check_key(key)
            .map_err(|refused| refused.wait_time_from(self.buckets.clock().now()))
    }

    /// Keys held now (at most the cap).
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets every bucket that is full again (it would be made anew the same), and gives the
    /// memory back.
    pub fn prune(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

/// A generation's limiters, by name.
#[derive(Debug, Default)]
pub struct Limiters {
    by_name: BTreeMap<String, Arc<Limiter>>,
}

impl Limiters {
    /// The limiters of `table`: the one of `previous` (the generation before) for each limit
    /// whose settings did not change, a new one for each other.
    pub fn carried_over(table: &RouteTable, previous: Option<&Limiters>) -> Self {
        let by_name = table
            .limits
            .iter()
            .map(|(name, spec)| {
                let kept = previous
                    .and_then(|previous| previous.by_name.get(name))
                    .filter(|kept| kept.spec == *spec);
                let limiter = match kept {
                    Some(kept) => Arc::clone(kept),
                    None => Arc::new(Limiter::new(Arc::clone(spec))),
                };
                (name.clone(), limiter)
            })
            .collect();
        Self { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Limiter>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Limiter>> {
        self.by_name.values()
    }

    /// Starts the clean-up of each limiter that has none yet, on the current runtime; it ends
    /// once the limiter is gone (no generation holds it any more).
    pub fn spawn_pruning(&self) {
        for limiter in self.by_name.values() {
            if !limiter.pruning.swap(true, Ordering::Relaxed) {
                tokio::spawn(prune_every(Arc::downgrade(limiter)));
            }
        }
    }
}

async fn prune_every(limiter: Weak<Limiter>) {
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        limiter.prune();
    }
}

/// What `Retry-After` says for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, num::NonZeroU32};

    use crate::routes::Rate;

    use super::*;

    fn spec(count: u32, per: Duration, burst: u32, key: LimitKey) -> Arc<RateLimit> {
        Arc::new(RateLimit {
            name: "test".to_owned(),
            rate: Rate {
                count: NonZeroU32::new(count).expect("more than zero"),
                per,
            },
            burst: NonZeroU32::new(burst).expect("more than zero"),
            key,
        })
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn client(n: u32) -> Key {
        Key::Client(ClientKey::of(IpAddr::V4(Ipv4Addr::from_bits(n))))
    }

    #[test]
    fn a_burst_then_a_wait_until_the_next_request() {
        let limiter = Limiter::new(spec(2, Duration::from_secs(1), 3, LimitKey::Client));
        for _ in 0..3 {
            assert_eq!(limiter.check(&client(1)), Ok(()));
        }
        let wait = limiter.check(&client(1)).expect_err("the burst is spent");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(limiter.check(&client(2)), Ok(()), "another client's bucket");
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(59)), 59);
        assert_eq!(retry_after_secs(Duration::from_millis(59_001)), 60);
    }

    #[test]
    fn keys_are_the_client_its_ipv6_network_the_user_or_the_route() {
        let by_client = Limiter::new(spec(1, HOUR, 1, LimitKey::Client));
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let id = HeaderValue::from_static("alice");
        assert_eq!(
            by_client.key(ip("2001:db8::1"), None),
            by_client.key(ip("2001:db8::ffff"), Some(&id)),
            "one /64, one client"
        );
        assert_ne!(
            by_client.key(ip("2001:db8:0:1::1"), None),
            by_client.key(ip("2001:db8::1"), None)
        );
        let by_user = Limiter::new(spec(1, HOUR, 1, LimitKey::User));
        let bob = HeaderValue::from_static("bob");
        assert_eq!(
            by_user.key(ip("192.0.2.1"), Some(&id)),
            by_user.key(ip("192.0.2.2"), Some(&id))
        );
        assert_ne!(
            by_user.key(ip("192.0.2.1"), Some(&id)),
            by_user.key(ip("192.0.2.1"), Some(&bob))
        );
        assert_eq!(
            by_user.key(ip("192.0.2.1"), None),
            by_client.key(ip("192.0.2.1"), None),
            "no user vouched for: the client"
        );
        let by_route = Limiter::new(spec(1, HOUR, 1, LimitKey::Route));
        assert_eq!(by_route.key(ip("192.0.2.1"), Some(&id)), Key::Route);
    }

    /// 200,000 addresses, one request each, into a limit of the real cap: it never holds more
    /// than the cap, the buckets it held are not reset by the flood, and the addresses beyond
    /// the cap share one bucket (the limit's own burst).
    #[test]
    fn a_flood_of_new_addresses_stays_under_the_cap_and_resets_nobody() {
        let limiter = Limiter::new(spec(1, HOUR, 2, LimitKey::Client));
        let attacker = client(u32::MAX);
        assert_eq!(limiter.check(&attacker), Ok(()));
        assert_eq!(limiter.check(&attacker), Ok(()));
        assert!(limiter.check(&attacker).is_err());
        let mut passed = 0;
        for n in 0..200_000 {
            if limiter.check(&client(n)).is_ok() {
                passed += 1;
            }
            assert!(limiter.keys() <= MAX_KEYS);
        }
        assert_eq!(limiter.keys(), MAX_KEYS);
        // One place was the attacker's: 99,999 new buckets, then the overflow bucket's burst of 2.
        assert_eq!(passed, MAX_KEYS - 1 + 2);
        assert!(
            limiter.check(&attacker).is_err(),
            "a flood does not give back a spent bucket"
        );
        // An address held before the cap keeps its own bucket (one request left of two)…
        assert_eq!(limiter.check(&client(7)), Ok(()));
        assert!(limiter.check(&client(7)).is_err());
        // …and one more new address shares the overflow bucket, spent by the flood.
        assert!(limiter.check(&client(300_000)).is_err());
        assert_eq!(limiter.keys(), MAX_KEYS);
    }

    #[test]
    fn full_buckets_are_forgotten_and_spent_ones_kept() {
        let limiter = Limiter::new(spec(1000, Duration::from_secs(1), 1, LimitKey::Client));
        let slow = Limiter::new(spec(1, HOUR, 1, LimitKey::Client));
        for n in 0..1000 {
            assert_eq!(limiter.check(&client(n)), Ok(()));
            assert_eq!(slow.check(&client(n)), Ok(()));
        }
        assert_eq!(limiter.keys(), 1000);
        // A millisecond refills a bucket of the fast limit.
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        slow.prune();
        assert_eq!(limiter.keys(), 0);
        assert_eq!(slow.keys(), 1000, "spent buckets are kept");
        assert!(slow.check(&client(3)).is_err());
    }

    #[test]
    fn a_reload_keeps_the_buckets_of_a_limit_that_did_not_change() {
        let table = |rate: &str| {
            let text = format!(
                "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n\
                 limit = \"a\"\n[limits.a]\nrate = \"{rate}\"\n[limits.b]\nrate = \"1/h\"\n"
            );
            crate::routes::parse(std::path::Path::new("routes.toml"), &text, |_| None)
                .expect("valid")
        };
        let first = Limiters::carried_over(&table("1/h"), None);
        let same = Limiters::carried_over(&table("1/h"), Some(&first));
        let changed = Limiters::carried_over(&table("2/h"), Some(&same));
        let kept = |a: &Limiters, b: &Limiters, name: &str| {
            Arc::ptr_eq(a.get(name).expect("a"), b.get(name).expect("b"))
        };
        assert!(kept(&first, &same, "a") && kept(&first, &same, "b"));
        assert!(!kept(&same, &changed, "a"), "a changed limit starts anew");
        assert!(kept(&same, &changed, "b"));
    }
}
