//! What the fault tests share beyond the end-to-end harness: a logged-in user, timed requests,
//! routes files with settings, and a look at a process's memory.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::data_connection;
use crate::helpers::{self, TestStack};
pub use crate::helpers::{reroute, routes_file as routes};

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

/// A user logged in through the gateway: the `Cookie` header to send and the user's id.
#[derive(Debug, Clone)]
pub struct User {
    pub cookie: String,
    pub id: String,
}

impl User {
    pub async fn login(stack: &TestStack) -> Self {
        let (cookie, id) = helpers::login(stack).await;
        Self { cookie, id }
    }

    /// `GET path` (or `POST` when `post`) with this user's cookie, at `base` (`http://addr`).
    pub fn request(
        &self,
        client: &reqwest::Client,
        base: &str,
        path: &str,
        post: bool,
    ) -> reqwest::RequestBuilder {
        let url = format!("{base}{path}");
        let builder = if post {
            client.post(url)
        } else {
            client.get(url)
        };
        builder.header("cookie", &self.cookie)
    }
}

/// `http://<addr>`
pub fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
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
    redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .expect("GET")
}

/// `p`-th percentile (0–100) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let index = (samples.len() * p).div_ceil(100).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}
