//! Contract: the emulator's Webhook, Tenant, Key, JWKS and Webhook Event Log
//! answers validate against FusionAuth's OpenAPI spec (the project's trimmed
//! and corrected copy, `tests/contract/openapi.yaml`), and so do the
//! requests the client sends.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::LazyLock;
use std::time::Duration;

use fusionhook_fusionauth::model::Webhook;
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, Emulator, Settings};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "global-api-key";
const RSA_PRIVATE: &str = include_str!("../../fusionauth/tests/fixtures/keys/rsa-private.pem");

static SPEC: LazyLock<Value> = LazyLock::new(|| serde_yaml::from_str(include_str!("../contract/openapi.yaml")).unwrap());

/// Validates `instance` against `#/components/schemas/{name}` of `spec`.
fn errors_against(spec: &Value, name: &str, instance: &Value) -> Vec<String> {
    let root = json!({ "$ref": format!("#/components/schemas/{name}"), "components": spec["components"] });
    let validator = jsonschema::draft4::new(&root).unwrap();
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// The schema name the spec gives for an operation's answer.
fn response_schema(path: &str, method: &str, status: &str) -> Option<String> {
    let reference = SPEC["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"].as_str()?;
    Some(reference.rsplit('/').next()?.to_owned())
}

struct Checker {
    http: reqwest::Client,
    base: String,
    checked: Vec<String>,
}

impl Checker {
    /// Sends a request and validates the answer against the operation's schema.
    async fn call(&mut self, method: &str, spec_path: &str, path: &str, body: Option<Value>, content_type: &str) -> Value {
        let mut request = self
            .http
            .request(method.to_uppercase().parse().unwrap(), format!("{}/{}", self.base, path.trim_start_matches('/')))
            .header("authorization", KEY);
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let (key, schema) = if status.is_success() {
            ("200", response_schema(spec_path, method, "200"))
        } else {
            ("default", response_schema(spec_path, method, "default"))
        };
        let Some(schema) = schema else {
            assert!(bytes.is_empty(), "{method} {spec_path} {status}: the spec declares no body, got {}", String::from_utf8_lossy(&bytes));
            self.checked.push(format!("{method} {spec_path} {status} (no body)"));
            return Value::Null;
        };
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method} {spec_path} {status}: not JSON ({e})"));
        let errors = errors_against(&SPEC, &schema, &value);
        assert!(errors.is_empty(), "{method} {spec_path} {status} ({key} -> {schema}): {errors:#?}\n{value:#}");
        self.checked.push(format!("{method} {spec_path} {status} -> {schema}"));
        value
    }
}

