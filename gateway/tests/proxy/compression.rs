//! `compress = true`: responses encoded as the client's Accept-Encoding prefers, decoded back to
//! the upstream's bytes, and the responses that are never encoded.

use std::time::{Duration, Instant};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::helpers::{Probe, Routes, TestGateway, client, shaped_body};

/// A gateway whose `/z` route compresses and whose other paths do not.
async fn gateway(probe: &Probe) -> TestGateway {
    let routes = Routes::new()
        .setting("request_timeout = \"5s\"")
        .upstream("probe", [probe.url()])
        .route_with("/z", "probe", "compress = true\nstrip_prefix = true")
        .route("/", "probe")
        .to_string();
    TestGateway::start(&routes).await
}

/// GET `path` with `Accept-Encoding: accept` (none when empty).
async fn get(gateway: &TestGateway, path: &str, accept: &str) -> reqwest::Response {
    let mut request = client().get(gateway.url(path));
    if !accept.is_empty() {
        request = request.header("accept-encoding", accept);
    }
    request.send().await.expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("text"))
}

fn varies(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all("vary")
        .iter()
        .any(|value| value.to_str().expect("text").contains("accept-encoding"))
}

/// The body of `response`, decoded from its Content-Encoding.
async fn decoded(response: reqwest::Response) -> Vec<u8> {
    let coding = header(&response, "content-encoding").map(str::to_owned);
    let bytes = response.bytes().await.expect("body");
    let mut out = Vec::new();
    match coding.as_deref() {
        None => (&bytes[..]).read_to_end(&mut out).await,
        Some("gzip") => GzipDecoder::new(&bytes[..]).read_to_end(&mut out).await,
        Some("br") => BrotliDecoder::new(&bytes[..]).read_to_end(&mut out).await,
        Some("zstd") => ZstdDecoder::new(&bytes[..]).read_to_end(&mut out).await,
        Some(other) => panic!("unexpected coding {other}"),
    }
    .map(drop)
    .expect("decodes");
    out
}

#[tokio::test]
async fn the_coding_follows_accept_encoding_and_decodes_to_the_original() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let cases = [
        ("gzip, deflate, br, zstd", "br", "/z/shaped?len=50000"),
        ("gzip, zstd", "zstd", "/z/shaped?len=50000"),
        ("gzip", "gzip", "/z/shaped?len=50000"),
        (
            "br;q=0.5, gzip;q=0.9, zstd;q=0.1",
            "gzip",
            "/z/shaped?len=50000",
        ),
        ("br;q=0, *", "zstd", "/z/shaped?len=50000"),
        ("gzip", "gzip", "/z/shaped?len=50000&chunked"),
    ];
    for (accept, coding, path) in cases {
        let response = get(&gateway, path, accept).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "content-encoding"),
            Some(coding),
            "{accept}"
        );
        assert_eq!(header(&response, "content-length"), None, "{accept}");
        assert_eq!(header(&response, "accept-ranges"), None, "{accept}");
        assert!(varies(&response), "{accept}");
        let body = decoded(response).await;
        assert_eq!(body, shaped_body(50_000), "{accept}");
    }
}

#[tokio::test]
async fn refused_or_unasked_compression_sends_identity_with_vary() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    for accept in ["", "gzip;q=0", "*;q=0", "identity"] {
        let response = get(&gateway, "/z/shaped?len=4096", accept).await;
        assert_eq!(header(&response, "content-encoding"), None, "{accept:?}");
        assert_eq!(header(&response, "content-length"), Some("4096"));
        assert_eq!(header(&response, "accept-ranges"), Some("bytes"));
        assert!(varies(&response), "{accept:?}");
        assert_eq!(response.bytes().await.expect("body"), shaped_body(4096));
    }
}

#[tokio::test]
async fn a_route_without_compress_never_compresses() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let response = get(&gateway, "/shaped?len=50000", "gzip, br, zstd").await;
    assert_eq!(header(&response, "content-encoding"), None);
    assert!(!varies(&response));
    assert_eq!(header(&response, "content-length"), Some("50000"));
}

#[tokio::test]
async fn excluded_responses_pass_as_they_are() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let cases = [
        ("already encoded", "/z/shaped?encoding=br"),
        ("no-transform", "/z/shaped?cache=public,no-transform"),
        ("small", "/z/shaped?len=1000"),
        ("204", "/z/shaped?status=204"),
        ("304", "/z/shaped?status=304"),
        ("206", "/z/shaped?status=206&range=bytes%200-2047/9000"),
        ("content-range", "/z/shaped?range=bytes%200-2047/9000"),
    ];
    for (case, path) in cases {
        let response = get(&gateway, path, "gzip, br").await;
        let upstreams = (case == "already encoded").then_some("br");
        assert_eq!(header(&response, "content-encoding"), upstreams, "{case}");
        assert!(varies(&response), "{case}");
        if response.status() == 200 {
            let length = if case == "small" { "1000" } else { "2048" };
            assert_eq!(header(&response, "content-length"), Some(length), "{case}");
        }
    }
}

#[tokio::test]
async fn head_requests_are_not_compressed() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let response = client()
        .head(gateway.url("/z/shaped?len=4096"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-encoding"), None);
    assert_eq!(header(&response, "content-length"), Some("4096"));
    assert!(varies(&response));
}

#[tokio::test]
async fn a_strong_etag_becomes_weak_when_compressed() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let response = get(&gateway, "/z/shaped?etag=v1", "gzip").await;
    assert_eq!(header(&response, "content-encoding"), Some("gzip"));
    assert_eq!(header(&response, "etag"), Some("W/\"v1\""));
    let response = get(&gateway, "/z/shaped?etag=v1", "").await;
    assert_eq!(
        header(&response, "etag"),
        Some("\"v1\""),
        "identity keeps it"
    );
}

#[tokio::test]
async fn an_existing_vary_is_extended() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let response = get(&gateway, "/z/shaped?vary=origin", "gzip").await;
    let vary: Vec<_> = response
        .headers()
        .get_all("vary")
        .iter()
        .map(|value| value.to_str().expect("text").to_owned())
        .collect();
    assert_eq!(vary, ["origin", "accept-encoding"]);
}

#[tokio::test]
async fn event_streams_stay_streams() {
    let probe = Probe::start().await;
    let gateway = gateway(&probe).await;
    let started = Instant::now();
    let response = get(&gateway, "/z/events", "gzip, br, zstd").await;
    assert_eq!(header(&response, "content-encoding"), None);
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("an event").expect("data");
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"data: first\n\n");
    // The upstream sends the second event 2 s after the first.
    assert!(
        first_at < Duration::from_millis(1500),
        "first event after {first_at:?}"
    );
}
