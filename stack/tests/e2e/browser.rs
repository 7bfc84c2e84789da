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

use crate::helpers::TestStack;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the screenshot of the logged-in page is kept after the run.
fn artifact_dir() -> PathBuf {
    stack::binaries::workspace_root()
        .expect("workspace root")
        .join("target")
        .join("test-artifacts")
}

fn browser_available() -> bool {
    let found = [CHROMIUM, CHROMEDRIVER]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {CHROMIUM} and {CHROMEDRIVER} (apt-get install -y chromium chromium-driver)"
        );
        crate::helpers::report_skip(&format!(
            "the browser test: {CHROMIUM} or {CHROMEDRIVER} is missing"
        ));
    }
    found
}

async fn text(client: &fantoccini::Client, id: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|err| panic!("#{id} never appeared: {err}"))
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn a_browser_logs_in_counts_and_logs_out_through_the_gateway() {
    if !browser_available() {
        return;
    }
    let stack = TestStack::start();
    let profile = tempfile::tempdir().expect("profile dir");
    let port = net::free_port().expect("port");
    let _driver = Supervised::spawn(
        Spec::new("chromedriver", CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .output(Output::File(stack.dir.path().join("chromedriver.log"))),
    )
    .expect("chromedriver starts");
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

    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=900,700",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");

    let result = async {
        client
            .goto(&stack.url("/login"))
            .await
            .expect("open /login");
        let user = text(&client, "user").await;
        assert!(!user.is_empty());

        client.goto(&stack.url("/")).await.expect("open /");
        assert_eq!(
            text(&client, "user").await,
            user,
            "the reader knows the writer's user"
        );
        assert_eq!(text(&client, "count").await, "0");

        for expected in ["1", "2"] {
            client
                .find(Locator::Id("increment"))
                .await
                .expect("button")
                .click()
                .await
                .expect("click");
            client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::XPath(&format!(
                    "//span[@id='count' and text()='{expected}']"
                )))
                .await
                .unwrap_or_else(|err| panic!("count never became {expected}: {err}"));
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

        client
            .find(Locator::Id("logout"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        let prompt = text(&client, "login-prompt").await;
        assert!(prompt.contains("log in"), "{prompt}");
    }
    .await;
    client.close().await.expect("close the browser");
    result
}
