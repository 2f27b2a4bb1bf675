//! The local sandbox: the whole fusionhook stack on one machine, running
//! FusionAuth's "delete user data" example end to end, explained step by
//! step.
//!
//! `cargo run --release -p fusionhook-tests --bin sandbox` (add `-- --exit`
//! to stop after the walkthrough; the exit status is 0 only if every step
//! succeeded; `-- --kube emulated` for the Kubernetes API emulator).
//!
//! On the real control plane (the default; [`cluster`] says what runs) or
//! the emulator, beside the FusionAuth emulator and a todo service: the
//! real `fusionhook-operator`; applies `examples/todo-cleanup.yaml`;
//! deletes a user in FusionAuth; then makes the clean-up durable
//! (`examples/todo-cleanup-durable.yaml`), takes the todo service down,
//! deletes another user (FusionAuth still gets 200) and brings the service
//! back (the todos go); and shows what happened at each step.

mod cluster;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::{EventConfigurationData, TransactionType};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, DeliveryReport};
use fusionhook_tests::todo::{TodoService, TodoStore};
use fusionhook_tests::tools::workspace_root;
use serde_json::json;
use uuid::Uuid;

use crate::cluster::{Cluster, Kube, NAMESPACE};

const ALICE: &str = "2b1a0f4e-0000-4000-8000-00000000a11c";
const BOB: &str = "2b1a0f4e-0000-4000-8000-000000000b0b";
const API_KEY: &str = "sandbox-fusionauth-api-key";
/// How long a step waits for the controllers (the real ones make pods and
/// claims, and a new pod's readiness probe runs every few seconds).
const WAIT: Duration = Duration::from_secs(120);

/// Runs the fusionhook sandbox.
#[derive(Debug, Parser)]
struct Args {
    /// Exit after the walkthrough (status 0 only if every step succeeded).
    #[arg(long)]
    exit: bool,
    /// The Kubernetes to run on: the real control plane (built from
    /// Kubernetes' Go modules on first use; needs Go and root) or the
    /// Kubernetes API emulator (no Go, no root).
    #[arg(long, value_enum, default_value = "real")]
    kube: Kube,
}

/// Polls `check` every 200 ms until it is true or `limit` passes.
async fn eventually<F: std::future::Future<Output = bool>>(limit: Duration, mut check: impl FnMut() -> F) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check().await
}

fn step(n: usize, text: &str) {
    println!("\n[{n}] {text}");
}

fn ok(text: &str) {
    println!("    ok: {text}");
}

fn check(condition: bool, what: &str) -> anyhow::Result<()> {
    if condition {
        ok(what);
        Ok(())
    } else {
        bail!("step failed: {what}")
    }
}

