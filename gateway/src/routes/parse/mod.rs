//! From `routes.toml` to the route table, in three stages:
//!
//! 1. validate: deserialize the raw file ([`super::raw`]) and check each part of it in a step
//!    of its own ([`settings`], [`upstream`], [`checks`], [`limits`], [`routes`], [`cors`]), without
//!    reading any other file;
//! 2. read the files the valid file names ([`files`]: the CA certificates of https upstreams);
//! 3. link each route and door check to the upstream it names, now complete.
//!
//! A mistake anywhere in the file is reported before a CA file is opened. Every error is
//! `file:line: reason`, the line of the value it is about.

mod checks;
mod context;
mod cors;
mod files;
mod limits;
mod routes;
mod settings;
mod upstream;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use super::{
    error::RoutesError,
    raw::RawFile,
    table::{Cors, RateLimit, RouteTable, Settings},
};
use checks::CheckSpec;
use context::Parser;
use files::Tls;
use routes::RouteSpec;
use upstream::{TlsNeed, Upstreams};

/// Validates routes file `text` and builds its table (`file` names it in errors; `env`
/// resolves `${VAR}`).
pub(super) fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RouteTable, RoutesError> {
    let parser = Parser { file, text, env };
    let valid = parser.validate()?;
    let tls = parser.read_files(&valid.tls)?;
    parser.link(valid, tls)
}

/// A routes file that passed every check; only the files it names are still to be read.
#[derive(Debug)]
struct Valid {
    settings: Settings,
    upstreams: Upstreams,
    tls: Vec<TlsNeed>,
    checks: BTreeMap<String, CheckSpec>,
    routes: Vec<RouteSpec>,
    cors: Option<Cors>,
    limits: BTreeMap<String, RateLimit>,
}

impl Parser<'_> {
    fn validate(&self) -> Result<Valid, RoutesError> {
        let raw: RawFile = toml::from_str(self.text).map_err(|err| self.toml_error(&err))?;
        let settings = match &raw.settings {
            Some(settings) => self.settings(settings.get_ref())?,
            None => Settings::default(),
        };
        let (upstreams, tls) = self.upstreams(&raw.upstreams)?;
        if raw.routes.is_empty() {
            return Err(self.error(None, "no [[routes]]: nothing would be served"));
        }
        let checks = self.checks(&raw.auth, &upstreams)?;
        let limits = self.limits(&raw.limits)?;
        let routes = self.routes(&raw.routes, &settings, &upstreams, &checks, &limits)?;
        let cors = raw
            .cors
            .as_ref()
            .map(|cors| self.cors(cors.get_ref()))
            .transpose()?;
        Ok(Valid {
            settings,
            upstreams,
            tls,
            checks,
            routes,
            cors,
            limits,
        })
    }

    /// The table: each upstream with its TLS, each check and route with the upstream (and
    /// check) it names. The names were checked in [`Parser::validate`]; they are looked up
    /// again, in the complete upstreams.
    fn link(&self, valid: Valid, mut tls: Tls) -> Result<RouteTable, RoutesError> {
        let upstreams: BTreeMap<_, _> = valid
            .upstreams
            .into_iter()
            .map(|(name, mut upstream)| {
                upstream.tls = tls.remove(&name);
                (name, Arc::new(upstream))
            })
            .collect();
        let mut checks = BTreeMap::new();
        for (name, check) in valid.checks {
            let upstream = Arc::clone(self.named_upstream(&check.upstream, &upstreams)?);
            checks.insert(name, Arc::new(check.link(upstream)));
        }
        let limits: BTreeMap<_, _> = valid
            .limits
            .into_iter()
            .map(|(name, limit)| (name, Arc::new(limit)))
            .collect();
        let mut routes = Vec::new();
        for route in valid.routes {
            let upstream = Arc::clone(self.named_upstream(&route.upstream, &upstreams)?);
            let auth = match &route.auth {
                Some(named) => Some(Arc::clone(self.named_check(named, &checks)?)),
                None => None,
            };
            let limit = match &route.limit {
                Some(named) => Some(Arc::clone(self.named_limit(named, &limits)?)),
                None => None,
            };
            routes.push(route.link(upstream, auth, limit));
        }
        Ok(RouteTable::new(
            routes,
            upstreams,
            valid.settings,
            valid.cors,
            limits,
        ))
    }
}
