//! The shutdown signal every server in the stack listens to.
//!
//! Servers take "a future that resolves when it is time to stop" (the mini-redis design), so
//! tests can stop them with a channel and binaries with [`signal`].

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (`docker stop`, `kill`).
pub async fn signal() {
    let ctrl_c = async {
        // If the handler cannot be installed the process can still be killed; never resolve
        // rather than shutting down immediately.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C, shutting down"),
        () = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}
