//! Prometheus metrics of a writer or reader, served as text on its admin listener
//! (`WRITER_ADMIN_ADDR`, `READER_ADMIN_ADDR`; never on the public port): logins by method and
//! result, sessions ended by reason, how long session store commands take, and 503 answers.
//!
//! One set per process ([`metrics`]): a service is one process, and every worker adds to the
//! same counters (atomics; the histogram takes a short lock per command).

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Success,
    /// Wrong credentials, or a sign-in with a provider that failed a check.
    Failure,
    /// Refused before the password was checked: too many failures.
    Throttled,
}

/// Why sessions ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// `/logout`.
    Logout,
    /// `/logout?everywhere=true`.
    Everywhere,
    /// The identity provider's back-channel logout.
    Backchannel,
    /// Ended from the sessions page.
    Revoked,
    /// The oldest sessions of a user over `SESSION_MAX_PER_USER`.
    ExpiredCap,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    method: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    reason: &'static str,
}

/// The metrics of this process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    logins: Family<LoginLabels, Counter>,
    ended: Family<EndLabels, Counter>,
    store_seconds: Histogram,
    unavailable: Counter,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("session");
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Logins by method (password, demo, provider) and result (success, failure, throttled)",
            logins.clone(),
        );
        let ended = Family::<EndLabels, Counter>::default();
        registry.register(
            "ended",
            "Sessions ended, by reason (logout, everywhere, backchannel, revoked, expired_cap)",
            ended.clone(),
        );
        // 0.1 ms, doubling, to ~1.6 s (a command is cut off at one second).
        let store_seconds = Histogram::new((0..15).map(|i| 0.0001 * f64::from(1_u32 << i)));
        registry.register(
            "store_command_seconds",
            "Time taken by session store operations (one Redis command or script each, retry included)",
            store_seconds.clone(),
        );
        let unavailable = Counter::default();
        registry.register(
            "unavailable_responses",
            "Requests answered 503 because the session store was unavailable",
            unavailable.clone(),
        );
        Self {
            registry,
            logins,
            ended,
            store_seconds,
            unavailable,
        }
    }

    pub fn login(&self, method: crate::identity::Method, result: LoginResult) {
        let result = match result {
            LoginResult::Success => "success",
            LoginResult::Failure => "failure",
            LoginResult::Throttled => "throttled",
        };
        self.logins
            .get_or_create(&LoginLabels {
                method: method.as_str(),
                result,
            })
            .inc();
    }

    pub fn ended(&self, reason: EndReason, sessions: u64) {
        if sessions == 0 {
            return;
        }
        let reason = match reason {
            EndReason::Logout => "logout",
            EndReason::Everywhere => "everywhere",
            EndReason::Backchannel => "backchannel",
            EndReason::Revoked => "revoked",
            EndReason::ExpiredCap => "expired_cap",
        };
        self.ended
            .get_or_create(&EndLabels { reason })
            .inc_by(sessions);
    }

    pub fn store_command(&self, took: Duration) {
        self.store_seconds.observe(took.as_secs_f64());
    }

    pub fn unavailable(&self) {
        self.unavailable.inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Method;

    #[test]
    fn counts_show_in_the_text() {
        let metrics = Metrics::new();
        metrics.login(Method::Provider, LoginResult::Failure);
        metrics.ended(EndReason::Backchannel, 3);
        metrics.ended(EndReason::Logout, 0);
        metrics.unavailable();
        metrics.store_command(Duration::from_millis(2));
        let text = metrics.encode();
        assert!(
            text.contains("session_logins_total{method=\"provider\",result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("session_ended_total{reason=\"backchannel\"} 3"),
            "{text}"
        );
        assert!(!text.contains("reason=\"logout\""), "{text}");
        assert!(
            text.contains("session_unavailable_responses_total 1"),
            "{text}"
        );
        assert!(
            text.contains("session_store_command_seconds_count 1"),
            "{text}"
        );
    }
}
