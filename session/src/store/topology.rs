//! What `REDIS_URL` names: one Redis, the seed nodes of a Redis Cluster, or the sentinels that
//! know the primary of a Sentinel-managed Redis.
//!
//! ```text
//! redis://127.0.0.1:6379/0                                one Redis (also redis+unix://)
//! redis://10.0.0.1:7000,redis://10.0.0.2:7000,...         a cluster: its seed nodes
//! redis+sentinel://[user:pass@]h1:26379,h2:26379/mymaster[/db]
//!                                                         the primary the sentinels name
//! ```
//!
//! Each over TLS with an `s`: `rediss://…` (every seed of a cluster alike) and
//! `rediss+sentinel://…` (TLS to the sentinels and to the primary they name), with the
//! certificates of [`super::tls`] ([`Topology::secure`]). A URL that asks to skip verifying the
//! server's certificate (`#insecure`) is refused.
//!
//! One Redis may be down when a service starts: it connects on first use. A cluster or a Sentinel
//! set-up is asked once at start ([`Topology::verify`]), because a wrong seed list or master name
//! would otherwise only show up later, as a 503 on every request.

use std::{fmt, time::Duration};

use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    TlsCertificates,
};

/// The port sentinels listen on unless the URL says otherwise.
const SENTINEL_PORT: u16 = 26379;

/// How long the start-up check waits for each node.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the start-up check waits for a cluster whose nodes answer but do not serve yet: a
/// cluster just created (or healing) takes a moment until every node calls it ok.
const CLUSTER_SETTLE: Duration = Duration::from_secs(5);

/// A parsed `REDIS_URL`.
#[derive(Clone)]
pub enum Topology {
    /// One Redis server.
    Single(ConnectionInfo),
    /// A Redis Cluster, reached through these seed nodes (any reachable one will do).
    Cluster(Vec<ConnectionInfo>),
    /// A primary found through sentinels, followed across failovers.
    Sentinel(SentinelSetup),
}

/// The sentinels, the name of the primary they watch, and how to talk to the data nodes.
#[derive(Clone)]
pub struct SentinelSetup {
    pub sentinels: Vec<ConnectionInfo>,
    pub master_name: String,
    /// Database and credentials for the primary (not for the sentinels).
    pub node: RedisConnectionInfo,
    /// `rediss+sentinel://`: TLS to the sentinels and to the primary.
    pub tls: bool,
}

/// Addresses only: a `ConnectionInfo` carries the password.
impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses = |nodes: &[ConnectionInfo]| nodes.iter().map(address).collect::<Vec<_>>();
        match self {
            Self::Single(info) => f.debug_tuple("Single").field(&address(info)).finish(),
            Self::Cluster(nodes) => f.debug_tuple("Cluster").field(&addresses(nodes)).finish(),
            Self::Sentinel(setup) => f.debug_tuple("Sentinel").field(setup).finish(),
        }
    }
}

