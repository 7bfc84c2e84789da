//! Parsing and validating `routes.toml` (the full schema is in the README; the same types give
//! the JSON Schema editors use, see [`super::schema`]):
//!
//! ```toml
//! [settings]                               # optional, every key optional
//! request_timeout = "30s"
//! trusted_proxies = ["10.0.0.0/8"]
//!
//! [upstreams]
//! writer = ["${WRITER_URL:-http://127.0.0.1:8090}"]        # short form
//!
//! [upstreams.reader]                       # long form
//! targets = ["http://127.0.0.1:8091", "http://127.0.0.1:8092"]
//! balance = "round_robin"
//! health_check = { path = "/healthz", interval = "5s" }
//!
//! [[routes]]
//! path = "/login"
//! upstream = "writer"
//! timeout = "10s"
//! max_body = "64KiB"
//!
//! [cors]
//! origins = ["https://app.example.com"]
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    ops::Range,
    path::Path,
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::upstream::tls::UpstreamTls;

use super::{
    error::RoutesError,
    interpolate::interpolate,
    schema::{
        DurationSchema, OriginSchema, PathSchema, SIZE_PATTERN, TargetEntrySchema, TargetSchema,
        UpstreamSchema,
    },
    table::{
        Balance, Cors, DoorCheck, Eject, HealthCheck, Route, RouteTable, Settings, Target, Upstream,
    },
};

// The `Raw*` types are also the JSON Schema of the file (`gateway schema`, see [`super::schema`]):
// their doc comments are what an editor shows for each key, so they are written for whoever
// edits routes.toml. A `Spanned<T>` is described as the `T` it holds.

/// Routing of the gateway: upstreams (where requests go) and routes (which path goes where).
/// Edited while the gateway runs: a valid change is live within a second. `gateway --check FILE`
/// validates a file; values may use ${VAR} and ${VAR:-default} from the environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "routes.toml")]
pub(super) struct RawFile {
    /// Gateway-wide settings; every key is optional.
    #[serde(default)]
    #[schemars(with = "Option<RawSettings>")]
    settings: Option<Spanned<RawSettings>>,
    /// The upstreams routes send requests to, by name: a list of targets
    /// (`writer = ["http://127.0.0.1:8090"]`) or a table with `targets` and options.
    #[schemars(with = "BTreeMap<String, UpstreamSchema>")]
    upstreams: Spanned<BTreeMap<String, Spanned<toml::Value>>>,
    /// One `[[routes]]` table per path prefix; the longest matching path wins, order does not
    /// matter. At least one.
    #[serde(default)]
    #[schemars(with = "Vec<RawRoute>", length(min = 1))]
    routes: Vec<Spanned<RawRoute>>,
    /// Cross-origin requests: the gateway answers preflights for the listed origins and adds
    /// the CORS headers to their responses. Without it, no CORS header is sent.
    #[serde(default)]
    #[schemars(with = "Option<RawCors>")]
    cors: Option<Spanned<RawCors>>,
    /// Door checks by name, `[auth.session]`: a route with `auth = "session"` forwards a
    /// request only after the check's upstream answered 2xx for it.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawCheck>")]
    auth: BTreeMap<String, Spanned<RawCheck>>,
}

/// Gateway-wide settings; every key is optional.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    /// Time for an upstream to answer with its headers, then 504; a route's `timeout`
    /// overrides it. Default "30s".
    #[schemars(with = "Option<DurationSchema>")]
    request_timeout: Option<Spanned<String>>,
    /// Time to open a connection to an upstream address, then the next address or 502.
    /// Default "2s".
    #[schemars(with = "Option<DurationSchema>")]
    connect_timeout: Option<Spanned<String>>,
    /// Client connections idle (or slow to send their headers) this long are closed.
    /// Default "60s".
    #[schemars(with = "Option<DurationSchema>")]
    idle_timeout: Option<Spanned<String>>,
    /// On SIGTERM or Ctrl-C: time left to requests in flight and tunnels. Default "10s".
    #[schemars(with = "Option<DurationSchema>")]
    shutdown_grace: Option<Spanned<String>>,
    /// Host names of targets are resolved again this often. Default "5s".
    #[schemars(with = "Option<DurationSchema>")]
    resolve_interval: Option<Spanned<String>>,
    /// Largest request head (request line and headers); larger ones get 431. At least 8KiB
    /// (8192). Default "16KiB".
    #[schemars(with = "Option<RawSize>")]
    max_header_bytes: Option<Spanned<RawSize>>,
    /// Peers (IP addresses or CIDR ranges, "10.0.0.0/8") whose X-Forwarded-* and Forwarded
    /// headers are kept and appended to; from any other peer they are replaced. Default none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    trusted_proxies: Vec<Spanned<String>>,
    /// Also send an RFC 7239 Forwarded header to upstreams. Default false.
    forwarded: Option<bool>,
    /// Most connections one client (an IPv4 address, or an IPv6 /64) may hold open; more are
    /// closed at once and counted in gateway_connections_refused_total. Trusted proxies are
    /// not limited. 0: no limit. Default 256.
    max_connections_per_client: Option<u32>,
    /// Forward request headers whose names contain "_" (X_User_Id). Default false: they are
    /// dropped, since CGI, WSGI, PHP and Rack read them as the "-" spelling.
    underscores_in_headers: Option<bool>,
}

