//! The FusionAuth client against the emulator: every call, every error class,
//! and the emulator's answers where they matter (status codes, error bodies,
//! PATCH semantics, the global-key rule). FACTS.md sections in comments.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use fusionhook_fusionauth::client::{ApiKey, ClientConfig, ClientError, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::{
    EventConfigurationData, TransactionType, Webhook, WebhookEventLogSearchCriteria, WebhookSearchCriteria,
};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, Emulator, RunningEmulator, Settings};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "global-api-key";
const RSA_PRIVATE: &str = include_str!("../../fusionauth/tests/fixtures/keys/rsa-private.pem");

async fn emulator() -> (Emulator, RunningEmulator) {
    let emulator = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO });
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (emulator, running)
}

fn client_for(url: &str, key: &str, retry: RetryPolicy) -> FusionAuthClient {
    let mut config = ClientConfig::new(url.parse().unwrap(), ApiKey::new(key));
    config.retry = retry;
    config.timeout = Duration::from_millis(700);
    config.connect_timeout = Duration::from_millis(300);
    FusionAuthClient::new(config).unwrap()
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy { attempts, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) }
}

fn webhook(url: &str) -> Webhook {
    Webhook {
        url: url.into(),
        connect_timeout: 1000,
        read_timeout: 2000,
        events_enabled: BTreeMap::from([("user.delete".into(), true)]),
        global: true,
        headers: BTreeMap::from([("Authorization".into(), "receiver-secret".into())]),
        description: Some("fusionhook test".into()),
        ..Webhook::default()
    }
}

fn default_tenant() -> Uuid {
    Uuid::parse_str(DEFAULT_TENANT_ID).unwrap()
}

#[tokio::test]
async fn webhook_crud_and_search() {
    let (_emulator, running) = emulator().await;
    let client = client_for(&running.url(), KEY, fast_retry(1));
    let id = Uuid::new_v4();

    let created = client.create_webhook(id, &webhook("http://receiver.ns.svc:8080/events")).await.unwrap();
    assert_eq!(created.id, Some(id));
    assert_eq!(created.headers["Authorization"], "receiver-secret");
    assert!(created.insert_instant.is_some());
    assert!(!format!("{created:?}").contains("receiver-secret"), "Debug never shows header values");

    assert_eq!(client.retrieve_webhook(id).await.unwrap(), Some(created.clone()));
    assert_eq!(client.retrieve_webhook(Uuid::new_v4()).await.unwrap(), None, "404 is absent, not an error");

    let other = Uuid::new_v4();
    let mut scoped = webhook("http://another.example/hook");
    scoped.global = false;
    scoped.tenant_ids = vec![default_tenant()];
    scoped.description = None;
    client.create_webhook(other, &scoped).await.unwrap();
    let all = client.retrieve_webhooks().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].url, "http://another.example/hook", "sorted by url");

    let found = client.search_webhooks(&WebhookSearchCriteria { url: Some("RECEIVER.ns".into()), ..Default::default() }).await.unwrap();
    assert_eq!((found.total, found.webhooks[0].id), (1, Some(id)), "case-insensitive, *value* by default");
    let by_tenant =
        client.search_webhooks(&WebhookSearchCriteria { tenant_id: Some(default_tenant()), ..Default::default() }).await.unwrap();
    assert_eq!(by_tenant.total, 2, "the tenant's webhooks plus every global one");
    let wildcard =
        client.search_webhooks(&WebhookSearchCriteria { url: Some("http://another*".into()), ..Default::default() }).await.unwrap();
    assert_eq!(wildcard.total, 1);

    let mut changed = created.clone();
    changed.description = None;
    changed.events_enabled.insert("user.create".into(), true);
    let updated = client.update_webhook(id, &changed).await.unwrap();
    assert_eq!(updated.description, None, "PUT replaces the whole object");
    assert_eq!(updated.events_enabled.len(), 2);
    assert_eq!(updated.insert_instant, created.insert_instant);

    assert!(client.delete_webhook(id).await.unwrap());
    assert!(!client.delete_webhook(id).await.unwrap(), "deleting what is gone is fine");
    assert!(matches!(client.update_webhook(id, &changed).await, Err(ClientError::NotFound { .. })));
}

