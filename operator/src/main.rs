//! `fusionhook-operator run` runs the operator; `fusionhook-operator crd`
//! prints the CustomResourceDefinition.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use fusionhook_operator::context::Settings;
use fusionhook_operator::controller::{self, Scope};
use fusionhook_operator::health::{self, Health};
use fusionhook_operator::leader::{self, LeaseSettings};
use fusionhook_operator::metrics::Metrics;
use fusionhook_receiver::process::{init_logging, termination};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The fusionhook operator.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (in a cluster, or against KUBECONFIG).
    Run(Box<RunArgs>),
    /// Print the FusionAuthWebhook CustomResourceDefinition (YAML).
    Crd,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Namespaces to watch (comma-separated or repeated); all when empty.
    #[arg(long = "namespace", env = "FUSIONHOOK_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Receiver image for resources that name none.
    #[arg(long, env = "FUSIONHOOK_RECEIVER_IMAGE", default_value = concat!("ghcr.io/fusionhook/fusionhook:", env!("CARGO_PKG_VERSION")))]
    receiver_image: String,
    /// Where the receivers send traces (OTLP over HTTP/protobuf, e.g.
    /// `http://otel-collector.monitoring:4318`); none when unset. The
    /// operator's own traces follow the standard `OTEL_*` environment.
    #[arg(long, env = "FUSIONHOOK_RECEIVER_OTLP_ENDPOINT")]
    receiver_otlp_endpoint: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "FUSIONHOOK_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Periodic re-check of every resource (drift repair), e.g. `5m`.
    #[arg(long, env = "FUSIONHOOK_REQUEUE_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    requeue_interval: Duration,
    /// Largest backoff after failures, e.g. `5m`.
    #[arg(long, env = "FUSIONHOOK_MAX_BACKOFF", default_value = "5m", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
    /// Timeout of one FusionAuth API call, e.g. `10s`.
    #[arg(long, env = "FUSIONHOOK_FUSIONAUTH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    fusionauth_timeout: Duration,
    /// How old a receiver's admin tokens get before the operator replaces
    /// them, e.g. `7d` (`0`: never; deleting a token's Secret replaces it at once).
    #[arg(long, env = "FUSIONHOOK_ADMIN_TOKEN_ROTATION", default_value = "7d", value_parser = rotation_period)]
    admin_token_rotation: Duration,
    /// Resources reconciled at the same time.
    #[arg(long, env = "FUSIONHOOK_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Leader election on a Lease (turn off only when running one replica).
    #[arg(long, env = "FUSIONHOOK_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "FUSIONHOOK_LEASE_NAME", default_value = "fusionhook-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a silent leader keeps the Lease, e.g. `15s`.
    #[arg(long, env = "FUSIONHOOK_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews, e.g. `5s` (below the lease duration).
    #[arg(long, env = "FUSIONHOOK_LEASE_RENEW", default_value = "5s", value_parser = humantime::parse_duration)]
    lease_renew: Duration,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log format: json (default) or text.
    #[arg(long, env = "FUSIONHOOK_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match fusionhook_operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fusionhook-operator: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let traces = init_logging(&args.log_format, "fusionhook-operator");
            // FusionAuth's calls carry the reconcile's trace on (W3C traceparent).
            fusionhook_fusionauth::client::decorate_outbound(fusionhook_receiver::telemetry::inject);
            if args.leader_election && args.lease_renew >= args.lease_duration {
                eprintln!("fusionhook-operator: --lease-renew must be shorter than --lease-duration");
                return ExitCode::from(2);
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fusionhook-operator: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let code = match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            };
            if let Some(traces) = traces {
                traces.shutdown();
            }
            code
        }
    }
}

/// The namespace the pod runs in, from the service account mount.
fn own_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok().map(|s| s.trim().to_owned())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(Arc::clone(&metrics)));
    serve_health(&args, Arc::clone(&health)).await?;
    let stop = stop_signal();
    // The Lease is released only once no reconcile runs any more.
    let (release_tx, release) = watch::channel(false);
    let (leader, election) = elect(&args, &client, release);
    mark_ready_when_the_api_answers(client.clone(), health);

    // Standby until we lead, or until asked to stop.
    let mut stopping = stop.clone();
    let mut leading = leader.clone();
    tokio::select! {
        r = leading.wait_for(|l| *l) => { r.context("leader election ended")?; }
        _ = stopping.wait_for(|s| *s) => return Ok(()),
    }
    metrics.set_leader(true);
    tracing::info!("leading: reconciling FusionAuthWebhook resources");
    let lost_leadership = reconcile_while_leading(args, client, Arc::clone(&metrics), leader, stop).await;
    metrics.set_leader(false);
    release_tx.send_replace(true);
    if let Some(election) = election {
        let _ = election.await;
    }
    if lost_leadership {
        anyhow::bail!("lost the Lease; exiting so that this replica restarts as a standby");
    }
    Ok(())
}

