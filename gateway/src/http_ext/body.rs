//! The body type of every request and response crossing the gateway, and the bodies the gateway
//! writes itself. A leaf: the listeners, the forwarding steps and the upstream connections all
//! use it, and it uses none of them.
//!
//! The bodies that wrap another for one purpose live with their users: the request body sent
//! again on a retry in [`crate::forward::resend`], the response body that drives its upstream
//! connection in [`crate::upstream::streamed`].

use bytes::Bytes;
use http_body_util::{BodyExt, combinators::BoxBody};

/// Errors inside streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response crossing the gateway.
pub type Body = BoxBody<Bytes, BoxError>;

/// The client's request body failed (malformed framing, a reset stream): the request, not the
/// upstream, is at fault.
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct ClientBodyError(#[source] pub hyper::Error);

/// Whether `err`, or an error it was caused by, is the client's body failing.
pub fn is_client_body_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(error) = cause {
        if error.is::<ClientBodyError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A body with nothing in it.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A complete body the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