#[tokio::test]
async fn validation_errors_come_back_as_a_field_map() {
    let (emulator, running) = emulator().await;
    let client = client_for(&running.url(), KEY, fast_retry(4));
    let id = Uuid::new_v4();
    client.create_webhook(id, &webhook("http://x.example/")).await.unwrap();

    let expect = async |w: Webhook, id: Uuid, field: &str, code: &str| match client.create_webhook(id, &w).await {
        Err(ClientError::Invalid { errors, .. }) => {
            let entries = errors.field_errors.get(field).unwrap_or_else(|| panic!("no {field} in {errors:?}"));
            assert_eq!(entries[0].code, code, "{errors}");
        }
        other => panic!("expected 400 for {field}, got {other:?}"),
    };
    expect(webhook(""), Uuid::new_v4(), "webhook.url", "[missing]webhook.url").await;
    expect(webhook("ftp://x"), Uuid::new_v4(), "webhook.url", "[invalid]webhook.url").await;
    expect(
        Webhook { connect_timeout: 0, ..webhook("http://x/") },
        Uuid::new_v4(),
        "webhook.connectTimeout",
        "[invalid]webhook.connectTimeout",
    )
    .await;
    expect(Webhook { read_timeout: 0, ..webhook("http://x/") }, Uuid::new_v4(), "webhook.readTimeout", "[invalid]webhook.readTimeout")
        .await;
    expect(webhook("http://x/"), id, "webhookId", "[duplicate]webhookId").await;
    expect(
        Webhook { tenant_ids: vec![default_tenant()], ..webhook("http://x/") },
        Uuid::new_v4(),
        "webhook.tenantIds",
        "[invalid]webhook.tenantIds",
    )
    .await;
    expect(
        Webhook { global: false, tenant_ids: vec![Uuid::new_v4()], ..webhook("http://x/") },
        Uuid::new_v4(),
        "webhook.tenantIds",
        "[invalid]webhook.tenantIds",
    )
    .await;
    let mut unknown = webhook("http://x/");
    unknown.events_enabled.insert("user.teleport".into(), true);
    expect(unknown, Uuid::new_v4(), "webhook.eventsEnabled", "[invalidJSON]").await;
    let mut unsigned = webhook("http://x/");
    unsigned.signature_configuration = Some(fusionhook_fusionauth::model::SignatureConfiguration { enabled: true, signing_key_id: None });
    expect(unsigned, Uuid::new_v4(), "webhook.signatureConfiguration.signingKeyId", "[missing]webhook.signatureConfiguration.signingKeyId")
        .await;

    // Missing timeouts and a missing `webhook` need raw JSON.
    let http = reqwest::Client::new();
    let raw = |body: Value| {
        http.post(format!("{}/api/webhook/{}", running.url(), Uuid::new_v4())).header("authorization", KEY).json(&body).send()
    };
    let answer: Value = raw(json!({"webhook": {"url": "http://x/"}})).await.unwrap().json().await.unwrap();
    assert_eq!(answer["fieldErrors"]["webhook.connectTimeout"][0]["code"], "[missing]webhook.connectTimeout");
    assert_eq!(answer["fieldErrors"]["webhook.readTimeout"][0]["code"], "[missing]webhook.readTimeout");
    let answer: Value = raw(json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(answer["fieldErrors"]["webhook"][0]["code"], "[missing]webhook");

    // 4xx are never retried: one call per request above.
    let posts = emulator.calls()["POST /api/webhook/{id}"];
    assert_eq!(posts, 1 + 9 + 2, "{:?}", emulator.calls());
}

#[tokio::test]
async fn wrong_and_tenant_scoped_keys_get_401_with_an_empty_body() {
    let (emulator, running) = emulator().await;
    let tenant = default_tenant();
    emulator.add_api_key("tenant-key", Some(tenant));
    for key in ["wrong-key", "tenant-key"] {
        let client = client_for(&running.url(), key, fast_retry(4));
        let error = client.retrieve_webhooks().await.unwrap_err();
        assert!(matches!(error, ClientError::Unauthorized { .. }), "{error:?}");
        assert!(error.to_string().contains("global API key"), "the hint says what to do: {error}");
        assert!(!error.to_string().contains(key));
    }
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/api/webhook", running.url()))
        .header("authorization", KEY)
        .header("X-FusionAuth-TenantId", DEFAULT_TENANT_ID)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a global key with a tenant header is tenant-scoped too");
    assert!(response.bytes().await.unwrap().is_empty());
    // A tenant-scoped key may still read its own tenant.
    let tenant_client = client_for(&running.url(), "tenant-key", fast_retry(1));
    assert!(tenant_client.retrieve_tenant_event_configuration(tenant).await.unwrap().is_some());
    let unknown = http.get(format!("{}/api/webhook/{}", running.url(), Uuid::new_v4())).header("authorization", KEY).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.bytes().await.unwrap().is_empty(), "404 has an empty body");
}

