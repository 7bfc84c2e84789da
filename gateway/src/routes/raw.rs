//! `routes.toml` as written: serde structs that refuse unknown keys, each value kept with its
//! place in the file (`Spanned`, or a [`Text`] that holds one) so that the validator
//! ([`super::parse`]) can say `file:line` for any of them.
//!
//! These types are also the file's JSON Schema (`gateway schema`, see [`super::schema`]): their
//! doc comments are what an editor shows for each key, so they are written for whoever edits
//! routes.toml. A `Spanned<T>` is described as the `T` it holds; a text value's pattern comes
//! from [`super::values`], beside the parser that reads it.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer},
};
use toml::Spanned;

use super::values::{Duration, Origin, PathPrefix, RateText, SIZE_PATTERN, TargetUrl, Text};

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
    pub settings: Option<Spanned<RawSettings>>,
    /// The upstreams routes send requests to, by name: a list of targets
    /// (`writer = ["http://127.0.0.1:8090"]`) or a table with `targets` and options.
    #[schemars(with = "BTreeMap<String, RawUpstreamEntry>")]
    pub upstreams: BTreeMap<String, Spanned<RawUpstreamEntry>>,
    /// One `[[routes]]` table per path prefix; the longest matching path wins, order does not
    /// matter. At least one.
    #[serde(default)]
    #[schemars(with = "Vec<RawRoute>", length(min = 1))]
    pub routes: Vec<Spanned<RawRoute>>,
    /// Cross-origin requests: the gateway answers preflights for the listed origins and adds
    /// the CORS headers to their responses. Without it, no CORS header is sent.
    #[serde(default)]
    #[schemars(with = "Option<RawCors>")]
    pub cors: Option<Spanned<RawCors>>,
    /// Door checks by name, `[auth.session]`: a route with `auth = "session"` forwards a
    /// request only after the check's upstream answered 2xx for it.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawCheck>")]
    pub auth: BTreeMap<String, Spanned<RawCheck>>,
    /// Rate limits by name, `[limits.per-client]`: a route with `limit = "per-client"` answers
    /// 429 with Retry-After to requests over it, and its upstream never sees them.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawLimit>")]
    pub limits: BTreeMap<String, Spanned<RawLimit>>,
}

/// Gateway-wide settings; every key is optional.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    /// Time for an upstream to answer with its headers, then 504; a route's `timeout`
    /// overrides it. Default "30s".
    pub request_timeout: Option<Text<Duration>>,
    /// Time to open a connection to an upstream address, then the next address or 502.
    /// Default "2s".
    pub connect_timeout: Option<Text<Duration>>,
    /// Client connections idle (or slow to send their headers) this long are closed.
    /// Default "60s".
    pub idle_timeout: Option<Text<Duration>>,
    /// On SIGTERM or Ctrl-C: time left to requests in flight and tunnels. Default "10s".
    pub shutdown_grace: Option<Text<Duration>>,
    /// Host names of targets are resolved again this often. Default "5s".
    pub resolve_interval: Option<Text<Duration>>,
    /// Largest request head (request line and headers); larger ones get 431. At least 8KiB
    /// (8192). Default "16KiB".
    #[schemars(with = "Option<RawSize>")]
    pub max_header_bytes: Option<Spanned<RawSize>>,
    /// Peers (IP addresses or CIDR ranges, "10.0.0.0/8") whose X-Forwarded-* and Forwarded
    /// headers are kept and appended to; from any other peer they are replaced. Default none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Also send an RFC 7239 Forwarded header to upstreams. Default false.
    pub forwarded: Option<bool>,
    /// Most connections one client (an IPv4 address, or an IPv6 /64) may hold open; more are
    /// closed at once and counted in gateway_connections_refused_total. Trusted proxies are
    /// not limited. 0: no limit. Default 256.
    pub max_connections_per_client: Option<u32>,
    /// Forward request headers whose names contain "_" (X_User_Id). Default false: they are
    /// dropped, since CGI, WSGI, PHP and Rack read them as the "-" spelling.
    pub underscores_in_headers: Option<bool>,
}

/// One entry of `[upstreams]`, in either form: a list of targets (the short form,
/// `writer = ["http://127.0.0.1:8090"]`) is read as the long form with only its `targets`.
#[derive(Debug)]
pub(super) struct RawUpstreamEntry(pub RawUpstream);

