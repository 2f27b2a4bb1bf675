//! The Kubernetes API emulator's conformance, through kube-rs (the client
//! the operator uses): discovery, CRDs, metadata rules, CRUD with the real
//! error reasons, selectors, optimistic concurrency, finalizers, garbage
//! collection, the four patch kinds, watches (order, resume, bookmarks,
//! timeout, 410 Gone) and kube-runtime's watcher without relists.
//!
//! Every case runs twice: against the emulator and against a real API
//! server (`fusionhook_tests::control_plane`), each in a namespace of its
//! own, so a difference shows as a failure here. What only one side can
//! show (the emulator's request log, forcing a compaction for 410) is
//! checked on that side and said so.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use fusionhook_tests::kube_emulator::{KubeEmulator, RunningKube};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, Resource};
use serde_json::{Value, json};

/// One API server under test, with a namespace of the case's own.
struct Server {
    client: Client,
    ns: String,
    /// The emulator, when it is the emulator (kept serving while the case runs).
    emulator: Option<(KubeEmulator, RunningKube)>,
}

impl Server {
    fn name(&self) -> &'static str {
        if self.emulator.is_some() { "emulator" } else { "real API server" }
    }
}

/// The emulator and the real API server, each with a new namespace.
async fn servers() -> Vec<Server> {
    let emulator = KubeEmulator::new();
    let running = emulator.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = Client::try_from(Config::new(running.url().parse().unwrap())).unwrap();
    let emulated = Server { client, ns: "case".into(), emulator: Some((emulator, running)) };
    let plane = tokio::task::spawn_blocking(fusionhook_tests::control_plane::ControlPlane::shared).await.unwrap();
    let ns =
        tokio::task::spawn_blocking(|| fusionhook_tests::control_plane::ControlPlane::shared().namespace("case")).await.unwrap().unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&plane.kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let real = Server { client: Client::try_from(config).unwrap(), ns, emulator: None };
    let nss: Api<Namespace> = Api::all(emulated.client.clone());
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "case"}})).unwrap()).await.unwrap();
    vec![emulated, real]
}

/// Waits (10 s at most) until `done`.
async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done().await
}

/// The CRD, created unless it is there, and established.
async fn ensure_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("{e}"),
    }
    let name = "fusionauthwebhooks.fusionhook.dev";
    let established = kube::runtime::wait::await_condition(crds, name, kube::runtime::wait::conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established).await.unwrap().unwrap();
}

fn crd() -> CustomResourceDefinition {
    serde_yaml::from_str(&fusionhook_operator::crd_yaml().unwrap()).unwrap()
}

fn faw_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("fusionhook.dev", "v1alpha1", "FusionAuthWebhook");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&gvk, "fusionauthwebhooks"))
}

fn faw(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "fusionhook.dev/v1alpha1", "kind": "FusionAuthWebhook",
        "metadata": {"name": name},
        "spec": {"fusionAuth": {"url": "http://fa:9011", "apiKeySecretRef": {"name": "fa", "key": "k"}}, "events": ["user.delete"]}
    }))
    .unwrap()
}

fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        other => format!("{other}"),
    }
}

#[tokio::test]
async fn discovery_lists_builtins_and_a_crd_once_created() {
    for server in servers().await {
        discovery_lists_builtins_and_a_crd_once_created_on(&server).await;
    }
}