#[tokio::test]
async fn server_errors_and_429_are_retried_with_backoff_then_reported() {
    let (emulator, running) = emulator().await;
    let client = client_for(&running.url(), KEY, fast_retry(4));
    emulator.inject_faults(503, 2);
    emulator.inject_faults(429, 1);
    assert!(client.retrieve_webhooks().await.is_ok(), "three failures, then success");
    assert_eq!(emulator.calls()["GET /api/webhook"], 4);

    emulator.inject_faults(500, 10);
    match client.retrieve_webhooks().await {
        Err(ClientError::Server { status: 500, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(emulator.calls()["GET /api/webhook"], 8, "four attempts in all");
}

#[tokio::test]
async fn timeouts_connection_failures_and_tls_are_told_apart() {
    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let client = client_for(&format!("http://{silent_addr}/"), KEY, fast_retry(2));
    assert!(matches!(client.retrieve_webhooks().await, Err(ClientError::Timeout { .. })));

    let closed = { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap() };
    let client = client_for(&format!("http://{closed}/"), KEY, fast_retry(2));
    match client.retrieve_webhooks().await {
        Err(e @ ClientError::Connect { .. }) => assert!(!e.to_string().contains(KEY)),
        other => panic!("{other:?}"),
    }

    let (_emulator, running) = emulator().await;
    let https = running.url().replace("http://", "https://");
    let client = client_for(&https, KEY, fast_retry(1));
    assert!(matches!(client.retrieve_webhooks().await, Err(ClientError::Tls { .. })), "https to a plain-HTTP server fails in TLS");
}

#[tokio::test]
async fn tenant_event_switches_change_only_the_entries_we_send() {
    let (emulator, running) = emulator().await;
    let client = client_for(&running.url(), KEY, fast_retry(1));
    let tenant = default_tenant();
    assert!(
        client.retrieve_tenant_event_configuration(tenant).await.unwrap().unwrap().events.is_empty(),
        "a new tenant has nothing enabled"
    );
    assert_eq!(client.retrieve_tenant_event_configuration(Uuid::new_v4()).await.unwrap(), None);

    // Someone else's switch, set by hand in the admin UI.
    emulator.state().tenants.get_mut(&tenant).unwrap()["eventConfiguration"]["events"]["user.create"] =
        json!({"enabled": true, "transactionType": "Any"});
    let on = EventConfigurationData { enabled: true, transaction_type: TransactionType::AbsoluteMajority };
    let config = client.patch_tenant_events(tenant, &BTreeMap::from([("user.delete".to_owned(), on)])).await.unwrap();
    assert_eq!(config.events["user.delete"], on);
    assert_eq!(config.events["user.create"].transaction_type, TransactionType::Any, "untouched");

    let off = EventConfigurationData { enabled: false, transaction_type: TransactionType::None };
    let config = client.patch_tenant_events(tenant, &BTreeMap::from([("user.delete".to_owned(), off)])).await.unwrap();
    assert!(!config.events["user.delete"].enabled);
    assert!(config.events["user.create"].enabled);
    assert_eq!(emulator.calls()["PATCH /api/tenant/{id}"], 2);
    assert!(matches!(client.patch_tenant_events(Uuid::new_v4(), &BTreeMap::new()).await, Err(ClientError::NotFound { .. })));
    let bad = client.patch_tenant_events(tenant, &BTreeMap::from([("user.teleport".to_owned(), on)])).await;
    assert!(matches!(bad, Err(ClientError::Invalid { .. })), "{bad:?}");
}

#[tokio::test]
async fn the_three_patch_content_types_have_their_real_semantics() {
    let (emulator, running) = emulator().await;
    let second = Uuid::new_v4();
    emulator.add_tenant(second, "Second");
    let client = client_for(&running.url(), KEY, fast_retry(1));
    let id = Uuid::new_v4();
    client
        .create_webhook(id, &Webhook { global: false, tenant_ids: vec![default_tenant()], ..webhook("http://x.example/") })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let patch = |content_type: &'static str, body: Value| {
        http.patch(format!("{}/api/webhook/{id}", running.url()))
            .header("authorization", KEY)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
    };
    let answer: Value = patch("application/json", json!({"webhook": {"tenantIds": [second]}})).await.unwrap().json().await.unwrap();
    assert_eq!(answer["webhook"]["tenantIds"].as_array().unwrap().len(), 2, "legacy PATCH appends to arrays");
    let answer: Value = patch("application/merge-patch+json", json!({"webhook": {"tenantIds": [second], "description": null}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["webhook"]["tenantIds"], json!([second]), "merge-patch replaces arrays");
    assert!(answer["webhook"].get("description").is_none(), "null removes");
    let answer: Value = patch("application/json-patch+json", json!([{"op": "replace", "path": "/webhook/readTimeout", "value": 3000}]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["webhook"]["readTimeout"], 3000);
    let invalid = patch("application/merge-patch+json", json!({"webhook": {"readTimeout": 0}})).await.unwrap();
    assert_eq!(invalid.status(), 400, "a patch that breaks the webhook is refused");
    assert_eq!(client.retrieve_webhook(id).await.unwrap().unwrap().read_timeout, 3000, "and nothing changed");
}

#[tokio::test]
async fn keys_jwks_and_the_event_log() {
    let (emulator, running) = emulator().await;
    let client = client_for(&running.url(), KEY, fast_retry(1));
    let hmac_id = Uuid::new_v4();
    assert_eq!(client.retrieve_key(hmac_id).await.unwrap(), None);
    let key = client.import_hmac_key(hmac_id, "fusionhook ns/name", "HS256", "shared-secret-value").await.unwrap();
    assert_eq!(key.id, Some(hmac_id));
    assert_eq!(key.kind.as_deref(), Some("HMAC"));
    assert!(!serde_json::to_string(&key).unwrap().contains("shared-secret-value"), "the secret is never returned");
    assert_eq!(client.retrieve_key(hmac_id).await.unwrap().unwrap().algorithm.as_deref(), Some("HS256"));
    assert!(matches!(client.import_hmac_key(hmac_id, "again", "HS256", "x").await, Err(ClientError::Invalid { .. })));

    let rsa_id = Uuid::new_v4();
    let http = reqwest::Client::new();
    let imported = http
        .post(format!("{}/api/key/import/{rsa_id}", running.url()))
        .header("authorization", KEY)
        .json(&json!({"key": {"algorithm": "RS256", "name": "rsa", "privateKey": RSA_PRIVATE, "kid": "rsa-kid"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let jwks = client.fetch_jwks().await.unwrap();
    let parsed = fusionhook_fusionauth::jwks::parse_jwks(jwks.to_string().as_bytes()).unwrap();
    assert!(parsed.contains_key("rsa-kid"));
    assert_eq!(parsed.len(), 1, "HMAC keys are never published");

    // Raise an event and find it in the Webhook Event Log.
    let report = emulator.raise(Some(default_tenant()), json!({"type": "user.delete", "user": {"id": "u-1"}})).await.unwrap();
    let logs = client
        .search_webhook_event_logs(&WebhookEventLogSearchCriteria { event_type: Some("user.delete".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(logs.total, 1);
    assert_eq!(logs.webhook_event_logs[0].id, report.event_log_id);
    assert_eq!(logs.webhook_event_logs[0].event_result.as_deref(), Some("Succeeded"));
    let none = client
        .search_webhook_event_logs(&WebhookEventLogSearchCriteria { event_type: Some("user.create".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
}

/// FusionAuth behind TLS with a private CA: trusted with `ca_pem`, refused without.
#[tokio::test]
async fn a_private_ca_bundle_is_trusted_only_when_given() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio_rustls::rustls;

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();

    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server.der().clone()], rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO }).router();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });

    let url = format!("https://localhost:{port}/");
    let untrusted = client_for(&url, KEY, fast_retry(1));
    assert!(matches!(untrusted.retrieve_webhooks().await, Err(ClientError::Tls { .. })), "an unknown CA is refused");

    let mut config = ClientConfig::new(url.parse().unwrap(), ApiKey::new(KEY));
    config.ca_pem = Some(ca.pem().into_bytes());
    config.retry = fast_retry(1);
    let trusted = FusionAuthClient::new(config).unwrap();
    assert_eq!(trusted.retrieve_webhooks().await.unwrap(), Vec::new());
}

/// What backfill relies on in the Webhook Event Log (FACTS.md §c.7): an
/// entry is `Running` from the start and gets its attempts and result
/// afterwards (`Succeeded`, or `Failed` when rolled back), search pages
/// and sorts as asked with whole-minute windows, nothing is recorded while
/// the log is off, retention deletes old entries, and a key without
/// permission for the endpoint gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_event_log_records_results_pages_sorts_and_obeys_its_switches() {
    let (emulator, running) = emulator().await;
    let client = client_for(&running.url(), KEY, fast_retry(1));
    // A receiver that answers 200 after 600 ms, and one that is not there.
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_url = format!("http://{}/hook", slow.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        "ok"
    });
    tokio::spawn(async move { axum::serve(slow, app).await });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut fine = webhook(&slow_url);
    fine.events_enabled = BTreeMap::from([("user.create".into(), true), ("user.registration.create".into(), true)]);
    let fine_id = Uuid::new_v4();
    client.create_webhook(fine_id, &fine).await.unwrap();
    let mut veto = webhook(&format!("http://{closed}/veto"));
    veto.events_enabled = BTreeMap::from([("user.registration.create".into(), true)]);
    client.create_webhook(Uuid::new_v4(), &veto).await.unwrap();
    {
        let mut state = emulator.state();
        let events = &mut state.tenants.get_mut(&default_tenant()).unwrap()["eventConfiguration"]["events"];
        events["user.create"] = json!({"enabled": true, "transactionType": "None"});
        events["user.registration.create"] = json!({"enabled": true, "transactionType": "AbsoluteMajority"});
    }
    let search = |criteria: WebhookEventLogSearchCriteria| {
        let client = client.clone();
        async move { client.search_webhook_event_logs(&criteria).await.unwrap() }
    };

    // Running while it is being delivered, then Succeeded with the attempt.
    let raising = {
        let emulator = emulator.clone();
        tokio::spawn(async move { emulator.raise(Some(default_tenant()), json!({"type": "user.create", "user": {"id": "u-1"}})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = search(WebhookEventLogSearchCriteria::default()).await;
    assert_eq!(during.webhook_event_logs[0].event_result.as_deref(), Some("Running"));
    assert!(during.webhook_event_logs[0].attempts.is_empty());
    let created = raising.await.unwrap().unwrap();
    let id = created.event_log_id.unwrap();
    let after = search(WebhookEventLogSearchCriteria::default()).await.webhook_event_logs[0].clone();
    assert_eq!((after.id, after.event_result.as_deref()), (Some(id), Some("Succeeded")));
    assert_eq!(after.attempts.len(), 1);
    assert_eq!((after.attempts[0].webhook_id, after.attempts[0].attempt_result.as_deref()), (Some(fine_id), Some("Success")));
    assert_eq!(after.event.as_ref().unwrap()["event"]["id"], created.event["id"], "the payload as sent");

    // Vetoed by the other webhook: rolled back, Failed.
    let vetoed = emulator
        .raise(Some(default_tenant()), json!({"type": "user.registration.create", "user": {"id": "u-1"}, "registration": {}}))
        .await
        .unwrap();
    assert!(vetoed.vetoed);
    let failed = search(WebhookEventLogSearchCriteria { event_result: Some("Failed".into()), ..Default::default() }).await;
    assert_eq!(failed.webhook_event_logs.iter().map(|l| l.id).collect::<Vec<_>>(), [vetoed.event_log_id]);

    // Sorting and paging.
    for i in 2..=5 {
        emulator.raise(Some(default_tenant()), json!({"type": "user.create", "user": {"id": format!("u-{i}")}})).await.unwrap();
    }
    let sequences = |page: fusionhook_fusionauth::model::WebhookEventLogSearchResult| {
        page.webhook_event_logs.iter().map(|l| l.sequence.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(sequences(search(WebhookEventLogSearchCriteria::default()).await), [6, 5, 4, 3, 2, 1], "insertInstant DESC by default");
    let ascending = WebhookEventLogSearchCriteria { order_by: Some("sequence ASC".into()), ..Default::default() };
    let page = WebhookEventLogSearchCriteria { start_row: Some(2), number_of_results: Some(3), ..ascending.clone() };
    let second = search(page).await;
    assert_eq!((second.total, sequences(second)), (6, vec![3, 4, 5]));
    let wrong = WebhookEventLogSearchCriteria { order_by: Some("sequence UP".into()), ..Default::default() };
    assert!(matches!(client.search_webhook_event_logs(&wrong).await, Err(ClientError::Invalid { .. })));

    // Whole minutes: a window starting just after an entry's instant still holds it.
    let instant = after.insert_instant.unwrap();
    if (instant + 1) % 60_000 != 0 {
        let narrow = WebhookEventLogSearchCriteria { start: Some(instant + 1), end: Some(instant + 1), ..ascending.clone() };
        assert!(search(narrow).await.webhook_event_logs.iter().any(|l| l.id == Some(id)), "start rounds down to the minute");
    }

    // Off: nothing recorded, and the system configuration says so.
    emulator.configure_event_log(false, None);
    assert_eq!(client.retrieve_webhook_event_log_configuration().await.unwrap().enabled, Some(false));
    let unlogged = emulator.raise(Some(default_tenant()), json!({"type": "user.create", "user": {"id": "u-9"}})).await.unwrap();
    assert_eq!(unlogged.event_log_id, None);
    assert_eq!(search(WebhookEventLogSearchCriteria::default()).await.total, 6);

    // Retention: an entry older than the days kept is gone.
    emulator.configure_event_log(true, Some(1));
    let retention = client.retrieve_webhook_event_log_configuration().await.unwrap();
    assert_eq!(retention.delete.map(|d| (d.enabled, d.number_of_days_to_retain)), Some((true, Some(1))));
    emulator.state().event_logs[0]["insertInstant"] = json!(instant - 2 * 86_400_000);
    let kept = search(WebhookEventLogSearchCriteria { start: Some(0), ..Default::default() }).await;
    assert_eq!(kept.total, 5);
    assert!(kept.webhook_event_logs.iter().all(|l| l.id != Some(id)));

    // A key without permission for the Event Log.
    emulator.add_limited_api_key("webhooks-only", &["/api/webhook", "/api/webhook/{id}"]);
    let limited = client_for(&running.url(), "webhooks-only", fast_retry(1));
    assert!(limited.retrieve_webhook(fine_id).await.unwrap().is_some());
    let refused = limited.search_webhook_event_logs(&WebhookEventLogSearchCriteria::default()).await;
    assert!(matches!(refused, Err(ClientError::Unauthorized { .. })), "{refused:?}");
}