/// The long form of an upstream: its targets and how they are balanced and checked.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// Base URLs "http://host:port" (plain HTTP, no path); a host name is resolved to all its
    /// addresses and each is balanced separately. Or { url = "...", weight = 90 }: a target's
    /// share of the requests relative to the others' weights (0 drains it). At least one.
    #[schemars(with = "Vec<TargetEntrySchema>", length(min = 1))]
    targets: Vec<RawTarget>,
    /// How a request picks an address: "p2c" (the default: the one with fewer requests in
    /// flight of two random addresses) or "round_robin".
    #[schemars(extend("enum" = ["p2c", "round_robin"]))]
    balance: Option<String>,
    /// Active health checks: each address is asked for `path` every `interval`; one that fails
    /// is not used until it answers again. Default: none.
    health_check: Option<RawHealthCheck>,
    /// Passive health: an address is taken out after `failures` connection failures in a row,
    /// for `cooldown`. Default failures 1, cooldown "10s".
    eject: Option<RawEject>,
    /// For https:// targets: a PEM file of the CA certificates to verify them against, in place
    /// of the web's roots (a private CA). Verification is never skipped.
    ca: Option<String>,
    /// The Host header sent to this upstream, and the TLS name asked for and verified, in place
    /// of the client's Host: "api.example.com" for an external service. Default: the client's.
    host: Option<String>,
}

/// A target: its URL alone, or its URL and weight.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawTarget {
    Url(String),
    Weighted(RawWeightedTarget),
}

/// A target with a weight: `{ url = "http://blue:8091", weight = 90 }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedTarget {
    /// "http://host:port", as a target written alone.
    #[schemars(with = "TargetSchema")]
    url: String,
    /// Its share of the upstream's requests relative to the other targets' weights: 90 and 10
    /// send 90 % here. 0 drains it (no new requests; those in flight finish). A target written
    /// without a weight has 1.
    #[schemars(range(max = 1_000_000))]
    weight: u32,
}

/// Active health checks of an upstream's addresses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    /// The path asked with GET, "/healthz": any 2xx answer is healthy. Starts with /.
    #[schemars(pattern(r"^/"))]
    path: String,
    /// How often each address is checked. Default "5s".
    #[schemars(with = "Option<DurationSchema>")]
    interval: Option<String>,
    /// How long a check may take before it counts as failed. Default "1s".
    #[schemars(with = "Option<DurationSchema>")]
    timeout: Option<String>,
}

/// Passive health: when an address is taken out of use.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawEject {
    /// Connection failures in a row that take an address out. At least 1; default 1.
    #[schemars(range(min = 1))]
    failures: Option<u32>,
    /// How long an ejected address stays out before it is tried again. Default "10s".
    #[schemars(with = "Option<DurationSchema>")]
    cooldown: Option<String>,
}

/// One route: requests whose path is `path` or below it go to `upstream`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    /// The path prefix, "/login": matches /login and /login/..., never /loginx. Starts with /,
    /// no query, empty or dot segments; each path is routed once. "/" catches everything else.
    #[schemars(with = "PathSchema")]
    path: Spanned<String>,
    /// The name of an upstream defined in [upstreams].
    #[schemars(with = "String")]
    upstream: Spanned<String>,
    /// Time for the upstream to answer with its headers on this route, then 504. Default:
    /// settings.request_timeout.
    #[schemars(with = "Option<DurationSchema>")]
    timeout: Option<Spanned<String>>,
    /// Largest request body on this route; larger ones get 413. Default: no limit.
    #[schemars(with = "Option<RawSize>")]
    max_body: Option<Spanned<RawSize>>,
    /// true: forward the path without the route's prefix (/api/users as /users, /api as /).
    /// Not with `rewrite`, not on the root route. Default false.
    #[schemars(with = "Option<bool>")]
    strip_prefix: Option<Spanned<bool>>,
    /// Another prefix to put in place of the route's: "/v2" forwards /api/users as /v2/users.
    /// Not with `strip_prefix`. Default: the path is forwarded as it came.
    #[schemars(with = "Option<PathSchema>")]
    rewrite: Option<Spanned<String>>,
    /// false when the upstream's GETs change state: a request on this route that was written
    /// to an upstream is never sent again. Default true.
    idempotent: Option<bool>,
    /// The name of a door check in [auth] ("session"): every request on this route is checked
    /// first; it is forwarded with the check's headers (X-User-Id) only when the check answers
    /// 2xx, else the check's answer (401) goes back to the client. Default: no check.
    #[schemars(with = "Option<String>")]
    auth: Option<Spanned<String>>,
}

/// A door check: `GET path` on `upstream` with the request's headers (cookie, session header),
/// no body, plus X-Forwarded-Method and X-Forwarded-Uri.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    /// The name of an upstream defined in [upstreams] that answers the check ("reader").
    #[schemars(with = "String")]
    upstream: Spanned<String>,
    /// The path asked with GET ("/session"): 2xx lets the request through.
    #[schemars(with = "PathSchema")]
    path: Spanned<String>,
    /// Headers of a passing answer set on the forwarded request, replacing any the client sent
    /// under those names. Default ["x-user-id"].
    #[schemars(with = "Option<Vec<String>>")]
    headers: Option<Vec<Spanned<String>>>,
    /// How long the check may take, then 503 and nothing forwarded. Default "2s".
    #[schemars(with = "Option<DurationSchema>")]
    timeout: Option<Spanned<String>>,
    /// Also send the session itself (its cookie, Authorization: Session, X-Session-Id) to the
    /// route's upstream, for services that call others as the user. Default false: the
    /// upstream learns who the user is from the check's headers and never holds a credential
    /// for the whole origin.
    pass_session: Option<bool>,
    /// The session cookie's name (the services' SESSION_COOKIE_NAME), held back from the
    /// route's upstream unless pass_session. Default "sid".
    #[schemars(with = "Option<String>")]
    session_cookie: Option<Spanned<String>>,
}

/// Cross-origin requests from browsers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCors {
    /// Exact origins allowed, with credentials: "https://app.example.com" (scheme://host[:port],
    /// no path). "*" is refused.
    #[schemars(with = "Vec<OriginSchema>")]
    origins: Vec<Spanned<String>>,
    /// Request headers a preflight may ask for. Default "content-type", "authorization",
    /// "x-request-id", "x-session-id".
    allow_headers: Option<Vec<String>>,
    /// How long browsers may cache a preflight answer. Default "10m".
    #[schemars(with = "Option<DurationSchema>")]
    max_age: Option<Spanned<String>>,
}

