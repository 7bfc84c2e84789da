//! [`OidcProvider`]: a real, certified OpenID Provider (the npm package `oidc-provider`, run by
//! `node testkit/oidc-provider/provider.mjs`) on loopback, for the sign-in tests' happy paths:
//! what a relying party meets in the wild, not what we think a provider does.
//!
//! It binds port 0 and says where it listens, like our services; its issuer is
//! `http://127.0.0.1:<port>`, its log `<dir>/oidc-provider.log`. It speaks the authorization
//! code flow only, requires PKCE (S256) of every client, and puts the claims of the scopes
//! `profile` (`name`), `email` (`email`, `email_verified`) and `groups` (`groups`) into the ID
//! token itself. Its login page signs in any [`Account::login`] with any password; a login
//! it does not know ends the attempt with `error=access_denied`.
//!
//! Clients are registered after the start ([`OidcProvider::set_clients`]): their redirect URIs
//! name ports that are known only once the services listen. The provider reads the file on
//! every client lookup, so a later `set_clients` takes effect at once.
//!
//! A client with a [`Client::backchannel_logout_uri`] gets logout tokens POSTed there (on
//! [`OidcProvider::sign_out`]) naming the `sub`; with
//! [`Client::backchannel_logout_session_required`] its ID tokens carry `sid` and its logout
//! tokens the same `sid` (one provider session), without it they name the user only (every
//! session). Without that URI, ID tokens have no `sid`. The provider waits 2.5 s for an answer, which
//! must be 200 or 204; it sends to loopback, which oidc-provider refuses by default (see
//! provider.mjs).
//!
//! The npm packages are installed (`npm ci`) once per test run; without `node` (or, before the
//! first install, `npm`) a test skips: see [`available`].

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    thread,
    time::{Duration, Instant, SystemTime},
};

use reqwest::{StatusCode, Url, header::LOCATION};
use serde_json::{Value, json};
use stack::process::{Spec, Supervised};

use crate::{logs, services::output, skip::can_run};

/// How long node gets to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `npm ci` may take, or another test binary's install may be waited for.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Redirects and forms one sign-in goes through at most (authorize, login, resume, consent,
/// resume: five when nothing was remembered).
const MAX_STEPS: usize = 12;

/// The provider's endpoints (oidc-provider's default routes; discovery says the same).
const AUTHORIZATION_PATH: &str = "/auth";
const TOKEN_PATH: &str = "/token";
const END_SESSION_PATH: &str = "/session/end";

/// Someone the provider can sign in.
#[derive(Debug, Clone)]
pub struct Account {
    /// What is typed on the login page.
    pub login: String,
    /// The subject: the ID token's and the logout token's `sub`.
    pub sub: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
}

impl Account {
    /// `login`, with `sub` `<login>-sub` and email `<login>@example.com`.
    pub fn new(login: &str, name: &str, groups: &[&str]) -> Self {
        Self {
            login: login.to_owned(),
            sub: format!("{login}-sub"),
            name: name.to_owned(),
            email: format!("{login}@example.com"),
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "login": self.login,
            "sub": self.sub,
            "name": self.name,
            "email": self.email,
            "groups": self.groups,
        })
    }
}

/// A relying party registered at the provider (a confidential client, `client_secret_basic`).
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    /// Where the provider POSTs logout tokens.
    pub backchannel_logout_uri: Option<String>,
    /// With a back-channel logout URI: ID and logout tokens carry `sid`, so a logout names
    /// one provider session; without, a logout token names only the user.
    pub backchannel_logout_session_required: bool,
    pub post_logout_redirect_uris: Vec<String>,
}

impl Client {
    fn to_json(&self) -> Value {
        let mut metadata = json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            metadata["backchannel_logout_uri"] = json!(uri);
            // oidc-provider puts `sid` into ID and logout tokens only with this set.
            metadata["backchannel_logout_session_required"] =
                json!(self.backchannel_logout_session_required);
        }
        metadata
    }
}

/// Whether the provider can run here (node, and npm until the packages are installed): when
/// it cannot, `test` is skipped visibly, or fails in CI (see [`can_run`]).
pub fn available(test: &str) -> bool {
    can_run(test, missing())
}

