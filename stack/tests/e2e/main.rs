//! End-to-end tests: a real `redis-server` on a free port, the real writer, reader and gateway
//! binaries on free ports, real HTTP through the gateway. One test binary, one fresh stack per
//! test. Set `TEST_LOG=1` to see every process's log lines.

#[macro_use]
mod helpers;

mod accounts;
mod browser;
mod config;
mod containers;
mod cross_site;
mod deploy;
mod door;
mod flow;
mod https;
mod launcher;
mod rules;
mod topology;
