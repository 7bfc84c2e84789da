//! JSON answers for everything actix would otherwise answer in plain text: unknown paths, wrong
//! methods, bad queries or bodies, oversized payloads. [`super::bind`] installs them.

use actix_web::{
    HttpResponse, dev::ServiceResponse, http::header, middleware::ErrorHandlerResponse,
};
use serde_json::json;

use crate::error::ApiError;

pub(super) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub(super) async fn not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub(super) fn bad_request(err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid request: {err}")).into()
}

/// Turns an error response that actix itself wrote in plain text (an oversized body, a
/// malformed header an extractor refused, …) into the JSON every client of these services
/// expects: `{"error": "<reason>"}`, same status, same other headers. Our own errors (JSON) and
/// pages (HTML) pass untouched.
pub(super) fn json_errors<B>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.starts_with("application/json") || kind.starts_with("text/html"));
    if ours {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let (request, original) = response.into_parts();
    let mut json = HttpResponse::build(status).json(json!({ "error": reason }));
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, json).map_into_right_body(),
    ))
}
