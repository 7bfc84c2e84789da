//! Live `routes.toml`: a changed file is validated completely, then swapped in atomically; an
//! invalid file is logged (file, line, reason) and never applied, the last good table keeps
//! serving.
//!
//! Three triggers, because each alone misses cases:
//! - a watch on the file's *directory* (editors and `docker cp` replace the file, which a watch
//!   on the file itself loses; a single-file bind mount changes inode on the host side);
//! - polling the file's metadata every [`POLL_INTERVAL`], for file systems without events
//!   (some network and container mounts);
//! - `SIGHUP`, the conventional "reload now".
//!
//! Polling costs one `stat` while nothing changes; a file whose content did not change is not
//! parsed again, so a broken file is reported once, not on every tick.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use tokio::sync::mpsc;

use crate::{forward::Proxy, routes};

/// How often the file's metadata is checked when no event arrives.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Events arriving this close together are one edit (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(50);

/// Why a reload happened, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Event,
    Poll,
    Signal,
}

/// Watches `path` until the task is dropped, installing every valid new version into `proxy`.
pub async fn watch(path: PathBuf, proxy: Arc<Proxy>) {
    let (events_tx, mut events) = mpsc::channel::<()>(16);
    let _watcher = directory_watcher(&path, events_tx)
        .inspect_err(|err| {
            tracing::warn!(file = %path.display(), error = %err, "cannot watch the routes file's directory; polling only");
        })
        .ok();
    let mut hangup = hangup_signal();
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_meta = Meta::read(&path);
    let mut last_content = std::fs::read_to_string(&path).ok();

    loop {
        let trigger = tokio::select! {
            Some(()) = events.recv() => {
                tokio::time::sleep(SETTLE).await;
                while events.try_recv().is_ok() {}
                Trigger::Event
            }
            _ = poll.tick() => Trigger::Poll,
            Some(()) = hangup.recv() => Trigger::Signal,
        };
        let meta = Meta::read(&path);
        if matches!(trigger, Trigger::Poll) && meta == last_meta {
            continue;
        }
        last_meta = meta;
        let content = std::fs::read_to_string(&path);
        let forced = matches!(trigger, Trigger::Signal);
        if !forced && content.as_ref().ok() == last_content.as_ref() {
            continue;
        }
        last_content = content.as_ref().ok().cloned();
        let result = content
            .map_err(|err| routes::RoutesError {
                file: path.clone(),
                line: None,
                reason: format!("cannot read: {err}"),
            })
            .and_then(|text| routes::parse(&path, &text, |name| std::env::var(name).ok()));
        apply(&path, result, &proxy, trigger).await;
    }
}

/// Installs a validated table, or logs why the file was refused.
async fn apply(
    path: &Path,
    result: Result<routes::RouteTable, routes::RoutesError>,
    proxy: &Proxy,
    trigger: Trigger,
) {
    match result {
        Ok(table) => {
            let routes = table.routes.len();
            let generation = proxy.install(table).await;
            proxy.metrics.reloaded(true);
            tracing::info!(file = %path.display(), generation, routes, ?trigger, "routes reloaded");
        }
        Err(err) => {
            proxy.metrics.reloaded(false);
            tracing::error!(
                file = %err.file.display(),
                line = err.line,
                reason = %err.reason,
                ?trigger,
                "routes file rejected, the last good table keeps serving"
            );
        }
    }
}

/// File metadata compared by polling: a change in any of these means "read it again".
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    modified: Option<SystemTime>,
    len: Option<u64>,
    inode: Option<u64>,
}

impl Meta {
    fn read(path: &Path) -> Self {
        let metadata = std::fs::metadata(path).ok();
        #[cfg(unix)]
        let inode = metadata.as_ref().map(std::os::unix::fs::MetadataExt::ino);
        #[cfg(not(unix))]
        let inode = None;
        Self {
            modified: metadata.as_ref().and_then(|m| m.modified().ok()),
            len: metadata.as_ref().map(std::fs::Metadata::len),
            inode,
        }
    }
}

/// Sends a unit on `events` for every change in the directory that holds `path`.
fn directory_watcher(
    path: &Path,
    events: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if only_reads(event.kind) {
            return;
        }
        let concerns_file = event.paths.is_empty()
            || event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref() || p.file_name().is_none());
        // Kubernetes-style ConfigMap mounts swap a `..data` symlink; accept any change then.
        let swap = event
            .paths
            .iter()
            .any(|p| p.to_string_lossy().contains("..data"));
        if concerns_file || swap {
            let _ = events.try_send(());
        }
    })?;
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Opening, reading and closing a file after reading it cannot change it. inotify reports them
/// too, and this task's own read after each event would otherwise set off the next event: the
/// file was read about 20 times a second while nothing changed.
fn only_reads(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

/// Reopens the access log's file on every SIGHUP (logrotate renames the file, then signals),
/// as the routes are reloaded on it.
pub async fn reopen_on_hangup(log: Arc<crate::access::AccessLog>) {
    let mut hangup = hangup_signal();
    while hangup.recv().await.is_some() {
        log.reopen();
    }
}

/// A channel that receives a unit per SIGHUP (never on platforms without it).
fn hangup_signal() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(err) => tracing::warn!(error = %err, "cannot listen for SIGHUP"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_the_file_is_no_event_and_writing_it_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, "# empty\n").expect("write");
        let (tx, mut events) = mpsc::channel(16);
        let _watcher = directory_watcher(&path, tx).expect("watcher");

        for _ in 0..3 {
            std::fs::read_to_string(&path).expect("read");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(events.try_recv().is_err(), "a read was taken for a change");

        std::fs::write(&path, "# edited\n").expect("edit");
        let changed = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert!(matches!(changed, Ok(Some(()))), "an edit was not seen");
    }
}
