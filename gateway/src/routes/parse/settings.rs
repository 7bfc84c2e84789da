//! `[settings]`: gateway-wide durations, limits and the proxies whose forwarding headers are
//! believed. A key left out keeps its default ([`Settings::default`]).

use std::num::NonZeroU32;

use super::{
    super::{
        error::RoutesError,
        raw::RawSettings,
        table::Settings,
        values::{self, Text, parse_net},
    },
    context::Parser,
};

/// Below this a browser's ordinary request head (cookies included) would get 431.
const MIN_HEADER_BYTES: u64 = 8192;

impl Parser<'_> {
    pub(super) fn settings(&self, raw: &RawSettings) -> Result<Settings, RoutesError> {
        let mut settings = Settings::default();
        self.durations(raw, &mut settings)?;
        if let Some(size) = &raw.max_header_bytes {
            let bytes = self.size(size, "max_header_bytes")?;
            if bytes < MIN_HEADER_BYTES {
                return Err(self.error(
                    Some(size.span()),
                    "max_header_bytes must be at least 8KiB (8192)",
                ));
            }
            settings.max_header_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        for proxy in &raw.trusted_proxies {
            let text = self.string(proxy)?;
            let net = parse_net(&text).ok_or_else(|| {
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

    /// The timeouts and intervals, each in place of its default when the file gives it.
    fn durations(&self, raw: &RawSettings, settings: &mut Settings) -> Result<(), RoutesError> {
        let durations: [(&Option<Text<values::Duration>>, &str, _); 5] = [
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
        for (text, what, slot) in durations {
            if let Some(text) = text {
                *slot = self.duration(text, what)?;
            }
        }
        Ok(())
    }
}
