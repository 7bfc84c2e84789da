//! `REDIS_URL` as the services hold it: parsed into a [`Topology`] once at start, and shown in
//! logs without its passwords.

use std::fmt;

use super::topology::Topology;

/// `REDIS_URL`, validated: one Redis, a cluster's seed nodes or sentinels (see
/// [`Topology`]). Its password never reaches a log line through `Debug`.
#[derive(Clone)]
pub struct RedisUrl {
    raw: String,
    topology: Topology,
}

impl RedisUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(Self {
            raw: raw.to_owned(),
            topology: Topology::parse(raw)?,
        })
    }

    /// What the URL names, for opening connections.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep schemes, hosts and database; hide the credentials of every URL in the list.
        for (position, part) in self.raw.split(',').enumerate() {
            if position > 0 {
                f.write_str(",")?;
            }
            match part.split_once('@') {
                Some((scheme_and_auth, rest)) => {
                    let scheme = scheme_and_auth.split("://").next().unwrap_or("redis");
                    write!(f, "{scheme}://***@{rest}")?;
                }
                None => f.write_str(part)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_url_debug_hides_the_password() {
        let url = RedisUrl::parse("redis://user:hunter2@example.com:6379/0").expect("valid url");
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("example.com:6379/0"), "{shown}");
        let cluster = RedisUrl::parse("redis://:one@10.0.0.1:7000,redis://u:two@10.0.0.2:7000")
            .expect("valid");
        let shown = format!("{cluster:?}");
        assert_eq!(shown, "redis://***@10.0.0.1:7000,redis://***@10.0.0.2:7000");
    }

    #[test]
    fn redis_url_accepts_tcp_and_unix_sockets_only() {
        assert!(RedisUrl::parse("not a url").is_err());
        assert!(RedisUrl::parse("redis://127.0.0.1:6379/0").is_ok());
        assert!(RedisUrl::parse("redis://user:secret@redis.internal:6379/2").is_ok());
        assert!(RedisUrl::parse("redis+unix:///run/redis/redis.sock").is_ok());
        assert!(
            RedisUrl::parse("rediss://redis.internal:6380").is_err(),
            "TLS is not built in"
        );
    }
}
