//! What every test suite of the workspace shares, in one place: `gateway/tests/proxy`,
//! `stack/tests/e2e` and `stack/tests/faults` use this crate (a dev-dependency of `gateway` and
//! `stack`), and none defines these helpers again.
//!
//! - [`wait`]: waiting on a condition with a timeout that fails loudly, never a fixed sleep;
//! - [`http`]: clients, [`json`] answers, sending and reading cookies;
//! - [`routes`]: [`Routes`], the one routes.toml builder;
//! - [`tls`]: [`TestCa`], a certificate authority of the test's own;
//! - [`fake_idp`]: [`FakeIdp`], an OpenID Provider the test controls (spoiled tokens, rotation);
//! - [`logs`]: reading what a process logged;
//! - [`skip`]: [`can_run`], for what a machine may lack (a visible skip, a failure in CI);
//! - [`oidc`]: [`OidcProvider`], a real OpenID Provider (node's `oidc-provider`) on loopback;
//! - [`services`], [`store`], [`stack`]: the end-to-end harness, [`TestStack`]: a Redis and the
//!   real writer, reader and gateway binaries for one test, on ports nobody picked in advance
//!   (each service binds port 0 and says where it listens), stopped by PID on drop.
//!
//! The most used items are re-exported here, so a suite can `use testkit::{TestStack, json}`.

pub mod fake_idp;
pub mod http;
pub mod logs;
pub mod oidc;
pub mod otlp;
pub mod routes;
pub mod services;
pub mod skip;
pub mod stack;
pub mod store;
pub mod tls;
pub mod wait;

pub use ::stack::net::RefusingPort;
pub use fake_idp::{FakeIdp, Person, Tamper};
pub use http::{browser, client, json, session_cookie, set_cookies, with_cookie};
pub use oidc::OidcProvider;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use routes::Routes;
pub use services::{SECRET, bin, service_spec, spawn_listening, spawn_ready};
pub use skip::{can_run, report_skip};
pub use stack::{Options, TestStack, User, command_calls, generation, login, redis_info, reroute};
pub use store::{Data, Store, StoreKind, TlsRedis, data_connection, node_connection};
pub use tls::{Leaf, TestCa};

/// Declares each listed `async fn(StoreKind)` as two tests: `on_one_redis::<name>` (one Redis)
/// and `on_a_cluster::<name>` (a Redis Cluster of three primaries). The session rules hold on
/// both.
///
/// The tests it makes have no `#[tokio::test]` of their own in the source: find them by the
/// function names listed in each invocation (at the end of `flow.rs`, `rules.rs`,
/// `accounts.rs` and `door.rs` in `stack/tests/e2e`), with
/// `cargo test -p stack --test e2e -- --list`, or in the book's testing chapter (docs/src/testing.md), which
/// lists them (`deploy::the_testing_chapter_lists_every_test_that_runs_on_every_store` keeps that
/// list true).
#[macro_export]
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod on_one_redis {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::StoreKind::Single).await;
                }
            )*
        }
        mod on_a_cluster {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::StoreKind::Cluster).await;
                }
            )*
        }
    };
}