/// A size: a number of bytes (16384), or a string with a unit B, KB, KiB, MB, MiB, GB or GiB
/// ("64KiB", "1MB"; KB is 1000 bytes, KiB 1024).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum RawSize {
    Bytes(#[schemars(range(min = 1))] u64),
    Text(#[schemars(pattern(SIZE_PATTERN))] String),
}

/// Reads and validates the routes file at `path`.
pub fn load(path: &Path) -> Result<RouteTable, RoutesError> {
    let text = std::fs::read_to_string(path).map_err(|err| RoutesError {
        file: path.to_owned(),
        line: None,
        reason: format!("cannot read: {err}"),
    })?;
    parse(path, &text, |name| std::env::var(name).ok())
}

/// Validates routes file `text` (`file` names it in errors; `env` resolves `${VAR}`).
pub fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RouteTable, RoutesError> {
    Parser {
        file,
        text,
        env: &env,
    }
    .parse()
}

/// The largest target weight (weights are relative: 1,000,000 to 1 is plenty).
const MAX_WEIGHT: u32 = 1_000_000;

/// What a door check copies from a passing answer unless it says otherwise.
const DEFAULT_CHECK_HEADER: &str = "x-user-id";
/// How long a door check may take unless it says otherwise: it is one Redis read.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The services' default `SESSION_COOKIE_NAME`.
const DEFAULT_SESSION_COOKIE: &str = "sid";

/// A cookie name: an HTTP token (RFC 6265 §4.1.1).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Validation context: turns spans into line numbers and resolves `${VAR}`.
struct Parser<'a> {
    file: &'a Path,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Parser<'_> {
    fn error(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> RoutesError {
        RoutesError {
            file: self.file.to_owned(),
            line: span.map(|span| line_of(self.text, span.start)),
            reason: reason.into(),
        }
    }

    /// `raw` with `${VAR}` resolved; errors point at `span`.
    fn value(&self, raw: &str, span: Range<usize>) -> Result<String, RoutesError> {
        interpolate(raw, self.env).map_err(|reason| self.error(Some(span), reason))
    }

    fn spanned(&self, spanned: &Spanned<String>) -> Result<String, RoutesError> {
        self.value(spanned.get_ref(), spanned.span())
    }

    fn duration(&self, raw: &str, span: Range<usize>, what: &str) -> Result<Duration, RoutesError> {
        let text = self.value(raw, span.clone())?;
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err(self.error(Some(span), format!("{what} must be more than zero"))),
            Err(err) => Err(self.error(
                Some(span),
                format!("{what} {text:?} is not a duration like \"500ms\" or \"30s\" ({err})"),
            )),
        }
    }

    /// `strip_prefix = true` or `rewrite = "/prefix"`: what replaces the matched prefix.
    fn forward_as(&self, path: &str, route: &RawRoute) -> Result<Option<String>, RoutesError> {
        let strip = route.strip_prefix.as_ref().filter(|strip| *strip.get_ref());
        match (strip, &route.rewrite) {
            (Some(strip), Some(_)) => Err(self.error(
                Some(strip.span()),
                "strip_prefix and rewrite both replace the prefix: keep one",
            )),
            (Some(strip), None) if path == "/" => Err(self.error(
                Some(strip.span()),
                "strip_prefix on the root route would change nothing",
            )),
            (Some(_), None) => Ok(Some(String::new())),
            (None, Some(rewrite)) => {
                let prefix = normalize_path(&self.spanned(rewrite)?).map_err(|reason| {
                    self.error(Some(rewrite.span()), format!("rewrite: {reason}"))
                })?;
                // "/" in place of the prefix is the same as stripping it.
                Ok(Some(if prefix == "/" { String::new() } else { prefix }))
            }
            (None, None) => Ok(None),
        }
    }

    /// The upstream called `name` (at `span` in the file).
    fn named_upstream(
        &self,
        name: &str,
        span: Range<usize>,
        upstreams: &BTreeMap<String, Arc<Upstream>>,
    ) -> Result<Arc<Upstream>, RoutesError> {
        upstreams.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            self.error(
                Some(span),
                format!(
                    "upstream {name:?} is not defined in [upstreams] (defined: {})",
                    known.join(", ")
                ),
            )
        })
    }

    /// `[auth.<name>]`: a check sent as `GET <path>` to `upstream`, passing on 2xx.
    fn check(
        &self,
        name: &str,
        spanned: &Spanned<RawCheck>,
        upstreams: &BTreeMap<String, Arc<Upstream>>,
    ) -> Result<DoorCheck, RoutesError> {
        let check = spanned.get_ref();
        let upstream_name = self.spanned(&check.upstream)?;
        let upstream = self.named_upstream(&upstream_name, check.upstream.span(), upstreams)?;
        let path = self.spanned(&check.path)?;
        let target = http::uri::PathAndQuery::try_from(path.as_str())
            .ok()
            .filter(|_| path.starts_with('/'))
            .ok_or_else(|| {
                self.error(
                    Some(check.path.span()),
                    format!("[auth.{name}] path {path:?} must be a path like \"/session\""),
                )
            })?;
        let headers = match &check.headers {
            None => Arc::from([http::HeaderName::from_static(DEFAULT_CHECK_HEADER)]),
            Some(names) => names
                .iter()
                .map(|name| {
                    http::HeaderName::try_from(name.get_ref().as_str()).map_err(|_| {
                        self.error(
                            Some(name.span()),
                            format!("{:?} is not a header name", name.get_ref()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        };
        let timeout = match &check.timeout {
            Some(timeout) => self.spanned_duration(timeout, "timeout")?,
            None => DEFAULT_CHECK_TIMEOUT,
        };
        let session_cookie = match &check.session_cookie {
            Some(cookie) => {
                let cookie_name = self.spanned(cookie)?;
                if !is_cookie_name(&cookie_name) {
                    return Err(self.error(
                        Some(cookie.span()),
                        format!(
                            "[auth.{name}] session_cookie {cookie_name:?} is not a cookie name"
                        ),
                    ));
                }
                cookie_name
            }
            None => DEFAULT_SESSION_COOKIE.to_owned(),
        };
        Ok(DoorCheck {
            name: name.to_owned(),
            route: Route {
                path,
                upstream,
                timeout,
                max_body: None,
                forward_as: None,
                idempotent: true,
                auth: None,
            },
            headers,
            target,
            pass_session: check.pass_session.unwrap_or(false),
            session_cookie,
        })
    }

    /// The check a route names in `auth = "<name>"`.
    fn named_check(
        &self,
        name: &Spanned<String>,
        checks: &BTreeMap<String, Arc<DoorCheck>>,
    ) -> Result<Arc<DoorCheck>, RoutesError> {
        let wanted = self.spanned(name)?;
        checks.get(&wanted).cloned().ok_or_else(|| {
            let known: Vec<String> = checks.keys().map(|name| format!("[auth.{name}]")).collect();
            self.error(
                Some(name.span()),
                if known.is_empty() {
                    format!("auth {wanted:?}: there is no [auth.{wanted}] check in this file")
                } else {
                    format!(
                        "auth {wanted:?}: there is no [auth.{wanted}] (defined: {})",
                        known.join(", ")
                    )
                },
            )
        })
    }

    fn spanned_duration(
        &self,
        spanned: &Spanned<String>,
        what: &str,
    ) -> Result<Duration, RoutesError> {
        self.duration(spanned.get_ref(), spanned.span(), what)
    }

    fn size(&self, spanned: &Spanned<RawSize>, what: &str) -> Result<u64, RoutesError> {
        let bytes = match spanned.get_ref() {
            RawSize::Bytes(bytes) => Ok(*bytes),
            RawSize::Text(text) => parse_size(&self.value(text, spanned.span())?),
        };
        match bytes {
            Ok(0) => Err(self.error(
                Some(spanned.span()),
                format!("{what} must be more than zero"),
            )),
            Ok(bytes) => Ok(bytes),
            Err(reason) => Err(self.error(Some(spanned.span()), format!("{what}: {reason}"))),
        }
    }

    fn parse(&self) -> Result<RouteTable, RoutesError> {
        let raw: RawFile = toml::from_str(self.text)
            .map_err(|err| self.error(err.span(), err.message().trim()))?;
        let settings = match &raw.settings {
            Some(settings) => self.settings(settings.get_ref())?,
            None => Settings::default(),
        };

        let mut upstreams = BTreeMap::new();
        for (name, value) in raw.upstreams.get_ref() {
            let upstream = self.upstream(name, value)?;
            upstreams.insert(name.clone(), Arc::new(upstream));
        }

        if raw.routes.is_empty() {
            return Err(self.error(None, "no [[routes]]: nothing would be served"));
        }
        let mut checks = BTreeMap::new();
        for (name, check) in &raw.auth {
            checks.insert(name.clone(), Arc::new(self.check(name, check, &upstreams)?));
        }
        let mut routes = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for route in &raw.routes {
            let route = route.get_ref();
            let path = normalize_path(&self.spanned(&route.path)?)
                .map_err(|reason| self.error(Some(route.path.span()), reason))?;
            let line = line_of(self.text, route.path.span().start);
            if let Some(first) = seen.insert(path.clone(), line) {
                return Err(self.error(
                    Some(route.path.span()),
                    format!("path {path:?} is already routed on line {first}"),
                ));
            }
            let name = self.spanned(&route.upstream)?;
            let upstream = self.named_upstream(&name, route.upstream.span(), &upstreams)?;
            let timeout = match &route.timeout {
                Some(timeout) => self.spanned_duration(timeout, "timeout")?,
                None => settings.request_timeout,
            };
            let max_body = route
                .max_body
                .as_ref()
                .map(|size| self.size(size, "max_body"))
                .transpose()?;
            let forward_as = self.forward_as(&path, route)?;
            let auth = match &route.auth {
                Some(name) => Some(self.named_check(name, &checks)?),
                None => None,
            };
            routes.push(Route {
                path,
                upstream,
                timeout,
                max_body,
                forward_as,
                idempotent: route.idempotent.unwrap_or(true),
                auth,
            });
        }

        let cors = raw
            .cors
            .as_ref()
            .map(|cors| self.cors(cors.get_ref()))
            .transpose()?;
        Ok(RouteTable::new(routes, upstreams, settings, cors))
    }

    fn settings(&self, raw: &RawSettings) -> Result<Settings, RoutesError> {
        let mut settings = Settings::default();
        let durations = [
            (
                &raw.request_timeout,
                "request_timeout",
                &mut settings.request_timeout,
            ),
            (
                &raw.connect_timeout,
                "connect_timeout",
                &mut settings.connect_timeout,
            ),
            (
                &raw.idle_timeout,
                "idle_timeout",
                &mut settings.idle_timeout,
            ),
            (
                &raw.shutdown_grace,
                "shutdown_grace",
                &mut settings.shutdown_grace,
            ),
            (
                &raw.resolve_interval,
                "resolve_interval",
                &mut settings.resolve_interval,
            ),
        ];
        for (raw, what, slot) in durations {
            if let Some(raw) = raw {
                *slot = self.spanned_duration(raw, what)?;
            }
        }
        if let Some(size) = &raw.max_header_bytes {
            let bytes = self.size(size, "max_header_bytes")?;
            if bytes < 8192 {
                return Err(self.error(
                    Some(size.span()),
                    "max_header_bytes must be at least 8KiB (8192)",
                ));
            }
            settings.max_header_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        for proxy in &raw.trusted_proxies {
            let text = self.spanned(proxy)?;
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    self.error(
                        Some(proxy.span()),
                        format!("trusted_proxies: {text:?} is not an IP address or CIDR range"),
                    )
                })?;
            settings.trusted_proxies.push(net);
        }
        settings.forwarded = raw.forwarded.unwrap_or(false);
        if let Some(limit) = raw.max_connections_per_client {
            settings.max_connections_per_client = NonZeroU32::new(limit);
        }
        settings.underscores_in_headers = raw.underscores_in_headers.unwrap_or(false);
        Ok(settings)
    }

    fn upstream(&self, name: &str, value: &Spanned<toml::Value>) -> Result<Upstream, RoutesError> {
        let span = value.span();
        let fail =
            |reason: String| self.error(Some(span.clone()), format!("upstream {name:?}: {reason}"));
        let raw = match value.get_ref() {
            toml::Value::Array(_) => RawUpstream {
                targets: value.get_ref().clone().try_into().map_err(|_| {
                    fail(
                        "targets must be strings like \"http://host:port\" or tables like \
                         { url = \"http://host:port\", weight = 90 }"
                            .into(),
                    )
                })?,
                balance: None,
                health_check: None,
                eject: None,
                ca: None,
                host: None,
            },
            toml::Value::Table(_) => value
                .get_ref()
                .clone()
                .try_into()
                .map_err(|err: toml::de::Error| fail(err.message().trim().to_owned()))?,
            _ => {
                return Err(fail(
                    "must be a list of targets or a table with `targets`".into(),
                ));
            }
        };
        if raw.targets.is_empty() {
            return Err(fail("has no targets".into()));
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut weighted = false;
        for target in &raw.targets {
            let (url, weight) = match target {
                RawTarget::Url(url) => (url, None),
                RawTarget::Weighted(target) => (&target.url, Some(target.weight)),
            };
            let url = self.value(url, span.clone())?;
            let mut parsed = Target::parse(url.trim()).map_err(fail)?;
            if targets.iter().any(|known| known.url() == parsed.url()) {
                return Err(fail(format!("lists {} twice", parsed.url())));
            }
            if let Some(weight) = weight {
                if weight > MAX_WEIGHT {
                    return Err(fail(format!(
                        "weight {weight} of {} is over {MAX_WEIGHT}",
                        parsed.url()
                    )));
                }
                parsed.weight = weight;
                weighted = true;
            }
            targets.push(parsed);
        }
        if targets.iter().all(|target| target.weight == 0) {
            return Err(fail(
                "every target has weight 0: nothing would be served (drain a target only while \
                 another one has a weight)"
                    .into(),
            ));
        }
        let balance = match raw.balance.as_deref() {
            None | Some("p2c") => Balance::PowerOfTwoChoices,
            Some("round_robin") => Balance::RoundRobin,
            Some(other) => {
                return Err(fail(format!(
                    "balance {other:?} is not one of \"p2c\", \"round_robin\""
                )));
            }
        };
        let health_check = raw
            .health_check
            .map(|check| {
                if !check.path.starts_with('/') {
                    return Err(fail(format!(
                        "health_check path {:?} must start with /",
                        check.path
                    )));
                }
                let duration = |raw: &Option<String>, what: &str, default: Duration| match raw {
                    Some(raw) => self.duration(raw, span.clone(), what),
                    None => Ok(default),
                };
                Ok(HealthCheck {
                    path: check.path,
                    interval: duration(
                        &check.interval,
                        "health_check interval",
                        Duration::from_secs(5),
                    )?,
                    timeout: duration(
                        &check.timeout,
                        "health_check timeout",
                        Duration::from_secs(1),
                    )?,
                })
            })
            .transpose()?;
        let eject = match raw.eject {
            None => Eject::default(),
            Some(eject) => Eject {
                failures: match eject.failures {
                    Some(0) => return Err(fail("eject failures must be at least 1".into())),
                    Some(failures) => failures,
                    None => Eject::default().failures,
                },
                cooldown: match &eject.cooldown {
                    Some(raw) => self.duration(raw, span.clone(), "eject cooldown")?,
                    None => Eject::default().cooldown,
                },
            },
        };
        let host = raw
            .host
            .as_deref()
            .map(|host| {
                let host = self.value(host, span.clone())?;
                match host.parse::<http::uri::Authority>() {
                    Ok(authority) if authority.as_str() == host.trim() => {
                        http::HeaderValue::from_str(authority.as_str())
                            .map_err(|_| fail(format!("host {host:?} is not a host name")))
                    }
                    _ => Err(fail(format!(
                        "host {host:?} is not a host name like \"api.example.com\""
                    ))),
                }
            })
            .transpose()?;
        let https = targets.iter().any(|target| target.https);
        let ca = raw
            .ca
            .as_deref()
            .map(|ca| self.value(ca, span.clone()))
            .transpose()?;
        if ca.is_some() && !https {
            return Err(fail(
                "has a ca but no https:// target to verify with it".into(),
            ));
        }
        let tls = if https {
            // The CA file is read now: a broken one is refused like any other bad edit.
            let server_name = host
                .as_ref()
                .and_then(|host| host.to_str().ok())
                .map(|host| host.split(':').next().unwrap_or(host));
            let tls = UpstreamTls::new(ca.as_deref().map(Path::new), server_name).map_err(fail)?;
            Some(Arc::new(tls))
        } else {
            None
        };
        Ok(Upstream {
            name: name.to_owned(),
            targets,
            balance,
            health_check,
            eject,
            weighted,
            tls,
            host,
        })
    }

    fn cors(&self, raw: &RawCors) -> Result<Cors, RoutesError> {
        let mut origins = Vec::new();
        for origin in &raw.origins {
            let text = self.spanned(origin)?;
            let normalized = normalize_origin(&text).map_err(|reason| {
                self.error(Some(origin.span()), format!("cors origins: {reason}"))
            })?;
            origins.push(normalized);
        }
        let mut cors = Cors {
            origins,
            ..Cors::default()
        };
        if let Some(headers) = &raw.allow_headers {
            cors.allow_headers = headers
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
        }
        if let Some(max_age) = &raw.max_age {
            cors.max_age = self.spanned_duration(max_age, "cors max_age")?;
        }
        Ok(cors)
    }
}

/// `"64KiB"`, `"1 MB"`, `"1048576"` → bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"64KiB\" or \"1MB\""))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path. `*` is refused:
/// credentialed requests must never be allowed from any origin.
fn normalize_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Err(
            "\"*\" is not allowed: list each origin (credentials are never shared with any origin)"
                .into(),
        );
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not an origin like https://app.example.com"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if !matches!(scheme, "http" | "https") || uri.authority().is_none() {
        return Err(format!(
            "{text:?} is not an origin like https://app.example.com"
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{text:?} has a path; an origin is scheme://host[:port]"
        ));
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(format!("{scheme}://{authority}"))
}

/// A route path: starts with `/`, has no query, fragment or empty/dot segments; a trailing
/// slash is dropped (`/api/` routes like `/api`).
fn normalize_path(raw: &str) -> Result<String, String> {
    let path = raw.trim();
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    if path.contains(['?', '#', ' ', '%']) {
        return Err(format!(
            "path {path:?} must be a plain path prefix (no query, fragment, spaces or escapes)"
        ));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed
        .split('/')
        .skip(1)
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!("path {path:?} has an empty, . or .. segment"));
    }
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[upstreams]
writer = ["${WRITER_URL:-http://127.0.0.1:8090}"]
reader = ["http://127.0.0.1:8091", "http://127.0.0.1:8092"]

[[routes]]
path = "/"
upstream = "reader"

[[routes]]
path = "/login/"
upstream = "writer"
timeout = "5s"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_err(text: &str) -> RoutesError {
        parse(Path::new("routes.toml"), text, no_env).expect_err("must be refused")
    }

    #[test]
    fn parses_the_schema() {
        let table = parse(Path::new("routes.toml"), GOOD, no_env).expect("valid");
        let login = table.route("/login").expect("routed");
        assert_eq!(login.path, "/login");
        assert_eq!(login.upstream.name, "writer");
        assert_eq!(login.timeout, Duration::from_secs(5));
        assert_eq!(login.upstream.targets[0].url(), "http://127.0.0.1:8090");
        let root = table.route("/x").expect("routed");
        assert_eq!(root.upstream.targets.len(), 2);
        assert_eq!(root.timeout, Settings::default().request_timeout);
    }

    #[test]
    fn interpolates_from_the_environment() {
        let env = |name: &str| (name == "WRITER_URL").then(|| "http://writer:8090".to_owned());
        let table = parse(Path::new("r.toml"), GOOD, env).expect("valid");
        let login = table.route("/login").expect("routed");
        assert_eq!(login.upstream.targets[0].url(), "http://writer:8090");
    }

    #[test]
    fn syntax_errors_carry_file_and_line() {
        let err = parse_err("[upstreams]\nwriter = [\"http://x:1\"\n\n[[routes]]\n");
        assert_eq!(err.file, Path::new("routes.toml"));
        assert!(err.line.is_some(), "{err}");
        assert!(err.to_string().starts_with("routes.toml:"), "{err}");
    }

    #[test]
    fn unknown_upstream_names_the_line() {
        let text = "[upstreams]\nwriter = [\"http://x:1\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"wirter\"\n";
        let err = parse_err(text);
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.reason.contains("\"wirter\" is not defined"), "{err}");
        assert!(err.reason.contains("defined: writer"), "{err}");
    }

    #[test]
    fn targets_may_carry_weights_and_not_all_of_them_zero() {
        let route = "[[routes]]\npath = \"/\"\nupstream = \"app\"\n";
        let text = format!(
            "[upstreams]\napp = [{{ url = \"http://blue:1\", weight = 90 }}, \"http://green:1\", \
             {{ url = \"http://old:1\", weight = 0 }}]\n{route}"
        );
        let table = parse(Path::new("routes.toml"), &text, no_env).expect("valid");
        let app = &table.upstreams["app"];
        assert!(app.weighted);
        let weights: Vec<u32> = app.targets.iter().map(|t| t.weight).collect();
        assert_eq!(weights, [90, 1, 0], "a target without a weight has 1");
        let plain = format!("[upstreams]\napp = [\"http://a:1\", \"http://b:1\"]\n{route}");
        let table = parse(Path::new("routes.toml"), &plain, no_env).expect("valid");
        assert!(
            !table.upstreams["app"].weighted,
            "no weight written: per-address balancing"
        );

        for (targets, expected) in [
            (
                "[{ url = \"http://a:1\", weight = 0 }, { url = \"http://b:1\", weight = 0 }]",
                "every target has weight 0",
            ),
            (
                "[{ url = \"http://a:1\", weight = 2000000 }]",
                "weight 2000000 of http://a:1 is over 1000000",
            ),
            ("[{ url = \"http://a:1\", weight = -1 }]", "tables like"),
            ("[{ url = \"http://a:1\", share = 5 }]", "tables like"),
            (
                "[\"http://a:1\", { url = \"http://a:1\", weight = 3 }]",
                "lists http://a:1 twice",
            ),
        ] {
            let err = parse_err(&format!("[upstreams]\napp = {targets}\n{route}"));
            assert!(err.reason.contains(expected), "{targets}: {err}");
            assert_eq!(err.line, Some(2), "{targets}: {err}");
        }
    }

    #[test]
    fn https_targets_take_a_ca_and_a_host() {
        let route = "[[routes]]\npath = \"/\"\nupstream = \"api\"\n";
        let parse_api = |lines: &str| {
            parse(
                Path::new("routes.toml"),
                &format!("[upstreams.api]\n{lines}\n{route}"),
                no_env,
            )
        };
        let table = parse_api(
            "targets = [\"https://api.example.com\"]\nca = \"tests/schema/example-ca.pem\"\nhost = \"api.example.com\"",
        )
        .expect("valid");
        let api = &table.upstreams["api"];
        assert!(api.targets[0].https);
        assert_eq!(api.targets[0].port, 443);
        assert_eq!(
            api.host.as_ref().map(|h| h.as_bytes()),
            Some(&b"api.example.com"[..])
        );
        assert!(
            api.tls
                .as_ref()
                .is_some_and(|tls| tls.roots.ends_with("example-ca.pem"))
        );
        let web = parse_api("targets = [\"https://api.example.com\"]").expect("valid");
        assert!(
            web.upstreams["api"]
                .tls
                .as_ref()
                .is_some_and(|tls| tls.roots == "web roots")
        );

        for (lines, expected) in [
            (
                "targets = [\"http://a:1\"]\nca = \"tests/schema/example-ca.pem\"",
                "has a ca but no https:// target",
            ),
            (
                "targets = [\"https://a:1\"]\nca = \"/nonexistent/ca.pem\"",
                "ca /nonexistent/ca.pem: ",
            ),
            (
                "targets = [\"https://a:1\"]\nca = \"Cargo.toml\"",
                "holds no PEM certificate",
            ),
            (
                "targets = [\"https://a:1\"]\nhost = \"a b\"",
                "is not a host name",
            ),
            (
                "targets = [\"ftp://a:1\"]",
                "must start with http:// or https://",
            ),
        ] {
            let err = parse_api(lines).expect_err(lines);
            assert!(err.reason.contains(expected), "{lines}: {err}");
        }
    }

    #[test]
    fn door_checks_are_named_by_routes_and_validated() {
        let base = "[upstreams]\nreader = [\"http://x:1\"]\ngreeter = [\"http://x:2\"]\n\
            [[routes]]\npath = \"/\"\nupstream = \"reader\"\n\
            [[routes]]\npath = \"/greet\"\nupstream = \"greeter\"\nauth = \"session\"\n";
        let text = format!("{base}[auth.session]\nupstream = \"reader\"\npath = \"/session\"\n");
        let table = parse(Path::new("routes.toml"), &text, no_env).expect("valid");
        let check = table
            .route("/greet")
            .and_then(|route| route.auth.as_ref())
            .expect("checked");
        assert_eq!(
            (check.name.as_str(), check.route.path.as_str()),
            ("session", "/session")
        );
        assert_eq!(check.route.upstream.name, "reader");
        assert_eq!(*check.headers, [http::HeaderName::from_static("x-user-id")]);
        assert_eq!(check.route.timeout, DEFAULT_CHECK_TIMEOUT);
        assert!(!check.pass_session, "the session is held back by default");
        assert_eq!(check.session_cookie, "sid");
        assert!(table.route("/").is_some_and(|route| route.auth.is_none()));
        let passing = format!(
            "{base}[auth.session]\nupstream = \"reader\"\npath = \"/session\"\npass_session = true\nsession_cookie = \"__Host-sid\"\n"
        );
        let table = parse(Path::new("routes.toml"), &passing, no_env).expect("valid");
        let check = table
            .route("/greet")
            .and_then(|route| route.auth.as_ref())
            .expect("checked");
        assert!(check.pass_session);
        assert_eq!(check.session_cookie, "__Host-sid");
        let bad = format!(
            "{base}[auth.session]\nupstream = \"reader\"\npath = \"/session\"\nsession_cookie = \"s id\"\n"
        );
        let err = parse(Path::new("routes.toml"), &bad, no_env).expect_err("refused");
        assert!(err.to_string().contains("is not a cookie name"), "{err}");

        for (check, expected, line) in [
            ("", "there is no [auth.session] check in this file", 10),
            (
                "[auth.other]\nupstream = \"reader\"\npath = \"/s\"\n",
                "there is no [auth.session] (defined: [auth.other])",
                10,
            ),
            (
                "[auth.session]\nupstream = \"nobody\"\npath = \"/s\"\n",
                "upstream \"nobody\" is not defined",
                12,
            ),
            (
                "[auth.session]\nupstream = \"reader\"\npath = \"session\"\n",
                "must be a path like \"/session\"",
                13,
            ),
            (
                "[auth.session]\nupstream = \"reader\"\npath = \"/s\"\nheaders = [\"x user\"]\n",
                "\"x user\" is not a header name",
                14,
            ),
            (
                "[auth.session]\nupstream = \"reader\"\npath = \"/s\"\ntimeout = \"0s\"\n",
                "timeout must be more than zero",
                14,
            ),
        ] {
            let err = parse_err(&format!("{base}{check}"));
            assert!(err.reason.contains(expected), "{check:?}: {err}");
            assert_eq!(err.line, Some(line), "{check:?}: {err}");
        }
    }

    #[test]
    fn prefixes_are_stripped_or_rewritten_as_a_route_says() {
        let text = "[upstreams]\nw = [\"http://x:1\"]\n\
            [[routes]]\npath = \"/api\"\nupstream = \"w\"\nstrip_prefix = true\n\
            [[routes]]\npath = \"/old\"\nupstream = \"w\"\nrewrite = \"/v2/\"\n\
            [[routes]]\npath = \"/\"\nupstream = \"w\"\n";
        let table = parse(Path::new("routes.toml"), text, no_env).expect("valid");
        let forwarded = |path: &str| {
            table
                .route(path)
                .and_then(|route| route.forwarded_path(path))
        };
        assert_eq!(forwarded("/api/x/y").as_deref(), Some("/x/y"));
        assert_eq!(forwarded("/api").as_deref(), Some("/"));
        assert_eq!(forwarded("/api/").as_deref(), Some("/"));
        assert_eq!(forwarded("/old/a").as_deref(), Some("/v2/a"));
        assert_eq!(forwarded("/old").as_deref(), Some("/v2"));
        assert_eq!(
            forwarded("/apix"),
            None,
            "the root route, which forwards as routed"
        );

        let base = "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\nupstream = \"w\"\n";
        for (lines, expected, line) in [
            (
                "path = \"/a\"\nstrip_prefix = true\nrewrite = \"/b\"",
                "keep one",
                6,
            ),
            (
                "path = \"/\"\nstrip_prefix = true",
                "would change nothing",
                6,
            ),
            (
                "path = \"/a\"\nrewrite = \"b\"",
                "rewrite: path \"b\" must start with /",
                6,
            ),
            ("path = \"/a\"\nrewrite = \"/b/../c\"", "rewrite: path", 6),
        ] {
            let err = parse_err(&format!("{base}{lines}\n"));
            assert!(err.reason.contains(expected), "{lines}: {err}");
            assert_eq!(err.line, Some(line), "{lines}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse_err(
            "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\ntimout = \"1s\"\n",
        );
        assert!(err.reason.contains("timout"), "{err}");
        assert_eq!(err.line, Some(6), "{err}");
        let err = parse_err("[upstream]\nw = [\"http://x:1\"]\n");
        assert!(err.reason.contains("upstream"), "{err}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let base = "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\nupstream = \"w\"\n";
        for (path_line, expected) in [
            ("path = \"login\"", "must start with /"),
            ("path = \"/a?b\"", "plain path prefix"),
            ("path = \"/a//b\"", "empty, . or .. segment"),
            ("path = \"/a/../b\"", "empty, . or .. segment"),
        ] {
            let err = parse_err(&format!("{base}{path_line}\n"));
            assert!(err.reason.contains(expected), "{path_line}: {err}");
            assert_eq!(err.line, Some(5), "{err}");
        }
        let err = parse_err(
            "[upstreams]\nw = [\"ws://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("http:// or https://"), "{err}");
        assert_eq!(err.line, Some(2));
        let err = parse_err("[upstreams]\nw = []\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n");
        assert!(err.reason.contains("no targets"), "{err}");
        let err = parse_err("[upstreams]\nw = [\"http://x:1\"]\n");
        assert!(err.reason.contains("no [[routes]]"), "{err}");
        let err = parse_err(
            "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("already routed on line 4"), "{err}");
        let err = parse_err(
            "[settings]\nrequest_timeout = \"soon\"\n[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("not a duration"), "{err}");
        assert_eq!(err.line, Some(2));
        let err = parse_err(
            "[settings]\ntrusted_proxies = [\"10.0.0.0/33\"]\n[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("CIDR"), "{err}");
    }

    /// The README's full example must stay a valid file, with every key it shows.
    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## routes.toml").expect("section")..];
        let start = section.find("```toml\n").expect("example") + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").expect("end")];
        let table = parse(Path::new("README.md"), example, no_env).expect("README example");
        assert_eq!(table.settings.max_header_bytes, 16 * 1024);
        assert!(table.settings.forwarded);
        let reader = &table.upstreams["reader"];
        assert_eq!(reader.targets.len(), 2);
        assert!(reader.health_check.is_some());
        let login = table.route("/login").expect("route");
        assert_eq!(login.max_body, Some(64 * 1024));
        assert_eq!(table.cors.as_ref().map(|c| c.origins.len()), Some(1));
    }

    #[test]
    fn long_form_upstreams_are_validated() {
        let base = |upstream: &str| {
            format!("[upstreams.u]\n{upstream}\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n")
        };
        let err = parse_err(&base("targets = [\"http://x:1\"]\nbalnce = \"p2c\""));
        assert!(err.reason.contains("balnce"), "{err}");
        assert_eq!(err.line, Some(1), "{err}");
        let err = parse_err(&base("targets = [\"http://x:1\"]\nbalance = \"random\""));
        assert!(err.reason.contains("not one of"), "{err}");
        let err = parse_err(&base(
            "targets = [\"http://x:1\"]\nhealth_check = { path = \"healthz\" }",
        ));
        assert!(err.reason.contains("must start with /"), "{err}");
        let err = parse_err(&base(
            "targets = [\"http://x:1\"]\neject = { failures = 0 }",
        ));
        assert!(err.reason.contains("at least 1"), "{err}");
        let err = parse_err(&base("targets = []"));
        assert!(err.reason.contains("no targets"), "{err}");
        let err = parse_err("[upstreams]\nu = 3\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n");
        assert!(err.reason.contains("list of targets"), "{err}");
    }

    #[test]
    fn sizes_cors_and_settings_are_validated() {
        let route = |extra: &str| {
            format!(
                "[upstreams]\nw = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n{extra}\n"
            )
        };
        let table = parse(Path::new("r"), &route("max_body = 2048"), no_env).expect("bytes");
        assert_eq!(table.routes[0].max_body, Some(2048));
        let table = parse(Path::new("r"), &route("max_body = \"1MB\""), no_env).expect("unit");
        assert_eq!(table.routes[0].max_body, Some(1_000_000));
        assert!(
            parse_err(&route("max_body = \"1 parsec\""))
                .reason
                .contains("unknown unit")
        );
        assert!(
            parse_err(&route("max_body = 0"))
                .reason
                .contains("more than zero")
        );
        let cors = |origins: &str| format!("{}[cors]\norigins = [{origins}]\n", route(""));
        assert!(parse_err(&cors("\"*\"")).reason.contains("not allowed"));
        assert!(
            parse_err(&cors("\"https://a.test/path\""))
                .reason
                .contains("path")
        );
        assert!(
            parse_err(&cors("\"ftp://a.test\""))
                .reason
                .contains("not an origin")
        );
        let table =
            parse(Path::new("r"), &cors("\"HTTPS://App.Test:8443\""), no_env).expect("origin");
        assert_eq!(table.cors.expect("cors").origins, ["https://app.test:8443"]);
        let settings = |line: &str| format!("[settings]\n{line}\n{}", route(""));
        assert!(
            parse_err(&settings("max_header_bytes = 1024"))
                .reason
                .contains("at least 8KiB")
        );
        assert!(
            parse_err(&settings("idle_timeout = \"0s\""))
                .reason
                .contains("more than zero")
        );
        assert!(parse_err(&settings("forwarded = \"yes\"")).line.is_some());
    }

    #[test]
    fn unset_variables_are_errors() {
        let err = parse_err(
            "[upstreams]\nw = [\"${NOPE}\"]\n[[routes]]\npath = \"/\"\nupstream = \"w\"\n",
        );
        assert!(err.reason.contains("NOPE is not set"), "{err}");
        assert_eq!(err.line, Some(2));
    }
}
