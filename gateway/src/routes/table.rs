//! The validated, immutable routing table and path matching.

use std::{collections::BTreeMap, net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use ipnet::IpNet;
use serde::Serialize;

use crate::capacity::Cap;

/// Gateway-wide options from the `[settings]` table.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Default time an upstream has to answer with response headers (per route: `timeout`).
    #[serde(with = "humantime_serde_compat")]
    pub request_timeout: Duration,
    /// Time to open a TCP connection to an upstream target.
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// How long a client connection may sit idle (or take to send request headers) before it
    /// is closed.
    #[serde(with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests and tunnels.
    #[serde(with = "humantime_serde_compat")]
    pub shutdown_grace: Duration,
    /// How often target host names are resolved again (replicas come and go).
    #[serde(with = "humantime_serde_compat")]
    pub resolve_interval: Duration,
    /// Largest accepted request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-*` headers are believed (and appended to); everyone else's are
    /// replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// Also send an RFC 7239 `Forwarded` header upstream.
    pub forwarded: bool,
    /// Most connections one client (an IPv4 address, an IPv6 /64) may have open; more are
    /// closed at once. Trusted proxies are not limited. `None`: no limit.
    pub max_connections_per_client: Option<NonZeroU32>,
    /// Forward request headers whose names contain `_`. Off by default, as nginx's
    /// `underscores_in_headers`: CGI, WSGI, PHP and Rack read `X_User_Id` and `X-User-Id` as
    /// the same variable, so such a name can smuggle a header the gateway vouches for.
    pub underscores_in_headers: bool,
}

/// Enough for a browser's six HTTP/1.1 connections from each of some forty people behind one
/// address; a client holding more is keeping descriptors from everyone else.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 256;

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            resolve_interval: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            forwarded: false,
            max_connections_per_client: NonZeroU32::new(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
            underscores_in_headers: false,
        }
    }
}

impl Settings {
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// One base URL of an upstream: `http://host:port` or `https://host:port`. A host name may
/// resolve to several addresses (replicas behind one DNS name); each address is balanced
/// separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    #[serde(rename = "url")]
    display: String,
    #[serde(skip)]
    pub host: String,
    #[serde(skip)]
    pub port: u16,
    /// Its share of the upstream's requests, relative to the other targets' weights (see
    /// [`Upstream::weighted`]); 0 drains it. 1 unless the file says otherwise.
    pub weight: u32,
    /// `https://`: the connection is TLS, the certificate verified (see [`Upstream::tls`]).
    #[serde(skip)]
    pub https: bool,
}

impl Target {
    /// Parses `http://host[:port][/]` or `https://…`; anything else (other schemes, paths,
    /// queries, user info) is refused with a reason.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: http::Uri = raw
            .parse()
            .map_err(|err| format!("{raw:?} is not a URL ({err})"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{raw:?} must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{raw:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{raw:?} must not contain user information"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{raw:?} must be just http(s)://host:port (no path or query: requests keep their own)"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let scheme = if https { "https" } else { "http" };
        Ok(Self {
            display: format!("{scheme}://{authority}"),
            host,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            weight: 1,
            https,
        })
    }

    /// `http(s)://host:port`, for logs and errors.
    pub fn url(&self) -> &str {
        &self.display
    }
}

/// A named group of targets.
#[derive(Debug, Serialize)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    pub balance: Balance,
    pub health_check: Option<HealthCheck>,
    pub eject: Eject,
    /// Whether the file gave its targets weights: a request then picks a target by weight
    /// first (a blue/green or canary split, whatever number of addresses each has), and an
    /// address of that target by `balance`. Without weights every address is one candidate.
    pub weighted: bool,
    /// How its `https://` targets are verified (`ca`, or the compiled-in web roots).
    #[serde(skip)]
    pub tls: Option<Arc<crate::tls::upstream::UpstreamTls>>,
    /// `host`: the `Host` sent to it (and the TLS name asked for and verified), in place of
    /// the client's.
    #[serde(serialize_with = "header_text")]
    pub host: Option<http::HeaderValue>,
    /// `max_in_flight`: most requests in flight to it, all routes and workers together (the
    /// count is its pool's, see [`crate::upstream::pool::Pool`]). `None`: no cap.
    pub max_in_flight: Option<NonZeroU32>,
}

fn header_text<S: serde::Serializer>(
    value: &Option<http::HeaderValue>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value.as_ref().and_then(|value| value.to_str().ok()) {
        Some(text) => s.serialize_some(text),
        None => s.serialize_none(),
    }
}

/// How a request picks among an upstream's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Two random addresses, the one with fewer requests in flight wins ("p2c", the default):
    /// adapts to slow replicas without global coordination.
    #[serde(rename = "p2c")]
    PowerOfTwoChoices,
    /// Each address in turn.
    RoundRobin,
}