async fn discovery_lists_builtins_and_a_crd_once_created_on(server: &Server) {
    let client = server.client.clone();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    // A new CRD is Established a moment after it is created (the real
    // server's create answer does not say so yet).
    ensure_crd(&client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let established = crds.get("fusionauthwebhooks.fusionhook.dev").await.unwrap().status.unwrap().conditions.unwrap();
    assert!(established.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
    for g in ["", "apps", "coordination.k8s.io", "events.k8s.io", "fusionhook.dev", "rbac.authorization.k8s.io"] {
        assert!(groups.iter().any(|n| n == g), "{g} in {groups:?}");
    }
    let (resource, caps) = discovery.get("fusionhook.dev").unwrap().recommended_kind("FusionAuthWebhook").unwrap();
    assert_eq!(resource.plural, "fusionauthwebhooks");
    assert!(caps.subresources.iter().any(|(r, _)| r.plural.ends_with("status")), "{:?}", caps.subresources);
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
}

#[tokio::test]
async fn objects_get_metadata_and_errors_carry_the_real_reasons() {
    for server in servers().await {
        objects_get_metadata_and_errors_carry_the_real_reasons_on(&server).await;
    }
}

async fn objects_get_metadata_and_errors_carry_the_real_reasons_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a", "labels": {"app": "x"}}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let meta = created.meta();
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
    assert_eq!(reason(&cms.create(&PostParams::default(), &cm).await.unwrap_err()), "409 AlreadyExists");
    assert_eq!(reason(&cms.get("missing").await.unwrap_err()), "404 NotFound");
    assert!(cms.get_opt("missing").await.unwrap().is_none());

    // Optimistic concurrency: a replace with a stale resourceVersion is a Conflict.
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_owned(), "w".to_owned())].into());
    let replaced = cms.replace("a", &PostParams::default(), &fresh).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, created.metadata.resource_version);
    assert_eq!(reason(&cms.replace("a", &PostParams::default(), &fresh).await.unwrap_err()), "409 Conflict");

    // generateName, a missing namespace, selectors.
    let named: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-", "labels": {"app": "y"}}})).unwrap();
    let generated = cms.create(&PostParams::default(), &named).await.unwrap();
    assert!(generated.metadata.name.unwrap().starts_with("gen-"));
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(reason(&nowhere.create(&PostParams::default(), &cm).await.unwrap_err()), "404 NotFound");
    let by_label = cms.list(&ListParams::default().labels("app=x")).await.unwrap();
    assert_eq!(by_label.items.len(), 1);
    // A real namespace also holds kube-root-ca.crt (the root CA publisher): only ours count.
    let by_field = cms.list(&ListParams::default().labels("app").fields("metadata.name!=a")).await.unwrap();
    assert_eq!(by_field.items.len(), 1);
    assert!(by_label.metadata.resource_version.is_some());
}

#[tokio::test]
async fn generation_moves_on_spec_changes_and_status_only_through_its_subresource() {
    for server in servers().await {
        generation_moves_on_spec_changes_and_status_only_through_its_subresource_on(&server).await;
    }
}

async fn generation_moves_on_spec_changes_and_status_only_through_its_subresource_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    ensure_crd(&client).await;
    let api = faw_api(&client, ns);
    let created = api.create(&PostParams::default(), &faw("w")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // A status write through the main resource is ignored; through /status it lands without a generation bump.
    let patch = json!({"status": {"webhookId": "x"}});
    let main = api.patch("w", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert!(main.data.get("status").is_none());
    let status = api.patch_status("w", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(status.data["status"]["webhookId"], "x");
    assert_eq!(status.metadata.generation, Some(1));

    // A label change is not a spec change; an events change is.
    let labelled = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let changed = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"events": ["user.create"]}}))).await.unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(changed.data["status"]["webhookId"], "x", "status survives spec writes");

    // The CRD's schema is enforced: an event name with a space is Invalid.
    let bad = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"events": ["user delete"]}}))).await.unwrap_err();
    assert_eq!(reason(&bad), "422 Invalid");
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_their_dependents_along() {
    for server in servers().await {
        finalizers_hold_deletion_and_owners_take_their_dependents_along_on(&server).await;
    }
}

