//! `REDIS_URL` as the services hold it: parsed into a [`Topology`] once at start, with the
//! certificates of `rediss://` ([`RedisTls`]), and shown in logs without its passwords.

use std::fmt;

use common::ConfigError;
use redis::TlsCertificates;

use super::{tls::RedisTls, topology::Topology};

/// `REDIS_URL`, validated: one Redis, a cluster's seed nodes or sentinels (see
/// [`Topology`]). Its password never reaches a log line through `Debug`.
#[derive(Clone)]
pub struct RedisUrl {
    raw: String,
    topology: Topology,
    /// With `rediss://`: what the server's certificate must chain to, and the client's own.
    tls: Option<TlsCertificates>,
}

impl RedisUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(Self {
            raw: raw.to_owned(),
            topology: Topology::parse(raw)?,
            tls: None,
        })
    }

    /// Puts `tls` on every TLS connection of the URL (without `REDIS_CA`: Mozilla's roots).
    /// `Err` when TLS settings are given but the URL does not use TLS: they would be ignored.
    pub fn secure(self, tls: &RedisTls) -> Result<Self, ConfigError> {
        if !self.topology.uses_tls() {
            return if tls.is_set() {
                Err(ConfigError::new(
                    tls.first_variable(),
                    "is set, but REDIS_URL does not use TLS: write rediss:// (rediss+sentinel:// \
                     for sentinels)",
                ))
            } else {
                Ok(self)
            };
        }
        let certificates = tls.certificates();
        Ok(Self {
            topology: self
                .topology
                .secure(&certificates)
                .map_err(|reason| ConfigError::new("REDIS_URL", reason))?,
            tls: Some(certificates),
            raw: self.raw,
        })
    }

    /// What the URL names, for opening connections.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The certificates of a TLS URL, for the connections the client opens by itself (the
    /// other nodes of a cluster, the primary a sentinel names).
    pub fn tls(&self) -> Option<&TlsCertificates> {
        self.tls.as_ref()
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
    fn redis_url_accepts_tcp_tls_and_unix_sockets() {
        assert!(RedisUrl::parse("not a url").is_err());
        assert!(RedisUrl::parse("redis://127.0.0.1:6379/0").is_ok());
        assert!(RedisUrl::parse("redis://user:secret@redis.internal:6379/2").is_ok());
        assert!(RedisUrl::parse("redis+unix:///run/redis/redis.sock").is_ok());
        let tls = RedisUrl::parse("rediss://:hunter2@redis.internal:6380").expect("TLS");
        assert_eq!(format!("{tls:?}"), "rediss://***@redis.internal:6380");
        let secured = tls.secure(&RedisTls::default()).expect("Mozilla's roots");
        assert!(secured.tls().is_some());
        assert!(RedisUrl::parse("rediss://redis.internal:6380/#insecure").is_err());
    }

    #[test]
    fn tls_settings_without_a_tls_url_are_refused() {
        let plain = RedisUrl::parse("redis://127.0.0.1:6379/0").expect("valid");
        let plain = plain
            .secure(&RedisTls::default())
            .expect("nothing to apply");
        assert!(plain.tls().is_none());
        let dir = std::env::temp_dir().join(format!("redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, crate::store::tls::test_ca_pem()).expect("ca.pem");
        let tls = RedisTls::from_files(Some(&ca), None).expect("a CA file");
        let err = plain.secure(&tls).expect_err("refused");
        assert_eq!(err.var, "REDIS_CA");
        assert!(err.reason.contains("rediss://"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
