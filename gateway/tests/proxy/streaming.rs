//! Bodies are streamed in both directions, not buffered.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::helpers::{Probe, TestGateway, client, json, routes_to};

#[tokio::test]
async fn large_request_bodies_pass_through() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let chunks = futures_util::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 16 * 1024]))),
    );
    let response = client()
        .put(gateway.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    let (status, echo) = json(response).await;
    assert_eq!(status, 200);
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_len"], 64 * 16 * 1024);
}

#[tokio::test]
async fn response_chunks_arrive_as_the_upstream_sends_them() {
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let started = Instant::now();
    let response = client()
        .get(gateway.url("/stream"))
        .send()
        .await
        .expect("request");
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("a chunk").expect("data");
    let first_at = started.elapsed();
    let mut all = first.to_vec();
    while let Some(chunk) = stream.next().await {
        all.extend_from_slice(&chunk.expect("data"));
    }
    assert_eq!(
        String::from_utf8(all).expect("utf-8"),
        "chunk0;chunk1;chunk2;chunk3;chunk4;"
    );
    // The upstream holds the rest of the body for 2 s after the first chunk; a gateway that
    // buffered would deliver nothing before then.
    assert!(
        first_at < Duration::from_millis(1500),
        "first chunk after {first_at:?}"
    );
}
