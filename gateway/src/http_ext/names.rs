//! Header names more than one part of the gateway sets or reads: the forwarding headers that
//! tell upstreams about the original request (see [`crate::forward::headers`]), the client's
//! address as decided by [`crate::forward::client`], and the request id every answer carries.

use http::HeaderName;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static(common::request_id::HEADER);
/// The user a door check vouched for, as it tells the upstream (and the access log).
pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");

/// The header upstreams read the client's address from.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
