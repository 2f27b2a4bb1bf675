//! Durable delivery with the real binary and the embedded store: a kill -9
//! under load loses nothing answered 200; a sink down past maxAttempts
//! leaves a dead delivery that a replay through the admin API delivers;
//! outbound calls carry an idempotency key and a Standard Webhooks
//! signature that the official verifier accepts.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use fusionhook_tests::events;
use serde_json::json;

mod common;

use common::Receiver;
use common::sink::{DOWN, FAIL_HALF, OK, REFUSE, Sink, admin, config, config_with, id, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_load_loses_nothing_that_was_answered_200() {
    kill_9_under_load("embedded", |dir| format!("store: {{type: embedded, path: \"{}\"}}", dir.join("store").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_load_loses_nothing_that_was_answered_200_with_postgres() {
    let pg = fusionhook_tests::postgres::Postgres::start();
    let url = pg.url();
    kill_9_under_load("postgres", move |dir| {
        std::fs::write(dir.join("pg-url"), &url).unwrap();
        format!("store: {{type: postgres, urlFile: \"{}\"}}", dir.join("pg-url").display())
    })
    .await;
}

/// 16 senders, a sink that fails every other call; the receiver is killed
/// (SIGKILL) once 600 events were answered 200, then restarted on the same store.
pub async fn kill_9_under_load(label: &str, store: impl Fn(&std::path::Path) -> String) {
    let (sink, sink_addr) = Sink::start().await;
    sink.set(FAIL_HALF);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_with(dir.path(), &store(dir.path()), sink_addr, "    retry: {scheduleMs: [20]}\n    concurrency: 8");
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();

    // 16 senders; the receiver is killed once 600 events were answered 200.
    const EVENTS: usize = 3000;
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let url = receiver.url("/events");
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, answered, next, url) = (client.clone(), answered.clone(), next.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= EVENTS {
                    return;
                }
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("authorization", "API-KEY")
                    .body(events::user_delete(&id(i), "00000000-0000-0001-0000-00000000a11c"))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::OK => {
                        answered.lock().unwrap().insert(id(i));
                    }
                    // Killed: the connection broke; FusionAuth would record a failure.
                    _ => return,
                }
            }
        }));
    }
    wait_for("600 answers", Duration::from_secs(60), async || answered.lock().unwrap().len() >= 600).await;
    let dir = receiver.kill_9();
    for sender in senders {
        sender.await.unwrap();
    }
    let answered_200 = answered.lock().unwrap().clone();
    let delivered_at_kill = sink.delivered().len();

    // Restarted on the same volume: everything answered 200 reaches the sink.
    let receiver = Receiver::start_in(dir, &yaml);
    wait_for("every event answered 200 to be delivered", Duration::from_secs(120), async || {
        let delivered = sink.delivered();
        answered_200.iter().all(|id| delivered.contains_key(id))
    })
    .await;
    // Let anything left over finish, then count.
    wait_for("an empty backlog", Duration::from_secs(60), async || {
        admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await.1["pending"] == 0
    })
    .await;
    let delivered = sink.delivered();
    let duplicates: usize = delivered.values().map(|n| n - 1).sum();
    let lost = answered_200.iter().filter(|id| !delivered.contains_key(*id)).count();
    println!(
        "kill -9 ({label}): answered 200 {}, delivered {} ({} before the kill), duplicates {duplicates}, lost {lost}, sink calls {}",
        answered_200.len(),
        delivered.len(),
        delivered_at_kill,
        sink.calls().len()
    );
    assert_eq!(lost, 0);
    // A delivery runs again only when its outcome was not committed at the
    // kill: at most the route's concurrency (8) in flight plus the outcomes
    // of one commit group.
    assert!(duplicates <= 64, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_past_max_attempts_goes_dead_and_a_replay_delivers_it_once() {
    dead_and_replay(|dir| format!("store: {{type: embedded, path: \"{}\"}}", dir.join("store").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_past_max_attempts_goes_dead_and_a_replay_delivers_it_once_with_postgres() {
    let pg = fusionhook_tests::postgres::Postgres::start();
    let url = pg.url();
    dead_and_replay(move |dir| {
        std::fs::write(dir.join("pg-url"), &url).unwrap();
        format!("store: {{type: postgres, urlFile: \"{}\"}}", dir.join("pg-url").display())
    })
    .await;
}

async fn dead_and_replay(store: impl Fn(&std::path::Path) -> String) {
    let (sink, sink_addr) = Sink::start().await;
    sink.set(DOWN);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_with(dir.path(), &store(dir.path()), sink_addr, "    retry: {maxAttempts: 3, scheduleMs: [20]}");
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let event = events::user_delete(&id(1), "00000000-0000-0001-0000-00000000a11c");
    let (status, _) = receiver.post(&client, &[("authorization", "API-KEY".into())], event.clone()).await;
    assert_eq!(status, StatusCode::OK, "accepted while the sink is down");

    wait_for("a dead delivery", Duration::from_secs(30), async || {
        admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await.1["dead"] == 1
    })
    .await;
    let (status, dead) = admin(&client, &receiver, reqwest::Method::GET, "/v1/deliveries?state=dead", None).await;
    assert_eq!(status, StatusCode::OK);
    let delivery = &dead["deliveries"][0];
    assert_eq!(delivery["eventId"], id(1));
    assert_eq!(delivery["attempts"], 3);
    assert!(delivery["lastError"].as_str().unwrap().contains("answered 503"), "{delivery}");
    assert!(delivery["lastError"].as_str().unwrap().contains("gave up after 3 attempt(s)"), "{delivery}");
    assert_eq!(sink.calls().len(), 3);

    // The admin API wants its token, and is not on FusionAuth's port.
    let no_token = client.get(format!("http://{}/v1/stats", receiver.admin.unwrap())).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let wrong = client.get(format!("http://{}/v1/stats", receiver.admin.unwrap())).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong =
        client.get(format!("http://{}/v1/stats", receiver.admin.unwrap())).header("x-fusionhook-token", "nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // The API server's proxy drops Authorization: the token's own header works too.
    let proxied = client
        .get(format!("http://{}/v1/stats", receiver.admin.unwrap()))
        .header("x-fusionhook-token", "admin-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
    let main_port = client.get(receiver.url("/v1/stats")).bearer_auth("admin-secret-token").send().await.unwrap();
    assert_eq!(main_port.status(), StatusCode::NOT_FOUND);

    // A dry run says what would be replayed and changes nothing.
    sink.set(OK);
    let (_, dry) = admin(&client, &receiver, reqwest::Method::POST, "/v1/replay", Some(json!({"state": "dead", "dryRun": true}))).await;
    assert_eq!(dry["ids"], json!([delivery["id"]]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.calls().len(), 3);
    let (_, replayed) = admin(&client, &receiver, reqwest::Method::POST, "/v1/replay", Some(json!({"state": "dead"}))).await;
    assert_eq!(replayed["ids"], json!([delivery["id"]]));
    wait_for("the replayed delivery", Duration::from_secs(30), async || sink.delivered().get(&id(1)) == Some(&1)).await;
    // Its outcome is committed just after the sink answered.
    wait_for("the outcome", Duration::from_secs(30), async || {
        admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await.1["delivered"] == 1
    })
    .await;
    let (_, stats) = admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await;
    assert_eq!((stats["pending"].clone(), stats["dead"].clone(), stats["delivered"].clone()), (json!(0), json!(0), json!(1)), "{stats}");
    let (_, view) = admin(&client, &receiver, reqwest::Method::GET, &format!("/v1/events/{}", id(1)), None).await;
    assert_eq!(view["deliveries"][0]["totalAttempts"], 4);
    assert_eq!(view["body"]["event"]["id"], id(1));

    // Every attempt carried the same idempotency key.
    let keys: HashSet<String> = sink.calls().iter().map(|c| c.key.clone()).collect();
    assert_eq!(keys.len(), 1);
    assert!(keys.iter().next().unwrap().starts_with("fh_"));

    // FusionAuth's retry of the same event, even after a restart: nothing runs again.
    let dir = receiver.kill_9();
    let receiver = Receiver::start_in(dir, &yaml);
    let (status, _) = receiver.post(&client, &[("authorization", "API-KEY".into())], event).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().get(&id(1)), Some(&1));

    // A 4xx is not retried: dead after one attempt, and the message says why.
    sink.set(REFUSE);
    let (status, _) = receiver.post(&client, &[("authorization", "API-KEY".into())], events::user_delete(&id(2), "u-2")).await;
    assert_eq!(status, StatusCode::OK);
    wait_for("a dead delivery", Duration::from_secs(30), async || {
        admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await.1["dead"] == 1
    })
    .await;
    let (_, dead) = admin(&client, &receiver, reqwest::Method::GET, &format!("/v1/deliveries?state=dead&eventId={}", id(2)), None).await;
    assert_eq!(dead["deliveries"][0]["attempts"], 1);
    assert!(dead["deliveries"][0]["lastError"].as_str().unwrap().contains("not retried"), "{dead}");
    // Discarded, it is gone.
    let (_, discarded) = admin(&client, &receiver, reqwest::Method::POST, "/v1/discard", Some(json!({"state": "dead"}))).await;
    assert_eq!(discarded["ids"].as_array().unwrap().len(), 1);
    let (_, stats) = admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await;
    assert_eq!(stats["dead"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_calls_verify_with_the_official_standard_webhooks_library() {
    let (sink, sink_addr) = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // whsec_ + base64 of 24 random-looking bytes.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    std::fs::write(dir.path().join("sign-secret"), secret).unwrap();
    let sign = format!("      sign: {{secretFile: \"{}\"}}", dir.path().join("sign-secret").display());
    let yaml = config(dir.path(), sink_addr, "")
        .replace("    http: {method: POST, url: ", "    http:\n      method: POST\n      url: ")
        .replace("/hook\", timeoutMs: 2000}", &format!("/hook\"\n{sign}"));
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let (status, _) = receiver.post(&client, &[("authorization", "API-KEY".into())], events::user_delete(&id(7), "u-7")).await;
    assert_eq!(status, StatusCode::OK);
    wait_for("the delivery", Duration::from_secs(30), async || !sink.calls().is_empty()).await;
    let call = sink.calls()[0].clone();
    let header = |name: &str| call.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), call.key);

    let python = &fusionhook_tests::tools::tools().python;
    let verify = |body: &[u8], secret: &str| {
        let script = "import sys, json\nfrom standardwebhooks.webhooks import Webhook\nh = json.loads(sys.argv[2])\nWebhook(sys.argv[1]).verify(sys.stdin.buffer.read(), h)\n";
        let headers = json!({"webhook-id": header("webhook-id"), "webhook-timestamp": header("webhook-timestamp"), "webhook-signature": header("webhook-signature")});
        let mut child = std::process::Command::new(python)
            .args(["-c", script, secret, &headers.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), body).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = verify(&call.body, secret);
    assert!(ok, "the official verifier refused fusionhook's signature: {stderr}");
    // The verifier is not a rubber stamp: a changed body or another secret fails.
    let mut changed = call.body.to_vec();
    changed[10] ^= 1;
    assert!(!verify(&changed, secret).0);
    assert!(!verify(&call.body, "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=").0);
}

/// A tmpfs of its own (root only, as the tests run); unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status();
        assert!(status.is_ok_and(|s| s.success()), "mounting a tmpfs needs root (the tests run as root in CI)");
        Self(path.to_owned())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a_u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        for size in [4096, 512, 1] {
            while file.write_all(&chunk[..size]).is_ok() {}
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue 24, item 1. Before: once a commit failed for lack of space every
/// later write failed, also after the space was freed, and a delivery the
/// service had accepted, whose outcome could not be recorded, was sent
/// again at once, thousands of times. Now: the store recovers by itself,
/// the outcome is kept until it can be committed, and the delivery is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_neither_kills_the_store_nor_sends_a_delivery_again() {
    let (sink, sink_addr) = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("store"), "16m");
    // The service may take 10 s; a retry would come a minute later.
    let yaml = config(dir.path(), sink_addr, "    retry: {scheduleMs: [60000]}").replace("timeoutMs: 2000", "timeoutMs: 10000");
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let auth = [("authorization", "API-KEY".to_owned())];

    // A delivery under way while the disk fills: the service answers in 3 s.
    sink.delay(Duration::from_secs(3));
    let first = id(1);
    assert_eq!(receiver.post(&client, &auth, events::user_delete(&first, "u-1")).await.0, StatusCode::OK);
    wait_for("the delivery to start", Duration::from_secs(10), async || sink.started() == 1).await;
    let filler = disk.fill();
    // Events with large bodies until a commit fails for lack of space.
    let pad = "x".repeat(200 * 1024);
    let mut refused = 0;
    for i in 2..200 {
        let body = events::event("user.delete", &id(i), json!({"user": {"id": "u-2", "data": {"pad": pad}}}));
        if receiver.post(&client, &auth, body).await.0 == StatusCode::INTERNAL_SERVER_ERROR {
            refused = i;
            break;
        }
    }
    assert!(refused > 0, "no commit failed on a full disk");
    sink.delay(Duration::ZERO);
    // The first delivery's answer (204/200) comes while nothing can be committed.
    wait_for("the first delivery's answer", Duration::from_secs(10), async || !sink.calls().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.started(), 1, "a delivery whose outcome could not be recorded was sent again");
    let health = client.get(receiver.url("/healthz")).send().await.unwrap().status();
    assert_eq!(health, StatusCode::OK, "liveness: a full disk is not cured by a restart");
    wait_for("readiness to fail", Duration::from_secs(15), async || {
        client.get(receiver.url("/readyz")).send().await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // What the operator reads to name the condition StoreFull.
    let (_, stats) = admin(&client, &receiver, reqwest::Method::GET, "/v1/stats", None).await;
    let problem = stats["storeProblem"].as_str().unwrap_or_default();
    assert!(problem.contains("No space left on device") || problem.contains("os error 28"), "{stats}");

    // Space comes back: the store writes again without a restart.
    std::fs::remove_file(filler).unwrap();
    let later = id(500);
    wait_for("an event to be accepted again", Duration::from_secs(20), async || {
        receiver.post(&client, &auth, events::user_delete(&later, "u-3")).await.0 == StatusCode::OK
    })
    .await;
    wait_for("readiness to come back", Duration::from_secs(15), async || {
        client.get(receiver.url("/readyz")).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    wait_for("both deliveries recorded", Duration::from_secs(15), async || {
        let (_, view) = admin(&client, &receiver, reqwest::Method::GET, &format!("/v1/events/{first}"), None).await;
        let (_, later_view) = admin(&client, &receiver, reqwest::Method::GET, &format!("/v1/events/{later}"), None).await;
        view["deliveries"][0]["state"] == "delivered" && later_view["deliveries"][0]["state"] == "delivered"
    })
    .await;
    let (_, view) = admin(&client, &receiver, reqwest::Method::GET, &format!("/v1/events/{first}"), None).await;
    assert_eq!(view["deliveries"][0]["totalAttempts"], 1, "{view}");
    assert_eq!(sink.delivered().get(&first), Some(&1), "the first event went out once");
    assert_eq!(sink.delivered().get(&later), Some(&1));
}

/// Issue 24, item 2: the admin API answered a body over the limit with
/// axum's plain-text 413, which the operator's backfill read as "admin API
/// unreachable" and stopped at for good. Every refusal is JSON now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_refusal_is_json_like_the_public_port() {
    let (_sink, sink_addr) = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("maxBodyBytes: 2048\n{}", config(dir.path(), sink_addr, ""));
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let big = events::event("user.delete", &id(1), json!({"user": {"id": "u", "data": {"pad": "x".repeat(4096)}}}));
    let public = receiver.post(&client, &[("authorization", "API-KEY".to_owned())], big.clone()).await;
    assert_eq!(public.0, StatusCode::PAYLOAD_TOO_LARGE);
    let admin_url = |path: &str| format!("http://{}{path}", receiver.admin.unwrap());
    let cases = [
        (
            client.post(admin_url("/v1/ingest")).header("content-type", "application/json").body(big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "[tooLarge]",
        ),
        (client.get(admin_url("/v1/nothing-here")), StatusCode::NOT_FOUND, "[notFound]"),
        (client.delete(admin_url("/v1/stats")), StatusCode::METHOD_NOT_ALLOWED, "[methodNotAllowed]"),
    ];
    for (request, status, code) in cases {
        let response = request.bearer_auth("admin-secret-token").send().await.unwrap();
        assert_eq!(response.status(), status);
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(body["errors"][0]["code"], code, "{body}");
        assert!(body["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    assert_eq!(public.1["errors"][0]["code"], "[tooLarge]", "the same code on both ports");
}

/// Runs the receiver binary with `config` until it exits (at most 20 s):
/// its exit status and everything it printed.
fn run_to_exit(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String, String) {
    let mut command = std::process::Command::new(common::BIN);
    command.args(args);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(command.output()));
    let output = rx.recv_timeout(Duration::from_secs(20)).expect("still running after 20 s").unwrap();
    (output.status, String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Issue 24, item 11. Before: 64 KiB zeroed in the middle of the store file
/// was a crash loop with no way out, and a zero-length file silently
/// started an empty store. Now both are refused with a message saying what
/// is damaged and how to salvage it, and `--salvage` reads out the events
/// still owed a delivery from what can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_with_a_way_out_and_what_can_be_read_is_salvaged() {
    let (sink, sink_addr) = Sink::start().await;
    sink.set(DOWN);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(dir.path(), sink_addr, "    retry: {scheduleMs: [600000]}");
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let pad = "p".repeat(2048);
    for i in 0..400 {
        let body = events::event("user.delete", &id(i), json!({"user": {"id": format!("u-{i}"), "data": {"pad": pad}}}));
        assert_eq!(receiver.post(&client, &[("authorization", "API-KEY".to_owned())], body).await.0, StatusCode::OK);
    }
    let dir = receiver.kill_9();
    let store = dir.path().join("store");
    let file = store.join("fusionhook.redb");
    let config = dir.path().join("receiver.yaml");

    // Zero 64 KiB in the middle.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64 * 1024].fill(0);
    std::fs::write(&file, &bytes).unwrap();
    let (status, stdout, _) = run_to_exit(&["--config".as_ref(), config.as_os_str()]);
    assert!(!status.success());
    assert!(stdout.contains("is damaged") && stdout.contains("--salvage"), "{stdout}");

    let (status, salvaged, report) = run_to_exit(&["--salvage".as_ref(), store.as_os_str()]);
    assert!(status.code().is_some_and(|c| c <= 1), "{report}");
    let ids: Vec<String> = salvaged
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    let posted: HashSet<String> = (0..400).map(id).collect();
    assert!(ids.iter().all(|i| posted.contains(i)), "only events that were stored");
    assert!(ids.len() >= 200, "most events survive 64 KiB of damage: {} salvaged; {report}", ids.len());
    eprintln!("salvaged {} of 400 events from a store with 64 KiB zeroed: {report}", ids.len());

    // A zero-length file never starts as an empty store.
    std::fs::write(&file, b"").unwrap();
    let (status, stdout, _) = run_to_exit(&["--config".as_ref(), config.as_os_str()]);
    assert!(!status.success());
    assert!(stdout.contains("is empty (0 bytes)"), "{stdout}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "left as it was");
}
