//! Running the stack's processes: the local launcher (`cargo run`) and the end-to-end tests use
//! the same pieces, so what the tests start is what a user starts.
//!
//! - [`process`]: a child process that is always stopped (SIGTERM, then SIGKILL) and reaped when
//!   its guard is dropped, with its output prefixed, saved to a file or discarded, and where it
//!   listens read back from the file it writes (`LISTEN_ADDR_FILE`);
//! - [`redis`]: a `redis-server` of our own, on a unix socket or (retried when taken) a TCP port;
//! - [`topology`]: a Redis Cluster or a Sentinel set-up of such servers, for tests and drills;
//! - [`net`]: "is it answering yet" probes, and ports for what cannot bind port 0 itself;
//! - [`binaries`]: building the service binaries with the same cargo profile as the caller.

pub mod binaries;
pub mod launcher;
pub mod net;
pub mod process;
pub mod redis;
pub mod topology;