impl fmt::Debug for SentinelSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentinels: Vec<_> = self.sentinels.iter().map(address).collect();
        f.debug_struct("SentinelSetup")
            .field("sentinels", &sentinels)
            .field("master_name", &self.master_name)
            .field("db", &self.node.db())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Topology {
    /// Parses one of the forms in the module docs.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(rest) = raw.strip_prefix("redis+sentinel://") {
            return parse_sentinel(rest, false).map(Self::Sentinel);
        }
        if let Some(rest) = raw.strip_prefix("rediss+sentinel://") {
            return parse_sentinel(rest, true).map(Self::Sentinel);
        }
        if raw.contains(',') {
            let nodes = raw
                .split(',')
                .map(|node| parse_node(node.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            if nodes.iter().any(is_tls) && !nodes.iter().all(is_tls) {
                return Err(
                    "mixes rediss:// and redis:// seeds: a Redis Cluster is reached over \
                            TLS on every node or on none"
                        .into(),
                );
            }
            if let Some(node) = nodes.iter().find(|node| node.redis_settings().db() != 0) {
                return Err(format!(
                    "a Redis Cluster has only database 0, but {} asks for database {}",
                    address(node),
                    node.redis_settings().db()
                ));
            }
            return Ok(Self::Cluster(nodes));
        }
        parse_node(raw).map(Self::Single)
    }

    /// Whether the connections use TLS (`rediss://`, `rediss+sentinel://`).
    pub fn uses_tls(&self) -> bool {
        match self {
            Self::Single(info) => is_tls(info),
            Self::Cluster(nodes) => nodes.iter().all(is_tls),
            Self::Sentinel(setup) => setup.tls,
        }
    }

    /// The same addresses with `certificates` on every TLS connection (the sentinels' too), so
    /// that the start-up check and every later connection verify the server alike.
    pub fn secure(self, certificates: &TlsCertificates) -> Result<Self, String> {
        let secure = |info: ConnectionInfo| {
            if is_tls(&info) {
                Client::build_with_tls(info, certificates.clone())
                    .map(|client| client.get_connection_info().clone())
                    .map_err(|err| err.to_string())
            } else {
                Ok(info)
            }
        };
        let all = |nodes: Vec<ConnectionInfo>| {
            nodes
                .into_iter()
                .map(secure)
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(match self {
            Self::Single(info) => Self::Single(secure(info)?),
            Self::Cluster(nodes) => Self::Cluster(all(nodes)?),
            Self::Sentinel(setup) => Self::Sentinel(SentinelSetup {
                sentinels: all(setup.sentinels)?,
                ..setup
            }),
        })
    }

    /// Asks a cluster or the sentinels whether they serve, once, at start: `Err` says in one
    /// line what is wrong. One Redis may start after the service: only its certificate is
    /// checked, when it answers over TLS.
    pub fn verify(&self) -> Result<(), String> {
        match self {
            Self::Single(info) => verify_certificate(info),
            Self::Cluster(nodes) => verify_cluster(nodes),
            Self::Sentinel(setup) => verify_sentinel(setup),
        }
    }
}

fn parse_node(raw: &str) -> Result<ConnectionInfo, String> {
    let info = raw
        .into_connection_info()
        .map_err(|err| format!("not a Redis URL like redis://127.0.0.1:6379/0 ({err})"))?;
    match info.addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => Err(
            "asks to skip verifying the server's certificate (#insecure), which is never done: \
             set REDIS_CA to the CA that signed it instead"
                .into(),
        ),
        _ => Ok(info),
    }
}

/// Whether `info` is reached over TLS.
fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

/// `[user:pass@]h1:26379,h2:26379/mymaster[/db]` (after the scheme); `tls` for
/// `rediss+sentinel://`.
fn parse_sentinel(rest: &str, tls: bool) -> Result<SentinelSetup, String> {
    const EXAMPLE: &str = "like redis+sentinel://h1:26379,h2:26379,h3:26379/mymaster";
    if rest.contains('#') {
        return Err(
            "has a fragment (#…): skipping the verification of certificates (#insecure) is \
             never done; set REDIS_CA to the CA that signed them instead"
                .into(),
        );
    }
    let scheme = if tls { "rediss" } else { "redis" };
    let (authority, path) = rest.split_once('/').ok_or_else(|| {
        format!("names no primary: write its name after the sentinels, {EXAMPLE}")
    })?;
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let (master_name, db) = match path.split_once('/') {
        Some((name, db)) => (name, Some(db)),
        None => (path, None),
    };
    if master_name.is_empty() {
        return Err(format!("names no primary, {EXAMPLE}"));
    }
    let db: i64 = match db {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| format!("'{db}' after the primary's name is not a database number"))?,
    };
    let sentinels = hosts
        .split(',')
        .map(|host| {
            let host = host.trim();
            if host.is_empty() {
                return Err(format!("has an empty sentinel address, {EXAMPLE}"));
            }
            let with_port = if has_port(host) {
                host.to_owned()
            } else {
                format!("{host}:{SENTINEL_PORT}")
            };
            parse_node(&format!("{scheme}://{with_port}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The credentials and the database are the primary's: let the URL parser decode them
    // (percent-encoding included) as it would for a plain URL.
    let node = parse_node(&format!(
        "redis://{}{}/{db}",
        credentials.map(|c| format!("{c}@")).unwrap_or_default(),
        address(&sentinels[0]),
    ))?
    .redis_settings()
    .clone();
    Ok(SentinelSetup {
        sentinels,
        master_name: master_name.to_owned(),
        node,
        tls,
    })
}

/// Whether `host` (`name`, `name:port`, `[v6]` or `[v6]:port`) carries a port.
fn has_port(host: &str) -> bool {
    match host.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => host.contains(':'),
    }
}

/// `host:port` of a node, for messages (never its credentials).
pub fn address(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. }
            if host.contains(':') =>
        {
            format!("[{host}]:{port}")
        }
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => other.to_string(),
    }
}

