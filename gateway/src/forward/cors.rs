//! CORS for front-ends on other origins (`[cors]` in routes.toml).
//!
//! The gateway owns CORS when it is configured: for a listed origin it answers preflights itself
//! and adds the credentialed CORS headers to responses; for any other origin it adds nothing
//! (and refuses preflights), and it removes `Access-Control-*` headers an upstream may send, so
//! an arbitrary origin is never reflected. `Vary: Origin` keeps shared caches honest.

use http::{
    HeaderMap, HeaderValue, Method, Response, StatusCode,
    header::{
        ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
    },
};

use crate::{
    error::json_response,
    http_ext::{
        body::{self, Body},
        names::X_REQUEST_ID,
    },
    routes::Cors,
};

const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const EXPOSED_HEADERS: &str = "x-request-id, x-session-token";

/// The request's `Origin` when it is one of the listed origins.
pub fn allowed_origin<'a>(cors: &Cors, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?.trim().to_ascii_lowercase();
    cors.origins.contains(&text).then_some(origin)
}

/// Whether a request is a CORS preflight (RFC: OPTIONS with `Origin` and
/// `Access-Control-Request-Method`).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The gateway's own answer to a preflight: 204 with the CORS headers for a listed origin,
/// 403 without any for the rest.
pub fn preflight(cors: &Cors, headers: &HeaderMap, request_id: &HeaderValue) -> Response<Body> {
    let Some(origin) = allowed_origin(cors, headers) else {
        let mut response = json_response(
            StatusCode::FORBIDDEN,
            &serde_json::json!({ "error": "origin not allowed" }),
            Some(request_id),
        );
        add_vary(response.headers_mut());
        return response;
    };
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(X_REQUEST_ID, request_id.clone());
    allow(out, origin);
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    if let Ok(value) = HeaderValue::from_str(&cors.allow_headers.join(", ")) {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    out.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(cors.max_age.as_secs()),
    );
    add_vary(out);
    response
}

/// Sets the CORS headers of a proxied response: the credentialed set for a listed `origin`,
/// none otherwise (whatever the upstream sent).
pub fn decorate(response: &mut HeaderMap, origin: Option<&HeaderValue>) {
    let upstream_cors: Vec<_> = response
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in upstream_cors {
        response.remove(name);
    }
    if let Some(origin) = origin {
        allow(response, origin);
        response.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    add_vary(response);
}

/// What every answer to a listed origin says: this origin, with credentials.
fn allow(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

fn add_vary(headers: &mut HeaderMap) {
    let already = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("origin") || token.trim() == "*");
    if !already {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            origins: vec!["https://app.example.com".into()],
            ..Cors::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let cors = cors();
        assert!(
            allowed_origin(&cors, &headers(&[("origin", "https://app.example.com")])).is_some()
        );
        assert!(
            allowed_origin(&cors, &headers(&[("origin", "HTTPS://APP.EXAMPLE.COM")])).is_some()
        );
        assert!(
            allowed_origin(&cors, &headers(&[("origin", "https://evil.example.com")])).is_none()
        );
        assert!(
            allowed_origin(
                &cors,
                &headers(&[("origin", "https://app.example.com.evil")])
            )
            .is_none()
        );
        assert!(allowed_origin(&cors, &headers(&[("origin", "null")])).is_none());
        assert!(allowed_origin(&cors, &headers(&[])).is_none());
    }

    #[test]
    fn upstream_cors_headers_never_leak_to_other_origins() {
        let mut response = headers(&[
            ("access-control-allow-origin", "https://evil.example.com"),
            ("access-control-allow-credentials", "true"),
        ]);
        decorate(&mut response, None);
        assert!(!response.contains_key("access-control-allow-origin"));
        assert!(!response.contains_key("access-control-allow-credentials"));
        assert_eq!(response["vary"], "Origin");
    }
}
