//! Process plumbing shared by both binaries (the operator links this crate
//! for the receiver's config parser, and takes these from it too): JSON or
//! text logs on stdout, and the shutdown signal.

use tracing_subscriber::EnvFilter;

/// Logs to stdout, filtered by `FUSIONHOOK_LOG` (default `info`): JSON lines,
/// or human-readable text when `format` is `text`.
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("FUSIONHOOK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    if format == "text" {
        builder.init();
    } else {
        builder.json().flatten_event(true).with_current_span(false).init();
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
