//! A real browser (headless Chromium driven over WebDriver) walks the flow through the gateway:
//! log in, see the user and count 0, increment twice, see 2, log out, see the login prompt.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test is skipped locally and fails in CI (`CI` set).

use std::{path::PathBuf, time::Duration};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use stack::{
    net,
    process::{Output, Spec, Supervised},
};

use crate::helpers::{TestStack, logs, wait};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the screenshot of the logged-in page is kept after the run.
pub(crate) fn artifact_dir() -> PathBuf {
    stack::binaries::workspace_root()
        .expect("workspace root")
        .join("target")
        .join("test-artifacts")
}

pub(crate) fn browser_available() -> bool {
    let found = [CHROMIUM, CHROMEDRIVER]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    crate::helpers::can_run(
        "the browser tests",
        (!found).then(|| {
            format!("{CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install -y chromium chromium-driver)")
        }),
    )
}

pub(crate) async fn text(client: &fantoccini::Client, id: &str) -> String {
    let found = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await;
    match found {
        Ok(element) => element.text().await.expect("text"),
        Err(err) => {
            // What the browser shows instead says why: another page, an error, a blank tab.
            let url = client.current_url().await.map(|url| url.to_string());
            let source = client.source().await.unwrap_or_default();
            let shown: String = source.chars().take(800).collect();
            panic!("#{id} never appeared: {err}; the browser is at {url:?}, showing: {shown}")
        }
    }
}

/// Headless Chromium under chromedriver, with its own profile. On drop the driver's whole
/// process group is stopped: Chromium is its child, and a test that fails before
/// [`Browser::close`] must not leave a browser running.
pub(crate) struct Browser {
    pub(crate) client: fantoccini::Client,
    driver: Supervised,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.driver.signal_group(nix::sys::signal::Signal::SIGKILL);
    }
}

impl Browser {
    /// Starts chromedriver (logging into `log_dir`) and a browser session.
    pub(crate) async fn start(log_dir: &std::path::Path) -> Self {
        Self::start_with(log_dir, &[]).await
    }

    /// [`Browser::start`] with more Chromium arguments.
    pub(crate) async fn start_with(log_dir: &std::path::Path, extra: &[String]) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        // Port 0: chromedriver binds a free port and names it in its log.
        let log = log_dir.join("chromedriver.log");
        let _ = std::fs::remove_file(&log);
        let mut driver = Supervised::spawn(
            Spec::new("chromedriver", CHROMEDRIVER)
                .arg("--port=0")
                .output(Output::File(log.clone())),
        )
        .expect("chromedriver starts");
        let port: u16 = wait::for_value(
            "chromedriver to say on which port it listens",
            Duration::from_secs(10),
            || {
                let running = driver.try_wait().is_none();
                let log = &log;
                async move {
                    assert!(running, "chromedriver exited: {}", logs::read(log));
                    logs::find_line(log, |line| {
                        // "ChromeDriver was started successfully on port 40673."
                        line.split_once("started successfully on port ")?
                            .1
                            .trim_end_matches('.')
                            .parse()
                            .ok()
                    })
                }
            },
        )
        .await;
        assert!(
            net::wait_until(Duration::from_secs(10), || {
                net::http_status(
                    ([127, 0, 0, 1], port).into(),
                    "/status",
                    Duration::from_millis(300),
                ) == Some(200)
            }),
            "chromedriver answers"
        );

        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=900,700",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend_from_slice(extra);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the browser session (chromedriver stops when dropped).
    pub(crate) async fn close(self) {
        self.client
            .clone()
            .close()
            .await
            .expect("close the browser");
    }

    /// Clicks the element with this id.
    pub(crate) async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|err| panic!("#{id} is on the page: {err}"))
            .click()
            .await
            .unwrap_or_else(|err| panic!("click #{id}: {err}"));
    }
}

/// Waits until the page shows this count.
async fn wait_for_count(client: &fantoccini::Client, expected: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(&format!(
            "//span[@id='count' and text()='{expected}']"
        )))
        .await
        .unwrap_or_else(|err| panic!("count never became {expected}: {err}"));
}

