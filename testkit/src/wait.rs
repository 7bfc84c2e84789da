//! Waiting for a condition, never for a fixed time.
//!
//! A test that needs "the reload happened" waits on the reload count, one that needs "the
//! request is in flight" waits until the upstream holds it: a sleep standing in for either is
//! too short on a loaded machine and needlessly long on an idle one. Each wait has a timeout
//! that fails the test loudly, naming what did not happen.
//!
//! Synchronous code (starting processes) waits with [`stack::net::wait_until`], the same loop
//! without an executor.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often a condition is checked.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// Checks `probe` every [`INTERVAL`] until it returns `Some`; that value, or `None` once
/// `timeout` has passed.
pub async fn value<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Checks `condition` every [`INTERVAL`] until it holds or `timeout` passes; whether it held.
pub async fn poll<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    value(timeout, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
    .is_some()
}

/// Waits until `condition` holds; returns how long that took. Panics with `what` (the
/// condition, in words) when it does not within `timeout`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    assert!(
        poll(timeout, condition).await,
        "waited {timeout:?} for {what}, in vain"
    );
    started.elapsed()
}

/// Waits until `probe` returns a value, and returns it. Panics with `what` when it does not
/// within `timeout`.
pub async fn for_value<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    value(timeout, probe)
        .await
        .unwrap_or_else(|| panic!("waited {timeout:?} for {what}, in vain"))
}
