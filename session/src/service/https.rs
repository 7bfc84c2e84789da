//! `SESSION_COOKIE_SECURE=auto`: the session cookie is marked `Secure` on the answers to requests
//! that reached the gateway over HTTPS, and only on those. [`super::bind`] installs it on every
//! writer and reader; it does nothing unless that setting asks for it.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderValue, SET_COOKIE},
    middleware::Next,
    web,
};

use crate::sessions::Sessions;

/// With `SESSION_COOKIE_SECURE=auto`: marks the session cookie `Secure` on answers to requests
/// the gateway received over HTTPS (`X-Forwarded-Proto: https`), so that a browser never sends
/// it over plain HTTP again, while the same service still works over plain HTTP locally.
pub async fn secure_behind_https(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let cookie = request
        .app_data::<web::Data<Sessions>>()
        .and_then(|sessions| sessions.cookie_secured_behind_https())
        .filter(|_| {
            request
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
        })
        .map(|name| format!("{name}="));
    let mut response = next.call(request).await?;
    if let Some(prefix) = cookie {
        let headers = response.headers_mut();
        let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).cloned().collect();
        if cookies
            .iter()
            .any(|value| value.as_bytes().starts_with(prefix.as_bytes()))
        {
            headers.remove(SET_COOKIE);
            for value in cookies {
                let text = value.to_str().unwrap_or_default();
                let marked = text.starts_with(&prefix)
                    && !text
                        .split(';')
                        .any(|part| part.trim().eq_ignore_ascii_case("secure"));
                let value = if marked {
                    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(value)
                } else {
                    value
                };
                headers.append(SET_COOKIE, value);
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use actix_web::{
        App, HttpResponse,
        middleware::from_fn,
        test::{self, TestRequest},
    };

    use super::*;
    use crate::config::SessionConfig;

    /// The `Set-Cookie` values of `GET /` on a service whose handler sets `cookies`, with
    /// `SESSION_COOKIE_SECURE=auto` when `auto`.
    async fn set_cookies(
        cookies: &'static [&'static str],
        auto: bool,
        forwarded_proto: Option<&str>,
    ) -> Vec<String> {
        let mut config = SessionConfig::for_tests();
        config.cookie.secure_behind_https = auto;
        let sessions = Sessions::new(&config).expect("a lazily connected store");
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(sessions))
                .wrap(from_fn(secure_behind_https))
                .route(
                    "/",
                    web::get().to(move || async move {
                        let mut response = HttpResponse::Ok();
                        for &cookie in cookies {
                            response.append_header((SET_COOKIE, cookie));
                        }
                        response.finish()
                    }),
                ),
        )
        .await;
        let mut request = TestRequest::get().uri("/");
        if let Some(proto) = forwarded_proto {
            request = request.insert_header(("x-forwarded-proto", proto));
        }
        let response = test::call_service(&app, request.to_request()).await;
        response
            .headers()
            .get_all(SET_COOKIE)
            .map(|value| value.to_str().expect("text").to_owned())
            .collect()
    }

    #[actix_web::test]
    async fn only_the_session_cookie_of_an_https_request_is_marked() {
        const COOKIES: &[&str] = &["theme=dark", "sid=sealed"];
        assert_eq!(
            set_cookies(COOKIES, true, Some("HTTPS")).await,
            ["theme=dark", "sid=sealed; Secure"]
        );
        assert_eq!(set_cookies(COOKIES, true, Some("http")).await, COOKIES);
        assert_eq!(set_cookies(COOKIES, true, None).await, COOKIES);
        assert_eq!(
            set_cookies(COOKIES, false, Some("https")).await,
            COOKIES,
            "not asked for"
        );
    }

    #[actix_web::test]
    async fn a_cookie_already_secure_is_left_alone() {
        const COOKIES: &[&str] = &["sid=a; Path=/; secure", "sidecar=b", "sid=c; HttpOnly"];
        assert_eq!(
            set_cookies(COOKIES, true, Some("https")).await,
            [
                "sid=a; Path=/; secure",
                "sidecar=b",
                "sid=c; HttpOnly; Secure"
            ]
        );
    }
}
