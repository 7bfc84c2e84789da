//! `[auth.<name>]`: door checks, each a `GET <path>` to an upstream, asked before a route that
//! names the check in `auth` forwards a request.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::{HeaderName, uri::PathAndQuery};
use toml::Spanned;

use super::{
    super::{
        error::RoutesError,
        raw::RawCheck,
        table::{DoorCheck, Route, Upstream},
        values::{PathPrefix, Text, is_cookie_name, parse_check_target, parse_header_name},
    },
    context::{Named, Parser},
    upstream::Upstreams,
};

/// What a door check copies from a passing answer unless it says otherwise: who the user is,
/// and what their identity provider said of them (the reader's `GET /session` answers these).
const DEFAULT_CHECK_HEADERS: [&str; 4] =
    ["x-user-id", "x-user-name", "x-user-email", "x-user-groups"];
/// How long a door check may take unless it says otherwise: it is one Redis read.
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The services' default `SESSION_COOKIE_NAME`.
const DEFAULT_SESSION_COOKIE: &str = "sid";

/// A door check that passed validation, its upstream still a name: it is linked to the
/// upstream once the files the upstreams name are read.
#[derive(Debug)]
pub(super) struct CheckSpec {
    pub name: String,
    pub upstream: Named,
    path: String,
    target: PathAndQuery,
    pub headers: Arc<[HeaderName]>,
    timeout: Duration,
    pass_session: bool,
    session_cookie: String,
}

impl CheckSpec {
    /// The check, sent to `upstream` (the one it names).
    pub(super) fn link(self, upstream: Arc<Upstream>) -> DoorCheck {
        DoorCheck {
            name: self.name,
            route: Route {
                path: self.path,
                upstream,
                timeout: self.timeout,
                max_body: None,
                forward_as: None,
                idempotent: true,
                auth: None,
                allow_groups: None,
                // A door check is counted by the route that asks it.
                max_in_flight: None,
                limit: None,
                compress: false,
            },
            headers: self.headers,
            target: self.target,
            pass_session: self.pass_session,
            session_cookie: self.session_cookie,
        }
    }
}

