//! No port number is picked before it is bound. Our services bind port 0 and write where they
//! listen to `LISTEN_ADDR_FILE`; `redis-server`, which cannot bind port 0, is started on a
//! unix socket, or on TCP with a retry when its port was taken meanwhile (these tests take it
//! on purpose) and only counts as started when the server answering is the one started.

use std::{
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use common::listening::Listeners;
use stack::{
    net,
    process::{Output, Supervised},
    redis::{Endpoint, Persistence, RedisServer},
};

use crate::helpers::{SECRET, TestCa, service_spec, spawn_listening};

/// Candidate ports: `first`, then whatever the kernel calls free.
fn candidates(first: Vec<u16>) -> impl FnMut() -> std::io::Result<u16> {
    let mut first = first.into_iter();
    move || first.next().map_or_else(net::free_port, Ok)
}

#[test]
fn each_service_on_port_zero_writes_where_it_listens_and_answers_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new();
    let leaf = ca.issue(dir.path(), "localhost", &["localhost"]);
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[upstreams]\nnowhere = [\"http://127.0.0.1:9\"]\n[[routes]]\npath = \"/\"\nupstream = \"nowhere\"\n",
    )
    .expect("routes.toml");
    let redis = ("REDIS_URL", "redis://127.0.0.1:9/0");
    for (name, env, listeners) in [
        (
            "writer",
            vec![("WRITER_ADDR", "127.0.0.1:0"), redis],
            vec!["addr"],
        ),
        (
            "reader",
            vec![("READER_ADDR", "127.0.0.1:0"), redis],
            vec!["addr"],
        ),
        (
            "gateway",
            vec![
                ("GATEWAY_ADDR", "127.0.0.1:0"),
                ("GATEWAY_ADMIN_ADDR", "127.0.0.1:0"),
                ("GATEWAY_TLS_ADDR", "127.0.0.1:0"),
                ("GATEWAY_TLS_CERT", leaf.cert.to_str().expect("utf-8")),
                ("GATEWAY_TLS_KEY", leaf.key.to_str().expect("utf-8")),
                ("GATEWAY_ROUTES", routes.to_str().expect("utf-8")),
            ],
            vec!["addr", "admin", "https"],
        ),
    ] {
        let mut spec = service_spec(name, dir.path()).env("SESSION_SECRET", SECRET);
        for (key, value) in &env {
            spec = spec.env(key, *value);
        }
        let file = spec.listen_addr_file().expect("LISTEN_ADDR_FILE");
        let probe = if name == "gateway" { "admin" } else { "addr" };
        let (process, said) = spawn_listening(spec, probe, "/healthz");
        // One `name=address` line per listener, each a real port on loopback.
        let text = std::fs::read_to_string(&file).expect("the file");
        assert_eq!(
            text.lines().count(),
            listeners.len(),
            "{name}: one line per listener: {text}"
        );
        for listener in listeners {
            let addr = said
                .get(listener)
                .unwrap_or_else(|| panic!("{name}: no {listener}= line in {text}"));
            assert!(
                addr.ip().is_loopback() && addr.port() != 0,
                "{name}: {text}"
            );
            assert!(
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok(),
                "{name} listens on {listener} {addr}"
            );
        }
        drop(process);
    }

    // A file that cannot be written stops the service with one line naming the variable.
    let (code, stderr) = crate::config::run(
        "reader",
        &[
            ("READER_ADDR", "127.0.0.1:0"),
            redis,
            ("SESSION_SECRET", SECRET),
            ("LISTEN_ADDR_FILE", "/nonexistent/reader.addr"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("reader: LISTEN_ADDR_FILE: /nonexistent/reader.addr: ")),
        "{stderr}"
    );
}

#[test]
fn a_stale_address_file_is_never_read_as_the_new_process_s() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = service_spec("reader", dir.path())
        .env("READER_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:9/0")
        .env("SESSION_SECRET", SECRET);
    let file = spec.listen_addr_file().expect("LISTEN_ADDR_FILE");
    std::fs::write(&file, "addr=127.0.0.1:9\n").expect("a stale file");
    let mut process = Supervised::spawn(spec).expect("spawn");
    let said = process
        .listeners(Duration::from_secs(20))
        .expect("listeners");
    assert_ne!(said.addr(), Some(SocketAddr::from(([127, 0, 0, 1], 9))));
    assert_eq!(
        Listeners::read(&file).expect("read").expect("written"),
        said
    );
}

