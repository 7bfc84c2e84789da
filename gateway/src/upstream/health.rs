//! Background work on an upstream's addresses, one task each for as long as their routing
//! generation lives: resolving host names again (replicas come and go behind one DNS name), and
//! active health checks.

use std::{sync::Weak, time::Duration};

use http::Request;

use super::{Pool, Registry};
use crate::{forward::body, generation::UpstreamClient};

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

/// Checks every address of `pool` each interval until the pool is gone, over `client` (the
/// generation's control client: checks never borrow a worker's connections).
pub async fn check_every(client: UpstreamClient, pool: Weak<Pool>) {
    loop {
        let Some(pool) = pool.upgrade() else { break };
        let Some(check) = pool.upstream.health_check.clone() else {
            break;
        };
        for endpoint in pool.endpoints().iter() {
            let request = Request::get(format!("http://{}{}", endpoint.addr, check.path))
                .header(http::header::HOST, &endpoint.host)
                .header(http::header::USER_AGENT, "gateway-health-check")
                .body(body::empty());
            let Ok(request) = request else { continue };
            let healthy = matches!(
                tokio::time::timeout(check.timeout, client.request(request)).await,
                Ok(Ok(response)) if response.status().is_success()
            );
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
