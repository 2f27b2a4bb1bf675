//! `kubectl fusionhook` (issue 15) as a user runs it: the real `kubectl`
//! finds the `kubectl-fusionhook` plugin on `PATH` and runs it against the
//! Kubernetes API emulator and the end-to-end stack (real operator and
//! receiver binaries, the FusionAuth emulator, a sink service).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient};
use fusionhook_fusionauth::model::{SignatureConfiguration, Webhook};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, Emulator, Settings};
use fusionhook_tests::stack::{Stack, eventually};
use fusionhook_tests::todo::{TodoService, TodoStore};
use fusionhook_tests::tools::tools;
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "cli-global-api-key";
const WAIT: Duration = Duration::from_secs(60);

/// The output of `kubectl fusionhook ARGS` (stdin from `input`), with the plugin on `PATH`.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn plugin_dir() -> PathBuf {
    let plugin = fusionhook_tests::binaries::built("fusionhook-cli", "kubectl-fusionhook").unwrap();
    plugin.parent().unwrap().to_path_buf()
}

fn kubectl_fusionhook(kubeconfig: &Path, args: &[&str], input: Option<&[u8]>) -> Run {
    let path = format!("{}:{}", plugin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Command::new(&tools().kubectl)
        .arg("fusionhook")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs and expects success; the stdout.
fn ok(stack: &Stack, args: &[&str]) -> String {
    let run = kubectl_fusionhook(&stack.kubeconfig, args, None);
    assert!(run.ok, "kubectl fusionhook {args:?} failed: {}{}", run.stderr, run.stdout);
    assert!(!run.stdout.contains(KEY) && !run.stderr.contains(KEY), "the API key is never printed");
    run.stdout
}

/// A request FusionAuth (the emulator) signed with an HMAC key, as a plain
/// TCP listener captured it: request line, headers, blank line, body.
/// How the captured request is signed: an HMAC secret, or an RSA key FusionAuth publishes in its JWKS.
enum Signing<'a> {
    Hmac(&'a str),
    Rsa,
}

const RSA_PRIVATE: &str = include_str!("../../fusionauth/tests/fixtures/keys/rsa-private.pem");

/// The captured request, and the emulator (serving its JWKS) while the caller holds it.
async fn captured_signed_request(signing: Signing<'_>) -> (Vec<u8>, fusionhook_tests::fusionauth_emulator::RunningEmulator) {
    let emulator = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO });
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let capture = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut raw = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        raw
    });
    let client = FusionAuthClient::new(ClientConfig::new(running.url().parse().unwrap(), ApiKey::new(KEY))).unwrap();
    let key_id = Uuid::new_v4();
    match signing {
        Signing::Hmac(secret) => {
            client.import_hmac_key(key_id, "cli-test", "HS256", secret).await.unwrap();
        }
        Signing::Rsa => {
            let imported = reqwest::Client::new()
                .post(format!("{}/api/key/import/{key_id}", running.url()))
                .header("authorization", KEY)
                .json(&json!({"key": {"algorithm": "RS256", "name": "rsa", "privateKey": RSA_PRIVATE, "kid": "rsa-kid"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(imported.status(), 200);
        }
    }
    let webhook = Webhook {
        url,
        connect_timeout: 1000,
        read_timeout: 2000,
        events_enabled: BTreeMap::from([("user.delete".into(), true)]),
        global: true,
        signature_configuration: Some(SignatureConfiguration { enabled: true, signing_key_id: Some(key_id) }),
        ..Webhook::default()
    };
    client.create_webhook(Uuid::new_v4(), &webhook).await.unwrap();
    emulator.state().tenants.get_mut(&Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()).unwrap()["eventConfiguration"]["events"]["user.delete"] =
        json!({"enabled": true, "transactionType": "None"});
    let report = emulator
        .raise(Some(Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()), json!({"type": "user.delete", "user": {"id": "u-1"}}))
        .await
        .unwrap();
    assert!(report.webhooks[0].succeeded, "{report:?}");
    (tokio::task::spawn_blocking(move || capture.join().unwrap()).await.unwrap(), running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_completion_help_and_errors_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "a-shared-hmac-secret\n").unwrap();
    let secret = secret_file.to_str().unwrap();
    let nowhere = dir.path().join("no-kubeconfig");

    let (request, _fusionauth) = captured_signed_request(Signing::Hmac("a-shared-hmac-secret")).await;
    let valid = kubectl_fusionhook(&nowhere, &["verify", "--hmac-secret-file", secret], Some(&request));
    assert!(valid.ok && valid.stdout.contains("VALID"), "{}{}", valid.stdout, valid.stderr);
    // The same capture with LF line ends (as pasted into a file).
    let text = String::from_utf8(request.clone()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let lf = format!("{}\n\n{body}", head.replace("\r\n", "\n"));
    assert!(kubectl_fusionhook(&nowhere, &["verify", "--hmac-secret-file", secret], Some(lf.as_bytes())).ok);

    let changed = text.replace("\"u-1\"", "\"u-2\"");
    let refused = kubectl_fusionhook(&nowhere, &["verify", "--hmac-secret-file", secret], Some(changed.as_bytes()));
    assert!(!refused.ok && refused.stdout.contains("body changed"), "{}", refused.stdout);
    std::fs::write(&secret_file, "another-secret").unwrap();
    let wrong = kubectl_fusionhook(&nowhere, &["verify", "--hmac-secret-file", secret], Some(&request));
    assert!(!wrong.ok && wrong.stdout.contains("wrong secret"), "{}", wrong.stdout);
    std::fs::write(&secret_file, "a-shared-hmac-secret").unwrap();
    let algorithm = kubectl_fusionhook(&nowhere, &["verify", "--hmac-secret-file", secret, "--algorithm", "HS512"], Some(&request));
    assert!(!algorithm.ok && algorithm.stdout.contains("not allowed"), "{}", algorithm.stdout);
    let json = kubectl_fusionhook(&nowhere, &["verify", "--hmac-secret-file", secret, "-o", "json"], Some(&request));
    assert_eq!(serde_json::from_str::<Value>(&json.stdout).unwrap()["valid"], true);

    // An RSA-signed capture, checked against FusionAuth's JWKS: valid; then the key gone from it.
    let (signed, fusionauth) = captured_signed_request(Signing::Rsa).await;
    let jwks = format!("{}/.well-known/jwks.json", fusionauth.url());
    let rsa = kubectl_fusionhook(&nowhere, &["verify", "--jwks-url", &jwks], Some(&signed));
    assert!(rsa.ok && rsa.stdout.contains("kid `rsa-kid` is published"), "{}{}", rsa.stdout, rsa.stderr);
    let hmac_against_jwks = kubectl_fusionhook(&nowhere, &["verify", "--jwks-url", &jwks], Some(&request));
    assert!(!hmac_against_jwks.ok && hmac_against_jwks.stdout.contains("--hmac-secret-file"), "{}", hmac_against_jwks.stdout);
    // Another FusionAuth (its JWKS holds no such key).
    let (_, another) = captured_signed_request(Signing::Hmac("y")).await;
    let empty = format!("{}/.well-known/jwks.json", another.url());
    let unknown = kubectl_fusionhook(&nowhere, &["verify", "--jwks-url", &empty], Some(&signed));
    assert!(!unknown.ok && unknown.stdout.contains("unknown kid `rsa-kid`"), "{}{}", unknown.stdout, unknown.stderr);

    for shell in ["bash", "zsh", "fish"] {
        let completion = kubectl_fusionhook(&nowhere, &["completion", shell], None);
        assert!(completion.ok && completion.stdout.contains("deliveries") && completion.stdout.contains("replay"), "{shell}");
    }
    for command in ["status", "reconcile", "deliveries", "replay", "discard", "send", "verify", "backfill", "completion"] {
        let help = kubectl_fusionhook(&nowhere, &[command, "--help"], None);
        assert!(help.ok && help.stdout.contains("Examples:"), "{command} --help: {}", help.stdout);
    }
    let no_config = kubectl_fusionhook(&nowhere, &["status", "x"], None);
    assert!(!no_config.ok && no_config.stderr.contains("set KUBECONFIG"), "{}", no_config.stderr);
}

async fn start() -> (Stack, std::sync::Arc<TodoStore>, TodoService) {
    let mut stack = Stack::start(KEY).await.unwrap();
    let sink = TodoStore::with(&[]);
    let service = TodoService::start(sink.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    stack.namespace_with_api_key("team").unwrap();
    stack.start_operator("op-a", "30s").unwrap();
    (stack, sink, service)
}

fn create(stack: &Stack, name: &str, spec: Value) {
    let object = json!({"apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook", "metadata": {"name": name}, "spec": spec});
    stack.create("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", object).unwrap();
}

/// `team/hook`: user.delete posted to the sink (the event as body), an
/// embedded store on `replicas` pods, one attempt per delivery (so a
/// failure goes dead at once).
fn create_embedded_hook(stack: &Stack, sink: &TodoService, replicas: u32) {
    create(
        stack,
        "hook",
        json!({
            "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "fusionauth-api-key", "key": "api-key"}},
            "events": ["user.delete"],
            "receiver": {"replicas": replicas, "store": {"type": "embedded", "size": "1Gi"}},
            "routes": [{"name": "sink", "events": ["user.delete"], "http": {"method": "POST", "url": format!("http://{}/sink", sink.addr), "body": "event"},
                        "retry": {"maxAttempts": 1}}],
        }),
    );
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_against_a_running_webhook() {
    let (stack, sink, service) = start().await;
    create_embedded_hook(&stack, &service, 1);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    stack.fusionauth.state().tenants.get_mut(&Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()).unwrap()["eventConfiguration"]["events"]["user.delete"] =
        json!({"enabled": true, "transactionType": "None"});

    // status: conditions, pods, webhook, the store; FusionAuth's three
    // switches only when asked (they need the API key Secret).
    let status = ok(&stack, &["status", "hook", "-n", "team"]);
    for expected in
        ["ok  Ready", "Reconciled", "hook-receiver-0", "ready", "switches: not read (add --fusionauth", "Store: embedded: 0 pending"]
    {
        assert!(status.contains(expected), "status lacks {expected:?}:\n{status}");
    }
    let with_switches = ok(&stack, &["status", "hook", "-n", "team", "--fusionauth"]);
    for expected in ["user.delete", "on / on / on"] {
        assert!(with_switches.contains(expected), "status --fusionauth lacks {expected:?}:\n{with_switches}");
    }
    let as_json = json_of(&ok(&stack, &["status", "hook", "-n", "team", "-o", "json", "--fusionauth"]));
    assert_eq!(as_json["switches"]["rows"][0]["on"], true, "{as_json}");
    let as_yaml: Value = serde_yaml::from_str(&ok(&stack, &["status", "hook", "-n", "team", "-o", "yaml"])).unwrap();
    assert_eq!(as_yaml["webhook"]["id"], as_json["webhook"]["id"]);

    // reconcile --wait returns once the operator handled it (the resync is 30 s away).
    let started = std::time::Instant::now();
    let reconciled = ok(&stack, &["reconcile", "hook", "-n", "team", "--wait", "--timeout", "20s"]);
    assert!(reconciled.contains("reconciled: Ready True"), "{reconciled}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // send: a synthetic user.delete through the routes; the sink is down, so it goes dead.
    sink.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let run = kubectl_fusionhook(
        &stack.kubeconfig,
        &["send", "hook", "-n", "team", "--event", "user.delete", "--set", "user.id=u-42", "-o", "json"],
        None,
    );
    assert!(!run.ok, "a dead delivery exits 1");
    let sent = json_of(&run.stdout);
    assert_eq!(sent["answer"]["outcome"], "stored", "{sent}");
    assert_eq!(sent["answer"]["outcome"], "stored", "{sent}");
    assert_eq!(sent["deliveries"][0]["state"], "dead", "{sent}");
    let event_id = sent["eventId"].as_str().unwrap().to_owned();
    let received =
        |sink: &TodoStore| sink.received().iter().filter(|r| r.body.windows(event_id.len()).any(|w| w == event_id.as_bytes())).count();
    assert_eq!(received(&sink), 1, "one failed attempt");

    // deliveries: the dead one; replay it once the sink is back.
    let dead = json_of(&ok(&stack, &["deliveries", "hook", "-n", "team", "--state", "dead", "-o", "json"]));
    let deliveries = dead["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{dead}");
    assert_eq!(deliveries[0]["eventId"], event_id.as_str());
    let table = ok(&stack, &["deliveries", "hook", "-n", "team", "--state", "dead"]);
    assert!(table.contains("dead") && table.contains(&event_id), "{table}");
    let dry = ok(&stack, &["replay", "hook", "-n", "team", "--dead", "--dry-run"]);
    assert!(dry.contains("would be replayed"), "{dry}");
    sink.fail_with(None);
    let replayed = ok(&stack, &["replay", "hook", "-n", "team", "--dead"]);
    assert!(replayed.contains("1 delivery replayed"), "{replayed}");
    assert!(eventually(WAIT, || received(&sink) == 2).await, "the replayed delivery reached the sink");
    assert!(
        eventually(WAIT, || {
            let out =
                kubectl_fusionhook(&stack.kubeconfig, &["deliveries", "hook", "-n", "team", "--state", "delivered", "-o", "json"], None);
            out.ok && json_of(&out.stdout)["deliveries"].as_array().is_some_and(|d| d.len() == 1)
        })
        .await
    );

    // discard: another dead one, given up on.
    sink.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let sent = json_of(
        &kubectl_fusionhook(&stack.kubeconfig, &["send", "hook", "-n", "team", "--event", "user.delete", "-o", "json"], None).stdout,
    );
    let id = sent["deliveries"][0]["id"].as_u64().unwrap().to_string();
    let discarded = ok(&stack, &["discard", "hook", "-n", "team", "--id", &id]);
    assert!(discarded.contains("1 delivery discarded"), "{discarded}");
    assert!(ok(&stack, &["deliveries", "hook", "-n", "team", "--state", "dead"]).contains("no deliveries match"));

    // backfill: one pass now over the last hour (backfill is not enabled on the resource).
    let backfill = ok(&stack, &["backfill", "hook", "-n", "team", "--since", "1h"]);
    assert!(backfill.contains("handed 0 event(s)") && backfill.contains("scanned"), "{backfill}");

    // A resource that is not Ready: status names the reason and the fix.
    create(
        &stack,
        "broken",
        json!({
            "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "missing-secret", "key": "api-key"}},
            "events": ["user.delete"],
        }),
    );
    assert!(eventually(WAIT, || stack.condition("team", "broken", "SecretsResolved").is_some_and(|c| c.0 == "False")).await);
    let broken = ok(&stack, &["status", "broken", "-n", "team"]);
    assert!(broken.contains("NO  Ready") && broken.contains("SecretNotFound"), "{broken}");
    assert!(broken.contains("what to do: create the Secret"), "{broken}");

    // A resource that does not exist, and a store command on a resource without a store.
    let missing = kubectl_fusionhook(&stack.kubeconfig, &["status", "nope", "-n", "team"], None);
    assert!(
        !missing.ok && missing.stderr.contains("not found in namespace team") && missing.stderr.contains("kubectl get faw -A"),
        "{}",
        missing.stderr
    );
    create(
        &stack,
        "storeless",
        json!({
            "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "fusionauth-api-key", "key": "api-key"}},
            "events": ["user.delete"],
            "receiver": {"replicas": 1},
        }),
    );
    assert!(eventually(WAIT, || stack.condition("team", "storeless", "Ready").is_some_and(|c| c.0 == "True")).await);
    let storeless = kubectl_fusionhook(&stack.kubeconfig, &["deliveries", "storeless", "-n", "team"], None);
    assert!(!storeless.ok && storeless.stderr.contains("spec.receiver.store"), "{}", storeless.stderr);

    // The admin token never shows either.
    let everything = format!("{status}{reconciled}{table}{dry}{replayed}{discarded}{backfill}{broken}{as_json}");
    use base64::Engine;
    for scope in ["read", "replay", "ingest"] {
        let secret = stack.kube.get("", "v1", "secrets", "team", &format!("hook-receiver-admin-{scope}")).unwrap();
        let token = base64::engine::general_purpose::STANDARD.decode(secret["data"]["token"].as_str().unwrap()).unwrap();
        assert!(!everything.contains(String::from_utf8(token).unwrap().trim()), "the admin token is never printed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_store_of_two_pods_is_asked_pod_by_pod() {
    let (stack, sink, service) = start().await;
    stack.kubelet.run_up_to(2);
    create_embedded_hook(&stack, &service, 2);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    sink.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    let sent = kubectl_fusionhook(&stack.kubeconfig, &["send", "hook", "-n", "team", "--event", "user.delete", "-o", "json"], None);
    assert!(!sent.ok, "a delivery that went dead is a failure (exit 1)");
    let sent = json_of(&sent.stdout);
    assert_eq!(sent["deliveries"][0]["state"], "dead", "asked on the pod that stored it: {sent}");
    let id = sent["deliveries"][0]["id"].as_u64().unwrap().to_string();

    let listed = json_of(&ok(&stack, &["deliveries", "hook", "-n", "team", "--state", "dead", "-o", "json"]));
    let pods: Vec<&str> = listed["deliveries"].as_array().unwrap().iter().filter_map(|d| d["pod"].as_str()).collect();
    assert_eq!(pods, ["hook-receiver-0"], "{listed}");
    let status = ok(&stack, &["status", "hook", "-n", "team"]);
    assert!(status.contains("1 dead") && status.contains("the sum of 2 pods' stores"), "{status}");
    let ambiguous = kubectl_fusionhook(&stack.kubeconfig, &["discard", "hook", "-n", "team", "--id", &id], None);
    assert!(!ambiguous.ok && ambiguous.stderr.contains("--pod"), "{}", ambiguous.stderr);
    let discarded = ok(&stack, &["discard", "hook", "-n", "team", "--id", &id, "--pod", "hook-receiver-0"]);
    assert!(discarded.contains("1 delivery discarded"), "{discarded}");
}
