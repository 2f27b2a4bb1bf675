//! The emulator's delivery engine: who gets an event (the three switches),
//! what the request looks like (compact JSON, headers, Basic, signature),
//! transaction levels, retries with the same event id, the event log.
//! FACTS.md §c and §d.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::{EventConfigurationData, SignatureConfiguration, TransactionType, Webhook};
use fusionhook_fusionauth::signature::{self, Algorithm, DecodingKey};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, DeliveryReport, Emulator, RunningEmulator, Settings};
use fusionhook_tests::todo::{Received, TodoService, TodoStore};
use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "global-api-key";
const RSA_PRIVATE: &str = include_str!("../../fusionauth/tests/fixtures/keys/rsa-private.pem");

struct World {
    emulator: Emulator,
    client: FusionAuthClient,
    _running: RunningEmulator,
}

impl World {
    async fn new() -> Self {
        let emulator = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO });
        let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut config = ClientConfig::new(running.url().parse().unwrap(), ApiKey::new(KEY));
        config.retry = RetryPolicy::none();
        let client = FusionAuthClient::new(config).unwrap();
        Self { emulator, client, _running: running }
    }

    async fn sink(&self) -> (Arc<TodoStore>, TodoService) {
        let store = TodoStore::with(&[]);
        let service = TodoService::start(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        (store, service)
    }

    async fn webhook(&self, url: String, events: &[&str], edit: impl FnOnce(&mut Webhook)) -> Uuid {
        let mut webhook = Webhook {
            url,
            connect_timeout: 500,
            read_timeout: 500,
            events_enabled: events.iter().map(|e| ((*e).to_owned(), true)).collect(),
            global: true,
            ..Webhook::default()
        };
        edit(&mut webhook);
        let id = Uuid::new_v4();
        self.client.create_webhook(id, &webhook).await.unwrap();
        id
    }

    async fn switch(&self, tenant: Uuid, event: &str, enabled: bool, level: TransactionType) {
        let data = EventConfigurationData { enabled, transaction_type: level };
        self.client.patch_tenant_events(tenant, &BTreeMap::from([(event.to_owned(), data)])).await.unwrap();
    }

    async fn raise(&self, tenant: Uuid, event: Value) -> DeliveryReport {
        self.emulator.raise(Some(tenant), event).await.unwrap()
    }
}

fn tenant() -> Uuid {
    Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()
}

fn url(service: &TodoService) -> String {
    format!("http://{}/hook", service.addr)
}

fn only(store: &TodoStore) -> Received {
    let received = store.received();
    assert_eq!(received.len(), 1, "{received:?}");
    received.into_iter().next().unwrap()
}

#[tokio::test]
async fn all_three_switches_are_needed_and_instance_events_skip_the_tenant_ones() {
    let w = World::new().await;
    let other_tenant = Uuid::new_v4();
    w.emulator.add_tenant(other_tenant, "Other");
    let (global_store, global_sink) = w.sink().await;
    let (scoped_store, scoped_sink) = w.sink().await;
    let (off_store, off_sink) = w.sink().await;
    w.webhook(url(&global_sink), &["user.delete", "kickstart.success"], |_| {}).await;
    w.webhook(url(&scoped_sink), &["user.delete"], |wh| {
        wh.global = false;
        wh.tenant_ids = vec![other_tenant];
    })
    .await;
    w.webhook(url(&off_sink), &["user.create"], |_| {}).await;

    // Tenant switch off: nobody gets it, whatever the webhooks say.
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert!(report.webhooks.is_empty());
    assert!(global_store.received().is_empty());

    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert_eq!(report.webhooks.len(), 1, "the global webhook only: the scoped one lists another tenant, the third lacks the event");
    assert_eq!(global_store.received().len(), 1);
    assert!(scoped_store.received().is_empty() && off_store.received().is_empty());

    // In the other tenant (switch on), the scoped webhook and the global one get it.
    w.switch(other_tenant, "user.delete", true, TransactionType::None).await;
    let report = w.raise(other_tenant, json!({"type": "user.delete", "user": {"id": "u2"}})).await;
    assert_eq!(report.webhooks.len(), 2);
    assert_eq!(scoped_store.received().len(), 1);

    // Instance events ignore tenant switches and tenant selection.
    let report = w.emulator.raise(None, json!({"type": "kickstart.success", "instanceId": "i-1"})).await.unwrap();
    assert_eq!(report.webhooks.len(), 1);
    let body: Value = serde_json::from_slice(&global_store.received().last().unwrap().body).unwrap();
    assert!(body["event"].get("tenantId").is_none(), "instance events carry no tenantId");
}

