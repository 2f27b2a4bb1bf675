//! The local sandbox: the whole fusionhook stack on loopback, running
//! FusionAuth's "delete user data" example end to end, explained step by
//! step.
//!
//! `cargo run --release -p fusionhook-tests --bin sandbox` (add `-- --exit`
//! to stop after the walkthrough; the exit status is 0 only if every step
//! succeeded).
//!
//! It starts the Kubernetes API emulator, the FusionAuth emulator, a todo
//! service, the stand-in kubelet (which runs real `fusionhook-receiver`
//! processes for the Deployments the operator creates) and the real
//! `fusionhook-operator`; applies `examples/todo-cleanup.yaml`; deletes a
//! user in FusionAuth; then makes the clean-up durable
//! (`examples/todo-cleanup-durable.yaml`), takes the todo service down,
//! deletes another user (FusionAuth still gets 200) and brings the service
//! back (the todos go); and shows what happened at each step.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::{EventConfigurationData, TransactionType};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, DeliveryReport};
use fusionhook_tests::stack::{Stack, eventually};
use fusionhook_tests::todo::{TodoService, TodoStore};
use fusionhook_tests::tools::workspace_root;
use serde_json::{Value, json};
use uuid::Uuid;

const ALICE: &str = "2b1a0f4e-0000-4000-8000-00000000a11c";
const BOB: &str = "2b1a0f4e-0000-4000-8000-000000000b0b";
const API_KEY: &str = "sandbox-fusionauth-api-key";
const WAIT: Duration = Duration::from_secs(60);

/// Runs the fusionhook sandbox on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// Exit after the walkthrough (status 0 only if every step succeeded).
    #[arg(long)]
    exit: bool,
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

/// `examples/<file>`, its URLs pointed at the loopback FusionAuth and todo service.
fn example(stack: &Stack, todo: &TodoService, file: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(workspace_root().join("examples").join(file))?
        .replace("http://fusionauth.fusionauth.svc:9011", &stack.fusionauth_url())
        .replace("http://todo-api.todo.svc", &format!("http://{}", todo.addr)))
}

/// Deletes a user of the default tenant in FusionAuth (which raises `user.delete`).
async fn delete_user(stack: &Stack, id: &str, email: &str) -> anyhow::Result<DeliveryReport> {
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID)?;
    Ok(stack.fusionauth.raise(Some(tenant), json!({"type": "user.delete", "user": {"id": id, "email": email}})).await?)
}

/// Whether the webhooks there are all answered 200.
fn answered(report: &DeliveryReport) -> bool {
    report.webhooks.iter().all(|d| d.succeeded) && !report.webhooks.is_empty()
}

/// Creates every object of a multi-document YAML file, as `kubectl create -f` would.
fn apply_yaml(stack: &Stack, text: &str) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let object: Value = serde::Deserialize::deserialize(doc)?;
        if object.is_null() {
            continue;
        }
        let (group, version) = match object["apiVersion"].as_str().unwrap_or_default().split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), object["apiVersion"].as_str().unwrap_or_default().to_owned()),
        };
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let resource = stack
            .kube
            .store()
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .map(|t| t.resource.clone());
        let resource = resource.with_context(|| format!("no resource type for {kind}"))?;
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
        stack.create(&group, &version, &resource, &namespace, object.clone())?;
        created.push(format!("{}/{}", kind.to_ascii_lowercase(), object["metadata"]["name"].as_str().unwrap_or_default()));
    }
    Ok(created)
}

