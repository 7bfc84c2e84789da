//! What every validation step shares: the file's name and text, to turn a value's place into
//! `file:line`, and the environment, to resolve `${VAR}` before a value is read.

use std::{collections::BTreeMap, num::NonZeroU32, ops::Range, path::Path, time::Duration};

use toml::Spanned;

use super::super::{
    error::RoutesError,
    interpolate::interpolate,
    raw::RawSize,
    values::{self, Kind, Text, parse_size},
};

/// Validation context: turns spans into line numbers and resolves `${VAR}`.
pub(super) struct Parser<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// A name the file gives an upstream or a door check, resolved, and where it is written.
#[derive(Debug)]
pub(super) struct Named {
    pub name: String,
    pub span: Range<usize>,
}

impl Parser<'_> {
    /// `reason`, at the line of `span` (or of the whole file).
    pub fn error(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> RoutesError {
        RoutesError {
            file: self.file.to_owned(),
            line: span.map(|span| line_of(self.text, span.start)),
            reason: reason.into(),
        }
    }

    /// `reason` about upstream `name`, at the line of `span`.
    pub fn upstream_error(&self, name: &str, span: Range<usize>, reason: &str) -> RoutesError {
        self.error(Some(span), format!("upstream {name:?}: {reason}"))
    }

    /// 1-based line of byte `offset` in the file.
    pub fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// `raw` with `${VAR}` resolved; errors point at `span`.
    pub fn value(&self, raw: &str, span: Range<usize>) -> Result<String, RoutesError> {
        interpolate(raw, self.env).map_err(|reason| self.error(Some(span), reason))
    }

    /// [`Parser::value`] of a spanned string.
    pub fn string(&self, spanned: &Spanned<String>) -> Result<String, RoutesError> {
        self.value(spanned.get_ref(), spanned.span())
    }

    /// A name as the file writes it, `${VAR}` resolved, with its place.
    pub fn name(&self, spanned: &Spanned<String>) -> Result<Named, RoutesError> {
        Ok(Named {
            name: self.string(spanned)?,
            span: spanned.span(),
        })
    }

    /// `text` resolved and read as a `K`; a refusal is told as `reason` makes it.
    pub fn read<K: Kind>(
        &self,
        text: &Text<K>,
        reason: impl FnOnce(String) -> String,
    ) -> Result<K::Value, RoutesError> {
        let spelled = text.spelled();
        K::parse(&self.string(spelled)?)
            .map_err(|why| self.error(Some(spelled.span()), reason(why)))
    }

    /// A duration, more than zero; `what` names the key in errors.
    pub fn duration(
        &self,
        text: &Text<values::Duration>,
        what: &str,
    ) -> Result<Duration, RoutesError> {
        self.read(text, |reason| format!("{what} {reason}"))
    }

    /// A duration, or `default` when the key is left out.
    pub fn duration_or(
        &self,
        text: Option<&Text<values::Duration>>,
        what: &str,
        default: Duration,
    ) -> Result<Duration, RoutesError> {
        text.map_or(Ok(default), |text| self.duration(text, what))
    }

    /// A size in bytes, more than zero; `what` names the key in errors.
    pub fn size(&self, spanned: &Spanned<RawSize>, what: &str) -> Result<u64, RoutesError> {
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

    /// `max_in_flight`: at least 1 (0 would refuse every request; leaving it out is no cap).
    /// `whose` says where it is in errors (`upstream "api": `, or nothing for a route).
    pub fn max_in_flight(
        &self,
        spanned: Option<&Spanned<u32>>,
        whose: &str,
    ) -> Result<Option<NonZeroU32>, RoutesError> {
        let Some(spanned) = spanned else {
            return Ok(None);
        };
        NonZeroU32::new(*spanned.get_ref())
            .map(Some)
            .ok_or_else(|| {
                self.error(
                    Some(spanned.span()),
                    format!(
                        "{whose}max_in_flight must be at least 1: 0 would refuse every request \
                     (leave it out for no cap)"
                    ),
                )
            })
    }

    /// The upstream `named` in a route or a check, among `upstreams`.
    pub fn named_upstream<'m, U>(
        &self,
        named: &Named,
        upstreams: &'m BTreeMap<String, U>,
    ) -> Result<&'m U, RoutesError> {
        let Named { name, span } = named;
        upstreams.get(name).ok_or_else(|| {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            self.error(
                Some(span.clone()),
                format!(
                    "upstream {name:?} is not defined in [upstreams] (defined: {})",
                    known.join(", ")
                ),
            )
        })
    }

    /// The door check a route `named` in `auth = "<name>"`, among `checks`.
    pub fn named_check<'m, C>(
        &self,
        named: &Named,
        checks: &'m BTreeMap<String, C>,
    ) -> Result<&'m C, RoutesError> {
        let Named { name: wanted, span } = named;
        checks.get(wanted).ok_or_else(|| {
            let known: Vec<String> = checks.keys().map(|name| format!("[auth.{name}]")).collect();
            self.error(
                Some(span.clone()),
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
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