#[tokio::test]
async fn the_request_looks_like_fusionauths() {
    let w = World::new().await;
    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let (store, sink) = w.sink().await;
    w.webhook(url(&sink), &["user.delete"], |wh| {
        wh.headers = BTreeMap::from([("X-Custom".into(), "custom-value".into())]);
        wh.http_authentication_username = Some("fa-user".into());
        wh.http_authentication_password = Some("fa-pass".into());
    })
    .await;
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1", "email": "a@example.test"}})).await;
    let got = only(&store);
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["x-custom"], "custom-value");
    assert_eq!(got.headers["authorization"], "Basic ZmEtdXNlcjpmYS1wYXNz", "Basic when both are set");
    assert!(got.headers["user-agent"].to_str().unwrap().starts_with("Restify"));
    assert!(got.headers.get("x-fusionauth-signature-jwt").is_none(), "unsigned unless signing is on");
    let text = std::str::from_utf8(&got.body).unwrap();
    assert!(!text.contains(' ') && !text.contains('\n'), "compact JSON: {text}");
    let body: Value = serde_json::from_str(text).unwrap();
    assert_eq!(body["event"]["type"], "user.delete");
    assert_eq!(body["event"]["tenantId"], DEFAULT_TENANT_ID);
    assert_eq!(body["event"]["id"], report.event["id"]);
    assert!(body["event"]["createInstant"].as_i64().unwrap() > 1_700_000_000_000);
    let keys: Vec<&String> = body["event"].as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "properties in alphabetical order");

    // A fresh id per raised event.
    let again = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert_ne!(again.event["id"], report.event["id"]);
}

#[tokio::test]
async fn basic_auth_needs_both_halves_and_a_custom_authorization_header_wins() {
    let w = World::new().await;
    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let (only_user, sink1) = w.sink().await;
    let (custom, sink2) = w.sink().await;
    w.webhook(url(&sink1), &["user.delete"], |wh| wh.http_authentication_username = Some("u".into())).await;
    w.webhook(url(&sink2), &["user.delete"], |wh| {
        wh.http_authentication_username = Some("u".into());
        wh.http_authentication_password = Some("p".into());
        wh.headers = BTreeMap::from([("Authorization".into(), "receiver-value".into())]);
    })
    .await;
    w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert!(only(&only_user).headers.get("authorization").is_none());
    assert_eq!(only(&custom).headers["authorization"], "receiver-value");
}

#[tokio::test]
async fn signed_deliveries_verify_with_hmac_and_with_the_jwks() {
    let w = World::new().await;
    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let hmac = Uuid::new_v4();
    w.client.import_hmac_key(hmac, "hmac", "HS256", "the-shared-secret").await.unwrap();
    let rsa = Uuid::new_v4();
    reqwest::Client::new()
        .post(format!("{}/api/key/import/{rsa}", w._running.url()))
        .header("authorization", KEY)
        .json(&json!({"key": {"algorithm": "RS256", "name": "rsa", "privateKey": RSA_PRIVATE}}))
        .send()
        .await
        .unwrap();
    let (hmac_store, hmac_sink) = w.sink().await;
    let (rsa_store, rsa_sink) = w.sink().await;
    let sign_with = |key| {
        move |wh: &mut Webhook| wh.signature_configuration = Some(SignatureConfiguration { enabled: true, signing_key_id: Some(key) })
    };
    w.webhook(url(&hmac_sink), &["user.delete"], sign_with(hmac)).await;
    w.webhook(url(&rsa_sink), &["user.delete"], sign_with(rsa)).await;
    w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;

    let got = only(&hmac_store);
    let token = got.headers["x-fusionauth-signature-jwt"].to_str().unwrap();
    let header = signature::inspect(token, &[Algorithm::HS256]).unwrap();
    assert_eq!(header.kid, w.client.retrieve_key(hmac).await.unwrap().unwrap().kid);
    signature::verify(token, &got.body, &DecodingKey::from_secret(b"the-shared-secret"), &[Algorithm::HS256]).unwrap();

    let got = only(&rsa_store);
    let token = got.headers["x-fusionauth-signature-jwt"].to_str().unwrap();
    let header = signature::inspect(token, &[Algorithm::RS256]).unwrap();
    let jwks = w.client.fetch_jwks().await.unwrap();
    let keys = fusionhook_fusionauth::jwks::parse_jwks(jwks.to_string().as_bytes()).unwrap();
    let key = &keys[header.kid.as_deref().unwrap()];
    signature::verify(token, &got.body, &key.key, &[Algorithm::RS256]).unwrap();
}

