//! The files a routes file names, read once the whole file is valid: the CA certificates of
//! https upstreams, with which their TLS is set up. A file that is missing, empty or holds no
//! usable certificate is refused like any other bad edit, at the line of its `ca`.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use crate::tls::upstream::UpstreamTls;

use super::{super::error::RoutesError, context::Parser, upstream::TlsNeed};

/// Each https upstream's TLS, by upstream name.
pub(super) type Tls = BTreeMap<String, Arc<UpstreamTls>>;

impl Parser<'_> {
    /// Sets up the TLS each https upstream needs, reading its `ca` file.
    pub(super) fn read_files(&self, needs: &[TlsNeed]) -> Result<Tls, RoutesError> {
        needs
            .iter()
            .map(|need| {
                let ca = need.ca.as_deref().map(Path::new);
                let tls = UpstreamTls::new(ca, need.server_name.as_deref()).map_err(|reason| {
                    self.upstream_error(&need.upstream, need.span.clone(), &reason)
                })?;
                Ok((need.upstream.clone(), Arc::new(tls)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{no_env, parse};
    use std::path::Path;

    #[test]
    fn https_targets_take_a_ca_and_a_host() {
        let route = "[[routes]]\npath = \"/\"\nupstream = \"api\"\n";
        let parse_api = |lines: &str| {
            parse(
                Path::new("routes.toml"),
                &format!("[upstreams.api]\n{lines}\n{route}"),
                no_env,
            )
        };
        let table = parse_api(
            "targets = [\"https://api.example.com\"]\nca = \"tests/schema/example-ca.pem\"\nhost = \"api.example.com\"",
        )
        .expect("valid");
        let api = &table.upstreams["api"];
        assert!(api.targets[0].https);
        assert_eq!(api.targets[0].port, 443);
        assert_eq!(
            api.host.as_ref().map(|h| h.as_bytes()),
            Some(&b"api.example.com"[..])
        );
        assert!(
            api.tls
                .as_ref()
                .is_some_and(|tls| tls.roots.ends_with("example-ca.pem"))
        );
        let web = parse_api("targets = [\"https://api.example.com\"]").expect("valid");
        assert!(
            web.upstreams["api"]
                .tls
                .as_ref()
                .is_some_and(|tls| tls.roots == "web roots")
        );

        for (lines, expected) in [
            (
                "targets = [\"http://a:1\"]\nca = \"tests/schema/example-ca.pem\"",
                "has a ca but no https:// target",
            ),
            (
                "targets = [\"https://a:1\"]\nca = \"/nonexistent/ca.pem\"",
                "ca /nonexistent/ca.pem: ",
            ),
            (
                "targets = [\"https://a:1\"]\nca = \"Cargo.toml\"",
                "holds no PEM certificate",
            ),
            (
                "targets = [\"https://a:1\"]\nhost = \"a b\"",
                "is not a host name",
            ),
            (
                "targets = [\"ftp://a:1\"]",
                "must start with http:// or https://",
            ),
        ] {
            let err = parse_api(lines).expect_err(lines);
            assert!(err.reason.contains(expected), "{lines}: {err}");
        }
    }
}
