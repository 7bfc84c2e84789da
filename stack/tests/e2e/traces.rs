//! OpenTelemetry traces across the stack: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the gateway,
//! the writer and the reader export their spans to a collector (the test's own, on loopback),
//! one request making one trace across the three processes and Redis.

use std::time::Duration;

use crate::helpers::{
    Options, OtlpReceiver, ReceivedSpan, RefusingPort, TestStack, login, reroute, session_cookie,
    wait,
};

/// OTLP's span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// A stack whose three services export to `receiver`, flushing every 100 ms.
fn exporting_to(receiver: &OtlpReceiver) -> TestStack {
    TestStack::start_with(
        Options::default()
            .env_all("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
            .env_all("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
}

/// The spans of one trace.
fn of_trace<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .collect()
}

/// Whether the trace `trace_id` holds a span of `service` named `name` (by prefix). Spans
/// arrive in batches from three processes, a parent often after its children: tests wait for
/// every span they look at.
fn has(spans: &[ReceivedSpan], trace_id: &str, service: &str, name: &str) -> bool {
    spans.iter().any(|span| {
        span.trace_id == trace_id && span.service == service && span.name.starts_with(name)
    })
}

/// Whether the trace holds a whole chain (see [`assert_one_chain`]).
fn chain_arrived(
    spans: &[ReceivedSpan],
    trace_id: &str,
    service: &str,
    handled: &str,
    redis: &str,
) -> bool {
    has(spans, trace_id, "gateway", handled)
        && has(spans, trace_id, "gateway", "upstream")
        && has(spans, trace_id, service, handled)
        && has(spans, trace_id, service, redis)
}

/// The one span of `trace` that `service` named `name` (by prefix), or a panic listing them all.
fn find<'a>(trace: &[&'a ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = trace
        .iter()
        .filter(|span| span.service == service && span.name.starts_with(name))
        .collect();
    assert_eq!(found.len(), 1, "one {service} span {name:?} in {trace:#?}");
    found[0]
}

/// Checks the chain client → gateway request → upstream attempt → service request → Redis,
/// and returns the gateway's request span.
fn assert_one_chain<'a>(
    trace: &[&'a ReceivedSpan],
    service: &str,
    service_span: &str,
    redis_command: &str,
) -> &'a ReceivedSpan {
    let request = find(trace, "gateway", service_span);
    assert_eq!(request.kind, SERVER, "{request:#?}");
    let attempt = find(trace, "gateway", "upstream");
    assert_eq!(attempt.parent_span_id, request.span_id, "{trace:#?}");
    assert_eq!(attempt.kind, CLIENT);
    assert_eq!(attempt.attribute("attempt"), Some("1"));
    assert_eq!(attempt.attribute("http.response.status_code"), Some("200"));
    let handled = find(trace, service, service_span);
    assert_eq!(handled.parent_span_id, attempt.span_id, "{trace:#?}");
    assert_eq!(handled.kind, SERVER);
    let command = find(trace, service, redis_command);
    assert_eq!(command.parent_span_id, handled.span_id, "{trace:#?}");
    assert_eq!(command.kind, CLIENT);
    assert_eq!(command.attribute("db.system.name"), Some("redis"));
    // Never a key or a value: they hold user ids and session ids.
    assert!(
        command
            .attributes
            .iter()
            .all(|(key, _)| key.starts_with("db.") || !key.contains("key")),
        "{command:#?}"
    );
    request
}

