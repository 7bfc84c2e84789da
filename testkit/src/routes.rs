//! Routes files for tests, built up piece by piece: the one builder every suite uses.
//!
//! ```
//! let file = testkit::Routes::new()
//!     .setting("request_timeout = \"1s\"")
//!     .upstream("probe", ["http://127.0.0.1:8000"])
//!     .route("/", "probe")
//!     .to_string();
//! assert!(file.starts_with("[settings]\nrequest_timeout = \"1s\"\n"));
//! ```

use std::{fmt, net::SocketAddr};

/// A routes.toml: `[settings]` lines, upstreams (a list of URLs, or a table of their own),
/// routes, and any other tables, written in an order TOML accepts.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    settings: Vec<String>,
    upstreams: Vec<String>,
    upstream_tables: Vec<String>,
    routes: Vec<String>,
    tables: Vec<String>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stack's routing, as shipped: `/login`, `/increment`, `/logout` and `/sessions` to the writers
    /// (`idempotent = false`: a written `GET /increment` is never sent again), everything else
    /// to the readers.
    pub fn stack(writers: &[SocketAddr], readers: &[SocketAddr]) -> Self {
        let urls = |addrs: &[SocketAddr]| -> Vec<String> {
            addrs.iter().map(|addr| format!("http://{addr}")).collect()
        };
        let mut routes = Self::new()
            .upstream("writer", urls(writers))
            .upstream("reader", urls(readers));
        for path in ["/login", "/increment", "/logout", "/sessions"] {
            routes = routes.route_with(path, "writer", "idempotent = false");
        }
        routes.route("/", "reader")
    }

    /// A line of `[settings]`, such as `request_timeout = "1s"`.
    #[must_use]
    pub fn setting(mut self, line: &str) -> Self {
        if !line.trim().is_empty() {
            self.settings.push(line.trim().to_owned());
        }
        self
    }

    /// `name = ["url", …]` under `[upstreams]`.
    #[must_use]
    pub fn upstream<U: fmt::Display>(
        mut self,
        name: &str,
        urls: impl IntoIterator<Item = U>,
    ) -> Self {
        let urls: Vec<String> = urls.into_iter().map(|url| format!("\"{url}\"")).collect();
        self.upstreams
            .push(format!("{name} = [{}]", urls.join(", ")));
        self
    }

    /// `[upstreams.<name>]` with `body` (its lines: `targets = […]`, `balance = …`).
    #[must_use]
    pub fn upstream_table(mut self, name: &str, body: &str) -> Self {
        self.upstream_tables
            .push(format!("[upstreams.{name}]\n{}", body.trim()));
        self
    }

    /// A route from `path` to `upstream`.
    #[must_use]
    pub fn route(self, path: &str, upstream: &str) -> Self {
        self.route_with(path, upstream, "")
    }

    /// A route with more keys (`extra`'s lines: `timeout = "300ms"`, `auth = "session"`).
    #[must_use]
    pub fn route_with(mut self, path: &str, upstream: &str, extra: &str) -> Self {
        let mut route = format!("[[routes]]\npath = \"{path}\"\nupstream = \"{upstream}\"");
        if !extra.trim().is_empty() {
            route.push('\n');
            route.push_str(extra.trim());
        }
        self.routes.push(route);
        self
    }

    /// Whole tables written after everything else (`[cors]`, `[auth.<name>]`, `[limits.<name>]`).
    #[must_use]
    pub fn table(mut self, text: &str) -> Self {
        self.tables.push(text.trim().to_owned());
        self
    }
}

impl fmt::Display for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.settings.is_empty() {
            writeln!(f, "[settings]")?;
            for line in &self.settings {
                writeln!(f, "{line}")?;
            }
            writeln!(f)?;
        }
        if !self.upstreams.is_empty() {
            writeln!(f, "[upstreams]")?;
            for line in &self.upstreams {
                writeln!(f, "{line}")?;
            }
            writeln!(f)?;
        }
        for table in self
            .upstream_tables
            .iter()
            .chain(&self.routes)
            .chain(&self.tables)
        {
            writeln!(f, "{table}\n")?;
        }
        Ok(())
    }
}
