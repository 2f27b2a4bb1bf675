//! `fusionhook-receiver --config FILE`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fusionhook_receiver::action::stdout_sink;
use fusionhook_receiver::process::{init_logging, termination};
use fusionhook_receiver::{AppState, Config, app, secret, server};

/// Receives FusionAuth webhook events and routes them to services.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The config file (YAML).
    #[arg(long, env = "FUSIONHOOK_CONFIG")]
    config: PathBuf,
    /// Check the config and exit (0 when it is valid).
    #[arg(long)]
    check: bool,
    /// Log format: json (default) or text.
    #[arg(long, env = "FUSIONHOOK_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fusionhook-receiver: invalid config {}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if cli.check {
        println!("{}: valid, {} route(s)", cli.config.display(), config.routes.len());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fusionhook-receiver: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let header_timeout = config.body_timeout;
    let max_connections = config.max_connections;
    let shutdown = config.shutdown;
    let secrets = config.secrets();
    let refresh = config.secret_refresh;
    let routes = config.routes.len();
    let state = Arc::new(AppState::new(config, stdout_sink()).context("cannot build the HTTP client")?);
    tokio::spawn(secret::watch(secrets, refresh));

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, routes, "fusionhook-receiver listening");
    let warm = state.clone();
    tokio::spawn(async move { warm.verifier().warm_up().await });

    let signal_state = state.clone();
    let on_signal = async move {
        termination().await;
        tracing::info!(delay_ms = shutdown.delay.as_millis() as u64, "shutdown requested; no longer ready");
        signal_state.set_ready(false);
        tokio::time::sleep(shutdown.delay).await;
    };
    server::serve(listener, app(state), header_timeout.max(Duration::from_secs(1)), max_connections, shutdown.drain_timeout, on_signal)
        .await;
    tracing::info!("stopped");
    Ok(())
}
