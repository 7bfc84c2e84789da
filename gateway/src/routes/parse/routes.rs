//! `[[routes]]`: each path prefix once, the upstream it goes to, its timeout, body limit and cap
//! on requests in flight, what replaces its prefix when forwarded, the door check it asks, the
//! groups that check must name, the rate limit it counts against and whether its responses are
//! compressed.

use std::{
    collections::{BTreeMap, HashMap},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use toml::Spanned;

use crate::capacity::Cap;

use super::{
    super::{
        error::RoutesError,
        raw::RawRoute,
        table::{DoorCheck, LimitKey, RateLimit, Route, Settings, Upstream},
    },
    checks::CheckSpec,
    context::{Named, Parser},
    upstream::Upstreams,
};

/// A route that passed validation, its upstream and door check still names: they are linked
/// once the files the upstreams name are read.
#[derive(Debug)]
pub(super) struct RouteSpec {
    path: String,
    pub upstream: Named,
    timeout: Duration,
    max_body: Option<u64>,
    forward_as: Option<String>,
    idempotent: bool,
    pub auth: Option<Named>,
    allow_groups: Option<Box<[String]>>,
    max_in_flight: Option<NonZeroU32>,
    pub limit: Option<Named>,
    compress: bool,
}

impl RouteSpec {
    /// The route, sent to `upstream` after `auth`, counted against `limit` (the ones it names).
    pub(super) fn link(
        self,
        upstream: Arc<Upstream>,
        auth: Option<Arc<DoorCheck>>,
        limit: Option<Arc<RateLimit>>,
    ) -> Route {
        Route {
            path: self.path,
            upstream,
            timeout: self.timeout,
            max_body: self.max_body,
            forward_as: self.forward_as,
            idempotent: self.idempotent,
            auth,
            allow_groups: self.allow_groups,
            max_in_flight: self.max_in_flight.map(Cap::new),
            limit,
            compress: self.compress,
        }
    }
}

impl Parser<'_> {
    /// Every route, each path routed once.
    pub(super) fn routes(
        &self,
        raw: &[Spanned<RawRoute>],
        settings: &Settings,
        upstreams: &Upstreams,
        checks: &BTreeMap<String, CheckSpec>,
        limits: &BTreeMap<String, RateLimit>,
    ) -> Result<Vec<RouteSpec>, RoutesError> {
        // Each path, and the line of its route.
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut routes = Vec::new();
        for route in raw {
            let route = route.get_ref();
            let path = self.read(&route.path, |reason| reason)?;
            let span = route.path.spelled().span();
            if let Some(first) = seen.insert(path.clone(), self.line(span.start)) {
                return Err(self.error(
                    Some(span),
                    format!("path {path:?} is already routed on line {first}"),
                ));
            }
            let mut spec = self.route(path, route, settings, upstreams, checks)?;
            spec.limit = self.route_limit(route, checks, limits)?;
            routes.push(spec);
        }
        Ok(routes)
    }

    /// The route on `path` (read and checked to be routed once).
    fn route(
        &self,
        path: String,
        raw: &RawRoute,
        settings: &Settings,
        upstreams: &Upstreams,
        checks: &BTreeMap<String, CheckSpec>,
    ) -> Result<RouteSpec, RoutesError> {
        let upstream = self.name(&raw.upstream)?;
        self.named_upstream(&upstream, upstreams)?;
        let timeout =
            self.duration_or(raw.timeout.as_ref(), "timeout", settings.request_timeout)?;
        let max_body = raw
            .max_body
            .as_ref()
            .map(|size| self.size(size, "max_body"))
            .transpose()?;
        let forward_as = self.forward_as(&path, raw)?;
        let auth = match &raw.auth {
            Some(name) => {
                let named = self.name(name)?;
                self.named_check(&named, checks)?;
                Some(named)
            }
            None => None,
        };
        let allow_groups = self.allow_groups(raw)?;
        let max_in_flight = self.max_in_flight(raw.max_in_flight.as_ref(), "")?;
        Ok(RouteSpec {
            path,
            upstream,
            timeout,
            max_body,
            forward_as,
            idempotent: raw.idempotent.unwrap_or(true),
            auth,
            allow_groups,
            max_in_flight,
            limit: None,
            compress: raw.compress.unwrap_or(false),
        })
    }

    /// `limit = "<name>"`: a limit of [limits]; one kept per user only on a route whose door
    /// check copies the user's `X-User-Id`, the only place a user is known from.
    fn route_limit(
        &self,
        route: &RawRoute,
        checks: &BTreeMap<String, CheckSpec>,
        limits: &BTreeMap<String, RateLimit>,
    ) -> Result<Option<Named>, RoutesError> {
        let Some(name) = &route.limit else {
            return Ok(None);
        };
        let named = self.name(name)?;
        let limit = self.named_limit(&named, limits)?;
        if limit.key == LimitKey::User {
            let wanted = &named.name;
            let Some(auth) = &route.auth else {
                return Err(self.error(
                    Some(name.span()),
                    format!(
                        "limit {wanted:?} is kept per user: the route needs auth (a user is \
                         known only from a door check)"
                    ),
                ));
            };
            let check = self.named_check(&self.name(auth)?, checks)?;
            if !check.headers.iter().any(|header| header == "x-user-id") {
                return Err(self.error(
                    Some(name.span()),
                    format!(
                        "limit {wanted:?} is kept per user, and [auth.{}] does not copy \
                         x-user-id from its answer (add it to its headers)",
                        check.name
                    ),
                ));
            }
        }
        Ok(Some(named))
    }

    /// `allow_groups = ["admins", …]`: only on a route with `auth` (the groups come from its
    /// check), at least one group, each a name a comma-separated `X-User-Groups` can hold.
    fn allow_groups(&self, route: &RawRoute) -> Result<Option<Box<[String]>>, RoutesError> {
        let Some(groups) = &route.allow_groups else {
            return Ok(None);
        };
        if route.auth.is_none() {
            return Err(self.error(
                Some(groups.span()),
                "allow_groups needs auth: a user's groups are known only from a door check",
            ));
        }
        if groups.get_ref().is_empty() {
            return Err(self.error(
                Some(groups.span()),
                "allow_groups is empty: nobody could pass (leave it out to let every checked user through)",
            ));
        }
        let names = groups
            .get_ref()
            .iter()
            .map(|group| {
                let name = self.string(group)?;
                if name.is_empty() || name.trim() != name || name.contains(',') {
                    return Err(self.error(
                        Some(group.span()),
                        format!(
                            "allow_groups: {name:?} can never match (X-User-Groups is split at commas and trimmed)"
                        ),
                    ));
                }
                Ok(name)
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(names))
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
                let prefix = self.read(rewrite, |reason| format!("rewrite: {reason}"))?;
                // "/" in place of the prefix is the same as stripping it.
                Ok(Some(if prefix == "/" { String::new() } else { prefix }))
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{no_env, parse, parse_err};
    use std::path::Path;

    #[test]
    fn unknown_upstream_names_the_line() {
        let text = "[upstreams]\nwriter = [\"http://x:1\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"wirter\"\n";
        let err = parse_err(text);
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.reason.contains("\"wirter\" is not defined"), "{err}");
        assert!(err.reason.contains("defined: writer"), "{err}");
    }

    #[test]
    fn compress_is_a_boolean_off_by_default() {
        let text = "[upstreams]\nu = [\"http://x:1\"]\n\
            [[routes]]\npath = \"/static\"\nupstream = \"u\"\ncompress = true\n\
            [[routes]]\npath = \"/\"\nupstream = \"u\"\n";
        let table = parse(Path::new("routes.toml"), text, no_env).expect("valid");
        let compress: Vec<bool> = table.routes.iter().map(|route| route.compress).collect();
        assert_eq!(compress, [true, false], "longest path first");

        let err = parse_err(
            "[upstreams]\nu = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"u\"\ncompress = \"yes\"\n",
        );
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.to_string().starts_with("routes.toml:6: "), "{err}");
    }

    #[test]
    fn max_in_flight_is_at_least_one_on_routes_and_upstreams() {
        let text = "[upstreams.u]\ntargets = [\"http://x:1\"]\nmax_in_flight = 8\n\
            [[routes]]\npath = \"/a\"\nupstream = \"u\"\nmax_in_flight = 2\n\
            [[routes]]\npath = \"/\"\nupstream = \"u\"\n";
        let table = parse(Path::new("routes.toml"), text, no_env).expect("valid");
        let caps: Vec<Option<u32>> = table
            .routes
            .iter()
            .map(|route| route.max_in_flight.as_ref().map(|cap| cap.max().get()))
            .collect();
        assert_eq!(caps, [Some(2), None], "longest path first");
        assert_eq!(
            table.upstreams["u"].max_in_flight.map(|max| max.get()),
            Some(8)
        );

        let err = parse_err(
            "[upstreams]\nu = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"u\"\nmax_in_flight = 0\n",
        );
        assert_eq!(err.line, Some(6), "{err}");
        assert!(
            err.reason.starts_with("max_in_flight must be at least 1"),
            "{err}"
        );
        let err = parse_err(
            "[upstreams.u]\ntargets = [\"http://x:1\"]\nmax_in_flight = 0\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n",
        );
        assert_eq!(err.line, Some(3), "{err}");
        assert!(
            err.reason
                .starts_with("upstream \"u\": max_in_flight must be at least 1"),
            "{err}"
        );
        let err = parse_err(
            "[upstreams]\nu = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"u\"\nmax_in_flight = -3\n",
        );
        assert_eq!(err.line, Some(6), "{err}");
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
}
