//! End to end, as users run it: the real operator binary (with its watch
//! loop and leader election), the real receiver binaries (run by the
//! stand-in kubelet), the Kubernetes API emulator, the FusionAuth emulator,
//! a todo service, and the real kubectl — all over real sockets.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use fusionhook_tests::fusionauth_emulator::DEFAULT_TENANT_ID;
use fusionhook_tests::stack::{Stack, eventually};
use fusionhook_tests::todo::{TodoService, TodoStore};
use fusionhook_tests::tools::{tools, workspace_root};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "e2e-global-api-key";
const ALICE: &str = "6c0e5b2a-0000-4000-8000-0000000a11ce";
const BOB: &str = "6c0e5b2a-0000-4000-8000-000000000b0b";
const WAIT: Duration = Duration::from_secs(30);

fn tenant() -> Uuid {
    Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()
}

/// examples/todo-cleanup.yaml, pointed at the loopback FusionAuth and todo service.
fn todo_example(stack: &Stack, todo: &TodoService) -> String {
    std::fs::read_to_string(workspace_root().join("examples/todo-cleanup.yaml"))
        .unwrap()
        .replace("http://fusionauth.fusionauth.svc:9011", &stack.fusionauth_url())
        .replace("http://todo-api.todo.svc", &format!("http://{}", todo.addr))
}

fn resource(stack: &Stack, ns: &str, name: &str) -> Option<Value> {
    stack.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", ns, name)
}

fn webhook_of(stack: &Stack, ns: &str, name: &str) -> Option<Value> {
    let id = resource(stack, ns, name)?["status"]["webhookId"].as_str()?.parse::<Uuid>().ok()?;
    stack.fusionauth.state().webhooks.get(&id).cloned()
}

/// The receiver config the Deployment's pods mount now (each version is its own ConfigMap).
fn receiver_config(stack: &Stack, ns: &str, name: &str) -> Option<String> {
    let deployment = stack.kube.get("apps", "v1", "deployments", ns, &format!("{name}-receiver"))?;
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array()?.clone();
    let map_name = volumes.iter().find_map(|v| v["configMap"]["name"].as_str())?.to_owned();
    stack.kube.get("", "v1", "configmaps", ns, &map_name)?["data"]["receiver.yaml"].as_str().map(str::to_owned)
}