#[tokio::test]
async fn a_browser_logs_in_counts_and_logs_out_through_the_gateway() {
    if !browser_available() {
        return;
    }
    let stack = TestStack::start();
    let browser = Browser::start(stack.dir.path()).await;
    let client = &browser.client;

    let result = async {
        client
            .goto(&stack.url("/login"))
            .await
            .expect("open /login");
        let user = text(client, "user").await;
        assert!(!user.is_empty());

        client.goto(&stack.url("/")).await.expect("open /");
        assert_eq!(
            text(client, "user").await,
            user,
            "the reader knows the writer's user"
        );
        assert_eq!(text(client, "count").await, "0");

        for expected in ["1", "2"] {
            browser.click("increment").await;
            wait_for_count(client, expected).await;
        }
        assert_eq!(
            client.current_url().await.expect("url").path(),
            "/",
            "after a POST the browser is sent to /"
        );

        // The session cookie is HttpOnly: scripts cannot see it.
        let cookies = client
            .execute("return document.cookie", vec![])
            .await
            .expect("script");
        assert_eq!(
            cookies,
            json!(""),
            "document.cookie must not show the session"
        );
        let with_cookie = client.get_all_cookies().await.expect("cookies");
        let session = with_cookie
            .iter()
            .find(|c| c.name() == "sid")
            .expect("a session cookie");
        assert_eq!(session.http_only(), Some(true));

        let screenshot = client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(artifact_dir()).expect("artifact dir");
        std::fs::write(artifact_dir().join("browser-logged-in.png"), screenshot).expect("save");

        browser.click("logout").await;
        let prompt = text(client, "login-prompt").await;
        assert!(prompt.contains("log in"), "{prompt}");
    }
    .await;
    browser.close().await;
    result
}

/// Serves `page` to every request on a free port of 127.0.0.1, for as long as the test runs:
/// the other site.
async fn serve_page(page: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// Logged in at the gateway (127.0.0.1), the browser visits a page of another site
/// (`localhost`, another host, so another site) with plain links, a form and an image pointing
/// at the writer. Nothing it does changes the session until the person confirms on a page of
/// this origin; a link to `/` still shows the page.
#[tokio::test]
async fn another_site_cannot_change_the_session() {
    if !browser_available() {
        return;
    }
    let stack = TestStack::start();
    let browser = Browser::start(stack.dir.path()).await;
    let client = &browser.client;
    let gateway = stack.url("");
    let other_site = serve_page(format!(
        "<!doctype html><html><body>\
         <a id=\"increment\" href=\"{gateway}/increment\">win a prize</a>\
         <a id=\"logout\" href=\"{gateway}/logout\">unsubscribe</a>\
         <a id=\"home\" href=\"{gateway}/\">your account</a>\
         <form method=\"post\" action=\"{gateway}/increment\"><button id=\"post\">go</button></form>\
         <img src=\"{gateway}/increment\" alt=\"\">\
         </body></html>"
    ))
    .await;
    let other_site = format!("http://localhost:{other_site}/");
    let count_in_redis = || async {
        let keys = stack.redis_keys().await;
        let key = keys
            .iter()
            .find(|key| key.starts_with("session:"))
            .unwrap_or_else(|| panic!("a session in {keys:?}"));
        let mut redis = stack.redis().await;
        let value: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut redis)
            .await
            .expect("GET");
        value
    };

    client
        .goto(&stack.url("/login"))
        .await
        .expect("open /login");
    let user = text(client, "user").await;
    let session_before = count_in_redis().await;

    // The link, the form and the image: a confirmation page, and nothing written.
    client.goto(&other_site).await.expect("open the other site");
    browser.click("increment").await;
    let asked = text(client, "cross-site").await;
    assert!(asked.contains("increment your count"), "{asked}");
    client.goto(&other_site).await.expect("open the other site");
    browser.click("post").await;
    assert!(
        text(client, "cross-site")
            .await
            .contains("increment your count")
    );
    client.goto(&other_site).await.expect("open the other site");
    browser.click("logout").await;
    assert!(text(client, "cross-site").await.contains("log out"));
    assert_eq!(
        count_in_redis().await,
        session_before,
        "nothing was written"
    );

    // Cancel: back to this site's page, still logged in, count 0.
    browser.click("cancel").await;
    assert_eq!(text(client, "user").await, user);
    wait_for_count(client, "0").await;

    // A link to `/` shows the page; the confirm button does what the link asked.
    client.goto(&other_site).await.expect("open the other site");
    browser.click("home").await;
    assert_eq!(
        text(client, "user").await,
        user,
        "a link to / shows the page"
    );
    client.goto(&other_site).await.expect("open the other site");
    browser.click("increment").await;
    browser.click("confirm").await;
    wait_for_count(client, "1").await;
    assert_eq!(client.current_url().await.expect("url").path(), "/");

    client.goto(&other_site).await.expect("open the other site");
    browser.click("logout").await;
    browser.click("confirm").await;
    let prompt = text(client, "login-prompt").await;
    assert!(
        prompt.contains("log in"),
        "logged out after confirming: {prompt}"
    );
    browser.close().await;
}