/// What the provider lacks here, and how to get it.
fn missing() -> Option<String> {
    let version = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(node) = version("node") else {
        return Some("node, for the OpenID Provider (apt-get install -y nodejs npm)".to_owned());
    };
    // `v20.20.2`; oidc-provider 9 uses `crypto.hash`, new in Node.js 20.12.
    let mut numbers = node
        .trim_start_matches('v')
        .split('.')
        .map(|number| number.parse::<u32>().unwrap_or(0));
    if (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) < (20, 12) {
        return Some(format!(
            "node >= 20.12 for the OpenID Provider (found {node})"
        ));
    }
    if !installed(&package_dir()) && version("npm").is_none() {
        return Some("npm, to install testkit/oidc-provider (apt-get install -y npm)".to_owned());
    }
    None
}

/// The provider's node process, stopped when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    process: Supervised,
    issuer: String,
    clients_file: PathBuf,
    log: PathBuf,
}

impl OidcProvider {
    /// Starts a provider that knows `accounts` and no client yet, signing with a fresh RS256
    /// key; its files and log in `dir`. Installs the npm packages first, once per test run.
    pub fn start(dir: &Path, accounts: &[Account]) -> Self {
        Self::start_with_keys(dir, accounts, None)
    }

    /// [`OidcProvider::start`] signing with `jwks`, a private JWK set (each key with a `kid`),
    /// for tests that need to know the keys.
    pub fn start_with_keys(dir: &Path, accounts: &[Account], jwks: Option<Value>) -> Self {
        let package = package_dir();
        if let Err(err) = install(&package) {
            panic!("cannot install testkit/oidc-provider: {err}");
        }
        let addr_file = dir.join("oidc-provider.addr");
        let clients_file = dir.join("oidc-clients.json");
        let config_file = dir.join("oidc-provider.json");
        write_atomically(&clients_file, "[]");
        let mut config = json!({
            "addr_file": addr_file,
            "clients_file": clients_file,
            "accounts": accounts.iter().map(Account::to_json).collect::<Vec<_>>(),
        });
        if let Some(jwks) = jwks {
            config["jwks"] = jwks;
        }
        write_atomically(&config_file, &config.to_string());
        match fs::remove_file(&addr_file) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                panic!("cannot remove {}: {err}", addr_file.display())
            }
            _ => {}
        }

        let spec = Spec::new("oidc-provider", "node")
            .arg(package.join("provider.mjs"))
            .arg(&config_file)
            .current_dir(dir)
            .output(output(dir, "oidc-provider"));
        let log = dir.join("oidc-provider.log");
        let mut process = Supervised::spawn(spec).expect("node starts");
        let deadline = Instant::now() + START_TIMEOUT;
        let issuer = loop {
            if let Ok(issuer) = fs::read_to_string(&addr_file) {
                break issuer;
            }
            if let Some(status) = process.try_wait() {
                panic!("oidc-provider exited ({status}):\n{}", logs::read(&log));
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider did not listen within {START_TIMEOUT:?}:\n{}",
                logs::read(&log)
            );
            thread::sleep(Duration::from_millis(20));
        };
        Self {
            process,
            issuer,
            clients_file,
            log,
        }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash, as in its ID tokens and discovery.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn authorization_endpoint(&self) -> String {
        format!("{}{AUTHORIZATION_PATH}", self.issuer)
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}{TOKEN_PATH}", self.issuer)
    }

    pub fn end_session_endpoint(&self) -> String {
        format!("{}{END_SESSION_PATH}", self.issuer)
    }

    /// What the provider logged so far (for failure messages).
    pub fn logged(&self) -> String {
        logs::read(&self.log)
    }

    /// The node process (to stop or kill it, as an outage).
    pub fn process(&mut self) -> &mut Supervised {
        &mut self.process
    }

    /// Registers `clients`, in place of those registered before; in effect from the next
    /// request on.
    pub fn set_clients(&self, clients: &[Client]) {
        let clients: Vec<Value> = clients.iter().map(Client::to_json).collect();
        write_atomically(&self.clients_file, &Value::Array(clients).to_string());
    }

    /// Signs `login` in as a person would: follows `authorization_url` (the authorization
    /// endpoint with the client's parameters) through the login page (any password) and the
    /// consent page, when the provider shows them, and returns where the provider finally
    /// sends the browser: the client's redirect URI with `code`, `state` and `iss`, or with
    /// `error`. That URL is not requested.
    ///
    /// `browser` keeps the provider's session cookie (the next sign-in skips the login page,
    /// [`OidcProvider::sign_out`] ends it) and must not follow redirects itself:
    /// [`crate::http::browser_no_redirects`].
    pub async fn sign_in(
        &self,
        browser: &reqwest::Client,
        authorization_url: &str,
        login: &str,
    ) -> String {
        let mut url = Url::parse(authorization_url).expect("authorization URL");
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..MAX_STEPS {
            let request = match form.take() {
                None => browser.get(url.clone()),
                Some(fields) => browser.post(url.clone()).form(&fields),
            };
            let step = self.step(request, &url).await;
            let page = match step {
                Step::Redirect(next) if self.is_mine(&next) => {
                    url = next;
                    continue;
                }
                Step::Redirect(next) => return next.to_string(),
                Step::Page(page) => page,
            };
            let (action, mut fields) = first_form(&page)
                .unwrap_or_else(|| panic!("no form at {url}:\n{page}\n{}", self.logged()));
            for (name, value) in &mut fields {
                match name.as_str() {
                    "login" => *value = login.to_owned(),
                    "password" => *value = "any password".to_owned(),
                    _ => {}
                }
            }
            url = url.join(&action).expect("form action");
            form = Some(fields);
        }
        panic!("no redirect out of the provider after {MAX_STEPS} steps, at {url}")
    }

    /// Signs out of the provider whatever account `browser`'s provider session holds, as the
    /// end-session page's "Yes, sign me out" does: the provider POSTs a logout token to the
    /// back-channel logout URI of every client signed in in that session, and has had their
    /// answers when this returns. Returns where the provider then sends the browser.
    pub async fn sign_out(&self, browser: &reqwest::Client) -> String {
        self.sign_out_from(browser, &self.end_session_endpoint())
            .await
    }

    /// [`OidcProvider::sign_out`] from `end_session_url`, the end-session endpoint with a
    /// relying party's parameters (`id_token_hint`, `post_logout_redirect_uri`, `state`) as it
    /// sends a browser there; returns that redirect URI (with `state`) when it was allowed.
    pub async fn sign_out_from(&self, browser: &reqwest::Client, end_session_url: &str) -> String {
        let url = Url::parse(end_session_url).expect("end-session URL");
        let Step::Page(page) = self.step(browser.get(url.clone()), &url).await else {
            panic!("{url} answered with a redirect, not the sign-out page")
        };
        let (action, mut fields) =
            first_form(&page).unwrap_or_else(|| panic!("no sign-out form at {url}:\n{page}"));
        fields.retain(|(name, _)| name != "logout");
        fields.push(("logout".to_owned(), "yes".to_owned()));
        let confirm = url.join(&action).expect("form action");
        match self
            .step(browser.post(confirm.clone()).form(&fields), &confirm)
            .await
        {
            Step::Redirect(next) => next.to_string(),
            Step::Page(page) => panic!("signing out answered a page, not a redirect:\n{page}"),
        }
    }

    /// Sends `request` (for `url`); the redirect it answers, or its page (200).
    async fn step(&self, request: reqwest::RequestBuilder, url: &Url) -> Step {
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{url}: {err}\n{}", self.logged()));
        assert_eq!(
            response.url(),
            url,
            "the client followed a redirect: use testkit::http::browser_no_redirects"
        );
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_else(|| panic!("{status} without Location from {url}"));
            return Step::Redirect(url.join(location).expect("Location"));
        }
        let page = response.text().await.expect("page");
        assert_eq!(status, StatusCode::OK, "{url}:\n{page}\n{}", self.logged());
        Step::Page(page)
    }

    fn is_mine(&self, url: &Url) -> bool {
        Url::parse(&self.issuer).is_ok_and(|issuer| issuer.origin() == url.origin())
    }
}

