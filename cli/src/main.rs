//! `kubectl fusionhook`: see, test and repair a `FusionAuthWebhook` from the
//! terminal. A kubectl plugin (`kubectl-fusionhook` on `PATH`): the user's
//! kubeconfig and context, human tables by default, `-o json|yaml`. The
//! receiver's admin API is reached through the API server's pod proxy
//! (RBAC `pods/proxy`), never exposed.

mod advice;
mod cluster;
mod output;
mod send;
mod status;
mod verify;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use fusionhook_api::admin::{self, Route};
use serde_json::{Value, json};

use cluster::{Cluster, Target};
use output::Format;

/// See, test and repair a FusionAuth webhook run by fusionhook.
#[derive(Parser, Debug)]
#[command(name = "kubectl fusionhook", bin_name = "kubectl fusionhook", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  kubectl fusionhook status todo-cleanup -n todo\n  kubectl fusionhook deliveries todo-cleanup --state dead\n  kubectl fusionhook replay todo-cleanup --dead\n  kubectl fusionhook verify --hmac-secret-file key.txt < captured-request.txt"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Namespace of the resource (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Conditions in plain words with what to do, Events, pods, the
    /// FusionAuth webhook, the store's figures, backfill; with --fusionauth,
    /// FusionAuth's three switches too.
    #[command(
        after_help = "Examples:\n  kubectl fusionhook status todo-cleanup -n todo\n  kubectl fusionhook status todo-cleanup -o yaml\n  kubectl fusionhook status todo-cleanup --fusionauth"
    )]
    Status {
        /// The FusionAuthWebhook.
        name: String,
        /// Also read FusionAuth's three switches for each event (webhook
        /// event, tenant scope, tenant switch). This reads the resource's
        /// API key Secret (a global FusionAuth key): it needs `get` on that
        /// Secret, which someone who only looks at a webhook should not hold.
        #[arg(long)]
        fusionauth: bool,
    },
    /// Ask the operator to reconcile now; with --wait, print the outcome.
    #[command(
        after_help = "Examples:\n  kubectl fusionhook reconcile todo-cleanup --wait\n  kubectl fusionhook reconcile todo-cleanup --wait --timeout 2m"
    )]
    Reconcile {
        /// The FusionAuthWebhook.
        name: String,
        /// Wait until the operator handled the request.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// List the durable store's deliveries.
    #[command(
        after_help = "Examples:\n  kubectl fusionhook deliveries todo-cleanup --state dead\n  kubectl fusionhook deliveries todo-cleanup --route todo --since 1h -o json"
    )]
    Deliveries {
        /// The FusionAuthWebhook.
        name: String,
        /// Only deliveries in this state.
        #[arg(long, value_enum)]
        state: Option<DeliveryState>,
        /// Only this route's.
        #[arg(long)]
        route: Option<String>,
        /// Only those accepted within this long (e.g. 15m, 2h).
        #[arg(long)]
        since: Option<String>,
        /// At most this many (per pod with an embedded store).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only those with an id above this (the next page).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Deliver dead (or chosen) deliveries again.
    #[command(
        after_help = "Examples:\n  kubectl fusionhook replay todo-cleanup --dead --dry-run\n  kubectl fusionhook replay todo-cleanup --id 42 --id 43"
    )]
    Replay {
        /// The FusionAuthWebhook.
        name: String,
        /// Delivery ids (from `deliveries`).
        #[arg(long = "id", required_unless_present = "dead", conflicts_with = "dead")]
        ids: Vec<u64>,
        /// Every dead delivery.
        #[arg(long)]
        dead: bool,
        /// Only list what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// The pod whose store holds the ids (embedded store with several replicas; `deliveries` shows it).
        #[arg(long)]
        pod: Option<String>,
    },
    /// Give up on deliveries (they are not delivered).
    #[command(after_help = "Examples:\n  kubectl fusionhook discard todo-cleanup --id 42")]
    Discard {
        /// The FusionAuthWebhook.
        name: String,
        /// Delivery ids (from `deliveries`).
        #[arg(long = "id", required = true)]
        ids: Vec<u64>,
        /// Only list what would be discarded.
        #[arg(long)]
        dry_run: bool,
        /// The pod whose store holds the ids (embedded store with several replicas; `deliveries` shows it).
        #[arg(long)]
        pod: Option<String>,
    },
    /// Send a synthetic event through the receiver's routes (no FusionAuth involved).
    #[command(
        after_help = "Built from FusionAuth's published example of the type, with a fresh event id and createInstant.\nExamples:\n  kubectl fusionhook send todo-cleanup --event user.delete --set user.id=6c0e5b2a-0000-4000-8000-0000000a11ce\n  kubectl fusionhook send todo-cleanup --from-file event.json"
    )]
    Send {
        /// The FusionAuthWebhook.
        name: String,
        /// Event type (wire name, e.g. user.delete).
        #[arg(long, required_unless_present = "from_file")]
        event: Option<String>,
        /// Set a field of the event: `user.email=a@b.c` (JSON values allowed: `user.active=false`).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// The event (with or without the `{"event": …}` wrapper) from a file.
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// How long to wait for the store's delivery outcome.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Check a captured FusionAuth request (raw HTTP on stdin) the way the receiver would.
    #[command(
        after_help = "REQUEST is the raw HTTP/1.1 request as a proxy or `nc -l` captures it (request line, headers, blank line, body; CRLF or LF). Exit 0 when valid, 1 when not.\nExamples:\n  kubectl fusionhook verify --hmac-secret-file secret.txt --algorithm HS256 < request.txt\n  kubectl fusionhook verify --jwks-url https://auth.example.com/.well-known/jwks.json < request.txt"
    )]
    Verify {
        /// File holding the HMAC secret FusionAuth signs with.
        #[arg(long, required_unless_present = "jwks_url", conflicts_with = "jwks_url")]
        hmac_secret_file: Option<PathBuf>,
        /// FusionAuth's JWKS URL (asymmetric keys).
        #[arg(long)]
        jwks_url: Option<String>,
        /// Algorithms to accept (default: HS256, HS384, HS512 with a secret; RS*, ES*, EdDSA with JWKS).
        #[arg(long = "algorithm")]
        algorithms: Vec<String>,
    },
    /// Run one backfill pass now over a window of FusionAuth's Webhook Event Log.
    #[command(after_help = "Examples:\n  kubectl fusionhook backfill todo-cleanup --since 2h")]
    Backfill {
        /// The FusionAuthWebhook.
        name: String,
        /// How far back (e.g. 30m, 6h).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Duration,
        /// How long to wait for the pass.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  source <(kubectl fusionhook completion bash)\n  kubectl fusionhook completion zsh > \"${fpath[1]}/_kubectl-fusionhook\""
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// A delivery state.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum DeliveryState {
    Pending,
    Dead,
    Delivered,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dead => "dead",
            Self::Delivered => "delivered",
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let format = cli.global.output;
    match cli.command {
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "kubectl-fusionhook", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { hmac_secret_file, jwks_url, algorithms } => {
            let mut request = Vec::new();
            std::io::stdin().read_to_end(&mut request)?;
            let key = match (hmac_secret_file, jwks_url) {
                (Some(file), _) => {
                    verify::Key::Hmac(std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?)
                }
                (None, Some(url)) => verify::Key::Jwks(verify::fetch_jwks(&url).await?),
                (None, None) => anyhow::bail!("give --hmac-secret-file or --jwks-url"),
            };
            let verdict = verify::verify(&request, &key, &algorithms);
            output::print(format, &verdict.to_json(), &verdict.to_text())?;
            Ok(if verdict.valid { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        command => {
            let cluster = Cluster::connect(cli.global.context.as_deref(), cli.global.namespace.as_deref()).await?;
            in_cluster(&cluster, command, format).await
        }
    }
}

/// The admin API targets for ids: with an embedded store of several pods
/// the ids are per pod, so `--pod` says which.
async fn targets_for_ids(cluster: &Cluster, name: &str, pod: Option<String>, by_ids: bool) -> anyhow::Result<Vec<Target>> {
    let all = cluster.targets(&cluster.resource(name).await?).await?;
    match pod {
        Some(pod) if all.iter().any(|t| t.pod() == Some(pod.as_str())) => Ok(vec![Target::Pod(pod)]),
        Some(pod) => anyhow::bail!(
            "{pod} is not a receiver pod with its own store of {name} (pods: {:?})",
            all.iter().filter_map(Target::pod).collect::<Vec<_>>()
        ),
        None if by_ids && all.len() > 1 => anyhow::bail!(
            "{name}'s embedded store has one store per pod, each with its own delivery ids: give --pod (the POD column of `kubectl fusionhook deliveries {name}`)"
        ),
        None => Ok(all),
    }
}

/// Calls every target; answers merged: `deliveries` and `ids` concatenated,
/// each delivery with its `pod` (embedded store).
async fn on_each(
    cluster: &Cluster,
    name: &str,
    targets: &[Target],
    route: &Route,
    query: &[(String, String)],
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut merged = json!({"deliveries": [], "ids": []});
    for target in targets {
        let mut answer = cluster.admin(name, target, route, query, body.clone()).await?;
        for key in ["deliveries", "ids"] {
            for mut item in answer[key].as_array().cloned().unwrap_or_default() {
                match (target.pod(), item.as_object_mut()) {
                    (Some(pod), Some(object)) => {
                        object.insert("pod".into(), json!(pod));
                    }
                    (Some(pod), None) => item = json!(format!("{pod}/{item}")),
                    (None, _) => {}
                }
                if let Some(list) = merged[key].as_array_mut() {
                    list.push(item);
                }
            }
        }
        if let Some(next) = answer.get_mut("next").filter(|n| !n.is_null()) {
            merged["next"] = next.take();
        }
        merged["dryRun"] = answer["dryRun"].take();
    }
    Ok(merged)
}

async fn in_cluster(cluster: &Cluster, command: Command, format: Format) -> anyhow::Result<ExitCode> {
    let failed = |bad: bool| if bad { ExitCode::from(1) } else { ExitCode::SUCCESS };
    match command {
        Command::Status { name, fusionauth } => {
            let report = status::gather(cluster, &name, fusionauth).await?;
            output::print(format, &report, &status::render(&report))?;
        }
        Command::Reconcile { name, wait, timeout } => {
            let outcome = cluster.reconcile(&name, wait, timeout).await?;
            output::print(format, &outcome, &status::render_reconcile(&outcome))?;
            // With --wait, the exit status is Ready's, as `kubectl wait` would give.
            return Ok(failed(wait && outcome["ready"] != "True"));
        }
        Command::Deliveries { name, state, route, since, limit, after } => {
            let mut query = vec![("limit".to_owned(), limit.to_string())];
            query.extend(state.map(|s| ("state".to_owned(), s.as_str().to_owned())));
            query.extend(route.map(|r| ("route".to_owned(), r)));
            query.extend(since.map(|s| ("since".to_owned(), s)));
            query.extend(after.map(|a| ("after".to_owned(), a.to_string())));
            let targets = targets_for_ids(cluster, &name, None, false).await?;
            let answer = on_each(cluster, &name, &targets, &admin::DELIVERIES.route(), &query, None).await?;
            output::print(format, &answer, &output::deliveries_table(&answer))?;
        }
        Command::Replay { name, ids, dead, dry_run, pod } => {
            let body = if dead { json!({"state": "dead", "dryRun": dry_run}) } else { json!({"ids": ids, "dryRun": dry_run}) };
            let targets = targets_for_ids(cluster, &name, pod, !dead).await?;
            let answer = on_each(cluster, &name, &targets, &admin::REPLAY.route(), &[], Some(body)).await?;
            output::print(format, &answer, &output::changed("replayed", &answer))?;
        }
        Command::Discard { name, ids, dry_run, pod } => {
            let targets = targets_for_ids(cluster, &name, pod, true).await?;
            let body = json!({"ids": ids, "dryRun": dry_run});
            let answer = on_each(cluster, &name, &targets, &admin::DISCARD.route(), &[], Some(body)).await?;
            output::print(format, &answer, &output::changed("discarded", &answer))?;
        }
        Command::Send { name, event, sets, from_file, timeout } => {
            let base = match &from_file {
                Some(file) => Some(
                    serde_json::from_slice::<Value>(&std::fs::read(file)?)
                        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", file.display()))?,
                ),
                None => None,
            };
            let built = send::build(event.as_deref(), base, &sets)?;
            let outcome = cluster.send(&name, &built, timeout).await?;
            output::print(format, &outcome, &send::render(&outcome))?;
            let refused = !(200..300).contains(&outcome["status"].as_u64().unwrap_or(0));
            let dead = outcome["deliveries"].as_array().into_iter().flatten().any(|d| d["state"] == "dead");
            return Ok(failed(refused || dead));
        }
        Command::Backfill { name, since, timeout } => {
            let outcome = cluster.backfill(&name, since, timeout).await?;
            output::print(format, &outcome, outcome["result"].as_str().unwrap_or_default())?;
            return Ok(failed(outcome["ok"] != true));
        }
        Command::Verify { .. } | Command::Completion { .. } => unreachable!("handled without a cluster"),
    }
    Ok(ExitCode::SUCCESS)
}
