//! Small HTML pages for people: when a request prefers `text/html` (a browser, see
//! [`crate::audience`]), writer and reader answer with a page instead of JSON. API clients (no `Accept`, `*/*`, or JSON) keep
//! the JSON of the HTTP contract unchanged.
//!
//! The pages carry no script at all; their one inline `<style>` is allowed by its hash in a
//! strict `Content-Security-Policy`. State changes are forms that POST (never links); requests
//! from other sites are not acted on (see [`crate::cross_site`]); after a POST the browser is
//! sent to `/` (`303 See Other`), so reloading a page never repeats an action.

use std::sync::LazyLock;

use actix_web::{
    HttpResponse, HttpResponseBuilder,
    http::{StatusCode, header},
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::{action::Action, devices::SessionSummary, handle::UserId};

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

/// Who you are (by name, when an identity provider told it) and your count, with the buttons
/// to increment and to log out.
pub fn session(user: &UserId, name: Option<&str>, count: i64, heading: &str) -> HttpResponse {
    let who = match name {
        Some(name) => format!(
            "<span id=\"name\">{}</span> (<code id=\"user\">{}</code>)",
            escape(name),
            escape(user.as_str())
        ),
        None => format!("<code id=\"user\">{}</code>", escape(user.as_str())),
    };
    page(
        StatusCode::OK,
        heading,
        &format!(
            "<h1>{heading}</h1>\n\
             <p>You are {who}</p>\n\
             <p class=\"count\">Count: <span id=\"count\">{count}</span></p>\n\
             <form method=\"post\" action=\"/increment\"><button id=\"increment\" type=\"submit\">Increment</button></form>\n\
             <form method=\"post\" action=\"/logout\"><button id=\"logout\" class=\"secondary\" type=\"submit\">Log out</button></form>",
            heading = escape(heading),
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
    login_page(status, error, true, &[])
}

/// An identity provider's button on the login page.
#[derive(Debug, Clone)]
pub struct ProviderButton {
    /// The provider's name, as in `/login/<name>`.
    pub name: String,
    pub label: String,
    /// False while the provider could not be reached: the button says so instead of leading
    /// to an error.
    pub available: bool,
}

/// The login page: a button per identity provider, and the password form when `password`;
/// with an error after a failed attempt.
pub fn login_page(
    status: StatusCode,
    error: Option<&str>,
    password: bool,
    providers: &[ProviderButton],
) -> HttpResponse {
    let mut content = String::from("<h1>Log in</h1>\n");
    if let Some(error) = error {
        content.push_str(&format!(
            "<p class=\"error\" id=\"error\">{}</p>\n",
            escape(error)
        ));
    }
    for provider in providers {
        let (id, label) = (escape(&provider.name), escape(&provider.label));
        content.push_str(&if provider.available {
            format!("<p><a class=\"button\" id=\"provider-{id}\" href=\"/login/{id}\">{label}</a></p>\n")
        } else {
            format!("<p class=\"error\" id=\"provider-{id}\">{label}: unavailable right now, try again in a minute</p>\n")
        });
    }
    if password {
        content.push_str(
            "<form method=\"post\" action=\"/login\">\n\
             <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\n\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n\
             <p><button id=\"submit\" type=\"submit\">Log in</button></p>\n</form>",
        );
    }
    page(status, "Log in", &content)
}

/// The list of one's sessions, each with a button that ends it, and one that ends all others.
pub fn sessions(sessions: &[SessionSummary]) -> HttpResponse {
    let mut rows = String::new();
    for session in sessions {
        let handle = escape(&session.handle);
        let end = if session.current {
            "<strong>this session</strong>".to_owned()
        } else {
            format!(
                "<form method=\"post\" action=\"/sessions/{handle}/end\"><button class=\"secondary\" type=\"submit\">End</button></form>"
            )
        };
        rows.push_str(&format!(
            "<li id=\"session-{handle}\"><p><code>{handle}</code> · {with} · {agent} · {address}<br>\n\
             began {started} · last used {used}</p>\n{end}</li>\n",
            with = escape(&session.signed_in_with),
            agent = escape(session.agent.as_deref().unwrap_or("unknown browser")),
            address = escape(session.address.as_deref().unwrap_or("unknown address")),
            started = time(session.started_ms),
            used = time(session.last_used_ms),
        ));
    }
    page(
        StatusCode::OK,
        "Your sessions",
        &format!(
            "<h1>Your sessions</h1>\n<ul id=\"sessions\">\n{rows}</ul>\n\
             <form method=\"post\" action=\"/sessions/others/end\"><button id=\"end-others\" type=\"submit\">End all other sessions</button></form>\n\
             <a class=\"button secondary\" href=\"/\">Back</a>"
        ),
    )
}

/// Unix milliseconds as `2026-12-06 14:03:07 UTC`.
fn time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replace('T', " "))
}

/// A sign-in with an identity provider that did not work: why, and the way back.
pub fn sign_in_failed(status: StatusCode, message: &str) -> HttpResponse {
    page(
        status,
        "Sign-in failed",
        &format!(
            "<h1>Sign-in failed</h1>\n\
             <p class=\"error\" id=\"error\">{}</p>\n\
             <p><a id=\"login\" class=\"button\" href=\"/login\">Back to log in</a></p>",
            escape(message)
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
    use super::*;

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
