//! Reconcile scenarios, the whole pipeline at once: a tower-test mock API
//! server that keeps the objects written to it (so a second reconcile sees
//! the first one's result, as the controller's caches would) and records
//! every Kubernetes call, and the FusionAuth emulator for the FusionAuth side.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use fusionhook_fusionauth::client::ClientError;
use fusionhook_operator::FusionAuthWebhook;
use fusionhook_operator::context::{CacheWriters, Caches, Context, Settings};
use fusionhook_operator::metrics::Metrics;
use fusionhook_operator::names;
use fusionhook_operator::reconcile::apply::fusionauth::ApplyError;
use fusionhook_operator::reconcile::{Error, error_policy, reconcile};
use fusionhook_tests::fusionauth_emulator::{DEFAULT_TENANT_ID, Emulator, RunningEmulator, Settings as EmulatorSettings};
use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Client;
use kube::client::Body;
use kube::core::PartialObjectMetaExt;
use kube::runtime::watcher;
use serde_json::{Value, json};
use uuid::Uuid;

const NS: &str = "todo";
const NAME: &str = "todo-cleanup";
const UID: &str = "5f0c9a8e-2b1d-4c3e-9f8a-7b6c5d4e3f21";
const KEY: &str = "global-api-key-value";
const FAW: &str = "/apis/fusionhook.dev/v1alpha1/namespaces/todo/fusionauthwebhooks/todo-cleanup";

/// One Kubernetes call as the mock API server saw it.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Call {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The mock API server's memory.
#[derive(Default)]
struct Objects {
    by_path: std::collections::BTreeMap<String, Value>,
    calls: Vec<Call>,
    /// Whether receiver Deployments report available replicas.
    available: bool,
    version: u64,
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

impl Objects {
    fn answer(&mut self, call: &Call) -> (u16, Value) {
        self.version += 1;
        let version = self.version.to_string();
        let path = call.path.clone();
        match (call.method.as_str(), call.content_type.as_str()) {
            // A collection nothing was put at lists empty, as an API server's does.
            ("GET", _) if !self.by_path.contains_key(&path) && path.ends_with("/pods") => {
                (200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}))
            }
            ("GET", _) => self.by_path.get(&path).map_or_else(|| (404, status_body(404, "NotFound")), |o| (200, o.clone())),
            ("POST", _) => (201, call.body.clone()),
            ("PATCH", "application/apply-patch+yaml") => {
                let mut object = call.body.clone();
                object["metadata"]["resourceVersion"] = json!(version);
                object["metadata"]["uid"] = json!(Uuid::new_v4().to_string());
                if let Some(data) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
                    let encoded: serde_json::Map<String, Value> = data
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap()))))
                        .collect();
                    object["data"] = Value::Object(encoded);
                }
                if object["kind"] == "Deployment" {
                    let replicas = object["spec"]["replicas"].clone();
                    object["status"] =
                        // What a Deployment controller reports once the template is rolled out.
                        if self.available { json!({"replicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas}) } else { json!({}) };
                }
                self.by_path.insert(path, object.clone());
                (200, object)
            }
            ("PATCH", "application/json-patch+json") => {
                let Some(object) = self.by_path.get_mut(&path) else { return (404, status_body(404, "NotFound")) };
                // kube-apiserver (evanphx/json-patch) lets `test` with a null
                // value pass on a missing path; the json-patch crate does not.
                let ops: Vec<Value> = call
                    .body
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|op| !(op["op"] == "test" && op["value"].is_null() && object.pointer(op["path"].as_str().unwrap()).is_none()))
                    .cloned()
                    .collect();
                let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
                if json_patch::patch(object, &patch).is_err() {
                    return (422, status_body(422, "Invalid"));
                }
                object["metadata"]["resourceVersion"] = json!(version);
                (200, object.clone())
            }
            ("PATCH", "application/merge-patch+json") => {
                let target = path.strip_suffix("/status").unwrap_or(&path).to_owned();
                let Some(object) = self.by_path.get_mut(&target) else { return (404, status_body(404, "NotFound")) };
                json_patch::merge(object, &call.body);
                object["metadata"]["resourceVersion"] = json!(version);
                (200, object.clone())
            }
            ("DELETE", _) => match self.by_path.remove(&path) {
                Some(object) => (200, object),
                None => (404, status_body(404, "NotFound")),
            },
            _ => (405, status_body(405, "MethodNotAllowed")),
        }
    }
}

