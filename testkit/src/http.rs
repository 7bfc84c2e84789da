//! HTTP as the tests speak it: clients, JSON answers, cookies.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};

/// A client that keeps no cookies (tests set them by hand), with a 10 s timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A client with its own cookie jar, like one browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A client with its own cookie jar that does not follow redirects, like one browser whose
/// every step the test sees: a sign-in goes from a service to a provider and back in 302s,
/// each setting cookies, and the test checks each (see [`crate::oidc::OidcProvider::sign_in`]).
pub fn browser_no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Status and JSON body of a response; panics, showing the body, when it is not JSON.
pub async fn json(response: Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}

/// `method url` sending `cookie` (a whole `Cookie` header value, `sid=…`): the one way the
/// tests send a session cookie by hand.
pub fn with_cookie(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    cookie: &str,
) -> RequestBuilder {
    client.request(method, url).header("cookie", cookie)
}

/// Every `Set-Cookie` header of `response`.
pub fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().expect("ascii").to_owned())
        .collect()
}

/// The value of the session cookie (`sid`) `response` sets, if it sets one.
pub fn session_cookie(response: &Response) -> Option<String> {
    set_cookies(response).into_iter().find_map(|cookie| {
        cookie
            .strip_prefix("sid=")
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    })
}
