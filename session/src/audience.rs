//! Whom a request is answered for: a person's browser (an HTML page) or an API client (the JSON
//! of the HTTP contract), decided from `Accept` and the method.
//!
//! A leaf: the handlers and the cross-site rules ask it; it asks nothing else of this crate.

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    http::{Method, header},
};
use futures_util::future::{Ready, ready};

/// Whether the client prefers HTML to JSON: `text/html` (or XHTML) listed explicitly with a
/// quality above zero and not below JSON's. `*/*` alone means an API client.
pub fn wants_html(request: &HttpRequest) -> bool {
    let Some(accept) = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let (mut html, mut json) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|param| param.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(quality),
            "application/json" => json = json.max(quality),
            _ => {}
        }
    }
    html > 0.0 && html >= json
}

/// Whom a request is answered for, decided once per request (an extractor: handlers take it as
/// an argument instead of each looking at `Accept` and the method again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An API client: the JSON of the HTTP contract.
    Api,
    /// A browser viewing a page.
    Page,
    /// A browser's form POST: answered with `303 See Other` to `/`, so reloading the page that
    /// follows never repeats the action.
    FormPost,
}

impl Audience {
    pub fn of(request: &HttpRequest) -> Self {
        match (wants_html(request), request.method() == Method::POST) {
            (false, _) => Self::Api,
            (true, false) => Self::Page,
            (true, true) => Self::FormPost,
        }
    }

    /// A browser (a page or a form post), not an API client.
    pub fn is_browser(self) -> bool {
        self != Self::Api
    }
}

impl FromRequest for Audience {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(request)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn accepts(accept: Option<&str>) -> bool {
        let mut request = TestRequest::default();
        if let Some(accept) = accept {
            request = request.insert_header((header::ACCEPT, accept));
        }
        wants_html(&request.to_http_request())
    }

    #[test]
    fn the_audience_is_decided_from_accept_and_method() {
        let chrome = "text/html,application/xhtml+xml,*/*;q=0.8";
        let of = |method: &str, accept: Option<&str>| {
            let mut request = TestRequest::default().method(method.parse().expect("method"));
            if let Some(accept) = accept {
                request = request.insert_header((header::ACCEPT, accept));
            }
            Audience::of(&request.to_http_request())
        };
        assert_eq!(of("GET", None), Audience::Api);
        assert_eq!(of("POST", Some("application/json")), Audience::Api);
        assert_eq!(of("GET", Some(chrome)), Audience::Page);
        assert_eq!(of("POST", Some(chrome)), Audience::FormPost);
        assert!(Audience::FormPost.is_browser() && !Audience::Api.is_browser());
    }

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(accepts(Some(chrome)));
        assert!(accepts(Some("text/html")));
        assert!(!accepts(None), "no Accept: JSON");
        assert!(!accepts(Some("*/*")), "curl: JSON");
        assert!(!accepts(Some("application/json")));
        assert!(!accepts(Some("application/json, text/html;q=0.5")));
        assert!(!accepts(Some("text/html;q=0")));
    }
}