fn connect(info: &ConnectionInfo) -> Result<redis::Connection, String> {
    let client = Client::open(info.clone()).map_err(|err| err.to_string())?;
    let connection = client
        .get_connection_with_timeout(VERIFY_TIMEOUT)
        .map_err(|err| err.to_string())?;
    connection
        .set_read_timeout(Some(VERIFY_TIMEOUT))
        .map_err(|err| err.to_string())?;
    Ok(connection)
}

/// One Redis over TLS that answers with a certificate `REDIS_CA` (or the web roots) does not
/// vouch for, or that wants a client certificate it is not given, is a setting to fix, not an
/// outage to wait out: `Err`. One that does not answer, or is not TLS, is Ok: it may start
/// after the service, and its requests get 503 until it does.
fn verify_certificate(info: &ConnectionInfo) -> Result<(), String> {
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Ok(());
    }
    let answer = connect(info).and_then(|mut connection| {
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .map_err(|err| err.to_string())
    });
    match answer {
        // rustls says "invalid peer certificate: …" of the server's; the server's alert names
        // the one it wanted from us ("CertificateRequired").
        Err(err) if err.to_ascii_lowercase().contains("certificate") => Err(format!(
            "{}: the TLS handshake failed on a certificate ({err}); REDIS_CA names the CA that \
             signed the server's, REDIS_CLIENT_CERT and REDIS_CLIENT_KEY the client's",
            address(info)
        )),
        _ => Ok(()),
    }
}

