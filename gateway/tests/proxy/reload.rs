//! Editing routes.toml re-routes a running gateway; a broken edit changes nothing.

use std::time::Duration;

use crate::helpers::{Probe, TestGateway, admin_routes, client, json, wait};

/// Waits until `path` answers `expected`; how long that took.
async fn wait_for_status(gateway: &TestGateway, path: &str, expected: u16) -> Duration {
    wait::until(
        &format!("{path} to answer {expected}"),
        Duration::from_secs(5),
        || async {
            let response = client().get(gateway.url(path)).send().await;
            response.expect("request").status().as_u16() == expected
        },
    )
    .await
}

#[tokio::test]
async fn edits_apply_within_a_second_and_broken_files_are_ignored() {
    let probe = Probe::start().await;
    let only_a = format!(
        "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/a\"\nupstream = \"probe\"\n",
        probe.url()
    );
    let gateway = TestGateway::start(&only_a).await;
    assert_eq!(
        client()
            .get(gateway.url("/b"))
            .send()
            .await
            .expect("b")
            .status(),
        404
    );

    // A valid edit: /b appears.
    std::fs::write(
        &gateway.routes,
        format!("{only_a}[[routes]]\npath = \"/b\"\nupstream = \"probe\"\n"),
    )
    .expect("edit");
    let took = wait_for_status(&gateway, "/b", 200).await;
    assert!(took < Duration::from_secs(1), "live after {took:?}");

    // A broken edit (unknown upstream) is refused: /a and /b keep working.
    std::fs::write(
        &gateway.routes,
        "[upstreams]\nprobe = []\n[[routes]]\npath = \"/\"\nupstream = \"nope\"\n",
    )
    .expect("break");
    wait::until(
        "the broken edit to be counted as a failed reload",
        Duration::from_secs(5),
        || async { admin_routes(&gateway).await["reloads"]["failed"] == 1 },
    )
    .await;
    for path in ["/a", "/b"] {
        assert_eq!(
            client()
                .get(gateway.url(path))
                .send()
                .await
                .expect("req")
                .status(),
            200,
            "{path}"
        );
    }
    let (_, routes) = json(
        client()
            .get(format!("http://{}/routes", gateway.admin))
            .send()
            .await
            .expect("admin"),
    )
    .await;
    assert_eq!(routes["generation"], 2, "{routes}");
    assert_eq!(routes["reloads"]["failed"], 1, "{routes}");

    // Replacing the file (new inode, as editors and bind mounts do) is seen too.
    let replacement = gateway.routes.with_extension("new");
    std::fs::write(
        &replacement,
        format!(
            "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/c\"\nupstream = \"probe\"\n",
            probe.url()
        ),
    )
    .expect("write replacement");
    std::fs::rename(&replacement, &gateway.routes).expect("rename over");
    wait_for_status(&gateway, "/c", 200).await;
    assert_eq!(
        client()
            .get(gateway.url("/a"))
            .send()
            .await
            .expect("a")
            .status(),
        404
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_hundred_edits_under_continuous_load_lose_no_request() {
    use futures_util::{StreamExt, stream};

    let probe = Probe::start().await;
    let version = |n: usize| {
        format!(
            "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\n[[routes]]\npath = \"/edit-{n}\"\nupstream = \"probe\"\n",
            probe.url()
        )
    };
    let gateway = TestGateway::start(&version(0)).await;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let client = client();
    let load = async {
        let mut statuses = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let batch: Vec<u16> = stream::iter(0..32)
                .map(|_| {
                    let request = client.get(gateway.url("/echo"));
                    async move {
                        request
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0)
                    }
                })
                .buffer_unordered(8)
                .collect()
                .await;
            statuses.extend(batch);
        }
        statuses
    };
    let edits = async {
        for n in 1..=100 {
            // Every tenth edit is broken: it must be refused without disturbing anything.
            let text = if n % 10 == 0 {
                "[upstreams]\nbroken = [\n".to_owned()
            } else {
                version(n)
            };
            std::fs::write(&gateway.routes, text).expect("edit");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (statuses, ()) = tokio::join!(load, edits);
    let failed = statuses.iter().filter(|status| **status != 200).count();
    assert!(
        statuses.len() > 500,
        "the load kept going: {} requests",
        statuses.len()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during 100 edits",
        statuses.len()
    );
    // The edits came faster than the watcher settles, and the last one was broken, so which
    // valid version won is not fixed; a valid edit after them all goes live, whole.
    std::fs::write(&gateway.routes, version(101)).expect("edit");
    let routes = wait::for_value(
        "the last edit to go live",
        Duration::from_secs(5),
        || async {
            let routes = admin_routes(&gateway).await;
            routes.to_string().contains("/edit-101").then_some(routes)
        },
    )
    .await;
    let paths: Vec<&str> = routes["table"]["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|route| route["path"].as_str())
        .collect();
    assert_eq!(
        paths.len(),
        2,
        "exactly the last version's routes: {paths:?}"
    );
    assert!(
        routes["reloads"]["failed"].as_u64().expect("count") >= 1,
        "{routes}"
    );
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_table_it_started_with() {
    let probe = Probe::start().await;
    let routes = format!(
        "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"probe\"\n",
        probe.url()
    );
    let gateway = TestGateway::start(&routes).await;
    let url = gateway.url("/slow");
    let slow =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    probe.wait_holding(1).await;
    // Re-route everything to a dead address while /slow is running.
    std::fs::write(
        &gateway.routes,
        "[upstreams]\nnowhere = [\"http://127.0.0.1:9\"]\n[[routes]]\npath = \"/\"\nupstream = \"nowhere\"\n",
    )
    .expect("edit");
    wait_for_status(&gateway, "/echo", 502).await;
    assert_eq!(
        slow.await.expect("task").expect("the request completes"),
        200
    );
}

/// A Kubernetes ConfigMap volume: `routes.toml` is a symlink to `..data/routes.toml`, and an
/// update writes a new timestamped directory and swaps the `..data` symlink over to it
/// atomically (the kubelet's atomic writer). The file the gateway reads never changes in place;
/// the gateway still follows.
#[tokio::test]
async fn a_kubernetes_configmap_update_is_followed() {
    use std::os::unix::fs::symlink;

    let probe = Probe::start().await;
    let table = |path: &str| {
        format!(
            "[upstreams]\nprobe = [\"{}\"]\n[[routes]]\npath = \"{path}\"\nupstream = \"probe\"\n",
            probe.url()
        )
    };
    let gateway = TestGateway::start(&table("/a")).await;
    let dir = gateway.routes.parent().expect("dir").to_owned();

    // Lay the directory out as the kubelet does, with the same content.
    let version = |name: &str, routes: &str| {
        std::fs::create_dir(dir.join(name)).expect("version dir");
        std::fs::write(dir.join(name).join("routes.toml"), routes).expect("write");
    };
    version("..2026_11_23_12_00_00.1", &table("/a"));
    symlink("..2026_11_23_12_00_00.1", dir.join("..data")).expect("..data");
    symlink("..data/routes.toml", dir.join("routes.toml.link")).expect("link");
    std::fs::rename(dir.join("routes.toml.link"), &gateway.routes).expect("routes.toml -> ..data");
    assert_eq!(wait_for_status(&gateway, "/a", 200).await.as_secs(), 0);

    // The update: a new version, then `..data` swapped by a rename.
    version("..2026_11_23_12_05_00.2", &table("/b"));
    symlink("..2026_11_23_12_05_00.2", dir.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(dir.join("..2026_11_23_12_00_00.1")).expect("old version");
    let took = wait_for_status(&gateway, "/b", 200).await;
    assert!(took < Duration::from_secs(2), "live after {took:?}");
    assert_eq!(wait_for_status(&gateway, "/a", 404).await.as_secs(), 0);
}
