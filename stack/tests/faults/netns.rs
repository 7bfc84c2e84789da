//! A network namespace of the test's own in which one address swallows every packet sent to it:
//! connections to it are neither refused nor reset, they just never get an answer, like a host
//! that vanished or a firewall that drops.
//!
//! The namespace has its own loopback, where the test's processes listen, and a bridge with no
//! port at all: packets routed to it go nowhere. The address is given a fixed neighbour entry so
//! the kernel sends the packets (and drops them) instead of failing the ARP lookup. Nothing here
//! can reach the real network: the namespace has no link out of it. It is made and deleted with
//! `ip` (iproute2), which needs root.

use std::{
    fs::File,
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use nix::sched::{CloneFlags, setns};

/// Where packets vanish: TEST-NET-1 (RFC 5737), reserved for documentation, so it cannot be a
/// real host even in a namespace with a way out (this one has none).
pub const BLACKHOLE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A network namespace, deleted on drop (after the processes started in it are gone).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Runs `ip args…`; the error says what failed and why. (`ip` lives in `/usr/sbin`, which not
/// every user's `PATH` has.)
fn ip(args: &[&str]) -> Result<(), String> {
    let program = ["/usr/sbin/ip", "/sbin/ip"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .unwrap_or("ip");
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("cannot run `ip` (iproute2): {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

impl Netns {
    /// Makes the namespace with its loopback up and [`BLACKHOLE`] routed into nothing. Fails
    /// where namespaces cannot be made (not root, no `ip`).
    pub fn create() -> Result<Self, String> {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "faults-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name])?;
        let namespace = Self { name };
        let blackhole = BLACKHOLE.to_string();
        for step in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "blackhole", "type", "bridge"],
            &["link", "set", "blackhole", "up"],
            &["addr", "add", "192.0.2.1/24", "dev", "blackhole"],
            &[
                "neigh",
                "add",
                &blackhole,
                "lladdr",
                "02:00:00:00:00:01",
                "dev",
                "blackhole",
                "nud",
                "permanent",
            ],
        ] {
            ip(&[&["-n", namespace.name.as_str()][..], step].concat())?;
        }
        Ok(namespace)
    }

    /// Runs `work` on a thread that has entered the namespace: the sockets it opens and the
    /// processes it starts are in the namespace (a process inherits the namespace of the thread
    /// that starts it).
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let handle = File::open(format!("/run/netns/{}", self.name)).expect("namespace handle");
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                setns(&handle, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
                work()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "delete", &self.name]) {
            eprintln!("{err}");
        }
    }
}