/// `/healthz`, `/readyz` and `/metrics`, on their own task.
async fn serve_health(args: &RunArgs, health: Arc<Health>) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(args.metrics_addr).await.with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "fusionhook-operator health and metrics listening");
    let app = health::app(health);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health endpoint stopped");
        }
    });
    Ok(())
}

/// Turns true on SIGTERM / Ctrl-C.
fn stop_signal() -> watch::Receiver<bool> {
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        termination().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    stop
}

/// Whether this replica leads (always, without election), and the election task.
fn elect(args: &RunArgs, client: &kube::Client, stop: watch::Receiver<bool>) -> (watch::Receiver<bool>, Option<JoinHandle<()>>) {
    let (leader_tx, leader) = watch::channel(!args.leader_election);
    if !args.leader_election {
        drop(leader_tx);
        return (leader, None);
    }
    let identity =
        args.identity.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| format!("fusionhook-{}", std::process::id()));
    let namespace = args.lease_namespace.clone().or_else(own_namespace).unwrap_or_else(|| "default".to_owned());
    let settings = LeaseSettings {
        name: args.lease_name.clone(),
        namespace,
        identity,
        lease_duration: args.lease_duration,
        renew_every: args.lease_renew,
    };
    tracing::info!(lease = settings.name, namespace = settings.namespace, identity = settings.identity, "leader election on");
    (leader, Some(tokio::spawn(leader::run(client.clone(), settings, leader_tx, stop))))
}

/// Ready once the API server has answered.
fn mark_ready_when_the_api_answers(client: kube::Client, health: Arc<Health>) {
    tokio::spawn(async move {
        loop {
            if client.apiserver_version().await.is_ok() {
                health.set_ready(true);
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

/// Runs the controllers until shutdown or until leadership is lost;
/// returns whether leadership was lost (rather than a stop asked for).
async fn reconcile_while_leading(
    args: RunArgs,
    client: kube::Client,
    metrics: Arc<Metrics>,
    mut lost: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
) -> bool {
    let settings = Settings {
        receiver: fusionhook_operator::reconcile::build::ReceiverDefaults {
            image: args.receiver_image,
            otlp_endpoint: args.receiver_otlp_endpoint.filter(|e| !e.is_empty()),
        },
        requeue: args.requeue_interval,
        max_backoff: args.max_backoff,
        fusionauth_timeout: args.fusionauth_timeout,
        admin_token_rotation: Some(args.admin_token_rotation).filter(|d| !d.is_zero()),
        ..Settings::default()
    };
    let scopes: Vec<Scope> = if args.namespaces.is_empty() {
        vec![Scope::All]
    } else {
        args.namespaces.iter().filter(|n| !n.is_empty()).map(|n| Scope::Namespace(n.clone())).collect()
    };
    let (end_tx, end) = watch::channel(false);
    let controllers = scopes.into_iter().map(|scope| {
        let mut end = end.clone();
        let shutdown = async move {
            let _ = end.wait_for(|e| *e).await;
        };
        controller::run(client.clone(), scope, settings.clone(), args.concurrency, Arc::clone(&metrics), shutdown)
    });
    let mut controllers = std::pin::pin!(futures::future::join_all(controllers));
    // Without election the sender is gone: only a stop ends the loop.
    let lost_leadership = async move {
        if lost.wait_for(|l| !*l).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = &mut controllers => false,
        // Another replica may lead already: in-flight reconciles are dropped
        // at once, not finished.
        () = lost_leadership => true,
        // A stop: in-flight reconciles finish while the Lease is still ours.
        _ = stopped.wait_for(|s| *s) => {
            end_tx.send_replace(true);
            controllers.await;
            false
        }
    }
}

/// `--admin-token-rotation`: `0` (never) or at least an hour, so a token
/// is never replaced twice before every receiver read the first change
/// (the kubelet updates mounted Secrets within minutes).
fn rotation_period(text: &str) -> Result<Duration, String> {
    let period = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !period.is_zero() && period < Duration::from_secs(3600) {
        return Err(format!("{text} is too short: at least 1h (or 0 for never)"));
    }
    Ok(period)
}
