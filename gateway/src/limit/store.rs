//! The buckets of a keyed limit, kept in a map that never holds more than [`CappedStore::max`]
//! keys, however many keys arrive.
//!
//! governor keeps a bucket per key and forgets a key only when asked (`retain_recent`, which
//! drops the buckets that are full again, indistinguishable from new ones). Between two such
//! clean-ups, a client rotating addresses (a /64 is enough, or a botnet) adds a key per request.
//! So this store, governor's own `DashMap` store underneath, takes new keys only while it holds
//! fewer than `max`; past that every new key shares one overflow bucket (with the limit's own
//! rate and burst) until a clean-up makes room.
//!
//! That fails safe both ways: a key already in the map is always measured against its own
//! bucket, so a flood of new keys cannot reset or skip anybody's bucket (clearing the map would
//! hand every client a full burst again); and a new key gets at most what a fresh bucket of its
//! own would give it, so no key is let through that the limit would have refused with unbounded
//! memory. What the flood costs is that clients new during it share one bucket, until the
//! flood's keys are full again and cleaned up.

use std::{hash::Hash, sync::Mutex};

use governor::{
    nanos::Nanos,
    state::{
        InMemoryState, NotKeyed, StateStore, keyed::DashMapStateStore,
        keyed::ShrinkableKeyedStateStore,
    },
};

/// A keyed state store of at most `max` keys plus one overflow bucket.
#[derive(Debug)]
pub struct CappedStore<K: Hash + Eq> {
    map: DashMapStateStore<K>,
    /// The bucket every new key shares while the map is full.
    overflow: InMemoryState,
    max: usize,
    /// Held while a new key is counted and inserted, so that two workers cannot both take the
    /// last place. Keys already present never take it.
    inserting: Mutex<()>,
}

impl<K: Hash + Eq + Clone> CappedStore<K> {
    pub fn new(max: usize) -> Self {
        Self {
            map: DashMapStateStore::default(),
            overflow: InMemoryState::default(),
            max,
            inserting: Mutex::new(()),
        }
    }

    /// The most keys it holds.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(bucket) = self.map.get(key) {
            return bucket.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let _inserting = self.inserting.lock().unwrap_or_else(|e| e.into_inner());
        // Counted under the lock: only this path adds keys, and a clean-up only removes them.
        if self.map.len() >= self.max {
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        self.map.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        // The overflow bucket is one number: it stays, full or not.
        ShrinkableKeyedStateStore::retain_recent(&self.map, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.map);
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
