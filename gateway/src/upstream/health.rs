//! Background work on an upstream's addresses, one task each for as long as their routing
//! generation lives: resolving host names again (replicas come and go behind one DNS name), and
//! active health checks.

use std::{sync::Weak, time::Duration};

use http::Request;

use super::{
    connection::Connection,
    endpoint::Endpoint,
    pool::{Pool, Registry},
};
use crate::{http_ext::body, routes::HealthCheck};

/// Resolves `pool`'s targets every `interval` until the pool is gone.
pub async fn resolve_every(
    interval: Duration,
    pool: Weak<Pool>,
    registry: std::sync::Arc<Registry>,
) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(pool) = pool.upgrade() else { break };
        pool.resolve(&registry).await;
    }
}

/// Checks every address of `pool` each interval until the pool is gone, each check on a new
/// connection (it runs on the control runtime, and never borrows a worker's connections).
pub async fn check_every(connect_timeout: Duration, pool: Weak<Pool>) {
    loop {
        let Some(pool) = pool.upgrade() else { break };
        let Some(check) = pool.upstream.health_check.clone() else {
            break;
        };
        for endpoint in pool.endpoints().iter() {
            let healthy =
                tokio::time::timeout(check.timeout, passes(endpoint, &check, connect_timeout))
                    .await
                    .unwrap_or(false);
            if endpoint.checked(healthy) {
                if healthy {
                    tracing::info!(upstream = %pool.upstream.name, address = %endpoint.addr, "health check passes again");
                } else {
                    tracing::warn!(upstream = %pool.upstream.name, address = %endpoint.addr, path = %check.path, "health check failed; address taken out");
                }
            }
        }
        drop(pool);
        tokio::time::sleep(check.interval).await;
    }
}

/// Whether `endpoint` answers `GET <check.path>` with a 2xx.
async fn passes(endpoint: &Endpoint, check: &HealthCheck, connect_timeout: Duration) -> bool {
    let Ok(mut connection) = Connection::open(endpoint.dial(), connect_timeout).await else {
        return false;
    };
    let request = Request::get(check.path.as_str())
        .header(http::header::HOST, &endpoint.host)
        .header(http::header::USER_AGENT, "gateway-health-check")
        .body(body::empty());
    let Ok(request) = request else { return false };
    matches!(connection.send(request).await, Ok(response) if response.status().is_success())
}