fn kubectl(stack: &Stack, args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new(&tools().kubectl);
    command.args(args).env("KUBECONFIG", &stack.kubeconfig).current_dir(workspace_root());
    let output = if let Some(input) = stdin {
        use std::io::Write;
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    } else {
        command.output().unwrap()
    };
    assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn switch_on(stack: &Stack, event: &str) {
    // The tenant's event switch, as a FusionAuth admin turns it on (the example does not manage it).
    stack.fusionauth.state().tenants.get_mut(&tenant()).unwrap()["eventConfiguration"]["events"][event] =
        json!({"enabled": true, "transactionType": "None"});
}

/// Raises a `user.update` every 20 ms until `stop` is set; the task returns
/// how many were sent and the attempts of each failed delivery.
fn deliver_continuously(stack: &Stack) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<(usize, Vec<String>)>) {
    let fusionauth = stack.fusionauth.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let raiser = tokio::spawn(async move {
        let (mut sent, mut failed) = (0, Vec::new());
        while !stopper.load(std::sync::atomic::Ordering::Relaxed) {
            let report = fusionauth.raise(Some(tenant()), json!({"type": "user.update", "user": {"id": ALICE}})).await.unwrap();
            sent += 1;
            for d in report.webhooks.iter().filter(|d| !d.succeeded) {
                failed.push(format!("{:?}", d.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (sent, failed)
    });
    (stop, raiser)
}

async fn todo_service() -> (std::sync::Arc<TodoStore>, TodoService) {
    let store = TodoStore::with(&[(ALICE, &["buy milk", "call mom"]), (BOB, &["fix bike"])]);
    let service = TodoService::start(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (store, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_1_kubectl_apply_to_a_deleted_users_todos_gone() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (store, todo) = todo_service().await;
    stack.start_operator("op-a", "2s").unwrap();
    kubectl(&stack, &["create", "namespace", "todo"], None);
    kubectl(&stack, &["-n", "todo", "create", "secret", "generic", "fusionauth-api-key", &format!("--from-literal=api-key={KEY}")], None);
    kubectl(&stack, &["apply", "--validate=false", "-f", "-"], Some(&todo_example(&stack, &todo)));

    assert!(
        eventually(WAIT, || stack.condition("todo", "todo-cleanup", "Ready") == Some(("True".into(), "Reconciled".into()))).await,
        "{:?}",
        resource(&stack, "todo", "todo-cleanup")
    );
    let waited = kubectl(&stack, &["-n", "todo", "wait", "--for=condition=Ready", "faw/todo-cleanup", "--timeout=10s"], None);
    assert!(waited.contains("condition met"));

    let webhook = webhook_of(&stack, "todo", "todo-cleanup").unwrap();
    assert_eq!(webhook["url"], "http://todo-cleanup-receiver.todo.svc:8080/events");
    assert_eq!(webhook["eventsEnabled"], json!({"user.delete": true}));
    assert_eq!(webhook["global"], true);
    let auth = stack.kube.get("", "v1", "secrets", "todo", "todo-cleanup-receiver-auth").unwrap();
    let generated = String::from_utf8(base64_decode(auth["data"]["authorization"].as_str().unwrap())).unwrap();
    assert_eq!(webhook["headers"]["Authorization"], generated, "FusionAuth sends the generated value");

    switch_on(&stack, "user.delete");
    let report = stack.fusionauth.raise(Some(tenant()), json!({"type": "user.delete", "user": {"id": ALICE}})).await.unwrap();
    assert!(report.webhooks.iter().all(|d| d.succeeded), "{report:?}");
    assert!(store.todos(ALICE).is_empty(), "exactly alice's todos are gone");
    assert_eq!(store.todos(BOB), ["fix bike"]);

    let table = kubectl(&stack, &["-n", "todo", "get", "faw"], None);
    assert!(table.lines().nth(1).unwrap().contains("True"), "{table}");

    // Every call the operator made is one the chart's RBAC grants.
    let operator_calls: Vec<_> = stack.kube.requests().into_iter().filter(|r| !r.user_agent.starts_with("kubectl")).collect();
    assert!(operator_calls.iter().any(|r| r.path.contains("/leases/")) && operator_calls.iter().any(|r| r.query.contains("watch=true")));
    assert_eq!(ungranted_operator_calls(&stack), Vec::<String>::new(), "calls the chart's RBAC does not grant");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn spec(stack: &Stack, todo: &TodoService) -> Value {
    json!({
        "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "fusionauth-api-key", "key": "api-key"}},
        "events": ["user.delete"],
        "receiver": {"replicas": 1},
        "routes": [{"name": "todo", "events": ["user.delete"], "http": {"method": "DELETE", "url": format!("http://{}/users/{{{{event.user.id}}}}/todos", todo.addr)}}],
    })
}

fn create_resource(stack: &Stack, ns: &str, name: &str, spec: Value) {
    stack
        .create(
            "fusionhook.dev",
            "v1alpha1",
            "fusionauthwebhooks",
            ns,
            json!({"apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook", "metadata": {"name": name}, "spec": spec}),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_2_spec_edits_follow_and_fusionauth_edits_are_repaired() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (_store, todo) = todo_service().await;
    stack.namespace_with_api_key("team").unwrap();
    stack.start_operator("op-a", "1s").unwrap();
    create_resource(&stack, "team", "hook", spec(&stack, &todo));
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);

    // Edit the resource's events: FusionAuth follows.
    stack
        .patch(
            "fusionhook.dev",
            "v1alpha1",
            "fusionauthwebhooks",
            "team",
            "hook",
            &json!({"spec": {"events": ["user.delete", "user.create"]}}),
        )
        .unwrap();
    assert!(
        eventually(WAIT, || webhook_of(&stack, "team", "hook")
            .is_some_and(|w| w["eventsEnabled"] == json!({"user.create": true, "user.delete": true})))
        .await
    );

    // Edit the webhook in FusionAuth behind our back: repaired by the periodic check.
    let id: Uuid = resource(&stack, "team", "hook").unwrap()["status"]["webhookId"].as_str().unwrap().parse().unwrap();
    stack.fusionauth.state().webhooks.get_mut(&id).unwrap()["url"] = json!("http://attacker.example/events");
    assert!(
        eventually(WAIT, || webhook_of(&stack, "team", "hook").is_some_and(|w| w["url"] == "http://hook-receiver.team.svc:8080/events"))
            .await
    );

    // Delete it in FusionAuth: recreated under the same id.
    stack.fusionauth.state().webhooks.remove(&id);
    assert!(eventually(WAIT, || stack.fusionauth.state().webhooks.contains_key(&id)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_3_a_rotated_authorization_secret_rolls_out_without_failed_deliveries() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (store, todo) = todo_service().await;
    stack.namespace_with_api_key("team").unwrap();
    stack.create("", "v1", "secrets", "team", json!({"metadata": {"name": "hook-auth"}, "stringData": {"value": "first-value"}})).unwrap();
    let mut s = spec(&stack, &todo);
    s["auth"] = json!({"authorizationSecretRef": {"name": "hook-auth", "key": "value"}});
    s["events"] = json!(["user.update"]);
    s["routes"][0]["events"] = json!(["user.update"]);
    s["routes"][0]["http"]["method"] = json!("POST");
    s["routes"][0]["http"]["url"] = json!(format!("http://{}/events", todo.addr));
    stack.start_operator("op-a", "1s").unwrap();
    create_resource(&stack, "team", "hook", s);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    switch_on(&stack, "user.update");

    // Deliver non-transactional events continuously while the Secret rotates.
    let (stop, raiser) = deliver_continuously(&stack);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.patch("", "v1", "secrets", "team", "hook-auth", &json!({"stringData": {"value": "second-value"}})).unwrap();
    assert!(
        eventually(WAIT, || webhook_of(&stack, "team", "hook").is_some_and(|w| w["headers"]["Authorization"] == "second-value")).await,
        "FusionAuth's header follows the Secret"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = raiser.await.unwrap();
    assert!(sent > 20, "{sent} deliveries during the rotation");
    // The rotation finished: the old value is no longer kept or accepted by config.
    assert!(eventually(WAIT, || receiver_config(&stack, "team", "hook").is_some_and(|c| !c.contains("previousAuthorizationFile"))).await);
    // Each config version was its own ConfigMap; the ones no pod runs any more are deleted.
    let versions = || {
        let maps = stack.kube.list("", "v1", "configmaps", Some("team"));
        maps.iter().filter(|m| m["metadata"]["labels"]["app.kubernetes.io/instance"] == "hook").count()
    };
    assert!(eventually(WAIT, || versions() == 1).await, "{} config versions left", versions());
    let own = stack.kube.get("", "v1", "secrets", "team", "hook-receiver-auth").unwrap();
    assert!(own["data"].get("previous-authorization").is_none(), "{own}");
    assert_eq!(stack.condition("team", "hook", "Ready").unwrap().0, "True");
    assert!(failed.is_empty(), "{} of {sent} deliveries failed during the rotation: {failed:?}", failed.len());
    assert!(store.received().len() >= sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_3b_a_rotated_hmac_secret_switches_fusionauth_to_a_new_key_without_failed_deliveries() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (store, todo) = todo_service().await;
    stack.namespace_with_api_key("team").unwrap();
    stack
        .create("", "v1", "secrets", "team", json!({"metadata": {"name": "hook-sig"}, "stringData": {"secret": "first-hmac-secret"}}))
        .unwrap();
    let mut s = spec(&stack, &todo);
    s["auth"] = json!({"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "hook-sig", "key": "secret"}}});
    s["events"] = json!(["user.update"]);
    s["routes"][0]["events"] = json!(["user.update"]);
    s["routes"][0]["http"]["method"] = json!("POST");
    s["routes"][0]["http"]["url"] = json!(format!("http://{}/events", todo.addr));
    stack.start_operator("op-a", "1s").unwrap();
    create_resource(&stack, "team", "hook", s);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    switch_on(&stack, "user.update");
    let signing_key = |stack: &Stack| webhook_of(stack, "team", "hook").map(|w| w["signatureConfiguration"]["signingKeyId"].clone());
    let first_key = signing_key(&stack).unwrap();
    assert!(first_key.is_string());

    // Deliver signed, non-transactional events continuously while the Secret rotates.
    let (stop, raiser) = deliver_continuously(&stack);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.patch("", "v1", "secrets", "team", "hook-sig", &json!({"stringData": {"secret": "second-hmac-secret"}})).unwrap();
    assert!(
        eventually(WAIT, || signing_key(&stack).is_some_and(|k| k.is_string() && k != first_key)).await,
        "FusionAuth signs with a new key once the receivers accept both"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = raiser.await.unwrap();
    assert!(sent > 20, "{sent} deliveries during the rotation");
    // The old key is deleted from FusionAuth, and the receivers stop accepting it.
    let first_id: Uuid = first_key.as_str().unwrap().parse().unwrap();
    assert!(eventually(WAIT, || !stack.fusionauth.state().keys.contains_key(&first_id)).await, "the old key is deleted");
    assert!(eventually(WAIT, || receiver_config(&stack, "team", "hook").is_some_and(|c| !c.contains("previousHmacSecretFile"))).await);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    assert!(failed.is_empty(), "{} of {sent} deliveries failed during the rotation: {failed:?}", failed.len());
    assert!(store.received().len() >= sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_4_fusionauth_down_then_back_and_a_killed_receiver_restarts() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (store, todo) = todo_service().await;
    stack.namespace_with_api_key("team").unwrap();
    stack.stop_fusionauth().await;
    stack.start_operator("op-a", "1s").unwrap();
    create_resource(&stack, "team", "hook", spec(&stack, &todo));
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "WebhookRegistered") == Some(("False".into(), "FusionAuthUnreachable".into())))
            .await
    );
    assert_eq!(stack.condition("team", "hook", "Ready").unwrap().1, "FusionAuthUnreachable");

    stack.restart_fusionauth().await.unwrap();
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await, "recovers on its own");

    switch_on(&stack, "user.delete");
    kill_and_see_restarted(&stack, "team").await;
    let delivered = delete_until_answered(&stack, ALICE).await;
    assert!(delivered && store.todos(ALICE).is_empty(), "delivery resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_5_deletion_removes_the_webhook_and_collects_the_receiver_or_orphans() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (_store, todo) = todo_service().await;
    stack.namespace_with_api_key("team").unwrap();
    stack.start_operator("op-a", "5s").unwrap();
    create_resource(&stack, "team", "gone", spec(&stack, &todo));
    let mut orphan = spec(&stack, &todo);
    orphan["deletionPolicy"] = json!("Orphan");
    create_resource(&stack, "team", "kept", orphan);
    assert!(eventually(WAIT, || ["gone", "kept"].iter().all(|n| stack.condition("team", n, "Ready").is_some_and(|c| c.0 == "True"))).await);
    let gone_id: Uuid = resource(&stack, "team", "gone").unwrap()["status"]["webhookId"].as_str().unwrap().parse().unwrap();
    let kept_id: Uuid = resource(&stack, "team", "kept").unwrap()["status"]["webhookId"].as_str().unwrap().parse().unwrap();

    kubectl(&stack, &["-n", "team", "delete", "faw", "gone", "kept", "--timeout=30s"], None);
    assert!(resource(&stack, "team", "gone").is_none() && resource(&stack, "team", "kept").is_none());
    assert!(!stack.fusionauth.state().webhooks.contains_key(&gone_id), "Delete: the webhook is gone from FusionAuth");
    assert!(stack.fusionauth.state().webhooks.contains_key(&kept_id), "Orphan: the webhook stays");
    for name in ["gone-receiver", "kept-receiver"] {
        assert!(stack.kube.get("apps", "v1", "deployments", "team", name).is_none(), "{name} garbage-collected");
        assert!(stack.kube.get("", "v1", "services", "team", name).is_none());
    }
    assert!(stack.kube.list("", "v1", "configmaps", Some("team")).is_empty(), "every config version garbage-collected");
    assert!(eventually(WAIT, || stack.kubelet.pods.lock().unwrap().is_empty()).await, "receivers stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_6_only_the_lease_holder_writes_and_a_standby_takes_over() {
    let mut stack = Stack::start(KEY).await.unwrap();
    let (_store, todo) = todo_service().await;
    stack.namespace_with_api_key("team").unwrap();
    stack.start_operator("op-a", "1s").unwrap();
    assert!(eventually(WAIT, || stack.lease_holder().as_deref() == Some("op-a")).await);
    stack.start_operator("op-b", "1s").unwrap();
    create_resource(&stack, "team", "first", spec(&stack, &todo));
    assert!(eventually(WAIT, || stack.condition("team", "first", "Ready").is_some_and(|c| c.0 == "True")).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.operators[0].metric("fusionhook_operator_leader ").await, 1.0);
    assert_eq!(stack.operators[1].metric("fusionhook_operator_leader ").await, 0.0);
    assert_eq!(stack.operators[1].metric("fusionhook_operator_fusionauth_requests_total").await, 0.0, "the standby never calls FusionAuth");
    assert_eq!(stack.operators[1].metric("fusionhook_operator_kubernetes_writes_total").await, 0.0, "nor writes to Kubernetes");

    // Kill the leader without a chance to release: the standby takes over after the lease duration.
    let killed = Instant::now();
    stack.operators[0].kill();
    assert!(eventually(WAIT, || stack.lease_holder().as_deref() == Some("op-b")).await);
    let takeover = killed.elapsed();
    create_resource(&stack, "team", "second", spec(&stack, &todo));
    assert!(
        eventually(WAIT, || stack.condition("team", "second", "Ready").is_some_and(|c| c.0 == "True")).await,
        "the new leader reconciles"
    );
    assert!(stack.operators[1].metric("fusionhook_operator_fusionauth_requests_total").await > 0.0);
    println!("takeover after {takeover:?}");
    assert!(takeover < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_7_two_hundred_resources_reconcile_and_a_resync_writes_nothing() {
    // 200 here; `bench/operator.sh` runs the same scenario with 1,000 and 5,000.
    let n: usize = std::env::var("FUSIONHOOK_SCALE_RESOURCES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut stack = Stack::start(KEY).await.unwrap();
    let (_store, todo) = todo_service().await;
    stack.namespace_with_api_key("scale").unwrap();
    // 200 receiver processes would measure this 2-core machine, not the
    // operator: in this namespace the kubelet reports pods available
    // without starting them, and the webhooks point at an external URL.
    stack.kubelet.simulate("scale");
    stack.start_operator("op-a", "20s").unwrap();
    let started = Instant::now();
    for i in 0..n {
        let mut s = spec(&stack, &todo);
        s["receiver"]["externalUrl"] = json!(format!("http://127.0.0.1:9/hook-{i}"));
        create_resource(&stack, "scale", &format!("hook-{i}"), s);
    }
    let ready = eventually(Duration::from_secs(300.max(n as u64 / 10)), || {
        (0..n).all(|i| stack.condition("scale", &format!("hook-{i}"), "Ready").is_some_and(|c| c.0 == "True"))
    })
    .await;
    let elapsed = started.elapsed();
    assert!(ready, "not all {n} resources became Ready");
    assert_eq!(stack.fusionauth.state().webhooks.len(), n);

    // Let the last writes settle, then watch one full periodic resync
    // (every resource once within 20 s +/- 10 % of its last reconcile).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let operator = &stack.operators[0];
    let fa_writes = operator.metric("fusionhook_operator_fusionauth_writes_total").await;
    let fa_calls = operator.metric("fusionhook_operator_fusionauth_requests_total").await;
    let kube_writes = operator.metric("fusionhook_operator_kubernetes_writes_total").await;
    let reconciles = operator.metric("fusionhook_operator_reconciles_total").await;
    let kube_requests = stack.kube.requests().len();
    let resync_started = Instant::now();
    let mut resynced = 0.0;
    while resync_started.elapsed() < Duration::from_secs(25 + n as u64 / 20) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        resynced = operator.metric("fusionhook_operator_reconciles_total").await - reconciles;
        if resynced >= n as f64 && resync_started.elapsed() >= Duration::from_secs(23) {
            break;
        }
    }
    let fa_after = operator.metric("fusionhook_operator_fusionauth_writes_total").await - fa_writes;
    let fa_calls_after = operator.metric("fusionhook_operator_fusionauth_requests_total").await - fa_calls;
    let kube_after = operator.metric("fusionhook_operator_kubernetes_writes_total").await - kube_writes;
    // Lease renewals (one PUT a second) are leader election, not reconciling.
    let kube_writes_seen =
        stack.kube.requests()[kube_requests..].iter().filter(|r| r.method != "GET" && !r.path.contains("/leases/")).count();
    let rss = operator.peak_rss_kib();
    println!(
        "scenario 7: {n} resources Ready in {:.1} s; resync: {resynced} reconciles, {fa_calls_after} FusionAuth calls, {fa_after} FusionAuth writes, {kube_after} Kubernetes writes (API server saw {kube_writes_seen}); operator peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        rss as f64 / 1024.0
    );
    assert!(resynced >= n as f64, "a full resync happened ({resynced} reconciles)");
    assert_eq!(fa_after, 0.0, "the resync made FusionAuth writes");
    // One listing of FusionAuth's webhooks serves the reconciles of a resync
    // (a read each would be one call per resource).
    assert!(fa_calls_after * 2.0 <= resynced, "{fa_calls_after} FusionAuth calls for {resynced} reconciles");
    assert_eq!(kube_after, 0.0, "the resync made Kubernetes writes");
    assert_eq!(kube_writes_seen, 0, "the API server saw writes during the resync");
}

/// The start of the store scenarios (8 to 12): a stack, `n` users with a
/// todo each, the todo service (answering 503 when `down`), namespace
/// `team` with the API key, and an operator.
async fn store_scenario(n: usize, down: bool) -> (Stack, Vec<String>, std::sync::Arc<TodoStore>, TodoService) {
    let mut stack = Stack::start(KEY).await.unwrap();
    let people = users(n);
    let seeded: Vec<(&str, &[&str])> = people.iter().map(|u| (u.as_str(), &["a todo"][..])).collect();
    let store = TodoStore::with(&seeded);
    let todo = TodoService::start(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    if down {
        store.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    }
    stack.namespace_with_api_key("team").unwrap();
    stack.start_operator("op-a", "2s").unwrap();
    (stack, people, store, todo)
}

/// Users with todos for scenarios 8 and 9.
fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("6c0e5b2a-0000-4000-8000-{i:012}")).collect()
}

/// The operator's calls the chart's RBAC does not grant (none, as it should be).
fn ungranted_operator_calls(stack: &Stack) -> Vec<String> {
    stack
        .kube
        .requests()
        .into_iter()
        .filter(|r| !r.user_agent.starts_with("kubectl"))
        .filter(|r| !fusionhook_operator::rbac::granted(&r.method, &r.path, &r.query))
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect()
}

/// Kills the receiver of `ns/hook` and waits for the kubelet to restart it.
async fn kill_and_see_restarted(stack: &Stack, ns: &str) {
    assert!(stack.kubelet.pods.lock().unwrap().kill(ns, "hook-receiver"));
    assert!(eventually(WAIT, || stack.kubelet.pods.lock().unwrap().restarts(ns, "hook-receiver") == 1).await, "the kubelet restarts it");
}

/// Deletes `user` in FusionAuth until every webhook answers 200 (at most
/// 100 tries, 100 ms apart); whether one did.
async fn delete_until_answered(stack: &Stack, user: &str) -> bool {
    for _ in 0..100 {
        let report = stack.fusionauth.raise(Some(tenant()), json!({"type": "user.delete", "user": {"id": user}})).await.unwrap();
        if report.webhooks.iter().all(|d| d.succeeded) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The outage of scenarios 8 and 9, with the todo service down (503): half
/// of `people` deleted in FusionAuth (each answered 200 at once), the
/// receiver pod of `ns/hook` killed and restarted, the other half deleted
/// once it answers again; nothing deleted yet. Then the service comes back
/// and, within `limit`, every user's todos are gone.
async fn outage(stack: &Stack, ns: &str, store: &TodoStore, people: &[String], limit: Duration) {
    switch_on(stack, "user.delete");
    let (before, after) = people.split_at(people.len() / 2);
    for user in before {
        let report = stack.fusionauth.raise(Some(tenant()), json!({"type": "user.delete", "user": {"id": user}})).await.unwrap();
        assert!(report.webhooks.iter().all(|d| d.succeeded), "answered 200 while the service is down: {report:?}");
    }
    kill_and_see_restarted(stack, ns).await;
    for user in after {
        assert!(delete_until_answered(stack, user).await, "the restarted receiver answers");
    }
    assert!(people.iter().all(|u| !store.todos(u).is_empty()), "nothing could be deleted yet");
    store.fail_with(None);
    assert!(
        eventually(limit, || people.iter().all(|u| store.todos(u).is_empty())).await,
        "every user's todos deleted in the end; left: {:?}",
        people.iter().filter(|u| !store.todos(u).is_empty()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_8_a_postgres_store_answers_fusionauth_while_the_service_is_down_and_delivers_later() {
    let pg = fusionhook_tests::postgres::Postgres::start();
    let (stack, people, store, todo) = store_scenario(20, true).await;
    stack.create("", "v1", "secrets", "team", json!({"metadata": {"name": "pg"}, "stringData": {"url": pg.url()}})).unwrap();
    let mut spec = spec(&stack, &todo);
    spec["receiver"]["store"] = json!({"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}});
    spec["routes"][0]["retry"] = json!({"scheduleMs": [200]});
    create_resource(&stack, "team", "hook", spec);
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await,
        "{:?}",
        resource(&stack, "team", "hook")
    );
    // The receiver's config names files, never the connection string or the admin token.
    let config = receiver_config(&stack, "team", "hook").unwrap();
    assert!(config.contains("type: postgres") && config.contains("urlFile: /etc/fusionhook/secrets/postgres-url"), "{config}");
    for scope in ["read", "replay", "ingest"] {
        assert!(config.contains(&format!("{scope}TokenFile: /etc/fusionhook/secrets/admin-{scope}-token")), "{config}");
        // Each scope's token in its own Secret (RBAC grants one by name), with when it was made.
        let secret = stack.kube.get("", "v1", "secrets", "team", &format!("hook-receiver-admin-{scope}")).unwrap();
        assert!(base64_decode(secret["data"]["token"].as_str().unwrap()).len() >= 32, "a generated admin token");
        assert!(base64_decode(secret["data"]["rotated-at"].as_str().unwrap()).starts_with(b"20"));
    }
    assert!(!config.contains(&pg.url()), "{config}");
    let kept = stack.kube.get("", "v1", "secrets", "team", "hook-receiver-auth").unwrap();
    assert!(kept["data"].get("admin-token").is_none(), "no admin token beside the Authorization value");
    let service = stack.kube.get("", "v1", "services", "team", "hook-receiver").unwrap();
    let ports: Vec<&str> = service["spec"]["ports"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(ports, ["http", "admin"]);

    // FusionAuth's deliveries are answered 200 although the service is
    // down; the pod dies and comes back meanwhile. Once the service is back
    // every action happens. Deliveries the killed pod had claimed wait for
    // their lease to run out (twice the route's timeout plus 30 s) before the
    // new pod takes them.
    outage(&stack, "team", &store, &people, Duration::from_secs(90)).await;
    assert_eq!(ungranted_operator_calls(&stack), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_9_an_embedded_store_keeps_accepted_events_across_a_pod_restart_until_the_service_is_back() {
    let (stack, people, store, todo) = store_scenario(12, true).await;
    let mut spec = spec(&stack, &todo);
    spec["receiver"]["store"] = json!({"type": "embedded", "size": "2Gi"});
    spec["routes"][0]["retry"] = json!({"scheduleMs": [200]});
    create_resource(&stack, "team", "hook", spec);
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await,
        "{:?}",
        resource(&stack, "team", "hook")
    );
    // A StatefulSet with a volume claim per replica and a headless Service; no Deployment.
    let sts = stack.kube.get("apps", "v1", "statefulsets", "team", "hook-receiver").unwrap();
    assert_eq!(sts["spec"]["serviceName"], "hook-receiver-pods");
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    assert!(stack.kube.get("apps", "v1", "deployments", "team", "hook-receiver").is_none());
    assert_eq!(stack.kube.get("", "v1", "services", "team", "hook-receiver-pods").unwrap()["spec"]["clusterIP"], "None");
    let condition = resource(&stack, "team", "hook").unwrap()["status"]["conditions"].to_string();
    assert!(condition.contains("StatefulSet hook-receiver is rolled out"), "{condition}");

    // Killed and restarted on the same volume: what it accepted is still there.
    outage(&stack, "team", &store, &people, Duration::from_secs(60)).await;
    assert!(stack.kubelet.claim_dir("team", "hook-receiver").join("fusionhook.redb").exists());
    assert_eq!(ungranted_operator_calls(&stack), Vec::<String>::new());
}

/// The reasons of the Events in `ns`, oldest first.
fn event_reasons(stack: &Stack, ns: &str) -> Vec<String> {
    stack.kube.list("events.k8s.io", "v1", "events", Some(ns)).iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect()
}

/// The message of condition `kind` of `ns/hook`.
fn condition_message(stack: &Stack, ns: &str, kind: &str) -> String {
    let r = resource(stack, ns, "hook").unwrap_or_default();
    r["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| c["message"].to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_10_switching_from_embedded_to_postgres_keeps_the_old_store_until_it_has_delivered_everything() {
    let pg = fusionhook_tests::postgres::Postgres::start();
    let (stack, people, store, todo) = store_scenario(10, true).await;
    stack.create("", "v1", "secrets", "team", json!({"metadata": {"name": "pg"}, "stringData": {"url": pg.url()}})).unwrap();
    let mut spec = spec(&stack, &todo);
    spec["receiver"]["store"] = json!({"type": "embedded"});
    spec["routes"][0]["retry"] = json!({"scheduleMs": [300]});
    create_resource(&stack, "team", "hook", spec.clone());
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    switch_on(&stack, "user.delete");

    // Half the users deleted while the service is down: the embedded store holds them.
    let (before, after) = people.split_at(people.len() / 2);
    for user in before {
        assert!(delete_until_answered(&stack, user).await, "answered 200 while the service is down");
    }

    // The store type changes: a Deployment on PostgreSQL takes FusionAuth's
    // deliveries; the StatefulSet stays, with its claim, and says why.
    spec["receiver"]["store"] = json!({"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}});
    stack.patch("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", "hook", &json!({"spec": spec})).unwrap();
    assert!(
        eventually(WAIT, || stack
            .condition("team", "hook", "OldStoreDrained")
            .is_some_and(|c| c == ("False".into(), "OldStoreKept".into())))
        .await,
        "{:?}",
        resource(&stack, "team", "hook")
    );
    let message = condition_message(&stack, "team", "OldStoreDrained");
    assert!(message.contains(&format!("holds {} pending and 0 dead deliveries", before.len())), "{message}");
    let uid =
        stack.kube.get("apps", "v1", "statefulsets", "team", "hook-receiver").unwrap()["metadata"]["uid"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("fusionhook.dev/discard-store={uid}")), "{message}");
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await,
        "the new receiver is Ready"
    );
    assert!(eventually(WAIT, || event_reasons(&stack, "team").contains(&"OldStoreKept".to_owned())).await, "an Event says so");
    let service = stack.kube.get("", "v1", "services", "team", "hook-receiver").unwrap();
    assert_eq!(service["spec"]["selector"]["fusionhook.dev/store"], "postgres", "FusionAuth no longer reaches the old store");
    assert!(stack.kubelet.pods.lock().unwrap().running("team", "hook-receiver-0"), "the old store's pod still runs");

    // The other half goes to the new receiver (PostgreSQL).
    for user in after {
        assert!(delete_until_answered(&stack, user).await, "the new receiver answers");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(people.iter().all(|u| !store.todos(u).is_empty()), "nothing could be deleted yet");
    assert!(stack.kube.get("apps", "v1", "statefulsets", "team", "hook-receiver").is_some(), "kept while it holds deliveries");

    // The service is back: both stores deliver; the drained one goes, with its claim.
    store.fail_with(None);
    assert!(
        eventually(Duration::from_secs(60), || people.iter().all(|u| store.todos(u).is_empty())).await,
        "every user's todos deleted; left: {:?}",
        people.iter().filter(|u| !store.todos(u).is_empty()).collect::<Vec<_>>()
    );
    // Once no event reached it for 30 s (old_store::QUIET_SECONDS).
    assert!(
        eventually(WAIT * 2, || stack.kube.get("apps", "v1", "statefulsets", "team", "hook-receiver").is_none()).await,
        "the drained StatefulSet is deleted"
    );
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "OldStoreDrained").is_none()).await,
        "{:?}",
        resource(&stack, "team", "hook")
    );
    assert!(eventually(WAIT, || event_reasons(&stack, "team").contains(&"OldStoreDrained".to_owned())).await);
    let claim_deleted =
        stack.kube.requests().iter().any(|r| r.method == "DELETE" && r.path.ends_with("/persistentvolumeclaims/store-hook-receiver-0"));
    assert!(claim_deleted, "the drained claim is deleted");
    assert_eq!(stack.condition("team", "hook", "Ready").map(|c| c.0), Some("True".into()));
    assert!(
        stack.kube.get("", "v1", "services", "team", "hook-receiver").unwrap()["spec"]["selector"].get("fusionhook.dev/store").is_none()
    );
    assert_eq!(ungranted_operator_calls(&stack), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_11_a_deleted_resource_waits_for_its_embedded_store_until_a_person_discards_what_is_dead() {
    let (stack, people, _store, todo) = store_scenario(3, true).await;
    let mut spec = spec(&stack, &todo);
    spec["receiver"]["store"] = json!({"type": "embedded"});
    spec["routes"][0]["retry"] = json!({"maxAttempts": 2, "scheduleMs": [100]});
    create_resource(&stack, "team", "hook", spec);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    switch_on(&stack, "user.delete");
    for user in &people {
        assert!(delete_until_answered(&stack, user).await);
    }

    // Deleted while its store holds dead deliveries: the finalizer stays,
    // FusionAuth's webhook goes, and Ready says what to do.
    stack.delete("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", "hook").unwrap();
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.1 == "OldStoreKept")
            && condition_message(&stack, "team", "Ready").contains("3 dead"))
        .await,
        "{:?}",
        resource(&stack, "team", "hook")
    );
    assert!(eventually(WAIT, || stack.fusionauth.state().webhooks.is_empty()).await, "FusionAuth no longer calls it");
    let message = condition_message(&stack, "team", "Ready");
    assert!(message.contains("kubectl -n team port-forward pod/hook-receiver-0 8081"), "{message}");
    assert!(stack.kube.get("", "v1", "services", "team", "hook-receiver").is_none(), "nothing routes to it any more");
    assert!(event_reasons(&stack, "team").contains(&"OldStoreKept".to_owned()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(resource(&stack, "team", "hook").is_some(), "still there");

    // A person confirms with the StatefulSet's uid, with the README's command: everything goes.
    let readme = "kubectl -n NS annotate fusionauthwebhook NAME fusionhook.dev/discard-store=$(kubectl -n NS get sts NAME-receiver -o jsonpath='{.metadata.uid}') --overwrite";
    let kubectl_dir = tools().kubectl.parent().unwrap().to_owned();
    let path = format!("{}:{}", kubectl_dir.display(), std::env::var("PATH").unwrap_or_default());
    let confirmed = Command::new("sh")
        .args(["-c", &readme.replace("NS", "team").replace("NAME", "hook")])
        .env("KUBECONFIG", &stack.kubeconfig)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(confirmed.status.success(), "{}", String::from_utf8_lossy(&confirmed.stderr));
    assert!(eventually(WAIT, || resource(&stack, "team", "hook").is_none()).await, "deleted once confirmed");
    assert!(event_reasons(&stack, "team").contains(&"OldStoreDiscarded".to_owned()));
    assert!(
        stack.kube.requests().iter().any(|r| r.method == "DELETE" && r.path.ends_with("/persistentvolumeclaims/store-hook-receiver-0"))
    );
    assert_eq!(ungranted_operator_calls(&stack), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_12_two_postgres_replicas_act_once_when_a_fusionauth_retry_lands_on_the_other_one() {
    let pg = fusionhook_tests::postgres::Postgres::start();
    let (stack, people, store, todo) = store_scenario(5, false).await;
    stack.kubelet.run_up_to(2);
    stack.create("", "v1", "secrets", "team", json!({"metadata": {"name": "pg"}, "stringData": {"url": pg.url()}})).unwrap();
    let mut spec = spec(&stack, &todo);
    spec["receiver"]["replicas"] = json!(2);
    spec["receiver"]["store"] = json!({"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}});
    create_resource(&stack, "team", "hook", spec);
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await);
    let both_serve = || stack.fusionauth.state().resolve.get("hook-receiver.team.svc").is_some_and(|a| a.len() == 2);
    assert!(eventually(WAIT, both_serve).await, "the Service leads to both replicas");

    // Another webhook that always answers 200, and a transaction level that
    // commits with one of two: FusionAuth then retries a failed delivery
    // (FACTS.md §c.4), and the Service sends the retry to the other replica.
    let ok = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ok_url = format!("http://{}/", ok.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(ok, axum::Router::new().fallback(async || "ok")).await });
    let other = Uuid::new_v4();
    let webhook = json!({"id": other, "url": ok_url, "eventsEnabled": {"user.delete": true}, "global": true, "connectTimeout": 1000, "readTimeout": 2000});
    stack.fusionauth.state().webhooks.insert(other, webhook);
    stack.fusionauth.state().tenants.get_mut(&tenant()).unwrap()["eventConfiguration"]["events"]["user.delete"] =
        json!({"enabled": true, "transactionType": "SimpleMajority"});

    for user in &people {
        // The replica handles the delivery; its answer is lost on the way back.
        stack.fusionauth.lose_answers(1);
        let report = stack.fusionauth.raise(Some(tenant()), json!({"type": "user.delete", "user": {"id": user}})).await.unwrap();
        let ours = report.webhooks.iter().find(|d| d.webhook_id != other).unwrap();
        assert!(ours.succeeded && ours.attempts.len() == 2, "{report:?}");
        assert!(ours.attempts[0].exception.as_deref().is_some_and(|e| e.contains("lost")), "{report:?}");
        assert_ne!(ours.attempts[0].address, ours.attempts[1].address, "the retry went to the other replica: {report:?}");
    }
    assert!(eventually(WAIT, || people.iter().all(|u| store.todos(u).is_empty())).await, "every action happened");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.count(&axum::http::Method::DELETE), people.len(), "each once: the second replica knew the event");

    // PostgreSQL goes down: the receivers are not ready (their store cannot
    // commit) and the resource says so, with the receivers' own reason.
    let mut pg = pg;
    pg.stop();
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "ReceiverAvailable").is_some_and(|c| c.1 == "StoreUnavailable")).await,
        "{:?}",
        resource(&stack, "team", "hook")
    );
    let message = condition_message(&stack, "team", "ReceiverAvailable");
    assert!(message.contains("its store cannot commit"), "{message}");
    assert!(!message.contains(&pg.url()), "no connection string in status: {message}");
    pg.resume();
    assert!(eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await, "ready again");
    assert_eq!(ungranted_operator_calls(&stack), Vec::<String>::new());
}
