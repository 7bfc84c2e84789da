//! RFC 9110/9112 behaviour as one table: each row sends a request through the gateway and checks
//! what the probe upstream received and what the client got back.

use serde_json::Value;

use crate::helpers::{Probe, TestGateway, raw, received, routes_to};

/// What a row checks.
enum Expect {
    /// On the JSON echo of what the upstream received.
    Upstream(fn(&Value) -> Result<(), String>),
    /// On the raw response the client read.
    Client(fn(&str) -> Result<(), String>),
}

struct Case {
    name: &'static str,
    /// Which gateway: one trusting the test client as a proxy, or not.
    trusted: bool,
    request: &'static str,
    expect: Expect,
}

fn header_is(echo: &Value, name: &str, value: &str) -> Result<(), String> {
    let got = received(echo, name);
    if got == [value] {
        Ok(())
    } else {
        Err(format!("{name}: expected [{value:?}], got {got:?}"))
    }
}

fn absent(echo: &Value, names: &[&str]) -> Result<(), String> {
    names
        .iter()
        .find(|name| !received(echo, name).is_empty())
        .map_or(Ok(()), |name| Err(format!("{name} was forwarded")))
}

/// Splits a raw HTTP/1.1 response into (head, body) at the blank line.
fn split(answer: &str) -> (&str, &str) {
    answer.split_once("\r\n\r\n").unwrap_or((answer, ""))
}

fn head_has(answer: &str, line: &str) -> bool {
    split(answer)
        .0
        .lines()
        .any(|l| l.eq_ignore_ascii_case(line))
}

const CASES: &[Case] = &[
    Case {
        name: "§7.6.1 fixed hop-by-hop request headers are removed",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTE: gzip\r\nUpgrade: h2c\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| {
            absent(
                echo,
                &[
                    "keep-alive",
                    "proxy-connection",
                    "proxy-authorization",
                    "te",
                    "upgrade",
                ],
            )
        }),
    },
    Case {
        name: "§7.6.1 headers named in Connection are removed",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close, X-Private, x-other\r\nX-Private: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n\r\n",
        expect: Expect::Upstream(|echo| {
            absent(echo, &["x-private", "x-other"])?;
            header_is(echo, "x-kept", "3")
        }),
    },
    Case {
        name: "§7.6.1 hop-by-hop response headers are removed",
        trusted: false,
        request: "GET /hop HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            let head = split(answer).0.to_ascii_lowercase();
            for hop in ["x-upstream-hop:", "keep-alive:", "proxy-connection:"] {
                if head.contains(hop) {
                    return Err(format!("{hop} reached the client"));
                }
            }
            if head.contains("x-upstream-kept: 1") {
                Ok(())
            } else {
                Err("end-to-end header lost".into())
            }
        }),
    },
    Case {
        name: "§7.6.3 Via is added toward the upstream",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nVia: 1.0 client-proxy\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| {
            let via = received(echo, "via");
            if via == ["1.0 client-proxy", "1.1 gateway"] {
                Ok(())
            } else {
                Err(format!("via: {via:?}"))
            }
        }),
    },
    Case {
        name: "§7.6.3 Via is added toward the client",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            if head_has(answer, "via: 1.1 gateway") {
                Ok(())
            } else {
                Err("no Via".into())
            }
        }),
    },
    Case {
        name: "§7.2 Host is preserved and X-Forwarded-Host set",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: shop.example.test:8443\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| {
            header_is(echo, "host", "shop.example.test:8443")?;
            header_is(echo, "x-forwarded-host", "shop.example.test:8443")
        }),
    },
    Case {
        name: "client-sent X-Forwarded-* are replaced from untrusted peers",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| {
            header_is(echo, "x-forwarded-for", "127.0.0.1")?;
            header_is(echo, "x-forwarded-proto", "http")?;
            header_is(echo, "x-forwarded-host", "h")?;
            header_is(echo, "forwarded", "for=127.0.0.1;proto=http;host=h")
        }),
    },
    Case {
        name: "a trusted proxy's X-Forwarded-* and Forwarded are appended to once",
        trusted: true,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.test\r\nForwarded: for=198.51.100.1\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| {
            header_is(echo, "x-forwarded-for", "198.51.100.1, 127.0.0.1")?;
            header_is(echo, "x-forwarded-proto", "https")?;
            header_is(echo, "x-forwarded-host", "www.example.test")?;
            header_is(
                echo,
                "forwarded",
                "for=198.51.100.1, for=127.0.0.1;proto=http;host=h",
            )
        }),
    },
    Case {
        name: "§9.3.2 HEAD gets the headers without a body",
        trusted: false,
        request: "HEAD /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            let (head, body) = split(answer);
            if head.starts_with("HTTP/1.1 200") && body.is_empty() {
                Ok(())
            } else {
                Err(format!("{answer:?}"))
            }
        }),
    },
    Case {
        name: "§15.3.5 204 has no body",
        trusted: false,
        request: "GET /status/204 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            let (head, body) = split(answer);
            if head.starts_with("HTTP/1.1 204") && body.is_empty() {
                Ok(())
            } else {
                Err(format!("{answer:?}"))
            }
        }),
    },
    Case {
        name: "§15.4.5 304 has no body",
        trusted: false,
        request: "GET /status/304 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            let (head, body) = split(answer);
            if head.starts_with("HTTP/1.1 304") && body.is_empty() {
                Ok(())
            } else {
                Err(format!("{answer:?}"))
            }
        }),
    },
    Case {
        name: "§6.5 trailers pass when the client sent TE: trailers",
        trusted: false,
        request: "GET /trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            let body = split(answer).1.to_ascii_lowercase();
            if body.contains("payload") && body.contains("x-checksum: abc123") {
                Ok(())
            } else {
                Err(format!("{answer:?}"))
            }
        }),
    },
    Case {
        name: "TE: trailers (and only that) is passed upstream",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nTE: gzip, trailers\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| header_is(echo, "te", "trailers")),
    },
    Case {
        name: "every Set-Cookie stays its own header",
        trusted: false,
        request: "GET /two-cookies HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        expect: Expect::Client(|answer| {
            let cookies = split(answer)
                .0
                .lines()
                .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
                .count();
            if cookies == 2 {
                Ok(())
            } else {
                Err(format!("{cookies} Set-Cookie lines"))
            }
        }),
    },
    Case {
        name: "X-Request-Id is sent upstream and back",
        trusted: false,
        request: "GET /echo HTTP/1.1\r\nHost: h\r\nX-Request-Id: rfc-suite-1\r\nConnection: close\r\n\r\n",
        expect: Expect::Upstream(|echo| header_is(echo, "x-request-id", "rfc-suite-1")),
    },
];

