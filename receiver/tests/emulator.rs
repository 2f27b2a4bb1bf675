//! The real receiver behind the FusionAuth emulator: what FusionAuth delivers
//! (signed and unsigned) is accepted and handled, the emulator's report shows
//! the 200s, and a receiver that answers 500 vetoes a transactional event
//! under `AbsoluteMajority` (FACTS.md §c.4).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Receiver;
use fusionhook_fusionauth::client::{ApiKey, ClientConfig, FusionAuthClient, RetryPolicy};
use fusionhook_fusionauth::model::{EventConfigurationData, SignatureConfiguration, TransactionType, Webhook};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, Emulator, Settings};
use fusionhook_tests::todo::{TodoService, TodoStore};
use serde_json::json;
use uuid::Uuid;

const KEY: &str = "global-api-key";
const ALICE: &str = "00000000-0000-0001-0000-00000000a11c";
const BOB: &str = "00000000-0000-0001-0000-000000000b0b";
const AUTHORIZATION: &str = "receiver-authorization-value";
const HMAC_SECRET: &str = "receiver-hmac-secret";

fn receiver_yaml(todo: std::net::SocketAddr, signed: bool) -> String {
    let signature = if signed { format!("\n  signature: {{algorithms: [HS256], hmacSecret: {HMAC_SECRET}}}") } else { String::new() };
    format!(
        "auth:\n  authorization: {AUTHORIZATION}{signature}\nroutes:\n  - name: todo-cleanup\n    events: [user.delete]\n    http:\n      method: DELETE\n      url: 'http://{todo}/users/{{{{event.user.id}}}}/todos'\n      timeoutMs: 1000\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_handles_what_fusionauth_delivers() {
    let emulator = Emulator::new(Settings { api_key: KEY.into(), retry_delay: Duration::ZERO });
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut config = ClientConfig::new(running.url().parse().unwrap(), ApiKey::new(KEY));
    config.retry = RetryPolicy::none();
    let client = FusionAuthClient::new(config).unwrap();
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID).unwrap();

    let store = TodoStore::with(&[(ALICE, &["buy milk"]), (BOB, &["fix bike"])]);
    let todo = TodoService::start(store.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let signed = Receiver::start(&receiver_yaml(todo.addr, true));
    let unsigned = Receiver::start(&receiver_yaml(todo.addr, false));

    let key_id = Uuid::new_v4();
    client.import_hmac_key(key_id, "receiver signing", "HS256", HMAC_SECRET).await.unwrap();
    let register = async |receiver: &Receiver, signing: Option<Uuid>| {
        let webhook = Webhook {
            url: receiver.url("/events"),
            connect_timeout: 1000,
            read_timeout: 2000,
            events_enabled: BTreeMap::from([("user.delete".into(), true)]),
            global: true,
            headers: BTreeMap::from([("Authorization".into(), AUTHORIZATION.into())]),
            signature_configuration: signing.map(|k| SignatureConfiguration { enabled: true, signing_key_id: Some(k) }),
            ..Webhook::default()
        };
        let id = Uuid::new_v4();
        client.create_webhook(id, &webhook).await.unwrap();
        id
    };
    register(&signed, Some(key_id)).await;
    register(&unsigned, None).await;
    let switch = EventConfigurationData { enabled: true, transaction_type: TransactionType::AbsoluteMajority };
    client.patch_tenant_events(tenant, &BTreeMap::from([("user.delete".to_owned(), switch)])).await.unwrap();

    let report = emulator.raise(Some(tenant), json!({"type": "user.delete", "user": {"id": ALICE}})).await.unwrap();
    assert_eq!(report.webhooks.len(), 2);
    for delivery in &report.webhooks {
        assert_eq!(delivery.attempts[0].status_code, Some(200), "{delivery:?}");
    }
    assert!(!report.vetoed);
    assert!(store.todos(ALICE).is_empty());
    assert_eq!(store.count(&http::Method::DELETE), 2, "each receiver ran its route once");

    // The todo service is down: both receivers answer 500 and the user's
    // deletion would be rolled back (504 to the caller).
    todo.stop().await;
    let report = emulator.raise(Some(tenant), json!({"type": "user.delete", "user": {"id": BOB}})).await.unwrap();
    assert!(report.vetoed, "{report:?}");
    for delivery in &report.webhooks {
        assert_eq!(delivery.attempts.len(), 1, "no retries after a failed transaction");
        assert_eq!(delivery.attempts[0].status_code, Some(500));
    }
    assert_eq!(store.todos(BOB), vec!["fix bike"]);
    running.stop().await;
}