/// The long form of an upstream: its targets and how they are balanced and checked.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// Base URLs "http://host:port" (plain HTTP, no path); a host name is resolved to all its
    /// addresses and each is balanced separately. Or { url = "...", weight = 90 }: a target's
    /// share of the requests relative to the others' weights (0 drains it). At least one.
    #[schemars(with = "Vec<RawTarget>", length(min = 1))]
    pub targets: Vec<Spanned<RawTarget>>,
    /// How a request picks an address: "p2c" (the default: the one with fewer requests in
    /// flight of two random addresses) or "round_robin".
    #[schemars(with = "Option<String>", extend("enum" = ["p2c", "round_robin"]))]
    pub balance: Option<Spanned<String>>,
    /// Active health checks: each address is asked for `path` every `interval`; one that fails
    /// is not used until it answers again. Default: none.
    pub health_check: Option<RawHealthCheck>,
    /// Passive health: an address is taken out after `failures` connection failures in a row,
    /// for `cooldown`. Default failures 1, cooldown "10s".
    pub eject: Option<RawEject>,
    /// For https:// targets: a PEM file of the CA certificates to verify them against, in place
    /// of the web's roots (a private CA). Verification is never skipped.
    #[schemars(with = "Option<String>")]
    pub ca: Option<Spanned<String>>,
    /// The Host header sent to this upstream, and the TLS name asked for and verified, in place
    /// of the client's Host: "api.example.com" for an external service. Default: the client's.
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// Most requests in flight to this upstream, from every route and worker together; one
    /// more gets 503 {"error":"overloaded"} with Retry-After: 1 at once, and the upstream is
    /// not asked. At least 1. Default: no cap.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_in_flight: Option<Spanned<u32>>,
}

/// A target: its URL alone, or its URL and weight.
#[derive(Debug)]
pub(super) enum RawTarget {
    Url(String),
    Weighted(RawWeightedTarget),
}

/// A target with a weight: `{ url = "http://blue:8091", weight = 90 }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeightedTarget {
    /// "http://host:port", as a target written alone.
    pub url: Text<TargetUrl>,
    /// Its share of the upstream's requests relative to the other targets' weights: 90 and 10
    /// send 90 % here. 0 drains it (no new requests; those in flight finish). A target written
    /// without a weight has 1.
    #[schemars(with = "u32", range(max = 1_000_000))]
    pub weight: Spanned<u32>,
}

/// Active health checks of an upstream's addresses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    /// The path asked with GET, "/healthz": any 2xx answer is healthy. Starts with /.
    #[schemars(with = "String", pattern(r"^/"))]
    pub path: Spanned<String>,
    /// How often each address is checked. Default "5s".
    pub interval: Option<Text<Duration>>,
    /// How long a check may take before it counts as failed. Default "1s".
    pub timeout: Option<Text<Duration>>,
}

/// Passive health: when an address is taken out of use.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEject {
    /// Connection failures in a row that take an address out. At least 1; default 1.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub failures: Option<Spanned<u32>>,
    /// How long an ejected address stays out before it is tried again. Default "10s".
    pub cooldown: Option<Text<Duration>>,
}