async fn serve(mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>, objects: Arc<Mutex<Objects>>) {
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).or_else(|_| serde_yaml::from_slice(&bytes)).unwrap()
        };
        // Every call must be one the chart's RBAC grants.
        assert!(fusionhook_operator::rbac::granted(&method, &path, &query), "not granted by rbac::PERMISSIONS: {method} {path}?{query}");
        let call = Call { method, path, query, content_type, body };
        let (status, reply) = {
            let mut objects = objects.lock().unwrap();
            let answer = objects.answer(&call);
            objects.calls.push(call);
            answer
        };
        send.send_response(Response::builder().status(status).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap());
    }
}

struct World {
    objects: Arc<Mutex<Objects>>,
    ctx: Arc<Context>,
    writers: CacheWriters,
    fusionauth: Emulator,
    running: Option<RunningEmulator>,
    url: String,
}

fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> =
        data.iter().map(|(k, v)| ((*k).to_owned(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": data})
}

impl World {
    async fn new(spec: Value) -> Self {
        let fusionauth = Emulator::new(EmulatorSettings { api_key: KEY.into(), retry_delay: Duration::ZERO });
        let running = fusionauth.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = running.url();
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let objects = Arc::new(Mutex::new(Objects { available: true, ..Objects::default() }));
        tokio::spawn(serve(handle, Arc::clone(&objects)));
        let client = Client::new(service, "default");
        let (caches, writers) = Caches::new();
        let settings = Settings {
            receiver: fusionhook_operator::reconcile::build::ReceiverDefaults { image: "fusionhook:test".into(), otlp_endpoint: None },
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            fusionauth_timeout: Duration::from_secs(2),
            ..Settings::default()
        };
        let ctx = Arc::new(Context::new(client, settings, caches, Arc::new(Metrics::new())));
        let world = Self { objects, ctx, writers, fusionauth, running: Some(running), url };
        let mut spec = spec;
        spec["fusionAuth"]["url"] = json!(world.url);
        world.put(
            FAW,
            json!({
                "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
                "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1, "resourceVersion": "1"},
                "spec": spec,
            }),
        );
        world.put(&format!("/api/v1/namespaces/{NS}/secrets/fa"), secret("fa", &[("api-key", KEY)]));
        world
    }

    fn put(&self, path: &str, object: Value) {
        self.objects.lock().unwrap().by_path.insert(path.to_owned(), object);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().by_path.get(path).cloned()
    }

    fn resource(&self) -> FusionAuthWebhook {
        serde_json::from_value(self.get(FAW).unwrap()).unwrap()
    }

    fn edit_spec(&self, edit: impl FnOnce(&mut Value)) {
        let mut object = self.get(FAW).unwrap();
        edit(&mut object["spec"]);
        object["metadata"]["generation"] = json!(object["metadata"]["generation"].as_i64().unwrap() + 1);
        self.put(FAW, object);
    }

    /// What the controller's watches would have cached by now. Deletions
    /// are not passed on: the caches lag behind, as a watch can.
    fn sync_caches(&mut self) {
        let objects = self.objects.lock().unwrap().by_path.clone();
        for (path, object) in objects {
            let meta: kube::core::ObjectMeta = serde_json::from_value(object["metadata"].clone()).unwrap();
            if path.contains("/deployments/") {
                self.writers.deployments.apply_watcher_event(&watcher::Event::Apply(serde_json::from_value::<Deployment>(object).unwrap()));
            } else if path.contains("/configmaps/") {
                self.writers.config_maps.apply_watcher_event(&watcher::Event::Apply(meta.into_response_partial::<ConfigMap>()));
            } else if path.contains("/services/") {
                self.writers.services.apply_watcher_event(&watcher::Event::Apply(meta.into_response_partial::<Service>()));
            } else if path.contains("/secrets/") {
                self.writers.secrets.apply_watcher_event(&watcher::Event::Apply(meta.into_response_partial::<Secret>()));
            }
        }
    }

    /// One reconcile of the resource as stored, after the caches caught up.
    async fn reconcile(&mut self) -> Result<kube::runtime::controller::Action, Error> {
        self.sync_caches();
        reconcile(Arc::new(self.resource()), Arc::clone(&self.ctx)).await
    }

    /// Kubernetes calls since the last `take_calls`.
    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.objects.lock().unwrap().calls)
    }

    fn fusionauth_writes(&self) -> u64 {
        self.fusionauth.calls().iter().filter(|(call, _)| !call.starts_with("GET ")).map(|(_, n)| n).sum()
    }

    fn webhook_id(&self) -> Uuid {
        names::webhook_id(UID)
    }

    fn condition(&self, kind: &str) -> (String, String, String) {
        let r = self.resource();
        let c = r.status.unwrap().conditions.into_iter().find(|c| c.type_ == kind).unwrap();
        (c.status, c.reason, c.message)
    }

    fn events(calls: &[Call]) -> Vec<(String, String)> {
        calls
            .iter()
            .filter(|c| c.path.ends_with("/events") && c.method == "POST")
            .map(|c| (c.body["type"].as_str().unwrap().to_owned(), c.body["reason"].as_str().unwrap().to_owned()))
            .collect()
    }
}