async fn walkthrough(args: &Args) -> anyhow::Result<()> {
    println!("fusionhook sandbox: FusionAuth's \"delete user data\" webhook, the Kubernetes way, on loopback");

    step(1, "Start the stack: a Kubernetes API server and FusionAuth (emulators), a stand-in kubelet, a todo service");
    let mut stack = Stack::start(API_KEY).await?;
    let store = TodoStore::with(&[(ALICE, &["buy milk", "call mom"]), (BOB, &["fix bike"])]);
    let todo = TodoService::start(store.clone(), "127.0.0.1:0".parse()?).await?;
    ok(&format!("Kubernetes API emulator on {} (CRD fusionauthwebhooks.fusionhook.dev installed)", stack.kube_running.url()));
    ok(&format!("FusionAuth emulator on {} (global API key {API_KEY})", stack.fusionauth_url()));
    ok(&format!("todo service on http://{}: alice has {:?}, bob has {:?}", todo.addr, store.todos(ALICE), store.todos(BOB)));

    step(2, "Start fusionhook-operator (leader election on, as the Helm chart runs it)");
    stack.start_operator("sandbox-operator", "30s")?;
    check(
        eventually(WAIT, || stack.lease_holder().as_deref() == Some("sandbox-operator")).await,
        "the operator holds the Lease and reconciles",
    )?;

    step(3, "Apply examples/todo-cleanup.yaml, as `kubectl apply -f` would (its URLs pointed at the loopback FusionAuth and todo service)");
    stack.create("", "v1", "namespaces", "", json!({"metadata": {"name": "todo"}}))?;
    stack.create("", "v1", "secrets", "todo", json!({"metadata": {"name": "fusionauth-api-key"}, "stringData": {"api-key": API_KEY}}))?;
    ok("namespace/todo and secret/fusionauth-api-key (the global API key) created");
    for created in apply_yaml(&stack, &example(&stack, &todo, "todo-cleanup.yaml")?)? {
        ok(&format!("{created} created"));
    }

    step(4, "The operator deploys a receiver: ConfigMap, Secret, Deployment, Service; the kubelet starts it");
    check(
        eventually(WAIT, || stack.kubelet.pods.lock().map(|p| p.address("todo", "todo-cleanup-receiver").is_some()).unwrap_or(false)).await,
        "fusionhook-receiver runs for Deployment todo/todo-cleanup-receiver",
    )?;
    let address = stack.kubelet.pods.lock().ok().and_then(|p| p.address("todo", "todo-cleanup-receiver")).context("no receiver")?;
    ok(&format!("the receiver listens on {address} (todo-cleanup-receiver.todo.svc:8080 in the cluster)"));

    step(5, "The operator registers the receiver's URL with FusionAuth and reports Ready");
    check(
        eventually(WAIT, || stack.condition("todo", "todo-cleanup", "Ready").is_some_and(|c| c.0 == "True")).await,
        "FusionAuthWebhook todo/todo-cleanup is Ready",
    )?;
    let resource = stack.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "todo", "todo-cleanup").context("resource gone")?;
    let id: Uuid = resource["status"]["webhookId"].as_str().unwrap_or_default().parse()?;
    let webhook = stack.fusionauth.state().webhooks.get(&id).cloned().context("webhook not in FusionAuth")?;
    ok(&format!(
        "FusionAuth webhook {id}: url {}, events {}, Authorization header set from a generated Secret",
        webhook["url"], webhook["eventsEnabled"]
    ));

    step(
        6,
        "Turn on the tenant's user.delete switch (the example leaves that to the FusionAuth admin; `tenantEvents` in the spec would do it)",
    );
    let mut config = ClientConfig::new(stack.fusionauth_url().parse()?, ApiKey::new(API_KEY));
    config.retry = RetryPolicy::none();
    let fa = FusionAuthClient::new(config)?;
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID)?;
    let switch = EventConfigurationData { enabled: true, transaction_type: TransactionType::None };
    fa.patch_tenant_events(tenant, &BTreeMap::from([("user.delete".to_owned(), switch)])).await?;
    ok("tenant eventConfiguration: user.delete enabled");

    step(7, "Delete alice in FusionAuth: it POSTs user.delete to the receiver, which calls DELETE /users/{id}/todos");
    let report = delete_user(&stack, ALICE, "alice@example.test").await?;
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
    stack.delete("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "todo", "todo-cleanup")?;
    for created in apply_yaml(&stack, &example(&stack, &todo, "todo-cleanup-durable.yaml")?)? {
        ok(&format!("{created} created"));
    }
    check(
        eventually(WAIT, || {
            stack.condition("todo", "todo-cleanup-durable", "Ready").is_some_and(|c| c.0 == "True")
                && stack.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "todo", "todo-cleanup").is_none()
        })
        .await,
        "todo-cleanup is gone from FusionAuth; todo-cleanup-durable is Ready (StatefulSet todo-cleanup-durable-receiver, a volume per replica)",
    )?;

    step(10, "The todo service goes down (it answers 503); delete bob in FusionAuth");
    store.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let report = delete_user(&stack, BOB, "bob@example.test").await?;
    check(answered(&report), &format!("FusionAuth got {}: the event is committed to the receiver's store", answers(&report)))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    check(store.todos(BOB).len() == 1, "bob's todos are still there: the todo service refuses, the receiver retries")?;

    step(11, "The todo service comes back");
    store.fail_with(None);
    let back = std::time::Instant::now();
    check(
        eventually(Duration::from_secs(60), || store.todos(BOB).is_empty()).await,
        &format!("bob's todos are gone, {:.0} s later (the next retry)", back.elapsed().as_secs_f64()),
    )?;

    step(12, "kubectl fusionhook status todo-cleanup-durable -n todo (the plugin, run directly)");
    let plugin = fusionhook_tests::binaries::built("fusionhook-cli", "kubectl-fusionhook")?;
    let status = std::process::Command::new(&plugin)
        .args(["status", "todo-cleanup-durable", "-n", "todo"])
        .env("KUBECONFIG", &stack.kubeconfig)
        .output()?;
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
        "\nThe sandbox keeps running; press Ctrl-C to stop. Try:\n  \
         kubectl:         export KUBECONFIG={kubeconfig}\n                   \
         kubectl -n todo get faw,sts,svc,cm   (kubectl apply needs --validate=false: the emulator serves no OpenAPI)\n  \
         raise an event:  curl -s -X POST {fa}/emulator/events -H 'content-type: application/json' \\\n                     \
         -d '{{\"event\":{{\"type\":\"user.delete\",\"user\":{{\"id\":\"{BOB}\"}}}}}}'\n  \
         webhooks:        curl -s {fa}/api/webhook -H 'authorization: {API_KEY}'\n  \
         operator:        curl -s http://{metrics}/metrics | grep fusionhook_\n  \
         the plugin:      export PATH={plugin_dir}:$PATH   (then, with KUBECONFIG as above)\n                   \
         kubectl fusionhook status todo-cleanup-durable -n todo\n                   \
         kubectl fusionhook deliveries todo-cleanup-durable -n todo --state delivered\n                   \
         kubectl fusionhook send todo-cleanup-durable -n todo --event user.delete --set user.id={BOB}\n                   \
         kubectl fusionhook reconcile todo-cleanup-durable -n todo --wait\n",
        kubeconfig = stack.kubeconfig.display(),
        plugin_dir = plugin.parent().map(|p| p.display().to_string()).unwrap_or_default(),
        fa = stack.fusionauth_url(),
        metrics = stack.operators[0].metrics,
    );
    tokio::signal::ctrl_c().await?;
    todo.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match walkthrough(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nsandbox: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
