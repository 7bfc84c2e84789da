//! Whether a request may be sent again: the one policy, asked by everything that sends.
//!
//! A request goes out again in two cases, and in no other:
//!
//! - **To another address**, after an attempt failed ([`crate::forward::send`], at most
//!   [`MAX_ATTEMPTS`] addresses): when that cannot do harm, that is when nothing reached the
//!   upstream (the connection was refused or timed out), or when the route and the method are
//!   idempotent ([`after_failure`]); only when there is another address and the request is not a
//!   protocol switch ([`may_retry`]); and only with its body unread
//!   ([`crate::forward::resend`]). A timeout is never retried: the upstream may still be working
//!   on it.
//! - **On a new connection to the same address**, when the pooled connection it went out on
//!   failed under it ([`super::endpoint::Endpoint::send`], [`after_connection_failure`]): as it
//!   is when the connection never wrote it, and once from a copy of its head when an idempotent
//!   request without a body was written and met by a close instead of an answer (the keep-alive
//!   race, [`replay_copy`]).

use std::time::Duration;

use http::{Method, Request};
use http_body::Body as _;
use hyper::client::conn::TrySendError;

use super::connection::SendError;
use crate::http_ext::body::{self, Body};

/// Most addresses one request is tried on.
pub const MAX_ATTEMPTS: usize = 3;

/// How long a pooled connection must have been idle before an upstream's keep-alive timeout
/// can close it under a request: no server closes idle connections much sooner than a second
/// (actix-web and Node after 5 s, nginx after 75 s).
pub const KEEP_ALIVE_RACE_AFTER: Duration = Duration::from_secs(1);

/// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a failed attempt may be followed by one on another address at all: there is another
/// address (`alternatives`), and the request is not a protocol switch (an upgrade's body is the
/// rest of the connection). Only then are the request's headers and body kept for a retry.
pub fn may_retry(alternatives: bool, upgrade: bool) -> bool {
    alternatives && !upgrade
}

/// Whether an attempt that failed with `err` may be followed by one on another address (when
/// [`may_retry`] says there can be one, and the body is still unread): when nothing reached the
/// upstream, or when the route is `idempotent` and so is `method`.
pub fn after_failure(err: &SendError, idempotent_route: bool, method: &Method) -> bool {
    err.is_unsent() || (idempotent_route && is_idempotent(method))
}

/// A copy of `request`'s line and headers, to send it once more should the pooled connection it
/// goes out on close under it instead of answering (see [`after_connection_failure`]): only for
/// a request not replayed yet, on a route that is `idempotent`, and idempotent itself without a
/// body.
///
/// The copy to send again is only made where the race can happen: on a connection idle long
/// enough for a keep-alive timeout to fire (`idle`: how long the connection had been idle, `None`
/// for a new one). Under load connections are reused at once, and no request pays for copying
/// its head.
pub fn replay_copy(
    request: &Request<Body>,
    idle: Option<Duration>,
    replayed: bool,
    idempotent_route: bool,
) -> Option<Request<()>> {
    let racy = idle.is_some_and(|idle| idle >= KEEP_ALIVE_RACE_AFTER);
    (racy && !replayed && idempotent_route && is_replayable(request)).then(|| head(request))
}

/// What becomes of a request after the connection it went out on failed.
#[derive(Debug)]
pub enum Again {
    /// A pooled connection that turned out closed: the request was not written, and goes out
    /// as it is.
    Unsent(Request<Body>),
    /// The upstream closed the connection under an idempotent request instead of answering:
    /// it goes out again from its copy.
    Replay(Request<Body>),
    /// Not again: the request failed.
    No(hyper::Error),
}

/// Whether a request whose connection failed with `err` goes out again on a new connection
/// to the same address: as it is when the connection was a pooled one (`reused`) and never
/// wrote it; from `replay`, its copy (see [`replay_copy`]), when the upstream closed the
/// connection instead of answering.
pub fn after_connection_failure(
    mut err: TrySendError<Request<Body>>,
    reused: bool,
    replay: Option<Request<()>>,
) -> Again {
    match (err.take_message(), replay) {
        (Some(unsent), _) if reused => Again::Unsent(unsent),
        (None, Some(head)) if closed_unanswered(err.error()) => {
            Again::Replay(head.map(|()| body::empty()))
        }
        _ => Again::No(err.into_error()),
    }
}

/// Whether `request` can be sent again whole after it was written: idempotent, without a body.
fn is_replayable(request: &Request<Body>) -> bool {
    is_idempotent(request.method()) && request.body().is_end_stream()
}

/// The request line and headers of `request`, to send it again.
fn head(request: &Request<Body>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head
}

/// Whether the upstream closed (or reset) the connection instead of answering.
fn closed_unanswered(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() {
        return true;
    }
    let mut cause = std::error::Error::source(err);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        cause = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Request<Body> {
        Request::get("/").body(body::empty()).expect("request")
    }

    #[test]
    fn only_harmless_failures_go_to_another_address() {
        let refused = SendError::Connect(std::io::ErrorKind::ConnectionRefused.into());
        assert!(
            after_failure(&refused, false, &Method::POST),
            "nothing was sent"
        );
        assert!(may_retry(true, false));
        assert!(!may_retry(false, false), "no other address");
        assert!(
            !may_retry(true, true),
            "a protocol switch is never sent again"
        );
    }

    #[test]
    fn a_head_is_copied_only_where_the_keep_alive_race_can_happen() {
        let idle = Some(KEEP_ALIVE_RACE_AFTER);
        assert!(replay_copy(&get(), idle, false, true).is_some());
        assert!(
            replay_copy(&get(), Some(Duration::ZERO), false, true).is_none(),
            "just used"
        );
        assert!(
            replay_copy(&get(), None, false, true).is_none(),
            "a new connection"
        );
        assert!(
            replay_copy(&get(), idle, true, true).is_none(),
            "replayed once already"
        );
        assert!(
            replay_copy(&get(), idle, false, false).is_none(),
            "the route says no"
        );
        let post = Request::post("/").body(body::empty()).expect("request");
        assert!(
            replay_copy(&post, idle, false, true).is_none(),
            "not idempotent"
        );
        let with_body = Request::put("/").body(body::full("x")).expect("request");
        assert!(
            replay_copy(&with_body, idle, false, true).is_none(),
            "a body"
        );
    }
}
