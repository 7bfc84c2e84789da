//! End-to-end tests: a real `redis-server` on a unix socket of the test's own, the real writer,
//! reader and gateway binaries on ports they bind themselves (port 0), real HTTP through the
//! gateway. One test binary, one fresh stack per test. Set `TEST_LOG=1` to see every process's
//! log lines.
//!
//! The harness is the workspace's test kit ([`testkit`]: [`testkit::TestStack`] and the rest),
//! which the files here reach as `crate::helpers`. Tests declared with `on_every_store!` run
//! twice, `on_one_redis::<name>` and `on_a_cluster::<name>` (see [`testkit::on_every_store`]).

#[macro_use]
extern crate testkit;

use testkit as helpers;

mod accounts;
mod book;
mod browser;
mod config;
mod containers;
mod cross_site;
mod dashboard;
mod deploy;
mod door;
mod flow;
mod https;
mod launcher;
mod ports;
mod provider;
mod redis_tls;
mod rules;
mod sign_in;
mod topology;
mod traces;
