//! The values `routes.toml` spells as text, and how each is read: durations, sizes, path
//! prefixes, targets, origins, host, header and cookie names, proxy addresses.
//!
//! A value the JSON Schema describes with a pattern is a [`Kind`]: its name in the schema, its
//! pattern and its parser are one impl, and the tests below hold each pattern to its parser over
//! a table of samples. A pattern accepts everything its parser accepts (an editor never marks a
//! valid file) and refuses what the parser refuses wherever a regex can tell. Every pattern also
//! lets a `${VAR}` through (`\$\{`): what it becomes is only known when the file is loaded.

use std::{borrow::Cow, fmt, marker::PhantomData, net::IpAddr, time};

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::table::{Balance, LimitKey, Rate, Target};

/// A text value the schema describes with a pattern and the validator reads with a parser.
pub(super) trait Kind {
    /// Its name among the schema's `definitions`.
    const NAME: &'static str;
    /// What an editor shows for it.
    const DESCRIPTION: &'static str;
    /// The schema's regex: it accepts every text [`Kind::parse`] accepts, and `${VAR}`.
    const PATTERN: &'static str;
    /// What the text means once read.
    type Value;
    /// Reads `text` (its `${VAR}` already resolved). The error is the reason alone: the caller
    /// says which key it was.
    fn parse(text: &str) -> Result<Self::Value, String>;
}

/// A value of kind `K` as the file spells it, `${VAR}` unresolved, with its place in the file.
/// In the schema it is a string with `K`'s pattern.
pub(super) struct Text<K> {
    spelled: Spanned<String>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Text<K> {
    pub(super) fn spelled(&self) -> &Spanned<String> {
        &self.spelled
    }
}

impl<K> fmt::Debug for Text<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.spelled.fmt(f)
    }
}

impl<'de, K> Deserialize<'de> for Text<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Spanned::deserialize(deserializer).map(|spelled| Self {
            spelled,
            kind: PhantomData,
        })
    }
}

impl<K: Kind> JsonSchema for Text<K> {
    fn schema_name() -> Cow<'static, str> {
        K::NAME.into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": K::PATTERN,
            "description": K::DESCRIPTION,
        })
    }
}

/// A duration as `humantime` reads it: numbers, each with a unit, `"500ms"`, `"30s"`,
/// `"1h 30m"`. Never zero: no timeout or interval of this file means "at once".
#[derive(Debug)]
pub(super) enum Duration {}

impl Kind for Duration {
    const NAME: &'static str = "Duration";
    const DESCRIPTION: &'static str = "A duration: a number and a unit, \"500ms\", \"30s\", \
        \"5m\", \"1h 30m\" (units ms, s, m, h, d and their long names). More than zero.";
    const PATTERN: &'static str = concat!(
        r"^\s*([0-9][0-9\s]*(\.\s*[0-9][0-9\s]*)?",
        r"(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s",
        r"|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w",
        r"|months|month|M|years|year|yrs|yr|y)\s*)+$",
        r"|\$\{"
    );
    type Value = time::Duration;

    fn parse(text: &str) -> Result<time::Duration, String> {
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if !duration.is_zero() => Ok(duration),
            Ok(_) => Err("must be more than zero".into()),
            Err(err) => Err(format!(
                "{text:?} is not a duration like \"500ms\" or \"30s\" ({err})"
            )),
        }
    }
}

/// A route path or a rewrite prefix: starts with `/`, has no query, fragment or empty/dot
/// segments; a trailing slash is dropped (`/api/` routes like `/api`). The pattern checks the
/// leading `/` only (spaces around are trimmed).
#[derive(Debug)]
pub(super) enum PathPrefix {}

impl Kind for PathPrefix {
    const NAME: &'static str = "Path";
    const DESCRIPTION: &'static str = "A path prefix: starts with /, no query, fragment, empty \
        or dot segments; a trailing / is dropped (\"/api/\" is \"/api\").";
    const PATTERN: &'static str = r"^\s*/|\$\{";
    type Value = String;