async fn finalizers_hold_deletion_and_owners_take_their_dependents_along_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner", "finalizers": ["x/y"]}})).unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let reference = owner.controller_owner_ref(&()).unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dependent", "ownerReferences": [reference]}})).unwrap();
    cms.create(&PostParams::default(), &dependent).await.unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    let held = cms.get("owner").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some(), "a finalizer keeps the object, marked");
    assert!(cms.get_opt("dependent").await.unwrap().is_some());

    let ops = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x/y"}, {"op": "remove", "path": "/metadata/finalizers/0"}]);
    cms.patch("owner", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(ops).unwrap())).await.unwrap();
    assert!(cms.get_opt("owner").await.unwrap().is_none(), "last finalizer gone: deleted");
    // The garbage collector works in the background on a real server (the
    // emulator at once): both within a few seconds.
    assert!(eventually(async || cms.get_opt("dependent").await.unwrap().is_none()).await, "garbage collected with its owner");

    // Deleting a namespace deletes what is in it (the namespace controller, in the background).
    let nss: Api<Namespace> = Api::all(client.clone());
    let temp_name = format!("{ns}-temp");
    nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": temp_name}})).unwrap()).await.unwrap();
    let temp: Api<ConfigMap> = Api::namespaced(client.clone(), &temp_name);
    temp.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap()).await.unwrap();
    nss.delete(&temp_name, &DeleteParams::default()).await.unwrap();
    assert!(eventually(async || nss.get_opt(&temp_name).await.unwrap().is_none()).await, "{} deleted", server.name());
    assert!(temp.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn server_side_apply_creates_owns_fields_and_conflicts_without_force() {
    for server in servers().await {
        server_side_apply_creates_owns_fields_and_conflicts_without_force_on(&server).await;
    }
}

async fn server_side_apply_creates_owns_fields_and_conflicts_without_force_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    });
    let first = deployments.patch("d", &PatchParams::apply("one"), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(first.metadata.managed_fields.unwrap()[0].manager.as_deref(), Some("one"));

    // Re-applying the same config writes nothing.
    let again = deployments.patch("d", &PatchParams::apply("one"), &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(again.metadata.resource_version, first.metadata.resource_version);

    // Another manager setting the same field: Conflict, unless forced.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 5}});
    let conflict = deployments.patch("d", &PatchParams::apply("two"), &Patch::Apply(&other)).await.unwrap_err();
    assert_eq!(reason(&conflict), "409 Conflict");
    let forced = deployments.patch("d", &PatchParams::apply("two").force(), &Patch::Apply(&other)).await.unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(5));

    // A manager dropping a field it applied removes it.
    let mut fewer = applied.clone();
    fewer["metadata"]["labels"] = json!({"a": "1"});
    let dropped = deployments.patch("d", &PatchParams::apply("one").force(), &Patch::Apply(&fewer)).await.unwrap();
    assert_eq!(dropped.metadata.labels.unwrap().len(), 1);

    // Strategic merge keys containers by name.
    let strategic =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "y"}, {"name": "sidecar", "image": "z"}]}}}});
    let merged = deployments.patch("d", &PatchParams::default(), &Patch::Strategic(&strategic)).await.unwrap();
    let containers = merged.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.iter().map(|c| c.image.clone().unwrap()).collect::<Vec<_>>(), ["y", "z"]);

    // Secrets: stringData is stored as data.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
    let stored = secrets.patch("s", &PatchParams::apply("one"), &Patch::Apply(&s)).await.unwrap();
    assert_eq!(stored.data.unwrap()["k"].0, b"v");
}

#[tokio::test]
async fn leases_are_won_by_one_writer() {
    for server in servers().await {
        leases_are_won_by_one_writer_on(&server).await;
    }
}

async fn leases_are_won_by_one_writer_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}})).unwrap();
    let stored = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = stored.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut theirs = stored.clone();
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    leases.replace("l", &PostParams::default(), &mine).await.unwrap();
    assert_eq!(reason(&leases.replace("l", &PostParams::default(), &theirs).await.unwrap_err()), "409 Conflict");
}

#[tokio::test]
async fn watches_stream_in_order_resume_bookmark_time_out_and_expire() {
    for server in servers().await {
        watches_stream_in_order_resume_bookmark_time_out_and_expire_on(&server).await;
    }
}