#[tokio::test]
async fn emulator_answers_match_the_spec() {
    let emulator = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO });
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut c = Checker { http: reqwest::Client::new(), base: running.url(), checked: Vec::new() };
    let id = Uuid::new_v4();
    let key_id = Uuid::new_v4();
    let webhook_body = json!({"webhook": {
        "url": "http://receiver.ns.svc:8080/events", "connectTimeout": 1000, "readTimeout": 2000,
        "eventsEnabled": {"user.delete": true}, "global": true, "headers": {"Authorization": "x"},
        "data": {"fusionhook.dev/owner": "ns/name", "uid": "1234"}, "description": "contract"
    }});
    let json_ct = "application/json";

    c.call(
        "post",
        "/api/key/import/{keyId}",
        &format!("/api/key/import/{key_id}"),
        Some(json!({"key": {"algorithm": "HS256", "name": "k", "secret": "s"}})),
        json_ct,
    )
    .await;
    c.call(
        "post",
        "/api/key/import/{keyId}",
        &format!("/api/key/import/{}", Uuid::new_v4()),
        Some(json!({"key": {"algorithm": "RS256", "name": "r", "privateKey": RSA_PRIVATE}})),
        json_ct,
    )
    .await;
    c.call("get", "/api/key/{keyId}", &format!("/api/key/{key_id}"), None, json_ct).await;
    c.call("get", "/.well-known/jwks.json", "/.well-known/jwks.json", None, json_ct).await;

    c.call("post", "/api/webhook/{webhookId}", &format!("/api/webhook/{id}"), Some(webhook_body.clone()), json_ct).await;
    c.call("post", "/api/webhook", "/api/webhook", Some(webhook_body.clone()), json_ct).await;
    c.call("get", "/api/webhook/{webhookId}", &format!("/api/webhook/{id}"), None, json_ct).await;
    c.call("get", "/api/webhook", "/api/webhook", None, json_ct).await;
    c.call("post", "/api/webhook/search", "/api/webhook/search", Some(json!({"search": {"url": "receiver"}})), json_ct).await;
    c.call("put", "/api/webhook/{webhookId}", &format!("/api/webhook/{id}"), Some(webhook_body.clone()), json_ct).await;
    c.call(
        "patch",
        "/api/webhook/{webhookId}",
        &format!("/api/webhook/{id}"),
        Some(json!({"webhook": {"readTimeout": 3000}})),
        "application/merge-patch+json",
    )
    .await;
    // Errors: a 400 body against the (corrected) Errors schema.
    let invalid = c
        .call(
            "post",
            "/api/webhook/{webhookId}",
            &format!("/api/webhook/{}", Uuid::new_v4()),
            Some(json!({"webhook": {"url": ""}})),
            json_ct,
        )
        .await;
    assert!(invalid["fieldErrors"].is_object());
    c.call("delete", "/api/webhook/{webhookId}", &format!("/api/webhook/{id}"), None, json_ct).await;

    c.call("get", "/api/tenant/{tenantId}", &format!("/api/tenant/{DEFAULT_TENANT_ID}"), None, json_ct).await;
    c.call(
        "patch",
        "/api/tenant/{tenantId}",
        &format!("/api/tenant/{DEFAULT_TENANT_ID}"),
        Some(json!({"tenant": {"eventConfiguration": {"events": {"user.delete": {"enabled": true, "transactionType": "Any"}}}}})),
        "application/merge-patch+json",
    )
    .await;

    let report = emulator.raise(None, json!({"type": "kickstart.success", "instanceId": "i"})).await.unwrap();
    emulator.raise(Some(Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()), json!({"type": "user.delete", "user": {"id": "u"}})).await.unwrap();
    c.call("post", "/api/system/webhook-event-log/search", "/api/system/webhook-event-log/search", Some(json!({"search": {}})), json_ct)
        .await;
    c.call(
        "get",
        "/api/system/webhook-event-log/{webhookEventLogId}",
        &format!("/api/system/webhook-event-log/{}", report.event_log_id.unwrap()),
        None,
        json_ct,
    )
    .await;

    assert_eq!(c.checked.len(), 17, "{:#?}", c.checked);
}

#[test]
fn the_corrections_are_needed() {
    // FusionAuth's real error body is invalid under the upstream 1.69.0
    // definition of Errors (quoted here) and valid under the corrected copy.
    let upstream = json!({"components": {"schemas": {
        "Errors": {"type": "object", "properties": {
            "fieldErrors": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
            "generalErrors": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}}}},
        "Error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
    }}});
    let body = json!({"fieldErrors": {"webhook.url": [{"code": "[missing]webhook.url", "message": "m"}]}});
    assert!(errors_against(&SPEC, "Errors", &body).is_empty());
    assert!(!errors_against(&upstream, "Errors", &body).is_empty(), "the upstream spec rejects FusionAuth's own error body");
    // And the wire event names, which the upstream enum spells as Java constants.
    assert!(errors_against(&SPEC, "EventType", &json!("user.delete")).is_empty());
    assert!(!errors_against(&SPEC, "EventType", &json!("UserDelete")).is_empty());
}

#[test]
fn the_clients_requests_match_the_spec() {
    let webhook = Webhook {
        id: Some(Uuid::new_v4()),
        url: "http://receiver/events".into(),
        connect_timeout: 1000,
        read_timeout: 2000,
        events_enabled: [("user.delete".to_owned(), true)].into(),
        data: serde_json::from_value(json!({"owner": "ns/name"})).unwrap(),
        ..Webhook::default()
    };
    let errors = errors_against(&SPEC, "WebhookRequest", &json!({ "webhook": webhook }));
    assert!(errors.is_empty(), "{errors:?}");
}
