//! Traces (issue 23), on the real binary against an OTLP receiver that
//! decodes the official OTLP protobuf definitions: one trace from
//! FusionAuth's request through authentication, a sync route, the store's
//! commit and each attempt of a durable delivery (a span per attempt, with
//! its outcome), the W3C `traceparent` sent on the outbound calls, and no
//! secret or personal data in any attribute.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fusionhook_tests::otlp::{Exported, collector};

mod common;

use common::Receiver;

const AUTHORIZATION: &str = "fusionauth-shared-secret-value-0001";
const USER: &str = "6c0e5b2a-0000-4000-8000-00000000face";
const EVENT: &str = "0b9a3a5e-0001-4000-8000-000000000077";

/// A service: `/sync` answers 200; `/durable` 503 the first time, then 200.
/// Records each call's path and `traceparent`.
async fn service() -> (std::net::SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    let calls: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let durable = Arc::new(AtomicUsize::new(0));
    let keep = calls.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (keep, durable) = (keep.clone(), durable.clone());
        async move {
            let path = request.uri().path().to_owned();
            let parent = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            keep.lock().unwrap().push((path.clone(), parent));
            if path == "/durable" && durable.fetch_add(1, Ordering::SeqCst) == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_fusionauths_request_to_each_delivery_attempt_without_secrets() {
    let (endpoint, spans, content_types) = collector().await;
    let (service, calls) = service().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
auth: {{authorization: "{AUTHORIZATION}"}}
store: {{type: embedded, path: "{store}"}}
delivery: {{pollIntervalMs: 50}}
routes:
  - name: notify
    events: ["user.delete"]
    ack: sync
    http: {{method: POST, url: "http://{service}/sync", timeoutMs: 1000}}
  - name: cleanup
    events: ["user.delete"]
    http: {{method: POST, url: "http://{service}/durable", timeoutMs: 2000}}
    retry: {{scheduleMs: [100]}}
"#,
        store = dir.path().join("store").display(),
    );
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_SERVICE_NAME", "receiver-under-test".to_owned()),
    ];
    let receiver = Receiver::start_with_env(dir, &yaml, &env);
    let client = reqwest::Client::new();
    let body = fusionhook_tests::events::user_delete(EVENT, USER);
    let (status, answer) = receiver.post(&client, &[("authorization", AUTHORIZATION.to_owned())], body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Both attempts of the durable delivery, then their spans.
    let deadline = Instant::now() + Duration::from_secs(20);
    let attempts = |spans: &[Exported]| spans.iter().filter(|s| s.name == "delivery.attempt").count();
    while attempts(&spans.lock().unwrap()) < 2 {
        assert!(Instant::now() < deadline, "spans so far: {:#?}", spans.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = spans.lock().unwrap().clone();
    let one = |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} span: {spans:#?}")).clone();
    let receive = one("receive");
    assert_eq!(receive.service, "receiver-under-test", "OTEL_SERVICE_NAME");
    assert_eq!(receive.attributes["event.type"], "user.delete");
    assert_eq!(receive.attributes["outcome"], "stored");
    assert_eq!(receive.attributes["http.response.status_code"], "200");
    assert!(receive.parent.chars().all(|c| c == '0'), "the trace's root (FusionAuth sends no traceparent)");
    for name in ["authenticate", "verify.body", "route", "store.commit"] {
        let span = one(name);
        assert_eq!((span.trace.as_str(), span.parent.as_str()), (receive.trace.as_str(), receive.id.as_str()), "{name} under receive");
    }
    assert_eq!(one("route").attributes["outcome"], "succeeded");
    let mut tried: Vec<&Exported> = spans.iter().filter(|s| s.name == "delivery.attempt").collect();
    tried.sort_by_key(|s| s.attributes["attempt"].parse::<u32>().unwrap());
    let outcomes: Vec<&str> = tried.iter().map(|s| s.attributes["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["retry", "delivered"], "a span per attempt, with its outcome");
    for attempt in &tried {
        assert_eq!((attempt.trace.as_str(), attempt.parent.as_str()), (receive.trace.as_str(), receive.id.as_str()), "{attempt:?}");
        assert_eq!(attempt.attributes["route"], "cleanup");
    }

    // The calls carried the trace on: the sync one from its route span,
    // each durable one from its attempt's.
    let calls = calls.lock().unwrap().clone();
    let route_span = one("route");
    let expected: Vec<(String, String)> = std::iter::once(("/sync".to_owned(), format!("00-{}-{}-01", receive.trace, route_span.id)))
        .chain(tried.iter().map(|a| ("/durable".to_owned(), format!("00-{}-{}-01", receive.trace, a.id))))
        .collect();
    assert_eq!(calls, expected);

    // Nothing secret or personal in any attribute: not the Authorization
    // value, not the user the event is about, not the body.
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(AUTHORIZATION) && !value.contains(USER) && !value.contains("\"event\""),
                "{}: {key}={value}",
                span.name
            );
        }
    }
    assert!(content_types.lock().unwrap().iter().all(|t| t == "application/x-protobuf"), "OTLP over HTTP/protobuf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_no_traceparent_is_sent() {
    let (service, calls) = service().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "auth: {{authorization: \"{AUTHORIZATION}\"}}\nroutes: [{{name: notify, events: ['user.delete'], http: {{method: POST, url: 'http://{service}/sync', timeoutMs: 1000}}}}]\n"
    );
    let receiver = Receiver::start_in(dir, &yaml);
    let client = reqwest::Client::new();
    let (status, _) =
        receiver.post(&client, &[("authorization", AUTHORIZATION.to_owned())], fusionhook_tests::events::user_delete(EVENT, USER)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.lock().unwrap().clone(), [("/sync".to_owned(), String::new())]);
}
