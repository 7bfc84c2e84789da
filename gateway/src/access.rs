//! The access log: one line per request, written when its answer has been sent (so it knows
//! the bytes that went out), or, for a protocol switch, when the tunnel closes.
//!
//! `GATEWAY_ACCESS_LOG` says where the lines go:
//! - `stderr` (the default): as `tracing` events (target `gateway::access`, level info), with
//!   the rest of the log, in `LOG_FORMAT`; `RUST_LOG=warn` silences them;
//! - `off`: nowhere;
//! - a file path: one JSON object per line, appended by a thread of its own, whatever
//!   `RUST_LOG` says; on `SIGHUP` the file is reopened (logrotate's convention: rename, then
//!   signal). Lines the writer cannot keep up with are dropped and counted, never waited for.
//!
//! When the lines go nowhere (`off`, or `stderr` with info disabled), nothing of a request is
//! kept for them: the hot path pays one check.

use std::{
    borrow::Cow,
    fmt,
    fs::{File, OpenOptions},
    io::{BufWriter, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        mpsc,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderValue, Method, Request, Uri, Version, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Serialize;

use crate::{forward::path, http_ext::body::BoxError};

/// Lines queued for the file writer before new ones are dropped.
const QUEUE: usize = 8192;

/// Where `GATEWAY_ACCESS_LOG` sends the lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Destination {
    #[default]
    Stderr,
    Off,
    File(PathBuf),
}

impl Destination {
    /// `stderr`, `off`, or a file path.
    pub fn parse(raw: &str) -> Self {
        match raw.trim() {
            "stderr" => Self::Stderr,
            "off" => Self::Off,
            path => Self::File(PathBuf::from(path)),
        }
    }
}

/// The access log of a running gateway.
#[derive(Debug)]
pub struct AccessLog {
    sink: Sink,
    /// Lines dropped because the file writer was behind.
    pub dropped: AtomicU64,
}

#[derive(Debug)]
enum Sink {
    Tracing,
    Off,
    File(FileSink),
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    lines: mpsc::SyncSender<Vec<u8>>,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Opens the destination (a file is created if missing, and appended to); an unwritable
    /// file is an error at start.
    pub fn open(destination: &Destination) -> std::io::Result<Self> {
        let sink = match destination {
            Destination::Stderr => Sink::Tracing,
            Destination::Off => Sink::Off,
            Destination::File(path) => Sink::File(FileSink::start(path)?),
        };
        Ok(Self {
            sink,
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether lines are written at all right now.
    #[inline]
    pub fn enabled(&self) -> bool {
        match self.sink {
            Sink::Tracing => tracing::enabled!(target: "gateway::access", tracing::Level::INFO),
            Sink::Off => false,
            Sink::File(_) => true,
        }
    }

    /// Reopens the file (after logrotate renamed it); nothing for the other destinations.
    pub fn reopen(&self) {
        if let Sink::File(file) = &self.sink {
            file.reopen.store(true, Relaxed);
            // An empty line wakes the writer, which reopens before writing anything else.
            let _ = file.lines.try_send(Vec::new());
            tracing::info!(file = %file.path.display(), "reopening the access log");
        }
    }

    fn write(&self, line: &Line<'_>) {
        match &self.sink {
            Sink::Off => {}
            Sink::Tracing => line.emit(),
            Sink::File(file) => {
                let mut json = serde_json::to_vec(line).unwrap_or_default();
                json.push(b'\n');
                if file.lines.try_send(json).is_err() {
                    self.dropped.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

impl FileSink {
    fn start(path: &Path) -> std::io::Result<Self> {
        let first = open_append(path)?;
        let (lines, queue) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let (path_owned, flag) = (path.to_owned(), Arc::clone(&reopen));
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&path_owned, first, &queue, &flag))?;
        Ok(Self {
            path: path.to_owned(),
            lines,
            reopen,
        })
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The file writer: writes what is queued, flushing whenever the queue is empty, and reopens
/// the file when asked. Ends when the gateway drops its log.
fn write_lines(path: &Path, file: File, queue: &mpsc::Receiver<Vec<u8>>, reopen: &AtomicBool) {
    let mut out = BufWriter::new(file);
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if reopen.swap(false, Relaxed) {
                let _ = out.flush();
                match open_append(path) {
                    Ok(file) => out = BufWriter::new(file),
                    Err(err) => {
                        tracing::warn!(file = %path.display(), error = %err, "cannot reopen the access log; writing to the old file");
                    }
                }
            }
            if let Err(err) = out.write_all(&line) {
                tracing::warn!(file = %path.display(), error = %err, "cannot write the access log");
            }
            next = queue.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// What a request's line says that is known when it arrives; the rest comes from the
/// gateway as it handles it ([`Outcome`]).
#[derive(Debug)]
pub struct Entry {
    log: Arc<AccessLog>,
    started: Instant,
    time: SystemTime,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    /// Request body bytes read so far (shared with the counting request body).
    bytes_in: Option<Arc<AtomicU64>>,
    /// The request's span, kept open until the line is written (so a trace's server span
    /// covers the whole answer) and entered to write it (so a `stderr` line carries the
    /// span's request id like every other line of the request).
    span: tracing::Span,
    outcome: Outcome,
}

/// What the gateway learned while handling the request.
#[derive(Debug, Default)]
pub struct Outcome {
    pub request_id: Option<HeaderValue>,
    pub client: Option<IpAddr>,
    pub route: Option<String>,
    pub upstream: Option<String>,
    pub address: Option<SocketAddr>,
    pub attempts: usize,
    pub status: u16,
    /// Time to the answer's head.
    pub latency: Duration,
    /// The refusal or failure, for an answer the gateway made itself.
    pub error: Option<String>,
    pub trace_id: Option<String>,
    /// The user a door check vouched for.
    pub user: Option<HeaderValue>,
}

impl Entry {
    /// Starts the entry of `request`, which arrived at `started` and is handled in `span`,
    /// when the log is written at all; counts the request body's bytes from here on.
    pub fn start<B>(
        log: &Arc<AccessLog>,
        request: &Request<B>,
        started: Instant,
        span: &tracing::Span,
    ) -> Option<Box<Self>>
    where
        B: HttpBody,
    {
        if !log.enabled() {
            return None;
        }
        let headers = request.headers();
        Some(Box::new(Self {
            log: Arc::clone(log),
            started,
            time: SystemTime::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            host: headers.get(header::HOST).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            bytes_in: (!request.body().is_end_stream()).then(|| Arc::new(AtomicU64::new(0))),
            span: span.clone(),
            outcome: Outcome::default(),
        }))
    }

    /// The counter the request body adds to, when it has one.
    pub fn bytes_in(&self) -> Option<Arc<AtomicU64>> {
        self.bytes_in.clone()
    }

    pub fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }

    /// Writes the line: `bytes_out` sent to the client (and, for a tunnel, `tunneled_in`
    /// received from it).
    pub fn finish(self: Box<Self>, bytes_out: u64, tunneled_in: Option<u64>) {
        let bytes_in =
            tunneled_in.unwrap_or_else(|| self.bytes_in.as_ref().map_or(0, |n| n.load(Relaxed)));
        let host = self
            .host
            .as_ref()
            .and_then(|host| host.to_str().ok())
            .or_else(|| self.uri.authority().map(http::uri::Authority::as_str));
        let raw_path = self.uri.path();
        let path = path::normalize(raw_path).unwrap_or(Cow::Borrowed(raw_path));
        let outcome = &self.outcome;
        let line = Line {
            time: Rfc3339(self.time),
            request_id: text(outcome.request_id.as_ref()),
            client: outcome.client,
            method: self.method.as_str(),
            host,
            path: &path,
            protocol: protocol(self.version),
            status: outcome.status,
            route: outcome.route.as_deref(),
            upstream: outcome.upstream.as_deref(),
            address: outcome.address,
            attempts: outcome.attempts,
            bytes_in,
            bytes_out,
            latency_ms: millis(outcome.latency),
            duration_ms: millis(self.started.elapsed()),
            user_agent: text(self.user_agent.as_ref()),
            user: text(outcome.user.as_ref()),
            trace_id: outcome.trace_id.as_deref(),
            error: outcome.error.as_deref(),
        };
        let _entered = self.span.enter();
        self.log.write(&line);
    }
}

fn text(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|value| value.to_str().ok())
}

fn millis(duration: Duration) -> f64 {
    // Microsecond precision is plenty, and keeps the lines short.
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// One line, as JSON (file) or as the fields of a `tracing` event (stderr). Absent values are
/// left out of the JSON and written `-` in the event.
#[derive(Debug, Serialize)]
struct Line<'a> {
    time: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<IpAddr>,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    path: &'a str,
    protocol: &'static str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<SocketAddr>,
    attempts: usize,
    bytes_in: u64,
    bytes_out: u64,
    latency_ms: f64,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Line<'_> {
    fn emit(&self) {
        // The request id is the span's, as on every line of the request.
        tracing::info!(
            target: "gateway::access",
            client = %OrDash(self.client),
            method = self.method,
            host = %OrDash(self.host),
            path = self.path,
            protocol = self.protocol,
            status = self.status,
            route = %OrDash(self.route),
            upstream = %OrDash(self.upstream),
            address = %OrDash(self.address),
            attempts = self.attempts,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            latency_ms = self.latency_ms,
            duration_ms = self.duration_ms,
            user_agent = %OrDash(self.user_agent),
            user = %OrDash(self.user),
            trace_id = %OrDash(self.trace_id),
            error = %OrDash(self.error),
            "{}",
            if self.error.is_some() { "refused" } else { "proxied" }
        );
    }
}

/// A value for a log field, `-` when there is none (formatted only if the line is logged).
pub(crate) struct OrDash<T>(pub(crate) Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// A time as RFC 3339 in UTC with milliseconds, `2026-12-06T22:44:50.123Z`.
#[derive(Debug)]
struct Rfc3339(SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60,
            since.subsec_millis()
        )
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// The bytes of data a polled frame carries (0 for trailers, errors, the end, pending).
fn data_len<E>(polled: &Poll<Option<Result<Frame<bytes::Bytes>, E>>>) -> u64 {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.data_ref().map_or(0, |data| data.len() as u64),
        _ => 0,
    }
}

/// A response body that counts what it sends and writes the access-log line when it is done
/// (sent, or dropped because the client went away).
#[derive(Debug)]
pub struct Logged<B> {
    inner: B,
    sent: u64,
    entry: Option<Box<Entry>>,
}

impl<B> Logged<B> {
    pub fn new(inner: B, entry: Box<Entry>) -> Self {
        Self {
            inner,
            sent: 0,
            entry: Some(entry),
        }
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.finish(self.sent, None);
        }
    }
}

impl<B> HttpBody for Logged<B>
where
    B: HttpBody<Data = bytes::Bytes, Error = BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.sent += data_len(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that adds what it reads to a shared counter (the access log's `bytes_in`).
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    read: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, read: Arc<AtomicU64>) -> Self {
        Self { inner, read }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.read.fetch_add(data_len(&polled), Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The tunnel's half of a line: the entry, handed over when the protocol switch is answered.
pub type TunnelEntry = Arc<Mutex<Option<Box<Entry>>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_597_090_123);
        assert_eq!(Rfc3339(at).to_string(), "2026-12-06T22:44:50.123Z");
        assert_eq!(
            Rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn destinations_are_stderr_off_or_a_path() {
        assert_eq!(Destination::parse("stderr"), Destination::Stderr);
        assert_eq!(Destination::parse(" off "), Destination::Off);
        assert_eq!(
            Destination::parse("/var/log/gateway/access.log"),
            Destination::File(PathBuf::from("/var/log/gateway/access.log"))
        );
    }
}
