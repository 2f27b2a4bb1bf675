//! A sink for durable-delivery tests (answers as told, records every call)
//! and helpers for the receiver's admin API.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde_json::Value;

use super::Receiver;

pub const OK: u8 = 0;
pub const FAIL_HALF: u8 = 1;
pub const DOWN: u8 = 2;
pub const REFUSE: u8 = 3;

/// One call the sink received.
#[derive(Clone)]
pub struct Call {
    pub event_id: String,
    pub key: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
pub struct Sink {
    mode: AtomicU8,
    n: AtomicUsize,
    /// Each call is answered this much later.
    delay_ms: AtomicU64,
    /// Calls that arrived (answered or not yet).
    started: AtomicUsize,
    calls: Mutex<Vec<Call>>,
}

impl Sink {
    pub async fn start() -> (Arc<Self>, SocketAddr) {
        let sink = Arc::new(Self::default());
        let app = axum::Router::new().route("/hook", axum::routing::post(answer)).with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, addr)
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Answers every later call this much later.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }

    /// Calls that arrived, answered or not yet.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Successful calls per event id.
    pub fn delivered(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for call in self.calls().iter().filter(|c| c.status.is_success()) {
            *counts.entry(call.event_id.clone()).or_default() += 1;
        }
        counts
    }
}

async fn answer(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    sink.started.fetch_add(1, Ordering::SeqCst);
    let delay = sink.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let n = sink.n.fetch_add(1, Ordering::SeqCst);
    let status = match sink.mode.load(Ordering::SeqCst) {
        OK => StatusCode::OK,
        FAIL_HALF if n % 2 == 0 => StatusCode::SERVICE_UNAVAILABLE,
        FAIL_HALF => StatusCode::OK,
        DOWN => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let event_id = event["event"]["id"].as_str().unwrap_or_default().to_owned();
    sink.calls.lock().unwrap().push(Call { event_id, key, status, headers, body });
    status
}

/// A receiver config with the embedded store in `dir`.
pub fn config(dir: &std::path::Path, sink: SocketAddr, route_extra: &str) -> String {
    let store = format!("store: {{type: embedded, path: \"{}\"}}", dir.join("store").display());
    config_with(dir, &store, sink, route_extra)
}

/// A receiver config with this `store:` line, an admin API and one route to the sink.
pub fn config_with(dir: &std::path::Path, store: &str, sink: SocketAddr, route_extra: &str) -> String {
    std::fs::write(dir.join("admin-token"), "admin-secret-token\n").unwrap();
    format!(
        r#"
auth: {{authorization: "API-KEY"}}
{store}
admin: {{listen: "127.0.0.1:0", tokenFile: "{token}"}}
delivery: {{pollIntervalMs: 50}}
routes:
  - name: sink
    events: ["user.delete"]
    http: {{method: POST, url: "http://{sink}/hook", timeoutMs: 2000}}
{route_extra}
"#,
        token = dir.join("admin-token").display(),
    )
}

pub fn id(i: usize) -> String {
    format!("0b9a3a5e-{i:04x}-4000-8000-{i:012x}")
}

pub async fn admin(
    client: &reqwest::Client,
    receiver: &Receiver,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, format!("http://{}{path}", receiver.admin.unwrap())).bearer_auth("admin-secret-token");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
