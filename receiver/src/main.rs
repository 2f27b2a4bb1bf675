//! `fusionhook-receiver --config FILE`

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use fusionhook_receiver::action::stdout_sink;
use fusionhook_receiver::delivery::dispatch::Dispatcher;
use fusionhook_receiver::metrics::Metrics;
use fusionhook_receiver::process::{init_logging, termination};
use fusionhook_receiver::store::{self, Retention};
use fusionhook_receiver::{AppState, Config, app, secret, server};

/// Receives FusionAuth webhook events and routes them to services.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The config file (YAML).
    #[arg(long, env = "FUSIONHOOK_CONFIG", required_unless_present_any = ["salvage", "config_schema"])]
    config: Option<PathBuf>,
    /// Read what can still be read out of the embedded store in this
    /// directory (damaged or not, without writing to it): the events owed a
    /// delivery, one JSON line each on stdout, for the admin API's /v1/ingest.
    #[arg(long, value_name = "STORE_DIR", conflicts_with = "check")]
    salvage: Option<PathBuf>,
    /// Check the config and exit (0 when it is valid).
    #[arg(long)]
    check: bool,
    /// Print the config file's JSON Schema (for an editor's YAML
    /// completion) and exit.
    #[arg(long, conflicts_with_all = ["check", "salvage"])]
    config_schema: bool,
    /// Log format: json (default) or text.
    #[arg(long, env = "FUSIONHOOK_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.config_schema {
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout(), "{:#}", fusionhook_receiver::config::file::schema());
        return ExitCode::SUCCESS;
    }
    let traces = init_logging(&cli.log_format, "fusionhook-receiver");
    if let Some(dir) = &cli.salvage {
        return salvage(dir);
    }
    let Some(path) = cli.config.as_deref() else { return ExitCode::from(2) };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fusionhook-receiver: invalid config {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if cli.check {
        println!("{}: valid, {} route(s)", path.display(), config.routes.len());
        return ExitCode::SUCCESS;
    }
    // Blocking work is the embedded store's reads: a few threads do, and
    // fewer threads keep fewer allocator arenas (memory) than tokio's 512.
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(8).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fusionhook-receiver: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    };
    // The last spans (the shutdown's) go out before the process ends.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

/// `--salvage DIR`: what can be read goes to stdout, a report to stderr;
/// exit 0 when nothing was damaged, 1 when something was passed by.
fn salvage(dir: &std::path::Path) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match store::embedded::salvage(dir, &mut out) {
        Ok(report) => {
            eprintln!(
                "fusionhook-receiver: wrote {} event(s) of {} read from {} (those owed a delivery, or every one found when that cannot be told)",
                report.written,
                report.events,
                dir.display()
            );
            for damage in &report.damage {
                eprintln!("  could not read: {damage}");
            }
            if report.damage.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("fusionhook-receiver: cannot salvage {}: {e}", dir.display());
            ExitCode::from(2)
        }
    }
}

/// Connections the admin API serves at once (people and the operator).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves the admin API on its own listener until `stopped` turns true.
async fn serve_admin(
    admin: fusionhook_receiver::config::AdminConfig,
    state: &Arc<AppState>,
    limits: server::Limits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let admin_listener =
        tokio::net::TcpListener::bind(admin.listen).await.with_context(|| format!("cannot listen on {} (admin.listen)", admin.listen))?;
    tracing::info!(address = %admin_listener.local_addr()?, "admin API listening");
    // Set by the operator from the downward API; a pod's hostname otherwise.
    let pod = std::env::var("FUSIONHOOK_POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_default();
    let router = fusionhook_receiver::admin::router(state.clone(), admin.tokens, pod);
    let admin_limits = server::Limits { max_connections: ADMIN_MAX_CONNECTIONS, ..limits };
    let metrics = state.shared.metrics.admin_connections.clone();
    Ok(tokio::spawn(server::serve(admin_listener, router, admin_limits, metrics, async move {
        let _ = stopped.wait_for(|s| *s).await;
    })))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let limits = server::Limits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        drain_timeout: config.shutdown.drain_timeout,
    };
    let shutdown = config.shutdown;
    let secrets = config.secrets();
    let refresh = config.secret_refresh;
    let routes = config.routes.len();
    let admin = config.admin.clone();
    let retention = Retention { dedupe_window: config.dedupe.window, delivered: config.delivery.retention };
    let metrics = Metrics::new();
    let store = store::open(&config.store, retention, metrics.store_commit.clone()).await.context("cannot open the store")?.map(Arc::new);
    let store_kind = store.as_ref().map_or("none", |s| s.kind());
    let state = Arc::new(AppState::with_metrics(config, stdout_sink(), store, metrics).context("cannot build the HTTP client")?);
    tokio::spawn(secret::watch(secrets, refresh));

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, routes, store = store_kind, "fusionhook-receiver listening");
    let warm = state.clone();
    tokio::spawn(async move { warm.verifier().warm_up().await });
    let dispatcher = Dispatcher::start(&state.shared);

    // The admin API stops with the main listener.
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let admin_server = match admin {
        None => None,
        Some(admin) => Some(serve_admin(admin, &state, limits, admin_stopped).await?),
    };

    let signal_state = state.clone();
    let on_signal = async move {
        termination().await;
        tracing::info!(delay_ms = shutdown.delay.as_millis() as u64, "shutdown requested; no longer ready");
        signal_state.set_ready(false);
        tokio::time::sleep(shutdown.delay).await;
    };
    server::serve(listener, app(state.clone()), limits, state.shared.metrics.connections.clone(), on_signal).await;
    // No more events come in; deliveries in flight get the drain time to finish.
    dispatcher.stop(shutdown.drain_timeout).await;
    if let Some(store) = &state.shared.store
        && let Err(e) = store.flush().await
    {
        tracing::warn!(error = %e, "the last delivery outcomes could not be committed; those deliveries will be tried again");
    }
    let _ = admin_stop.send(true);
    if let Some(admin) = admin_server {
        let _ = admin.await;
    }
    tracing::info!("stopped");
    Ok(())
}