#[tokio::test]
async fn rfc_table() {
    let probe = Probe::start().await;
    let base = routes_to(&probe).replace("[settings]\n", "[settings]\nforwarded = true\n");
    let untrusted = TestGateway::start(&base).await;
    let trusted = TestGateway::start(&base.replace(
        "[settings]\n",
        "[settings]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    ))
    .await;
    let mut failures = Vec::new();
    for case in CASES {
        let gateway = if case.trusted { &trusted } else { &untrusted };
        let answer = raw(gateway.addr, case.request.as_bytes()).await;
        let outcome = match &case.expect {
            Expect::Client(check) => check(&answer),
            Expect::Upstream(check) => split(&answer)
                .1
                .trim()
                .parse::<Value>()
                .map_err(|_| format!("no JSON echo in {answer:?}"))
                .and_then(|echo| check(&echo)),
        };
        if let Err(why) = outcome {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// §10.1.1: the client waits for `100 Continue` before sending the body; the gateway answers the
/// expectation itself (when it starts reading the body) and the upstream gets the whole body.
#[tokio::test]
async fn expect_100_continue() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = Probe::start().await;
    let gateway = TestGateway::start(&routes_to(&probe)).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .expect("head");
    let mut interim = [0u8; 25];
    tokio::time::timeout(
        std::time::Duration::from_secs(3),
        stream.read_exact(&mut interim),
    )
    .await
    .expect("an interim answer before the body")
    .expect("read");
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(b"hello").await.expect("body");
    let mut rest = String::new();
    stream.read_to_string(&mut rest).await.expect("response");
    let echo: Value = split(&rest).1.trim().parse().expect("echo");
    assert_eq!(echo["body_len"], 5);
    assert!(
        received(&echo, "expect").is_empty(),
        "the expectation was met here"
    );
}