    fn parse(raw: &str) -> Result<String, String> {
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
}

/// An upstream target, `http://host:port` or `https://host:port` (see [`Target::parse`]). The
/// pattern checks the scheme, in any case, as the URL parser does.
#[derive(Debug)]
pub(super) enum TargetUrl {}

impl Kind for TargetUrl {
    const NAME: &'static str = "Target";
    const DESCRIPTION: &'static str = "A target: \"http://host:port\" or \"https://host:port\" \
        (no path, query or user; port 80 or 443 if left out).";
    const PATTERN: &'static str = r"^\s*[hH][tT][tT][pP][sS]?://|\$\{";
    type Value = Target;

    fn parse(text: &str) -> Result<Target, String> {
        Target::parse(text.trim())
    }
}

/// A CORS origin as browsers send it: `scheme://host[:port]`, lowercased, no path. `*` is
/// refused: credentialed requests must never be allowed from any origin.
#[derive(Debug)]
pub(super) enum Origin {}

impl Kind for Origin {
    const NAME: &'static str = "Origin";
    const DESCRIPTION: &'static str = "An origin as browsers send it: \
        \"https://app.example.com\", scheme://host[:port], no path.";
    const PATTERN: &'static str = r"^\s*[hH][tT][tT][pP][sS]?://|\$\{";
    type Value = String;

