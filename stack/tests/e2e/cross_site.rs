//! Requests another site makes a browser send never change a session, whatever the browser says
//! about them; this origin's pages, trusted origins and API clients work as before. Each header
//! combination a browser can send is sent raw through the gateway (the browser itself is in
//! `browser.rs`).

use reqwest::{Method, header::HeaderMap};
use serde_json::json;

use crate::helpers::{Options, TestStack, json, login, set_cookies};

const TRUSTED: &str = "http://localhost:3000";
const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// What a browser sends for a request made from a page of `site` (Fetch Metadata, `Origin`,
/// `Accept`), as `(name, value)` pairs.
type Headers = &'static [(&'static str, &'static str)];

/// A link on another site, followed.
const LINK: Headers = &[
    ("sec-fetch-site", "cross-site"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-user", "?1"),
    ("accept", CHROME_ACCEPT),
];
/// A link from a sibling subdomain or another port of this host.
const SAME_SITE_LINK: Headers = &[
    ("sec-fetch-site", "same-site"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("accept", CHROME_ACCEPT),
];
/// A form on another site, posted by a browser without Fetch Metadata.
const OLD_BROWSER_FORM: Headers = &[("origin", "http://evil.test"), ("accept", CHROME_ACCEPT)];

/// Cross-site requests that are not navigations: answered 403 JSON.
const REFUSED: [(&str, Headers); 6] = [
    (
        "fetch",
        &[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-dest", "empty"),
            ("origin", "http://evil.test"),
        ],
    ),
    (
        "image",
        &[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "image"),
        ],
    ),
    (
        "frame",
        &[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
            ("accept", CHROME_ACCEPT),
        ],
    ),
    (
        "same-site fetch",
        &[
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "cors"),
            ("origin", "http://other.localhost:8080"),
        ],
    ),
    (
        "old browser fetch",
        &[
            ("origin", "http://evil.test"),
            ("accept", "application/json"),
        ],
    ),
    ("sandboxed page", &[("origin", "null")]),
];

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|&(name, value)| (name.parse().expect("name"), value.parse().expect("value")))
        .collect()
}

async fn send(
    stack: &TestStack,
    method: Method,
    path: &str,
    cookie: &str,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    // Redirects are not followed: a 303 is an answer to check.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .request(method, stack.url(path))
        .header("cookie", cookie)
        .headers(headers(pairs))
        .send()
        .await
        .expect("request")
}

/// Logs in as an API client and increments once: (cookie, user).
async fn logged_in_with_count_one(stack: &TestStack) -> (String, String) {
    let (cookie, user) = login(stack).await;
    let (status, _) = json(send(stack, Method::POST, "/increment", &cookie, &[]).await).await;
    assert_eq!(status, 200);
    (cookie, user)
}

/// Every key in Redis with its value or members, to compare before and after.
async fn redis_snapshot(stack: &TestStack) -> Vec<(String, String)> {
    let mut connection = stack.redis().await;
    let mut keys = stack.redis_keys().await;
    keys.sort();
    let mut snapshot = Vec::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("DUMP");
        snapshot.push((key, format!("{dump:?}")));
    }
    snapshot
}

#[tokio::test]
async fn cross_site_requests_change_nothing_and_links_ask_to_confirm() {
    let stack = TestStack::start();
    let (cookie, user) = logged_in_with_count_one(&stack).await;
    let before = redis_snapshot(&stack).await;

    for path in ["/login", "/increment", "/logout", "/logout?everywhere=true"] {
        for method in [Method::GET, Method::POST] {
            for (what, pairs) in [
                ("a link", LINK),
                ("a same-site link", SAME_SITE_LINK),
                ("an old browser's form", OLD_BROWSER_FORM),
            ] {
                let response = send(&stack, method.clone(), path, &cookie, pairs).await;
                let context = format!("{what}: {method} {path}");
                assert_eq!(response.status(), 403, "{context}");
                assert!(
                    set_cookies(&response).is_empty(),
                    "{context}: no cookie change"
                );
                let page = response.text().await.expect("page");
                assert!(page.contains("id=\"cross-site\""), "{context}: {page}");
                assert!(
                    page.contains("<form method=\"post\"><button id=\"confirm\""),
                    "{context}: a button posting to the same URL: {page}"
                );
            }
            for (what, pairs) in REFUSED {
                let response = send(&stack, method.clone(), path, &cookie, pairs).await;
                let context = format!("{what}: {method} {path}");
                assert!(
                    set_cookies(&response).is_empty(),
                    "{context}: no cookie change"
                );
                assert_eq!(
                    json(response).await,
                    (403, json!({ "error": "cross-site request refused" })),
                    "{context}"
                );
            }
        }
    }
    // Without a session too: a cross-site login creates none.
    let (status, _) = json(send(&stack, Method::GET, "/login", "", REFUSED[0].1).await).await;
    assert_eq!(status, 403);

    assert_eq!(
        redis_snapshot(&stack).await,
        before,
        "nothing was written to Redis"
    );
    let read = send(&stack, Method::GET, "/", &cookie, &[]).await;
    assert_eq!(
        json(read).await,
        (200, json!({ "user": { "id": user }, "count": 1 })),
        "the session is still there, its count unchanged"
    );

    // A link from another site to `/` still shows the page.
    let page = send(&stack, Method::GET, "/", &cookie, LINK).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("page");
    assert!(
        page.contains(&user) && page.contains("<span id=\"count\">1</span>"),
        "{page}"
    );
}