fn todo_spec() -> Value {
    json!({
        "fusionAuth": {"url": "set by World", "apiKeySecretRef": {"name": "fa", "key": "api-key"}},
        "events": ["user.delete"],
        "routes": [{"name": "todo-cleanup", "events": ["user.delete"], "http": {"method": "DELETE", "url": "http://todo/users/{{event.user.id}}/todos"}}],
    })
}

/// The writes, with a config version's content hash shown as `<hash>`.
fn writes(calls: &[Call]) -> Vec<String> {
    calls.iter().filter(|c| c.method != "GET").map(|c| versionless(&c.line())).collect()
}

fn versionless(line: &str) -> String {
    match line.rsplit_once("-receiver-") {
        Some((head, hash)) if hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => format!("{head}-receiver-<hash>"),
        _ => line.to_owned(),
    }
}

#[tokio::test]
async fn first_reconcile_deploys_then_registers_and_the_steady_state_writes_nothing() {
    let mut world = World::new(todo_spec()).await;
    world.objects.lock().unwrap().available = false;

    // Pass 1: finalizer, Secrets read, receiver applied; not available yet, so FusionAuth is not called.
    world.reconcile().await.unwrap();
    let calls = world.take_calls();
    assert_eq!(
        writes(&calls),
        [
            format!("PATCH {FAW}"),
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth".into(),
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-read".into(),
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-replay".into(),
            "PATCH /api/v1/namespaces/todo/secrets/todo-cleanup-receiver-admin-ingest".into(),
            "PATCH /api/v1/namespaces/todo/configmaps/todo-cleanup-receiver-<hash>".into(),
            "PATCH /api/v1/namespaces/todo/services/todo-cleanup-receiver".into(),
            "PATCH /apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver".into(),
            format!("PATCH {FAW}/status"),
            "POST /apis/events.k8s.io/v1/namespaces/todo/events".into(),
            "POST /apis/events.k8s.io/v1/namespaces/todo/events".into(),
        ]
    );
    assert_eq!(calls[0].content_type, "application/json-patch+json");
    assert_eq!(calls[0].body[1], json!({"op": "add", "path": "/metadata/finalizers", "value": ["fusionhook.dev/cleanup"]}));
    for apply in calls.iter().filter(|c| c.content_type == "application/apply-patch+yaml") {
        assert!(apply.query.contains("fieldManager=fusionhook-operator") && apply.query.contains("force=true"), "{}", apply.query);
        assert_eq!(apply.body["metadata"]["ownerReferences"][0]["uid"], UID);
    }
    let status_patch = calls.iter().find(|c| c.path.ends_with("/status")).unwrap();
    assert_eq!(status_patch.content_type, "application/merge-patch+json");
    assert_eq!(world.condition("ReceiverAvailable").1, "Progressing");
    assert_eq!(world.condition("Ready").0, "False");
    assert_eq!(world.condition("WebhookRegistered").0, "Unknown");
    assert_eq!(world.fusionauth_writes(), 0, "no registration before the receiver is available");

    // Pass 2: the Deployment became available; the webhook is registered.
    world.objects.lock().unwrap().available = true;
    let mut deployment = world.get("/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver").unwrap();
    deployment["status"] = json!({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
    world.put("/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver", deployment);
    world.reconcile().await.unwrap();
    let calls = world.take_calls();
    assert_eq!(writes(&calls).iter().filter(|w| w.starts_with("PATCH /api")).count(), 1, "only the status: {:?}", writes(&calls));
    let webhook = world.fusionauth.state().webhooks.get(&world.webhook_id()).cloned().unwrap();
    assert_eq!(webhook["url"], "http://todo-cleanup-receiver.todo.svc:8080/events");
    assert_eq!(webhook["eventsEnabled"], json!({"user.delete": true}));
    let generated = world.get("/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth").unwrap();
    let generated = base64::engine::general_purpose::STANDARD.decode(generated["data"]["authorization"].as_str().unwrap()).unwrap();
    assert_eq!(webhook["headers"]["Authorization"], String::from_utf8(generated.clone()).unwrap());
    assert_eq!(
        world.condition("Ready"),
        ("True".into(), "Reconciled".into(), "the receiver runs and FusionAuth's webhook matches the spec".into())
    );
    let status = world.resource().status.unwrap();
    assert_eq!(status.webhook_id, Some(world.webhook_id().to_string()));
    assert_eq!(status.observed_generation, Some(1));
    // Secrets never reach status or Events.
    let secret_text = String::from_utf8(generated).unwrap();
    for call in &calls {
        let body = call.body.to_string();
        assert!(!body.contains(KEY) && !body.contains(&secret_text), "a secret leaked into {}", call.line());
    }
    assert!(World::events(&calls).contains(&("Normal".into(), "Reconciled".into())));

    // Pass 3 (the periodic resync): reads only, on both sides.
    let before = world.fusionauth_writes();
    world.reconcile().await.unwrap();
    let calls = world.take_calls();
    assert_eq!(writes(&calls), Vec::<String>::new(), "steady state: no Kubernetes write");
    assert_eq!(world.fusionauth_writes(), before, "steady state: no FusionAuth write");
    assert_eq!(world.fusionauth.calls()["GET /api/webhook/{id}"], 3, "one GET of the webhook per reconcile");
}

#[tokio::test]
async fn drift_in_fusionauth_is_repaired_and_a_deleted_webhook_recreated() {
    let mut world = World::new(todo_spec()).await;
    world.reconcile().await.unwrap();
    world.take_calls();
    let id = world.webhook_id();

    // Someone edits the URL and adds an event in FusionAuth's admin UI.
    {
        let mut state = world.fusionauth.state();
        let webhook = state.webhooks.get_mut(&id).unwrap();
        webhook["url"] = json!("http://elsewhere/events");
        webhook["eventsEnabled"]["user.create"] = json!(true);
    }
    world.reconcile().await.unwrap();
    let webhook = world.fusionauth.state().webhooks[&id].clone();
    assert_eq!(webhook["url"], "http://todo-cleanup-receiver.todo.svc:8080/events");
    assert_eq!(webhook["eventsEnabled"], json!({"user.delete": true}));
    let calls = world.take_calls();
    assert_eq!(World::events(&calls), [("Normal".to_owned(), "WebhookRepaired".to_owned())]);
    assert_eq!(writes(&calls).len(), 1, "the Event only; status unchanged: {:?}", writes(&calls));

    // Someone deletes it.
    world.fusionauth.state().webhooks.remove(&id);
    world.reconcile().await.unwrap();
    assert!(world.fusionauth.state().webhooks.contains_key(&id), "recreated under the same id");
    assert_eq!(world.condition("Ready").0, "True");

    // A spec change (another event) follows into FusionAuth.
    world.edit_spec(|spec| spec["events"] = json!(["user.delete", "user.deactivate"]));
    world.reconcile().await.unwrap();
    assert_eq!(world.fusionauth.state().webhooks[&id]["eventsEnabled"], json!({"user.deactivate": true, "user.delete": true}));
    assert_eq!(world.resource().status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn a_rejected_api_key_and_an_unreachable_fusionauth_are_conditions_with_backoff() {
    let mut world = World::new(todo_spec()).await;
    world.put("/api/v1/namespaces/todo/secrets/fa", secret("fa", &[("api-key", "a-tenant-scoped-key")]));
    let error = world.reconcile().await.unwrap_err();
    assert!(matches!(error, Error::FusionAuth(ApplyError(ClientError::Unauthorized { .. }))), "{error}");
    let (status, reason, message) = world.condition("WebhookRegistered");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ApiKeyRejected"));
    assert!(message.contains("global API key"), "{message}");
    assert!(!message.contains("a-tenant-scoped-key"));
    assert_eq!(world.condition("Ready").1, "ApiKeyRejected");
    let calls = world.take_calls();
    // Each step that changed says so once; the failure is the one Warning.
    let events = World::events(&calls);
    assert_eq!(
        events.iter().filter(|(kind, _)| kind == "Warning").collect::<Vec<_>>(),
        [&("Warning".to_owned(), "ApiKeyRejected".to_owned())]
    );
    world.reconcile().await.unwrap_err();
    assert_eq!(World::events(&world.take_calls()), [], "the same failure again: no new Event");

    // Backoff doubles with each failure (bounds and jitter: context's unit test)...
    let r = Arc::new(world.resource());
    error_policy(Arc::clone(&r), &error, Arc::clone(&world.ctx));
    let second = world.ctx.failed(&r);
    let third = world.ctx.failed(&r);
    assert!(second >= Duration::from_millis(100) && third >= Duration::from_millis(200), "{second:?}, {third:?}");

    // The key is fixed (the Secret watch triggers a reconcile): recovered.
    world.put("/api/v1/namespaces/todo/secrets/fa", secret("fa", &[("api-key", KEY)]));
    world.reconcile().await.unwrap();
    assert_eq!(world.condition("Ready").0, "True");
    // ...and starts again from the bottom after a success.
    assert!(world.ctx.failed(&r) <= Duration::from_millis(100));

    // FusionAuth goes down.
    world.running.take().unwrap().stop().await;
    let error = world.reconcile().await.unwrap_err();
    assert!(matches!(error, Error::FusionAuth(_)), "{error}");
    let (status, reason, _) = world.condition("WebhookRegistered");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "FusionAuthUnreachable"));
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_until_it_is_created() {
    let mut world = World::new(todo_spec()).await;
    world.objects.lock().unwrap().by_path.remove("/api/v1/namespaces/todo/secrets/fa");
    world.reconcile().await.unwrap();
    let calls = world.take_calls();
    assert_eq!(
        writes(&calls),
        [format!("PATCH {FAW}"), format!("PATCH {FAW}/status"), "POST /apis/events.k8s.io/v1/namespaces/todo/events".into()]
    );
    assert_eq!(world.condition("SecretsResolved"), ("False".into(), "SecretNotFound".into(), "Secret fa does not exist".into()));
    assert_eq!(world.condition("Ready").1, "SecretNotFound");
    assert_eq!(World::events(&calls), [("Warning".to_owned(), "SecretNotFound".to_owned())]);

    // Reconciling again changes nothing and says nothing new.
    world.reconcile().await.unwrap();
    assert_eq!(writes(&world.take_calls()), Vec::<String>::new());

    world.put("/api/v1/namespaces/todo/secrets/fa", secret("fa", &[("api-key", KEY)]));
    world.reconcile().await.unwrap();
    assert_eq!(world.condition("Ready").0, "True");
    assert!(world.fusionauth.state().webhooks.contains_key(&world.webhook_id()));
}

#[tokio::test]
async fn an_invalid_spec_is_reported_on_ready_and_nothing_is_deployed() {
    let mut spec = todo_spec();
    spec["routes"][0]["http"]["timeoutMs"] = json!(5000);
    let mut world = World::new(spec).await;
    world.reconcile().await.unwrap();
    let (status, reason, message) = world.condition("Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("routes[0].http.timeoutMs"), "{message}");
    let calls = world.take_calls();
    assert!(!writes(&calls).iter().any(|w| w.contains("/deployments/")), "nothing deployed");
}

async fn delete(world: &mut World) -> Result<kube::runtime::controller::Action, Error> {
    let mut object = world.get(FAW).unwrap();
    object["metadata"]["deletionTimestamp"] = json!("2026-11-27T00:00:00Z");
    world.put(FAW, object);
    world.reconcile().await
}

#[tokio::test]
async fn deletion_removes_the_webhook_or_orphans_it_and_waits_for_fusionauth() {
    // Delete (default).
    let mut world = World::new(todo_spec()).await;
    world.reconcile().await.unwrap();
    assert!(world.fusionauth.state().webhooks.contains_key(&world.webhook_id()));
    world.take_calls();

    // FusionAuth down: the finalizer stays, and the condition says so.
    let running = world.running.take().unwrap();
    let address: std::net::SocketAddr = world.url.trim_start_matches("http://").parse().unwrap();
    running.stop().await;
    let error = delete(&mut world).await.unwrap_err();
    assert!(matches!(error, Error::FusionAuth(_)), "{error}");
    assert_eq!(world.resource().metadata.finalizers, Some(vec!["fusionhook.dev/cleanup".to_owned()]));
    let (_, reason, message) = world.condition("Ready");
    assert_eq!(reason, "FusionAuthUnreachable");
    assert!(message.contains("deletionPolicy: Orphan"), "{message}");

    // Back up: the webhook goes, then the finalizer.
    world.running = Some(world.fusionauth.serve(address).await.unwrap());
    world.take_calls();
    world.reconcile().await.unwrap();
    assert!(!world.fusionauth.state().webhooks.contains_key(&world.webhook_id()));
    let calls = world.take_calls();
    let removal = calls.iter().find(|c| c.method == "PATCH" && c.path == FAW).unwrap();
    assert_eq!(removal.body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    assert_eq!(world.resource().metadata.finalizers, Some(vec![]));
    assert_eq!(World::events(&calls), [("Normal".to_owned(), "WebhookDeleted".to_owned())]);

    // Orphan.
    let mut spec = todo_spec();
    spec["deletionPolicy"] = json!("Orphan");
    let mut world = World::new(spec).await;
    world.reconcile().await.unwrap();
    world.take_calls();
    delete(&mut world).await.unwrap();
    assert!(world.fusionauth.state().webhooks.contains_key(&world.webhook_id()), "Orphan leaves the webhook");
    assert_eq!(world.resource().metadata.finalizers, Some(vec![]));
    assert_eq!(World::events(&world.take_calls()), [("Normal".to_owned(), "WebhookOrphaned".to_owned())]);
}

#[tokio::test]
async fn tenant_switches_are_turned_on_recorded_and_turned_off_again() {
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID).unwrap();
    let mut spec = todo_spec();
    spec["events"] = json!(["user.delete", "user.create"]);
    spec["tenants"] = json!({"tenantIds": [DEFAULT_TENANT_ID]});
    spec["tenantEvents"] = json!({"transactionType": "Any"});
    let mut world = World::new(spec).await;
    world.reconcile().await.unwrap();
    let events = world.fusionauth.state().tenants[&tenant]["eventConfiguration"]["events"].clone();
    assert_eq!(events["user.delete"], json!({"enabled": true, "transactionType": "Any"}));
    assert_eq!(events["user.create"], json!({"enabled": true, "transactionType": "Any"}));
    assert_eq!(world.condition("TenantEventsEnabled").0, "True");
    assert_eq!(
        world.resource().status.unwrap().enabled_tenant_events,
        [format!("{DEFAULT_TENANT_ID}/user.create"), format!("{DEFAULT_TENANT_ID}/user.delete")]
    );

    // Drop user.create from the spec: its switch goes off, user.delete stays.
    world.edit_spec(|spec| spec["events"] = json!(["user.delete"]));
    world.reconcile().await.unwrap();
    let events = world.fusionauth.state().tenants[&tenant]["eventConfiguration"]["events"].clone();
    assert_eq!(events["user.create"]["enabled"], false);
    assert_eq!(events["user.delete"]["enabled"], true);
    assert_eq!(world.resource().status.unwrap().enabled_tenant_events, [format!("{DEFAULT_TENANT_ID}/user.delete")]);

    // Stop managing switches: what we turned on goes off.
    world.edit_spec(|spec| {
        spec.as_object_mut().unwrap().remove("tenantEvents");
    });
    world.reconcile().await.unwrap();
    let events = world.fusionauth.state().tenants[&tenant]["eventConfiguration"]["events"].clone();
    assert_eq!(events["user.delete"]["enabled"], false);
    assert!(world.resource().status.unwrap().enabled_tenant_events.is_empty());
    assert!(world.resource().status.unwrap().conditions.iter().all(|c| c.type_ != "TenantEventsEnabled"));

    // On again, then delete: turned off on the way out.
    world.edit_spec(|spec| spec["tenantEvents"] = json!({"transactionType": "None"}));
    world.reconcile().await.unwrap();
    assert_eq!(world.fusionauth.state().tenants[&tenant]["eventConfiguration"]["events"]["user.delete"]["enabled"], true);
    delete(&mut world).await.unwrap();
    assert_eq!(world.fusionauth.state().tenants[&tenant]["eventConfiguration"]["events"]["user.delete"]["enabled"], false);
}

/// The config the Deployment's pods mount now.
fn receiver_config(world: &World) -> String {
    let deployment = world.get("/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver").unwrap();
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap().clone();
    let name = volumes.iter().find_map(|v| v["configMap"]["name"].as_str()).unwrap().to_owned();
    let map = world.get(&format!("/api/v1/namespaces/todo/configmaps/{name}")).unwrap();
    assert_eq!(map["immutable"], true);
    map["data"]["receiver.yaml"].as_str().unwrap().to_owned()
}

fn signing_key_in_use(world: &World) -> Option<Uuid> {
    let webhook = world.fusionauth.state().webhooks.get(&world.webhook_id()).cloned()?;
    webhook["signatureConfiguration"]["signingKeyId"].as_str().and_then(|k| k.parse().ok())
}

fn signed_spec() -> Value {
    let mut spec = todo_spec();
    spec["auth"] = json!({"signature": {"algorithm": "HS256", "hmacSecretRef": {"name": "sig", "key": "hmac"}}});
    spec
}

#[tokio::test]
async fn a_changed_hmac_secret_switches_fusionauth_only_after_the_receivers_accept_both() {
    let mut world = World::new(signed_spec()).await;
    world.put("/api/v1/namespaces/todo/secrets/sig", secret("sig", &[("hmac", "first-secret")]));
    world.reconcile().await.unwrap();
    let first = signing_key_in_use(&world).unwrap();
    assert!(world.fusionauth.state().keys.contains_key(&first));
    assert_eq!(world.resource().status.unwrap().signing_key_id, Some(first.to_string()));

    // The user rotates the Secret while the new receivers are not rolled out yet.
    world.put("/api/v1/namespaces/todo/secrets/sig", secret("sig", &[("hmac", "second-secret")]));
    world.objects.lock().unwrap().available = false;
    world.reconcile().await.unwrap();
    assert_eq!(signing_key_in_use(&world), Some(first), "FusionAuth keeps signing with the key every receiver accepts");
    assert!(receiver_config(&world).contains("previousHmacSecretFile"), "{}", receiver_config(&world));
    let kept = world.get("/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth").unwrap();
    let copy = base64::engine::general_purpose::STANDARD.decode(kept["data"]["hmac-secret"].as_str().unwrap()).unwrap();
    assert_eq!(copy, b"first-secret", "the old secret is kept for the receivers");
    assert_eq!(world.condition("ReceiverAvailable").1, "Progressing");

    // Rolled out: FusionAuth gets the new key, and the old one is deleted.
    world.objects.lock().unwrap().available = true;
    let mut deployment = world.get("/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver").unwrap();
    deployment["status"] = json!({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
    world.put("/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver", deployment);
    world.reconcile().await.unwrap();
    let second = signing_key_in_use(&world).unwrap();
    assert_ne!(second, first);
    assert!(world.fusionauth.state().keys.contains_key(&second));
    assert!(!world.fusionauth.state().keys.contains_key(&first), "the old key is deleted once FusionAuth stopped using it");
    let kept = world.get("/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth").unwrap();
    let copy = base64::engine::general_purpose::STANDARD.decode(kept["data"]["hmac-secret"].as_str().unwrap()).unwrap();
    assert_eq!(copy, b"second-secret", "the copy follows FusionAuth in the same pass (a second rotation right after still finds it)");

    // Next pass: the receivers stop accepting the old secret; the copy follows.
    world.reconcile().await.unwrap();
    assert!(!receiver_config(&world).contains("previousHmacSecretFile"));
    let kept = world.get("/api/v1/namespaces/todo/secrets/todo-cleanup-receiver-auth").unwrap();
    let copy = base64::engine::general_purpose::STANDARD.decode(kept["data"]["hmac-secret"].as_str().unwrap()).unwrap();
    assert_eq!(copy, b"second-secret");
    assert_eq!(world.condition("Ready").0, "True");
    // Three config versions were applied; once rolled out, only the current one is left.
    world.reconcile().await.unwrap();
    let objects = world.objects.lock().unwrap().by_path.keys().cloned().collect::<Vec<_>>();
    let versions: Vec<&String> = objects.iter().filter(|p| p.contains("/configmaps/")).collect();
    assert_eq!(versions.len(), 1, "{versions:?}");

    // An algorithm change is a new key as well.
    world.edit_spec(|spec| spec["auth"]["signature"]["algorithm"] = json!("HS512"));
    world.reconcile().await.unwrap();
    world.reconcile().await.unwrap();
    let third = signing_key_in_use(&world).unwrap();
    assert_ne!(third, second);
    assert_eq!(world.fusionauth.state().keys.keys().copied().collect::<Vec<_>>(), [third]);

    // Removing the signature deletes the key (it used to leak).
    world.edit_spec(|spec| {
        spec.as_object_mut().unwrap().remove("auth");
    });
    world.reconcile().await.unwrap();
    assert_eq!(signing_key_in_use(&world), None);
    assert!(world.fusionauth.state().keys.is_empty(), "no key of ours is left");
    assert_eq!(world.resource().status.unwrap().signing_key_id, None);
}

#[tokio::test]
async fn moving_to_another_fusionauth_removes_everything_from_the_old_one_and_rotates_the_authorization() {
    let tenant = Uuid::parse_str(DEFAULT_TENANT_ID).unwrap();
    let mut spec = signed_spec();
    spec["tenants"] = json!({"tenantIds": [DEFAULT_TENANT_ID]});
    spec["tenantEvents"] = json!({});
    let mut world = World::new(spec).await;
    world.put("/api/v1/namespaces/todo/secrets/sig", secret("sig", &[("hmac", "a-secret")]));
    world.reconcile().await.unwrap();
    let old = world.fusionauth.clone();
    let old_authorization = old.state().webhooks[&world.webhook_id()]["headers"]["Authorization"].clone();
    assert_eq!(old.state().tenants[&tenant]["eventConfiguration"]["events"]["user.delete"]["enabled"], true);
    assert_eq!(world.resource().status.unwrap().fusion_auth_url.as_deref(), Some(world.url.as_str()));

    // A second FusionAuth; the resource is pointed at it.
    let new = Emulator::new(EmulatorSettings { api_key: KEY.into(), retry_delay: Duration::ZERO });
    let running = new.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let new_url = running.url();
    world.edit_spec(|spec| spec["fusionAuth"]["url"] = json!(new_url));
    world.reconcile().await.unwrap();

    let state = old.state();
    assert!(state.webhooks.is_empty(), "the old FusionAuth has no webhook of ours");
    assert!(state.keys.is_empty(), "nor our key");
    assert_eq!(state.tenants[&tenant]["eventConfiguration"]["events"]["user.delete"]["enabled"], false, "nor our switch");
    drop(state);
    let state = new.state();
    let webhook = state.webhooks[&world.webhook_id()].clone();
    assert_ne!(webhook["headers"]["Authorization"], old_authorization, "the old instance's value no longer opens the receiver");
    assert_eq!(state.keys.len(), 1);
    assert_eq!(state.tenants[&tenant]["eventConfiguration"]["events"]["user.delete"]["enabled"], true);
    drop(state);
    assert_eq!(world.resource().status.unwrap().fusion_auth_url, Some(new_url));
    assert_eq!(world.condition("Ready").0, "True");
    assert!(World::events(&world.take_calls()).contains(&("Normal".to_owned(), "WebhookMoved".to_owned())));
}

#[tokio::test]
async fn a_stuck_rollout_says_why_the_new_pods_do_not_start() {
    let mut world = World::new(todo_spec()).await;
    world.reconcile().await.unwrap();
    // New pods crash; the Deployment controller gives up on the rollout.
    let path = "/apis/apps/v1/namespaces/todo/deployments/todo-cleanup-receiver";
    let mut deployment = world.get(path).unwrap();
    deployment["status"] = json!({"replicas": 3, "updatedReplicas": 1, "availableReplicas": 2, "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"todo-cleanup-receiver-7d\" has timed out progressing."}
    ]});
    world.put(path, deployment);
    world.put(
        "/api/v1/namespaces/todo/pods",
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "todo-cleanup-receiver-7d-abc", "namespace": "todo"}, "status": {"containerStatuses": [
                {"name": "receiver", "ready": false, "restartCount": 5, "image": "i", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}},
                 "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}
            ]}}
        ]}),
    );
    world.reconcile().await.unwrap();
    let (status, reason, message) = world.condition("ReceiverAvailable");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "RolloutStuck"));
    assert!(message.contains("ProgressDeadlineExceeded"), "{message}");
    assert!(message.contains("pod todo-cleanup-receiver-7d-abc: container receiver CrashLoopBackOff (last exit 2, Error)"), "{message}");
    let list = world.take_calls().into_iter().find(|c| c.path.ends_with("/pods")).unwrap();
    assert!(list.query.contains("labelSelector=app.kubernetes.io%2Finstance%3Dtodo-cleanup"), "{}", list.query);
}