    fn parse(text: &str) -> Result<String, String> {
        let text = text.trim();
        if text == "*" {
            return Err(
                "\"*\" is not allowed: list each origin (credentials are never shared \
                 with any origin)"
                    .into(),
            );
        }
        let not_an_origin = || format!("{text:?} is not an origin like https://app.example.com");
        let uri: http::Uri = text.parse().map_err(|_| not_an_origin())?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if !matches!(scheme, "http" | "https") || uri.authority().is_none() {
            return Err(not_an_origin());
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
}

/// A sustained rate, `"20/s"`, `"100/m"`, `"1000/h"`: a number of requests, more than zero, per
/// second, minute or hour.
#[derive(Debug)]
pub(super) enum RateText {}

impl Kind for RateText {
    const NAME: &'static str = "Rate";
    const DESCRIPTION: &'static str = "A sustained rate: requests per second, minute or hour, \
        \"20/s\", \"100/m\", \"1000/h\". More than zero.";
    const PATTERN: &'static str = r"^\s*[0-9]+\s*/\s*[smh]\s*$|\$\{";
    type Value = Rate;

    fn parse(text: &str) -> Result<Rate, String> {
        let not_a_rate =
            || format!("{text:?} is not a rate like \"20/s\", \"100/m\" or \"1000/h\"");
        let (count, unit) = text.split_once('/').ok_or_else(not_a_rate)?;
        let count = count.trim();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_a_rate());
        }
        let per = match unit.trim() {
            "s" => time::Duration::from_secs(1),
            "m" => time::Duration::from_secs(60),
            "h" => time::Duration::from_secs(3600),
            _ => return Err(not_a_rate()),
        };
        let count: u32 = count
            .parse()
            .map_err(|_| format!("{text:?}: the number is too large"))?;
        let count = std::num::NonZeroU32::new(count)
            .ok_or_else(|| format!("{text:?} must allow more than zero requests"))?;
        // One request every `per / count`: a nanosecond at the least, as the buckets count.
        if (per / count.get()).is_zero() {
            return Err(format!("{text:?} is more than one request per nanosecond"));
        }
        Ok(Rate { count, per })
    }
}

/// A size written as text: a number and a unit in any case, `"64KiB"`, `"1 MB"`. The pattern of
/// the text form of `RawSize` (a size may also be a plain number of bytes).
pub(super) const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*([bB]|[kKmMgG][iI]?[bB])?\s*$|\$\{";

/// `"64KiB"`, `"1 MB"`, `"1048576"` → bytes; what [`SIZE_PATTERN`] describes.
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
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

// Values the schema describes without a pattern (an enum, a plain string): only the parser
// knows them.

/// An upstream's `balance`, "p2c" or "round_robin".
pub(super) fn parse_balance(text: &str) -> Result<Balance, String> {
    match text {
        "p2c" => Ok(Balance::PowerOfTwoChoices),
        "round_robin" => Ok(Balance::RoundRobin),
        other => Err(format!(
            "balance {other:?} is not one of \"p2c\", \"round_robin\""
        )),
    }
}

/// A limit's `key`: "client", "user" or "route".
pub(super) fn parse_limit_key(text: &str) -> Result<LimitKey, String> {
    match text {
        "client" => Ok(LimitKey::Client),
        "user" => Ok(LimitKey::User),
        "route" => Ok(LimitKey::Route),
        other => Err(format!(
            "key {other:?} is not one of \"client\", \"user\", \"route\""
        )),
    }
}

/// An upstream's `host`: a host name with an optional port, and nothing else, as a `Host`
/// header value.
pub(super) fn parse_host(host: &str) -> Result<http::HeaderValue, String> {
    match host.parse::<http::uri::Authority>() {
        Ok(authority) if authority.as_str() == host.trim() => {
            http::HeaderValue::from_str(authority.as_str())
                .map_err(|_| format!("host {host:?} is not a host name"))
        }
        _ => Err(format!(
            "host {host:?} is not a host name like \"api.example.com\""
        )),
    }
}

/// A trusted proxy: an IP address or a CIDR range.
pub(super) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

/// A door check's path as the request target it is sent with: a path starting with `/` (a
/// query is allowed; it is not a prefix).
pub(super) fn parse_check_target(path: &str) -> Option<http::uri::PathAndQuery> {
    http::uri::PathAndQuery::try_from(path)
        .ok()
        .filter(|_| path.starts_with('/'))
}

/// A header name a door check copies from its answer.
pub(super) fn parse_header_name(text: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::try_from(text).map_err(|_| format!("{text:?} is not a header name"))
}

/// A cookie name: an HTTP token (RFC 6265 §4.1.1).
pub(super) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the parser and the pattern say of a sample.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Verdict {
        /// Both accept it.
        Valid,
        /// Both refuse it.
        Invalid,
        /// The pattern lets it through, the parser refuses it: beyond what a regex tells.
        OnlyTheParserRefuses,
    }
    use Verdict::*;

    fn pattern_accepts(pattern: &str, text: &str) -> bool {
        jsonschema::draft7::new(&json!({ "type": "string", "pattern": pattern }))
            .expect("a valid pattern")
            .is_valid(&json!(text))
    }

    fn holds(pattern: &str, parses: impl Fn(&str) -> bool, samples: &[(&str, Verdict)]) {
        for &(text, expected) in samples {
            let verdict = match (parses(text), pattern_accepts(pattern, text)) {
                (true, true) => Valid,
                (false, false) => Invalid,
                (false, true) => OnlyTheParserRefuses,
                (true, false) => panic!("{text:?}: the parser accepts it, the pattern refuses it"),
            };
            assert_eq!(verdict, expected, "{text:?}");
        }
    }

    fn kind_holds<K: Kind>(samples: &[(&str, Verdict)]) {
        holds(K::PATTERN, |text| K::parse(text).is_ok(), samples);
        assert!(pattern_accepts(K::PATTERN, "${VAR:-x}"), "{}", K::NAME);
    }

    #[test]
    fn the_duration_pattern_is_what_humantime_reads() {
        kind_holds::<Duration>(&[
            ("500ms", Valid),
            (" 30s ", Valid),
            ("1h 30m", Valid),
            ("1h30m", Valid),
            ("2 days", Valid),
            ("1.5s", Valid),
            ("1 0s", Valid),
            ("3M", Valid),
            ("10µs", Valid),
            ("0s", OnlyTheParserRefuses),
            ("30", Invalid),
            ("", Invalid),
            ("s", Invalid),
            ("5 S", Invalid),
            ("30 sec.", Invalid),
            ("+1s", Invalid),
            ("1h,30m", Invalid),
            ("5 sekunden", Invalid),
        ]);
    }

    #[test]
    fn the_size_pattern_is_what_parse_size_reads() {
        holds(
            SIZE_PATTERN,
            |text| parse_size(text).is_ok(),
            &[
                ("16384", Valid),
                ("64KiB", Valid),
                ("1 MB", Valid),
                (" 64 kib ", Valid),
                ("2gb", Valid),
                ("1B", Valid),
                ("99999999999999999999GB", OnlyTheParserRefuses),
                ("1 parsec", Invalid),
                ("1.5MB", Invalid),
                ("-1", Invalid),
                ("KiB", Invalid),
                ("", Invalid),
            ],
        );
    }

    #[test]
    fn the_path_pattern_lets_every_prefix_through() {
        kind_holds::<PathPrefix>(&[
            ("/", Valid),
            ("/login", Valid),
            (" /api/ ", Valid),
            ("/a/b", Valid),
            ("login", Invalid),
            ("", Invalid),
            ("/a?b", OnlyTheParserRefuses),
            ("/a//b", OnlyTheParserRefuses),
            ("/a/../b", OnlyTheParserRefuses),
        ]);
        assert_eq!(PathPrefix::parse("/api/").as_deref(), Ok("/api"));
        assert_eq!(PathPrefix::parse("/").as_deref(), Ok("/"));
    }

    #[test]
    fn the_target_pattern_lets_every_target_through() {
        kind_holds::<TargetUrl>(&[
            ("http://writer:8090", Valid),
            (" https://api.example.com ", Valid),
            ("HTTP://x:1", Valid),
            ("http://x:1/", Valid),
            ("ftp://x", Invalid),
            ("x:1", Invalid),
            ("http://x:1/path", OnlyTheParserRefuses),
            ("http://u:p@x:1", OnlyTheParserRefuses),
        ]);
    }

    #[test]
    fn the_origin_pattern_lets_every_origin_through() {
        kind_holds::<Origin>(&[
            ("https://app.example.com", Valid),
            ("HTTPS://App.Test:8443", Valid),
            ("http://localhost:3000/", Valid),
            ("*", Invalid),
            ("ftp://a.test", Invalid),
            ("https://a.test/path", OnlyTheParserRefuses),
        ]);
        assert_eq!(
            Origin::parse("HTTPS://App.Test:8443").as_deref(),
            Ok("https://app.test:8443")
        );
    }

    #[test]
    fn the_rate_pattern_is_what_the_rate_parser_reads() {
        kind_holds::<RateText>(&[
            ("20/s", Valid),
            (" 100 / m ", Valid),
            ("1000/h", Valid),
            ("0/s", OnlyTheParserRefuses),
            ("99999999999/s", OnlyTheParserRefuses),
            ("2000000000/s", OnlyTheParserRefuses),
            ("20", Invalid),
            ("20/d", Invalid),
            ("20/sec", Invalid),
            ("-1/s", Invalid),
            ("1.5/s", Invalid),
            ("/s", Invalid),
            ("", Invalid),
        ]);
        let rate = RateText::parse("20/s").expect("a rate");
        assert_eq!(
            (rate.count.get(), rate.per),
            (20, time::Duration::from_secs(1))
        );
        assert_eq!(rate.period(), time::Duration::from_millis(50));
        assert!(parse_limit_key("users").is_err());
    }

    #[test]
    fn names_and_hosts_are_checked() {
        assert!(is_cookie_name("__Host-sid"));
        assert!(!is_cookie_name("s id"));
        assert!(!is_cookie_name(""));
        assert!(parse_host("api.example.com:8443").is_ok());
        assert!(parse_host("a b").is_err());
        assert!(parse_host("a.test/x").is_err());
        assert_eq!(
            parse_net("192.168.1.1").map(|net| net.prefix_len()),
            Some(32)
        );
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_check_target("/session?x=1").is_some());
        assert!(parse_check_target("session").is_none());
    }
}
