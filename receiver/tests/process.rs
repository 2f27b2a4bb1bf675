//! The real `fusionhook-receiver` binary over real sockets: the seed
//! scenario (FusionAuth's todo clean-up), slow clients, secret rotation,
//! graceful shutdown and config errors at start.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fusionhook_tests::events;
use fusionhook_tests::todo::{TodoService, TodoStore};
use http::{Method, StatusCode};
use serde_json::{Value, json};

mod common;

use common::{BIN, Receiver};
const ALICE: &str = "00000000-0000-0001-0000-00000000a11c";
const BOB: &str = "00000000-0000-0001-0000-000000000b0b";
const CAROL: &str = "00000000-0000-0001-0000-0000000ca201";

async fn deliver(client: &reqwest::Client, receiver: &Receiver, key: &str, body: Vec<u8>) -> (StatusCode, Value) {
    receiver.post(client, &[("authorization", key.to_owned())], body).await
}

fn seed_config(todo: SocketAddr) -> String {
    format!(
        r#"
path: /events
auth:
  authorization: "API-KEY"
routes:
  - name: todo-cleanup
    events: ["user.delete"]
    http:
      method: DELETE
      url: "http://{todo}/users/{{{{event.user.id}}}}/todos"
      timeoutMs: 1500
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_todo_cleanup() {
    let store = TodoStore::with(&[(ALICE, &["buy milk", "call mom"]), (BOB, &["fix bike"]), (CAROL, &["water plants"])]);
    let service = TodoService::start(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let todo_addr = service.addr;
    let receiver = Receiver::start(&seed_config(todo_addr));
    let client = reqwest::Client::new();

    // user.delete for Alice deletes exactly Alice's todos.
    let (status, _) = deliver(&client, &receiver, "API-KEY", events::user_delete("0b9a3a5e-0001-4000-8000-000000000001", ALICE)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(store.todos(ALICE).is_empty());
    assert_eq!(store.todos(BOB), vec!["fix bike"]);

    // Todo service down: 500, nothing lost; FusionAuth's retry after it is back: 200.
    service.stop().await;
    let bob_event = events::user_delete("0b9a3a5e-0002-4000-8000-000000000002", BOB);
    let (status, answer) = deliver(&client, &receiver, "API-KEY", bob_event.clone()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["errors"][0]["code"], "[actionFailed]");
    assert_eq!(store.todos(BOB), vec!["fix bike"]);
    let service = TodoService::start(store.clone(), todo_addr).await.unwrap();
    let (status, _) = deliver(&client, &receiver, "API-KEY", bob_event).await;
    assert_eq!(status, StatusCode::OK);
    assert!(store.todos(BOB).is_empty());

    // A wrong key: 401 with FusionAuth's own error body, nothing deleted.
    let carol_event = events::user_delete("0b9a3a5e-0003-4000-8000-000000000003", CAROL);
    let (status, answer) = deliver(&client, &receiver, "WRONG-KEY", carol_event.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer, json!({"errors": [{"code": "[notAuthorized]"}]}));
    assert_eq!(store.todos(CAROL), vec!["water plants"]);

    // The same event twice deletes once.
    let deletes_before = store.count(&Method::DELETE);
    assert_eq!(deliver(&client, &receiver, "API-KEY", carol_event.clone()).await.0, StatusCode::OK);
    assert_eq!(deliver(&client, &receiver, "API-KEY", carol_event).await.0, StatusCode::OK);
    assert_eq!(store.count(&Method::DELETE) - deletes_before, 1);
    assert!(store.todos(CAROL).is_empty());

    let metrics = client.get(receiver.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fusionhook_receiver_duplicates_total 1"), "{metrics}");
    service.stop().await;
}

/// Reads whatever the server sends until it closes or `limit` passes.
fn read_answer(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_the_receiver_stays_healthy() {
    let receiver = Receiver::start(
        "auth: {authorization: API-KEY}\nbodyTimeoutMs: 1000\nheaderTimeoutMs: 1000\nroutes: [{name: l, events: ['*'], log: {}}]",
    );
    let addr = receiver.addr;
    let answers = tokio::task::spawn_blocking(move || {
        // A body that never finishes.
        let started = Instant::now();
        let mut slow_body = TcpStream::connect(addr).unwrap();
        slow_body
            .write_all(b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: API-KEY\r\ncontent-length: 100\r\n\r\n{\"event\":")
            .unwrap();
        let body_answer = read_answer(&mut slow_body, Duration::from_secs(10));
        let body_took = started.elapsed();

        // Headers that never finish.
        let started = Instant::now();
        let mut slow_headers = TcpStream::connect(addr).unwrap();
        slow_headers.write_all(b"POST /events HTTP/1.1\r\nhost: x\r\n").unwrap();
        let header_answer = read_answer(&mut slow_headers, Duration::from_secs(10));
        (body_answer, body_took, header_answer, started.elapsed())
    })
    .await
    .unwrap();
    let (body_answer, body_took, header_answer, header_took) = answers;
    assert!(body_answer.starts_with("HTTP/1.1 408"), "{body_answer}");
    assert!(body_took < Duration::from_secs(5), "{body_took:?}");
    assert!(!header_answer.contains("200"), "{header_answer}");
    assert!(header_took < Duration::from_secs(5), "connection with unfinished headers closed after {header_took:?}");

    let health = reqwest::get(receiver.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_authorization_secret_takes_effect_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("authorization");
    std::fs::write(&key_file, "OLD-KEY\n").unwrap();
    let yaml = format!(
        "auth: {{authorizationFile: {}, rotationGraceMs: 600}}\nsecretRefreshMs: 100\nroutes: [{{name: l, events: ['*'], log: {{}}}}]",
        key_file.display()
    );
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let event = |n: u32| events::user_delete(&format!("0b9a3a5e-0100-4000-8000-{n:012}"), ALICE);
    assert_eq!(deliver(&client, &receiver, "OLD-KEY", event(1)).await.0, StatusCode::OK);

    std::fs::write(&key_file, "NEW-KEY\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    while deliver(&client, &receiver, "NEW-KEY", event(n)).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the new key is not accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
        n += 1;
    }
    // The replaced key is still accepted for the grace period, then no more.
    assert_eq!(deliver(&client, &receiver, "OLD-KEY", event(1000)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(deliver(&client, &receiver, "OLD-KEY", event(1001)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(deliver(&client, &receiver, "NEW-KEY", event(1002)).await.0, StatusCode::OK);

    // A missing file (the kubelet swapping the Secret) keeps the last value.
    std::fs::remove_file(&key_file).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(deliver(&client, &receiver, "NEW-KEY", event(1003)).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let store = TodoStore::with(&[(ALICE, &["buy milk"])]);
    store.delay_by(Some(Duration::from_millis(800)));
    let service = TodoService::start(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut receiver = Receiver::start(&seed_config(service.addr));
    let client = reqwest::Client::new();

    let in_flight = {
        let client = client.clone();
        let url = receiver.url("/events");
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", "API-KEY")
                .body(events::user_delete("0b9a3a5e-0200-4000-8000-000000000001", ALICE))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    receiver.terminate();
    let status = in_flight.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(status, StatusCode::OK);
    assert!(store.todos(ALICE).is_empty());
    let exit = tokio::task::block_in_place(|| receiver.wait_exit(Duration::from_secs(10))).expect("the receiver exits");
    assert!(exit.success(), "{exit:?}");
    assert!(TcpStream::connect(receiver.addr).is_err(), "no longer accepting");
    service.stop().await;
}

fn run_check(dir: &Path, yaml: &str) -> (i32, String, String) {
    let config = dir.join("c.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(BIN).arg("--config").arg(&config).arg("--check").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn invalid_config_fails_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_check(
        dir.path(),
        "auth: {authorization: k}\nroutes: [{name: a, events: [user.delete], http: {url: 'http://h/{{event.user.id}}', timeoutMs: 5000}}]",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("routes[0].http.timeoutMs"), "{stderr}");

    let (code, _, stderr) = run_check(dir.path(), "auth: {authorization: k}\nroutes: [{name: a, events: [user.delete], htp: {}}]");
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown field `htp`"), "{stderr}");

    let (code, stdout, _) = run_check(dir.path(), "auth: {authorization: k}\nroutes: [{name: a, events: [user.delete], log: {}}]");
    assert_eq!(code, 0);
    assert!(stdout.contains("valid, 1 route(s)"), "{stdout}");

    let (code, _, stderr) = run_check(dir.path(), "auth: {authorizationFile: /run/secrets/nope}");
    assert_eq!(code, 2);
    assert!(stderr.contains("auth.authorizationFile") && stderr.contains("/run/secrets/nope"), "{stderr}");
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/receiver-config/receiver.yaml");
    let out = Command::new(BIN).arg("--config").arg(example).arg("--check").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