/// One route: requests whose path is `path` or below it go to `upstream`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("dependencies" = { "allow_groups": ["auth"] }))]
pub(super) struct RawRoute {
    /// The path prefix, "/login": matches /login and /login/..., never /loginx. Starts with /,
    /// no query, empty or dot segments; each path is routed once. "/" catches everything else.
    pub path: Text<PathPrefix>,
    /// The name of an upstream defined in [upstreams].
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// Time for the upstream to answer with its headers on this route, then 504. Default:
    /// settings.request_timeout.
    pub timeout: Option<Text<Duration>>,
    /// Largest request body on this route; larger ones get 413. Default: no limit.
    #[schemars(with = "Option<RawSize>")]
    pub max_body: Option<Spanned<RawSize>>,
    /// true: forward the path without the route's prefix (/api/users as /users, /api as /).
    /// Not with `rewrite`, not on the root route. Default false.
    #[schemars(with = "Option<bool>")]
    pub strip_prefix: Option<Spanned<bool>>,
    /// Another prefix to put in place of the route's: "/v2" forwards /api/users as /v2/users.
    /// Not with `strip_prefix`. Default: the path is forwarded as it came.
    pub rewrite: Option<Text<PathPrefix>>,
    /// false when the upstream's GETs change state: a request on this route that was written
    /// to an upstream is never sent again. Default true.
    pub idempotent: Option<bool>,
    /// The name of a door check in [auth] ("session"): every request on this route is checked
    /// first; it is forwarded with the check's headers (X-User-Id) only when the check answers
    /// 2xx, else the check's answer (401) goes back to the client. Default: no check.
    #[schemars(with = "Option<String>")]
    pub auth: Option<Spanned<String>>,
    /// Only with `auth`: the groups let through ("admins"). After the check passed, its answer's
    /// X-User-Groups (comma-separated) must name at least one of them, else 403
    /// {"error":"forbidden"} and the upstream never sees the request. Default: every user the
    /// check vouched for.
    #[schemars(with = "Option<Vec<String>>", length(min = 1))]
    pub allow_groups: Option<Spanned<Vec<Spanned<String>>>>,
    /// Most requests in flight on this route, from every worker together (a request counts
    /// until its response has been sent, or the client left); one more gets 503
    /// {"error":"overloaded"} with Retry-After: 1 at once, and the upstream is not asked. At
    /// least 1. Default: no cap.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_in_flight: Option<Spanned<u32>>,
    /// The name of a rate limit in [limits] ("per-client"): requests over it get 429
    /// {"error":"rate limited"} with Retry-After, and the upstream never sees them. Default: no
    /// limit.
    #[schemars(with = "Option<String>")]
    pub limit: Option<Spanned<String>>,
    /// true: compress responses on the fly (br, zstd or gzip, as the client's Accept-Encoding
    /// prefers) and add Vary: Accept-Encoding. Only for public or static content: a page that
    /// mixes a secret with text an attacker chose leaks the secret through its compressed size
    /// (BREACH). Never applied to responses already encoded, marked no-transform, under 1KiB,
    /// to HEAD, 204, 304, 206 and text/event-stream. Default false.
    pub compress: Option<bool>,
}

/// A rate limit: a bucket per key that holds `burst` requests and refills at `rate`. Kept
/// across reloads while its settings stay the same.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    /// The sustained rate: "20/s", "100/m", "1000/h".
    pub rate: Text<RateText>,
    /// Requests that may come at once, on top of none for a while. At least 1; default the
    /// rate's number ("20/s": 20).
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub burst: Option<Spanned<u32>>,
    /// Whose requests share a bucket: "client" (the client's address as trusted_proxies
    /// decides it; an IPv6 client by its /64), "user" (the X-User-Id a route's door check
    /// vouched for: only on routes with auth), "route" (one bucket for everyone). Default
    /// "client".
    #[schemars(with = "Option<String>", extend("enum" = ["client", "user", "route"]))]
    pub key: Option<Spanned<String>>,
}

/// A door check: `GET path` on `upstream` with the request's headers (cookie, session header),
/// no body, plus X-Forwarded-Method and X-Forwarded-Uri.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    /// The name of an upstream defined in [upstreams] that answers the check ("reader").
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// The path asked with GET ("/session"): 2xx lets the request through.
    pub path: Text<PathPrefix>,
    /// Headers of a passing answer set on the forwarded request. Whatever the client sent
    /// under these names, and under any name starting with x-user-, is removed first. Default
    /// ["x-user-id", "x-user-name", "x-user-email", "x-user-groups"].
    #[schemars(with = "Option<Vec<String>>")]
    pub headers: Option<Vec<Spanned<String>>>,
    /// How long the check may take, then 503 and nothing forwarded. Default "2s".
    pub timeout: Option<Text<Duration>>,
    /// Also send the session itself (its cookie, Authorization: Session, X-Session-Id) to the
    /// route's upstream, for services that call others as the user. Default false: the
    /// upstream learns who the user is from the check's headers and never holds a credential
    /// for the whole origin.
    pub pass_session: Option<bool>,
    /// The session cookie's name (the services' SESSION_COOKIE_NAME), held back from the
    /// route's upstream unless pass_session. Default "sid".
    #[schemars(with = "Option<String>")]
    pub session_cookie: Option<Spanned<String>>,
}