/// Where one request of a sign-in leads.
enum Step {
    Redirect(Url),
    Page(String),
}

/// The first `<form>` of `page`: its action, and its inputs' names and values. Enough HTML for
/// the provider's own pages (ours in provider.mjs and oidc-provider's hidden forms).
fn first_form(page: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find("<form")?;
    let form = &page[start..];
    let form = &form[..form.find("</form>").unwrap_or(form.len())];
    let tag_end = form.find('>')?;
    let action = attribute(&form[..tag_end], "action")?;
    let fields = form
        .match_indices("<input")
        .filter_map(|(at, _)| {
            let tag = &form[at..];
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            let name = attribute(tag, "name")?;
            Some((name, attribute(tag, "value").unwrap_or_default()))
        })
        .collect();
    Some((action, fields))
}

/// The value of attribute `name="…"` in the tag `tag`, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let pattern = format!(" {name}=\"");
    let start = tag.find(&pattern)? + pattern.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// Undoes HTML escaping: `&amp;`, `&quot;`, `&lt;`, `&gt;` and numeric `&#NN;`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let entity = rest.find(';').map(|end| (&rest[1..end], end));
        let decoded = entity.and_then(|(name, end)| {
            let character = match name {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => name
                    .strip_prefix('#')
                    .and_then(|code| code.parse().ok())
                    .and_then(char::from_u32),
            };
            character.map(|character| (character, end))
        });
        match decoded {
            Some((character, end)) => {
                out.push(character);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Writes `path` whole or not at all (the provider may read it at any moment).
fn write_atomically(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, contents)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", temporary.display()));
    fs::rename(&temporary, path)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// `testkit/oidc-provider`: package.json, its lock, provider.mjs, and node_modules once
/// installed.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// Whether node_modules holds the oidc-provider that package-lock.json pins (after `npm ci`,
/// this run's, another test binary's, or `.ci/run`'s).
fn installed(package: &Path) -> bool {
    let read = |path: PathBuf| -> Option<Value> {
        serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
    };
    let pinned = read(package.join("package-lock.json")).and_then(|lock| {
        lock["packages"]["node_modules/oidc-provider"]["version"]
            .as_str()
            .map(str::to_owned)
    });
    let present = read(package.join("node_modules/oidc-provider/package.json"))
        .and_then(|found| found["version"].as_str().map(str::to_owned));
    pinned.is_some() && pinned == present
}

/// Runs `npm ci` in `package` unless node_modules is ready: once per test binary, and under a
/// lock file so that test binaries running at once do not install over each other (a lock
/// older than [`INSTALL_TIMEOUT`] is left from a run that was killed, and taken over).
fn install(package: &Path) -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let lock = package.join(".npm-ci.lock");
            let deadline = Instant::now() + INSTALL_TIMEOUT;
            loop {
                if installed(package) {
                    return Ok(());
                }
                match fs::File::options().write(true).create_new(true).open(&lock) {
                    Ok(mut file) => {
                        let _ = write!(file, "{}", std::process::id());
                        let result = npm_ci(package);
                        let _ = fs::remove_file(&lock);
                        result?;
                        return if installed(package) {
                            Ok(())
                        } else {
                            Err("npm ci did not install the pinned oidc-provider".to_owned())
                        };
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        let age = fs::metadata(&lock)
                            .and_then(|metadata| metadata.modified())
                            .ok()
                            .and_then(|modified| SystemTime::now().duration_since(modified).ok());
                        if age.is_some_and(|age| age > INSTALL_TIMEOUT) {
                            let _ = fs::remove_file(&lock);
                        } else if Instant::now() > deadline {
                            return Err(format!(
                                "{} was held for {INSTALL_TIMEOUT:?}",
                                lock.display()
                            ));
                        }
                        thread::sleep(Duration::from_millis(100));
                    }
                    Err(err) => return Err(format!("{}: {err}", lock.display())),
                }
            }
        })
        .clone()
}

fn npm_ci(package: &Path) -> Result<(), String> {
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(package)
        .output()
        .map_err(|err| format!("cannot run npm: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm ci failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_read_with_their_hidden_fields_unescaped() {
        let page = r#"<p>x</p><form id="op.logoutForm" method="post" action="/session/end/confirm"><input type="hidden" name="xsrf" value="a&amp;b&#34;c"/></form><form action="/other"></form>"#;
        let (action, fields) = first_form(page).expect("a form");
        assert_eq!(action, "/session/end/confirm");
        assert_eq!(fields, [("xsrf".to_owned(), "a&b\"c".to_owned())]);
    }
}