fn answers(report: &DeliveryReport) -> String {
    report
        .webhooks
        .iter()
        .flat_map(|d| d.attempts.iter().map(|a| a.status_code.map_or_else(|| a.exception.clone().unwrap_or_default(), |s| s.to_string())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `examples/<file>`, its URLs pointed at the FusionAuth and todo service of the sandbox.
fn example(cluster: &Cluster, todo: &TodoService, file: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(workspace_root().join("examples").join(file))?
        .replace("http://fusionauth.fusionauth.svc:9011", &cluster.fusionauth_url())
        .replace("http://todo-api.todo.svc", &format!("http://{}", todo.addr)))
}

/// Deletes a user of the default tenant in FusionAuth (which raises `user.delete`).
async fn delete_user(cluster: &Cluster, id: &str, email: &str) -> anyhow::Result<DeliveryReport> {
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID)?;
    Ok(cluster.fusionauth().raise(Some(tenant), json!({"type": "user.delete", "user": {"id": id, "email": email}})).await?)
}

/// Whether the webhooks there are all answered 200.
fn answered(report: &DeliveryReport) -> bool {
    report.webhooks.iter().all(|d| d.succeeded) && !report.webhooks.is_empty()
}

async fn walkthrough(args: &Args) -> anyhow::Result<()> {
    println!("fusionhook sandbox: FusionAuth's \"delete user data\" webhook, the Kubernetes way, on this machine");
    if args.kube == Kube::Emulated {
        println!("(on the Kubernetes API emulator; `-- --kube real` runs it on a real control plane built from Kubernetes' Go modules)");
    }

    // Built first (a minute or more on a fresh clone), not in the middle of the walkthrough.
    let plugin = fusionhook_tests::binaries::built("fusionhook-cli", "kubectl-fusionhook")?;

    step(1, "Start the stack: Kubernetes, FusionAuth (an emulator), a todo service");
    let (mut cluster, started) = Cluster::start(args.kube, API_KEY).await?;
    for line in started {
        ok(&line);
    }
    let outcome = steps(args, &mut cluster, &plugin).await;
    if outcome.is_err() {
        // What the operator said last, before everything goes with the cluster.
        eprintln!("\nthe end of the operator's log:\n{}", cluster.operator_log_tail(20));
    }
    outcome
}

/// The walkthrough's steps on a started cluster.
async fn steps(args: &Args, cluster: &mut Cluster, plugin: &std::path::Path) -> anyhow::Result<()> {
    let store = TodoStore::with(&[(ALICE, &["buy milk", "call mom"]), (BOB, &["fix bike"])]);
    let todo = TodoService::start(store.clone(), SocketAddr::new(cluster.service_ip(), 0)).await?;
    ok(&format!("todo service on http://{}: alice has {:?}, bob has {:?}", todo.addr, store.todos(ALICE), store.todos(BOB)));

    step(2, "Start fusionhook-operator (leader election on, as the Helm chart runs it)");
    let identity = cluster.start_operator()?;
    check(
        eventually(WAIT, || async { cluster.lease_holder().await.as_deref() == Some(identity.as_str()) }).await,
        &format!("the operator ({identity}) holds the Lease and reconciles"),
    )?;

    step(3, "Apply examples/todo-cleanup.yaml with kubectl (its URLs pointed at the sandbox's FusionAuth and todo service)");
    cluster.api_key_secret(API_KEY)?;
    ok(&format!("namespace/{NAMESPACE} and secret/fusionauth-api-key (the global API key)"));
    for applied in cluster.apply(&example(cluster, &todo, "todo-cleanup.yaml")?)? {
        ok(&applied);
    }

    step(4, "The operator deploys a receiver: ConfigMap, Secret, Deployment, Service; a pod of it runs");
    check(
        eventually(WAIT, || async { cluster.receiver("todo-cleanup-receiver").is_some() }).await,
        "fusionhook-receiver runs for Deployment todo/todo-cleanup-receiver",
    )?;
    let (address, place) = cluster.receiver("todo-cleanup-receiver").context("no receiver")?;
    ok(&format!("the receiver listens on {address}: {place} (todo-cleanup-receiver.todo.svc:8080 in the cluster)"));

    step(5, "The operator registers the receiver's URL with FusionAuth and reports Ready");
    check(
        eventually(WAIT, || async { cluster.condition("todo-cleanup", "Ready").await.is_some_and(|c| c.0 == "True") }).await,
        "FusionAuthWebhook todo/todo-cleanup is Ready",
    )?;
    let resource = cluster.resource("todo-cleanup").await.context("resource gone")?;
    let id: Uuid = resource["status"]["webhookId"].as_str().unwrap_or_default().parse()?;
    let webhook = cluster.fusionauth().state().webhooks.get(&id).cloned().context("webhook not in FusionAuth")?;
    ok(&format!(
        "FusionAuth webhook {id}: url {}, events {}, Authorization header set from a generated Secret",
        webhook["url"], webhook["eventsEnabled"]
    ));

    step(
        6,
        "Turn on the tenant's user.delete switch (the example leaves that to the FusionAuth admin; `tenantEvents` in the spec would do it)",
    );
    let mut config = ClientConfig::new(cluster.fusionauth_url().parse()?, ApiKey::new(API_KEY));
    config.retry = RetryPolicy::none();
    let fa = FusionAuthClient::new(config)?;
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID)?;
    let switch = EventConfigurationData { enabled: true, transaction_type: TransactionType::None };
    fa.patch_tenant_events(tenant, &BTreeMap::from([("user.delete".to_owned(), switch)])).await?;
    ok("tenant eventConfiguration: user.delete enabled");

    step(7, "Delete alice in FusionAuth: it POSTs user.delete to the receiver, which calls DELETE /users/{id}/todos");
    check(
        eventually(WAIT, || async { cluster.reachable("todo-cleanup-receiver") }).await,
        "the Service's EndpointSlice lists the ready pod: FusionAuth reaches it",
    )?;
    let report = delete_user(cluster, ALICE, "alice@example.test").await?;
    check(answered(&report), &format!("the receiver answered {}: handled", answers(&report)))?;
    check(store.todos(ALICE).is_empty(), "alice's todos are gone")?;
    check(store.todos(BOB).len() == 1, "bob's todos are untouched")?;

    step(8, "Someone who is not FusionAuth posts an event to the receiver");
    let body = fusionhook_tests::events::user_delete("5a2d1c3b-0002-4000-8000-000000000002", BOB);
    let response = reqwest::Client::new()
        .post(format!("http://{address}/events"))
        .header("content-type", "application/json")
        .header("authorization", "a guess")
        .body(body)
        .send()
        .await?;
    check(response.status().as_u16() == 401, &format!("the receiver answered {}", response.status()))?;
    check(store.todos(BOB).len() == 1, "bob's todos are still there")?;

    step(9, "Make it durable: apply examples/todo-cleanup-durable.yaml in place of todo-cleanup (an embedded store, retries)");
    cluster.delete("todo-cleanup").await?;
    for applied in cluster.apply(&example(cluster, &todo, "todo-cleanup-durable.yaml")?)? {
        ok(&applied);
    }
    check(
        eventually(WAIT, || async {
            cluster.condition("todo-cleanup-durable", "Ready").await.is_some_and(|c| c.0 == "True")
                && cluster.resource("todo-cleanup").await.is_none()
        })
        .await,
        "todo-cleanup is gone from FusionAuth; todo-cleanup-durable is Ready (StatefulSet todo-cleanup-durable-receiver, a volume per replica)",
    )?;
    check(
        eventually(WAIT, || async { cluster.reachable("todo-cleanup-durable-receiver") }).await,
        "FusionAuth reaches the durable receiver's Service",
    )?;

    step(10, "The todo service goes down (it answers 503); delete bob in FusionAuth");
    store.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let report = delete_user(cluster, BOB, "bob@example.test").await?;
    check(answered(&report), &format!("FusionAuth got {}: the event is committed to the receiver's store", answers(&report)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    check(store.todos(BOB).len() == 1, "bob's todos are still there: the todo service refuses, the receiver retries")?;

    step(11, "The todo service comes back");
    store.fail_with(None);
    let back = std::time::Instant::now();
    check(
        eventually(Duration::from_secs(60), || async { store.todos(BOB).is_empty() }).await,
        &format!("bob's todos are gone, {:.0} s later (the next retry)", back.elapsed().as_secs_f64()),
    )?;

    step(12, "kubectl fusionhook status todo-cleanup-durable -n todo (the plugin, run directly)");
    let mut command = std::process::Command::new(plugin);
    command.args(["status", "todo-cleanup-durable", "-n", NAMESPACE]).env("KUBECONFIG", cluster.kubeconfig());
    let status = tokio::task::block_in_place(|| command.output())?;
    let text = String::from_utf8_lossy(&status.stdout);
    // The whole answer: every section, the store's figures and backfill included.
    for line in text.lines() {
        println!("    | {line}");
    }
    if !status.status.success() {
        println!("    | {}", String::from_utf8_lossy(&status.stderr).trim());
    }
    check(
        status.status.success() && text.contains("ok  Ready"),
        "the plugin reads the resource, its pods, FusionAuth's switches and the store",
    )?;

    println!("\nEvery step succeeded.");
    if args.exit {
        todo.stop().await;
        return Ok(());
    }
    println!(
        "\nThe sandbox keeps running; press Ctrl-C to stop. Try:\n{hints}  \
         raise an event:  curl -s -X POST {fa}/emulator/events -H 'content-type: application/json' \\\n                     \
         -d '{{\"event\":{{\"type\":\"user.delete\",\"user\":{{\"id\":\"{BOB}\"}}}}}}'\n  \
         webhooks:        curl -s {fa}/api/webhook -H 'authorization: {API_KEY}'\n  \
         the plugin:      export PATH={plugin_dir}:$PATH   (then, with KUBECONFIG as above)\n                   \
         kubectl fusionhook status todo-cleanup-durable -n todo\n                   \
         kubectl fusionhook deliveries todo-cleanup-durable -n todo --state delivered\n                   \
         kubectl fusionhook send todo-cleanup-durable -n todo --event user.delete --set user.id={BOB}\n                   \
         kubectl fusionhook reconcile todo-cleanup-durable -n todo --wait\n",
        hints = cluster.hints(),
        plugin_dir = plugin.parent().map(|p| p.display().to_string()).unwrap_or_default(),
        fa = cluster.fusionauth_url(),
    );
    FINISHED.store(true, std::sync::atomic::Ordering::SeqCst);
    // Until Ctrl-C (`main` stops it; the cluster and the todo service go then).
    std::future::pending::<()>().await;
    todo.stop().await;
    Ok(())
}

/// Whether every step succeeded (Ctrl-C after that is the normal end).
static FINISHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Ctrl-C at any time drops the walkthrough, and with it the cluster:
    // its processes, network namespaces and folders go.
    let outcome = tokio::select! {
        outcome = walkthrough(&args) => outcome,
        _ = tokio::signal::ctrl_c() => if FINISHED.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("stopped by Ctrl-C before the walkthrough ended"))
        },
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nsandbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
