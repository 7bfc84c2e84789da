//! `[limits.<name>]`: rate limits, each a sustained rate, a burst and what a bucket is kept per;
//! routes name them in `limit`.

use std::{collections::BTreeMap, num::NonZeroU32};

use toml::Spanned;

use super::{
    super::{
        error::RoutesError,
        raw::RawLimit,
        table::{LimitKey, RateLimit},
        values::parse_limit_key,
    },
    context::{Named, Parser},
};

impl Parser<'_> {
    /// Every `[limits.<name>]`, by name.
    pub(super) fn limits(
        &self,
        raw: &BTreeMap<String, Spanned<RawLimit>>,
    ) -> Result<BTreeMap<String, RateLimit>, RoutesError> {
        raw.iter()
            .map(|(name, limit)| Ok((name.clone(), self.limit(name, limit.get_ref())?)))
            .collect()
    }

    /// `[limits.<name>]`: `rate`, `burst` (default: the rate's number) and `key`.
    fn limit(&self, name: &str, raw: &RawLimit) -> Result<RateLimit, RoutesError> {
        let rate = self.read(&raw.rate, |reason| {
            format!("[limits.{name}] rate: {reason}")
        })?;
        let burst = match &raw.burst {
            Some(burst) => NonZeroU32::new(*burst.get_ref()).ok_or_else(|| {
                self.error(
                    Some(burst.span()),
                    format!("[limits.{name}] burst must be at least 1: with 0 nothing would pass"),
                )
            })?,
            None => rate.count,
        };
        let key = match &raw.key {
            Some(key) => parse_limit_key(&self.string(key)?).map_err(|reason| {
                self.error(Some(key.span()), format!("[limits.{name}] {reason}"))
            })?,
            None => LimitKey::Client,
        };
        Ok(RateLimit {
            name: name.to_owned(),
            rate,
            burst,
            key,
        })
    }

    /// The limit a route `named` in `limit = "<name>"`, among `limits`.
    pub fn named_limit<'m, L>(
        &self,
        named: &Named,
        limits: &'m BTreeMap<String, L>,
    ) -> Result<&'m L, RoutesError> {
        let Named { name: wanted, span } = named;
        limits.get(wanted).ok_or_else(|| {
            let known: Vec<String> = limits
                .keys()
                .map(|name| format!("[limits.{name}]"))
                .collect();
            self.error(
                Some(span.clone()),
                if known.is_empty() {
                    format!("limit {wanted:?}: there is no [limits.{wanted}] in this file")
                } else {
                    format!(
                        "limit {wanted:?}: there is no [limits.{wanted}] (defined: {})",
                        known.join(", ")
                    )
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::super::testing::{no_env, parse, parse_err};
    use crate::routes::LimitKey;

    const ROUTES: &str = "[upstreams]\nw = [\"http://x:1\"]\n\
        [[routes]]\npath = \"/\"\nupstream = \"w\"\n\
        [[routes]]\npath = \"/login\"\nupstream = \"w\"\nlimit = \"per-client\"\n";

    #[test]
    fn limits_are_read_with_their_defaults() {
        let text = format!("{ROUTES}[limits.per-client]\nrate = \"20/s\"\n");
        let table = parse(Path::new("routes.toml"), &text, no_env).expect("valid");
        let limit = table
            .route("/login")
            .and_then(|route| route.limit.as_ref())
            .expect("limited");
        assert_eq!(limit.name, "per-client");
        assert_eq!(limit.rate.period(), Duration::from_millis(50));
        assert_eq!(limit.burst.get(), 20, "the rate's number");
        assert_eq!(limit.key, LimitKey::Client);
        assert!(table.route("/").is_some_and(|route| route.limit.is_none()));

        let text =
            format!("{ROUTES}[limits.per-client]\nrate = \"100/m\"\nburst = 5\nkey = \"route\"\n");
        let table = parse(Path::new("routes.toml"), &text, no_env).expect("valid");
        let limit = &table.limits["per-client"];
        assert_eq!(
            (limit.rate.period(), limit.burst.get(), limit.key),
            (Duration::from_millis(600), 5, LimitKey::Route)
        );
    }

    #[test]
    fn mistakes_in_a_limit_name_their_line() {
        for (block, expected, line) in [
            (
                "[limits.per-client]\nrate = \"20\"\n",
                "[limits.per-client] rate: \"20\" is not a rate like \"20/s\"",
                11,
            ),
            (
                "[limits.per-client]\nrate = \"20/d\"\n",
                "is not a rate",
                11,
            ),
            (
                "[limits.per-client]\nrate = \"0/s\"\n",
                "must allow more than zero requests",
                11,
            ),
            (
                "[limits.per-client]\nrate = \"20/s\"\nburst = 0\n",
                "[limits.per-client] burst must be at least 1",
                12,
            ),
            (
                "[limits.per-client]\nrate = \"20/s\"\nkey = \"ip\"\n",
                "key \"ip\" is not one of \"client\", \"user\", \"route\"",
                12,
            ),
            (
                "[limits.per-client]\nrate = \"20/s\"\nburts = 5\n",
                "unknown field `burts`",
                12,
            ),
            (
                "",
                "limit \"per-client\": there is no [limits.per-client] in this file",
                9,
            ),
            (
                "[limits.other]\nrate = \"1/s\"\n",
                "there is no [limits.per-client] (defined: [limits.other])",
                9,
            ),
        ] {
            let err = parse_err(&format!("{ROUTES}{block}"));
            assert!(err.reason.contains(expected), "{block:?}: {err}");
            assert_eq!(err.line, Some(line), "{block:?}: {err}");
        }
    }

    #[test]
    fn a_limit_by_user_needs_a_door_check_that_names_the_user() {
        let upstreams = "[upstreams]\nw = [\"http://x:1\"]\n";
        let limit = "[limits.per-user]\nrate = \"5/s\"\nkey = \"user\"\n";
        let check = "[auth.session]\nupstream = \"w\"\npath = \"/session\"\n";
        let route = |extra: &str| {
            format!(
                "{upstreams}[[routes]]\npath = \"/\"\nupstream = \"w\"\nlimit = \"per-user\"\n{extra}"
            )
        };
        let err = parse_err(&format!("{}{limit}", route("")));
        assert_eq!(err.line, Some(6), "{err}");
        assert!(
            err.reason
                .contains("limit \"per-user\" is kept per user: the route needs auth"),
            "{err}"
        );
        let table = parse(
            Path::new("routes.toml"),
            &format!("{}{limit}{check}", route("auth = \"session\"\n")),
            no_env,
        )
        .expect("valid");
        assert_eq!(
            table.routes[0].limit.as_ref().map(|l| l.key),
            Some(LimitKey::User)
        );
        let without_the_id = format!(
            "{}{limit}{check}headers = [\"x-user-name\"]\n",
            route("auth = \"session\"\n")
        );
        let err = parse_err(&without_the_id);
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.reason.contains("does not copy x-user-id"), "{err}");
    }
}
