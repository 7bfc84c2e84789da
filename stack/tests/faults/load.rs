//! The load the crash and kill tests run: one client per user, each alternating an increment and
//! a read of its own session through the gateway, every request timed. Because each user's
//! requests are sequential, what was acknowledged can be checked exactly afterwards.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;

use crate::{
    helpers::TestStack,
    support::{Answer, User, base, stored_count, timed},
};

/// One request of the load.
#[derive(Debug)]
pub struct Done {
    pub user: usize,
    pub increment: bool,
    pub started: Instant,
    pub ended: Instant,
    pub answer: Answer,
}

impl Done {
    /// Whether the request was under way at some point from `from` to `to`.
    pub fn overlaps(&self, (from, to): (Instant, Instant)) -> bool {
        self.started <= to && self.ended >= from
    }
}

/// Owned, so it runs as a task of its own while the test does its damage.
#[derive(Debug, Clone)]
pub struct Load {
    client: reqwest::Client,
    gateway: String,
    pub users: Arc<Vec<User>>,
}

impl Load {
    /// Logs `users` users in on `stack`.
    pub async fn new(stack: &TestStack, users: usize) -> Self {
        let mut logged_in = Vec::new();
        for _ in 0..users {
            logged_in.push(User::login(stack).await);
        }
        Self {
            client: stack.client(),
            gateway: base(stack.gateway_addr),
            users: Arc::new(logged_in),
        }
    }

    /// Every user's client sends increment, read, increment, … until `duration` has passed.
    pub async fn run(self, duration: Duration) -> Vec<Done> {
        let deadline = Instant::now() + duration;
        self.run_while(move || Instant::now() < deadline).await
    }

    /// The same for as long as `running` says so: a drill's phases last as long as a failover
    /// or a restart takes, which no duration fixed in advance fits.
    pub async fn run_while(self, running: impl Fn() -> bool + Sync) -> Vec<Done> {
        let running = &running;
        let clients = (0..self.users.len()).map(|user| {
            let load = self.clone();
            async move {
                let mut done = Vec::new();
                let mut increment = true;
                while running() {
                    let path = if increment { "/increment" } else { "/" };
                    let request =
                        load.users[user].request(&load.client, &load.gateway, path, increment);
                    let started = Instant::now();
                    let answer = timed(request).await;
                    done.push(Done {
                        user,
                        increment,
                        started,
                        ended: Instant::now(),
                        answer,
                    });
                    increment = !increment;
                }
                done
            }
        });
        join_all(clients).await.into_iter().flatten().collect()
    }

    /// Nothing acknowledged was lost: the counts acknowledged to each user rise strictly, every
    /// read sees at least the last of them, and the count stored in Redis (at `redis_url`) is
    /// the acknowledged increments plus at most the failed ones (an increment can reach Redis
    /// and lose its answer).
    pub async fn assert_nothing_acknowledged_lost(&self, done: &[Done], redis_url: &str) {
        for (user, session) in self.users.iter().enumerate() {
            let (mut last_acked, mut acked, mut failed) = (0, 0, 0);
            for request in done.iter().filter(|request| request.user == user) {
                let count = request.answer.body["count"].as_i64();
                match (request.increment, request.answer.status, count) {
                    (true, 200, Some(count)) => {
                        assert!(
                            count > last_acked,
                            "user {user}: acknowledged {count} after {last_acked}"
                        );
                        (last_acked, acked) = (count, acked + 1);
                    }
                    (false, 200, Some(count)) => assert!(
                        count >= last_acked,
                        "user {user} read {count} after {last_acked} was acknowledged"
                    ),
                    (true, _, _) => failed += 1,
                    (false, _, _) => {}
                }
            }
            let stored = stored_count(redis_url, session).await;
            assert!(
                stored >= last_acked && (acked..=acked + failed).contains(&stored),
                "user {user}: stored {stored}, acknowledged {acked} (last {last_acked}), failed {failed}"
            );
        }
    }
}