async fn watches_stream_in_order_resume_bookmark_time_out_and_expire_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()).await.unwrap();
    }
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    // Resume from a resourceVersion: every change after it, in order.
    let params = WatchParams::default().timeout(2);
    let events: Vec<WatchEvent<ConfigMap>> = cms.watch(&params, &from).await.unwrap().take(3).try_collect().await.unwrap();
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.clone().unwrap()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["ADDED a", "ADDED b", "DELETED a"]);

    // Bookmarks arrive when asked for; the stream ends at timeoutSeconds.
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let started = std::time::Instant::now();
    let rest: Vec<WatchEvent<ConfigMap>> = cms.watch(&WatchParams::default().timeout(3), &rv).await.unwrap().try_collect().await.unwrap();
    // A real server sends bookmarks about once a minute, not within a 3 s
    // watch; the emulator sends one at once (clients must take either).
    if server.emulator.is_some() {
        assert!(rest.iter().any(|e| matches!(e, WatchEvent::Bookmark(_))), "{rest:?}");
    } else {
        assert!(rest.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))), "{rest:?}");
    }
    assert!(started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(10));

    // A resourceVersion older than what is retained: 410 Gone (reason
    // Expired). Only the emulator can be made to forget on demand here; the
    // real server's watch cache keeps every version of this short run.
    let Some((emulator, _)) = &server.emulator else { return };
    emulator.store().compact();
    let expired: Vec<WatchEvent<ConfigMap>> =
        cms.watch(&WatchParams::default().timeout(2), &from).await.unwrap().try_collect().await.unwrap();
    match &expired[..] {
        [WatchEvent::Error(e)] => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected one 410 error, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watchers_run_without_relisting() {
    for server in servers().await {
        kube_runtime_watchers_run_without_relisting_on(&server).await;
    }
}

async fn kube_runtime_watchers_run_without_relisting_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), ns);
    let (store, writer) = kube::runtime::reflector::store();
    // Ours only (a real namespace also holds kube-root-ca.crt).
    let config = watcher::Config::default().labels("watched");
    let full = tokio::spawn(
        kube::runtime::reflector(writer, watcher(cms.clone(), config.clone())).applied_objects().take(3).try_collect::<Vec<_>>(),
    );
    let meta = tokio::spawn(watcher(metadata, config).applied_objects().take(3).try_collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["x", "y", "z"] {
        let object = json!({"metadata": {"name": name, "labels": {"watched": "yes"}}});
        cms.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap();
    }
    let full = tokio::time::timeout(Duration::from_secs(10), full).await.unwrap().unwrap().unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(10), meta).await.unwrap().unwrap().unwrap();
    assert_eq!(full.len(), 3);
    assert_eq!(meta.iter().map(|m| m.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["x", "y", "z"]);
    assert_eq!(store.state().len(), 3);
    // Counted in the emulator's request log (the real server keeps none here).
    let Some((emulator, _)) = &server.emulator else { return };
    let lists =
        emulator.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with("/configmaps") && !r.query.contains("watch=")).count();
    assert_eq!(lists, 2, "one initial list per watcher, no relist loop");
}

#[tokio::test]
async fn events_are_served_by_both_apis() {
    for server in servers().await {
        events_are_served_by_both_apis_on(&server).await;
    }
}

async fn events_are_served_by_both_apis_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events"),
    );
    let event: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "reason": "Reconciled", "note": "ok", "type": "Normal", "action": "Reconcile", "reportingController": "x", "reportingInstance": "y",
        "eventTime": "2026-11-27T00:00:00.000000Z", "regarding": {"kind": "ConfigMap", "name": "a", "namespace": ns}
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    core.create(
        &PostParams::default(),
        // A real server refuses an involvedObject of another namespace (also
        // an empty one); the emulator does not check (written down in the README).
        &serde_json::from_value(json!({"metadata": {"name": "e2"}, "involvedObject": {"name": "a", "namespace": ns}, "reason": "R"}))
            .unwrap(),
    )
    .await
    .unwrap();
    // A real server serves one set of Events through both APIs (each
    // converted); the emulator keeps them apart. Written down in the
    // README: the operator and the plugin use events.k8s.io only.
    let both = if server.emulator.is_some() { 1 } else { 2 };
    assert_eq!(events.list(&ListParams::default()).await.unwrap().items.len(), both);
    let core_list: Value =
        serde_json::to_value(core.list(&ListParams::default().fields("involvedObject.name=a")).await.unwrap().items).unwrap();
    assert_eq!(core_list.as_array().unwrap().len(), both);
}

#[tokio::test]
async fn the_crds_cel_rules_refuse_what_cannot_work_with_their_messages() {
    for server in servers().await {
        the_crds_cel_rules_refuse_what_cannot_work_with_their_messages_on(&server).await;
    }
}

