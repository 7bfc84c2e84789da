//! The addresses of one upstream and picking one per request: a [`Pool`] per upstream and
//! generation, resolving its targets' host names (again every `resolve_interval`, see
//! [`super::health`]) and balancing over the addresses; and the [`Registry`] that keeps each
//! address's [`Endpoint`] across generations, so a reload does not forget that an address is
//! down or busy, nor its connections.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
};

use arc_swap::ArcSwap;
use rand::Rng;

use super::endpoint::Endpoint;
use crate::{
    capacity::Cap,
    routes::{Balance, Target, Upstream},
    tls::upstream::UpstreamTls,
};

/// Endpoint state shared across reloads: the same (target, address) is the same endpoint.
#[derive(Debug)]
pub struct Registry {
    /// Workers serving requests; each has a slot per endpoint.
    workers: usize,
    endpoints: Mutex<HashMap<(String, SocketAddr), Weak<Endpoint>>>,
    /// The counts of the `max_in_flight` caps, by what they cap (`route /api`, `upstream
    /// reader`): see [`Registry::in_flight_count`].
    in_flight: Mutex<HashMap<String, Weak<AtomicUsize>>>,
}

impl Registry {
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            endpoints: Mutex::default(),
            in_flight: Mutex::default(),
        }
    }

    /// The count of requests in flight on `capped` (`route /api`, `upstream reader`), the
    /// same for every generation that caps it. A reload keeps counting the requests still in
    /// flight under the previous file against the new `max_in_flight` (which may differ): the
    /// cap holds through a reload in the middle of an overload, instead of letting another
    /// `max_in_flight` requests through each time the file changes. A route or upstream
    /// capped in no generation any more is forgotten (its count was 0 or about to be).
    pub fn in_flight_count(&self, capped: String) -> Arc<AtomicUsize> {
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = counts.get(&capped).and_then(Weak::upgrade) {
            return existing;
        }
        counts.retain(|_, count| count.strong_count() > 0);
        let count = Arc::default();
        counts.insert(capped, Arc::downgrade(&count));
        count
    }

    /// The endpoint of `target` at `addr`, secured with `tls` for an `https://` target. An
    /// endpoint is the same across reloads as long as its target, address and TLS settings are.
    fn endpoint(
        &self,
        target: &Target,
        addr: SocketAddr,
        tls: Option<&Arc<UpstreamTls>>,
    ) -> Arc<Endpoint> {
        let secured = tls.filter(|_| target.https).and_then(|tls| {
            match tls.server_name(&target.host) {
                Ok(name) => Some((Arc::clone(tls), name)),
                Err(err) => {
                    tracing::warn!(target = target.url(), error = %err, "cannot verify this target");
                    None
                }
            }
        });
        let identity = match &secured {
            Some((tls, name)) => format!("{} {} {}", target.url(), tls.roots, name.to_str()),
            None => target.url().to_owned(),
        };
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let key = (identity, addr);
        if let Some(existing) = endpoints.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        // Forget endpoints no generation uses any more.
        endpoints.retain(|_, endpoint| endpoint.strong_count() > 0);
        let endpoint = Arc::new(Endpoint::new(target, addr, self.workers, secured));
        endpoints.insert(key, Arc::downgrade(&endpoint));
        endpoint
    }
}

/// One upstream of one routing-table generation.
#[derive(Debug)]
pub struct Pool {
    pub upstream: Arc<Upstream>,
    /// The upstream's `max_in_flight`, counted across generations (see
    /// [`Registry::in_flight_count`]).
    pub cap: Option<Cap>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    cursor: AtomicUsize,
}

impl Pool {
    /// Resolves every target now (an unresolvable host contributes no address until it
    /// resolves).
    pub async fn new(upstream: Arc<Upstream>, registry: &Registry) -> Self {
        let cap = upstream.max_in_flight.map(|max| {
            Cap::counting(
                max,
                registry.in_flight_count(format!("upstream {}", upstream.name)),
            )
        });
        let pool = Self {
            upstream,
            cap,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            cursor: AtomicUsize::new(0),
        };
        pool.resolve(registry).await;
        pool
    }

