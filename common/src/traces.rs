//! OpenTelemetry traces, exported over OTLP when the standard variables ask for it, and the W3C
//! trace context (`traceparent`, `tracestate`) carried from process to process.
//!
//! The `tracing` spans the binaries already open become OpenTelemetry spans through
//! `tracing-opentelemetry`; nothing here is specific to one binary. With no OTLP endpoint set
//! (the default), no exporter runs, [`exporting`] is `false`, and the binaries skip every span
//! and header they would add only for a trace: the hot path pays one relaxed load.
//!
//! Settings are the OpenTelemetry specification's: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export on; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` keeps it off; `OTEL_SERVICE_NAME` names the process (default: the
//! binary's name); `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_RESOURCE_ATTRIBUTES` are
//! read by the OpenTelemetry SDK and exporter themselves.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{ConfigError, env};

/// Whether spans are exported: set once, at start.
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// The provider, kept to flush what is queued when the process ends.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether this process exports traces. When `false`, skip work done only for a trace.
#[inline]
pub fn exporting() -> bool {
    EXPORTING.load(Relaxed)
}

/// The OTLP export settings read from the environment, when export is asked for.
#[derive(Debug)]
pub(crate) struct TraceExport {
    /// The variable that set the endpoint, for errors.
    endpoint_var: &'static str,
    service_name: String,
    timeout: Duration,
}

impl TraceExport {
    /// `None` unless an OTLP endpoint is set and nothing turns export off.
    pub(crate) fn from_env(binary: &str) -> Result<Option<Self>, ConfigError> {
        if env::flag("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        match env::optional("OTEL_TRACES_EXPORTER")?.as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_EXPORTER",
                    format!("{other:?} is not an exporter here (use otlp or none)"),
                ));
            }
        }
        let endpoint = match env::optional("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")? {
            Some(url) => Some(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)),
            None => env::optional("OTEL_EXPORTER_OTLP_ENDPOINT")?
                .map(|url| ("OTEL_EXPORTER_OTLP_ENDPOINT", url)),
        };
        let Some((endpoint_var, url)) = endpoint else {
            return Ok(None);
        };
        let usable = url.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
        });
        if !usable {
            return Err(ConfigError::new(
                endpoint_var,
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        // The exporter would quietly fall back to protobuf for a protocol it was not built
        // with, and a gRPC port would then refuse every export.
        let protocols = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                env::optional("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?,
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                env::optional("OTEL_EXPORTER_OTLP_PROTOCOL")?,
            ),
        ];
        for (name, protocol) in protocols {
            if let Some(other) = protocol.filter(|protocol| protocol != "http/protobuf") {
                return Err(ConfigError::new(
                    name,
                    format!(
                        "{other:?} is not supported; use http/protobuf (a collector's port 4318)"
                    ),
                ));
            }
        }
        let timeout = match env::parse_optional::<u64>(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "milliseconds",
        )? {
            Some(ms) => Some(ms),
            None => env::parse_optional::<u64>("OTEL_EXPORTER_OTLP_TIMEOUT", "milliseconds")?,
        };
        Ok(Some(Self {
            endpoint_var,
            service_name: env::optional("OTEL_SERVICE_NAME")?.unwrap_or_else(|| binary.to_owned()),
            timeout: Duration::from_millis(timeout.unwrap_or(10_000)),
        }))
    }

    /// Builds the exporter and the provider, and returns the `tracing` layer that feeds it.
    pub(crate) fn install<S>(
        self,
    ) -> Result<
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        ConfigError,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let client = BlockingClient::new(self.timeout)
            .map_err(|err| ConfigError::new(self.endpoint_var, err))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_timeout(self.timeout)
            .build()
            .map_err(|err| ConfigError::new(self.endpoint_var, err.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(self.service_name)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("one-origin");
        // A second install (tests that build several apps in one process) keeps the first.
        let _ = PROVIDER.set(provider);
        EXPORTING.store(true, Relaxed);
        // Spans carry what the code records, not where it runs: no source location, thread or
        // busy/idle times (each an attribute per span, and work on every enter and exit).
        Ok(tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false))
    }
}

/// Sends what is still queued and stops the exporter; call once the server has stopped.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        eprintln!("traces: could not flush the last spans: {err}");
    }
}

/// Makes `span` continue the trace of an incoming request, whose headers `get` reads. A
/// request without a valid `traceparent` (absent, malformed, all-zero ids) starts a new trace.
/// Does nothing unless [`exporting`].
pub fn continue_trace<'h>(span: &Span, get: impl Fn(&str) -> Option<&'h str>) {
    if !exporting() {
        return;
    }
    let context = TraceContextPropagator::new().extract(&Headers(get, std::marker::PhantomData));
    // Only a remote parent is adopted: without one, the span keeps the trace it is in.
    if opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .is_valid()
    {
        let _ = span.set_parent(context);
    }
}

/// Calls `set(name, value)` for each W3C header that carries `span`'s context to the next
/// process (`traceparent`, and `tracestate` when there is one). Does nothing unless
/// [`exporting`].
pub fn propagate(span: &Span, mut set: impl FnMut(&'static str, String)) {
    if !exporting() {
        return;
    }
    let mut headers = Vec::with_capacity(2);
    TraceContextPropagator::new().inject_context(&span.context(), &mut Collected(&mut headers));
    for (name, value) in headers {
        let name = match name.as_str() {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => continue,
        };
        set(name, value);
    }
}

/// The trace id of `span`, as 32 hex digits, when it is in a sampled trace.
pub fn trace_id(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span_context = opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// An incoming request's headers, as the propagator reads them. (The marker ties the values'
/// lifetime to the reader's, which `Extractor::get` needs.)
struct Headers<'h, F>(F, std::marker::PhantomData<&'h str>);

impl<'h, F: Fn(&str) -> Option<&'h str>> Extractor for Headers<'h, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        // Only asked for by propagators that look for header names they do not know up front
        // (baggage prefixes); the trace context names its two.
        Vec::new()
    }
}

/// The headers the propagator writes, collected.
struct Collected<'a>(&'a mut Vec<(String, String)>);

impl Injector for Collected<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// The exporter's HTTP client: reqwest's blocking client (with rustls on ring, as every other
/// TLS of the stack), which suits the SDK's batch processor: it exports from a thread of its
/// own, outside any async runtime.
#[derive(Debug)]
struct BlockingClient(reqwest::blocking::Client);

impl BlockingClient {
    fn new(timeout: Duration) -> Result<Self, String> {
        // Building a blocking client inside an async runtime panics; the binaries start their
        // runtime before reading settings, so it is built on a thread of its own.
        std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
                .map(Self)
                .map_err(|err| format!("cannot build the OTLP client: {err}"))
        })
        .join()
        .map_err(|_| "the OTLP client's builder panicked".to_owned())?
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for BlockingClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            *headers = response.headers().clone();
        }
        Ok(answer.body(response.bytes()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_done_for_a_trace_unless_exporting() {
        // No test here installs an exporter.
        assert!(!exporting());
        let span = Span::none();
        let mut set = Vec::new();
        propagate(&span, |name, value| set.push((name, value)));
        assert!(set.is_empty());
        assert_eq!(trace_id(&span), None);
    }
}