async fn the_crds_cel_rules_refuse_what_cannot_work_with_their_messages_on(server: &Server) {
    let (client, ns) = (server.client.clone(), server.ns.as_str());
    ensure_crd(&client).await;
    let api = faw_api(&client, ns);
    let with = |name: &str, extra: Value| {
        let mut object = serde_json::to_value(faw(name)).unwrap();
        object["spec"].as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<DynamicObject>(object).unwrap()
    };
    let message = |e: kube::Error| match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => format!("{other}"),
    };
    let postgres = json!({"type": "postgres", "urlSecretRef": {"name": "pg", "key": "url"}});
    let route = |extra: Value| {
        let mut r = json!({"name": "r", "events": ["user.delete"], "http": {"url": "http://todo/"}});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let refused = [
        (json!({"routes": [route(json!({"ack": "durable"}))]}), "a route with ack: durable needs receiver.store"),
        (
            json!({"routes": [route(json!({"retry": {"maxAttempts": 3}}))]}),
            "retry, ordering, delayMs and concurrency are for durable routes",
        ),
        (
            json!({"receiver": {"store": postgres.clone()}, "routes": [route(json!({"ack": "sync", "ordering": "perObject"}))]}),
            "retry, ordering, delayMs and concurrency are for durable routes",
        ),
        (json!({"receiver": {"store": {"type": "postgres"}}}), "urlSecretRef goes with type: postgres"),
        (json!({"receiver": {"store": {"type": "none", "size": "1Gi"}}}), "size and storageClassName are for type: embedded"),
        (json!({"routes": [{"name": "r", "events": ["*"], "http": {"url": "http://x/"}, "log": {}}]}), "exactly one action"),
    ];
    for (i, (extra, expected)) in refused.into_iter().enumerate() {
        let error = api.create(&PostParams::default(), &with(&format!("bad-{i}"), extra.clone())).await.unwrap_err();
        let text = message(error);
        assert!(text.starts_with("422 ") && text.contains(expected), "{extra}: expected {expected:?} in {text}");
    }
    let accepted = json!({"receiver": {"store": postgres}, "routes": [route(json!({"retry": {"maxAttempts": 3}, "ordering": "perObject"})),
        {"name": "audit", "events": ["*"], "ack": "sync", "log": {}}]});
    api.create(&PostParams::default(), &with("good", accepted)).await.unwrap();

    // An embedded store's size can grow, not go below what its volumes
    // have (status.storeSize, the operator's); its class is fixed.
    let embedded = with("sized", json!({"receiver": {"store": {"type": "embedded", "size": "1Gi"}}}));
    api.create(&PostParams::default(), &embedded).await.unwrap();
    let patch = |store: Value| json!({"spec": {"receiver": {"store": store}}});
    let merge = |store: Value| {
        let api = api.clone();
        async move { api.patch("sized", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch(store))).await.map_err(message) }
    };
    let volumes = |size: &str| {
        let (api, status) = (api.clone(), json!({"status": {"storeSize": size}}));
        async move { api.patch_status("sized", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status)).await.unwrap() }
    };
    merge(json!({"type": "embedded", "size": "5Gi"})).await.unwrap();
    merge(json!({"type": "embedded", "size": "1Gi"})).await.unwrap();
    volumes("5Gi").await;
    merge(json!({"type": "embedded", "size": "5Gi"})).await.unwrap();
    for (store, expected) in [
        (json!({"type": "embedded", "size": "1G"}), "can grow, not shrink below the size its volumes have"),
        (json!({"type": "embedded", "size": null}), "can grow, not shrink below the size its volumes have"),
        (json!({"type": "embedded", "size": "lots"}), "store: size is a quantity like 1Gi"),
        (json!({"type": "embedded", "storageClassName": "other"}), "storageClassName of an embedded store cannot change"),
    ] {
        let text = merge(store.clone()).await.unwrap_err();
        assert!(text.starts_with("422 ") && text.contains(expected), "{store}: {text}");
    }
    // A growth that could not happen leaves the volumes as they were: the
    // size can go back to theirs.
    volumes("1Gi").await;
    merge(json!({"type": "embedded", "size": "1Gi"})).await.unwrap();
    let to_postgres =
        json!({"spec": {"receiver": {"store": {"type": "postgres", "size": null, "urlSecretRef": {"name": "pg", "key": "url"}}}}});
    api.patch("sized", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&to_postgres)).await.unwrap();

    // Every example in examples/ passes the schema and the rules.
    let examples = fusionhook_tests::tools::workspace_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "yaml")) {
        let mut object: Value = serde_yaml::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        if object["kind"] != "FusionAuthWebhook" {
            continue;
        }
        object["metadata"]["namespace"] = json!(ns);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("{}: {}", entry.path().display(), message(e)));
        checked += 1;
    }
    assert!(checked >= 2, "the todo example and its durable variant");
}
