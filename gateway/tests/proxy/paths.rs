//! One meaning per path, as a table: each raw request target is sent as is, and the row says
//! which upstream serves it and with which path, or that it is refused. Routes: `/login` to the
//! "writer" probe, `/_probe` to the "probe" probe, `/` to the "reader" probe. Without
//! normalization the first rows would reach the wrong upstream: `/login/../_probe/x` would be
//! routed as `/login` and then served, by any upstream that resolves dot-segments, as
//! `/_probe/x` — a way around whatever the `/_probe` route enforces.

use crate::helpers::{Probe, TestGateway, raw};

/// Where a row must end up.
enum Expect {
    /// Served by this probe, which received this path (and query).
    Served(&'static str, &'static str),
    /// Refused by the gateway with 400 JSON.
    Refused,
}

/// `GET target` sent as is (no client normalizes it first): the response head and body.
async fn get(gateway: &TestGateway, target: &str) -> (String, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let answer = raw(gateway.addr, request.as_bytes()).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

const CASES: &[(&str, Expect)] = &[
    ("/login/../_probe/x", Expect::Served("probe", "/_probe/x")),
    ("/_probe/../login", Expect::Served("writer", "/login")),
    ("/_probe/%2e%2e/login", Expect::Served("writer", "/login")),
    (
        "/_probe/%2E%2e/login?next=/x",
        Expect::Served("writer", "/login?next=/x"),
    ),
    ("/_probe//x", Expect::Served("probe", "/_probe/x")),
    ("//_probe/x", Expect::Served("probe", "/_probe/x")),
    ("/_probe/./x", Expect::Served("probe", "/_probe/x")),
    ("/%6cogin", Expect::Served("writer", "/login")),
    ("/loginx/../login/a", Expect::Served("writer", "/login/a")),
    ("/login/..", Expect::Served("reader", "/")),
    (
        "/a%20b/./c?q=%2e%2e",
        Expect::Served("reader", "/a%20b/c?q=%2e%2e"),
    ),
    ("/login", Expect::Served("writer", "/login")),
    ("/_probe/a%2fb", Expect::Refused),
    ("/_probe/a%5Cb", Expect::Refused),
    ("/..", Expect::Refused),
    ("/login/../../_probe", Expect::Refused),
];

#[tokio::test]
async fn every_path_is_routed_and_forwarded_by_its_one_meaning() {
    let (writer, probe, reader) = (
        Probe::named("writer").await,
        Probe::named("probe").await,
        Probe::named("reader").await,
    );
    let gateway = TestGateway::start(&format!(
        "[upstreams]\nwriter = [\"{}\"]\nprobe = [\"{}\"]\nreader = [\"{}\"]\n\
         [[routes]]\npath = \"/login\"\nupstream = \"writer\"\n\
         [[routes]]\npath = \"/_probe\"\nupstream = \"probe\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"reader\"\n",
        writer.url(),
        probe.url(),
        reader.url()
    ))
    .await;
    for (target, expect) in CASES {
        let (head, body) = get(&gateway, target).await;
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        match expect {
            Expect::Served(name, path) => {
                assert_eq!(status, "200", "{target}: {head}");
                let served_by = head
                    .lines()
                    .find_map(|line| line.strip_prefix("x-probe: "))
                    .unwrap_or_default();
                assert_eq!(served_by, *name, "{target}: served by");
                let echo: serde_json::Value = serde_json::from_str(&body).expect("echo");
                let (expected_path, expected_query) = path.split_once('?').unwrap_or((path, ""));
                assert_eq!(echo["path"], *expected_path, "{target}: forwarded path");
                assert_eq!(
                    echo["query"], *expected_query,
                    "{target}: query kept as it came"
                );
            }
            Expect::Refused => {
                assert_eq!(status, "400", "{target}: {head}");
                assert!(body.contains("ambiguous path"), "{target}: {body}");
            }
        }
    }
}

/// `strip_prefix` and `rewrite` replace the matched prefix of the normalized path, segment by
/// segment; the query, and what comes back (`Set-Cookie` paths, `Location`), are left as they are.
#[tokio::test]
async fn a_route_strips_or_rewrites_its_prefix() {
    let (api, legacy, rest) = (
        Probe::named("api").await,
        Probe::named("legacy").await,
        Probe::named("rest").await,
    );
    let gateway = TestGateway::start(&format!(
        "[upstreams]\napi = [\"{}\"]\nlegacy = [\"{}\"]\nrest = [\"{}\"]\n\
         [[routes]]\npath = \"/api\"\nupstream = \"api\"\nstrip_prefix = true\n\
         [[routes]]\npath = \"/old\"\nupstream = \"legacy\"\nrewrite = \"/v2\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"rest\"\n",
        api.url(),
        legacy.url(),
        rest.url()
    ))
    .await;
    for (target, name, path, query) in [
        ("/api/users/7?full=1", "api", "/users/7", "full=1"),
        ("/api", "api", "/", ""),
        ("/api/", "api", "/", ""),
        ("/api/../api/x", "api", "/x", ""),
        ("/old/a/b", "legacy", "/v2/a/b", ""),
        ("/old", "legacy", "/v2", ""),
        ("/apix", "rest", "/apix", ""),
    ] {
        let (head, body) = get(&gateway, target).await;
        assert!(
            head.contains(&format!("x-probe: {name}")),
            "{target}: {head}"
        );
        let echo: serde_json::Value = serde_json::from_str(&body).expect("echo");
        assert_eq!(
            (echo["path"].as_str(), echo["query"].as_str()),
            (Some(path), Some(query)),
            "{target}"
        );
    }
    let answer = raw(
        gateway.addr,
        b"GET /api/two-cookies HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.contains("set-cookie: a=1; Path=/\r\n"),
        "Set-Cookie comes back as the upstream wrote it: {answer}"
    );
}
