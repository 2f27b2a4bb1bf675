//! The operator's traces (issue 23): a trace per reconcile with its calls
//! to FusionAuth inside, exported over OTLP/HTTP to a receiver that decodes
//! the official protobuf definitions; no API key or Secret value in any
//! attribute.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use fusionhook_tests::otlp::collector;
use fusionhook_tests::stack::Stack;
use serde_json::json;

const KEY: &str = "traces-global-api-key-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_is_a_trace_with_its_fusionauth_calls_inside() {
    let (endpoint, spans, _) = collector().await;
    let mut stack = Stack::start(KEY).await.unwrap();
    stack.namespace_with_api_key("team").unwrap();
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned())];
    stack.start_operator_with_env("traced", "5m", &env).unwrap();
    let spec = json!({
        "fusionAuth": {"url": stack.fusionauth_url(), "apiKeySecretRef": {"name": "fusionauth-api-key", "key": "api-key"}},
        "events": ["user.delete"],
        "receiver": {"replicas": 1},
        "routes": [{"name": "log", "events": ["*"], "log": {}}],
    });
    let object = json!({"apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook", "metadata": {"name": "hook"}, "spec": spec});
    stack.create("fusionhook.dev", "v1alpha1", "fusionauthwebhooks", "team", object).unwrap();

    // A reconcile that registered the webhook, and every FusionAuth call's
    // reconcile exported too (a reconcile's span ends after its calls').
    let deadline = Instant::now() + Duration::from_secs(60);
    let registered = |spans: &[fusionhook_tests::otlp::Exported]| {
        let calls = spans.iter().filter(|s| s.name == "fusionauth.request");
        spans.iter().any(|s| s.name == "fusionauth.request" && s.attributes.get("operation").is_some_and(|o| o == "create webhook"))
            && calls.clone().all(|c| spans.iter().any(|r| r.name == "reconcile" && r.id == c.parent))
    };
    while !registered(&spans.lock().unwrap()) {
        assert!(Instant::now() < deadline, "spans so far: {:#?}", spans.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spans = spans.lock().unwrap().clone();
    let reconciles: Vec<_> = spans.iter().filter(|s| s.name == "reconcile").collect();
    assert!(!reconciles.is_empty(), "{spans:#?}");
    assert!(reconciles.iter().all(|r| r.service == "fusionhook-operator" && r.attributes["fusionauthwebhook"] == "hook"));
    assert!(reconciles.iter().all(|r| r.parent.chars().all(|c| c == '0')), "each reconcile is a trace's root");
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "fusionauth.request").collect();
    for call in &calls {
        let parent = reconciles.iter().find(|r| r.id == call.parent);
        assert!(parent.is_some_and(|r| r.trace == call.trace), "a FusionAuth call inside a reconcile: {call:?}");
        assert!(call.attributes.contains_key("http.response.status_code"), "{call:?}");
    }
    for span in &spans {
        for (key, value) in &span.attributes {
            assert!(!value.contains(KEY), "no API key: {}: {key}={value}", span.name);
        }
    }
    stack.operators.clear();
}
