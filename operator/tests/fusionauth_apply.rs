//! The FusionAuth half of reconcile against the FusionAuth emulator: first
//! registration, a second pass that writes nothing, drift repair, the
//! tenant switches, the errors a user must see, and clean-up.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::TransactionType;
use fusionhook_operator::FusionAuthWebhook;
use fusionhook_operator::apply::fusionauth::{WebhookChange, apply_signing_key, apply_tenant_events, apply_webhook, cleanup};
use fusionhook_operator::build::fusionauth_webhook;
use fusionhook_operator::validate::{SecretData, Validated, validate};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, Emulator, RunningEmulator, Settings};
use serde_json::json;
use uuid::Uuid;

const KEY: &str = "global-key";

async fn fusionauth() -> (Emulator, RunningEmulator) {
    let emulator = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO });
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (emulator, running)
}

fn client(url: &str, key: &str) -> FusionAuthClient {
    let mut config = ClientConfig::new(url.parse().unwrap(), ApiKey::new(key));
    config.retry = RetryPolicy { attempts: 2, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(10) };
    config.timeout = Duration::from_secs(2);
    FusionAuthClient::new(config).unwrap()
}

fn validated() -> Validated {
    let resource: FusionAuthWebhook = serde_json::from_value(json!({
        "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
        "metadata": {"name": "todo-cleanup", "namespace": "todo", "uid": "0d6c1d2e-1a2b-4c3d-8e4f-5a6b7c8d9e0f"},
        "spec": {
            "fusionAuth": {"url": "http://fusionauth:9011", "apiKeySecretRef": {"name": "fa", "key": "k"}},
            "events": ["user.delete", "user.create"],
            "tenants": {"tenantIds": [DEFAULT_TENANT_ID]},
            "tenantEvents": {"transactionType": "SimpleMajority"},
            "auth": {"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "sig", "key": "hmac"}}}
        }
    }))
    .unwrap();
    let mut secrets = SecretData::new();
    secrets.entry("fa".into()).or_default().insert("k".into(), KEY.as_bytes().to_vec());
    secrets.entry("sig".into()).or_default().insert("hmac".into(), b"hmac-secret".to_vec());
    validate(&resource, &secrets).unwrap()
}

fn writes(emulator: &Emulator) -> u64 {
    emulator.calls().iter().filter(|(call, _)| !call.starts_with("GET ")).map(|(_, n)| n).sum()
}

fn tenant() -> Uuid {
    Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()
}

#[tokio::test]
async fn first_reconcile_registers_and_the_second_writes_nothing() {
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let v = validated();
    let desired = fusionauth_webhook(&v, "authorization-value");

    assert!(apply_signing_key(&fa, &v).await.unwrap());
    assert_eq!(apply_webhook(&fa, v.webhook_id, &desired).await.unwrap(), WebhookChange::Created);
    let owned = apply_tenant_events(&fa, &v).await.unwrap();
    assert_eq!(owned, [format!("{DEFAULT_TENANT_ID}/user.create"), format!("{DEFAULT_TENANT_ID}/user.delete")]);

    let stored = fa.retrieve_webhook(v.webhook_id).await.unwrap().unwrap();
    assert_eq!(stored.headers["Authorization"], "authorization-value");
    assert!(stored.signature_configuration.unwrap().enabled);
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert_eq!(config.events["user.delete"].transaction_type, TransactionType::SimpleMajority);
    let after_first = writes(&emulator);
    assert_eq!(after_first, 3, "import key, create webhook, one tenant patch: {:?}", emulator.calls());

    // Steady state: reads only.
    assert!(!apply_signing_key(&fa, &v).await.unwrap());
    assert_eq!(apply_webhook(&fa, v.webhook_id, &desired).await.unwrap(), WebhookChange::Unchanged);
    apply_tenant_events(&fa, &v).await.unwrap();
    assert_eq!(writes(&emulator), after_first, "the second reconcile made a write: {:?}", emulator.calls());
}

#[tokio::test]
async fn drift_is_repaired_and_a_deleted_webhook_recreated() {
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let v = validated();
    let desired = fusionauth_webhook(&v, "authorization-value");
    apply_signing_key(&fa, &v).await.unwrap();
    apply_webhook(&fa, v.webhook_id, &desired).await.unwrap();

    // Someone edits it in the admin UI: a different URL, an extra data key.
    {
        let mut state = emulator.state();
        let webhook = state.webhooks.get_mut(&v.webhook_id).unwrap();
        webhook["url"] = json!("http://elsewhere.example/hook");
        webhook["data"]["note"] = json!("added by hand");
    }
    let change = apply_webhook(&fa, v.webhook_id, &desired).await.unwrap();
    assert_eq!(change, WebhookChange::Updated { fields: vec!["url"] });
    let repaired = fa.retrieve_webhook(v.webhook_id).await.unwrap().unwrap();
    assert_eq!(repaired.url, desired.url);
    assert_eq!(repaired.data["note"], "added by hand", "what we do not own is kept");

    fa.delete_webhook(v.webhook_id).await.unwrap();
    assert_eq!(apply_webhook(&fa, v.webhook_id, &desired).await.unwrap(), WebhookChange::Created);
}

#[tokio::test]
async fn errors_name_what_the_user_must_fix() {
    let (emulator, running) = fusionauth().await;
    let v = validated();
    let desired = fusionauth_webhook(&v, "x");

    emulator.add_api_key("tenant-key", Some(tenant()));
    let err = apply_webhook(&client(&running.url(), "tenant-key"), v.webhook_id, &desired).await.unwrap_err();
    assert_eq!(err.reason(), "ApiKeyRejected");
    assert!(err.to_string().contains("global API key"));
    assert!(!err.is_transient());

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let err = apply_webhook(&client(&format!("http://{closed}/"), KEY), v.webhook_id, &desired).await.unwrap_err();
    assert_eq!(err.reason(), "FusionAuthUnreachable");
    assert!(err.is_transient());

    emulator.inject_faults(503, 5);
    let err = apply_webhook(&client(&running.url(), KEY), v.webhook_id, &desired).await.unwrap_err();
    assert_eq!(err.reason(), "FusionAuthUnreachable");
}

#[tokio::test]
async fn cleanup_removes_only_what_this_resource_added() {
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let v = validated();
    // Someone else's switch on the same tenant.
    emulator.state().tenants.get_mut(&tenant()).unwrap()["eventConfiguration"]["events"]["user.login.success"] =
        json!({"enabled": true, "transactionType": "None"});
    apply_signing_key(&fa, &v).await.unwrap();
    apply_webhook(&fa, v.webhook_id, &fusionauth_webhook(&v, "x")).await.unwrap();
    let owned = apply_tenant_events(&fa, &v).await.unwrap();
    let key_id = match &v.signing {
        Some(fusionhook_operator::validate::Signing::Hmac { key_id, .. }) => *key_id,
        _ => unreachable!(),
    };

    cleanup(&fa, v.webhook_id, Some(key_id), &owned).await.unwrap();
    assert_eq!(fa.retrieve_webhook(v.webhook_id).await.unwrap(), None);
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert!(!config.events["user.delete"].enabled && !config.events["user.create"].enabled);
    assert!(config.events["user.login.success"].enabled, "not ours: untouched");
    assert_eq!(fa.retrieve_key(key_id).await.unwrap(), None);

    // Clean-up is idempotent: everything already gone is fine.
    cleanup(&fa, v.webhook_id, Some(key_id), &owned).await.unwrap();

    // FusionAuth down: the error says so, and the caller keeps its finalizer.
    running.stop().await;
    let err = cleanup(&fa, v.webhook_id, Some(key_id), &owned).await.unwrap_err();
    assert_eq!(err.reason(), "FusionAuthUnreachable");
}