/// Active health checking: `GET path` on every address each `interval`; a non-2xx answer or
/// none within `timeout` takes the address out until a check passes again.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub path: String,
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

/// Passive health: after `failures` consecutive connection failures an address is left out for
/// `cooldown`.
#[derive(Debug, Clone, Serialize)]
pub struct Eject {
    pub failures: u32,
    #[serde(with = "humantime_serde_compat")]
    pub cooldown: Duration,
}

impl Default for Eject {
    fn default() -> Self {
        Self {
            failures: 1,
            cooldown: Duration::from_secs(10),
        }
    }
}

/// Cross-origin requests (`[cors]`): credentialed requests from the listed origins get the CORS
/// headers and their preflights are answered by the gateway; any other origin gets none.
#[derive(Debug, Clone, Serialize)]
pub struct Cors {
    /// `scheme://host[:port]`, lowercase.
    pub origins: Vec<String>,
    /// Request headers a preflight may ask for.
    pub allow_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "humantime_serde_compat")]
    pub max_age: Duration,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            allow_headers: [
                "content-type",
                "authorization",
                "x-request-id",
                "x-session-id",
            ]
            .map(String::from)
            .to_vec(),
            max_age: Duration::from_secs(600),
        }
    }
}

/// A sustained rate: `count` requests per `per` (a second, a minute or an hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// The time one request takes to earn back: `per / count`.
    pub fn period(&self) -> Duration {
        self.per / self.count.get()
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let unit = match self.per.as_secs() {
            3600 => "h",
            60 => "m",
            _ => "s",
        };
        s.serialize_str(&format!("{}/{unit}", self.count))
    }
}

/// Whose requests share a bucket of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// The client's address as `trusted_proxies` decides it (an IPv6 client by its /64).
    Client,
    /// The user a route's door check vouched for (its `X-User-Id`).
    User,
    /// One bucket for everyone on the routes that name the limit.
    Route,
}

/// A rate limit (`[limits.<name>]`): a token bucket per key that refills at `rate` and holds
/// `burst`. Two limits with equal settings are the same limit: a reload that leaves a block as it
/// was keeps its buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub name: String,
    pub rate: Rate,
    pub burst: NonZeroU32,
    pub key: LimitKey,
}

/// One `[[routes]]` entry.
#[derive(Debug, Serialize)]
pub struct Route {
    /// Normalised prefix: starts with `/`, no trailing `/` except for the root route.
    pub path: String,
    #[serde(serialize_with = "upstream_name")]
    pub upstream: Arc<Upstream>,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Largest accepted request body; larger gets 413.
    pub max_body: Option<u64>,
    /// What replaces the matched prefix in the forwarded path: `""` for `strip_prefix = true`,
    /// `"/v2"` for `rewrite = "/v2"`; `None` forwards the path as routed.
    pub forward_as: Option<String>,
    /// Whether `GET`, `PUT`, `DELETE`… on this route may be sent again after they were written
    /// (RFC 9110 §9.2.2, the default). `false` for a service whose `GET` changes state (the
    /// writer's `GET /increment`): a request is then only ever re-sent when it was never
    /// written.
    pub idempotent: bool,
    /// The door check every request must pass before it is forwarded (`auth = "<name>"`).
    #[serde(serialize_with = "check_name")]
    pub auth: Option<Arc<DoorCheck>>,
    /// With `auth`: the groups a user must be in (any one of them) for a passing check to let
    /// the request through, as the check's answer names them in `X-User-Groups`; else 403.
    /// `None`: every user the check vouched for.
    pub allow_groups: Option<Box<[String]>>,
    /// `max_in_flight`: most requests in flight on this route, every worker together; one more
    /// is refused with 503 before anything is sent. `None`: no cap (and nothing counted).
    pub max_in_flight: Option<Cap>,
    /// The rate limit its requests are counted against (`limit = "<name>"`).
    #[serde(serialize_with = "limit_name")]
    pub limit: Option<Arc<RateLimit>>,
    /// `compress = true`: responses are encoded as the client's `Accept-Encoding` prefers
    /// (see [`crate::forward::compress`]). Off by default (BREACH).
    pub compress: bool,
}

