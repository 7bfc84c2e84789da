//! Between admission and sending: a route's rate limit (`limit = "<name>"`). A request over it
//! is answered `429 {"error":"rate limited"}` with `Retry-After`, counted in
//! `gateway_rate_limited_total{route,limit}`, and never reaches the upstream (nor, for a limit
//! kept per client or per route, the door check).
//!
//! A limit kept per client or per route is taken before the door check, so that a flood costs
//! the check's upstream nothing; one kept per user only after it, since the user is what the
//! check vouched for (its `X-User-Id`, set on the request by then; whatever the client sent
//! under that name was removed first).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

use crate::{
    error::GatewayError,
    generation::Generation,
    limit::retry_after_secs,
    metrics::Metrics,
    routes::{LimitKey, Route},
};

/// The header a door check names the user in.
static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");

/// When a route's limit is taken: before the door check or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeCheck,
    AfterCheck,
}

/// Takes a request of `client` (with `headers` as they go upstream) from `route`'s limit, when
/// it has one that is taken at `stage`.
pub fn take(
    generation: &Generation,
    metrics: &Metrics,
    route: &Route,
    stage: Stage,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<(), GatewayError> {
    let Some(limit) = &route.limit else {
        return Ok(());
    };
    let by_user = limit.key == LimitKey::User;
    if by_user != (stage == Stage::AfterCheck) {
        return Ok(());
    }
    let Some(limiter) = generation.limiter(&limit.name) else {
        return Ok(());
    };
    let user = if by_user {
        headers.get(&X_USER_ID)
    } else {
        None
    };
    let key = limiter.key(client, user);
    limiter.check(&key).map_err(|wait| {
        metrics.rate_limited(&route.path, &limit.name);
        GatewayError::RateLimited {
            limit: limit.name.clone(),
            retry_after: retry_after_secs(wait),
        }
    })
}