impl Parser<'_> {
    /// Every `[auth.<name>]`, by name.
    pub(super) fn checks(
        &self,
        raw: &BTreeMap<String, Spanned<RawCheck>>,
        upstreams: &Upstreams,
    ) -> Result<BTreeMap<String, CheckSpec>, RoutesError> {
        raw.iter()
            .map(|(name, check)| Ok((name.clone(), self.check(name, check.get_ref(), upstreams)?)))
            .collect()
    }

    /// `[auth.<name>]`: a check sent as `GET <path>` to `upstream`, passing on 2xx.
    fn check(
        &self,
        name: &str,
        check: &RawCheck,
        upstreams: &Upstreams,
    ) -> Result<CheckSpec, RoutesError> {
        let upstream = self.name(&check.upstream)?;
        self.named_upstream(&upstream, upstreams)?;
        let (path, target) = self.check_target(name, &check.path)?;
        let headers = match &check.headers {
            Some(names) => self.check_headers(names)?,
            None => Arc::from(DEFAULT_CHECK_HEADERS.map(HeaderName::from_static)),
        };
        let timeout = self.duration_or(check.timeout.as_ref(), "timeout", DEFAULT_CHECK_TIMEOUT)?;
        let session_cookie = match &check.session_cookie {
            Some(cookie) => self.session_cookie(name, cookie)?,
            None => DEFAULT_SESSION_COOKIE.to_owned(),
        };
        Ok(CheckSpec {
            name: name.to_owned(),
            upstream,
            path,
            target,
            headers,
            timeout,
            pass_session: check.pass_session.unwrap_or(false),
            session_cookie,
        })
    }

    /// The check's path, as written and as the request target it is sent with. The schema
    /// describes it as a path prefix; it is read as a request path (a query is kept).
    fn check_target(
        &self,
        name: &str,
        path: &Text<PathPrefix>,
    ) -> Result<(String, PathAndQuery), RoutesError> {
        let spelled = path.spelled();
        let path = self.string(spelled)?;
        let target = parse_check_target(&path).ok_or_else(|| {
            self.error(
                Some(spelled.span()),
                format!("[auth.{name}] path {path:?} must be a path like \"/session\""),
            )
        })?;
        Ok((path, target))
    }

    /// The headers copied from a passing answer, as written (no `${VAR}` here).
    fn check_headers(&self, names: &[Spanned<String>]) -> Result<Arc<[HeaderName]>, RoutesError> {
        names
            .iter()
            .map(|name| {
                parse_header_name(name.get_ref())
                    .map_err(|reason| self.error(Some(name.span()), reason))
            })
            .collect()
    }

    fn session_cookie(&self, name: &str, cookie: &Spanned<String>) -> Result<String, RoutesError> {
        let cookie_name = self.string(cookie)?;
        if !is_cookie_name(&cookie_name) {
            return Err(self.error(
                Some(cookie.span()),
                format!("[auth.{name}] session_cookie {cookie_name:?} is not a cookie name"),
            ));
        }
        Ok(cookie_name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{no_env, parse, parse_err};
    use super::DEFAULT_CHECK_TIMEOUT;
    use std::path::Path;

    /// Two upstreams, and a route on /greet that names check "session" (not defined).
    const BASE: &str = "[upstreams]\nreader = [\"http://x:1\"]\ngreeter = [\"http://x:2\"]\n\
        [[routes]]\npath = \"/\"\nupstream = \"reader\"\n\
        [[routes]]\npath = \"/greet\"\nupstream = \"greeter\"\nauth = \"session\"\n";

    #[test]
    fn door_checks_are_named_by_routes() {
        let base = BASE;
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
        assert_eq!(
            check
                .headers
                .iter()
                .map(http::HeaderName::as_str)
                .collect::<Vec<_>>(),
            ["x-user-id", "x-user-name", "x-user-email", "x-user-groups"],
            "who the user is, and what their identity provider says of them"
        );
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
        let only_the_id = format!(
            "{base}[auth.session]\nupstream = \"reader\"\npath = \"/session\"\nheaders = [\"X-User-Id\"]\n"
        );
        let table = parse(Path::new("routes.toml"), &only_the_id, no_env).expect("valid");
        let check = table
            .route("/greet")
            .and_then(|route| route.auth.as_ref())
            .expect("checked");
        assert_eq!(*check.headers, [http::HeaderName::from_static("x-user-id")]);
        let bad = format!(
            "{base}[auth.session]\nupstream = \"reader\"\npath = \"/session\"\nsession_cookie = \"s id\"\n"
        );
        let err = parse(Path::new("routes.toml"), &bad, no_env).expect_err("refused");
        assert!(err.to_string().contains("is not a cookie name"), "{err}");
    }

    #[test]
    fn door_checks_are_validated() {
        let base = BASE;
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

    const CHECK: &str = "[auth.session]\nupstream = \"reader\"\npath = \"/session\"\n";

    #[test]
    fn allowed_groups_belong_to_a_checked_route() {
        let base = BASE;
        let text = format!("{base}allow_groups = [\"admins\", \"Domain Admins\"]\n{CHECK}");
        let table = parse(Path::new("routes.toml"), &text, no_env).expect("valid");
        let greet = table.route("/greet").expect("routed");
        assert_eq!(
            greet.allow_groups.as_deref(),
            Some(&["admins".to_owned(), "Domain Admins".to_owned()][..])
        );
        assert!(
            table
                .route("/")
                .is_some_and(|route| route.allow_groups.is_none())
        );

        // On a route without `auth`: the line of `allow_groups`, as `gateway --check` says it.
        let unchecked = format!(
            "[upstreams]\nreader = [\"http://x:1\"]\n[[routes]]\npath = \"/\"\nupstream = \"reader\"\n\
             allow_groups = [\"admins\"]\n{CHECK}"
        );
        let err = parse_err(&unchecked);
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.reason.contains("allow_groups needs auth"), "{err}");
        assert!(err.to_string().starts_with("routes.toml:6: "), "{err}");

        for (groups, expected) in [
            ("[]", "allow_groups is empty"),
            ("[\"admins\", \"\"]", "\"\" can never match"),
            ("[\"a,b\"]", "\"a,b\" can never match"),
            ("[\" admins\"]", "\" admins\" can never match"),
        ] {
            let err = parse_err(&format!("{base}allow_groups = {groups}\n{CHECK}"));
            assert!(err.reason.contains(expected), "{groups}: {err}");
            assert_eq!(err.line, Some(11), "{groups}: {err}");
        }
    }
}
