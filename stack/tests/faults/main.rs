//! Fault injection: the real binaries and a real `redis-server` (started by each test on free
//! ports) under the faults a deployment meets: Redis crashing and coming back, Redis slow,
//! resetting or silent, addresses that swallow packets, slow clients, a flood on one route,
//! replicas killed under load, and a soak that watches memory. Each test asserts what a user sees (statuses, JSON bodies,
//! counts) and that nothing acknowledged is lost.
//!
//! The harness is the workspace's test kit ([`testkit`], reached here as `crate::helpers`), as
//! for the end-to-end suite; what only faults need is in [`fault_proxy`], [`netns`] and
//! [`support`]. `TEST_LOG=1` shows every process's log lines;
//! `SOAK_SECS=600 cargo test -p stack --test faults soak -- --nocapture` runs the soak for ten
//! minutes and prints its figures. `drill` (ignored: run it by hand, see its module docs) is the
//! failover drill on a Redis Cluster, every fault of a deployment in one run, with its figures.

use testkit as helpers;

mod fault_proxy;
mod load;
mod netns;
mod support;

mod blackhole;
mod drill;
mod kills;
mod overload;
mod redis_crash;
mod redis_slow;
mod slow_clients;
mod soak;
mod store_failover;
mod upgrade;