/// Cross-origin requests from browsers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    /// Exact origins allowed, with credentials: "https://app.example.com" (scheme://host[:port],
    /// no path). "*" is refused.
    pub origins: Vec<Text<Origin>>,
    /// Request headers a preflight may ask for. Default "content-type", "authorization",
    /// "x-request-id", "x-session-id".
    pub allow_headers: Option<Vec<String>>,
    /// How long browsers may cache a preflight answer. Default "10m".
    pub max_age: Option<Text<Duration>>,
}

/// A size: a number of bytes (16384), or a string with a unit B, KB, KiB, MB, MiB, GB or GiB
/// ("64KiB", "1MB"; KB is 1000 bytes, KiB 1024).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(#[schemars(range(min = 1))] u64),
    Text(#[schemars(pattern(SIZE_PATTERN))] String),
}

// The two values that take more than one shape, a list or a table and a string or a table, are
// read by what the file holds rather than by trying each shape in turn (`untagged`): that keeps
// the places of the values inside them, and a mistake inside is reported where it is.

/// What an upstream that is neither a list nor a table is told. The validator tells it, from the
/// value itself: a visitor cannot, since toml hands it a date as a table.
pub(super) const NOT_AN_UPSTREAM: &str = "must be a list of targets or a table with `targets`";

/// What a target that is neither a string nor a `{ url, weight }` table is told.
const NOT_A_TARGET: &str = "targets must be strings like \"http://host:port\" or tables like \
     { url = \"http://host:port\", weight = 90 }";

impl<'de> Deserialize<'de> for RawUpstreamEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EitherForm)
    }
}

/// Reads an upstream's short form from a list and its long form from a table.
struct EitherForm;

impl<'de> Visitor<'de> for EitherForm {
    type Value = RawUpstreamEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NOT_AN_UPSTREAM)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut list: A) -> Result<Self::Value, A::Error> {
        let mut targets = Vec::new();
        while let Some(target) = list.next_element()? {
            targets.push(target);
        }
        Ok(RawUpstreamEntry(RawUpstream {
            targets,
            ..RawUpstream::default()
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, table: A) -> Result<Self::Value, A::Error> {
        RawUpstream::deserialize(MapAccessDeserializer::new(table)).map(RawUpstreamEntry)
    }
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EitherTarget)
    }
}

/// Reads a target from a string (its URL) or a table (its URL and weight). Any mistake in a
/// target is told [`NOT_A_TARGET`], at the target's place.
struct EitherTarget;

impl<'de> Visitor<'de> for EitherTarget {
    type Value = RawTarget;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NOT_A_TARGET)
    }

    fn visit_str<E: de::Error>(self, url: &str) -> Result<Self::Value, E> {
        Ok(RawTarget::Url(url.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, table: A) -> Result<Self::Value, A::Error> {
        RawWeightedTarget::deserialize(MapAccessDeserializer::new(table))
            .map(RawTarget::Weighted)
            .map_err(|_| de::Error::custom(NOT_A_TARGET))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(NOT_A_TARGET))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_TARGET))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_TARGET))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_TARGET))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_A_TARGET))
    }
}

impl JsonSchema for RawUpstreamEntry {
    fn schema_name() -> Cow<'static, str> {
        "Upstream".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let target = generator.subschema_for::<RawTarget>();
        let long = generator.subschema_for::<RawUpstream>();
        json_schema!({
            "description": "An upstream: its targets, [\"http://host:port\", ...] (short \
                form), or a table with `targets` and options (long form).",
            "anyOf": [
                {
                    "type": "array",
                    "items": target,
                    "minItems": 1,
                    "description": "Short form: the targets, balanced with \"p2c\".",
                },
                long,
            ],
        })
    }
}

impl JsonSchema for RawTarget {
    fn schema_name() -> Cow<'static, str> {
        "TargetEntry".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let target = generator.subschema_for::<Text<TargetUrl>>();
        let weighted = generator.subschema_for::<RawWeightedTarget>();
        json_schema!({
            "description": "A target, \"http://host:port\", or { url = \"http://host:port\", \
                weight = 90 } to give it a share of the requests.",
            "anyOf": [target, weighted],
        })
    }
}