    /// Whether some target is a host name (and so needs resolving again now and then).
    pub fn has_host_names(&self) -> bool {
        self.upstream
            .targets
            .iter()
            .any(|target| target.host.parse::<IpAddr>().is_err())
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Whether a failed attempt could go to another address.
    pub fn has_alternatives(&self) -> bool {
        self.endpoints.load().len() > 1
    }

    /// Resolves the targets again; a target whose lookup fails keeps its previous addresses.
    pub async fn resolve(&self, registry: &Registry) {
        let previous = self.endpoints.load_full();
        let mut resolved = Vec::new();
        for target in &self.upstream.targets {
            match lookup(target).await {
                Ok(mut addrs) => {
                    addrs.sort();
                    addrs.dedup();
                    resolved.extend(
                        addrs.into_iter().map(|addr| {
                            registry.endpoint(target, addr, self.upstream.tls.as_ref())
                        }),
                    );
                }
                Err(err) => {
                    tracing::warn!(upstream = %self.upstream.name, target = target.url(), error = %err, "cannot resolve target");
                    resolved.extend(
                        previous
                            .iter()
                            .filter(|e| e.target == target.url())
                            .cloned(),
                    );
                }
            }
        }
        let changed = resolved.len() != previous.len()
            || resolved
                .iter()
                .zip(previous.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            let addresses: Vec<String> = resolved.iter().map(|e| e.addr.to_string()).collect();
            tracing::info!(upstream = %self.upstream.name, addresses = %addresses.join(", "), "upstream addresses");
            self.endpoints.store(Arc::new(resolved));
        }
    }

    /// Picks an endpoint for a request of `worker`, never one of `tried`. Available endpoints
    /// first; when none is available, any endpoint (a guess beats refusing every request while
    /// all are marked down). A weighted upstream picks a target first ([`Self::pick_weighted`]).
    pub fn pick(&self, worker: usize, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        if self.upstream.weighted {
            return self.pick_weighted(worker, tried, &endpoints);
        }
        // The common case, one address and a first attempt: nothing to choose.
        if let ([only], []) = (endpoints.as_slice(), tried) {
            return Some(Arc::clone(only));
        }
        let untried: Vec<&Arc<Endpoint>> = endpoints
            .iter()
            .filter(|e| !tried.iter().any(|t| Arc::ptr_eq(t, e)))
            .collect();
        self.choose(worker, &Self::preferring_available(untried))
    }

    /// The available ones of `candidates`, or all of them when none is.
    fn preferring_available(candidates: Vec<&Arc<Endpoint>>) -> Vec<&Arc<Endpoint>> {
        if candidates.iter().any(|e| e.is_available()) {
            candidates
                .into_iter()
                .filter(|e| e.is_available())
                .collect()
        } else {
            candidates
        }
    }

    /// For an upstream with weights: a target by weight among those with an untried address
    /// (those with an available one first), then one of its addresses by `balance`. A target
    /// of weight 0 gets no new request, even as a retry: it is being drained.
    fn pick_weighted(
        &self,
        worker: usize,
        tried: &[Arc<Endpoint>],
        endpoints: &[Arc<Endpoint>],
    ) -> Option<Arc<Endpoint>> {
        let groups: Vec<(u32, Vec<&Arc<Endpoint>>)> = self
            .upstream
            .targets
            .iter()
            .filter(|target| target.weight > 0)
            .map(|target| {
                let addresses = endpoints
                    .iter()
                    .filter(|e| {
                        e.target == target.url() && !tried.iter().any(|t| Arc::ptr_eq(t, e))
                    })
                    .collect();
                (target.weight, addresses)
            })
            .filter(|(_, addresses): &(u32, Vec<&Arc<Endpoint>>)| !addresses.is_empty())
            .collect();
        let serving = |(_, addresses): &&(u32, Vec<&Arc<Endpoint>>)| {
            addresses.iter().any(|e| e.is_available())
        };
        let eligible: Vec<&(u32, Vec<&Arc<Endpoint>>)> = if groups.iter().any(|g| serving(&g)) {
            groups.iter().filter(serving).collect()
        } else {
            groups.iter().collect()
        };
        let total: u64 = eligible.iter().map(|(weight, _)| u64::from(*weight)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rand::rng().random_range(0..total);
        let (_, addresses) = eligible.into_iter().find(|(weight, _)| {
            let weight = u64::from(*weight);
            if ticket < weight {
                return true;
            }
            ticket -= weight;
            false
        })?;
        self.choose(worker, &Self::preferring_available(addresses.clone()))
    }

    /// One of `candidates` by the upstream's `balance`.
    fn choose(&self, worker: usize, candidates: &[&Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        match candidates.len() {
            0 => None,
            1 => Some(Arc::clone(candidates[0])),
            n => Some(Arc::clone(match self.upstream.balance {
                Balance::RoundRobin => candidates[self.cursor.fetch_add(1, Relaxed) % n],
                Balance::PowerOfTwoChoices => {
                    let mut rng = rand::rng();
                    let first = rng.random_range(0..n);
                    let second = (first + rng.random_range(1..n)) % n;
                    let (a, b) = (candidates[first], candidates[second]);
                    if b.in_flight_on(worker) < a.in_flight_on(worker) {
                        b
                    } else {
                        a
                    }
                }
            })),
        }
    }
}

async fn lookup(target: &Target) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .collect();
    if addrs.is_empty() {
        return Err(std::io::Error::other("no addresses"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{routes::Eject, upstream::endpoint::InFlight};

    fn upstream(targets: &[&str], balance: Balance) -> Arc<Upstream> {
        Arc::new(Upstream {
            name: "test".into(),
            targets: targets
                .iter()
                .map(|t| Target::parse(t).expect("target"))
                .collect(),
            balance,
            health_check: None,
            eject: Eject::default(),
            weighted: false,
            tls: None,
            host: None,
            max_in_flight: None,
        })
    }

    /// A pool over two local addresses (ports 1 and 2), with its own registry.
    async fn pair(balance: Balance) -> (Registry, Pool) {
        let registry = Registry::new(1);
        let targets = ["http://127.0.0.1:1", "http://127.0.0.1:2"];
        let pool = Pool::new(upstream(&targets, balance), &registry).await;
        (registry, pool)
    }

    #[tokio::test]
    async fn round_robin_takes_turns_and_skips_tried_endpoints() {
        let (_registry, pool) = pair(Balance::RoundRobin).await;
        let ports: Vec<u16> = (0..4)
            .map(|_| pool.pick(0, &[]).expect("one").addr.port())
            .collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        let first = pool.pick(0, &[]).expect("one");
        let other = pool.pick(0, &[Arc::clone(&first)]).expect("another");
        assert_ne!(first.addr, other.addr);
        assert!(
            pool.pick(0, &[first, other]).is_none(),
            "nothing left to try"
        );
    }

    #[tokio::test]
    async fn power_of_two_choices_prefers_the_less_busy() {
        let (_registry, pool) = pair(Balance::PowerOfTwoChoices).await;
        let busy = pool.endpoints()[0].clone();
        let _guards: Vec<InFlight> = (0..5).map(|_| busy.begin(0)).collect();
        for _ in 0..20 {
            assert_eq!(pool.pick(0, &[]).expect("one").addr.port(), 2);
        }
    }

    #[tokio::test]
    async fn ejected_endpoints_are_skipped_until_all_are_down() {
        let (_registry, pool) = pair(Balance::RoundRobin).await;
        let eject = Eject::default();
        let down = pool.endpoints()[0].clone();
        assert!(down.connect_failed(&eject), "one failure ejects by default");
        for _ in 0..4 {
            assert_eq!(pool.pick(0, &[]).expect("one").addr.port(), 2);
        }
        pool.endpoints()[1].connect_failed(&eject);
        assert!(pool.pick(0, &[]).is_some(), "all down: still try something");
        assert!(
            down.checked(true) || down.is_available(),
            "a passing check lifts the ejection"
        );
        assert!(down.is_available());
    }

    #[tokio::test]
    async fn state_survives_a_new_generation() {
        let registry = Registry::new(1);
        let targets = ["http://127.0.0.1:1"];
        let old = Pool::new(upstream(&targets, Balance::RoundRobin), &registry).await;
        let endpoint = old.endpoints()[0].clone();
        endpoint.connect_failed(&Eject::default());
        let new = Pool::new(upstream(&targets, Balance::RoundRobin), &registry).await;
        assert!(Arc::ptr_eq(&endpoint, &new.endpoints()[0]));
        assert!(
            !new.endpoints()[0].is_available(),
            "still ejected after a reload"
        );
    }

    #[tokio::test]
    async fn host_names_resolve_to_every_address() {
        let registry = Registry::new(1);
        let pool = Pool::new(
            upstream(&["http://localhost:9"], Balance::RoundRobin),
            &registry,
        )
        .await;
        assert!(pool.has_host_names());
        assert!(!pool.endpoints().is_empty(), "localhost resolves");
        assert!(
            pool.endpoints()
                .iter()
                .all(|e| e.addr.port() == 9 && e.host == "localhost")
        );
    }
}
