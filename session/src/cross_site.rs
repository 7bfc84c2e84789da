//! Cross-site requests never change a session.
//!
//! `SameSite=Lax` keeps the session cookie off another site's form POSTs, but not off its
//! top-level GET navigations (a plain link), and the contract keeps `GET` on `/login`,
//! `/increment` and `/logout` for API clients. So before any of them writes, the writer asks
//! what the browser says about where the request came from:
//!
//! 1. an `Origin` that is this origin or a [trusted](TrustedOrigins) one: allowed (a page of
//!    this site, or a listed CORS origin calling the API);
//! 2. else `Sec-Fetch-Site` (Fetch Metadata, sent by every current browser): `same-origin`, and
//!    `none` (the user typed the address or used a bookmark), are allowed; `same-site` (a
//!    sibling subdomain, or another port of the same host) and `cross-site` are refused;
//! 3. else, from a browser without Fetch Metadata: an `Origin` that is not ours is refused;
//! 4. no `Origin` and no `Sec-Fetch-Site`: an API client (or an old browser's GET, which cannot
//!    be told apart): allowed.
//!
//! A refused top-level navigation, which a person may well have meant (a "log in" link on
//! another site), is answered with a page of this origin that asks to confirm with a button: a
//! same-origin POST that then passes rule 2. Any other refused request gets 403 JSON. Either
//! way nothing was read from or written to Redis.

use actix_web::{HttpRequest, http::Uri};

use crate::audience::Audience;

/// Origins other than the site's own whose requests may change sessions
/// (`SESSION_TRUSTED_ORIGINS`): the CORS origins whose pages call `/login`, `/increment` or
/// `/logout`. Kept normalized (lower case, no default port) so that comparing is exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedOrigins(Vec<String>);

impl TrustedOrigins {
    /// Parses a comma-separated list such as `https://app.example.com,http://localhost:3000`.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                normalize(entry).ok_or_else(|| {
                    format!("{entry:?} is not an origin like https://app.example.com or http://localhost:3000 (scheme, host and port only)")
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|trusted| trusted == origin)
    }
}

/// What may be done with a request that would change a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same origin, a trusted origin, or not from a browser: go ahead.
    Allowed,
    /// A cross-site top-level navigation: ask the person to confirm.
    Navigation,
    /// Any other cross-site request (a fetch, an image, a frame): 403.
    Refused,
}

/// Applies the rules of the module docs to `request`.
pub fn judge(request: &HttpRequest, trusted: &TrustedOrigins) -> Verdict {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let origin = header("origin");
    // An unreadable or opaque (`null`) Origin normalizes to nothing: it is not ours.
    let known_origin = origin
        .and_then(normalize)
        .is_some_and(|origin| trusted.contains(&origin) || origin == own_origin(request));
    let cross = match header("sec-fetch-site") {
        _ if known_origin => false,
        Some(site) => !matches!(site, "same-origin" | "none"),
        // A browser without Fetch Metadata: a foreign Origin says it all; none, an API client.
        None => origin.is_some(),
    };
    if !cross {
        return Verdict::Allowed;
    }
    let navigation = match header("sec-fetch-mode") {
        // A frame is a navigation too, but not one a person chose; it gets no page to click in
        // (the pages forbid framing anyway).
        Some(mode) => {
            mode == "navigate" && header("sec-fetch-dest").is_none_or(|dest| dest == "document")
        }
        None => Audience::of(request).is_browser(),
    };
    if navigation {
        Verdict::Navigation
    } else {
        Verdict::Refused
    }
}

/// This request's own origin, as the browser sees it: through the gateway, its
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (or `Forwarded`), else the `Host` it was sent to.
/// A browser cannot set those headers on a cross-site request without a CORS preflight, so they
/// cannot be used to pass a foreign origin off as ours.
fn own_origin(request: &HttpRequest) -> String {
    let info = request.connection_info();
    normalize(&format!("{}://{}", info.scheme(), info.host())).unwrap_or_default()
}

