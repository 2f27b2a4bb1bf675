//! The FusionAuth half of reconcile against the FusionAuth emulator: first
//! registration, a second pass that writes nothing, drift repair, the
//! tenant switches, the errors a user must see, and clean-up.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::TransactionType;
use fusionhook_fusionauth::model::Webhook;
use fusionhook_operator::FusionAuthWebhook;
use fusionhook_operator::reconcile::apply::fusionauth::{ApplyError, WebhookChange, apply_signing_key, apply_webhook};
use fusionhook_operator::reconcile::build::fusionauth_webhook;
use fusionhook_operator::reconcile::cleanup::remove_from;
use fusionhook_operator::reconcile::conditions::Reason;
use fusionhook_operator::reconcile::tenant_switches;
use fusionhook_operator::reconcile::validate::{SecretData, Signing, Validated, validate};
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
    validated_as("todo", "0d6c1d2e-1a2b-4c3d-8e4f-5a6b7c8d9e0f")
}

fn validated_as(namespace: &str, uid: &str) -> Validated {
    let resource: FusionAuthWebhook = serde_json::from_value(json!({
        "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
        "metadata": {"name": "todo-cleanup", "namespace": namespace, "uid": uid},
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

/// What a reconcile does in FusionAuth, in its order: key, the webhook
/// with the claims on switches that were off, the switches.
async fn register(fa: &FusionAuthClient, v: &Validated) -> (WebhookChange, Vec<String>) {
    let observed = fa.retrieve_webhook(v.webhook_id).await.unwrap();
    let in_use = observed.as_ref().and_then(|w| w.signature_configuration.as_ref()).and_then(|s| s.signing_key_id);
    apply_signing_key(fa, v, in_use).await.unwrap();
    let plan = tenant_switches::plan(fa, v).await.unwrap();
    let mut claims = tenant_switches::claims_of(observed.as_ref());
    claims.extend(plan.off.iter().cloned());
    let mut desired = fusionauth_webhook(v, "authorization-value");
    tenant_switches::record(&mut desired, &claims);
    let change = apply_webhook(fa, v.webhook_id, &desired, observed.as_ref()).await.unwrap();
    tenant_switches::turn_on(fa, &plan).await.unwrap();
    (change, claims.into_iter().collect())
}

fn key_id(v: &Validated) -> Uuid {
    match &v.signing {
        Some(Signing::Hmac { key_id, .. }) => *key_id,
        _ => unreachable!(),
    }
}

async fn apply_over(fa: &FusionAuthClient, v: &Validated, desired: &Webhook) -> Result<WebhookChange, ApplyError> {
    let observed = fa.retrieve_webhook(v.webhook_id).await?;
    apply_webhook(fa, v.webhook_id, desired, observed.as_ref()).await
}

#[tokio::test]
async fn first_reconcile_registers_and_the_second_writes_nothing() {
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let v = validated();

    let (change, claims) = register(&fa, &v).await;
    assert_eq!(change, WebhookChange::Created);
    assert_eq!(claims, [format!("{DEFAULT_TENANT_ID}/user.create"), format!("{DEFAULT_TENANT_ID}/user.delete")]);

    let stored = fa.retrieve_webhook(v.webhook_id).await.unwrap().unwrap();
    assert_eq!(stored.headers["Authorization"], "authorization-value");
    assert_eq!(stored.signature_configuration.as_ref().unwrap().signing_key_id, Some(key_id(&v)));
    assert_eq!(tenant_switches::claims_of(Some(&stored)).into_iter().collect::<Vec<_>>(), claims, "the claims live in FusionAuth");
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert_eq!(config.events["user.delete"].transaction_type, TransactionType::SimpleMajority);
    let after_first = writes(&emulator);
    assert_eq!(after_first, 3, "import key, create webhook, one tenant patch: {:?}", emulator.calls());

    // Steady state: reads only (the key is known from the webhook: not even read).
    let key_reads = emulator.calls().get("GET /api/key/{id}").copied().unwrap_or(0);
    let (change, again) = register(&fa, &v).await;
    assert_eq!((change, again), (WebhookChange::Unchanged, claims));
    assert_eq!(writes(&emulator), after_first, "the second reconcile made a write: {:?}", emulator.calls());
    assert_eq!(emulator.calls().get("GET /api/key/{id}").copied().unwrap_or(0), key_reads);
}

#[tokio::test]
async fn drift_is_repaired_and_a_deleted_webhook_recreated() {
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let v = validated();
    let desired = fusionauth_webhook(&v, "authorization-value");
    apply_signing_key(&fa, &v, None).await.unwrap();
    apply_over(&fa, &v, &desired).await.unwrap();

    // Someone edits it in the admin UI: a different URL, an extra data key.
    {
        let mut state = emulator.state();
        let webhook = state.webhooks.get_mut(&v.webhook_id).unwrap();
        webhook["url"] = json!("http://elsewhere.example/hook");
        webhook["data"]["note"] = json!("added by hand");
    }
    let change = apply_over(&fa, &v, &desired).await.unwrap();
    assert_eq!(change, WebhookChange::Updated { fields: vec!["url"] });
    let repaired = fa.retrieve_webhook(v.webhook_id).await.unwrap().unwrap();
    assert_eq!(repaired.url, desired.url);
    assert_eq!(repaired.data["note"], "added by hand", "what we do not own is kept");

    fa.delete_webhook(v.webhook_id).await.unwrap();
    assert_eq!(apply_over(&fa, &v, &desired).await.unwrap(), WebhookChange::Created);
}

#[tokio::test]
async fn errors_name_what_the_user_must_fix() {
    let (emulator, running) = fusionauth().await;
    let v = validated();
    let desired = fusionauth_webhook(&v, "x");

    emulator.add_api_key("tenant-key", Some(tenant()));
    let err = apply_over(&client(&running.url(), "tenant-key"), &v, &desired).await.unwrap_err();
    assert_eq!(err.reason(), Reason::ApiKeyRejected);
    assert!(err.to_string().contains("global API key"));

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let err = apply_over(&client(&format!("http://{closed}/"), KEY), &v, &desired).await.unwrap_err();
    assert_eq!(err.reason(), Reason::FusionAuthUnreachable);

    emulator.inject_faults(503, 5);
    let err = apply_over(&client(&running.url(), KEY), &v, &desired).await.unwrap_err();
    assert_eq!(err.reason(), Reason::FusionAuthUnreachable);
}

#[tokio::test]
async fn cleanup_removes_only_what_this_resource_added() {
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let v = validated();
    // An administrator had user.create on already; someone else's switch too.
    {
        let mut state = emulator.state();
        let events = &mut state.tenants.get_mut(&tenant()).unwrap()["eventConfiguration"]["events"];
        events["user.create"] = json!({"enabled": true, "transactionType": "SimpleMajority"});
        events["user.login.success"] = json!({"enabled": true, "transactionType": "None"});
    }
    let (_, claims) = register(&fa, &v).await;
    assert_eq!(claims, [format!("{DEFAULT_TENANT_ID}/user.delete")], "only what was off is ours");

    let keys = [key_id(&v)].into();
    remove_from(&fa, v.webhook_id, keys).await.unwrap();
    assert_eq!(fa.retrieve_webhook(v.webhook_id).await.unwrap(), None);
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert!(!config.events["user.delete"].enabled, "ours: turned off");
    assert!(config.events["user.create"].enabled, "the administrator's: stays on");
    assert!(config.events["user.login.success"].enabled, "not ours: untouched");
    assert_eq!(fa.retrieve_key(key_id(&v)).await.unwrap(), None);

    // Clean-up is idempotent: everything already gone is fine.
    remove_from(&fa, v.webhook_id, [key_id(&v)].into()).await.unwrap();

    // FusionAuth down: the error says so, and the caller keeps its finalizer.
    running.stop().await;
    let err = remove_from(&fa, v.webhook_id, [key_id(&v)].into()).await.unwrap_err();
    assert_eq!(err.reason(), Reason::FusionAuthUnreachable);
}

#[tokio::test]
async fn a_switch_two_namespaces_share_stays_on_while_either_listens() {
    let (_emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    // Two resources in two namespaces (their controllers may not see each other).
    let first = validated_as("team-a", "11111111-0000-4000-8000-00000000000a");
    let second = validated_as("team-b", "22222222-0000-4000-8000-00000000000b");
    let (_, first_claims) = register(&fa, &first).await;
    let (_, second_claims) = register(&fa, &second).await;
    assert_eq!(first_claims.len(), 2, "the first turned both switches on");
    assert!(second_claims.is_empty(), "the second found them on: not its own");

    // The one that turned them on goes: the other still listens, so they stay on.
    remove_from(&fa, first.webhook_id, [key_id(&first)].into()).await.unwrap();
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert!(config.events["user.delete"].enabled && config.events["user.create"].enabled);
    // The other goes too: it never claimed them, so they stay on (never off while unsure who needs them).
    remove_from(&fa, second.webhook_id, [key_id(&second)].into()).await.unwrap();
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert!(config.events["user.delete"].enabled);

    // The reverse order. An administrator turns them off; the first claims them again.
    let off = json!({"enabled": false, "transactionType": "None"});
    let off: fusionhook_fusionauth::model::EventConfigurationData = serde_json::from_value(off).unwrap();
    fa.patch_tenant_events(tenant(), &[("user.delete".to_owned(), off), ("user.create".to_owned(), off)].into()).await.unwrap();
    let (_, first_claims) = register(&fa, &first).await;
    let (_, second_claims) = register(&fa, &second).await;
    assert_eq!((first_claims.len(), second_claims.len()), (2, 0));
    // The other leaves first: nothing of its own to turn off, and the claimer still listens.
    remove_from(&fa, second.webhook_id, [key_id(&second)].into()).await.unwrap();
    assert!(fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap().events["user.delete"].enabled);
    // The claimer leaves last, when nobody else listens: off.
    remove_from(&fa, first.webhook_id, [key_id(&first)].into()).await.unwrap();
    let config = fa.retrieve_tenant_event_configuration(tenant()).await.unwrap().unwrap();
    assert!(!config.events["user.delete"].enabled && !config.events["user.create"].enabled);
}

#[tokio::test]
async fn a_resync_reads_all_webhooks_of_a_fusionauth_with_one_call() {
    use fusionhook_operator::reconcile::observe::Snapshots;
    let (emulator, running) = fusionauth().await;
    let fa = client(&running.url(), KEY);
    let resources: Vec<Validated> =
        (0..20).map(|i| validated_as(&format!("team-{i}"), &format!("00000000-0000-4000-8000-{i:012}"))).collect();
    for v in &resources {
        apply_signing_key(&fa, v, None).await.unwrap();
        apply_webhook(&fa, v.webhook_id, &fusionauth_webhook(v, "x"), None).await.unwrap();
    }
    let calls = |emulator: &Emulator, call: &str| emulator.calls().get(call).copied().unwrap_or(0);
    let snapshots = Snapshots::new(Duration::from_secs(60));
    let connection = [7u8; 32];
    // Twenty reconciles, at once: one listing serves them all.
    let reads = resources.iter().map(|v| snapshots.webhook(connection, &fa, v.webhook_id));
    let seen = futures::future::join_all(reads).await;
    assert!(seen.iter().zip(&resources).all(|(w, v)| w.as_ref().unwrap().as_ref().unwrap().id == Some(v.webhook_id)));
    assert_eq!((calls(&emulator, "GET /api/webhook"), calls(&emulator, "GET /api/webhook/{id}")), (1, 0));

    // A second look at one of them in the same window reads it fresh (after our own write, it must).
    let first = &resources[0];
    emulator.state().webhooks.get_mut(&first.webhook_id).unwrap()["url"] = json!("http://changed/");
    let again = snapshots.webhook(connection, &fa, first.webhook_id).await.unwrap().unwrap();
    assert_eq!(again.url, "http://changed/");
    // A webhook the listing does not hold is read directly, never assumed absent.
    let created_since = validated_as("late", "00000000-0000-4000-8000-999999999999");
    apply_signing_key(&fa, &created_since, None).await.unwrap();
    apply_webhook(&fa, created_since.webhook_id, &fusionauth_webhook(&created_since, "x"), None).await.unwrap();
    assert!(snapshots.webhook(connection, &fa, created_since.webhook_id).await.unwrap().is_some());
    assert_eq!((calls(&emulator, "GET /api/webhook"), calls(&emulator, "GET /api/webhook/{id}")), (1, 2));

    // A webhook a pass may have written since the listing started is read directly.
    let fresh = Snapshots::new(Duration::from_secs(60));
    fresh.webhook(connection, &fa, resources[2].webhook_id).await.unwrap();
    fresh.written(connection, resources[3].webhook_id).await;
    fresh.webhook(connection, &fa, resources[3].webhook_id).await.unwrap();
    assert_eq!((calls(&emulator, "GET /api/webhook"), calls(&emulator, "GET /api/webhook/{id}")), (2, 3));

    // Once older than its age, a listing is fetched again.
    let short = Snapshots::new(Duration::from_millis(50));
    short.webhook(connection, &fa, first.webhook_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    short.webhook(connection, &fa, resources[1].webhook_id).await.unwrap();
    assert_eq!(calls(&emulator, "GET /api/webhook"), 4);

    // A listing that fails is not retried by every reconcile: they read directly for a while.
    emulator.inject_faults(503, 2);
    let failing = Snapshots::new(Duration::from_secs(60));
    assert!(failing.webhook(connection, &fa, resources[4].webhook_id).await.unwrap().is_some());
    let lists = calls(&emulator, "GET /api/webhook");
    assert!(failing.webhook(connection, &fa, resources[5].webhook_id).await.unwrap().is_some());
    assert_eq!(calls(&emulator, "GET /api/webhook"), lists, "no second listing while resting");
}
