//! What the fault tests share beyond the test kit: timed requests, the store's 503, stored
//! counts, percentiles, and a look at a process's memory.

use std::collections::HashSet;
use std::{
    net::{SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::data_connection;
pub use crate::helpers::{User, reroute};

/// The body of every 503 of writer and reader while Redis is unreachable.
pub fn store_unavailable() -> Value {
    json!({ "error": "session store unavailable" })
}

/// One answer: status, JSON body (`Null` when there was none or it was not JSON) and how long
/// it took. A request that got no answer at all (connection reset, client timeout) has status 0.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub elapsed: Duration,
}

/// Sends `request` and times it; never panics on a failed request.
pub async fn timed(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let (status, body) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    };
    Answer {
        status,
        body,
        elapsed: started.elapsed(),
    }
}

/// `http://<addr>`
pub fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The connections process `pid` is opening to `to` right now, by socket inode: its sockets in
/// state SYN_SENT towards that address (`/proc/<pid>/net/tcp` lists its network namespace's sockets,
/// `/proc/<pid>/fd` which of them are its own). A connection to an address that swallows
/// packets stays there until the caller gives up on it.
pub fn connecting(pid: u32, to: SocketAddrV4) -> HashSet<String> {
    let own: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    // rem_address as the kernel prints it: the IPv4 address as a little-endian hex word, the port.
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(to.ip().octets()),
        to.port()
    );
    const SYN_SENT: &str = "02";
    std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str())
                && fields.get(3) == Some(&SYN_SENT)
                && fields.get(9).is_some_and(|inode| own.contains(*inode))
        })
        .filter_map(|line| line.split_whitespace().nth(9).map(str::to_owned))
        .collect()
}

/// Resident memory of process `pid` (`VmRSS` of `/proc/<pid>/status`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The count stored in Redis (at `redis_url`: one Redis or a cluster's seed list) for `user`'s
/// session: the value of its one session key.
pub async fn stored_count(redis_url: &str, user: &User) -> i64 {
    let mut connection = data_connection(redis_url).await;
    // On a cluster, KEYS goes to every primary and the answers are joined.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("session:{{{}}}:*", user.id))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "one session of {}: {keys:?}", user.id);
    let value: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .expect("GET");
    // `<count>\n<identity>\n<device>` (session::identity), or the count alone.
    let count = value.lines().next().unwrap_or_default();
    count
        .parse()
        .unwrap_or_else(|_| panic!("a count first in the session value: {value:?}"))
}

/// `p`-th percentile (0–100) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let index = (samples.len() * p).div_ceil(100).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}
