//! The admin API's tokens and their scopes, on the real binary: a token
//! that may read cannot replay or inject an event, one that may replay
//! cannot inject, and a rotated token keeps working for a grace period.
//! `/v1/prove` lets a client check that a pod holds a token before it
//! shows it one.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use axum::http::StatusCode;
use fusionhook_tests::events;
use hmac::Mac;
use serde_json::{Value, json};

mod common;

use common::Receiver;
use common::sink::id;

const READ: &str = "read-token-0123456789";
const REPLAY: &str = "replay-token-0123456789";
const INGEST: &str = "ingest-token-0123456789";

fn start() -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    for (file, token) in [("read", READ), ("replay", REPLAY), ("ingest", INGEST)] {
        std::fs::write(dir.path().join(file), format!("{token}\n")).unwrap();
    }
    let path = |f: &str| dir.path().join(f).display().to_string();
    let yaml = format!(
        "auth: {{authorization: API-KEY}}\nsecretRefreshMs: 100\nstore: {{type: embedded, path: \"{}\"}}\n\
         admin: {{listen: \"127.0.0.1:0\", readTokenFile: \"{}\", replayTokenFile: \"{}\", ingestTokenFile: \"{}\"}}\n\
         routes: [{{name: l, events: ['*'], log: {{}}}}]\n",
        path("store"),
        path("read"),
        path("replay"),
        path("ingest"),
    );
    Receiver::start_in(dir, &yaml)
}

async fn call(receiver: &Receiver, token: &str, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("http://{}{path}", receiver.admin.unwrap())).header("x-fusionhook-token", token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_token_does_only_what_its_scope_allows() {
    let receiver = start();
    let event = || Some(events::user_delete(&id(1), "00000000-0000-0001-0000-00000000a11c"));
    let replay = || Some(serde_json::to_vec(&json!({"state": "dead", "dryRun": true})).unwrap());
    use reqwest::Method;

    for token in [READ, REPLAY, INGEST] {
        let (status, _) = call(&receiver, token, Method::GET, "/v1/stats", None).await;
        assert_eq!(status, StatusCode::OK, "every scope may read");
    }
    // Reading does not let one replay, discard or inject.
    let (status, body) = call(&receiver, READ, Method::POST, "/v1/ingest", event()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("scope ingest"), "{body}");
    assert_eq!(call(&receiver, READ, Method::POST, "/v1/replay", replay()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&receiver, READ, Method::POST, "/v1/discard", replay()).await.0, StatusCode::FORBIDDEN);
    // Replaying does not let one inject; ingesting does not let one replay.
    assert_eq!(call(&receiver, REPLAY, Method::POST, "/v1/ingest", event()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&receiver, REPLAY, Method::POST, "/v1/replay", replay()).await.0, StatusCode::OK);
    assert_eq!(call(&receiver, INGEST, Method::POST, "/v1/replay", replay()).await.0, StatusCode::FORBIDDEN);
    let (status, body) = call(&receiver, INGEST, Method::POST, "/v1/ingest", event()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No token, or a wrong one: 401, whatever the path.
    assert_eq!(call(&receiver, "not-a-token-at-all", Method::GET, "/v1/stats", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&receiver, "", Method::POST, "/v1/ingest", event()).await.0, StatusCode::UNAUTHORIZED);
}

fn expected_proof(token: &str, pod: &str, nonce: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(format!("fusionhook admin proof v1\n{pod}\n{nonce}").as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn prove(receiver: &Receiver, scope: &str, nonce: &str) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&json!({"nonce": nonce, "scope": scope})).unwrap();
    call(receiver, "", reqwest::Method::POST, "/v1/prove", Some(body)).await
}

#[tokio::test]
async fn a_pod_proves_it_holds_a_token_without_showing_it_and_a_rotated_token_stays_valid_for_a_while() {
    let receiver = start();
    let pod = std::env::var("FUSIONHOOK_POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_default();
    let nonce = "a-nonce-of-the-clients-0001";

    let (status, answer) = prove(&receiver, "ingest", nonce).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["pod"], pod.as_str());
    let proofs: Vec<&str> = answer["proofs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(proofs, [expected_proof(INGEST, &pod, nonce)], "one proof, under the ingest token, bound to the pod and nonce");
    assert!(!answer.to_string().contains(INGEST) && !answer.to_string().contains(READ), "no token in the answer");
    assert_ne!(proofs[0], expected_proof(INGEST, "another-pod", nonce), "the pod's name is bound in");
    assert_ne!(proofs[0], expected_proof(READ, &pod, nonce), "per scope");
    // Refusals: a short nonce (a replayable proof), an unknown scope.
    assert_eq!(prove(&receiver, "ingest", "short").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(prove(&receiver, "all", nonce).await.0, StatusCode::BAD_REQUEST);

    // Rotation: the file changes (the kubelet updating the mounted Secret);
    // the new token works at once, the old one for the grace period, and
    // /v1/prove answers for both so a client holding either can check.
    let rotated = "ingest-token-rotated-9876543210";
    std::fs::write(receiver.dir().join("ingest"), rotated).unwrap();
    let event = || Some(events::user_delete(&id(2), "00000000-0000-0001-0000-00000000a11c"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while call(&receiver, rotated, reqwest::Method::POST, "/v1/ingest", event()).await.0 != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "the rotated token was never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(&receiver, INGEST, reqwest::Method::POST, "/v1/ingest", event()).await.0,
        StatusCode::OK,
        "the old one, within the grace"
    );
    let (_, answer) = prove(&receiver, "ingest", nonce).await;
    let proofs: Vec<&str> = answer["proofs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(proofs, [expected_proof(rotated, &pod, nonce), expected_proof(INGEST, &pod, nonce)]);
}
