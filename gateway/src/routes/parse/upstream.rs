//! `[upstreams]`: each upstream's targets and weights, balance, health check, ejection, host,
//! CA and cap on requests in flight, one step each. A mistake is told as `upstream "<name>": ...` at the line of the value
//! it is about. The CA file itself is not read here: an https upstream says what its TLS needs
//! ([`TlsNeed`]) and [`super::files`] reads it once the whole file is valid.

use std::{collections::BTreeMap, ops::Range, time::Duration};

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{
    super::{
        error::RoutesError,
        raw::{
            NOT_AN_UPSTREAM, RawEject, RawHealthCheck, RawTarget, RawUpstream, RawUpstreamEntry,
        },
        table::{Balance, Eject, HealthCheck, Target, Upstream},
        values::{Kind, TargetUrl, parse_balance, parse_host},
    },
    context::Parser,
};

/// The largest target weight (weights are relative: 1,000,000 to 1 is plenty).
const MAX_WEIGHT: u32 = 1_000_000;

/// How often a health check asks each address unless the file says otherwise.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long a health check may take unless the file says otherwise.
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// What an https upstream's TLS needs, set up once the whole file is valid: the CA file to
/// verify its targets against (else the web's roots), and the name to verify (else each
/// target's host).
#[derive(Debug)]
pub(super) struct TlsNeed {
    pub upstream: String,
    pub ca: Option<String>,
    pub server_name: Option<String>,
    /// Where a failure to set it up is reported: the `ca`, else the `host`, else the upstream.
    pub span: Range<usize>,
}

/// The validated upstreams by name, each still without its TLS.
pub(super) type Upstreams = BTreeMap<String, Upstream>;

