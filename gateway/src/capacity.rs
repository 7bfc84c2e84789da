//! Caps on requests in flight: `max_in_flight` of a route or of an upstream. A request takes a
//! [`Ticket`] of each cap on its way before anything is sent, and gives it back when it is
//! done, whichever way that happens (its response body read to its end or dropped, the client
//! gone, an error, a tunnel closed): the ticket is an RAII guard on a count shared by every
//! worker. With no ticket left the request is refused at once (`503 overloaded`), so an
//! overload is shed where it arrives instead of queueing without bound in front of a slow
//! upstream.
//!
//! A leaf: the routing table holds caps, the forwarding steps take tickets, the response body
//! carries them; it imports nothing of the gateway.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

/// A cap of `max` requests in flight, and the count it keeps.
#[derive(Debug, Clone)]
pub struct Cap {
    max: NonZeroU32,
    count: Arc<AtomicUsize>,
}

/// One request counted against a cap until dropped.
#[derive(Debug)]
pub struct Ticket(Arc<AtomicUsize>);

impl Cap {
    /// A cap of `max`, with a count of its own (see [`Cap::share`]).
    pub fn new(max: NonZeroU32) -> Self {
        Self::counting(max, Arc::default())
    }

    /// A cap of `max` keeping `count`, which other caps may keep too.
    pub fn counting(max: NonZeroU32, count: Arc<AtomicUsize>) -> Self {
        Self { max, count }
    }

    /// Counts with `count` from now on (the same route or upstream of an earlier routes file:
    /// its requests still in flight count against this cap's `max`).
    pub fn share(&mut self, count: Arc<AtomicUsize>) {
        self.count = count;
    }

    pub fn max(&self) -> NonZeroU32 {
        self.max
    }

    /// Requests counted now.
    pub fn in_flight(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// A ticket, unless `max` requests already hold one. Never counts past `max`, even for a
    /// moment, so a refusal never makes another request be refused.
    pub fn try_take(&self) -> Option<Ticket> {
        let max = self.max.get() as usize;
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Ticket(Arc::clone(&self.count)))
    }
}

impl serde::Serialize for Cap {
    /// As its `max`, the number the routes file gave.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.max.get())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The tickets one request holds: its route's and its upstream's, each when capped. Empty for
/// a request on a route and upstream without caps, which take none.
#[derive(Debug, Default)]
pub struct Tickets {
    pub route: Option<Ticket>,
    pub upstream: Option<Ticket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(max: u32) -> Cap {
        Cap::new(NonZeroU32::new(max).expect("above 0"))
    }

    #[test]
    fn up_to_max_tickets_and_each_one_back_when_dropped() {
        let cap = cap(2);
        let first = cap.try_take();
        let second = cap.try_take();
        assert!(first.is_some() && second.is_some());
        assert!(cap.try_take().is_none());
        assert_eq!(cap.in_flight(), 2, "a refusal counts nothing");
        drop(first);
        assert_eq!(cap.in_flight(), 1);
        let third = cap.try_take();
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(cap.in_flight(), 0);
    }

    #[test]
    fn a_shared_count_carries_requests_in_flight_to_a_new_max() {
        let old = cap(3);
        let held: Vec<_> = (0..3).filter_map(|_| old.try_take()).collect();
        let mut new = cap(2);
        new.share(Arc::clone(&old.count));
        assert!(new.try_take().is_none(), "3 in flight, the new max is 2");
        drop(held);
        assert!(new.try_take().is_some());
    }

    #[test]
    fn many_threads_never_hold_more_than_max() {
        let cap = cap(4);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(ticket) = cap.try_take() {
                            peak.fetch_max(cap.in_flight(), Ordering::Relaxed);
                            drop(ticket);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 4);
        assert_eq!(cap.in_flight(), 0);
    }
}
