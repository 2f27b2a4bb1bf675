//! The local sandbox: FusionAuth's "delete user data" example, end to end on
//! loopback, explained step by step.
//!
//! `cargo run --release -p fusionhook-tests --bin sandbox` (add `-- --exit`
//! to stop after the walkthrough; the exit status is 0 only if every step
//! succeeded).
//!
//! Today it runs the FusionAuth emulator, the real `fusionhook-receiver`
//! binary and a todo service; the sandbox registers the receiver with
//! FusionAuth through the API client, the way the operator will. The
//! operator and the Kubernetes emulator join it as they are built.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::Parser;
use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::{EventConfigurationData, SignatureConfiguration, TransactionType, Webhook};
use fusionhook_fusionauth::signature::Algorithm;
use fusionhook_tests::events::{self, sign_hmac};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, DeliveryReport, Emulator, Settings};
use fusionhook_tests::todo::{TodoService, TodoStore};
use serde_json::json;
use uuid::Uuid;

const ALICE: &str = "2b1a0f4e-0000-4000-8000-00000000a11c";
const BOB: &str = "2b1a0f4e-0000-4000-8000-000000000b0b";
const AUTHORIZATION: &str = "sandbox-authorization-value";
const HMAC_SECRET: &str = "sandbox-hmac-secret";
const API_KEY: &str = "sandbox-fusionauth-api-key";

/// Runs the fusionhook sandbox on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// Exit after the walkthrough (status 0 only if every step succeeded).
    #[arg(long)]
    exit: bool,
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn step(n: usize, text: &str) {
    println!("\n[{n}] {text}");
}

fn ok(text: &str) {
    println!("    ok: {text}");
}

/// Builds the receiver with the same profile as this binary and returns its path.
fn receiver_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("no directory for the sandbox binary")?;
    let release = dir.ends_with("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "fusionhook-receiver", "--bin", "fusionhook-receiver"]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build for the receiver")?;
    if !status.success() {
        bail!("building fusionhook-receiver failed");
    }
    Ok(dir.join("fusionhook-receiver"))
}

fn start_receiver(binary: &PathBuf, config: &PathBuf) -> anyhow::Result<(Guard, SocketAddr)> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .env("FUSIONHOOK_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if value["message"] == "fusionhook-receiver listening" {
                let _ = tx.send(value["address"].as_str().unwrap_or_default().to_owned());
            } else if value["target"] == "fusionhook::event" {
                println!("    receiver log: {line}");
            } else if value["level"] == "WARN" || value["level"] == "ERROR" {
                println!("    receiver {}: {}", value["level"].as_str().unwrap_or(""), value["message"].as_str().unwrap_or(&line));
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).context("the receiver did not start")?.parse()?;
    Ok((guard, addr))
}