/// `scheme://host[:port]` in lower case without the scheme's default port, or `None` when `raw`
/// is not an HTTP(S) origin.
fn normalize(raw: &str) -> Option<String> {
    let uri: Uri = raw.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let bare = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !bare || !matches!(scheme.as_str(), "http" | "https") || authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    Some(match (scheme.as_str(), authority.port_u16()) {
        ("http", Some(80)) | ("https", Some(443)) | (_, None) => format!("{scheme}://{host}"),
        (_, Some(port)) => format!("{scheme}://{host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

    /// A request to `http://app.test:8080` with `headers`.
    fn judge_with(headers: &[(&str, &str)], trusted: &str) -> Verdict {
        let mut request = TestRequest::post()
            .uri("/increment")
            .insert_header(("host", "app.test:8080"));
        for &(name, value) in headers {
            request = request.insert_header((name, value));
        }
        let trusted = TrustedOrigins::parse(trusted).expect("trusted origins");
        judge(&request.to_http_request(), &trusted)
    }

    #[test]
    fn api_clients_and_same_origin_pages_are_allowed() {
        assert_eq!(judge_with(&[], ""), Verdict::Allowed, "no browser headers");
        assert_eq!(
            judge_with(
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "http://app.test:8080")
                ],
                ""
            ),
            Verdict::Allowed
        );
        assert_eq!(
            judge_with(
                &[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")],
                ""
            ),
            Verdict::Allowed,
            "typed into the address bar"
        );
        assert_eq!(
            judge_with(&[("origin", "HTTP://App.Test:8080")], ""),
            Verdict::Allowed,
            "an old browser on this origin"
        );
    }

    #[test]
    fn the_origin_behind_the_gateway_is_the_forwarded_one() {
        let headers = [
            ("origin", "https://public.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
        ];
        assert_eq!(judge_with(&headers, ""), Verdict::Allowed);
        assert_eq!(
            judge_with(&[("origin", "https://public.example")], ""),
            Verdict::Refused,
            "the Host alone says app.test:8080"
        );
    }

    #[test]
    fn cross_site_navigations_are_asked_to_confirm() {
        let link = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        assert_eq!(judge_with(&link, ""), Verdict::Navigation);
        let same_site = [
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-mode", "navigate"),
        ];
        assert_eq!(
            judge_with(&same_site, ""),
            Verdict::Navigation,
            "another port or subdomain"
        );
        let old_browser_form = [("origin", "http://evil.test"), ("accept", CHROME_ACCEPT)];
        assert_eq!(judge_with(&old_browser_form, ""), Verdict::Navigation);
    }

    #[test]
    fn other_cross_site_requests_are_refused() {
        for headers in [
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ][..],
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "cors"),
                ("origin", "http://evil.test"),
            ],
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "iframe"),
            ],
            &[("origin", "http://evil.test")],
            &[("origin", "null")],
        ] {
            assert_eq!(judge_with(headers, ""), Verdict::Refused, "{headers:?}");
        }
    }

    #[test]
    fn trusted_origins_are_allowed_and_only_they() {
        let trusted = "https://spa.example, http://localhost:3000";
        let cors = |origin| {
            [
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "cors"),
                ("origin", origin),
            ]
        };
        assert_eq!(
            judge_with(&cors("https://spa.example:443"), trusted),
            Verdict::Allowed
        );
        assert_eq!(
            judge_with(&cors("http://localhost:3000"), trusted),
            Verdict::Allowed
        );
        assert_eq!(
            judge_with(&cors("http://localhost:3001"), trusted),
            Verdict::Refused
        );
        assert_eq!(
            judge_with(&cors("http://spa.example"), trusted),
            Verdict::Refused,
            "another scheme"
        );
    }

    #[test]
    fn trusted_origins_must_be_origins() {
        assert_eq!(
            TrustedOrigins::parse(" ,").expect("empty"),
            TrustedOrigins::default()
        );
        for bad in [
            "spa.example",
            "https://spa.example/app",
            "ftp://spa.example",
            "https://u@spa.example",
            "*",
        ] {
            let err = TrustedOrigins::parse(bad).expect_err(bad);
            assert!(err.contains("is not an origin"), "{err}");
        }
    }
}