#[test]
fn redis_on_tcp_moves_on_when_its_port_is_taken_by_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = |name: &str| Output::File(dir.path().join(format!("{name}.log")));

    // A port some other program listens on: the server started there exits, and the next
    // candidate is used.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let server = RedisServer::start_tcp_from(
        candidates(vec![taken_port]),
        &dir.path().join("a"),
        Persistence::None,
        log("a"),
        &[],
    )
    .expect("a server on another port");
    assert_ne!(server.addr().port(), taken_port);
    assert_eq!(
        server.endpoint().pid(Duration::from_secs(1)),
        Some(server.pid()),
        "the server answering is the one started"
    );
    assert!(
        crate::helpers::logs::read(&dir.path().join("a.log")).contains("Address already in use"),
        "the first try met the taken port"
    );

    // A port where another Redis answers (another test's): it is not mistaken for ours.
    let other = RedisServer::start_tcp(
        &dir.path().join("other"),
        Persistence::None,
        log("other"),
        &[],
    )
    .expect("another Redis");
    let server = RedisServer::start_tcp_from(
        candidates(vec![other.addr().port()]),
        &dir.path().join("b"),
        Persistence::None,
        log("b"),
        &[],
    )
    .expect("a server on another port");
    assert_ne!(server.addr(), other.addr());
    assert_eq!(
        server.endpoint().pid(Duration::from_secs(1)),
        Some(server.pid())
    );

    // A cluster node whose bus port (port + 10,000) is taken: the next candidate.
    let (port, bus) = loop {
        let port = net::free_port().expect("a port");
        if let Some(bus) = port.checked_add(10_000)
            && let Ok(bus) = TcpListener::bind(("127.0.0.1", bus))
        {
            break (port, bus);
        }
    };
    let node = RedisServer::start_tcp_from(
        candidates(vec![port]),
        &dir.path().join("node"),
        Persistence::None,
        log("node"),
        &["--cluster-enabled".into(), "yes".into()],
    )
    .expect("a cluster node on another port");
    assert_ne!(node.addr().port(), port);
    drop(bus);
}

#[test]
fn one_redis_of_a_test_listens_on_a_unix_socket_in_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = RedisServer::start_local(
        &dir.path().join("redis"),
        Persistence::None,
        Output::File(dir.path().join("redis.log")),
    )
    .expect("redis-server");
    let Endpoint::Unix(path) = server.endpoint() else {
        panic!("not a unix socket: {}", server.endpoint());
    };
    assert!(path.starts_with(dir.path()), "{}", path.display());
    assert!(
        server.url().starts_with("redis+unix:///"),
        "{}",
        server.url()
    );
    assert!(server.endpoint().ping(Duration::from_secs(1)));
    // The services accept that URL: a stack on it serves a login.
    let (cookie, _) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let stack = crate::helpers::TestStack::start();
            assert!(stack.redis.url().starts_with("redis+unix://"));
            crate::helpers::login(&stack).await
        });
    assert!(cookie.starts_with("sid="));
}

/// Sends one command to the Redis on `socket` and returns its first reply line.
fn command(socket: &std::path::Path, args: &[&str]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).expect("write");
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).expect("reply");
    line.trim_end().to_owned()
}

#[test]
fn a_restarted_redis_counts_as_started_only_once_its_data_is_loaded() {
    // Redis answers INFO while it replays its append-only file, and -LOADING to everything a
    // service sends; a test that took the first for "up" saw its requests refused.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = RedisServer::start_local(
        &dir.path().join("redis"),
        Persistence::AppendOnlyAlways,
        Output::File(dir.path().join("redis.log")),
    )
    .expect("redis-server");
    let Endpoint::Unix(socket) = server.endpoint().clone() else {
        panic!("not a unix socket: {}", server.endpoint());
    };
    let fill = "for i = 1, 400000 do redis.call('SET', 'k' .. i, i) end";
    assert_eq!(command(&socket, &["EVAL", fill, "0"]), "$-1");
    server.kill();
    server.restart().expect("restarts");
    assert_eq!(command(&socket, &["PING"]), "+PONG", "served at once");
    assert_eq!(command(&socket, &["DBSIZE"]), ":400000");
}