async fn deliver(client: &reqwest::Client, url: &str, authorization: &str, body: Vec<u8>) -> anyhow::Result<(u16, String)> {
    let signature = sign_hmac(&body, Algorithm::HS256, "sandbox-hmac", HMAC_SECRET);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", authorization)
        .header("x-fusionauth-signature-jwt", signature)
        .body(body)
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
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

async fn walkthrough(args: &Args) -> anyhow::Result<()> {
    println!("fusionhook sandbox: FusionAuth's \"delete user data\" webhook, on loopback");

    step(1, "Start FusionAuth (the emulator) and a todo service holding todos for two users");
    let emulator = Emulator::new(Settings { api_key: API_KEY.into(), retry_delay: Duration::ZERO });
    let fusionauth = emulator.serve("127.0.0.1:0".parse()?).await?;
    let store = TodoStore::with(&[(ALICE, &["buy milk", "call mom"]), (BOB, &["fix bike"])]);
    let todo = TodoService::start(store.clone(), "127.0.0.1:0".parse()?).await?;
    ok(&format!("FusionAuth emulator on {} (API key {API_KEY})", fusionauth.url()));
    ok(&format!("todo service on http://{}: alice has {:?}, bob has {:?}", todo.addr, store.todos(ALICE), store.todos(BOB)));

    step(2, "Start fusionhook-receiver with a route user.delete -> DELETE /users/{{event.user.id}}/todos");
    let binary = receiver_binary()?;
    let dir = std::env::temp_dir().join(format!("fusionhook-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("receiver.yaml");
    let yaml = format!(
        r#"listen: "127.0.0.1:0"
path: /events
auth:
  authorization: "{AUTHORIZATION}"
  signature: {{algorithms: [HS256], hmacSecret: "{HMAC_SECRET}"}}
routes:
  - name: todo-cleanup
    events: ["user.delete"]
    http:
      method: DELETE
      url: "http://{}/users/{{{{event.user.id}}}}/todos"
      timeoutMs: 1500
  - name: audit
    events: ["user.*"]
    log: {{}}
"#,
        todo.addr
    );
    std::fs::write(&config, &yaml)?;
    let (_receiver, addr) = start_receiver(&binary, &config)?;
    let url = format!("http://{addr}/events");
    ok(&format!("receiver listening on {url} (config: {})", config.display()));

    step(3, "Register the receiver with FusionAuth: signing key, webhook, tenant switch (the three switches)");
    let mut client_config = ClientConfig::new(fusionauth.url().parse()?, ApiKey::new(API_KEY));
    client_config.retry = RetryPolicy::none();
    let fa = FusionAuthClient::new(client_config)?;
    let key_id = Uuid::new_v4();
    fa.import_hmac_key(key_id, "sandbox webhook signing", "HS256", HMAC_SECRET).await?;
    let webhook = Webhook {
        url: url.clone(),
        connect_timeout: 1000,
        read_timeout: 2000,
        events_enabled: BTreeMap::from([("user.delete".to_owned(), true)]),
        global: true,
        headers: BTreeMap::from([("Authorization".to_owned(), AUTHORIZATION.to_owned())]),
        signature_configuration: Some(SignatureConfiguration { enabled: true, signing_key_id: Some(key_id) }),
        description: Some("fusionhook sandbox".into()),
        ..Webhook::default()
    };
    fa.create_webhook(Uuid::new_v4(), &webhook).await?;
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID)?;
    let switch = EventConfigurationData { enabled: true, transaction_type: TransactionType::AbsoluteMajority };
    fa.patch_tenant_events(tenant, &BTreeMap::from([("user.delete".to_owned(), switch)])).await?;
    ok("webhook for user.delete (all tenants), signed with an HMAC key; tenant switch on, transaction level AbsoluteMajority");

    let http = reqwest::Client::new();
    step(4, "Delete alice in FusionAuth: it POSTs a signed user.delete event to the receiver");
    let report = emulator.raise(Some(tenant), json!({"type": "user.delete", "user": {"id": ALICE, "email": "alice@example.test"}})).await?;
    check(!report.vetoed && report.webhooks.iter().all(|d| d.succeeded), &format!("the receiver answered {}: handled", answers(&report)))?;
    check(store.todos(ALICE).is_empty(), "alice's todos are gone")?;
    check(store.todos(BOB).len() == 1, "bob's todos are untouched")?;

    step(5, "FusionAuth delivers the same event again (a retry: same event.id)");
    let deletes = store.count(&http::Method::DELETE);
    let body = serde_json::to_vec(&json!({ "event": report.event }))?;
    let (status, _) = deliver(&http, &url, AUTHORIZATION, body).await?;
    check(status == 200, &format!("the receiver answered {status}"))?;
    check(store.count(&http::Method::DELETE) == deletes, "nothing ran twice: the duplicate was recognised")?;

    step(6, "Someone who is not FusionAuth posts an event");
    let (status, body) = deliver(&http, &url, "guess", events::user_delete("5a2d1c3b-0002-4000-8000-000000000002", BOB)).await?;
    check(status == 401, &format!("the receiver answered {status} {body}"))?;
    check(store.todos(BOB).len() == 1, "bob's todos are still there")?;

    step(7, "The todo service goes down while FusionAuth deletes bob");
    let todo_addr = todo.addr;
    todo.stop().await;
    let report = emulator.raise(Some(tenant), json!({"type": "user.delete", "user": {"id": BOB}})).await?;
    check(
        report.vetoed,
        &format!(
            "the receiver answered {}: under AbsoluteMajority FusionAuth rolls the deletion back (504 to the caller)",
            answers(&report)
        ),
    )?;
    check(store.todos(BOB).len() == 1, "the deletion is vetoed and bob's todos are still there: nothing is half-done")?;
    let todo = TodoService::start(store.clone(), todo_addr).await?;
    let report = emulator.raise(Some(tenant), json!({"type": "user.delete", "user": {"id": BOB}})).await?;
    check(!report.vetoed && store.todos(BOB).is_empty(), "once it is back, deleting bob again succeeds and his todos are gone")?;

    println!("\nEvery step succeeded.");
    if args.exit {
        todo.stop().await;
        fusionauth.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    println!(
        "\nThe sandbox keeps running; press Ctrl-C to stop. Try:\n  \
         raise an event:  curl -s -X POST {fa_url}emulator/events -H 'content-type: application/json' \\\n                     \
         -d '{{\"event\":{{\"type\":\"user.delete\",\"user\":{{\"id\":\"{BOB}\"}}}}}}'\n  \
         webhooks:        curl -s {fa_url}api/webhook -H 'authorization: {API_KEY}'\n  \
         receiver:        curl -s http://{addr}/metrics | grep fusionhook_\n  \
         receiver config: {}\n",
        config.display(),
        fa_url = fusionauth.url()
    );
    tokio::signal::ctrl_c().await?;
    todo.stop().await;
    fusionauth.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
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
