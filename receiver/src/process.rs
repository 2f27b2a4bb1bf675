//! Process plumbing shared by both binaries (the operator links this crate
//! for the receiver's config parser, and takes these from it too): JSON or
//! text logs on stdout, and the shutdown signal.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::{TARGET, Traces};

/// Logs to stdout, filtered by `FUSIONHOOK_LOG` (default `info`): JSON lines,
/// or human-readable text when `format` is `text`. With the `OTEL_*`
/// environment asking for them, traces too (see [`crate::telemetry`]),
/// named `service` unless `OTEL_SERVICE_NAME` says otherwise: the caller
/// shuts them down at the end.
pub fn init_logging(format: &str, service: &'static str) -> Option<Traces> {
    // Spans for traces never show in the log.
    let filter = EnvFilter::try_from_env("FUSIONHOOK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{TARGET}=off").parse().unwrap_or_default());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    let fmt = if format == "text" { fmt.boxed() } else { fmt.json().flatten_event(true).with_current_span(false).boxed() };
    let (traces, refused) = match Traces::from_env(service) {
        Ok(traces) => (traces, None),
        Err(why) => (None, Some(why)),
    };
    let only_ours = tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO);
    let otel = traces.as_ref().map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer()).with_filter(only_ours));
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).init();
    if let Some(why) = refused {
        tracing::warn!(reason = why, "traces are off");
    } else if traces.is_some() {
        tracing::info!("traces on: OTLP over HTTP/protobuf");
    }
    traces
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