fn limit_name<S: serde::Serializer>(
    limit: &Option<Arc<RateLimit>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match limit {
        Some(limit) => s.serialize_some(&limit.name),
        None => s.serialize_none(),
    }
}

fn check_name<S: serde::Serializer>(
    check: &Option<Arc<DoorCheck>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match check {
        Some(check) => s.serialize_some(&check.name),
        None => s.serialize_none(),
    }
}

/// A door check (`[auth.<name>]`): before a route that names it forwards a request, the gateway
/// sends `GET <path>` with the request's headers (no body) to the check's upstream. A 2xx
/// answer lets the request through, with the answer's `headers` copied onto it (after any the
/// client sent under those names were removed); any other answer goes back to the client as it
/// is, and the route's upstream never sees the request.
#[derive(Debug, Serialize)]
pub struct DoorCheck {
    pub name: String,
    /// The check as a route of its own: its upstream, its path and its timeout (for sending
    /// it, and for the access log).
    #[serde(flatten)]
    pub route: Route,
    /// Copied from a passing answer onto the forwarded request. What the client sent under
    /// these names, or under any `x-user-` name, never reaches the upstream.
    #[serde(serialize_with = "header_names")]
    pub headers: Arc<[http::HeaderName]>,
    /// The check's request target (its path), made once when the file is read.
    #[serde(skip)]
    pub target: http::uri::PathAndQuery,
    /// Send the session itself (cookie, `Authorization: Session`, `X-Session-Id`) on to the
    /// route's upstream; without it only the check's headers say who the user is.
    pub pass_session: bool,
    /// The session cookie's name, held back unless `pass_session`.
    pub session_cookie: String,
}

fn header_names<S: serde::Serializer>(
    names: &Arc<[http::HeaderName]>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(http::HeaderName::as_str))
}

fn upstream_name<S: serde::Serializer>(upstream: &Arc<Upstream>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&upstream.name)
}

impl Route {
    /// The path to forward for `path` (normalized, and matched by this route): the matched
    /// prefix replaced as `strip_prefix` or `rewrite` say, segment-aware, never empty.
    pub fn forwarded_path(&self, path: &str) -> Option<String> {
        let replacement = self.forward_as.as_deref()?;
        // The root route's prefix is the leading slash itself: the whole path is the rest.
        let rest = match self.path.as_str() {
            "/" => path,
            prefix => path.strip_prefix(prefix).unwrap_or(path),
        };
        let mut forwarded = String::with_capacity(replacement.len() + rest.len() + 1);
        forwarded.push_str(replacement);
        forwarded.push_str(rest);
        if !forwarded.starts_with('/') {
            forwarded.insert(0, '/');
        }
        Some(forwarded)
    }

    /// Whether this route's prefix matches `path` on a segment boundary: `/login` matches
    /// `/login`, `/login/` and `/login/x`, never `/loginx`.
    fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.path.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || self.path == "/",
            None => false,
        }
    }
}

/// The routing table: routes ordered longest prefix first, so the first match is the most
/// specific one whatever the order in the file.
#[derive(Debug, Serialize)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub settings: Settings,
    pub cors: Option<Cors>,
    /// The rate limits, by name (each also held by the routes that name it).
    pub limits: BTreeMap<String, Arc<RateLimit>>,
}