impl Parser<'_> {
    /// Every upstream, and the TLS of those with https:// targets.
    pub(super) fn upstreams(
        &self,
        raw: &BTreeMap<String, Spanned<RawUpstreamEntry>>,
    ) -> Result<(Upstreams, Vec<TlsNeed>), RoutesError> {
        let mut upstreams = BTreeMap::new();
        let mut needs = Vec::new();
        for (name, entry) in raw {
            let (upstream, need) = self.upstream(name, entry)?;
            upstreams.insert(name.clone(), upstream);
            needs.extend(need);
        }
        Ok((upstreams, needs))
    }

    /// `[upstreams.<name>]`, either form: the upstream, its TLS not yet set up, and what that
    /// TLS needs.
    fn upstream(
        &self,
        name: &str,
        entry: &Spanned<RawUpstreamEntry>,
    ) -> Result<(Upstream, Option<TlsNeed>), RoutesError> {
        let RawUpstreamEntry(raw) = entry.get_ref();
        let (targets, weighted) = self.targets(name, entry.span(), &raw.targets)?;
        let balance = match &raw.balance {
            Some(balance) => parse_balance(balance.get_ref())
                .map_err(|reason| self.upstream_error(name, balance.span(), &reason))?,
            None => Balance::PowerOfTwoChoices,
        };
        let health_check = raw
            .health_check
            .as_ref()
            .map(|check| self.health_check(name, check))
            .transpose()?;
        let eject = match &raw.eject {
            Some(eject) => self.eject(name, eject)?,
            None => Eject::default(),
        };
        let host = raw
            .host
            .as_ref()
            .map(|host| self.host(name, host))
            .transpose()?;
        let tls = self.tls_need(name, entry.span(), raw, &targets, host.as_ref())?;
        let max_in_flight =
            self.max_in_flight(raw.max_in_flight.as_ref(), &format!("upstream {name:?}: "))?;
        let upstream = Upstream {
            name: name.to_owned(),
            targets,
            balance,
            health_check,
            eject,
            weighted,
            tls: None,
            host,
            max_in_flight,
        };
        Ok((upstream, tls))
    }

    /// The targets, each once, not all drained; and whether the file gave any a weight.
    fn targets(
        &self,
        name: &str,
        span: Range<usize>,
        raw: &[Spanned<RawTarget>],
    ) -> Result<(Vec<Target>, bool), RoutesError> {
        if raw.is_empty() {
            return Err(self.upstream_error(name, span, "has no targets"));
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut weighted = false;
        for entry in raw {
            let (mut target, weight) = self.target(name, entry)?;
            if targets.iter().any(|known| known.url() == target.url()) {
                let reason = format!("lists {} twice", target.url());
                return Err(self.upstream_error(name, entry.span(), &reason));
            }
            if let Some(weight) = weight {
                target.weight = self.weight(name, weight, &target)?;
                weighted = true;
            }
            targets.push(target);
        }
        if targets.iter().all(|target| target.weight == 0) {
            return Err(self.upstream_error(
                name,
                span,
                "every target has weight 0: nothing would be served (drain a target only while \
                 another one has a weight)",
            ));
        }
        Ok((targets, weighted))
    }

    /// One target read from its URL, and the weight written with it.
    fn target<'r>(
        &self,
        name: &str,
        entry: &'r Spanned<RawTarget>,
    ) -> Result<(Target, Option<&'r Spanned<u32>>), RoutesError> {
        let (url, span, weight) = match entry.get_ref() {
            RawTarget::Url(url) => (url, entry.span(), None),
            RawTarget::Weighted(target) => {
                let url = target.url.spelled();
                (url.get_ref(), url.span(), Some(&target.weight))
            }
        };
        let target = TargetUrl::parse(&self.value(url, span.clone())?)
            .map_err(|reason| self.upstream_error(name, span, &reason))?;
        Ok((target, weight))
    }

    /// A target's weight, up to [`MAX_WEIGHT`].
    fn weight(
        &self,
        name: &str,
        weight: &Spanned<u32>,
        target: &Target,
    ) -> Result<u32, RoutesError> {
        let value = *weight.get_ref();
        if value > MAX_WEIGHT {
            let reason = format!("weight {value} of {} is over {MAX_WEIGHT}", target.url());
            return Err(self.upstream_error(name, weight.span(), &reason));
        }
        Ok(value)
    }

    /// `health_check`: a path starting with `/`, asked every `interval`.
    fn health_check(&self, name: &str, raw: &RawHealthCheck) -> Result<HealthCheck, RoutesError> {
        let path = raw.path.get_ref();
        if !path.starts_with('/') {
            let reason = format!("health_check path {path:?} must start with /");
            return Err(self.upstream_error(name, raw.path.span(), &reason));
        }
        Ok(HealthCheck {
            path: path.clone(),
            interval: self.duration_or(
                raw.interval.as_ref(),
                "health_check interval",
                DEFAULT_HEALTH_INTERVAL,
            )?,
            timeout: self.duration_or(
                raw.timeout.as_ref(),
                "health_check timeout",
                DEFAULT_HEALTH_TIMEOUT,
            )?,
        })
    }

    /// `eject`: at least one failure, then a cooldown.
    fn eject(&self, name: &str, raw: &RawEject) -> Result<Eject, RoutesError> {
        let default = Eject::default();
        let failures = match &raw.failures {
            Some(failures) if *failures.get_ref() == 0 => {
                let reason = "eject failures must be at least 1";
                return Err(self.upstream_error(name, failures.span(), reason));
            }
            Some(failures) => *failures.get_ref(),
            None => default.failures,
        };
        let cooldown =
            self.duration_or(raw.cooldown.as_ref(), "eject cooldown", default.cooldown)?;
        Ok(Eject { failures, cooldown })
    }

    /// `host`: the Host header (and TLS name) this upstream is sent.
    fn host(&self, name: &str, raw: &Spanned<String>) -> Result<http::HeaderValue, RoutesError> {
        parse_host(&self.string(raw)?)
            .map_err(|reason| self.upstream_error(name, raw.span(), &reason))
    }

    /// What the upstream's TLS needs when a target is https://; a `ca` without one is a mistake.
    fn tls_need(
        &self,
        name: &str,
        span: Range<usize>,
        raw: &RawUpstream,
        targets: &[Target],
        host: Option<&http::HeaderValue>,
    ) -> Result<Option<TlsNeed>, RoutesError> {
        let ca = match &raw.ca {
            Some(ca) => Some((self.string(ca)?, ca.span())),
            None => None,
        };
        if !targets.iter().any(|target| target.https) {
            return match ca {
                Some((_, span)) => Err(self.upstream_error(
                    name,
                    span,
                    "has a ca but no https:// target to verify with it",
                )),
                None => Ok(None),
            };
        }
        // The name verified is the host's, without its port.
        let server_name = host
            .and_then(|host| host.to_str().ok())
            .map(|host| host.split(':').next().unwrap_or(host).to_owned());
        let span = match (&ca, &raw.host) {
            (Some((_, span)), _) => span.clone(),
            (None, Some(host)) => host.span(),
            (None, None) => span,
        };
        Ok(Some(TlsNeed {
            upstream: name.to_owned(),
            ca: ca.map(|(path, _)| path),
            server_name,
            span,
        }))
    }

    /// A TOML syntax or shape error at its place. One inside an upstream is told as the
    /// upstream's own checks are, `upstream "<name>": ...`.
    pub(super) fn toml_error(&self, err: &toml::de::Error) -> RoutesError {
        let reason = err.message().trim();
        let Some(span) = err.span() else {
            return self.error(None, reason);
        };
        match upstream_around(self.text, span.start) {
            Some((name, true)) => self.upstream_error(&name, span, reason),
            // Whatever the deserializer made of it (toml hands a date over as a table).
            Some((name, false)) => self.upstream_error(&name, span, NOT_AN_UPSTREAM),
            None => self.error(Some(span), reason),
        }
    }
}