#[tokio::test]
async fn the_confirm_button_does_what_the_link_asked() {
    let stack = TestStack::start();
    let (cookie, _) = logged_in_with_count_one(&stack).await;
    // The button is a form of the confirmation page, posted to the same URL: a same-origin POST.
    let origin = stack.url("");
    let button = &[
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("origin", origin.as_str()),
        ("accept", CHROME_ACCEPT),
    ];

    let confirm = send(&stack, Method::GET, "/increment", &cookie, LINK).await;
    assert_eq!(confirm.status(), 403);
    let confirmed = send(&stack, Method::POST, "/increment", &cookie, button).await;
    assert_eq!(confirmed.status(), 303, "back to / after a form POST");
    let (_, body) = json(send(&stack, Method::GET, "/", &cookie, &[]).await).await;
    assert_eq!(body["count"], 2);

    let confirm = send(
        &stack,
        Method::GET,
        "/logout?everywhere=true",
        &cookie,
        LINK,
    )
    .await;
    assert!(
        confirm
            .text()
            .await
            .expect("page")
            .contains("log out on every device"),
        "the page says what the link asked for"
    );
    let confirmed = send(
        &stack,
        Method::POST,
        "/logout?everywhere=true",
        &cookie,
        button,
    )
    .await;
    assert_eq!(confirmed.status(), 303);
    assert!(!set_cookies(&confirmed).is_empty(), "the cookie is expired");
    let (status, _) = json(send(&stack, Method::GET, "/", &cookie, &[]).await).await;
    assert_eq!(status, 401, "logged out");
    assert!(
        stack.redis_keys().await.is_empty(),
        "every session of the user ended"
    );
}

#[tokio::test]
async fn this_origin_trusted_origins_and_api_clients_still_change_sessions() {
    let stack = TestStack::start_with(Options::default().env("SESSION_TRUSTED_ORIGINS", TRUSTED));
    let (cookie, _) = logged_in_with_count_one(&stack).await;
    let own_origin = stack.url("");
    let own_origin = own_origin.as_str();
    let allowed: [(&str, &[(&str, &str)]); 5] = [
        ("an API client", &[]),
        (
            "a page of this origin",
            &[
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "cors"),
                ("origin", own_origin),
            ],
        ),
        (
            "the address bar",
            &[
                ("sec-fetch-site", "none"),
                ("sec-fetch-mode", "navigate"),
                ("accept", CHROME_ACCEPT),
            ],
        ),
        ("an old browser on this origin", &[("origin", own_origin)]),
        (
            "a trusted origin",
            &[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "cors"),
                ("origin", TRUSTED),
            ],
        ),
    ];
    for (what, pairs) in allowed {
        let response = send(&stack, Method::GET, "/increment", &cookie, pairs).await;
        assert_eq!(response.status(), 200, "{what}");
    }
    let read = send(&stack, Method::GET, "/", &cookie, &[]).await;
    assert_eq!(
        json(read).await.1["count"],
        1 + allowed.len(),
        "each one incremented"
    );
    // The trusted origin is exact: another port of it is not trusted.
    let other_port: Headers = &[
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "cors"),
        ("origin", "http://localhost:3001"),
    ];
    let (status, _) =
        json(send(&stack, Method::POST, "/increment", &cookie, other_port).await).await;
    assert_eq!(status, 403);

    let trusted_login: Headers = &[
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("origin", TRUSTED),
    ];
    let login = send(&stack, Method::POST, "/login", "", trusted_login).await;
    assert_eq!(login.status(), 200, "a trusted origin may log in");
    assert_eq!(set_cookies(&login).len(), 1);
}