impl RouteTable {
    pub(super) fn new(
        mut routes: Vec<Route>,
        upstreams: BTreeMap<String, Arc<Upstream>>,
        settings: Settings,
        cors: Option<Cors>,
        limits: BTreeMap<String, Arc<RateLimit>>,
    ) -> Self {
        routes.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(&b.path)));
        Self {
            routes,
            upstreams,
            settings,
            cors,
            limits,
        }
    }

    /// The most specific route for a request path (the path only, no query), which must
    /// already have its one meaning (`forward::path::normalize`: `/log%69n` is `/login` by the
    /// time it gets here, so an encoding trick cannot send a request to another service).
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(path))
    }
}

/// Durations shown as `"30s"` in `/routes`.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(paths: &[(&str, &str)]) -> RouteTable {
        let mut upstreams = BTreeMap::new();
        let routes = paths
            .iter()
            .map(|(path, name)| {
                let upstream = upstreams
                    .entry((*name).to_owned())
                    .or_insert_with(|| {
                        Arc::new(Upstream {
                            name: (*name).to_owned(),
                            targets: vec![Target::parse("http://127.0.0.1:1").expect("valid")],
                            balance: Balance::PowerOfTwoChoices,
                            health_check: None,
                            eject: Eject::default(),
                            weighted: false,
                            tls: None,
                            host: None,
                            max_in_flight: None,
                        })
                    })
                    .clone();
                Route {
                    path: (*path).to_owned(),
                    upstream,
                    timeout: Duration::from_secs(1),
                    max_body: None,
                    forward_as: None,
                    idempotent: true,
                    auth: None,
                    allow_groups: None,
                    max_in_flight: None,
                    limit: None,
                    compress: false,
                }
            })
            .collect();
        RouteTable::new(
            routes,
            upstreams,
            Settings::default(),
            None,
            BTreeMap::new(),
        )
    }

    fn upstream_for<'a>(table: &'a RouteTable, path: &str) -> Option<&'a str> {
        table.route(path).map(|route| route.upstream.name.as_str())
    }

    #[test]
    fn matches_on_segment_boundaries() {
        let t = table(&[("/login", "writer"), ("/", "reader")]);
        assert_eq!(upstream_for(&t, "/login"), Some("writer"));
        assert_eq!(upstream_for(&t, "/login/"), Some("writer"));
        assert_eq!(upstream_for(&t, "/login/form"), Some("writer"));
        assert_eq!(upstream_for(&t, "/loginx"), Some("reader"));
        assert_eq!(upstream_for(&t, "/log"), Some("reader"));
        assert_eq!(upstream_for(&t, "/"), Some("reader"));
        assert_eq!(upstream_for(&t, "/anything/else"), Some("reader"));
    }

    #[test]
    fn longest_prefix_wins_whatever_the_order() {
        let t = table(&[("/", "root"), ("/api", "api"), ("/api/admin", "admin")]);
        assert_eq!(upstream_for(&t, "/api/admin/users"), Some("admin"));
        assert_eq!(upstream_for(&t, "/api/adminx"), Some("api"));
        assert_eq!(upstream_for(&t, "/api"), Some("api"));
        assert_eq!(upstream_for(&t, "/apix"), Some("root"));
    }

    #[test]
    fn no_route_without_a_root() {
        let t = table(&[("/login", "writer")]);
        assert_eq!(upstream_for(&t, "/"), None);
        assert_eq!(upstream_for(&t, "/other"), None);
    }

    #[test]
    fn targets_must_be_http_or_https_base_urls() {
        assert_eq!(
            Target::parse("http://writer:8090").map(|t| t.url().to_owned()),
            Ok("http://writer:8090".to_owned())
        );
        assert!(Target::parse("http://127.0.0.1:8090/").is_ok());
        let https = Target::parse("https://api.example.com").expect("https");
        assert_eq!(
            (https.url(), https.port, https.https),
            ("https://api.example.com", 443, true)
        );
        for bad in [
            "ftp://x",
            "http://x:1/path",
            "http://x:1/?q",
            "x:1",
            "http://u:p@x:1",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
