//! Small HTML pages for people: when a request prefers `text/html` (a browser), writer and
//! reader answer with a page instead of JSON. API clients (no `Accept`, `*/*`, or JSON) keep
//! the JSON of the HTTP contract unchanged.
//!
//! The pages carry no script at all; their one inline `<style>` is allowed by its hash in a
//! strict `Content-Security-Policy`. State changes are forms that POST (never links); requests
//! from other sites are not acted on (see [`crate::cross_site`]); after a POST the browser is
//! sent to `/` (`303 See Other`), so reloading a page never repeats an action.

use std::sync::LazyLock;

use actix_web::{
    FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder,
    dev::Payload,
    http::{Method, StatusCode, header},
};
use base64::Engine as _;
use futures_util::future::{Ready, ready};
use sha2::{Digest, Sha256};

use crate::{cross_site::Action, handle::UserId};

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c1e21}\
main{max-width:26rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:12px;\
box-shadow:0 1px 4px rgba(0,0,0,.08)}h1{font-size:1.4rem;margin:0 0 1rem}\
.count{font-size:2.5rem;font-weight:700;margin:.5rem 0 1.5rem}form{display:inline-block;margin:0 .5rem .5rem 0}\
button,a.button{font:inherit;padding:.5rem 1.1rem;border-radius:8px;border:1px solid #2f6fed;\
background:#2f6fed;color:#fff;cursor:pointer;text-decoration:none;display:inline-block}\
button.secondary,a.secondary{background:#fff;color:#2f6fed}code{background:#f0f1f4;padding:.1rem .3rem;border-radius:4px}\
label{display:block;margin:.5rem 0}input{font:inherit;padding:.4rem;width:100%;box-sizing:border-box}\
.error{color:#b3261e}";

/// `Content-Security-Policy` of every page: nothing may load or run, except the page's own
/// style (by hash) and forms posting to this origin.
static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
});

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

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn page(status: StatusCode, title: &str, content: &str) -> HttpResponse {
    render(HttpResponse::build(status), title, content)
}

/// Finishes `response` as a page.
fn render(mut response: HttpResponseBuilder, title: &str, content: &str) -> HttpResponse {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{content}\n</main>\n</body>\n</html>\n",
        title = escape(title),
    );
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.as_str(),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}

/// Who you are and your count, with the buttons to increment and to log out.
pub fn session(user: &UserId, count: i64, heading: &str) -> HttpResponse {
    page(
        StatusCode::OK,
        heading,
        &format!(
            "<h1>{heading}</h1>\n\
             <p>You are <code id=\"user\">{user}</code></p>\n\
             <p class=\"count\">Count: <span id=\"count\">{count}</span></p>\n\
             <form method=\"post\" action=\"/increment\"><button id=\"increment\" type=\"submit\">Increment</button></form>\n\
             <form method=\"post\" action=\"/logout\"><button id=\"logout\" class=\"secondary\" type=\"submit\">Log out</button></form>",
            heading = escape(heading),
            user = escape(user.as_str()),
        ),
    )
}

/// The answer to a visitor without a session: a link to log in (401).
pub fn login_prompt() -> HttpResponse {
    page(
        StatusCode::UNAUTHORIZED,
        "Please log in",
        "<h1>Please log in</h1>\n\
         <p id=\"login-prompt\">You have no session yet: log in to set one up.</p>\n\
         <p><a id=\"login\" class=\"button\" href=\"/login\">Log in</a></p>",
    )
}

/// After `GET /logout`; `response` carries the cookie expiry.
pub fn logged_out(response: HttpResponseBuilder) -> HttpResponse {
    render(
        response,
        "Logged out",
        "<h1>Logged out</h1>\n\
         <p id=\"logged-out\">Your session has ended and your count is reset.</p>\n\
         <p><a id=\"login\" class=\"button\" href=\"/login\">Log in again</a></p>",
    )
}

/// The login form (credentials mode), with an error after a failed attempt.
pub fn login_form(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let error = error
        .map(|error| format!("<p class=\"error\" id=\"error\">{}</p>\n", escape(error)))
        .unwrap_or_default();
    page(
        status,
        "Log in",
        &format!(
            "<h1>Log in</h1>\n{error}\
             <form method=\"post\" action=\"/login\">\n\
             <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\n\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n\
             <p><button id=\"submit\" type=\"submit\">Log in</button></p>\n</form>"
        ),
    )
}

/// The answer to a link from another site to an action: nothing has happened, and a button of
/// this origin does it. The form has no `action`, so it posts to the very URL the link named
/// (query included, and whatever prefix the gateway mounts the writer under).
pub fn confirm(status: StatusCode, action: Action) -> HttpResponse {
    page(
        status,
        "Please confirm",
        &format!(
            "<h1>Please confirm</h1>\n\
             <p id=\"cross-site\">Another site sent you here to {describe}. Nothing has happened yet.</p>\n\
             <form method=\"post\"><button id=\"confirm\" type=\"submit\">{button}</button></form>\n\
             <a id=\"cancel\" class=\"button secondary\" href=\"/\">Cancel</a>",
            describe = escape(action.describe()),
            button = escape(action.button()),
        ),
    )
}

/// `303 See Other` to `location`: the answer to a form POST from a browser.
pub fn see_other(location: &'static str) -> HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location));
    response
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

    #[test]
    fn pages_escape_and_carry_a_strict_policy() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let response = login_prompt();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let policy = response
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|value| value.to_str().ok())
            .expect("a policy");
        assert!(
            policy.starts_with("default-src 'none'; style-src 'sha256-"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"));
    }
}
