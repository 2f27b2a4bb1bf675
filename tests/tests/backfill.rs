//! Backfill end to end (issue 14): every receiver of a resource is down
//! while FusionAuth raises events; once they are back, the operator finds
//! the events FusionAuth committed and failed to deliver in the Webhook
//! Event Log and hands each to the receiver, which acts on it once. Real
//! operator and receiver binaries, the Kubernetes API and FusionAuth
//! emulators, a sink service.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fusionhook_tests::fusionauth_emulator::DEFAULT_TENANT_ID;
use fusionhook_tests::stack::{Stack, eventually};
use fusionhook_tests::todo::{TodoService, TodoStore};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "backfill-global-api-key";
const WAIT: Duration = Duration::from_secs(60);
/// `spec.backfill.intervalSeconds` in these scenarios.
const INTERVAL: u64 = 10;
/// `spec.backfill.callBudget`: fewer than one pass over everything needs,
/// so the backlog takes two passes.
const BUDGET: u64 = 5;
const PAGE: u64 = 100;

fn tenant() -> Uuid {
    Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()
}

/// A stack, a sink service and namespace `team` with the API key.
async fn start() -> (Stack, Arc<TodoStore>, TodoService) {
    let stack = Stack::start(KEY).await.unwrap();
    let sink = TodoStore::with(&[]);
    let service = TodoService::start(sink.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    stack.namespace_with_api_key("team").unwrap();
    (stack, sink, service)
}

/// `team/hook`: user.create, user.delete and user.registration.create
/// posted to the sink, backfill every [`INTERVAL`] s.
fn create_hook(stack: &Stack, sink: &TodoService, store: Value) {
    let spec = json!({
        "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "fusionauth-api-key", "key": "api-key"}},
        "events": ["user.create", "user.delete", "user.registration.create"],
        "receiver": {"replicas": 1, "store": store},
        "routes": [{"name": "sink", "events": ["*"], "http": {"method": "POST", "url": format!("http://{}/sink", sink.addr), "body": "event"}}],
        "backfill": {"enabled": true, "intervalSeconds": INTERVAL, "pageSize": PAGE, "callBudget": BUDGET},
    });
    let object = json!({"apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook", "metadata": {"name": "hook"}, "spec": spec});
    stack.create("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", object).unwrap();
}

fn resource(stack: &Stack) -> Value {
    stack.kube.get("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", "hook").unwrap_or_default()
}

async fn ready(stack: &Stack) -> bool {
    eventually(WAIT, || stack.condition("team", "hook", "Ready").is_some_and(|c| c.0 == "True")).await
}

/// The tenant switches: user.create and user.delete at level None (fire and
/// forget), user.registration.create at AbsoluteMajority with a second
/// webhook that always fails, so each of those is rolled back.
async fn switches_and_a_vetoing_webhook(stack: &Stack) {
    {
        let mut state = stack.fusionauth.state();
        let events = &mut state.tenants.get_mut(&tenant()).unwrap()["eventConfiguration"]["events"];
        for event in ["user.create", "user.delete"] {
            events[event] = json!({"enabled": true, "transactionType": "None"});
        }
        events["user.registration.create"] = json!({"enabled": true, "transactionType": "AbsoluteMajority"});
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let veto = json!({"webhook": {"url": format!("http://{closed}/veto"), "global": true, "connectTimeout": 500, "readTimeout": 500, "eventsEnabled": {"user.registration.create": true}}});
    let answer = reqwest::Client::new()
        .post(format!("{}/api/webhook", stack.fusionauth_url()))
        .header("authorization", KEY)
        .json(&veto)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    assert!(status.is_success(), "{status}: {}", answer.text().await.unwrap_or_default());
}

/// What FusionAuth raised while the receivers were down.
struct Raised {
    committed: Vec<String>,
    rolled_back: Vec<String>,
}

/// `n` user.create and `n` user.delete (committed, never delivered) and
/// `vetoed` user.registration.create (rolled back).
async fn raise_while_down(stack: &Stack, n: usize, vetoed: usize) -> Raised {
    let mut raised = Raised { committed: Vec::new(), rolled_back: Vec::new() };
    for i in 0..n {
        let user = format!("6c0e5b2a-0000-4000-8000-{i:012}");
        for kind in ["user.create", "user.delete"] {
            let report = stack.fusionauth.raise(Some(tenant()), json!({"type": kind, "user": {"id": user}})).await.unwrap();
            assert!(!report.vetoed && report.webhooks.iter().all(|d| !d.succeeded && d.attempts.len() == 1), "{report:?}");
            raised.committed.push(report.event["id"].as_str().unwrap().to_owned());
        }
    }
    for i in 0..vetoed {
        let event = json!({"type": "user.registration.create", "user": {"id": format!("6c0e5b2a-0000-4000-8000-{i:012}")}, "registration": {"applicationId": Uuid::nil()}});
        let report = stack.fusionauth.raise(Some(tenant()), event).await.unwrap();
        assert!(report.vetoed, "{report:?}");
        raised.rolled_back.push(report.event["id"].as_str().unwrap().to_owned());
    }
    raised
}

/// The largest count of FusionAuth Event Log calls (system configuration
/// and search) in any [`INTERVAL`] window since `since`, sampled each second.
struct CallMeter {
    samples: Vec<(Instant, u64)>,
}

fn event_log_calls(stack: &Stack) -> u64 {
    stack
        .fusionauth
        .calls()
        .iter()
        .filter(|(k, _)| k.contains("/api/system-configuration") || k.contains("/api/system/webhook-event-log/search"))
        .map(|(_, n)| n)
        .sum()
}

impl CallMeter {
    fn most_per_interval(&self) -> u64 {
        let window = Duration::from_secs(INTERVAL) - Duration::from_millis(500);
        let mut most = 0;
        for (i, (at, n)) in self.samples.iter().enumerate() {
            let later = self.samples[i..].iter().take_while(|(t, _)| t.duration_since(*at) <= window).last();
            most = most.max(later.map_or(0, |(_, m)| m - n));
        }
        most
    }
}

/// Checks the outcome: each committed event reached the sink exactly once
/// within `limit`, no rolled-back one did.
async fn every_committed_event_once(sink: &TodoStore, raised: &Raised, limit: Duration, stack: &Stack) -> CallMeter {
    let mut meter = CallMeter { samples: Vec::new() };
    let deadline = Instant::now() + limit;
    loop {
        meter.samples.push((Instant::now(), event_log_calls(stack)));
        let got = sink.event_counts();
        if raised.committed.iter().all(|id| got.contains_key(id)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let got = sink.event_counts();
    let missing: Vec<_> = raised.committed.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of {} committed events never reached the sink", missing.len(), raised.committed.len());
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events the sink got more than once: {twice:?}");
    let replayed: Vec<_> = raised.rolled_back.iter().filter(|id| got.contains_key(*id)).collect();
    assert!(replayed.is_empty(), "rolled-back events handed over: {replayed:?}");
    meter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_events_missed_while_every_receiver_was_down_arrive_once_and_rolled_back_ones_never() {
    let (mut stack, sink, service) = start().await;
    stack.start_operator("op-a", "2s").unwrap();
    create_hook(&stack, &service, json!({"type": "none"}));
    assert!(ready(&stack).await, "{}", resource(&stack));
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "BackfillAvailable") == Some(("True".into(), "Available".into()))).await,
        "{}",
        resource(&stack)
    );
    switches_and_a_vetoing_webhook(&stack).await;

    stack.kubelet.stop_namespace("team");
    let raised = raise_while_down(&stack, 250, 20).await;
    assert!(sink.event_counts().is_empty());
    stack.kubelet.start_namespace("team");
    assert!(ready(&stack).await, "{}", resource(&stack));
    let back = Instant::now();

    // One pass reads at most BUDGET - 1 pages: the 520 entries take two.
    let meter = every_committed_event_once(&sink, &raised, Duration::from_secs(2 * INTERVAL + 5), &stack).await;
    let took = back.elapsed();
    let most = meter.most_per_interval();
    assert!(most <= BUDGET, "at most {BUDGET} FusionAuth calls per interval, saw {most}");
    let handed_over = |stack: &Stack| resource(stack)["status"]["backfill"]["handedOver"].as_u64();
    assert!(eventually(WAIT, || handed_over(&stack) == Some(raised.committed.len() as u64)).await, "{}", resource(&stack));
    let notes = |stack: &Stack| -> Vec<String> {
        stack
            .kube
            .list("events.k8s.io", "v1", "events", Some("team"))
            .iter()
            .filter(|e| e["reason"] == "BackfillHandedOver")
            .filter_map(|e| e["note"].as_str().map(str::to_owned))
            .collect()
    };
    // One Event per pass that handed something over (kube-rs publishes a
    // repeat as a series of the first): the budget made it two passes, a
    // cursor carrying the second on from where the first stopped.
    let passes = |stack: &Stack| -> u64 {
        stack
            .kube
            .list("events.k8s.io", "v1", "events", Some("team"))
            .iter()
            .filter(|e| e["reason"] == "BackfillHandedOver")
            .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    assert!(eventually(WAIT, || passes(&stack) >= 2).await, "the backlog took more than one pass: {:?}", notes(&stack));
    let events = notes(&stack);
    let first: usize = events[0].strip_prefix("handed ").and_then(|n| n.split(' ').next()?.parse().ok()).unwrap_or(0);
    assert_eq!(first as u64, (BUDGET - 1) * PAGE, "the first pass read {BUDGET} - 1 pages: {events:?}");
    let handed = stack.operators[0].metric("fusionhook_operator_backfill_events_total{outcome=\"handed_over\"}").await;
    let rolled_back = stack.operators[0].metric("fusionhook_operator_backfill_events_total{outcome=\"rolled_back\"}").await;
    assert_eq!((handed as usize, rolled_back as usize), (raised.committed.len(), raised.rolled_back.len()));
    println!(
        "backfill: raised {} ({} committed, {} rolled back), delivered {} distinct, 0 duplicates, at most {most} FusionAuth calls per {INTERVAL} s interval (budget {BUDGET}), all delivered {:.1} s after the receivers were back; events: {events:?}",
        raised.committed.len() + raised.rolled_back.len(),
        raised.committed.len(),
        raised.rolled_back.len(),
        sink.event_counts().len(),
        took.as_secs_f64(),
    );

    // Nothing new: later passes hand over nothing and publish no Event.
    let before = passes(&stack);
    tokio::time::sleep(Duration::from_secs(INTERVAL + 2)).await;
    assert_eq!(passes(&stack), before, "no Event when there was nothing to do");
    assert_eq!(sink.event_counts().values().sum::<usize>(), raised.committed.len());
    // Every call the operator made is one the chart's RBAC grants (the ingest through the pod proxy too).
    let ungranted: Vec<String> = stack
        .kube
        .requests()
        .into_iter()
        .filter(|r| !r.user_agent.starts_with("kubectl"))
        .filter(|r| !fusionhook_operator::rbac::granted(&r.method, &r.path, &r.query))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(ungranted, Vec::<String>::new());
    stack.operators.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_change_in_the_middle_of_a_pass_skips_nothing_and_repeats_nothing_the_receiver_did_not_deduplicate() {
    let (mut stack, sink, service) = start().await;
    stack.start_operator("op-a", "2s").unwrap();
    assert!(eventually(WAIT, || stack.lease_holder().as_deref() == Some("op-a")).await);
    stack.start_operator("op-b", "2s").unwrap();
    create_hook(&stack, &service, json!({"type": "embedded", "size": "1Gi"}));
    assert!(ready(&stack).await, "{}", resource(&stack));
    switches_and_a_vetoing_webhook(&stack).await;

    stack.kubelet.stop_namespace("team");
    let raised = raise_while_down(&stack, 250, 10).await;
    // Each hand-over waits for the sink a little (store none would; here the
    // embedded store answers at once and delivers after), so slow the sink
    // to keep deliveries behind the hand-overs.
    sink.delay_by(Some(Duration::from_millis(2)));
    stack.kubelet.start_namespace("team");
    let ingests = |stack: &Stack| stack.kube.requests().iter().filter(|r| r.path.ends_with("/proxy/v1/ingest")).count();
    assert!(eventually(WAIT, || ingests(&stack) >= 100).await, "the leader starts handing over");
    let at_kill = ingests(&stack);
    let leader = stack.lease_holder().unwrap();
    let index = stack.operators.iter().position(|o| o.identity == leader).unwrap();
    stack.operators[index].kill();
    assert!(at_kill < raised.committed.len(), "killed in the middle of the first pass ({at_kill} handed over)");
    assert!(eventually(WAIT, || stack.lease_holder().is_some_and(|h| h != leader)).await, "the standby takes over");

    every_committed_event_once(&sink, &raised, Duration::from_secs(3 * INTERVAL + 10), &stack).await;
    let handed = ingests(&stack);
    assert!(
        handed > raised.committed.len(),
        "the new leader handed over again what the old one had ({handed}): the receiver deduplicated it"
    );
    println!(
        "backfill with a leader change: {} committed, {} rolled back, leader killed after {at_kill} hand-overs, {handed} hand-overs in all ({} again, deduplicated by the receiver), each committed event delivered once",
        raised.committed.len(),
        raised.rolled_back.len(),
        handed - raised.committed.len(),
    );
    stack.operators.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_log_that_is_off_or_forbidden_is_a_condition_and_costs_one_call_per_interval() {
    let (mut stack, sink, service) = start().await;
    // As FusionAuth installed fresh since 1.57.0: the log off, deletion on at 30 days.
    stack.fusionauth.configure_event_log(false, Some(30));
    stack.start_operator("op-a", "2s").unwrap();
    create_hook(&stack, &service, json!({"type": "none"}));
    assert!(ready(&stack).await, "the resource is Ready without the Event Log: {}", resource(&stack));
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "BackfillAvailable") == Some(("False".into(), "EventLogOff".into()))).await,
        "{}",
        resource(&stack)
    );
    let message =
        resource(&stack)["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "BackfillAvailable").unwrap()["message"]
            .to_string();
    assert!(message.contains("webhookEventLogConfiguration.enabled"), "{message}");
    let before = stack.fusionauth.calls();
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL)).await;
    let after = stack.fusionauth.calls();
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let configuration = delta("GET /api/system-configuration");
    assert!((2..=4).contains(&configuration), "one call per {INTERVAL} s interval, {configuration} in {} s", 3 * INTERVAL);
    assert_eq!(delta("POST /api/system/webhook-event-log/search"), 0);
    assert_eq!(stack.condition("team", "hook", "Ready").unwrap().0, "True");

    // Switched on (deletion still at 30 days, longer than the lookback): the next pass finds it.
    stack.fusionauth.configure_event_log(true, Some(30));
    assert!(
        eventually(Duration::from_secs(2 * INTERVAL), || stack
            .condition("team", "hook", "BackfillAvailable")
            .is_some_and(|c| c.0 == "True"))
        .await
    );

    // A key without permission for the Event Log endpoints.
    stack.fusionauth.add_limited_api_key("limited-key", &["/api/webhook", "/api/webhook/{id}", "/api/webhook/search", "/api/key/{id}"]);
    stack.patch("", "v1", "secrets", "team", "fusionauth-api-key", &json!({"data": {"api-key": base64("limited-key")}})).unwrap();
    assert!(
        eventually(WAIT, || stack.condition("team", "hook", "BackfillAvailable") == Some(("False".into(), "EventLogForbidden".into())))
            .await,
        "{}",
        resource(&stack)
    );
    assert!(sink.event_counts().is_empty());
    stack.operators.clear();
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Issue 24, item 2. Before: the receiver's admin API refused an event over
/// its body limit with a plain-text 413, which the operator read as "admin
/// API unreachable": every later pass stopped at that entry and an event
/// missed afterwards was never handed over. Now the refusal is final: given
/// up with a Warning Event and a count, and the pass goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_the_receiver_can_never_take_is_given_up_and_the_ones_after_it_are_handed_over() {
    let (mut stack, sink, service) = start().await;
    stack.start_operator("op-a", "2s").unwrap();
    create_hook(&stack, &service, json!({"type": "none"}));
    assert!(ready(&stack).await, "{}", resource(&stack));
    switches_and_a_vetoing_webhook(&stack).await;

    stack.kubelet.stop_namespace("team");
    // Over the receiver's default maxBodyBytes (1 MiB).
    let pad = "x".repeat(1024 * 1024 + 1);
    let big = json!({"type": "user.create", "user": {"id": "6c0e5b2a-0000-4000-8000-00000000b16e", "data": {"pad": pad}}});
    let report = stack.fusionauth.raise(Some(tenant()), big).await.unwrap();
    let big_id = report.event["id"].as_str().unwrap().to_owned();
    let raised = raise_while_down(&stack, 3, 0).await;
    stack.kubelet.start_namespace("team");
    assert!(ready(&stack).await, "{}", resource(&stack));

    every_committed_event_once(&sink, &raised, Duration::from_secs(3 * INTERVAL), &stack).await;
    assert!(!sink.event_counts().contains_key(&big_id));
    let gave_up = |stack: &Stack| -> Vec<String> {
        stack
            .kube
            .list("events.k8s.io", "v1", "events", Some("team"))
            .iter()
            .filter(|e| e["reason"] == "BackfillGaveUp" && e["type"] == "Warning")
            .filter_map(|e| e["note"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(eventually(WAIT, || gave_up(&stack).iter().any(|n| n.contains(&big_id))).await, "{:?}", gave_up(&stack));
    let refused = stack.operators[0].metric("fusionhook_operator_backfill_events_total{outcome=\"refused\"}").await;
    assert_eq!(refused as u64, 1);
    assert_eq!(stack.condition("team", "hook", "BackfillAvailable").unwrap().0, "True", "{}", resource(&stack));
    stack.operators.clear();
}

/// Every request a stand-in pod got: (path, whether it carried an admin token, body).
type Seen = Arc<std::sync::Mutex<Vec<(String, bool, String)>>>;

/// A server that answers like nothing in particular and records what it
/// got; once `huge` is set, its answers are 64 MiB.
async fn rogue_pod(huge: Arc<std::sync::atomic::AtomicBool>) -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (record, huge) = (record.clone(), huge.clone());
        async move {
            let path = request.uri().path().to_owned();
            let token = request.headers().contains_key("x-fusionhook-token") || request.headers().contains_key("authorization");
            let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
            record.lock().unwrap().push((path, token, String::from_utf8_lossy(&body).into_owned()));
            // It claims to hold the token, with a made-up proof.
            let pad = if huge.load(std::sync::atomic::Ordering::SeqCst) { "x".repeat(64 << 20) } else { String::new() };
            axum::Json(json!({"pod": "aaa-rogue", "proofs": ["00", "ab".repeat(32)], "outcome": "handled", "pad": pad}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_that_only_carries_the_receivers_labels_is_never_shown_a_token_or_an_event() {
    let (mut stack, sink, service) = start().await;
    stack.start_operator("op-a", "2s").unwrap();
    create_hook(&stack, &service, json!({"type": "none"}));
    assert!(ready(&stack).await, "{}", resource(&stack));
    switches_and_a_vetoing_webhook(&stack).await;

    // Another pod in the namespace with the receiver pods' labels, ready,
    // first by name (the backfill tries pods in name order).
    let deployment = stack.kube.get("apps", "v1", "deployments", "team", "hook-receiver").unwrap();
    let labels = deployment["spec"]["template"]["metadata"]["labels"].clone();
    let huge = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, seen) = rogue_pod(huge.clone()).await;
    let endpoint = fusionhook_tests::kube_emulator::Endpoint {
        namespace: "team".into(),
        pod: "aaa-rogue".into(),
        labels: serde_json::from_value(labels.clone()).unwrap(),
        // Only the admin port: FusionAuth's own deliveries through the
        // Service are not what this is about.
        ports: vec![("admin".into(), 8081, addr)],
    };
    stack.kube.set_endpoint(endpoint);
    stack.kube.report_pod("team", "aaa-rogue", &labels, &serde_json::Value::Null, true, 0);

    stack.kubelet.stop_namespace("team");
    let raised = raise_while_down(&stack, 2, 0).await;
    stack.kubelet.start_namespace("team");
    assert!(ready(&stack).await, "{}", resource(&stack));
    // The real receiver got every event; the impostor was asked for a proof, and nothing else.
    every_committed_event_once(&sink, &raised, Duration::from_secs(3 * INTERVAL), &stack).await;
    let check = |raised: &Raised| {
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty(), "the impostor was asked to prove itself");
        for (path, token, body) in &seen {
            assert_eq!(path, "/v1/prove", "{seen:?}");
            assert!(!token, "no token was sent to it: {seen:?}");
            assert!(raised.committed.iter().all(|id| !body.contains(id.as_str())), "no event was sent to it: {body}");
        }
    };
    check(&raised);
    // The plugin too: `send` hands its event to a pod that proved itself
    // (the impostor is first by name and fails), never through the Service.
    let plugin = fusionhook_tests::binaries::built("fusionhook-cli", "kubectl-fusionhook").unwrap();
    let sent = std::process::Command::new(plugin)
        .args(["send", "hook", "-n", "team", "--event", "user.create", "-o", "json"])
        .env("KUBECONFIG", &stack.kubeconfig)
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&sent.stdout).unwrap_or_default();
    assert_eq!(answer["status"], 200, "{answer} {}", String::from_utf8_lossy(&sent.stderr));
    check(&raised);

    // Issue 24 item 6: it answers 64 MiB. The operator reads at most 1 MiB
    // of it (its peak memory does not grow by the answer), skips it, and
    // hands the next missed events to the real receiver.
    let peak_before = stack.operators[0].peak_rss_kib();
    huge.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked_before = seen.lock().unwrap().len();
    stack.kubelet.stop_namespace("team");
    let more = raise_while_down(&stack, 1, 0).await;
    stack.kubelet.start_namespace("team");
    assert!(ready(&stack).await, "{}", resource(&stack));
    every_committed_event_once(&sink, &more, Duration::from_secs(3 * INTERVAL), &stack).await;
    assert!(seen.lock().unwrap().len() > asked_before, "the impostor was asked again");
    check(&more);
    let grown = stack.operators[0].peak_rss_kib().saturating_sub(peak_before);
    assert!(grown < 32 * 1024, "the operator's peak memory grew by {grown} KiB reading a 64 MiB answer");
    assert!(stack.operators[0].running(), "the operator is alive");
    stack.operators.clear();
}