/// Ok when a seed node answers and says the cluster serves its slots. While nodes answer but
/// none says so yet, asks again for up to [`CLUSTER_SETTLE`]; seeds that do not answer at all
/// fail at once (a wrong list is far likelier than a slow start).
fn verify_cluster(nodes: &[ConnectionInfo]) -> Result<(), String> {
    let deadline = std::time::Instant::now() + CLUSTER_SETTLE;
    loop {
        match ask_cluster(nodes) {
            Ok(()) => return Ok(()),
            Err((answered, problem)) => {
                if !answered || std::time::Instant::now() >= deadline {
                    return Err(problem);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// One round of [`verify_cluster`]: `Err((whether some node answered, why))`.
fn ask_cluster(nodes: &[ConnectionInfo]) -> Result<(), (bool, String)> {
    let mut answered = false;
    let mut problems = Vec::new();
    for node in nodes {
        let info: Result<String, String> = connect(node).and_then(|mut connection| {
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut connection)
                .map_err(|err| err.to_string())
        });
        let problem = match info {
            Ok(info) if info.lines().any(|line| line.trim() == "cluster_state:ok") => {
                return Ok(());
            }
            Ok(_) => {
                answered = true;
                "answers cluster_state:fail (slots without a primary, or no majority)".into()
            }
            Err(err) if err.contains("cluster support disabled") => {
                "is not a cluster node (cluster-enabled no); one Redis takes one URL".into()
            }
            Err(err) => err,
        };
        problems.push(format!("{}: {problem}", address(node)));
    }
    Err((
        answered,
        format!(
            "no node of the Redis Cluster serves ({})",
            problems.join("; ")
        ),
    ))
}

/// Ok when a sentinel answers and knows a primary of the configured name.
fn verify_sentinel(setup: &SentinelSetup) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut answered = 0;
    for sentinel in &setup.sentinels {
        let primary: Result<Option<(String, u16)>, String> =
            connect(sentinel).and_then(|mut connection| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&setup.master_name)
                    .query(&mut connection)
                    .map_err(|err| err.to_string())
            });
        match primary {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => answered += 1,
            Err(err) => problems.push(format!("{}: {err}", address(sentinel))),
        }
    }
    if answered > 0 {
        let asked = setup.sentinels.len();
        problems.insert(0, format!("{answered} of {asked} asked answered"));
        Err(format!(
            "no sentinel knows a primary named '{}'; check the name after the sentinels ({})",
            setup.master_name,
            problems.join("; ")
        ))
    } else {
        Err(format!("no sentinel answered ({})", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_redis() {
        assert!(matches!(
            Topology::parse("redis://127.0.0.1:6379/0"),
            Ok(Topology::Single(_))
        ));
        assert!(matches!(
            Topology::parse("redis+unix:///run/redis/redis.sock"),
            Ok(Topology::Single(_))
        ));
        assert!(Topology::parse("not a url").is_err());
    }

    #[test]
    fn rediss_is_tls_in_every_form_and_never_insecure() {
        let tls = |raw: &str| Topology::parse(raw).map(|topology| topology.uses_tls());
        assert_eq!(tls("rediss://redis.internal:6380/0"), Ok(true));
        assert_eq!(tls("redis://redis.internal:6379/0"), Ok(false));
        assert_eq!(tls("rediss://a:7000,rediss://b:7000"), Ok(true));
        assert_eq!(tls("rediss+sentinel://h1,h2:26380/mymaster/1"), Ok(true));
        assert_eq!(tls("redis+sentinel://h1,h2:26380/mymaster/1"), Ok(false));
        let Ok(Topology::Sentinel(setup)) = Topology::parse("rediss+sentinel://:pw@h1/main") else {
            panic!("sentinel");
        };
        assert!(setup.sentinels.iter().all(is_tls));
        assert_eq!(setup.node.password(), Some("pw"));

        let mixed = Topology::parse("rediss://a:7000,redis://b:7000").err();
        assert!(
            mixed.is_some_and(|err| err.contains("mixes")),
            "mixed seeds"
        );
        for insecure in [
            "rediss://redis.internal:6380/#insecure",
            "rediss://a:7000/#insecure,rediss://b:7000/#insecure",
            "rediss+sentinel://h1:26379/main#insecure",
        ] {
            let err = Topology::parse(insecure).err();
            assert!(
                err.as_deref().is_some_and(|err| err.contains("REDIS_CA")),
                "{insecure}: {err:?}"
            );
        }
    }

    #[test]
    fn certificates_go_on_every_tls_connection() {
        let certificates = TlsCertificates {
            client_tls: None,
            root_cert: None,
        };
        for raw in [
            "rediss://127.0.0.1:6380/0",
            "rediss://a:7000,rediss://b:7000",
            "rediss+sentinel://h1,h2/main",
            "redis://127.0.0.1:6379/0",
        ] {
            let topology = Topology::parse(raw).expect("valid");
            let tls = topology.uses_tls();
            let secured = topology.secure(&certificates).expect("secured");
            assert_eq!(secured.uses_tls(), tls, "{raw}");
        }
    }

    #[test]
    fn several_urls_are_the_seeds_of_a_cluster() {
        let Ok(Topology::Cluster(nodes)) =
            Topology::parse("redis://10.0.0.1:7000, redis://:pw@10.0.0.2:7000,redis://[::1]:7002")
        else {
            panic!("a cluster");
        };
        let addresses: Vec<_> = nodes.iter().map(address).collect();
        assert_eq!(addresses, ["10.0.0.1:7000", "10.0.0.2:7000", "[::1]:7002"]);
        assert_eq!(nodes[1].redis_settings().password(), Some("pw"));
        let err = Topology::parse("redis://a:7000,redis://b:7000/2").err();
        assert!(err.is_some_and(|err| err.contains("only database 0")));
        assert!(Topology::parse("redis://a:7000,nonsense").is_err());
    }

    #[test]
    fn sentinel_urls_name_sentinels_a_primary_and_its_settings() {
        let Ok(Topology::Sentinel(setup)) =
            Topology::parse("redis+sentinel://u:p%40ss@h1,h2:26380,[::1]/mymaster/3")
        else {
            panic!("sentinel");
        };
        let addresses: Vec<_> = setup.sentinels.iter().map(address).collect();
        assert_eq!(addresses, ["h1:26379", "h2:26380", "[::1]:26379"]);
        assert_eq!(setup.master_name, "mymaster");
        assert_eq!(setup.node.db(), 3);
        assert_eq!(setup.node.username(), Some("u"));
        assert_eq!(setup.node.password(), Some("p@ss"));

        let Ok(Topology::Sentinel(plain)) = Topology::parse("redis+sentinel://h1:26379/main")
        else {
            panic!("sentinel");
        };
        assert_eq!(plain.node.db(), 0);
        assert_eq!(plain.node.password(), None);

        for wrong in [
            "redis+sentinel://h1:26379",
            "redis+sentinel://h1:26379/",
            "redis+sentinel://h1:26379/main/x",
            "redis+sentinel://h1,,h2/main",
        ] {
            assert!(Topology::parse(wrong).is_err(), "{wrong}");
        }
    }
}