#[tokio::test]
async fn one_request_is_one_trace_across_gateway_service_and_redis() {
    let receiver = OtlpReceiver::start().await;
    let stack = exporting_to(&receiver);
    let client = stack.client();

    // A login whose client is itself traced: the gateway continues the client's trace.
    let (login_trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let login = client
        .post(stack.url("/login"))
        .header("traceparent", format!("00-{login_trace}-{client_span}-01"))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let cookie = format!("sid={}", session_cookie(&login).expect("a session cookie"));

    // A read from a client that sends no trace context: the gateway starts the trace.
    let read = client
        .get(stack.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);

    let spans = receiver
        .wait_for(
            "spans of the login and the read from all three processes",
            |spans| {
                chain_arrived(spans, login_trace, "writer", "POST /login", "EVALSHA login")
                    && spans.iter().any(|span| {
                        span.service == "reader"
                            && span.name == "GET /"
                            && chain_arrived(spans, &span.trace_id, "reader", "GET /", "GETEX")
                    })
            },
        )
        .await;

    let login_spans = of_trace(&spans, login_trace);
    let request = assert_one_chain(&login_spans, "writer", "POST /login", "EVALSHA login");
    assert_eq!(
        request.parent_span_id, client_span,
        "the client's span is the parent"
    );

    let read_span = spans
        .iter()
        .find(|span| span.service == "reader" && span.name == "GET /")
        .expect("the reader's span");
    let read_spans = of_trace(&spans, &read_span.trace_id);
    let request = assert_one_chain(&read_spans, "reader", "GET /", "GETEX");
    assert_eq!(
        request.parent_span_id, "",
        "a trace of its own, begun at the gateway"
    );
    assert_ne!(read_span.trace_id, login_trace);
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored() {
    let receiver = OtlpReceiver::start().await;
    let stack = exporting_to(&receiver);
    let malformed = [
        "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "not a traceparent",
    ];
    for traceparent in malformed {
        // No session: the reader answers 401, through the gateway.
        let response = stack
            .client()
            .get(stack.url("/"))
            .header("traceparent", traceparent)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401, "{traceparent}");
    }
    let is_read = |span: &&ReceivedSpan| span.service == "reader" && span.name == "GET /";
    let spans = receiver
        .wait_for("four reads, each traced from the gateway", |spans| {
            let reads: Vec<_> = spans.iter().filter(is_read).collect();
            reads.len() >= malformed.len()
                && reads.iter().all(|read| {
                    has(spans, &read.trace_id, "gateway", "GET /")
                        && has(spans, &read.trace_id, "gateway", "upstream")
                })
        })
        .await;
    for handled in spans.iter().filter(is_read) {
        let trace = of_trace(&spans, &handled.trace_id);
        let request = find(&trace, "gateway", "GET /");
        assert_eq!(request.parent_span_id, "", "a new root: {trace:#?}");
        assert_ne!(request.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(request.trace_id, "00000000000000000000000000000000");
        let attempt = find(&trace, "gateway", "upstream");
        assert_eq!(handled.parent_span_id, attempt.span_id, "{trace:#?}");
    }
}

#[tokio::test]
async fn retries_and_the_door_check_are_spans_of_their_own() {
    let receiver = OtlpReceiver::start().await;
    let stack = exporting_to(&receiver);
    let refusing = RefusingPort::bind().expect("a refusing port");
    let (closed, reader) = (refusing.addr(), stack.reader_addr);
    let routes = stack
        .routes()
        .upstream_table(
            "flaky",
            &format!(
                "targets = [\"http://{closed}\", \"http://{reader}\"]\nbalance = \"round_robin\"\n\
                 eject = {{ failures = 100, cooldown = \"1s\" }}"
            ),
        )
        .route_with("/flaky", "flaky", "strip_prefix = true")
        .route_with(
            "/private",
            "reader",
            "auth = \"session\"\nstrip_prefix = true",
        )
        .table("[auth.session]\nupstream = \"reader\"\npath = \"/session\"");
    reroute(&stack, routes).await;
    let client = stack.client();
    // Round robin over two addresses, one refusing: of two requests on one connection, one
    // tries the refusing address first and is retried on the other.
    for _ in 0..2 {
        let response = client
            .get(stack.url("/flaky/healthz"))
            .send()
            .await
            .expect("flaky");
        assert_eq!(response.status(), 200);
    }
    let (cookie, _) = login(&stack).await;
    let private = client
        .get(stack.url("/private/healthz"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("private");
    assert_eq!(private.status(), 200);

    let spans = receiver
        .wait_for("a retried request and a door-checked one", |spans| {
            let retried = spans
                .iter()
                .find(|span| span.attribute("attempt") == Some("2"));
            let checked = spans
                .iter()
                .find(|span| span.service == "gateway" && span.name == "GET /private/healthz");
            let (Some(retried), Some(checked)) = (retried, checked) else {
                return false;
            };
            let upstreams = |trace_id: &str| {
                of_trace(spans, trace_id)
                    .iter()
                    .filter(|span| span.name.starts_with("upstream"))
                    .count()
            };
            has(spans, &retried.trace_id, "gateway", "GET /flaky/healthz")
                && has(spans, &retried.trace_id, "reader", "GET /healthz")
                && upstreams(&retried.trace_id) == 2
                && ["door check", "GET /session", "GETEX", "GET /healthz"]
                    .iter()
                    .all(|name| {
                        has(spans, &checked.trace_id, "gateway", name)
                            || has(spans, &checked.trace_id, "reader", name)
                    })
                && upstreams(&checked.trace_id) == 2
        })
        .await;

    let second = spans
        .iter()
        .find(|span| span.attribute("attempt") == Some("2"))
        .expect("a second attempt");
    let trace = of_trace(&spans, &second.trace_id);
    let request = find(&trace, "gateway", "GET /flaky/healthz");
    let attempts: Vec<_> = trace
        .iter()
        .filter(|span| span.name.starts_with("upstream"))
        .collect();
    assert_eq!(attempts.len(), 2, "{trace:#?}");
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, request.span_id, "{trace:#?}");
    }
    let first = attempts
        .iter()
        .find(|span| span.attribute("attempt") == Some("1"))
        .expect("the first attempt");
    assert_eq!(
        first.attribute("server.address"),
        Some(closed.to_string().as_str())
    );
    assert_eq!(
        first.attribute("http.response.status_code"),
        None,
        "it never answered"
    );
    assert_eq!(second.attribute("http.response.status_code"), Some("200"));
    let handled = find(&trace, "reader", "GET /healthz");
    assert_eq!(handled.parent_span_id, second.span_id);

    let door = spans
        .iter()
        .find(|span| span.service == "gateway" && span.name == "GET /private/healthz")
        .expect("the door-checked request");
    let trace = of_trace(&spans, &door.trace_id);
    let check = find(&trace, "gateway", "door check");
    assert_eq!(check.parent_span_id, door.span_id);
    let asked = find(&trace, "reader", "GET /session");
    let asking = trace
        .iter()
        .find(|span| span.span_id == asked.parent_span_id)
        .expect("the attempt that asked");
    assert_eq!(
        asking.parent_span_id, check.span_id,
        "the check's attempt is under the check"
    );
    let served = find(&trace, "reader", "GET /healthz");
    let forwarding = trace
        .iter()
        .find(|span| span.span_id == served.parent_span_id)
        .expect("the attempt that forwarded");
    assert_eq!(forwarding.parent_span_id, door.span_id, "{trace:#?}");
    let read = find(&trace, "reader", "GETEX");
    assert_eq!(
        read.parent_span_id, asked.span_id,
        "the check read the session"
    );
}

/// The gateway's access log in a file (`GATEWAY_ACCESS_LOG`): each line carries the trace id
/// of its request, and SIGHUP reopens the file after logrotate renamed it.
#[tokio::test]
async fn the_access_log_names_the_trace_and_is_reopened_on_sighup() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let mut options = Options::default()
        .env_all("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint())
        .env_all("OTEL_BSP_SCHEDULE_DELAY", "100");
    options.gateway_env.push((
        "GATEWAY_ACCESS_LOG".to_owned(),
        log.to_str().expect("utf-8").to_owned(),
    ));
    let stack = TestStack::start_with(options);
    let lines = |path: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    };
    let read = |id: &str| {
        let request = stack
            .client()
            .get(stack.url("/"))
            .header("x-request-id", id);
        async move { request.send().await.expect("read").status() }
    };
    let logged = |path: &std::path::Path, id: &str| {
        lines(path)
            .into_iter()
            .find(|line| line["request_id"] == id)
    };

    assert_eq!(read("before-rotation").await, 401);
    wait::until("the first line", Duration::from_secs(5), || async {
        logged(&log, "before-rotation").is_some()
    })
    .await;
    let line = logged(&log, "before-rotation").expect("the line");
    let trace_id = line["trace_id"].as_str().expect("a trace id").to_owned();
    let spans = receiver
        .wait_for("the request's gateway span", |spans| {
            spans.iter().any(|span| {
                span.service == "gateway" && span.trace_id == trace_id && span.name == "GET /"
            })
        })
        .await;
    let request = spans
        .iter()
        .find(|span| span.service == "gateway" && span.trace_id == trace_id && span.name == "GET /")
        .expect("the span");
    assert_eq!(request.attribute("request_id"), Some("before-rotation"));

    // logrotate: rename, then SIGHUP; the gateway writes on in a new file of the old name.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).expect("rename");
    stack.gateway.signal(nix::sys::signal::Signal::SIGHUP);
    wait::until(
        "the gateway to reopen its access log",
        Duration::from_secs(5),
        || async { log.exists() },
    )
    .await;
    assert_eq!(read("after-rotation").await, 401);
    wait::until(
        "the line in the new file",
        Duration::from_secs(5),
        || async { logged(&log, "after-rotation").is_some() },
    )
    .await;
    assert!(logged(&rotated, "before-rotation").is_some());
    assert!(
        logged(&rotated, "after-rotation").is_none(),
        "nothing more in the old file"
    );
}