#[tokio::test]
async fn transaction_levels_decide_vetoes_and_retries() {
    let w = World::new().await;
    let (ok_store, ok_sink) = w.sink().await;
    let (bad_store, bad_sink) = w.sink().await;
    bad_store.fail_with(Some(StatusCode::INTERNAL_SERVER_ERROR));
    w.webhook(url(&ok_sink), &["user.delete", "user.delete.complete"], |_| {}).await;
    let bad = w.webhook(url(&bad_sink), &["user.delete", "user.delete.complete"], |_| {}).await;

    // AbsoluteMajority: one failure vetoes; nothing is retried after a failed transaction.
    w.switch(tenant(), "user.delete", true, TransactionType::AbsoluteMajority).await;
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert!(report.transactional && report.vetoed);
    assert_eq!(report.transaction_type, Some(TransactionType::AbsoluteMajority));
    assert_eq!(bad_store.received().len(), 1);
    let log = w.emulator.state().event_logs.last().cloned().unwrap();
    assert_eq!(log["eventResult"], "Failed");

    // SimpleMajority: 1 of 2 is enough; the failed webhook gets three more
    // attempts, back to back, with the same event id.
    w.switch(tenant(), "user.delete", true, TransactionType::SimpleMajority).await;
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u2"}})).await;
    assert!(!report.vetoed);
    let failed = report.webhooks.iter().find(|d| d.webhook_id == bad).unwrap();
    assert_eq!(failed.attempts.len(), 4);
    let ids: Vec<Value> =
        bad_store.received()[1..].iter().map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["event"]["id"].clone()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| *id == report.event["id"]), "retries reuse the event id");
    let log = w.emulator.state().event_logs.last().cloned().unwrap();
    assert_eq!(
        (log["eventResult"].as_str(), log["failedAttempts"].as_u64(), log["successfulAttempts"].as_u64()),
        (Some("Succeeded"), Some(4), Some(1))
    );

    // A receiver recovering during the retries: success on a later attempt.
    bad_store.fail_with(None);
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u3"}})).await;
    assert!(report.webhooks.iter().all(|d| d.succeeded && d.attempts.len() == 1));
    bad_store.fail_with(Some(StatusCode::BAD_GATEWAY));

    // None: fire and forget, no retries.
    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let before = bad_store.received().len();
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u4"}})).await;
    assert!(!report.vetoed);
    assert_eq!(bad_store.received().len() - before, 1);

    // Non-transactional events never veto and are not retried.
    w.switch(tenant(), "user.delete.complete", true, TransactionType::AbsoluteMajority).await;
    let before = bad_store.received().len();
    let report = w.raise(tenant(), json!({"type": "user.delete.complete", "user": {"id": "u5"}})).await;
    assert!(!report.transactional && !report.vetoed && report.transaction_type.is_none());
    assert_eq!(bad_store.received().len() - before, 1);
    assert_eq!(ok_store.received().len(), 5);
}

#[tokio::test]
async fn timeouts_and_unreachable_receivers_are_failures() {
    let w = World::new().await;
    w.switch(tenant(), "user.delete", true, TransactionType::Any).await;
    let (slow_store, slow_sink) = w.sink().await;
    slow_store.delay_by(Some(Duration::from_millis(1500)));
    w.webhook(url(&slow_sink), &["user.delete"], |wh| wh.read_timeout = 200).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    w.webhook(format!("http://{closed}/hook"), &["user.delete"], |_| {}).await;
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert!(report.vetoed, "Any: none succeeded");
    for delivery in &report.webhooks {
        assert!(!delivery.succeeded);
        assert!(delivery.attempts[0].exception.is_some() && delivery.attempts[0].status_code.is_none(), "{delivery:?}");
    }
}

#[tokio::test]
async fn the_resolve_override_reaches_a_local_address() {
    let w = World::new().await;
    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let (store, sink) = w.sink().await;
    w.emulator.resolve("receiver.team.svc", sink.addr);
    w.webhook("http://receiver.team.svc:8080/hook".into(), &["user.delete"], |_| {}).await;
    let report = w.raise(tenant(), json!({"type": "user.delete", "user": {"id": "u1"}})).await;
    assert!(report.webhooks[0].succeeded, "{report:?}");
    assert_eq!(only(&store).headers["host"], "receiver.team.svc:8080");
}

#[tokio::test]
async fn the_admin_endpoint_raises_events_over_http() {
    let w = World::new().await;
    w.switch(tenant(), "user.delete", true, TransactionType::None).await;
    let (store, sink) = w.sink().await;
    w.webhook(url(&sink), &["user.delete"], |_| {}).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/emulator/events", w._running.url()))
        .json(&json!({"tenantId": DEFAULT_TENANT_ID, "event": {"type": "user.delete", "user": {"id": "u1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["webhooks"][0]["attempts"][0]["statusCode"], 200);
    assert_eq!(store.received().len(), 1);
    let bad =
        http.post(format!("{}/emulator/events", w._running.url())).json(&json!({"event": {"type": "user.teleport"}})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}