/// The upstream whose value holds byte `offset` of `text`, if any, and whether that value is a
/// list or a table (any other value is no upstream at all). The deserializer tells where a
/// mistake is; the document's own spans tell in which upstream.
fn upstream_around(text: &str, offset: usize) -> Option<(String, bool)> {
    let document = DeTable::parse(text).ok()?;
    let (_, upstreams) = document
        .get_ref()
        .iter()
        .find(|(key, _)| key.get_ref() == "upstreams")?;
    let DeValue::Table(upstreams) = upstreams.get_ref() else {
        return None;
    };
    let (name, value) = upstreams.iter().find(|(_, value)| holds(value, offset))?;
    let list_or_table = matches!(value.get_ref(), DeValue::Array(_) | DeValue::Table(_));
    Some((name.get_ref().to_string(), list_or_table))
}

/// Whether `value`, or a key or value inside it, is at byte `offset`.
fn holds(value: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    value.span().contains(&offset)
        || match value.get_ref() {
            DeValue::Table(table) => table
                .iter()
                .any(|(key, value)| key.span().contains(&offset) || holds(value, offset)),
            DeValue::Array(items) => items.iter().any(|item| holds(item, offset)),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{no_env, parse, parse_err};
    use std::path::Path;

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
    fn long_form_upstreams_are_validated() {
        let base = |upstream: &str| {
            format!("[upstreams.u]\n{upstream}\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n")
        };
        let err = parse_err(&base("targets = [\"http://x:1\"]\nbalnce = \"p2c\""));
        assert!(err.reason.contains("balnce"), "{err}");
        assert_eq!(err.line, Some(3), "the key's own line: {err}");
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

    /// `upstream` with a route to it is refused with `expected`, at `line`.
    fn refused_at(upstream: &str, expected: &str, line: usize) {
        let err = parse_err(&format!(
            "{upstream}\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n"
        ));
        assert!(err.reason.contains(expected), "{upstream}: {err}");
        assert_eq!(err.line, Some(line), "{upstream}: {err}");
    }

    /// A mistake inside an upstream is told with the upstream's name, at the line of the value
    /// it is about (a target in a list of several, a key of a table), not at the upstream's.
    #[test]
    fn mistakes_in_targets_point_at_their_own_line() {
        for (upstream, expected, line) in [
            (
                "[upstreams]\nu = [\n  \"http://a:1\",\n  \"http://a:1\",\n]",
                "upstream \"u\": lists http://a:1 twice",
                4,
            ),
            (
                "[upstreams]\nu = [\n  \"http://a:1\",\n  { url = \"http://b:1\", weight = 2000000 },\n]",
                "weight 2000000 of http://b:1 is over 1000000",
                4,
            ),
            (
                "[upstreams]\nu = [\n  \"http://a:1\",\n  { url = \"http://b:1\", share = 5 },\n]",
                "upstream \"u\": targets must be strings like",
                4,
            ),
            (
                "[upstreams.u]\ntargets = [\n\"http://a:1\",\n\"ftp://b\"]",
                "upstream \"u\": \"ftp://b\" must start with http:// or https://",
                4,
            ),
            (
                "[upstreams.u]\ntargets = [3]",
                "upstream \"u\": targets must be strings like",
                2,
            ),
        ] {
            refused_at(upstream, expected, line);
        }
    }

    #[test]
    fn mistakes_in_options_point_at_their_own_line() {
        for (upstream, expected, line) in [
            (
                "[upstreams.u]\ntargets = [\"http://x:1\"]\n\n[upstreams.u.health_check]\npath = \"/h\"\nintervall = \"1s\"",
                "upstream \"u\": unknown field `intervall`",
                6,
            ),
            (
                "[upstreams.u]\ntargets = [\"http://x:1\"]\nhealth_check = { path = \"/h\", interval = \"0s\" }",
                "health_check interval must be more than zero",
                3,
            ),
            (
                "[upstreams.u]\ntargets = [\"http://x:1\"]\neject = { failures = 0 }",
                "upstream \"u\": eject failures must be at least 1",
                3,
            ),
            (
                "[upstreams.u]\ntargets = [\"http://x:1\"]\nhost = \"a b\"",
                "upstream \"u\": host \"a b\" is not a host name",
                3,
            ),
            (
                "[upstreams.u]\ntargets = [\"http://x:1\"]\nca = \"tests/schema/example-ca.pem\"",
                "upstream \"u\": has a ca but no https:// target",
                3,
            ),
            (
                "[upstreams.u]\ntargets = [\"https://a:1\"]\nhost = \"a.test\"\nca = \"/nonexistent/ca.pem\"",
                "upstream \"u\": ca /nonexistent/ca.pem: ",
                4,
            ),
            (
                "[upstreams]\nu = 1979-05-27",
                "upstream \"u\": must be a list of targets or a table with `targets`",
                2,
            ),
        ] {
            refused_at(upstream, expected, line);
        }
    }
}
